#!/usr/bin/env bash
# `make run`: what the project is for, in one command (issue 5).  After the
# build: the codec against traffic captured from peers, then, side by side,
# every scenario, the conformance matrix and the client validator, each
# against iotsim instances of its own (ephemeral ports, temporary state
# directories, all stopped at the end).  Prints the tables and where the full
# reports are; exits non-zero if anything failed.   Usage: ci/run-demo.sh BUILD_DIR
set -uo pipefail
B=${1:-build}
report="$B/report"
rm -rf "$report"
mkdir -p "$report"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$(date +%s.%N)

echo "== 1. the codec against captured peer traffic"
fail=0
shopt -s nullglob
files=(client/tests/fixtures/*.mqtt)
for f in "${files[@]}"; do
  if ! "$B/bin/iotc-mqttdump" "$f" >>"$tmp/dump.txt"; then
    echo "run: $f: the codec refused a packet:" >&2
    grep ERROR "$tmp/dump.txt" | tail -3 >&2
    fail=1
  fi
done
packets=$(grep -cE '^(C|S) [A-Z]' "$tmp/dump.txt" || true)
echo "run: decoded $packets packets from ${#files[@]} captured sessions of mosquitto and paho"

# The three suites wait on timers and sockets far more than they compute,
# so they run at the same time; each writes its own log and report.
suite() { # name, then the command
  local name=$1
  shift
  ("$@" >"$tmp/$name.out" 2>&1; echo $? >"$tmp/$name.rc") &
  pids+=($!)
}
suite scenarios /usr/bin/python3 scenarios/run.py --build "$B" --report "$report/scenarios" scenarios/*.scn
suite conformance /usr/bin/python3 conformance/run.py --build "$B" --report "$report/conformance"
suite validator /usr/bin/python3 conformance/validate-client --build "$B" --report "$report/validator"
echo "== 2-4. scenarios, conformance matrix and client validator, running side by side..."
wait "${pids[@]}"
pids=()

show() { # name, title, report files
  local name=$1 title=$2
  shift 2
  local rc
  rc=$(cat "$tmp/$name.rc" 2>/dev/null || echo 1)
  echo
  echo "== $title"
  # The per-item progress is in the report; the tables are what a person reads.
  grep -v '^\[[0-9]*/[0-9]*\] ' "$tmp/$name.out"
  echo "run: full report: $*"
  [ "$rc" = 0 ] || { echo "run: $title FAILED (exit $rc)"; fail=1; }
}
show scenarios "2. scenarios (scenarios/*.scn against iotsim with iotc-agent)" \
  "$report/scenarios/report.md" "$report/scenarios/report.json"
show conformance "3. conformance matrix (iotsim against AWS IoT's documented behaviour)" \
  "$report/conformance/conformance.md" "$report/conformance/conformance.json"
show validator "4. client validator (clients nobody here wrote, and ours, against iotsim)" \
  "$report/validator/validator.md" "$report/validator/validator.json"

secs=$(python3 -c "import sys,time; print('%.0f' % (time.time() - float(sys.argv[1])))" "$start")
echo
if [ $fail = 0 ]; then
  echo "run: everything passed in ${secs} s; reports under $report/"
else
  echo "run: FAILED (see above); reports under $report/"
fi
exit $fail
