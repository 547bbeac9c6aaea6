/*
 * svc/shadow_core.h: the Device Shadow client's protocol, sans-I/O.
 *
 * Owns what a shadow client must get right whatever carries its bytes
 * (aws-services.md §1 and §4.4):
 * - the topics of a classic or named shadow, and the names' limits
 *   (thing 1..128 bytes of [a-zA-Z0-9:_-], shadow 1..64 of [$a-zA-Z0-9:_-]);
 * - parsing an incoming topic back into (thing, name, operation, suffix);
 * - the table of pending requests, keyed by a clientToken that is unique per
 *   request, each with its operation and deadline, bounded (AWS allows 10
 *   in flight; more are refused at the call with IOTC_ERR_BUSY, not by a 429
 *   later);
 * - request payloads: `{"clientToken":"..."}` for get and delete; for update
 *   the caller's document, which must be an object with `state` (an object
 *   or null), with the clientToken inserted or overriding the caller's;
 * - classifying what arrives: the accepted or rejected answer to one of our
 *   requests (rejected: `code` as an int, `message`), a delta, a documents
 *   snapshot, or something to ignore: another client's response (shadow
 *   responses are broadcast to every subscriber), one without a token, a
 *   second answer for a token already answered, a stale version;
 * - deadlines, expired at `now_ms`;
 * - version tracking: deltas and documents older than the newest version
 *   seen are dropped (delivery order is not guaranteed, §1.6); a delta with
 *   the *same* version passes (`>=`), because update/accepted for version X
 *   usually arrives before the delta for X and the v1 SDK's `>` suppressed
 *   that delta (its issue #94, §4.1); delete/accepted resets the tracking.
 *
 * No I/O, no threads, no clock: time comes in as `now_ms` and randomness as
 * bytes the caller supplies.  It allocates (the table, the topics, payloads,
 * a parsed document per event).  Not thread-safe: the caller serialises.
 * It never completes anything itself: whatever leaves the table (answered,
 * expired, taken) is handed back, and the caller completes it once.
 */
#ifndef IOTC_SVC_SHADOW_CORE_H
#define IOTC_SVC_SHADOW_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IOTC_SHADOW_THING_MAX 128
#define IOTC_SHADOW_NAME_MAX 64
/* AWS refuses a longer clientToken with 400 "Invalid clientToken". */
#define IOTC_SHADOW_TOKEN_MAX 64
/* The tokens made here: UUID v4 text, 36 bytes. */
#define IOTC_SHADOW_TOKEN_LEN 36
#define IOTC_SHADOW_RANDOM_BYTES 16
/* The longest topic: named `/update/documents`, 12 + 128 + 13 + 64 + 17. */
#define IOTC_SHADOW_TOPIC_MAX 234
/* AWS's in-flight limit per connection or thing (§1.6): the default bound. */
#define IOTC_SHADOW_DEFAULT_MAX_PENDING 10

typedef enum { IOTC_SHADOW_OP_GET = 0, IOTC_SHADOW_OP_UPDATE = 1, IOTC_SHADOW_OP_DELETE = 2 } iotc_shadow_op;
#define IOTC_SHADOW_NOPS 3

typedef enum {
    IOTC_SHADOW_SFX_REQUEST = 0, /* `.../get`: where requests are published */
    IOTC_SHADOW_SFX_ACCEPTED,
    IOTC_SHADOW_SFX_REJECTED,
    IOTC_SHADOW_SFX_DELTA,    /* `/update/delta` only */
    IOTC_SHADOW_SFX_DOCUMENTS /* `/update/documents` only */
} iotc_shadow_sfx;

/* "get", "update", "delete"; "?" for anything else. */
const char *iotc_shadow_op_name(iotc_shadow_op op);

/* Name checks: IOTC_OK, or IOTC_ERR_INVALID_ARG (empty, too long, a byte
 * outside the pattern).  `why`, when not NULL, gets a static sentence. */
int iotc_shadow_check_thing(const char *thing, size_t len, const char **why);
int iotc_shadow_check_name(const char *name, size_t len, const char **why);

/* Writes the topic, NUL-terminated, into buf.  `name` NULL or "" selects the
 * classic shadow.  Returns its length (> 0), or IOTC_ERR_INVALID_ARG (a
 * name, or delta/documents with an operation other than update) or
 * IOTC_ERR_TOO_LARGE (cap too small; IOTC_SHADOW_TOPIC_MAX + 1 always
 * suffices). */
int iotc_shadow_topic(char *buf, size_t cap, const char *thing, const char *name, iotc_shadow_op op,
                      iotc_shadow_sfx sfx);

/* A shadow topic taken apart; the pointers are into the topic. */
typedef struct {
    const char *thing;
    size_t thing_len;
    const char *name; /* NULL and 0 for the classic shadow */
    size_t name_len;
    iotc_shadow_op op;
    iotc_shadow_sfx sfx;
} iotc_shadow_topic_parts;

/* Whether `topic` (len bytes, no NUL needed) is a shadow topic with valid
 * names and a known suffix; fills *out when it is. */
bool iotc_shadow_topic_parse(const char *topic, size_t len, iotc_shadow_topic_parts *out);

/* UUID v4 text (lowercase, 36 bytes and a NUL) from 16 random bytes. */
void iotc_shadow_uuid4(const uint8_t random[IOTC_SHADOW_RANDOM_BYTES], char out[IOTC_SHADOW_TOKEN_LEN + 1]);

/* ---- one shadow's client state ----------------------------------------------- */

typedef struct iotc_shadow_core iotc_shadow_core;

/* A core for thing/name (copied; name NULL or "" for the classic shadow);
 * `max_pending` 0 means IOTC_SHADOW_DEFAULT_MAX_PENDING.  IOTC_OK,
 * IOTC_ERR_INVALID_ARG (a name; `why` says which rule), IOTC_ERR_NOMEM. */
int iotc_shadow_core_new(const char *thing, const char *name, size_t max_pending, iotc_shadow_core **out,
                         const char **why);
/* Frees the core.  Requests still pending are forgotten: take them first
 * (iotc_shadow_core_take_any) to complete them.  NULL is fine. */
void iotc_shadow_core_free(iotc_shadow_core *sc);

/* This shadow's topic for (op, sfx); NULL for a pair that does not exist
 * (delta or documents with get or delete).  Owned by the core. */
const char *iotc_shadow_core_topic(const iotc_shadow_core *sc, iotc_shadow_op op, iotc_shadow_sfx sfx);
/* Whether this is the classic shadow. */
bool iotc_shadow_core_is_classic(const iotc_shadow_core *sc);

size_t iotc_shadow_core_pending(const iotc_shadow_core *sc);
size_t iotc_shadow_core_max_pending(const iotc_shadow_core *sc);

/* A request to publish on iotc_shadow_core_topic(sc, op, REQUEST). */
typedef struct {
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    char *payload; /* malloc'd, NUL-terminated; the caller frees it with free() */
    size_t payload_len;
} iotc_shadow_request;

/* Registers a request and builds its payload.  For update, `json` (json_len
 * bytes) is the caller's document: a JSON object with a `state` member that
 * is an object or null; any `clientToken` in it is replaced by the request's
 * own, and every other byte of it is kept as written (numbers are not
 * re-printed, so integers beyond 2^53 survive).  For get and delete, `json`
 * must be NULL.  The token is a UUID v4 from `random`, mixed with a counter
 * of this core, so that it is unique among pending requests and is never
 * issued twice by this core even if `random` repeats.  The deadline is
 * now_ms + timeout_ms; `user` comes back when the request leaves the table.
 *
 * Checks in this order, nothing registered on failure:
 *   IOTC_ERR_INVALID_ARG  a NULL argument, timeout_ms 0 (a lost response
 *                         would hold its slot forever), update JSON that is
 *                         not JSON, not an object, without `state`, or with
 *                         `state` neither an object nor null;
 *   IOTC_ERR_BUSY         max_pending requests already pending;
 *   IOTC_ERR_NOMEM.
 * `why`, when not NULL, gets a static sentence for each failure. */
int iotc_shadow_core_begin(iotc_shadow_core *sc, iotc_shadow_op op, const char *json, size_t json_len,
                           const uint8_t random[IOTC_SHADOW_RANDOM_BYTES], uint64_t now_ms, uint32_t timeout_ms,
                           void *user, iotc_shadow_request *out, const char **why);

/* A request that left the table. */
typedef struct {
    void *user;
    iotc_shadow_op op;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
} iotc_shadow_taken;

/* Takes the pending request with this token (its publish failed, say);
 * false when there is none. */
bool iotc_shadow_core_take(iotc_shadow_core *sc, const char *token, iotc_shadow_taken *out);
/* Takes any one pending request; false when none is left (closing). */
bool iotc_shadow_core_take_any(iotc_shadow_core *sc, iotc_shadow_taken *out);
/* Takes one request whose deadline is <= now_ms (the earliest first);
 * false when none is due.  Call until false. */
bool iotc_shadow_core_expire(iotc_shadow_core *sc, uint64_t now_ms, iotc_shadow_taken *out);
/* The earliest pending deadline, UINT64_MAX when nothing is pending. */
uint64_t iotc_shadow_core_next_deadline(const iotc_shadow_core *sc);
/* Whether a request with this token is pending. */
bool iotc_shadow_core_is_pending(const iotc_shadow_core *sc, const char *token);

/* The newest version seen (accepted get/update, deltas and documents that
 * passed); false when none since creation or the last delete/accepted. */
bool iotc_shadow_core_version(const iotc_shadow_core *sc, uint64_t *version);

typedef enum {
    IOTC_SHADOW_EV_IGNORED = 0, /* nothing for the caller; see `ignored` */
    IOTC_SHADOW_EV_RESPONSE,    /* the answer to a pending request, which left the table */
    IOTC_SHADOW_EV_DELTA,
    IOTC_SHADOW_EV_DOCUMENTS
} iotc_shadow_ev_type;

/* Why a message was ignored: each is a case the tests pin down. */
typedef enum {
    IOTC_SHADOW_IGN_NONE = 0,
    IOTC_SHADOW_IGN_TOPIC,         /* not one of this shadow's response or stream topics */
    IOTC_SHADOW_IGN_JSON,          /* not a JSON object */
    IOTC_SHADOW_IGN_NO_TOKEN,      /* a response without a string clientToken */
    IOTC_SHADOW_IGN_UNKNOWN_TOKEN, /* another client's, or one already answered or expired */
    IOTC_SHADOW_IGN_OP_MISMATCH,   /* a pending token on another operation's topic: left pending */
    IOTC_SHADOW_IGN_NO_VERSION,    /* a delta or documents without an integer version */
    IOTC_SHADOW_IGN_STALE          /* a delta or documents older than the newest version seen */
} iotc_shadow_ignore;

typedef struct {
    iotc_shadow_ev_type type;
    iotc_shadow_ignore ignored;
    /* RESPONSE */
    iotc_shadow_op op;
    int status;          /* IOTC_OK (accepted) or IOTC_ERR_REJECTED */
    int code;            /* rejected: AWS's `code` when an integer in int's range, else 0 */
    const char *message; /* rejected: `message` when a string, else ""; valid until clear */
    void *user;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
    /* RESPONSE, DELTA, DOCUMENTS: `version` (documents: `current.version`) */
    bool has_version;
    uint64_t version;
    void *doc_; /* private: the parsed document */
} iotc_shadow_event;

/* Classifies one incoming message (topic and payload as received) and
 * updates the table and the version tracking.  Always fills *ev (clear it
 * afterwards with iotc_shadow_event_clear, whatever the type).  The
 * payload itself is what a caller hands on as the response's JSON. */
void iotc_shadow_core_input(iotc_shadow_core *sc, const char *topic, size_t topic_len, const uint8_t *payload,
                            size_t len, iotc_shadow_event *ev);
void iotc_shadow_event_clear(iotc_shadow_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_SVC_SHADOW_CORE_H */
