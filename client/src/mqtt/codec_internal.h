/*
 * codec_internal.h: what the codec's modules share and nobody else sees.
 *
 * A bounds-checked cursor over one packet's bytes (every read checks the end,
 * so no length field can make the decoder read past the packet), a writer
 * that counts what it would write even when the buffer is short (so the same
 * code computes encoded sizes), the error helper, and the property codec.
 */
#ifndef IOTC_CODEC_INTERNAL_H
#define IOTC_CODEC_INTERNAL_H

#include <string.h>

#include "iotc/mqtt.h"

/* ---- reading ---- */
typedef struct {
    const uint8_t *base; /* first byte of the packet (offsets in errors count from here) */
    size_t pos;
    size_t end;          /* one past the last byte this cursor may read */
    iotc_mqtt_error *err;
} mq_cur;

/* Records an error (first one wins) and returns its status. */
iotc_mqtt_status mq_fail(iotc_mqtt_error *err, iotc_mqtt_status st, uint8_t reason, size_t offset,
                         const char *what);
/* The comma operator lets the compiler see the (constant) status, so that
 * inlined readers do not look as if they could succeed without a value. */
#define MQ_MALFORMED(c, off, what)                                                                        \
    (mq_fail((c)->err, IOTC_MQTT_ERR_MALFORMED, IOTC_RC_MALFORMED_PACKET, (off), (what)), IOTC_MQTT_ERR_MALFORMED)
#define MQ_PROTOCOL(c, off, what)                                                                         \
    (mq_fail((c)->err, IOTC_MQTT_ERR_PROTOCOL, IOTC_RC_PROTOCOL_ERROR, (off), (what)), IOTC_MQTT_ERR_PROTOCOL)

static inline size_t mq_left(const mq_cur *c)
{
    return c->end - c->pos;
}

/* The readers every field goes through: inline, as they run several times
 * per packet on the hot path. */
static inline iotc_mqtt_status mq_u8(mq_cur *c, uint8_t *v, const char *what)
{
    if (mq_left(c) < 1)
        return MQ_MALFORMED(c, c->pos, what);
    *v = c->base[c->pos++];
    return IOTC_MQTT_OK;
}

static inline iotc_mqtt_status mq_u16(mq_cur *c, uint16_t *v, const char *what)
{
    if (mq_left(c) < 2)
        return MQ_MALFORMED(c, c->pos, what);
    *v = (uint16_t)((c->base[c->pos] << 8) | c->base[c->pos + 1]);
    c->pos += 2;
    return IOTC_MQTT_OK;
}

iotc_mqtt_status mq_u32(mq_cur *c, uint32_t *v, const char *what);
/* Variable Byte Integer: at most 4 bytes, minimal encoding.  One byte (every
 * property id, most lengths) inline; the rest out of line. */
iotc_mqtt_status mq_vbi_slow(mq_cur *c, uint32_t *v, const char *what);
static inline iotc_mqtt_status mq_vbi(mq_cur *c, uint32_t *v, const char *what)
{
    if (c->pos < c->end && c->base[c->pos] < 0x80) {
        *v = c->base[c->pos++];
        return IOTC_MQTT_OK;
    }
    return mq_vbi_slow(c, v, what);
}

/* Binary Data: 2-byte length, then bytes. */
static inline iotc_mqtt_status mq_bin(mq_cur *c, iotc_mqtt_bytes *v, const char *what)
{
    size_t at = c->pos;
    uint16_t n;
    if (mq_u16(c, &n, what) != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    if (mq_left(c) < n)
        return MQ_MALFORMED(c, at, what);
    v->data = c->base + c->pos;
    v->len = n;
    c->pos += n;
    return IOTC_MQTT_OK;
}

/* UTF-8 Encoded String: as binary, and well-formed UTF-8 (reason 0x81). */
static inline iotc_mqtt_status mq_str(mq_cur *c, iotc_mqtt_bytes *v, const char *what)
{
    size_t at = c->pos;
    if (mq_bin(c, v, what) != IOTC_MQTT_OK)
        return IOTC_MQTT_ERR_MALFORMED;
    size_t bad;
    if (!iotc_mqtt_utf8_valid(v->data, v->len, &bad))
        return MQ_MALFORMED(c, at + 2 + bad, what);
    return IOTC_MQTT_OK;
}

/* How many leading bytes of s are ASCII 0x01..0x7F (and not '+' or '#' when
 * asked), counted in whole 8-byte words: a fast prefix for the checks.
 * Inline: topics and property strings are short, a call would cost more
 * than the scan (the classic "word has a zero byte" trick). */
#define MQ_ONES 0x0101010101010101ull
#define MQ_HIGHS 0x8080808080808080ull
static inline bool mq_has_zero(uint64_t w)
{
    return ((w - MQ_ONES) & ~w & MQ_HIGHS) != 0;
}
static inline size_t mq_ascii_run(const uint8_t *s, size_t len, bool stop_at_wildcards)
{
    size_t i = 0;
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, s + i, 8); /* unaligned-safe; one load */
        if ((w & MQ_HIGHS) || mq_has_zero(w) ||
            (stop_at_wildcards && (mq_has_zero(w ^ (MQ_ONES * '+')) || mq_has_zero(w ^ (MQ_ONES * '#')))))
            break;
        i += 8;
    }
    return i;
}

/* Parses a VBI from raw bytes; returns 0 on OK, bytes used in *n; -1 if more
 * bytes are needed; -2 if malformed (5th byte or non-minimal). */
int mq_vbi_parse(const uint8_t *p, size_t len, uint32_t *v, size_t *n);
size_t mq_vbi_size(uint32_t v);

/* A string the encoder may write: at most 65535 bytes, not NULL when
 * non-empty, valid MQTT UTF-8. */
static inline bool mq_str_ok(iotc_mqtt_bytes b)
{
    return b.len <= 65535 && (b.len == 0 || b.data) && iotc_mqtt_utf8_valid(b.data, b.len, NULL);
}

/* ---- writing ---- */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len; /* counts past cap, so a short buffer still yields the size */
} mq_out;

void mq_put_u8(mq_out *o, uint8_t v);
void mq_put_u16(mq_out *o, uint16_t v);
void mq_put_u32(mq_out *o, uint32_t v);
void mq_put_vbi(mq_out *o, uint32_t v);
void mq_put_raw(mq_out *o, const void *p, size_t n);
void mq_put_bin(mq_out *o, iotc_mqtt_bytes b);

/* ---- properties ---- */

/* Parses a property block (its VBI length first) for packet `type` (will:
 * the CONNECT's Will properties).  Enforces the allow-list, value ranges,
 * duplicates and lengths. */
iotc_mqtt_status mq_props_decode(mq_cur *c, iotc_mqtt_type type, bool will, iotc_mqtt_props *p);

/* Validates `p` for encoding in `type`; *size is the block's length without
 * its own VBI length. */
iotc_mqtt_status mq_props_check(const iotc_mqtt_props *p, iotc_mqtt_type type, bool will, size_t *size,
                                iotc_mqtt_error *err);
/* Writes the VBI length and the block (after mq_props_check succeeded). */
void mq_props_encode(mq_out *o, const iotc_mqtt_props *p, size_t size);

/* True if `p` has no property at all. */
bool mq_props_empty(const iotc_mqtt_props *p);

/* ---- rules shared by decoder and encoder ---- */

/* Fixed-header flags the spec requires for `type` (not PUBLISH), or -1. */
int mq_required_flags(unsigned type);

#endif
