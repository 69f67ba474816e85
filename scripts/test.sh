#!/usr/bin/env bash
# Runs every test natbridge has, installing what the tests need when it is
# missing: Debian's coturn (its turnutils_* test clients), systemd (for
# systemd-analyze), chromium (browser tests), cargo-deb (package test), and
# the npm packages pinned in tests/browser/package-lock.json.
# Usage: scripts/test.sh            (from anywhere; CI runs it via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing_apt=()
command -v turnutils_uclient >/dev/null 2>&1 || missing_apt+=(coturn)
command -v systemd-analyze >/dev/null 2>&1 || missing_apt+=(systemd)
command -v openssl >/dev/null 2>&1 || missing_apt+=(openssl)
command -v dpkg-deb >/dev/null 2>&1 || missing_apt+=(dpkg)
[ -x /usr/bin/chromium ] || missing_apt+=(chromium)
if [ ${#missing_apt[@]} -gt 0 ]; then
    log "installing ${missing_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi
# The coturn package ships a TURN daemon; the tests need only its clients, and
# a stray turnserver on 3478 would confuse anyone reading the results.
if pgrep -x turnserver >/dev/null 2>&1; then
    as_root systemctl disable --now coturn >/dev/null 2>&1 || true
    as_root pkill -x turnserver || true
fi
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb"
    cargo install cargo-deb --locked --quiet
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --release -- -D warnings

# One release build serves every test binary: the integration tests run the
# real daemon binary (CARGO_BIN_EXE_natbridge) that this same command builds,
# and the browser tests below reuse it.
log "cargo test --release"
cargo test --release

log "browser tests (Chromium via playwright-core)"
NATBRIDGE_BIN="$PWD/target/release/natbridge" bash tests/browser/run.sh
