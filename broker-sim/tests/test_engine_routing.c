/*
 * test_engine_routing.c: component tests of the broker engine's
 * subscriptions and routing (aws-broker.md §1.2, §1.3, §1.9, §3.2, §3.6,
 * §7.4-7.6): AWS's `#` rule, `$` topics, QoS min(pub, sub), overlapping
 * subscriptions, RETAIN on live and stored delivery, MQTT 5 No Local and
 * Retain As Published, QoS 2 refusals, and the outbound QoS 1 window with
 * redelivery.
 */
#include "engine_harness.h"

/* ---- matching (§1.9) ------------------------------------------------------ */

static void test_route_hash_does_not_match_parent(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "a/#", 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "a", "parent", 0, false);
    h_expect_none(h, s);
    h_pub(h, p, "a/", "empty level", 0, false);
    h_expect_pub(h, s, "a/", "empty level", 0);
    h_pub(h, p, "a/b", "child", 0, false);
    h_expect_pub(h, s, "a/b", "child", 0);
    h_pub(h, p, "a/b/c", "grandchild", 0, false);
    h_expect_pub(h, s, "a/b/c", "grandchild", 0);
    h_pub(h, p, "ab", "other", 0, false);
    h_expect_none(h, s);
}

static void test_route_hash_matches_parent_when_configured(void **state)
{
    H *h = *state;
    h->cfg.hash_matches_parent = true;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "a/#", 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "a", "parent", 0, false);
    h_expect_pub(h, s, "a", "parent", 0);
    h_pub(h, p, "a/b", "child", 0, false);
    h_expect_pub(h, s, "a/b", "child", 0);
    h_pub(h, p, "b", "other", 0, false);
    h_expect_none(h, s);
}

static void test_route_plus_levels(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "a/+/c", 0);
    h_sub_ok(h, s, "+", 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "a/b/c", "1", 0, false);
    h_expect_pub(h, s, "a/b/c", "1", 0);
    h_pub(h, p, "a//c", "2", 0, false);
    h_expect_pub(h, s, "a//c", "2", 0);
    h_pub(h, p, "a/c", "3", 0, false);
    h_pub(h, p, "a/b/d/c", "4", 0, false);
    h_pub(h, p, "a/b/c/d", "5", 0, false);
    h_pub(h, p, "x/b/c", "6", 0, false);
    h_expect_none(h, s);
    h_pub(h, p, "top", "7", 0, false);
    h_expect_pub(h, s, "top", "7", 0);
    h_pub(h, p, "top/", "8", 0, false);
    h_expect_none(h, s);
}

static void test_route_dollar_topics_not_matched_by_wildcards(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *wild = h_client(h, V3, "wild");
    h_sub_ok(h, wild, "#", 0);
    h_sub_ok(h, wild, "+/things/t1/shadow/update", 0);
    h_conn *exact = h_client(h, V3, "exact");
    h_sub_ok(h, exact, "$aws/things/t1/shadow/update", 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "$aws/things/t1/shadow/update", "{}", 0, false);
    h_expect_pub(h, exact, "$aws/things/t1/shadow/update", "{}", 0);
    h_expect_none(h, wild);
    /* but `#` does get ordinary topics */
    h_pub(h, p, "x/y", "z", 0, false);
    h_expect_pub(h, wild, "x/y", "z", 0);
}

/* ---- QoS and RETAIN on delivery (§1.2, §1.3) ----------------------------- */

static void test_route_qos_is_min_of_pub_and_sub(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s0 = h_client(h, V5, "s0");
    h_sub_ok(h, s0, "t/#", 0);
    h_conn *s1 = h_client(h, V3, "s1");
    h_sub_ok(h, s1, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "t/1", "q1");
    h_expect_pub(h, s0, "t/1", "q1", 0);
    uint16_t pid = h_expect_pub(h, s1, "t/1", "q1", 1);
    assert_true(pid != 0);
    h_puback(h, s1, pid);
    h_pub(h, p, "t/2", "q0", 0, false);
    h_expect_pub(h, s0, "t/2", "q0", 0);
    h_expect_pub(h, s1, "t/2", "q0", 0);
    h_expect_none(h, s0);
    h_expect_none(h, s1);
    h_expect_none(h, p); /* no PUBACK for QoS 0 */
}

static void test_route_overlapping_subscriptions_once_at_highest_qos(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "a/+", 0);
    h_sub_ok(h, s, "a/#", 1);
    h_sub_ok(h, s, "a/b", 0);
    h_sub_ok(h, s, "+/b", 0);
    h_conn *p = h_client(h, V5, "pub");
    h_pub1_ok(h, p, "a/b", "once");
    uint16_t pid = h_expect_pub(h, s, "a/b", "once", 1);
    h_puback(h, s, pid);
    h_expect_none(h, s);
    /* Same for a QoS 0 publish: once. */
    h_pub(h, p, "a/b", "q0", 0, false);
    h_expect_pub(h, s, "a/b", "q0", 0);
    h_expect_none(h, s);
}

static void test_route_puback_to_publisher(void **state)
{
    H *h = *state;
    h_start(h);
    for (int i = 0; i < 2; i++) {
        h_conn *p = h_client(h, i ? V5 : V3, i ? "p5" : "p3");
        /* with and without subscribers */
        h_pub1_ok(h, p, "nobody/listens", "x");
        h_conn *s = h_client(h, V3, i ? "s5" : "s3");
        h_sub_ok(h, s, "t/#", 1);
        h_pub1_ok(h, p, "t/1", "y");
        h_expect_pub(h, s, "t/1", "y", 1);
        h_expect_none(h, p);
    }
}

/* §1.1: 3.1.1 and 5 clients talk to each other. */
static void test_route_across_versions(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_client(h, V3, "a3");
    h_conn *b = h_client(h, V5, "b5");
    h_sub_ok(h, a, "to/a", 1);
    h_sub_ok(h, b, "to/b", 1);
    h_pub1_ok(h, a, "to/b", "from v3");
    uint16_t pid = h_expect_pub(h, b, "to/b", "from v3", 1);
    h_puback(h, b, pid);
    h_pub1_ok(h, b, "to/a", "from v5");
    pid = h_expect_pub(h, a, "to/a", "from v5", 1);
    h_puback(h, a, pid);
}

/* §3.2: forwarded properties, user properties in order. */
static void test_route_v5_properties_forwarded(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *v3 = h_client(h, V3, "sub3");
    h_sub_ok(h, v3, "t/#", 1);
    h_conn *p = h_client(h, V5, "pub");
    iotc_mqtt_user_prop up[3] = {{iotc_mqtt_str("k"), iotc_mqtt_str("2")},
                                 {iotc_mqtt_str("a"), iotc_mqtt_str("1")},
                                 {iotc_mqtt_str("k"), iotc_mqtt_str("0")}};
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_PAYLOAD_FORMAT_INDICATOR) | IOTC_PROP_BIT(IOTC_PROP_CONTENT_TYPE) |
                 IOTC_PROP_BIT(IOTC_PROP_RESPONSE_TOPIC) | IOTC_PROP_BIT(IOTC_PROP_CORRELATION_DATA);
    pr.payload_format_indicator = 1;
    pr.content_type = iotc_mqtt_str("application/json");
    pr.response_topic = iotc_mqtt_str("reply/here");
    pr.correlation_data = iotc_mqtt_str("corr-42");
    pr.user = up;
    pr.user_count = 3;
    h_publish_x(h, p, "t/1", (const uint8_t *)"{}", 2, 1, false, 9, &pr);
    h_expect(h, p, IOTC_MQTT_PUBACK, NULL);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, s, "t/1", "{}", 1, &m);
    const iotc_mqtt_props *q = &m.u.publish.props;
    assert_true(q->present & IOTC_PROP_BIT(IOTC_PROP_PAYLOAD_FORMAT_INDICATOR));
    assert_int_equal(q->payload_format_indicator, 1);
    assert_true(q->present & IOTC_PROP_BIT(IOTC_PROP_CONTENT_TYPE));
    h_assert_bytes(q->content_type, "application/json");
    assert_true(q->present & IOTC_PROP_BIT(IOTC_PROP_RESPONSE_TOPIC));
    h_assert_bytes(q->response_topic, "reply/here");
    assert_true(q->present & IOTC_PROP_BIT(IOTC_PROP_CORRELATION_DATA));
    h_assert_bytes(q->correlation_data, "corr-42");
    size_t pos = 0, n = 0;
    iotc_mqtt_user_prop u;
    while (iotc_mqtt_user_prop_next(q, &pos, &u)) {
        assert_true(n < 3);
        h_assert_bytes(u.key, (const char *)up[n].key.data);
        h_assert_bytes(u.value, (const char *)up[n].value.data);
        n++;
    }
    assert_int_equal(n, 3);
    assert_false(q->present & IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS)); /* the broker sends none */
    h_puback(h, s, m.u.publish.packet_id);
    /* The v3 subscriber gets the same message (properties dropped by the encoding). */
    h_expect_pub(h, v3, "t/1", "{}", 1);
}

static void test_route_live_delivery_retain_flag_zero(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *s3 = h_client(h, V3, "s3");
    h_sub_ok(h, s3, "t/1", 0);
    h_conn *s5 = h_client(h, V5, "s5");
    h_sub_ok(h, s5, "t/1", 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "t/1", "kept", 0, true);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, s3, "t/1", "kept", 0, &m);
    assert_false(m.u.publish.retain);
    h_expect_pub_p(h, s5, "t/1", "kept", 0, &m);
    assert_false(m.u.publish.retain);
    assert_false(h_closed(p));
}

static void test_route_v5_no_local(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *nl = h_client(h, V5, "nolocal");
    iotc_mqtt_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.filter = iotc_mqtt_str("t/#");
    sub.qos = 1;
    sub.no_local = true;
    h_subscribe_n(h, nl, 1, &sub, 1, NULL);
    h_expect(h, nl, IOTC_MQTT_SUBACK, NULL);
    h_conn *loc = h_client(h, V5, "local");
    h_sub_ok(h, loc, "t/#", 0);
    h_conn *other = h_client(h, V3, "other");
    h_sub_ok(h, other, "t/#", 0);

    h_pub1_ok(h, nl, "t/1", "mine");
    h_expect_none(h, nl);
    h_expect_pub(h, loc, "t/1", "mine", 0);
    h_expect_pub(h, other, "t/1", "mine", 0);
    /* Without No Local a client gets its own message. */
    h_pub(h, loc, "t/2", "own", 0, false);
    h_expect_pub(h, loc, "t/2", "own", 0);
    h_expect_pub(h, nl, "t/2", "own", 0);
    h_expect_pub(h, other, "t/2", "own", 0);
}

static void test_route_v5_retain_as_published(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *rap = h_client(h, V5, "rap");
    iotc_mqtt_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.filter = iotc_mqtt_str("t/#");
    sub.retain_as_published = true;
    h_subscribe_n(h, rap, 1, &sub, 1, NULL);
    h_expect(h, rap, IOTC_MQTT_SUBACK, NULL);
    h_conn *plain = h_client(h, V5, "plain");
    h_sub_ok(h, plain, "t/#", 0);
    h_conn *p = h_client(h, V5, "pub");
    h_pub(h, p, "t/1", "r", 0, true);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, rap, "t/1", "r", 0, &m);
    assert_true(m.u.publish.retain);
    h_expect_pub_p(h, plain, "t/1", "r", 0, &m);
    assert_false(m.u.publish.retain);
    h_pub(h, p, "t/1", "n", 0, false);
    h_expect_pub_p(h, rap, "t/1", "n", 0, &m);
    assert_false(m.u.publish.retain);
}

static void test_route_unsubscribe_stops_delivery(void **state)
{
    H *h = *state;
    h_start(h);
    for (int i = 0; i < 2; i++) {
        iotc_mqtt_version v = i ? V5 : V3;
        h_conn *s = h_client(h, v, i ? "s5" : "s3");
        h_sub_ok(h, s, "t/#", 0);
        h_unsubscribe(h, s, "t/#");
        iotc_mqtt_packet a;
        h_expect(h, s, IOTC_MQTT_UNSUBACK, &a);
        if (v == V5) {
            assert_int_equal(a.u.suback.count, 1);
            assert_int_equal(a.u.suback.codes[0], 0);
        }
        h_conn *p = h_client(h, V3, i ? "p5" : "p3");
        h_pub(h, p, "t/1", "x", 0, false);
        h_expect_none(h, s);
    }
}

/* §3.1: inbound Topic Aliases up to the advertised maximum (8). */
static void test_route_v5_topic_alias_inbound(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *p = h_client(h, V5, "pub");
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS);
    pr.topic_alias = 8;
    h_publish_x(h, p, "t/aliased", (const uint8_t *)"1", 1, 0, false, 0, &pr);
    h_expect_pub(h, s, "t/aliased", "1", 0);
    h_publish_x(h, p, "", (const uint8_t *)"2", 1, 0, false, 0, &pr);
    h_expect_pub(h, s, "t/aliased", "2", 0);
    assert_false(h_closed(p));
    pr.topic_alias = 9;
    h_publish_x(h, p, "t/other", (const uint8_t *)"3", 1, 0, false, 0, &pr);
    h_expect_server_close(h, p, IOTC_RC_TOPIC_ALIAS_INVALID);
    h_expect_none(h, s);
}

/* MQTT 5 §3.1.2.11.4 / §3.3.4: a message over the client's Maximum Packet
 * Size is discarded "as if it had completed sending": a QoS 1 one must not
 * hold a slot of the window (nor be resent) afterwards. */
static void test_route_v5_client_max_packet_size(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_open(h);
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_PACKET_SIZE) | IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM);
    pr.maximum_packet_size = 100;
    pr.receive_maximum = 1;
    h_connect_opts o = {.version = V5, .client_id = "sub", .clean = true, .keepalive = 60, .props = &pr};
    h_send_connect(h, s, &o);
    h_expect_connack(h, s, 0);
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    char big[201];
    memset(big, 'b', 200);
    big[200] = 0;
    h_pub(h, p, "t/1", big, 0, false);
    h_pub1_ok(h, p, "t/1", big);
    h_expect_none(h, s);
    h_pub1_ok(h, p, "t/1", "small");
    uint16_t pid = h_expect_pub(h, s, "t/1", "small", 1);
    h_puback(h, s, pid);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.queued, 0);
}

/* MQTT 5 Retain Handling (not mentioned by AWS, §3.6): 2 sends no retained
 * message, 1 only for a new subscription. */
static void test_retain_v5_retain_handling(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *p = h_client(h, V5, "pub");
    h_pub(h, p, "t/1", "kept", 0, true);
    h_conn *s = h_client(h, V5, "sub");
    iotc_mqtt_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.filter = iotc_mqtt_str("t/1");
    sub.retain_handling = 2;
    h_subscribe_n(h, s, 1, &sub, 1, NULL);
    h_expect(h, s, IOTC_MQTT_SUBACK, NULL);
    h_expect_none(h, s);
    sub.retain_handling = 1; /* an existing subscription now */
    h_subscribe_n(h, s, 2, &sub, 1, NULL);
    h_expect(h, s, IOTC_MQTT_SUBACK, NULL);
    h_expect_none(h, s);
    sub.retain_handling = 0;
    h_subscribe_n(h, s, 3, &sub, 1, NULL);
    h_expect(h, s, IOTC_MQTT_SUBACK, NULL);
    h_expect_pub(h, s, "t/1", "kept", 0);
}

/* §3.3: Message Expiry Interval 0 is raised to 1, above 604800 lowered to it. */
static void test_route_v5_message_expiry_clamped(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *p = h_client(h, V5, "pub");
    static const struct {
        uint32_t sent, got;
    } cases[] = {{0, 1}, {30, 30}, {604800, 604800}, {700000, 604800}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        iotc_mqtt_props pr;
        memset(&pr, 0, sizeof pr);
        pr.present = IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL);
        pr.message_expiry_interval = cases[i].sent;
        h_publish_x(h, p, "t/1", (const uint8_t *)"x", 1, 0, false, 0, &pr);
        iotc_mqtt_packet m;
        h_expect_pub_p(h, s, "t/1", "x", 0, &m);
        assert_true(m.u.publish.props.present & IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL));
        if (m.u.publish.props.message_expiry_interval != cases[i].got)
            fail_msg("MEI %u delivered as %u, want %u", cases[i].sent, m.u.publish.props.message_expiry_interval,
                     cases[i].got);
    }
}

/* ---- QoS 2 (§1.2) -------------------------------------------------------- */

static void test_qos2_v3_publish_dropped(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "t/1", "two", 2, false);
    h_expect_none(h, p); /* no PUBACK, no PUBREC */
    assert_false(h_closed(p));
    h_expect_none(h, s);
    /* The connection still works. */
    h_pub1_ok(h, p, "t/2", "one");
    h_expect_pub(h, s, "t/2", "one", 1);
}

static void test_qos2_v3_subscribe_no_suback(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    iotc_mqtt_sub subs[2];
    memset(subs, 0, sizeof subs);
    subs[0].filter = iotc_mqtt_str("t/a");
    subs[0].qos = 1;
    subs[1].filter = iotc_mqtt_str("t/b");
    subs[1].qos = 2;
    h_subscribe_n(h, s, 5, subs, 2, NULL);
    h_expect_none(h, s);
    assert_false(h_closed(s));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "t/a", "x", 1, false);
    h_pub(h, p, "t/b", "y", 1, false);
    h_expect_none(h, s);
    /* A later SUBSCRIBE without QoS 2 works. */
    h_sub_ok(h, s, "t/a", 1);
}

static void test_qos2_v3_subscribe_close_option(void **state)
{
    H *h = *state;
    h->cfg.v3_qos2_subscribe_close = true;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_subscribe(h, s, "t/a", 2);
    h_expect_server_close(h, s, -1);
}

static void test_qos2_v5_publish_disconnects(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V5, "pub");
    h_pub(h, p, "t/1", "two", 2, false);
    h_expect_server_close(h, p, IOTC_RC_QOS_NOT_SUPPORTED);
    h_expect_none(h, s);
}

static void test_qos2_v5_subscribe_granted_1(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_expect(h, s, "t/#", 2, IOTC_RC_GRANTED_QOS1);
    h_conn *p = h_client(h, V5, "pub");
    h_pub1_ok(h, p, "t/1", "x");
    h_expect_pub(h, s, "t/1", "x", 1);
}

static void will_qos2(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "will/dev1", .will_payload = "x", .will_qos = 2};
    h_send_connect(h, c, &o);
    if (v == V5)
        h_expect_connack(h, c, IOTC_RC_QOS_NOT_SUPPORTED);
    h_expect_none(h, c);
    assert_true(h_closed(c));
    assert_int_equal(sim_engine_find_client(h->e, "dev1"), 0);
}

static void test_qos2_will_v3_closed_without_connack(void **state)
{
    will_qos2(state, V3);
}

static void test_qos2_will_v5_connack_9b(void **state)
{
    will_qos2(state, V5);
}

/* ---- retained messages (§1.3) ------------------------------------------- */

static void retain_classic(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *p = h_client(h, v, "pub");
    h_pub(h, p, "t/1", "keep me", 1, true);
    h_expect_server_close(h, p, IOTC_RC_RETAIN_NOT_SUPPORTED);
    h_expect_none(h, s);
}

static void test_retain_classic_closes_v3(void **state)
{
    retain_classic(state, V3);
}

static void test_retain_classic_closes_v5(void **state)
{
    retain_classic(state, V5);
}

static void test_retain_current_exact_match_only(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "t/1", "stored");
    h_pub(h, p, "t/1", "stored", 1, true);
    h_expect(h, p, IOTC_MQTT_PUBACK, NULL);
    assert_false(h_closed(p));

    for (int i = 0; i < 2; i++) {
        iotc_mqtt_version v = i ? V5 : V3;
        h_conn *exact = h_client(h, v, i ? "exact5" : "exact3");
        h_sub_ok(h, exact, "t/1", 1);
        iotc_mqtt_packet m;
        h_expect_pub_p(h, exact, "t/1", "stored", 1, &m);
        assert_true(m.u.publish.retain);
        h_puback(h, exact, m.u.publish.packet_id);
        h_expect_none(h, exact);
        /* QoS min(stored, subscription) */
        h_conn *q0 = h_client(h, v, i ? "q05" : "q03");
        h_sub_ok(h, q0, "t/1", 0);
        h_expect_pub_p(h, q0, "t/1", "stored", 0, &m);
        assert_true(m.u.publish.retain);

        h_conn *wild = h_client(h, v, i ? "wild5" : "wild3");
        h_sub_ok(h, wild, "t/+", 1);
        h_sub_ok(h, wild, "t/#", 1);
        h_sub_ok(h, wild, "#", 1);
        h_expect_none(h, wild);
    }
}

static void test_retain_current_empty_payload_deletes(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "t/1", "stored", 0, true);
    h_conn *live = h_client(h, V3, "live");
    h_sub_ok(h, live, "t/1", 0);
    h_expect_pub(h, live, "t/1", "stored", 0);
    h_pub(h, p, "t/1", "", 0, true);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, live, "t/1", "", 0, &m); /* still delivered live, as 0 bytes */
    assert_false(m.u.publish.retain);
    h_conn *late = h_client(h, V3, "late");
    h_sub_ok(h, late, "t/1", 0);
    h_expect_none(h, late);
}

static void test_retain_current_replaced(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *p = h_client(h, V5, "pub");
    h_pub(h, p, "t/1", "first", 0, true);
    h_pub(h, p, "t/1", "second", 0, true);
    /* A non-retained publish leaves the stored copy alone (§1.3). */
    h_pub(h, p, "t/1", "not retained", 0, false);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "t/1", 0);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, s, "t/1", "second", 0, &m);
    assert_true(m.u.publish.retain);
    h_expect_none(h, s);
}

/* ---- the outbound QoS 1 window (§2, §1.7) --------------------------------- */

static void test_qos1_inflight_window(void **state)
{
    H *h = *state;
    h->cfg.max_inflight = 3;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    for (int i = 0; i < 6; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        h_pub1_ok(h, p, "t/1", pl);
    }
    uint16_t pid[6];
    pid[0] = h_expect_pub(h, s, "t/1", "m0", 1);
    pid[1] = h_expect_pub(h, s, "t/1", "m1", 1);
    pid[2] = h_expect_pub(h, s, "t/1", "m2", 1);
    h_expect_none(h, s);
    assert_true(pid[0] != pid[1] && pid[1] != pid[2] && pid[0] != pid[2]);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.inflight, 3);
    h_puback(h, s, pid[0]);
    pid[3] = h_expect_pub(h, s, "t/1", "m3", 1);
    h_expect_none(h, s);
    h_puback(h, s, pid[2]);
    h_puback(h, s, pid[1]);
    pid[4] = h_expect_pub(h, s, "t/1", "m4", 1);
    pid[5] = h_expect_pub(h, s, "t/1", "m5", 1);
    h_expect_none(h, s);
    h_puback(h, s, pid[3]);
    h_puback(h, s, pid[4]);
    h_puback(h, s, pid[5]);
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.queued, 0);
}

/* MQTT 5: the client's Receive Maximum narrows the window. */
static void test_qos1_v5_receive_maximum(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_open(h);
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM);
    pr.receive_maximum = 2;
    h_connect_opts o = {.version = V5, .client_id = "sub", .clean = true, .keepalive = 60, .props = &pr};
    h_send_connect(h, s, &o);
    h_expect_connack(h, s, 0);
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "t/1", "a");
    h_pub1_ok(h, p, "t/1", "b");
    h_pub1_ok(h, p, "t/1", "c");
    uint16_t pa = h_expect_pub(h, s, "t/1", "a", 1);
    h_expect_pub(h, s, "t/1", "b", 1);
    h_expect_none(h, s);
    h_puback(h, s, pa);
    h_expect_pub(h, s, "t/1", "c", 1);
}

static void test_qos1_redelivery_new_pid_no_dup(void **state)
{
    H *h = *state;
    h->cfg.qos1_retry_ms = 10000;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    uint64_t t0 = h->now;
    h_pub1_ok(h, p, "t/1", "again");
    iotc_mqtt_packet m;
    h_expect_pub_p(h, s, "t/1", "again", 1, &m);
    uint16_t first = m.u.publish.packet_id;
    h_advance_to(h, t0 + 9999);
    h_expect_none(h, s);
    h_advance_to(h, t0 + 10000);
    h_expect_pub_p(h, s, "t/1", "again", 1, &m);
    assert_false(m.u.publish.dup); /* "The MQTT DUP flag is not supported" (§1.2) */
    uint16_t second = m.u.publish.packet_id;
    assert_true(second != first);   /* "with a new packet ID" (§1.2) */
    assert_int_equal(s->last_t, t0 + 10000);
    h_expect_none(h, s);
    h_advance_to(h, t0 + 20000);
    h_expect_pub_p(h, s, "t/1", "again", 1, &m);
    assert_false(m.u.publish.dup);
    uint16_t third = m.u.publish.packet_id;
    assert_true(third != second && third != first);
    h_puback(h, s, third);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.inflight, 0);
    h_advance_to(h, t0 + 60000);
    h_expect_none(h, s);
}

static void test_qos1_given_up_after_retry_max(void **state)
{
    H *h = *state;
    h->cfg.qos1_retry_ms = 1000;
    h->cfg.qos1_retry_max_ms = 5000;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    uint64_t t0 = h->now;
    h_pub1_ok(h, p, "t/1", "never acked");
    h_expect_pub(h, s, "t/1", "never acked", 1);
    h_advance_to(h, t0 + 4999);
    size_t resent = 0;
    iotc_mqtt_packet m;
    while (h_pop(h, s, &m)) {
        assert_int_equal(m.type, IOTC_MQTT_PUBLISH);
        resent++;
    }
    assert_true(resent >= 1);
    assert_int_equal(h_log_count(h, "decision", "qos1_given_up"), 0);
    h_advance_to(h, t0 + 5000);
    h_drain(h, s);
    assert_int_equal(h_log_count(h, "decision", "qos1_given_up"), 1);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.inflight, 0);
    h_advance_to(h, t0 + 60000);
    h_expect_none(h, s);
    assert_false(h_closed(s));
}

/* Giving a message up frees its slot in the window: what waited behind it
 * goes out, and later deliveries are not stuck behind it (§2: the broker
 * stops sending only "until it acknowledges"; §1.7 drops the message after
 * the retry period). */
static void test_qos1_given_up_frees_window(void **state)
{
    H *h = *state;
    h->cfg.max_inflight = 2;
    h->cfg.qos1_retry_ms = 1000;
    h->cfg.qos1_retry_max_ms = 5000;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    uint64_t t0 = h->now;
    h_pub1_ok(h, p, "t/1", "a");
    h_pub1_ok(h, p, "t/1", "b");
    h_pub1_ok(h, p, "t/1", "c");
    h_expect_pub(h, s, "t/1", "a", 1);
    h_expect_pub(h, s, "t/1", "b", 1);
    h_expect_none(h, s);
    h_advance_to(h, t0 + 5000);
    assert_int_equal(h_log_count(h, "decision", "qos1_given_up"), 2);
    bool got_c = false;
    iotc_mqtt_packet m;
    h_advance_to(h, t0 + 5001);
    while (h_pop(h, s, &m))
        if (m.type == IOTC_MQTT_PUBLISH && h_bytes_eq(m.u.publish.payload, "c"))
            got_c = true;
    if (!got_c)
        fail_msg("the message waiting behind two given-up ones was not sent once the window was free");
    /* And a later QoS 0 message is delivered right away. */
    h_pub(h, p, "t/2", "q0", 0, false);
    h_expect_pub(h, s, "t/2", "q0", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_route_hash_does_not_match_parent),
        H_TEST(test_route_hash_matches_parent_when_configured),
        H_TEST(test_route_plus_levels),
        H_TEST(test_route_dollar_topics_not_matched_by_wildcards),
        H_TEST(test_route_qos_is_min_of_pub_and_sub),
        H_TEST(test_route_overlapping_subscriptions_once_at_highest_qos),
        H_TEST(test_route_puback_to_publisher),
        H_TEST(test_route_across_versions),
        H_TEST(test_route_v5_properties_forwarded),
        H_TEST(test_route_live_delivery_retain_flag_zero),
        H_TEST(test_route_v5_no_local),
        H_TEST(test_route_v5_retain_as_published),
        H_TEST(test_route_unsubscribe_stops_delivery),
        H_TEST(test_route_v5_topic_alias_inbound),
        H_TEST(test_route_v5_client_max_packet_size),
        H_TEST(test_retain_v5_retain_handling),
        H_TEST(test_route_v5_message_expiry_clamped),
        H_TEST(test_qos2_v3_publish_dropped),
        H_TEST(test_qos2_v3_subscribe_no_suback),
        H_TEST(test_qos2_v3_subscribe_close_option),
        H_TEST(test_qos2_v5_publish_disconnects),
        H_TEST(test_qos2_v5_subscribe_granted_1),
        H_TEST(test_qos2_will_v3_closed_without_connack),
        H_TEST(test_qos2_will_v5_connack_9b),
        H_TEST(test_retain_classic_closes_v3),
        H_TEST(test_retain_classic_closes_v5),
        H_TEST(test_retain_current_exact_match_only),
        H_TEST(test_retain_current_empty_payload_deletes),
        H_TEST(test_retain_current_replaced),
        H_TEST(test_qos1_inflight_window),
        H_TEST(test_qos1_v5_receive_maximum),
        H_TEST(test_qos1_redelivery_new_pid_no_dup),
        H_TEST(test_qos1_given_up_after_retry_max),
        H_TEST(test_qos1_given_up_frees_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
