#!/usr/bin/env bash
# make install honours PREFIX and DESTDIR; a program builds against the
# installed headers, static library and pkg-config file, and runs.
set -euo pipefail
fail() { echo "install test: $*" >&2; exit 1; }
B=${B:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
make --no-print-directory -s B="$B" install PREFIX=/opt/iotc DESTDIR="$stage" >/dev/null
root="$stage/opt/iotc"
for f in include/iotc/mqtt.h include/iotc/topic.h include/iotc/error.h lib/libiotc.a lib/libiotc.so lib/pkgconfig/iotc.pc bin/iotc-mqttdump bin/iotsim; do
  [ -e "$root/$f" ] || fail "missing $f"
done
grep -q '^prefix=/opt/iotc$' "$root/lib/pkgconfig/iotc.pc" || fail "pkg-config prefix is not PREFIX"
cat >"$stage/t.c" <<'C'
#include <iotc/mqtt.h>
#include <stdio.h>
int main(void)
{
    static const unsigned char ping[] = {0xC0, 0x00};
    iotc_mqtt_packet p;
    size_t used;
    if (iotc_mqtt_decode(ping, sizeof ping, IOTC_MQTT_V311, 0, &p, &used, NULL) != IOTC_MQTT_OK)
        return 1;
    puts(iotc_mqtt_type_name(p.type));
    return 0;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_LIBDIR="$root/lib/pkgconfig" pkg-config --cflags --libs --static iotc)
cc -std=c11 -o "$stage/t" "$stage/t.c" $flags 2>&1 || fail "cannot build against the installed library ($flags)"
[ "$(LD_LIBRARY_PATH="$root/lib" "$stage/t")" = PINGREQ ] || fail "program linked to the installed libiotc.so did not run"
cc -std=c11 -o "$stage/ts" "$stage/t.c" -I"$root/include" "$root/lib/libiotc.a" || fail "cannot link the installed libiotc.a"
[ "$("$stage/ts")" = PINGREQ ] || fail "program linked to the installed libiotc.a did not run"
echo "install test: 2 passed, 0 failed"
