/*
 * net/client.c: the client handle of iotc/client.h: the engine (core/)
 * joined to the link (net/link.h), made safe to call from any thread.
 *
 * Threading, in one paragraph.  A recursive mutex `mu` guards the engine
 * and everything here.  The service thread takes it for every link report
 * and wake, and runs user callbacks while holding it, so a callback may call
 * iotc_publish and friends (recursion) and no other thread sees the engine
 * half-way.  Another thread's call takes `mu`, calls the engine and wakes
 * the service thread; completions the engine raises inside such a call are
 * queued and delivered by the service thread, never on the caller's thread.
 * The engine only opens and closes the link from the service thread:
 * connect and disconnect are handed over as commands.  Blocking helpers wait
 * on `cv` with `mu`; a callback cannot wait (it holds `mu` for the thread
 * that would complete it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "core/engine.h"
#include "iotc/client.h"
#include "iotc/topic.h"
#include "net/builder.h"
#include "net/link.h"
#include "net/sigv4.h"
#include "net/tls.h"
#include "net/username.h"

/* AWS IoT's largest PUBLISH payload (aws-broker.md §2): refused at the
 * call, since the broker would disconnect the client for it. */
#define MAX_PAYLOAD ((size_t)128 * 1024)
/* Unwritten bytes on the link before publish answers IOTC_ERR_BUSY. */
#define MAX_OUT_PENDING ((size_t)1024 * 1024)

typedef struct waiter {
    int refs;
    bool done;
    int status;
    uint8_t granted;
} waiter;

/* One accepted operation: who to tell. */
typedef struct opctx {
    struct opctx *next; /* on the deferred list */
    iotc_client *c;
    iotc_done_fn fn;
    void *user;
    waiter *w;
    int status;
    uint8_t granted;
    char *filter; /* a subscribe's filter: its registration goes if refused */
} opctx;

/* A pending iotc_client_call_after, on a list sorted by (at, seq). */
typedef struct calltimer {
    struct calltimer *next;
    uint64_t at;  /* iotc_link_now_ms clock */
    uint64_t seq; /* order of the calls: equal deadlines run first-made first */
    iotc_call_fn fn;
    void *user;
} calltimer;

typedef struct subcb {
    struct subcb *next;
    iotc_message_fn fn;
    void *user;
    uint8_t qos;
    bool dead;         /* removed while messages were being dispatched */
    size_t len;
    const char *match; /* the filter part of a $share filter */
    size_t match_len;
    char filter[];
} subcb;

struct iotc_client {
    iotc_builder *cfg;
    iotc_tls_config tls;
    char *username;   /* the final CONNECT username (metrics, custom auth) */
    iotc_engine_config ecfg;
    iotc_engine_io io;
    iotc_engine *eng; /* NULL until first needed */
    bool eng_closed;  /* eng reported CLOSED: the next connect needs a new one */
    /* Stopped engines wait here until no engine call is on the stack
     * (a callback may run inside the stopped engine's own stop). */
    iotc_engine *grave[4];
    size_t ngrave;
    iotc_link *link;
    iotc_callbacks cb;
    void *user;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;      /* connected or connecting (between connect and closed) */
    bool want_start, want_stop;
    opctx *dh, *dt;    /* completions raised on other threads */
    subcb *subs;
    int dispatching;   /* >0 while io_message walks subs: removals wait */
    char reason[256];  /* the last link failure, for the callbacks */
    calltimer *timers; /* iotc_client_call_after, earliest first */
    uint64_t timer_seq;
    uint64_t messages;
    /* For the blocking helpers: counters that move on each event. */
    uint64_t conn_events, closed_events;
    int conn_status;
    bool conn_sp;
};

static __thread char new_why[256];

const char *iotc_client_new_why(void)
{
    return new_why;
}

/* ---- completions ----------------------------------------------------------- */

/* Whether the caller is the service thread.  During iotc_client_free there
 * is no service thread any more, and the freeing thread stands in for it. */
static bool on_service(const iotc_client *c)
{
    return !c->link || iotc_link_on_service_thread(c->link);
}

static void waiter_put(waiter *w)
{
    if (w && --w->refs == 0)
        free(w);
}

/* Service thread, mu held. */
static void deliver(iotc_client *c, opctx *o)
{
    if (o->w) {
        o->w->done = true;
        o->w->status = o->status;
        o->w->granted = o->granted;
        waiter_put(o->w);
        pthread_cond_broadcast(&c->cv);
    }
    if (o->fn)
        o->fn(o->status, o->granted, o->user);
    free(o->filter);
    free(o);
}

static void sub_remove(iotc_client *c, const char *filter);

static void op_done(void *user, int status, uint8_t granted)
{
    opctx *o = user;
    iotc_client *c = o->c;
    o->status = status;
    o->granted = granted;
    /* A subscription the broker refused, or that never happened (dropped,
     * timed out, closed), must not take messages or be resubscribed. */
    if (o->filter && (status != IOTC_OK || granted == 0x80))
        sub_remove(c, o->filter);
    if (on_service(c)) {
        deliver(c, o);
        return;
    }
    o->next = NULL;
    if (c->dt)
        c->dt->next = o;
    else
        c->dh = o;
    c->dt = o;
    iotc_link_wake(c->link);
}

static void deliver_deferred(iotc_client *c)
{
    while (c->dh) {
        opctx *o = c->dh;
        c->dh = o->next;
        if (!c->dh)
            c->dt = NULL;
        deliver(c, o);
    }
}

/* ---- engine I/O -------------------------------------------------------------- */

static void io_open(void *ctx)
{
    iotc_client *c = ctx;
    iotc_link_open(c->link);
}

static void io_close(void *ctx)
{
    iotc_client *c = ctx;
    iotc_link_close(c->link);
}

static void io_send(void *ctx, const uint8_t *data, size_t len)
{
    iotc_client *c = ctx;
    iotc_link_send(c->link, data, len);
}

static uint64_t io_random(void *ctx)
{
    (void)ctx;
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint64_t)time(NULL) * 6364136223846793005u; /* jitter only; never a secret */
    return r;
}

static void io_event(void *ctx, const iotc_event *ev)
{
    iotc_client *c = ctx;
    const char *why = c->reason[0] ? c->reason : iotc_strerror(ev->err);
    switch (ev->type) {
    case IOTC_EV_CONNECTION_SUCCESS:
        c->conn_events++;
        c->conn_status = IOTC_OK;
        c->conn_sp = ev->session_present;
        pthread_cond_broadcast(&c->cv);
        if (c->cb.on_connection_success)
            c->cb.on_connection_success(c, ev->session_present, c->user);
        break;
    case IOTC_EV_CONNECTION_FAILURE:
        c->conn_events++;
        c->conn_status = ev->err;
        pthread_cond_broadcast(&c->cv);
        if (ev->err == IOTC_ERR_REFUSED && !c->reason[0]) {
            snprintf(c->reason, sizeof c->reason, "the broker refused the connection (CONNACK %u)",
                     (unsigned)ev->return_code);
            why = c->reason;
        }
        if (c->cb.on_connection_failure)
            c->cb.on_connection_failure(c, ev->err, ev->return_code, why, c->user);
        break;
    case IOTC_EV_INTERRUPTED:
        if (c->cb.on_interrupted)
            c->cb.on_interrupted(c, ev->err, why, c->user);
        break;
    case IOTC_EV_RESUMED:
        if (c->cb.on_resumed)
            c->cb.on_resumed(c, ev->return_code, ev->session_present, c->user);
        break;
    case IOTC_EV_CLOSED:
        c->running = false;
        c->eng_closed = true;
        c->closed_events++;
        pthread_cond_broadcast(&c->cv);
        if (c->cb.on_closed)
            c->cb.on_closed(c, c->user);
        break;
    }
    c->reason[0] = 0;
}

static void sweep_subs(iotc_client *c)
{
    for (subcb **p = &c->subs; *p;) {
        subcb *s = *p;
        if (s->dead) {
            *p = s->next;
            free(s);
        } else {
            p = &s->next;
        }
    }
}

static void io_message(void *ctx, const iotc_message *m)
{
    iotc_client *c = ctx;
    c->messages++;
    const char *t = (const char *)m->topic.data;
    size_t tl = m->topic.len;
    bool taken = false;
    /* A callback may unsubscribe (or subscribe): entries are only marked
     * dead while the walk is on, and swept after it. */
    c->dispatching++;
    for (subcb *s = c->subs; s; s = s->next) {
        if (!s->dead && s->fn && iotc_topic_match(s->match, s->match_len, t, tl, IOTC_MATCH_MQTT)) {
            s->fn(c, t, tl, m->payload.data, m->payload.len, m->qos, m->retain, m->dup, s->user);
            taken = true;
        }
    }
    if (!taken && c->cb.on_message)
        c->cb.on_message(c, t, tl, m->payload.data, m->payload.len, m->qos, m->retain, m->dup, c->user);
    if (--c->dispatching == 0)
        sweep_subs(c);
}

/* ---- the service thread's side ----------------------------------------------- */

/* After every engine call on the service thread: its deadlines may move.
 * The link's one timer serves the engine and the calls of
 * iotc_client_call_after alike: it is set to the earlier of the two. */
static void settle(iotc_client *c)
{
    uint64_t next = c->eng ? iotc_engine_tick(c->eng, iotc_link_now_ms()) : UINT64_MAX;
    if (c->timers && c->timers->at < next)
        next = c->timers->at;
    iotc_link_set_timer(c->link, next);
}

/* Service thread, mu held: runs the calls that are due.  Only those made
 * before this pass: a callback that asks for another call in 0 ms gets it
 * at the next wake, not in an endless loop here. */
static void run_timers(iotc_client *c)
{
    uint64_t now = iotc_link_now_ms();
    uint64_t last = c->timer_seq;
    for (calltimer **p = &c->timers; *p;) {
        calltimer *t = *p;
        if (t->at > now)
            break;
        if (t->seq > last) {
            p = &t->next;
            continue;
        }
        *p = t->next;
        t->fn(c, IOTC_OK, t->user);
        free(t);
        p = &c->timers; /* the callback may have added or cancelled calls */
    }
}

static void free_subs(iotc_client *c)
{
    if (c->dispatching) {
        for (subcb *s = c->subs; s; s = s->next)
            s->dead = true;
        return;
    }
    while (c->subs) {
        subcb *s = c->subs;
        c->subs = s->next;
        free(s);
    }
}

static void run_commands(iotc_client *c)
{
    uint64_t now = iotc_link_now_ms();
    if (c->want_stop) {
        c->want_stop = false;
        if (c->eng)
            (void)iotc_engine_stop(c->eng, now);
    }
    if (c->want_start) {
        c->want_start = false;
        (void)iotc_engine_start(c->eng, now);
    }
}

static void bury_all(iotc_client *c)
{
    while (c->ngrave)
        iotc_engine_free(c->grave[--c->ngrave]);
}

static void link_wake(void *ctx)
{
    iotc_client *c = ctx;
    pthread_mutex_lock(&c->mu);
    run_commands(c);
    deliver_deferred(c);
    run_timers(c);
    settle(c);
    bury_all(c); /* the top of the service thread: no engine call below */
    pthread_mutex_unlock(&c->mu);
}

static void link_up(void *ctx)
{
    iotc_client *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->eng)
        iotc_engine_link_up(c->eng, iotc_link_now_ms());
    settle(c);
    pthread_mutex_unlock(&c->mu);
}

static void link_down(void *ctx, int err, const char *why)
{
    iotc_client *c = ctx;
    pthread_mutex_lock(&c->mu);
    snprintf(c->reason, sizeof c->reason, "%s", why ? why : "");
    if (c->eng)
        iotc_engine_link_down(c->eng, err, iotc_link_now_ms());
    c->reason[0] = 0;
    settle(c);
    pthread_mutex_unlock(&c->mu);
}

static void link_data(void *ctx, const uint8_t *p, size_t n)
{
    iotc_client *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->eng)
        iotc_engine_input(c->eng, p, n, iotc_link_now_ms());
    settle(c);
    pthread_mutex_unlock(&c->mu);
}

/* A fresh signature for each attempt: a presigned URL is valid for a
 * limited time, and credentials may have been rotated meanwhile. */
static int sign_sigv4(iotc_client *c, iotc_ws_request *req, char *why, size_t whylen)
{
    const iotc_builder *b = c->cfg;
    iotc_aws_credentials given, creds;
    memset(&given, 0, sizeof given);
    if (b->has_creds) {
        snprintf(given.access_key_id, sizeof given.access_key_id, "%s", b->akid ? b->akid : "");
        snprintf(given.secret_access_key, sizeof given.secret_access_key, "%s", b->secret ? b->secret : "");
        snprintf(given.session_token, sizeof given.session_token, "%s", b->token ? b->token : "");
    }
    int rc = iotc_aws_credentials_resolve(b->has_creds ? &given : NULL, &creds, why, whylen);
    if (rc != IOTC_OK)
        return rc;
    /* The signed host must be the Host header the server receives, and lws
     * sends the bare host name (i.host) whatever the port: sign that. */
    iotc_sigv4_params p = {
        .endpoint = b->endpoint,
        .port = 0,
        .region = b->region,
        .access_key_id = creds.access_key_id,
        .secret_access_key = creds.secret_access_key,
        .session_token = creds.session_token[0] ? creds.session_token : NULL,
        .now = time(NULL),
    };
    char *url = malloc(8192);
    if (!url)
        return IOTC_ERR_NOMEM;
    size_t needed = 0;
    rc = iotc_sigv4_presign_mqtt(&p, url, 8192, &needed);
    memset(&creds, 0, sizeof creds);
    if (rc == IOTC_OK) {
        /* The request wants the path: skip "wss://host[:port]". */
        const char *path = strchr(url + 6, '/');
        rc = path ? iotc_ws_request_set_path(req, path) : IOTC_ERR_INTERNAL;
    }
    if (rc != IOTC_OK)
        snprintf(why, whylen, "SigV4 signing failed: %s", iotc_strerror(rc));
    free(url);
    return rc;
}

static int link_handshake(void *ctx, iotc_ws_request *req, char *why, size_t whylen)
{
    iotc_client *c = ctx;
    switch (c->cfg->ws_mode) {
    case IOTC_WS_SIGV4:
        return sign_sigv4(c, req, why, whylen);
    case IOTC_WS_CUSTOM: {
        int rc = c->cfg->hs_fn(req, c->cfg->hs_user);
        if (rc != IOTC_OK)
            snprintf(why, whylen, "the handshake callback failed: %s", iotc_strerror(rc));
        return rc;
    }
    case IOTC_WS_NONE:
    default:
        return IOTC_OK;
    }
}

/* ---- creation ------------------------------------------------------------------ */

static int fail_new(iotc_client *c, int rc, const char *fmt, const char *detail)
{
    snprintf(new_why, sizeof new_why, fmt, detail ? detail : "");
    iotc_client_free(c);
    return rc;
}

static int build_username(iotc_client *c)
{
    const iotc_builder *b = c->cfg;
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    p.base = b->username;
    if (b->custom_auth) {
        p.authorizer_name = b->ca_name;
        p.signature = b->ca_sig;
        p.token_key_name = b->ca_key_name;
        p.token_value = b->ca_token;
    }
    p.metrics = b->metrics;
    p.metrics_version = IOTC_VERSION;
    char probe[1];
    size_t needed = 0;
    int rc = iotc_username_build(&p, probe, sizeof probe, &needed);
    if (rc == IOTC_OK)
        return IOTC_OK; /* nothing applies: no username */
    if (rc != IOTC_ERR_TOO_LARGE || needed == 0)
        return rc;
    c->username = malloc(needed);
    if (!c->username)
        return IOTC_ERR_NOMEM;
    rc = iotc_username_build(&p, c->username, needed, &needed);
    if (rc != IOTC_OK)
        return rc;
    if (!c->username[0]) {
        free(c->username);
        c->username = NULL;
    }
    return IOTC_OK;
}

int iotc_client_new(const iotc_builder *b, const iotc_callbacks *cb, void *user, iotc_client **out)
{
    new_why[0] = 0;
    if (!out)
        return IOTC_ERR_INVALID_ARG;
    *out = NULL;
    if (!b) {
        snprintf(new_why, sizeof new_why, "no builder");
        return IOTC_ERR_INVALID_ARG;
    }
    iotc_client *c = calloc(1, sizeof *c);
    if (!c)
        return IOTC_ERR_NOMEM;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&c->cv, NULL);
    if (cb)
        c->cb = *cb;
    c->user = user;
    if (!(c->cfg = iotc_builder_clone(b)))
        return fail_new(c, IOTC_ERR_NOMEM, "out of memory%s", NULL);
    iotc_builder *k = c->cfg;

    /* Transport, port and ALPN as the seed chooses them (aws-broker.md §5.1). */
    iotc_link_kind kind = k->kind;
    if (!k->tls)
        kind = kind == IOTC_LINK_WSS ? IOTC_LINK_WS : IOTC_LINK_TCP;
    bool ws = kind == IOTC_LINK_WS || kind == IOTC_LINK_WSS;
    uint16_t port = k->port;
    if (!port)
        port = ws ? (kind == IOTC_LINK_WSS ? 443 : 80) : (kind == IOTC_LINK_TLS ? 8883 : 1883);
    const char *alpn = k->alpn_set ? k->alpn : NULL;
    bool has_identity = k->cert_file || k->cert_pem || k->p12_file;
    if (!k->alpn_set && kind == IOTC_LINK_TLS && port == 443 && has_identity)
        alpn = "x-amzn-mqtt-ca";

    c->tls.ca_file = k->ca_file;
    c->tls.ca_dir = k->ca_dir;
    c->tls.ca_pem = k->ca_pem;
    c->tls.ca_pem_len = k->ca_len;
    c->tls.cert_file = k->cert_file;
    c->tls.key_file = k->key_file;
    c->tls.cert_pem = k->cert_pem;
    c->tls.cert_pem_len = k->cert_len;
    c->tls.key_pem = k->key_pem;
    c->tls.key_pem_len = k->key_len;
    c->tls.pkcs12_file = k->p12_file;
    c->tls.pkcs12_password = k->p12_password;
    c->tls.alpn = alpn;
    c->tls.hostname = k->endpoint;

    int rc = build_username(c);
    if (rc != IOTC_OK)
        return fail_new(c, rc == IOTC_ERR_NOMEM ? rc : IOTC_ERR_INVALID_ARG,
                        "username: %s (a token without its key name, or over 65535 bytes?)",
                        iotc_strerror(rc));

    c->ecfg = k->e;
    c->ecfg.client_id = k->client_id;
    c->ecfg.username = c->username;
    c->ecfg.password = k->password_set ? k->password : NULL;
    c->ecfg.password_len = k->password_set ? k->password_len : 0;
    if (c->ecfg.password && !c->ecfg.password_len)
        c->ecfg.password = (const uint8_t *)""; /* an empty password is still a password */
    c->ecfg.will_topic = k->will_topic;
    c->ecfg.will_payload = k->will_payload;
    c->ecfg.will_payload_len = k->will_len;
    c->io = (iotc_engine_io){io_open, io_close, io_send, io_event, io_message, io_random};

    /* Validate the engine settings together now, not at connect. */
    const char *ewhy = NULL;
    iotc_engine *probe = NULL;
    rc = iotc_engine_new(&c->ecfg, &c->io, c, &probe, &ewhy);
    if (rc != IOTC_OK)
        return fail_new(c, rc, "%s", ewhy ? ewhy : iotc_strerror(rc));
    c->eng = probe;

    /* Unreadable credentials are reported here rather than at every retry. */
    if (kind == IOTC_LINK_TLS) {
        iotc_tls_why tw;
        iotc_tls_config t = c->tls;
        void *ctx = NULL;
        rc = iotc_tls_ctx_new(&t, &ctx, &tw);
        if (rc != IOTC_OK)
            return fail_new(c, rc, "%s", tw.text);
        iotc_tls_ctx_free(ctx);
    }
    iotc_link_config lc = {
        .kind = kind,
        .address = k->address ? k->address : k->endpoint,
        .host = k->endpoint,
        .port = port,
        .connect_timeout_ms = k->tcp_connect_timeout_ms,
        .tls = &c->tls,
    };
    iotc_link_cb lcb = {link_up, link_down, link_data, link_wake, link_handshake};
    char why[256] = "";
    rc = iotc_link_new(&lc, &lcb, c, &c->link, why, sizeof why);
    if (rc != IOTC_OK)
        return fail_new(c, rc == IOTC_ERR_TLS ? IOTC_ERR_CREDENTIALS : rc, "%s", why);
    *out = c;
    return IOTC_OK;
}

/* ---- lifecycle ------------------------------------------------------------------- */

/* Retires a stopped engine so that the next request or connect starts
 * afresh (its session ended with the disconnect).  mu held. */
static void reap_engine(iotc_client *c)
{
    if (!c->eng || !c->eng_closed || c->running)
        return;
    if (c->ngrave == sizeof c->grave / sizeof c->grave[0]) {
        if (on_service(c))
            return; /* full and maybe on the stack: keep using it; it answers CLOSED */
        bury_all(c);
    }
    c->grave[c->ngrave++] = c->eng;
    c->eng = NULL;
    c->eng_closed = false;
    free_subs(c); /* the session ended: its subscriptions' callbacks too */
    if (!on_service(c))
        iotc_link_wake(c->link); /* the service thread frees it */
}




/* Connect and disconnect run on the service thread: there at once, from
 * another thread at the next wake.  mu held. */
static void hand_over(iotc_client *c)
{
    if (on_service(c)) {
        run_commands(c);
        settle(c);
    } else {
        iotc_link_wake(c->link);
    }
}

int iotc_client_connect(iotc_client *c)
{
    if (!c)
        return IOTC_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    if (c->running) {
        pthread_mutex_unlock(&c->mu);
        return IOTC_ERR_BUSY;
    }
    int rc = IOTC_OK;
    reap_engine(c);
    if (!c->eng) {
        /* A client connects again after a disconnect with a fresh engine:
         * the old one ended its session (subscriptions, queue). */
        const char *ewhy = NULL;
        rc = iotc_engine_new(&c->ecfg, &c->io, c, &c->eng, &ewhy);
    }
    if (rc == IOTC_OK) {
        c->running = true;
        c->want_start = true;
        hand_over(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int iotc_client_disconnect(iotc_client *c)
{
    if (!c)
        return IOTC_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    if (!c->running) {
        pthread_mutex_unlock(&c->mu);
        return IOTC_ERR_NOT_CONNECTED;
    }
    c->want_start = false;
    c->want_stop = true;
    hand_over(c);
    pthread_mutex_unlock(&c->mu);
    return IOTC_OK;
}

void iotc_client_free(iotc_client *c)
{
    if (!c)
        return;
    if (c->link) {
        /* Stop on the service thread (DISCONNECT is sent), then the thread. */
        pthread_mutex_lock(&c->mu);
        bool was = c->running;
        if (was) {
            c->want_start = false;
            c->want_stop = true;
            iotc_link_wake(c->link);
        }
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 2;
        while (c->running && pthread_cond_timedwait(&c->cv, &c->mu, &dl) == 0) {
        }
        pthread_mutex_unlock(&c->mu);
        /* on_closed comes when the engine stops; the link may still be
         * writing the DISCONNECT and closing.  Let it finish (it gives up
         * after 2 s itself), whether this free or an earlier disconnect
         * stopped the engine. */
        for (int i = 0; i < 250 && !iotc_link_idle(c->link); i++) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        iotc_link_free(c->link);
        c->link = NULL;
    }
    /* No thread left: what is still queued completes here, on this thread. */
    iotc_engine_free(c->eng); /* outstanding operations complete with CLOSED */
    c->eng = NULL;
    bury_all(c);
    while (c->dh) {
        opctx *o = c->dh;
        c->dh = o->next;
        if (o->w) {
            o->w->done = true;
            o->w->status = o->status;
            waiter_put(o->w);
        }
        if (o->fn)
            o->fn(o->status, o->granted, o->user);
        free(o->filter);
        free(o);
    }
    free_subs(c);
    /* Calls never made: tell their owners, who may be waiting to free. */
    while (c->timers) {
        calltimer *t = c->timers;
        c->timers = t->next;
        t->fn(c, IOTC_ERR_CLOSED, t->user);
        free(t);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->username);
    iotc_builder_free(c->cfg);
    free(c);
}

/* ---- operations ------------------------------------------------------------------- */

static opctx *new_op(iotc_client *c, iotc_done_fn fn, void *user, waiter *w)
{
    opctx *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->c = c;
    o->fn = fn;
    o->user = user;
    o->w = w;
    return o;
}

/* After an engine call: on the service thread settle now; elsewhere let the
 * service thread do it (and deliver what the call completed). */
static void after_call(iotc_client *c)
{
    if (on_service(c))
        settle(c);
    else
        iotc_link_wake(c->link);
}

static int ensure_engine(iotc_client *c)
{
    reap_engine(c);
    if (c->eng)
        return IOTC_OK;
    const char *ewhy = NULL;
    return iotc_engine_new(&c->ecfg, &c->io, c, &c->eng, &ewhy);
}

static int do_publish(iotc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos, bool retain,
                      iotc_done_fn done, void *user, waiter *w)
{
    if (!c || !topic || (len && !payload) || qos > 1)
        return IOTC_ERR_INVALID_ARG;
    if (len > MAX_PAYLOAD)
        return IOTC_ERR_TOO_LARGE;
    if (c->cfg->aws_limits && iotc_aws_topic_limits_check(topic, strlen(topic), false, NULL) != IOTC_TOPIC_OK)
        return IOTC_ERR_TOO_LARGE;
    if (iotc_link_out_pending(c->link) > MAX_OUT_PENDING)
        return IOTC_ERR_BUSY;
    pthread_mutex_lock(&c->mu);
    /* Before connect, or after a disconnect, a fresh engine queues the
     * request until the next connect, as the seed allows. */
    int rc = ensure_engine(c);
    if (rc == IOTC_OK) {
        opctx *o = new_op(c, done, user, w);
        if (!o) {
            rc = IOTC_ERR_NOMEM;
        } else {
            if (w)
                w->refs++;
            rc = iotc_engine_publish(c->eng, topic, payload, len, qos, retain, op_done, o, iotc_link_now_ms());
            if (rc != IOTC_OK) {
                if (w)
                    w->refs--;
                free(o);
            } else {
                after_call(c);
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int iotc_publish(iotc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos, bool retain,
                 iotc_done_fn done, void *user)
{
    return do_publish(c, topic, payload, len, qos, retain, done, user, NULL);
}

/* *created: whether the filter had no registration before (a refused call
 * then takes it away again). */
static int sub_add(iotc_client *c, const char *filter, uint8_t qos, iotc_message_fn fn, void *user, bool *created)
{
    size_t n = strlen(filter);
    *created = false;
    for (subcb *s = c->subs; s; s = s->next) {
        if (s->len == n && memcmp(s->filter, filter, n) == 0) {
            *created = s->dead; /* removed during a dispatch: revived as new */
            s->fn = fn;
            s->user = user;
            s->qos = qos;
            s->dead = false;
            return IOTC_OK;
        }
    }
    subcb *s = calloc(1, sizeof *s + n + 1);
    if (!s)
        return IOTC_ERR_NOMEM;
    memcpy(s->filter, filter, n + 1);
    s->len = n;
    s->fn = fn;
    s->user = user;
    s->qos = qos;
    s->match = s->filter;
    s->match_len = n;
    const char *name, *f;
    size_t nl, fl;
    if (iotc_topic_split_share(s->filter, n, &name, &nl, &f, &fl)) {
        s->match = f;
        s->match_len = fl;
    }
    s->next = c->subs;
    c->subs = s;
    *created = true;
    return IOTC_OK;
}

static void sub_remove(iotc_client *c, const char *filter)
{
    size_t n = strlen(filter);
    for (subcb **p = &c->subs; *p; p = &(*p)->next) {
        if ((*p)->len == n && memcmp((*p)->filter, filter, n) == 0) {
            subcb *s = *p;
            if (c->dispatching) {
                s->dead = true; /* io_message is walking the list */
                return;
            }
            *p = s->next;
            free(s);
            return;
        }
    }
}

static int do_sub(iotc_client *c, bool unsub, const char *filter, uint8_t qos, iotc_message_fn fn, void *fn_user,
                  iotc_done_fn done, void *user, waiter *w)
{
    if (!c || !filter || qos > 1)
        return IOTC_ERR_INVALID_ARG;
    size_t flen = strlen(filter);
    if (iotc_topic_filter_check(filter, flen, true) != IOTC_TOPIC_OK)
        return IOTC_ERR_INVALID_ARG;
    if (c->cfg->aws_limits && iotc_aws_topic_limits_check(filter, flen, true, NULL) != IOTC_TOPIC_OK)
        return IOTC_ERR_TOO_LARGE;
    pthread_mutex_lock(&c->mu);
    int rc = ensure_engine(c);
    opctx *o = NULL;
    bool created = false;
    if (rc == IOTC_OK && !(o = new_op(c, done, user, w)))
        rc = IOTC_ERR_NOMEM;
    if (rc == IOTC_OK && !unsub && !(o->filter = strdup(filter)))
        rc = IOTC_ERR_NOMEM;
    if (rc == IOTC_OK && !unsub)
        rc = sub_add(c, filter, qos, fn, fn_user, &created);
    if (rc == IOTC_OK) {
        if (w)
            w->refs++;
        uint64_t now = iotc_link_now_ms();
        rc = unsub ? iotc_engine_unsubscribe(c->eng, filter, op_done, o, now)
                   : iotc_engine_subscribe(c->eng, filter, qos, op_done, o, now);
        if (rc != IOTC_OK) {
            if (w)
                w->refs--;
            /* Refused at the call (offline with the queue off, say): no
             * callback follows, so a registration this call made must not
             * stay to take messages or be resubscribed. */
            if (created)
                sub_remove(c, filter);
        } else {
            o = NULL;
            if (unsub)
                sub_remove(c, filter);
            after_call(c);
        }
    }
    if (o)
        free(o->filter);
    free(o);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int iotc_subscribe(iotc_client *c, const char *filter, uint8_t qos, iotc_message_fn on_msg, void *msg_user,
                   iotc_done_fn done, void *user)
{
    return do_sub(c, false, filter, qos, on_msg, msg_user, done, user, NULL);
}

int iotc_unsubscribe(iotc_client *c, const char *filter, iotc_done_fn done, void *user)
{
    return do_sub(c, true, filter, 0, NULL, NULL, done, user, NULL);
}

int iotc_resubscribe_existing_topics(iotc_client *c, iotc_done_fn done, void *user)
{
    if (!c)
        return IOTC_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    int n = 0, rc = IOTC_OK;
    /* Subscribing a filter again replaces the broker's subscription; do_sub
     * updates an existing entry in place, so the walk is safe. */
    for (subcb *s = c->subs; s && rc == IOTC_OK; s = s->next) {
        if (s->dead)
            continue;
        rc = do_sub(c, false, s->filter, s->qos, s->fn, s->user, done, user, NULL);
        if (rc == IOTC_OK)
            n++;
    }
    pthread_mutex_unlock(&c->mu);
    return rc == IOTC_OK ? n : rc;
}

/* ---- timers ------------------------------------------------------------------------- */

int iotc_client_call_after(iotc_client *c, uint32_t ms, iotc_call_fn fn, void *user)
{
    if (!c || !fn)
        return IOTC_ERR_INVALID_ARG;
    calltimer *t = calloc(1, sizeof *t);
    if (!t)
        return IOTC_ERR_NOMEM;
    pthread_mutex_lock(&c->mu);
    if (!c->link) { /* iotc_client_free has stopped the service thread */
        pthread_mutex_unlock(&c->mu);
        free(t);
        return IOTC_ERR_CLOSED;
    }
    t->at = iotc_link_now_ms() + ms;
    t->seq = ++c->timer_seq;
    t->fn = fn;
    t->user = user;
    calltimer **p = &c->timers;
    while (*p && (*p)->at <= t->at)
        p = &(*p)->next;
    t->next = *p;
    *p = t;
    /* The link's timer is only set on the service thread: from another
     * thread, wake it and let link_wake settle.  There, only the timer is
     * moved (it keeps an earlier deadline): no engine tick, and so no other
     * callback, inside this call. */
    if (iotc_link_on_service_thread(c->link))
        iotc_link_set_timer(c->link, t->at);
    else
        iotc_link_wake(c->link);
    pthread_mutex_unlock(&c->mu);
    return IOTC_OK;
}

int iotc_client_cancel_calls(iotc_client *c, iotc_call_fn fn, void *user)
{
    if (!c || !fn)
        return IOTC_ERR_INVALID_ARG;
    int n = 0;
    /* mu is held by the service thread for the whole of a callback, so a
     * call under way finishes before this takes it. */
    pthread_mutex_lock(&c->mu);
    for (calltimer **p = &c->timers; *p;) {
        calltimer *t = *p;
        if (t->fn == fn && t->user == user) {
            *p = t->next;
            free(t);
            n++;
        } else {
            p = &t->next;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return n; /* the link's timer may fire early once: harmless */
}

bool iotc_client_on_service_thread(const iotc_client *c)
{
    return c && on_service(c);
}

/* ---- blocking helpers --------------------------------------------------------------- */

static void deadline_in(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits with mu held once until *counter leaves `seen` (an event came);
 * false when timeout_ms ran out first. */
static bool wait_moved(iotc_client *c, const uint64_t *counter, uint64_t seen, uint32_t timeout_ms)
{
    struct timespec dl;
    deadline_in(&dl, timeout_ms);
    int e = 0;
    while (*counter == seen && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    return *counter != seen;
}

/* Waits for *w with mu held once; returns its status or IOTC_ERR_TIMEOUT. */
static int wait_for(iotc_client *c, waiter *w, uint32_t timeout_ms, uint8_t *granted)
{
    struct timespec dl;
    deadline_in(&dl, timeout_ms);
    int e = 0;
    while (!w->done && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    int rc = w->done ? w->status : IOTC_ERR_TIMEOUT;
    if (w->done && granted)
        *granted = w->granted;
    waiter_put(w);
    return rc;
}

/* The three *_wait calls: refused on the service thread (it would wait on
 * itself); otherwise a waiter, and mu held until finish_wait. */
static int start_wait(iotc_client *c, waiter **w)
{
    if (!c)
        return IOTC_ERR_INVALID_ARG;
    if (on_service(c))
        return IOTC_ERR_BUSY;
    if (!(*w = calloc(1, sizeof **w)))
        return IOTC_ERR_NOMEM;
    (*w)->refs = 1;
    pthread_mutex_lock(&c->mu);
    return IOTC_OK;
}

/* `rc` is the operation's start: on success, waits for its completion. */
static int finish_wait(iotc_client *c, waiter *w, int rc, uint32_t timeout_ms, uint8_t *granted)
{
    rc = rc == IOTC_OK ? wait_for(c, w, timeout_ms, granted) : (waiter_put(w), rc);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int iotc_publish_wait(iotc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos, bool retain,
                      uint32_t timeout_ms)
{
    waiter *w;
    int rc = start_wait(c, &w);
    if (rc != IOTC_OK)
        return rc;
    return finish_wait(c, w, do_publish(c, topic, payload, len, qos, retain, NULL, NULL, w), timeout_ms, NULL);
}

int iotc_subscribe_wait(iotc_client *c, const char *filter, uint8_t qos, iotc_message_fn on_msg, void *msg_user,
                        uint32_t timeout_ms, uint8_t *granted)
{
    waiter *w;
    int rc = start_wait(c, &w);
    if (rc != IOTC_OK)
        return rc;
    return finish_wait(c, w, do_sub(c, false, filter, qos, on_msg, msg_user, NULL, NULL, w), timeout_ms, granted);
}

int iotc_unsubscribe_wait(iotc_client *c, const char *filter, uint32_t timeout_ms)
{
    waiter *w;
    int rc = start_wait(c, &w);
    if (rc != IOTC_OK)
        return rc;
    return finish_wait(c, w, do_sub(c, true, filter, 0, NULL, NULL, NULL, NULL, w), timeout_ms, NULL);
}

int iotc_client_connect_wait(iotc_client *c, uint32_t timeout_ms, bool *session_present)
{
    if (!c)
        return IOTC_ERR_INVALID_ARG;
    if (on_service(c))
        return IOTC_ERR_BUSY;
    pthread_mutex_lock(&c->mu);
    uint64_t seen = c->conn_events;
    int rc = iotc_client_connect(c);
    if (rc == IOTC_OK) {
        if (!wait_moved(c, &c->conn_events, seen, timeout_ms)) {
            rc = IOTC_ERR_TIMEOUT;
        } else {
            rc = c->conn_status;
            if (session_present)
                *session_present = c->conn_sp;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int iotc_client_disconnect_wait(iotc_client *c, uint32_t timeout_ms)
{
    if (!c)
        return IOTC_ERR_INVALID_ARG;
    if (on_service(c))
        return IOTC_ERR_BUSY;
    pthread_mutex_lock(&c->mu);
    uint64_t seen = c->closed_events;
    int rc = iotc_client_disconnect(c);
    if (rc == IOTC_OK)
        rc = wait_moved(c, &c->closed_events, seen, timeout_ms) ? IOTC_OK : IOTC_ERR_TIMEOUT;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int iotc_client_get_stats(iotc_client *c, iotc_client_stats *out)
{
    if (!c || !out)
        return IOTC_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    if (c->eng) {
        iotc_engine_stats s;
        iotc_engine_get_stats(c->eng, &s);
        out->connected = s.connected;
        out->queued = s.queued;
        out->inflight = s.inflight;
        out->dropped = s.dropped;
        out->drained = s.drained;
        out->attempts = s.attempts;
    }
    out->messages = c->messages;
    pthread_mutex_unlock(&c->mu);
    return IOTC_OK;
}
