"""`yolo-accel predict FOLDER --ray`: Ray Data reads the images, `map_batches` runs them through a
Detector on GPU (or CPU) actors, and the detections are written as Parquet, one row per image.

Images are read as bytes and decoded in CPU tasks with the same OpenCV call as `predict`, and every
image is letterboxed to the square input on its own (as `predict --square`), so a batch of images of
any sizes gives each image the detections it gets alone.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"]


class DetectBatch:
    """The map_batches callable: one Detector per actor."""

    def __init__(self, detector_kwargs: dict, classes=None):
        from ..detector import Detector

        self.det = Detector(**detector_kwargs, classes=classes, rect=False)
        self.names = self.det.names

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        keep = [i for i, ok in enumerate(batch["ok"]) if ok]  # undecodable files get no row
        images = [np.asarray(batch["image"][i]) for i in keep]
        paths = [str(batch["path"][i]) for i in keep]
        dets = self.det.predict(images) if images else []
        out = {k: [] for k in ("path", "width", "height", "xyxy", "confidence", "class_id", "class_name")}
        for path, img, d in zip(paths, images, dets):
            out["path"].append(path)
            out["height"].append(int(img.shape[0]))
            out["width"].append(int(img.shape[1]))
            out["xyxy"].append(d.xyxy.astype(np.float32).reshape(-1).tolist())
            out["confidence"].append(d.confidence.astype(np.float32).tolist())
            out["class_id"].append(d.class_id.astype(np.int32).tolist())
            out["class_name"].append([self.names.get(int(c), str(c)) for c in d.class_id])
        import pandas as pd

        return pd.DataFrame(out)


def decode(row: dict) -> dict:
    """One file's bytes to a BGR image, by the call `predict` reads images with (CPU tasks, in parallel)."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(row["bytes"], np.uint8), cv2.IMREAD_COLOR)
    ok = img is not None
    return {"path": row["path"], "ok": ok, "image": img if ok else np.zeros((1, 1, 3), np.uint8)}


def predict_folder(
    ray,
    folder: str | Path,
    out_dir: str | Path,
    detector_kwargs: dict,
    engines: int,
    gpu: bool,
    batch: int = 32,
    classes=None,
) -> dict:
    """Detections of every image under `folder` into Parquet files in `out_dir`; returns counts."""
    import time

    from .cluster import quiet_ray_logs

    t0 = time.perf_counter()
    read = ray.data.read_binary_files  # importing Ray Data configures its loggers: quieted after
    quiet_ray_logs()
    ds = read(str(folder), include_paths=True, file_extensions=IMAGE_EXTENSIONS)
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    # decoding in CPU tasks of their own keeps the detectors fed: in the detector's actor it was the
    # bottleneck (one core per GPU)
    result = ds.map(decode).map_batches(
        DetectBatch,
        fn_constructor_kwargs={"detector_kwargs": detector_kwargs, "classes": classes},
        batch_size=batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=engines),
        **resources,
    )
    result.write_parquet(str(out_dir))
    wall = time.perf_counter() - t0
    import pyarrow.parquet as pq

    table = pq.read_table(str(out_dir), columns=["path", "confidence"])
    images = table.num_rows
    detections = sum(len(c) for c in table.column("confidence").to_pylist())
    return {"images": images, "detections": detections, "wall_s": wall, "images_per_s": images / wall}
