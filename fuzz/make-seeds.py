#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/{stream,roundtrip,topic}/.

The packets are written out by hand below, field by field, with a few helpers
for MQTT's primitive types (this encoder shares no code with the C codec, so
a seed is an independent statement of what the spec says).  Malformed packets
are hand-written hex.  Captured peer traffic (client/tests/fixtures/*.mqtt:
lines `V 4|5`, `C <hex>`, `S <hex>`; `#` starts a comment) becomes seeds too.

    python3 fuzz/make-seeds.py            # rewrite the seeds (keeps regress-*)
    python3 fuzz/make-seeds.py --clean    # also delete seeds no longer generated

Files named `regress-*` are reproducers of fixed bugs, added by hand; this
script never writes or deletes them.  The harnesses' input layouts are in
fuzz/README.md: stream seeds start with [flags, max size, n, n chunk lengths],
roundtrip seeds with [flags]; bit 0 of flags is the protocol level (1 = MQTT 5).
"""

import argparse
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FIXTURES = os.path.join(ROOT, "client", "tests", "fixtures")
MAX_CORPUS_BYTES = 2 * 1024 * 1024
MAX_FIXTURE_STREAM = 64 * 1024

# ---- MQTT primitives --------------------------------------------------------


def vbi(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u8(n):
    return struct.pack(">B", n)


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def s(x):
    """UTF-8 string or binary data: 2-byte length, then the bytes."""
    if isinstance(x, str):
        x = x.encode("utf-8")
    return u16(len(x)) + x


def h(text):
    """Hex with any whitespace in it."""
    return bytes.fromhex(re.sub(r"\s+", "", text))


# Property id -> how its value is encoded.
BYTE, TWO, FOUR, VBI, STR, BIN, PAIR = range(7)
PROP_KIND = {
    0x01: BYTE, 0x02: FOUR, 0x03: STR, 0x08: STR, 0x09: BIN, 0x0B: VBI,
    0x11: FOUR, 0x12: STR, 0x13: TWO, 0x15: STR, 0x16: BIN, 0x17: BYTE,
    0x18: FOUR, 0x19: BYTE, 0x1A: STR, 0x1C: STR, 0x1F: STR, 0x21: TWO,
    0x22: TWO, 0x23: TWO, 0x24: BYTE, 0x25: BYTE, 0x26: PAIR, 0x27: FOUR,
    0x28: BYTE, 0x29: BYTE, 0x2A: BYTE,
}


def props(*items):
    """A property block with its length: props((0x11, 3600), (0x26, ("k", "v")))."""
    body = bytearray()
    for pid, val in items:
        body += vbi(pid)
        kind = PROP_KIND.get(pid)
        if kind == BYTE:
            body += u8(val)
        elif kind == TWO:
            body += u16(val)
        elif kind == FOUR:
            body += u32(val)
        elif kind == VBI:
            body += vbi(val)
        elif kind in (STR, BIN):
            body += s(val)
        elif kind == PAIR:
            body += s(val[0]) + s(val[1])
        else:  # unknown id: raw bytes follow
            body += val
    return vbi(len(body)) + bytes(body)


NOPROPS = b"\x00"


def pkt(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + vbi(len(body)) + body


# ---- packets ----------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)


def connect(level, client_id, clean=True, keep_alive=60, will=None, username=None, password=None,
            cprops=None):
    """will: (topic, payload, qos, retain, will_props or None)."""
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = s("MQTT") + u8(level) + u8(flags) + u16(keep_alive)
    if level == 5:
        body += cprops if cprops is not None else NOPROPS
    body += s(client_id)
    if will:
        if level == 5:
            body += will[4] if will[4] is not None else NOPROPS
        body += s(will[0]) + s(will[1])
    if username is not None:
        body += s(username)
    if password is not None:
        body += s(password)
    return pkt(CONNECT, 0, body)


def connack(level, rc=0, session_present=False, cprops=None):
    body = u8(1 if session_present else 0) + u8(rc)
    if level == 5:
        body += cprops if cprops is not None else NOPROPS
    return pkt(CONNACK, 0, body)


def publish(level, topic, payload, qos=0, pid=1, dup=False, retain=False, pprops=None):
    flags = (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = s(topic)
    if qos:
        body += u16(pid)
    if level == 5:
        body += pprops if pprops is not None else NOPROPS
    if isinstance(payload, str):
        payload = payload.encode()
    return pkt(PUBLISH, flags, body + payload)


def ack(level, ptype, pid, rc=None, aprops=None):
    """PUBACK/PUBREC/PUBREL/PUBCOMP; v5 may carry a reason and properties."""
    body = u16(pid)
    if level == 5 and (rc is not None or aprops is not None):
        body += u8(rc or 0)
        if aprops is not None:
            body += aprops
    return pkt(ptype, 0x2 if ptype == PUBREL else 0, body)


def subscribe(level, pid, subs, sprops=None):
    """subs: [(filter, options byte)]."""
    body = u16(pid)
    if level == 5:
        body += sprops if sprops is not None else NOPROPS
    for f, opts in subs:
        body += s(f) + u8(opts)
    return pkt(SUBSCRIBE, 0x2, body)


def suback(level, ptype, pid, codes, sprops=None):
    body = u16(pid)
    if level == 5:
        body += sprops if sprops is not None else NOPROPS
    return pkt(ptype, 0, body + bytes(codes))


def unsubscribe(level, pid, filters, uprops=None):
    body = u16(pid)
    if level == 5:
        body += uprops if uprops is not None else NOPROPS
    for f in filters:
        body += s(f)
    return pkt(UNSUBSCRIBE, 0x2, body)


def disconnect(level, rc=None, dprops=None, ptype=DISCONNECT):
    body = b""
    if level == 5 and (rc is not None or dprops is not None):
        body += u8(rc or 0)
        if dprops is not None:
            body += dprops
    return pkt(ptype, 0, body)


PINGREQ_PKT = pkt(PINGREQ, 0, b"")
PINGRESP_PKT = pkt(PINGRESP, 0, b"")
SHADOW = "$aws/things/thing-1/shadow/update"
JSON = '{"state":{"reported":{"temperature":21.5,"on":true}}}'
USER = (0x26, ("trace-id", "4bf92f3577b34da6"))


def v3_packets():
    P = {}
    P["connect-v3-minimal"] = connect(4, "dev1")
    P["connect-v3-empty-client-id"] = connect(4, "", keep_alive=0)
    P["connect-v3-persistent-session"] = connect(4, "sensor-42", clean=False, keep_alive=1200)
    P["connect-v3-will-user-pass"] = connect(
        4, "thing-1", will=("devices/thing-1/status", "offline", 1, True, None),
        username="user?SDK=C&Version=1.0", password=b"\x00\x01secret")
    P["connect-v3-will-qos2"] = connect(4, "w2", will=("lwt", "", 2, False, None))
    P["connack-v3-accepted"] = connack(4)
    P["connack-v3-session-present"] = connack(4, 0, True)
    for rc, name in ((1, "bad-protocol"), (2, "id-rejected"), (3, "unavailable"), (4, "bad-credentials"),
                     (5, "not-authorized")):
        P["connack-v3-rc%d-%s" % (rc, name)] = connack(4, rc)
    P["publish-v3-qos0"] = publish(4, "sensors/temp", "21.5")
    P["publish-v3-qos1-retain"] = publish(4, "sensors/temp", "21.5", qos=1, pid=10, retain=True)
    P["publish-v3-qos1-dup"] = publish(4, "a/b", "x", qos=1, pid=65535, dup=True)
    P["publish-v3-qos2"] = publish(4, "a/b/c", "hello", qos=2, pid=7)
    P["publish-v3-empty-payload"] = publish(4, "a", b"")
    P["publish-v3-shadow-json"] = publish(4, SHADOW, JSON, qos=1, pid=3)
    P["publish-v3-utf8-topic"] = publish(4, "capteurs/température/°C/日本", "ok")
    P["publish-v3-binary-payload"] = publish(4, "bin", bytes(range(256)))
    P["publish-v3-1k"] = publish(4, "telemetry/dev-0001", bytes((i * 7) & 0xFF for i in range(1024)), qos=1)
    P["publish-v3-rules-ingest"] = publish(4, "$aws/rules/myRule/a/b/c/d/e/f/g/h", "{}")
    P["puback-v3"] = ack(4, PUBACK, 10)
    P["pubrec-v3"] = ack(4, PUBREC, 7)
    P["pubrel-v3"] = ack(4, PUBREL, 7)
    P["pubcomp-v3"] = ack(4, PUBCOMP, 7)
    P["subscribe-v3-one"] = subscribe(4, 1, [("sensors/#", 1)])
    P["subscribe-v3-many"] = subscribe(4, 2, [("a/+/c", 0), ("$aws/things/thing-1/shadow/update/accepted", 1),
                                              ("#", 2), ("$share/group/a/#", 1)])
    P["suback-v3"] = suback(4, SUBACK, 2, [0, 1, 2, 0x80])
    P["unsubscribe-v3"] = unsubscribe(4, 3, ["a/+/c", "#"])
    P["unsuback-v3"] = suback(4, UNSUBACK, 3, [])
    P["pingreq-v3"] = PINGREQ_PKT
    P["pingresp-v3"] = PINGRESP_PKT
    P["disconnect-v3"] = disconnect(4)
    return P


def v3_malformed():
    M = {}
    M["bad-v3-reserved-type-0"] = h("00 00")
    M["bad-v3-auth-type-in-3.1.1"] = h("f0 00")
    M["bad-v3-publish-qos3"] = h("36 05 0001 61 0001")
    M["bad-v3-publish-qos0-dup"] = h("38 03 0001 61")
    M["bad-v3-pubrel-flags-0"] = h("60 02 0001")
    M["bad-v3-subscribe-flags-0"] = h("80 06 0001 0001 61 00")
    M["bad-v3-remaining-length-5-bytes"] = h("30 ff ff ff ff 01")
    M["bad-v3-remaining-length-not-minimal"] = h("c0 80 00")
    M["bad-v3-connect-mqisdp-level-3"] = h("10 13 0006 4d5149736470 03 02 003c 0005 6465763131")
    M["bad-v3-connect-level-6"] = h("10 10 0004 4d515454 06 02 003c 0004 64657631")
    M["bad-v3-connect-reserved-flag"] = h("10 10 0004 4d515454 04 03 003c 0004 64657631")
    M["bad-v3-connect-password-without-user"] = h("10 16 0004 4d515454 04 42 003c 0004 64657631 0004 70617373")
    M["bad-v3-connect-will-qos-without-will"] = h("10 10 0004 4d515454 04 0a 003c 0004 64657631")
    M["bad-v3-publish-wildcard-topic"] = h("30 05 0003 612f2b")
    M["bad-v3-publish-empty-topic"] = h("30 04 0000 6869")
    M["bad-v3-publish-topic-bad-utf8"] = h("30 04 0002 c328")
    M["bad-v3-publish-topic-nul"] = h("30 05 0003 610062")
    M["bad-v3-publish-topic-surrogate"] = h("30 05 0003 eda080")
    M["bad-v3-publish-qos1-packet-id-0"] = h("32 05 0001 61 0000")
    M["bad-v3-string-overruns-packet"] = h("30 04 0009 6162")
    M["bad-v3-subscribe-no-filter"] = h("82 02 0001")
    M["bad-v3-subscribe-qos3"] = h("82 06 0001 0001 61 03")
    M["bad-v3-subscribe-reserved-option-bits"] = h("82 06 0001 0001 61 04")
    M["bad-v3-subscribe-bad-wildcard"] = h("82 07 0001 0002 612b 00")
    M["bad-v3-suback-code-3"] = h("90 03 0001 03")
    M["bad-v3-unsubscribe-no-filter"] = h("a2 02 0001")
    M["bad-v3-puback-trailing-byte"] = h("40 03 0001 00")
    M["bad-v3-puback-too-short"] = h("40 01 00")
    M["bad-v3-pingreq-with-body"] = h("c0 01 00")
    M["bad-v3-connack-reserved-flags"] = h("20 02 02 00")
    M["bad-v3-connack-rc6"] = h("20 02 00 06")
    M["bad-v3-disconnect-with-body"] = h("e0 01 00")
    return M


def v5_packets():
    P = {}
    all_connect_props = props(
        (0x11, 3600), (0x21, 100), (0x27, 131072), (0x22, 8), (0x19, 1), (0x17, 0),
        USER, (0x26, ("k", "")), (0x15, "SCRAM-SHA-1"), (0x16, b"\x01\x02client-first"))
    P["connect-v5-minimal"] = connect(5, "dev1")
    P["connect-v5-props"] = connect(5, "thing-1", cprops=all_connect_props, username="u", password=b"p")
    will_props = props((0x18, 30), (0x01, 1), (0x02, 86400), (0x03, "application/json"),
                       (0x08, "devices/thing-1/response"), (0x09, b"\xde\xad\xbe\xef"), USER)
    P["connect-v5-will-props"] = connect(5, "thing-1", keep_alive=30,
                                         will=("devices/thing-1/lwt", JSON, 1, False, will_props))
    P["connect-v5-empty-client-id"] = connect(5, "", cprops=props((0x11, 0)))
    P["connect-v5-password-only"] = connect(5, "p", password=b"token")
    P["connack-v5-minimal"] = connack(5)
    P["connack-v5-props"] = connack(5, 0, True, props(
        (0x11, 3600), (0x21, 100), (0x24, 1), (0x25, 0), (0x27, 131072), (0x12, "auto-1A2B3C"),
        (0x22, 8), (0x1F, "welcome"), USER, (0x28, 1), (0x29, 1), (0x2A, 1), (0x13, 1200),
        (0x1A, "resp/info"), (0x1C, "other.example.com"), (0x15, "SCRAM-SHA-1"), (0x16, b"server-final")))
    P["connack-v5-not-authorized"] = connack(5, 0x87, cprops=props((0x1F, "policy denies iot:Connect")))
    P["connack-v5-quota-exceeded"] = connack(5, 0x97)
    P["publish-v5-qos0"] = publish(5, "sensors/temp", "21.5")
    P["publish-v5-props"] = publish(5, "sensors/temp", JSON, qos=1, pid=5, pprops=props(
        (0x01, 1), (0x02, 60), (0x23, 3), (0x08, "resp/topic"), (0x09, b"corr-1"), USER, (0x26, ("a", "b")),
        (0x03, "application/json")))
    P["publish-v5-subscription-ids"] = publish(5, "a/b", "x", qos=1, pid=9, pprops=props(
        (0x0B, 1), (0x0B, 268435455), (0x0B, 16384)))
    P["publish-v5-topic-alias-empty-topic"] = publish(5, "", "payload", pprops=props((0x23, 1)))
    P["publish-v5-qos2-dup-retain"] = publish(5, SHADOW, JSON, qos=2, pid=300, dup=True, retain=True)
    P["publish-v5-payload-format-0"] = publish(5, "bin", bytes(range(256)), pprops=props((0x01, 0)))
    P["publish-v5-many-user-props"] = publish(5, "u", "", pprops=props(
        *[(0x26, ("key%d" % i, "value%d" % i)) for i in range(70)]))
    P["puback-v5-short"] = ack(5, PUBACK, 5)
    P["puback-v5-reason-only"] = ack(5, PUBACK, 5, rc=0x10)
    P["puback-v5-props"] = ack(5, PUBACK, 5, rc=0x87, aprops=props((0x1F, "not authorized"), USER))
    P["pubrec-v5"] = ack(5, PUBREC, 300, rc=0x00, aprops=NOPROPS)
    P["pubrec-v5-quota"] = ack(5, PUBREC, 300, rc=0x97)
    P["pubrel-v5-not-found"] = ack(5, PUBREL, 300, rc=0x92, aprops=props((0x1F, "gone")))
    P["pubcomp-v5"] = ack(5, PUBCOMP, 300)
    P["subscribe-v5-options"] = subscribe(5, 11, [
        ("sensors/#", 0x01 | 0x04 | 0x08 | 0x20),  # QoS 1, no local, RAP, retain handling 2
        ("$share/workers/jobs/+", 0x00),
        ("$aws/things/thing-1/shadow/update/delta", 0x10 | 0x02)],
        props((0x0B, 42), USER))
    P["subscribe-v5-sub-id-max"] = subscribe(5, 12, [("a", 0)], props((0x0B, 268435455)))
    P["suback-v5"] = suback(5, SUBACK, 11, [0x01, 0x00, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2],
                            props((0x1F, "partly granted"), USER))
    P["unsubscribe-v5"] = unsubscribe(5, 13, ["sensors/#", "$share/workers/jobs/+"], props(USER))
    P["unsuback-v5"] = suback(5, UNSUBACK, 13, [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91], props((0x1F, "ok")))
    P["pingreq-v5"] = PINGREQ_PKT
    P["pingresp-v5"] = PINGRESP_PKT
    P["disconnect-v5-empty"] = disconnect(5)
    P["disconnect-v5-reason-only"] = disconnect(5, 0x04)
    P["disconnect-v5-props"] = disconnect(5, 0x9C, props((0x11, 0), (0x1F, "use another server"),
                                                         (0x1C, "backup.example.com"), USER))
    P["disconnect-v5-session-taken-over"] = disconnect(5, 0x8E, NOPROPS)
    P["auth-v5-continue"] = disconnect(5, 0x18, props((0x15, "SCRAM-SHA-1"), (0x16, b"client-final"),
                                                      (0x1F, "step 2"), USER), ptype=AUTH)
    P["auth-v5-reauthenticate"] = disconnect(5, 0x19, props((0x15, "SCRAM-SHA-1")), ptype=AUTH)
    P["auth-v5-empty"] = disconnect(5, ptype=AUTH)
    return P


def v5_malformed():
    M = {}
    M["bad-v5-duplicate-property"] = publish(5, "a", "", pprops=props((0x03, "x"), (0x03, "y")))
    M["bad-v5-property-not-allowed"] = connect(5, "c", cprops=props((0x23, 1)))
    M["bad-v5-will-property-in-connect"] = connect(5, "c", cprops=props((0x18, 5)))
    M["bad-v5-unknown-property"] = pkt(PUBLISH, 0, s("a") + props((0x50, b"\x00")))
    M["bad-v5-subscription-id-0"] = subscribe(5, 1, [("a", 0)], props((0x0B, 0)))
    M["bad-v5-two-sub-ids-in-subscribe"] = subscribe(5, 1, [("a", 0)], props((0x0B, 1), (0x0B, 2)))
    M["bad-v5-property-length-overruns"] = h("30 06 0001 61 09 0101")
    M["bad-v5-property-value-truncated"] = h("30 06 0001 61 02 0200")
    M["bad-v5-payload-format-2"] = publish(5, "a", "", pprops=props((0x01, 2)))
    M["bad-v5-payload-format-1-bad-utf8"] = publish(5, "a", b"\xff\xfe", pprops=props((0x01, 1)))
    M["bad-v5-maximum-qos-2"] = connack(5, cprops=props((0x24, 2)))
    M["bad-v5-receive-maximum-0"] = connect(5, "c", cprops=props((0x21, 0)))
    M["bad-v5-maximum-packet-size-0"] = connect(5, "c", cprops=props((0x27, 0)))
    M["bad-v5-topic-alias-0"] = publish(5, "a", "", pprops=props((0x23, 0)))
    M["bad-v5-empty-topic-without-alias"] = publish(5, "", "x")
    M["bad-v5-retain-handling-3"] = subscribe(5, 1, [("a", 0x30)])
    M["bad-v5-subscribe-reserved-bits"] = subscribe(5, 1, [("a", 0xC0)])
    M["bad-v5-shared-no-local"] = subscribe(5, 1, [("$share/g/a", 0x04)])
    M["bad-v5-share-name-wildcard"] = subscribe(5, 1, [("$share/g+/a", 0)])
    M["bad-v5-share-without-filter"] = subscribe(5, 1, [("$share/g", 0)])
    M["bad-v5-will-qos3"] = h("10 11 0004 4d515454 05 1e 003c 00 0004 64657631")
    M["bad-v5-puback-bad-reason"] = ack(5, PUBACK, 1, rc=0x01)
    M["bad-v5-disconnect-bad-reason"] = disconnect(5, 0x05)
    M["bad-v5-auth-bad-reason"] = disconnect(5, 0x87, ptype=AUTH)
    M["bad-v5-user-property-bad-utf8"] = publish(5, "a", "", pprops=props((0x26, (b"\xc0\xaf", "v"))))
    M["bad-v5-request-problem-info-2"] = connect(5, "c", cprops=props((0x17, 2)))
    M["bad-v5-suback-bad-code"] = suback(5, SUBACK, 1, [0x03])
    M["bad-v5-session-expiry-in-will"] = connect(5, "c", will=("t", "p", 0, False, props((0x11, 1))))
    M["bad-v5-props-length-5-bytes"] = h("30 08 0001 61 ffffffff7f")
    M["bad-v5-sub-id-vbi-not-minimal"] = h("82 0a 0001 03 0b 8100 0001 61 00")
    return M


# ---- streams ------------------------------------------------------------------


def v3_session():
    return [connect(4, "thing-1", keep_alive=30), connack(4),
            subscribe(4, 1, [("$aws/things/thing-1/shadow/update/delta", 1)]), suback(4, SUBACK, 1, [1]),
            publish(4, SHADOW, JSON, qos=1, pid=2), ack(4, PUBACK, 2),
            publish(4, "$aws/things/thing-1/shadow/update/delta", JSON * 30, qos=1, pid=1),
            ack(4, PUBACK, 1), publish(4, "t", "x"), PINGREQ_PKT, PINGRESP_PKT,
            unsubscribe(4, 3, ["$aws/things/thing-1/shadow/update/delta"]), suback(4, UNSUBACK, 3, []),
            disconnect(4)]


def v5_session():
    return [connect(5, "thing-1", cprops=props((0x11, 3600), (0x21, 20))),
            connack(5, cprops=props((0x22, 8), (0x21, 100), (0x27, 131072), (0x2A, 1))),
            subscribe(5, 1, [("devices/+/cmd", 1)], props((0x0B, 7))), suback(5, SUBACK, 1, [1]),
            publish(5, "devices/d1/cmd", "reboot", qos=1, pid=1, pprops=props((0x0B, 7), (0x23, 1))),
            publish(5, "", "again", qos=1, pid=2, pprops=props((0x23, 1))),
            ack(5, PUBACK, 1), ack(5, PUBACK, 2, rc=0x10),
            publish(5, "devices/d1/cmd", bytes(3000), qos=2, pid=3), ack(5, PUBREC, 3), ack(5, PUBREL, 3),
            ack(5, PUBCOMP, 3), PINGREQ_PKT, PINGRESP_PKT,
            disconnect(5, 0x00, props((0x1F, "bye")))]


def stream_seed(level, data, max_size_byte=0, chunks=(), follow=False, empty_feeds=False, small_k=0):
    flags = (1 if level == 5 else 0) | (2 if follow else 0) | (4 if empty_feeds else 0) | (small_k << 3)
    return bytes([flags, max_size_byte, len(chunks)]) + bytes(chunks) + data


def roundtrip_seed(level, data, follow=False):
    return bytes([(1 if level == 5 else 0) | (2 if follow else 0)]) + data


# ---- topics -----------------------------------------------------------------

TOPIC_PAIRS = {
    "exact": ("a/b/c", "a/b/c"),
    "plus-middle": ("a/+/c", "a/b/c"),
    "plus-empty-level": ("a/+", "a/"),
    "plus-leading-empty": ("+/+", "/finance"),
    "plus-no-match-root": ("+", "/finance"),
    "hash-parent": ("sport/#", "sport"),
    "hash-trailing-slash": ("sensor/#", "sensor/"),
    "hash-deep": ("sensor/#", "sensor/temperature/room1"),
    "hash-alone": ("#", "a/b/c"),
    "hash-dollar": ("#", "$SYS/broker/load"),
    "plus-dollar": ("+/monitor/Clients", "$SYS/monitor/Clients"),
    "dollar-literal": ("$SYS/#", "$SYS/broker"),
    "case-sensitive": ("ACCOUNTS", "Accounts"),
    "shadow-delta": ("$aws/things/+/shadow/update/delta", "$aws/things/thing-1/shadow/update/delta"),
    "shadow-named": ("$aws/things/thing-1/shadow/name/+/get/accepted",
                     "$aws/things/thing-1/shadow/name/config/get/accepted"),
    "jobs": ("$aws/things/thing-1/jobs/notify-next", "$aws/things/thing-1/jobs/notify-next"),
    "provisioning": ("$aws/provisioning-templates/tmpl/provision/json/+",
                     "$aws/provisioning-templates/tmpl/provision/json/accepted"),
    "share": ("$share/group/a/+", "a/b"),
    "share-hash": ("$share/g/#", "x/y/z"),
    "share-empty-name": ("$share//a", "a"),
    "share-no-filter": ("$share/g", "g"),
    "share-trailing-slash": ("$share/g/", "g/"),
    "share-wildcard-name": ("$share/g+/a", "a"),
    "share-bare": ("$share", "$share"),
    "share-upper": ("$SHARE/g/a", "a"),
    "rules-ingest": ("$aws/rules/myRule/a/b", "$aws/rules/myRule/a/b/c/d/e/f/g/h/i"),
    "rules-ingest-upper": ("$AWS/Rules/myRule/#", "$AWS/Rules/myRule/1/2/3/4/5/6/7/8"),
    "rules-no-rule": ("$aws/rules/", "$aws/rules//x"),
    "rules-in-share": ("$share/g/$aws/rules/r/a/b/c/d/e/f/g/h", "$aws/rules/r/a"),
    "eight-slashes": ("a/b/c/d/e/f/g/h/i", "a/b/c/d/e/f/g/h/i"),
    "seven-slashes": ("a/b/c/d/e/f/g/h", "a/b/c/d/e/f/g/+"),
    "long-topic-300": ("t/#", "t/" + "x" * 298),
    "long-topic-256": ("#", "y" * 256),
    "hash-not-last": ("a/#/b", "a/x/b"),
    "plus-in-level": ("a+/b", "a+/b"),
    "hash-in-level": ("a/b#", "a/b#"),
    "wildcard-in-topic": ("a/+", "a/+"),
    "empty-filter": ("", "a"),
    "empty-topic": ("a", ""),
    "slashes-only": ("//", "//"),
    "utf8": ("capteurs/+/°C", "capteurs/température/°C"),
    "utf8-4-byte": ("emoji/😀/#", "emoji/😀/x"),
    "control-chars": ("a\x01/\x7f", "a\x01/\x7f"),
}

TOPIC_RAW = {
    "bad-utf8-truncated": b"a/\xc3\x00a/\xc3",
    "bad-utf8-overlong": b"\xc0\xaf\x00\xe0\x80\xaf",
    "bad-utf8-surrogate": b"\xed\xa0\x80/#\x00\xed\xbf\xbf",
    "bad-utf8-above-max": b"\xf4\x90\x80\x80\x00\xf5\x80\x80\x80",
    "nul-in-topic": b"a/+\x00a/\x00",
    "no-separator": b"$aws/things/thing-1/shadow/get",
    "noncharacter": "a/\ufffe\x00a/\ufffe".encode("utf-8"),
    "u-0080-009f": "\u0080/\u009f\x00\u0080/\u009f".encode("utf-8"),
}


# ---- fixtures ---------------------------------------------------------------


def read_fixture(path):
    """Yields (level, direction, packet bytes) from a capture file."""
    level = 4
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            tag, _, rest = line.partition(" ")
            if tag == "V":
                level = 5 if rest.strip() == "5" else 4
            elif tag in ("C", "S"):
                try:
                    yield level, tag, h(rest)
                except ValueError:
                    print("%s:%d: not hex, skipped" % (path, lineno), file=sys.stderr)


def fixture_seeds(fixtures_dir):
    stream, roundtrip = {}, {}
    if not os.path.isdir(fixtures_dir):
        return stream, roundtrip
    seen = set()
    for name in sorted(os.listdir(fixtures_dir)):
        if not name.endswith(".mqtt"):
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name[:-5])
        dirs = {"C": bytearray(), "S": bytearray()}
        levels = {"C": 4, "S": 4}
        for i, (level, d, data) in enumerate(read_fixture(os.path.join(fixtures_dir, name))):
            if len(dirs[d]) < MAX_FIXTURE_STREAM:
                dirs[d] += data
                levels[d] = level
            key = (level, data)
            if key in seen or len(data) > MAX_FIXTURE_STREAM:
                continue
            seen.add(key)
            ptype = data[0] >> 4 if data else 0
            label = "fixture-%s-%03d-%s-v%d-%s" % (stem, i, d, 3 if level == 4 else 5, type_name(ptype))
            roundtrip[label] = roundtrip_seed(level, data)
            stream[label] = stream_seed(level, data)
        for d, data in dirs.items():
            if data:
                # The whole direction of the capture: once in one chunk, once in odd chunks.
                lv = levels[d]
                stream["fixture-%s-%s-stream" % (stem, d)] = stream_seed(lv, bytes(data), follow=True)
                stream["fixture-%s-%s-stream-chunks-1-7-300" % (stem, d)] = stream_seed(
                    lv, bytes(data), chunks=(0, 6, 130), follow=True)
    return stream, roundtrip


TYPE_NAMES = ["reserved", "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
              "subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth"]


def type_name(t):
    return TYPE_NAMES[t] if 0 <= t < 16 else "x"


# ---- main -------------------------------------------------------------------


def build(fixtures_dir):
    stream, roundtrip, topic = {}, {}, {}
    v3, v5 = v3_packets(), v5_packets()
    bad3, bad5 = v3_malformed(), v5_malformed()
    for level, group in ((4, v3), (4, bad3), (5, v5), (5, bad5)):
        for name, data in group.items():
            stream[name] = stream_seed(level, data)
            roundtrip[name] = roundtrip_seed(level, data)

    # Chunking and size limits over single packets.
    stream["publish-v3-1k-chunks-of-1"] = stream_seed(4, v3["publish-v3-1k"], chunks=(0,))
    stream["connect-v5-props-chunks-of-2-3"] = stream_seed(5, v5["connect-v5-props"], chunks=(1, 2))
    stream["publish-v5-props-empty-feeds"] = stream_seed(5, v5["publish-v5-props"], chunks=(4, 9),
                                                         empty_feeds=True)
    stream["publish-v3-1k-max-1024"] = stream_seed(4, v3["publish-v3-1k"], max_size_byte=32)  # 32*32
    stream["publish-v3-1k-max-1089"] = stream_seed(4, v3["publish-v3-1k"], max_size_byte=33)
    stream["publish-v3-1k-small-buffer-69"] = stream_seed(4, v3["publish-v3-1k"], chunks=(40,), small_k=4)
    stream["publish-v3-1k-small-buffer-501"] = stream_seed(4, v3["publish-v3-1k"], chunks=(200,), small_k=31)

    # Whole sessions, in several chunkings.
    s3, s5 = b"".join(v3_session()), b"".join(v5_session())
    stream["stream-v3-session"] = stream_seed(4, s3)
    stream["stream-v3-session-chunks-1"] = stream_seed(4, s3, chunks=(0,))
    stream["stream-v3-session-chunks-3-17-200"] = stream_seed(4, s3, chunks=(2, 16, 199))
    stream["stream-v3-session-chunks-1k"] = stream_seed(4, s3, chunks=(135,), empty_feeds=True)
    stream["stream-v3-session-max-256"] = stream_seed(4, s3, max_size_byte=16, chunks=(63,))
    stream["stream-v3-session-small-buffer"] = stream_seed(4, s3, chunks=(5, 77), small_k=8)
    stream["stream-v5-session"] = stream_seed(5, s5)
    stream["stream-v5-session-chunks-2"] = stream_seed(5, s5, chunks=(1,))
    stream["stream-v5-session-chunks-13-64-129"] = stream_seed(5, s5, chunks=(12, 63, 128))
    stream["stream-v5-session-chunks-2k"] = stream_seed(5, s5, chunks=(143, 0))
    stream["stream-v5-session-max-1024"] = stream_seed(5, s5, max_size_byte=32, chunks=(100,))
    stream["stream-v5-session-small-buffer"] = stream_seed(5, s5, chunks=(31,), small_k=12)
    # A broker starts at 3.1.1 and learns 5 from the CONNECT.
    stream["stream-follow-connect-v5"] = stream_seed(4, s5, chunks=(9,), follow=True)
    stream["stream-follow-connect-v3"] = stream_seed(5, s3, chunks=(9,), follow=True)
    stream["stream-v5-in-v3-session"] = stream_seed(4, s5, chunks=(9,))
    # Endings: a good stream, then garbage or a cut.
    stream["stream-v3-then-reserved-type"] = stream_seed(4, s3[:200] + b"\x00\x00" + s3[:50], chunks=(20,))
    stream["stream-v5-then-bad-property"] = stream_seed(5, s5 + bad5["bad-v5-duplicate-property"] + s5[:30],
                                                        chunks=(50,))
    stream["stream-v3-truncated"] = stream_seed(4, s3[:-3], chunks=(7,))
    stream["stream-v3-truncated-in-header"] = stream_seed(4, s3 + b"\x30\xff\xff", chunks=(0,))
    stream["stream-huge-remaining-length"] = stream_seed(4, h("30 ff ff ff 7f 0001 61"), chunks=(0,))
    stream["stream-v5-pings"] = stream_seed(5, (PINGREQ_PKT + PINGRESP_PKT) * 100, chunks=(2, 0, 4))

    roundtrip["stream-v3-session"] = roundtrip_seed(4, s3)
    roundtrip["stream-v5-session"] = roundtrip_seed(5, s5)
    roundtrip["stream-follow-connect-v5"] = roundtrip_seed(4, s5, follow=True)
    roundtrip["stream-follow-connect-v3"] = roundtrip_seed(5, s3, follow=True)

    for name, (f, t) in TOPIC_PAIRS.items():
        topic[name] = f.encode("utf-8") + b"\x00" + t.encode("utf-8")
    topic.update(TOPIC_RAW)

    fs, fr = fixture_seeds(fixtures_dir)
    stream.update(fs)
    roundtrip.update(fr)
    return {"stream": stream, "roundtrip": roundtrip, "topic": topic}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", action="store_true", help="delete generated seeds that are no longer generated")
    ap.add_argument("--fixtures", default=FIXTURES, help="directory of *.mqtt captures")
    args = ap.parse_args()

    corpora = build(args.fixtures)
    total = 0
    for corpus, seeds in corpora.items():
        d = os.path.join(CORPUS, corpus)
        os.makedirs(d, exist_ok=True)
        wanted = set()
        for name, data in sorted(seeds.items()):
            fn = name + ".bin"
            wanted.add(fn)
            path = os.path.join(d, fn)
            old = None
            if os.path.exists(path):
                with open(path, "rb") as f:
                    old = f.read()
            if old != data:
                with open(path, "wb") as f:
                    f.write(data)
        if args.clean:
            for fn in os.listdir(d):
                if fn not in wanted and not fn.startswith("regress-"):
                    os.remove(os.path.join(d, fn))
        files = os.listdir(d)
        size = sum(os.path.getsize(os.path.join(d, fn)) for fn in files)
        total += size
        digest = hashlib.sha256(b"".join(sorted(seeds.values()))).hexdigest()[:12]
        print("%-10s %4d files, %7d bytes (generated %d, digest %s)" % (corpus, len(files), size, len(seeds),
                                                                       digest))
    if total > MAX_CORPUS_BYTES:
        print("corpus is %d bytes, over the %d budget" % (total, MAX_CORPUS_BYTES), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
