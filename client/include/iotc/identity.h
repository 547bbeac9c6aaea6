/*
 * iotc/identity.h: the AWS IoT fleet provisioning ("identity") client,
 * built on the client of iotc/client.h (subscriptions with their own
 * message callback, QoS 1 publishes, and timers on the service thread).
 *
 * Provisioning by claim (aws-services.md §2.3): connected with a claim
 * certificate, a device gets a certificate of its own
 * (iotc_identity_create_keys_and_certificate, or
 * iotc_identity_create_certificate_from_csr with a key that never leaves
 * it), then registers it with a provisioning template
 * (iotc_identity_register_thing, with the certificateOwnershipToken it got
 * and the template's parameters), saves the credentials, disconnects and
 * connects again with them.
 *
 * Each request is asynchronous, with a timeout and one callback, called
 * exactly once: with the accepted answer (IOTC_OK), the rejected one
 * (IOTC_ERR_REJECTED, with AWS's statusCode, errorCode and errorMessage),
 * IOTC_ERR_PROTOCOL (an answer that is not the documented JSON; the
 * result's error_message says what is wrong), IOTC_ERR_TIMEOUT,
 * IOTC_ERR_CLOSED (iotc_identity_free came first), or the error of the
 * subscription or publish the request needed.
 *
 * What it does for you (aws-services.md §2.1, §4.4):
 * - Before an operation's first request (for RegisterThing: the first with
 *   that template) it subscribes (QoS 1) to its `/accepted` and
 *   `/rejected` topics, and publishes only once both SUBACKs are in.  Those
 *   subscriptions are kept for the next requests.  A refused SUBACK fails
 *   the request with IOTC_ERR_REFUSED; the next request subscribes again.
 * - One request outstanding per operation, and per template for
 *   RegisterThing: AWS's answers carry no correlation token, so they are
 *   matched by topic alone, and a second request could not tell its answer
 *   from the first one's.  A second one is refused at the call with
 *   IOTC_ERR_BUSY.  For the same reason, any answer that arrives on those
 *   topics while a request is pending is taken as its answer: do not run
 *   two provisioning clients that share a client id's subscriptions.
 * - Only the `json` format (CBOR is not supported).
 *
 * Threads.  As in iotc/client.h: every function may be called from any
 * thread; every callback runs on the client's service thread, never inside
 * the call that caused it when that call came from another thread; the
 * blocking helpers return IOTC_ERR_BUSY on the service thread (from any
 * callback).  A callback may call the asynchronous functions here (register
 * the thing from the certificate's callback, say), and may free its own
 * identity client.
 *
 * Lifetime.  Free every identity client before its client.  Make at most
 * one per iotc_client: two would share the same topic filters, and the
 * client keeps one message callback per filter.  Its subscriptions belong
 * to the client's session: after iotc_client_disconnect the client forgets
 * them; the identity client notices when one of its requests completes with
 * IOTC_ERR_CLOSED or times out, and subscribes again at its next request.
 *
 * Ownership.  Strings passed in are copied before the call returns.  The
 * result handed to a callback, and every string it points to, is valid
 * during the callback only: copy what you keep (iotc_identity_result_copy).
 * The blocking helpers hand back such a copy, which the caller frees with
 * iotc_identity_result_free.  The private key is in that memory: the
 * library does not wipe it.
 */
#ifndef IOTC_IDENTITY_H
#define IOTC_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "iotc/client.h"
#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct iotc_identity iotc_identity;

/* Template names: 1..36 bytes of [0-9A-Za-z_-]. */
#define IOTC_IDENTITY_TEMPLATE_NAME_MAX 36

/* An identity client on `c`.  Nothing is sent until the first request.
 * IOTC_OK, IOTC_ERR_INVALID_ARG (NULL), IOTC_ERR_NOMEM. */
int iotc_identity_new(iotc_client *c, iotc_identity **out);
/* The pending requests complete with IOTC_ERR_CLOSED (on the service
 * thread: from another thread this waits for it), then the client
 * unsubscribes from every topic it subscribed to and is freed.  No callback
 * of this identity client runs after it returns.  NULL is fine. */
void iotc_identity_free(iotc_identity *id);

/* Whether `name` is a valid template name (1..36 bytes of [0-9A-Za-z_-]):
 * IOTC_OK, or IOTC_ERR_INVALID_ARG with iotc_identity_why() saying which
 * rule it broke.  For checking a configuration before provisioning starts:
 * a RegisterThing refused for its template name comes after the
 * certificate was made. */
int iotc_identity_check_template_name(const char *name);

/* Why the last call of this header on this thread failed ("" when it did
 * not): the rule a template name broke, what is wrong with a parameter. */
const char *iotc_identity_why(void);

typedef struct {
    /* IOTC_OK (accepted), IOTC_ERR_REJECTED, IOTC_ERR_PROTOCOL (malformed
     * answer), IOTC_ERR_TIMEOUT, IOTC_ERR_CLOSED, or the error of the
     * subscription (IOTC_ERR_REFUSED for a refused SUBACK) or of the publish
     * (IOTC_ERR_QUEUE_DROPPED, ...) the request needed. */
    int status;
    /* Rejected: AWS's statusCode (400, 403, 404, 429, 500...), errorCode
     * ("InvalidCertificateOwnershipToken"...) and errorMessage; "" when the
     * document lacks them.  IOTC_ERR_PROTOCOL: error_message says what is
     * wrong with the answer.  Otherwise 0 and "" (never NULL). */
    int status_code;
    const char *error_code;
    const char *error_message;
    /* CreateKeysAndCertificate and CreateCertificateFromCsr accepted: the
     * new certificate's id and PEM, and the token RegisterThing needs;
     * private_key (PEM) for CreateKeysAndCertificate only.  NULL otherwise. */
    const char *certificate_id;
    const char *certificate_pem;
    const char *private_key;
    const char *certificate_ownership_token;
    /* RegisterThing accepted: the thing's name ("" when the template has no
     * thing) and the template's DeviceConfiguration, a flat map of strings
     * (device_configuration_len pairs, in the order received).  NULL and 0
     * otherwise. */
    const char *thing_name;
    size_t device_configuration_len;
    const char *const *device_configuration_keys;
    const char *const *device_configuration_values;
    /* The accepted, rejected or malformed answer as received (not
     * NUL-terminated in a callback; NUL-terminated in a copy); NULL and 0
     * for the other statuses. */
    const char *json;
    size_t json_len;
    void *owned_; /* private: the memory of a copy */
} iotc_identity_result;

typedef void (*iotc_identity_fn)(iotc_identity *id, const iotc_identity_result *r, void *user);

/* Requests.  timeout_ms > 0 covers the whole request: subscribing if
 * needed, publishing, the answer.  `cb` is required.  Refused at the call
 * (no callback follows):
 *   IOTC_ERR_INVALID_ARG  NULL, timeout 0, an empty or non-UTF-8 CSR, a
 *                         template name outside 1..36 of [0-9A-Za-z_-], an
 *                         empty token, a parameter key NULL, empty or
 *                         given twice, a NULL value (iotc_identity_why says
 *                         which): nothing is sent;
 *   IOTC_ERR_TOO_LARGE    a request over AWS IoT's 128 KiB;
 *   IOTC_ERR_BUSY         a request of this operation (this template) is
 *                         pending, or this client has used 16 templates;
 *   IOTC_ERR_CLOSED       the identity client is being freed;
 *   what iotc_subscribe or iotc_publish refuse at their call (offline with
 *   the queue off: IOTC_ERR_QUEUE_OFF, ...) when this request needed them;
 *   IOTC_ERR_NOMEM. */
int iotc_identity_create_keys_and_certificate(iotc_identity *id, uint32_t timeout_ms, iotc_identity_fn cb,
                                              void *user);
/* `csr_pem`: a PEM certificate signing request (AWS checks it). */
int iotc_identity_create_certificate_from_csr(iotc_identity *id, const char *csr_pem, uint32_t timeout_ms,
                                              iotc_identity_fn cb, void *user);
/* `template_name`: the provisioning template; `token`: the
 * certificateOwnershipToken of a certificate request's answer (valid an
 * hour); `nparams` parameters as parallel arrays of keys and values (may be
 * NULL when nparams is 0; then no `parameters` member is sent). */
int iotc_identity_register_thing(iotc_identity *id, const char *template_name, const char *token,
                                 const char *const *param_keys, const char *const *param_values, size_t nparams,
                                 uint32_t timeout_ms, iotc_identity_fn cb, void *user);

/* A deep copy of `src` into *dst, in one allocation that
 * iotc_identity_result_free releases (json NUL-terminated).  IOTC_OK,
 * IOTC_ERR_INVALID_ARG, IOTC_ERR_NOMEM (then *dst holds only status and
 * status_code, error_code and error_message "", the rest NULL). */
int iotc_identity_result_copy(const iotc_identity_result *src, iotc_identity_result *dst);
/* Frees what a copy (or a blocking helper) put in *r and zeroes it (status
 * 0, strings NULL).  NULL, a zeroed result and one already freed are fine. */
void iotc_identity_result_free(iotc_identity_result *r);

/* Blocking helpers: the request, then a wait for its callback (the
 * request's own timeout ends the wait).  They return its status and, when
 * `out` is not NULL, always fill *out: a copy of the result (or, for a
 * request refused at the call, just that status), which the caller frees
 * with iotc_identity_result_free.  IOTC_ERR_BUSY on the service thread
 * (inside any callback). */
int iotc_identity_create_keys_and_certificate_wait(iotc_identity *id, uint32_t timeout_ms, iotc_identity_result *out);
int iotc_identity_create_certificate_from_csr_wait(iotc_identity *id, const char *csr_pem, uint32_t timeout_ms,
                                                   iotc_identity_result *out);
int iotc_identity_register_thing_wait(iotc_identity *id, const char *template_name, const char *token,
                                      const char *const *param_keys, const char *const *param_values,
                                      size_t nparams, uint32_t timeout_ms, iotc_identity_result *out);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_IDENTITY_H */
