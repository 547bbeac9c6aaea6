#!/usr/bin/env bash
# ci/install-deps.sh: silent when nothing is missing; as a non-root user with
# something missing, a clear message with the exact apt-get line, exit 1.
set -euo pipefail
fail() { echo "install-deps test: $*" >&2; exit 1; }

out=$(bash ci/install-deps.sh 2>&1) || fail "exit $? with nothing missing: $out"
[ -z "$out" ] || fail "not quiet with nothing missing: $out"

if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
  set +e
  out=$(su -s /bin/bash nobody -c \
    "IOTC_DEPS_PACKAGES='make iotc-no-such-package' bash $(pwd)/ci/install-deps.sh" 2>&1)
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "non-root with a missing package: exit $rc, want 1: $out"
  grep -q 'missing Debian packages: iotc-no-such-package' <<<"$out" || fail "no list of what is missing: $out"
  grep -q 'apt-get install -y --no-install-recommends iotc-no-such-package' <<<"$out" || fail "no apt-get line: $out"
  echo "install-deps test: 2 passed, 0 failed"
else
  echo "install-deps test: 1 passed, 0 failed, 1 skipped (needs root and the user nobody)"
fi
