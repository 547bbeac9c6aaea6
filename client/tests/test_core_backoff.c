/*
 * Reconnect backoff (core/backoff.h) on a virtual clock with injected
 * randomness: every sequence with and without jitter, the reset after the
 * stable time and none before it, the v1 Python SDK's quirks it must not
 * copy (anchors.md §B1), validation, and saturation over long outages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <cmocka.h>

#include "core/backoff.h"

/* ---- injected randomness -------------------------------------------------- */

/* Returns the scripted values in turn (cycling) and counts the calls. */
typedef struct {
    const uint64_t *v;
    size_t n;
    size_t calls;
} script;

static uint64_t script_rand(void *ctx)
{
    script *s = ctx;
    return s->v[s->calls++ % s->n];
}

/* splitmix64: a fixed, well-mixed sequence for property tests. */
typedef struct {
    uint64_t s;
    size_t calls;
} splitmix;

static uint64_t splitmix_rand(void *ctx)
{
    splitmix *m = ctx;
    m->calls++;
    uint64_t z = (m->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static iotc_backoff_config cfg_of(uint64_t min, uint64_t max, uint64_t stable, iotc_jitter j)
{
    iotc_backoff_config c = {.min_ms = min, .max_ms = max, .stable_ms = stable, .jitter = j};
    return c;
}

static void expect_waits(iotc_backoff *b, const uint64_t *exp, size_t n, int line)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t w = iotc_backoff_next(b);
        if (w != exp[i]) {
            print_error("wait %zu: %llu, expected %llu\n", i, (unsigned long long)w, (unsigned long long)exp[i]);
            _fail(__FILE__, line);
        }
    }
}
#define EXPECT_WAITS(b, ...)                                                                                      \
    expect_waits(b, (const uint64_t[]){__VA_ARGS__}, sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t), \
                 __LINE__)

/* ---- configuration -------------------------------------------------------- */

static void test_config_defaults(void **state)
{
    (void)state;
    iotc_backoff_config c;
    memset(&c, 0xa5, sizeof c);
    iotc_backoff_config_init(&c);
    assert_int_equal(c.min_ms, 1000);
    assert_int_equal(c.max_ms, 128000);
    assert_int_equal(c.stable_ms, 20000);
    assert_int_equal(c.jitter, IOTC_JITTER_NONE);
    const char *why = "stale";
    assert_int_equal(iotc_backoff_config_check(&c, &why), IOTC_OK);
    assert_null(why);
    iotc_backoff_config_init(NULL); /* no crash */
}

static void refused(iotc_backoff_config c, const char *needle)
{
    const char *why = NULL;
    assert_int_equal(iotc_backoff_config_check(&c, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(why);
    assert_non_null(strstr(why, needle));
    assert_int_equal(iotc_backoff_config_check(&c, NULL), IOTC_ERR_INVALID_ARG);
    iotc_backoff b;
    splitmix m = {1, 0};
    assert_int_equal(iotc_backoff_init(&b, &c, splitmix_rand, &m), IOTC_ERR_INVALID_ARG);
}

static void test_config_validation(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(iotc_backoff_config_check(NULL, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(why);

    refused(cfg_of(0, 1000, 0, IOTC_JITTER_NONE), "min_ms");
    refused(cfg_of(0, 0, 0, IOTC_JITTER_NONE), "min_ms");          /* max 0 as well */
    refused(cfg_of(1, 0, 0, IOTC_JITTER_NONE), "max_ms");          /* max 0 */
    refused(cfg_of(5000, 4999, 20000, IOTC_JITTER_NONE), "max_ms"); /* min > max */
    refused(cfg_of(1000, 2000, 0, (iotc_jitter)3), "jitter");
    refused(cfg_of(1000, 2000, 0, (iotc_jitter)-1), "jitter");

    /* The edges that are fine. */
    iotc_backoff_config ok[] = {
        cfg_of(1, 1, 0, IOTC_JITTER_NONE),
        cfg_of(1000, 1000, 0, IOTC_JITTER_FULL),
        cfg_of(1, UINT64_MAX, UINT64_MAX, IOTC_JITTER_DECORRELATED),
        cfg_of(UINT64_MAX, UINT64_MAX, 0, IOTC_JITTER_NONE),
        cfg_of(30000, 60000, 1000, IOTC_JITTER_NONE), /* stable below min is allowed */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        why = "stale";
        assert_int_equal(iotc_backoff_config_check(&ok[i], &why), IOTC_OK);
        assert_null(why);
    }
}

static void test_init_refusals_leave_state_untouched(void **state)
{
    (void)state;
    iotc_backoff_config c = cfg_of(1000, 8000, 20000, IOTC_JITTER_FULL);
    iotc_backoff b, before;
    memset(&b, 0x5a, sizeof b);
    memcpy(&before, &b, sizeof b); /* bytes, padding included */
    assert_int_equal(iotc_backoff_init(NULL, &c, splitmix_rand, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_backoff_init(&b, NULL, splitmix_rand, NULL), IOTC_ERR_INVALID_ARG);
    /* Jitter needs randomness. */
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_ERR_INVALID_ARG);
    c.jitter = IOTC_JITTER_DECORRELATED;
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_memory_equal(&b, &before, sizeof b);
    /* Without jitter it needs none. */
    c.jitter = IOTC_JITTER_NONE;
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    assert_int_equal(iotc_backoff_attempts(&b), 0);
    assert_int_equal(iotc_backoff_next(&b), 1000);
}

/* ---- without jitter ------------------------------------------------------- */

static void test_no_jitter_defaults_sequence(void **state)
{
    (void)state;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    iotc_backoff b;
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 128000, 128000);
    assert_int_equal(iotc_backoff_attempts(&b), 10);
}

static void test_no_jitter_cap_not_a_power_of_two(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(300, 1000, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 300, 600, 1000, 1000, 1000);
    c = cfg_of(3, 47, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 3, 6, 12, 24, 47, 47);
    /* A cap one below a doubling. */
    c = cfg_of(1000, 7999, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000, 4000, 7999, 7999);
    c = cfg_of(1000, 8000, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000, 4000, 8000, 8000);
}

static void test_min_equals_max_is_constant(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(2500, 2500, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(iotc_backoff_next(&b), 2500);
}

/* PY1 §B1 1: `_currentBackoffTimeSecond` starts at 1 whatever the base, so
 * configureAutoReconnectBackoffTime(5, 128, 20) waits 1, 2, 4 ... until the
 * first stable connection.  Here the first wait is the configured minimum,
 * above or below one second. */
static void test_py1_first_wait_is_one_second_whatever_the_base(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(5000, 128000, 20000, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 5000, 10000, 20000, 40000, 80000, 128000);
    c = cfg_of(100, 128000, 20000, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 100, 200, 400);
    /* And after a reset too (explicit, and after a stable connection). */
    iotc_backoff_reset(&b);
    EXPECT_WAITS(&b, 100);
    iotc_backoff_connected(&b, 0);
    iotc_backoff_disconnected(&b, 20000);
    EXPECT_WAITS(&b, 100, 200);
}

static void test_attempts_count_and_saturate(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1, 10, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    for (uint32_t i = 1; i <= 5; i++) {
        iotc_backoff_next(&b);
        assert_int_equal(iotc_backoff_attempts(&b), i);
    }
    /* White box: four billion attempts would take too long to run. */
    b.attempts = UINT32_MAX - 1;
    assert_int_equal(iotc_backoff_next(&b), 10);
    assert_int_equal(iotc_backoff_attempts(&b), UINT32_MAX);
    assert_int_equal(iotc_backoff_next(&b), 10);
    assert_int_equal(iotc_backoff_attempts(&b), UINT32_MAX);
    iotc_backoff_reset(&b);
    assert_int_equal(iotc_backoff_attempts(&b), 0);
    assert_int_equal(iotc_backoff_next(&b), 1);
}

static void test_long_outage_saturates_without_overflow(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    uint64_t w = 0;
    for (int i = 0; i < 100000; i++) {
        w = iotc_backoff_next(&b);
        assert_true(w >= 1000 && w <= 128000);
    }
    assert_int_equal(w, 128000);
    assert_int_equal(iotc_backoff_attempts(&b), 100000);

    /* The whole range: min 1, no cap.  2^n exactly, then the cap, never a
     * wrapped (small) value. */
    c = cfg_of(1, UINT64_MAX, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    for (unsigned n = 0; n < 64; n++)
        assert_true(iotc_backoff_next(&b) == (uint64_t)1 << n);
    for (int i = 0; i < 5000; i++)
        assert_true(iotc_backoff_next(&b) == UINT64_MAX);

    /* A large min: the first doubling would overflow. */
    c = cfg_of(UINT64_MAX / 2 + 1, UINT64_MAX, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    assert_true(iotc_backoff_next(&b) == UINT64_MAX / 2 + 1);
    assert_true(iotc_backoff_next(&b) == UINT64_MAX);
    assert_true(iotc_backoff_next(&b) == UINT64_MAX);
    c = cfg_of(UINT64_MAX, UINT64_MAX, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    assert_true(iotc_backoff_next(&b) == UINT64_MAX);
    assert_true(iotc_backoff_next(&b) == UINT64_MAX);
}

/* ---- the stable-connection reset ------------------------------------------ */

static void test_reset_after_stable_time(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    uint64_t now = 1000000;
    /* Three failed attempts. */
    for (uint64_t exp = 1000; exp <= 4000; exp *= 2) {
        iotc_backoff_disconnected(&b, now);
        uint64_t w = iotc_backoff_next(&b);
        assert_int_equal(w, exp);
        now += w;
    }
    iotc_backoff_connected(&b, now);
    now += 20000; /* exactly the stable time: enough */
    iotc_backoff_disconnected(&b, now);
    assert_int_equal(iotc_backoff_attempts(&b), 0);
    EXPECT_WAITS(&b, 1000, 2000);
    /* Longer than the stable time: reset too. */
    iotc_backoff_connected(&b, now);
    iotc_backoff_disconnected(&b, now + 3600000);
    EXPECT_WAITS(&b, 1000);
}

static void test_no_reset_before_stable_time(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000, 4000);
    iotc_backoff_connected(&b, 7000);
    iotc_backoff_disconnected(&b, 7000 + 19999); /* one ms short */
    assert_int_equal(iotc_backoff_attempts(&b), 3);
    EXPECT_WAITS(&b, 8000, 16000);
    /* Up and down at the same instant. */
    iotc_backoff_connected(&b, 50000);
    iotc_backoff_disconnected(&b, 50000);
    EXPECT_WAITS(&b, 32000);
}

/* PY1 §B1 example: a connection accepted and then killed after 5 s each time
 * (a policy violation, a client-id takeover) must keep escalating to the cap,
 * never reset: the reconnect storms of aws-iot-device-sdk-python-v2 #191 and
 * aws-iot-device-sdk-cpp-v2 #416 come from resetting on success. */
static void test_py1_connection_killed_after_5s_keeps_escalating(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 32000, 20000, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    const uint64_t exp[] = {1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000, 32000, 32000};
    uint64_t now = 0;
    for (size_t i = 0; i < sizeof exp / sizeof exp[0]; i++) {
        iotc_backoff_connected(&b, now);
        now += 5000;
        iotc_backoff_disconnected(&b, now);
        uint64_t w = iotc_backoff_next(&b);
        assert_int_equal(w, exp[i]);
        now += w;
    }
}

/* PY1 §B1 4: `_handle_connack` arms the stable timer on every CONNACK, a
 * refused one too.  Here only an accepted CONNACK is a connection: an attempt
 * that never called iotc_backoff_connected() cannot reset, however long it
 * took to fail. */
static void test_py1_refused_connack_arms_the_reset_timer(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000);
    /* The attempt started at 10 s and was refused 40 s later. */
    iotc_backoff_disconnected(&b, 50000);
    EXPECT_WAITS(&b, 4000);
    iotc_backoff_disconnected(&b, UINT64_MAX);
    EXPECT_WAITS(&b, 8000);
}

static void test_stable_zero_resets_after_any_connection(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 60000, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000, 4000);
    iotc_backoff_connected(&b, 100);
    iotc_backoff_disconnected(&b, 100);
    EXPECT_WAITS(&b, 1000, 2000);
    /* A failed attempt is still no connection. */
    iotc_backoff_disconnected(&b, 200);
    EXPECT_WAITS(&b, 4000);
}

static void test_disconnected_is_idempotent(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000);
    iotc_backoff_connected(&b, 0);
    iotc_backoff_disconnected(&b, 10);      /* short: no reset */
    iotc_backoff_disconnected(&b, 1000000); /* the same loss reported again */
    EXPECT_WAITS(&b, 4000);
}

static void test_connected_twice_restarts_the_stable_period(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000);
    iotc_backoff_connected(&b, 0);
    iotc_backoff_connected(&b, 15000);
    iotc_backoff_disconnected(&b, 25000); /* 25 s since the first, 10 s since the second */
    EXPECT_WAITS(&b, 4000);
    iotc_backoff_connected(&b, 30000);
    iotc_backoff_connected(&b, 31000);
    iotc_backoff_disconnected(&b, 51000);
    EXPECT_WAITS(&b, 1000);
}

static void test_clock_going_backwards_never_resets(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000);
    iotc_backoff_connected(&b, 500000);
    iotc_backoff_disconnected(&b, 10);
    EXPECT_WAITS(&b, 4000);
    /* Near the top of the clock: no wrap in the subtraction. */
    iotc_backoff_connected(&b, UINT64_MAX - 5);
    iotc_backoff_disconnected(&b, UINT64_MAX);
    EXPECT_WAITS(&b, 8000);
    iotc_backoff_connected(&b, UINT64_MAX - 20000);
    iotc_backoff_disconnected(&b, UINT64_MAX);
    EXPECT_WAITS(&b, 1000);
}

static void test_explicit_reset(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c;
    iotc_backoff_config_init(&c);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    EXPECT_WAITS(&b, 1000, 2000, 4000);
    iotc_backoff_reset(&b);
    EXPECT_WAITS(&b, 1000, 2000);
    /* A reset forgets the connection: its loss reported later changes nothing. */
    iotc_backoff_connected(&b, 0);
    iotc_backoff_reset(&b);
    EXPECT_WAITS(&b, 1000, 2000);
    iotc_backoff_disconnected(&b, 100000);
    EXPECT_WAITS(&b, 4000);
}

/* The engine's loop over a ten-minute broker outage, on a virtual clock: the
 * attempt times are the running sums of the waits, and after a stable
 * connection the next outage starts again from min. */
static void test_virtual_clock_outage(void **state)
{
    (void)state;
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 32000, 20000, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, NULL, NULL), IOTC_OK);
    const uint64_t broker_back = 600000;
    uint64_t now = 0;
    uint64_t attempts_at[64];
    size_t n = 0;
    iotc_backoff_disconnected(&b, now); /* the link drops at 0 */
    for (;;) {
        now += iotc_backoff_next(&b);
        assert_true(n < 64);
        attempts_at[n++] = now;
        if (now >= broker_back)
            break;
        iotc_backoff_disconnected(&b, now); /* the attempt fails */
    }
    const uint64_t exp[] = {1000, 3000, 7000, 15000, 31000, 63000};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(attempts_at[i], exp[i]);
    for (size_t i = 6; i < n; i++)
        assert_int_equal(attempts_at[i] - attempts_at[i - 1], 32000);
    assert_int_equal(n, 6 + (broker_back - 63000 + 31999) / 32000);
    iotc_backoff_connected(&b, now);
    now += 60000;
    iotc_backoff_disconnected(&b, now);
    EXPECT_WAITS(&b, 1000);
}

/* ---- FULL jitter ---------------------------------------------------------- */

static void test_full_jitter_exact_values(void **state)
{
    (void)state;
    /* Ceilings 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000. */
    const uint64_t r[] = {0, 1000, 4001, 4000, 8001, UINT64_MAX, 123456789, 8000};
    script s = {r, sizeof r / sizeof r[0], 0};
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 8000, 20000, IOTC_JITTER_FULL);
    assert_int_equal(iotc_backoff_init(&b, &c, script_rand, &s), IOTC_OK);
    EXPECT_WAITS(&b, 0,  /* the bottom is 0 */
                 1000,   /* 1000 % 2001 */
                 0,      /* 4001 % 4001 */
                 4000,   /* 4000 % 8001 */
                 0,      /* 8001 % 8001 */
                 1779,   /* UINT64_MAX % 8001 */
                 1359,   /* 123456789 % 8001 */
                 8000);  /* the top is the ceiling itself */
    assert_int_equal(s.calls, 8);
}

static void test_full_jitter_bounds_and_spread(void **state)
{
    (void)state;
    splitmix m = {42, 0};
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(500, 64000, 20000, IOTC_JITTER_FULL);
    assert_int_equal(iotc_backoff_init(&b, &c, splitmix_rand, &m), IOTC_OK);
    enum { ROUNDS = 2000, STEPS = 12 };
    uint64_t lo[STEPS], hi[STEPS];
    for (int k = 0; k < STEPS; k++) {
        lo[k] = UINT64_MAX;
        hi[k] = 0;
    }
    for (int r = 0; r < ROUNDS; r++) {
        iotc_backoff_reset(&b);
        for (int k = 0; k < STEPS; k++) {
            uint64_t ceil = 500ull << k;
            if (ceil > 64000)
                ceil = 64000;
            uint64_t w = iotc_backoff_next(&b);
            assert_true(w <= ceil);
            if (w < lo[k])
                lo[k] = w;
            if (w > hi[k])
                hi[k] = w;
        }
    }
    assert_int_equal(m.calls, (size_t)ROUNDS * STEPS);
    /* Uniform over [0, ceiling]: 2000 draws reach both ends closely. */
    for (int k = 0; k < STEPS; k++) {
        uint64_t ceil = 500ull << k;
        if (ceil > 64000)
            ceil = 64000;
        assert_true(lo[k] <= ceil / 50);
        assert_true(hi[k] >= ceil - ceil / 50);
    }
}

static void test_full_jitter_whole_range(void **state)
{
    (void)state;
    const uint64_t r[] = {UINT64_MAX, 0, 0x0123456789abcdefull};
    script s = {r, 3, 0};
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1, UINT64_MAX, 0, IOTC_JITTER_FULL);
    assert_int_equal(iotc_backoff_init(&b, &c, script_rand, &s), IOTC_OK);
    /* Attempt 0: ceiling 1, so UINT64_MAX % 2 = 1. */
    assert_true(iotc_backoff_next(&b) == 1);
    b.attempts = 64; /* white box: the ceiling is now UINT64_MAX */
    assert_true(iotc_backoff_next(&b) == 0);
    assert_true(iotc_backoff_next(&b) == 0x0123456789abcdefull);
    assert_true(iotc_backoff_next(&b) == UINT64_MAX);
}

/* ---- DECORRELATED jitter -------------------------------------------------- */

static void test_decorrelated_exact_values(void **state)
{
    (void)state;
    const uint64_t r[] = {0, 2000, 8000, 26000, 0, 4000};
    script s = {r, sizeof r / sizeof r[0], 0};
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 10000, 20000, IOTC_JITTER_DECORRELATED);
    assert_int_equal(iotc_backoff_init(&b, &c, script_rand, &s), IOTC_OK);
    EXPECT_WAITS(&b, 1000,  /* [1000, 3000]: the bottom */
                 3000,      /* [1000, 3000]: the top */
                 9000,      /* [1000, 9000]: the top */
                 10000,     /* [1000, 27000] = 27000, capped */
                 1000,      /* [1000, 30000]: the bottom */
                 2999);     /* [1000, 3000]: 1000 + 4000 % 2001 */
    assert_int_equal(s.calls, 6);
}

static void test_decorrelated_formula_against_a_model(void **state)
{
    (void)state;
    /* sleep = min(cap, random_between(base, sleep * 3)), sleep starting at
     * base: the AWS Architecture Blog's formula, computed independently. */
    splitmix m = {7, 0}, model = {7, 0};
    iotc_backoff b;
    const uint64_t base = 250, cap = 90000;
    iotc_backoff_config c = cfg_of(base, cap, 20000, IOTC_JITTER_DECORRELATED);
    assert_int_equal(iotc_backoff_init(&b, &c, splitmix_rand, &m), IOTC_OK);
    uint64_t sleep = base;
    bool hit_cap = false, hit_base = false;
    for (int i = 0; i < 20000; i++) {
        uint64_t hi = sleep * 3;
        uint64_t r = splitmix_rand(&model);
        uint64_t exp = base + r % (hi - base + 1);
        if (exp > cap)
            exp = cap;
        uint64_t w = iotc_backoff_next(&b);
        assert_int_equal(w, exp);
        assert_true(w >= base && w <= cap && w <= hi);
        hit_cap |= w == cap;
        hit_base |= w < base * 2;
        sleep = w;
    }
    assert_true(hit_cap && hit_base);
    assert_int_equal(m.calls, 20000);
}

static void test_decorrelated_no_overflow(void **state)
{
    (void)state;
    const uint64_t r[] = {UINT64_MAX, UINT64_MAX - 1, 0, 12345};
    script s = {r, 4, 0};
    iotc_backoff b;
    const uint64_t min = UINT64_MAX / 4;
    iotc_backoff_config c = cfg_of(min, UINT64_MAX, 0, IOTC_JITTER_DECORRELATED);
    assert_int_equal(iotc_backoff_init(&b, &c, script_rand, &s), IOTC_OK);
    /* prev·3 is below 2^64 for the first draw only; afterwards it saturates
     * and the span [min, UINT64_MAX] is used whole. */
    for (int i = 0; i < 1000; i++) {
        uint64_t w = iotc_backoff_next(&b);
        assert_true(w >= min);
    }
    /* Once 3·prev saturates, the range is [min, UINT64_MAX]: with min 1 its
     * span is UINT64_MAX - 1 and span + 1 must not wrap. */
    c = cfg_of(1, UINT64_MAX, 0, IOTC_JITTER_DECORRELATED);
    const uint64_t r2[] = {UINT64_MAX - 1, UINT64_MAX, UINT64_MAX - 2};
    script s2 = {r2, 3, 0};
    assert_int_equal(iotc_backoff_init(&b, &c, script_rand, &s2), IOTC_OK);
    b.prev_ms = UINT64_MAX / 2; /* white box: a long outage's last wait */
    assert_true(iotc_backoff_next(&b) == UINT64_MAX); /* 1 + (MAX - 1) % MAX */
    assert_true(iotc_backoff_next(&b) == 1);          /* 1 + MAX % MAX */
    /* prev is 1 now: [1, 3], and MAX - 2 = 1 (mod 3) since 3 divides MAX. */
    assert_true(iotc_backoff_next(&b) == 2);
}

static void test_decorrelated_reset_after_stable_time(void **state)
{
    (void)state;
    const uint64_t r[] = {UINT64_MAX};
    script s = {r, 1, 0};
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 100000, 20000, IOTC_JITTER_DECORRELATED);
    assert_int_equal(iotc_backoff_init(&b, &c, script_rand, &s), IOTC_OK);
    /* Tops of the ranges: UINT64_MAX % (3·prev - 1000 + 1) as computed. */
    uint64_t prev = 1000;
    for (int i = 0; i < 10; i++) {
        uint64_t w = iotc_backoff_next(&b);
        uint64_t exp = 1000 + UINT64_MAX % (prev * 3 - 1000 + 1);
        if (exp > 100000)
            exp = 100000;
        assert_int_equal(w, exp);
        prev = w;
    }
    /* A short connection keeps `prev`; a stable one sends it back to min. */
    iotc_backoff_connected(&b, 0);
    iotc_backoff_disconnected(&b, 19999);
    assert_true(iotc_backoff_next(&b) <= 100000);
    iotc_backoff_connected(&b, 100000);
    iotc_backoff_disconnected(&b, 120000);
    uint64_t w = iotc_backoff_next(&b);
    assert_int_equal(w, 1000 + UINT64_MAX % 2001);
    assert_true(w >= 1000 && w <= 3000);
}

/* ---- randomness is injected and used only for jitter ----------------------- */

static void test_rand_use(void **state)
{
    (void)state;
    splitmix m = {1, 0};
    iotc_backoff b;
    iotc_backoff_config c = cfg_of(1000, 8000, 0, IOTC_JITTER_NONE);
    assert_int_equal(iotc_backoff_init(&b, &c, splitmix_rand, &m), IOTC_OK);
    for (int i = 0; i < 50; i++)
        iotc_backoff_next(&b);
    iotc_backoff_connected(&b, 0);
    iotc_backoff_disconnected(&b, 5);
    iotc_backoff_reset(&b);
    assert_int_equal(m.calls, 0);
    c.jitter = IOTC_JITTER_FULL;
    assert_int_equal(iotc_backoff_init(&b, &c, splitmix_rand, &m), IOTC_OK);
    assert_int_equal(m.calls, 0);
    for (int i = 0; i < 50; i++)
        iotc_backoff_next(&b);
    assert_int_equal(m.calls, 50);
    iotc_backoff_connected(&b, 0);
    iotc_backoff_disconnected(&b, 5);
    iotc_backoff_reset(&b);
    assert_int_equal(m.calls, 50);
}

static void test_same_seed_same_sequence(void **state)
{
    (void)state;
    for (int j = IOTC_JITTER_FULL; j <= IOTC_JITTER_DECORRELATED; j++) {
        splitmix m1 = {99, 0}, m2 = {99, 0}, m3 = {100, 0};
        iotc_backoff b1, b2, b3;
        iotc_backoff_config c = cfg_of(100, 30000, 5000, (iotc_jitter)j);
        assert_int_equal(iotc_backoff_init(&b1, &c, splitmix_rand, &m1), IOTC_OK);
        assert_int_equal(iotc_backoff_init(&b2, &c, splitmix_rand, &m2), IOTC_OK);
        assert_int_equal(iotc_backoff_init(&b3, &c, splitmix_rand, &m3), IOTC_OK);
        int differ = 0;
        for (int i = 0; i < 200; i++) {
            uint64_t w1 = iotc_backoff_next(&b1);
            assert_int_equal(w1, iotc_backoff_next(&b2));
            differ += w1 != iotc_backoff_next(&b3);
        }
        assert_true(differ > 150);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_init_refusals_leave_state_untouched),
        cmocka_unit_test(test_no_jitter_defaults_sequence),
        cmocka_unit_test(test_no_jitter_cap_not_a_power_of_two),
        cmocka_unit_test(test_min_equals_max_is_constant),
        cmocka_unit_test(test_py1_first_wait_is_one_second_whatever_the_base),
        cmocka_unit_test(test_attempts_count_and_saturate),
        cmocka_unit_test(test_long_outage_saturates_without_overflow),
        cmocka_unit_test(test_reset_after_stable_time),
        cmocka_unit_test(test_no_reset_before_stable_time),
        cmocka_unit_test(test_py1_connection_killed_after_5s_keeps_escalating),
        cmocka_unit_test(test_py1_refused_connack_arms_the_reset_timer),
        cmocka_unit_test(test_stable_zero_resets_after_any_connection),
        cmocka_unit_test(test_disconnected_is_idempotent),
        cmocka_unit_test(test_connected_twice_restarts_the_stable_period),
        cmocka_unit_test(test_clock_going_backwards_never_resets),
        cmocka_unit_test(test_explicit_reset),
        cmocka_unit_test(test_virtual_clock_outage),
        cmocka_unit_test(test_full_jitter_exact_values),
        cmocka_unit_test(test_full_jitter_bounds_and_spread),
        cmocka_unit_test(test_full_jitter_whole_range),
        cmocka_unit_test(test_decorrelated_exact_values),
        cmocka_unit_test(test_decorrelated_formula_against_a_model),
        cmocka_unit_test(test_decorrelated_no_overflow),
        cmocka_unit_test(test_decorrelated_reset_after_stable_time),
        cmocka_unit_test(test_rand_use),
        cmocka_unit_test(test_same_seed_same_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
