/*
 * test_client_call_after.c: timers on the client's service thread
 * (iotc_client_call_after, iotc_client_cancel_calls,
 * iotc_client_on_service_thread in iotc/client.h), the hook the shadow
 * client's request timeouts hang on.
 *
 * A real client (its lws service thread and link timer), unconnected for
 * most tests, and connected to the fake broker (helpers/fake_broker.h) for
 * the one that checks the calls share the link's timer with the engine's
 * keep-alive.  Every wait is a condition with a generous deadline (Valgrind
 * on a busy machine); only lower bounds on time are asserted exactly.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "helpers/fake_broker.h"
#include "helpers/test_wait.h"
#include "iotc/client.h"

/* One record per call: what ran, when, where, with which status. */
#define MAX_RUNS 4096
typedef struct {
    int id;
    int status;
    uint64_t at;
    bool on_service; /* iotc_client_on_service_thread inside the call */
    pthread_t thread;
} run_rec;

static run_rec runs[MAX_RUNS];
static int nruns;

static void reset(void)
{
    pthread_mutex_lock(&g_mu);
    memset(runs, 0, sizeof runs);
    nruns = 0;
    pthread_mutex_unlock(&g_mu);
}

static void record(iotc_client *c, int status, void *user)
{
    bool svc = iotc_client_on_service_thread(c);
    pthread_mutex_lock(&g_mu);
    if (nruns < MAX_RUNS)
        runs[nruns++] = (run_rec){(int)(intptr_t)user, status, now_ms(), svc, pthread_self()};
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static int count_runs(void)
{
    pthread_mutex_lock(&g_mu);
    int n = nruns;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* An unconnected client: the service thread runs from iotc_client_new on. */
static iotc_client *new_client(uint16_t port)
{
    iotc_builder *b = NULL;
    assert_int_equal(iotc_new_default_builder(&b, "127.0.0.1"), IOTC_OK);
    assert_int_equal(iotc_builder_set_tls(b, false), IOTC_OK);
    assert_int_equal(iotc_builder_set_port(b, port ? port : 9), IOTC_OK);
    assert_int_equal(iotc_builder_set_client_id(b, "call-after"), IOTC_OK);
    iotc_client *c = NULL;
    assert_int_equal(iotc_client_new(b, NULL, NULL, &c), IOTC_OK);
    iotc_builder_free(b);
    return c;
}

static void test_args(void **state)
{
    (void)state;
    iotc_client *c = new_client(0);
    assert_int_equal(iotc_client_call_after(NULL, 0, record, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_client_call_after(c, 0, NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_client_cancel_calls(NULL, record, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_client_cancel_calls(c, NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_client_cancel_calls(c, record, NULL), 0);
    assert_false(iotc_client_on_service_thread(NULL));
    assert_false(iotc_client_on_service_thread(c));
    iotc_client_free(c);
}

static void test_runs_on_service_thread_not_early(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    uint64_t t0 = now_ms();
    assert_int_equal(iotc_client_call_after(c, 120, record, (void *)1), IOTC_OK);
    ASSERT_WAIT(nruns == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(runs[0].id, 1);
    assert_int_equal(runs[0].status, IOTC_OK);
    assert_true(runs[0].on_service);
    assert_false(pthread_equal(runs[0].thread, pthread_self()));
    assert_true(runs[0].at >= t0 + 120);
    pthread_mutex_unlock(&g_mu);
    /* Exactly once. */
    sleep_ms(100);
    assert_int_equal(count_runs(), 1);
    iotc_client_free(c);
    assert_int_equal(count_runs(), 1);
}

/* Makes the order test's calls from the service thread, where none of
 * them can run before all are made (a busy machine cannot reorder them). */
static void make_order(iotc_client *c, int status, void *user)
{
    (void)status;
    (void)user;
    assert_int_equal(iotc_client_call_after(c, 60, record, (void *)4), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 20, record, (void *)2), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 20, record, (void *)3), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 0, record, (void *)1), IOTC_OK);
}

static void test_order(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    assert_int_equal(iotc_client_call_after(c, 0, make_order, NULL), IOTC_OK);
    ASSERT_WAIT(nruns == 4);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 4; i++)
        assert_int_equal(runs[i].id, i + 1);
    pthread_mutex_unlock(&g_mu);
    iotc_client_free(c);
}

/* ---- from inside a call ---------------------------------------------------------------- */

typedef struct {
    iotc_client *c;
    bool inside;      /* set while the first call runs */
    bool saw_inside;  /* the second call found the first still running */
    int chain;        /* how many times the chain re-armed itself */
    int rc_inner;
} inner_ctx;

static void second(iotc_client *c, int status, void *user)
{
    (void)c;
    (void)status;
    inner_ctx *x = user;
    pthread_mutex_lock(&g_mu);
    x->saw_inside = x->inside;
    nruns++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void first(iotc_client *c, int status, void *user)
{
    (void)status;
    inner_ctx *x = user;
    pthread_mutex_lock(&g_mu);
    x->inside = true;
    pthread_mutex_unlock(&g_mu);
    /* 0 ms from the service thread: later, never inside this call. */
    int rc = iotc_client_call_after(c, 0, second, x);
    pthread_mutex_lock(&g_mu);
    x->rc_inner = rc;
    x->inside = false;
    nruns++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void test_zero_from_a_call_is_not_inline(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    inner_ctx x = {.c = c};
    assert_int_equal(iotc_client_call_after(c, 0, first, &x), IOTC_OK);
    ASSERT_WAIT(nruns == 2);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(x.rc_inner, IOTC_OK);
    assert_false(x.saw_inside);
    pthread_mutex_unlock(&g_mu);
    iotc_client_free(c);
}

static void rearm(iotc_client *c, int status, void *user)
{
    (void)status;
    inner_ctx *x = user;
    pthread_mutex_lock(&g_mu);
    int n = ++x->chain;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    /* A call that asks for itself again at once must not spin in one pass. */
    if (n < 200)
        assert_int_equal(iotc_client_call_after(c, 0, rearm, x), IOTC_OK);
}

static void test_rearm_chain(void **state)
{
    (void)state;
    iotc_client *c = new_client(0);
    inner_ctx x = {.c = c};
    assert_int_equal(iotc_client_call_after(c, 0, rearm, &x), IOTC_OK);
    ASSERT_WAIT(x.chain == 200);
    sleep_ms(50);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(x.chain, 200);
    pthread_mutex_unlock(&g_mu);
    iotc_client_free(c);
}

/* ---- cancelling ------------------------------------------------------------------------ */

static int u1, u2;

static void test_cancel(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    /* Far enough ahead that none can run before the cancel, however busy
     * the machine. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(iotc_client_call_after(c, 5000, record, &u1), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 80, record, &u2), IOTC_OK);
    assert_int_equal(iotc_client_cancel_calls(c, record, &u1), 3);
    assert_int_equal(iotc_client_cancel_calls(c, record, &u1), 0);
    ASSERT_WAIT(nruns == 1);
    sleep_ms(150);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(nruns, 1);
    assert_true(runs[0].id == (int)(intptr_t)&u2);
    pthread_mutex_unlock(&g_mu);
    /* Nothing is left to cancel once it ran; a cancelled call is not told
     * at free either. */
    assert_int_equal(iotc_client_cancel_calls(c, record, &u2), 0);
    assert_int_equal(iotc_client_call_after(c, 60000, record, &u1), IOTC_OK);
    assert_int_equal(iotc_client_cancel_calls(c, record, &u1), 1);
    iotc_client_free(c);
    assert_int_equal(count_runs(), 1);
}

typedef struct {
    iotc_client *c;
    int cancelled;
} canceller;

static void cancel_others(iotc_client *c, int status, void *user)
{
    (void)status;
    canceller *k = user;
    int n = iotc_client_cancel_calls(c, record, &u1);
    pthread_mutex_lock(&g_mu);
    k->cancelled = n;
    nruns++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void make_cancel(iotc_client *c, int status, void *user)
{
    (void)status;
    /* Made on the service thread: the first two are due in the same pass,
     * the canceller first. */
    assert_int_equal(iotc_client_call_after(c, 30, cancel_others, user), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 30, record, &u1), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 90, record, &u1), IOTC_OK);
}

static void test_cancel_from_a_call(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    canceller k = {c, -1};
    assert_int_equal(iotc_client_call_after(c, 0, make_cancel, &k), IOTC_OK);
    ASSERT_WAIT(nruns >= 1);
    sleep_ms(200);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(k.cancelled, 2);
    assert_int_equal(nruns, 1);
    pthread_mutex_unlock(&g_mu);
    iotc_client_free(c);
}

/* ---- at free ----------------------------------------------------------------------------- */

static int rc_after_close = 1;

static void closed_rec(iotc_client *c, int status, void *user)
{
    int rc = iotc_client_call_after(c, 0, record, NULL);
    pthread_mutex_lock(&g_mu);
    rc_after_close = rc;
    pthread_mutex_unlock(&g_mu);
    record(c, status, user);
}

static void test_free_tells_pending_calls(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    assert_int_equal(iotc_client_call_after(c, 60000, closed_rec, (void *)1), IOTC_OK);
    assert_int_equal(iotc_client_call_after(c, 50000, record, (void *)2), IOTC_OK);
    iotc_client_free(c);
    /* On the freeing thread, with CLOSED, in deadline order, once each; a
     * new call cannot be made any more. */
    pthread_mutex_lock(&g_mu);
    assert_int_equal(nruns, 2);
    assert_int_equal(runs[0].id, 2);
    assert_int_equal(runs[1].id, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(runs[i].status, IOTC_ERR_CLOSED);
        assert_true(pthread_equal(runs[i].thread, pthread_self()));
    }
    assert_int_equal(rc_after_close, IOTC_ERR_CLOSED);
    pthread_mutex_unlock(&g_mu);
}

/* ---- from many threads ------------------------------------------------------------------ */

typedef struct {
    iotc_client *c;
    int base;
} thr_arg;

enum { THREADS = 4, PER_THREAD = 150 };

static void *spray(void *p)
{
    thr_arg *a = p;
    unsigned r = (unsigned)a->base * 2654435761u;
    for (int i = 0; i < PER_THREAD; i++) {
        r = r * 1103515245u + 12345u;
        if (iotc_client_call_after(a->c, (r >> 16) % 25, record, (void *)(intptr_t)(a->base + i)) != IOTC_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_from_many_threads(void **state)
{
    (void)state;
    reset();
    iotc_client *c = new_client(0);
    pthread_t t[THREADS];
    thr_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (thr_arg){c, 1000 * (i + 1)};
        assert_int_equal(pthread_create(&t[i], NULL, spray, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rv = NULL;
        pthread_join(t[i], &rv);
        assert_null(rv);
    }
    ASSERT_WAIT(nruns == THREADS * PER_THREAD);
    pthread_mutex_lock(&g_mu);
    static unsigned char seen[THREADS + 1][PER_THREAD];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < nruns; i++) {
        assert_true(runs[i].on_service);
        assert_int_equal(runs[i].status, IOTC_OK);
        int th = runs[i].id / 1000, k = runs[i].id % 1000;
        assert_true(th >= 1 && th <= THREADS && k < PER_THREAD);
        assert_int_equal(seen[th][k]++, 0);
    }
    pthread_mutex_unlock(&g_mu);
    iotc_client_free(c);
}

/* ---- with the engine's own timer --------------------------------------------------------- */

static void test_shares_the_link_timer_with_the_engine(void **state)
{
    (void)state;
    reset();
    fb *b = fb_start();
    assert_non_null(b);
    iotc_client *c = new_client(fb_port(b));
    /* Connected, the engine's keep-alive deadline (60 s) holds the link's
     * timer; an earlier call must still fire on time, and a later ping
     * must still happen after it. */
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    uint64_t t0 = now_ms();
    assert_int_equal(iotc_client_call_after(c, 150, record, (void *)7), IOTC_OK);
    ASSERT_WAIT(nruns == 1);
    pthread_mutex_lock(&g_mu);
    assert_true(runs[0].at >= t0 + 150);
    assert_true(runs[0].on_service);
    pthread_mutex_unlock(&g_mu);
    iotc_client_stats st;
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_true(st.connected);
    iotc_client_free(c);
    fb_stop(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_runs_on_service_thread_not_early),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_zero_from_a_call_is_not_inline),
        cmocka_unit_test(test_rearm_chain),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_from_a_call),
        cmocka_unit_test(test_free_tells_pending_calls),
        cmocka_unit_test(test_from_many_threads),
        cmocka_unit_test(test_shares_the_link_timer_with_the_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
