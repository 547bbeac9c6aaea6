"""Helpers for iotsim's integration tests (Python 3 stdlib, plus the peers'
own modules where a test uses them).

- Sim: starts iotsim with a fresh temporary state directory and ephemeral
  ports, waits for endpoint.json, calls the control API (urllib), reads the
  event log, and stops iotsim with SIGTERM (then SIGKILL) on cleanup.
- spawn()/run(): child processes (mosquitto clients, openssl) with timeouts;
  every child gets PR_SET_PDEATHSIG so that nothing outlives the runner.
- A raw MQTT client over socket + ssl for the byte-level cases (keep-alive,
  garbage, bad protocol name, plain text to TLS ports).
- Paho: a thin paho-mqtt 1.6 wrapper that records callbacks for assertions.
- read_events(): the event log as records, for every runner that reads one;
  run_tests(): the unittest main of the integration suites.

Nothing here knows the engine's internals: what is asserted is what a client
sees on the wire and what the event log (a documented contract) says.
"""
import ctypes
import faulthandler
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def iotsim_binary():
    return os.environ.get("IOTSIM") or os.path.join(REPO, "build", "bin", "iotsim")


def read_events(path, offset=0):
    """The event-log records (JSON lines) of `path` from byte `offset` on.
    A last line without its newline is still being written and is left for
    the next read; a whole line that does not parse is kept as
    {"kind": "unparsable", "line": ...}, so that a bad record is seen."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return []
    out = []
    for raw in data.split(b"\n")[:-1]:
        ln = raw.decode("utf-8", "replace").strip()
        if ln:
            try:
                out.append(json.loads(ln))
            except ValueError:
                out.append({"kind": "unparsable", "line": ln})
    return out


def run_tests(module, argv, label, counts=None):
    """unittest's main for an integration suite: the named tests (or all),
    verbose on stderr, a watchdog, and "LABEL: N passed, N failed" last on
    stdout; returns the exit status.  With `counts` (a list), the summary
    line is left to the caller and (passed, failed) appended to it."""
    faulthandler.dump_traceback_later(300, exit=True)  # a hang must not block CI; children die with us
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(argv, module) if argv else loader.loadTestsFromModule(module)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped) - len(result.expectedFailures)
    print("%s: %.1f s" % (label, time.monotonic() - t0), file=sys.stderr)
    if counts is not None:
        counts.append((passed, failed))
    else:
        print("%s: %d passed, %d failed" % (label, passed, failed))
    return 1 if failed else 0


# ---- child processes ----------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _die_with_parent():
    # Runs in the child between fork and exec: if the runner dies (watchdog,
    # Ctrl-C, crash) the child gets SIGTERM instead of living on.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(args, **kw):
    """Popen with PDEATHSIG; the caller must stop it (see stop_process)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)


def stop_process(p, sig=signal.SIGTERM, timeout=5.0):
    """Stops `p` (sig, then SIGKILL after `timeout`) and reaps it."""
    if p is None or p.poll() is not None:
        return p.returncode if p is not None else None
    try:
        p.send_signal(sig)
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(5)
    except ProcessLookupError:
        return p.wait(5)


def run(args, timeout=15.0, input=None):
    """Runs a command to completion; returns CompletedProcess (text, merged)."""
    p = spawn(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(timeout=5)
        return subprocess.CompletedProcess(args, -9, out + "\n[killed after %.1f s]" % timeout, None)
    return subprocess.CompletedProcess(args, p.returncode, out, None)


def wait_for(pred, timeout, interval=0.02):
    """Polls pred() until it returns something truthy or timeout; returns it."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def cert_id_of(pem_path):
    """AWS's certificate id: SHA-256 of the DER, lowercase hex."""
    with open(pem_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


# ---- the simulator -------------------------------------------------------------

class Sim:
    """One iotsim process with its own temporary directory.

    Layout: TMP/state (the state dir, created by iotsim), TMP/events.log,
    TMP/iotsim.stderr.  IOTSIM_KEEP=1 keeps TMP for inspection.
    """

    def __init__(self, *args, binary=None, state_dir=None, tmp=None):
        self.binary = binary or iotsim_binary()
        self.args = list(args)
        self.tmp = tmp or tempfile.mkdtemp(prefix="iotsim-it-")
        self.state = state_dir or os.path.join(self.tmp, "state")
        self.log_path = os.path.join(self.tmp, "events.log")
        self.stderr_path = os.path.join(self.tmp, "iotsim.stderr")
        self.proc = None
        self.ep = None
        self.exit_code = None
        self.stop_seconds = None

    # lifecycle
    def start(self, timeout=10.0):
        epf = os.path.join(self.state, "endpoint.json")
        if os.path.exists(epf):
            os.remove(epf)  # a stale one from a previous run must not be read
        self._stderr = open(self.stderr_path, "ab")
        self.proc = spawn([self.binary, "--state-dir", self.state, "--ports", "auto",
                           "--log", self.log_path] + self.args,
                          stdout=self._stderr, stderr=self._stderr)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("iotsim exited with %s before endpoint.json: %s"
                                   % (self.proc.returncode, self.stderr_text()))
            try:
                with open(epf) as f:
                    ep = json.load(f)
            except (OSError, ValueError):
                return None
            return ep if ep.get("pid") == self.proc.pid else None
        self.ep = wait_for(ready, timeout)
        if not self.ep:
            self.stop()
            raise RuntimeError("no endpoint.json within %.0f s: %s" % (timeout, self.stderr_text()))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signals iotsim and waits; records exit code and how long it took."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            t0 = time.monotonic()
            self.exit_code = stop_process(self.proc, sig, timeout)
            self.stop_seconds = time.monotonic() - t0
        else:
            self.exit_code = self.proc.returncode
        if getattr(self, "_stderr", None):
            self._stderr.close()
            self._stderr = None
        return self.exit_code

    def cleanup(self):
        self.stop()
        if os.environ.get("IOTSIM_KEEP"):
            print("iotsim state kept in", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self, full=False):
        try:
            with open(self.stderr_path, errors="replace") as f:
                t = f.read()
                return t if full else t[-2000:]
        except OSError:
            return ""

    # endpoint.json
    def port(self, name):
        return self.ep["ports"][name]

    @property
    def host(self):
        return self.ep["host"]

    def device(self, name=None):
        """(cert, key) of the default device or of devices/NAME.*"""
        if name is None:
            return self.ep["cert_file"], self.ep["key_file"]
        return (os.path.join(self.state, "devices", name + ".crt"),
                os.path.join(self.state, "devices", name + ".key"))

    # control API
    def control(self, method, path, body=None, timeout=5.0):
        """(status, parsed JSON or raw text) from the control API."""
        url = "http://127.0.0.1:%d%s" % (self.port("control"), path)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path):
        return self.control("GET", path)

    def post(self, path, body):
        return self.control("POST", path, body)

    # event log
    def events(self):
        return read_events(self.log_path)

    def find(self, **want):
        """Events whose fields equal every key=value given (a callable value is a predicate)."""
        res = []
        for e in self.events():
            ok = True
            for k, v in want.items():
                if callable(v):
                    if k not in e or not v(e[k]):
                        ok = False
                        break
                elif e.get(k) != v:
                    ok = False
                    break
            if ok:
                res.append(e)
        return res

    def wait_event(self, timeout=5.0, **want):
        """The first event matching `want` (see find), waiting up to timeout; None if none."""
        r = wait_for(lambda: self.find(**want), timeout)
        return r[0] if r else None

    def tail(self, n=25):
        """The last n event-log lines, for failure messages."""
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        return "\n--- event log tail ---\n" + "\n".join(lines[-n:]) + "\n--- iotsim stderr ---\n" + self.stderr_text()

    # the third-party command-line clients
    def mosq_tls(self, listener="mtls", device=None, alpn=None, version=None, host="localhost"):
        cert, key = device if isinstance(device, tuple) else self.device(device)
        a = ["-h", host, "-p", str(self.port(listener)), "--cafile", self.ep["ca_file"],
             "--cert", cert, "--key", key]
        if alpn:
            a += ["--tls-alpn", alpn]
        if version:
            a += ["-V", version]
        return a

    def listening_sockets(self):
        """[(family, ip, port)] of the iotsim process's listening TCP sockets,
        from /proc (no privileges needed for our own child)."""
        return listening_sockets(self.proc.pid)


# ---- /proc/net/tcp ----------------------------------------------------------------

def _hex_ip(h, v6):
    b = bytes.fromhex(h)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, b[::-1])
    # /proc prints IPv6 as four host-order 32-bit words.
    words = [b[i:i + 4][::-1] for i in range(0, 16, 4)]
    return socket.inet_ntop(socket.AF_INET6, b"".join(words))


def listening_sockets(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            t = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    res = []
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            c = row.split()
            if len(c) < 10 or c[3] != "0A":  # 0A: LISTEN
                continue
            if c[9] not in inodes:
                continue
            ip, port = c[1].split(":")
            res.append((name, _hex_ip(ip, v6), int(port, 16)))
    return res


# ---- a raw MQTT client --------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def pkt(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id, keepalive=60, version=4, clean=True, proto=b"MQTT", props=b""):
    flags = 0x02 if clean else 0
    vh = mstr(proto) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        vh += varint(len(props)) + props
    return pkt(0x10, vh + mstr(client_id))


def publish_packet(topic, payload, qos=0, pid=1, retain=False, version=4):
    body = mstr(topic) + (struct.pack("!H", pid) if qos else b"")
    if version == 5:
        body += b"\x00"
    return pkt(0x30 | (qos << 1) | (1 if retain else 0), body + payload)


def subscribe_packet(pid, filters, version=4):
    body = struct.pack("!H", pid) + (b"\x00" if version == 5 else b"")
    for f, q in filters:
        body += mstr(f) + bytes([q])
    return pkt(0x82, body)


PINGREQ = b"\xc0\x00"


class RawMqtt:
    """A blocking MQTT-over-(TLS|TCP) socket that speaks bytes."""

    def __init__(self, host, port, tls=None, server_hostname="localhost", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)

    @staticmethod
    def tls_context(ca, cert=None, key=None, alpn=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buf += chunk

    def read_packet(self, timeout=5.0):
        """(first byte, body) of the next packet; EOFError when closed,
        socket.timeout when nothing came, ssl.SSLError / OSError as raised."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        mult, rem, i = 1, 0, 1
        while True:
            self._fill(i + 1, deadline)
            b = self.buf[i]
            rem += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        self._fill(i + rem, deadline)
        first, body = self.buf[0], self.buf[i:i + rem]
        self.buf = self.buf[i + rem:]
        return first, body

    def outcome(self, timeout=3.0):
        """What the server did next: ('packet', first, body), ('eof',),
        ('error', text) or ('timeout',)."""
        try:
            first, body = self.read_packet(timeout)
            return ("packet", first, body)
        except EOFError:
            return ("eof",)
        except socket.timeout:
            return ("timeout",)
        except (ssl.SSLError, OSError) as e:
            return ("error", "%s: %s" % (type(e).__name__, e))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_tls(sim, listener="mtls", device=None, alpn=None, host=None, server_hostname="localhost", timeout=5.0):
    cert, key = device if isinstance(device, tuple) else sim.device(device)
    ctx = RawMqtt.tls_context(sim.ep["ca_file"], cert, key, alpn)
    return RawMqtt(host or "127.0.0.1", sim.port(listener), tls=ctx, server_hostname=server_hostname,
                   timeout=timeout)


def _quiet_thread_errors(args):
    # paho 1.6's network thread dies on ssl.SSLEOFError when the server closes
    # during a large write; that is an expected outcome of some tests.
    name = getattr(args.thread, "name", "")
    print("  note: thread %s ended with %s: %s" % (name, args.exc_type.__name__, args.exc_value),
          file=__import__("sys").stderr)


threading.excepthook = _quiet_thread_errors


# ---- paho-mqtt 1.6 --------------------------------------------------------------------

class Paho:
    """paho.mqtt.client with its callbacks recorded.  connect() waits for the
    CONNACK; close() disconnects and stops the network thread."""

    def __init__(self, sim, client_id, v5=False, clean=True, keepalive=60, listener="mtls",
                 device=None, alpn=None, will=None, host="localhost", session_expiry=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        self.mqtt = mqtt
        self.v5 = v5
        self.sim = sim
        self.host, self.port = host, sim.port(listener)
        self.keepalive, self.clean = keepalive, clean
        if v5:
            self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311)
        self.connect_props = None
        if v5 and session_expiry is not None:
            self.connect_props = Properties(PacketTypes.CONNECT)
            self.connect_props.SessionExpiryInterval = session_expiry
        cert, key = device if isinstance(device, tuple) else sim.device(device)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(sim.ep["ca_file"])
        ctx.load_cert_chain(cert, key)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.c.tls_set_context(ctx)
        # No automatic reconnect during a test: a reconnect would hide the event.
        self.c.reconnect_delay_set(min_delay=60, max_delay=120)
        if will:
            self.c.will_set(*will)
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.connack = None  # (flags, rc, props)
        self.disconnect_rc = None
        self.suback = {}  # mid -> granted
        self.published = set()  # mids acknowledged (QoS 1) or sent (QoS 0)
        self.messages = queue.Queue()
        self.log = []
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_log = lambda c, u, level, s: self.log.append(s)
        self.started = False

    def _on_connect(self, c, u, flags, rc, props=None):
        self.connack = (flags, rc, props)
        self.connected.set()

    def _on_disconnect(self, c, u, rc, props=None):
        self.disconnect_rc = rc
        self.disconnected.set()

    def _on_message(self, c, u, msg):
        self.messages.put(msg)

    def _on_subscribe(self, c, u, mid, granted, props=None):
        self.suback[mid] = granted
        self.subscribed.set()

    def _on_publish(self, c, u, mid):
        self.published.add(mid)

    def connect(self, timeout=5.0):
        """Returns the CONNACK (flags, rc, props) or None when none came."""
        if self.v5:
            self.c.connect_async(self.host, self.port, self.keepalive, clean_start=self.clean,
                                 properties=self.connect_props)
        else:
            self.c.connect_async(self.host, self.port, self.keepalive)
        self.c.loop_start()
        self.started = True
        self.connected.wait(timeout)
        return self.connack

    def subscribe(self, topic, qos=1, timeout=5.0):
        """Returns the granted QoS list (v5: reason codes) or None on timeout."""
        if self.v5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            rc, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos))
        else:
            rc, mid = self.c.subscribe(topic, qos)
        if wait_for(lambda: mid in self.suback, timeout):
            return self.suback[mid]
        return None

    def publish(self, topic, payload, qos=0, retain=False, timeout=5.0):
        """True once the PUBLISH went out (QoS 0) or its PUBACK came (QoS 1)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        return bool(wait_for(lambda: info.mid in self.published, timeout))

    def get(self, timeout=3.0):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, wait=0.5):
        """Every message that arrives within `wait` seconds."""
        out = []
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                return out

    def gone(self):
        """The connection ended: on_disconnect fired, or paho's network thread
        died (paho 1.6 lets an SSLEOFError from a write end the thread
        without calling on_disconnect)."""
        t = getattr(self.c, "_thread", None)
        return self.disconnected.is_set() or (self.started and t is not None and not t.is_alive())

    def close(self):
        if not self.started:
            return
        self.started = False
        try:
            self.c.disconnect()  # also ends loop_forever's reconnect wait
        except Exception:
            pass
        self.c.loop_stop()
