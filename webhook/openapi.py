"""``GET /openapi.json``: the OpenAPI 3.1 description of every route of the web app.

Request bodies come from the pydantic models (:class:`worker.jobs.spec.JobSpec`); the
response models (:mod:`webhook.schemas`) describe the JSON the API answers (the job view of DESIGN.md, the
batch view, errors). Operations are listed only for routes the app really has, and
``tests/test_openapi.py`` fails when a route has no operation here.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

from webhook.schemas import ID_PATTERN, MODELS, BatchObject, JobStatusName
from worker.jobs.spec import JobSpec

bp = Blueprint("openapi", __name__)
UI_BLUEPRINTS = ("dashboard",)
# -- building blocks ------------------------------------------------------------------------------
def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = {h: {"description": d, "schema": {"type": "string"}}
                          for h, d in headers.items()}
    return out


def _err(description: str) -> dict[str, Any]:
    return _json(ref("Error"), description)


V1_ERRORS = {"401": _err("missing or invalid API key"),
             "503": _err("the job store (Redis) is unreachable")}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": ID_PATTERN}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


JOB_ID = _path_param("job_id", "job id (job_...)")
UPSTREAM = {"name": "name", "in": "path", "required": True, "description": "upstream name",
            "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}}
BATCH_ID = _path_param("batch_id", "batch id (bat_...)")
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size")
CURSOR = _query("cursor", {"type": "string"}, "the `next` of the previous page")


def _op(summary: str, responses: dict[str, Any], *, v1: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
    if v1:
        op["security"] = [{"bearer": []}]
        op["responses"].update(V1_ERRORS)
        op["tags"] = [extra.pop("tag", "jobs")]
    else:
        op["security"] = []
        op["tags"] = [extra.pop("tag", "service")]
    op.update(extra)
    return op


def operations() -> dict[str, dict[str, dict[str, Any]]]:
    """Every operation mjflow's web app may have, by OpenAPI path and method."""
    spec_body = {"required": True, "content": {"application/json": {"schema": ref("JobSpec")}}}
    batch_body = {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "array", "items": {"oneOf": [ref("JobSpec"), {"type": "string"}]},
             "description": "job specs or prompts"},
            ref("BatchObject")]}},
        "application/x-ndjson": {"schema": {"type": "string", "description":
                                            "one job spec (JSON object) or prompt a line"}},
    }}
    invalid = {"400": _err("malformed body or parameter"),
               "422": _err("a field is invalid; details name every field path")}
    return {
        "/v1/jobs": {
            "post": _op("Create a job", {
                "202": _json(ref("JobView"), "created", Location="the job's URL"),
                "200": _json(ref("JobView"), "the job made earlier with this Idempotency-Key",
                             Location="the job's URL"),
                "409": _err("Idempotency-Key used with another body"),
                "413": _err("body too large"), **invalid},
                operationId="createJob", requestBody=spec_body,
                parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                             "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                             "description": "same key + body returns the same job"}]),
            "get": _op("List jobs, newest first", {
                "200": _json(ref("JobPage"), "a page of jobs"), "400": _err("bad parameter")},
                operationId="listJobs",
                parameters=[_query("batch", {"type": "string"}, "only this batch's jobs"),
                            _query("status", {"type": "string", "enum": list(
                                JobStatusName.__args__)}, "only jobs in this status"),
                            _query("created_from", {"type": "string"}, "unix time or ISO-8601"),
                            _query("created_to", {"type": "string"}, "unix time or ISO-8601"),
                            CURSOR, LIMIT]),
        },
        "/v1/jobs/{job_id}": {
            "get": _op("Get a job", {"200": _json(ref("JobDetail"), "the job"),
                                     "404": _err("no such job")},
                       operationId="getJob", parameters=[JOB_ID]),
        },
        "/v1/jobs/{job_id}/steps": {
            "post": _op("Act later: add a follow-up to a step of an existing job", {
                "202": _json(ref("JobAdded"), "added; the job runs again",
                             Location="the job's URL"),
                "404": _err("no such job or step"),
                "409": _err("the step failed or is ambiguous (name it by id)"), **invalid},
                operationId="addSteps", parameters=[JOB_ID], requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": ref("AddSteps")}}}),
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": _op("Cancel: what has not started; MODAL tasks abandoned; running tasks "
                        "cancelled upstream where the profile can", {
                "200": _json(ref("JobDetail"), "the job"), "404": _err("no such job")},
                operationId="cancelJob", parameters=[JOB_ID]),
        },
        "/v1/jobs/{job_id}/retry": {
            "post": _op("Run the failed steps of a finished job again", {
                "200": _json(ref("JobRetried"), "the job; `retried` steps reopened"),
                "404": _err("no such job")}, operationId="retryJob", parameters=[JOB_ID]),
        },
        "/v1/jobs/{job_id}/deliveries/replay": {
            "post": _op("Send the job's events to its consumer again (same webhook-id)", {
                "200": _json(ref("JobDetail"), "the job, with its delivery log"),
                "404": _err("no such job")}, operationId="replayDeliveries", parameters=[JOB_ID]),
        },
        "/v1/batches": {
            "post": _op("Create or resume a batch", {
                "202": _json(ref("BatchCreated"), "items created", Location="the batch's URL"),
                "200": _json(ref("BatchCreated"), "nothing new: every item was done or running",
                             Location="the batch's URL"),
                "413": _err("body too large"), **invalid},
                operationId="createBatch", tag="batches", requestBody=batch_body,
                parameters=[_query("name", {"type": "string", "minLength": 1, "maxLength": 200},
                                   "batch name; the same name resumes the same batch")]),
            "get": _op("List batches, newest first", {
                "200": _json(ref("BatchPage"), "a page of batches"), "400": _err("bad parameter")},
                operationId="listBatches", tag="batches", parameters=[CURSOR, LIMIT]),
        },
        "/v1/batches/{batch_id}": {
            "get": _op("Batch progress: counts by status, throughput, ETA", {
                "200": _json(ref("BatchView"), "the batch"), "404": _err("no such batch")},
                operationId="getBatch", tag="batches", parameters=[BATCH_ID]),
        },
        "/v1/batches/{batch_id}/report": {
            "get": _op("One row per item: key, job, prompt, outcome, image keys, reason", {
                "200": {"description": "the report", "content": {
                    "application/json": {"schema": ref("BatchReport")},
                    "text/csv": {"schema": {"type": "string"}}}},
                "400": _err("bad format"), "404": _err("no such batch")},
                operationId="batchReport", tag="batches",
                parameters=[BATCH_ID, _query("format", {"type": "string", "enum": ["json", "csv"]},
                                             "json (default) or csv")]),
        },
        "/v1/batches/{batch_id}/retry": {
            "post": _op("Retry the failed steps of the batch's failed and partial jobs", {
                "200": _json(ref("BatchRetried"), "the batch"), "404": _err("no such batch")},
                operationId="retryBatch", tag="batches", parameters=[BATCH_ID]),
        },
        "/v1/batches/{batch_id}/cancel": {
            "post": _op("Cancel the batch's unfinished jobs", {
                "200": _json(ref("BatchCancelled"), "the batch"), "404": _err("no such batch")},
                operationId="cancelBatch", tag="batches", parameters=[BATCH_ID]),
        },
        "/v1/upstream": {
            "get": _op("The first upstream's dispatch window and recent answers (one-upstream "
                       "form of /v1/upstreams)", {
                "200": _json(ref("UpstreamDetail"), "the window")},
                operationId="upstreamState", tag="upstream"),
        },
        "/v1/upstream/resume": {
            "post": _op("Resume every paused upstream (out of credit, auth failure)", {
                "200": _json(ref("UpstreamState"), "the window")},
                operationId="upstreamResume", tag="upstream"),
        },
        "/v1/upstreams": {
            "get": _op("The fleet: every upstream's window, health, answers and spend today", {
                "200": _json(ref("UpstreamList"), "the upstreams")},
                operationId="listUpstreams", tag="upstream"),
        },
        "/v1/upstreams/{name}": {
            "get": _op("One upstream of the fleet", {
                "200": _json(ref("UpstreamView"), "the upstream"), "404": _err("no such upstream")},
                operationId="getUpstream", tag="upstream", parameters=[UPSTREAM]),
        },
        "/v1/upstreams/{name}/pause": {
            "post": _op("Pause dispatch to one upstream (its queued root steps go to the others)", {
                "200": _json(ref("UpstreamView"), "the upstream"), "404": _err("no such upstream"),
                "422": _err("bad reason")},
                operationId="pauseUpstream", tag="upstream", parameters=[UPSTREAM],
                requestBody={"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"reason": {"type": "string",
                                                                "maxLength": 200}}}}}}),
        },
        "/v1/upstreams/{name}/resume": {
            "post": _op("Resume dispatch to one upstream", {
                "200": _json(ref("UpstreamView"), "the upstream"), "404": _err("no such upstream")},
                operationId="resumeUpstream", tag="upstream", parameters=[UPSTREAM]),
        },
        "/hooks/mj/{step_id}/{token}": {
            "post": _op("Upstream task callback (midjourney-proxy notifyHook)", {
                "204": {"description": "accepted"},
                "400": _err("not a task JSON object with an id"),
                "404": _err("no such hook (unknown step or bad token)"),
                "409": _err("step already finished, or the callback is for another task"),
                "413": _err("body too large"),
                "415": _err("not application/json")},
                v1=False, tag="hooks", operationId="upstreamCallback",
                parameters=[{"name": "step_id", "in": "path", "required": True,
                             "schema": {"type": "string", "pattern": ID_PATTERN}},
                            {"name": "token", "in": "path", "required": True,
                             "schema": {"type": "string", "pattern": "^[a-f0-9]{1,64}$"}}],
                requestBody={"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "description": "the upstream task JSON"}}}}),
        },
        "/healthz": {"get": _op("The process is alive", {"200": _json(ref("Health"), "alive")},
                                v1=False, operationId="healthz")},
        "/readyz": {"get": _op("Redis and the broker answer", {
            "200": _json(ref("Ready"), "ready"), "503": _json(ref("Ready"), "not ready")},
            v1=False, operationId="readyz")},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {
            "description": "text exposition format (OpenMetrics when the Accept header asks)",
            "content": {"text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}}}}},
            v1=False, operationId="metrics")},
        "/openapi.json": {"get": _op("This document", {
            "200": _json({"type": "object"}, "OpenAPI 3.1")}, v1=False, operationId="openapi")},
    }


def components() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         mode="validation" if model in (JobSpec, BatchObject)
                                         else "serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {"schemas": schemas, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "an API key from MJFLOW_API_KEYS"}}}


def app_routes(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every API rule of the app: not static files, not the
    dashboard's HTML pages (a browser UI, described in docs/operations.md)."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        if rule.endpoint.split(".")[0] in UI_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                out.add((path, method.lower()))
    return out


def build(app: Flask) -> dict[str, Any]:
    routes = app_routes(app)
    paths: dict[str, Any] = {}
    for path, ops in operations().items():
        kept = {m: op for m, op in ops.items() if (path, m) in routes}
        if kept:
            paths[path] = kept
    return {
        "openapi": "3.1.0",
        "info": {"title": "mjflow", "version": "1",
                 "description": "Midjourney jobs through midjourney-proxy-compatible APIs. "
                                "See docs/api.md. The dashboard's HTML pages (/, /jobs/..., "
                                "/batches/...) are a browser UI and not described here."},
        "paths": paths,
        "components": components(),
        "tags": [{"name": n} for n in ("jobs", "batches", "upstream", "hooks", "service")],
    }


@bp.get("/openapi.json")
def openapi_json():  # type: ignore[no-untyped-def]
    doc = current_app.extensions.get("mjflow.openapi")
    if doc is None:
        doc = current_app.extensions["mjflow.openapi"] = build(current_app)
    return jsonify(doc)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
