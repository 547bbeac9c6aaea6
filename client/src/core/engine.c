/*
 * core/engine.c: the sans-I/O protocol engine (engine.h), MQTT 3.1.1.
 *
 * Where an operation lives decides what happens to it when the link drops:
 * - the offline queue (opqueue.h): made while offline, or while a drain is in
 *   progress so that FIFO order holds; drained at the drain rate;
 * - `wait`: made while connected with an empty queue but not sendable yet
 *   (the QoS 1 window is full, or something older is waiting); sent as acks
 *   free the window.  On a link drop it moves to the queue's front;
 * - `flight`: sent and awaiting an ack.  QoS 1 publishes stay here across a
 *   reconnect and are resent with DUP; an unacknowledged SUBSCRIBE or
 *   UNSUBSCRIBE goes back to the queue's front (ahead of `wait`), in order.
 * An operation is in at most one of them, and leaves the engine only through
 * complete(), which calls its callback once and frees it.
 *
 * Callbacks may call back into the engine (publish, even stop), so every loop
 * re-reads its list heads and the state after a callback instead of holding
 * pointers across it.
 */
#include "core/engine.h"

#include <stdlib.h>
#include <string.h>

#include "iotc/topic.h"

typedef enum { OP_PUB, OP_SUB, OP_UNSUB } op_kind;
typedef enum { IN_NONE, IN_QUEUE, IN_WAIT, IN_FLIGHT } op_where;

typedef struct op {
    iotc_opq_item qi; /* first: the queue hands items back by this */
    struct op *prev, *next;
    op_where where;
    op_kind kind;
    bool internal; /* a resubscription: no callback, never requeued */
    bool sent;     /* QoS 1 publish: sent once, so a resend carries DUP */
    uint8_t qos;
    bool retain;
    uint16_t pid;      /* 0: none held */
    uint64_t deadline; /* op timeout while in flight; 0: none */
    int status;        /* set when put on a to-complete list */
    char *topic;       /* NUL-terminated copy (topic or filter) */
    size_t topic_len;
    uint8_t *payload;
    size_t len;
    iotc_op_done done;
    void *user;
} op;

typedef struct {
    op *head, *tail;
    size_t n;
} op_list;

/* A subscription to renew when the broker forgot the session. */
typedef struct sub {
    struct sub *next;
    uint8_t qos;
    size_t len;
    char filter[];
} sub;

typedef enum { ST_IDLE, ST_OPENING, ST_CONNECTING, ST_CONNECTED, ST_WAITING, ST_STOPPED } st_t;

struct iotc_engine {
    iotc_engine_config cfg; /* its pointers point at the copies below */
    iotc_engine_io io;
    void *ctx;
    st_t st;
    bool ever_connected;
    iotc_backoff backoff;
    iotc_opq q;
    iotc_drain drain;
    iotc_mqtt_reader rd;
    op_list wait, flight;
    size_t flight_pubs; /* QoS 1 publishes in flight: the window */
    sub *subs;
    uint16_t next_pid;
    uint64_t reconnect_at, connack_deadline, last_sent, ping_deadline;
    bool ping_out;
    uint64_t drained;
    uint8_t *wbuf;
    size_t wcap;
    char *client_id, *username, *will_topic;
    uint8_t *password, *will_payload;
};

/* ---- small helpers --------------------------------------------------------- */

static op *op_of(iotc_opq_item *it)
{
    return it ? (op *)(void *)((char *)it - offsetof(op, qi)) : NULL;
}

static void list_push(op_list *l, op *o, op_where w)
{
    o->next = NULL;
    o->prev = l->tail;
    if (l->tail)
        l->tail->next = o;
    else
        l->head = o;
    l->tail = o;
    l->n++;
    o->where = w;
}

static void list_unlink(op_list *l, op *o)
{
    if (o->prev)
        o->prev->next = o->next;
    else
        l->head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        l->tail = o->prev;
    o->prev = o->next = NULL;
    l->n--;
    o->where = IN_NONE;
}

static char *dup_bytes(const void *p, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        if (n)
            memcpy(c, p, n);
        c[n] = 0;
    }
    return c;
}

static bool is_qos1_pub(const op *o)
{
    return o->kind == OP_PUB && o->qos == 1;
}

static bool needs_pid(const op *o)
{
    return o->kind != OP_PUB || o->qos == 1;
}

static void op_free(op *o)
{
    free(o);
}

/* Every operation leaves through here, exactly once. */
static void complete(iotc_engine *e, op *o, int status, uint8_t granted)
{
    (void)e;
    iotc_op_done done = o->internal ? NULL : o->done;
    void *user = o->user;
    op_free(o);
    if (done)
        done(user, status, granted);
}

static void emit_event(iotc_engine *e, iotc_event_type t, int err, uint8_t rc, bool sp)
{
    if (!e->io.event)
        return;
    iotc_event ev = {.type = t, .err = err, .return_code = rc, .session_present = sp};
    e->io.event(e->ctx, &ev);
}

static bool pid_in_use(const iotc_engine *e, uint16_t pid)
{
    for (const op *o = e->flight.head; o; o = o->next)
        if (o->pid == pid)
            return true;
    for (const op *o = e->wait.head; o; o = o->next)
        if (o->pid == pid)
            return true;
    return false;
}

/* 1..65535, never one in use; false when all are (the op then waits). */
static bool alloc_pid(iotc_engine *e, op *o)
{
    if (o->pid)
        return true;
    for (uint32_t i = 0; i < 65535u; i++) {
        uint16_t p = e->next_pid;
        e->next_pid = (uint16_t)(p == 65535u ? 1u : p + 1u);
        if (!pid_in_use(e, p)) {
            o->pid = p;
            return true;
        }
    }
    return false;
}

static op *find_flight(iotc_engine *e, uint16_t pid, op_kind k)
{
    for (op *o = e->flight.head; o; o = o->next)
        if (o->pid == pid && o->kind == k && (k != OP_PUB || o->qos == 1))
            return o;
    return NULL;
}

/* ---- remembered subscriptions ---------------------------------------------- */

static sub **sub_find(iotc_engine *e, const char *f, size_t len)
{
    sub **pp = &e->subs;
    while (*pp && !((*pp)->len == len && memcmp((*pp)->filter, f, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void sub_remember(iotc_engine *e, const char *f, size_t len, uint8_t qos)
{
    sub **pp = sub_find(e, f, len);
    if (*pp) {
        (*pp)->qos = qos;
        return;
    }
    sub *s = malloc(sizeof *s + len + 1);
    if (!s)
        return; /* only resubscription after a session loss would miss it */
    s->next = NULL;
    s->qos = qos;
    s->len = len;
    memcpy(s->filter, f, len);
    s->filter[len] = 0;
    *pp = s; /* at the tail: resubscription keeps the order of subscribing */
}

static void sub_forget(iotc_engine *e, const char *f, size_t len)
{
    sub **pp = sub_find(e, f, len);
    if (*pp) {
        sub *s = *pp;
        *pp = s->next;
        free(s);
    }
}

/* ---- output ---------------------------------------------------------------- */

static int emit(iotc_engine *e, const iotc_mqtt_packet *p, uint64_t now)
{
    size_t w = 0;
    iotc_mqtt_error err;
    /* Encode straight into the buffer; only when it is too small (the
     * encoder then tells the size) grow it and encode again.  Measuring
     * first would measure every packet twice. */
    iotc_mqtt_status st = iotc_mqtt_encode(p, IOTC_MQTT_V311, e->wbuf, e->wcap, &w, &err);
    if (st == IOTC_MQTT_ERR_BUFFER && w > e->wcap) {
        uint8_t *b = realloc(e->wbuf, w);
        if (!b)
            return IOTC_ERR_NOMEM;
        e->wbuf = b;
        e->wcap = w;
        st = iotc_mqtt_encode(p, IOTC_MQTT_V311, e->wbuf, e->wcap, &w, &err);
    }
    if (st != IOTC_MQTT_OK)
        return IOTC_ERR_INTERNAL; /* every input was validated at the call */
    e->io.send(e->ctx, e->wbuf, w);
    e->last_sent = now;
    return IOTC_OK;
}

static int emit_simple(iotc_engine *e, iotc_mqtt_type t, uint64_t now)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = t;
    return emit(e, &p, now);
}

static int emit_op(iotc_engine *e, const op *o, bool dup, uint64_t now)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    iotc_mqtt_sub s;
    iotc_mqtt_bytes f = {(const uint8_t *)o->topic, o->topic_len};
    switch (o->kind) {
    case OP_PUB:
        p.type = IOTC_MQTT_PUBLISH;
        p.u.publish.dup = dup;
        p.u.publish.qos = o->qos;
        p.u.publish.retain = o->retain;
        p.u.publish.topic = f;
        p.u.publish.packet_id = o->qos ? o->pid : 0;
        p.u.publish.payload.data = o->payload;
        p.u.publish.payload.len = o->len;
        break;
    case OP_SUB:
        memset(&s, 0, sizeof s);
        s.filter = f;
        s.qos = o->qos;
        p.type = IOTC_MQTT_SUBSCRIBE;
        p.u.subscribe.packet_id = o->pid;
        p.u.subscribe.subs = &s;
        p.u.subscribe.count = 1;
        break;
    case OP_UNSUB:
        p.type = IOTC_MQTT_UNSUBSCRIBE;
        p.u.unsubscribe.packet_id = o->pid;
        p.u.unsubscribe.filters = &f;
        p.u.unsubscribe.count = 1;
        break;
    }
    return emit(e, &p, now);
}

/* Sends an unlinked op that holds its packet id when it needs one.  QoS 0
 * completes now; the others go in flight.  An encoding failure completes
 * the op with it rather than losing it. */
static void send_op(iotc_engine *e, op *o, uint64_t now)
{
    int rc = emit_op(e, o, is_qos1_pub(o) && o->sent, now);
    if (rc != IOTC_OK) {
        complete(e, o, rc, 0);
        return;
    }
    if (o->kind == OP_PUB && o->qos == 0) {
        complete(e, o, IOTC_OK, 0);
        return;
    }
    o->sent = true;
    o->deadline = e->cfg.op_timeout_ms ? now + e->cfg.op_timeout_ms : 0;
    list_push(&e->flight, o, IN_FLIGHT);
    if (is_qos1_pub(o))
        e->flight_pubs++;
}

static bool window_open(const iotc_engine *e, const op *o)
{
    return !is_qos1_pub(o) || e->flight_pubs < e->cfg.max_inflight;
}

/* Sends what may go now: the queue's head at the drain rate while a drain
 * is in progress, else the waiting list as the window allows. */
static void pump(iotc_engine *e, uint64_t now)
{
    while (e->st == ST_CONNECTED) {
        if (iotc_opq_length(&e->q) > 0) {
            op *o = op_of(iotc_opq_peek(&e->q));
            /* The token before the id: a queued op never holds an id, so
             * the id allocator need not look into the queue. */
            if (!window_open(e, o) || !iotc_drain_take(&e->drain, now))
                return;
            if (needs_pid(o) && !alloc_pid(e, o))
                return;
            iotc_opq_pop(&e->q);
            o->where = IN_NONE;
            e->drained++;
            send_op(e, o, now);
        } else if (e->wait.head) {
            op *o = e->wait.head;
            if (!window_open(e, o) || (needs_pid(o) && !alloc_pid(e, o)))
                return;
            list_unlink(&e->wait, o);
            send_op(e, o, now);
        } else {
            return;
        }
    }
}

/* ---- losing the link --------------------------------------------------------- */

/* Puts `o` at the queue's front; what the queue drops or refuses goes on
 * `done` to be completed once the engine is consistent again. */
static void requeue_front(iotc_engine *e, op *o, op_list *done)
{
    iotc_opq_item *dropped = NULL;
    o->pid = 0; /* sent again later under a fresh id */
    int rc = iotc_opq_push_front(&e->q, &o->qi, &dropped);
    if (rc == IOTC_OK) {
        o->where = IN_QUEUE;
        if (dropped) {
            op *d = op_of(dropped);
            d->status = IOTC_ERR_QUEUE_DROPPED;
            list_push(done, d, IN_NONE);
        }
    } else {
        o->status = rc;
        list_push(done, o, IN_NONE);
    }
}

static void complete_list(iotc_engine *e, op_list *l)
{
    op *o;
    while ((o = l->head)) {
        list_unlink(l, o);
        complete(e, o, o->status, 0);
    }
}

/* The attempt or the connection ended: report it, keep what must survive,
 * and schedule the next attempt after the backoff. */
static void lost(iotc_engine *e, int err, uint8_t rc, bool close_link, uint64_t now)
{
    bool was_up = e->st == ST_CONNECTED;
    e->st = ST_WAITING; /* first: an edge that reports close as link_down is ignored */
    if (close_link)
        e->io.close(e->ctx);
    e->ping_out = false;
    iotc_backoff_disconnected(&e->backoff, now);
    e->reconnect_at = now + iotc_backoff_next(&e->backoff);

    /* Unacknowledged subscribes/unsubscribes go back first, then the ops
     * that were waiting for the window: pushed at the front in reverse. */
    op_list done = {0};
    op *o;
    while ((o = e->wait.tail)) {
        list_unlink(&e->wait, o);
        requeue_front(e, o, &done);
    }
    o = e->flight.tail;
    while (o) {
        op *prev = o->prev;
        if (!is_qos1_pub(o)) {
            list_unlink(&e->flight, o);
            if (o->internal)
                op_free(o); /* resubscription is redone from the list */
            else
                requeue_front(e, o, &done);
        }
        /* A QoS 1 publish stays in flight with its deadline: the operation
         * timeout counts from the first send, across reconnects.  Re-arming
         * it at each resend let a publish that makes the broker close the
         * connection (a retained one under the classic profile) be resent
         * for ever, never completing. */
        o = prev;
    }
    emit_event(e, was_up ? IOTC_EV_INTERRUPTED : IOTC_EV_CONNECTION_FAILURE, err, rc, false);
    complete_list(e, &done);
}

/* ---- configuration ----------------------------------------------------------- */

void iotc_engine_config_init(iotc_engine_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->version = IOTC_MQTT_V311;
    cfg->clean_session = true;
    cfg->keep_alive_s = 1200;
    cfg->ping_timeout_ms = 3000;
    cfg->connack_timeout_ms = 20000;
    iotc_backoff_config_init(&cfg->backoff);
    iotc_opq_config_init(&cfg->queue);
    iotc_drain_config_init(&cfg->drain);
    cfg->resubscribe = true;
    cfg->max_inflight = 20;
    cfg->max_packet_size = 256u * 1024u;
}

static int refuse(const char **why, const char *text)
{
    if (why)
        *why = text;
    return IOTC_ERR_INVALID_ARG;
}

static int check_config(const iotc_engine_config *c, const iotc_engine_io *io, const char **why)
{
    if (!c || !io)
        return refuse(why, "config and io are required");
    if (!io->open || !io->close || !io->send)
        return refuse(why, "io.open, io.close and io.send are required");
    if (c->version != IOTC_MQTT_V311)
        return refuse(why, "only MQTT 3.1.1 is supported so far");
    if (!c->client_id || !c->client_id[0])
        return refuse(why, "client id is required");
    if (!iotc_mqtt_utf8_valid((const uint8_t *)c->client_id, strlen(c->client_id), NULL) ||
        strlen(c->client_id) > 65535)
        return refuse(why, "client id must be valid UTF-8 of at most 65535 bytes");
    if (c->keep_alive_s > 0 && (c->ping_timeout_ms == 0 || c->ping_timeout_ms >= (uint32_t)c->keep_alive_s * 1000u))
        return refuse(why, "ping timeout must be > 0 and shorter than the keep-alive");
    if (c->connack_timeout_ms == 0)
        return refuse(why, "connack timeout must be > 0");
    if (c->max_inflight == 0)
        return refuse(why, "max_inflight must be > 0");
    if (c->max_packet_size < 64)
        return refuse(why, "max_packet_size must be at least 64 bytes");
    if (c->password && !c->username)
        return refuse(why, "a password needs a username in MQTT 3.1.1");
    if (c->password_len && !c->password)
        return refuse(why, "password is NULL with a length");
    if (c->will) {
        if (!c->will_topic || iotc_topic_name_check(c->will_topic, strlen(c->will_topic)) != IOTC_TOPIC_OK)
            return refuse(why, "will topic must be a valid topic name without wildcards");
        if (c->will_qos > 1)
            return refuse(why, "will QoS must be 0 or 1 (AWS IoT has no QoS 2)");
        if (c->will_payload_len && !c->will_payload)
            return refuse(why, "will payload is NULL with a length");
    }
    int rc;
    if ((rc = iotc_backoff_config_check(&c->backoff, why)) != IOTC_OK)
        return rc;
    if (c->backoff.jitter != IOTC_JITTER_NONE && !io->random)
        return refuse(why, "jitter needs io.random");
    if ((rc = iotc_opq_config_check(&c->queue, why)) != IOTC_OK)
        return rc;
    if ((rc = iotc_drain_config_check(&c->drain, why)) != IOTC_OK)
        return rc;
    return IOTC_OK;
}

static void fill_connect(const iotc_engine *e, iotc_mqtt_packet *p)
{
    memset(p, 0, sizeof *p);
    p->type = IOTC_MQTT_CONNECT;
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V311;
    c->clean_start = e->cfg.clean_session;
    c->keep_alive = e->cfg.keep_alive_s;
    c->client_id = iotc_mqtt_str(e->client_id);
    if (e->cfg.will) {
        c->will = true;
        c->will_qos = e->cfg.will_qos;
        c->will_retain = e->cfg.will_retain;
        c->will_topic = iotc_mqtt_str(e->will_topic);
        c->will_payload.data = e->will_payload;
        c->will_payload.len = e->cfg.will_payload_len;
    }
    if (e->username) {
        c->has_username = true;
        c->username = iotc_mqtt_str(e->username);
    }
    if (e->password) {
        c->has_password = true;
        c->password.data = e->password;
        c->password.len = e->cfg.password_len;
    }
}

static void free_copies(iotc_engine *e)
{
    free(e->client_id);
    free(e->username);
    free(e->will_topic);
    free(e->password);
    free(e->will_payload);
}

int iotc_engine_new(const iotc_engine_config *cfg, const iotc_engine_io *io, void *ctx, iotc_engine **out,
                    const char **why)
{
    if (why)
        *why = NULL;
    if (!out)
        return refuse(why, "out is required");
    *out = NULL;
    int rc = check_config(cfg, io, why);
    if (rc != IOTC_OK)
        return rc;
    iotc_engine *e = calloc(1, sizeof *e);
    if (!e)
        return IOTC_ERR_NOMEM;
    e->cfg = *cfg;
    e->io = *io;
    e->ctx = ctx;
    e->next_pid = 1;
    e->client_id = dup_bytes(cfg->client_id, strlen(cfg->client_id));
    e->username = cfg->username ? dup_bytes(cfg->username, strlen(cfg->username)) : NULL;
    e->password = cfg->password ? (uint8_t *)dup_bytes(cfg->password, cfg->password_len) : NULL;
    e->will_topic = cfg->will ? dup_bytes(cfg->will_topic, strlen(cfg->will_topic)) : NULL;
    e->will_payload = cfg->will ? (uint8_t *)dup_bytes(cfg->will_payload, cfg->will_payload_len) : NULL;
    if (!e->client_id || (cfg->username && !e->username) || (cfg->password && !e->password) ||
        (cfg->will && (!e->will_topic || !e->will_payload))) {
        free_copies(e);
        free(e);
        return IOTC_ERR_NOMEM;
    }
    /* The configuration points at our copies only. */
    e->cfg.client_id = e->client_id;
    e->cfg.username = e->username;
    e->cfg.password = e->password;
    e->cfg.will_topic = e->will_topic;
    e->cfg.will_payload = e->will_payload;

    /* A CONNECT the codec would refuse is a configuration error now, not a
     * failure on every attempt later. */
    iotc_mqtt_packet p;
    iotc_mqtt_error err;
    size_t n;
    fill_connect(e, &p);
    if (iotc_mqtt_encoded_size(&p, IOTC_MQTT_V311, &n, &err) != IOTC_MQTT_OK) {
        free_copies(e);
        free(e);
        return refuse(why, "the CONNECT packet cannot be encoded (username, will or password invalid)");
    }
    if (iotc_backoff_init(&e->backoff, &cfg->backoff, io->random, ctx) != IOTC_OK ||
        iotc_opq_init(&e->q, &cfg->queue) != IOTC_OK || iotc_drain_init(&e->drain, &cfg->drain) != IOTC_OK) {
        free_copies(e);
        free(e);
        return refuse(why, "backoff, queue or drain configuration refused");
    }
    iotc_mqtt_reader_init(&e->rd, IOTC_MQTT_V311, e->cfg.max_packet_size, NULL, 0);
    *out = e;
    return IOTC_OK;
}

/* Everything outstanding completes with IOTC_ERR_CLOSED; the link closes. */
static void shutdown_engine(iotc_engine *e, uint64_t now)
{
    st_t was = e->st;
    e->st = ST_STOPPED;
    if (was == ST_CONNECTED)
        (void)emit_simple(e, IOTC_MQTT_DISCONNECT, now);
    if (was == ST_OPENING || was == ST_CONNECTING || was == ST_CONNECTED)
        e->io.close(e->ctx);
    iotc_backoff_reset(&e->backoff);
    for (;;) {
        op *o;
        if ((o = e->flight.head)) {
            list_unlink(&e->flight, o);
            if (is_qos1_pub(o))
                e->flight_pubs--;
        } else if ((o = e->wait.head)) {
            list_unlink(&e->wait, o);
        } else if ((o = op_of(iotc_opq_first(&e->q)))) {
            iotc_opq_remove(&e->q, &o->qi);
            o->where = IN_NONE;
        } else {
            break;
        }
        complete(e, o, IOTC_ERR_CLOSED, 0);
    }
}

void iotc_engine_free(iotc_engine *e)
{
    if (!e)
        return;
    if (e->st != ST_STOPPED)
        shutdown_engine(e, e->last_sent);
    while (e->subs) {
        sub *s = e->subs;
        e->subs = s->next;
        free(s);
    }
    iotc_mqtt_reader_free(&e->rd);
    free(e->wbuf);
    free_copies(e);
    free(e);
}

/* ---- lifecycle --------------------------------------------------------------- */

static void open_link(iotc_engine *e)
{
    e->st = ST_OPENING; /* before open: the edge may answer at once */
    e->io.open(e->ctx);
}

int iotc_engine_start(iotc_engine *e, uint64_t now_ms)
{
    (void)now_ms;
    if (!e)
        return IOTC_ERR_INVALID_ARG;
    if (e->st == ST_STOPPED)
        return IOTC_ERR_CLOSED;
    if (e->st != ST_IDLE)
        return IOTC_OK; /* already running */
    open_link(e);
    return IOTC_OK;
}

int iotc_engine_stop(iotc_engine *e, uint64_t now_ms)
{
    if (!e)
        return IOTC_ERR_INVALID_ARG;
    if (e->st == ST_STOPPED)
        return IOTC_ERR_CLOSED;
    shutdown_engine(e, now_ms);
    emit_event(e, IOTC_EV_CLOSED, IOTC_OK, 0, false);
    return IOTC_OK;
}

void iotc_engine_link_up(iotc_engine *e, uint64_t now_ms)
{
    if (!e || e->st != ST_OPENING)
        return;
    e->st = ST_CONNECTING;
    iotc_mqtt_reader_reset(&e->rd);
    e->connack_deadline = now_ms + e->cfg.connack_timeout_ms;
    iotc_mqtt_packet p;
    fill_connect(e, &p);
    int rc = emit(e, &p, now_ms);
    if (rc != IOTC_OK)
        lost(e, rc, 0, true, now_ms);
}

void iotc_engine_link_down(iotc_engine *e, int err, uint64_t now_ms)
{
    if (!e || (e->st != ST_OPENING && e->st != ST_CONNECTING && e->st != ST_CONNECTED))
        return; /* e.g. after our own close, or while stopped */
    lost(e, err < 0 ? err : IOTC_ERR_CONNECTION_LOST, 0, false, now_ms);
}

/* ---- input ------------------------------------------------------------------- */

static void on_connack(iotc_engine *e, const iotc_mqtt_connack *c, uint64_t now)
{
    if (c->reason != IOTC_V3_CONNACK_ACCEPTED) {
        lost(e, IOTC_ERR_REFUSED, c->reason, true, now);
        return;
    }
    e->st = ST_CONNECTED;
    e->ping_out = false;
    iotc_backoff_connected(&e->backoff, now);
    iotc_drain_reset(&e->drain);
    bool first = !e->ever_connected;
    e->ever_connected = true;

    /* Resubscribe first, so that the resent and drained publishes' replies
     * (and the messages they provoke) find their subscriptions. */
    if (!c->session_present && e->cfg.resubscribe) {
        for (sub *s = e->subs; s && e->st == ST_CONNECTED; s = s->next) {
            op *o = calloc(1, sizeof *o + s->len + 1);
            if (!o)
                break;
            o->kind = OP_SUB;
            o->internal = true;
            o->qos = s->qos;
            o->topic = (char *)(o + 1);
            memcpy(o->topic, s->filter, s->len + 1);
            o->topic_len = s->len;
            if (!alloc_pid(e, o)) {
                op_free(o);
                break;
            }
            send_op(e, o, now);
        }
    }
    /* Then every unacknowledged QoS 1 publish, same id, DUP set, unless its
     * operation timeout ran out while offline: that one completes with
     * IOTC_ERR_TIMEOUT (after the event, below) instead of being resent. */
    op_list expired = {0};
    for (op *o = e->flight.head, *next; o; o = next) {
        next = o->next;
        if (!is_qos1_pub(o))
            continue;
        if (o->deadline && o->deadline <= now) {
            list_unlink(&e->flight, o);
            e->flight_pubs--;
            o->status = IOTC_ERR_TIMEOUT;
            list_push(&expired, o, IN_NONE);
            continue;
        }
        (void)emit_op(e, o, true, now);
    }
    emit_event(e, first ? IOTC_EV_CONNECTION_SUCCESS : IOTC_EV_RESUMED, IOTC_OK, c->reason, c->session_present);
    complete_list(e, &expired);
    if (e->st != ST_CONNECTED)
        return;
    pump(e, now);
}

static void on_suback(iotc_engine *e, const iotc_mqtt_suback *a, bool unsub, uint64_t now)
{
    op *o = find_flight(e, a->packet_id, unsub ? OP_UNSUB : OP_SUB);
    if (!o)
        return; /* late ack of a timed-out op: nothing to do */
    list_unlink(&e->flight, o);
    if (unsub) {
        sub_forget(e, o->topic, o->topic_len);
        complete(e, o, IOTC_OK, 0);
    } else {
        uint8_t code = a->count > 0 ? a->codes[0] : (uint8_t)IOTC_V3_SUBACK_FAILURE;
        if (code == IOTC_V3_SUBACK_FAILURE) {
            if (o->internal)
                sub_forget(e, o->topic, o->topic_len);
            complete(e, o, IOTC_ERR_REFUSED, code);
        } else {
            if (!o->internal)
                sub_remember(e, o->topic, o->topic_len, o->qos);
            complete(e, o, IOTC_OK, code);
        }
    }
    pump(e, now);
}

/* One packet from the broker.  Returns false when the link was dropped. */
static void on_packet(iotc_engine *e, const iotc_mqtt_packet *p, uint64_t now)
{
    if (e->st == ST_CONNECTING) {
        if (p->type == IOTC_MQTT_CONNACK)
            on_connack(e, &p->u.connack, now);
        else
            lost(e, IOTC_ERR_PROTOCOL, 0, true, now);
        return;
    }
    switch (p->type) {
    case IOTC_MQTT_CONNACK:
        /* AWS IoT's classic takeover sends the older connection a second
         * CONNACK before closing it (aws-broker.md 1.4).  MQTT calls that a
         * protocol error; tolerating it lets the close that follows be
         * reported as what it is, the connection lost. */
        return;
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *pb = &p->u.publish;
        if (pb->qos > 1) {
            lost(e, IOTC_ERR_PROTOCOL, 0, true, now); /* never subscribed at QoS 2 */
            return;
        }
        if (e->io.message) {
            iotc_message m = {pb->topic, pb->payload, pb->qos, pb->retain, pb->dup};
            e->io.message(e->ctx, &m);
        }
        if (pb->qos == 1 && e->st == ST_CONNECTED) {
            iotc_mqtt_packet a;
            memset(&a, 0, sizeof a);
            a.type = IOTC_MQTT_PUBACK;
            a.u.ack.packet_id = pb->packet_id;
            (void)emit(e, &a, now);
        }
        return;
    }
    case IOTC_MQTT_PUBACK: {
        op *o = find_flight(e, p->u.ack.packet_id, OP_PUB);
        if (!o)
            return; /* a duplicate or late PUBACK: AWS IoT may send them */
        list_unlink(&e->flight, o);
        e->flight_pubs--;
        complete(e, o, IOTC_OK, 0);
        pump(e, now);
        return;
    }
    case IOTC_MQTT_SUBACK: on_suback(e, &p->u.suback, false, now); return;
    case IOTC_MQTT_UNSUBACK: on_suback(e, &p->u.suback, true, now); return;
    case IOTC_MQTT_PINGRESP: e->ping_out = false; return;
    default: lost(e, IOTC_ERR_PROTOCOL, 0, true, now); return;
    }
}

void iotc_engine_input(iotc_engine *e, const uint8_t *data, size_t len, uint64_t now_ms)
{
    if (!e || !data)
        return;
    while (len > 0 && (e->st == ST_CONNECTING || e->st == ST_CONNECTED)) {
        size_t used = 0;
        iotc_mqtt_packet p;
        iotc_mqtt_status s = iotc_mqtt_reader_feed(&e->rd, data, len, &used, &p, NULL);
        data += used;
        len -= used;
        if (s == IOTC_MQTT_OK)
            on_packet(e, &p, now_ms);
        else if (s == IOTC_MQTT_NEED_MORE)
            return;
        else
            lost(e, IOTC_ERR_PROTOCOL, 0, true, now_ms);
    }
}

/* ---- time -------------------------------------------------------------------- */

static uint64_t next_deadline(const iotc_engine *e, uint64_t now)
{
    uint64_t d = UINT64_MAX;
    switch (e->st) {
    case ST_WAITING: return e->reconnect_at;
    case ST_CONNECTING: return e->connack_deadline;
    case ST_CONNECTED:
        if (e->cfg.keep_alive_s)
            d = e->ping_out ? e->ping_deadline : e->last_sent + (uint64_t)e->cfg.keep_alive_s * 1000u;
        for (const op *o = e->flight.head; o; o = o->next)
            if (o->deadline && o->deadline < d)
                d = o->deadline;
        if (iotc_opq_length(&e->q) > 0) {
            const op *h = op_of(iotc_opq_peek(&e->q));
            if (window_open(e, h)) {
                uint64_t t = iotc_drain_next(&e->drain, now);
                if (t < d)
                    d = t;
            }
        }
        return d;
    default: return UINT64_MAX;
    }
}

uint64_t iotc_engine_tick(iotc_engine *e, uint64_t now_ms)
{
    if (!e)
        return UINT64_MAX;
    if (e->st == ST_WAITING && now_ms >= e->reconnect_at)
        open_link(e);
    else if (e->st == ST_CONNECTING && now_ms >= e->connack_deadline)
        lost(e, IOTC_ERR_TIMEOUT, 0, true, now_ms);
    if (e->st == ST_CONNECTED) {
        /* Operation timeouts: rescan after each callback. */
        for (;;) {
            op *o = e->flight.head;
            while (o && !(o->deadline && o->deadline <= now_ms))
                o = o->next;
            if (!o || e->st != ST_CONNECTED)
                break;
            list_unlink(&e->flight, o);
            if (is_qos1_pub(o))
                e->flight_pubs--;
            complete(e, o, IOTC_ERR_TIMEOUT, 0);
        }
    }
    if (e->st == ST_CONNECTED && e->cfg.keep_alive_s) {
        if (e->ping_out) {
            if (now_ms >= e->ping_deadline)
                lost(e, IOTC_ERR_TIMEOUT, 0, true, now_ms);
        } else if (now_ms >= e->last_sent + (uint64_t)e->cfg.keep_alive_s * 1000u) {
            if (emit_simple(e, IOTC_MQTT_PINGREQ, now_ms) == IOTC_OK) {
                e->ping_out = true;
                e->ping_deadline = now_ms + e->cfg.ping_timeout_ms;
            }
        }
    }
    pump(e, now_ms);
    return next_deadline(e, now_ms);
}

/* ---- operations ---------------------------------------------------------------- */

/* Takes a new op: sends it if it may go now, else queues it. */
static int submit(iotc_engine *e, op *o, uint64_t now)
{
    if (e->st == ST_CONNECTED && iotc_opq_length(&e->q) == 0) {
        list_push(&e->wait, o, IN_WAIT);
        pump(e, now);
        return IOTC_OK;
    }
    iotc_opq_item *dropped = NULL;
    int rc = iotc_opq_push(&e->q, &o->qi, &dropped);
    if (rc != IOTC_OK) {
        op_free(o); /* refused at the call: no callback */
        return rc;
    }
    o->where = IN_QUEUE;
    if (dropped)
        complete(e, op_of(dropped), IOTC_ERR_QUEUE_DROPPED, 0);
    if (e->st == ST_CONNECTED)
        pump(e, now);
    return IOTC_OK;
}

static op *new_op(op_kind k, const char *topic, size_t tlen, const uint8_t *payload, size_t len)
{
    op *o = calloc(1, sizeof *o + tlen + 1 + len);
    if (!o)
        return NULL;
    o->kind = k;
    o->topic = (char *)(o + 1);
    memcpy(o->topic, topic, tlen);
    o->topic[tlen] = 0;
    o->topic_len = tlen;
    o->payload = (uint8_t *)o->topic + tlen + 1;
    if (len)
        memcpy(o->payload, payload, len);
    o->len = len;
    return o;
}

int iotc_engine_publish(iotc_engine *e, const char *topic, const uint8_t *payload, size_t len, uint8_t qos,
                        bool retain, iotc_op_done done, void *user, uint64_t now_ms)
{
    if (!e || !topic || (len && !payload) || qos > 1 || len > IOTC_MQTT_VBI_MAX)
        return IOTC_ERR_INVALID_ARG;
    size_t tlen = strlen(topic);
    if (iotc_topic_name_check(topic, tlen) != IOTC_TOPIC_OK)
        return IOTC_ERR_INVALID_ARG;
    /* The whole packet must fit the protocol's remaining length. */
    if (len + tlen + 4 > IOTC_MQTT_VBI_MAX)
        return IOTC_ERR_INVALID_ARG;
    if (e->st == ST_STOPPED)
        return IOTC_ERR_CLOSED;
    op *o = new_op(OP_PUB, topic, tlen, payload, len);
    if (!o)
        return IOTC_ERR_NOMEM;
    o->qos = qos;
    o->retain = retain;
    o->done = done;
    o->user = user;
    return submit(e, o, now_ms);
}

static int sub_op(iotc_engine *e, op_kind k, const char *filter, uint8_t qos, iotc_op_done done, void *user,
                  uint64_t now_ms)
{
    if (!e || !filter || qos > 1)
        return IOTC_ERR_INVALID_ARG;
    size_t flen = strlen(filter);
    if (iotc_topic_filter_check(filter, flen, true) != IOTC_TOPIC_OK)
        return IOTC_ERR_INVALID_ARG;
    if (e->st == ST_STOPPED)
        return IOTC_ERR_CLOSED;
    op *o = new_op(k, filter, flen, NULL, 0);
    if (!o)
        return IOTC_ERR_NOMEM;
    o->qos = qos;
    o->done = done;
    o->user = user;
    return submit(e, o, now_ms);
}

int iotc_engine_subscribe(iotc_engine *e, const char *filter, uint8_t qos, iotc_op_done done, void *user,
                          uint64_t now_ms)
{
    return sub_op(e, OP_SUB, filter, qos, done, user, now_ms);
}

int iotc_engine_unsubscribe(iotc_engine *e, const char *filter, iotc_op_done done, void *user, uint64_t now_ms)
{
    return sub_op(e, OP_UNSUB, filter, 0, done, user, now_ms);
}

void iotc_engine_get_stats(const iotc_engine *e, iotc_engine_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    out->connected = e->st == ST_CONNECTED;
    out->queued = iotc_opq_length(&e->q);
    out->inflight = e->flight.n;
    out->dropped = iotc_opq_get_stats(&e->q)->dropped;
    out->drained = e->drained;
    out->attempts = iotc_backoff_attempts(&e->backoff);
}
