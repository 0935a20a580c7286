"""yolo-accel export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import err, out, parity_table
from ..errors import YoloAccelError
from .app import command
from .options import DeviceOpt, ImgszOpt, OpsetOpt, check_imgsz_option


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
            "(TensorRT 10 Python API or trtexec; needs TensorRT and --device cuda); openvino: an OpenVINO IR "
            "(.xml + .bin) for CPUs, FP32 or --int8 (NNCF).",
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
            help="Compare with the PyTorch model on real images (exit 1 below 98% of detections matched).",
        ),
    ] = True,
    parity_images: Annotated[
        str | None,
        typer.Option(
            "--parity-images",
            help="Images for that check: a file, folder or glob (default: bus.jpg and zidane.jpg, from the "
            "assets folder or downloaded once into the cache).",
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch", min=1, help="compiled (default 128) / engine with --dynamic (default 32): largest batch."
        ),
    ] = None,
    min_batch: Annotated[int, typer.Option("--min-batch", min=1, help="engine --dynamic: smallest batch.")] = 1,
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="engine --dynamic: the batch TensorRT tunes for.")] = 8,
    int8: Annotated[bool, typer.Option("--int8", help="engine, openvino: INT8, calibrated on --calib-data.")] = False,
    calib_data: Annotated[
        Path | None, typer.Option("--calib-data", help="--int8: data.yaml or an image folder.")
    ] = None,
    calib_images: Annotated[
        int, typer.Option("--calib-images", help="--int8: images used (engine 512, openvino 300).")
    ] = 512,
    workspace: Annotated[float, typer.Option("--workspace", help="engine: builder workspace in GB.")] = 4.0,
    builder: Annotated[
        str, typer.Option("--builder", help="engine: python (TensorRT API), trtexec, or auto (python if installed).")
    ] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON here.")] = None,
):
    """Export a .pt to ONNX, a compiled .pt2, a TensorRT engine or an OpenVINO IR (metadata kept), then check it
    against PyTorch.

    Examples:
      yolo-accel export yolov5n.pt --imgsz 640 --dynamic --output yolov5n.onnx
      yolo-accel export yolov5n.pt --format compiled --device cuda --half    (writes yolov5n-fp16-cuda.pt2)
      yolo-accel export yolov5n.pt --format engine --device cuda --half --dynamic --max-batch 32
      yolo-accel export yolov5n.pt --format openvino --int8 --calib-data coco128/data.yaml
        (writes yolov5n-openvino-int8.xml and .bin, for CPUs)
    """
    from ..outputs import check_distinct, check_file

    fmt = format.lower()
    if fmt not in ("onnx", "compiled", "engine", "openvino"):
        raise YoloAccelError(f"unknown --format {format!r}; available: onnx, compiled, engine, openvino")
    check_imgsz_option(imgsz)
    if int8 and fmt not in ("engine", "openvino"):
        raise YoloAccelError(f"--int8 applies to --format engine and openvino, not {fmt} (it would export FP32)")
    check_file(output, force, "--output")
    check_file(json_out, force, "--json")
    check_distinct({"--output": output, "--json": json_out}, [model])
    images = None
    if parity_images is not None:
        from ..images import expand_source

        images = expand_source(parity_images)
    with err.status("exporting") as status:
        common = {
            "device": device,
            "force": force,
            "check": check,
            "status": lambda t: status.update(t),
            "parity_images": images,
        }
        if fmt == "onnx":
            from ..export.onnx import OnnxExportSettings, export_onnx

            settings = OnnxExportSettings(
                imgsz=imgsz, opset=opset, dynamic=dynamic, half=half, batch=batch, simplify=simplify
            )
            result = export_onnx(model, output, settings, **common)
        elif fmt == "engine":
            from ..export.tensorrt import EngineExportSettings, export_engine

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
            result = export_engine(model, output, settings, **common)
        elif fmt == "openvino":
            from ..export.openvino import OpenVINOExportSettings, export_openvino

            settings = OpenVINOExportSettings(
                imgsz=imgsz,
                dynamic=dynamic,
                int8=int8,
                calib_data=str(calib_data) if calib_data else None,
                calib_images=calib_images if calib_images != 512 else 300,
            )
            result = export_openvino(model, output, settings, **common)
        else:
            from ..export.compiled import CompiledExportSettings, export_compiled

            settings = CompiledExportSettings(imgsz=imgsz, half=half, max_batch=max_batch or 128)
            result = export_compiled(model, output, settings, **common)
    _report_export(result, json_out)
    if not result.ok:
        raise typer.Exit(1)


def _report_export(result, json_out: Path | None) -> None:
    from ..runs import write_json_atomic

    if result.parity is not None:
        out.print(parity_table(result.parity, f"parity: {result.parity.reference}  vs  {result.parity.test}"))
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
