/*
 * core/backoff.h: how long to wait before the next reconnect attempt.
 *
 * Owns: the reconnect backoff state of one client: the exponential ceiling
 * between min_ms and max_ms, the optional jitter, and the stable-connection
 * rule that decides when the backoff starts again from min_ms.  Pure: no
 * clock, no timer, no allocation.  Time comes in as `now_ms` (any monotonic
 * millisecond clock) and randomness through the `rand` function given to
 * iotc_backoff_init(), so a test replays any sequence exactly.
 *
 * The engine's loop:
 *
 *     attempt failed or link lost  ->  iotc_backoff_disconnected(b, now)
 *                                      wait = iotc_backoff_next(b); arm a timer
 *     CONNACK accepted             ->  iotc_backoff_connected(b, now)
 *     user disconnect / new config ->  iotc_backoff_reset(b)
 *
 * Semantics (../shared/reference/anchors.md §B1, §B3, §G1):
 * - Without jitter the waits are min, 2·min, 4·min, ... capped at max.  The
 *   first wait is min_ms itself (the v1 Python SDK starts at 1 s whatever
 *   its base, §B1; this one does not).
 * - FULL jitter: uniform in [0, ceiling], the ceiling escalating as above
 *   (AWS Architecture Blog, "Exponential Backoff And Jitter").
 * - DECORRELATED jitter: min(max, uniform in [min, 3·previous wait]), the
 *   previous wait starting at min (same article; aws-c-mqtt's MQTT 5 client).
 * - Reset: only a connection that stayed up at least stable_ms (from its
 *   accepted CONNACK to its loss) sends the backoff back to min.  One that is
 *   accepted and then killed sooner (a policy violation, a client-id
 *   takeover) keeps escalating, which is what stops reconnect storms
 *   (aws-iot-device-sdk-python-v2 #191).  A refused CONNACK is not a
 *   connection: the engine calls iotc_backoff_connected() only on success
 *   (the v1 Python SDK armed its reset timer on refusals too, §B1 4).
 *
 * Not thread-safe; the engine calls it from its one thread.
 */
#ifndef IOTC_CORE_BACKOFF_H
#define IOTC_CORE_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

#include "iotc/client.h"
#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* iotc_jitter (the modes) is public: iotc/client.h. */

typedef struct {
    uint64_t min_ms;    /* first wait and the base of the doubling; > 0 */
    uint64_t max_ms;    /* cap; >= min_ms */
    uint64_t stable_ms; /* uptime after which a lost connection resets; 0: any */
    iotc_jitter jitter;
} iotc_backoff_config;

/* Defaults: min 1000 ms, max 128000 ms, stable 20000 ms (the JS v1 SDK's
 * and aws-c-mqtt 3.1.1's values; the v1 SDKs' 20 s stable time), no jitter
 * (the v1 SDKs have none; a fleet that reconnects together should set
 * IOTC_JITTER_FULL). */
void iotc_backoff_config_init(iotc_backoff_config *cfg);

/* IOTC_OK, or IOTC_ERR_INVALID_ARG with `*why` (when `why` is not NULL) set
 * to a static sentence naming the bad field.  Refused: NULL, min_ms 0 (the
 * doubling would never leave 0: a reconnect loop with no pause), max_ms <
 * min_ms (which includes max_ms 0), an unknown jitter mode.  stable_ms is
 * free: 0 resets after every accepted connection, as paho does. */
int iotc_backoff_config_check(const iotc_backoff_config *cfg, const char **why);

/* Randomness for jitter: any 64-bit value, all bits used.  Called once per
 * iotc_backoff_next() with jitter and never without. */
typedef uint64_t (*iotc_rand_fn)(void *ctx);

/* State.  The fields are private; the struct is public so that the engine
 * embeds it without an allocation. */
typedef struct {
    iotc_backoff_config cfg;
    iotc_rand_fn rand;
    void *rand_ctx;
    uint32_t attempts;     /* waits handed out since the last reset (saturates) */
    uint64_t prev_ms;      /* the last wait, for DECORRELATED */
    uint64_t connected_at; /* valid while `connected` */
    bool connected;
} iotc_backoff;

/* Starts `b` from min with a copy of `cfg`.  `rand` may be NULL only with
 * IOTC_JITTER_NONE; `rand_ctx` is passed to it and stays the caller's.
 * Returns IOTC_OK, or IOTC_ERR_INVALID_ARG (b NULL, bad config, jitter
 * without rand) leaving `b` untouched. */
int iotc_backoff_init(iotc_backoff *b, const iotc_backoff_config *cfg, iotc_rand_fn rand, void *rand_ctx);

/* The wait in ms before the next attempt, and one step up the escalation.
 * Always <= max_ms; >= min_ms except with FULL jitter (>= 0). */
uint64_t iotc_backoff_next(iotc_backoff *b);

/* A CONNACK accepted the connection at `now_ms`.  A second call without a
 * disconnect in between restarts the stable period (the conservative
 * reading of a caller's mistake). */
void iotc_backoff_connected(iotc_backoff *b, uint64_t now_ms);

/* The connection or the attempt ended at `now_ms`.  Resets to min if a
 * connection was up and now_ms - connected_at >= stable_ms; otherwise (a
 * failed attempt, a short-lived connection, a clock that went backwards)
 * the escalation goes on.  Idempotent. */
void iotc_backoff_disconnected(iotc_backoff *b, uint64_t now_ms);

/* Back to min now (the user disconnected, or starts over). */
void iotc_backoff_reset(iotc_backoff *b);

/* Waits handed out since the last reset: the attempt number, for logs and
 * callbacks.  Saturates at UINT32_MAX. */
uint32_t iotc_backoff_attempts(const iotc_backoff *b);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_CORE_BACKOFF_H */
