#!/bin/sh
# mjflow container entry point: `mjflow-entrypoint ROLE [extra args...]`.
#
#   web          gunicorn serving webhook:create_app() on $PORT (the image's default CMD)
#   worker       Celery worker consuming every mjflow queue
#   beat         Celery beat (run exactly ONE per deployment)
#   flower       Flower dashboard (only in the image's `flower` build target)
#   make-bucket  create the bucket of MJFLOW_STORAGE_URL on AWS_ENDPOINT_URL (local S3 only)
#   health ROLE  exit 0 if this container's ROLE process is healthy (used by probes)
#   anything else is executed as given, e.g. `bash`, `mjflow ...`, `python -m simulator`.
#
# The commands mirror the repository's Procfile; every knob has a default below and can be
# overridden by the environment. All mjflow settings are read by the app itself from
# MJFLOW_* variables (see docs/configuration.md); nothing here parses them.
set -eu

: "${PORT:=8000}"
: "${WEB_CONCURRENCY:=2}"                 # gunicorn worker processes
: "${GUNICORN_THREADS:=4}"                # threads per gunicorn worker
: "${GUNICORN_TIMEOUT:=60}"               # seconds before a silent gunicorn worker is killed
: "${GUNICORN_GRACEFUL_TIMEOUT:=25}"      # seconds to finish requests on SIGTERM
: "${FORWARDED_ALLOW_IPS:=127.0.0.1}"     # proxies trusted for X-Forwarded-* ('*' behind an ingress)
: "${WORKER_CONCURRENCY:=4}"
: "${WORKER_QUEUES:=mjflow.submit,mjflow.reconcile,mjflow.store,mjflow.deliver,mjflow.tick,mjflow.api}"
: "${CELERY_LOGLEVEL:=INFO}"
: "${BEAT_SCHEDULE_FILE:=/tmp/mjflow-beat-schedule}"
: "${BEAT_REMOTE_CONTROL:=auto}"          # auto|1|0: let `celery inspect ping` reach beat (Celery >= 5.7)
: "${FLOWER_PORT:=5555}"
: "${HEALTH_TIMEOUT:=10}"                 # seconds a health probe waits for a reply

CELERY_APP=worker.celery_app

# ENTRYPOINT_DRY_RUN=1 prints the command instead of running it (used by tests).
run() {
    if [ "${ENTRYPOINT_DRY_RUN:-0}" = "1" ]; then
        printf '%s\n' "$*"
        exit 0
    fi
    exec "$@"
}

beat_remote_control() {
    case "$BEAT_REMOTE_CONTROL" in
        1|true|yes) return 0 ;;
        0|false|no) return 1 ;;
    esac
    # auto: only Celery releases that ship beat's remote-control node have the option
    python -c 'import celery.beat as b; raise SystemExit(0 if hasattr(b, "BeatPidbox") else 1)' \
        2>/dev/null
}

# Celery names nodes after socket.gethostname(), which the runtime also puts in $HOSTNAME.
node_host() {
    if [ -n "${HOSTNAME:-}" ]; then
        printf '%s' "$HOSTNAME"
    else
        python -c 'import socket; print(socket.gethostname())'
    fi
}

role="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$role" in
    web)
        tmp_dir=/tmp
        [ -d /dev/shm ] && [ -w /dev/shm ] && tmp_dir=/dev/shm
        run gunicorn \
            --bind "0.0.0.0:${PORT}" \
            --workers "$WEB_CONCURRENCY" \
            --threads "$GUNICORN_THREADS" \
            --timeout "$GUNICORN_TIMEOUT" \
            --graceful-timeout "$GUNICORN_GRACEFUL_TIMEOUT" \
            --worker-tmp-dir "$tmp_dir" \
            --forwarded-allow-ips "$FORWARDED_ALLOW_IPS" \
            --logger-class worker.logs.GunicornLogger --access-logfile - \
            "$@" \
            'webhook:create_app()'
        ;;
    worker)
        # SIGTERM = warm shutdown: stop consuming, finish running tasks, exit. Give the
        # container at least the task time limit (300 s) to stop before it is killed.
        run celery -A "$CELERY_APP" worker \
            --loglevel "$CELERY_LOGLEVEL" \
            --concurrency "$WORKER_CONCURRENCY" \
            -Q "$WORKER_QUEUES" \
            "$@"
        ;;
    beat)
        if beat_remote_control; then
            set -- --enable-remote-control "$@"
        fi
        run celery -A "$CELERY_APP" beat \
            --loglevel "$CELERY_LOGLEVEL" \
            --schedule "$BEAT_SCHEDULE_FILE" \
            "$@"
        ;;
    flower)
        run celery -A "$CELERY_APP" flower --port="$FLOWER_PORT" "$@"
        ;;
    make-bucket)
        run python - "$@" <<'PY'
"""Create the MJFLOW_STORAGE_URL bucket on a local S3 API (AWS_ENDPOINT_URL); waits for it."""
import os
import sys
import time
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

url = urlparse(os.environ.get("MJFLOW_STORAGE_URL", ""))
endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
if url.scheme != "s3" or not endpoint:
    print("make-bucket: not an s3:// storage URL on a custom endpoint; nothing to do")
    sys.exit(0)
s3 = boto3.client("s3", endpoint_url=endpoint)
deadline = time.monotonic() + float(os.environ.get("MAKE_BUCKET_TIMEOUT", "60"))
while True:
    try:
        try:
            s3.head_bucket(Bucket=url.netloc)
            print(f"make-bucket: bucket {url.netloc} exists at {endpoint}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            s3.create_bucket(Bucket=url.netloc)
            print(f"make-bucket: created bucket {url.netloc} at {endpoint}")
        sys.exit(0)
    except (BotoCoreError, ClientError) as exc:
        if time.monotonic() > deadline:
            print(f"make-bucket: {endpoint} not usable: {exc}", file=sys.stderr)
            sys.exit(1)
        time.sleep(1)
PY
        ;;
    health)
        what="${1:-web}"
        case "$what" in
            web)
                run python -c 'import os, urllib.request as u; u.urlopen("http://127.0.0.1:%s/healthz" % os.environ.get("PORT", "8000"), timeout=4)'
                ;;
            worker)
                # this node answers a broadcast ping through the broker (celery@<hostname>)
                run celery -A "$CELERY_APP" inspect ping \
                    --destination "celery@$(node_host)" --timeout "$HEALTH_TIMEOUT"
                ;;
            beat)
                if beat_remote_control; then
                    # beat answers only while its scheduler keeps ticking
                    run celery -A "$CELERY_APP" inspect ping \
                        --destination "celerybeat@$(node_host)" --timeout "$HEALTH_TIMEOUT"
                fi
                # without remote control the container's main process exiting is the signal
                run true
                ;;
            *)
                echo "mjflow-entrypoint: health: unknown role '$what' (web|worker|beat)" >&2
                exit 64
                ;;
        esac
        ;;
    *)
        run "$role" "$@"
        ;;
esac
