/*
 * topic.c: topic name and filter syntax, matching, and AWS IoT's limits.
 * See iotc/topic.h for the rules and where they come from.
 */
#include <string.h>

#include "codec_internal.h"
#include "iotc/topic.h"

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7
#define RULES_PREFIX "$aws/rules/"
#define RULES_PREFIX_LEN 11

static iotc_topic_status common(const char *s, size_t len)
{
    if (len == 0)
        return IOTC_TOPIC_EMPTY;
    if (len > 65535)
        return IOTC_TOPIC_TOO_LONG;
    if (!s || !iotc_mqtt_utf8_valid((const uint8_t *)s, len, NULL))
        return IOTC_TOPIC_BAD_UTF8;
    return IOTC_TOPIC_OK;
}

iotc_topic_status iotc_topic_name_check(const char *topic, size_t len)
{
    if (len == 0)
        return IOTC_TOPIC_EMPTY;
    if (len > 65535)
        return IOTC_TOPIC_TOO_LONG;
    if (!topic)
        return IOTC_TOPIC_BAD_UTF8;
    /* One pass over the usual all-ASCII prefix checks both rules at once. */
    const uint8_t *t = (const uint8_t *)topic;
    size_t i = mq_ascii_run(t, len, true);
    if (i == len)
        return IOTC_TOPIC_OK;
    if (!iotc_mqtt_utf8_valid(t + i, len - i, NULL))
        return IOTC_TOPIC_BAD_UTF8;
    for (; i < len; i++)
        if (topic[i] == '+' || topic[i] == '#')
            return IOTC_TOPIC_WILDCARD_IN_NAME;
    return IOTC_TOPIC_OK;
}

/* Wildcards only as whole levels, '#' only as the last level. */
static iotc_topic_status wildcards(const char *f, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (f[i] != '+' && f[i] != '#')
            continue;
        bool starts = i == 0 || f[i - 1] == '/';
        bool ends = i + 1 == len || f[i + 1] == '/';
        if (!starts || !ends || (f[i] == '#' && i + 1 != len))
            return IOTC_TOPIC_BAD_WILDCARD;
    }
    return IOTC_TOPIC_OK;
}

bool iotc_topic_split_share(const char *filter, size_t len, const char **name, size_t *name_len,
                            const char **rest, size_t *rest_len)
{
    if (!filter || len < SHARE_PREFIX_LEN || memcmp(filter, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0)
        return false;
    const char *n = filter + SHARE_PREFIX_LEN;
    const char *slash = memchr(n, '/', len - SHARE_PREFIX_LEN);
    if (!slash)
        return false;
    if (name)
        *name = n;
    if (name_len)
        *name_len = (size_t)(slash - n);
    if (rest)
        *rest = slash + 1;
    if (rest_len)
        *rest_len = len - (size_t)(slash + 1 - filter);
    return true;
}

iotc_topic_status iotc_topic_filter_check(const char *filter, size_t len, bool allow_share)
{
    iotc_topic_status st = common(filter, len);
    if (st != IOTC_TOPIC_OK)
        return st;
    if (allow_share && len >= SHARE_PREFIX_LEN - 1 && memcmp(filter, SHARE_PREFIX, SHARE_PREFIX_LEN - 1) == 0 &&
        (len == SHARE_PREFIX_LEN - 1 || filter[SHARE_PREFIX_LEN - 1] == '/')) {
        /* "$share" as the first level: MQTT 5 §4.8.2 makes it a shared subscription. */
        const char *name, *rest;
        size_t nlen, rlen;
        if (!iotc_topic_split_share(filter, len, &name, &nlen, &rest, &rlen) || nlen == 0 || rlen == 0)
            return IOTC_TOPIC_BAD_SHARE;
        for (size_t i = 0; i < nlen; i++)
            if (name[i] == '+' || name[i] == '#')
                return IOTC_TOPIC_BAD_SHARE;
        return wildcards(rest, rlen);
    }
    return wildcards(filter, len);
}

bool iotc_topic_match(const char *f, size_t flen, const char *t, size_t tlen, unsigned flags)
{
    if (!f || !t || flen == 0 || tlen == 0)
        return false;
    if ((flags & IOTC_MATCH_DOLLAR_RULE) && t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return false;
    const char *fp = f, *fend = f + flen, *tp = t, *tend = t + tlen;
    bool t_more = true; /* the topic still has a level to match */
    for (;;) {
        const char *fl = memchr(fp, '/', (size_t)(fend - fp));
        if (!fl)
            fl = fend;
        size_t fn = (size_t)(fl - fp);
        if (fn == 1 && fp[0] == '#')
            /* '#' matches the remaining levels; MQTT lets that be none (the
             * parent), AWS IoT does not. */
            return t_more || !(flags & IOTC_MATCH_AWS_HASH_PARENT);
        if (!t_more)
            return false;
        const char *tl = memchr(tp, '/', (size_t)(tend - tp));
        if (!tl)
            tl = tend;
        size_t tn = (size_t)(tl - tp);
        if (!(fn == 1 && fp[0] == '+') && (fn != tn || memcmp(fp, tp, fn) != 0))
            return false;
        if (fl == fend)
            return tl == tend;
        fp = fl + 1;
        if (tl == tend)
            t_more = false;
        else
            tp = tl + 1;
    }
}

static bool prefix_nocase(const char *s, size_t len, const char *prefix, size_t plen)
{
    if (len < plen)
        return false;
    for (size_t i = 0; i < plen; i++) {
        char a = s[i], b = prefix[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

iotc_topic_status iotc_aws_topic_limits_check(const char *topic, size_t len, bool is_filter,
                                              const iotc_aws_topic_limits *limits)
{
    size_t max_bytes = limits ? limits->max_bytes : IOTC_AWS_TOPIC_MAX_BYTES;
    unsigned max_slashes = limits ? limits->max_slashes : IOTC_AWS_TOPIC_MAX_SLASHES;
    if (!topic)
        return len ? IOTC_TOPIC_BAD_UTF8 : IOTC_TOPIC_OK;
    const char *rest;
    size_t rlen;
    /* The order of aws-c-mqtt: the share prefix first, then the rules prefix. */
    if (is_filter && iotc_topic_split_share(topic, len, NULL, NULL, &rest, &rlen)) {
        topic = rest;
        len = rlen;
    }
    if (prefix_nocase(topic, len, RULES_PREFIX, RULES_PREFIX_LEN)) {
        const char *slash = memchr(topic + RULES_PREFIX_LEN, '/', len - RULES_PREFIX_LEN);
        if (slash) {
            len -= (size_t)(slash + 1 - topic);
            topic = slash + 1;
        }
    }
    if (len > max_bytes)
        return IOTC_TOPIC_TOO_LONG;
    unsigned slashes = 0;
    for (size_t i = 0; i < len; i++)
        if (topic[i] == '/' && ++slashes > max_slashes)
            return IOTC_TOPIC_TOO_MANY_SLASHES;
    return IOTC_TOPIC_OK;
}

const char *iotc_topic_status_str(iotc_topic_status s)
{
    switch (s) {
    case IOTC_TOPIC_OK: return "ok";
    case IOTC_TOPIC_EMPTY: return "topic is empty";
    case IOTC_TOPIC_BAD_UTF8: return "topic is not valid UTF-8 (or contains U+0000)";
    case IOTC_TOPIC_TOO_LONG: return "topic is too long";
    case IOTC_TOPIC_WILDCARD_IN_NAME: return "topic name contains a wildcard";
    case IOTC_TOPIC_BAD_WILDCARD: return "wildcard not alone in its level, or '#' not last";
    case IOTC_TOPIC_BAD_SHARE: return "bad shared subscription: need $share/<name>/<filter>";
    case IOTC_TOPIC_TOO_MANY_SLASHES: return "topic has too many levels";
    }
    return "unknown topic status";
}
