"""mAP with faster-coco-eval on COCO-style records built from the ground truth and Detections."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from .._deps import require
from ..detections import Detections


@dataclass
class MapResult:
    """COCO bbox metrics for one set of detections (maxDets = max_det, all areas)."""

    map50_95: float
    map50: float
    precision: float  # at IoU 0.5, each class at its best-F1 point, averaged over classes
    recall: float
    per_class: list[dict] = field(default_factory=list)  # name, instances, ap50, ap50_95
    pr_recall: list[float] = field(default_factory=list)  # mean PR curve at IoU 0.5 (101 points)
    pr_precision: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class CocoAccumulator:
    """Ground truth once, detections per backend; records are small, images are never kept."""

    def __init__(self, names: dict[int, str]):
        self.names = dict(names)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.detections: dict[str, list[dict]] = {}
        self._instances = np.zeros(max(self.names, default=-1) + 1, np.int64)

    def add_image(
        self,
        image_id: int,
        height: int,
        width: int,
        xyxy: np.ndarray,
        class_id: np.ndarray,
        iscrowd: np.ndarray | None = None,
    ) -> None:
        self.images.append({"id": image_id, "height": height, "width": width})
        for k, (box, c) in enumerate(zip(xyxy, class_id)):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            crowd = int(iscrowd[k]) if iscrowd is not None and len(iscrowd) else 0
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(c) + 1,
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            if not crowd:
                self._instances[int(c)] += 1

    def add_detections(self, key: str, image_id: int, dets: Detections) -> None:
        out = self.detections.setdefault(key, [])
        for box, conf, c in dets:
            out.append(
                {
                    "image_id": image_id,
                    "category_id": c + 1,
                    "score": conf,
                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                }
            )

    def gt_dict(self) -> dict:
        cats = [{"id": i + 1, "name": n} for i, n in sorted(self.names.items())]
        return {"images": self.images, "annotations": self.annotations, "categories": cats}

    def evaluate(self, key: str, max_det: int = 300) -> MapResult:
        """COCO evaluation of one backend's detections."""
        fce = require("faster_coco_eval")
        COCO, COCOeval_faster = fce.COCO, fce.COCOeval_faster

        dets = self.detections.get(key, [])
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(self.gt_dict())
            if not dets:
                return MapResult(0.0, 0.0, 0.0, 0.0)
            dt = gt.loadRes(dets)
            ev = COCOeval_faster(gt, dt, iouType="bbox")
            ev.params.maxDets = [1, 10, max_det]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return self._result(ev)

    def _result(self, ev) -> MapResult:
        prec = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]: IoU, recall, class, area, maxDets
        p_all = prec[:, :, :, 0, -1]
        rec_thr = np.asarray(ev.params.recThrs)
        per_class, best_p, best_r = [], [], []
        cat_ids = list(ev.params.catIds)
        for k, cat in enumerate(cat_ids):
            cls = cat - 1
            pk = p_all[:, :, k]
            if (pk < 0).all():
                continue  # no ground truth for this class
            ap = float(pk[pk >= 0].mean())
            p50 = pk[0]
            ap50 = float(p50[p50 >= 0].mean()) if (p50 >= 0).any() else 0.0
            valid = p50 > 0
            if valid.any():
                f1 = np.where(valid, 2 * p50 * rec_thr / np.maximum(p50 + rec_thr, 1e-9), 0)
                i = int(f1.argmax())
                best_p.append(float(p50[i]))
                best_r.append(float(rec_thr[i]))
            else:
                best_p.append(0.0)
                best_r.append(0.0)
            per_class.append(
                {
                    "class_id": cls,
                    "name": self.names.get(cls, str(cls)),
                    "instances": int(self._instances[cls]) if cls < len(self._instances) else 0,
                    "ap50": ap50,
                    "ap50_95": ap,
                }
            )
        p50 = p_all[0]
        mean_curve = [float(np.mean(row[row >= 0])) if (row >= 0).any() else 0.0 for row in p50]
        return MapResult(
            float(ev.stats[0]),
            float(ev.stats[1]),
            float(np.mean(best_p)) if best_p else 0.0,
            float(np.mean(best_r)) if best_r else 0.0,
            per_class,
            [float(r) for r in rec_thr],
            mean_curve,
        )
