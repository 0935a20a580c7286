"""yolo-accel serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import err, out
from ..scale.cluster import RAY_HELP
from .app import command
from .options import (
    BackendOpt,
    DeployOpt,
    DeviceOpt,
    HalfOpt,
    ImgszOpt,
    OcrOpt,
    PlatePatternOpt,
    check_imgsz_option,
    check_ocr_options,
    deploy_config,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@command("serve")
def serve_cmd(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="The detector every stream uses (.pt, .onnx, ...).")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    device: DeviceOpt = "cpu",
    backend: BackendOpt = None,
    half: HalfOpt = False,
    imgsz: ImgszOpt = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Uploads, events files and the SQLite database live here.")
    ] = Path("runs/serve"),
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite in --data-dir)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="YOLO_ACCEL_TOKEN", help="Bearer token for the page and the API."),
    ] = None,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", min=1, help="Largest video upload.")] = 2048,
    preview_fps: Annotated[
        float,
        typer.Option(
            "--preview-fps",
            min=0,
            help="Frame rate cap of the live video on the page (0: every frame). Detection, tracking and "
            "counting run on every frame; only the frames shown are drawn and encoded.",
        ),
    ] = 15.0,
    ocr: OcrOpt = False,
    plate_pattern: PlatePatternOpt = None,
    deploy: DeployOpt = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help=RAY_HELP + " Each stream runs as an actor where the cluster has room; its events, counts, "
            "stage times and live video come back here.",
        ),
    ] = None,
    ray_gpu_share: Annotated[
        float,
        typer.Option(
            "--ray-gpu-share", min=0.01, max=1.0, help="With --ray --device cuda: the share of a GPU per stream."
        ),
    ] = 0.125,
):
    """The traffic-monitoring web app: add a camera or upload a video, watch it live with boxes and
    counts, read the crossing events from the database, the API (/docs) and /metrics.

    Example: yolo-accel serve --model yolov5n.pt --device cuda --half    (then open http://127.0.0.1:8000/)
    """
    from .._deps import require
    from ..detector import Detector
    from ..errors import SettingsError
    from ..outputs import check_folder
    from ..serve.app import create_app
    from ..serve.manager import ServeSettings

    cfg = deploy_config(deploy, model, backend)
    if cfg is not None:
        model, device = cfg.artifact, cfg.run_device
    check_ocr_options(ocr, plate_pattern)
    if ray is not None:
        if ocr:
            raise SettingsError("--ocr: not with --ray (plates are read and kept beside the stream); leave one out")
        from ..scale.cluster import connect

        with err.status(f"joining Ray ({ray})"):
            connect(ray)  # a cluster that is not there is one line now, not a failure in every stream
    if host not in LOOPBACK and not token:
        raise SettingsError(f"--host {host} serves beyond this machine: give --token (or YOLO_ACCEL_TOKEN)")
    check_folder(data_dir, "--data-dir")
    check_imgsz_option(imgsz)
    uvicorn = require("uvicorn")
    # a model that cannot load fails here, not later in every stream
    settings = ServeSettings(
        model=str(model),
        data_dir=data_dir,
        device=device,
        backend=backend,
        half=half,
        imgsz=imgsz,
        db_url=db,
        host=host,
        port=port,
        token=token,
        max_upload_mb=max_upload_mb,
        preview_fps=preview_fps,
        ocr=ocr,
        plate_pattern=plate_pattern,
        deploy=str(deploy) if deploy else None,
        ray=ray,
        ray_gpu_share=ray_gpu_share,
    )
    with err.status(f"loading {model.name}"), Detector(**settings.detector_kwargs()) as det:
        names = dict(det.names)
    app = create_app(settings, names)
    out.print(f"serving on http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning")
