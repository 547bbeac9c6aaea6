/*
 * net/tls.h: a client TLS session over memory BIOs.
 *
 * Why it exists: libwebsockets 4.1.6 cannot open a raw TLS client connection
 * (see DESIGN.md, "decisions forced by it"), so for MQTT over TLS lws carries
 * plain TCP and this module runs OpenSSL itself.  It owns no socket and knows
 * nothing of lws: the caller moves ciphertext between the socket and the
 * session, and plaintext between the session and the MQTT codec.
 *
 *   socket --bytes--> iotc_tls_feed()        iotc_tls_read()  --plaintext--> codec
 *   socket <--bytes-- iotc_tls_pending_out() iotc_tls_write() <--plaintext-- codec
 *                     iotc_tls_consume_out()
 *
 * After every feed, read or write the caller drains iotc_tls_pending_out(),
 * because the handshake, alerts and TLS 1.3 post-handshake messages produce
 * ciphertext too.  Memory is bounded: feed and write refuse with
 * IOTC_ERR_BUSY when the unprocessed input or the undrained output is over
 * its limit, so a slow peer or a slow socket cannot grow the buffers.
 *
 * Credentials: trust anchors from a file, a directory or PEM bytes; the
 * client identity from PEM (certificate and key, files or bytes) or from a
 * PKCS#12 bundle (file or bytes).  All are loaded and checked in
 * iotc_tls_new(), so a bad file fails there and not in the handshake.
 *
 * Never prints or aborts.  A session is used by one thread at a time.
 */
#ifndef IOTC_NET_TLS_H
#define IOTC_NET_TLS_H

#include <stddef.h>

#include "iotc/error.h"

/* Room for one failure reason, including its NUL. */
#define IOTC_TLS_WHY_MAX 256

/* Defaults for the buffer limits (0 in the config means these). */
#define IOTC_TLS_DEFAULT_OUT_LIMIT ((size_t)256 * 1024)
#define IOTC_TLS_DEFAULT_IN_LIMIT ((size_t)64 * 1024)

typedef struct iotc_tls_config {
    /* Trust anchors.  Any combination of the three; when none is given the
     * system's default store is used.  When one is given the system store is
     * NOT added, so a device pins its broker's CA. */
    const char *ca_file;     /* PEM file, may hold several certificates */
    const char *ca_dir;      /* a c_rehash'ed directory */
    const void *ca_pem;      /* PEM bytes, every certificate is trusted */
    size_t ca_pem_len;

    /* Client identity for mutual TLS, one of two forms (never both: mixing
     * them is IOTC_ERR_INVALID_ARG, since which one wins would be a guess).
     *
     * (a) A certificate (chain) and its key, each from a file or PEM bytes,
     * not both.  Either none or both. */
    const char *cert_file;   /* leaf first, then intermediates */
    const void *cert_pem;
    size_t cert_pem_len;
    const char *key_file;
    const void *key_pem;
    size_t key_pem_len;
    const char *key_password; /* for an encrypted key; NULL: none (never prompts) */

    /* (b) A PKCS#12 bundle (.p12/.pfx, DER) from a file or bytes, not both:
     * its certificate and key are the identity, and every other certificate
     * in it is sent as the chain (in the bundle's order).  What AWS IoT's
     * SDKs call mtls_with_pkcs12.  The password decrypts the bundle and
     * checks its MAC; NULL tries the empty and the absent password (as
     * `openssl pkcs12 -passin pass:` does) and never prompts.  Bundles
     * without a MAC (-nomac) work too.  Legacy bundles (RC2-40/3DES, the
     * pre-OpenSSL-3 default) need OpenSSL's legacy provider, which this
     * module does not load: the reason says so; re-export them.
     * key_password belongs to (a) and is refused with a bundle; a
     * pkcs12_password without a bundle is refused too (a forgotten field).
     * The caller keeps the bytes; they are parsed in iotc_tls_new(). */
    const char *pkcs12_file;
    const void *pkcs12_der;
    size_t pkcs12_der_len;
    const char *pkcs12_password;

    /* ALPN protocols offered, comma-separated ("x-amzn-mqtt-ca").  When set,
     * the handshake fails unless the server selects one of them. */
    const char *alpn;

    /* The name the server certificate must carry, and the SNI sent.  A DNS
     * name is matched against DNS SANs; an IPv4/IPv6 literal against IP SANs
     * (and is not sent as SNI, RFC 6066).  Required unless insecure. */
    const char *hostname;

    /* Skip all certificate verification.  For tests only. */
    int insecure_skip_verify;

    /* Buffer limits in bytes; 0 means the defaults above. */
    size_t out_limit;        /* undrained ciphertext before write refuses */
    size_t in_limit;         /* unprocessed ciphertext before feed refuses */
} iotc_tls_config;

/* A failure reason for iotc_tls_new(), which has no session to hold it. */
typedef struct iotc_tls_why {
    char text[IOTC_TLS_WHY_MAX];
} iotc_tls_why;

typedef struct iotc_tls iotc_tls;

/* Builds a session from `cfg` (copied; the caller's strings and bytes may go
 * away after the call) and starts the handshake: the ClientHello is waiting
 * in iotc_tls_pending_out() on return.
 * Returns IOTC_OK, IOTC_ERR_INVALID_ARG (bad or inconsistent settings),
 * IOTC_ERR_CREDENTIALS (a CA, certificate, key or PKCS#12 bundle unreadable
 * or unparsable, a wrong PKCS#12 password, or the key does not match the
 * certificate), IOTC_ERR_NOMEM or
 * IOTC_ERR_TLS.  On failure *out is NULL and `why` (if not NULL) names the
 * reason. */
iotc_err iotc_tls_new(const iotc_tls_config *cfg, iotc_tls **out, iotc_tls_why *why);

/* A client SSL_CTX (an `SSL_CTX *`, typed void * so that this header needs
 * no OpenSSL include) configured from `cfg` exactly as a session's would be
 * (trust, identity, ALPN; `hostname` is not used: it is per connection).
 * For lws's WSS client, which borrows it, and to check credentials early.
 * Same errors as iotc_tls_new.  Free with iotc_tls_ctx_free. */
iotc_err iotc_tls_ctx_new(const iotc_tls_config *cfg, void **out, iotc_tls_why *why);
void iotc_tls_ctx_free(void *ctx);

/* Frees the session; NULL is fine.  Sends nothing (no close_notify): a
 * caller that wants one calls iotc_tls_close() and drains first. */
void iotc_tls_free(iotc_tls *s);

/* Hands over `len` bytes received from the socket and advances the handshake.
 * Returns IOTC_OK, IOTC_ERR_BUSY (over in_limit: read plaintext first; nothing
 * was taken), IOTC_ERR_TLS (the handshake failed: see iotc_tls_reason()),
 * IOTC_ERR_INVALID_ARG, IOTC_ERR_NOMEM. */
iotc_err iotc_tls_feed(iotc_tls *s, const void *cipher, size_t len);

/* Copies up to `cap` bytes of plaintext into `buf`; *n is 0 when none is
 * ready yet.  Returns IOTC_OK, IOTC_ERR_CLOSED (the peer sent close_notify),
 * IOTC_ERR_TLS (a fatal alert or a broken record; see iotc_tls_reason()),
 * IOTC_ERR_INVALID_ARG. */
iotc_err iotc_tls_read(iotc_tls *s, void *buf, size_t cap, size_t *n);

/* Encrypts all `len` bytes of plaintext into the output.  Only after the
 * handshake.  Returns IOTC_OK, IOTC_ERR_NOT_CONNECTED (handshake not done),
 * IOTC_ERR_BUSY (output over out_limit: drain first; nothing was taken),
 * IOTC_ERR_TLS (the session failed earlier), IOTC_ERR_INVALID_ARG. */
iotc_err iotc_tls_write(iotc_tls *s, const void *plain, size_t len);

/* The ciphertext waiting to be sent: *ptr and *len (len 0 when none).  The
 * pointer stays valid until the next call on the session. */
void iotc_tls_pending_out(iotc_tls *s, const void **ptr, size_t *len);

/* Drops the first `n` bytes of the pending output (what the socket took). */
void iotc_tls_consume_out(iotc_tls *s, size_t n);

/* Queues a close_notify alert in the output.  Returns IOTC_OK or IOTC_ERR_TLS. */
iotc_err iotc_tls_close(iotc_tls *s);

/* 1 once the handshake has completed and every check passed, else 0. */
int iotc_tls_handshake_done(const iotc_tls *s);

/* 1 once the session has failed (every later call returns IOTC_ERR_TLS). */
int iotc_tls_failed(const iotc_tls *s);

/* The ALPN protocol the server selected (NUL-terminated, owned by the
 * session), or NULL when none or before the handshake. */
const char *iotc_tls_alpn(const iotc_tls *s);

/* The negotiated protocol version ("TLSv1.3"), or NULL before the handshake. */
const char *iotc_tls_version(const iotc_tls *s);

/* Why the session failed, or "" when it has not.  Never NULL. */
const char *iotc_tls_reason(const iotc_tls *s);

#endif /* IOTC_NET_TLS_H */
