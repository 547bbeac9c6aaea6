/*
 * svc/shadow.c: the Device Shadow client of iotc/shadow.h, the protocol
 * core (shadow_core.h) joined to the public client API.
 *
 * Locking.  `mu` guards the core and everything here, and is a leaf lock:
 * it is never held while calling into the client (iotc_subscribe,
 * iotc_publish, iotc_client_call_after...) or a user callback.  The client
 * calls us (message, SUBACK, PUBACK and timer callbacks) while holding its
 * own lock, so the order is always client lock, then `mu`; calling the
 * client with `mu` held would invert it.  Every change is therefore made
 * in two steps: decide under `mu` (and take what will be needed out of the
 * shared state), then act without it.
 *
 * Lifetime.  The client keeps our pointer in outstanding operations and
 * timers, so the struct is reference-counted: the user holds one reference,
 * each SUBSCRIBE, PUBLISH and timer we started holds one, and the memory
 * goes with the last.  Closing (iotc_shadow_free) runs on the service
 * thread, where no other callback of ours can be half-way through.
 *
 * Threads of delivery.  Everything the client reports reaches us on the
 * service thread, so most completions are delivered right there.  The
 * exception is a request that fails inside a call made on another thread
 * (a SUBSCRIBE the client refused at its call, failing the requests that
 * were waiting for it): those are handed to the service thread with a 0 ms
 * timer, to keep the contract that callbacks run there.
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

typedef enum { SUB_NONE, SUB_PENDING, SUB_READY } sub_state;

typedef struct req {
    struct req *next;
    iotc_shadow_op op;
    iotc_shadow_fn cb;
    void *user;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    char *payload; /* until published */
    size_t payload_len;
    bool published;
    int status; /* on the deferred list: the status to deliver */
} req;

/* The done-callback context of one SUBSCRIBE of an operation's topics. */
typedef struct {
    struct iotc_shadow *s;
    iotc_shadow_op op;
} subctx;

/* The done-callback context of one request's PUBLISH. */
typedef struct {
    struct iotc_shadow *s;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
} pubctx;

struct iotc_shadow {
    iotc_client *c;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* close_done, and the blocking helpers' boxes */
    int refs;
    bool closed;     /* closing began: nothing new starts, nothing more is delivered */
    bool close_done; /* closing finished on the service thread */
    iotc_shadow_core *core;
    sub_state sub[IOTC_SHADOW_NOPS];
    int sub_wait[IOTC_SHADOW_NOPS]; /* SUBACKs still expected */
    int sub_err[IOTC_SHADOW_NOPS];  /* the first failure among them */
    subctx subctx[IOTC_SHADOW_NOPS];
    bool sub_tried[IOTC_SHADOW_NOPS]; /* subscribed at least once: unsubscribe at close */
    req *reqs;      /* pending, in the core's table too */
    req *deferred;  /* completed off the service thread, to deliver there */
    bool flush_armed;
    uint64_t timer_at; /* the deadline of the earliest timer armed, UINT64_MAX none */
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

/* The clock the core gets: monotonic, as the client's own. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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

/* ---- references ------------------------------------------------------------------------ */

static void destroy(iotc_shadow *s)
{
    iotc_shadow_core_free(s->core);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void ref(iotc_shadow *s)
{
    pthread_mutex_lock(&s->mu);
    s->refs++;
    pthread_mutex_unlock(&s->mu);
}

static void unref_n(iotc_shadow *s, int n)
{
    if (n <= 0)
        return;
    pthread_mutex_lock(&s->mu);
    s->refs -= n;
    bool last = s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last)
        destroy(s);
}

static void unref(iotc_shadow *s)
{
    unref_n(s, 1);
}

/* ---- requests and their completion ------------------------------------------------------ */

static void free_req(req *r)
{
    if (r) {
        free(r->payload);
        free(r);
    }
}

/* mu held: takes `r` off the pending list (the core's table is the
 * caller's business). */
static void unlink_req(iotc_shadow *s, req *r)
{
    for (req **p = &s->reqs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            r->next = NULL;
            return;
        }
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
    unlink_req(s, r);
    return r;
}

/* Delivers one completion without a document, and frees the request. */
static void deliver_status(iotc_shadow *s, req *r, int status)
{
    iotc_shadow_result res = {status, 0, "", NULL, 0, 0};
    r->cb(s, &res, r->user);
    free_req(r);
}

static void on_flush(iotc_client *c, int status, void *user);

/* Completes the requests of `list` (linked by next, each with its
 * status): now on the service thread, else handed to it. */
static void complete_list(iotc_shadow *s, req *list)
{
    if (!list)
        return;
    if (iotc_client_on_service_thread(s->c)) {
        while (list) {
            req *r = list;
            list = r->next;
            deliver_status(s, r, r->status);
        }
        return;
    }
    pthread_mutex_lock(&s->mu);
    req **tail = &s->deferred;
    while (*tail)
        tail = &(*tail)->next;
    *tail = list;
    bool arm = !s->flush_armed;
    if (arm) {
        s->flush_armed = true;
        s->refs++;
    }
    pthread_mutex_unlock(&s->mu);
    if (arm && iotc_client_call_after(s->c, 0, on_flush, s) != IOTC_OK) {
        /* No timer (out of memory): deliver here rather than never. */
        pthread_mutex_lock(&s->mu);
        req *l = s->deferred;
        s->deferred = NULL;
        s->flush_armed = false;
        pthread_mutex_unlock(&s->mu);
        while (l) {
            req *r = l;
            l = r->next;
            deliver_status(s, r, r->status);
        }
        unref(s);
    }
}

static void on_flush(iotc_client *c, int status, void *user)
{
    (void)c;
    (void)status; /* CLOSED (the client is being freed): deliver all the same */
    iotc_shadow *s = user;
    pthread_mutex_lock(&s->mu);
    req *l = s->deferred;
    s->deferred = NULL;
    s->flush_armed = false;
    pthread_mutex_unlock(&s->mu);
    while (l) {
        req *r = l;
        l = r->next;
        deliver_status(s, r, r->status);
    }
    unref(s);
}

/* ---- timeouts ---------------------------------------------------------------------------- */

static void on_timer(iotc_client *c, int status, void *user);

/* mu held: whether a timer must be armed for the earliest deadline, and in
 * how many ms.  Timers already armed for later deadlines stay: each one,
 * when it fires, expires what is due and plans again, so an extra one costs
 * a wake-up and a missing one cannot happen. */
static bool plan_timer(iotc_shadow *s, uint64_t now, uint32_t *ms)
{
    uint64_t next = iotc_shadow_core_next_deadline(s->core);
    if (next == UINT64_MAX || next >= s->timer_at)
        return false;
    s->timer_at = next;
    s->refs++;
    uint64_t d = next > now ? next - now : 0;
    *ms = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    return true;
}

/* Arms what plan_timer decided (mu not held); false when the client could
 * not, and then the plan is undone. */
static bool arm_timer(iotc_shadow *s, uint32_t ms)
{
    if (iotc_client_call_after(s->c, ms, on_timer, s) == IOTC_OK)
        return true;
    pthread_mutex_lock(&s->mu);
    s->timer_at = UINT64_MAX;
    s->refs--; /* the caller holds a reference too: never the last */
    pthread_mutex_unlock(&s->mu);
    return false;
}

static void on_timer(iotc_client *c, int status, void *user)
{
    (void)c;
    iotc_shadow *s = user;
    if (status != IOTC_OK) { /* the client is being freed: closing will do */
        unref(s);
        return;
    }
    req *expired = NULL, **tail = &expired;
    uint32_t ms = 0;
    pthread_mutex_lock(&s->mu);
    s->timer_at = UINT64_MAX;
    iotc_shadow_taken tk;
    uint64_t now = now_ms();
    while (!s->closed && iotc_shadow_core_expire(s->core, now, &tk)) {
        req *r = tk.user;
        unlink_req(s, r);
        /* A request that went out and got no answer may mean that the
         * session (and our subscription with it) ended under us, e.g. a
         * disconnect and connect: subscribe again before the next one. */
        if (r->published && s->sub[r->op] == SUB_READY)
            s->sub[r->op] = SUB_NONE;
        r->status = IOTC_ERR_TIMEOUT;
        *tail = r;
        tail = &r->next;
    }
    bool arm = !s->closed && plan_timer(s, now, &ms);
    pthread_mutex_unlock(&s->mu);
    if (arm)
        arm_timer(s, ms);
    complete_list(s, expired); /* on the service thread: delivered now */
    unref(s);
}

/* ---- publishing --------------------------------------------------------------------------- */

static void on_pub_done(int status, uint8_t granted, void *user)
{
    (void)granted;
    pubctx *pc = user;
    iotc_shadow *s = pc->s;
    req *r = NULL;
    pthread_mutex_lock(&s->mu);
    if (status == IOTC_ERR_CLOSED) {
        /* A disconnect ended the session and our subscriptions with it. */
        for (int op = 0; op < IOTC_SHADOW_NOPS; op++)
            if (s->sub[op] == SUB_READY)
                s->sub[op] = SUB_NONE;
    }
    /* PUBACK is not the answer; only a failure completes the request.  If
     * the answer came first, the token is gone and this changes nothing. */
    if (status != IOTC_OK && !s->closed)
        r = take_token(s, pc->token);
    pthread_mutex_unlock(&s->mu);
    if (r) {
        r->status = status;
        complete_list(s, r);
    }
    free(pc);
    unref(s);
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
    o->op = r->op;
    memcpy(o->token, r->token, sizeof o->token);
    o->payload = r->payload;
    o->len = r->payload_len;
    r->payload = NULL;
    r->published = true;
    s->refs++;
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
        rc = iotc_publish(s->c, topic, o->payload, o->len, 1, false, on_pub_done, pc);
        if (rc != IOTC_OK)
            free(pc);
    }
    free(o->payload);
    free(o);
    if (rc != IOTC_OK)
        unref(s);
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
        pthread_mutex_lock(&s->mu);
        req *r = take_token(s, token);
        pthread_mutex_unlock(&s->mu);
        if (r) {
            r->status = rc;
            complete_list(s, r);
        }
    }
}

/* ---- subscribing --------------------------------------------------------------------------- */

/* `n` SUBACKs of op's subscription came in (or will not come: a refused
 * call counts for both) with `status`.  When the last is in: publish what
 * waited, or fail it.  `mine`, when not NULL, is the token of a request
 * whose caller is still in the call that subscribed: if it fails here it is
 * handed back through *mine_out instead of completed, for the call to
 * refuse.  (A token, not the request's address: that request may have
 * timed out and its memory gone to another one.) */
static void subacks_in(iotc_shadow *s, iotc_shadow_op op, int status, int n, const char *mine, req **mine_out)
{
    outgoing *pubs = NULL, **ptail = &pubs;
    req *fails = NULL, **ftail = &fails;
    pthread_mutex_lock(&s->mu);
    s->sub_wait[op] -= n;
    if (status != IOTC_OK && s->sub_err[op] == IOTC_OK)
        s->sub_err[op] = status;
    if (s->sub_wait[op] > 0 || s->closed) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    bool ok = s->sub_err[op] == IOTC_OK;
    s->sub[op] = ok ? SUB_READY : SUB_NONE;
    for (req **p = &s->reqs; *p;) {
        req *r = *p;
        if (r->op != op || r->published) {
            p = &r->next;
            continue;
        }
        if (ok) {
            outgoing *o = take_outgoing(s, r);
            if (o) {
                *ptail = o;
                ptail = &o->next;
            }
            p = &r->next;
            continue;
        }
        iotc_shadow_core_take(s->core, r->token, NULL);
        *p = r->next;
        r->next = NULL;
        r->status = s->sub_err[op];
        if (mine && strcmp(r->token, mine) == 0) {
            *mine_out = r;
            continue;
        }
        *ftail = r;
        ftail = &r->next;
    }
    pthread_mutex_unlock(&s->mu);
    publish_all(s, pubs);
    complete_list(s, fails);
}

static void on_suback(int status, uint8_t granted, void *user)
{
    subctx *sx = user;
    iotc_shadow *s = sx->s;
    if (status == IOTC_OK && granted == 0x80)
        status = IOTC_ERR_REFUSED;
    else if (status == IOTC_ERR_CLOSED) {
        pthread_mutex_lock(&s->mu);
        for (int op = 0; op < IOTC_SHADOW_NOPS; op++)
            if (s->sub[op] == SUB_READY)
                s->sub[op] = SUB_NONE;
        pthread_mutex_unlock(&s->mu);
    }
    subacks_in(s, sx->op, status, 1, NULL, NULL);
    unref(s);
}

static void on_msg(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   uint8_t qos, bool retain, bool dup, void *user);

/* Subscribes to op's accepted and rejected topics (mu not held; two
 * references were taken and sub_wait set to 2 by the caller). */
static void subscribe_op(iotc_shadow *s, iotc_shadow_op op, const char *mine, req **mine_out)
{
    const iotc_shadow_sfx sfx[2] = {IOTC_SHADOW_SFX_ACCEPTED, IOTC_SHADOW_SFX_REJECTED};
    for (int i = 0; i < 2; i++) {
        const char *topic = iotc_shadow_core_topic(s->core, op, sfx[i]);
        int rc = iotc_subscribe(s->c, topic, 1, on_msg, s, on_suback, &s->subctx[op]);
        if (rc != IOTC_OK) {
            /* This one and any not tried will never be acknowledged. */
            int n = 2 - i;
            subacks_in(s, op, rc, n, mine, mine_out);
            unref_n(s, n);
            return;
        }
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
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->refs++; /* a callback below may free the shadow */
    iotc_shadow_core_input(s->core, topic, topic_len, payload, len, &ev);
    switch (ev.type) {
    case IOTC_SHADOW_EV_RESPONSE:
        r = ev.user;
        unlink_req(s, r);
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
    pthread_mutex_unlock(&s->mu);
    if (r) {
        iotc_shadow_result res = {ev.status, ev.code, ev.message, (const char *)payload, len,
                                  ev.has_version ? ev.version : 0};
        r->cb(s, &res, r->user);
        free_req(r);
    } else if (fn) {
        fn(s, (const char *)payload, len, ev.version, fn_user);
    }
    iotc_shadow_event_clear(&ev);
    unref(s);
}

/* ---- creation and closing ------------------------------------------------------------------ */

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
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->c = c;
    s->refs = 1;
    s->timer_at = UINT64_MAX;
    for (int op = 0; op < IOTC_SHADOW_NOPS; op++)
        s->subctx[op] = (subctx){s, (iotc_shadow_op)op};
    *out = s;
    return IOTC_OK;
}

int iotc_shadow_new(iotc_client *c, const char *thing, const char *name, iotc_shadow **out)
{
    return iotc_shadow_new_with_config(c, thing, name, NULL, out);
}

/* On the service thread (or, when the client is being freed, on the
 * freeing thread): completes everything, stops the timers and the
 * subscriptions.  `client_alive` is false when the client is being freed
 * and must not be asked for anything more. */
static void close_now(iotc_shadow *s, bool client_alive)
{
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->closed = true;
    req *done = s->deferred, **tail = &done;
    s->deferred = NULL;
    while (*tail)
        tail = &(*tail)->next;
    iotc_shadow_taken tk;
    while (iotc_shadow_core_take_any(s->core, &tk)) {
        req *r = tk.user;
        unlink_req(s, r);
        r->status = IOTC_ERR_CLOSED;
        *tail = r;
        tail = &r->next;
    }
    const char *topics[2 * IOTC_SHADOW_NOPS + 2];
    size_t nt = 0;
    /* Every filter ever asked for: a subscription the broker refused half
     * of, or one refused at the call, may still be registered with the
     * client, which must not keep calling on_msg with our pointer. */
    for (int op = 0; op < IOTC_SHADOW_NOPS; op++) {
        if (!s->sub_tried[op])
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
    pthread_mutex_unlock(&s->mu);
    while (done) {
        req *r = done;
        done = r->next;
        deliver_status(s, r, r->status);
    }
    int cancelled = 0;
    bool pinned = false;
    if (client_alive) {
        /* Our timers hold references: cancelled ones will not drop them. */
        cancelled += iotc_client_cancel_calls(s->c, on_timer, s);
        cancelled += iotc_client_cancel_calls(s->c, on_flush, s);
        for (size_t i = 0; i < nt; i++)
            if (iotc_unsubscribe(s->c, topics[i], NULL, NULL) != IOTC_OK)
                pinned = true;
    }
    pthread_mutex_lock(&s->mu);
    s->refs -= cancelled > 0 ? cancelled : 0;
    /* An unsubscribe refused at its call (offline with the queue off, out
     * of memory) leaves the client holding our pointer for that filter's
     * messages: keep the memory (on_msg sees `closed` and returns) rather
     * than let the client call into freed memory.  A small leak, only then. */
    if (pinned)
        s->refs++;
    s->close_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_close(iotc_client *c, int status, void *user)
{
    (void)c;
    iotc_shadow *s = user;
    close_now(s, status == IOTC_OK);
    unref(s);
}

void iotc_shadow_free(iotc_shadow *s)
{
    if (!s)
        return;
    if (iotc_client_on_service_thread(s->c)) {
        close_now(s, true);
    } else {
        /* Close on the service thread, where no callback of ours can be
         * running, and wait for it. */
        ref(s);
        if (iotc_client_call_after(s->c, 0, on_close, s) != IOTC_OK) {
            unref(s);
            close_now(s, false); /* no timer: the client is going away */
        }
        pthread_mutex_lock(&s->mu);
        while (!s->close_done)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
    unref(s); /* the user's */
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
    r->op = op;
    r->cb = cb;
    r->user = user;
    uint8_t rnd[IOTC_SHADOW_RANDOM_BYTES];
    random_bytes(rnd, r);

    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        free(r);
        return fail(IOTC_ERR_CLOSED, "the shadow is being freed");
    }
    uint64_t now = now_ms();
    iotc_shadow_request rq;
    const char *why = NULL;
    int rc = iotc_shadow_core_begin(s->core, op, json, json ? strlen(json) : 0, rnd, now, timeout_ms, r, &rq, &why);
    if (rc != IOTC_OK) {
        pthread_mutex_unlock(&s->mu);
        free(r);
        return fail(rc, why);
    }
    memcpy(r->token, rq.token, sizeof r->token);
    r->payload = rq.payload;
    r->payload_len = rq.payload_len;
    r->next = s->reqs;
    s->reqs = r;
    outgoing *o = NULL;
    bool subscribe = false;
    if (s->sub[op] == SUB_READY) {
        o = take_outgoing(s, r);
    } else if (s->sub[op] == SUB_NONE) {
        s->sub[op] = SUB_PENDING;
        s->sub_tried[op] = true;
        s->sub_wait[op] = 2;
        s->sub_err[op] = IOTC_OK;
        s->refs += 2;
        subscribe = true;
    }
    uint32_t ms = 0;
    bool arm = plan_timer(s, now, &ms);
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    memcpy(token, r->token, sizeof token);
    bool oom = s->sub[op] == SUB_READY && !o;
    if (oom) {
        take_token(s, token);
    }
    pthread_mutex_unlock(&s->mu);
    if (oom) {
        free_req(r);
        if (arm)
            arm_timer(s, ms);
        return fail(IOTC_ERR_NOMEM, NULL);
    }
    /* From here on `r` may be completed and freed by the service thread at
     * any time (a timeout, say): only `token` is used. */
    if (arm && !arm_timer(s, ms)) {
        pthread_mutex_lock(&s->mu);
        req *mine = take_token(s, token);
        pthread_mutex_unlock(&s->mu);
        if (mine) {
            free_req(mine);
            /* The subscription or publish started below is not needed. */
            if (o) {
                free(o->payload);
                free(o);
                unref(s);
            }
            if (subscribe) {
                subacks_in(s, op, IOTC_ERR_NOMEM, 2, NULL, NULL);
                unref_n(s, 2);
            }
            return fail(IOTC_ERR_NOMEM, "no timer for the request's timeout");
        }
    }
    if (subscribe) {
        req *mine = NULL;
        subscribe_op(s, op, token, &mine);
        if (mine) {
            rc = mine->status;
            free_req(mine);
            return fail(rc, "the client refused to subscribe to the shadow's response topics");
        }
    }
    if (o) {
        rc = publish_outgoing(s, o);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&s->mu);
            req *mine = take_token(s, token);
            pthread_mutex_unlock(&s->mu);
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
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
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
    pthread_mutex_unlock(&s->mu);
    const char *topic = iotc_shadow_core_topic(s->core, IOTC_SHADOW_OP_UPDATE, sfx);
    int rc = fn ? iotc_subscribe(s->c, topic, 1, on_msg, s, done, done_user)
                : iotc_unsubscribe(s->c, topic, done, done_user);
    if (rc != IOTC_OK) {
        pthread_mutex_lock(&s->mu);
        if (!s->closed && *pfn == fn && *puser == user) {
            *pfn = old_fn;
            *puser = old_user;
            *pon = old_on;
        }
        pthread_mutex_unlock(&s->mu);
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

/* Shared by the waiting thread and the callback: whoever is last frees it,
 * so a wait that gave up leaves nothing dangling. */
typedef struct {
    int refs;
    bool done;
    int status;
    int code;
    char *json;
} waitbox;

static void box_put(waitbox *w) /* s->mu held */
{
    if (--w->refs == 0) {
        free(w->json);
        free(w);
    }
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
    pthread_mutex_lock(&s->mu);
    w->done = true;
    w->status = r->status;
    w->code = r->code;
    w->json = copy;
    box_put(w);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Beyond the request's own timeout, how long to wait for its callback
 * before giving up (a service thread stuck in someone's callback). */
#define WAIT_MARGIN_MS 5000u

static int do_wait(iotc_shadow *s, iotc_shadow_op op, const char *json, uint32_t timeout_ms, int *code, char **out)
{
    if (code)
        *code = 0;
    if (out)
        *out = NULL;
    why_buf[0] = '\0';
    if (!s)
        return fail(IOTC_ERR_INVALID_ARG, "no shadow");
    if (iotc_client_on_service_thread(s->c))
        return fail(IOTC_ERR_BUSY, "a blocking call from a callback would wait on its own thread");
    waitbox *w = calloc(1, sizeof *w);
    if (!w)
        return fail(IOTC_ERR_NOMEM, NULL);
    w->refs = 2;
    int rc = do_request(s, op, json, timeout_ms, on_wait_done, w);
    if (rc != IOTC_OK) {
        free(w);
        return rc;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    uint64_t ms = (uint64_t)timeout_ms + WAIT_MARGIN_MS;
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    int e = 0;
    while (!w->done && e == 0)
        e = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
    if (w->done) {
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
    box_put(w);
    pthread_mutex_unlock(&s->mu);
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
