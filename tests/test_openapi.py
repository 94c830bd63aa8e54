"""``GET /openapi.json`` describes every route, and schemathesis, driven by it against the
live app over HTTP, finds no 5xx and no response that breaks the schema."""
from __future__ import annotations

import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.conftest import engine_for, settings_for
from tests.support.web import serve
from webhook import create_app
from webhook.openapi import app_routes

KEY = "schema-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


@pytest.fixture(scope="module")
def live_app():
    prefix = f"mjflow-test-{uuid.uuid4().hex[:10]}"
    engine = engine_for(settings_for(prefix, "/tmp/mjflow-schema", api_keys=[KEY], local_run=False,
                                     public_url="http://127.0.0.1:9", hook_secret="s"))
    r = engine.r
    app = create_app(engine.settings, engine)
    with serve(app) as url:
        # something to find: a job and a batch
        requests.post(f"{url}/v1/jobs", json={"prompt": "seed", "then": ["U1"]}, headers=AUTH, timeout=5)
        requests.post(f"{url}/v1/batches?name=seed", json=["a", "b"], headers=AUTH, timeout=5)
        yield app, url
    for key in r.scan_iter(f"{prefix}:*", count=1000):
        r.delete(key)


@pytest.fixture(scope="module")
def api_schema(live_app):
    _, url = live_app
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def test_document_is_openapi_31_and_covers_every_route(live_app):
    app, url = live_app
    doc = requests.get(f"{url}/openapi.json", timeout=5).json()
    assert doc["openapi"] == "3.1.0"
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert app_routes(app) == documented
    assert doc["components"]["schemas"]["JobSpec"]["additionalProperties"] is False
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if path.startswith("/v1/"):
                assert op["security"] == [{"bearer": []}] and "401" in op["responses"]


def _labels() -> list[str]:
    """Operation labels of the app (built without serving; its Redis client is lazy)."""
    engine = engine_for(settings_for("mjflow-test-collect", "/tmp/mjflow-schema", api_keys=[KEY],
                                     allow_private_urls=False, local_run=False))
    return sorted(f"{m.upper()} {p}" for p, m in app_routes(create_app(engine.settings, engine)))


@pytest.mark.parametrize("label", _labels())
def test_api_conforms(api_schema, live_app, label):
    """Up to 25 valid generated requests per operation: every answer below 500 and as
    documented (status, content type, headers, body schema); then up to 10 invalid ones
    (wrong types, missing fields, bad parameters): still never a 5xx."""
    _, url = live_app
    operation = api_schema.find_operation_by_label(label)

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def positive(case):
        case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS, timeout=10)

    @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def negative(case):
        case.call_and_validate(base_url=url, headers=AUTH, checks=[checks.not_a_server_error],
                               timeout=10)

    positive()
    if list(operation.iter_parameters()) or operation.body:   # else nothing can be wrong
        negative()
