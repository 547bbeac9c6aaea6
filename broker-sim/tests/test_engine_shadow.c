/*
 * test_engine_shadow.c: the engine running the Device Shadow service
 * (sim_shadow.h) for its clients: which publishes are requests, how the
 * responses travel (broker publishes routed to every subscriber, at the
 * subscription's QoS, after the request's PUBACK, through iot:Receive),
 * the event-log decision, the edge's save hook, and the switch that turns
 * the service off.  What the responses contain is test_shadow.c's.
 */
#include "engine_harness.h"
#include "sim_policy.h"

#define T1 "$aws/things/t1/shadow"

static unsigned g_changed;
static void count_changed(void *ctx)
{
    (void)ctx;
    g_changed++;
}

/* h_start with the shadows_changed hook counted in g_changed. */
static void start_counting(H *h)
{
    static const sim_io io = {h_io_send, h_io_close, h_io_log, h_io_random, h_io_wall, count_changed};
    g_changed = 0;
    h->e = sim_engine_new(&h->cfg, &io, h);
    assert_non_null(h->e);
    h_tick(h);
}

/* Pops a PUBLISH on `topic` and returns its payload parsed (cJSON_Delete it). */
static cJSON *pop_json(H *h, h_conn *c, const char *topic, int qos)
{
    iotc_mqtt_packet p;
    h_expect_pub_(h, c, topic, NULL, qos, &p, __FILE__, __LINE__);
    char *s = h_strdup_bytes(p.u.publish.payload);
    cJSON *o = cJSON_Parse(s);
    free(s);
    assert_non_null(o);
    return o;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void update_answers_every_subscriber_after_the_puback(void **state)
{
    H *h = *state;
    start_counting(h);
    h_conn *dev = h_client(h, V3, "dev");
    h_conn *app = h_client(h, V5, "app");
    h_conn *req = h_client(h, V3, "req-watcher");
    h_sub_ok(h, dev, T1 "/update/accepted", 1);
    h_sub_ok(h, app, T1 "/+/+", 0);
    h_sub_ok(h, req, T1 "/update", 1);
    uint16_t pid = h_pub(h, dev, T1 "/update", "{\"state\":{\"desired\":{\"on\":true}},\"clientToken\":\"k1\"}", 1,
                         false);
    /* The request itself: acknowledged first, and routed like any message. */
    iotc_mqtt_packet p;
    h_expect_(h, dev, IOTC_MQTT_PUBACK, &p, __FILE__, __LINE__);
    assert_int_equal(p.u.ack.packet_id, pid);
    h_expect_pub(h, req, T1 "/update", NULL, 1);
    h_expect_none(h, req);
    /* The requester's QoS 1 subscription: accepted at QoS 1. */
    cJSON *acc = pop_json(h, dev, T1 "/update/accepted", 1);
    assert_int_equal((int)jnum(acc, "version"), 1);
    assert_true(h_jstr_is(acc, "clientToken", "k1"));
    /* Timestamps are the edge's wall clock in seconds. */
    assert_int_equal((uint64_t)jnum(acc, "timestamp"), H_WALL_MS / 1000);
    cJSON_Delete(acc);
    h_expect_none(h, dev);
    /* Another client's QoS 0 wildcard: accepted, delta, documents, in that order, at QoS 0. */
    cJSON *a2 = pop_json(h, app, T1 "/update/accepted", 0);
    cJSON *d = pop_json(h, app, T1 "/update/delta", 0);
    cJSON *docs = pop_json(h, app, T1 "/update/documents", 0);
    h_expect_none(h, app);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "state"), "on")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(docs, "previous")));
    cJSON_Delete(a2);
    cJSON_Delete(d);
    cJSON_Delete(docs);
    /* The decision, and the edge told to save. */
    const cJSON *ev = h_log_last(h, "decision", "shadow");
    assert_non_null(ev);
    assert_true(h_jstr_is(ev, "op", "update"));
    assert_true(h_jstr_is(ev, "thing", "t1"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(ev, "shadow")));
    assert_int_equal((int)jnum(ev, "code"), 200);
    assert_true(h_jstr_is(ev, "client", "dev"));
    assert_int_equal(g_changed, 1);
}

static void rejected_and_get_do_not_ask_for_a_save(void **state)
{
    H *h = *state;
    start_counting(h);
    h_conn *dev = h_client(h, V3, "dev");
    h_sub_ok(h, dev, "$aws/things/t2/shadow/name/cfg/+/+", 1);
    h_pub(h, dev, "$aws/things/t2/shadow/name/cfg/get", "", 0, false);
    cJSON *r = pop_json(h, dev, "$aws/things/t2/shadow/name/cfg/get/rejected", 1);
    assert_int_equal((int)jnum(r, "code"), 404);
    assert_true(h_jstr_is(r, "message", "No shadow exists with name: 'cfg'"));
    cJSON_Delete(r);
    h_pub(h, dev, "$aws/things/t2/shadow/name/cfg/update", "not json", 0, false);
    r = pop_json(h, dev, "$aws/things/t2/shadow/name/cfg/update/rejected", 1);
    assert_int_equal((int)jnum(r, "code"), 400);
    cJSON_Delete(r);
    h_expect_none(h, dev);
    const cJSON *ev = h_log_last(h, "decision", "shadow");
    assert_true(h_jstr_is(ev, "shadow", "cfg"));
    assert_true(h_jstr_is(ev, "message", "Invalid JSON"));
    assert_int_equal(g_changed, 0);
    /* An accepted update, a get, a delete: two saves. */
    h_pub(h, dev, "$aws/things/t2/shadow/name/cfg/update", "{\"state\":{\"reported\":{\"x\":1}}}", 0, false);
    h_drain(h, dev);
    h_pub(h, dev, "$aws/things/t2/shadow/name/cfg/get", "", 0, false);
    h_pub(h, dev, "$aws/things/t2/shadow/name/cfg/delete", "", 0, false);
    h_drain(h, dev);
    assert_int_equal(g_changed, 2);
    assert_int_equal(h_log_count(h, "decision", "shadow"), 5);
}

/* Responses, delta and documents topics, wrong names, other services: not
 * requests.  They are routed as messages and nothing answers them. */
static void only_request_topics_are_requests(void **state)
{
    H *h = *state;
    start_counting(h);
    h_conn *dev = h_client(h, V3, "dev");
    h_sub_ok(h, dev, "$aws/things/#", 0);
    const char *topics[] = {T1 "/update/accepted", T1 "/update/delta", T1 "/get/rejected", T1 "/UPDATE",
                            "$aws/things/bad name/shadow/update", "$aws/things/t1/shadow/name//update",
                            "$aws/things/t1/jobs/get"};
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        h_pub(h, dev, topics[i], "{\"state\":{\"reported\":{\"a\":1}}}", 0, false);
        h_expect_pub(h, dev, topics[i], NULL, 0);
        h_expect_none(h, dev);
    }
    assert_int_equal(h_log_count(h, "decision", "shadow"), 0);
    assert_int_equal(g_changed, 0);
}

static void service_off_answers_nothing(void **state)
{
    H *h = *state;
    h->cfg.shadow_service = false;
    start_counting(h);
    assert_null(sim_engine_shadows(h->e));
    h_conn *dev = h_client(h, V3, "dev");
    h_sub_ok(h, dev, T1 "/+/+", 1);
    h_pub1_ok(h, dev, T1 "/update", "{\"state\":{\"reported\":{\"a\":1}}}");
    h_expect_none(h, dev);
    assert_int_equal(h_log_count(h, "decision", "shadow"), 0);
    assert_int_equal(g_changed, 0);
}

/* The engine's config reaches the store: a 16-byte state limit, and
 * {"abcdefghijk":1} is 17 bytes. */
static void config_limits_reach_the_store(void **state)
{
    H *h = *state;
    h->cfg.shadow.max_state_bytes = 16;
    start_counting(h);
    assert_non_null(sim_engine_shadows(h->e));
    h_conn *dev = h_client(h, V3, "dev");
    h_sub_ok(h, dev, T1 "/update/+", 1);
    h_pub(h, dev, T1 "/update", "{\"state\":{\"reported\":{\"abcdefghijk\":1}}}", 0, false);
    cJSON *r = pop_json(h, dev, T1 "/update/rejected", 1);
    assert_int_equal((int)jnum(r, "code"), 413);
    cJSON_Delete(r);
}

/* A refused PUBLISH (QoS 2 on v3, a topic over the limits, a policy Deny)
 * never reaches the service. */
static void refused_publishes_are_not_requests(void **state)
{
    H *h = *state;
    start_counting(h);
    h_conn *dev = h_client(h, V3, "dev");
    h_conn *w = h_client(h, V3, "watch");
    h_sub_ok(h, w, T1 "/+/+", 0);
    h_pub(h, dev, T1 "/update", "{\"state\":{\"reported\":{\"a\":1}}}", 2, false);
    h_expect_none(h, w);
    assert_int_equal(h_log_count(h, "decision", "shadow"), 0);
}

/* Receive is checked for each response like any delivery: a subscriber
 * whose policy denies the accepted topic does not get it. */
static void responses_pass_the_receive_check(void **state)
{
    H *h = *state;
    sim_policy_store *ps = sim_policy_store_new("us-east-1", "123456789012");
    assert_non_null(ps);
    char why[256];
    const char *doc = "{\"Version\":\"2012-10-17\",\"Statement\":["
                      "{\"Effect\":\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"},"
                      "{\"Effect\":\"Deny\",\"Action\":\"iot:Receive\","
                      "\"Resource\":\"arn:aws:iot:us-east-1:123456789012:topic/$aws/things/t1/shadow/update/accepted\"}]}";
    sim_policy *pol = sim_policy_parse("no-accepted", doc, strlen(doc), why, sizeof why);
    assert_non_null(pol);
    assert_int_equal(sim_policy_store_add(ps, pol, why, sizeof why), 0);
    assert_int_equal(sim_policy_store_attach(ps, H_PRINCIPAL, "no-accepted", why, sizeof why), 0);
    h->cfg.policies = ps;
    start_counting(h);
    sim_conn_info info = {H_PRINCIPAL, NULL, "127.0.0.1", "mqtts", false};
    h_conn *dev = h_open_info(h, &info);
    assert_false(h_connect_ok(h, dev, V3, "dev", true)); /* no session present */
    h_sub_ok(h, dev, T1 "/update/+", 1);
    h_pub(h, dev, T1 "/update", "{\"state\":{\"desired\":{\"a\":1}}}", 0, false);
    /* accepted denied; delta and documents delivered. */
    h_expect_pub(h, dev, T1 "/update/delta", NULL, 1);
    h_expect_pub(h, dev, T1 "/update/documents", NULL, 1);
    h_expect_none(h, dev);
    sim_engine_free(h->e);
    h->e = NULL;
    sim_policy_store_free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(update_answers_every_subscriber_after_the_puback),
        H_TEST(rejected_and_get_do_not_ask_for_a_save),
        H_TEST(only_request_topics_are_requests),
        H_TEST(service_off_answers_nothing),
        H_TEST(config_limits_reach_the_store),
        H_TEST(refused_publishes_are_not_requests),
        H_TEST(responses_pass_the_receive_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
