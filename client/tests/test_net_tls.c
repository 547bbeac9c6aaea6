/*
 * Client TLS over memory BIOs (net/tls.h).  A throwaway PKI is made with
 * the openssl command-line tool in a mkdtemp directory; handshakes run in
 * process against a server SSL object that is also on memory BIOs (bytes
 * pumped between the two), plus one run against a real `openssl s_server`
 * over a TCP socket.  Covers mTLS + ALPN, CA from file, directory and bytes,
 * DNS and IP hostname checks, wrong CA, expired certificate, ALPN refused,
 * key/cert mismatch, a client certificate the server refuses, the buffer
 * limits, and application data both ways.  The client identity also comes
 * from PKCS#12 bundles made with `openssl pkcs12 -export` (AES-256 + PBKDF2
 * + SHA-256 MAC, OpenSSL 3's defaults): from a file and from DER bytes, one
 * whose leaf is signed by an intermediate that only the bundle carries (so
 * the handshake proves the chain is sent), one with an empty password, one
 * without a key; wrong passwords, garbage and contradictory settings.
 *
 * Expired certificate: OpenSSL 3.0 has no -not_before/-not_after (3.4+);
 * `openssl x509 -req -days -1` works on 3.0 and gives notAfter one day
 * before notBefore (= now), which verification reports as expired.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/tls.h"

static char g_dir[64];

static const char *pki(const char *name)
{
    /* Rotating buffers so a config can hold several paths; 64 outlasts any
     * one test (a config plus two servers use under 12). */
    static char buf[64][160];
    static unsigned i;
    char *b = buf[i++ % 64];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static int make_pki(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/iotc-tls-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; exec >pki.log 2>&1\n"
             "printf '[srv]\\nbasicConstraints=CA:FALSE\\nsubjectAltName=DNS:localhost,IP:127.0.0.1\\n"
             "extendedKeyUsage=serverAuth\\n[cli]\\nbasicConstraints=CA:FALSE\\n"
             "extendedKeyUsage=clientAuth\\n[ica]\\nbasicConstraints=critical,CA:TRUE\\n"
             "keyUsage=critical,keyCertSign,cRLSign\\n' > ext.cnf\n"
             "K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
             "openssl req -x509 $K -keyout ca.key -out ca.crt -days 2 -subj /CN=iotc-test-ca\n"
             "openssl req -x509 $K -keyout ca2.key -out ca2.crt -days 2 -subj /CN=iotc-rogue-ca\n"
             "openssl req -new $K -keyout server.key -out server.csr -subj /CN=localhost\n"
             "S='-req -CA ca.crt -CAkey ca.key -CAcreateserial -extfile ext.cnf'\n"
             "openssl x509 $S -in server.csr -days 2 -extensions srv -out server.crt\n"
             "openssl x509 $S -in server.csr -days -1 -extensions srv -out expired.crt\n"
             "openssl req -new $K -keyout client.key -out client.csr -subj /CN=thing-01\n"
             "openssl x509 $S -in client.csr -days 2 -extensions cli -out client.crt\n"
             "openssl x509 -req -CA ca2.crt -CAkey ca2.key -CAcreateserial -extfile ext.cnf "
             "-in client.csr -days 2 -extensions cli -out rogue.crt\n"
             "openssl req -new $K -keyout other.key -out other.csr -subj /CN=other\n"
             "mkdir cadir; cp ca.crt cadir/; openssl rehash cadir\n"
             /* thing-02 is signed by an intermediate the server does not
              * know: only chain.p12 carries it. */
             "openssl req -new $K -keyout inter.key -out inter.csr -subj /CN=iotc-test-intermediate\n"
             "openssl x509 $S -in inter.csr -days 2 -extensions ica -out inter.crt\n"
             "openssl req -new $K -keyout leaf2.key -out leaf2.csr -subj /CN=thing-02\n"
             "openssl x509 -req -CA inter.crt -CAkey inter.key -CAcreateserial -extfile ext.cnf "
             "-in leaf2.csr -days 2 -extensions cli -out leaf2.crt\n"
             "P='openssl pkcs12 -export -passout pass:s3cret'\n"
             "$P -in client.crt -inkey client.key -certfile ca.crt -name thing-01 -out client.p12\n"
             "$P -in leaf2.crt -inkey leaf2.key -certfile inter.crt -out chain.p12\n"
             "$P -in client.crt -nokeys -out nokey.p12\n"
             "$P -nomac -in client.crt -inkey client.key -out nomac.p12\n"
             "openssl pkcs12 -export -passout pass: -in client.crt -inkey client.key -out nopass.p12\n"
             "printf 'this is not a PKCS#12 bundle\\n' > garbage.p12\n",
             g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_pki(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = malloc(16384);
    assert_non_null(b);
    *len = fread(b, 1, 16384, f);
    fclose(f);
    return b;
}

/* ---- the in-process server ------------------------------------------------ */

enum { ALPN_NONE, ALPN_SELECT, ALPN_FATAL };

/* By default OpenSSL's server sends its CA after the leaf (it builds the
 * chain from its verify store); set to send the leaf alone. */
static int g_leaf_only;

typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
    int done, failed;
} srv;

static int srv_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    static const unsigned char mine[] = "\x0ex-amzn-mqtt-ca";
    if ((intptr_t)arg == ALPN_FATAL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, mine, sizeof mine - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void srv_init(srv *v, const char *cert, int alpn)
{
    memset(v, 0, sizeof *v);
    v->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(v->ctx);
    assert_int_equal(SSL_CTX_use_certificate_file(v->ctx, pki(cert), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(v->ctx, pki("server.key"), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(v->ctx, pki("ca.crt"), NULL), 1);
    SSL_CTX_set_verify(v->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (g_leaf_only)
        SSL_CTX_set_mode(v->ctx, SSL_MODE_NO_AUTO_CHAIN);
    if (alpn != ALPN_NONE)
        SSL_CTX_set_alpn_select_cb(v->ctx, srv_alpn_cb, (void *)(intptr_t)alpn);
    v->ssl = SSL_new(v->ctx);
    v->in = BIO_new(BIO_s_mem());
    v->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(v->in, -1);
    BIO_set_mem_eof_return(v->out, -1);
    SSL_set_bio(v->ssl, v->in, v->out);
    SSL_set_accept_state(v->ssl);
}

static void srv_free(srv *v)
{
    SSL_free(v->ssl);
    SSL_CTX_free(v->ctx);
    ERR_clear_error();
}

/* Client output -> server input. */
static void to_server(iotc_tls *c, srv *v)
{
    const void *p;
    size_t n;
    iotc_tls_pending_out(c, &p, &n);
    if (n > 0) {
        assert_int_equal(BIO_write(v->in, p, (int)n), (int)n);
        iotc_tls_consume_out(c, n);
    }
}

/* Server output -> client; returns the client's status. */
static iotc_err to_client(srv *v, iotc_tls *c)
{
    unsigned char buf[4096];
    int r;
    iotc_err rc = IOTC_OK;
    while ((r = BIO_read(v->out, buf, sizeof buf)) > 0 && rc == IOTC_OK)
        rc = iotc_tls_feed(c, buf, (size_t)r);
    return rc;
}

/* Runs the handshake to its end on both sides; returns the client's status. */
static iotc_err pump(iotc_tls *c, srv *v)
{
    iotc_err rc = IOTC_OK;
    for (int round = 0; round < 20; round++) {
        to_server(c, v);
        if (!v->done && !v->failed) {
            int r = SSL_do_handshake(v->ssl);
            if (r == 1) {
                v->done = 1;
            } else {
                int e = SSL_get_error(v->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    v->failed = 1;
            }
        }
        rc = to_client(v, c);
        if (rc != IOTC_OK || (iotc_tls_handshake_done(c) && (v->done || v->failed)))
            break;
    }
    ERR_clear_error();
    return rc;
}

static iotc_tls_config mtls_cfg(void)
{
    iotc_tls_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.ca_file = pki("ca.crt");
    cfg.cert_file = pki("client.crt");
    cfg.key_file = pki("client.key");
    cfg.alpn = "x-amzn-mqtt-ca";
    cfg.hostname = "localhost";
    return cfg;
}

/* Handshake that must fail on the client with `rc`, the reason naming `want`. */
static void expect_fail(const iotc_tls_config *cfg, const char *cert, int alpn, const char *want)
{
    srv v;
    srv_init(&v, cert, alpn);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(cfg, &c, &why), IOTC_OK);
    assert_int_equal(pump(c, &v), IOTC_ERR_TLS);
    assert_false(iotc_tls_handshake_done(c));
    assert_true(iotc_tls_failed(c));
    if (strstr(iotc_tls_reason(c), want) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", iotc_tls_reason(c), want);
    /* A failed session stays failed. */
    assert_int_equal(iotc_tls_write(c, "x", 1), IOTC_ERR_TLS);
    assert_int_equal(iotc_tls_feed(c, "x", 1), IOTC_ERR_TLS);
    iotc_tls_free(c);
    srv_free(&v);
}

/* ---- tests ---------------------------------------------------------------- */

static void roundtrip(iotc_tls *c, srv *v)
{
    /* client -> server */
    assert_int_equal(iotc_tls_write(c, "hello broker", 12), IOTC_OK);
    to_server(c, v);
    char buf[64];
    size_t got = 0;
    assert_int_equal(SSL_read_ex(v->ssl, buf, sizeof buf, &got), 1);
    assert_int_equal(got, 12);
    assert_memory_equal(buf, "hello broker", 12);

    /* server -> client, big enough for several records */
    enum { BIG = 40000 };
    unsigned char *big = malloc(BIG), *back = malloc(BIG);
    assert_non_null(big);
    assert_non_null(back);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7u);
    size_t w = 0;
    assert_int_equal(SSL_write_ex(v->ssl, big, BIG, &w), 1);
    assert_int_equal(to_client(v, c), IOTC_OK);
    size_t total = 0;
    while (total < BIG) {
        size_t n = 0;
        assert_int_equal(iotc_tls_read(c, back + total, BIG - total, &n), IOTC_OK);
        if (n == 0)
            break;
        total += n;
    }
    assert_int_equal(total, BIG);
    assert_memory_equal(back, big, BIG);
    size_t n = 99;
    assert_int_equal(iotc_tls_read(c, buf, sizeof buf, &n), IOTC_OK);
    assert_int_equal(n, 0);
    free(big);
    free(back);

    /* close_notify from the server reads as IOTC_ERR_CLOSED */
    SSL_shutdown(v->ssl);
    assert_int_equal(to_client(v, c), IOTC_OK);
    assert_int_equal(iotc_tls_read(c, buf, sizeof buf, &n), IOTC_ERR_CLOSED);
    assert_int_equal(iotc_tls_close(c), IOTC_OK);
    const void *p;
    iotc_tls_pending_out(c, &p, &n);
    assert_true(n > 0); /* our close_notify */
    ERR_clear_error();
}

static void test_mtls_alpn_ok(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    srv v;
    srv_init(&v, "server.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    assert_false(iotc_tls_handshake_done(c));
    assert_null(iotc_tls_alpn(c));
    assert_int_equal(iotc_tls_write(c, "x", 1), IOTC_ERR_NOT_CONNECTED);
    const void *p;
    size_t n;
    iotc_tls_pending_out(c, &p, &n);
    assert_true(n > 0); /* the ClientHello is ready at once */

    assert_int_equal(pump(c, &v), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    assert_true(v.done);
    assert_string_equal(iotc_tls_alpn(c), "x-amzn-mqtt-ca");
    assert_string_equal(iotc_tls_version(c), "TLSv1.3");
    assert_string_equal(iotc_tls_reason(c), "");
    /* The server saw our client certificate. */
    X509 *peer = SSL_get1_peer_certificate(v.ssl);
    assert_non_null(peer);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "thing-01");
    X509_free(peer);
    roundtrip(c, &v);
    iotc_tls_free(c);
    srv_free(&v);
}

/* Everything from bytes, and the hostname an IP literal (IP SAN). */
static void test_pem_bytes_and_ip(void **state)
{
    (void)state;
    size_t cal, crl, kl;
    char *ca = slurp(pki("ca.crt"), &cal);
    char *cr = slurp(pki("client.crt"), &crl);
    char *k = slurp(pki("client.key"), &kl);
    iotc_tls_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.ca_pem = ca;
    cfg.ca_pem_len = cal;
    cfg.cert_pem = cr;
    cfg.cert_pem_len = crl;
    cfg.key_pem = k;
    cfg.key_pem_len = kl;
    cfg.alpn = "mqtt,x-amzn-mqtt-ca";
    cfg.hostname = "127.0.0.1";
    srv v;
    srv_init(&v, "server.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    free(ca); /* the session does not keep the caller's bytes */
    free(cr);
    free(k);
    assert_int_equal(pump(c, &v), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    assert_string_equal(iotc_tls_alpn(c), "x-amzn-mqtt-ca");
    roundtrip(c, &v);
    iotc_tls_free(c);
    srv_free(&v);

    cfg = mtls_cfg();
    cfg.hostname = "127.0.0.2";
    expect_fail(&cfg, "server.crt", ALPN_SELECT, "IP address mismatch");
}

static void test_ca_dir(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.ca_file = NULL;
    cfg.ca_dir = pki("cadir");
    cfg.alpn = NULL;
    srv v;
    srv_init(&v, "server.crt", ALPN_NONE);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    assert_int_equal(pump(c, &v), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    assert_null(iotc_tls_alpn(c));
    iotc_tls_free(c);
    srv_free(&v);
}

static void test_wrong_ca(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.ca_file = pki("ca2.crt");
    /* The server sends leaf + its CA: the chain ends in an untrusted root. */
    expect_fail(&cfg, "server.crt", ALPN_SELECT, "self-signed certificate in certificate chain");
    /* The server sends the leaf alone (as AWS IoT does with its own CA). */
    g_leaf_only = 1;
    expect_fail(&cfg, "server.crt", ALPN_SELECT, "unable to get local issuer certificate");
    g_leaf_only = 0;
}

static void test_hostname_mismatch(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.hostname = "wrong.example";
    expect_fail(&cfg, "server.crt", ALPN_SELECT, "hostname mismatch");
}

static void test_expired(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    expect_fail(&cfg, "expired.crt", ALPN_SELECT, "certificate has expired");
}

static void test_alpn_refused(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    /* A server that ignores ALPN completes the handshake; we refuse it. */
    expect_fail(&cfg, "server.crt", ALPN_NONE, "ALPN refused");
    /* A server that rejects it sends a fatal alert. */
    expect_fail(&cfg, "server.crt", ALPN_FATAL, "no application protocol");
}

static void test_insecure(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.ca_file = pki("ca2.crt");
    cfg.hostname = "wrong.example";
    cfg.insecure_skip_verify = 1;
    srv v;
    srv_init(&v, "expired.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    assert_int_equal(pump(c, &v), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    iotc_tls_free(c);
    srv_free(&v);
}

/* TLS 1.3: the client finishes first; the server's refusal of our
 * certificate arrives as an alert on the first read. */
static void test_client_cert_refused(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.cert_file = pki("rogue.crt");
    srv v;
    srv_init(&v, "server.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    iotc_err rc = pump(c, &v);
    assert_true(v.failed);
    char buf[16];
    size_t n;
    if (rc == IOTC_OK)
        rc = iotc_tls_read(c, buf, sizeof buf, &n);
    assert_int_equal(rc, IOTC_ERR_TLS);
    if (strstr(iotc_tls_reason(c), "unknown ca") == NULL)
        fail_msg("reason \"%s\"", iotc_tls_reason(c));
    iotc_tls_free(c);
    srv_free(&v);
}

static void test_key_mismatch(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.key_file = pki("other.key");
    iotc_tls *c = (iotc_tls *)&cfg;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_CREDENTIALS);
    assert_null(c);
    if (strstr(why.text, "does not match the certificate") == NULL)
        fail_msg("why \"%s\"", why.text);

    /* The same from bytes. */
    size_t crl, kl;
    char *cr = slurp(pki("client.crt"), &crl);
    char *k = slurp(pki("other.key"), &kl);
    cfg.cert_file = cfg.key_file = NULL;
    cfg.cert_pem = cr;
    cfg.cert_pem_len = crl;
    cfg.key_pem = k;
    cfg.key_pem_len = kl;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why.text, "does not match the certificate"));
    free(cr);
    free(k);
}

static void test_bad_config(void **state)
{
    (void)state;
    iotc_tls *c = NULL;
    iotc_tls_why why;
    iotc_tls_config cfg = mtls_cfg();
    cfg.hostname = NULL;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why.text, "hostname"));

    cfg = mtls_cfg();
    cfg.key_file = NULL;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_INVALID_ARG);

    cfg = mtls_cfg();
    cfg.alpn = "mqtt,,x";
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why.text, "ALPN"));

    cfg = mtls_cfg();
    cfg.ca_file = pki("no-such.crt");
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why.text, "CA"));

    cfg = mtls_cfg();
    cfg.key_file = pki("no-such.key");
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why.text, "no-such.key"));

    cfg = mtls_cfg();
    cfg.ca_file = NULL;
    cfg.ca_pem = "not a pem";
    cfg.ca_pem_len = 9;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_ERR_CREDENTIALS);

    assert_int_equal(iotc_tls_new(NULL, &c, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_tls_new(&cfg, NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_null(c);
    iotc_tls_free(NULL);
    assert_string_equal(iotc_tls_reason(NULL), "");
    assert_int_equal(ERR_peek_error(), 0); /* no stale errors left behind */
}

static void test_limits(void **state)
{
    (void)state;
    iotc_tls_config cfg = mtls_cfg();
    cfg.out_limit = 1000;
    cfg.in_limit = 1000;
    srv v;
    srv_init(&v, "server.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    assert_int_equal(pump(c, &v), IOTC_OK);
    to_server(c, &v);
    /* Let the client process the server's TLS 1.3 session tickets, which
     * otherwise sit in its input and count against in_limit. */
    char out[800];
    size_t n = 0;
    assert_int_equal(iotc_tls_read(c, out, sizeof out, &n), IOTC_OK);
    assert_int_equal(n, 0);
    char data[700];
    memset(data, 'a', sizeof data);
    assert_int_equal(iotc_tls_write(c, data, sizeof data), IOTC_OK);
    assert_int_equal(iotc_tls_write(c, data, sizeof data), IOTC_ERR_BUSY);
    to_server(c, &v); /* drained */
    assert_int_equal(iotc_tls_write(c, data, sizeof data), IOTC_OK);

    /* Input: an empty buffer takes any chunk, a full one refuses. */
    size_t w;
    assert_int_equal(SSL_write_ex(v.ssl, data, sizeof data, &w), 1);
    unsigned char rec[2048];
    int r = BIO_read(v.out, rec, sizeof rec);
    assert_true(r > 0);
    assert_int_equal(iotc_tls_feed(c, rec, (size_t)r), IOTC_OK);
    assert_int_equal(iotc_tls_feed(c, rec, (size_t)r), IOTC_ERR_BUSY);
    assert_int_equal(iotc_tls_read(c, out, sizeof out, &n), IOTC_OK);
    assert_int_equal(n, sizeof data);
    iotc_tls_free(c);
    srv_free(&v);
}

/* ---- PKCS#12 client identity ------------------------------------------------ */

static iotc_tls_config p12_cfg(const char *file, const char *password)
{
    iotc_tls_config cfg = mtls_cfg();
    cfg.cert_file = cfg.key_file = NULL;
    cfg.pkcs12_file = file ? pki(file) : NULL;
    cfg.pkcs12_password = password;
    return cfg;
}

/* Handshakes with `cfg` and checks the certificate the server received:
 * its CN and how many chain certificates came after the leaf. */
static void p12_handshake(const iotc_tls_config *cfg, const char *cn_want, int chain_want,
                          int data)
{
    srv v;
    srv_init(&v, "server.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    iotc_err rc = iotc_tls_new(cfg, &c, &why);
    if (rc != IOTC_OK)
        fail_msg("iotc_tls_new: %d: %s", rc, why.text);
    assert_int_equal(pump(c, &v), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    assert_true(v.done);
    X509 *peer = SSL_get1_peer_certificate(v.ssl);
    assert_non_null(peer);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, cn_want);
    X509_free(peer);
    /* On the server side the peer chain excludes the leaf. */
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(v.ssl);
    assert_int_equal(sent ? sk_X509_num(sent) : 0, chain_want);
    if (data)
        roundtrip(c, &v);
    iotc_tls_free(c);
    srv_free(&v);
}

static void expect_new_fails(const iotc_tls_config *cfg, iotc_err want_rc, const char *want1,
                             const char *want2)
{
    iotc_tls *c = (iotc_tls *)cfg; /* must come back NULL */
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(cfg, &c, &why), want_rc);
    assert_null(c);
    if (strstr(why.text, want1) == NULL || (want2 != NULL && strstr(why.text, want2) == NULL))
        fail_msg("why \"%s\" lacks \"%s\" or \"%s\"", why.text, want1, want2 ? want2 : "");
    assert_int_equal(ERR_peek_error(), 0); /* no stale errors left behind */
}

static void test_pkcs12_file(void **state)
{
    (void)state;
    /* The bundle holds the CA too: it is sent as the chain (harmless, and
     * what `-certfile` bundles from device vendors look like). */
    iotc_tls_config cfg = p12_cfg("client.p12", "s3cret");
    p12_handshake(&cfg, "thing-01", 1, 1);

    /* An empty password, given as NULL or as "".  This bundle has no CA;
     * OpenSSL completes a chain-less identity from the trust store (as it
     * does for cert_file), so the CA is sent all the same. */
    cfg = p12_cfg("nopass.p12", NULL);
    p12_handshake(&cfg, "thing-01", 1, 0);
    cfg = p12_cfg("nopass.p12", "");
    p12_handshake(&cfg, "thing-01", 1, 0);

    /* No MAC (-nomac): OpenSSL 3.0's PKCS12_parse alone refuses these. */
    cfg = p12_cfg("nomac.p12", "s3cret");
    p12_handshake(&cfg, "thing-01", 1, 0);
}

/* From DER bytes, freed before the handshake; the intermediate that signed
 * thing-02 is only in the bundle, so the server's verification succeeds
 * only if the bundle's extra certificates are sent as the chain. */
static void test_pkcs12_der_chain(void **state)
{
    (void)state;
    size_t len;
    char *der = slurp(pki("chain.p12"), &len);
    iotc_tls_config cfg = p12_cfg(NULL, "s3cret");
    cfg.pkcs12_der = der;
    cfg.pkcs12_der_len = len;
    srv v;
    srv_init(&v, "server.crt", ALPN_SELECT);
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    memset(der, 0, len); /* the session does not keep the caller's bytes */
    free(der);
    assert_int_equal(pump(c, &v), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    assert_true(v.done);
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(v.ssl); /* without the leaf */
    assert_non_null(sent);
    assert_int_equal(sk_X509_num(sent), 1);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(sk_X509_value(sent, 0)), NID_commonName,
                              cn, sizeof cn);
    assert_string_equal(cn, "iotc-test-intermediate");
    roundtrip(c, &v);
    iotc_tls_free(c);
    srv_free(&v);

    /* The same bundle from its file. */
    cfg = p12_cfg("chain.p12", "s3cret");
    p12_handshake(&cfg, "thing-02", 1, 0);
}

static void test_pkcs12_wrong_password(void **state)
{
    (void)state;
    iotc_tls_config cfg = p12_cfg("client.p12", "wrong");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, pki("client.p12"),
                     "mac verify failure (wrong password?)");
    assert_non_null(strstr(pki("client.p12"), "/client.p12"));
    /* No password for a bundle that has one. */
    cfg.pkcs12_password = NULL;
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "PKCS#12 file", "wrong password?");
    /* A password for a bundle that has none. */
    cfg = p12_cfg("nopass.p12", "s3cret");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "PKCS#12 file", "wrong password?");
    /* Without a MAC only the decryption can tell. */
    cfg = p12_cfg("nomac.p12", "wrong");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "nomac.p12: cannot decrypt",
                     "wrong password?");

    size_t len;
    char *der = slurp(pki("client.p12"), &len);
    cfg = p12_cfg(NULL, "wrong");
    cfg.pkcs12_der = der;
    cfg.pkcs12_der_len = len;
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "PKCS#12 bytes: mac verify failure",
                     "wrong password?");
    free(der);
}

static void test_pkcs12_garbage(void **state)
{
    (void)state;
    iotc_tls_config cfg = p12_cfg("garbage.p12", "s3cret");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, pki("garbage.p12"), "not a PKCS#12 bundle");

    cfg = p12_cfg("no-such.p12", "s3cret");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, pki("no-such.p12"), "cannot open");

    /* A PEM file is not a bundle either (a common mix-up). */
    cfg = p12_cfg("client.crt", "s3cret");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "client.crt", "not a PKCS#12 bundle");

    cfg = p12_cfg("nokey.p12", "s3cret");
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "nokey.p12", "holds no private key");

    /* Truncated DER: a real bundle cut in half. */
    size_t len;
    char *der = slurp(pki("client.p12"), &len);
    cfg = p12_cfg(NULL, "s3cret");
    cfg.pkcs12_der = der;
    cfg.pkcs12_der_len = len / 2;
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "PKCS#12 bytes", "not a PKCS#12 bundle");
    cfg.pkcs12_der = "\x30\x03\x02\x01\x03";
    cfg.pkcs12_der_len = 5;
    expect_new_fails(&cfg, IOTC_ERR_CREDENTIALS, "PKCS#12 bytes", NULL);
    free(der);
}

static void test_pkcs12_bad_args(void **state)
{
    (void)state;
    /* Every contradiction is refused before any file is read: the bundle
     * here does not even exist. */
    iotc_tls_config cfg = p12_cfg("no-such.p12", "s3cret");
    cfg.cert_file = pki("client.crt");
    expect_new_fails(&cfg, IOTC_ERR_INVALID_ARG, "PKCS#12", "not both");

    cfg = p12_cfg("no-such.p12", "s3cret");
    cfg.cert_file = pki("client.crt");
    cfg.key_file = pki("client.key");
    expect_new_fails(&cfg, IOTC_ERR_INVALID_ARG, "PKCS#12", "not both");

    cfg = p12_cfg("no-such.p12", "s3cret");
    cfg.key_pem = "-----BEGIN";
    cfg.key_pem_len = 10;
    expect_new_fails(&cfg, IOTC_ERR_INVALID_ARG, "PKCS#12", "not both");

    cfg = p12_cfg("no-such.p12", NULL);
    cfg.key_password = "s3cret"; /* the wrong field for a bundle */
    expect_new_fails(&cfg, IOTC_ERR_INVALID_ARG, "PKCS#12", "key_password");

    cfg = p12_cfg("no-such.p12", "s3cret");
    cfg.pkcs12_der = "x";
    cfg.pkcs12_der_len = 1;
    expect_new_fails(&cfg, IOTC_ERR_INVALID_ARG, "PKCS#12", "both as a file and as bytes");

    cfg = mtls_cfg();
    cfg.pkcs12_password = "s3cret";
    expect_new_fails(&cfg, IOTC_ERR_INVALID_ARG, "pkcs12_password", "without");
}

/* ---- against a real openssl s_server over TCP ------------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void nap_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Sends what the session has, then waits up to `ms` for bytes and feeds them. */
static iotc_err sock_pump(iotc_tls *c, int fd, int ms)
{
    const void *p;
    size_t n;
    iotc_tls_pending_out(c, &p, &n);
    while (n > 0) {
        ssize_t s = send(fd, p, n, MSG_NOSIGNAL);
        if (s <= 0)
            return IOTC_ERR_CONNECTION_LOST;
        iotc_tls_consume_out(c, (size_t)s);
        iotc_tls_pending_out(c, &p, &n);
    }
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, ms) <= 0)
        return IOTC_OK;
    unsigned char buf[4096];
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0)
        return IOTC_ERR_CONNECTION_LOST;
    return iotc_tls_feed(c, buf, (size_t)r);
}

static void test_s_server(void **state)
{
    (void)state;
    int port = free_port();
    char accept_arg[32];
    snprintf(accept_arg, sizeof accept_arg, "127.0.0.1:%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int log = open(pki("s_server.log"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        dup2(log, 1);
        dup2(log, 2);
        execlp("openssl", "openssl", "s_server", "-accept", accept_arg, "-cert",
               pki("server.crt"), "-key", pki("server.key"), "-CAfile", pki("ca.crt"),
               "-Verify", "1", "-verify_return_error", "-alpn", "x-amzn-mqtt-ca", "-rev",
               "-naccept", "1", (char *)NULL);
        _exit(127);
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) { /* up to 10 s for it to listen */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            fd = -1;
            nap_ms(50);
        }
    }
    assert_true(fd >= 0);

    iotc_tls_config cfg = mtls_cfg();
    iotc_tls *c = NULL;
    iotc_tls_why why;
    assert_int_equal(iotc_tls_new(&cfg, &c, &why), IOTC_OK);
    for (int i = 0; i < 100 && !iotc_tls_handshake_done(c); i++)
        assert_int_equal(sock_pump(c, fd, 100), IOTC_OK);
    assert_true(iotc_tls_handshake_done(c));
    assert_string_equal(iotc_tls_alpn(c), "x-amzn-mqtt-ca");

    assert_int_equal(iotc_tls_write(c, "hello from iotc\n", 16), IOTC_OK);
    char line[256];
    size_t have = 0;
    for (int i = 0; i < 100 && memchr(line, '\n', have) == NULL; i++) {
        assert_int_equal(sock_pump(c, fd, 100), IOTC_OK);
        size_t n = 0;
        assert_int_equal(iotc_tls_read(c, line + have, sizeof line - 1 - have, &n), IOTC_OK);
        have += n;
    }
    line[have] = '\0';
    /* -rev sends each line back reversed. */
    if (strstr(line, "ctoi morf olleh") == NULL)
        fail_msg("s_server answered \"%s\"", line);

    assert_int_equal(iotc_tls_close(c), IOTC_OK);
    (void)sock_pump(c, fd, 0);
    iotc_tls_free(c);
    close(fd);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    /* s_server logs the client certificate it verified. */
    size_t ll;
    char *log = slurp(pki("s_server.log"), &ll);
    log[ll < 16383 ? ll : 16383] = '\0';
    if (strstr(log, "thing-01") == NULL)
        fail_msg("s_server log lacks the client CN: %s", log);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtls_alpn_ok),
        cmocka_unit_test(test_pem_bytes_and_ip),
        cmocka_unit_test(test_ca_dir),
        cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_alpn_refused),
        cmocka_unit_test(test_insecure),
        cmocka_unit_test(test_client_cert_refused),
        cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_pkcs12_file),
        cmocka_unit_test(test_pkcs12_der_chain),
        cmocka_unit_test(test_pkcs12_wrong_password),
        cmocka_unit_test(test_pkcs12_garbage),
        cmocka_unit_test(test_pkcs12_bad_args),
        cmocka_unit_test(test_s_server),
    };
    return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
