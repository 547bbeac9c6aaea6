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
for f in include/iotc/mqtt.h include/iotc/topic.h include/iotc/error.h include/iotc/client.h lib/libiotc.a lib/libiotc.so lib/pkgconfig/iotc.pc bin/iotc-mqttdump bin/iotc bin/iotsim; do
  [ -e "$root/$f" ] || fail "missing $f"
done
cat >"$stage/t.c" <<'C'
#include <iotc/client.h>
#include <iotc/mqtt.h>
#include <stdio.h>
int main(void)
{
    /* The client pulls in lws and the service thread: the link must
     * resolve them through the .pc file. */
    iotc_builder *b;
    iotc_client *c;
    if (iotc_new_default_builder(&b, "localhost") != IOTC_OK || iotc_builder_set_tls(b, false) != IOTC_OK ||
        iotc_client_new(b, NULL, NULL, &c) != IOTC_OK)
        return 2;
    iotc_builder_free(b);
    iotc_client_free(c);
    static const unsigned char ping[] = {0xC0, 0x00};
    iotc_mqtt_packet p;
    size_t used;
    if (iotc_mqtt_decode(ping, sizeof ping, IOTC_MQTT_V311, 0, &p, &used, NULL) != IOTC_MQTT_OK)
        return 1;
    puts(iotc_mqtt_type_name(p.type));
    return 0;
}
C
# The .pc file as installed: its prefix and what it needs.  It is read in the
# stage, so the compile below gives the staged paths itself.
pc() { PKG_CONFIG_PATH="$root/lib/pkgconfig" pkg-config "$@" iotc; }
[ "$(pc --variable=prefix)" = /opt/iotc ] || fail "pkg-config prefix is not PREFIX"
pc --print-requires-private | grep -q libssl || fail "iotc.pc does not require libssl (libiotc's TLS uses it)"
pc --print-requires-private | grep -q libwebsockets || fail "iotc.pc does not require libwebsockets"
pc --libs | grep -q -- '-liotc' || fail "pkg-config --libs iotc does not name -liotc"
# The .pc names /opt/iotc, which is staged under $root: -I and -L say where.
cc -std=c11 -o "$stage/t" "$stage/t.c" -I"$root/include" -L"$root/lib" $(pc --libs | sed "s|-L/opt/iotc/lib||") 2>&1 \
  || fail "cannot build against the installed library"
[ "$(LD_LIBRARY_PATH="$root/lib" "$stage/t")" = PINGREQ ] || fail "program linked to the installed libiotc.so did not run"
static_libs=$(pc --static --libs | sed 's/-liotc//')
cc -std=c11 -o "$stage/ts" "$stage/t.c" -I"$root/include" "$root/lib/libiotc.a" $static_libs || fail "cannot link the installed libiotc.a"
[ "$("$stage/ts")" = PINGREQ ] || fail "program linked to the installed libiotc.a did not run"
echo "install test: 2 passed, 0 failed"
