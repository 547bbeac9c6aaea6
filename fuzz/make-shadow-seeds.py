#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_shadow (fuzz/corpus/shadow/): request
sequences against one shadow store.  See fuzz_shadow.c for the layout.
Run from anywhere: python3 fuzz/make-shadow-seeds.py [--clean]
(--clean also removes *.bin seeds it no longer writes; regress-* files and
merged units are never touched)."""
import json
import os
import sys

GET, UPDATE, DELETE, OTHER = range(4)
# Clock steps (op bits 5-7): 0, 1, 10, 100, window, window + 1, 1000, 100000 s.
S0, S1, S10, S100, SWIN, SWIN1, S1000, S100K = range(8)
# Targets (op bits 2-4): T, T/a, T/$b, U, U/a, a 128-byte thing, T/<64-byte name>, V:_-/$
T, TA, TB, U, UA, LONG, TLONG, V = range(8)
# OTHER sub-operations, by the target bits.
SAVELOAD, LOAD, TOPIC, CHECK = 0, 1, 2, 3

def cfg(delta_unchanged=True, noop=True, keep=True, size=0, depth=0, small=False):
    return bytes([int(delta_unchanged) | int(noop) << 1 | int(keep) << 2 | size << 3 | depth << 5
                  | (0x80 if small else 0)])

def rec(op, target=T, step=S1, payload=b""):
    if not isinstance(payload, bytes):
        payload = payload.encode() if isinstance(payload, str) else json.dumps(payload, separators=(",", ":")).encode()
    n = len(payload)
    head = bytes([op | target << 2 | step << 5])
    if n < 255:
        return head + bytes([n]) + payload
    return head + bytes([255, n >> 8, n & 0xFF]) + payload

def upd(state, target=T, step=S1, **extra):
    doc = {"state": state}
    doc.update(extra)
    return rec(UPDATE, target, step, doc)

seeds = {
    # §1.4.6 of aws-services.md.
    "sequence": cfg() + bytes([60])
        + upd({"reported": {"c": "green"}}, clientToken="t1")
        + upd({"desired": {"c": "red"}}, step=S10, clientToken="t2")
        + upd({"reported": {"c": "red"}}, step=S10, clientToken="t3")
        + rec(GET, payload={"clientToken": "t4"})
        + upd({"desired": {"c": "blue"}}, version=2)
        + rec(DELETE) + rec(GET),
    "named": cfg() + bytes([5])
        + upd({"desired": {"x": 1}}, TA) + upd({"reported": {"x": 1}}, TB) + upd({"desired": {"x": [1, 2]}}, TLONG)
        + upd({"reported": {"y": {"z": True}}}, LONG) + upd({"desired": {"q": None}}, V)
        + rec(GET, TA) + rec(DELETE, TB) + rec(GET, TB) + rec(GET, U) + rec(DELETE, UA)
        + rec(OTHER, CHECK),
    "errors": cfg(small=True) + bytes([1])
        + rec(UPDATE, payload=b"\xff") + rec(UPDATE, payload=b"") + rec(UPDATE, payload=b"{")
        + rec(UPDATE, payload=b"[1]") + rec(UPDATE, payload={"clientToken": "123456789"})
        + rec(UPDATE, payload={"clientToken": 5, "state": {}}) + rec(UPDATE, payload={"clientToken": "k"})
        + upd(5, clientToken="k") + upd({"delta": {"a": 1}}) + upd({"desired": 1}) + upd({"reported": "x"})
        + upd({"desired": {"a": [1, None]}}) + upd({"reported": {"a": 1}}, version=-1)
        + upd({"reported": {"a": 1}}, version=1.5) + upd({"reported": {"a": 1}}, version=3)
        + rec(GET, payload=b"x") + rec(DELETE, payload=b"[]") + rec(GET, payload={"clientToken": 1})
        + rec(UPDATE, payload=b'{"state":{"desired":{"a":1e999}}}')
        + rec(UPDATE, payload=b'{"state":{},"x":"\x01"}'),
    "limits-small": cfg(size=1, depth=2, small=True) + bytes([2])
        + upd({"desired": {"a": "x" * 56}}) + upd({"desired": {"a": "x" * 57}}) + upd({"reported": {"b": 1}})
        + upd({"desired": {"a": {"b": 1}}}) + upd({"desired": {"a": {"b": {"c": 1}}}}) + upd({"desired": {"a": [[1]]}})
        + upd({"reported": {"a": 1}}, TA) + upd({"reported": {"a": 1}}, TB) + upd({"reported": {"a": 1}}, U)
        + rec(DELETE, TA) + upd({"reported": {"a": 1}}, U),
    "size-8k": cfg() + bytes([0])
        + upd({"desired": {"a": "x" * 8184}}) + upd({"reported": {"b": 1}}) + upd({"desired": {"a": None, "b": 2}}),
    "merge-null": cfg() + bytes([0])
        + upd({"desired": {"a": 1, "b": {"c": 1, "d": 2}, "e": [1]}, "reported": {"x": 1}})
        + upd({"desired": {"a": None, "b": {"c": None}, "n": {"m": None}, "e": {}}})
        + upd({"desired": None}) + upd({"reported": {"x": None}}) + upd(None, clientToken="s") + rec(GET),
    "merge-drop-empty": cfg(keep=False) + bytes([0])
        + upd({"desired": {"a": {"b": {"c": 1}}, "z": [{"k": 1}]}})
        + upd({"desired": {"a": {"b": {"c": None}}, "e": {}}}) + rec(OTHER, CHECK),
    "delta": cfg(delta_unchanged=False) + bytes([0])
        + upd({"desired": {"Status": "Great", "l": {"c": {"r": 1, "g": 255}}}})
        + upd({"reported": {"Status": "Awful", "l": {"c": {"r": 1, "g": 0}}}})
        + upd({"reported": {"other": 1}}) + upd({"reported": {"Status": "Great", "l": {"c": {"g": 255}}}})
        + upd({"desired": {"n": 1}, "reported": {"n": 1.0}}) + upd({"desired": {"n": "1"}}),
    "noop": cfg(noop=False) + bytes([0])
        + upd({"desired": {"a": 1}}) + upd({"desired": {"a": 1}}) + upd({}) + upd({"reported": {"q": None}})
        + upd({}, version=1) + upd({"desired": {"a": 2}}),
    "recreate": cfg() + bytes([20])
        + upd({"reported": {"a": 1}}) + upd({"reported": {"a": 2}}) + rec(DELETE)
        + rec(UPDATE, T, SWIN, {"state": {"reported": {"a": 1}}, "version": 2})
        + rec(DELETE, T) + rec(UPDATE, T, SWIN1, {"state": {"reported": {"a": 1}}, "version": 0})
        + rec(GET, T, S100K),
    "persist": cfg() + bytes([30])
        + upd({"desired": {"a": {"b": [1, {"c": True}]}}, "reported": {"x": "\u00e9"}})
        + upd({"reported": {"y": 1.25}}, TA) + rec(DELETE, TA) + rec(OTHER, SAVELOAD)
        + rec(OTHER, LOAD, S0, {"format": 1, "shadows": [{"thing": "A", "name": None, "version": 3,
            "state": {"desired": {"a": [1]}}, "metadata": {"desired": {"a": [{"timestamp": 5}]}}}],
            "deleted": [{"thing": "B", "name": "n", "version": 2, "deleted_at": 9}]})
        + rec(OTHER, LOAD, S0, {"format": 1, "shadows": [{"thing": "A", "name": None, "version": 3,
            "state": {"desired": {"a": 1}}, "metadata": {}}], "deleted": []})
        + rec(OTHER, LOAD, S0, b"{"),
    "topics": cfg() + bytes([0])
        + rec(OTHER, TOPIC, S0, b"$aws/things/T/shadow/update") + rec(OTHER, TOPIC, S0, b"$aws/things/T/shadow/name/$x/get")
        + rec(OTHER, TOPIC, S0, b"$aws/things/T/shadow/get/accepted")
        + rec(OTHER, TOPIC, S0, b"$aws/things/T/shadow/name//get"),
    "duplicates": cfg() + bytes([0])
        + rec(UPDATE, payload=b'{"state":{"desired":{"a":1,"a":{"b":1,"b":2}}},"clientToken":"x","clientToken":"y"}')
        + rec(UPDATE, payload=b'{"state":{"reported":{"a":1}},"state":{"reported":{"a":2}},"version":1,"version":9}'),
}

d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "shadow")
os.makedirs(d, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(d, name + ".bin"), "wb") as f:
        f.write(data)
if "--clean" in sys.argv[1:]:
    for f in os.listdir(d):
        if f.endswith(".bin") and not f.startswith("regress-") and f[:-4] not in seeds:
            os.remove(os.path.join(d, f))
print("wrote %d seeds to %s" % (len(seeds), d))
