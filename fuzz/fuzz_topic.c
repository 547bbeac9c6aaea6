/*
 * fuzz/fuzz_topic.c: topic names, filters, matching and AWS IoT's limits.
 *
 * Input layout (see fuzz/README.md): a filter, a NUL byte, a topic.  Without
 * a NUL the whole input is both the filter and the topic.  (A filter with a
 * NUL is invalid anyway; the topic side may still carry them.)  Both are
 * copied into heap blocks of their exact size, so a read past the end of
 * either is caught.
 *
 * The library's answers are checked against simple independent references
 * written here: a strict UTF-8 validator, syntax checks of names, filters and
 * shared subscriptions, a level-by-level matcher, and the AWS IoT size rule
 * with its prefix exemptions.  Plus invariants: nothing invalid matches; a
 * valid name used as a filter matches itself; '#' matches every valid topic
 * (but '$' topics under the '$' rule); the AWS and '$' switches only ever
 * remove matches; `t/#` matches `t` only without the AWS switch; a filter of
 * '+' in every level of `t` matches it.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"
#include "iotc/topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static void fail(int line, const char *what, const char *f, size_t flen, const char *t, size_t tlen)
{
    fprintf(stderr, "fuzz_topic.c:%d: check failed: %s\n  filter [%zu] \"%.*s\"\n  topic  [%zu] \"%.*s\"\n", line,
            what, flen, (int)(flen > 300 ? 300 : flen), f, tlen, (int)(tlen > 300 ? 300 : tlen), t);
    abort();
}

#define CHECK(cond)                                   \
    do {                                              \
        if (!(cond))                                  \
            fail(__LINE__, #cond, f, flen, t, tlen);  \
    } while (0)

/* ---- references ----------------------------------------------------------- */

/* Well-formed UTF-8 (no overlongs, nothing past U+10FFFF), no U+0000, no surrogates. */
static bool ref_utf8(const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            uint8_t cc = s[i + j];
            if ((cc & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return false;
        i += k + 1;
    }
    return true;
}

static bool has_wildcard(const char *s, size_t n)
{
    return memchr(s, '+', n) != NULL || memchr(s, '#', n) != NULL;
}

static bool starts_with(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    return n >= pl && memcmp(s, prefix, pl) == 0;
}

static bool starts_with_nocase(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (n < pl)
        return false;
    for (size_t i = 0; i < pl; i++) {
        char a = s[i], b = prefix[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

static size_t count_char(const char *s, size_t n, char ch)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == ch;
    return k;
}

static bool ref_name_ok(const char *s, size_t n)
{
    return n >= 1 && n <= 65535 && ref_utf8(s, n) && !has_wildcard(s, n);
}

/* Wildcards only as whole levels, '#' only in the last one. */
static bool ref_wildcards_ok(const char *s, size_t n)
{
    size_t start = 0;
    for (;;) {
        const char *slash = memchr(s + start, '/', n - start);
        size_t end = slash ? (size_t)(slash - s) : n;
        size_t ll = end - start;
        if (has_wildcard(s + start, ll)) {
            if (ll != 1)
                return false;
            if (s[start] == '#' && slash)
                return false;
        }
        if (!slash)
            return true;
        start = end + 1;
    }
}

static bool ref_filter_ok(const char *s, size_t n)
{
    return n >= 1 && n <= 65535 && ref_utf8(s, n) && ref_wildcards_ok(s, n);
}

/*
 * With allow_share.  *decided is false where the rules leave room for choice
 * (the bare word "$share", share names over AWS's 128 bytes, a filter part
 * that is itself a shared subscription); the result then means nothing.
 */
static bool ref_share_filter_ok(const char *s, size_t n, bool *decided)
{
    *decided = true;
    if (!starts_with(s, n, "$share/")) {
        if (n == 6 && starts_with(s, n, "$share"))
            *decided = false;
        return ref_filter_ok(s, n);
    }
    if (!ref_utf8(s, n) || n > 65535)
        return false;
    const char *name = s + 7;
    const char *slash = memchr(name, '/', n - 7);
    if (!slash)
        return false;
    size_t name_len = (size_t)(slash - name);
    const char *rest = slash + 1;
    size_t rest_len = n - 7 - name_len - 1;
    if (name_len == 0 || has_wildcard(name, name_len))
        return false;
    if (name_len > 128 || starts_with(rest, rest_len, "$share/"))
        *decided = false;
    return ref_filter_ok(rest, rest_len);
}

static size_t level_len(const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    return slash ? (size_t)(slash - s) : n;
}

/* `more`: whether a level is left (an empty string still has one level). */
static bool ref_match_levels(const char *f, size_t fn, bool fmore, const char *t, size_t tn, bool tmore,
                             bool hash_parent)
{
    while (fmore) {
        size_t fl = level_len(f, fn);
        if (fl == 1 && f[0] == '#')
            return hash_parent ? tmore : true;
        if (!tmore)
            return false;
        size_t tl = level_len(t, tn);
        if (!(fl == 1 && f[0] == '+') && !(fl == tl && memcmp(f, t, fl) == 0))
            return false;
        fmore = fl < fn;
        tmore = tl < tn;
        f += fl + (fmore ? 1 : 0);
        fn -= fl + (fmore ? 1 : 0);
        t += tl + (tmore ? 1 : 0);
        tn -= tl + (tmore ? 1 : 0);
    }
    return !tmore;
}

static bool ref_match(const char *f, size_t fn, const char *t, size_t tn, unsigned flags)
{
    if ((flags & IOTC_MATCH_DOLLAR_RULE) && tn > 0 && t[0] == '$' && fn > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    return ref_match_levels(f, fn, true, t, tn, true, (flags & IOTC_MATCH_AWS_HASH_PARENT) != 0);
}

/*
 * Where AWS IoT starts counting: after `$share/<name>/` (filters) and then
 * `$aws/rules/<rule>/` (any case).  False where that is open to reading
 * (empty names, a prefix without its closing '/', `$share/` in a name).
 */
static bool ref_aws_counted_from(const char *s, size_t n, bool is_filter, size_t *from)
{
    size_t off = 0;
    if (starts_with_nocase(s, n, "$share/")) {
        if (!is_filter || !starts_with(s, n, "$share/"))
            return false;
        const char *slash = memchr(s + 7, '/', n - 7);
        if (!slash || slash == s + 7)
            return false;
        off = (size_t)(slash - s) + 1;
    }
    if (starts_with_nocase(s + off, n - off, "$aws/rules/")) {
        size_t r = off + 11;
        const char *slash = memchr(s + r, '/', n - r);
        if (!slash || slash == s + r)
            return false;
        off = (size_t)(slash - s) + 1;
    }
    *from = off;
    return true;
}

/* ---- checks ------------------------------------------------------------------- */

static void check_utf8(const char *f, size_t flen, const char *t, size_t tlen, const char *s, size_t n)
{
    size_t bad = (size_t)-1;
    bool ok = iotc_mqtt_utf8_valid((const uint8_t *)s, n, &bad);
    CHECK(ok == ref_utf8(s, n));
    if (!ok)
        CHECK(bad < n);
}

static void check_name(const char *f, size_t flen, const char *t, size_t tlen, const char *s, size_t n)
{
    iotc_topic_status st = iotc_topic_name_check(s, n);
    CHECK(iotc_topic_status_str(st) != NULL);
    CHECK((st == IOTC_TOPIC_OK) == ref_name_ok(s, n));
    if (n == 0)
        CHECK(st == IOTC_TOPIC_EMPTY);
    else if (n <= 65535 && ref_utf8(s, n) && has_wildcard(s, n))
        CHECK(st == IOTC_TOPIC_WILDCARD_IN_NAME);
    else if (n <= 65535 && !ref_utf8(s, n) && !has_wildcard(s, n))
        CHECK(st == IOTC_TOPIC_BAD_UTF8);
}

static void check_filter(const char *f, size_t flen, const char *t, size_t tlen, const char *s, size_t n)
{
    iotc_topic_status st = iotc_topic_filter_check(s, n, false);
    CHECK(iotc_topic_status_str(st) != NULL);
    CHECK((st == IOTC_TOPIC_OK) == ref_filter_ok(s, n));
    if (n == 0)
        CHECK(st == IOTC_TOPIC_EMPTY);
    else if (n <= 65535 && ref_utf8(s, n) && !ref_wildcards_ok(s, n))
        CHECK(st == IOTC_TOPIC_BAD_WILDCARD);
    /* A valid name is a valid filter. */
    if (ref_name_ok(s, n))
        CHECK(st == IOTC_TOPIC_OK);

    bool decided;
    bool ref = ref_share_filter_ok(s, n, &decided);
    iotc_topic_status sst = iotc_topic_filter_check(s, n, true);
    CHECK(iotc_topic_status_str(sst) != NULL);
    if (decided)
        CHECK((sst == IOTC_TOPIC_OK) == ref);
    if (!starts_with(s, n, "$share"))
        CHECK(sst == st);

    const char *name = NULL, *rest = NULL;
    size_t name_len = (size_t)-1, rest_len = (size_t)-1;
    bool split = iotc_topic_split_share(s, n, &name, &name_len, &rest, &rest_len);
    if (!starts_with(s, n, "$share/"))
        CHECK(!split);
    if (split) {
        CHECK(name == s + 7);
        CHECK(name_len + rest_len + 8 == n);
        CHECK(rest == name + name_len + 1 && name[name_len] == '/');
    }
    if (sst == IOTC_TOPIC_OK && starts_with(s, n, "$share/")) {
        CHECK(split);
        CHECK(name_len >= 1 && !has_wildcard(name, name_len));
        CHECK(iotc_topic_filter_check(rest, rest_len, false) == IOTC_TOPIC_OK);
    }
}

static void check_aws_limits(const char *f, size_t flen, const char *t, size_t tlen, const char *s, size_t n,
                             bool is_filter)
{
    iotc_aws_topic_limits defaults = {IOTC_AWS_TOPIC_MAX_BYTES, IOTC_AWS_TOPIC_MAX_SLASHES};
    /* Limits taken from the input itself, to reach the edges. */
    iotc_aws_topic_limits tight = {n > 0 ? n - 1 : 0, (unsigned)(count_char(s, n, '/') / 2)};
    iotc_aws_topic_limits exact = {n, (unsigned)count_char(s, n, '/')};
    const iotc_aws_topic_limits *all[3] = {&defaults, &tight, &exact};

    iotc_topic_status dflt = iotc_aws_topic_limits_check(s, n, is_filter, NULL);
    CHECK(dflt == iotc_aws_topic_limits_check(s, n, is_filter, &defaults));

    size_t from = 0;
    bool decided = ref_aws_counted_from(s, n, is_filter, &from);
    for (size_t i = 0; i < 3; i++) {
        const iotc_aws_topic_limits *lim = all[i];
        iotc_topic_status st = iotc_aws_topic_limits_check(s, n, is_filter, lim);
        CHECK(st == IOTC_TOPIC_OK || st == IOTC_TOPIC_TOO_LONG || st == IOTC_TOPIC_TOO_MANY_SLASHES);
        size_t slashes = count_char(s, n, '/');
        /* Exemptions only ever take away from what is counted. */
        if (n <= lim->max_bytes && slashes <= lim->max_slashes)
            CHECK(st == IOTC_TOPIC_OK);
        if (st == IOTC_TOPIC_TOO_LONG)
            CHECK(n > lim->max_bytes);
        if (st == IOTC_TOPIC_TOO_MANY_SLASHES)
            CHECK(slashes > lim->max_slashes);
        if (decided) {
            size_t cn = n - from, cs = count_char(s + from, n - from, '/');
            bool long_ = cn > lim->max_bytes, many = cs > lim->max_slashes;
            if (!long_ && !many)
                CHECK(st == IOTC_TOPIC_OK);
            else if (long_ && !many)
                CHECK(st == IOTC_TOPIC_TOO_LONG);
            else if (!long_ && many)
                CHECK(st == IOTC_TOPIC_TOO_MANY_SLASHES);
            else
                CHECK(st != IOTC_TOPIC_OK);
        }
    }
}

static void check_match(const char *f, size_t flen, const char *t, size_t tlen)
{
    bool fvalid = ref_filter_ok(f, flen), tvalid = ref_name_ok(t, tlen);
    bool m[4];
    for (unsigned fl = 0; fl < 4; fl++) {
        /* iotc_topic_match's contract (topic.h) covers checked inputs only:
         * on others it must not crash or read out of bounds (ASan watches),
         * but its answer is unspecified. */
        m[fl] = iotc_topic_match(f, flen, t, tlen, fl);
        if (fvalid && tvalid)
            CHECK(m[fl] == ref_match(f, flen, t, tlen, fl));
    }
    if (!fvalid || !tvalid)
        return;
    /* The AWS and '$' switches only remove matches. */
    for (unsigned fl = 0; fl < 4; fl++) {
        if (m[fl | IOTC_MATCH_AWS_HASH_PARENT])
            CHECK(m[fl]);
        if (m[fl | IOTC_MATCH_DOLLAR_RULE])
            CHECK(m[fl]);
    }
    CHECK(m[IOTC_MATCH_MQTT] == iotc_topic_match(f, flen, t, tlen, IOTC_MATCH_MQTT));
    CHECK(m[IOTC_MATCH_AWS] == iotc_topic_match(f, flen, t, tlen, IOTC_MATCH_AWS));
}

/* Matches every valid topic name must have. */
static void check_name_matches(const char *f, size_t flen, const char *t, size_t tlen, const char *s, size_t n)
{
    if (!ref_name_ok(s, n))
        return;
    bool dollar = s[0] == '$';
    for (unsigned fl = 0; fl < 4; fl++) {
        bool drule = (fl & IOTC_MATCH_DOLLAR_RULE) != 0;
        /* Itself, as a filter. */
        CHECK(iotc_topic_match(s, n, s, n, fl));
        /* '#', except '$' topics under the '$' rule. */
        CHECK(iotc_topic_match("#", 1, s, n, fl) == !(drule && dollar));
    }
    CHECK(iotc_topic_match("#", 1, s, n, IOTC_MATCH_MQTT) == !dollar);

    if (n + 2 <= 65535) {
        /* `s/#` matches s itself only without the AWS switch. */
        char *hash = malloc(n + 2);
        if (!hash)
            abort();
        memcpy(hash, s, n);
        hash[n] = '/';
        hash[n + 1] = '#';
        for (unsigned fl = 0; fl < 4; fl++)
            CHECK(iotc_topic_match(hash, n + 2, s, n, fl) == !(fl & IOTC_MATCH_AWS_HASH_PARENT));
        free(hash);
    }

    /* '+' in place of every level. */
    size_t levels = count_char(s, n, '/') + 1;
    size_t plen = 2 * levels - 1;
    if (plen <= 65535) {
        char *plus = malloc(plen);
        if (!plus)
            abort();
        for (size_t i = 0; i < plen; i++)
            plus[i] = (i % 2) ? '/' : '+';
        for (unsigned fl = 0; fl < 4; fl++)
            CHECK(iotc_topic_match(plus, plen, s, n, fl) == !((fl & IOTC_MATCH_DOLLAR_RULE) && dollar));
        free(plus);
    }
}

static char *copy_exact(const uint8_t *p, size_t n)
{
    char *c = calloc(n ? n : 1, 1);
    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    const uint8_t *tsrc = nul ? nul + 1 : data;
    size_t tlen = nul ? size - flen - 1 : size;
    char *f = copy_exact(data, flen);
    char *t = copy_exact(tsrc, tlen);

    check_utf8(f, flen, t, tlen, f, flen);
    check_utf8(f, flen, t, tlen, t, tlen);
    check_name(f, flen, t, tlen, t, tlen);
    check_name(f, flen, t, tlen, f, flen);
    check_filter(f, flen, t, tlen, f, flen);
    check_filter(f, flen, t, tlen, t, tlen);
    check_match(f, flen, t, tlen);
    check_name_matches(f, flen, t, tlen, t, tlen);
    check_name_matches(f, flen, t, tlen, f, flen);
    check_aws_limits(f, flen, t, tlen, t, tlen, false);
    check_aws_limits(f, flen, t, tlen, f, flen, true);
    check_aws_limits(f, flen, t, tlen, t, tlen, true);
    check_aws_limits(f, flen, t, tlen, f, flen, false);

    free(f);
    free(t);
    return 0;
}
