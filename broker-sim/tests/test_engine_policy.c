/*
 * test_engine_policy.c: the engine enforcing IoT policies, with the
 * consequences of aws-broker.md §6.6 in MQTT 3.1.1 and 5: CONNECT (and the
 * Will topic), PUBLISH, SUBSCRIBE and Receive denied; the decision records in
 * the event log; variables resolved per connection.
 *
 * The restricted device connects with principal R; watchers and other
 * clients use the harness's principal, attached to the built-in allow-all.
 */
#include "engine_harness.h"
#include "sim_policy.h"

#define R "restricted-cert-0000000000000000000000000000000000000000000000000000"
#define ARN "arn:aws:iot:us-east-1:123456789012:"

static sim_policy_store *g_store;

static int p_teardown(void **state)
{
    int rc = h_teardown(state);
    sim_policy_store_free(g_store); /* after the engine that pointed at it */
    g_store = NULL;
    return rc;
}

#define P_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, p_teardown)

/* The restricted device may connect as "dev-...", publish to and receive
 * from d/... except d/secret/..., subscribe to the literal filters d/# and
 * d/open and to things/<its thing>/#, and publish with RETAIN nowhere. */
static const char RESTRICTED[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN "client/dev-*\"},"
    "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],\"Resource\":\"" ARN "topic/d/*\"},"
    "{\"Sid\":\"nosecret\",\"Effect\":\"Deny\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],\"Resource\":\"" ARN
    "topic/d/secret/*\"},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":[\"" ARN "topicfilter/d/#\",\"" ARN
    "topicfilter/d/open\"]},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":\"" ARN
    "topicfilter/things/${iot:Connection.Thing.ThingName}/#\"}]}";

static void start_with(H *h, const char *doc)
{
    char err[512];
    g_store = sim_policy_store_new("us-east-1", "123456789012");
    assert_non_null(g_store);
    sim_policy *p = sim_policy_parse("restricted", doc, strlen(doc), err, sizeof err);
    if (!p)
        fail_msg("%s", err);
    assert_int_equal(sim_policy_store_add(g_store, p, err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attach(g_store, R, "restricted", err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attach(g_store, H_PRINCIPAL, SIM_POLICY_ALLOW_ALL, err, sizeof err), 0);
    h->cfg.policies = g_store;
    h_start(h);
}

static h_conn *r_open(H *h, const char *thing)
{
    sim_conn_info info = {R, thing, "192.0.2.7", "mqtts", false};
    return h_open_info(h, &info);
}

static h_conn *r_client(H *h, iotc_mqtt_version v, const char *id)
{
    h_conn *c = r_open(h, NULL);
    assert_false(h_connect_ok(h, c, v, id, true));
    return c;
}

/* The last decision record with `what` and `action`, checked for its effect. */
static const cJSON *last_auth(H *h, const char *what, const char *action, const char *effect)
{
    const cJSON *d = NULL;
    for (size_t i = h->nlog; i-- > 0 && !d;)
        if (h_jstr_is(h->log[i], "what", what) && h_jstr_is(h->log[i], "action", action))
            d = h->log[i];
    assert_non_null(d);
    assert_true(h_jstr_is(d, "effect", effect));
    return d;
}

static bool closed_with_reason(const H *h, size_t from, const char *reason)
{
    for (size_t i = from; i < h->nlog; i++)
        if (h_jstr_is(h->log[i], "what", "close") && h_jstr_is(h->log[i], "reason", reason))
            return true;
    return false;
}

/* ---- [AWS-POLICY-CONNECT] ------------------------------------------------ */

static void connect_denied(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/presence/+/+");
    h_conn *c = r_open(h, "thing-7");
    h_connect_opts o = {.version = v, .client_id = "intruder", .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    if (v == V5)
        h_expect_connack(h, c, IOTC_RC_NOT_AUTHORIZED);
    h_expect_none(h, c); /* 3.1.1: no CONNACK at all */
    assert_true(h_closed(c));
    const cJSON *d = last_auth(h, "not_authorized", "iot:Connect", "default deny");
    assert_true(h_jstr_is(d, "resource", ARN "client/intruder"));
    assert_true(h_jstr_is(d, "client", "intruder"));
    cJSON *ev = h_expect_event(h, w, "$aws/events/presence/connect_failed/intruder");
    assert_true(h_jstr_is(ev, "connectFailureReason", "AUTHORIZATION_FAILED"));
    assert_true(h_jstr_is(ev, "principalIdentifier", R));
    cJSON_Delete(ev);
    h_expect_none(h, w);
    /* The allowed client id gets in, and the decision names the statement. */
    h_conn *ok = r_client(h, v, "dev-1");
    assert_false(h_closed(ok));
    d = last_auth(h, "authorized", "iot:Connect", "Allow");
    assert_true(h_jstr_is(d, "policy", "restricted"));
    assert_int_equal((int)h_jnum(d, "statement"), 0);
}

static void test_connect_denied_v3(void **state)
{
    connect_denied(state, V3);
}

static void test_connect_denied_v5(void **state)
{
    connect_denied(state, V5);
}

/* A Will on a topic the device may not publish to: the CONNECT is refused. */
static void will_denied(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *c = r_open(h, NULL);
    h_connect_opts o = {.version = v, .client_id = "dev-2", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "d/secret/lwt", .will_payload = "x"};
    h_send_connect(h, c, &o);
    if (v == V5)
        h_expect_connack(h, c, IOTC_RC_NOT_AUTHORIZED);
    h_expect_none(h, c);
    assert_true(h_closed(c));
    const cJSON *d = last_auth(h, "not_authorized", "iot:Publish", "Deny");
    assert_true(h_jstr_is(d, "sid", "nosecret"));
    assert_int_equal(h_log_count(h, "decision", "connect_refused"), 1);
    /* A Will on an allowed topic is fine. */
    h_conn *c2 = r_open(h, NULL);
    h_connect_opts o2 = {.version = v, .client_id = "dev-3", .clean = true, .keepalive = 60, .will = true,
                         .will_topic = "d/lwt", .will_payload = "x"};
    h_send_connect(h, c2, &o2);
    h_expect_connack(h, c2, 0);
}

static void test_will_denied_v3(void **state)
{
    will_denied(state, V3);
}

static void test_will_denied_v5(void **state)
{
    will_denied(state, V5);
}

/* ---- [AWS-POLICY-PUBLISH] ------------------------------------------------ */

static void test_publish_denied_v3_closes(void **state)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "#", 1);
    h_drain(h, s);
    h_conn *c = r_client(h, V3, "dev-1");
    h_pub1_ok(h, c, "d/1", "fine");
    iotc_mqtt_packet m;
    h_expect(h, s, IOTC_MQTT_PUBLISH, &m);
    h_assert_bytes(m.u.publish.topic, "d/1");
    h_drain(h, s);
    size_t mark = h->nlog;
    h_pub(h, c, "elsewhere", "no", 0, false);
    h_expect_server_close(h, c, -1);
    assert_true(closed_with_reason(h, mark, "AUTH_ERROR"));
    last_auth(h, "not_authorized", "iot:Publish", "default deny");
    /* The subscriber sees the disconnected event only, not the message. */
    while (h_pop(h, s, &m))
        assert_false(h_bytes_eq(m.u.publish.topic, "elsewhere"));
    /* QoS 1 and an explicit Deny: closed as well, no PUBACK. */
    h_conn *c2 = r_client(h, V3, "dev-2");
    h_pub(h, c2, "d/secret/x", "no", 1, false);
    h_expect_server_close(h, c2, -1);
    last_auth(h, "not_authorized", "iot:Publish", "Deny");
}

static void test_publish_denied_v5_puback_87(void **state)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "#", 1);
    h_drain(h, s);
    h_conn *c = r_client(h, V5, "dev-1");
    h_drain(h, s);
    uint16_t pid = h_pub(h, c, "d/secret/x", "no", 1, false);
    iotc_mqtt_packet m;
    h_expect(h, c, IOTC_MQTT_PUBACK, &m);
    assert_int_equal(m.u.ack.packet_id, pid);
    assert_int_equal(m.u.ack.reason, IOTC_RC_NOT_AUTHORIZED);
    /* QoS 0: dropped without a word; the connection stays. */
    h_pub(h, c, "elsewhere", "no", 0, false);
    h_expect_none(h, c);
    assert_false(h_closed(c));
    h_expect_none(h, s);
    h_pub1_ok(h, c, "d/2", "yes");
    h_expect(h, s, IOTC_MQTT_PUBLISH, &m);
    h_assert_bytes(m.u.publish.topic, "d/2");
}

/* RETAIN needs iot:RetainPublish too (current profile, where retain is on). */
static void test_retain_publish_denied_v5(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    start_with(h, RESTRICTED);
    h_conn *c = r_client(h, V5, "dev-1");
    uint16_t pid = h_pub(h, c, "d/r", "keep", 1, true);
    iotc_mqtt_packet m;
    h_expect(h, c, IOTC_MQTT_PUBACK, &m);
    assert_int_equal(m.u.ack.packet_id, pid);
    assert_int_equal(m.u.ack.reason, IOTC_RC_NOT_AUTHORIZED);
    last_auth(h, "not_authorized", "iot:RetainPublish", "default deny");
    h_pub1_ok(h, c, "d/r", "not kept");
}

/* ---- [AWS-POLICY-SUBSCRIBE] ---------------------------------------------- */

static void test_subscribe_denied_v3_closes_no_suback(void **state)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *c = r_open(h, NULL);
    assert_false(h_connect_persistent(h, c, V3, "dev-1"));
    /* d/open is allowed, d/+ is not (the filter is matched as sent): nothing
     * is applied, no SUBACK, the connection is closed. */
    iotc_mqtt_sub subs[2];
    memset(subs, 0, sizeof subs);
    subs[0].filter = iotc_mqtt_str("d/open");
    subs[1].filter = iotc_mqtt_str("d/+");
    size_t mark = h->nlog;
    h_subscribe_n(h, c, 1, subs, 2, NULL);
    h_expect_server_close(h, c, -1);
    assert_true(closed_with_reason(h, mark, "AUTH_ERROR"));
    const cJSON *d = last_auth(h, "not_authorized", "iot:Subscribe", "default deny");
    assert_true(h_jstr_is(d, "resource", ARN "topicfilter/d/+"));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 0);
    /* The literal d/# is allowed. */
    h_advance(h, 2000);
    h_conn *c2 = r_client(h, V3, "dev-2");
    h_sub_ok(h, c2, "d/#", 1);
}

static void test_subscribe_denied_v5_suback_87(void **state)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *c = r_client(h, V5, "dev-1");
    iotc_mqtt_sub subs[3];
    memset(subs, 0, sizeof subs);
    subs[0].filter = iotc_mqtt_str("d/+");
    subs[0].qos = 1;
    subs[1].filter = iotc_mqtt_str("d/open");
    subs[1].qos = 1;
    subs[2].filter = iotc_mqtt_str("#");
    h_subscribe_n(h, c, 9, subs, 3, NULL);
    iotc_mqtt_packet m;
    h_expect(h, c, IOTC_MQTT_SUBACK, &m);
    assert_int_equal(m.u.suback.packet_id, 9);
    assert_int_equal(m.u.suback.count, 3);
    assert_int_equal(m.u.suback.codes[0], IOTC_RC_NOT_AUTHORIZED);
    assert_int_equal(m.u.suback.codes[1], 1);
    assert_int_equal(m.u.suback.codes[2], IOTC_RC_NOT_AUTHORIZED);
    assert_false(h_closed(c));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 1);
}

/* ---- [AWS-POLICY-RECEIVE] ------------------------------------------------ */

static void receive_denied(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *c = r_client(h, v, "dev-1");
    h_sub_ok(h, c, "d/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    /* d/secret/x matches d/# but may not be received: not delivered, no error. */
    h_pub1_ok(h, p, "d/secret/x", "hidden");
    h_pub1_ok(h, p, "d/open", "seen");
    iotc_mqtt_packet m;
    h_expect(h, c, IOTC_MQTT_PUBLISH, &m);
    h_assert_bytes(m.u.publish.topic, "d/open");
    h_puback(h, c, m.u.publish.packet_id);
    h_expect_none(h, c);
    assert_false(h_closed(c));
    const cJSON *d = last_auth(h, "authorized", "iot:Receive", "Allow");
    assert_true(h_jstr_is(d, "resource", ARN "topic/d/open"));
    assert_int_equal(h_log_count(h, "decision", "not_authorized"), 1);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.inflight, 0);
}

static void test_receive_denied_v3(void **state)
{
    receive_denied(state, V3);
}

static void test_receive_denied_v5(void **state)
{
    receive_denied(state, V5);
}

/* Receive is checked at delivery: messages stored for an offline session are
 * checked when they go out, QoS 0 like QoS 1. */
static void test_receive_checked_on_replay_and_qos0(void **state)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    h_conn *c = r_open(h, NULL);
    h_connect_persistent(h, c, V3, "dev-1");
    h_sub_ok(h, c, "d/#", 1);
    h_disconnect(h, c, 0, NULL);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "d/secret/1", "hidden");
    h_pub1_ok(h, p, "d/1", "kept");
    h_advance(h, 2000);
    h_conn *c2 = r_open(h, NULL);
    assert_true(h_connect_persistent(h, c2, V3, "dev-1"));
    h_advance(h, 1000);
    iotc_mqtt_packet m;
    h_expect(h, c2, IOTC_MQTT_PUBLISH, &m);
    h_assert_bytes(m.u.publish.topic, "d/1");
    h_puback(h, c2, m.u.publish.packet_id);
    h_pub(h, p, "d/secret/2", "hidden", 0, false);
    h_pub(h, p, "d/2", "seen", 0, false);
    h_expect(h, c2, IOTC_MQTT_PUBLISH, &m);
    h_assert_bytes(m.u.publish.topic, "d/2");
    h_expect_none(h, c2);
}

/* ---- [AWS-POLICY-VARIABLES] ---------------------------------------------- */

static void test_variables_thing_name(void **state)
{
    H *h = *state;
    start_with(h, RESTRICTED);
    /* Client id = the thing's name: ${iot:Connection.Thing.ThingName} is it. */
    h_conn *c = r_open(h, "dev-9");
    assert_false(h_connect_ok(h, c, V5, "dev-9", true));
    h_sub_ok(h, c, "things/dev-9/#", 0);
    h_sub_expect(h, c, "things/dev-8/#", 0, IOTC_RC_NOT_AUTHORIZED);
    /* Another client id with the same certificate: the variable stays
     * unsubstituted and matches nothing. */
    h_conn *c2 = r_open(h, "dev-9");
    assert_false(h_connect_ok(h, c2, V5, "dev-10", true));
    h_sub_expect(h, c2, "things/dev-9/#", 0, IOTC_RC_NOT_AUTHORIZED);
}

/* No principal (plain TCP): never checked; no store: never checked. */
static void test_no_principal_not_checked(void **state)
{
    H *h = *state;
    start_with(h, "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\"}}");
    sim_conn_info info = {NULL, NULL, "127.0.0.1", "tcp", false};
    h_conn *c = h_open_info(h, &info);
    assert_false(h_connect_ok(h, c, V3, "anyone", true));
    h_sub_ok(h, c, "x/#", 0);
    h_pub1_ok(h, c, "y/1", "hi");
    assert_int_equal(h_log_count(h, "decision", "not_authorized"), 0);
    /* The Deny-everything principal is refused at CONNECT with the statement. */
    h_conn *r = r_open(h, NULL);
    h_connect_opts o = {.version = V5, .client_id = "dev-1", .clean = true, .keepalive = 60};
    h_send_connect(h, r, &o);
    h_expect_connack(h, r, IOTC_RC_NOT_AUTHORIZED);
    const cJSON *d = last_auth(h, "not_authorized", "iot:Connect", "Deny");
    assert_true(h_jstr_is(d, "policy", "restricted"));
    assert_int_equal((int)h_jnum(d, "statement"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        P_TEST(test_connect_denied_v3),
        P_TEST(test_connect_denied_v5),
        P_TEST(test_will_denied_v3),
        P_TEST(test_will_denied_v5),
        P_TEST(test_publish_denied_v3_closes),
        P_TEST(test_publish_denied_v5_puback_87),
        P_TEST(test_retain_publish_denied_v5),
        P_TEST(test_subscribe_denied_v3_closes_no_suback),
        P_TEST(test_subscribe_denied_v5_suback_87),
        P_TEST(test_receive_denied_v3),
        P_TEST(test_receive_denied_v5),
        P_TEST(test_receive_checked_on_replay_and_qos0),
        P_TEST(test_variables_thing_name),
        P_TEST(test_no_principal_not_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
