#!/usr/bin/python3
"""The Device Shadow client of libiotc (iotc/shadow.h) end to end, through
iotc_itest's `shadow` mode, against Debian's mosquitto on 127.0.0.1 (a port
the OS picks) and a small paho-mqtt responder, written here, that plays the
AWS IoT shadow service on the named shadows of one thing:

  accept (and the classic shadow)  accepted answers with the clientToken
        echoed and a version that counts; after an update the delta of the
        new version, a stale delta (one older, which the client must drop)
        and the documents; after a delete a delta of version 1 (which must
        pass: delete/accepted resets the version tracking)
  reject   404 "No shadow exists with name: 'reject'"
  silent   no answer (the client's timeout)
  foreign  another client's accepted answer and one without a token first
        (both to ignore), then our own rejected 409, then an accepted answer
        with our token again (a late duplicate, to ignore)
  badjson  nothing: the client must refuse the bad document at the call and
        never publish

The responder makes what iotsim's real shadow service never does on its
own (foreign and duplicate answers, stale deltas, silence) and checks what
the client sends (tokens, payloads); the driver checks what the client
reports (statuses, codes, versions, threads, exactly-once).  libiotc against
iotsim's shadow service is `iotc shadow` in client/tools/tests/iotc.sh.
Strict ordering (publish only after both SUBACKs; a refused SUBACK) is
tested against the scriptable fake broker in client/tests/test_shadow_api.c,
since a real broker acknowledges too fast to tell.

Each test stops every process it started (mosquitto, iotc_itest) and the
responder's connection.  Run: run.sh BUILD_DIR (with the other suites), or
ITEST=BUILD_DIR/tests/integration/iotc_itest /usr/bin/python3
test_shadow_mosquitto.py [names].  Last line: `shadow integration: N
passed, N failed`.
"""
import json
import os
import re
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The mosquitto fixture and iotc_itest runner of the client suite; only
# Base is taken, so that its tests are not collected twice.
from test_client import MOSQUITTO, Base, itest_binary, summary  # noqa: E402
from iotsim_helper import run_tests  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402  (python3-paho-mqtt 1.6)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class ShadowResponder:
    """The shadow service, minimal, on one thing's request topics."""

    def __init__(self, port, thing):
        self.thing = thing
        self.lock = threading.Lock()
        self.requests = []  # (shadow name, "" for classic; op; payload bytes)
        self.versions = {}
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id="shadow-responder", clean_session=True, protocol=mqtt.MQTTv311)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        base = "$aws/things/%s/shadow" % thing
        filters = [(base + "/" + op, 1) for op in ("get", "update", "delete")]
        filters += [(base + "/name/+/" + op, 1) for op in ("get", "update", "delete")]
        self.c.subscribe(filters)
        if not self.subscribed.wait(10):
            self.stop()
            raise RuntimeError("the responder's SUBSCRIBE was not acknowledged")

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()

    def _pub(self, topic, obj):
        self.c.publish(topic, json.dumps(obj), qos=1)

    def _on_message(self, client, userdata, m):
        parts = m.topic.split("/")
        if len(parts) == 7 and parts[4] == "name":
            name, op = parts[5], parts[6]
        elif len(parts) == 5:
            name, op = "", parts[4]
        else:
            return
        with self.lock:
            self.requests.append((name, op, m.payload))
        try:
            doc = json.loads(m.payload)
        except ValueError:
            doc = None
        tok = doc.get("clientToken") if isinstance(doc, dict) else None
        now = int(time.time())
        topic = m.topic
        if name in ("accept", ""):
            with self.lock:
                v = self.versions.get(name, 5)
                if op == "update":
                    v += 1
                    self.versions[name] = v
                elif op == "delete":
                    self.versions[name] = 0
            if op == "get":
                self._pub(topic + "/accepted", {"state": {"reported": {"color": "green"}}, "metadata": {},
                                                "version": v, "timestamp": now, "clientToken": tok})
            elif op == "update":
                state = doc.get("state") if isinstance(doc, dict) else None
                self._pub(topic + "/accepted", {"state": state, "metadata": {}, "version": v, "timestamp": now,
                                                "clientToken": tok})
                self._pub(topic + "/delta", {"version": v, "timestamp": now, "state": {"color": "red"},
                                             "metadata": {}, "clientToken": tok})
                self._pub(topic + "/delta", {"version": v - 1, "timestamp": now, "state": {"color": "stale"},
                                             "metadata": {}})
                self._pub(topic + "/documents", {"previous": {"state": {}, "metadata": {}, "version": v - 1},
                                                 "current": {"state": {"desired": {"color": "red"}},
                                                             "metadata": {}, "version": v},
                                                 "timestamp": now, "clientToken": tok})
            elif op == "delete":
                self._pub(topic + "/accepted", {"version": v, "timestamp": now, "clientToken": tok})
                self._pub(topic.rsplit("/", 1)[0] + "/update/delta",
                          {"version": 1, "timestamp": now, "state": {"color": "blue"}, "metadata": {}})
        elif name == "reject":
            self._pub(topic + "/rejected", {"code": 404, "message": "No shadow exists with name: 'reject'",
                                            "clientToken": tok})
        elif name == "foreign":
            self._pub(topic + "/accepted", {"version": 99, "timestamp": now, "clientToken": str(uuid.uuid4())})
            self._pub(topic + "/accepted", {"version": 98, "timestamp": now})
            self._pub(topic + "/rejected", {"code": 409, "message": "Version conflict", "clientToken": tok})
            self._pub(topic + "/accepted", {"version": 97, "timestamp": now, "clientToken": tok})
        # silent, badjson and anything else: no answer

    def snapshot(self):
        with self.lock:
            return list(self.requests)


def results(out):
    """label -> [dict of the RESULT line's fields], in order."""
    res = {}
    for ln in out.splitlines():
        m = re.match(r'^RESULT (\S+) status=(\S+) code=(-?\d+) version=(\d+) message="(.*)" json="(.*)" '
                     r'service_thread=(\d)$', ln)
        if m:
            res.setdefault(m.group(1), []).append({"status": m.group(2), "code": int(m.group(3)),
                                                   "version": int(m.group(4)), "message": m.group(5),
                                                   "json": m.group(6), "service_thread": m.group(7) == "1"})
    return res


class T01ShadowMosquitto(Base):

    def run_shadow(self, thing):
        m = self.mosquitto("tcp")
        port = m.port("tcp")
        r = ShadowResponder(port, thing)
        self.addCleanup(r.stop)
        rc, out = self.itest("shadow", "--port", str(port), "--transport", "tcp", "--client-id", "it-shadow",
                             "--thing", thing, "--timeout-ms", "10000", timeout=90.0)
        return rc, out, r.snapshot()

    def test_a_shadow_end_to_end(self):
        thing = "it-shadow-thing"
        rc, out, reqs = self.run_shadow(thing)
        ctx = "\n--- iotc_itest output ---\n" + out[-6000:]
        s = summary(out)
        self.assertIsNotNone(s, "no SUMMARY (exit %d)%s" % (rc, ctx))
        self.assertTrue(s["ok"], "a check failed: %s%s" % (s.get("first_failed"), ctx))
        self.assertEqual(rc, 0, ctx)
        self.assertNotIn("DOUBLE-COMPLETION", out, ctx)
        self.assertEqual(s["violations"], 0, ctx)

        # What the client reported.
        res = results(out)
        want = {"get-accept": ("IOTC_OK", 0), "update-accept": ("IOTC_OK", 0),
                "get-reject": ("IOTC_ERR_REJECTED", 404), "get-silent": ("IOTC_ERR_TIMEOUT", 0),
                "get-foreign": ("IOTC_ERR_REJECTED", 409), "delete-accept": ("IOTC_OK", 0),
                "get-accept-busy": ("IOTC_OK", 0), "get-classic": ("IOTC_OK", 0)}
        for label, (st, code) in want.items():
            self.assertIn(label, res, ctx)
            self.assertEqual(len(res[label]), 1, "%s completed %d times%s" % (label, len(res[label]), ctx))
            self.assertEqual((res[label][0]["status"], res[label][0]["code"]), (st, code), label + ctx)
            self.assertTrue(res[label][0]["service_thread"], label + ctx)
        self.assertEqual(res["get-reject"][0]["message"], "No shadow exists with name: 'reject'", ctx)
        self.assertEqual(res["get-foreign"][0]["message"], "Version conflict", ctx)
        self.assertEqual(res["get-accept"][0]["version"], 5, ctx)
        self.assertEqual(res["update-accept"][0]["version"], 6, ctx)
        self.assertEqual(res["get-silent"][0]["json"], "", ctx)
        self.assertEqual([r["status"] for r in res["pending"]], ["IOTC_ERR_CLOSED"] * 10, ctx)
        self.assertIn("CALL pending-11th IOTC_ERR_BUSY", out, ctx)
        self.assertRegex(out, r"CALL update-badjson IOTC_ERR_INVALID_ARG why=\".*state", ctx)
        self.assertGreaterEqual(s["timeout_ms"], 1000, ctx)
        self.assertIn("DELTA version=6", out, ctx)
        self.assertNotIn("DELTA version=5", out, "the stale delta was delivered" + ctx)
        self.assertIn("DOCUMENTS version=6", out, ctx)
        self.assertIn("DELTA version=1", out, "the delta after delete/accepted was dropped" + ctx)

        # What the client sent.
        by = {}
        for name, op, payload in reqs:
            by.setdefault((name, op), []).append(payload)
        tokens = []
        for (name, op), payloads in by.items():
            for p in payloads:
                doc = json.loads(p)
                self.assertIsInstance(doc, dict, p)
                tok = doc.get("clientToken")
                self.assertIsInstance(tok, str, p)
                self.assertLessEqual(len(tok.encode()), 64, p)
                self.assertRegex(tok, UUID4, p)
                tokens.append(tok)
                if op in ("get", "delete"):
                    self.assertEqual(doc, {"clientToken": tok}, p)
        self.assertEqual(len(tokens), len(set(tokens)), "a clientToken was used twice: %s" % tokens)
        upd = json.loads(by[("accept", "update")][0])
        self.assertNotEqual(upd["clientToken"], "caller-token", "the caller's clientToken was not overridden")
        self.assertEqual(upd, {"clientToken": upd["clientToken"], "state": {"desired": {"color": "red"}}})
        self.assertNotIn(("badjson", "update"), by, "a bad document was published")
        # One timed out, ten pending, the eleventh refused: never sent.
        self.assertEqual(len(by.get(("silent", "get"), [])), 11, by.get(("silent", "get")))
        self.assertEqual(len(by[("", "get")]), 1)
        # Answers came back to the tokens the client sent.
        self.assertEqual(len(by[("foreign", "get")]), 1)


def main(argv):
    if not os.access(itest_binary(), os.X_OK) or not os.access(MOSQUITTO, os.X_OK):
        print("not found: %s or %s (set ITEST or pass the build dir to run.sh)" % (itest_binary(), MOSQUITTO),
              file=sys.stderr)
        print("shadow integration: 0 passed, 1 failed")
        return 1
    return run_tests(sys.modules[__name__], argv, "shadow integration")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
