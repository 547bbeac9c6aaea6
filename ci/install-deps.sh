#!/usr/bin/env bash
# Installs every Debian package the build, the tests, the fuzzers and the benchmarks use.
# Idempotent: quiet and fast when nothing is missing; `apt-get update` only when something is.
set -eu

PACKAGES=(
  build-essential pkg-config
  libwebsockets-dev libssl-dev libcjson-dev libcbor-dev libcmocka-dev
  clang-14 libclang-rt-14-dev llvm-14
  valgrind lcov
  mosquitto mosquitto-clients libmosquitto-dev libpaho-mqtt-dev
  python3 python3-paho-mqtt python3-awscrt python3-cbor2
  openssl curl
)

# IOTC_DEPS_PACKAGES replaces the list (used by ci/tests/install-deps.sh).
if [ -n "${IOTC_DEPS_PACKAGES:-}" ]; then
  read -r -a PACKAGES <<<"$IOTC_DEPS_PACKAGES"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: run as root, or install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The mosquitto package starts a system broker on 1883; our tests never use it and
# pick their own ports, but a stray daemon on a CI machine is noise: stop it if it runs.
if command -v systemctl >/dev/null 2>&1; then systemctl stop mosquitto >/dev/null 2>&1 || true; fi
exit 0
