"""The FastAPI app: the page at `/`, the API under `/api` (OpenAPI at `/docs`), `/metrics`, `/healthz`.

Security (README, "Security"): requests for another host name and requests a page on another origin
makes are refused (guard.py); a bearer token (header, or the HttpOnly cookie the sign-in form or the
`/?token=` link sets) guards everything but `/healthz` when the server was started with one (it must
be, off loopback); uploads are size limited while they arrive, written inside the data folder, must
decode, and are stored under a generated name; file sources only from inside the data folder; URL
sources only rtsp, http and https, previewed a few at a time with a time limit. Every bad request is
a 4xx with a JSON error.
"""

import asyncio
import contextlib
import csv
import hmac
import io
import json
import os
import time
import uuid
from pathlib import Path

from .._deps import require
from ..images import VIDEO_SUFFIXES
from .manager import BUCKETS_MS, ServeSettings, StreamManager, plates_dir
from .page import PAGE
from .relay import BOUNDARY, MjpegRelay
from .store import EVENT_FIELDS, Store

URL_SCHEMES = ("rtsp://", "http://", "https://")
MAX_ID = 2**63 - 1  # the databases' integer keys
MAX_SOURCE_CHARS = 2048
PREVIEWS_AT_ONCE = 4  # previews decode in threads: a camera that never answers must not hold them all
URL_TIMEOUT_MS = 8000  # to open a URL source for a preview, and to read its first frame
LIVE_READERS = 32  # /api/live connections at once (each polls the database every second)


def first_frame(path: str, timeout_ms: int | None = None):
    """The first decoded frame of a video file or stream, or None; a URL gives up after `timeout_ms`."""
    import cv2

    if timeout_ms is not None and "://" in path:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
    else:
        cap = cv2.VideoCapture(path)
    try:
        ok, img = cap.read()
    finally:
        cap.release()
    return img if ok and img is not None and img.size else None


def create_app(
    settings: ServeSettings, names: dict[int, str] | None = None, closing=None, store: Store | None = None, engine=None
):
    """The app and its manager; `names` (the model's classes) validate --classes-like inputs early.
    `closing()` says the server is shutting down (uvicorn's should_exit): open live updates and videos
    end then, instead of holding the shutdown until their browser closes them. `store`: the database,
    already opened (else opened here from settings.database). `engine`: the video engine's client,
    started already (serve/engine_host.py; else it starts with the first stream)."""
    closing = closing or (lambda: False)
    require("fastapi")
    prom = require("prometheus_client")
    from typing import Annotated

    from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
    from pydantic import BaseModel, Field, StringConstraints
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .guard import RequestGuard, served_hosts
    from .page import API_CSP, LOGIN_CSP, LOGIN_PAGE, PAGE_CSP, page_csp
    from .upload import UploadError, receive_upload

    data_dir = Path(settings.data_dir).resolve()
    (data_dir / "uploads").mkdir(parents=True, exist_ok=True)
    store = store or Store(settings.database)
    registry = prom.CollectorRegistry()
    frames_total = prom.Counter("yolo_accel_frames", "Frames processed", ["stream"], registry=registry)
    events_total = prom.Counter("yolo_accel_events", "Crossing events stored", ["stream"], registry=registry)
    fps_gauge = prom.Gauge("yolo_accel_stream_fps", "FPS of a running stream", ["stream"], registry=registry)
    running_gauge = prom.Gauge("yolo_accel_streams_running", "Streams running", registry=registry)
    api_latency = prom.Histogram("yolo_accel_api_seconds", "API request latency", ["route"], registry=registry)
    manager = StreamManager(
        store,
        settings,
        on_events=lambda sid, n: events_total.labels(str(sid)).inc(n),
        on_frames=lambda sid, n: frames_total.labels(str(sid)).inc(n),
        engine=engine,
    )
    manager.mark_interrupted()

    class StageCollector:
        """Per stream and stage, the frame latency histograms its process keeps (in seconds), and its drops."""

        def collect(self):
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

            hist = HistogramMetricFamily(
                "yolo_accel_stage_seconds", "Time per frame in each pipeline stage", labels=["stream", "stage"]
            )
            drops = CounterMetricFamily(
                "yolo_accel_dropped_frames", "Frames of live sources dropped", labels=["stream"]
            )
            connected = GaugeMetricFamily(
                "yolo_accel_stream_connected",
                "1 while a running stream's source delivers (0: reconnecting)",
                labels=["stream"],
            )
            reconnects = CounterMetricFamily(
                "yolo_accel_stream_reconnects", "Times a camera's dropped connection was reopened", labels=["stream"]
            )
            since = GaugeMetricFamily(
                "yolo_accel_stream_seconds_since_frame",
                "Seconds since a running stream's last frame",
                labels=["stream"],
            )
            for sid, run in list(manager.runs.items()):
                stages, dropped = run.stats
                for stage, (count, total_ms, below) in stages.items():
                    buckets = [(f"{e / 1000:g}", n) for e, n in zip(BUCKETS_MS, below)] + [("+Inf", count)]
                    hist.add_metric([str(sid), stage], buckets, total_ms / 1000)
                drops.add_metric([str(sid)], dropped)
                health = run.health
                if health and manager.running(sid) is not None:
                    connected.add_metric([str(sid)], 1.0 if health.get("connected") else 0.0)
                    reconnects.add_metric([str(sid)], health.get("reconnects", 0))
                    if health.get("since_frame_s") is not None:
                        since.add_metric([str(sid)], health["since_frame_s"])
            yield from (hist, drops, connected, reconnects, since)

    registry.register(StageCollector())

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await asyncio.to_thread(manager.stop_all)  # every stream's engine drains and finishes its files

    # the API's description and Swagger UI are served below, behind the token, from local files
    app = FastAPI(
        title="yolo-accel serve", version="1", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.manager, app.state.store = manager, store

    # -- errors: JSON, never a traceback page ----------------------------------------------------
    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and unknown routes alike
    async def _http_error(_request, exc):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_request, exc):
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    class Timed:
        """API latency to the response's start (a plain ASGI middleware: Starlette's decorator-made ones
        copy every chunk of a streamed response through a queue, which the live video would pay for)."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            path = scope.get("path", "")
            if scope["type"] != "http" or not path.startswith("/api/"):
                return await self.inner(scope, receive, send)
            t0, timed = time.perf_counter(), False

            async def send_timed(message):
                nonlocal timed
                if message["type"] == "http.response.start" and not timed:
                    timed = True
                    api_latency.labels(path.split("/")[2]).observe(time.perf_counter() - t0)
                await send(message)

            return await self.inner(scope, receive, send_timed)

    app.add_middleware(Timed)
    docs_page = _swagger_page()
    csp = {"*": API_CSP, "/": PAGE_CSP, "/login": LOGIN_CSP, "/docs": page_csp(docs_page or "", "'self'")}
    hosts = served_hosts(settings.host, list(settings.allow_hosts))
    app.add_middleware(RequestGuard, hosts=hosts, origins=list(settings.allow_origins), csp=csp)  # outermost

    # -- auth ------------------------------------------------------------------------------------
    def token_ok(given: str) -> bool:
        return bool(settings.token) and hmac.compare_digest(given.encode(), settings.token.encode())

    def auth(request: Request) -> None:
        """The bearer token from the Authorization header or the cookie; never from the URL (it would stay
        in the address bar, the history and the logs)."""
        if not settings.token:
            return
        if not token_ok(_bearer(request) or request.cookies.get("token") or ""):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    def signed_in(location: str, token: str) -> Response:
        resp = RedirectResponse(location, status_code=303)
        resp.set_cookie("token", token, httponly=True, samesite="strict", path="/")
        return resp

    guarded = [Depends(auth)]
    StreamId = Annotated[int, PathParam(ge=0, le=MAX_ID)]
    EventId = Annotated[int, Query(ge=0, le=MAX_ID)]
    Limit = Annotated[int, Query(ge=1, le=MAX_ID)]
    Short = Annotated[str, StringConstraints(max_length=200)]

    # -- helpers ---------------------------------------------------------------------------------
    def stream_or_404(sid: int) -> dict:
        row = store.stream(sid)
        if row is None:
            raise HTTPException(404, f"no stream {sid}")
        return row

    def live(row: dict) -> dict:
        run = manager.running(row["id"])
        out = {**row, "counts": store.counts(row["id"]), "stages_ms": {}, "resumable": manager.resumable(row)}
        out["health"] = None
        if run is not None:
            stages = {k: round(v, 2) for k, v in run.recent_ms.items()}
            out.update(frames=run.frames, fps=round(run.fps, 1), stages_ms=stages, resumable=False)
            out["health"] = dict(run.health) or None  # connected, reconnects, since_frame_s, dropped
        return out

    def json_response(obj, status_code: int = 200) -> Response:
        # rows are plain JSON already: FastAPI's encoder would walk every value again (a third of a request's time)
        return Response(json.dumps(obj), status_code=status_code, media_type="application/json")

    def resolve_source(source: str) -> tuple[str, str]:
        """(source for the engine, kind) or a 400: URLs of allowed schemes, files inside the data folder."""
        s = source.strip()
        if len(s) > MAX_SOURCE_CHARS or any(ord(c) < 32 for c in s):
            raise HTTPException(400, f"a source is at most {MAX_SOURCE_CHARS} characters, without control characters")
        if "://" in s:
            if not s.lower().startswith(URL_SCHEMES):
                raise HTTPException(400, "URL sources must be rtsp://, http:// or https://")
            return s, "url"
        if s.startswith(("/", "~")) or ".." in Path(s).parts:
            raise HTTPException(400, "file sources are paths inside the data folder (no '..', not absolute)")
        try:
            path = (data_dir / s).resolve()  # follows symlinks: one that leads out is refused below
            inside, found = path.is_relative_to(data_dir), path.is_file()
        except (OSError, ValueError) as e:  # a name too long for the file system
            raise HTTPException(400, f"not a usable file name ({type(e).__name__})") from None
        if not inside:
            raise HTTPException(400, "file sources must stay inside the data folder")
        if not found:
            raise HTTPException(400, f"no file {s} in the data folder")
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise HTTPException(400, f"{s} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return str(path), "file"

    # -- API -------------------------------------------------------------------------------------
    class NewStream(BaseModel):
        source: str = Field(
            description="uploads/NAME from /api/uploads, a file in the data folder, or a URL",
            max_length=MAX_SOURCE_CHARS,
        )
        name: str | None = Field(None, max_length=200)
        classes: str | None = Field(
            None, max_length=2000, description="e.g. car,bus,truck,motorcycle (default: every class)"
        )
        lines: list[Short] = Field(default_factory=list, max_length=16, description='counting lines "x1,y1,x2,y2"')
        zones: list[Annotated[str, StringConstraints(max_length=2000)]] = Field(
            default_factory=list, max_length=16, description='zones "x1,y1,x2,y2,x3,y3,..."'
        )
        loop: bool = Field(False, description="play a file source again and again (until stopped)")
        realtime: bool = Field(
            False, description="deliver a file's frames at its own frame rate, as a camera would (demos, load tests)"
        )
        start: bool = True

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "streams_running": sum(1 for r in store.streams() if manager.running(r["id"]))}

    @app.get("/api/engine", dependencies=guarded)
    def engine_figures() -> dict:
        """The video engine every stream runs on: its runtime, streams, batches (mean size), busy shares."""
        return dict(manager.engine.figures) if not settings.ray else {}

    @app.get("/metrics", dependencies=guarded)
    def metrics() -> Response:
        running_gauge.set(sum(1 for sid in list(manager.runs) if manager.running(sid)))
        for sid in list(manager.runs):
            run = manager.running(sid)
            fps_gauge.labels(str(sid)).set(run.fps if run else 0.0)
        return Response(prom.generate_latest(registry), media_type=prom.CONTENT_TYPE_LATEST)

    @app.post("/api/uploads", dependencies=guarded, status_code=201, openapi_extra=UPLOAD_BODY)
    async def upload(request: Request) -> dict:
        """A video file as multipart/form-data (the part named `file`): its size checked while it arrives,
        written inside the data folder, kept only if its first frame decodes."""
        limit = settings.max_upload_mb * 2**20
        try:
            tmp, suffix, size = await receive_upload(
                request, data_dir / "uploads", limit, VIDEO_SUFFIXES, settings.upload_timeout_s
            )
        except UploadError as e:  # Connection: close: the server stops reading the rest of a refused body
            raise HTTPException(e.status, str(e), headers={"Connection": "close"}) from None
        try:
            if await asyncio.to_thread(first_frame, str(tmp)) is None:
                raise HTTPException(400, "the upload is not a readable video (its first frame does not decode)")
            name = f"{uuid.uuid4().hex}{suffix}"
            os.replace(tmp, data_dir / "uploads" / name)
        finally:
            tmp.unlink(missing_ok=True)
        return {"source": f"uploads/{name}", "bytes": size}

    previews = asyncio.Semaphore(PREVIEWS_AT_ONCE)

    @app.get("/api/preview", dependencies=guarded)
    async def preview(source: Annotated[str, Query(max_length=MAX_SOURCE_CHARS)]) -> Response:
        """The first frame of a source as JPEG (the page draws counting lines on it)."""
        import cv2

        path, _ = resolve_source(source)
        if previews.locked():
            raise HTTPException(503, f"{PREVIEWS_AT_ONCE} previews are being read already; try again shortly")
        async with previews:
            img = await asyncio.to_thread(first_frame, path, URL_TIMEOUT_MS)
        if img is None:
            raise HTTPException(400, "the source's first frame does not decode (or the camera did not answer)")
        return Response(cv2.imencode(".jpg", img)[1].tobytes(), media_type="image/jpeg")

    @app.get("/api/streams", dependencies=guarded)
    def list_streams() -> Response:
        return json_response([live(r) for r in store.streams()])

    @app.post("/api/streams", dependencies=guarded, status_code=201)
    def add_stream(body: NewStream) -> dict:
        from ..errors import YoloAccelError
        from ..names import parse_classes
        from ..video.counting import parse_line, parse_zone

        source, kind = resolve_source(body.source)
        try:
            for i, t in enumerate(body.lines):
                parse_line(t, i + 1)
            for i, t in enumerate(body.zones):
                parse_zone(t, i + 1)
            if body.classes and names:
                parse_classes(body.classes, names)
        except YoloAccelError as e:
            raise HTTPException(400, str(e)) from None
        if (body.loop or body.realtime) and kind != "file":
            raise HTTPException(400, "loop and realtime apply to file sources only (a camera has its own pace)")
        name = body.name or Path(body.source).name
        row = store.add_stream(name, source, kind, body.classes, body.lines, body.zones, body.loop, body.realtime)
        if body.start:
            manager.start(row["id"])
        return live(store.stream(row["id"]))

    @app.get("/api/streams/{sid}", dependencies=guarded)
    def get_stream(sid: StreamId) -> dict:
        return live(stream_or_404(sid))

    @app.post("/api/streams/{sid}/stop", dependencies=guarded)
    def stop_stream(sid: StreamId) -> dict:
        stream_or_404(sid)
        manager.stop(sid)
        return live(store.stream(sid))

    @app.post("/api/streams/{sid}/start", dependencies=guarded)
    def start_stream(sid: StreamId) -> dict:
        """Run the stream again from its beginning (its earlier events are dropped)."""
        stream_or_404(sid)
        manager.start(sid)
        return live(store.stream(sid))

    @app.post("/api/streams/{sid}/resume", dependencies=guarded)
    def resume_stream(sid: StreamId) -> dict:
        """Run a stopped or interrupted file stream on from the frame where it stopped, keeping its events."""
        row = stream_or_404(sid)
        if manager.running(sid):
            raise HTTPException(409, f"stream {sid} is running")
        if not manager.resumable(row):
            raise HTTPException(409, f"stream {sid} cannot resume ({row['kind']} source, {row['status']}): start it")
        manager.start(sid, resume=True)
        return live(store.stream(sid))

    @app.delete("/api/streams/{sid}", dependencies=guarded, status_code=204, response_model=None)
    def delete_stream(sid: StreamId) -> Response:
        import shutil

        stream_or_404(sid)
        manager.stop(sid)
        store.delete_stream(sid)
        shutil.rmtree(plates_dir(data_dir, sid), ignore_errors=True)
        return Response(status_code=204)

    @app.get("/api/streams/{sid}/plates/{track_id}.jpg", dependencies=guarded)
    def plate_crop(sid: StreamId, track_id: Annotated[int, PathParam(ge=0, le=MAX_ID)]) -> Response:
        """The vehicle crop its plate was best read from (with --ocr)."""
        path = plates_dir(data_dir, sid) / f"track{track_id}.jpg"
        if not path.is_file():
            raise HTTPException(404, f"no plate read for track {track_id} of stream {sid}")
        return Response(path.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.get("/api/streams/{sid}/events", dependencies=guarded)
    def stream_events(sid: StreamId, after: EventId = 0, limit: Limit = 1000, format: str = "json") -> Response:
        stream_or_404(sid)
        rows = store.events(sid, after, min(limit, 100_000))
        if format == "csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=EVENT_FIELDS)
            w.writeheader()
            w.writerows(rows)
            headers = {"Content-Disposition": f'attachment; filename="stream{sid}-events.csv"'}
            return Response(buf.getvalue(), media_type="text/csv", headers=headers)
        if format != "json":
            raise HTTPException(400, "format must be json or csv")
        return json_response(rows)

    @app.get("/api/events", dependencies=guarded)
    def all_events(after: EventId = 0, limit: Limit = 200) -> Response:
        return json_response(store.events(None, after, min(limit, 10_000)))

    relays: dict[int, tuple[object, MjpegRelay]] = {}
    readers = [0]  # open /api/live connections

    @app.get("/api/streams/{sid}/video.mjpg", dependencies=guarded)
    async def video(sid: StreamId) -> StreamingResponse:
        """The stream's annotated frames (multipart JPEG), relayed from its loopback MJPEG server."""
        await asyncio.to_thread(stream_or_404, sid)
        run = manager.running(sid)
        if run is None:
            raise HTTPException(409, f"stream {sid} is not running")
        held = relays.get(sid)
        if held is None or held[0] is not run:  # one relay per run of the stream
            held = relays[sid] = (
                run,
                MjpegRelay(run.mjpeg_port, lambda: not run.done.is_set() and not closing(), asyncio.get_running_loop()),
            )
        media = f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
        return StreamingResponse(held[1].frames(), media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/api/live", dependencies=guarded)
    async def live_updates(
        request: Request,
        after: EventId = 0,
        last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: every second, every stream's status, FPS and counts, and the new events
        (those after `after`). Each message's SSE id is the newest event id sent, so a browser that
        reconnects (it sends Last-Event-ID) gets only the events it has not had."""
        if readers[0] >= LIVE_READERS:
            raise HTTPException(503, f"{LIVE_READERS} live-update readers are connected already")
        readers[0] += 1

        async def events():
            last = max(after, last_event_id or 0)
            try:
                while not closing() and not await request.is_disconnected():
                    streams = await asyncio.to_thread(lambda: [live(r) for r in store.streams()])
                    new = await asyncio.to_thread(store.events, None, last, 500)
                    if new:
                        last = new[-1]["id"]
                    yield f"id: {last}\ndata: {json.dumps({'streams': streams, 'events': new})}\n\n"
                    await asyncio.sleep(1.0)
            finally:
                readers[0] -= 1

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, token: str | None = None) -> Response:
        if settings.token and token is not None:  # the link with ?token= once: a cookie, and the URL without it
            if not token_ok(token):
                return login_page("that token is not this server's", 401)
            return signed_in("/", token)
        if settings.token and not token_ok(request.cookies.get("token") or _bearer(request)):
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(PAGE)

    def login_page(message: str = "", status: int = 200) -> HTMLResponse:
        import html

        return HTMLResponse(LOGIN_PAGE.replace("{message}", html.escape(message)), status_code=status)

    @app.get("/login", response_class=HTMLResponse)
    def login_form() -> Response:
        return login_page() if settings.token else RedirectResponse("/", status_code=303)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        """The sign-in form: the token in the POST body, an HttpOnly SameSite cookie in return."""
        from urllib.parse import parse_qs

        body = await request.body()
        if len(body) > 4096:
            raise HTTPException(413, "a sign-in form is smaller than that")
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not token_ok(given):
            return login_page("that token is not this server's", 401)
        return signed_in("/", given)

    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    def openapi() -> Response:
        return json_response(app.openapi())

    @app.get("/docs", dependencies=guarded, include_in_schema=False)
    def docs() -> Response:
        if docs_page is None:
            raise HTTPException(404, "the API docs page needs swagger-ui-bundle (pip install 'yolo-accel[serve]')")
        return HTMLResponse(docs_page)

    @app.get("/docs/assets/{name}", dependencies=guarded, include_in_schema=False)
    def docs_asset(name: str) -> Response:
        media = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
        if docs_page is None or name not in media:
            raise HTTPException(404, f"no {name[:80]}")
        import swagger_ui_bundle

        return Response((Path(swagger_ui_bundle.swagger_ui_path) / name).read_bytes(), media_type=media[name])

    return app


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}


def _bearer(request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else ""


def _swagger_page() -> str | None:
    """Swagger UI's page with its script and style from this server (swagger-ui-bundle), or None without it."""
    try:
        import swagger_ui_bundle  # noqa: F401
    except ImportError:
        return None
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="yolo-accel serve: API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="data:,",
    ).body.decode()
