/*
 * iotc/mqtt.h: the MQTT 3.1.1 and 5.0 codec shared by libiotc and iotsim.
 *
 * Owns: the in-memory form of every control packet, the strict decoder (one
 * packet from a buffer, or a stream in arbitrary chunks), the encoder, MQTT 5
 * properties with their per-packet allow-list, and the names of reason codes.
 * It does no I/O, reads no clock and keeps no global state.
 *
 * Views.  Strings and binary fields are iotc_mqtt_bytes: a pointer and a
 * length, never NUL-terminated.  A decoded packet's views point into the bytes
 * it was decoded from (the caller's input, or the stream reader's buffer); they
 * stay valid while those bytes do.  On encode, the caller keeps ownership of
 * everything a packet points to; the encoder copies into the output buffer.
 *
 * Lists.  A packet may carry lists (SUBSCRIBE filters, UNSUBSCRIBE filters,
 * MQTT 5 user properties, subscription identifiers).  A decoded list is a count
 * plus the raw wire bytes it came from; walk it with the matching *_next()
 * function.  To encode a list, either give an array, or leave the array NULL
 * and give the raw bytes (as a decoder left them): that lets a broker forward a
 * PUBLISH's user properties without copying them out first.
 *
 * Errors.  Every decode failure says whether the packet is malformed or breaks
 * the protocol, which MQTT 5 reason code a broker would send for it, the byte
 * offset within the packet where the fault was found, and a sentence naming
 * the rule.  Nothing is read beyond the given length, whatever the packet's own
 * length fields say.
 */
#ifndef IOTC_MQTT_H
#define IOTC_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Protocol levels as they appear in CONNECT. */
typedef enum {
    IOTC_MQTT_V311 = 4,
    IOTC_MQTT_V5 = 5
} iotc_mqtt_version;

typedef enum {
    IOTC_MQTT_CONNECT = 1,
    IOTC_MQTT_CONNACK = 2,
    IOTC_MQTT_PUBLISH = 3,
    IOTC_MQTT_PUBACK = 4,
    IOTC_MQTT_PUBREC = 5,
    IOTC_MQTT_PUBREL = 6,
    IOTC_MQTT_PUBCOMP = 7,
    IOTC_MQTT_SUBSCRIBE = 8,
    IOTC_MQTT_SUBACK = 9,
    IOTC_MQTT_UNSUBSCRIBE = 10,
    IOTC_MQTT_UNSUBACK = 11,
    IOTC_MQTT_PINGREQ = 12,
    IOTC_MQTT_PINGRESP = 13,
    IOTC_MQTT_DISCONNECT = 14,
    IOTC_MQTT_AUTH = 15 /* MQTT 5 only */
} iotc_mqtt_type;

/* Result of codec calls.  Values >= IOTC_MQTT_ERR_MALFORMED are errors. */
typedef enum {
    IOTC_MQTT_OK = 0,
    IOTC_MQTT_NEED_MORE = 1,           /* decode: the packet is not complete yet */
    IOTC_MQTT_ERR_MALFORMED = 2,       /* the bytes do not parse as the spec defines */
    IOTC_MQTT_ERR_PROTOCOL = 3,        /* they parse, but break a rule of the protocol */
    IOTC_MQTT_ERR_TOO_LARGE = 4,       /* over the maximum packet size */
    IOTC_MQTT_ERR_UNSUPPORTED_VERSION = 5, /* CONNECT with a protocol name/level we do not speak */
    IOTC_MQTT_ERR_BUFFER = 6,          /* encode: the output buffer is too small */
    IOTC_MQTT_ERR_INVALID_ARG = 7,     /* encode/API: the caller's packet or arguments are not valid */
    IOTC_MQTT_ERR_NOMEM = 8            /* stream reader: its buffer could not grow */
} iotc_mqtt_status;

/* Reason codes (MQTT 5 §2.4) and, for 3.1.1, CONNACK return codes 0..5. */
enum {
    IOTC_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
    IOTC_RC_GRANTED_QOS1 = 0x01,
    IOTC_RC_GRANTED_QOS2 = 0x02,
    IOTC_RC_DISCONNECT_WITH_WILL = 0x04,
    IOTC_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    IOTC_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    IOTC_RC_CONTINUE_AUTHENTICATION = 0x18,
    IOTC_RC_REAUTHENTICATE = 0x19,
    IOTC_RC_UNSPECIFIED_ERROR = 0x80,
    IOTC_RC_MALFORMED_PACKET = 0x81,
    IOTC_RC_PROTOCOL_ERROR = 0x82,
    IOTC_RC_IMPLEMENTATION_SPECIFIC_ERROR = 0x83,
    IOTC_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84,
    IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID = 0x85,
    IOTC_RC_BAD_USER_NAME_OR_PASSWORD = 0x86,
    IOTC_RC_NOT_AUTHORIZED = 0x87,
    IOTC_RC_SERVER_UNAVAILABLE = 0x88,
    IOTC_RC_SERVER_BUSY = 0x89,
    IOTC_RC_BANNED = 0x8A,
    IOTC_RC_SERVER_SHUTTING_DOWN = 0x8B,
    IOTC_RC_BAD_AUTHENTICATION_METHOD = 0x8C,
    IOTC_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    IOTC_RC_SESSION_TAKEN_OVER = 0x8E,
    IOTC_RC_TOPIC_FILTER_INVALID = 0x8F,
    IOTC_RC_TOPIC_NAME_INVALID = 0x90,
    IOTC_RC_PACKET_IDENTIFIER_IN_USE = 0x91,
    IOTC_RC_PACKET_IDENTIFIER_NOT_FOUND = 0x92,
    IOTC_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    IOTC_RC_TOPIC_ALIAS_INVALID = 0x94,
    IOTC_RC_PACKET_TOO_LARGE = 0x95,
    IOTC_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    IOTC_RC_QUOTA_EXCEEDED = 0x97,
    IOTC_RC_ADMINISTRATIVE_ACTION = 0x98,
    IOTC_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    IOTC_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    IOTC_RC_QOS_NOT_SUPPORTED = 0x9B,
    IOTC_RC_USE_ANOTHER_SERVER = 0x9C,
    IOTC_RC_SERVER_MOVED = 0x9D,
    IOTC_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E,
    IOTC_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    IOTC_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    IOTC_RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1,
    IOTC_RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2
};

/* MQTT 3.1.1 CONNACK return codes. */
enum {
    IOTC_V3_CONNACK_ACCEPTED = 0,
    IOTC_V3_CONNACK_BAD_PROTOCOL = 1,
    IOTC_V3_CONNACK_ID_REJECTED = 2,
    IOTC_V3_CONNACK_SERVER_UNAVAILABLE = 3,
    IOTC_V3_CONNACK_BAD_CREDENTIALS = 4,
    IOTC_V3_CONNACK_NOT_AUTHORIZED = 5
};
#define IOTC_V3_SUBACK_FAILURE 0x80

/* MQTT 5 property identifiers (§2.2.2.2). */
typedef enum {
    IOTC_PROP_PAYLOAD_FORMAT_INDICATOR = 0x01,
    IOTC_PROP_MESSAGE_EXPIRY_INTERVAL = 0x02,
    IOTC_PROP_CONTENT_TYPE = 0x03,
    IOTC_PROP_RESPONSE_TOPIC = 0x08,
    IOTC_PROP_CORRELATION_DATA = 0x09,
    IOTC_PROP_SUBSCRIPTION_IDENTIFIER = 0x0B,
    IOTC_PROP_SESSION_EXPIRY_INTERVAL = 0x11,
    IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12,
    IOTC_PROP_SERVER_KEEP_ALIVE = 0x13,
    IOTC_PROP_AUTHENTICATION_METHOD = 0x15,
    IOTC_PROP_AUTHENTICATION_DATA = 0x16,
    IOTC_PROP_REQUEST_PROBLEM_INFORMATION = 0x17,
    IOTC_PROP_WILL_DELAY_INTERVAL = 0x18,
    IOTC_PROP_REQUEST_RESPONSE_INFORMATION = 0x19,
    IOTC_PROP_RESPONSE_INFORMATION = 0x1A,
    IOTC_PROP_SERVER_REFERENCE = 0x1C,
    IOTC_PROP_REASON_STRING = 0x1F,
    IOTC_PROP_RECEIVE_MAXIMUM = 0x21,
    IOTC_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    IOTC_PROP_TOPIC_ALIAS = 0x23,
    IOTC_PROP_MAXIMUM_QOS = 0x24,
    IOTC_PROP_RETAIN_AVAILABLE = 0x25,
    IOTC_PROP_USER_PROPERTY = 0x26,
    IOTC_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    IOTC_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28,
    IOTC_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29,
    IOTC_PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A
} iotc_prop_id;

#define IOTC_PROP_BIT(id) ((uint64_t)1 << (unsigned)(id))

/* Largest value a Variable Byte Integer holds (remaining length, sub ids). */
#define IOTC_MQTT_VBI_MAX 268435455u
/* Largest packet the protocol can express: 1 + 4 + IOTC_MQTT_VBI_MAX. */
#define IOTC_MQTT_MAX_PACKET (IOTC_MQTT_VBI_MAX + 5u)

typedef struct {
    const uint8_t *data;
    size_t len;
} iotc_mqtt_bytes;

typedef struct {
    iotc_mqtt_bytes key;
    iotc_mqtt_bytes value;
} iotc_mqtt_user_prop;

/*
 * MQTT 5 properties of one packet (or of a CONNECT's Will).  `present` has
 * IOTC_PROP_BIT(id) set for every single-valued property that is there; only
 * those fields mean anything.  User properties and subscription identifiers
 * repeat, so they are lists (see the file comment): `user`/`user_count` and
 * `sub_ids`/`sub_id_count`, with `raw` holding the encoded property block a
 * decoder saw.  Zero-initialise it for "no properties".  A list whose count
 * is 0 is empty whatever `raw` holds, so zeroing a count drops that list when
 * re-encoding a decoded packet.
 */
typedef struct {
    uint64_t present;
    uint8_t payload_format_indicator;
    uint8_t request_problem_information;
    uint8_t request_response_information;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint8_t wildcard_subscription_available;
    uint8_t subscription_identifier_available;
    uint8_t shared_subscription_available;
    uint16_t server_keep_alive;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint32_t message_expiry_interval;
    uint32_t session_expiry_interval;
    uint32_t will_delay_interval;
    uint32_t maximum_packet_size;
    iotc_mqtt_bytes content_type;
    iotc_mqtt_bytes response_topic;
    iotc_mqtt_bytes correlation_data;
    iotc_mqtt_bytes assigned_client_identifier;
    iotc_mqtt_bytes authentication_method;
    iotc_mqtt_bytes authentication_data;
    iotc_mqtt_bytes response_information;
    iotc_mqtt_bytes server_reference;
    iotc_mqtt_bytes reason_string;

    const iotc_mqtt_user_prop *user; /* encode from this array when non-NULL */
    size_t user_count;
    const uint32_t *sub_ids;         /* encode from this array when non-NULL */
    size_t sub_id_count;
    iotc_mqtt_bytes raw;             /* the property block without its length */
} iotc_mqtt_props;

typedef struct {
    iotc_mqtt_version version;   /* protocol level 4 or 5 */
    bool clean_start;            /* 3.1.1: Clean Session */
    uint16_t keep_alive;
    iotc_mqtt_bytes client_id;
    bool will;                   /* the will_* fields mean something only if set */
    uint8_t will_qos;
    bool will_retain;
    iotc_mqtt_bytes will_topic;
    iotc_mqtt_bytes will_payload;
    iotc_mqtt_props will_props;  /* MQTT 5 */
    bool has_username;
    iotc_mqtt_bytes username;
    bool has_password;
    iotc_mqtt_bytes password;
    iotc_mqtt_props props;       /* MQTT 5 */
} iotc_mqtt_connect;

typedef struct {
    bool session_present;
    uint8_t reason;              /* 3.1.1 return code, or MQTT 5 reason code */
    iotc_mqtt_props props;
} iotc_mqtt_connack;

typedef struct {
    bool dup;
    uint8_t qos;
    bool retain;
    iotc_mqtt_bytes topic;       /* may be empty in MQTT 5 when a Topic Alias is set */
    uint16_t packet_id;          /* only when qos > 0 */
    iotc_mqtt_props props;
    iotc_mqtt_bytes payload;
} iotc_mqtt_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
typedef struct {
    uint16_t packet_id;
    uint8_t reason;              /* MQTT 5; 0 when absent on the wire */
    iotc_mqtt_props props;
} iotc_mqtt_ack;

/* Subscription options: in 3.1.1 only qos is meaningful. */
typedef struct {
    iotc_mqtt_bytes filter;
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;     /* 0, 1 or 2 */
} iotc_mqtt_sub;

typedef struct {
    uint16_t packet_id;
    iotc_mqtt_props props;
    const iotc_mqtt_sub *subs;   /* encode from this array when non-NULL */
    size_t count;
    iotc_mqtt_bytes raw;         /* the payload: the encoded list */
} iotc_mqtt_subscribe;

typedef struct {
    uint16_t packet_id;
    iotc_mqtt_props props;
    const iotc_mqtt_bytes *filters; /* encode from this array when non-NULL */
    size_t count;
    iotc_mqtt_bytes raw;
} iotc_mqtt_unsubscribe;

/* SUBACK and UNSUBACK: one reason code per filter (none in a 3.1.1 UNSUBACK). */
typedef struct {
    uint16_t packet_id;
    iotc_mqtt_props props;
    const uint8_t *codes;
    size_t count;
} iotc_mqtt_suback;

/* DISCONNECT and AUTH (MQTT 5; a 3.1.1 DISCONNECT has neither field). */
typedef struct {
    uint8_t reason;
    iotc_mqtt_props props;
} iotc_mqtt_disconnect;

typedef struct {
    iotc_mqtt_type type;
    union {
        iotc_mqtt_connect connect;
        iotc_mqtt_connack connack;
        iotc_mqtt_publish publish;
        iotc_mqtt_ack ack;            /* PUBACK, PUBREC, PUBREL, PUBCOMP */
        iotc_mqtt_subscribe subscribe;
        iotc_mqtt_suback suback;      /* SUBACK, UNSUBACK */
        iotc_mqtt_unsubscribe unsubscribe;
        iotc_mqtt_disconnect disconnect; /* DISCONNECT, AUTH */
    } u;
} iotc_mqtt_packet;

typedef struct {
    iotc_mqtt_status status;
    uint8_t reason;      /* the MQTT 5 reason code a receiver would answer with */
    size_t offset;       /* from the first byte of the packet */
    const char *what;    /* static text: the rule that was broken */
} iotc_mqtt_error;

/* ---- one packet from a buffer ----------------------------------------- */

/*
 * Decodes the packet that starts at buf[0].  `version` is the session's
 * protocol level; a CONNECT is decoded by the level it carries itself.
 * Packets larger than `max_packet_size` bytes in all are refused from their
 * fixed header (IOTC_MQTT_ERR_TOO_LARGE); pass 0 for the protocol's maximum.
 * Returns IOTC_MQTT_OK and sets *used to the packet's size, IOTC_MQTT_NEED_MORE
 * when buf holds only part of it (*used then is the total size when known, or
 * 0), or an error described in *err (which may be NULL).  *out's views point
 * into buf.
 */
iotc_mqtt_status iotc_mqtt_decode(const uint8_t *buf, size_t len, iotc_mqtt_version version,
                                  uint32_t max_packet_size, iotc_mqtt_packet *out, size_t *used,
                                  iotc_mqtt_error *err);

/*
 * Parses a fixed header only: type, flags and remaining length.  Returns
 * IOTC_MQTT_OK with *header_len (2..5), IOTC_MQTT_NEED_MORE, or
 * IOTC_MQTT_ERR_MALFORMED for a reserved type, bad flags or a bad length.
 */
iotc_mqtt_status iotc_mqtt_fixed_header(const uint8_t *buf, size_t len, iotc_mqtt_version version,
                                        uint8_t *type, uint8_t *flags, uint32_t *remaining,
                                        size_t *header_len, iotc_mqtt_error *err);

/* ---- encoding ----------------------------------------------------------- */

/*
 * Encodes `p` for a session at `version` (a CONNECT uses p->u.connect.version)
 * into out[0..cap).  Validates the packet as the decoder would and refuses what
 * a conforming receiver would refuse (IOTC_MQTT_ERR_INVALID_ARG, details in
 * *err).  IOTC_MQTT_ERR_BUFFER when cap is too small; *written is then the
 * size needed.  The caller keeps everything p points to.
 */
iotc_mqtt_status iotc_mqtt_encode(const iotc_mqtt_packet *p, iotc_mqtt_version version, uint8_t *out,
                                  size_t cap, size_t *written, iotc_mqtt_error *err);

/* The size iotc_mqtt_encode() would write, or an error as it would return. */
iotc_mqtt_status iotc_mqtt_encoded_size(const iotc_mqtt_packet *p, iotc_mqtt_version version,
                                        size_t *size, iotc_mqtt_error *err);

/* ---- walking decoded lists ---------------------------------------------- */

/*
 * Each *_next() call yields the next element and advances *pos (start at 0).
 * They return false at the end.  They work on a decoded packet (from `raw`) as
 * well as on one built by the caller (from the array).
 */
bool iotc_mqtt_user_prop_next(const iotc_mqtt_props *props, size_t *pos, iotc_mqtt_user_prop *out);
bool iotc_mqtt_sub_id_next(const iotc_mqtt_props *props, size_t *pos, uint32_t *out);
bool iotc_mqtt_sub_next(const iotc_mqtt_subscribe *s, size_t *pos, iotc_mqtt_sub *out);
bool iotc_mqtt_unsub_next(const iotc_mqtt_unsubscribe *u, size_t *pos, iotc_mqtt_bytes *out);

/* ---- the streaming decoder ---------------------------------------------- */

/*
 * Takes bytes in chunks of any size (one byte at a time works) and yields whole
 * packets.  When a packet lies whole inside the chunk being fed, it is decoded
 * in place and its views point into the caller's chunk; otherwise the reader
 * gathers it in its buffer and the views point there.  Either way they stay
 * valid until the next call on the reader.  The maximum packet size is checked
 * from the fixed header before any byte of the body is kept.  The buffer is
 * the caller's (`buf`, `cap`; never reallocated) or, when buf is NULL, the
 * reader's own, grown to the largest split packet seen and kept for reuse, so
 * a steady stream allocates nothing.  After an error the reader stays failed
 * (the connection must close) until iotc_mqtt_reader_reset().
 */
typedef struct {
    iotc_mqtt_version version;
    uint32_t max_packet_size;
    uint8_t *buf;
    size_t cap;
    bool owns_buf;
    uint8_t hdr[5];
    size_t hdr_len;
    size_t have;           /* bytes of the current packet gathered in buf */
    size_t total;          /* its size, once the fixed header is complete */
    uint64_t stream_pos;   /* bytes consumed since init/reset */
    iotc_mqtt_error failed; /* status != OK once the stream is broken */
} iotc_mqtt_reader;

/* max_packet_size 0 means the protocol's maximum.  With a caller's buffer,
 * packets larger than `cap` are refused as too large even when one arrives
 * whole in a chunk, so that the outcome never depends on the chunking. */
void iotc_mqtt_reader_init(iotc_mqtt_reader *r, iotc_mqtt_version version, uint32_t max_packet_size,
                           uint8_t *buf, size_t cap);
/* A broker learns the version from CONNECT; a client from its own CONNECT. */
void iotc_mqtt_reader_set_version(iotc_mqtt_reader *r, iotc_mqtt_version version);
/* Forgets any partial packet and a failure; keeps the buffer. */
void iotc_mqtt_reader_reset(iotc_mqtt_reader *r);
/* Frees the reader's own buffer (not a caller's). */
void iotc_mqtt_reader_free(iotc_mqtt_reader *r);

/*
 * Consumes up to `len` bytes of `in`; *consumed says how many.  Returns
 * IOTC_MQTT_OK with *out set when a packet completed (feed the rest of the
 * chunk in the next call), IOTC_MQTT_NEED_MORE when all of `in` was taken and
 * no packet is complete, or an error (then also in *err, if not NULL; err's
 * offset is from the start of the failed packet).
 */
iotc_mqtt_status iotc_mqtt_reader_feed(iotc_mqtt_reader *r, const uint8_t *in, size_t len,
                                       size_t *consumed, iotc_mqtt_packet *out, iotc_mqtt_error *err);

/* ---- names ---------------------------------------------------------------- */

const char *iotc_mqtt_type_name(unsigned type);          /* "PUBLISH", or "RESERVED" */
const char *iotc_mqtt_status_str(iotc_mqtt_status s);
/* The name of a reason code in a given packet type ("Granted QoS 1", "Normal
 * disconnection"...); version 4 gives the 3.1.1 CONNACK return codes. */
const char *iotc_mqtt_reason_name(iotc_mqtt_type type, iotc_mqtt_version version, uint8_t code);
const char *iotc_mqtt_prop_name(unsigned id);             /* "Topic Alias", or NULL */
/* Whether `code` is a reason code the spec allows in `type` (MQTT 5), or a
 * return code 3.1.1 allows (CONNACK, SUBACK). */
bool iotc_mqtt_reason_allowed(iotc_mqtt_type type, iotc_mqtt_version version, uint8_t code);
/* Whether property `id` may appear in `type` (will = the CONNECT's Will). */
bool iotc_mqtt_prop_allowed(unsigned id, iotc_mqtt_type type, bool will);

/* ---- helpers the engines and tools use ----------------------------------- */

/* Strict UTF-8 as MQTT requires: well-formed, no U+0000, no surrogates.
 * Returns true when valid; else *bad_at is the offset of the first bad byte.
 * (U+0001..U+001F, U+007F..U+009F and non-characters are allowed, as the
 * spec lets a receiver accept them.) */
bool iotc_mqtt_utf8_valid(const uint8_t *s, size_t len, size_t *bad_at);

/* Encodes a Variable Byte Integer; returns its length (1..4), 0 if v is too big. */
size_t iotc_mqtt_vbi_encode(uint32_t v, uint8_t out[4]);

static inline iotc_mqtt_bytes iotc_mqtt_str(const char *s)
{
    iotc_mqtt_bytes b;
    size_t n = 0;
    if (s)
        while (s[n])
            n++;
    b.data = (const uint8_t *)s;
    b.len = n;
    return b;
}

#ifdef __cplusplus
}
#endif
#endif
