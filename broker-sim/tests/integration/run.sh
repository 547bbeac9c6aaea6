#!/bin/bash
# Runs iotsim's integration tests against BUILD_DIR/bin/iotsim.
#   run.sh BUILD_DIR [unittest names, e.g. T07KeepAlive or T04Paho.test_a_v311_qos2_subscribe_gets_no_suback]
# Uses Debian's /usr/bin/python3 on purpose: python3-paho-mqtt and
# python3-awscrt are installed for it, not for a pyenv python3 on PATH.
# Last line: "integration: N passed, N failed"; non-zero exit on any failure.
# IOTSIM_KEEP=1 keeps each test's state directory and event log.
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [test names...]" >&2
    exit 2
fi
build=$1
shift
if [ ! -x "$build/bin/iotsim" ]; then
    echo "run.sh: no executable $build/bin/iotsim (make $build/bin/iotsim first)" >&2
    echo "integration: 0 passed, 1 failed"
    exit 1
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IOTSIM=$(cd "$build" && pwd)/bin/iotsim
export IOTSIM
exec /usr/bin/python3 "$here/test_iotsim.py" "$@"
