/*
 * net/tls.c: a client TLS session over memory BIOs (see tls.h for why).
 *
 * The SSL object reads from `in` (what the caller feeds from the socket) and
 * writes to `out` (what the caller drains to the socket).  Both are memory
 * BIOs set to report "retry" rather than EOF when empty, so OpenSSL asks for
 * more bytes (SSL_ERROR_WANT_READ) instead of seeing a closed connection.
 * Each session owns its SSL_CTX: credentials are per connection and a
 * device has one or two connections, so sharing buys nothing.
 */
#include "net/tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

struct iotc_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in;                 /* socket -> SSL; owned by ssl */
    BIO *out;                /* SSL -> socket; owned by ssl */
    size_t out_limit;
    size_t in_limit;
    int verify;              /* 0 only with insecure_skip_verify */
    int done;                /* handshake completed and checked */
    int failed;
    int want_alpn;
    char alpn_offered[128];  /* for the "ALPN refused" reason only */
    char alpn_selected[256]; /* NUL-terminated copy of the server's choice */
    char why[IOTC_TLS_WHY_MAX];
};

static void set_why(char *dst, const char *fmt, const char *a, const char *b)
{
    /* Two string slots cover every message below and keep the format a
     * literal the compiler can check at each call.  A long path plus
     * OpenSSL's text can overflow; the cut is marked so that a reader does
     * not take the tail for the whole reason. */
    int n = snprintf(dst, IOTC_TLS_WHY_MAX, fmt, a ? a : "", b ? b : "");
    if (n >= IOTC_TLS_WHY_MAX)
        memcpy(dst + IOTC_TLS_WHY_MAX - 4, "...", 4);
}

/* The earliest OpenSSL error on this thread's queue as text (it names the
 * root cause; later entries are the callers that passed it up), then clears
 * the queue so it does not leak into an unrelated later call. */
static void ssl_err_text(char *buf, size_t cap, const char *fallback)
{
    unsigned long e = ERR_peek_error();
    if (e != 0)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "%s", fallback);
    ERR_clear_error();
}

static void why_ssl(char *why, const char *what)
{
    char detail[160];
    ssl_err_text(detail, sizeof detail, "no detail from OpenSSL");
    set_why(why, "%s: %s", what, detail);
}

/* Never prompt on a terminal for a key password (OpenSSL's default callback
 * does): hand over the configured password or fail the load. */
static int pw_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pw = u;
    if (pw == NULL || size <= 0)
        return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

static int has(const void *p, size_t len)
{
    return p != NULL && len > 0;
}

static BIO *mem_bio(const void *p, size_t len)
{
    if (len > INT_MAX)
        return NULL;
    return BIO_new_mem_buf(p, (int)len);
}

/* Every certificate in a PEM blob becomes a trust anchor (a bundle with the
 * right CA second must work, unlike lws's ca_mem which keeps only the first). */
static iotc_err load_ca_pem(SSL_CTX *ctx, const void *pem, size_t len, char *why)
{
    BIO *b = mem_bio(pem, len);
    if (b == NULL) {
        set_why(why, "CA PEM: cannot read the bytes%s%s", NULL, NULL);
        return IOTC_ERR_CREDENTIALS;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, pw_cb, NULL)) != NULL) {
        int ok = X509_STORE_add_cert(store, x);
        X509_free(x);
        if (!ok) {
            BIO_free(b);
            why_ssl(why, "CA PEM: cannot add a certificate");
            return IOTC_ERR_CREDENTIALS;
        }
        count++;
    }
    BIO_free(b);
    /* The loop ends on "no start line"; that is the normal end, not an error. */
    ERR_clear_error();
    if (count == 0) {
        set_why(why, "CA PEM: no certificate found%s%s", NULL, NULL);
        return IOTC_ERR_CREDENTIALS;
    }
    return IOTC_OK;
}

/* Leaf first, the rest of the blob is the chain sent to the server. */
static iotc_err load_cert_pem(SSL_CTX *ctx, const void *pem, size_t len, char *why)
{
    BIO *b = mem_bio(pem, len);
    if (b == NULL) {
        set_why(why, "client certificate PEM: cannot read the bytes%s%s", NULL, NULL);
        return IOTC_ERR_CREDENTIALS;
    }
    X509 *leaf = PEM_read_bio_X509(b, NULL, pw_cb, NULL);
    if (leaf == NULL) {
        BIO_free(b);
        why_ssl(why, "client certificate PEM: no certificate");
        return IOTC_ERR_CREDENTIALS;
    }
    int ok = SSL_CTX_use_certificate(ctx, leaf);
    X509_free(leaf);
    if (!ok) {
        BIO_free(b);
        why_ssl(why, "client certificate PEM: refused");
        return IOTC_ERR_CREDENTIALS;
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, pw_cb, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(ctx, x)) {
            X509_free(x);
            BIO_free(b);
            why_ssl(why, "client certificate PEM: bad chain certificate");
            return IOTC_ERR_CREDENTIALS;
        }
    }
    BIO_free(b);
    ERR_clear_error();
    return IOTC_OK;
}

/* SSL_CTX_use_PrivateKey* refuses a key that does not match the loaded
 * certificate (EC: an error; RSA may instead drop the certificate, which
 * SSL_CTX_check_private_key catches later).  Either way the caller gets the
 * same words, since a mismatched pair is the common provisioning mistake. */
static iotc_err key_refused(char *why, const char *source)
{
    unsigned long e = ERR_peek_error();
    int r = ERR_GET_REASON(e);
    int mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 &&
                   (r == X509_R_KEY_VALUES_MISMATCH || r == X509_R_KEY_TYPE_MISMATCH);
    char detail[160];
    ssl_err_text(detail, sizeof detail, "unreadable");
    if (mismatch)
        set_why(why, "client key does not match the certificate (%s): %s", source, detail);
    else
        set_why(why, "cannot load the client key %s: %s", source, detail);
    return IOTC_ERR_CREDENTIALS;
}

static iotc_err load_key_pem(SSL_CTX *ctx, const void *pem, size_t len, const char *pw,
                             char *why)
{
    BIO *b = mem_bio(pem, len);
    if (b == NULL) {
        set_why(why, "client key PEM: cannot read the bytes%s%s", NULL, NULL);
        return IOTC_ERR_CREDENTIALS;
    }
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, pw_cb, (void *)pw);
    BIO_free(b);
    if (k == NULL) {
        why_ssl(why, "client key PEM: cannot parse");
        return IOTC_ERR_CREDENTIALS;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, k);
    EVP_PKEY_free(k);
    if (!ok)
        return key_refused(why, "PEM");
    return IOTC_OK;
}

/* A PKCS#12 bundle read from `b`: its certificate and key become the
 * identity, every other certificate the chain.  `label` names the source in
 * each reason ("PKCS#12 file /x.p12").  A wrong password is the usual
 * mistake, so it gets its own words; OpenSSL only says "mac verify failure"
 * (or, for a bundle without a MAC, a decryption error). */
static iotc_err load_pkcs12(SSL_CTX *ctx, BIO *b, const char *label, const char *pw, char *why)
{
    char detail[160];
    PKCS12 *p12 = d2i_PKCS12_bio(b, NULL);
    if (p12 == NULL) {
        ssl_err_text(detail, sizeof detail, "unparsable");
        set_why(why, "%s: not a PKCS#12 bundle (%s)", label, detail);
        return IOTC_ERR_CREDENTIALS;
    }
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    ERR_clear_error();
    /* OpenSSL 3.0's PKCS12_parse insists on a MAC whenever the password is
     * not empty, so a bundle exported with -nomac would always read as
     * "wrong password".  Giving the in-memory copy a MAC made with the same
     * password lets the parse go on; a wrong password then shows up as a
     * failed decryption instead. */
    int nomac = !PKCS12_mac_present(p12);
    if (nomac && pw != NULL && pw[0] != '\0' &&
        !PKCS12_set_mac(p12, pw, -1, NULL, 0, PKCS12_DEFAULT_ITER, NULL)) {
        PKCS12_free(p12);
        ssl_err_text(detail, sizeof detail, "failed");
        set_why(why, "%s: cannot read a bundle without a MAC: %s", label, detail);
        return IOTC_ERR_CREDENTIALS;
    }
    int parsed = PKCS12_parse(p12, pw, &key, &leaf, &chain);
    PKCS12_free(p12);
    if (!parsed) {
        /* The telling entry is not always the first one: walk them all. */
        unsigned long first = ERR_peek_error(), e;
        int mac = 0, crypt = 0;
        while ((e = ERR_get_error()) != 0) {
            if (ERR_GET_LIB(e) != ERR_LIB_PKCS12)
                continue;
            mac |= ERR_GET_REASON(e) == PKCS12_R_MAC_VERIFY_FAILURE;
            crypt |= ERR_GET_REASON(e) == PKCS12_R_PKCS12_CIPHERFINAL_ERROR;
        }
        if (first != 0)
            ERR_error_string_n(first, detail, sizeof detail);
        else
            snprintf(detail, sizeof detail, "no detail from OpenSSL");
        if (mac)
            set_why(why, "%s: mac verify failure (wrong password?)%s", label, NULL);
        else if (crypt || (nomac && strstr(detail, "unsupported") == NULL))
            set_why(why, "%s: cannot decrypt (wrong password?): %s", label, detail);
        else if (strstr(detail, "unsupported") != NULL)
            set_why(why, "%s: unsupported algorithm (a legacy RC2/3DES bundle? re-export it "
                         "with OpenSSL 3's defaults): %s", label, detail);
        else
            set_why(why, "%s: cannot parse: %s", label, detail);
        return IOTC_ERR_CREDENTIALS;
    }
    iotc_err rc = IOTC_OK;
    if (leaf == NULL || key == NULL) {
        /* Without a key PKCS12_parse cannot tell the leaf, so it files every
         * certificate as "other": test the key first for the right words. */
        set_why(why, "%s: %s", label,
                key == NULL ? "holds no private key" : "holds no certificate for its key");
        rc = IOTC_ERR_CREDENTIALS;
    } else if (!SSL_CTX_use_certificate(ctx, leaf)) {
        ssl_err_text(detail, sizeof detail, "refused");
        set_why(why, "%s: certificate refused: %s", label, detail);
        rc = IOTC_ERR_CREDENTIALS;
    } else if (!SSL_CTX_use_PrivateKey(ctx, key)) {
        rc = key_refused(why, label);
    } else {
        for (int i = 0; i < sk_X509_num(chain); i++) {
            /* add1: the stack keeps its references and is freed below. */
            if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i))) {
                ssl_err_text(detail, sizeof detail, "refused");
                set_why(why, "%s: bad chain certificate: %s", label, detail);
                rc = IOTC_ERR_CREDENTIALS;
                break;
            }
        }
    }
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

static iotc_err load_pkcs12_source(SSL_CTX *ctx, const iotc_tls_config *cfg, char *why)
{
    char label[IOTC_TLS_WHY_MAX / 2];
    BIO *b;
    if (cfg->pkcs12_file != NULL) {
        snprintf(label, sizeof label, "PKCS#12 file %s", cfg->pkcs12_file);
        b = BIO_new_file(cfg->pkcs12_file, "rb");
        if (b == NULL) {
            char detail[160];
            ssl_err_text(detail, sizeof detail, "unreadable");
            set_why(why, "%s: cannot open (%s)", label, detail);
            return IOTC_ERR_CREDENTIALS;
        }
    } else {
        snprintf(label, sizeof label, "PKCS#12 bytes");
        b = mem_bio(cfg->pkcs12_der, cfg->pkcs12_der_len);
        if (b == NULL) {
            set_why(why, "%s: cannot read the bytes%s", label, NULL);
            return IOTC_ERR_CREDENTIALS;
        }
    }
    iotc_err rc = load_pkcs12(ctx, b, label, cfg->pkcs12_password, why);
    BIO_free(b);
    return rc;
}

/* The client identity settings, checked before any file is read so that a
 * contradictory config is reported as such rather than as whichever file
 * happened to be unreadable first. */
static iotc_err check_identity(const iotc_tls_config *cfg, char *why)
{
    int cert = cfg->cert_file != NULL || has(cfg->cert_pem, cfg->cert_pem_len);
    int key = cfg->key_file != NULL || has(cfg->key_pem, cfg->key_pem_len);
    int p12 = cfg->pkcs12_file != NULL || has(cfg->pkcs12_der, cfg->pkcs12_der_len);
    if (p12 && (cert || key || cfg->key_password != NULL)) {
        set_why(why, "a PKCS#12 bundle replaces the client certificate and key: give "
                     "pkcs12_* or cert_*/key_*/key_password, not both%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    if (cfg->pkcs12_file != NULL && has(cfg->pkcs12_der, cfg->pkcs12_der_len)) {
        set_why(why, "PKCS#12 bundle given both as a file and as bytes%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    if (!p12 && cfg->pkcs12_password != NULL) {
        set_why(why, "pkcs12_password given without a PKCS#12 bundle%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    if (cert != key) {
        set_why(why, "client certificate and key must be given together%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    if ((cfg->cert_file != NULL && has(cfg->cert_pem, cfg->cert_pem_len)) ||
        (cfg->key_file != NULL && has(cfg->key_pem, cfg->key_pem_len))) {
        set_why(why, "client certificate or key given both as a file and as bytes%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    return IOTC_OK;
}

/* "a,b" -> "\x01a\x01b" (the wire form).  Empty or over-long names are
 * refused here rather than producing a ClientHello the server rejects. */
static iotc_err alpn_wire(const char *list, unsigned char **wire, size_t *wlen)
{
    size_t n = strlen(list);
    if (n == 0 || n > 1024)
        return IOTC_ERR_INVALID_ARG;
    unsigned char *w = malloc(n + 1);
    if (w == NULL)
        return IOTC_ERR_NOMEM;
    size_t o = 0;
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == 0 || l > 255) {
            free(w);
            return IOTC_ERR_INVALID_ARG;
        }
        w[o++] = (unsigned char)l;
        memcpy(w + o, p, l);
        o += l;
        if (c == NULL)
            break;
        p = c + 1;
    }
    *wire = w;
    *wlen = o;
    return IOTC_OK;
}

static int is_ip_literal(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static iotc_err setup_ctx(iotc_tls *s, const iotc_tls_config *cfg, char *why)
{
    SSL_CTX *ctx = s->ctx;
    /* AWS IoT and every current broker speak TLS 1.2 or 1.3; older is unsafe. */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        why_ssl(why, "cannot set the minimum TLS version");
        return IOTC_ERR_TLS;
    }
    SSL_CTX_set_default_passwd_cb(ctx, pw_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)cfg->key_password);

    iotc_err rc = check_identity(cfg, why);
    if (rc != IOTC_OK)
        return rc;
    if (s->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int any = 0;
        if (cfg->ca_file != NULL || cfg->ca_dir != NULL) {
            any = 1;
            if (!SSL_CTX_load_verify_locations(ctx, cfg->ca_file, cfg->ca_dir)) {
                why_ssl(why, "cannot load the CA file or directory");
                return IOTC_ERR_CREDENTIALS;
            }
        }
        if (has(cfg->ca_pem, cfg->ca_pem_len)) {
            any = 1;
            if ((rc = load_ca_pem(ctx, cfg->ca_pem, cfg->ca_pem_len, why)) != IOTC_OK)
                return rc;
        }
        if (!any && !SSL_CTX_set_default_verify_paths(ctx)) {
            why_ssl(why, "cannot load the system CA store");
            return IOTC_ERR_CREDENTIALS;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    /* check_identity() made sure cert and key come together, and not with
     * a bundle. */
    int cert = cfg->cert_file != NULL || has(cfg->cert_pem, cfg->cert_pem_len);
    int p12 = cfg->pkcs12_file != NULL || has(cfg->pkcs12_der, cfg->pkcs12_der_len);
    if (p12 && (rc = load_pkcs12_source(ctx, cfg, why)) != IOTC_OK)
        return rc;
    if (cert) {
        if (cfg->cert_file != NULL) {
            if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file)) {
                char detail[160];
                ssl_err_text(detail, sizeof detail, "unreadable");
                set_why(why, "cannot load the client certificate %s: %s", cfg->cert_file, detail);
                return IOTC_ERR_CREDENTIALS;
            }
        } else if ((rc = load_cert_pem(ctx, cfg->cert_pem, cfg->cert_pem_len, why)) != IOTC_OK) {
            return rc;
        }
        if (cfg->key_file != NULL) {
            if (!SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM))
                return key_refused(why, cfg->key_file);
        } else if ((rc = load_key_pem(ctx, cfg->key_pem, cfg->key_pem_len, cfg->key_password,
                                      why)) != IOTC_OK) {
            return rc;
        }
    }
    /* SSL_CTX_use_PrivateKey already refuses most mismatches; this makes
     * the check explicit so the reason is always the same words.  A bundle
     * is checked too: PKCS12_parse pairs them by localKeyID, not by key. */
    if ((cert || p12) && !SSL_CTX_check_private_key(ctx)) {
        char detail[160];
        ssl_err_text(detail, sizeof detail, "");
        set_why(why, "client key does not match the certificate: %s%s", detail, NULL);
        return IOTC_ERR_CREDENTIALS;
    }
    /* The key password is needed only while loading; do not keep a pointer
     * to caller memory that may be gone later. */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);

    if (cfg->alpn != NULL) {
        unsigned char *wire = NULL;
        size_t wlen = 0;
        rc = alpn_wire(cfg->alpn, &wire, &wlen);
        if (rc != IOTC_OK) {
            set_why(why, rc == IOTC_ERR_NOMEM ? "out of memory%s%s" : "bad ALPN list \"%s\"%s",
                    rc == IOTC_ERR_NOMEM ? NULL : cfg->alpn, NULL);
            return rc;
        }
        /* Note the inverted convention: 0 is success here. */
        int bad = SSL_CTX_set_alpn_protos(ctx, wire, (unsigned int)wlen);
        free(wire);
        if (bad) {
            why_ssl(why, "cannot set ALPN");
            return IOTC_ERR_TLS;
        }
        s->want_alpn = 1;
        snprintf(s->alpn_offered, sizeof s->alpn_offered, "%s", cfg->alpn);
    }
    return IOTC_OK;
}

static iotc_err setup_ssl(iotc_tls *s, const iotc_tls_config *cfg, char *why)
{
    s->ssl = SSL_new(s->ctx);
    if (s->ssl == NULL) {
        why_ssl(why, "SSL_new failed");
        return IOTC_ERR_NOMEM;
    }
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    if (s->in == NULL || s->out == NULL) {
        BIO_free(s->in);
        BIO_free(s->out);
        s->in = s->out = NULL;
        set_why(why, "out of memory%s%s", NULL, NULL);
        return IOTC_ERR_NOMEM;
    }
    /* Empty means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(s->in, -1);
    BIO_set_mem_eof_return(s->out, -1);
    SSL_set_bio(s->ssl, s->in, s->out);
    SSL_set_connect_state(s->ssl);

    const char *h = cfg->hostname;
    if (h != NULL) {
        int ip = is_ip_literal(h);
        /* SNI carries DNS names only (RFC 6066 section 3). */
        if (!ip && !SSL_set_tlsext_host_name(s->ssl, h)) {
            why_ssl(why, "cannot set SNI");
            return IOTC_ERR_INVALID_ARG;
        }
        if (s->verify) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
            X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, h)
                        : X509_VERIFY_PARAM_set1_host(vp, h, 0);
            if (!ok) {
                why_ssl(why, "cannot set the host name to verify");
                return IOTC_ERR_INVALID_ARG;
            }
        }
    }
    return IOTC_OK;
}

static iotc_err fail(iotc_tls *s, int ssl_error)
{
    s->failed = 1;
    long vr = SSL_get_verify_result(s->ssl);
    if (s->verify && vr != X509_V_OK) {
        char code[24];
        snprintf(code, sizeof code, "%ld", vr);
        set_why(s->why, "server certificate verify failed: %s (X509 error %s)",
                X509_verify_cert_error_string(vr), code);
        ERR_clear_error();
    } else if (ssl_error == SSL_ERROR_ZERO_RETURN) {
        set_why(s->why, "the peer closed the TLS session during the handshake%s%s", NULL, NULL);
        ERR_clear_error();
    } else if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        set_why(s->why, "TLS failed: unexpected end of stream%s%s", NULL, NULL);
    } else {
        why_ssl(s->why, s->done ? "TLS session failed" : "TLS handshake failed");
    }
    return IOTC_ERR_TLS;
}

/* Advances the handshake as far as the input allows. */
static iotc_err step(iotc_tls *s)
{
    if (s->failed)
        return IOTC_ERR_TLS;
    if (s->done)
        return IOTC_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r != 1) {
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return IOTC_OK;
        return fail(s, e);
    }
    const unsigned char *sel = NULL;
    unsigned int sl = 0;
    SSL_get0_alpn_selected(s->ssl, &sel, &sl);
    if (s->want_alpn && sl == 0) {
        /* A server that does not speak any offered protocol may simply not
         * answer (s_server does); AWS then treats the bytes as another
         * protocol, so refuse here with a clear reason. */
        s->failed = 1;
        set_why(s->why, "ALPN refused: the server selected none of \"%s\"%s", s->alpn_offered,
                NULL);
        return IOTC_ERR_TLS;
    }
    if (sl > 0) /* sel is NULL when none was selected; memcpy wants non-NULL */
        memcpy(s->alpn_selected, sel, sl); /* sl <= 255 < sizeof alpn_selected */
    s->alpn_selected[sl] = '\0';
    s->done = 1;
    return IOTC_OK;
}

/* The client SSL_CTX of a session (or of lws's WSS client): verification,
 * trust, identity and ALPN from `cfg`.  On failure s->ctx may be set and is
 * the caller's to free. */
static iotc_err new_ctx(iotc_tls *s, const iotc_tls_config *cfg, char *why)
{
    s->verify = !cfg->insecure_skip_verify;
    ERR_clear_error();
    s->ctx = SSL_CTX_new(TLS_client_method());
    if (s->ctx == NULL) {
        why_ssl(why, "SSL_CTX_new failed");
        return IOTC_ERR_NOMEM;
    }
    return setup_ctx(s, cfg, why);
}

iotc_err iotc_tls_new(const iotc_tls_config *cfg, iotc_tls **out, iotc_tls_why *why)
{
    char dummy[IOTC_TLS_WHY_MAX];
    char *w = why ? why->text : dummy;
    w[0] = '\0';
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL) {
        set_why(w, "NULL config or output%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    if (!cfg->insecure_skip_verify && (cfg->hostname == NULL || cfg->hostname[0] == '\0')) {
        set_why(w, "a hostname is required to verify the server certificate%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    if (cfg->hostname != NULL && cfg->hostname[0] == '\0') {
        set_why(w, "empty hostname%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    iotc_tls *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_why(w, "out of memory%s%s", NULL, NULL);
        return IOTC_ERR_NOMEM;
    }
    s->out_limit = cfg->out_limit ? cfg->out_limit : IOTC_TLS_DEFAULT_OUT_LIMIT;
    s->in_limit = cfg->in_limit ? cfg->in_limit : IOTC_TLS_DEFAULT_IN_LIMIT;
    iotc_err rc = new_ctx(s, cfg, w);
    if (rc == IOTC_OK && (rc = setup_ssl(s, cfg, w)) == IOTC_OK) {
        /* Queue the ClientHello now so the caller can send it at once. */
        if ((rc = step(s)) != IOTC_OK)
            snprintf(w, IOTC_TLS_WHY_MAX, "%s", s->why);
    }
    ERR_clear_error();
    if (rc != IOTC_OK) {
        iotc_tls_free(s);
        return rc;
    }
    *out = s;
    return IOTC_OK;
}

iotc_err iotc_tls_ctx_new(const iotc_tls_config *cfg, void **out, iotc_tls_why *why)
{
    char dummy[IOTC_TLS_WHY_MAX];
    char *w = why ? why->text : dummy;
    w[0] = '\0';
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL) {
        set_why(w, "NULL config or output%s%s", NULL, NULL);
        return IOTC_ERR_INVALID_ARG;
    }
    /* The same checks and loading as a session's, on a context alone. */
    iotc_tls s;
    memset(&s, 0, sizeof s);
    iotc_err rc = new_ctx(&s, cfg, w);
    ERR_clear_error();
    if (rc != IOTC_OK) {
        SSL_CTX_free(s.ctx);
        return rc;
    }
    *out = s.ctx;
    return IOTC_OK;
}

void iotc_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

void iotc_tls_free(iotc_tls *s)
{
    if (s == NULL)
        return;
    SSL_free(s->ssl); /* frees the BIOs it was given */
    SSL_CTX_free(s->ctx);
    free(s);
}

iotc_err iotc_tls_feed(iotc_tls *s, const void *cipher, size_t len)
{
    if (s == NULL || (cipher == NULL && len > 0))
        return IOTC_ERR_INVALID_ARG;
    if (s->failed)
        return IOTC_ERR_TLS;
    if (len > 0) {
        size_t pend = BIO_ctrl_pending(s->in);
        /* An empty buffer takes any one chunk, so a caller whose read is
         * bigger than the limit cannot be stuck. */
        if (pend > 0 && len > s->in_limit - (pend < s->in_limit ? pend : s->in_limit))
            return IOTC_ERR_BUSY;
        const unsigned char *p = cipher;
        size_t left = len;
        while (left > 0) {
            int chunk = left > INT_MAX ? INT_MAX : (int)left;
            int wrote = BIO_write(s->in, p, chunk);
            if (wrote <= 0) {
                ERR_clear_error();
                return IOTC_ERR_NOMEM;
            }
            p += wrote;
            left -= (size_t)wrote;
        }
    }
    return step(s);
}

iotc_err iotc_tls_read(iotc_tls *s, void *buf, size_t cap, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (s == NULL || n == NULL || (buf == NULL && cap > 0))
        return IOTC_ERR_INVALID_ARG;
    iotc_err rc = step(s);
    if (rc != IOTC_OK)
        return rc;
    if (!s->done || cap == 0)
        return IOTC_OK;
    ERR_clear_error();
    size_t got = 0;
    if (SSL_read_ex(s->ssl, buf, cap, &got) == 1) {
        *n = got;
        return IOTC_OK;
    }
    int e = SSL_get_error(s->ssl, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return IOTC_OK;
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return IOTC_ERR_CLOSED;
    }
    return fail(s, e);
}

iotc_err iotc_tls_write(iotc_tls *s, const void *plain, size_t len)
{
    if (s == NULL || (plain == NULL && len > 0))
        return IOTC_ERR_INVALID_ARG;
    if (s->failed)
        return IOTC_ERR_TLS;
    if (!s->done)
        return IOTC_ERR_NOT_CONNECTED;
    if (len == 0)
        return IOTC_OK;
    size_t pend = BIO_ctrl_pending(s->out);
    if (pend > 0 && len > s->out_limit - (pend < s->out_limit ? pend : s->out_limit))
        return IOTC_ERR_BUSY;
    ERR_clear_error();
    size_t w = 0;
    /* The output is an unbounded memory BIO, so SSL_write_ex takes it all
     * (no partial writes); the limit above is what bounds it. */
    if (SSL_write_ex(s->ssl, plain, len, &w) != 1 || w != len)
        return fail(s, SSL_get_error(s->ssl, 0));
    return IOTC_OK;
}

void iotc_tls_pending_out(iotc_tls *s, const void **ptr, size_t *len)
{
    if (ptr != NULL)
        *ptr = NULL;
    if (len != NULL)
        *len = 0;
    if (s == NULL || ptr == NULL || len == NULL)
        return;
    char *p = NULL;
    long l = BIO_get_mem_data(s->out, &p);
    if (l > 0) {
        *ptr = p;
        *len = (size_t)l;
    }
}

void iotc_tls_consume_out(iotc_tls *s, size_t n)
{
    if (s == NULL)
        return;
    /* A memory BIO drops read bytes by moving its read pointer; reading into
     * a small scratch buffer is how to ask for that. */
    unsigned char scratch[512];
    while (n > 0) {
        int chunk = n > sizeof scratch ? (int)sizeof scratch : (int)n;
        int r = BIO_read(s->out, scratch, chunk);
        if (r <= 0)
            break;
        n -= (size_t)r;
    }
}

iotc_err iotc_tls_close(iotc_tls *s)
{
    if (s == NULL)
        return IOTC_ERR_INVALID_ARG;
    if (s->failed)
        return IOTC_ERR_TLS;
    if (!s->done)
        return IOTC_ERR_NOT_CONNECTED;
    ERR_clear_error();
    if (SSL_shutdown(s->ssl) < 0) {
        /* With memory BIOs a "want read" for the peer's close_notify is
         * normal; our alert is already in the output. */
        ERR_clear_error();
    }
    return IOTC_OK;
}

int iotc_tls_handshake_done(const iotc_tls *s)
{
    return s != NULL && s->done && !s->failed;
}

int iotc_tls_failed(const iotc_tls *s)
{
    return s != NULL && s->failed;
}

const char *iotc_tls_alpn(const iotc_tls *s)
{
    if (s == NULL || !s->done || s->alpn_selected[0] == '\0')
        return NULL;
    return s->alpn_selected;
}

const char *iotc_tls_version(const iotc_tls *s)
{
    if (s == NULL || !s->done)
        return NULL;
    return SSL_get_version(s->ssl);
}

const char *iotc_tls_reason(const iotc_tls *s)
{
    if (s == NULL || !s->failed)
        return "";
    return s->why;
}
