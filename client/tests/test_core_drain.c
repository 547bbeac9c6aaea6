/*
 * Drain pacing (core/drain.h) on a virtual clock: the first item goes at
 * once, then one per period; no burst after idle time or a late caller;
 * the first item after a reconnect goes at once; 0 Hz is unpaced;
 * fractional rates keep their rate on a millisecond clock; the rate bound
 * holds for any call pattern.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "core/drain.h"

static iotc_drain make(double hz)
{
    iotc_drain d;
    iotc_drain_config c = {.hz = hz};
    assert_int_equal(iotc_drain_init(&d, &c), IOTC_OK);
    return d;
}

/* ---- configuration -------------------------------------------------------- */

static void test_config_defaults(void **state)
{
    (void)state;
    iotc_drain_config c;
    memset(&c, 0x11, sizeof c);
    iotc_drain_config_init(&c);
    assert_true(c.hz == 2.0);
    const char *why = "stale";
    assert_int_equal(iotc_drain_config_check(&c, &why), IOTC_OK);
    assert_null(why);
    iotc_drain_config_init(NULL); /* no crash */
}

static void test_config_validation(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(iotc_drain_config_check(NULL, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(why);
    const double bad[] = {-1.0, -1e-300, NAN, -NAN, INFINITY, -INFINITY, 1e6 + 1, 1e300, 1e-13, 5e-324};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iotc_drain_config c = {.hz = bad[i]};
        why = NULL;
        assert_int_equal(iotc_drain_config_check(&c, &why), IOTC_ERR_INVALID_ARG);
        assert_non_null(why);
        assert_non_null(strstr(why, "frequency"));
        assert_int_equal(iotc_drain_config_check(&c, NULL), IOTC_ERR_INVALID_ARG);
        iotc_drain d, before;
        memset(&d, 0x6b, sizeof d);
        memcpy(&before, &d, sizeof d);
        assert_int_equal(iotc_drain_init(&d, &c), IOTC_ERR_INVALID_ARG);
        assert_memory_equal(&d, &before, sizeof d);
    }
    const double ok[] = {0.0, -0.0, 1e-12, 0.5, 2.0, 3.0, 10.0, 1000.0, 1e6};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        iotc_drain_config c = {.hz = ok[i]};
        why = "stale";
        assert_int_equal(iotc_drain_config_check(&c, &why), IOTC_OK);
        assert_null(why);
    }
    iotc_drain_config c = {.hz = 2.0};
    assert_int_equal(iotc_drain_init(NULL, &c), IOTC_ERR_INVALID_ARG);
    iotc_drain d;
    assert_int_equal(iotc_drain_init(&d, NULL), IOTC_ERR_INVALID_ARG);
}

/* ---- the default 2 Hz ----------------------------------------------------- */

static void test_first_item_at_once_then_one_per_period(void **state)
{
    (void)state;
    iotc_drain d = make(2.0);
    assert_int_equal(iotc_drain_next(&d, 1000), 1000);
    assert_true(iotc_drain_take(&d, 1000));
    assert_false(iotc_drain_take(&d, 1000));
    assert_false(iotc_drain_take(&d, 1499));
    assert_int_equal(iotc_drain_next(&d, 1000), 1500);
    assert_int_equal(iotc_drain_next(&d, 1499), 1500);
    assert_true(iotc_drain_take(&d, 1500));
    assert_int_equal(iotc_drain_next(&d, 1500), 2000);
    assert_false(iotc_drain_take(&d, 1999));
    assert_true(iotc_drain_take(&d, 2000));
}

/* PY1 §B2 slept 0.5 s after every item, the last one too, on the thread
 * that does the work, so N items took N × 0.5 s.  Here the engine waits
 * only for next(): N items leave over (N - 1) periods, the first at once. */
static void test_py1_sleep_after_every_item(void **state)
{
    (void)state;
    iotc_drain d = make(2.0);
    uint64_t now = 77;
    uint64_t times[10];
    for (int i = 0; i < 10; i++) {
        now = iotc_drain_next(&d, now);
        assert_true(iotc_drain_take(&d, now));
        times[i] = now;
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(times[i], 77 + 500 * (uint64_t)i);
}

static void test_next_does_not_take(void **state)
{
    (void)state;
    iotc_drain d = make(2.0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(iotc_drain_next(&d, 5), 5);
    assert_true(iotc_drain_take(&d, 5));
    for (int i = 0; i < 100; i++)
        assert_int_equal(iotc_drain_next(&d, 6), 505);
    assert_true(iotc_drain_take(&d, 505));
}

/* ---- one token: no bursts -------------------------------------------------- */

static void test_no_burst_after_idle(void **state)
{
    (void)state;
    iotc_drain d = make(2.0);
    assert_true(iotc_drain_take(&d, 0));
    /* A minute with nothing to send: 120 periods, but only one token. */
    assert_true(iotc_drain_take(&d, 60000));
    assert_false(iotc_drain_take(&d, 60000));
    assert_false(iotc_drain_take(&d, 60499));
    assert_int_equal(iotc_drain_next(&d, 60000), 60500);
    /* Also from a fresh bucket left idle. */
    d = make(2.0);
    assert_true(iotc_drain_take(&d, 3600000));
    assert_false(iotc_drain_take(&d, 3600000));
}

static void test_late_caller_is_not_made_up(void **state)
{
    (void)state;
    iotc_drain d = make(2.0);
    assert_true(iotc_drain_take(&d, 0));
    assert_true(iotc_drain_take(&d, 700)); /* 200 ms late */
    assert_int_equal(iotc_drain_next(&d, 700), 1200);
    assert_false(iotc_drain_take(&d, 1000));
    assert_true(iotc_drain_take(&d, 1200));
    /* A millisecond late is lateness too (only sub-millisecond rounding is
     * carried). */
    assert_true(iotc_drain_take(&d, 1701));
    assert_int_equal(iotc_drain_next(&d, 1701), 2201);
}

/* ---- reconnects ------------------------------------------------------------ */

static void test_first_item_after_reconnect_goes_at_once(void **state)
{
    (void)state;
    iotc_drain d = make(2.0);
    assert_true(iotc_drain_take(&d, 0));
    assert_true(iotc_drain_take(&d, 500));
    /* The link drops at 600 with the queue half drained and is back at 700:
     * without the reset the next item would wait until 1000. */
    assert_false(iotc_drain_take(&d, 700));
    iotc_drain_reset(&d);
    assert_int_equal(iotc_drain_next(&d, 700), 700);
    assert_true(iotc_drain_take(&d, 700));
    assert_false(iotc_drain_take(&d, 700));
    assert_int_equal(iotc_drain_next(&d, 700), 1200);
    /* A reset changes nothing when the token is in anyway. */
    iotc_drain_reset(&d);
    iotc_drain_reset(&d);
    assert_true(iotc_drain_take(&d, 800));
    assert_false(iotc_drain_take(&d, 800));
}

/* ---- rates ----------------------------------------------------------------- */

static void test_zero_hz_is_unpaced(void **state)
{
    (void)state;
    iotc_drain d = make(0.0);
    for (int i = 0; i < 10000; i++)
        assert_true(iotc_drain_take(&d, 42));
    assert_int_equal(iotc_drain_next(&d, 42), 42);
    assert_true(iotc_drain_take(&d, 0));
    iotc_drain_reset(&d);
    assert_true(iotc_drain_take(&d, UINT64_MAX));
    assert_true(iotc_drain_next(&d, UINT64_MAX) == UINT64_MAX);
}

/* Driving the bucket by next() from `start`, the k-th item leaves at `at(k)`. */
static void drive(double hz, uint64_t start, int n, uint64_t (*at)(uint64_t start, uint64_t k))
{
    iotc_drain d = make(hz);
    uint64_t now = start;
    for (int k = 0; k < n; k++) {
        now = iotc_drain_next(&d, now);
        assert_true(iotc_drain_take(&d, now));
        uint64_t exp = at(start, (uint64_t)k);
        if (now != exp) {
            print_error("%g Hz, item %d: at %llu, expected %llu\n", hz, k, (unsigned long long)now,
                        (unsigned long long)exp);
            fail();
        }
    }
}

/* 3 Hz: 333333 µs periods, each take at the first millisecond the token is
 * in, but counted from the token's arrival: 0, 334, 667, 1000 ... */
static uint64_t at_3hz(uint64_t start, uint64_t k)
{
    uint64_t us = k * 333333;
    return start + us / 1000 + (us % 1000 != 0);
}

static uint64_t at_half_hz(uint64_t start, uint64_t k)
{
    return start + 2000 * k;
}

static uint64_t at_7_5hz(uint64_t start, uint64_t k)
{
    uint64_t us = k * 133333; /* 1e6 / 7.5 = 133333.3 */
    return start + us / 1000 + (us % 1000 != 0);
}

/* 6 Hz: 1e6 / 6 = 166666.7 µs, rounded to the nearest: 166667, so the
 * rate errs (by 2 ppm) on the slow side here and item 6 leaves at 1001 ms. */
static uint64_t at_6hz(uint64_t start, uint64_t k)
{
    uint64_t us = k * 166667;
    return start + us / 1000 + (us % 1000 != 0);
}

static void test_fractional_rates_keep_their_rate(void **state)
{
    (void)state;
    drive(3.0, 0, 3001, at_3hz);
    drive(3.0, 123456, 3001, at_3hz);
    drive(0.5, 10, 100, at_half_hz);
    drive(7.5, 0, 7501, at_7_5hz);
    drive(6.0, 0, 6001, at_6hz);
    assert_int_equal(at_6hz(0, 6), 1001);
    /* 3 Hz over 1000 s is 3000 periods, give or take the microsecond the
     * period is rounded to: not 1000 / 334 per second. */
    assert_int_equal(at_3hz(0, 3000), 999999);
    assert_int_equal(at_3hz(0, 3), 1000);
}

static void test_above_1000_hz_per_millisecond(void **state)
{
    (void)state;
    const double rates[] = {2000.0, 5000.0, 1e6};
    const int per_ms[] = {2, 5, 1000};
    for (size_t r = 0; r < 3; r++) {
        iotc_drain d = make(rates[r]);
        assert_true(iotc_drain_take(&d, 0));
        assert_false(iotc_drain_take(&d, 0));
        assert_int_equal(iotc_drain_next(&d, 0), 1);
        int total = 1;
        for (uint64_t ms = 1; ms <= 1000; ms++) {
            int n = 0;
            while (iotc_drain_take(&d, ms))
                n++;
            assert_int_equal(n, per_ms[r]);
            total += n;
        }
        assert_int_equal(total, (int)rates[r] + 1);
    }
}

/* ---- properties under any call pattern ------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Whatever the caller does, between any two takes i < j at t_i <= t_j:
 * (j - i) periods fit in (t_j - t_i) ms plus the one millisecond of clock
 * rounding.  And take(next(now)) always succeeds. */
static void test_rate_bound_for_any_call_pattern(void **state)
{
    (void)state;
    const double rates[] = {2.0, 3.0, 7.5, 100.0, 999.0};
    enum { TAKES = 1500 };
    static uint64_t t[TAKES];
    rng_state = 5;
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        iotc_drain d = make(rates[r]);
        uint64_t period_us = (uint64_t)(1e6 / rates[r] + 0.5);
        uint64_t now = 1000;
        int n = 0, resets = 0;
        while (n < TAKES) {
            switch (rng() % 4) {
            case 0: /* poll a little later */
                now += rng() % (period_us / 1000 + 2);
                break;
            case 1: /* jump to the promised time */
                now = iotc_drain_next(&d, now);
                assert_true(iotc_drain_next(&d, now) == now);
                break;
            case 2: /* idle for a while */
                if (rng() % 8 == 0)
                    now += rng() % 10000;
                break;
            default:
                break;
            }
            uint64_t promised = iotc_drain_next(&d, now);
            assert_true(promised >= now);
            bool took = iotc_drain_take(&d, now);
            assert_true(took == (promised == now));
            if (took)
                t[n++] = now;
            if (rng() % 1000 == 0 && n < TAKES) { /* a reconnect: the bound restarts */
                iotc_drain_reset(&d);
                assert_true(iotc_drain_take(&d, now));
                resets++;
                /* Check the segment so far, then start a new one. */
                for (int i = 0; i < n; i++)
                    for (int j = i + 1; j < n; j++)
                        assert_true((uint64_t)(j - i) * period_us < (t[j] - t[i]) * 1000 + 1000);
                n = 0;
                t[n++] = now;
            }
        }
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                assert_true((uint64_t)(j - i) * period_us < (t[j] - t[i]) * 1000 + 1000);
        (void)resets;
    }
}

static void test_clock_edges(void **state)
{
    (void)state;
    /* Backwards: nothing goes before the token, next() stays >= now. */
    iotc_drain d = make(2.0);
    assert_true(iotc_drain_take(&d, 1000));
    assert_false(iotc_drain_take(&d, 500));
    assert_int_equal(iotc_drain_next(&d, 500), 1500);
    assert_int_equal(iotc_drain_next(&d, 0), 1500);
    /* The top of the clock: no wrap in ms -> µs or in token + period.  A
     * second below the last millisecond whose microseconds fit in 64 bits,
     * one period still fits; the next saturates (the bucket then lets
     * everything through: 584 000 years of uptime are not a concern). */
    d = make(2.0);
    uint64_t top = UINT64_MAX / 1000 - 1000;
    assert_true(iotc_drain_take(&d, top));
    assert_false(iotc_drain_take(&d, top));
    assert_true(iotc_drain_next(&d, top) == top + 500);
    assert_true(iotc_drain_take(&d, top + 500));
    assert_true(iotc_drain_next(&d, top + 500) > top + 500);
    assert_false(iotc_drain_take(&d, top + 999));
    assert_true(iotc_drain_take(&d, UINT64_MAX));
    assert_true(iotc_drain_next(&d, UINT64_MAX) == UINT64_MAX);
    /* The slowest rate: a period of about 1e18 µs (1e6 / 1e-12 in double)
     * is added without a wrap. */
    d = make(1e-12);
    assert_true(iotc_drain_take(&d, 5));
    uint64_t nx = iotc_drain_next(&d, 5);
    assert_true(nx >= 5 + 1000000000000000ull - 1 && nx <= 5 + 1000000000000000ull + 1);
    assert_false(iotc_drain_take(&d, nx - 1));
    assert_true(iotc_drain_take(&d, nx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_first_item_at_once_then_one_per_period),
        cmocka_unit_test(test_py1_sleep_after_every_item),
        cmocka_unit_test(test_next_does_not_take),
        cmocka_unit_test(test_no_burst_after_idle),
        cmocka_unit_test(test_late_caller_is_not_made_up),
        cmocka_unit_test(test_first_item_after_reconnect_goes_at_once),
        cmocka_unit_test(test_zero_hz_is_unpaced),
        cmocka_unit_test(test_fractional_rates_keep_their_rate),
        cmocka_unit_test(test_above_1000_hz_per_millisecond),
        cmocka_unit_test(test_rate_bound_for_any_call_pattern),
        cmocka_unit_test(test_clock_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
