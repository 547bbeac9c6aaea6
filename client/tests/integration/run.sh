#!/bin/bash
# Runs libiotc's integration tests: BUILD_DIR/tests/integration/iotc_itest
# against Debian's mosquitto and BUILD_DIR/bin/iotsim.
#   run.sh BUILD_DIR [unittest names, e.g. T04OutageMosquitto or T01MosquittoPubsub.test_a_tcp]
# Uses Debian's /usr/bin/python3 on purpose, like iotsim's run.sh.
# Last line: "client integration: N passed, N failed"; non-zero exit on any failure.
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [test names...]" >&2
    exit 2
fi
build=$1
shift
for f in "$build/tests/integration/iotc_itest" "$build/bin/iotsim"; do
    if [ ! -x "$f" ]; then
        echo "run.sh: no executable $f (make $f first)" >&2
        echo "client integration: 0 passed, 1 failed"
        exit 1
    fi
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ITEST=$(cd "$build" && pwd)/tests/integration/iotc_itest
IOTSIM=$(cd "$build" && pwd)/bin/iotsim
IOTC=$(cd "$build" && pwd)/bin/iotc
export ITEST IOTSIM IOTC
rc=0
/usr/bin/python3 "$here/test_client.py" "$@" || rc=1
# The WebSocket upgrade (SigV4) against a broker written in the test; only
# when no particular test was asked for.
if [ $# -eq 0 ]; then
    /usr/bin/python3 "$here/test_ws_handshake.py" || rc=1
    # The shadow client against mosquitto and a paho responder (until iotsim
    # has a shadow service of its own).
    /usr/bin/python3 "$here/test_shadow_mosquitto.py" || rc=1
fi
exit $rc
