/*
 * test_engine_session.c: component tests of the broker engine's persistent
 * sessions and the Will (aws-broker.md §1.6, §1.11, §3.3, §4.1, §7.2): what is
 * stored while offline, the rate-limited replay measured on the virtual
 * clock, expiry, MQTT 5 Session Expiry Interval, sessions not crossing
 * protocol versions, the queue limit, and when the Will is published.
 */
#include "engine_harness.h"

#define N_STORED 30

/* A persistent subscriber of t/# at QoS 1 that goes offline, and N_STORED
 * QoS 1 messages (plus QoS 0 ones, not stored) published meanwhile. */
static h_conn *offline_backlog(H *h, iotc_mqtt_version v, h_conn **pub)
{
    h_conn *s = h_open(h);
    assert_false(h_connect_persistent(h, s, v, "sub"));
    h_sub_ok(h, s, "t/#", 1);
    h_lost(h, s);
    h_conn *p = h_client(h, V3, "pub");
    for (int i = 0; i < N_STORED; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%02d", i);
        h_pub1_ok(h, p, "t/1", pl);
        h_pub(h, p, "t/0", "qos0", 0, false);
    }
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.queued, N_STORED);
    *pub = p;
    return s;
}

static void replay_rate(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *p;
    offline_backlog(h, v, &p);
    h_advance(h, 1000);
    h_conn *s = h_open(h);
    uint64_t t_conn = h->now;
    assert_true(h_connect_persistent(h, s, v, "sub"));
    uint64_t t[N_STORED];
    int n = 0;
    iotc_mqtt_packet m;
    /* Acknowledge each as it comes, 50 ms at a time (the clock still ticks at
     * every deadline in between), for 9 s: under the 10 s retry. */
    for (;;) {
        if (!h_pop(h, s, &m)) {
            if (h->now >= t_conn + 9000)
                break;
            h_advance(h, 50);
            continue;
        }
        assert_int_equal(m.type, IOTC_MQTT_PUBLISH);
        if (n >= N_STORED)
            fail_msg("more than %d messages replayed", N_STORED);
        char want[16];
        snprintf(want, sizeof want, "m%02d", n);
        h_assert_bytes(m.u.publish.topic, "t/1");
        h_assert_bytes(m.u.publish.payload, want); /* in order, no QoS 0 ones */
        assert_int_equal(m.u.publish.qos, 1);
        assert_false(m.u.publish.dup);
        t[n++] = s->last_t;
        h_puback(h, s, m.u.publish.packet_id);
    }
    assert_int_equal(n, N_STORED);
    /* "stored QoS 1 messages start flowing right after the CONNACK" (§1.5) */
    assert_true(t[0] - t_conn < 1000);
    /* No more than 10 in any 1000 ms (§1.6). */
    for (int i = 0; i + 10 < N_STORED; i++)
        if (t[i + 10] - t[i] < 1000)
            fail_msg("messages %d..%d replayed within %llu ms", i, i + 10, (unsigned long long)(t[i + 10] - t[i]));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.inflight, 0);
}

static void test_session_replay_rate_v3(void **state)
{
    replay_rate(state, V3);
}

static void test_session_replay_rate_v5(void **state)
{
    replay_rate(state, V5);
}

static void test_session_live_not_blocked_by_replay(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *p;
    offline_backlog(h, V3, &p);
    h_advance(h, 1000);
    h_conn *s = h_open(h);
    uint64_t t_conn = h->now;
    assert_true(h_connect_persistent(h, s, V3, "sub"));
    h_advance_to(h, t_conn + 250);
    int replayed = 0;
    iotc_mqtt_packet m;
    while (h_pop(h, s, &m)) {
        assert_int_equal(m.type, IOTC_MQTT_PUBLISH);
        h_puback(h, s, m.u.publish.packet_id);
        replayed++;
    }
    assert_true(replayed > 0 && replayed < 10);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_true(st.queued > 15);
    uint64_t t_live = h->now;
    h_pub1_ok(h, p, "t/live", "live1");
    uint16_t pid = h_expect_pub(h, s, "t/live", "live1", 1);
    assert_int_equal(s->last_t, t_live);
    h_puback(h, s, pid);
    h_pub(h, p, "t/live", "live0", 0, false);
    h_expect_pub(h, s, "t/live", "live0", 0);
    assert_int_equal(s->last_t, t_live);
    h_expect_none(h, s);
}

static void test_session_inflight_redelivered_first(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_open(h);
    assert_false(h_connect_persistent(h, s, V3, "sub"));
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V5, "pub");
    h_pub1_ok(h, p, "t/1", "f1");
    h_pub1_ok(h, p, "t/1", "f2");
    h_expect_pub(h, s, "t/1", "f1", 1);
    uint16_t p2 = h_expect_pub(h, s, "t/1", "f2", 1);
    (void)p2;
    h_lost(h, s); /* neither acknowledged */
    h_pub1_ok(h, p, "t/1", "o1");
    h_pub1_ok(h, p, "t/1", "o2");
    h_pub1_ok(h, p, "t/1", "o3");
    h_advance(h, 1000);
    h_conn *s2 = h_open(h);
    assert_true(h_connect_persistent(h, s2, V3, "sub"));
    h_advance(h, 5000);
    static const char *const order[] = {"f1", "f2", "o1", "o2", "o3"};
    for (size_t i = 0; i < 5; i++) {
        uint16_t pid = h_expect_pub(h, s2, "t/1", order[i], 1);
        h_puback(h, s2, pid);
    }
    h_expect_none(h, s2);
}

/* §1.6: "New QoS 1 messages that match QoS 1 subscriptions"; QoS 0 traffic is not stored. */
static void test_session_only_qos1_for_qos1_subscriptions_stored(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_open(h);
    assert_false(h_connect_persistent(h, s, V3, "sub"));
    h_sub_ok(h, s, "q0/#", 0);
    h_sub_ok(h, s, "q1/#", 1);
    h_lost(h, s);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "q0/x", "qos1 on a qos0 subscription");
    h_pub(h, p, "q1/x", "qos0 on a qos1 subscription", 0, false);
    h_pub1_ok(h, p, "q1/x", "stored");
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.queued, 1);
    h_advance(h, 1000);
    h_conn *s2 = h_open(h);
    assert_true(h_connect_persistent(h, s2, V3, "sub"));
    h_advance(h, 2000);
    h_expect_pub(h, s2, "q1/x", "stored", 1);
    h_expect_none(h, s2);
}

static void session_expiry(H *h, iotc_mqtt_version v, uint32_t sei, uint32_t want_s)
{
    h_conn *s = h_open(h);
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
    pr.session_expiry_interval = sei;
    h_connect_opts o = {.version = v, .client_id = "sub", .clean = false, .keepalive = 1200,
                        .props = v == V5 ? &pr : NULL};
    h_send_connect(h, s, &o);
    iotc_mqtt_connack a = h_expect_connack(h, s, 0);
    assert_false(a.session_present);
    if (v == V5) {
        bool has = a.props.present & IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
        if (sei > want_s) {
            /* "AWS IoT Core will return the adjusted value in the CONNACK" (§1.6) */
            assert_true(has);
            assert_int_equal(a.props.session_expiry_interval, want_s);
        } else {
            assert_false(has);
        }
    }
    h_sub_ok(h, s, "t/#", 1);
    h_lost(h, s);
    uint64_t t_lost = h->now;
    sim_stats st;
    h_advance_to(h, t_lost + (uint64_t)want_s * 1000 - 1);
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.sessions, 1);
    assert_int_equal(h_log_count(h, "decision", "session_expired"), 0);
    h_advance_to(h, t_lost + (uint64_t)want_s * 1000);
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.sessions, 0);
    assert_int_equal(h_log_count(h, "decision", "session_expired"), 1);
    h_conn *s2 = h_open(h);
    h_send_connect(h, s2, &o);
    a = h_expect_connack(h, s2, 0);
    assert_false(a.session_present);
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 0);
}

static void test_session_expiry_v3(void **state)
{
    H *h = *state;
    h_start(h);
    session_expiry(h, V3, 0, 3600);
}

static void test_session_expiry_v5_sei_clamped(void **state)
{
    H *h = *state;
    h_start(h);
    session_expiry(h, V5, 7200, 3600);
}

static void test_session_expiry_v5_sei_below_maximum(void **state)
{
    H *h = *state;
    h_start(h);
    session_expiry(h, V5, 600, 600);
}

static void test_session_v5_sei_zero_ends_at_disconnect(void **state)
{
    H *h = *state;
    h_start(h);
    /* SEI absent, and SEI 0: both end with the connection. */
    for (int i = 0; i < 2; i++) {
        iotc_mqtt_props pr;
        memset(&pr, 0, sizeof pr);
        if (i) {
            pr.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
            pr.session_expiry_interval = 0;
        }
        h_conn *s = h_open(h);
        h_connect_opts o = {.version = V5, .client_id = "sub", .clean = false, .keepalive = 60, .props = &pr};
        h_send_connect(h, s, &o);
        h_expect_connack(h, s, 0);
        h_sub_ok(h, s, "t/#", 1);
        h_lost(h, s);
        sim_stats st;
        sim_engine_stats(h->e, &st);
        assert_int_equal(st.sessions, 0);
        h_advance(h, 1000);
        h_conn *s2 = h_open(h);
        h_send_connect(h, s2, &o);
        iotc_mqtt_connack a = h_expect_connack(h, s2, 0);
        assert_false(a.session_present);
        h_disconnect(h, s2, 0, NULL);
        h_advance(h, 1000);
    }
}

/* §1.6: DISCONNECT with SEI 0 ends a session whose SEI was > 0. */
static void test_session_v5_disconnect_sei_zero(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_open(h);
    assert_false(h_connect_persistent(h, s, V5, "sub"));
    h_sub_ok(h, s, "t/#", 1);
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
    pr.session_expiry_interval = 0;
    h_disconnect(h, s, 0, &pr);
    assert_true(h_closed(s));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.sessions, 0);
}

/* §1.6: a session with SEI 0 may not be raised on DISCONNECT (protocol error). */
static void test_session_v5_disconnect_cannot_raise_sei(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
    pr.session_expiry_interval = 600;
    h_disconnect(h, s, 0, &pr);
    h_expect_server_close(h, s, IOTC_RC_PROTOCOL_ERROR);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.sessions, 0);
}

/* §1.1: a persistent session cannot cross versions. */
static void test_session_not_across_versions(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_open(h);
    assert_false(h_connect_persistent(h, a, V3, "dev1"));
    h_sub_ok(h, a, "t/#", 1);
    h_lost(h, a);
    h_advance(h, 1000);
    h_conn *b = h_open(h);
    assert_false(h_connect_persistent(h, b, V5, "dev1"));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 0);
    /* and the other way round */
    h_sub_ok(h, b, "u/#", 1);
    h_lost(h, b);
    h_advance(h, 1000);
    h_conn *c = h_open(h);
    assert_false(h_connect_persistent(h, c, V3, "dev1"));
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 0);
    /* while the same version resumes */
    h_sub_ok(h, c, "w/#", 1);
    h_lost(h, c);
    h_advance(h, 1000);
    h_conn *d = h_open(h);
    assert_true(h_connect_persistent(h, d, V3, "dev1"));
}

/* §1.6: storage is capped; messages beyond the limit are dropped. */
static void test_session_max_queued(void **state)
{
    H *h = *state;
    h->cfg.max_queued = 5;
    h_start(h);
    h_conn *s = h_open(h);
    assert_false(h_connect_persistent(h, s, V3, "sub"));
    h_sub_ok(h, s, "t/#", 1);
    h_lost(h, s);
    h_conn *p = h_client(h, V3, "pub");
    for (int i = 0; i < 8; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        h_pub1_ok(h, p, "t/1", pl);
    }
    assert_int_equal(h_log_count(h, "decision", "queue_full_dropped"), 3);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.queued, 5);
    h_advance(h, 1000);
    h_conn *s2 = h_open(h);
    assert_true(h_connect_persistent(h, s2, V3, "sub"));
    h_advance(h, 2000);
    for (int i = 0; i < 5; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        uint16_t pid = h_expect_pub(h, s2, "t/1", pl, 1);
        h_puback(h, s2, pid);
    }
    h_expect_none(h, s2);
}

/* §3.3: a queued message is sent with the remaining expiry, or not at all. */
static void test_session_v5_message_expiry_while_offline(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_open(h);
    assert_false(h_connect_persistent(h, s, V5, "sub"));
    h_sub_ok(h, s, "t/#", 1);
    h_lost(h, s);
    h_conn *p = h_client(h, V5, "pub");
    iotc_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.present = IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL);
    pr.message_expiry_interval = 5;
    h_publish_x(h, p, "t/1", (const uint8_t *)"short", 5, 1, false, 1, &pr);
    h_expect(h, p, IOTC_MQTT_PUBACK, NULL);
    pr.message_expiry_interval = 30;
    h_publish_x(h, p, "t/1", (const uint8_t *)"long", 4, 1, false, 2, &pr);
    h_expect(h, p, IOTC_MQTT_PUBACK, NULL);
    h_advance(h, 20000);
    h_conn *s2 = h_open(h);
    assert_true(h_connect_persistent(h, s2, V5, "sub"));
    h_advance(h, 2000);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, s2, "t/1", "long", 1, &m);
    assert_true(m.u.publish.props.present & IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL));
    assert_int_equal(m.u.publish.props.message_expiry_interval, 10);
    h_expect_none(h, s2);
}

/* A takeover that resumes the session (clean 0) carries the unacknowledged
 * messages over to the new connection. */
static void test_session_takeover_resumes_inflight(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_open(h);
    assert_false(h_connect_persistent(h, a, V3, "sub"));
    h_sub_ok(h, a, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "t/1", "unacked");
    h_expect_pub(h, a, "t/1", "unacked", 1);
    h_advance(h, 1000);
    h_conn *b = h_open(h);
    assert_true(h_connect_persistent(h, b, V3, "sub"));
    assert_true(h_closed(a));
    h_advance(h, 1000);
    uint16_t pid = h_expect_pub(h, b, "t/1", "unacked", 1);
    h_puback(h, b, pid);
    h_expect_none(h, b);
    h_pub1_ok(h, p, "t/1", "live");
    h_expect_pub(h, b, "t/1", "live", 1);
}

/* The replay rate holds for rates that do not divide 1000 ms evenly. */
static void test_session_replay_rate_3_per_second(void **state)
{
    H *h = *state;
    h->cfg.replay_rate = 3;
    h_start(h);
    h_conn *p;
    offline_backlog(h, V3, &p);
    h_advance(h, 1000);
    h_conn *s = h_open(h);
    uint64_t t_conn = h->now;
    assert_true(h_connect_persistent(h, s, V3, "sub"));
    uint64_t t[N_STORED];
    int n = 0;
    iotc_mqtt_packet m;
    while (n < 12) {
        if (!h_pop(h, s, &m)) {
            assert_true(h->now < t_conn + 9000);
            h_advance(h, 10);
            continue;
        }
        assert_int_equal(m.type, IOTC_MQTT_PUBLISH);
        t[n++] = s->last_t;
        h_puback(h, s, m.u.publish.packet_id);
    }
    for (int i = 0; i + 3 < n; i++)
        if (t[i + 3] - t[i] < 1000)
            fail_msg("replay_rate 3: messages %d..%d sent %llu ms apart (4 within one second)", i, i + 3,
                     (unsigned long long)(t[i + 3] - t[i]));
}

/* The replay does not exceed the inflight window. */
static void test_session_replay_respects_window(void **state)
{
    H *h = *state;
    h->cfg.max_inflight = 3;
    h_start(h);
    h_conn *p;
    offline_backlog(h, V3, &p);
    h_advance(h, 1000);
    h_conn *s = h_open(h);
    assert_true(h_connect_persistent(h, s, V3, "sub"));
    h_advance(h, 5000);
    uint16_t pid[3];
    pid[0] = h_expect_pub(h, s, "t/1", "m00", 1);
    pid[1] = h_expect_pub(h, s, "t/1", "m01", 1);
    pid[2] = h_expect_pub(h, s, "t/1", "m02", 1);
    h_expect_none(h, s);
    h_puback(h, s, pid[0]);
    h_advance(h, 1000);
    h_expect_pub(h, s, "t/1", "m03", 1);
    h_expect_none(h, s);
}

/* sim_engine_tick() returns the time it next needs a call: a time already
 * past would make the edge spin.  A SUBACK delay during a replay holds the
 * replay; the deadline must be the end of the hold, not the (past) replay
 * slot. */
static void test_session_tick_deadline_not_past_during_held_replay(void **state)
{
    H *h = *state;
    h->cfg.suback_delay_ms = 500;
    h_start(h);
    h_conn *p;
    offline_backlog(h, V3, &p);
    h_advance(h, 1000);
    h_conn *s = h_open(h);
    assert_true(h_connect_persistent(h, s, V3, "sub"));
    h_advance(h, 50);
    h_drain(h, s);
    h_sub_ok(h, s, "u/#", 1);
    unsigned before = h->past_deadline;
    h_advance(h, 1000);
    if (h->past_deadline != before)
        fail_msg("sim_engine_tick returned a deadline at or before now %u times while the replay was held",
                 h->past_deadline - before);
}

/* ---- the Will (§1.11) ---------------------------------------------------- */

static h_conn *with_will(H *h, iotc_mqtt_version v, const char *id)
{
    h_conn *c = h_open(h);
    char topic[64];
    snprintf(topic, sizeof topic, "will/%s", id);
    h_connect_opts o = {.version = v, .client_id = id, .clean = true, .keepalive = 60, .will = true,
                        .will_topic = topic, .will_payload = "bye", .will_qos = 1};
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, 0);
    return c;
}

static void will_on_lost(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_client(h, V5, "watcher");
    h_sub_ok(h, w, "will/#", 1);
    h_conn *c = with_will(h, v, "dev1");
    h_expect_none(h, w);
    h_lost(h, c);
    uint16_t pid = h_expect_pub(h, w, "will/dev1", "bye", 1);
    h_puback(h, w, pid);
    h_expect_none(h, w);
}

static void test_will_on_connection_lost_v3(void **state)
{
    will_on_lost(state, V3);
}

static void test_will_on_connection_lost_v5(void **state)
{
    will_on_lost(state, V5);
}

static void will_not_on_disconnect(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_client(h, V3, "watcher");
    h_sub_ok(h, w, "will/#", 1);
    h_conn *c = with_will(h, v, "dev1");
    h_disconnect(h, c, 0, NULL);
    assert_true(h_closed(c));
    h_expect_none(h, c);
    h_expect_none(h, w);
    assert_int_equal(h_log_count(h, "decision", "will_published"), 0);
}

static void test_will_not_on_client_disconnect_v3(void **state)
{
    will_not_on_disconnect(state, V3);
}

static void test_will_not_on_client_disconnect_v5(void **state)
{
    will_not_on_disconnect(state, V5);
}

static void test_will_v5_disconnect_with_will_message(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_client(h, V3, "watcher");
    h_sub_ok(h, w, "will/#", 0);
    h_conn *c = with_will(h, V5, "dev1");
    h_disconnect(h, c, IOTC_RC_DISCONNECT_WITH_WILL, NULL);
    assert_true(h_closed(c));
    h_expect_none(h, c);
    h_expect_pub(h, w, "will/dev1", "bye", 0);
}

static void test_will_on_server_close(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_client(h, V3, "watcher");
    h_sub_ok(h, w, "will/#", 0);
    /* CLIENT_ERROR (a second CONNECT) publishes the Will (§4.1 table). */
    h_conn *c = with_will(h, V5, "dev1");
    h_connect_opts o = {.version = V5, .client_id = "dev1", .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    h_expect_server_close(h, c, IOTC_RC_PROTOCOL_ERROR);
    h_expect_pub(h, w, "will/dev1", "bye", 0);
}

/* §1.11, §3.3: the Will's Message Expiry Interval starts when the broker
 * delivers it after the disconnect, not at CONNECT. */
static void test_will_v5_message_expiry_starts_at_disconnect(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_client(h, V5, "watcher");
    h_sub_ok(h, w, "will/#", 1);
    h_conn *c = h_open(h);
    iotc_mqtt_packet pk;
    memset(&pk, 0, sizeof pk);
    pk.type = IOTC_MQTT_CONNECT;
    pk.u.connect.version = V5;
    pk.u.connect.clean_start = true;
    pk.u.connect.keep_alive = 1200;
    pk.u.connect.client_id = iotc_mqtt_str("dev1");
    pk.u.connect.will = true;
    pk.u.connect.will_qos = 1;
    pk.u.connect.will_topic = iotc_mqtt_str("will/dev1");
    pk.u.connect.will_payload = iotc_mqtt_str("bye");
    pk.u.connect.will_props.present = IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL);
    pk.u.connect.will_props.message_expiry_interval = 30;
    c->version = V5;
    iotc_mqtt_reader_set_version(&c->rd, V5);
    h_send_pkt(h, c, &pk);
    h_expect_connack(h, c, 0);
    h_advance(h, 60000);
    h_lost(h, c);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, w, "will/dev1", "bye", 1, &m);
    assert_true(m.u.publish.props.present & IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL));
    assert_int_equal(m.u.publish.props.message_expiry_interval, 30);
}

/* §1.3: "Will messages can be retained through the Will Retain flag" (current profile). */
static void test_will_retain_current_stored(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V3, .client_id = "dev1", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "will/dev1", .will_payload = "offline", .will_qos = 1, .will_retain = true};
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, 0);
    h_lost(h, c);
    h_conn *s = h_client(h, V5, "late");
    h_sub_ok(h, s, "will/dev1", 1);
    iotc_mqtt_packet m;
    h_expect_pub_p(h, s, "will/dev1", "offline", 1, &m);
    assert_true(m.u.publish.retain);
}

/* Classic profile: no retain, so a Will Retain is refused (v3 closed, v5 CONNACK 0x9A). */
static void will_retain_classic(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "will/dev1", .will_payload = "offline", .will_qos = 1, .will_retain = true};
    h_send_connect(h, c, &o);
    if (v == V5)
        h_expect_connack(h, c, IOTC_RC_RETAIN_NOT_SUPPORTED);
    h_expect_none(h, c);
    assert_true(h_closed(c));
}

static void test_will_retain_classic_refused_v3(void **state)
{
    will_retain_classic(state, V3);
}

static void test_will_retain_classic_refused_v5(void **state)
{
    will_retain_classic(state, V5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_session_replay_rate_v3),
        H_TEST(test_session_replay_rate_v5),
        H_TEST(test_session_live_not_blocked_by_replay),
        H_TEST(test_session_inflight_redelivered_first),
        H_TEST(test_session_only_qos1_for_qos1_subscriptions_stored),
        H_TEST(test_session_expiry_v3),
        H_TEST(test_session_expiry_v5_sei_clamped),
        H_TEST(test_session_expiry_v5_sei_below_maximum),
        H_TEST(test_session_v5_sei_zero_ends_at_disconnect),
        H_TEST(test_session_v5_disconnect_sei_zero),
        H_TEST(test_session_v5_disconnect_cannot_raise_sei),
        H_TEST(test_session_not_across_versions),
        H_TEST(test_session_max_queued),
        H_TEST(test_session_v5_message_expiry_while_offline),
        H_TEST(test_session_takeover_resumes_inflight),
        H_TEST(test_session_replay_rate_3_per_second),
        H_TEST(test_session_replay_respects_window),
        H_TEST(test_session_tick_deadline_not_past_during_held_replay),
        H_TEST(test_will_on_connection_lost_v3),
        H_TEST(test_will_on_connection_lost_v5),
        H_TEST(test_will_not_on_client_disconnect_v3),
        H_TEST(test_will_not_on_client_disconnect_v5),
        H_TEST(test_will_v5_disconnect_with_will_message),
        H_TEST(test_will_on_server_close),
        H_TEST(test_will_v5_message_expiry_starts_at_disconnect),
        H_TEST(test_will_retain_current_stored),
        H_TEST(test_will_retain_classic_refused_v3),
        H_TEST(test_will_retain_classic_refused_v5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
