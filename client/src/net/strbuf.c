/* net/strbuf.c: see strbuf.h. */
#include "net/strbuf.h"

#include <stdint.h>
#include <string.h>

void iotc_strbuf_putn(iotc_strbuf *b, const char *s, size_t n)
{
    if (b->buf != NULL && b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->buf + b->len, s, n < room ? n : room);
    }
    b->len = n > SIZE_MAX - b->len ? SIZE_MAX : b->len + n;
}

void iotc_strbuf_puts(iotc_strbuf *b, const char *s)
{
    iotc_strbuf_putn(b, s, strlen(s));
}

/* RFC 3986 §2.3, spelled out rather than isalnum(), which follows the
 * locale. */
static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

void iotc_strbuf_put_uri_encoded(iotc_strbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (unreserved(*p)) {
            iotc_strbuf_putn(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 0x0f]};
            iotc_strbuf_putn(b, e, sizeof e);
        }
    }
}

int iotc_strbuf_finish(iotc_strbuf *b)
{
    if (b->buf == NULL || b->len >= b->cap)
        return -1;
    b->buf[b->len] = '\0';
    return 0;
}
