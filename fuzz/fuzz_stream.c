/*
 * fuzz/fuzz_stream.c: the streaming reader against the one-piece decoder.
 *
 * The input is a small header and a byte stream.  The stream is fed to
 * iotc_mqtt_reader_feed() in chunks whose sizes the header chooses, and at
 * every packet (or error) the reader yields, iotc_mqtt_decode() is run on the
 * rest of the whole stream from where that packet starts.  The two must agree
 * on every field, on where each packet ends, on the error (status, reason,
 * offset, rule) and on the number of packets before it; at the end of the
 * stream the decoder must see an incomplete packet or nothing.
 *
 * Input layout (see fuzz/README.md):
 *   byte 0  flags: bit 0   protocol level (0: 3.1.1, 1: 5)
 *                  bit 1   follow CONNECT: after a CONNECT, both sides switch
 *                          to the level it carries (as a broker does)
 *                  bit 2   feed an empty chunk after every chunk
 *                  bits 3-7  k: the small caller buffer holds 5 + 16*k bytes
 *   byte 1  maximum packet size: 0 for the protocol's maximum, else b*b
 *   byte 2  n: how many chunk-length bytes follow (0: the stream in one chunk)
 *   n bytes chunk lengths, used in a cycle: c < 128 gives c+1 bytes,
 *           c >= 128 gives (c-127)*128 bytes
 *   rest    the stream
 *
 * Each chunk is copied into its own heap block, freed once the reader has
 * taken all of it, so ASan catches a reader that keeps a pointer into a
 * chunk after returning from it.  Every view of every yielded packet is read
 * and must point into the current chunk or the reader's buffer.
 *
 * The reader runs in three set-ups: a caller buffer big enough for any packet
 * the input holds whole, the reader's own buffer (run twice with
 * iotc_mqtt_reader_reset() between, to exercise buffer reuse), and a small
 * caller buffer.  A caller's buffer is never reallocated, so the reader refuses
 * a packet that would not fit it as too large, however it is chunked (so says
 * reader.c); the decoder is therefore given the smaller of the maximum packet
 * size and the caller's capacity.  The agreement is strict in all three.
 */
#include "fuzz_util.h"

typedef struct {
    const uint8_t *data; /* the stream */
    size_t len;
    iotc_mqtt_version version;
    bool follow_connect;
    bool empty_feeds;
    uint32_t max_packet;
    const uint8_t *chunks;
    size_t nchunks;
} stream_cfg;

/* The maximum packet size a reader with a caller buffer of `cap` bytes (0: its own) enforces. */
static uint32_t effective_max(uint32_t max_packet, size_t cap)
{
    uint32_t m = max_packet ? max_packet : IOTC_MQTT_MAX_PACKET;
    if (cap && cap < m)
        m = (uint32_t)cap;
    return m;
}

typedef enum { MODE_CALLER_BIG, MODE_OWN, MODE_CALLER_SMALL } reader_mode;

static size_t chunk_len(const stream_cfg *c, size_t i)
{
    if (c->nchunks == 0)
        return c->len;
    uint8_t b = c->chunks[i % c->nchunks];
    return b < 128 ? (size_t)b + 1 : ((size_t)b - 127) * 128;
}

/* Feeds the whole stream once; returns the number of packets. */
static size_t run_reader(const stream_cfg *c, iotc_mqtt_reader *r, reader_mode mode, size_t cap,
                         const char *ctx)
{
    uint32_t max = effective_max(c->max_packet, mode == MODE_OWN ? 0 : cap);
    size_t pos = 0;  /* stream bytes the reader has consumed */
    size_t dpos = 0; /* where the decoder's next packet starts */
    size_t npackets = 0;
    size_t ci = 0;
    iotc_mqtt_version dver = c->version;
    bool failed = false;

    while (pos < c->len && !failed) {
        size_t clen = chunk_len(c, ci++);
        if (clen > c->len - pos)
            clen = c->len - pos;
        uint8_t *chunk = malloc(clen);
        FZ_EXPECT(ctx, chunk != NULL);
        memcpy(chunk, c->data + pos, clen);

        size_t off = 0;
        while (off < clen) {
            iotc_mqtt_packet pkt, dp;
            iotc_mqtt_error err, derr;
            size_t consumed = (size_t)-1, used = (size_t)-1;
            /* Garbage, so that a field the reader forgets to set shows up. */
            memset(&pkt, 0xA5, sizeof pkt);
            memset(&dp, 0xA5, sizeof dp);
            memset(&err, 0xA5, sizeof err);
            memset(&derr, 0xA5, sizeof derr);
            /* One set-up passes err = NULL and reads the failure from the reader. */
            iotc_mqtt_status st = iotc_mqtt_reader_feed(r, chunk + off, clen - off, &consumed, &pkt,
                                                        mode == MODE_OWN ? NULL : &err);
            if (mode == MODE_OWN)
                err = r->failed;

            if (st == IOTC_MQTT_OK) {
                FZ_EXPECT(ctx, consumed >= 1 && consumed <= clen - off);
                off += consumed;
                pos += consumed;
                FZ_EXPECT(ctx, r->stream_pos == pos);

                iotc_mqtt_status ds =
                    iotc_mqtt_decode(c->data + dpos, c->len - dpos, dver, max, &dp, &used, &derr);
                FZ_EXPECT(ctx, ds == IOTC_MQTT_OK);
                /* Both must end the packet at the same byte of the stream... */
                FZ_EXPECT(ctx, dpos + used == pos);
                /* ...where its fixed header says it ends. */
                uint8_t ftype, fflags;
                uint32_t frem;
                size_t fhl;
                FZ_EXPECT(ctx, iotc_mqtt_fixed_header(c->data + dpos, used, dver, &ftype, &fflags, &frem, &fhl,
                                                      NULL) == IOTC_MQTT_OK);
                FZ_EXPECT(ctx, ftype == (uint8_t)pkt.type && fhl + frem == used);
                fz_check_decoded(ctx, &pkt, dver);
                fz_packet_eq(ctx, &pkt, &dp, dver, true);

                fz_visit vis;
                fz_visit_init(&vis, ctx);
                fz_visit_bound(&vis, 0, chunk, clen);
                fz_visit_bound(&vis, 1, r->buf, r->buf ? r->cap : 0);
                fz_visit_packet(&vis, &pkt, dver);
                fz_visit dvis;
                fz_visit_init(&dvis, ctx);
                fz_visit_bound(&dvis, 0, c->data + dpos, used);
                fz_visit_bound(&dvis, 1, c->data + dpos, used);
                fz_visit_packet(&dvis, &dp, dver);
                FZ_EXPECT(ctx, vis.sum == dvis.sum && vis.views == dvis.views);

                dpos += used;
                npackets++;
                if (c->follow_connect && pkt.type == IOTC_MQTT_CONNECT) {
                    dver = pkt.u.connect.version;
                    iotc_mqtt_reader_set_version(r, dver);
                }
            } else if (st == IOTC_MQTT_NEED_MORE) {
                FZ_EXPECT(ctx, consumed == clen - off);
                off = clen;
                pos += consumed;
                FZ_EXPECT(ctx, r->stream_pos == pos);
            } else {
                FZ_EXPECT(ctx, fz_is_error(st));
                FZ_EXPECT(ctx, consumed <= clen - off);
                FZ_EXPECT(ctx, r->failed.status == st);
                fz_check_error(ctx, st, &err, (size_t)-1);

                iotc_mqtt_status ds =
                    iotc_mqtt_decode(c->data + dpos, c->len - dpos, dver, max, &dp, &used, &derr);
                FZ_EXPECT(ctx, ds == st);
                fz_err_eq(ctx, &err, &derr);

                /* Once failed, it stays failed whatever it is fed. */
                size_t rest = clen - off - consumed;
                iotc_mqtt_error err2;
                size_t consumed2 = (size_t)-1;
                iotc_mqtt_status st2 = iotc_mqtt_reader_feed(r, rest ? chunk + off + consumed : chunk,
                                                             rest, &consumed2, &pkt, &err2);
                FZ_EXPECT(ctx, st2 == st);
                failed = true;
                break;
            }
        }
        if (c->empty_feeds && !failed) {
            iotc_mqtt_packet pkt;
            size_t consumed = (size_t)-1;
            iotc_mqtt_status st = iotc_mqtt_reader_feed(r, chunk, 0, &consumed, &pkt, NULL);
            FZ_EXPECT(ctx, st == IOTC_MQTT_NEED_MORE && consumed == 0);
        }
        free(chunk);
    }

    if (!failed && dpos < c->len) {
        /* The reader holds the start of a packet: the decoder must call it incomplete. */
        iotc_mqtt_packet dp;
        iotc_mqtt_error derr;
        size_t used = (size_t)-1;
        iotc_mqtt_status ds =
            iotc_mqtt_decode(c->data + dpos, c->len - dpos, dver, max, &dp, &used, &derr);
        FZ_EXPECT(ctx, ds == IOTC_MQTT_NEED_MORE);
        FZ_EXPECT(ctx, used == 0 || used > c->len - dpos);
    }
    return npackets;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    stream_cfg c;
    uint8_t flags = data[0];
    c.version = (flags & 1) ? IOTC_MQTT_V5 : IOTC_MQTT_V311;
    c.follow_connect = (flags & 2) != 0;
    c.empty_feeds = (flags & 4) != 0;
    size_t small_cap = 5 + 16 * (size_t)(flags >> 3);
    c.max_packet = data[1] ? (uint32_t)data[1] * data[1] : 0;
    size_t n = data[2];
    if (n > size - 3)
        n = size - 3;
    c.chunks = data + 3;
    c.nchunks = n;
    c.data = data + 3 + n;
    c.len = size - 3 - n;

    iotc_mqtt_reader r;

    /* A caller buffer no packet of this input can outgrow. */
    size_t big_cap = c.len + 5;
    uint8_t *big = malloc(big_cap);
    FZ_EXPECT("setup", big != NULL);
    iotc_mqtt_reader_init(&r, c.version, c.max_packet, big, big_cap);
    size_t n_big = run_reader(&c, &r, MODE_CALLER_BIG, big_cap, "caller buffer");
    iotc_mqtt_reader_free(&r);
    free(big);

    /* The reader's own buffer, twice, to reuse what the first pass grew. */
    iotc_mqtt_reader_init(&r, c.version, c.max_packet, NULL, 0);
    size_t n_own = run_reader(&c, &r, MODE_OWN, 0, "own buffer");
    FZ_EXPECT("own buffer", n_own == n_big);
    iotc_mqtt_reader_reset(&r);
    FZ_EXPECT("own buffer after reset", r.stream_pos == 0);
    iotc_mqtt_reader_set_version(&r, c.version);
    size_t n_own2 = run_reader(&c, &r, MODE_OWN, 0, "own buffer after reset");
    FZ_EXPECT("own buffer after reset", n_own2 == n_big);
    iotc_mqtt_reader_free(&r);

    /* A small caller buffer: fewer packets only when one did not fit. */
    uint8_t *small = malloc(small_cap);
    FZ_EXPECT("setup", small != NULL);
    iotc_mqtt_reader_init(&r, c.version, c.max_packet, small, small_cap);
    size_t n_small = run_reader(&c, &r, MODE_CALLER_SMALL, small_cap, "small caller buffer");
    FZ_EXPECT("small caller buffer", n_small <= n_big);
    iotc_mqtt_reader_free(&r);
    free(small);
    return 0;
}
