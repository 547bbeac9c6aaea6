/* svc/svc_topic.c: see svc_topic.h. */
#include <string.h>

#include "iotc/client.h"
#include "svc/svc_topic.h"

bool iotc_svc_topic_level(const char **p, const char *end, const char **lv, size_t *lvlen)
{
    if (*p > end)
        return false;
    const char *s = *p;
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *e = slash ? slash : end;
    *lv = s;
    *lvlen = (size_t)(e - s);
    *p = e + 1; /* one past end when this was the last level */
    return true;
}

bool iotc_svc_level_is(const char *lv, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(lv, word, len) == 0;
}

int iotc_svc_topic_fit(int n, char *buf, size_t cap)
{
    if (n < 0)
        return IOTC_ERR_INTERNAL;
    if ((size_t)n >= cap) {
        if (cap)
            buf[0] = '\0';
        return IOTC_ERR_TOO_LARGE;
    }
    return n;
}
