#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_client (fuzz/corpus/client/): scripts of link
events, broker packets, API calls and clock steps for libiotc's engine.  See
fuzz_client.c for the opcodes.  Run from anywhere: python3 fuzz/make-client-seeds.py"""
import os

BYTES, UP, DOWN, ADV, PUB, SUB, UNSUB, CANNED = range(8)
CONNACK, REFUSED, PUBACK, SUBACK, UNSUBACK, PINGRESP, PUBLISH0, PUBLISH1 = range(8)

def canned(kind, pid=1):
    return bytes([CANNED, kind | ((pid - 1) << 3)])

seeds = {
    # connect, subscribe, publish QoS 1, acks
    "online": bytes([0x07, UP]) + canned(CONNACK) + bytes([SUB, 0x04, PUB, 0x04]) + canned(SUBACK, 1)
        + canned(PUBACK, 2) + canned(PUBLISH1, 3) + bytes([ADV, 50]),
    # offline: queue overflows (limit 2), then reconnect and drain at 2 Hz
    "offline-drain": bytes([0x01]) + bytes([PUB, 4, PUB, 5, PUB, 6, SUB, 4, UP]) + canned(CONNACK)
        + bytes([ADV, 30, ADV, 30]) + canned(PUBACK, 1) + canned(PUBACK, 2) + bytes([ADV, 60]),
    # a drop in the middle of a drain, then a refused CONNACK and backoff
    "drop-mid-drain": bytes([0x03]) + bytes([PUB, 4, PUB, 4, PUB, 4, UP]) + canned(CONNACK)
        + bytes([ADV, 26, DOWN, ADV, 10, UP]) + canned(REFUSED) + bytes([ADV, 20, UP]) + canned(CONNACK, 1)
        + bytes([ADV, 100]),
    # keep-alive and a missing PINGRESP
    "ping-timeout": bytes([0x03, UP]) + canned(CONNACK) + bytes([ADV, 255, ADV, 255, ADV, 200])
        + canned(PINGRESP) + bytes([ADV, 255, ADV, 255, ADV, 255]),
    # operation timeouts with the window full
    "timeouts": bytes([0x43, UP]) + canned(CONNACK) + bytes([PUB, 4, PUB, 4, PUB, 4, SUB, 8, ADV, 30, ADV, 30]),
    # garbage from the broker
    "garbage": bytes([0x03, UP]) + canned(CONNACK) + bytes([BYTES, 4, 0xF0, 0x00, 0x00, 0x00]),
    "oversized": bytes([0x03, UP]) + canned(CONNACK) + bytes([BYTES, 4, 0x30, 0xC0, 0x84, 0x3D]),
}
d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "client")
os.makedirs(d, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(d, name + ".bin"), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(seeds), d))
