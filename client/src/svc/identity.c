/*
 * svc/identity.c: the fleet provisioning client of iotc/identity.h, the
 * protocol core (identity_core.h) joined to the public client API.  It has
 * the shape of svc/shadow.c, with the core's channels (one per operation,
 * one per RegisterThing template) where the shadow has operations, and a
 * request id where the shadow has a clientToken.
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
 * goes with the last.  Closing (iotc_identity_free) runs on the service
 * thread, where no other callback of ours can be half-way through.
 *
 * Threads of delivery.  Everything the client reports reaches us on the
 * service thread, so completions are delivered right there, except a
 * request that fails inside a call made on another thread (a SUBSCRIBE the
 * client refused at its call, failing a request that was waiting for it):
 * that one is handed to the service thread with a 0 ms timer, to keep the
 * contract that callbacks run there.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iotc/identity.h"
#include "svc/identity_core.h"

#define NCH IOTC_IDENTITY_MAX_CHANNELS

typedef enum { SUB_NONE, SUB_PENDING, SUB_READY } sub_state;

typedef struct req {
    struct req *next;
    int channel;
    uint64_t id;
    iotc_identity_fn cb;
    void *user;
    char *payload; /* until published */
    size_t payload_len;
    bool published;
    int status; /* on a completion list: the status to deliver */
} req;

/* The done-callback context of one SUBSCRIBE of a channel's topics. */
typedef struct {
    struct iotc_identity *s;
    int channel;
} subctx;

/* The done-callback context of one request's PUBLISH. */
typedef struct {
    struct iotc_identity *s;
    uint64_t id;
} pubctx;

struct iotc_identity {
    iotc_client *c;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* close_done, and the blocking helpers' boxes */
    int refs;
    bool closed;     /* closing began: nothing new starts, nothing more is delivered */
    bool close_done; /* closing finished on the service thread */
    iotc_identity_core *core;
    sub_state sub[NCH];
    int sub_wait[NCH]; /* SUBACKs still expected */
    int sub_err[NCH];  /* the first failure among them */
    subctx subctx[NCH];
    bool sub_tried[NCH]; /* subscribed at least once: unsubscribe at close */
    req *reqs;           /* pending, in the core's table too */
    req *deferred;       /* completed off the service thread, to deliver there */
    bool flush_armed;
    uint64_t timer_at; /* the deadline of the earliest timer armed, UINT64_MAX none */
};

static __thread char why_buf[160];

const char *iotc_identity_why(void)
{
    return why_buf;
}

static int fail(int rc, const char *why)
{
    snprintf(why_buf, sizeof why_buf, "%s", why && why[0] ? why : iotc_strerror(rc));
    return rc;
}

int iotc_identity_check_template_name(const char *name)
{
    why_buf[0] = '\0';
    const char *why = NULL;
    int rc = iotc_identity_check_template(name, name ? strlen(name) : 0, &why);
    return rc == IOTC_OK ? IOTC_OK : fail(rc, why);
}

/* The clock the core gets: monotonic, as the client's own. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- results ------------------------------------------------------------------------------ */

/* A result with only a status (the strings that must not be NULL are ""). */
static iotc_identity_result status_result(int status)
{
    iotc_identity_result r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.error_code = r.error_message = "";
    return r;
}

static size_t opt_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Appends a copy of s (NULL stays NULL) at *p. */
static const char *put(char **p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    const char *r = *p;
    *p += n;
    return r;
}

int iotc_identity_result_copy(const iotc_identity_result *src, iotc_identity_result *dst)
{
    if (!src || !dst)
        return IOTC_ERR_INVALID_ARG;
    iotc_identity_result r = status_result(src->status);
    r.status_code = src->status_code;
    size_t n = src->device_configuration_len;
    if (n && (!src->device_configuration_keys || !src->device_configuration_values))
        n = 0;
    /* One block: the two pointer arrays first (malloc's alignment suits
     * them), then every string. */
    size_t total = 2 * n * sizeof(const char *) + opt_len(src->error_code) + opt_len(src->error_message) +
                   opt_len(src->certificate_id) + opt_len(src->certificate_pem) + opt_len(src->private_key) +
                   opt_len(src->certificate_ownership_token) + opt_len(src->thing_name) +
                   (src->json ? src->json_len + 1 : 0);
    for (size_t i = 0; i < n; i++)
        total += opt_len(src->device_configuration_keys[i]) + opt_len(src->device_configuration_values[i]);
    char *blk = malloc(total ? total : 1);
    if (!blk) {
        *dst = r;
        return IOTC_ERR_NOMEM;
    }
    const char **arrays = (const char **)(void *)blk;
    char *p = blk + 2 * n * sizeof(const char *);
    if (src->error_code)
        r.error_code = put(&p, src->error_code);
    if (src->error_message)
        r.error_message = put(&p, src->error_message);
    r.certificate_id = put(&p, src->certificate_id);
    r.certificate_pem = put(&p, src->certificate_pem);
    r.private_key = put(&p, src->private_key);
    r.certificate_ownership_token = put(&p, src->certificate_ownership_token);
    r.thing_name = put(&p, src->thing_name);
    for (size_t i = 0; i < n; i++) {
        arrays[i] = put(&p, src->device_configuration_keys[i]);
        arrays[n + i] = put(&p, src->device_configuration_values[i]);
    }
    if (n) {
        r.device_configuration_len = n;
        r.device_configuration_keys = arrays;
        r.device_configuration_values = arrays + n;
    }
    if (src->json) {
        memcpy(p, src->json, src->json_len);
        p[src->json_len] = '\0';
        r.json = p;
        r.json_len = src->json_len;
    }
    r.owned_ = blk;
    *dst = r;
    return IOTC_OK;
}

void iotc_identity_result_free(iotc_identity_result *r)
{
    if (!r)
        return;
    free(r->owned_);
    memset(r, 0, sizeof *r);
}

/* ---- references ------------------------------------------------------------------------ */

static void destroy(iotc_identity *s)
{
    iotc_identity_core_free(s->core);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void ref(iotc_identity *s)
{
    pthread_mutex_lock(&s->mu);
    s->refs++;
    pthread_mutex_unlock(&s->mu);
}

static void unref_n(iotc_identity *s, int n)
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

static void unref(iotc_identity *s)
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
static void unlink_req(iotc_identity *s, req *r)
{
    for (req **p = &s->reqs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            r->next = NULL;
            return;
        }
    }
}

/* mu held: the pending request `id`, taken out of the core and the list;
 * NULL when it is not pending (completed meanwhile). */
static req *take_id(iotc_identity *s, uint64_t id)
{
    iotc_identity_taken tk;
    if (!iotc_identity_core_take(s->core, id, &tk))
        return NULL;
    req *r = tk.user;
    unlink_req(s, r);
    return r;
}

/* Delivers one completion without a document, and frees the request. */
static void deliver_status(iotc_identity *s, req *r, int status)
{
    iotc_identity_result res = status_result(status);
    r->cb(s, &res, r->user);
    free_req(r);
}

static void deliver_list(iotc_identity *s, req *list)
{
    while (list) {
        req *r = list;
        list = r->next;
        deliver_status(s, r, r->status);
    }
}

static void on_flush(iotc_client *c, int status, void *user);

/* Completes the requests of `list` (linked by next, each with its
 * status): now on the service thread, else handed to it. */
static void complete_list(iotc_identity *s, req *list)
{
    if (!list)
        return;
    if (iotc_client_on_service_thread(s->c)) {
        deliver_list(s, list);
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
        deliver_list(s, l);
        unref(s);
    }
}

static void on_flush(iotc_client *c, int status, void *user)
{
    (void)c;
    (void)status; /* CLOSED (the client is being freed): deliver all the same */
    iotc_identity *s = user;
    pthread_mutex_lock(&s->mu);
    req *l = s->deferred;
    s->deferred = NULL;
    s->flush_armed = false;
    pthread_mutex_unlock(&s->mu);
    deliver_list(s, l);
    unref(s);
}

/* mu held: a disconnect ended the session, and our subscriptions with it. */
static void forget_subscriptions(iotc_identity *s)
{
    for (int ch = 0; ch < NCH; ch++)
        if (s->sub[ch] == SUB_READY)
            s->sub[ch] = SUB_NONE;
}

/* ---- timeouts ---------------------------------------------------------------------------- */

static void on_timer(iotc_client *c, int status, void *user);

/* mu held: whether a timer must be armed for the earliest deadline, and in
 * how many ms.  Timers already armed for later deadlines stay: each one,
 * when it fires, expires what is due and plans again, so an extra one costs
 * a wake-up and a missing one cannot happen. */
static bool plan_timer(iotc_identity *s, uint64_t now, uint32_t *ms)
{
    uint64_t next = iotc_identity_core_next_deadline(s->core);
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
static bool arm_timer(iotc_identity *s, uint32_t ms)
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
    iotc_identity *s = user;
    if (status != IOTC_OK) { /* the client is being freed: closing will do */
        unref(s);
        return;
    }
    req *expired = NULL, **tail = &expired;
    uint32_t ms = 0;
    pthread_mutex_lock(&s->mu);
    s->timer_at = UINT64_MAX;
    iotc_identity_taken tk;
    uint64_t now = now_ms();
    while (!s->closed && iotc_identity_core_expire(s->core, now, &tk)) {
        req *r = tk.user;
        unlink_req(s, r);
        /* A request that went out and got no answer may mean that the
         * session (and our subscription with it) ended under us, e.g. a
         * disconnect and connect: subscribe again before the next one. */
        if (r->published && s->sub[r->channel] == SUB_READY)
            s->sub[r->channel] = SUB_NONE;
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
    iotc_identity *s = pc->s;
    req *r = NULL;
    pthread_mutex_lock(&s->mu);
    if (status == IOTC_ERR_CLOSED)
        forget_subscriptions(s);
    /* PUBACK is not the answer; only a failure completes the request.  If
     * the answer came first, the id is gone and this changes nothing. */
    if (status != IOTC_OK && !s->closed)
        r = take_id(s, pc->id);
    pthread_mutex_unlock(&s->mu);
    if (r) {
        r->status = status;
        complete_list(s, r);
    }
    free(pc);
    unref(s);
}

/* A request ready to go: what its PUBLISH needs, out of the shared state. */
typedef struct {
    int channel;
    uint64_t id;
    char *payload;
    size_t len;
} outgoing;

/* mu held: marks `r` published and moves its payload into *o, taking a
 * reference for its pubctx. */
static void take_outgoing(iotc_identity *s, req *r, outgoing *o)
{
    o->channel = r->channel;
    o->id = r->id;
    o->payload = r->payload;
    o->len = r->payload_len;
    r->payload = NULL;
    r->published = true;
    s->refs++;
}

/* mu not held: publishes `o` (its payload freed here).  Returns the call's
 * status; on failure the reference is dropped and the request is left to
 * the caller. */
static int publish_outgoing(iotc_identity *s, outgoing *o)
{
    int rc = IOTC_ERR_NOMEM;
    pubctx *pc = calloc(1, sizeof *pc);
    if (pc) {
        pc->s = s;
        pc->id = o->id;
        const char *topic = iotc_identity_core_topic(s->core, o->channel, IOTC_IDENTITY_SFX_REQUEST);
        rc = iotc_publish(s->c, topic, o->payload, o->len, 1, false, on_pub_done, pc);
        if (rc != IOTC_OK)
            free(pc);
    }
    free(o->payload);
    o->payload = NULL;
    if (rc != IOTC_OK)
        unref(s);
    return rc;
}

/* ---- subscribing --------------------------------------------------------------------------- */

/* `n` SUBACKs of a channel's subscription came in (or will not come: a
 * refused call counts for both) with `status`.  When the last is in: publish
 * what waited (at most one request: one per channel), or fail it.  `mine`,
 * when not 0, is the id of a request whose caller is still in the call that
 * subscribed: if it fails here it is handed back through *mine_out instead
 * of completed, for the call to refuse. */
static void subacks_in(iotc_identity *s, int ch, int status, int n, uint64_t mine, req **mine_out)
{
    outgoing o = {0};
    bool pub = false;
    req *failed = NULL;
    pthread_mutex_lock(&s->mu);
    s->sub_wait[ch] -= n;
    if (status != IOTC_OK && s->sub_err[ch] == IOTC_OK)
        s->sub_err[ch] = status;
    if (s->sub_wait[ch] > 0 || s->closed) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    bool ok = s->sub_err[ch] == IOTC_OK;
    s->sub[ch] = ok ? SUB_READY : SUB_NONE;
    for (req *r = s->reqs; r; r = r->next) {
        if (r->channel != ch || r->published)
            continue;
        if (ok) {
            take_outgoing(s, r, &o);
            pub = true;
        } else {
            iotc_identity_core_take(s->core, r->id, NULL);
            unlink_req(s, r);
            r->status = s->sub_err[ch];
            if (mine && r->id == mine)
                *mine_out = r;
            else
                failed = r;
        }
        break; /* one request per channel */
    }
    pthread_mutex_unlock(&s->mu);
    if (pub) {
        uint64_t id = o.id;
        int rc = publish_outgoing(s, &o);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&s->mu);
            req *r = take_id(s, id);
            pthread_mutex_unlock(&s->mu);
            if (r) {
                r->status = rc;
                complete_list(s, r);
            }
        }
    }
    complete_list(s, failed);
}

static void on_suback(int status, uint8_t granted, void *user)
{
    subctx *sx = user;
    iotc_identity *s = sx->s;
    if (status == IOTC_OK && granted == 0x80) {
        status = IOTC_ERR_REFUSED;
    } else if (status == IOTC_ERR_CLOSED) {
        pthread_mutex_lock(&s->mu);
        forget_subscriptions(s);
        pthread_mutex_unlock(&s->mu);
    }
    subacks_in(s, sx->channel, status, 1, 0, NULL);
    unref(s);
}

static void on_msg(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   uint8_t qos, bool retain, bool dup, void *user);

/* Subscribes to a channel's accepted and rejected topics (mu not held; two
 * references were taken and sub_wait set to 2 by the caller). */
static void subscribe_channel(iotc_identity *s, int ch, uint64_t mine, req **mine_out)
{
    const iotc_identity_sfx sfx[2] = {IOTC_IDENTITY_SFX_ACCEPTED, IOTC_IDENTITY_SFX_REJECTED};
    for (int i = 0; i < 2; i++) {
        const char *topic = iotc_identity_core_topic(s->core, ch, sfx[i]);
        int rc = iotc_subscribe(s->c, topic, 1, on_msg, s, on_suback, &s->subctx[ch]);
        if (rc != IOTC_OK) {
            /* This one and any not tried will never be acknowledged. */
            int n = 2 - i;
            subacks_in(s, ch, rc, n, mine, mine_out);
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
    iotc_identity *s = user;
    iotc_identity_event ev;
    req *r = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->refs++; /* the callback below may free the identity client */
    iotc_identity_core_input(s->core, topic, topic_len, payload, len, &ev);
    if (ev.type == IOTC_IDENTITY_EV_RESPONSE) {
        r = ev.user;
        unlink_req(s, r);
    }
    pthread_mutex_unlock(&s->mu);
    if (r) {
        iotc_identity_result res = status_result(ev.status);
        const iotc_identity_doc *d = &ev.doc;
        if (ev.status == IOTC_OK || ev.status == IOTC_ERR_REJECTED || ev.status == IOTC_ERR_PROTOCOL) {
            res.json = (const char *)payload;
            res.json_len = len;
        }
        if (ev.status == IOTC_ERR_REJECTED) {
            res.status_code = d->status_code;
            res.error_code = d->error_code;
            res.error_message = d->error_message;
        } else if (ev.status == IOTC_ERR_PROTOCOL) {
            res.error_message = ev.why;
        } else if (ev.status == IOTC_OK) {
            res.certificate_id = d->certificate_id;
            res.certificate_pem = d->certificate_pem;
            res.private_key = d->private_key;
            res.certificate_ownership_token = d->certificate_ownership_token;
            res.thing_name = d->thing_name;
            res.device_configuration_len = d->config_len;
            res.device_configuration_keys = d->config_keys;
            res.device_configuration_values = d->config_values;
        }
        r->cb(s, &res, r->user);
        free_req(r);
    }
    iotc_identity_event_clear(&ev);
    unref(s);
}

/* ---- creation and closing ------------------------------------------------------------------ */

int iotc_identity_new(iotc_client *c, iotc_identity **out)
{
    why_buf[0] = '\0';
    if (!out)
        return fail(IOTC_ERR_INVALID_ARG, "no place for the identity client (out is NULL)");
    *out = NULL;
    if (!c)
        return fail(IOTC_ERR_INVALID_ARG, "no client");
    iotc_identity *s = calloc(1, sizeof *s);
    if (!s)
        return fail(IOTC_ERR_NOMEM, NULL);
    int rc = iotc_identity_core_new(&s->core);
    if (rc != IOTC_OK) {
        free(s);
        return fail(rc, NULL);
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->c = c;
    s->refs = 1;
    s->timer_at = UINT64_MAX;
    for (int ch = 0; ch < NCH; ch++)
        s->subctx[ch] = (subctx){s, ch};
    *out = s;
    return IOTC_OK;
}

/* On the service thread (or, when the client is being freed, on the
 * freeing thread): completes everything, stops the timers and the
 * subscriptions.  `client_alive` is false when the client is being freed
 * and must not be asked for anything more. */
static void close_now(iotc_identity *s, bool client_alive)
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
    iotc_identity_taken tk;
    while (iotc_identity_core_take_any(s->core, &tk)) {
        req *r = tk.user;
        unlink_req(s, r);
        r->status = IOTC_ERR_CLOSED;
        *tail = r;
        tail = &r->next;
    }
    const char *topics[2 * NCH];
    size_t nt = 0;
    /* Every filter ever asked for: a subscription the broker refused half
     * of, or one refused at the call, may still be registered with the
     * client, which must not keep calling on_msg with our pointer. */
    for (int ch = 0; ch < NCH; ch++) {
        if (!s->sub_tried[ch])
            continue;
        topics[nt++] = iotc_identity_core_topic(s->core, ch, IOTC_IDENTITY_SFX_ACCEPTED);
        topics[nt++] = iotc_identity_core_topic(s->core, ch, IOTC_IDENTITY_SFX_REJECTED);
    }
    pthread_mutex_unlock(&s->mu);
    deliver_list(s, done);
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
    iotc_identity *s = user;
    close_now(s, status == IOTC_OK);
    unref(s);
}

void iotc_identity_free(iotc_identity *s)
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

static int do_request(iotc_identity *s, const iotc_identity_args *a, uint32_t timeout_ms, iotc_identity_fn cb,
                      void *user)
{
    why_buf[0] = '\0';
    if (!s || !cb)
        return fail(IOTC_ERR_INVALID_ARG, !s ? "no identity client" : "no callback");
    req *r = calloc(1, sizeof *r);
    if (!r)
        return fail(IOTC_ERR_NOMEM, NULL);
    r->cb = cb;
    r->user = user;

    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        free(r);
        return fail(IOTC_ERR_CLOSED, "the identity client is being freed");
    }
    uint64_t now = now_ms();
    iotc_identity_request rq;
    const char *why = NULL;
    int rc = iotc_identity_core_begin(s->core, a, now, timeout_ms, r, &rq, &why);
    if (rc != IOTC_OK) {
        pthread_mutex_unlock(&s->mu);
        free(r);
        return fail(rc, why);
    }
    int ch = rq.channel;
    uint64_t id = rq.id;
    r->channel = ch;
    r->id = id;
    r->payload = rq.payload;
    r->payload_len = rq.payload_len;
    r->next = s->reqs;
    s->reqs = r;
    outgoing o = {0};
    bool pub = false, subscribe = false;
    if (s->sub[ch] == SUB_READY) {
        take_outgoing(s, r, &o);
        pub = true;
    } else if (s->sub[ch] == SUB_NONE) {
        s->sub[ch] = SUB_PENDING;
        s->sub_tried[ch] = true;
        s->sub_wait[ch] = 2;
        s->sub_err[ch] = IOTC_OK;
        s->refs += 2;
        subscribe = true;
    }
    /* SUB_PENDING: a SUBSCRIBE of an earlier request (since timed out) is
     * still out; its SUBACKs will publish this one. */
    uint32_t ms = 0;
    bool arm = plan_timer(s, now, &ms);
    pthread_mutex_unlock(&s->mu);
    /* From here on `r` may be completed and freed by the service thread at
     * any time (a timeout, say): only `id` is used. */
    if (arm && !arm_timer(s, ms)) {
        pthread_mutex_lock(&s->mu);
        req *mine = take_id(s, id);
        pthread_mutex_unlock(&s->mu);
        if (mine) {
            free_req(mine);
            /* The subscription or publish started below is not needed. */
            if (pub) {
                free(o.payload);
                unref(s);
            }
            if (subscribe) {
                subacks_in(s, ch, IOTC_ERR_NOMEM, 2, 0, NULL);
                unref_n(s, 2);
            }
            return fail(IOTC_ERR_NOMEM, "no timer for the request's timeout");
        }
    }
    if (subscribe) {
        req *mine = NULL;
        subscribe_channel(s, ch, id, &mine);
        if (mine) {
            rc = mine->status;
            free_req(mine);
            return fail(rc, "the client refused to subscribe to the answer topics");
        }
    }
    if (pub) {
        rc = publish_outgoing(s, &o);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&s->mu);
            req *mine = take_id(s, id);
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

static iotc_identity_args keys_args(void)
{
    iotc_identity_args a;
    memset(&a, 0, sizeof a);
    a.op = IOTC_IDENTITY_OP_CREATE_KEYS;
    return a;
}

static int csr_args(const char *csr_pem, iotc_identity_args *a)
{
    memset(a, 0, sizeof *a);
    a->op = IOTC_IDENTITY_OP_CREATE_FROM_CSR;
    a->csr_pem = csr_pem;
    return csr_pem ? IOTC_OK : fail(IOTC_ERR_INVALID_ARG, "no CSR");
}

static int register_args(const char *template_name, const char *token, const char *const *keys,
                         const char *const *values, size_t n, iotc_identity_args *a)
{
    memset(a, 0, sizeof *a);
    a->op = IOTC_IDENTITY_OP_REGISTER_THING;
    a->template_name = template_name;
    a->token = token;
    a->param_keys = keys;
    a->param_values = values;
    a->nparams = n;
    if (!template_name)
        return fail(IOTC_ERR_INVALID_ARG, "no template name");
    if (!token)
        return fail(IOTC_ERR_INVALID_ARG, "no certificate ownership token");
    return IOTC_OK;
}

int iotc_identity_create_keys_and_certificate(iotc_identity *id, uint32_t timeout_ms, iotc_identity_fn cb,
                                              void *user)
{
    iotc_identity_args a = keys_args();
    return do_request(id, &a, timeout_ms, cb, user);
}

int iotc_identity_create_certificate_from_csr(iotc_identity *id, const char *csr_pem, uint32_t timeout_ms,
                                              iotc_identity_fn cb, void *user)
{
    iotc_identity_args a;
    why_buf[0] = '\0';
    int rc = csr_args(csr_pem, &a);
    return rc != IOTC_OK ? rc : do_request(id, &a, timeout_ms, cb, user);
}

int iotc_identity_register_thing(iotc_identity *id, const char *template_name, const char *token,
                                 const char *const *param_keys, const char *const *param_values, size_t nparams,
                                 uint32_t timeout_ms, iotc_identity_fn cb, void *user)
{
    iotc_identity_args a;
    why_buf[0] = '\0';
    int rc = register_args(template_name, token, param_keys, param_values, nparams, &a);
    return rc != IOTC_OK ? rc : do_request(id, &a, timeout_ms, cb, user);
}

/* ---- blocking helpers ---------------------------------------------------------------------- */

/* Shared by the waiting thread and the callback: whoever is last frees it,
 * so a wait that gave up leaves nothing dangling. */
typedef struct {
    int refs;
    bool done;
    iotc_identity_result res; /* a copy */
} waitbox;

static void box_put(waitbox *w) /* s->mu held */
{
    if (--w->refs == 0) {
        iotc_identity_result_free(&w->res);
        free(w);
    }
}

static void on_wait_done(iotc_identity *s, const iotc_identity_result *r, void *user)
{
    waitbox *w = user;
    iotc_identity_result copy;
    if (iotc_identity_result_copy(r, &copy) != IOTC_OK)
        copy.status = IOTC_ERR_NOMEM; /* the answer is lost: say so, not OK without its fields */
    pthread_mutex_lock(&s->mu);
    w->done = true;
    w->res = copy;
    box_put(w);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Beyond the request's own timeout, how long to wait for its callback
 * before giving up (a service thread stuck in someone's callback). */
#define WAIT_MARGIN_MS 5000u

static int finish(iotc_identity_result *out, int rc)
{
    if (out)
        *out = status_result(rc);
    return rc;
}

static int do_wait(iotc_identity *s, const iotc_identity_args *a, uint32_t timeout_ms, iotc_identity_result *out)
{
    why_buf[0] = '\0';
    if (!s)
        return finish(out, fail(IOTC_ERR_INVALID_ARG, "no identity client"));
    if (iotc_client_on_service_thread(s->c))
        return finish(out, fail(IOTC_ERR_BUSY, "a blocking call from a callback would wait on its own thread"));
    waitbox *w = calloc(1, sizeof *w);
    if (!w)
        return finish(out, fail(IOTC_ERR_NOMEM, NULL));
    w->refs = 2;
    int rc = do_request(s, a, timeout_ms, on_wait_done, w);
    if (rc != IOTC_OK) {
        free(w);
        return finish(out, rc);
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
    iotc_identity_result res = status_result(IOTC_ERR_TIMEOUT);
    if (w->done) {
        res = w->res;
        memset(&w->res, 0, sizeof w->res); /* now the caller's */
    }
    box_put(w);
    pthread_mutex_unlock(&s->mu);
    rc = res.status;
    if (out)
        *out = res;
    else
        iotc_identity_result_free(&res);
    return rc;
}

int iotc_identity_create_keys_and_certificate_wait(iotc_identity *id, uint32_t timeout_ms, iotc_identity_result *out)
{
    iotc_identity_args a = keys_args();
    return do_wait(id, &a, timeout_ms, out);
}

int iotc_identity_create_certificate_from_csr_wait(iotc_identity *id, const char *csr_pem, uint32_t timeout_ms,
                                                   iotc_identity_result *out)
{
    iotc_identity_args a;
    why_buf[0] = '\0';
    int rc = csr_args(csr_pem, &a);
    return rc != IOTC_OK ? finish(out, rc) : do_wait(id, &a, timeout_ms, out);
}

int iotc_identity_register_thing_wait(iotc_identity *id, const char *template_name, const char *token,
                                      const char *const *param_keys, const char *const *param_values,
                                      size_t nparams, uint32_t timeout_ms, iotc_identity_result *out)
{
    iotc_identity_args a;
    why_buf[0] = '\0';
    int rc = register_args(template_name, token, param_keys, param_values, nparams, &a);
    return rc != IOTC_OK ? finish(out, rc) : do_wait(id, &a, timeout_ms, out);
}
