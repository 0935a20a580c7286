"""Parity of two backends on the same prepared inputs: an export's check against the PyTorch model.

It runs below the Detector (backends and ops only), so that the artifact caches the Detector fills
(a `.pt` asked to run on ONNX Runtime is exported once) can check what they build.
"""

from __future__ import annotations

from ..backends.base import Backend, forward_host, takes_any_size
from ..evaluate.similarity import ParityReport, ParityRow, RawDiff, match_detections
from ..images import read_image
from ..ops import postprocess, preprocess
from ..ops.nms import infer_layout

# predict's defaults: parity is judged on the detections a user gets without options
CONF, IOU, MAX_DET = 0.25, 0.45, 300


def compare_backends(
    reference: Backend,
    test: Backend,
    images,
    imgsz: tuple[int, int],
    threshold: float = 0.98,
    iou_threshold: float = 0.5,
    progress=None,
) -> ParityReport:
    """Run two backends on the same letterboxed inputs, image by image, and compare raw outputs and
    detections.

    Both see exactly the same batch (rectangular only when both take any input size), so any
    difference is the backend's, never the glue's.
    """
    rect = takes_any_size(reference) and takes_any_size(test)
    names = reference.info.names
    rows = []
    for path in images:
        img = read_image(path)
        batch, infos = preprocess([img], imgsz, reference.info.stride, rect)
        raw_ref = forward_host(reference, batch.astype(reference.input_dtype, copy=False))
        raw_test = forward_host(test, batch.astype(test.input_dtype, copy=False))
        dets = [
            postprocess(raw, infos, _layout(b, raw), names, CONF, IOU, None, MAX_DET, False, False)[0]
            for b, raw in ((reference, raw_ref), (test, raw_test))
        ]
        rows.append(
            ParityRow(
                str(getattr(path, "name", path)),
                RawDiff.compute(raw_ref, raw_test),
                match_detections(dets[0], dets[1], iou_threshold),
            )
        )
        if progress:
            progress()
    return ParityReport(reference.describe(), test.describe(), rows, threshold)


def _layout(backend: Backend, raw) -> str:
    if backend.info.layout is None:
        backend.info.layout = infer_layout(raw.shape)
    return backend.info.layout
