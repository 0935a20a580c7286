"""The `yolo-accel` command line (Typer + Rich). Heavy imports happen inside each command."""

from __future__ import annotations

import functools
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .errors import YoloAccelError

app = typer.Typer(
    name="yolo-accel",
    help="Make YOLO detectors fast in production and prove that they are still right.\n\n"
    "Exit codes: 0 success, 1 an acceptance gate (parity) failed, 2 bad input or environment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def command(*args, **kwargs):
    """app.command that turns YoloAccelError into one red line and exit code 2."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            old = warnings.showwarning
            warnings.showwarning = _show_warning
            try:
                return fn(*a, **kw)
            except YoloAccelError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(e.exit_code) from None
            except OSError as e:  # a last resort: paths are checked before work starts
                from .errors import os_error_line

                err.print(f"[bold red]error:[/] {escape(os_error_line(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except UnicodeError as e:  # a file that should be text is not
                why = escape(str(getattr(e, "reason", e)))
                err.print(f"[bold red]error:[/] a file is not valid text ({why})", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err.print("[bold red]interrupted[/]")
                raise typer.Exit(130) from None
            finally:
                warnings.showwarning = old

        return app.command(*args, **kwargs)(run)

    return wrap


# -- shared options -----------------------------------------------------------------------------
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="cpu, cuda or cuda:N.")]
HalfOpt = Annotated[bool, typer.Option("--half", help="FP16 (CUDA only).")]
ImgszOpt = Annotated[
    int | None,
    typer.Option("--imgsz", help="Input size in pixels (a stride multiple; default: the model's own)."),
]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset (12 and up; 17 recommended).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]
# speed options of the GPU path (none changes outputs beyond float rounding; FP16 is --half)
CudaGraphOpt = Annotated[
    bool,
    typer.Option(
        "--cuda-graph",
        help="Capture one CUDA graph per input shape and replay it (torch on CUDA; onnxruntime with "
        "--io-binding uses ONNX Runtime's own; not compiled .pt2 packages, whose runner breaks capture).",
    ),
]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="NHWC memory format (torch backend).")]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.export + torch.compile the model, one graph per input shape (first call compiles; cached on disk).",
    ),
]
IoBindingOpt = Annotated[
    bool, typer.Option("--io-binding", help="onnxruntime on CUDA: inputs and outputs stay in device buffers.")
]
GpuOpsOpt = Annotated[
    bool | None,
    typer.Option(
        "--gpu-ops/--cpu-ops",
        help="Letterbox, NMS and scale-back on the GPU (frames go up once, only boxes come back). "
        "Default: on wherever the backend takes device tensors (torch/compiled on CUDA, onnxruntime "
        "with --io-binding).",
    ),
]


def _check_imgsz(imgsz: int | None) -> None:
    if imgsz is not None and imgsz <= 0:
        from .errors import SettingsError

        raise SettingsError(f"--imgsz must be a positive number of pixels (got {imgsz})")


def _speed_options(
    cuda_graph: bool, channels_last: bool, compile: bool, io_binding: bool, gpu_ops: bool | None, threads: int = 0
) -> dict:
    """Detector keyword arguments for the speed flags shared by predict and video."""
    from .backends.ort import OrtOptions
    from .backends.pytorch import TorchOptions

    return {
        "torch_options": TorchOptions(channels_last=channels_last, cuda_graph=cuda_graph, compile=compile),
        "ort_options": OrtOptions(
            intra_op_threads=threads, io_binding=io_binding, cuda_graph=cuda_graph and io_binding
        ),
        "gpu_ops": gpu_ops,
    }


def _parity_table(report, title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title), title_justify="left")
    for col in ("image", "ref dets", "test dets", "matched", "max |Δ| raw", "cosine"):
        t.add_column(col, justify="right" if col != "image" else "left")
    for r in report.rows:
        t.add_row(
            r.image,
            str(r.match.n_ref),
            str(r.match.n_test),
            str(r.match.matched),
            f"{r.raw.max_abs:.2e}",
            f"{r.raw.cosine:.6f}",
        )
    colour = "green" if report.passed else "red"
    t.add_row(
        "[bold]all[/]",
        str(report.n_ref),
        str(report.n_test),
        f"[{colour}]{report.matched} ({report.match_rate:.1%})[/]",
        f"{report.max_abs:.2e}",
        f"{report.min_cosine:.6f}",
        end_section=True,
    )
    return t


@command("export")
def export_cmd(
    model: Annotated[Path, typer.Argument(help="PyTorch checkpoint (.pt): Ultralytics or original YOLOv5.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="onnx; compiled: an AOTInductor package (.pt2) that runs with torch alone "
            "(compiled for --device, batch 1..--max-batch, fixed --imgsz; C++ compiler: $YOLO_ACCEL_CXX, else "
            "$CXX unless it links libstdc++ statically, else g++); engine: a TensorRT engine "
            "(TensorRT 10 Python API or trtexec; needs TensorRT and --device cuda).",
        ),
    ] = "onnx",
    imgsz: ImgszOpt = None,
    opset: OpsetOpt = 17,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic batch, height and width axes.")] = False,
    half: Annotated[bool, typer.Option("--half", help="FP16 weights and input (needs --device cuda).")] = False,
    batch: Annotated[int, typer.Option("--batch", help="Batch size of a static export.")] = 1,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Simplify with onnxslim.")] = True,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: beside the .pt, same name, .onnx)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Compare with the PyTorch model on the sample images (exit 1 below 98%).",
        ),
    ] = True,
    device: DeviceOpt = "cpu",
    max_batch: Annotated[
        int | None,
        typer.Option("--max-batch", help="compiled (default 128) / engine with --dynamic (default 32): largest batch."),
    ] = None,
    min_batch: Annotated[int, typer.Option("--min-batch", help="engine --dynamic: smallest batch.")] = 1,
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="engine --dynamic: the batch TensorRT tunes for.")] = 8,
    int8: Annotated[bool, typer.Option("--int8", help="engine: INT8, calibrated on --calib-data.")] = False,
    calib_data: Annotated[
        Path | None, typer.Option("--calib-data", help="engine --int8: data.yaml or an image folder.")
    ] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="engine --int8: images used.")] = 512,
    workspace: Annotated[float, typer.Option("--workspace", help="engine: builder workspace in GB.")] = 4.0,
    builder: Annotated[
        str, typer.Option("--builder", help="engine: python (TensorRT API), trtexec, or auto (python if installed).")
    ] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON here.")] = None,
):
    """Export a .pt to ONNX, a compiled .pt2 or a TensorRT engine (metadata kept), then check it against PyTorch.

    Examples:
      yolo-accel export yolov5n.pt --imgsz 640 --dynamic --output yolov5n.onnx
      yolo-accel export yolov5n.pt --format compiled --device cuda --half    (writes yolov5n-fp16-cuda.pt2)
      yolo-accel export yolov5n.pt --format engine --device cuda --half --dynamic --max-batch 32
    """
    from .outputs import check_file

    fmt = format.lower()
    if fmt not in ("onnx", "compiled", "engine"):
        raise YoloAccelError(f"unknown --format {format!r}; available: onnx, compiled, engine")
    _check_imgsz(imgsz)
    check_file(output, force, "--output")
    check_file(json_out, force, "--json")
    with err.status("exporting") as status:
        if fmt == "onnx":
            from .export.onnx import OnnxExportSettings, export_onnx

            settings = OnnxExportSettings(
                imgsz=imgsz, opset=opset, dynamic=dynamic, half=half, batch=batch, simplify=simplify
            )
            result = export_onnx(
                model, output, settings, device=device, force=force, check=check, status=lambda t: status.update(t)
            )
        elif fmt == "engine":
            from .export.tensorrt import EngineExportSettings, export_engine

            settings = EngineExportSettings(
                imgsz=imgsz,
                half=half,
                int8=int8,
                calib_data=str(calib_data) if calib_data else None,
                calib_images=calib_images,
                dynamic=dynamic,
                min_batch=min_batch,
                opt_batch=opt_batch,
                max_batch=max_batch or 32,
                batch=batch,
                workspace_gb=workspace,
                builder=builder,
            )
            result = export_engine(
                model, output, settings, device=device, force=force, check=check, status=lambda t: status.update(t)
            )
        else:
            from .export.compiled import CompiledExportSettings, export_compiled

            settings = CompiledExportSettings(imgsz=imgsz, half=half, max_batch=max_batch or 128)
            result = export_compiled(
                model, output, settings, device=device, force=force, check=check, status=lambda t: status.update(t)
            )
    _report_export(result, json_out)
    if not result.ok:
        raise typer.Exit(1)


def _report_export(result, json_out: Path | None) -> None:
    from .runs import write_json_atomic

    if result.parity is not None:
        out.print(_parity_table(result.parity, f"parity: {result.parity.reference}  vs  {result.parity.test}"))
    if result.ok:
        out.print(
            f"[green]exported[/] {result.path} ({result.size_bytes / 1e6:.1f} MB, "
            f"{result.seconds:.1f} s{''.join('; ' + n for n in result.notes)})"
            + ("" if result.parity else "  [yellow](parity not checked)[/]")
        )
    else:
        p = result.parity
        err.print(
            f"[bold red]parity FAILED:[/] {p.match_rate:.1%} of PyTorch detections matched by the exported "
            f"model (>= {p.threshold:.0%} needed); nothing was written to {result.target}. Re-run with "
            f"--no-check to keep the file anyway, or (ONNX) try --no-simplify / another --opset."
        )
    if json_out:
        data = {
            "ok": result.ok,
            "output": str(result.path) if result.path else None,
            "size_bytes": result.size_bytes,
            "seconds": result.seconds,
            "settings": vars(result.settings),
            "notes": result.notes,
            "source_sha256": result.info.sha256,
            "parity": result.parity.to_dict() if result.parity else None,
        }
        write_json_atomic(json_out, data)


@command("predict")
def predict_cmd(
    source: Annotated[str, typer.Argument(help="An image, a folder of images, or a glob ('imgs/*.jpg').")],
    model: Annotated[Path, typer.Option("--model", "-m", help=".pt or .onnx model.")],
    backend: Annotated[
        str | None,
        typer.Option("--backend", "-b", help="torch, onnxruntime or compiled (default: from the file suffix)."),
    ] = None,
    device: DeviceOpt = "cpu",
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = 0.45,
    imgsz: ImgszOpt = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Keep only these classes: names or ids, e.g. car,bus,truck,motorcycle."),
    ] = None,
    max_det: Annotated[int, typer.Option("--max-det", help="Most detections per image.")] = 300,
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
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime intra-op threads (0: auto).")] = 0,
    cuda_graph: CudaGraphOpt = False,
    channels_last: ChannelsLastOpt = False,
    compile: CompileOpt = False,
    io_binding: IoBindingOpt = False,
    gpu_ops: GpuOpsOpt = None,
    save_dir: Annotated[Path | None, typer.Option("--save-dir", help="Write annotated images here.")] = None,
    save_json: Annotated[Path | None, typer.Option("--save-json", help="Write detections as JSON here.")] = None,
    force: ForceOpt = False,
):
    """Detect objects in images and print a summary table.

    Boxes are in original-image pixels. A .pt run with --backend onnxruntime is exported to
    ONNX once and cached (keyed on the checkpoint hash and the export settings).

    Example: yolo-accel predict bus.jpg --model yolov5n.pt --backend onnxruntime --classes person,bus
    """
    import cv2
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from .annotate import draw_detections
    from .detector import Detector
    from .errors import DataError
    from .images import expand_source, read_image
    from .outputs import check_file, check_folder
    from .runs import write_json_atomic

    check_folder(save_dir, "--save-dir")
    check_file(save_json, force, "--save-json")
    _check_imgsz(imgsz)
    paths = expand_source(source)
    speed = _speed_options(cuda_graph, channels_last, compile, io_binding, gpu_ops, threads)
    with err.status(f"loading {model.name}"):
        det = Detector(
            model,
            backend=backend,
            device=device,
            half=half,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            classes=classes,
            max_det=max_det,
            rect=rect,
            names_file=names,
            **speed,
        )
    records, table = [], Table(title=escape(f"{model.name} on {det.describe()}"), title_justify="left")
    for col in ("image", "size", "detections", "pre ms", "infer ms", "post ms"):
        table.add_column(col, justify="left" if col in ("image", "detections") else "right")
    failure: Exception | None = None  # a write that fails mid-run: the results so far are printed first
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("predicting", total=len(paths))
        for p in paths:
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
                target = save_dir / p.name
                try:
                    save_dir.mkdir(parents=True, exist_ok=True)
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


@command("validate")
def validate_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="PyTorch checkpoint (.pt): the FP32 reference.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="data.yaml (its val split), a folder of images with YOLO labels, or a COCO annotations .json.",
        ),
    ],
    backends: Annotated[
        str,
        typer.Option(
            "--backends", help="Comma-separated: torch, onnxruntime; add -fp16 for an FP16 variant (onnxruntime-fp16)."
        ),
    ] = "torch,onnxruntime",
    device: DeviceOpt = "cpu",
    half: Annotated[
        bool, typer.Option("--half", help="Run every listed backend in FP16 (CUDA); the reference stays FP32.")
    ] = False,
    gates: Annotated[str, typer.Option("--gates", help="onnx, tensorrt, or a YAML file of thresholds.")] = "onnx",
    imgsz: ImgszOpt = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per batch.")] = 8,
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold for mAP.")] = 0.001,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU for mAP.")] = 0.7,
    max_det: Annotated[int, typer.Option("--max-det", help="Most detections per image.")] = 300,
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="Validate this ONNX file instead of the cached export of --model.")
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
):
    """Accuracy (mAP), similarity to PyTorch FP32 and speed of each backend, against acceptance gates.

    Exit code 0 when every gate passes, 1 when any fails, 2 for bad input.

    Example: yolo-accel validate --model yolov5n.pt --data coco128/data.yaml --backends torch,onnxruntime
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .evaluate.datasets import load_dataset
    from .report import write_validation_report
    from .runs import next_run_dir
    from .validate import ValidateSettings, run_validation

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
        clip_labels=clip_labels,
        images_dir=str(images) if images else None,
        speed_metric=speed_metric,
        speed_batch=speed_batch,
        speed_iters=speed_iters,
    )
    from .outputs import check_folder, check_report_folder

    check_report_folder(report_dir, ("report.json", "report.md", "report.html"), force, "--report-dir")
    if report_dir is None:
        check_folder(Path("runs") / "validate", "runs folder")
    _check_imgsz(imgsz)
    n_images = len(load_dataset(data, clip_labels, images).items)  # fails fast on bad labels
    with Progress(
        TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("validate", total=n_images)
        report = run_validation(model, data, settings, progress=lambda n: progress.advance(task, n))
    _print_validation(report, out, escape, Table)  # the results first: a write that fails still leaves them
    folder = report_dir or next_run_dir("validate")
    paths = write_validation_report(report, folder)
    out.print(f"reports: {paths['html']}  {paths['md']}  {paths['json']}")
    if report["verdict"] != "PASS":
        raise typer.Exit(1)


def _print_validation(report: dict, console, escape, Table) -> None:
    from .report.validation import GATE_HEADER, gate_rows, speed_statement, summary_rows

    d = report["data"]
    console.print(
        escape(
            f"{d['images']} images, {d['instances']} instances, {d['backgrounds']} backgrounds, "
            f"{len(d['skipped'])} skipped"
        )
    )
    t = Table(title="accuracy, similarity to torch FP32, speed", title_justify="left")
    # short headers: the full ones are in report.md / report.html
    for h in ("backend", "mAP50-95", "mAP50", "similar", "model ms", "e2e ms", "speedup"):
        t.add_column(h, justify="left" if h == "backend" else "right", no_wrap=True)
    for r in summary_rows(report):
        t.add_row(*map(escape, [r[0], r[1], r[2], r[5], r[6], r[8], r[9]]))
    console.print(t)
    console.print(escape(speed_statement(report)), highlight=False)
    rows = gate_rows(report)
    if rows:
        g = Table(title=f"gates: {report['gates']['name']}", title_justify="left")
        for h in GATE_HEADER:
            g.add_column(h, overflow="fold")
        for r in rows:
            colour = "green" if r[4] == "PASS" else "red"
            g.add_row(*map(escape, r[:4]), f"[{colour}]{r[4]}[/]", escape(r[5]))
        console.print(g)
    colour = "green" if report["verdict"] == "PASS" else "red"
    console.print(f"verdict: [bold {colour}]{report['verdict']}[/]")


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise YoloAccelError(f"--batch takes comma-separated whole numbers, e.g. 1,8,32 (got {text!r})") from None
    if not values or min(values) < 1:
        raise YoloAccelError(f"--batch sizes must be at least 1 (got {text!r})")
    return values


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise YoloAccelError(f"--frame-size takes WxH, e.g. 1920x1080 (got {text!r})") from None
    if w < 1 or h < 1:
        raise YoloAccelError(f"--frame-size must be positive (got {text!r})")
    return w, h


@command("bench")
def bench_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help=".pt (any backend) or .onnx (onnxruntime).")],
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help="Comma-separated variants NAME[-fp16][-cl][-compile][-iobind][-graph][-cpu] with NAME "
            "torch, onnxruntime or compiled, e.g. torch,torch-fp16-graph,compiled-fp16,onnxruntime-fp16-iobind. "
            "-cl: channels_last; -compile: torch.export + torch.compile; -graph: CUDA graphs; -cpu: this row on "
            "the CPU. torch-fp16-cl-compile-graph is the fastest on an H100 (BENCHMARKS.md). "
            "The first is the baseline for speedups.",
        ),
    ] = "torch,onnxruntime",
    device: DeviceOpt = "cpu",
    half: HalfOpt = False,
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes, e.g. 1,8,32.")] = "1",
    imgsz: ImgszOpt = None,
    iters: Annotated[int, typer.Option("--iters", help="Timed iterations per row (model-only).")] = 100,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed iterations first.")] = 10,
    duration: Annotated[
        float, typer.Option("--duration", help="Stop a row after this many seconds (at least 3 timed iterations).")
    ] = 20.0,
    e2e_iters: Annotated[
        int,
        typer.Option("--e2e-iters", help="Timed end-to-end calls per row (within half of --duration; at least 3)."),
    ] = 100,
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime intra-op threads (0: all cores).")] = 0,
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
):
    """Speed, memory and size of every backend side by side, in one process, on the same inputs.

    Model-only latency (GPU: CUDA events after warm-up; CPU: perf_counter_ns), end-to-end latency from a
    decoded frame to Detections with a per-stage breakdown, throughput, peak GPU and host memory,
    artifact size, and speedup over the first backend listed.

    Example: yolo-accel bench --model yolov8n.pt --backends torch,torch-fp16,onnxruntime-iobind
    --device cuda --batch 1,8,32
    """
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from .backends.variants import parse_variants
    from .bench.runner import BenchSettings, run_bench
    from .report import write_bench_report
    from .report.bench import rows
    from .runs import next_run_dir

    settings = BenchSettings(
        backends=tuple(backends.split(",")),
        device=device,
        half=half,
        batches=_batches(batch),
        imgsz=imgsz,
        iters=iters,
        warmup=warmup,
        duration_s=duration,
        e2e_iters=e2e_iters,
        threads=threads,
        ort_gpu_mem_limit_gb=ort_gpu_mem_limit,
        frame=str(frame) if frame else None,
        frame_size=_frame_size(frame_size) if frame_size else None,
    )
    from .outputs import check_folder, check_report_folder

    check_report_folder(report_dir, ("bench.json", "bench.md", "bench.html"), force, "--report-dir")
    if report_dir is None:
        check_folder(Path("runs") / "bench", "runs folder")
    _check_imgsz(imgsz)
    total = len(parse_variants(backends, half)) * len(settings.batches)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("benchmarking", total=total)
        report = run_bench(model, settings, progress=lambda: progress.advance(task))
    t = Table(title=escape(f"{model.name}: model-only latency and throughput"), title_justify="left")
    for h in ("backend", "batch", "median ms", "p95", "p99", "img/s", "e2e ms", "speedup", "GPU MB"):
        t.add_column(h, justify="left" if h == "backend" else "right", no_wrap=True)
    for r in rows(report):
        t.add_row(*map(escape, [r[0], r[1], r[2], r[3], r[4], r[7], r[8], r[10], r[11].split(" ")[0]]))
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


@command("report")
def report_cmd(
    folder: Annotated[Path, typer.Argument(help="A report folder (bench.json or report.json) or the JSON file.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the Markdown and HTML files already there.")] = False,
):
    """Re-render report.md / report.html (validate) or bench.md / bench.html (bench) from the JSON."""
    from .report import rerender

    paths = rerender(folder, force=force)
    out.print(f"written: {paths['md']}  {paths['html']}")


@command("video")
def video_cmd(
    source: Annotated[
        list[str],
        typer.Argument(
            help="A video file, a folder of images, an rtsp:// or http:// URL, or a webcam index (0). "
            "Several sources run as concurrent streams sharing one batched detector."
        ),
    ],
    model: Annotated[Path, typer.Option("--model", "-m", help=".pt, .onnx, .pt2 or .engine model.")],
    backend: Annotated[
        str | None,
        typer.Option("--backend", "-b", help="torch, onnxruntime, compiled or tensorrt (default: from the suffix)."),
    ] = None,
    device: DeviceOpt = "cpu",
    half: HalfOpt = False,
    imgsz: ImgszOpt = None,
    classes: Annotated[str | None, typer.Option("--classes", help="e.g. car,motorcycle,bus,truck")] = None,
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold.")] = 0.25,
    iou: Annotated[
        float,
        typer.Option("--iou", help="NMS IoU threshold (0.5 here: vehicles in traffic overlap more than in photos)."),
    ] = 0.5,
    max_det: Annotated[
        int, typer.Option("--max-det", help="Most detections per frame (30: a road scene, and a faster tracker).")
    ] = 30,
    tracker: Annotated[str, typer.Option("--tracker", help="bytetrack, sort or none.")] = "bytetrack",
    line: Annotated[list[str] | None, typer.Option("--line", help="Counting line x1,y1,x2,y2 (repeatable).")] = None,
    zone: Annotated[
        list[str] | None, typer.Option("--zone", help="Counting zone x1,y1,x2,y2,x3,y3,... (repeatable).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Annotated MP4 (H.264).")] = None,
    save_frames: Annotated[Path | None, typer.Option("--save-frames", help="Annotated JPEG frames here.")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="One JSON line per crossing.")] = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="The summary as JSON.")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Stop after N frames per stream.")] = None,
    stride: Annotated[int, typer.Option("--stride", help="Process every K-th frame.")] = 1,
    loop: Annotated[
        bool,
        typer.Option("--loop", help="Play files and folders again from the start when they end (with --duration)."),
    ] = False,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds (a planned end: exit code 0).")
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="Frames per stream in one detector batch (default 8 on CUDA, 1 on the CPU)."),
    ] = None,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", help="A batch closes after waiting this long for more frames.")
    ] = 2.0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Processes that track, count and write (default: one per stream, at most 8 and cores - 2; "
            "0: a thread in this process).",
        ),
    ] = None,
    hud: Annotated[bool, typer.Option("--hud/--no-hud", help="FPS and counts panel on annotated frames.")] = True,
    serve_mjpeg: Annotated[
        int | None, typer.Option("--serve-mjpeg", help="Serve annotated frames as MJPEG on http://127.0.0.1:PORT/.")
    ] = None,
    retries: Annotated[int, typer.Option("--retries", help="Reconnect attempts for streams.")] = 5,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
    cuda_graph: CudaGraphOpt = False,
    channels_last: ChannelsLastOpt = False,
    compile: CompileOpt = False,
    io_binding: IoBindingOpt = False,
    gpu_ops: GpuOpsOpt = None,
    nvdec: Annotated[
        bool, typer.Option("--nvdec", help="Decode video files on the GPU (NVDEC via PyNvVideoCodec); --device cuda.")
    ] = False,
):
    """Detect, track, count, annotate and write or stream videos, with a per-stage timing table.

    Each stream is decoded in its own thread (NVDEC frames stay on the GPU); frames of all streams
    are detected in shared batches; tracking, counting and writing run in worker processes. A stream
    that fails is reported in its summary and the others go on. Ctrl-C or SIGTERM stops cleanly:
    every file is finished and the summary written (exit code 130). Exit code 2 when a stream failed
    (e.g. a truncated file), after its readable frames are processed.

    Examples:
      yolo-accel video traffic.mp4 --model yolov5n.pt --classes car,bus,truck --line 0,450,1280,450 -o out.mp4
      yolo-accel video cam1.mp4 cam2.mp4 --model yolov5n.pt --device cuda --half --cuda-graph --nvdec
        (two streams, one batched GPU detector; outputs get -0, -1 suffixes)
      yolo-accel video clip.mp4 --model yolov5n.pt --loop --duration 600 --summary soak.json
        (a soak: the memory curve is in the summary)
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .detector import Detector
    from .device import parse_device
    from .errors import SettingsError
    from .runs import write_json_atomic
    from .video.engine import EngineSettings, VideoEngine, per_stream_settings, single_stream_summary
    from .video.processor import StreamSettings
    from .video.sources import open_source

    n = len(source)
    settings = per_stream_settings(
        StreamSettings(
            tracker=tracker,
            lines=list(line or []),
            zones=list(zone or []),
            output=str(output) if output else None,
            save_frames=str(save_frames) if save_frames else None,
            events=str(events) if events else None,
            serve_mjpeg=serve_mjpeg,
            hud=hud,
        ),
        n,
    )
    from .outputs import check_file, check_folder

    for st in settings:  # every path this run writes, checked before any work
        check_file(st.output, force, "--output")
        check_file(st.events, force, "--events")
        check_folder(st.save_frames, "--save-frames")
    check_file(summary, force, "--summary")
    _check_imgsz(imgsz)
    if stride < 1 or (batch is not None and batch < 1) or max_wait_ms < 0:
        raise SettingsError("--stride and --batch must be at least 1, --max-wait-ms at least 0")
    if duration is not None and duration <= 0:
        raise SettingsError("--duration must be positive")
    if workers is not None and workers < 0:
        raise SettingsError("--workers must be 0 or more")
    if n > 1 and serve_mjpeg is not None:
        raise SettingsError("--serve-mjpeg serves one stream; run one source per port")
    if loop and duration is None and max_frames is None:
        raise SettingsError("--loop plays forever: give --duration (or --max-frames), or stop it with Ctrl-C")
    from .video.counting import parse_line, parse_zone
    from .video.tracking import make_tracker

    for i, t in enumerate(line or []):
        parse_line(t, i + 1)
    for i, t in enumerate(zone or []):
        parse_zone(t, i + 1)
    make_tracker(tracker, 25.0)  # an unknown tracker name fails here, before the model loads
    speed = _speed_options(cuda_graph, channels_last, compile, io_binding, gpu_ops)
    with err.status(f"loading {model.name}"):
        det = Detector(
            model,
            backend=backend,
            device=device,
            half=half,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            classes=classes,
            max_det=max_det,
            rect=False,
            **speed,
        )
        if nvdec and not det.gpu_ops:
            raise SettingsError(
                "--nvdec frames stay on the GPU: use a backend that takes device tensors (torch or compiled "
                "with --device cuda, or onnxruntime with --io-binding) and leave out --cpu-ops"
            )
        nvdec_device = str(parse_device(device)) if nvdec else None
        srcs: list = []
        for x in source:
            try:
                srcs.append(open_source(x, stride, max_frames, retries, nvdec_device=nvdec_device, loop=loop))
            except YoloAccelError as e:
                if n == 1:
                    raise
                err.print(f"[yellow]warning:[/] stream {len(srcs)}: {escape(str(e))}", highlight=False)
                srcs.append(e)
    for src in srcs:
        if not isinstance(src, Exception):
            err.print(f"{src.description} -> {det.describe()}", highlight=False)
    if serve_mjpeg is not None:
        err.print(f"MJPEG stream on http://127.0.0.1:{serve_mjpeg}/", highlight=False)
    counts = [getattr(src, "frame_count", 0) for src in srcs]
    total = None if (None in counts or loop) else sum(-(-min(c, max_frames or c) // stride) for c in counts)
    use_batch = batch if batch is not None else (8 if parse_device(device).is_cuda else 1)
    engine_settings = EngineSettings(batch=use_batch, max_wait_ms=max_wait_ms, workers=workers, duration_s=duration)
    with Progress(
        TextColumn("video"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("video", total=total, fps="")
        t0 = time.perf_counter()
        seen = [0]

        def tick(k: int) -> None:
            seen[0] += k
            progress.update(task, advance=k, fps=f"{seen[0] / max(time.perf_counter() - t0, 1e-9):.1f} FPS")

        engine = VideoEngine(det, srcs, settings, engine_settings, progress=tick)
        result = engine.run()
    det.close()
    result["settings"] = {
        "model": str(model),
        "backend": det.backend.name,
        "device": device,
        "imgsz": list(det.imgsz),
        "conf": conf,
        "iou": iou,
        "classes": det.classes,
        "tracker": tracker,
        "lines": list(line or []),
        "zones": list(zone or []),
        "stride": stride,
        "batch": use_batch,
        "max_wait_ms": max_wait_ms,
        "workers": engine.n_workers,
        "nvdec": nvdec,
        "loop": loop,
        "duration_s": duration,
        "runtime": det.describe(),
    }
    if n > 1:
        for i, r in enumerate(result["streams"]):
            out.print(f"[bold]stream {i}[/] ({escape(r['source'])})")
            _print_video_summary(r)
        b = result["batcher"]
        out.print(
            f"[bold]{n} streams[/]: {result['frames']} frames in {result['wall_s']:.1f} s, "
            f"{result['fps']:.1f} FPS in total; {b['batches']} batches, mean batch {b['mean_batch']}"
        )
    else:
        result = {**single_stream_summary(result), "settings": result["settings"]}
        _print_video_summary(result)
    _print_engine_line(result)
    if summary:
        write_json_atomic(summary, result)
        out.print(f"summary written to {summary}")
    if result["error"]:
        err.print(f"[bold red]error:[/] {escape(result['error'])}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if result["interrupted"]:
        raise typer.Exit(130)


def _print_engine_line(r: dict) -> None:
    """Where the time went: busy shares of the detect loop, the busiest decoder and worker; memory drift."""
    b, m = r["busy"], r["memory"]
    text = (
        f"busy: detect launch {b['launch_pct']:.0f}% / finish {b['finish_pct']:.0f}%, decode (busiest stream) "
        f"{b['decode_pct_max']:.0f}%, worker (busiest) {b['worker_pct_max']:.0f}%; {r['workers']} worker process(es)"
    )
    if m.get("gpu_util_mean_pct") is not None:
        text += f"; GPU {m['gpu_util_mean_pct']:.0f}%, NVDEC {m['decoder_util_mean_pct']:.0f}%"
    if m.get("rss_drift_pct") is not None:
        text += f"; memory drift host {m['rss_drift_pct']:.1f}%"
        if m.get("gpu_drift_pct") is not None:
            text += f", GPU {m['gpu_drift_pct']:.1f}%"
    out.print(text, highlight=False)


def _print_video_summary(r: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    lat = r["latency_ms"]
    out.print(
        escape(
            f"{r['frames']} frames ({r['dropped_frames']} dropped), {r['detections']} detections, "
            f"{r['tracks']} tracks, {r['fps']:.1f} FPS, latency per frame mean {lat['mean']:.1f} ms, "
            f"p95 {lat['p95']:.1f} ms" + (" (interrupted)" if r["interrupted"] else "")
        )
    )
    if r["counts"]:
        t = Table(title="counts", title_justify="left")
        for h in ("counter", "class", "in", "out"):
            t.add_column(h, justify="left" if h in ("counter", "class") else "right")
        for c, per in r["counts"].items():
            for name, v in per.items():
                t.add_row(c, escape(name), str(v["in"]), str(v["out"]))
        out.print(t)
    t = Table(title="per-stage timing (ms per frame)", title_justify="left")
    for h in ("stage", "mean", "p95", "share"):
        t.add_column(h, justify="left" if h == "stage" else "right")
    for st in r["stages"]:
        t.add_row(st["stage"], f"{st['mean_ms']:.2f}", f"{st['p95_ms']:.2f}", f"{100 * st['share']:.0f}%")
    out.print(t)
    if r["output"]["video"]:
        out.print(
            f"video written to {r['output']['video']} ({r['output']['video_frames']} frames, "
            f"{r['output']['video_backend']})"
        )


@command("doctor")
def doctor_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
):
    """Check the installation: packages, CUDA, ONNX Runtime providers, TensorRT, assets."""
    import json

    from rich.table import Table

    from .doctor import MISSING, OK, as_json, run_checks

    checks = run_checks()
    if json_out:
        print(json.dumps(as_json(checks), indent=2))
        return
    t = Table(title="yolo-accel doctor", title_justify="left")
    for col in ("check", "status", "detail", "fix"):
        t.add_column(col, overflow="fold")
    for c in checks:
        colour = "green" if c.status == OK else ("red" if c.status == MISSING else "yellow")
        t.add_row(c.name, f"[{colour}]{c.status}[/]", c.detail, c.fix)
    out.print(t)


@command("demo")
def demo_cmd(
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Default: the shared YOLOv5n.")] = None,
    device: DeviceOpt = "cpu",
):
    """Run the main job end to end on the shared assets: export, parity, predict with every backend."""
    from .demo import run_demo

    run_demo(model, device, out, err)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except YoloAccelError as e:  # raised outside a command (should not happen, but never a traceback)
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
