/* Test helpers for the MQTT codec tests; see mqtt_tu.h. */
#include "mqtt_tu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* With TU_SOFT=1 in the environment, helper checks report and go on (to see
 * every failure of a test at once); the helper then returns early. */
static bool tu_fail_(const char *file, int line)
{
    const char *soft = getenv("TU_SOFT");
    if (soft && soft[0] == '1') {
        print_error("[SOFT FAIL] %s:%d\n", file, line);
        return true;
    }
    _fail(file, line);
    return true;
}

#define TU_FAIL(file, line, ...)          \
    do {                                  \
        print_error(__VA_ARGS__);         \
        print_error("\n");                \
        if (tu_fail_(file, line))         \
            return;                       \
    } while (0)

#define TU_CHECK(cond, file, line, ...)            \
    do {                                           \
        if (!(cond))                               \
            TU_FAIL(file, line, __VA_ARGS__);      \
    } while (0)

/* Allocations live in static slots until the next use of the slot, so that a
 * failing check (cmocka longjmps out) leaves them reachable, not leaked. */
enum { SLOT_IN, SLOT_TRAIL, SLOT_OUT, SLOT_OUT2, NSLOTS };
static void *slots[NSLOTS];
static iotc_mqtt_reader slot_reader;
static bool slot_reader_live;

static uint8_t *slot_alloc(int slot, size_t n)
{
    free(slots[slot]);
    slots[slot] = malloc(n ? n : 1);
    assert_non_null(slots[slot]);
    return slots[slot];
}

static void slot_free(int slot)
{
    free(slots[slot]);
    slots[slot] = NULL;
}

static iotc_mqtt_reader *reader_start(iotc_mqtt_version v, uint32_t max)
{
    if (slot_reader_live)
        iotc_mqtt_reader_free(&slot_reader);
    iotc_mqtt_reader_init(&slot_reader, v, max, NULL, 0);
    slot_reader_live = true;
    return &slot_reader;
}

static void reader_end(void)
{
    iotc_mqtt_reader_free(&slot_reader);
    slot_reader_live = false;
}

void tu_hexdump(const char *label, const uint8_t *b, size_t n)
{
    char line[3 * 32 + 1];
    print_error("%s (%zu bytes):\n", label, n);
    for (size_t i = 0; i < n; i += 32) {
        size_t k = 0;
        for (size_t j = i; j < n && j < i + 32; j++)
            k += (size_t)snprintf(line + k, sizeof line - k, "%02X ", b[j]);
        line[k] = '\0';
        print_error("  %04zx: %s\n", i, line);
    }
}

bool tu_bytes_eq(iotc_mqtt_bytes b, const void *data, size_t len)
{
    if (b.len != len)
        return false;
    if (len == 0)
        return true;
    if (b.data == NULL || data == NULL)
        return false;
    return memcmp(b.data, data, len) == 0;
}

bool tu_str_eq(iotc_mqtt_bytes b, const char *s)
{
    return tu_bytes_eq(b, s, strlen(s));
}

size_t tu_vbi(uint32_t v, uint8_t *out)
{
    size_t n = 0;
    do {
        uint8_t d = (uint8_t)(v & 0x7Fu);
        v >>= 7;
        if (v)
            d = (uint8_t)(d | 0x80u);
        out[n++] = d;
    } while (v && n < 4);
    return n;
}

size_t tu_frame(uint8_t first, const uint8_t *body, size_t body_len, uint8_t *out)
{
    out[0] = first;
    size_t k = tu_vbi((uint32_t)body_len, out + 1);
    if (body_len)
        memcpy(out + 1 + k, body, body_len);
    return 1 + k + body_len;
}

uint32_t tu_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* ---- decoding ------------------------------------------------------------ */

static const char *st_name(iotc_mqtt_status s)
{
    switch (s) {
    case IOTC_MQTT_OK: return "OK";
    case IOTC_MQTT_NEED_MORE: return "NEED_MORE";
    case IOTC_MQTT_ERR_MALFORMED: return "ERR_MALFORMED";
    case IOTC_MQTT_ERR_PROTOCOL: return "ERR_PROTOCOL";
    case IOTC_MQTT_ERR_TOO_LARGE: return "ERR_TOO_LARGE";
    case IOTC_MQTT_ERR_UNSUPPORTED_VERSION: return "ERR_UNSUPPORTED_VERSION";
    case IOTC_MQTT_ERR_BUFFER: return "ERR_BUFFER";
    case IOTC_MQTT_ERR_INVALID_ARG: return "ERR_INVALID_ARG";
    case IOTC_MQTT_ERR_NOMEM: return "ERR_NOMEM";
    }
    return "?";
}

void tu_decode_ok_(const uint8_t *b, size_t n, iotc_mqtt_version v, iotc_mqtt_packet *p,
                   const char *file, int line)
{
    iotc_mqtt_error err;
    size_t used = 0;
    iotc_mqtt_packet tmp;
    iotc_mqtt_status st;

    /* On an exact-size heap copy: any read past n is caught by ASan/Valgrind. */
    uint8_t *h = slot_alloc(SLOT_IN, n);
    memcpy(h, b, n);
    memset(&err, 0, sizeof err);
    st = iotc_mqtt_decode(h, n, v, 0, &tmp, &used, &err);
    if (st != IOTC_MQTT_OK) {
        tu_hexdump("input", b, n);
        TU_FAIL(file, line, "decode: expected OK, got %s (reason 0x%02X at offset %zu: %s)",
                st_name(st), err.reason, err.offset, err.what ? err.what : "(null)");
    }
    TU_CHECK(used == n, file, line, "decode: used %zu, expected %zu", used, n);

    /* A maximum packet size of exactly n passes, n - 1 is refused. */
    st = iotc_mqtt_decode(h, n, v, (uint32_t)n, &tmp, &used, &err);
    TU_CHECK(st == IOTC_MQTT_OK, file, line, "decode with max %zu: %s", n, st_name(st));
    memset(&err, 0, sizeof err);
    st = iotc_mqtt_decode(h, n, v, (uint32_t)(n - 1), &tmp, &used, &err);
    TU_CHECK(st == IOTC_MQTT_ERR_TOO_LARGE, file, line, "decode with max %zu: expected ERR_TOO_LARGE, got %s",
             n - 1, st_name(st));
    TU_CHECK(err.status == IOTC_MQTT_ERR_TOO_LARGE && err.reason == 0x95, file, line,
             "too large: err.status %d reason 0x%02X", (int)err.status, err.reason);
    slot_free(SLOT_IN);

    /* Bytes after the packet are not part of it. */
    uint8_t *t = slot_alloc(SLOT_TRAIL, n + 3);
    memcpy(t, b, n);
    t[n] = 0xFF;
    t[n + 1] = 0xFF;
    t[n + 2] = 0x01;
    st = iotc_mqtt_decode(t, n + 3, v, 0, &tmp, &used, &err);
    TU_CHECK(st == IOTC_MQTT_OK && used == n, file, line,
             "decode with trailing bytes: %s, used %zu (expected %zu)", st_name(st), used, n);
    slot_free(SLOT_TRAIL);

    memset(p, 0xA5, sizeof *p); /* nothing may be left over from before */
    st = iotc_mqtt_decode(b, n, v, 0, p, &used, NULL);
    TU_CHECK(st == IOTC_MQTT_OK && used == n, file, line, "decode (err NULL): %s", st_name(st));
}

static bool reason_consistent(iotc_mqtt_status st, uint8_t reason)
{
    switch (st) {
    case IOTC_MQTT_ERR_MALFORMED: return reason == 0x81;
    case IOTC_MQTT_ERR_TOO_LARGE: return reason == 0x95;
    case IOTC_MQTT_ERR_UNSUPPORTED_VERSION: return reason == 0x84;
    case IOTC_MQTT_ERR_PROTOCOL:
        return reason >= 0x80 && reason != 0x81 && reason != 0x84 && reason != 0x95;
    default: return true;
    }
}

static uint64_t own_reason(iotc_mqtt_status st)
{
    switch (st) {
    case IOTC_MQTT_ERR_MALFORMED: return R81;
    case IOTC_MQTT_ERR_PROTOCOL: return R82;
    case IOTC_MQTT_ERR_TOO_LARGE: return R95;
    case IOTC_MQTT_ERR_UNSUPPORTED_VERSION: return R84;
    default: return 0;
    }
}

static void check_err(const char *how, iotc_mqtt_status st, const iotc_mqtt_error *err, const uint8_t *b,
                      size_t n, unsigned smask, uint64_t rmask, size_t lo, size_t hi, const char *file,
                      int line)
{
    if (st < IOTC_MQTT_ERR_MALFORMED || !(TU_S(st) & smask)) {
        tu_hexdump("input", b, n);
        TU_FAIL(file, line, "%s: unexpected status %s (reason 0x%02X, offset %zu, what: %s)", how,
                st_name(st), err->reason, err->offset, err->what ? err->what : "(null)");
    }
    TU_CHECK(err->status == st, file, line, "%s: err.status %s but returned %s", how, st_name(err->status),
             st_name(st));
    TU_CHECK(err->what != NULL && err->what[0] != '\0', file, line, "%s: err.what is empty", how);
    TU_CHECK(reason_consistent(st, err->reason), file, line, "%s: reason 0x%02X does not go with %s (%s)",
             how, err->reason, st_name(st), err->what);
    uint64_t rm = rmask ? rmask : own_reason(st);
    if (rm) {
        bool in = err->reason >= 0x80 && err->reason < 0xC0 && (rm & TU_R(err->reason));
        if (!in) {
            tu_hexdump("input", b, n);
            TU_FAIL(file, line, "%s: reason 0x%02X not among those expected (status %s, what: %s)", how,
                    err->reason, st_name(st), err->what);
        }
    }
    TU_CHECK(err->offset <= n, file, line, "%s: offset %zu beyond the %zu-byte input", how, err->offset, n);
    if (lo != TU_ANY && (err->offset < lo || err->offset > hi)) {
        tu_hexdump("input", b, n);
        TU_FAIL(file, line, "%s: offset %zu, expected %zu..%zu (status %s, what: %s)", how, err->offset, lo,
                hi, st_name(st), err->what);
    }
}

void tu_expect_err_(const uint8_t *b, size_t n, iotc_mqtt_version v, uint32_t max, unsigned smask,
                    uint64_t rmask, size_t lo, size_t hi, const char *file, int line)
{
    iotc_mqtt_packet pkt;
    iotc_mqtt_error err;
    size_t used = 0;
    uint8_t *h = slot_alloc(SLOT_IN, n);
    memcpy(h, b, n);

    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_decode(h, n, v, max, &pkt, &used, &err);
    check_err("decode", st, &err, b, n, smask, rmask, lo, hi, file, line);
    iotc_mqtt_error first = err;

    iotc_mqtt_status st2 = iotc_mqtt_decode(h, n, v, max, &pkt, &used, NULL);
    TU_CHECK(st2 == st, file, line, "decode with err NULL gave %s, with err %s", st_name(st2), st_name(st));

    /* The stream reader, given the bytes whole. */
    iotc_mqtt_reader *r = reader_start(v, max);
    size_t consumed = 0;
    memset(&err, 0, sizeof err);
    st2 = iotc_mqtt_reader_feed(r, h, n, &consumed, &pkt, &err);
    TU_CHECK(st2 == st, file, line, "reader (whole): %s, decode: %s", st_name(st2), st_name(st));
    TU_CHECK(err.status == st && err.reason == first.reason && err.offset == first.offset, file, line,
             "reader (whole): reason 0x%02X offset %zu, decode: reason 0x%02X offset %zu", err.reason,
             err.offset, first.reason, first.offset);
    TU_CHECK(consumed <= n, file, line, "reader consumed %zu of %zu", consumed, n);
    /* It stays failed. */
    st2 = iotc_mqtt_reader_feed(r, B(0xC0, 0x00), &consumed, &pkt, NULL);
    TU_CHECK(st2 == st, file, line, "reader after failure: %s, expected %s again", st_name(st2), st_name(st));

    /* The stream reader, one byte at a time. */
    r = reader_start(v, max);
    st2 = IOTC_MQTT_NEED_MORE;
    size_t i;
    for (i = 0; i < n && st2 == IOTC_MQTT_NEED_MORE; i++) {
        consumed = 0;
        memset(&err, 0, sizeof err);
        st2 = iotc_mqtt_reader_feed(r, h + i, 1, &consumed, &pkt, &err);
        if (st2 == IOTC_MQTT_NEED_MORE)
            TU_CHECK(consumed == 1, file, line, "reader NEED_MORE but consumed %zu of 1", consumed);
    }
    TU_CHECK(st2 == st, file, line, "reader (bytewise): %s after %zu bytes, decode: %s", st_name(st2), i,
             st_name(st));
    TU_CHECK(err.reason == first.reason && err.offset == first.offset, file, line,
             "reader (bytewise): reason 0x%02X offset %zu, decode: reason 0x%02X offset %zu", err.reason,
             err.offset, first.reason, first.offset);
    reader_end();
    slot_free(SLOT_IN);
}

/* ---- property blocks ------------------------------------------------------ */

size_t tu_prop_value_len(uint8_t id, const uint8_t *p, const uint8_t *end)
{
    size_t avail = (size_t)(end - p), need;
    switch (id) {
    case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
        need = 1;
        break;
    case 0x13: case 0x21: case 0x22: case 0x23:
        need = 2;
        break;
    case 0x02: case 0x11: case 0x18: case 0x27:
        need = 4;
        break;
    case 0x0B:
        need = 0;
        do {
            if (need >= avail || need >= 4)
                return 0;
            need++;
        } while (p[need - 1] & 0x80);
        break;
    case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A: case 0x1C: case 0x1F:
        if (avail < 2)
            return 0;
        need = 2 + (((size_t)p[0] << 8) | p[1]);
        break;
    case 0x26: {
        if (avail < 2)
            return 0;
        size_t k = 2 + (((size_t)p[0] << 8) | p[1]);
        if (avail < k + 2)
            return 0;
        need = k + 2 + (((size_t)p[k] << 8) | p[k + 1]);
        break;
    }
    default:
        return 0;
    }
    return need <= avail ? need : 0;
}

typedef struct {
    const uint8_t *p;
    size_t len; /* id + value */
} prop_entry;

static bool split_props(const uint8_t *b, size_t len, prop_entry *out, size_t cap, size_t *count)
{
    const uint8_t *p = b, *end = b + len;
    size_t n = 0;
    while (p < end) {
        if (n == cap || (*p & 0x80))
            return false;
        size_t vl = tu_prop_value_len(*p, p + 1, end);
        if (vl == 0)
            return false;
        out[n].p = p;
        out[n].len = 1 + vl;
        n++;
        p += 1 + vl;
    }
    *count = n;
    return true;
}

bool tu_prop_blocks_equiv(const uint8_t *a, const uint8_t *b, size_t len, char *why, size_t why_cap)
{
    prop_entry ea[96], eb[96];
    size_t na = 0, nb = 0;
    if (!split_props(a, len, ea, 96, &na)) {
        snprintf(why, why_cap, "expected property block does not parse (test bug)");
        return false;
    }
    if (!split_props(b, len, eb, 96, &nb)) {
        snprintf(why, why_cap, "encoded property block does not parse");
        return false;
    }
    if (na != nb) {
        snprintf(why, why_cap, "%zu properties expected, %zu encoded", na, nb);
        return false;
    }
    /* Repeating properties keep their relative order. */
    static const uint8_t ordered[2] = {0x26, 0x0B};
    for (int k = 0; k < 2; k++) {
        size_t i = 0, j = 0;
        for (;;) {
            while (i < na && ea[i].p[0] != ordered[k])
                i++;
            while (j < nb && eb[j].p[0] != ordered[k])
                j++;
            if (i == na || j == nb)
                break;
            if (ea[i].len != eb[j].len || memcmp(ea[i].p, eb[j].p, ea[i].len) != 0) {
                snprintf(why, why_cap, "property 0x%02X: list differs or is out of order", ordered[k]);
                return false;
            }
            i++;
            j++;
        }
        if (i != na || j != nb) {
            while (i < na && ea[i].p[0] != ordered[k])
                i++;
            while (j < nb && eb[j].p[0] != ordered[k])
                j++;
            if (i != na || j != nb) {
                snprintf(why, why_cap, "property 0x%02X: count differs", ordered[k]);
                return false;
            }
        }
    }
    bool used[96] = {false};
    for (size_t i = 0; i < na; i++) {
        size_t j;
        for (j = 0; j < nb; j++)
            if (!used[j] && eb[j].len == ea[i].len && memcmp(eb[j].p, ea[i].p, ea[i].len) == 0)
                break;
        if (j == nb) {
            snprintf(why, why_cap, "expected property 0x%02X (entry %zu) missing or different", ea[i].p[0], i);
            return false;
        }
        used[j] = true;
    }
    return true;
}

static bool equiv(const uint8_t *exp, const uint8_t *got, size_t n, const tu_span *spans, size_t nspans,
                  char *why, size_t why_cap)
{
    size_t pos = 0;
    for (size_t s = 0; s <= nspans; s++) {
        size_t stop = s < nspans ? spans[s].off : n;
        for (; pos < stop; pos++)
            if (exp[pos] != got[pos]) {
                snprintf(why, why_cap, "first difference at offset %zu: expected %02X, got %02X", pos, exp[pos],
                         got[pos]);
                return false;
            }
        if (s < nspans) {
            if (!tu_prop_blocks_equiv(exp + spans[s].off, got + spans[s].off, spans[s].len, why, why_cap))
                return false;
            pos = spans[s].off + spans[s].len;
        }
    }
    return true;
}

static void check_buffer_errors(const iotc_mqtt_packet *p, iotc_mqtt_version v, size_t n, const char *file,
                                int line)
{
    size_t caps[4] = {0, 1, n / 2, n - 1};
    for (int i = 0; i < 4; i++) {
        size_t cap = caps[i];
        if (cap >= n)
            continue;
        /* Exactly cap bytes, so that a write past cap is caught. */
        uint8_t *out = slot_alloc(SLOT_OUT2, cap);
        size_t written = 0;
        iotc_mqtt_error err;
        memset(&err, 0, sizeof err);
        iotc_mqtt_status st = iotc_mqtt_encode(p, v, out, cap, &written, &err);
        slot_free(SLOT_OUT2);
        TU_CHECK(st == IOTC_MQTT_ERR_BUFFER, file, line, "encode with cap %zu (need %zu): %s", cap, n,
                 st_name(st));
        TU_CHECK(written == n, file, line, "encode with cap %zu: *written %zu, expected the size needed %zu", cap,
                 written, n);
    }
}

void tu_encode_eq_(const iotc_mqtt_packet *p, iotc_mqtt_version v, const uint8_t *exp, size_t n,
                   const tu_span *spans, size_t nspans, const char *file, int line)
{
    iotc_mqtt_error err;
    size_t size = 0, written = 0;
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_encoded_size(p, v, &size, &err);
    TU_CHECK(st == IOTC_MQTT_OK, file, line, "encoded_size: %s (%s)", st_name(st), err.what ? err.what : "");
    TU_CHECK(size == n, file, line, "encoded_size %zu, expected %zu", size, n);

    uint8_t *out = slot_alloc(SLOT_OUT, n + 16);
    memset(out, 0xEE, n + 16);
    st = iotc_mqtt_encode(p, v, out, n + 16, &written, &err);
    if (st != IOTC_MQTT_OK)
        TU_FAIL(file, line, "encode: %s (%s)", st_name(st), err.what ? err.what : "");
    if (written != n) {
        tu_hexdump("expected", exp, n);
        tu_hexdump("encoded", out, written <= n + 16 ? written : n + 16);
        TU_FAIL(file, line, "encode wrote %zu bytes, expected %zu", written, n);
    }
    char why[160];
    if (!equiv(exp, out, n, spans, nspans, why, sizeof why)) {
        tu_hexdump("expected", exp, n);
        tu_hexdump("encoded", out, n);
        TU_FAIL(file, line, "encoding differs: %s", why);
    }

    /* Exactly the right capacity is enough. */
    out = slot_alloc(SLOT_OUT, n);
    st = iotc_mqtt_encode(p, v, out, n, &written, NULL);
    slot_free(SLOT_OUT);
    TU_CHECK(st == IOTC_MQTT_OK && written == n, file, line, "encode with cap == size: %s", st_name(st));
    check_buffer_errors(p, v, n, file, line);
}

void tu_encode_oneof_(const iotc_mqtt_packet *p, iotc_mqtt_version v, const uint8_t *const *alts,
                      const size_t *lens, size_t nalts, const char *file, int line)
{
    uint8_t out[512];
    size_t written = 0, size = 0;
    iotc_mqtt_error err;
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_encode(p, v, out, sizeof out, &written, &err);
    TU_CHECK(st == IOTC_MQTT_OK, file, line, "encode: %s (%s)", st_name(st), err.what ? err.what : "");
    st = iotc_mqtt_encoded_size(p, v, &size, NULL);
    TU_CHECK(st == IOTC_MQTT_OK && size == written, file, line, "encoded_size %zu (%s), encode wrote %zu", size,
             st_name(st), written);
    for (size_t i = 0; i < nalts; i++)
        if (lens[i] == written && memcmp(alts[i], out, written) == 0) {
            check_buffer_errors(p, v, written, file, line);
            return;
        }
    tu_hexdump("encoded", out, written);
    for (size_t i = 0; i < nalts; i++)
        tu_hexdump("allowed", alts[i], lens[i]);
    TU_FAIL(file, line, "encoding is none of the allowed forms");
}

void tu_encode_invalid_(const iotc_mqtt_packet *p, iotc_mqtt_version v, const char *file, int line)
{
    uint8_t out[256];
    size_t written = 0, size = 0;
    iotc_mqtt_error err;
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_encode(p, v, out, sizeof out, &written, &err);
    if (st != IOTC_MQTT_ERR_INVALID_ARG) {
        if (st == IOTC_MQTT_OK)
            tu_hexdump("encoded", out, written);
        TU_FAIL(file, line, "encode: expected ERR_INVALID_ARG, got %s", st_name(st));
    }
    TU_CHECK(err.status == IOTC_MQTT_ERR_INVALID_ARG, file, line, "err.status %s", st_name(err.status));
    TU_CHECK(err.what != NULL && err.what[0] != '\0', file, line, "err.what empty");
    st = iotc_mqtt_encoded_size(p, v, &size, &err);
    TU_CHECK(st == IOTC_MQTT_ERR_INVALID_ARG, file, line, "encoded_size: expected ERR_INVALID_ARG, got %s",
             st_name(st));
}

/* ---- deep comparison -------------------------------------------------------- */

static bool same(iotc_mqtt_bytes a, iotc_mqtt_bytes b)
{
    return tu_bytes_eq(a, b.data, b.len);
}

#define EQ(cond, ...) TU_CHECK(cond, file, line, __VA_ARGS__)

void tu_props_eq_(const iotc_mqtt_props *a, const iotc_mqtt_props *b, const char *what, const char *file,
                  int line)
{
    const uint64_t lists = IOTC_PROP_BIT(IOTC_PROP_USER_PROPERTY) | IOTC_PROP_BIT(IOTC_PROP_SUBSCRIPTION_IDENTIFIER);
    uint64_t pa = a->present & ~lists, pb = b->present & ~lists;
    EQ(pa == pb, "%s: present 0x%016llx vs 0x%016llx", what, (unsigned long long)pa, (unsigned long long)pb);
#define P(id) (pa & IOTC_PROP_BIT(IOTC_PROP_##id))
#define NUM(id, f) \
    if (P(id))     \
        EQ(a->f == b->f, "%s: " #f " %lu vs %lu", what, (unsigned long)a->f, (unsigned long)b->f)
#define BYT(id, f) \
    if (P(id))     \
        EQ(same(a->f, b->f), "%s: " #f " differs (%zu vs %zu bytes)", what, a->f.len, b->f.len)
    NUM(PAYLOAD_FORMAT_INDICATOR, payload_format_indicator);
    NUM(REQUEST_PROBLEM_INFORMATION, request_problem_information);
    NUM(REQUEST_RESPONSE_INFORMATION, request_response_information);
    NUM(MAXIMUM_QOS, maximum_qos);
    NUM(RETAIN_AVAILABLE, retain_available);
    NUM(WILDCARD_SUBSCRIPTION_AVAILABLE, wildcard_subscription_available);
    NUM(SUBSCRIPTION_IDENTIFIER_AVAILABLE, subscription_identifier_available);
    NUM(SHARED_SUBSCRIPTION_AVAILABLE, shared_subscription_available);
    NUM(SERVER_KEEP_ALIVE, server_keep_alive);
    NUM(RECEIVE_MAXIMUM, receive_maximum);
    NUM(TOPIC_ALIAS_MAXIMUM, topic_alias_maximum);
    NUM(TOPIC_ALIAS, topic_alias);
    NUM(MESSAGE_EXPIRY_INTERVAL, message_expiry_interval);
    NUM(SESSION_EXPIRY_INTERVAL, session_expiry_interval);
    NUM(WILL_DELAY_INTERVAL, will_delay_interval);
    NUM(MAXIMUM_PACKET_SIZE, maximum_packet_size);
    BYT(CONTENT_TYPE, content_type);
    BYT(RESPONSE_TOPIC, response_topic);
    BYT(CORRELATION_DATA, correlation_data);
    BYT(ASSIGNED_CLIENT_IDENTIFIER, assigned_client_identifier);
    BYT(AUTHENTICATION_METHOD, authentication_method);
    BYT(AUTHENTICATION_DATA, authentication_data);
    BYT(RESPONSE_INFORMATION, response_information);
    BYT(SERVER_REFERENCE, server_reference);
    BYT(REASON_STRING, reason_string);
#undef P
#undef NUM
#undef BYT

    size_t ia = 0, ib = 0, n = 0;
    iotc_mqtt_user_prop ua, ub;
    for (;;) {
        bool ha = iotc_mqtt_user_prop_next(a, &ia, &ua);
        bool hb = iotc_mqtt_user_prop_next(b, &ib, &ub);
        EQ(ha == hb, "%s: user property lists differ in length (at %zu)", what, n);
        if (!ha)
            break;
        EQ(same(ua.key, ub.key) && same(ua.value, ub.value), "%s: user property %zu differs", what, n);
        n++;
        EQ(n < 10000, "%s: user_prop_next does not end", what);
    }
    EQ(n == a->user_count && n == b->user_count, "%s: %zu user properties walked, user_count %zu and %zu", what, n,
       a->user_count, b->user_count);

    ia = ib = n = 0;
    uint32_t sa, sb;
    for (;;) {
        bool ha = iotc_mqtt_sub_id_next(a, &ia, &sa);
        bool hb = iotc_mqtt_sub_id_next(b, &ib, &sb);
        EQ(ha == hb, "%s: subscription identifier lists differ in length (at %zu)", what, n);
        if (!ha)
            break;
        EQ(sa == sb, "%s: subscription identifier %zu: %lu vs %lu", what, n, (unsigned long)sa, (unsigned long)sb);
        n++;
        EQ(n < 10000, "%s: sub_id_next does not end", what);
    }
    EQ(n == a->sub_id_count && n == b->sub_id_count, "%s: %zu subscription ids walked, sub_id_count %zu and %zu",
       what, n, a->sub_id_count, b->sub_id_count);
}

void tu_packet_eq_(const iotc_mqtt_packet *a, const iotc_mqtt_packet *b, iotc_mqtt_version v, const char *file,
                   int line)
{
    EQ(a->type == b->type, "type %d vs %d", (int)a->type, (int)b->type);
    switch (a->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        EQ(x->version == y->version, "connect.version %d vs %d", (int)x->version, (int)y->version);
        EQ(x->clean_start == y->clean_start, "connect.clean_start");
        EQ(x->keep_alive == y->keep_alive, "connect.keep_alive %u vs %u", x->keep_alive, y->keep_alive);
        EQ(same(x->client_id, y->client_id), "connect.client_id");
        EQ(x->will == y->will, "connect.will");
        if (x->will) {
            EQ(x->will_qos == y->will_qos, "connect.will_qos %u vs %u", x->will_qos, y->will_qos);
            EQ(x->will_retain == y->will_retain, "connect.will_retain");
            EQ(same(x->will_topic, y->will_topic), "connect.will_topic");
            EQ(same(x->will_payload, y->will_payload), "connect.will_payload");
            if (x->version == IOTC_MQTT_V5)
                tu_props_eq_(&x->will_props, &y->will_props, "will_props", file, line);
        }
        EQ(x->has_username == y->has_username, "connect.has_username");
        if (x->has_username)
            EQ(same(x->username, y->username), "connect.username");
        EQ(x->has_password == y->has_password, "connect.has_password");
        if (x->has_password)
            EQ(same(x->password, y->password), "connect.password");
        if (x->version == IOTC_MQTT_V5)
            tu_props_eq_(&x->props, &y->props, "connect.props", file, line);
        break;
    }
    case IOTC_MQTT_CONNACK:
        EQ(a->u.connack.session_present == b->u.connack.session_present, "connack.session_present");
        EQ(a->u.connack.reason == b->u.connack.reason, "connack.reason 0x%02X vs 0x%02X", a->u.connack.reason,
           b->u.connack.reason);
        if (v == IOTC_MQTT_V5)
            tu_props_eq_(&a->u.connack.props, &b->u.connack.props, "connack.props", file, line);
        break;
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        EQ(x->dup == y->dup && x->qos == y->qos && x->retain == y->retain, "publish flags dup %d/%d qos %u/%u retain %d/%d",
           x->dup, y->dup, x->qos, y->qos, x->retain, y->retain);
        EQ(same(x->topic, y->topic), "publish.topic");
        if (x->qos > 0)
            EQ(x->packet_id == y->packet_id, "publish.packet_id %u vs %u", x->packet_id, y->packet_id);
        EQ(same(x->payload, y->payload), "publish.payload (%zu vs %zu bytes)", x->payload.len, y->payload.len);
        if (v == IOTC_MQTT_V5)
            tu_props_eq_(&x->props, &y->props, "publish.props", file, line);
        break;
    }
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        EQ(a->u.ack.packet_id == b->u.ack.packet_id, "ack.packet_id %u vs %u", a->u.ack.packet_id, b->u.ack.packet_id);
        if (v == IOTC_MQTT_V5) {
            EQ(a->u.ack.reason == b->u.ack.reason, "ack.reason 0x%02X vs 0x%02X", a->u.ack.reason, b->u.ack.reason);
            tu_props_eq_(&a->u.ack.props, &b->u.ack.props, "ack.props", file, line);
        }
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *x = &a->u.subscribe, *y = &b->u.subscribe;
        EQ(x->packet_id == y->packet_id, "subscribe.packet_id");
        if (v == IOTC_MQTT_V5)
            tu_props_eq_(&x->props, &y->props, "subscribe.props", file, line);
        size_t ia = 0, ib = 0, n = 0;
        iotc_mqtt_sub sa, sb;
        for (;;) {
            bool ha = iotc_mqtt_sub_next(x, &ia, &sa), hb = iotc_mqtt_sub_next(y, &ib, &sb);
            EQ(ha == hb, "subscribe: lists differ in length at %zu", n);
            if (!ha)
                break;
            EQ(same(sa.filter, sb.filter), "subscribe[%zu].filter", n);
            EQ(sa.qos == sb.qos, "subscribe[%zu].qos %u vs %u", n, sa.qos, sb.qos);
            if (v == IOTC_MQTT_V5) {
                EQ(sa.no_local == sb.no_local, "subscribe[%zu].no_local", n);
                EQ(sa.retain_as_published == sb.retain_as_published, "subscribe[%zu].retain_as_published", n);
                EQ(sa.retain_handling == sb.retain_handling, "subscribe[%zu].retain_handling %u vs %u", n,
                   sa.retain_handling, sb.retain_handling);
            }
            n++;
            EQ(n < 10000, "sub_next does not end");
        }
        EQ(n == x->count && n == y->count, "subscribe: %zu walked, count %zu and %zu", n, x->count, y->count);
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        const iotc_mqtt_suback *x = &a->u.suback, *y = &b->u.suback;
        EQ(x->packet_id == y->packet_id, "suback.packet_id");
        if (v == IOTC_MQTT_V5)
            tu_props_eq_(&x->props, &y->props, "suback.props", file, line);
        EQ(x->count == y->count, "suback.count %zu vs %zu", x->count, y->count);
        for (size_t i = 0; i < x->count; i++)
            EQ(x->codes[i] == y->codes[i], "suback.codes[%zu] 0x%02X vs 0x%02X", i, x->codes[i], y->codes[i]);
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        const iotc_mqtt_unsubscribe *x = &a->u.unsubscribe, *y = &b->u.unsubscribe;
        EQ(x->packet_id == y->packet_id, "unsubscribe.packet_id");
        if (v == IOTC_MQTT_V5)
            tu_props_eq_(&x->props, &y->props, "unsubscribe.props", file, line);
        size_t ia = 0, ib = 0, n = 0;
        iotc_mqtt_bytes fa, fb;
        for (;;) {
            bool ha = iotc_mqtt_unsub_next(x, &ia, &fa), hb = iotc_mqtt_unsub_next(y, &ib, &fb);
            EQ(ha == hb, "unsubscribe: lists differ in length at %zu", n);
            if (!ha)
                break;
            EQ(same(fa, fb), "unsubscribe[%zu] differs", n);
            n++;
            EQ(n < 10000, "unsub_next does not end");
        }
        EQ(n == x->count && n == y->count, "unsubscribe: %zu walked, count %zu and %zu", n, x->count, y->count);
        break;
    }
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (v == IOTC_MQTT_V5) {
            EQ(a->u.disconnect.reason == b->u.disconnect.reason, "reason 0x%02X vs 0x%02X", a->u.disconnect.reason,
               b->u.disconnect.reason);
            tu_props_eq_(&a->u.disconnect.props, &b->u.disconnect.props, "disconnect/auth props", file, line);
        }
        break;
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP:
        break;
    }
}

/* ---- properties per packet --------------------------------------------------- */

#define T(t) (1u << IOTC_MQTT_##t)
const tu_allow_row tu_allow_table[] = {
    {0x01, T(PUBLISH) | TU_WILL},
    {0x02, T(PUBLISH) | TU_WILL},
    {0x03, T(PUBLISH) | TU_WILL},
    {0x08, T(PUBLISH) | TU_WILL},
    {0x09, T(PUBLISH) | TU_WILL},
    {0x0B, T(PUBLISH) | T(SUBSCRIBE)},
    {0x11, T(CONNECT) | T(CONNACK) | T(DISCONNECT)},
    {0x12, T(CONNACK)},
    {0x13, T(CONNACK)},
    {0x15, T(CONNECT) | T(CONNACK) | T(AUTH)},
    {0x16, T(CONNECT) | T(CONNACK) | T(AUTH)},
    {0x17, T(CONNECT)},
    {0x18, TU_WILL},
    {0x19, T(CONNECT)},
    {0x1A, T(CONNACK)},
    {0x1C, T(CONNACK) | T(DISCONNECT)},
    {0x1F, T(CONNACK) | T(PUBACK) | T(PUBREC) | T(PUBREL) | T(PUBCOMP) | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT) |
               T(AUTH)},
    {0x21, T(CONNECT) | T(CONNACK)},
    {0x22, T(CONNECT) | T(CONNACK)},
    {0x23, T(PUBLISH)},
    {0x24, T(CONNACK)},
    {0x25, T(CONNACK)},
    {0x26, T(CONNECT) | T(CONNACK) | T(PUBLISH) | TU_WILL | T(PUBACK) | T(PUBREC) | T(PUBREL) | T(PUBCOMP) |
               T(SUBSCRIBE) | T(SUBACK) | T(UNSUBSCRIBE) | T(UNSUBACK) | T(DISCONNECT) | T(AUTH)},
    {0x27, T(CONNECT) | T(CONNACK)},
    {0x28, T(CONNACK)},
    {0x29, T(CONNACK)},
    {0x2A, T(CONNACK)},
};
#undef T
const size_t tu_allow_count = sizeof tu_allow_table / sizeof tu_allow_table[0];

bool tu_prop_is_allowed(uint8_t id, unsigned t)
{
    for (size_t i = 0; i < tu_allow_count; i++)
        if (tu_allow_table[i].id == id)
            return (tu_allow_table[i].packets >> t) & 1u;
    return false;
}

size_t tu_build_with_props(unsigned t, const uint8_t *props, size_t n, uint8_t *out, size_t *props_off)
{
    uint8_t body[1024];
    size_t k = 0, at = 0;
    uint8_t first = (uint8_t)(t << 4);
#define PUT(...)                                   \
    do {                                           \
        static const uint8_t x_[] = {__VA_ARGS__}; \
        memcpy(body + k, x_, sizeof x_);           \
        k += sizeof x_;                            \
    } while (0)
#define PROPS()                                    \
    do {                                           \
        k += tu_vbi((uint32_t)n, body + k);        \
        at = k;                                    \
        if (n)                                     \
            memcpy(body + k, props, n);            \
        k += n;                                    \
    } while (0)
    switch (t) {
    case 0: /* Will properties: will flag, clean start; will topic "t", empty message */
        first = 0x10;
        PUT(0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x06, 0x00, 0x0A, 0x00, 0x00, 0x01, 'a');
        PROPS();
        PUT(0x00, 0x01, 't', 0x00, 0x00);
        break;
    case IOTC_MQTT_CONNECT:
        PUT(0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x0A);
        PROPS();
        PUT(0x00, 0x01, 'a');
        break;
    case IOTC_MQTT_CONNACK:
        PUT(0x00, 0x00);
        PROPS();
        break;
    case IOTC_MQTT_PUBLISH: /* QoS 1, topic "t", packet id 1, payload "p" */
        first = 0x32;
        PUT(0x00, 0x01, 't', 0x00, 0x01);
        PROPS();
        PUT('p');
        break;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        if (t == IOTC_MQTT_PUBREL)
            first = 0x62;
        PUT(0x00, 0x01, 0x00);
        PROPS();
        break;
    case IOTC_MQTT_SUBSCRIBE:
        first = 0x82;
        PUT(0x00, 0x01);
        PROPS();
        PUT(0x00, 0x01, 't', 0x00);
        break;
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK:
        PUT(0x00, 0x01);
        PROPS();
        PUT(0x00);
        break;
    case IOTC_MQTT_UNSUBSCRIBE:
        first = 0xA2;
        PUT(0x00, 0x01);
        PROPS();
        PUT(0x00, 0x01, 't');
        break;
    case IOTC_MQTT_DISCONNECT:
        PUT(0x00);
        PROPS();
        break;
    case IOTC_MQTT_AUTH: /* Continue authentication */
        PUT(0x18);
        PROPS();
        break;
    default:
        fail();
    }
#undef PUT
#undef PROPS
    uint8_t tmp[4];
    size_t hl = 1 + tu_vbi((uint32_t)k, tmp);
    if (props_off)
        *props_off = hl + at;
    return tu_frame(first, body, k, out);
}

size_t tu_prop_value(uint8_t id, uint8_t *out)
{
    switch (id) {
    case 0x01: case 0x24: /* payload format 0, maximum QoS 0 */
        out[0] = 0;
        return 1;
    case 0x17: case 0x19: case 0x25: case 0x28: case 0x29: case 0x2A: case 0x0B:
        out[0] = 1;
        return 1;
    case 0x13: case 0x21: case 0x22: case 0x23:
        out[0] = 0x00;
        out[1] = 0x0A;
        return 2;
    case 0x02: case 0x11: case 0x18: case 0x27:
        out[0] = 0x00;
        out[1] = 0x00;
        out[2] = 0x01;
        out[3] = 0x00;
        return 4;
    case 0x26:
        memcpy(out, "\x00\x01k\x00\x01v", 6);
        return 6;
    default: /* UTF-8 strings and binary data */
        memcpy(out, "\x00\x01x", 3);
        return 3;
    }
}

const iotc_mqtt_props *tu_props_of(const iotc_mqtt_packet *p, unsigned t)
{
    switch (t) {
    case 0: return &p->u.connect.will_props;
    case IOTC_MQTT_CONNECT: return &p->u.connect.props;
    case IOTC_MQTT_CONNACK: return &p->u.connack.props;
    case IOTC_MQTT_PUBLISH: return &p->u.publish.props;
    case IOTC_MQTT_PUBACK: case IOTC_MQTT_PUBREC: case IOTC_MQTT_PUBREL: case IOTC_MQTT_PUBCOMP:
        return &p->u.ack.props;
    case IOTC_MQTT_SUBSCRIBE: return &p->u.subscribe.props;
    case IOTC_MQTT_SUBACK: case IOTC_MQTT_UNSUBACK: return &p->u.suback.props;
    case IOTC_MQTT_UNSUBSCRIBE: return &p->u.unsubscribe.props;
    default: return &p->u.disconnect.props;
    }
}
