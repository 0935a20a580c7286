"""`Detections`: the one result type that every backend, report and sink shares."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Boxes found in one image, in that image's original pixel coordinates.

    xyxy: float32 (N, 4) corners; confidence: float32 (N,); class_id: int64 (N,);
    names: class id -> class name for the model that produced them;
    image_shape: (height, width) of the original image, when known.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict)
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        n = len(self.xyxy)
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError(
                f"Detections fields disagree in length: xyxy {n}, confidence {len(self.confidence)}, "
                f"class_id {len(self.class_id)}"
            )

    @classmethod
    def empty(cls, names: Mapping[int, str] | None = None, image_shape: tuple[int, int] | None = None):
        """No detections."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            dict(names or {}),
            image_shape,
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self) -> Iterator[tuple[np.ndarray, float, int]]:
        for i in range(len(self)):
            yield self.xyxy[i], float(self.confidence[i]), int(self.class_id[i])

    def __getitem__(self, index: Any) -> Detections:
        """Select by boolean mask, integer array or slice; always returns Detections."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index], self.names, self.image_shape)

    @property
    def class_names(self) -> list[str]:
        """The name of each box's class (the id as text when the model has no name for it)."""
        return [self.names.get(int(c), str(int(c))) for c in self.class_id]

    def to_array(self) -> np.ndarray:
        """One (N, 6) float32 array [x1, y1, x2, y2, confidence, class id]: compact, for other processes."""
        return np.concatenate(
            [
                self.xyxy.astype(np.float32),
                self.confidence.astype(np.float32)[:, None],
                self.class_id.astype(np.float32)[:, None],
            ],
            axis=1,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per box, for JSON."""
        return [
            {
                "xyxy": [round(float(v), 2) for v in box],
                "confidence": round(conf, 5),
                "class_id": cls,
                "class_name": self.names.get(cls, str(cls)),
            }
            for box, conf, cls in self
        ]

    def counts(self) -> dict[str, int]:
        """Number of boxes per class name, most frequent first."""
        names, n = np.unique(np.asarray(self.class_names, dtype=object), return_counts=True)
        order = np.argsort(-n, kind="stable")
        return {str(names[i]): int(n[i]) for i in order}
