/*
 * test_engine.c: component tests of the broker engine (sim_engine.h) driven
 * through its sans-I/O API with a virtual clock: CONNECT and CONNACK,
 * keep-alive, client-id takeover and the connect rate, lifecycle events and
 * the fault controls.  The facts come from ../shared/reference/aws-broker.md;
 * each test names its section.
 */
#include "engine_harness.h"

/* ---- CONNECT / CONNACK (§1.4, §1.5, §1.6, §3.2, §7.3) ----------------- */

static void session_present_then_true(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_open(h);
    assert_false(h_connect_persistent(h, a, v, "dev1"));
    h_sub_ok(h, a, "t/1", 1);
    h_lost(h, a);
    h_advance(h, 1000);
    h_conn *b = h_open(h);
    assert_true(h_connect_persistent(h, b, v, "dev1"));
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 1);
    /* A clean session/clean start discards it: present 0. */
    h_advance(h, 1000);
    h_conn *c = h_open(h);
    assert_false(h_connect_ok(h, c, v, "dev1", true));
    assert_true(h_closed(b));
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.subscriptions, 0);
}

static void test_connect_session_present_v3(void **state)
{
    session_present_then_true(state, V3);
}

static void test_connect_session_present_v5(void **state)
{
    session_present_then_true(state, V5);
}

static void connack_props(void **state, sim_profile profile)
{
    H *h = *state;
    h_profile(h, profile);
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V5, .client_id = "dev1", .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    iotc_mqtt_connack a = h_expect_connack(h, c, 0);
    assert_false(a.session_present);
    const iotc_mqtt_props *p = &a.props;
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_QOS));
    assert_int_equal(p->maximum_qos, 1);
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_RETAIN_AVAILABLE));
    assert_int_equal(p->retain_available, profile == SIM_PROFILE_CURRENT ? 1 : 0);
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE));
    assert_int_equal(p->wildcard_subscription_available, 1);
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE));
    assert_int_equal(p->subscription_identifier_available, 0);
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS_MAXIMUM));
    assert_int_equal(p->topic_alias_maximum, 8);
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_PACKET_SIZE));
    assert_true(p->maximum_packet_size > 0);
    assert_true(p->present & IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM));
    assert_int_equal(p->receive_maximum, h->cfg.max_inflight);
    /* Nothing clamped, nothing assigned: none of the conditional ones. */
    assert_false(p->present & IOTC_PROP_BIT(IOTC_PROP_SERVER_KEEP_ALIVE));
    assert_false(p->present & IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL));
    assert_false(p->present & IOTC_PROP_BIT(IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER));
    assert_false(h_closed(c));
}

static void test_connack_v5_properties_classic(void **state)
{
    connack_props(state, SIM_PROFILE_CLASSIC);
}

static void test_connack_v5_properties_current(void **state)
{
    connack_props(state, SIM_PROFILE_CURRENT);
}

/* §2 ("MQTT 5 Maximum Packet Size (CONNACK): Cannot exceed 128 KB") and
 * §3.2 ("Server value <= 128 KB"). */
static void test_connack_v5_max_packet_size_within_128k(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V5, .client_id = "dev1", .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    iotc_mqtt_connack a = h_expect_connack(h, c, 0);
    assert_true(a.props.present & IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_PACKET_SIZE));
    if (a.props.maximum_packet_size > 131072u)
        fail_msg("CONNACK Maximum Packet Size %u is over 128 KB (aws-broker.md §2, §3.2)",
                 a.props.maximum_packet_size);
}

static void test_connect_v5_empty_id_assigned(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V5, .client_id = "", .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    iotc_mqtt_connack a = h_expect_connack(h, c, 0);
    assert_true(a.props.present & IOTC_PROP_BIT(IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER));
    char *id = h_strdup_bytes(a.props.assigned_client_identifier);
    bool prefix = strncmp(id, "$GEN/", 5) == 0;
    size_t len = strlen(id);
    sim_conn_id found = sim_engine_find_client(h->e, id);
    /* A UUID: 8-4-4-4-12 hex digits. */
    bool uuid = len == 41;
    for (size_t i = 5; uuid && i < len; i++) {
        size_t k = i - 5;
        bool dash = k == 8 || k == 13 || k == 18 || k == 23;
        uuid = dash ? id[i] == '-' : strchr("0123456789abcdef", id[i]) != NULL;
    }
    free(id);
    assert_true(prefix);
    assert_true(uuid);
    assert_int_equal(found, c->id);
    assert_false(h_closed(c));
}

static void test_connect_v3_empty_id_persistent_refused(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V3, .client_id = "", .clean = false, .keepalive = 60};
    h_send_connect(h, c, &o);
    iotc_mqtt_connack a = h_expect_connack(h, c, IOTC_V3_CONNACK_ID_REJECTED);
    assert_false(a.session_present);
    h_expect_none(h, c);
    assert_true(h_closed(c));
}

static void client_id_too_long(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    char id[130];
    memset(id, 'x', sizeof id);
    id[129] = 0; /* 129 bytes */
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = v, .client_id = id, .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, v == V5 ? IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID : IOTC_V3_CONNACK_ID_REJECTED);
    h_expect_none(h, c);
    assert_true(h_closed(c));
    /* 128 bytes is fine. */
    id[128] = 0;
    h_conn *d = h_open(h);
    assert_false(h_connect_ok(h, d, v, id, true));
}

static void test_connect_client_id_too_long_v3(void **state)
{
    client_id_too_long(state, V3);
}

static void test_connect_client_id_too_long_v5(void **state)
{
    client_id_too_long(state, V5);
}

static void gen_prefix_refused(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "$GEN/0b5c1e0c-8f3e-4c55-9d58-0d0b7c6e1f00", .clean = true,
                        .keepalive = 60};
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, v == V5 ? IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID : IOTC_V3_CONNACK_ID_REJECTED);
    h_expect_none(h, c);
    assert_true(h_closed(c));
}

static void test_connect_gen_prefix_refused_v3(void **state)
{
    gen_prefix_refused(state, V3);
}

static void test_connect_gen_prefix_refused_v5(void **state)
{
    gen_prefix_refused(state, V5);
}

static void test_connect_packet_before_connect_closes(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_open(h);
    h_pingreq(h, a);
    assert_true(h_closed(a));
    h_expect_none(h, a);
    assert_int_equal(a->nsent, 0);

    h_conn *b = h_open(h);
    h_pub(h, b, "t/1", "x", 0, false);
    assert_true(h_closed(b));
    assert_int_equal(b->nsent, 0);

    h_conn *c = h_open(h);
    h_subscribe(h, c, "t/1", 0);
    assert_true(h_closed(c));
    assert_int_equal(c->nsent, 0);

    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.sessions, 0);
}

static void second_connect(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_client(h, v, "dev1");
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60};
    size_t mark = h->nlog;
    h_send_connect(h, c, &o);
    h_expect_server_close(h, c, IOTC_RC_PROTOCOL_ERROR);
    /* CLIENT_ERROR per the lifecycle table (§1.5). */
    bool seen = false;
    for (size_t i = mark; i < h->nlog; i++)
        if (h_jstr_is(h->log[i], "what", "close") && h_jstr_is(h->log[i], "reason", "CLIENT_ERROR"))
            seen = true;
    assert_true(seen);
}

static void test_connect_second_connect_v3(void **state)
{
    second_connect(state, V3);
}

static void test_connect_second_connect_v5(void **state)
{
    second_connect(state, V5);
}

static void test_connect_timeout(void **state)
{
    H *h = *state;
    h->cfg.connect_timeout_ms = 10000;
    h_start(h);
    uint64_t t0 = h->now;
    h_conn *idle = h_open(h);
    h_conn *ok = h_open(h);
    h_advance_to(h, t0 + 5000);
    assert_false(h_connect_ok(h, ok, V3, "dev1", true));
    h_advance_to(h, t0 + 9999);
    assert_false(h_closed(idle));
    h_advance_to(h, t0 + 10000);
    assert_true(h_closed(idle));
    assert_int_equal(idle->closed_at, t0 + 10000);
    assert_int_equal(idle->nsent, 0);
    h_advance_to(h, t0 + 30000);
    assert_false(h_closed(ok));
}

/* A CONNECT of protocol level 3 ("MQIsdp", MQTT 3.1): return code 1, then close. */
static void test_connect_unsupported_level_3(void **state)
{
    H *h = *state;
    h_start(h);
    static const uint8_t mqisdp[] = {0x10, 16,  0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03,
                                     0x02, 0x00, 0x3C, 0x00, 0x02, 'a', 'b'};
    static const uint8_t mqtt3[] = {0x10, 14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x03, 0x02, 0x00, 0x3C, 0x00, 0x02, 'a', 'b'};
    const uint8_t *pk[2] = {mqisdp, mqtt3};
    size_t len[2] = {sizeof mqisdp, sizeof mqtt3};
    for (int i = 0; i < 2; i++) {
        h_conn *c = h_open(h);
        h_input(h, c, pk[i], len[i]);
        iotc_mqtt_connack a = h_expect_connack(h, c, IOTC_V3_CONNACK_BAD_PROTOCOL);
        assert_false(a.session_present);
        h_expect_none(h, c);
        assert_true(h_closed(c));
    }
}

static void malformed(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    /* PUBLISH with QoS 3 (both QoS bits set). */
    static const uint8_t qos3[] = {0x36, 0x07, 0x00, 0x03, 't', '/', '1', 0x00, 0x01};
    h_conn *a = h_client(h, v, "dev1");
    h_input(h, a, qos3, sizeof qos3);
    h_expect_server_close(h, a, IOTC_RC_MALFORMED_PACKET);
    /* SUBSCRIBE with fixed-header flags 0000 instead of 0010 (§1.13). */
    static const uint8_t subflags[] = {0x80, 0x08, 0x00, 0x01, 0x00, 0x03, 't', '/', '1', 0x00};
    static const uint8_t subflags5[] = {0x80, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 't', '/', '1', 0x00};
    h_conn *b = h_client(h, v, "dev2");
    if (v == V5)
        h_input(h, b, subflags5, sizeof subflags5);
    else
        h_input(h, b, subflags, sizeof subflags);
    h_expect_server_close(h, b, IOTC_RC_MALFORMED_PACKET);
}

static void test_malformed_packet_v3(void **state)
{
    malformed(state, V3);
}

static void test_malformed_packet_v5(void **state)
{
    malformed(state, V5);
}

/* ---- keep-alive (§1.10) -------------------------------------------------- */

static void keepalive_clamp(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    static const struct {
        uint16_t asked, got;
    } cases[] = {{0, 1200}, {10, 30}, {5000, 1200}, {60, 60}, {30, 30}, {1200, 1200}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[16];
        snprintf(id, sizeof id, "ka%zu", i);
        h_conn *c = h_open(h);
        h_connect_opts o = {.version = v, .client_id = id, .clean = true, .keepalive = cases[i].asked};
        uint64_t t0 = h->now;
        h_send_connect(h, c, &o);
        iotc_mqtt_connack a = h_expect_connack(h, c, 0);
        if (v == V5) {
            bool has = a.props.present & IOTC_PROP_BIT(IOTC_PROP_SERVER_KEEP_ALIVE);
            if (cases[i].asked != cases[i].got) {
                assert_true(has);
                assert_int_equal(a.props.server_keep_alive, cases[i].got);
            } else {
                assert_false(has);
            }
        }
        uint64_t dl = t0 + (uint64_t)cases[i].got * 1500u;
        h_advance_to(h, dl - 1);
        if (h_closed(c))
            fail_msg("keep-alive %u (clamped %u) closed before %llu ms", cases[i].asked, cases[i].got,
                     (unsigned long long)(dl - t0));
        h_expect_none(h, c);
        h_advance_to(h, dl);
        if (!h_closed(c))
            fail_msg("keep-alive %u (clamped %u) not closed at %llu ms", cases[i].asked, cases[i].got,
                     (unsigned long long)(dl - t0));
        assert_int_equal(c->closed_at, dl);
        h_expect_server_close(h, c, IOTC_RC_KEEP_ALIVE_TIMEOUT);
    }
}

static void test_keepalive_clamp_v3(void **state)
{
    keepalive_clamp(state, V3);
}

static void test_keepalive_clamp_v5(void **state)
{
    keepalive_clamp(state, V5);
}

static void keepalive_pingreq(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 30};
    uint64_t t0 = h->now;
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, 0);
    h_advance_to(h, t0 + 40000);
    h_pingreq(h, c);
    h_expect(h, c, IOTC_MQTT_PINGRESP, NULL);
    h_advance_to(h, t0 + 40000 + 45000 - 1);
    assert_false(h_closed(c));
    h_advance_to(h, t0 + 40000 + 45000);
    assert_true(h_closed(c));
    h_expect_server_close(h, c, IOTC_RC_KEEP_ALIVE_TIMEOUT);
}

static void test_keepalive_pingreq_resets_v3(void **state)
{
    keepalive_pingreq(state, V3);
}

static void test_keepalive_pingreq_resets_v5(void **state)
{
    keepalive_pingreq(state, V5);
}

/* Any packet from the client counts as traffic (§1.10: PUBLISH, SUBSCRIBE, PINGREQ, PUBACK). */
static void test_keepalive_publish_resets(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V3, .client_id = "dev1", .clean = true, .keepalive = 30};
    uint64_t t0 = h->now;
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, 0);
    h_advance_to(h, t0 + 44000);
    h_pub(h, c, "t/1", "x", 0, false);
    h_advance_to(h, t0 + 44000 + 44999);
    assert_false(h_closed(c));
    h_advance_to(h, t0 + 44000 + 45000);
    assert_true(h_closed(c));
}

static void test_keepalive_timeout_lifecycle_and_will(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/presence/+/+");
    h_sub_ok(h, w, "will/#", 0);
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = V3, .client_id = "dev1", .clean = true, .keepalive = 30, .will = true,
                        .will_topic = "will/dev1", .will_payload = "gone", .will_qos = 0};
    uint64_t t0 = h->now;
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, 0);
    cJSON *ev = h_expect_event(h, w, "$aws/events/presence/connected/dev1");
    cJSON_Delete(ev);
    h_advance_to(h, t0 + 45000);
    assert_true(h_closed(c));
    bool will = false, disc = false;
    iotc_mqtt_packet p;
    while (h_pop(h, w, &p)) {
        assert_int_equal(p.type, IOTC_MQTT_PUBLISH);
        if (h_bytes_eq(p.u.publish.topic, "will/dev1")) {
            h_assert_bytes(p.u.publish.payload, "gone");
            will = true;
        } else {
            h_assert_bytes(p.u.publish.topic, "$aws/events/presence/disconnected/dev1");
            char *s = h_strdup_bytes(p.u.publish.payload);
            ev = cJSON_Parse(s);
            free(s);
            assert_non_null(ev);
            bool ok = h_jstr_is(ev, "disconnectReason", "MQTT_KEEP_ALIVE_TIMEOUT") &&
                      cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ev, "clientInitiatedDisconnect"));
            cJSON_Delete(ev);
            assert_true(ok);
            disc = true;
        }
    }
    assert_true(will);
    assert_true(disc);
}

/* ---- takeover (§1.4) ----------------------------------------------------- */

static void takeover(void **state, sim_profile profile, iotc_mqtt_version v)
{
    H *h = *state;
    h_profile(h, profile);
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/presence/+/+");
    h_sub_ok(h, w, "will/#", 0);
    h_conn *a = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "will/dev1", .will_payload = "old gone", .will_qos = 0};
    h_send_connect(h, a, &o);
    h_expect_connack(h, a, 0);
    cJSON_Delete(h_expect_event(h, w, "$aws/events/presence/connected/dev1"));
    h_advance(h, 1000);

    h_conn *b = h_open(h);
    o.will = false;
    h_send_connect(h, b, &o);
    h_expect_connack(h, b, 0);
    assert_false(h_closed(b));
    assert_int_equal(sim_engine_find_client(h->e, "dev1"), b->id);

    if (profile == SIM_PROFILE_CLASSIC)
        h_expect_connack(h, a, 0); /* "a CONNACK message will be sent to both clients" [DOC-HIST] */
    h_expect_server_close(h, a, IOTC_RC_SESSION_TAKEN_OVER);

    bool will = false, disc = false, conn = false;
    iotc_mqtt_packet p;
    while (h_pop(h, w, &p)) {
        assert_int_equal(p.type, IOTC_MQTT_PUBLISH);
        if (h_bytes_eq(p.u.publish.topic, "will/dev1")) {
            h_assert_bytes(p.u.publish.payload, "old gone");
            will = true;
            continue;
        }
        char *s = h_strdup_bytes(p.u.publish.payload);
        cJSON *ev = cJSON_Parse(s);
        free(s);
        assert_non_null(ev);
        if (h_bytes_eq(p.u.publish.topic, "$aws/events/presence/disconnected/dev1")) {
            bool ok = h_jstr_is(ev, "disconnectReason", "DUPLICATE_CLIENTID") &&
                      cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ev, "clientInitiatedDisconnect")) &&
                      h_jnum(ev, "versionNumber") == 1;
            cJSON_Delete(ev);
            assert_true(ok);
            disc = true;
        } else {
            h_assert_bytes(p.u.publish.topic, "$aws/events/presence/connected/dev1");
            bool ok = h_jnum(ev, "versionNumber") == 2;
            cJSON_Delete(ev);
            assert_true(ok);
            conn = true;
        }
    }
    assert_true(will);
    assert_true(disc);
    assert_true(conn);
}

static void test_takeover_classic_v3(void **state)
{
    takeover(state, SIM_PROFILE_CLASSIC, V3);
}

static void test_takeover_classic_v5(void **state)
{
    takeover(state, SIM_PROFILE_CLASSIC, V5);
}

static void test_takeover_current_v3(void **state)
{
    takeover(state, SIM_PROFILE_CURRENT, V3);
}

static void test_takeover_current_v5(void **state)
{
    takeover(state, SIM_PROFILE_CURRENT, V5);
}

/* §2: 1 connect per second per client id. */
static void connect_rate(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_client(h, v, "dev1");
    h_advance(h, 999);
    h_conn *b = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60};
    h_send_connect(h, b, &o);
    if (v == V5)
        h_expect_connack(h, b, IOTC_RC_QUOTA_EXCEEDED);
    h_expect_none(h, b);
    assert_true(h_closed(b));
    /* The established connection is untouched. */
    assert_false(h_closed(a));
    h_expect_none(h, a);
    assert_int_equal(sim_engine_find_client(h->e, "dev1"), a->id);
    /* A second later it goes through (and takes over). */
    h_advance(h, 1000);
    h_conn *c = h_open(h);
    assert_false(h_connect_ok(h, c, v, "dev1", true));
    assert_true(h_closed(a));
    assert_int_equal(sim_engine_find_client(h->e, "dev1"), c->id);
}

static void test_connect_rate_v3(void **state)
{
    connect_rate(state, V3);
}

static void test_connect_rate_v5(void **state)
{
    connect_rate(state, V5);
}

static void test_connect_rate_allows_after_1000ms(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *a = h_client(h, V5, "dev1");
    h_advance(h, 1000);
    h_conn *b = h_client(h, V5, "dev1");
    assert_true(h_closed(a));
    assert_false(h_closed(b));
    /* Other client ids are not limited. */
    h_conn *c = h_client(h, V5, "dev2");
    h_conn *d = h_client(h, V3, "dev3");
    assert_false(h_closed(c));
    assert_false(h_closed(d));
}

/* ---- lifecycle events (§4.1, §4.3) --------------------------------------- */

static void test_lifecycle_connected_disconnected(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/presence/+/+");
    sim_conn_info info = {H_PRINCIPAL, NULL, "192.0.2.7", "mqtts", false};
    h_conn *c = h_open_info(h, &info);
    assert_false(h_connect_ok(h, c, V3, "dev1", true));
    cJSON *ev = h_expect_event(h, w, "$aws/events/presence/connected/dev1");
    char sid[64] = "";
    bool ok = h_jstr_is(ev, "clientId", "dev1") && h_jstr_is(ev, "eventType", "connected") &&
              h_jstr_is(ev, "principalIdentifier", H_PRINCIPAL) && h_jstr_is(ev, "ipAddress", "192.0.2.7") &&
              h_jnum(ev, "versionNumber") == 1 && h_jnum(ev, "timestamp") == (double)H_WALL_MS &&
              h_jstr(ev, "sessionIdentifier") && strlen(h_jstr(ev, "sessionIdentifier")) == 36;
    if (ok)
        snprintf(sid, sizeof sid, "%s", h_jstr(ev, "sessionIdentifier"));
    cJSON_Delete(ev);
    assert_true(ok);

    h_disconnect(h, c, 0, NULL);
    assert_true(h_closed(c));
    h_expect_none(h, c);
    ev = h_expect_event(h, w, "$aws/events/presence/disconnected/dev1");
    ok = h_jstr_is(ev, "clientId", "dev1") && h_jstr_is(ev, "eventType", "disconnected") &&
         h_jstr_is(ev, "sessionIdentifier", sid) && h_jstr_is(ev, "principalIdentifier", H_PRINCIPAL) &&
         h_jstr_is(ev, "disconnectReason", "CLIENT_INITIATED_DISCONNECT") &&
         cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "clientInitiatedDisconnect")) &&
         h_jnum(ev, "versionNumber") == 1 && !cJSON_GetObjectItemCaseSensitive(ev, "ipAddress");
    cJSON_Delete(ev);
    assert_true(ok);

    /* The next connection of the client id has a larger version number. */
    h_advance(h, 1000);
    h_conn *d = h_client(h, V5, "dev1");
    ev = h_expect_event(h, w, "$aws/events/presence/connected/dev1");
    ok = h_jnum(ev, "versionNumber") > 1;
    cJSON_Delete(ev);
    assert_true(ok);
    h_lost(h, d);
    ev = h_expect_event(h, w, "$aws/events/presence/disconnected/dev1");
    ok = h_jnum(ev, "versionNumber") > 1 && h_jstr_is(ev, "disconnectReason", "CONNECTION_LOST") &&
         cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ev, "clientInitiatedDisconnect"));
    cJSON_Delete(ev);
    assert_true(ok);
    h_expect_none(h, w);
}

/* versionNumber goes back to 0 (here: starts again at 1) after the client has
 * been away about an hour (aws-broker.md §4.1); until then it only grows.  The
 * same sweep keeps one-off client ids from growing the broker forever. */
static void test_lifecycle_version_number_forgotten_after_an_hour(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/presence/connected/+");
    h_conn *c = h_client(h, V3, "dev1");
    cJSON *ev = h_expect_event(h, w, "$aws/events/presence/connected/dev1");
    bool ok = h_jnum(ev, "versionNumber") == 1;
    cJSON_Delete(ev);
    assert_true(ok);
    h_disconnect(h, c, 0, NULL);
    h_advance(h, 30 * 60 * 1000); /* half an hour away: still remembered */
    w = h_watcher(h, "watcher2", "$aws/events/presence/connected/+"); /* the first timed out */
    c = h_client(h, V3, "dev1");
    ev = h_expect_event(h, w, "$aws/events/presence/connected/dev1");
    ok = h_jnum(ev, "versionNumber") == 2;
    cJSON_Delete(ev);
    assert_true(ok);
    h_disconnect(h, c, 0, NULL);
    h_advance(h, 61 * 60 * 1000); /* over an hour since that CONNECT, no session */
    w = h_watcher(h, "watcher3", "$aws/events/presence/connected/+");
    c = h_client(h, V3, "dev1");
    ev = h_expect_event(h, w, "$aws/events/presence/connected/dev1");
    ok = h_jnum(ev, "versionNumber") == 1;
    cJSON_Delete(ev);
    assert_true(ok);
}

static bool topics_are(const cJSON *ev, const char *const *want, size_t n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(ev, "topics");
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetArrayItem(a, (int)i);
        if (!cJSON_IsString(t) || strcmp(t->valuestring, want[i]) != 0)
            return false;
    }
    return true;
}

static void test_lifecycle_subscribed_unsubscribed(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/subscriptions/+/+");
    h_conn *c = h_client(h, V5, "dev1");
    iotc_mqtt_sub subs[2];
    memset(subs, 0, sizeof subs);
    subs[0].filter = iotc_mqtt_str("a/b");
    subs[1].filter = iotc_mqtt_str("c/#");
    subs[1].qos = 1;
    h_subscribe_n(h, c, 7, subs, 2, NULL);
    h_expect(h, c, IOTC_MQTT_SUBACK, NULL);
    cJSON *ev = h_expect_event(h, w, "$aws/events/subscriptions/subscribed/dev1");
    static const char *const both[] = {"a/b", "c/#"};
    bool ok = h_jstr_is(ev, "clientId", "dev1") && h_jstr_is(ev, "eventType", "subscribed") &&
              h_jstr_is(ev, "principalIdentifier", H_PRINCIPAL) && topics_are(ev, both, 2);
    cJSON_Delete(ev);
    assert_true(ok);
    h_unsubscribe(h, c, "a/b");
    h_expect(h, c, IOTC_MQTT_UNSUBACK, NULL);
    ev = h_expect_event(h, w, "$aws/events/subscriptions/unsubscribed/dev1");
    static const char *const one[] = {"a/b"};
    ok = h_jstr_is(ev, "eventType", "unsubscribed") && topics_are(ev, one, 1);
    cJSON_Delete(ev);
    assert_true(ok);
    h_expect_none(h, w);
}

static void test_lifecycle_none_for_wildcard_client_ids(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/#");
    const char *ids[] = {"dev+1", "dev#2"};
    for (size_t i = 0; i < 2; i++) {
        h_conn *c = h_client(h, i ? V5 : V3, ids[i]);
        h_sub_ok(h, c, "a/b", 0);
        h_unsubscribe(h, c, "a/b");
        h_expect(h, c, IOTC_MQTT_UNSUBACK, NULL);
        h_disconnect(h, c, 0, NULL);
        assert_true(h_closed(c));
        h_expect_none(h, w);
    }
    /* The watcher does see an ordinary client. */
    h_conn *d = h_client(h, V3, "dev3");
    cJSON_Delete(h_expect_event(h, w, "$aws/events/presence/connected/dev3"));
    (void)d;
}

/* ---- faults (the control API) -------------------------------------------- */

static void refuse_until(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    uint64_t until = h->now + 5000;
    sim_engine_refuse_until(h->e, until);
    h_tick(h);
    h_conn *a = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60};
    h_send_connect(h, a, &o);
    h_expect_connack(h, a, v == V5 ? IOTC_RC_SERVER_UNAVAILABLE : IOTC_V3_CONNACK_SERVER_UNAVAILABLE);
    h_expect_none(h, a);
    assert_true(h_closed(a));
    h_advance_to(h, until - 1);
    h_conn *b = h_open(h);
    h_send_connect(h, b, &o);
    h_expect_connack(h, b, v == V5 ? IOTC_RC_SERVER_UNAVAILABLE : IOTC_V3_CONNACK_SERVER_UNAVAILABLE);
    assert_true(h_closed(b));
    h_advance_to(h, until);
    h_conn *c = h_open(h);
    assert_false(h_connect_ok(h, c, v, "dev1", true));
}

static void test_fault_refuse_until_v3(void **state)
{
    refuse_until(state, V3);
}

static void test_fault_refuse_until_v5(void **state)
{
    refuse_until(state, V5);
}

static void fault_drop(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "will/#");
    h_conn *c = h_open(h);
    h_connect_opts o = {.version = v, .client_id = "dev1", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "will/dev1", .will_payload = "dropped", .will_qos = 1};
    h_send_connect(h, c, &o);
    h_expect_connack(h, c, 0);
    assert_true(sim_engine_drop(h->e, c->id, IOTC_RC_ADMINISTRATIVE_ACTION, "test", h->now));
    h_tick(h);
    h_expect_server_close(h, c, IOTC_RC_ADMINISTRATIVE_ACTION);
    h_expect_pub(h, w, "will/dev1", "dropped", 0);
    assert_false(sim_engine_drop(h->e, c->id, 0, "again", h->now));
}

static void test_fault_drop_v3(void **state)
{
    fault_drop(state, V3);
}

static void test_fault_drop_v5(void **state)
{
    fault_drop(state, V5);
}

static void test_fault_blackhole(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *other = h_client(h, V3, "other");
    h_sub_ok(h, other, "x/#", 0);
    h_conn *p = h_client(h, V3, "pub");
    assert_true(sim_engine_blackhole(h->e, s->id, true));
    h_tick(h);
    size_t sent = s->nsent;
    h_pub(h, p, "t/1", "m1", 0, false);
    assert_int_equal(s->nsent, sent); /* nothing sent */
    /* Its input is not read either: not routed, no PINGRESP. */
    h_pub(h, s, "x/1", "from the hole", 0, false);
    h_pingreq(h, s);
    h_expect_none(h, other);
    assert_int_equal(s->nsent, sent);
    assert_false(h_closed(s));
    assert_true(sim_engine_blackhole(h->e, s->id, false));
    h_tick(h);
    h_pub(h, p, "t/2", "m2", 0, false);
    h_expect_pub(h, s, "t/2", "m2", 0);
    h_expect_none(h, s);
    h_pub(h, s, "x/2", "back", 0, false);
    h_expect_pub(h, other, "x/2", "back", 0);
    assert_false(sim_engine_blackhole(h->e, 9999, true));
}

static void test_fault_duplicate_next_qos0(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    sim_engine_duplicate_next_qos0(h->e, 2);
    h_tick(h);
    /* A QoS 1 delivery does not use up a duplicate. */
    h_pub1_ok(h, p, "t/q1", "one");
    uint16_t pid = h_expect_pub(h, s, "t/q1", "one", 1);
    h_puback(h, s, pid);
    h_expect_none(h, s);
    h_pub(h, p, "t/a", "a", 0, false);
    h_pub(h, p, "t/b", "b", 0, false);
    h_pub(h, p, "t/c", "c", 0, false);
    h_pub(h, p, "t/d", "d", 0, false);
    h_expect_pub(h, s, "t/a", "a", 0);
    h_expect_pub(h, s, "t/a", "a", 0);
    h_expect_pub(h, s, "t/b", "b", 0);
    h_expect_pub(h, s, "t/b", "b", 0);
    h_expect_pub(h, s, "t/c", "c", 0);
    h_expect_pub(h, s, "t/d", "d", 0);
    h_expect_none(h, s);
}

static void test_fault_qos0_dup_permille_1000(void **state)
{
    H *h = *state;
    h->cfg.qos0_dup_permille = 1000;
    h_start(h);
    h_conn *s = h_client(h, V5, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    for (int i = 0; i < 5; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        h_pub(h, p, "t/x", pl, 0, false);
        iotc_mqtt_packet a;
        h_expect_pub_p(h, s, "t/x", pl, 0, &a);
        assert_false(a.u.publish.dup); /* "the DUP flag is not set" (§1.2) */
        h_expect_pub_p(h, s, "t/x", pl, 0, &a);
        assert_false(a.u.publish.dup);
        h_expect_none(h, s);
    }
    /* QoS 1 is not duplicated. */
    h_pub1_ok(h, p, "t/y", "q1");
    h_expect_pub(h, s, "t/y", "q1", 1);
    h_expect_none(h, s);
}

/* [AWS-LIFECYCLE-FAILED] a principal that may not connect (an INACTIVE
 * certificate) is refused (MQTT 5: CONNACK 0x87; 3.1.1: closed with no
 * CONNACK, aws-broker.md §6.6), and connect_failed says why. */
static void denied_principal(void **state, iotc_mqtt_version v)
{
    H *h = *state;
    h_start(h);
    h_conn *w = h_watcher(h, "watcher", "$aws/events/presence/+/+");
    sim_conn_info info = {H_PRINCIPAL, "thing-9", "192.0.2.9", "mqtts", true};
    h_conn *c = h_open_info(h, &info);
    h_connect_opts o = {.version = v, .client_id = "inactive-dev", .clean = true, .keepalive = 60};
    h_send_connect(h, c, &o);
    if (v == V5)
        h_expect_connack(h, c, IOTC_RC_NOT_AUTHORIZED);
    else
        h_expect_none(h, c);
    assert_true(h_closed(c));
    iotc_mqtt_packet m;
    h_expect(h, w, IOTC_MQTT_PUBLISH, &m);
    h_assert_bytes(m.u.publish.topic, "$aws/events/presence/connect_failed/inactive-dev");
    char *json = h_strdup_bytes(m.u.publish.payload);
    cJSON *j = cJSON_Parse(json);
    free(json);
    assert_non_null(j);
    assert_true(h_jstr_is(j, "eventType", "connect_failed"));
    assert_true(h_jstr_is(j, "clientId", "inactive-dev"));
    assert_true(h_jstr_is(j, "connectFailureReason", "AUTHORIZATION_FAILED"));
    assert_true(h_jstr_is(j, "principalIdentifier", H_PRINCIPAL));
    assert_true(h_jstr_is(j, "ipAddress", "192.0.2.9"));
    assert_true(h_jstr_is(j, "thingName", "thing-9"));
    cJSON_Delete(j);
    /* No connected or disconnected event: it never connected. */
    h_expect_none(h, w);
}

static void test_denied_principal_v3(void **state)
{
    denied_principal(state, V3);
}

static void test_denied_principal_v5(void **state)
{
    denied_principal(state, V5);
}

/* [AWS-ORDER] with reorder_permille 1000 every other delivery is held back
 * and overtaken by the next one; a last one goes out after reorder_hold_ms. */
static void test_deviation_reorder(void **state)
{
    H *h = *state;
    h->cfg.reorder_permille = 1000;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 0);
    h_conn *p = h_client(h, V3, "pub");
    h_pub(h, p, "t/1", "one", 0, false);
    h_expect_none(h, s); /* held back */
    h_pub(h, p, "t/2", "two", 0, false);
    h_expect_pub(h, s, "t/2", "two", 0);
    h_expect_pub(h, s, "t/1", "one", 0);
    h_pub(h, p, "t/3", "three", 0, false);
    h_expect_none(h, s);
    h_advance(h, h->cfg.reorder_hold_ms - 1);
    h_expect_none(h, s);
    h_advance(h, 1);
    h_expect_pub(h, s, "t/3", "three", 0);
    assert_true(h_log_count(h, "decision", "reordered") >= 2);
}

/* A held-back QoS 1 delivery is owed to a persistent session that goes away. */
static void test_deviation_reorder_survives_disconnect(void **state)
{
    H *h = *state;
    h->cfg.reorder_permille = 1000;
    h_start(h);
    h_conn *s = h_open(h);
    h_connect_persistent(h, s, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    h_pub1_ok(h, p, "t/1", "one");
    h_expect_none(h, s);
    h_lost(h, s);
    h_advance(h, 1000);
    h_conn *s2 = h_open(h);
    h_connect_persistent(h, s2, V3, "sub");
    h_advance(h, 10);
    h_expect_pub(h, s2, "t/1", "one", 1);
}

/* The control API's "delay deliveries" fault. */
static void test_fault_delay_deliveries(void **state)
{
    H *h = *state;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *p = h_client(h, V3, "pub");
    sim_engine_delay_deliveries(h->e, 0, 500, h->now);
    h_tick(h);
    h_pub1_ok(h, p, "t/1", "late");
    h_expect_none(h, s);
    h_advance(h, 499);
    h_expect_none(h, s);
    h_advance(h, 1);
    h_expect_pub(h, s, "t/1", "late", 1);
}

static void test_fault_suback_delay(void **state)
{
    H *h = *state;
    h->cfg.suback_delay_ms = 500;
    h_start(h);
    h_conn *s = h_client(h, V3, "sub");
    h_conn *p = h_client(h, V3, "pub");
    uint64_t t0 = h->now;
    h_sub_ok(h, s, "t/#", 0);
    h_advance_to(h, t0 + 100);
    h_pub(h, p, "t/1", "early", 0, false);
    h_expect_none(h, s);
    h_advance_to(h, t0 + 499);
    h_expect_none(h, s);
    h_advance_to(h, t0 + 500);
    h_expect_pub(h, s, "t/1", "early", 0);
    assert_int_equal(s->last_t, t0 + 500);
    h_pub(h, p, "t/2", "later", 0, false);
    h_expect_pub(h, s, "t/2", "later", 0);
}

/* ---- memory --------------------------------------------------------------- */

/* The engine is freed with connections in every state, sessions offline and
 * online, queued and in-flight messages and retained ones (Valgrind checks). */
static void test_free_with_everything_open(void **state)
{
    H *h = *state;
    h_profile(h, SIM_PROFILE_CURRENT);
    h->cfg.max_inflight = 2;
    h_start(h);
    h_open(h); /* never sends CONNECT */
    h_conn *half = h_open(h);
    static const uint8_t partial[] = {0x10, 0x20, 0x00, 0x04, 'M'};
    h_input(h, half, partial, sizeof partial);
    h_conn *s = h_open(h);
    h_connect_persistent(h, s, V3, "sub");
    h_sub_ok(h, s, "t/#", 1);
    h_conn *off = h_open(h);
    h_connect_persistent(h, off, V5, "off");
    h_sub_ok(h, off, "t/#", 1);
    h_lost(h, off);
    h_conn *p = h_open(h);
    h_connect_opts o = {.version = V5, .client_id = "pub", .clean = true, .keepalive = 60, .will = true,
                        .will_topic = "will/pub", .will_payload = "x", .will_qos = 1};
    h_send_connect(h, p, &o);
    h_expect_connack(h, p, 0);
    for (int i = 0; i < 5; i++)
        h_pub(h, p, "t/1", "m", 1, i == 0);
    sim_stats st;
    sim_engine_stats(h->e, &st);
    assert_true(st.inflight >= 2);
    assert_true(st.queued >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_connect_session_present_v3),
        H_TEST(test_connect_session_present_v5),
        H_TEST(test_connack_v5_properties_classic),
        H_TEST(test_connack_v5_properties_current),
        H_TEST(test_connack_v5_max_packet_size_within_128k),
        H_TEST(test_connect_v5_empty_id_assigned),
        H_TEST(test_connect_v3_empty_id_persistent_refused),
        H_TEST(test_connect_client_id_too_long_v3),
        H_TEST(test_connect_client_id_too_long_v5),
        H_TEST(test_connect_gen_prefix_refused_v3),
        H_TEST(test_connect_gen_prefix_refused_v5),
        H_TEST(test_connect_packet_before_connect_closes),
        H_TEST(test_connect_second_connect_v3),
        H_TEST(test_connect_second_connect_v5),
        H_TEST(test_connect_timeout),
        H_TEST(test_connect_unsupported_level_3),
        H_TEST(test_malformed_packet_v3),
        H_TEST(test_malformed_packet_v5),
        H_TEST(test_keepalive_clamp_v3),
        H_TEST(test_keepalive_clamp_v5),
        H_TEST(test_keepalive_pingreq_resets_v3),
        H_TEST(test_keepalive_pingreq_resets_v5),
        H_TEST(test_keepalive_publish_resets),
        H_TEST(test_keepalive_timeout_lifecycle_and_will),
        H_TEST(test_takeover_classic_v3),
        H_TEST(test_takeover_classic_v5),
        H_TEST(test_takeover_current_v3),
        H_TEST(test_takeover_current_v5),
        H_TEST(test_connect_rate_v3),
        H_TEST(test_connect_rate_v5),
        H_TEST(test_connect_rate_allows_after_1000ms),
        H_TEST(test_lifecycle_connected_disconnected),
        H_TEST(test_lifecycle_subscribed_unsubscribed),
        H_TEST(test_lifecycle_none_for_wildcard_client_ids),
        H_TEST(test_fault_refuse_until_v3),
        H_TEST(test_fault_refuse_until_v5),
        H_TEST(test_fault_drop_v3),
        H_TEST(test_fault_drop_v5),
        H_TEST(test_fault_blackhole),
        H_TEST(test_fault_duplicate_next_qos0),
        H_TEST(test_fault_qos0_dup_permille_1000),
        H_TEST(test_lifecycle_version_number_forgotten_after_an_hour),
        H_TEST(test_denied_principal_v3),
        H_TEST(test_denied_principal_v5),
        H_TEST(test_deviation_reorder),
        H_TEST(test_deviation_reorder_survives_disconnect),
        H_TEST(test_fault_delay_deliveries),
        H_TEST(test_fault_suback_delay),
        H_TEST(test_free_with_everything_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
