#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (default 60), one at a
# time in one process, and prints executions and coverage per target and a
# summary. Exits non-zero when a target crashes, times out or runs out of
# memory; the input that did it is in fuzz/artifacts/<target>/ and the full
# log in fuzz/logs/<target>.log. Needs the nightly toolchain and cargo-fuzz
# (docs/fuzzing.md).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#        FUZZ_MAX_RUNS=10000000 scripts/fuzz.sh 1800 stun_decode
#        (stops a target at that many executions if it gets there first)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

log() { printf '\n==> %s\n' "$*"; }

# Safe Rust gains little from AddressSanitizer and loses half its speed;
# debug assertions and overflow checks stay on (cargo-fuzz's default).
build_flags=(--sanitizer none)

mkdir -p fuzz/logs
log "building the fuzz targets (nightly, release with debug assertions)"
if ! (cd fuzz && cargo +nightly fuzz build "${build_flags[@]}") >fuzz/logs/build.log 2>&1; then
    tail -n 40 fuzz/logs/build.log
    echo "fuzz build failed (fuzz/logs/build.log)"
    exit 1
fi
failed=()
rows=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log "fuzzing $target for ${seconds}s"
    status=ok
    started=$(date +%s)
    # The first corpus directory collects what the run finds (ignored by
    # git); fuzz/seeds/<target> holds the committed seeds, read only.
    if ! (cd fuzz && cargo +nightly fuzz run "${build_flags[@]}" "$target" \
        "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_MAX_RUNS:+-runs=$FUZZ_MAX_RUNS}) \
        >"fuzz/logs/$target.log" 2>&1; then
        status=FAILED
        failed+=("$target")
    fi
    elapsed=$(($(date +%s) - started))
    last=$(grep -E '^#[0-9]+' "fuzz/logs/$target.log" | tail -n 1 || true)
    execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "fuzz/logs/$target.log" |
        grep -oE '[0-9]+$' || echo "${last%% *}")
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    corp=$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    execs=${execs#\#}
    echo "$target: $status, ${elapsed}s, ${execs:-?} executions, cov ${cov} ft ${ft}, corpus ${corp}"
    if [ "$status" != ok ]; then
        grep -E 'ERROR|panicked|Test unit written|SUMMARY|ALARM|Failing input' \
            "fuzz/logs/$target.log" | head -n 20 || true
    fi
    rows+=("$(printf '%-16s %7s %6ss %12s %7s %7s %6s' "$target" "$status" "$elapsed" \
        "${execs:-?}" "$cov" "$ft" "$corp")")
done

log "fuzzing summary"
printf '%-16s %7s %7s %12s %7s %7s %6s\n' target result time executions cov ft corpus
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/logs/)"
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets, no crash"
