/*
 * primitives.c: the data representations of MQTT §1.5 (integers, Variable
 * Byte Integers, binary data, UTF-8 strings), read through a bounds-checked
 * cursor and written through a size-counting writer.
 */
#include <string.h>

#include "codec_internal.h"

iotc_mqtt_status mq_fail(iotc_mqtt_error *err, iotc_mqtt_status st, uint8_t reason, size_t offset,
                         const char *what)
{
    if (err && err->status == IOTC_MQTT_OK) {
        err->status = st;
        err->reason = reason;
        err->offset = offset;
        err->what = what;
    }
    return st;
}



iotc_mqtt_status mq_u32(mq_cur *c, uint32_t *v, const char *what)
{
    if (mq_left(c) < 4)
        return MQ_MALFORMED(c, c->pos, what);
    const uint8_t *p = c->base + c->pos;
    *v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    c->pos += 4;
    return IOTC_MQTT_OK;
}

int mq_vbi_parse(const uint8_t *p, size_t len, uint32_t *v, size_t *n)
{
    uint32_t value = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len)
            return -1;
        value |= (uint32_t)(p[i] & 0x7F) << (7 * i);
        if (!(p[i] & 0x80)) {
            /* [MQTT-1.5.5-1] minimal encoding: a last byte of 0 after others
             * means the value fitted in fewer bytes. */
            if (i > 0 && p[i] == 0)
                return -2;
            *v = value;
            *n = i + 1;
            return 0;
        }
    }
    return -2; /* a fifth byte would be needed */
}

size_t mq_vbi_size(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

size_t iotc_mqtt_vbi_encode(uint32_t v, uint8_t out[4])
{
    if (v > IOTC_MQTT_VBI_MAX)
        return 0;
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            b |= 0x80;
        out[n++] = b;
    } while (v);
    return n;
}

iotc_mqtt_status mq_vbi_slow(mq_cur *c, uint32_t *v, const char *what)
{
    size_t n = 0;
    int r = mq_vbi_parse(c->base + c->pos, mq_left(c), v, &n);
    if (r != 0)
        return MQ_MALFORMED(c, c->pos, what);
    c->pos += n;
    return IOTC_MQTT_OK;
}



/*
 * RFC 3629 well-formedness, which already excludes overlong forms, code points
 * above U+10FFFF and the surrogates U+D800..U+DFFF ([MQTT-1.5.4-1]); MQTT adds
 * U+0000 ([MQTT-1.5.4-2]).  Hand-written: OpenSSL has no public UTF-8
 * validator, and this sits on the hot path of every PUBLISH topic.
 */
bool iotc_mqtt_utf8_valid(const uint8_t *s, size_t len, size_t *bad_at)
{
    size_t i = mq_ascii_run(s, len, false);
    while (i < len) {
        uint8_t b = s[i];
        if ((uint8_t)(b - 1) < 0x7F) { /* 0x01..0x7F */
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the first continuation byte */
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b == 0xE0) {
            need = 2;
            lo = 0xA0;
        } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
            need = 2;
        } else if (b == 0xED) {
            need = 2;
            hi = 0x9F; /* U+D800.. are surrogates */
        } else if (b == 0xF0) {
            need = 3;
            lo = 0x90;
        } else if (b >= 0xF1 && b <= 0xF3) {
            need = 3;
        } else if (b == 0xF4) {
            need = 3;
            hi = 0x8F;
        } else {
            goto bad; /* U+0000, a stray continuation, C0/C1, F5.. */
        }
        if (len - i <= need)
            goto bad;
        if (s[i + 1] < lo || s[i + 1] > hi)
            goto bad;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                goto bad;
        i += need + 1;
    }
    return true;
bad:
    if (bad_at)
        *bad_at = i;
    return false;
}

/* ---- writing ---- */

static void put(mq_out *o, const void *p, size_t n)
{
    if (o->len <= o->cap && n <= o->cap - o->len && o->buf)
        memcpy(o->buf + o->len, p, n);
    o->len += n;
}

void mq_put_u8(mq_out *o, uint8_t v)
{
    put(o, &v, 1);
}

void mq_put_u16(mq_out *o, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(o, b, 2);
}

void mq_put_u32(mq_out *o, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(o, b, 4);
}

void mq_put_vbi(mq_out *o, uint32_t v)
{
    uint8_t b[4];
    put(o, b, iotc_mqtt_vbi_encode(v, b));
}

void mq_put_raw(mq_out *o, const void *p, size_t n)
{
    if (n)
        put(o, p, n);
}

void mq_put_bin(mq_out *o, iotc_mqtt_bytes b)
{
    mq_put_u16(o, (uint16_t)b.len);
    mq_put_raw(o, b.data, b.len);
}
