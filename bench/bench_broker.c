/*
 * bench_broker.c: the load generator of bench/broker.sh (iotsim against
 * mosquitto).  Two modes, each against one broker per run:
 *
 *   bench_broker tput --host H --port P --scenario fanin|fanout|pairs --qos 0|1
 *                [--warmup S] [--seconds S] [--window N] [--pid PID]
 *     MQTT 3.1.1 over plain TCP with libmosquitto, one thread per client.
 *     fanin: 4 publishers -> 1 subscriber on one topic; fanout: 1 publisher
 *     -> 8 subscribers; pairs: 8 publishers each to its own subscriber.
 *     Payloads are 64 bytes.  Counts the messages the subscribers receive
 *     during --seconds after --warmup and prints one line:
 *       RESULT <msgs/s> <broker CPU %> <lost> <errors> <stalls>
 *     Each publisher keeps at most --window (20) messages sent but not yet
 *     received by every subscriber, so the run measures what the broker
 *     forwards, not how deep it lets queues grow (an open-loop QoS 0 flood
 *     mostly measures the drop policy).  A message the broker drops would
 *     close the window for good, so after 50 ms without progress the
 *     outstanding ones are written off (a "stall"); <lost> is what was sent
 *     and never arrived, counted after a drain of up to 1 s.  With --pid,
 *     the broker's CPU time (utime + stime from /proc) over the window is
 *     printed as a percentage of one core (-1 without it).
 *
 *   bench_broker conns --host H --port P --ca F --cert F --key F -n N --pid PID
 *     Opens N concurrent mTLS connections with plain OpenSSL sockets (epoll,
 *     at most 64 handshakes in progress), sends an MQTT 3.1.1 CONNECT on
 *     each and waits for a CONNACK that accepts it, keeps them all open for
 *     a second, and prints the broker's VmRSS before and after:
 *       RESULT <connected> <rss before KB> <rss after KB> <KB per connection> <failed> <dropped>
 *
 * Exit status: 0 when the run happened (whatever the figures), 1 when the
 * broker broke a connection or sent something wrong, 2 when it could not run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 64
#define MAX_CLIENTS 16

/* ---- shared helpers ------------------------------------------------------ */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* utime + stime of `pid` in clock ticks, or -1. */
static long long proc_cpu_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces: fields count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* VmRSS of `pid` in KB, or -1. */
static long proc_rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* ---- tput: the libmosquitto load generator ------------------------------- */

typedef struct {
    struct mosquitto *m;
    pthread_t th;
    int idx; /* publisher index (in the payload) or subscriber index */
    bool pub;
    char topic[64];
    atomic_bool ready; /* publisher: CONNACK; subscriber: SUBACK */
    atomic_bool failed;
    unsigned long long sent;
} client;

static struct {
    const char *host;
    int port, qos, npub, nsub, fan, window;
    client c[2 * MAX_CLIENTS];
    int n;
    atomic_bool go, stop;
    atomic_ullong recv_total;
    atomic_ullong recv_from[MAX_CLIENTS];
    atomic_int errors;   /* unexpected disconnects, refused CONNECT/SUBSCRIBE */
    atomic_int bad;      /* a message that is not ours */
    atomic_int stalls;   /* windows written off after 50 ms without progress */
} T;

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    client *c = ud;
    if (rc != 0) {
        fprintf(stderr, "bench_broker: %s: CONNACK refused (%d)\n", c->topic, rc);
        atomic_store(&c->failed, true);
        return;
    }
    if (c->pub)
        atomic_store(&c->ready, true);
    else if (mosquitto_subscribe(m, NULL, c->topic, T.qos) != MOSQ_ERR_SUCCESS)
        atomic_store(&c->failed, true);
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted)
{
    (void)m;
    (void)mid;
    client *c = ud;
    if (n != 1 || granted[0] != T.qos) {
        fprintf(stderr, "bench_broker: SUBSCRIBE %s refused (granted %d)\n", c->topic, n ? granted[0] : -1);
        atomic_store(&c->failed, true);
        return;
    }
    atomic_store(&c->ready, true);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc)
{
    (void)m;
    client *c = ud;
    if (!atomic_load(&T.stop)) {
        fprintf(stderr, "bench_broker: %s %d: the broker closed the connection (%s)\n", c->pub ? "publisher" : "subscriber",
                c->idx, mosquitto_strerror(rc));
        atomic_fetch_add(&T.errors, 1);
        atomic_store(&c->failed, true);
    }
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    (void)m;
    (void)ud;
    const uint8_t *p = msg->payload;
    if (msg->payloadlen != PAYLOAD || p[0] >= MAX_CLIENTS || p[1] != 0xB5) {
        atomic_fetch_add(&T.bad, 1);
        return;
    }
    atomic_fetch_add_explicit(&T.recv_from[p[0]], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&T.recv_total, 1, memory_order_relaxed);
}

static void *sub_main(void *arg)
{
    client *c = arg;
    while (!atomic_load(&T.stop) && !atomic_load(&c->failed)) {
        int rc = mosquitto_loop(c->m, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS && !atomic_load(&T.stop)) {
            if (!atomic_load(&c->failed)) {
                fprintf(stderr, "bench_broker: subscriber %d: %s\n", c->idx, mosquitto_strerror(rc));
                atomic_fetch_add(&T.errors, 1);
            }
            break;
        }
    }
    return NULL;
}

static void *pub_main(void *arg)
{
    client *c = arg;
    uint8_t payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    payload[0] = (uint8_t)c->idx;
    payload[1] = 0xB5;
    long long forgiven = 0, last_recv = -1;
    double stalled_since = 0;
    const long long fan = T.fan, limit = (long long)T.window * fan;
    while (!atomic_load(&T.stop) && !atomic_load(&c->failed)) {
        bool full = true;
        if (atomic_load(&T.go)) {
            for (int burst = 0; burst < 32; burst++) {
                long long recv = (long long)atomic_load_explicit(&T.recv_from[c->idx], memory_order_relaxed);
                long long out = (long long)c->sent * fan - recv - forgiven;
                if (out >= limit) {
                    /* A QoS 0 message the broker dropped would block the
                     * window for good: after 50 ms without progress, write
                     * what is outstanding off (the loss is counted at the end). */
                    double t = now_s();
                    if (recv != last_recv) {
                        last_recv = recv;
                        stalled_since = t;
                    } else if (t - stalled_since > 0.05) {
                        forgiven += out;
                        stalled_since = t;
                        atomic_fetch_add(&T.stalls, 1);
                    }
                    break;
                }
                full = false;
                int rc = mosquitto_publish(c->m, NULL, c->topic, PAYLOAD, payload, T.qos, false);
                if (rc != MOSQ_ERR_SUCCESS) {
                    if (!atomic_load(&T.stop) && !atomic_load(&c->failed)) {
                        fprintf(stderr, "bench_broker: publisher %d: %s\n", c->idx, mosquitto_strerror(rc));
                        atomic_fetch_add(&T.errors, 1);
                        atomic_store(&c->failed, true);
                    }
                    break;
                }
                c->sent++;
            }
        }
        /* Sends what the socket refused, reads PUBACKs; waits a little when
         * the window is full (a QoS 0 publisher has nothing to read). */
        int rc = mosquitto_loop(c->m, full ? 1 : 0, 1);
        if (rc != MOSQ_ERR_SUCCESS && !atomic_load(&T.stop)) {
            if (!atomic_load(&c->failed)) {
                fprintf(stderr, "bench_broker: publisher %d: %s\n", c->idx, mosquitto_strerror(rc));
                atomic_fetch_add(&T.errors, 1);
            }
            break;
        }
    }
    return NULL;
}

static int tput(const char *scenario, double warmup, double seconds, long pid)
{
    if (!strcmp(scenario, "fanin"))
        T.npub = 4, T.nsub = 1, T.fan = 1;
    else if (!strcmp(scenario, "fanout"))
        T.npub = 1, T.nsub = 8, T.fan = 8;
    else if (!strcmp(scenario, "pairs"))
        T.npub = 8, T.nsub = 8, T.fan = 1;
    else {
        fprintf(stderr, "bench_broker: --scenario fanin|fanout|pairs\n");
        return 2;
    }
    mosquitto_lib_init();
    unsigned tag = (unsigned)getpid();
    /* Subscribers first, so that no message goes to nobody. */
    for (int k = 0; k < T.nsub + T.npub; k++) {
        client *c = &T.c[T.n++];
        c->pub = k >= T.nsub;
        c->idx = c->pub ? k - T.nsub : k;
        if (!strcmp(scenario, "pairs"))
            snprintf(c->topic, sizeof c->topic, "bench/%u/pair/%d", tag, c->idx);
        else
            snprintf(c->topic, sizeof c->topic, "bench/%u/%s", tag, scenario);
        char id[64];
        snprintf(id, sizeof id, "bench-%u-%s%d", tag, c->pub ? "pub" : "sub", c->idx);
        c->m = mosquitto_new(id, true, c);
        if (!c->m) {
            fprintf(stderr, "bench_broker: mosquitto_new failed\n");
            return 2;
        }
        mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
        /* AWS IoT's documented in-flight limit; mosquitto's default is 20. */
        mosquitto_max_inflight_messages_set(c->m, 100);
        mosquitto_connect_callback_set(c->m, on_connect);
        mosquitto_subscribe_callback_set(c->m, on_subscribe);
        mosquitto_disconnect_callback_set(c->m, on_disconnect);
        mosquitto_message_callback_set(c->m, on_message);
        int rc = mosquitto_connect(c->m, T.host, T.port, 60);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench_broker: connect %s:%d: %s\n", T.host, T.port, mosquitto_strerror(rc));
            return 2;
        }
        if (pthread_create(&c->th, NULL, c->pub ? pub_main : sub_main, c) != 0) {
            fprintf(stderr, "bench_broker: pthread_create failed\n");
            return 2;
        }
    }
    double t0 = now_s();
    for (;;) {
        int ready = 0, failed = 0;
        for (int k = 0; k < T.n; k++) {
            ready += atomic_load(&T.c[k].ready);
            failed += atomic_load(&T.c[k].failed);
        }
        if (failed || now_s() - t0 > 10) {
            fprintf(stderr, "bench_broker: %d of %d clients ready, %d failed: cannot run\n", ready, T.n, failed);
            atomic_store(&T.stop, true);
            for (int k = 0; k < T.n; k++)
                pthread_join(T.c[k].th, NULL);
            return 2;
        }
        if (ready == T.n)
            break;
        sleep_s(0.005);
    }
    atomic_store(&T.go, true);
    sleep_s(warmup);
    long tck = sysconf(_SC_CLK_TCK);
    long long cpu0 = pid > 0 ? proc_cpu_ticks(pid) : -1;
    unsigned long long r0 = atomic_load(&T.recv_total);
    double ta = now_s();
    sleep_s(seconds);
    unsigned long long r1 = atomic_load(&T.recv_total);
    double tb = now_s();
    long long cpu1 = pid > 0 ? proc_cpu_ticks(pid) : -1;
    /* Stop publishing, let what is in flight arrive, then count the loss. */
    atomic_store(&T.go, false);
    unsigned long long want = 0;
    double t_drain = now_s();
    for (;;) {
        sleep_s(0.02);
        want = 0;
        for (int k = 0; k < T.n; k++)
            if (T.c[k].pub)
                want += T.c[k].sent * (unsigned long long)T.fan;
        if (atomic_load(&T.recv_total) >= want || now_s() - t_drain > 1.0)
            break;
    }
    unsigned long long got = atomic_load(&T.recv_total);
    atomic_store(&T.stop, true);
    for (int k = 0; k < T.n; k++)
        pthread_join(T.c[k].th, NULL);
    for (int k = 0; k < T.n; k++) {
        mosquitto_disconnect(T.c[k].m);
        mosquitto_loop(T.c[k].m, 10, 1);
        mosquitto_destroy(T.c[k].m);
    }
    mosquitto_lib_cleanup();
    double rate = (double)(r1 - r0) / (tb - ta);
    double cpu = cpu0 >= 0 && cpu1 >= 0 ? 100.0 * (double)(cpu1 - cpu0) / (double)tck / (tb - ta) : -1;
    int errors = atomic_load(&T.errors) + atomic_load(&T.bad);
    printf("RESULT %.0f %.0f %llu %d %d\n", rate, cpu, want > got ? want - got : 0, errors, atomic_load(&T.stalls));
    return errors ? 1 : 0;
}

/* ---- conns: many idle mTLS connections ------------------------------------ */

enum { S_TCP, S_TLS, S_SEND, S_ACK, S_DONE, S_FAIL };

typedef struct {
    int fd;
    SSL *ssl;
    int state;
    uint8_t ack[4];
    int got;
} hconn;

static int fail_conn(int ep, hconn *h, const char *why, int *shown)
{
    if ((*shown)++ < 5) {
        unsigned long e = ERR_get_error();
        char eb[256] = "";
        if (e)
            ERR_error_string_n(e, eb, sizeof eb);
        fprintf(stderr, "bench_broker: connection failed: %s %s\n", why, eb);
    }
    ERR_clear_error();
    epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
    if (h->ssl)
        SSL_free(h->ssl);
    h->ssl = NULL;
    close(h->fd);
    h->fd = -1;
    h->state = S_FAIL;
    return 1;
}

static void want(int ep, hconn *h, size_t i, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.u64 = i};
    epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &e);
}

/* Moves a connection on as far as it goes; 1 when it finished (done or failed). */
static int step(int ep, hconn *h, size_t i, SSL_CTX *ctx, int *shown)
{
    if (h->state == S_TCP) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
            errno = err;
            return fail_conn(ep, h, strerror(err), shown);
        }
        h->ssl = SSL_new(ctx);
        if (!h->ssl || !SSL_set_fd(h->ssl, h->fd))
            return fail_conn(ep, h, "SSL_new", shown);
        SSL_set_connect_state(h->ssl);
        h->state = S_TLS;
    }
    if (h->state == S_TLS) {
        int r = SSL_connect(h->ssl);
        if (r != 1) {
            int e = SSL_get_error(h->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                want(ep, h, i, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE)
                want(ep, h, i, EPOLLOUT);
            else
                return fail_conn(ep, h, "TLS handshake", shown);
            return 0;
        }
        h->state = S_SEND;
    }
    if (h->state == S_SEND) {
        /* MQTT 3.1.1 CONNECT, clean session, keep-alive 1200 s (AWS's maximum:
         * nothing needs to be sent while the connections are held). */
        char id[32];
        int idlen = snprintf(id, sizeof id, "conn-%u-%zu", (unsigned)getpid(), i);
        uint8_t pkt[64];
        size_t n = 0;
        pkt[n++] = 0x10;
        pkt[n++] = (uint8_t)(10 + 2 + idlen);
        memcpy(pkt + n, "\0\4MQTT\4\2\x04\xb0", 10);
        n += 10;
        pkt[n++] = 0;
        pkt[n++] = (uint8_t)idlen;
        memcpy(pkt + n, id, (size_t)idlen);
        n += (size_t)idlen;
        int r = SSL_write(h->ssl, pkt, (int)n);
        if (r <= 0) {
            int e = SSL_get_error(h->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                want(ep, h, i, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE)
                want(ep, h, i, EPOLLOUT);
            else
                return fail_conn(ep, h, "TLS write", shown);
            return 0;
        }
        h->state = S_ACK;
        want(ep, h, i, EPOLLIN);
    }
    if (h->state == S_ACK) {
        for (;;) {
            int r = SSL_read(h->ssl, h->ack + h->got, 4 - h->got);
            if (r <= 0) {
                int e = SSL_get_error(h->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return 0;
                if (e == SSL_ERROR_WANT_WRITE) {
                    want(ep, h, i, EPOLLOUT);
                    return 0;
                }
                return fail_conn(ep, h, e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? "closed before CONNACK" : "TLS read", shown);
            }
            h->got += r;
            if (h->got == 4)
                break;
        }
        if (h->ack[0] != 0x20 || h->ack[1] != 2 || h->ack[3] != 0)
            return fail_conn(ep, h, "CONNACK refused", shown);
        h->state = S_DONE;
        /* From here on only a close is of interest. */
        want(ep, h, i, EPOLLRDHUP);
        return 1;
    }
    return 0;
}

static int conns(const char *ca, const char *cert, const char *key, size_t n, long pid)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n + 64) {
        rl.rlim_cur = rl.rlim_max < n + 64 ? rl.rlim_max : n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < n + 64) {
            fprintf(stderr, "bench_broker: open-file limit %llu is too low for %zu connections (ulimit -n)\n",
                    (unsigned long long)rl.rlim_cur, n);
            return 2;
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "bench_broker: cannot load %s / %s / %s\n", ca, cert, key);
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* This side's memory is not what is measured, but 5,000 idle buffers add up. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    hconn *h = calloc(n, sizeof *h);
    int ep = epoll_create1(0);
    if (!h || ep < 0)
        return 2;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    if (inet_pton(AF_INET, T.host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bench_broker: --host must be an IPv4 address\n");
        return 2;
    }
    long rss0 = proc_rss_kb(pid);
    if (rss0 < 0) {
        fprintf(stderr, "bench_broker: no /proc/%ld/status\n", pid);
        return 2;
    }
    size_t started = 0, finished = 0, done = 0, failed = 0, dropped = 0;
    int inprog = 0, shown = 0;
    double t0 = now_s();
    struct epoll_event evs[256];
    while (finished < n && now_s() - t0 < 90) {
        while (inprog < 64 && started < n) {
            hconn *c = &h[started];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) {
                fprintf(stderr, "bench_broker: socket: %s\n", strerror(errno));
                return 2;
            }
            struct epoll_event e = {.events = EPOLLOUT, .data.u64 = started};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
            if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
                fail_conn(ep, c, strerror(errno), &shown);
                failed++, finished++;
            } else {
                inprog++;
            }
            started++;
        }
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; j++) {
            size_t i = (size_t)evs[j].data.u64;
            hconn *c = &h[i];
            if (c->state == S_DONE) {
                if (evs[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    dropped++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                }
                continue;
            }
            if (c->state == S_FAIL)
                continue;
            if (step(ep, c, i, ctx, &shown)) {
                inprog--, finished++;
                if (c->state == S_DONE)
                    done++;
                else
                    failed++;
            }
        }
    }
    double t1 = now_s();
    /* Let the broker finish what connecting started (lifecycle events, logs). */
    double until = now_s() + 1.0;
    while (now_s() < until) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; j++) {
            hconn *c = &h[evs[j].data.u64];
            if (c->state == S_DONE && (evs[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                dropped++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
        }
    }
    long rss1 = proc_rss_kb(pid);
    fprintf(stderr, "bench_broker: %zu connected, %zu failed in %.1f s\n", done, failed, t1 - t0);
    double per = done ? (double)(rss1 - rss0) / (double)done : 0;
    printf("RESULT %zu %ld %ld %.1f %zu %zu\n", done, rss0, rss1, per, failed + (n - finished), dropped);
    fflush(stdout);
    for (size_t i = 0; i < n; i++) {
        if (h[i].ssl)
            SSL_free(h[i].ssl);
        if (h[i].fd > 0 && h[i].state != S_FAIL)
            close(h[i].fd);
    }
    free(h);
    close(ep);
    SSL_CTX_free(ctx);
    return done == n && !dropped ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_broker tput --host H --port P --scenario fanin|fanout|pairs --qos 0|1\n"
            "                         [--warmup S] [--seconds S] [--window N] [--pid PID]\n"
            "       bench_broker conns --host H --port P --ca F --cert F --key F -n N --pid PID\n"
            "Run by bench/broker.sh, which starts iotsim and mosquitto.\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 0; /* `make bench` runs every bench_* bare: nothing to measure without brokers */
    }
    const char *mode = argv[1], *scenario = "pairs", *ca = NULL, *cert = NULL, *key = NULL;
    double warmup = 1, seconds = 3;
    long pid = 0;
    size_t n = 5000;
    T.host = "127.0.0.1";
    T.port = 1883;
    T.window = 20;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (!strcmp(o, "--host"))
            T.host = v;
        else if (!strcmp(o, "--port"))
            T.port = atoi(v);
        else if (!strcmp(o, "--scenario"))
            scenario = v;
        else if (!strcmp(o, "--qos"))
            T.qos = atoi(v);
        else if (!strcmp(o, "--warmup"))
            warmup = atof(v);
        else if (!strcmp(o, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(o, "--window"))
            T.window = atoi(v);
        else if (!strcmp(o, "--pid"))
            pid = atol(v);
        else if (!strcmp(o, "--ca"))
            ca = v;
        else if (!strcmp(o, "--cert"))
            cert = v;
        else if (!strcmp(o, "--key"))
            key = v;
        else if (!strcmp(o, "-n"))
            n = (size_t)atol(v);
        else
            return usage();
    }
    if (T.port <= 0 || T.port > 65535 || (T.qos != 0 && T.qos != 1) || T.window < 1 || seconds <= 0 || warmup < 0)
        return usage();
    if (!strcmp(mode, "tput"))
        return tput(scenario, warmup, seconds, pid);
    if (!strcmp(mode, "conns")) {
        if (!ca || !cert || !key || !n || pid <= 0)
            return usage();
        return conns(ca, cert, key, n, pid);
    }
    return usage();
}
