/*
 * test_mqtt_peers: the codec against bytes that other implementations wrote.
 *
 * The *.mqtt files in client/tests/fixtures hold MQTT connections between peer clients
 * (mosquitto_pub, mosquitto_sub, paho-mqtt) and the mosquitto broker, captured
 * by fixtures/capture.py (see fixtures/README.md).  For every packet of every
 * fixture this test
 *   (a) decodes it with iotc_mqtt_decode() and, feeding each direction of the
 *       session through iotc_mqtt_reader one byte at a time (and in other
 *       chunkings), checks that both give the same packets;
 *   (c) re-encodes it with iotc_mqtt_encode(), from the decoded lists and
 *       from arrays, and wants the captured bytes back exactly, except where
 *       the spec lets a sender choose: the order of properties in a block
 *       (then the bytes must be a permutation of the captured entries, checked
 *       on the wire without the codec) and the short forms of MQTT 5 acks,
 *       DISCONNECT and AUTH; in every case decoding our encoding must give the
 *       same fields;
 * and (b) for each named session checks the fields its command line asked for.
 * Fixtures come from $IOTC_FIXTURES, else client/tests/fixtures (cwd = repo root).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"

#define DEFAULT_FIXTURES "client/tests/fixtures"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
    char dir;                /* 'C' client to broker, 'S' broker to client */
    uint8_t *bytes;
    size_t len;
    size_t line;             /* in the fixture file, for messages */
    iotc_mqtt_packet pkt;    /* decoded; views point into bytes */
} fx_packet;

typedef struct {
    char name[256];          /* file name without ".mqtt" */
    iotc_mqtt_version version;
    fx_packet *pk;
    size_t count;
} fixture;

static fixture *g_fx;        /* the fixture a test has open; freed by the teardown */

static const char *fixtures_dir(void)
{
    const char *d = getenv("IOTC_FIXTURES");
    return (d && *d) ? d : DEFAULT_FIXTURES;
}

static void fx_free(fixture *fx)
{
    if (!fx)
        return;
    for (size_t i = 0; i < fx->count; i++)
        free(fx->pk[i].bytes);
    free(fx->pk);
    free(fx);
}

static int teardown_fixture(void **state)
{
    (void)state;
    fx_free(g_fx);
    g_fx = NULL;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names (without ".mqtt") of the fixtures in the directory. */
static char **list_fixtures(size_t *n)
{
    const char *dir = fixtures_dir();
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open the fixture directory %s (set IOTC_FIXTURES)", dir);
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".mqtt") != 0)
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 32;
            names = realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[count] = strndup(e->d_name, l - 5);
        assert_non_null(names[count]);
        count++;
    }
    closedir(d);
    if (count)
        qsort(names, count, sizeof *names, cmp_names);
    *n = count;
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Reads and parses one fixture file; decodes every packet (asserting success). */
static fixture *fx_load(const char *name)
{
    char path[1024];
    int pl = snprintf(path, sizeof path, "%s/%s.mqtt", fixtures_dir(), name);
    assert_true(pl > 0 && (size_t)pl < sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("fixture %s is missing (looked for %s)", name, path);

    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->name, sizeof fx->name, "%s", name);
    size_t cap = 0;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t got;
    size_t lineno = 0;
    while ((got = getline(&line, &linecap, f)) >= 0) {
        size_t l = (size_t)got;
        lineno++;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (l == 0 || line[0] == '#')
            continue;
        if (line[0] == 'V' && line[1] == ' ') {
            if (fx->count || fx->version)
                fail_msg("%s:%zu: V must come once, before the packets", name, lineno);
            if (strcmp(line + 2, "4") == 0)
                fx->version = IOTC_MQTT_V311;
            else if (strcmp(line + 2, "5") == 0)
                fx->version = IOTC_MQTT_V5;
            else
                fail_msg("%s:%zu: bad version line '%s'", name, lineno, line);
            continue;
        }
        if ((line[0] != 'C' && line[0] != 'S') || line[1] != ' ')
            fail_msg("%s:%zu: not a comment, V, C or S line: '%.40s'", name, lineno, line);
        if (!fx->version)
            fail_msg("%s:%zu: packet before the V line", name, lineno);
        size_t hexlen = l - 2;
        if (hexlen == 0 || hexlen % 2)
            fail_msg("%s:%zu: odd or empty hex", name, lineno);
        if (fx->count == cap) {
            cap = cap ? 2 * cap : 16;
            fx->pk = realloc(fx->pk, cap * sizeof *fx->pk);
            assert_non_null(fx->pk);
        }
        fx_packet *p = &fx->pk[fx->count];
        memset(p, 0, sizeof *p);
        p->dir = line[0];
        p->line = lineno;
        p->len = hexlen / 2;
        p->bytes = malloc(p->len);
        assert_non_null(p->bytes);
        fx->count++;
        for (size_t i = 0; i < p->len; i++) {
            int hi = hexval(line[2 + 2 * i]), lo = hexval(line[3 + 2 * i]);
            if (hi < 0 || lo < 0)
                fail_msg("%s:%zu: bad hex digit", name, lineno);
            p->bytes[i] = (uint8_t)(hi * 16 + lo);
        }
    }
    free(line);
    fclose(f);
    if (!fx->version)
        fail_msg("%s: no V line", name);
    if (fx->count == 0)
        fail_msg("%s: no packets", name);

    for (size_t i = 0; i < fx->count; i++) {
        fx_packet *p = &fx->pk[i];
        size_t used = 0;
        iotc_mqtt_error err;
        memset(&err, 0, sizeof err);
        iotc_mqtt_status st = iotc_mqtt_decode(p->bytes, p->len, fx->version, 0, &p->pkt, &used, &err);
        if (st != IOTC_MQTT_OK)
            fail_msg("%s:%zu: %c packet type %u (%zu bytes) does not decode: %s (%s) at offset %zu: %s",
                     name, p->line, p->dir, (unsigned)(p->bytes[0] >> 4), p->len,
                     iotc_mqtt_status_str(st), err.what ? err.what : "?", err.offset,
                     err.what ? err.what : "");
        if (used != p->len)
            fail_msg("%s:%zu: decode used %zu of %zu bytes", name, p->line, used, p->len);
        if ((unsigned)p->pkt.type != (unsigned)(p->bytes[0] >> 4))
            fail_msg("%s:%zu: decoded type %u, first byte says %u", name, p->line,
                     (unsigned)p->pkt.type, (unsigned)(p->bytes[0] >> 4));
    }
    return fx;
}

/* Opens a fixture for the running test; the teardown frees it. */
static fixture *fx_open(const char *name)
{
    fx_free(g_fx);
    g_fx = NULL;
    g_fx = fx_load(name);
    return g_fx;
}

static void print_hex(const char *label, const uint8_t *b, size_t n)
{
    print_error("%s (%zu bytes):", label, n);
    for (size_t i = 0; i < n && i < 512; i++)
        print_error(" %02x", b[i]);
    print_error("%s\n", n > 512 ? " ..." : "");
}

/* ---- comparing two decoded packets, field by field ------------------------ */

static void same_bytes(const char *ctx, const char *what, iotc_mqtt_bytes a, iotc_mqtt_bytes b)
{
    if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
        fail_msg("%s: %s differs: '%.*s' (%zu bytes) vs '%.*s' (%zu bytes)", ctx, what,
                 (int)(a.len > 80 ? 80 : a.len), a.len ? (const char *)a.data : "", a.len,
                 (int)(b.len > 80 ? 80 : b.len), b.len ? (const char *)b.data : "", b.len);
}

#define SAME_NUM(ctx, what, x, y)                                                                  \
    do {                                                                                           \
        unsigned long long x_ = (unsigned long long)(x), y_ = (unsigned long long)(y);             \
        if (x_ != y_)                                                                              \
            fail_msg("%s: %s differs: %llu vs %llu", ctx, what, x_, y_);                           \
    } while (0)

static size_t count_user_props(const char *ctx, const iotc_mqtt_props *p)
{
    size_t pos = 0, n = 0;
    iotc_mqtt_user_prop up;
    while (iotc_mqtt_user_prop_next(p, &pos, &up)) {
        n++;
        if (n > p->user_count)
            fail_msg("%s: user_prop_next yields more than user_count=%zu", ctx, p->user_count);
    }
    SAME_NUM(ctx, "user properties walked vs user_count", n, p->user_count);
    return n;
}

static void same_props(const char *ctx, const iotc_mqtt_props *a, const iotc_mqtt_props *b,
                       bool same_raw)
{
    if (a->present != b->present)
        fail_msg("%s: properties present differ: %#llx vs %#llx", ctx,
                 (unsigned long long)a->present, (unsigned long long)b->present);
    uint64_t has = a->present;
#define P1(id, field)                                                                              \
    if (has & IOTC_PROP_BIT(id))                                                                   \
        SAME_NUM(ctx, #field, a->field, b->field);
#define PB(id, field)                                                                              \
    if (has & IOTC_PROP_BIT(id))                                                                   \
        same_bytes(ctx, #field, a->field, b->field);
    P1(IOTC_PROP_PAYLOAD_FORMAT_INDICATOR, payload_format_indicator)
    P1(IOTC_PROP_REQUEST_PROBLEM_INFORMATION, request_problem_information)
    P1(IOTC_PROP_REQUEST_RESPONSE_INFORMATION, request_response_information)
    P1(IOTC_PROP_MAXIMUM_QOS, maximum_qos)
    P1(IOTC_PROP_RETAIN_AVAILABLE, retain_available)
    P1(IOTC_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, wildcard_subscription_available)
    P1(IOTC_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, subscription_identifier_available)
    P1(IOTC_PROP_SHARED_SUBSCRIPTION_AVAILABLE, shared_subscription_available)
    P1(IOTC_PROP_SERVER_KEEP_ALIVE, server_keep_alive)
    P1(IOTC_PROP_RECEIVE_MAXIMUM, receive_maximum)
    P1(IOTC_PROP_TOPIC_ALIAS_MAXIMUM, topic_alias_maximum)
    P1(IOTC_PROP_TOPIC_ALIAS, topic_alias)
    P1(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL, message_expiry_interval)
    P1(IOTC_PROP_SESSION_EXPIRY_INTERVAL, session_expiry_interval)
    P1(IOTC_PROP_WILL_DELAY_INTERVAL, will_delay_interval)
    P1(IOTC_PROP_MAXIMUM_PACKET_SIZE, maximum_packet_size)
    PB(IOTC_PROP_CONTENT_TYPE, content_type)
    PB(IOTC_PROP_RESPONSE_TOPIC, response_topic)
    PB(IOTC_PROP_CORRELATION_DATA, correlation_data)
    PB(IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER, assigned_client_identifier)
    PB(IOTC_PROP_AUTHENTICATION_METHOD, authentication_method)
    PB(IOTC_PROP_AUTHENTICATION_DATA, authentication_data)
    PB(IOTC_PROP_RESPONSE_INFORMATION, response_information)
    PB(IOTC_PROP_SERVER_REFERENCE, server_reference)
    PB(IOTC_PROP_REASON_STRING, reason_string)
#undef P1
#undef PB
    /* The list properties are not in `present`; the bits must not claim them either. */
    if (has & (IOTC_PROP_BIT(IOTC_PROP_USER_PROPERTY) | IOTC_PROP_BIT(IOTC_PROP_SUBSCRIPTION_IDENTIFIER)))
        fail_msg("%s: present has a bit for a list property: %#llx", ctx, (unsigned long long)has);

    SAME_NUM(ctx, "user_count", a->user_count, b->user_count);
    count_user_props(ctx, a);
    count_user_props(ctx, b);
    size_t pa = 0, pb = 0;
    iotc_mqtt_user_prop ua, ub;
    for (size_t i = 0; i < a->user_count; i++) {
        assert_true(iotc_mqtt_user_prop_next(a, &pa, &ua));
        assert_true(iotc_mqtt_user_prop_next(b, &pb, &ub));
        same_bytes(ctx, "user property key", ua.key, ub.key);
        same_bytes(ctx, "user property value", ua.value, ub.value);
    }

    SAME_NUM(ctx, "sub_id_count", a->sub_id_count, b->sub_id_count);
    pa = pb = 0;
    uint32_t ia, ib;
    size_t n = 0;
    while (iotc_mqtt_sub_id_next(a, &pa, &ia)) {
        if (!iotc_mqtt_sub_id_next(b, &pb, &ib))
            fail_msg("%s: fewer subscription identifiers on one side", ctx);
        SAME_NUM(ctx, "subscription identifier", ia, ib);
        n++;
        if (n > a->sub_id_count)
            break;
    }
    SAME_NUM(ctx, "subscription identifiers walked vs sub_id_count", n, a->sub_id_count);
    if (iotc_mqtt_sub_id_next(b, &pb, &ib))
        fail_msg("%s: more subscription identifiers on one side", ctx);

    if (same_raw)
        same_bytes(ctx, "raw property block", a->raw, b->raw);
}

/* Field by field; `same_raw` also wants the raw list views to hold the same bytes. */
static void same_packet(const char *ctx, const iotc_mqtt_packet *a, const iotc_mqtt_packet *b, bool same_raw)
{
    char sub[600];
    SAME_NUM(ctx, "type", a->type, b->type);
    switch (a->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        SAME_NUM(ctx, "version", x->version, y->version);
        SAME_NUM(ctx, "clean_start", x->clean_start, y->clean_start);
        SAME_NUM(ctx, "keep_alive", x->keep_alive, y->keep_alive);
        same_bytes(ctx, "client_id", x->client_id, y->client_id);
        SAME_NUM(ctx, "will", x->will, y->will);
        if (x->will) {
            SAME_NUM(ctx, "will_qos", x->will_qos, y->will_qos);
            SAME_NUM(ctx, "will_retain", x->will_retain, y->will_retain);
            same_bytes(ctx, "will_topic", x->will_topic, y->will_topic);
            same_bytes(ctx, "will_payload", x->will_payload, y->will_payload);
            snprintf(sub, sizeof sub, "%s: will properties", ctx);
            same_props(sub, &x->will_props, &y->will_props, same_raw);
        }
        SAME_NUM(ctx, "has_username", x->has_username, y->has_username);
        if (x->has_username)
            same_bytes(ctx, "username", x->username, y->username);
        SAME_NUM(ctx, "has_password", x->has_password, y->has_password);
        if (x->has_password)
            same_bytes(ctx, "password", x->password, y->password);
        same_props(ctx, &x->props, &y->props, same_raw);
        break;
    }
    case IOTC_MQTT_CONNACK:
        SAME_NUM(ctx, "session_present", a->u.connack.session_present, b->u.connack.session_present);
        SAME_NUM(ctx, "reason", a->u.connack.reason, b->u.connack.reason);
        same_props(ctx, &a->u.connack.props, &b->u.connack.props, same_raw);
        break;
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        SAME_NUM(ctx, "dup", x->dup, y->dup);
        SAME_NUM(ctx, "qos", x->qos, y->qos);
        SAME_NUM(ctx, "retain", x->retain, y->retain);
        same_bytes(ctx, "topic", x->topic, y->topic);
        if (x->qos)
            SAME_NUM(ctx, "packet_id", x->packet_id, y->packet_id);
        same_props(ctx, &x->props, &y->props, same_raw);
        same_bytes(ctx, "payload", x->payload, y->payload);
        break;
    }
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        SAME_NUM(ctx, "packet_id", a->u.ack.packet_id, b->u.ack.packet_id);
        SAME_NUM(ctx, "reason", a->u.ack.reason, b->u.ack.reason);
        same_props(ctx, &a->u.ack.props, &b->u.ack.props, same_raw);
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *x = &a->u.subscribe, *y = &b->u.subscribe;
        SAME_NUM(ctx, "packet_id", x->packet_id, y->packet_id);
        same_props(ctx, &x->props, &y->props, same_raw);
        SAME_NUM(ctx, "subscription count", x->count, y->count);
        size_t px = 0, py = 0, n = 0;
        iotc_mqtt_sub sx, sy;
        while (iotc_mqtt_sub_next(x, &px, &sx)) {
            if (!iotc_mqtt_sub_next(y, &py, &sy))
                fail_msg("%s: fewer subscriptions on one side", ctx);
            snprintf(sub, sizeof sub, "%s: subscription %zu", ctx, n);
            same_bytes(sub, "filter", sx.filter, sy.filter);
            SAME_NUM(sub, "qos", sx.qos, sy.qos);
            SAME_NUM(sub, "no_local", sx.no_local, sy.no_local);
            SAME_NUM(sub, "retain_as_published", sx.retain_as_published, sy.retain_as_published);
            SAME_NUM(sub, "retain_handling", sx.retain_handling, sy.retain_handling);
            if (++n > x->count)
                break;
        }
        SAME_NUM(ctx, "subscriptions walked vs count", n, x->count);
        if (iotc_mqtt_sub_next(y, &py, &sy))
            fail_msg("%s: more subscriptions on one side", ctx);
        if (same_raw)
            same_bytes(ctx, "raw subscription list", x->raw, y->raw);
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        const iotc_mqtt_suback *x = &a->u.suback, *y = &b->u.suback;
        SAME_NUM(ctx, "packet_id", x->packet_id, y->packet_id);
        same_props(ctx, &x->props, &y->props, same_raw);
        SAME_NUM(ctx, "code count", x->count, y->count);
        if (x->count && memcmp(x->codes, y->codes, x->count) != 0)
            fail_msg("%s: reason codes differ", ctx);
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        const iotc_mqtt_unsubscribe *x = &a->u.unsubscribe, *y = &b->u.unsubscribe;
        SAME_NUM(ctx, "packet_id", x->packet_id, y->packet_id);
        same_props(ctx, &x->props, &y->props, same_raw);
        SAME_NUM(ctx, "filter count", x->count, y->count);
        size_t px = 0, py = 0, n = 0;
        iotc_mqtt_bytes fx_, fy;
        while (iotc_mqtt_unsub_next(x, &px, &fx_)) {
            if (!iotc_mqtt_unsub_next(y, &py, &fy))
                fail_msg("%s: fewer filters on one side", ctx);
            same_bytes(ctx, "filter", fx_, fy);
            if (++n > x->count)
                break;
        }
        SAME_NUM(ctx, "filters walked vs count", n, x->count);
        if (iotc_mqtt_unsub_next(y, &py, &fy))
            fail_msg("%s: more filters on one side", ctx);
        if (same_raw)
            same_bytes(ctx, "raw filter list", x->raw, y->raw);
        break;
    }
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP:
        break;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        SAME_NUM(ctx, "reason", a->u.disconnect.reason, b->u.disconnect.reason);
        same_props(ctx, &a->u.disconnect.props, &b->u.disconnect.props, same_raw);
        break;
    default:
        fail_msg("%s: unknown packet type %u", ctx, (unsigned)a->type);
    }
}

static void pkt_ctx(char *buf, size_t cap, const fixture *fx, const fx_packet *p, const char *what)
{
    snprintf(buf, cap, "%s:%zu (%c %s) %s", fx->name, p->line, p->dir,
             iotc_mqtt_type_name((unsigned)(p->bytes[0] >> 4)), what);
}

/* ---- (a) whole-buffer decode vs. the streaming reader -------------------- */

/* Feeds one direction of the session in chunks of `chunk` bytes. */
static void stream_direction(const fixture *fx, char dir, size_t chunk, uint8_t *userbuf, size_t ucap)
{
    size_t total = 0, expected = 0;
    for (size_t i = 0; i < fx->count; i++)
        if (fx->pk[i].dir == dir) {
            total += fx->pk[i].len;
            expected++;
        }
    if (!total)
        return;
    uint8_t *s = malloc(total);
    const fx_packet **want = malloc(expected * sizeof *want);
    assert_non_null(s);
    assert_non_null(want);
    size_t off = 0, k = 0;
    for (size_t i = 0; i < fx->count; i++)
        if (fx->pk[i].dir == dir) {
            memcpy(s + off, fx->pk[i].bytes, fx->pk[i].len);
            off += fx->pk[i].len;
            want[k++] = &fx->pk[i];
        }

    iotc_mqtt_reader r;
    iotc_mqtt_reader_init(&r, fx->version, 0, userbuf, ucap);
    char ctx[600];
    off = 0;
    k = 0;
    while (off < total) {
        size_t n = total - off < chunk ? total - off : chunk;
        size_t consumed = 0;
        iotc_mqtt_packet p;
        iotc_mqtt_error err;
        memset(&err, 0, sizeof err);
        iotc_mqtt_status st = iotc_mqtt_reader_feed(&r, s + off, n, &consumed, &p, &err);
        if (consumed > n || consumed == 0)
            fail_msg("%s: reader (chunk %zu, %s buffer) consumed %zu of %zu bytes at stream offset %zu",
                     fx->name, chunk, userbuf ? "caller's" : "own", consumed, n, off);
        if (st == IOTC_MQTT_OK) {
            if (k >= expected)
                fail_msg("%s: reader yields more %c packets than the fixture has", fx->name, dir);
            pkt_ctx(ctx, sizeof ctx, fx, want[k], "streamed vs decoded");
            same_packet(ctx, &p, &want[k]->pkt, true);
            k++;
        } else if (st == IOTC_MQTT_NEED_MORE) {
            if (consumed != n)
                fail_msg("%s: NEED_MORE but only %zu of %zu bytes consumed", fx->name, consumed, n);
        } else {
            fail_msg("%s: reader (chunk %zu) failed at stream offset %zu, packet %zu of %c: %s: %s",
                     fx->name, chunk, off, k, dir, iotc_mqtt_status_str(st), err.what ? err.what : "?");
        }
        off += consumed;
    }
    if (k != expected)
        fail_msg("%s: reader (chunk %zu) yielded %zu %c packets, the fixture has %zu", fx->name, chunk,
                 k, dir, expected);
    if (r.failed.status != IOTC_MQTT_OK)
        fail_msg("%s: reader marked failed after a clean stream", fx->name);
    if (r.stream_pos != total)
        fail_msg("%s: reader stream_pos %llu after %zu bytes", fx->name, (unsigned long long)r.stream_pos, total);
    iotc_mqtt_reader_free(&r);
    free(want);
    free(s);
}

static void check_decode_and_stream(const char *name)
{
    fixture *fx = fx_open(name);
    char ctx[600];

    for (size_t i = 0; i < fx->count; i++) {
        const fx_packet *p = &fx->pk[i];
        /* The first client packet is the CONNECT, at the fixture's level. */
        if (i == 0) {
            if (p->dir != 'C' || p->pkt.type != IOTC_MQTT_CONNECT)
                fail_msg("%s: the first packet is not the client's CONNECT", name);
            SAME_NUM(name, "CONNECT version vs the V line", p->pkt.u.connect.version, fx->version);
        }
        pkt_ctx(ctx, sizeof ctx, fx, p, "fixed header");
        uint8_t type = 0, flags = 0;
        uint32_t remaining = 0;
        size_t hl = 0;
        iotc_mqtt_status st = iotc_mqtt_fixed_header(p->bytes, p->len, fx->version, &type, &flags,
                                                     &remaining, &hl, NULL);
        if (st != IOTC_MQTT_OK)
            fail_msg("%s: %s", ctx, iotc_mqtt_status_str(st));
        SAME_NUM(ctx, "type", type, p->bytes[0] >> 4);
        SAME_NUM(ctx, "flags", flags, p->bytes[0] & 0x0F);
        SAME_NUM(ctx, "header length + remaining", hl + remaining, p->len);

        /* Every proper prefix is incomplete, never an error. */
        pkt_ctx(ctx, sizeof ctx, fx, p, "prefix");
        for (size_t cut = 0; cut < p->len; cut++) {
            if (p->len > 600 && cut > 64 && cut < p->len - 64 && cut % 997)
                continue;
            iotc_mqtt_packet q;
            size_t used = 12345;
            st = iotc_mqtt_decode(p->bytes, cut, fx->version, 0, &q, &used, NULL);
            if (st != IOTC_MQTT_NEED_MORE)
                fail_msg("%s: %zu of %zu bytes gives %s, not NEED_MORE", ctx, cut, p->len,
                         iotc_mqtt_status_str(st));
            if (cut < hl ? used != 0 : used != p->len)
                fail_msg("%s: %zu of %zu bytes: *used is %zu", ctx, cut, p->len, used);
        }
        /* The maximum packet size counts the whole packet. */
        pkt_ctx(ctx, sizeof ctx, fx, p, "max_packet_size");
        iotc_mqtt_packet q;
        size_t used = 0;
        st = iotc_mqtt_decode(p->bytes, p->len, fx->version, (uint32_t)p->len, &q, &used, NULL);
        if (st != IOTC_MQTT_OK)
            fail_msg("%s: a limit equal to the size refuses it: %s", ctx, iotc_mqtt_status_str(st));
        same_packet(ctx, &q, &p->pkt, true);
        st = iotc_mqtt_decode(p->bytes, p->len, fx->version, (uint32_t)p->len - 1, &q, &used, NULL);
        if (st != IOTC_MQTT_ERR_TOO_LARGE)
            fail_msg("%s: a limit one byte short gives %s, not TOO_LARGE", ctx, iotc_mqtt_status_str(st));
    }

    static const size_t chunks[] = {1, 2, 3, 7, 64, 100000000};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        stream_direction(fx, 'C', chunks[c], NULL, 0);
        stream_direction(fx, 'S', chunks[c], NULL, 0);
    }
    /* The caller's buffer, big enough for every packet here. */
    size_t biggest = 5;
    for (size_t i = 0; i < fx->count; i++)
        if (fx->pk[i].len > biggest)
            biggest = fx->pk[i].len;
    uint8_t *ub = malloc(biggest);
    assert_non_null(ub);
    stream_direction(fx, 'C', 1, ub, biggest);
    stream_direction(fx, 'S', 1, ub, biggest);
    stream_direction(fx, 'C', 5, ub, biggest);
    stream_direction(fx, 'S', 5, ub, biggest);
    free(ub);
}

/* ---- (c) re-encoding ------------------------------------------------------ */

static size_t distinct_props(const iotc_mqtt_props *p)
{
    size_t n = 0;
    for (uint64_t b = p->present; b; b &= b - 1)
        n++;
    return n + (p->user_count ? 1u : 0u) + (p->sub_id_count ? 1u : 0u);
}

static bool props_empty(const iotc_mqtt_props *p)
{
    return p->present == 0 && p->user_count == 0 && p->sub_id_count == 0;
}

static const iotc_mqtt_props *packet_props(const iotc_mqtt_packet *p)
{
    switch (p->type) {
    case IOTC_MQTT_CONNECT: return &p->u.connect.props;
    case IOTC_MQTT_CONNACK: return &p->u.connack.props;
    case IOTC_MQTT_PUBLISH: return &p->u.publish.props;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP: return &p->u.ack.props;
    case IOTC_MQTT_SUBSCRIBE: return &p->u.subscribe.props;
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: return &p->u.suback.props;
    case IOTC_MQTT_UNSUBSCRIBE: return &p->u.unsubscribe.props;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH: return &p->u.disconnect.props;
    default: return NULL;
    }
}

/* MQTT 5 §2.2.2.2 leaves the order of properties to the sender (only user
 * properties keep their relative order, §3.3.2.3.7). */
static bool order_is_free(const iotc_mqtt_packet *p, iotc_mqtt_version v)
{
    if (v != IOTC_MQTT_V5 && !(p->type == IOTC_MQTT_CONNECT && p->u.connect.version == IOTC_MQTT_V5))
        return false;
    const iotc_mqtt_props *pr = packet_props(p);
    if (pr && distinct_props(pr) >= 2)
        return true;
    return p->type == IOTC_MQTT_CONNECT && p->u.connect.will && distinct_props(&p->u.connect.will_props) >= 2;
}

/* MQTT 5 §3.4.2.1, §3.5.2.1, §3.6.2.1, §3.7.2.1, §3.14.2.1, §3.15.2.1: with no
 * properties the Property Length may be left out, and with reason 0 the reason
 * code too (AUTH and DISCONNECT: the whole variable header). */
static bool short_form_is_free(const iotc_mqtt_packet *p, iotc_mqtt_version v)
{
    if (v != IOTC_MQTT_V5)
        return false;
    switch (p->type) {
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        return props_empty(packet_props(p));
    default:
        return false;
    }
}

/*
 * An independent look at the wire bytes, so that "only the property order
 * differs" is checked on the bytes themselves and not through the decoder
 * under test: find the property blocks of a packet, then require that the
 * bytes outside them are identical and that each block holds the same
 * entries, user properties in the same relative order.
 */
typedef struct {
    size_t start, end; /* [start, end): the Property Length and the properties */
} span;

static size_t wire_vbi(const uint8_t *b, size_t len, size_t *pos)
{
    size_t v = 0, mult = 1;
    for (int i = 0; i < 4; i++) {
        if (*pos >= len)
            fail_msg("wire: truncated Variable Byte Integer");
        uint8_t c = b[(*pos)++];
        v += (size_t)(c & 0x7F) * mult;
        if (!(c & 0x80))
            return v;
        mult *= 128;
    }
    fail_msg("wire: Variable Byte Integer longer than 4 bytes");
    return 0;
}

static size_t wire_u16(const uint8_t *b, size_t len, size_t pos)
{
    if (pos + 2 > len)
        fail_msg("wire: truncated two-byte integer");
    return (size_t)b[pos] << 8 | b[pos + 1];
}

static size_t wire_block(const uint8_t *b, size_t len, size_t pos, span *out)
{
    out->start = pos;
    size_t n = wire_vbi(b, len, &pos);
    if (pos + n > len)
        fail_msg("wire: property block runs past the packet");
    out->end = pos + n;
    return out->end;
}

/* The MQTT 5 property blocks of one packet (at most two: CONNECT and its Will). */
static size_t wire_prop_blocks(const uint8_t *b, size_t len, iotc_mqtt_version session, span out[2])
{
    size_t pos = 1;
    size_t rl = wire_vbi(b, len, &pos);
    size_t hdr = pos;
    if (hdr + rl != len)
        fail_msg("wire: remaining length does not match the packet");
    unsigned type = b[0] >> 4;
    size_t n = 0;
    switch (type) {
    case IOTC_MQTT_CONNECT: {
        pos = hdr + 2 + wire_u16(b, len, hdr);
        if (pos + 4 > len)
            fail_msg("wire: truncated CONNECT");
        unsigned level = b[pos], flags = b[pos + 1];
        pos += 4;
        if (level != 5)
            return 0;
        pos = wire_block(b, len, pos, &out[n++]);
        pos += 2 + wire_u16(b, len, pos);
        if (flags & 0x04)
            wire_block(b, len, pos, &out[n++]);
        return n;
    }
    case IOTC_MQTT_CONNACK:
        if (session == IOTC_MQTT_V5)
            wire_block(b, len, hdr + 2, &out[n++]);
        return n;
    case IOTC_MQTT_PUBLISH:
        if (session == IOTC_MQTT_V5) {
            pos = hdr + 2 + wire_u16(b, len, hdr);
            if (b[0] & 0x06)
                pos += 2;
            wire_block(b, len, pos, &out[n++]);
        }
        return n;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        if (session == IOTC_MQTT_V5 && rl > 3)
            wire_block(b, len, hdr + 3, &out[n++]);
        return n;
    case IOTC_MQTT_SUBSCRIBE:
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBSCRIBE:
    case IOTC_MQTT_UNSUBACK:
        if (session == IOTC_MQTT_V5)
            wire_block(b, len, hdr + 2, &out[n++]);
        return n;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (session == IOTC_MQTT_V5 && rl > 1)
            wire_block(b, len, hdr + 1, &out[n++]);
        return n;
    default:
        return 0;
    }
}

typedef struct {
    const uint8_t *p;
    size_t len;
    uint8_t id;
    bool used;
} wire_entry;

/* Splits a property block into entries by the value types of MQTT 5 §2.2.2.2. */
static size_t wire_entries(const uint8_t *b, size_t len, span s, wire_entry *e, size_t cap)
{
    size_t pos = s.start;
    wire_vbi(b, len, &pos);
    size_t n = 0;
    while (pos < s.end) {
        if (n == cap)
            fail_msg("wire: too many properties");
        size_t at = pos;
        uint8_t id = b[pos++];
        switch (id) {
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
            pos += 1;
            break;
        case 0x13: case 0x21: case 0x22: case 0x23:
            pos += 2;
            break;
        case 0x02: case 0x11: case 0x18: case 0x27:
            pos += 4;
            break;
        case 0x0B:
            wire_vbi(b, s.end, &pos);
            break;
        case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A: case 0x1C: case 0x1F:
            pos += 2 + wire_u16(b, s.end, pos);
            break;
        case 0x26:
            pos += 2 + wire_u16(b, s.end, pos);
            pos += 2 + wire_u16(b, s.end, pos);
            break;
        default:
            fail_msg("wire: unknown property identifier %#x", id);
        }
        if (pos > s.end)
            fail_msg("wire: property %#x runs past its block", id);
        e[n].p = b + at;
        e[n].len = pos - at;
        e[n].id = id;
        e[n].used = false;
        n++;
    }
    return n;
}

/* NULL when b is a with its properties reordered as the spec allows, else why not. */
static const char *only_property_order_differs(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                                               iotc_mqtt_version session)
{
    if (alen != blen)
        return "sizes differ";
    span sa[2], sb[2];
    size_t na = wire_prop_blocks(a, alen, session, sa);
    size_t nb = wire_prop_blocks(b, blen, session, sb);
    if (na != nb)
        return "different number of property blocks";
    size_t pos = 0;
    for (size_t k = 0; k <= na; k++) {
        size_t end = k < na ? sa[k].start : alen;
        if (k < na && (sa[k].start != sb[k].start || sa[k].end != sb[k].end))
            return "property blocks at different places";
        if (memcmp(a + pos, b + pos, end - pos) != 0)
            return "bytes outside the property blocks differ";
        if (k == na)
            break;
        wire_entry ea[64], eb[64];
        size_t ca = wire_entries(a, alen, sa[k], ea, 64);
        size_t cb = wire_entries(b, blen, sb[k], eb, 64);
        if (ca != cb)
            return "different number of properties";
        /* User properties keep their relative order (§3.3.2.3.7). */
        size_t ib = 0;
        for (size_t i = 0; i < ca; i++) {
            if (ea[i].id != 0x26)
                continue;
            while (ib < cb && eb[ib].id != 0x26)
                ib++;
            if (ib == cb || ea[i].len != eb[ib].len || memcmp(ea[i].p, eb[ib].p, ea[i].len) != 0)
                return "user properties differ or changed order";
            eb[ib++].used = true;
        }
        for (size_t i = 0; i < ca; i++) {
            if (ea[i].id == 0x26)
                continue;
            bool found = false;
            for (size_t j = 0; j < cb && !found; j++)
                if (!eb[j].used && eb[j].len == ea[i].len && memcmp(eb[j].p, ea[i].p, ea[i].len) == 0)
                    found = eb[j].used = true;
            if (!found)
                return "a property differs";
        }
        pos = sa[k].end;
    }
    return NULL;
}

/* Arrays for the list fields, so that the encoder's array path is exercised too. */
typedef struct {
    iotc_mqtt_user_prop *user[2];
    uint32_t *ids[2];
    iotc_mqtt_sub *subs;
    iotc_mqtt_bytes *filters;
} list_arrays;

static void props_to_arrays(iotc_mqtt_props *p, iotc_mqtt_user_prop **ua, uint32_t **ia)
{
    size_t pos = 0, n = 0;
    iotc_mqtt_user_prop up;
    *ua = calloc(p->user_count + 1, sizeof **ua);
    *ia = calloc(p->sub_id_count + 1, sizeof **ia);
    assert_non_null(*ua);
    assert_non_null(*ia);
    while (n < p->user_count && iotc_mqtt_user_prop_next(p, &pos, &up))
        (*ua)[n++] = up;
    assert_int_equal(n, p->user_count);
    pos = 0;
    n = 0;
    uint32_t id;
    while (n < p->sub_id_count && iotc_mqtt_sub_id_next(p, &pos, &id))
        (*ia)[n++] = id;
    assert_int_equal(n, p->sub_id_count);
    if (p->user_count)
        p->user = *ua;
    if (p->sub_id_count)
        p->sub_ids = *ia;
    p->raw.data = NULL;
    p->raw.len = 0;
}

static void to_arrays(iotc_mqtt_packet *p, list_arrays *la)
{
    memset(la, 0, sizeof *la);
    iotc_mqtt_props *pr = (iotc_mqtt_props *)packet_props(p);
    if (pr)
        props_to_arrays(pr, &la->user[0], &la->ids[0]);
    if (p->type == IOTC_MQTT_CONNECT && p->u.connect.will)
        props_to_arrays(&p->u.connect.will_props, &la->user[1], &la->ids[1]);
    if (p->type == IOTC_MQTT_SUBSCRIBE) {
        iotc_mqtt_subscribe *s = &p->u.subscribe;
        la->subs = calloc(s->count + 1, sizeof *la->subs);
        assert_non_null(la->subs);
        size_t pos = 0, n = 0;
        while (n < s->count && iotc_mqtt_sub_next(s, &pos, &la->subs[n]))
            n++;
        assert_int_equal(n, s->count);
        s->subs = la->subs;
        s->raw.data = NULL;
        s->raw.len = 0;
    }
    if (p->type == IOTC_MQTT_UNSUBSCRIBE) {
        iotc_mqtt_unsubscribe *u = &p->u.unsubscribe;
        la->filters = calloc(u->count + 1, sizeof *la->filters);
        assert_non_null(la->filters);
        size_t pos = 0, n = 0;
        while (n < u->count && iotc_mqtt_unsub_next(u, &pos, &la->filters[n]))
            n++;
        assert_int_equal(n, u->count);
        u->filters = la->filters;
        u->raw.data = NULL;
        u->raw.len = 0;
    }
}

static void free_arrays(list_arrays *la)
{
    for (int i = 0; i < 2; i++) {
        free(la->user[i]);
        free(la->ids[i]);
    }
    free(la->subs);
    free(la->filters);
}

static size_t g_exact, g_reordered, g_short_form;

static void encode_and_compare(const fixture *fx, const fx_packet *fp, const iotc_mqtt_packet *in,
                               const char *path)
{
    char ctx[700];
    char base[600];
    pkt_ctx(base, sizeof base, fx, fp, path);
    iotc_mqtt_error err;
    memset(&err, 0, sizeof err);
    size_t size = 0;
    iotc_mqtt_status st = iotc_mqtt_encoded_size(in, fx->version, &size, &err);
    if (st != IOTC_MQTT_OK)
        fail_msg("%s: encoded_size: %s: %s", base, iotc_mqtt_status_str(st), err.what ? err.what : "?");
    uint8_t *out = malloc(size + 16);
    assert_non_null(out);
    size_t written = 0;
    st = iotc_mqtt_encode(in, fx->version, out, size, &written, &err);
    if (st != IOTC_MQTT_OK)
        fail_msg("%s: encode: %s: %s", base, iotc_mqtt_status_str(st), err.what ? err.what : "?");
    if (written != size)
        fail_msg("%s: encode wrote %zu bytes, encoded_size said %zu", base, written, size);

    bool exact = written == fp->len && memcmp(out, fp->bytes, written) == 0;
    if (exact)
        g_exact++;
    else if (short_form_is_free(&fp->pkt, fx->version))
        g_short_form++;
    else
        g_reordered++;
    if (!exact) {
        bool order = order_is_free(&fp->pkt, fx->version);
        bool shortf = short_form_is_free(&fp->pkt, fx->version);
        if (!order && !shortf) {
            print_hex("captured", fp->bytes, fp->len);
            print_hex("encoded ", out, written);
            fail_msg("%s: re-encoding differs from the peer's bytes where the spec leaves no choice", base);
        }
        const char *why = NULL;
        if (order && !shortf &&
            (why = only_property_order_differs(fp->bytes, fp->len, out, written,
                                               fp->pkt.type == IOTC_MQTT_CONNECT ? fp->pkt.u.connect.version
                                                                                 : fx->version)) != NULL) {
            print_hex("captured", fp->bytes, fp->len);
            print_hex("encoded ", out, written);
            fail_msg("%s: only the property order may differ here, but %s", base, why);
        }
    }

    /* Whatever the bytes, decoding our encoding gives the same packet. */
    iotc_mqtt_packet back;
    size_t used = 0;
    st = iotc_mqtt_decode(out, written, fx->version, 0, &back, &used, &err);
    if (st != IOTC_MQTT_OK) {
        print_hex("encoded ", out, written);
        fail_msg("%s: our encoding does not decode: %s: %s at %zu", base, iotc_mqtt_status_str(st),
                 err.what ? err.what : "?", err.offset);
    }
    SAME_NUM(base, "decoded size of our encoding", used, written);
    snprintf(ctx, sizeof ctx, "%s, decoded again", base);
    same_packet(ctx, &back, &fp->pkt, exact);

    /* Too small a buffer is refused and says how much is needed. */
    if (size > 0) {
        size_t need = 0;
        st = iotc_mqtt_encode(in, fx->version, out, size - 1, &need, &err);
        if (st != IOTC_MQTT_ERR_BUFFER)
            fail_msg("%s: encoding into %zu bytes gives %s, not ERR_BUFFER", base, size - 1,
                     iotc_mqtt_status_str(st));
        SAME_NUM(base, "size needed after ERR_BUFFER", need, size);
    }
    free(out);
}

static void check_reencode(const char *name)
{
    fixture *fx = fx_open(name);
    for (size_t i = 0; i < fx->count; i++) {
        const fx_packet *fp = &fx->pk[i];
        encode_and_compare(fx, fp, &fp->pkt, "re-encoded from the decoded lists");
        iotc_mqtt_packet copy = fp->pkt;
        list_arrays la;
        to_arrays(&copy, &la);
        encode_and_compare(fx, fp, &copy, "re-encoded from arrays");
        free_arrays(&la);
    }
}

/* ---- the generic tests, over every fixture in the directory --------------- */

static void test_fixture_directory_has_fixtures(void **state)
{
    (void)state;
    size_t n = 0;
    char **names = list_fixtures(&n);
    free_names(names, n);
    if (n == 0)
        fail_msg("no *.mqtt fixtures in %s", fixtures_dir());
}

static void test_every_fixture_decodes_whole_and_streamed(void **state)
{
    (void)state;
    size_t n = 0;
    char **names = list_fixtures(&n);
    if (n == 0) {
        free_names(names, n);
        fail_msg("no *.mqtt fixtures in %s", fixtures_dir());
    }
    for (size_t i = 0; i < n; i++)
        check_decode_and_stream(names[i]);
    free_names(names, n);
}

static void test_every_fixture_reencodes(void **state)
{
    (void)state;
    size_t n = 0;
    char **names = list_fixtures(&n);
    if (n == 0) {
        free_names(names, n);
        fail_msg("no *.mqtt fixtures in %s", fixtures_dir());
    }
    g_exact = g_reordered = g_short_form = 0;
    for (size_t i = 0; i < n; i++)
        check_reencode(names[i]);
    free_names(names, n);
    print_message("re-encodings (two per packet): %zu byte-exact, %zu with properties in another "
                  "order, %zu in another short form (both allowed; fields checked)\n",
                  g_exact, g_reordered, g_short_form);
}

/* ---- helpers for the expectations ---------------------------------------- */

/* The n-th (from 0) packet of `type` in direction `dir`. */
static const iotc_mqtt_packet *nth(const fixture *fx, char dir, iotc_mqtt_type type, size_t n)
{
    size_t seen = 0;
    for (size_t i = 0; i < fx->count; i++)
        if (fx->pk[i].dir == dir && fx->pk[i].pkt.type == type && seen++ == n)
            return &fx->pk[i].pkt;
    fail_msg("%s: no %c %s number %zu (from 0)", fx->name, dir, iotc_mqtt_type_name(type), n);
    return NULL;
}

static size_t count_type(const fixture *fx, char dir, iotc_mqtt_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < fx->count; i++)
        if (fx->pk[i].dir == dir && fx->pk[i].pkt.type == type)
            n++;
    return n;
}

/* The packet types in one direction, in order, ending with 0. */
static void expect_sequence(const fixture *fx, int dir, ...)
{
    va_list ap;
    va_start(ap, dir);
    size_t k = 0;
    for (size_t i = 0; i < fx->count; i++) {
        if (fx->pk[i].dir != dir)
            continue;
        int want = va_arg(ap, int);
        if (want == 0)
            fail_msg("%s: more %c packets than expected (%s at line %zu)", fx->name, dir,
                     iotc_mqtt_type_name((unsigned)fx->pk[i].pkt.type), fx->pk[i].line);
        if ((int)fx->pk[i].pkt.type != want)
            fail_msg("%s: %c packet %zu is %s, expected %s", fx->name, dir, k,
                     iotc_mqtt_type_name((unsigned)fx->pk[i].pkt.type), iotc_mqtt_type_name((unsigned)want));
        k++;
    }
    int last = va_arg(ap, int);
    va_end(ap);
    if (last != 0)
        fail_msg("%s: fewer %c packets than expected (%zu; next wanted %s)", fx->name, dir, k,
                 iotc_mqtt_type_name((unsigned)last));
}

static void expect_bin(const char *what, iotc_mqtt_bytes b, const void *data, size_t len)
{
    if (b.len != len || (len && memcmp(b.data, data, len) != 0))
        fail_msg("%s: got '%.*s' (%zu bytes), expected '%.*s' (%zu bytes)", what,
                 (int)(b.len > 80 ? 80 : b.len), b.len ? (const char *)b.data : "", b.len,
                 (int)(len > 80 ? 80 : len), (const char *)data, len);
}

static void expect_str(const char *what, iotc_mqtt_bytes b, const char *s)
{
    expect_bin(what, b, s, strlen(s));
}

#define EXPECT_EQ(what, got, want)                                                                 \
    do {                                                                                           \
        unsigned long long g_ = (unsigned long long)(got), w_ = (unsigned long long)(want);        \
        if (g_ != w_)                                                                              \
            fail_msg("%s: got %llu (%#llx), expected %llu (%#llx)", what, g_, g_, w_, w_);         \
    } while (0)

#define B(id) IOTC_PROP_BIT(IOTC_PROP_##id)

static void expect_present(const char *what, const iotc_mqtt_props *p, uint64_t bits)
{
    if (p->present != bits)
        fail_msg("%s: properties present %#llx, expected %#llx", what, (unsigned long long)p->present,
                 (unsigned long long)bits);
}

/* User properties in order: n pairs of (key, value) strings. */
static void expect_user_props(const char *what, const iotc_mqtt_props *p, size_t n, ...)
{
    EXPECT_EQ(what, p->user_count, n);
    va_list ap;
    va_start(ap, n);
    size_t pos = 0;
    iotc_mqtt_user_prop up;
    for (size_t i = 0; i < n; i++) {
        const char *k = va_arg(ap, const char *);
        const char *v = va_arg(ap, const char *);
        if (!iotc_mqtt_user_prop_next(p, &pos, &up))
            fail_msg("%s: user property %zu missing", what, i);
        expect_str(what, up.key, k);
        expect_str(what, up.value, v);
    }
    va_end(ap);
    if (iotc_mqtt_user_prop_next(p, &pos, &up))
        fail_msg("%s: more than %zu user properties", what, n);
}

static void expect_sub_ids(const char *what, const iotc_mqtt_props *p, size_t n, ...)
{
    EXPECT_EQ(what, p->sub_id_count, n);
    va_list ap;
    va_start(ap, n);
    size_t pos = 0;
    uint32_t id;
    for (size_t i = 0; i < n; i++) {
        uint32_t want = va_arg(ap, uint32_t);
        if (!iotc_mqtt_sub_id_next(p, &pos, &id))
            fail_msg("%s: subscription identifier %zu missing", what, i);
        EXPECT_EQ(what, id, want);
    }
    va_end(ap);
    if (iotc_mqtt_sub_id_next(p, &pos, &id))
        fail_msg("%s: more than %zu subscription identifiers", what, n);
}

static void expect_no_props(const char *what, const iotc_mqtt_props *p)
{
    expect_present(what, p, 0);
    EXPECT_EQ(what, p->user_count, 0);
    EXPECT_EQ(what, p->sub_id_count, 0);
}

typedef struct {
    const char *filter;
    uint8_t qos;
    bool no_local, rap;
    uint8_t rh;
} want_sub;

static void expect_subs(const char *what, const iotc_mqtt_subscribe *s, const want_sub *w, size_t n)
{
    EXPECT_EQ(what, s->count, n);
    size_t pos = 0;
    iotc_mqtt_sub sub;
    for (size_t i = 0; i < n; i++) {
        if (!iotc_mqtt_sub_next(s, &pos, &sub))
            fail_msg("%s: subscription %zu missing", what, i);
        expect_str(what, sub.filter, w[i].filter);
        EXPECT_EQ(w[i].filter, sub.qos, w[i].qos);
        EXPECT_EQ(w[i].filter, sub.no_local, w[i].no_local);
        EXPECT_EQ(w[i].filter, sub.retain_as_published, w[i].rap);
        EXPECT_EQ(w[i].filter, sub.retain_handling, w[i].rh);
    }
    if (iotc_mqtt_sub_next(s, &pos, &sub))
        fail_msg("%s: more than %zu subscriptions", what, n);
}

static void expect_unsubs(const char *what, const iotc_mqtt_unsubscribe *u, size_t n, ...)
{
    EXPECT_EQ(what, u->count, n);
    va_list ap;
    va_start(ap, n);
    size_t pos = 0;
    iotc_mqtt_bytes f;
    for (size_t i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        if (!iotc_mqtt_unsub_next(u, &pos, &f))
            fail_msg("%s: filter %zu missing", what, i);
        expect_str(what, f, want);
    }
    va_end(ap);
    if (iotc_mqtt_unsub_next(u, &pos, &f))
        fail_msg("%s: more than %zu filters", what, n);
}

static void expect_codes(const char *what, const iotc_mqtt_suback *s, const uint8_t *codes, size_t n)
{
    EXPECT_EQ(what, s->count, n);
    for (size_t i = 0; i < n; i++)
        EXPECT_EQ(what, s->codes[i], codes[i]);
}

/* CONNECT fields every session checks. */
static const iotc_mqtt_connect *expect_connect(const fixture *fx, iotc_mqtt_version v, const char *id,
                                               bool clean, uint16_t keep_alive)
{
    const iotc_mqtt_connect *c = &nth(fx, 'C', IOTC_MQTT_CONNECT, 0)->u.connect;
    EXPECT_EQ("CONNECT version", c->version, v);
    expect_str("CONNECT client id", c->client_id, id);
    EXPECT_EQ("CONNECT clean start", c->clean_start, clean);
    EXPECT_EQ("CONNECT keep alive", c->keep_alive, keep_alive);
    return c;
}

static void expect_no_will_no_auth(const iotc_mqtt_connect *c)
{
    EXPECT_EQ("CONNECT will", c->will, false);
    EXPECT_EQ("CONNECT has username", c->has_username, false);
    EXPECT_EQ("CONNECT has password", c->has_password, false);
}

static void expect_connack(const fixture *fx, bool session_present, uint8_t reason)
{
    const iotc_mqtt_connack *a = &nth(fx, 'S', IOTC_MQTT_CONNACK, 0)->u.connack;
    EXPECT_EQ("CONNACK session present", a->session_present, session_present);
    EXPECT_EQ("CONNACK reason", a->reason, reason);
    if (fx->version == IOTC_MQTT_V311) {
        expect_no_props("CONNACK (3.1.1)", &a->props);
    } else {
        /* mosquitto 2.0's defaults: max_topic_alias 10, max_inflight_messages 20. */
        uint64_t bits = B(TOPIC_ALIAS_MAXIMUM) | B(RECEIVE_MAXIMUM);
        if (a->props.present & B(ASSIGNED_CLIENT_IDENTIFIER))
            bits |= B(ASSIGNED_CLIENT_IDENTIFIER);
        expect_present("CONNACK properties", &a->props, bits);
        EXPECT_EQ("CONNACK topic alias maximum", a->props.topic_alias_maximum, 10);
        EXPECT_EQ("CONNACK receive maximum", a->props.receive_maximum, 20);
        EXPECT_EQ("CONNACK user properties", a->props.user_count, 0);
    }
}

static const iotc_mqtt_publish *expect_publish(const iotc_mqtt_packet *pp, const char *topic,
                                               const char *payload, uint8_t qos, bool retain,
                                               uint16_t packet_id)
{
    const iotc_mqtt_publish *p = &pp->u.publish;
    expect_str("PUBLISH topic", p->topic, topic);
    if (payload)
        expect_str("PUBLISH payload", p->payload, payload);
    EXPECT_EQ("PUBLISH qos", p->qos, qos);
    EXPECT_EQ("PUBLISH retain", p->retain, retain);
    EXPECT_EQ("PUBLISH dup", p->dup, false);
    if (qos)
        EXPECT_EQ("PUBLISH packet id", p->packet_id, packet_id);
    return p;
}

static void expect_ack(const iotc_mqtt_packet *pp, uint16_t packet_id, uint8_t reason)
{
    EXPECT_EQ("ack packet id", pp->u.ack.packet_id, packet_id);
    EXPECT_EQ("ack reason", pp->u.ack.reason, reason);
    expect_no_props("ack properties", &pp->u.ack.props);
}

static void expect_qos1_flow(const fixture *fx, char pub_dir, uint16_t id, uint8_t reason)
{
    char ack_dir = pub_dir == 'C' ? 'S' : 'C';
    EXPECT_EQ("PUBLISH qos", nth(fx, pub_dir, IOTC_MQTT_PUBLISH, 0)->u.publish.qos, 1);
    expect_ack(nth(fx, ack_dir, IOTC_MQTT_PUBACK, 0), id, reason);
}

static void expect_qos2_flow(const fixture *fx, char pub_dir, uint16_t id)
{
    char other = pub_dir == 'C' ? 'S' : 'C';
    expect_ack(nth(fx, other, IOTC_MQTT_PUBREC, 0), id, 0);
    expect_ack(nth(fx, pub_dir, IOTC_MQTT_PUBREL, 0), id, 0);
    expect_ack(nth(fx, other, IOTC_MQTT_PUBCOMP, 0), id, 0);
}

static void expect_plain_disconnect(const fixture *fx)
{
    const iotc_mqtt_packet *d = nth(fx, 'C', IOTC_MQTT_DISCONNECT, 0);
    EXPECT_EQ("DISCONNECT reason", d->u.disconnect.reason, 0);
    expect_no_props("DISCONNECT properties", &d->u.disconnect.props);
}

/* mosquitto_pub's CONNECT in MQTT 5 always carries Receive Maximum 20 (its -M default). */
static void expect_mosquitto_pub_v5_connect(const iotc_mqtt_connect *c)
{
    expect_present("CONNECT properties", &c->props, B(RECEIVE_MAXIMUM));
    EXPECT_EQ("CONNECT receive maximum", c->props.receive_maximum, 20);
    EXPECT_EQ("CONNECT user properties", c->props.user_count, 0);
}

/* ---- (b) expectations, one per captured session --------------------------- */

enum { C_ = 'C', S_ = 'S' };
#define CONNECT IOTC_MQTT_CONNECT
#define CONNACK IOTC_MQTT_CONNACK
#define PUBLISH IOTC_MQTT_PUBLISH
#define PUBACK IOTC_MQTT_PUBACK
#define PUBREC IOTC_MQTT_PUBREC
#define PUBREL IOTC_MQTT_PUBREL
#define PUBCOMP IOTC_MQTT_PUBCOMP
#define SUBSCRIBE IOTC_MQTT_SUBSCRIBE
#define SUBACK IOTC_MQTT_SUBACK
#define UNSUBSCRIBE IOTC_MQTT_UNSUBSCRIBE
#define UNSUBACK IOTC_MQTT_UNSUBACK
#define PINGREQ IOTC_MQTT_PINGREQ
#define PINGRESP IOTC_MQTT_PINGRESP
#define DISCONNECT IOTC_MQTT_DISCONNECT

static void pub_v311_simple(const fixture *fx, const char *id, const char *topic, const char *payload,
                            uint8_t qos, bool retain)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V311, id, true, 60);
    expect_no_will_no_auth(c);
    expect_no_props("CONNECT (3.1.1)", &c->props);
    expect_connack(fx, false, IOTC_V3_CONNACK_ACCEPTED);
    expect_publish(nth(fx, 'C', PUBLISH, 0), topic, payload, qos, retain, 1);
    if (qos == 0) {
        expect_sequence(fx, C_, CONNECT, PUBLISH, DISCONNECT, 0);
        expect_sequence(fx, S_, CONNACK, 0);
    } else if (qos == 1) {
        expect_sequence(fx, C_, CONNECT, PUBLISH, DISCONNECT, 0);
        expect_sequence(fx, S_, CONNACK, PUBACK, 0);
        expect_qos1_flow(fx, 'C', 1, 0);
    } else {
        expect_sequence(fx, C_, CONNECT, PUBLISH, PUBREL, DISCONNECT, 0);
        expect_sequence(fx, S_, CONNACK, PUBREC, PUBCOMP, 0);
        expect_qos2_flow(fx, 'C', 1);
    }
}

static void x_pub_v311_qos0(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-qos0", "peers/pub/v311/qos0", "hello qos0", 0, false);
}

static void x_pub_v311_qos0_retain(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-qos0r", "peers/pub/v311/retained0", "retained qos0", 0, true);
}

static void x_pub_v311_qos1_retain(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-qos1", "peers/pub/v311/retained1", "retained qos1", 1, true);
}

static void x_pub_v311_qos2_retain(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-qos2", "peers/pub/v311/retained2", "retained qos2", 2, true);
}

static void x_pub_v311_empty(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-empty", "peers/pub/v311/empty", "", 1, false);
}

static void x_pub_v311_utf8(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-\xc3\xbctf8",
                    "peers/pub/v311/\xc3\xbcn\xc3\xaf/\xe2\x82\xac/\xf0\x9d\x84\x9e",
                    "gr\xc3\xbc\xc3\x9f" "e \xf0\x9d\x84\x9e", 1, false);
}

static void x_pub_v311_binary(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-binary", "peers/pub/v311/binary", NULL, 1, false);
    uint8_t want[256];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (uint8_t)i;
    expect_bin("PUBLISH payload", nth(fx, 'C', PUBLISH, 0)->u.publish.payload, want, sizeof want);
}

static void x_pub_v311_big(const fixture *fx)
{
    pub_v311_simple(fx, "iotc-pub-v311-big", "peers/pub/v311/big", NULL, 2, false);
    static uint8_t want[20000];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (uint8_t)((i * 7 + 3) & 0xFF);
    expect_bin("PUBLISH payload", nth(fx, 'C', PUBLISH, 0)->u.publish.payload, want, sizeof want);
}

static void x_pub_v311_will(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V311, "iotc-pub-v311-will", true, 60);
    EXPECT_EQ("will", c->will, true);
    EXPECT_EQ("will qos", c->will_qos, 1);
    EXPECT_EQ("will retain", c->will_retain, true);
    expect_str("will topic", c->will_topic, "peers/will/v311");
    expect_str("will payload", c->will_payload, "pub v311 died");
    expect_no_props("will properties (3.1.1)", &c->will_props);
    EXPECT_EQ("has username", c->has_username, false);
    EXPECT_EQ("has password", c->has_password, false);
    expect_connack(fx, false, 0);
    expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v311/will", "with a will", 0, false, 0);
    expect_sequence(fx, C_, CONNECT, PUBLISH, DISCONNECT, 0);
}

static void x_pub_v311_auth(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V311, "iotc-pub-v311-auth", true, 60);
    EXPECT_EQ("will", c->will, false);
    EXPECT_EQ("has username", c->has_username, true);
    expect_str("username", c->username, "alice");
    EXPECT_EQ("has password", c->has_password, true);
    expect_str("password", c->password, "s3cr3t pw");
    expect_connack(fx, false, 0);
    expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v311/auth", "authenticated", 1, false, 1);
    expect_qos1_flow(fx, 'C', 1, 0);
}

static void x_pub_v311_keepalive(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V311, "iotc-pub-v311-keep", false, 17);
    expect_no_will_no_auth(c);
    expect_connack(fx, false, 0);
    expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v311/keepalive", "keepalive 17, persistent", 0,
                   false, 0);
}

static void x_sub_v311_filters(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311", true, 60);
    expect_no_will_no_auth(c);
    expect_connack(fx, false, 0);
    const iotc_mqtt_subscribe *s = &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe;
    EXPECT_EQ("SUBSCRIBE packet id", s->packet_id, 1);
    static const want_sub w[] = {{"peers/sub/v311/+/temp", 1, false, false, 0},
                                 {"peers/sub/v311/alarm/#", 1, false, false, 0},
                                 {"peers/sub/v311/exact", 1, false, false, 0}};
    expect_subs("SUBSCRIBE", s, w, 3);
    const iotc_mqtt_suback *a = &nth(fx, 'S', SUBACK, 0)->u.suback;
    EXPECT_EQ("SUBACK packet id", a->packet_id, 1);
    expect_codes("SUBACK", a, (const uint8_t[]){1, 1, 1}, 3);
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v311/room1/temp", "21.5", 1, false, 1);
    expect_ack(nth(fx, 'C', PUBACK, 0), 1, 0);
    expect_sequence(fx, C_, CONNECT, SUBSCRIBE, PUBACK, DISCONNECT, 0);
    expect_sequence(fx, S_, CONNACK, SUBACK, PUBLISH, 0);
}

static void x_sub_v311_qos2(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311-qos2", true, 60);
    static const want_sub w[] = {{"peers/sub/v311/q2/#", 2, false, false, 0}};
    expect_subs("SUBSCRIBE", &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe, w, 1);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){2}, 1);
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v311/q2/x", "exactly once", 2, false, 1);
    expect_qos2_flow(fx, 'S', 1);
    expect_sequence(fx, C_, CONNECT, SUBSCRIBE, PUBREC, PUBCOMP, DISCONNECT, 0);
    expect_sequence(fx, S_, CONNACK, SUBACK, PUBLISH, PUBREL, 0);
}

static void x_sub_v311_downgrade(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311-q0", true, 60);
    static const want_sub w[] = {{"peers/sub/v311/q0/#", 0, false, false, 0}};
    expect_subs("SUBSCRIBE", &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe, w, 1);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){0}, 1);
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v311/q0/x", "sent at qos2, granted 0", 0, false, 0);
    expect_sequence(fx, C_, CONNECT, SUBSCRIBE, DISCONNECT, 0);
}

static void x_sub_v311_retained(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311-ret", true, 60);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){1}, 1);
    /* A retained message sent because of a new subscription has RETAIN set (§3.3.1.3). */
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v311/retained", "kept", 1, true, 1);
    expect_ack(nth(fx, 'C', PUBACK, 0), 1, 0);
}

static void x_sub_v311_persistent(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311-persist", false, 60);
    expect_connack(fx, true, 0);
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v311/persist/queued", "queued while away", 1,
                   false, 1);
    expect_ack(nth(fx, 'C', PUBACK, 0), 1, 0);
    static const want_sub w[] = {{"peers/sub/v311/persist/#", 1, false, false, 0}};
    expect_subs("SUBSCRIBE", &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe, w, 1);
}

static void x_sub_v311_unsubscribe(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311-unsub", false, 60);
    expect_connack(fx, true, 0);
    const iotc_mqtt_unsubscribe *u1 = &nth(fx, 'C', UNSUBSCRIBE, 0)->u.unsubscribe;
    const iotc_mqtt_unsubscribe *u2 = &nth(fx, 'C', UNSUBSCRIBE, 1)->u.unsubscribe;
    EXPECT_EQ("UNSUBSCRIBE packet id", u1->packet_id, 2);
    EXPECT_EQ("UNSUBSCRIBE packet id", u2->packet_id, 3);
    expect_unsubs("UNSUBSCRIBE", u1, 1, "peers/sub/v311/unsub/#");
    expect_unsubs("UNSUBSCRIBE", u2, 1, "peers/sub/v311/unsub/+/x");
    const iotc_mqtt_suback *a1 = &nth(fx, 'S', UNSUBACK, 0)->u.suback;
    const iotc_mqtt_suback *a2 = &nth(fx, 'S', UNSUBACK, 1)->u.suback;
    EXPECT_EQ("UNSUBACK packet id", a1->packet_id, 2);
    EXPECT_EQ("UNSUBACK packet id", a2->packet_id, 3);
    EXPECT_EQ("3.1.1 UNSUBACK has no codes", a1->count, 0);
    EXPECT_EQ("3.1.1 UNSUBACK has no codes", a2->count, 0);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){0}, 1);
}

static void x_sub_v311_ping(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V311, "iotc-sub-v311-ping", true, 5);
    if (count_type(fx, 'C', PINGREQ) < 1 || count_type(fx, 'S', PINGRESP) != count_type(fx, 'C', PINGREQ))
        fail_msg("%s: expected PINGREQs each answered by a PINGRESP", fx->name);
    expect_plain_disconnect(fx);
}

static void x_pub_v5_qos0(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-qos0", true, 60);
    expect_no_will_no_auth(c);
    expect_mosquitto_pub_v5_connect(c);
    expect_connack(fx, false, IOTC_RC_SUCCESS);
    const iotc_mqtt_publish *p = expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v5/qos0", "hello v5", 0,
                                                false, 0);
    expect_no_props("PUBLISH properties", &p->props);
    expect_plain_disconnect(fx);
    expect_sequence(fx, C_, CONNECT, PUBLISH, DISCONNECT, 0);
    expect_sequence(fx, S_, CONNACK, 0);
}

static void x_pub_v5_qos1_props(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-props", true, 60);
    expect_no_will_no_auth(c);
    expect_present("CONNECT properties", &c->props, B(SESSION_EXPIRY_INTERVAL) | B(RECEIVE_MAXIMUM));
    EXPECT_EQ("session expiry", c->props.session_expiry_interval, 3600);
    EXPECT_EQ("receive maximum", c->props.receive_maximum, 20);
    expect_user_props("CONNECT user properties", &c->props, 2, "k", "v", "k", "v2");
    expect_connack(fx, false, 0);
    const iotc_mqtt_publish *p = expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v5/props",
                                                "with properties", 1, false, 1);
    expect_present("PUBLISH properties", &p->props,
                   B(MESSAGE_EXPIRY_INTERVAL) | B(CONTENT_TYPE) | B(RESPONSE_TOPIC) | B(CORRELATION_DATA) |
                       B(PAYLOAD_FORMAT_INDICATOR));
    EXPECT_EQ("message expiry", p->props.message_expiry_interval, 30);
    expect_str("content type", p->props.content_type, "text/plain");
    expect_str("response topic", p->props.response_topic, "r/t");
    expect_str("correlation data", p->props.correlation_data, "corr-0001");
    EXPECT_EQ("payload format", p->props.payload_format_indicator, 1);
    expect_user_props("PUBLISH user properties", &p->props, 2, "a", "b", "c", "d");
    EXPECT_EQ("PUBLISH subscription ids", p->props.sub_id_count, 0);
    /* mosquitto answers 0x10 No matching subscribers (MQTT 5 §3.4.2.1). */
    expect_ack(nth(fx, 'S', PUBACK, 0), 1, IOTC_RC_NO_MATCHING_SUBSCRIBERS);
    expect_plain_disconnect(fx);
}

static void x_pub_v5_qos2_retain(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-qos2", true, 60);
    expect_mosquitto_pub_v5_connect(c);
    expect_connack(fx, false, 0);
    const iotc_mqtt_publish *p = expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v5/retained2",
                                                "retained v5 qos2", 2, true, 1);
    expect_no_props("PUBLISH properties", &p->props);
    expect_qos2_flow(fx, 'C', 1);
    expect_sequence(fx, C_, CONNECT, PUBLISH, PUBREL, DISCONNECT, 0);
    expect_sequence(fx, S_, CONNACK, PUBREC, PUBCOMP, 0);
}

static void x_pub_v5_will(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-will", true, 60);
    expect_mosquitto_pub_v5_connect(c);
    EXPECT_EQ("will", c->will, true);
    EXPECT_EQ("will qos", c->will_qos, 2);
    EXPECT_EQ("will retain", c->will_retain, false);
    expect_str("will topic", c->will_topic, "peers/will/v5");
    expect_str("will payload", c->will_payload, "pub v5 died");
    const iotc_mqtt_props *w = &c->will_props;
    expect_present("will properties", w,
                   B(WILL_DELAY_INTERVAL) | B(MESSAGE_EXPIRY_INTERVAL) | B(CONTENT_TYPE) | B(RESPONSE_TOPIC) |
                       B(CORRELATION_DATA) | B(PAYLOAD_FORMAT_INDICATOR));
    EXPECT_EQ("will delay", w->will_delay_interval, 10);
    EXPECT_EQ("will message expiry", w->message_expiry_interval, 99);
    expect_str("will content type", w->content_type, "text/plain");
    expect_str("will response topic", w->response_topic, "will/resp");
    expect_str("will correlation data", w->correlation_data, "wcd");
    EXPECT_EQ("will payload format", w->payload_format_indicator, 1);
    expect_user_props("will user properties", w, 1, "wk", "wv");
    expect_connack(fx, false, 0);
    expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v5/will", "with a v5 will", 0, false, 0);
}

static void x_pub_v5_connect_props(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-conn", true, 42);
    EXPECT_EQ("will", c->will, false);
    EXPECT_EQ("has username", c->has_username, true);
    expect_str("username", c->username, "bob");
    EXPECT_EQ("has password", c->has_password, true);
    expect_str("password", c->password, "hunter2");
    expect_present("CONNECT properties", &c->props,
                   B(RECEIVE_MAXIMUM) | B(MAXIMUM_PACKET_SIZE) | B(TOPIC_ALIAS_MAXIMUM) |
                       B(REQUEST_PROBLEM_INFORMATION) | B(REQUEST_RESPONSE_INFORMATION));
    EXPECT_EQ("receive maximum", c->props.receive_maximum, 20);
    EXPECT_EQ("maximum packet size", c->props.maximum_packet_size, 65536);
    EXPECT_EQ("topic alias maximum", c->props.topic_alias_maximum, 5);
    EXPECT_EQ("request problem information", c->props.request_problem_information, 0);
    EXPECT_EQ("request response information", c->props.request_response_information, 1);
    EXPECT_EQ("CONNECT user properties", c->props.user_count, 0);
    expect_connack(fx, false, 0);
    expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v5/conn", "connect properties", 0, false, 0);
}

static void x_pub_v5_disconnect_props(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-disc", true, 60);
    expect_present("CONNECT properties", &c->props, B(SESSION_EXPIRY_INTERVAL) | B(RECEIVE_MAXIMUM));
    EXPECT_EQ("session expiry (-x 30)", c->props.session_expiry_interval, 30);
    expect_connack(fx, false, 0);
    const iotc_mqtt_disconnect *d = &nth(fx, 'C', DISCONNECT, 0)->u.disconnect;
    EXPECT_EQ("DISCONNECT reason", d->reason, IOTC_RC_SUCCESS);
    expect_present("DISCONNECT properties", &d->props, B(SESSION_EXPIRY_INTERVAL));
    EXPECT_EQ("DISCONNECT session expiry", d->props.session_expiry_interval, 0);
    expect_user_props("DISCONNECT user properties", &d->props, 1, "bye", "now");
}

static void x_pub_v5_topic_alias(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V5, "iotc-pub-v5-alias", true, 60);
    expect_connack(fx, false, 0);
    const iotc_mqtt_publish *p1 = expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/pub/v5/alias", "aliased", 1,
                                                 false, 1);
    expect_present("PUBLISH 1 properties", &p1->props, B(TOPIC_ALIAS));
    EXPECT_EQ("PUBLISH 1 topic alias", p1->props.topic_alias, 3);
    /* The second one uses the alias alone: an empty topic name (§3.3.2.3.4). */
    const iotc_mqtt_publish *p2 = expect_publish(nth(fx, 'C', PUBLISH, 1), "", "aliased", 1, false, 2);
    expect_present("PUBLISH 2 properties", &p2->props, B(TOPIC_ALIAS));
    EXPECT_EQ("PUBLISH 2 topic alias", p2->props.topic_alias, 3);
    expect_ack(nth(fx, 'S', PUBACK, 0), 1, IOTC_RC_NO_MATCHING_SUBSCRIBERS);
    expect_ack(nth(fx, 'S', PUBACK, 1), 2, IOTC_RC_NO_MATCHING_SUBSCRIBERS);
    expect_sequence(fx, C_, CONNECT, PUBLISH, PUBLISH, DISCONNECT, 0);
}

static void x_sub_v5_filters(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-sub-v5", true, 60);
    expect_no_will_no_auth(c);
    /* mosquitto_sub -C 1 asks for Receive Maximum 1. */
    expect_present("CONNECT properties", &c->props, B(SESSION_EXPIRY_INTERVAL) | B(RECEIVE_MAXIMUM));
    EXPECT_EQ("session expiry (-x 60)", c->props.session_expiry_interval, 60);
    EXPECT_EQ("receive maximum", c->props.receive_maximum, 1);
    expect_user_props("CONNECT user properties", &c->props, 1, "ck", "cv");
    expect_connack(fx, false, 0);
    const iotc_mqtt_subscribe *s = &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe;
    EXPECT_EQ("SUBSCRIBE packet id", s->packet_id, 1);
    expect_present("SUBSCRIBE properties", &s->props, 0);
    expect_sub_ids("SUBSCRIBE subscription identifier", &s->props, 1, (uint32_t)7);
    expect_user_props("SUBSCRIBE user properties", &s->props, 1, "sk", "sv");
    static const want_sub w[] = {{"peers/sub/v5/+/temp", 1, false, false, 0},
                                 {"peers/sub/v5/alarm/#", 1, false, false, 0},
                                 {"peers/sub/v5/exact", 1, false, false, 0}};
    expect_subs("SUBSCRIBE", s, w, 3);
    const iotc_mqtt_suback *a = &nth(fx, 'S', SUBACK, 0)->u.suback;
    expect_codes("SUBACK", a, (const uint8_t[]){1, 1, 1}, 3);
    expect_no_props("SUBACK properties", &a->props);
    /* The broker forwards the publisher's properties and adds our subscription id. */
    const iotc_mqtt_publish *p = expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v5/room1/temp", "22.5", 1,
                                                false, 1);
    expect_present("PUBLISH properties", &p->props,
                   B(MESSAGE_EXPIRY_INTERVAL) | B(CONTENT_TYPE) | B(RESPONSE_TOPIC) | B(CORRELATION_DATA) |
                       B(PAYLOAD_FORMAT_INDICATOR));
    /* What is left of 300 s when the broker sent it (§3.3.2.3.3). */
    if (p->props.message_expiry_interval > 300 || p->props.message_expiry_interval < 290)
        fail_msg("forwarded message expiry %u, expected 290..300", (unsigned)p->props.message_expiry_interval);
    expect_str("content type", p->props.content_type, "text/plain");
    expect_str("response topic", p->props.response_topic, "peers/sub/v5/reply");
    expect_str("correlation data", p->props.correlation_data, "cd-42");
    EXPECT_EQ("payload format", p->props.payload_format_indicator, 1);
    expect_user_props("PUBLISH user properties", &p->props, 2, "a", "b", "a", "c");
    expect_sub_ids("PUBLISH subscription identifier", &p->props, 1, (uint32_t)7);
    expect_ack(nth(fx, 'C', PUBACK, 0), 1, 0);
    expect_plain_disconnect(fx);
}

static void x_sub_v5_qos2(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V5, "iotc-sub-v5-qos2", true, 60);
    static const want_sub w[] = {{"peers/sub/v5/q2/#", 2, false, false, 0}};
    const iotc_mqtt_subscribe *s = &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe;
    expect_subs("SUBSCRIBE", s, w, 1);
    expect_no_props("SUBSCRIBE properties", &s->props);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){2}, 1);
    const iotc_mqtt_publish *p = expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v5/q2/x",
                                                "v5 exactly once", 2, false, 1);
    expect_no_props("PUBLISH properties", &p->props);
    expect_qos2_flow(fx, 'S', 1);
    expect_sequence(fx, C_, CONNECT, SUBSCRIBE, PUBREC, PUBCOMP, DISCONNECT, 0);
    expect_sequence(fx, S_, CONNACK, SUBACK, PUBLISH, PUBREL, 0);
}

static void x_sub_v5_rap(const fixture *fx)
{
    expect_connect(fx, IOTC_MQTT_V5, "iotc-sub-v5-rap", true, 60);
    static const want_sub w[] = {{"peers/sub/v5/retained", 1, false, true, 0}};
    expect_subs("SUBSCRIBE", &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe, w, 1);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){1}, 1);
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/sub/v5/retained", "kept v5", 1, true, 1);
}

static void x_sub_v5_unsubscribe(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-sub-v5-unsub", false, 60);
    /* -c without -x: a session that never expires. */
    expect_present("CONNECT properties", &c->props, B(SESSION_EXPIRY_INTERVAL) | B(RECEIVE_MAXIMUM));
    EXPECT_EQ("session expiry", c->props.session_expiry_interval, 0xFFFFFFFFu);
    expect_connack(fx, true, 0);
    const iotc_mqtt_unsubscribe *u1 = &nth(fx, 'C', UNSUBSCRIBE, 0)->u.unsubscribe;
    const iotc_mqtt_unsubscribe *u2 = &nth(fx, 'C', UNSUBSCRIBE, 1)->u.unsubscribe;
    EXPECT_EQ("UNSUBSCRIBE packet id", u1->packet_id, 2);
    EXPECT_EQ("UNSUBSCRIBE packet id", u2->packet_id, 3);
    expect_unsubs("UNSUBSCRIBE", u1, 1, "peers/sub/v5/unsub/#");
    expect_unsubs("UNSUBSCRIBE", u2, 1, "peers/sub/v5/unsub/none");
    expect_present("UNSUBSCRIBE properties", &u1->props, 0);
    expect_user_props("UNSUBSCRIBE user properties", &u1->props, 1, "uk", "uv");
    expect_user_props("UNSUBSCRIBE user properties", &u2->props, 1, "uk", "uv");
    const iotc_mqtt_suback *a1 = &nth(fx, 'S', UNSUBACK, 0)->u.suback;
    const iotc_mqtt_suback *a2 = &nth(fx, 'S', UNSUBACK, 1)->u.suback;
    EXPECT_EQ("UNSUBACK packet id", a1->packet_id, 2);
    EXPECT_EQ("UNSUBACK packet id", a2->packet_id, 3);
    expect_codes("UNSUBACK", a1, (const uint8_t[]){IOTC_RC_SUCCESS}, 1);
    /* The stored session had peers/sub/v5/unsub/# only. */
    expect_codes("UNSUBACK", a2, (const uint8_t[]){IOTC_RC_NO_SUBSCRIPTION_EXISTED}, 1);
}

static void x_paho_v311_pubsub(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V311, "iotc-paho-v311", true, 30);
    EXPECT_EQ("will", c->will, true);
    EXPECT_EQ("will qos", c->will_qos, 1);
    EXPECT_EQ("will retain", c->will_retain, true);
    expect_str("will topic", c->will_topic, "peers/paho/v311/will");
    expect_str("will payload", c->will_payload, "paho v311 gone");
    EXPECT_EQ("has username", c->has_username, true);
    expect_str("username", c->username, "paho-user");
    EXPECT_EQ("has password", c->has_password, true);
    expect_str("password", c->password, "paho-pass");
    expect_connack(fx, false, 0);

    const iotc_mqtt_subscribe *s = &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe;
    EXPECT_EQ("SUBSCRIBE packet id", s->packet_id, 1);
    static const want_sub w[] = {{"peers/paho/v311/a", 0, false, false, 0},
                                 {"peers/paho/v311/+/b", 1, false, false, 0},
                                 {"peers/paho/v311/c/#", 2, false, false, 0},
                                 {"forbidden/v311", 1, false, false, 0}};
    expect_subs("SUBSCRIBE", s, w, 4);
    /* mosquitto 2.0 grants a filter outside the ACL and filters deliveries instead. */
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){0, 1, 2, 1}, 4);

    /* paho spends a packet id on the QoS 0 publish too: 2, then 3 and 4. */
    expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/paho/v311/a", "paho v311 qos0", 0, false, 0);
    expect_publish(nth(fx, 'C', PUBLISH, 1), "peers/paho/v311/x/b", "paho v311 qos1", 1, false, 3);
    expect_publish(nth(fx, 'C', PUBLISH, 2), "peers/paho/v311/c/d/e", "paho v311 qos2", 2, false, 4);
    expect_ack(nth(fx, 'S', PUBACK, 0), 3, 0);
    expect_ack(nth(fx, 'S', PUBREC, 0), 4, 0);
    expect_ack(nth(fx, 'C', PUBREL, 0), 4, 0);
    expect_ack(nth(fx, 'S', PUBCOMP, 0), 4, 0);
    expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/paho/v311/a", "paho v311 qos0", 0, false, 0);
    expect_publish(nth(fx, 'S', PUBLISH, 1), "peers/paho/v311/x/b", "paho v311 qos1", 1, false, 1);
    expect_publish(nth(fx, 'S', PUBLISH, 2), "peers/paho/v311/c/d/e", "paho v311 qos2", 2, false, 2);
    expect_ack(nth(fx, 'C', PUBACK, 0), 1, 0);
    expect_ack(nth(fx, 'C', PUBREC, 0), 2, 0);
    expect_ack(nth(fx, 'S', PUBREL, 0), 2, 0);
    expect_ack(nth(fx, 'C', PUBCOMP, 0), 2, 0);

    const iotc_mqtt_unsubscribe *u = &nth(fx, 'C', UNSUBSCRIBE, 0)->u.unsubscribe;
    EXPECT_EQ("UNSUBSCRIBE packet id", u->packet_id, 5);
    expect_unsubs("UNSUBSCRIBE", u, 2, "peers/paho/v311/a", "peers/paho/v311/+/b");
    EXPECT_EQ("UNSUBACK packet id", nth(fx, 'S', UNSUBACK, 0)->u.suback.packet_id, 5);
    expect_plain_disconnect(fx);
    EXPECT_EQ("C PUBLISH count", count_type(fx, 'C', PUBLISH), 3);
    EXPECT_EQ("S PUBLISH count", count_type(fx, 'S', PUBLISH), 3);
}

static void x_paho_v5_pubsub(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "iotc-paho-v5", true, 45);
    EXPECT_EQ("has username", c->has_username, true);
    expect_str("username", c->username, "paho5");
    EXPECT_EQ("has password", c->has_password, true);
    expect_bin("password (binary)", c->password, "\x00\x01pw\xff", 5);
    expect_present("CONNECT properties", &c->props,
                   B(SESSION_EXPIRY_INTERVAL) | B(RECEIVE_MAXIMUM) | B(MAXIMUM_PACKET_SIZE) |
                       B(TOPIC_ALIAS_MAXIMUM));
    EXPECT_EQ("session expiry", c->props.session_expiry_interval, 120);
    EXPECT_EQ("receive maximum", c->props.receive_maximum, 16);
    EXPECT_EQ("maximum packet size", c->props.maximum_packet_size, 1048576);
    EXPECT_EQ("topic alias maximum", c->props.topic_alias_maximum, 4);
    expect_user_props("CONNECT user properties", &c->props, 3, "c1", "one", "c2", "two", "c1", "again");
    EXPECT_EQ("will", c->will, true);
    EXPECT_EQ("will qos", c->will_qos, 2);
    EXPECT_EQ("will retain", c->will_retain, false);
    expect_str("will topic", c->will_topic, "peers/paho/v5/will");
    expect_str("will payload", c->will_payload, "paho v5 gone");
    expect_present("will properties", &c->will_props, B(WILL_DELAY_INTERVAL) | B(CONTENT_TYPE));
    EXPECT_EQ("will delay", c->will_props.will_delay_interval, 5);
    expect_str("will content type", c->will_props.content_type, "text/plain");
    expect_user_props("will user properties", &c->will_props, 1, "will-k", "will-v");
    expect_connack(fx, false, 0);

    const iotc_mqtt_subscribe *s = &nth(fx, 'C', SUBSCRIBE, 0)->u.subscribe;
    EXPECT_EQ("SUBSCRIBE packet id", s->packet_id, 1);
    expect_present("SUBSCRIBE properties", &s->props, 0);
    expect_sub_ids("SUBSCRIBE subscription identifier", &s->props, 1, (uint32_t)9);
    expect_user_props("SUBSCRIBE user properties", &s->props, 1, "sub-k", "sub-v");
    static const want_sub w[] = {{"peers/paho/v5/a", 1, false, true, 0},
                                 {"peers/paho/v5/+/b", 2, false, false, 1},
                                 {"peers/paho/v5/nolocal/#", 0, true, true, 2},
                                 {"forbidden/v5", 1, false, false, 0}};
    expect_subs("SUBSCRIBE", s, w, 4);
    expect_codes("SUBACK", &nth(fx, 'S', SUBACK, 0)->u.suback, (const uint8_t[]){1, 2, 0, 1}, 4);

    const iotc_mqtt_publish *p = expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/paho/v5/a", "{\"n\":1}", 1,
                                                false, 2);
    const uint64_t pub_bits = B(PAYLOAD_FORMAT_INDICATOR) | B(MESSAGE_EXPIRY_INTERVAL) | B(CONTENT_TYPE) |
                              B(RESPONSE_TOPIC) | B(CORRELATION_DATA);
    expect_present("PUBLISH properties", &p->props, pub_bits);
    EXPECT_EQ("payload format", p->props.payload_format_indicator, 1);
    EXPECT_EQ("message expiry", p->props.message_expiry_interval, 3600);
    expect_str("content type", p->props.content_type, "application/json");
    expect_str("response topic", p->props.response_topic, "peers/paho/v5/reply");
    expect_bin("correlation data", p->props.correlation_data, "\x00\x01" "corr\xfe", 7);
    expect_user_props("PUBLISH user properties", &p->props, 3, "a", "1", "b", "2", "a", "3");
    EXPECT_EQ("PUBLISH subscription ids", p->props.sub_id_count, 0);

    /* The delivery back to us: same properties plus subscription identifier 9. */
    const iotc_mqtt_publish *d = expect_publish(nth(fx, 'S', PUBLISH, 0), "peers/paho/v5/a", "{\"n\":1}", 1,
                                                false, 1);
    expect_present("delivered PUBLISH properties", &d->props, pub_bits);
    if (d->props.message_expiry_interval > 3600 || d->props.message_expiry_interval < 3590)
        fail_msg("forwarded message expiry %u, expected 3590..3600", (unsigned)d->props.message_expiry_interval);
    expect_str("content type", d->props.content_type, "application/json");
    expect_bin("correlation data", d->props.correlation_data, "\x00\x01" "corr\xfe", 7);
    expect_user_props("delivered user properties", &d->props, 3, "a", "1", "b", "2", "a", "3");
    expect_sub_ids("delivered subscription identifier", &d->props, 1, (uint32_t)9);
    expect_ack(nth(fx, 'S', PUBACK, 0), 2, 0);
    expect_ack(nth(fx, 'C', PUBACK, 0), 1, 0);

    expect_publish(nth(fx, 'C', PUBLISH, 1), "peers/paho/v5/x/b", "qos2 to qos2", 2, false, 3);
    const iotc_mqtt_publish *d2 = expect_publish(nth(fx, 'S', PUBLISH, 1), "peers/paho/v5/x/b", "qos2 to qos2",
                                                 2, false, 2);
    expect_present("delivered PUBLISH 2 properties", &d2->props, 0);
    expect_sub_ids("delivered subscription identifier", &d2->props, 1, (uint32_t)9);
    expect_ack(nth(fx, 'S', PUBREC, 0), 3, 0);
    expect_ack(nth(fx, 'C', PUBREL, 0), 3, 0);
    expect_ack(nth(fx, 'S', PUBCOMP, 0), 3, 0);
    expect_ack(nth(fx, 'C', PUBREC, 0), 2, 0);
    expect_ack(nth(fx, 'S', PUBREL, 0), 2, 0);
    expect_ack(nth(fx, 'C', PUBCOMP, 0), 2, 0);

    /* Outside the ACL: PUBACK 0x87 Not authorized. */
    expect_publish(nth(fx, 'C', PUBLISH, 2), "forbidden/v5", "refused", 1, false, 4);
    expect_ack(nth(fx, 'S', PUBACK, 1), 4, IOTC_RC_NOT_AUTHORIZED);

    const iotc_mqtt_unsubscribe *u = &nth(fx, 'C', UNSUBSCRIBE, 0)->u.unsubscribe;
    EXPECT_EQ("UNSUBSCRIBE packet id", u->packet_id, 5);
    expect_unsubs("UNSUBSCRIBE", u, 2, "peers/paho/v5/a", "peers/paho/v5/never");
    expect_user_props("UNSUBSCRIBE user properties", &u->props, 1, "unsub-k", "unsub-v");
    const iotc_mqtt_suback *ua = &nth(fx, 'S', UNSUBACK, 0)->u.suback;
    EXPECT_EQ("UNSUBACK packet id", ua->packet_id, 5);
    expect_codes("UNSUBACK", ua, (const uint8_t[]){IOTC_RC_SUCCESS, IOTC_RC_NO_SUBSCRIPTION_EXISTED}, 2);

    const iotc_mqtt_disconnect *dc = &nth(fx, 'C', DISCONNECT, 0)->u.disconnect;
    EXPECT_EQ("DISCONNECT reason", dc->reason, IOTC_RC_SUCCESS);
    expect_present("DISCONNECT properties", &dc->props, B(SESSION_EXPIRY_INTERVAL));
    EXPECT_EQ("DISCONNECT session expiry", dc->props.session_expiry_interval, 0);
    expect_user_props("DISCONNECT user properties", &dc->props, 1, "bye", "now");
}

static void x_paho_v5_assigned_id(const fixture *fx)
{
    const iotc_mqtt_connect *c = expect_connect(fx, IOTC_MQTT_V5, "", true, 10);
    expect_no_will_no_auth(c);
    expect_no_props("CONNECT properties", &c->props);
    expect_connack(fx, false, 0);
    const iotc_mqtt_props *ap = &nth(fx, 'S', CONNACK, 0)->u.connack.props;
    if (!(ap->present & B(ASSIGNED_CLIENT_IDENTIFIER)))
        fail_msg("CONNACK to an empty client id has no Assigned Client Identifier (§3.2.2.3.7)");
    if (ap->assigned_client_identifier.len <= 5 || memcmp(ap->assigned_client_identifier.data, "auto-", 5) != 0)
        fail_msg("assigned client id '%.*s' is not mosquitto's auto-<uuid>",
                 (int)ap->assigned_client_identifier.len, (const char *)ap->assigned_client_identifier.data);
    const iotc_mqtt_publish *p1 = expect_publish(nth(fx, 'C', PUBLISH, 0), "peers/paho/v5/alias",
                                                 "first, with topic and alias", 0, false, 0);
    expect_present("PUBLISH 1 properties", &p1->props, B(TOPIC_ALIAS));
    EXPECT_EQ("topic alias", p1->props.topic_alias, 1);
    const iotc_mqtt_publish *p2 = expect_publish(nth(fx, 'C', PUBLISH, 1), "", "second, alias only", 0, false, 0);
    expect_present("PUBLISH 2 properties", &p2->props, B(TOPIC_ALIAS));
    EXPECT_EQ("topic alias", p2->props.topic_alias, 1);
    expect_plain_disconnect(fx);
}

typedef struct {
    const char *fixture;
    void (*check)(const fixture *fx);
} expectation;

static const expectation EXPECTATIONS[] = {
    {"mosquitto_pub-v311-qos0", x_pub_v311_qos0},
    {"mosquitto_pub-v311-qos0-retain", x_pub_v311_qos0_retain},
    {"mosquitto_pub-v311-qos1-retain", x_pub_v311_qos1_retain},
    {"mosquitto_pub-v311-qos2-retain", x_pub_v311_qos2_retain},
    {"mosquitto_pub-v311-will", x_pub_v311_will},
    {"mosquitto_pub-v311-auth", x_pub_v311_auth},
    {"mosquitto_pub-v311-keepalive", x_pub_v311_keepalive},
    {"mosquitto_pub-v311-empty", x_pub_v311_empty},
    {"mosquitto_pub-v311-binary", x_pub_v311_binary},
    {"mosquitto_pub-v311-big", x_pub_v311_big},
    {"mosquitto_pub-v311-utf8", x_pub_v311_utf8},
    {"mosquitto_sub-v311-filters", x_sub_v311_filters},
    {"mosquitto_sub-v311-qos2", x_sub_v311_qos2},
    {"mosquitto_sub-v311-downgrade", x_sub_v311_downgrade},
    {"mosquitto_sub-v311-retained", x_sub_v311_retained},
    {"mosquitto_sub-v311-persistent", x_sub_v311_persistent},
    {"mosquitto_sub-v311-unsubscribe", x_sub_v311_unsubscribe},
    {"mosquitto_sub-v311-ping", x_sub_v311_ping},
    {"mosquitto_pub-v5-qos0", x_pub_v5_qos0},
    {"mosquitto_pub-v5-qos1-props", x_pub_v5_qos1_props},
    {"mosquitto_pub-v5-qos2-retain", x_pub_v5_qos2_retain},
    {"mosquitto_pub-v5-will", x_pub_v5_will},
    {"mosquitto_pub-v5-connect-props", x_pub_v5_connect_props},
    {"mosquitto_pub-v5-disconnect-props", x_pub_v5_disconnect_props},
    {"mosquitto_pub-v5-topic-alias", x_pub_v5_topic_alias},
    {"mosquitto_sub-v5-filters", x_sub_v5_filters},
    {"mosquitto_sub-v5-qos2", x_sub_v5_qos2},
    {"mosquitto_sub-v5-retain-as-published", x_sub_v5_rap},
    {"mosquitto_sub-v5-unsubscribe", x_sub_v5_unsubscribe},
    {"paho-v311-pubsub", x_paho_v311_pubsub},
    {"paho-v5-pubsub", x_paho_v5_pubsub},
    {"paho-v5-assigned-id", x_paho_v5_assigned_id},
};
#define N_EXPECTATIONS (sizeof EXPECTATIONS / sizeof EXPECTATIONS[0])

static void run_expectation(void **state)
{
    const expectation *e = *state;
    assert_non_null(e);
    e->check(fx_open(e->fixture));
}

/* A session added to capture.py must come with its expectations here. */
static void test_every_fixture_has_expectations(void **state)
{
    (void)state;
    size_t n = 0;
    char **names = list_fixtures(&n);
    char missing[2048] = "";
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < N_EXPECTATIONS; j++)
            if (strcmp(names[i], EXPECTATIONS[j].fixture) == 0)
                found = true;
        if (!found && strlen(missing) + strlen(names[i]) + 3 < sizeof missing) {
            strcat(missing, " ");
            strcat(missing, names[i]);
        }
    }
    free_names(names, n);
    if (missing[0])
        fail_msg("fixtures without expectations in test_mqtt_peers.c:%s", missing);
}

int main(void)
{
    struct CMUnitTest tests[4 + N_EXPECTATIONS] = {
        cmocka_unit_test(test_fixture_directory_has_fixtures),
        cmocka_unit_test(test_every_fixture_has_expectations),
        cmocka_unit_test_teardown(test_every_fixture_decodes_whole_and_streamed, teardown_fixture),
        cmocka_unit_test_teardown(test_every_fixture_reencodes, teardown_fixture),
    };
    for (size_t i = 0; i < N_EXPECTATIONS; i++) {
        struct CMUnitTest t = {EXPECTATIONS[i].fixture, run_expectation, NULL, teardown_fixture,
                               (void *)&EXPECTATIONS[i]};
        tests[4 + i] = t;
    }
    return cmocka_run_group_tests_name("mqtt peers", tests, NULL, NULL);
}
