/*
 * sim_policy.h: AWS IoT policies (../shared/reference/aws-broker.md §6), pure:
 * parsing a policy document, keeping the policies attached to each principal
 * (certificate id), and deciding whether an MQTT action on a resource is
 * allowed.
 *
 * A document is IAM-style JSON: "Version" "2012-10-17" and "Statement" (one
 * object or a list) of {"Effect": "Allow"|"Deny", "Action"|"NotAction",
 * "Resource"|"NotResource", "Sid"?}.  Actions and resources are strings or
 * lists of strings.  Matching (§6.4): `*` is any run of characters, `/`
 * included, and `?` exactly one; `+` and `#` are plain characters (they are
 * not MQTT wildcards here).  Actions match case-insensitively, resources
 * case-sensitively.  Evaluation: an explicit Deny wins, then an Allow, and
 * anything not allowed is denied.
 *
 * Policy variables in resources (§6.3): ${iot:ClientId},
 * ${iot:Connection.Thing.ThingName} and ${iot:Connection.Thing.IsAttached}
 * (the thing is the principal's, and only when the client id equals its
 * name), ${iot:Certificate.Subject.X}, ${iot:Certificate.Issuer.X} (with .N
 * for the (N+1)th value) and ${iot:Certificate.SerialNumber}; ${*}, ${?},
 * ${$} and $(*), $(?), $($) stand for the literal character.  A substituted
 * value is literal text, never a wildcard.  A documented variable without a
 * value (ThingTypeName, Attributes[...], a certificate field the certificate
 * lacks, a certificate value holding * $ + ? # or over 1024 characters) stays
 * unsubstituted as AWS does, so the resource almost never matches.  A
 * variable AWS does not document (a typo such as ${iot:ClientName}) is refused
 * when the document is loaded: AWS would keep it literal and silently deny,
 * which in a simulator only hides the mistake.  Variable names are compared
 * case-insensitively, as IAM does.
 *
 * Not simulated, refused at load with that reason: "Condition" (and the
 * iot:ConnectAttributes and aws:SourceIp keys it carries), "Principal",
 * "NotPrincipal".  Policy versions and the cache delay of §6.1 are not
 * simulated either: a policy applies from the next check.
 */
#ifndef SIM_POLICY_H
#define SIM_POLICY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sim_policy sim_policy;
typedef struct sim_policy_store sim_policy_store;

/* The broker actions of §6.2 the engine checks. */
typedef enum {
    SIM_IOT_CONNECT,        /* client/<clientId> */
    SIM_IOT_PUBLISH,        /* topic/<topic> */
    SIM_IOT_SUBSCRIBE,      /* topicfilter/<filter> */
    SIM_IOT_RECEIVE,        /* topic/<topic> */
    SIM_IOT_RETAIN_PUBLISH  /* topic/<topic> */
} sim_iot_action;

const char *sim_iot_action_name(sim_iot_action a); /* "iot:Publish" */

/* AWS counts 2048 characters per document, whitespace not counted [DOC-2019]. */
#define SIM_POLICY_MAX_CHARS 2048
/* Up to 10 policies per certificate (§6.1). */
#define SIM_POLICY_MAX_ATTACHED 10
/* The policy every device the simulator creates is attached to. */
#define SIM_POLICY_ALLOW_ALL "allow-all"

/* A certificate field for ${iot:Certificate.<name>}: "Subject.CommonName",
 * "Subject.OrganizationalUnit.1" (the second value), "SerialNumber". */
typedef struct {
    const char *name;
    const char *value;
} sim_policy_kv;

/* What the variables of one check stand for. */
typedef struct {
    const char *client_id;
    const char *thing_name; /* the thing the principal is attached to, or NULL */
    const sim_policy_kv *cert;
    size_t ncert;
} sim_policy_vars;

/* The outcome of one check, and the statement that decided it. */
typedef struct {
    bool allowed;
    bool explicit_deny;  /* a Deny statement matched (else: allowed, or denied by default) */
    const char *policy;  /* the deciding policy's name; NULL when denied by default */
    int statement;       /* its index in Statement; -1 when denied by default */
    const char *sid;     /* that statement's Sid, or NULL */
} sim_policy_decision;

/* Parses one document; `name` is 1..128 of [A-Za-z0-9_+=,.@-].  NULL with
 * "KEY: reason" in err (for example "Statement[1].Resource[0]: unknown policy
 * variable ${iot:ClientName}").  The caller keeps name and json. */
sim_policy *sim_policy_parse(const char *name, const char *json, size_t len, char *err, size_t errlen);
void sim_policy_free(sim_policy *p);
const char *sim_policy_name(const sim_policy *p);
/* The document as compact JSON text (owned by p). */
const char *sim_policy_document(const sim_policy *p);

/* Decides `action` ("iot:Publish") on `arn` under the policies v[0..n). */
void sim_policy_eval(const sim_policy *const *v, size_t n, const char *action, const char *arn,
                     const sim_policy_vars *vars, sim_policy_decision *out);

/* Glob match of §6.4 (`*` any run, `?` one character); exposed for tests. */
bool sim_policy_glob(const char *pattern, const char *text, bool nocase);

/* ---- the store: named policies and their attachments to principals ---- */

/* Region and account make the ARNs (arn:aws:iot:<region>:<account>:...).
 * The store starts with the built-in SIM_POLICY_ALLOW_ALL policy. */
sim_policy_store *sim_policy_store_new(const char *region, const char *account);
void sim_policy_store_free(sim_policy_store *s);
/* Adds a parsed policy, taking it over (freed on failure too).  -1 with err
 * when the name is taken. */
int sim_policy_store_add(sim_policy_store *s, sim_policy *p, char *err, size_t errlen);
const sim_policy *sim_policy_store_get(const sim_policy_store *s, const char *name);
/* Attaches a stored policy to a principal (certificate id); attaching twice
 * is harmless.  -1 with err: no such policy, or over SIM_POLICY_MAX_ATTACHED. */
int sim_policy_store_attach(sim_policy_store *s, const char *principal, const char *policy, char *err, size_t errlen);
/* Forgets every attachment of a principal (it is then denied everything). */
void sim_policy_store_detach_all(sim_policy_store *s, const char *principal);
/* Detaches one policy from a principal (AWS DetachPolicy).  -1 with err: no
 * such policy, or it is not attached to that principal. */
int sim_policy_store_detach(sim_policy_store *s, const char *principal, const char *policy, char *err,
                            size_t errlen);
/* Puts a new document in place of a stored policy's (what AWS does when a new
 * policy version is made the default): every principal it is attached to is
 * judged by the new one from the next check.  Takes p over (freed on failure
 * too).  -1 with err: no policy of that name, or it is the built-in one. */
int sim_policy_store_replace(sim_policy_store *s, sim_policy *p, char *err, size_t errlen);
/* Deletes a policy (AWS DeletePolicy).  -1 with err: no such policy, the
 * built-in one, or still attached to a certificate (AWS refuses that too). */
int sim_policy_store_delete(sim_policy_store *s, const char *policy, char *err, size_t errlen);
/* The names of the policies attached to a principal, in attachment order:
 * up to `max` in names[] (owned by the store, valid until it changes); the
 * count attached. */
size_t sim_policy_store_attached(const sim_policy_store *s, const char *principal, const char **names, size_t max);
/* Records a certificate field for its ${iot:Certificate.<name>}; copied. */
int sim_policy_store_set_cert_var(sim_policy_store *s, const char *principal, const char *name, const char *value);

/* Decides `action` on the resource `name[0..len)` (a client id, topic or
 * filter; not NUL-terminated) for a connection of `principal`.  The ARN is
 * written to `arn` (truncated to arnlen, for the event log) when not NULL. */
void sim_policy_authorize(const sim_policy_store *s, const char *principal, const char *client_id,
                          const char *thing_name, sim_iot_action action, const char *name, size_t len,
                          sim_policy_decision *out, char *arn, size_t arnlen);

/* {"policies": [{"name", "document"}], "attachments": [{"principal", "policies": []}]}
 * as malloc'd JSON text (free() it), for the control API; NULL on failure. */
char *sim_policy_store_describe(const sim_policy_store *s);

#endif
