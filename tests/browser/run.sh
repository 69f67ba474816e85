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
files=()
for f in tests/browser/*.test.mjs; do
    [[ "$f" == */cluster.test.mjs ]] || files+=("$f")
done
status=0
node --test --test-concurrency=1 "${files[@]}" || status=$?

# The cluster tests want two non-loopback addresses (Chromium does not follow
# a TURN redirect to a loopback address): a network namespace of our own with
# a veth pair carrying one each, removed afterwards. Without root (or ip),
# they run on loopback and the redirect test says it is skipped.
if [[ "$(id -u)" == 0 ]] && command -v ip >/dev/null; then
    ns="natbridge-bt-$$"
    ip netns add "$ns"
    trap 'ip netns delete "$ns" 2>/dev/null || true' EXIT
    ip -n "$ns" link set lo up
    ip -n "$ns" link add nb0 type veth peer name nb1
    # No IPv6 link-local addresses: the kernel adds them a second or two
    # after the link comes up (once DAD ends), just as Chromium loads the
    # first page, and Chromium aborts loads in flight on any address change
    # (net::ERR_NETWORK_CHANGED: a CI run's first join never got its scripts).
    ip -n "$ns" link set nb0 addrgenmode none
    ip -n "$ns" link set nb1 addrgenmode none
    ip -n "$ns" addr add 10.77.0.1/24 dev nb0
    ip -n "$ns" addr add 10.77.0.2/24 dev nb1
    ip -n "$ns" link set nb0 up
    ip -n "$ns" link set nb1 up
    ip netns exec "$ns" env NATBRIDGE_CLUSTER_IPS=10.77.0.1,10.77.0.2 \
        node --test --test-concurrency=1 tests/browser/cluster.test.mjs || status=$?
else
    node --test --test-concurrency=1 tests/browser/cluster.test.mjs || status=$?
fi
exit "$status"
