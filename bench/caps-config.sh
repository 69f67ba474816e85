# Sourced by bench/caps.sh and bench/caps_ab.sh: the one natbridge config
# both measure, on loopback, one worker. caps_config CAPS(0|1) prints it;
# 1 adds the caps (HIGH_BPS, high enough that nothing is dropped). Needs
# PORT, HTTP_PORT, SECRET and HIGH_BPS set.
caps_config() {
    local extra=
    if [ "$1" = 1 ]; then
        extra=$(printf 'max_bps = %s\nuser_max_bps = %s' "$HIGH_BPS" "$HIGH_BPS")
    fi
    cat <<EOF2
[turn]
listen = ["127.0.0.1:$PORT"]
realm = "bench.local"
relay_ip = "127.0.0.1"
relay_port_min = 61000
relay_port_max = 65535
workers = 1
max_allocations = 20000
user_quota = 100000
unauth_replies_per_ip = 0
$extra
[auth]
secrets = ["$SECRET"]
[peers]
allow = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
EOF2
}
