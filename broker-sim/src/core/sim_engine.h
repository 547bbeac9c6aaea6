/*
 * sim_engine.h: the iotsim broker engine, sans I/O.
 *
 * Owns: MQTT 3.1.1 and 5 connections and sessions as AWS IoT Core runs them
 * (../shared/reference/aws-broker.md §1, §2, §4, §7): CONNECT handling with
 * client-id takeover, keep-alive clamping and timeout, subscriptions with
 * AWS's matching rules, QoS 0/1 routing (QoS 2 refused as AWS does), retained
 * messages per profile, persistent sessions with offline QoS 1 storage and
 * rate-limited replay, the Will, the documented limits, and lifecycle events.
 *
 * It knows no sockets, threads or wall time.  The network edge feeds it bytes
 * and the current virtual time in milliseconds; the engine answers through the
 * sim_io callbacks (bytes to send, connections to close, event-log lines) and
 * tells, from sim_engine_tick(), when it next needs the time.  Randomness (QoS
 * 0 duplicates, UUIDs) comes from sim_io.random, so tests are deterministic.
 * Every callback is made from inside an engine call, on the caller's thread.
 */
#ifndef SIM_ENGINE_H
#define SIM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim_shadow.h"

typedef uint64_t sim_conn_id;
typedef struct sim_engine sim_engine;
struct sim_policy_store; /* sim_policy.h */

typedef enum {
    SIM_PROFILE_CLASSIC = 0, /* the seed documents: retain disconnects, takeover CONNACKs both */
    SIM_PROFILE_CURRENT = 1  /* today's documentation: retained messages, exact-match delivery */
} sim_profile;

typedef enum {
    SIM_RETAIN_DISCONNECT = 0, /* a PUBLISH with RETAIN closes the connection (classic) */
    SIM_RETAIN_STORE = 1       /* one message per topic, exact-match delivery (current) */
} sim_retain_mode;

typedef enum {
    SIM_OVER_SUBS_DISCONNECT = 0, /* the filter past the per-connection limit closes the connection */
    SIM_OVER_SUBS_REFUSE = 1      /* it gets SUBACK 0x80 (v5: 0x97) */
} sim_over_subs;

/* Every limit and deviation switch; sim_config_init() gives the profile's defaults. */
typedef struct {
    sim_profile profile;
    /* limits (aws-broker.md §2) */
    uint32_t max_payload;            /* 131072: larger PUBLISH closes the connection */
    uint32_t max_packet;             /* 131072 + headroom: the reader's limit */
    uint32_t max_topic_bytes;        /* 256 */
    uint32_t max_topic_slashes;      /* 7 */
    uint32_t max_client_id;          /* 128 */
    uint32_t max_filters_per_subscribe; /* 8: more closes the connection, no SUBACK */
    uint32_t max_subscriptions;      /* 50 per connection */
    sim_over_subs over_subscriptions;
    uint32_t publish_rate;           /* 100 inbound PUBLISH per second per connection (0: off) */
    uint32_t throughput;             /* 524288 bytes per second inbound per connection (0: off) */
    uint32_t connect_interval_ms;    /* 1000: one CONNECT per client id per interval (0: off) */
    uint32_t max_inflight;           /* 100 unacknowledged QoS 1 each way */
    uint16_t keepalive_min;          /* 30 */
    uint16_t keepalive_max;          /* 1200; 0 asks for this */
    uint32_t session_expiry_s;       /* 3600: 3.1.1 sessions, and the v5 maximum */
    uint32_t replay_rate;            /* 10 stored messages per second after reconnect */
    uint32_t max_queued;             /* 1000 stored messages per offline session, then drop [UNCONFIRMED] */
    uint32_t qos1_retry_ms;          /* 10000: resend an unacknowledged QoS 1 [UNCONFIRMED] */
    uint32_t qos1_retry_max_ms;      /* 3600000: then drop it */
    uint32_t connect_timeout_ms;     /* 10000: no CONNECT by then closes [UNCONFIRMED] */
    uint16_t topic_alias_max;        /* 8 (MQTT 5 CONNACK) */
    /* deviations (aws-broker.md §1) */
    sim_retain_mode retain;
    bool takeover_connack_both;      /* classic: CONNACK the new client before closing the old */
    bool v3_qos2_subscribe_close;    /* 3.1.1 SUBSCRIBE with QoS 2: also close (default: no SUBACK only) */
    uint32_t qos0_dup_permille;      /* chance of a QoS 0 duplicate per delivery, in 1/1000 */
    uint32_t suback_delay_ms;        /* delay between SUBACK and the first delivery */
    uint32_t reorder_permille;       /* chance that a delivery is held back and overtaken by the next [AWS-ORDER] */
    uint32_t reorder_hold_ms;        /* 100: a held-back delivery goes out after this if nothing overtakes it */
    bool lifecycle_events;           /* publish $aws/events/... (on) */
    bool hash_matches_parent;        /* MQTT's rule that a/# matches a (AWS: off) */
    /* IoT policies (aws-broker.md §6): each connection with a principal is
     * authorized against the policies attached to it.  NULL: no
     * authorization, everything is allowed (the engine's tests, the fuzzers).
     * Connections without a principal (plain TCP, which AWS does not have)
     * are never checked.  Not owned: the store must outlive the engine. */
    const struct sim_policy_store *policies;
    /* The Device Shadow service (aws-services.md §1): requests published to
     * $aws/things/{thing}/shadow[/name/{name}]/{get,update,delete} are
     * answered on their accepted/rejected/delta/documents topics, as broker
     * publishes (QoS 1) that go through the normal routing and iot:Receive.
     * On by default; the engine owns the store (sim_engine_shadows). */
    bool shadow_service;
    sim_shadow_config shadow;
    /* Fleet provisioning by claim (aws-services.md §2): requests on
     * $aws/certificates/create[-from-csr]/{json,cbor} and
     * $aws/provisioning-templates/{name}/provision/{json,cbor} go to it, with
     * the connection's certificate as the claim; its ownership tokens expire
     * on the engine's virtual clock.  NULL: not offered.  Not owned: the
     * program builds it with its backend (the CA, the registry). */
    struct sim_provision *provisioning;
} sim_config;

void sim_config_init(sim_config *cfg, sim_profile profile);

/* How the engine talks back to the edge. */
typedef struct {
    /* Bytes for connection `c`; the edge copies them. */
    void (*send)(void *ctx, sim_conn_id c, const uint8_t *data, size_t len);
    /* Close `c` after what was sent; the engine forgets it on return. */
    void (*close)(void *ctx, sim_conn_id c);
    /* One event-log record: a JSON object without a newline. */
    void (*log)(void *ctx, const char *json);
    uint64_t (*random)(void *ctx);
    /* Wall-clock milliseconds since the epoch, for lifecycle timestamps. */
    uint64_t (*wall_ms)(void *ctx);
    /* A shadow was created, updated or deleted (may be NULL): the edge saves
     * the store (sim_shadow_save) so that shadows outlive the process, as
     * they outlive connections on AWS. */
    void (*shadows_changed)(void *ctx);
} sim_io;

/* What the transport knows about a new connection. */
typedef struct {
    const char *principal;  /* certificate id (SHA-256 of the DER, hex), or NULL */
    const char *thing_name; /* the thing the principal is attached to, or NULL */
    const char *remote_ip;  /* "127.0.0.1" */
    const char *transport;  /* "mqtts", "alpn", "wss", "tcp" */
    /* The principal may not connect (its certificate is INACTIVE or
     * REVOKED): the CONNECT is refused as not authorized and a
     * connect_failed lifecycle event is published [AWS-LIFECYCLE-FAILED]. */
    bool denied;
} sim_conn_info;

sim_engine *sim_engine_new(const sim_config *cfg, const sim_io *io, void *ctx);
void sim_engine_free(sim_engine *e);
const sim_config *sim_engine_config(const sim_engine *e);

/* A transport accepted a connection; returns its id (never 0). */
sim_conn_id sim_engine_open(sim_engine *e, const sim_conn_info *info, uint64_t now_ms);
/* Bytes arrived on `c`.  Returns how many were taken: fewer than `len` when
 * the connection is over its throughput limit, as AWS delays such traffic;
 * the edge keeps the rest, stops reading, and offers it again after the next
 * deadline.
 *
 * Timers: after any call, sim_engine_next_deadline() is no later than the
 * engine's next deadline; when that time comes, call sim_engine_tick(),
 * which runs what is due and returns the exact next deadline.  Ticking more
 * often is harmless (tests tick after every call); ticking on every input of
 * thousands of connections would cost O(connections) each time. */
size_t sim_engine_input(sim_engine *e, sim_conn_id c, const uint8_t *data, size_t len, uint64_t now_ms);
/* The transport lost `c` (reset, EOF, TLS error).  Not called after io->close. */
void sim_engine_lost(sim_engine *e, sim_conn_id c, uint64_t now_ms);
/* Runs due timers; returns the next time it needs a call (UINT64_MAX: none). */
uint64_t sim_engine_tick(sim_engine *e, uint64_t now_ms);
/* A time no later than the next deadline (see above); UINT64_MAX: none. */
uint64_t sim_engine_next_deadline(const sim_engine *e);

/* ---- control (the control API and scenarios steer through these) ---- */

/* Closes `c` as the server would (MQTT 5 DISCONNECT with `reason` first when
 * non-zero); the Will is published.  False if no such connection. */
bool sim_engine_drop(sim_engine *e, sim_conn_id c, uint8_t reason, const char *why, uint64_t now_ms);
/* Refuses every CONNECT until `until_ms` (v3 CONNACK 3, v5 0x88). */
void sim_engine_refuse_until(sim_engine *e, uint64_t until_ms);
/* Stops reading and writing `c` (the edge keeps the socket open). */
bool sim_engine_blackhole(sim_engine *e, sim_conn_id c, bool on);
/* Duplicates the next `n` QoS 0 deliveries. */
void sim_engine_duplicate_next_qos0(sim_engine *e, uint32_t n);
/* Holds every delivery to `c` (0: to every connection) for `ms`. */
void sim_engine_delay_deliveries(sim_engine *e, sim_conn_id c, uint32_t ms, uint64_t now_ms);

/* Writes a broker decision made outside the engine (the control API's
 * changes to the IoT policies) to the event log, on the engine's clock:
 * {"kind": "decision", "what": what, "detail": detail?}. */
void sim_engine_note(sim_engine *e, const char *what, const char *detail);

/* Counts for tests and the control API. */
typedef struct {
    size_t connections;
    size_t sessions;
    size_t subscriptions;
    size_t queued;   /* stored for offline or replaying sessions */
    size_t inflight; /* outbound QoS 1 awaiting PUBACK */
} sim_stats;
void sim_engine_stats(const sim_engine *e, sim_stats *out);

/* The clients, sessions and subscriptions as a JSON object (malloc'd text,
 * free() it; NULL on allocation failure), for the control API. */
char *sim_engine_describe(const sim_engine *e);

/* The shadow store (NULL when cfg.shadow_service is off), for loading saved
 * shadows and for the control API.  Owned by the engine. */
sim_shadow_store *sim_engine_shadows(sim_engine *e);

/* The connection a client id is on now, or 0. */
sim_conn_id sim_engine_find_client(const sim_engine *e, const char *client_id);

#endif
