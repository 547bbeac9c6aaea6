#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_engine (fuzz/corpus/engine/): short scripts
of connections, packets and clock steps.  See fuzz_engine.c for the opcodes.
Run from the repository root: python3 fuzz/make-engine-seeds.py"""
import os

def vbi(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def s(x):
    x = x.encode() if isinstance(x, str) else x
    return len(x).to_bytes(2, "big") + x

def pkt(t, flags, body):
    return bytes([t << 4 | flags]) + vbi(len(body)) + body

def connect(cid, v=4, clean=True, ka=60, will=None, props=b""):
    flags = 0x02 if clean else 0
    payload = s(cid)
    if will:
        flags |= 0x04 | (will[2] << 3)
        payload += (b"\x00" if v == 5 else b"") + s(will[0]) + s(will[1])
    body = s("MQTT") + bytes([v, flags]) + ka.to_bytes(2, "big")
    if v == 5:
        body += vbi(len(props)) + props
    return pkt(1, 0, body + payload)

def subscribe(pid, filters, v=4):
    body = pid.to_bytes(2, "big") + (b"\x00" if v == 5 else b"")
    for f, q in filters:
        body += s(f) + bytes([q])
    return pkt(8, 2, body)

def publish(topic, payload, qos=0, pid=1, retain=False, v=4):
    body = s(topic) + (pid.to_bytes(2, "big") if qos else b"") + (b"\x00" if v == 5 else b"") + payload
    return pkt(3, (qos << 1) | int(retain), body)

def puback(pid):
    return pkt(4, 0, pid.to_bytes(2, "big"))

OPEN, INPUT, LOST, ADV, DROP, REFUSE, HOLE, DUP = range(8)

def inp(k, data):
    out = b""
    while data:  # the length field is one byte: split
        chunk, data = data[:255], data[255:]
        out += bytes([INPUT, k, len(chunk)]) + chunk
    return out

seeds = {
    "pubsub-v3": bytes([0]) + bytes([OPEN]) + inp(0, connect("s")) + inp(0, subscribe(1, [("a/#", 1)]))
        + bytes([OPEN]) + inp(1, connect("p")) + inp(1, publish("a/b", b"hi", 1, 7)) + bytes([ADV, 10])
        + inp(0, puback(1)),
    "pubsub-v5": bytes([1]) + bytes([OPEN]) + inp(0, connect("s", 5)) + inp(0, subscribe(1, [("a/+", 1)], 5))
        + bytes([OPEN]) + inp(1, connect("p", 5)) + inp(1, publish("a/b", b"hi", 1, 7, v=5)) + bytes([ADV, 30]),
    "persistent": bytes([2]) + bytes([OPEN]) + inp(0, connect("s", clean=False)) + inp(0, subscribe(1, [("t", 1)]))
        + bytes([LOST, 0, OPEN]) + inp(1, connect("p")) + b"".join(inp(1, publish("t", b"%d" % i, 1, i + 1)) for i in range(6))
        + bytes([OPEN]) + inp(0, connect("s", clean=False)) + bytes([ADV, 40, ADV, 40]),
    "takeover-will": bytes([8]) + bytes([OPEN]) + inp(0, connect("x", will=("w/t", "bye", 1))) + bytes([ADV, 30, OPEN])
        + inp(1, connect("x")) + bytes([OPEN]) + inp(2, connect("x", 5)),
    "keepalive": bytes([0]) + bytes([OPEN]) + inp(0, connect("k", ka=1)) + bytes([ADV, 40, ADV, 40]),
    "retain-current": bytes([1]) + bytes([OPEN]) + inp(0, connect("r")) + inp(0, publish("r/t", b"keep", 1, 3, True))
        + inp(0, subscribe(2, [("r/t", 1), ("r/#", 0)])),
    "qos2-and-limits": bytes([0]) + bytes([OPEN]) + inp(0, connect("q")) + inp(0, publish("a", b"x", 2, 5))
        + inp(0, subscribe(1, [("a", 2)])) + inp(0, subscribe(2, [("f%d" % i, 0) for i in range(9)])),
    "faults": bytes([16 | 32]) + bytes([OPEN]) + inp(0, connect("f")) + inp(0, subscribe(1, [("#", 0)]))
        + bytes([DUP, 2, HOLE, 0x80, HOLE, 0, REFUSE, 5, OPEN]) + inp(1, connect("g")) + bytes([ADV, 20, DROP, 0]),
    "throughput": bytes([64 | 128]) + bytes([OPEN]) + inp(0, connect("t")) + b"".join(inp(0, publish("a", b"y" * 40)) for i in range(4))
        + bytes([ADV, 40]),
    # Opcode 0 with bit 5: the "limited" principal (fuzz_engine.c's policy):
    # connects allowed by ${iot:Connection.Thing.ThingName} and c-*, publishes
    # allowed, denied (Deny on a/?) and outside the policy, a filter allowed
    # and one not, a retained publish under ${iot:Certificate.Subject.CommonName};
    # then the same in MQTT 5, and an "orphan" (bit 6) that may do nothing.
    "policy-v3": bytes([1]) + bytes([OPEN | 0x20]) + inp(0, connect("thing")) + inp(0, subscribe(1, [("a/#", 1)]))
        + inp(0, publish("a/b", b"ok", 1, 2)) + inp(0, publish("a/x", b"deny", 1, 3))
        + bytes([OPEN | 0x20]) + inp(1, connect("c-2", will=("z", "w", 0))) + inp(1, subscribe(1, [("z/#", 0)])),
    "policy-v5": bytes([1]) + bytes([OPEN | 0x20]) + inp(0, connect("c-5", 5))
        + inp(0, subscribe(1, [("a/+", 1), ("b", 0)], 5)) + inp(0, publish("r/t", b"keep", 1, 4, True, v=5))
        + inp(0, publish("nope", b"x", 1, 5, v=5)) + inp(0, publish("a/q", b"x", 1, 6, v=5))
        + bytes([OPEN]) + inp(1, connect("p")) + inp(1, publish("a/b", b"to-limited", 0))
        + bytes([OPEN | 0x40]) + inp(2, connect("c-o", 5)) + bytes([OPEN | 0x20]) + inp(3, connect("other")),
    # The shadow service: a subscriber of the responses, then update (desired, so a delta), get, a version
    # conflict, delete, and a named shadow with invalid JSON; the policy principal "limited" may use
    # $aws/things/<its client id>/*.
    "shadow-v3": bytes([0]) + bytes([OPEN]) + inp(0, connect("dev"))
        + inp(0, subscribe(1, [("$aws/things/t1/shadow/+/+", 1), ("$aws/things/t1/shadow/name/n/+/+", 0)]))
        + inp(0, publish("$aws/things/t1/shadow/update", b'{"state":{"desired":{"a":1},"reported":{"a":2}},'
                         b'"clientToken":"k"}', 1, 2))
        + inp(0, publish("$aws/things/t1/shadow/get", b"", 0))
        + inp(0, publish("$aws/things/t1/shadow/update", b'{"state":{"reported":{"a":1}},"version":9}', 1, 3))
        + inp(0, publish("$aws/things/t1/shadow/delete", b'{"clientToken":"d"}', 1, 4))
        + inp(0, publish("$aws/things/t1/shadow/name/n/update", b"{oops", 0)),
    "shadow-v5": bytes([1]) + bytes([OPEN | 0x20]) + inp(0, connect("c-s", 5))
        + inp(0, subscribe(1, [("$aws/things/c-s/shadow/update/+", 1)], 5))
        + inp(0, publish("$aws/things/c-s/shadow/update", b'{"state":{"desired":{"x":[1,2]}}}', 1, 2, v=5))
        + inp(0, publish("$aws/things/c-s/shadow/update", b'{"state":{"desired":null}}', 1, 3, v=5)),
    "garbage": bytes([0, OPEN]) + inp(0, b"\x10\xff\xff\xff\xff\x7f") + bytes([OPEN]) + inp(1, b"\x30\x02\x00\x00"),
}

d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "engine")
os.makedirs(d, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(d, name + ".bin"), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(seeds), d))
