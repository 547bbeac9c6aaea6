#!/usr/bin/env bash
# iotc-mqttdump: decodes the fixture format and raw streams, and reports a
# refused packet with its offset and rule, exiting 1.
set -euo pipefail
B=${B:-build}
dump="$B/bin/iotc-mqttdump"
fail() { echo "mqttdump.sh: $*" >&2; exit 1; }

out=$(printf 'V 5\nC 101000044d5154540502003c03210014 0000\n' | sed 's/14 00/1400/' | "$dump") || fail "valid CONNECT refused: $out"
grep -q 'CONNECT level=5 clean=1 keepalive=60 client_id="" props{ \[Receive Maximum\]=20 }' <<<"$out" \
  || fail "unexpected CONNECT line: $out"

# A PUBLISH with a wildcard in its topic: refused, exit 1, the rule printed.
set +e
out=$(printf 'V 4\nC 30050003612f2b\n' | "$dump")
rc=$?
set -e
[ $rc -eq 1 ] || fail "wildcard topic: exit $rc, want 1"
grep -q 'ERROR protocol error (reason 0x90 Topic Name invalid) at offset 2: topic name contains a wildcard' <<<"$out" \
  || fail "wildcard topic: unexpected output: $out"

# Raw mode, split reads: two PINGREQs and a SUBACK.
out=$(printf '\xc0\x00\xc0\x00\x90\x03\x00\x07\x01' | "$dump" -r) || fail "raw stream refused: $out"
[ "$(grep -c PINGREQ <<<"$out")" -eq 2 ] || fail "raw: want 2 PINGREQ: $out"
grep -q 'SUBACK id=7 codes=\[0x01\]' <<<"$out" || fail "raw: SUBACK: $out"

# Truncated raw input is reported, not silently dropped.
out=$(printf '\x30\x0a\x00\x01a' | "$dump" -r) || true
grep -q 'incomplete packet at the end' <<<"$out" || fail "truncated stream not reported: $out"

# A line that is neither a packet nor a comment is an error, not skipped.
set +e
out=$(printf 'V 4\nX c000\n' | "$dump" 2>&1)
rc=$?
set -e
[ $rc -eq 2 ] || fail "bad line: exit $rc, want 2: $out"

echo "mqttdump.sh: 5 passed, 0 failed"
