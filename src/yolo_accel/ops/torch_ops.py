"""The torch flavour of ops/: letterbox, decode, NMS and scale-back on the device that holds the tensors.

On CUDA this is the GPU pipeline: uint8 frames go up once and only the final boxes come back.
It gives the same results as the NumPy/OpenCV flavour (tests compare the two on the CPU and the
GPU): the letterbox geometry is the same `plan_letterbox`, the resize is the same half-pixel
bilinear rule as OpenCV's INTER_LINEAR (rounded to whole grey levels as OpenCV's uint8 output
is), and NMS is torchvision's `batched_nms`, which equals OpenCV's for the same candidates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from ..detections import Detections
from .letterbox import PAD_VALUE, LetterboxInfo, batch_input_shape, plan_letterbox
from .nms import MAX_NMS


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
    batch = torch.full((len(frames), 3, *shape), PAD_VALUE / 255.0, dtype=dtype, device=frames[0].device).contiguous(
        memory_format=memory_format
    )
    plans = [plan_letterbox(s, shape, None if cap is None else cap / max(s)) for s in shapes]
    # frames of one size share one plan: a video batch is resized in one interpolate call
    groups: dict[tuple, list[int]] = {}
    for i, (s, p) in enumerate(zip(shapes, plans)):
        groups.setdefault((s, p.resized, p.border), []).append(i)
    for (_, (w, h), (top, _, left, _)), idx in groups.items():
        x = torch.stack([frames[i] for i in idx]) if len(idx) > 1 else frames[idx[0]][None]
        x = x.permute(0, 3, 1, 2).float()  # NHWC uint8 -> NCHW float (a channels-last view, no copy)
        if tuple(x.shape[2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            x = x.round_().clamp_(0, 255)  # OpenCV's resize of uint8 rounds to whole levels; so do we
        x = x.flip(1).mul_(1 / 255.0).to(dtype)  # BGR -> RGB, [0, 1]
        if len(idx) == len(frames):
            batch[:, :, top : top + h, left : left + w] = x
        else:
            batch[torch.tensor(idx, device=batch.device), :, top : top + h, left : left + w] = x
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
) -> list[Detections]:
    """Raw head output of a batch (a tensor on any device) -> one Detections per image.

    The whole batch is decoded and suppressed at once (one `batched_nms` keyed on image and class),
    boxes are mapped back to original pixels on the device, and one (K, 7) array comes back.
    Same arguments and results as `ops.nms.postprocess`.
    """
    import torch
    import torchvision

    n = raw.shape[0]
    raw = raw.float()
    if layout == "v8":
        raw = raw.transpose(1, 2)  # (N, 4 + nc, A) -> (N, A, 4 + nc)
        img, anchor = (raw[..., 4:].amax(-1) > conf).nonzero(as_tuple=True)
        rows = raw[img, anchor]
        cls_scores = rows[:, 4:]
    elif layout == "v5":
        img, anchor = (raw[..., 4] > conf).nonzero(as_tuple=True)
        rows = raw[img, anchor]
        cls_scores = rows[:, 5:] * rows[:, 4:5]
    else:
        raise ValueError(f"unknown head layout {layout!r}")
    nc = cls_scores.shape[1]
    xyxy = _xywh2xyxy(rows[:, :4])
    if multi_label:
        box_i, class_id = (cls_scores > conf).nonzero(as_tuple=True)
        score, xyxy, img = cls_scores[box_i, class_id], xyxy[box_i], img[box_i]
    else:
        score, class_id = cls_scores.max(1)
        keep = score > conf
        score, class_id, xyxy, img = score[keep], class_id[keep], xyxy[keep], img[keep]
    if classes is not None:
        keep = torch.isin(class_id, torch.as_tensor(list(classes), device=class_id.device))
        score, class_id, xyxy, img = score[keep], class_id[keep], xyxy[keep], img[keep]
    if len(score) > MAX_NMS:  # the CPU flavour keeps each image's MAX_NMS best candidates
        keep = _rank_within(img, score, n) < MAX_NMS
        score, class_id, xyxy, img = score[keep], class_id[keep], xyxy[keep], img[keep]
    group = img * (1 if agnostic else nc) + (0 if agnostic else class_id)
    kept = torchvision.ops.batched_nms(xyxy, score, group, iou)  # best first
    kept = kept[_rank_within(img[kept], score[kept], n) < max_det]
    meta = torch.tensor(
        [[i.pad[0], i.pad[1], i.ratio, i.orig_shape[1], i.orig_shape[0]] for i in infos], dtype=torch.float32
    ).to(raw.device, non_blocking=True)
    m = meta[img[kept]]
    boxes = (xyxy[kept] - m[:, [0, 1, 0, 1]]) / m[:, 2:3]
    boxes = torch.minimum(boxes.clamp_(min=0), m[:, [3, 4, 3, 4]])
    packed = torch.cat([boxes, score[kept, None], class_id[kept, None].float(), img[kept, None].float()], 1)
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
        host = slot[0].numpy()
        offsets = np.cumsum([0, *sizes])
        for a, o, s in zip(arrays, offsets, sizes):
            host[o : o + s] = a.reshape(-1)
        stream = stream or torch.cuda.current_stream(self.device)
        with torch.cuda.stream(stream):
            flat = slot[0].to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record(stream)
        return [flat[o : o + s].view(a.shape) for a, o, s in zip(arrays, offsets, sizes)]
