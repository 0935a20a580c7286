"""Letterbox resize and batch preparation: BGR uint8 images -> RGB float NCHW in [0, 1].

The letterbox follows Ultralytics / YOLOv5 exactly (INTER_LINEAR resize, grey 114 padding split
as round(d - 0.1) / round(d + 0.1)), so that our inputs equal theirs pixel for pixel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SettingsError, YoloAccelWarning

PAD_VALUE = 114
MAX_IMGSZ = 8192  # the network input side; larger ones only exhaust memory (the batch is side**2)


@dataclass(frozen=True)
class LetterboxInfo:
    """How one original image was placed in the network input, to map boxes back."""

    orig_shape: tuple[int, int]  # (h, w) of the original image
    input_shape: tuple[int, int]  # (h, w) of the network input
    ratio: float  # resize gain, original -> input
    pad: tuple[int, int]  # (left, top) padding in input pixels


def make_divisible(x: float, divisor: int) -> int:
    """Smallest multiple of `divisor` that is >= x."""
    return int(math.ceil(x / divisor) * divisor)


@dataclass(frozen=True)
class LetterboxPlan:
    """Where a letterboxed image goes: its resized size and the padding on each side."""

    resized: tuple[int, int]  # (w, h) after the resize
    border: tuple[int, int, int, int]  # (top, bottom, left, right) padding in input pixels
    info: LetterboxInfo


def plan_letterbox(orig_hw: tuple[int, int], new_shape: tuple[int, int], ratio: float | None = None) -> LetterboxPlan:
    """The letterbox geometry for one image: shared by the OpenCV and the torch (GPU) letterbox.

    `ratio` caps the resize gain (validation batches are larger than the image on purpose).
    """
    h0, w0 = orig_hw
    nh, nw = new_shape
    r = min(nh / h0, nw / w0) if ratio is None else min(nh / h0, nw / w0, ratio)
    # at least one pixel: a 1 x 100,000 image would round to zero width (as in Ultralytics, which then fails)
    unpad_w, unpad_h = max(1, round(w0 * r)), max(1, round(h0 * r))
    dw, dh = (nw - unpad_w) / 2, (nh - unpad_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return LetterboxPlan(
        (unpad_w, unpad_h), (top, bottom, left, right), LetterboxInfo((h0, w0), (nh, nw), r, (left, top))
    )


def letterbox(
    image: np.ndarray, new_shape: tuple[int, int], ratio: float | None = None
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize `image` keeping its aspect ratio to fit (h, w) `new_shape`, centred, padded with grey."""
    plan = plan_letterbox(image.shape[:2], new_shape, ratio)
    if image.shape[1::-1] != plan.resized:
        image = cv2.resize(image, plan.resized, interpolation=cv2.INTER_LINEAR)
    top, bottom, left, right = plan.border
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
        )
    return image, plan.info


def rect_shape(shapes: Sequence[tuple[int, int]], imgsz: tuple[int, int], stride: int) -> tuple[int, int]:
    """The smallest stride-multiple input that holds every image of a batch at `imgsz` scale.

    This is the "rectangular" inference of Ultralytics predict / YOLOv5 AutoShape: for one
    1280x720 image at 640 it gives 640x384 instead of 640x640.
    """
    h_max = w_max = 0
    for h0, w0 in shapes:
        r = min(imgsz[0] / h0, imgsz[1] / w0)
        h_max, w_max = max(h_max, round(h0 * r)), max(w_max, round(w0 * r))
    # at least one stride a side (an extreme aspect ratio rounds its short side to 0)
    return make_divisible(max(h_max, 1), stride), make_divisible(max(w_max, 1), stride)


def batch_shape(shapes: Sequence[tuple[int, int]], imgsz: int, stride: int, pad: float = 0.5) -> tuple[int, int]:
    """One input shape for a batch of similar aspect ratios, as YOLOv5 / Ultralytics validation build it.

    The long side gets `pad` strides of extra grey border, which is what their mAP figures use.
    """
    ar = np.asarray([h / w for h, w in shapes])
    lo, hi = ar.min(), ar.max()
    rel = (hi, 1.0) if hi < 1 else ((1.0, 1 / lo) if lo > 1 else (1.0, 1.0))
    return tuple(int(math.ceil(v * imgsz / stride + pad) * stride) for v in rel)


def batch_input_shape(
    shapes: Sequence[tuple[int, int]],
    imgsz: tuple[int, int],
    stride: int = 32,
    rect: bool = False,
    shape: tuple[int, int] | None = None,
) -> tuple[tuple[int, int], float | None]:
    """The (h, w) input of a batch and the resize-gain cap per image (see `preprocess`)."""
    if shape is not None:
        return tuple(shape), min(imgsz[0], imgsz[1])
    return (rect_shape(shapes, imgsz, stride) if rect else tuple(imgsz)), None


def preprocess(
    images: Sequence[np.ndarray],
    imgsz: tuple[int, int],
    stride: int = 32,
    rect: bool = False,
    dtype: type = np.float32,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Letterbox BGR uint8 HWC images into one RGB NCHW batch scaled to [0, 1].

    rect=False gives every image the fixed `imgsz` input (what a static ONNX file needs and what
    makes backends comparable); rect=True uses the smallest stride-multiple shape for the batch.
    An explicit `shape` (see batch_shape) wins over both; images then keep the `imgsz` scale.
    """
    if not images:
        raise ValueError("preprocess needs at least one image")
    shape, cap = batch_input_shape([im.shape[:2] for im in images], imgsz, stride, rect, shape)
    batch = np.empty((len(images), 3, shape[0], shape[1]), dtype=dtype)
    infos = []
    for i, im in enumerate(images):
        boxed, info = letterbox(im, shape, None if cap is None else cap / max(im.shape[:2]))
        # BGR -> RGB and HWC -> CHW in one strided view, then scale into the batch
        np.multiply(boxed[..., ::-1].transpose(2, 0, 1), 1 / 255.0, out=batch[i], casting="unsafe")
        infos.append(info)
    return batch, infos


def check_imgsz(imgsz: int | Sequence[int], stride: int) -> tuple[int, int]:
    """(h, w) multiples of the stride; rounds up with a warning as Ultralytics does."""
    hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(int(v) for v in imgsz)
    if len(hw) != 2 or min(hw) <= 0:
        raise SettingsError(f"--imgsz must be a positive size, got {imgsz!r}")
    fixed = tuple(make_divisible(v, stride) for v in hw)
    if fixed != hw:
        warnings.warn(
            f"--imgsz {hw[0] if hw[0] == hw[1] else hw} is not a multiple of the model stride "
            f"{stride}: using {fixed[0] if fixed[0] == fixed[1] else fixed}",
            YoloAccelWarning,
            stacklevel=3,
        )
    return fixed
