#!/usr/bin/python3
"""conformance/run.py: the conformance matrix.  Every documented AWS IoT
behaviour iotsim reproduces (conformance/behaviours.json, one source of
truth) is checked against a real iotsim through a client on the wire and
the event log, and printed as a matrix: ID, result, reference, statement.

    /usr/bin/python3 conformance/run.py [--build build] [-j 6] [--report DIR] [--only REGEX] [-v]

Each check starts its own iotsim (--ports auto, a temporary state
directory, --log), so checks are independent and run in parallel.  Long
waits use the control API's clock (/clock/advance) or --time-scale.  Exit
status: 0 when nothing FAILed, 1 otherwise, 2 on a usage or setup error.
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import sys
import tempfile
import textwrap
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "broker-sim", "tests", "integration"))
sys.path.insert(0, HERE)

from iotsim_helper import Sim, cert_id_of  # noqa: E402
from mqttraw import DISCONNECT, Client, props, publish, subscribe, unsubscribe  # noqa: E402
from mqttraw import connect as connect_pkt  # noqa: E402

TAG_RE = re.compile(r"\[(AWS-[A-Z0-9-]+)\]")


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---- per-check context ----------------------------------------------------------

class Ctx:
    """What one check started: simulators and clients, stopped at the end."""

    def __init__(self, iotsim, tmp):
        self.iotsim, self.tmp = iotsim, tmp
        self.sims, self.clients = [], []

    def sim(self, profile=None, config=None, scale=None, tcp=True):
        a = ["--insecure-tcp"] if tcp else []
        if profile:
            a += ["--profile", profile]
        if scale:
            a += ["--time-scale", str(scale)]
        if config:
            path = os.path.join(self.tmp, "config-%d.json" % len(self.sims))
            with open(path, "w") as f:
                json.dump(config, f)
            a += ["--config", path]
        s = Sim(*a, binary=self.iotsim, tmp=tempfile.mkdtemp(prefix="sim-", dir=self.tmp))
        self.sims.append(s)
        s.start()
        return s

    def raw(self, sim, v=4, **kw):
        c = Client(sim, v=v, **kw)
        self.clients.append(c)
        return c

    def client(self, sim, cid, v=4, **kw):
        """A connected client (CONNACK success asserted)."""
        ckw = {k: kw.pop(k) for k in ("clean", "ka", "will", "cprops", "will_props") if k in kw}
        c = self.raw(sim, v=v, **kw)
        a = c.connect(cid, **ckw)
        check(a["type"] == "CONNACK" and a["rc"] == 0, "client %s: expected CONNACK 0, got %s" % (cid, brief(a)))
        c.connack = a
        return c

    def sub(self, c, filters, pid=1, **kw):
        """SUBSCRIBE and its SUBACK codes (a SUBACK is asserted)."""
        c.send(subscribe(pid, filters, v=c.v, **kw))
        a = c.expect("SUBACK")
        check(a["type"] == "SUBACK", "SUBSCRIBE %s: expected SUBACK, got %s" % (filters, brief(a)))
        return a["codes"]

    def advance(self, sim, seconds):
        st, body = sim.post("/clock/advance", {"seconds": seconds})
        check(st == 200, "POST /clock/advance: %s %s" % (st, body))
        time.sleep(0.05)  # the edge runs the timers that became due

    def verify_sims(self):
        """Every iotsim stops cleanly on SIGTERM: status 0, and no sanitizer
        report when it was built with SANITIZE=1."""
        for i, s in enumerate(self.sims):
            rc = s.stop()
            err = s.stderr_text(full=True)
            m = re.search(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:", err)
            check(not m, "iotsim #%d sanitizer report: %s" % (i + 1, err[m.start():m.start() + 1500] if m else ""))
            check(rc == 0, "iotsim #%d exited with status %r on SIGTERM: %s" % (i + 1, rc, err[-500:]))

    def cleanup(self):
        for c in self.clients:
            c.close()
        for s in self.sims:
            try:
                s.cleanup()
            except Exception:
                pass

    def log_tail(self, n=15):
        out = []
        for i, s in enumerate(self.sims):
            try:
                with open(s.log_path, errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                lines = []
            out.append("iotsim #%d event log, last %d of %d lines:" % (i + 1, min(n, len(lines)), len(lines)))
            out += ["  " + ln[:300] for ln in lines[-n:]]
        return "\n".join(out)


def brief(p):
    if p is None:
        return "nothing"
    t = p.get("type")
    if t == "CONNACK":
        return "CONNACK rc=0x%02x sp=%d" % (p["rc"], p["sp"])
    if t in ("DISCONNECT", "PUBACK"):
        return "%s rc=0x%02x" % (t, p.get("rc", 0))
    if t == "SUBACK":
        return "SUBACK %s" % ["0x%02x" % c for c in p["codes"]]
    if t == "PUBLISH":
        return "PUBLISH %s qos=%d retain=%d %r" % (p["topic"], p["qos"], p["retain"], p["payload"][:20])
    return t


def ended_without(c, what="any packet", timeout=2.0):
    """The server closes c with no packet first."""
    closed, seen = c.ended(timeout)
    check(closed, "connection not closed within %.1f s (saw %s)" % (timeout, [brief(p) for p in seen] or "nothing"))
    check(not seen, "expected a close without %s, got %s first" % (what, [brief(p) for p in seen]))


def disconnect_with(c, rc, timeout=2.0):
    """MQTT 5: DISCONNECT with rc, then the close."""
    p = c.expect("DISCONNECT", timeout)
    check(p["type"] == "DISCONNECT" and p["rc"] == rc,
          "expected DISCONNECT 0x%02x, got %s" % (rc, brief(p)))
    closed, _ = c.ended(timeout)
    check(closed, "connection still open after DISCONNECT 0x%02x" % rc)


def no_publish(c, quiet=0.4, what="message"):
    got = c.collect(quiet=quiet)
    check(not got, "unexpected %s: %s" % (what, [brief(p) for p in got]))


def decision(sim, what, timeout=1.5, **kw):
    return sim.wait_event(timeout=timeout, kind="decision", what=what, **kw)


def close_reason(sim, reason, timeout=1.5):
    ev = sim.wait_event(timeout=timeout, kind="decision", what="close", reason=reason)
    check(ev, "no close decision with reason %s in the event log" % reason)
    return ev


# ---- checks -------------------------------------------------------------------------

CHECKS = {}


def chk(fn):
    CHECKS[fn.__name__] = fn
    return fn


@chk
def qos2_publish_v311_dropped(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("q2/t", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("q2/t", "two", qos=2, pid=7))
    p = pub.expect("any", 0.5)
    check(p["type"] == "TIMEOUT", "v3 PUBLISH QoS 2 was answered (%s); AWS sends nothing" % brief(p))
    check(pub.alive(), "the connection closed after PUBLISH QoS 2; AWS drops the message and keeps it open")
    no_publish(sub, what="delivery of the QoS 2 message")
    check(decision(s, "qos2_publish_dropped"), "no qos2_publish_dropped decision in the event log")


@chk
def qos2_publish_v5_disconnect_9b(x):
    s = x.sim()
    pub = x.client(s, "pub5", v=5)
    pub.send(publish("q2/t", "two", qos=2, pid=7, v=5))
    disconnect_with(pub, 0x9B)


@chk
def qos2_subscribe_v311_no_suback(x):
    s = x.sim()
    c = x.client(s, "s2")
    c.send(subscribe(3, [("q2/s", 2)]))
    p = c.expect("SUBACK", 0.6)
    check(p["type"] == "TIMEOUT", "v3 SUBSCRIBE QoS 2 was answered (%s); AWS sends no SUBACK" % brief(p))
    check(c.alive(), "the connection closed (default: no SUBACK only)")
    pub = x.client(s, "pub")
    pub.send(publish("q2/s", "x", qos=1))
    check(pub.expect("PUBACK")["type"] == "PUBACK", "no PUBACK")
    no_publish(c, what="delivery on the unanswered subscription")


@chk
def qos2_subscribe_v5_granted_qos1(x):
    s = x.sim()
    c = x.client(s, "s5", v=5)
    codes = x.sub(c, [("q2/s", 2)])
    check(codes == [1], "MQTT 5 SUBSCRIBE QoS 2: expected SUBACK granting QoS 1 (0x01), got %s" % codes)


@chk
def will_qos2_v311_closed(x):
    s = x.sim()
    c = x.raw(s)
    c.send(connect_pkt("w2", will=("w/t", "x", 2, False)))
    ended_without(c, "a CONNACK")


@chk
def will_qos2_v5_connack_9b(x):
    s = x.sim()
    c = x.raw(s, v=5)
    a = c.connect("w2", will=("w/t", "x", 2, False))
    check(a["type"] == "CONNACK" and a["rc"] == 0x9B, "expected CONNACK 0x9B, got %s" % brief(a))


@chk
def qos_min_of_publish_and_subscription(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("m/0", 0), ("m/1", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("m/0", "a", qos=1, pid=1) + publish("m/1", "b", qos=0) + publish("m/1", "c", qos=1, pid=2))
    got = {p["payload"]: p["qos"] for p in sub.collect(until=3)}
    check(got == {b"a": 0, b"b": 0, b"c": 1},
          "delivery QoS {payload: qos} should be {a: 0, b: 0, c: 1}, got %s" % got)


@chk
def qos0_duplicate_fault(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("d/t", 0)])
    st, body = s.post("/faults/duplicate-qos0", {"count": 1})
    check(st == 200, "POST /faults/duplicate-qos0: %s %s" % (st, body))
    pub = x.client(s, "pub")
    pub.send(publish("d/t", "once"))
    got = sub.collect(quiet=0.4)
    check(len(got) == 2, "expected the QoS 0 message twice, got %d copies" % len(got))
    check(not any(p["dup"] for p in got), "a QoS 0 duplicate carries DUP=1; AWS never sets DUP")
    sub.pubs.clear()
    pub.send(publish("d/t", "again"))
    check(len(sub.collect(quiet=0.4)) == 1, "the fault outlived its count")
    check(decision(s, "qos0_duplicate"), "no qos0_duplicate decision in the event log")


@chk
def qos0_duplicate_switch(x):
    s = x.sim(config={"deviations": {"qos0_dup_permille": 1000}})
    sub = x.client(s, "sub")
    x.sub(sub, [("d/t", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("d/t", "q0") + publish("d/t", "q1", qos=1, pid=5))
    got = [p["payload"] for p in sub.collect(quiet=0.4)]
    check(got.count(b"q0") == 2 and got.count(b"q1") == 1,
          "qos0_dup_permille=1000: expected q0 twice and q1 once, got %s" % got)


@chk
def qos1_redelivery_new_packet_id(x):
    s = x.sim()
    sub = x.client(s, "sub", auto_ack=False)
    x.sub(sub, [("r/t", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("r/t", "again", qos=1))
    first = sub.collect(until=1)
    check(len(first) == 1, "no first delivery")
    x.advance(s, 10.5)
    got = sub.collect(until=2, quiet=1.0)
    check(len(got) == 2, "no redelivery 10 s after an unacknowledged QoS 1 delivery")
    a, b = got
    check(b["payload"] == a["payload"], "redelivered a different message")
    check(not b["dup"], "the redelivery carries DUP=1; AWS does not set it")
    check(b["pid"] != a["pid"], "the redelivery reused packet id %d; AWS uses a new one" % a["pid"])


@chk
def retain_classic_v311_disconnects(x):
    s = x.sim(profile="classic")
    c = x.client(s, "r")
    c.send(publish("r/t", "keep", qos=1, retain=True))
    ended_without(c, "a PUBACK")
    close_reason(s, "CLIENT_ERROR")


@chk
def retain_classic_v5_disconnect_9a(x):
    s = x.sim(profile="classic")
    c = x.client(s, "r", v=5)
    check(c.connack["props"].get("retain_available") == 0, "classic CONNACK should say Retain Available 0")
    c.send(publish("r/t", "keep", qos=1, retain=True, v=5))
    disconnect_with(c, 0x9A)


@chk
def retain_classic_will_retain_refused(x):
    s = x.sim(profile="classic")
    c = x.raw(s)
    c.send(connect_pkt("wr", will=("w/t", "x", 1, True)))
    ended_without(c, "a CONNACK")
    c5 = x.raw(s, v=5)
    a = c5.connect("wr5", will=("w/t", "x", 1, True))
    check(a["type"] == "CONNACK" and a["rc"] == 0x9A, "v5 Will Retain: expected CONNACK 0x9A, got %s" % brief(a))


@chk
def retain_store_replace_delete(x):
    s = x.sim(profile="current")
    pub = x.client(s, "pub")
    pub.send(publish("rs/a", "one", qos=1, pid=1, retain=True) + publish("rs/a", "two", qos=1, pid=2, retain=True))
    check(pub.expect("PUBACK")["type"] == "PUBACK" and pub.expect("PUBACK")["type"] == "PUBACK", "no PUBACKs")
    s1 = x.client(s, "s1")
    x.sub(s1, [("rs/a", 1)])
    got = s1.collect(quiet=0.4)
    check([(p["payload"], p["retain"]) for p in got] == [(b"two", True)],
          "a new exact subscriber should get only the latest retained message with RETAIN=1, got %s"
          % [brief(p) for p in got])
    s1.pubs.clear()
    pub.send(publish("rs/a", b"", qos=1, pid=3, retain=True))
    got = s1.collect(quiet=0.4)
    check(len(got) == 1 and got[0]["payload"] == b"", "the 0-byte retained PUBLISH is still delivered to "
          "current subscribers, got %s" % [brief(p) for p in got])
    s2 = x.client(s, "s2")
    x.sub(s2, [("rs/a", 1)])
    no_publish(s2, what="retained message after the 0-byte delete")


@chk
def retain_exact_match_only(x):
    s = x.sim(profile="current")
    pub = x.client(s, "pub")
    pub.send(publish("re/x/y", "kept", qos=1, retain=True))
    check(pub.expect("PUBACK")["type"] == "PUBACK", "no PUBACK")
    w = x.client(s, "wild")
    x.sub(w, [("re/x/+", 1), ("re/#", 1)])
    no_publish(w, what="retained message on a wildcard subscription")
    e = x.client(s, "exact")
    x.sub(e, [("re/x/y", 1)])
    got = e.collect(until=1)
    check(len(got) == 1 and got[0]["retain"] and got[0]["payload"] == b"kept",
          "exact filter: expected the retained message with RETAIN=1, got %s" % [brief(p) for p in got])
    pub.send(publish("re/x/y", "live", qos=1, pid=2))
    got = w.collect(until=1)
    check(len(got) == 1 and got[0]["payload"] == b"live", "the wildcard subscriber did not get later live "
          "messages on the retained topic")


@chk
def retain_live_delivery_flag_zero(x):
    s = x.sim(profile="current")
    sub = x.client(s, "sub")
    x.sub(sub, [("rl/t", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("rl/t", "r", qos=1, retain=True))
    got = sub.collect(until=1)
    check(len(got) == 1, "no live delivery")
    check(not got[0]["retain"], "a live delivery to an existing subscriber carries RETAIN=1; AWS sends 0")


@chk
def takeover_classic_connack_both(x):
    s = x.sim(profile="classic")
    old = x.client(s, "dup")
    x.advance(s, 1.1)  # one CONNECT per client id per second
    new = x.client(s, "dup")
    p = old.expect("CONNACK", 2.0)
    check(p["type"] == "CONNACK" and p["rc"] == 0, "classic: the old connection should get a CONNACK too, "
          "got %s" % brief(p))
    closed, _ = old.ended()
    check(closed, "the old connection stays open after the takeover")
    check(new.alive(), "the new connection is not usable")
    close_reason(s, "DUPLICATE_CLIENTID")
    old5 = x.client(s, "dup5", v=5)
    x.advance(s, 1.1)
    x.client(s, "dup5", v=5)
    p = old5.expect("CONNACK", 2.0)
    check(p["type"] == "CONNACK", "classic MQTT 5: expected a CONNACK to the old client, got %s" % brief(p))
    disconnect_with(old5, 0x8E)


@chk
def takeover_current_v311_close_and_will(x):
    s = x.sim(profile="current")
    watch = x.client(s, "watch")
    x.sub(watch, [("will/#", 1), ("$aws/events/presence/disconnected/+", 1)])
    old = x.client(s, "dup", will=("will/dup", "old gone", 1, False))
    x.advance(s, 1.1)
    x.client(s, "dup")
    ended_without(old, "a CONNACK")
    got = watch.collect(until=2, quiet=1.0)
    wills = [p for p in got if p["topic"] == "will/dup"]
    check(wills and wills[0]["payload"] == b"old gone", "the taken-over client's Will was not published")
    evs = [json.loads(p["payload"]) for p in got if p["topic"] == "$aws/events/presence/disconnected/dup"]
    check(evs, "no disconnected lifecycle event for the old connection")
    check(evs[0].get("disconnectReason") == "DUPLICATE_CLIENTID" and evs[0].get("clientInitiatedDisconnect") is False,
          "disconnected event should say DUPLICATE_CLIENTID, clientInitiatedDisconnect false: %s" % evs[0])


@chk
def takeover_current_v5_disconnect_8e(x):
    s = x.sim(profile="current")
    old = x.client(s, "dup", v=5)
    x.advance(s, 1.1)
    new = x.client(s, "dup", v=5)
    disconnect_with(old, 0x8E)
    check(new.alive(), "the new connection is not usable")


@chk
def clientid_128_bytes(x):
    s = x.sim()
    x.client(s, "c" * 128)
    c = x.raw(s)
    a = c.connect("c" * 129)
    check(a["type"] == "CONNACK" and a["rc"] == 2, "129-byte client id: expected CONNACK 2 (identifier "
          "rejected), got %s" % brief(a))
    c5 = x.raw(s, v=5)
    a = c5.connect("d" * 129)
    check(a["type"] == "CONNACK" and a["rc"] == 0x85, "MQTT 5 129-byte client id: expected CONNACK 0x85, "
          "got %s" % brief(a))


@chk
def clientid_gen_assigned_then_refused(x):
    s = x.sim()
    c = x.client(s, "", v=5)
    aid = c.connack["props"].get("assigned_client_id", "")
    check(aid.startswith("$GEN/") and len(aid) > 5, "empty MQTT 5 client id: expected an Assigned Client "
          "Identifier $GEN/<uuid>, got %r" % aid)
    c2 = x.raw(s, v=5)
    a = c2.connect(aid)
    check(a["type"] == "CONNACK" and a["rc"] == 0x85, "a client-supplied $GEN/ id: expected CONNACK 0x85, "
          "got %s" % brief(a))


@chk
def session_present_flag(x):
    s = x.sim()
    c = x.client(s, "sp", clean=False)
    check(not c.connack["sp"], "first persistent CONNECT: session present should be 0")
    x.sub(c, [("sp/t", 1)])
    c.send(DISCONNECT)
    x.advance(s, 1.1)
    c = x.client(s, "sp", clean=False)
    check(c.connack["sp"], "resumed persistent session: session present should be 1")
    pub = x.client(s, "pub")
    pub.send(publish("sp/t", "kept", qos=1))
    check(len(c.collect(until=1)) == 1, "the resumed session lost its subscription")
    c.send(DISCONNECT)
    x.advance(s, 1.1)
    c = x.client(s, "sp", clean=True)
    check(not c.connack["sp"], "clean session CONNECT: session present should be 0")
    c.send(DISCONNECT)
    x.advance(s, 1.1)
    c = x.client(s, "sp", clean=False)
    check(not c.connack["sp"], "after a clean session the old session is gone: session present should be 0")


@chk
def session_store_qos1_only(x):
    s = x.sim()
    c = x.client(s, "ss", clean=False)
    x.sub(c, [("ss/q1", 1), ("ss/q0", 0)])
    c.send(DISCONNECT)
    pub = x.client(s, "pub")
    data = b""
    for i in range(3):
        data += publish("ss/q1", "stored%d" % i, qos=1, pid=10 + i)
    data += publish("ss/q1", "qos0-a") + publish("ss/q1", "qos0-b")
    data += publish("ss/q0", "q1-on-q0-sub", qos=1, pid=20)
    pub.send(data)
    for _ in range(4):
        pub.expect("PUBACK")
    x.advance(s, 1.1)
    c = x.client(s, "ss", clean=False)
    got = [p["payload"] for p in c.collect(quiet=0.8, limit=5)]
    check(got == [b"stored0", b"stored1", b"stored2"], "offline storage should keep exactly the QoS 1 messages "
          "for QoS 1 subscriptions, in order; got %s" % got)


@chk
def session_replay_rate(x):
    s = x.sim(scale=20)
    c = x.client(s, "rp", clean=False, ka=1200)
    x.sub(c, [("rp/t", 1)])
    c.send(DISCONNECT)
    pub = x.client(s, "pub", ka=1200)
    pub.send(b"".join(publish("rp/t", "m%02d" % i, qos=1, pid=i + 1) for i in range(30)))
    for _ in range(30):
        check(pub.expect("PUBACK")["type"] == "PUBACK", "missing PUBACK")
    x.advance(s, 1.1)
    c = x.client(s, "rp", clean=False, ka=1200)
    check(c.connack["sp"], "session present should be 1")
    got = c.collect(until=30, quiet=2.0, limit=15)
    check([p["payload"] for p in got] == [b"m%02d" % i for i in range(30)],
          "expected the 30 stored messages in order, got %d" % len(got))
    ts = sorted(e["t"] for e in s.find(kind="out", type="PUBLISH", client="rp"))
    check(len(ts) == 30, "the event log shows %d PUBLISH to rp, expected 30" % len(ts))
    worst = max(sum(1 for u in ts if t <= u < t + 1000) for t in ts)
    check(worst <= 10, "%d stored messages replayed within one second of virtual time; AWS: at most 10" % worst)
    check(ts[-1] - ts[0] >= 2800, "30 messages replayed in %d ms of virtual time; at 10/s it takes >= 2.9 s"
          % (ts[-1] - ts[0]))


@chk
def session_expiry_v311(x):
    s = x.sim()
    c = x.client(s, "se", clean=False)
    x.sub(c, [("se/t", 1)])
    c.send(DISCONNECT)
    x.advance(s, 3590)
    c = x.client(s, "se", clean=False)
    check(c.connack["sp"], "the session expired before 1 h")
    c.send(DISCONNECT)
    x.advance(s, 3601)
    check(decision(s, "session_expired"), "no session_expired decision after 1 h offline")
    c = x.client(s, "se", clean=False)
    check(not c.connack["sp"], "after the expiry: session present should be 0")


@chk
def session_expiry_v5_clamped(x):
    s = x.sim()
    c = x.client(s, "se5", v=5, clean=False, cprops=props(session_expiry=7200))
    check(c.connack["props"].get("session_expiry") == 3600, "SEI 7200 should be clamped to 3600 and returned in "
          "CONNACK, got %s" % c.connack["props"].get("session_expiry"))
    c.send(DISCONNECT)
    x.advance(s, 3590)
    c = x.client(s, "se5", v=5, clean=False, cprops=props(session_expiry=600))
    check(c.connack["sp"], "session lost before its clamped expiry")
    c.send(DISCONNECT)
    x.advance(s, 601)
    c = x.client(s, "se5", v=5, clean=False, cprops=props(session_expiry=600))
    check(not c.connack["sp"], "session present after its 600 s expiry")


@chk
def session_not_across_versions(x):
    s = x.sim()
    c = x.client(s, "sv", clean=False)
    x.sub(c, [("sv/t", 1)])
    c.send(DISCONNECT)
    x.advance(s, 1.1)
    c5 = x.client(s, "sv", v=5, clean=False, cprops=props(session_expiry=3600))
    check(not c5.connack["sp"], "an MQTT 5 CONNECT resumed an MQTT 3.1.1 session")
    check(decision(s, "session_discarded", detail="other protocol version"),
          "no session_discarded (other protocol version) decision")


@chk
def keepalive_clamp_v5_server_keep_alive(x):
    s = x.sim()
    for cid, ka, want in (("k5", 5, 30), ("k0", 0, 1200), ("k9", 5000, 1200), ("k60", 60, None)):
        c = x.client(s, cid, v=5, ka=ka)
        got = c.connack["props"].get("server_keep_alive")
        check(got == want, "keep-alive %d: expected Server Keep Alive %s, got %s" % (ka, want, got))


@chk
def keepalive_timeout_1_5x_clamped(x):
    s = x.sim()
    c = x.client(s, "ka", ka=10)  # clamped to 30: the deadline is 45 s
    x.advance(s, 44)
    p = c.next(0.3)
    check(p["type"] == "TIMEOUT", "closed before 1.5 x the clamped keep-alive (44 s of 45): %s" % brief(p))
    x.advance(s, 1.5)
    closed, seen = c.ended(2.0)
    check(closed, "still open after 1.5 x 30 s without traffic")
    close_reason(s, "MQTT_KEEP_ALIVE_TIMEOUT")


@chk
def keepalive_timeout_v5_8d(x):
    s = x.sim()
    c = x.client(s, "ka5", v=5, ka=30)
    x.advance(s, 45.5)
    disconnect_with(c, 0x8D)


@chk
def will_on_abnormal_close(x):
    s = x.sim()
    w = x.client(s, "watch")
    x.sub(w, [("will/#", 1)])
    c = x.client(s, "w1", will=("will/w1", "gone", 1, False))
    c.close()
    got = w.collect(until=1, quiet=1.5)
    check(len(got) == 1 and got[0]["payload"] == b"gone", "no Will after a close without DISCONNECT")
    check(decision(s, "will_published"), "no will_published decision")


@chk
def will_not_on_disconnect(x):
    s = x.sim()
    w = x.client(s, "watch")
    x.sub(w, [("will/#", 1)])
    c = x.client(s, "w2", will=("will/w2", "gone", 1, False))
    c.send(DISCONNECT)
    c.ended()
    no_publish(w, quiet=0.6, what="Will after a client DISCONNECT")


@chk
def hash_does_not_match_parent(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("hp/#", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("hp", "parent", qos=1, pid=1) + publish("hp/", "empty", qos=1, pid=2) +
             publish("hp/x/y", "deep", qos=1, pid=3))
    got = sorted(p["payload"] for p in sub.collect(quiet=0.5))
    check(got == [b"deep", b"empty"], "hp/# should match hp/ and hp/x/y but not hp; got %s" % got)


@chk
def topic_limits_v311(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("tl/#", 1)])
    ok = "tl/" + "a" * 253
    p1 = x.client(s, "p1")
    p1.send(publish(ok, "256", qos=1) + publish("tl/1/2/3/4/5/6/7", "7 slashes", qos=1, pid=2))
    check(p1.expect("PUBACK")["type"] == "PUBACK" and p1.expect("PUBACK")["type"] == "PUBACK",
          "a 256-byte topic or one with 7 slashes was refused")
    check(len(sub.collect(until=2)) == 2, "the messages within the limits were not delivered")
    p2 = x.client(s, "p2")
    p2.send(publish(ok + "b", "257", qos=1))
    ended_without(p2, "a PUBACK")
    p3 = x.client(s, "p3")
    p3.send(publish("tl/1/2/3/4/5/6/7/8", "8 slashes", qos=1))
    ended_without(p3, "a PUBACK")
    p4 = x.client(s, "p4")
    p4.send(subscribe(1, [("tl/1/2/3/4/5/6/7/+", 1)]))
    ended_without(p4, "a SUBACK")


@chk
def topic_limits_rules_prefix_exempt(x):
    s = x.sim()
    c = x.client(s, "ingest")
    c.send(publish("$aws/rules/myrule/1/2/3/4/5/6/7/x", "a", qos=1, pid=1) +
           publish("$aws/rules/myrule/" + "a" * 256, "b", qos=1, pid=2))
    a, b = c.expect("PUBACK"), c.expect("PUBACK")
    check(a["type"] == "PUBACK" and b["type"] == "PUBACK", "Basic Ingest topics past the limits only because of "
          "the $aws/rules/<rule>/ prefix were refused: %s, %s" % (brief(a), brief(b)))
    check(decision(s, "rules_ingest"), "no rules_ingest decision")


@chk
def topic_limits_v5_reason_codes(x):
    s = x.sim()
    c = x.client(s, "t5", v=5)
    c.send(publish("t/" + "a" * 255, "x", qos=1, v=5))
    a = c.expect("PUBACK")
    check(a["type"] == "PUBACK" and a["rc"] == 0x90, "257-byte topic: expected PUBACK 0x90, got %s" % brief(a))
    codes = x.sub(c, [("t/1/2/3/4/5/6/7/8", 1), ("t/ok", 1)], pid=2)
    check(codes == [0x8F, 1], "8-slash filter: expected SUBACK [0x8F, 0x01], got %s" % codes)
    check(c.alive(), "MQTT 5 reports, does not disconnect")


@chk
def subscribe_8_filters_per_packet(x):
    s = x.sim()
    c = x.client(s, "s8")
    codes = x.sub(c, [("f/%d" % i, 1) for i in range(8)])
    check(codes == [1] * 8, "8 filters: expected 8 granted, got %s" % codes)
    c9 = x.client(s, "s9")
    c9.send(subscribe(1, [("f/%d" % i, 1) for i in range(9)]))
    ended_without(c9, "a SUBACK")
    u9 = x.client(s, "u9")
    u9.send(unsubscribe(1, ["f/%d" % i for i in range(9)]))
    ended_without(u9, "an UNSUBACK")


@chk
def subscriptions_per_connection_50(x):
    s = x.sim()
    c = x.client(s, "s50")
    for k in range(7):
        n = 8 if k < 6 else 2
        codes = x.sub(c, [("s/%d/%d" % (k, i), 0) for i in range(n)], pid=k + 1)
        check(codes == [0] * n, "subscriptions 1..50 should be granted, got %s" % codes)
    c.send(subscribe(9, [("s/51", 0)]))
    ended_without(c, "a SUBACK")


@chk
def payload_limit_128k(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("pl/t", 1)])
    c = x.client(s, "big")
    c.send(publish("pl/t", b"x" * 131072, qos=1))
    a = c.expect("PUBACK", 3.0)
    check(a["type"] == "PUBACK", "a 128 KB payload was refused: %s" % brief(a))
    got = sub.collect(until=1, quiet=2.0)
    check(len(got) == 1 and len(got[0]["payload"]) == 131072, "the 128 KB message was not delivered")
    c2 = x.client(s, "big2")
    c2.send(publish("pl/t", b"x" * 131073, qos=1))
    ended_without(c2, "a PUBACK", timeout=3.0)
    close_reason(s, "CLIENT_ERROR")


@chk
def payload_limit_v5_disconnect_95(x):
    s = x.sim()
    c = x.client(s, "big5", v=5)
    mps = c.connack["props"].get("maximum_packet_size")
    check(mps is not None and mps <= 131072, "CONNACK Maximum Packet Size should be <= 128 KB, got %s" % mps)
    c.send(publish("pl/t", b"x" * 131073, qos=1, v=5))
    disconnect_with(c, 0x95, timeout=3.0)


def _rate_window(s, client):
    ts = [e["t"] for e in s.find(kind="in", type="PUBLISH", client=client)]
    return (max(ts) - min(ts)) / 1000.0 if ts else 0.0


@chk
def publish_rate_100_per_second(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("pr/t", 0)])
    pub = x.client(s, "pub")
    pub.send(b"".join(publish("pr/t", "%d" % i) for i in range(150)))
    got = sub.collect(quiet=0.6)
    allowed = 100 + math.ceil(100 * _rate_window(s, "pub")) + 1
    check(100 <= len(got) <= allowed, "150 publishes in a burst: expected 100..%d delivered, got %d"
          % (allowed, len(got)))
    check(len(s.find(kind="decision", what="publish_rate_discarded")) == 150 - len(got),
          "the discarded publishes are not all in the event log")
    x.advance(s, 1.1)
    sub.pubs.clear()
    pub.send(publish("pr/t", "later"))
    check(len(sub.collect(until=1)) == 1, "publishing did not resume after a second")


@chk
def publish_rate_v5_puback_97(x):
    s = x.sim()
    pub = x.client(s, "pub5", v=5)
    pub.send(b"".join(publish("pr/t", "%d" % i, qos=1, pid=i + 1, v=5) for i in range(150)))
    codes = []
    for _ in range(150):
        a = pub.expect("PUBACK")
        if a["type"] != "PUBACK":
            break
        codes.append(a["rc"])
    check(len(codes) == 150, "expected 150 PUBACKs, got %d" % len(codes))
    ok, quota = codes.count(0), codes.count(0x97)
    allowed = 100 + math.ceil(100 * _rate_window(s, "pub5")) + 1
    check(100 <= ok <= allowed and ok + quota == 150, "expected 100..%d PUBACK 0x00 and the rest 0x97, got "
          "%d and %d" % (allowed, ok, quota))


@chk
def throughput_delayed_not_dropped(x):
    s = x.sim(scale=10)
    sub = x.client(s, "sub", ka=1200)
    x.sub(sub, [("tp/t", 0)])
    pub = x.client(s, "pub", ka=1200)
    n, size = 10, 120 * 1024
    pub.send(b"".join(publish("tp/t", bytes([65 + i]) * size) for i in range(n)))
    got = sub.collect(until=n, quiet=3.0, limit=20)
    check(len(got) == n, "%d of %d messages arrived; over 512 KiB/s AWS delays, it does not drop" % (len(got), n))
    span = _rate_window(s, "pub")
    want = (n * size - 512 * 1024) / (512 * 1024.0) * 0.9
    sizes = sorted(e.get("size", 0) for e in s.find(kind="in", type="PUBLISH", client="pub"))
    check(span >= want, "%d bytes read in %.2f s of virtual time, not delayed; at 512 KiB/s that takes >= %.2f s "
          "(the event log's PUBLISH sizes are %d..%d bytes for %d-byte payloads: only part of each packet "
          "seems to be counted)" % (n * size, span, want, sizes[0], sizes[-1], size))
    check(decision(s, "throughput_delayed"), "no throughput_delayed decision")


@chk
def connect_rate_per_client_id(x):
    s = x.sim()
    c = x.client(s, "cr")
    c.send(DISCONNECT)
    c.ended()
    c2 = x.raw(s)
    c2.send(connect_pkt("cr"))
    ended_without(c2, "a CONNACK")
    check(decision(s, "connect_refused", detail=lambda d: "THROTTLED" in d), "no THROTTLED refusal in the log")
    x.advance(s, 1.1)
    c3 = x.client(s, "cr")
    c3.send(DISCONNECT)
    c5 = x.raw(s, v=5)
    a = c5.connect("cr")
    check(a["type"] == "CONNACK" and a["rc"] == 0x97, "MQTT 5 second CONNECT within 1 s: expected CONNACK 0x97, "
          "got %s" % brief(a))


@chk
def lifecycle_connected_disconnected_mtls(x):
    s = x.sim(tcp=False)
    w = x.client(s, "watch", listener="mtls")
    x.sub(w, [("$aws/events/presence/+/+", 1)])
    c = x.client(s, "lc1", listener="mtls")
    c.send(DISCONNECT)
    got = [p for p in w.collect(until=2, quiet=1.0) if p["topic"].endswith("/lc1")]
    topics = [p["topic"] for p in got]
    check(topics == ["$aws/events/presence/connected/lc1", "$aws/events/presence/disconnected/lc1"],
          "expected connected then disconnected for lc1, got %s" % topics)
    con, dis = (json.loads(p["payload"]) for p in got)
    cid = cert_id_of(s.ep["cert_file"])
    for k, v in (("clientId", "lc1"), ("eventType", "connected"), ("principalIdentifier", cid),
                 ("ipAddress", "127.0.0.1")):
        check(con.get(k) == v, "connected event: %s should be %r, got %r" % (k, v, con.get(k)))
    for k in ("timestamp", "sessionIdentifier", "versionNumber"):
        check(k in con, "connected event without %s: %s" % (k, con))
    for k, v in (("eventType", "disconnected"), ("clientInitiatedDisconnect", True),
                 ("disconnectReason", "CLIENT_INITIATED_DISCONNECT"), ("versionNumber", con["versionNumber"]),
                 ("sessionIdentifier", con["sessionIdentifier"])):
        check(dis.get(k) == v, "disconnected event: %s should be %r, got %r" % (k, v, dis.get(k)))


@chk
def lifecycle_subscribed_unsubscribed(x):
    s = x.sim()
    w = x.client(s, "watch")
    x.sub(w, [("$aws/events/subscriptions/+/+", 1)])
    c = x.client(s, "ls")
    x.sub(c, [("a/b", 1), ("c/#", 0)])
    c.send(unsubscribe(2, ["a/b"]))
    check(c.expect("UNSUBACK")["type"] == "UNSUBACK", "no UNSUBACK")
    got = [(p["topic"], json.loads(p["payload"])) for p in w.collect(until=3, quiet=1.0)
           if p["topic"].endswith("/ls")]
    check([t for t, _ in got] == ["$aws/events/subscriptions/subscribed/ls",
                                  "$aws/events/subscriptions/unsubscribed/ls"],
          "expected subscribed then unsubscribed events, got %s" % [t for t, _ in got])
    check(got[0][1].get("topics") == ["a/b", "c/#"] and got[0][1].get("eventType") == "subscribed",
          "subscribed event: %s" % got[0][1])
    check(got[1][1].get("topics") == ["a/b"] and got[1][1].get("eventType") == "unsubscribed",
          "unsubscribed event: %s" % got[1][1])


@chk
def lifecycle_none_for_wildcard_client_ids(x):
    s = x.sim()
    w = x.client(s, "watch")
    x.sub(w, [("$aws/events/#", 1)])
    x.client(s, "has+plus")
    x.client(s, "has#hash")
    x.client(s, "plain")
    got = [p["topic"] for p in w.collect(quiet=0.6) if not p["topic"].endswith("/watch")]
    check(got == ["$aws/events/presence/connected/plain"],
          "only the client without + or # should get an event, got %s" % got)


def _inactive_sim(x):
    return x.sim(tcp=False, config={"things": [{"name": "dead", "status": "INACTIVE"}]})


def _v5_refused_not_authorized(x, s, device, cid, why):
    """An MQTT 5 CONNECT from `device` as `cid` gets CONNACK 0x87 and
    $aws/events/presence/connect_failed/<cid> says AUTHORIZATION_FAILED."""
    w = x.client(s, "watch-" + cid, listener="mtls")
    x.sub(w, [("$aws/events/presence/connect_failed/+", 1)])
    c = x.raw(s, v=5, listener="mtls", device=device)
    a = c.connect(cid)
    check(a["type"] == "CONNACK" and a["rc"] == 0x87, "%s, MQTT 5: expected CONNACK 0x87, got %s" % (why, brief(a)))
    got = w.collect(until=1, quiet=1.0)
    check(len(got) == 1 and got[0]["topic"] == "$aws/events/presence/connect_failed/" + cid,
          "no connect_failed event for %s: %s" % (cid, [brief(p) for p in got]))
    ev = json.loads(got[0]["payload"])
    check(ev.get("eventType") == "connect_failed" and ev.get("connectFailureReason") == "AUTHORIZATION_FAILED"
          and ev.get("clientId") == cid, "connect_failed payload: %s" % ev)


@chk
def connect_failed_event_v5_87(x):
    _v5_refused_not_authorized(x, _inactive_sim(x), "dead", "dead", "inactive certificate")


@chk
def connect_refused_v311_no_connack(x):
    s = _inactive_sim(x)
    c = x.raw(s, listener="mtls", device="dead")
    c.send(connect_pkt("dead"))
    ended_without(c, "a CONNACK (AWS closes an unauthorized MQTT 3.1.1 CONNECT without one, §1.15/§6.6)")


# ---- IoT policies (§6) ------------------------------------------------------------------

_ARN = "arn:aws:iot:us-east-1:123456789012:"
_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": _ARN + "client/pol-*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": [_ARN + "topic/d/*", _ARN + "topic/own/${iot:ClientId}"]},
    {"Sid": "secret", "Effect": "Deny", "Action": ["iot:Publish", "iot:Receive"], "Resource": _ARN + "topic/d/secret/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": [_ARN + "topicfilter/d/#", _ARN + "topicfilter/d/open"]}]}


def _policy_sim(x):
    """Device "pol" has the restrictive policy above; the default device keeps allow-all."""
    return x.sim(tcp=False, config={"policies": {"restricted": _POLICY},
                                    "things": [{"name": "pol", "policies": ["restricted"]}]})


def _pol(x, s, cid, v=4, **kw):
    return x.client(s, cid, v=v, listener="mtls", device="pol", **kw)


@chk
def policy_connect_denied_v311_no_connack(x):
    s = _policy_sim(x)
    c = x.raw(s, listener="mtls", device="pol")
    c.send(connect_pkt("intruder"))
    ended_without(c, "a CONNACK (iot:Connect denied: AWS closes an MQTT 3.1.1 CONNECT without one, §6.6)")
    ev = decision(s, "not_authorized", action="iot:Connect")
    check(ev and ev.get("resource") == _ARN + "client/intruder" and ev.get("effect") == "default deny",
          "no not_authorized decision for iot:Connect on client/intruder: %s" % ev)


@chk
def policy_connect_denied_v5_87_connect_failed(x):
    s = _policy_sim(x)
    _v5_refused_not_authorized(x, s, "pol", "intruder5", "iot:Connect denied")
    # A Will on a topic the device may not publish to refuses the CONNECT too (§6.2, §4.2).
    c = x.raw(s, v=5, listener="mtls", device="pol")
    a = c.connect("pol-will", will=("elsewhere/lwt", "x", 0, False))
    check(a["type"] == "CONNACK" and a["rc"] == 0x87, "Will topic not publishable, MQTT 5: expected CONNACK "
          "0x87, got %s" % brief(a))
    _pol(x, s, "pol-ok", v=5, will=("d/lwt", "x", 0, False))


@chk
def policy_publish_denied_v311_closes(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-p3")
    c.send(publish("d/ok", "x", qos=1, pid=1))
    a = c.expect("PUBACK")
    check(a["type"] == "PUBACK", "allowed publish: expected PUBACK, got %s" % brief(a))
    c.send(publish("elsewhere", "x", qos=1, pid=2))
    ended_without(c, "a PUBACK (iot:Publish denied: MQTT 3.1.1 closes the connection, §6.6)")
    close_reason(s, "AUTH_ERROR")


@chk
def policy_publish_denied_v5_puback_87(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-p5", v=5)
    c.send(publish("elsewhere", "x", qos=1, pid=1, v=5))
    a = c.expect("PUBACK")
    check(a["type"] == "PUBACK" and a["rc"] == 0x87, "iot:Publish denied, MQTT 5 QoS 1: expected PUBACK 0x87, got %s"
          % brief(a))
    c.send(publish("elsewhere", "x", qos=0, v=5))
    check(c.alive(), "MQTT 5: the connection must stay open after a denied PUBLISH (QoS 0 dropped silently)")


@chk
def policy_subscribe_denied_v311_no_suback(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-s3")
    check(x.sub(c, [("d/#", 1)]) == [1], "allowed filter d/# not granted")
    c.send(subscribe(2, [("d/+", 1)]))
    ended_without(c, "a SUBACK (iot:Subscribe denied: MQTT 3.1.1 closes the connection, §6.6)")
    close_reason(s, "AUTH_ERROR")


@chk
def policy_subscribe_denied_v5_suback_87(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-s5", v=5)
    codes = x.sub(c, [("d/+", 1), ("d/open", 1)])
    check(codes == [0x87, 1], "MQTT 5: expected SUBACK [0x87, 0x01] (d/+ is not the literal filter the policy "
          "names, d/open is), got %s" % ["0x%02x" % k for k in codes])
    check(c.alive(), "MQTT 5: the connection must stay open after a denied filter")


@chk
def policy_receive_denied_not_delivered(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-r")
    x.sub(c, [("d/#", 1)])
    p = x.client(s, "pub", listener="mtls")
    p.send(publish("d/secret/x", "hidden", qos=1, pid=1))
    p.send(publish("d/open", "seen", qos=1, pid=2))
    got = c.collect(quiet=0.6)
    check([g["topic"] for g in got] == ["d/open"], "iot:Receive denied on d/secret/x: expected only d/open, got %s"
          % [brief(g) for g in got])
    check(c.alive(), "a denied Receive must not close the connection")


@chk
def policy_deny_over_allow_decision_record(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-e", v=5)
    for pid, topic, rc, effect in ((1, "d/open", 0, "Allow"), (2, "d/secret/x", 0x87, "Deny"),
                                   (3, "other", 0x87, "default deny")):
        c.send(publish(topic, "x", qos=1, pid=pid, v=5))
        a = c.expect("PUBACK")
        check(a["type"] == "PUBACK" and a["rc"] == rc, "publish to %s: expected PUBACK 0x%02x (%s), got %s"
              % (topic, rc, effect, brief(a)))
        ev = decision(s, "authorized" if rc == 0 else "not_authorized", action="iot:Publish",
                      resource=_ARN + "topic/" + topic)
        check(ev and ev.get("effect") == effect, "decision for %s: expected effect %s, got %s" % (topic, effect, ev))
        if effect == "Deny":
            check(ev.get("policy") == "restricted" and ev.get("statement") == 2 and ev.get("sid") == "secret",
                  "the decision must name the deciding statement (restricted, 2, sid secret): %s" % ev)


@chk
def policy_variable_client_id(x):
    s = _policy_sim(x)
    c = _pol(x, s, "pol-v", v=5)
    for pid, topic, rc in ((1, "own/pol-v", 0), (2, "own/pol-w", 0x87)):
        c.send(publish(topic, "x", qos=1, pid=pid, v=5))
        a = c.expect("PUBACK")
        check(a["type"] == "PUBACK" and a["rc"] == rc, "topic/own/${iot:ClientId} for client pol-v, publish to %s: "
              "expected PUBACK 0x%02x, got %s" % (topic, rc, brief(a)))


@chk
def reserved_topics_v311(x):
    s = x.sim()
    ok = x.client(s, "ok")
    ok.send(publish("$aws/things/t1/shadow/update", "{}", qos=1))
    a = ok.expect("PUBACK")
    check(a["type"] == "PUBACK", "publish to $aws/things/<t>/shadow/update refused: %s" % brief(a))
    for cid, pkt_, what in (("p", publish("$aws/events/presence/connected/x", "fake", qos=1), "a PUBACK"),
                            ("s1", subscribe(1, [("$aws/rules/r/#", 1)]), "a SUBACK"),
                            ("s2", subscribe(1, [("$SYS/#", 1)]), "a SUBACK")):
        c = x.client(s, cid)
        c.send(pkt_)
        ended_without(c, what)
    close_reason(s, "AUTH_ERROR")


@chk
def reserved_topics_v5_reported(x):
    s = x.sim(profile="current")
    c = x.client(s, "r5", v=5)
    c.send(publish("$aws/events/presence/connected/x", "fake", qos=1, v=5))
    a = c.expect("PUBACK")
    check(a["type"] == "PUBACK" and a["rc"] == 0x87, "v5 publish to a subscribe-only reserved topic: expected "
          "PUBACK 0x87, got %s" % brief(a))
    c.send(publish("$aws/things/t1/shadow/update", "{}", qos=1, pid=2, retain=True, v=5))
    a = c.expect("PUBACK")
    check(a["type"] == "PUBACK" and a["rc"] == 0x87, "v5 retained publish to a $ topic: expected PUBACK 0x87, "
          "got %s" % brief(a))
    codes = x.sub(c, [("$aws/rules/r/#", 1)], pid=3)
    check(codes == [0x87], "v5 subscribe to $aws/rules/...: expected SUBACK 0x87, got %s" % codes)
    check(c.alive(), "MQTT 5 reports, does not disconnect")


@chk
def mqtt5_connack_properties(x):
    for profile, retain in (("classic", 0), ("current", 1)):
        s = x.sim(profile=profile)
        c = x.client(s, "p5", v=5)
        p = c.connack["props"]
        want = {"maximum_qos": 1, "retain_available": retain, "wildcard_available": 1,
                "subscription_id_available": 0, "topic_alias_maximum": 8}
        bad = {k: p.get(k) for k, v in want.items() if p.get(k) != v}
        check(not bad, "%s CONNACK: expected %s, these differ: %s" % (profile, want, bad))
        check(p.get("maximum_packet_size", 0) and p["maximum_packet_size"] <= 131072,
              "Maximum Packet Size should be <= 128 KB: %s" % p.get("maximum_packet_size"))


@chk
def mqtt5_message_expiry(x):
    s = x.sim()
    sub = x.client(s, "sub", v=5, clean=False, cprops=props(session_expiry=3600))
    x.sub(sub, [("mei/#", 1)])
    pub = x.client(s, "pub", v=5)
    pub.send(publish("mei/live", "long", qos=1, v=5, pprops=props(message_expiry=700000)))
    got = sub.collect(until=1)
    mei = got[0]["props"].get("message_expiry") if got else None
    check(mei in (604799, 604800), "MEI 700000 should be clamped to 604800, got %s" % mei)
    sub.send(DISCONNECT)
    pub.send(publish("mei/q", "a", qos=1, pid=2, v=5, pprops=props(message_expiry=30)) +
             publish("mei/q", "b", qos=1, pid=3, v=5, pprops=props(message_expiry=5)))
    x.advance(s, 20)
    sub = x.client(s, "sub", v=5, clean=False, cprops=props(session_expiry=3600))
    got = sub.collect(quiet=0.8)
    check([p["payload"] for p in got] == [b"a"], "after 20 s offline only the 30 s message should arrive, got %s"
          % [p["payload"] for p in got])
    mei = got[0]["props"].get("message_expiry")
    check(mei in (9, 10), "the 30 s message delivered 20 s later should carry MEI 10 (remaining), got %s" % mei)
    check(decision(s, "message_expired"), "no message_expired decision")


@chk
def mqtt5_subscription_identifier_a1(x):
    s = x.sim()
    c = x.client(s, "sid", v=5)
    c.send(subscribe(1, [("a/b", 1)], v=5, sprops=props(subscription_id=5)))
    disconnect_with(c, 0xA1)


@chk
def mqtt5_topic_alias(x):
    s = x.sim()
    sub = x.client(s, "sub")
    x.sub(sub, [("ta/x", 1)])
    c = x.client(s, "ta", v=5)
    check(c.connack["props"].get("topic_alias_maximum") == 8, "Topic Alias Maximum should be 8")
    c.send(publish("ta/x", "1", qos=1, pid=1, v=5, pprops=props(topic_alias=8)) +
           publish("", "2", qos=1, pid=2, v=5, pprops=props(topic_alias=8)))
    got = [(p["topic"], p["payload"]) for p in sub.collect(until=2)]
    check(got == [("ta/x", b"1"), ("ta/x", b"2")], "topic alias 8 not honoured: %s" % got)
    acks = [c.expect("PUBACK")["rc"] for _ in range(2)]
    check(acks == [0, 0], "PUBACKs for the aliased publishes: %s" % acks)
    c.send(publish("ta/x", "3", qos=1, pid=3, v=5, pprops=props(topic_alias=9)))
    disconnect_with(c, 0x94)


@chk
def suback_delay_switch(x):
    s = x.sim(config={"deviations": {"suback_delay_ms": 3000}})
    sub = x.client(s, "sub")
    x.sub(sub, [("sd/t", 1)])
    pub = x.client(s, "pub")
    pub.send(publish("sd/t", "x", qos=1))
    no_publish(sub, quiet=0.4, what="delivery within the SUBACK delay")
    x.advance(s, 3.1)
    check(len(sub.collect(until=1)) == 1, "no delivery after the SUBACK delay")
    ack = s.find(kind="out", type="SUBACK", client="sub")[0]["t"]
    out = s.find(kind="out", type="PUBLISH", client="sub")[0]["t"]
    check(out - ack >= 3000, "delivered %d ms after SUBACK, the delay is 3000 ms" % (out - ack))


@chk
def order_not_guaranteed_switch(x):
    s = x.sim(config={"deviations": {"reorder_permille": 1000}})
    sub = x.client(s, "sub")
    x.sub(sub, [("o/t", 0)])
    pub = x.client(s, "pub")
    pub.send(publish("o/t", "1") + publish("o/t", "2"))
    got = [p["payload"] for p in sub.collect(until=2)]
    check(got == [b"2", b"1"], "reorder_permille=1000: expected 2 then 1, got %s" % got)
    check(decision(s, "reordered"), "no reordered decision")


@chk
def second_connect_closes(x):
    s = x.sim()
    c = x.client(s, "two")
    c.send(connect_pkt("two"))
    ended_without(c, "a CONNACK")
    c5 = x.client(s, "two5", v=5)
    c5.send(connect_pkt("two5", v=5))
    disconnect_with(c5, 0x82)


@chk
def packet_before_connect_closes(x):
    s = x.sim()
    c = x.raw(s)
    c.send(b"\xc0\x00")  # PINGREQ
    ended_without(c, "a PINGRESP")
    c2 = x.raw(s)
    c2.send(subscribe(1, [("a", 0)]))
    ended_without(c2, "a SUBACK")


@chk
def qos2_flow_packets_refused(x):
    s = x.sim()
    c = x.client(s, "rel")
    c.send(b"\x62\x02\x00\x01")  # PUBREL
    ended_without(c, "a PUBCOMP")
    c5 = x.client(s, "rel5", v=5)
    c5.send(b"\x50\x02\x00\x01")  # PUBREC
    disconnect_with(c5, 0x82)
    a5 = x.client(s, "auth5", v=5)
    a5.send(b"\xf0\x00")  # AUTH (no enhanced authentication at AWS)
    p = a5.expect("DISCONNECT")
    check(p["type"] == "EOF" or (p["type"] == "DISCONNECT" and p["rc"] in (0x81, 0x82)),
          "MQTT 5 AUTH: expected DISCONNECT 0x82 (or 0x81) and a close, got %s" % brief(p))
    check(a5.ended()[0] or p["type"] == "EOF", "the connection stays open after AUTH")


@chk
def malformed_unsubscribe_flags(x):
    s = x.sim()
    c = x.client(s, "uf")
    c.send(unsubscribe(1, ["a/b"], first=0xA0))
    ended_without(c, "an UNSUBACK")
    close_reason(s, "CLIENT_ERROR")
    c5 = x.client(s, "uf5", v=5)
    c5.send(unsubscribe(1, ["a/b"], v=5, first=0xA0))
    disconnect_with(c5, 0x81)


@chk
def alpn_x_amzn_mqtt_ca_only(x):
    s = x.sim(tcp=False)
    c = x.client(s, "alpn", listener="alpn", alpn=["x-amzn-mqtt-ca"])
    check(c.alive(), "mTLS over the ALPN listener with x-amzn-mqtt-ca does not work")
    try:
        c2 = x.raw(s, listener="alpn", alpn=["mqtt"])
        r = c2.connect("alpn2")
        check(r["type"] == "EOF", "ALPN mqtt (custom auth, not simulated) was accepted: %s" % brief(r))
    except OSError:
        pass  # refused during the handshake: also a refusal
    check(decision(s, "alpn_refused", listener="alpn"), "no alpn_refused decision in the event log")


@chk
def shutdown_disconnect_8b(x):
    s = x.sim()
    c5 = x.client(s, "bye5", v=5)
    c3 = x.client(s, "bye3")
    t = threading.Thread(target=s.stop)
    t.start()
    try:
        disconnect_with(c5, 0x8B, timeout=3.0)
        closed, seen = c3.ended(3.0)
        check(closed and not seen, "MQTT 3.1.1 client: expected a plain close at shutdown, got %s"
              % [brief(p) for p in seen])
    finally:
        t.join()
    check(s.exit_code == 0, "iotsim exited with %s on SIGTERM" % s.exit_code)


# ---- the tag sync row ------------------------------------------------------------------

def tags_in_source():
    """{tag: ["file:line", ...]} for every [AWS-...] in broker-sim/src."""
    out = {}
    root = os.path.join(REPO, "broker-sim", "src")
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            p = os.path.join(d, f)
            with open(p, errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    for m in TAG_RE.finditer(line):
                        out.setdefault(m.group(1), []).append("%s:%d" % (os.path.relpath(p, REPO), n))
    return out


def tag_sync(behaviours):
    ids = {b["id"] for b in behaviours}
    src = tags_in_source()
    missing_in_src = sorted(ids - set(src))
    missing_in_json = sorted(set(src) - ids)
    msgs = []
    if missing_in_src:
        msgs.append("in behaviours.json but tagged nowhere in broker-sim/src: %s" % ", ".join(missing_in_src))
    if missing_in_json:
        msgs.append("tagged in broker-sim/src but not in behaviours.json: %s" % ", ".join(
            "%s (%s)" % (t, src[t][0]) for t in missing_in_json))
    return msgs, len(ids), len(src)


# ---- Device Shadow service (aws-services.md §1) ---------------------------------------

def shadow_exchange(x, c, prefix, op, doc, n):
    """Publishes doc (dict, bytes or None) to prefix/op at QoS 1 and returns
    {suffix: parsed JSON} of the next n responses on prefix/+/+."""
    payload = b"" if doc is None else doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    c.pubs.clear()
    c.send(publish(prefix + "/" + op, payload, qos=1, pid=9, v=c.v))
    check(c.expect("PUBACK")["type"] == "PUBACK", "no PUBACK for the %s request" % op)
    got = {}
    for p in c.collect(quiet=0.4, until=n):
        check(p["topic"].startswith(prefix + "/"), "a response on %s" % p["topic"])
        got[p["topic"][len(prefix) + 1:]] = json.loads(p["payload"])
    return got


def shadow_client(x, s, cid, prefix, v=4):
    c = x.client(s, cid, v=v)
    codes = x.sub(c, [(prefix + "/+/+", 1)])
    check(codes == [1], "SUBSCRIBE %s/+/+: %s" % (prefix, codes))
    return c


@chk
def shadow_update_accepted_and_documents(x):
    s = x.sim()
    px = "$aws/things/confT/shadow"
    c = shadow_client(x, s, "sh", px)
    got = shadow_exchange(x, c, px, "update", {"state": {"reported": {"c": "green"}}, "clientToken": "t1"}, 2)
    check(sorted(got) == ["update/accepted", "update/documents"],
          "the first update of a shadow: expected accepted and documents, got %s" % sorted(got))
    a = got["update/accepted"]
    check(a.get("version") == 1 and a.get("clientToken") == "t1" and a.get("state") == {"reported": {"c": "green"}},
          "update/accepted: version 1, the token and the state as sent, got %s" % a)
    check(isinstance(a.get("metadata", {}).get("reported", {}).get("c", {}).get("timestamp"), int),
          "update/accepted: metadata.reported.c.timestamp (epoch seconds), got %s" % a.get("metadata"))
    d = got["update/documents"]
    check("previous" in d and d["previous"] is None, "update/documents of a new shadow: previous is null, got %s" % d)
    check(d.get("current", {}).get("version") == 1, "update/documents: current version 1, got %s" % d)
    ev = decision(s, "shadow", op="update", code=200)
    check(ev, "no shadow decision (op update, code 200) in the event log")


@chk
def shadow_delta_when_desired_and_reported_differ(x):
    s = x.sim()
    px = "$aws/things/confT/shadow/name/cfg"
    c = shadow_client(x, s, "sh", px)
    shadow_exchange(x, c, px, "update", {"state": {"reported": {"c": "green", "n": 1}}}, 2)
    got = shadow_exchange(x, c, px, "update", {"state": {"desired": {"c": "red", "n": 1.0}}, "clientToken": "t2"}, 3)
    check("update/delta" in got, "desired c=red against reported c=green: no update/delta (got %s)" % sorted(got))
    d = got["update/delta"]
    check(d.get("state") == {"c": "red"} and d.get("version") == 2 and d.get("clientToken") == "t2",
          "update/delta: state {c: red} only (1 == 1.0), version 2, the token; got %s" % d)
    got = shadow_exchange(x, c, px, "update", {"state": {"reported": {"c": "red"}}}, 2)
    check("update/delta" not in got, "reported brought in line with desired, yet a delta came: %s" % got)


@chk
def shadow_get_delete_and_404(x):
    s = x.sim()
    px = "$aws/things/confT/shadow"
    c = shadow_client(x, s, "sh", px)
    r = shadow_exchange(x, c, px, "get", None, 1).get("get/rejected", {})
    check(r.get("code") == 404 and r.get("message") == "No shadow exists with name: 'confT'",
          "get of a missing classic shadow: 404 \"No shadow exists with name: 'confT'\", got %s" % r)
    shadow_exchange(x, c, px, "update", {"state": {"desired": {"a": 1}}}, 3)
    g = shadow_exchange(x, c, px, "get", {"clientToken": "g"}, 1).get("get/accepted", {})
    check(g.get("state") == {"desired": {"a": 1}, "delta": {"a": 1}} and g.get("version") == 1
          and g.get("clientToken") == "g", "get/accepted: desired, delta, version 1, the token; got %s" % g)
    d = shadow_exchange(x, c, px, "delete", None, 1).get("delete/accepted", {})
    check(d.get("version") == 1 and "clientToken" not in d, "delete/accepted: the deleted version (1), got %s" % d)
    r = shadow_exchange(x, c, px, "delete", None, 1).get("delete/rejected", {})
    check(r.get("code") == 404, "a second delete: 404, got %s" % r)


@chk
def shadow_version_conflict(x):
    s = x.sim()
    px = "$aws/things/confT/shadow"
    c = shadow_client(x, s, "sh", px)
    shadow_exchange(x, c, px, "update", {"state": {"reported": {"a": 1}}}, 2)
    r = shadow_exchange(x, c, px, "update", {"state": {"reported": {"a": 2}}, "version": 5, "clientToken": "v"}, 1)
    rj = r.get("update/rejected", {})
    check(rj.get("code") == 409 and rj.get("message") == "Version conflict" and rj.get("clientToken") == "v",
          "update with version 5 against version 1: 409 Version conflict with the token, got %s" % r)
    a = shadow_exchange(x, c, px, "update", {"state": {"reported": {"a": 2}}, "version": 1}, 2).get("update/accepted")
    check(a and a.get("version") == 2, "update with the current version: accepted as version 2, got %s" % a)


@chk
def shadow_error_documents(x):
    s = x.sim()
    px = "$aws/things/confT/shadow"
    c = shadow_client(x, s, "sh", px)
    cases = [(b"{oops", 400, "Invalid JSON"), ({"clientToken": "k"}, 400, "Missing required node: state"),
             ({"state": {"delta": {}}}, 400, "State contains an invalid node: 'delta'"),
             ({"state": {"reported": {"x": "y" * 8200}}}, 413, "The payload exceeds the maximum size allowed"),
             (b"\xc3\x28", 415, "Unsupported documented encoding; supported encoding is UTF-8")]
    for doc, code, msg in cases:
        rj = shadow_exchange(x, c, px, "update", doc, 1).get("update/rejected", {})
        check(rj.get("code") == code and rj.get("message") == msg,
              "update %r: expected %d %r, got %s" % (doc if isinstance(doc, bytes) else json.dumps(doc)[:40], code,
                                                     msg, rj))
        check(isinstance(rj.get("code"), int), "the error code must be a JSON integer")


@chk
def shadow_responses_reach_every_subscriber(x):
    s = x.sim()
    px = "$aws/things/confT/shadow"
    c = shadow_client(x, s, "requester", px)
    other = x.client(s, "bystander", v=5)
    check(x.sub(other, [(px + "/update/accepted", 0)]) == [0], "SUBSCRIBE update/accepted")
    shadow_exchange(x, c, px, "update", {"state": {"reported": {"a": 1}}, "clientToken": "mine"}, 2)
    got = other.collect(quiet=0.4, until=1)
    check(len(got) == 1 and got[0]["topic"] == px + "/update/accepted" and got[0]["qos"] == 0
          and json.loads(got[0]["payload"]).get("clientToken") == "mine",
          "another client subscribed to update/accepted (QoS 0) must get the response at QoS 0: %s"
          % [brief(p) for p in got])


# ---- fleet provisioning (aws-services.md §2) ------------------------------------------

FLEET_TPL = {
    "Parameters": {"SerialNumber": {"Type": "String"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing",
                  "Properties": {"ThingName": {"Fn::Join": ["", ["Dev_", {"Ref": "SerialNumber"}]]}}},
        "certificate": {"Type": "AWS::IoT::Certificate",
                        "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "allow-all"}}},
    "DeviceConfiguration": {"Serial": {"Ref": "SerialNumber"}},
}


def prov_exchange(c, topic, payload):
    """Publishes to a provisioning request topic (subscribed to topic/+
    first) and returns (accepted|rejected, the parsed answer)."""
    c.pubs.clear()
    c.send(publish(topic, payload, qos=1, pid=11, v=c.v))
    check(c.expect("PUBACK")["type"] == "PUBACK", "no PUBACK for %s" % topic)
    got = c.collect(quiet=1.0, until=1)
    check(len(got) == 1, "%s: expected one answer, got %s" % (topic, [brief(p) for p in got]))
    return got[0]["topic"][len(topic) + 1:], json.loads(got[0]["payload"])


@chk
def provisioning_by_claim_pending_until_registered(x):
    s = x.sim(config={"provisioning_templates": {"Fleet": FLEET_TPL}})
    c = x.client(s, "claim")
    check(x.sub(c, [("$aws/certificates/create/json/+", 1), ("$aws/provisioning-templates/Fleet/provision/json/+", 1)])
          == [1, 1], "SUBSCRIBE to the provisioning topics")
    kind, r = prov_exchange(c, "$aws/certificates/create/json", b"")
    check(kind == "accepted" and sorted(r) == ["certificateId", "certificateOwnershipToken", "certificatePem",
                                                "privateKey"],
          "CreateKeysAndCertificate: accepted with certificateId, certificatePem, privateKey and the token; got %s %s"
          % (kind, sorted(r)))
    crt, key = os.path.join(x.tmp, "new.crt"), os.path.join(x.tmp, "new.key")
    with open(crt, "w") as f:
        f.write(r["certificatePem"])
    with open(key, "w") as f:
        f.write(r["privateKey"])
    check(r["certificateId"] == cert_id_of(crt), "certificateId is not the SHA-256 of the certificate")
    d = x.raw(s, listener="mtls", device=(crt, key))
    a = d.connect("Dev_1")
    check(not (a["type"] == "CONNACK" and a["rc"] == 0),
          "a certificate still PENDING_ACTIVATION connected (%s)" % brief(a))
    kind, e = prov_exchange(c, "$aws/provisioning-templates/Fleet/provision/json",
                            json.dumps({"certificateOwnershipToken": r["certificateOwnershipToken"],
                                        "parameters": {"SerialNumber": "1"}}).encode())
    check(kind == "accepted" and e == {"thingName": "Dev_1", "deviceConfiguration": {"Serial": "1"}},
          "RegisterThing: accepted with thingName Dev_1 and the evaluated deviceConfiguration; got %s %s" % (kind, e))
    d2 = x.raw(s, listener="mtls", device=(crt, key))
    a = d2.connect("Dev_1")
    check(a["type"] == "CONNACK" and a["rc"] == 0, "the registered certificate cannot connect: %s" % brief(a))
    check(decision(s, "provisioning", op="RegisterThing", code=200), "no provisioning decision in the event log")


@chk
def provisioning_error_documents(x):
    s = x.sim(config={"provisioning_templates": {"Fleet": FLEET_TPL}})
    c = x.client(s, "claim")
    x.sub(c, [("$aws/provisioning-templates/+/provision/json/+", 1)])
    kind, e = prov_exchange(c, "$aws/provisioning-templates/Fleet/provision/json", b"{}")
    check(kind == "rejected" and e == {"statusCode": 400, "errorCode": "InvalidCertificateOwnershipToken",
                                       "errorMessage": "Certificate ownership token cannot be empty."},
          "RegisterThing without a token: AWS's 400 InvalidCertificateOwnershipToken document, got %s %s" % (kind, e))
    kind, e = prov_exchange(c, "$aws/provisioning-templates/Nope/provision/json", b'{"certificateOwnershipToken":"t"}')
    check(kind == "rejected" and e.get("statusCode") == 404 and isinstance(e.get("errorCode"), str),
          "RegisterThing with an unknown template: rejected with statusCode 404, got %s %s" % (kind, e))


# ---- running and reporting ----------------------------------------------------------

def run_check(name, iotsim, keep):
    tmp = tempfile.mkdtemp(prefix="conf-%s-" % name[:20])
    x = Ctx(iotsim, tmp)
    t0 = time.monotonic()
    res = {"check": name, "result": "PASS", "detail": "", "log": ""}
    try:
        CHECKS[name](x)
        for c in x.clients:
            c.close()
        x.verify_sims()
    except Fail as e:
        res.update(result="FAIL", detail=str(e), log=x.log_tail())
    except Skip as e:
        res.update(result="SKIP", detail=str(e))
    except Exception as e:  # a broken check is a failure, with its traceback
        res.update(result="FAIL", detail="%s: %s" % (type(e).__name__, e),
                   log=traceback.format_exc() + "\n" + x.log_tail())
    finally:
        x.cleanup()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res["seconds"] = round(time.monotonic() - t0, 2)
    return res


def load_behaviours(path):
    with open(path) as f:
        doc = json.load(f)
    bs = doc["behaviours"]
    errs, seen = [], set()
    for b in bs:
        for k in ("id", "statement", "ref", "checks"):
            if k not in b:
                errs.append("%s: no %s" % (b.get("id", "?"), k))
        if b.get("id") in seen:
            errs.append("%s: listed twice" % b["id"])
        seen.add(b.get("id"))
        for c in b.get("checks", []):
            if c not in CHECKS:
                errs.append("%s: no check named %s in run.py" % (b["id"], c))
    used = {c for b in bs for c in b.get("checks", [])}
    for c in sorted(set(CHECKS) - used):
        errs.append("check %s is listed under no behaviour" % c)
    return doc, bs, errs


def aggregate(results):
    rs = [r["result"] for r in results]
    if "FAIL" in rs:
        return "FAIL"
    if rs and all(r == "SKIP" for r in rs):
        return "SKIP"
    return "PASS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="build directory (BUILD/bin/iotsim)")
    ap.add_argument("--iotsim", help="the iotsim binary (default: BUILD/bin/iotsim)")
    ap.add_argument("--behaviours", default=os.path.join(HERE, "behaviours.json"))
    ap.add_argument("--report", metavar="DIR", help="write DIR/conformance.md and DIR/conformance.json")
    ap.add_argument("-j", "--jobs", type=int, default=6, help="checks run at once (default 6)")
    ap.add_argument("--only", metavar="REGEX", help="only behaviours whose ID matches")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every check, not only failures")
    ap.add_argument("--keep", action="store_true", help="keep each check's state directory and event log")
    a = ap.parse_args()
    if a.keep:
        os.environ["IOTSIM_KEEP"] = "1"  # Sim.cleanup keeps its directory (and says where)
    t_start = time.monotonic()
    iotsim = os.path.abspath(a.iotsim or os.path.join(a.build, "bin", "iotsim"))
    if not os.access(iotsim, os.X_OK):
        print("conformance: no executable %s (build it first)" % iotsim, file=sys.stderr)
        return 2
    doc, behaviours, errs = load_behaviours(a.behaviours)
    if errs:
        print("conformance: %s is inconsistent with run.py:\n  %s" % (a.behaviours, "\n  ".join(errs)),
              file=sys.stderr)
        return 2
    sync_msgs, n_ids, n_tags = tag_sync(behaviours)
    selected = [b for b in behaviours if not a.only or re.search(a.only, b["id"])]
    names = [c for b in selected for c in b["checks"]]
    results = {}
    print("conformance: %d behaviours, %d checks against %s (-j %d)" % (len(selected), len(names), iotsim, a.jobs),
          flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        futs = {ex.submit(run_check, n, iotsim, a.keep): n for n in dict.fromkeys(names)}
        for f in concurrent.futures.as_completed(futs):
            r = f.result()
            results[r["check"]] = r
            if a.verbose or r["result"] != "PASS":
                print("  %-4s %-42s %5.1f s  %s" % (r["result"], r["check"], r["seconds"], r["detail"][:150]),
                      flush=True)
    rows = []
    for b in selected:
        rs = [results[c] for c in b["checks"]]
        rows.append({"id": b["id"], "statement": b["statement"], "ref": b["ref"],
                     "profile": b.get("profile", "any"), "result": aggregate(rs), "checks": rs})
    rows.append({"id": "CONF-TAG-SYNC", "ref": "—", "profile": "any",
                 "statement": "every behaviour ID tags broker-sim/src, and every [AWS-...] tag there is a behaviour",
                 "result": "FAIL" if sync_msgs else "PASS",
                 "checks": [{"check": "tag_sync", "result": "FAIL" if sync_msgs else "PASS",
                             "detail": "; ".join(sync_msgs) or "%d IDs, %d tags: the same set" % (n_ids, n_tags),
                             "seconds": 0, "log": ""}]})
    wall = time.monotonic() - t_start
    print_matrix(rows, wall)
    if a.report:
        write_report(a.report, rows, wall, iotsim)
        print("report: %s/conformance.md, %s/conformance.json" % (a.report, a.report))
    return 1 if any(r["result"] == "FAIL" for r in rows) else 0


def print_matrix(rows, wall):
    w = max(len(r["id"]) for r in rows)
    rw = max(len(r["ref"]) for r in rows)
    width = max(100, shutil.get_terminal_size((140, 20)).columns)
    room = max(40, width - w - rw - 12)
    pad = " " * (w + rw + 12)
    print()
    print("%-*s  %-6s  %-*s  %s" % (w, "ID", "RESULT", rw, "REF", "STATEMENT"))
    for r in rows:
        lines = textwrap.wrap(r["statement"], room) or [""]
        print("%-*s  %-6s  %-*s  %s" % (w, r["id"], r["result"], rw, r["ref"], lines[0]))
        for ln in lines[1:]:
            print(pad + ln)
        for c in r["checks"]:
            if c["result"] != "PASS":
                for i, ln in enumerate(textwrap.wrap("%s %s: %s" % (c["result"], c["check"], c["detail"]),
                                                     width - 6)):
                    print("    " + ("-> " if i == 0 else "   ") + ln)
    counts = {k: sum(1 for r in rows if r["result"] == k) for k in ("PASS", "FAIL", "SKIP")}
    nchecks = sum(len(r["checks"]) for r in rows)
    print("\nconformance: %d PASS, %d FAIL, %d SKIP (%d behaviours, %d checks) in %.1f s"
          % (counts["PASS"], counts["FAIL"], counts["SKIP"], len(rows), nchecks, wall))


def write_report(d, rows, wall, iotsim):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "conformance.json"), "w") as f:
        json.dump({"iotsim": iotsim, "seconds": round(wall, 1), "behaviours": rows}, f, indent=1)
    md = ["# iotsim conformance matrix", "",
          "Behaviours from `conformance/behaviours.json`; references are sections of "
          "`../shared/reference/aws-broker.md`. %.1f s." % wall, "",
          "| ID | result | ref | profile | statement | checks |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        md.append("| %s | **%s** | %s | %s | %s | %s |" % (
            r["id"], r["result"], r["ref"], r.get("profile", "any"), r["statement"].replace("|", "\\|"),
            ", ".join("%s%s" % (c["check"], "" if c["result"] == "PASS" else " (%s)" % c["result"])
                      for c in r["checks"])))
    bad = [(r, c) for r in rows for c in r["checks"] if c["result"] != "PASS"]
    if bad:
        md += ["", "## Failures and skips", ""]
        for r, c in bad:
            md += ["### %s: %s (%s)" % (r["id"], c["check"], c["result"]), "", c["detail"], ""]
            if c.get("log"):
                md += ["```", c["log"], "```", ""]
    with open(os.path.join(d, "conformance.md"), "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
