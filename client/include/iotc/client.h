/*
 * iotc/client.h: the device client: build a connection, connect, publish,
 * subscribe, and stay connected.
 *
 * Owns the public API of libiotc's MQTT connection (issue 4): builders named
 * and defaulted like the AWS IoT Device SDK v2's `mqtt_connection_builder`,
 * the client handle, its asynchronous operations and the blocking helpers on
 * top of them.
 *
 * Threads.  Each client runs one service thread of its own (libwebsockets'
 * loop).  Every function here may be called from any thread.  Every callback
 * runs on the client's service thread, never inside the call that caused it
 * when that call came from another thread; a callback may call the
 * asynchronous functions of this header but not the blocking helpers
 * (`*_wait`, which return IOTC_ERR_BUSY there) nor iotc_client_free().
 *
 * Ownership.  Strings and bytes passed in are copied before the call
 * returns; views handed to callbacks are valid during the callback only.
 *
 * Errors.  Every function returns an iotc_err (iotc/error.h): IOTC_OK or a
 * negative code.  Bad arguments (NULL, QoS 2, a wildcard in a publish
 * topic, a payload over the limit, ping timeout >= keep-alive, reconnect
 * min > max) are refused at the call with IOTC_ERR_INVALID_ARG and
 * iotc_builder_why()/iotc_client_why() say what was wrong; they are never
 * discovered later on the wire.  An operation that returns IOTC_OK calls
 * its completion callback exactly once.
 */
#ifndef IOTC_CLIENT_H
#define IOTC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, also sent in the metrics username suffix. */
#define IOTC_VERSION "0.1.0"

/* ---- policies ------------------------------------------------------------ */

/* Jitter on the reconnect wait (none is what the v1 SDKs do; a fleet that
 * reconnects all at once should use FULL). */
typedef enum {
    IOTC_JITTER_NONE = 0,        /* min, 2·min, 4·min ... max */
    IOTC_JITTER_FULL = 1,        /* uniform in [0, that ceiling] */
    IOTC_JITTER_DECORRELATED = 2 /* min(max, uniform in [min, 3·previous]) */
} iotc_jitter;

/* What a full offline queue drops. */
typedef enum {
    IOTC_DROP_OLDEST = 0, /* the oldest queued request makes room */
    IOTC_DROP_NEWEST = 1  /* the new request is dropped */
} iotc_drop_policy;

/* Offline queue sizes with a meaning of their own. */
#define IOTC_QUEUE_UNBOUNDED (-1)
#define IOTC_QUEUE_OFF 0

/* ---- builders ------------------------------------------------------------ */

typedef struct iotc_builder iotc_builder;

/* Each constructor returns IOTC_OK and a new builder in *out, or
 * IOTC_ERR_INVALID_ARG (a NULL or empty required argument) or
 * IOTC_ERR_NOMEM with *out NULL.  Files are read when the client is created
 * (iotc_client_new), which reports an unreadable one.  Free a builder with
 * iotc_builder_free(); a client keeps its own copy of everything.
 *
 * Defaults (the seed's): port 8883, or 443 with ALPN where the constructor
 * says so; client id "iotc-<random>"; clean session; keep-alive 1200 s;
 * ping timeout 3000 ms; TCP connect timeout 5000 ms; no operation timeout;
 * reconnect 1 s .. 128 s, reset after 20 s connected, no jitter; offline
 * queue of 20 requests dropping the newest; drain at 2 Hz; resubscribe when
 * the session is not present; the metrics suffix in the username; server
 * verification against the system CAs. */

/* MQTT over TLS with an X.509 client certificate and key (PEM files). */
int iotc_mtls_from_path(iotc_builder **out, const char *endpoint, const char *cert_path, const char *key_path);
/* The same from PEM bytes. */
int iotc_mtls_from_bytes(iotc_builder **out, const char *endpoint, const void *cert_pem, size_t cert_len,
                         const void *key_pem, size_t key_len);
/* The same from a PKCS#12 file (certificate, key and chain); `password` may
 * be NULL for none.  On Linux too, unlike the AWS CRT. */
int iotc_mtls_with_pkcs12(iotc_builder **out, const char *endpoint, const char *pkcs12_path, const char *password);

/* Explicit AWS credentials; NULL fields are absent. */
typedef struct {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
} iotc_aws_creds;

/* MQTT over WebSocket on 443 with a SigV4-presigned `/mqtt` URL (service
 * `iotdevicegateway`; the session token appended unsigned), signed afresh
 * for every connection attempt.  Credentials: `creds` when not NULL, else
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the
 * shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)
 * and profile (AWS_PROFILE or "default"), looked up at each attempt. */
int iotc_websockets_with_default_aws_signing(iotc_builder **out, const char *endpoint, const char *region,
                                             const iotc_aws_creds *creds);

/* The WebSocket upgrade request as a handshake callback may change it. */
typedef struct iotc_ws_request iotc_ws_request;
/* Replaces the request path (with its query); at most 2032 bytes, the limit
 * of libwebsockets 4.1.6.  IOTC_OK, IOTC_ERR_INVALID_ARG, IOTC_ERR_TOO_LARGE. */
int iotc_ws_request_set_path(iotc_ws_request *r, const char *path);
/* Adds a header ("name", "value"; no colon in the name).  At most 32
 * headers.  IOTC_OK, IOTC_ERR_INVALID_ARG, IOTC_ERR_TOO_LARGE. */
int iotc_ws_request_add_header(iotc_ws_request *r, const char *name, const char *value);
/* The current path. */
const char *iotc_ws_request_path(const iotc_ws_request *r);

/* Called on the service thread before every WebSocket connection attempt,
 * with the request to send (path "/mqtt").  Return IOTC_OK to go on; any
 * other value fails the attempt with that error (the client retries with
 * backoff). */
typedef int (*iotc_ws_handshake_fn)(iotc_ws_request *req, void *user);

/* MQTT over WebSocket on 443 whose upgrade request the callback shapes
 * (the seed's websockets_with_custom_handshake). */
int iotc_websockets_with_custom_handshake(iotc_builder **out, const char *endpoint, iotc_ws_handshake_fn fn,
                                          void *user);

/* Custom authentication.  Every field may be NULL.  The username becomes
 * `username?x-amz-customauthorizer-name=..&x-amz-customauthorizer-signature=..
 * &<token_key_name>=<token_value>` as the SDK v2 builds it. */
typedef struct {
    const char *username;
    const char *authorizer_name;
    const char *authorizer_signature;
    const char *password;
    const char *token_key_name;
    const char *token_value;
} iotc_custom_auth;

/* MQTT over TLS on 443 with ALPN `mqtt` and no client certificate. */
int iotc_direct_with_custom_authorizer(iotc_builder **out, const char *endpoint, const iotc_custom_auth *auth);
/* MQTT over WebSocket on 443, credentials in the MQTT username as above. */
int iotc_websockets_with_custom_authorizer(iotc_builder **out, const char *endpoint, const iotc_custom_auth *auth);

/* MQTT over TLS with no client identity: the caller adds what it needs
 * (a username and password, or nothing, or plain TCP with
 * iotc_builder_set_tls(b, false) for a local broker). */
int iotc_new_default_builder(iotc_builder **out, const char *endpoint);

void iotc_builder_free(iotc_builder *b);

/* Why the last constructor called on this thread failed ("" when it did
 * not): a failed constructor has no builder for iotc_builder_why. */
const char *iotc_builder_new_why(void);

/* Why the last setter or constructor on `b` failed ("" when none did). */
const char *iotc_builder_why(const iotc_builder *b);

/* Setters: IOTC_OK, or IOTC_ERR_INVALID_ARG for a NULL builder or a value
 * out of range (the text in iotc_builder_why), or IOTC_ERR_NOMEM.  Settings
 * that only make sense together (ping timeout < keep-alive, min <= max) are
 * checked by iotc_client_new. */
int iotc_builder_set_client_id(iotc_builder *b, const char *client_id); /* 1..65535 bytes of UTF-8 */
int iotc_builder_set_port(iotc_builder *b, uint16_t port);              /* 1..65535 */
/* Connect to this address (a name or IP literal) but verify and send SNI for
 * the endpoint; for a broker on 127.0.0.1 serving a certificate for a DNS
 * name (iotsim's made-up endpoint). */
int iotc_builder_set_address(iotc_builder *b, const char *address);
int iotc_builder_set_clean_session(iotc_builder *b, bool clean);
int iotc_builder_set_keep_alive_secs(iotc_builder *b, uint16_t secs);       /* 0: no pings */
int iotc_builder_set_ping_timeout_ms(iotc_builder *b, uint32_t ms);         /* > 0 */
int iotc_builder_set_protocol_operation_timeout_ms(iotc_builder *b, uint32_t ms); /* 0: none */
int iotc_builder_set_tcp_connect_timeout_ms(iotc_builder *b, uint32_t ms);  /* > 0 */
int iotc_builder_set_reconnect(iotc_builder *b, uint64_t min_ms, uint64_t max_ms);
int iotc_builder_set_stable_time_ms(iotc_builder *b, uint64_t ms);          /* 0: reset at every CONNACK */
int iotc_builder_set_jitter(iotc_builder *b, iotc_jitter jitter);
/* A Will with QoS 0 or 1 (AWS IoT has no QoS 2); topic without wildcards. */
int iotc_builder_set_will(iotc_builder *b, const char *topic, const void *payload, size_t len, uint8_t qos,
                          bool retain);
int iotc_builder_set_username(iotc_builder *b, const char *username); /* NULL: none */
int iotc_builder_set_password(iotc_builder *b, const void *password, size_t len);
/* Trust anchors: replace the system store (a device pins its broker's CA). */
int iotc_builder_set_ca_file(iotc_builder *b, const char *path);
int iotc_builder_set_ca_dir(iotc_builder *b, const char *path);
int iotc_builder_set_ca_bytes(iotc_builder *b, const void *pem, size_t len);
/* false: plain TCP, or ws:// (for a local broker; AWS IoT has no plain port). */
int iotc_builder_set_tls(iotc_builder *b, bool tls);
/* Overrides the ALPN list of the constructor ("" or NULL: none). */
int iotc_builder_set_alpn(iotc_builder *b, const char *alpn);
/* The `?SDK=libiotc&Version=...` username suffix; on by default. */
int iotc_builder_set_metrics(iotc_builder *b, bool on);
/* Offline queue: IOTC_QUEUE_UNBOUNDED, IOTC_QUEUE_OFF or N > 0 requests. */
int iotc_builder_set_offline_queue(iotc_builder *b, int64_t size, iotc_drop_policy drop);
/* Draining after a reconnect, requests per second; 0: as fast as possible. */
int iotc_builder_set_drain_hz(iotc_builder *b, double hz);
int iotc_builder_set_resubscribe(iotc_builder *b, bool on);
/* AWS IoT's limits checked at the call (default on): topics and filters of
 * at most 256 bytes and 7 slashes (the `$aws/rules/<rule>/` prefix not
 * counted), client ids of at most 128 bytes; over them a publish or
 * subscribe returns IOTC_ERR_TOO_LARGE instead of getting the connection
 * closed.  Off for a broker that is not AWS IoT. */
#define IOTC_AWS_CLIENT_ID_MAX 128
int iotc_builder_set_aws_limits(iotc_builder *b, bool on);
/* How long to wait for CONNACK once the connection is up (default 20000). */
int iotc_builder_set_connack_timeout_ms(iotc_builder *b, uint32_t ms);
/* QoS 1 publishes awaiting PUBACK at once (1..65535, default 20). */
int iotc_builder_set_max_inflight(iotc_builder *b, uint16_t n);
/* The largest packet accepted from the broker (default 256 KiB). */
int iotc_builder_set_max_packet_size(iotc_builder *b, uint32_t bytes);

/* ---- the client ---------------------------------------------------------- */

typedef struct iotc_client iotc_client;

typedef struct {
    /* The first accepted CONNACK since iotc_client_connect. */
    void (*on_connection_success)(iotc_client *c, bool session_present, void *user);
    /* An attempt failed before or at CONNACK: err is IOTC_ERR_CONNECT,
     * IOTC_ERR_TLS, IOTC_ERR_TIMEOUT, IOTC_ERR_REFUSED (return_code holds the
     * CONNACK code)...; `reason` says what happened in words (for TLS: the
     * verification failure, e.g. "hostname mismatch").  The client retries. */
    void (*on_connection_failure)(iotc_client *c, int err, uint8_t return_code, const char *reason, void *user);
    /* An accepted connection was lost; the client is reconnecting. */
    void (*on_interrupted)(iotc_client *c, int err, const char *reason, void *user);
    /* Accepted again after an interruption. */
    void (*on_resumed)(iotc_client *c, uint8_t return_code, bool session_present, void *user);
    /* iotc_client_disconnect finished; nothing follows until a new connect. */
    void (*on_closed)(iotc_client *c, void *user);
    /* A message that no subscription's own callback took. */
    void (*on_message)(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                       uint8_t qos, bool retain, bool dup, void *user);
} iotc_callbacks;

/* Creates a client from the builder (copied; the builder may be freed at
 * once) and starts its service thread.  Nothing is sent before
 * iotc_client_connect.  `cb` may be NULL; so may any of its members.
 * Returns IOTC_OK, IOTC_ERR_INVALID_ARG (an inconsistent setting, see
 * iotc_client_new_why), IOTC_ERR_CREDENTIALS (a certificate, key, PKCS#12
 * or CA unreadable or unparsable), IOTC_ERR_NOMEM, IOTC_ERR_INTERNAL (the
 * event loop could not start). */
int iotc_client_new(const iotc_builder *b, const iotc_callbacks *cb, void *user, iotc_client **out);
/* Why the last iotc_client_new from this thread failed ("" when it did not). */
const char *iotc_client_new_why(void);

/* Starts connecting; keeps reconnecting with backoff until disconnect.
 * on_connection_success or on_connection_failure follows.  IOTC_OK,
 * IOTC_ERR_BUSY (already started), IOTC_ERR_INVALID_ARG. */
int iotc_client_connect(iotc_client *c);
/* Sends DISCONNECT if connected and closes; pending operations complete
 * with IOTC_ERR_CLOSED; on_closed follows.  The client may connect again. */
int iotc_client_disconnect(iotc_client *c);
/* Disconnects if needed (waiting up to 2 s for the DISCONNECT to go out),
 * stops the service thread and frees.  Operations still outstanding complete
 * with IOTC_ERR_CLOSED on the calling thread, the only exception to "callbacks
 * run on the service thread": there is none any more.  Must not be called
 * from a callback.  NULL is fine. */
void iotc_client_free(iotc_client *c);

/* Completion: status first (IOTC_OK or an error, see core semantics below);
 * `granted` is the SUBACK code for a subscribe (0, 1, or 0x80 refused). */
typedef void (*iotc_done_fn)(int status, uint8_t granted, void *user);
/* A message on a subscription; views valid during the call. */
typedef void (*iotc_message_fn)(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload,
                                size_t len, uint8_t qos, bool retain, bool dup, void *user);

/* Publishes.  QoS 0 completes when written to the link, QoS 1 at PUBACK.
 * Offline (before the first connect, while reconnecting, after a
 * disconnect) the request joins the offline queue and goes out at the next
 * connection.  Completion errors: IOTC_ERR_QUEUE_DROPPED, IOTC_ERR_TIMEOUT,
 * IOTC_ERR_CLOSED (disconnect or free came first), IOTC_ERR_QUEUE_OFF.
 * Refused at the call: IOTC_ERR_INVALID_ARG (NULL, QoS > 1, a wildcard or
 * invalid topic), IOTC_ERR_TOO_LARGE (payload over 128 KiB, or a topic over
 * AWS IoT's limits unless they are off: iotc_builder_set_aws_limits), IOTC_ERR_QUEUE_OFF (offline with the queue off), IOTC_ERR_BUSY
 * (over 1 MiB waits to be written: the link is slower than the caller),
 * IOTC_ERR_NOMEM.  `done` may be NULL.  A disconnect ends the session:
 * requests made after it wait for the next connect with a fresh queue. */
int iotc_publish(iotc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos, bool retain,
                 iotc_done_fn done, void *user);
/* Subscribes; messages matching `filter` go to `on_msg` (NULL: to the
 * client's on_message).  Remembered for resubscription until unsubscribed,
 * refused by the broker (SUBACK 0x80) or failed, or until a disconnect
 * ends the session.  A message callback may unsubscribe, itself included.
 * Refused at the call: IOTC_ERR_INVALID_ARG (invalid filter, QoS > 1),
 * IOTC_ERR_TOO_LARGE (over AWS IoT's limits unless they are off). */
int iotc_subscribe(iotc_client *c, const char *filter, uint8_t qos, iotc_message_fn on_msg, void *msg_user,
                   iotc_done_fn done, void *user);
int iotc_unsubscribe(iotc_client *c, const char *filter, iotc_done_fn done, void *user);
/* Subscribes again to every filter subscribed so far; `done` is called once
 * per filter.  Returns the number of filters (>= 0) or an error. */
int iotc_resubscribe_existing_topics(iotc_client *c, iotc_done_fn done, void *user);

/* Blocking helpers: the asynchronous call, then a wait of at most
 * `timeout_ms` for its completion.  They return the completion status, or
 * IOTC_ERR_TIMEOUT when the wait ran out (the operation itself goes on and
 * its result is discarded), or IOTC_ERR_BUSY from a callback. */
int iotc_client_connect_wait(iotc_client *c, uint32_t timeout_ms, bool *session_present);
int iotc_client_disconnect_wait(iotc_client *c, uint32_t timeout_ms);
int iotc_publish_wait(iotc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos, bool retain,
                      uint32_t timeout_ms);
int iotc_subscribe_wait(iotc_client *c, const char *filter, uint8_t qos, iotc_message_fn on_msg, void *msg_user,
                        uint32_t timeout_ms, uint8_t *granted);
int iotc_unsubscribe_wait(iotc_client *c, const char *filter, uint32_t timeout_ms);

/* ---- timers on the service thread ---------------------------------------------
 * For layers built on this API (the shadow client of iotc/shadow.h) that must
 * act at a time, such as a request's timeout, on the service thread like
 * every other callback, without a thread of their own. */

/* `status` is IOTC_OK when the time came, IOTC_ERR_CLOSED when
 * iotc_client_free came first (then on the freeing thread, like every
 * operation still outstanding there). */
typedef void (*iotc_call_fn)(iotc_client *c, int status, void *user);
/* Calls fn(c, IOTC_OK, user) once on the service thread, `ms` milliseconds
 * (monotonic clock) from now or a little later, connected or not; never
 * inside this call, even with ms 0 on the service thread.  Calls due at
 * the same time run in the order they were made.  IOTC_OK,
 * IOTC_ERR_INVALID_ARG (NULL c or fn), IOTC_ERR_NOMEM, IOTC_ERR_CLOSED
 * (during iotc_client_free). */
int iotc_client_call_after(iotc_client *c, uint32_t ms, iotc_call_fn fn, void *user);
/* Cancels every pending call of `fn` with `user`: none of them runs, not
 * even with IOTC_ERR_CLOSED.  Returns how many were cancelled (>= 0), or
 * IOTC_ERR_INVALID_ARG.  From another thread, a call the service thread is
 * running meanwhile finishes before this returns. */
int iotc_client_cancel_calls(iotc_client *c, iotc_call_fn fn, void *user);
/* Whether the calling thread is the client's service thread, i.e. inside
 * one of its callbacks (or inside iotc_client_free, which stands in for
 * it): where blocking helpers built on this API must refuse to wait, as
 * the `*_wait` calls here do with IOTC_ERR_BUSY. */
bool iotc_client_on_service_thread(const iotc_client *c);

typedef struct {
    bool connected;     /* CONNACK accepted and the link up */
    size_t queued;      /* requests in the offline queue */
    size_t inflight;    /* sent and awaiting their ack */
    uint64_t dropped;   /* dropped by the queue's policy */
    uint64_t drained;   /* sent from the queue after a reconnect */
    uint32_t attempts;  /* connect attempts since the last stable connection */
    uint64_t messages;  /* messages received */
} iotc_client_stats;
int iotc_client_get_stats(iotc_client *c, iotc_client_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_CLIENT_H */
