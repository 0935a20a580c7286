"""yolo-accel video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..console import err, frame_progress, out, print_engine_line, print_video_summary
from ..errors import YoloAccelError
from ..scale.cluster import RAY_HELP
from .app import command
from .options import (
    BackendOpt,
    ChannelsLastOpt,
    CompileOpt,
    CudaGraphOpt,
    DeployOpt,
    DeviceOpt,
    GpuOpsOpt,
    HalfOpt,
    ImgszOpt,
    IoBindingOpt,
    OcrOpt,
    PlatePatternOpt,
    check_imgsz_option,
    check_ocr_options,
    deploy_config,
    finite,
    speed_options,
)


@command("video")
def video_cmd(
    source: Annotated[
        list[str] | None,
        typer.Argument(
            help="A video file, a folder of images, an rtsp:// or http:// URL, or a webcam index (0). "
            "Several sources run as concurrent streams sharing one batched detector."
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help=".pt, .onnx, .pt2, .xml or .engine model.")
    ] = None,
    backend: BackendOpt = None,
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
    line: Annotated[
        list[str] | None,
        typer.Option(
            "--line",
            help="Counting line x1,y1,x2,y2 in the frame's pixels (repeatable; one that misses the frame is refused).",
        ),
    ] = None,
    zone: Annotated[
        list[str] | None, typer.Option("--zone", help="Counting zone x1,y1,x2,y2,x3,y3,... (repeatable).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Annotated MP4 (H.264).")] = None,
    save_frames: Annotated[Path | None, typer.Option("--save-frames", help="Annotated JPEG frames here.")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="One JSON line per crossing.")] = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="The summary as JSON.")] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Stop after N frames per stream.")
    ] = None,
    stride: Annotated[int, typer.Option("--stride", min=1, help="Process every K-th frame.")] = 1,
    loop: Annotated[
        bool,
        typer.Option("--loop", help="Play files and folders again from the start when they end (with --duration)."),
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            callback=finite,
            help="Stop after this many seconds (a planned end: exit code 0).",
        ),
    ] = None,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime",
            help="Deliver files' frames at their frame rate, as a camera would (soak tests, demos); "
            "by default a file is read as fast as the detector takes it.",
        ),
    ] = False,
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
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder",
            help="MP4 encoder for --output: nvenc (the GPU's video encoder), cpu (libx264 through PyAV, else "
            "OpenCV), or auto: NVENC on a --device cuda run when it starts there, else the CPU.",
        ),
    ] = "auto",
    fps_overlay: Annotated[
        bool,
        typer.Option(
            "--fps-overlay/--no-fps-overlay",
            help="FPS in that panel (off: the written frames depend only on the video, not on the machine).",
        ),
    ] = True,
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
    ocr: OcrOpt = False,
    ocr_tries: Annotated[
        int, typer.Option("--ocr-tries", min=1, help="Reads per vehicle at most (each on a larger crop).")
    ] = 5,
    plate_pattern: PlatePatternOpt = None,
    plate_crops: Annotated[
        Path | None, typer.Option("--plate-crops", help="Folder for each vehicle's best-read crop (track<ID>.jpg).")
    ] = None,
    deploy: DeployOpt = None,
    sources_file: Annotated[
        Path | None, typer.Option("--sources-file", help="More sources, one per line (# starts a comment).")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help=RAY_HELP + " One video engine per GPU (--device cuda) or --engines CPU engines; streams go to "
            "the engines by load, a dead engine's streams start again on another from their next frame, events "
            "are written once. Takes --events and --summary (gathered here), not the annotated outputs.",
        ),
    ] = None,
    engines: Annotated[
        int | None,
        typer.Option("--engines", help="With --ray: engines to place (default: every GPU of the cluster; 2 on CPUs)."),
    ] = None,
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
    from ..detector import Detector
    from ..device import parse_device
    from ..errors import SettingsError
    from ..runs import write_json_atomic
    from ..video.engine import EngineSettings, VideoEngine, per_stream_settings, single_stream_summary
    from ..video.processor import StreamSettings
    from ..video.sources import open_source

    source = list(source or [])
    if sources_file is not None:
        from ..scale.video import read_sources_file

        source += read_sources_file(sources_file)
    if not source:
        raise SettingsError("give at least one source (or --sources-file FILE)")
    n = len(source)
    cfg = deploy_config(deploy, model, backend)
    if cfg is not None:
        model, device, conf, iou = cfg.artifact, cfg.run_device, cfg.conf, cfg.iou
    dev = parse_device(device)
    from ..video.sinks import ENCODERS

    encoder = encoder.lower()
    if encoder not in ENCODERS:
        raise SettingsError(f"unknown --encoder {encoder!r}; use {', '.join(ENCODERS)}")
    if encoder == "auto" and output and dev.is_cuda:
        from ..video.sinks import nvenc_problem

        problem = nvenc_problem(dev.index)  # probed once here, not in every stream's worker
        encoder = "nvenc" if problem is None else "cpu"
        if problem:
            note = f"NVENC unavailable ({escape(problem)}): MP4 encoded on the CPU"
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    check_ocr_options(ocr, plate_pattern, **{"--plate-crops": plate_crops})
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
            hud_fps=fps_overlay,
            encoder=encoder,
            encoder_gpu=dev.index if dev.is_cuda else None,
            ocr=ocr,
            ocr_tries=ocr_tries,
            plate_pattern=plate_pattern,
            ocr_device="cpu",  # ONNX Runtime's CUDA provider read slower than the CPU (BENCHMARKS.md)
            plate_crops=str(plate_crops) if plate_crops else None,
        ),
        n,
    )
    from ..outputs import check_distinct, check_file, check_folder

    written: dict[str, str | None] = {"--summary": summary}
    for i, st in enumerate(settings):  # every path this run writes, checked before any work
        check_file(st.output, force, "--output")
        check_file(st.events, force, "--events")
        check_folder(st.save_frames, "--save-frames")
        which = f" (stream {i + 1})" if len(settings) > 1 else ""
        written |= {f"--output{which}": st.output, f"--events{which}": st.events}
    check_file(summary, force, "--summary")
    check_distinct(written, [s for s in source if Path(str(s)).expanduser().is_file()])  # files, not URLs
    check_imgsz_option(imgsz)
    if (batch is not None and batch < 1) or max_wait_ms < 0:  # --stride is ranged by its option
        raise SettingsError("--batch must be at least 1, --max-wait-ms at least 0")
    if duration is not None and duration <= 0:
        raise SettingsError("--duration must be positive")
    if workers is not None and workers < 0:
        raise SettingsError("--workers must be 0 or more")
    if n > 1 and serve_mjpeg is not None:
        raise SettingsError("--serve-mjpeg serves one stream; run one source per port")
    if loop and duration is None and max_frames is None:
        raise SettingsError("--loop plays forever: give --duration (or --max-frames), or stop it with Ctrl-C")
    from ..video.counting import parse_line, parse_zone
    from ..video.tracking import make_tracker

    for i, t in enumerate(line or []):
        parse_line(t, i + 1)
    for i, t in enumerate(zone or []):
        parse_zone(t, i + 1)
    make_tracker(tracker, 25.0)  # an unknown tracker name fails here, before the model loads
    if ray is not None:
        from .video_ray import run_video_on_ray

        given = dict(model=model, backend=backend, device=device, half=half, imgsz=imgsz, conf=conf, iou=iou)
        kwargs = (
            cfg.detector_kwargs()
            if cfg is not None
            else {**given, **speed_options(cuda_graph, channels_last, compile, io_binding, gpu_ops)}
        )
        kwargs["max_det"] = max_det
        kwargs["classes"] = classes
        kwargs["rect"] = False
        return run_video_on_ray(
            ray,
            source,
            kwargs,
            settings[0],
            events,
            summary,
            engines,
            dev.is_cuda,
            EngineSettings(
                batch=batch or (8 if dev.is_cuda else 1), max_wait_ms=max_wait_ms, workers=workers, duration_s=duration
            ),
            stride=stride,
            max_frames=max_frames,
            retries=retries,
            nvdec=nvdec,
            loop=loop,
            refused={
                "--output": output,
                "--save-frames": save_frames,
                "--serve-mjpeg": serve_mjpeg,
                "--ocr": ocr,
                "--realtime": realtime,
            },
        )
    if cfg is not None:
        chosen = {**cfg.detector_kwargs(), "gpu_ops": gpu_ops}
        half = chosen["half"]
    else:
        speed = speed_options(cuda_graph, channels_last, compile, io_binding, gpu_ops)
        chosen = dict(model=model, backend=backend, device=device, half=half, imgsz=imgsz, conf=conf, iou=iou, **speed)
    with err.status(f"loading {model.name}"):
        det = Detector(**chosen, classes=classes, max_det=max_det, rect=False)
        if nvdec and not det.gpu_ops:
            raise SettingsError(
                "--nvdec frames stay on the GPU: use a backend that takes device tensors (torch or compiled "
                "with --device cuda, or onnxruntime with --io-binding) and leave out --cpu-ops"
            )
        nvdec_device = str(parse_device(device)) if nvdec else None
        srcs: list = []
        for x in source:
            try:
                srcs.append(
                    open_source(x, stride, max_frames, retries, nvdec_device=nvdec_device, loop=loop, realtime=realtime)
                )
            except YoloAccelError as e:
                if n == 1:
                    raise
                err.print(f"[yellow]warning:[/] stream {len(srcs)}: {escape(str(e))}", highlight=False)
                srcs.append(e)
    from ..video.counting import check_in_frame

    for i, src in enumerate(srcs):
        if not isinstance(src, Exception):
            check_in_frame(line or [], zone or [], src.size, "the video" if n == 1 else f"stream {i}")
    for src in srcs:
        if not isinstance(src, Exception):
            err.print(f"{src.description} -> {det.describe()}", highlight=False)
    if serve_mjpeg is not None:
        err.print(f"MJPEG stream on http://127.0.0.1:{serve_mjpeg}/", highlight=False)
    counts = [getattr(src, "frame_count", 0) for src in srcs]
    total = None if (None in counts or loop) else sum(-(-min(c, max_frames or c) // stride) for c in counts)
    use_batch = batch if batch is not None else (8 if parse_device(device).is_cuda else 1)
    engine_settings = EngineSettings(batch=use_batch, max_wait_ms=max_wait_ms, workers=workers, duration_s=duration)
    with frame_progress("video", total) as tick:
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
            print_video_summary(r)
        b = result["batcher"]
        out.print(
            f"[bold]{n} streams[/]: {result['frames']} frames in {result['wall_s']:.1f} s, "
            f"{result['fps']:.1f} FPS in total; {b['batches']} batches, mean batch {b['mean_batch']}"
        )
    else:
        result = {**single_stream_summary(result), "settings": result["settings"]}
        print_video_summary(result)
    print_engine_line(result)
    if summary:
        write_json_atomic(summary, result)
        out.print(f"summary written to {summary}")
    if result["error"]:
        err.print(f"[bold red]error:[/] {escape(result['error'])}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if result["interrupted"]:
        raise typer.Exit(130)
