#!/usr/bin/python3
"""iotsim integration tests: real sockets on 127.0.0.1, ephemeral ports, and
clients nobody here wrote (mosquitto_pub/mosquitto_sub, paho-mqtt 1.6, the
AWS CRT's Python bindings, the openssl CLI, Python's ssl module).

Each test starts its own iotsim (fresh temporary state directory,
`--ports auto`, `--log`) and stops every process it started.  What is
asserted is what the third-party client sees, plus the event log.

Run: run.sh BUILD_DIR [unittest names...]  (or IOTSIM=path /usr/bin/python3 test_iotsim.py)
The last line printed is `integration: N passed, N failed`; the exit status
is non-zero if anything failed.
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from iotsim_helper import (PINGREQ, Paho, RawMqtt, Sim, cert_id_of, connect_packet, iotsim_binary, run_tests,  # noqa: E402
                           raw_tls, run, spawn, stop_process, wait_for)

ALPN_AWS = ["x-amzn-mqtt-ca"]


class Base(unittest.TestCase):
    """Starts what a test needs and registers its cleanup (LIFO: clients
    before the simulator)."""

    def sim(self, *args, **kw):
        s = Sim(*args, **kw)
        self.addCleanup(self._stop_sim, s)
        s.start()
        return s

    def _stop_sim(self, s):
        """Every iotsim must stop cleanly on SIGTERM (status 0, within the
        timeout, no sanitizer report when built with SANITIZE=1)."""
        try:
            rc = s.stop()
            err = s.stderr_text(full=True)
            m = re.search(r"(ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:)", err)
            if m:
                raise AssertionError("iotsim sanitizer report:\n" + err[max(0, m.start() - 200):m.start() + 3000])
            if rc != 0:
                raise AssertionError("iotsim exited with status %r on SIGTERM (%.2f s): %s"
                                     % (rc, s.stop_seconds or 0, err[-1500:]))
        finally:
            s.cleanup()

    def paho(self, sim, client_id, **kw):
        p = Paho(sim, client_id, **kw)
        self.addCleanup(p.close)
        return p

    def popen(self, args):
        p = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(stop_process, p)
        return p

    def finish(self, p, timeout=10.0):
        """Output of a background client once it exits (killed after timeout)."""
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=5)
            out += "\n[killed after %.1f s]" % timeout
        return out

    def raw(self, sim, *a, **kw):
        r = raw_tls(sim, *a, **kw)
        self.addCleanup(r.close)
        return r

    def assertEvent(self, sim, timeout=3.0, **want):
        e = sim.wait_event(timeout, **want)
        self.assertIsNotNone(e, "no event-log record with %r%s" % (want, sim.tail()))
        return e

    def assertNoEvent(self, sim, **want):
        found = sim.find(**want)
        self.assertFalse(found, "unexpected event-log record(s) %r%s" % (found, sim.tail()))

    def mosq_sub(self, sim, client_id, topic, extra=(), **tls):
        """mosquitto_sub in the background, returned once its SUBACK went out."""
        p = self.popen(["mosquitto_sub", *sim.mosq_tls(**tls), "-i", client_id, "-t", topic, *extra])
        if not sim.wait_event(5, kind="out", type="SUBACK", client=client_id):
            out = self.finish(p, 1)
            self.fail("mosquitto_sub %s got no SUBACK: %s%s" % (client_id, out, sim.tail()))
        return p

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="iotsim-it-x-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


# ---- 1. zero-config start ------------------------------------------------------------

class T01ZeroConfig(Base):

    def test_a_fresh_state_dir(self):
        tmp = self.tmpdir()
        state = os.path.join(tmp, "state")
        self.assertFalse(os.path.exists(state))
        s = self.sim(tmp=tmp)
        ep = s.ep
        for f in ("ca.crt", "ca.key", "server.crt", "server.key", "registry.json", "endpoint.json"):
            self.assertTrue(os.path.isfile(os.path.join(state, f)), f)
        thing = ep["thing_name"]
        crt = os.path.join(state, "devices", thing + ".crt")
        key = os.path.join(state, "devices", thing + ".key")
        self.assertTrue(os.path.isfile(crt) and os.path.isfile(key))
        self.assertEqual(os.path.realpath(ep["cert_file"]), os.path.realpath(crt))
        self.assertEqual(os.path.realpath(ep["key_file"]), os.path.realpath(key))
        self.assertEqual(os.path.realpath(ep["ca_file"]), os.path.realpath(os.path.join(state, "ca.crt")))
        self.assertEqual(ep["host"], "127.0.0.1")
        ports = ep["ports"]
        for k in ("mtls", "alpn", "control"):
            self.assertIsInstance(ports.get(k), int, k)
            self.assertGreater(ports[k], 0)
        self.assertEqual(len({ports["mtls"], ports["alpn"], ports["control"]}), 3)
        self.assertNotIn("tcp", ports, "plain TCP must be off without --insecure-tcp")
        for k in ("region", "account_id", "access_key_id", "secret_access_key"):
            self.assertTrue(ep.get(k), k)
        self.assertEqual(ep.get("profile"), "classic")
        self.assertEqual(ep.get("pid"), s.proc.pid)
        with open(os.path.join(state, "registry.json")) as f:
            reg = json.load(f)
        things = {t["name"]: t for t in reg["things"]}
        self.assertIn(thing, things)
        self.assertEqual(things[thing]["certificate_id"], cert_id_of(crt))
        self.assertEqual(things[thing]["status"], "ACTIVE")
        r = run(["openssl", "verify", "-CAfile", ep["ca_file"], crt])
        self.assertEqual(r.returncode, 0, r.stdout)
        r = run(["openssl", "x509", "-in", os.path.join(state, "server.crt"), "-noout", "-ext", "subjectAltName"])
        self.assertIn("DNS:localhost", r.stdout)
        self.assertIn("IP Address:127.0.0.1", r.stdout)
        self.assertEqual(os.stat(key).st_mode & 0o077, 0, "device private key readable by others")
        self.assertEqual(s.get("/health"), (200, {"status": "ok"}))

    def _pubsub(self, listener, alpn, version):
        s = self.sim()
        tag = "%s-%s" % (listener, version or "311")
        topic, payload = "zc/" + tag, "hello " + tag
        tls = dict(listener=listener, alpn=alpn, version=version)
        sub = self.mosq_sub(s, "sub-" + tag, topic, ["-q", "1", "-C", "1", "-W", "10"], **tls)
        r = run(["mosquitto_pub", *s.mosq_tls(**tls), "-i", "pub-" + tag, "-t", topic, "-m", payload,
                 "-q", "1", "-d"], timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout + s.tail())
        self.assertIn("received CONNACK (0)", r.stdout)
        self.assertIn("received PUBACK", r.stdout)
        out = self.finish(sub)
        self.assertEqual(out.strip(), payload, s.tail())
        self.assertEqual(sub.returncode, 0)
        conn = self.assertEvent(s, kind="in", type="CONNECT", client_id="pub-" + tag)
        self.assertEqual(conn["version"], 5 if version == "mqttv5" else 4)
        opened = self.assertEvent(s, kind="decision", what="open", conn=conn["conn"])
        self.assertEqual(opened.get("transport"), listener)
        self.assertEqual(opened.get("principal"), cert_id_of(s.ep["cert_file"]))
        self.assertEvent(s, kind="out", type="PUBLISH", client="sub-" + tag, topic=topic)

    def test_b_mosquitto_mtls_v311(self):
        self._pubsub("mtls", None, None)

    def test_c_mosquitto_mtls_v5(self):
        self._pubsub("mtls", None, "mqttv5")

    def test_d_mosquitto_alpn_v311(self):
        self._pubsub("alpn", "x-amzn-mqtt-ca", None)

    def test_e_mosquitto_alpn_v5(self):
        self._pubsub("alpn", "x-amzn-mqtt-ca", "mqttv5")

    def test_g_connections_outlive_the_tls_accept_timeout(self):
        # lws arms a 5 s TLS-accept timeout on raw TLS sockets; it must not cut
        # a connected client (a regression: every mTLS client was cut at 5 s).
        s = self.sim()
        conns = []
        for listener, alpn in (("mtls", None), ("alpn", ["x-amzn-mqtt-ca"])):
            raw = self.raw(s, listener, alpn=alpn)
            raw.send(connect_packet("long-" + listener, keepalive=60))
            first, body = raw.read_packet(5)
            self.assertEqual((first, body), (0x20, b"\x00\x00"), listener)
            conns.append((listener, raw))
        time.sleep(6.5)
        for listener, raw in conns:
            raw.send(b"\xc0\x00")
            self.assertEqual(raw.outcome(3)[:2], ("packet", 0xD0), "%s: no PINGRESP after 6.5 s\n%s"
                             % (listener, s.tail()))
        self.assertFalse(s.find(kind="decision", what="lost"), s.tail())

    def test_f_alpn_port_refuses_other_or_no_alpn(self):
        s = self.sim()
        for i, alpn in enumerate(("mqtt", None, "http/1.1")):
            cid = "badalpn-%d" % i
            r = run(["mosquitto_pub", *s.mosq_tls("alpn", alpn=alpn), "-i", cid, "-t", "x", "-m", "x", "-d"],
                    timeout=10)
            self.assertNotEqual(r.returncode, 0, "ALPN %r accepted: %s" % (alpn, r.stdout))
            self.assertNotIn("CONNACK", r.stdout)
            self.assertNoEvent(s, kind="in", type="CONNECT", client_id=cid)
        refused = s.find(kind="decision", what="alpn_refused", listener="alpn")
        self.assertEqual(len(refused), 3, s.tail())
        # Python's ssl as a second client: the handshake may pass, MQTT may not.
        raw = self.raw(s, "alpn", alpn=["mqtt"])
        raw.send(connect_packet("badalpn-raw"))
        out = raw.outcome(3)
        self.assertIn(out[0], ("eof", "error"), out)
        self.assertNoEvent(s, kind="in", type="CONNECT", client_id="badalpn-raw")


# ---- 2. the three lws traps ----------------------------------------------------------

EXT = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"


def openssl_ok(test, args):
    r = run(["openssl", *args], timeout=20)
    test.assertEqual(r.returncode, 0, "openssl %s: %s" % (" ".join(args), r.stdout))


def make_device_cert(test, d, name, ca_crt, ca_key):
    """An EC P-256 client certificate for CN=name signed by (ca_crt, ca_key)."""
    key, csr, crt, ext = (os.path.join(d, name + x) for x in (".key", ".csr", ".crt", ".ext"))
    with open(ext, "w") as f:
        f.write(EXT)
    openssl_ok(test, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", "/CN=" + name])
    openssl_ok(test, ["x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                      "-set_serial", str(secrets.randbits(63)), "-days", "2", "-out", crt, "-extfile", ext])
    return crt, key


class T02Traps(Base):

    def _assert_refused(self, s, device, cid_prefix):
        for listener, alpn in (("mtls", None), ("alpn", "x-amzn-mqtt-ca")):
            cid = "%s-%s" % (cid_prefix, listener)
            r = run(["mosquitto_pub", *s.mosq_tls(listener, device=device, alpn=alpn), "-i", cid,
                     "-t", "x", "-m", "x", "-d"], timeout=10)
            self.assertNotEqual(r.returncode, 0, "%s accepted: %s%s" % (listener, r.stdout, s.tail()))
            self.assertNotIn("CONNACK", r.stdout)
            raw = self.raw(s, listener, device=device, alpn=[alpn] if alpn else None)
            try:
                raw.send(connect_packet(cid + "-raw"))
                out = raw.outcome(3)
            except OSError as e:  # the handshake itself failed
                out = ("error", str(e))
            self.assertIn(out[0], ("eof", "error"), "%s: %r%s" % (listener, out, s.tail()))
            for c in (cid, cid + "-raw"):
                self.assertNoEvent(s, kind="in", type="CONNECT", client_id=c)
        self.assertNoEvent(s, kind="decision", what="open", principal=cert_id_of(device[0]))

    def rogue_device(self):
        d = self.tmpdir()
        rca_key, rca_crt = os.path.join(d, "rogue-ca.key"), os.path.join(d, "rogue-ca.crt")
        # Same subject as iotsim's CA, different key: only the signature tells them apart.
        openssl_ok(self, ["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                          "-nodes", "-keyout", rca_key, "-out", rca_crt, "-subj", "/CN=iotsim test CA", "-days", "2"])
        return make_device_cert(self, d, "rogue-device", rca_crt, rca_key)

    def test_a_certificate_from_another_ca(self):
        s = self.sim()
        dev = self.rogue_device()
        self._assert_refused(s, dev, "rogue")
        # The registered device still gets in on both ports after all that.
        for listener, alpn in (("mtls", None), ("alpn", "x-amzn-mqtt-ca")):
            r = run(["mosquitto_pub", *s.mosq_tls(listener, alpn=alpn), "-i", "good-" + listener,
                     "-t", "x", "-m", "x", "-d"], timeout=10)
            self.assertIn("received CONNACK (0)", r.stdout, s.tail())

    def test_b_right_ca_but_not_registered(self):
        s = self.sim()
        d = self.tmpdir()
        dev = make_device_cert(self, d, "unregistered", os.path.join(s.state, "ca.crt"),
                               os.path.join(s.state, "ca.key"))
        self._assert_refused(s, dev, "unreg")
        for listener in ("mtls", "alpn"):
            self.assertEvent(s, kind="decision", what="certificate_refused", listener=listener)

    def test_g_tls_refusals_are_in_the_event_log(self):
        # The event log holds "one object per broker decision"; refusing a
        # certificate at the TLS layer is one (sim_server.c has tls_refused
        # records for it).
        s = self.sim()
        dev = self.rogue_device()
        r = run(["mosquitto_pub", *s.mosq_tls(device=dev), "-i", "rogue-log", "-t", "x", "-m", "x"], timeout=10)
        self.assertNotEqual(r.returncode, 0)
        r = run(["mosquitto_pub", "-h", "localhost", "-p", str(s.port("mtls")), "--cafile", s.ep["ca_file"],
                 "-i", "nocert-log", "-t", "x", "-m", "x"], timeout=10)
        self.assertNotEqual(r.returncode, 0)
        got = wait_for(lambda: len(s.find(kind="decision", listener="mtls")) >= 2, 2)
        self.assertTrue(got, "a certificate from another CA and a missing client certificate were refused, "
                        "and the event log says nothing about either" + s.tail())

    def test_c_plain_text_to_tls_ports(self):
        s = self.sim("--insecure-tcp")
        for listener in ("mtls", "alpn"):
            raw = RawMqtt("127.0.0.1", s.port(listener), tls=None)
            self.addCleanup(raw.close)
            raw.send(connect_packet("plain-" + listener))
            out = raw.outcome(3)
            if out[0] == "packet":
                self.assertNotEqual(out[1], 0x20, "%s answered plain-text MQTT with a CONNACK%s"
                                    % (listener, s.tail()))
            self.assertNoEvent(s, kind="in", type="CONNECT", client_id="plain-" + listener)
        # Control: the same bytes on the --insecure-tcp port do get a CONNACK.
        raw = RawMqtt("127.0.0.1", s.port("tcp"), tls=None)
        self.addCleanup(raw.close)
        raw.send(connect_packet("plain-tcp"))
        self.assertEqual(raw.outcome(3), ("packet", 0x20, b"\x00\x00"))
        self.assertEqual(s.get("/health")[0], 200)

    def _assert_listening_on(self, s, ip):
        socks = s.listening_sockets()
        self.assertTrue(socks, "no listening socket found for pid %d" % s.proc.pid)
        self.assertEqual(sorted(p for _, _, p in socks), sorted(s.ep["ports"].values()), socks)
        for fam, addr, port in socks:
            self.assertEqual(fam, "tcp", "IPv6 listener %s:%d" % (addr, port))
            self.assertEqual(addr, ip, "listener on %s:%d" % (addr, port))
        # The same through iproute2 (when installed), as an operator would look.
        if shutil.which("ss"):
            r = run(["ss", "-Hltnp"], timeout=5)
            mine = [ln for ln in r.stdout.splitlines() if "pid=%d," % s.proc.pid in ln]
            if r.returncode == 0 and mine:  # no process column without the rights to see it
                self.assertEqual(len(mine), len(socks), r.stdout)
                for ln in mine:
                    self.assertTrue(ln.split()[3].startswith(ip + ":"), ln)

    def test_d_nothing_beyond_loopback(self):
        s = self.sim("--insecure-tcp")
        self._assert_listening_on(s, "127.0.0.1")

    def test_e_listen_on_127_0_0_2(self):
        s = self.sim("--insecure-tcp", "--listen", "127.0.0.2")
        self._assert_listening_on(s, "127.0.0.2")
        r = run(["mosquitto_pub", "-h", "127.0.0.2", "-p", str(s.port("tcp")), "-i", "p2", "-t", "x", "-m", "x",
                 "-d"], timeout=10)
        self.assertIn("received CONNACK (0)", r.stdout, s.tail())
        raw = self.raw(s, "mtls", host="127.0.0.2")
        raw.send(connect_packet("tls-127-0-0-2"))
        self.assertEqual(raw.outcome(3), ("packet", 0x20, b"\x00\x00"))

    def test_f_listen_address_in_endpoint_json(self):
        s = self.sim("--listen", "127.0.0.2")
        self.assertEqual(s.ep["host"], "127.0.0.2",
                         "endpoint.json names a host nothing listens on with --listen 127.0.0.2")


# ---- 3. devices ------------------------------------------------------------------------

class T03Devices(Base):

    def _connects(self, s, device, cid):
        r = run(["mosquitto_pub", *s.mosq_tls(device=device), "-i", cid, "-t", "dev/x", "-m", "x", "-d"],
                timeout=10)
        return "received CONNACK (0)" in r.stdout, r.stdout

    def test_a_post_devices(self):
        s = self.sim()
        st, body = s.post("/devices", {"name": "api-dev-1"})
        self.assertEqual(st, 201, body)
        self.assertEqual(body["thing_name"], "api-dev-1")
        self.assertTrue(os.path.isfile(body["cert_file"]) and os.path.isfile(body["key_file"]))
        self.assertEqual(body["certificate_id"], cert_id_of(body["cert_file"]))
        with open(os.path.join(s.state, "registry.json")) as f:
            self.assertIn("api-dev-1", [t["name"] for t in json.load(f)["things"]])
        ok, out = self._connects(s, (body["cert_file"], body["key_file"]), "api-dev-1")
        self.assertTrue(ok, out + s.tail())
        self.assertEvent(s, kind="decision", what="open", principal=body["certificate_id"])
        self.assertEqual(s.post("/devices", {"name": "api-dev-1"})[0], 409)
        self.assertEqual(s.post("/devices", {"name": "bad name!"})[0], 400)
        self.assertEqual(s.post("/devices", {})[0], 400)

    def test_b_cli_device_add_then_restart(self):
        s = self.sim()
        self.assertEqual(s.stop(), 0)
        r = run([s.binary, "device", "add", "cli-dev-1", "--state-dir", s.state], timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout)
        crt, key = s.device("cli-dev-1")
        self.assertEqual([os.path.realpath(x) for x in r.stdout.split()],
                         [os.path.realpath(crt), os.path.realpath(key)])
        r = run([s.binary, "device", "add", "cli-dev-1", "--state-dir", s.state], timeout=10)
        self.assertNotEqual(r.returncode, 0, "adding the same thing twice succeeded: " + r.stdout)
        s.start()
        ok, out = self._connects(s, (crt, key), "cli-dev-1")
        self.assertTrue(ok, out + s.tail())
        self.assertEvent(s, kind="decision", what="open", principal=cert_id_of(crt))
        ok, out = self._connects(s, None, "default-dev")
        self.assertTrue(ok, "the first device no longer connects after a restart: " + out)

    def test_c_cli_add_on_a_running_server_loses_nothing(self):
        # `device add` is meant for a stopped server; run against a live one
        # it must either refuse or leave a device that survives the server's
        # next registry save (POST /devices).
        s = self.sim()
        r = run([s.binary, "device", "add", "cli-live", "--state-dir", s.state], timeout=10)
        if r.returncode != 0:
            return  # refused while the server runs: fine
        cli_id = cert_id_of(s.device("cli-live")[0])
        st, body = s.post("/devices", {"name": "api-live"})
        self.assertEqual(st, 201, body)
        with open(os.path.join(s.state, "registry.json")) as f:
            things = {t["name"]: t["certificate_id"] for t in json.load(f)["things"]}
        self.assertEqual(things.get("cli-live"), cli_id,
                         "`iotsim device add cli-live` exited 0 while the server ran, and the server's next "
                         "save dropped it: registry.json now has %s" % sorted(things))


# ---- 4. paho-mqtt, 3.1.1 and 5 ----------------------------------------------------------

class T04Paho(Base):

    def test_a_v311_qos2_subscribe_gets_no_suback(self):
        s = self.sim()
        c = self.paho(s, "p311-q2")
        self.assertEqual(c.connect()[1], 0)
        t0 = time.monotonic()
        self.assertIsNone(c.subscribe("q2/t", qos=2, timeout=2.0), "a SUBACK came for QoS 2" + s.tail())
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)
        self.assertEvent(s, kind="decision", what="qos2_subscribe_ignored", client="p311-q2")
        self.assertNoEvent(s, kind="out", type="SUBACK", client="p311-q2")
        # The connection is still usable.
        self.assertEqual(c.subscribe("q1/t", qos=1), (1,))
        self.assertTrue(c.c.is_connected())

    def test_b_v5_qos2_subscribe_granted_qos1(self):
        s = self.sim()
        c = self.paho(s, "p5-q2", v5=True)
        self.assertEqual(c.connect()[1], 0)
        granted = c.subscribe("q2/t5", qos=2)
        self.assertIsNotNone(granted, "no SUBACK" + s.tail())
        self.assertEqual([g.value for g in granted], [1])
        self.assertTrue(c.publish("q2/t5", b"q1 please", qos=1))
        m = c.get(3)
        self.assertIsNotNone(m, s.tail())
        self.assertEqual(m.qos, 1)

    def test_c_retain_disconnects_in_classic(self):
        s = self.sim()
        for v5 in (False, True):
            cid = "ret-classic-%d" % v5
            c = self.paho(s, cid, v5=v5)
            self.assertEqual(c.connect()[1], 0)
            c.c.publish("ret/classic", b"keep me", qos=1, retain=True)
            self.assertTrue(c.disconnected.wait(3), "still connected after a retained PUBLISH" + s.tail())
            self.assertNotEqual(c.disconnect_rc, 0)
            ev = self.assertEvent(s, kind="decision", what="close", client=cid)
            self.assertEqual(ev.get("reason"), "CLIENT_ERROR")
            self.assertIn("retain", ev.get("detail", ""))
            if v5:  # 0x9A Retain not supported
                self.assertEvent(s, kind="out", type="DISCONNECT", client=cid, reason=0x9A)
            self.assertNoEvent(s, kind="out", type="PUBACK", client=cid)

    def test_d_retain_current_profile_exact_match_only(self):
        s = self.sim("--profile", "current")
        self.assertEqual(s.ep["profile"], "current")
        pub = self.paho(s, "ret-pub", v5=True)
        flags, rc, props = pub.connect()
        self.assertEqual(rc, 0)
        self.assertEqual(props.RetainAvailable, 1)
        self.assertTrue(pub.publish("ret/a", b"R1", qos=1, retain=True), s.tail())
        exact = self.paho(s, "ret-exact")
        wild = self.paho(s, "ret-wild")
        self.assertEqual(exact.connect()[1], 0)
        self.assertEqual(wild.connect()[1], 0)
        self.assertEqual(wild.subscribe("ret/+", 1), (1,))
        self.assertEqual(wild.subscribe("ret/#", 1), (1,))
        self.assertEqual(exact.subscribe("ret/a", 1), (1,))
        m = exact.get(3)
        self.assertIsNotNone(m, "the exact-match subscriber got no retained message" + s.tail())
        self.assertEqual((m.topic, m.payload, m.retain), ("ret/a", b"R1", 1))
        self.assertEqual(wild.drain(1.0), [], "a wildcard subscriber got the retained message")
        # Live traffic reaches both, with RETAIN = 0.
        self.assertTrue(pub.publish("ret/a", b"L1", qos=1))
        m = exact.get(3)
        self.assertEqual((m.payload, m.retain), (b"L1", 0))
        # Two overlapping filters: MQTT allows one copy or one per filter.
        got = [(x.payload, x.retain) for x in wild.drain(1.0)]
        self.assertIn(len(got), (1, 2), got)
        self.assertEqual(set(got), {(b"L1", 0)})

    def test_e_hash_does_not_match_parent(self):
        s = self.sim()
        sub = self.paho(s, "hash-sub")
        pub = self.paho(s, "hash-pub")
        self.assertEqual(sub.connect()[1], 0)
        self.assertEqual(pub.connect()[1], 0)
        self.assertEqual(sub.subscribe("sport/#", 1), (1,))
        for t in ("sport", "sport/", "sport/tennis", "sport/tennis/player1", "sportx"):
            self.assertTrue(pub.publish(t, t.encode(), qos=1))
        got = sorted(m.topic for m in sub.drain(1.0))
        self.assertEqual(got, ["sport/", "sport/tennis", "sport/tennis/player1"], s.tail())

    def test_f_v5_connack_properties(self):
        s = self.sim()
        c = self.paho(s, "p5-props", v5=True, keepalive=10)
        flags, rc, props = c.connect()
        self.assertEqual(rc, 0)
        self.assertEqual(flags["session present"], 0)
        p = props.json()
        want = {"MaximumQoS": 1, "TopicAliasMaximum": 8, "RetainAvailable": 0, "WildcardSubscriptionAvailable": 1,
                "SubscriptionIdentifierAvailable": 0, "SharedSubscriptionAvailable": 0, "ReceiveMaximum": 100,
                "ServerKeepAlive": 30}
        for k, v in want.items():
            self.assertEqual(p.get(k), v, "%s in %r" % (k, p))
        # AWS: the advertised Maximum Packet Size cannot exceed 128 KB.
        self.assertIn("MaximumPacketSize", p)
        self.assertLessEqual(p["MaximumPacketSize"], 128 * 1024)
        self.assertGreaterEqual(p["MaximumPacketSize"], 128 * 1000)
        # Without a clamp there is no Server Keep Alive.
        c2 = self.paho(s, "p5-props-60", v5=True, keepalive=60)
        self.assertNotIn("ServerKeepAlive", c2.connect()[2].json())


# ---- 5. the AWS CRT --------------------------------------------------------------------------

_crt = {}


def crt_bootstrap():
    from awscrt import io
    if not _crt:
        elg = io.EventLoopGroup(1)
        _crt["bootstrap"] = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
    return _crt["bootstrap"]


class T05Awscrt(Base):

    def crt(self, s, listener, client_id, alpn=False, **kw):
        from awscrt import io, mqtt
        o = io.TlsContextOptions.create_client_with_mtls_from_path(s.ep["cert_file"], s.ep["key_file"])
        o.override_default_trust_store_from_path(None, s.ep["ca_file"])
        if alpn:
            o.alpn_list = ALPN_AWS
        client = mqtt.Client(crt_bootstrap(), io.ClientTlsContext(o))
        kw.setdefault("reconnect_min_timeout_secs", 60)  # no reconnect within a test
        kw.setdefault("reconnect_max_timeout_secs", 120)
        c = mqtt.Connection(client, "localhost", s.port(listener), client_id, clean_session=True,
                            keep_alive_secs=60, **kw)

        def close():
            try:
                c.disconnect().result(5)
            except Exception:
                pass
        self.addCleanup(close)
        return c

    def test_a_mtls_and_alpn_pubsub_qos1(self):
        from awscrt import mqtt
        s = self.sim()
        for listener, alpn in (("mtls", False), ("alpn", True)):
            cid = "crt-" + listener
            c = self.crt(s, listener, cid, alpn)
            self.assertEqual(c.connect().result(5), {"session_present": False})
            got, ev = [], threading.Event()

            def on_msg(topic, payload, **kw):
                got.append((topic, payload, kw.get("qos")))
                ev.set()
            fut, _ = c.subscribe("crt/" + listener, mqtt.QoS.AT_LEAST_ONCE, on_msg)
            self.assertEqual(fut.result(5)["qos"], mqtt.QoS.AT_LEAST_ONCE)
            fut, _ = c.publish("crt/" + listener, b"hi " + listener.encode(), mqtt.QoS.AT_LEAST_ONCE)
            fut.result(5)  # PUBACK
            self.assertTrue(ev.wait(5), s.tail())
            self.assertEqual(got, [("crt/" + listener, b"hi " + listener.encode(), mqtt.QoS.AT_LEAST_ONCE)])
            c.disconnect().result(5)
            conn = self.assertEvent(s, kind="in", type="CONNECT", client_id=cid)
            self.assertEvent(s, kind="decision", what="open", conn=conn["conn"], transport=listener)
            self.assertEvent(s, kind="out", type="PUBACK", client=cid)

    def test_b_takeover_interrupts_first_and_lifecycle_events(self):
        s = self.sim()  # classic profile
        cid = "crt-dup"
        watch = self.paho(s, "lifecycle-watch")
        self.assertEqual(watch.connect()[1], 0)
        self.assertEqual(watch.subscribe("$aws/events/presence/+/" + cid, 1), (1,))
        interrupted = threading.Event()
        errors = []

        def on_interrupted(connection, error, **kw):
            errors.append(error)
            interrupted.set()
        a = self.crt(s, "mtls", cid, on_connection_interrupted=on_interrupted)
        a.connect().result(5)
        time.sleep(1.1)  # AWS allows one CONNECT per client id per second
        b = self.crt(s, "alpn", cid, alpn=True)
        b.connect().result(5)
        self.assertTrue(interrupted.wait(5), "the first connection was not interrupted" + s.tail())
        a.disconnect().result(5)  # before it reconnects and takes the id back
        events = [json.loads(m.payload) for m in watch.drain(1.5)]
        kinds = [(e["eventType"], e.get("disconnectReason")) for e in events]
        self.assertEqual(kinds, [("connected", None), ("disconnected", "DUPLICATE_CLIENTID"), ("connected", None)],
                         "%r%s" % (events, s.tail()))
        c1, d1, c2 = events
        for e in events:
            self.assertEqual(e["clientId"], cid)
            self.assertEqual(e["principalIdentifier"], cert_id_of(s.ep["cert_file"]))
            self.assertIsInstance(e["timestamp"], int)
            self.assertIn("sessionIdentifier", e)
        self.assertIs(d1["clientInitiatedDisconnect"], False)
        self.assertEqual(d1["versionNumber"], c1["versionNumber"])
        self.assertGreater(c2["versionNumber"], c1["versionNumber"])
        self.assertEqual(c1.get("ipAddress"), "127.0.0.1")
        self.assertNotIn("ipAddress", d1)
        ev = self.assertEvent(s, kind="decision", what="close", reason="DUPLICATE_CLIENTID")
        # Classic: the old connection is sent a CONNACK too before it is closed.
        acks = s.find(kind="out", type="CONNACK", conn=ev["conn"])
        self.assertEqual(len(acks), 2, s.tail())
        # A clean disconnect is reported as such.
        b.disconnect().result(5)
        m = watch.get(3)
        self.assertIsNotNone(m, s.tail())
        e = json.loads(m.payload)
        self.assertEqual((e["eventType"], e["disconnectReason"], e["clientInitiatedDisconnect"]),
                         ("disconnected", "CLIENT_INITIATED_DISCONNECT", True))


# ---- 6. persistent sessions ----------------------------------------------------------------

class T06Sessions(Base):

    def test_a_offline_qos1_messages_all_arrive(self):
        s = self.sim()
        cid, topic = "ps-sub", "ps/t"
        r = run(["mosquitto_sub", *s.mosq_tls(), "-c", "-q", "1", "-i", cid, "-t", topic, "-E"], timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout + s.tail())
        t_first = time.monotonic()
        self.assertEvent(s, kind="decision", what="close", client=cid)
        sess = [x for x in s.get("/clients")[1]["sessions"] if x["client_id"] == cid]
        self.assertEqual(len(sess), 1, s.get("/clients"))
        self.assertFalse(sess[0]["online"])
        payloads = ["m%02d" % i for i in range(30)]
        r = run(["mosquitto_pub", *s.mosq_tls(), "-q", "1", "-i", "ps-pub", "-t", topic, "-l"], timeout=15,
                input="\n".join(payloads) + "\n")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(len(s.find(kind="out", type="PUBACK", client="ps-pub")), 30, s.tail())
        sess = [x for x in s.get("/clients")[1]["sessions"] if x["client_id"] == cid][0]
        self.assertEqual(sess["stored"], 30, sess)
        time.sleep(max(0.0, 1.1 - (time.monotonic() - t_first)))  # connect rate per client id
        sub = self.popen(["mosquitto_sub", *s.mosq_tls(), "-c", "-q", "1", "-i", cid, "-t", topic,
                          "-C", "30", "-W", "20"])
        out = self.finish(sub, 25)
        self.assertEqual(sorted(out.split()), payloads, out + s.tail())
        self.assertEqual(out.split(), payloads, "stored messages out of order")
        acks = s.find(kind="out", type="CONNACK", client=cid)
        self.assertEqual([a["session_present"] for a in acks], [False, True])

    def test_b_session_expires_after_clock_advance(self):
        s = self.sim("--time-scale", "1000")
        cid = "exp-sub"
        r = run(["mosquitto_sub", *s.mosq_tls(), "-c", "-q", "1", "-i", cid, "-t", "exp/t", "-E", "-k", "1200"],
                timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout + s.tail())
        # Control: the session is there (session present 1 from paho's side).
        c = self.paho(s, cid, clean=False, keepalive=1200)
        self.assertEqual(c.connect()[0]["session present"], 1, s.tail())
        c.close()
        self.assertEvent(s, kind="decision", what="close", client=cid, detail="client DISCONNECT")
        self.assertNoEvent(s, kind="decision", what="session_expired")
        st, body = s.post("/clock/advance", {"seconds": 4000})
        self.assertEqual(st, 200, body)
        self.assertEvent(s, 2.0, kind="decision", what="session_expired", detail=cid)
        self.assertGreaterEqual(s.get("/clock")[1]["now_ms"], 4000 * 1000)
        c = self.paho(s, cid, clean=False, keepalive=1200)
        self.assertEqual(c.connect()[0]["session present"], 0, s.tail())
        self.assertFalse(s.find(kind="out", type="CONNACK", client=cid)[-1]["session_present"])


# ---- 7. keep-alive ----------------------------------------------------------------------------

class T07KeepAlive(Base):

    def _silent(self, version, keepalive):
        s = self.sim("--time-scale", "100")
        cid = "ka-%d-%d" % (version, keepalive)
        raw = self.raw(s)
        raw.send(connect_packet(cid, keepalive=keepalive, version=version))
        first, body = raw.read_packet(3)
        self.assertEqual(first, 0x20)
        t0 = time.monotonic()
        pkts = []
        while True:
            out = raw.outcome(5)
            if out[0] != "packet":
                break
            pkts.append(out[1:])
        elapsed = time.monotonic() - t0
        self.assertIn(out[0], ("eof", "error"), "not closed within 5 s: %r%s" % (out, s.tail()))
        # 1.5 x 30 virtual seconds = 0.45 s at --time-scale 100.
        self.assertGreaterEqual(elapsed, 0.40, "closed too early")
        self.assertLess(elapsed, 1.5, "closed too late")
        close = self.assertEvent(s, kind="decision", what="close", client=cid)
        self.assertEqual(close.get("reason"), "MQTT_KEEP_ALIVE_TIMEOUT", s.tail())
        connect = s.find(kind="in", type="CONNECT", client_id=cid)[0]
        dt = close["t"] - connect["t"]
        self.assertGreaterEqual(dt, 45000)
        # 1.5x, not 2x: the slack is 75 ms of real time at this scale.
        self.assertLess(dt, 52500, "virtual time from CONNECT to close: %d ms" % dt)
        return pkts, body

    def test_a_silent_v311_client_closed_after_one_and_a_half_keepalives(self):
        pkts, _ = self._silent(4, 30)
        self.assertEqual(pkts, [], "a 3.1.1 client was sent something before the close")

    def test_b_v5_keepalive_10_is_clamped_to_30_and_gets_0x8d(self):
        pkts, connack = self._silent(5, 10)
        # CONNACK properties carry Server Keep Alive (0x13) = 30.
        self.assertIn(b"\x13\x00\x1e", connack)
        self.assertEqual(pkts, [(0xE0, b"\x8d")], "want DISCONNECT 0x8D Keep Alive timeout")

    def test_c_pings_keep_the_connection(self):
        s = self.sim("--time-scale", "100")
        raw = self.raw(s)
        raw.send(connect_packet("ka-ping", keepalive=30))
        self.assertEqual(raw.read_packet(3)[0], 0x20)
        for _ in range(6):  # 6 x 20 virtual s = 120 s, well past 45
            time.sleep(0.2)
            raw.send(PINGREQ)
            self.assertEqual(raw.read_packet(2), (0xD0, b""))
        self.assertNoEvent(s, kind="decision", what="close", client="ka-ping")


# ---- 8. faults through the control API ------------------------------------------------------

class T08Faults(Base):

    def test_a_drop_closes_and_publishes_the_will(self):
        s = self.sim()
        watcher = self.paho(s, "will-watch")
        self.assertEqual(watcher.connect()[1], 0)
        self.assertEqual(watcher.subscribe("will/victim", 1), (1,))
        victim = self.paho(s, "victim", will=("will/victim", b"victim is gone", 1, False))
        self.assertEqual(victim.connect()[1], 0)
        st, body = s.post("/faults/drop", {"client_id": "victim"})
        self.assertEqual((st, body), (200, {"status": "dropped"}))
        self.assertTrue(victim.disconnected.wait(3), "paho saw no disconnect" + s.tail())
        self.assertNotEqual(victim.disconnect_rc, 0)
        m = watcher.get(3)
        self.assertIsNotNone(m, "the Will did not arrive" + s.tail())
        self.assertEqual((m.topic, m.payload), ("will/victim", b"victim is gone"))
        ev = self.assertEvent(s, kind="decision", what="close", client="victim")
        self.assertEqual(ev.get("reason"), "SERVER_INITIATED_DISCONNECT")
        self.assertEvent(s, kind="decision", what="will_published", client="victim")
        self.assertEqual(s.post("/faults/drop", {"client_id": "nobody"})[0], 404)
        # MQTT 5: mosquitto reports the DISCONNECT reason (0x98 Administrative action by default).
        sub = self.mosq_sub(s, "victim5", "x", ["-d"], version="mqttv5")
        self.assertEqual(s.post("/faults/drop", {"client_id": "victim5"})[0], 200)
        out = self.finish(sub, 5)
        self.assertRegex(out, r"DISCONNECT \(152\)", out)

    def test_b_refuse_then_accept(self):
        s = self.sim()
        st, _ = s.post("/faults/refuse", {"seconds": 2})
        self.assertEqual(st, 200)
        t0 = time.monotonic()
        c = self.paho(s, "refused-311")
        ack = c.connect()
        self.assertIsNotNone(ack, s.tail())
        self.assertEqual(ack[1], 3, "want CONNACK 3 Server unavailable")
        c5 = self.paho(s, "refused-5", v5=True)
        ack = c5.connect()
        self.assertIsNotNone(ack, s.tail())
        self.assertEqual(ack[1].value, 0x88)
        self.assertEvent(s, kind="decision", what="connect_refused", detail="fault: refusing connects")
        c.close()
        c5.close()
        time.sleep(max(0.0, 2.2 - (time.monotonic() - t0)))
        c = self.paho(s, "refused-311")
        ack = c.connect()
        self.assertIsNotNone(ack, s.tail())
        self.assertEqual(ack[1], 0, "still refused after the window" + s.tail())

    def test_c_duplicate_qos0(self):
        s = self.sim()
        sub = self.paho(s, "dup-sub")
        pub = self.paho(s, "dup-pub")
        self.assertEqual(sub.connect()[1], 0)
        self.assertEqual(pub.connect()[1], 0)
        self.assertEqual(sub.subscribe("dup/t", 0), (0,))
        self.assertEqual(s.post("/faults/duplicate-qos0", {"count": 1}), (200, {"status": "armed"}))
        self.assertTrue(pub.publish("dup/t", b"once", qos=0))
        self.assertTrue(pub.publish("dup/t", b"twice?", qos=0))
        got = [m.payload for m in sub.drain(1.0)]
        self.assertEqual(got, [b"once", b"once", b"twice?"], s.tail())
        self.assertEqual(len(s.find(kind="decision", what="qos0_duplicate")), 1)


# ---- 9. bad input and shutdown -------------------------------------------------------------------

class T09BadInput(Base):

    def _closed_without_connack(self, s, raw):
        out = raw.outcome(3)
        while out[0] == "packet":
            self.assertNotEqual(out[1], 0x20, "a CONNACK after bad input: %r" % (out,))
            out = raw.outcome(3)
        self.assertIn(out[0], ("eof", "error"), "connection not closed: %r%s" % (out, s.tail()))

    def _still_up(self, s):
        self.assertTrue(s.alive(), s.stderr_text())
        self.assertEqual(s.get("/health"), (200, {"status": "ok"}))
        r = run(["mosquitto_pub", *s.mosq_tls(), "-i", "after", "-t", "x", "-m", "x", "-d"], timeout=10)
        self.assertIn("received CONNACK (0)", r.stdout)

    def test_a_garbage_after_tls(self):
        s = self.sim()
        n = len(s.find(kind="decision", what="close"))
        raw = self.raw(s)
        raw.send(b"\x00\x05garbage" + bytes(range(256)))
        self._closed_without_connack(s, raw)
        self.assertTrue(wait_for(lambda: len(s.find(kind="decision", what="close")) > n, 2), s.tail())
        ev = s.find(kind="decision", what="close")[-1]
        self.assertTrue(ev.get("detail"), ev)
        self._still_up(s)

    def test_b_bad_protocol_name(self):
        s = self.sim()
        raw = self.raw(s)
        raw.send(connect_packet("badproto", proto=b"MQTX"))
        out = raw.outcome(3)
        if out[0] == "packet":  # 3.1.1 allows CONNACK 1 first; never 0
            self.assertEqual(out[1:], (0x20, b"\x00\x01"))
            out = raw.outcome(3)
        self.assertIn(out[0], ("eof", "error"), out)
        ev = self.assertEvent(s, kind="decision", what="close", detail=lambda d: "protocol name" in d)
        self.assertNoEvent(s, kind="in", type="CONNECT", client_id="badproto")
        self.assertIn("MQTT", ev["detail"])
        self._still_up(s)

    def test_c_oversized_publish(self):
        s = self.sim()
        sub = self.paho(s, "big-sub", v5=True)
        ack = sub.connect()
        self.assertEqual(ack[1], 0)
        limit = ack[2].json()["MaximumPacketSize"]  # what the broker advertises to MQTT 5 clients
        self.assertLessEqual(limit, 128 * 1024)
        self.assertEqual([g.value for g in sub.subscribe("big/#", 1)], [1])

        def v5_payload(topic, total):  # an MQTT 5 QoS 1 PUBLISH of `total` bytes in all, no properties
            return total - 1 - 3 - 2 - len(topic) - 2 - 1

        def accepted(cid, v5, size):
            c = self.paho(s, cid, v5=v5)
            self.assertEqual(c.connect()[1], 0)
            self.assertTrue(c.publish("big/" + cid, b"a" * size, qos=1, timeout=5),
                            "%s: no PUBACK for %d bytes%s" % (cid, size, s.tail()))
            m = sub.get(5)
            self.assertIsNotNone(m, s.tail())
            self.assertEqual((m.topic, len(m.payload)), ("big/" + cid, size))

        def refused(cid, v5, size, detail):
            c = self.paho(s, cid, v5=v5)
            self.assertEqual(c.connect()[1], 0)
            info = c.c.publish("big/" + cid, b"b" * size, qos=1)
            self.assertTrue(wait_for(c.gone, 5), "%s: still connected%s" % (cid, s.tail()))
            self.assertNotIn(info.mid, c.published, "%s: PUBACK for an oversized PUBLISH" % cid)
            ev = self.assertEvent(s, kind="decision", what="close", client=cid)
            self.assertEqual(ev.get("reason"), "CLIENT_ERROR", ev)
            self.assertIn(detail, ev.get("detail", ""), ev)
            if v5:  # 0x95 Packet too large
                self.assertEvent(s, kind="out", type="DISCONNECT", client=cid, reason=0x95)
        # 3.1.1: the limit is on the payload, 128 KiB.
        accepted("big311-ok", False, 128 * 1024)
        refused("big311-over", False, 128 * 1024 + 1, "payload over the limit")
        refused("big311-200k", False, 200 * 1024, "too large")
        # MQTT 5: the limit is the advertised Maximum Packet Size.
        accepted("big5-ok", True, v5_payload("big/big5-ok", limit))
        refused("big5-over", True, v5_payload("big/big5-over", limit + 1), "too large")
        refused("big5-200k", True, 200 * 1024, "too large")
        self.assertEqual(sub.drain(0.5), [], "an oversized message was delivered")
        self._still_up(s)

    def test_d_sigterm(self):
        s = self.sim()
        ep_file = os.path.join(s.state, "endpoint.json")
        self.assertTrue(os.path.exists(ep_file))
        p5 = self.paho(s, "term-paho5", v5=True)
        self.assertEqual(p5.connect()[1], 0)
        p3 = self.paho(s, "term-paho311")
        self.assertEqual(p3.connect()[1], 0)
        mosq = self.mosq_sub(s, "term-mosq5", "x", ["-d"], version="mqttv5")
        raw = self.raw(s)
        raw.send(connect_packet("term-raw5", version=5))
        self.assertEqual(raw.read_packet(3)[0], 0x20)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        try:
            rc = s.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            rc = None
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit status %r after %.2f s: %s" % (rc, elapsed, s.stderr_text()))
        self.assertLess(elapsed, 2.0)
        self.assertFalse(os.path.exists(ep_file), "endpoint.json left behind")
        # The wire: DISCONNECT 0x8B Server shutting down, to every MQTT 5 client.
        self.assertEqual(raw.outcome(2), ("packet", 0xE0, b"\x8b"))
        out = self.finish(mosq, 5)
        self.assertRegex(out, r"DISCONNECT \(139\)", out)
        self.assertTrue(p5.disconnected.wait(3))
        self.assertTrue(p3.disconnected.wait(3))
        # paho 1.6.1 reads a DISCONNECT's reason code only when the remaining
        # length is > 2 (client.py _handle_disconnect), so for the 3-byte
        # packet above it reports rc 7 (connection lost); its log shows that the
        # DISCONNECT itself arrived.
        self.assertTrue(any(x.startswith("Received DISCONNECT") for x in p5.log), p5.log)
        if p5.disconnect_rc != 139:
            print("\n  note: paho 1.6.1 on_disconnect rc=%r for DISCONNECT 0x8B (remaining length 1)"
                  % (p5.disconnect_rc,), file=sys.stderr)
        for cid in ("term-paho5", "term-mosq5", "term-raw5"):
            self.assertEvent(s, kind="out", type="DISCONNECT", client=cid, reason=0x8B)
        self.assertNoEvent(s, kind="out", type="DISCONNECT", client="term-paho311")
        ev = self.assertEvent(s, kind="decision", what="close", client="term-paho311")
        self.assertEqual(ev.get("detail"), "shutdown")


# ---- runner ---------------------------------------------------------------------------------------

# ---- 10. the configuration file ----------------------------------------------------------

class T10Config(Base):

    def write(self, text):
        d = self.tmpdir()
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_a_bad_configs_are_refused_with_file_key_and_reason(self):
        cases = [
            ('{"limits": {"bogus": 1}}', "limits.bogus: unknown key"),
            ('{"deviations": {"retain": "maybe"}}', 'deviations.retain: must be "disconnect" or "store"'),
            ('{"limits": {"max_payload": -5}}', "limits.max_payload: must be between"),
            ('{"policies": {"p": {"Statement": []}}}', 'policies.p: Version: must be "2012-10-17"'),
            ('{"policies": {"p": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", '
             '"Resource": "arn:aws:iot:r:a:topic/${iot:ClientID2}"}}}}',
             "policies.p: Statement[0].Resource[0]: unknown policy variable ${iot:ClientID2}"),
            ('{"policies": [{"name": "q", "document": {"Version": "2012-10-17", "Statement": '
             '[{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}]}',
             "policies[0] (q): Statement[0].Effect: must be \"Allow\" or \"Deny\""),
            ('{"policies": {"allow-all": {"Version": "2012-10-17", "Statement": '
             '{"Effect": "Deny", "Action": "*", "Resource": "*"}}}}', "exists already (it is built in)"),
            ('{"things": [{"name": "x", "policies": ["missing"]}]}', "things[0].policies[0]: no policy named missing"),
            ('{"things": [{"name": "a b"}]}', "things[0].name"),
            ('{"things": [{"name": "x", "colour": 1}]}', "things[0].colour: unknown key"),
            ('{"things": [{"name": "x", "certificate_pem": "nope"}]}', "things[x].certificate_pem"),
            ('{"limits": ', "not a JSON object"),
        ]
        for text, want in cases:
            path = self.write(text)
            r = run([iotsim_binary(), "--state-dir", os.path.join(self.tmpdir(), "st"), "--ports", "auto",
                     "--config", path], timeout=15)
            self.assertEqual(r.returncode, 2, "%s: exit %d: %s" % (text, r.returncode, r.stdout))
            self.assertIn(path, r.stdout, text)
            self.assertIn(want, r.stdout, text)

    def test_b_things_and_an_inactive_certificate(self):
        # An INACTIVE certificate gets through TLS, its 3.1.1 CONNECT is closed
        # with no CONNACK (aws-broker.md 6.6), and
        # $aws/events/presence/connect_failed/<id> says why.
        path = self.write('{"profile": "current", "things": [{"name": "devA"}, '
                          '{"name": "devB", "status": "INACTIVE"}]}')
        s = self.sim("--config", path)
        self.assertEqual(s.ep["profile"], "current")
        watcher = self.mosq_sub(s, "watcher", "$aws/events/presence/connect_failed/#",
                                extra=["-v", "-C", "1", "-W", "10"])
        r = run(["mosquitto_pub", *s.mosq_tls(device="devA"), "-i", "a-ok", "-t", "t", "-m", "x", "-q", "1"],
                timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout)
        r = run(["mosquitto_pub", *s.mosq_tls(device="devB"), "-i", "b-no", "-t", "t", "-m", "x", "-d"],
                timeout=10)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("sending CONNECT", r.stdout)
        self.assertNotIn("received CONNACK", r.stdout)
        out = self.finish(watcher, 10)
        self.assertIn("$aws/events/presence/connect_failed/b-no", out, s.tail())
        self.assertIn('"connectFailureReason":"AUTHORIZATION_FAILED"', out)
        self.assertNotIn("a-ok", out)

    # ---- IoT policies (aws-broker.md 6): a restrictive policy attached to devR's certificate --------
    POLICY = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:123456789012:client/devR-*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/devR/*",
                      "arn:aws:iot:us-east-1:123456789012:topic/own/${iot:ClientId}"]},
        {"Sid": "secret", "Effect": "Deny", "Action": "iot:Receive",
         "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devR/secret/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/devR/*"}]}

    def policy_sim(self):
        path = self.write(json.dumps({"policies": {"restricted": self.POLICY},
                                      "things": [{"name": "devR", "policies": ["restricted"]}]}))
        return self.sim("--config", path)

    def test_c_policy_connect_denied(self):
        s = self.policy_sim()
        # 3.1.1: closed with no CONNACK; 5: CONNACK 0x87 (135).
        r = run(["mosquitto_pub", *s.mosq_tls(device="devR"), "-i", "intruder", "-t", "devR/x", "-m", "x", "-d"],
                timeout=10)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("sending CONNECT", r.stdout)
        self.assertNotIn("received CONNACK", r.stdout)
        r = run(["mosquitto_pub", *s.mosq_tls(device="devR"), "-i", "intruder5", "-t", "devR/x", "-m", "x", "-d",
                 "-V", "mqttv5"], timeout=10)
        self.assertIn("received CONNACK (135)", r.stdout)
        ev = self.assertEvent(s, kind="decision", what="not_authorized", action="iot:Connect", client="intruder5")
        self.assertEqual(ev["resource"], "arn:aws:iot:us-east-1:123456789012:client/intruder5")
        self.assertEqual(ev["effect"], "default deny")
        # The default device keeps its allow-all policy; GET /policies lists both.
        r = run(["mosquitto_pub", *s.mosq_tls(), "-i", "anyone", "-t", "any/where", "-m", "x", "-q", "1"], timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout)
        status, body = s.get("/policies")
        self.assertEqual(status, 200, body)
        self.assertEqual(sorted(p["name"] for p in body["policies"]), ["allow-all", "restricted"])
        devr = cert_id_of(s.device("devR")[0])
        self.assertIn({"principal": devr, "policies": ["restricted"]}, body["attachments"])

    def test_d_policy_publish_and_subscribe_denied(self):
        s = self.policy_sim()
        dev = s.mosq_tls(device="devR")
        # PUBLISH denied: 3.1.1 closes the connection (no PUBACK); 5: PUBACK 0x87, the client stays.
        r = run(["mosquitto_pub", *dev, "-i", "devR-p3", "-t", "nope", "-m", "x", "-q", "1", "-d"], timeout=10)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("received PUBACK", r.stdout)
        self.assertEvent(s, kind="decision", what="close", reason="AUTH_ERROR", client="devR-p3")
        r = run(["mosquitto_pub", *dev, "-i", "devR-p5", "-t", "nope", "-m", "x", "-q", "1", "-d", "-V", "mqttv5"],
                timeout=10)
        self.assertIn("received PUBACK (Mid: 1, RC:135)", r.stdout)
        self.assertIn("sending DISCONNECT", r.stdout)
        # ${iot:ClientId}: own/<client id> only.
        r = run(["mosquitto_pub", *dev, "-i", "devR-own", "-t", "own/devR-own", "-m", "x", "-q", "1"], timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout)
        # SUBSCRIBE denied: 3.1.1 closed with no SUBACK; 5: SUBACK 0x87.
        r = run(["mosquitto_sub", *dev, "-i", "devR-s3", "-t", "nope/#", "-C", "1", "-W", "5", "-d"], timeout=10)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("sending SUBSCRIBE", r.stdout)
        self.assertNotIn("received SUBACK", r.stdout)
        r = run(["mosquitto_sub", *dev, "-i", "devR-s5", "-t", "nope/#", "-C", "1", "-W", "5", "-d",
                 "-V", "mqttv5"], timeout=10)
        self.assertIn("Subscribed (mid: 1): 135", r.stdout)

    def test_e_policy_receive_denied(self):
        s = self.policy_sim()
        # devR/# is allowed as a filter, but devR/secret/... may not be received: not delivered.
        sub = self.mosq_sub(s, "devR-sub", "devR/#", extra=["-v", "-C", "1", "-W", "10"], device="devR")
        for topic in ("devR/secret/x", "devR/open"):
            r = run(["mosquitto_pub", *s.mosq_tls(), "-i", "pub-" + topic.replace("/", "-"), "-t", topic,
                     "-m", topic, "-q", "1"], timeout=10)
            self.assertEqual(r.returncode, 0, r.stdout)
        out = self.finish(sub, 10)
        self.assertIn("devR/open devR/open", out, s.tail())
        self.assertNotIn("secret", out)
        ev = self.assertEvent(s, kind="decision", what="not_authorized", action="iot:Receive", client="devR-sub")
        self.assertEqual(ev["effect"], "Deny")
        self.assertEqual(ev["policy"], "restricted")
        self.assertEqual(ev.get("sid"), "secret")

    def test_f_policies_changed_at_run_time(self):
        # The control API creates, replaces, attaches, detaches and deletes
        # policies as AWS's CreatePolicy (and a new default version),
        # AttachPolicy, DetachPolicy and DeletePolicy do; a change applies to a
        # connection already open from its next operation.
        s = self.policy_sim()
        later = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iot:Publish",
                                                        "Resource": "arn:aws:iot:us-east-1:123456789012:topic/later/*"}}
        # An MQTT 5 publisher stays connected through denials (PUBACK 0x87):
        # one connection, a QoS 1 PUBLISH a second.
        pub = self.popen(["mosquitto_pub", *s.mosq_tls(device="devR"), "-i", "devR-live", "-V", "mqttv5", "-q", "1",
                          "-t", "later/x", "-m", "x", "--repeat", "40", "--repeat-delay", "0.25", "-d"])
        self.assertEvent(s, 10, kind="out", type="PUBACK", client="devR-live", reason=135)
        st, body = s.post("/policies", {"name": "later", "document": later})
        self.assertEqual((st, body), (201, {"status": "created"}))
        st, body = s.post("/policies", {"name": "later", "document": later})
        self.assertEqual(st, 409, body)
        self.assertIn("exists already", body["error"])
        st, body = s.post("/policies", {"name": "bad", "document": {"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:a:topic/${iot:Nope}"}}})
        self.assertEqual(st, 400, body)
        self.assertIn("document: Statement[0].Resource[0]: unknown policy variable ${iot:Nope}", body["error"])
        # Not attached yet: still denied.
        self.assertEqual(s.post("/policies/attach", {"policy": "later", "thing": "ghost"})[0], 404)
        self.assertEqual(s.post("/policies/attach", {"policy": "later"})[0], 400)
        self.assertEqual(s.post("/policies/attach", {"policy": "nope", "thing": "devR"})[0], 404)
        st, body = s.post("/policies/attach", {"policy": "later", "thing": "devR"})
        self.assertEqual((st, body), (200, {"status": "attached"}))
        self.assertEvent(s, kind="decision", what="policy_attach")
        # The open connection's next PUBLISH is allowed: PUBACK 0 (no reason code).
        ev = self.assertEvent(s, 10, kind="decision", what="authorized", action="iot:Publish", client="devR-live")
        self.assertEqual(ev["policy"], "later")
        # A new document for "later" that does not cover later/x: denied again.
        changed = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iot:Publish",
                                                          "Resource": "arn:aws:iot:us-east-1:123456789012:topic/elsewhere"}}
        st, body = s.post("/policies", {"name": "later", "document": changed, "replace": True})
        self.assertEqual((st, body), (200, {"status": "replaced"}))
        n = len(s.events())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(e.get("what") == "not_authorized" and e.get("client") == "devR-live" for e in s.events()[n:]):
                break
            time.sleep(0.1)
        else:
            self.fail("no denial after the policy was replaced" + s.tail())
        self.assertEqual(s.post("/policies", {"name": "allow-all", "document": changed, "replace": True})[0], 400)
        # Delete is refused while attached; detach, then delete.
        st, body = s.post("/policies/delete", {"name": "later"})
        self.assertEqual(st, 409, body)
        self.assertIn("attached to 1 certificate", body["error"])
        devr = cert_id_of(s.device("devR")[0])
        st, body = s.post("/policies/detach", {"policy": "later", "principal": devr})
        self.assertEqual((st, body), (200, {"status": "detached"}))
        self.assertEqual(s.post("/policies/detach", {"policy": "later", "principal": devr})[0], 404)
        self.assertEqual(s.post("/policies/delete", {"name": "later"}), (200, {"status": "deleted"}))
        st, body = s.get("/policies")
        self.assertEqual(sorted(p["name"] for p in body["policies"]), ["allow-all", "restricted"])
        self.assertIn({"principal": devr, "policies": ["restricted"]}, body["attachments"])
        # The publisher saw both answers on its one connection.
        out = self.finish(pub, 30)
        self.assertEqual(out.count("sending CONNECT"), 1, out)
        self.assertIn("RC:135", out)
        self.assertRegex(out, r"received PUBACK \(Mid: \d+, RC:0\)")

    def test_g_things_listed(self):
        # GET /things: every registered thing with its certificate and the
        # policies in force, following POST /devices and the policy API.
        s = self.policy_sim()
        st, body = s.get("/things")
        self.assertEqual(st, 200, body)
        things = {t["name"]: t for t in body["things"]}
        self.assertEqual(sorted(things), sorted([s.ep["thing_name"], "devR"]))
        devr = things["devR"]
        self.assertEqual(devr["certificate_id"], cert_id_of(s.device("devR")[0]))
        self.assertEqual(devr["status"], "ACTIVE")
        self.assertEqual(devr["policies"], ["restricted"])
        self.assertEqual((devr["cert_file"], devr["key_file"]), s.device("devR"))
        self.assertEqual(things[s.ep["thing_name"]]["policies"], ["allow-all"])
        st, body = s.post("/devices", {"name": "devN"})
        self.assertEqual(st, 201, body)
        self.assertEqual(s.post("/policies/attach", {"policy": "restricted", "thing": "devN"})[0], 200)
        things = {t["name"]: t for t in s.get("/things")[1]["things"]}
        self.assertEqual(things["devN"]["policies"], ["allow-all", "restricted"])
        self.assertEqual(things["devN"]["certificate_id"], body["certificate_id"])


# ---- 11. the Device Shadow service ------------------------------------------------------

class T11Shadow(Base):
    """The shadow service as paho (3.1.1 and 5) and the AWS CRT see it: the
    responses of aws-services.md §1, broadcast to every subscriber, persisted
    in the state directory, listed by the control API."""

    def shadow_client(self, s, cid, thing, v5=False, name=None):
        c = self.paho(s, cid, v5=v5)
        self.assertEqual(c.connect()[1], 0)
        prefix = "$aws/things/%s/shadow" % thing + ("/name/%s" % name if name else "")
        # "+/+" is get|update|delete x accepted|rejected|delta|documents, not the requests.
        granted = c.subscribe(prefix + "/+/+", qos=1)
        self.assertIsNotNone(granted, "no SUBACK" + s.tail())
        return c, prefix

    def request(self, s, c, prefix, op, doc, want):
        """Publishes `doc` to prefix/op; returns {suffix: parsed payload} of
        the responses that came, after checking their suffixes are `want`."""
        payload = b"" if doc is None else (doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        self.assertTrue(c.publish(prefix + "/" + op, payload, qos=1), "no PUBACK" + s.tail())
        got = {}
        for _ in want:
            m = c.get(3)
            self.assertIsNotNone(m, "missing responses: got %s, want %s%s" % (sorted(got), want, s.tail()))
            suffix = m.topic[len(prefix) + 1:]
            self.assertNotIn(suffix, got, "a response came twice")
            got[suffix] = json.loads(m.payload)
        self.assertEqual(sorted(got), sorted(want), s.tail())
        self.assertEqual(c.drain(0.3), [], "responses beyond %s" % want)
        return got

    def test_a_the_documented_sequence_v311(self):
        s = self.sim()
        c, px = self.shadow_client(s, "sh-a", "shT")
        r = self.request(s, c, px, "update", {"state": {"reported": {"c": "green"}}, "clientToken": "t1"},
                         ["update/accepted", "update/documents"])
        acc = r["update/accepted"]
        self.assertEqual((acc["state"], acc["version"], acc["clientToken"]), ({"reported": {"c": "green"}}, 1, "t1"))
        self.assertIsInstance(acc["metadata"]["reported"]["c"]["timestamp"], int)
        self.assertLessEqual(abs(acc["timestamp"] - time.time()), 5)
        docs = r["update/documents"]
        self.assertIsNone(docs["previous"])
        self.assertEqual((docs["current"]["state"], docs["current"]["version"]), ({"reported": {"c": "green"}}, 1))
        r = self.request(s, c, px, "update", {"state": {"desired": {"c": "red"}}, "clientToken": "t2"},
                         ["update/accepted", "update/delta", "update/documents"])
        d = r["update/delta"]
        self.assertEqual((d["state"], d["version"], d["clientToken"]), ({"c": "red"}, 2, "t2"))
        self.assertEqual(d["metadata"]["c"]["timestamp"], r["update/accepted"]["metadata"]["desired"]["c"]["timestamp"])
        self.assertEqual(r["update/documents"]["previous"]["version"], 1)
        r = self.request(s, c, px, "update", {"state": {"reported": {"c": "red"}}, "clientToken": "t3"},
                         ["update/accepted", "update/documents"])
        self.assertEqual(r["update/accepted"]["version"], 3)
        g = self.request(s, c, px, "get", {"clientToken": "t4"}, ["get/accepted"])["get/accepted"]
        self.assertEqual(g["state"], {"desired": {"c": "red"}, "reported": {"c": "red"}})
        self.assertEqual((g["version"], g["clientToken"]), (3, "t4"))
        self.assertEqual(sorted(g["metadata"]), ["desired", "reported"])
        rj = self.request(s, c, px, "update", {"state": {"desired": {"c": "blue"}}, "version": 2, "clientToken": "t5"},
                          ["update/rejected"])["update/rejected"]
        self.assertEqual((rj["code"], rj["message"], rj["clientToken"]), (409, "Version conflict", "t5"))
        dl = self.request(s, c, px, "delete", None, ["delete/accepted"])["delete/accepted"]
        self.assertEqual(dl["version"], 3)
        self.assertNotIn("clientToken", dl)
        nf = self.request(s, c, px, "get", None, ["get/rejected"])["get/rejected"]
        self.assertEqual((nf["code"], nf["message"]), (404, "No shadow exists with name: 'shT'"))
        # Every request is an event-log decision with its outcome.
        codes = [(e["op"], e["code"]) for e in s.find(kind="decision", what="shadow", thing="shT", client="sh-a")]
        self.assertEqual(codes, [("update", 200), ("update", 200), ("update", 200), ("get", 200), ("update", 409),
                                 ("delete", 200), ("get", 404)])
        # Re-created within 48 h: the version goes on from the deleted one.
        r = self.request(s, c, px, "update", {"state": {"reported": {"c": "x"}}},
                         ["update/accepted", "update/documents"])
        self.assertEqual(r["update/accepted"]["version"], 4)
        self.assertIsNone(r["update/documents"]["previous"])

    def test_b_named_shadow_v5_errors_and_broadcast_to_mosquitto_sub(self):
        # Responses are ordinary publishes: a second client (mosquitto_sub)
        # subscribed to the accepted topic gets them too.  (Not the AWS CRT:
        # Debian's awscrt 0.16 crashed this suite's process in its event-loop
        # thread, minutes after such a test, when it ran in-process here.)
        s = self.sim()
        c, px = self.shadow_client(s, "sh-b", "thingB", v5=True, name="cfg")
        watcher = self.mosq_sub(s, "sh-b-mosq", px + "/update/accepted", extra=("-C", "1", "-v"))
        r = self.request(s, c, px, "update", {"state": {"desired": {"mode": "eco", "n": [1, 2]}}},
                         ["update/accepted", "update/delta", "update/documents"])
        self.assertEqual(r["update/accepted"]["metadata"]["desired"]["n"],
                         [{"timestamp": r["update/accepted"]["timestamp"]}] * 2)
        out = self.finish(watcher, 5)
        topic, _, payload = out.strip().partition(" ")
        self.assertEqual(topic, px + "/update/accepted", out)
        self.assertEqual(json.loads(payload), r["update/accepted"])
        nf = self.request(s, c, "$aws/things/thingB/shadow/name/other", "get", None, [])
        self.assertEqual(nf, {})  # not subscribed there: nothing comes
        cases = [
            (b"{not json", 400, "Invalid JSON"),
            ({"clientToken": "x"}, 400, "Missing required node: state"),
            ({"state": {"delta": {"a": 1}}}, 400, "State contains an invalid node: 'delta'"),
            ({"state": {"desired": 5}}, 400, "Desired node must be an object"),
            ({"state": {"reported": {"a": 1}}, "clientToken": "k" * 65}, 400, "Invalid clientToken"),
            (b"\xff\xfe", 415, "Unsupported documented encoding; supported encoding is UTF-8"),
            ({"state": {"desired": {"big": "x" * 9000}}}, 413, "The payload exceeds the maximum size allowed"),
            ({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}, 400,
             "JSON contains too many levels of nesting; maximum is 6"),
        ]
        for doc, code, msg in cases:
            rj = self.request(s, c, px, "update", doc, ["update/rejected"])["update/rejected"]
            self.assertEqual((rj["code"], rj["message"]), (code, msg), doc)
            # A valid token comes back with the error; one that is not valid does not.
            token = doc.get("clientToken") if isinstance(doc, dict) else None
            self.assertEqual(rj.get("clientToken"), token if token and len(token) <= 64 else None, doc)
        g = self.request(s, c, px, "get", {"clientToken": "g1"}, ["get/accepted"])["get/accepted"]
        self.assertEqual(g["version"], 1, "a rejected update changed the shadow")
        self.assertEqual(g["state"]["delta"], {"mode": "eco", "n": [1, 2]})

    def test_c_shadows_survive_a_restart_and_the_control_api_lists_them(self):
        s = self.sim()
        c, px = self.shadow_client(s, "sh-c", "keepMe")
        self.request(s, c, px, "update", {"state": {"reported": {"fw": "1.0"}, "desired": {"fw": "1.1"}}},
                     ["update/accepted", "update/delta", "update/documents"])
        st, lst = s.get("/shadows")
        self.assertEqual(st, 200, lst)
        self.assertEqual([(x["thing"], x["name"], x["version"]) for x in lst], [("keepMe", None, 1)])
        st, doc = s.get("/shadows/keepMe")
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["state"]["delta"], {"fw": "1.1"})
        self.assertEqual(s.get("/shadows/keepMe/nope")[0], 404)
        self.assertEqual(s.get("/shadows/" + "x" * 400)[0], 414)
        c.close()
        self.assertEqual(s.stop(), 0)
        s.start()
        self.assertEqual(s.get("/shadows/keepMe")[1]["state"], doc["state"])
        c2, px = self.shadow_client(s, "sh-c2", "keepMe")
        r = self.request(s, c2, px, "update", {"state": {"reported": {"fw": "1.1"}}},
                         ["update/accepted", "update/documents"])
        self.assertEqual(r["update/accepted"]["version"], 2)
        self.assertEqual(r["update/documents"]["current"]["state"], {"desired": {"fw": "1.1"}, "reported": {"fw": "1.1"}})
        # A damaged shadows.json stops iotsim with the reason; it is not overwritten.
        c2.close()
        self.assertEqual(s.stop(), 0)
        path = os.path.join(s.state, "shadows.json")
        with open(path, "w") as f:
            f.write("{damaged")
        r = run([s.binary, "--state-dir", s.state, "--ports", "auto"], timeout=15)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("shadows.json", r.stdout)
        with open(path) as f:
            self.assertEqual(f.read(), "{damaged")

    def test_d_config_switches_the_service_and_its_limits(self):
        d = self.tmpdir()
        cfg = os.path.join(d, "c.json")
        with open(cfg, "w") as f:
            json.dump({"shadow": {"max_state_bytes": 64, "max_depth": 2}}, f)
        s = self.sim("--config", cfg)
        c, px = self.shadow_client(s, "sh-d", "lim")
        rj = self.request(s, c, px, "update", {"state": {"reported": {"s": "y" * 80}}}, ["update/rejected"])
        self.assertEqual(rj["update/rejected"]["code"], 413)
        rj = self.request(s, c, px, "update", {"state": {"reported": {"a": {"b": {"c": 1}}}}}, ["update/rejected"])
        self.assertEqual(rj["update/rejected"]["message"], "JSON contains too many levels of nesting; maximum is 2")
        self.request(s, c, px, "update", {"state": {"reported": {"a": {"b": 1}}}},
                     ["update/accepted", "update/documents"])
        with open(cfg, "w") as f:
            json.dump({"shadow": {"service": False}}, f)
        s2 = self.sim("--config", cfg)
        c2, px2 = self.shadow_client(s2, "sh-d2", "off")
        self.assertEqual(self.request(s2, c2, px2, "update", {"state": {"reported": {"a": 1}}}, []), {})
        self.assertEqual(s2.get("/shadows")[0], 404)
        with open(cfg, "w") as f:
            json.dump({"shadow": {"max_depth": 0}}, f)
        r = run([iotsim_binary(), "--state-dir", os.path.join(d, "st"), "--ports", "auto", "--config", cfg],
                timeout=15)
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("shadow.max_depth: must be between 1 and 64", r.stdout)


# ---- 12. fleet provisioning by claim -------------------------------------------------------

# The canonical fleet template of aws-services.md §2.4 (AWS's own example).
FLEET_TEMPLATE = {
    "Parameters": {"SerialNumber": {"Type": "String"}, "DeviceLocation": {"Type": "String"},
                   "AWS::IoT::Certificate::Id": {"Type": "String"}},
    "Mappings": {"LocationTable": {"Seattle": {"LocationUrl": "https://example.aws"}}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing",
                  "Properties": {"ThingName": {"Fn::Join": ["", ["ThingPrefix_", {"Ref": "SerialNumber"}]]},
                                 "AttributePayload": {"version": "v1", "serialNumber": "serialNumber"}},
                  "OverrideSettings": {"AttributePayload": "MERGE", "ThingTypeName": "REPLACE",
                                       "ThingGroups": "DO_NOTHING"}},
        "certificate": {"Type": "AWS::IoT::Certificate",
                        "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"},
                        "OverrideSettings": {"Status": "REPLACE"}},
        "policy": {"Type": "AWS::IoT::Policy",
                   "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": [
                       {"Effect": "Allow", "Action": ["iot:Connect", "iot:Subscribe", "iot:Publish", "iot:Receive"],
                        "Resource": "*"}]}}}},
    "DeviceConfiguration": {"FallbackUrl": "https://www.example.com/test-site",
                            "LocationUrl": {"Fn::FindInMap": ["LocationTable", {"Ref": "DeviceLocation"},
                                                              "LocationUrl"]}},
}

# The claim certificate's policy as AWS documents it (§2.1): only the provisioning topics.
CLAIM_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/$aws/certificates/create/*",
                  "arn:aws:iot:us-east-1:123456789012:topic/$aws/certificates/create-from-csr/*",
                  "arn:aws:iot:us-east-1:123456789012:topic/$aws/provisioning-templates/FleetTpl/provision/*",
                  "arn:aws:iot:us-east-1:123456789012:topic/$aws/provisioning-templates/Off/provision/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/certificates/create/*",
                  "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/certificates/create-from-csr/*",
                  "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/provisioning-templates/FleetTpl/provision/*",
                  "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/provisioning-templates/Off/provision/*"]}]}


class T12Provisioning(Base):
    """Fleet provisioning by claim (aws-services.md §2) as paho sees it: a
    claim certificate limited to the provisioning topics gets a new
    certificate (keys made by iotsim, or from a CSR openssl made), which
    cannot connect until RegisterThing, then can, under the template's thing
    name and policy, also after a restart."""

    def prov_sim(self):
        d = self.tmpdir()
        cfg = os.path.join(d, "c.json")
        with open(cfg, "w") as f:
            json.dump({"policies": {"claim": CLAIM_POLICY},
                       "things": [{"name": "claimer", "policies": ["claim"]}],
                       "provisioning_templates": {"FleetTpl": FLEET_TEMPLATE,
                                                  "Off": {"body": FLEET_TEMPLATE, "enabled": False}}}, f)
        return self.sim("--config", cfg)

    def claim(self, s, cid="claim-1", fmt="json"):
        c = self.paho(s, cid, device="claimer")
        self.assertEqual(c.connect()[1], 0, s.tail())
        for f in ("$aws/certificates/create/%s/+", "$aws/certificates/create-from-csr/%s/+",
                  "$aws/provisioning-templates/FleetTpl/provision/%s/+",
                  "$aws/provisioning-templates/Off/provision/%s/+"):
            self.assertIsNotNone(c.subscribe(f % fmt, qos=1), "SUBACK for " + f)
        return c

    def ask(self, s, c, topic, payload, decode=json.loads):
        self.assertTrue(c.publish(topic, payload, qos=1), "no PUBACK" + s.tail())
        m = c.get(15)
        self.assertIsNotNone(m, "no answer on %s/+%s" % (topic, s.tail()))
        self.assertEqual(c.drain(0.2), [], "more than one answer")
        return m.topic[len(topic) + 1:], decode(m.payload)

    def connects(self, s, cid, crt, key):
        c = Paho(s, cid, device=(crt, key))
        try:
            ack = c.connect(3)
            return ack is not None and ack[1] == 0
        finally:
            c.close()

    def test_a_create_keys_register_then_connect(self):
        s = self.prov_sim()
        c = self.claim(s)
        kind, r = self.ask(s, c, "$aws/certificates/create/json", b"")
        self.assertEqual(kind, "accepted", r)
        self.assertEqual(sorted(r), ["certificateId", "certificateOwnershipToken", "certificatePem", "privateKey"])
        d = self.tmpdir()
        crt, key = os.path.join(d, "new.crt"), os.path.join(d, "new.key")
        with open(crt, "w") as f:
            f.write(r["certificatePem"])
        with open(key, "w") as f:
            f.write(r["privateKey"])
        self.assertEqual(r["certificateId"], cert_id_of(crt))
        out = run(["openssl", "verify", "-CAfile", s.ep["ca_file"], crt]).stdout
        self.assertIn("OK", out)
        # RSA 2048, what AWS's CreateKeysAndCertificate hands out.
        self.assertRegex(run(["openssl", "pkey", "-in", key, "-noout", "-text"]).stdout, r"^Private-Key: \(2048 bit")
        self.assertIn("modulus", run(["openssl", "pkey", "-in", key, "-noout", "-text"]).stdout)
        # PENDING_ACTIVATION: the new certificate cannot connect yet.
        self.assertFalse(self.connects(s, "ThingPrefix_7", crt, key), "a pending certificate connected")
        pend = s.get("/things")[1]["certificates_without_thing"]
        self.assertEqual([(x["certificate_id"], x["status"]) for x in pend], [(r["certificateId"], "PENDING_ACTIVATION")])
        self.assertNotIn("key_file", pend[0], "iotsim keeps no private key it handed out")
        kind, e = self.ask(s, c, "$aws/provisioning-templates/FleetTpl/provision/json",
                           json.dumps({"certificateOwnershipToken": r["certificateOwnershipToken"],
                                       "parameters": {"SerialNumber": "7", "DeviceLocation": "Seattle"}}).encode())
        self.assertEqual(kind, "accepted", e)
        self.assertEqual(e, {"thingName": "ThingPrefix_7",
                             "deviceConfiguration": {"FallbackUrl": "https://www.example.com/test-site",
                                                     "LocationUrl": "https://example.aws"}})
        self.assertTrue(self.connects(s, "ThingPrefix_7", crt, key), "the registered certificate cannot connect"
                        + s.tail())
        listing = s.get("/things")[1]
        self.assertEqual(listing["certificates_without_thing"], [])
        things = {t["name"]: t for t in listing["things"]}
        self.assertEqual(things["ThingPrefix_7"]["certificate_id"], r["certificateId"])
        self.assertEqual(things["ThingPrefix_7"]["status"], "ACTIVE")
        self.assertEqual(len(things["ThingPrefix_7"]["policies"]), 1)
        # The token was used: a second RegisterThing is refused.
        kind, e = self.ask(s, c, "$aws/provisioning-templates/FleetTpl/provision/json",
                           json.dumps({"certificateOwnershipToken": r["certificateOwnershipToken"]}).encode())
        self.assertEqual((kind, e["statusCode"], e["errorCode"]), ("rejected", 400, "InvalidCertificateOwnershipToken"))
        codes = [(x["op"], x["code"]) for x in s.find(kind="decision", what="provisioning")]
        self.assertEqual(codes, [("CreateKeysAndCertificate", 200), ("RegisterThing", 200), ("RegisterThing", 400)])
        # After a restart the thing, its certificate and its policy are still there.
        c.close()
        self.assertEqual(s.stop(), 0)
        s.start()
        self.assertTrue(self.connects(s, "ThingPrefix_7", crt, key), "lost across a restart" + s.tail())

    def test_b_certificate_from_an_openssl_csr(self):
        s = self.prov_sim()
        c = self.claim(s, "claim-csr")
        d = self.tmpdir()
        key, csr, crt = (os.path.join(d, n) for n in ("dev.key", "dev.csr", "dev.crt"))
        r = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-subj", "/CN=csr-device", "-out", csr])
        self.assertEqual(r.returncode, 0, r.stdout)
        with open(csr) as f:
            kind, a = self.ask(s, c, "$aws/certificates/create-from-csr/json",
                               json.dumps({"certificateSigningRequest": f.read()}).encode())
        self.assertEqual(kind, "accepted", a)
        self.assertEqual(sorted(a), ["certificateId", "certificateOwnershipToken", "certificatePem"])
        with open(crt, "w") as f:
            f.write(a["certificatePem"])
        self.assertEqual(run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"]).stdout,
                         run(["openssl", "pkey", "-in", key, "-pubout"]).stdout)
        kind, e = self.ask(s, c, "$aws/provisioning-templates/FleetTpl/provision/json",
                           json.dumps({"certificateOwnershipToken": a["certificateOwnershipToken"],
                                       "parameters": {"SerialNumber": "csr", "DeviceLocation": "Seattle"}}).encode())
        self.assertEqual((kind, e.get("thingName")), ("accepted", "ThingPrefix_csr"), e)
        self.assertTrue(self.connects(s, "ThingPrefix_csr", crt, key))
        kind, e = self.ask(s, c, "$aws/certificates/create-from-csr/json",
                           json.dumps({"certificateSigningRequest": "not a csr"}).encode())
        self.assertEqual((kind, e["statusCode"]), ("rejected", 400), e)
        self.assertIsInstance(e["errorCode"], str)

    def test_c_errors_cbor_and_token_expiry(self):
        import cbor2  # python3-cbor2: a CBOR codec nobody here wrote
        s = self.prov_sim()
        c = self.claim(s, "claim-err")
        tpl = "$aws/provisioning-templates/FleetTpl/provision/json"
        for payload, want in [
            (b"{}", (400, "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty.")),
            (json.dumps({"certificateOwnershipToken": "f" * 64}).encode(), (400, "InvalidCertificateOwnershipToken", None)),
            (b"[oops", (400, "InvalidPayload", None)),
        ]:
            kind, e = self.ask(s, c, tpl, payload)
            self.assertEqual(kind, "rejected", e)
            self.assertEqual((e["statusCode"], e["errorCode"]), want[:2], payload)
            if want[2]:
                self.assertEqual(e["errorMessage"], want[2])
        kind, e = self.ask(s, c, "$aws/provisioning-templates/Off/provision/json", b'{"certificateOwnershipToken":"x"}')
        self.assertEqual((kind, e["statusCode"], e["errorCode"]), ("rejected", 404, "ResourceNotFound"), e)
        # CBOR: the same API with CBOR maps, decoded by cbor2.
        cc = self.claim(s, "claim-cbor", fmt="cbor")
        kind, r = self.ask(s, cc, "$aws/certificates/create/cbor", cbor2.dumps({}), decode=cbor2.loads)
        self.assertEqual(kind, "accepted", r)
        self.assertTrue(r["certificatePem"].startswith("-----BEGIN CERTIFICATE-----"))
        kind, e = self.ask(s, cc, "$aws/provisioning-templates/FleetTpl/provision/cbor",
                           cbor2.dumps({"certificateOwnershipToken": r["certificateOwnershipToken"],
                                        "parameters": {"SerialNumber": "cb", "DeviceLocation": "Seattle"}}),
                           decode=cbor2.loads)
        self.assertEqual((kind, e["thingName"]), ("accepted", "ThingPrefix_cb"), e)
        # A token not used within the hour: its pending certificate goes.
        kind, r = self.ask(s, c, "$aws/certificates/create/json", b"{}")
        self.assertEqual(s.get("/provisioning")[1]["tokens"][0]["certificateId"], r["certificateId"])
        st, body = s.post("/clock/advance", {"seconds": 3601})
        self.assertEqual(st, 200, body)
        self.assertTrue(wait_for(lambda: not s.get("/provisioning")[1]["tokens"], 5), s.get("/provisioning")[1])
        # An hour of virtual time also outlasted the claim clients' keep-alive: a new one.
        c = self.claim(s, "claim-late")
        kind, e = self.ask(s, c, tpl, json.dumps({"certificateOwnershipToken": r["certificateOwnershipToken"],
                                                  "parameters": {"SerialNumber": "late"}}).encode())
        self.assertEqual((kind, e["errorCode"]), ("rejected", "InvalidCertificateOwnershipToken"), e)
        with open(os.path.join(s.state, "registry.json")) as f:
            self.assertNotIn(r["certificateId"], f.read(), "the expired pending certificate is still registered")
        # The claim policy keeps the claim certificate off other topics.
        self.assertIsNone(c.subscribe("a/b", qos=1, timeout=2), "the claim certificate subscribed outside its policy")

    def test_e_a_config_policy_by_name_survives_a_restart(self):
        # The documented flow names an existing policy (PolicyName).  One the
        # config file declares is attached again after a restart, although
        # registry.json is read before the config.
        d = self.tmpdir()
        cfg = os.path.join(d, "c.json")
        tpl = json.loads(json.dumps(FLEET_TEMPLATE))
        tpl["Resources"]["policy"] = {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "devpol"}}
        with open(cfg, "w") as f:
            json.dump({"policies": {"claim": CLAIM_POLICY, "devpol": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}},
                "things": [{"name": "claimer", "policies": ["claim"]}],
                "provisioning_templates": {"FleetTpl": tpl, "Off": {"body": tpl, "enabled": False}}}, f)
        s = self.sim("--config", cfg)
        c = self.claim(s, "claim-named")
        kind, r = self.ask(s, c, "$aws/certificates/create/json", b"{}")
        kind, e = self.ask(s, c, "$aws/provisioning-templates/FleetTpl/provision/json",
                           json.dumps({"certificateOwnershipToken": r["certificateOwnershipToken"],
                                       "parameters": {"SerialNumber": "n", "DeviceLocation": "Seattle"}}).encode())
        self.assertEqual(kind, "accepted", e)
        c.close()
        for _ in range(2):
            things = {t["name"]: t for t in s.get("/things")[1]["things"]}
            self.assertEqual(things["ThingPrefix_n"]["policies"], ["devpol"])
            self.assertEqual(things["claimer"]["policies"], ["claim"], "the config's own attachments changed")
            self.assertEqual(s.stop(), 0)
            s.start()
        self.assertNotIn("not attached", s.stderr_text(full=True))

    def test_d_templates_through_the_control_api(self):
        s = self.sim()
        self.assertEqual(s.get("/provisioning")[1]["templates"], [])
        st, body = s.post("/provisioning/templates", {"name": "bad name!", "body": FLEET_TEMPLATE})
        self.assertEqual(st, 400, body)
        st, body = s.post("/provisioning/templates", {"name": "T1", "body": {"Resources": {"x": {"Type": "AWS::IoT::Nope"}}}})
        self.assertEqual(st, 400, body)
        self.assertIn("Resources.x", body["error"])
        st, body = s.post("/provisioning/templates", {"name": "T1", "body": json.dumps(FLEET_TEMPLATE)})
        self.assertEqual(st, 200, body)
        self.assertEqual([t["name"] for t in s.get("/provisioning")[1]["templates"]], ["T1"])
        self.assertEvent(s, kind="decision", what="provisioning_template_put")
        self.assertEqual(s.post("/provisioning/templates/delete", {"name": "T1"})[0], 200)
        self.assertEqual(s.post("/provisioning/templates/delete", {"name": "T1"})[0], 404)
        self.assertEqual(s.get("/provisioning")[1]["templates"], [])
        d = self.tmpdir()
        cfg = os.path.join(d, "c.json")
        with open(cfg, "w") as f:
            json.dump({"provisioning_templates": {"T": {"Resources": {}, "Bogus": 1}}}, f)
        r = run([iotsim_binary(), "--state-dir", os.path.join(d, "st"), "--ports", "auto", "--config", cfg], timeout=15)
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("provisioning_templates.T", r.stdout)


def main(argv):
    binary = iotsim_binary()
    if not os.access(binary, os.X_OK):
        print("iotsim not found at %s (set IOTSIM or pass the build dir to run.sh)" % binary, file=sys.stderr)
        print("integration: 0 passed, 1 failed")
        return 1
    if argv:
        return run_tests(sys.modules[__name__], argv, "integration")
    # Everything, with the AWS CRT's tests in a process of their own that
    # exits right after them: Debian's awscrt 0.16 has crashed this process
    # (SIGSEGV in its "AwsEventLoop" thread, a jump into freed memory) tens
    # of seconds after its connections were closed, in whatever test ran then.
    mod = sys.modules[__name__]
    names = sorted(n for n, v in vars(mod).items()
                   if isinstance(v, type) and issubclass(v, Base) and v is not Base and n != "T05Awscrt")
    counts = []
    rc = run_tests(mod, names, "integration without the AWS CRT", counts)
    passed, failed = counts[0]
    sys.stdout.flush()
    crt = subprocess.run([sys.executable, os.path.abspath(__file__), "T05Awscrt"], stdout=subprocess.PIPE,
                         text=True)
    m = re.search(r"integration: (\d+) passed, (\d+) failed", crt.stdout)
    if m:
        passed, failed = passed + int(m.group(1)), failed + int(m.group(2))
    if crt.returncode and (not m or m.group(2) == "0"):
        print("the AWS CRT's tests ended with status %d" % crt.returncode, file=sys.stderr)
        failed += 1
    print("integration: %d passed, %d failed" % (passed, failed))
    return 1 if rc or crt.returncode else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
