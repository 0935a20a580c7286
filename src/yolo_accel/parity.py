"""Parity of two Detectors on the same prepared inputs (export's check). evaluate/ only compares results."""

from __future__ import annotations

from .evaluate.similarity import ParityReport, ParityRow, RawDiff, match_detections


def compare_detectors(
    reference, test, images, threshold: float = 0.98, iou_threshold: float = 0.5, progress=None
) -> ParityReport:
    """Run two Detectors on the same prepared inputs, image by image, and compare them.

    Both see exactly the same letterboxed batch (rectangular only when both take any input
    size), so any difference is the backend's, never the glue's.
    """
    from .images import read_image
    from .ops import preprocess

    rect = reference.rect and test.rect

    rows = []
    for path in images:
        img = read_image(path)
        batch, infos = preprocess([img], reference.imgsz, reference.info.stride, rect)
        raw_ref = reference.forward(batch.astype(reference.backend.input_dtype, copy=False))
        raw_test = test.forward(batch.astype(test.backend.input_dtype, copy=False))
        det_ref = reference.postprocess(raw_ref, infos)[0]
        det_test = test.postprocess(raw_test, infos)[0]
        rows.append(
            ParityRow(
                str(getattr(path, "name", path)),
                RawDiff.compute(raw_ref, raw_test),
                match_detections(det_ref, det_test, iou_threshold),
            )
        )
        if progress:
            progress()
    return ParityReport(reference.describe(), test.describe(), rows, threshold)
