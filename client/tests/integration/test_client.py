#!/usr/bin/python3
"""libiotc integration tests: the library (through iotc_itest, a program that
uses only iotc/client.h) against real brokers on 127.0.0.1 with ports the OS
picks: Debian's mosquitto (plain TCP, TLS with client certificates, its
WebSocket listener, plain and TLS) and iotsim (mTLS, ALPN x-amzn-mqtt-ca).

The outage tests are the point of issue 4: the broker goes away mid-stream
(mosquitto is SIGKILLed and restarted on the same port; iotsim, which cannot
be restarted on the ports it picked, drops the client and refuses it for a
second) and every QoS 1 publish made during the outage must arrive, in
order, within the offline queue's size.

Each test stops every process it started (addCleanup: SIGTERM, then SIGKILL).
Run: run.sh BUILD_DIR [unittest names...]  (or ITEST=... IOTSIM=...
/usr/bin/python3 test_client.py).  The last line printed is
`client integration: N passed, N failed`; non-zero exit on any failure.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
# iotsim's own integration helpers: starting iotsim, child processes that die
# with the runner, stopping them.  Standard library only.
sys.path.insert(0, os.path.join(REPO, "broker-sim", "tests", "integration"))
from iotsim_helper import Sim, iotsim_binary, run, run_tests, spawn, stop_process, wait_for  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"


def itest_binary():
    return os.environ.get("ITEST") or os.path.join(REPO, "build", "tests", "integration", "iotc_itest")


def free_port():
    """A port the OS picks; closed again so that a broker can bind it (and
    rebind it after a restart: mosquitto sets SO_REUSEADDR)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def accepting(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


# ---- a PKI made with the openssl command -------------------------------------------

_CA_CNF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = %s
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


class Pki:
    """A CA with a server certificate (SAN DNS:localhost, IP:127.0.0.1) and a
    client certificate, plus an unrelated CA for the wrong-CA test."""

    def __init__(self, d):
        self.d = d
        self.ca, self.ca_key = self._ca("itest-ca")
        self.other_ca, _ = self._ca("itest-other-ca")
        self.server, self.server_key = self._leaf(
            "server", "localhost",
            "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"
            "basicConstraints = CA:FALSE\n")
        self.client, self.client_key = self._leaf(
            "client", "itest-device", "extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n")
        # OpenSSL 3.0 cannot back-date notBefore; -days -1 puts notAfter a day
        # before it, which verification reports as expired.
        self.expired, self.expired_key = self._leaf(
            "expired", "localhost",
            "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"
            "basicConstraints = CA:FALSE\n", days="-1")

    def _p(self, name):
        return os.path.join(self.d, name)

    def _openssl(self, *args):
        r = run(["openssl", *args], timeout=20)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stdout))

    def _ca(self, cn):
        cnf = self._p(cn + ".cnf")
        with open(cnf, "w") as f:
            f.write(_CA_CNF % cn)
        crt, key = self._p(cn + ".crt"), self._p(cn + ".key")
        self._openssl("req", "-x509", "-config", cnf, "-extensions", "v3_ca", "-newkey", "ec",
                      "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                      "-days", "2")
        return crt, key

    def _leaf(self, name, cn, ext, days="2"):
        cnf = self._p(name + ".cnf")
        with open(cnf, "w") as f:
            f.write(_CA_CNF % cn)
        extf = self._p(name + ".ext")
        with open(extf, "w") as f:
            f.write(ext)
        key, csr, crt = self._p(name + ".key"), self._p(name + ".csr"), self._p(name + ".crt")
        self._openssl("req", "-new", "-config", cnf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", key, "-out", csr)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-out", crt, "-days", days, "-extfile", extf)
        return crt, key


_PKI = None
_PKI_DIR = None


def pki():
    """One PKI for the whole run (key generation is the slow part)."""
    global _PKI, _PKI_DIR
    if _PKI is None:
        _PKI_DIR = tempfile.mkdtemp(prefix="iotc-it-pki-")
        _PKI = Pki(_PKI_DIR)
    return _PKI


def tearDownModule():
    if _PKI_DIR:
        shutil.rmtree(_PKI_DIR, ignore_errors=True)


# ---- mosquitto ---------------------------------------------------------------------

class Mosquitto:
    """One mosquitto with a config in its own temporary directory.  kill()
    and start() again reuse the same ports (the outage tests)."""

    def __init__(self, listeners):
        """listeners: [(kind, port)], kind in tcp | tls | tls-expired | ws | wss."""
        self.tmp = tempfile.mkdtemp(prefix="iotc-it-mosq-")
        self.listeners = listeners
        self.conf = os.path.join(self.tmp, "mosquitto.conf")
        self.log = os.path.join(self.tmp, "mosquitto.log")
        self.proc = None
        lines = ["user root",  # it would switch to `mosquitto`, which cannot read our temp dir
                 "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 "allow_anonymous true",
                 # A restart after SIGKILL starts empty: no sessions, no
                 # subscriptions (the outage test relies on it).
                 "persistence false"]
        for kind, port in listeners:
            lines.append("listener %d 127.0.0.1" % port)
            if kind in ("ws", "wss"):
                # mosquitto's websockets listener binds IPv6 too unless told.
                lines += ["protocol websockets", "socket_domain ipv4"]
            if kind in ("tls", "wss"):
                p = pki()
                lines += ["cafile %s" % p.ca, "certfile %s" % p.server, "keyfile %s" % p.server_key]
            if kind == "tls-expired":
                p = pki()
                lines += ["cafile %s" % p.ca, "certfile %s" % p.expired, "keyfile %s" % p.expired_key]
                # The WebSocket builders carry no client certificate.
                lines.append("require_certificate %s" % ("true" if kind == "tls" else "false"))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def port(self, kind):
        return [p for k, p in self.listeners if k == kind][0]

    def start(self, timeout=5.0):
        self._log = open(self.log, "ab")
        self.proc = spawn([MOSQUITTO, "-c", self.conf], stdout=self._log, stderr=self._log)
        ok = wait_for(lambda: self.proc.poll() is not None or all(accepting(p) for _, p in self.listeners),
                      timeout)
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("mosquitto did not come up: %s" % self.log_text())
        return self

    def kill(self):
        """SIGKILL: no DISCONNECT, no clean close, nothing saved."""
        self.proc.kill()
        self.proc.wait(5)
        self._log.close()

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""


# ---- iotc_itest's output ---------------------------------------------------------------

def summary(out):
    """The SUMMARY line's JSON object, or None."""
    for ln in out.splitlines():
        if ln.startswith("SUMMARY "):
            return json.loads(ln[len("SUMMARY "):])
    return None


class Outage:
    """The events of an outage run, in the order the program printed them."""

    def __init__(self, lines):
        self.lines = lines
        self.calls = {}      # i -> status of the iotc_publish call
        self.done = {}       # i -> completion status
        self.recv = []       # payload indexes in arrival order
        self.recv_dup = []   # the DUP flag of each arrival
        self.phase = {}      # i -> "before" | "outage" | "after" | "ambiguous"
        self.interrupts = [ln for ln in lines if ln.startswith("INTERRUPTED")]
        self.resumes = [ln for ln in lines if ln.startswith("RESUMED")]
        state = "before"  # before the first interruption, outage, after the resume
        pub_state = {}
        for ln in lines:
            w = ln.split()
            if not w:
                continue
            if w[0] == "INTERRUPTED" and state == "before":
                state = "outage"
            elif w[0] == "RESUMED" and state == "outage":
                state = "after"
            elif w[0] == "PUB":
                pub_state[int(w[1])] = state
            elif w[0] == "CALL":
                i = int(w[1])
                self.calls[i] = w[2]
                # The call happened between its PUB and CALL lines; a state
                # change in between leaves its phase ambiguous.
                self.phase[i] = pub_state.get(i) if pub_state.get(i) == state else "ambiguous"
            elif w[0] == "DONE":
                self.done[int(w[1])] = w[2]
            elif w[0] == "RECV" and w[1] != "?":
                self.recv.append(int(w[1]))
                self.recv_dup.append("dup=1" in w)
        self.summary = summary("\n".join(lines))

    def of_phase(self, ph):
        return sorted(i for i, p in self.phase.items() if p == ph)

    def first_arrivals(self):
        seen, out = set(), []
        for i in self.recv:
            if i not in seen:
                seen.add(i)
                out.append(i)
        return out

    def duplicates(self):
        seen, dups = set(), []
        for i in self.recv:
            if i in seen:
                dups.append(i)
            seen.add(i)
        return dups


# ---- the tests ----------------------------------------------------------------------------

class Base(unittest.TestCase):

    def mosquitto(self, *kinds):
        if all(k in ("ws", "wss") for k in kinds):
            # mosquitto 2.0.11 exits with "Unable to start any listening
            # sockets" when its only listeners are websockets ones.
            kinds = kinds + ("tcp",)
        m = Mosquitto([(k, free_port()) for k in kinds])
        self.addCleanup(m.cleanup)
        m.start()
        return m

    def sim(self, *args):
        s = Sim(*args)
        self.addCleanup(s.cleanup)
        s.start()
        return s

    def itest(self, mode, *args, timeout=30.0):
        """Runs iotc_itest to completion: (exit status, output)."""
        p = spawn([itest_binary(), *args, mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(stop_process, p)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=5)
            out += "\n[iotc_itest killed after %.0f s]" % timeout
            return -9, out
        self.assertNoSanitizerReport(out)
        return p.returncode, out

    def assertNoSanitizerReport(self, out):
        """With SANITIZE=1 a library bug aborts iotc_itest; say so plainly."""
        m = re.search(r"(ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:)", out)
        if m:
            self.fail("sanitizer report from iotc_itest:\n" + out[max(0, m.start() - 300):m.start() + 3000])

    def assertPubsub(self, args, count=20):
        rc, out = self.itest("pubsub", *args, "--count", str(count))
        s = summary(out)
        self.assertIsNotNone(s, "no SUMMARY (exit %d):\n%s" % (rc, out[-3000:]))
        self.assertTrue(s.get("ok"), "pubsub failed: %s\n%s" % (s, out[-3000:]))
        self.assertEqual(s["acked"], count, s)
        self.assertEqual(s["received"], count, s)
        self.assertTrue(s["in_order"], s)
        # No reconnect happened, so nothing may arrive twice.
        self.assertEqual(s["duplicates"], 0, s)
        self.assertEqual(s["unexpected"], 0, s)
        self.assertEqual(rc, 0, out[-3000:])
        self.assertNotIn("INTERRUPTED", out)
        return s

    def assertExpectFail(self, args, err, reason_re):
        rc, out = self.itest("expect-fail", *args, "--timeout-ms", "8000")
        self.assertEqual(rc, 0, "expected a connection failure, exit %d (5: connected, 6: nothing):\n%s"
                         % (rc, out[-3000:]))
        m = re.search(r'^RESULT failed err=(\S+) return_code=(\d+) reason="(.*)"$', out, re.M)
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(1), err, out)
        self.assertRegex(m.group(3), reason_re, "the failure reason does not name the cause:\n" + out)
        return m.group(3)

    # -- outage ----------------------------------------------------------------------

    def run_outage(self, broker_down, broker_up, args, kill_after=15, down_secs=1.0, timeout=40.0):
        """Runs iotc_itest outage; when it has printed "PUB kill_after",
        calls broker_down(), sleeps down_secs, calls broker_up().  Returns an
        Outage of its output and the exit status."""
        p = spawn([itest_binary(), *args, "outage"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                  text=True)
        self.addCleanup(stop_process, p)
        lines = []
        hit = threading.Event()

        def reader():
            for ln in p.stdout:
                ln = ln.rstrip("\n")
                lines.append(ln)
                if ln == "PUB %d" % kill_after:
                    hit.set()
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        if not hit.wait(15):
            stop_process(p)
            t.join(5)
            self.fail("iotc_itest never published message %d:\n%s" % (kill_after, "\n".join(lines[-60:])))
        broker_down()
        time.sleep(down_secs)
        broker_up()
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(p)
            rc = None
        t.join(5)
        self.assertNoSanitizerReport("\n".join(lines))
        o = Outage(lines)
        o.rc = rc
        o.text = "\n".join(lines)
        return o

    def straddling(self, o, ctx):
        """The publishes whose call straddled a state change: at most one
        per change (the call under way), with a result allowed either way."""
        amb = o.of_phase("ambiguous")
        self.assertLessEqual(len(amb), 2, "more publishes straddled a state change than there were changes" + ctx)
        if amb:
            print("\n  publishes made as the connection changed: %s" % amb, file=sys.stderr)
        return amb

    def check_outage_all_arrive(self, o, n, q):
        ctx = "\n--- iotc_itest output ---\n" + o.text[-6000:]
        self.assertEqual(o.rc, 0, "iotc_itest did not finish cleanly" + ctx)
        self.assertTrue(o.interrupts, "the client never saw the outage" + ctx)
        self.assertTrue(o.resumes, "the client never resumed" + ctx)
        outage = o.of_phase("outage")
        # A publish whose call was under way when the connection went or came
        # back (the kill follows its PUB line at once) belongs to neither
        # phase; what is claimed here holds for both, so it must arrive too.
        ambiguous = self.straddling(o, ctx)
        # The test is only meaningful when publishes were made offline, and
        # only claims anything for N_outage <= Q.
        self.assertGreaterEqual(len(outage), 5, "too few publishes during the outage: %s%s" % (outage, ctx))
        self.assertLessEqual(len(outage), q, "the outage outgrew the queue; fix the test's timing" + ctx)
        self.assertEqual(sorted(o.calls), list(range(1, n + 1)), ctx)
        bad_calls = {i: s for i, s in o.calls.items() if s != "IOTC_OK"}
        self.assertEqual(bad_calls, {}, "publish calls refused" + ctx)
        bad_done = {i: o.done.get(i) for i in range(1, n + 1) if o.done.get(i) != "IOTC_OK"}
        self.assertEqual(bad_done, {}, "publishes that did not complete OK (none may be dropped: "
                         "%d made offline, queue %d)%s" % (len(outage), q, ctx))
        first = o.first_arrivals()
        missing = [i for i in outage if i not in first]
        self.assertEqual(missing, [], "publishes made during the outage never arrived" + ctx)
        self.assertEqual([i for i in ambiguous if i not in first], [],
                         "a publish made as the connection changed never arrived" + ctx)
        self.assertEqual(first, sorted(first), "first arrivals out of publish order" + ctx)
        after = o.of_phase("after")
        missing_after = [i for i in after if i not in first]
        self.assertEqual(missing_after, [], "publishes made after the resume never arrived" + ctx)
        before_lost = [i for i in o.of_phase("before") if i not in first]
        dups = o.duplicates()
        # Reported, not failed: QoS 1 allows duplicates (DUP resends), and a
        # message the killed broker had acknowledged but not yet delivered is
        # the broker's loss, not the client's.
        print("\n  outage: %d made offline (%d..%d), %d duplicates %s, lost before the kill: %s, summary %s"
              % (len(outage), outage[0], outage[-1], len(dups), dups, before_lost, o.summary),
              file=sys.stderr)


class T01MosquittoPubsub(Base):
    """20 QoS 1 messages to the client's own subscription over each transport."""

    def test_a_tcp(self):
        m = self.mosquitto("tcp")
        self.assertPubsub(["--port", str(m.port("tcp")), "--transport", "tcp", "--client-id", "it-tcp"])

    def test_b_tls_client_certificate(self):
        p = pki()
        m = self.mosquitto("tls")
        self.assertPubsub(["--port", str(m.port("tls")), "--transport", "tls", "--ca", p.ca, "--cert", p.client,
                           "--key", p.client_key, "--client-id", "it-tls"])

    def test_c_tls_name_verified_through_address(self):
        # Connect to 127.0.0.1 and verify "localhost" (iotc_builder_set_address).
        p = pki()
        m = self.mosquitto("tls")
        self.assertPubsub(["--port", str(m.port("tls")), "--transport", "tls", "--verify-name", "localhost",
                           "--ca", p.ca, "--cert", p.client, "--key", p.client_key, "--client-id", "it-tls-n"])

    def test_d_websocket(self):
        m = self.mosquitto("ws")
        self.assertPubsub(["--port", str(m.port("ws")), "--transport", "ws", "--client-id", "it-ws"])

    def test_e_websocket_tls(self):
        p = pki()
        m = self.mosquitto("wss")
        self.assertPubsub(["--port", str(m.port("wss")), "--transport", "wss", "--verify-name", "localhost",
                           "--ca", p.ca, "--client-id", "it-wss"])


class T02MosquittoTlsFailures(Base):

    def test_a_wrong_ca(self):
        p = pki()
        m = self.mosquitto("tls")
        self.assertExpectFail(["--port", str(m.port("tls")), "--transport", "tls", "--ca", p.other_ca,
                               "--cert", p.client, "--key", p.client_key, "--client-id", "it-wrong-ca"],
                              "IOTC_ERR_TLS",
                              r"(?i)verif.*(local issuer|issuer certificate|self[- ]signed)")

    def test_b_hostname_mismatch(self):
        p = pki()
        m = self.mosquitto("tls")
        self.assertExpectFail(["--port", str(m.port("tls")), "--transport", "tls", "--host", "127.0.0.1",
                               "--verify-name", "wrong.example", "--ca", p.ca, "--cert", p.client,
                               "--key", p.client_key, "--client-id", "it-wrong-name"],
                              "IOTC_ERR_TLS", r"(?i)host ?name mismatch")

    def test_d_expired_server_certificate(self):
        p = pki()
        m = self.mosquitto("tls-expired")
        self.assertExpectFail(["--port", str(m.port("tls-expired")), "--transport", "tls", "--verify-name",
                               "localhost", "--ca", p.ca, "--cert", p.client, "--key", p.client_key,
                               "--client-id", "it-expired"],
                              "IOTC_ERR_TLS", r"(?i)expired")

    def test_c_nothing_listening(self):
        # A port nobody listens on: IOTC_ERR_CONNECT, not a TLS or timeout error.
        self.assertExpectFail(["--port", str(free_port()), "--transport", "tcp", "--client-id", "it-nobody"],
                              "IOTC_ERR_CONNECT", r".")


class T03Iotsim(Base):
    """iotsim's listeners with its default device (endpoint.json)."""

    def args(self, s, listener, *extra):
        cert, key = s.device()
        return ["--host", s.host, "--port", str(s.port(listener)), "--transport", "tls",
                "--verify-name", "localhost", "--ca", s.ep["ca_file"], "--cert", cert, "--key", key, *extra]

    def test_a_mtls_8883_role(self):
        s = self.sim()
        self.assertPubsub(self.args(s, "mtls", "--client-id", "it-sim-mtls"))

    def test_b_alpn_443_role(self):
        s = self.sim()
        self.assertPubsub(self.args(s, "alpn", "--alpn", "x-amzn-mqtt-ca", "--client-id", "it-sim-alpn"))

    def test_c_alpn_443_role_refuses_no_alpn(self):
        # The 443 role without ALPN: iotsim refuses the TLS session, and the
        # client must say so rather than hang or claim success.
        s = self.sim()
        rc, out = self.itest("expect-fail", *self.args(s, "alpn", "--alpn", "", "--client-id", "it-sim-noalpn"),
                             "--timeout-ms", "8000")
        self.assertEqual(rc, 0, "exit %d (5: connected, 6: nothing reported):\n%s" % (rc, out))
        self.assertRegex(out, r"RESULT failed err=IOTC_ERR_(TLS|CONNECTION_LOST|CONNECT|PROTOCOL) ", out)


class T04OutageMosquitto(Base):
    """mosquitto (persistence false) SIGKILLed mid-stream and restarted on the
    same port after ~1 s.  The client subscribes to its own topic with a
    persistent session (clean false); the restarted broker has no session, so
    the client must resubscribe before it drains the queue.  The broker-side
    path (client -> broker -> client) is what the arrivals show."""

    N = 60

    def outage(self, q, drop, client_id):
        m = self.mosquitto("tcp")
        port = m.port("tcp")
        args = ["--port", str(port), "--transport", "tcp", "--client-id", client_id, "--clean", "0",
                "--topic", "itest/outage/" + client_id, "--count", str(self.N), "--rate", "20",
                "--queue", str(q), "--drop", drop, "--drain-hz", "50", "--reconnect-ms", "200,1000",
                "--settle-ms", "15000"]
        return self.run_outage(m.kill, m.start, args, kill_after=15, down_secs=1.0)

    def test_a_every_offline_publish_arrives_in_order(self):
        q = 50
        o = self.outage(q, "newest", "it-outage-a")
        self.check_outage_all_arrive(o, self.N, q)

    def test_b_drop_oldest_keeps_the_newest_q(self):
        q = 8
        o = self.outage(q, "oldest", "it-outage-b")
        ctx = "\n--- iotc_itest output ---\n" + o.text[-6000:]
        self.assertEqual(o.rc, 0, "iotc_itest did not finish cleanly" + ctx)
        self.assertTrue(o.interrupts and o.resumes, "no outage seen" + ctx)
        # A straddling publish is online (completes OK) or offline (queued,
        # and maybe dropped): either is right; where its completion shows it
        # was queued, the partition below counts it as offline.
        ambiguous = self.straddling(o, ctx)
        self.assertEqual({i: o.done.get(i) for i in ambiguous
                          if o.done.get(i) not in ("IOTC_OK", "IOTC_ERR_QUEUE_DROPPED")}, {},
                         "a publish made as the connection changed neither completed nor was dropped" + ctx)
        outage = o.of_phase("outage")
        self.assertGreater(len(outage), q + 2, "the outage did not overflow the queue; fix the timing" + ctx)
        self.assertEqual({i: s for i, s in o.calls.items() if s != "IOTC_OK"}, {}, "publish calls refused" + ctx)
        # A publish that straddled the resume and evicted the q-th newest
        # offline one was itself queued offline (its call returned after the
        # client had resumed, but it entered the queue first): it belongs at
        # the end of the offline run.  Seen in CI: PUB 43, DONE 35 dropped,
        # RESUMED, CALL 43.  One straddling the interruption and dropped was
        # the oldest offline one.
        offline = list(outage)
        for a in ambiguous:
            if (a == outage[-1] + 1 and o.done.get(a) == "IOTC_OK"
                    and o.done.get(outage[-q]) == "IOTC_ERR_QUEUE_DROPPED"):
                offline.append(a)
            elif a == outage[0] - 1 and o.done.get(a) == "IOTC_ERR_QUEUE_DROPPED":
                offline.insert(0, a)
        kept, dropped = offline[-q:], offline[:-q]
        self.assertEqual({i: o.done.get(i) for i in dropped if o.done.get(i) != "IOTC_ERR_QUEUE_DROPPED"}, {},
                         "the oldest offline publishes must complete with IOTC_ERR_QUEUE_DROPPED" + ctx)
        self.assertEqual({i: o.done.get(i) for i in kept if o.done.get(i) != "IOTC_OK"}, {},
                         "the newest %d offline publishes must complete OK" % q + ctx)
        other = [i for i in range(1, self.N + 1) if i not in outage and i not in ambiguous]
        self.assertEqual({i: o.done.get(i) for i in other if o.done.get(i) != "IOTC_OK"}, {},
                         "publishes made online must complete OK" + ctx)
        first = o.first_arrivals()
        self.assertEqual([i for i in offline if i in first], kept,
                         "exactly the newest %d offline publishes must arrive" % q + ctx)
        self.assertEqual(first, sorted(first), "first arrivals out of publish order" + ctx)
        self.assertEqual([i for i in o.of_phase("after") if i not in first], [],
                         "publishes made after the resume never arrived" + ctx)
        s = o.summary or {}
        dropped_too = [i for i in ambiguous if i not in offline and o.done.get(i) == "IOTC_ERR_QUEUE_DROPPED"]
        self.assertEqual(s.get("dropped"), len(dropped) + len(dropped_too),
                         "stats.dropped disagrees with the completions" + ctx)
        print("\n  drop-oldest: offline %s, dropped %s, duplicates %s" % (offline, dropped, o.duplicates()),
              file=sys.stderr)


class T05OutageIotsim(Base):
    """iotsim picks its ports (--ports auto) and has no option to be
    restarted on given ones, so its outage is made with the control API
    instead of a kill: refuse CONNECTs for ~1 s, then reset the client's TCP
    connection (abrupt drop: RST, no DISCONNECT).  The broker keeps the
    persistent session, so the client comes back with session present."""

    N = 60

    def test_a_every_offline_publish_arrives_in_order(self):
        s = self.sim()
        cert, key = s.device()
        q, cid = 50, "it-sim-outage"
        args = ["--host", s.host, "--port", str(s.port("mtls")), "--transport", "tls", "--verify-name", "localhost",
                "--ca", s.ep["ca_file"], "--cert", cert, "--key", key, "--client-id", cid, "--clean", "0",
                "--topic", "itest/outage", "--count", str(self.N), "--rate", "20", "--queue", str(q),
                "--drop", "newest", "--drain-hz", "50", "--reconnect-ms", "200,1000", "--settle-ms", "15000"]

        def down():
            st, body = s.post("/faults/refuse", {"seconds": 1.2})
            self.assertEqual(st, 200, body)
            st, body = s.post("/faults/drop", {"client_id": cid, "abrupt": True})
            self.assertEqual(st, 200, body)
        o = self.run_outage(down, lambda: None, args, kill_after=15, down_secs=0)
        self.check_outage_all_arrive(o, self.N, q)


def main(argv):
    missing = [b for b in (itest_binary(), iotsim_binary()) if not os.access(b, os.X_OK)]
    if missing or not os.access(MOSQUITTO, os.X_OK):
        print("not found: %s (set ITEST and IOTSIM or pass the build dir to run.sh)"
              % ", ".join(missing + ([MOSQUITTO] if not os.access(MOSQUITTO, os.X_OK) else [])), file=sys.stderr)
        print("client integration: 0 passed, 1 failed")
        return 1
    return run_tests(sys.modules[__name__], argv, "client integration")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
