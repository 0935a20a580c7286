"""How far apart two backends are: raw head output and matched detections."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..detections import Detections
from ..ops.boxes import box_iou


@dataclass
class RawDiff:
    """Element-wise comparison of two raw head outputs."""

    max_abs: float
    mean_abs: float
    p99_abs: float
    cosine: float

    @classmethod
    def compute(cls, ref: np.ndarray, test: np.ndarray) -> RawDiff:
        a = np.asarray(ref, np.float64).ravel()
        b = np.asarray(test, np.float64).ravel()
        if a.shape != b.shape:
            raise ValueError(f"raw outputs differ in shape: {np.shape(ref)} vs {np.shape(test)}")
        d = np.abs(a - b)
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        cos = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
        return cls(
            float(d.max(initial=0)),
            float(d.mean()) if d.size else 0.0,
            float(np.percentile(d, 99)) if d.size else 0.0,
            cos,
        )


def match_rate(n_ref: int, n_test: int, matched: int) -> float:
    """Share of reference boxes matched; with no reference boxes, 1.0 only when the test found none either."""
    if n_ref == 0:
        return 1.0 if n_test == 0 else 0.0
    return matched / n_ref


@dataclass
class MatchResult:
    """One-to-one matching of a test image's boxes to the reference's (same class, IoU >= threshold)."""

    n_ref: int
    n_test: int
    ref_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    test_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    conf_diff: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def matched(self) -> int:
        return len(self.ref_index)

    @property
    def ref_match_rate(self) -> float:
        """Share of reference boxes that the test found (1.0 when the reference has none and neither has test)."""
        return match_rate(self.n_ref, self.n_test, self.matched)


def match_detections(ref: Detections, test: Detections, iou_threshold: float = 0.5) -> MatchResult:
    """Greedy one-to-one matching by descending IoU among boxes of the same class.

    Written here because the libraries' matchers (COCO eval) match by score order for AP, which
    is not the question: we want each reference box paired with its closest twin.
    """
    res = MatchResult(len(ref), len(test))
    if len(ref) == 0 or len(test) == 0:
        return res
    iou = box_iou(ref.xyxy, test.xyxy)
    iou[ref.class_id[:, None] != test.class_id[None, :]] = 0.0
    pairs = np.argwhere(iou >= iou_threshold)
    if len(pairs) == 0:
        return res
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_r, used_t, ri, ti = set(), set(), [], []
    for r, t in pairs[order]:
        if r not in used_r and t not in used_t:
            used_r.add(r)
            used_t.add(t)
            ri.append(r)
            ti.append(t)
    res.ref_index = np.asarray(ri, np.int64)
    res.test_index = np.asarray(ti, np.int64)
    res.ious = iou[res.ref_index, res.test_index]
    res.conf_diff = np.abs(ref.confidence[res.ref_index] - test.confidence[res.test_index])
    return res


@dataclass
class ParityRow:
    """One image of a parity check."""

    image: str
    raw: RawDiff
    match: MatchResult


@dataclass
class ParityReport:
    """A reference backend against a test backend on the same prepared inputs."""

    reference: str
    test: str
    rows: list[ParityRow]
    threshold: float = 0.98

    @property
    def n_ref(self) -> int:
        return sum(r.match.n_ref for r in self.rows)

    @property
    def n_test(self) -> int:
        return sum(r.match.n_test for r in self.rows)

    @property
    def matched(self) -> int:
        return sum(r.match.matched for r in self.rows)

    @property
    def match_rate(self) -> float:
        return match_rate(self.n_ref, self.n_test, self.matched)

    @property
    def max_abs(self) -> float:
        return max((r.raw.max_abs for r in self.rows), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((r.raw.cosine for r in self.rows), default=1.0)

    @property
    def passed(self) -> bool:
        return self.match_rate >= self.threshold

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "test": self.test,
            "threshold": self.threshold,
            "match_rate": self.match_rate,
            "matched": self.matched,
            "reference_detections": self.n_ref,
            "test_detections": self.n_test,
            "max_abs_diff": self.max_abs,
            "min_cosine": self.min_cosine,
            "passed": self.passed,
            "images": [
                {
                    "image": r.image,
                    "max_abs_diff": r.raw.max_abs,
                    "mean_abs_diff": r.raw.mean_abs,
                    "cosine": r.raw.cosine,
                    "reference_detections": r.match.n_ref,
                    "test_detections": r.match.n_test,
                    "matched": r.match.matched,
                }
                for r in self.rows
            ],
        }
