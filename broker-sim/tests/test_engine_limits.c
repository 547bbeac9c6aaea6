/*
 * test_engine_limits.c: component tests of the broker engine's limits and
 * reserved topics (aws-broker.md §1.12, §2, §3.4, §3.5, §7.4, §7.5): payload
 * size, topic size and depth with the Basic Ingest exemption, filters per
 * SUBSCRIBE, subscriptions per connection, the publish rate, reserved and
 * shared filters, Subscription Identifiers, and the inbound throughput limit
 * (delayed, not dropped).
 */
#include "engine_harness.h"

static bool closed_with_reason(const H *h, size_t from, const char *reason)
{
    for (size_t i = from; i < h->nlog; i++)
        if (h_jstr_is(h->log[i], "what", "close") && h_jstr_is(h->log[i], "reason", reason))
            return true;
    return false;
}

/* ---- payload (§2, §1.13) ------------------------------------------------- */

static void payload_limit(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 0);
    /* The payload limit is 128 KB (aws-broker.md §2).  MQTT 5 clients are
     * also held to the advertised Maximum Packet Size, also 128 KB, so for
     * them a 128 KB payload (plus its header) is already too large. */
    size_t max = h->cfg.max_payload;
    assert_int_equal(max, 131072);
    assert_int_equal(h->cfg.max_packet, 131072);
    size_t fits = v == V5 ? max - 64 : max;
    size_t over = v == V5 ? max : max + 1;
    uint8_t *big = malloc(max + 1);
    assert_non_null(big);
    memset(big, 'p', max + 1);
    h_conn *p = h_client(h, v, "pub");
    h_publish_x(h, p, "t/1", big, fits, 0, false, 0, NULL);
    assert_false(h_closed(p));
    iotc_mqtt_packet m;
    h_expect(h, s, IOTC_MQTT_PUBLISH, &m);
    assert_int_equal(m.u.publish.payload.len, fits);
    size_t mark = h->nlog;
    h_publish_x(h, p, "t/1", big, over, 1, false, 1, NULL);
    free(big);
    h_expect_server_close(h, p, IOTC_RC_PACKET_TOO_LARGE);
    assert_true(closed_with_reason(h, mark, "CLIENT_ERROR"));
    h_expect_none(h, s);
}

static void test_limit_payload_v3(void **state)
{
    payload_limit(state, V3);
}

static void test_limit_payload_v5(void **state)
{
    payload_limit(state, V5);
}

/* ---- topic size and depth (§2) ------------------------------------------- */

static void topic_limit(void **state, iotc_mqtt_version v, const char *ok_topic, const char *bad_topic)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "#", 0);
    h_conn *p = h_client(h, v, "pub");
    h_pub1_ok(h, p, ok_topic, "fits");
    h_expect_pub(h, s, ok_topic, "fits", 0);
    if (v == V5) {
        uint16_t pid = h_pub(h, p, bad_topic, "too big", 1, false);
        iotc_mqtt_packet a;
        h_expect(h, p, IOTC_MQTT_PUBACK, &a);
        assert_int_equal(a.u.ack.packet_id, pid);
        assert_int_equal(a.u.ack.reason, IOTC_RC_TOPIC_NAME_INVALID);
        assert_false(h_closed(p));
        /* still usable */
        h_pub1_ok(h, p, ok_topic, "again");
        h_expect_pub(h, s, ok_topic, "again", 0);
    } else {
        h_pub(h, p, bad_topic, "too big", 1, false);
        h_expect_server_close(h, p, -1);
    }
    h_expect_none(h, s);
}

static char long_ok[257], long_bad[258];

static void make_long_topics(void)
{
    memset(long_ok, 'a', 256);
    long_ok[0] = 't';
    long_ok[1] = '/';
    long_ok[256] = 0;
    memset(long_bad, 'a', 257);
    long_bad[0] = 't';
    long_bad[1] = '/';
    long_bad[257] = 0;
}

static void test_limit_topic_length_v3(void **state)
{
    make_long_topics();
    topic_limit(state, V3, long_ok, long_bad);
}

static void test_limit_topic_length_v5(void **state)
{
    make_long_topics();
    topic_limit(state, V5, long_ok, long_bad);
}

static void test_limit_topic_slashes_v3(void **state)
{
    topic_limit(state, V3, "a/b/c/d/e/f/g/h", "a/b/c/d/e/f/g/h/i");
}

static void test_limit_topic_slashes_v5(void **state)
{
    topic_limit(state, V5, "a/b/c/d/e/f/g/h", "a/b/c/d/e/f/g/h/i");
}

/* v5 QoS 0 has no PUBACK to carry the refusal: DISCONNECT 0x90 (§2). */
static void test_limit_topic_v5_qos0_disconnects(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *p = h_client(h, V5, "pub");
    h_pub(h, p, "a/b/c/d/e/f/g/h/i", "x", 0, false);
    h_expect_server_close(h, p, IOTC_RC_TOPIC_NAME_INVALID);
}

/* Filters have the same limits: v3 closes, v5 SUBACK 0x8F. */
static void filter_limit(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, v, "sub");
    h_sub_ok(h, s, "a/b/c/d/e/f/g/#", 0);
    if (v == V5) {
        h_sub_expect(h, s, "a/b/c/d/e/f/g/h/#", 0, IOTC_RC_TOPIC_FILTER_INVALID);
        assert_false(h_closed(s));
    } else {
        h_subscribe(h, s, "a/b/c/d/e/f/g/h/#", 0);
        h_expect_server_close(h, s, -1);
    }
}

static void test_limit_filter_slashes_v3(void **state)
{
    filter_limit(state, V3);
}

static void test_limit_filter_slashes_v5(void **state)
{
    filter_limit(state, V5);
}

/* §2: the Basic Ingest prefix $aws/rules/<rule>/ does not count; the message
 * goes to the rule, not to subscribers. */
static void rules_ingest(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "#", 1);
    h_sub_ok(h, s, "$aws/+/rule/#", 1);
    h_conn *p = h_client(h, v, "pub");
    size_t mark = h->nlog;
    h_pub1_ok(h, p, "$aws/rules/rule/a/b/c/d/e/f/g/h", "ingest");
    assert_false(h_closed(p));
    char topic[300];
    memset(topic, 'x', sizeof topic);
    memcpy(topic, "$aws/rules/rule/", 16);
    topic[16 + 250] = 0; /* 266 bytes in all, 250 after the prefix */
    h_pub1_ok(h, p, topic, "long ingest");
    assert_false(h_closed(p));
    h_expect_none(h, s);
    assert_int_equal(h_log_count_from(h, mark, "decision", "rules_ingest"), 2);
    const cJSON *d = h_log_last(h, "decision", "rules_ingest");
    assert_non_null(d);
}

static void test_limit_rules_ingest_exempt_v3(void **state)
{
    rules_ingest(state, V3);
}

static void test_limit_rules_ingest_exempt_v5(void **state)
{
    rules_ingest(state, V5);
}

/* ---- SUBSCRIBE limits (§2) ------------------------------------------------ */

static void nine_filters(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, v, "sub");
    char names[9][8];
    iotc_mqtt_sub subs[9];
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < 9; i++) {
        snprintf(names[i], sizeof names[i], "f/%d", i);
        subs[i].filter = iotc_mqtt_str(names[i]);
    }
    h_subscribe_n(h, s, 1, subs, 8, NULL); /* 8 is fine */
    iotc_mqtt_packet a;
    h_expect(h, s, IOTC_MQTT_SUBACK, &a);
    assert_int_equal(a.u.suback.count, 8);
    h_subscribe_n(h, s, 2, subs, 9, NULL);
    iotc_mqtt_packet m;
    while (h_pop(h, s, &m)) {
        assert_int_not_equal(m.type, IOTC_MQTT_SUBACK);
        assert_int_equal(m.type, IOTC_MQTT_DISCONNECT); /* v5 may say why */
    }
    assert_true(h_closed(s));
}

static void test_limit_nine_filters_v3(void **state)
{
    nine_filters(state, V3);
}

static void test_limit_nine_filters_v5(void **state)
{
    nine_filters(state, V5);
}

/* Subscribes f/0 .. f/49 (7 packets). */
static void fifty(H *h, h_conn *s)
{
    char names[50][8];
    iotc_mqtt_sub subs[50];
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < 50; i++) {
        snprintf(names[i], sizeof names[i], "f/%d", i);
        subs[i].filter = iotc_mqtt_str(names[i]);
    }
    for (int i = 0; i < 50; i += 8) {
        size_t n = 50 - i < 8 ? (size_t)(50 - i) : 8;
        h_subscribe_n(h, s, (uint16_t)(100 + i), &subs[i], n, NULL);
        iotc_mqtt_packet a;
        h_expect(h, s, IOTC_MQTT_SUBACK, &a);
        assert_int_equal(a.u.suback.count, n);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(a.u.suback.codes[k], 0);
    }
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 50);
}

static void fifty_first_closes(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, v, "sub");
    fifty(h, s);
    h_subscribe(h, s, "f/50", 0);
    iotc_mqtt_packet m;
    while (h_pop(h, s, &m))
        assert_int_equal(m.type, IOTC_MQTT_DISCONNECT);
    assert_true(h_closed(s));
}

static void test_limit_51st_subscription_closes_v3(void **state)
{
    fifty_first_closes(state, V3);
}

static void test_limit_51st_subscription_closes_v5(void **state)
{
    fifty_first_closes(state, V5);
}

static void fifty_first_refused(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h->cfg.over_subscriptions = SIM_OVER_SUBS_REFUSE;
    h_start(h);
    h_conn *s = h_client(h, v, "sub");
    fifty(h, s);
    h_sub_expect(h, s, "f/50", 0, v == V5 ? IOTC_RC_QUOTA_EXCEEDED : IOTC_V3_SUBACK_FAILURE);
    assert_false(h_closed(s));
    /* Replacing an existing subscription is not a new one. */
    h_sub_ok(h, s, "f/7", 1);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 50);
    /* The refused filter gets nothing. */
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "f/50", "x", 0, false);
    h_expect_none(h, s);
    h_pub(h, p, "f/49", "y", 0, false);
    h_expect_pub(h, s, "f/49", "y", 0);
}

static void test_limit_51st_subscription_refused_v3(void **state)
{
    fifty_first_refused(state, V3);
}

static void test_limit_51st_subscription_refused_v5(void **state)
{
    fifty_first_refused(state, V5);
}

/* ---- publish rate (§2: 100 per second per connection, then discarded) ---- */

static void publish_rate(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *p = h_client(h, v, "pub");
    for (int i = 0; i < 100; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        h_pub(h, p, "t/1", pl, 0, false);
    }
    size_t mark = h->nlog;
    h_pub(h, p, "t/1", "m100", 0, false);
    assert_false(h_closed(p));
    for (int i = 0; i < 100; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        h_expect_pub(h, s, "t/1", pl, 0);
    }
    h_expect_none(h, s);
    assert_int_equal(h_log_count_from(h, mark, "decision", "publish_rate_discarded"), 1);
    h_advance(h, 1000);
    h_pub(h, p, "t/1", "later", 0, false);
    h_expect_pub(h, s, "t/1", "later", 0);
}

static void test_limit_publish_rate_v3(void **state)
{
    publish_rate(state, V3);
}

static void test_limit_publish_rate_v5(void **state)
{
    publish_rate(state, V5);
}

/* ---- reserved and shared filters (§1.9, §1.12, §3.5) -------------------- */

static void reserved_filter(void **state, iotc_mqtt_version v, const char *filter)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, v, "sub");
    if (v == V5) {
        h_sub_expect(h, s, filter, 0, IOTC_RC_NOT_AUTHORIZED);
        assert_false(h_closed(s));
        h_sub_ok(h, s, "ok/#", 0);
    } else {
        h_subscribe(h, s, filter, 0);
        h_expect_server_close(h, s, -1);
    }
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, v == V5 ? 1 : 0);
}

static void test_limit_subscribe_rules_refused_v3(void **state)
{
    reserved_filter(state, V3, "$aws/rules/x");
}

static void test_limit_subscribe_rules_refused_v5(void **state)
{
    reserved_filter(state, V5, "$aws/rules/x");
}

static void test_limit_subscribe_sys_refused_v3(void **state)
{
    reserved_filter(state, V3, "$SYS/#");
}

static void test_limit_subscribe_sys_refused_v5(void **state)
{
    reserved_filter(state, V5, "$SYS/#");
}

static void test_limit_v5_subscription_identifier(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    iotc_mqtt_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.filter = iotc_mqtt_str("t/#");
    uint32_t id = 7;
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.sub_ids = &id;
    pr.sub_id_count = 1;
    h_subscribe_n(h, s, 1, &sub, 1, &pr);
    h_expect_server_close(h, s, IOTC_RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED);
}

static void shared(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, v, "sub");
    h_sub_expect(h, s, "$share/g/t", 1, v == V5 ? IOTC_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED : IOTC_V3_SUBACK_FAILURE);
    assert_false(h_closed(s));
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "t", "x", 0, false);
    h_expect_none(h, s);
}

static void test_limit_shared_refused_v3(void **state)
{
    shared(state, V3);
}

static void test_limit_shared_refused_v5(void **state)
{
    shared(state, V5);
}

/* ---- throughput (§2: delayed, not dropped) ------------------------------- */

static void test_limit_throughput_delays_input(void **state)
{
    H *h = *state;
    h->cfg.throughput = 1000; /* bytes per second */
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *p = h_client(h, V3, "pub");

    /* Ten PUBLISH packets of the same size in one buffer. */
    enum { N = 10 };
    uint8_t payload[200];
    memset(payload, 'x', sizeof payload);
    iotc_mqtt_packet pk;
    memset(&pk, 0, sizeof pk);
    pk.type = IOTC_MQTT_PUBLISH;
    pk.u.publish.topic = iotc_mqtt_str("t/1");
    pk.u.publish.payload.data = payload;
    pk.u.publish.payload.len = sizeof payload;
    size_t one;
    uint8_t *enc = h_encode(&pk, V3, &one);
    uint8_t *buf = h_alloc(h, one * N);
    for (size_t i = 0; i < N; i++) {
        memcpy(buf + i * one, enc, one);
        buf[i * one + one - 1] = (uint8_t)('0' + i); /* the last payload byte numbers it */
    }
    free(enc);
    size_t total = one * N, off = 0;
    uint64_t t0 = h->now;

    off = h_input(h, p, buf, total);
    assert_true(off > 0);
    assert_true(off < total);
    assert_int_equal(off % one, 0); /* whole packets */
    uint64_t dl = h->next;
    assert_true(dl > h->now);
    assert_true(dl <= h->now + 1000); /* one packet's deficit refills within a second */
    /* Before the deadline the budget is still spent. */
    h_advance(h, 1);
    assert_int_equal(h_input(h, p, buf + off, total - off), 0);
    int rounds = 0;
    while (off < total) {
        assert_true(++rounds < 100);
        uint64_t d = h->next;
        assert_true(d > h->now);
        h_advance_to(h, d);
        size_t took = h_input(h, p, buf + off, total - off);
        assert_true(took > 0); /* at the deadline there is budget again */
        off += took;
    }
    /* The bucket holds a second's worth (1000 bytes) and a packet may
     * overdraw it, so everything but the last packet and those 1000 bytes
     * must have waited for the rate: 9 x 207 - 1000 = 863 ms at least. */
    uint64_t min_ms = (uint64_t)(total - one - h->cfg.throughput) * 1000u / h->cfg.throughput;
    if (h->now - t0 < min_ms)
        fail_msg("%zu bytes taken in %llu ms at %u B/s", total, (unsigned long long)(h->now - t0),
                 h->cfg.throughput);
    /* Nothing lost, in order. */
    for (int i = 0; i < N; i++) {
        iotc_mqtt_packet m;
        h_expect(h, s, IOTC_MQTT_PUBLISH, &m);
        assert_int_equal(m.u.publish.payload.len, sizeof payload);
        assert_int_equal(m.u.publish.payload.data[sizeof payload - 1], '0' + i);
    }
    h_expect_none(h, s);
    assert_false(h_closed(p));
    assert_true(h_log_count(h, "decision", "throughput_delayed") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_limit_payload_v3),
        H_TEST(test_limit_payload_v5),
        H_TEST(test_limit_topic_length_v3),
        H_TEST(test_limit_topic_length_v5),
        H_TEST(test_limit_topic_slashes_v3),
        H_TEST(test_limit_topic_slashes_v5),
        H_TEST(test_limit_topic_v5_qos0_disconnects),
        H_TEST(test_limit_filter_slashes_v3),
        H_TEST(test_limit_filter_slashes_v5),
        H_TEST(test_limit_rules_ingest_exempt_v3),
        H_TEST(test_limit_rules_ingest_exempt_v5),
        H_TEST(test_limit_nine_filters_v3),
        H_TEST(test_limit_nine_filters_v5),
        H_TEST(test_limit_51st_subscription_closes_v3),
        H_TEST(test_limit_51st_subscription_closes_v5),
        H_TEST(test_limit_51st_subscription_refused_v3),
        H_TEST(test_limit_51st_subscription_refused_v5),
        H_TEST(test_limit_publish_rate_v3),
        H_TEST(test_limit_publish_rate_v5),
        H_TEST(test_limit_subscribe_rules_refused_v3),
        H_TEST(test_limit_subscribe_rules_refused_v5),
        H_TEST(test_limit_subscribe_sys_refused_v3),
        H_TEST(test_limit_subscribe_sys_refused_v5),
        H_TEST(test_limit_v5_subscription_identifier),
        H_TEST(test_limit_shared_refused_v3),
        H_TEST(test_limit_shared_refused_v5),
        H_TEST(test_limit_throughput_delays_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
