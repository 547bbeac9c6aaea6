/*
 * fuzz/fuzz_util.h: checks shared by the codec harnesses (header-only).
 *
 * A failed check prints where and why on stderr and calls abort(), which
 * libFuzzer reports as a crash (and saves the input), and which fails a corpus
 * replay.  Everything here is static and stateless, so that the result for one
 * input never depends on the inputs run before it.
 */
#ifndef IOTC_FUZZ_UTIL_H
#define IOTC_FUZZ_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static inline void fz_fail(const char *file, int line, const char *ctx, const char *what)
{
    fprintf(stderr, "%s:%d: check failed (%s): %s\n", file, line, ctx ? ctx : "-", what);
    abort();
}

#define FZ_EXPECT(ctx, cond)                                   \
    do {                                                       \
        if (!(cond))                                           \
            fz_fail(__FILE__, __LINE__, (ctx), #cond);         \
    } while (0)

static inline bool fz_bytes_eq(iotc_mqtt_bytes a, iotc_mqtt_bytes b)
{
    if (a.len != b.len)
        return false;
    /* memcmp(NULL, NULL, 0) is undefined; UBSan would report it. */
    return a.len == 0 || memcmp(a.data, b.data, a.len) == 0;
}

static inline bool fz_is_error(iotc_mqtt_status s)
{
    return s >= IOTC_MQTT_ERR_MALFORMED;
}

/* The protocol level a decoded packet was read at: a CONNECT carries its own. */
static inline iotc_mqtt_version fz_packet_version(const iotc_mqtt_packet *p, iotc_mqtt_version session)
{
    return p->type == IOTC_MQTT_CONNECT ? p->u.connect.version : session;
}

/* ---- visiting every view of a packet ------------------------------------- */

/*
 * Sums every byte a packet's views cover (so that ASan and Valgrind see a read
 * of each one) and, when bounds are given, checks that each view lies inside
 * one of two regions: a decoded packet's views must point into the bytes it
 * was decoded from.
 */
typedef struct {
    const char *ctx;
    size_t sum;
    size_t views;
    bool bounded;
    uintptr_t lo[2], hi[2];
} fz_visit;

static inline void fz_visit_init(fz_visit *v, const char *ctx)
{
    memset(v, 0, sizeof *v);
    v->ctx = ctx;
}

static inline void fz_visit_bound(fz_visit *v, int i, const void *p, size_t len)
{
    v->bounded = true;
    v->lo[i] = (uintptr_t)p;
    v->hi[i] = (uintptr_t)p + len;
}

static inline void fz_view(fz_visit *v, iotc_mqtt_bytes b)
{
    v->views++;
    if (b.len == 0)
        return;
    FZ_EXPECT(v->ctx, b.data != NULL);
    if (v->bounded) {
        uintptr_t s = (uintptr_t)b.data, e = s + b.len;
        bool in0 = s >= v->lo[0] && e <= v->hi[0] && e >= s;
        bool in1 = s >= v->lo[1] && e <= v->hi[1] && e >= s;
        FZ_EXPECT(v->ctx, in0 || in1);
    }
    size_t sum = 0;
    for (size_t i = 0; i < b.len; i++)
        sum += b.data[i];
    v->sum += sum;
}

static inline void fz_visit_props(fz_visit *v, const iotc_mqtt_props *p)
{
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_CONTENT_TYPE))
        fz_view(v, p->content_type);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_RESPONSE_TOPIC))
        fz_view(v, p->response_topic);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_CORRELATION_DATA))
        fz_view(v, p->correlation_data);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER))
        fz_view(v, p->assigned_client_identifier);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_AUTHENTICATION_METHOD))
        fz_view(v, p->authentication_method);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_AUTHENTICATION_DATA))
        fz_view(v, p->authentication_data);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_RESPONSE_INFORMATION))
        fz_view(v, p->response_information);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_SERVER_REFERENCE))
        fz_view(v, p->server_reference);
    if (p->present & IOTC_PROP_BIT(IOTC_PROP_REASON_STRING))
        fz_view(v, p->reason_string);
    if (!p->user)
        fz_view(v, p->raw);

    size_t pos = 0, n = 0;
    iotc_mqtt_user_prop up;
    while (iotc_mqtt_user_prop_next(p, &pos, &up)) {
        FZ_EXPECT(v->ctx, n < p->user_count);
        fz_view(v, up.key);
        fz_view(v, up.value);
        n++;
    }
    FZ_EXPECT(v->ctx, n == p->user_count);

    pos = 0;
    n = 0;
    uint32_t id;
    while (iotc_mqtt_sub_id_next(p, &pos, &id)) {
        FZ_EXPECT(v->ctx, n < p->sub_id_count);
        FZ_EXPECT(v->ctx, id >= 1 && id <= IOTC_MQTT_VBI_MAX);
        v->sum += id;
        n++;
    }
    FZ_EXPECT(v->ctx, n == p->sub_id_count);
}

/* `session` is the level the packet was decoded (or is to be encoded) at. */
static inline void fz_visit_packet(fz_visit *v, const iotc_mqtt_packet *p, iotc_mqtt_version session)
{
    bool v5 = fz_packet_version(p, session) == IOTC_MQTT_V5;
    switch (p->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *c = &p->u.connect;
        fz_view(v, c->client_id);
        if (c->will) {
            fz_view(v, c->will_topic);
            fz_view(v, c->will_payload);
            if (v5)
                fz_visit_props(v, &c->will_props);
        }
        if (c->has_username)
            fz_view(v, c->username);
        if (c->has_password)
            fz_view(v, c->password);
        if (v5)
            fz_visit_props(v, &c->props);
        break;
    }
    case IOTC_MQTT_CONNACK:
        if (v5)
            fz_visit_props(v, &p->u.connack.props);
        break;
    case IOTC_MQTT_PUBLISH:
        fz_view(v, p->u.publish.topic);
        fz_view(v, p->u.publish.payload);
        if (v5)
            fz_visit_props(v, &p->u.publish.props);
        break;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        if (v5)
            fz_visit_props(v, &p->u.ack.props);
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *s = &p->u.subscribe;
        if (!s->subs)
            fz_view(v, s->raw);
        size_t pos = 0, n = 0;
        iotc_mqtt_sub sub;
        while (iotc_mqtt_sub_next(s, &pos, &sub)) {
            FZ_EXPECT(v->ctx, n < s->count);
            fz_view(v, sub.filter);
            v->sum += sub.qos;
            n++;
        }
        FZ_EXPECT(v->ctx, n == s->count);
        if (v5)
            fz_visit_props(v, &s->props);
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        iotc_mqtt_bytes codes = {p->u.suback.codes, p->u.suback.count};
        fz_view(v, codes);
        if (v5)
            fz_visit_props(v, &p->u.suback.props);
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        const iotc_mqtt_unsubscribe *u = &p->u.unsubscribe;
        if (!u->filters)
            fz_view(v, u->raw);
        size_t pos = 0, n = 0;
        iotc_mqtt_bytes f;
        while (iotc_mqtt_unsub_next(u, &pos, &f)) {
            FZ_EXPECT(v->ctx, n < u->count);
            fz_view(v, f);
            n++;
        }
        FZ_EXPECT(v->ctx, n == u->count);
        if (v5)
            fz_visit_props(v, &u->props);
        break;
    }
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP:
        break;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (v5)
            fz_visit_props(v, &p->u.disconnect.props);
        break;
    default:
        fz_fail(__FILE__, __LINE__, v->ctx, "decoded packet of a reserved type");
    }
}

/* ---- comparing two packets field by field -------------------------------- */

/*
 * `raw_too`: also compare the raw list bytes.  Two decodes of the same bytes
 * must agree on them; a decode of a re-encoding need not (property order).
 */
static inline void fz_props_eq(const char *ctx, const iotc_mqtt_props *a, const iotc_mqtt_props *b,
                               bool raw_too)
{
    FZ_EXPECT(ctx, a->present == b->present);
    uint64_t p = a->present;
#define FZ_PROP_INT(id, f)                                      \
    if (p & IOTC_PROP_BIT(id))                                  \
    FZ_EXPECT(ctx, a->f == b->f)
#define FZ_PROP_BYTES(id, f)                                    \
    if (p & IOTC_PROP_BIT(id))                                  \
    FZ_EXPECT(ctx, fz_bytes_eq(a->f, b->f))
    FZ_PROP_INT(IOTC_PROP_PAYLOAD_FORMAT_INDICATOR, payload_format_indicator);
    FZ_PROP_INT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL, message_expiry_interval);
    FZ_PROP_BYTES(IOTC_PROP_CONTENT_TYPE, content_type);
    FZ_PROP_BYTES(IOTC_PROP_RESPONSE_TOPIC, response_topic);
    FZ_PROP_BYTES(IOTC_PROP_CORRELATION_DATA, correlation_data);
    FZ_PROP_INT(IOTC_PROP_SESSION_EXPIRY_INTERVAL, session_expiry_interval);
    FZ_PROP_BYTES(IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER, assigned_client_identifier);
    FZ_PROP_INT(IOTC_PROP_SERVER_KEEP_ALIVE, server_keep_alive);
    FZ_PROP_BYTES(IOTC_PROP_AUTHENTICATION_METHOD, authentication_method);
    FZ_PROP_BYTES(IOTC_PROP_AUTHENTICATION_DATA, authentication_data);
    FZ_PROP_INT(IOTC_PROP_REQUEST_PROBLEM_INFORMATION, request_problem_information);
    FZ_PROP_INT(IOTC_PROP_WILL_DELAY_INTERVAL, will_delay_interval);
    FZ_PROP_INT(IOTC_PROP_REQUEST_RESPONSE_INFORMATION, request_response_information);
    FZ_PROP_BYTES(IOTC_PROP_RESPONSE_INFORMATION, response_information);
    FZ_PROP_BYTES(IOTC_PROP_SERVER_REFERENCE, server_reference);
    FZ_PROP_BYTES(IOTC_PROP_REASON_STRING, reason_string);
    FZ_PROP_INT(IOTC_PROP_RECEIVE_MAXIMUM, receive_maximum);
    FZ_PROP_INT(IOTC_PROP_TOPIC_ALIAS_MAXIMUM, topic_alias_maximum);
    FZ_PROP_INT(IOTC_PROP_TOPIC_ALIAS, topic_alias);
    FZ_PROP_INT(IOTC_PROP_MAXIMUM_QOS, maximum_qos);
    FZ_PROP_INT(IOTC_PROP_RETAIN_AVAILABLE, retain_available);
    FZ_PROP_INT(IOTC_PROP_MAXIMUM_PACKET_SIZE, maximum_packet_size);
    FZ_PROP_INT(IOTC_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, wildcard_subscription_available);
    FZ_PROP_INT(IOTC_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, subscription_identifier_available);
    FZ_PROP_INT(IOTC_PROP_SHARED_SUBSCRIPTION_AVAILABLE, shared_subscription_available);
#undef FZ_PROP_INT
#undef FZ_PROP_BYTES

    /* User properties keep their order on the wire (MQTT 5 §3.3.2.3.7). */
    FZ_EXPECT(ctx, a->user_count == b->user_count);
    size_t pa = 0, pb = 0;
    iotc_mqtt_user_prop ua, ub;
    for (size_t i = 0; i < a->user_count; i++) {
        FZ_EXPECT(ctx, iotc_mqtt_user_prop_next(a, &pa, &ua));
        FZ_EXPECT(ctx, iotc_mqtt_user_prop_next(b, &pb, &ub));
        FZ_EXPECT(ctx, fz_bytes_eq(ua.key, ub.key));
        FZ_EXPECT(ctx, fz_bytes_eq(ua.value, ub.value));
    }
    FZ_EXPECT(ctx, !iotc_mqtt_user_prop_next(a, &pa, &ua));
    FZ_EXPECT(ctx, !iotc_mqtt_user_prop_next(b, &pb, &ub));

    FZ_EXPECT(ctx, a->sub_id_count == b->sub_id_count);
    pa = pb = 0;
    uint32_t ia, ib;
    for (size_t i = 0; i < a->sub_id_count; i++) {
        FZ_EXPECT(ctx, iotc_mqtt_sub_id_next(a, &pa, &ia));
        FZ_EXPECT(ctx, iotc_mqtt_sub_id_next(b, &pb, &ib));
        FZ_EXPECT(ctx, ia == ib);
    }
    FZ_EXPECT(ctx, !iotc_mqtt_sub_id_next(a, &pa, &ia));
    FZ_EXPECT(ctx, !iotc_mqtt_sub_id_next(b, &pb, &ib));

    if (raw_too)
        FZ_EXPECT(ctx, fz_bytes_eq(a->raw, b->raw));
}

/*
 * Compares the fields that mean something for the packet's type and level
 * (mqtt.h says which: e.g. packet_id only for QoS > 0, will_* only with a
 * Will, properties only in MQTT 5).
 */
static inline void fz_packet_eq(const char *ctx, const iotc_mqtt_packet *a, const iotc_mqtt_packet *b,
                                iotc_mqtt_version session, bool raw_too)
{
    FZ_EXPECT(ctx, a->type == b->type);
    if (a->type == IOTC_MQTT_CONNECT)
        FZ_EXPECT(ctx, a->u.connect.version == b->u.connect.version);
    bool v5 = fz_packet_version(a, session) == IOTC_MQTT_V5;
    switch (a->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        FZ_EXPECT(ctx, x->clean_start == y->clean_start);
        FZ_EXPECT(ctx, x->keep_alive == y->keep_alive);
        FZ_EXPECT(ctx, fz_bytes_eq(x->client_id, y->client_id));
        FZ_EXPECT(ctx, x->will == y->will);
        if (x->will) {
            FZ_EXPECT(ctx, x->will_qos == y->will_qos);
            FZ_EXPECT(ctx, x->will_retain == y->will_retain);
            FZ_EXPECT(ctx, fz_bytes_eq(x->will_topic, y->will_topic));
            FZ_EXPECT(ctx, fz_bytes_eq(x->will_payload, y->will_payload));
            if (v5)
                fz_props_eq(ctx, &x->will_props, &y->will_props, raw_too);
        }
        FZ_EXPECT(ctx, x->has_username == y->has_username);
        if (x->has_username)
            FZ_EXPECT(ctx, fz_bytes_eq(x->username, y->username));
        FZ_EXPECT(ctx, x->has_password == y->has_password);
        if (x->has_password)
            FZ_EXPECT(ctx, fz_bytes_eq(x->password, y->password));
        if (v5)
            fz_props_eq(ctx, &x->props, &y->props, raw_too);
        break;
    }
    case IOTC_MQTT_CONNACK:
        FZ_EXPECT(ctx, a->u.connack.session_present == b->u.connack.session_present);
        FZ_EXPECT(ctx, a->u.connack.reason == b->u.connack.reason);
        if (v5)
            fz_props_eq(ctx, &a->u.connack.props, &b->u.connack.props, raw_too);
        break;
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        FZ_EXPECT(ctx, x->dup == y->dup);
        FZ_EXPECT(ctx, x->qos == y->qos);
        FZ_EXPECT(ctx, x->retain == y->retain);
        FZ_EXPECT(ctx, fz_bytes_eq(x->topic, y->topic));
        if (x->qos > 0)
            FZ_EXPECT(ctx, x->packet_id == y->packet_id);
        FZ_EXPECT(ctx, fz_bytes_eq(x->payload, y->payload));
        if (v5)
            fz_props_eq(ctx, &x->props, &y->props, raw_too);
        break;
    }
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        FZ_EXPECT(ctx, a->u.ack.packet_id == b->u.ack.packet_id);
        if (v5) {
            FZ_EXPECT(ctx, a->u.ack.reason == b->u.ack.reason);
            fz_props_eq(ctx, &a->u.ack.props, &b->u.ack.props, raw_too);
        }
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *x = &a->u.subscribe, *y = &b->u.subscribe;
        FZ_EXPECT(ctx, x->packet_id == y->packet_id);
        FZ_EXPECT(ctx, x->count == y->count);
        size_t px = 0, py = 0;
        iotc_mqtt_sub sx, sy;
        for (size_t i = 0; i < x->count; i++) {
            FZ_EXPECT(ctx, iotc_mqtt_sub_next(x, &px, &sx));
            FZ_EXPECT(ctx, iotc_mqtt_sub_next(y, &py, &sy));
            FZ_EXPECT(ctx, fz_bytes_eq(sx.filter, sy.filter));
            FZ_EXPECT(ctx, sx.qos == sy.qos);
            if (v5) {
                FZ_EXPECT(ctx, sx.no_local == sy.no_local);
                FZ_EXPECT(ctx, sx.retain_as_published == sy.retain_as_published);
                FZ_EXPECT(ctx, sx.retain_handling == sy.retain_handling);
            }
        }
        FZ_EXPECT(ctx, !iotc_mqtt_sub_next(x, &px, &sx));
        FZ_EXPECT(ctx, !iotc_mqtt_sub_next(y, &py, &sy));
        if (raw_too)
            FZ_EXPECT(ctx, fz_bytes_eq(x->raw, y->raw));
        if (v5)
            fz_props_eq(ctx, &x->props, &y->props, raw_too);
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        const iotc_mqtt_suback *x = &a->u.suback, *y = &b->u.suback;
        FZ_EXPECT(ctx, x->packet_id == y->packet_id);
        if (a->type == IOTC_MQTT_UNSUBACK && !v5)
            break; /* a 3.1.1 UNSUBACK has no codes */
        FZ_EXPECT(ctx, x->count == y->count);
        if (x->count)
            FZ_EXPECT(ctx, memcmp(x->codes, y->codes, x->count) == 0);
        if (v5)
            fz_props_eq(ctx, &x->props, &y->props, raw_too);
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        const iotc_mqtt_unsubscribe *x = &a->u.unsubscribe, *y = &b->u.unsubscribe;
        FZ_EXPECT(ctx, x->packet_id == y->packet_id);
        FZ_EXPECT(ctx, x->count == y->count);
        size_t px = 0, py = 0;
        iotc_mqtt_bytes fx, fy;
        for (size_t i = 0; i < x->count; i++) {
            FZ_EXPECT(ctx, iotc_mqtt_unsub_next(x, &px, &fx));
            FZ_EXPECT(ctx, iotc_mqtt_unsub_next(y, &py, &fy));
            FZ_EXPECT(ctx, fz_bytes_eq(fx, fy));
        }
        FZ_EXPECT(ctx, !iotc_mqtt_unsub_next(x, &px, &fx));
        FZ_EXPECT(ctx, !iotc_mqtt_unsub_next(y, &py, &fy));
        if (raw_too)
            FZ_EXPECT(ctx, fz_bytes_eq(x->raw, y->raw));
        if (v5)
            fz_props_eq(ctx, &x->props, &y->props, raw_too);
        break;
    }
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP:
        break;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (v5) {
            FZ_EXPECT(ctx, a->u.disconnect.reason == b->u.disconnect.reason);
            fz_props_eq(ctx, &a->u.disconnect.props, &b->u.disconnect.props, raw_too);
        }
        break;
    default:
        fz_fail(__FILE__, __LINE__, ctx, "packet of a reserved type");
    }
}

static inline void fz_err_eq(const char *ctx, const iotc_mqtt_error *a, const iotc_mqtt_error *b)
{
    FZ_EXPECT(ctx, a->status == b->status);
    FZ_EXPECT(ctx, a->reason == b->reason);
    FZ_EXPECT(ctx, a->offset == b->offset);
    FZ_EXPECT(ctx, (a->what == NULL) == (b->what == NULL));
    if (a->what && b->what)
        FZ_EXPECT(ctx, strcmp(a->what, b->what) == 0);
}

/* What mqtt.h promises of every decode failure. */
static inline void fz_check_error(const char *ctx, iotc_mqtt_status st, const iotc_mqtt_error *e,
                                  size_t avail)
{
    FZ_EXPECT(ctx, fz_is_error(st));
    FZ_EXPECT(ctx, st != IOTC_MQTT_ERR_BUFFER && st != IOTC_MQTT_ERR_INVALID_ARG);
    FZ_EXPECT(ctx, e->status == st);
    FZ_EXPECT(ctx, e->what != NULL && e->what[0] != '\0');
    FZ_EXPECT(ctx, e->reason >= 0x80);
    FZ_EXPECT(ctx, e->offset <= avail);
    FZ_EXPECT(ctx, iotc_mqtt_status_str(st) != NULL);
}

/* Properties a decoder hands out must be on the packet type's allow-list. */
static inline void fz_check_props_allowed(const char *ctx, const iotc_mqtt_props *p, iotc_mqtt_type t,
                                          bool will)
{
    for (unsigned id = 0; id < 64; id++) {
        if (!(p->present & IOTC_PROP_BIT(id)))
            continue;
        FZ_EXPECT(ctx, iotc_mqtt_prop_name(id) != NULL);
        FZ_EXPECT(ctx, iotc_mqtt_prop_allowed(id, t, will));
    }
    if (p->user_count)
        FZ_EXPECT(ctx, iotc_mqtt_prop_allowed(IOTC_PROP_USER_PROPERTY, t, will));
    if (p->sub_id_count)
        FZ_EXPECT(ctx, iotc_mqtt_prop_allowed(IOTC_PROP_SUBSCRIPTION_IDENTIFIER, t, will));
}

static inline const iotc_mqtt_props *fz_packet_props(const iotc_mqtt_packet *p)
{
    switch (p->type) {
    case IOTC_MQTT_CONNECT:
        return &p->u.connect.props;
    case IOTC_MQTT_CONNACK:
        return &p->u.connack.props;
    case IOTC_MQTT_PUBLISH:
        return &p->u.publish.props;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        return &p->u.ack.props;
    case IOTC_MQTT_SUBSCRIBE:
        return &p->u.subscribe.props;
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK:
        return &p->u.suback.props;
    case IOTC_MQTT_UNSUBSCRIBE:
        return &p->u.unsubscribe.props;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        return &p->u.disconnect.props;
    default:
        return NULL;
    }
}

/* Invariants of any packet the decoder accepted. */
static inline void fz_check_decoded(const char *ctx, const iotc_mqtt_packet *p, iotc_mqtt_version session)
{
    FZ_EXPECT(ctx, p->type >= IOTC_MQTT_CONNECT && p->type <= IOTC_MQTT_AUTH);
    if (p->type == IOTC_MQTT_AUTH)
        FZ_EXPECT(ctx, session == IOTC_MQTT_V5);
    if (p->type == IOTC_MQTT_CONNECT)
        FZ_EXPECT(ctx, p->u.connect.version == IOTC_MQTT_V311 || p->u.connect.version == IOTC_MQTT_V5);
    const char *name = iotc_mqtt_type_name((unsigned)p->type);
    FZ_EXPECT(ctx, name != NULL && strcmp(name, "RESERVED") != 0);
    if (fz_packet_version(p, session) != IOTC_MQTT_V5)
        return;
    const iotc_mqtt_props *props = fz_packet_props(p);
    if (props)
        fz_check_props_allowed(ctx, props, p->type, false);
    if (p->type == IOTC_MQTT_CONNECT && p->u.connect.will)
        fz_check_props_allowed(ctx, &p->u.connect.will_props, IOTC_MQTT_CONNECT, true);
}

#endif
