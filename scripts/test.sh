#!/usr/bin/env bash
# Runs every test natbridge has, installing what the tests need when it is
# missing: Debian's coturn (its turnutils_* test clients), redis-server (the
# cluster tests start private instances of it), clang, ip and ethtool (the
# XDP fast path and its namespace tests), systemd (for
# systemd-analyze), chromium (browser tests), cargo-deb (package test), the
# npm packages pinned in tests/browser/package-lock.json, and cargo-fuzz when
# the nightly toolchain is there (the fuzz targets then run 20 s each).
# Usage: scripts/test.sh            (from anywhere; CI runs it via .ci/run)
#        scripts/test.sh --quick    fmt, clippy and the unit tests only, in
#                                   debug: the edit-compile loop (installs
#                                   nothing, starts no daemon)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
    "") ;;
    --quick) quick=1 ;;
    *)
        echo "usage: scripts/test.sh [--quick]" >&2
        exit 2
        ;;
esac

log() { printf '\n==> %s\n' "$*"; }

# Each stage's wall time, printed at the end (also when a stage fails).
stage_names=()
stage_secs=()
stage_started=$SECONDS
stage_current="setup"
stage() {
    stage_names+=("$stage_current")
    stage_secs+=($((SECONDS - stage_started)))
    stage_current="$1"
    stage_started=$SECONDS
    log "$1"
}
print_stages() {
    stage_names+=("$stage_current")
    stage_secs+=($((SECONDS - stage_started)))
    printf '\n==> time per stage\n'
    for i in "${!stage_names[@]}"; do
        printf '%6ds  %s\n' "${stage_secs[$i]}" "${stage_names[$i]}"
    done
    printf '%6ds  total\n' "$SECONDS"
}
trap print_stages EXIT

if [ "$quick" = 1 ]; then
    # Debug builds: the loop wants the shortest compile, and the unit tests
    # need no release binary (no integration or browser test runs here).
    stage "cargo fmt --check"
    cargo fmt --all -- --check
    stage "cargo clippy --all-targets -- -D warnings (debug)"
    cargo clippy --all-targets -- -D warnings
    stage "cargo test --lib (unit tests, debug)"
    cargo test --lib
    exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing_apt=()
command -v turnutils_uclient >/dev/null 2>&1 || missing_apt+=(coturn)
command -v systemd-analyze >/dev/null 2>&1 || missing_apt+=(systemd)
command -v openssl >/dev/null 2>&1 || missing_apt+=(openssl)
# Cluster tests start their own private redis-server instances on loopback
# ports; the package's own service stays off (policy-rc.d below).
command -v redis-server >/dev/null 2>&1 || missing_apt+=(redis-server)
command -v dpkg-deb >/dev/null 2>&1 || missing_apt+=(dpkg)
[ -x /usr/bin/chromium ] || missing_apt+=(chromium)
# The XDP fast path: clang builds its program (build.rs; without clang the
# daemon builds without it), and its tests make namespaces with ip and
# ethtool (tests/it/common/netns.rs).
command -v clang >/dev/null 2>&1 || missing_apt+=(clang)
[ -f /usr/include/linux/bpf.h ] || missing_apt+=(linux-libc-dev)
command -v ip >/dev/null 2>&1 || missing_apt+=(iproute2)
command -v ethtool >/dev/null 2>&1 || missing_apt+=(ethtool)
if [ ${#missing_apt[@]} -gt 0 ]; then
    log "installing ${missing_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    # The packages ship services (coturn's turnserver, redis-server) the
    # tests do not use: they need only the programs, and start their own
    # servers on their own ports. A policy-rc.d for the length of the
    # install keeps those services from starting; one the machine already
    # has is left as it is.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        own_policy=1
    fi
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then as_root rm -f "$policy"; fi
fi
if ! cargo deb --version >/dev/null 2>&1; then
    stage "installing cargo-deb"
    cargo install cargo-deb --locked --quiet
fi

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --release -- -D warnings

# One release build serves every test binary: the integration tests run the
# real daemon binary (CARGO_BIN_EXE_natbridge) that this same command builds,
# and the browser tests below reuse it.
# As root (CI is) the XDP tests must run; elsewhere they say they skipped.
if [ "$(id -u)" = 0 ]; then export NATBRIDGE_REQUIRE_NETNS=1; fi
stage "cargo test --release"
cargo test --release

# A machine without clang builds natbridge without the fast path: keep that
# build compiling and clean.
stage "cargo clippy without the XDP program (NATBRIDGE_XDP_BUILD=off)"
NATBRIDGE_XDP_BUILD=off cargo clippy --quiet --lib -- -D warnings

stage "browser tests (Chromium via playwright-core)"
NATBRIDGE_BIN="$PWD/target/release/natbridge" bash tests/browser/run.sh

# Fuzzing needs the nightly toolchain; without it the tests above are the
# whole run, and this says so.
if cargo +nightly --version >/dev/null 2>&1; then
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        stage "installing cargo-fuzz"
        cargo install cargo-fuzz --locked --quiet
    fi
    stage "fuzzing: fmt, then every target for 20 s (scripts/fuzz.sh)"
    cargo fmt --manifest-path fuzz/Cargo.toml -- --check
    bash scripts/fuzz.sh 20
else
    log "SKIPPED fuzzing: no nightly toolchain (rustup toolchain install nightly, then rerun)"
fi
