/*
 * net/link.c: the lws edge of one client (see link.h).
 *
 * The facts this relies on are in ../shared/reference/libwebsockets-4.1.6.md:
 * raw TLS clients are broken (§0.1) so TLS runs here over a raw socket;
 * only lws_cancel_service() may be called from another thread (§4); one
 * lws_write per WRITEABLE keeps memory bounded (§5); a client-only context
 * still reads http_proxy from the environment and breaks raw sockets with
 * it (§0.7); lws_service() sleeps until the next event or sul (§0.5).
 */
#include "net/link.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define STAGE_MAX ((size_t)65536) /* bytes per lws_write */
#define WHY_MAX 256

typedef struct conn {
    struct iotc_link *link;
    struct lws *wsi;
    iotc_tls *tls;        /* TLS kind only */
    bool up;              /* reported up */
    bool reported;        /* up-then-down or down reported (or suppressed) */
    bool detached;        /* the client closed it: report nothing more */
    bool close_armed;     /* detached and flushed: close at the next WRITEABLE */
    bool want_write;      /* a writable request from another thread */
    int http_status;      /* WS: the upgrade's response status */
    char why[WHY_MAX];    /* the best reason seen so far */
    iotc_ws_request req;  /* WS: headers to append */
    uint8_t *ob;          /* plaintext waiting: ob[oh..ol) */
    size_t oh, ol, ocap;
} conn;

struct iotc_link {
    iotc_link_config cfg;
    char *address, *host;
    iotc_link_cb cb;
    void *ctx;
    struct lws_context *lws;
    SSL_CTX *wss_ctx; /* ours, lent to lws for WSS (freed after the context) */
    pthread_t thread;
    bool thread_started;     /* the creator's view, for the join */
    pthread_t svc_id;        /* set by the service thread itself... */
    atomic_bool svc_known;   /* ...then this, so that others may read it */
    atomic_bool stop;
    bool destroying;
    bool in_open;            /* inside lws_client_connect_via_info */
    pthread_mutex_t mu; /* guards cur, and every conn's ob and want_write */
    conn *cur;          /* the live connection, or NULL */
    /* lws 4.1.6's lws_sul_cancel crashes on a sul that is not scheduled,
     * so each one tracks whether it is. */
    lws_sorted_usec_list_t timer;
    bool timer_armed, deferred_armed;
    uint64_t timer_at;       /* the armed deadline */
    /* Set by the first cross-thread request since the service thread last
     * looked, so that a burst of them costs one lws_cancel_service (a
     * write to lws's eventfd, then a whole service pass). */
    atomic_bool wake_pending;
    atomic_int nconn;        /* connections lws still holds, closing ones included */
    lws_sorted_usec_list_t deferred; /* reports that must not run inside open */
    int deferred_err;
    char deferred_why[WHY_MAX];
    bool deferred_pending;
    uint8_t *stage; /* LWS_PRE + STAGE_MAX */
};

uint64_t iotc_link_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the WebSocket request (public API in iotc/client.h) --------------------- */

void iotc_ws_request_init(iotc_ws_request *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "/mqtt");
}

void iotc_ws_request_clear(iotc_ws_request *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->name[i]);
        free(r->value[i]);
    }
    r->n = 0;
}

int iotc_ws_request_set_path(iotc_ws_request *r, const char *path)
{
    if (!r || !path || path[0] != '/')
        return IOTC_ERR_INVALID_ARG;
    size_t n = strlen(path);
    if (n > IOTC_WS_MAX_PATH)
        return IOTC_ERR_TOO_LARGE;
    memcpy(r->path, path, n + 1);
    return IOTC_OK;
}

int iotc_ws_request_add_header(iotc_ws_request *r, const char *name, const char *value)
{
    if (!r || !name || !value || !name[0] || strpbrk(name, ":\r\n ") || strpbrk(value, "\r\n"))
        return IOTC_ERR_INVALID_ARG;
    if (r->n >= IOTC_WS_MAX_HEADERS)
        return IOTC_ERR_TOO_LARGE;
    size_t nl = strlen(name);
    char *n = malloc(nl + 2);
    char *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return IOTC_ERR_NOMEM;
    }
    /* lws wants the colon in the name (reference §2). */
    memcpy(n, name, nl);
    n[nl] = ':';
    n[nl + 1] = 0;
    r->name[r->n] = n;
    r->value[r->n] = v;
    r->n++;
    return IOTC_OK;
}

const char *iotc_ws_request_path(const iotc_ws_request *r)
{
    return r ? r->path : "";
}

/* ---- connections ------------------------------------------------------------- */

static bool is_ws(const iotc_link *l)
{
    return l->cfg.kind == IOTC_LINK_WS || l->cfg.kind == IOTC_LINK_WSS;
}

static void conn_free(conn *k)
{
    iotc_tls_free(k->tls);
    iotc_ws_request_clear(&k->req);
    free(k->ob);
    free(k);
}

static void deferred_cb(lws_sorted_usec_list_t *sul)
{
    iotc_link *l = lws_container_of(sul, iotc_link, deferred);
    l->deferred_armed = false;
    if (!l->deferred_pending || l->destroying)
        return;
    l->deferred_pending = false;
    l->cb.down(l->ctx, l->deferred_err, l->deferred_why);
}

static void schedule_deferred(iotc_link *l)
{
    l->deferred_armed = true;
    lws_sul_schedule(l->lws, 0, &l->deferred, deferred_cb, 1);
}

/* Reports a connection's end once, unless the client closed it. */
static void conn_down(conn *k, int err, const char *why)
{
    iotc_link *l = k->link;
    if (k->reported)
        return;
    k->reported = true;
    pthread_mutex_lock(&l->mu);
    if (l->cur == k)
        l->cur = NULL;
    pthread_mutex_unlock(&l->mu);
    if (k->detached || l->destroying)
        return;
    if (k->why[0] && (!why || !why[0] || err == IOTC_ERR_TLS))
        why = k->why; /* a verification reason beats lws's generic text */
    if (l->in_open) {
        /* lws failed the connection inside lws_client_connect_via_info: the
         * report waits until iotc_link_open has returned (link.h's promise). */
        l->deferred_err = err;
        snprintf(l->deferred_why, sizeof l->deferred_why, "%s", why ? why : "");
        l->deferred_pending = true;
        schedule_deferred(l);
        return;
    }
    l->cb.down(l->ctx, err, why ? why : "");
}

static void conn_up(conn *k)
{
    if (k->up || k->detached)
        return;
    /* Other threads read `up` in iotc_link_send, under mu. */
    pthread_mutex_lock(&k->link->mu);
    k->up = true;
    pthread_mutex_unlock(&k->link->mu);
    lws_set_timer_usecs(k->wsi, LWS_SET_TIMER_USEC_CANCEL);
    k->link->cb.up(k->link->ctx);
}

/* Appends to the plaintext queue; caller holds mu. */
static bool ob_put(conn *k, const uint8_t *p, size_t n)
{
    if (k->oh > 0 && k->oh == k->ol)
        k->oh = k->ol = 0;
    if (k->ol + n > k->ocap) {
        if (k->oh > 0) { /* compact before growing */
            memmove(k->ob, k->ob + k->oh, k->ol - k->oh);
            k->ol -= k->oh;
            k->oh = 0;
        }
        if (k->ol + n > k->ocap) {
            size_t cap = k->ocap ? k->ocap : 4096;
            while (cap < k->ol + n)
                cap *= 2;
            uint8_t *nb = realloc(k->ob, cap);
            if (!nb)
                return false;
            k->ob = nb;
            k->ocap = cap;
        }
    }
    memcpy(k->ob + k->ol, p, n);
    k->ol += n;
    return true;
}

/* Fills the stage with the next bytes for the socket; caller holds mu.
 * Returns the count and sets *more when bytes remain after it. */
static size_t next_chunk(iotc_link *l, conn *k, bool *more, int *err)
{
    uint8_t *dst = l->stage + LWS_PRE;
    *more = false;
    if (k->tls) {
        /* Encrypt what the engine queued, as far as TLS's output bound lets. */
        while (iotc_tls_handshake_done(k->tls) && k->ol > k->oh) {
            size_t n = k->ol - k->oh;
            if (n > 16384)
                n = 16384;
            iotc_err rc = iotc_tls_write(k->tls, k->ob + k->oh, n);
            if (rc == IOTC_ERR_BUSY)
                break;
            if (rc != IOTC_OK) {
                *err = rc;
                return 0;
            }
            k->oh += n;
        }
        const void *p;
        size_t len;
        iotc_tls_pending_out(k->tls, &p, &len);
        size_t n = len < STAGE_MAX ? len : STAGE_MAX;
        if (n == 0)
            return 0; /* p may be NULL: nothing pending */
        memcpy(dst, p, n);
        iotc_tls_consume_out(k->tls, n);
        iotc_tls_pending_out(k->tls, &p, &len);
        *more = len > 0 || (k->ol > k->oh && iotc_tls_handshake_done(k->tls));
        return n;
    }
    size_t n = k->ol - k->oh;
    if (n > STAGE_MAX)
        n = STAGE_MAX;
    memcpy(dst, k->ob + k->oh, n);
    k->oh += n;
    *more = k->ol > k->oh;
    return n;
}

static int conn_writeable(conn *k)
{
    iotc_link *l = k->link;
    bool more = false;
    int err = IOTC_OK;
    pthread_mutex_lock(&l->mu);
    k->want_write = false;
    size_t n = next_chunk(l, k, &more, &err);
    pthread_mutex_unlock(&l->mu);
    if (err != IOTC_OK) {
        conn_down(k, IOTC_ERR_TLS, iotc_tls_reason(k->tls));
        return -1;
    }
    if (n > 0) {
        enum lws_write_protocol wp = is_ws(l) ? LWS_WRITE_BINARY : LWS_WRITE_RAW;
        if (lws_write(k->wsi, l->stage + LWS_PRE, n, wp) < 0) {
            conn_down(k, IOTC_ERR_CONNECTION_LOST, "write to the socket failed");
            return -1;
        }
    }
    if (more) {
        lws_callback_on_writable(k->wsi);
    } else if (k->detached) {
        /* The WRITEABLE after the last write comes once lws has flushed it
         * (reference §5): close there and the DISCONNECT is not lost. */
        if (n == 0 || k->close_armed) {
            if (is_ws(l))
                lws_close_reason(k->wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
            return -1;
        }
        k->close_armed = true;
        lws_callback_on_writable(k->wsi);
    }
    return 0;
}

/* Bytes from the socket (ciphertext for TLS). */
static int conn_rx(conn *k, const uint8_t *p, size_t n)
{
    iotc_link *l = k->link;
    if (k->detached)
        return 0;
    if (!k->tls) {
        l->cb.data(l->ctx, p, n);
        return 0;
    }
    iotc_err rc = iotc_tls_feed(k->tls, p, n);
    if (rc != IOTC_OK) {
        conn_down(k, IOTC_ERR_TLS, iotc_tls_reason(k->tls));
        return -1;
    }
    if (!k->up && iotc_tls_handshake_done(k->tls))
        conn_up(k);
    uint8_t buf[16384];
    while (k->up && !k->detached) {
        size_t got = 0;
        rc = iotc_tls_read(k->tls, buf, sizeof buf, &got);
        if (rc == IOTC_ERR_CLOSED) {
            conn_down(k, IOTC_ERR_CONNECTION_LOST, "the broker closed the TLS session");
            return -1;
        }
        if (rc != IOTC_OK) {
            conn_down(k, IOTC_ERR_TLS, iotc_tls_reason(k->tls));
            return -1;
        }
        if (got == 0)
            break;
        l->cb.data(l->ctx, buf, got);
    }
    /* The handshake, alerts and session tickets produce output too. */
    const void *op;
    size_t olen;
    iotc_tls_pending_out(k->tls, &op, &olen);
    if (olen > 0)
        lws_callback_on_writable(k->wsi);
    return 0;
}

/* MQTT packets are small and each waits for an answer (PUBACK, PINGRESP):
 * Nagle's algorithm against the peer's delayed ACK would hold them ~40 ms. */
static void no_delay(struct lws *wsi)
{
    int fd = (int)lws_get_socket_fd(wsi);
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int tcp_connected(conn *k)
{
    iotc_link *l = k->link;
    no_delay(k->wsi);
    if (l->cfg.kind != IOTC_LINK_TLS) {
        conn_up(k);
        return 0;
    }
    iotc_tls_config tc = *l->cfg.tls;
    tc.hostname = l->host;
    iotc_tls_why why;
    iotc_err rc = iotc_tls_new(&tc, &k->tls, &why);
    if (rc != IOTC_OK) {
        conn_down(k, rc, why.text);
        return -1;
    }
    /* The TLS handshake gets the connect timeout too. */
    lws_set_timer_usecs(k->wsi, (lws_usec_t)l->cfg.connect_timeout_ms * 1000);
    lws_callback_on_writable(k->wsi);
    return 0;
}

static int connection_error_code(const char *in)
{
    if (!in)
        return IOTC_ERR_CONNECT;
    if (strstr(in, "SSL") || strstr(in, "ssl") || strstr(in, "tls"))
        return IOTC_ERR_TLS;
    if (strstr(in, "closed before established") || strstr(in, "timed out"))
        return IOTC_ERR_TIMEOUT;
    return IOTC_ERR_CONNECT;
}

static int link_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    struct lws_context *lc = lws_get_context(wsi);
    iotc_link *l = lc ? lws_context_user(lc) : NULL;
    conn *k = lws_get_opaque_user_data(wsi);
    if (!l)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        /* Cleared before looking: a request made from now on wakes again. */
        atomic_store(&l->wake_pending, false);
        /* Writes asked for by other threads, then the client's wake. */
        pthread_mutex_lock(&l->mu);
        conn *c = l->cur;
        bool w = c && c->want_write && c->wsi;
        pthread_mutex_unlock(&l->mu);
        if (w && !is_ws(l) && c->up && !c->detached && !lws_send_pipe_choked(c->wsi)) {
            /* A raw socket that is not choked takes the bytes now: asking
             * for WRITEABLE would cost a whole service pass per publish.
             * (WebSocket framing stays in its callback.) */
            if (conn_writeable(c) < 0)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (w) {
            lws_callback_on_writable(c->wsi);
        }
        if (!l->destroying)
            l->cb.wake(l->ctx);
        return 0;
    }
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* WSS: lws's error text says nothing; keep OpenSSL's reason. */
        if (!len && k && in) {
            X509_STORE_CTX *x = in;
            int e = X509_STORE_CTX_get_error(x);
            snprintf(k->why, sizeof k->why, "server certificate verification failed: %s (depth %d)",
                     X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(x));
        }
        return 0;
    case LWS_CALLBACK_RAW_CONNECTED:
        return k ? tcp_connected(k) : 0;
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        if (k)
            k->http_status = (int)lws_http_client_http_response(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        no_delay(wsi);
        if (k)
            conn_up(k);
        return 0;
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return k ? conn_rx(k, in, len) : 0;
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return k ? conn_writeable(k) : 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (!k)
            return 0;
        unsigned char **p = in, *end = *p + len;
        for (int i = 0; i < k->req.n; i++) {
            size_t vl = strlen(k->req.value[i]);
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)k->req.name[i],
                                            (const unsigned char *)k->req.value[i], (int)vl, p, end)) {
                snprintf(k->why, sizeof k->why, "WebSocket upgrade headers do not fit");
                return -1;
            }
        }
        return 0;
    }
    case LWS_CALLBACK_TIMER:
        if (k && !k->up) {
            conn_down(k, IOTC_ERR_TIMEOUT, "TLS handshake timed out");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (k && len >= 2) {
            const uint8_t *b = in;
            snprintf(k->why, sizeof k->why, "the broker closed the WebSocket (%u%s%.*s)",
                     (unsigned)(b[0] << 8 | b[1]), len > 2 ? ": " : "", (int)(len - 2), (const char *)b + 2);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (k) {
            char why[WHY_MAX];
            int err = connection_error_code(in);
            if (k->http_status && k->http_status != 101) {
                err = IOTC_ERR_REFUSED;
                snprintf(why, sizeof why, "WebSocket upgrade refused: HTTP %d", k->http_status);
            } else {
                snprintf(why, sizeof why, "%s", in ? (const char *)in : "cannot connect");
            }
            conn_down(k, err, why);
        }
        return 0;
    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        if (k)
            conn_down(k, k->up ? IOTC_ERR_CONNECTION_LOST : IOTC_ERR_CONNECT,
                      k->up ? "the broker closed the connection" : "closed before the connection was ready");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (k) {
            conn_down(k, k->up ? IOTC_ERR_CONNECTION_LOST : IOTC_ERR_CONNECT, "connection closed");
            lws_set_opaque_user_data(wsi, NULL);
            conn_free(k);
            atomic_fetch_sub(&l->nconn, 1);
        }
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"iotc-link", link_cb, 0, 16384, 0, NULL, STAGE_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* WebSockets: MQTT keep-alive is the liveness check; lws's own ws PING
 * policy would hang up a quiet but healthy link at 310 s (reference §2). */
static const lws_retry_bo_t ws_policy = {.secs_since_valid_ping = 0, .secs_since_valid_hangup = 0};

void iotc_link_open(iotc_link *l)
{
    conn *k = calloc(1, sizeof *k);
    if (!k) {
        l->deferred_err = IOTC_ERR_NOMEM;
        snprintf(l->deferred_why, sizeof l->deferred_why, "out of memory");
        l->deferred_pending = true;
        schedule_deferred(l);
        return;
    }
    k->link = l;
    iotc_ws_request_init(&k->req);
    char why[WHY_MAX] = "";
    if (is_ws(l) && l->cb.handshake) {
        int rc = l->cb.handshake(l->ctx, &k->req, why, sizeof why);
        if (rc != IOTC_OK) {
            l->deferred_err = rc;
            snprintf(l->deferred_why, sizeof l->deferred_why, "%s", why[0] ? why : "handshake callback failed");
            l->deferred_pending = true;
            conn_free(k);
            schedule_deferred(l);
            return;
        }
    }
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = l->lws;
    i.address = l->address;
    i.port = l->cfg.port;
    i.host = l->host;
    i.origin = l->host;
    i.local_protocol_name = "iotc-link";
    i.opaque_user_data = k;
    i.pwsi = &k->wsi;
    if (is_ws(l)) {
        i.path = k->req.path;
        i.protocol = "mqtt";
        i.retry_and_idle_policy = &ws_policy;
        if (l->cfg.kind == IOTC_LINK_WSS) {
            i.ssl_connection = LCCSCF_USE_SSL;
            if (l->cfg.tls && l->cfg.tls->insecure_skip_verify)
                i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                    LCCSCF_ALLOW_INSECURE | LCCSCF_ALLOW_EXPIRED;
            if (l->cfg.tls && l->cfg.tls->alpn)
                i.alpn = l->cfg.tls->alpn;
        }
    } else {
        i.method = "RAW";
    }
    pthread_mutex_lock(&l->mu);
    l->cur = k;
    pthread_mutex_unlock(&l->mu);
    /* Counted before the call: lws may destroy the wsi inside it. */
    atomic_fetch_add(&l->nconn, 1);
    l->in_open = true;
    struct lws *w = lws_client_connect_via_info(&i);
    l->in_open = false;
    if (!w) {
        /* No callback has run for it and *pwsi may not be trusted (§1). */
        pthread_mutex_lock(&l->mu);
        if (l->cur == k)
            l->cur = NULL;
        pthread_mutex_unlock(&l->mu);
        if (!k->reported) {
            l->deferred_err = IOTC_ERR_CONNECT;
            snprintf(l->deferred_why, sizeof l->deferred_why, "cannot connect to %s:%u", l->address,
                     (unsigned)l->cfg.port);
            l->deferred_pending = true;
            schedule_deferred(l);
        }
        if (!k->reported)
            conn_free(k); /* never bound to a wsi */
        else
            return; /* a WSI_DESTROY came inside the call and counted it */
        atomic_fetch_sub(&l->nconn, 1);
        return;
    }
    k->wsi = w;
}

void iotc_link_close(iotc_link *l)
{
    pthread_mutex_lock(&l->mu);
    conn *k = l->cur;
    l->cur = NULL;
    if (k)
        k->detached = true;
    pthread_mutex_unlock(&l->mu);
    l->deferred_pending = false;
    if (!k || !k->wsi)
        return;
    /* Flush (a DISCONNECT) then close in conn_writeable; never longer than 2 s. */
    lws_set_timeout(k->wsi, PENDING_TIMEOUT_USER_OK, 2);
    lws_callback_on_writable(k->wsi);
}

void iotc_link_send(iotc_link *l, const uint8_t *p, size_t n)
{
    bool here = iotc_link_on_service_thread(l);
    pthread_mutex_lock(&l->mu);
    conn *k = l->cur;
    bool ok = k && k->up && !k->detached && ob_put(k, p, n);
    struct lws *w = ok ? k->wsi : NULL;
    if (ok && !here)
        k->want_write = true;
    pthread_mutex_unlock(&l->mu);
    if (!ok)
        return;
    if (here)
        lws_callback_on_writable(w);
    else
        iotc_link_wake(l);
}

size_t iotc_link_out_pending(iotc_link *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->cur ? l->cur->ol - l->cur->oh : 0;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void iotc_link_wake(iotc_link *l)
{
    if (!atomic_exchange(&l->wake_pending, true))
        lws_cancel_service(l->lws);
}

static void timer_cb(lws_sorted_usec_list_t *sul)
{
    iotc_link *l = lws_container_of(sul, iotc_link, timer);
    l->timer_armed = false;
    if (!l->destroying)
        l->cb.wake(l->ctx);
}

void iotc_link_set_timer(iotc_link *l, uint64_t deadline_ms)
{
    /* Lazy: a timer already due no later stays as it is.  Firing early
     * costs one spurious wake, in which the engine finds nothing due and the
     * timer is set again; re-arming after every packet cost more. */
    if (l->timer_armed && l->timer_at <= deadline_ms)
        return;
    if (deadline_ms == UINT64_MAX)
        return;
    l->timer_armed = true;
    l->timer_at = deadline_ms;
    uint64_t now = iotc_link_now_ms();
    uint64_t ms = deadline_ms > now ? deadline_ms - now : 0;
    /* lws takes a relative time; 1 us for "now" keeps it in the future. */
    lws_sul_schedule(l->lws, 0, &l->timer, timer_cb, ms ? (lws_usec_t)ms * 1000 : 1);
}

bool iotc_link_idle(iotc_link *l)
{
    return atomic_load(&l->nconn) == 0;
}

bool iotc_link_on_service_thread(const iotc_link *l)
{
    return atomic_load(&l->svc_known) && pthread_equal(pthread_self(), l->svc_id);
}

static void *service_main(void *arg)
{
    iotc_link *l = arg;
    l->svc_id = pthread_self();
    atomic_store(&l->svc_known, true);
    while (!atomic_load(&l->stop))
        lws_service(l->lws, 0);
    return NULL;
}

static void log_emit(int level, const char *line)
{
    (void)level;
    fprintf(stderr, "iotc lws: %s", line);
}

static void log_init(void)
{
    /* lws logs to stderr at NOTICE by default and the level is
     * process-global: a library stays silent unless asked (IOTC_LWS_LOG=N,
     * an lws LLL_ mask). */
    const char *e = getenv("IOTC_LWS_LOG");
    lws_set_log_level(e ? atoi(e) : 0, log_emit);
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

int iotc_link_new(const iotc_link_config *cfg, const iotc_link_cb *cb, void *ctx, iotc_link **out, char *why,
                  size_t whylen)
{
    *out = NULL;
    if (!cfg || !cb || !cfg->address || !cfg->host || !cfg->port) {
        snprintf(why, whylen, "link: missing address, host or port");
        return IOTC_ERR_INVALID_ARG;
    }
    pthread_once(&log_once, log_init);
    iotc_link *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(why, whylen, "out of memory");
        return IOTC_ERR_NOMEM;
    }
    l->cfg = *cfg;
    l->cb = *cb;
    l->ctx = ctx;
    l->address = strdup(cfg->address);
    l->host = strdup(cfg->host);
    l->stage = malloc(LWS_PRE + STAGE_MAX);
    pthread_mutex_init(&l->mu, NULL);
    if (!l->address || !l->host || !l->stage) {
        snprintf(why, whylen, "out of memory");
        iotc_link_free(l);
        return IOTC_ERR_NOMEM;
    }
    if (cfg->kind == IOTC_LINK_WSS) {
        /* lws builds its client SSL_CTX from file and memory options that
         * keep only the first CA of a bundle and add the OS store to a
         * CA file (reference §1); the TLS module builds the same context
         * as for MQTT over TLS and lws borrows it. */
        iotc_tls_why tw;
        iotc_tls_config tc = *cfg->tls;
        tc.alpn = NULL; /* lws sets ALPN per connection */
        void *wc = NULL;
        int rc = iotc_tls_ctx_new(&tc, &wc, &tw);
        l->wss_ctx = wc;
        if (rc != IOTC_OK) {
            snprintf(why, whylen, "%s", tw.text);
            iotc_link_free(l);
            return rc;
        }
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = l;
    info.gid = -1;
    info.uid = -1;
    /* lws sizes its fd table from the process limit otherwise (megabytes
     * for a client that holds one socket). */
    info.fd_limit_per_thread = 16;
    unsigned secs = (cfg->connect_timeout_ms + 999) / 1000;
    info.connect_timeout_secs = secs ? secs : 1;
    info.timeout_secs = info.connect_timeout_secs;
    /* Do not take http_proxy from the environment: it breaks raw sockets. */
    info.http_proxy_address = "";
    if (cfg->kind == IOTC_LINK_WSS) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.provided_client_ssl_ctx = l->wss_ctx;
    }
    l->lws = lws_create_context(&info);
    if (!l->lws) {
        snprintf(why, whylen, "libwebsockets would not create its context");
        iotc_link_free(l);
        return IOTC_ERR_INTERNAL;
    }
    /* The owner's pointer is set before the thread runs: its callbacks
     * reach the owner, which reaches the link through it. */
    *out = l;
    if (pthread_create(&l->thread, NULL, service_main, l) != 0) {
        *out = NULL;
        snprintf(why, whylen, "cannot start the service thread");
        iotc_link_free(l);
        return IOTC_ERR_INTERNAL;
    }
    l->thread_started = true;
    return IOTC_OK;
}

void iotc_link_free(iotc_link *l)
{
    if (!l)
        return;
    if (l->thread_started) {
        atomic_store(&l->stop, true);
        lws_cancel_service(l->lws);
        pthread_join(l->thread, NULL);
        l->thread_started = false;
    }
    l->destroying = true;
    if (l->lws) {
        if (l->timer_armed)
            lws_sul_cancel(&l->timer);
        if (l->deferred_armed)
            lws_sul_cancel(&l->deferred);
        lws_context_destroy(l->lws); /* closes what is open: no reports */
    }
    SSL_CTX_free(l->wss_ctx);
    pthread_mutex_destroy(&l->mu);
    free(l->stage);
    free(l->address);
    free(l->host);
    free(l);
}
