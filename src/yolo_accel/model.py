"""Open model files: PyTorch checkpoints (Ultralytics or original YOLOv5) and ONNX files.

`.pt` files are pickles and run code when they are loaded: yolo-accel loads only the file the
user names (with weights_only=False, which these checkpoints need).
"""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ExportError, ModelError

FAMILIES = ("ultralytics", "yolov5")
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass
class ModelInfo:
    """What the rest of the tool needs to know about a model, whatever its file format."""

    path: Path
    format: str  # "pt" | "onnx"
    family: str  # "ultralytics" | "yolov5" | "unknown" (ONNX from another tool)
    layout: str | None  # head layout "v5" | "v8" (see ops.nms); None until the first output is seen
    names: dict[int, str]
    stride: int = 32
    imgsz: tuple[int, int] = (640, 640)
    batch: int | None = None  # static batch size of the file, None when dynamic
    half: bool = False
    dynamic_hw: bool = False  # True when the input height/width may change (PyTorch models)
    sha256: str = ""
    task: str = "detect"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def nc(self) -> int:
        return len(self.names)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def artifact_bytes(path: str | Path) -> int:
    """The size of a model on disk: an OpenVINO IR is its .xml and its .bin."""
    p = Path(path)
    weights = p.with_suffix(".bin") if p.suffix.lower() == ".xml" else None
    return p.stat().st_size + (weights.stat().st_size if weights is not None and weights.is_file() else 0)


def check_model_path(model: str | Path, suffixes: tuple[str, ...] = (".pt", ".onnx")) -> Path:
    """The model path, or ModelError when it is missing, empty or of an unknown kind."""
    p = Path(model).expanduser()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"model path is a folder, not a file: {p}")
    if p.stat().st_size == 0:
        raise ModelError(f"model file is empty: {p}")
    if p.suffix.lower() not in suffixes:
        raise ModelError(f"{p}: unknown model format {p.suffix!r}; expected one of {', '.join(suffixes)}")
    return p


def checkpoint_family(path: Path) -> str:
    """Which code a `.pt` needs, read from the pickle's module names without unpickling it."""
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            if pkl is None:
                raise ModelError(f"{path}: not a PyTorch checkpoint (no data.pkl inside the archive)")
            head = zf.read(pkl)
            bad = zf.testzip()
    except zipfile.BadZipFile as e:
        raise ModelError(
            f"{path}: not a valid PyTorch checkpoint (not a zip archive: the file is "
            f"truncated, corrupt or not a .pt at all)"
        ) from e
    except (OSError, EOFError, zipfile.LargeZipFile) as e:
        raise ModelError(f"{path}: cannot read the checkpoint ({e})") from e
    if bad is not None:
        raise ModelError(f"{path}: the checkpoint is corrupt (bad entry {bad})")
    if b"ultralytics.nn" in head:
        return "ultralytics"
    if b"models.yolo" in head:
        return "yolov5"
    raise ModelError(
        f"{path}: not a YOLO checkpoint that yolo-accel knows (neither Ultralytics nor "
        "original YOLOv5 model classes inside)"
    )


def _torch_load(path: Path) -> dict:
    import torch

    try:
        # weights_only=False: YOLO checkpoints pickle whole nn.Modules; only the user's own file is loaded
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a corrupt file
        raise ModelError(f"{path}: cannot load the checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or not (ckpt.get("ema") or ckpt.get("model")):
        raise ModelError(f"{path}: no model inside the checkpoint (expected a 'model' or 'ema' entry)")
    return ckpt


def _checkpoint_imgsz(ckpt: dict) -> int:
    for key in ("train_args", "opt"):
        args = ckpt.get(key)
        if isinstance(args, dict):
            v = args.get("imgsz", args.get("img_size"))
            if isinstance(v, (list, tuple)) and v:
                v = v[0]
            if isinstance(v, int) and v > 0:
                return v
    return 640


def load_pytorch(path: str | Path):
    """Load a `.pt` as a fused FP32 eval-mode nn.Module on the CPU; returns (module, ModelInfo)."""
    from . import _deps

    p = check_model_path(path, (".pt", ".pth"))
    family = checkpoint_family(p)
    _deps.require("torch")
    if family == "yolov5":
        # importing yolov5.models.yolo puts the YOLOv5 root on sys.path, where the pickle's
        # top-level `models.*` / `utils.*` classes live
        _deps.require("yolov5.models.yolo")
    else:
        _deps.require("ultralytics.nn.tasks")
    with _deps.quiet():
        ckpt = _torch_load(p)
        module = (ckpt.get("ema") or ckpt["model"]).float()
        task = getattr(module, "task", None) or (
            "detect" if type(module).__name__ in ("Model", "DetectionModel") else type(module).__name__
        )
        if task != "detect":
            raise ModelError(f"{p}: a {task!r} model; yolo-accel handles detection models only")
        if hasattr(module, "fuse"):
            module = module.fuse()
        module.eval()
        _fuse_conv_bn(module)
        _compat(module, family)
    names = getattr(module, "names", None) or {}
    from .names import as_names, default_names

    names = as_names(names) if names else default_names(_nc(module))
    stride = int(max(module.stride)) if hasattr(module, "stride") else 32
    imgsz = _checkpoint_imgsz(ckpt)
    info = ModelInfo(
        path=p,
        format="pt",
        family=family,
        layout="v5" if family == "yolov5" else "v8",
        names=names,
        stride=stride,
        imgsz=(imgsz, imgsz),
        batch=None,
        dynamic_hw=True,
        sha256=file_sha256(p),
        metadata={"date": str(ckpt.get("date", "")), "version": str(ckpt.get("version", ""))},
    )
    return module, info


def _nc(module) -> int:
    return int(getattr(module, "nc", 0) or getattr(module.model[-1], "nc", 80))


def _fuse_conv_bn(module) -> None:
    """Fold each Conv block's BatchNorm into its convolution (what `model.fuse()` is meant to do).

    An original YOLOv5 checkpoint unpickles its layers as top-level `models.common.Conv`, while the
    `yolov5` package's `fuse()` tests for its own `yolov5.models.common.Conv`: the test fails and no
    layer is fused (57 BatchNorm passes left in YOLOv5n). Any block that holds `conv`, `bn` and a
    `forward_fuse` (YOLOv5's and Ultralytics' Conv) is fused here with torch's own helper.
    """
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for m in module.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and hasattr(m, "forward_fuse"):
            m.conv = fuse_conv_bn_eval(conv, bn)
            delattr(m, "bn")
            m.forward = m.forward_fuse


def _compat(module, family: str) -> None:
    """The same module updates that Ultralytics / YOLOv5 apply after loading old checkpoints."""
    import torch
    import torch.nn as nn

    for m in module.modules():
        if isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None
        if family == "yolov5" and type(m).__name__ == "Detect":
            m.inplace = True
            if not isinstance(m.anchor_grid, list):  # very old checkpoints keep a tensor here
                delattr(m, "anchor_grid")
                m.anchor_grid = [torch.zeros(1)] * m.nl


def read_onnx(path: str | Path, names_file: str | Path | None = None):
    """Open an ONNX file and read its ModelInfo (our metadata, Ultralytics', or the shapes alone)."""
    from . import _deps

    p = check_model_path(path, (".onnx",))
    onnx = _deps.require("onnx")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{p}: not a valid ONNX file ({type(e).__name__})") from e
    graph = proto.graph
    init_names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ModelError(f"{p}: expected one image input, found {len(inputs)} inputs")
    in_dims = _dims(inputs[0])
    if len(in_dims) != 4:
        raise ModelError(
            f"{p}: input {inputs[0].name!r} has {len(in_dims)} dimensions {in_dims}; "
            "a YOLO detector takes 4-D images (batch, 3, height, width)"
        )
    if isinstance(in_dims[1], int) and in_dims[1] != 3:
        raise ModelError(f"{p}: input {inputs[0].name!r} has {in_dims[1]} channels; expected 3 (RGB)")
    if not graph.output:
        raise ModelError(f"{p}: the graph has no outputs")
    out_dims = _dims(graph.output[0])
    if len(out_dims) != 3:
        raise ModelError(
            f"{p}: first output {graph.output[0].name!r} has shape {out_dims}; expected a "
            "3-D detection head output (batch, anchors, 5+nc) or (batch, 4+nc, anchors)"
        )
    meta = {m.key: m.value for m in proto.metadata_props}
    half = inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    return proto, info_from_graph(p, "onnx", meta, in_dims, out_dims, half, names_file)


def info_from_graph(
    p: Path,
    fmt: str,
    meta: dict[str, str],
    in_dims: list,
    out_dims: list,
    half: bool,
    names_file: str | Path | None = None,
) -> ModelInfo:
    """ModelInfo of an exported graph (ONNX, OpenVINO IR) from its metadata and its input and output shapes."""
    from .names import as_names, default_names, load_names_file

    layout = meta.get("layout") or None
    if layout is None and all(isinstance(d, int) for d in out_dims[1:]):
        from .ops.nms import infer_layout

        layout = infer_layout(out_dims)
    if names_file:
        names = load_names_file(names_file)
    elif "names" in meta:
        try:
            names = as_names(meta["names"])
        except (ValueError, SyntaxError) as e:
            raise ModelError(f"{p}: unreadable 'names' metadata ({e}); pass --names FILE") from e
    else:
        from .ops.nms import num_classes

        nc = num_classes(out_dims, layout) if layout and all(isinstance(d, int) for d in out_dims[1:]) else 80
        if nc < 1:  # e.g. (1, 84, 4) read as YOLOv5's (1, boxes, 5 + classes): no room for one class
            raise ModelError(
                f"{p}: output {list(out_dims)} holds no class scores as a {layout} layout and the file has no "
                "'names' metadata; not a YOLO detector export"
            )
        names = default_names(nc)
    h, w = in_dims[2], in_dims[3]
    imgsz = _meta_imgsz(meta) or (h if isinstance(h, int) else 640, w if isinstance(w, int) else 640)
    family = meta.get("family") or (
        "ultralytics" if "ultralytics" in meta.get("author", "").lower() or meta.get("task") else "unknown"
    )
    return ModelInfo(
        path=p,
        format=fmt,
        family=family,
        layout=layout,
        names=names,
        stride=int(float(meta.get("stride", 32))),
        imgsz=imgsz,
        batch=in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else None,
        half=half,
        dynamic_hw=not (isinstance(h, int) and isinstance(w, int)),
        sha256=file_sha256(p),
        task=meta.get("task", "detect"),
        metadata=meta,
    )


def _dims(value_info) -> list[int | str]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def _meta_imgsz(meta: dict[str, str]) -> tuple[int, int] | None:
    v = meta.get("imgsz")
    if not v:
        return None
    try:
        parsed = json.loads(v)
    except json.JSONDecodeError:
        import ast

        try:
            parsed = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            return None
    if isinstance(parsed, int):
        return parsed, parsed
    if isinstance(parsed, (list, tuple)) and len(parsed) == 2:
        return int(parsed[0]), int(parsed[1])
    return None


def info_from_metadata(path: Path, format: str, meta: dict, half: bool) -> ModelInfo:
    """ModelInfo of a compiled artifact (.pt2, .engine) from the metadata yolo-accel stored with it."""
    imgsz = tuple(int(v) for v in meta["imgsz"])
    return ModelInfo(
        path=path,
        format=format,
        family=meta.get("family", "unknown"),
        layout=meta.get("layout"),
        names={int(k): v for k, v in meta["names"].items()},
        stride=int(meta.get("stride", 32)),
        imgsz=(imgsz[0], imgsz[1]),
        batch=meta.get("batch"),
        half=half,
        dynamic_hw=False,
        sha256=file_sha256(path),
        metadata=meta,
    )


def prepare_for_export(module, family: str, dynamic: bool):
    """A copy of the model whose detection head returns one decoded tensor, as exporters expect."""
    m = copy.deepcopy(module)
    for sub in m.modules():
        if type(sub).__name__ in ("Detect", "v10Detect"):
            if getattr(sub, "end2end", False):
                raise ExportError(
                    "end-to-end (NMS-free) heads are not supported yet; export a standard Detect head model"
                )
            sub.export = True
            # dynamic: grids/anchors computed in the graph from the input size, so that the
            # declared dynamic height/width really work (a static file bakes them as constants)
            sub.dynamic = dynamic
            if family == "ultralytics":
                sub.format = "onnx"
            else:
                sub.inplace = False
    return m
