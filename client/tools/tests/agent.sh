#!/usr/bin/env bash
# iotc-agent: the JSON-lines driver the scenario runner and the client
# validator use.  Against a mosquitto on a port the OS picked: connect,
# subscribe, three QoS 1 publishes received in order, a bad line reported
# with its number, quit; and, with nothing listening, the offline queue
# dropping the oldest and quit closing what is left.  The events are parsed
# with python3, as the runner parses them.
set -uo pipefail
B=${B:-build}
agent="$B/bin/iotc-agent"
tmp=$(mktemp -d /tmp/agent-test.XXXXXX)
pids=()
passed=0
failed=0

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for ((i = 0; i < 100; i++)); do
        port_open "$1" && return 0
        sleep 0.1
    done
    return 1
}

# run NAME: the agent reads $tmp/NAME.in and writes $tmp/NAME.out; its exit
# code goes to $tmp/NAME.rc.  A hung agent is killed after 30 s.
run() {
    timeout 30 "$agent" <"$tmp/$1.in" >"$tmp/$1.out" 2>"$tmp/$1.err"
    echo $? >"$tmp/$1.rc"
}

# check NAME RUN EXPR: the python3 expression EXPR holds over the events of
# run RUN.  In EXPR: evs (every event, in order), ev(kind, **fields) (the
# events of that kind whose fields have those values), rc (the exit code).
check() {
    local name=$1 r=$2 expr=$3
    if python3 - "$tmp/$r.out" "$(cat "$tmp/$r.rc")" "$expr" 2>"$tmp/py.err" <<'EOF'; then
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rc = int(sys.argv[2])
def ev(kind, **kw):
    return [e for e in evs if e["ev"] == kind and all(e.get(k) == v for k, v in kw.items())]
def before(a, b):
    """The first event matching a comes before the first matching b."""
    ia = next(i for i, e in enumerate(evs) if all(e.get(k) == v for k, v in a.items()))
    ib = next(i for i, e in enumerate(evs) if all(e.get(k) == v for k, v in b.items()))
    return ia < ib
sys.exit(0 if eval(sys.argv[3]) else 1)
EOF
        pass "$name"
    else
        fail "$name: $(cat "$tmp/py.err")"
        sed 's/^/     | /' "$tmp/$r.out" >&2
    fi
}

[ -x "$agent" ] || { echo "agent.sh: $agent not built" >&2; exit 1; }
command -v mosquitto >/dev/null || { echo "agent.sh: mosquitto is not installed (ci/install-deps.sh installs it)" >&2; exit 1; }

# ---- against mosquitto ------------------------------------------------------------
mport=$(free_port)
cat >"$tmp/mosquitto.conf" <<EOF
persistence false
listener $mport 127.0.0.1
allow_anonymous true
EOF
mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
pids+=($!)
if wait_port "$mport"; then
    # The sleeps let each step finish: the agent has no "wait for" command,
    # that is the runner's job.  Line 5 is the bad one.
    cat >"$tmp/pubsub.in" <<EOF
{"cmd":"connect","endpoint":"127.0.0.1","port":$mport,"tls":false,"client_id":"agent-test"}
{"cmd":"sleep","ms":1000}
{"cmd":"subscribe","id":"s1","filter":"agent/test/#","qos":1}
{"cmd":"sleep","ms":500}
{"cmd":"publish","id":"p", "topic":
{"cmd":"publish","id":"p","topic":"agent/test/x","payload":"m{i}","qos":1,"count":3}
{"cmd":"frobnicate"}
{"cmd":"sleep","ms":1000}
{"cmd":"stats","id":"st"}
{"cmd":"quit"}
EOF
    run pubsub
    check "every line is one JSON object with t and ev, t never going back" pubsub \
        'all(isinstance(e["t"], float) and isinstance(e["ev"], str) for e in evs) and [e["t"] for e in evs] == sorted(e["t"] for e in evs)'
    check "connect (tls false): connecting, then connection_success" pubsub \
        'len(ev("connection_success", session_present=False)) == 1 and before({"ev": "connecting"}, {"ev": "connection_success"})'
    check "subscribe: accepted, then done status 0 granted 1" pubsub \
        'ev("done", id="s1", status=0, status_name="IOTC_OK", granted=1) and before({"ev": "accepted", "id": "s1"}, {"ev": "done", "id": "s1"})'
    check "publish count 3 QoS 1: three accepted, three done status 0" pubsub \
        'all(ev("accepted", id="p#%d" % i) and ev("done", id="p#%d" % i, status=0, status_name="IOTC_OK") and before({"ev": "accepted", "id": "p#%d" % i}, {"ev": "done", "id": "p#%d" % i}) for i in (1, 2, 3))'
    check "the three messages arrive once each, in order, QoS 1" pubsub \
        '[(m["topic"], m["payload"], m["qos"], m["retain"]) for m in ev("message")] == [("agent/test/x", "m%d" % i, 1, False) for i in (1, 2, 3)]'
    check "bad JSON: an error naming line 5; unknown cmd: line 7" pubsub \
        'any(e["reason"].startswith("line 5:") for e in ev("error", line=5)) and any("frobnicate" in e["reason"] for e in ev("error", line=7))'
    check "stats: connected, 3 messages, nothing queued" pubsub \
        'ev("stats", id="st", connected=True, messages=3, queued=0, inflight=0, dropped=0)'
    check "quit: bye last, exit 0" pubsub 'evs[-1]["ev"] == "bye" and rc == 0'

    # Payloads that are not text (a NUL, a byte that is not UTF-8, a
    # surrogate) come as payload_b64; UTF-8 text as payload.  Retained, so
    # they are there when the agent subscribes.
    printf 'caf\xc3\xa9' >"$tmp/t.dat"
    printf 'a\x00b' >"$tmp/nul.dat"
    printf '\xff\xfe' >"$tmp/ff.dat"
    printf '\xed\xa0\x80' >"$tmp/sur.dat"
    for n in t nul ff sur; do
        mosquitto_pub -p "$mport" -t "agent/bin/$n" -f "$tmp/$n.dat" -r -q 1
    done
    cat >"$tmp/binary.in" <<EOF
{"cmd":"connect","endpoint":"127.0.0.1","port":$mport,"tls":false,"client_id":"agent-bin"}
{"cmd":"sleep","ms":1000}
{"cmd":"subscribe","id":"s","filter":"agent/bin/+","qos":1}
{"cmd":"sleep","ms":1000}
{"cmd":"quit"}
EOF
    run binary
    check "payloads: UTF-8 text as payload, anything else as payload_b64" binary \
        '{m["topic"].split("/")[-1]: m.get("payload", "b64:" + m.get("payload_b64", "")) for m in ev("message")} == {"t": "caf\u00e9", "nul": "b64:YQBi", "ff": "b64://4=", "sur": "b64:7aCA"}'
else
    fail "mosquitto did not start: $(cat "$tmp/mosquitto.log")"
fi

# ---- the offline queue, with nothing listening ----------------------------------------
dead=$(free_port)
cat >"$tmp/queue.in" <<EOF
{"cmd":"connect","endpoint":"127.0.0.1","port":$dead,"tls":false,"queue":2,"drop":"oldest","reconnect_min_ms":100}
{"cmd":"publish","id":"p","topic":"agent/test/q","payload":"q{i}","qos":1,"count":4}
{"cmd":"sleep","ms":300}
{"cmd":"quit"}
EOF
run queue
check "queue 2 drop oldest, 4 publishes offline: p#1 and p#2 done QUEUE_DROPPED" queue \
    'all(ev("done", id=i, status=-3, status_name="IOTC_ERR_QUEUE_DROPPED") for i in ("p#1", "p#2")) and len(ev("accepted")) == 4'
check "the connection fails and is retried (reconnect_min_ms 100)" queue \
    'len(ev("connection_failure", status_name="IOTC_ERR_CONNECT")) >= 2'
check "quit: p#3 and p#4 done CLOSED, then bye, exit 0" queue \
    'all(ev("done", id=i, status=-7, status_name="IOTC_ERR_CLOSED") for i in ("p#3", "p#4")) and before({"id": "p#4", "ev": "done"}, {"ev": "bye"}) and len(ev("done")) == 4 and evs[-1]["ev"] == "bye" and rc == 0'

# ---- EOF is quit; a bad connect is an error event, not an exit ---------------------------
printf '%s\n' '{"cmd":"connect","port":1883}' '{"cmd":"connect","endpoint":"h","jitter":"sometimes"}' >"$tmp/eof.in"
run eof
check "connect without endpoint or with a bad option: error events; EOF: bye, exit 0" eof \
    'ev("error", cmd="connect", status_name="IOTC_ERR_INVALID_ARG", line=1) and any("jitter" in e["reason"] for e in ev("error", line=2)) and evs[-1]["ev"] == "bye" and rc == 0'

echo "agent test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
