#!/bin/sh
# Tools some tests need besides Python, installed when missing (`make test` runs this):
#   redis-sentinel  tests/test_sentinel.py  Debian's redis-sentinel (redis-server --sentinel
#                                           is the same program, so redis-server is enough)
#   promtool        tests/test_alerts.py    from Debian's prometheus package, copied into
#                                           the venv (no Prometheus daemon is installed)
# Never fails: a tool that cannot be had is reported, and the tests that need it skip.
set -u
VENV_BIN=${1:-.venv/bin}
export DEBIAN_FRONTEND=noninteractive

as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

if ! command -v redis-sentinel >/dev/null 2>&1 && ! command -v redis-server >/dev/null 2>&1; then
  if as_root; then
    apt-get install -y -q --no-install-recommends redis-sentinel >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && apt-get install -y -q --no-install-recommends redis-sentinel >/dev/null 2>&1; }
  fi
  command -v redis-sentinel >/dev/null 2>&1 \
    || echo "note: redis-sentinel is not installed (apt-get install redis-sentinel); tests/test_sentinel.py will skip"
fi

if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$VENV_BIN/promtool" ] \
   && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download -q prometheus >/dev/null 2>&1 \
      || { as_root && apt-get update -q >/dev/null 2>&1 && apt-get download -q prometheus >/dev/null 2>&1; }; } ) \
    && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" \
    && cp "$tmp/x/usr/bin/promtool" "$VENV_BIN/promtool"
  rm -rf "$tmp"
fi
command -v promtool >/dev/null 2>&1 || [ -x "$VENV_BIN/promtool" ] \
  || echo "note: promtool is not available (apt-get install prometheus); tests/test_alerts.py will skip"
exit 0
