"""The API fuzzed from its own OpenAPI schema (schemathesis, in process): valid and invalid requests alike
get no 500, and every error from the API is a JSON 4xx with one message (the pages a browser opens, the
sign-in form among them, answer their errors in HTML)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from yolo_accel.serve.app import create_app  # noqa: E402
from yolo_accel.serve.manager import ServeSettings  # noqa: E402


@pytest.fixture
def api_schema(tmp_path, yolov5n_pt):
    # the in-process client names the host "testserver": it is allowed as a reverse proxy's name would be
    app = create_app(ServeSettings(model=str(yolov5n_pt), data_dir=tmp_path / "data", allow_hosts=("testserver",)))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.manager.stop_all()


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/live")  # an endless feed
HTML_PAGES = ("/", "/login")  # a wrong password gets the sign-in form back, with 401


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_any_request_without_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
    if response.status_code >= 400 and case.path not in HTML_PAGES:
        content_type = response.headers.get("content-type", [""])[0]  # schemathesis: each header a list
        assert content_type.startswith("application/json"), (case.formatted_path, response.status_code, content_type)
        body = response.json()
        assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"].strip(), body
