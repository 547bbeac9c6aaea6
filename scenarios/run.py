#!/usr/bin/python3
"""scenarios/run.py: runs *.scn scenarios against iotsim with iotc-agent clients.

Python 3 standard library only.  The language is described in scenarios/README.md.

    python3 scenarios/run.py [--build build] [-j 2] [--report DIR] [-v] FILE.scn...

Every file is parsed first; a parse error (file:line:column) stops everything
before anything runs.  Each scenario gets its own iotsim (--ports auto, a
temporary state directory, its event log in that directory) and its own
agents; everything started is stopped at the end, whatever happens.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# iotsim is started the way its own integration tests start it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "broker-sim", "tests", "integration"))
from iotsim_helper import Sim, read_events  # noqa: E402

DEFAULT_DEADLINE = 3.0  # seconds an `expect` waits when it names no `within`
SETTLE = 0.3            # seconds an exact `received`/`count` waits for extras


def now_ms():
    return time.time() * 1000.0


# ---------------------------------------------------------------- lexing ----

class ParseError(Exception):
    def __init__(self, path, line, col, msg):
        super().__init__("%s:%d:%d: %s" % (path, line, col, msg))


class Tok:
    __slots__ = ("text", "col", "quoted")

    def __init__(self, text, col, quoted):
        self.text, self.col, self.quoted = text, col, quoted

    def __repr__(self):
        return repr(self.text)


def lex(path, lineno, line):
    toks, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            break
        if c == '"':
            j, buf = i + 1, []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    j += 1
                    buf.append({"n": "\n", "t": "\t"}.get(line[j], line[j]))
                else:
                    buf.append(line[j])
                j += 1
            if j >= n:
                raise ParseError(path, lineno, i + 1, "unterminated string")
            toks.append(Tok("".join(buf), i + 1, True))
            i = j + 1
            continue
        j = i
        while j < n and line[j] not in " \t\r":
            j += 1
        toks.append(Tok(line[i:j], i + 1, False))
        i = j
    return toks


# ------------------------------------------------------- value parsers ----

DUR_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|min)$")
RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)hz$")
PCT_RE = re.compile(r"^(\d+(?:\.\d+)?)%$")
PM_RE = re.compile(r"^(?:±|\+-)(\d+(?:\.\d+)?(?:ms|s|min))$")
RANGE_ID_RE = re.compile(r"^(.*?)(\d+)\.\.(\d+)$")
BRACE_RE = re.compile(r"\{(\d+)\.\.(\d+)\}")

MQTT_TYPES = ("CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE",
              "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH")
BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


class Line:
    """The tokens of one line, consumed left to right, with errors that point at a column."""

    def __init__(self, path, lineno, toks, text):
        self.path, self.lineno, self.toks, self.text, self.i = path, lineno, toks, text, 0

    def err(self, msg, tok=None):
        if tok is None:
            tok = self.toks[self.i] if self.i < len(self.toks) else None
        col = tok.col if tok else len(self.text.rstrip()) + 1
        return ParseError(self.path, self.lineno, col, msg)

    def more(self):
        return self.i < len(self.toks)

    def peek(self):
        return self.toks[self.i].text if self.more() else None

    def next(self, what):
        if not self.more():
            raise self.err("missing %s" % what)
        t = self.toks[self.i]
        self.i += 1
        return t

    def word(self, what, choices=None):
        t = self.next(what)
        if choices is not None and t.text not in choices:
            raise self.err("bad %s %r: expected one of %s" % (what, t.text, ", ".join(choices)), t)
        return t.text

    def dur(self, what="duration"):
        t = self.next(what)
        return self._dur(t, what)

    def _dur(self, t, what):
        m = DUR_RE.match(t.text)
        if not m:
            raise self.err("bad %s %r: expected a duration like 200ms, 2s, 1.5s, 2min" % (what, t.text), t)
        v = float(m.group(1))
        return v * {"ms": 1, "s": 1000, "min": 60000}[m.group(2)]

    def rate(self, what="rate"):
        t = self.next(what)
        m = RATE_RE.match(t.text)
        if not m:
            raise self.err("bad %s %r: expected a rate like 10hz, 0.5hz" % (what, t.text), t)
        return float(m.group(1))

    def int(self, what, lo=None, hi=None):
        t = self.next(what)
        try:
            v = int(t.text)
        except ValueError:
            raise self.err("bad %s %r: expected an integer" % (what, t.text), t)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.err("bad %s %d: expected %s..%s" % (what, v, lo, hi), t)
        return v

    def num(self, what):
        t = self.next(what)
        try:
            return float(t.text)
        except ValueError:
            raise self.err("bad %s %r: expected a number" % (what, t.text), t)

    def bool(self, what):
        t = self.next(what)
        if t.text not in BOOLS:
            raise self.err("bad %s %r: expected yes or no" % (what, t.text), t)
        return BOOLS[t.text]

    def tolerance(self):
        """`within 20%` or `±50ms` (also `+-50ms`); returns ('pct', 0.2) or ('abs', ms)."""
        t = self.next("tolerance")
        if t.text == "within":
            t = self.next("tolerance")
            m = PCT_RE.match(t.text)
            if not m:
                raise self.err("bad tolerance %r: expected a percentage like 20%%" % t.text, t)
            return ("pct", float(m.group(1)) / 100.0)
        m = PM_RE.match(t.text)
        if not m:
            raise self.err("bad tolerance %r: expected `within 20%%` or `±50ms`" % t.text, t)
        return ("abs", self._dur(Tok(m.group(1), t.col, False), "tolerance"))

    def done(self):
        if self.more():
            raise self.err("unexpected %r" % self.toks[self.i].text)


def fmt_ms(ms):
    if ms is None:
        return "-"
    if abs(ms) >= 1000:
        return "%.2fs" % (ms / 1000.0)
    return "%.0fms" % ms


def fmt_tol(tol):
    return "±%s" % fmt_ms(tol[1]) if tol[0] == "abs" else "within %g%%" % (tol[1] * 100)


def tol_ok(want, got, tol):
    d = tol[1] if tol[0] == "abs" else want * tol[1]
    return abs(got - want) <= d


def range_ok(rng, got, tol):
    lo, hi = rng
    if lo == hi:
        return tol_ok(lo, got, tol)
    dlo = tol[1] if tol[0] == "abs" else lo * tol[1]
    dhi = tol[1] if tol[0] == "abs" else hi * tol[1]
    return lo - dlo <= got <= hi + dhi


def fmt_range(rng):
    return fmt_ms(rng[0]) if rng[0] == rng[1] else "%s..%s" % (fmt_ms(rng[0]), fmt_ms(rng[1]))


def expand_ids(text):
    """m#1..3 -> [m#1, m#2, m#3]; anything else -> [text]."""
    m = RANGE_ID_RE.match(text)
    if m and "#" in m.group(1):
        a, b = int(m.group(2)), int(m.group(3))
        step = 1 if b >= a else -1
        return ["%s%d" % (m.group(1), k) for k in range(a, b + step, step)]
    return [text]


def expand_braces(text):
    """"m{3..7}" -> [m3, m4, m5, m6, m7] (one range per string)."""
    m = BRACE_RE.search(text)
    if not m:
        return [text]
    a, b = int(m.group(1)), int(m.group(2))
    step = 1 if b >= a else -1
    return [text[:m.start()] + str(k) + text[m.end():] for k in range(a, b + step, step)]


# ---------------------------------------------------------------- parser ----

KEYWORDS = ("sim", "client", "wait", "mark", "expect", "known-bug", "broker")
AGENT_EVENTS = {
    # event: (positional fields, other fields one may name)
    "connecting": ((), ()),
    "error": ((), ("message", "reason", "status_name")),
    "accepted": (("id",), ()),
    "refused": (("id", "status_name"), ("status", "reason")),
    "done": (("id", "status_name"), ("status", "granted")),
    "connection_success": ((), ("session_present",)),
    "connection_failure": (("status_name",), ("status", "return_code", "reason")),
    "interrupted": (("status_name",), ("status", "reason")),
    "resumed": ((), ("return_code", "session_present")),
    "closed": ((), ()),
    "message": (("topic", "payload"), ("qos", "retain", "dup")),
    "bye": ((), ()),
}
STATS_FIELDS = ("connected", "queued", "inflight", "dropped", "drained", "attempts", "messages")


class Step:
    def __init__(self, path, lineno, text, kind, **kw):
        self.path, self.lineno, self.text, self.kind = path, lineno, text.strip(), kind
        self.__dict__.update(kw)

    def where(self):
        return "%s:%d" % (self.path, self.lineno)


class Scenario:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.title = None
        self.profile = None
        self.time_scale = None
        self.config = {}
        self.steps = []
        self.known_bugs = []
        self.clients = {}  # name -> declaring step


def parse_file(path):
    sc = Scenario(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    started = False
    for lineno, text in enumerate(lines, 1):
        s = text.strip()
        if sc.title is None and s.startswith("#"):
            sc.title = s.lstrip("#").strip()
        toks = lex(path, lineno, text)
        if not toks:
            continue
        L = Line(path, lineno, toks, text)
        head = L.next("keyword")
        kw = head.text
        if kw == "sim":
            sub = L.word("sim command", ("profile", "time-scale", "set", "drop", "refuse", "blackhole",
                                         "duplicate-qos0", "delay", "advance"))
            if sub in ("profile", "time-scale", "set"):
                if started:
                    raise L.err("`sim %s` must come before the first action (the simulator starts then)" % sub, head)
                if sub == "profile":
                    sc.profile = L.word("profile", ("classic", "current"))
                elif sub == "time-scale":
                    sc.time_scale = L.num("time scale")
                    if sc.time_scale <= 0:
                        raise L.err("time scale must be > 0", L.toks[L.i - 1])
                else:
                    kt = L.next("setting (limits.NAME or deviations.NAME)")
                    if not re.match(r"^(limits|deviations)\.[a-z0-9_]+$", kt.text):
                        raise L.err("bad setting %r: expected limits.NAME or deviations.NAME" % kt.text, kt)
                    vt = L.next("value")
                    v = vt.text
                    if not vt.quoted:
                        if v in BOOLS:
                            v = BOOLS[v]
                        else:
                            try:
                                v = int(v)
                            except ValueError:
                                pass
                    sec, key = kt.text.split(".", 1)
                    sc.config.setdefault(sec, {})[key] = v
                L.done()
                continue
            started = True
            st = Step(path, lineno, text, "sim", sub=sub)
            if sub == "drop":
                st.client = client_ref(L, sc)
                st.abrupt = False
                if L.peek() == "abrupt":
                    L.next("abrupt")
                    st.abrupt = True
            elif sub == "refuse":
                st.ms = L.dur()
            elif sub == "blackhole":
                st.client = client_ref(L, sc)
                st.on = L.bool("on or off")
            elif sub == "duplicate-qos0":
                st.count = L.int("count", 0)
            elif sub == "delay":
                st.ms = L.dur()
                st.client = client_ref(L, sc) if L.more() else None
            elif sub == "advance":
                st.ms = L.dur()
            L.done()
            sc.steps.append(st)
        elif kw == "client":
            started = True
            nt = L.next("client name")
            if nt.text in KEYWORDS or not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", nt.text):
                raise L.err("bad client name %r" % nt.text, nt)
            if nt.text in sc.clients:
                raise L.err("client %r already declared at line %d" % (nt.text, sc.clients[nt.text].lineno), nt)
            L.word("`connect`", ("connect",))
            st = Step(path, lineno, text, "connect", client=nt.text, declare=True, opts=connect_opts(L))
            sc.clients[nt.text] = st
            sc.steps.append(st)
        elif kw == "wait":
            started = True
            sc.steps.append(Step(path, lineno, text, "wait", ms=L.dur()))
            L.done()
        elif kw == "mark":
            started = True
            t = L.next("mark label")
            sc.steps.append(Step(path, lineno, text, "mark", label=t.text))
            L.done()
        elif kw == "known-bug":
            t = L.next("description (a quoted string)")
            sc.known_bugs.append("%s:%d: %s" % (os.path.basename(path), lineno, t.text))
            L.done()
        elif kw == "expect":
            started = True
            sc.steps.append(parse_expect(L, sc, text))
        elif kw in sc.clients:
            started = True
            sc.steps.append(parse_client_action(L, sc, kw, text))
        else:
            raise L.err("unknown keyword %r (sim, client, wait, mark, expect, known-bug, or a declared client name)"
                        % kw, head)
    return sc


def client_ref(L, sc):
    t = L.next("client name")
    if t.text not in sc.clients:
        raise L.err("unknown client %r (declare it with `client %s connect ...`)" % (t.text, t.text), t)
    return t.text


def connect_opts(L):
    o, seen = {}, set()
    while L.more():
        t = L.next("option")
        k = t.text
        if k in seen:
            raise L.err("option %r given twice" % k, t)
        seen.add(k)
        if k == "id":
            o["client_id"] = L.next("client id").text
        elif k == "queue":
            v = L.next("queue size")
            if v.text == "unbounded":
                o["queue"] = -1
            elif v.text == "off":
                o["queue"] = 0
            else:
                try:
                    o["queue"] = int(v.text)
                except ValueError:
                    raise L.err("bad queue size %r: an integer, off or unbounded" % v.text, v)
        elif k == "drop":
            o["drop"] = L.word("drop policy", ("oldest", "newest"))
        elif k == "drain":
            p = L.peek()
            if p == "max":
                L.next("max")
                o["drain_hz"] = 0
            else:
                o["drain_hz"] = L.rate("drain rate")
        elif k == "reconnect":
            v = L.next("reconnect range (MIN..MAX)")
            parts = v.text.split("..")
            if len(parts) != 2:
                raise L.err("bad reconnect range %r: expected MIN..MAX like 200ms..2s" % v.text, v)
            o["reconnect_min_ms"] = L._dur(Tok(parts[0], v.col, False), "reconnect minimum")
            o["reconnect_max_ms"] = L._dur(Tok(parts[1], v.col + len(parts[0]) + 2, False), "reconnect maximum")
        elif k == "stable":
            o["stable_ms"] = L.dur("stable time")
        elif k == "jitter":
            o["jitter"] = L.word("jitter", ("none", "full", "decorrelated"))
        elif k == "keepalive":
            v = L.next("keep-alive (seconds)")
            m = re.match(r"^(\d+)s?$", v.text)
            if not m:
                raise L.err("bad keep-alive %r: whole seconds like 30 or 30s" % v.text, v)
            o["keep_alive"] = int(m.group(1))
        elif k == "ping-timeout":
            o["ping_timeout_ms"] = L.dur("ping timeout")
        elif k == "op-timeout":
            o["op_timeout_ms"] = L.dur("operation timeout")
        elif k == "connect-timeout":
            o["connect_timeout_ms"] = L.dur("connect timeout")
        elif k == "clean":
            o["clean_session"] = L.bool("clean")
        elif k == "resubscribe":
            o["resubscribe"] = L.bool("resubscribe")
        elif k == "metrics":
            o["metrics"] = L.bool("metrics")
        elif k == "port":
            o["_port"] = L.word("port", ("mtls", "alpn"))
        else:
            raise L.err("unknown connect option %r (id, queue, drop, drain, reconnect, stable, jitter, keepalive, "
                        "ping-timeout, op-timeout, connect-timeout, clean, resubscribe, metrics, port)" % k, t)
    for k in ("ping_timeout_ms", "op_timeout_ms", "connect_timeout_ms", "reconnect_min_ms", "reconnect_max_ms",
              "stable_ms"):
        if k in o:
            o[k] = int(round(o[k]))
    return o


def parse_client_action(L, sc, name, text):
    verb = L.word("client command", ("connect", "publish", "subscribe", "unsubscribe", "disconnect", "quit"))
    st = Step(L.path, L.lineno, text, verb, client=name)
    if verb == "connect":
        st.declare = False
        st.opts = connect_opts(L)
        return st
    if verb in ("disconnect", "quit"):
        L.done()
        return st
    if verb == "publish":
        st.topic = L.next("topic").text
        st.payload = L.next("payload").text
        st.qos, st.retain, st.count, st.every, st.id = 0, False, None, None, None
    else:
        st.filter = L.next("topic filter").text
        st.qos, st.id = 1 if verb == "subscribe" else None, None
    while L.more():
        t = L.next("option")
        k = t.text
        if k == "qos" and verb != "unsubscribe":
            st.qos = L.int("qos", 0, 2)
        elif k == "as":
            st.id = L.next("operation id").text
            if "#" in st.id:
                raise L.err("an operation id may not contain '#': the agent numbers repeats id#1, id#2...",
                            L.toks[L.i - 1])
        elif verb == "publish" and k == "retain":
            st.retain = L.bool("retain")
        elif verb == "publish" and k == "count":
            st.count = L.int("count", 1)
        elif verb == "publish" and k == "every":
            st.every = L.dur("interval")
        else:
            raise L.err("unknown %s option %r" % (verb, k), t)
    if st.id is None:
        st.id = "%s@%d" % (verb[:3], L.lineno)
    return st


def parse_expect(L, sc, text):
    who = L.next("`broker` or a client name")
    st = Step(L.path, L.lineno, text, "expect")
    if who.text == "broker":
        return parse_expect_broker(L, sc, st)
    if who.text not in sc.clients:
        raise L.err("unknown client %r (declare it with `client %s connect ...`)" % (who.text, who.text), who)
    st.client = who.text
    st.deadline = None
    t = L.next("event, `no`, `received` or `stats`")
    if t.text == "received":
        st.what = "received"
        st.topic = L.next("topic").text
        st.payloads = []
        st.count = None
        while L.more() and (L.peek() != "within" or L.toks[L.i].quoted):
            if L.peek() == "count" and not L.toks[L.i].quoted:
                L.next("count")
                st.count = L.int("count", 0)
                continue
            st.payloads.extend(expand_braces(L.next("payload").text))
        if st.count is None:
            st.count = len(st.payloads)
        elif st.payloads and st.count != len(st.payloads):
            raise L.err("count %d but %d payloads listed" % (st.count, len(st.payloads)), who)
        if L.more():
            L.next("within")
            st.deadline = L.dur("deadline")
        L.done()
        return st
    if t.text == "stats":
        st.what = "stats"
        st.fields = []
        while L.more() and L.peek() != "within":
            k = L.word("stats field", STATS_FIELDS)
            v = L.next("value")
            st.fields.append((k, v.text))
        if not st.fields:
            raise L.err("name at least one stats field (%s)" % ", ".join(STATS_FIELDS))
        if L.more():
            L.next("within")
            st.deadline = L.dur("deadline")
        L.done()
        return st
    negate = False
    if t.text == "no":
        negate = True
        t = L.next("event")
    if t.text not in AGENT_EVENTS:
        raise L.err("unknown event %r (%s)" % (t.text, ", ".join(sorted(AGENT_EVENTS))), t)
    st.what = "event"
    st.event, st.negate = t.text, negate
    pos, other = AGENT_EVENTS[t.text]
    st.fields = []  # (name, value)
    st.ids = None
    pi = 0
    while L.more() and L.peek() not in ("within", "during"):
        tt = L.toks[L.i]
        if not tt.quoted and tt.text in other + pos and L.i + 1 < len(L.toks) and pi >= len(pos):
            L.next("field")
            st.fields.append((tt.text, L.next("value").text))
        elif pi < len(pos):
            L.next(pos[pi])
            if pos[pi] == "id":
                st.ids = expand_ids(tt.text)
            else:
                st.fields.append((pos[pi], tt.text))
            pi += 1
        elif not tt.quoted and tt.text in other + pos:
            L.next("field")
            st.fields.append((tt.text, L.next("value").text))
        else:
            raise L.err("unexpected %r for event %s (positional: %s; fields: %s)"
                        % (tt.text, t.text, " ".join(pos) or "none", " ".join(other) or "none"), tt)
    if L.more():
        k = L.word("`within` or `during`", ("within", "during"))
        if negate and k != "during":
            raise L.err("`expect %s no %s` takes `during DURATION`" % (st.client, st.event), L.toks[L.i - 1])
        if not negate and k != "within":
            raise L.err("`during` is for `expect CLIENT no EVENT`; use `within`", L.toks[L.i - 1])
        st.deadline = L.dur("duration")
    elif negate:
        raise L.err("`expect %s no %s` needs `during DURATION`" % (st.client, st.event))
    L.done()
    return st


def parse_expect_broker(L, sc, st):
    kind = L.word("`received`, `sent`, `decided`, `sequence` or `session`",
                  ("received", "sent", "decided", "sequence", "session", "client"))
    st.what = "broker-" + kind
    st.since, st.deadline, st.client = None, None, None
    if kind in ("session", "client"):
        st.client = client_ref(L, sc)
        st.fields = []
        while L.more() and L.peek() != "within":
            t = L.next("field")
            if kind == "session":
                ok = ("present", "online", "stored", "pending", "inflight", "subscriptions")
            else:
                ok = ("connected", "count", "keepalive", "blackholed")
            if t.text not in ok:
                raise L.err("unknown %s field %r (%s)" % (kind, t.text, ", ".join(ok)), t)
            st.fields.append((t.text, L.next("value").text))
        if L.more():
            L.next("within")
            st.deadline = L.dur("deadline")
        L.done()
        return st
    if kind == "sequence":
        L.word("`from`", ("from",))
        st.client = client_ref(L, sc)
        st.types = []
        while L.more() and L.peek() not in ("since", "within"):
            st.types.append(L.word("packet type", MQTT_TYPES))
        if not st.types:
            raise L.err("name the packet types in order")
        parse_since_within(L, st)
        return st
    if kind == "decided":
        st.decision = L.next("decision (the log's `what`)").text
    else:
        st.type = L.word("packet type", MQTT_TYPES)
    st.filters = []
    st.count, st.count_op = None, "=="
    st.every, st.intervals, st.rate_max, st.tol, st.clock = None, None, None, None, "wall"
    st.spread = None  # intervals: their sum must stay under this share of the ranges' tops
    while L.more():
        t = L.next("option")
        k = t.text
        if k in ("from", "to", "for"):
            want = {"received": "from", "sent": "to", "decided": "for"}[kind]
            if k != want:
                raise L.err("use `%s` with `expect broker %s`" % (want, kind), t)
            st.client = client_ref(L, sc)
        elif k == "topic" and kind != "decided":
            st.filters.append(("topic", L.next("topic").text))
        elif k == "qos" and kind != "decided":
            st.filters.append(("qos", L.int("qos", 0, 2)))
        elif k in ("dup", "retain", "session-present", "clean") and kind != "decided":
            st.filters.append(({"session-present": "session_present"}.get(k, k), L.bool(k)))
        elif k == "reason" and kind == "decided":
            st.filters.append(("reason", L.next("reason").text))
        elif k == "reason":
            st.filters.append(("reason", L.int("reason", 0, 255)))
        elif k == "detail" and kind == "decided":
            st.filters.append(("detail~", L.next("detail text").text))
        elif k == "count":
            p = L.peek()
            if p in (">=", "<="):
                st.count_op = L.next("op").text
            st.count = L.int("count", 0)
        elif k == "every":
            st.every = L.dur("interval")
            st.tol = L.tolerance()
        elif k == "intervals":
            st.intervals = []  # (low, high): equal for a value, apart for a range A..B
            while L.more() and (DUR_RE.match(L.peek() or "") or ".." in (L.peek() or "")):
                t = L.next("interval")
                if ".." in t.text:
                    a, b = t.text.split("..", 1)
                    lo = L._dur(Tok(a, t.col, False), "interval range start")
                    hi = L._dur(Tok(b, t.col + len(a) + 2, False), "interval range end")
                    if hi < lo:
                        raise L.err("empty interval range %r" % t.text, t)
                    st.intervals.append((lo, hi))
                else:
                    v = L._dur(t, "interval")
                    st.intervals.append((v, v))
            if not st.intervals:
                raise L.err("list the intervals, e.g. intervals 200ms 400ms 800ms within 20%")
            st.tol = L.tolerance()
        elif k == "spread-below":
            # Jitter: the waits must not all sit at their ceilings.  A client
            # without jitter waits the whole ceiling each time (100%); full
            # jitter averages 50%.
            t = L.next("percentage")
            try:
                if not t.text.endswith("%"):
                    raise ValueError
                st.spread = float(t.text[:-1]) / 100.0
                if not 0 < st.spread <= 1:
                    raise ValueError
            except ValueError:
                raise L.err("spread-below wants a percentage in (0%, 100%], e.g. 85%", t)
        elif k == "rate":
            L.word("`at-most`", ("at-most",))
            st.rate_max = L.rate("rate")
        elif k == "clock":
            st.clock = L.word("clock", ("wall", "virtual"))
        elif k == "since":
            st.since = L.next("mark label").text
        elif k == "within":
            st.deadline = L.dur("deadline")
        else:
            raise L.err("unknown option %r for `expect broker %s`" % (k, kind), t)
    if (st.every is not None or st.rate_max is not None) and st.count is None:
        raise L.err("`every` and `rate` need a `count` (which records, and how many to wait for)")
    if st.intervals is not None and st.since is None:
        raise L.err("`intervals` are measured from a mark: add `since LABEL` (the first interval runs from it)")
    if st.spread is not None and st.intervals is None:
        raise L.err("`spread-below` goes with `intervals` (it compares their sum with the ranges' tops)")
    return st


def parse_since_within(L, st):
    while L.more():
        k = L.word("`since` or `within`", ("since", "within"))
        if k == "since":
            st.since = L.next("mark label").text
        else:
            st.deadline = L.dur("deadline")


def check_marks(sc):
    marks = set()
    for st in sc.steps:
        if st.kind == "mark":
            marks.add(st.label)
        lab = getattr(st, "since", None)
        if lab is not None and lab not in marks:
            raise ParseError(st.path, st.lineno, st.text.find(lab) + 1 + (len(st.text) - len(st.text.lstrip())),
                             "mark %r is not set before this line (use `mark %s` first)" % (lab, lab))


# ---------------------------------------------------------------- runtime ----

class Failure(Exception):
    def __init__(self, step, expected, seen, client=None):
        super().__init__(expected)
        self.step, self.expected, self.seen, self.client = step, expected, seen, client


class Agent:
    def __init__(self, name, exe, workdir, logf):
        self.name = name
        self.events = []  # dicts with "_wall" (runner receipt ms) and "_used"
        self.cond = threading.Condition()
        self.stderr = open(os.path.join(workdir, "agent-%s.stderr" % name), "wb")
        self.raw = open(os.path.join(workdir, "agent-%s.jsonl" % name), "w")
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     cwd=workdir, start_new_session=True)
        self.eof = False
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()
        self.opts = {}

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
                if not isinstance(ev, dict):
                    raise ValueError
            except ValueError:
                ev = {"ev": "_unparsed", "line": line}
            ev["_wall"] = now_ms()
            ev["_used"] = False
            self.raw.write(line + "\n")
            self.raw.flush()
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def send(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RuntimeError("agent %s is gone (exit %s); see agent-%s.stderr"
                               % (self.name, self.proc.poll(), self.name))

    def wait_for(self, pred, deadline, consume=True):
        """The first unconsumed event with pred(ev) by `deadline` (monotonic), or None."""
        with self.cond:
            while True:
                for ev in self.events:
                    if not ev["_used"] and pred(ev):
                        if consume:
                            ev["_used"] = True
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.eof and not self._has(pred)):
                    return None
                self.cond.wait(min(left, 0.05))

    def _has(self, pred):
        return any(not ev["_used"] and pred(ev) for ev in self.events)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.stdin.close()
            except Exception:
                pass
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        kill_proc(self.proc)
        self.th.join(timeout=1)
        self.stderr.close()
        self.raw.close()


def kill_proc(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except OSError:
        p.terminate()
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            p.kill()
        p.wait()


LIVE = set()  # every process started, for the signal handler
LIVE_LOCK = threading.Lock()


def track(p, on=True):
    with LIVE_LOCK:
        (LIVE.add if on else LIVE.discard)(p)


def ev_str(ev):
    d = {k: v for k, v in ev.items() if not k.startswith("_")}
    return json.dumps(d, separators=(",", ":"))


def field_eq(got, want):
    """Compares an event's field with a value written in the scenario (`!V`: anything but V)."""
    if isinstance(want, str) and want.startswith("!") and len(want) > 1:
        return not field_eq(got, want[1:])
    if isinstance(got, bool):
        return want in BOOLS and BOOLS[want] == got
    if isinstance(got, (int, float)):
        try:
            return float(want) == float(got)
        except ValueError:
            return False
    if isinstance(got, list):
        return ",".join(str(x) for x in got) == want
    return str(got) == want


class Run:
    def __init__(self, sc, args):
        self.sc, self.args = sc, args
        self.dir = tempfile.mkdtemp(prefix="scn-%s-" % os.path.splitext(sc.name)[0])
        self.sim = None
        self.ep = None
        self.agents = {}
        self.marks = {}
        self.log_path = os.path.join(self.dir, "events.jsonl")
        self.log_offset = 0
        self.id_prefix = ""
        self.t0 = None
        self.step = None
        self.trace = []

    # -- iotsim -----------------------------------------------------------

    def use_running_sim(self):
        with open(self.args.endpoint) as f:
            self.ep = json.load(f)
        self.log_path = self.ep.get("log_file")
        if not self.log_path or not os.path.exists(self.log_path):
            raise RuntimeError("the running iotsim (%s) has no event log: start it with --log FILE" % self.args.endpoint)
        self.log_offset = os.path.getsize(self.log_path)
        self.ctl = "http://127.0.0.1:%d" % self.ep["ports"]["control"]
        code, _ = self.http("GET", "/health")
        if code != 200:
            raise RuntimeError("the running iotsim does not answer GET /health (HTTP %d)" % code)
        # Client ids unique to this run, so sessions left by earlier runs do not answer.
        self.id_prefix = "%s-%d-%d-" % (os.path.splitext(self.sc.name)[0], os.getpid(), int(time.time()) % 100000)

    def start_sim(self):
        if self.args.endpoint:
            return self.use_running_sim()
        extra = []
        if self.sc.profile:
            extra += ["--profile", self.sc.profile]
        if self.sc.time_scale:
            extra += ["--time-scale", "%g" % self.sc.time_scale]
        if self.sc.config:
            cfg = dict(self.sc.config)
            if self.sc.profile:
                cfg["profile"] = self.sc.profile
            cp = os.path.join(self.dir, "config.json")
            with open(cp, "w") as f:
                json.dump(cfg, f)
            extra += ["--config", cp]
        self.simh = Sim(*extra, binary=self.args.iotsim, tmp=self.dir)
        self.simh.start()  # RuntimeError with iotsim's stderr if it does not come up
        self.sim = self.simh.proc
        track(self.sim)
        self.ep = self.simh.ep
        self.log_path = self.simh.log_path
        self.ctl = "http://127.0.0.1:%d" % self.ep["ports"]["control"]

    def http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.ctl + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read().decode() or "{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read().decode() or "{}")
            except ValueError:
                return e.code, {}

    def control(self, path, body):
        code, reply = self.http("POST", path, body)
        if code != 200:
            raise Failure(self.step, "POST %s %s to succeed" % (path, json.dumps(body)),
                          "HTTP %d %s" % (code, json.dumps(reply)))
        return reply

    def log(self):
        return read_events(self.log_path, self.log_offset)

    # -- helpers ------------------------------------------------------------

    def cid(self, name):
        return self.agents[name].opts.get("client_id") if name in self.agents else None

    def rec_is_client(self, r, name):
        cid = self.cid(name)
        return r.get("client") == cid or r.get("client_id") == cid

    def since_ms(self, label):
        return self.marks[label] if label else 0

    # -- steps -------------------------------------------------------------

    def run(self):
        t_start = time.monotonic()
        result = {"scenario": self.sc.name, "path": self.sc.path, "title": self.sc.title, "status": "pass",
                  "known_bugs": self.sc.known_bugs, "dir": self.dir}
        try:
            self.start_sim()
            self.t0 = now_ms()
            for st in self.sc.steps:
                self.step = st
                t = time.monotonic()
                self.exec(st)
                self.trace.append("%7.2fs %s" % (time.monotonic() - t_start, st.text))
                if self.args.verbose:
                    print("  %s %s (%.2fs)" % (self.sc.name, st.text, time.monotonic() - t), flush=True)
        except Failure as f:
            result["status"] = "fail"
            result["line"] = f.step.lineno if f.step else None
            result["where"] = f.step.where() if f.step else self.sc.path
            result["statement"] = f.step.text if f.step else ""
            result["expected"] = f.expected
            result["seen"] = f.seen
            result["detail"] = self.failure_context(f)
        except Exception as e:  # the runner's or a process's trouble: an error, not a failed expectation
            result["status"] = "error"
            st = self.step
            result["where"] = st.where() if st else self.sc.path
            result["line"] = st.lineno if st else None
            result["statement"] = st.text if st else "(starting iotsim)"
            result["expected"] = "the statement to run" if st else "iotsim to start"
            result["seen"] = "%s: %s" % (type(e).__name__, e)
            result["detail"] = self.failure_context(Failure(st, "", "", getattr(st, "client", None)))
        finally:
            self.cleanup()
        result["seconds"] = round(time.monotonic() - t_start, 2)
        if result["status"] == "pass" and not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            result["dir"] = None
        return result

    def cleanup(self):
        for a in self.agents.values():
            try:
                a.stop()
            except Exception:
                kill_proc(a.proc)
            track(a.proc, False)
        if self.sim:  # never a running iotsim we were pointed at
            self.simh.stop()
            track(self.sim, False)

    def failure_context(self, f):
        lines = []
        since = (self.step_started - 3000) if getattr(self, "step_started", None) else 0
        recs = [r for r in self.log() if r.get("wall", 0) >= since]
        client = f.client
        if client and client in self.agents:
            cid = self.cid(client)
            conns = {r.get("conn") for r in self.log() if r.get("client") == cid or r.get("client_id") == cid}
            rel = [r for r in recs if r.get("conn") in conns or "conn" not in r]
        else:
            rel = recs
        rel = rel[-40:]
        lines.append("iotsim event log (%s), from 3 s before the statement, last %d:" % (self.log_path, len(rel)))
        for r in rel:
            lines.append("    +%s %s" % (fmt_ms(r.get("wall", 0) - self.t0) if self.t0 else "?",
                                          json.dumps({k: v for k, v in r.items() if k not in ("wall", "principal")},
                                                     separators=(",", ":"))))
        names = [client] if client in self.agents else list(self.agents)
        for n in names:
            a = self.agents[n]
            rc = a.proc.poll()
            if rc is not None:
                try:
                    with open(os.path.join(self.dir, "agent-%s.stderr" % n), errors="replace") as ef:
                        tail = ef.read()[-600:].strip()
                except OSError:
                    tail = ""
                lines.append("agent %s exited with status %s%s" % (n, rc, (": " + tail) if tail else ""))
            evs = a.events[-25:]
            lines.append("agent %s events (last %d of %d; * = matched by an earlier expect):" % (n, len(evs),
                                                                                                len(a.events)))
            for ev in evs:
                lines.append("    +%s %s%s" % (fmt_ms(ev["_wall"] - self.t0), "*" if ev["_used"] else " ",
                                              ev_str(ev)))
        return "\n".join(lines)

    def exec(self, st):
        self.step_started = now_ms()
        getattr(self, "do_" + st.kind.replace("-", "_"))(st)

    def do_wait(self, st):
        time.sleep(st.ms / 1000.0)

    def do_mark(self, st):
        self.marks[st.label] = now_ms()

    def do_sim(self, st):
        if st.sub == "drop":
            body = {"client_id": self.cid(st.client)}
            if st.abrupt:
                body["abrupt"] = True
            self.control("/faults/drop", body)
        elif st.sub == "refuse":
            self.control("/faults/refuse", {"seconds": st.ms / 1000.0})
        elif st.sub == "blackhole":
            self.control("/faults/blackhole", {"client_id": self.cid(st.client), "on": st.on})
        elif st.sub == "duplicate-qos0":
            self.control("/faults/duplicate-qos0", {"count": st.count})
        elif st.sub == "delay":
            body = {"ms": st.ms}
            if st.client:
                body["client_id"] = self.cid(st.client)
            self.control("/faults/delay", body)
        elif st.sub == "advance":
            self.control("/clock/advance", {"seconds": st.ms / 1000.0})

    def do_connect(self, st):
        if st.declare:
            a = Agent(st.client, self.args.agent, self.dir, None)
            track(a.proc)
            self.agents[st.client] = a
            opts = {"client_id": "scn-%s" % st.client}
            opts.update(st.opts)
            opts["client_id"] = self.id_prefix + opts["client_id"]
            a.opts = opts
        else:
            a = self.agents[st.client]
            opts = dict(a.opts)
            opts.update(st.opts)
            a.opts = opts
        ep = self.ep
        port_kind = opts.get("_port", "mtls")
        cmd = {"cmd": "connect", "endpoint": ep["endpoint"], "address": ep["host"],
               "port": ep["ports"][port_kind], "tls": True, "ca_file": ep["ca_file"],
               "cert": ep["cert_file"], "key": ep["key_file"]}
        if port_kind == "alpn":
            cmd["alpn"] = "x-amzn-mqtt-ca"
        cmd.setdefault("metrics", False)
        for k, v in opts.items():
            if not k.startswith("_"):
                cmd[k] = v
        a.send(cmd)
        ev = a.wait_for(lambda e: e.get("ev") in ("connecting", "error"), time.monotonic() + 3)
        if ev is None:
            raise Failure(st, "the agent to answer `connect` with connecting", "nothing within 3s", st.client)
        if ev["ev"] == "error":
            raise Failure(st, "connect to be accepted by the agent", ev_str(ev), st.client)

    def do_publish(self, st):
        cmd = {"cmd": "publish", "id": st.id, "topic": st.topic, "payload": st.payload, "qos": st.qos,
               "retain": st.retain}
        if st.count:
            cmd["count"] = st.count
        if st.every is not None:
            cmd["interval_ms"] = st.every
        self.agents[st.client].send(cmd)

    def do_subscribe(self, st):
        self.agents[st.client].send({"cmd": "subscribe", "id": st.id, "filter": st.filter, "qos": st.qos})

    def do_unsubscribe(self, st):
        self.agents[st.client].send({"cmd": "unsubscribe", "id": st.id, "filter": st.filter})

    def do_disconnect(self, st):
        self.agents[st.client].send({"cmd": "disconnect"})

    def do_quit(self, st):
        self.agents[st.client].send({"cmd": "quit"})

    # -- client expectations ----------------------------------------------

    def do_expect(self, st):
        getattr(self, "exp_" + st.what.replace("-", "_"))(st)

    def deadline(self, st, default=DEFAULT_DEADLINE):
        return time.monotonic() + ((st.deadline / 1000.0) if st.deadline is not None else default)

    def exp_event(self, st):
        a = self.agents[st.client]

        def pred_for(idv):
            def pred(ev):
                if ev.get("ev") != st.event:
                    return False
                if idv is not None and ev.get("id") != idv:
                    return False
                return all(k in ev and field_eq(ev[k], v) for k, v in st.fields)
            return pred

        desc = " ".join(["%s" % st.event] + ["%s=%s" % kv for kv in st.fields])
        if st.negate:
            end = self.deadline(st)
            ev = a.wait_for(pred_for(None), end, consume=False)
            if ev is not None:
                raise Failure(st, "no %s during %s" % (desc, fmt_ms(st.deadline)), ev_str(ev), st.client)
            return
        end = self.deadline(st)
        for idv in (st.ids or [None]):
            ev = a.wait_for(pred_for(idv), end)
            if ev is None:
                want = desc + ("" if idv is None else " id=%s" % idv)
                same = [e for e in a.events if e.get("ev") == st.event and (idv is None or e.get("id") == idv)]
                if not same:
                    same = [e for e in a.events if e.get("ev") == st.event]
                seen = ("; ".join(ev_str(e) + (" (already matched)" if e["_used"] else "") for e in same[-6:])
                        or "no %s event at all" % st.event)
                if same and idv is not None and not any(e.get("id") == idv for e in same):
                    seen = "no %s for %s; others: %s" % (st.event, idv, seen)
                raise Failure(st, "%s within %s" % (want, fmt_ms((st.deadline if st.deadline is not None
                                                                   else DEFAULT_DEADLINE * 1000))),
                              seen, st.client)

    def exp_received(self, st):
        a = self.agents[st.client]
        end = self.deadline(st, DEFAULT_DEADLINE + 2)

        def msgs():
            return [e for e in a.events if e.get("ev") == "message" and e.get("topic") == st.topic
                    and not e["_used"]]

        with a.cond:
            while len(msgs()) < st.count and time.monotonic() < end and not a.eof:
                a.cond.wait(0.05)
        time.sleep(SETTLE)
        with a.cond:
            got = msgs()
            payloads = [e.get("payload") for e in got]
            ok = len(got) == st.count and (not st.payloads or payloads == st.payloads)
            if ok:
                for e in got:
                    e["_used"] = True
        if not ok:
            want = ("exactly %d messages on %s, in this order: %s" % (st.count, st.topic, " ".join(st.payloads))
                    if st.payloads else "exactly %d messages on %s" % (st.count, st.topic))
            raise Failure(st, want, "%d: %s" % (len(got), " ".join(str(p) for p in payloads) or "none"), st.client)

    def exp_stats(self, st):
        a = self.agents[st.client]
        end = self.deadline(st, 0.5)
        seen = None
        while True:
            sid = "stats@%d@%.0f" % (st.lineno, now_ms())
            a.send({"cmd": "stats", "id": sid})
            ev = a.wait_for(lambda e: e.get("ev") == "stats" and e.get("id") in (sid, None), time.monotonic() + 2)
            if ev is None:
                raise Failure(st, "a stats event", "nothing within 2s", st.client)
            seen = ev
            if all(k in ev and field_eq(ev[k], v) for k, v in st.fields):
                return
            if time.monotonic() >= end:
                break
            time.sleep(0.1)
        raise Failure(st, " ".join("%s=%s" % kv for kv in st.fields), ev_str(seen), st.client)

    # -- broker expectations ------------------------------------------------

    def select(self, st):
        since = self.since_ms(st.since)
        kind = {"broker-received": "in", "broker-sent": "out", "broker-decided": "decision"}[st.what]
        out = []
        for r in self.log():
            if r.get("wall", 0) < since or r.get("kind") != kind:
                continue
            if kind == "decision":
                if r.get("what") != st.decision:
                    continue
            elif r.get("type") != st.type:
                continue
            if st.client and not self.rec_is_client(r, st.client):
                continue
            ok = True
            for k, v in st.filters:
                if k == "detail~":
                    ok = v in str(r.get("detail", ""))
                elif r.get(k) != v:
                    ok = False
                if not ok:
                    break
            if ok:
                out.append(r)
        return out

    def describe(self, st):
        if st.what == "broker-decided":
            s = "decision %s" % st.decision
        else:
            s = "%s %s" % ("received" if st.what == "broker-received" else "sent", st.type)
        if st.client:
            s += " %s %s" % ({"broker-received": "from", "broker-sent": "to", "broker-decided": "for"}[st.what],
                             st.client)
        for k, v in st.filters:
            s += " %s=%s" % (k, v)
        if st.since:
            s += " since mark %s" % st.since
        return s

    def exp_broker_received(self, st):
        self.exp_broker_records(st)

    exp_broker_sent = exp_broker_received
    exp_broker_decided = exp_broker_received

    def exp_broker_records(self, st):
        need = st.count if st.count is not None else 1
        if st.intervals is not None:
            need = max(need, len(st.intervals))
        if st.count_op == "<=":
            need = None
        end = self.deadline(st)
        recs = self.select(st)
        if need == 0 or need is None:
            # nothing may appear (or not too much): watch the whole deadline only when one is given
            if st.deadline is not None:
                time.sleep(max(0, end - time.monotonic()))
                recs = self.select(st)
        else:
            while len(recs) < need and time.monotonic() < end:
                time.sleep(0.05)
                recs = self.select(st)
            if st.count is not None and st.count_op == "==" and len(recs) >= need:
                time.sleep(SETTLE)
                recs = self.select(st)
        desc = self.describe(st)
        n = len(recs)
        if st.count is not None:
            ok = {"==": n == st.count, ">=": n >= st.count, "<=": n <= st.count}[st.count_op]
            if not ok:
                raise Failure(st, "%s: count %s %d" % (desc, st.count_op, st.count),
                              "%d record(s)%s" % (n, self.times_str(recs, st)), st.client)
        elif n == 0:
            raise Failure(st, "%s: at least one record" % desc, "none", st.client)
        key = "t" if st.clock == "virtual" else "wall"
        times = [r.get(key, 0) for r in recs]
        if st.intervals is not None:
            origin = self.since_ms(st.since)
            if key == "t":
                raise Failure(st, "intervals use the wall clock", "clock virtual", st.client)
            pts = [origin] + times[:len(st.intervals)]
            gaps = [pts[i + 1] - pts[i] for i in range(len(pts) - 1)]
            bad = [i for i, (w, g) in enumerate(zip(st.intervals, gaps)) if not range_ok(w, g, st.tol)]
            if len(gaps) < len(st.intervals) or bad:
                raise Failure(st, "%s: intervals (from mark %s) %s %s" % (
                    desc, st.since, " ".join(fmt_range(x) for x in st.intervals), fmt_tol(st.tol)),
                    "intervals %s%s" % (" ".join(fmt_ms(g) for g in gaps),
                                        (" (off at #%s)" % ",".join(str(i + 1) for i in bad)) if bad else ""),
                    st.client)
            if st.spread is not None:
                tops = sum(hi for _, hi in st.intervals)
                share = sum(gaps[:len(st.intervals)]) / tops if tops else 1.0
                if share >= st.spread:
                    raise Failure(st, "%s: intervals adding up to under %.0f%% of their tops (%s)" % (
                        desc, st.spread * 100, fmt_ms(tops)),
                        "%.0f%%: intervals %s" % (share * 100, " ".join(fmt_ms(g) for g in gaps)), st.client)
        if st.every is not None:
            gaps = [times[i + 1] - times[i] for i in range(len(times) - 1)]
            bad = [i for i, g in enumerate(gaps) if not tol_ok(st.every, g, st.tol)]
            if not gaps or bad:
                raise Failure(st, "%s: one every %s %s" % (desc, fmt_ms(st.every), fmt_tol(st.tol)),
                              "gaps %s%s" % (" ".join(fmt_ms(g) for g in gaps),
                                             (" (off at #%s)" % ",".join(str(i + 1) for i in bad)) if bad else ""),
                              st.client)
        if st.rate_max is not None and len(times) >= 2:
            span = times[-1] - times[0]
            # N records at rate R need at least (N-1)/R seconds; 5% slack for timer granularity
            floor = (len(times) - 1) / st.rate_max * 1000.0 * 0.95
            if span < floor:
                raise Failure(st, "%s: at most %ghz (%d records over at least %s)" % (
                    desc, st.rate_max, len(times), fmt_ms(floor)),
                    "%d records over %s (%.1f/s)" % (len(times), fmt_ms(span),
                                                      (len(times) - 1) * 1000.0 / span if span else float("inf")),
                    st.client)

    def times_str(self, recs, st):
        if not recs:
            return ""
        return " at " + ", ".join("+" + fmt_ms(r.get("wall", 0) - self.t0) for r in recs[:12]) + \
            (" ..." if len(recs) > 12 else "")

    def exp_broker_sequence(self, st):
        """Some connection of the client since the mark began with these packets (other types ignored)."""
        end = self.deadline(st)
        types = set(st.types)
        while True:
            per_conn = {}
            for r in self.log():
                if r.get("kind") == "in" and r.get("type") in types and self.rec_is_client(r, st.client) \
                        and r.get("wall", 0) >= self.since_ms(st.since):
                    per_conn.setdefault(r.get("conn"), []).append(r.get("type"))
            if any(seq[:len(st.types)] == st.types for seq in per_conn.values()):
                return
            if time.monotonic() >= end:
                break
            time.sleep(0.05)
        raise Failure(st, "a connection from %s whose first packets are, in order: %s" % (st.client, " ".join(st.types)),
                      "; ".join("conn %s: %s" % (c, " ".join(seq[:len(st.types) + 4])) for c, seq in per_conn.items())
                      or "none", st.client)

    def exp_broker_session(self, st):
        self.exp_broker_clients(st)

    def exp_broker_client(self, st):
        self.exp_broker_clients(st)

    def exp_broker_clients(self, st):
        end = self.deadline(st, 0.5)
        cid = self.cid(st.client)
        while True:
            code, body = self.http("GET", "/clients")
            seen = {}
            if st.what == "broker-session":
                s = [x for x in body.get("sessions", []) if x.get("client_id") == cid]
                seen["present"] = bool(s)
                if s:
                    seen.update(online=s[0].get("online"), stored=s[0].get("stored"), pending=s[0].get("pending"),
                                inflight=s[0].get("inflight"), subscriptions=len(s[0].get("subscriptions", [])))
            else:
                c = [x for x in body.get("clients", []) if x.get("client_id") == cid]
                seen["connected"] = bool([x for x in c if x.get("state") == "connected"])
                seen["count"] = len(c)
                if c:
                    seen["keepalive"] = c[0].get("keepalive")
                    seen["blackholed"] = c[0].get("blackholed")
            ok = all(k in seen and field_eq(seen[k], v) for k, v in st.fields)
            if ok:
                return
            if time.monotonic() >= end:
                break
            time.sleep(0.05)
        raise Failure(st, "GET /clients: %s %s: %s" % (st.what.split("-")[1], cid,
                                                        " ".join("%s=%s" % kv for kv in st.fields)),
                      json.dumps(seen), st.client)


# ---------------------------------------------------------------- main ----

def print_failure(r, out=sys.stdout):
    print("\n%s %s: %s" % ("FAIL" if r["status"] == "fail" else "ERROR", r["scenario"], r.get("title") or ""),
          file=out)
    print("  at %s: %s" % (r.get("where"), r.get("statement")), file=out)
    print("  expected: %s" % r.get("expected"), file=out)
    print("  seen:     %s" % r.get("seen"), file=out)
    for kb in r.get("known_bugs") or []:
        print("  known bug: %s" % kb, file=out)
    if r.get("detail"):
        print("  " + r["detail"].replace("\n", "\n  "), file=out)
    if r.get("dir"):
        print("  kept: %s" % r["dir"], file=out)
    out.flush()


def write_report(d, results, wall):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump({"wall_seconds": round(wall, 2), "scenarios": results}, f, indent=2)
    with open(os.path.join(d, "report.md"), "w") as f:
        npass = sum(1 for r in results if r["status"] == "pass")
        f.write("# Scenario report\n\n%d of %d passed in %.1f s.\n\n" % (npass, len(results), wall))
        f.write("| scenario | what | result | time | where it failed | known bug |\n| --- | --- | --- | --- | --- | --- |\n")
        for r in results:
            f.write("| %s | %s | %s | %.1f s | %s | %s |\n" % (
                r["scenario"], (r.get("title") or "").replace("|", "\\|"), r["status"].upper(), r["seconds"],
                ("%s: expected %s; seen %s" % (r.get("where"), r.get("expected"), r.get("seen"))).replace("|", "\\|")
                if r["status"] != "pass" else "",
                "; ".join(r.get("known_bugs") or []).replace("|", "\\|")))
        for r in results:
            if r["status"] != "pass":
                f.write("\n## %s\n\n```\n" % r["scenario"])
                f.write("at %s: %s\nexpected: %s\nseen:     %s\n%s\n```\n" % (
                    r.get("where"), r.get("statement"), r.get("expected"), r.get("seen"), r.get("detail") or ""))


def main():
    ap = argparse.ArgumentParser(description="Runs *.scn scenarios against iotsim (see scenarios/README.md).")
    ap.add_argument("files", nargs="+", metavar="FILE.scn")
    ap.add_argument("--build", default="build", help="build directory (its bin/ holds iotsim and iotc-agent)")
    ap.add_argument("--iotsim", help="the iotsim program (default BUILD/bin/iotsim)")
    ap.add_argument("--agent", help="the client agent (default BUILD/bin/iotc-agent)")
    ap.add_argument("--endpoint", metavar="ENDPOINT_JSON",
                    help="use a running iotsim (its endpoint.json; it must log with --log) instead of starting one "
                         "per scenario; scenarios then run one at a time and may not use sim profile/time-scale/set")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="scenarios run in parallel (default 2)")
    ap.add_argument("--report", metavar="DIR", help="write DIR/report.md and DIR/report.json")
    ap.add_argument("--known-bugs-ok", action="store_true",
                    help="exit 0 when the only failures are scenarios with a `known-bug` line (they still show FAIL)")
    ap.add_argument("--parse-only", action="store_true", help="parse the files and stop")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories of passing scenarios")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each statement as it completes")
    args = ap.parse_args()
    args.iotsim = args.iotsim or os.path.join(args.build, "bin", "iotsim")
    args.agent = os.path.abspath(args.agent or os.path.join(args.build, "bin", "iotc-agent"))
    args.iotsim = os.path.abspath(args.iotsim)

    scenarios, errors = [], []
    for p in args.files:
        try:
            sc = parse_file(p)
            check_marks(sc)
            scenarios.append(sc)
        except ParseError as e:
            errors.append(str(e))
        except OSError as e:
            errors.append("%s: %s" % (p, e.strerror))
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        print("%d parse error(s); nothing was run" % len(errors), file=sys.stderr)
        return 2
    if args.endpoint:
        args.jobs = 1  # faults such as `sim refuse` reach every client of a shared simulator
        shared = [sc for sc in scenarios if sc.profile or sc.time_scale or sc.config]
        if shared:
            for sc in shared:
                print("%s: needs its own iotsim (sim profile, time-scale or set): not with --endpoint" % sc.path,
                      file=sys.stderr)
            return 2
    if args.parse_only:
        print("%d scenario(s) parsed" % len(scenarios))
        return 0
    for exe in ((args.agent,) if args.endpoint else (args.iotsim, args.agent)):
        if not os.access(exe, os.X_OK):
            print("run.py: %s is missing or not executable (build it first)" % exe, file=sys.stderr)
            return 2

    def on_signal(signum, frame):
        with LIVE_LOCK:
            procs = list(LIVE)
        for p in procs:
            kill_proc(p)
        os._exit(130)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    t0 = time.monotonic()
    print("running %d scenario(s), %d at a time" % (len(scenarios), args.jobs), flush=True)
    results = [None] * len(scenarios)
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(Run(sc, args).run): i for i, sc in enumerate(scenarios)}
        for fut in concurrent.futures.as_completed(futs):
            i = futs[fut]
            r = fut.result()
            results[i] = r
            done += 1
            print("[%d/%d] %-5s %-28s %5.1fs  %s" % (done, len(scenarios), r["status"].upper(), r["scenario"],
                                                    r["seconds"], r.get("title") or ""), flush=True)
            if r["status"] != "pass":
                print_failure(r)
    wall = time.monotonic() - t0
    print("\n%-30s %-6s %7s  %s" % ("scenario", "result", "time", "failed at"))
    for r in results:
        extra = r.get("where", "") if r["status"] != "pass" else ""
        if r.get("known_bugs"):
            extra += "  (known bug, see the scenario)"
        print("%-30s %-6s %6.1fs  %s" % (r["scenario"], r["status"].upper(), r["seconds"], extra))
    npass = sum(1 for r in results if r["status"] == "pass")
    known = sum(1 for r in results if r["status"] == "fail" and r.get("known_bugs"))
    print("\n%d passed, %d failed%s, in %.1f s wall" % (
        npass, len(results) - npass, (" (%d with a known bug)" % known) if known else "", wall))
    if args.report:
        write_report(args.report, results, wall)
        print("report: %s/report.md, %s/report.json" % (args.report, args.report))
    if npass == len(results):
        return 0
    if args.known_bugs_ok and npass + known == len(results):
        print("(exit 0: every failure is a scenario marked known-bug, and --known-bugs-ok was given)")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
