/*
 * test_shadow_api.c: the Device Shadow client (iotc/shadow.h) on the real
 * client against the scripted fake broker (helpers/fake_broker.h), which
 * lets a test hold a SUBACK back, refuse it, and see every packet the
 * client sends: what a real broker cannot show.  A responder thread plays
 * the shadow service where a test needs answers.
 *
 * The end-to-end counterpart, with mosquitto and a paho responder, is
 * client/tests/integration/test_shadow_mosquitto.py.
 *
 * Timing: every wait is a condition with a generous deadline (Valgrind on a
 * busy machine); "nothing happens" is checked over a short sleep.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "helpers/fake_broker.h"
#include "helpers/fb_client.h"
#include "helpers/test_wait.h"
#include "iotc/client.h"
#include "iotc/shadow.h"

/* ---- results the callbacks record ------------------------------------------------------- */

typedef struct {
    int calls;
    int status;
    int code;
    char message[128];
    char json[512];
    uint64_t version;
    bool on_service;
    uint64_t at;
    int busy_rc; /* a blocking helper tried from inside the callback */
} result_rec;

static iotc_shadow *g_free_in_cb; /* a shadow the next result callback frees */
static bool g_try_wait_in_cb;

/* The client the service-thread check asks; set per test. */
static iotc_client *g_client;

static void on_result(iotc_shadow *s, const iotc_shadow_result *r, void *user)
{
    result_rec *rec = user;
    bool svc = iotc_client_on_service_thread(g_client);
    int busy = 0;
    pthread_mutex_lock(&g_mu);
    bool try_wait = g_try_wait_in_cb;
    iotc_shadow *to_free = g_free_in_cb == s ? s : NULL;
    if (to_free)
        g_free_in_cb = NULL;
    pthread_mutex_unlock(&g_mu);
    if (try_wait)
        busy = iotc_shadow_get_wait(s, 1000, NULL, NULL);
    pthread_mutex_lock(&g_mu);
    rec->calls++;
    rec->status = r->status;
    rec->code = r->code;
    snprintf(rec->message, sizeof rec->message, "%s", r->message ? r->message : "(null)");
    snprintf(rec->json, sizeof rec->json, "%.*s", r->json ? (int)r->json_len : 0, r->json ? r->json : "");
    rec->version = r->version;
    rec->at = now_ms();
    rec->busy_rc = busy;
    rec->on_service = svc;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    if (to_free)
        iotc_shadow_free(to_free);
}

typedef struct {
    int n;
    char json[8][256];
    uint64_t version[8];
} stream_rec;

static void on_doc(iotc_shadow *s, const char *json, size_t len, uint64_t version, void *user)
{
    (void)s;
    stream_rec *rec = user;
    pthread_mutex_lock(&g_mu);
    if (rec->n < 8) {
        snprintf(rec->json[rec->n], sizeof rec->json[0], "%.*s", (int)len, json);
        rec->version[rec->n] = version;
    }
    rec->n++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

typedef struct {
    int calls, status;
    uint8_t granted;
} done_rec;

static void on_done(int status, uint8_t granted, void *user)
{
    done_rec *d = user;
    pthread_mutex_lock(&g_mu);
    d->calls++;
    d->status = status;
    d->granted = granted;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* ---- fixtures --------------------------------------------------------------------------- */

static fb *broker;

static int setup(void **state)
{
    (void)state;
    broker = fb_start();
    g_free_in_cb = NULL;
    g_try_wait_in_cb = false;
    return broker ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fb_stop(broker);
    broker = NULL;
    return 0;
}

static iotc_client *client(bool connect, int64_t queue)
{
    iotc_client *c = fb_client_new(broker, "shadow-test", queue, connect, WAIT_MS);
    assert_non_null(c);
    g_client = c;
    return c;
}

static iotc_shadow *shadow(iotc_client *c, const char *thing, const char *name)
{
    iotc_shadow *s = NULL;
    assert_int_equal(iotc_shadow_new(c, thing, name, &s), IOTC_OK);
    assert_non_null(s);
    return s;
}

/* The i-th received packet of `type` (copied fields the tests need). */
static void get_rec(uint8_t type, size_t i, char *topic, size_t tcap, char *payload, size_t pcap, uint16_t *pid)
{
    fb_rec r;
    assert_true(fb_get(broker, type, i, &r));
    if (topic)
        snprintf(topic, tcap, "%s", type == IOTC_MQTT_PUBLISH ? r.topic : r.filter ? r.filter : "");
    if (payload)
        snprintf(payload, pcap, "%s", r.payload ? r.payload : "");
    if (pid)
        *pid = r.packet_id;
    fb_rec_free(&r);
}

/* The clientToken of a request payload. */
static void token_of(const char *payload, char *out, size_t cap)
{
    const char *k = strstr(payload, "\"clientToken\":\"");
    assert_non_null(k);
    k += strlen("\"clientToken\":\"");
    const char *e = strchr(k, '"');
    assert_non_null(e);
    assert_true((size_t)(e - k) < cap);
    memcpy(out, k, (size_t)(e - k));
    out[e - k] = 0;
}

static uint16_t next_pid = 1;

static void answer(const char *topic, const char *fmt, const char *token)
{
    char p[512];
    snprintf(p, sizeof p, fmt, token);
    assert_true(fb_publish(broker, topic, p, 1, next_pid++));
}

/* ---- a responder thread: the shadow service, minimal ---------------------------------------- */

typedef enum { R_ACCEPT, R_REJECT, R_SILENT } r_mode;

typedef struct {
    pthread_t t;
    volatile bool stop;
    r_mode mode;
    size_t seen; /* PUBLISH records handled */
    int answered;
} responder;

static void *responder_main(void *p)
{
    responder *r = p;
    while (!r->stop) {
        if (!fb_wait_count(broker, IOTC_MQTT_PUBLISH, r->seen + 1, 50))
            continue;
        char topic[256], payload[512], token[80];
        get_rec(IOTC_MQTT_PUBLISH, r->seen++, topic, sizeof topic, payload, sizeof payload, NULL);
        if (strncmp(topic, "$aws/things/", 12) != 0 || r->mode == R_SILENT)
            continue;
        token_of(payload, token, sizeof token);
        char reply[300];
        if (r->mode == R_ACCEPT) {
            snprintf(reply, sizeof reply, "%s/accepted", topic);
            answer(reply, "{\"state\":{\"reported\":{\"on\":true}},\"version\":42,\"clientToken\":\"%s\"}", token);
        } else {
            snprintf(reply, sizeof reply, "%s/rejected", topic);
            answer(reply, "{\"code\":404,\"message\":\"No shadow exists with name: 'dev'\",\"clientToken\":\"%s\"}",
                   token);
        }
        pthread_mutex_lock(&g_mu);
        r->answered++;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static void responder_start(responder *r, r_mode mode)
{
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->seen = fb_count(broker, IOTC_MQTT_PUBLISH);
    assert_int_equal(pthread_create(&r->t, NULL, responder_main, r), 0);
}

static void responder_stop(responder *r)
{
    r->stop = true;
    pthread_join(r->t, NULL);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_new_args(void **state)
{
    (void)state;
    iotc_client *c = client(false, 20);
    iotc_shadow *s = (iotc_shadow *)1;
    assert_int_equal(iotc_shadow_new(c, "bad thing", NULL, &s), IOTC_ERR_INVALID_ARG);
    assert_null(s);
    assert_non_null(strstr(iotc_shadow_why(), "thing name"));
    assert_int_equal(iotc_shadow_new(c, "dev", "a/b", &s), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_shadow_why(), "shadow name"));
    assert_int_equal(iotc_shadow_new(NULL, "dev", NULL, &s), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_new(c, "dev", NULL, NULL), IOTC_ERR_INVALID_ARG);
    iotc_shadow_config cfg;
    iotc_shadow_config_init(&cfg);
    assert_int_equal(cfg.max_pending, 10);
    assert_int_equal(iotc_shadow_new_with_config(c, "dev", "", &cfg, &s), IOTC_OK);
    assert_string_equal(iotc_shadow_why(), "");
    /* Refused at the call, no callback. */
    result_rec rr = {0};
    assert_int_equal(iotc_shadow_get(s, 0, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_shadow_why(), "timeout"));
    assert_int_equal(iotc_shadow_get(s, 100, NULL, &rr), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_update(s, NULL, 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_update(s, "{\"desired\":{}}", 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_shadow_why(), "state"));
    assert_int_equal(iotc_shadow_get(NULL, 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_on_delta(NULL, on_doc, NULL, NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_get_wait(NULL, 100, NULL, NULL), IOTC_ERR_INVALID_ARG);
    iotc_shadow_free(s);
    iotc_shadow_free(NULL);
    assert_int_equal(rr.calls, 0);
    iotc_client_free(c);
}

/* The heart of it: SUBSCRIBE to accepted and rejected, wait for both
 * SUBACKs, then (and only then) PUBLISH; the answer with our token
 * completes the request; the subscriptions are kept for the next one. */
static void test_subscribe_then_publish(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", "cfg");
    fb_set_withhold_suback(broker, true);
    result_rec rr = {0};
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &rr), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_SUBSCRIBE, 2, WAIT_MS));
    char f[2][256];
    uint16_t pid[2];
    for (size_t i = 0; i < 2; i++) {
        fb_rec r;
        assert_true(fb_get(broker, IOTC_MQTT_SUBSCRIBE, i, &r));
        assert_int_equal(r.sub_qos, 1);
        snprintf(f[i], sizeof f[i], "%s", r.filter);
        pid[i] = r.packet_id;
        fb_rec_free(&r);
    }
    assert_true((!strcmp(f[0], "$aws/things/dev/shadow/name/cfg/get/accepted") &&
                 !strcmp(f[1], "$aws/things/dev/shadow/name/cfg/get/rejected")) ||
                (!strcmp(f[1], "$aws/things/dev/shadow/name/cfg/get/accepted") &&
                 !strcmp(f[0], "$aws/things/dev/shadow/name/cfg/get/rejected")));
    sleep_ms(150);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0);
    assert_true(fb_suback_now(broker, pid[0], 1));
    sleep_ms(150);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0); /* one SUBACK is not enough */
    assert_true(fb_suback_now(broker, pid[1], 1));
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    char topic[256], payload[256], token[80];
    fb_rec pr;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &pr));
    assert_int_equal(pr.qos, 1);
    assert_false(pr.retain);
    fb_rec_free(&pr);
    get_rec(IOTC_MQTT_PUBLISH, 0, topic, sizeof topic, payload, sizeof payload, NULL);
    assert_string_equal(topic, "$aws/things/dev/shadow/name/cfg/get");
    token_of(payload, token, sizeof token);
    assert_int_equal(strlen(token), 36);
    char want[128];
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\"}", token);
    assert_string_equal(payload, want);
    answer("$aws/things/dev/shadow/name/cfg/get/accepted",
           "{\"state\":{\"desired\":{\"a\":1}},\"version\":3,\"clientToken\":\"%s\"}", token);
    ASSERT_WAIT(rr.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(rr.status, IOTC_OK);
    assert_int_equal(rr.version, 3);
    assert_true(rr.on_service);
    assert_non_null(strstr(rr.json, "\"version\":3"));
    assert_string_equal(rr.message, "");
    pthread_mutex_unlock(&g_mu);
    /* The next get reuses the subscriptions: no SUBSCRIBE, straight out. */
    result_rec r2 = {0};
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &r2), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 2, WAIT_MS));
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    get_rec(IOTC_MQTT_PUBLISH, 1, topic, sizeof topic, payload, sizeof payload, NULL);
    char token2[80];
    token_of(payload, token2, sizeof token2);
    assert_string_not_equal(token, token2);
    answer("$aws/things/dev/shadow/name/cfg/get/rejected", "{\"code\":404,\"message\":\"gone\",\"clientToken\":\"%s\"}",
           token2);
    ASSERT_WAIT(r2.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(r2.status, IOTC_ERR_REJECTED);
    assert_int_equal(r2.code, 404);
    assert_string_equal(r2.message, "gone");
    pthread_mutex_unlock(&g_mu);
    /* Another operation subscribes to its own topics. */
    fb_set_withhold_suback(broker, false);
    result_rec r3 = {0};
    assert_int_equal(iotc_shadow_delete(s, WAIT_MS, on_result, &r3), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 3, WAIT_MS));
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 4);
    get_rec(IOTC_MQTT_PUBLISH, 2, topic, sizeof topic, payload, sizeof payload, NULL);
    assert_string_equal(topic, "$aws/things/dev/shadow/name/cfg/delete");
    iotc_shadow_free(s);
    ASSERT_WAIT(r3.calls == 1);
    assert_int_equal(r3.status, IOTC_ERR_CLOSED);
    /* Closing unsubscribes from the four response topics. */
    assert_true(fb_wait_count(broker, IOTC_MQTT_UNSUBSCRIBE, 4, WAIT_MS));
    iotc_client_free(c);
    assert_int_equal(rr.calls, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r3.calls, 1);
}

static void test_refused_suback(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    /* The SUBACKs are held back until both requests are made, so that the
     * second one must wait for the first one's subscriptions (refused
     * before it was made, it would rightly subscribe again). */
    fb_set_withhold_suback(broker, true);
    result_rec a = {0}, b = {0};
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &a), IOTC_OK);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &b), IOTC_OK); /* waits for the same SUBACKs */
    assert_true(fb_wait_count(broker, IOTC_MQTT_SUBSCRIBE, 2, WAIT_MS));
    for (size_t i = 0; i < 2; i++) {
        uint16_t pid;
        get_rec(IOTC_MQTT_SUBSCRIBE, i, NULL, 0, NULL, 0, &pid);
        assert_true(fb_suback_now(broker, pid, 0x80));
    }
    fb_set_withhold_suback(broker, false);
    ASSERT_WAIT(a.calls == 1 && b.calls == 1);
    assert_int_equal(a.status, IOTC_ERR_REFUSED);
    assert_int_equal(b.status, IOTC_ERR_REFUSED);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    /* The next request subscribes again. */
    responder rs;
    responder_start(&rs, R_ACCEPT);
    result_rec d = {0};
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &d), IOTC_OK);
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.status, IOTC_OK);
    assert_int_equal(d.version, 42);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 4);
    responder_stop(&rs);
    iotc_shadow_free(s);
    iotc_client_free(c);
    assert_int_equal(a.calls + b.calls + d.calls, 3);
}

static void test_timeout_on_service_thread(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    result_rec a = {0}, b = {0};
    uint64_t t0 = now_ms();
    assert_int_equal(iotc_shadow_get(s, 400, on_result, &a), IOTC_OK);
    assert_int_equal(iotc_shadow_update(s, "{\"state\":{\"reported\":{\"x\":1}}}", 200, on_result, &b),
                     IOTC_OK);
    ASSERT_WAIT(a.calls == 1 && b.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(a.status, IOTC_ERR_TIMEOUT);
    assert_int_equal(b.status, IOTC_ERR_TIMEOUT);
    assert_true(a.on_service);
    assert_true(b.on_service);
    assert_true(b.at >= t0 + 200);
    assert_true(a.at >= t0 + 400);
    assert_true(b.at <= a.at);
    assert_string_equal(a.json, "");
    pthread_mutex_unlock(&g_mu);
    /* Both went out (the broker answered SUBACK), nobody answered. */
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 2);
    /* An answer after the timeout changes nothing. */
    char payload[256], token[80];
    get_rec(IOTC_MQTT_PUBLISH, 0, NULL, 0, payload, sizeof payload, NULL);
    token_of(payload, token, sizeof token);
    answer("$aws/things/dev/shadow/get/accepted", "{\"clientToken\":\"%s\"}", token);
    sleep_ms(150);
    assert_int_equal(a.calls, 1);
    iotc_shadow_free(s);
    iotc_client_free(c);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
}

static void test_foreign_and_duplicate_answers(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    result_rec a = {0};
    assert_int_equal(iotc_shadow_update(s, "{\"clientToken\":\"mine\",\"state\":{\"desired\":{\"c\":\"red\"}}}",
                                        WAIT_MS, on_result, &a),
                     IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    char topic[256], payload[512], token[80];
    get_rec(IOTC_MQTT_PUBLISH, 0, topic, sizeof topic, payload, sizeof payload, NULL);
    assert_string_equal(topic, "$aws/things/dev/shadow/update");
    token_of(payload, token, sizeof token);
    assert_string_not_equal(token, "mine");
    assert_null(strstr(payload, "mine"));
    assert_non_null(strstr(payload, "\"state\":{\"desired\":{\"c\":\"red\"}}"));
    /* Someone else's answers, one without a token, garbage: all ignored. */
    answer("$aws/things/dev/shadow/update/accepted", "{\"version\":9,\"clientToken\":\"%s\"}", "someone-else");
    answer("$aws/things/dev/shadow/update/rejected", "{\"code\":409,\"message\":\"x\",\"clientToken\":\"%s\"}",
           "mine");
    answer("$aws/things/dev/shadow/update/accepted", "{\"version\":9%s}", "");
    answer("$aws/things/dev/shadow/update/accepted", "not json %s", token);
    sleep_ms(200);
    assert_int_equal(a.calls, 0);
    answer("$aws/things/dev/shadow/update/accepted", "{\"version\":10,\"clientToken\":\"%s\"}", token);
    ASSERT_WAIT(a.calls == 1);
    /* The same answer again, and on the other topic: still once. */
    answer("$aws/things/dev/shadow/update/accepted", "{\"version\":10,\"clientToken\":\"%s\"}", token);
    answer("$aws/things/dev/shadow/update/rejected", "{\"code\":400,\"clientToken\":\"%s\"}", token);
    sleep_ms(200);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, IOTC_OK);
    assert_int_equal(a.version, 10);
    pthread_mutex_unlock(&g_mu);
    iotc_shadow_free(s);
    iotc_client_free(c);
}

static void test_bad_update_sends_nothing(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    result_rec a = {0};
    const char *bad[] = {"", "{", "[]", "{\"state\":1}", "{\"reported\":{}}", "{\"state\":{}} trailing"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(iotc_shadow_update(s, bad[i], 1000, on_result, &a), IOTC_ERR_INVALID_ARG);
        assert_true(strlen(iotc_shadow_why()) > 0);
        assert_int_equal(iotc_shadow_update_wait(s, bad[i], 1000, NULL, NULL), IOTC_ERR_INVALID_ARG);
    }
    sleep_ms(100);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 0);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0);
    iotc_shadow_free(s);
    iotc_client_free(c);
    assert_int_equal(a.calls, 0);
}

static void test_pending_limit_and_free(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow_config cfg;
    iotc_shadow_config_init(&cfg);
    iotc_shadow *s = NULL;
    assert_int_equal(iotc_shadow_new_with_config(c, "dev", NULL, &cfg, &s), IOTC_OK);
    static result_rec r[11];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 10; i++)
        assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &r[i]), IOTC_OK);
    assert_int_equal(iotc_shadow_delete(s, WAIT_MS, on_result, &r[10]), IOTC_ERR_BUSY);
    assert_non_null(strstr(iotc_shadow_why(), "10"));
    assert_int_equal(iotc_shadow_update_wait(s, "{\"state\":{}}", 100, NULL, NULL), IOTC_ERR_BUSY);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 10, WAIT_MS));
    /* Freed from this thread: every pending one completes with CLOSED, on
     * the service thread, before iotc_shadow_free returns. */
    iotc_shadow_free(s);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, IOTC_ERR_CLOSED);
        assert_true(r[i].on_service);
    }
    assert_int_equal(r[10].calls, 0);
    pthread_mutex_unlock(&g_mu);
    iotc_client_free(c);

    /* A configured bound. */
    c = client(true, 20);
    cfg.max_pending = 2;
    assert_int_equal(iotc_shadow_new_with_config(c, "dev", "n", &cfg, &s), IOTC_OK);
    memset(r, 0, sizeof r);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &r[0]), IOTC_OK);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &r[1]), IOTC_OK);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &r[2]), IOTC_ERR_BUSY);
    iotc_shadow_free(s);
    assert_int_equal(r[0].calls + r[1].calls + r[2].calls, 2);
    iotc_client_free(c);
}

static void test_streams(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    stream_rec delta = {0}, docs = {0};
    done_rec dd = {0}, dc = {0};
    assert_int_equal(iotc_shadow_on_delta(s, on_doc, &delta, on_done, &dd), IOTC_OK);
    assert_int_equal(iotc_shadow_on_documents(s, on_doc, &docs, on_done, &dc), IOTC_OK);
    ASSERT_WAIT(dd.calls == 1 && dc.calls == 1);
    assert_int_equal(dd.status, IOTC_OK);
    assert_int_equal(dd.granted, 1);
    const char *dt = "$aws/things/dev/shadow/update/delta";
    assert_true(fb_publish(broker, dt, "{\"version\":5,\"state\":{\"c\":\"red\"}}", 1, next_pid++));
    assert_true(fb_publish(broker, dt, "{\"version\":4,\"state\":{\"c\":\"old\"}}", 1, next_pid++));
    assert_true(fb_publish(broker, dt, "{\"version\":5,\"state\":{\"c\":\"again\"}}", 1, next_pid++));
    assert_true(fb_publish(broker, dt, "{\"state\":{\"c\":\"no version\"}}", 1, next_pid++));
    assert_true(fb_publish(broker, "$aws/things/dev/shadow/update/documents",
                           "{\"previous\":null,\"current\":{\"state\":{},\"version\":6},\"timestamp\":1}", 1,
                           next_pid++));
    assert_true(fb_publish(broker, "$aws/things/dev/shadow/update/documents",
                           "{\"previous\":null,\"current\":{\"state\":{},\"version\":3},\"timestamp\":1}", 1,
                           next_pid++));
    assert_true(fb_publish(broker, dt, "{\"version\":7,\"state\":{\"c\":\"new\"}}", 1, next_pid++));
    ASSERT_WAIT(delta.n == 3 && docs.n == 1);
    sleep_ms(100);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(delta.n, 3);
    assert_int_equal(delta.version[0], 5);
    assert_non_null(strstr(delta.json[0], "red"));
    assert_int_equal(delta.version[1], 5);
    assert_non_null(strstr(delta.json[1], "again"));
    assert_int_equal(delta.version[2], 7);
    assert_int_equal(docs.n, 1);
    assert_int_equal(docs.version[0], 6);
    pthread_mutex_unlock(&g_mu);
    /* Stopping the delta stream unsubscribes; nothing more arrives. */
    done_rec du = {0};
    assert_int_equal(iotc_shadow_on_delta(s, NULL, NULL, on_done, &du), IOTC_OK);
    ASSERT_WAIT(du.calls == 1);
    assert_true(fb_count(broker, IOTC_MQTT_UNSUBSCRIBE) >= 1);
    iotc_shadow_free(s);
    iotc_client_free(c);
}

static void test_blocking_helpers(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    int code = -1;
    char *json = NULL;
    assert_int_equal(iotc_shadow_get_wait(s, WAIT_MS, &code, &json), IOTC_OK);
    assert_int_equal(code, 0);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"version\":42"));
    free(json);
    assert_int_equal(iotc_shadow_update_wait(s, "{\"state\":{\"reported\":{\"on\":true}}}", WAIT_MS, NULL, &json),
                     IOTC_OK);
    assert_non_null(json);
    free(json);
    assert_int_equal(iotc_shadow_delete_wait(s, WAIT_MS, NULL, NULL), IOTC_OK);
    responder_stop(&rs);
    responder_start(&rs, R_REJECT);
    assert_int_equal(iotc_shadow_get_wait(s, WAIT_MS, &code, &json), IOTC_ERR_REJECTED);
    assert_int_equal(code, 404);
    assert_non_null(strstr(json, "No shadow exists"));
    free(json);
    responder_stop(&rs);
    responder_start(&rs, R_SILENT);
    uint64_t t0 = now_ms();
    assert_int_equal(iotc_shadow_get_wait(s, 300, &code, &json), IOTC_ERR_TIMEOUT);
    assert_true(now_ms() >= t0 + 300);
    assert_null(json);
    assert_int_equal(code, 0);
    responder_stop(&rs);
    /* From a callback: BUSY at once (it would wait on its own thread). */
    responder_start(&rs, R_ACCEPT);
    pthread_mutex_lock(&g_mu);
    g_try_wait_in_cb = true;
    pthread_mutex_unlock(&g_mu);
    result_rec a = {0};
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.status, IOTC_OK);
    assert_int_equal(a.busy_rc, IOTC_ERR_BUSY);
    responder_stop(&rs);
    iotc_shadow_free(s);
    iotc_client_free(c);
}

static void test_free_from_own_callback(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    result_rec a = {0}, b = {0};
    responder rs;
    responder_start(&rs, R_ACCEPT);
    /* The second request is still pending when the first one's callback
     * frees the shadow: it completes with CLOSED, in that same free. */
    fb_set_withhold_suback(broker, false);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    responder_stop(&rs);
    responder_start(&rs, R_SILENT);
    pthread_mutex_lock(&g_mu);
    g_free_in_cb = s;
    pthread_mutex_unlock(&g_mu);
    result_rec c1 = {0};
    assert_int_equal(iotc_shadow_get(s, 200, on_result, &c1), IOTC_OK);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &b), IOTC_OK);
    ASSERT_WAIT(c1.calls == 1 && b.calls == 1);
    assert_int_equal(c1.status, IOTC_ERR_TIMEOUT);
    assert_int_equal(b.status, IOTC_ERR_CLOSED);
    responder_stop(&rs);
    sleep_ms(100);
    iotc_client_free(c);
    assert_int_equal(b.calls, 1);
}

static void test_refused_at_call_offline(void **state)
{
    (void)state;
    /* Offline with the queue off: the SUBSCRIBE is refused at its call, so
     * the request is too, and nothing calls back. */
    iotc_client *c = client(false, IOTC_QUEUE_OFF);
    iotc_shadow *s = shadow(c, "dev", NULL);
    result_rec a = {0};
    assert_int_equal(iotc_shadow_get(s, 1000, on_result, &a), IOTC_ERR_QUEUE_OFF);
    assert_true(strlen(iotc_shadow_why()) > 0);
    stream_rec d = {0};
    assert_int_equal(iotc_shadow_on_delta(s, on_doc, &d, NULL, NULL), IOTC_ERR_QUEUE_OFF);
    /* Connected, the same works; the client kept no half registration. */
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.status, IOTC_OK);
    responder_stop(&rs);
    iotc_shadow_free(s);
    iotc_client_free(c);
}

static void test_offline_request_waits_for_connect(void **state)
{
    (void)state;
    /* Made before the connection: the SUBSCRIBEs wait in the offline queue,
     * and the request goes out after them once connected. */
    iotc_client *c = client(false, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    result_rec a = {0};
    assert_int_equal(iotc_shadow_delete(s, WAIT_MS, on_result, &a), IOTC_OK);
    sleep_ms(100);
    responder rs;
    responder_start(&rs, R_REJECT);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.status, IOTC_ERR_REJECTED);
    assert_int_equal(a.code, 404);
    responder_stop(&rs);
    iotc_shadow_free(s);
    iotc_client_free(c);
}

static void test_disconnect_then_subscribe_again(void **state)
{
    (void)state;
    /* A disconnect ends the session and the client forgets our
     * subscriptions; the request pending then fails with CLOSED, which
     * tells the shadow to subscribe again at its next request. */
    iotc_client *c = client(true, 20);
    iotc_shadow *s = shadow(c, "dev", NULL);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_shadow_get_wait(s, WAIT_MS, NULL, NULL), IOTC_OK);
    responder_stop(&rs);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    fb_set_withhold_puback(broker, true);
    result_rec a = {0};
    assert_int_equal(iotc_shadow_get(s, WAIT_MS, on_result, &a), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 2, WAIT_MS));
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.status, IOTC_ERR_CLOSED);
    fb_set_withhold_puback(broker, false);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_shadow_get_wait(s, WAIT_MS, NULL, NULL), IOTC_OK);
    responder_stop(&rs);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 4);
    iotc_shadow_free(s);
    iotc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_then_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_suback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_on_service_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_and_duplicate_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_update_sends_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_limit_and_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_own_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_at_call_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_request_waits_for_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_then_subscribe_again, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
