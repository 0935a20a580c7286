"""yolo-accel validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..console import err, out, print_validation
from .app import command
from .options import VARIANTS_HELP, DeployOpt, DeviceOpt, ForceOpt, ImgszOpt, MaxDetOpt, check_imgsz_option


@command("validate")
def validate_cmd(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="data.yaml (its val split), a folder of images with YOLO labels, or a COCO annotations .json.",
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="PyTorch checkpoint (.pt): the FP32 reference (with --deploy: the bundle's source).",
        ),
    ] = None,
    backends: Annotated[
        str,
        typer.Option("--backends", help=VARIANTS_HELP + " Each is compared with torch FP32 on the same device."),
    ] = "torch,onnxruntime",
    device: DeviceOpt = "cpu",
    half: Annotated[
        bool, typer.Option("--half", help="Run every listed backend in FP16 (CUDA); the reference stays FP32.")
    ] = False,
    gates: Annotated[str, typer.Option("--gates", help="onnx, tensorrt, or a YAML file of thresholds.")] = "onnx",
    imgsz: ImgszOpt = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per batch.")] = 8,
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold for mAP.")] = 0.001,
    iou: Annotated[
        float,
        typer.Option(
            "--iou",
            help="NMS IoU (0.7, not predict's 0.45: mAP is measured as Ultralytics val measures it, "
            "at a low --conf, so that the numbers compare with theirs).",
        ),
    ] = 0.7,
    max_det: MaxDetOpt = 300,
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="Validate this ONNX file instead of the cached export of --model.")
    ] = None,
    openvino: Annotated[
        Path | None,
        typer.Option(
            "--openvino", help="Validate this OpenVINO IR (.xml, e.g. an INT8 export) for the openvino backend."
        ),
    ] = None,
    images: Annotated[Path | None, typer.Option("--images", help="Image folder of a COCO .json dataset.")] = None,
    clip_labels: Annotated[
        bool, typer.Option("--clip-labels", help="Clip label coordinates outside [0, 1] instead of failing.")
    ] = False,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where the reports go (default: a new runs/validate/run<N>/).")
    ] = None,
    force: ForceOpt = False,
    speed_metric: Annotated[
        str,
        typer.Option(
            "--speed-metric",
            help="What the speed gate compares: model (model-only latency, as the acceptance thresholds "
            "define it) or e2e (a decoded frame to detections).",
        ),
    ] = "model",
    speed_batch: Annotated[int, typer.Option("--speed-batch", help="Batch size timed for the speed gate.")] = 1,
    speed_iters: Annotated[
        int, typer.Option("--speed-iters", help="Timed runs per backend (model-only and end-to-end each; 30+).")
    ] = 50,
    deploy: DeployOpt = None,
):
    """Accuracy (mAP), similarity to PyTorch FP32 and speed of each backend, against acceptance gates.

    Exit code 0 when every gate passes, 1 when any fails, 2 for bad input.

    Example: yolo-accel validate --model yolov5n.pt --data coco128/data.yaml --backends torch,onnxruntime
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ..evaluate.datasets import load_dataset
    from ..report import write_validation_report
    from ..runs import next_run_dir
    from ..validate import ValidateSettings, run_validation

    artifacts, rect, sim = {}, True, {}
    if deploy is not None:  # the bundle's artifact and configuration against its source model
        from ..deploy import check_source_model, load_deploy
        from ..errors import SettingsError

        cfg = load_deploy(deploy)
        from_bundle = model is None
        model = model or (Path(cfg.source_model) if cfg.source_model else None)
        if model is None or not model.is_file():
            raise SettingsError(f"{deploy}: its source model {model} is not here; give the reference with --model")
        if from_bundle:  # a reference named by hand is the user's choice
            check_source_model(cfg, model)
        backends, device, half, imgsz, speed_batch = cfg.variant, cfg.device, False, cfg.imgsz[0], cfg.batch
        artifacts, rect, sim = {cfg.backend: str(cfg.artifact)}, False, {"sim_conf": cfg.conf, "sim_iou": cfg.iou}
    elif model is None:
        from ..errors import SettingsError

        raise SettingsError("--model is needed (or --deploy DIR, a bundle from yolo-accel optimize)")
    check_imgsz_option(imgsz)
    settings = ValidateSettings(
        backends=tuple(backends.split(",")),
        device=device,
        half=half,
        imgsz=imgsz,
        batch=batch,
        conf=conf,
        iou=iou,
        max_det=max_det,
        gates=gates,
        onnx=str(onnx) if onnx else None,
        openvino=str(openvino) if openvino else None,
        clip_labels=clip_labels,
        images_dir=str(images) if images else None,
        speed_metric=speed_metric,
        speed_batch=speed_batch,
        speed_iters=speed_iters,
        artifacts=artifacts,
        rect=rect,
        **sim,
    )
    from ..outputs import check_folder, check_report_folder

    check_report_folder(report_dir, ("report.json", "report.md", "report.html"), force, "--report-dir")
    if report_dir is None:
        check_folder(Path("runs") / "validate", "runs folder")
    check_imgsz_option(imgsz)
    n_images = len(load_dataset(data, clip_labels, images).items)  # fails fast on bad labels
    with Progress(
        TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("validate", total=n_images)
        report = run_validation(model, data, settings, progress=lambda n: progress.advance(task, n))
    print_validation(report, out, escape, Table)  # the results first: a write that fails still leaves them
    folder = report_dir or next_run_dir("validate")
    paths = write_validation_report(report, folder)
    out.print(f"reports: {paths['html']}  {paths['md']}  {paths['json']}")
    if report["verdict"] != "PASS":
        raise typer.Exit(1)
