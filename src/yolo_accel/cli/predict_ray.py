"""`yolo-accel predict FOLDER --ray`: Ray Data over the cluster's GPUs (scale.images)."""

from __future__ import annotations

from pathlib import Path

from ..console import err, out


def predict_on_ray(
    address: str,
    source: str,
    detector_kwargs: dict,
    classes,
    engines: int | None,
    batch: int,
    save_parquet: Path | None,
    force: bool,
    refused: dict,
) -> None:
    import shutil

    from ..device import parse_device
    from ..errors import OutputExistsError, SettingsError
    from ..scale.cluster import check_model_here, connect, cpu_count, gpu_count
    from ..scale.images import predict_folder

    given = [k for k, v in refused.items() if v is not None]
    if given:
        raise SettingsError(f"{', '.join(given)}: not with --ray (detections go to --save-parquet)")
    if save_parquet is None:
        raise SettingsError("--ray writes its detections as Parquet: give --save-parquet DIR")
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise SettingsError(f"--ray takes a folder of images (got {source})")
    if save_parquet.exists():
        if not force:
            raise OutputExistsError(f"--save-parquet {save_parquet} exists; pass --force to replace it")
        shutil.rmtree(save_parquet) if save_parquet.is_dir() else save_parquet.unlink()
    gpu = parse_device(detector_kwargs["device"]).is_cuda
    check_model_here(detector_kwargs["model"])
    ray = connect(address)
    if gpu:
        have = gpu_count(ray)
        if have < 1:
            raise SettingsError(f"--ray {address} --device cuda: the cluster has no GPU")
        engines = engines or have
        detector_kwargs = {**detector_kwargs, "device": "cuda"}
    else:
        engines = engines or max(1, min(2, cpu_count(ray)))
    with err.status(f"detecting {folder} on {engines} Ray worker(s)"):
        try:
            result = predict_folder(ray, folder, save_parquet, detector_kwargs, engines, gpu, batch, classes)
        except ray.exceptions.RayError as e:  # a detector that cannot load, a worker that died
            from ..errors import ModelError
            from ..scale.cluster import failure_line

            shutil.rmtree(save_parquet, ignore_errors=True)  # no half-written output
            raise ModelError(f"the Ray job failed: {failure_line(e)}") from None
    out.print(
        f"{result['detections']} detections in {result['images']} image(s) on {engines} worker(s) in "
        f"{result['wall_s']:.1f} s ({result['images_per_s']:.3g} images/s, start-up included)"
    )
    out.print(f"detections written to {save_parquet}/ (Parquet: path, width, height, xyxy, confidence, class)")
