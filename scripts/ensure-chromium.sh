#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests; never download a browser build.
# When it cannot be installed (no apt, not root), the browser tests skip and say why.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "installing Debian's chromium for the browser tests…"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq chromium >/dev/null 2>&1 || echo "warning: could not install chromium; browser tests will skip"
  fi
else
  echo "warning: chromium is missing and cannot be installed here (need apt-get as root); browser tests will skip"
fi
exit 0
