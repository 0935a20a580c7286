"""Pre- and post-processing shared by every backend (NumPy/OpenCV flavour)."""

from .boxes import box_iou, scale_boxes, xywh2xyxy
from .letterbox import LetterboxInfo, letterbox, preprocess
from .nms import decode, postprocess

__all__ = [
    "LetterboxInfo",
    "box_iou",
    "decode",
    "letterbox",
    "postprocess",
    "preprocess",
    "scale_boxes",
    "xywh2xyxy",
]
