"""mount_playground serves a built bundle at /playground/ with headers that keep the API key (which may sit in the
URL fragment) from leaking, and mounts nothing when no bundle is built."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from voxfleet.gateway.playground_files import mount_playground


def test_a_built_bundle_is_served_under_playground(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>voxfleet playground</title>")
    (tmp_path / "playground.js").write_text("console.log('hi')")
    app = FastAPI()
    assert mount_playground(app, tmp_path)
    client = TestClient(app)
    page = client.get("/playground/")
    assert page.status_code == 200 and "voxfleet playground" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"
    assert client.get("/playground/playground.js").headers["content-type"].startswith(("text/javascript",
                                                                                        "application/javascript"))
    assert client.get("/playground", follow_redirects=False).status_code in (307, 308)
    assert client.get("/playground/../pyproject.toml").status_code == 404


def test_no_bundle_mounts_nothing(tmp_path):
    app = FastAPI()
    assert not mount_playground(app, tmp_path)
    assert TestClient(app).get("/playground/").status_code == 404
