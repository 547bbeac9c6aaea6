/*
 * net/username.h: the MQTT CONNECT username for AWS IoT Core, built the way
 * the AWS IoT Device SDK v2 builders build it.
 *
 * Owns: appending the custom-authorizer query parameters (aws-broker.md
 * §5.3, "How the SDK v2 builds the username") and the SDK metrics suffix
 * (§5.4) to the application's own username.  AWS IoT reads the query after
 * the username's `?`:
 *
 *   <base>?x-amz-customauthorizer-name=<name>
 *         &x-amz-customauthorizer-signature=<signature>
 *         &<tokenKeyName>=<token>
 *         &SDK=libiotc&Version=<version>
 *
 * Each part is optional.  The first parameter added starts with `?`, unless
 * the base already holds a `?` (the caller wrote its own query), and every
 * later one with `&`: a second `?` makes IoT Core refuse the CONNECT
 * without calling the authorizer (§5.3, java-v2#154).
 *
 * Encoding: the authorizer name, the token key name, the token value and
 * the metrics values are percent-encoded (RFC 3986: only A-Z a-z 0-9 - . _ ~
 * stay as they are; every other byte becomes %XX), so a `+`, `&`, `=` or
 * space cannot change the query's meaning.  The signature is encoded the
 * same way unless it already contains a `%`, which marks it as encoded by
 * the caller (the SDK's rule; base64 never contains `%`).  Note: Python's
 * urllib.parse.quote, which the Python SDK uses for the signature, keeps
 * `/`; AWS decodes both forms to the same bytes.  The base username is
 * copied as given: it is the caller's, query and all.
 *
 * Metrics: `SDK=<sdk>&Version=<version>`, left out when the username would
 * already carry an `SDK` key (in the base's query, or as the token key), so
 * that a caller who writes its own metrics is not contradicted.  IoT Core
 * ignores these keys for authentication (§5.4).
 *
 * Pure: no I/O, no allocation, no global state; thread-safe.
 */
#ifndef IOTC_NET_USERNAME_H
#define IOTC_NET_USERNAME_H

#include <stdbool.h>
#include <stddef.h>

#include "iotc/error.h"

/* An MQTT UTF-8 string carries at most this many bytes (a 16-bit length). */
#define IOTC_USERNAME_MAX 65535

/* The metrics SDK name used when the params give none. */
#define IOTC_USERNAME_METRICS_SDK "libiotc"

typedef struct iotc_username_params {
    /* The application's username, copied verbatim; NULL or "": none. */
    const char *base;

    /* Custom authorizer fields (§5.3); NULL leaves a field out, "" sends
     * it empty (as the SDK does: it tests for None, not for emptiness).
     * No name means the endpoint's default authorizer; no signature means
     * an authorizer with signing disabled. */
    const char *authorizer_name;
    const char *signature;       /* base64, encoded unless it holds a '%' */
    /* The authorizer's tokenKeyName and the token: both or neither, and
     * the key not empty. */
    const char *token_key_name;
    const char *token_value;

    /* Append SDK=<metrics_sdk>&Version=<metrics_version> (§5.4). */
    bool metrics;
    const char *metrics_sdk;     /* NULL: IOTC_USERNAME_METRICS_SDK */
    const char *metrics_version; /* required when metrics is true */
} iotc_username_params;

/* Writes the username for `p` into `out` (`cap` bytes), NUL-terminated.
 * `needed`, if not NULL, receives the size the username takes, NUL
 * included.  The caller keeps every string in `p`; nothing is retained.
 *
 * Returns:
 *  - IOTC_OK: done.  When nothing applies (no base, no authorizer field, no
 *    metrics) the username is "" and *needed is 1: the caller then sends
 *    no username at all (the CONNECT's username flag off).
 *  - IOTC_ERR_TOO_LARGE with *needed > cap: `out` is too small; retry with
 *    *needed bytes.  `out` holds "" (never a truncated username) if cap > 0.
 *  - IOTC_ERR_TOO_LARGE with *needed == 0: the username would be over
 *    IOTC_USERNAME_MAX bytes, which no buffer can fix.
 *  - IOTC_ERR_INVALID_ARG: `p` or `out` NULL, a token value without a key
 *    name or a key name without a value, an empty key name, or metrics
 *    without a version.  *needed is 0. */
iotc_err iotc_username_build(const iotc_username_params *p, char *out, size_t cap,
                             size_t *needed);

#endif /* IOTC_NET_USERNAME_H */
