/*
 * sim_provision.h: the Fleet Provisioning MQTT API, provisioning by claim
 * (aws-services.md §2), pure: no sockets, threads, clock or OpenSSL.  Time
 * comes in as `now_s` (epoch seconds), randomness through the config, and
 * certificates, things and policies are made by a backend the caller
 * provides (iotsim: its CA, certificate registry and policy store).
 *
 * The module owns: the provisioning templates (validated when loaded), the
 * outstanding certificateOwnershipTokens (each bound to the certificate it
 * was issued with, its expiry, the claim certificate and client id that
 * asked), and a bounded memory of spent tokens (used or expired) so that a
 * refusal can say which.  The caller recognizes request topics with
 * sim_provision_parse_topic(), hands each request to sim_provision_handle()
 * and publishes what it emits; it calls sim_provision_expire() when the time
 * sim_provision_expire() (or sim_provision_next_expiry()) named has come.
 * The caller keeps every argument; the module copies what it keeps.
 *
 * Formats: `json` and `cbor` (§2.1).  A CBOR request (RFC 8949) is turned into
 * the same tree a JSON one gives: maps with text-string keys, text strings,
 * numbers, true/false/null (undefined reads as null); tags are skipped;
 * byte strings, other map keys, NUL characters, invalid UTF-8 and nesting
 * deeper than 32 are 400 InvalidPayload.  The response is CBOR with the same
 * field names as text-string keys [DOC].  JSON requests must be UTF-8 too.
 *
 * Templates (§2.4): the sections Parameters, Mappings, Resources and
 * DeviceConfiguration, nothing else; resources AWS::IoT::Thing (at most one),
 * AWS::IoT::Certificate (exactly one, CertificateId only: the fleet rule
 * [DOC]) and AWS::IoT::Policy (up to SIM_PROV_MAX_POLICIES: "one or more"
 * [DOC]; PolicyName xor PolicyDocument, the latter an object or a string
 * holding one); OverrideSettings for things and certificates only; a flat
 * DeviceConfiguration; intrinsic functions Ref, Fn::Join, Fn::Select,
 * Fn::FindInMap, Fn::Split and Fn::Sub everywhere but in Mappings.  What can
 * be checked without parameters is checked at load, and a refusal names the
 * key ("Resources.thing.Properties.ThingName: ...").  The pre-provisioning
 * hook (§2.5) is not simulated (it is a property of the template resource,
 * not of its body, so there is nothing to refuse in a body).
 *
 * Choices where the reference is silent (UNCONFIRMED, or local inventions
 * marked [local]); the error codes are those §2.2 suggests:
 *  - Check order of RegisterThing: template (404) -> payload syntax (400
 *    InvalidPayload) -> token (400 InvalidCertificateOwnershipToken) ->
 *    parameters (400 InvalidPayload) -> template evaluation (400
 *    InvalidParameters [local]) -> the backend (its status).
 *  - An unknown and a disabled template are both 404 ResourceNotFound.
 *  - A missing, null or empty token: 400 InvalidCertificateOwnershipToken
 *    "Certificate ownership token cannot be empty." [OBS]; a token that is
 *    not a string: 400 InvalidPayload; an unknown, used or expired one: 400
 *    InvalidCertificateOwnershipToken with a message saying which.
 *  - A token is bound to its certificate, not to the connection: any client
 *    may redeem it.  It is consumed only by a successful RegisterThing; a
 *    refused one (bad parameters, backend refusal) leaves it usable.
 *  - Tokens: 64 lowercase hex characters from four calls of the random source.
 *  - A token is valid while now_s < issue time + token_ttl_s.  When it
 *    expires unused, forget_cert is called once for its certificate (§2.3
 *    step 6: the pending certificate is deleted).
 *  - With max_tokens tokens outstanding, CreateKeysAndCertificate and
 *    CreateCertificateFromCsr are 429 ThrottlingException [local], and the
 *    backend is not asked for a certificate.
 *  - CreateKeysAndCertificate: an empty payload or any JSON object (its
 *    members are ignored); anything else 400 InvalidPayload.
 *  - CreateCertificateFromCsr: certificateSigningRequest missing, empty or
 *    not a string: 400 InvalidPayload; the backend refusing the CSR: 400
 *    InvalidCSR [local].
 *  - parameters: absent or null means none; otherwise an object of strings,
 *    else 400 InvalidPayload.  Parameters the template does not declare are
 *    still visible to Ref and Fn::Sub (AWS's own fleet example refers to an
 *    undeclared "ThingName"); a Ref to a parameter with no value and no
 *    Default is 400 InvalidParameters [local].  AWS::IoT::Certificate::Id is
 *    always the token's certificate, whatever the device sends.
 *  - The certificate resource's CertificateId must evaluate to the token's
 *    certificate, else 400 InvalidParameters [local].
 *  - Status, OverrideSettings values: case-insensitive in ("Active" appears
 *    in AWS's fleet examples, §5 q10), upper-case out.  Thing override keys:
 *    the property names or the documented ATTRIBUTE_PAYLOAD, THING_TYPE_NAME,
 *    THING_GROUPS, handed to the backend as property names.
 *  - A PolicyDocument without PolicyName gets the SHA-256 (64 lowercase hex)
 *    of its compact JSON text as its name ("a hash of the document" [DOC]).
 *  - DeviceConfiguration values must be strings, or functions giving strings
 *    (the SDKs type it string -> string) [local]; an absent section gives {}.
 *  - thingName in the accepted response is "" when the template has no
 *    thing resource.
 *  - Template size: max_template_bytes counts the bytes of the template's
 *    JSON text as given (the content of the string when a string was given);
 *    AWS counts characters of templateBody, the same for ASCII.
 *  - A template has at most SIM_PROV_MAX_POLICIES policies and exactly one
 *    certificate resource [local]; Parameters entries have "Type": "String"
 *    and an optional string "Default", nothing else.
 *  - Evaluation errors name the key and the function:
 *    "Resources.thing.Properties.ThingName.Fn::Join[1][1]: Ref: no value for
 *    parameter SerialNumber (not in parameters, no Default)".
 *  - Fn::Select takes a non-negative integer or a string of digits; null
 *    elements and out-of-range indexes are errors [DOC].  Fn::Split needs a
 *    non-empty delimiter.  Fn::Sub takes "string" or ["string", {vars}];
 *    ${!X} gives a literal ${X}.
 */
#ifndef SIM_PROVISION_H
#define SIM_PROVISION_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_PROV_TEMPLATE_MAX 36 /* template name bytes [DOC] */
/* The longest topic: $aws/provisioning-templates/{36}/provision/json/accepted (§2.1). */
#define SIM_PROV_TOPIC_MAX 88
#define SIM_PROV_TOKEN_LEN 64
#define SIM_PROV_MAX_POLICIES 10 /* [local]: AWS attaches at most 10 policies to a certificate */

typedef struct {
    uint32_t token_ttl_s;        /* certificateOwnershipToken lifetime: 3600 [DOC] */
    uint32_t max_tokens;         /* outstanding tokens (simulator limit): 1000; beyond: 429 ThrottlingException */
    uint32_t max_template_bytes; /* 10240 [DOC] */
    uint32_t max_templates;      /* simulator limit: 100 */
    /* The random source for tokens; NULL: a deterministic sequence
     * (splitmix64) started from `seed`, so that tests can predict tokens. */
    uint64_t (*random)(void *ctx);
    void *random_ctx;
    uint64_t seed;
} sim_provision_config;

void sim_provision_config_init(sim_provision_config *c);

typedef struct sim_provision sim_provision;

/* NULL on allocation failure; c is copied (NULL: the defaults). */
sim_provision *sim_provision_new(const sim_provision_config *c);
void sim_provision_free(sim_provision *p); /* NULL is fine; forgets tokens without calling forget_cert */

/* ---- templates (iotsim's config file or control API) ---- */

/* Adds or replaces the template `name` (1..36 of [0-9A-Za-z_-]).  body[0..len)
 * is a JSON object, or a JSON string holding one (as CreateProvisioningTemplate
 * takes it).  0, or -1 with "KEY: reason" in why (the template is then left
 * as it was).  A disabled template answers RegisterThing with 404. */
int sim_provision_template_put(sim_provision *p, const char *name, const char *body, size_t len, bool enabled,
                               char *why, size_t whylen);
/* 0, or -1 when there is no such template.  Outstanding tokens stay valid. */
int sim_provision_template_delete(sim_provision *p, const char *name);
size_t sim_provision_template_count(const sim_provision *p);

/* For the control API, malloc'd JSON text (free()), NULL on allocation failure:
 * {"templates":[{"name","enabled","body":{...}}],            (sorted by name)
 *  "tokens":[{"certificateId","expiresAt","claimCertificateId"|null,"clientId"|null}]}  (oldest first)
 * The token texts themselves are not shown. */
char *sim_provision_describe(const sim_provision *p);

/* ---- requests ---- */

typedef enum { SIM_PROV_CREATE_KEYS, SIM_PROV_CREATE_FROM_CSR, SIM_PROV_REGISTER } sim_prov_op;

/* "CreateKeysAndCertificate", "CreateCertificateFromCsr", "RegisterThing". */
const char *sim_prov_op_name(sim_prov_op op);

typedef struct {
    sim_prov_op op;
    bool cbor;                                    /* the topic's {fmt} */
    char template_name[SIM_PROV_TEMPLATE_MAX + 1]; /* RegisterThing only; else "" */
} sim_prov_req;

/* True for exactly the three request topics of §2.1 (json or cbor), with a
 * valid template name; false (and *out untouched) for anything else,
 * responses (.../accepted) included.  out may be NULL. */
bool sim_provision_parse_topic(const char *topic, size_t len, sim_prov_req *out);

/* Writes req's request topic followed by `suffix` ("" for the request,
 * "/accepted", "/rejected") to buf; the length, or 0 when req is invalid or
 * buf too small. */
size_t sim_provision_topic(const sim_prov_req *req, const char *suffix, char *buf, size_t buflen);

/* ---- the backend ---- */

typedef struct {
    const char *name;     /* PolicyName, or the SHA-256 hex of document */
    const char *document; /* compact JSON text, or NULL: PolicyName names an existing policy */
} sim_prov_policy;

/* What RegisterThing asks the backend to do once the template is evaluated.
 * Everything is valid during the call only. */
typedef struct {
    const char *template_name;
    const char *claim_certificate_id; /* the requesting connection's, or NULL */
    const char *client_id;            /* or NULL */
    const char *certificate_id;       /* the token's certificate */
    const cJSON *parameters;          /* the parameters in force: Defaults, the device's, AWS::IoT::Certificate::Id */

    /* The thing; thing_name NULL: the template has no AWS::IoT::Thing. */
    const char *thing_name;      /* 1..128 of [a-zA-Z0-9:_-] */
    const cJSON *attributes;     /* AttributePayload: object of strings, or NULL */
    const char *thing_type_name; /* or NULL */
    const cJSON *thing_groups;   /* array of strings, or NULL */
    const char *billing_group;   /* or NULL */
    /* The thing's OverrideSettings: an object whose keys are among
     * AttributePayload, ThingTypeName, ThingGroups, and values among
     * DO_NOTHING, REPLACE, FAIL (-> 409 ResourceConflictsException when the
     * thing exists), MERGE; NULL when the template gives none. */
    const cJSON *thing_override;

    const char *certificate_status;   /* "ACTIVE" or "INACTIVE" */
    const char *certificate_override; /* its OverrideSettings.Status (DO_NOTHING, REPLACE, FAIL) or NULL */

    const sim_prov_policy *policies; /* npolicies of them, to create if new and attach to the certificate */
    size_t npolicies;
} sim_prov_registration;

typedef struct {
    /* A new key pair and a certificate in PENDING_ACTIVATION (§2.3).  Outputs
     * are malloc'd; the module free()s them.  Returns 0; or -1 (500
     * InternalFailure), or a status 400..599 for the rejected response, with
     * a message in why. */
    int (*create_keys_and_cert)(void *ctx, char **cert_id, char **cert_pem, char **key_pem, char *why, size_t whylen);
    /* The same from a CSR (PEM text).  -1 or 400: 400 InvalidCSR [local]. */
    int (*create_from_csr)(void *ctx, const char *csr_pem, char **cert_id, char **cert_pem, char *why,
                           size_t whylen);
    /* Carries out a registration: 0, or a status (400/403/404/409/429/500...)
     * with an errorCode in code (empty: the module picks the usual one for
     * that status) and a message in why.  The token is consumed on 0 only. */
    int (*register_thing)(void *ctx, const sim_prov_registration *r, char *code, size_t codelen, char *why,
                          size_t whylen);
    /* A token expired unused: its certificate, still pending, goes (§2.3 step 6). */
    void (*forget_cert)(void *ctx, const char *cert_id);
    void *ctx;
} sim_prov_backend;

/* Copies b (NULL removes the backend: every request is then 500 InternalFailure).
 * The callbacks must not call back into the module. */
void sim_provision_set_backend(sim_provision *p, const sim_prov_backend *b);

/* One response to publish: topic is NUL-terminated; payload is JSON text
 * (also NUL-terminated, len without the NUL) or CBOR, as the request's
 * format; both are valid during the call. */
typedef void (*sim_prov_emit_fn)(void *ctx, const char *topic, const uint8_t *payload, size_t len);

/* Handles one request published by a connection authenticated with
 * claim_cert_id (NULL on plain TCP) and client_id (may be NULL).  Tokens that
 * have expired at now_s are expired first (see sim_provision_expire).  Emits
 * accepted or rejected on the request's topic and returns the status: 200,
 * or the statusCode of the rejected response.  why (may be NULL) receives
 * "accepted" or "errorCode: errorMessage".  A req that
 * sim_provision_parse_topic() would not give has no topic to answer on: 400,
 * nothing emitted.  Allocation failure: 500 InternalFailure (emitted when
 * possible).  emit may be NULL. */
int sim_provision_handle(sim_provision *p, const sim_prov_req *req, const char *claim_cert_id, const char *client_id,
                         const uint8_t *payload, size_t len, uint64_t now_s, sim_prov_emit_fn emit, void *ctx,
                         char *why, size_t whylen);

/* Expires the tokens whose time has come at now_s, calling forget_cert once
 * for each, oldest first; returns the next expiry time (epoch seconds) or
 * UINT64_MAX when no token is outstanding. */
uint64_t sim_provision_expire(sim_provision *p, uint64_t now_s);
/* The next expiry without expiring anything (UINT64_MAX: none). */
uint64_t sim_provision_next_expiry(const sim_provision *p);
size_t sim_provision_token_count(const sim_provision *p);

#endif
