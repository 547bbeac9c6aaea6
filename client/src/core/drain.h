/*
 * core/drain.h: the pace at which the offline queue is sent after a
 * reconnect.
 *
 * Owns: one token bucket with room for one token, refilled at `hz` tokens
 * per second.  iotc_drain_take(now) says whether one item may go now (and
 * takes the token); iotc_drain_next(now) says when one may, so the engine
 * arms a timer instead of sleeping.  The v1 Python SDK slept 1/hz after
 * every item on its own thread (../shared/reference/anchors.md §B2); a
 * sleep blocks everything else the engine does and cannot be tested without
 * waiting, while a bucket is two numbers and a virtual clock.  Pure: time
 * comes in as `now_ms` (any monotonic millisecond clock).
 *
 * Why the bucket holds one token and not more: the point of draining at a
 * set frequency is a steady rate just after a reconnect, which is when the
 * broker is busiest (a whole fleet coming back) and when AWS IoT's
 * per-connection throttling (100 publishes/s) drops QoS 1 publishes without
 * a PUBACK.  A bucket that filled during an idle period or the outage
 * would let a burst out at exactly that moment.  With one token, after any
 * idle time at most one item goes at once and the next waits a full period;
 * lateness of the caller is never made up by a burst, so the rate never
 * exceeds `hz` (to the microsecond the period is rounded to) and slips
 * below it only by the caller's own lateness.
 *
 * The one allowance is the clock's resolution: the token's arrival is kept
 * in microseconds, and a take less than a millisecond after it counts from
 * the arrival, not from `now`, so that 3 Hz on a millisecond clock is 3 per
 * second (takes at 0, 334, 667, 1000 ms) rather than 1000/334.  Above
 * 1000 Hz this lets a millisecond's worth go in the same millisecond.
 *
 * The first item after a reconnect goes at once: the engine calls
 * iotc_drain_reset() when the link comes up.  Resubscriptions may use a
 * second bucket of their own (anchors.md §G3).
 *
 * Not thread-safe; the engine calls it from its one thread.
 */
#ifndef IOTC_CORE_DRAIN_H
#define IOTC_CORE_DRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* Items per second; 0: as fast as possible (every take succeeds).
     * Fractions are fine (0.5: one every 2 s).  At most 1e6; at least one
     * item per 1e12 s, anything slower is refused as a mistake. */
    double hz;
} iotc_drain_config;

/* Default: 2 Hz, the v1 Python SDK's draining frequency. */
void iotc_drain_config_init(iotc_drain_config *cfg);

/* IOTC_OK, or IOTC_ERR_INVALID_ARG with `*why` (when `why` is not NULL) set
 * to a static sentence: NULL, negative, NaN, infinite, over 1e6 Hz, under
 * 1e-12 Hz (other than 0). */
int iotc_drain_config_check(const iotc_drain_config *cfg, const char **why);

/* State.  Fields private; public so that the engine embeds it. */
typedef struct {
    uint64_t period_us; /* 0: unlimited */
    uint64_t token_us;  /* when the token is (or was) there; 0: now */
} iotc_drain;

/* A bucket with its token in, so the first take succeeds.  IOTC_OK, or
 * IOTC_ERR_INVALID_ARG (d NULL, bad config) leaving `d` untouched. */
int iotc_drain_init(iotc_drain *d, const iotc_drain_config *cfg);

/* The link came up: the token is in, whatever happened before, so the
 * first item after a reconnect goes at once. */
void iotc_drain_reset(iotc_drain *d);

/* Whether one item may go at `now_ms`; if so the token is taken and the
 * next arrives one period later. */
bool iotc_drain_take(iotc_drain *d, uint64_t now_ms);

/* The earliest time >= now_ms at which iotc_drain_take() succeeds: now_ms
 * itself if an item may go now.  Does not take. */
uint64_t iotc_drain_next(const iotc_drain *d, uint64_t now_ms);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_CORE_DRAIN_H */
