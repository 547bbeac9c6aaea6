/*
 * fake_broker.h: a scriptable MQTT 3.1.1 broker on a thread, for tests that
 * drive the real client (iotc/client.h) over plain TCP.
 *
 * It is deliberately not a broker: no routing, no sessions.  It listens on
 * 127.0.0.1 on a port the OS picks, takes one connection at a time (a new
 * one replaces the old, as AWS IoT's client-id takeover does), decodes what
 * arrives with the codec's stream reader, records every packet with a
 * timestamp, and answers as the test has scripted it: CONNACK with a given
 * code and session-present, SUBACK, UNSUBACK, PINGRESP, PUBACK for QoS 1
 * (or not, when withheld).  The test can also send a PUBLISH, drop the
 * connection, or stop listening for a while.
 *
 * Threads.  fb_start() starts the broker thread; every other function may be
 * called from any thread and is serialised by the broker's mutex.  Records
 * are copied out (fb_get) so that a test never reads memory the broker
 * thread may be changing.
 */
#ifndef FAKE_BROKER_H
#define FAKE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/mqtt.h"

typedef struct fb fb;

/* One received packet; strings are NUL-terminated copies (payload too, so
 * that a test may printf it; `payload_len` is the real length). */
typedef struct {
    uint8_t type;        /* iotc_mqtt_type */
    uint64_t t_ms;       /* CLOCK_MONOTONIC, milliseconds */
    unsigned conn;       /* 1 for the first accepted connection, 2 ... */
    /* PUBLISH */
    char *topic;
    char *payload;
    size_t payload_len;
    uint8_t qos;
    bool dup;
    bool retain;
    uint16_t packet_id;  /* PUBLISH QoS 1, SUBSCRIBE, UNSUBSCRIBE, PUBACK */
    /* CONNECT */
    char *client_id;
    bool has_username;
    char *username;
    uint16_t keep_alive;
    bool clean;
    bool will;
    char *will_topic;
    char *will_payload;
    size_t will_len;
    uint8_t will_qos;
    bool will_retain;
    /* SUBSCRIBE: the first filter and its QoS */
    char *filter;
    uint8_t sub_qos;
} fb_rec;

/* Starts listening on 127.0.0.1:0 and the broker thread; NULL on failure. */
fb *fb_start(void);
/* Stops the thread, closes every socket and frees everything. */
void fb_stop(fb *b);
uint16_t fb_port(const fb *b);

/* Scripting.  Defaults: CONNACK 0 without session present, PUBACK every
 * QoS 1 PUBLISH, SUBACK grants the requested QoS. */
void fb_set_connack(fb *b, uint8_t code, bool session_present);
void fb_set_withhold_puback(fb *b, bool withhold);
/* Answer CONNECT with nothing at all (a broker that hangs). */
void fb_set_withhold_connack(fb *b, bool withhold);
/* Answers a CONNECT that was withheld, now, as scripted by fb_set_connack;
 * false when there is no connection. */
bool fb_connack_now(fb *b);
/* Answer PINGREQ with nothing (a half-dead link). */
void fb_set_withhold_pingresp(fb *b, bool withhold);
/* 0xFF: grant what was asked (the default). */
void fb_set_suback(fb *b, uint8_t granted);
/* Answer SUBSCRIBE with nothing until fb_suback_now sends the SUBACK of
 * one (single-filter) SUBSCRIBE with `code`; false without a connection. */
void fb_set_withhold_suback(fb *b, bool withhold);
bool fb_suback_now(fb *b, uint16_t packet_id, uint8_t code);
/* Closes the current connection (if any) without a word. */
void fb_drop(fb *b);
/* Closes the listening socket (connects are refused) / listens again on the
 * same port. */
void fb_pause(fb *b);
bool fb_resume(fb *b);
/* Sends a PUBLISH on the current connection; false when there is none. */
bool fb_publish(fb *b, const char *topic, const char *payload, uint8_t qos, uint16_t packet_id);

/* Sends raw bytes on the current connection (to break the protocol). */
bool fb_send_raw(fb *b, const void *bytes, size_t n);
/* Stops reading from the connection (the client's writes back up in the
 * kernel buffers, then in the client) / reads again. */
void fb_set_stall(fb *b, bool stall);

/* Whether a connection is open right now. */
bool fb_connected(fb *b);
/* Received packets so far (all, or of one type when type != 0). */
size_t fb_count(fb *b, uint8_t type);
/* Waits until fb_count(b, type) >= n or timeout_ms passed; returns whether
 * it got there. */
bool fb_wait_count(fb *b, uint8_t type, size_t n, uint32_t timeout_ms);
/* Waits until a connection is open (accepted, CONNECT seen) or times out. */
bool fb_wait_connected(fb *b, uint32_t timeout_ms);
/* A copy of the i-th received packet of `type` (0: of any type); false when
 * there is none.  Free it with fb_rec_free(). */
bool fb_get(fb *b, uint8_t type, size_t i, fb_rec *out);
void fb_rec_free(fb_rec *r);

/* Milliseconds on the clock the records use. */
uint64_t fb_now_ms(void);

#endif
