/*
 * props.c: MQTT 5 properties (§2.2.2): the table of identifiers with their
 * data types and the packets that may carry them, decoding with every rule
 * the spec states (allow-list, duplicates, ranges, lengths), validation and
 * encoding, and walking the repeatable ones in a raw block.
 */
#include <string.h>

#include "codec_internal.h"
#include "iotc/topic.h"

enum { T_BYTE = 1, T_U16, T_U32, T_VBI, T_STR, T_BIN, T_PAIR };

/* Bit 0 of an allow mask stands for the Will properties (type 0 is reserved). */
#define WILL_BIT 1u
#define PK(t) (1u << (t))
#define ACKS (PK(IOTC_MQTT_PUBACK) | PK(IOTC_MQTT_PUBREC) | PK(IOTC_MQTT_PUBREL) | PK(IOTC_MQTT_PUBCOMP))
#define ALL_WITH_PROPS                                                                                    \
    (WILL_BIT | PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK) | PK(IOTC_MQTT_PUBLISH) | ACKS |            \
     PK(IOTC_MQTT_SUBSCRIBE) | PK(IOTC_MQTT_SUBACK) | PK(IOTC_MQTT_UNSUBSCRIBE) | PK(IOTC_MQTT_UNSUBACK) | \
     PK(IOTC_MQTT_DISCONNECT) | PK(IOTC_MQTT_AUTH))

typedef struct {
    uint8_t type;
    uint16_t allow;
    const char *name;
} prop_info;

static const prop_info PROPS[0x2B] = {
    [0x01] = {T_BYTE, WILL_BIT | PK(IOTC_MQTT_PUBLISH), "Payload Format Indicator"},
    [0x02] = {T_U32, WILL_BIT | PK(IOTC_MQTT_PUBLISH), "Message Expiry Interval"},
    [0x03] = {T_STR, WILL_BIT | PK(IOTC_MQTT_PUBLISH), "Content Type"},
    [0x08] = {T_STR, WILL_BIT | PK(IOTC_MQTT_PUBLISH), "Response Topic"},
    [0x09] = {T_BIN, WILL_BIT | PK(IOTC_MQTT_PUBLISH), "Correlation Data"},
    [0x0B] = {T_VBI, PK(IOTC_MQTT_PUBLISH) | PK(IOTC_MQTT_SUBSCRIBE), "Subscription Identifier"},
    [0x11] = {T_U32, PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK) | PK(IOTC_MQTT_DISCONNECT),
              "Session Expiry Interval"},
    [0x12] = {T_STR, PK(IOTC_MQTT_CONNACK), "Assigned Client Identifier"},
    [0x13] = {T_U16, PK(IOTC_MQTT_CONNACK), "Server Keep Alive"},
    [0x15] = {T_STR, PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK) | PK(IOTC_MQTT_AUTH), "Authentication Method"},
    [0x16] = {T_BIN, PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK) | PK(IOTC_MQTT_AUTH), "Authentication Data"},
    [0x17] = {T_BYTE, PK(IOTC_MQTT_CONNECT), "Request Problem Information"},
    [0x18] = {T_U32, WILL_BIT, "Will Delay Interval"},
    [0x19] = {T_BYTE, PK(IOTC_MQTT_CONNECT), "Request Response Information"},
    [0x1A] = {T_STR, PK(IOTC_MQTT_CONNACK), "Response Information"},
    [0x1C] = {T_STR, PK(IOTC_MQTT_CONNACK) | PK(IOTC_MQTT_DISCONNECT), "Server Reference"},
    [0x1F] = {T_STR,
              PK(IOTC_MQTT_CONNACK) | ACKS | PK(IOTC_MQTT_SUBACK) | PK(IOTC_MQTT_UNSUBACK) |
                  PK(IOTC_MQTT_DISCONNECT) | PK(IOTC_MQTT_AUTH),
              "Reason String"},
    [0x21] = {T_U16, PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK), "Receive Maximum"},
    [0x22] = {T_U16, PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK), "Topic Alias Maximum"},
    [0x23] = {T_U16, PK(IOTC_MQTT_PUBLISH), "Topic Alias"},
    [0x24] = {T_BYTE, PK(IOTC_MQTT_CONNACK), "Maximum QoS"},
    [0x25] = {T_BYTE, PK(IOTC_MQTT_CONNACK), "Retain Available"},
    [0x26] = {T_PAIR, ALL_WITH_PROPS, "User Property"},
    [0x27] = {T_U32, PK(IOTC_MQTT_CONNECT) | PK(IOTC_MQTT_CONNACK), "Maximum Packet Size"},
    [0x28] = {T_BYTE, PK(IOTC_MQTT_CONNACK), "Wildcard Subscription Available"},
    [0x29] = {T_BYTE, PK(IOTC_MQTT_CONNACK), "Subscription Identifier Available"},
    [0x2A] = {T_BYTE, PK(IOTC_MQTT_CONNACK), "Shared Subscription Available"},
};

#define NPROPS (sizeof PROPS / sizeof PROPS[0])

/* Every single-valued property id, for iterating the `present` mask. */
#define SINGLE_MASK                                                                                       \
    (IOTC_PROP_BIT(0x01) | IOTC_PROP_BIT(0x02) | IOTC_PROP_BIT(0x03) | IOTC_PROP_BIT(0x08) |               \
     IOTC_PROP_BIT(0x09) | IOTC_PROP_BIT(0x11) | IOTC_PROP_BIT(0x12) | IOTC_PROP_BIT(0x13) |               \
     IOTC_PROP_BIT(0x15) | IOTC_PROP_BIT(0x16) | IOTC_PROP_BIT(0x17) | IOTC_PROP_BIT(0x18) |               \
     IOTC_PROP_BIT(0x19) | IOTC_PROP_BIT(0x1A) | IOTC_PROP_BIT(0x1C) | IOTC_PROP_BIT(0x1F) |               \
     IOTC_PROP_BIT(0x21) | IOTC_PROP_BIT(0x22) | IOTC_PROP_BIT(0x23) | IOTC_PROP_BIT(0x24) |               \
     IOTC_PROP_BIT(0x25) | IOTC_PROP_BIT(0x27) | IOTC_PROP_BIT(0x28) | IOTC_PROP_BIT(0x29) |               \
     IOTC_PROP_BIT(0x2A))

/* The properties value_rule() has something to say about. */
#define RULE_MASK                                                                                         \
    (IOTC_PROP_BIT(0x01) | IOTC_PROP_BIT(0x08) | IOTC_PROP_BIT(0x17) | IOTC_PROP_BIT(0x19) |               \
     IOTC_PROP_BIT(0x21) | IOTC_PROP_BIT(0x23) | IOTC_PROP_BIT(0x24) | IOTC_PROP_BIT(0x25) |               \
     IOTC_PROP_BIT(0x27) | IOTC_PROP_BIT(0x28) | IOTC_PROP_BIT(0x29) | IOTC_PROP_BIT(0x2A))

const char *iotc_mqtt_prop_name(unsigned id)
{
    return id < NPROPS && PROPS[id].type ? PROPS[id].name : NULL;
}

bool iotc_mqtt_prop_allowed(unsigned id, iotc_mqtt_type type, bool will)
{
    if (id >= NPROPS || !PROPS[id].type)
        return false;
    if (will)
        return type == IOTC_MQTT_CONNECT && (PROPS[id].allow & WILL_BIT);
    return (unsigned)type < 16 && (PROPS[id].allow & PK(type));
}

bool mq_props_empty(const iotc_mqtt_props *p)
{
    return !p->present && !p->user_count && !p->sub_id_count;
}

/* Pointers to the field that holds each single-valued property. */
static uint8_t *byte_field(iotc_mqtt_props *p, unsigned id)
{
    switch (id) {
    case 0x01: return &p->payload_format_indicator;
    case 0x17: return &p->request_problem_information;
    case 0x19: return &p->request_response_information;
    case 0x24: return &p->maximum_qos;
    case 0x25: return &p->retain_available;
    case 0x28: return &p->wildcard_subscription_available;
    case 0x29: return &p->subscription_identifier_available;
    default: return &p->shared_subscription_available; /* 0x2A */
    }
}

static uint16_t *u16_field(iotc_mqtt_props *p, unsigned id)
{
    switch (id) {
    case 0x13: return &p->server_keep_alive;
    case 0x21: return &p->receive_maximum;
    case 0x22: return &p->topic_alias_maximum;
    default: return &p->topic_alias; /* 0x23 */
    }
}

static uint32_t *u32_field(iotc_mqtt_props *p, unsigned id)
{
    switch (id) {
    case 0x02: return &p->message_expiry_interval;
    case 0x11: return &p->session_expiry_interval;
    case 0x18: return &p->will_delay_interval;
    default: return &p->maximum_packet_size; /* 0x27 */
    }
}

static iotc_mqtt_bytes *bytes_field(iotc_mqtt_props *p, unsigned id)
{
    switch (id) {
    case 0x03: return &p->content_type;
    case 0x08: return &p->response_topic;
    case 0x09: return &p->correlation_data;
    case 0x12: return &p->assigned_client_identifier;
    case 0x15: return &p->authentication_method;
    case 0x16: return &p->authentication_data;
    case 0x1A: return &p->response_information;
    case 0x1C: return &p->server_reference;
    default: return &p->reason_string; /* 0x1F */
    }
}

/* The const views of the same fields, for validation and encoding. */
#define CFIELD(fn, p, id) (*fn((iotc_mqtt_props *)(uintptr_t)(p), (id)))

/*
 * The value rules of §3 that do not depend on the packet.  Returns NULL when
 * fine, else the rule; *reason is the code a receiver would send.
 */
static const char *value_rule(const iotc_mqtt_props *p, unsigned id, uint8_t *reason)
{
    *reason = IOTC_RC_PROTOCOL_ERROR;
    switch (id) {
    case 0x01: return CFIELD(byte_field, p, id) > 1 ? "Payload Format Indicator must be 0 or 1" : NULL;
    case 0x17: return CFIELD(byte_field, p, id) > 1 ? "Request Problem Information must be 0 or 1" : NULL;
    case 0x19: return CFIELD(byte_field, p, id) > 1 ? "Request Response Information must be 0 or 1" : NULL;
    case 0x24: return CFIELD(byte_field, p, id) > 1 ? "Maximum QoS must be 0 or 1" : NULL;
    case 0x25:
    case 0x28:
    case 0x29:
    case 0x2A: return CFIELD(byte_field, p, id) > 1 ? "a CONNACK availability flag must be 0 or 1" : NULL;
    case 0x21: return CFIELD(u16_field, p, id) == 0 ? "Receive Maximum must not be 0" : NULL;
    case 0x27: return CFIELD(u32_field, p, id) == 0 ? "Maximum Packet Size must not be 0" : NULL;
    case 0x23:
        *reason = IOTC_RC_TOPIC_ALIAS_INVALID;
        return CFIELD(u16_field, p, id) == 0 ? "Topic Alias must not be 0" : NULL;
    case 0x08: {
        const iotc_mqtt_bytes *t = &p->response_topic;
        if (iotc_topic_name_check((const char *)t->data, t->len) != IOTC_TOPIC_OK)
            return "Response Topic must be a valid topic name (no wildcards)";
        return NULL;
    }
    default: return NULL;
    }
}

static const char *packet_rule(const iotc_mqtt_props *p, iotc_mqtt_type type)
{
    if ((type == IOTC_MQTT_CONNECT || type == IOTC_MQTT_CONNACK || type == IOTC_MQTT_AUTH) &&
        (p->present & IOTC_PROP_BIT(0x16)) && !(p->present & IOTC_PROP_BIT(0x15)))
        return "Authentication Data without Authentication Method";
    if (type == IOTC_MQTT_SUBSCRIBE && p->sub_id_count > 1)
        return "SUBSCRIBE carries at most one Subscription Identifier";
    return NULL;
}

iotc_mqtt_status mq_props_decode(mq_cur *c, iotc_mqtt_type type, bool will, iotc_mqtt_props *p)
{
    memset(p, 0, sizeof *p);
    uint32_t len;
    if (mq_vbi(c, &len, "property length is not a valid Variable Byte Integer") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (len > mq_left(c))
        return MQ_MALFORMED(c, c->pos, "property length overruns the packet");
    p->raw.data = c->base + c->pos;
    p->raw.len = len;

    mq_cur pc = *c;
    pc.end = c->pos + len;
    while (pc.pos < pc.end) {
        size_t at = pc.pos;
        uint32_t id;
        if (mq_vbi(&pc, &id, "property identifier is not a valid Variable Byte Integer") != IOTC_MQTT_OK)
            return IOTC_MQTT_ERR_MALFORMED;
        if (id >= NPROPS || !PROPS[id].type)
            return MQ_MALFORMED(c, at, "unknown property identifier");
        if (!(PROPS[id].allow & (will ? WILL_BIT : PK(type))))
            return MQ_MALFORMED(c, at, "property not allowed in this packet");
        uint64_t bit = IOTC_PROP_BIT(id);
        if ((SINGLE_MASK & bit) && (p->present & bit))
            return MQ_PROTOCOL(c, at, "property included more than once");
        iotc_mqtt_status st = IOTC_MQTT_OK;
        const char *trunc = "property value overruns the property block";
        switch (PROPS[id].type) {
        case T_BYTE: st = mq_u8(&pc, byte_field(p, id), trunc); break;
        case T_U16: st = mq_u16(&pc, u16_field(p, id), trunc); break;
        case T_U32: st = mq_u32(&pc, u32_field(p, id), trunc); break;
        case T_STR: st = mq_str(&pc, bytes_field(p, id), "property string is not valid UTF-8 or overruns the block"); break;
        case T_BIN: st = mq_bin(&pc, bytes_field(p, id), trunc); break;
        case T_VBI: { /* only the Subscription Identifier */
            uint32_t v;
            st = mq_vbi(&pc, &v, "Subscription Identifier is not a valid Variable Byte Integer");
            if (st == IOTC_MQTT_OK && v == 0)
                return MQ_PROTOCOL(c, at, "Subscription Identifier must not be 0");
            if (st == IOTC_MQTT_OK && type == IOTC_MQTT_SUBSCRIBE && p->sub_id_count)
                return MQ_PROTOCOL(c, at, "SUBSCRIBE carries at most one Subscription Identifier");
            p->sub_id_count++;
            break;
        }
        default: { /* T_PAIR */
            iotc_mqtt_bytes k, v;
            st = mq_str(&pc, &k, "User Property name is not valid UTF-8 or overruns the block");
            if (st == IOTC_MQTT_OK)
                st = mq_str(&pc, &v, "User Property value is not valid UTF-8 or overruns the block");
            p->user_count++;
            break;
        }
        }
        if (st != IOTC_MQTT_OK)
            return st;
        if (SINGLE_MASK & bit) {
            p->present |= bit;
            uint8_t reason;
            const char *rule = (RULE_MASK & bit) ? value_rule(p, id, &reason) : NULL;
            if (rule)
                return mq_fail(c->err, IOTC_MQTT_ERR_PROTOCOL, reason, at, rule);
        }
    }
    const char *rule = packet_rule(p, type);
    if (rule)
        return MQ_PROTOCOL(c, (size_t)(p->raw.data - c->base), rule);
    c->pos = pc.end;
    return IOTC_MQTT_OK;
}

/* ---- walking a raw block ---- */

/* Advances over one property of a raw block; false at the end or on bad bytes. */
static bool raw_next(const iotc_mqtt_bytes *raw, size_t *pos, uint32_t *id, mq_cur *vc)
{
    if (!raw->data || *pos >= raw->len)
        return false;
    mq_cur c = {raw->data, *pos, raw->len, NULL};
    if (mq_vbi(&c, id, "") != IOTC_MQTT_OK || *id >= NPROPS || !PROPS[*id].type)
        return false;
    *vc = c; /* the value starts here */
    iotc_mqtt_bytes a, b;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    iotc_mqtt_status st;
    switch (PROPS[*id].type) {
    case T_BYTE: st = mq_u8(&c, &u8, ""); break;
    case T_U16: st = mq_u16(&c, &u16, ""); break;
    case T_U32: st = mq_u32(&c, &u32, ""); break;
    case T_VBI: st = mq_vbi(&c, &u32, ""); break;
    case T_STR:
    case T_BIN: st = mq_bin(&c, &a, ""); break;
    default:
        st = mq_bin(&c, &a, "");
        if (st == IOTC_MQTT_OK)
            st = mq_bin(&c, &b, "");
        break;
    }
    if (st != IOTC_MQTT_OK)
        return false;
    *pos = c.pos;
    return true;
}

bool iotc_mqtt_user_prop_next(const iotc_mqtt_props *props, size_t *pos, iotc_mqtt_user_prop *out)
{
    if (props->user) {
        if (*pos >= props->user_count)
            return false;
        *out = props->user[(*pos)++];
        return true;
    }
    if (props->user_count == 0) /* a caller may drop them by zeroing the count */
        return false;
    uint32_t id;
    mq_cur vc;
    while (raw_next(&props->raw, pos, &id, &vc)) {
        if (id == IOTC_PROP_USER_PROPERTY) {
            mq_bin(&vc, &out->key, "");
            mq_bin(&vc, &out->value, "");
            return true;
        }
    }
    return false;
}

bool iotc_mqtt_sub_id_next(const iotc_mqtt_props *props, size_t *pos, uint32_t *out)
{
    if (props->sub_ids) {
        if (*pos >= props->sub_id_count)
            return false;
        *out = props->sub_ids[(*pos)++];
        return true;
    }
    if (props->sub_id_count == 0)
        return false;
    uint32_t id;
    mq_cur vc;
    while (raw_next(&props->raw, pos, &id, &vc)) {
        if (id == IOTC_PROP_SUBSCRIPTION_IDENTIFIER) {
            mq_vbi(&vc, out, "");
            return true;
        }
    }
    return false;
}

/* ---- validation and encoding ---- */


static iotc_mqtt_status bad_arg(iotc_mqtt_error *err, const char *what)
{
    return mq_fail(err, IOTC_MQTT_ERR_INVALID_ARG, IOTC_RC_PROTOCOL_ERROR, 0, what);
}

iotc_mqtt_status mq_props_check(const iotc_mqtt_props *p, iotc_mqtt_type type, bool will, size_t *size,
                                iotc_mqtt_error *err)
{
    size_t n = 0;
    if (p->present & ~SINGLE_MASK)
        return bad_arg(err, "properties: `present` has a bit that is not a single-valued property");
    for (unsigned id = 1; id < NPROPS; id++) {
        if (!(p->present & IOTC_PROP_BIT(id)))
            continue;
        if (!iotc_mqtt_prop_allowed(id, type, will))
            return bad_arg(err, "property not allowed in this packet");
        uint8_t reason;
        const char *rule = value_rule(p, id, &reason);
        if (rule)
            return bad_arg(err, rule);
        switch (PROPS[id].type) {
        case T_BYTE: n += 2; break;
        case T_U16: n += 3; break;
        case T_U32: n += 5; break;
        default: { /* T_STR, T_BIN */
            iotc_mqtt_bytes b = CFIELD(bytes_field, p, id);
            if (b.len > 65535 || (b.len && !b.data))
                return bad_arg(err, "property string or binary data over 65535 bytes or NULL");
            if (PROPS[id].type == T_STR && !mq_str_ok(b))
                return bad_arg(err, "property string is not valid UTF-8");
            n += 3 + b.len;
            break;
        }
        }
    }
    const char *rule = packet_rule(p, type);
    if (rule)
        return bad_arg(err, rule);
    if (p->user_count && !iotc_mqtt_prop_allowed(IOTC_PROP_USER_PROPERTY, type, will))
        return bad_arg(err, "User Property not allowed in this packet");
    if (p->sub_id_count && !iotc_mqtt_prop_allowed(IOTC_PROP_SUBSCRIPTION_IDENTIFIER, type, will))
        return bad_arg(err, "Subscription Identifier not allowed in this packet");

    size_t pos = 0, count = 0;
    iotc_mqtt_user_prop up;
    while (iotc_mqtt_user_prop_next(p, &pos, &up)) {
        if (!mq_str_ok(up.key) || !mq_str_ok(up.value))
            return bad_arg(err, "User Property is not valid UTF-8, or over 65535 bytes");
        n += 5 + up.key.len + up.value.len;
        count++;
    }
    if (count != p->user_count)
        return bad_arg(err, "user_count does not match the User Properties given");
    pos = count = 0;
    uint32_t sid;
    while (iotc_mqtt_sub_id_next(p, &pos, &sid)) {
        if (sid == 0 || sid > IOTC_MQTT_VBI_MAX)
            return bad_arg(err, "Subscription Identifier must be 1..268435455");
        n += 1 + mq_vbi_size(sid);
        count++;
    }
    if (count != p->sub_id_count)
        return bad_arg(err, "sub_id_count does not match the Subscription Identifiers given");
    if (n > IOTC_MQTT_VBI_MAX)
        return bad_arg(err, "property block too large");
    *size = n;
    return IOTC_MQTT_OK;
}

void mq_props_encode(mq_out *o, const iotc_mqtt_props *p, size_t size)
{
    mq_put_vbi(o, (uint32_t)size);
    for (unsigned id = 1; id < NPROPS; id++) {
        if (!(p->present & IOTC_PROP_BIT(id)))
            continue;
        mq_put_u8(o, (uint8_t)id);
        switch (PROPS[id].type) {
        case T_BYTE: mq_put_u8(o, CFIELD(byte_field, p, id)); break;
        case T_U16: mq_put_u16(o, CFIELD(u16_field, p, id)); break;
        case T_U32: mq_put_u32(o, CFIELD(u32_field, p, id)); break;
        default: mq_put_bin(o, CFIELD(bytes_field, p, id)); break;
        }
    }
    size_t pos = 0;
    uint32_t sid;
    while (iotc_mqtt_sub_id_next(p, &pos, &sid)) {
        mq_put_u8(o, IOTC_PROP_SUBSCRIPTION_IDENTIFIER);
        mq_put_vbi(o, sid);
    }
    pos = 0;
    iotc_mqtt_user_prop up;
    while (iotc_mqtt_user_prop_next(p, &pos, &up)) {
        mq_put_u8(o, IOTC_PROP_USER_PROPERTY);
        mq_put_bin(o, up.key);
        mq_put_bin(o, up.value);
    }
}
