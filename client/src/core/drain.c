/*
 * Drain pacing (core/drain.h): a one-token bucket kept as the time its
 * token arrives, in microseconds so that periods that are not whole
 * milliseconds (3 Hz) keep their rate on a millisecond clock.
 */
#include "core/drain.h"

#include <math.h>
#include <stddef.h>

/* The bounds keep the period between 1 µs and 1e18 µs, inside uint64_t
 * with room to add it to any time. */
#define DRAIN_MAX_HZ 1e6
#define DRAIN_MIN_HZ 1e-12

void iotc_drain_config_init(iotc_drain_config *cfg)
{
    if (cfg)
        cfg->hz = 2.0;
}

int iotc_drain_config_check(const iotc_drain_config *cfg, const char **why)
{
    const char *w = NULL;
    if (!cfg)
        w = "drain: no configuration";
    else if (isnan(cfg->hz) || cfg->hz < 0.0)
        w = "drain: frequency must be >= 0 (0: as fast as possible)";
    else if (cfg->hz > DRAIN_MAX_HZ)
        w = "drain: frequency must be at most 1e6 Hz (use 0 for no pacing)";
    else if (cfg->hz != 0.0 && cfg->hz < DRAIN_MIN_HZ)
        w = "drain: frequency under 1e-12 Hz (one item per 31700 years)";
    if (why)
        *why = w;
    return w ? IOTC_ERR_INVALID_ARG : IOTC_OK;
}

int iotc_drain_init(iotc_drain *d, const iotc_drain_config *cfg)
{
    if (!d || iotc_drain_config_check(cfg, NULL) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    /* Rounded to the nearest microsecond: 2 Hz is exactly 500000. */
    d->period_us = cfg->hz == 0.0 ? 0 : (uint64_t)(1e6 / cfg->hz + 0.5);
    d->token_us = 0;
    return IOTC_OK;
}

void iotc_drain_reset(iotc_drain *d)
{
    d->token_us = 0;
}

static uint64_t to_us(uint64_t ms)
{
    return ms > UINT64_MAX / 1000 ? UINT64_MAX : ms * 1000;
}

bool iotc_drain_take(iotc_drain *d, uint64_t now_ms)
{
    if (d->period_us == 0)
        return true;
    uint64_t now_us = to_us(now_ms);
    if (now_us < d->token_us)
        return false;
    /* On time to the millisecond: count from the token's arrival, so the
     * clock's rounding does not slow the rate.  Later: from now, so a late
     * caller gets no burst (the bucket holds one token). */
    uint64_t base = now_us - d->token_us < 1000 ? d->token_us : now_us;
    d->token_us = base > UINT64_MAX - d->period_us ? UINT64_MAX : base + d->period_us;
    return true;
}

uint64_t iotc_drain_next(const iotc_drain *d, uint64_t now_ms)
{
    if (d->period_us == 0 || to_us(now_ms) >= d->token_us)
        return now_ms;
    /* Rounded up: the first whole millisecond at which the token is in. */
    return d->token_us / 1000 + (d->token_us % 1000 != 0);
}
