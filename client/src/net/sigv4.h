/*
 * net/sigv4.h: the SigV4 presigned URL for MQTT over WebSocket to AWS IoT
 * Core, and the AWS credential provider chain that feeds it.
 *
 * Why it exists: `iotc_websockets_with_default_aws_signing` connects with
 * `wss://<endpoint>/mqtt?<SigV4 query>`.  Browsers cannot set headers, so
 * AWS IoT takes the signature in the query string (aws-broker.md §5.2).
 * The URL produced here is byte for byte the one aws-c-auth (the signer of
 * the CRT-based IoT SDKs, python3-awscrt) produces with service
 * `iotdevicegateway`, signature type "query params" and
 * `omit_session_token`: the tests compare against awscrt live.
 *
 * Pure computation plus file and environment reads; never prints, never
 * aborts, no global state.  Thread-safe except that
 * iotc_aws_credentials_resolve() reads the environment (getenv), which is
 * unsafe against a concurrent setenv in another thread.
 */
#ifndef IOTC_NET_SIGV4_H
#define IOTC_NET_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "iotc/error.h"

/* libwebsockets 4.1.6 silently corrupts a client request whose path (with
 * its query) is longer than this (libwebsockets-4.1.6.md §0.6), which a long
 * session token easily reaches; we refuse instead. */
#define IOTC_SIGV4_MAX_PATH 2032

/* Field sizes, NUL included.  AWS access key ids are 16-128 characters,
 * secrets 40; STS/SSO session tokens are typically 400-2000 characters but
 * AWS documents no ceiling, so 4 KiB leaves room (a URL with a token that
 * long would be over IOTC_SIGV4_MAX_PATH anyway). */
#define IOTC_AWS_KEY_ID_MAX 129
#define IOTC_AWS_SECRET_MAX 129
#define IOTC_AWS_TOKEN_MAX 4097

/* Where resolved credentials came from. */
typedef enum iotc_aws_cred_source {
    IOTC_AWS_CRED_NONE = 0,
    IOTC_AWS_CRED_EXPLICIT,
    IOTC_AWS_CRED_ENV,
    IOTC_AWS_CRED_FILE
} iotc_aws_cred_source;

typedef struct iotc_aws_credentials {
    char access_key_id[IOTC_AWS_KEY_ID_MAX];
    char secret_access_key[IOTC_AWS_SECRET_MAX];
    char session_token[IOTC_AWS_TOKEN_MAX]; /* "" for long-term keys */
    iotc_aws_cred_source source;            /* set by resolve; ignored on input */
} iotc_aws_credentials;

typedef struct iotc_sigv4_params {
    const char *endpoint;          /* host name, e.g. "abc-ats.iot.us-east-1.amazonaws.com" */
    uint16_t port;                 /* 0 or 443: none in the URL or the signed host */
    const char *region;            /* e.g. "us-east-1" */
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;     /* NULL or "" for none; appended unsigned */
    time_t now;                    /* signing time, seconds since the epoch (UTC) */
} iotc_sigv4_params;

/*
 * Writes the presigned URL into `out` (NUL-terminated):
 *
 *   wss://<host>/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256
 *     &X-Amz-Credential=<AKID>%2F<YYYYMMDD>%2F<region>%2Fiotdevicegateway%2Faws4_request
 *     &X-Amz-Date=<YYYYMMDDTHHMMSSZ>&X-Amz-SignedHeaders=host
 *     [&X-Amz-Security-Token=<percent-encoded token>]&X-Amz-Signature=<64 hex>
 *
 * The token is NOT signed (AWS IoT does not sign it; the SDKs set
 * omit_session_token) but sits before X-Amz-Signature, in sorted order,
 * exactly where aws-c-auth puts it.  Query order does not matter to the
 * server; we follow awscrt so the URLs compare equal.
 *
 * Port: <host> is the endpoint, plus ":<port>" when port is neither 0 nor
 * 443, both in the URL and in the signed `host` header (what the JS v1 SDK
 * does and what RFC 7230 says a client sends as Host).  The caller must send
 * exactly that string as the Host header (lws: info.host), or the signature
 * will not verify.
 *
 * *needed (if not NULL) receives strlen(url) + 1 whenever the URL could be
 * computed.  With out == NULL and cap == 0 this only measures.
 *
 * Returns IOTC_OK; IOTC_ERR_INVALID_ARG (p NULL, a missing or malformed
 * field, a time that is not representable as a year 1970-9999, or `cap` too
 * small: *needed then says how much); IOTC_ERR_TOO_LARGE (path plus query
 * over IOTC_SIGV4_MAX_PATH bytes); IOTC_ERR_INTERNAL (OpenSSL failed).
 */
int iotc_sigv4_presign_mqtt(const iotc_sigv4_params *p, char *out, size_t cap, size_t *needed);

/*
 * The SigV4 signing key: HMAC chain "AWS4"+secret -> date (YYYYMMDD) ->
 * region -> service -> "aws4_request".  Exposed so it can be checked
 * against AWS's documented example.  IOTC_OK, IOTC_ERR_INVALID_ARG (a NULL
 * argument or a secret over IOTC_AWS_SECRET_MAX - 1), IOTC_ERR_INTERNAL.
 */
int iotc_sigv4_signing_key(const char *secret, const char *date, const char *region,
                           const char *service, unsigned char key[32]);

/*
 * Resolves AWS credentials the way the SDKs' default chain does for the
 * sources libiotc supports, first match wins:
 *   1. `explicit_or_null`, when it is not NULL and has an access key id or a
 *      secret (both empty means "not given");
 *   2. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *   3. the shared credentials file, $AWS_SHARED_CREDENTIALS_FILE (a leading
 *      "~/" is $HOME) or $HOME/.aws/credentials, section [$AWS_PROFILE] or
 *      [default]; keys aws_access_key_id, aws_secret_access_key,
 *      aws_session_token (key names case-insensitive, '#' and ';' comments).
 * A source that has one of the two keys but not the other is an error, not
 * a reason to go on: a half-configured source is a mistake to report.
 *
 * Copies into `*out` (out->source says which source).  Returns IOTC_OK,
 * IOTC_ERR_INVALID_ARG (out NULL), or IOTC_ERR_CREDENTIALS with `why` (if
 * not NULL) naming the problem: nothing found (listing what was tried), a
 * missing key, a value too long, an unreadable file, a profile not in the
 * file.  On failure *out is zeroed.  `why` never contains a secret.
 */
int iotc_aws_credentials_resolve(const iotc_aws_credentials *explicit_or_null,
                                 iotc_aws_credentials *out, char *why, size_t whylen);

#endif /* IOTC_NET_SIGV4_H */
