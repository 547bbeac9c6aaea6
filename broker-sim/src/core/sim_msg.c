/* sim_msg.c: see sim_msg.h. */
#include "sim_msg.h"

#include <stdlib.h>
#include <string.h>

#define FORWARDED                                                                                          \
    (IOTC_PROP_BIT(IOTC_PROP_PAYLOAD_FORMAT_INDICATOR) | IOTC_PROP_BIT(IOTC_PROP_CONTENT_TYPE) |            \
     IOTC_PROP_BIT(IOTC_PROP_RESPONSE_TOPIC) | IOTC_PROP_BIT(IOTC_PROP_CORRELATION_DATA))

/* Moves a view from the old raw block to the copy. */
static iotc_mqtt_bytes rebase(iotc_mqtt_bytes v, const iotc_mqtt_bytes *old_raw, const uint8_t *new_raw)
{
    if (v.len && v.data >= old_raw->data && v.data + v.len <= old_raw->data + old_raw->len)
        v.data = new_raw + (v.data - old_raw->data);
    return v;
}

sim_msg *sim_msg_new(iotc_mqtt_bytes topic, iotc_mqtt_bytes payload, const iotc_mqtt_props *props, uint8_t qos,
                     bool retain, uint64_t publisher, uint64_t now_ms)
{
    size_t raw_len = props ? props->raw.len : 0;
    sim_msg *m = malloc(sizeof *m + topic.len + payload.len + raw_len + 1);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->publisher = publisher;
    uint8_t *p = m->data;
    if (topic.len)
        memcpy(p, topic.data, topic.len);
    m->topic.data = p;
    m->topic.len = topic.len;
    p += topic.len;
    if (payload.len)
        memcpy(p, payload.data, payload.len);
    m->payload.data = p;
    m->payload.len = payload.len;
    p += payload.len;
    if (props) {
        if (raw_len)
            memcpy(p, props->raw.data, raw_len);
        m->props.present = props->present & FORWARDED;
        m->props.payload_format_indicator = props->payload_format_indicator;
        m->props.content_type = rebase(props->content_type, &props->raw, p);
        m->props.response_topic = rebase(props->response_topic, &props->raw, p);
        m->props.correlation_data = rebase(props->correlation_data, &props->raw, p);
        m->props.user_count = props->user_count;
        m->props.raw.data = p;
        m->props.raw.len = raw_len;
        if (props->present & IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL)) {
            m->expiry_interval = props->message_expiry_interval;
            sim_msg_restart_expiry(m, now_ms);
        }
    }
    return m;
}

void sim_msg_restart_expiry(sim_msg *m, uint64_t now_ms)
{
    if (m->expiry_interval)
        m->expires_at = now_ms + (uint64_t)m->expiry_interval * 1000u;
}

sim_msg *sim_msg_ref(sim_msg *m)
{
    m->refs++;
    return m;
}

void sim_msg_unref(sim_msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

bool sim_msg_expired(const sim_msg *m, uint64_t now_ms)
{
    return m->expires_at && now_ms >= m->expires_at;
}

void sim_msg_out_props(const sim_msg *m, uint64_t now_ms, iotc_mqtt_props *out)
{
    *out = m->props;
    if (m->expires_at) {
        uint64_t left = m->expires_at > now_ms ? (m->expires_at - now_ms) / 1000u : 0;
        out->present |= IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL);
        out->message_expiry_interval = (uint32_t)left;
    }
}
