/*
 * helpers/test_wait.h: the lock, condition and deadline waits shared by the
 * threaded client tests (test_client_api, test_client_call_after,
 * test_shadow_api, test_identity_api).  Callbacks on the client's service
 * thread record what they saw under g_mu and broadcast g_cv; the test thread
 * waits for a condition with ASSERT_WAIT.
 *
 * Timing: every wait has a generous deadline (Valgrind on a busy machine);
 * "nothing happens" is checked over a short sleep.
 */
#ifndef IOTC_TESTS_HELPERS_TEST_WAIT_H
#define IOTC_TESTS_HELPERS_TEST_WAIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* How long ASSERT_WAIT waits before it fails the test. */
#define WAIT_MS 30000u

/* Guards what the callbacks record; g_cv is broadcast on every change. */
extern pthread_mutex_t g_mu;
extern pthread_cond_t g_cv;

/* The monotonic clock, in ms (the client's own). */
uint64_t now_ms(void);

/* *ts = CLOCK_REALTIME now + ms, for pthread_cond_timedwait. */
void deadline_in(struct timespec *ts, uint32_t ms);

void sleep_ms(unsigned ms);

/* Waits, with g_mu, until `cond` holds or WAIT_MS passed, and fails the
 * test (at the caller's line) if it does not hold by then.  `cond` reads
 * the state the callbacks write, so it is evaluated with g_mu held.  Needs
 * <cmocka.h> (fail_msg). */
#define ASSERT_WAIT(cond)                                                                                        \
    do {                                                                                                         \
        struct timespec dl_;                                                                                     \
        deadline_in(&dl_, WAIT_MS);                                                                              \
        pthread_mutex_lock(&g_mu);                                                                               \
        int e_ = 0;                                                                                              \
        while (!(cond) && e_ == 0)                                                                               \
            e_ = pthread_cond_timedwait(&g_cv, &g_mu, &dl_);                                                     \
        bool ok_ = (cond);                                                                                       \
        pthread_mutex_unlock(&g_mu);                                                                             \
        if (!ok_)                                                                                                \
            fail_msg("waited %u ms in vain for: %s", WAIT_MS, #cond);                                            \
    } while (0)

#endif
