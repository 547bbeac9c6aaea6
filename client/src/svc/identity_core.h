/*
 * svc/identity_core.h: the fleet provisioning ("identity") client's
 * protocol, sans-I/O (aws-services.md §2 and §4.4).
 *
 * Owns what a fleet provisioning client must get right whatever carries its
 * bytes:
 * - the topics of the three operations in the `json` format (CBOR is not
 *   done: cJSON is what libiotc links, and AWS offers JSON for every
 *   operation), and the template name's limits (1..36 bytes of
 *   [0-9A-Za-z_-], the CreateProvisioningTemplate rule);
 * - request payloads: CreateKeysAndCertificate `{}` (what the v2 SDK sends;
 *   AWS also takes an empty one), CreateCertificateFromCsr
 *   `{"certificateSigningRequest": PEM}`, RegisterThing
 *   `{"certificateOwnershipToken": T, "parameters": {string: string}}`, all
 *   printed by cJSON so that a PEM's newlines and any quote or backslash in
 *   a parameter are escaped;
 * - parsing what comes back: accepted documents (certificateId,
 *   certificatePem, privateKey, certificateOwnershipToken; thingName and
 *   deviceConfiguration as a flat string map) and rejected ones (statusCode
 *   an int, errorCode, errorMessage); a malformed one is refused with a
 *   sentence saying what is wrong, never half-read;
 * - the pending requests.  AWS's answers carry no correlation token (§2.1),
 *   so an answer is matched by its topic alone, which only works with one
 *   request outstanding per topic pair: one CreateKeysAndCertificate, one
 *   CreateCertificateFromCsr, one RegisterThing per template.  A second one
 *   is refused at the call with IOTC_ERR_BUSY rather than sent and
 *   mismatched.  Each pair of topics is a "channel" (0: CreateKeys, 1:
 *   CreateFromCsr, 2..: RegisterThing, one per template seen), kept for the
 *   core's life so that a wrapper can keep its subscriptions per channel;
 * - deadlines, expired at `now_ms`.
 *
 * No I/O, no threads, no clock: time comes in as `now_ms`.  It allocates
 * (channels, payloads, a parsed document per answer).  Not thread-safe: the
 * caller serialises.  It never completes anything itself: whatever leaves
 * the table (answered, expired, taken) is handed back, and the caller
 * completes it once.
 */
#ifndef IOTC_SVC_IDENTITY_CORE_H
#define IOTC_SVC_IDENTITY_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Template names: 1..36 bytes of [0-9A-Za-z_-] [DOC]. */
#define IOTC_IDENTITY_TEMPLATE_MAX 36
/* The longest topic: `$aws/provisioning-templates/` + 36 + `/provision/json/accepted`. */
#define IOTC_IDENTITY_TOPIC_MAX 88
/* AWS IoT's largest message payload: a request over it is refused at the
 * call instead of by the broker later. */
#define IOTC_IDENTITY_PAYLOAD_MAX (128u * 1024u)
/* Distinct templates one core registers things with.  A device uses one;
 * the bound keeps the channels (and a wrapper's subscriptions) finite. */
#define IOTC_IDENTITY_MAX_TEMPLATES 16
#define IOTC_IDENTITY_MAX_CHANNELS (2 + IOTC_IDENTITY_MAX_TEMPLATES)

typedef enum {
    IOTC_IDENTITY_OP_CREATE_KEYS = 0,     /* CreateKeysAndCertificate */
    IOTC_IDENTITY_OP_CREATE_FROM_CSR = 1, /* CreateCertificateFromCsr */
    IOTC_IDENTITY_OP_REGISTER_THING = 2   /* RegisterThing */
} iotc_identity_op;
#define IOTC_IDENTITY_NOPS 3

typedef enum {
    IOTC_IDENTITY_SFX_REQUEST = 0, /* where requests are published */
    IOTC_IDENTITY_SFX_ACCEPTED,
    IOTC_IDENTITY_SFX_REJECTED
} iotc_identity_sfx;

/* AWS's operation name ("CreateKeysAndCertificate", ...); "?" otherwise. */
const char *iotc_identity_op_name(iotc_identity_op op);

/* IOTC_OK, or IOTC_ERR_INVALID_ARG (NULL, empty, over 36 bytes, a byte
 * outside [0-9A-Za-z_-]); `why`, when not NULL, gets a static sentence. */
int iotc_identity_check_template(const char *name, size_t len, const char **why);

/* Writes the topic, NUL-terminated, into buf; `template_name` only for
 * RegisterThing (NULL otherwise).  Returns its length (> 0), or
 * IOTC_ERR_INVALID_ARG (an operation, suffix or template name) or
 * IOTC_ERR_TOO_LARGE (cap too small; IOTC_IDENTITY_TOPIC_MAX + 1 always
 * suffices). */
int iotc_identity_topic(char *buf, size_t cap, iotc_identity_op op, const char *template_name,
                        iotc_identity_sfx sfx);

/* A fleet provisioning topic (json format) taken apart; the template
 * pointer is into the topic (NULL and 0 for the two certificate
 * operations). */
typedef struct {
    iotc_identity_op op;
    const char *template_name;
    size_t template_len;
    iotc_identity_sfx sfx;
} iotc_identity_topic_parts;

/* Whether `topic` (len bytes, no NUL needed) is one of the json topics with
 * a valid template name; fills *out when it is. */
bool iotc_identity_topic_parse(const char *topic, size_t len, iotc_identity_topic_parts *out);

/* ---- payloads --------------------------------------------------------------------- */

/* Each writes a malloc'd, NUL-terminated payload (the caller frees it with
 * free()) and its length.  IOTC_OK, IOTC_ERR_INVALID_ARG (why says what),
 * IOTC_ERR_TOO_LARGE (over IOTC_IDENTITY_PAYLOAD_MAX), IOTC_ERR_NOMEM; *out
 * is NULL on failure. */
int iotc_identity_build_create_keys(char **out, size_t *len);
/* `csr_pem`: non-empty UTF-8 (AWS answers a CSR it cannot read with a
 * rejection, so its content is not checked here). */
int iotc_identity_build_csr(const char *csr_pem, char **out, size_t *len, const char **why);
/* `token` non-empty (AWS rejects an empty one: "Certificate ownership token
 * cannot be empty."); `nparams` keys and values, each key non-empty and
 * unique, each value a string (may be empty), all UTF-8.  No `parameters`
 * member when nparams is 0 (it is optional, §2.2); keys and values may be
 * NULL then. */
int iotc_identity_build_register(const char *token, const char *const *keys, const char *const *values,
                                 size_t nparams, char **out, size_t *len, const char **why);

/* ---- documents --------------------------------------------------------------------- */

/* A parsed answer.  The strings point into the parsed document and live
 * until iotc_identity_doc_clear.  Fields not in this kind of answer are
 * NULL (0 for the counts and the status code). */
typedef struct {
    /* rejected */
    int status_code;           /* statusCode: present, an integer in int's range */
    const char *error_code;    /* errorCode, "" when absent */
    const char *error_message; /* errorMessage, "" when absent */
    /* CreateKeysAndCertificate / CreateCertificateFromCsr accepted: each a
     * non-empty string; private_key for CreateKeysAndCertificate only (NULL
     * for a CSR's, whose key never left the device). */
    const char *certificate_id;
    const char *certificate_pem;
    const char *private_key;
    const char *certificate_ownership_token;
    /* RegisterThing accepted: thingName a string ("" when the template has
     * no thing); deviceConfiguration an object of strings (absent: none). */
    const char *thing_name;
    size_t config_len;
    const char **config_keys;
    const char **config_values;
    void *doc_; /* private: the parsed document and the arrays */
} iotc_identity_doc;

/* Parse an accepted answer of `op`, or a rejected answer of any operation.
 * IOTC_OK (fill *out, clear it afterwards), IOTC_ERR_PROTOCOL (malformed:
 * not a JSON object, a required member missing or of the wrong type, a
 * nested deviceConfiguration, a statusCode that is not an integer; `why`
 * says which, *out holds nothing), IOTC_ERR_INVALID_ARG (NULL, an unknown
 * op), IOTC_ERR_NOMEM.  Members AWS may add later are ignored. */
int iotc_identity_parse_accepted(iotc_identity_op op, const uint8_t *payload, size_t len, iotc_identity_doc *out,
                                 const char **why);
int iotc_identity_parse_rejected(const uint8_t *payload, size_t len, iotc_identity_doc *out, const char **why);
/* Frees what a parse kept; the doc is zeroed.  Safe on a zeroed doc. */
void iotc_identity_doc_clear(iotc_identity_doc *d);

/* ---- one client's state ------------------------------------------------------------ */

typedef struct iotc_identity_core iotc_identity_core;

/* IOTC_OK or IOTC_ERR_NOMEM (IOTC_ERR_INVALID_ARG for a NULL out). */
int iotc_identity_core_new(iotc_identity_core **out);
/* Frees the core.  Requests still pending are forgotten: take them first
 * (iotc_identity_core_take_any) to complete them.  NULL is fine. */
void iotc_identity_core_free(iotc_identity_core *ic);

/* A request's arguments; what an operation does not use must be NULL/0. */
typedef struct {
    iotc_identity_op op;
    const char *template_name;       /* RegisterThing */
    const char *csr_pem;             /* CreateCertificateFromCsr */
    const char *token;               /* RegisterThing: certificateOwnershipToken */
    const char *const *param_keys;   /* RegisterThing: parameters */
    const char *const *param_values;
    size_t nparams;
} iotc_identity_args;

/* A request to publish on iotc_identity_core_topic(ic, channel, REQUEST). */
typedef struct {
    int channel;
    uint64_t id; /* unique for the core's life: names the request to take */
    char *payload; /* malloc'd, NUL-terminated; the caller frees it with free() */
    size_t payload_len;
} iotc_identity_request;

/* Registers a request and builds its payload.  The deadline is now_ms +
 * timeout_ms; `user` comes back when the request leaves the table.
 * Checks in this order, nothing registered (and no channel added) on
 * failure:
 *   IOTC_ERR_INVALID_ARG  a NULL argument, an unknown op, timeout_ms 0 (a
 *                         lost answer would hold its channel forever), an
 *                         argument the op does not take, a template name,
 *                         a CSR or a token or parameters the builders refuse;
 *   IOTC_ERR_TOO_LARGE    a payload over IOTC_IDENTITY_PAYLOAD_MAX;
 *   IOTC_ERR_BUSY         a request of this operation (this template for
 *                         RegisterThing) already pending, or a new template
 *                         beyond IOTC_IDENTITY_MAX_TEMPLATES;
 *   IOTC_ERR_NOMEM.
 * `why`, when not NULL, gets a static sentence for each failure. */
int iotc_identity_core_begin(iotc_identity_core *ic, const iotc_identity_args *a, uint64_t now_ms,
                             uint32_t timeout_ms, void *user, iotc_identity_request *out, const char **why);

/* Channels made so far (>= 2: the two certificate operations). */
int iotc_identity_core_channels(const iotc_identity_core *ic);
/* The channel of (op, template), or -1 when there is none yet. */
int iotc_identity_core_find(const iotc_identity_core *ic, iotc_identity_op op, const char *template_name);
/* The channel's topic for sfx, owned by the core; NULL for a bad channel. */
const char *iotc_identity_core_topic(const iotc_identity_core *ic, int channel, iotc_identity_sfx sfx);
/* The channel's operation (IOTC_IDENTITY_NOPS for a bad channel). */
iotc_identity_op iotc_identity_core_channel_op(const iotc_identity_core *ic, int channel);

size_t iotc_identity_core_pending(const iotc_identity_core *ic);
bool iotc_identity_core_is_pending(const iotc_identity_core *ic, int channel);

/* A request that left the table. */
typedef struct {
    void *user;
    iotc_identity_op op;
    int channel;
    uint64_t id;
} iotc_identity_taken;

/* Takes request `id` (its publish failed, say); false when it is not
 * pending any more. */
bool iotc_identity_core_take(iotc_identity_core *ic, uint64_t id, iotc_identity_taken *out);
/* Takes any one pending request; false when none is left (closing). */
bool iotc_identity_core_take_any(iotc_identity_core *ic, iotc_identity_taken *out);
/* Takes one request whose deadline is <= now_ms (the earliest first);
 * false when none is due.  Call until false. */
bool iotc_identity_core_expire(iotc_identity_core *ic, uint64_t now_ms, iotc_identity_taken *out);
/* The earliest pending deadline, UINT64_MAX when nothing is pending. */
uint64_t iotc_identity_core_next_deadline(const iotc_identity_core *ic);

typedef enum {
    IOTC_IDENTITY_EV_IGNORED = 0, /* nothing for the caller; see `ignored` */
    IOTC_IDENTITY_EV_RESPONSE     /* the answer to a pending request, which left the table */
} iotc_identity_ev_type;

typedef enum {
    IOTC_IDENTITY_IGN_NONE = 0,
    IOTC_IDENTITY_IGN_TOPIC,      /* not an accepted/rejected topic of one of this core's channels */
    IOTC_IDENTITY_IGN_NOT_PENDING /* nothing pending on that channel: late, duplicate or someone else's */
} iotc_identity_ignore;

typedef struct {
    iotc_identity_ev_type type;
    iotc_identity_ignore ignored;
    /* RESPONSE */
    iotc_identity_op op;
    int channel;
    uint64_t id;
    void *user;
    /* IOTC_OK (accepted), IOTC_ERR_REJECTED, or IOTC_ERR_PROTOCOL: the
     * answer was malformed (`why` says how).  Without a correlation token,
     * whatever arrives on the channel's topics while a request is pending is
     * its answer, so a malformed one completes it (a clear error now rather
     * than a timeout later). */
    int status;
    const char *why; /* PROTOCOL: a static sentence; "" otherwise */
    iotc_identity_doc doc; /* OK and REJECTED: the parsed answer */
} iotc_identity_event;

/* Classifies one incoming message and updates the table.  Always fills *ev
 * (clear it afterwards with iotc_identity_event_clear, whatever the type). */
void iotc_identity_core_input(iotc_identity_core *ic, const char *topic, size_t topic_len, const uint8_t *payload,
                              size_t len, iotc_identity_event *ev);
void iotc_identity_event_clear(iotc_identity_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_SVC_IDENTITY_CORE_H */
