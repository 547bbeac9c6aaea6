/*
 * iotc_itest: the client side of libiotc's integration tests
 * (client/tests/integration/test_client.py drives it against real brokers).
 *
 * It uses only the public API (iotc/client.h), as a device program would,
 * so that what the tests check is what a user of the library gets.
 *
 *   iotc_itest [options] pubsub|outage|expect-fail|shadow
 *
 *   --host H            address to connect to (default 127.0.0.1)
 *   --port P            TCP port (required)
 *   --transport T       tcp | tls | ws | wss (default tcp)
 *   --verify-name N     the endpoint: the name verified and sent as SNI;
 *                       --host is then only the address (default: --host)
 *   --ca F --cert F --key F   PEM files; cert and key select mTLS
 *   --alpn S            ALPN override ("" for none)
 *   --client-id ID --topic T --count N
 *   --rate HZ           outage: publishes per second (default 20)
 *   --queue Q           offline queue size (-1 unbounded, 0 off; default 20)
 *   --drop oldest|newest
 *   --drain-hz H        drain rate after a reconnect (0: as fast as possible)
 *   --clean 0|1         clean session (default 1)
 *   --reconnect-ms MIN,MAX
 *   --timeout-ms MS     connect / final wait budget (default 10000)
 *   --settle-ms MS      outage: how long to wait at the end for completions
 *                       and messages (default 15000)
 *   --thing T           shadow: the thing name (default itest-thing)
 *
 * Output (one line per fact; stdout is line-buffered under a lock because
 * callbacks print from the library's service thread):
 *   pubsub:      SUMMARY {...}                         exit 0 when every check held
 *   outage:      PUB i call=CODE, DONE i CODE, RECV i dup=0|1, INTERRUPTED ...,
 *                RESUMED ..., FAILURE ..., then RECEIVED i,j,..., SUMMARY {...}
 *   expect-fail: FAILURE err=CODE ... reason="..."     exit 0; 5 when it connected
 *                instead, 6 when nothing was reported in time
 *   shadow:      the Device Shadow client (iotc/shadow.h) against a responder
 *                that plays the shadow service on named shadows of --thing
 *                (test_shadow_mosquitto.py): RESULT label status=.. code=..
 *                version=.. message=".." json="..", CALL label CODE, DELTA and
 *                DOCUMENTS version=.., CHECK-FAILED what, then SUMMARY {...};
 *                exit 0 when every check held
 * Other exits: 1 usage, 2 builder or client_new refused, 3 connect failed,
 * 4 a pubsub or outage check failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iotc/client.h"
#include "iotc/shadow.h"

enum { EXIT_USAGE = 1, EXIT_SETUP = 2, EXIT_CONNECT = 3, EXIT_CHECK = 4, EXIT_CONNECTED = 5, EXIT_SILENT = 6 };

#define MAX_COUNT 100000

typedef struct {
    const char *host, *port, *transport, *verify_name, *ca, *cert, *key, *alpn, *client_id, *topic, *mode, *thing;
    long count;
    double rate, drain_hz;
    int64_t queue;
    iotc_drop_policy drop;
    int clean;
    uint64_t rc_min, rc_max;
    long timeout_ms, settle_ms;
    int have_reconnect;
} opts;

/* Shared between the main thread and the service thread's callbacks. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long count;
    /* per message index 1..count */
    int *done_status; /* completion status, or 1 while pending */
    unsigned *recv_n; /* arrivals of each payload */
    long *order;      /* payloads in arrival order (first arrivals and duplicates) */
    long n_order;
    long n_done, n_recv_total, n_unexpected;
    int connected_events, failures, interrupts, resumes;
    int first_fail_err;
    uint8_t first_fail_rc;
    char first_fail_reason[512];
    bool fail_seen, success_seen;
} state;

static state S = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Callbacks and the main thread both print; a line must never be split. */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void outf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void outf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_mu);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    va_end(ap);
}


/* A reason may hold quotes or newlines; keep the line parseable. */
static void sanitize(char *dst, size_t cap, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src && src[i] && j + 1 < cap; i++) {
        char ch = src[i];
        dst[j++] = (ch == '"' || ch == '\n' || ch == '\r' || ch == '\\') ? '\'' : ch;
    }
    dst[j] = '\0';
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Waits on S.cv until pred() holds or the deadline (monotonic ms) passes;
 * called with S.mu held. */
static bool wait_until(bool (*pred)(void), uint64_t deadline)
{
    while (!pred()) {
        uint64_t t = now_ms();
        if (t >= deadline)
            return false;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t step = deadline - t < 100 ? deadline - t : 100; /* re-check the monotonic clock */
        ts.tv_nsec += (long)(step * 1000000u);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&S.cv, &S.mu, &ts);
    }
    return true;
}

/* ---- callbacks (service thread) --------------------------------------------- */

static void on_success(iotc_client *c, bool sp, void *user)
{
    (void)c, (void)user;
    outf("CONNECTED session_present=%d", sp ? 1 : 0);
    pthread_mutex_lock(&S.mu);
    S.success_seen = true;
    S.connected_events++;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void on_failure(iotc_client *c, int err, uint8_t rc, const char *reason, void *user)
{
    (void)c, (void)user;
    char r[512];
    sanitize(r, sizeof r, reason);
    outf("FAILURE err=%s code=%d return_code=%u strerror=\"%s\" reason=\"%s\"", iotc_err_name(err), err, rc,
         iotc_strerror(err), r);
    pthread_mutex_lock(&S.mu);
    if (!S.fail_seen) {
        S.fail_seen = true;
        S.first_fail_err = err;
        S.first_fail_rc = rc;
        snprintf(S.first_fail_reason, sizeof S.first_fail_reason, "%s", r);
    }
    S.failures++;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void on_interrupted(iotc_client *c, int err, const char *reason, void *user)
{
    (void)c, (void)user;
    char r[512];
    sanitize(r, sizeof r, reason);
    outf("INTERRUPTED err=%s reason=\"%s\"", iotc_err_name(err), r);
    pthread_mutex_lock(&S.mu);
    S.interrupts++;
    pthread_mutex_unlock(&S.mu);
}

static void on_resumed(iotc_client *c, uint8_t rc, bool sp, void *user)
{
    (void)c, (void)user;
    outf("RESUMED return_code=%u session_present=%d", rc, sp ? 1 : 0);
    pthread_mutex_lock(&S.mu);
    S.resumes++;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void on_closed(iotc_client *c, void *user)
{
    (void)c, (void)user;
    outf("CLOSED");
}

/* Payloads are the decimal index; anything else counts as unexpected. */
static void on_msg(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c, (void)retain;
    const char *want = user;
    char buf[24];
    long idx = -1;
    if (len > 0 && len < sizeof buf && strlen(want) == topic_len && memcmp(want, topic, topic_len) == 0) {
        memcpy(buf, payload, len);
        buf[len] = '\0';
        char *end;
        long v = strtol(buf, &end, 10);
        if (*end == '\0')
            idx = v;
    }
    pthread_mutex_lock(&S.mu);
    S.n_recv_total++;
    if (idx < 1 || idx > S.count) {
        S.n_unexpected++;
    } else {
        S.recv_n[idx]++;
        S.order[S.n_order++] = idx; /* n_order < 4·count: guarded below */
        if (S.n_order >= 4 * S.count)
            S.n_order = 4 * S.count - 1;
    }
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    if (idx >= 1)
        outf("RECV %ld qos=%u dup=%d", idx, qos, dup ? 1 : 0);
    else
        outf("RECV ? qos=%u dup=%d len=%zu", qos, dup ? 1 : 0, len);
}

static void on_stray(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                     uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c, (void)payload, (void)retain, (void)dup, (void)user;
    outf("STRAY topic=%.*s len=%zu qos=%u", (int)topic_len, topic, len, qos);
    pthread_mutex_lock(&S.mu);
    S.n_unexpected++;
    pthread_mutex_unlock(&S.mu);
}

static void on_pub_done(int status, uint8_t granted, void *user)
{
    (void)granted;
    long idx = (long)(intptr_t)user;
    outf("DONE %ld %s", idx, iotc_err_name(status));
    pthread_mutex_lock(&S.mu);
    if (idx >= 1 && idx <= S.count && S.done_status[idx] == 1) {
        S.done_status[idx] = status;
        S.n_done++;
    } else {
        S.n_unexpected++; /* a second completion: the API promises exactly one */
        outf("DOUBLE-COMPLETION %ld", idx);
    }
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

/* ---- setup ------------------------------------------------------------------- */

static int usage(const char *why)
{
    fprintf(stderr, "iotc_itest: %s\n", why);
    fprintf(stderr, "usage: iotc_itest --port P [--host H] [--transport tcp|tls|ws|wss] [--verify-name N]\n"
                    "       [--ca F] [--cert F --key F] [--alpn S] [--client-id ID] [--topic T] [--count N]\n"
                    "       [--rate HZ] [--queue Q] [--drop oldest|newest] [--drain-hz H] [--clean 0|1]\n"
                    "       [--reconnect-ms MIN,MAX] [--timeout-ms MS] [--settle-ms MS] [--thing T]\n"
                    "       pubsub|outage|expect-fail|shadow\n");
    return EXIT_USAGE;
}

static int parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->transport = "tcp";
    o->topic = "itest/t";
    o->client_id = "iotc-itest";
    o->count = 20;
    o->rate = 20;
    o->queue = 20;
    o->drop = IOTC_DROP_NEWEST;
    o->drain_hz = 2;
    o->clean = 1;
    o->timeout_ms = 10000;
    o->settle_ms = 15000;
    o->thing = "itest-thing";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            o->mode = a;
            continue;
        }
        if (!v)
            return usage("an option without its value");
        i++;
        if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) o->port = v;
        else if (!strcmp(a, "--transport")) o->transport = v;
        else if (!strcmp(a, "--verify-name")) o->verify_name = v;
        else if (!strcmp(a, "--ca")) o->ca = v;
        else if (!strcmp(a, "--cert")) o->cert = v;
        else if (!strcmp(a, "--key")) o->key = v;
        else if (!strcmp(a, "--alpn")) o->alpn = v;
        else if (!strcmp(a, "--client-id")) o->client_id = v;
        else if (!strcmp(a, "--topic")) o->topic = v;
        else if (!strcmp(a, "--count")) o->count = strtol(v, NULL, 10);
        else if (!strcmp(a, "--rate")) o->rate = strtod(v, NULL);
        else if (!strcmp(a, "--queue")) o->queue = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--drop")) {
            if (!strcmp(v, "oldest")) o->drop = IOTC_DROP_OLDEST;
            else if (!strcmp(v, "newest")) o->drop = IOTC_DROP_NEWEST;
            else return usage("--drop: oldest or newest");
        } else if (!strcmp(a, "--drain-hz")) o->drain_hz = strtod(v, NULL);
        else if (!strcmp(a, "--clean")) o->clean = atoi(v);
        else if (!strcmp(a, "--reconnect-ms")) {
            char *end;
            o->rc_min = strtoull(v, &end, 10);
            if (*end != ',')
                return usage("--reconnect-ms MIN,MAX");
            o->rc_max = strtoull(end + 1, NULL, 10);
            o->have_reconnect = 1;
        } else if (!strcmp(a, "--timeout-ms")) o->timeout_ms = strtol(v, NULL, 10);
        else if (!strcmp(a, "--settle-ms")) o->settle_ms = strtol(v, NULL, 10);
        else if (!strcmp(a, "--thing")) o->thing = v;
        else return usage("unknown option");
    }
    if (!o->mode || (strcmp(o->mode, "pubsub") && strcmp(o->mode, "outage") && strcmp(o->mode, "expect-fail") &&
                     strcmp(o->mode, "shadow")))
        return usage("a mode: pubsub, outage, expect-fail or shadow");
    if (!o->port)
        return usage("--port is required");
    if (o->count < 1 || o->count > MAX_COUNT)
        return usage("--count: 1..100000");
    if (o->rate <= 0)
        return usage("--rate: > 0");
    if (strcmp(o->transport, "tcp") && strcmp(o->transport, "tls") && strcmp(o->transport, "ws") &&
        strcmp(o->transport, "wss"))
        return usage("--transport: tcp, tls, ws or wss");
    if ((o->cert == NULL) != (o->key == NULL))
        return usage("--cert and --key go together");
    return 0;
}

/* The WebSocket builder needs a handshake callback; this one keeps the
 * default request (path "/mqtt"), which is what mosquitto expects. */
static int ws_keep(iotc_ws_request *req, void *user)
{
    (void)req, (void)user;
    return IOTC_OK;
}

#define TRY(call)                                                                                                  \
    do {                                                                                                           \
        int rc_ = (call);                                                                                          \
        if (rc_ != IOTC_OK) {                                                                                      \
            fprintf(stderr, "iotc_itest: %s: %s (%s)\n", #call, iotc_err_name(rc_), iotc_builder_why(b));               \
            iotc_builder_free(b);                                                                                  \
            return NULL;                                                                                           \
        }                                                                                                          \
    } while (0)

static iotc_builder *make_builder(const opts *o)
{
    iotc_builder *b = NULL;
    const char *endpoint = o->verify_name ? o->verify_name : o->host;
    bool ws = !strcmp(o->transport, "ws") || !strcmp(o->transport, "wss");
    bool tls = !strcmp(o->transport, "tls") || !strcmp(o->transport, "wss");
    int rc;
    if (ws)
        rc = iotc_websockets_with_custom_handshake(&b, endpoint, ws_keep, NULL);
    else if (tls && o->cert)
        rc = iotc_mtls_from_path(&b, endpoint, o->cert, o->key);
    else
        rc = iotc_new_default_builder(&b, endpoint);
    if (rc != IOTC_OK) {
        fprintf(stderr, "iotc_itest: builder: %s\n", iotc_err_name(rc));
        return NULL;
    }
    if (ws && o->cert) {
        fprintf(stderr, "iotc_itest: the WebSocket builders take no client certificate\n");
        iotc_builder_free(b);
        return NULL;
    }
    if (o->verify_name)
        TRY(iotc_builder_set_address(b, o->host));
    char *end;
    long port = strtol(o->port, &end, 10);
    if (*end || port < 1 || port > 65535) {
        fprintf(stderr, "iotc_itest: --port %s: 1..65535\n", o->port);
        iotc_builder_free(b);
        return NULL;
    }
    TRY(iotc_builder_set_port(b, (uint16_t)port));
    TRY(iotc_builder_set_tls(b, tls));
    if (o->ca)
        TRY(iotc_builder_set_ca_file(b, o->ca));
    if (o->alpn)
        TRY(iotc_builder_set_alpn(b, o->alpn));
    TRY(iotc_builder_set_client_id(b, o->client_id));
    TRY(iotc_builder_set_clean_session(b, o->clean != 0));
    TRY(iotc_builder_set_offline_queue(b, o->queue, o->drop));
    TRY(iotc_builder_set_drain_hz(b, o->drain_hz));
    /* A killed broker is noticed by the socket closing; keep-alive only
     * needs to be short enough for a half-open link not to hang a test. */
    TRY(iotc_builder_set_keep_alive_secs(b, 30));
    TRY(iotc_builder_set_ping_timeout_ms(b, 3000));
    TRY(iotc_builder_set_tcp_connect_timeout_ms(b, 3000));
    if (o->have_reconnect)
        TRY(iotc_builder_set_reconnect(b, o->rc_min, o->rc_max));
    return b;
}

/* ---- modes ------------------------------------------------------------------- */

static bool all_done(void) { return S.n_done >= S.count; }

static long pubsub_target; /* first arrivals wanted */
static bool pubsub_complete(void)
{
    if (S.n_done < S.count)
        return false;
    long got = 0;
    for (long i = 1; i <= S.count; i++)
        got += S.recv_n[i] > 0;
    return got >= pubsub_target;
}

/* Checks of the arrival order: first arrivals must increase; returns the
 * number of duplicates (arrivals after the first) and sets *in_order. */
static long order_check(bool *in_order)
{
    long last = 0, dups = 0;
    unsigned char *seen = calloc((size_t)S.count + 1, 1);
    *in_order = seen != NULL;
    for (long k = 0; seen && k < S.n_order; k++) {
        long v = S.order[k];
        if (seen[v]) {
            dups++;
            continue;
        }
        seen[v] = 1;
        if (v < last)
            *in_order = false;
        last = v;
    }
    free(seen);
    return dups;
}

static int mode_pubsub(iotc_client *c, const opts *o)
{
    int status = 0;
    uint8_t granted = 0xFF;
    int rc = iotc_subscribe_wait(c, o->topic, 1, on_msg, (void *)o->topic, (uint32_t)o->timeout_ms, &granted);
    if (rc != IOTC_OK || granted != 1) {
        outf("SUMMARY {\"mode\":\"pubsub\",\"ok\":false,\"step\":\"subscribe\",\"err\":\"%s\",\"granted\":%u}",
             iotc_err_name(rc), granted);
        return EXIT_CHECK;
    }
    long busy = 0, call_errors = 0;
    for (long i = 1; i <= o->count; i++) {
        char p[24];
        int n = snprintf(p, sizeof p, "%ld", i);
        pthread_mutex_lock(&S.mu);
        S.done_status[i] = 1;
        pthread_mutex_unlock(&S.mu);
        for (;;) {
            rc = iotc_publish(c, o->topic, p, (size_t)n, 1, false, on_pub_done, (void *)(intptr_t)i);
            if (rc != IOTC_ERR_BUSY || busy > 10000)
                break;
            busy++; /* the in-flight window is full: the API says try again */
            sleep_ms(2);
        }
        if (rc != IOTC_OK) {
            call_errors++;
            outf("PUB %ld call=%s", i, iotc_err_name(rc));
            pthread_mutex_lock(&S.mu);
            S.done_status[i] = rc;
            S.n_done++;
            pthread_mutex_unlock(&S.mu);
        }
    }
    pubsub_target = o->count;
    pthread_mutex_lock(&S.mu);
    bool complete = wait_until(pubsub_complete, now_ms() + (uint64_t)o->timeout_ms);
    /* Late duplicates or strays would change the verdict: give them a moment. */
    pthread_mutex_unlock(&S.mu);
    sleep_ms(200);
    pthread_mutex_lock(&S.mu);
    long acked = 0, received = 0, missing_first = 0;
    for (long i = 1; i <= S.count; i++) {
        acked += S.done_status[i] == IOTC_OK;
        if (S.recv_n[i])
            received++;
        else if (!missing_first)
            missing_first = i;
    }
    bool in_order;
    long dups = order_check(&in_order);
    long unexpected = S.n_unexpected;
    pthread_mutex_unlock(&S.mu);
    bool ok = complete && acked == o->count && received == o->count && in_order && unexpected == 0 &&
              call_errors == 0;
    outf("SUMMARY {\"mode\":\"pubsub\",\"ok\":%s,\"transport\":\"%s\",\"published\":%ld,\"acked\":%ld,"
         "\"received\":%ld,\"first_missing\":%ld,\"in_order\":%s,\"duplicates\":%ld,\"unexpected\":%ld,"
         "\"call_errors\":%ld,\"busy_retries\":%ld}",
         ok ? "true" : "false", o->transport, o->count, acked, received, missing_first,
         in_order ? "true" : "false", dups, unexpected, call_errors, busy);
    if (!ok)
        status = EXIT_CHECK;
    return status;
}

static int mode_outage(iotc_client *c, const opts *o)
{
    uint8_t granted = 0xFF;
    int rc = iotc_subscribe_wait(c, o->topic, 1, on_msg, (void *)o->topic, (uint32_t)o->timeout_ms, &granted);
    outf("SUBSCRIBED %s granted=%u", iotc_err_name(rc), granted);
    if (rc != IOTC_OK || granted != 1)
        return EXIT_CHECK;
    uint64_t period = (uint64_t)(1000.0 / o->rate);
    uint64_t next = now_ms();
    for (long i = 1; i <= o->count; i++) {
        char p[24];
        int n = snprintf(p, sizeof p, "%ld", i);
        pthread_mutex_lock(&S.mu);
        S.done_status[i] = 1;
        pthread_mutex_unlock(&S.mu);
        /* The PUB line comes before the call: a completion (DONE) printed by
         * the service thread must never precede its PUB line. */
        outf("PUB %ld", i);
        rc = iotc_publish(c, o->topic, p, (size_t)n, 1, false, on_pub_done, (void *)(intptr_t)i);
        outf("CALL %ld %s", i, iotc_err_name(rc));
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&S.mu);
            S.done_status[i] = rc;
            S.n_done++;
            pthread_mutex_unlock(&S.mu);
        }
        next += period;
        uint64_t t = now_ms();
        if (next > t)
            sleep_ms(next - t);
    }
    outf("PUBLISHED %ld", o->count);
    /* Wait for every completion, then for every message that completed OK
     * (it reached the broker) to come back, or the settle time. */
    uint64_t deadline = now_ms() + (uint64_t)o->settle_ms;
    pthread_mutex_lock(&S.mu);
    bool done = wait_until(all_done, deadline);
    long want = 0;
    for (long i = 1; i <= S.count; i++)
        want += S.done_status[i] == IOTC_OK;
    pubsub_target = want;
    bool back = wait_until(pubsub_complete, deadline);
    pthread_mutex_unlock(&S.mu);
    sleep_ms(300); /* late duplicates are reported too */
    pthread_mutex_lock(&S.mu);
    char *line = malloc((size_t)S.n_order * 12 + 32);
    if (line) {
        size_t len = 0;
        len += (size_t)sprintf(line, "RECEIVED ");
        for (long k = 0; k < S.n_order; k++)
            len += (size_t)sprintf(line + len, "%s%ld", k ? "," : "", S.order[k]);
    }
    bool in_order;
    long dups = order_check(&in_order);
    long pending = 0;
    for (long i = 1; i <= S.count; i++)
        pending += S.done_status[i] == 1;
    long unexpected = S.n_unexpected;
    int interrupts = S.interrupts, resumes = S.resumes, failures = S.failures;
    pthread_mutex_unlock(&S.mu);
    if (line) {
        outf("%s", line);
        free(line);
    }
    iotc_client_stats st;
    memset(&st, 0, sizeof st);
    int src = iotc_client_get_stats(c, &st);
    outf("SUMMARY {\"mode\":\"outage\",\"all_completed\":%s,\"pending\":%ld,\"all_ok_returned\":%s,"
         "\"in_order\":%s,\"duplicates\":%ld,\"unexpected\":%ld,\"interrupts\":%d,\"resumes\":%d,"
         "\"failures\":%d,\"stats_rc\":\"%s\",\"queued\":%zu,\"inflight\":%zu,\"dropped\":%" PRIu64
         ",\"drained\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"connected\":%s}",
         done ? "true" : "false", pending, back ? "true" : "false", in_order ? "true" : "false", dups,
         unexpected, interrupts, resumes, failures, iotc_err_name(src), st.queued, st.inflight, st.dropped,
         st.drained, st.messages, st.connected ? "true" : "false");
    /* The driver judges the run from the lines above; the exit status only
     * says whether the program itself got to the end. */
    return done ? 0 : EXIT_CHECK;
}

static bool connect_reported(void) { return S.fail_seen || S.success_seen; }

static int mode_expect_fail(iotc_client *c, const opts *o)
{
    int rc = iotc_client_connect(c);
    if (rc != IOTC_OK) {
        outf("CONNECT-CALL %s", iotc_err_name(rc));
        return EXIT_SETUP;
    }
    pthread_mutex_lock(&S.mu);
    wait_until(connect_reported, now_ms() + (uint64_t)o->timeout_ms);
    bool failed = S.fail_seen, connected = S.success_seen;
    int err = S.first_fail_err;
    unsigned code = S.first_fail_rc;
    char reason[512];
    snprintf(reason, sizeof reason, "%s", S.first_fail_reason);
    pthread_mutex_unlock(&S.mu);
    if (connected) {
        outf("RESULT connected");
        return EXIT_CONNECTED;
    }
    if (!failed) {
        outf("RESULT silent");
        return EXIT_SILENT;
    }
    outf("RESULT failed err=%s return_code=%u reason=\"%s\"", iotc_err_name(err), code, reason);
    return 0;
}

/* ---- shadow --------------------------------------------------------------------
 * The responder (test_shadow_mosquitto.py) answers by shadow name: "accept"
 * (and the classic shadow) accepts, and after an update sends the delta of
 * the new version, a stale delta (one version older) and the documents;
 * after a delete it sends a delta of version 1.  "reject" answers 404,
 * "silent" never answers, "foreign" sends another client's accepted answer
 * and one without a token before its own rejected 409, then that answer
 * again.  Nothing may ever be sent for "badjson". */

typedef struct {
    const char *label;
    int calls;
    int status, code;
    uint64_t version;
    uint64_t t0, t_done;
    bool try_wait; /* call a blocking helper inside the callback */
    int wait_rc;
} sh_req;

typedef struct {
    int n;
    uint64_t last_version;
} sh_stream;

static iotc_client *SH_C;
static int sh_violations;  /* callbacks off the service thread, double completions */
static sh_stream sh_delta, sh_docs;
static int sh_failed;
static char sh_first_failed[160];

static void sh_check(bool ok, const char *what)
{
    if (ok)
        return;
    outf("CHECK-FAILED %s", what);
    if (!sh_failed++)
        snprintf(sh_first_failed, sizeof sh_first_failed, "%s", what);
}

static void sh_result(iotc_shadow *s, const iotc_shadow_result *r, void *user)
{
    sh_req *q = user;
    bool svc = iotc_client_on_service_thread(SH_C);
    int wait_rc = 1;
    if (q->try_wait)
        wait_rc = iotc_shadow_get_wait(s, 1000, NULL, NULL);
    char msg[256], js[600];
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%.*s", r->json ? (int)(r->json_len < 500 ? r->json_len : 500) : 0,
             r->json ? r->json : "");
    sanitize(js, sizeof js, tmp);
    sanitize(msg, sizeof msg, r->message);
    outf("RESULT %s status=%s code=%d version=%" PRIu64 " message=\"%s\" json=\"%s\" service_thread=%d", q->label,
         iotc_err_name(r->status), r->code, r->version, msg, js, svc ? 1 : 0);
    pthread_mutex_lock(&S.mu);
    if (++q->calls > 1) {
        outf("DOUBLE-COMPLETION %s", q->label);
        sh_violations++;
    }
    if (!svc)
        sh_violations++;
    q->status = r->status;
    q->code = r->code;
    q->version = r->version;
    q->t_done = now_ms();
    q->wait_rc = wait_rc;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void sh_doc(iotc_shadow *s, const char *json, size_t len, uint64_t version, void *user)
{
    (void)s, (void)json, (void)len;
    sh_stream *st = user;
    bool svc = iotc_client_on_service_thread(SH_C);
    outf("%s version=%" PRIu64, st == &sh_delta ? "DELTA" : "DOCUMENTS", version);
    pthread_mutex_lock(&S.mu);
    st->n++;
    st->last_version = version;
    if (!svc)
        sh_violations++;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

typedef struct {
    int calls, status;
    uint8_t granted;
} sh_done_rec;

static void sh_done(int status, uint8_t granted, void *user)
{
    sh_done_rec *d = user;
    pthread_mutex_lock(&S.mu);
    d->calls++;
    d->status = status;
    d->granted = granted;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

/* wait_until's predicates take no argument: these say what to wait for. */
static sh_req *sh_wreq;
static sh_done_rec *sh_wdone[2];
static sh_stream *sh_wstream;
static int sh_wcount;
static bool sh_req_done(void) { return sh_wreq->calls > 0; }
static bool sh_dones_done(void) { return sh_wdone[0]->calls > 0 && sh_wdone[1]->calls > 0; }
static bool sh_stream_reached(void) { return sh_wstream->n >= sh_wcount; }

/* Waits for q's callback; false when it did not come in time. */
static bool sh_wait(sh_req *q, const opts *o)
{
    pthread_mutex_lock(&S.mu);
    sh_wreq = q;
    bool ok = wait_until(sh_req_done, now_ms() + (uint64_t)o->timeout_ms);
    pthread_mutex_unlock(&S.mu);
    return ok;
}

static bool sh_wait_stream(sh_stream *st, int n, const opts *o)
{
    pthread_mutex_lock(&S.mu);
    sh_wstream = st;
    sh_wcount = n;
    bool ok = wait_until(sh_stream_reached, now_ms() + (uint64_t)o->timeout_ms);
    pthread_mutex_unlock(&S.mu);
    return ok;
}

/* A request made asynchronously, then waited for: its result's fields. */
static sh_req *sh_run(sh_req *q, int call_rc, const opts *o)
{
    outf("CALL %s %s", q->label, iotc_err_name(call_rc));
    if (call_rc != IOTC_OK) {
        char w[160];
        snprintf(w, sizeof w, "%s: the call failed with %s (%s)", q->label, iotc_err_name(call_rc),
                 iotc_shadow_why());
        sh_check(false, w);
        return q;
    }
    if (!sh_wait(q, o)) {
        char w[160];
        snprintf(w, sizeof w, "%s: no callback", q->label);
        sh_check(false, w);
    }
    return q;
}

static iotc_shadow *sh_new(iotc_client *c, const opts *o, const char *name)
{
    iotc_shadow *s = NULL;
    int rc = iotc_shadow_new(c, o->thing, name, &s);
    if (rc != IOTC_OK) {
        outf("SHADOW-NEW %s %s (%s)", name ? name : "(classic)", iotc_err_name(rc), iotc_shadow_why());
        return NULL;
    }
    return s;
}

static int mode_shadow(iotc_client *c, const opts *o)
{
    SH_C = c;
    iotc_shadow *acc = sh_new(c, o, "accept"), *rej = sh_new(c, o, "reject"), *sil = sh_new(c, o, "silent"),
                *frn = sh_new(c, o, "foreign"), *bad = sh_new(c, o, "badjson"), *classic = sh_new(c, o, NULL);
    if (!acc || !rej || !sil || !frn || !bad || !classic)
        return EXIT_SETUP;
    uint32_t to = (uint32_t)o->timeout_ms;

    /* 1. The streams first, so that no delta can be missed. */
    sh_done_rec dd = {0}, dc = {0};
    int rc = iotc_shadow_on_delta(acc, sh_doc, &sh_delta, sh_done, &dd);
    int rc2 = iotc_shadow_on_documents(acc, sh_doc, &sh_docs, sh_done, &dc);
    sh_check(rc == IOTC_OK && rc2 == IOTC_OK, "on_delta/on_documents calls");
    pthread_mutex_lock(&S.mu);
    sh_wdone[0] = &dd;
    sh_wdone[1] = &dc;
    bool live = wait_until(sh_dones_done, now_ms() + (uint64_t)o->timeout_ms);
    pthread_mutex_unlock(&S.mu);
    outf("STREAMS delta=%s/%u documents=%s/%u", iotc_err_name(dd.status), dd.granted, iotc_err_name(dc.status),
         dc.granted);
    sh_check(live && dd.status == IOTC_OK && dd.granted == 1 && dc.status == IOTC_OK && dc.granted == 1,
             "the streams' subscriptions");

    /* 2. get, accepted. */
    sh_req get_acc = {.label = "get-accept"};
    sh_run(&get_acc, iotc_shadow_get(acc, to, sh_result, &get_acc), o);
    sh_check(get_acc.status == IOTC_OK && get_acc.version > 0, "get-accept: IOTC_OK with a version");

    /* 3. update (the caller's clientToken is overridden), then its delta,
     *    a stale delta (dropped) and the documents. */
    sh_req upd = {.label = "update-accept"};
    sh_run(&upd,
           iotc_shadow_update(acc, "{\"clientToken\":\"caller-token\",\"state\":{\"desired\":{\"color\":\"red\"}}}",
                              to, sh_result, &upd),
           o);
    sh_check(upd.status == IOTC_OK && upd.version == get_acc.version + 1, "update-accept: IOTC_OK, version + 1");
    sh_check(sh_wait_stream(&sh_delta, 1, o), "the delta after the update");
    sh_check(sh_wait_stream(&sh_docs, 1, o), "the documents after the update");
    sleep_ms(300); /* the stale delta would come now */
    pthread_mutex_lock(&S.mu);
    int nd = sh_delta.n;
    uint64_t dv = sh_delta.last_version, docv = sh_docs.last_version;
    pthread_mutex_unlock(&S.mu);
    sh_check(nd == 1 && dv == upd.version, "exactly one delta, of the update's version (the stale one dropped)");
    sh_check(docv == upd.version, "documents of the update's version");

    /* 4. rejected. */
    sh_req get_rej = {.label = "get-reject"};
    sh_run(&get_rej, iotc_shadow_get(rej, to, sh_result, &get_rej), o);
    sh_check(get_rej.status == IOTC_ERR_REJECTED && get_rej.code == 404, "get-reject: IOTC_ERR_REJECTED 404");

    /* 5. no answer: the timeout, on time. */
    sh_req get_sil = {.label = "get-silent", .t0 = now_ms()};
    sh_run(&get_sil, iotc_shadow_get(sil, 1000, sh_result, &get_sil), o);
    outf("TIMEOUT-AFTER %" PRIu64 " ms", get_sil.t_done - get_sil.t0);
    sh_check(get_sil.status == IOTC_ERR_TIMEOUT, "get-silent: IOTC_ERR_TIMEOUT");
    sh_check(get_sil.t_done >= get_sil.t0 + 1000 && get_sil.t_done < get_sil.t0 + 1000 + 3000,
             "get-silent: the timeout fired after 1000 ms (and not much later)");

    /* 6. another client's answer, one without a token: ignored; the
     *    duplicate of ours: ignored. */
    sh_req get_frn = {.label = "get-foreign"};
    sh_run(&get_frn, iotc_shadow_get(frn, to, sh_result, &get_frn), o);
    sh_check(get_frn.status == IOTC_ERR_REJECTED && get_frn.code == 409,
             "get-foreign: our own rejected 409, not the foreign accepted one");

    /* 7. delete: accepted, and the version tracking starts again. */
    sh_req del = {.label = "delete-accept"};
    sh_run(&del, iotc_shadow_delete(acc, to, sh_result, &del), o);
    sh_check(del.status == IOTC_OK, "delete-accept: IOTC_OK");
    sh_check(sh_wait_stream(&sh_delta, 2, o), "the version-1 delta after the delete");
    pthread_mutex_lock(&S.mu);
    dv = sh_delta.last_version;
    pthread_mutex_unlock(&S.mu);
    sh_check(dv == 1, "after delete/accepted a delta of version 1 passes");

    /* 8. a bad update document: refused at the call, nothing sent. */
    sh_req badq = {.label = "update-badjson"};
    rc = iotc_shadow_update(bad, "{\"desired\":{\"color\":\"red\"}}", to, sh_result, &badq);
    outf("CALL update-badjson %s why=\"%s\"", iotc_err_name(rc), iotc_shadow_why());
    sh_check(rc == IOTC_ERR_INVALID_ARG, "update-badjson: IOTC_ERR_INVALID_ARG at the call");
    rc = iotc_shadow_update(bad, "not json", to, sh_result, &badq);
    sh_check(rc == IOTC_ERR_INVALID_ARG, "update-badjson: not JSON refused at the call");

    /* 9. ten pending at most; freeing completes them with CLOSED. */
    static sh_req pend[11];
    int ok_calls = 0;
    for (int i = 0; i < 11; i++) {
        pend[i] = (sh_req){.label = "pending"};
        rc = iotc_shadow_get(sil, 60000, sh_result, &pend[i]);
        ok_calls += rc == IOTC_OK;
        if (i == 10) {
            outf("CALL pending-11th %s", iotc_err_name(rc));
            sh_check(rc == IOTC_ERR_BUSY, "the 11th pending request: IOTC_ERR_BUSY");
        }
    }
    sh_check(ok_calls == 10, "ten pending requests accepted");
    sleep_ms(300); /* let them reach the responder */
    iotc_shadow_free(sil);
    sil = NULL;
    int closed = 0;
    pthread_mutex_lock(&S.mu);
    for (int i = 0; i < 10; i++)
        closed += pend[i].calls == 1 && pend[i].status == IOTC_ERR_CLOSED;
    pthread_mutex_unlock(&S.mu);
    outf("CLOSED-ON-FREE %d", closed);
    sh_check(closed == 10, "iotc_shadow_free completed the ten with IOTC_ERR_CLOSED");

    /* 10. the blocking helpers. */
    int code = -1;
    char *json = NULL;
    rc = iotc_shadow_get_wait(acc, to, &code, &json);
    outf("WAIT get-accept %s code=%d json=%s", iotc_err_name(rc), code, json ? "yes" : "no");
    sh_check(rc == IOTC_OK && code == 0 && json && strstr(json, "\"version\""), "get_wait on accept");
    free(json);
    json = NULL;
    rc = iotc_shadow_update_wait(acc, "{\"state\":{\"reported\":{\"color\":\"red\"}}}", to, &code, &json);
    outf("WAIT update-accept %s", iotc_err_name(rc));
    sh_check(rc == IOTC_OK && json != NULL, "update_wait on accept");
    free(json);
    json = NULL;
    rc = iotc_shadow_delete_wait(rej, to, &code, &json);
    outf("WAIT delete-reject %s code=%d", iotc_err_name(rc), code);
    sh_check(rc == IOTC_ERR_REJECTED && code == 404 && json && strstr(json, "No shadow exists"),
             "delete_wait on reject: IOTC_ERR_REJECTED, 404 and the document");
    free(json);

    /* 11. a blocking helper inside a callback: IOTC_ERR_BUSY at once. */
    sh_req busyq = {.label = "get-accept-busy", .try_wait = true};
    sh_run(&busyq, iotc_shadow_get(acc, to, sh_result, &busyq), o);
    sh_check(busyq.status == IOTC_OK && busyq.wait_rc == IOTC_ERR_BUSY, "a *_wait from a callback: IOTC_ERR_BUSY");

    /* 12. the classic shadow. */
    sh_req get_cl = {.label = "get-classic"};
    sh_run(&get_cl, iotc_shadow_get(classic, to, sh_result, &get_cl), o);
    sh_check(get_cl.status == IOTC_OK, "get on the classic shadow");

    sleep_ms(300); /* late duplicates (the foreign shadow's) would show now */
    iotc_shadow_free(acc);
    iotc_shadow_free(rej);
    iotc_shadow_free(frn);
    iotc_shadow_free(bad);
    iotc_shadow_free(classic);
    pthread_mutex_lock(&S.mu);
    int violations = sh_violations, nd_final = sh_delta.n, ndoc_final = sh_docs.n;
    int frn_calls = get_frn.calls;
    pthread_mutex_unlock(&S.mu);
    sh_check(violations == 0, "every callback on the service thread, and once");
    sh_check(frn_calls == 1, "get-foreign completed exactly once");
    char first[200];
    sanitize(first, sizeof first, sh_first_failed);
    outf("SUMMARY {\"mode\":\"shadow\",\"ok\":%s,\"failed\":%d,\"first_failed\":\"%s\",\"violations\":%d,"
         "\"deltas\":%d,\"documents\":%d,\"timeout_ms\":%" PRIu64 "}",
         sh_failed ? "false" : "true", sh_failed, first, violations, nd_final, ndoc_final,
         get_sil.t_done - get_sil.t0);
    return sh_failed ? EXIT_CHECK : 0;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    S.count = o.count;
    S.done_status = calloc((size_t)o.count + 1, sizeof *S.done_status);
    S.recv_n = calloc((size_t)o.count + 1, sizeof *S.recv_n);
    S.order = calloc((size_t)o.count * 4, sizeof *S.order);
    if (!S.done_status || !S.recv_n || !S.order) {
        fprintf(stderr, "iotc_itest: out of memory\n");
        return EXIT_SETUP;
    }
    iotc_builder *b = make_builder(&o);
    if (!b)
        return EXIT_SETUP;
    iotc_callbacks cb = {
        .on_connection_success = on_success,
        .on_connection_failure = on_failure,
        .on_interrupted = on_interrupted,
        .on_resumed = on_resumed,
        .on_closed = on_closed,
        .on_message = on_stray,
    };
    iotc_client *c = NULL;
    rc = iotc_client_new(b, &cb, NULL, &c);
    iotc_builder_free(b);
    if (rc != IOTC_OK) {
        fprintf(stderr, "iotc_itest: iotc_client_new: %s (%s)\n", iotc_err_name(rc), iotc_client_new_why());
        outf("SETUP-FAILED err=%s why=\"%s\"", iotc_err_name(rc), iotc_client_new_why());
        return EXIT_SETUP;
    }
    int status;
    if (!strcmp(o.mode, "expect-fail")) {
        status = mode_expect_fail(c, &o);
    } else {
        bool sp = false;
        rc = iotc_client_connect_wait(c, (uint32_t)o.timeout_ms, &sp);
        if (rc != IOTC_OK) {
            pthread_mutex_lock(&S.mu);
            char reason[512];
            snprintf(reason, sizeof reason, "%s", S.first_fail_reason);
            pthread_mutex_unlock(&S.mu);
            outf("SUMMARY {\"mode\":\"%s\",\"ok\":false,\"step\":\"connect\",\"err\":\"%s\",\"reason\":\"%s\"}",
                 o.mode, iotc_err_name(rc), reason);
            iotc_client_free(c);
            return EXIT_CONNECT;
        }
        status = !strcmp(o.mode, "pubsub")   ? mode_pubsub(c, &o)
                 : !strcmp(o.mode, "shadow") ? mode_shadow(c, &o)
                                             : mode_outage(c, &o);
        rc = iotc_client_disconnect_wait(c, 5000);
        outf("DISCONNECT %s", iotc_err_name(rc));
    }
    iotc_client_free(c);
    free(S.done_status);
    free(S.recv_n);
    free(S.order);
    return status;
}
