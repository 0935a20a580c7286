"""The page at `/` in a real browser (Debian's chromium, driven by Playwright), as a person uses it:
upload the clip, draw a counting line and a zone on its first frame, start it, watch the live image,
the counts and the stage times, see the events table fill, download the CSV and find the database's
events in it.

Skipped where chromium or Playwright is missing (`.ci/run` installs both). Screenshots go to
runs/test-artifacts/ (look at them)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from tests.conftest import wait_in_page  # noqa: E402
from tests.test_serve import IMGSZ, Server, clip, names  # noqa: E402, F401  (fixtures)

from yolo_accel.serve.manager import ServeSettings  # noqa: E402
from yolo_accel.serve.store import Store  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "runs" / "test-artifacts"


@pytest.mark.slow
def test_a_person_uploads_draws_a_line_and_watches_the_counts(tmp_path, clip, yolov5n_pt, names):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    srv = Server(ServeSettings(model=str(yolov5n_pt), imgsz=IMGSZ, data_dir=tmp_path / "data"), names)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
            page.goto(srv.url + "/")
            page.set_input_files("#file", str(clip))
            page.fill("#classes", "car,motorcycle,bus,truck")
            page.click("#show")
            preview = page.locator("#preview")
            preview.wait_for(state="visible")
            wait_in_page(page, "document.getElementById('preview').naturalWidth > 0")
            box = preview.bounding_box()
            # two clicks across the road, 450 px down the 720 px frame (the page scales to the image)
            y = box["height"] * 450 / 720
            page.mouse.click(box["x"] + 2, box["y"] + y)
            page.mouse.click(box["x"] + box["width"] - 2, box["y"] + y)
            line = page.input_value("#line")
            x1, y1, x2, y2 = (int(v) for v in line.split(","))
            assert abs(y1 - 450) <= 4 and abs(y2 - 450) <= 4 and x1 < 20 and x2 > 1260, line
            # a zone: four corners of a band across the road, then "close zone"
            page.check("input[name=tool][value=zone]")
            corners = [(0.02, 300), (0.98, 300), (0.98, 520), (0.02, 520)]
            for fx, py in corners:
                page.mouse.click(box["x"] + fx * box["width"], box["y"] + box["height"] * py / 720)
            page.click("#closezone")
            zone = [int(v) for v in page.input_value("#zone").split(",")]
            assert len(zone) == 8 and all(abs(zone[i] - py) <= 4 for i, (_, py) in zip((1, 3, 5, 7), corners)), zone
            assert page.locator("#overlay polygon").count() == 1 and page.locator("#overlay polyline").count() == 1
            page.screenshot(path=str(ARTIFACTS / "serve-drawing.png"), full_page=True)
            page.click("#go")
            card = page.locator(".stream").first
            card.wait_for(timeout=30_000)
            # the live image shows frames while it runs
            wait_in_page(
                page,
                "(() => { const i = document.querySelector('.stream img'); return i && i.naturalWidth > 0; })()",
                timeout=60_000,
            )
            wait_in_page(
                page, "document.querySelector('.stream .counts').textContent.includes(' in ')", timeout=120_000
            )
            page.locator("#events tr").first.wait_for(timeout=60_000)
            wait_in_page(
                page,  # per-stage latency, pushed every few seconds while it runs
                "document.querySelector('.stream .stages').textContent.includes('infer')",
                timeout=60_000,
            )
            page.screenshot(path=str(ARTIFACTS / "serve-running.png"), full_page=True)
            wait_in_page(
                page, "document.querySelector('.stream .status').textContent.startsWith('finished')", timeout=180_000
            )
            page.wait_for_timeout(1500)  # the last SSE tick
            page.screenshot(path=str(ARTIFACTS / "serve-finished.png"), full_page=True)
            rows_on_page = page.locator("#events tr").count()
            with page.expect_download() as dl:
                card.locator("a.csv").click()
            text = Path(dl.value.path()).read_text()
            # the server goes away: the page says so instead of showing the last numbers as if live
            srv.close()
            wait_in_page(page, "document.getElementById('offline').style.display === ''", timeout=15_000)
            assert page.locator(".stream .status").first.text_content().startswith("unknown")
            page.screenshot(path=str(ARTIFACTS / "serve-offline.png"), full_page=True)
            # it comes back on the same port: the page reconnects and shows each event once
            srv = Server(srv.settings, names, port=srv.port)
            wait_in_page(page, "document.getElementById('offline').style.display === 'none'", timeout=30_000)
            wait_in_page(
                page, "document.querySelector('.stream .status').textContent.startsWith('finished')", timeout=10_000
            )
            page.wait_for_timeout(1500)  # two SSE ticks of the new server
            rows_after_reconnect = page.locator("#events tr").count()
            # restart and remove ask first; declined, nothing happens
            asked: list[str] = []

            def answer(dialog, accept: bool) -> None:
                asked.append(dialog.message)
                dialog.accept() if accept else dialog.dismiss()

            page.once("dialog", lambda d: answer(d, False))
            card.locator("button[data-a=start]").click()
            page.wait_for_timeout(1500)
            assert "stored events and counts are deleted" in asked[-1]
            assert card.locator(".status").text_content().startswith("finished")
            page.once("dialog", lambda d: answer(d, False))
            card.locator("button[data-a=remove]").click()
            page.wait_for_timeout(1500)
            assert asked[-1].startswith("Remove stream #") and page.locator(".stream").count() == 1
            sid = Store(srv.settings.database).streams()[0]["id"]
            stored = Store(srv.settings.database).events(sid)  # declined: all still there
            page.once("dialog", lambda d: answer(d, True))
            card.locator("button[data-a=remove]").click()
            wait_in_page(page, "document.querySelectorAll('.stream').length === 0", timeout=15_000)
            browser.close()
        assert Store(srv.settings.database).streams() == []  # accepted: removed
        downloaded = list(csv.DictReader(io.StringIO(text)))
        assert len(stored) > 0 and rows_on_page == len(stored) and rows_after_reconnect == len(stored)
        assert [int(r["id"]) for r in downloaded] == [e["id"] for e in stored]
        assert [(r["class_name"], r["direction"], r["counter"]) for r in downloaded] == [
            (e["class_name"], e["direction"], e["counter"]) for e in stored
        ]
        assert {e["counter"] for e in stored} == {"line1", "zone1"}  # both drawn counters count
    finally:
        srv.close()


@pytest.mark.slow
def test_the_wall_shows_four_cameras_live_and_stops_one(tmp_path, clip, yolov5n_pt, names):  # noqa: F811
    """The page opens on the wall: every stream live at once with its counts and health; one stopped from
    its tile stops alone."""
    import httpx

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    srv = Server(ServeSettings(model=str(yolov5n_pt), imgsz=IMGSZ, data_dir=tmp_path / "data"), names)
    (srv.settings.data_dir / "clip.mp4").write_bytes(clip.read_bytes())
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            body = {"source": "clip.mp4", "lines": ["0,450,1280,450"], "loop": True, "realtime": True}
            ids = [c.post("/api/streams", json={**body, "name": f"cam{i}"}).json()["id"] for i in range(4)]
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(srv.url + "/")
            # the wall comes first on the page, above the form
            assert page.evaluate("document.querySelector('main section h2').textContent") == "Cameras"
            everyone_live = (
                "(() => { const t = document.querySelectorAll('.stream'); return t.length === 4 && "
                "Array.from(t).every((e) => e.querySelector('img').naturalWidth > 0 && "
                "e.querySelector('.status').textContent === 'running'); })()"
            )
            wait_in_page(page, everyone_live, timeout=120_000)
            frames = "Array.from(document.querySelectorAll('.stream .fps')).map((e) => parseInt(e.textContent))"
            before = page.evaluate(frames)
            wait_in_page(
                page, f"(() => {{ const b = {before}; return {frames}.every((n, i) => n > b[i]); }})()", 30_000
            )
            assert all(page.locator(".stream .health").nth(i).text_content().startswith("connected") for i in range(4))
            wait_in_page(page, "document.querySelector('.stream .counts').textContent.includes(' in ')", 60_000)
            page.screenshot(path=str(ARTIFACTS / "serve-wall.png"), full_page=True)
            tile = page.locator(f"#s{ids[1]}")
            tile.locator("img").click()  # opens the tile large, its stage times shown
            assert "open" in tile.get_attribute("class") and tile.locator(".stages").is_visible()
            tile.locator("button[data-a=stop]").click()
            wait_in_page(page, f"document.querySelector('#s{ids[1]} .status').textContent === 'stopped'", 60_000)
            page.wait_for_timeout(2500)
            statuses = [page.locator(f"#s{i} .status").text_content() for i in ids]
            assert statuses == ["running", "stopped", "running", "running"], statuses
            browser.close()
    finally:
        srv.close()
