/*
 * Reconnect backoff (core/backoff.h).  Every product and sum saturates:
 * an outage may last thousands of attempts and max_ms may be anything up to
 * UINT64_MAX, and a wrapped value would turn a long wait into an instant
 * retry.
 */
#include "core/backoff.h"

#include <stddef.h>

void iotc_backoff_config_init(iotc_backoff_config *cfg)
{
    if (!cfg)
        return;
    cfg->min_ms = 1000;
    cfg->max_ms = 128000;
    cfg->stable_ms = 20000;
    cfg->jitter = IOTC_JITTER_NONE;
}

int iotc_backoff_config_check(const iotc_backoff_config *cfg, const char **why)
{
    const char *w = NULL;
    if (!cfg)
        w = "backoff: no configuration";
    else if (cfg->min_ms == 0)
        w = "backoff: min_ms must be > 0 (0 would reconnect in a loop without a pause)";
    else if (cfg->max_ms < cfg->min_ms)
        w = "backoff: max_ms must be >= min_ms";
    else if (cfg->jitter != IOTC_JITTER_NONE && cfg->jitter != IOTC_JITTER_FULL &&
             cfg->jitter != IOTC_JITTER_DECORRELATED)
        w = "backoff: unknown jitter mode";
    if (why)
        *why = w;
    return w ? IOTC_ERR_INVALID_ARG : IOTC_OK;
}

int iotc_backoff_init(iotc_backoff *b, const iotc_backoff_config *cfg, iotc_rand_fn rand, void *rand_ctx)
{
    if (!b || iotc_backoff_config_check(cfg, NULL) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    if (cfg->jitter != IOTC_JITTER_NONE && !rand)
        return IOTC_ERR_INVALID_ARG;
    b->cfg = *cfg;
    b->rand = rand;
    b->rand_ctx = rand_ctx;
    b->connected = false;
    b->connected_at = 0;
    iotc_backoff_reset(b);
    return IOTC_OK;
}

/* min·2^n capped at max, without ever computing a product that overflows:
 * min·2^n > max  <=>  min > floor(max / 2^n) for integers. */
static uint64_t ceiling(uint64_t min, uint64_t max, uint32_t n)
{
    if (n >= 64 || min > (max >> n))
        return max;
    return min << n;
}

/* Uniform in [lo, hi] from one 64-bit draw.  The modulo's bias is at most
 * (hi - lo + 1) / 2^64, far below anything a reconnect delay can show, and
 * unlike rejection sampling it cannot loop on a bad generator. */
static uint64_t between(uint64_t lo, uint64_t hi, uint64_t r)
{
    uint64_t span = hi - lo;
    if (span == UINT64_MAX)
        return r;
    return lo + r % (span + 1);
}

uint64_t iotc_backoff_next(iotc_backoff *b)
{
    const iotc_backoff_config *c = &b->cfg;
    uint64_t wait;
    switch (c->jitter) {
    case IOTC_JITTER_FULL:
        wait = between(0, ceiling(c->min_ms, c->max_ms, b->attempts), b->rand(b->rand_ctx));
        break;
    case IOTC_JITTER_DECORRELATED: {
        uint64_t hi = b->prev_ms > UINT64_MAX / 3 ? UINT64_MAX : b->prev_ms * 3;
        wait = between(c->min_ms, hi, b->rand(b->rand_ctx));
        if (wait > c->max_ms)
            wait = c->max_ms;
        break;
    }
    case IOTC_JITTER_NONE:
    default:
        wait = ceiling(c->min_ms, c->max_ms, b->attempts);
        break;
    }
    b->prev_ms = wait;
    if (b->attempts < UINT32_MAX)
        b->attempts++;
    return wait;
}

void iotc_backoff_connected(iotc_backoff *b, uint64_t now_ms)
{
    b->connected = true;
    b->connected_at = now_ms;
}

void iotc_backoff_disconnected(iotc_backoff *b, uint64_t now_ms)
{
    if (!b->connected)
        return;
    b->connected = false;
    /* A clock that went backwards counts as no uptime: never a reset the
     * connection did not earn. */
    if (now_ms >= b->connected_at && now_ms - b->connected_at >= b->cfg.stable_ms) {
        b->attempts = 0;
        b->prev_ms = b->cfg.min_ms;
    }
}

void iotc_backoff_reset(iotc_backoff *b)
{
    b->attempts = 0;
    b->prev_ms = b->cfg.min_ms;
    b->connected = false;
}

uint32_t iotc_backoff_attempts(const iotc_backoff *b)
{
    return b->attempts;
}
