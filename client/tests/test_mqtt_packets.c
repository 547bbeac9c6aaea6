/*
 * Codec tests, valid packets: every control packet type of MQTT 3.1.1 (OASIS
 * 2014) and MQTT 5.0 (OASIS 2019), from bytes written by hand from the specs.
 *
 * For each sample: decode -> expected fields; encode the hand-built packet ->
 * the same bytes; encode -> decode -> same fields; and decode -> encode from
 * the decoded (raw) lists -> the same bytes.  Inside MQTT 5 property blocks the
 * encoder may order single-valued properties freely (the spec fixes no order);
 * user properties and subscription identifiers must keep theirs (§3.3.2.3.7:
 * "the order of User Properties ... MUST be maintained").
 */
#include "helpers/mqtt_tu.h"
#include "helpers/mqtt_samples.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "iotc/mqtt.h"

#define BIT(id) IOTC_PROP_BIT(IOTC_PROP_##id)

typedef void (*build_fn)(iotc_mqtt_packet *p);

/* The four checks on one sample. */
static void cycle_(const uint8_t *bytes, size_t n, iotc_mqtt_version v, build_fn build, const tu_span *spans,
                   size_t nspans, const char *file, int line)
{
    iotc_mqtt_packet exp, got, again;
    build(&exp);

    tu_decode_ok_(bytes, n, v, &got, file, line);
    tu_packet_eq_(&got, &exp, v, file, line);

    tu_encode_eq_(&exp, v, bytes, n, spans, nspans, file, line);

    uint8_t buf[1024];
    size_t w = 0, used = 0;
    iotc_mqtt_status st = iotc_mqtt_encode(&exp, v, buf, sizeof buf, &w, NULL);
    if (st != IOTC_MQTT_OK)
        _fail(file, line);
    st = iotc_mqtt_decode(buf, w, v, 0, &again, &used, NULL);
    if (st != IOTC_MQTT_OK || used != w) {
        print_error("round trip: decode of the encoding gave %d\n", (int)st);
        _fail(file, line);
    }
    tu_packet_eq_(&again, &exp, v, file, line);

    tu_encode_eq_(&got, v, bytes, n, spans, nspans, file, line);
}
#define cycle(a, v, build) cycle_(a, sizeof(a), v, build, NULL, 0, __FILE__, __LINE__)
#define cycle_spans(a, v, build, ...)                                                                \
    cycle_(a, sizeof(a), v, build, (const tu_span[]){__VA_ARGS__},                                 \
           sizeof((const tu_span[]){__VA_ARGS__}) / sizeof(tu_span), __FILE__, __LINE__)

#define ENCODE_ONEOF(p, v, ...)                                                                      \
    do {                                                                                             \
        const uint8_t *const *alts_ = (const uint8_t *const[]){__VA_ARGS__};                         \
        size_t n_ = sizeof((const uint8_t *const[]){__VA_ARGS__}) / sizeof(const uint8_t *);         \
        size_t lens_[8];                                                                             \
        for (size_t i_ = 0; i_ < n_; i_++)                                                           \
            lens_[i_] = alt_len(alts_[i_]);                                                          \
        tu_encode_oneof_(p, v, alts_, lens_, n_, __FILE__, __LINE__);                                \
    } while (0)

/* Alternatives are whole packets with a one-byte remaining length. */
static size_t alt_len(const uint8_t *a)
{
    return 2u + a[1];
}

static bool ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* MQTT 5 packets with an optional short form (§3.4.2.1, §3.14.2.1, §3.15.2.1):
 * an encoder may write them either way. */
static bool may_shorten(const tu_sample *s)
{
    return s->version == IOTC_MQTT_V5 &&
           (strstr(s->name, "SHORT") || strstr(s->name, "NOPROPS") || strstr(s->name, "DISCONNECT") ||
            strstr(s->name, "AUTH_EMPTY"));
}

static void init(iotc_mqtt_packet *p, iotc_mqtt_type t)
{
    memset(p, 0, sizeof *p);
    p->type = t;
}

static iotc_mqtt_bytes bin(const void *d, size_t n)
{
    iotc_mqtt_bytes b = {(const uint8_t *)d, n};
    return b;
}

/* ---- CONNECT -------------------------------------------------------------------- */

static void b_v4_connect_min(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNECT);
    p->u.connect.version = IOTC_MQTT_V311;
    p->u.connect.clean_start = true;
    p->u.connect.keep_alive = 60;
    p->u.connect.client_id = iotc_mqtt_str("a");
}

static void b_v4_connect_full(iotc_mqtt_packet *p)
{
    static const uint8_t pw[] = {0x00, 0xFF};
    init(p, IOTC_MQTT_CONNECT);
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V311;
    c->clean_start = true;
    c->keep_alive = 10;
    c->client_id = iotc_mqtt_str("cid");
    c->will = true;
    c->will_qos = 1;
    c->will_retain = true;
    c->will_topic = iotc_mqtt_str("w/t");
    c->will_payload = iotc_mqtt_str("bye");
    c->has_username = true;
    c->username = iotc_mqtt_str("user");
    c->has_password = true;
    c->password = bin(pw, sizeof pw);
}

static void b_v4_connect_user(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNECT);
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V311;
    c->clean_start = false;
    c->keep_alive = 65535;
    c->client_id = iotc_mqtt_str("id");
    c->has_username = true;
    c->username = iotc_mqtt_str("bob");
}

static void b_v4_connect_will(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNECT);
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V311;
    c->clean_start = true;
    c->keep_alive = 0;
    c->client_id = iotc_mqtt_str("");
    c->will = true;
    c->will_qos = 0;
    c->will_topic = iotc_mqtt_str("t");
    c->will_payload = iotc_mqtt_str("");
}

static void b_v5_connect_min(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNECT);
    p->u.connect.version = IOTC_MQTT_V5;
    p->u.connect.clean_start = true;
    p->u.connect.keep_alive = 60;
    p->u.connect.client_id = iotc_mqtt_str("a");
}

static const iotc_mqtt_user_prop connect_users[] = {{BS("k"), BS("v")}, {BS("k"), BS("v2")}};
static const iotc_mqtt_user_prop will_users[] = {{BS("a"), BS("b")}};

static void b_v5_connect_full(iotc_mqtt_packet *p)
{
    static const uint8_t auth[] = {0x01, 0x02}, corr[] = {0xAB, 0xCD};
    init(p, IOTC_MQTT_CONNECT);
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V5;
    c->clean_start = true;
    c->keep_alive = 30;
    c->client_id = iotc_mqtt_str("c1");
    c->will = true;
    c->will_qos = 2;
    c->will_retain = true;
    c->will_topic = iotc_mqtt_str("w");
    c->will_payload = iotc_mqtt_str("bye");
    c->has_username = true;
    c->username = iotc_mqtt_str("u");
    c->has_password = true;
    c->password = iotc_mqtt_str("p");

    iotc_mqtt_props *pr = &c->props;
    pr->present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(RECEIVE_MAXIMUM) | BIT(MAXIMUM_PACKET_SIZE) |
                  BIT(TOPIC_ALIAS_MAXIMUM) | BIT(REQUEST_RESPONSE_INFORMATION) | BIT(REQUEST_PROBLEM_INFORMATION) |
                  BIT(AUTHENTICATION_METHOD) | BIT(AUTHENTICATION_DATA);
    pr->session_expiry_interval = 3600;
    pr->receive_maximum = 20;
    pr->maximum_packet_size = 16384;
    pr->topic_alias_maximum = 8;
    pr->request_response_information = 1;
    pr->request_problem_information = 0;
    pr->authentication_method = iotc_mqtt_str("xyz");
    pr->authentication_data = bin(auth, sizeof auth);
    pr->user = connect_users;
    pr->user_count = 2;

    iotc_mqtt_props *w = &c->will_props;
    w->present = BIT(WILL_DELAY_INTERVAL) | BIT(PAYLOAD_FORMAT_INDICATOR) | BIT(MESSAGE_EXPIRY_INTERVAL) |
                 BIT(CONTENT_TYPE) | BIT(RESPONSE_TOPIC) | BIT(CORRELATION_DATA);
    w->will_delay_interval = 5;
    w->payload_format_indicator = 1;
    w->message_expiry_interval = 60;
    w->content_type = iotc_mqtt_str("text");
    w->response_topic = iotc_mqtt_str("r/t");
    w->correlation_data = bin(corr, sizeof corr);
    w->user = will_users;
    w->user_count = 1;
}

static void b_v5_connect_pass_only(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNECT);
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V5;
    c->clean_start = true;
    c->keep_alive = 0;
    c->client_id = iotc_mqtt_str("a");
    c->has_password = true;
    c->password = iotc_mqtt_str("pw");
}

/* 5.0: Will QoS 1 with a user name and no password; empty Will properties. */
static const uint8_t S_V5_CONNECT_WILL_USER[] = {
    0x10, 0x19, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x8E, 0x00, 0x05, 0x00,
    0x00, 0x01, 'a',
    0x00, 0x00, 0x01, 't', 0x00, 0x02, 'h', 'i',
    0x00, 0x01, 'u'};

static void b_v5_connect_will_user(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNECT);
    iotc_mqtt_connect *c = &p->u.connect;
    c->version = IOTC_MQTT_V5;
    c->clean_start = true;
    c->keep_alive = 5;
    c->client_id = iotc_mqtt_str("a");
    c->will = true;
    c->will_qos = 1;
    c->will_topic = iotc_mqtt_str("t");
    c->will_payload = iotc_mqtt_str("hi");
    c->has_username = true;
    c->username = iotc_mqtt_str("u");
}

static void test_connect_v4(void **state)
{
    (void)state;
    cycle(S_V4_CONNECT_MIN, V4, b_v4_connect_min);
    cycle(S_V4_CONNECT_FULL, V4, b_v4_connect_full);
    cycle(S_V4_CONNECT_USER, V4, b_v4_connect_user);
    cycle(S_V4_CONNECT_WILL, V4, b_v4_connect_will);
}

static void test_connect_v5(void **state)
{
    (void)state;
    cycle(S_V5_CONNECT_MIN, V5, b_v5_connect_min);
    cycle_spans(S_V5_CONNECT_FULL, V5, b_v5_connect_full, {13, 46}, {64, 37});
    cycle(S_V5_CONNECT_WILL_USER, V5, b_v5_connect_will_user);
}

/* MQTT 5 §3.1.2.9: a Password without a User Name is allowed (it was not in
 * 3.1.1, [MQTT-3.1.2-22]). */
static void test_connect_v5_password_without_username(void **state)
{
    (void)state;
    cycle(S_V5_CONNECT_PASS_ONLY, V5, b_v5_connect_pass_only);
    iotc_mqtt_packet p;
    tu_decode_ok(B(0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x42, 0x00, 0x00, 0x00, 0x00, 0x01, 'a',
                   0x00, 0x02, 'p', 'w'),
                 V5, &p);
    assert_false(p.u.connect.has_username);
    assert_true(p.u.connect.has_password);
    assert_true(tu_str_eq(p.u.connect.password, "pw"));
}

/* A CONNECT is decoded by the protocol level it carries, whatever the session's. */
static void test_connect_decoded_by_own_level(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    tu_decode_arr(S_V5_CONNECT_MIN, V4, &p);
    assert_int_equal(p.type, IOTC_MQTT_CONNECT);
    assert_int_equal(p.u.connect.version, IOTC_MQTT_V5);
    assert_true(tu_str_eq(p.u.connect.client_id, "a"));
    tu_decode_arr(S_V4_CONNECT_MIN, V5, &p);
    assert_int_equal(p.u.connect.version, IOTC_MQTT_V311);
    assert_int_equal(p.u.connect.keep_alive, 60);

    /* And encoded by p->u.connect.version. */
    b_v4_connect_min(&p);
    tu_encode_eq_(&p, V5, S_V4_CONNECT_MIN, sizeof S_V4_CONNECT_MIN, NULL, 0, __FILE__, __LINE__);
    b_v5_connect_min(&p);
    tu_encode_eq_(&p, V4, S_V5_CONNECT_MIN, sizeof S_V5_CONNECT_MIN, NULL, 0, __FILE__, __LINE__);
}

/* Explicit field checks, not only through the deep comparison. */
static void test_connect_v5_fields(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    tu_decode_arr(S_V5_CONNECT_FULL, V5, &p);
    const iotc_mqtt_connect *c = &p.u.connect;
    assert_int_equal(c->version, 5);
    assert_true(c->clean_start);
    assert_int_equal(c->keep_alive, 30);
    assert_ptr_equal(c->client_id.data, S_V5_CONNECT_FULL + 61);
    assert_int_equal(c->client_id.len, 2);
    assert_true(c->will);
    assert_int_equal(c->will_qos, 2);
    assert_true(c->will_retain);
    assert_ptr_equal(c->will_topic.data, S_V5_CONNECT_FULL + 103);
    assert_true(tu_str_eq(c->will_payload, "bye"));
    assert_true(c->has_username && tu_str_eq(c->username, "u"));
    assert_true(c->has_password && tu_str_eq(c->password, "p"));
    assert_int_equal(c->props.session_expiry_interval, 3600);
    assert_int_equal(c->props.receive_maximum, 20);
    assert_int_equal(c->props.maximum_packet_size, 16384);
    assert_int_equal(c->props.topic_alias_maximum, 8);
    assert_int_equal(c->props.request_response_information, 1);
    assert_true(c->props.present & BIT(REQUEST_PROBLEM_INFORMATION));
    assert_int_equal(c->props.request_problem_information, 0);
    assert_true(tu_str_eq(c->props.authentication_method, "xyz"));
    assert_true(tu_bytes_eq(c->props.authentication_data, "\x01\x02", 2));
    assert_int_equal(c->props.user_count, 2);
    assert_ptr_equal(c->props.raw.data, S_V5_CONNECT_FULL + 13);
    assert_int_equal(c->props.raw.len, 46);
    assert_null(c->props.user);
    assert_false(c->props.present & (BIT(TOPIC_ALIAS) | BIT(MAXIMUM_QOS) | BIT(WILL_DELAY_INTERVAL)));

    size_t pos = 0;
    iotc_mqtt_user_prop up;
    assert_true(iotc_mqtt_user_prop_next(&c->props, &pos, &up));
    assert_true(tu_str_eq(up.key, "k") && tu_str_eq(up.value, "v"));
    assert_true(iotc_mqtt_user_prop_next(&c->props, &pos, &up));
    assert_true(tu_str_eq(up.key, "k") && tu_str_eq(up.value, "v2"));
    assert_false(iotc_mqtt_user_prop_next(&c->props, &pos, &up));

    assert_int_equal(c->will_props.will_delay_interval, 5);
    assert_int_equal(c->will_props.payload_format_indicator, 1);
    assert_int_equal(c->will_props.message_expiry_interval, 60);
    assert_true(tu_str_eq(c->will_props.content_type, "text"));
    assert_true(tu_str_eq(c->will_props.response_topic, "r/t"));
    assert_true(tu_bytes_eq(c->will_props.correlation_data, "\xAB\xCD", 2));
    assert_int_equal(c->will_props.user_count, 1);
    assert_ptr_equal(c->will_props.raw.data, S_V5_CONNECT_FULL + 64);
    assert_int_equal(c->will_props.raw.len, 37);
    assert_false(c->will_props.present & BIT(SESSION_EXPIRY_INTERVAL));
    assert_false(c->props.present & BIT(WILL_DELAY_INTERVAL));
}

/* ---- CONNACK ---------------------------------------------------------------------- */

static void b_v4_connack(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNACK);
    p->u.connack.session_present = true;
    p->u.connack.reason = 0;
}

static void b_v4_connack_refused(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNACK);
    p->u.connack.reason = IOTC_V3_CONNACK_NOT_AUTHORIZED;
}

static void b_v5_connack_min(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNACK);
}

static void b_v5_connack_refused(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_CONNACK);
    p->u.connack.reason = IOTC_RC_NOT_AUTHORIZED;
}

static const iotc_mqtt_user_prop connack_users[] = {{BS("x"), BS("y")}};

static void b_v5_connack_full(iotc_mqtt_packet *p)
{
    static const uint8_t ad[] = {0x07};
    init(p, IOTC_MQTT_CONNACK);
    p->u.connack.session_present = true;
    iotc_mqtt_props *pr = &p->u.connack.props;
    pr->present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(RECEIVE_MAXIMUM) | BIT(MAXIMUM_QOS) | BIT(RETAIN_AVAILABLE) |
                  BIT(MAXIMUM_PACKET_SIZE) | BIT(ASSIGNED_CLIENT_IDENTIFIER) | BIT(TOPIC_ALIAS_MAXIMUM) |
                  BIT(REASON_STRING) | BIT(WILDCARD_SUBSCRIPTION_AVAILABLE) |
                  BIT(SUBSCRIPTION_IDENTIFIER_AVAILABLE) | BIT(SHARED_SUBSCRIPTION_AVAILABLE) |
                  BIT(SERVER_KEEP_ALIVE) | BIT(RESPONSE_INFORMATION) | BIT(SERVER_REFERENCE) |
                  BIT(AUTHENTICATION_METHOD) | BIT(AUTHENTICATION_DATA);
    pr->session_expiry_interval = 120;
    pr->receive_maximum = 10;
    pr->maximum_qos = 1;
    pr->retain_available = 0;
    pr->maximum_packet_size = 65536;
    pr->assigned_client_identifier = iotc_mqtt_str("id1");
    pr->topic_alias_maximum = 8;
    pr->reason_string = iotc_mqtt_str("ok");
    pr->wildcard_subscription_available = 1;
    pr->subscription_identifier_available = 0;
    pr->shared_subscription_available = 1;
    pr->server_keep_alive = 30;
    pr->response_information = iotc_mqtt_str("r/i");
    pr->server_reference = iotc_mqtt_str("srv");
    pr->authentication_method = iotc_mqtt_str("m");
    pr->authentication_data = bin(ad, 1);
    pr->user = connack_users;
    pr->user_count = 1;
}

static void test_connack(void **state)
{
    (void)state;
    cycle(S_V4_CONNACK, V4, b_v4_connack);
    cycle(S_V4_CONNACK_REFUSED, V4, b_v4_connack_refused);
    cycle(S_V5_CONNACK_MIN, V5, b_v5_connack_min);
    cycle(S_V5_CONNACK_REFUSED, V5, b_v5_connack_refused);
    cycle_spans(S_V5_CONNACK_FULL, V5, b_v5_connack_full, {5, 67});

    /* Every 3.1.1 return code 0..5 (§3.2.2.3). */
    for (uint8_t rc = 0; rc <= 5; rc++) {
        uint8_t b[4] = {0x20, 0x02, 0x00, rc};
        iotc_mqtt_packet p;
        tu_decode_ok_(b, 4, V4, &p, __FILE__, __LINE__);
        assert_int_equal(p.u.connack.reason, rc);
        assert_false(p.u.connack.session_present);
    }
}

/* ---- PUBLISH ---------------------------------------------------------------------- */

static void b_v4_publish_qos0(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_PUBLISH);
    p->u.publish.topic = iotc_mqtt_str("a/b");
    p->u.publish.payload = iotc_mqtt_str("hello");
}

static void b_v4_publish_qos1(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_PUBLISH);
    p->u.publish.dup = true;
    p->u.publish.qos = 1;
    p->u.publish.retain = true;
    p->u.publish.topic = iotc_mqtt_str("a/b");
    p->u.publish.packet_id = 0x1234;
    p->u.publish.payload = iotc_mqtt_str("hi");
}

static void b_v4_publish_qos2(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_PUBLISH);
    p->u.publish.qos = 2;
    p->u.publish.topic = iotc_mqtt_str("a/b");
    p->u.publish.packet_id = 0xFFFF;
}

static void b_v5_publish_min(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_PUBLISH);
    p->u.publish.topic = iotc_mqtt_str("a/b");
}

static const iotc_mqtt_user_prop publish_users[] = {
    {BS("k1"), BS("v1")}, {BS("k2"), BS("")}, {BS("k1"), BS("v3")}};
static const uint32_t publish_sub_ids[] = {1, 128, 268435455};

static void b_v5_publish_full(iotc_mqtt_packet *p)
{
    static const uint8_t corr[] = {1, 2, 3};
    init(p, IOTC_MQTT_PUBLISH);
    iotc_mqtt_publish *m = &p->u.publish;
    m->qos = 1;
    m->retain = true;
    m->topic = iotc_mqtt_str("a/b");
    m->packet_id = 7;
    m->payload = iotc_mqtt_str("pl");
    m->props.present = BIT(PAYLOAD_FORMAT_INDICATOR) | BIT(MESSAGE_EXPIRY_INTERVAL) | BIT(TOPIC_ALIAS) |
                       BIT(RESPONSE_TOPIC) | BIT(CORRELATION_DATA) | BIT(CONTENT_TYPE);
    m->props.payload_format_indicator = 1;
    m->props.message_expiry_interval = 10;
    m->props.topic_alias = 5;
    m->props.response_topic = iotc_mqtt_str("r/1");
    m->props.correlation_data = bin(corr, 3);
    m->props.content_type = iotc_mqtt_str("text/plain");
    m->props.user = publish_users;
    m->props.user_count = 3;
    m->props.sub_ids = publish_sub_ids;
    m->props.sub_id_count = 3;
}

static void b_v5_publish_alias(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_PUBLISH);
    p->u.publish.topic = iotc_mqtt_str("");
    p->u.publish.props.present = BIT(TOPIC_ALIAS);
    p->u.publish.props.topic_alias = 1;
    p->u.publish.payload = iotc_mqtt_str("x");
}

static void test_publish(void **state)
{
    (void)state;
    cycle(S_V4_PUBLISH_QOS0, V4, b_v4_publish_qos0);
    cycle(S_V4_PUBLISH_QOS1, V4, b_v4_publish_qos1);
    cycle(S_V4_PUBLISH_QOS2, V4, b_v4_publish_qos2);
    cycle(S_V5_PUBLISH_MIN, V5, b_v5_publish_min);
    cycle_spans(S_V5_PUBLISH_FULL, V5, b_v5_publish_full, {10, 70});
    cycle(S_V5_PUBLISH_ALIAS, V5, b_v5_publish_alias);
}

/* Views point into the decoded bytes; lists are counts plus raw bytes, walked
 * in wire order (user properties keep their order, §3.3.2.3.7). */
static void test_publish_v5_lists(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    tu_decode_arr(S_V5_PUBLISH_FULL, V5, &p);
    const iotc_mqtt_publish *m = &p.u.publish;
    assert_false(m->dup);
    assert_int_equal(m->qos, 1);
    assert_true(m->retain);
    assert_ptr_equal(m->topic.data, S_V5_PUBLISH_FULL + 4);
    assert_int_equal(m->topic.len, 3);
    assert_int_equal(m->packet_id, 7);
    assert_ptr_equal(m->payload.data, S_V5_PUBLISH_FULL + 80);
    assert_int_equal(m->payload.len, 2);
    assert_int_equal(m->props.payload_format_indicator, 1);
    assert_int_equal(m->props.message_expiry_interval, 10);
    assert_int_equal(m->props.topic_alias, 5);
    assert_true(tu_str_eq(m->props.response_topic, "r/1"));
    assert_true(tu_bytes_eq(m->props.correlation_data, "\x01\x02\x03", 3));
    assert_true(tu_str_eq(m->props.content_type, "text/plain"));
    assert_ptr_equal(m->props.raw.data, S_V5_PUBLISH_FULL + 10);
    assert_int_equal(m->props.raw.len, 70);
    assert_null(m->props.user);
    assert_null(m->props.sub_ids);

    static const char *const keys[] = {"k1", "k2", "k1"}, *const vals[] = {"v1", "", "v3"};
    size_t pos = 0, i = 0;
    iotc_mqtt_user_prop up;
    while (iotc_mqtt_user_prop_next(&m->props, &pos, &up)) {
        assert_true(i < 3);
        assert_true(tu_str_eq(up.key, keys[i]));
        assert_true(tu_str_eq(up.value, vals[i]));
        /* Views into the packet. */
        assert_true(up.key.data > S_V5_PUBLISH_FULL && up.key.data < S_V5_PUBLISH_FULL + 80);
        i++;
    }
    assert_int_equal(i, 3);
    assert_int_equal(m->props.user_count, 3);
    /* Walking again from 0 gives the same first element. */
    pos = 0;
    assert_true(iotc_mqtt_user_prop_next(&m->props, &pos, &up));
    assert_true(tu_str_eq(up.value, "v1"));

    uint32_t id;
    pos = 0;
    i = 0;
    while (iotc_mqtt_sub_id_next(&m->props, &pos, &id)) {
        assert_true(i < 3);
        assert_int_equal(id, publish_sub_ids[i]);
        i++;
    }
    assert_int_equal(i, 3);
    assert_int_equal(m->props.sub_id_count, 3);

    /* The same walks work on a caller-built packet (from the arrays). */
    iotc_mqtt_packet b;
    b_v5_publish_full(&b);
    pos = 0;
    i = 0;
    while (iotc_mqtt_user_prop_next(&b.u.publish.props, &pos, &up)) {
        assert_true(i < 3);
        assert_true(tu_str_eq(up.key, keys[i]) && tu_str_eq(up.value, vals[i]));
        i++;
    }
    assert_int_equal(i, 3);
    pos = 0;
    i = 0;
    while (iotc_mqtt_sub_id_next(&b.u.publish.props, &pos, &id))
        assert_int_equal(id, publish_sub_ids[i++]);
    assert_int_equal(i, 3);

    /* No properties: the walks yield nothing. */
    tu_decode_arr(S_V5_PUBLISH_MIN, V5, &p);
    pos = 0;
    assert_false(iotc_mqtt_user_prop_next(&p.u.publish.props, &pos, &up));
    pos = 0;
    assert_false(iotc_mqtt_sub_id_next(&p.u.publish.props, &pos, &id));
    assert_int_equal(p.u.publish.props.user_count, 0);
    assert_int_equal(p.u.publish.props.present, 0);
    assert_int_equal(p.u.publish.payload.len, 0);
}

/* A broker forwards a PUBLISH: it keeps the user properties as raw bytes
 * (array NULL), drops the Topic Alias and puts its own subscription id. */
static void test_publish_forward_from_raw(void **state)
{
    (void)state;
    static const uint8_t exp[] = {
        0x33, 0x45, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x07, 0x3B,
        0x01, 0x01,
        0x02, 0x00, 0x00, 0x00, 0x0A,
        0x08, 0x00, 0x03, 'r', '/', '1',
        0x09, 0x00, 0x03, 0x01, 0x02, 0x03,
        0x26, 0x00, 0x02, 'k', '1', 0x00, 0x02, 'v', '1',
        0x26, 0x00, 0x02, 'k', '2', 0x00, 0x00,
        0x26, 0x00, 0x02, 'k', '1', 0x00, 0x02, 'v', '3',
        0x0B, 0x2A,
        0x03, 0x00, 0x0A, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n',
        'p', 'l'};
    static const uint32_t mine[] = {42};
    static const tu_span span[] = {{10, 59}};
    iotc_mqtt_packet p;
    tu_decode_arr(S_V5_PUBLISH_FULL, V5, &p);
    p.u.publish.props.present &= ~BIT(TOPIC_ALIAS);
    p.u.publish.props.sub_ids = mine;
    p.u.publish.props.sub_id_count = 1;
    tu_encode_eq_spans(&p, V5, exp, sizeof exp, span, 1);

    /* An array, when given, wins over the raw bytes. */
    static const uint8_t exp2[] = {
        0x40, 0x11, 0x12, 0x34, 0x87, 0x0D, 0x1F, 0x00, 0x03, 'b', 'a', 'd', 0x26, 0x00, 0x01, 'z', 0x00, 0x01, '9'};
    static const iotc_mqtt_user_prop z[] = {{BS("z"), BS("9")}};
    static const tu_span span2[] = {{6, 13}};
    tu_decode_arr(S_V5_PUBACK_FULL, V5, &p);
    p.u.ack.props.user = z;
    p.u.ack.props.user_count = 1;
    tu_encode_eq_spans(&p, V5, exp2, sizeof exp2, span2, 1);
}

/* Remaining Length boundaries (§2.2.3 / §1.5.5): 127 | 128, 16383 | 16384,
 * 2097151 | 2097152, with hand-written fixed headers. */
static void publish_of_remaining(uint32_t rem, const uint8_t *hdr, size_t hdr_len)
{
    size_t n = hdr_len + rem;
    uint8_t *b = malloc(n);
    assert_non_null(b);
    memcpy(b, hdr, hdr_len);
    b[hdr_len] = 0x00;
    b[hdr_len + 1] = 0x01;
    b[hdr_len + 2] = 't';
    for (size_t i = hdr_len + 3; i < n; i++)
        b[i] = (uint8_t)(i * 7u);
    iotc_mqtt_packet p, q;
    tu_decode_ok_(b, n, V4, &p, __FILE__, __LINE__);
    assert_int_equal(p.type, IOTC_MQTT_PUBLISH);
    assert_true(tu_str_eq(p.u.publish.topic, "t"));
    assert_int_equal(p.u.publish.payload.len, rem - 3);
    assert_ptr_equal(p.u.publish.payload.data, b + hdr_len + 3);

    uint32_t remaining = 0;
    uint8_t type = 0, flags = 0xFF;
    size_t hl = 0;
    assert_int_equal(iotc_mqtt_fixed_header(b, n, V4, &type, &flags, &remaining, &hl, NULL), IOTC_MQTT_OK);
    assert_int_equal(type, 3);
    assert_int_equal(flags, 0);
    assert_int_equal(remaining, rem);
    assert_int_equal(hl, hdr_len);

    init(&q, IOTC_MQTT_PUBLISH);
    q.u.publish.topic = iotc_mqtt_str("t");
    q.u.publish.payload = bin(b + hdr_len + 3, rem - 3);
    tu_encode_eq_(&q, V4, b, n, NULL, 0, __FILE__, __LINE__);
    free(b);
}

static void test_remaining_length_boundaries(void **state)
{
    (void)state;
    publish_of_remaining(3, (const uint8_t[]){0x30, 0x03}, 2);
    publish_of_remaining(127, (const uint8_t[]){0x30, 0x7F}, 2);
    publish_of_remaining(128, (const uint8_t[]){0x30, 0x80, 0x01}, 3);
    publish_of_remaining(16383, (const uint8_t[]){0x30, 0xFF, 0x7F}, 3);
    publish_of_remaining(16384, (const uint8_t[]){0x30, 0x80, 0x80, 0x01}, 4);
    publish_of_remaining(2097151, (const uint8_t[]){0x30, 0xFF, 0xFF, 0x7F}, 4);
    publish_of_remaining(2097152, (const uint8_t[]){0x30, 0x80, 0x80, 0x80, 0x01}, 5);
}

static void test_fixed_header(void **state)
{
    (void)state;
    uint8_t type = 0, flags = 0;
    uint32_t rem = 0;
    size_t hl = 0;
    assert_int_equal(iotc_mqtt_fixed_header(S_V5_PUBLISH_FULL, sizeof S_V5_PUBLISH_FULL, V5, &type, &flags, &rem,
                                            &hl, NULL),
                     IOTC_MQTT_OK);
    assert_int_equal(type, 3);
    assert_int_equal(flags, 3);
    assert_int_equal(rem, 80);
    assert_int_equal(hl, 2);
    /* Only the header is needed. */
    assert_int_equal(iotc_mqtt_fixed_header(B(0x62, 0x02), V4, &type, &flags, &rem, &hl, NULL), IOTC_MQTT_OK);
    assert_int_equal(type, 6);
    assert_int_equal(flags, 2);
    assert_int_equal(rem, 2);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), V5, &type, &flags, &rem, &hl, NULL),
                     IOTC_MQTT_OK);
    assert_int_equal(rem, 268435455u);
    assert_int_equal(hl, 5);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30), V5, &type, &flags, &rem, &hl, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30, 0xCE), V5, &type, &flags, &rem, &hl, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30, 0xFF, 0xFF, 0xFF), V5, &type, &flags, &rem, &hl, NULL),
                     IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_fixed_header(NULL, 0, V5, &type, &flags, &rem, &hl, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30, 0xCE, 0x01), V5, &type, &flags, &rem, &hl, NULL), IOTC_MQTT_OK);
    assert_int_equal(rem, 206);
    assert_int_equal(hl, 3);
    /* AUTH exists in 5 only. */
    assert_int_equal(iotc_mqtt_fixed_header(B(0xF0, 0x00), V5, &type, &flags, &rem, &hl, NULL), IOTC_MQTT_OK);
    assert_int_equal(type, 15);
    /* The error is described in *err, as for iotc_mqtt_decode(). */
    iotc_mqtt_error err;
    memset(&err, 0xA5, sizeof err); /* the caller need not clear it */
    assert_int_equal(iotc_mqtt_fixed_header(B(0xF0, 0x00), V4, &type, &flags, &rem, &hl, &err),
                     IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.status, IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.reason, IOTC_RC_MALFORMED_PACKET);
    assert_int_equal(err.offset, 0);
    assert_non_null(err.what);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP --------------------------------------------- */

static iotc_mqtt_type ack_type;
static uint8_t ack_reason;

static void b_v4_ack(iotc_mqtt_packet *p)
{
    init(p, ack_type);
    p->u.ack.packet_id = 0x1234;
}

static const iotc_mqtt_user_prop ack_users[] = {{BS("a"), BS("b")}};

static void b_v5_ack_full(iotc_mqtt_packet *p)
{
    init(p, ack_type);
    p->u.ack.packet_id = 0x1234;
    p->u.ack.reason = ack_reason;
    p->u.ack.props.present = BIT(REASON_STRING);
    p->u.ack.props.reason_string = iotc_mqtt_str("bad");
    p->u.ack.props.user = ack_users;
    p->u.ack.props.user_count = 1;
}

static void test_acks(void **state)
{
    (void)state;
    ack_type = IOTC_MQTT_PUBACK;
    cycle(S_V4_PUBACK, V4, b_v4_ack);
    ack_type = IOTC_MQTT_PUBREC;
    cycle(S_V4_PUBREC, V4, b_v4_ack);
    ack_type = IOTC_MQTT_PUBREL;
    cycle(S_V4_PUBREL, V4, b_v4_ack);
    ack_type = IOTC_MQTT_PUBCOMP;
    cycle(S_V4_PUBCOMP, V4, b_v4_ack);

    ack_type = IOTC_MQTT_PUBACK;
    ack_reason = IOTC_RC_NOT_AUTHORIZED;
    cycle_spans(S_V5_PUBACK_FULL, V5, b_v5_ack_full, {6, 13});
    ack_type = IOTC_MQTT_PUBREC;
    ack_reason = IOTC_RC_UNSPECIFIED_ERROR;
    cycle_spans(S_V5_PUBREC_FULL, V5, b_v5_ack_full, {6, 13});
    ack_type = IOTC_MQTT_PUBREL;
    ack_reason = IOTC_RC_PACKET_IDENTIFIER_NOT_FOUND;
    cycle_spans(S_V5_PUBREL_FULL, V5, b_v5_ack_full, {6, 13});
    ack_type = IOTC_MQTT_PUBCOMP;
    cycle_spans(S_V5_PUBCOMP_FULL, V5, b_v5_ack_full, {6, 13});
}

/* §3.4.2.1: "The Reason Code and Property Length can be omitted if the Reason
 * Code is 0x00 (Success) and there are no Properties ... Remaining Length of
 * 2"; §3.4.2.2.1: "If the Remaining Length is less than 4 there is no Property
 * Length and the value of 0 is used". */
static void test_acks_v5_short_forms(void **state)
{
    (void)state;
    static const uint8_t firsts[4] = {0x40, 0x50, 0x62, 0x70};
    static const iotc_mqtt_type types[4] = {IOTC_MQTT_PUBACK, IOTC_MQTT_PUBREC, IOTC_MQTT_PUBREL,
                                            IOTC_MQTT_PUBCOMP};
    static const uint8_t nonzero[4] = {0x10, 0x80, 0x92, 0x92};
    for (int i = 0; i < 4; i++) {
        iotc_mqtt_packet p;
        uint8_t b2[4] = {firsts[i], 0x02, 0x12, 0x34};
        uint8_t b3[5] = {firsts[i], 0x03, 0x12, 0x34, nonzero[i]};
        uint8_t b4[6] = {firsts[i], 0x04, 0x12, 0x34, nonzero[i], 0x00};
        uint8_t b3z[5] = {firsts[i], 0x03, 0x12, 0x34, 0x00};
        uint8_t b4z[6] = {firsts[i], 0x04, 0x12, 0x34, 0x00, 0x00};

        tu_decode_ok_(b2, sizeof b2, V5, &p, __FILE__, __LINE__);
        assert_int_equal(p.type, types[i]);
        assert_int_equal(p.u.ack.packet_id, 0x1234);
        assert_int_equal(p.u.ack.reason, 0);
        assert_int_equal(p.u.ack.props.present, 0);
        assert_int_equal(p.u.ack.props.user_count, 0);

        tu_decode_ok_(b3, sizeof b3, V5, &p, __FILE__, __LINE__);
        assert_int_equal(p.u.ack.reason, nonzero[i]);
        assert_int_equal(p.u.ack.props.present, 0);
        assert_int_equal(p.u.ack.props.user_count, 0);

        tu_decode_ok_(b4, sizeof b4, V5, &p, __FILE__, __LINE__);
        assert_int_equal(p.u.ack.reason, nonzero[i]);

        /* Encoding: the reason may be written or left out when it is 0. */
        init(&p, types[i]);
        p.u.ack.packet_id = 0x1234;
        ENCODE_ONEOF(&p, V5, b2, b3z, b4z);
        p.u.ack.reason = nonzero[i];
        ENCODE_ONEOF(&p, V5, b3, b4);
    }
}

/* ---- SUBSCRIBE, SUBACK -------------------------------------------------------------- */

static const iotc_mqtt_sub v4_subs[] = {{BS("a/b"), 1, false, false, 0}, {BS("#"), 2, false, false, 0}};

static void b_v4_subscribe(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_SUBSCRIBE);
    p->u.subscribe.packet_id = 10;
    p->u.subscribe.subs = v4_subs;
    p->u.subscribe.count = 2;
}

static const iotc_mqtt_sub v5_subs[] = {
    {BS("a/+"), 1, true, true, 2}, {BS("$share/g/t"), 2, false, false, 1}, {BS("x"), 0, false, false, 0}};
static const iotc_mqtt_user_prop sub_users[] = {{BS("k"), BS("v")}};
static const uint32_t sub_id5[] = {5};

static void b_v5_subscribe(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_SUBSCRIBE);
    p->u.subscribe.packet_id = 10;
    p->u.subscribe.props.sub_ids = sub_id5;
    p->u.subscribe.props.sub_id_count = 1;
    p->u.subscribe.props.user = sub_users;
    p->u.subscribe.props.user_count = 1;
    p->u.subscribe.subs = v5_subs;
    p->u.subscribe.count = 3;
}

static const uint8_t v4_suback_codes[] = {0x00, 0x02, 0x80};
static const uint8_t v5_suback_codes[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};

static void b_v4_suback(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_SUBACK);
    p->u.suback.packet_id = 10;
    p->u.suback.codes = v4_suback_codes;
    p->u.suback.count = 3;
}

static void b_v5_suback(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_SUBACK);
    p->u.suback.packet_id = 10;
    p->u.suback.props.present = BIT(REASON_STRING);
    p->u.suback.props.reason_string = iotc_mqtt_str("r");
    p->u.suback.codes = v5_suback_codes;
    p->u.suback.count = sizeof v5_suback_codes;
}

static void test_subscribe(void **state)
{
    (void)state;
    cycle(S_V4_SUBSCRIBE, V4, b_v4_subscribe);
    cycle_spans(S_V5_SUBSCRIBE, V5, b_v5_subscribe, {5, 9});
    cycle(S_V4_SUBACK, V4, b_v4_suback);
    cycle(S_V5_SUBACK, V5, b_v5_suback);
}

static void test_subscribe_v5_fields(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    tu_decode_arr(S_V5_SUBSCRIBE, V5, &p);
    const iotc_mqtt_subscribe *s = &p.u.subscribe;
    assert_int_equal(s->packet_id, 10);
    assert_int_equal(s->count, 3);
    assert_null(s->subs);
    assert_ptr_equal(s->raw.data, S_V5_SUBSCRIBE + 14);
    assert_int_equal(s->raw.len, 23);
    assert_int_equal(s->props.sub_id_count, 1);
    size_t pos = 0;
    uint32_t id = 0;
    assert_true(iotc_mqtt_sub_id_next(&s->props, &pos, &id));
    assert_int_equal(id, 5);
    assert_false(iotc_mqtt_sub_id_next(&s->props, &pos, &id));

    iotc_mqtt_sub sub;
    pos = 0;
    assert_true(iotc_mqtt_sub_next(s, &pos, &sub));
    assert_true(tu_str_eq(sub.filter, "a/+"));
    assert_ptr_equal(sub.filter.data, S_V5_SUBSCRIBE + 16);
    assert_int_equal(sub.qos, 1);
    assert_true(sub.no_local);
    assert_true(sub.retain_as_published);
    assert_int_equal(sub.retain_handling, 2);
    assert_true(iotc_mqtt_sub_next(s, &pos, &sub));
    assert_true(tu_str_eq(sub.filter, "$share/g/t"));
    assert_int_equal(sub.qos, 2);
    assert_false(sub.no_local);
    assert_false(sub.retain_as_published);
    assert_int_equal(sub.retain_handling, 1);
    assert_true(iotc_mqtt_sub_next(s, &pos, &sub));
    assert_true(tu_str_eq(sub.filter, "x"));
    assert_int_equal(sub.qos, 0);
    assert_false(sub.no_local || sub.retain_as_published);
    assert_int_equal(sub.retain_handling, 0);
    assert_false(iotc_mqtt_sub_next(s, &pos, &sub));

    /* 3.1.1: only the QoS is in the options byte. */
    tu_decode_arr(S_V4_SUBSCRIBE, V4, &p);
    pos = 0;
    assert_true(iotc_mqtt_sub_next(&p.u.subscribe, &pos, &sub));
    assert_true(tu_str_eq(sub.filter, "a/b"));
    assert_int_equal(sub.qos, 1);
    assert_false(sub.no_local || sub.retain_as_published);
    assert_int_equal(sub.retain_handling, 0);
    assert_true(iotc_mqtt_sub_next(&p.u.subscribe, &pos, &sub));
    assert_true(tu_str_eq(sub.filter, "#"));
    assert_int_equal(sub.qos, 2);
    assert_false(iotc_mqtt_sub_next(&p.u.subscribe, &pos, &sub));

    tu_decode_arr(S_V5_SUBACK, V5, &p);
    assert_int_equal(p.u.suback.count, 12);
    assert_ptr_equal(p.u.suback.codes, S_V5_SUBACK + 9);
    assert_true(tu_str_eq(p.u.suback.props.reason_string, "r"));
}

/* Every valid combination of the MQTT 5 subscription options (§3.8.3.1):
 * bits 0-1 QoS, 2 No Local, 3 Retain As Published, 4-5 Retain Handling. */
static void test_subscribe_v5_option_bits(void **state)
{
    (void)state;
    for (uint8_t qos = 0; qos <= 2; qos++)
        for (uint8_t nl = 0; nl <= 1; nl++)
            for (uint8_t rap = 0; rap <= 1; rap++)
                for (uint8_t rh = 0; rh <= 2; rh++) {
                    uint8_t opt = (uint8_t)(qos | nl << 2 | rap << 3 | rh << 4);
                    uint8_t b[] = {0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 't', opt};
                    iotc_mqtt_packet p;
                    tu_decode_ok_(b, sizeof b, V5, &p, __FILE__, __LINE__);
                    size_t pos = 0;
                    iotc_mqtt_sub s;
                    assert_true(iotc_mqtt_sub_next(&p.u.subscribe, &pos, &s));
                    assert_int_equal(s.qos, qos);
                    assert_int_equal(s.no_local, nl);
                    assert_int_equal(s.retain_as_published, rap);
                    assert_int_equal(s.retain_handling, rh);

                    iotc_mqtt_sub one = {BS("t"), qos, nl != 0, rap != 0, rh};
                    init(&p, IOTC_MQTT_SUBSCRIBE);
                    p.u.subscribe.packet_id = 1;
                    p.u.subscribe.subs = &one;
                    p.u.subscribe.count = 1;
                    tu_encode_eq_(&p, V5, b, sizeof b, NULL, 0, __FILE__, __LINE__);
                }
}

/* ---- UNSUBSCRIBE, UNSUBACK ------------------------------------------------------------ */

static const iotc_mqtt_bytes unsub_filters[] = {BS("a/b"), BS("#")};
static const iotc_mqtt_user_prop unsub_users[] = {{BS("k"), BS("v")}};

static void b_v4_unsubscribe(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_UNSUBSCRIBE);
    p->u.unsubscribe.packet_id = 11;
    p->u.unsubscribe.filters = unsub_filters;
    p->u.unsubscribe.count = 2;
}

static void b_v5_unsubscribe(iotc_mqtt_packet *p)
{
    b_v4_unsubscribe(p);
    p->u.unsubscribe.props.user = unsub_users;
    p->u.unsubscribe.props.user_count = 1;
}

static void b_v4_unsuback(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_UNSUBACK);
    p->u.suback.packet_id = 11;
}

static const uint8_t v5_unsuback_codes[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};

static void b_v5_unsuback(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_UNSUBACK);
    p->u.suback.packet_id = 11;
    p->u.suback.codes = v5_unsuback_codes;
    p->u.suback.count = sizeof v5_unsuback_codes;
}

static void test_unsubscribe(void **state)
{
    (void)state;
    cycle(S_V4_UNSUBSCRIBE, V4, b_v4_unsubscribe);
    cycle_spans(S_V5_UNSUBSCRIBE, V5, b_v5_unsubscribe, {5, 7});
    cycle(S_V4_UNSUBACK, V4, b_v4_unsuback);
    cycle(S_V5_UNSUBACK, V5, b_v5_unsuback);

    iotc_mqtt_packet p;
    tu_decode_arr(S_V4_UNSUBSCRIBE, V4, &p);
    assert_int_equal(p.u.unsubscribe.count, 2);
    assert_null(p.u.unsubscribe.filters);
    assert_ptr_equal(p.u.unsubscribe.raw.data, S_V4_UNSUBSCRIBE + 4);
    assert_int_equal(p.u.unsubscribe.raw.len, 8);
    size_t pos = 0;
    iotc_mqtt_bytes f;
    assert_true(iotc_mqtt_unsub_next(&p.u.unsubscribe, &pos, &f));
    assert_true(tu_str_eq(f, "a/b"));
    assert_ptr_equal(f.data, S_V4_UNSUBSCRIBE + 6);
    assert_true(iotc_mqtt_unsub_next(&p.u.unsubscribe, &pos, &f));
    assert_true(tu_str_eq(f, "#"));
    assert_false(iotc_mqtt_unsub_next(&p.u.unsubscribe, &pos, &f));

    /* 3.1.1 UNSUBACK has no payload (§3.11.3). */
    tu_decode_arr(S_V4_UNSUBACK, V4, &p);
    assert_int_equal(p.u.suback.packet_id, 11);
    assert_int_equal(p.u.suback.count, 0);
}

/* ---- PINGREQ, PINGRESP, DISCONNECT, AUTH ------------------------------------------------ */

static iotc_mqtt_type simple_type;
static void b_simple(iotc_mqtt_packet *p)
{
    init(p, simple_type);
}

static void test_ping(void **state)
{
    (void)state;
    simple_type = IOTC_MQTT_PINGREQ;
    cycle(S_PINGREQ, V4, b_simple);
    cycle(S_PINGREQ, V5, b_simple);
    simple_type = IOTC_MQTT_PINGRESP;
    cycle(S_PINGRESP, V4, b_simple);
    cycle(S_PINGRESP, V5, b_simple);
    simple_type = IOTC_MQTT_DISCONNECT;
    cycle(S_DISCONNECT_EMPTY, V4, b_simple);
}

static const iotc_mqtt_user_prop disc_users[] = {{BS("a"), BS("b")}};

static void b_v5_disconnect_full(iotc_mqtt_packet *p)
{
    init(p, IOTC_MQTT_DISCONNECT);
    p->u.disconnect.reason = IOTC_RC_SERVER_SHUTTING_DOWN;
    iotc_mqtt_props *pr = &p->u.disconnect.props;
    pr->present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(REASON_STRING) | BIT(SERVER_REFERENCE);
    pr->session_expiry_interval = 0;
    pr->reason_string = iotc_mqtt_str("bye!");
    pr->server_reference = iotc_mqtt_str("s");
    pr->user = disc_users;
    pr->user_count = 1;
}

static const iotc_mqtt_user_prop auth_users[] = {{BS("k"), BS("v")}};

static void b_v5_auth_full(iotc_mqtt_packet *p)
{
    static const uint8_t data[] = {1, 2, 3};
    init(p, IOTC_MQTT_AUTH);
    p->u.disconnect.reason = IOTC_RC_CONTINUE_AUTHENTICATION;
    iotc_mqtt_props *pr = &p->u.disconnect.props;
    pr->present = BIT(AUTHENTICATION_METHOD) | BIT(AUTHENTICATION_DATA) | BIT(REASON_STRING);
    pr->authentication_method = iotc_mqtt_str("SCRAM");
    pr->authentication_data = bin(data, 3);
    pr->reason_string = iotc_mqtt_str("c");
    pr->user = auth_users;
    pr->user_count = 1;
}

/* §3.14.2.1: "If the Remaining Length is less than 1 the value of 0x00 (Normal
 * disconnection) is used"; §3.14.2.2.1: less than 2, no properties.  §3.15.2:
 * AUTH "has a Remaining Length of 0" when Success without properties. */
static void test_disconnect_auth_v5(void **state)
{
    (void)state;
    cycle_spans(S_V5_DISCONNECT_FULL, V5, b_v5_disconnect_full, {4, 23});
    cycle_spans(S_V5_AUTH_FULL, V5, b_v5_auth_full, {4, 25});

    iotc_mqtt_packet p;
    tu_decode_arr(S_DISCONNECT_EMPTY, V5, &p);
    assert_int_equal(p.type, IOTC_MQTT_DISCONNECT);
    assert_int_equal(p.u.disconnect.reason, 0);
    assert_int_equal(p.u.disconnect.props.present, 0);
    assert_int_equal(p.u.disconnect.props.user_count, 0);
    tu_decode_arr(S_V5_DISCONNECT_REASON, V5, &p);
    assert_int_equal(p.u.disconnect.reason, IOTC_RC_DISCONNECT_WITH_WILL);
    assert_int_equal(p.u.disconnect.props.present, 0);
    tu_decode_ok(B(0xE0, 0x02, 0x8E, 0x00), V5, &p);
    assert_int_equal(p.u.disconnect.reason, IOTC_RC_SESSION_TAKEN_OVER);
    tu_decode_arr(S_V5_AUTH_EMPTY, V5, &p);
    assert_int_equal(p.type, IOTC_MQTT_AUTH);
    assert_int_equal(p.u.disconnect.reason, 0);
    assert_int_equal(p.u.disconnect.props.present, 0);

    init(&p, IOTC_MQTT_DISCONNECT);
    ENCODE_ONEOF(&p, V5, (const uint8_t[]){0xE0, 0x00}, (const uint8_t[]){0xE0, 0x01, 0x00},
                 (const uint8_t[]){0xE0, 0x02, 0x00, 0x00});
    p.u.disconnect.reason = IOTC_RC_DISCONNECT_WITH_WILL;
    ENCODE_ONEOF(&p, V5, (const uint8_t[]){0xE0, 0x01, 0x04}, (const uint8_t[]){0xE0, 0x02, 0x04, 0x00});
    init(&p, IOTC_MQTT_AUTH);
    ENCODE_ONEOF(&p, V5, (const uint8_t[]){0xF0, 0x00}, (const uint8_t[]){0xF0, 0x02, 0x00, 0x00});
    /* 3.1.1 DISCONNECT has no variable header at all. */
    init(&p, IOTC_MQTT_DISCONNECT);
    tu_encode_eq(&p, V4, B(0xE0, 0x00));
}

/* ---- every property, in every packet that allows it ------------------------------------ */

static void test_prop_allowed_table(void **state)
{
    (void)state;
    for (unsigned id = 0; id < 0x80; id++) {
        uint32_t allowed = 0;
        bool known = false;
        for (size_t i = 0; i < tu_allow_count; i++)
            if (tu_allow_table[i].id == id) {
                allowed = tu_allow_table[i].packets;
                known = true;
            }
        for (unsigned t = 1; t <= 15; t++) {
            bool exp = (allowed >> t) & 1u;
            if (iotc_mqtt_prop_allowed(id, (iotc_mqtt_type)t, false) != exp)
                fail_msg("prop_allowed(0x%02X, %s) should be %d", id, iotc_mqtt_type_name(t), exp);
        }
        if (iotc_mqtt_prop_allowed(id, IOTC_MQTT_CONNECT, true) != ((allowed & TU_WILL) != 0))
            fail_msg("prop_allowed(0x%02X, Will) should be %d", id, (allowed & TU_WILL) != 0);
        const char *name = iotc_mqtt_prop_name(id);
        if (known)
            assert_non_null(name);
        else if (name != NULL)
            fail_msg("prop_name(0x%02X) = \"%s\" for an unknown id", id, name);
    }
    assert_null(iotc_mqtt_prop_name(0x100 | 0x23));
    assert_null(iotc_mqtt_prop_name(~0u));
}

/* Each of the 27 properties alone in each packet (and the Will) that allows
 * it: decodes, is reported present (or listed), and survives an encode.
 * The Authentication Method goes with Authentication Data ("It is a Protocol
 * Error to include Authentication Data if there is no Authentication
 * Method", §3.1.2.11.10) and in every AUTH (§3.15.2.2.2). */
static void test_every_property_where_allowed(void **state)
{
    (void)state;
    static const unsigned types[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15};
    size_t checked = 0;
    for (size_t r = 0; r < tu_allow_count; r++) {
        uint8_t id = tu_allow_table[r].id;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            unsigned t = types[ti];
            if (!((tu_allow_table[r].packets >> t) & 1u))
                continue;
            uint8_t props[64], pkt[600];
            size_t n = 0;
            bool need_method = (id == 0x16) || (t == IOTC_MQTT_AUTH && id != 0x15);
            if (need_method) {
                memcpy(props, "\x15\x00\x01m", 4);
                n = 4;
            }
            props[n++] = id;
            n += tu_prop_value(id, props + n);
            size_t poff = 0;
            size_t len = tu_build_with_props(t, props, n, pkt, &poff);

            iotc_mqtt_packet p;
            tu_decode_ok_(pkt, len, V5, &p, __FILE__, __LINE__);
            const iotc_mqtt_props *pr = tu_props_of(&p, t);
            if (id == 0x26)
                assert_int_equal(pr->user_count, 1);
            else if (id == 0x0B)
                assert_int_equal(pr->sub_id_count, 1);
            else if (!(pr->present & IOTC_PROP_BIT(id)))
                fail_msg("property 0x%02X in %s: not reported present", id, t ? iotc_mqtt_type_name(t) : "Will");
            if (t == 1) /* the CONNECT's own properties are not the Will's */
                assert_int_equal(p.u.connect.will_props.present, 0);
            /* Re-encoding the decoded packet gives the same bytes. */
            tu_span sp = {poff, n};
            tu_encode_eq_(&p, V5, pkt, len, &sp, 1, __FILE__, __LINE__);
            checked++;
        }
    }
    /* The (property, packet) pairs of Table 2-4, counting the Will. */
    assert_int_equal(checked, 64);
}

/* ---- names -------------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    static const char *const types[16] = {"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
                                          "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
                                          "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
    for (unsigned t = 0; t < 16; t++)
        assert_string_equal(iotc_mqtt_type_name(t), types[t]);
    for (unsigned t = 16; t < 300; t++)
        assert_non_null(iotc_mqtt_type_name(t));
    assert_non_null(iotc_mqtt_type_name(~0u));

    for (int s = 0; s <= 8; s++) {
        const char *a = iotc_mqtt_status_str((iotc_mqtt_status)s);
        assert_non_null(a);
        assert_true(a[0] != '\0');
        for (int u = 0; u < s; u++)
            assert_string_not_equal(a, iotc_mqtt_status_str((iotc_mqtt_status)u));
    }
    assert_non_null(iotc_mqtt_status_str((iotc_mqtt_status)9));
    assert_non_null(iotc_mqtt_status_str((iotc_mqtt_status)-1));
    assert_non_null(iotc_mqtt_status_str((iotc_mqtt_status)1000));

    for (unsigned t = 0; t < 18; t++)
        for (unsigned c = 0; c < 256; c++) {
            assert_non_null(iotc_mqtt_reason_name((iotc_mqtt_type)t, V4, (uint8_t)c));
            assert_non_null(iotc_mqtt_reason_name((iotc_mqtt_type)t, V5, (uint8_t)c));
        }
    assert_non_null(iotc_mqtt_reason_name(IOTC_MQTT_PUBACK, (iotc_mqtt_version)3, 0));

    /* Names from the spec's tables (§2.4 Table 2-6, 3.1.1 Table 3.1). */
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_SUBACK, V5, 0x00), "Granted QoS 0"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_SUBACK, V5, 0x01), "Granted QoS 1"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_SUBACK, V5, 0x02), "Granted QoS 2"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, V5, 0x00), "Normal disconnection"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V5, 0x00), "Success"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_PUBACK, V5, 0x00), "Success"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_AUTH, V5, 0x00), "Success"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, V5, 0x04),
                                "Disconnect with Will Message"),
                     0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_PUBACK, V5, 0x10), "No matching subscribers"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_UNSUBACK, V5, 0x11), "No subscription existed"),
                     0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_AUTH, V5, 0x18), "Continue authentication"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_AUTH, V5, 0x19), "Re-authenticate"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, V5, 0x81), "Malformed Packet"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, V5, 0x82), "Protocol Error"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V5, 0x84), "Unsupported Protocol Version"),
                     0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, V5, 0x94), "Topic Alias invalid"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, V5, 0x95), "Packet too large"), 0);
    assert_int_equal(strcasecmp(iotc_mqtt_reason_name(IOTC_MQTT_SUBACK, V5, 0xA2),
                                "Wildcard Subscriptions not supported"),
                     0);
    assert_true(ci_contains(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V4, 0), "accepted"));
    assert_true(ci_contains(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V4, 1), "protocol"));
    assert_true(ci_contains(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V4, 2), "identifier"));
    assert_true(ci_contains(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V4, 3), "unavailable"));
    assert_true(ci_contains(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V4, 4), "password"));
    assert_true(ci_contains(iotc_mqtt_reason_name(IOTC_MQTT_CONNACK, V4, 5), "not authorized"));

    /* Property names (§2.2.2.2 Table 2-4). */
    static const struct {
        unsigned id;
        const char *name;
    } pn[] = {{0x01, "Payload Format Indicator"}, {0x02, "Message Expiry Interval"}, {0x03, "Content Type"},
              {0x08, "Response Topic"}, {0x09, "Correlation Data"}, {0x0B, "Subscription Identifier"},
              {0x11, "Session Expiry Interval"}, {0x12, "Assigned Client Identifier"},
              {0x13, "Server Keep Alive"}, {0x15, "Authentication Method"}, {0x16, "Authentication Data"},
              {0x17, "Request Problem Information"}, {0x18, "Will Delay Interval"},
              {0x19, "Request Response Information"}, {0x1A, "Response Information"},
              {0x1C, "Server Reference"}, {0x1F, "Reason String"}, {0x21, "Receive Maximum"},
              {0x22, "Topic Alias Maximum"}, {0x23, "Topic Alias"}, {0x24, "Maximum QoS"},
              {0x25, "Retain Available"}, {0x26, "User Property"}, {0x27, "Maximum Packet Size"},
              {0x28, "Wildcard Subscription Available"}, {0x2A, "Shared Subscription Available"}};
    for (size_t i = 0; i < sizeof pn / sizeof pn[0]; i++) {
        const char *got = iotc_mqtt_prop_name(pn[i].id);
        assert_non_null(got);
        if (strcasecmp(got, pn[i].name) != 0)
            fail_msg("prop_name(0x%02X) = \"%s\", expected \"%s\"", pn[i].id, got, pn[i].name);
    }
    /* Table 2-4 says "Subscription Identifier Available", §3.2.2.3.12 "...Identifiers...". */
    const char *sia = iotc_mqtt_prop_name(0x29);
    assert_non_null(sia);
    assert_true(strcasecmp(sia, "Subscription Identifier Available") == 0 ||
                strcasecmp(sia, "Subscription Identifiers Available") == 0);
}

/* §2.4 (Tables 3-1, 3-4, 3-5, 3-6, 3-7, 3-8, 3-9, 3-10, 3-11), 3.1.1 §3.2.2.3, §3.9.3. */
static void test_reason_allowed_tables(void **state)
{
    (void)state;
    const struct {
        iotc_mqtt_type t;
        const uint8_t *codes;
        size_t n;
    } tab[] = {
#define ROW(t, ...) {IOTC_MQTT_##t, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})}
        ROW(CONNACK, 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
            0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F),
        ROW(PUBACK, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
        ROW(PUBREC, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
        ROW(PUBREL, 0x00, 0x92),
        ROW(PUBCOMP, 0x00, 0x92),
        ROW(SUBACK, 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2),
        ROW(UNSUBACK, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
        ROW(DISCONNECT, 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
            0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2),
        ROW(AUTH, 0x00, 0x18, 0x19),
#undef ROW
    };
    for (size_t r = 0; r < sizeof tab / sizeof tab[0]; r++)
        for (unsigned c = 0; c < 256; c++) {
            bool exp = memchr(tab[r].codes, (int)c, tab[r].n) != NULL;
            if (iotc_mqtt_reason_allowed(tab[r].t, V5, (uint8_t)c) != exp)
                fail_msg("reason_allowed(%s, 5, 0x%02X) should be %d", iotc_mqtt_type_name(tab[r].t), c, exp);
            if (exp)
                assert_non_null(iotc_mqtt_reason_name(tab[r].t, V5, (uint8_t)c));
        }
    for (unsigned c = 0; c < 256; c++) {
        bool exp = c <= 5;
        if (iotc_mqtt_reason_allowed(IOTC_MQTT_CONNACK, V4, (uint8_t)c) != exp)
            fail_msg("reason_allowed(CONNACK, 4, 0x%02X) should be %d", c, exp);
        exp = c <= 2 || c == 0x80;
        if (iotc_mqtt_reason_allowed(IOTC_MQTT_SUBACK, V4, (uint8_t)c) != exp)
            fail_msg("reason_allowed(SUBACK, 4, 0x%02X) should be %d", c, exp);
    }
}

/* §1.5.5 Table 1-1. */
static void test_vbi_encode(void **state)
{
    (void)state;
    static const struct {
        uint32_t v;
        size_t n;
        uint8_t b[4];
    } tab[] = {
        {0, 1, {0x00}},
        {1, 1, {0x01}},
        {127, 1, {0x7F}},
        {128, 2, {0x80, 0x01}},
        {129, 2, {0x81, 0x01}},
        {16383, 2, {0xFF, 0x7F}},
        {16384, 3, {0x80, 0x80, 0x01}},
        {2097151, 3, {0xFF, 0xFF, 0x7F}},
        {2097152, 4, {0x80, 0x80, 0x80, 0x01}},
        {268435455, 4, {0xFF, 0xFF, 0xFF, 0x7F}},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        uint8_t out[4] = {0xEE, 0xEE, 0xEE, 0xEE};
        size_t n = iotc_mqtt_vbi_encode(tab[i].v, out);
        if (n != tab[i].n)
            fail_msg("vbi_encode(%lu) length %zu, expected %zu", (unsigned long)tab[i].v, n, tab[i].n);
        assert_memory_equal(out, tab[i].b, n);
    }
    uint8_t out[4];
    assert_int_equal(iotc_mqtt_vbi_encode(268435456u, out), 0);
    assert_int_equal(iotc_mqtt_vbi_encode(0xFFFFFFFFu, out), 0);
    assert_int_equal(IOTC_MQTT_MAX_PACKET, 268435460u);
}

/* The encoded size needs no buffer, and ERR_BUFFER reports the size needed. */
static void test_encoded_size_and_buffer(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    b_v5_publish_full(&p);
    size_t size = 0, written = 0;
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &size, NULL), IOTC_MQTT_OK);
    assert_int_equal(size, sizeof S_V5_PUBLISH_FULL);
    uint8_t small[10];
    iotc_mqtt_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(iotc_mqtt_encode(&p, V5, small, sizeof small, &written, &err), IOTC_MQTT_ERR_BUFFER);
    assert_int_equal(written, sizeof S_V5_PUBLISH_FULL);
    assert_int_equal(err.status, IOTC_MQTT_ERR_BUFFER);

    /* A 2-byte remaining length. */
    static uint8_t payload[200];
    init(&p, IOTC_MQTT_PUBLISH);
    p.u.publish.topic = iotc_mqtt_str("a/b");
    p.u.publish.payload = bin(payload, sizeof payload);
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &size, NULL), IOTC_MQTT_OK);
    assert_int_equal(size, 3 + 206);
    uint8_t out[209];
    assert_int_equal(iotc_mqtt_encode(&p, V5, out, sizeof out, &written, NULL), IOTC_MQTT_OK);
    assert_int_equal(written, 209);
    assert_memory_equal(out, ((const uint8_t[]){0x30, 0xCE, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x00}), 9);
    assert_int_equal(iotc_mqtt_encode(&p, V5, out, 208, &written, NULL), IOTC_MQTT_ERR_BUFFER);
    assert_int_equal(written, 209);

    /* Every sample: encoded_size of the decoded packet is its length. */
    for (size_t i = 0; i < TU_NSAMPLES; i++) {
        iotc_mqtt_packet d;
        size_t used = 0;
        assert_int_equal(iotc_mqtt_decode(tu_samples[i].bytes, tu_samples[i].len, tu_samples[i].version, 0, &d,
                                          &used, NULL),
                         IOTC_MQTT_OK);
        iotc_mqtt_status st = iotc_mqtt_encoded_size(&d, tu_samples[i].version, &size, NULL);
        if (st != IOTC_MQTT_OK)
            fail_msg("%s: encoded_size %d", tu_samples[i].name, (int)st);
        /* Short forms may be re-encoded in their long form. */
        if (size != tu_samples[i].len && !(may_shorten(&tu_samples[i]) && size <= tu_samples[i].len + 2))
            fail_msg("%s: encoded_size %zu, length %zu", tu_samples[i].name, size, tu_samples[i].len);
    }
}

/* All samples decode and re-encode from their decoded (raw) form. */
static void test_all_samples_reencode(void **state)
{
    (void)state;
    for (size_t i = 0; i < TU_NSAMPLES; i++) {
        const tu_sample *s = &tu_samples[i];
        iotc_mqtt_packet d, e;
        tu_decode_ok_(s->bytes, s->len, s->version, &d, __FILE__, __LINE__);
        uint8_t buf[512];
        size_t w = 0, used = 0;
        iotc_mqtt_status st = iotc_mqtt_encode(&d, s->version, buf, sizeof buf, &w, NULL);
        if (st != IOTC_MQTT_OK)
            fail_msg("%s: re-encode %d", s->name, (int)st);
        st = iotc_mqtt_decode(buf, w, s->version, 0, &e, &used, NULL);
        if (st != IOTC_MQTT_OK || used != w)
            fail_msg("%s: decode of re-encoding %d", s->name, (int)st);
        tu_packet_eq_(&e, &d, s->version, __FILE__, __LINE__);
    }
}

/* *err is an output: a caller's uninitialised iotc_mqtt_error must come back
 * filled in by every entry point that reports an error. */
static void test_err_need_not_be_cleared(void **state)
{
    (void)state;
    iotc_mqtt_error err;
    iotc_mqtt_packet p;
    size_t used = 0, w = 0;
    uint8_t type, flags, out[8];
    uint32_t rem;
    size_t hl;

    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_decode(B(0x00, 0x00), V5, 0, &p, &used, &err), IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.status, IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.reason, 0x81);
    assert_int_equal(err.offset, 0);

    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x00, 0x00), V5, &type, &flags, &rem, &hl, &err),
                     IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.status, IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.reason, 0x81);
    assert_int_equal(err.offset, 0);

    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30, 0xFF, 0xFF, 0xFF, 0xFF), V5, &type, &flags, &rem, &hl, &err),
                     IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.status, IOTC_MQTT_ERR_MALFORMED);
    assert_true(err.offset >= 1 && err.offset <= 4);

    init(&p, IOTC_MQTT_PUBLISH);
    p.u.publish.topic = iotc_mqtt_str("a/#");
    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_encode(&p, V5, out, sizeof out, &w, &err), IOTC_MQTT_ERR_INVALID_ARG);
    assert_int_equal(err.status, IOTC_MQTT_ERR_INVALID_ARG);
    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &w, &err), IOTC_MQTT_ERR_INVALID_ARG);
    assert_int_equal(err.status, IOTC_MQTT_ERR_INVALID_ARG);

    p.u.publish.topic = iotc_mqtt_str("a/b/c/d");
    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_encode(&p, V5, out, 4, &w, &err), IOTC_MQTT_ERR_BUFFER);
    assert_int_equal(err.status, IOTC_MQTT_ERR_BUFFER);

    iotc_mqtt_reader r;
    size_t consumed;
    iotc_mqtt_reader_init(&r, V5, 0, NULL, 0);
    memset(&err, 0xA5, sizeof err);
    assert_int_equal(iotc_mqtt_reader_feed(&r, B(0x00, 0x00), &consumed, &p, &err), IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.status, IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.offset, 0);
    iotc_mqtt_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_v4),
        cmocka_unit_test(test_connect_v5),
        cmocka_unit_test(test_connect_v5_password_without_username),
        cmocka_unit_test(test_connect_decoded_by_own_level),
        cmocka_unit_test(test_connect_v5_fields),
        cmocka_unit_test(test_connack),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_publish_v5_lists),
        cmocka_unit_test(test_publish_forward_from_raw),
        cmocka_unit_test(test_remaining_length_boundaries),
        cmocka_unit_test(test_fixed_header),
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_acks_v5_short_forms),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_subscribe_v5_fields),
        cmocka_unit_test(test_subscribe_v5_option_bits),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_disconnect_auth_v5),
        cmocka_unit_test(test_prop_allowed_table),
        cmocka_unit_test(test_every_property_where_allowed),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_reason_allowed_tables),
        cmocka_unit_test(test_vbi_encode),
        cmocka_unit_test(test_encoded_size_and_buffer),
        cmocka_unit_test(test_all_samples_reencode),
        cmocka_unit_test(test_err_need_not_be_cleared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
