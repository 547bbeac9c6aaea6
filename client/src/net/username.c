/*
 * net/username.c: the AWS IoT CONNECT username (see username.h).
 *
 * One pass through a counting writer (net/strbuf.h): the size needed is
 * known even when `out` is too small, and a too-small buffer is never left
 * holding part of a username.
 */
#include "net/username.h"
#include "net/strbuf.h"

#include <string.h>

/* Whether the query of `username` (after its first '?') has the key `key`. */
static int query_has_key(const char *username, const char *key)
{
    const char *q = username ? strchr(username, '?') : NULL;
    if (q == NULL)
        return 0;
    size_t kl = strlen(key);
    for (const char *p = q + 1;;) {
        const char *end = strchr(p, '&');
        size_t pl = end ? (size_t)(end - p) : strlen(p);
        if (pl >= kl && memcmp(p, key, kl) == 0 && (pl == kl || p[kl] == '='))
            return 1;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

/* '?' for the first parameter, '&' once the username has a query.  The
 * writer may not hold the text (too small a buffer), so the state is kept
 * here rather than read back. */
static void separator(iotc_strbuf *w, int *has_query)
{
    iotc_strbuf_putn(w, *has_query ? "&" : "?", 1);
    *has_query = 1;
}

iotc_err iotc_username_build(const iotc_username_params *p, char *out, size_t cap,
                             size_t *needed)
{
    if (needed != NULL)
        *needed = 0;
    if (p == NULL || out == NULL)
        return IOTC_ERR_INVALID_ARG;
    if ((p->token_key_name == NULL) != (p->token_value == NULL) ||
        (p->token_key_name != NULL && p->token_key_name[0] == '\0') ||
        (p->metrics && p->metrics_version == NULL))
        return IOTC_ERR_INVALID_ARG;

    iotc_strbuf w = {out, cap, 0};
    int has_query = 0;
    if (p->base != NULL) {
        iotc_strbuf_puts(&w, p->base);
        has_query = strchr(p->base, '?') != NULL;
    }
    if (p->authorizer_name != NULL) {
        separator(&w, &has_query);
        iotc_strbuf_puts(&w, "x-amz-customauthorizer-name=");
        iotc_strbuf_put_uri_encoded(&w, p->authorizer_name);
    }
    if (p->signature != NULL) {
        separator(&w, &has_query);
        iotc_strbuf_puts(&w, "x-amz-customauthorizer-signature=");
        if (strchr(p->signature, '%') != NULL)
            iotc_strbuf_puts(&w, p->signature);
        else
            iotc_strbuf_put_uri_encoded(&w, p->signature);
    }
    if (p->token_key_name != NULL) {
        separator(&w, &has_query);
        iotc_strbuf_put_uri_encoded(&w, p->token_key_name);
        iotc_strbuf_puts(&w, "=");
        iotc_strbuf_put_uri_encoded(&w, p->token_value);
    }
    /* "SDK" encodes to itself, so comparing the raw key name is exact. */
    if (p->metrics && !query_has_key(p->base, "SDK") &&
        (p->token_key_name == NULL || strcmp(p->token_key_name, "SDK") != 0)) {
        separator(&w, &has_query);
        iotc_strbuf_puts(&w, "SDK=");
        iotc_strbuf_put_uri_encoded(&w, p->metrics_sdk != NULL ? p->metrics_sdk : IOTC_USERNAME_METRICS_SDK);
        iotc_strbuf_puts(&w, "&Version=");
        iotc_strbuf_put_uri_encoded(&w, p->metrics_version);
    }

    if (w.len > IOTC_USERNAME_MAX) {
        if (cap > 0)
            out[0] = '\0';
        return IOTC_ERR_TOO_LARGE;
    }
    if (needed != NULL)
        *needed = w.len + 1;
    if (w.len + 1 > cap) {
        if (cap > 0)
            out[0] = '\0';
        return IOTC_ERR_TOO_LARGE;
    }
    out[w.len] = '\0';
    return IOTC_OK;
}
