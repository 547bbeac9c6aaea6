"""The WebSocket upgrade libiotc sends, checked by a broker written here.

`iotc pub --signing` connects over WSS to a small fake broker (Python's ssl
and socket modules; the MQTT side knows CONNECT, PUBLISH QoS 1 and
DISCONNECT).  The broker records the upgrade request and verifies its SigV4
query signature with an implementation of its own (hashlib and hmac, from
aws-broker.md section 5.2), against the Host header it received: what AWS IoT
does.  iotsim has no WebSocket listener yet, so this is the end-to-end check
of iotc_websockets_with_default_aws_signing.

Run by run.sh; needs IOTC (the iotc binary) in the environment.
"""
import base64
import hashlib
import hmac
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.parse

IOTC = os.environ.get("IOTC", "")
AKID = "AKIDEXAMPLEIOTC0001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzE+token/with=chars"
REGION = "eu-west-1"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def uri_encode(s):
    return urllib.parse.quote(s, safe="-_.~")


def verify_sigv4(method, path, host, secret, region):
    """Returns (ok, why) for a SigV4 presigned request, service iotdevicegateway,
    the security token left out of the signature (as AWS IoT expects)."""
    parsed = urllib.parse.urlsplit(path)
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    q = dict(pairs)
    for k in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if k not in q:
            return False, "missing " + k
    if q["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256" or q["X-Amz-SignedHeaders"] != "host":
        return False, "algorithm or signed headers"
    akid, date, reg, service, term = q["X-Amz-Credential"].split("/")
    if (reg, service, term) != (region, "iotdevicegateway", "aws4_request"):
        return False, "credential scope " + q["X-Amz-Credential"]
    signed = sorted((k, v) for k, v in pairs if k not in ("X-Amz-Signature", "X-Amz-Security-Token"))
    cq = "&".join(uri_encode(k) + "=" + uri_encode(v) for k, v in signed)
    creq = "\n".join([method, parsed.path, cq, "host:" + host + "\n", "host", hashlib.sha256(b"").hexdigest()])
    scope = "/".join([date, region, "iotdevicegateway", "aws4_request"])
    sts = "\n".join(["AWS4-HMAC-SHA256", q["X-Amz-Date"], scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, "iotdevicegateway", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, q["X-Amz-Signature"]):
        return False, "signature mismatch"
    return True, akid


def connect_fields(pkt, used):
    """(client id, username, password) of an MQTT 3.1.1 CONNECT."""
    i = 1 + used
    def field():
        nonlocal i
        n = int.from_bytes(pkt[i:i + 2], "big")
        v = pkt[i + 2:i + 2 + n]
        i += 2 + n
        return v
    field()  # protocol name
    flags = pkt[i + 1]
    i += 4   # level, flags, keep-alive
    cid = field()
    if flags & 0x04:
        field()
        field()
    user = field().decode() if flags & 0x80 else None
    pw = field() if flags & 0x40 else None
    return cid.decode(), user, pw


class FakeWsBroker(threading.Thread):
    """One TLS connection: the WebSocket upgrade (unless ws=False), then just
    enough MQTT 3.1.1.  alpn: the protocols the server accepts."""

    def __init__(self, certfile, keyfile, ws=True, alpn=None):
        super().__init__(daemon=True)
        self.ws = ws
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        if alpn:
            self.ctx.set_alpn_protocols(alpn)
        self.alpn = None
        self.connect = None
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(20)
        self.port = self.lsock.getsockname()[1]
        self.request = None
        self.headers = {}
        self.packets = []
        self.error = None

    def run(self):
        try:
            raw, _ = self.lsock.accept()
            raw.settimeout(20)
            with self.ctx.wrap_socket(raw, server_side=True) as s:
                self.alpn = s.selected_alpn_protocol()
                if self.ws:
                    self.serve(s)
                else:
                    self.serve_mqtt(s, b"", raw_frames=True)
        except Exception as e:  # reported by the test, not lost in a thread
            self.error = repr(e)
        finally:
            self.lsock.close()

    def serve(self, s):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise EOFError("closed during the upgrade")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.request = lines[0]
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1((self.headers["sec-websocket-key"] + GUID).encode()).digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
        self.serve_mqtt(s, rest, raw_frames=False)

    def serve_mqtt(self, s, stream, raw_frames):
        mqtt = b""
        send = (lambda sock, d: sock.sendall(d)) if raw_frames else self.send_frame
        while True:
            if raw_frames:
                frame = stream or s.recv(65536)
                stream = b""
                if not frame:
                    return
            else:
                frame, stream = self.read_frame(s, stream)
            if frame is None:
                return
            mqtt += frame
            while len(mqtt) >= 2:
                n, used = self.remaining_length(mqtt)
                if n is None or len(mqtt) < 1 + used + n:
                    break
                pkt = mqtt[:1 + used + n]
                mqtt = mqtt[1 + used + n:]
                self.packets.append(pkt)
                t = pkt[0] >> 4
                if t == 1:
                    self.connect = connect_fields(pkt, used)
                    send(s, b"\x20\x02\x00\x00")
                elif t == 3 and (pkt[0] >> 1) & 3 == 1:
                    tlen = int.from_bytes(pkt[1 + used:3 + used], "big")
                    pid = pkt[3 + used + tlen:5 + used + tlen]
                    send(s, b"\x40\x02" + pid)
                elif t == 14:
                    return

    @staticmethod
    def remaining_length(b):
        n, mul = 0, 1
        for i in range(1, min(len(b), 5)):
            n += (b[i] & 0x7F) * mul
            if not b[i] & 0x80:
                return n, i
            mul *= 128
        return None, 0

    @staticmethod
    def recv_exact(s, stream, n):
        while len(stream) < n:
            chunk = s.recv(65536)
            if not chunk:
                return None, stream
            stream += chunk
        return stream[:n], stream[n:]

    def read_frame(self, s, stream):
        hdr, stream = self.recv_exact(s, stream, 2)
        if hdr is None:
            return None, stream
        opcode, ln = hdr[0] & 0x0F, hdr[1] & 0x7F
        if not hdr[1] & 0x80:
            raise ValueError("client frame not masked")
        if ln == 126:
            ext, stream = self.recv_exact(s, stream, 2)
            ln = int.from_bytes(ext, "big")
        elif ln == 127:
            ext, stream = self.recv_exact(s, stream, 8)
            ln = int.from_bytes(ext, "big")
        mask, stream = self.recv_exact(s, stream, 4)
        data, stream = self.recv_exact(s, stream, ln)
        if data is None:
            return None, stream
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        if opcode == 8:
            return None, stream
        if opcode != 2:
            raise ValueError("opcode %d, not binary" % opcode)
        return data, stream

    @staticmethod
    def send_frame(s, data):
        s.sendall(bytes([0x82, len(data)]) + data)


class T01SigV4OverWss(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cls.ca_key, cls.ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
        cls.key, cls.crt = os.path.join(d, "srv.key"), os.path.join(d, "srv.crt")
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", cls.ca_key, "-out", cls.ca_crt, "-days", "2", "-subj", "/CN=ws test CA")
        csr = os.path.join(d, "srv.csr")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", cls.key, "-out", csr, "-subj", "/CN=localhost")
        ext = os.path.join(d, "ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", cls.ca_crt, "-CAkey", cls.ca_key, "-CAcreateserial",
            "-out", cls.crt, "-days", "2", "-extfile", ext)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def pub(self, broker, env_extra, *extra, wait=20, kind=("--signing", "--region", REGION)):
        env = dict(os.environ)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(k, None)
        env["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(self.tmp.name, "none")
        env.update(env_extra)
        p = subprocess.run([IOTC, "pub"] + list(kind) + ["--endpoint", "localhost",
                            "--port", str(broker.port), "--ca_file", self.ca_crt, "--topic", "ws/t",
                            "--message", "signed", "--qos", "1", "--timeout", "10"] + list(extra),
                           env=env, capture_output=True, text=True, timeout=30)
        broker.join(wait)
        return p

    def test_a_signed_url_verifies_and_mqtt_flows(self):
        b = FakeWsBroker(self.crt, self.key)
        b.start()
        p = self.pub(b, {"AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIsNone(b.error)
        method, path, _ = b.request.split(" ")
        self.assertEqual(method, "GET")
        self.assertTrue(path.startswith("/mqtt?"), path)
        self.assertEqual(b.headers.get("sec-websocket-protocol"), "mqtt")
        ok, why = verify_sigv4(method, path, b.headers["host"], SECRET, REGION)
        self.assertTrue(ok, why)
        self.assertEqual(why, AKID)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        self.assertEqual(q.get("X-Amz-Security-Token"), TOKEN)
        # The same request with a wrong secret must not verify: the check can fail.
        self.assertFalse(verify_sigv4(method, path, b.headers["host"], SECRET + "x", REGION)[0])
        types = [pkt[0] >> 4 for pkt in b.packets]
        self.assertEqual(types, [1, 3, 14], b.packets)
        self.assertIn(b"signed", b.packets[1])

    def test_b_credentials_from_the_shared_file(self):
        cred = os.path.join(self.tmp.name, "credentials")
        with open(cred, "w") as f:
            f.write("[default]\naws_access_key_id = AKIDFROMFILE000001\naws_secret_access_key = filesecret\n")
        b = FakeWsBroker(self.crt, self.key)
        b.start()
        p = self.pub(b, {"AWS_SHARED_CREDENTIALS_FILE": cred})
        self.assertEqual(p.returncode, 0, p.stderr)
        method, path, _ = b.request.split(" ")
        ok, who = verify_sigv4(method, path, b.headers["host"], "filesecret", REGION)
        self.assertTrue(ok, who)
        self.assertEqual(who, "AKIDFROMFILE000001")
        self.assertNotIn("X-Amz-Security-Token", path)

    def test_c_no_credentials_is_a_clear_failure(self):
        b = FakeWsBroker(self.crt, self.key)
        b.start()
        p = self.pub(b, {}, wait=0.2)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("credential", p.stderr.lower())
        self.assertIsNone(b.request)  # nothing was sent unsigned

    def test_d_custom_handshake_adds_a_header(self):
        b = FakeWsBroker(self.crt, self.key)
        b.start()
        p = self.pub(b, {}, kind=("--ws", "--header", "x-amz-customauthorizer-name: my-auth"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIsNone(b.error)
        self.assertEqual(b.headers.get("x-amz-customauthorizer-name"), "my-auth")
        self.assertEqual(b.request.split(" ")[1], "/mqtt")
        self.assertEqual([pkt[0] >> 4 for pkt in b.packets], [1, 3, 14])

    CUSTOM = ("--custom_auth_username", "user", "--custom_auth_authorizer_name", "my-auth",
              "--custom_auth_authorizer_signature", "ab+/=", "--custom_auth_token_key_name", "token",
              "--custom_auth_token_value", "v 1", "--custom_auth_password", "pw")
    # What the SDK v2 builds (aws-broker.md 5.3), with libiotc's metrics (5.4).
    CUSTOM_USER = ("user?x-amz-customauthorizer-name=my-auth&x-amz-customauthorizer-signature=ab%2B%2F%3D"
                   "&token=v%201&SDK=libiotc&Version=0.1.0")

    def test_e_direct_custom_authorizer_alpn_mqtt(self):
        b = FakeWsBroker(self.crt, self.key, ws=False, alpn=["mqtt"])
        b.start()
        p = self.pub(b, {}, kind=self.CUSTOM)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIsNone(b.error)
        self.assertEqual(b.alpn, "mqtt")
        cid, user, pw = b.connect
        self.assertEqual(user, self.CUSTOM_USER)
        self.assertEqual(pw, b"pw")
        self.assertEqual([pkt[0] >> 4 for pkt in b.packets], [1, 3, 14])

    def test_f_websocket_custom_authorizer(self):
        b = FakeWsBroker(self.crt, self.key)
        b.start()
        p = self.pub(b, {}, kind=("--ws",) + self.CUSTOM)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIsNone(b.error)
        self.assertEqual(b.connect[1], self.CUSTOM_USER)
        self.assertEqual(b.request.split(" ")[1], "/mqtt")


if __name__ == "__main__":
    if not IOTC:
        sys.exit("IOTC is not set")
    r = unittest.main(exit=False, verbosity=2).result
    failed = len(r.failures) + len(r.errors)
    print("client ws handshake: %d passed, %d failed" % (r.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
