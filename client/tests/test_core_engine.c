/*
 * The protocol engine (core/engine.h) against a fake edge and a scripted
 * fake broker, on a virtual clock.
 *
 * The fake edge records every io call; what the engine sends is decoded with
 * the codec's stream reader, so the tests assert on packets, not bytes.  The
 * broker's side is written per test with iotc_mqtt_encode.  Every accepted
 * operation carries a record that counts its completions; the teardown frees
 * the engine and requires each record to have completed exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/engine.h"

/* ---- the fake edge ------------------------------------------------------------- */

typedef struct {
    uint8_t type;
    bool dup;
    uint8_t qos;
    uint16_t pid;
    char topic[64];  /* PUBLISH topic, SUBSCRIBE/UNSUBSCRIBE filter, CONNECT client id */
    char payload[64];
    uint64_t at;
    bool clean;
    uint16_t keep_alive;
    bool will;
    char user[32];
    char pass[32];
} pkt;

typedef struct {
    int calls;
    int status;
    uint8_t granted;
    bool accepted;
} rec;

enum { EDGE_MANUAL, EDGE_FAIL, EDGE_ACCEPT };

static struct {
    uint64_t now;
    iotc_engine *e;
    int mode;          /* what the edge does with an open */
    bool open_pending; /* io.open called, not answered */
    bool accept_sp;    /* session present in EDGE_ACCEPT's CONNACK */
    int opens, closes;
    uint64_t open_at[64];
    pkt sent[512];
    size_t nsent;
    iotc_mqtt_reader rd;
    iotc_event ev[64];
    size_t nev;
    int msgs;
    char msg_topic[64];
    rec recs[256];
    size_t nrec;
    uint64_t rnd;
} F;

static void e_open(void *ctx)
{
    (void)ctx;
    assert_true(F.opens < 64);
    F.open_at[F.opens++] = F.now;
    F.open_pending = true;
}

static void e_close(void *ctx)
{
    (void)ctx;
    F.closes++;
    F.open_pending = false;
}

static void copy_str(char *dst, size_t cap, iotc_mqtt_bytes b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n)
        memcpy(dst, b.data, n);
    dst[n] = 0;
}

static void e_send(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    while (len > 0) {
        size_t used = 0;
        iotc_mqtt_packet p;
        iotc_mqtt_status s = iotc_mqtt_reader_feed(&F.rd, data, len, &used, &p, NULL);
        data += used;
        len -= used;
        if (s == IOTC_MQTT_NEED_MORE)
            break;
        assert_int_equal(s, IOTC_MQTT_OK);
        assert_true(F.nsent < 512);
        pkt *k = &F.sent[F.nsent++];
        memset(k, 0, sizeof *k);
        k->type = (uint8_t)p.type;
        k->at = F.now;
        switch (p.type) {
        case IOTC_MQTT_CONNECT:
            copy_str(k->topic, sizeof k->topic, p.u.connect.client_id);
            k->clean = p.u.connect.clean_start;
            k->keep_alive = p.u.connect.keep_alive;
            k->will = p.u.connect.will;
            if (p.u.connect.has_username)
                copy_str(k->user, sizeof k->user, p.u.connect.username);
            if (p.u.connect.has_password)
                copy_str(k->pass, sizeof k->pass, p.u.connect.password);
            break;
        case IOTC_MQTT_PUBLISH:
            k->dup = p.u.publish.dup;
            k->qos = p.u.publish.qos;
            k->pid = p.u.publish.packet_id;
            copy_str(k->topic, sizeof k->topic, p.u.publish.topic);
            copy_str(k->payload, sizeof k->payload, p.u.publish.payload);
            break;
        case IOTC_MQTT_PUBACK: k->pid = p.u.ack.packet_id; break;
        case IOTC_MQTT_SUBSCRIBE: {
            iotc_mqtt_sub sb;
            size_t pos = 0;
            assert_int_equal(p.u.subscribe.count, 1);
            assert_true(iotc_mqtt_sub_next(&p.u.subscribe, &pos, &sb));
            copy_str(k->topic, sizeof k->topic, sb.filter);
            k->qos = sb.qos;
            k->pid = p.u.subscribe.packet_id;
            break;
        }
        case IOTC_MQTT_UNSUBSCRIBE: {
            iotc_mqtt_bytes f;
            size_t pos = 0;
            assert_true(iotc_mqtt_unsub_next(&p.u.unsubscribe, &pos, &f));
            copy_str(k->topic, sizeof k->topic, f);
            k->pid = p.u.unsubscribe.packet_id;
            break;
        }
        default: break;
        }
    }
}

static void e_event(void *ctx, const iotc_event *ev)
{
    (void)ctx;
    assert_true(F.nev < 64);
    F.ev[F.nev++] = *ev;
}

static void e_message(void *ctx, const iotc_message *m)
{
    (void)ctx;
    F.msgs++;
    copy_str(F.msg_topic, sizeof F.msg_topic, m->topic);
}

static uint64_t e_random(void *ctx)
{
    (void)ctx;
    F.rnd = F.rnd * 6364136223846793005ull + 1442695040888963407ull; /* deterministic */
    return F.rnd;
}

static const iotc_engine_io IO = {e_open, e_close, e_send, e_event, e_message, e_random};

/* ---- the fake broker ----------------------------------------------------------- */

static void feed(const iotc_mqtt_packet *p)
{
    uint8_t buf[256];
    size_t n = 0;
    assert_int_equal(iotc_mqtt_encode(p, IOTC_MQTT_V311, buf, sizeof buf, &n, NULL), IOTC_MQTT_OK);
    iotc_engine_input(F.e, buf, n, F.now);
}

static void connack(bool sp, uint8_t rc)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_CONNACK;
    p.u.connack.session_present = sp;
    p.u.connack.reason = rc;
    feed(&p);
}

static void ack(iotc_mqtt_type t, uint16_t pid, uint8_t code)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = t;
    if (t == IOTC_MQTT_PUBACK) {
        p.u.ack.packet_id = pid;
    } else {
        p.u.suback.packet_id = pid;
        p.u.suback.codes = &code;
        p.u.suback.count = t == IOTC_MQTT_SUBACK ? 1 : 0;
    }
    feed(&p);
}

static void pingresp(void)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_PINGRESP;
    feed(&p);
}

/* The edge answers a pending open as its mode says. */
static void edge_step(void)
{
    if (!F.open_pending || F.mode == EDGE_MANUAL)
        return;
    F.open_pending = false;
    if (F.mode == EDGE_FAIL) {
        iotc_engine_link_down(F.e, IOTC_ERR_CONNECT, F.now);
    } else {
        iotc_engine_link_up(F.e, F.now);
        connack(F.accept_sp, 0);
    }
}

/* Runs every deadline up to and including `t`, then sets the clock to t. */
static void run_until(uint64_t t)
{
    for (int guard = 0; guard < 100000; guard++) {
        edge_step();
        uint64_t d = iotc_engine_tick(F.e, F.now);
        if (F.open_pending && F.mode != EDGE_MANUAL)
            continue; /* answer the open, then ask for the deadline again */
        if (d > t)
            break;
        assert_true(d >= F.now); /* deadlines never lie in the past after a tick */
        F.now = d;
    }
    F.now = t;
    iotc_engine_tick(F.e, F.now);
    edge_step();
}

static void advance(uint64_t ms)
{
    run_until(F.now + ms);
}

/* ---- operations and their records -------------------------------------------- */

static void done_cb(void *user, int status, uint8_t granted)
{
    rec *r = user;
    r->calls++;
    r->status = status;
    r->granted = granted;
}

static rec *new_rec(void)
{
    assert_true(F.nrec < 256);
    rec *r = &F.recs[F.nrec++];
    memset(r, 0, sizeof *r);
    return r;
}

static rec *pub(const char *topic, const char *payload, uint8_t qos)
{
    rec *r = new_rec();
    int rc = iotc_engine_publish(F.e, topic, (const uint8_t *)payload, strlen(payload), qos, false, done_cb, r,
                                 F.now);
    assert_int_equal(rc, IOTC_OK);
    r->accepted = true;
    return r;
}

static rec *sub(const char *filter, uint8_t qos)
{
    rec *r = new_rec();
    assert_int_equal(iotc_engine_subscribe(F.e, filter, qos, done_cb, r, F.now), IOTC_OK);
    r->accepted = true;
    return r;
}

static rec *unsub(const char *filter)
{
    rec *r = new_rec();
    assert_int_equal(iotc_engine_unsubscribe(F.e, filter, done_cb, r, F.now), IOTC_OK);
    r->accepted = true;
    return r;
}

static void base_config(iotc_engine_config *c)
{
    iotc_engine_config_init(c);
    c->client_id = "dev-1";
    c->keep_alive_s = 0;
    c->backoff.min_ms = 1000;
    c->backoff.max_ms = 8000;
    c->backoff.stable_ms = 5000;
    c->drain.hz = 0; /* unpaced unless a test is about the pace */
}

static void make(const iotc_engine_config *c)
{
    const char *why = NULL;
    assert_int_equal(iotc_engine_new(c, &IO, NULL, &F.e, &why), IOTC_OK);
}

/* start and get to an accepted CONNACK by hand. */
static void connect_now(bool sp)
{
    assert_true(F.open_pending);
    F.open_pending = false;
    iotc_engine_link_up(F.e, F.now);
    connack(sp, 0);
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    F.now = 1000;
    F.rnd = 42;
    iotc_mqtt_reader_init(&F.rd, IOTC_MQTT_V311, 0, NULL, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    iotc_engine_free(F.e);
    F.e = NULL;
    iotc_mqtt_reader_free(&F.rd);
    for (size_t i = 0; i < F.nrec; i++) {
        if (F.recs[i].accepted && F.recs[i].calls != 1) {
            print_error("operation %zu completed %d times\n", i, F.recs[i].calls);
            return -1;
        }
        if (!F.recs[i].accepted && F.recs[i].calls != 0) {
            print_error("refused operation %zu called back\n", i);
            return -1;
        }
    }
    return 0;
}

/* Index of the n-th sent packet of type t at or after index `from`; -1. */
static long find_sent(size_t from, uint8_t t)
{
    for (size_t i = from; i < F.nsent; i++)
        if (F.sent[i].type == t)
            return (long)i;
    return -1;
}

static size_t count_sent(size_t from, uint8_t t)
{
    size_t n = 0;
    for (size_t i = from; i < F.nsent; i++)
        n += F.sent[i].type == t;
    return n;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_config_validation(void **state)
{
    (void)state;
    iotc_engine_config c;
    const char *why = NULL;
    iotc_engine *e = NULL;
    base_config(&c);
    c.client_id = NULL;
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(why);
    assert_null(e);
    base_config(&c);
    c.keep_alive_s = 3;
    c.ping_timeout_ms = 3000;
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    c.ping_timeout_ms = 2999;
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_OK);
    iotc_engine_free(e);
    e = NULL;
    base_config(&c);
    c.backoff.min_ms = 9000; /* > max */
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    base_config(&c);
    c.will = true;
    c.will_topic = "a/+";
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    c.will_topic = "a/b";
    c.will_qos = 2;
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    base_config(&c);
    c.password = (const uint8_t *)"pw";
    c.password_len = 2;
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    base_config(&c);
    c.backoff.jitter = IOTC_JITTER_FULL;
    iotc_engine_io io = IO;
    io.random = NULL;
    assert_int_equal(iotc_engine_new(&c, &io, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    io = IO;
    io.send = NULL;
    base_config(&c);
    assert_int_equal(iotc_engine_new(&c, &io, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_new(NULL, &IO, NULL, &e, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_new(&c, &IO, NULL, NULL, &why), IOTC_ERR_INVALID_ARG);
    assert_null(e);
}

static void test_bad_arguments_refused_at_the_call(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    make(&c);
    rec *r = new_rec();
    const uint8_t pl[] = "x";
    assert_int_equal(iotc_engine_publish(F.e, "a/+", pl, 1, 0, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_publish(F.e, "a/#", pl, 1, 0, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_publish(F.e, "", pl, 1, 0, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_publish(F.e, NULL, pl, 1, 0, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_publish(F.e, "a", NULL, 1, 0, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_publish(F.e, "a", pl, 1, 2, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_publish(NULL, "a", pl, 1, 0, false, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_subscribe(F.e, "a/#/b", 0, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_subscribe(F.e, "a/b+", 0, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_subscribe(F.e, "a", 2, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_subscribe(F.e, NULL, 0, done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_engine_unsubscribe(F.e, "", done_cb, r, F.now), IOTC_ERR_INVALID_ARG);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.queued, 0);
}

static void test_connect_success_and_resume(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.keep_alive_s = 30;
    c.username = "user?SDK=iotc";
    c.password = (const uint8_t *)"secret";
    c.password_len = 6;
    c.will = true;
    c.will_topic = "dev/will";
    c.will_payload = (const uint8_t *)"gone";
    c.will_payload_len = 4;
    c.clean_session = false;
    make(&c);
    assert_int_equal(F.opens, 0);
    assert_int_equal(iotc_engine_start(F.e, F.now), IOTC_OK);
    assert_int_equal(F.opens, 1);
    assert_int_equal(F.nsent, 0);
    iotc_engine_link_up(F.e, F.now);
    F.open_pending = false;
    assert_int_equal(F.nsent, 1);
    assert_int_equal(F.sent[0].type, IOTC_MQTT_CONNECT);
    assert_string_equal(F.sent[0].topic, "dev-1");
    assert_false(F.sent[0].clean);
    assert_int_equal(F.sent[0].keep_alive, 30);
    assert_true(F.sent[0].will);
    assert_string_equal(F.sent[0].user, "user?SDK=iotc");
    assert_string_equal(F.sent[0].pass, "secret");
    assert_int_equal(F.nev, 0);
    connack(false, 0);
    assert_int_equal(F.nev, 1);
    assert_int_equal(F.ev[0].type, IOTC_EV_CONNECTION_SUCCESS);
    assert_false(F.ev[0].session_present);
    assert_int_equal(F.ev[0].return_code, 0);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_true(st.connected);

    advance(100);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    assert_int_equal(F.nev, 2);
    assert_int_equal(F.ev[1].type, IOTC_EV_INTERRUPTED);
    assert_int_equal(F.ev[1].err, IOTC_ERR_CONNECTION_LOST);
    assert_int_equal(F.closes, 0); /* the edge's own loss: no close */
    uint64_t lost_at = F.now;
    advance(999);
    assert_int_equal(F.opens, 1);
    advance(1);
    assert_int_equal(F.opens, 2);
    assert_int_equal(F.open_at[1], lost_at + 1000);
    connect_now(true);
    assert_int_equal(F.nev, 3);
    assert_int_equal(F.ev[2].type, IOTC_EV_RESUMED);
    assert_true(F.ev[2].session_present);
    /* A second start is harmless. */
    assert_int_equal(iotc_engine_start(F.e, F.now), IOTC_OK);
    assert_int_equal(F.opens, 2);
}

static void test_connect_refused_and_connack_timeout(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.connack_timeout_ms = 3000;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(false);
    /* connect_now sent an accepted CONNACK; make a fresh engine for refusal. */
    iotc_engine_free(F.e);
    assert_int_equal(F.nev, 1);
    F.nev = 0;
    F.opens = 0;
    F.closes = 0;
    make(&c);
    iotc_engine_start(F.e, F.now);
    F.open_pending = false;
    iotc_engine_link_up(F.e, F.now);
    connack(false, IOTC_V3_CONNACK_NOT_AUTHORIZED);
    assert_int_equal(F.nev, 1);
    assert_int_equal(F.ev[0].type, IOTC_EV_CONNECTION_FAILURE);
    assert_int_equal(F.ev[0].err, IOTC_ERR_REFUSED);
    assert_int_equal(F.ev[0].return_code, IOTC_V3_CONNACK_NOT_AUTHORIZED);
    assert_int_equal(F.closes, 1);
    uint64_t t0 = F.now;
    advance(1000);
    assert_int_equal(F.opens, 2);
    assert_int_equal(F.open_at[1], t0 + 1000);
    /* No CONNACK: the attempt times out, the link is closed, the backoff grows. */
    F.open_pending = false;
    iotc_engine_link_up(F.e, F.now);
    uint64_t t1 = F.now;
    advance(2999);
    assert_int_equal(F.nev, 1);
    advance(1);
    assert_int_equal(F.nev, 2);
    assert_int_equal(F.ev[1].type, IOTC_EV_CONNECTION_FAILURE);
    assert_int_equal(F.ev[1].err, IOTC_ERR_TIMEOUT);
    assert_int_equal(F.closes, 2);
    advance(2000);
    assert_int_equal(F.opens, 3);
    assert_int_equal(F.open_at[2], t1 + 3000 + 2000);
    /* A refused attempt is not a connection: never SUCCESS. */
    for (size_t i = 0; i < F.nev; i++)
        assert_int_not_equal(F.ev[i].type, IOTC_EV_CONNECTION_SUCCESS);
}

static void test_backoff_sequence_and_stable_reset(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c); /* min 1000, max 8000, stable 5000 */
    make(&c);
    F.mode = EDGE_FAIL;
    iotc_engine_start(F.e, F.now);
    advance(40000);
    const uint64_t want[] = {1000, 2000, 4000, 8000, 8000, 8000};
    assert_true(F.opens >= 7);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(F.open_at[i + 1] - F.open_at[i], want[i]);
    for (size_t i = 0; i < F.nev; i++) {
        assert_int_equal(F.ev[i].type, IOTC_EV_CONNECTION_FAILURE);
        assert_int_equal(F.ev[i].err, IOTC_ERR_CONNECT);
    }

    /* The next attempt succeeds; the connection lives 4999 ms (< stable):
     * the escalation goes on (8000, the cap). */
    F.mode = EDGE_ACCEPT;
    int n = F.opens;
    run_until(F.open_at[n - 1] + 8000);
    assert_int_equal(F.opens, n + 1);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_true(st.connected);
    advance(4999);
    F.mode = EDGE_MANUAL;
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    uint64_t t = F.now;
    advance(7999);
    assert_int_equal(F.opens, n + 1);
    advance(1);
    assert_int_equal(F.opens, n + 2);
    assert_int_equal(F.open_at[n + 1], t + 8000);

    /* This one stays exactly stable_ms: the backoff starts over at min. */
    connect_now(false);
    advance(5000);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    t = F.now;
    advance(1000);
    assert_int_equal(F.opens, n + 3);
    assert_int_equal(F.open_at[n + 2], t + 1000);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECT, F.now);
    t = F.now;
    advance(2000);
    assert_int_equal(F.opens, n + 4);
    assert_int_equal(F.open_at[n + 3], t + 2000);
}

static void test_backoff_with_full_jitter_stays_in_bounds(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.backoff.jitter = IOTC_JITTER_FULL;
    make(&c);
    F.mode = EDGE_FAIL;
    iotc_engine_start(F.e, F.now);
    advance(60000);
    assert_true(F.opens > 8);
    uint64_t ceil = 1000;
    for (int i = 1; i < F.opens; i++) {
        assert_true(F.open_at[i] - F.open_at[i - 1] <= ceil);
        ceil = ceil * 2 > 8000 ? 8000 : ceil * 2;
    }
}

static void test_keepalive_and_ping_timeout(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.keep_alive_s = 10;
    c.ping_timeout_ms = 2000;
    make(&c);
    iotc_engine_start(F.e, F.now);
    uint64_t t0 = F.now; /* CONNECT is the last packet sent */
    connect_now(false);
    advance(9999);
    assert_int_equal(count_sent(0, IOTC_MQTT_PINGREQ), 0);
    advance(1);
    assert_int_equal(count_sent(0, IOTC_MQTT_PINGREQ), 1);
    assert_int_equal(F.sent[find_sent(0, IOTC_MQTT_PINGREQ)].at, t0 + 10000);
    advance(500);
    pingresp();
    /* Any packet sent restarts the keep-alive period. */
    advance(4500); /* t0 + 15000 */
    pub("t", "x", 0);
    advance(9999);
    assert_int_equal(count_sent(0, IOTC_MQTT_PINGREQ), 1);
    advance(1);
    assert_int_equal(count_sent(0, IOTC_MQTT_PINGREQ), 2);
    assert_int_equal(F.now, t0 + 25000);
    /* No PINGRESP within ping_timeout_ms: the link is declared dead. */
    advance(1999);
    assert_int_equal(F.closes, 0);
    advance(1);
    assert_int_equal(F.closes, 1);
    assert_int_equal(F.ev[F.nev - 1].type, IOTC_EV_INTERRUPTED);
    assert_int_equal(F.ev[F.nev - 1].err, IOTC_ERR_TIMEOUT);
    uint64_t dead = F.now;
    advance(1000);
    assert_int_equal(F.opens, 2);
    assert_int_equal(F.open_at[1], dead + 1000);
    connect_now(false);
    assert_int_equal(F.ev[F.nev - 1].type, IOTC_EV_RESUMED);
}

/* Five QoS 1 publishes offline into a queue of 3. */
static void overflow(iotc_opq_drop policy, rec *r[5])
{
    iotc_engine_config c;
    base_config(&c);
    c.queue.limit = 3;
    c.queue.drop = policy;
    make(&c);
    iotc_engine_start(F.e, F.now);
    const char *names[5] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        r[i] = pub("q", names[i], 1);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.dropped, 2);
    connect_now(true);
}

static void check_sent_payloads(size_t from, const char *const *want, size_t n)
{
    size_t k = 0;
    for (size_t i = from; i < F.nsent; i++) {
        if (F.sent[i].type != IOTC_MQTT_PUBLISH)
            continue;
        assert_true(k < n);
        assert_string_equal(F.sent[i].payload, want[k]);
        k++;
    }
    assert_int_equal(k, n);
}

static void ack_all_publishes(size_t from)
{
    for (size_t i = from; i < F.nsent; i++)
        if (F.sent[i].type == IOTC_MQTT_PUBLISH && F.sent[i].qos == 1)
            ack(IOTC_MQTT_PUBACK, F.sent[i].pid, 0);
}

static void test_queue_overflow_drop_oldest(void **state)
{
    (void)state;
    rec *r[5];
    overflow(IOTC_OPQ_DROP_OLDEST, r);
    assert_int_equal(r[0]->calls, 1);
    assert_int_equal(r[0]->status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(r[1]->status, IOTC_ERR_QUEUE_DROPPED);
    const char *const want[] = {"c", "d", "e"};
    check_sent_payloads(0, want, 3);
    ack_all_publishes(0);
    for (int i = 2; i < 5; i++) {
        assert_int_equal(r[i]->calls, 1);
        assert_int_equal(r[i]->status, IOTC_OK);
    }
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.drained, 3);
    assert_int_equal(st.inflight, 0);
}

static void test_queue_overflow_drop_newest(void **state)
{
    (void)state;
    rec *r[5];
    overflow(IOTC_OPQ_DROP_NEWEST, r);
    assert_int_equal(r[3]->status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(r[4]->status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(r[0]->calls, 0);
    const char *const want[] = {"a", "b", "c"};
    check_sent_payloads(0, want, 3);
    ack_all_publishes(0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i]->status, IOTC_OK);
}

static void test_queue_off(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.queue.limit = IOTC_OPQ_OFF;
    make(&c);
    iotc_engine_start(F.e, F.now);
    rec *r = new_rec();
    assert_int_equal(iotc_engine_publish(F.e, "t", (const uint8_t *)"x", 1, 1, false, done_cb, r, F.now),
                     IOTC_ERR_QUEUE_OFF);
    assert_int_equal(iotc_engine_subscribe(F.e, "t", 1, done_cb, r, F.now), IOTC_ERR_QUEUE_OFF);
    connect_now(false);
    rec *ok = pub("t", "y", 0);
    assert_int_equal(ok->status, IOTC_OK);
    assert_int_equal(ok->calls, 1); /* QoS 0: done when written */
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBLISH), 1);
}

/* With the queue off, what a drop cannot keep completes with QUEUE_OFF; a
 * QoS 1 publish in flight is tracked, not queued, so it survives. */
static void test_queue_off_link_drop(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.queue.limit = IOTC_OPQ_OFF;
    c.max_inflight = 1;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *a = pub("t", "a", 1);
    rec *b = pub("t", "b", 1); /* waits for the window */
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    assert_int_equal(b->calls, 1);
    assert_int_equal(b->status, IOTC_ERR_QUEUE_OFF);
    assert_int_equal(a->calls, 0);
    advance(1000);
    connect_now(true);
    rec *s = sub("x", 0);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now); /* SUBSCRIBE unacked */
    assert_int_equal(s->status, IOTC_ERR_QUEUE_OFF);
    advance(2000);
    size_t from = F.nsent;
    connect_now(true);
    long i = find_sent(from, IOTC_MQTT_PUBLISH);
    assert_true(F.sent[i].dup);
    ack(IOTC_MQTT_PUBACK, F.sent[i].pid, 0);
    assert_int_equal(a->status, IOTC_OK);
}

static void test_drain_order_rate_and_new_requests_join_the_tail(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.drain.hz = 2;
    c.queue.limit = 10;
    make(&c);
    iotc_engine_start(F.e, F.now);
    const char *names[4] = {"1", "2", "3", "4"};
    rec *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = pub("q", names[i], 0);
    rec *s = sub("cmd/#", 1);
    advance(300);
    size_t from = F.nsent;
    connect_now(false);
    uint64_t T = F.now;
    /* The first goes at once; the rest at 2 Hz. */
    assert_int_equal(count_sent(from, IOTC_MQTT_PUBLISH), 1);
    advance(700); /* T + 700: the second went at T + 500 */
    rec *late = pub("q", "late", 0); /* made during the drain: joins the tail */
    assert_int_equal(late->calls, 0);
    advance(3000);
    const char *const want[] = {"1", "2", "3", "4", "late"};
    check_sent_payloads(from, want, 5);
    uint64_t expect_at[] = {T, T + 500, T + 1000, T + 1500, T + 2500};
    size_t k = 0;
    for (size_t i = from; i < F.nsent; i++) {
        if (F.sent[i].type == IOTC_MQTT_PUBLISH || F.sent[i].type == IOTC_MQTT_SUBSCRIBE) {
            if (F.sent[i].type == IOTC_MQTT_SUBSCRIBE) {
                assert_int_equal(F.sent[i].at, T + 2000);
                assert_string_equal(F.sent[i].topic, "cmd/#");
                ack(IOTC_MQTT_SUBACK, F.sent[i].pid, 1);
            } else {
                assert_int_equal(F.sent[i].at, expect_at[k++]);
            }
        }
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i]->status, IOTC_OK);
    assert_int_equal(s->status, IOTC_OK);
    assert_int_equal(s->granted, 1);
    assert_int_equal(late->status, IOTC_OK);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.drained, 6);
    assert_int_equal(st.queued, 0);
    /* Queue empty again: a new publish goes at once. */
    size_t before = F.nsent;
    pub("q", "now", 0);
    assert_int_equal(F.nsent, before + 1);
}

static void test_link_drop_mid_drain_loses_nothing(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.drain.hz = 2;
    make(&c);
    iotc_engine_start(F.e, F.now);
    rec *s = sub("cmd/1", 1);
    rec *p[4];
    const char *names[4] = {"p1", "p2", "p3", "p4"};
    for (int i = 0; i < 4; i++)
        p[i] = pub("q", names[i], 1);
    connect_now(true);
    advance(700); /* SUBSCRIBE at T, p1 at T + 500; no acks */
    assert_int_equal(count_sent(0, IOTC_MQTT_SUBSCRIBE), 1);
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBLISH), 1);
    long p1 = find_sent(0, IOTC_MQTT_PUBLISH);
    uint16_t p1_id = F.sent[p1].pid;
    assert_false(F.sent[p1].dup);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.queued, 4); /* SUBSCRIBE back at the front, p2..p4 */
    assert_int_equal(st.inflight, 1); /* p1 stays tracked */
    advance(1000);
    size_t from = F.nsent;
    connect_now(true);
    advance(5000);
    /* After CONNACK: p1 resent at once with DUP and its id, then the queue in order. */
    assert_int_equal(F.sent[from + 1].type, IOTC_MQTT_PUBLISH);
    assert_true(F.sent[from + 1].dup);
    assert_int_equal(F.sent[from + 1].pid, p1_id);
    assert_string_equal(F.sent[from + 1].payload, "p1");
    assert_int_equal(F.sent[from + 2].type, IOTC_MQTT_SUBSCRIBE);
    assert_string_equal(F.sent[from + 2].topic, "cmd/1");
    const char *const want[] = {"p1", "p2", "p3", "p4"};
    check_sent_payloads(from, want, 4);
    for (size_t i = from + 2; i < F.nsent; i++)
        if (F.sent[i].type == IOTC_MQTT_PUBLISH)
            assert_false(F.sent[i].dup);
    /* Nothing completed before its ack. */
    assert_int_equal(s->calls, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p[i]->calls, 0);
    ack(IOTC_MQTT_SUBACK, F.sent[from + 2].pid, 1);
    ack_all_publishes(from);
    ack(IOTC_MQTT_PUBACK, p1_id, 0); /* a duplicate PUBACK is ignored */
    assert_int_equal(s->status, IOTC_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p[i]->status, IOTC_OK);
}

static void test_qos1_resent_with_dup_after_reconnect(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *r = pub("t/1", "hello", 1);
    long i = find_sent(0, IOTC_MQTT_PUBLISH);
    assert_true(i >= 0);
    assert_false(F.sent[i].dup);
    uint16_t id = F.sent[i].pid;
    assert_true(id >= 1);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    /* Published while offline: queued behind the resend. */
    rec *r2 = pub("t/1", "later", 1);
    advance(1000);
    size_t from = F.nsent;
    connect_now(true);
    long j = find_sent(from, IOTC_MQTT_PUBLISH);
    assert_true(j >= 0);
    assert_true(F.sent[j].dup);
    assert_int_equal(F.sent[j].pid, id);
    assert_string_equal(F.sent[j].payload, "hello");
    long k = find_sent((size_t)j + 1, IOTC_MQTT_PUBLISH);
    assert_true(k >= 0);
    assert_false(F.sent[k].dup);
    assert_int_not_equal(F.sent[k].pid, id); /* id in use is never reused */
    assert_string_equal(F.sent[k].payload, "later");
    assert_int_equal(r->calls, 0);
    ack(IOTC_MQTT_PUBACK, id, 0);
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->status, IOTC_OK);
    ack(IOTC_MQTT_PUBACK, F.sent[k].pid, 0);
    assert_int_equal(r2->status, IOTC_OK);
}

static void test_resubscribe_when_session_not_present(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(false);
    rec *a = sub("a/#", 1);
    rec *b = sub("b", 0);
    rec *x = sub("refused", 1);
    long ia = find_sent(0, IOTC_MQTT_SUBSCRIBE);
    ack(IOTC_MQTT_SUBACK, F.sent[ia].pid, 1);
    ack(IOTC_MQTT_SUBACK, F.sent[ia + 1].pid, 0);
    ack(IOTC_MQTT_SUBACK, F.sent[ia + 2].pid, IOTC_V3_SUBACK_FAILURE);
    assert_int_equal(a->status, IOTC_OK);
    assert_int_equal(b->status, IOTC_OK);
    assert_int_equal(x->status, IOTC_ERR_REFUSED);
    assert_int_equal(x->granted, IOTC_V3_SUBACK_FAILURE);
    /* A publish in flight too: resubscriptions go before its resend. */
    rec *p = pub("t", "m", 1);

    /* Session present: no resubscription. */
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    advance(1000);
    size_t from = F.nsent;
    connect_now(true);
    assert_int_equal(count_sent(from, IOTC_MQTT_SUBSCRIBE), 0);

    /* Session lost: one SUBSCRIBE per remembered subscription, first. */
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    advance(2000);
    from = F.nsent;
    connect_now(false);
    assert_int_equal(F.sent[from + 1].type, IOTC_MQTT_SUBSCRIBE);
    assert_string_equal(F.sent[from + 1].topic, "a/#");
    assert_int_equal(F.sent[from + 1].qos, 1);
    assert_int_equal(F.sent[from + 2].type, IOTC_MQTT_SUBSCRIBE);
    assert_string_equal(F.sent[from + 2].topic, "b");
    assert_int_equal(F.sent[from + 3].type, IOTC_MQTT_PUBLISH);
    assert_true(F.sent[from + 3].dup);
    assert_int_equal(count_sent(from, IOTC_MQTT_SUBSCRIBE), 2);
    ack(IOTC_MQTT_SUBACK, F.sent[from + 1].pid, 1);
    ack(IOTC_MQTT_SUBACK, F.sent[from + 2].pid, 0);
    ack(IOTC_MQTT_PUBACK, F.sent[from + 3].pid, 0);
    assert_int_equal(p->status, IOTC_OK);

    /* Unsubscribed filters are not renewed; resubscribe off renews none. */
    rec *u = unsub("b");
    long iu = find_sent(from, IOTC_MQTT_UNSUBSCRIBE);
    assert_string_equal(F.sent[iu].topic, "b");
    ack(IOTC_MQTT_UNSUBACK, F.sent[iu].pid, 0);
    assert_int_equal(u->status, IOTC_OK);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    advance(4000);
    from = F.nsent;
    connect_now(false);
    assert_int_equal(count_sent(from, IOTC_MQTT_SUBSCRIBE), 1);
    assert_string_equal(F.sent[from + 1].topic, "a/#");
    /* Left unacknowledged: stop frees the internal op without a callback. */
}

static void test_no_resubscribe_when_disabled(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.resubscribe = false;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(false);
    sub("a", 1);
    ack(IOTC_MQTT_SUBACK, F.sent[find_sent(0, IOTC_MQTT_SUBSCRIBE)].pid, 1);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    advance(1000);
    size_t from = F.nsent;
    connect_now(false);
    assert_int_equal(count_sent(from, IOTC_MQTT_SUBSCRIBE), 0);
}

static void test_operation_timeout(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.op_timeout_ms = 5000;
    c.max_inflight = 1;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *p = pub("t", "a", 1);
    rec *w = pub("t", "b", 1); /* waits for the window */
    rec *s = sub("s", 1);      /* FIFO: waits behind b */
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBLISH), 1);
    uint16_t id = F.sent[find_sent(0, IOTC_MQTT_PUBLISH)].pid;
    advance(4999);
    assert_int_equal(p->calls, 0);
    advance(1);
    assert_int_equal(p->calls, 1);
    assert_int_equal(p->status, IOTC_ERR_TIMEOUT);
    /* The window freed: b and the SUBSCRIBE went. */
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBLISH), 2);
    assert_int_equal(count_sent(0, IOTC_MQTT_SUBSCRIBE), 1);
    ack(IOTC_MQTT_PUBACK, id, 0); /* late: ignored */
    assert_int_equal(p->calls, 1);
    assert_int_equal(w->calls, 0);
    advance(5000);
    assert_int_equal(w->status, IOTC_ERR_TIMEOUT);
    assert_int_equal(s->status, IOTC_ERR_TIMEOUT);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.inflight, 0);
    assert_true(st.connected);
}

/* The operation timeout counts from the first send, across reconnects: a
 * QoS 1 publish whose time ran out while offline completes with TIMEOUT at
 * the next CONNACK and is not resent.  (Re-arming it at each resend let a
 * publish that gets the connection closed be resent for ever: found by
 * scenarios/retain-classic.scn.) */
static void test_operation_timeout_spans_reconnects(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.op_timeout_ms = 3000;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *early = pub("t", "poison", 1);
    advance(2000);
    rec *late = pub("t", "fresh", 1);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    advance(2000); /* poison's 3 s are over while offline; fresh has 1 s left */
    assert_int_equal(early->calls, 0);
    size_t from = F.nsent;
    connect_now(true);
    assert_int_equal(early->calls, 1);
    assert_int_equal(early->status, IOTC_ERR_TIMEOUT);
    assert_int_equal(late->calls, 0);
    /* Only "fresh" went out again (DUP), and it times out 3 s after its
     * first send, not 3 s after the resend. */
    assert_int_equal(count_sent(from, IOTC_MQTT_PUBLISH), 1);
    long j = find_sent(from, IOTC_MQTT_PUBLISH);
    assert_string_equal(F.sent[j].payload, "fresh");
    assert_true(F.sent[j].dup);
    advance(999);
    assert_int_equal(late->calls, 0);
    advance(2);
    assert_int_equal(late->calls, 1);
    assert_int_equal(late->status, IOTC_ERR_TIMEOUT);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.inflight, 0);
}

/* AWS IoT's classic takeover sends the older connection a CONNACK before
 * closing it: tolerated, and the close is reported as a lost connection. */
static void test_second_connack_tolerated(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(false);
    size_t nev = F.nev;
    connack(false, 0);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_true(st.connected);
    assert_int_equal(F.nev, nev);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    assert_int_equal(F.nev, nev + 1);
    assert_int_equal(F.ev[nev].type, IOTC_EV_INTERRUPTED);
    assert_int_equal(F.ev[nev].err, IOTC_ERR_CONNECTION_LOST);
}

static void test_inflight_window(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.max_inflight = 2;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *r[4];
    const char *names[4] = {"1", "2", "3", "4"};
    for (int i = 0; i < 4; i++)
        r[i] = pub("t", names[i], 1);
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBLISH), 2);
    rec *q0 = pub("t", "q0", 0); /* behind the waiting ones */
    assert_int_equal(q0->calls, 0);
    ack(IOTC_MQTT_PUBACK, F.sent[find_sent(0, IOTC_MQTT_PUBLISH)].pid, 0);
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBLISH), 3);
    ack_all_publishes(0);
    ack_all_publishes(0);
    const char *const want[] = {"1", "2", "3", "4", "q0"};
    check_sent_payloads(0, want, 5);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i]->status, IOTC_OK);
    assert_int_equal(q0->status, IOTC_OK);
    /* Ids: distinct while in use. */
    for (size_t i = 0; i < F.nsent; i++)
        for (size_t j = i + 1; j < F.nsent && j < i + 2; j++)
            if (F.sent[i].type == IOTC_MQTT_PUBLISH && F.sent[j].type == IOTC_MQTT_PUBLISH && F.sent[i].qos)
                assert_int_not_equal(F.sent[i].pid, F.sent[j].pid);
}

static void test_waiting_ops_survive_a_drop(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.max_inflight = 1;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *a = pub("t", "a", 1);
    rec *b = pub("t", "b", 1);
    rec *u = unsub("x");
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    iotc_engine_stats st;
    iotc_engine_get_stats(F.e, &st);
    assert_int_equal(st.queued, 2);
    advance(1000);
    size_t from = F.nsent;
    connect_now(true);
    long i = find_sent(from, IOTC_MQTT_PUBLISH);
    assert_true(F.sent[i].dup);
    assert_string_equal(F.sent[i].payload, "a");
    ack(IOTC_MQTT_PUBACK, F.sent[i].pid, 0);
    long j = find_sent((size_t)i + 1, IOTC_MQTT_PUBLISH);
    assert_string_equal(F.sent[j].payload, "b");
    ack(IOTC_MQTT_PUBACK, F.sent[j].pid, 0);
    long k = find_sent(from, IOTC_MQTT_UNSUBSCRIBE);
    assert_true(k > j);
    ack(IOTC_MQTT_UNSUBACK, F.sent[k].pid, 0);
    assert_int_equal(a->status, IOTC_OK);
    assert_int_equal(b->status, IOTC_OK);
    assert_int_equal(u->status, IOTC_OK);
}

static void test_incoming_publish(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_PUBLISH;
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 77;
    p.u.publish.topic = iotc_mqtt_str("cmd/x");
    p.u.publish.payload = iotc_mqtt_str("hi");
    feed(&p);
    assert_int_equal(F.msgs, 1);
    assert_string_equal(F.msg_topic, "cmd/x");
    long i = find_sent(0, IOTC_MQTT_PUBACK);
    assert_true(i >= 0);
    assert_int_equal(F.sent[i].pid, 77);
    p.u.publish.qos = 0;
    p.u.publish.packet_id = 0;
    feed(&p);
    assert_int_equal(F.msgs, 2);
    assert_int_equal(count_sent(0, IOTC_MQTT_PUBACK), 1);
    /* Garbage closes the link as a protocol error. */
    const uint8_t junk[] = {0xF0, 0x00};
    iotc_engine_input(F.e, junk, sizeof junk, F.now);
    assert_int_equal(F.closes, 1);
    assert_int_equal(F.ev[F.nev - 1].type, IOTC_EV_INTERRUPTED);
    assert_int_equal(F.ev[F.nev - 1].err, IOTC_ERR_PROTOCOL);
}

/* A broker's packet over max_packet_size is refused from its fixed header,
 * before any of its body is buffered. */
static void test_oversized_packet_from_broker(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.max_packet_size = 1024;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    /* PUBLISH, remaining length 1,000,000 (0xC0 0x84 0x3D): only the header. */
    const uint8_t hdr[] = {0x30, 0xC0, 0x84, 0x3D};
    iotc_engine_input(F.e, hdr, sizeof hdr, F.now);
    assert_int_equal(F.closes, 1);
    assert_int_equal(F.ev[F.nev - 1].type, IOTC_EV_INTERRUPTED);
    assert_int_equal(F.ev[F.nev - 1].err, IOTC_ERR_PROTOCOL);
    assert_int_equal(F.msgs, 0);
}

static void test_stop_completes_everything_once(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.max_inflight = 1;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *inflight = pub("t", "a", 1);
    rec *waiting = pub("t", "b", 1);
    rec *s = sub("s", 1);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now);
    rec *queued = pub("t", "c", 0);
    advance(1000);
    connect_now(true);
    /* Now: a resent in flight; b, s, c draining (unpaced) behind the window. */
    rec *more = pub("t", "d", 0);
    size_t before = F.nsent;
    assert_int_equal(iotc_engine_stop(F.e, F.now), IOTC_OK);
    assert_int_equal(F.sent[before].type, IOTC_MQTT_DISCONNECT);
    assert_int_equal(F.closes, 1);
    assert_int_equal(F.ev[F.nev - 1].type, IOTC_EV_CLOSED);
    rec *all[] = {inflight, waiting, s, queued, more};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(all[i]->calls, 1);
        assert_int_equal(all[i]->status, IOTC_ERR_CLOSED);
    }
    /* Nothing after stop: no call accepted, no reconnect, no second CLOSED. */
    rec *r = new_rec();
    assert_int_equal(iotc_engine_publish(F.e, "t", NULL, 0, 0, false, done_cb, r, F.now), IOTC_ERR_CLOSED);
    assert_int_equal(iotc_engine_stop(F.e, F.now), IOTC_ERR_CLOSED);
    assert_int_equal(iotc_engine_start(F.e, F.now), IOTC_ERR_CLOSED);
    size_t nev = F.nev;
    int opens = F.opens;
    advance(100000);
    assert_int_equal(F.opens, opens);
    assert_int_equal(F.nev, nev);
    iotc_engine_link_down(F.e, IOTC_ERR_CONNECTION_LOST, F.now); /* ignored */
    assert_int_equal(F.nev, nev);
}

static void test_stop_while_offline_and_free_without_stop(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    make(&c);
    rec *a = pub("t", "a", 1); /* before start: queued */
    assert_int_equal(iotc_engine_stop(F.e, F.now), IOTC_OK);
    assert_int_equal(a->status, IOTC_ERR_CLOSED);
    assert_int_equal(F.nsent, 0);
    assert_int_equal(F.closes, 0);
    assert_int_equal(F.nev, 1);
    assert_int_equal(F.ev[0].type, IOTC_EV_CLOSED);
    iotc_engine_free(F.e);
    F.e = NULL;

    /* free() while connected: DISCONNECT, close, CLOSED for all, no event. */
    F.nev = 0;
    make(&c);
    iotc_engine_start(F.e, F.now);
    connect_now(true);
    rec *b = pub("t", "b", 1);
    size_t before = F.nsent;
    size_t nev = F.nev;
    iotc_engine_free(F.e);
    F.e = NULL;
    assert_int_equal(b->status, IOTC_ERR_CLOSED);
    assert_int_equal(F.sent[before].type, IOTC_MQTT_DISCONNECT);
    assert_int_equal(F.nev, nev);
}

/* A callback that stops the engine from inside a completion. */
static void stop_in_cb(void *user, int status, uint8_t granted)
{
    done_cb(user, status, granted);
    iotc_engine_stop(F.e, F.now);
}

static void test_stop_from_a_callback(void **state)
{
    (void)state;
    iotc_engine_config c;
    base_config(&c);
    c.queue.limit = 2;
    c.queue.drop = IOTC_OPQ_DROP_OLDEST;
    make(&c);
    iotc_engine_start(F.e, F.now);
    rec *first = new_rec();
    assert_int_equal(iotc_engine_publish(F.e, "t", NULL, 0, 1, false, stop_in_cb, first, F.now), IOTC_OK);
    first->accepted = true;
    rec *b = pub("t", "b", 1);
    rec *c3 = pub("t", "c", 1); /* drops `first`, whose callback stops */
    assert_int_equal(first->status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(b->status, IOTC_ERR_CLOSED);
    assert_int_equal(c3->status, IOTC_ERR_CLOSED);
    assert_int_equal(F.ev[F.nev - 1].type, IOTC_EV_CLOSED);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_config_validation),
        T(test_bad_arguments_refused_at_the_call),
        T(test_connect_success_and_resume),
        T(test_connect_refused_and_connack_timeout),
        T(test_backoff_sequence_and_stable_reset),
        T(test_backoff_with_full_jitter_stays_in_bounds),
        T(test_keepalive_and_ping_timeout),
        T(test_queue_overflow_drop_oldest),
        T(test_queue_overflow_drop_newest),
        T(test_queue_off),
        T(test_queue_off_link_drop),
        T(test_drain_order_rate_and_new_requests_join_the_tail),
        T(test_link_drop_mid_drain_loses_nothing),
        T(test_qos1_resent_with_dup_after_reconnect),
        T(test_resubscribe_when_session_not_present),
        T(test_no_resubscribe_when_disabled),
        T(test_operation_timeout),
        T(test_operation_timeout_spans_reconnects),
        T(test_second_connack_tolerated),
        T(test_inflight_window),
        T(test_waiting_ops_survive_a_drop),
        T(test_incoming_publish),
        T(test_oversized_packet_from_broker),
        T(test_stop_completes_everything_once),
        T(test_stop_while_offline_and_free_without_stop),
        T(test_stop_from_a_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
