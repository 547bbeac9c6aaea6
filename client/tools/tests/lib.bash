# Helpers the tool tests (iotc.sh, samples.sh) share; sourced, not run
# (check-tools runs *.sh).  The caller sets passed=0 failed=0 first.

pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*" >&2; }

# Polls for up to $2 tenths of a second for the command in $3...
wait_until() {
    local what=$1 n=$2
    shift 2
    for ((i = 0; i < n; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    return 1
}

# expect NAME WANT_RC PATTERN -- command...: the exit code is WANT_RC and the
# output (stdout and stderr) matches the extended regex PATTERN.  The command
# is killed after EXPECT_TIMEOUT seconds (60).
expect() {
    local name=$1 want=$2 pat=$3
    shift 4
    local out rc
    out=$(timeout "${EXPECT_TIMEOUT:-60}" "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$name: exit $rc, want $want: $out"
    elif ! grep -qE -- "$pat" <<<"$out"; then
        fail "$name: output does not match /$pat/: $out"
    else
        pass "$name"
    fi
}
