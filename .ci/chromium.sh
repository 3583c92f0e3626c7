#!/usr/bin/env bash
# Makes headless Chromium available to the browser tests of `dg report`
# (tests/integration/report_browser.rs) and exports DG_TEST_CHROMIUM.
# Source it: `. .ci/chromium.sh`. Installs Debian's `chromium` package when
# no `chromium` binary is on the PATH (needs root).

if ! DG_CHROMIUM=$(command -v chromium); then
  echo "== installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
    || { echo "cannot install chromium" >&2; return 1 2>/dev/null || exit 1; }
  DG_CHROMIUM=$(command -v chromium) \
    || { echo "chromium not found after install" >&2; return 1 2>/dev/null || exit 1; }
fi

export DG_TEST_CHROMIUM=$DG_CHROMIUM
echo "== $("$DG_TEST_CHROMIUM" --version 2>/dev/null)"
