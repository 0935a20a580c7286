"""yolo-accel bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..console import bench_table, err, out
from .app import command
from .options import (
    VARIANTS_HELP,
    DeployOpt,
    DeviceOpt,
    ForceOpt,
    HalfOpt,
    ImgszOpt,
    check_imgsz_option,
    deploy_config,
    finite,
    parse_batches,
    parse_frame_size,
)


@command("bench")
def bench_cmd(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help=".pt (any backend), .onnx (onnxruntime) or .xml (openvino).")
    ] = None,
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help=VARIANTS_HELP + " The first is the baseline for speedups; on a GPU "
            "torch-fp16-cl-compile-graph is the fastest (BENCHMARKS.md).",
        ),
    ] = "torch,onnxruntime",
    device: DeviceOpt = "cpu",
    half: HalfOpt = False,
    batch: Annotated[
        str | None, typer.Option("--batch", help="Batch sizes, e.g. 1,8,32 (default: 1, or the bundle's).")
    ] = None,
    imgsz: ImgszOpt = None,
    iters: Annotated[int, typer.Option("--iters", min=1, help="Timed iterations per row (model-only).")] = 100,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed iterations first.")] = 10,
    duration: Annotated[
        float,
        typer.Option(
            "--duration",
            min=0.001,
            callback=finite,
            help="Stop a row after this many seconds (at least 3 timed iterations).",
        ),
    ] = 20.0,
    e2e_iters: Annotated[
        int,
        typer.Option(
            "--e2e-iters", min=1, help="Timed end-to-end calls per row (within half of --duration; at least 3)."
        ),
    ] = 100,
    threads: Annotated[int, typer.Option("--threads", min=0, help="ONNX Runtime intra-op threads (0: all cores).")] = 0,
    ort_gpu_mem_limit: Annotated[
        float, typer.Option("--ort-gpu-mem-limit", help="ONNX Runtime CUDA arena limit in GB (batch 32+ needs more).")
    ] = 2.0,
    frame: Annotated[
        Path | None, typer.Option("--frame", help="Image used as the decoded frame (default: the shared bus.jpg).")
    ] = None,
    frame_size: Annotated[
        str | None,
        typer.Option("--frame-size", help="Resize that frame first: WxH, e.g. 1920x1080."),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report-dir", help="Where bench.json/.md/.html go (default: a new runs/bench/run<N>/)."),
    ] = None,
    force: ForceOpt = False,
    deploy: DeployOpt = None,
):
    """Speed, memory and size of every backend side by side, in one process, on the same inputs.

    Model-only latency (GPU: CUDA events after warm-up; CPU: perf_counter_ns), end-to-end latency from a
    decoded frame to Detections with a per-stage breakdown, throughput, peak GPU and host memory,
    artifact size, and speedup over the first backend listed.

    Example: yolo-accel bench --model yolov8n.pt --backends torch,torch-fp16,onnxruntime-iobind
    --device cuda --batch 1,8,32
    """
    from rich.progress import Progress

    from ..backends.variants import parse_variants
    from ..bench.runner import BenchSettings, run_bench
    from ..report import write_bench_report
    from ..runs import next_run_dir

    cfg = deploy_config(deploy, model, None)
    if cfg is not None:  # the bundle's artifact, variant, device, size and batch
        model, backends, device, half = cfg.artifact, cfg.variant, cfg.device, False
        imgsz, batch = cfg.imgsz[0], batch or str(cfg.batch)
    batch = batch or "1"
    settings = BenchSettings(
        backends=tuple(backends.split(",")),
        device=device,
        half=half,
        batches=parse_batches(batch),
        imgsz=imgsz,
        iters=iters,
        warmup=warmup,
        duration_s=duration,
        e2e_iters=e2e_iters,
        threads=threads,
        ort_gpu_mem_limit_gb=ort_gpu_mem_limit,
        frame=str(frame) if frame else None,
        frame_size=parse_frame_size(frame_size) if frame_size else None,
    )
    from ..outputs import check_folder, check_report_folder

    check_report_folder(report_dir, ("bench.json", "bench.md", "bench.html"), force, "--report-dir")
    if report_dir is None:
        check_folder(Path("runs") / "bench", "runs folder")
    check_imgsz_option(imgsz)
    variants = parse_variants(backends, half)
    _check_runtimes(variants)
    total = len(variants) * len(settings.batches)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("benchmarking", total=total)
        report = run_bench(model, settings, progress=lambda: progress.advance(task))
    t = bench_table(report)
    out.print(t)
    failed = [r for r in report["rows"] if not r.get("ok")]
    for r in failed:
        err.print(escape(f"warning: {r['backend']} batch {r['batch']}: {r['error']}"), style="yellow")
    folder = report_dir or next_run_dir("bench")
    paths = write_bench_report(report, folder)
    out.print(f"reports: {paths['html']}  {paths['md']}  {paths['json']}")
    if report["rows"] and len(failed) == len(report["rows"]):
        err.print("[bold red]error:[/] no row was measured (every backend and batch failed; see the warnings)")
        raise typer.Exit(1)


def _check_runtimes(variants) -> None:
    """A backend whose runtime is not installed is one line before anything is measured (not after the
    other backends have run for minutes)."""
    from ..backends.base import get_backend_spec

    for v in variants:
        get_backend_spec(v.backend).check_available()
