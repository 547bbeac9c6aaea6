/*
 * svc/shadow.c: the Device Shadow client of iotc/shadow.h, the protocol
 * core (shadow_core.h) joined to the public client API.
 *
 * The lock, the references, the request lists, the timeouts, the
 * subscription pair per operation, closing and the blocking helpers' wait
 * are svc/svc_base.h's (read it for the locking and lifetime rules); what
 * is the shadow's own is here: the clientToken that matches an answer to
 * its request (any number pending per operation), the delta and documents
 * streams, and what a completion carries.
 *
 * `b.mu` guards the core and everything here.  Every change is made in two
 * steps: decide under `mu` (and take what will be needed out of the shared
 * state), then act without it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "iotc/shadow.h"
#include "svc/shadow_core.h"
#include "svc/svc_base.h"

typedef struct req {
    iotc_svc_req h; /* h.sub: the operation */
    iotc_shadow_fn cb;
    void *user;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    char *payload; /* until published */
    size_t payload_len;
} req;

/* The done-callback context of one request's PUBLISH. */
typedef struct {
    struct iotc_shadow *s;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
} pubctx;

struct iotc_shadow {
    iotc_svc b; /* first: an iotc_svc * is an iotc_shadow * */
    iotc_shadow_core *core;
    iotc_svc_sub sub[IOTC_SHADOW_NOPS];
    iotc_shadow_doc_fn delta_fn, docs_fn;
    void *delta_user, *docs_user;
    bool delta_on, docs_on;
};

static __thread char why_buf[160];

const char *iotc_shadow_why(void)
{
    return why_buf;
}

static int fail(int rc, const char *why)
{
    snprintf(why_buf, sizeof why_buf, "%s", why ? why : iotc_strerror(rc));
    return rc;
}

void iotc_shadow_config_init(iotc_shadow_config *cfg)
{
    if (cfg)
        cfg->max_pending = IOTC_SHADOW_DEFAULT_MAX_PENDING;
}

/* Token randomness.  Should OpenSSL fail, the core's counter still keeps
 * this shadow's tokens unique; the clock and the address only lower the
 * odds that another client of the same shadow picks the same ones. */
static void random_bytes(uint8_t out[IOTC_SHADOW_RANDOM_BYTES], const void *salt)
{
    if (RAND_bytes(out, IOTC_SHADOW_RANDOM_BYTES) == 1)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t a = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint64_t b = (uint64_t)(uintptr_t)salt ^ ((uint64_t)getpid() << 32);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(a >> (8 * i));
        out[8 + i] = (uint8_t)(b >> (8 * i));
    }
}

/* ---- the hooks svc_base.c calls (iotc_svc_ops) ------------------------------------------ */

static void destroy(iotc_svc *b)
{
    iotc_shadow *s = (iotc_shadow *)b;
    iotc_shadow_core_free(s->core);
    free(s);
}

/* ---- requests and their completion ------------------------------------------------------ */

static void free_req(req *r)
{
    if (r) {
        free(r->payload);
        free(r);
    }
}

/* mu held: the pending request with this token, taken out of the core and
 * the list; NULL when it is not pending (completed meanwhile). */
static req *take_token(iotc_shadow *s, const char *token)
{
    iotc_shadow_taken tk;
    if (!iotc_shadow_core_take(s->core, token, &tk))
        return NULL;
    req *r = tk.user;
    iotc_svc_unlink(&s->b, &r->h);
    return r;
}

/* Delivers one completion without a document, and frees the request. */
static void deliver_status(iotc_svc *b, iotc_svc_req *h)
{
    req *r = (req *)h;
    iotc_shadow_result res = {h->status, 0, "", NULL, 0, 0};
    r->cb((iotc_shadow *)b, &res, r->user);
    free_req(r);
}

/* mu held: the core's deadlines and pending requests, for svc_base.c's
 * timer and closing. */
static iotc_svc_req *take_due(iotc_svc *b, uint64_t now)
{
    iotc_shadow_taken tk;
    return iotc_shadow_core_expire(((iotc_shadow *)b)->core, now, &tk) ? tk.user : NULL;
}

static iotc_svc_req *take_any(iotc_svc *b)
{
    iotc_shadow_taken tk;
    return iotc_shadow_core_take_any(((iotc_shadow *)b)->core, &tk) ? tk.user : NULL;
}

static uint64_t next_deadline(const iotc_svc *b)
{
    return iotc_shadow_core_next_deadline(((const iotc_shadow *)b)->core);
}

/* ---- publishing --------------------------------------------------------------------------- */

static void on_pub_done(int status, uint8_t granted, void *user)
{
    (void)granted;
    pubctx *pc = user;
    iotc_shadow *s = pc->s;
    req *r = NULL;
    pthread_mutex_lock(&s->b.mu);
    if (status == IOTC_ERR_CLOSED)
        iotc_svc_forget_subscriptions(&s->b);
    /* PUBACK is not the answer; only a failure completes the request.  If
     * the answer came first, the token is gone and this changes nothing. */
    if (status != IOTC_OK && !s->b.closed)
        r = take_token(s, pc->token);
    pthread_mutex_unlock(&s->b.mu);
    if (r) {
        r->h.status = status;
        iotc_svc_complete(&s->b, &r->h);
    }
    free(pc);
    iotc_svc_unref(&s->b);
}

/* A request ready to go: its token and payload, out of the shared state. */
typedef struct outgoing {
    struct outgoing *next;
    iotc_shadow_op op;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    char *payload;
    size_t len;
} outgoing;

/* mu held: marks `r` published and moves what its PUBLISH needs into a new
 * outgoing (which holds a reference for its pubctx); NULL when out of
 * memory (r then stays unpublished and will time out). */
static outgoing *take_outgoing(iotc_shadow *s, req *r)
{
    outgoing *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->op = (iotc_shadow_op)r->h.sub;
    memcpy(o->token, r->token, sizeof o->token);
    o->payload = r->payload;
    o->len = r->payload_len;
    r->payload = NULL;
    r->h.published = true;
    s->b.refs++;
    return o;
}

/* mu not held: publishes `o` (freed here).  Returns the call's status; on
 * failure the reference is dropped and the request is left to the caller. */
static int publish_outgoing(iotc_shadow *s, outgoing *o)
{
    int rc = IOTC_ERR_NOMEM;
    pubctx *pc = calloc(1, sizeof *pc);
    if (pc) {
        pc->s = s;
        memcpy(pc->token, o->token, sizeof pc->token);
        const char *topic = iotc_shadow_core_topic(s->core, o->op, IOTC_SHADOW_SFX_REQUEST);
        rc = iotc_publish(s->b.c, topic, o->payload, o->len, 1, false, on_pub_done, pc);
        if (rc != IOTC_OK)
            free(pc);
    }
    free(o->payload);
    free(o);
    if (rc != IOTC_OK)
        iotc_svc_unref(&s->b);
    return rc;
}

/* Publishes a list of outgoing requests on the service thread; a refused
 * call completes its request with the refusal. */
static void publish_all(iotc_shadow *s, outgoing *list)
{
    while (list) {
        outgoing *o = list;
        list = o->next;
        char token[IOTC_SHADOW_TOKEN_MAX + 1];
        memcpy(token, o->token, sizeof token);
        int rc = publish_outgoing(s, o);
        if (rc == IOTC_OK)
            continue;
        pthread_mutex_lock(&s->b.mu);
        req *r = take_token(s, token);
        pthread_mutex_unlock(&s->b.mu);
        if (r) {
            r->h.status = rc;
            iotc_svc_complete(&s->b, &r->h);
        }
    }
}

/* ---- subscribing --------------------------------------------------------------------------- */

/* `n` SUBACKs of op's subscription came in (or will not come: a refused
 * call counts for those not acknowledged) with `status`.  When the last is
 * in: publish what waited, or fail it.  `mine`, when not NULL, is the token
 * of a request whose caller is still in the call that subscribed: if it
 * fails here it is handed back through *mine_out instead of completed, for
 * the call to refuse.  (A token, not the request's address: that request may have
 * timed out and its memory gone to another one.) */
static void subacks_in(iotc_shadow *s, iotc_shadow_op op, int status, int n, const char *mine, req **mine_out)
{
    outgoing *pubs = NULL, **ptail = &pubs;
    iotc_svc_req *fails = NULL, **ftail = &fails;
    pthread_mutex_lock(&s->b.mu);
    if (!iotc_svc_sub_settle(&s->b, (int)op, status, n)) {
        pthread_mutex_unlock(&s->b.mu);
        return;
    }
    int err = s->sub[op].err;
    for (iotc_svc_req **p = &s->b.reqs; *p;) {
        req *r = (req *)*p;
        if (r->h.sub != (int)op || r->h.published) {
            p = &r->h.next;
            continue;
        }
        if (err == IOTC_OK) {
            outgoing *o = take_outgoing(s, r);
            if (o) {
                *ptail = o;
                ptail = &o->next;
            }
            p = &r->h.next;
            continue;
        }
        iotc_shadow_core_take(s->core, r->token, NULL);
        *p = r->h.next;
        r->h.next = NULL;
        r->h.status = err;
        if (mine && strcmp(r->token, mine) == 0) {
            *mine_out = r;
            continue;
        }
        *ftail = &r->h;
        ftail = &r->h.next;
    }
    pthread_mutex_unlock(&s->b.mu);
    publish_all(s, pubs);
    iotc_svc_complete(&s->b, fails);
}

static void on_subacks(iotc_svc *b, int i, int status, int n)
{
    subacks_in((iotc_shadow *)b, (iotc_shadow_op)i, status, n, NULL, NULL);
}

static void on_msg(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   uint8_t qos, bool retain, bool dup, void *user);

/* Subscribes to op's accepted and rejected topics (mu not held; after
 * iotc_svc_sub_start). */
static void subscribe_op(iotc_shadow *s, iotc_shadow_op op, const char *mine, req **mine_out)
{
    const char *topics[2] = {iotc_shadow_core_topic(s->core, op, IOTC_SHADOW_SFX_ACCEPTED),
                             iotc_shadow_core_topic(s->core, op, IOTC_SHADOW_SFX_REJECTED)};
    int n = 0;
    int rc = iotc_svc_subscribe_pair(&s->b, (int)op, topics, on_msg, &n);
    if (rc != IOTC_OK) {
        subacks_in(s, op, rc, n, mine, mine_out);
        iotc_svc_unref_n(&s->b, n);
    }
}

/* ---- what arrives ------------------------------------------------------------------------- */

static void on_msg(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c, (void)qos, (void)retain, (void)dup;
    iotc_shadow *s = user;
    iotc_shadow_event ev;
    iotc_shadow_doc_fn fn = NULL;
    void *fn_user = NULL;
    req *r = NULL;
    pthread_mutex_lock(&s->b.mu);
    if (s->b.closed) {
        pthread_mutex_unlock(&s->b.mu);
        return;
    }
    s->b.refs++; /* a callback below may free the shadow */
    iotc_shadow_core_input(s->core, topic, topic_len, payload, len, &ev);
    switch (ev.type) {
    case IOTC_SHADOW_EV_RESPONSE:
        r = ev.user;
        iotc_svc_unlink(&s->b, &r->h);
        break;
    case IOTC_SHADOW_EV_DELTA:
        fn = s->delta_fn;
        fn_user = s->delta_user;
        break;
    case IOTC_SHADOW_EV_DOCUMENTS:
        fn = s->docs_fn;
        fn_user = s->docs_user;
        break;
    case IOTC_SHADOW_EV_IGNORED:
    default:
        break;
    }
    pthread_mutex_unlock(&s->b.mu);
    if (r) {
        iotc_shadow_result res = {ev.status, ev.code, ev.message, (const char *)payload, len,
                                  ev.has_version ? ev.version : 0};
        r->cb(s, &res, r->user);
        free_req(r);
    } else if (fn) {
        fn(s, (const char *)payload, len, ev.version, fn_user);
    }
    iotc_shadow_event_clear(&ev);
    iotc_svc_unref(&s->b);
}

/* ---- creation and closing ------------------------------------------------------------------ */

static void close_now(iotc_svc *b, bool client_alive);

static const iotc_svc_ops shadow_ops = {destroy, deliver_status, take_due, take_any, next_deadline, on_subacks,
                                        close_now};

int iotc_shadow_new_with_config(iotc_client *c, const char *thing, const char *name, const iotc_shadow_config *cfg,
                                iotc_shadow **out)
{
    why_buf[0] = '\0';
    if (!out)
        return fail(IOTC_ERR_INVALID_ARG, "no place for the shadow (out is NULL)");
    *out = NULL;
    if (!c)
        return fail(IOTC_ERR_INVALID_ARG, "no client");
    iotc_shadow *s = calloc(1, sizeof *s);
    if (!s)
        return fail(IOTC_ERR_NOMEM, NULL);
    const char *why = NULL;
    int rc = iotc_shadow_core_new(thing, name, cfg ? cfg->max_pending : 0, &s->core, &why);
    if (rc != IOTC_OK) {
        free(s);
        return fail(rc, why && why[0] ? why : NULL);
    }
    iotc_svc_init(&s->b, c, &shadow_ops, s->sub, IOTC_SHADOW_NOPS);
    *out = s;
    return IOTC_OK;
}

int iotc_shadow_new(iotc_client *c, const char *thing, const char *name, iotc_shadow **out)
{
    return iotc_shadow_new_with_config(c, thing, name, NULL, out);
}

/* On the service thread (or, when the client is being freed, on the
 * freeing thread): completes everything, stops the timers and the
 * subscriptions (every filter ever asked for, the streams' too).
 * `client_alive` is false when the client is being freed and must not be
 * asked for anything more. */
static void close_now(iotc_svc *b, bool client_alive)
{
    iotc_shadow *s = (iotc_shadow *)b;
    iotc_svc_req *done;
    pthread_mutex_lock(&b->mu);
    if (!iotc_svc_close_begin(b, &done)) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    const char *topics[2 * IOTC_SHADOW_NOPS + 2];
    size_t nt = 0;
    for (int op = 0; op < IOTC_SHADOW_NOPS; op++) {
        if (!s->sub[op].tried)
            continue;
        topics[nt++] = iotc_shadow_core_topic(s->core, (iotc_shadow_op)op, IOTC_SHADOW_SFX_ACCEPTED);
        topics[nt++] = iotc_shadow_core_topic(s->core, (iotc_shadow_op)op, IOTC_SHADOW_SFX_REJECTED);
    }
    if (s->delta_on)
        topics[nt++] = iotc_shadow_core_topic(s->core, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA);
    if (s->docs_on)
        topics[nt++] = iotc_shadow_core_topic(s->core, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS);
    s->delta_on = s->docs_on = false;
    s->delta_fn = s->docs_fn = NULL;
    pthread_mutex_unlock(&b->mu);
    iotc_svc_close_end(b, done, client_alive, topics, nt);
}

void iotc_shadow_free(iotc_shadow *s)
{
    if (s)
        iotc_svc_free(&s->b);
}

/* ---- requests ------------------------------------------------------------------------------ */

static int do_request(iotc_shadow *s, iotc_shadow_op op, const char *json, uint32_t timeout_ms, iotc_shadow_fn cb,
                      void *user)
{
    why_buf[0] = '\0';
    if (!s || !cb)
        return fail(IOTC_ERR_INVALID_ARG, !s ? "no shadow" : "no callback");
    if (op == IOTC_SHADOW_OP_UPDATE && !json)
        return fail(IOTC_ERR_INVALID_ARG, "an update needs a document");
    req *r = calloc(1, sizeof *r);
    if (!r)
        return fail(IOTC_ERR_NOMEM, NULL);
    r->h.sub = (int)op;
    r->cb = cb;
    r->user = user;
    uint8_t rnd[IOTC_SHADOW_RANDOM_BYTES];
    random_bytes(rnd, r);

    pthread_mutex_lock(&s->b.mu);
    if (s->b.closed) {
        pthread_mutex_unlock(&s->b.mu);
        free(r);
        return fail(IOTC_ERR_CLOSED, "the shadow is being freed");
    }
    uint64_t now = iotc_svc_now_ms();
    iotc_shadow_request rq;
    const char *why = NULL;
    int rc = iotc_shadow_core_begin(s->core, op, json, json ? strlen(json) : 0, rnd, now, timeout_ms, r, &rq, &why);
    if (rc != IOTC_OK) {
        pthread_mutex_unlock(&s->b.mu);
        free(r);
        return fail(rc, why);
    }
    memcpy(r->token, rq.token, sizeof r->token);
    r->payload = rq.payload;
    r->payload_len = rq.payload_len;
    iotc_svc_link(&s->b, &r->h);
    outgoing *o = NULL;
    bool subscribe = false;
    if (s->sub[op].state == IOTC_SVC_SUB_READY)
        o = take_outgoing(s, r);
    else
        subscribe = iotc_svc_sub_start(&s->b, (int)op);
    uint32_t ms = 0;
    bool arm = iotc_svc_plan_timer(&s->b, now, &ms);
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    memcpy(token, r->token, sizeof token);
    bool oom = s->sub[op].state == IOTC_SVC_SUB_READY && !o;
    if (oom) {
        take_token(s, token);
    }
    pthread_mutex_unlock(&s->b.mu);
    if (oom) {
        free_req(r);
        if (arm)
            iotc_svc_arm_timer(&s->b, ms);
        return fail(IOTC_ERR_NOMEM, NULL);
    }
    /* From here on `r` may be completed and freed by the service thread at
     * any time (a timeout, say): only `token` is used. */
    if (arm && !iotc_svc_arm_timer(&s->b, ms)) {
        pthread_mutex_lock(&s->b.mu);
        req *mine = take_token(s, token);
        pthread_mutex_unlock(&s->b.mu);
        if (mine) {
            free_req(mine);
            /* The subscription or publish started below is not needed. */
            if (o) {
                free(o->payload);
                free(o);
                iotc_svc_unref(&s->b);
            }
            if (subscribe) {
                subacks_in(s, op, IOTC_ERR_NOMEM, 2, NULL, NULL);
                iotc_svc_unref_n(&s->b, 2);
            }
            return fail(IOTC_ERR_NOMEM, "no timer for the request's timeout");
        }
    }
    if (subscribe) {
        req *mine = NULL;
        subscribe_op(s, op, token, &mine);
        if (mine) {
            rc = mine->h.status;
            free_req(mine);
            return fail(rc, "the client refused to subscribe to the shadow's response topics");
        }
    }
    if (o) {
        rc = publish_outgoing(s, o);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&s->b.mu);
            req *mine = take_token(s, token);
            pthread_mutex_unlock(&s->b.mu);
            if (mine) {
                free_req(mine);
                return fail(rc, "the client refused to publish the request");
            }
            /* Completed meanwhile (timed out, closed): its callback has run. */
        }
    }
    return IOTC_OK;
}

int iotc_shadow_get(iotc_shadow *s, uint32_t timeout_ms, iotc_shadow_fn cb, void *user)
{
    return do_request(s, IOTC_SHADOW_OP_GET, NULL, timeout_ms, cb, user);
}

int iotc_shadow_update(iotc_shadow *s, const char *json, uint32_t timeout_ms, iotc_shadow_fn cb, void *user)
{
    return do_request(s, IOTC_SHADOW_OP_UPDATE, json, timeout_ms, cb, user);
}

int iotc_shadow_delete(iotc_shadow *s, uint32_t timeout_ms, iotc_shadow_fn cb, void *user)
{
    return do_request(s, IOTC_SHADOW_OP_DELETE, NULL, timeout_ms, cb, user);
}

/* ---- streams ------------------------------------------------------------------------------- */

static int stream(iotc_shadow *s, iotc_shadow_sfx sfx, iotc_shadow_doc_fn fn, void *user, iotc_done_fn done,
                  void *done_user)
{
    why_buf[0] = '\0';
    if (!s)
        return fail(IOTC_ERR_INVALID_ARG, "no shadow");
    bool delta = sfx == IOTC_SHADOW_SFX_DELTA;
    pthread_mutex_lock(&s->b.mu);
    if (s->b.closed) {
        pthread_mutex_unlock(&s->b.mu);
        return fail(IOTC_ERR_CLOSED, "the shadow is being freed");
    }
    iotc_shadow_doc_fn *pfn = delta ? &s->delta_fn : &s->docs_fn;
    void **puser = delta ? &s->delta_user : &s->docs_user;
    bool *pon = delta ? &s->delta_on : &s->docs_on;
    iotc_shadow_doc_fn old_fn = *pfn;
    void *old_user = *puser;
    bool old_on = *pon;
    *pfn = fn;
    *puser = user;
    *pon = *pon || fn != NULL; /* unsubscribed at close if ever subscribed */
    pthread_mutex_unlock(&s->b.mu);
    const char *topic = iotc_shadow_core_topic(s->core, IOTC_SHADOW_OP_UPDATE, sfx);
    int rc = fn ? iotc_subscribe(s->b.c, topic, 1, on_msg, s, done, done_user)
                : iotc_unsubscribe(s->b.c, topic, done, done_user);
    if (rc != IOTC_OK) {
        pthread_mutex_lock(&s->b.mu);
        if (!s->b.closed && *pfn == fn && *puser == user) {
            *pfn = old_fn;
            *puser = old_user;
            *pon = old_on;
        }
        pthread_mutex_unlock(&s->b.mu);
        return fail(rc, fn ? "the client refused the subscription" : "the client refused the unsubscription");
    }
    return IOTC_OK;
}

int iotc_shadow_on_delta(iotc_shadow *s, iotc_shadow_doc_fn fn, void *user, iotc_done_fn done, void *done_user)
{
    return stream(s, IOTC_SHADOW_SFX_DELTA, fn, user, done, done_user);
}

int iotc_shadow_on_documents(iotc_shadow *s, iotc_shadow_doc_fn fn, void *user, iotc_done_fn done, void *done_user)
{
    return stream(s, IOTC_SHADOW_SFX_DOCUMENTS, fn, user, done, done_user);
}

/* ---- blocking helpers ---------------------------------------------------------------------- */

typedef struct {
    iotc_svc_box box;
    int status;
    int code;
    char *json;
} waitbox;

static void box_release(iotc_svc_box *w)
{
    free(((waitbox *)w)->json);
    free(w);
}

static void on_wait_done(iotc_shadow *s, const iotc_shadow_result *r, void *user)
{
    waitbox *w = user;
    char *copy = NULL;
    if (r->json) {
        copy = malloc(r->json_len + 1);
        if (copy) {
            memcpy(copy, r->json, r->json_len);
            copy[r->json_len] = '\0';
        }
    }
    pthread_mutex_lock(&s->b.mu);
    w->status = r->status;
    w->code = r->code;
    w->json = copy;
    iotc_svc_box_done(&s->b, &w->box);
    pthread_mutex_unlock(&s->b.mu);
}

static int do_wait(iotc_shadow *s, iotc_shadow_op op, const char *json, uint32_t timeout_ms, int *code, char **out)
{
    if (code)
        *code = 0;
    if (out)
        *out = NULL;
    why_buf[0] = '\0';
    if (!s)
        return fail(IOTC_ERR_INVALID_ARG, "no shadow");
    if (iotc_client_on_service_thread(s->b.c))
        return fail(IOTC_ERR_BUSY, "a blocking call from a callback would wait on its own thread");
    waitbox *w = iotc_svc_box_new(sizeof *w, box_release);
    if (!w)
        return fail(IOTC_ERR_NOMEM, NULL);
    int rc = do_request(s, op, json, timeout_ms, on_wait_done, w);
    if (rc != IOTC_OK) {
        free(w);
        return rc;
    }
    pthread_mutex_lock(&s->b.mu);
    if (iotc_svc_box_wait(&s->b, &w->box, timeout_ms)) {
        rc = w->status;
        if (code)
            *code = w->code;
        if (out) {
            *out = w->json;
            w->json = NULL;
        }
    } else {
        rc = IOTC_ERR_TIMEOUT;
    }
    iotc_svc_box_put(&w->box);
    pthread_mutex_unlock(&s->b.mu);
    return rc;
}

int iotc_shadow_get_wait(iotc_shadow *s, uint32_t timeout_ms, int *code, char **json)
{
    return do_wait(s, IOTC_SHADOW_OP_GET, NULL, timeout_ms, code, json);
}

int iotc_shadow_update_wait(iotc_shadow *s, const char *json, uint32_t timeout_ms, int *code, char **json_out)
{
    return do_wait(s, IOTC_SHADOW_OP_UPDATE, json, timeout_ms, code, json_out);
}

int iotc_shadow_delete_wait(iotc_shadow *s, uint32_t timeout_ms, int *code, char **json)
{
    return do_wait(s, IOTC_SHADOW_OP_DELETE, NULL, timeout_ms, code, json);
}
