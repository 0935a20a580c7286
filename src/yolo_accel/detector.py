"""Detector = shared pre/post-processing (ops/) + one backend."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, get_backend_spec
from .backends.base import BACKENDS, forward_host, in_fixed_batches, takes_any_size
from .detections import Detections
from .device import parse_device
from .errors import SettingsError
from .images import read_image
from .names import parse_classes
from .ops import postprocess, preprocess
from .ops.letterbox import LetterboxInfo, check_imgsz

ImageLike = str | Path | np.ndarray


def resolve_backend_name(model: str | Path, backend: str | None) -> str:
    """The backend to use: the one named, else the one that runs the file's suffix."""
    if backend:
        return get_backend_spec(backend).name
    suffix = Path(model).suffix.lower()
    for spec in BACKENDS.values():
        if suffix in spec.suffixes:
            return spec.name
    return "torch"


def open_backend(
    model: str | Path,
    backend: str | None,
    device: str,
    half: bool = False,
    imgsz: int | None = None,
    ort_options=None,
    names_file=None,
    opset: int = 17,
    torch_options=None,
) -> Backend:
    """Build the backend for `model`; a `.pt` asked to run on onnxruntime (or compiled) goes through the
    ONNX (or AOTInductor) cache: exported once, reused after."""
    from .model import check_model_path

    name = resolve_backend_name(model, backend)
    spec = get_backend_spec(name)
    path = check_model_path(model, tuple(sorted({x for s in BACKENDS.values() for x in s.suffixes})))
    dev = parse_device(device)
    spec.check_available()
    if path.suffix.lower() not in spec.suffixes:
        if name == "onnxruntime" and path.suffix.lower() == ".pt":
            from .export.onnx import cached_onnx

            path = cached_onnx(path, imgsz=imgsz, half=half, device=dev, opset=opset)
        elif name == "compiled" and path.suffix.lower() == ".pt":
            from .export.compiled import cached_compiled

            path = cached_compiled(path, imgsz=imgsz, half=half, device=dev)
        elif name == "openvino" and path.suffix.lower() == ".pt":
            from .export.openvino import cached_openvino

            path = cached_openvino(path, imgsz=imgsz)
        elif name == "tensorrt" and path.suffix.lower() == ".pt":
            from .export.tensorrt import cached_engine

            path = cached_engine(path, imgsz=imgsz, half=True, device=dev)
        else:
            raise SettingsError(
                f"the {name} backend runs {', '.join(spec.suffixes)} files, not {path.name}; "
                f"use --backend {resolve_backend_name(path, None)} for {path.suffix} files"
            )
    cls = spec.load()
    return cls(path, dev, half=half, ort_options=ort_options, names_file=names_file, torch_options=torch_options)


@dataclass
class PendingBatch:
    """A batch whose device work is queued (`Detector.launch`); `Detector.finish` completes it."""

    n: int
    infos: list[LetterboxInfo]
    settings: tuple  # post-processing arguments
    raw: Any  # the network's output (device route)
    packed: Any  # the candidates' host copy (host route), filled when the last mark is reached
    marks: list | None  # CUDA events: start, letterboxed, inferred, candidates copied
    times: tuple[int, int, int, int]  # host ns: start (upload included), call, launched pre, launched infer


def _per_image(n: int, t0: int, t1: int, t2: int, t3: int) -> dict[str, float]:
    return {"pre": (t1 - t0) / 1e6 / n, "infer": (t2 - t1) / 1e6 / n, "post": (t3 - t2) / 1e6 / n}


class Detector:
    """A YOLO detector on one backend, with identical pre/post-processing for every backend.

    >>> det = Detector("yolov5n.pt", backend="onnxruntime", conf=0.25)
    >>> dets = det.predict(["bus.jpg"])[0]       # Detections in original-image pixels
    """

    def __init__(
        self,
        model: str | Path | Backend,
        backend: str | None = None,
        device: str = "cpu",
        half: bool = False,
        imgsz: int | Sequence[int] | None = None,
        conf: float = 0.25,
        iou: float = 0.45,
        classes: str | Sequence[str | int] | None = None,
        max_det: int = 300,
        *,
        rect: bool | None = None,
        agnostic_nms: bool = False,
        multi_label: bool = False,
        batch: int = 8,
        names_file: str | Path | None = None,
        ort_options: Any = None,
        torch_options: Any = None,
        gpu_ops: bool | None = None,
    ):
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise SettingsError(f"--conf and --iou must be between 0 and 1 (got conf={conf}, iou={iou})")
        if max_det < 1:
            raise SettingsError(f"--max-det must be at least 1 (got {max_det})")
        if isinstance(model, Backend):
            self.backend = model
        else:
            want = int(imgsz) if isinstance(imgsz, (int, np.integer)) else None
            self.backend = open_backend(
                model, backend, device, half, want, ort_options, names_file, torch_options=torch_options
            )
        info = self.backend.info
        self.info = info
        self.names = info.names
        fixed = self.backend.input_hw
        if imgsz is None:
            self.imgsz = fixed or info.imgsz
        else:
            self.imgsz = check_imgsz(imgsz, info.stride)
            if fixed and self.imgsz != tuple(fixed):
                raise SettingsError(
                    f"{info.path.name} takes {fixed[0]}x{fixed[1]} input only; export again with "
                    f"--imgsz {self.imgsz[0]} or leave --imgsz out"
                )
        # rect (minimal padding, as Ultralytics predict / YOLOv5 AutoShape): on by default wherever the
        # artifact takes any input size, except ONNX Runtime on CUDA, where every new input shape
        # triggers cuDNN's exhaustive algorithm search (seconds per shape); fixed-size files are square
        auto = takes_any_size(self.backend)
        self.rect = auto if rect is None else bool(rect and fixed is None)
        self.conf, self.iou, self.max_det, self.agnostic_nms = conf, iou, max_det, agnostic_nms
        self.multi_label = multi_label
        self.classes = parse_classes(classes, self.names) if classes is not None else None
        self.batch = max(1, int(batch))
        self.timings: list[dict[str, float]] = []
        # the GPU pipeline (ops.torch_ops): on wherever the backend takes device tensors
        if gpu_ops and not self.backend.device_io:
            raise SettingsError(
                "--gpu-ops needs a CUDA backend that takes device tensors: torch or compiled on --device cuda, "
                "or onnxruntime with IO binding"
            )
        self.gpu_ops = self.backend.device_io if gpu_ops is None else bool(gpu_ops)
        self._uploader = None

    # -- the three stages -------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """BGR uint8 images -> the backend's input batch and how each image was placed in it."""
        return preprocess(images, self.imgsz, self.info.stride, self.rect, self.backend.input_dtype)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Raw head output for a prepared NCHW batch (padded to a fixed batch size when the file has one)."""
        return forward_host(self.backend, batch)

    def forward_device(self, batch):
        """`forward` for a torch batch on the backend's device; the result stays there."""
        import torch

        run = self.backend.forward_device
        return in_fixed_batches(self.backend, batch, run, torch.cat, batch.new_zeros, torch.clone)

    def postprocess(self, raw: np.ndarray, infos: Sequence[LetterboxInfo]) -> list[Detections]:
        """Raw head output -> Detections in original-image pixels."""
        return postprocess(raw, infos, *self._post_settings(raw.shape))

    def _post_settings(self, raw_shape) -> tuple:
        """The post-processing arguments after (raw, infos), the same for the NumPy and torch flavours."""
        if self.info.layout is None:
            from .ops.nms import infer_layout

            self.info.layout = infer_layout(raw_shape)
        return (
            self.info.layout,
            self.names,
            self.conf,
            self.iou,
            self.classes,
            self.max_det,
            self.agnostic_nms,
            self.multi_label,
        )

    # -- convenience ------------------------------------------------------------------------
    def predict(self, images: ImageLike | Sequence[ImageLike]) -> list[Detections]:
        """Detect objects in one image or a list (paths or BGR uint8 arrays): one Detections each.

        Per-image timings (ms of pre-processing, inference and post-processing) are left in
        `self.timings`, in the same order.
        """
        if isinstance(images, (str, Path, np.ndarray)):
            images = [images]
        results: list[Detections] = []
        self.timings = []
        step = self.backend.batch_size or self.batch
        pending: list[np.ndarray] = []
        for im in images:
            img = im if isinstance(im, np.ndarray) else read_image(im)
            # rect batches hold images of one shape only, so that a result never depends on
            # which other images shared its batch
            if pending and (len(pending) == step or (self.rect and img.shape != pending[0].shape)):
                results.extend(self._run_chunk(pending))
                pending = []
            pending.append(img)
        if pending:
            results.extend(self._run_chunk(pending))
        return results

    def _run_chunk(self, chunk: list[np.ndarray]) -> list[Detections]:
        dets, per = self.detect_batch(chunk)
        self.timings.extend(dict(per) for _ in chunk)
        return dets

    def detect_batch(self, chunk: Sequence) -> tuple[list[Detections], dict[str, float]]:
        """Pre-process, infer and post-process one batch of BGR frames.

        Returns the Detections and the per-image time of each stage in ms (batch time / batch size).
        With the GPU pipeline, frames (host arrays, or uint8 HWC tensors already on the device) go up
        once and only the final boxes come back; "pre" includes the upload.
        """
        if self.gpu_ops:
            t0 = time.perf_counter_ns()
            return self.detect_device(self.upload(chunk), t0)
        t0 = time.perf_counter_ns()
        batch, infos = self.preprocess(chunk)
        t1 = time.perf_counter_ns()
        raw = self.forward(batch)
        t2 = time.perf_counter_ns()
        dets = self.postprocess(raw, infos)
        t3 = time.perf_counter_ns()
        return dets, _per_image(len(chunk), t0, t1, t2, t3)

    # -- the GPU pipeline ---------------------------------------------------------------------
    def upload(self, frames: Sequence, stream=None) -> list:
        """Host frames -> uint8 HWC tensors on the backend's device (pinned staging, non-blocking copy)."""
        if self._uploader is None:
            from .ops.torch_ops import FrameUploader

            self._uploader = FrameUploader(str(self.backend.device))
        return self._uploader.upload(frames, stream)

    def preprocess_device(self, frames: Sequence, shape: tuple[int, int] | None = None):
        """`preprocess` for uint8 HWC tensors on the backend's device: the batch in the backend's dtype
        and memory format, and the letterbox infos (`shape`: a fixed input shape, as validation uses)."""
        import torch

        from .ops.torch_ops import preprocess_torch

        channels_last = bool(getattr(getattr(self.backend, "options", None), "channels_last", False))
        dtype = torch.float16 if self.backend.half else torch.float32
        return preprocess_torch(
            frames, self.imgsz, self.info.stride, self.rect, dtype, shape=shape, channels_last=channels_last
        )

    def detect_device(self, frames: Sequence, t0: int | None = None) -> tuple[list[Detections], dict[str, float]]:
        """The GPU pipeline on frames already on the device: letterbox, infer, candidates there; NMS and
        scale-back on the host after one wait (see `ops.torch_ops.postprocess_torch`)."""
        return self.finish(self.launch(frames, t0))

    def launch(self, frames: Sequence, t0: int | None = None, keep_raw: bool = False) -> PendingBatch:
        """Queue a batch's device work (letterbox, network, candidate selection, the copy back) without
        waiting for it; `finish` completes it. Another batch may be launched before this one is
        finished (the video engine does, so that the host's NMS of one batch overlaps the device's
        work on the next): pass `keep_raw` then, so that the rare image with more candidates than
        come back can still take the device route after the network's output buffer was reused.

        Stage times come from CUDA events, not from waiting between stages: "pre" is the host time
        before this call (`t0`: the upload) plus the letterbox's device time, "infer" the network's
        device time, "post" the candidates' device time plus the host's NMS.
        """
        import torch

        from .ops.torch_ops import TOP_K, top_candidates

        t_call = time.perf_counter_ns()
        t0 = t_call if t0 is None else t0
        cuda = bool(frames[0].is_cuda)
        stream = torch.cuda.current_stream(frames[0].device) if cuda else None
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if cuda else None
        if marks:
            marks[0].record(stream)
        batch, infos = self.preprocess_device(frames)
        if marks:
            marks[1].record(stream)
        t1 = time.perf_counter_ns()
        raw = self.forward_device(batch)
        if marks:
            marks[2].record(stream)
        t2 = time.perf_counter_ns()
        settings = self._post_settings(raw.shape)
        layout, _, conf, _, classes, _, _, multi_label = settings
        packed = None
        if not multi_label:
            cand = top_candidates(raw, layout, conf, classes, TOP_K)
            packed = torch.empty(cand.shape, dtype=cand.dtype, pin_memory=cuda)
            packed.copy_(cand, non_blocking=True)
        if keep_raw and self.backend.reuses_output:  # the next batch's graph replay may overwrite it
            raw = raw.clone()
        if marks:
            marks[3].record(stream)
        return PendingBatch(len(frames), infos, settings, raw, packed, marks, (t0, t_call, t1, t2))

    def finish(self, p: PendingBatch, arrays: bool = False) -> tuple[list, dict[str, float]]:
        """Wait for a launched batch and finish it on the host: its Detections and per-image stage times.

        `arrays`: one (K, 6) float32 array per image instead ([x1, y1, x2, y2, confidence, class],
        what the video engine sends to its workers), without building Detections objects.
        """
        from .ops.torch_ops import finish_on_host, finish_packed, postprocess_torch

        t0, t_call, t1, t2 = p.times
        if p.marks:
            p.marks[3].synchronize()
        t3 = time.perf_counter_ns()
        dets = None
        if p.packed is not None:
            _, names, _, iou, _, max_det, agnostic, _ = p.settings
            if arrays:
                dets = finish_packed(p.packed.numpy(), p.infos, iou, max_det, agnostic)
            else:
                dets = finish_on_host(p.packed.numpy(), p.infos, names, iou, max_det, agnostic)
        if dets is None:  # multi-label, or more candidates than came back: the device route
            dets = postprocess_torch(p.raw, p.infos, *p.settings, host_nms=False)
            if arrays:
                dets = [d.to_array() for d in dets]
        t4 = time.perf_counter_ns()
        n = p.n
        if not p.marks:  # tensors on the CPU: the host did each stage in turn
            return dets, _per_image(n, t0, t1, t2, t4)
        m = p.marks
        pre = (t_call - t0) / 1e6 + m[0].elapsed_time(m[1])
        infer = m[1].elapsed_time(m[2])
        post = m[2].elapsed_time(m[3]) + (t4 - t3) / 1e6
        return dets, {"pre": pre / n, "infer": infer / n, "post": post / n}

    def describe(self) -> str:
        return self.backend.describe() + (", GPU pre/post" if self.gpu_ops else "")

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
