"""The torch flavour of ops/: letterbox, decode, NMS and scale-back on the device that holds the tensors.

On CUDA this is the GPU pipeline: uint8 frames go up once and only the final boxes come back.
It gives the same results as the NumPy/OpenCV flavour (tests compare the two on the CPU and the
GPU): the letterbox geometry is the same `plan_letterbox`, the resize is the same half-pixel
bilinear rule as OpenCV's INTER_LINEAR (rounded to whole grey levels as OpenCV's uint8 output
is), and NMS is torchvision's `nms` over image x class groups (see `_batched_nms`), which equals
OpenCV's for the same candidates.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from ..detections import Detections
from .letterbox import PAD_VALUE, LetterboxInfo, batch_input_shape, plan_letterbox
from .nms import MAX_NMS, num_classes

TOP_K = 1024  # candidates per image brought back by the host route; more than this falls back to the device route


def preprocess_torch(
    frames: Sequence,
    imgsz: tuple[int, int],
    stride: int = 32,
    rect: bool = False,
    dtype=None,
    shape: tuple[int, int] | None = None,
    channels_last: bool = False,
):
    """BGR uint8 HWC tensors (one device) -> RGB NCHW batch in [0, 1] of `dtype`, and the letterbox infos.

    Same arguments and results as `ops.letterbox.preprocess`.
    """
    import torch
    import torch.nn.functional as F

    if not len(frames):
        raise ValueError("preprocess needs at least one image")
    shapes = [tuple(int(v) for v in f.shape[:2]) for f in frames]
    shape, cap = batch_input_shape(shapes, imgsz, stride, rect, shape)
    dtype = dtype or torch.float32
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batch = torch.empty((len(frames), 3, *shape), dtype=dtype, device=frames[0].device, memory_format=memory_format)
    batch.fill_(PAD_VALUE / 255.0)
    unique = {s: plan_letterbox(s, shape, None if cap is None else cap / max(s)) for s in set(shapes)}
    plans = [unique[s] for s in shapes]  # a video batch has one frame size: one plan, not one per frame
    # frames of one size share one plan: a video batch is resized in one interpolate call
    groups: dict[tuple, list[int]] = {}
    for i, (s, p) in enumerate(zip(shapes, plans)):
        groups.setdefault((s, p.resized, p.border), []).append(i)
    for (_, (w, h), (top, _, left, _)), idx in groups.items():
        x = torch.stack([frames[i] for i in idx]) if len(idx) > 1 else frames[idx[0]][None]
        x = x.permute(0, 3, 1, 2).float()  # NHWC uint8 -> NCHW float (a channels-last view, no copy)
        if tuple(x.shape[2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            # OpenCV's resize of uint8 rounds to whole levels; so do we (no clamp needed: bilinear
            # weights are a convex combination, the result stays within 0..255)
            x = x.round_()
        x = x.flip(1).mul_(1 / 255.0)  # BGR -> RGB, [0, 1]; the copy into the batch casts to dtype
        if len(idx) == len(frames):
            batch[:, :, top : top + h, left : left + w] = x
        else:
            # index_put does not cast as the slice copy above does
            batch[torch.tensor(idx, device=batch.device), :, top : top + h, left : left + w] = x.to(dtype)
    return batch, [p.info for p in plans]


def _rank_within(group, score, n_groups: int):
    """Rank of each element by descending score within its group (0 = best), without a host sync."""
    import torch

    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(group[order], stable=True)]  # grouped, best first inside each group
    counts = torch.bincount(group, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - starts[group[order]]
    return rank


def _xywh2xyxy(xywh):
    import torch

    half = xywh[:, 2:] / 2
    return torch.cat([xywh[:, :2] - half, xywh[:, :2] + half], 1)


@functools.lru_cache(maxsize=16)
def _class_mask(classes: tuple[int, ...], nc: int, device):
    """A (nc,) bool tensor on `device`, True for the wanted classes; cached, so that a video's
    frames do not each upload it (an upload from pageable memory can wait for the device)."""
    import torch

    mask = torch.zeros(nc, dtype=torch.bool)
    mask[[c for c in classes if 0 <= c < nc]] = True
    return mask.to(device)


def _candidates(raw, layout: str, conf: float, classes, multi_label: bool):
    """(image, box row, score, class id) of every candidate above `conf` in a batch, with one host sync.

    Scores are taken over the whole (N, A, nc) block at once rather than after a first filter: on a
    GPU that costs microseconds, and each boolean filter would be one more wait for the device.
    YOLOv5 candidates need objectness > conf and objectness * class score > conf; the second implies
    the first (class scores are at most 1), so one test on the product is the same rule.
    """

    if layout == "v8":
        raw = raw.transpose(1, 2)  # (N, 4 + nc, A) -> (N, A, 4 + nc)
        scores = raw[..., 4:]
    elif layout == "v5":
        scores = raw[..., 5:] * raw[..., 4:5]
    else:
        raise ValueError(f"unknown head layout {layout!r}")
    wanted = None if classes is None else _class_mask(tuple(classes), scores.shape[-1], raw.device)
    if multi_label:
        mask = scores > conf
        if wanted is not None:
            mask &= wanted
        img, anchor, class_id = mask.nonzero(as_tuple=True)
        score = scores[img, anchor, class_id]
    else:
        best, best_class = scores.max(-1)
        mask = best > conf
        if wanted is not None:
            mask &= wanted[best_class]
        img, anchor = mask.nonzero(as_tuple=True)
        score, class_id = best[img, anchor], best_class[img, anchor]
    return img, raw[img, anchor, :4], score, class_id


def _scale_back(xyxy, img, infos: Sequence[LetterboxInfo]):
    """Boxes in network-input pixels -> original pixels, clipped to the image (as `ops.boxes.scale_boxes`)."""
    import torch

    if len({(i.pad, i.ratio, i.orig_shape) for i in infos}) == 1:
        # one letterbox for the whole batch (a video): scalars in the kernels, no table to upload
        info = infos[0]
        (px, py), r, (h, w) = info.pad, info.ratio, info.orig_shape
        out = xyxy.clone()
        out[:, 0::2] -= px
        out[:, 1::2] -= py
        out /= r
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
        return out
    meta = torch.tensor([[*i.pad, i.ratio, i.orig_shape[1], i.orig_shape[0]] for i in infos], dtype=torch.float32)
    m = meta.to(xyxy.device)[img]
    out = (xyxy - m[:, [0, 1, 0, 1]]) / m[:, 2:3]
    return torch.minimum(out.clamp_(min=0), m[:, [3, 4, 3, 4]])


def _batched_nms(xyxy, score, group, iou: float):
    """Per-group NMS in one torchvision `nms` call: boxes of different groups are moved apart by offsets.

    This is torchvision's own `batched_nms` coordinate trick, done in float64. Why not call
    `batched_nms`: it offsets in the boxes' dtype, and our groups are image x class, so offsets
    reach batch * classes * (largest coordinate + 1); past 2**24 float32 no longer holds a box
    corner to the pixel and IoU tests go wrong (a batch of 32 at 640 px with 80 classes gets
    there). Above a size threshold it also switches to one `nms` call per group, hundreds for a
    validation batch. float64 is exact far beyond any batch, and it is still one call.
    """
    import torchvision

    boxes = xyxy.double()
    offsets = group.double() * (boxes.max() + 1)  # a device scalar: no host round trip
    return torchvision.ops.nms(boxes + offsets[:, None], score.double(), iou)


def top_candidates(raw, layout: str, conf: float, classes, k: int = TOP_K):
    """Each image's best `k` candidates and how many are above `conf`, without waiting for the device.

    Returns one float32 tensor (N, k + 1, 6): rows [x1, y1, x2, y2, score, class] best first, and in
    the last row, column 0, the number of candidates above `conf` (rows past that number are filler).
    A fixed-size top-k replaces the boolean filter, whose size the host would have to wait for.
    The best class is found in the output's own dtype (FP16 stays FP16): multiplying by a
    non-negative objectness keeps the order of class scores, and YOLOv5's score objectness x class
    score is then formed once per box in float32, as the NumPy flavour forms it.
    """
    import torch

    if layout == "v8":
        rows = raw.transpose(1, 2)  # (N, A, 4 + nc), a view
        best, best_class = rows[..., 4:].max(-1)
        best = best.float()
    elif layout == "v5":
        rows = raw
        best, best_class = raw[..., 5:].max(-1)
        best = raw[..., 4].float() * best.float()
    else:
        raise ValueError(f"unknown head layout {layout!r}")
    above = best > conf
    if classes is not None:
        above &= _class_mask(tuple(classes), num_classes(raw.shape, layout), raw.device)[best_class]
    k = min(k, best.shape[1])
    top, idx = torch.where(above, best, -1.0).topk(k, dim=1)
    boxes = rows[..., :4].gather(1, idx[..., None].expand(-1, -1, 4)).float()
    out = torch.zeros((raw.shape[0], k + 1, 6), dtype=torch.float32, device=raw.device)
    out[:, :k, :4] = _xywh2xyxy(boxes.reshape(-1, 4)).view(-1, k, 4)
    out[:, :k, 4] = top
    out[:, :k, 5] = best_class.gather(1, idx).float()
    out[:, k, 0] = above.sum(1).float()
    return out


def finish_packed(packed: np.ndarray, infos, iou: float, max_det: int, agnostic: bool) -> list[np.ndarray] | None:
    """`top_candidates` brought to the host -> one (K, 6) float32 array per image, [x1, y1, x2, y2,
    confidence, class] in original pixels, best first: the NumPy/OpenCV `nms` and `scale_boxes`.

    Images that share a letterbox (a video batch) are scaled back in one call. None when an image
    has more candidates than were brought back (take the device route then).
    """
    from .boxes import scale_boxes
    from .nms import nms

    k = packed.shape[1] - 1
    counts = packed[:, k, 0].astype(np.int64)
    if (counts > k).any():
        return None
    kept = []
    for i in range(len(infos)):
        rows = packed[i, : counts[i]]
        kept.append(rows[nms(rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64), iou, max_det, agnostic)])
    groups: dict[tuple, list[int]] = {}
    for i, info in enumerate(infos):
        groups.setdefault((info.pad, info.ratio, info.orig_shape), []).append(i)
    for idx in groups.values():
        boxes = scale_boxes(np.concatenate([kept[i][:, :4] for i in idx]), infos[idx[0]])
        start = 0
        for i in idx:
            kept[i][:, :4] = boxes[start : start + len(kept[i])]
            start += len(kept[i])
    return kept


def finish_on_host(packed: np.ndarray, infos, names, iou: float, max_det: int, agnostic: bool):
    """`finish_packed` as Detections (None when the device route must run)."""
    arrays = finish_packed(packed, infos, iou, max_det, agnostic)
    if arrays is None:
        return None
    return [
        Detections(a[:, :4].copy(), a[:, 4].copy(), a[:, 5].astype(np.int64), names, info.orig_shape)
        for a, info in zip(arrays, infos)
    ]


def postprocess_torch(
    raw,
    infos: Sequence[LetterboxInfo],
    layout: str,
    names: Mapping[int, str],
    conf: float = 0.25,
    iou: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    agnostic: bool = False,
    multi_label: bool = False,
    host_nms: bool | None = None,
) -> list[Detections]:
    """Raw head output of a batch (a tensor on any device) -> one Detections per image.

    Two routes with the same results (tests hold both to `ops.nms.postprocess`):
    - the host route (`host_nms`, the default for single-label prediction): each image's top
      candidates are picked on the device (`top_candidates`) and come back in one copy, the only
      wait for the device; NMS and scale-back run per image in NumPy/OpenCV. One NMS over a whole
      batch costs the square of all its candidates (128 video frames: 3 ms of device time and two
      more waits); per image it is tens of microseconds of host time.
    - the device route (multi-label validation, or an image with more than TOP_K candidates): the
      whole batch is decoded and suppressed on the device at once (one `nms` call over image x class
      groups), boxes are mapped back there, and one (K, 7) array comes back. The device is waited
      for three times: for the number of candidates, inside NMS, and for the final boxes.
    Same arguments and results as `ops.nms.postprocess`.
    """
    import torch

    n = raw.shape[0]
    if host_nms is None:
        host_nms = not multi_label
    if host_nms and not multi_label:
        packed = top_candidates(raw, layout, conf, classes).cpu().numpy()
        out = finish_on_host(packed, infos, names, iou, max_det, agnostic)
        if out is not None:
            return out
    img, xywh, score, class_id = _candidates(raw.float(), layout, conf, classes, multi_label)
    if len(score) == 0:
        packed = np.zeros((0, 7), np.float32)
    else:
        if len(score) > MAX_NMS:  # the CPU flavour keeps each image's MAX_NMS best candidates
            keep = (_rank_within(img, score, n) < MAX_NMS).nonzero().squeeze(1)
            img, xywh, score, class_id = img[keep], xywh[keep], score[keep], class_id[keep]
        xyxy = _xywh2xyxy(xywh)
        group = img if agnostic else img * num_classes(raw.shape, layout) + class_id
        kept = _batched_nms(xyxy, score, group, iou)  # best first
        if len(kept) > max_det:  # only then can one image hold more than max_det
            kept = kept[_rank_within(img[kept], score[kept], n) < max_det]
        img, score, class_id = img[kept], score[kept], class_id[kept]
        boxes = _scale_back(xyxy[kept], img, infos)
        packed = torch.cat([boxes, score[:, None], class_id[:, None].float(), img[:, None].float()], 1)
        packed = packed.cpu().numpy()
    out = []
    for i, info in enumerate(infos):
        mine = packed[packed[:, 6] == i]
        out.append(
            Detections(
                np.ascontiguousarray(mine[:, :4]),
                np.ascontiguousarray(mine[:, 4]),
                mine[:, 5].astype(np.int64),
                names,
                info.orig_shape,
            )
        )
    return out


class FrameUploader:
    """uint8 frames in host memory -> device tensors: one pinned staging buffer per batch, one non-blocking copy.

    Staging buffers are reused (a small ring per batch signature); a buffer is written again only
    after its previous copy has finished, so uploads can run on a side stream while the previous
    batch computes.
    """

    def __init__(self, device, depth: int = 2, signatures: int = 4):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.depth, self.signatures = depth, signatures
        self._rings: OrderedDict[tuple, list] = OrderedDict()
        self._turn: dict[tuple, int] = {}

    def _slot(self, signature: tuple, nbytes: int):
        torch = self._torch
        ring = self._rings.get(signature)
        if ring is None:
            ring = self._rings[signature] = [
                [torch.empty(nbytes, dtype=torch.uint8, pin_memory=True), None] for _ in range(self.depth)
            ]
            while len(self._rings) > self.signatures:  # frame sizes change rarely; keep the recent ones
                old, _ = self._rings.popitem(last=False)
                self._turn.pop(old, None)
        else:
            self._rings.move_to_end(signature)
        turn = self._turn.get(signature, 0)
        self._turn[signature] = (turn + 1) % self.depth
        slot = ring[turn]
        if slot[1] is not None:
            slot[1].synchronize()  # its previous copy must be done before we overwrite the buffer
        return slot

    def upload(self, frames: Sequence, stream=None) -> list:
        """Device uint8 HWC tensors for `frames` (NumPy arrays, or tensors already on the device)."""
        torch = self._torch
        if all(isinstance(f, torch.Tensor) and f.device == self.device for f in frames):
            return list(frames)
        arrays = [np.ascontiguousarray(f) for f in frames]
        sizes = [a.nbytes for a in arrays]
        signature = tuple(a.shape for a in arrays)
        slot = self._slot(signature, sum(sizes))
        offsets = np.cumsum([0, *sizes])
        for a, o, s in zip(arrays, offsets, sizes):
            # torch's CPU copy is split over its intra-op threads (numpy's slice assignment uses
            # one): for a 1080p frame this host copy is the biggest part of the upload
            slot[0][o : o + s].copy_(torch.from_numpy(a).reshape(-1))
        stream = stream or torch.cuda.current_stream(self.device)
        with torch.cuda.stream(stream):
            flat = slot[0].to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record(stream)
        return [flat[o : o + s].view(a.shape) for a, o, s in zip(arrays, offsets, sizes)]
