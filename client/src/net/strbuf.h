/*
 * net/strbuf.h: text appended into a caller's fixed buffer, snprintf's way:
 * what fits is copied, everything is counted, so one pass both writes and
 * measures.  Owns nothing.  The SigV4 URL and the custom-authorizer
 * username are built with it, both needing RFC 3986 encoding.
 */
#ifndef IOTC_NET_STRBUF_H
#define IOTC_NET_STRBUF_H

#include <stddef.h>

typedef struct {
    char *buf;  /* NULL: measure only */
    size_t cap; /* bytes of buf, the terminating NUL included */
    size_t len; /* bytes the text needs so far; stops at SIZE_MAX rather than wrap */
} iotc_strbuf;

void iotc_strbuf_putn(iotc_strbuf *b, const char *s, size_t n);
void iotc_strbuf_puts(iotc_strbuf *b, const char *s);
/* `s` with RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) as they
 * are and every other byte as %XX in upper-case hex: what SigV4 applies to
 * query keys and values, and AWS to custom-authorizer username parameters. */
void iotc_strbuf_put_uri_encoded(iotc_strbuf *b, const char *s);
/* NUL-terminates; 0 when the whole text fitted, -1 when not (or no buf). */
int iotc_strbuf_finish(iotc_strbuf *b);

#endif
