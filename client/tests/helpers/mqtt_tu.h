/*
 * Test helpers for the MQTT codec tests (test_mqtt_*.c).
 *
 * Everything here is independent of the codec under test except where it
 * calls the public API to check it: expected bytes are always written by hand
 * in the tests, and the small property-block parser below exists only so that
 * an encoder may put single-valued properties in any order (the spec does not
 * fix one) while user properties and subscription identifiers keep theirs.
 *
 * The helpers fail the running cmocka test at the caller's file and line.
 */
#ifndef MQTT_TU_H
#define MQTT_TU_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "iotc/mqtt.h"

/* Byte list literal: expands to two arguments, pointer and length. */
#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

/* Static initialiser of an iotc_mqtt_bytes from a string literal. */
#define BS(s) { (const uint8_t *)(s), sizeof(s) - 1 }

#define V4 IOTC_MQTT_V311
#define V5 IOTC_MQTT_V5

/* Acceptable error statuses, as a mask. */
#define TU_S(s) (1u << (unsigned)(s))
#define TU_MAL TU_S(IOTC_MQTT_ERR_MALFORMED)
#define TU_PROTO TU_S(IOTC_MQTT_ERR_PROTOCOL)
#define TU_LOOSE (TU_MAL | TU_PROTO) /* the spec leaves the classification open */
#define TU_BIG TU_S(IOTC_MQTT_ERR_TOO_LARGE)
#define TU_VER TU_S(IOTC_MQTT_ERR_UNSUPPORTED_VERSION)

/* Acceptable reason codes (all >= 0x80), as a mask; 0 = "the status's own". */
#define TU_R(code) ((uint64_t)1 << ((unsigned)(code) - 0x80u))
#define R81 TU_R(0x81)
#define R82 TU_R(0x82)
#define R84 TU_R(0x84)
#define R8F TU_R(0x8F)
#define R90 TU_R(0x90)
#define R94 TU_R(0x94)
#define R95 TU_R(0x95)
#define R_LOOSE (R81 | R82)

/* Offset range meaning "do not check" (still must be <= packet length). */
#define TU_ANY ((size_t)-1)

void tu_hexdump(const char *label, const uint8_t *b, size_t n);
bool tu_bytes_eq(iotc_mqtt_bytes b, const void *data, size_t len);
bool tu_str_eq(iotc_mqtt_bytes b, const char *s);
/* Minimal VBI writer for building test packets (returns bytes written). */
size_t tu_vbi(uint32_t v, uint8_t *out);
/* Builds fixed header + body into out (cap >= 5 + body_len); returns size. */
size_t tu_frame(uint8_t first, const uint8_t *body, size_t body_len, uint8_t *out);

/*
 * Decodes b[0..n) and requires IOTC_MQTT_OK with *used == n.  Also checks, on
 * an exact-size heap copy, that the decoder reads nothing past n; that
 * trailing bytes are left alone; and that a maximum packet size of exactly n
 * passes while n - 1 is refused.  *p's views point into b.
 */
void tu_decode_ok_(const uint8_t *b, size_t n, iotc_mqtt_version v, iotc_mqtt_packet *p,
                   const char *file, int line);
#define tu_decode_ok(BYTES, v, p) tu_decode_ok_(BYTES, v, p, __FILE__, __LINE__)
#define tu_decode_arr(a, v, p) tu_decode_ok_(a, sizeof(a), v, p, __FILE__, __LINE__)

/*
 * Requires decoding b[0..n) to fail with a status in `smask`, a reason code
 * in `rmask` (0: the reason that goes with the status), and an offset in
 * [lo, hi] (lo == TU_ANY: any offset within the packet).  The same input is
 * also fed to a stream reader, whole and byte by byte, which must fail the
 * same way.  `max` is the maximum packet size given to both.
 */
void tu_expect_err_(const uint8_t *b, size_t n, iotc_mqtt_version v, uint32_t max, unsigned smask,
                    uint64_t rmask, size_t lo, size_t hi, const char *file, int line);
#define tu_expect_err(BYTES, v, smask, rmask, lo, hi) \
    tu_expect_err_(BYTES, v, 0, smask, rmask, lo, hi, __FILE__, __LINE__)
#define tu_expect_err_max(BYTES, v, max, smask, rmask, lo, hi) \
    tu_expect_err_(BYTES, v, max, smask, rmask, lo, hi, __FILE__, __LINE__)

/* A property block inside an expected packet: [off, off + len). */
typedef struct {
    size_t off;
    size_t len;
} tu_span;

/*
 * Encodes p and requires exactly `exp` (n bytes), except that inside the
 * given property blocks single-valued properties may come in any order.
 * Also checks iotc_mqtt_encoded_size and IOTC_MQTT_ERR_BUFFER with the size
 * needed for every too-small capacity tried.
 */
void tu_encode_eq_(const iotc_mqtt_packet *p, iotc_mqtt_version v, const uint8_t *exp, size_t n,
                   const tu_span *spans, size_t nspans, const char *file, int line);
#define tu_encode_eq(p, v, BYTES) tu_encode_eq_(p, v, BYTES, NULL, 0, __FILE__, __LINE__)
#define tu_encode_eq_spans(p, v, exp, n, spans, nspans) \
    tu_encode_eq_(p, v, exp, n, spans, nspans, __FILE__, __LINE__)

/* Encodes p and requires one of the given encodings (for optional short forms). */
void tu_encode_oneof_(const iotc_mqtt_packet *p, iotc_mqtt_version v, const uint8_t *const *alts,
                      const size_t *lens, size_t nalts, const char *file, int line);

/* Encoding must be refused with IOTC_MQTT_ERR_INVALID_ARG (encode and encoded_size). */
void tu_encode_invalid_(const iotc_mqtt_packet *p, iotc_mqtt_version v, const char *file, int line);
#define tu_encode_invalid(p, v) tu_encode_invalid_(p, v, __FILE__, __LINE__)

/* Deep comparison of two packets' meaning (views compared by content, lists
 * walked with the *_next functions so arrays and raw lists compare equal). */
void tu_packet_eq_(const iotc_mqtt_packet *a, const iotc_mqtt_packet *b, iotc_mqtt_version v,
                   const char *file, int line);
#define tu_packet_eq(a, b, v) tu_packet_eq_(a, b, v, __FILE__, __LINE__)
void tu_props_eq_(const iotc_mqtt_props *a, const iotc_mqtt_props *b, const char *what,
                  const char *file, int line);

/* Compares two property blocks entry by entry (order kept for 0x26, 0x0B). */
bool tu_prop_blocks_equiv(const uint8_t *a, const uint8_t *b, size_t len, char *why, size_t why_cap);

/* Size of the value that follows property `id` at p (end at `end`), or 0 if
 * the id is unknown or the value does not fit. */
size_t tu_prop_value_len(uint8_t id, const uint8_t *p, const uint8_t *end);

/* MQTT 5 §2.2.2.2 Table 2-4: which packets each property may appear in.
 * `packets` has bit t set for packet type t, and bit 0 (TU_WILL) for the
 * CONNECT's Will Properties. */
typedef struct {
    uint8_t id;
    uint32_t packets;
} tu_allow_row;
#define TU_WILL 1u
extern const tu_allow_row tu_allow_table[];
extern const size_t tu_allow_count;
bool tu_prop_is_allowed(uint8_t id, unsigned t); /* t == 0: the Will */

/*
 * Builds a valid MQTT 5 packet of type t (1..15, or 0 for a CONNECT whose
 * Will Properties are the block) around the property block props[0..n).
 * Returns the packet size; *props_off is where the block starts in out.
 */
size_t tu_build_with_props(unsigned t, const uint8_t *props, size_t n, uint8_t *out, size_t *props_off);
/* Writes a valid value for property `id` (the bytes after the identifier). */
size_t tu_prop_value(uint8_t id, uint8_t *out);
/* The properties of a decoded packet built by tu_build_with_props(t). */
const iotc_mqtt_props *tu_props_of(const iotc_mqtt_packet *p, unsigned t);

/* A fixed-seed pseudo-random generator for split points. */
uint32_t tu_rand(uint32_t *state);

#endif
