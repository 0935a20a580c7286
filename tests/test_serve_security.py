"""The web app against a hostile page, a hostile network and hostile input (README, "Security"): a page on
another local port cannot change its state or make it fetch a URL (in Chromium), a rebound host name is
refused, the token never travels in a URL, uploads are limited while they arrive, text fields and ids
are bounded, previews of cameras that never answer cannot jam it, and SIGTERM ends it while a browser
holds the live feed open."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from tests.conftest import wait_in_page, wait_until_serving
from tests.test_serve import clip, make_server, names  # noqa: F401  (fixtures)

TOKEN = "a-test-token-of-24-chars"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def server(make_server):  # noqa: F811
    return make_server


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A second local web server: serves the attacking page, and notes every request it gets."""

    page = b""
    seen: typing.ClassVar[list[str]] = []

    def do_GET(self):
        type(self).seen.append(self.path)
        body = self.page if self.path == "/attack.html" else b"not a video"
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/attack.html" else "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _other_site(page: str):
    handler = type("Handler", (_Recorder,), {"page": page.encode(), "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, handler


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.slow
def test_a_page_on_another_local_port_cannot_change_state_or_fetch_urls(server, clip, tmp_path):  # noqa: F811
    """In Chromium: an attacking page on a second local port posts to the API (no-cors fetch, a form, an
    upload) and points an <img> at the preview of a URL. None of it reaches the app's state; the app
    never fetches the URL; the app's own page keeps working beside it."""
    sync_api = pytest.importorskip("playwright.sync_api")
    srv = server()
    data = srv.settings.data_dir
    shutil.copy(clip, data / "clip.mp4")
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        sid = c.post("/api/streams", json={"source": "clip.mp4", "start": False}).json()["id"]
        before = c.get(f"/api/streams/{sid}").json()
    bait_httpd, bait = _other_site("")
    bait_url = f"http://127.0.0.1:{bait_httpd.server_address[1]}/camera.mp4"
    attack = f"""<!doctype html><html><body>
<form id="f" method="post" action="{srv.url}/api/streams/{sid}/start" target="sink"></form>
<iframe name="sink"></iframe>
<img id="i" src="{srv.url}/api/preview?source={bait_url}">
<script>
fetch('{srv.url}/api/streams/{sid}/start', {{method: 'POST', mode: 'no-cors'}});
fetch('{srv.url}/api/streams/{sid}', {{method: 'DELETE', mode: 'no-cors'}});
const body = new FormData(); body.append('file', new Blob(['x'.repeat(1000)]), 'a.mp4');
fetch('{srv.url}/api/uploads', {{method: 'POST', mode: 'no-cors', body}});
document.getElementById('f').submit();
setTimeout(() => {{ document.title = 'done'; }}, 1500);
</script></body></html>"""
    httpd, _ = _other_site(attack)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/attack.html")
            wait_in_page(page, "document.title === 'done'", timeout=20_000)
            time.sleep(1.0)
            own = browser.new_page()  # the app's own page, same browser: it loads and lists the stream
            errors = []
            own.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            own.goto(srv.url + "/")
            wait_in_page(own, "document.querySelectorAll('#grid .stream').length === 1", timeout=20_000)
            browser.close()
    finally:
        httpd.shutdown()
        bait_httpd.shutdown()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        after = c.get(f"/api/streams/{sid}").json()
    assert after["status"] == before["status"] and after["frames"] == before["frames"] == 0  # never started
    assert list((data / "uploads").iterdir()) == []  # no upload stored
    assert bait.seen == []  # the app never fetched the URL the <img> named
    assert not [e for e in errors if "Content Security Policy" in e], errors  # the page runs under its CSP


def test_a_cross_site_request_is_a_403_and_an_allowed_origin_passes(server):
    srv = server(allow_origins=("https://ops.example.org",))
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        cases = {
            "other port": {"Origin": "http://127.0.0.1:1"},
            "same-site fetch": {"Sec-Fetch-Site": "same-site"},
            "cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
            "opaque origin": {"Origin": "null"},
        }
        for what, headers in cases.items():
            r = c.post("/api/streams", json={"source": "x.mp4"}, headers=headers)
            assert r.status_code == 403 and "cross-site request" in r.json()["error"], what
            r = c.get("/api/preview", params={"source": "http://127.0.0.1:1/x"}, headers=headers)
            assert r.status_code == 403, what  # a GET that makes the server fetch a URL
        # the page itself may be opened by a link from elsewhere; scripts (no Origin, no Sec-Fetch-*) pass
        assert c.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}).status_code == 200
        assert c.get("/api/streams").status_code == 200
        same = {"Origin": srv.url, "Sec-Fetch-Site": "same-origin"}
        assert c.post("/api/streams", json={"source": "missing.mp4"}, headers=same).status_code == 400
        ops = {"Origin": "https://ops.example.org", "Sec-Fetch-Site": "cross-site"}
        assert c.post("/api/streams", json={"source": "missing.mp4"}, headers=ops).status_code == 400


def test_a_host_name_this_server_does_not_serve_is_refused(server):
    """DNS rebinding: a name that resolves to 127.0.0.1 reaches the app with its own Host header."""
    srv = server(allow_hosts=("cams.local",))
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.get("/api/streams", headers={"Host": "rebind.evil.example"})
        assert r.status_code == 421 and "rebind.evil.example" in r.json()["error"]
        port = srv.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"cams.local:{port}", "cams.local"):
            assert c.get("/api/streams", headers={"Host": host}).status_code == 200, host
        assert c.get("/healthz", headers={"Host": "evil.example"}).status_code == 421


def test_every_response_carries_the_security_headers(server):
    srv = server()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for path in ("/", "/api/streams", "/no/such/route"):
            h = c.get(path).headers
            assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff", path
            assert "frame-ancestors 'none'" in h["content-security-policy"], path
        csp = c.get("/").headers["content-security-policy"]
        assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_the_token_lives_in_a_cookie_never_in_a_url(server):
    srv = server(token=TOKEN)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        for path in ("/api/streams", "/metrics", "/openapi.json", "/docs"):
            r = c.get(path)
            assert r.status_code == 401 and "token" in r.json()["error"], path
        assert c.get("/api/streams", params={"token": TOKEN}).status_code == 401  # not from the URL
        assert c.get("/api/streams", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/streams", headers={"Authorization": f"Bearer {TOKEN}"}).json() == []
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"  # a browser is sent to sign in
        form = c.get("/login")
        assert form.status_code == 200 and 'type="password" name="token"' in form.text
        assert c.post("/login", data={"token": "wrong-token-wrong-token"}).status_code == 401
        r = c.post("/login", data={"token": TOKEN})
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/").status_code == 200 and c.get("/api/streams").status_code == 200
    with httpx.Client(base_url=srv.url, timeout=30) as c:  # the link with ?token= once: then a clean URL
        r = c.get("/", params={"token": TOKEN})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert c.get("/api/streams").status_code == 200
        docs = c.get("/docs")
        assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()  # nothing from the internet
        assert c.get("/docs/assets/swagger-ui-bundle.js").text.startswith("/*!")
        assert "/api/streams" in c.get("/openapi.json").json()["paths"]


def test_the_token_option_forms(yolov5n_pt, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from yolo_accel.cli import app

    run = CliRunner().invoke
    base = ["serve", "-m", str(yolov5n_pt), "--data-dir", str(tmp_path / "d")]
    res = run(app, [*base, "--token", "short"])
    assert res.exit_code == 2 and "the token has 5 characters: use 16 or more" in res.output
    monkeypatch.setenv("YOLO_ACCEL_TOKEN", "x")
    assert "the token has 1 characters" in run(app, base).output
    monkeypatch.delenv("YOLO_ACCEL_TOKEN")
    (tmp_path / "t").write_text("tiny\n")
    res = run(app, [*base, "--token-file", str(tmp_path / "t"), "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "the token has 4 characters" in res.output  # read from the file
    res = run(app, [*base, "--token-file", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "--token-file" in res.output and "cannot read it" in res.output
    res = run(app, [*base, "--token-file", str(tmp_path / "t"), "--token", TOKEN])
    assert res.exit_code == 2 and "not with --token" in res.output


def _raw_request(port: int, head: bytes, body: bytes = b"", wait: float = 10.0) -> bytes:
    """Send a request by hand (headers that promise more than is sent) and read what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(head + body)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and b'"error"' in out:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_uploads_are_limited_while_they_arrive(server, tmp_path):
    srv = server(max_upload_mb=1, upload_timeout_s=1.0)
    uploads = srv.settings.data_dir / "uploads"
    boundary = "b0undary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    # 200 MB announced: refused before one byte of the body is sent
    head = (
        f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {200 * 2**20}\r\n\r\n"
    ).encode()
    t0 = time.time()
    reply = _raw_request(srv.port, head)
    assert reply.startswith(b"HTTP/1.1 413") and b"larger than 1 MB" in reply and time.time() - t0 < 5
    # chunked (no length given): stopped at the limit, nothing kept, nothing in the system's temp folder
    tmp_before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    head = (
        f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sent, reply = 0, b""
        chunk = b"\0" * 65536
        try:
            while sent < 50 * 2**20:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            reply = s.recv(65536)
    assert sent < 10 * 2**20, sent  # the server stopped reading long before 50 MB
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert list(uploads.iterdir()) == []
    new_tmp = set(os.listdir(os.environ.get("TMPDIR", "/tmp"))) - tmp_before
    assert not [n for n in new_tmp if n.startswith("tmp")], new_tmp  # no spooled copy of the body
    # a stalled upload: headers and a little of the body, then nothing: 408 after the read timeout
    head = (
        f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    t0 = time.time()
    reply = _raw_request(srv.port, head, part + b"\0" * 100)
    assert reply.startswith(b"HTTP/1.1 408") and b"stalled" in reply and time.time() - t0 < 8
    assert list(uploads.iterdir()) == []


def test_unbounded_and_odd_inputs_are_4xx(server):
    srv = server()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        cases = [
            (c.post("/api/streams", json={"source": "x.mp4", "name": "n" * 20_000_000}), 422, "name"),
            (c.post("/api/streams", json={"source": "x.mp4", "lines": ["1,2,3,4"] * 1000}), 422, "lines"),
            (c.get("/api/preview", params={"source": "\x00"}), 400, "control characters"),
            (c.get("/api/preview", params={"source": "a" * 10_000}), 422, "source"),
            (c.post("/api/streams", json={"source": ("d/" * 2000) + "x.mp4"}), 422, "source"),
            (c.post("/api/streams", json={"source": ("n" * 1000) + ".mp4"}), 400, "file name"),
            (c.get("/api/streams/9223372036854775808"), 422, "sid"),
            (c.get("/api/events", params={"after": 2**63}), 422, "after"),
            (c.get("/api/streams/1/events", params={"limit": 0}), 422, "limit"),
            (c.post("/api/streams", json={"source": "x.mp4", "lines": ["1e309,0,1,1"]}), 400, ""),
        ]
        for r, status, text in cases:
            assert r.status_code == status, (r.request.url.path, r.status_code, r.text[:300])
            assert text in r.json()["error"], r.text[:300]
        assert c.get("/healthz").status_code == 200


def test_the_line_coordinates_must_be_finite():
    from yolo_accel.errors import SettingsError
    from yolo_accel.video.counting import parse_line, parse_zone

    for bad in ("inf,0,100,100", "1e400,0,100,100", "nan,0,1,1", "0,0,1e6,1"):
        with pytest.raises(SettingsError, match="finite pixels"):
            parse_line(bad, 1)
    with pytest.raises(SettingsError, match="finite pixels"):
        parse_zone("0,0,inf,0,0,100", 1)
    assert parse_line("0,450,1280,450", 1).start == (0, 450)


@pytest.mark.slow
def test_previews_of_cameras_that_never_answer_cannot_jam_the_server(server, monkeypatch):
    """Eight previews of a URL that accepts and never answers: the first few wait for the time limit, the
    rest are told to come back (503) at once; /healthz answers throughout."""
    import yolo_accel.serve.app as serve_app

    monkeypatch.setattr(serve_app, "URL_TIMEOUT_MS", 2000)
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(64)  # accepts (the kernel does), never reads nor answers
    url = f"http://127.0.0.1:{mute.getsockname()[1]}/stream.mjpg"
    srv = server()
    results: list[int] = []

    def ask():
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            results.append(c.get("/api/preview", params={"source": url}).status_code)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        t0 = time.time()
        assert c.get("/healthz").status_code == 200 and time.time() - t0 < 2.0
    for t in threads:
        t.join(timeout=60)
    mute.close()
    assert sorted(results) == [400] * serve_app.PREVIEWS_AT_ONCE + [503] * (8 - serve_app.PREVIEWS_AT_ONCE)


def test_live_update_readers_are_bounded(server, monkeypatch):
    import yolo_accel.serve.app as serve_app

    monkeypatch.setattr(serve_app, "LIVE_READERS", 2)
    srv = server()
    with (
        httpx.Client(base_url=srv.url, timeout=30) as c,
        c.stream("GET", "/api/live") as a,
        c.stream("GET", "/api/live") as b,
    ):
        assert a.status_code == b.status_code == 200
        lines = a.iter_lines(), b.iter_lines()  # kept: a line iterator that is dropped closes its response
        assert all(next(it).startswith("id: ") and next(it).startswith("data: ") for it in lines)
        third = c.get("/api/live")
        assert third.status_code == 503 and "2 live-update readers" in third.json()["error"]
    time.sleep(1.5)  # the two readers' loops notice the disconnect
    with httpx.Client(base_url=srv.url, timeout=30) as c, c.stream("GET", "/api/live") as again:
        assert again.status_code == 200


@pytest.mark.slow
def test_sigterm_ends_the_server_while_a_browser_holds_the_live_feed(tmp_path, yolov5n_pt):
    """uvicorn waited for every open connection: a tab left open kept a stopped server alive for a minute."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "yolo_accel", "serve", "-m", str(yolov5n_pt), "--imgsz", "320"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(port, proc)
        with httpx.Client(timeout=30) as c, c.stream("GET", f"http://127.0.0.1:{port}/api/live") as feed:
            lines = feed.iter_lines()
            assert next(lines).startswith("id: ") and next(lines).startswith("data: ")
            t0 = time.time()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            assert time.time() - t0 < 8  # the feed ended within a second or two, not at the 10 s cut-off
        log = proc.stdout.read().decode()
        # uvicorn exits by the signal it caught, as a process killed by it would
        assert code in (0, -signal.SIGTERM) and "Traceback" not in log and "CancelledError" not in log, log[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_upload_error_lines_are_json(server):
    srv = server()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/api/uploads", content=b"raw bytes", headers={"Content-Type": "video/mp4"})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
        r = c.post("/api/uploads", files={"other": ("a.mp4", b"x", "video/mp4")})
        assert r.status_code == 400 and "no part named file" in r.json()["error"]
        assert json.loads(c.get("/api/streams").text) == []
