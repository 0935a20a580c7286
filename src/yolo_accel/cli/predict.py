"""yolo-accel predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..console import err, out
from ..scale.cluster import RAY_HELP
from .app import command
from .options import (
    BackendOpt,
    ChannelsLastOpt,
    CompileOpt,
    CudaGraphOpt,
    DeployOpt,
    DeviceOpt,
    ForceOpt,
    GpuOpsOpt,
    HalfOpt,
    ImgszOpt,
    IoBindingOpt,
    MaxDetOpt,
    check_imgsz_option,
    deploy_config,
    speed_options,
)


@command("predict")
def predict_cmd(
    source: Annotated[str, typer.Argument(help="An image, a folder of images, or a glob ('imgs/*.jpg').")],
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help=".pt, .onnx, .pt2, .xml or .engine model.")
    ] = None,
    backend: BackendOpt = None,
    device: DeviceOpt = "cpu",
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold (0.45, as Ultralytics predict).")] = 0.45,
    imgsz: ImgszOpt = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Keep only these classes: names or ids, e.g. car,bus,truck,motorcycle."),
    ] = None,
    max_det: MaxDetOpt = 300,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup", min=0, help="Untimed runs on the first image before the timed ones (0: time the first run)."
        ),
    ] = 2,
    half: HalfOpt = False,
    rect: Annotated[
        bool | None,
        typer.Option(
            "--rect/--square",
            help="Minimal padding (as Ultralytics predict). Default: on where the model takes any size, "
            "except ONNX Runtime on CUDA (each new shape costs a cuDNN algorithm search).",
        ),
    ] = None,
    names: Annotated[
        Path | None,
        typer.Option("--names", help="Class names (YAML or one per line) for ONNX files without metadata."),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=0, help="ONNX Runtime intra-op threads (0: auto).")] = 0,
    cuda_graph: CudaGraphOpt = False,
    channels_last: ChannelsLastOpt = False,
    compile: CompileOpt = False,
    io_binding: IoBindingOpt = False,
    gpu_ops: GpuOpsOpt = None,
    save_dir: Annotated[Path | None, typer.Option("--save-dir", help="Write annotated images here.")] = None,
    save_json: Annotated[Path | None, typer.Option("--save-json", help="Write detections as JSON here.")] = None,
    force: ForceOpt = False,
    deploy: DeployOpt = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help=RAY_HELP + " SOURCE is a folder (local, or one every node sees); Ray Data reads it, one detector "
            "per GPU (--device cuda) or --engines CPU workers detects, and --save-parquet gets one row per image. "
            "Every image is letterboxed to the square input (as --square).",
        ),
    ] = None,
    engines: Annotated[
        int | None,
        typer.Option("--engines", help="With --ray: detectors to run (default: every GPU of the cluster; 2 on CPUs)."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="With --ray: images per detector call.")] = 32,
    save_parquet: Annotated[
        Path | None,
        typer.Option("--save-parquet", help="With --ray: a folder for the Parquet files (path, size, boxes)."),
    ] = None,
):
    """Detect objects in images and print a summary table.

    Boxes are in original-image pixels. A .pt run with --backend onnxruntime is exported to
    ONNX once and cached (keyed on the checkpoint hash and the export settings).

    Example: yolo-accel predict bus.jpg --model yolov5n.pt --backend onnxruntime --classes person,bus
    """
    import cv2
    from rich.progress import Progress
    from rich.table import Table

    from ..annotate import draw_detections
    from ..detector import Detector
    from ..errors import DataError
    from ..images import expand_source, read_image
    from ..outputs import check_file, check_folder
    from ..runs import write_json_atomic

    cfg = deploy_config(deploy, model, backend)
    if ray is not None:
        from .predict_ray import predict_on_ray

        given = dict(model=model, backend=backend, device=device, half=half, imgsz=imgsz, conf=conf, iou=iou)
        speed = speed_options(cuda_graph, channels_last, compile, io_binding, gpu_ops, threads)
        kwargs = cfg.detector_kwargs(threads) if cfg is not None else {**given, **speed}
        kwargs.update(max_det=max_det, names_file=names)
        # Ray's engines letterbox to the square input: --square says so, --rect is refused
        refused = {"--save-dir": save_dir, "--save-json": save_json, "--rect": True if rect else None}
        return predict_on_ray(ray, source, kwargs, classes, engines, batch, save_parquet, force, refused)
    check_folder(save_dir, "--save-dir")
    check_file(save_json, force, "--save-json")
    check_imgsz_option(imgsz)
    paths = expand_source(source)
    from ..outputs import check_distinct

    targets = _annotated_targets(save_dir, paths, force) if save_dir else []
    # no output may be an input, and the JSON may not be one of the annotated images
    check_distinct({"--save-json": save_json} | {f"--save-dir ({t.relative_to(save_dir)})": t for t in targets}, paths)
    if cfg is not None:
        chosen = cfg.detector_kwargs(threads)
        model, device, half, conf, iou = cfg.artifact, cfg.run_device, chosen["half"], cfg.conf, cfg.iou
        rect = False if rect is None else rect  # the square letterbox optimize measured
    else:
        speed = speed_options(cuda_graph, channels_last, compile, io_binding, gpu_ops, threads)
        chosen = dict(model=model, backend=backend, device=device, half=half, imgsz=imgsz, conf=conf, iou=iou, **speed)
    from ..assets import parity_images_from

    # a .pt run on onnxruntime is exported on the way: its parity check runs on the images given
    with err.status(f"loading {model.name}"), parity_images_from(paths[:2]):
        det = Detector(
            **chosen,
            classes=classes,
            max_det=max_det,
            rect=rect,
            names_file=names,
        )
    if warmup > 0:  # compilation, CUDA graph capture, allocator growth: none of it in the timings
        with err.status(f"warming up ({warmup} untimed run(s) on {paths[0].name})"):
            first = read_image(paths[0])
            for _ in range(warmup):
                det.predict(first)
    records, table = [], Table(title=escape(f"{model.name} on {det.describe()}"), title_justify="left")
    for col in ("image", "size", "detections", "pre ms", "infer ms", "post ms"):
        table.add_column(col, justify="left" if col in ("image", "detections") else "right")
    failure: Exception | None = None  # a write that fails mid-run: the results so far are printed first
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("predicting", total=len(paths))
        for i, p in enumerate(paths):
            if failure is not None:
                break
            img = read_image(p)
            d = det.predict(img)[0]
            t = det.timings[0]
            h, w = img.shape[:2]
            summary = ", ".join(f"{n} {k}" for k, n in d.counts().items()) or "-"
            table.add_row(p.name, f"{w}x{h}", summary, f"{t['pre']:.1f}", f"{t['infer']:.1f}", f"{t['post']:.1f}")
            records.append(
                {
                    "image": str(p),
                    "width": w,
                    "height": h,
                    "detections": d.to_records(),
                    "timings_ms": {k: round(v, 3) for k, v in t.items()},
                }
            )
            if save_dir:
                target = targets[i]
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not cv2.imwrite(str(target), draw_detections(img, d)):
                        raise DataError(f"cannot write {target} (disk full, or the folder changed)")
                except (OSError, DataError) as e:
                    failure = e
            progress.advance(task)
    out.print(table)
    if failure is not None:
        raise failure
    total = sum(len(r["detections"]) for r in records)
    out.print(f"{total} detections in {len(records)} image(s)")
    if save_json:
        write_json_atomic(
            save_json,
            {
                "model": str(model),
                "backend": det.backend.name,
                "runtime": det.describe(),
                "device": device,
                "settings": {
                    "conf": conf,
                    "iou": iou,
                    "imgsz": list(det.imgsz),
                    "rect": det.rect,
                    "classes": det.classes,
                    "max_det": max_det,
                    "half": half,
                },
                "images": records,
            },
        )
        out.print(f"detections written to {save_json}")
    if save_dir:
        out.print(f"annotated images written to {save_dir}/")
    det.close()


def _annotated_targets(save_dir: Path, paths: list[Path], force: bool) -> list[Path]:
    """Where each annotated image goes: its name in --save-dir, or, when two inputs share a name (from
    different folders), its path below their common folder. An existing file is replaced only with
    --force (that none is an input is checked with the other outputs)."""
    import os

    from ..errors import OutputExistsError

    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        relative = [Path(n) for n in names]
    else:
        common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
        relative = [p.resolve().relative_to(common) for p in paths]
    targets = [save_dir / r for r in relative]
    for t in targets:
        if t.exists() and not force:
            raise OutputExistsError(f"{t} exists; pass --force to overwrite it")
    return targets
