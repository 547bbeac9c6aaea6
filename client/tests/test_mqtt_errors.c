/*
 * Codec tests, invalid packets: every validation the MQTT 3.1.1 (OASIS 2014)
 * and MQTT 5.0 (OASIS 2019) specifications require of a receiver, each with
 * its status, its reason code and, where it can be pinned, the byte offset
 * (from the packet's first byte) of the fault.
 *
 * Classification.  MQTT 5 §1.2 defines a Malformed Packet as one that "cannot
 * be parsed according to this specification" and a Protocol Error as one
 * "detected after the packet has been parsed".  Where the text names the
 * class ("is a Malformed Packet", "It is a Protocol Error to ...") the test is
 * strict (TU_MAL / TU_PROTO); where it only says MUST / MUST NOT, or for 3.1.1
 * (which only says "close the Network Connection"), either class is accepted
 * (TU_LOOSE) but an error is always required.
 *
 * Every case is also fed to the stream reader, whole and byte by byte, which
 * must fail the same way (see tu_expect_err_).  Inputs are copied to
 * exact-size heap buffers, so ASan/Valgrind catch any read past the end.
 */
#include "helpers/mqtt_tu.h"
#include "helpers/mqtt_samples.h"

#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"

#define ERR(v, sm, rm, lo, hi, ...)                                                                    \
    tu_expect_err_((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), v, 0, sm, rm, lo, \
                   hi, __FILE__, __LINE__)
#define OK(v, ...)                                                                                     \
    do {                                                                                               \
        iotc_mqtt_packet ok_p_;                                                                        \
        tu_decode_ok_((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), v, &ok_p_, \
                      __FILE__, __LINE__);                                                             \
    } while (0)

#define ANY TU_ANY, TU_ANY

/* ---- fixed header (§2.1) ---------------------------------------------------------------- */

/* Type 0 is reserved in both versions; 15 is AUTH in 5 and reserved in 3.1.1. */
static void test_reserved_types(void **state)
{
    (void)state;
    ERR(V4, TU_MAL, R81, 0, 0, 0x00, 0x00);
    ERR(V5, TU_MAL, R81, 0, 0, 0x00, 0x00);
    ERR(V5, TU_MAL, R81, 0, 0, 0x00, 0x02, 0x00, 0x01);
    ERR(V4, TU_MAL, R81, 0, 0, 0xF0, 0x00);
    ERR(V4, TU_MAL, R81, 0, 0, 0xF0, 0x02, 0x18, 0x00);

    iotc_mqtt_error err;
    uint8_t type, flags;
    uint32_t rem;
    size_t hl;
    memset(&err, 0, sizeof err);
    assert_int_equal(iotc_mqtt_fixed_header(B(0x00, 0x00), V5, &type, &flags, &rem, &hl, &err),
                     IOTC_MQTT_ERR_MALFORMED);
    assert_int_equal(iotc_mqtt_fixed_header(B(0xF0, 0x00), V4, &type, &flags, &rem, &hl, &err),
                     IOTC_MQTT_ERR_MALFORMED);
}

/* Table 2-2: PUBREL, SUBSCRIBE, UNSUBSCRIBE carry 0010, every other type
 * except PUBLISH 0000.  MQTT 5 §2.1.3: "If invalid flags are received it is a
 * Malformed Packet"; 3.1.1 [MQTT-2.2.2-2]. */
static void test_wrong_fixed_header_flags(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t i = 0; i < TU_NSAMPLES; i++) {
        const tu_sample *s = &tu_samples[i];
        uint8_t type = (uint8_t)(s->bytes[0] >> 4);
        if (type == IOTC_MQTT_PUBLISH)
            continue;
        uint8_t good = (type == 6 || type == 8 || type == 10) ? 0x2 : 0x0;
        assert_int_equal(s->bytes[0] & 0x0F, good);
        uint8_t *b = malloc(s->len);
        assert_non_null(b);
        memcpy(b, s->bytes, s->len);
        for (uint8_t f = 0; f < 16; f++) {
            if (f == good)
                continue;
            b[0] = (uint8_t)(type << 4 | f);
            tu_expect_err_(b, s->len, s->version, 0, TU_MAL, R81, 0, 0, __FILE__, __LINE__);
            uint8_t t2, f2;
            uint32_t rem;
            size_t hl;
            assert_int_equal(iotc_mqtt_fixed_header(b, s->len, s->version, &t2, &f2, &rem, &hl, NULL),
                             IOTC_MQTT_ERR_MALFORMED);
            checked++;
        }
        free(b);
    }
    assert_true(checked > 400);
}

/* MQTT 5 §3.3.1.2: "If a Server or Client receives a PUBLISH packet which has
 * both QoS bits set to 1 it is a Malformed Packet"; 3.1.1 [MQTT-3.3.1-4]. */
static void test_publish_qos3(void **state)
{
    (void)state;
    ERR(V4, TU_MAL, R81, 0, 0, 0x36, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34);
    ERR(V4, TU_MAL, R81, 0, 0, 0x37, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34);
    ERR(V4, TU_MAL, R81, 0, 0, 0x3E, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34);
    ERR(V5, TU_MAL, R81, 0, 0, 0x36, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 0x00);
    ERR(V5, TU_MAL, R81, 0, 0, 0x36, 0x06, 0x00, 0x03, 'a', '/', 'b', 0x00);
}

/* [MQTT-3.3.1-2] (both versions): "The DUP flag MUST be set to 0 for all QoS 0
 * messages". */
static void test_publish_dup_qos0(void **state)
{
    (void)state;
    ERR(V4, TU_LOOSE, R_LOOSE, 0, 0, 0x38, 0x05, 0x00, 0x03, 'a', '/', 'b');
    ERR(V4, TU_LOOSE, R_LOOSE, 0, 0, 0x39, 0x05, 0x00, 0x03, 'a', '/', 'b');
    ERR(V5, TU_LOOSE, R_LOOSE, 0, 0, 0x38, 0x06, 0x00, 0x03, 'a', '/', 'b', 0x00);
}

/* §1.5.5: at most four bytes; the fourth has no continuation bit. */
static void test_remaining_length_too_long(void **state)
{
    (void)state;
    ERR(V4, TU_MAL, R81, 1, 5, 0x30, 0x80, 0x80, 0x80, 0x80, 0x01);
    ERR(V5, TU_MAL, R81, 1, 5, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F);
    ERR(V5, TU_MAL, R81, 1, 5, 0xC0, 0x80, 0x80, 0x80, 0x80, 0x00);
    /* Known to be bad as soon as the fourth length byte is seen. */
    ERR(V4, TU_MAL, R81, 1, 4, 0x30, 0xFF, 0xFF, 0xFF, 0xFF);
    ERR(V5, TU_MAL, R81, 1, 4, 0x30, 0x80, 0x80, 0x80, 0x80);

    uint8_t type, flags;
    uint32_t rem;
    size_t hl;
    assert_int_equal(iotc_mqtt_fixed_header(B(0x30, 0xFF, 0xFF, 0xFF, 0xFF), V5, &type, &flags, &rem, &hl, NULL),
                     IOTC_MQTT_ERR_MALFORMED);
}

/* MQTT 5 [MQTT-1.5.5-1]: "The encoded value MUST use the minimum number of
 * bytes necessary to represent the value" -- for the Remaining Length, the
 * Property Length, Subscription Identifiers and property identifiers. */
static void test_non_minimal_vbi(void **state)
{
    (void)state;
    ERR(V5, TU_MAL, R81, 1, 2, 0xC0, 0x80, 0x00);
    ERR(V5, TU_MAL, R81, 1, 2, 0x30, 0x86, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x00);
    ERR(V5, TU_MAL, R81, 1, 3, 0x30, 0x86, 0x80, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x00);
    /* Property Length 0 in two bytes. */
    ERR(V5, TU_MAL, R81, 5, 6, 0x40, 0x05, 0x12, 0x34, 0x00, 0x80, 0x00);
    /* Subscription Identifier 1 in two bytes. */
    ERR(V5, TU_MAL, R81, 5, 7, 0x82, 0x0A, 0x00, 0x01, 0x03, 0x0B, 0x81, 0x00, 0x00, 0x01, 't', 0x00);
    /* Subscription Identifier in five bytes. */
    ERR(V5, TU_MAL, R81, 5, 11, 0x82, 0x0D, 0x00, 0x01, 0x06, 0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, 't',
        0x00);
    /* User Property's identifier 0x26 written as A6 00. */
    ERR(V5, TU_MAL, R81, 6, 7, 0x40, 0x0C, 0x12, 0x34, 0x00, 0x08, 0xA6, 0x00, 0x00, 0x01, 'k', 0x00, 0x01, 'v');
}

/* ---- Remaining Length against the content -------------------------------------------------- */

static void test_length_inconsistent(void **state)
{
    (void)state;
    /* §3.12.1, §3.13.1, 3.1.1 §3.14.1: Remaining Length 0. */
    ERR(V4, TU_MAL, R81, 1, 2, 0xC0, 0x01, 0x00);
    ERR(V5, TU_MAL, R81, 1, 2, 0xC0, 0x01, 0x00);
    ERR(V4, TU_MAL, R81, 1, 2, 0xD0, 0x01, 0x00);
    ERR(V5, TU_MAL, R81, 1, 2, 0xD0, 0x01, 0x00);
    ERR(V4, TU_MAL, R81, 1, 2, 0xE0, 0x01, 0x00);
    /* 3.1.1 acks: Remaining Length 2 (§3.4.1 ... §3.7.1, §3.11.1). */
    ERR(V4, TU_MAL, R81, 1, 4, 0x40, 0x03, 0x12, 0x34, 0x00);
    ERR(V4, TU_MAL, R81, 1, 4, 0x50, 0x03, 0x12, 0x34, 0x00);
    ERR(V4, TU_MAL, R81, 1, 4, 0x62, 0x03, 0x12, 0x34, 0x00);
    ERR(V4, TU_MAL, R81, 1, 4, 0x70, 0x03, 0x12, 0x34, 0x00);
    ERR(V4, TU_MAL, R81, 1, 4, 0xB0, 0x03, 0x00, 0x0B, 0x00);
    ERR(V4, TU_MAL, R81, 1, 3, 0x40, 0x01, 0x12);
    ERR(V4, TU_MAL, R81, 1, 2, 0x40, 0x00);
    ERR(V4, TU_MAL, R81, 1, 3, 0xB0, 0x01, 0x00);
    /* 3.1.1 CONNACK: Remaining Length 2 (§3.2.1). */
    ERR(V4, TU_MAL, R81, 1, 4, 0x20, 0x03, 0x00, 0x00, 0x00);
    ERR(V4, TU_MAL, R81, 1, 3, 0x20, 0x01, 0x00);
    /* MQTT 5: too short for the packet identifier. */
    ERR(V5, TU_MAL, R81, 1, 3, 0x40, 0x01, 0x12);
    ERR(V5, TU_MAL, R81, 1, 2, 0x62, 0x00);
    /* MQTT 5 CONNACK, SUBACK, UNSUBACK have no short form: the Property
     * Length is required ([MQTT-2.2.2-1]). */
    ERR(V5, TU_MAL, R81, 1, 4, 0x20, 0x02, 0x00, 0x00);
    ERR(V5, TU_MAL, R81, 1, 4, 0xB0, 0x02, 0x00, 0x0B);
    ERR(V5, TU_MAL, R81, 1, 4, 0x90, 0x02, 0x00, 0x0B);
    /* MQTT 5 PUBLISH without its Property Length. */
    ERR(V5, TU_MAL, R81, 1, 7, 0x30, 0x05, 0x00, 0x03, 'a', '/', 'b');
    /* Property Length larger than what is left. */
    ERR(V5, TU_MAL, R81, 1, 6, 0x40, 0x04, 0x12, 0x34, 0x00, 0x05);
    ERR(V5, TU_MAL, R81, 1, 10, 0x30, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x05, 0x01, 0x01);
    ERR(V5, TU_MAL, R81, 1, 5, 0xE0, 0x03, 0x00, 0x05, 0x1F);
    ERR(V5, TU_MAL, R81, 1, 5, 0xF0, 0x03, 0x18, 0x05, 0x1F);
    ERR(V5, TU_MAL, R81, 1, 5, 0x20, 0x03, 0x00, 0x00, 0x01);
    /* A property value overrunning the property block. */
    ERR(V5, TU_MAL, R81, 6, 9, 0x40, 0x07, 0x12, 0x34, 0x00, 0x03, 0x1F, 0x00, 0x05);
    ERR(V5, TU_MAL, R81, 8, 11, 0x30, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x03, 0x02, 0x00, 0x00);
    ERR(V5, TU_MAL, R81, 6, 12, 0x40, 0x0A, 0x12, 0x34, 0x00, 0x06, 0x26, 0x00, 0x01, 'k', 0x00, 0x05);
    ERR(V5, TU_MAL, R81, 6, 7, 0x40, 0x06, 0x12, 0x34, 0x00, 0x02, 0x1F, 0x00);
    /* Strings whose length overruns the packet. */
    ERR(V4, TU_MAL, R81, 1, 7, 0x10, 0x05, 0x00, 0x04, 'M', 'Q', 'T');
    ERR(V4, TU_MAL, R81, 2, 6, 0x30, 0x04, 0x00, 0x05, 'a', 'b');
    ERR(V5, TU_MAL, R81, 2, 6, 0x30, 0x04, 0x00, 0x05, 'a', 'b');
    ERR(V4, TU_MAL, R81, 1, 8, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x09, 'a', '/');
    ERR(V4, TU_MAL, R81, 1, 7, 0xA2, 0x05, 0x00, 0x0B, 0x00, 0x03, 'a');
    /* QoS 1 PUBLISH without room for its packet identifier. */
    ERR(V4, TU_MAL, R81, 1, 7, 0x32, 0x05, 0x00, 0x03, 'a', '/', 'b');
    ERR(V4, TU_MAL, R81, 1, 8, 0x32, 0x06, 0x00, 0x03, 'a', '/', 'b', 0x12);
    /* A topic filter without its options byte. */
    ERR(V4, TU_MAL, R81, 1, 9, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b');
    ERR(V5, TU_MAL, R81, 1, 10, 0x82, 0x08, 0x00, 0x0A, 0x00, 0x00, 0x03, 'a', '/', 'b');
    /* CONNECT cut short after the protocol level. */
    ERR(V4, TU_MAL, R81, 1, 9, 0x10, 0x07, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04);
    /* Flags announce a User Name the payload does not have. */
    ERR(V4, TU_MAL, R81, TU_ANY, TU_ANY, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x3C, 0x00, 0x01, 'a');
    /* ... a Will Message. */
    ERR(V4, TU_MAL, R81, TU_ANY, TU_ANY, 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x3C, 0x00, 0x01, 'a',
        0x00, 0x01, 't');
    /* ... a Password. */
    ERR(V5, TU_MAL, R81, TU_ANY, TU_ANY, 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0xC2, 0x00, 0x3C, 0x00, 0x00, 0x01,
        'a', 0x00, 0x01, 'u');
    /* A byte after the last field (§3.1.3: the fields "MUST appear in the order"
     * and there are no others). */
    ERR(V4, TU_MAL, R81, TU_ANY, TU_ANY, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a',
        0xFF);
    ERR(V5, TU_MAL, R81, TU_ANY, TU_ANY, 0x10, 0x0F, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x01,
        'a', 0xFF);
    /* A half topic filter after a whole one. */
    ERR(V4, TU_MAL, R81, TU_ANY, TU_ANY, 0xA2, 0x08, 0x00, 0x0B, 0x00, 0x01, 'a', 0x00, 0x02, 'b');
    ERR(V4, TU_MAL, R81, TU_ANY, TU_ANY, 0x82, 0x09, 0x00, 0x0B, 0x00, 0x01, 'a', 0x00, 0x00, 0x05, 'b');
}

/* ---- UTF-8 (MQTT 5 §1.5.4, 3.1.1 §1.5.3) ---------------------------------------------------- */

typedef struct {
    const char *name;
    uint8_t b[8];
    size_t n;
} bad_seq;

/* Each is embedded as "ab" <seq> "c"; the first bad byte is at 2 .. 2 + n. */
static const bad_seq bad_utf8[] = {
    {"overlong U+0000 (C0 80)", {0xC0, 0x80}, 2},
    {"overlong C1 BF", {0xC1, 0xBF}, 2},
    {"overlong '/' in 3 bytes", {0xE0, 0x80, 0xAF}, 3},
    {"overlong U+07FF in 3 bytes", {0xE0, 0x9F, 0xBF}, 3},
    {"overlong in 4 bytes", {0xF0, 0x80, 0x80, 0xAF}, 4},
    {"overlong U+FFFF in 4 bytes", {0xF0, 0x8F, 0xBF, 0xBF}, 4},
    {"surrogate U+D800", {0xED, 0xA0, 0x80}, 3},
    {"surrogate U+DFFF", {0xED, 0xBF, 0xBF}, 3},
    {"surrogate pair (CESU-8)", {0xED, 0xA0, 0xBD, 0xED, 0xB2, 0xA9}, 6},
    {"U+110000", {0xF4, 0x90, 0x80, 0x80}, 4},
    {"F5 lead", {0xF5, 0x80, 0x80, 0x80}, 4},
    {"5-byte form", {0xF8, 0x88, 0x80, 0x80, 0x80}, 5},
    {"truncated 3-byte", {0xE2, 0x82}, 2},
    {"truncated 2-byte", {0xC3}, 1},
    {"truncated 4-byte", {0xF0, 0x9F, 0x98}, 3},
    {"lone continuation", {0x80}, 1},
    {"FE", {0xFE}, 1},
    {"FF", {0xFF}, 1},
    {"U+0000", {0x00}, 1},
};

static const struct {
    const char *name;
    const char *s;
} good_utf8[] = {
    {"ASCII", "sensors/temp"},
    {"U+00E9", "caf\xC3\xA9"},
    {"U+20AC", "\xE2\x82\xAC"},
    {"U+1D11E", "\xF0\x9D\x84\x9E"},
    {"U+10FFFF", "\xF4\x8F\xBF\xBF"},
    {"U+FEFF (kept, [MQTT-1.5.4-3])", "\xEF\xBB\xBF" "a"},
    {"U+FFFF non-character", "\xEF\xBF\xBF"},
    {"U+0001 control", "\x01"},
    {"U+007F", "\x7F"},
    {"U+0080", "\xC2\x80"},
    {"U+009F", "\xC2\x9F"},
    {"U+D7FF", "\xED\x9F\xBF"},
    {"U+E000", "\xEE\x80\x80"},
    {"U+0800", "\xE0\xA0\x80"},
    {"U+10000", "\xF0\x90\x80\x80"},
};

static void test_utf8_valid_helper(void **state)
{
    (void)state;
    size_t bad_at = 12345;
    assert_true(iotc_mqtt_utf8_valid((const uint8_t *)"", 0, &bad_at));
    assert_true(iotc_mqtt_utf8_valid(NULL, 0, &bad_at));
    for (size_t i = 0; i < sizeof good_utf8 / sizeof good_utf8[0]; i++)
        if (!iotc_mqtt_utf8_valid((const uint8_t *)good_utf8[i].s, strlen(good_utf8[i].s), &bad_at))
            fail_msg("%s: should be valid (bad_at %zu)", good_utf8[i].name, bad_at);
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        uint8_t s[16] = {'a', 'b'};
        memcpy(s + 2, bad_utf8[i].b, bad_utf8[i].n);
        s[2 + bad_utf8[i].n] = 'c';
        bad_at = 12345;
        if (iotc_mqtt_utf8_valid(s, bad_utf8[i].n + 3, &bad_at))
            fail_msg("%s: should be invalid", bad_utf8[i].name);
        if (bad_at < 2 || bad_at > 2 + bad_utf8[i].n)
            fail_msg("%s: bad_at %zu, expected 2..%zu", bad_utf8[i].name, bad_at, 2 + bad_utf8[i].n);
        /* At the very end of the string too. */
        if (iotc_mqtt_utf8_valid(s, bad_utf8[i].n + 2, &bad_at))
            fail_msg("%s (at the end): should be invalid", bad_utf8[i].name);
    }
    /* U+0000 exactly located. */
    assert_false(iotc_mqtt_utf8_valid((const uint8_t *)"a\0b", 3, &bad_at));
    assert_int_equal(bad_at, 1);
    assert_false(iotc_mqtt_utf8_valid((const uint8_t *)"abc\x80", 4, &bad_at));
    assert_int_equal(bad_at, 3);
    /* Only len bytes are looked at. */
    assert_true(iotc_mqtt_utf8_valid((const uint8_t *)"ab\xFF", 2, &bad_at));
}

/* Builds "<prefix><len16><string><suffix>" as a packet body and frames it. */
static size_t with_string(uint8_t first, const uint8_t *pre, size_t npre, const uint8_t *str, size_t nstr,
                          const uint8_t *suf, size_t nsuf, uint8_t *out, size_t *str_off)
{
    uint8_t body[256];
    size_t k = 0;
    if (npre)
        memcpy(body, pre, npre);
    k = npre;
    body[k++] = (uint8_t)(nstr >> 8);
    body[k++] = (uint8_t)nstr;
    memcpy(body + k, str, nstr);
    k += nstr;
    if (nsuf)
        memcpy(body + k, suf, nsuf);
    k += nsuf;
    *str_off = 2 + npre; /* bodies here stay under 128 bytes */
    assert_true(k < 128);
    return tu_frame(first, body, k, out);
}

/* A bad UTF-8 string in each kind of field.  MQTT 5 §1.5.4: "If a Server or
 * Client receives a Control Packet containing ill-formed UTF-8 it is a
 * Malformed Packet"; likewise U+0000 ([MQTT-1.5.4-2]).  3.1.1 [MQTT-1.5.3-1]
 * says close the connection (either class). */
static void test_utf8_in_fields(void **state)
{
    (void)state;
    static const uint8_t v5_connect_pre[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C, 0x00};
    static const uint8_t v4_connect_pre[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C};
    static const uint8_t v5_user_pre[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x82, 0x00, 0x3C, 0x00,
                                          0x00, 0x01, 'a'};
    static const uint8_t v5_will_pre[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x06, 0x00, 0x3C, 0x00,
                                          0x00, 0x01, 'a', 0x00};
    static const uint8_t will_suf[] = {0x00, 0x00};
    static const uint8_t v5_pub_suf[] = {0x00, 'x'};
    static const uint8_t v4_sub_pre[] = {0x00, 0x0A};
    static const uint8_t v5_sub_pre[] = {0x00, 0x0A, 0x00};
    static const uint8_t sub_suf[] = {0x01};
    /* PUBACK whose property block is a User Property "k" = <string>. */
    static const uint8_t puback_pre[] = {0x12, 0x34, 0x00, 0x00 /* patched */, 0x26, 0x00, 0x01, 'k'};
    /* DISCONNECT whose Reason String is the string. */
    static const uint8_t disc_pre[] = {0x00, 0x00 /* patched */, 0x1F};

    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        uint8_t s[16] = {'a', 'b'};
        size_t n = bad_utf8[i].n + 3;
        memcpy(s + 2, bad_utf8[i].b, bad_utf8[i].n);
        s[n - 1] = 'c';
        uint8_t pkt[300];
        size_t off, len;

        /* Client Identifier. */
        len = with_string(0x10, v5_connect_pre, sizeof v5_connect_pre, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0x10, v4_connect_pre, sizeof v4_connect_pre, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V4, 0, TU_LOOSE, R_LOOSE, off, off + 2 + n, __FILE__, __LINE__);
        /* User Name. */
        len = with_string(0x10, v5_user_pre, sizeof v5_user_pre, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off, off + 2 + n, __FILE__, __LINE__);
        /* Will Topic. */
        len = with_string(0x10, v5_will_pre, sizeof v5_will_pre, s, n, will_suf, sizeof will_suf, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off, off + 2 + n, __FILE__, __LINE__);
        /* Topic Name (malformed, not 0x90 "Topic Name invalid"). */
        len = with_string(0x30, NULL, 0, s, n, v5_pub_suf, sizeof v5_pub_suf, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0x30, NULL, 0, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V4, 0, TU_LOOSE, R_LOOSE, off, off + 2 + n, __FILE__, __LINE__);
        /* Topic Filter. */
        len = with_string(0x82, v4_sub_pre, sizeof v4_sub_pre, s, n, sub_suf, sizeof sub_suf, pkt, &off);
        tu_expect_err_(pkt, len, V4, 0, TU_LOOSE, R_LOOSE | R8F, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0x82, v5_sub_pre, sizeof v5_sub_pre, s, n, sub_suf, sizeof sub_suf, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0xA2, v5_sub_pre, sizeof v5_sub_pre, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off, off + 2 + n, __FILE__, __LINE__);
        /* User Property value. */
        uint8_t pre[sizeof puback_pre];
        memcpy(pre, puback_pre, sizeof pre);
        pre[3] = (uint8_t)(4 + 2 + n);
        len = with_string(0x40, pre, sizeof pre, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off - 4, off + 2 + n, __FILE__, __LINE__);
        /* User Property key. */
        uint8_t pre2[4] = {0x12, 0x34, 0x00, (uint8_t)(1 + 2 + n + 3)};
        uint8_t up[1 + 2 + 16 + 3];
        up[0] = 0x26;
        up[1] = 0x00;
        up[2] = (uint8_t)n;
        memcpy(up + 3, s, n);
        memcpy(up + 3 + n, "\x00\x01v", 3);
        uint8_t body[64];
        memcpy(body, pre2, 4);
        memcpy(body + 4, up, 3 + n + 3);
        len = tu_frame(0x40, body, 4 + 3 + n + 3, pkt);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, 6, 6 + 3 + n, __FILE__, __LINE__);
        /* Reason String. */
        uint8_t dpre[sizeof disc_pre];
        memcpy(dpre, disc_pre, sizeof dpre);
        dpre[1] = (uint8_t)(1 + 2 + n);
        len = with_string(0xE0, dpre, sizeof dpre, s, n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, off - 1, off + 2 + n, __FILE__, __LINE__);
    }

    /* The same fields with valid, unusual UTF-8 decode. */
    for (size_t i = 0; i < sizeof good_utf8 / sizeof good_utf8[0]; i++) {
        const uint8_t *s = (const uint8_t *)good_utf8[i].s;
        size_t n = strlen(good_utf8[i].s), off, len;
        uint8_t pkt[300];
        iotc_mqtt_packet p;
        len = with_string(0x10, v5_connect_pre, sizeof v5_connect_pre, s, n, NULL, 0, pkt, &off);
        tu_decode_ok_(pkt, len, V5, &p, __FILE__, __LINE__);
        assert_true(tu_bytes_eq(p.u.connect.client_id, s, n));
        len = with_string(0x30, NULL, 0, s, n, v5_pub_suf, sizeof v5_pub_suf, pkt, &off);
        tu_decode_ok_(pkt, len, V5, &p, __FILE__, __LINE__);
        assert_true(tu_bytes_eq(p.u.publish.topic, s, n));
    }
}

/* Binary Data (§1.5.6) and payloads are not UTF-8: any bytes go. */
static void test_binary_fields_take_any_bytes(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    /* Password 00 FF, Will Message FF 00 (3.1.1; the Will Message is binary). */
    tu_decode_ok(B(0x10, 0x1B, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xC6, 0x00, 0x3C, 0x00, 0x01, 'a', 0x00, 0x01,
                   't', 0x00, 0x02, 0xFF, 0x00, 0x00, 0x01, 'u', 0x00, 0x02, 0x00, 0xFF),
                 V4, &p);
    assert_true(tu_bytes_eq(p.u.connect.will_payload, "\xFF\x00", 2));
    assert_true(tu_bytes_eq(p.u.connect.password, "\x00\xFF", 2));
    /* Correlation Data and Authentication Data. */
    tu_decode_ok(B(0x30, 0x0D, 0x00, 0x01, 't', 0x07, 0x09, 0x00, 0x04, 0xFF, 0x00, 0xED, 0xA0, 0xC0, 0x80), V5,
                 &p);
    assert_true(tu_bytes_eq(p.u.publish.props.correlation_data, "\xFF\x00\xED\xA0", 4));
    assert_true(tu_bytes_eq(p.u.publish.payload, "\xC0\x80", 2));
    tu_decode_ok(B(0xF0, 0x0C, 0x18, 0x0A, 0x15, 0x00, 0x01, 'm', 0x16, 0x00, 0x03, 0x00, 0xFF, 0xFE), V5, &p);
    assert_true(tu_bytes_eq(p.u.disconnect.props.authentication_data, "\x00\xFF\xFE", 3));
}

/* ---- CONNECT (§3.1.2) ---------------------------------------------------------------------- */

/* MQTT 5 [MQTT-3.1.2-1], [MQTT-3.1.2-2]; 3.1.1 [MQTT-3.1.2-1], [MQTT-3.1.2-2]:
 * a protocol name or level we do not speak: IOTC_MQTT_ERR_UNSUPPORTED_VERSION
 * ("CONNECT with a protocol name/level we do not speak"), reason 0x84. */
static void test_connect_protocol(void **state)
{
    (void)state;
    ERR(V5, TU_VER, R84, 2, 7, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00,
        0x01, 'a');
    ERR(V4, TU_VER, R84, 2, 7, 0x10, 0x0D, 0x00, 0x04, 'm', 'q', 't', 't', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a');
    ERR(V4, TU_VER, R84, 2, 8, 0x10, 0x0E, 0x00, 0x05, 'M', 'Q', 'T', 'T', 'X', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01,
        'a');
    ERR(V4, TU_VER, R84, 2, 10, 0x10, 0x0F, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3C, 0x00,
        0x01, 'a');
    /* Protocol levels 3, 6, 0 and 0x84 (a 3.1.1 bridge) with the right name. */
    ERR(V4, TU_VER, R84, 8, 8, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x03, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a');
    ERR(V5, TU_VER, R84, 8, 8, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x00,
        0x01, 'a');
    ERR(V5, TU_VER, R84, 8, 8, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x00, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a');
    ERR(V4, TU_VER, R84, 8, 8, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x84, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a');
}

static void test_connect_flags(void **state)
{
    (void)state;
    /* Reserved flag (bit 0).  MQTT 5 §3.1.2.3: "If the reserved flag is not 0
     * it is a Malformed Packet"; 3.1.1 [MQTT-3.1.2-3]. */
    ERR(V5, TU_MAL, R81, 9, 9, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x03, 0x00, 0x3C, 0x00, 0x00,
        0x01, 'a');
    ERR(V4, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x3C, 0x00, 0x01,
        'a');
    /* Will QoS 3.  MQTT 5 §3.1.2.6: "A value of 3 (0x03) is a Malformed Packet";
     * 3.1.1 [MQTT-3.1.2-14]. */
    ERR(V5, TU_MAL, R81, 9, 9, 0x10, 0x14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x1E, 0x00, 0x3C, 0x00, 0x00,
        0x01, 'a', 0x00, 0x00, 0x01, 't', 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1E, 0x00, 0x3C, 0x00, 0x01,
        'a', 0x00, 0x01, 't', 0x00, 0x00);
    /* Will QoS or Will Retain without the Will Flag: [MQTT-3.1.2-11],
     * [MQTT-3.1.2-13], [MQTT-3.1.2-15] (5); [MQTT-3.1.2-13], [MQTT-3.1.2-15] (3.1.1). */
    ERR(V5, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x0A, 0x00, 0x3C, 0x00,
        0x00, 0x01, 'a');
    ERR(V5, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x12, 0x00, 0x3C, 0x00,
        0x00, 0x01, 'a');
    ERR(V5, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x22, 0x00, 0x3C, 0x00,
        0x00, 0x01, 'a');
    ERR(V4, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x0A, 0x00, 0x3C, 0x00, 0x01,
        'a');
    ERR(V4, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x22, 0x00, 0x3C, 0x00, 0x01,
        'a');
    /* 3.1.1 [MQTT-3.1.2-22]: "If the User Name Flag is set to 0, the Password
     * Flag MUST be set to 0".  (Allowed in 5; see test_mqtt_packets.) */
    ERR(V4, TU_LOOSE, R_LOOSE, 9, 9, 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x42, 0x00, 0x3C, 0x00, 0x01,
        'a', 0x00, 0x02, 'p', 'w');
    OK(V5, 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x42, 0x00, 0x3C, 0x00, 0x00, 0x01, 'a', 0x00, 0x02,
       'p', 'w');
    /* MQTT 5 §3.1.2.11.10: "It is a Protocol Error to include Authentication
     * Data if there is no Authentication Method". */
    ERR(V5, TU_PROTO, R82, 12, 17, 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C, 0x04, 0x16,
        0x00, 0x01, 0x07, 0x00, 0x01, 'a');
}

/* §3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method" (an
 * AUTH other than the Remaining Length 0 form). */
static void test_auth_without_method(void **state)
{
    (void)state;
    ERR(V5, TU_PROTO, R82, TU_ANY, TU_ANY, 0xF0, 0x02, 0x18, 0x00);
    ERR(V5, TU_PROTO, R82, TU_ANY, TU_ANY, 0xF0, 0x06, 0x19, 0x04, 0x1F, 0x00, 0x01, 'r');
    OK(V5, 0xF0, 0x00);
    OK(V5, 0xF0, 0x06, 0x19, 0x04, 0x15, 0x00, 0x01, 'm');
}

/* ---- packet identifiers (MQTT 5 §2.2.1, 3.1.1 §2.3.1) --------------------------------------- */

/* [MQTT-2.2.1-3] / 3.1.1 [MQTT-2.3.1-1]: SUBSCRIBE, UNSUBSCRIBE and PUBLISH
 * with QoS > 0 carry a non-zero Packet Identifier; the acknowledgements carry
 * that same identifier ([MQTT-2.2.1-5], [MQTT-2.2.1-6]), so never 0 either. */
static void test_packet_id_zero(void **state)
{
    (void)state;
    ERR(V4, TU_LOOSE, R_LOOSE, 7, 8, 0x32, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 7, 8, 0x34, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 7, 8, 0x32, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 7, 8, 0x3C, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 3, 0x82, 0x08, 0x00, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 3, 0x82, 0x09, 0x00, 0x00, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 3, 0xA2, 0x07, 0x00, 0x00, 0x00, 0x03, 'a', '/', 'b');
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 3, 0xA2, 0x08, 0x00, 0x00, 0x00, 0x00, 0x03, 'a', '/', 'b');
    static const uint8_t acks[] = {0x40, 0x50, 0x62, 0x70};
    for (int i = 0; i < 4; i++) {
        uint8_t b[] = {acks[i], 0x02, 0x00, 0x00};
        tu_expect_err_(b, sizeof b, V4, 0, TU_LOOSE, R_LOOSE, 2, 3, __FILE__, __LINE__);
        tu_expect_err_(b, sizeof b, V5, 0, TU_LOOSE, R_LOOSE, 2, 3, __FILE__, __LINE__);
    }
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 3, 0x90, 0x03, 0x00, 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 3, 0x90, 0x04, 0x00, 0x00, 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 3, 0xB0, 0x02, 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 3, 0xB0, 0x04, 0x00, 0x00, 0x00, 0x00);
    /* QoS 0 has no packet identifier: 00 00 there is the payload. */
    OK(V4, 0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00);
}

/* ---- SUBSCRIBE, UNSUBSCRIBE (§3.8, §3.10) --------------------------------------------------- */

static void test_subscribe_rules(void **state)
{
    (void)state;
    /* No filters.  5 [MQTT-3.8.3-2] "A SUBSCRIBE packet with no Payload is a
     * Protocol Error", [MQTT-3.10.3-2] likewise; 3.1.1 [MQTT-3.8.3-3] "a
     * protocol violation", [MQTT-3.10.3-2]. */
    ERR(V4, TU_LOOSE, R_LOOSE, TU_ANY, TU_ANY, 0x82, 0x02, 0x00, 0x0A);
    ERR(V5, TU_PROTO, R82, TU_ANY, TU_ANY, 0x82, 0x03, 0x00, 0x0A, 0x00);
    ERR(V5, TU_PROTO, R82, TU_ANY, TU_ANY, 0x82, 0x05, 0x00, 0x0A, 0x02, 0x0B, 0x01);
    ERR(V4, TU_LOOSE, R_LOOSE, TU_ANY, TU_ANY, 0xA2, 0x02, 0x00, 0x0B);
    ERR(V5, TU_PROTO, R82, TU_ANY, TU_ANY, 0xA2, 0x03, 0x00, 0x0B, 0x00);

    /* Reserved option bits.  5 [MQTT-3.8.3-5]: "MUST treat a SUBSCRIBE packet as
     * malformed if any of Reserved bits in the Payload are non-zero"; 3.1.1
     * [MQTT-3-8.3-4] (bits 2-7 reserved there, and QoS 3). */
    ERR(V5, TU_MAL, R81, 8, 8, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x01, 't', 0x40);
    ERR(V5, TU_MAL, R81, 8, 8, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x01, 't', 0x80);
    ERR(V5, TU_MAL, R81, 8, 8, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x01, 't', 0xC1);
    ERR(V4, TU_MAL, R81, 7, 7, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x01, 't', 0x04);
    ERR(V4, TU_MAL, R81, 7, 7, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x01, 't', 0x08);
    ERR(V4, TU_MAL, R81, 7, 7, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x01, 't', 0x20);
    ERR(V4, TU_MAL, R81, 7, 7, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x01, 't', 0x80);
    ERR(V4, TU_MAL, R81, 7, 7, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x01, 't', 0x03);
    /* The second filter is the bad one. */
    ERR(V4, TU_MAL, R81, 11, 11, 0x82, 0x0A, 0x00, 0x0A, 0x00, 0x01, 't', 0x01, 0x00, 0x01, 'u', 0x03);

    /* 5 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value
     * 3", "It is a Protocol Error to send a Retain Handling value of 3". */
    ERR(V5, TU_PROTO, R82, 8, 8, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x01, 't', 0x03);
    ERR(V5, TU_PROTO, R82, 8, 8, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x01, 't', 0x30);
    ERR(V5, TU_PROTO, R82, 8, 8, 0x82, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x01, 't', 0x3D);

    /* [MQTT-3.8.3-4]: "It is a Protocol Error to set the No Local bit to 1 on a
     * Shared Subscription". */
    ERR(V5, TU_PROTO, R82, 5, 17, 0x82, 0x10, 0x00, 0x0A, 0x00, 0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g',
        '/', 't', 0x04);
    OK(V5, 0x82, 0x10, 0x00, 0x0A, 0x00, 0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 't', 0x0A);
    /* Without the $share/ prefix No Local is fine. */
    OK(V5, 0x82, 0x10, 0x00, 0x0A, 0x00, 0x00, 0x0A, '$', 'S', 'H', 'A', 'R', 'E', '/', 'g', '/', 't', 0x04);
}

/* §4.7.1: '#' alone and last, '+' alone in its level; [MQTT-4.7.3-1]: at
 * least one character.  Reason 0x8F (Topic Filter invalid) is also fine. */
static void test_bad_topic_filters(void **state)
{
    (void)state;
    static const char *const bad[] = {"a/b#", "a/#/b", "a+", "+a", "#/a", "a/#/", "##", "++", "a/+b/c", "#a",
                                      "sport/tennis#", "sport/tennis/#/ranking", "+/#/"};
    static const char *const good[] = {"#", "+", "a/#", "+/+", "/", "//", "a//b", "/+", "+/", "a/+/#", "$SYS/#",
                                       "sport/+/player1", "$sharex/a", "$SHARE/g/t"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]), off, len;
        uint8_t pkt[128];
        len = with_string(0x82, (const uint8_t[]){0x00, 0x0A}, 2, (const uint8_t *)bad[i], n,
                          (const uint8_t[]){0x00}, 1, pkt, &off);
        tu_expect_err_(pkt, len, V4, 0, TU_LOOSE, R_LOOSE | R8F, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0x82, (const uint8_t[]){0x00, 0x0A, 0x00}, 3, (const uint8_t *)bad[i], n,
                          (const uint8_t[]){0x00}, 1, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_LOOSE, R_LOOSE | R8F, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0xA2, (const uint8_t[]){0x00, 0x0A}, 2, (const uint8_t *)bad[i], n, NULL, 0, pkt, &off);
        tu_expect_err_(pkt, len, V4, 0, TU_LOOSE, R_LOOSE | R8F, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0xA2, (const uint8_t[]){0x00, 0x0A, 0x00}, 3, (const uint8_t *)bad[i], n, NULL, 0, pkt,
                          &off);
        tu_expect_err_(pkt, len, V5, 0, TU_LOOSE, R_LOOSE | R8F, off, off + 2 + n, __FILE__, __LINE__);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t n = strlen(good[i]), off, len;
        uint8_t pkt[128];
        iotc_mqtt_packet p;
        len = with_string(0x82, (const uint8_t[]){0x00, 0x0A}, 2, (const uint8_t *)good[i], n,
                          (const uint8_t[]){0x00}, 1, pkt, &off);
        tu_decode_ok_(pkt, len, V4, &p, __FILE__, __LINE__);
        len = with_string(0x82, (const uint8_t[]){0x00, 0x0A, 0x00}, 3, (const uint8_t *)good[i], n,
                          (const uint8_t[]){0x00}, 1, pkt, &off);
        tu_decode_ok_(pkt, len, V5, &p, __FILE__, __LINE__);
        len = with_string(0xA2, (const uint8_t[]){0x00, 0x0A, 0x00}, 3, (const uint8_t *)good[i], n, NULL, 0, pkt,
                          &off);
        tu_decode_ok_(pkt, len, V5, &p, __FILE__, __LINE__);
    }
    /* Empty filter. */
    ERR(V4, TU_LOOSE, R_LOOSE | R8F, 4, 6, 0x82, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE | R8F, 5, 7, 0x82, 0x06, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE | R8F, 4, 6, 0xA2, 0x04, 0x00, 0x0A, 0x00, 0x00);

    /* MQTT 5 §4.8.2 shared subscriptions: [MQTT-4.8.2-1] a ShareName at least
     * one character long; [MQTT-4.8.2-2] no '/', '+', '#' in it, and followed
     * by '/' and a Topic Filter. */
    static const char *const bad_share[] = {"$share//t", "$share/g", "$share/g/", "$share/+/t", "$share/#/t",
                                            "$share/g+/t", "$share/", "$share/g/a#"};
    for (size_t i = 0; i < sizeof bad_share / sizeof bad_share[0]; i++) {
        size_t n = strlen(bad_share[i]), off, len;
        uint8_t pkt[128];
        len = with_string(0x82, (const uint8_t[]){0x00, 0x0A, 0x00}, 3, (const uint8_t *)bad_share[i], n,
                          (const uint8_t[]){0x00}, 1, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_LOOSE, R_LOOSE | R8F, off, off + 2 + n, __FILE__, __LINE__);
    }
    OK(V5, 0x82, 0x10, 0x00, 0x0A, 0x00, 0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', '#', 0x01);
}

/* ---- PUBLISH topic (§3.3.2.1) ---------------------------------------------------------------- */

static void test_publish_topic_rules(void **state)
{
    (void)state;
    /* [MQTT-3.3.2-2]: "The Topic Name in the PUBLISH packet MUST NOT contain
     * wildcard characters".  0x90 (Topic Name invalid) is also fine. */
    static const char *const wild[] = {"a/+", "a/#", "#", "+", "+/a", "a+b", "a#", "sport/+/player1"};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        size_t n = strlen(wild[i]), off, len;
        uint8_t pkt[128];
        len = with_string(0x30, NULL, 0, (const uint8_t *)wild[i], n, (const uint8_t[]){'x'}, 1, pkt, &off);
        tu_expect_err_(pkt, len, V4, 0, TU_LOOSE, R_LOOSE | R90, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0x30, NULL, 0, (const uint8_t *)wild[i], n, (const uint8_t[]){0x00, 'x'}, 2, pkt, &off);
        tu_expect_err_(pkt, len, V5, 0, TU_LOOSE, R_LOOSE | R90, off, off + 2 + n, __FILE__, __LINE__);
        len = with_string(0x32, NULL, 0, (const uint8_t *)wild[i], n, (const uint8_t[]){0x00, 0x01, 0x00}, 3, pkt,
                          &off);
        tu_expect_err_(pkt, len, V5, 0, TU_LOOSE, R_LOOSE | R90, off, off + 2 + n, __FILE__, __LINE__);
    }
    /* Empty topic.  3.1.1 [MQTT-4.7.3-1]; 5 §3.3.2.1: "It is a Protocol Error
     * if the Topic Name is zero length and there is no Topic Alias" (0x82, or
     * the more specific 0x90 Topic Name invalid, §4.13.1). */
    ERR(V4, TU_LOOSE, R_LOOSE | R90, 2, 3, 0x30, 0x02, 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE | R90, 2, 3, 0x30, 0x04, 0x00, 0x00, 'h', 'i');
    ERR(V5, TU_PROTO, R82 | R90, TU_ANY, TU_ANY, 0x30, 0x03, 0x00, 0x00, 0x00);
    ERR(V5, TU_PROTO, R82 | R90, TU_ANY, TU_ANY, 0x30, 0x08, 0x00, 0x00, 0x05, 0x02, 0x00, 0x00, 0x00, 0x0A);
    OK(V5, 0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01);
    /* [MQTT-3.3.2-8] "A Topic Alias of 0 is not permitted" (0x94, Topic Alias invalid). */
    ERR(V5, TU_LOOSE, R_LOOSE | R94, 7, 10, 0x30, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x03, 0x23, 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE | R94, 4, 7, 0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x00);
}

/* ---- properties (§2.2.2) ----------------------------------------------------------------------- */

static const unsigned prop_types[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15};

static const char *tname(unsigned t)
{
    return t ? iotc_mqtt_type_name(t) : "Will";
}

/* §2.2.2.2: "A Control Packet which contains an Identifier which is not valid
 * for its packet type ... is a Malformed Packet."  E.g. Topic Alias in CONNECT.
 * Every one of the 27 properties in every packet that does not allow it. */
static void test_property_not_allowed(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t r = 0; r < tu_allow_count; r++) {
        uint8_t id = tu_allow_table[r].id;
        for (size_t ti = 0; ti < sizeof prop_types / sizeof prop_types[0]; ti++) {
            unsigned t = prop_types[ti];
            if (tu_prop_is_allowed(id, t))
                continue;
            uint8_t props[32], pkt[256];
            size_t n = 0, poff = 0;
            if (t == IOTC_MQTT_AUTH) { /* keep the AUTH otherwise valid */
                memcpy(props, "\x15\x00\x01m", 4);
                n = 4;
            }
            size_t id_at = n;
            props[n++] = id;
            n += tu_prop_value(id, props + n);
            size_t len = tu_build_with_props(t, props, n, pkt, &poff);
            print_message("%s: property 0x%02X\n", tname(t), id);
            tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, poff + id_at, poff + id_at, __FILE__, __LINE__);
            checked++;
        }
    }
    /* 27 ids x 14 places - the 64 allowed pairs. */
    assert_int_equal(checked, 27 * 14 - 64);
}

/* Single-valued properties: "It is a Protocol Error to include <it> more than
 * once" (every property section of §3).  User Properties repeat; so do
 * Subscription Identifiers in PUBLISH, but not in SUBSCRIBE (§3.8.2.1.2). */
static void test_property_duplicates(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t r = 0; r < tu_allow_count; r++) {
        uint8_t id = tu_allow_table[r].id;
        for (size_t ti = 0; ti < sizeof prop_types / sizeof prop_types[0]; ti++) {
            unsigned t = prop_types[ti];
            if (!tu_prop_is_allowed(id, t))
                continue;
            uint8_t props[64], pkt[256];
            size_t n = 0, poff = 0;
            if (id == 0x16 || (t == IOTC_MQTT_AUTH && id != 0x15)) {
                memcpy(props, "\x15\x00\x01m", 4);
                n = 4;
            }
            props[n++] = id;
            n += tu_prop_value(id, props + n);
            size_t second = n;
            props[n++] = id;
            n += tu_prop_value(id, props + n);
            size_t len = tu_build_with_props(t, props, n, pkt, &poff);
            print_message("%s: property 0x%02X twice\n", tname(t), id);
            if (id == 0x26 || (id == 0x0B && t == IOTC_MQTT_PUBLISH)) {
                iotc_mqtt_packet p;
                tu_decode_ok_(pkt, len, V5, &p, __FILE__, __LINE__);
                const iotc_mqtt_props *pr = tu_props_of(&p, t);
                assert_int_equal(id == 0x26 ? pr->user_count : pr->sub_id_count, 2);
            } else {
                tu_expect_err_(pkt, len, V5, 0, TU_PROTO, R82, poff + second, poff + second, __FILE__, __LINE__);
            }
            checked++;
        }
    }
    assert_int_equal(checked, 64);
}

/* §2.2.2.2: an identifier that is not in Table 2-4 is malformed. */
static void test_property_unknown_id(void **state)
{
    (void)state;
    static const uint8_t unknown[] = {0x00, 0x04, 0x05, 0x06, 0x07, 0x0A, 0x0C, 0x0D, 0x0E, 0x0F, 0x10,
                                      0x14, 0x1B, 0x1D, 0x1E, 0x20, 0x2B, 0x2C, 0x3F, 0x40, 0x7F};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        for (size_t ti = 0; ti < sizeof prop_types / sizeof prop_types[0]; ti++) {
            unsigned t = prop_types[ti];
            uint8_t props[16], pkt[256];
            size_t n = 0, poff = 0;
            if (t == IOTC_MQTT_AUTH) {
                memcpy(props, "\x15\x00\x01m", 4);
                n = 4;
            }
            size_t id_at = n;
            props[n++] = unknown[i];
            props[n++] = 0x00;
            size_t len = tu_build_with_props(t, props, n, pkt, &poff);
            print_message("%s: unknown property 0x%02X\n", tname(t), unknown[i]);
            tu_expect_err_(pkt, len, V5, 0, TU_MAL, R81, poff + id_at, poff + id_at + 1, __FILE__, __LINE__);
        }
    /* Identifier 128, a two-byte Variable Byte Integer. */
    ERR(V5, TU_MAL, R81, 6, 7, 0x40, 0x07, 0x12, 0x34, 0x00, 0x03, 0x80, 0x01, 0x00);
    /* After a valid property. */
    ERR(V5, TU_MAL, R81, 10, 10, 0x40, 0x09, 0x12, 0x34, 0x00, 0x05, 0x1F, 0x00, 0x01, 'r', 0x05, 0x00);
}

/* Builds the packet of type t with the property block props and expects an
 * error at [lo, hi] relative to the block's start. */
static void prop_err_(unsigned t, const uint8_t *props, size_t n, unsigned sm, uint64_t rm, size_t lo, size_t hi,
                      const char *file, int line)
{
    uint8_t pkt[256];
    size_t poff = 0;
    size_t len = tu_build_with_props(t, props, n, pkt, &poff);
    tu_expect_err_(pkt, len, V5, 0, sm, rm, poff + lo, poff + hi, file, line);
}
#define PROP_ERR(t, sm, rm, lo, hi, ...)                                                                     \
    prop_err_(t, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), sm, rm, lo, hi,    \
              __FILE__, __LINE__)
static void prop_ok_(unsigned t, const uint8_t *props, size_t n, const char *file, int line)
{
    uint8_t pkt[256];
    size_t poff = 0;
    iotc_mqtt_packet p;
    size_t len = tu_build_with_props(t, props, n, pkt, &poff);
    tu_decode_ok_(pkt, len, V5, &p, file, line);
}
#define PROP_OK(t, ...) \
    prop_ok_(t, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), __FILE__, __LINE__)

static void test_property_values(void **state)
{
    (void)state;
    const unsigned CONNECT = IOTC_MQTT_CONNECT, CONNACK = IOTC_MQTT_CONNACK, PUBLISH = IOTC_MQTT_PUBLISH,
                   SUBSCRIBE = IOTC_MQTT_SUBSCRIBE, WILL = 0;
    /* "It is a Protocol Error to include the Receive Maximum value more than
     * once or for it to have the value 0" (§3.1.2.11.3, §3.2.2.3.3). */
    PROP_ERR(CONNECT, TU_PROTO, R82, 0, 2, 0x21, 0x00, 0x00);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 2, 0x21, 0x00, 0x00);
    PROP_OK(CONNECT, 0x21, 0x00, 0x01);
    PROP_OK(CONNECT, 0x21, 0xFF, 0xFF);
    /* Maximum Packet Size 0 (§3.1.2.11.4, §3.2.2.3.6). */
    PROP_ERR(CONNECT, TU_PROTO, R82, 0, 4, 0x27, 0x00, 0x00, 0x00, 0x00);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 4, 0x27, 0x00, 0x00, 0x00, 0x00);
    PROP_OK(CONNECT, 0x27, 0xFF, 0xFF, 0xFF, 0xFF);
    /* Maximum QoS other than 0 or 1 (§3.2.2.3.4). */
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x24, 0x02);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x24, 0x03);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x24, 0xFF);
    PROP_OK(CONNACK, 0x24, 0x01);
    /* Request Problem / Response Information other than 0 or 1 (§3.1.2.11.7, .6). */
    PROP_ERR(CONNECT, TU_PROTO, R82, 0, 1, 0x17, 0x02);
    PROP_ERR(CONNECT, TU_PROTO, R82, 0, 1, 0x19, 0x02);
    PROP_OK(CONNECT, 0x17, 0x00, 0x19, 0x00);
    /* Retain / Wildcard / Subscription Identifier / Shared Subscription
     * Available other than 0 or 1 (§3.2.2.3.5, .11, .12, .13). */
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x25, 0x02);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x28, 0x02);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x29, 0x02);
    PROP_ERR(CONNACK, TU_PROTO, R82, 0, 1, 0x2A, 0x80);
    PROP_OK(CONNACK, 0x25, 0x00, 0x28, 0x00, 0x29, 0x00, 0x2A, 0x00);
    /* Subscription Identifier 0: "It is a Protocol Error if the Subscription
     * Identifier has a value of 0" (§3.8.2.1.2); in PUBLISH 1..268435455
     * (§3.3.2.3.8). */
    PROP_ERR(SUBSCRIBE, TU_PROTO, R82, 0, 1, 0x0B, 0x00);
    PROP_ERR(PUBLISH, TU_LOOSE, R_LOOSE, 0, 1, 0x0B, 0x00);
    /* Two Subscription Identifiers in SUBSCRIBE (§3.8.2.1.2). */
    PROP_ERR(SUBSCRIBE, TU_PROTO, R82, 2, 2, 0x0B, 0x01, 0x0B, 0x02);
    PROP_OK(SUBSCRIBE, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F);
    /* Payload Format Indicator: 0 or 1 (§3.3.2.3.2, §3.1.3.2.3). */
    PROP_ERR(PUBLISH, TU_LOOSE, R_LOOSE, 0, 1, 0x01, 0x02);
    PROP_ERR(PUBLISH, TU_LOOSE, R_LOOSE, 0, 1, 0x01, 0xFF);
    PROP_ERR(WILL, TU_LOOSE, R_LOOSE, 0, 1, 0x01, 0x02);
    PROP_OK(PUBLISH, 0x01, 0x01);
    /* Topic Alias 0 ([MQTT-3.3.2-8]). */
    PROP_ERR(PUBLISH, TU_LOOSE, R_LOOSE | R94, 0, 2, 0x23, 0x00, 0x00);
    PROP_OK(PUBLISH, 0x23, 0xFF, 0xFF);
    /* Response Topic: a Topic Name, no wildcards ([MQTT-3.3.2-14], [MQTT-3.1.3-11]);
     * UTF-8 ([MQTT-3.3.2-13]). */
    PROP_ERR(PUBLISH, TU_LOOSE, R_LOOSE | R90, 0, 6, 0x08, 0x00, 0x03, 'a', '/', '#');
    PROP_ERR(PUBLISH, TU_LOOSE, R_LOOSE | R90, 0, 4, 0x08, 0x00, 0x01, '+');
    PROP_ERR(WILL, TU_LOOSE, R_LOOSE | R90, 0, 6, 0x08, 0x00, 0x03, 'a', '/', '+');
    PROP_ERR(PUBLISH, TU_MAL, R81, 0, 5, 0x08, 0x00, 0x02, 0xC0, 0x80);
    /* Content Type and Reason String are UTF-8 strings. */
    PROP_ERR(PUBLISH, TU_MAL, R81, 0, 5, 0x03, 0x00, 0x02, 0xED, 0xA0);
    PROP_ERR(IOTC_MQTT_PUBACK, TU_MAL, R81, 0, 4, 0x1F, 0x00, 0x01, 0x00);
    PROP_ERR(CONNACK, TU_MAL, R81, 0, 4, 0x12, 0x00, 0x01, 0xFF);
}

/* ---- reason codes ------------------------------------------------------------------------------ */

/* Each acknowledgement "MUST use one of the <type> Reason Codes" ([MQTT-3.2.2-8],
 * [MQTT-3.4.2-1], [MQTT-3.5.2-1], [MQTT-3.6.2-1], [MQTT-3.7.2-1],
 * [MQTT-3.9.3-2], [MQTT-3.11.3-2], [MQTT-3.14.2-1], [MQTT-3.15.2-1]). */
static void test_reason_codes_per_type(void **state)
{
    (void)state;
    static const struct {
        iotc_mqtt_type t;
        uint8_t b[8];
        size_t n;
        size_t at;
    } tmpl[] = {
        {IOTC_MQTT_CONNACK, {0x20, 0x03, 0x00, 0xEE, 0x00}, 5, 3},
        {IOTC_MQTT_PUBACK, {0x40, 0x04, 0x00, 0x01, 0xEE, 0x00}, 6, 4},
        {IOTC_MQTT_PUBREC, {0x50, 0x04, 0x00, 0x01, 0xEE, 0x00}, 6, 4},
        {IOTC_MQTT_PUBREL, {0x62, 0x04, 0x00, 0x01, 0xEE, 0x00}, 6, 4},
        {IOTC_MQTT_PUBCOMP, {0x70, 0x04, 0x00, 0x01, 0xEE, 0x00}, 6, 4},
        {IOTC_MQTT_PUBACK, {0x40, 0x03, 0x00, 0x01, 0xEE}, 5, 4},
        {IOTC_MQTT_SUBACK, {0x90, 0x04, 0x00, 0x01, 0x00, 0xEE}, 6, 5},
        {IOTC_MQTT_UNSUBACK, {0xB0, 0x04, 0x00, 0x01, 0x00, 0xEE}, 6, 5},
        {IOTC_MQTT_DISCONNECT, {0xE0, 0x02, 0xEE, 0x00}, 4, 2},
        {IOTC_MQTT_DISCONNECT, {0xE0, 0x01, 0xEE}, 3, 2},
        {IOTC_MQTT_AUTH, {0xF0, 0x06, 0xEE, 0x04, 0x15, 0x00, 0x01, 'm'}, 8, 2},
    };
    for (size_t i = 0; i < sizeof tmpl / sizeof tmpl[0]; i++)
        for (unsigned c = 0; c < 256; c++) {
            uint8_t b[8];
            memcpy(b, tmpl[i].b, tmpl[i].n);
            b[tmpl[i].at] = (uint8_t)c;
            if (iotc_mqtt_reason_allowed(tmpl[i].t, V5, (uint8_t)c)) {
                iotc_mqtt_packet p;
                tu_decode_ok_(b, tmpl[i].n, V5, &p, __FILE__, __LINE__);
            } else {
                print_message("%s reason 0x%02X\n", iotc_mqtt_type_name(tmpl[i].t), c);
                tu_expect_err_(b, tmpl[i].n, V5, 0, TU_LOOSE, R_LOOSE, tmpl[i].at, tmpl[i].at, __FILE__, __LINE__);
            }
        }
    /* The allowed set itself is checked against the spec's tables in
     * test_mqtt_packets; spot checks here. */
    ERR(V5, TU_LOOSE, R_LOOSE, 4, 4, 0x40, 0x03, 0x12, 0x34, 0x01);
    ERR(V5, TU_LOOSE, R_LOOSE, 4, 4, 0x50, 0x03, 0x12, 0x34, 0x92);
    ERR(V5, TU_LOOSE, R_LOOSE, 4, 4, 0x62, 0x03, 0x12, 0x34, 0x10);
    ERR(V5, TU_LOOSE, R_LOOSE, 4, 4, 0x70, 0x03, 0x12, 0x34, 0x87);
    ERR(V5, TU_LOOSE, R_LOOSE, 6, 6, 0x90, 0x05, 0x12, 0x34, 0x00, 0x00, 0x03);
    ERR(V5, TU_LOOSE, R_LOOSE, 6, 6, 0xB0, 0x05, 0x12, 0x34, 0x00, 0x00, 0x01);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 2, 0xE0, 0x01, 0x84);
    ERR(V5, TU_LOOSE, R_LOOSE, 3, 3, 0x20, 0x03, 0x00, 0x8B, 0x00);

    /* 3.1.1 CONNACK return codes 6..255 are reserved (§3.2.2.3); SUBACK
     * return codes other than 0, 1, 2, 0x80 "are reserved and MUST NOT be used"
     * ([MQTT-3.9.3-2]). */
    for (unsigned c = 0; c < 256; c++) {
        uint8_t ca[4] = {0x20, 0x02, 0x00, (uint8_t)c};
        uint8_t sa[5] = {0x90, 0x03, 0x00, 0x01, (uint8_t)c};
        iotc_mqtt_packet p;
        if (c <= 5)
            tu_decode_ok_(ca, 4, V4, &p, __FILE__, __LINE__);
        else
            tu_expect_err_(ca, 4, V4, 0, TU_LOOSE, R_LOOSE, 3, 3, __FILE__, __LINE__);
        if (c <= 2 || c == 0x80)
            tu_decode_ok_(sa, 5, V4, &p, __FILE__, __LINE__);
        else
            tu_expect_err_(sa, 5, V4, 0, TU_LOOSE, R_LOOSE, 4, 4, __FILE__, __LINE__);
    }
}

/* CONNACK Acknowledge Flags: bits 7-1 reserved ([MQTT-3.2.2-1] in both);
 * Session Present 0 with a non-zero code (5 [MQTT-3.2.2-6], 3.1.1 [MQTT-3.2.2-4]). */
static void test_connack_flags(void **state)
{
    (void)state;
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 2, 0x20, 0x02, 0x02, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 2, 0x20, 0x02, 0x80, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 2, 0x20, 0x02, 0xFF, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 2, 0x20, 0x03, 0x02, 0x00, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 2, 0x20, 0x03, 0x81, 0x00, 0x00);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 3, 0x20, 0x02, 0x01, 0x05);
    ERR(V4, TU_LOOSE, R_LOOSE, 2, 3, 0x20, 0x02, 0x01, 0x01);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 3, 0x20, 0x03, 0x01, 0x87, 0x00);
    ERR(V5, TU_LOOSE, R_LOOSE, 2, 3, 0x20, 0x03, 0x01, 0x80, 0x00);
    OK(V5, 0x20, 0x03, 0x01, 0x00, 0x00);
}

/* ---- maximum packet size --------------------------------------------------------------------------- */

/* Refused from the fixed header alone, before the body arrives (MQTT 5
 * §3.1.2.11.4, 0x95 Packet too large). */
static void test_max_packet_size(void **state)
{
    (void)state;
    tu_expect_err_(B(0x30, 0x62), V5, 10, TU_BIG, R95, ANY, __FILE__, __LINE__);
    tu_expect_err_(B(0x30, 0x62), V4, 10, TU_BIG, R95, ANY, __FILE__, __LINE__);
    tu_expect_err_(B(0x30, 0xC8, 0x01), V5, 100, TU_BIG, R95, ANY, __FILE__, __LINE__);
    tu_expect_err_(B(0x10, 0x7F), V5, 100, TU_BIG, R95, ANY, __FILE__, __LINE__);
    /* The whole packet given: same answer. */
    uint8_t big[100];
    memset(big, 'x', sizeof big);
    big[0] = 0x30;
    big[1] = 98;
    big[2] = 0x00;
    big[3] = 0x01;
    tu_expect_err_(big, sizeof big, V4, 10, TU_BIG, R95, ANY, __FILE__, __LINE__);
    tu_expect_err_(big, sizeof big, V4, 99, TU_BIG, R95, ANY, __FILE__, __LINE__);
    iotc_mqtt_packet p;
    size_t used = 0;
    assert_int_equal(iotc_mqtt_decode(big, sizeof big, V4, 100, &p, &used, NULL), IOTC_MQTT_OK);
    assert_int_equal(used, 100);

    /* Without a maximum, a 256 MB packet is just incomplete; its size is known. */
    iotc_mqtt_error err;
    used = 0;
    assert_int_equal(iotc_mqtt_decode(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), V5, 0, &p, &used, &err), IOTC_MQTT_NEED_MORE);
    assert_int_equal(used, 268435460u);
    used = 0;
    assert_int_equal(iotc_mqtt_decode(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), V5, 268435460u, &p, &used, &err),
                     IOTC_MQTT_NEED_MORE);
    tu_expect_err_(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), V5, 268435459u, TU_BIG, R95, ANY, __FILE__, __LINE__);
}

/* ---- truncation -------------------------------------------------------------------------------------- */

/* Every proper prefix of every valid packet is IOTC_MQTT_NEED_MORE: never OK,
 * never an error, and never a read past the prefix (exact-size heap copies). */
static void test_truncated_every_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < TU_NSAMPLES; i++) {
        const tu_sample *s = &tu_samples[i];
        for (size_t k = 0; k < s->len; k++) {
            uint8_t *b = malloc(k ? k : 1);
            assert_non_null(b);
            memcpy(b, s->bytes, k);
            iotc_mqtt_packet p;
            iotc_mqtt_error err;
            size_t used = 12345;
            memset(&err, 0, sizeof err);
            iotc_mqtt_status st = iotc_mqtt_decode(b, k, s->version, 0, &p, &used, &err);
            if (st != IOTC_MQTT_NEED_MORE)
                fail_msg("%s: prefix of %zu/%zu bytes gave %d (%s)", s->name, k, s->len, (int)st,
                         err.what ? err.what : "");
            /* *used: the total once the fixed header is complete, else 0. */
            size_t expect_used = k >= 2 ? s->len : 0;
            if (used != expect_used)
                fail_msg("%s: prefix of %zu bytes: *used %zu, expected %zu", s->name, k, used, expect_used);
            st = iotc_mqtt_decode(b, k, s->version, (uint32_t)s->len, &p, &used, NULL);
            if (st != IOTC_MQTT_NEED_MORE)
                fail_msg("%s: prefix of %zu bytes with max %zu gave %d", s->name, k, s->len, (int)st);
            uint8_t type, flags;
            uint32_t rem;
            size_t hl;
            st = iotc_mqtt_fixed_header(b, k, s->version, &type, &flags, &rem, &hl, NULL);
            if (st != (k >= 2 ? IOTC_MQTT_OK : IOTC_MQTT_NEED_MORE))
                fail_msg("%s: fixed_header on %zu bytes gave %d", s->name, k, (int)st);
            free(b);
        }
    }
    /* A long one: prefixes around the header and at a few points of the body. */
    size_t n = 3 + 206;
    uint8_t *full = calloc(1, n);
    assert_non_null(full);
    memcpy(full, "\x30\xCE\x01\x00\x03" "a/b\x00", 9);
    static const size_t cuts[] = {0, 1, 2, 3, 4, 8, 9, 10, 100, 207, 208};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        size_t k = cuts[c];
        uint8_t *b = malloc(k ? k : 1);
        memcpy(b, full, k);
        iotc_mqtt_packet p;
        size_t used = 12345;
        assert_int_equal(iotc_mqtt_decode(b, k, V5, 0, &p, &used, NULL), IOTC_MQTT_NEED_MORE);
        assert_int_equal(used, k >= 3 ? n : 0);
        free(b);
    }
    iotc_mqtt_packet p;
    size_t used = 0;
    assert_int_equal(iotc_mqtt_decode(full, n, V5, 0, &p, &used, NULL), IOTC_MQTT_OK);
    free(full);
}

/* ---- the encoder refuses the same things -------------------------------------------------------------- */

static void init(iotc_mqtt_packet *p, iotc_mqtt_type t)
{
    memset(p, 0, sizeof *p);
    p->type = t;
}

static void pub(iotc_mqtt_packet *p, const char *topic, uint8_t qos, uint16_t id)
{
    init(p, IOTC_MQTT_PUBLISH);
    p->u.publish.topic = iotc_mqtt_str(topic);
    p->u.publish.qos = qos;
    p->u.publish.packet_id = id;
}

static void test_encoder_refuses(void **state)
{
    (void)state;
    iotc_mqtt_packet p;
    static const char *const wild[] = {"a/+", "#", "+", "a/#", "a+b"};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        pub(&p, wild[i], 0, 0);
        tu_encode_invalid(&p, V4);
        tu_encode_invalid(&p, V5);
    }
    pub(&p, "", 0, 0);
    tu_encode_invalid(&p, V4);
    tu_encode_invalid(&p, V5); /* no Topic Alias */
    p.u.publish.props.present = IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS);
    p.u.publish.props.topic_alias = 3;
    size_t sz;
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &sz, NULL), IOTC_MQTT_OK);
    p.u.publish.props.topic_alias = 0;
    tu_encode_invalid(&p, V5);

    pub(&p, "a/b", 3, 1);
    tu_encode_invalid(&p, V4);
    tu_encode_invalid(&p, V5);
    pub(&p, "a/b", 1, 0);
    tu_encode_invalid(&p, V4);
    tu_encode_invalid(&p, V5);
    pub(&p, "a/b", 2, 0);
    tu_encode_invalid(&p, V5);
    pub(&p, "a/b", 0, 0);
    p.u.publish.dup = true;
    tu_encode_invalid(&p, V4);
    pub(&p, "a/\xED\xA0\x80", 0, 0);
    tu_encode_invalid(&p, V5);

    /* A property PUBLISH does not allow. */
    pub(&p, "a/b", 0, 0);
    p.u.publish.props.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
    tu_encode_invalid(&p, V5);
    p.u.publish.props.present = IOTC_PROP_BIT(IOTC_PROP_REASON_STRING);
    p.u.publish.props.reason_string = iotc_mqtt_str("r");
    tu_encode_invalid(&p, V5);
    p.u.publish.props.present = IOTC_PROP_BIT(IOTC_PROP_PAYLOAD_FORMAT_INDICATOR);
    p.u.publish.props.payload_format_indicator = 2;
    tu_encode_invalid(&p, V5);
    p.u.publish.props.present = IOTC_PROP_BIT(IOTC_PROP_RESPONSE_TOPIC);
    p.u.publish.props.response_topic = iotc_mqtt_str("r/#");
    tu_encode_invalid(&p, V5);
    static const uint32_t zero_id[] = {0}, big_id[] = {268435456u};
    p.u.publish.props.present = 0;
    p.u.publish.props.sub_ids = zero_id;
    p.u.publish.props.sub_id_count = 1;
    tu_encode_invalid(&p, V5);
    p.u.publish.props.sub_ids = big_id;
    tu_encode_invalid(&p, V5);

    /* CONNECT. */
    init(&p, IOTC_MQTT_CONNECT);
    p.u.connect.version = IOTC_MQTT_V311;
    p.u.connect.clean_start = true;
    p.u.connect.client_id = iotc_mqtt_str("c");
    p.u.connect.has_password = true;
    p.u.connect.password = iotc_mqtt_str("pw");
    tu_encode_invalid(&p, V4); /* 3.1.1 [MQTT-3.1.2-22] */
    p.u.connect.version = IOTC_MQTT_V5;
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &sz, NULL), IOTC_MQTT_OK);
    p.u.connect.has_password = false;
    p.u.connect.props.present = IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS);
    p.u.connect.props.topic_alias = 1;
    tu_encode_invalid(&p, V5);
    p.u.connect.props.present = IOTC_PROP_BIT(IOTC_PROP_WILL_DELAY_INTERVAL);
    tu_encode_invalid(&p, V5);
    p.u.connect.props.present = IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM);
    p.u.connect.props.receive_maximum = 0;
    tu_encode_invalid(&p, V5);
    p.u.connect.props.present = IOTC_PROP_BIT(IOTC_PROP_AUTHENTICATION_DATA);
    tu_encode_invalid(&p, V5); /* without an Authentication Method */
    p.u.connect.props.present = 0;
    p.u.connect.will = true;
    p.u.connect.will_topic = iotc_mqtt_str("w");
    p.u.connect.will_qos = 3;
    tu_encode_invalid(&p, V5);
    p.u.connect.will_qos = 1;
    p.u.connect.will_props.present = IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
    tu_encode_invalid(&p, V5);
    p.u.connect.will_props.present = 0;
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &sz, NULL), IOTC_MQTT_OK);
    p.u.connect.version = (iotc_mqtt_version)3;
    tu_encode_invalid(&p, V5);
    p.u.connect.version = IOTC_MQTT_V5;
    p.u.connect.client_id = iotc_mqtt_str("a\0b");
    p.u.connect.client_id.len = 3;
    tu_encode_invalid(&p, V5);

    /* SUBSCRIBE. */
    iotc_mqtt_sub s = {BS("t"), 1, false, false, 0};
    init(&p, IOTC_MQTT_SUBSCRIBE);
    p.u.subscribe.packet_id = 1;
    tu_encode_invalid(&p, V5); /* no filters */
    p.u.subscribe.subs = &s;
    p.u.subscribe.count = 1;
    assert_int_equal(iotc_mqtt_encoded_size(&p, V5, &sz, NULL), IOTC_MQTT_OK);
    p.u.subscribe.packet_id = 0;
    tu_encode_invalid(&p, V4);
    p.u.subscribe.packet_id = 1;
    s.qos = 3;
    tu_encode_invalid(&p, V4);
    tu_encode_invalid(&p, V5);
    s.qos = 1;
    s.retain_handling = 3;
    tu_encode_invalid(&p, V5);
    s.retain_handling = 0;
    s.filter = iotc_mqtt_str("a/#/b");
    tu_encode_invalid(&p, V4);
    s.filter = iotc_mqtt_str("$share/g/t");
    s.no_local = true;
    tu_encode_invalid(&p, V5);
    s.no_local = false;
    static const uint32_t two_ids[] = {1, 2};
    p.u.subscribe.props.sub_ids = two_ids;
    p.u.subscribe.props.sub_id_count = 2;
    tu_encode_invalid(&p, V5);
    p.u.subscribe.props.sub_ids = zero_id;
    p.u.subscribe.props.sub_id_count = 1;
    tu_encode_invalid(&p, V5);
    p.u.subscribe.props.sub_ids = NULL;
    p.u.subscribe.props.sub_id_count = 0;
    p.u.subscribe.props.present = IOTC_PROP_BIT(IOTC_PROP_REASON_STRING);
    tu_encode_invalid(&p, V5);

    /* UNSUBSCRIBE. */
    iotc_mqtt_bytes f = iotc_mqtt_str("a+");
    init(&p, IOTC_MQTT_UNSUBSCRIBE);
    p.u.unsubscribe.packet_id = 2;
    tu_encode_invalid(&p, V4); /* no filters */
    p.u.unsubscribe.filters = &f;
    p.u.unsubscribe.count = 1;
    tu_encode_invalid(&p, V4);
    f = iotc_mqtt_str("a/+");
    p.u.unsubscribe.packet_id = 0;
    tu_encode_invalid(&p, V5);

    /* Acknowledgements. */
    init(&p, IOTC_MQTT_PUBACK);
    tu_encode_invalid(&p, V4); /* packet id 0 */
    p.u.ack.packet_id = 1;
    p.u.ack.reason = 0x01;
    tu_encode_invalid(&p, V5);
    p.u.ack.reason = 0;
    p.u.ack.props.present = IOTC_PROP_BIT(IOTC_PROP_CONTENT_TYPE);
    tu_encode_invalid(&p, V5);
    init(&p, IOTC_MQTT_PUBREL);
    p.u.ack.packet_id = 1;
    p.u.ack.reason = 0x10;
    tu_encode_invalid(&p, V5);
    static const uint8_t bad_codes[] = {0x00, 0x03};
    init(&p, IOTC_MQTT_SUBACK);
    p.u.suback.packet_id = 1;
    p.u.suback.codes = bad_codes;
    p.u.suback.count = 2;
    tu_encode_invalid(&p, V4);
    tu_encode_invalid(&p, V5);
    init(&p, IOTC_MQTT_CONNACK);
    p.u.connack.reason = 6;
    tu_encode_invalid(&p, V4);
    p.u.connack.reason = 0x87;
    p.u.connack.session_present = true;
    tu_encode_invalid(&p, V5);
    p.u.connack.session_present = false;
    p.u.connack.props.present = IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_QOS);
    p.u.connack.props.maximum_qos = 2;
    tu_encode_invalid(&p, V5);
    p.u.connack.props.present = 0;
    p.u.connack.props.sub_ids = two_ids;
    p.u.connack.props.sub_id_count = 1;
    tu_encode_invalid(&p, V5);
    init(&p, IOTC_MQTT_DISCONNECT);
    p.u.disconnect.reason = 0x01;
    tu_encode_invalid(&p, V5);
    init(&p, IOTC_MQTT_AUTH);
    tu_encode_invalid(&p, V4); /* no AUTH in 3.1.1 */
    p.u.disconnect.props.present = IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS);
    p.u.disconnect.props.topic_alias = 1;
    tu_encode_invalid(&p, V5);
    init(&p, (iotc_mqtt_type)0);
    tu_encode_invalid(&p, V5);
    init(&p, (iotc_mqtt_type)16);
    tu_encode_invalid(&p, V5);
}

/* §1.5.4, §1.5.6: strings and binary data hold at most 65535 bytes. */
static void test_string_length_limit(void **state)
{
    (void)state;
    size_t n = 65536;
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, 'a', n);
    s[n] = '\0';
    iotc_mqtt_packet p;
    iotc_mqtt_bytes big = {(const uint8_t *)s, n}, max = {(const uint8_t *)s, n - 1};

    pub(&p, "t", 0, 0);
    p.u.publish.topic = big;
    tu_encode_invalid(&p, V4);
    p.u.publish.topic = max; /* 65535 is fine */
    size_t sz = 0;
    assert_int_equal(iotc_mqtt_encoded_size(&p, V4, &sz, NULL), IOTC_MQTT_OK);
    assert_int_equal(sz, 1 + 3 + 2 + 65535);

    /* And it decodes. */
    uint8_t *b = malloc(sz);
    size_t w = 0, used = 0;
    assert_int_equal(iotc_mqtt_encode(&p, V4, b, sz, &w, NULL), IOTC_MQTT_OK);
    assert_memory_equal(b, ((const uint8_t[]){0x30, 0x81, 0x80, 0x04, 0xFF, 0xFF}), 6);
    iotc_mqtt_packet d;
    assert_int_equal(iotc_mqtt_decode(b, w, V4, 0, &d, &used, NULL), IOTC_MQTT_OK);
    assert_int_equal(d.u.publish.topic.len, 65535);
    free(b);

    init(&p, IOTC_MQTT_CONNECT);
    p.u.connect.version = IOTC_MQTT_V5;
    p.u.connect.client_id = big;
    tu_encode_invalid(&p, V5);
    p.u.connect.client_id = iotc_mqtt_str("c");
    p.u.connect.has_username = true;
    p.u.connect.username = big;
    tu_encode_invalid(&p, V5);
    p.u.connect.username = iotc_mqtt_str("u");
    p.u.connect.has_password = true;
    p.u.connect.password = big;
    tu_encode_invalid(&p, V5);
    p.u.connect.password = iotc_mqtt_str("p");
    p.u.connect.will = true;
    p.u.connect.will_topic = iotc_mqtt_str("w");
    p.u.connect.will_payload = big;
    tu_encode_invalid(&p, V5);
    p.u.connect.will_payload = iotc_mqtt_str("");
    iotc_mqtt_user_prop up = {big, iotc_mqtt_str("v")};
    p.u.connect.props.user = &up;
    p.u.connect.props.user_count = 1;
    tu_encode_invalid(&p, V5);
    up.key = iotc_mqtt_str("k");
    up.value = big;
    tu_encode_invalid(&p, V5);
    p.u.connect.props.user = NULL;
    p.u.connect.props.user_count = 0;
    p.u.connect.props.present = IOTC_PROP_BIT(IOTC_PROP_AUTHENTICATION_METHOD);
    p.u.connect.props.authentication_method = big;
    tu_encode_invalid(&p, V5);
    free(s);
}

/* Nothing is read beyond the given length, whatever the length fields say. */
static void test_length_fields_lie(void **state)
{
    (void)state;
    /* A string length of 65535 inside a short packet. */
    ERR(V4, TU_MAL, R81, TU_ANY, TU_ANY, 0x30, 0x04, 0xFF, 0xFF, 'a', 'b');
    ERR(V5, TU_MAL, R81, TU_ANY, TU_ANY, 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x00, 0x00, 0xFF, 0xFF,
        'a');
    /* A property length of 268435455 inside a short packet. */
    ERR(V5, TU_MAL, R81, TU_ANY, TU_ANY, 0x40, 0x07, 0x12, 0x34, 0x00, 0xFF, 0xFF, 0xFF, 0x7F);
    /* A user property whose value length runs past the block but not the packet. */
    ERR(V5, TU_MAL, R81, TU_ANY, TU_ANY, 0x30, 0x0F, 0x00, 0x01, 't', 0x05, 0x26, 0x00, 0x00, 0x00, 0x04, 'x', 'y', 'z', 'w',
        'v', 'u');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserved_types),
        cmocka_unit_test(test_wrong_fixed_header_flags),
        cmocka_unit_test(test_publish_qos3),
        cmocka_unit_test(test_publish_dup_qos0),
        cmocka_unit_test(test_remaining_length_too_long),
        cmocka_unit_test(test_non_minimal_vbi),
        cmocka_unit_test(test_length_inconsistent),
        cmocka_unit_test(test_utf8_valid_helper),
        cmocka_unit_test(test_utf8_in_fields),
        cmocka_unit_test(test_binary_fields_take_any_bytes),
        cmocka_unit_test(test_connect_protocol),
        cmocka_unit_test(test_connect_flags),
        cmocka_unit_test(test_auth_without_method),
        cmocka_unit_test(test_packet_id_zero),
        cmocka_unit_test(test_subscribe_rules),
        cmocka_unit_test(test_bad_topic_filters),
        cmocka_unit_test(test_publish_topic_rules),
        cmocka_unit_test(test_property_not_allowed),
        cmocka_unit_test(test_property_duplicates),
        cmocka_unit_test(test_property_unknown_id),
        cmocka_unit_test(test_property_values),
        cmocka_unit_test(test_reason_codes_per_type),
        cmocka_unit_test(test_connack_flags),
        cmocka_unit_test(test_max_packet_size),
        cmocka_unit_test(test_truncated_every_prefix),
        cmocka_unit_test(test_encoder_refuses),
        cmocka_unit_test(test_string_length_limit),
        cmocka_unit_test(test_length_fields_lie),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
