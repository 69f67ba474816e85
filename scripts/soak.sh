#!/usr/bin/env bash
# Soak test: runs one natbridge daemon under steady mixed load for MINUTES
# and checks that it neither grows nor leaks. Not part of the test command.
#
# Usage: scripts/soak.sh [MINUTES]        (default 30)
#
# Load, all on 127.0.0.1, all from natbridge's own load tools:
#   - `natbridge bench turn` over UDP and over TCP, back-to-back bounded runs
#     of TURN_RUN seconds (each run allocates, relays ChannelData to its echo
#     peer, then deletes its allocations), at about half of this machine's
#     measured relay saturation (docs/benchmarks.md: ~50,000 pps on 2 cores)
#     split between the two transports: 12,000 + 10,000 pps by default;
#   - `natbridge bench signaling` in bounded rounds of SIG_ROUND seconds:
#     SIG_PEERS WebSocket peers join rooms of 4, signal each other, leave;
#     the next round joins fresh ones;
#   - SIGHUP (configuration reload) every HUP_EVERY seconds.
# Every SAMPLE_EVERY seconds it records RSS (VmRSS), open descriptors,
# threads, allocations and signaling peers/connections (from /metrics) and
# the count of ERROR/panic lines in the daemon log into OUT/samples.csv.
# At the end the load stops (the runs in flight finish on their own), the
# script waits for allocations, peers and connections to reach 0, stops the
# daemon with SIGTERM and prints a summary with PASS/FAIL per goal:
#   RSS drift < 5 % after warm-up, descriptors back to their baseline,
#   0 allocations and 0 peers at the end, no ERROR/panic lines, every SIGHUP
#   answered by a reload, every load run completed, daemon exits 0.
# Exit status 0 when every goal passes, 1 otherwise, 2 on a setup error.
#
# Environment (defaults in brackets):
#   NATBRIDGE      the binary [target/release/natbridge, built (or brought
#                  up to date) with cargo build --release]
#   OUT            output directory [a new /tmp/natbridge-soak.XXXXXX]
#   UDP_CLIENTS, UDP_RATE   UDP relay clients and pps per client [100, 120]
#   TCP_CLIENTS, TCP_RATE   TCP relay clients and pps per client [100, 100]
#   TURN_RUN       seconds per bench turn run [60]
#   CRED_TTL       seconds the bench turn runs' credentials are valid [120;
#                  at least TURN_RUN + 30]. The server keeps what it knows of
#                  each TURN user until the user's credential expires (for
#                  revocations), so with hour-long credentials that state
#                  grows through the first hour; short ones let it reach its
#                  steady size within the warm-up
#   SIG_PEERS, SIG_RATE, SIG_ROUND   peers per round, signals/s in all,
#                  seconds of signaling per round [2000, 1000, 30]
#   HUP_EVERY, SAMPLE_EVERY   seconds [30, 10]
#   WARMUP         seconds before the RSS baseline [10 % of the run, at
#                  least 120, at most half the run]
#   TURN_PORT, HTTP_PORT, METRICS_PORT, RELAY_MIN, RELAY_MAX
#                  loopback ports [36478, 18190, 18191, 63000, 64999]; the
#                  relay range sits above the ephemeral range so client
#                  sockets do not take relay ports
#
# It stops only the processes it started, by pid, on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-30}
case $MINUTES in
    '' | *[!0-9]*) echo "usage: scripts/soak.sh [MINUTES]  (a whole number, 1 to 1440)" >&2; exit 2 ;;
esac
if [ "$MINUTES" -lt 1 ] || [ "$MINUTES" -gt 1440 ]; then
    echo "soak.sh: MINUTES must be 1 to 1440" >&2
    exit 2
fi

NB=${NATBRIDGE:-target/release/natbridge}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-soak.XXXXXX)}
UDP_CLIENTS=${UDP_CLIENTS:-100}
UDP_RATE=${UDP_RATE:-120}
TCP_CLIENTS=${TCP_CLIENTS:-100}
TCP_RATE=${TCP_RATE:-100}
TURN_RUN=${TURN_RUN:-60}
CRED_TTL=${CRED_TTL:-120}
SIG_PEERS=${SIG_PEERS:-2000}
SIG_RATE=${SIG_RATE:-1000}
SIG_ROUND=${SIG_ROUND:-30}
HUP_EVERY=${HUP_EVERY:-30}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
TURN_PORT=${TURN_PORT:-36478}
HTTP_PORT=${HTTP_PORT:-18190}
METRICS_PORT=${METRICS_PORT:-18191}
RELAY_MIN=${RELAY_MIN:-63000}
RELAY_MAX=${RELAY_MAX:-64999}
SECRET=soak-secret-0123456789abcdef

RUN_S=$((MINUTES * 60))
case $CRED_TTL in '' | *[!0-9]*) echo "soak.sh: CRED_TTL must be a whole number of seconds" >&2; exit 2 ;; esac
if [ "$CRED_TTL" -lt $((TURN_RUN + 30)) ]; then
    echo "soak.sh: CRED_TTL ($CRED_TTL s) must be at least TURN_RUN + 30 ($((TURN_RUN + 30)) s): a run's credentials must outlast it" >&2
    exit 2
fi
if [ -z "${WARMUP:-}" ]; then
    WARMUP=$((RUN_S / 10))
    [ "$WARMUP" -ge 120 ] || WARMUP=120
    [ "$WARMUP" -le $((RUN_S / 2)) ] || WARMUP=$((RUN_S / 2))
fi
# The RSS baseline is the largest RSS in a window right after the warm-up,
# the final RSS the largest in an equally long window before the load
# stops: the load is cyclic (runs start and end), so a single sample would
# land at a random phase. A window covers at least one full TURN run.
WINDOW=$((RUN_S / 10))
[ "$WINDOW" -ge "$TURN_RUN" ] || WINDOW=$TURN_RUN
# Bounds for the waits at the end.
SETTLE_S=60
MAX_RUNS=$((RUN_S / 5 + 1))

mkdir -p "$OUT/runs"
CSV=$OUT/samples.csv
LOG=$OUT/natbridge.log
CONF=$OUT/natbridge.toml
RUNS_LOG=$OUT/runs.log
: >"$RUNS_LOG"

say() { printf '%s soak: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'soak.sh: %s\n' "$*" >&2; exit 2; }

# ---------------------------------------------------------------------------
# Processes this script starts, stopped by pid on any exit

DAEMON_PID=
LOOP_PIDS=()

stop_pids() { # pid...: TERM to all, then KILL to those left after 5 s
    local pid left
    for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        left=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then left=1; fi
        done
        [ "$left" = 1 ] || return 0
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

stop_loops() {
    local f pids=()
    # The loops first, so that none starts another run, then the run each
    # had in flight (its `timeout` wrapper, which passes the TERM on to the
    # bench process).
    [ "${#LOOP_PIDS[@]}" = 0 ] || stop_pids "${LOOP_PIDS[@]}"
    LOOP_PIDS=()
    for f in "$OUT"/runs/*.pid; do
        [ -e "$f" ] || continue
        pids+=("$(cat "$f" 2>/dev/null || true)")
        rm -f "$f"
    done
    [ "${#pids[@]}" = 0 ] || stop_pids "${pids[@]}"
}

cleanup() {
    stop_loops
    if [ -n "$DAEMON_PID" ]; then stop_pids "$DAEMON_PID"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Binary, ports, configuration

if [ -z "${NATBRIDGE:-}" ]; then
    # Always, so that a stale binary is never what gets soaked (a no-op
    # when it is up to date).
    say "cargo build --release"
    cargo build --release --quiet
fi
[ -x "$NB" ] || die "no natbridge binary at $NB"
NB=$(realpath "$NB")
for tool in curl awk timeout ss; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
for p in "$TURN_PORT" "$HTTP_PORT" "$METRICS_PORT"; do
    if ss -Hlntu "sport = :$p" | grep -q .; then
        die "port $p is in use on this machine; set TURN_PORT/HTTP_PORT/METRICS_PORT"
    fi
done
# 2,000 WebSocket peers and 200 relay clients need descriptors on both sides.
ulimit -n "$(ulimit -Hn)"

cat >"$CONF" <<EOF
# Written by scripts/soak.sh.
[turn]
listen = ["127.0.0.1:$TURN_PORT"]
relay_ip = "127.0.0.1"
relay_port_min = $RELAY_MIN
relay_port_max = $RELAY_MAX
workers = 2
# Limits sized to the load (and to an open-files limit of 20,000, so that
# the daemon's start-up check has nothing to warn about).
max_allocations = 2000
user_quota = 100
max_stream_connections = 1000
max_stream_connections_per_ip = 1000
# Every client is 127.0.0.1: no per-source cap on 401 answers.
unauth_replies_per_ip = 0

[auth]
secrets = ["$SECRET"]

[peers]
# The bench echo peer is on loopback.
allow = ["127.0.0.0/8"]

[log]
level = "info"
format = "text"

[http]
listen = "127.0.0.1:$HTTP_PORT"
# All the signaling peers come from 127.0.0.1.
max_connections = 5000
max_connections_per_ip = 5000

[signaling]
max_connections = 5000
max_connections_per_ip = 5000

[metrics]
listen = "127.0.0.1:$METRICS_PORT"

[service]
# An interrupted soak leaves allocations behind: do not drain them for long.
drain_timeout = 3
EOF

# Where /metrics is, from the config itself, so that edits above (or a
# changed default) are followed.
metrics_addr() {
    local listen
    listen=$(awk '
        /^\[/ { section = $0 }
        section == "[metrics]" && $1 == "listen" { gsub(/[" ]/, "", $3); print $3 }' "$CONF")
    case $listen in
        "" | http) awk '
            /^\[/ { section = $0 }
            section == "[http]" && $1 == "listen" { gsub(/[" ]/, "", $3); print $3 }' "$CONF" ;;
        off) die "[metrics] listen = \"off\": the soak needs /metrics" ;;
        *) echo "$listen" ;;
    esac
}
METRICS_URL="http://$(metrics_addr)/metrics"

# ---------------------------------------------------------------------------
# Measuring

metric() { # text name -> value (0 when absent)
    awk -v n="$2" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) }' <<<"$1"
}

error_lines() { grep -cE '^[^ ]+ +ERROR |panicked' "$LOG" || true; }
warn_lines() { grep -cE '^[^ ]+ +WARN ' "$LOG" || true; }
fd_count() { find "/proc/$DAEMON_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0; }

T0=$(date +%s)
HUPS=0
echo "t_s,phase,rss_kib,fds,threads,allocations,signaling_peers,signaling_connections,error_lines,warn_lines,sighups" >"$CSV"
LAST=

sample() { # phase
    local m t
    m=$(curl -s --max-time 3 "$METRICS_URL" || true)
    t=$(($(date +%s) - T0))
    LAST="$t,$1,$(rss_kib),$(fd_count),$(threads),$(metric "$m" natbridge_turn_allocations_active),$(metric "$m" natbridge_signaling_peers),$(metric "$m" natbridge_signaling_connections),$(error_lines),$(warn_lines),$HUPS"
    echo "$LAST" >>"$CSV"
}

field() { # csv-line column(1-based)
    cut -d, -f"$2" <<<"$1"
}

daemon_alive() { kill -0 "$DAEMON_PID" 2>/dev/null; }

# ---------------------------------------------------------------------------
# Start the daemon

say "output in $OUT"
say "natbridge $NB; $MINUTES min; UDP ${UDP_CLIENTS}x${UDP_RATE} pps, TCP ${TCP_CLIENTS}x${TCP_RATE} pps, $SIG_PEERS signaling peers per ${SIG_ROUND}s round at $SIG_RATE signals/s, SIGHUP every ${HUP_EVERY}s"
"$NB" serve --config "$CONF" >"$LOG" 2>&1 &
DAEMON_PID=$!
ready=0
for _ in $(seq 100); do
    daemon_alive || { cat "$LOG" >&2; die "the daemon exited at start"; }
    if curl -s --max-time 1 "$METRICS_URL" | grep -q '^natbridge_turn_allocations_active'; then
        ready=1
        break
    fi
    sleep 0.1
done
[ "$ready" = 1 ] || die "no /metrics at $METRICS_URL within 10 s"
sleep 1
sample idle
FD_BASE=$(field "$LAST" 4)
RSS_START=$(field "$LAST" 3)
say "daemon pid $DAEMON_PID ready: RSS $RSS_START KiB, $FD_BASE descriptors"

# ---------------------------------------------------------------------------
# Load loops: bounded in count (MAX_RUNS) and in time (END); each run is
# itself bounded by its --duration and by `timeout`.

END=$((T0 + RUN_S))

turn_loop() { # transport clients rate
    local transport=$1 clients=$2 rate=$3 n=0 left dur rc pid
    while [ "$n" -lt "$MAX_RUNS" ]; do
        left=$((END - $(date +%s)))
        [ "$left" -ge 10 ] || break
        dur=$((left < TURN_RUN ? left : TURN_RUN))
        n=$((n + 1))
        timeout --kill-after=10 $((dur + 60)) \
            "$NB" bench turn --server "127.0.0.1:$TURN_PORT" --secret "$SECRET" \
            --transport "$transport" --clients "$clients" --rate "$rate" --duration "$dur" \
            --user "soak-$transport" --credential-ttl "$CRED_TTL" --json-out "$OUT/runs/turn-$transport-$n.json" \
            >"$OUT/runs/turn-$transport-$n.txt" 2>&1 &
        pid=$!
        echo "$pid" >"$OUT/runs/turn-$transport.pid"
        rc=0
        wait "$pid" || rc=$?
        rm -f "$OUT/runs/turn-$transport.pid"
        echo "turn-$transport $n rc=$rc" >>"$RUNS_LOG"
    done
}

signaling_loop() {
    local n=0 left dur rc pid
    while [ "$n" -lt "$MAX_RUNS" ]; do
        left=$((END - $(date +%s)))
        [ "$left" -ge 15 ] || break
        # Joining 2,000 peers takes a few seconds of the round.
        dur=$((left - 5 < SIG_ROUND ? left - 5 : SIG_ROUND))
        n=$((n + 1))
        timeout --kill-after=10 $((dur + 90)) \
            "$NB" bench signaling --url "ws://127.0.0.1:$HTTP_PORT/ws" \
            --peers "$SIG_PEERS" --room-size 4 --rate "$SIG_RATE" --duration "$dur" \
            --json-out "$OUT/runs/signaling-$n.json" \
            >"$OUT/runs/signaling-$n.txt" 2>&1 &
        pid=$!
        echo "$pid" >"$OUT/runs/signaling.pid"
        rc=0
        wait "$pid" || rc=$?
        rm -f "$OUT/runs/signaling.pid"
        echo "signaling $n rc=$rc" >>"$RUNS_LOG"
    done
}

turn_loop udp "$UDP_CLIENTS" "$UDP_RATE" &
LOOP_PIDS+=($!)
turn_loop tcp "$TCP_CLIENTS" "$TCP_RATE" &
LOOP_PIDS+=($!)
signaling_loop &
LOOP_PIDS+=($!)

# ---------------------------------------------------------------------------
# Sample, SIGHUP, until END (bounded by the number of samples as well)

NEXT_HUP=$((T0 + HUP_EVERY))
for _ in $(seq $((RUN_S / SAMPLE_EVERY + 2))); do
    now=$(date +%s)
    [ "$now" -lt "$END" ] || break
    daemon_alive || break
    if [ "$now" -ge "$NEXT_HUP" ]; then
        kill -HUP "$DAEMON_PID"
        HUPS=$((HUPS + 1))
        NEXT_HUP=$((NEXT_HUP + HUP_EVERY))
    fi
    if [ $((now - T0)) -ge "$WARMUP" ]; then phase=load; else phase=warmup; fi
    sample "$phase"
    IFS=, read -r t _ rss fds _ allocs peers conns errs _ _ <<<"$LAST"
    say "t=${t}s RSS ${rss} KiB, ${fds} fds, ${allocs} allocations, ${peers} peers, ${conns} connections, ${errs} error lines, ${HUPS} SIGHUPs"
    sleep_for=$((SAMPLE_EVERY - ($(date +%s) - now)))
    # In the background so that a Ctrl-C is handled at once, not after it.
    if [ "$sleep_for" -gt 0 ]; then
        sleep "$sleep_for" &
        wait $! || true
    fi
done

# ---------------------------------------------------------------------------
# Wind down: the runs in flight finish (they end by END), then everything
# they held must go.

say "load window over; waiting for the runs in flight to finish"
deadline=$(($(date +%s) + 150))
for p in "${LOOP_PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
done
stop_loops

say "waiting (at most ${SETTLE_S}s) for 0 allocations, peers and connections and the baseline descriptor count"
settled=0
for _ in $(seq "$SETTLE_S"); do
    daemon_alive || break
    sample settle
    IFS=, read -r _ _ _ fds _ allocs peers conns _ _ _ <<<"$LAST"
    if [ "$allocs" = 0 ] && [ "$peers" = 0 ] && [ "$conns" = 0 ] && [ "$fds" -le "$FD_BASE" ]; then
        settled=1
        break
    fi
    sleep 1
done
# A last SIGHUP with no load, to check the daemon still reloads at the end.
if daemon_alive; then
    kill -HUP "$DAEMON_PID"
    HUPS=$((HUPS + 1))
    sleep 1
fi
sample end
END_LINE=$LAST
RSS_HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0)
RELOADS=$(grep -c 'configuration reloaded' "$LOG" || true)

alive_at_end=0
exit_rc=none
if daemon_alive; then
    alive_at_end=1
    kill -TERM "$DAEMON_PID"
    for _ in $(seq 300); do
        daemon_alive || break
        sleep 0.1
    done
    if daemon_alive; then
        exit_rc=timeout
    else
        exit_rc=0
        wait "$DAEMON_PID" || exit_rc=$?
    fi
    DAEMON_PID=
fi

# ---------------------------------------------------------------------------
# Summary

# Largest RSS over [from, to) seconds, from the samples taken under load.
rss_max_between() {
    awk -F, -v a="$1" -v b="$2" 'NR > 1 && ($2 == "load" || $2 == "warmup") && $1 >= a && $1 < b && $3 > m { m = $3 } END { print m + 0 }' "$CSV"
}
LOAD_END=$RUN_S
RSS_BASE=$(rss_max_between "$WARMUP" $((WARMUP + WINDOW)))
RSS_FINAL=$(rss_max_between $((LOAD_END - WINDOW)) "$LOAD_END")
RSS_MAX=$(awk -F, 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$CSV")
if [ "$RSS_BASE" -gt 0 ]; then
    DRIFT=$(awk -v a="$RSS_BASE" -v b="$RSS_FINAL" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
else
    DRIFT=nan
fi
IFS=, read -r _ _ RSS_END FD_END _ ALLOCS_END PEERS_END CONNS_END ERRS_END WARNS_END _ <<<"$END_LINE"

turn_runs() { grep -c "^turn-$1 " "$RUNS_LOG" || true; }
failed_runs=$(grep -vc ' rc=0$' "$RUNS_LOG" || true)
total_runs=$(wc -l <"$RUNS_LOG")
# Loss and join failures over all runs, from their JSON reports.
TURN_STATS=$(cat "$OUT"/runs/turn-*.json 2>/dev/null | awk '
    { if (match($0, /"packets_sent":[0-9]+/)) s += substr($0, RSTART + 15, RLENGTH - 15)
      if (match($0, /"lost":[0-9]+/)) l += substr($0, RSTART + 7, RLENGTH - 7)
      if (match($0, /"allocation_failures":[0-9]+/)) f += substr($0, RSTART + 22, RLENGTH - 22) }
    END { printf "%d packets sent, %d lost (%.3f %%), %d allocation failures", s, l, (s ? l * 100 / s : 0), f }')
SIG_STATS=$(cat "$OUT"/runs/signaling-*.json 2>/dev/null | awk '
    { if (match($0, /"joined":[0-9]+/)) j += substr($0, RSTART + 9, RLENGTH - 9)
      if (match($0, /"join_failures":[0-9]+/)) f += substr($0, RSTART + 16, RLENGTH - 16)
      if (match($0, /"messages_sent":[0-9]+/)) s += substr($0, RSTART + 16, RLENGTH - 16)
      if (match($0, /"lost":[0-9]+/)) l += substr($0, RSTART + 7, RLENGTH - 7) }
    END { printf "%d joins, %d join failures, %d signals sent, %d lost", j, f, s, l }')

FAILS=0
verdict() { # name ok(0/1) detail
    local mark=PASS
    if [ "$2" != 1 ]; then mark=FAIL; FAILS=$((FAILS + 1)); fi
    printf '  %-4s  %-34s %s\n' "$mark" "$1" "$3"
}
b() { if [ "$1" = 0 ]; then echo 1; else echo 0; fi; } # exit status -> 1 when it passed
DRIFT_OK=0; awk -v d="$DRIFT" 'BEGIN { exit !(d != "nan" && d < 5) }' || DRIFT_OK=$?
FD_OK=0; [ "$FD_END" -le "$FD_BASE" ] || FD_OK=1
ALLOCS_OK=0; [ "$ALLOCS_END" = 0 ] || ALLOCS_OK=1
PEERS_OK=0; { [ "$PEERS_END" = 0 ] && [ "$CONNS_END" = 0 ]; } || PEERS_OK=1
ERRS_OK=0; [ "$ERRS_END" = 0 ] || ERRS_OK=1
HUPS_OK=0; [ "$RELOADS" = "$HUPS" ] || HUPS_OK=1
RUNS_OK=0; { [ "$failed_runs" = 0 ] && [ "$total_runs" -gt 0 ]; } || RUNS_OK=1
EXIT_OK=0; { [ "$alive_at_end" = 1 ] && [ "$exit_rc" = 0 ]; } || EXIT_OK=1

{
    echo
    echo "natbridge soak: $MINUTES min ($(date -u +%Y-%m-%dT%H:%MZ)), output $OUT"
    echo "  load:        UDP ${UDP_CLIENTS}x${UDP_RATE} pps ($((UDP_CLIENTS * UDP_RATE)) pps), TCP ${TCP_CLIENTS}x${TCP_RATE} pps ($((TCP_CLIENTS * TCP_RATE)) pps), $SIG_PEERS signaling peers per ${SIG_ROUND}s round"
    echo "  turn runs:   $(turn_runs udp) UDP, $(turn_runs tcp) TCP; $TURN_STATS"
    echo "  signaling:   $(grep -c '^signaling ' "$RUNS_LOG" || true) rounds; $SIG_STATS"
    echo "  load runs:   $total_runs, $failed_runs failed (see $RUNS_LOG)"
    echo "  RSS:         start $RSS_START KiB; baseline $RSS_BASE KiB (max over ${WARMUP}-$((WARMUP + WINDOW)) s); final $RSS_FINAL KiB (max over $((LOAD_END - WINDOW))-${LOAD_END} s); drift $DRIFT %; max sampled $RSS_MAX KiB, VmHWM $RSS_HWM KiB; after the load $RSS_END KiB"
    echo "  descriptors: baseline $FD_BASE, end $FD_END"
    echo "  at the end:  $ALLOCS_END allocations, $PEERS_END peers, $CONNS_END connections"
    echo "  log:         $ERRS_END ERROR/panic lines, $WARNS_END WARN lines ($LOG)"
    echo "  SIGHUPs:     $HUPS sent, $RELOADS 'configuration reloaded' lines"
    echo "  daemon:      exit status after SIGTERM: $exit_rc"
    echo
    if [ "$RUN_S" -lt $((WARMUP + 2 * WINDOW)) ]; then
        echo "  (short run: the baseline and final RSS windows overlap; the drift figure means little)"
    fi
    verdict "RSS drift < 5 % after warm-up" "$(b $DRIFT_OK)" "$DRIFT %"
    verdict "descriptors back to baseline" "$(b $FD_OK)" "$FD_END vs $FD_BASE"
    verdict "0 allocations at the end" "$(b $ALLOCS_OK)" "$ALLOCS_END"
    verdict "0 peers and connections at end" "$(b $PEERS_OK)" "$PEERS_END peers, $CONNS_END connections"
    verdict "no ERROR/panic lines" "$(b $ERRS_OK)" "$ERRS_END"
    verdict "every SIGHUP reloaded" "$(b $HUPS_OK)" "$RELOADS of $HUPS"
    verdict "every load run completed" "$(b $RUNS_OK)" "$failed_runs of $total_runs failed"
    verdict "daemon up to the end, exit 0" "$(b $EXIT_OK)" "status $exit_rc"
    [ "$settled" = 1 ] || echo "  (the daemon had not settled within ${SETTLE_S}s)"
    echo
    if [ "$FAILS" = 0 ]; then echo "soak: PASS"; else echo "soak: FAIL ($FAILS goals)"; fi
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"

if grep -qE '^[^ ]+ +ERROR |panicked' "$LOG"; then
    echo "first ERROR/panic lines:"
    grep -E '^[^ ]+ +ERROR |panicked' "$LOG" | head -5
fi
if grep -qE '^[^ ]+ +WARN ' "$LOG"; then
    echo "WARN lines by message (count, message without its fields):"
    grep -E '^[^ ]+ +WARN ' "$LOG" | sed -E 's/^[^ ]+ +WARN //; s/ [a-z_]+=.*$//' | sort | uniq -c | sort -rn | head -10
fi
[ "$FAILS" = 0 ]
