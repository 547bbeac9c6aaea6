/*
 * reader.c: the streaming decoder.  Packets that arrive whole inside one chunk
 * are decoded where they lie (no copy); only a packet split across chunks is
 * gathered, and only after its fixed header has shown it fits the limit.
 */
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"

void iotc_mqtt_reader_init(iotc_mqtt_reader *r, iotc_mqtt_version version, uint32_t max_packet_size, uint8_t *buf,
                           size_t cap)
{
    memset(r, 0, sizeof *r);
    r->version = version;
    r->max_packet_size = max_packet_size ? max_packet_size : IOTC_MQTT_MAX_PACKET;
    if (buf) {
        r->buf = buf;
        r->cap = cap;
        /* A packet the buffer cannot hold is refused whether or not it
         * happens to arrive in one piece: the outcome must not depend on how
         * the bytes were chunked. */
        if (cap < r->max_packet_size)
            r->max_packet_size = (uint32_t)cap;
    } else {
        r->owns_buf = true;
    }
}

void iotc_mqtt_reader_set_version(iotc_mqtt_reader *r, iotc_mqtt_version version)
{
    r->version = version;
}

void iotc_mqtt_reader_reset(iotc_mqtt_reader *r)
{
    r->hdr_len = 0;
    r->have = 0;
    r->total = 0;
    r->stream_pos = 0;
    memset(&r->failed, 0, sizeof r->failed);
}

void iotc_mqtt_reader_free(iotc_mqtt_reader *r)
{
    if (r->owns_buf)
        free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    iotc_mqtt_reader_reset(r);
}

static iotc_mqtt_status fail(iotc_mqtt_reader *r, const iotc_mqtt_error *e, iotc_mqtt_error *err)
{
    r->failed = *e;
    r->hdr_len = r->have = r->total = 0;
    if (err)
        *err = *e;
    return e->status;
}

static iotc_mqtt_status complete(iotc_mqtt_reader *r, const uint8_t *p, size_t n, size_t used, size_t *consumed,
                                 iotc_mqtt_packet *out, iotc_mqtt_error *err)
{
    iotc_mqtt_error e;
    size_t got;
    iotc_mqtt_status st = iotc_mqtt_decode(p, n, r->version, r->max_packet_size, out, &got, &e);
    *consumed = used;
    r->stream_pos += used;
    if (st != IOTC_MQTT_OK)
        return fail(r, &e, err);
    return IOTC_MQTT_OK;
}

iotc_mqtt_status iotc_mqtt_reader_feed(iotc_mqtt_reader *r, const uint8_t *in, size_t len, size_t *consumed,
                                       iotc_mqtt_packet *out, iotc_mqtt_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!r || !consumed || !out || (!in && len))
        return mq_fail(err, IOTC_MQTT_ERR_INVALID_ARG, IOTC_RC_UNSPECIFIED_ERROR, 0,
                       "iotc_mqtt_reader_feed: NULL reader, input, count or packet");
    *consumed = 0;
    if (r->failed.status != IOTC_MQTT_OK) {
        if (err)
            *err = r->failed;
        return r->failed.status;
    }

    /* Fast path: nothing pending and the whole packet is in this chunk. */
    if (r->hdr_len == 0 && len > 0) {
        size_t total;
        iotc_mqtt_error e;
        iotc_mqtt_status st = iotc_mqtt_decode(in, len, r->version, r->max_packet_size, out, &total, &e);
        if (st == IOTC_MQTT_OK) {
            *consumed = total;
            r->stream_pos += total;
            return IOTC_MQTT_OK;
        }
        if (st != IOTC_MQTT_NEED_MORE)
            return fail(r, &e, err);
    }

    size_t used = 0;
    while (used < len) {
        if (r->total == 0) {
            r->hdr[r->hdr_len++] = in[used++];
            uint8_t type, flags;
            uint32_t rem;
            size_t hlen;
            iotc_mqtt_error e;
            memset(&e, 0, sizeof e);
            iotc_mqtt_status st = iotc_mqtt_fixed_header(r->hdr, r->hdr_len, r->version, &type, &flags, &rem,
                                                         &hlen, &e);
            if (st == IOTC_MQTT_NEED_MORE)
                continue;
            if (st != IOTC_MQTT_OK) {
                r->stream_pos += used;
                *consumed = used;
                return fail(r, &e, err);
            }
            size_t total = hlen + rem;
            if (total > r->max_packet_size) {
                mq_fail(&e, IOTC_MQTT_ERR_TOO_LARGE, IOTC_RC_PACKET_TOO_LARGE, 1,
                        "packet is larger than the maximum packet size");
                r->stream_pos += used;
                *consumed = used;
                return fail(r, &e, err);
            }
            if (total > r->cap) {
                /* Only the reader's own buffer gets here: a caller's buffer
                 * bounds max_packet_size.  Grown once, kept for reuse. */
                size_t ncap = r->cap * 2 > total ? r->cap * 2 : total;
                if (ncap > r->max_packet_size)
                    ncap = total;
                uint8_t *nb = realloc(r->buf, ncap);
                if (!nb) {
                    mq_fail(&e, IOTC_MQTT_ERR_NOMEM, IOTC_RC_IMPLEMENTATION_SPECIFIC_ERROR, 1,
                            "no memory to gather the packet");
                    r->stream_pos += used;
                    *consumed = used;
                    return fail(r, &e, err);
                }
                r->buf = nb;
                r->cap = ncap;
            }
            memcpy(r->buf, r->hdr, hlen);
            r->have = hlen;
            r->total = total;
        } else {
            size_t take = r->total - r->have;
            if (take > len - used)
                take = len - used;
            memcpy(r->buf + r->have, in + used, take);
            r->have += take;
            used += take;
        }
        if (r->total && r->have == r->total) {
            size_t n = r->total;
            r->hdr_len = r->have = r->total = 0;
            return complete(r, r->buf, n, used, consumed, out, err);
        }
    }
    *consumed = used;
    r->stream_pos += used;
    return IOTC_MQTT_NEED_MORE;
}
