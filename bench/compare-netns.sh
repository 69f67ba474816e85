#!/usr/bin/env bash
# The TURN relay over a real network path: two network namespaces joined by a
# veth pair, natbridge with the XDP fast path on, natbridge with it off, and
# coturn side by side over one load ladder (2,000 / 10,000 / 25,000 pps and
# saturation; 100 clients, 160 B ChannelData), rounds interleaved. Prints a
# table (offered and delivered pps, loss, server CPU per million relayed
# packets, ratio to coturn). The results of a full run are in
# docs/benchmarks-xdp.md.
#
# Usage (as root): bench/compare-netns.sh      (about 10 minutes on 2 cores)
#                  bench/compare.sh --netns     (the same)
#                  QUICK=1 bench/compare-netns.sh   (a minute: checks the script)
# Environment:
#   NATBRIDGE   the natbridge binary (default target/release/natbridge, built
#               with `cargo build --release` if missing); it must have been
#               built with clang present, or the "fast path on" runs fail
#   OUT         where the JSON reports, logs and summary go (default: a new
#               directory under /tmp)
#   ROUNDS      rounds of the whole ladder (default 2)
#   LADDER      offered packets/s, "sat" for saturation (default
#               "2000 10000 25000 40000 60000 sat")
#   SAT_RATE    packets/s per client offered at "sat" (default 2000: 200,000
#               pps offered, more than the load generator can send)
#   DURATION    seconds of traffic per run (default 10)
#   SERVER_CPU, LOAD_CPU   CPUs for the server side (server process and the
#               NAPI thread of its interface) and the load side (default 0, 1)
#   NAPI_DEFER_US   interrupt-moderation-like batching of the server end's
#               receive (gro_flush_timeout with napi_defer_hard_irqs=1) in
#               microseconds, the same for all three servers (default 0: the
#               kernel's default, no batching)
#   WORLD_QDISC the world end's qdisc (default "pfifo limit 1000"; "noqueue"
#               for the veth default). With a qdisc, a full ring at the server
#               end stops the world end's queue instead of dropping: the
#               deeper receive ring a NIC has (see docs/benchmarks-xdp.md)
#   ROUTER      1: a hop between the world and the server, as a NIC's wire
#               would be: a third namespace whose two veth ends bridge the
#               others with XDP_REDIRECT (its NAPI threads on LOAD_CPU). The
#               server end then receives frames, not the load side's socket
#               buffers, which a veth would otherwise copy into XDP-ready
#               pages on the server's CPU (see docs/benchmarks-xdp.md). Both ends
#               compute full UDP checksums (tx offload off), as the redirect
#               would drop a partial one
#   CAPACITY    1: instead of the ladder, each server's capacity on one core.
#               The world end runs an XDP reflector that sends every relayed
#               datagram straight back (to the peer: as the peer's answer; to
#               a client: as the client's next ChannelData), so the packets
#               `natbridge bench turn` injects (INJECT_RATE per client and
#               second) circle between the world end and the server until the
#               slower side saturates; the other side only swaps addresses.
#               Prints relayed packets/s, both CPUs' busy time and the
#               server's CPU per packet over WINDOW seconds after WARM
#               (defaults 20, 5, 3). The server end computes full UDP
#               checksums (tx offload off), which the reflected packets need
#   PEER6       1: the peer (the echo peer, or the reflector's) is IPv6,
#               fd79::3, and the clients (IPv4) ask for IPv6 relays: every
#               relayed packet changes family on the way
#   CONFIGS     which servers to run (default "natbridge-xdp natbridge-off
#               coturn"); the order rotates between rounds
#   BPF_STATS   1: turn on kernel.bpf_stats_enabled during the runs (restored
#               at exit) and record the XDP program's own run time on the
#               server end, per packet it looked at ("XDP program time" in the
#               summary). Off by default: it adds two clock reads per packet.
#   NS_PREFIX   namespace name prefix (default nbb); NET the /24 to use
#               (default 10.79.0)
#
# Topology: namespace $NS_PREFIX-srv holds the server and nbbs0 (NET.1);
# $NS_PREFIX-world holds the load generator with its echo peer and nbbw0
# (NET.2 clients, NET.3 peer). Both ends run an XDP program (natbridge's own
# on nbbs0 with the fast path on, a trivial XDP_PASS one otherwise) and
# threaded NAPI, so every configuration receives in the same kernel thread,
# napi/nbbs0-N, pinned with the server to SERVER_CPU. Server CPU = the server
# process's CPU + that thread's (`natbridge bench turn --server-threads`).
#
# Needs: root, iproute2 (ip, tc), ethtool, clang (for the XDP_PASS program),
# coturn (turnserver), taskset, node. It sends traffic only inside the two
# namespaces it creates, stops only the processes it started (by pid) and
# deletes only the namespaces it created.
set -euo pipefail
cd "$(dirname "$0")/.."

NB=${NATBRIDGE:-target/release/natbridge}
OUT=${OUT:-$(mktemp -d /tmp/natbridge-netns.XXXXXX)}
QUICK=${QUICK:-0}
ROUNDS=${ROUNDS:-2}
LADDER=${LADDER:-2000 10000 25000 40000 60000 sat}
SAT_RATE=${SAT_RATE:-2000}
DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NAPI_DEFER_US=${NAPI_DEFER_US:-0}
WORLD_QDISC=${WORLD_QDISC:-pfifo limit 1000}
CONFIGS=${CONFIGS:-natbridge-xdp natbridge-off coturn}
BPF_STATS=${BPF_STATS:-0}
ROUTER=${ROUTER:-0}
CAPACITY=${CAPACITY:-0}
PEER6=${PEER6:-0}
INJECT_RATE=${INJECT_RATE:-20}
WARM=${WARM:-3}
WINDOW=${WINDOW:-5}
NS_PREFIX=${NS_PREFIX:-nbb}
NET=${NET:-10.79.0}
CLIENTS=100
SIZE=160
if [ "$QUICK" = 1 ]; then
    ROUNDS=1; LADDER="2000 sat"; DURATION=2
fi

NS_S=$NS_PREFIX-srv
NS_W=$NS_PREFIX-world
NS_R=$NS_PREFIX-rtr
IF_S=nbbs0
IF_W=nbbw0
IF_RW=nbbr0 # the router's end towards the world
IF_RS=nbbr1 # and towards the server
SRV_IP=$NET.1
CLIENT_IP=$NET.2
PEER_IP=$NET.3
SRV_IP6=fd79::1
if [ "$PEER6" = 1 ]; then PEER_IP=fd79::3; fi
PORT=3478
HTTP_PORT=18095
SECRET=netns-secret-0123456789
REALM=bench.local
mkdir -p "$OUT"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'compare-netns.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Prerequisites

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, XDP)"
for tool in ip ethtool clang turnserver taskset node; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
if [ ! -x "$NB" ]; then
    log "building natbridge (release)"
    cargo build --release
fi
NB=$(realpath "$NB")
for ns in "$NS_S" "$NS_W" "$NS_R"; do
    [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists already (not ours: delete it, or set NS_PREFIX)"
done

# ---------------------------------------------------------------------------
# Clean-up: only what this script started and created.

SERVER_PID=
CREATED_NS=()
STATS_WAS=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    for ns in "${CREATED_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    [ -z "$STATS_WAS" ] || sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$BPF_STATS" = 1 ]; then
    command -v bpftool >/dev/null 2>&1 || die "BPF_STATS=1 needs bpftool"
    STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
    sysctl -qw kernel.bpf_stats_enabled=1
fi

# ---------------------------------------------------------------------------
# Topology

cat >"$OUT/xdp-pass.c" <<'EOF'
#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int pass(struct xdp_md *ctx) { return XDP_PASS; }
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
EOF
clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c "$OUT/xdp-pass.c" -o "$OUT/xdp-pass.o"

# (Not for background jobs: a function run with & is a subshell, and its pid
# is not the server's. `ip netns exec` execs, so it keeps the pid.)
in_s() { ip netns exec "$NS_S" "$@"; }
in_w() { ip netns exec "$NS_W" "$@"; }

# The thread ids of an interface's NAPI poller (napi/IF-N): the kernel makes a
# new one whenever XDP is attached to a veth end that had none.
napi_tids() {
    local t
    for t in /proc/[0-9]*; do
        case "$(cat "$t/comm" 2>/dev/null)" in "napi/$1-"*) echo "${t#/proc/}" ;; esac
    done | paste -sd, -
}

# pin_napi IF CPU: pins its NAPI thread(s) to CPU and prints their ids.
pin_napi() {
    local tids tid
    tids=$(napi_tids "$1")
    [ -n "$tids" ] || die "no NAPI thread for $1 (threaded NAPI off, or no XDP program on it)"
    for tid in ${tids//,/ }; do taskset -pc "$2" "$tid" >/dev/null; done
    echo "$tids"
}

prog_stats() { # "runs ns" of the XDP program on the server end, by its id
    local id
    id=$(ip -n "$NS_S" -d link show "$IF_S" | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p')
    [ -n "$id" ] || { echo "0 0"; return; }
    bpftool prog show id "$id" | sed -n 's/.*run_time_ns \([0-9]*\) run_cnt \([0-9]*\).*/\2 \1/p' | grep . || echo "0 0"
}

xdp_of() { ip -n "$NS_S" -d link show "$IF_S" | sed -n 's/.*prog\/xdp id [0-9]* name \([^ ]*\).*/\1/p'; }

pass_on_server() { # attaches XDP_PASS to the server end (if nothing is attached)
    [ -n "$(xdp_of)" ] || ip -n "$NS_S" link set dev "$IF_S" xdpdrv obj "$OUT/xdp-pass.o" sec xdp
}

ip netns add "$NS_S"; CREATED_NS+=("$NS_S")
ip netns add "$NS_W"; CREATED_NS+=("$NS_W")
if [ "$ROUTER" = 1 ]; then
    log "topology: $NS_S ($IF_S $SRV_IP) <-veth-> $NS_R ($IF_RS | XDP_REDIRECT | $IF_RW) <-veth-> $NS_W ($IF_W $CLIENT_IP clients, $PEER_IP peer)"
    ip netns add "$NS_R"; CREATED_NS+=("$NS_R")
    ip link add "$IF_S" netns "$NS_S" type veth peer name "$IF_RS" netns "$NS_R"
    ip link add "$IF_W" netns "$NS_W" type veth peer name "$IF_RW" netns "$NS_R"
    ip -n "$NS_R" link set lo up
    ip -n "$NS_R" link set "$IF_RS" up
    ip -n "$NS_R" link set "$IF_RW" up
    # A two-port bridge in XDP (bench/xdp/hop.c).
    rs=$(ip netns exec "$NS_R" cat "/sys/class/net/$IF_RS/ifindex")
    rw=$(ip netns exec "$NS_R" cat "/sys/class/net/$IF_RW/ifindex")
    clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -DTO_WORLD="$rw" -DTO_SERVER="$rs" \
        -c bench/xdp/hop.c -o "$OUT/xdp-hop.o"
    for dev in "$IF_RS" "$IF_RW"; do
        ip -n "$NS_R" link set dev "$dev" xdpdrv obj "$OUT/xdp-hop.o" sec xdp
        ip netns exec "$NS_R" sh -c "echo 1 > /sys/class/net/$dev/threaded"
    done
else
    log "topology: $NS_S ($IF_S $SRV_IP) <-veth-> $NS_W ($IF_W $CLIENT_IP clients, $PEER_IP peer)"
    ip link add "$IF_S" netns "$NS_S" type veth peer name "$IF_W" netns "$NS_W"
fi
ip -n "$NS_S" addr add "$SRV_IP/24" dev "$IF_S"
ip -n "$NS_W" addr add "$CLIENT_IP/24" dev "$IF_W"
if [ "$PEER6" = 1 ]; then
    ip -n "$NS_S" addr add "$SRV_IP6/64" dev "$IF_S" nodad
    ip -n "$NS_W" addr add "$PEER_IP/64" dev "$IF_W" nodad
else
    ip -n "$NS_W" addr add "$PEER_IP/24" dev "$IF_W"
fi
for ns in "$NS_S" "$NS_W"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set "$IF_S" up
ip -n "$NS_W" link set "$IF_W" up
# XDP_TX frames from the server end are taken only by a peer that runs an
# XDP program (its NAPI); the world end always runs one: XDP_PASS, or the
# reflector (which passes everything while it is off).
if [ "$CAPACITY" = 1 ]; then
    peer_be=0
    if [ "$PEER6" != 1 ]; then
        peer_be=$(printf '0x%02x%02x%02x%02x' $(echo "$PEER_IP" | tr . ' ' | awk '{ print $4, $3, $2, $1 }'))
    fi
    clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -DPEER_IP_BE="$peer_be" \
        -c bench/xdp/reflect.c -o "$OUT/xdp-reflect.o"
    ip -n "$NS_W" link set dev "$IF_W" xdpdrv obj "$OUT/xdp-reflect.o" sec xdp
    in_s ethtool -K "$IF_S" tx off >/dev/null
else
    ip -n "$NS_W" link set dev "$IF_W" xdpdrv obj "$OUT/xdp-pass.o" sec xdp
fi
pass_on_server
# A veth sender leaves a partial (offload) UDP checksum, which a real NIC
# would complete: the world side computes full ones. The server side keeps
# its offload, as it would on a NIC.
in_w ethtool -K "$IF_W" tx off >/dev/null
if [ "$ROUTER" = 1 ]; then in_s ethtool -K "$IF_S" tx off >/dev/null; fi
if [ "$WORLD_QDISC" != noqueue ]; then
    # shellcheck disable=SC2086 # the qdisc and its options are words
    in_w tc qdisc replace dev "$IF_W" root $WORLD_QDISC
fi
# Threaded NAPI: receive processing in a kernel thread that can be pinned and
# measured, instead of softirq on whichever CPU transmitted.
in_s sh -c "echo 1 > /sys/class/net/$IF_S/threaded"
in_w sh -c "echo 1 > /sys/class/net/$IF_W/threaded"
W_NAPI=$(pin_napi "$IF_W" "$LOAD_CPU")
if [ "$ROUTER" = 1 ]; then
    # The hop is the network's, not the server's: counted with the world end.
    W_NAPI="$W_NAPI,$(pin_napi "$IF_RW" "$LOAD_CPU"),$(pin_napi "$IF_RS" "$LOAD_CPU")"
fi
for _ in $(seq 30); do
    in_w ping -c1 -W1 "$SRV_IP" >/dev/null 2>&1 && break
    sleep 0.2
done

# ---------------------------------------------------------------------------
# Servers, each started fresh in the server namespace on SERVER_CPU.

SERVER_NAME=
start_server() { # config round-tag
    local cfg=$1 tag=$2
    SERVER_NAME=$cfg
    case "$cfg" in
    natbridge-xdp|natbridge-off)
        local mode=off
        if [ "$cfg" = natbridge-xdp ]; then
            mode=on
            # natbridge attaches its own program; the XDP_PASS one must go.
            ip -n "$NS_S" link set dev "$IF_S" xdpdrv off
        else
            pass_on_server
        fi
        cat >"$OUT/$cfg.toml" <<EOF
[turn]
listen = ["0.0.0.0:$PORT"]
realm = "$REALM"
relay_ip = "$SRV_IP"
relay_ipv6 = "$([ "$PEER6" = 1 ] && echo "$SRV_IP6" || echo none)"
relay_port_min = 61000
relay_port_max = 65535
workers = 1
xdp = "$mode"
max_allocations = 20000
user_quota = 100000
unauth_replies_per_ip = 0
[auth]
secrets = ["$SECRET"]
[peers]
allow = ["$NET.0/24", "fd79::/64"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
EOF
        ip netns exec "$NS_S" taskset -c "$SERVER_CPU" "$NB" serve --config "$OUT/$cfg.toml" >"$OUT/$tag.log" 2>&1 &
        SERVER_PID=$!
        ;;
    coturn)
        pass_on_server
        ip netns exec "$NS_S" taskset -c "$SERVER_CPU" turnserver -n \
            -L "$SRV_IP" --listening-port="$PORT" --relay-ip="$SRV_IP" \
            --min-port=61000 --max-port=65535 \
            --use-auth-secret --static-auth-secret="$SECRET" --realm="$REALM" \
            --allowed-peer-ip="$NET.0-$NET.255" $([ "$PEER6" = 1 ] && echo "--relay-ip=$SRV_IP6 --allowed-peer-ip=fd79::1-fd79::ffff") \
            --no-tls --no-dtls --no-cli \
            --relay-threads=1 --log-file="$OUT/$tag.log" --simple-log --no-stdout-log \
            --pidfile="$OUT/coturn.pid" >/dev/null 2>&1 &
        SERVER_PID=$!
        ;;
    esac
    wait_turn
    case "$(cat "/proc/$SERVER_PID/comm")" in natbridge|turnserver) ;; *) die "pid $SERVER_PID is not the server" ;; esac
    if [ "$cfg" = natbridge-xdp ]; then
        grep -q 'XDP fast path attached.*mode="native"' "$OUT/$tag.log" ||
            die "the XDP fast path did not attach in native mode (see $OUT/$tag.log)"
        [ "$(xdp_of)" != pass ] && [ -n "$(xdp_of)" ] || die "natbridge's XDP program is not on $IF_S"
    else
        [ "$(xdp_of)" = pass ] || die "XDP_PASS is not on $IF_S for $cfg"
    fi
    S_NAPI=$(pin_napi "$IF_S" "$SERVER_CPU")
    in_s sh -c "echo $((NAPI_DEFER_US * 1000)) > /sys/class/net/$IF_S/gro_flush_timeout &&
        echo $((NAPI_DEFER_US > 0 ? 1 : 0)) > /sys/class/net/$IF_S/napi_defer_hard_irqs"
}

stop_server() { # SIGTERM, then SIGKILL after 5 s (natbridge drains while allocations remain)
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    sleep 0.5
}

# Ready when one authenticated allocation succeeds (10 s at most).
wait_turn() {
    for _ in $(seq 50); do
        if in_w "$NB" bench turn --server "$SRV_IP:$PORT" --secret "$SECRET" --allocate-only \
            --clients 1 --max-allocations 1 --duration 1 --timeout 0.5 --json >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "$SERVER_NAME exited at start (see $OUT)"
        sleep 0.2
    done
    die "$SERVER_NAME did not answer on $SRV_IP:$PORT"
}

# ---------------------------------------------------------------------------
# Cross-checks around each run (written next to the report as NAME.extra):
# the server CPU's busy time in /proc/stat, the server and NAPI threads' CPU
# over the whole run, UDP datagrams the server namespace's stack received,
# and the packets natbridge's usage records count.

ticks() { # utime+stime of pids/tids (comma-separated), summed
    local t
    for t in ${1//,/ }; do sed 's/.*) //' "/proc/$t/stat" 2>/dev/null || true; done |
        awk '{ s += $12 + $13 } END { print s + 0 }'
}
cpu_busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
udp_in() { # UDP datagrams the server namespace's stack received, both families
    echo $(( $(in_s awk '/^Udp:/ { n++ } /^Udp:/ && n == 2 { print $2 }' /proc/net/snmp) +
        $(in_s awk '$1 == "Udp6InDatagrams" { print $2 }' /proc/net/snmp6) ))
}
# Where packets were dropped, as "name value" lines: UDP socket buffers
# (RcvbufErrors; SndbufErrors, which on veth means the other end's ring was
# full) in each namespace, and each veth end's dropped counters (a full ring
# on the receiving end shows as tx dropped of the sender, and XDP_TX frames
# the world end could not take as its rx dropped).
drops() {
    in_s awk '/^Udp:/ { n++ } /^Udp:/ && n == 2 { print "srv_rcvbuf", $6; print "srv_sndbuf", $7 }' /proc/net/snmp
    in_w awk '/^Udp:/ { n++ } /^Udp:/ && n == 2 { print "world_rcvbuf", $6; print "world_sndbuf", $7 }' /proc/net/snmp
    ip -n "$NS_S" -s link show "$IF_S" | awk '/RX:/ { getline; print "srv_if_rx_dropped", $4 } /TX:/ { getline; print "srv_if_tx_dropped", $4 }'
    ip -n "$NS_W" -s link show "$IF_W" | awk '/RX:/ { getline; print "world_if_rx_dropped", $4 } /TX:/ { getline; print "world_if_tx_dropped", $4 }'
    in_w tc -s qdisc show dev "$IF_W" | awk '/dropped/ { sub(",", "", $7); d += $7 } END { print "world_qdisc_dropped", d + 0 }'
}
usage_packets() { # packets_to_peer + packets_to_client of every usage line so far
    { grep -o 'packets_to_peer=[0-9]*\|packets_to_client=[0-9]*' "$1" 2>/dev/null || true; } |
        awk -F= '{ s += $2 } END { print s + 0 }'
}

run_point() { # config point round
    local cfg=$1 point=$2 round=$3 rate name
    name="netns-$cfg-$point-r$round"
    if [ "$point" = sat ]; then rate=$SAT_RATE; else rate=$((point / CLIENTS)); fi
    start_server "$cfg" "$name"
    local c0 s0 n0 w0 u0 g0
    c0=$(cpu_busy "$SERVER_CPU"); s0=$(ticks "$SERVER_PID"); n0=$(ticks "$S_NAPI")
    w0=$(ticks "$W_NAPI"); u0=$(udp_in); g0=$(usage_packets "$OUT/$name.log")
    drops >"$OUT/$name.drops0"
    local p0="0 0"
    [ "$BPF_STATS" = 1 ] && p0=$(prog_stats)
    in_w taskset -c "$LOAD_CPU" timeout $((DURATION + 60)) "$NB" bench turn \
        --server "$SRV_IP:$PORT" --peer-ip "$PEER_IP" --secret "$SECRET" \
        --clients "$CLIENTS" --rate "$rate" --size "$SIZE" --duration "$DURATION" --drain 1 \
        --server-pid "$SERVER_PID" --server-threads "$S_NAPI" \
        --json-out "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 ||
        { cat "$OUT/$name.txt" >&2; die "bench $name failed"; }
    kill -0 "$SERVER_PID" 2>/dev/null || die "$cfg died during $name"
    local p1="0 0"
    [ "$BPF_STATS" = 1 ] && p1=$(prog_stats)
    # The NAPI thread must be the one measured from start to end.
    [ "$(napi_tids "$IF_S")" = "$S_NAPI" ] || die "the NAPI thread of $IF_S changed during $name"
    sleep 0.5 # usage records of the deleted allocations
    {
        echo "cpu_busy_ticks=$(( $(cpu_busy "$SERVER_CPU") - c0 ))"
        echo "server_ticks=$(( $(ticks "$SERVER_PID") - s0 ))"
        echo "napi_ticks=$(( $(ticks "$S_NAPI") - n0 ))"
        echo "world_napi_ticks=$(( $(ticks "$W_NAPI") - w0 ))"
        echo "udp_in=$(( $(udp_in) - u0 ))"
        echo "usage_packets=$(( $(usage_packets "$OUT/$name.log") - g0 ))"
        echo "xdp=$(xdp_of)"
        if [ "$BPF_STATS" = 1 ]; then
            echo "xdp_prog_runs=$(( ${p1% *} - ${p0% *} ))"
            echo "xdp_prog_ns=$(( ${p1#* } - ${p0#* } ))"
        fi
        drops | awk 'NR == FNR { before[$1] = $2; next } { print $1 "=" $2 - before[$1] }' "$OUT/$name.drops0" -
    } >"$OUT/$name.extra"
    stop_server
    grep -E 'packets:|rates:|server pid|of which' "$OUT/$name.txt" | sed 's/^/    /' >&2 || true
    if [ "$cfg" = natbridge-xdp ]; then
        # Attached is not enough: most relayed packets must have bypassed the
        # server namespace's UDP stack.
        node -e '
            const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
            const udp = Number(process.argv[2]), relayed = r.packets_at_peer + r.packets_received;
            if (relayed > 0 && udp > 0.2 * relayed) {
                console.error(`compare-netns.sh: fast path attached but ${udp} of ${relayed} relayed packets went through the UDP stack`);
                process.exit(1);
            }' "$OUT/$name.json" "$(sed -n 's/^udp_in=//p' "$OUT/$name.extra")" ||
            die "the XDP fast path did not relay in $name"
    fi
}

# ---------------------------------------------------------------------------
# Capacity (CAPACITY=1)

reflector_map() { # the reflector's map id
    local prog
    prog=$(ip -n "$NS_W" -d link show "$IF_W" | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p')
    bpftool prog show id "$prog" -j | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).map_ids[0]))'
}
reflector_set() { bpftool map update id "$REFLECTOR" key 0 0 0 0 value "$1" 0 0 0 0 0 0 0; }
reflected() {
    bpftool map lookup id "$REFLECTOR" key 1 0 0 0 -j |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);const b=(v.value??v.formatted?.value);console.log(Array.isArray(b)?b.reduceRight((a,x)=>a*256+Number(x),0):Number(b))})'
}

run_capacity() { # config round
    local cfg=$1 round=$2 name bench_pid r0 r1 s0 s1 n0 n1 w0 w1 c0 c1 l0 l1 t0 t1
    name="capacity-$cfg-r$round"
    start_server "$cfg" "$name"
    reflector_set 1
    in_w taskset -c "$LOAD_CPU" "$NB" bench turn \
        --server "$SRV_IP:$PORT" --peer-ip "$PEER_IP" --secret "$SECRET" \
        --clients "$CLIENTS" --rate "$INJECT_RATE" --size "$SIZE" --duration $((WARM + WINDOW + 2)) --drain 0 \
        --json-out "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 &
    bench_pid=$!
    sleep "$WARM"
    r0=$(reflected); s0=$(ticks "$SERVER_PID"); n0=$(ticks "$S_NAPI"); w0=$(ticks "$W_NAPI")
    c0=$(cpu_busy "$SERVER_CPU"); l0=$(cpu_busy "$LOAD_CPU"); t0=$(date +%s.%N)
    sleep "$WINDOW"
    r1=$(reflected); s1=$(ticks "$SERVER_PID"); n1=$(ticks "$S_NAPI"); w1=$(ticks "$W_NAPI")
    c1=$(cpu_busy "$SERVER_CPU"); l1=$(cpu_busy "$LOAD_CPU"); t1=$(date +%s.%N)
    reflector_set 0
    wait "$bench_pid" 2>/dev/null || true
    kill -0 "$SERVER_PID" 2>/dev/null || die "$cfg died during $name"
    stop_server
    awk -v cfg="$cfg" -v round="$round" -v r=$((r1 - r0)) -v t0="$t0" -v t1="$t1" \
        -v s=$((s1 - s0)) -v n=$((n1 - n0)) -v w=$((w1 - w0)) -v c=$((c1 - c0)) -v l=$((l1 - l0)) 'BEGIN {
        t = t1 - t0; pps = r / t; cpu = (s + n) / 100
        printf "| %s | %d | %.0f | %.0f %% (%.0f %% process + %.0f %% NAPI) | %.0f %% | %.0f %% | %.0f %% | %.2f |\n",
            cfg, round, pps, 100 * cpu / t, s / t, n / t, 100 * c / 100 / t, 100 * w / 100 / t, 100 * l / 100 / t, cpu / (r / 1e6)
    }' | tee -a "$OUT/capacity.md" >&2
}

{
    echo "start: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
    echo "natbridge: $("$NB" --version) ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "coturn: $(turnserver --version 2>/dev/null | head -1 || true)"
    echo "ladder: $LADDER (sat = $CLIENTS x $SAT_RATE pps); $DURATION s per run; $ROUNDS rounds; NAPI_DEFER_US=$NAPI_DEFER_US; world qdisc: $WORLD_QDISC; router hop: $([ "$ROUTER" = 1 ] && echo "yes (XDP_REDIRECT)" || echo no); capacity mode: $CAPACITY; peer: $PEER_IP"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2
log "results in $OUT"

if [ "$CAPACITY" = 1 ]; then
    REFLECTOR=$(reflector_map)
    [ -n "$REFLECTOR" ] || die "no reflector map"
    {
        echo "capacity: $CLIENTS clients injecting $INJECT_RATE pps each; window $WINDOW s after $WARM s"
        echo
        echo "| server | round | relayed pps | server CPU (process + NAPI thread) | server CPU busy (/proc/stat) | world NAPI thread | load CPU busy (/proc/stat) | server CPU s per million relayed |"
        echo "|---|---|---|---|---|---|---|---|"
    } >"$OUT/capacity.md"
    read -ra CONFIG_LIST <<<"$CONFIGS"
    for round in $(seq "$ROUNDS"); do
        for cfg in "${CONFIG_LIST[@]}"; do
            log "capacity, round $round/$ROUNDS: $cfg"
            run_capacity "$cfg" "$round"
        done
    done
    echo "end: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
    cat "$OUT/capacity.md"
    exit 0
fi

# ---------------------------------------------------------------------------


read -ra CONFIG_LIST <<<"$CONFIGS"
for round in $(seq "$ROUNDS"); do
    # Interleaved: every point runs all the servers back to back, and the
    # order rotates between rounds.
    shift_by=$(( (round - 1) % ${#CONFIG_LIST[@]} ))
    order="${CONFIG_LIST[*]:shift_by} ${CONFIG_LIST[*]:0:shift_by}"
    for point in $LADDER; do
        for cfg in $order; do
            log "round $round/$ROUNDS, $point pps offered: $cfg (load $(cut -d' ' -f1 /proc/loadavg))"
            run_point "$cfg" "$point" "$round"
        done
    done
done

echo "end: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
log "summary"
node bench/summarize-netns.mjs "$OUT" | tee "$OUT/summary.md"
