/*
 * decode.c: one whole packet from a buffer, strictly by MQTT 3.1.1 and 5.0.
 *
 * Every read goes through the bounds-checked cursor of primitives.c, whose
 * end is the packet's end as its fixed header states it (and never beyond the
 * caller's length), so no length field inside the packet can cause a read past
 * it.  Rules are checked in wire order so that the error offset points at the
 * first offending byte.
 */
#include <string.h>

#include "codec_internal.h"
#include "iotc/topic.h"

int mq_required_flags(unsigned type)
{
    switch (type) {
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_SUBSCRIBE:
    case IOTC_MQTT_UNSUBSCRIBE: return 0x2;
    case IOTC_MQTT_PUBLISH: return -1;
    default: return 0x0;
    }
}

/* The fixed header without clearing *err (iotc_mqtt_decode cleared it). */
static iotc_mqtt_status fixed_header(const uint8_t *buf, size_t len, iotc_mqtt_version version, uint8_t *type,
                                     uint8_t *flags, uint32_t *remaining, size_t *header_len, iotc_mqtt_error *err)
{
    if (len < 1)
        return IOTC_MQTT_NEED_MORE;
    unsigned t = buf[0] >> 4, f = buf[0] & 0xF;
    if (t == 0 || (t == IOTC_MQTT_AUTH && version != IOTC_MQTT_V5))
        return mq_fail(err, IOTC_MQTT_ERR_MALFORMED, IOTC_RC_MALFORMED_PACKET, 0, "reserved packet type");
    if (t == IOTC_MQTT_PUBLISH) {
        unsigned qos = (f >> 1) & 3;
        if (qos == 3)
            return mq_fail(err, IOTC_MQTT_ERR_MALFORMED, IOTC_RC_MALFORMED_PACKET, 0, "PUBLISH with QoS 3");
        if (qos == 0 && (f & 0x8))
            return mq_fail(err, IOTC_MQTT_ERR_MALFORMED, IOTC_RC_MALFORMED_PACKET, 0, "PUBLISH QoS 0 with DUP set");
    } else if ((int)f != mq_required_flags(t)) {
        return mq_fail(err, IOTC_MQTT_ERR_MALFORMED, IOTC_RC_MALFORMED_PACKET, 0,
                       "reserved fixed-header flags have the wrong value");
    }
    size_t n;
    int r = mq_vbi_parse(buf + 1, len - 1, remaining, &n);
    if (r == -1)
        return IOTC_MQTT_NEED_MORE;
    if (r == -2)
        return mq_fail(err, IOTC_MQTT_ERR_MALFORMED, IOTC_RC_MALFORMED_PACKET, 1,
                       "remaining length is over 4 bytes or not minimally encoded");
    *type = (uint8_t)t;
    *flags = (uint8_t)f;
    *header_len = 1 + n;
    return IOTC_MQTT_OK;
}

iotc_mqtt_status iotc_mqtt_fixed_header(const uint8_t *buf, size_t len, iotc_mqtt_version version,
                                        uint8_t *type, uint8_t *flags, uint32_t *remaining,
                                        size_t *header_len, iotc_mqtt_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    return fixed_header(buf, len, version, type, flags, remaining, header_len, err);
}

/* Everything must have been read: trailing bytes are a malformed packet. */
static iotc_mqtt_status at_end(mq_cur *c, const char *what)
{
    return c->pos == c->end ? IOTC_MQTT_OK : MQ_MALFORMED(c, c->pos, what);
}

static iotc_mqtt_status packet_id(mq_cur *c, uint16_t *id)
{
    size_t at = c->pos;
    if (mq_u16(c, id, "packet too short for its Packet Identifier") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (*id == 0)
        return MQ_PROTOCOL(c, at, "Packet Identifier must not be 0");
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status topic_name(mq_cur *c, iotc_mqtt_bytes *t, bool may_be_empty, const char *what)
{
    size_t at = c->pos;
    if (mq_bin(c, t, what) != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (t->len == 0 && may_be_empty)
        return IOTC_MQTT_OK;
    /* One pass for UTF-8 and wildcards; the slow path finds the offset. */
    iotc_topic_status ts = iotc_topic_name_check((const char *)t->data, t->len);
    if (ts == IOTC_TOPIC_BAD_UTF8) {
        size_t bad = 0;
        iotc_mqtt_utf8_valid(t->data, t->len, &bad);
        return MQ_MALFORMED(c, at + 2 + bad, what);
    }
    if (ts != IOTC_TOPIC_OK)
        return mq_fail(c->err, IOTC_MQTT_ERR_PROTOCOL, IOTC_RC_TOPIC_NAME_INVALID, at,
                       ts == IOTC_TOPIC_EMPTY ? "topic name is empty" : "topic name contains a wildcard");
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status topic_filter(mq_cur *c, iotc_mqtt_bytes *f, iotc_mqtt_version v)
{
    size_t at = c->pos;
    if (mq_str(c, f, "topic filter is not valid UTF-8 or overruns the packet") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    iotc_topic_status ts = iotc_topic_filter_check((const char *)f->data, f->len, v == IOTC_MQTT_V5);
    if (ts != IOTC_TOPIC_OK)
        return mq_fail(c->err, IOTC_MQTT_ERR_PROTOCOL, IOTC_RC_TOPIC_FILTER_INVALID, at,
                       ts == IOTC_TOPIC_EMPTY ? "topic filter is empty"
                       : ts == IOTC_TOPIC_BAD_SHARE
                           ? "shared subscription needs $share/<name>/<filter> with a name free of / + #"
                           : "wildcard not alone in its level, or '#' not last");
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status reason_code(mq_cur *c, iotc_mqtt_type type, iotc_mqtt_version v, uint8_t *rc)
{
    size_t at = c->pos;
    if (mq_u8(c, rc, "packet too short for its reason code") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (!iotc_mqtt_reason_allowed(type, v, *rc))
        return MQ_PROTOCOL(c, at, "reason code not allowed in this packet");
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status dec_connect(mq_cur *c, iotc_mqtt_connect *p)
{
    static const uint8_t NAME[6] = {0, 4, 'M', 'Q', 'T', 'T'};
    memset(p, 0, sizeof *p);
    if (mq_left(c) < 6)
        return MQ_MALFORMED(c, c->pos, "CONNECT too short for its protocol name");
    if (memcmp(c->base + c->pos, NAME, 6) != 0)
        return mq_fail(c->err, IOTC_MQTT_ERR_UNSUPPORTED_VERSION, IOTC_RC_UNSUPPORTED_PROTOCOL_VERSION, c->pos,
                       "protocol name is not \"MQTT\"");
    c->pos += 6;
    uint8_t level, flags;
    size_t at = c->pos;
    if (mq_u8(c, &level, "CONNECT too short for the protocol level") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (level != IOTC_MQTT_V311 && level != IOTC_MQTT_V5)
        return mq_fail(c->err, IOTC_MQTT_ERR_UNSUPPORTED_VERSION, IOTC_RC_UNSUPPORTED_PROTOCOL_VERSION, at,
                       "protocol level is neither 4 (3.1.1) nor 5");
    p->version = (iotc_mqtt_version)level;
    at = c->pos;
    if (mq_u8(c, &flags, "CONNECT too short for its flags") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (flags & 0x01)
        return MQ_MALFORMED(c, at, "CONNECT reserved flag is set");
    p->clean_start = flags & 0x02;
    p->will = flags & 0x04;
    p->will_qos = (uint8_t)((flags >> 3) & 3);
    p->will_retain = flags & 0x20;
    p->has_password = flags & 0x40;
    p->has_username = flags & 0x80;
    if (!p->will && (p->will_qos || p->will_retain))
        return MQ_MALFORMED(c, at, "Will QoS or Will Retain set without the Will flag");
    if (p->will_qos == 3)
        return MQ_MALFORMED(c, at, "Will QoS 3");
    if (level == IOTC_MQTT_V311 && p->has_password && !p->has_username)
        return MQ_MALFORMED(c, at, "password flag without user name flag (3.1.1)");
    if (mq_u16(c, &p->keep_alive, "CONNECT too short for its keep-alive") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    iotc_mqtt_status st;
    if (level == IOTC_MQTT_V5 && (st = mq_props_decode(c, IOTC_MQTT_CONNECT, false, &p->props)) != IOTC_MQTT_OK)
        return st;
    if (mq_str(c, &p->client_id, "client identifier is not valid UTF-8 or overruns the packet") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (p->will) {
        if (level == IOTC_MQTT_V5 && (st = mq_props_decode(c, IOTC_MQTT_CONNECT, true, &p->will_props)) != IOTC_MQTT_OK)
            return st;
        if ((st = topic_name(c, &p->will_topic, false, "Will topic is not valid UTF-8 or overruns the packet")) !=
            IOTC_MQTT_OK)
            return st;
        if (mq_bin(c, &p->will_payload, "Will payload overruns the packet") != IOTC_MQTT_OK)
            return IOTC_MQTT_ERR_MALFORMED;
    }
    if (p->has_username && mq_str(c, &p->username, "user name is not valid UTF-8 or overruns the packet") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (p->has_password && mq_bin(c, &p->password, "password overruns the packet") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    return at_end(c, "bytes after the end of CONNECT's payload");
}

static iotc_mqtt_status dec_connack(mq_cur *c, iotc_mqtt_version v, iotc_mqtt_connack *p)
{
    memset(p, 0, sizeof *p);
    uint8_t flags;
    size_t at = c->pos;
    if (mq_u8(c, &flags, "CONNACK too short") != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (flags & 0xFE)
        return MQ_MALFORMED(c, at, "CONNACK reserved flags are set");
    p->session_present = flags & 1;
    iotc_mqtt_status st = reason_code(c, IOTC_MQTT_CONNACK, v, &p->reason);
    if (st != IOTC_MQTT_OK)
        return st;
    if (p->session_present && p->reason != 0)
        return MQ_PROTOCOL(c, at, "session present set in a refused CONNACK");
    if (v == IOTC_MQTT_V5 && (st = mq_props_decode(c, IOTC_MQTT_CONNACK, false, &p->props)) != IOTC_MQTT_OK)
        return st;
    return at_end(c, "bytes after the end of CONNACK");
}

static iotc_mqtt_status dec_publish(mq_cur *c, iotc_mqtt_version v, uint8_t flags, iotc_mqtt_publish *p)
{
    /* Field by field: the hot path of every broker and client.  MQTT 5
     * clears the properties in mq_props_decode. */
    p->packet_id = 0;
    if (v != IOTC_MQTT_V5)
        memset(&p->props, 0, sizeof p->props);
    p->dup = flags & 0x8;
    p->qos = (uint8_t)((flags >> 1) & 3);
    p->retain = flags & 1;
    size_t at = c->pos;
    iotc_mqtt_status st =
        topic_name(c, &p->topic, v == IOTC_MQTT_V5, "topic name is not valid UTF-8 or overruns the packet");
    if (st != IOTC_MQTT_OK)
        return st;
    if (p->qos && (st = packet_id(c, &p->packet_id)) != IOTC_MQTT_OK)
        return st;
    if (v == IOTC_MQTT_V5) {
        if ((st = mq_props_decode(c, IOTC_MQTT_PUBLISH, false, &p->props)) != IOTC_MQTT_OK)
            return st;
        if (p->topic.len == 0 && !(p->props.present & IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS)))
            return mq_fail(c->err, IOTC_MQTT_ERR_PROTOCOL, IOTC_RC_TOPIC_NAME_INVALID, at,
                           "empty topic name without a Topic Alias");
    }
    p->payload.data = c->base + c->pos;
    p->payload.len = mq_left(c);
    c->pos = c->end;
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status dec_ack(mq_cur *c, iotc_mqtt_type type, iotc_mqtt_version v, iotc_mqtt_ack *p)
{
    memset(p, 0, sizeof *p);
    iotc_mqtt_status st = packet_id(c, &p->packet_id);
    if (st != IOTC_MQTT_OK)
        return st;
    if (v == IOTC_MQTT_V5 && mq_left(c) > 0) {
        if ((st = reason_code(c, type, v, &p->reason)) != IOTC_MQTT_OK)
            return st;
        if (mq_left(c) > 0 && (st = mq_props_decode(c, type, false, &p->props)) != IOTC_MQTT_OK)
            return st;
    }
    return at_end(c, "bytes after the end of the acknowledgement");
}

static iotc_mqtt_status dec_subscribe(mq_cur *c, iotc_mqtt_version v, iotc_mqtt_subscribe *p)
{
    memset(p, 0, sizeof *p);
    iotc_mqtt_status st = packet_id(c, &p->packet_id);
    if (st != IOTC_MQTT_OK)
        return st;
    if (v == IOTC_MQTT_V5 && (st = mq_props_decode(c, IOTC_MQTT_SUBSCRIBE, false, &p->props)) != IOTC_MQTT_OK)
        return st;
    p->raw.data = c->base + c->pos;
    p->raw.len = mq_left(c);
    if (mq_left(c) == 0)
        return MQ_PROTOCOL(c, c->pos, "SUBSCRIBE without any topic filter");
    while (mq_left(c) > 0) {
        iotc_mqtt_bytes f;
        uint8_t o;
        if ((st = topic_filter(c, &f, v)) != IOTC_MQTT_OK)
            return st;
        size_t at = c->pos;
        if (mq_u8(c, &o, "topic filter without its subscription options") != IOTC_MQTT_OK)
            return IOTC_MQTT_ERR_MALFORMED;
        /* 3.1.1 calls QoS 3 malformed [MQTT-3-8.3-4]; 5.0 a protocol error (§3.8.3.1). */
        if ((o & 3) == 3)
            return v == IOTC_MQTT_V5 ? MQ_PROTOCOL(c, at, "Maximum QoS 3") : MQ_MALFORMED(c, at, "requested QoS 3");
        if (v == IOTC_MQTT_V311 && (o & 0xFC))
            return MQ_MALFORMED(c, at, "reserved bits of the requested QoS byte are set");
        if (v == IOTC_MQTT_V5) {
            if (o & 0xC0)
                return MQ_MALFORMED(c, at, "reserved bits of the subscription options are set");
            if (((o >> 4) & 3) == 3)
                return MQ_PROTOCOL(c, at, "Retain Handling 3");
            if ((o & 0x04) && iotc_topic_split_share((const char *)f.data, f.len, NULL, NULL, NULL, NULL))
                return MQ_PROTOCOL(c, at, "No Local on a shared subscription");
        }
        p->count++;
    }
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status dec_unsubscribe(mq_cur *c, iotc_mqtt_version v, iotc_mqtt_unsubscribe *p)
{
    memset(p, 0, sizeof *p);
    iotc_mqtt_status st = packet_id(c, &p->packet_id);
    if (st != IOTC_MQTT_OK)
        return st;
    if (v == IOTC_MQTT_V5 && (st = mq_props_decode(c, IOTC_MQTT_UNSUBSCRIBE, false, &p->props)) != IOTC_MQTT_OK)
        return st;
    p->raw.data = c->base + c->pos;
    p->raw.len = mq_left(c);
    if (mq_left(c) == 0)
        return MQ_PROTOCOL(c, c->pos, "UNSUBSCRIBE without any topic filter");
    while (mq_left(c) > 0) {
        iotc_mqtt_bytes f;
        if ((st = topic_filter(c, &f, v)) != IOTC_MQTT_OK)
            return st;
        p->count++;
    }
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status dec_suback(mq_cur *c, iotc_mqtt_type type, iotc_mqtt_version v, iotc_mqtt_suback *p)
{
    memset(p, 0, sizeof *p);
    iotc_mqtt_status st = packet_id(c, &p->packet_id);
    if (st != IOTC_MQTT_OK)
        return st;
    if (type == IOTC_MQTT_UNSUBACK && v == IOTC_MQTT_V311)
        return at_end(c, "bytes after the end of UNSUBACK");
    if (v == IOTC_MQTT_V5 && (st = mq_props_decode(c, type, false, &p->props)) != IOTC_MQTT_OK)
        return st;
    if (mq_left(c) == 0)
        return MQ_PROTOCOL(c, c->pos, "acknowledgement without any reason code");
    p->codes = c->base + c->pos;
    p->count = mq_left(c);
    while (mq_left(c) > 0) {
        uint8_t rc;
        if ((st = reason_code(c, type, v, &rc)) != IOTC_MQTT_OK)
            return st;
    }
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status dec_disconnect(mq_cur *c, iotc_mqtt_type type, iotc_mqtt_version v,
                                       iotc_mqtt_disconnect *p)
{
    memset(p, 0, sizeof *p);
    if (v == IOTC_MQTT_V5 && mq_left(c) > 0) {
        iotc_mqtt_status st = reason_code(c, type, v, &p->reason);
        if (st != IOTC_MQTT_OK)
            return st;
        /* DISCONNECT may stop after its reason code; AUTH may not (§3.15.2). */
        if ((mq_left(c) > 0 || type == IOTC_MQTT_AUTH) &&
            (st = mq_props_decode(c, type, false, &p->props)) != IOTC_MQTT_OK)
            return st;
        /* §3.15.2.2.2: an AUTH that is not the bare success form names its method. */
        if (type == IOTC_MQTT_AUTH && !(p->props.present & IOTC_PROP_BIT(IOTC_PROP_AUTHENTICATION_METHOD)))
            return MQ_PROTOCOL(c, 1, "AUTH without an Authentication Method");
    }
    return at_end(c, type == IOTC_MQTT_AUTH ? "bytes after the end of AUTH" : "bytes after the end of DISCONNECT");
}

iotc_mqtt_status iotc_mqtt_decode(const uint8_t *buf, size_t len, iotc_mqtt_version version,
                                  uint32_t max_packet_size, iotc_mqtt_packet *out, size_t *used,
                                  iotc_mqtt_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (used)
        *used = 0;
    if ((!buf && len) || !out || (version != IOTC_MQTT_V311 && version != IOTC_MQTT_V5))
        return mq_fail(err, IOTC_MQTT_ERR_INVALID_ARG, IOTC_RC_UNSPECIFIED_ERROR, 0,
                       "iotc_mqtt_decode: NULL buffer or packet, or unknown version");
    uint8_t type, flags;
    uint32_t remaining;
    size_t hlen;
    iotc_mqtt_status st = fixed_header(buf, len, version, &type, &flags, &remaining, &hlen, err);
    if (st != IOTC_MQTT_OK)
        return st;
    size_t total = hlen + remaining;
    if (max_packet_size && total > max_packet_size)
        return mq_fail(err, IOTC_MQTT_ERR_TOO_LARGE, IOTC_RC_PACKET_TOO_LARGE, 1,
                       "packet is larger than the maximum packet size");
    if (used)
        *used = total;
    if (len < total)
        return IOTC_MQTT_NEED_MORE;

    mq_cur c = {buf, hlen, total, err};
    /* Each dec_* clears only its own member: clearing the whole union would
     * cost more than decoding a small PUBLISH. */
    out->type = (iotc_mqtt_type)type;
    switch (type) {
    case IOTC_MQTT_CONNECT: st = dec_connect(&c, &out->u.connect); break;
    case IOTC_MQTT_CONNACK: st = dec_connack(&c, version, &out->u.connack); break;
    case IOTC_MQTT_PUBLISH: st = dec_publish(&c, version, flags, &out->u.publish); break;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP: st = dec_ack(&c, out->type, version, &out->u.ack); break;
    case IOTC_MQTT_SUBSCRIBE: st = dec_subscribe(&c, version, &out->u.subscribe); break;
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: st = dec_suback(&c, out->type, version, &out->u.suback); break;
    case IOTC_MQTT_UNSUBSCRIBE: st = dec_unsubscribe(&c, version, &out->u.unsubscribe); break;
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP: st = at_end(&c, "PINGREQ and PINGRESP have no body"); break;
    default: st = dec_disconnect(&c, out->type, version, &out->u.disconnect); break; /* DISCONNECT, AUTH */
    }
    if (st != IOTC_MQTT_OK && used)
        *used = 0;
    return st;
}

/* ---- walking decoded lists ---- */

bool iotc_mqtt_sub_next(const iotc_mqtt_subscribe *s, size_t *pos, iotc_mqtt_sub *out)
{
    if (s->subs) {
        if (*pos >= s->count)
            return false;
        *out = s->subs[(*pos)++];
        return true;
    }
    if (!s->raw.data || *pos >= s->raw.len)
        return false;
    mq_cur c = {s->raw.data, *pos, s->raw.len, NULL};
    uint8_t o;
    memset(out, 0, sizeof *out);
    if (mq_bin(&c, &out->filter, "") != IOTC_MQTT_OK || mq_u8(&c, &o, "") != IOTC_MQTT_OK)
        return false;
    out->qos = o & 3;
    out->no_local = o & 0x04;
    out->retain_as_published = o & 0x08;
    out->retain_handling = (uint8_t)((o >> 4) & 3);
    *pos = c.pos;
    return true;
}

bool iotc_mqtt_unsub_next(const iotc_mqtt_unsubscribe *u, size_t *pos, iotc_mqtt_bytes *out)
{
    if (u->filters) {
        if (*pos >= u->count)
            return false;
        *out = u->filters[(*pos)++];
        return true;
    }
    if (!u->raw.data || *pos >= u->raw.len)
        return false;
    mq_cur c = {u->raw.data, *pos, u->raw.len, NULL};
    if (mq_bin(&c, out, "") != IOTC_MQTT_OK)
        return false;
    *pos = c.pos;
    return true;
}
