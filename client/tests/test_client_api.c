/*
 * test_client_api.c: the public client API (iotc/client.h) end to end.
 *
 * Two halves.  First, arguments the API must refuse at the call, before
 * anything reaches the wire.  Then the real client (its lws service thread,
 * the engine, the link) against a scripted fake broker on a thread
 * (helpers/fake_broker.h) over plain TCP on 127.0.0.1 with a port the OS
 * picks: lifecycle callbacks, acks, reconnection, the offline queue, what
 * CONNECT carries, threads, and freeing with work outstanding.
 *
 * Timing.  Nothing here depends on the machine being fast: every wait is a
 * condition with a generous deadline (WAIT_MS, long enough for Valgrind's
 * 20x slowdown on a busy 2-core box); natively each wait ends as soon as its
 * condition holds.  Reconnect backoff is set to 50..200 ms and draining to
 * "as fast as possible" so that a reconnect costs little real time.
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
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "helpers/fake_broker.h"
#include "helpers/test_wait.h"
#include "iotc/client.h"

/* ---- shared state the callbacks write and the test reads --------------------- */

/* One lock for everything the callbacks record (g_mu, helpers/test_wait.h):
 * they run on the client's service thread while the test thread waits on
 * `g_cv`.  The test thread never calls the client while holding it (a
 * callback holds the client's own lock while it takes this one). */

#define MAX_MSGS 16

typedef struct {
    int success, failure, interrupted, resumed, closed;
    bool success_sp;
    int fail_err;
    uint8_t fail_rc;
    uint64_t fail_ms[8]; /* when each of the first failures was reported */
    char fail_reason[256];
    int int_err;
    uint8_t res_rc;
    bool res_sp;
    /* the thread every callback ran on */
    pthread_t cb_thread;
    bool cb_thread_set, cb_thread_varied;
    /* on_message */
    int msgs;
    char msg_topic[MAX_MSGS][64];
    char msg_payload[MAX_MSGS][64];
    /* a subscription's own callback */
    int sub_msgs;
    char sub_topic[MAX_MSGS][64];
    /* the BUSY test: blocking helpers called from on_connection_success */
    bool try_blocking;
    int busy[5];
} events;

static events ev;

static void ev_reset(void)
{
    pthread_mutex_lock(&g_mu);
    memset(&ev, 0, sizeof ev);
    pthread_mutex_unlock(&g_mu);
}

/* g_mu held. */
static void note_thread(void)
{
    pthread_t me = pthread_self();
    if (!ev.cb_thread_set) {
        ev.cb_thread = me;
        ev.cb_thread_set = true;
    } else if (!pthread_equal(me, ev.cb_thread)) {
        ev.cb_thread_varied = true;
    }
}

static void on_success(iotc_client *c, bool sp, void *user)
{
    (void)user;
    int busy[5] = {0};
    bool try_blocking;
    pthread_mutex_lock(&g_mu);
    try_blocking = ev.try_blocking;
    pthread_mutex_unlock(&g_mu);
    if (try_blocking) {
        /* Outside g_mu: these must come back at once, and must not wait on
         * the thread they are running on. */
        bool p = false;
        busy[0] = iotc_publish_wait(c, "t/busy", "x", 1, 1, false, 1000);
        busy[1] = iotc_subscribe_wait(c, "t/busy", 1, NULL, NULL, 1000, NULL);
        busy[2] = iotc_unsubscribe_wait(c, "t/busy", 1000);
        busy[3] = iotc_client_connect_wait(c, 1000, &p);
        busy[4] = iotc_client_disconnect_wait(c, 1000);
    }
    pthread_mutex_lock(&g_mu);
    note_thread();
    ev.success++;
    ev.success_sp = sp;
    if (try_blocking)
        memcpy(ev.busy, busy, sizeof busy);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_failure(iotc_client *c, int err, uint8_t rc, const char *reason, void *user)
{
    (void)c;
    (void)user;
    pthread_mutex_lock(&g_mu);
    note_thread();
    if (ev.failure < 8)
        ev.fail_ms[ev.failure] = fb_now_ms();
    if (getenv("IOTC_TEST_DEBUG"))
        print_message("failure %d at %llu: err %d rc %u: %s\n", ev.failure, (unsigned long long)fb_now_ms(), err,
                      (unsigned)rc, reason ? reason : "(null)");
    ev.failure++;
    ev.fail_err = err;
    ev.fail_rc = rc;
    snprintf(ev.fail_reason, sizeof ev.fail_reason, "%s", reason ? reason : "(null)");
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_interrupted(iotc_client *c, int err, const char *reason, void *user)
{
    (void)c;
    (void)reason;
    (void)user;
    pthread_mutex_lock(&g_mu);
    note_thread();
    ev.interrupted++;
    ev.int_err = err;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_resumed(iotc_client *c, uint8_t rc, bool sp, void *user)
{
    (void)c;
    (void)user;
    pthread_mutex_lock(&g_mu);
    note_thread();
    ev.resumed++;
    ev.res_rc = rc;
    ev.res_sp = sp;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_closed(iotc_client *c, void *user)
{
    (void)c;
    (void)user;
    pthread_mutex_lock(&g_mu);
    note_thread();
    ev.closed++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void copy_view(char *dst, size_t cap, const void *p, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, p, n);
    dst[n] = 0;
}

static void on_message(iotc_client *c, const char *topic, size_t tl, const uint8_t *payload, size_t len,
                       uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c;
    (void)qos;
    (void)retain;
    (void)dup;
    (void)user;
    pthread_mutex_lock(&g_mu);
    note_thread();
    if (ev.msgs < MAX_MSGS) {
        copy_view(ev.msg_topic[ev.msgs], sizeof ev.msg_topic[0], topic, tl);
        copy_view(ev.msg_payload[ev.msgs], sizeof ev.msg_payload[0], payload, len);
    }
    ev.msgs++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_sub_message(iotc_client *c, const char *topic, size_t tl, const uint8_t *payload, size_t len,
                           uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c;
    (void)payload;
    (void)len;
    (void)qos;
    (void)retain;
    (void)dup;
    (void)user;
    pthread_mutex_lock(&g_mu);
    note_thread();
    if (ev.sub_msgs < MAX_MSGS)
        copy_view(ev.sub_topic[ev.sub_msgs], sizeof ev.sub_topic[0], topic, tl);
    ev.sub_msgs++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static const iotc_callbacks cbs = {on_success, on_failure, on_interrupted, on_resumed, on_closed, on_message};

/* A completion: how often it was called and with what. */
typedef struct {
    int calls;
    int status;
    uint8_t granted;
    pthread_t thread;
} done_rec;

static void on_done(int status, uint8_t granted, void *user)
{
    done_rec *d = user;
    pthread_mutex_lock(&g_mu);
    d->calls++;
    d->status = status;
    d->granted = granted;
    d->thread = pthread_self();
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Reads an int the callbacks write. */
static int get_int(const int *p)
{
    pthread_mutex_lock(&g_mu);
    int v = *p;
    pthread_mutex_unlock(&g_mu);
    return v;
}

/* ---- fixtures ---------------------------------------------------------------- */

static fb *broker;

/* Clients a test made: a failed assertion leaves the test at once, and a
 * client left running would go on calling the shared callbacks during the
 * next tests; the teardown frees what is left. */
#define MAX_LIVE 4
static iotc_client *live[MAX_LIVE];

static void track(iotc_client *c)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (!live[i]) {
            live[i] = c;
            return;
        }
    }
    fail_msg("more than %d clients at once", MAX_LIVE);
}

static void free_client(iotc_client *c)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == c)
            live[i] = NULL;
    iotc_client_free(c);
}

static int setup_broker(void **state)
{
    (void)state;
    ev_reset();
    broker = fb_start();
    return broker ? 0 : -1;
}

static int teardown_broker(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_LIVE; i++)
        free_client(live[i]);
    fb_stop(broker);
    broker = NULL;
    return 0;
}

/* A builder for the fake broker: plain TCP, quick reconnects, no drain
 * pacing (the drain's rate is the engine tests' business). */
static iotc_builder *fb_builder(void)
{
    iotc_builder *b = NULL;
    assert_int_equal(iotc_new_default_builder(&b, "127.0.0.1"), IOTC_OK);
    assert_int_equal(iotc_builder_set_tls(b, false), IOTC_OK);
    assert_int_equal(iotc_builder_set_port(b, fb_port(broker)), IOTC_OK);
    assert_int_equal(iotc_builder_set_reconnect(b, 50, 200), IOTC_OK);
    assert_int_equal(iotc_builder_set_drain_hz(b, 0), IOTC_OK);
    assert_int_equal(iotc_builder_set_client_id(b, "test-client"), IOTC_OK);
    return b;
}

static iotc_client *new_client(iotc_builder *b)
{
    iotc_client *c = NULL;
    int rc = iotc_client_new(b, &cbs, NULL, &c);
    if (rc != IOTC_OK)
        print_error("iotc_client_new: %s (%s)\n", iotc_strerror(rc), iotc_client_new_why());
    assert_int_equal(rc, IOTC_OK);
    iotc_builder_free(b);
    track(c);
    return c;
}

static iotc_client *connected_client(iotc_builder *b)
{
    iotc_client *c = new_client(b);
    bool sp = true;
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, &sp), IOTC_OK);
    assert_true(fb_wait_connected(broker, WAIT_MS));
    return c;
}

/* ---- arguments refused at the call ------------------------------------------- */

static void test_builder_constructor_args(void **state)
{
    (void)state;
    iotc_builder *b = (iotc_builder *)0x1;
    assert_int_equal(iotc_new_default_builder(NULL, "h"), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_new_default_builder(&b, NULL), IOTC_ERR_INVALID_ARG);
    assert_null(b);
    assert_int_equal(iotc_new_default_builder(&b, ""), IOTC_ERR_INVALID_ARG);
    assert_null(b);
    assert_int_equal(iotc_mtls_from_path(&b, "h", NULL, "k.pem"), IOTC_ERR_INVALID_ARG);
    assert_null(b);
    assert_int_equal(iotc_mtls_from_path(&b, "h", "c.pem", NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_mtls_from_path(&b, NULL, "c.pem", "k.pem"), IOTC_ERR_INVALID_ARG);
    assert_null(b);
    assert_int_equal(iotc_mtls_with_pkcs12(&b, "h", NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_mtls_from_bytes(&b, "h", NULL, 0, "k", 1), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_websockets_with_default_aws_signing(&b, "h", NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_websockets_with_custom_handshake(&b, "h", NULL, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_direct_with_custom_authorizer(&b, "h", NULL), IOTC_ERR_INVALID_ARG);
    assert_null(b);
    /* A failed constructor says why (there is no builder to ask), and a
     * constructor that works clears it. */
    assert_int_equal(iotc_mtls_from_path(&b, "h", NULL, "k.pem"), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_builder_new_why(), "cert_path"));
    assert_int_equal(iotc_websockets_with_default_aws_signing(&b, "h", "", NULL), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_builder_new_why(), "region"));
    iotc_custom_auth half = {.token_key_name = "k"};
    assert_int_equal(iotc_direct_with_custom_authorizer(&b, "h", &half), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_builder_new_why(), "token_value"));
    assert_int_equal(iotc_new_default_builder(&b, ""), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_builder_new_why(), "endpoint"));
    assert_int_equal(iotc_new_default_builder(&b, "h"), IOTC_OK);
    assert_string_equal(iotc_builder_new_why(), "");
    iotc_builder_free(b);
    b = NULL;

    /* Every setter refuses a NULL builder. */
    assert_int_equal(iotc_builder_set_port(NULL, 1), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_builder_set_reconnect(NULL, 1, 2), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_builder_set_will(NULL, "t", "x", 1, 0, false), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_builder_set_offline_queue(NULL, 1, IOTC_DROP_OLDEST), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_builder_set_drain_hz(NULL, 1), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_builder_set_tls(NULL, false), IOTC_ERR_INVALID_ARG);
    assert_string_not_equal(iotc_builder_why(NULL), "");
    iotc_builder_free(NULL);
}

/* Calls a setter that must fail and checks that the builder says why, and
 * that a later successful setter clears the reason. */
#define REFUSED(b, call)                                                                                         \
    do {                                                                                                         \
        assert_int_equal((call), IOTC_ERR_INVALID_ARG);                                                          \
        assert_string_not_equal(iotc_builder_why(b), "");                                                        \
        assert_int_equal(iotc_builder_set_clean_session(b, true), IOTC_OK);                                      \
        assert_string_equal(iotc_builder_why(b), "");                                                            \
    } while (0)

static void test_builder_setter_args(void **state)
{
    (void)state;
    iotc_builder *b = NULL;
    assert_int_equal(iotc_new_default_builder(&b, "example.com"), IOTC_OK);
    assert_string_equal(iotc_builder_why(b), "");
    REFUSED(b, iotc_builder_set_reconnect(b, 0, 1000));
    REFUSED(b, iotc_builder_set_reconnect(b, 2000, 1000));
    REFUSED(b, iotc_builder_set_will(b, "a/+/b", "x", 1, 0, false));
    REFUSED(b, iotc_builder_set_will(b, "a/#", "x", 1, 0, false));
    REFUSED(b, iotc_builder_set_will(b, "a/b", "x", 1, 2, false));
    REFUSED(b, iotc_builder_set_will(b, NULL, "x", 1, 0, false));
    REFUSED(b, iotc_builder_set_offline_queue(b, -2, IOTC_DROP_OLDEST));
    REFUSED(b, iotc_builder_set_drain_hz(b, -1));
    REFUSED(b, iotc_builder_set_port(b, 0));
    REFUSED(b, iotc_builder_set_ping_timeout_ms(b, 0));
    REFUSED(b, iotc_builder_set_client_id(b, ""));
    REFUSED(b, iotc_builder_set_connack_timeout_ms(b, 0));
    /* AWS IoT's 128-byte client id, unless its limits are off. */
    char id[200];
    memset(id, 'i', sizeof id);
    id[129] = 0;
    REFUSED(b, iotc_builder_set_client_id(b, id));
    id[128] = 0;
    assert_int_equal(iotc_builder_set_client_id(b, id), IOTC_OK);
    id[128] = 'i';
    assert_int_equal(iotc_builder_set_aws_limits(b, false), IOTC_OK);
    assert_int_equal(iotc_builder_set_client_id(b, id), IOTC_OK);
    REFUSED(b, iotc_builder_set_aws_limits(b, true)); /* the id set is over them */
    /* The edges that are fine. */
    assert_int_equal(iotc_builder_set_reconnect(b, 1000, 1000), IOTC_OK);
    assert_int_equal(iotc_builder_set_offline_queue(b, IOTC_QUEUE_UNBOUNDED, IOTC_DROP_NEWEST), IOTC_OK);
    assert_int_equal(iotc_builder_set_offline_queue(b, IOTC_QUEUE_OFF, IOTC_DROP_NEWEST), IOTC_OK);
    assert_int_equal(iotc_builder_set_drain_hz(b, 0), IOTC_OK);
    assert_int_equal(iotc_builder_set_will(b, "a/b", "x", 1, 1, true), IOTC_OK);
    iotc_builder_free(b);
}

static void test_client_new_args(void **state)
{
    (void)state;
    iotc_client *c = (iotc_client *)0x1;
    assert_int_equal(iotc_client_new(NULL, &cbs, NULL, &c), IOTC_ERR_INVALID_ARG);
    assert_null(c);
    assert_string_not_equal(iotc_client_new_why(), "");

    iotc_builder *b = NULL;
    assert_int_equal(iotc_new_default_builder(&b, "127.0.0.1"), IOTC_OK);
    assert_int_equal(iotc_builder_set_tls(b, false), IOTC_OK);
    assert_int_equal(iotc_client_new(b, &cbs, NULL, NULL), IOTC_ERR_INVALID_ARG);
    /* Ping timeout must be shorter than keep-alive: 10 s vs 10 s, 11 s vs 10 s. */
    assert_int_equal(iotc_builder_set_keep_alive_secs(b, 10), IOTC_OK);
    assert_int_equal(iotc_builder_set_ping_timeout_ms(b, 10000), IOTC_OK);
    c = (iotc_client *)0x1;
    assert_int_equal(iotc_client_new(b, &cbs, NULL, &c), IOTC_ERR_INVALID_ARG);
    assert_null(c);
    assert_non_null(strstr(iotc_client_new_why(), "ping"));
    assert_int_equal(iotc_builder_set_ping_timeout_ms(b, 11000), IOTC_OK);
    assert_int_equal(iotc_client_new(b, &cbs, NULL, &c), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_client_new_why(), "ping"));
    /* Just under is fine, and the reason is cleared. */
    assert_int_equal(iotc_builder_set_ping_timeout_ms(b, 9999), IOTC_OK);
    assert_int_equal(iotc_client_new(b, &cbs, NULL, &c), IOTC_OK);
    assert_string_equal(iotc_client_new_why(), "");
    free_client(c);
    iotc_builder_free(b);

    iotc_client_free(NULL);
}

static void test_unreadable_cert(void **state)
{
    (void)state;
    iotc_builder *b = NULL;
    assert_int_equal(iotc_mtls_from_path(&b, "example.com", "/nonexistent/cert.pem", "/nonexistent/key.pem"),
                     IOTC_OK);
    iotc_client *c = (iotc_client *)0x1;
    assert_int_equal(iotc_client_new(b, &cbs, NULL, &c), IOTC_ERR_CREDENTIALS);
    assert_null(c);
    assert_string_not_equal(iotc_client_new_why(), "");
    iotc_builder_free(b);
}

static void test_operation_args(void **state)
{
    (void)state;
    iotc_builder *b = NULL;
    assert_int_equal(iotc_new_default_builder(&b, "127.0.0.1"), IOTC_OK);
    assert_int_equal(iotc_builder_set_tls(b, false), IOTC_OK);
    iotc_client *c = new_client(b);
    done_rec d = {0};

    assert_int_equal(iotc_publish(NULL, "a", "x", 1, 0, false, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_publish(c, "a/b", "x", 1, 2, false, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_publish(c, "a/+/b", "x", 1, 0, false, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_publish(c, "a/#", "x", 1, 0, false, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_publish(c, NULL, "x", 1, 0, false, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_publish(c, "a", NULL, 1, 0, false, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_publish_wait(c, "a/+", "x", 1, 0, false, 10), IOTC_ERR_INVALID_ARG);

    size_t big = (size_t)128 * 1024 + 1;
    uint8_t *p = calloc(1, big);
    assert_non_null(p);
    assert_int_equal(iotc_publish(c, "a/b", p, big, 1, false, on_done, &d), IOTC_ERR_TOO_LARGE);
    free(p);

    assert_int_equal(iotc_subscribe(c, "a/#/b", 1, NULL, NULL, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_subscribe(c, NULL, 1, NULL, NULL, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_subscribe(c, "a/b", 2, NULL, NULL, on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_subscribe_wait(c, "a/#/b", 1, NULL, NULL, 10, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_unsubscribe(c, "a+/b", on_done, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_client_disconnect(c), IOTC_ERR_NOT_CONNECTED);

    /* None of the refused calls may ever call back. */
    free_client(c);
    assert_int_equal(get_int(&d.calls), 0);
}

/* ---- against the fake broker -------------------------------------------------- */

static void test_connect_session_present(void **state)
{
    (void)state;
    fb_set_connack(broker, 0, true);
    iotc_client *c = new_client(fb_builder());
    bool sp = false;
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, &sp), IOTC_OK);
    assert_true(sp);
    ASSERT_WAIT(ev.success == 1);
    pthread_mutex_lock(&g_mu);
    assert_true(ev.success_sp);
    assert_int_equal(ev.failure, 0);
    pthread_mutex_unlock(&g_mu);
    /* A second connect while running is refused. */
    assert_int_equal(iotc_client_connect(c), IOTC_ERR_BUSY);
    iotc_client_stats st;
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_true(st.connected);
    free_client(c);
}

static void test_connack_refused(void **state)
{
    (void)state;
    fb_set_connack(broker, IOTC_V3_CONNACK_NOT_AUTHORIZED, false);
    iotc_client *c = new_client(fb_builder());
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_ERR_REFUSED);
    ASSERT_WAIT(ev.failure >= 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.fail_err, IOTC_ERR_REFUSED);
    assert_int_equal(ev.fail_rc, 5);
    assert_string_not_equal(ev.fail_reason, "");
    assert_int_equal(ev.success, 0);
    pthread_mutex_unlock(&g_mu);
    free_client(c);
}

static void test_busy_from_callback(void **state)
{
    (void)state;
    pthread_mutex_lock(&g_mu);
    ev.try_blocking = true;
    pthread_mutex_unlock(&g_mu);
    iotc_client *c = new_client(fb_builder());
    assert_int_equal(iotc_client_connect(c), IOTC_OK);
    ASSERT_WAIT(ev.success == 1);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 5; i++) {
        if (ev.busy[i] != IOTC_ERR_BUSY)
            print_error("blocking helper %d from a callback returned %d\n", i, ev.busy[i]);
        assert_int_equal(ev.busy[i], IOTC_ERR_BUSY);
    }
    pthread_mutex_unlock(&g_mu);
    free_client(c);
}

static void test_publish_subscribe_messages(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());

    /* QoS 1 completes at the PUBACK. */
    done_rec pd = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "hello", 5, 1, false, on_done, &pd), IOTC_OK);
    ASSERT_WAIT(pd.calls == 1);
    assert_int_equal(pd.status, IOTC_OK);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &r));
    assert_string_equal(r.topic, "dev/out");
    assert_string_equal(r.payload, "hello");
    assert_int_equal(r.qos, 1);
    assert_false(r.dup);
    fb_rec_free(&r);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "again", 5, 1, false, WAIT_MS), IOTC_OK);
    /* QoS 0 completes too. */
    done_rec q0 = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "q0", 2, 0, false, on_done, &q0), IOTC_OK);
    ASSERT_WAIT(q0.calls == 1);
    assert_int_equal(q0.status, IOTC_OK);

    /* Subscribe completes with what the broker granted. */
    done_rec sd = {0};
    assert_int_equal(iotc_subscribe(c, "dev/in/+", 1, on_sub_message, NULL, on_done, &sd), IOTC_OK);
    ASSERT_WAIT(sd.calls == 1);
    assert_int_equal(sd.status, IOTC_OK);
    assert_int_equal(sd.granted, 1);
    uint8_t granted = 0xFF;
    assert_int_equal(iotc_subscribe_wait(c, "other/#", 0, NULL, NULL, WAIT_MS, &granted), IOTC_OK);
    assert_int_equal(granted, 0);
    assert_true(fb_get(broker, IOTC_MQTT_SUBSCRIBE, 0, &r));
    assert_string_equal(r.filter, "dev/in/+");
    assert_int_equal(r.sub_qos, 1);
    fb_rec_free(&r);

    /* A refusing SUBACK completes with IOTC_ERR_REFUSED. */
    fb_set_suback(broker, 0x80);
    done_rec sr = {0};
    assert_int_equal(iotc_subscribe(c, "denied/t", 1, NULL, NULL, on_done, &sr), IOTC_OK);
    ASSERT_WAIT(sr.calls == 1);
    assert_int_equal(sr.status, IOTC_ERR_REFUSED);
    assert_int_equal(sr.granted, 0x80);
    fb_set_suback(broker, 0xFF);

    /* A message on the subscription goes to its own callback; one that
     * matches no callback-bearing subscription goes to on_message. */
    assert_true(fb_publish(broker, "dev/in/a", "m1", 1, 7));
    ASSERT_WAIT(ev.sub_msgs == 1);
    assert_true(fb_publish(broker, "unrelated/t", "m2", 0, 0));
    ASSERT_WAIT(ev.msgs == 1);
    assert_true(fb_publish(broker, "other/x", "m3", 0, 0));
    ASSERT_WAIT(ev.msgs == 2);
    pthread_mutex_lock(&g_mu);
    assert_string_equal(ev.sub_topic[0], "dev/in/a");
    assert_string_equal(ev.msg_topic[0], "unrelated/t");
    assert_string_equal(ev.msg_payload[0], "m2");
    assert_string_equal(ev.msg_topic[1], "other/x");
    assert_int_equal(ev.sub_msgs, 1);
    pthread_mutex_unlock(&g_mu);
    /* The QoS 1 delivery was acknowledged with its packet id. */
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBACK, 1, WAIT_MS));
    assert_true(fb_get(broker, IOTC_MQTT_PUBACK, 0, &r));
    assert_int_equal(r.packet_id, 7);
    fb_rec_free(&r);

    /* Unsubscribe: acked, and the filter's messages go to on_message now. */
    assert_int_equal(iotc_unsubscribe_wait(c, "dev/in/+", WAIT_MS), IOTC_OK);
    assert_true(fb_publish(broker, "dev/in/b", "m4", 0, 0));
    ASSERT_WAIT(ev.msgs == 3);
    assert_int_equal(get_int(&ev.sub_msgs), 1);

    iotc_client_stats st;
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_int_equal(st.messages, 4);
    free_client(c);
    assert_int_equal(pd.calls, 1);
    assert_int_equal(sd.calls, 1);
}

static void test_reconnect_and_dup_resend(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());

    fb_set_withhold_puback(broker, true);
    done_rec d = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "held", 4, 1, false, on_done, &d), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    assert_int_equal(get_int(&d.calls), 0);

    /* The broker hangs up: interrupted, then resumed on its own. */
    fb_set_withhold_puback(broker, false);
    fb_drop(broker);
    ASSERT_WAIT(ev.interrupted == 1);
    assert_int_equal(get_int(&ev.int_err), IOTC_ERR_CONNECTION_LOST);
    ASSERT_WAIT(ev.resumed == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.res_rc, 0);
    assert_false(ev.res_sp);
    assert_int_equal(ev.success, 1); /* resumed, not a second success */
    pthread_mutex_unlock(&g_mu);

    /* The unacked QoS 1 publish went again, with DUP and the same id, and
     * completes once at its PUBACK. */
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.status, IOTC_OK);
    fb_rec first, again;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &first));
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 1, &again));
    assert_int_equal(first.conn, 1);
    assert_int_equal(again.conn, 2);
    assert_false(first.dup);
    assert_true(again.dup);
    assert_int_equal(again.packet_id, first.packet_id);
    assert_string_equal(again.payload, "held");
    fb_rec_free(&first);
    fb_rec_free(&again);
    assert_int_equal(fb_count(broker, IOTC_MQTT_CONNECT), 2);
    free_client(c);
    assert_int_equal(d.calls, 1);
}

/* Takes the broker away (no listener, connection dropped) and waits until
 * the client knows. */
static void go_offline(void)
{
    fb_pause(broker);
    fb_drop(broker);
    ASSERT_WAIT(ev.interrupted == 1);
}

static void test_offline_queue_in_order(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    done_rec d[5];
    memset(d, 0, sizeof d);
    go_offline();
    size_t before = fb_count(broker, IOTC_MQTT_PUBLISH);
    for (int i = 0; i < 5; i++) {
        char p[16];
        snprintf(p, sizeof p, "q%d", i);
        assert_int_equal(iotc_publish(c, "dev/q", p, strlen(p), (uint8_t)(i % 2), false, on_done, &d[i]), IOTC_OK);
    }
    iotc_client_stats st;
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_false(st.connected);
    assert_int_equal(st.queued, 5);
    /* Let a few reconnect attempts fail meanwhile. */
    sleep_ms(300);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), before);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 5; i++)
        assert_int_equal(d[i].calls, 0);
    pthread_mutex_unlock(&g_mu);

    assert_true(fb_resume(broker));
    ASSERT_WAIT(ev.resumed == 1);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, before + 5, WAIT_MS));
    for (int i = 0; i < 5; i++) {
        fb_rec r;
        char p[16];
        snprintf(p, sizeof p, "q%d", i);
        assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, before + (size_t)i, &r));
        assert_string_equal(r.payload, p);
        assert_int_equal(r.qos, i % 2);
        fb_rec_free(&r);
    }
    ASSERT_WAIT(d[0].calls == 1 && d[1].calls == 1 && d[2].calls == 1 && d[3].calls == 1 && d[4].calls == 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(d[i].status, IOTC_OK);
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.drained, 5);
    free_client(c);
}

static void test_offline_queue_drop_oldest(void **state)
{
    (void)state;
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_offline_queue(b, 2, IOTC_DROP_OLDEST), IOTC_OK);
    iotc_client *c = connected_client(b);
    done_rec d[4];
    memset(d, 0, sizeof d);
    go_offline();
    size_t before = fb_count(broker, IOTC_MQTT_PUBLISH);
    for (int i = 0; i < 4; i++) {
        char p[16];
        snprintf(p, sizeof p, "d%d", i);
        assert_int_equal(iotc_publish(c, "dev/q", p, strlen(p), 1, false, on_done, &d[i]), IOTC_OK);
    }
    ASSERT_WAIT(d[0].calls == 1 && d[1].calls == 1);
    assert_int_equal(d[0].status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(d[1].status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(get_int(&d[2].calls), 0);
    iotc_client_stats st;
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.queued, 2);

    assert_true(fb_resume(broker));
    ASSERT_WAIT(d[2].calls == 1 && d[3].calls == 1);
    assert_int_equal(d[2].status, IOTC_OK);
    assert_int_equal(d[3].status, IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), before + 2);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, before, &r));
    assert_string_equal(r.payload, "d2");
    fb_rec_free(&r);
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, before + 1, &r));
    assert_string_equal(r.payload, "d3");
    fb_rec_free(&r);
    free_client(c);
    assert_int_equal(d[0].calls, 1);
    assert_int_equal(d[1].calls, 1);
}

static void test_connect_packet_contents(void **state)
{
    (void)state;
    /* Default: the metrics suffix in the username, keep-alive as set. */
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_keep_alive_secs(b, 321), IOTC_OK);
    assert_int_equal(iotc_builder_set_will(b, "dev/will", "gone", 4, 1, true), IOTC_OK);
    iotc_client *c = connected_client(b);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_CONNECT, 0, &r));
    assert_string_equal(r.client_id, "test-client");
    assert_true(r.has_username);
    const char *suffix = "?SDK=libiotc&Version=" IOTC_VERSION;
    size_t ul = strlen(r.username), sl = strlen(suffix);
    assert_true(ul >= sl);
    assert_string_equal(r.username + ul - sl, suffix);
    assert_string_equal(suffix, "?SDK=libiotc&Version=0.1.0");
    assert_int_equal(r.keep_alive, 321);
    assert_true(r.clean);
    assert_true(r.will);
    assert_string_equal(r.will_topic, "dev/will");
    assert_string_equal(r.will_payload, "gone");
    assert_int_equal(r.will_qos, 1);
    assert_true(r.will_retain);
    fb_rec_free(&r);
    free_client(c);

    /* With a username of our own the suffix follows it. */
    b = fb_builder();
    assert_int_equal(iotc_builder_set_username(b, "alice"), IOTC_OK);
    c = connected_client(b);
    assert_true(fb_get(broker, IOTC_MQTT_CONNECT, 1, &r));
    assert_true(r.has_username);
    assert_string_equal(r.username, "alice?SDK=libiotc&Version=0.1.0");
    assert_false(r.will);
    assert_int_equal(r.keep_alive, 1200);
    fb_rec_free(&r);
    free_client(c);

    /* Metrics off: no suffix (and here no username at all). */
    b = fb_builder();
    assert_int_equal(iotc_builder_set_metrics(b, false), IOTC_OK);
    c = connected_client(b);
    assert_true(fb_get(broker, IOTC_MQTT_CONNECT, 2, &r));
    assert_true(!r.has_username || strstr(r.username, "SDK=") == NULL);
    fb_rec_free(&r);
    free_client(c);

    b = fb_builder();
    assert_int_equal(iotc_builder_set_metrics(b, false), IOTC_OK);
    assert_int_equal(iotc_builder_set_username(b, "bob"), IOTC_OK);
    c = connected_client(b);
    assert_true(fb_get(broker, IOTC_MQTT_CONNECT, 3, &r));
    assert_true(r.has_username);
    assert_string_equal(r.username, "bob");
    fb_rec_free(&r);
    free_client(c);
}

static void test_disconnect_then_connect_again(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    assert_int_equal(iotc_client_disconnect(c), IOTC_OK);
    ASSERT_WAIT(ev.closed == 1);
    assert_true(fb_wait_count(broker, IOTC_MQTT_DISCONNECT, 1, WAIT_MS));
    /* Nothing but on_closed: no interruption. */
    assert_int_equal(get_int(&ev.interrupted), 0);
    assert_int_equal(iotc_client_disconnect(c), IOTC_ERR_NOT_CONNECTED);

    /* Connect again on the same handle. */
    bool sp = true;
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, &sp), IOTC_OK);
    assert_false(sp);
    ASSERT_WAIT(ev.success == 2);
    assert_int_equal(fb_count(broker, IOTC_MQTT_CONNECT), 2);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "after", 5, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    ASSERT_WAIT(ev.closed == 2);
    assert_true(fb_wait_count(broker, IOTC_MQTT_DISCONNECT, 2, WAIT_MS));
    free_client(c);
    assert_int_equal(ev.interrupted, 0);
}

/* Requests made before the first connect wait in the offline queue (the
 * seed allows it; client.c creates the engine lazily for them) and go out,
 * in order, once connected. */
static void test_publish_before_connect(void **state)
{
    (void)state;
    iotc_client *c = new_client(fb_builder());
    done_rec d[2];
    memset(d, 0, sizeof d);
    assert_int_equal(iotc_subscribe(c, "dev/in", 1, on_sub_message, NULL, on_done, &d[0]), IOTC_OK);
    assert_int_equal(iotc_publish(c, "dev/out", "early", 5, 1, false, on_done, &d[1]), IOTC_OK);
    assert_int_equal(fb_count(broker, 0), 0);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    ASSERT_WAIT(d[0].calls == 1 && d[1].calls == 1);
    assert_int_equal(d[0].status, IOTC_OK);
    assert_int_equal(d[1].status, IOTC_OK);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &r));
    assert_string_equal(r.payload, "early");
    fb_rec_free(&r);
    assert_true(fb_publish(broker, "dev/in", "hi", 0, 0));
    ASSERT_WAIT(ev.sub_msgs == 1);
    free_client(c);
}

/* After iotc_client_disconnect the old session is over (client.c: "a
 * client connects again after a disconnect with a fresh engine"): a
 * connect must not subscribe again to the old filters, and the old
 * subscription's callback must not take messages any more. */
static void test_connect_after_disconnect_is_fresh(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    assert_int_equal(iotc_subscribe_wait(c, "dev/in", 1, on_sub_message, NULL, WAIT_MS, NULL), IOTC_OK);
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_DISCONNECT, 1, WAIT_MS));
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    assert_true(fb_wait_connected(broker, WAIT_MS));
    /* A round trip so that anything the connect sent has arrived. */
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 1);
    /* Nor after an interruption of the new session (session not present,
     * resubscription on: only the new session's filters would go). */
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 1);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "y", 1, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 1);
    /* The old subscription's callback must not take messages any more: the
     * session it belonged to ended, and the engine forgot the filter. */
    assert_true(fb_publish(broker, "dev/in", "after", 0, 0));
    ASSERT_WAIT(ev.msgs == 1 || ev.sub_msgs == 1);
    int stale = get_int(&ev.sub_msgs);
    free_client(c);
    assert_int_equal(stale, 0);
}

/* iotc_resubscribe_existing_topics subscribes every filter again, with its
 * QoS, and calls `done` once per filter. */
static void test_resubscribe_existing(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    assert_int_equal(iotc_resubscribe_existing_topics(c, on_done, NULL), 0);
    assert_int_equal(iotc_subscribe_wait(c, "a/1", 1, on_sub_message, NULL, WAIT_MS, NULL), IOTC_OK);
    assert_int_equal(iotc_subscribe_wait(c, "b/+", 0, NULL, NULL, WAIT_MS, NULL), IOTC_OK);
    done_rec d = {0};
    assert_int_equal(iotc_resubscribe_existing_topics(c, on_done, &d), 2);
    ASSERT_WAIT(d.calls == 2);
    assert_int_equal(d.status, IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_SUBSCRIBE, 4, WAIT_MS));
    bool seen_a = false, seen_b = false;
    for (size_t i = 2; i < 4; i++) {
        fb_rec r;
        assert_true(fb_get(broker, IOTC_MQTT_SUBSCRIBE, i, &r));
        if (strcmp(r.filter, "a/1") == 0) {
            seen_a = true;
            assert_int_equal(r.sub_qos, 1);
        } else if (strcmp(r.filter, "b/+") == 0) {
            seen_b = true;
            assert_int_equal(r.sub_qos, 0);
        }
        fb_rec_free(&r);
    }
    assert_true(seen_a && seen_b);
    /* The per-subscription callback survived the resubscription. */
    assert_true(fb_publish(broker, "a/1", "m", 0, 0));
    ASSERT_WAIT(ev.sub_msgs == 1);
    free_client(c);
}

#define THREADS 4
#define PER_THREAD 200

typedef struct {
    iotc_client *c;
    int t;
    done_rec d[PER_THREAD];
    int refused;
} pub_thread;

static void *publisher(void *arg)
{
    pub_thread *p = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "t%d-%d", p->t, i);
        if (iotc_publish(p->c, "dev/mt", msg, strlen(msg), 1, false, on_done, &p->d[i]) != IOTC_OK)
            p->refused++;
    }
    return NULL;
}

static int total_done(pub_thread *pt)
{
    int n = 0;
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++)
            n += pt[t].d[i].calls;
    return n;
}

static void test_publish_from_threads(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    pub_thread *pt = calloc(THREADS, sizeof *pt);
    assert_non_null(pt);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        pt[t].c = c;
        pt[t].t = t;
        assert_int_equal(pthread_create(&th[t], NULL, publisher, &pt[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pt[t].refused, 0);
    ASSERT_WAIT(total_done(pt) == THREADS * PER_THREAD);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, THREADS * PER_THREAD, WAIT_MS));

    /* Every message arrived once, and each thread's in its own order. */
    size_t n = fb_count(broker, IOTC_MQTT_PUBLISH);
    assert_int_equal(n, THREADS * PER_THREAD);
    int next[THREADS] = {0};
    for (size_t k = 0; k < n; k++) {
        fb_rec r;
        assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, k, &r));
        int t = -1, i = -1;
        assert_int_equal(sscanf(r.payload, "t%d-%d", &t, &i), 2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(i, next[t]);
        next[t]++;
        assert_false(r.dup);
        fb_rec_free(&r);
    }
    free_client(c);
    /* Exactly once each, all OK, nothing more after free. */
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            assert_int_equal(pt[t].d[i].calls, 1);
            assert_int_equal(pt[t].d[i].status, IOTC_OK);
        }
    }
    free(pt);
}

/* Publishes from threads while the broker drops the connection twice:
 * with an unbounded queue every QoS 1 publish completes OK exactly once
 * and reaches the broker at least once (a resend carries DUP). */
static void test_publish_through_drops(void **state)
{
    (void)state;
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_offline_queue(b, IOTC_QUEUE_UNBOUNDED, IOTC_DROP_NEWEST), IOTC_OK);
    iotc_client *c = connected_client(b);
    pub_thread *pt = calloc(THREADS, sizeof *pt);
    assert_non_null(pt);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        pt[t].c = c;
        pt[t].t = t;
        assert_int_equal(pthread_create(&th[t], NULL, publisher, &pt[t]), 0);
    }
    for (int k = 1; k <= 2; k++) {
        assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, (size_t)(k * THREADS * PER_THREAD / 4), WAIT_MS));
        fb_drop(broker);
        ASSERT_WAIT(ev.resumed == k);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pt[t].refused, 0);
    ASSERT_WAIT(total_done(pt) == THREADS * PER_THREAD);
    size_t n = fb_count(broker, IOTC_MQTT_PUBLISH);
    bool *seen = calloc(THREADS * PER_THREAD, sizeof *seen);
    assert_non_null(seen);
    for (size_t k = 0; k < n; k++) {
        fb_rec r;
        assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, k, &r));
        int t = -1, i = -1;
        assert_int_equal(sscanf(r.payload, "t%d-%d", &t, &i), 2);
        assert_true(t >= 0 && t < THREADS && i >= 0 && i < PER_THREAD);
        if (seen[t * PER_THREAD + i])
            assert_true(r.dup); /* a second copy is a resend */
        seen[t * PER_THREAD + i] = true;
        fb_rec_free(&r);
    }
    for (int k = 0; k < THREADS * PER_THREAD; k++)
        assert_true(seen[k]);
    free(seen);
    free_client(c);
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            assert_int_equal(pt[t].d[i].calls, 1);
            assert_int_equal(pt[t].d[i].status, IOTC_OK);
        }
    }
    free(pt);
}

static void test_callbacks_on_one_service_thread(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    uint8_t g = 0;
    assert_int_equal(iotc_subscribe_wait(c, "dev/in", 1, on_sub_message, NULL, WAIT_MS, &g), IOTC_OK);
    done_rec d = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "x", 1, 1, false, on_done, &d), IOTC_OK);
    assert_true(fb_publish(broker, "dev/in", "y", 0, 0));
    assert_true(fb_publish(broker, "elsewhere", "z", 0, 0));
    ASSERT_WAIT(d.calls == 1 && ev.sub_msgs == 1 && ev.msgs == 1);
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 1);
    assert_int_equal(iotc_client_disconnect(c), IOTC_OK);
    ASSERT_WAIT(ev.closed == 1);
    pthread_mutex_lock(&g_mu);
    assert_true(ev.cb_thread_set);
    assert_false(ev.cb_thread_varied);
    assert_false(pthread_equal(ev.cb_thread, pthread_self()));
    assert_true(pthread_equal(d.thread, ev.cb_thread));
    pthread_mutex_unlock(&g_mu);
    free_client(c);
}

static void test_free_with_outstanding(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    fb_set_withhold_puback(broker, true);
    done_rec d[3];
    memset(d, 0, sizeof d);
    for (int i = 0; i < 3; i++)
        assert_int_equal(iotc_publish(c, "dev/out", "p", 1, 1, false, on_done, &d[i]), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 3, WAIT_MS));
    free_client(c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].status, IOTC_ERR_CLOSED);
    }
    /* It said goodbye properly. */
    assert_true(fb_wait_count(broker, IOTC_MQTT_DISCONNECT, 1, WAIT_MS));
}

static void test_free_with_queued_offline(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    go_offline();
    done_rec d[2];
    memset(d, 0, sizeof d);
    assert_int_equal(iotc_publish(c, "dev/out", "p", 1, 1, false, on_done, &d[0]), IOTC_OK);
    assert_int_equal(iotc_subscribe(c, "dev/in", 1, NULL, NULL, on_done, &d[1]), IOTC_OK);
    free_client(c);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].status, IOTC_ERR_CLOSED);
    }
}

/* An operation timeout completes a QoS 1 publish with IOTC_ERR_TIMEOUT
 * when the PUBACK never comes, and a late PUBACK is then harmless. */
static void test_operation_timeout(void **state)
{
    (void)state;
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_protocol_operation_timeout_ms(b, 300), IOTC_OK);
    iotc_client *c = connected_client(b);
    fb_set_withhold_puback(broker, true);
    done_rec d = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "slow", 4, 1, false, on_done, &d), IOTC_OK);
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.status, IOTC_ERR_TIMEOUT);
    /* The link stays up and works. */
    fb_set_withhold_puback(broker, false);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "fast", 4, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(get_int(&ev.interrupted), 0);
    free_client(c);
    assert_int_equal(d.calls, 1);
}

/* A blocking helper that gives up returns IOTC_ERR_TIMEOUT; the operation
 * goes on and its later completion must touch nothing that is gone. */
static void test_publish_wait_gives_up(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    fb_set_withhold_puback(broker, true);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "w", 1, 1, false, 200), IOTC_ERR_TIMEOUT);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    /* The broker hangs up; after the reconnect the publish is resent and
     * acked, completing a waiter nobody waits for any more. */
    fb_set_withhold_puback(broker, false);
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 1);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 2, WAIT_MS));
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    iotc_client_stats st;
    assert_int_equal(iotc_client_get_stats(c, &st), IOTC_OK);
    assert_int_equal(st.inflight, 0);
    free_client(c);
}

/* Keep-alive: PINGREQ goes out; without PINGRESP the ping timeout declares
 * the link dead and the client reconnects. */
static void test_keepalive_and_ping_timeout(void **state)
{
    (void)state;
    iotc_builder *b = fb_builder();
    /* The longest ping timeout keep-alive 2 s allows: a PINGRESP that is
     * answered must never look late, even under Valgrind. */
    assert_int_equal(iotc_builder_set_keep_alive_secs(b, 2), IOTC_OK);
    assert_int_equal(iotc_builder_set_ping_timeout_ms(b, 1500), IOTC_OK);
    fb_set_withhold_pingresp(broker, true);
    iotc_client *c = connected_client(b);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PINGREQ, 1, WAIT_MS));
    /* Not before keep-alive has passed since the last packet sent. */
    fb_rec conn, ping;
    assert_true(fb_get(broker, IOTC_MQTT_CONNECT, 0, &conn));
    assert_true(fb_get(broker, IOTC_MQTT_PINGREQ, 0, &ping));
    assert_true(ping.t_ms + 10 >= conn.t_ms + 2000);
    fb_rec_free(&conn);
    fb_rec_free(&ping);
    ASSERT_WAIT(ev.interrupted >= 1);
    int err = get_int(&ev.int_err);
    assert_true(err == IOTC_ERR_TIMEOUT || err == IOTC_ERR_CONNECTION_LOST);
    fb_set_withhold_pingresp(broker, false);
    ASSERT_WAIT(ev.resumed >= 1);
    assert_true(fb_count(broker, IOTC_MQTT_CONNECT) >= 2);
    free_client(c);
}

/* A broker slow to answer CONNECT: connect_wait gives up with
 * IOTC_ERR_TIMEOUT while the attempt goes on, and the late CONNACK still
 * connects (the CONNACK timeout, 20 s by default, has not run out). */
static void test_connack_late(void **state)
{
    (void)state;
    fb_set_withhold_connack(broker, true);
    fb_set_connack(broker, 0, true);
    iotc_client *c = new_client(fb_builder());
    assert_int_equal(iotc_client_connect_wait(c, 300, NULL), IOTC_ERR_TIMEOUT);
    assert_true(fb_wait_count(broker, IOTC_MQTT_CONNECT, 1, WAIT_MS));
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.success, 0);
    assert_int_equal(ev.failure, 0);
    pthread_mutex_unlock(&g_mu);
    fb_set_withhold_connack(broker, false);
    assert_true(fb_connack_now(broker));
    ASSERT_WAIT(ev.success == 1);
    assert_true(get_int(&ev.failure) == 0);
    pthread_mutex_lock(&g_mu);
    assert_true(ev.success_sp);
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    free_client(c);
}

/* A CONNACK that never comes fails the attempt after the CONNACK timeout,
 * and the client tries again. */
static void test_connack_timeout(void **state)
{
    (void)state;
    fb_set_withhold_connack(broker, true);
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_connack_timeout_ms(b, 300), IOTC_OK);
    iotc_client *c = new_client(b);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_ERR_TIMEOUT);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.failure, 1);
    assert_int_equal(ev.fail_err, IOTC_ERR_TIMEOUT);
    pthread_mutex_unlock(&g_mu);
    assert_true(fb_wait_count(broker, IOTC_MQTT_CONNECT, 2, WAIT_MS));
    fb_set_withhold_connack(broker, false);
    free_client(c);
}

static void test_queue_off_and_drop_newest(void **state)
{
    (void)state;
    /* Queue off: refused at the call while offline. */
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_offline_queue(b, IOTC_QUEUE_OFF, IOTC_DROP_NEWEST), IOTC_OK);
    iotc_client *c = connected_client(b);
    go_offline();
    done_rec off = {0};
    assert_int_equal(iotc_publish(c, "dev/q", "x", 1, 1, false, on_done, &off), IOTC_ERR_QUEUE_OFF);
    assert_true(fb_resume(broker));
    ASSERT_WAIT(ev.resumed == 1);
    free_client(c);
    assert_int_equal(off.calls, 0);

    /* Drop newest, size 2: the third and fourth are the ones dropped. */
    ev_reset();
    b = fb_builder();
    assert_int_equal(iotc_builder_set_offline_queue(b, 2, IOTC_DROP_NEWEST), IOTC_OK);
    c = connected_client(b);
    go_offline();
    size_t before = fb_count(broker, IOTC_MQTT_PUBLISH);
    done_rec d[4];
    memset(d, 0, sizeof d);
    for (int i = 0; i < 4; i++) {
        char p[8];
        snprintf(p, sizeof p, "n%d", i);
        int rc = iotc_publish(c, "dev/q", p, strlen(p), 1, false, on_done, &d[i]);
        /* Dropped at the call or through the callback: both tell. */
        if (rc != IOTC_OK) {
            assert_true(i >= 2);
            assert_int_equal(rc, IOTC_ERR_QUEUE_DROPPED);
            d[i].calls = 1;
            d[i].status = rc;
        }
    }
    ASSERT_WAIT(d[2].calls == 1 && d[3].calls == 1);
    assert_int_equal(d[2].status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(d[3].status, IOTC_ERR_QUEUE_DROPPED);
    assert_true(fb_resume(broker));
    ASSERT_WAIT(d[0].calls == 1 && d[1].calls == 1);
    assert_int_equal(d[0].status, IOTC_OK);
    assert_int_equal(d[1].status, IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), before + 2);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, before, &r));
    assert_string_equal(r.payload, "n0");
    fb_rec_free(&r);
    free_client(c);
}

/* A subscribe refused at its call (offline with the queue off) leaves no
 * registration behind: nothing to resubscribe, and its message callback
 * takes nothing (layers such as the shadow client free what it points to). */
static void test_subscribe_refused_at_call_forgotten(void **state)
{
    (void)state;
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_offline_queue(b, IOTC_QUEUE_OFF, IOTC_DROP_NEWEST), IOTC_OK);
    iotc_client *c = new_client(b);
    done_rec d = {0};
    assert_int_equal(iotc_subscribe(c, "dev/refused", 1, on_sub_message, NULL, on_done, &d), IOTC_ERR_QUEUE_OFF);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    assert_true(fb_wait_connected(broker, WAIT_MS));
    assert_int_equal(iotc_resubscribe_existing_topics(c, on_done, &d), 0);
    assert_true(fb_publish(broker, "dev/refused", "x", 0, 0));
    ASSERT_WAIT(ev.msgs == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.sub_msgs, 0);
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 0);
    free_client(c);
    assert_int_equal(get_int(&d.calls), 0);
}

/* iotc_client_disconnect completes what is outstanding with
 * IOTC_ERR_CLOSED, and a disconnect while still connecting closes too. */
static void test_disconnect_completes_outstanding(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    fb_set_withhold_puback(broker, true);
    done_rec d = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "p", 1, 1, false, on_done, &d), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.status, IOTC_ERR_CLOSED);
    assert_int_equal(get_int(&ev.closed), 1);

    /* Connecting to a broker that refuses TCP, then disconnect. */
    fb_pause(broker);
    assert_int_equal(iotc_client_connect(c), IOTC_OK);
    ASSERT_WAIT(ev.failure >= 1);
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    ASSERT_WAIT(ev.closed == 2);
    free_client(c);
    assert_int_equal(d.calls, 1);
}

/* A request made after a disconnect waits for the next connect. */
static void test_publish_after_disconnect(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    done_rec d = {0};
    assert_int_equal(iotc_publish(c, "dev/out", "later", 5, 1, false, on_done, &d), IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0);
    assert_int_equal(get_int(&d.calls), 0);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.status, IOTC_OK);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &r));
    assert_string_equal(r.payload, "later");
    assert_int_equal(r.conn, 2);
    fb_rec_free(&r);
    free_client(c);
}

/* A callback may call the asynchronous API: echo each message back. */
static void echo(iotc_client *c, const char *topic, size_t tl, const uint8_t *payload, size_t len, uint8_t qos,
                 bool retain, bool dup, void *user)
{
    (void)topic;
    (void)tl;
    (void)qos;
    (void)retain;
    (void)dup;
    done_rec *d = user;
    int rc = iotc_publish(c, "dev/echo", payload, len, 1, false, on_done, d);
    if (rc != IOTC_OK) {
        pthread_mutex_lock(&g_mu);
        d->calls = 100; /* noticed by the test */
        d->status = rc;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
}

static void test_publish_from_callback(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    done_rec d = {0};
    assert_int_equal(iotc_subscribe_wait(c, "dev/cmd", 1, echo, &d, WAIT_MS, NULL), IOTC_OK);
    assert_true(fb_publish(broker, "dev/cmd", "ping!", 1, 3));
    ASSERT_WAIT(d.calls >= 1);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, IOTC_OK);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &r));
    assert_string_equal(r.topic, "dev/echo");
    assert_string_equal(r.payload, "ping!");
    fb_rec_free(&r);
    free_client(c);
}

/* A one-shot subscription: the callback unsubscribes its own filter (the
 * asynchronous API is allowed in callbacks), while the client is walking
 * its subscriptions to deliver that very message. */
static void one_shot(iotc_client *c, const char *topic, size_t tl, const uint8_t *payload, size_t len, uint8_t qos,
                     bool retain, bool dup, void *user)
{
    (void)topic;
    (void)tl;
    (void)payload;
    (void)len;
    (void)qos;
    (void)retain;
    (void)dup;
    done_rec *d = user;
    int rc = iotc_unsubscribe(c, "dev/once", on_done, d);
    pthread_mutex_lock(&g_mu);
    ev.sub_msgs++;
    if (rc != IOTC_OK) {
        d->status = rc;
        d->calls = 100; /* noticed by the test */
    }
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void test_unsubscribe_from_callback(void **state)
{
    (void)state;
    /* This crashed (use after free in io_message) until removals during the
     * walk were deferred. */
    iotc_client *c = connected_client(fb_builder());
    done_rec d = {0};
    /* Another subscription after it in the client's list, so that the walk
     * goes on past the freed entry. */
    assert_int_equal(iotc_subscribe_wait(c, "other/t", 0, on_sub_message, NULL, WAIT_MS, NULL), IOTC_OK);
    assert_int_equal(iotc_subscribe_wait(c, "dev/once", 1, one_shot, &d, WAIT_MS, NULL), IOTC_OK);
    assert_true(fb_publish(broker, "dev/once", "1", 0, 0));
    ASSERT_WAIT(d.calls >= 1);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_UNSUBSCRIBE, 1, WAIT_MS));
    /* Now it goes to on_message. */
    assert_true(fb_publish(broker, "dev/once", "2", 0, 0));
    ASSERT_WAIT(ev.msgs == 1);
    assert_int_equal(get_int(&ev.sub_msgs), 1);
    free_client(c);
}

/* A subscription the broker refused (SUBACK 0x80) is not a subscription:
 * it must not be subscribed again after a reconnect. */
static void test_refused_subscription_not_resubscribed(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    fb_set_suback(broker, 0x80);
    uint8_t g = 0;
    assert_int_equal(iotc_subscribe_wait(c, "denied/t", 1, on_sub_message, NULL, WAIT_MS, &g), IOTC_ERR_REFUSED);
    assert_int_equal(g, 0x80);
    fb_set_suback(broker, 0xFF);
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 1);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    size_t subs = fb_count(broker, IOTC_MQTT_SUBSCRIBE);
    int n = iotc_resubscribe_existing_topics(c, NULL, NULL);
    free_client(c);
    assert_int_equal(subs, 1);
    assert_int_equal(n, 0);
}

/* Resubscription after a reconnect depends on session present and on the
 * setting. */
static void test_resubscribe_on_resume(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    assert_int_equal(iotc_subscribe_wait(c, "dev/in", 1, on_sub_message, NULL, WAIT_MS, NULL), IOTC_OK);
    /* Session not present: the client subscribes again on its own. */
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 1);
    assert_true(fb_wait_count(broker, IOTC_MQTT_SUBSCRIBE, 2, WAIT_MS));
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_SUBSCRIBE, 1, &r));
    assert_string_equal(r.filter, "dev/in");
    assert_int_equal(r.sub_qos, 1);
    assert_int_equal(r.conn, 2);
    fb_rec_free(&r);
    /* Messages still reach the subscription's callback. */
    assert_true(fb_publish(broker, "dev/in", "m", 0, 0));
    ASSERT_WAIT(ev.sub_msgs == 1);
    /* Session present: the broker kept the subscription; nothing is sent. */
    fb_set_connack(broker, 0, true);
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 2);
    pthread_mutex_lock(&g_mu);
    assert_true(ev.res_sp);
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    free_client(c);

    /* Resubscription off: nothing is sent even without a session. */
    ev_reset();
    fb_set_connack(broker, 0, false);
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_builder_set_resubscribe(b, false), IOTC_OK);
    c = connected_client(b);
    assert_int_equal(iotc_subscribe_wait(c, "dev/in2", 1, NULL, NULL, WAIT_MS, NULL), IOTC_OK);
    fb_drop(broker);
    ASSERT_WAIT(ev.resumed == 1);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 3);
    free_client(c);
}

/* Bytes that are not MQTT from the broker: the link is dropped as a
 * protocol error and the client reconnects. */
static void test_garbage_from_broker(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    const uint8_t junk[] = {0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}; /* reserved type, bad length */
    assert_true(fb_send_raw(broker, junk, sizeof junk));
    ASSERT_WAIT(ev.interrupted == 1);
    assert_int_equal(get_int(&ev.int_err), IOTC_ERR_PROTOCOL);
    ASSERT_WAIT(ev.resumed == 1);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    free_client(c);
}

/* Asynchronous calls from callbacks: disconnect from on_message, connect
 * again from on_closed. */
static int closed_reconnects;
static void disconnect_on_message(iotc_client *c, const char *topic, size_t tl, const uint8_t *payload, size_t len,
                                  uint8_t qos, bool retain, bool dup, void *user)
{
    (void)topic;
    (void)tl;
    (void)payload;
    (void)len;
    (void)qos;
    (void)retain;
    (void)dup;
    int *rc = user;
    int r = iotc_client_disconnect(c);
    pthread_mutex_lock(&g_mu);
    *rc = r;
    pthread_mutex_unlock(&g_mu);
}

static void connect_on_closed(iotc_client *c, void *user)
{
    (void)user;
    int rc = IOTC_OK;
    pthread_mutex_lock(&g_mu);
    bool again = closed_reconnects-- > 0;
    pthread_mutex_unlock(&g_mu);
    if (again)
        rc = iotc_client_connect(c);
    pthread_mutex_lock(&g_mu);
    if (rc != IOTC_OK)
        ev.fail_err = rc;
    ev.closed++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void test_lifecycle_from_callbacks(void **state)
{
    (void)state;
    iotc_callbacks cb = cbs;
    cb.on_closed = connect_on_closed;
    closed_reconnects = 1;
    iotc_client *c = NULL;
    iotc_builder *b = fb_builder();
    assert_int_equal(iotc_client_new(b, &cb, NULL, &c), IOTC_OK);
    iotc_builder_free(b);
    track(c);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    int drc = 1;
    assert_int_equal(iotc_subscribe_wait(c, "dev/bye", 0, disconnect_on_message, &drc, WAIT_MS, NULL), IOTC_OK);
    assert_true(fb_publish(broker, "dev/bye", "", 0, 0));
    /* On the service thread the disconnect runs at once: on_closed (and its
     * connect) come inside iotc_client_disconnect, before it returns. */
    ASSERT_WAIT(ev.closed == 1 && drc != 1);
    assert_int_equal(get_int(&drc), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_DISCONNECT, 1, WAIT_MS));
    /* on_closed connected again. */
    ASSERT_WAIT(ev.success == 2);
    assert_int_equal(get_int(&ev.fail_err), 0);
    assert_int_equal(fb_count(broker, IOTC_MQTT_CONNECT), 2);
    assert_int_equal(iotc_publish_wait(c, "dev/out", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    free_client(c);
}

/* A broker that stops reading: the client's unwritten bytes stay bounded
 * and publish says IOTC_ERR_BUSY instead of buffering without end. */
static void test_backpressure_busy(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    fb_set_stall(broker, true);
    size_t n = (size_t)100 * 1024;
    char *p = calloc(1, n);
    assert_non_null(p);
    int rc = IOTC_OK, i;
    /* Kernel buffers on loopback take a few MiB; 64 MiB is far past them. */
    for (i = 0; i < 640 && rc == IOTC_OK; i++) {
        rc = iotc_publish(c, "dev/flood", p, n, 0, false, NULL, NULL);
        if (rc == IOTC_OK && i % 8 == 7)
            sleep_ms(5); /* let the service thread move bytes to the socket */
    }
    free(p);
    assert_int_equal(rc, IOTC_ERR_BUSY);
    fb_set_stall(broker, false);
    free_client(c);
}

/* The largest payload AWS IoT takes goes through whole. */
static void test_largest_payload(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    size_t n = (size_t)128 * 1024;
    char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 26);
    assert_int_equal(iotc_publish_wait(c, "dev/big", p, n, 1, false, WAIT_MS), IOTC_OK);
    fb_rec r;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &r));
    assert_int_equal(r.payload_len, n);
    assert_memory_equal(r.payload, p, n);
    fb_rec_free(&r);
    free(p);
    free_client(c);
}

/* AWS IoT's topic limits (256 bytes; error.h names IOTC_ERR_TOO_LARGE for
 * them) are refused at the call, not by the broker's disconnect. */
static void test_topic_limits(void **state)
{
    (void)state;
    iotc_client *c = connected_client(fb_builder());
    char t[300];
    memset(t, 'a', sizeof t);
    t[sizeof t - 1] = 0;
    int rc = iotc_publish(c, t, "x", 1, 0, false, NULL, NULL);
    assert_int_equal(rc, IOTC_ERR_TOO_LARGE);
    /* 8 slashes: over AWS IoT's 7; the Basic Ingest prefix does not count. */
    assert_int_equal(iotc_publish(c, "a/b/c/d/e/f/g/h/i", "x", 1, 0, false, NULL, NULL), IOTC_ERR_TOO_LARGE);
    assert_int_equal(iotc_publish(c, "$aws/rules/r/a/b/c/d/e/f/g/h", "x", 1, 0, false, NULL, NULL), IOTC_OK);
    assert_int_equal(iotc_publish(c, "", "x", 1, 0, false, NULL, NULL), IOTC_ERR_INVALID_ARG);
    rc = iotc_subscribe(c, t, 0, NULL, NULL, NULL, NULL);
    assert_int_equal(rc, IOTC_ERR_TOO_LARGE);
    /* Only the Basic Ingest one reached the broker; the link is still fine. */
    assert_int_equal(iotc_publish_wait(c, "dev/ok", "x", 1, 1, false, WAIT_MS), IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 2);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 0);
    assert_int_equal(get_int(&ev.interrupted), 0);
    free_client(c);
}

/* A port where nothing listens: bound (so nobody else takes it) but never
 * listening, so a connect is refused at once. */
static void test_connect_refused_port(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);

    iotc_builder *b = NULL;
    assert_int_equal(iotc_new_default_builder(&b, "127.0.0.1"), IOTC_OK);
    assert_int_equal(iotc_builder_set_tls(b, false), IOTC_OK);
    assert_int_equal(iotc_builder_set_port(b, ntohs(a.sin_port)), IOTC_OK);
    assert_int_equal(iotc_builder_set_reconnect(b, 50, 200), IOTC_OK);
    iotc_client *c = new_client(b);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_ERR_CONNECT);
    ASSERT_WAIT(ev.failure >= 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.fail_err, IOTC_ERR_CONNECT);
    assert_string_not_equal(ev.fail_reason, "");
    pthread_mutex_unlock(&g_mu);
    /* It keeps trying with backoff: no jitter, so the waits are at least
     * 50, 100, 200, 200 ms (lower bounds only: a slow machine makes them
     * longer, never shorter). */
    ASSERT_WAIT(ev.failure >= 5);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(ev.fail_err, IOTC_ERR_CONNECT);
    assert_int_equal(ev.success, 0);
    const uint64_t least[4] = {50, 100, 200, 200};
    if (getenv("IOTC_TEST_DEBUG"))
        for (int i = 0; i < 4; i++)
            print_message("gap %d: %llu ms\n", i, (unsigned long long)(ev.fail_ms[i + 1] - ev.fail_ms[i]));
    for (int i = 0; i < 4; i++) {
        uint64_t gap = ev.fail_ms[i + 1] - ev.fail_ms[i];
        if (gap + 10 < least[i])
            print_error("wait %d was %llu ms, expected >= %llu\n", i, (unsigned long long)gap,
                        (unsigned long long)least[i]);
        /* 10 ms: the clocks' rounding and the time between the engine
         * reading the clock and the callback running (Valgrind). */
        assert_true(gap + 10 >= least[i]);
    }
    pthread_mutex_unlock(&g_mu);
    free_client(c);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_constructor_args),
        cmocka_unit_test(test_builder_setter_args),
        cmocka_unit_test(test_client_new_args),
        cmocka_unit_test(test_unreadable_cert),
        cmocka_unit_test(test_operation_args),
        cmocka_unit_test_setup_teardown(test_connect_session_present, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_connack_refused, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_busy_from_callback, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_subscribe_messages, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_reconnect_and_dup_resend, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_offline_queue_in_order, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_offline_queue_drop_oldest, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_connect_packet_contents, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_disconnect_then_connect_again, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_before_connect, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_connect_after_disconnect_is_fresh, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_resubscribe_existing, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_from_threads, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_through_drops, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_callbacks_on_one_service_thread, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_free_with_outstanding, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_free_with_queued_offline, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_operation_timeout, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_wait_gives_up, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_keepalive_and_ping_timeout, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_connack_timeout, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_connack_late, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_queue_off_and_drop_newest, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_subscribe_refused_at_call_forgotten, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_disconnect_completes_outstanding, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_after_disconnect, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_publish_from_callback, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_unsubscribe_from_callback, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_refused_subscription_not_resubscribed, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_resubscribe_on_resume, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_garbage_from_broker, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_lifecycle_from_callbacks, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_backpressure_busy, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_largest_payload, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_topic_limits, setup_broker, teardown_broker),
        cmocka_unit_test_setup_teardown(test_connect_refused_port, setup_broker, teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
