/*
 * engine_harness.h: the fake edge for the broker engine's component tests
 * (test_engine*.c).
 *
 * It plays the network edge of sim_engine.h with a virtual clock: a fake
 * sim_io that keeps, per connection, every byte the engine sent (with the
 * virtual time of the send), the closes, and the event-log lines (parsed with
 * cJSON); a deterministic random (xorshift64*, fixed seed) and a fixed wall
 * clock.  Packets from the engine are decoded with one iotc_mqtt_reader per
 * connection whose version follows the CONNECT the test sent; packets to the
 * engine are built with iotc_mqtt_encode.  Every engine call is followed by
 * sim_engine_tick() at the same virtual time, as the API asks, and time moves
 * only through h_advance_to(), which also calls tick at every deadline the
 * engine asked for on the way.
 *
 * Callbacks never fail the test themselves (a longjmp out of the engine would
 * leave it half-updated): they count anomalies (a send or close for an
 * unknown connection, a send after a close, a second close, a log line that
 * is not one JSON object with "kind", "t" and "wall"), and h_check(), run
 * after every engine call, fails the test if any was seen.  A tick that
 * returns a deadline not after now is counted in past_deadline (a test
 * asserts on it where it matters).
 *
 * Every test uses the cmocka setup/teardown pair h_setup/h_teardown, so the
 * engine is freed (with whatever connections are still open) even when an
 * assertion fails, and Valgrind sees no leak.
 */
#ifndef ENGINE_HARNESS_H
#define ENGINE_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "iotc/mqtt.h"
#include "sim_engine.h"

#define V3 IOTC_MQTT_V311
#define V5 IOTC_MQTT_V5

#define H_WALL_MS 1700000000000ull
#define H_MAX_CONNS 64
#define H_PRINCIPAL "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* What the engine sent on one connection in one send() call. */
typedef struct h_chunk {
    struct h_chunk *next;
    uint64_t t; /* virtual time of the send */
    size_t len;
    uint8_t b[];
} h_chunk;

typedef struct {
    sim_conn_id id;
    iotc_mqtt_version version; /* of the CONNECT the test sent; decodes what comes back */
    iotc_mqtt_reader rd;
    h_chunk *head, *tail; /* not yet popped */
    size_t pos;           /* bytes of head already fed to the reader */
    h_chunk *spent;       /* fed; freed at the next pop (views may point into them) */
    size_t nsent;         /* send() calls */
    int closes;
    uint64_t closed_at;
    uint64_t last_t;      /* send time of the packet popped last */
    uint16_t next_pid;    /* for packets the test sends */
} h_conn;

typedef struct {
    sim_config cfg;
    sim_engine *e;
    uint64_t now;
    uint64_t next;        /* what the last sim_engine_tick() returned */
    uint64_t rng;
    h_conn *conns[H_MAX_CONNS];
    size_t nconns;
    cJSON **log;
    size_t nlog, logcap;
    void *scratch[16]; /* h_alloc()'d, freed at teardown */
    size_t nscratch;
    /* anomalies seen by the callbacks */
    unsigned unknown_conn, send_after_close, double_close, bad_log;
    unsigned past_deadline; /* tick returned a time not after now */
} H;

/* ---- the fake sim_io ----------------------------------------------------- */

static inline h_conn *h_find(H *h, sim_conn_id id)
{
    for (size_t i = 0; i < h->nconns; i++)
        if (h->conns[i]->id == id)
            return h->conns[i];
    return NULL;
}

static inline void h_io_send(void *ctx, sim_conn_id id, const uint8_t *data, size_t len)
{
    H *h = ctx;
    h_conn *c = h_find(h, id);
    if (!c) {
        h->unknown_conn++;
        return;
    }
    if (c->closes) {
        h->send_after_close++;
        return;
    }
    h_chunk *k = malloc(sizeof *k + len);
    if (!k) {
        h->bad_log++;
        return;
    }
    k->next = NULL;
    k->t = h->now;
    k->len = len;
    memcpy(k->b, data, len);
    if (c->tail)
        c->tail->next = k;
    else
        c->head = k;
    c->tail = k;
    c->nsent++;
}

static inline void h_io_close(void *ctx, sim_conn_id id)
{
    H *h = ctx;
    h_conn *c = h_find(h, id);
    if (!c) {
        h->unknown_conn++;
        return;
    }
    if (c->closes)
        h->double_close++;
    c->closes++;
    c->closed_at = h->now;
}

static inline void h_io_log(void *ctx, const char *json)
{
    H *h = ctx;
    cJSON *o = cJSON_Parse(json);
    /* DESIGN.md: one JSON object per line, with virtual and wall timestamps. */
    if (!o || !cJSON_IsObject(o) || strchr(json, '\n') || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "kind")) ||
        !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "t")) ||
        !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "wall"))) {
        cJSON_Delete(o);
        h->bad_log++;
        return;
    }
    if (h->nlog == h->logcap) {
        size_t ncap = h->logcap ? h->logcap * 2 : 256;
        cJSON **n = realloc(h->log, ncap * sizeof *n);
        if (!n) {
            cJSON_Delete(o);
            h->bad_log++;
            return;
        }
        h->log = n;
        h->logcap = ncap;
    }
    h->log[h->nlog++] = o;
}

static inline uint64_t h_io_random(void *ctx)
{
    H *h = ctx;
    /* xorshift64* */
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t h_io_wall(void *ctx)
{
    (void)ctx;
    return H_WALL_MS;
}

/* ---- setup --------------------------------------------------------------- */

static inline int h_setup(void **state)
{
    H *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->rng = 0x9E3779B97F4A7C15ull;
    h->now = 1000;
    sim_config_init(&h->cfg, SIM_PROFILE_CLASSIC);
    *state = h;
    return 0;
}

static inline void h_conn_free(h_conn *c)
{
    for (int pass = 0; pass < 2; pass++) {
        h_chunk *k = pass ? c->spent : c->head;
        while (k) {
            h_chunk *n = k->next;
            free(k);
            k = n;
        }
    }
    iotc_mqtt_reader_free(&c->rd);
    free(c);
}

static inline int h_teardown(void **state)
{
    H *h = *state;
    if (!h)
        return 0;
    sim_engine_free(h->e);
    for (size_t i = 0; i < h->nconns; i++)
        h_conn_free(h->conns[i]);
    for (size_t i = 0; i < h->nlog; i++)
        cJSON_Delete(h->log[i]);
    free(h->log);
    for (size_t i = 0; i < h->nscratch; i++)
        free(h->scratch[i]);
    free(h);
    return 0;
}

/* Memory for a test's own buffers, freed at teardown even when an assertion
 * fails half-way (so Valgrind reports only the engine's leaks). */
static inline void *h_alloc(H *h, size_t n)
{
    assert_true(h->nscratch < sizeof h->scratch / sizeof h->scratch[0]);
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    h->scratch[h->nscratch++] = p;
    return p;
}

#define H_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, h_teardown)

static inline void h_check(H *h)
{
    if (h->unknown_conn || h->send_after_close || h->double_close || h->bad_log)
        fail_msg("fake edge saw: %u sends/closes for unknown connections, %u sends after close, %u double "
                 "closes, %u bad log lines",
                 h->unknown_conn, h->send_after_close, h->double_close, h->bad_log);
}

static inline void h_tick(H *h)
{
    /* The edge ticks only when sim_engine_next_deadline() comes: a hint
     * later than the true next deadline would make it miss a timer. */
    uint64_t hint = sim_engine_next_deadline(h->e);
    h->next = sim_engine_tick(h->e, h->now);
    if (hint > h->now && h->next < hint)
        fail_msg("next_deadline hint %llu is later than the real next deadline %llu (now %llu)",
                 (unsigned long long)hint, (unsigned long long)h->next, (unsigned long long)h->now);
    if (h->next <= h->now)
        h->past_deadline++;
    h_check(h);
}

/* Starts the engine with h->cfg (change it first, or call h_profile()). */
static inline void h_start(H *h)
{
    static const sim_io io = {h_io_send, h_io_close, h_io_log, h_io_random, h_io_wall, NULL};
    h->e = sim_engine_new(&h->cfg, &io, h);
    assert_non_null(h->e);
    h_tick(h);
}

static inline void h_profile(H *h, sim_profile p)
{
    sim_config_init(&h->cfg, p);
}

/* ---- time ---------------------------------------------------------------- */

/* Moves the virtual clock to t, calling tick at every deadline on the way. */
static inline void h_advance_to(H *h, uint64_t t)
{
    assert_true(t >= h->now);
    for (;;) {
        uint64_t d = h->next;
        if (d > t)
            break;
        if (d <= h->now) {
            if (h->now >= t)
                break;
            d = h->now + 1;
        }
        h->now = d;
        h_tick(h);
    }
    h->now = t;
    h_tick(h);
}

static inline void h_advance(H *h, uint64_t ms)
{
    h_advance_to(h, h->now + ms);
}

/* ---- connections and input --------------------------------------------- */

static inline h_conn *h_open_info(H *h, const sim_conn_info *info)
{
    assert_true(h->nconns < H_MAX_CONNS);
    h_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    iotc_mqtt_reader_init(&c->rd, V3, 0, NULL, 0);
    c->version = V3;
    c->next_pid = 1;
    h->conns[h->nconns++] = c;
    c->id = sim_engine_open(h->e, info, h->now);
    assert_true(c->id != 0);
    h_tick(h);
    return c;
}

static inline h_conn *h_open(H *h)
{
    sim_conn_info info = {H_PRINCIPAL, NULL, "127.0.0.1", "mqtts", false};
    return h_open_info(h, &info);
}

static inline bool h_closed(const h_conn *c)
{
    return c->closes > 0;
}

/* Raw bytes in; returns what the engine took. */
static inline size_t h_input(H *h, h_conn *c, const uint8_t *b, size_t n)
{
    size_t taken = sim_engine_input(h->e, c->id, b, n, h->now);
    h_tick(h);
    return taken;
}

static inline uint8_t *h_encode(const iotc_mqtt_packet *p, iotc_mqtt_version v, size_t *n)
{
    iotc_mqtt_error err;
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_encoded_size(p, v, n, &err);
    if (st != IOTC_MQTT_OK)
        fail_msg("test packet does not encode: %s (%s)", iotc_mqtt_status_str(st), err.what ? err.what : "");
    uint8_t *b = malloc(*n);
    assert_non_null(b);
    size_t w;
    st = iotc_mqtt_encode(p, v, b, *n, &w, &err);
    if (st != IOTC_MQTT_OK || w != *n) {
        free(b);
        fail_msg("test packet does not encode: %s (%s)", iotc_mqtt_status_str(st), err.what ? err.what : "");
    }
    return b;
}

/* Encodes p for the connection's version and feeds it; returns what was taken. */
static inline size_t h_send_pkt(H *h, h_conn *c, const iotc_mqtt_packet *p)
{
    size_t n;
    uint8_t *b = h_encode(p, p->type == IOTC_MQTT_CONNECT ? p->u.connect.version : c->version, &n);
    size_t taken = sim_engine_input(h->e, c->id, b, n, h->now);
    free(b);
    h_tick(h);
    return taken;
}

/* ---- what the engine sent ---------------------------------------------- */

/* The next packet c received; false if none.  Its views stay valid until
 * the next h_pop on c. */
static inline bool h_pop(H *h, h_conn *c, iotc_mqtt_packet *p)
{
    (void)h;
    while (c->spent) {
        h_chunk *n = c->spent->next;
        free(c->spent);
        c->spent = n;
    }
    while (c->head) {
        h_chunk *k = c->head;
        size_t used = 0;
        iotc_mqtt_error err;
        memset(&err, 0, sizeof err);
        iotc_mqtt_status st = iotc_mqtt_reader_feed(&c->rd, k->b + c->pos, k->len - c->pos, &used, p, &err);
        c->pos += used;
        if (c->pos >= k->len) {
            c->head = k->next;
            if (!c->head)
                c->tail = NULL;
            c->pos = 0;
            k->next = c->spent;
            c->spent = k;
        }
        if (st == IOTC_MQTT_OK) {
            c->last_t = k->t;
            return true;
        }
        if (st != IOTC_MQTT_NEED_MORE)
            fail_msg("the engine sent bytes that do not decode (v%d): %s: %s", (int)c->version,
                     iotc_mqtt_status_str(st), err.what ? err.what : "");
    }
    return false;
}

static inline const char *h_tname(iotc_mqtt_type t)
{
    return iotc_mqtt_type_name(t);
}

#define h_expect(h, c, type, p) h_expect_(h, c, type, p, __FILE__, __LINE__)
static inline void h_expect_(H *h, h_conn *c, iotc_mqtt_type type, iotc_mqtt_packet *p, const char *file, int line)
{
    iotc_mqtt_packet tmp;
    if (!p)
        p = &tmp;
    if (!h_pop(h, c, p)) {
        fprintf(stderr, "%s:%d: expected %s, got nothing\n", file, line, h_tname(type));
        fail_msg("expected %s, got nothing", h_tname(type));
    }
    if (p->type != type) {
        char msg[200];
        snprintf(msg, sizeof msg, "expected %s, got %s", h_tname(type), h_tname(p->type));
        if (p->type == IOTC_MQTT_DISCONNECT)
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), " (reason 0x%02X)", p->u.disconnect.reason);
        if (p->type == IOTC_MQTT_PUBLISH)
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), " (topic %.*s)", (int)p->u.publish.topic.len,
                     (const char *)p->u.publish.topic.data);
        fprintf(stderr, "%s:%d: %s\n", file, line, msg);
        fail_msg("%s", msg);
    }
}

#define h_expect_none(h, c) h_expect_none_(h, c, __FILE__, __LINE__)
static inline void h_expect_none_(H *h, h_conn *c, const char *file, int line)
{
    iotc_mqtt_packet p;
    if (h_pop(h, c, &p)) {
        fprintf(stderr, "%s:%d: expected nothing, got %s", file, line, h_tname(p.type));
        if (p.type == IOTC_MQTT_PUBLISH)
            fprintf(stderr, " (topic %.*s)", (int)p.u.publish.topic.len, (const char *)p.u.publish.topic.data);
        if (p.type == IOTC_MQTT_DISCONNECT || p.type == IOTC_MQTT_CONNACK)
            fprintf(stderr, " (reason 0x%02X)", p.u.disconnect.reason);
        fprintf(stderr, "\n");
        fail_msg("expected nothing, got %s", h_tname(p.type));
    }
}

static inline void h_drain(H *h, h_conn *c)
{
    iotc_mqtt_packet p;
    while (h_pop(h, c, &p)) {
    }
}

static inline bool h_bytes_eq(iotc_mqtt_bytes b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.data, s, n) == 0);
}

static inline char *h_strdup_bytes(iotc_mqtt_bytes b)
{
    char *s = malloc(b.len + 1);
    assert_non_null(s);
    if (b.len)
        memcpy(s, b.data, b.len);
    s[b.len] = 0;
    return s;
}

#define h_assert_bytes(b, s) h_assert_bytes_(b, s, __FILE__, __LINE__)
static inline void h_assert_bytes_(iotc_mqtt_bytes b, const char *s, const char *file, int line)
{
    if (!h_bytes_eq(b, s)) {
        fprintf(stderr, "%s:%d: expected \"%s\", got \"%.*s\"\n", file, line, s, (int)b.len, (const char *)b.data);
        fail_msg("expected \"%s\", got \"%.*s\"", s, (int)b.len, (const char *)b.data);
    }
}

/* Pops a PUBLISH and checks topic, payload and QoS; returns its packet id. */
#define h_expect_pub(h, c, topic, payload, qos) h_expect_pub_(h, c, topic, payload, qos, NULL, __FILE__, __LINE__)
#define h_expect_pub_p(h, c, topic, payload, qos, p) h_expect_pub_(h, c, topic, payload, qos, p, __FILE__, __LINE__)
static inline uint16_t h_expect_pub_(H *h, h_conn *c, const char *topic, const char *payload, int qos,
                                     iotc_mqtt_packet *out, const char *file, int line)
{
    iotc_mqtt_packet p;
    h_expect_(h, c, IOTC_MQTT_PUBLISH, &p, file, line);
    h_assert_bytes_(p.u.publish.topic, topic, file, line);
    if (payload)
        h_assert_bytes_(p.u.publish.payload, payload, file, line);
    if (qos >= 0 && p.u.publish.qos != qos) {
        fprintf(stderr, "%s:%d: expected QoS %d, got %d\n", file, line, qos, p.u.publish.qos);
        fail_msg("expected QoS %d, got %d", qos, p.u.publish.qos);
    }
    if (out)
        *out = p;
    return p.u.publish.packet_id;
}

/* ---- packets to the engine --------------------------------------------- */

typedef struct {
    iotc_mqtt_version version;
    const char *client_id;  /* NULL: "" */
    size_t client_id_len;   /* 0: strlen */
    bool clean;
    uint16_t keepalive;
    bool will;
    const char *will_topic;
    const char *will_payload;
    uint8_t will_qos;
    bool will_retain;
    const iotc_mqtt_props *props; /* MQTT 5 */
} h_connect_opts;

static inline size_t h_send_connect(H *h, h_conn *c, const h_connect_opts *o)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_CONNECT;
    p.u.connect.version = o->version;
    p.u.connect.clean_start = o->clean;
    p.u.connect.keep_alive = o->keepalive;
    p.u.connect.client_id.data = (const uint8_t *)(o->client_id ? o->client_id : "");
    p.u.connect.client_id.len = o->client_id_len ? o->client_id_len : (o->client_id ? strlen(o->client_id) : 0);
    if (o->will) {
        p.u.connect.will = true;
        p.u.connect.will_qos = o->will_qos;
        p.u.connect.will_retain = o->will_retain;
        p.u.connect.will_topic = iotc_mqtt_str(o->will_topic);
        p.u.connect.will_payload = iotc_mqtt_str(o->will_payload);
    }
    if (o->props)
        p.u.connect.props = *o->props;
    c->version = o->version;
    iotc_mqtt_reader_set_version(&c->rd, o->version);
    return h_send_pkt(h, c, &p);
}

/* Pops the CONNACK and checks its code; returns it (views valid until the next pop on c). */
#define h_expect_connack(h, c, code) h_expect_connack_(h, c, code, __FILE__, __LINE__)
static inline iotc_mqtt_connack h_expect_connack_(H *h, h_conn *c, int code, const char *file, int line)
{
    iotc_mqtt_packet p;
    h_expect_(h, c, IOTC_MQTT_CONNACK, &p, file, line);
    if (code >= 0 && p.u.connack.reason != code) {
        fprintf(stderr, "%s:%d: expected CONNACK 0x%02X, got 0x%02X\n", file, line, code, p.u.connack.reason);
        fail_msg("expected CONNACK 0x%02X, got 0x%02X", code, p.u.connack.reason);
    }
    return p.u.connack;
}

/* Sends CONNECT and checks a successful CONNACK; returns session present. */
static inline bool h_connect_ok(H *h, h_conn *c, iotc_mqtt_version v, const char *id, bool clean)
{
    h_connect_opts o = {.version = v, .client_id = id, .clean = clean, .keepalive = 1200};
    h_send_connect(h, c, &o);
    iotc_mqtt_connack a = h_expect_connack(h, c, 0);
    assert_false(h_closed(c));
    return a.session_present;
}

/* Opens a connection and connects it (clean session / clean start 1). */
static inline h_conn *h_client(H *h, iotc_mqtt_version v, const char *id)
{
    h_conn *c = h_open(h);
    assert_false(h_connect_ok(h, c, v, id, true));
    return c;
}

/* A persistent client: v3 clean session 0; v5 clean start 0 with SEI 3600. */
static inline bool h_connect_persistent(H *h, h_conn *c, iotc_mqtt_version v, const char *id)
{
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
    pr.session_expiry_interval = 3600;
    h_connect_opts o = {.version = v, .client_id = id, .clean = false, .keepalive = 1200,
                        .props = v == V5 ? &pr : NULL};
    h_send_connect(h, c, &o);
    iotc_mqtt_connack a = h_expect_connack(h, c, 0);
    assert_false(h_closed(c));
    return a.session_present;
}

static inline size_t h_subscribe_n(H *h, h_conn *c, uint16_t pid, const iotc_mqtt_sub *subs, size_t n,
                                   const iotc_mqtt_props *props)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_SUBSCRIBE;
    p.u.subscribe.packet_id = pid;
    p.u.subscribe.subs = subs;
    p.u.subscribe.count = n;
    if (props)
        p.u.subscribe.props = *props;
    return h_send_pkt(h, c, &p);
}

static inline size_t h_subscribe(H *h, h_conn *c, const char *filter, uint8_t qos)
{
    iotc_mqtt_sub s;
    memset(&s, 0, sizeof s);
    s.filter = iotc_mqtt_str(filter);
    s.qos = qos;
    return h_subscribe_n(h, c, c->next_pid++, &s, 1, NULL);
}

/* Subscribes one filter and checks the SUBACK code. */
#define h_sub_expect(h, c, filter, qos, code) h_sub_expect_(h, c, filter, qos, code, __FILE__, __LINE__)
static inline void h_sub_expect_(H *h, h_conn *c, const char *filter, uint8_t qos, int code, const char *file,
                                 int line)
{
    uint16_t pid = c->next_pid;
    h_subscribe(h, c, filter, qos);
    iotc_mqtt_packet p;
    h_expect_(h, c, IOTC_MQTT_SUBACK, &p, file, line);
    if (p.u.suback.packet_id != pid || p.u.suback.count != 1 || p.u.suback.codes[0] != code) {
        fprintf(stderr, "%s:%d: SUBACK for %s: pid %u (want %u), count %zu, code 0x%02X (want 0x%02X)\n", file, line,
                filter, p.u.suback.packet_id, pid, p.u.suback.count, p.u.suback.count ? p.u.suback.codes[0] : 0,
                code);
        fail_msg("unexpected SUBACK for %s", filter);
    }
}

#define h_sub_ok(h, c, filter, qos) h_sub_expect_(h, c, filter, qos, (qos) > 1 ? 1 : (qos), __FILE__, __LINE__)

static inline size_t h_publish_x(H *h, h_conn *c, const char *topic, const uint8_t *payload, size_t len, uint8_t qos,
                                 bool retain, uint16_t pid, const iotc_mqtt_props *props)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_PUBLISH;
    p.u.publish.qos = qos;
    p.u.publish.retain = retain;
    p.u.publish.topic = iotc_mqtt_str(topic);
    p.u.publish.payload.data = payload;
    p.u.publish.payload.len = len;
    p.u.publish.packet_id = qos ? pid : 0;
    if (props)
        p.u.publish.props = *props;
    return h_send_pkt(h, c, &p);
}

/* Publishes a string payload; QoS > 0 takes the connection's next packet id (returned). */
static inline uint16_t h_pub(H *h, h_conn *c, const char *topic, const char *payload, uint8_t qos, bool retain)
{
    uint16_t pid = qos ? c->next_pid++ : 0;
    h_publish_x(h, c, topic, (const uint8_t *)payload, strlen(payload), qos, retain, pid, NULL);
    return pid;
}

/* Publishes QoS 1 and checks the PUBACK (reason 0). */
#define h_pub1_ok(h, c, topic, payload) h_pub1_ok_(h, c, topic, payload, __FILE__, __LINE__)
static inline void h_pub1_ok_(H *h, h_conn *c, const char *topic, const char *payload, const char *file, int line)
{
    uint16_t pid = h_pub(h, c, topic, payload, 1, false);
    iotc_mqtt_packet p;
    h_expect_(h, c, IOTC_MQTT_PUBACK, &p, file, line);
    if (p.u.ack.packet_id != pid || p.u.ack.reason != 0) {
        fprintf(stderr, "%s:%d: PUBACK pid %u reason 0x%02X, want pid %u reason 0\n", file, line,
                p.u.ack.packet_id, p.u.ack.reason, pid);
        fail_msg("bad PUBACK");
    }
}

static inline size_t h_ack(H *h, h_conn *c, iotc_mqtt_type type, uint16_t pid)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = type;
    p.u.ack.packet_id = pid;
    return h_send_pkt(h, c, &p);
}

static inline size_t h_puback(H *h, h_conn *c, uint16_t pid)
{
    return h_ack(h, c, IOTC_MQTT_PUBACK, pid);
}

static inline size_t h_simple(H *h, h_conn *c, iotc_mqtt_type type)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = type;
    return h_send_pkt(h, c, &p);
}

static inline size_t h_pingreq(H *h, h_conn *c)
{
    return h_simple(h, c, IOTC_MQTT_PINGREQ);
}

static inline size_t h_disconnect(H *h, h_conn *c, uint8_t reason, const iotc_mqtt_props *props)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_DISCONNECT;
    p.u.disconnect.reason = reason;
    if (props)
        p.u.disconnect.props = *props;
    return h_send_pkt(h, c, &p);
}

static inline size_t h_unsubscribe(H *h, h_conn *c, const char *filter)
{
    iotc_mqtt_bytes f = iotc_mqtt_str(filter);
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_UNSUBSCRIBE;
    p.u.unsubscribe.packet_id = c->next_pid++;
    p.u.unsubscribe.filters = &f;
    p.u.unsubscribe.count = 1;
    return h_send_pkt(h, c, &p);
}

static inline void h_lost(H *h, h_conn *c)
{
    assert_false(h_closed(c));
    sim_engine_lost(h->e, c->id, h->now);
    c->closes++; /* the edge forgets it too */
    c->closed_at = h->now;
    h_tick(h);
}

/* A server-side close: a v5 DISCONNECT with `reason` (or, for v3, nothing) then close. */
#define h_expect_server_close(h, c, v5_reason) h_expect_server_close_(h, c, v5_reason, __FILE__, __LINE__)
static inline void h_expect_server_close_(H *h, h_conn *c, int v5_reason, const char *file, int line)
{
    if (c->version == V5 && v5_reason >= 0) {
        iotc_mqtt_packet p;
        h_expect_(h, c, IOTC_MQTT_DISCONNECT, &p, file, line);
        if (p.u.disconnect.reason != v5_reason) {
            fprintf(stderr, "%s:%d: expected DISCONNECT 0x%02X, got 0x%02X\n", file, line, v5_reason,
                    p.u.disconnect.reason);
            fail_msg("expected DISCONNECT 0x%02X, got 0x%02X", v5_reason, p.u.disconnect.reason);
        }
    }
    h_expect_none_(h, c, file, line);
    if (!h_closed(c)) {
        fprintf(stderr, "%s:%d: expected the connection to be closed\n", file, line);
        fail_msg("expected the connection to be closed");
    }
}

/* ---- the event log ------------------------------------------------------- */

static inline const char *h_jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline bool h_jstr_is(const cJSON *o, const char *k, const char *want)
{
    const char *s = h_jstr(o, k);
    return s && strcmp(s, want) == 0;
}

/* Records since `from` with kind (NULL: any) and "what" (NULL: any). */
static inline size_t h_log_count_from(const H *h, size_t from, const char *kind, const char *what)
{
    size_t n = 0;
    for (size_t i = from; i < h->nlog; i++)
        if ((!kind || h_jstr_is(h->log[i], "kind", kind)) && (!what || h_jstr_is(h->log[i], "what", what)))
            n++;
    return n;
}

static inline size_t h_log_count(const H *h, const char *kind, const char *what)
{
    return h_log_count_from(h, 0, kind, what);
}

static inline const cJSON *h_log_last(const H *h, const char *kind, const char *what)
{
    for (size_t i = h->nlog; i-- > 0;)
        if ((!kind || h_jstr_is(h->log[i], "kind", kind)) && (!what || h_jstr_is(h->log[i], "what", what)))
            return h->log[i];
    return NULL;
}

/* ---- lifecycle payloads -------------------------------------------------- */

/* Pops a PUBLISH on `topic_prefix`... and parses its JSON payload (cJSON_Delete it). */
#define h_expect_event(h, c, topic) h_expect_event_(h, c, topic, __FILE__, __LINE__)
static inline cJSON *h_expect_event_(H *h, h_conn *c, const char *topic, const char *file, int line)
{
    iotc_mqtt_packet p;
    h_expect_(h, c, IOTC_MQTT_PUBLISH, &p, file, line);
    h_assert_bytes_(p.u.publish.topic, topic, file, line);
    char *s = h_strdup_bytes(p.u.publish.payload);
    cJSON *o = cJSON_Parse(s);
    free(s);
    if (!o)
        fail_msg("lifecycle payload is not JSON");
    return o;
}

static inline double h_jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        fail_msg("no number \"%s\" in the event", k);
    return v->valuedouble;
}

/* A v3 client subscribed at QoS 0 to `filter` (a lifecycle event family,
 * say).  A watcher of $aws/events/subscriptions/... gets the event of its own
 * SUBSCRIBE: that one is dropped here. */
static inline h_conn *h_watcher(H *h, const char *id, const char *filter)
{
    h_conn *w = h_client(h, V3, id);
    h_sub_ok(h, w, filter, 0);
    h_drain(h, w);
    return w;
}

#endif
