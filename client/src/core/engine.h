/*
 * engine.h: libiotc's protocol engine, sans I/O (issue 4).
 *
 * Owns one device connection as a state machine: the connect attempt and its
 * CONNACK, keep-alive and a separate ping timeout, QoS 0/1 publishes (QoS 1
 * tracked until PUBACK and resent with DUP after a reconnect), subscribes and
 * unsubscribes with their acks, operation timeouts, the offline queue
 * (opqueue.h) and its paced drain (drain.h), resubscription when the session
 * is not present, and reconnecting with backoff (backoff.h).
 *
 * It knows no sockets, TLS, threads or clock.  The network edge (net/) opens
 * and closes the link when asked, writes the bytes it is given, feeds received
 * bytes in, reports the link going up or down, and calls iotc_engine_tick()
 * at the deadline the engine returns.  Time is milliseconds on any monotonic
 * clock, passed into every call.  Callbacks run inside the engine call that
 * caused them, on the caller's thread; they may call the operation functions
 * (publish, subscribe...) but not free the engine.
 *
 * Completion: every operation accepted by iotc_engine_publish/subscribe/
 * unsubscribe completes exactly once through its callback: IOTC_OK when done
 * (QoS 0: written to the link; QoS 1: PUBACK; SUBACK; UNSUBACK), or an error:
 * IOTC_ERR_QUEUE_DROPPED (the offline queue dropped it, whichever end),
 * IOTC_ERR_TIMEOUT (op_timeout_ms passed; its packet id is freed),
 * IOTC_ERR_REFUSED (SUBACK 0x80), IOTC_ERR_CLOSED (the engine stopped or was
 * freed first), IOTC_ERR_QUEUE_OFF (accepted while connected, still waiting
 * to be sent or, for a subscribe/unsubscribe, acked when the link dropped,
 * and the queue is off so it cannot be kept).  An operation refused at the
 * call (bad arguments, queue off while offline) returns the error and never
 * calls back.
 */
#ifndef IOTC_CORE_ENGINE_H
#define IOTC_CORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backoff.h"
#include "core/drain.h"
#include "core/opqueue.h"
#include "iotc/error.h"
#include "iotc/mqtt.h"

typedef struct iotc_engine iotc_engine;

typedef enum {
    IOTC_EV_CONNECTION_SUCCESS, /* the first accepted CONNACK since start */
    IOTC_EV_CONNECTION_FAILURE, /* an attempt failed before CONNACK, or was refused */
    IOTC_EV_INTERRUPTED,        /* an accepted connection was lost; reconnecting */
    IOTC_EV_RESUMED,            /* accepted again after an interruption */
    IOTC_EV_CLOSED              /* iotc_engine_stop() finished: nothing follows */
} iotc_event_type;

typedef struct {
    iotc_event_type type;
    int err;               /* FAILURE, INTERRUPTED: why (IOTC_ERR_...) */
    uint8_t return_code;   /* SUCCESS, RESUMED, FAILURE when refused: CONNACK code */
    bool session_present;  /* SUCCESS, RESUMED */
} iotc_event;

/* An application message; views valid during the callback only. */
typedef struct {
    iotc_mqtt_bytes topic;
    iotc_mqtt_bytes payload;
    uint8_t qos;
    bool retain;
    bool dup;
} iotc_message;

typedef struct {
    /* Open the link (TCP, TLS, WSS: the edge's business); answer later with
     * iotc_engine_link_up() or iotc_engine_link_down(). */
    void (*open)(void *ctx);
    /* Close the link; the engine expects no link_down for it. */
    void (*close)(void *ctx);
    /* Write on the open link; the edge copies the bytes. */
    void (*send)(void *ctx, const uint8_t *data, size_t len);
    void (*event)(void *ctx, const iotc_event *ev);
    void (*message)(void *ctx, const iotc_message *m);
    uint64_t (*random)(void *ctx); /* backoff jitter */
} iotc_engine_io;

typedef struct {
    iotc_mqtt_version version;     /* IOTC_MQTT_V311 (MQTT 5 later) */
    const char *client_id;         /* copied; required */
    bool clean_session;            /* true */
    uint16_t keep_alive_s;         /* 1200, AWS IoT's maximum; 0: no pings */
    uint32_t ping_timeout_ms;      /* 3000: no PINGRESP by then declares the link dead */
    uint32_t connack_timeout_ms;   /* 20000 */
    uint32_t op_timeout_ms;        /* 0: none; else acked operations time out */
    const char *username;          /* copied; NULL: none */
    const uint8_t *password;       /* copied */
    size_t password_len;
    bool will;                     /* the will_* fields mean something only if set */
    const char *will_topic;
    const uint8_t *will_payload;
    size_t will_payload_len;
    uint8_t will_qos;
    bool will_retain;
    iotc_backoff_config backoff;
    iotc_opq_config queue;         /* the offline queue: size and drop policy */
    iotc_drain_config drain;       /* 2 Hz */
    bool resubscribe;              /* true: resubscribe when the session is not present */
    uint16_t max_inflight;         /* 20: QoS 1 publishes awaiting PUBACK at once */
    /* The largest packet accepted from the broker, checked from its fixed
     * header before anything is buffered: AWS IoT sends at most 128 KB of
     * payload, so 256 KiB leaves room for topic and properties. */
    uint32_t max_packet_size;      /* 262144 */
} iotc_engine_config;

/* The defaults above. */
void iotc_engine_config_init(iotc_engine_config *cfg);

/* Validates (IOTC_ERR_INVALID_ARG with *why: ping >= keep-alive, min > max,
 * no client id, will QoS 2...) and creates.  Nothing is sent until start. */
int iotc_engine_new(const iotc_engine_config *cfg, const iotc_engine_io *io, void *ctx, iotc_engine **out,
                    const char **why);
/* Completes every outstanding operation with IOTC_ERR_CLOSED, then frees. */
void iotc_engine_free(iotc_engine *e);

/* Starts connecting (io.open now) and keeps reconnecting until stop. */
int iotc_engine_start(iotc_engine *e, uint64_t now_ms);
/* Sends DISCONNECT if connected, closes, completes what is outstanding with
 * IOTC_ERR_CLOSED, and reports IOTC_EV_CLOSED. */
int iotc_engine_stop(iotc_engine *e, uint64_t now_ms);

/* The edge reports the link: up (send CONNECT now), or down / failed to open
 * (err: IOTC_ERR_CONNECTION_LOST, IOTC_ERR_TLS, IOTC_ERR_CONNECT...). */
void iotc_engine_link_up(iotc_engine *e, uint64_t now_ms);
void iotc_engine_link_down(iotc_engine *e, int err, uint64_t now_ms);
/* Bytes from the link.  A malformed stream closes the link (IOTC_ERR_PROTOCOL). */
void iotc_engine_input(iotc_engine *e, const uint8_t *data, size_t len, uint64_t now_ms);
/* Runs due timers; returns the next deadline (UINT64_MAX: none).  Call it
 * then, and after any other call (its deadlines may have moved earlier). */
uint64_t iotc_engine_tick(iotc_engine *e, uint64_t now_ms);

/* Operation completion; `granted` is the SUBACK's code for subscribe. */
typedef void (*iotc_op_done)(void *user, int status, uint8_t granted);

/* The engine copies topic and payload.  Returns IOTC_OK (the callback will
 * follow), or an error at once: IOTC_ERR_INVALID_ARG (wildcard or invalid
 * topic, QoS 2, payload over 268435455), IOTC_ERR_QUEUE_OFF (offline with
 * queue size 0), IOTC_ERR_CLOSED (stopped), IOTC_ERR_NOMEM. */
int iotc_engine_publish(iotc_engine *e, const char *topic, const uint8_t *payload, size_t len, uint8_t qos,
                        bool retain, iotc_op_done done, void *user, uint64_t now_ms);
/* Messages on the filter go to io.message; the subscription is remembered
 * for resubscription. */
int iotc_engine_subscribe(iotc_engine *e, const char *filter, uint8_t qos, iotc_op_done done, void *user,
                          uint64_t now_ms);
int iotc_engine_unsubscribe(iotc_engine *e, const char *filter, iotc_op_done done, void *user, uint64_t now_ms);

typedef struct {
    bool connected;        /* CONNACK accepted and the link up */
    size_t queued;         /* in the offline queue */
    size_t inflight;       /* sent, awaiting their ack */
    uint64_t dropped;      /* by the queue's policy, since new */
    uint64_t drained;      /* sent from the queue, since new */
    uint32_t attempts;     /* connect attempts since the last stable connection */
} iotc_engine_stats;
void iotc_engine_get_stats(const iotc_engine *e, iotc_engine_stats *out);

#endif
