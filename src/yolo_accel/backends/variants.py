"""Backend variants named on the command line: NAME[-fp16][-cl][-compile][-iobind][-graph][-cpu].

'onnxruntime-fp16-iobind' is ONNX Runtime on an FP16 export with IO binding; 'torch-fp16-graph'
is torch in FP16 replaying CUDA graphs; '-cl' is channels_last, '-compile' torch.compile; '-cpu'
pins a row to the CPU inside a CUDA run (e.g. the ONNX Runtime CPU provider next to the GPU backends).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from .base import BACKENDS, get_backend_spec

# canonical order of the flags in a variant's key, and the spellings each one accepts
FLAGS = {
    "fp16": ("fp16", "half"),
    "cl": ("cl", "channelslast"),
    "compile": ("compile",),
    "iobind": ("iobind", "iobinding"),
    "graph": ("graph", "cudagraph"),
    "cpu": ("cpu",),
}
_SPELLING = {alias: flag for flag, aliases in FLAGS.items() for alias in aliases}
# which backends take which flag
_APPLIES = {
    "cl": ("torch",),
    "compile": ("torch",),
    "iobind": ("onnxruntime",),
    # not "compiled": capturing an AOTInductor package's run failed on the H100 (backends/pytorch.py)
    "graph": ("torch", "onnxruntime"),
}


@dataclass(frozen=True)
class Variant:
    """One backend row: a registered backend plus precision, speed options and device pin."""

    key: str  # canonical label, e.g. "onnxruntime-fp16-iobind"
    backend: str
    half: bool = False
    io_binding: bool = False
    cpu: bool = False
    cuda_graph: bool = False
    channels_last: bool = False
    compile: bool = False

    def device(self, default: str) -> str:
        return "cpu" if self.cpu else default

    def torch_options(self):
        from .pytorch import TorchOptions

        return TorchOptions(channels_last=self.channels_last, cuda_graph=self.cuda_graph, compile=self.compile)


def parse_variant(text: str, half: bool = False) -> Variant:
    """'onnxruntime-fp16-iobind' -> Variant; unknown names list the known backends and suffixes."""
    parts = text.strip().lower().split("-")
    base, flags = parts[0], set()
    for p in parts[1:]:
        if p not in _SPELLING:
            raise SettingsError(
                f"unknown backend {text!r}; known backends: {', '.join(BACKENDS)}, each optionally "
                f"followed by {', '.join('-' + f for f in FLAGS)}"
            )
        flags.add(_SPELLING[p])
    name = get_backend_spec(base).name
    if half:
        flags.add("fp16")
    for flag, backends in _APPLIES.items():
        if flag in flags and name not in backends:
            raise SettingsError(f"{text!r}: -{flag} applies to the {' and '.join(backends)} backend only")
    if "graph" in flags and name == "onnxruntime":
        flags.add("iobind")  # ONNX Runtime's CUDA graph needs IO binding
    key = "-".join([name] + [f for f in FLAGS if f in flags])
    return Variant(
        key,
        name,
        half="fp16" in flags,
        io_binding="iobind" in flags,
        cpu="cpu" in flags,
        cuda_graph="graph" in flags,
        channels_last="cl" in flags,
        compile="compile" in flags,
    )


def parse_variants(spec: str | tuple[str, ...] | list[str], half: bool = False) -> list[Variant]:
    """A comma-separated list (or sequence) of variants, duplicates removed, order kept."""
    items = [s for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise SettingsError("no backends given")
    out: list[Variant] = []
    for item in items:
        v = parse_variant(item, half)
        if v.key not in [o.key for o in out]:
            out.append(v)
    return out
