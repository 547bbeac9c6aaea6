#!/usr/bin/env bash
# bench/broker.sh: iotsim against Debian's mosquitto, with one load generator
# (bench_broker, built on libmosquitto), in one run:
#   1. messages per second received by subscribers, QoS 0 and QoS 1, 64-byte
#      payloads, MQTT 3.1.1 over plain TCP: fan-in 4->1, fan-out 1->8, 8 pairs;
#   2. 5,000 concurrent mTLS connections (CONNECT/CONNACK, then idle) and the
#      broker's resident memory per connection (VmRSS after - before).
# iotsim runs with its per-connection throttles off (publish_rate, throughput,
# connect_interval_ms = 0) and every other limit and deviation at its default;
# mosquitto runs with its defaults plus what a private instance needs.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
#   bash bench/broker.sh
# Environment: IOTSIM, BENCH_BROKER (binaries; built when missing), BENCH_SECONDS
# (3), BENCH_WARMUP (0.5), BENCH_WINDOW (20), BENCH_ROUNDS (2), BENCH_CONNS (5000),
# BENCH_PARTS ("throughput conns": which parts run), KEEP=1 keeps the temporary
# directory (broker logs, configs).
# Exit status 0 whatever the figures; 1 if a broker crashed, misbehaved or a
# run could not happen.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IOTSIM=${IOTSIM:-$ROOT/build/bin/iotsim}
BENCH=${BENCH_BROKER:-$ROOT/build/bench-o2/bench/bench_broker}
SECS=${BENCH_SECONDS:-3}
WARMUP=${BENCH_WARMUP:-0.5}
WINDOW=${BENCH_WINDOW:-20}
NCONNS=${BENCH_CONNS:-5000}
ROUNDS=${BENCH_ROUNDS:-2}
PARTS=${BENCH_PARTS:-throughput conns}
for p in $PARTS; do
    case $p in throughput|conns) ;; *) echo "broker.sh: unknown part in BENCH_PARTS: $p" >&2; exit 2 ;; esac
done
want_part() { [[ " $PARTS " == *" $1 "* ]]; }
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}

T=$(mktemp -d /tmp/bench-broker.XXXXXX)
PIDS=()
STATUS=0

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "broker.sh: $*" >&2; exit 1; }

# Stops one process started here and forgets it.
stop() {
    local pid=$1 p keep=()
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---- prerequisites -----------------------------------------------------------
[ -x "$MOSQUITTO" ] || die "mosquitto is not installed (apt-get install mosquitto; ci/install-deps.sh does)"
command -v python3 >/dev/null || die "python3 is needed to read endpoint.json"
if [ ! -x "$IOTSIM" ]; then
    make -s -C "$ROOT" build/bin/iotsim >&2 || die "cannot build iotsim"
    IOTSIM=$ROOT/build/bin/iotsim
fi
if [ ! -x "$BENCH" ]; then
    # Until the Makefile links bench_broker with libmosquitto, build it here.
    BENCH=$T/bench_broker
    ${CC:-gcc} -O2 -g -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -o "$BENCH" "$ROOT/bench/bench_broker.c" \
        -lmosquitto -lssl -lcrypto -lpthread || die "cannot build bench_broker (libmosquitto-dev, libssl-dev)"
fi
# 5,000 connections need 5,000 descriptors in the brokers and in the client.
want_fds=$((NCONNS + 512))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    echo "broker.sh: open-file limit $(ulimit -n) < $want_fds: using $(( $(ulimit -n) - 512 )) connections" >&2
    NCONNS=$(( $(ulimit -n) - 512 ))
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
json_get() { # FILE KEY.PATH
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}
wait_port() { # PORT PID
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# ---- brokers -------------------------------------------------------------------
ST=$T/iotsim-state
cat >"$T/iotsim.json" <<'EOF'
{"limits": {"publish_rate": 0, "throughput": 0, "connect_interval_ms": 0}}
EOF

IOTSIM_PID=
start_iotsim() { # extra iotsim arguments
    rm -f "$ST/endpoint.json"
    "$IOTSIM" --state-dir "$ST" --ports auto --config "$T/iotsim.json" "$@" 2>>"$T/iotsim.err" &
    IOTSIM_PID=$!
    PIDS+=("$IOTSIM_PID")
    for _ in $(seq 200); do
        [ -s "$ST/endpoint.json" ] && return 0
        kill -0 "$IOTSIM_PID" 2>/dev/null || break
        sleep 0.05
    done
    tail -5 "$T/iotsim.err" >&2
    die "iotsim did not start"
}

MOSQ_PID=
MOSQ_TCP=
MOSQ_MTLS=
start_mosquitto() {
    MOSQ_TCP=$(free_port)
    MOSQ_MTLS=$(free_port)
    # `user`: as root, mosquitto would otherwise switch to the user "mosquitto",
    # which cannot read the key in the state directory.
    cat >"$T/mosquitto.conf" <<EOF
user $(id -un)
persistence false
allow_anonymous true
log_dest stderr
listener $MOSQ_TCP 127.0.0.1
listener $MOSQ_MTLS 127.0.0.1
cafile $ST/ca.crt
certfile $ST/server.crt
keyfile $ST/server.key
require_certificate true
EOF
    "$MOSQUITTO" -c "$T/mosquitto.conf" 2>>"$T/mosquitto.err" &
    MOSQ_PID=$!
    PIDS+=("$MOSQ_PID")
    wait_port "$MOSQ_TCP" "$MOSQ_PID" && wait_port "$MOSQ_MTLS" "$MOSQ_PID" && return 0
    tail -5 "$T/mosquitto.err" >&2
    die "mosquitto did not start"
}

# Was the broker still alive after a run?  Says so once if not.
alive() { # NAME PID
    kill -0 "$2" 2>/dev/null && return 0
    wait "$2" 2>/dev/null
    local rc=$?
    echo "broker.sh: $1 (pid $2) died: exit status $rc$([ $rc -gt 128 ] && echo " (signal $((rc - 128)))")" >&2
    tail -5 "$T/$1.err" >&2
    STATUS=1
    return 1
}

# ---- 1. throughput ------------------------------------------------------------------
if want_part throughput; then
start_iotsim --insecure-tcp
IOT_TCP=$(json_get "$ST/endpoint.json" ports.tcp)
start_mosquitto

mosq_version=$("$MOSQUITTO" -h 2>&1 | sed -n 's/^mosquitto version //p' | head -1)
libmosq_version=$(dpkg-query -W -f '${Version}' libmosquitto1 2>/dev/null || echo "?")
echo "== iotsim against mosquitto: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "iotsim: per-connection throttles SWITCHED OFF for these runs (limits.publish_rate = 0,"
echo "  limits.throughput = 0, limits.connect_interval_ms = 0); every other limit and deviation at"
echo "  its default (profile classic, max_inflight 100, lifecycle events on). No --log."
echo "mosquitto $mosq_version: defaults (max_inflight_messages 20, max_queued_messages 1000, logging of"
echo "  errors, warnings, notices and information to stderr, here a file), plus allow_anonymous true,"
echo "  persistence false and an mTLS listener."
echo "Load: bench_broker (libmosquitto $libmosq_version, MQTT 3.1.1, TCP_NODELAY, one thread per client),"
echo "  64-byte payloads, at most $WINDOW messages per publisher sent and not yet received;"
echo "  ${WARMUP} s warm-up, messages received by subscribers counted over ${SECS} s; best of $ROUNDS rounds"
echo "  taken in turns. CPU = the broker's CPU time over that window, % of one core. The load generator"
echo "  shares the machine."
echo
run_one() { # PORT PID SCENARIO QOS -> "rate cpu lost errors stalls" or "ERR status"
    local out rc
    out=$("$BENCH" tput --host 127.0.0.1 --port "$1" --pid "$2" --scenario "$3" --qos "$4" \
        --warmup "$WARMUP" --seconds "$SECS" --window "$WINDOW" 2>>"$T/bench.err")
    rc=$?
    if [ $rc -ne 0 ] || [[ $out != RESULT* ]]; then
        echo "ERR $rc"
        return
    fi
    echo "${out#RESULT }"
}
# ROUNDS rounds, the brokers taking turns (iotsim first in odd rounds): each
# broker keeps its best round, so that a noisy neighbour does not decide a ratio.
declare -A best lost stalls failed
notes=()
CASES="fanin:0 fanin:1 fanout:0 fanout:1 pairs:0 pairs:1"
for round in $(seq "$ROUNDS"); do
    for case_ in $CASES; do
        sc=${case_%:*}; qos=${case_#*:}
        if [ $((round % 2)) = 1 ]; then order="iotsim mosquitto"; else order="mosquitto iotsim"; fi
        for b in $order; do
            if [ $b = iotsim ]; then port=$IOT_TCP; pid=$IOTSIM_PID; else port=$MOSQ_TCP; pid=$MOSQ_PID; fi
            k=$b:$case_
            alive $b "$pid" || { failed[$k]=died; continue; }
            read -r -a r <<<"$(run_one "$port" "$pid" "$sc" "$qos")"
            alive $b "$pid"
            if [ "${r[0]}" = ERR ]; then
                failed[$k]="bench_broker exit status ${r[1]}"
                STATUS=1
                continue
            fi
            lost[$k]=$(( ${lost[$k]:-0} + r[2] ))
            stalls[$k]=$(( ${stalls[$k]:-0} + r[4] ))
            prev=${best[$k]:-}
            if [ -z "$prev" ] || [ "${r[0]}" -gt "${prev%% *}" ]; then best[$k]="${r[0]} ${r[1]}"; fi
        done
    done
done
printf '%-20s %13s %15s %7s %10s %10s  %s\n' scenario "iotsim msg/s" "mosquitto msg/s" ratio "iotsim CPU" "mosq. CPU" target
for case_ in $CASES; do
    sc=${case_%:*}; qos=${case_#*:}
    case $sc in fanin) label="fan-in 4->1";; fanout) label="fan-out 1->8";; pairs) label="8 pairs";; esac
    label="$label QoS $qos"
    for b in iotsim mosquitto; do
        k=$b:$case_
        [ -n "${failed[$k]:-}" ] && notes+=("$label: a $b run failed (${failed[$k]}); see below")
        [ "${lost[$k]:-0}" != 0 ] && notes+=("$label: $b lost ${lost[$k]} messages")
        [ "${stalls[$k]:-0}" != 0 ] && notes+=("$label: $b stalled ${stalls[$k]} times (50 ms without a delivery of a publisher's messages)")
    done
    bi=${best[iotsim:$case_]:-}; bm=${best[mosquitto:$case_]:-}
    if [ -z "$bi" ] || [ -z "$bm" ]; then
        printf '%-20s %13s %15s %7s %10s %10s  %s\n' "$label" "${bi%% *}" "${bm%% *}" - - - ERR
        continue
    fi
    read -r ri ci <<<"$bi"
    read -r rm_ cm <<<"$bm"
    ratio=$(awk -v a="$ri" -v b="$rm_" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    verdict=$(awk -v a="$ri" -v b="$rm_" 'BEGIN { print (a >= b ? "PASS" : "MISS") }')
    printf '%-20s %13s %15s %7s %9s%% %9s%%  %s\n' "$label" "$ri" "$rm_" "$ratio" "$ci" "$cm" "$verdict"
done
drops=$(grep -c 'Outgoing messages are being dropped' "$T/mosquitto.err")
[ "$drops" != 0 ] && notes+=("mosquitto logged \"Outgoing messages are being dropped\" $drops times")
for n in "${notes[@]}"; do echo "  note: $n"; done
[ -s "$T/bench.err" ] && sed 's/^/  bench_broker: /' "$T/bench.err" | sort | uniq -c | head -20
stop "$IOTSIM_PID"
stop "$MOSQ_PID"

fi # throughput
# ---- 2. concurrent mTLS connections ------------------------------------------------------
if want_part conns; then
echo
echo "$NCONNS concurrent mTLS connections (TLS with the device certificate, MQTT 3.1.1 CONNECT/CONNACK,"
echo "then held idle): broker VmRSS before and after, fresh broker processes."
printf '%-10s %10s %14s %13s %15s  %s\n' broker connected "RSS before KB" "RSS after KB" "KB/connection" notes
start_iotsim
IOT_MTLS=$(json_get "$ST/endpoint.json" ports.mtls)
CA=$(json_get "$ST/endpoint.json" ca_file)
CERT=$(json_get "$ST/endpoint.json" cert_file)
KEY=$(json_get "$ST/endpoint.json" key_file)
start_mosquitto
declare -A per
for b in iotsim mosquitto; do
    if [ $b = iotsim ]; then port=$IOT_MTLS; pid=$IOTSIM_PID; else port=$MOSQ_MTLS; pid=$MOSQ_PID; fi
    t0=$(date +%s.%N)
    out=$("$BENCH" conns --host 127.0.0.1 --port "$port" --pid "$pid" --ca "$CA" --cert "$CERT" --key "$KEY" \
        -n "$NCONNS" 2>"$T/conns-$b.err")
    rc=$?
    t1=$(date +%s.%N)
    alive $b "$pid"
    if [[ $out != RESULT* ]]; then
        printf '%-10s %10s\n' $b ERR
        sed 's/^/  /' "$T/conns-$b.err"
        STATUS=1
        continue
    fi
    read -r _ ok r0 r1 kb failed dropped <<<"$out"
    # Connections the broker closed no longer count in its RSS: no figure then.
    [ "$dropped" = 0 ] && [ "$ok" = "$NCONNS" ] && per[$b]=$kb || kb="($kb: invalid)"
    note=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f s", b - a }')
    [ "$failed" != 0 ] && note="$note, $failed failed"
    [ "$dropped" != 0 ] && note="$note, $dropped dropped by the broker"
    printf '%-10s %10s %14s %13s %15s  %s\n' $b "$ok" "$r0" "$r1" "$kb" "$note"
    [ $rc -ne 0 ] && { sed 's/^/  /' "$T/conns-$b.err"; STATUS=1; }
done
if [ -n "${per[iotsim]:-}" ] && [ -n "${per[mosquitto]:-}" ]; then
    awk -v a="${per[iotsim]}" -v b="${per[mosquitto]}" 'BEGIN {
        printf "memory per connection, iotsim / mosquitto: %.2f  %s\n", (b > 0 ? a / b : 0), (a <= b ? "PASS" : "MISS") }'
else
    echo "memory per connection, iotsim / mosquitto: no comparison (a broker's figure is missing or invalid)"
fi
stop "$IOTSIM_PID"
stop "$MOSQ_PID"
fi # conns
exit $STATUS
