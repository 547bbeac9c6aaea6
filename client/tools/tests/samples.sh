#!/usr/bin/env bash
# The samples (client/samples/) against one iotsim on ports the OS picked:
# usage errors (exit 2), pubsub's round trip, and shadow's three paths: a
# value typed on stdin is reported, a desired value set by someone else
# comes back as a delta and is reported, and a delta already pending at
# start is picked up by the initial get.  The shadow is checked with
# `iotc shadow get`, not only by what the sample prints.
#
# SAMPLES_VALGRIND=1 runs the samples under Valgrind memcheck (a leak or an
# error fails the run through the exit code) with longer waits.
set -uo pipefail
B=${B:-build}
iotc="$B/bin/iotc"
iotsim="$B/bin/iotsim"
pubsub="$B/bin/samples/pubsub"
shadow="$B/bin/samples/shadow"
tmp=$(mktemp -d /tmp/samples-test.XXXXXX)
pids=()
passed=0
failed=0

cleanup() {
    exec 5>&-
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=lib.bash
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
EXPECT_TIMEOUT=120 # a sample may run under Valgrind

run=()
ticks=100 # tenths of a second for each wait
if [ -n "${SAMPLES_VALGRIND:-}" ]; then
    run=(valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite)
    ticks=300
fi

# The output file $1 holds the text $2, or process $3 is gone.
said_or_gone() { grep -qsF -- "$2" "$1" || ! kill -0 "$3" 2>/dev/null; }
# Waits until the output $1 of process $3 holds the text $2; true if it does.
says() { wait_until "'$2'" "$ticks" said_or_gone "$1" "$2" "$3"; grep -qsF -- "$2" "$1"; }
gone() { ! kill -0 "$1" 2>/dev/null; }


for p in "$iotc" "$iotsim" "$pubsub" "$shadow"; do
    [ -x "$p" ] || { echo "samples.sh: $p not built (make all)" >&2; exit 1; }
done

# ---- usage: exit 2 ----------------------------------------------------------------
expect "pubsub: no endpoint" 2 'endpoint is required' -- "$pubsub"
expect "shadow: no flags" 2 '^shadow: .*required' -- "$shadow"
expect "shadow: no --thing_name" 2 '--thing_name' -- "$shadow" --endpoint h --cert c --key k
expect "shadow: no --endpoint" 2 '--endpoint' -- "$shadow" --thing_name t --cert c --key k
expect "shadow: no --cert/--key" 2 '--cert and --key' -- "$shadow" --endpoint h --thing_name t
expect "shadow: unknown flag" 2 '^shadow: --bogus' -- "$shadow" --bogus 1 --endpoint h
expect "shadow: flag without its value" 2 'without its value' -- "$shadow" --endpoint
expect "shadow: --help" 0 '--shadow_property' -- "$shadow" --help

# ---- iotsim -----------------------------------------------------------------------
sim="$tmp/sim"
"$iotsim" --ports auto --state-dir "$sim" >"$tmp/iotsim.log" 2>&1 &
pids+=("$!")
if ! wait_until "iotsim's endpoint.json" 300 test -f "$sim/endpoint.json"; then
    fail "iotsim did not write endpoint.json: $(cat "$tmp/iotsim.log")"
    echo "samples test: $passed passed, $failed failed"
    exit 1
fi
field() { python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[k]
print(v)' "$sim/endpoint.json" "$1"; }
# iotsim's server certificate names localhost: hostname verification passes.
conn=(--endpoint localhost --port "$(field ports.mtls)" --ca_file "$(field ca_file)"
    --cert "$(field cert_file)" --key "$(field key_file)")

# reported.color and whether the shadow has a delta, as "VALUE DELTA", e.g. "blue False".
shadow_state() {
    "$iotc" shadow get --sim "$sim" --thing "$1" --timeout 10 2>&1 | python3 -c 'import json, sys
try:
    s = json.load(sys.stdin)["state"]
    print(s.get("reported", {}).get("color"), "delta" in s)
except Exception as e:
    print("no shadow:", e)'
}
check_state() { # NAME THING WANT
    local got
    got=$(shadow_state "$2")
    if [ "$got" = "$3" ]; then pass "$1"; else fail "$1: iotc shadow get says '$got', want '$3'"; fi
}

# ---- pubsub: three messages out and back ------------------------------------------
out="$tmp/pubsub.out"
timeout 120 "${run[@]}" "$pubsub" "${conn[@]}" --topic samples/test/pubsub --count 3 >"$out" 2>&1
rc=$?
n=$(grep -c "^Received message from topic 'samples/test/pubsub': Hello World! \[[123]\]$" "$out")
if [ "$rc" -eq 0 ] && [ "$n" -eq 3 ] && grep -q '^3 message(s) received\.$' "$out"; then
    pass "pubsub --count 3: three messages came back, exit 0"
else
    fail "pubsub --count 3: exit $rc, $n received: $(cat "$out")"
fi

# ---- shadow: stdin held open on a FIFO ----------------------------------------------
fifo="$tmp/stdin"
mkfifo "$fifo"
out="$tmp/shadow.out"
# The shell opens the FIFO for the sample; both opens wait for each other.
timeout 180 "${run[@]}" "$shadow" "${conn[@]}" --thing_name T --client_id samples-shadow <"$fifo" >"$out" 2>&1 &
sh_pid=$!
pids+=("$sh_pid")
exec 5>"$fifo"
# A write to a sample that died must not kill this script with SIGPIPE.
type_line() { (printf '%s\n' "$1" >&5) 2>/dev/null; }

# A new thing: get is rejected (404) and the sample reports the default.
if says "$out" "Finished updating reported shadow value to 'off'." "$sh_pid"; then
    pass "shadow: no shadow yet: reported the default 'off'"
else
    fail "shadow: the initial get/report did not finish: $(cat "$out")"
fi

type_line blue
if says "$out" "Finished updating reported shadow value to 'blue'." "$sh_pid" &&
    grep -qF "Changed local shadow value to 'blue'." "$out"; then
    pass "shadow: a line on stdin was reported"
else
    fail "shadow: no report of 'blue': $(cat "$out")"
fi
check_state "shadow: iotc shadow get shows reported.color blue" T "blue False"

# Someone else (an app) sets desired: the delta comes, the sample reports it.
expect "shadow: iotc shadow update sets desired green" 0 '"version"' -- \
    "$iotc" shadow update --sim "$sim" --thing T --timeout 10 --state '{"state":{"desired":{"color":"green"}}}'
if says "$out" "Finished updating reported shadow value to 'green'." "$sh_pid" &&
    grep -qF "Received shadow delta event." "$out" &&
    grep -qF "Delta reports that desired value is 'green'. Changing local value..." "$out"; then
    pass "shadow: the delta was logged and green reported"
else
    fail "shadow: no delta handling for green: $(cat "$out")"
fi
check_state "shadow: reported.color green and no delta left" T "green False"

type_line quit
exec 5>&-
if wait_until "the shadow sample to quit" "$ticks" gone "$sh_pid"; then
    wait "$sh_pid"
    rc=$?
    if [ "$rc" -eq 0 ] && grep -qF "Disconnected." "$out"; then
        pass "shadow: quit ends with exit 0"
    else
        fail "shadow: after quit: exit $rc: $(cat "$out")"
    fi
else
    fail "shadow: still running after quit: $(cat "$out")"
fi

# ---- shadow: a pipe; the end of input ends it once the update is answered ---------
out="$tmp/shadow-eof.out"
printf 'purple\n' | timeout 120 "${run[@]}" "$shadow" "${conn[@]}" --thing_name T2 >"$out" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && grep -qF "Finished updating reported shadow value to 'purple'." "$out"; then
    pass "shadow: end of input: exit 0 after purple was reported"
else
    fail "shadow: piped purple: exit $rc: $(cat "$out")"
fi
check_state "shadow: reported.color purple" T2 "purple False"

# ---- shadow: a delta pending at start is taken from the get ------------------------
"$iotc" shadow update --sim "$sim" --thing T3 --timeout 10 \
    --state '{"state":{"desired":{"color":"yellow"},"reported":{"color":"off"}}}' >/dev/null 2>&1
out="$tmp/shadow-delta.out"
timeout 120 "${run[@]}" "$shadow" "${conn[@]}" --thing_name T3 </dev/null >"$out" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && grep -qF "Shadow contains delta value 'yellow'." "$out" &&
    grep -qF "Finished updating reported shadow value to 'yellow'." "$out"; then
    pass "shadow: the initial get's delta was reported"
else
    fail "shadow: pending delta at start: exit $rc: $(cat "$out")"
fi
check_state "shadow: reported.color yellow, no delta left" T3 "yellow False"

echo "samples test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
