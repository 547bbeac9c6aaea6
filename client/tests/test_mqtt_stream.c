/*
 * The streaming decoder (iotc_mqtt_reader): packets split across chunks of
 * every size and at random points give the same packets as whole decoding;
 * whole packets are decoded in place; the caller's buffer is never
 * reallocated; the reader's own buffer grows once and is reused; the maximum
 * packet size is enforced from the fixed header; failures stick until reset.
 *
 * Every chunk is an exact-size heap copy, so a read past it is caught under
 * ASan/Valgrind.
 */
#include "helpers/mqtt_tu.h"
#include "helpers/mqtt_samples.h"

#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"

typedef struct {
    uint8_t *bytes;
    size_t len;
    size_t count;
    size_t starts[128];
    size_t lens[128];
    iotc_mqtt_packet expect[128];
    iotc_mqtt_version version;
} stream;

static void add(stream *s, const uint8_t *b, size_t n)
{
    assert_true(s->count < 128);
    s->bytes = realloc(s->bytes, s->len + n);
    assert_non_null(s->bytes);
    memcpy(s->bytes + s->len, b, n);
    s->starts[s->count] = s->len;
    s->lens[s->count] = n;
    s->count++;
    s->len += n;
}

/* All samples of one version, plus a PUBLISH with a 2-byte remaining length. */
static void make_stream(stream *s, iotc_mqtt_version v)
{
    memset(s, 0, sizeof *s);
    s->version = v;
    uint8_t big[3 + 206];
    memset(big, 0x5A, sizeof big);
    memcpy(big, "\x30\xCE\x01\x00\x03" "a/b\x00", 9);
    for (size_t i = 0; i < TU_NSAMPLES; i++)
        if (tu_samples[i].version == v) {
            add(s, tu_samples[i].bytes, tu_samples[i].len);
            if (i == 5 && v == IOTC_MQTT_V5)
                add(s, big, sizeof big);
        }
    if (v == IOTC_MQTT_V311) {
        big[8] = 'x'; /* 3.1.1: no property length; the byte is payload */
        add(s, big, sizeof big);
    }
    /* The expected packets, decoded whole from the stream itself. */
    for (size_t i = 0; i < s->count; i++) {
        size_t used = 0;
        assert_int_equal(iotc_mqtt_decode(s->bytes + s->starts[i], s->lens[i], v, 0, &s->expect[i], &used, NULL),
                         IOTC_MQTT_OK);
        assert_int_equal(used, s->lens[i]);
    }
}

static void free_stream(stream *s)
{
    free(s->bytes);
    s->bytes = NULL;
}

typedef size_t (*chunker)(void *ctx, size_t left);

/* Feeds the whole stream in chunks chosen by `next`; checks every packet
 * against the expected one as it comes out. */
static void feed_stream_(iotc_mqtt_reader *r, const stream *s, chunker next, void *ctx, const char *file, int line)
{
    size_t off = 0, idx = 0;
    while (off < s->len) {
        size_t clen = next(ctx, s->len - off);
        if (clen == 0 || clen > s->len - off)
            clen = s->len - off;
        uint8_t *chunk = malloc(clen);
        assert_non_null(chunk);
        memcpy(chunk, s->bytes + off, clen);
        size_t pos = 0;
        while (pos < clen) {
            size_t consumed = (size_t)-1;
            iotc_mqtt_packet p;
            iotc_mqtt_error err;
            memset(&err, 0, sizeof err);
            iotc_mqtt_status st = iotc_mqtt_reader_feed(r, chunk + pos, clen - pos, &consumed, &p, &err);
            if (consumed > clen - pos) {
                print_error("feed consumed %zu of %zu\n", consumed, clen - pos);
                _fail(file, line);
            }
            if (st == IOTC_MQTT_OK) {
                if (consumed == 0 || idx >= s->count) {
                    print_error("packet %zu out of nowhere (consumed %zu)\n", idx, consumed);
                    _fail(file, line);
                }
                /* The packet ends exactly where the sample does. */
                if (off + pos + consumed != s->starts[idx] + s->lens[idx]) {
                    print_error("packet %zu ended at %zu, expected %zu\n", idx, off + pos + consumed,
                                s->starts[idx] + s->lens[idx]);
                    _fail(file, line);
                }
                tu_packet_eq_(&p, &s->expect[idx], s->version, file, line);
                idx++;
            } else if (st == IOTC_MQTT_NEED_MORE) {
                if (consumed != clen - pos) {
                    print_error("NEED_MORE but consumed %zu of %zu\n", consumed, clen - pos);
                    _fail(file, line);
                }
            } else {
                print_error("feed at stream byte %zu (chunk %zu): status %d, reason 0x%02X, offset %zu: %s\n",
                            off + pos, clen, (int)st, err.reason, err.offset, err.what ? err.what : "");
                _fail(file, line);
            }
            pos += consumed;
        }
        free(chunk);
        off += clen;
    }
    if (idx != s->count) {
        print_error("%zu packets out, %zu expected\n", idx, s->count);
        _fail(file, line);
    }
}
#define feed_stream(r, s, next, ctx) feed_stream_(r, s, next, ctx, __FILE__, __LINE__)

static size_t fixed_chunk(void *ctx, size_t left)
{
    (void)left;
    return *(size_t *)ctx;
}

static size_t random_chunk(void *ctx, size_t left)
{
    uint32_t *seed = ctx;
    uint32_t x = tu_rand(seed);
    /* Mostly small pieces, sometimes large ones. */
    size_t n = (x & 7) ? 1 + (x >> 8) % 16 : 1 + (x >> 8) % 300;
    return n < left ? n : left;
}

static void every_chunk_size(iotc_mqtt_version v, bool own)
{
    stream s;
    make_stream(&s, v);
    static uint8_t buf[512];
    for (size_t k = 1; k <= s.len; k++) {
        iotc_mqtt_reader r;
        iotc_mqtt_reader_init(&r, v, 0, own ? NULL : buf, sizeof buf);
        feed_stream(&r, &s, fixed_chunk, &k);
        assert_int_equal(r.stream_pos, s.len);
        if (!own) {
            assert_ptr_equal(r.buf, buf);
            assert_int_equal(r.cap, sizeof buf);
            assert_false(r.owns_buf);
        }
        iotc_mqtt_reader_free(&r);
    }
    free_stream(&s);
}

static void test_every_chunk_size_v5_own(void **state)
{
    (void)state;
    every_chunk_size(IOTC_MQTT_V5, true);
}

static void test_every_chunk_size_v5_caller(void **state)
{
    (void)state;
    every_chunk_size(IOTC_MQTT_V5, false);
}

static void test_every_chunk_size_v4(void **state)
{
    (void)state;
    every_chunk_size(IOTC_MQTT_V311, true);
    every_chunk_size(IOTC_MQTT_V311, false);
}

static void test_random_splits(void **state)
{
    (void)state;
    stream s5, s4;
    make_stream(&s5, IOTC_MQTT_V5);
    make_stream(&s4, IOTC_MQTT_V311);
    uint32_t seed = 20240611u;
    static uint8_t buf[300];
    for (int i = 0; i < 300; i++) {
        iotc_mqtt_reader r;
        const stream *s = (i & 1) ? &s4 : &s5;
        iotc_mqtt_reader_init(&r, s->version, 0, (i & 2) ? buf : NULL, sizeof buf);
        feed_stream(&r, s, random_chunk, &seed);
        /* The same reader goes on after a complete stream. */
        feed_stream(&r, s, random_chunk, &seed);
        assert_int_equal(r.stream_pos, 2 * s->len);
        iotc_mqtt_reader_free(&r);
    }
    free_stream(&s5);
    free_stream(&s4);
}

/* A packet whole inside the chunk is decoded in place: its views point into
 * the caller's chunk, at the right bytes. */
static void test_whole_packet_views_into_chunk(void **state)
{
    (void)state;
    stream s;
    make_stream(&s, IOTC_MQTT_V5);
    uint8_t *chunk = malloc(s.len);
    assert_non_null(chunk);
    memcpy(chunk, s.bytes, s.len);
    iotc_mqtt_reader r;
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, NULL, 0);
    size_t pos = 0, idx = 0, publishes = 0;
    while (pos < s.len) {
        size_t consumed = 0;
        iotc_mqtt_packet p;
        assert_int_equal(iotc_mqtt_reader_feed(&r, chunk + pos, s.len - pos, &consumed, &p, NULL), IOTC_MQTT_OK);
        assert_int_equal(pos, s.starts[idx]);
        assert_int_equal(consumed, s.lens[idx]);
        const uint8_t *at = chunk + pos;
        if (p.type == IOTC_MQTT_PUBLISH) {
            size_t hl = at[1] & 0x80 ? 3 : 2;
            if (p.u.publish.topic.len)
                assert_ptr_equal(p.u.publish.topic.data, at + hl + 2);
            assert_ptr_equal(p.u.publish.payload.data + p.u.publish.payload.len, at + consumed);
            publishes++;
        } else if (p.type == IOTC_MQTT_CONNECT) {
            assert_true(p.u.connect.client_id.data > at && p.u.connect.client_id.data < at + consumed);
        } else if (p.type == IOTC_MQTT_SUBACK || p.type == IOTC_MQTT_UNSUBACK) {
            if (p.u.suback.count)
                assert_ptr_equal(p.u.suback.codes + p.u.suback.count, at + consumed);
        } else if (p.type == IOTC_MQTT_SUBSCRIBE) {
            assert_ptr_equal(p.u.subscribe.raw.data + p.u.subscribe.raw.len, at + consumed);
        }
        pos += consumed;
        idx++;
    }
    assert_int_equal(idx, s.count);
    assert_true(publishes >= 4);
    iotc_mqtt_reader_free(&r);
    free(chunk);
    free_stream(&s);
}

/* A split packet is gathered in the reader's buffer (own or the caller's);
 * its views point there. */
static void test_split_packet_views_into_buffer(void **state)
{
    (void)state;
    const uint8_t *pkt = S_V5_PUBLISH_FULL;
    size_t n = sizeof S_V5_PUBLISH_FULL;
    uint8_t *a = malloc(40), *b = malloc(n - 40);
    memcpy(a, pkt, 40);
    memcpy(b, pkt + 40, n - 40);

    static uint8_t buf[128];
    for (int own = 0; own < 2; own++) {
        iotc_mqtt_reader r;
        iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, own ? NULL : buf, sizeof buf);
        size_t consumed = 0;
        iotc_mqtt_packet p;
        assert_int_equal(iotc_mqtt_reader_feed(&r, a, 40, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
        assert_int_equal(consumed, 40);
        assert_int_equal(iotc_mqtt_reader_feed(&r, b, n - 40, &consumed, &p, NULL), IOTC_MQTT_OK);
        assert_int_equal(consumed, n - 40);
        assert_non_null(r.buf);
        if (!own)
            assert_ptr_equal(r.buf, buf);
        else
            assert_true(r.owns_buf);
        assert_true(p.u.publish.topic.data >= r.buf && p.u.publish.topic.data < r.buf + r.cap);
        assert_ptr_equal(p.u.publish.topic.data, r.buf + 4);
        assert_true(tu_str_eq(p.u.publish.topic, "a/b"));
        assert_true(tu_str_eq(p.u.publish.payload, "pl"));
        assert_int_equal(p.u.publish.props.user_count, 3);
        iotc_mqtt_packet whole;
        size_t used;
        assert_int_equal(iotc_mqtt_decode(pkt, n, IOTC_MQTT_V5, 0, &whole, &used, NULL), IOTC_MQTT_OK);
        tu_packet_eq(&p, &whole, IOTC_MQTT_V5);
        iotc_mqtt_reader_free(&r);
    }
    free(a);
    free(b);
}

/* The caller's buffer is never reallocated: a packet larger than cap is an
 * error, whether it arrives whole or split (the outcome must not depend on
 * where the transport cut the bytes). */
static void test_caller_buffer_too_small(void **state)
{
    (void)state;
    uint8_t buf[16];
    iotc_mqtt_reader r;
    size_t consumed = 0;
    iotc_mqtt_packet p;
    iotc_mqtt_error err;

    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, buf, sizeof buf);
    memset(&err, 0, sizeof err);
    iotc_mqtt_status whole =
        iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL, sizeof S_V5_PUBLISH_FULL, &consumed, &p, &err);
    assert_true(whole == IOTC_MQTT_ERR_TOO_LARGE || whole == IOTC_MQTT_ERR_NOMEM);
    assert_int_equal(err.status, whole);
    iotc_mqtt_reader_reset(&r);

    /* Split. */
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL, 41, &consumed, &p, &err);
    if (st == IOTC_MQTT_NEED_MORE)
        st = iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL + 41, sizeof S_V5_PUBLISH_FULL - 41, &consumed, &p, &err);
    assert_int_equal(st, whole);
    assert_int_equal(err.status, st);
    assert_ptr_equal(r.buf, buf);
    assert_int_equal(r.cap, sizeof buf);
    assert_false(r.owns_buf);
    /* It stays failed. */
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGRESP, 2, &consumed, &p, NULL), st);
    iotc_mqtt_reader_reset(&r);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGRESP, 2, &consumed, &p, NULL), IOTC_MQTT_OK);
    /* A split packet that fits is fine. */
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBACK_NOPROPS, 3, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBACK_NOPROPS + 3, 3, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.u.ack.reason, 0x10);
    assert_ptr_equal(r.buf, buf);
    /* Freeing does not touch the caller's buffer. */
    iotc_mqtt_reader_free(&r);
    buf[0] = 1;
    assert_int_equal(buf[0], 1);
}

/* A split packet of exactly cap bytes fits; cap + 1 does not. */
static void test_caller_buffer_exact(void **state)
{
    (void)state;
    uint8_t buf[19];
    iotc_mqtt_reader r;
    size_t consumed = 0;
    iotc_mqtt_packet p;
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, buf, sizeof buf);
    for (size_t i = 0; i + 1 < sizeof S_V5_PUBACK_FULL; i++)
        assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBACK_FULL + i, 1, &consumed, &p, NULL),
                         IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBACK_FULL + 18, 1, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.u.ack.reason, 0x87);
    assert_true(tu_str_eq(p.u.ack.props.reason_string, "bad"));
    assert_ptr_equal(p.u.ack.props.reason_string.data, buf + 9);
    iotc_mqtt_reader_free(&r);

    uint8_t small[18];
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, small, sizeof small);
    iotc_mqtt_status st = IOTC_MQTT_NEED_MORE;
    size_t i;
    for (i = 0; i < sizeof S_V5_PUBACK_FULL && st == IOTC_MQTT_NEED_MORE; i++)
        st = iotc_mqtt_reader_feed(&r, S_V5_PUBACK_FULL + i, 1, &consumed, &p, NULL);
    assert_true(st == IOTC_MQTT_ERR_TOO_LARGE || st == IOTC_MQTT_ERR_NOMEM);
    iotc_mqtt_reader_free(&r);
}

/* The reader's own buffer grows to the largest split packet and is kept:
 * a steady stream then allocates nothing. */
static void test_own_buffer_grows_and_is_reused(void **state)
{
    (void)state;
    size_t n = 1000;
    uint8_t *pkt = malloc(n);
    assert_non_null(pkt);
    memset(pkt, 'z', n);
    memcpy(pkt, "\x30\xE5\x07\x00\x01t\x00", 7); /* remaining 997 = E5 07 */
    iotc_mqtt_reader r;
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, NULL, 0);
    size_t consumed;
    iotc_mqtt_packet p;
    for (size_t i = 0; i + 1 < n; i++)
        assert_int_equal(iotc_mqtt_reader_feed(&r, pkt + i, 1, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, pkt + n - 1, 1, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.u.publish.payload.len, 1000 - 7);
    assert_true(r.owns_buf);
    assert_true(r.cap >= n);
    uint8_t *kept = r.buf;
    size_t cap = r.cap;

    /* Smaller split packets reuse it. */
    stream s;
    make_stream(&s, IOTC_MQTT_V5);
    size_t k = 7;
    feed_stream(&r, &s, fixed_chunk, &k);
    k = 1;
    feed_stream(&r, &s, fixed_chunk, &k);
    assert_ptr_equal(r.buf, kept);
    assert_int_equal(r.cap, cap);

    /* reset keeps the buffer. */
    iotc_mqtt_reader_reset(&r);
    assert_ptr_equal(r.buf, kept);
    assert_int_equal(r.stream_pos, 0);

    /* A larger one grows it. */
    size_t m = 5000;
    uint8_t *big = malloc(m);
    memset(big, 'y', m);
    memcpy(big, "\x30\x85\x27\x00\x01t\x00", 7); /* remaining 4997 = 0x1385 -> 85 27 */
    assert_int_equal(iotc_mqtt_reader_feed(&r, big, 100, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, big + 100, m - 100, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.u.publish.payload.len, m - 7);
    assert_true(r.cap >= m);
    assert_true(r.owns_buf);
    iotc_mqtt_reader_free(&r);
    free(big);
    free(pkt);
    free_stream(&s);
}

/* The maximum packet size is enforced as soon as the fixed header is
 * complete, before any of the body is kept. */
static void test_max_packet_size_from_header(void **state)
{
    (void)state;
    iotc_mqtt_reader r;
    size_t consumed = 0;
    iotc_mqtt_packet p;
    iotc_mqtt_error err;

    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 10, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, B(0x30), &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    memset(&err, 0, sizeof err);
    assert_int_equal(iotc_mqtt_reader_feed(&r, B(0x62), &consumed, &p, &err), IOTC_MQTT_ERR_TOO_LARGE);
    assert_int_equal(err.status, IOTC_MQTT_ERR_TOO_LARGE);
    assert_int_equal(err.reason, IOTC_RC_PACKET_TOO_LARGE);
    assert_true(r.cap < 100); /* no room was made for the body */
    iotc_mqtt_reader_free(&r);

    /* With a 3-byte header, the third byte decides. */
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 100, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, B(0x30), &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, B(0xC8), &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, B(0x01), &consumed, &p, NULL), IOTC_MQTT_ERR_TOO_LARGE);
    iotc_mqtt_reader_free(&r);

    /* The header and a lot of body in one chunk: refused all the same. */
    uint8_t *chunk = calloc(1, 300);
    memcpy(chunk, "\x30\xC8\x01\x00\x01t\x00", 7);
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 100, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, chunk, 300, &consumed, &p, NULL), IOTC_MQTT_ERR_TOO_LARGE);
    iotc_mqtt_reader_free(&r);
    free(chunk);

    /* Exactly the maximum passes. */
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, sizeof S_V5_PUBLISH_FULL, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL, 5, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(
        iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL + 5, sizeof S_V5_PUBLISH_FULL - 5, &consumed, &p, NULL),
        IOTC_MQTT_OK);
    iotc_mqtt_reader_free(&r);
}

/* After an error the reader stays failed until reset; the error's offset is
 * from the start of the failed packet. */
static void test_failure_sticks_until_reset(void **state)
{
    (void)state;
    /* PINGREQ, then a PUBLISH with a wildcard topic, then a PINGREQ. */
    static const uint8_t in[] = {0xC0, 0x00, 0x30, 0x06, 0x00, 0x03, 'a', '/', '+', 0x00, 0xC0, 0x00};
    uint8_t *chunk = malloc(sizeof in);
    memcpy(chunk, in, sizeof in);
    iotc_mqtt_reader r;
    size_t consumed = 0;
    iotc_mqtt_packet p;
    iotc_mqtt_error err;
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, chunk, sizeof in, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(consumed, 2);
    assert_int_equal(p.type, IOTC_MQTT_PINGREQ);
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_reader_feed(&r, chunk + 2, sizeof in - 2, &consumed, &p, &err);
    assert_true(st == IOTC_MQTT_ERR_MALFORMED || st == IOTC_MQTT_ERR_PROTOCOL);
    assert_int_equal(err.status, st);
    assert_true(err.offset >= 2 && err.offset <= 7);
    assert_non_null(err.what);
    iotc_mqtt_error first = err;
    /* Valid bytes do not revive it. */
    for (int i = 0; i < 3; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(iotc_mqtt_reader_feed(&r, chunk + 10, 2, &consumed, &p, &err), st);
        assert_int_equal(err.status, st);
        assert_int_equal(err.offset, first.offset);
        assert_int_equal(err.reason, first.reason);
    }
    assert_int_equal(r.failed.status, st);
    iotc_mqtt_reader_reset(&r);
    assert_int_equal(r.failed.status, IOTC_MQTT_OK);
    assert_int_equal(iotc_mqtt_reader_feed(&r, chunk + 10, 2, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.type, IOTC_MQTT_PINGREQ);
    iotc_mqtt_reader_free(&r);

    /* A reset mid-packet forgets the partial packet. */
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL, 30, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    iotc_mqtt_reader_reset(&r);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGRESP, 2, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.type, IOTC_MQTT_PINGRESP);
    iotc_mqtt_reader_free(&r);

    /* A broken header mid-stream: the offset counts from that packet. */
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V311, 0, NULL, 0);
    static const uint8_t in2[] = {0xD0, 0x00, 0xD0, 0x00, 0x00, 0x00};
    assert_int_equal(iotc_mqtt_reader_feed(&r, in2, 6, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(iotc_mqtt_reader_feed(&r, in2 + 2, 4, &consumed, &p, NULL), IOTC_MQTT_OK);
    memset(&err, 0, sizeof err);
    assert_int_equal(iotc_mqtt_reader_feed(&r, in2 + 4, 2, &consumed, &p, &err), IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(err.offset, 0);
    assert_int_equal(r.stream_pos >= 4, true);
    iotc_mqtt_reader_free(&r);
    free(chunk);
}

/* A broker's reader learns the version from CONNECT. */
static void test_set_version(void **state)
{
    (void)state;
    iotc_mqtt_reader r;
    size_t consumed = 0;
    iotc_mqtt_packet p;

    /* A 5.0 PUBACK with a reason code is malformed in 3.1.1. */
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V311, 0, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBACK_SHORT3, sizeof S_V5_PUBACK_SHORT3, &consumed, &p, NULL),
                     IOTC_MQTT_ERR_MALFORMED);
    iotc_mqtt_reader_free(&r);

    iotc_mqtt_reader_init(&r, IOTC_MQTT_V311, 0, NULL, 0);
    /* The CONNECT is decoded by its own level... */
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_CONNECT_FULL, sizeof S_V5_CONNECT_FULL, &consumed, &p, NULL),
                     IOTC_MQTT_OK);
    assert_int_equal(p.u.connect.version, IOTC_MQTT_V5);
    assert_int_equal(p.u.connect.props.user_count, 2);
    /* ...and then the session's level is set. */
    iotc_mqtt_reader_set_version(&r, IOTC_MQTT_V5);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBACK_SHORT3, sizeof S_V5_PUBACK_SHORT3, &consumed, &p, NULL),
                     IOTC_MQTT_OK);
    assert_int_equal(p.u.ack.reason, 0x10);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_AUTH_FULL, sizeof S_V5_AUTH_FULL, &consumed, &p, NULL),
                     IOTC_MQTT_OK);
    assert_int_equal(p.type, IOTC_MQTT_AUTH);
    /* Split across the change too. */
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL, 20, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(
        iotc_mqtt_reader_feed(&r, S_V5_PUBLISH_FULL + 20, sizeof S_V5_PUBLISH_FULL - 20, &consumed, &p, NULL),
        IOTC_MQTT_OK);
    assert_int_equal(p.u.publish.props.sub_id_count, 3);
    iotc_mqtt_reader_free(&r);

    /* And back: AUTH is reserved in 3.1.1. */
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, NULL, 0);
    iotc_mqtt_reader_set_version(&r, IOTC_MQTT_V311);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_AUTH_EMPTY, 2, &consumed, &p, NULL), IOTC_MQTT_ERR_MALFORMED);
    iotc_mqtt_reader_reset(&r);
    iotc_mqtt_reader_set_version(&r, IOTC_MQTT_V5);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_V5_AUTH_EMPTY, 2, &consumed, &p, NULL), IOTC_MQTT_OK);
    iotc_mqtt_reader_free(&r);
}

static void test_feed_nothing(void **state)
{
    (void)state;
    iotc_mqtt_reader r;
    size_t consumed = 99;
    iotc_mqtt_packet p;
    iotc_mqtt_reader_init(&r, IOTC_MQTT_V5, 0, NULL, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGREQ, 0, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(consumed, 0);
    assert_int_equal(r.stream_pos, 0);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGREQ, 1, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGREQ, 0, &consumed, &p, NULL), IOTC_MQTT_NEED_MORE);
    assert_int_equal(iotc_mqtt_reader_feed(&r, S_PINGREQ + 1, 1, &consumed, &p, NULL), IOTC_MQTT_OK);
    assert_int_equal(p.type, IOTC_MQTT_PINGREQ);
    assert_int_equal(r.stream_pos, 2);
    iotc_mqtt_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_chunk_size_v5_own),
        cmocka_unit_test(test_every_chunk_size_v5_caller),
        cmocka_unit_test(test_every_chunk_size_v4),
        cmocka_unit_test(test_random_splits),
        cmocka_unit_test(test_whole_packet_views_into_chunk),
        cmocka_unit_test(test_split_packet_views_into_buffer),
        cmocka_unit_test(test_caller_buffer_too_small),
        cmocka_unit_test(test_caller_buffer_exact),
        cmocka_unit_test(test_own_buffer_grows_and_is_reused),
        cmocka_unit_test(test_max_packet_size_from_header),
        cmocka_unit_test(test_failure_sticks_until_reset),
        cmocka_unit_test(test_set_version),
        cmocka_unit_test(test_feed_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
