"""`yolo-accel demo`: the main job end to end on the default assets."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_demo(model: Path | None, device: str, out: Console, err: Console, assets: Path | None = None) -> Path:
    """Export the model to ONNX (parity table), predict the sample images with every backend, validate on
    coco128, count the traffic clip. `assets` is the one folder the shared files are taken from (default: the
    usual asset folders). Every file is found before anything is written; a failed run leaves no run folder."""
    import shutil

    from .assets import (
        DEFAULT_DATASET,
        DEFAULT_MODEL,
        DEFAULT_VIDEO,
        SAMPLE_IMAGES,
        candidate_roots,
        find_asset,
        sample_images,
    )
    from .errors import DataError
    from .model import check_model_path
    from .outputs import check_folder
    from .runs import next_run_dir

    roots = None
    if assets is not None:
        if not Path(assets).is_dir():
            raise DataError(f"--assets {assets}: not a folder")
        roots = [Path(assets)]
    needed = ([] if model else [DEFAULT_MODEL]) + [DEFAULT_DATASET, DEFAULT_VIDEO]
    if roots is not None:
        needed += list(SAMPLE_IMAGES)  # a given assets folder must hold the sample images too: nothing is downloaded
    found, missing = {}, []
    for rel in needed:
        try:
            found[rel] = find_asset(rel, roots)
        except DataError:
            missing.append(rel)
    if missing:
        where = str(roots[0]) if roots else "the asset folders (" + ", ".join(str(r) for r in candidate_roots()) + ")"
        raise DataError(
            f"the demo needs {', '.join(missing)} in {where}; "
            "point --assets (or YOLO_ACCEL_ASSETS) at a folder with the shared assets layout "
            "(see the README's quick start)"
        )
    model = check_model_path(Path(model) if model else found[DEFAULT_MODEL], (".pt",))
    files = {
        "images": [found[rel] for rel in SAMPLE_IMAGES] if roots else sample_images(),
        "data": found[DEFAULT_DATASET],
        "video": found[DEFAULT_VIDEO],
    }
    check_folder(Path("runs") / "demo", "runs folder")
    run = next_run_dir("demo")
    try:
        return _run_steps(model, files, run, device, out, err)
    except BaseException:
        # the run folder is this run's own (next_run_dir made it): a half-filled one is worse than none
        shutil.rmtree(run, ignore_errors=True)
        raise


def _run_steps(model: Path, files: dict, run: Path, device: str, out: Console, err: Console) -> Path:
    import cv2
    from rich.markup import escape

    from .annotate import draw_detections
    from .console import parity_table
    from .detector import Detector
    from .export.onnx import OnnxExportSettings, export_onnx
    from .runs import write_json_atomic

    images = files["images"]
    out.rule(f"[bold]1. export {model.name} -> ONNX")
    onnx_path = run / f"{model.stem}.onnx"
    with err.status("exporting") as status:
        result = export_onnx(
            model,
            onnx_path,
            OnnxExportSettings(dynamic=True),
            device=device,
            status=lambda t: status.update(t),
        )
    out.print(parity_table(result.parity, f"parity: {result.parity.reference}  vs  {result.parity.test}"))
    if not result.ok:
        from .errors import YoloAccelError

        raise YoloAccelError("the demo's ONNX export failed its parity check")
    out.print(f"[green]exported[/] {onnx_path} ({result.size_bytes / 1e6:.1f} MB)")

    summary = {"model": str(model), "onnx": str(onnx_path), "parity": result.parity.to_dict(), "predict": {}}
    for backend, artifact in (("torch", model), ("onnxruntime", onnx_path)):
        out.rule(f"[bold]2. predict with {backend}")
        folder = run / f"predict-{backend}"
        folder.mkdir()
        with Detector(artifact, backend=backend, device=device) as det:
            dets = det.predict(images)
            rows = []
            for path, d, t in zip(images, dets, det.timings):
                cv2.imwrite(str(folder / path.name), draw_detections(cv2.imread(str(path)), d))
                counts = ", ".join(f"{n} {k}" for k, n in d.counts().items())
                out.print(escape(f"  {path.name}: {counts}  ({t['infer']:.1f} ms inference)  [{det.describe()}]"))
                rows.append({"image": path.name, "detections": d.to_records(), "timings_ms": t})
            summary["predict"][backend] = rows
    out.rule("[bold]3. validate on coco128: accuracy, similarity, speed, gates")
    from rich.progress import Progress
    from rich.table import Table

    from .console import print_validation
    from .evaluate.datasets import load_dataset
    from .report import write_validation_report
    from .validate import ValidateSettings, run_validation

    data = files["data"]
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("validating", total=len(load_dataset(data).items))
        report = run_validation(
            model,
            data,
            ValidateSettings(device=device, onnx=str(onnx_path)),
            progress=lambda n: progress.advance(task, n),
        )
    paths = write_validation_report(report, run / "validate")
    print_validation(report, out, escape, Table)
    summary["validate"] = {"verdict": report["verdict"], "report": str(paths["json"])}

    out.rule("[bold]4. video: detect, track and count vehicles on the first 150 frames of the traffic clip")
    from .console import print_video_summary
    from .video.engine import VideoEngine, single_stream_summary
    from .video.processor import StreamSettings
    from .video.sources import open_source

    video_out = run / "traffic.mp4"
    with Detector(
        onnx_path, device=device, imgsz=None, classes="car,motorcycle,bus,truck", iou=0.5, max_det=30, rect=False
    ) as det:
        source = open_source(str(files["video"]), max_frames=150)
        settings = StreamSettings(lines=["0,450,1280,450"], output=str(video_out), events=str(run / "events.jsonl"))
        video_summary = single_stream_summary(VideoEngine(det, [source], [settings]).run())
    print_video_summary(video_summary)
    write_json_atomic(run / "video-summary.json", video_summary)
    summary["video"] = {"output": str(video_out), "frames": video_summary["frames"], "counts": video_summary["counts"]}
    write_json_atomic(run / "demo.json", summary)
    out.rule("[bold]outputs")
    out.print(
        f"ONNX model:        {onnx_path}\nannotated images:  {run}/predict-torch/, {run}/predict-onnxruntime/\n"
        f"validation report: {paths['html']}\nannotated video:   {video_out}\n"
        f"machine-readable:  {run / 'demo.json'}, {paths['json']}, {run / 'video-summary.json'}"
    )
    return run
