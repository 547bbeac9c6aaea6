/*
 * iotc/shadow.h: the AWS IoT Device Shadow client, built on the client of
 * iotc/client.h (subscriptions with their own message callback, QoS 1
 * publishes, and timers on the service thread).
 *
 * One iotc_shadow is one shadow of one thing: the classic shadow, or a named
 * one.  Its requests (get, update, delete) are asynchronous, each with a
 * timeout and one callback, called exactly once: with the accepted answer
 * (IOTC_OK), the rejected one (IOTC_ERR_REJECTED, with AWS's code and
 * message), IOTC_ERR_TIMEOUT, IOTC_ERR_CLOSED (iotc_shadow_free came first),
 * or the error of the subscription or publish the request needed.
 *
 * What it does for you (aws-services.md §4.4):
 * - Before an operation's first request it subscribes (QoS 1) to that
 *   operation's `/accepted` and `/rejected` topics, and publishes only once
 *   both SUBACKs are in.  Those subscriptions are kept for the next
 *   requests.  A refused SUBACK fails the requests waiting for it with
 *   IOTC_ERR_REFUSED; the next request subscribes again.
 * - Each request carries a fresh clientToken (a UUID v4), and only the
 *   answer with that token completes it: shadow answers go to every
 *   subscriber, so other clients' answers, answers without a token and a
 *   second answer to the same request are ignored.
 * - At most 10 requests are pending per shadow (AWS's in-flight limit,
 *   configurable); beyond, the call returns IOTC_ERR_BUSY at once.
 * - Deltas and documents older than the newest version seen are dropped
 *   (AWS does not guarantee their order); one with the same version is
 *   delivered, so that the delta that follows your own update/accepted is
 *   not lost (the v1 SDK's issue #94).  delete/accepted resets the version.
 *
 * Threads.  As in iotc/client.h: every function may be called from any
 * thread; every callback runs on the client's service thread, never inside
 * the call that caused it when that call came from another thread; the
 * blocking helpers return IOTC_ERR_BUSY on the service thread (from any
 * callback).  A callback may call the asynchronous functions here, and may
 * free its own shadow.
 *
 * Lifetime.  Free every shadow before its client.  Make at most one
 * iotc_shadow per (thing, shadow name) on a client: two would share the
 * same topic filters, and the client keeps one message callback per filter.
 * A shadow's subscriptions
 * belong to the client's session: iotc_client_disconnect ends that session
 * and the client forgets them.  The shadow notices when one of its own
 * operations completes with IOTC_ERR_CLOSED, or when one of its requests
 * times out, and subscribes again at its next request; a delta or documents
 * stream must be started again (iotc_shadow_on_delta) after a
 * disconnect/connect.  A reconnect by the client itself (an interruption)
 * keeps everything: the client resubscribes.
 *
 * Ownership.  Strings passed in are copied before the call returns; the
 * views handed to callbacks are valid during the callback only.
 */
#ifndef IOTC_SHADOW_H
#define IOTC_SHADOW_H

#include <stddef.h>
#include <stdint.h>

#include "iotc/client.h"
#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct iotc_shadow iotc_shadow;

typedef struct {
    /* Requests pending at once; 0 means the default, 10, AWS's in-flight
     * limit per connection or thing (AWS answers 429 beyond). */
    size_t max_pending;
} iotc_shadow_config;

/* Fills *cfg with the defaults. */
void iotc_shadow_config_init(iotc_shadow_config *cfg);

/* A shadow client for `thing` (1..128 bytes of [a-zA-Z0-9:_-]) and shadow
 * `name` (1..64 bytes of [$a-zA-Z0-9:_-]; NULL or "" for the classic
 * shadow).  Nothing is sent until the first request or stream.  IOTC_OK,
 * IOTC_ERR_INVALID_ARG (a name: iotc_shadow_why says which rule),
 * IOTC_ERR_NOMEM.  `cfg` may be NULL for the defaults. */
int iotc_shadow_new(iotc_client *c, const char *thing, const char *name, iotc_shadow **out);
int iotc_shadow_new_with_config(iotc_client *c, const char *thing, const char *name, const iotc_shadow_config *cfg,
                                iotc_shadow **out);
/* Pending requests complete with IOTC_ERR_CLOSED (on the service thread:
 * from another thread this waits for it), then the shadow unsubscribes
 * from its topics and is freed.  No callback of this shadow runs after it
 * returns.  NULL is fine. */
void iotc_shadow_free(iotc_shadow *s);

/* Why the last call of this header on this thread failed ("" when it did
 * not): the rule a name broke, what is wrong with an update document. */
const char *iotc_shadow_why(void);

typedef struct {
    /* IOTC_OK (accepted), IOTC_ERR_REJECTED, IOTC_ERR_TIMEOUT,
     * IOTC_ERR_CLOSED, or the error of the subscription (IOTC_ERR_REFUSED
     * for a refused SUBACK) or of the publish (IOTC_ERR_QUEUE_DROPPED, ...)
     * the request needed. */
    int status;
    /* Rejected: AWS's `code` (an int: 400, 404, 409, 429...; 0 when absent)
     * and `message` ("" when absent).  Otherwise 0 and "". */
    int code;
    const char *message;
    /* The accepted or rejected response document as received (not
     * NUL-terminated); NULL and 0 for the other statuses. */
    const char *json;
    size_t json_len;
    /* The response's `version` (for delete: the deleted shadow's); 0 when
     * it has none. */
    uint64_t version;
} iotc_shadow_result;

typedef void (*iotc_shadow_fn)(iotc_shadow *s, const iotc_shadow_result *r, void *user);

/* Requests.  timeout_ms > 0 covers the whole request: subscribing if
 * needed, publishing, the answer.  `cb` is required.  Refused at the call
 * (no callback follows): IOTC_ERR_INVALID_ARG (NULL, timeout 0, for update
 * a document that is not a JSON object with a `state` that is an object or
 * null, or not UTF-8: nothing is sent), IOTC_ERR_BUSY (max_pending
 * requests pending), IOTC_ERR_CLOSED (the shadow is being freed), and what
 * iotc_publish or iotc_subscribe refuse at their call (IOTC_ERR_QUEUE_OFF
 * offline with the queue off, IOTC_ERR_BUSY backpressure, ...) when this
 * request is the one that needed them; IOTC_ERR_NOMEM.
 *
 * For update, any `clientToken` in `json` is replaced by the request's own;
 * everything else goes out as written (`version` for optimistic locking,
 * explicit nulls to delete keys). */
int iotc_shadow_get(iotc_shadow *s, uint32_t timeout_ms, iotc_shadow_fn cb, void *user);
int iotc_shadow_update(iotc_shadow *s, const char *json, uint32_t timeout_ms, iotc_shadow_fn cb, void *user);
int iotc_shadow_delete(iotc_shadow *s, uint32_t timeout_ms, iotc_shadow_fn cb, void *user);

/* Streams.  `json` is the message as received (not NUL-terminated); for a
 * delta, `version` is its `version`; for documents, `current.version`.
 * Only messages that pass the version rule above are delivered; one
 * without a version is dropped. */
typedef void (*iotc_shadow_doc_fn)(iotc_shadow *s, const char *json, size_t len, uint64_t version, void *user);

/* Starts (fn not NULL; again to replace fn) or stops (fn NULL: unsubscribes)
 * the `/update/delta` or `/update/documents` stream.  Refined from a plain
 * (fn, user) so that the caller can know when the stream is live: `done`
 * (may be NULL) gets the SUBSCRIBE's or UNSUBSCRIBE's completion exactly as
 * iotc_subscribe gives it (status, and `granted` 0x80 when the broker
 * refused).  Subscribing before a get is the way not to miss a delta: the
 * broker answers the SUBSCRIBEs in order, so a get made after this call
 * cannot be answered before the stream is live.  IOTC_OK or what
 * iotc_subscribe refuses at its call; IOTC_ERR_CLOSED. */
int iotc_shadow_on_delta(iotc_shadow *s, iotc_shadow_doc_fn fn, void *user, iotc_done_fn done, void *done_user);
int iotc_shadow_on_documents(iotc_shadow *s, iotc_shadow_doc_fn fn, void *user, iotc_done_fn done,
                             void *done_user);

/* Blocking helpers: the request, then a wait for its callback (the
 * request's own timeout ends the wait).  They return its status; *code
 * gets the rejected code (0 otherwise) and *json a malloc'd, NUL-terminated
 * copy of the accepted or rejected document (NULL for other statuses), which
 * the caller frees with free().  `code` and `json` may be NULL.
 * IOTC_ERR_BUSY on the service thread (inside any callback). */
int iotc_shadow_get_wait(iotc_shadow *s, uint32_t timeout_ms, int *code, char **json);
int iotc_shadow_update_wait(iotc_shadow *s, const char *json, uint32_t timeout_ms, int *code, char **json_out);
int iotc_shadow_delete_wait(iotc_shadow *s, uint32_t timeout_ms, int *code, char **json);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_SHADOW_H */
