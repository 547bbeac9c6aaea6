/*
 * svc/identity.c: the fleet provisioning client of iotc/identity.h, the
 * protocol core (identity_core.h) joined to the public client API.  It has
 * the shape of svc/shadow.c, with the core's channels (one per operation,
 * one per RegisterThing template) where the shadow has operations, and a
 * request id where the shadow has a clientToken.
 *
 * The lock, the references, the request lists, the timeouts, the
 * subscription pair per channel, closing and the blocking helpers' wait are
 * svc/svc_base.h's (read it for the locking and lifetime rules); what is
 * fleet provisioning's own is here: one outstanding request per channel
 * (AWS gives no correlation token), and the results and their copies.
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

#include "iotc/identity.h"
#include "svc/identity_core.h"
#include "svc/svc_base.h"

#define NCH IOTC_IDENTITY_MAX_CHANNELS

typedef struct req {
    iotc_svc_req h; /* h.sub: the channel */
    uint64_t id;
    iotc_identity_fn cb;
    void *user;
    char *payload; /* until published */
    size_t payload_len;
} req;

/* The done-callback context of one request's PUBLISH. */
typedef struct {
    struct iotc_identity *s;
    uint64_t id;
} pubctx;

struct iotc_identity {
    iotc_svc b; /* first: an iotc_svc * is an iotc_identity * */
    iotc_identity_core *core;
    iotc_svc_sub sub[NCH];
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

/* ---- the hooks svc_base.c calls (iotc_svc_ops) ------------------------------------------ */

static void destroy(iotc_svc *b)
{
    iotc_identity *s = (iotc_identity *)b;
    iotc_identity_core_free(s->core);
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

/* mu held: the pending request `id`, taken out of the core and the list;
 * NULL when it is not pending (completed meanwhile). */
static req *take_id(iotc_identity *s, uint64_t id)
{
    iotc_identity_taken tk;
    if (!iotc_identity_core_take(s->core, id, &tk))
        return NULL;
    req *r = tk.user;
    iotc_svc_unlink(&s->b, &r->h);
    return r;
}

/* Delivers one completion without a document, and frees the request. */
static void deliver_status(iotc_svc *b, iotc_svc_req *h)
{
    req *r = (req *)h;
    iotc_identity_result res = status_result(h->status);
    r->cb((iotc_identity *)b, &res, r->user);
    free_req(r);
}

/* mu held: the core's deadlines and pending requests, for svc_base.c's
 * timer and closing. */
static iotc_svc_req *take_due(iotc_svc *b, uint64_t now)
{
    iotc_identity_taken tk;
    return iotc_identity_core_expire(((iotc_identity *)b)->core, now, &tk) ? tk.user : NULL;
}

static iotc_svc_req *take_any(iotc_svc *b)
{
    iotc_identity_taken tk;
    return iotc_identity_core_take_any(((iotc_identity *)b)->core, &tk) ? tk.user : NULL;
}

static uint64_t next_deadline(const iotc_svc *b)
{
    return iotc_identity_core_next_deadline(((const iotc_identity *)b)->core);
}

/* ---- publishing --------------------------------------------------------------------------- */

static void on_pub_done(int status, uint8_t granted, void *user)
{
    (void)granted;
    pubctx *pc = user;
    iotc_identity *s = pc->s;
    req *r = NULL;
    pthread_mutex_lock(&s->b.mu);
    if (status == IOTC_ERR_CLOSED)
        iotc_svc_forget_subscriptions(&s->b);
    /* PUBACK is not the answer; only a failure completes the request.  If
     * the answer came first, the id is gone and this changes nothing. */
    if (status != IOTC_OK && !s->b.closed)
        r = take_id(s, pc->id);
    pthread_mutex_unlock(&s->b.mu);
    if (r) {
        r->h.status = status;
        iotc_svc_complete(&s->b, &r->h);
    }
    free(pc);
    iotc_svc_unref(&s->b);
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
    o->channel = r->h.sub;
    o->id = r->id;
    o->payload = r->payload;
    o->len = r->payload_len;
    r->payload = NULL;
    r->h.published = true;
    s->b.refs++;
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
        rc = iotc_publish(s->b.c, topic, o->payload, o->len, 1, false, on_pub_done, pc);
        if (rc != IOTC_OK)
            free(pc);
    }
    free(o->payload);
    o->payload = NULL;
    if (rc != IOTC_OK)
        iotc_svc_unref(&s->b);
    return rc;
}

/* ---- subscribing --------------------------------------------------------------------------- */

/* `n` SUBACKs of a channel's subscription came in (or will not come: a
 * refused call counts for those not acknowledged) with `status`.  When the last is in: publish
 * what waited (at most one request: one per channel), or fail it.  `mine`,
 * when not 0, is the id of a request whose caller is still in the call that
 * subscribed: if it fails here it is handed back through *mine_out instead
 * of completed, for the call to refuse. */
static void subacks_in(iotc_identity *s, int ch, int status, int n, uint64_t mine, req **mine_out)
{
    outgoing o = {0};
    bool pub = false;
    req *failed = NULL;
    pthread_mutex_lock(&s->b.mu);
    if (!iotc_svc_sub_settle(&s->b, ch, status, n)) {
        pthread_mutex_unlock(&s->b.mu);
        return;
    }
    int err = s->sub[ch].err;
    for (iotc_svc_req *h = s->b.reqs; h; h = h->next) {
        req *r = (req *)h;
        if (h->sub != ch || h->published)
            continue;
        if (err == IOTC_OK) {
            take_outgoing(s, r, &o);
            pub = true;
        } else {
            iotc_identity_core_take(s->core, r->id, NULL);
            iotc_svc_unlink(&s->b, h);
            h->status = err;
            if (mine && r->id == mine)
                *mine_out = r;
            else
                failed = r;
        }
        break; /* one request per channel */
    }
    pthread_mutex_unlock(&s->b.mu);
    if (pub) {
        uint64_t id = o.id;
        int rc = publish_outgoing(s, &o);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&s->b.mu);
            req *r = take_id(s, id);
            pthread_mutex_unlock(&s->b.mu);
            if (r) {
                r->h.status = rc;
                iotc_svc_complete(&s->b, &r->h);
            }
        }
    }
    if (failed)
        iotc_svc_complete(&s->b, &failed->h);
}

static void on_subacks(iotc_svc *b, int i, int status, int n)
{
    subacks_in((iotc_identity *)b, i, status, n, 0, NULL);
}

static void on_msg(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   uint8_t qos, bool retain, bool dup, void *user);

/* Subscribes to a channel's accepted and rejected topics (mu not held;
 * after iotc_svc_sub_start). */
static void subscribe_channel(iotc_identity *s, int ch, uint64_t mine, req **mine_out)
{
    const char *topics[2] = {iotc_identity_core_topic(s->core, ch, IOTC_IDENTITY_SFX_ACCEPTED),
                             iotc_identity_core_topic(s->core, ch, IOTC_IDENTITY_SFX_REJECTED)};
    int n = 0;
    int rc = iotc_svc_subscribe_pair(&s->b, ch, topics, on_msg, &n);
    if (rc != IOTC_OK) {
        subacks_in(s, ch, rc, n, mine, mine_out);
        iotc_svc_unref_n(&s->b, n);
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
    pthread_mutex_lock(&s->b.mu);
    if (s->b.closed) {
        pthread_mutex_unlock(&s->b.mu);
        return;
    }
    s->b.refs++; /* the callback below may free the identity client */
    iotc_identity_core_input(s->core, topic, topic_len, payload, len, &ev);
    if (ev.type == IOTC_IDENTITY_EV_RESPONSE) {
        r = ev.user;
        iotc_svc_unlink(&s->b, &r->h);
    }
    pthread_mutex_unlock(&s->b.mu);
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
    iotc_svc_unref(&s->b);
}

/* ---- creation and closing ------------------------------------------------------------------ */

static void close_now(iotc_svc *b, bool client_alive);

static const iotc_svc_ops identity_ops = {destroy, deliver_status, take_due, take_any, next_deadline, on_subacks,
                                          close_now};

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
    iotc_svc_init(&s->b, c, &identity_ops, s->sub, NCH);
    *out = s;
    return IOTC_OK;
}

/* On the service thread (or, when the client is being freed, on the
 * freeing thread): completes everything, stops the timers and the
 * subscriptions (every filter ever asked for).  `client_alive` is false
 * when the client is being freed and must not be asked for anything more. */
static void close_now(iotc_svc *b, bool client_alive)
{
    iotc_identity *s = (iotc_identity *)b;
    iotc_svc_req *done;
    pthread_mutex_lock(&b->mu);
    if (!iotc_svc_close_begin(b, &done)) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    const char *topics[2 * NCH];
    size_t nt = 0;
    for (int ch = 0; ch < NCH; ch++) {
        if (!s->sub[ch].tried)
            continue;
        topics[nt++] = iotc_identity_core_topic(s->core, ch, IOTC_IDENTITY_SFX_ACCEPTED);
        topics[nt++] = iotc_identity_core_topic(s->core, ch, IOTC_IDENTITY_SFX_REJECTED);
    }
    pthread_mutex_unlock(&b->mu);
    iotc_svc_close_end(b, done, client_alive, topics, nt);
}

void iotc_identity_free(iotc_identity *s)
{
    if (s)
        iotc_svc_free(&s->b);
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

    pthread_mutex_lock(&s->b.mu);
    if (s->b.closed) {
        pthread_mutex_unlock(&s->b.mu);
        free(r);
        return fail(IOTC_ERR_CLOSED, "the identity client is being freed");
    }
    uint64_t now = iotc_svc_now_ms();
    iotc_identity_request rq;
    const char *why = NULL;
    int rc = iotc_identity_core_begin(s->core, a, now, timeout_ms, r, &rq, &why);
    if (rc != IOTC_OK) {
        pthread_mutex_unlock(&s->b.mu);
        free(r);
        return fail(rc, why);
    }
    int ch = rq.channel;
    uint64_t id = rq.id;
    r->h.sub = ch;
    r->id = id;
    r->payload = rq.payload;
    r->payload_len = rq.payload_len;
    iotc_svc_link(&s->b, &r->h);
    outgoing o = {0};
    bool pub = false, subscribe = false;
    if (s->sub[ch].state == IOTC_SVC_SUB_READY) {
        take_outgoing(s, r, &o);
        pub = true;
    } else {
        /* PENDING: a SUBSCRIBE of an earlier request (since timed out) is
         * still out; its SUBACKs will publish this one. */
        subscribe = iotc_svc_sub_start(&s->b, ch);
    }
    uint32_t ms = 0;
    bool arm = iotc_svc_plan_timer(&s->b, now, &ms);
    pthread_mutex_unlock(&s->b.mu);
    /* From here on `r` may be completed and freed by the service thread at
     * any time (a timeout, say): only `id` is used. */
    if (arm && !iotc_svc_arm_timer(&s->b, ms)) {
        pthread_mutex_lock(&s->b.mu);
        req *mine = take_id(s, id);
        pthread_mutex_unlock(&s->b.mu);
        if (mine) {
            free_req(mine);
            /* The subscription or publish started below is not needed. */
            if (pub) {
                free(o.payload);
                iotc_svc_unref(&s->b);
            }
            if (subscribe) {
                subacks_in(s, ch, IOTC_ERR_NOMEM, 2, 0, NULL);
                iotc_svc_unref_n(&s->b, 2);
            }
            return fail(IOTC_ERR_NOMEM, "no timer for the request's timeout");
        }
    }
    if (subscribe) {
        req *mine = NULL;
        subscribe_channel(s, ch, id, &mine);
        if (mine) {
            rc = mine->h.status;
            free_req(mine);
            return fail(rc, "the client refused to subscribe to the answer topics");
        }
    }
    if (pub) {
        rc = publish_outgoing(s, &o);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&s->b.mu);
            req *mine = take_id(s, id);
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

typedef struct {
    iotc_svc_box box;
    iotc_identity_result res; /* a copy */
} waitbox;

static void box_release(iotc_svc_box *w)
{
    iotc_identity_result_free(&((waitbox *)w)->res);
    free(w);
}

static void on_wait_done(iotc_identity *s, const iotc_identity_result *r, void *user)
{
    waitbox *w = user;
    iotc_identity_result copy;
    if (iotc_identity_result_copy(r, &copy) != IOTC_OK)
        copy.status = IOTC_ERR_NOMEM; /* the answer is lost: say so, not OK without its fields */
    pthread_mutex_lock(&s->b.mu);
    w->res = copy;
    iotc_svc_box_done(&s->b, &w->box);
    pthread_mutex_unlock(&s->b.mu);
}

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
    if (iotc_client_on_service_thread(s->b.c))
        return finish(out, fail(IOTC_ERR_BUSY, "a blocking call from a callback would wait on its own thread"));
    waitbox *w = iotc_svc_box_new(sizeof *w, box_release);
    if (!w)
        return finish(out, fail(IOTC_ERR_NOMEM, NULL));
    int rc = do_request(s, a, timeout_ms, on_wait_done, w);
    if (rc != IOTC_OK) {
        free(w);
        return finish(out, rc);
    }
    pthread_mutex_lock(&s->b.mu);
    iotc_identity_result res = status_result(IOTC_ERR_TIMEOUT);
    if (iotc_svc_box_wait(&s->b, &w->box, timeout_ms)) {
        res = w->res;
        memset(&w->res, 0, sizeof w->res); /* now the caller's */
    }
    iotc_svc_box_put(&w->box);
    pthread_mutex_unlock(&s->b.mu);
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
