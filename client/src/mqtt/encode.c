/*
 * encode.c: packets to bytes.
 *
 * Three steps: check() refuses whatever a conforming receiver would refuse
 * (the same rules as the decoder, through the same helpers), then the writer
 * runs once in counting mode to learn the remaining length, then once for
 * real.  The counting pass copies nothing, so it costs little, and the size can
 * never disagree with what is written.  Where the spec lets the sender choose
 * (MQTT 5 acks, DISCONNECT and AUTH may drop a zero reason code and empty
 * properties), the shortest form is written, as mosquitto and paho do.
 */
#include <string.h>

#include "codec_internal.h"
#include "iotc/topic.h"

typedef struct {
    size_t props;      /* size of the property block */
    size_t will_props; /* CONNECT only */
} sizes;

static iotc_mqtt_status bad(iotc_mqtt_error *err, const char *what)
{
    return mq_fail(err, IOTC_MQTT_ERR_INVALID_ARG, IOTC_RC_PROTOCOL_ERROR, 0, what);
}


static bool bin_ok(iotc_mqtt_bytes b)
{
    return b.len <= 65535 && (b.len == 0 || b.data);
}

static bool name_ok(iotc_mqtt_bytes t)
{
    return t.len <= 65535 && (t.len == 0 || t.data) &&
           iotc_topic_name_check((const char *)t.data, t.len) == IOTC_TOPIC_OK;
}

static bool filter_ok(iotc_mqtt_bytes f, iotc_mqtt_version v)
{
    return f.len <= 65535 && (f.len == 0 || f.data) &&
           iotc_topic_filter_check((const char *)f.data, f.len, v == IOTC_MQTT_V5) == IOTC_TOPIC_OK;
}

static iotc_mqtt_status props_for(const iotc_mqtt_props *pr, iotc_mqtt_type t, bool will, iotc_mqtt_version v,
                                  size_t *size, iotc_mqtt_error *err)
{
    if (v == IOTC_MQTT_V5)
        return mq_props_check(pr, t, will, size, err);
    if (!mq_props_empty(pr))
        return bad(err, "properties need MQTT 5");
    *size = 0;
    return IOTC_MQTT_OK;
}

static iotc_mqtt_status check(const iotc_mqtt_packet *p, iotc_mqtt_version v, sizes *sz, iotc_mqtt_error *err)
{
    iotc_mqtt_status st;
    switch (p->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *c = &p->u.connect;
        v = c->version;
        if (v != IOTC_MQTT_V311 && v != IOTC_MQTT_V5)
            return bad(err, "CONNECT version must be 4 (3.1.1) or 5");
        if (!mq_str_ok(c->client_id))
            return bad(err, "client identifier is not valid UTF-8, or over 65535 bytes");
        if (c->will) {
            if (c->will_qos > 2)
                return bad(err, "Will QoS over 2");
            if (!name_ok(c->will_topic))
                return bad(err, "Will topic is not a valid topic name");
            if (!bin_ok(c->will_payload))
                return bad(err, "Will payload over 65535 bytes");
            if ((st = props_for(&c->will_props, IOTC_MQTT_CONNECT, true, v, &sz->will_props, err)) != IOTC_MQTT_OK)
                return st;
        } else if (c->will_qos || c->will_retain || !mq_props_empty(&c->will_props)) {
            return bad(err, "Will QoS, retain or properties without a Will");
        }
        if (c->has_username && !mq_str_ok(c->username))
            return bad(err, "user name is not valid UTF-8, or over 65535 bytes");
        if (c->has_password && !bin_ok(c->password))
            return bad(err, "password over 65535 bytes");
        if (v == IOTC_MQTT_V311 && c->has_password && !c->has_username)
            return bad(err, "MQTT 3.1.1 needs a user name to send a password");
        return props_for(&c->props, IOTC_MQTT_CONNECT, false, v, &sz->props, err);
    }
    case IOTC_MQTT_CONNACK:
        if (!iotc_mqtt_reason_allowed(p->type, v, p->u.connack.reason))
            return bad(err, "reason code not allowed in CONNACK");
        if (p->u.connack.session_present && p->u.connack.reason)
            return bad(err, "session present in a refused CONNACK");
        return props_for(&p->u.connack.props, p->type, false, v, &sz->props, err);
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *pb = &p->u.publish;
        if (pb->qos > 2)
            return bad(err, "QoS over 2");
        if (pb->qos == 0 && pb->dup)
            return bad(err, "DUP set on a QoS 0 PUBLISH");
        if (pb->qos && !pb->packet_id)
            return bad(err, "QoS 1 and 2 need a non-zero Packet Identifier");
        if ((st = props_for(&pb->props, p->type, false, v, &sz->props, err)) != IOTC_MQTT_OK)
            return st;
        bool alias = v == IOTC_MQTT_V5 && (pb->props.present & IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS));
        if (!(alias && pb->topic.len == 0) && !name_ok(pb->topic))
            return bad(err, "topic name is empty, has a wildcard or is not valid UTF-8");
        if (pb->payload.len > IOTC_MQTT_VBI_MAX || (pb->payload.len && !pb->payload.data))
            return bad(err, "payload too large or NULL");
        return IOTC_MQTT_OK;
    }
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        if (!p->u.ack.packet_id)
            return bad(err, "Packet Identifier must not be 0");
        if (v == IOTC_MQTT_V311 ? p->u.ack.reason != 0 : !iotc_mqtt_reason_allowed(p->type, v, p->u.ack.reason))
            return bad(err, "reason code not allowed in this acknowledgement");
        return props_for(&p->u.ack.props, p->type, false, v, &sz->props, err);
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *s = &p->u.subscribe;
        if (!s->packet_id)
            return bad(err, "Packet Identifier must not be 0");
        size_t pos = 0, n = 0;
        iotc_mqtt_sub sub;
        while (iotc_mqtt_sub_next(s, &pos, &sub)) {
            if (!filter_ok(sub.filter, v))
                return bad(err, "topic filter is not valid");
            if (sub.qos > 2 || sub.retain_handling > 2)
                return bad(err, "QoS or Retain Handling over 2");
            if (v == IOTC_MQTT_V311 && (sub.no_local || sub.retain_as_published || sub.retain_handling))
                return bad(err, "No Local, Retain As Published and Retain Handling need MQTT 5");
            if (sub.no_local && iotc_topic_split_share((const char *)sub.filter.data, sub.filter.len, NULL, NULL,
                                                       NULL, NULL))
                return bad(err, "No Local on a shared subscription");
            n++;
        }
        if (n == 0 || n != s->count)
            return bad(err, "SUBSCRIBE needs at least one filter, and `count` of them");
        return props_for(&s->props, p->type, false, v, &sz->props, err);
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        const iotc_mqtt_unsubscribe *u = &p->u.unsubscribe;
        if (!u->packet_id)
            return bad(err, "Packet Identifier must not be 0");
        size_t pos = 0, n = 0;
        iotc_mqtt_bytes f;
        while (iotc_mqtt_unsub_next(u, &pos, &f)) {
            if (!filter_ok(f, v))
                return bad(err, "topic filter is not valid");
            n++;
        }
        if (n == 0 || n != u->count)
            return bad(err, "UNSUBSCRIBE needs at least one filter, and `count` of them");
        return props_for(&u->props, p->type, false, v, &sz->props, err);
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        const iotc_mqtt_suback *s = &p->u.suback;
        if (!s->packet_id)
            return bad(err, "Packet Identifier must not be 0");
        if (p->type == IOTC_MQTT_UNSUBACK && v == IOTC_MQTT_V311) {
            if (s->count)
                return bad(err, "an MQTT 3.1.1 UNSUBACK has no reason codes");
        } else {
            if (s->count == 0 || !s->codes)
                return bad(err, "at least one reason code is needed");
            for (size_t i = 0; i < s->count; i++)
                if (!iotc_mqtt_reason_allowed(p->type, v, s->codes[i]))
                    return bad(err, "reason code not allowed in this acknowledgement");
        }
        return props_for(&s->props, p->type, false, v, &sz->props, err);
    }
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP: return IOTC_MQTT_OK;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (p->type == IOTC_MQTT_AUTH && v != IOTC_MQTT_V5)
            return bad(err, "AUTH needs MQTT 5");
        if (v == IOTC_MQTT_V311 ? p->u.disconnect.reason != 0
                                : !iotc_mqtt_reason_allowed(p->type, v, p->u.disconnect.reason))
            return bad(err, "reason code not allowed in this packet");
        if (p->type == IOTC_MQTT_AUTH && (p->u.disconnect.reason || !mq_props_empty(&p->u.disconnect.props)) &&
            !(p->u.disconnect.props.present & IOTC_PROP_BIT(IOTC_PROP_AUTHENTICATION_METHOD)))
            return bad(err, "AUTH needs an Authentication Method");
        return props_for(&p->u.disconnect.props, p->type, false, v, &sz->props, err);
    default: return bad(err, "unknown packet type");
    }
}

/* The variable header and payload. */
static void body(mq_out *o, const iotc_mqtt_packet *p, iotc_mqtt_version v, const sizes *sz)
{
    switch (p->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *c = &p->u.connect;
        static const uint8_t NAME[6] = {0, 4, 'M', 'Q', 'T', 'T'};
        mq_put_raw(o, NAME, 6);
        mq_put_u8(o, (uint8_t)c->version);
        uint8_t f = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->will ? 0x04 | (c->will_qos << 3) : 0) |
                              (c->will && c->will_retain ? 0x20 : 0) | (c->has_password ? 0x40 : 0) |
                              (c->has_username ? 0x80 : 0));
        mq_put_u8(o, f);
        mq_put_u16(o, c->keep_alive);
        if (c->version == IOTC_MQTT_V5)
            mq_props_encode(o, &c->props, sz->props);
        mq_put_bin(o, c->client_id);
        if (c->will) {
            if (c->version == IOTC_MQTT_V5)
                mq_props_encode(o, &c->will_props, sz->will_props);
            mq_put_bin(o, c->will_topic);
            mq_put_bin(o, c->will_payload);
        }
        if (c->has_username)
            mq_put_bin(o, c->username);
        if (c->has_password)
            mq_put_bin(o, c->password);
        break;
    }
    case IOTC_MQTT_CONNACK:
        mq_put_u8(o, p->u.connack.session_present ? 1 : 0);
        mq_put_u8(o, p->u.connack.reason);
        if (v == IOTC_MQTT_V5)
            mq_props_encode(o, &p->u.connack.props, sz->props);
        break;
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *pb = &p->u.publish;
        mq_put_bin(o, pb->topic);
        if (pb->qos)
            mq_put_u16(o, pb->packet_id);
        if (v == IOTC_MQTT_V5)
            mq_props_encode(o, &pb->props, sz->props);
        mq_put_raw(o, pb->payload.data, pb->payload.len);
        break;
    }
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        mq_put_u16(o, p->u.ack.packet_id);
        if (v == IOTC_MQTT_V5 && (p->u.ack.reason || sz->props)) {
            mq_put_u8(o, p->u.ack.reason);
            if (sz->props)
                mq_props_encode(o, &p->u.ack.props, sz->props);
        }
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *s = &p->u.subscribe;
        mq_put_u16(o, s->packet_id);
        if (v == IOTC_MQTT_V5)
            mq_props_encode(o, &s->props, sz->props);
        size_t pos = 0;
        iotc_mqtt_sub sub;
        while (iotc_mqtt_sub_next(s, &pos, &sub)) {
            mq_put_bin(o, sub.filter);
            mq_put_u8(o, (uint8_t)(sub.qos | (sub.no_local ? 0x04 : 0) | (sub.retain_as_published ? 0x08 : 0) |
                                   (sub.retain_handling << 4)));
        }
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        const iotc_mqtt_unsubscribe *u = &p->u.unsubscribe;
        mq_put_u16(o, u->packet_id);
        if (v == IOTC_MQTT_V5)
            mq_props_encode(o, &u->props, sz->props);
        size_t pos = 0;
        iotc_mqtt_bytes f;
        while (iotc_mqtt_unsub_next(u, &pos, &f))
            mq_put_bin(o, f);
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK:
        mq_put_u16(o, p->u.suback.packet_id);
        if (v == IOTC_MQTT_V5)
            mq_props_encode(o, &p->u.suback.props, sz->props);
        mq_put_raw(o, p->u.suback.codes, p->u.suback.count);
        break;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (v == IOTC_MQTT_V5 && (p->u.disconnect.reason || sz->props)) {
            mq_put_u8(o, p->u.disconnect.reason);
            /* DISCONNECT may end after the reason code; AUTH always has properties. */
            if (sz->props || p->type == IOTC_MQTT_AUTH)
                mq_props_encode(o, &p->u.disconnect.props, sz->props);
        }
        break;
    default: break; /* PINGREQ, PINGRESP */
    }
}

static uint8_t first_byte(const iotc_mqtt_packet *p)
{
    uint8_t f = 0;
    if (p->type == IOTC_MQTT_PUBLISH)
        f = (uint8_t)((p->u.publish.dup ? 0x8 : 0) | (p->u.publish.qos << 1) | (p->u.publish.retain ? 1 : 0));
    else
        f = (uint8_t)mq_required_flags(p->type);
    return (uint8_t)((unsigned)p->type << 4 | f);
}

static iotc_mqtt_status measure(const iotc_mqtt_packet *p, iotc_mqtt_version version, sizes *sz, size_t *remaining,
                                iotc_mqtt_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!p)
        return bad(err, "NULL packet");
    if (p->type != IOTC_MQTT_CONNECT && version != IOTC_MQTT_V311 && version != IOTC_MQTT_V5)
        return bad(err, "version must be 4 (3.1.1) or 5");
    memset(sz, 0, sizeof *sz);
    iotc_mqtt_status st = check(p, version, sz, err);
    if (st != IOTC_MQTT_OK)
        return st;
    mq_out count = {NULL, 0, 0};
    body(&count, p, p->type == IOTC_MQTT_CONNECT ? p->u.connect.version : version, sz);
    if (count.len > IOTC_MQTT_VBI_MAX)
        return bad(err, "packet larger than MQTT can express");
    *remaining = count.len;
    return IOTC_MQTT_OK;
}

iotc_mqtt_status iotc_mqtt_encoded_size(const iotc_mqtt_packet *p, iotc_mqtt_version version, size_t *size,
                                        iotc_mqtt_error *err)
{
    sizes sz;
    size_t rl;
    iotc_mqtt_status st = measure(p, version, &sz, &rl, err);
    if (st == IOTC_MQTT_OK && size)
        *size = 1 + mq_vbi_size((uint32_t)rl) + rl;
    return st;
}

iotc_mqtt_status iotc_mqtt_encode(const iotc_mqtt_packet *p, iotc_mqtt_version version, uint8_t *out, size_t cap,
                                  size_t *written, iotc_mqtt_error *err)
{
    sizes sz;
    size_t rl;
    if (written)
        *written = 0;
    iotc_mqtt_status st = measure(p, version, &sz, &rl, err);
    if (st != IOTC_MQTT_OK)
        return st;
    size_t total = 1 + mq_vbi_size((uint32_t)rl) + rl;
    if (written)
        *written = total;
    if (!out || cap < total)
        return mq_fail(err, IOTC_MQTT_ERR_BUFFER, IOTC_RC_UNSPECIFIED_ERROR, 0, "output buffer too small");
    mq_out o = {out, cap, 0};
    mq_put_u8(&o, first_byte(p));
    mq_put_vbi(&o, (uint32_t)rl);
    body(&o, p, p->type == IOTC_MQTT_CONNECT ? p->u.connect.version : version, &sz);
    return IOTC_MQTT_OK;
}
