"""`yolo-accel video --ray`: the streams over the engines of a Ray cluster (scale.video)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..console import err, frame_progress, out


def run_video_on_ray(
    address: str,
    sources: list[str],
    detector_kwargs: dict,
    settings,
    events: Path | None,
    summary: Path | None,
    engines: int | None,
    gpu: bool,
    engine_settings,
    stride: int,
    max_frames: int | None,
    retries: int,
    nvdec: bool,
    loop: bool,
    refused: dict,
) -> None:
    from ..errors import SettingsError
    from ..runs import write_json_atomic
    from ..scale.cluster import check_model_here, connect, cpu_count, gpu_count
    from ..scale.video import RayVideoJob
    from ..video.engine import stream_path

    given = [k for k, v in refused.items() if v not in (None, False)]
    if given:
        raise SettingsError(
            f"{', '.join(given)}: not with --ray (the engines run on other machines; events and the summary "
            "are gathered here); run those streams without --ray"
        )
    n = len(sources)
    check_model_here(detector_kwargs["model"])
    ray = connect(address, num_cpus=None)
    if gpu:
        have = gpu_count(ray)
        if have < 1:
            raise SettingsError(f"--ray {address} --device cuda: the cluster has no GPU")
        engines = engines or have
        detector_kwargs = {**detector_kwargs, "device": "cuda"}  # Ray shows each engine its own GPU as cuda:0
    else:
        engines = engines or max(1, min(2, cpu_count(ray)))
    if engines < 1:
        raise SettingsError("--engines must be at least 1")
    events_paths = [stream_path(str(events) if events else None, i, n) for i in range(n)]
    with err.status(f"placing {engines} engine(s) on Ray"):
        job = RayVideoJob(
            ray,
            sources,
            detector_kwargs,
            settings,
            engine_settings,
            events_paths,
            engines,
            gpu,
            stride=stride,
            max_frames=max_frames,
            retries=retries,
            nvdec=nvdec,
            loop=loop,
        )
    for i, w in enumerate(job.where):
        err.print(f"engine {i}: {w['host']} pid {w['pid']}" + (f" GPU {w['gpus']}" if gpu else ""), highlight=False)
    total = sum(st.load for st in job.streams) if not any(st.live for st in job.streams) else None
    with frame_progress("video on Ray", total) as tick:
        try:
            result = job.run(progress=tick)
        except KeyboardInterrupt:
            job.stop()
            raise
    result["settings"] = {
        "ray": address,
        "engines": engines,
        "device": "cuda" if gpu else "cpu",
        "model": str(detector_kwargs["model"]),
        "backend": detector_kwargs.get("backend"),
        "stride": stride,
        "batch": engine_settings.batch,
    }
    for i, r in enumerate(result["streams"]):
        counts = "; ".join(
            f"{c}: " + ", ".join(f"{name} {v['in']} in / {v['out']} out" for name, v in per.items())
            for c, per in r["counts"].items()
        )
        restarted = f", restarted {len(r['pieces']) - 1}x" if len(r["pieces"]) > 1 else ""
        line = f"stream {i} ({r['source']}): {r['frames']} frames, {r['events']} events{restarted}"
        out.print(escape(line + (f"; {counts}" if counts else "")), highlight=False)
        if r["error"]:
            err.print(f"[yellow]stream {i}:[/] {escape(r['error'])}", highlight=False)
    per_engine = ", ".join(f"engine {i}: {e['frames']}" for i, e in enumerate(result["engines"]))
    out.print(
        f"[bold]{n} stream(s) on {engines} engine(s)[/]: {result['frames']} frames in {result['wall_s']:.1f} s, "
        f"{result['fps']:.1f} FPS in total ({per_engine}); {result['restarts']} restart(s)"
    )
    if events:
        out.print(f"events written to {events if n == 1 else events.with_name(events.stem + '-N' + events.suffix)}")
    if summary:
        write_json_atomic(summary, result)
        out.print(f"summary written to {summary}")
    if any(r["error"] for r in result["streams"]):
        raise typer.Exit(2)
