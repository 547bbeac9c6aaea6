/*
 * fake_broker.c: see fake_broker.h.
 *
 * Sockets are opened and closed only by the broker thread, and only with the
 * mutex held, so that another thread's fb_publish (which writes under the
 * mutex) never writes to a descriptor that was closed and reused meanwhile.
 * Requests from other threads (drop, pause, resume, stop) are flags the
 * broker thread carries out after a poke on its self-pipe; the caller waits
 * for the flag to clear so that "fb_drop(); then ..." really is ordered.
 */
#define _GNU_SOURCE /* accept4, pipe2 */
#include "fake_broker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct fb {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int lfd;     /* listening socket, -1 while paused */
    int cfd;     /* the current connection, -1 when none */
    int wake[2]; /* self-pipe */
    uint16_t port;
    unsigned conns;
    bool connected; /* CONNECT received on cfd and answered with 0 */
    iotc_mqtt_reader rd;
    /* script */
    uint8_t connack_code;
    bool session_present;
    bool withhold_puback;
    bool withhold_connack;
    bool withhold_pingresp;
    bool stall;
    uint8_t suback;
    bool withhold_suback;
    /* requests to the thread */
    bool req_drop, req_pause, req_resume, req_stop;
    bool resume_ok;
    /* what arrived */
    fb_rec *recs;
    size_t n, cap;
};

uint64_t fb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *dup_bytes(iotc_mqtt_bytes b)
{
    char *s = malloc(b.len + 1);
    if (!s)
        abort(); /* a test helper: no point limping on */
    if (b.len)
        memcpy(s, b.data, b.len);
    s[b.len] = 0;
    return s;
}

static char *dup_str(const char *s)
{
    return s ? dup_bytes(iotc_mqtt_str(s)) : NULL;
}

void fb_rec_free(fb_rec *r)
{
    free(r->topic);
    free(r->payload);
    free(r->client_id);
    free(r->username);
    free(r->will_topic);
    free(r->will_payload);
    free(r->filter);
    memset(r, 0, sizeof *r);
}

static void rec_copy(fb_rec *dst, const fb_rec *src)
{
    *dst = *src;
    dst->topic = dup_str(src->topic);
    dst->payload = src->payload ? dup_bytes((iotc_mqtt_bytes){(const uint8_t *)src->payload, src->payload_len})
                                : NULL;
    dst->client_id = dup_str(src->client_id);
    dst->username = dup_str(src->username);
    dst->will_topic = dup_str(src->will_topic);
    dst->will_payload =
        src->will_payload ? dup_bytes((iotc_mqtt_bytes){(const uint8_t *)src->will_payload, src->will_len}) : NULL;
    dst->filter = dup_str(src->filter);
}

/* mu held.  Best effort: a write to a connection the peer closed fails and
 * the read side notices. */
static void send_packet(fb *b, const iotc_mqtt_packet *p)
{
    uint8_t buf[512];
    size_t n = 0;
    if (b->cfd < 0 || iotc_mqtt_encode(p, IOTC_MQTT_V311, buf, sizeof buf, &n, NULL) != IOTC_MQTT_OK)
        return;
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(b->cfd, buf + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* mu held. */
static void close_conn(fb *b)
{
    if (b->cfd >= 0)
        close(b->cfd);
    b->cfd = -1;
    b->connected = false;
    iotc_mqtt_reader_reset(&b->rd);
    pthread_cond_broadcast(&b->cv);
}

static int listen_on(uint16_t port, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        close(fd);
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

/* mu held: records `p` and answers it as scripted. */
static void handle(fb *b, const iotc_mqtt_packet *p)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->recs = realloc(b->recs, b->cap * sizeof *b->recs);
        if (!b->recs)
            abort();
    }
    fb_rec *r = &b->recs[b->n++];
    memset(r, 0, sizeof *r);
    r->type = (uint8_t)p->type;
    r->t_ms = fb_now_ms();
    r->conn = b->conns;
    iotc_mqtt_packet out;
    memset(&out, 0, sizeof out);
    switch (p->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *c = &p->u.connect;
        r->client_id = dup_bytes(c->client_id);
        r->has_username = c->has_username;
        r->username = c->has_username ? dup_bytes(c->username) : NULL;
        r->keep_alive = c->keep_alive;
        r->clean = c->clean_start;
        r->will = c->will;
        if (c->will) {
            r->will_topic = dup_bytes(c->will_topic);
            r->will_payload = dup_bytes(c->will_payload);
            r->will_len = c->will_payload.len;
            r->will_qos = c->will_qos;
            r->will_retain = c->will_retain;
        }
        if (b->withhold_connack)
            break;
        out.type = IOTC_MQTT_CONNACK;
        out.u.connack.reason = b->connack_code;
        out.u.connack.session_present = b->connack_code == 0 && b->session_present;
        send_packet(b, &out);
        if (b->connack_code != 0) {
            /* A 3.1.1 server closes after a refusing CONNACK. */
            close_conn(b);
        } else {
            b->connected = true;
        }
        break;
    }
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *pp = &p->u.publish;
        r->topic = dup_bytes(pp->topic);
        r->payload = dup_bytes(pp->payload);
        r->payload_len = pp->payload.len;
        r->qos = pp->qos;
        r->dup = pp->dup;
        r->retain = pp->retain;
        r->packet_id = pp->packet_id;
        if (pp->qos == 1 && !b->withhold_puback) {
            out.type = IOTC_MQTT_PUBACK;
            out.u.ack.packet_id = pp->packet_id;
            send_packet(b, &out);
        }
        break;
    }
    case IOTC_MQTT_PUBACK:
        r->packet_id = p->u.ack.packet_id;
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *s = &p->u.subscribe;
        r->packet_id = s->packet_id;
        uint8_t codes[16];
        size_t k = 0, pos = 0;
        iotc_mqtt_sub sub;
        while (k < sizeof codes && iotc_mqtt_sub_next(s, &pos, &sub)) {
            if (k == 0) {
                r->filter = dup_bytes(sub.filter);
                r->sub_qos = sub.qos;
            }
            codes[k++] = b->suback == 0xFF ? sub.qos : b->suback;
        }
        if (b->withhold_suback)
            break;
        out.type = IOTC_MQTT_SUBACK;
        out.u.suback.packet_id = s->packet_id;
        out.u.suback.codes = codes;
        out.u.suback.count = k;
        send_packet(b, &out);
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE:
        r->packet_id = p->u.unsubscribe.packet_id;
        out.type = IOTC_MQTT_UNSUBACK;
        out.u.suback.packet_id = p->u.unsubscribe.packet_id;
        send_packet(b, &out);
        break;
    case IOTC_MQTT_PINGREQ:
        if (b->withhold_pingresp)
            break;
        out.type = IOTC_MQTT_PINGRESP;
        send_packet(b, &out);
        break;
    case IOTC_MQTT_DISCONNECT:
        close_conn(b);
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&b->cv);
}

/* mu held: carries out other threads' requests. */
static void run_requests(fb *b)
{
    if (b->req_drop) {
        close_conn(b);
        b->req_drop = false;
    }
    if (b->req_pause) {
        if (b->lfd >= 0)
            close(b->lfd);
        b->lfd = -1;
        b->req_pause = false;
    }
    if (b->req_resume) {
        uint16_t got = 0;
        if (b->lfd < 0)
            b->lfd = listen_on(b->port, &got);
        b->resume_ok = b->lfd >= 0;
        b->req_resume = false;
    }
    pthread_cond_broadcast(&b->cv);
}

/* mu held: one read from the current connection, its packets handled;
 * false once it is closed. */
static bool read_conn(fb *b, uint8_t *buf, size_t cap)
{
    ssize_t got = recv(b->cfd, buf, cap, 0);
    if (got < 0 && errno == EINTR)
        return true;
    if (got <= 0) {
        close_conn(b);
        return false;
    }
    size_t off = 0;
    while (off < (size_t)got && b->cfd >= 0) {
        size_t used = 0;
        iotc_mqtt_packet p;
        iotc_mqtt_status st = iotc_mqtt_reader_feed(&b->rd, buf + off, (size_t)got - off, &used, &p, NULL);
        off += used;
        if (st == IOTC_MQTT_OK) {
            handle(b, &p);
        } else if (st != IOTC_MQTT_NEED_MORE) {
            fprintf(stderr, "fake broker: bad bytes from the client (%s)\n", iotc_mqtt_status_str(st));
            close_conn(b);
        }
    }
    return b->cfd >= 0;
}

/* mu held.  A client that reconnects at once (connect from on_closed)
 * may open its new connection before the old one's DISCONNECT and close
 * reach us: read the old one to its end first (at most 2 s), so that the
 * record is what the client sent and not an artefact of the takeover. */
static void finish_old(fb *b, uint8_t *buf, size_t cap)
{
    uint64_t until = fb_now_ms() + 2000;
    while (b->cfd >= 0 && fb_now_ms() < until) {
        struct pollfd pf = {.fd = b->cfd, .events = POLLIN};
        if (poll(&pf, 1, 50) > 0 && !read_conn(b, buf, cap))
            break;
        if (!b->connected)
            break; /* never got as far as CONNACK: nothing to wait for */
    }
    close_conn(b);
}

static void *broker_main(void *arg)
{
    fb *b = arg;
    uint8_t buf[4096];
    pthread_mutex_lock(&b->mu);
    while (!b->req_stop) {
        run_requests(b);
        struct pollfd pf[3];
        int n = 0;
        pf[n++] = (struct pollfd){.fd = b->wake[0], .events = POLLIN};
        int li = -1, ci = -1;
        if (b->lfd >= 0) {
            li = n;
            pf[n++] = (struct pollfd){.fd = b->lfd, .events = POLLIN};
        }
        if (b->cfd >= 0 && !b->stall) {
            ci = n;
            pf[n++] = (struct pollfd){.fd = b->cfd, .events = POLLIN};
        }
        pthread_mutex_unlock(&b->mu);
        int rc = poll(pf, (nfds_t)n, 1000);
        pthread_mutex_lock(&b->mu);
        if (rc <= 0)
            continue;
        if (pf[0].revents) {
            char drain[64];
            while (read(b->wake[0], drain, sizeof drain) > 0) {
            }
        }
        /* A request may have closed these meanwhile: act only on what is
         * still the same descriptor. */
        run_requests(b);
        if (li >= 0 && pf[li].fd == b->lfd && (pf[li].revents & POLLIN)) {
            int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                finish_old(b, buf, sizeof buf); /* one connection at a time: the new one wins */
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                b->cfd = fd;
                b->conns++;
                continue; /* its poll slot was not in this round */
            }
        }
        if (ci >= 0 && pf[ci].fd == b->cfd && (pf[ci].revents & (POLLIN | POLLHUP | POLLERR)))
            read_conn(b, buf, sizeof buf);
    }
    close_conn(b);
    if (b->lfd >= 0)
        close(b->lfd);
    b->lfd = -1;
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

fb *fb_start(void)
{
    fb *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->cfd = -1;
    b->suback = 0xFF;
    if (pipe2(b->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(b);
        return NULL;
    }
    b->lfd = listen_on(0, &b->port);
    if (b->lfd < 0) {
        close(b->wake[0]);
        close(b->wake[1]);
        free(b);
        return NULL;
    }
    iotc_mqtt_reader_init(&b->rd, IOTC_MQTT_V311, 0, NULL, 0);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, broker_main, b) != 0) {
        close(b->lfd);
        close(b->wake[0]);
        close(b->wake[1]);
        iotc_mqtt_reader_free(&b->rd);
        free(b);
        return NULL;
    }
    return b;
}

static void poke(fb *b)
{
    ssize_t w = write(b->wake[1], "x", 1);
    (void)w; /* a full pipe already means "wake up" */
}

void fb_stop(fb *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->req_stop = true;
    pthread_mutex_unlock(&b->mu);
    poke(b);
    pthread_join(b->thread, NULL);
    close(b->wake[0]);
    close(b->wake[1]);
    iotc_mqtt_reader_free(&b->rd);
    for (size_t i = 0; i < b->n; i++)
        fb_rec_free(&b->recs[i]);
    free(b->recs);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

uint16_t fb_port(const fb *b)
{
    return b->port;
}

void fb_set_connack(fb *b, uint8_t code, bool session_present)
{
    pthread_mutex_lock(&b->mu);
    b->connack_code = code;
    b->session_present = session_present;
    pthread_mutex_unlock(&b->mu);
}

void fb_set_withhold_puback(fb *b, bool withhold)
{
    pthread_mutex_lock(&b->mu);
    b->withhold_puback = withhold;
    pthread_mutex_unlock(&b->mu);
}

void fb_set_withhold_connack(fb *b, bool withhold)
{
    pthread_mutex_lock(&b->mu);
    b->withhold_connack = withhold;
    pthread_mutex_unlock(&b->mu);
}

bool fb_connack_now(fb *b)
{
    iotc_mqtt_packet out;
    memset(&out, 0, sizeof out);
    pthread_mutex_lock(&b->mu);
    bool ok = b->cfd >= 0;
    if (ok) {
        out.type = IOTC_MQTT_CONNACK;
        out.u.connack.reason = b->connack_code;
        out.u.connack.session_present = b->connack_code == 0 && b->session_present;
        send_packet(b, &out);
        b->connected = b->connack_code == 0;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void fb_set_withhold_pingresp(fb *b, bool withhold)
{
    pthread_mutex_lock(&b->mu);
    b->withhold_pingresp = withhold;
    pthread_mutex_unlock(&b->mu);
}

void fb_set_suback(fb *b, uint8_t granted)
{
    pthread_mutex_lock(&b->mu);
    b->suback = granted;
    pthread_mutex_unlock(&b->mu);
}

void fb_set_withhold_suback(fb *b, bool withhold)
{
    pthread_mutex_lock(&b->mu);
    b->withhold_suback = withhold;
    pthread_mutex_unlock(&b->mu);
}

bool fb_suback_now(fb *b, uint16_t packet_id, uint8_t code)
{
    iotc_mqtt_packet out;
    memset(&out, 0, sizeof out);
    out.type = IOTC_MQTT_SUBACK;
    out.u.suback.packet_id = packet_id;
    out.u.suback.codes = &code;
    out.u.suback.count = 1;
    pthread_mutex_lock(&b->mu);
    bool ok = b->cfd >= 0 && b->connected;
    if (ok)
        send_packet(b, &out);
    pthread_mutex_unlock(&b->mu);
    return ok;
}

/* Sets a request flag, pokes the thread and waits until it is done. */
static void request(fb *b, bool *flag)
{
    pthread_mutex_lock(&b->mu);
    *flag = true;
    poke(b);
    while (*flag)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

void fb_drop(fb *b)
{
    request(b, &b->req_drop);
}

void fb_pause(fb *b)
{
    request(b, &b->req_pause);
}

bool fb_resume(fb *b)
{
    request(b, &b->req_resume);
    pthread_mutex_lock(&b->mu);
    bool ok = b->resume_ok;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

bool fb_publish(fb *b, const char *topic, const char *payload, uint8_t qos, uint16_t packet_id)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_PUBLISH;
    p.u.publish.topic = iotc_mqtt_str(topic);
    p.u.publish.payload = iotc_mqtt_str(payload);
    p.u.publish.qos = qos;
    p.u.publish.packet_id = qos ? packet_id : 0;
    pthread_mutex_lock(&b->mu);
    bool ok = b->cfd >= 0 && b->connected;
    if (ok)
        send_packet(b, &p);
    pthread_mutex_unlock(&b->mu);
    return ok;
}

bool fb_connected(fb *b)
{
    pthread_mutex_lock(&b->mu);
    bool c = b->connected;
    pthread_mutex_unlock(&b->mu);
    return c;
}

bool fb_send_raw(fb *b, const void *bytes, size_t n)
{
    pthread_mutex_lock(&b->mu);
    bool ok = b->cfd >= 0;
    if (ok)
        ok = send(b->cfd, bytes, n, MSG_NOSIGNAL) == (ssize_t)n;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void fb_set_stall(fb *b, bool stall)
{
    pthread_mutex_lock(&b->mu);
    b->stall = stall;
    pthread_mutex_unlock(&b->mu);
    poke(b); /* so that the poll set changes now */
}

/* mu held. */
static size_t count_locked(const fb *b, uint8_t type)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!type || b->recs[i].type == type)
            k++;
    return k;
}

size_t fb_count(fb *b, uint8_t type)
{
    pthread_mutex_lock(&b->mu);
    size_t k = count_locked(b, type);
    pthread_mutex_unlock(&b->mu);
    return k;
}

static void deadline(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool fb_wait_count(fb *b, uint8_t type, size_t n, uint32_t timeout_ms)
{
    struct timespec dl;
    deadline(&dl, timeout_ms);
    pthread_mutex_lock(&b->mu);
    int e = 0;
    while (count_locked(b, type) < n && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&b->cv, &b->mu, &dl);
    bool ok = count_locked(b, type) >= n;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

bool fb_wait_connected(fb *b, uint32_t timeout_ms)
{
    struct timespec dl;
    deadline(&dl, timeout_ms);
    pthread_mutex_lock(&b->mu);
    int e = 0;
    while (!b->connected && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&b->cv, &b->mu, &dl);
    bool ok = b->connected;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

bool fb_get(fb *b, uint8_t type, size_t i, fb_rec *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&b->mu);
    bool found = false;
    for (size_t k = 0; k < b->n && !found; k++) {
        if (type && b->recs[k].type != type)
            continue;
        if (i == 0) {
            rec_copy(out, &b->recs[k]);
            found = true;
        } else {
            i--;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return found;
}
