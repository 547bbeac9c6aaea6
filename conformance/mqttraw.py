"""Byte-level MQTT 3.1.1 / 5 for the conformance checks (Python 3 stdlib).

Builds packets (CONNECT with Will and properties, PUBLISH, SUBSCRIBE, ...),
decodes what iotsim sends (including MQTT 5 properties), and wraps
iotsim_helper.RawMqtt in a Client that records every PUBLISH it gets.
Nothing here knows iotsim's internals: only the wire.
"""
import struct
import time

from iotsim_helper import RawMqtt, mstr, pkt, varint

NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT", 15: "AUTH"}

# MQTT 5 property ids -> (name, type)
PROPS = {
    0x01: ("payload_format", "b"), 0x02: ("message_expiry", "u32"), 0x03: ("content_type", "s"),
    0x08: ("response_topic", "s"), 0x09: ("correlation_data", "bin"), 0x0B: ("subscription_id", "vi"),
    0x11: ("session_expiry", "u32"), 0x12: ("assigned_client_id", "s"), 0x13: ("server_keep_alive", "u16"),
    0x15: ("auth_method", "s"), 0x16: ("auth_data", "bin"), 0x17: ("request_problem_info", "b"),
    0x18: ("will_delay", "u32"), 0x19: ("request_response_info", "b"), 0x1A: ("response_info", "s"),
    0x1C: ("server_reference", "s"), 0x1F: ("reason_string", "s"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"), 0x24: ("maximum_qos", "b"),
    0x25: ("retain_available", "b"), 0x26: ("user_property", "pair"), 0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_available", "b"), 0x29: ("subscription_id_available", "b"),
    0x2A: ("shared_available", "b"),
}
BY_NAME = {v[0]: (k, v[1]) for k, v in PROPS.items()}


def props(**kw):
    """Encoded MQTT 5 properties (with their length prefix)."""
    out = b""
    for name, val in kw.items():
        pid, t = BY_NAME[name]
        out += varint(pid)
        if t == "b":
            out += bytes([val])
        elif t == "u16":
            out += struct.pack("!H", val)
        elif t == "u32":
            out += struct.pack("!I", val)
        elif t == "vi":
            out += varint(val)
        elif t in ("s", "bin"):
            out += mstr(val)
        else:
            out += mstr(val[0]) + mstr(val[1])
    return varint(len(out)) + out


def _varint_at(b, i):
    mult, n = 1, 0
    while True:
        c = b[i]
        i += 1
        n += (c & 0x7F) * mult
        mult *= 128
        if not c & 0x80:
            return n, i


def parse_props(b, i):
    n, i = _varint_at(b, i)
    end, out = i + n, {}
    while i < end:
        pid, i = _varint_at(b, i)
        name, t = PROPS.get(pid, ("0x%02x" % pid, "b"))
        if t == "b":
            v, i = b[i], i + 1
        elif t == "u16":
            v, i = struct.unpack_from("!H", b, i)[0], i + 2
        elif t == "u32":
            v, i = struct.unpack_from("!I", b, i)[0], i + 4
        elif t == "vi":
            v, i = _varint_at(b, i)
        elif t in ("s", "bin"):
            ln = struct.unpack_from("!H", b, i)[0]
            v, i = bytes(b[i + 2:i + 2 + ln]), i + 2 + ln
            if t == "s":
                v = v.decode(errors="replace")
        else:
            l1 = struct.unpack_from("!H", b, i)[0]
            k = bytes(b[i + 2:i + 2 + l1]).decode()
            i += 2 + l1
            l2 = struct.unpack_from("!H", b, i)[0]
            v = (k, bytes(b[i + 2:i + 2 + l2]).decode())
            i += 2 + l2
        out[name] = v
    return out, end


def decode(first, body, v):
    """A dict: type, flags and the fields a check looks at."""
    t = first >> 4
    d = {"type": NAMES.get(t, str(t)), "flags": first & 0x0F, "raw": bytes([first]) + bytes(body)}
    b = bytes(body)
    try:
        if t == 2:
            d["sp"] = bool(b[0] & 1)
            d["rc"] = b[1]
            d["props"] = parse_props(b, 2)[0] if v == 5 and len(b) > 2 else {}
        elif t == 3:
            qos = (first >> 1) & 3
            d.update(qos=qos, dup=bool(first & 8), retain=bool(first & 1))
            tl = struct.unpack_from("!H", b, 0)[0]
            d["topic"] = b[2:2 + tl].decode(errors="replace")
            i = 2 + tl
            if qos:
                d["pid"] = struct.unpack_from("!H", b, i)[0]
                i += 2
            d["props"] = {}
            if v == 5:
                d["props"], i = parse_props(b, i)
            d["payload"] = b[i:]
        elif t in (4, 5, 6, 7, 11, 9):
            d["pid"] = struct.unpack_from("!H", b, 0)[0]
            i = 2
            if t in (4, 5, 6, 7):
                d["rc"] = b[2] if len(b) > 2 else 0
            else:
                if v == 5:
                    _, i = parse_props(b, 2)
                d["codes"] = list(b[i:])
        elif t == 14:
            d["rc"] = b[0] if b else 0
    except (IndexError, struct.error):
        d["malformed"] = True
    return d


def connect(cid, v=4, clean=True, ka=60, will=None, cprops=None, will_props=None):
    """CONNECT; will = (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    payload = mstr(cid)
    if will:
        topic, pl, q, r = will
        flags |= 0x04 | (q << 3) | (0x20 if r else 0)
        if v == 5:
            payload += will_props if will_props is not None else b"\x00"
        payload += mstr(topic) + mstr(pl)
    vh = mstr("MQTT") + bytes([v, flags]) + struct.pack("!H", ka)
    if v == 5:
        vh += cprops if cprops is not None else b"\x00"
    return pkt(0x10, vh + payload)


def publish(topic, payload=b"x", qos=0, pid=1, retain=False, v=4, pprops=None, dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    body = mstr(topic) + (struct.pack("!H", pid) if qos else b"")
    if v == 5:
        body += pprops if pprops is not None else b"\x00"
    return pkt(0x30 | (8 if dup else 0) | (qos << 1) | (1 if retain else 0), body + payload)


def subscribe(pid, filters, v=4, sprops=None):
    body = struct.pack("!H", pid)
    if v == 5:
        body += sprops if sprops is not None else b"\x00"
    for f, q in filters:
        body += mstr(f) + bytes([q])
    return pkt(0x82, body)


def unsubscribe(pid, filters, v=4, first=0xA2):
    body = struct.pack("!H", pid) + (b"\x00" if v == 5 else b"")
    for f in filters:
        body += mstr(f)
    return pkt(first, body)


def puback(pid):
    return pkt(0x40, struct.pack("!H", pid))


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class Client:
    """One raw MQTT connection.  PUBLISHes that arrive while a check waits
    for something else are kept in self.pubs (QoS 1 is acknowledged unless
    auto_ack is off)."""

    def __init__(self, sim, v=4, listener="tcp", device=None, alpn=None, auto_ack=True, name=""):
        self.sim, self.v, self.auto_ack, self.name = sim, v, auto_ack, name
        if listener == "tcp":
            self.raw = RawMqtt("127.0.0.1", sim.port("tcp"))
        else:
            cert, key = device if isinstance(device, tuple) else sim.device(device)
            ctx = RawMqtt.tls_context(sim.ep["ca_file"], cert, key, alpn)
            self.raw = RawMqtt("127.0.0.1", sim.port(listener), tls=ctx, server_hostname="localhost")
        self.pubs = []
        self.closed = False

    def send(self, data):
        try:
            self.raw.send(data)
            return True
        except OSError:
            self.closed = True
            return False

    def next(self, timeout=2.0):
        """The next packet (decoded), or {"type": "EOF"|"TIMEOUT"|"ERROR"}."""
        o = self.raw.outcome(timeout)
        if o[0] == "packet":
            return decode(o[1], o[2], self.v)
        if o[0] in ("eof", "error"):
            self.closed = True
            return {"type": "EOF", "detail": o[1] if len(o) > 1 else ""}
        return {"type": "TIMEOUT"}

    def expect(self, want, timeout=2.0):
        """The next packet that is not a PUBLISH (kept in self.pubs)."""
        end = time.monotonic() + timeout
        while True:
            left = max(0.0, end - time.monotonic())
            p = self.next(left)
            if p["type"] == "PUBLISH" and want != "PUBLISH":
                self._keep(p)
                continue
            return p

    def _keep(self, p):
        self.pubs.append(p)
        if p.get("qos") == 1 and self.auto_ack:
            self.send(puback(p["pid"]))

    def connect(self, cid, **kw):
        self.send(connect(cid, v=self.v, **kw))
        return self.expect("CONNACK", 3.0)

    def alive(self, timeout=2.0):
        """PINGREQ answered by PINGRESP: the connection is still open."""
        if not self.send(PINGREQ):
            return False
        return self.expect("PINGRESP", timeout)["type"] == "PINGRESP"

    def collect(self, quiet=0.4, limit=10.0, until=None):
        """Reads PUBLISHes until nothing comes for `quiet` s (or `until` of
        them arrived); returns every PUBLISH kept so far."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if until is not None and len(self.pubs) >= until:
                break
            p = self.next(quiet)
            if p["type"] == "PUBLISH":
                self._keep(p)
            elif p["type"] in ("TIMEOUT", "EOF"):
                break
        return self.pubs

    def ended(self, timeout=2.0):
        """The server closed the connection within timeout; returns (closed,
        the packets that came first)."""
        seen = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            p = self.next(max(0.0, end - time.monotonic()))
            if p["type"] == "EOF":
                return True, seen
            if p["type"] == "TIMEOUT":
                break
            seen.append(p)
        return False, seen

    def close(self):
        self.raw.close()

