"""yolo-accel optimize."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..console import err, out
from .app import command
from .options import DeviceOpt, ForceOpt, ImgszOpt, check_imgsz_option


@command("optimize")
def optimize_cmd(
    model: Annotated[
        Path, typer.Argument(help="PyTorch checkpoint (.pt): the FP32 reference every candidate is held to.")
    ],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="data.yaml (its val split) or a folder of images with YOLO labels."),
    ] = None,
    device: DeviceOpt = "cpu",
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="latency: the lowest model-only latency at --batch (1); throughput: the most images a second "
            "at --batch (8).",
        ),
    ] = "latency",
    batch: Annotated[
        int | None, typer.Option("--batch", help="Batch size timed (default: 1, or 8 for throughput).")
    ] = None,
    gates: Annotated[
        str, typer.Option("--gates", help="Acceptance gates: onnx, tensorrt, or a YAML file of thresholds.")
    ] = "onnx",
    time_budget: Annotated[
        float,
        typer.Option(
            "--time-budget",
            help="Minutes for the whole search; candidates run cheapest first, and one whose estimated cost no "
            "longer fits is skipped.",
        ),
    ] = 30.0,
    out_dir: Annotated[
        Path, typer.Option("--out", help="The deployment bundle: the chosen artifact, deploy.yaml and the reports.")
    ] = Path("deploy"),
    candidates: Annotated[
        str | None,
        typer.Option("--candidates", help="Try only these, comma-separated (see --list); the reference always runs."),
    ] = None,
    onnx: Annotated[
        list[Path] | None, typer.Option("--onnx", help="Also try this ONNX file of the model (repeatable).")
    ] = None,
    openvino: Annotated[
        list[Path] | None,
        typer.Option("--openvino", help="Also try this OpenVINO IR (.xml) of the model (repeatable)."),
    ] = None,
    imgsz: ImgszOpt = None,
    conf: Annotated[float, typer.Option("--conf", help="Deployment confidence threshold (into deploy.yaml).")] = 0.25,
    iou: Annotated[float, typer.Option("--iou", help="Deployment NMS IoU (into deploy.yaml).")] = 0.45,
    calib_data: Annotated[
        Path | None,
        typer.Option("--calib-data", help="INT8 calibration images (default: the --data images)."),
    ] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Most calibration images for INT8.")] = 300,
    iters: Annotated[
        int, typer.Option("--iters", min=1, help="Timed runs per candidate (model-only and end-to-end each).")
    ] = 50,
    list_only: Annotated[
        bool,
        typer.Option("--list", help="List the candidates this machine can run (and why not the others), then stop."),
    ] = False,
    force: ForceOpt = False,
):
    """Find the fastest configuration of MODEL that passes the accuracy gates on this machine, and write it
    as a deployment bundle.

    Every candidate this machine can run (PyTorch eager, FP16, channels_last, torch.compile, CUDA graphs;
    ONNX Runtime CPU/CUDA/IO binding/CUDA graph; OpenVINO FP32, bfloat16, INT8; AOTInductor; TensorRT where
    installed) is exported once (cached), validated on --data (mAP50-95 and similarity against PyTorch FP32)
    and timed at --target; those that fail a gate are dropped and the rest ranked. A candidate that crashes
    is a row, not the end of the run. --out gets the winner's artifact, deploy.yaml and report.html/.md/.json
    with every candidate; run it with --deploy on predict, validate, bench, video and serve.

    Exit code 0 when a candidate passed, 1 when none did (the reports are still written), 2 for bad input.

    Example: yolo-accel optimize yolov5n.pt --data coco128/data.yaml --device cpu --out deploy/
    """
    from rich.live import Live
    from rich.table import Table

    from ..device import parse_device
    from ..errors import SettingsError
    from ..optimize.candidates import list_candidates, user_candidates
    from ..report.optimize import HEADER, row_cells

    only = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    cuda = parse_device(device).is_cuda
    for p in [*(onnx or []), *(openvino or [])]:
        if not p.is_file():
            raise SettingsError(f"{p}: no such file")
    extra = user_candidates(list(onnx or []), list(openvino or []), cuda)
    listed = list_candidates(device, only, extra)
    if list_only:
        t = Table(title=f"candidates for --device {device}", title_justify="left")
        for col in ("candidate", "runs as", "what", "here"):
            t.add_column(col, no_wrap=col == "candidate")
        for c in listed:
            t.add_row(c.name, c.variant, c.about, "yes" if c.skip is None else f"skip: {c.skip}")
        out.print(t)
        return
    if data is None:
        raise SettingsError("--data is needed (a data.yaml or a folder of labelled images)")
    from ..deploy import check_bundle_target, write_bundle
    from ..evaluate.datasets import load_dataset
    from ..evaluate.gates import load_gates
    from ..optimize.search import OptimizeSettings, run_optimize
    from ..outputs import check_parent
    from ..report.optimize import summary, write_optimize_report

    settings = OptimizeSettings(
        device=device,
        target=target,
        batch=batch,
        gates=gates,
        time_budget_min=time_budget,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        candidates=only,
        calib_data=str(calib_data) if calib_data else None,
        calib_images=calib_images,
        iters=iters,
    )
    settings.check()
    check_imgsz_option(imgsz)
    load_gates(gates)
    check_bundle_target(out_dir, force)  # before minutes of work
    check_parent(out_dir, "--out")  # the bundle is written beside it first, then moved into place
    load_dataset(data)  # fails fast on bad labels

    def table(rows: list[dict]) -> Table:
        # rows skipped because of this machine are one line under the table, not one row each
        machine = [r for r in rows if r["status"] == "skipped" and not r.get("reason", "").startswith("time")]
        rows = [r for r in rows if r not in machine]
        caption = f"not run here: {', '.join(r['name'] for r in machine)} (reasons: --list)" if machine else None
        t = Table(
            title=f"optimize {model.name} (--device {device}, target {target})",
            title_justify="left",
            caption=caption,
            caption_justify="left",
        )
        for col in HEADER:
            left = col in ("candidate", "status", "gates failed / reason")
            t.add_column(col, justify="left" if left else "right", no_wrap=col == "candidate")
        styles = {"chosen": "bold green", "pass": "green", "fail": "red", "error": "red", "skipped": "dim"}
        for r in rows:
            t.add_row(*(escape(c) for c in row_cells(r)), style=styles.get(r["status"], ""))
        return t

    with Live(table([]), console=err, transient=True, refresh_per_second=4) as live:
        report = run_optimize(model, data, listed, settings, update=lambda rows: live.update(table(rows)))
    out.print(table(report["candidates"]))
    out.print(escape(summary(report)), highlight=False)
    deploy_yaml = write_bundle(out_dir, report, write_optimize_report, force=force)
    out.print(f"reports: {out_dir / 'report.html'}  {out_dir / 'report.md'}  {out_dir / 'report.json'}")
    if deploy_yaml is None:
        err.print("[bold red]no candidate passed every gate[/]: see the advice in the report")
        raise typer.Exit(1)
    out.print(f"deploy: {deploy_yaml} (run it: yolo-accel predict IMAGES --deploy {out_dir})")
