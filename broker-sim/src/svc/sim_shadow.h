/*
 * sim_shadow.h: the AWS IoT Device Shadow service (aws-services.md §1), pure:
 * no sockets, threads or clock (time comes in as `now_s`, epoch seconds).
 *
 * The module owns the shadows: the classic and named shadows of every thing,
 * each with its desired and reported state, their metadata and version, and
 * the version memory of deleted shadows (§1.4.5: a shadow re-created within
 * 48 h continues its version).  The caller (the engine) recognizes request
 * topics with sim_shadow_parse_topic(), hands each request payload to
 * sim_shadow_handle() and publishes what it emits; nothing else changes a
 * shadow.  The caller keeps every argument; the store copies what it keeps.
 *
 * Stored form: each section (desired, reported) and its metadata as compact
 * JSON text, parsed again for each request.  Text is several times smaller
 * than a cJSON tree (a stored leaf costs a few bytes, not two 64-byte nodes
 * for its metadata), and a parse is a deep copy, which an update needs
 * anyway so that a rejected one leaves the shadow untouched.  Memory is
 * bounded by max_shadows shadows of at most max_state_bytes of state (plus
 * its metadata), and max_shadows remembered deletions.
 *
 * Facts the reference leaves open (§5) are configuration, below.  Others are
 * fixed choices, explained where they are made in sim_shadow.c: the order of
 * the payload checks, `Invalid JSON` for arrays holding null, duplicate keys
 * (the last one wins), what update/accepted and get/accepted say after
 * {"state": null}, no metadata.delta in get/accepted.
 */
#ifndef SIM_SHADOW_H
#define SIM_SHADOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* §1.6 [DOC]: the compact serializations of desired and reported, after
     * the merge, metadata excluded, add up to at most this; else 413. */
    uint32_t max_state_bytes;
    /* Nesting inside desired/reported: the keys directly inside a section are
     * level 1, and every object or array adds one for what it holds, so
     * {"a":{"b":[1]}} reaches level 3.  Deeper: 400.  [DOC] gives 5, 6 and 8
     * in different places (UNCONFIRMED); 6 agrees with the error text. */
    uint32_t max_depth;
    /* clientToken bytes [DOC]; longer (or not a string): 400 Invalid clientToken. */
    uint32_t max_client_token;
    /* true: update/delta after every accepted update that leaves a non-empty
     * delta ([GG], the doc wording); false: only when that delta differs from
     * the one before the update (UNCONFIRMED, §5 q2). */
    bool delta_when_unchanged;
    /* true: an accepted update that changes neither desired nor reported
     * still takes a new version and refreshes the touched leaves' metadata
     * ([GG], UNCONFIRMED, §5 q3); false: it changes nothing at all (version,
     * metadata), though it is still answered with accepted and documents. */
    bool version_on_noop;
    /* true: an object emptied by null deletions stays as {} ([GG]); false: it
     * is removed, and no empty object is ever stored (UNCONFIRMED, §5 q6).
     * Either way a section (desired, reported) left empty is removed. */
    bool keep_empty_parents;
    /* §1.4.5 [DOC]: a shadow re-created at most this long after its deletion
     * continues the deleted version; later, it starts again at 1. */
    uint32_t recreate_window_s;
    /* A simulator limit, not AWS's (AWS documents none): creating one more
     * shadow than this is refused with 429 `Too many shadows`.  The same
     * number bounds the remembered deletions; past it the oldest is
     * forgotten (a re-creation of that one then starts at version 1). */
    uint32_t max_shadows;
} sim_shadow_config;

/* 8192 bytes, depth 6, token 64, delta_when_unchanged, version_on_noop,
 * keep_empty_parents, 48 h, 100000 shadows. */
void sim_shadow_config_init(sim_shadow_config *cfg);

typedef struct sim_shadow_store sim_shadow_store;

/* NULL on allocation failure; cfg is copied. */
sim_shadow_store *sim_shadow_store_new(const sim_shadow_config *cfg);
void sim_shadow_store_free(sim_shadow_store *s); /* NULL is fine */

typedef enum { SIM_SHADOW_GET, SIM_SHADOW_UPDATE, SIM_SHADOW_DELETE } sim_shadow_op;

const char *sim_shadow_op_name(sim_shadow_op op); /* "get", "update", "delete" */

#define SIM_SHADOW_THING_MAX 128
#define SIM_SHADOW_NAME_MAX 64
/* The longest shadow topic: a named .../update/documents (§1.1). */
#define SIM_SHADOW_TOPIC_MAX 234

typedef struct {
    char thing[SIM_SHADOW_THING_MAX + 1]; /* 1..128 bytes of [a-zA-Z0-9:_-] */
    /* A named shadow: 1..64 of [$a-zA-Z0-9:_-] ([DOC] allows $; [GG] does
     * not); "" for the classic shadow. */
    char name[SIM_SHADOW_NAME_MAX + 1];
    sim_shadow_op op;
} sim_shadow_req;

/* True when topic[0..len) is exactly a shadow request topic:
 * $aws/things/{thing}/shadow/{get|update|delete} or
 * $aws/things/{thing}/shadow/name/{name}/{get|update|delete}, with valid names.
 * Anything else (responses like .../update/accepted, bad names, other $aws
 * topics): false, and *out is left alone.  out may be NULL. */
bool sim_shadow_parse_topic(const char *topic, size_t len, sim_shadow_req *out);

/* Writes the shadow's topic prefix plus `suffix` ("/update/accepted", or
 * "/get" for the request topic) to buf; the length, or 0 when the names are
 * invalid or buf is too small. */
size_t sim_shadow_topic(const char *thing, const char *name, const char *suffix, char *buf, size_t buflen);

/* One response to publish: topic and payload are NUL-terminated, valid during the call. */
typedef void (*sim_shadow_emit_fn)(void *ctx, const char *topic, const char *payload, size_t len);

/* Handles one request published by a device.  Publishes (through emit) the
 * responses in this order: accepted or rejected; for an accepted update then
 * /update/delta (when due) and /update/documents.  Returns the HTTP-like
 * result: 200 accepted, or the error code sent on .../rejected (400, 404,
 * 409, 413, 415, 429, 500 on allocation failure).  `why` (may be NULL)
 * receives the error message (or "accepted").  now_s: epoch seconds for
 * timestamps and metadata.
 *
 * A req with invalid names or op (one sim_shadow_parse_topic() would not
 * give) has no topic to answer on: 400, nothing emitted.  A refused request
 * (any code but 200) leaves the store as it was.  emit may be NULL; it must
 * not call back into the store. */
int sim_shadow_handle(sim_shadow_store *s, const sim_shadow_req *req, const uint8_t *payload, size_t len,
                      uint64_t now_s, sim_shadow_emit_fn emit, void *ctx, char *why, size_t whylen);

/* The stored shadow as get/accepted would render it (state with delta,
 * metadata, version, timestamp now_s; no clientToken), malloc'd text
 * (free()), or NULL if it does not exist (or on allocation failure).
 * name: NULL or "" for the classic shadow. */
char *sim_shadow_document(const sim_shadow_store *s, const char *thing, const char *name, uint64_t now_s);

/* Every existing shadow, sorted by thing then name (classic first): a JSON
 * array of {"thing","name" (null for classic),"version","state":{desired,reported}}
 * (malloc'd, free()); NULL on allocation failure. */
char *sim_shadow_list(const sim_shadow_store *s);

/* Existing shadows and remembered deletions (for limits, tests, the control API). */
void sim_shadow_stats(const sim_shadow_store *s, size_t *live, size_t *remembered);

/* Persistence (iotsim keeps shadows in its state directory across restarts):
 * the whole store (including deleted-shadow version memory) as JSON text, and back:
 *   {"format":1,
 *    "shadows":[{"thing","name"|null,"version","state":{desired?,reported?},"metadata":{desired?,reported?}}],
 *    "deleted":[{"thing","name"|null,"version","deleted_at"}]}   (oldest deletion first)
 * sim_shadow_save: malloc'd (free()), NULL on allocation failure.
 * sim_shadow_load replaces the store's content; on bad input (or allocation
 * failure) returns false with a reason in why and leaves the store unchanged.
 * Loading checks the form (names, versions, no null in a state, metadata
 * mirroring its state, no duplicates, at most max_shadows of each kind) but
 * not max_state_bytes or max_depth, which may have changed since the save. */
char *sim_shadow_save(const sim_shadow_store *s);
bool sim_shadow_load(sim_shadow_store *s, const char *json, char *why, size_t whylen);

#endif
