#!/usr/bin/env bash
# Runs the browser tests: the web demo and the TURN self-test page in real
# headless Chromium (Debian's package, driven by playwright-core) against the
# natbridge daemon, which each test file starts on loopback ports.
#
#   cargo build --release && tests/browser/run.sh
#
# NATBRIDGE_BIN overrides the daemon binary (default target/release/natbridge;
# release builds embed web/, so rebuild after changing it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

export NATBRIDGE_BIN="${NATBRIDGE_BIN:-target/release/natbridge}"
if [[ ! -x "$NATBRIDGE_BIN" ]]; then
  echo "run.sh: no daemon binary at $NATBRIDGE_BIN; build it with: cargo build --release" >&2
  exit 1
fi

if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" == 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "run.sh: /usr/bin/chromium is missing and installing it needs root (or sudo)" >&2
    exit 1
  fi
  echo "run.sh: installing Debian's chromium" >&2
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

# npm ci leaves node_modules/.package-lock.json behind: older than the lock
# file means the lock file changed since.
if [[ ! -f "$here/node_modules/.package-lock.json" || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

# Serial: every test runs several browsers, and CI machines have two cores.
# The files are named rather than the directory because newer Node versions
# read the arguments of --test as globs of files, not as directories.
exec node --test --test-concurrency=1 tests/browser/*.test.mjs
