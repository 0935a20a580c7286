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
    CompileOpt,
    CudaGraphOpt,
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
MIN_TOKEN_CHARS = 16


@command("serve")
def serve_cmd(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="The detector every stream uses (.pt, .onnx, ...).")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one, printed).")
    ] = 8000,
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
        typer.Option(
            "--token",
            envvar="YOLO_ACCEL_TOKEN",
            help=f"Bearer token for the page and the API ({MIN_TOKEN_CHARS}+ characters). Prefer the "
            "YOLO_ACCEL_TOKEN variable or --token-file: an option is visible to every user in `ps`.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Read the token from this file (its first line)."),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A host name the server is reached by besides loopback and --host (repeat for several). "
            "Requests naming another host are refused (DNS rebinding). Listening on 0.0.0.0 without it, "
            "any name is taken (the token guards).",
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="A page on another origin that may call the API, e.g. https://ops.example.org (repeat for "
            "several). Requests from any other site's pages are refused.",
        ),
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
            help=RAY_HELP + " The streams run on engine actors (one per GPU with --device cuda, else one on "
            "CPUs), each stream on the one with the fewest; its events, counts, stage times and live video "
            "come back here.",
        ),
    ] = None,
    ray_gpu_share: Annotated[
        float,
        typer.Option(
            "--ray-gpu-share",
            min=0.01,
            max=1.0,
            help="With --ray --device cuda: the share of a GPU each engine actor takes (1: one engine per GPU; "
            "0.5: two).",
        ),
    ] = 1.0,
    cuda_graph: CudaGraphOpt = False,
    compile: CompileOpt = False,
    nvdec: Annotated[
        str,
        typer.Option(
            "--nvdec",
            help="Decode video files on the GPU (NVDEC, through PyNvVideoCodec): auto (with --device cuda where "
            "PyNvVideoCodec is installed), on, off. Cameras (URLs) are decoded on the CPU.",
        ),
    ] = "auto",
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch", min=1, help="Frames per stream in one detector batch (default 8 on CUDA, 1 on the CPU)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=0, help="Processes that track, count and draw the streams (default: cores - 2, 1 to 8)."
        ),
    ] = None,
    max_streams: Annotated[
        int,
        typer.Option(
            "--max-streams",
            min=1,
            max=256,
            help="Streams running at once (with --cuda-graph it also bounds the batch sizes captured at start:"
            " up to --batch x this, at most 128).",
        ),
    ] = 64,
    reconnect_retries: Annotated[
        int,
        typer.Option(
            "--reconnect-retries",
            min=0,
            help="A camera whose connection drops is reopened this many times before its stream is marked failed.",
        ),
    ] = 10,
    reconnect_backoff: Annotated[
        float,
        typer.Option(
            "--reconnect-backoff",
            min=0.0,
            help="Seconds before the first reconnect attempt; each further wait is twice as long, up to "
            "--reconnect-max.",
        ),
    ] = 1.0,
    reconnect_max: Annotated[
        float, typer.Option("--reconnect-max", min=0.0, help="The longest wait between reconnect attempts (seconds).")
    ] = 5.0,
    backup: Annotated[
        Path | None,
        typer.Option(
            "--backup",
            help="Write a consistent copy of the app's SQLite database (streams and events) to this file and "
            "exit, serving nothing; safe while the app runs. Copying the .db file alone misses the newest "
            "events: they are in its -wal file until SQLite moves them.",
        ),
    ] = None,
):
    """The traffic-monitoring web app: add a camera or upload a video, watch it live with boxes and
    counts, read the crossing events from the database, the API (/docs) and /metrics.

    Every stream runs on one batched video engine (the one under `video`): one detector, frames of
    all streams in shared batches, NVDEC decoding and CUDA graphs on a GPU. Streams are added and
    stopped while the others run; a camera that drops is reconnected (--reconnect-*).

    Example: yolo-accel serve --model yolov5n.pt --device cuda --half    (then open http://127.0.0.1:8000/)
    """
    from .._deps import require
    from ..errors import SettingsError
    from ..outputs import check_folder
    from ..serve.app import create_app
    from ..serve.manager import ServeSettings

    if backup is not None:
        _backup(backup, data_dir, db)
        return
    cfg = deploy_config(deploy, model, backend)
    if cfg is not None:
        model, device = cfg.artifact, cfg.run_device
    check_ocr_options(ocr, plate_pattern)
    nvdec = nvdec.lower()
    if nvdec not in ("auto", "on", "off"):
        raise SettingsError(f"--nvdec {nvdec}: use auto, on or off")
    if ray is not None:
        if ocr:
            raise SettingsError("--ocr: not with --ray (plates are read and kept beside the stream); leave one out")
        from ..scale.cluster import connect

        with err.status(f"joining Ray ({ray})"):
            connect(ray)  # a cluster that is not there is one line now, not a failure in every stream
    token = _read_token(token, token_file)
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
        allow_hosts=tuple(allow_host or ()),
        allow_origins=tuple(allow_origin or ()),
        max_upload_mb=max_upload_mb,
        preview_fps=preview_fps,
        ocr=ocr,
        plate_pattern=plate_pattern,
        deploy=str(deploy) if deploy else None,
        ray=ray,
        ray_gpu_share=ray_gpu_share,
        cuda_graph=cuda_graph,
        compile=compile,
        nvdec=nvdec,
        batch=batch,
        workers=workers,
        max_streams=max_streams,
        reconnect_retries=reconnect_retries,
        reconnect_backoff_s=reconnect_backoff,
        reconnect_max_s=reconnect_max,
    )
    from ..serve.store import Store

    Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True)  # checked above; the database goes in it
    store = Store(settings.database)  # a database that cannot be opened is one line, before the model
    sock = _listen(host, port)  # a port in use is one line now; --port 0 takes a free one, said below
    engine = None
    try:
        settings.port = port = sock.getsockname()[1]
        # the engines load the model once for every stream: one that cannot load fails here
        if ray is None:
            from ..serve.engine_host import EngineClient

            engine = EngineClient(settings)
        else:
            from ..serve.ray_engines import RayEngines

            engine = RayEngines(settings)
        with err.status(f"loading {model.name} and starting the video engine" + (" on Ray" if ray else "")):
            names = engine.start()
        # the app asks uvicorn's server (made below, before any request) whether it is shutting down
        app = create_app(settings, names, closing=lambda: server.should_exit, store=store, engine=engine)
        # timeout_graceful_shutdown: a connection that still holds on is cut after it
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        out.print(f"serving on http://{shown}:{port}/ (API docs at /docs); Ctrl-C stops", soft_wrap=True)
        server.run(sockets=[sock])
    finally:
        sock.close()
        if engine is not None:
            engine.close()


def _listen(host: str, port: int):
    """The server's listening socket, bound before the model loads."""
    import errno
    import socket

    from ..errors import SettingsError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise SettingsError(f"--host {host}: not an address of this machine ({e})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart finds its port
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"--port {port}: in use on {host} (another server?); pick another, or --port 0"
            ) from None
        if e.errno == errno.EACCES:
            raise SettingsError(f"--port {port}: not allowed for this user (ports below 1024 need root)") from None
        raise SettingsError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    sock.set_inheritable(True)
    return sock


def _backup(dest: Path, data_dir: Path, db: str | None) -> None:
    from ..serve.manager import ServeSettings
    from ..serve.store import backup_sqlite

    url = ServeSettings(model="", data_dir=data_dir, db_url=db).database
    with err.status(f"backing up {url}"):
        done = backup_sqlite(url, dest)
    size = f"{done['bytes'] / 1e6:.1f} MB" if done["bytes"] >= 1e6 else f"{done['bytes'] / 1e3:.0f} kB"
    out.print(f"{dest}: {done['streams']} streams, {done['events']} events, {size}", soft_wrap=True)


def _read_token(token: str | None, token_file: Path | None) -> str | None:
    from ..errors import SettingsError

    if token_file is not None:
        if token:
            raise SettingsError("--token-file: not with --token (or YOLO_ACCEL_TOKEN); give one")
        try:
            lines = token_file.expanduser().read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f"--token-file {token_file}: cannot read it ({type(e).__name__})") from None
        token = lines[0].strip() if lines else ""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise SettingsError(
            f"the token has {len(token)} characters: use {MIN_TOKEN_CHARS} or more "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe(24))")'
        )
    return token
