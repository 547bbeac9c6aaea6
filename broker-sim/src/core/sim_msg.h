/*
 * sim_msg.h: an application message as the broker holds it between PUBLISH in
 * and PUBLISH out: one allocation with the topic, the payload and the MQTT 5
 * properties that are forwarded (Payload Format Indicator, Content Type,
 * Response Topic, Correlation Data, User Properties in order, and the expiry
 * as an absolute virtual time).  Reference-counted: queues, inflight windows
 * and the retained store share one copy.
 */
#ifndef SIM_MSG_H
#define SIM_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "iotc/mqtt.h"

typedef struct sim_msg {
    unsigned refs;
    uint8_t qos;             /* as published */
    bool retain;             /* as published */
    uint64_t expires_at;     /* virtual ms; 0: never */
    uint32_t expiry_interval; /* the Message Expiry Interval it came with (s); 0: none */
    uint64_t publisher;      /* serial of the publishing session (No Local); 0: the broker */
    iotc_mqtt_bytes topic;   /* views into data[] */
    iotc_mqtt_bytes payload;
    iotc_mqtt_props props;   /* forwarded properties; views into data[] */
    uint8_t data[];
} sim_msg;

/* Copies what it needs from `props` (which may be NULL).  `expiry_s` > 0
 * sets expires_at = now_ms + expiry_s * 1000.  NULL on allocation failure. */
sim_msg *sim_msg_new(iotc_mqtt_bytes topic, iotc_mqtt_bytes payload, const iotc_mqtt_props *props, uint8_t qos,
                     bool retain, uint64_t publisher, uint64_t now_ms);
/* Starts the expiry again from now_ms: a Will's interval runs from its
 * publication, not from the CONNECT that carried it (aws-broker.md §1.11). */
void sim_msg_restart_expiry(sim_msg *m, uint64_t now_ms);
sim_msg *sim_msg_ref(sim_msg *m);
void sim_msg_unref(sim_msg *m);
bool sim_msg_expired(const sim_msg *m, uint64_t now_ms);

/* The properties to send with it at `now_ms`: Message Expiry Interval becomes
 * the remaining whole seconds (aws-broker.md §3.3). */
void sim_msg_out_props(const sim_msg *m, uint64_t now_ms, iotc_mqtt_props *out);

#endif
