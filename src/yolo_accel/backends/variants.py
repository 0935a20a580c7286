"""Backend variants named on the command line: NAME[-fp16][-iobind][-cpu].

'onnxruntime-fp16-iobind' is ONNX Runtime on an FP16 export with IO binding; '-cpu' pins a row
to the CPU inside a CUDA run (e.g. the ONNX Runtime CPU provider next to the GPU backends).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from .base import BACKENDS, get_backend_spec

SUFFIXES = ("fp16", "half", "iobind", "iobinding", "cpu")


@dataclass(frozen=True)
class Variant:
    """One backend row: a registered backend plus precision, IO binding and device pin."""

    key: str  # canonical label, e.g. "onnxruntime-fp16-iobind"
    backend: str
    half: bool = False
    io_binding: bool = False
    cpu: bool = False

    def device(self, default: str) -> str:
        return "cpu" if self.cpu else default


def parse_variant(text: str, half: bool = False) -> Variant:
    """'onnxruntime-fp16-iobind' -> Variant; unknown names list the known backends and suffixes."""
    parts = text.strip().lower().split("-")
    base, flags = parts[0], set()
    for p in parts[1:]:
        if p not in SUFFIXES:
            raise SettingsError(
                f"unknown backend {text!r}; known backends: {', '.join(BACKENDS)}, "
                f"each optionally followed by -fp16, -iobind, -cpu"
            )
        flags.add({"half": "fp16", "iobinding": "iobind"}.get(p, p))
    name = get_backend_spec(base).name
    fp16 = "fp16" in flags or half
    iob = "iobind" in flags
    if iob and name != "onnxruntime":
        raise SettingsError(f"{text!r}: IO binding applies to the onnxruntime backend only")
    key = "-".join(
        [name] + [f for f in ("fp16", "iobind", "cpu") if (f == "fp16" and fp16) or (f != "fp16" and f in flags)]
    )
    return Variant(key, name, fp16, iob, "cpu" in flags)


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
