/*
 * iotc/error.h: the library's error codes.
 *
 * Owns: `iotc_err`, the status every public call returns and every
 * completion callback receives first, and its text.  IOTC_OK is 0 and every
 * error is negative, so `if (rc < 0)` and `if (rc != IOTC_OK)` both work and
 * an error never collides with a count or a length a call may return.  The
 * values are fixed: they are ABI, and a device may log them as numbers.
 *
 * The codec (iotc/mqtt.h) and the topic checks (iotc/topic.h) keep their
 * own finer statuses; the client maps them to IOTC_ERR_PROTOCOL or
 * IOTC_ERR_INVALID_ARG where they cross into this API.
 */
#ifndef IOTC_ERROR_H
#define IOTC_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    IOTC_OK = 0,

    /* A NULL, out-of-range or inconsistent argument or setting (QoS 2, a
     * wildcard in a publish topic, min > max, ping timeout >= keep-alive).
     * Refused at the call, never discovered later on the wire. */
    IOTC_ERR_INVALID_ARG = -1,
    /* An allocation failed; nothing was changed. */
    IOTC_ERR_NOMEM = -2,
    /* A queued operation was dropped by the offline queue's drop policy (the
     * oldest to make room, or the new one when the queue keeps the oldest).
     * Distinct from every other code so that a caller knows its request will
     * never be sent. */
    IOTC_ERR_QUEUE_DROPPED = -3,
    /* The client is offline and its offline queue is off (size 0): the
     * request was not queued and will not be sent. */
    IOTC_ERR_QUEUE_OFF = -4,
    /* The operation did not complete in its time (operation timeout, TCP
     * connect timeout, CONNACK timeout, a blocking helper's wait). */
    IOTC_ERR_TIMEOUT = -5,
    /* The call needs a connection and there is none (for example a
     * disconnect while not connected). */
    IOTC_ERR_NOT_CONNECTED = -6,
    /* The client was closed or disconnected by the application; pending
     * operations complete with this. */
    IOTC_ERR_CLOSED = -7,
    /* The broker refused: a CONNACK with a failure return or reason code, a
     * SUBACK failure; the callback also carries the broker's code. */
    IOTC_ERR_REFUSED = -8,
    /* The TLS handshake or session failed (certificate verification, wrong
     * CA, hostname mismatch, expired certificate, ALPN); the failure
     * callback names the reason. */
    IOTC_ERR_TLS = -9,
    /* The peer broke MQTT: malformed bytes, an unexpected packet, an
     * unknown packet id. */
    IOTC_ERR_PROTOCOL = -10,
    /* A limit on concurrent work was reached (no free packet id, the
     * in-flight window is full); try again later. */
    IOTC_ERR_BUSY = -11,
    /* A bug in the library: a broken invariant it detected instead of
     * crashing. */
    IOTC_ERR_INTERNAL = -12,
    /* The link went down (socket error, broker hung up, ping timeout).
     * Reported with the interruption; operations are kept or re-queued. */
    IOTC_ERR_CONNECTION_LOST = -13,
    /* No TCP connection could be made (name resolution, refused,
     * unreachable). */
    IOTC_ERR_CONNECT = -14,
    /* A payload, topic or packet is over a limit (the broker's maximum
     * packet size, AWS IoT's 128 KB, 256-byte topics). */
    IOTC_ERR_TOO_LARGE = -15,
    /* Credentials could not be loaded or are missing: a certificate, key
     * or CA file unreadable or unparsable, no AWS credentials found. */
    IOTC_ERR_CREDENTIALS = -16,
    /* Not available in this build or with this protocol version (PKCS#11
     * without support, an MQTT 5 feature on a 3.1.1 connection). */
    IOTC_ERR_UNSUPPORTED = -17,
    /* An AWS IoT service answered a request on its `.../rejected` topic (a
     * shadow get, update or delete): the result carries the service's own
     * code (404, 409, ...) and message.  Distinct from IOTC_ERR_REFUSED,
     * which is the MQTT broker's refusal of a packet. */
    IOTC_ERR_REJECTED = -18
} iotc_err;

/* A short English description of `err` (an iotc_err value).  Never NULL:
 * a value that is not an iotc_err gives "unknown error".  The string is
 * static; the caller must not free it.  Thread-safe. */
const char *iotc_strerror(int err);

/* The code's name as written in this header ("IOTC_ERR_TIMEOUT"), for logs
 * and tools that report statuses to programs; "IOTC_ERR_UNKNOWN" for a value
 * that is not an iotc_err.  Static, never NULL, thread-safe. */
const char *iotc_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_ERROR_H */
