#!/usr/bin/env bash
# Starts a throwaway S3-compatible server (moto in server mode) for the
# tests and exports DG_TEST_S3_ENDPOINT and DG_TEST_S3_BUCKET. Source it:
# `. .ci/s3.sh`. Installs moto from PyPI into a virtualenv the first time
# (DG_S3_VENV, default ~/.cache/dg-ci-moto), runs it on a free local port,
# creates the bucket, and stops the server when the calling shell exits
# (after whatever exit trap was set before, e.g. .ci/postgres.sh's).

DG_S3_VENV=${DG_S3_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dg-ci-moto}
if [ ! -x "$DG_S3_VENV/bin/moto_server" ]; then
  echo "== installing moto[server] into $DG_S3_VENV"
  if ! python3 -m venv "$DG_S3_VENV" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$DG_S3_VENV" || { echo "cannot create a Python virtualenv" >&2; return 1 2>/dev/null || exit 1; }
  fi
  "$DG_S3_VENV/bin/pip" install -q 'moto[server]' \
    || { echo "cannot install moto[server]" >&2; return 1 2>/dev/null || exit 1; }
fi

S3_DIR=$(mktemp -d /tmp/dg-ci-s3.XXXXXX)
S3_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$DG_S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$S3_DIR/server.log" 2>&1 &
S3_PID=$!

# Ready when it answers; then create the bucket (moto accepts any credentials).
if ! python3 - "$S3_PORT" <<'PY'
import sys, time, urllib.request
port = sys.argv[1]
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit(1)
req = urllib.request.Request(f"http://127.0.0.1:{port}/dg-test", method="PUT")
urllib.request.urlopen(req, timeout=10).read()
PY
then
  cat "$S3_DIR/server.log" >&2
  kill "$S3_PID" 2>/dev/null
  return 1 2>/dev/null || exit 1
fi

stop_s3() { kill "$S3_PID" 2>/dev/null; wait "$S3_PID" 2>/dev/null; rm -rf "$S3_DIR"; }
_dg_prev_exit=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
trap "stop_s3; ${_dg_prev_exit}" EXIT

export DG_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export DG_TEST_S3_BUCKET=dg-test
echo "== moto $("$DG_S3_VENV/bin/python" -c 'import moto; print(moto.__version__)') S3 on port $S3_PORT"
