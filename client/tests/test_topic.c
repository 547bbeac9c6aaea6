/*
 * Topic names and filters (MQTT 3.1.1 §4.7, MQTT 5 §4.7 and §4.8.2), filter
 * matching with AWS IoT's differences switchable, and AWS IoT's size limits
 * (../shared/reference/aws-broker.md: 256 bytes, 7 slashes; the Basic Ingest
 * prefix $aws/rules/<rule>/ and, for filters, $share/<name>/ not counted).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "iotc/topic.h"

#define S(s) s, strlen(s)

static void name_is(const char *t, size_t n, iotc_topic_status exp, int line)
{
    iotc_topic_status got = iotc_topic_name_check(t, n);
    if (got != exp) {
        print_error("name \"%.*s\": %s, expected %s\n", (int)n, t, iotc_topic_status_str(got),
                    iotc_topic_status_str(exp));
        _fail(__FILE__, line);
    }
}
#define NAME(t, exp) name_is(S(t), exp, __LINE__)

static void filter_is(const char *f, size_t n, bool share, iotc_topic_status exp, int line)
{
    iotc_topic_status got = iotc_topic_filter_check(f, n, share);
    if (got != exp) {
        print_error("filter \"%.*s\" (share %d): %s, expected %s\n", (int)n, f, share, iotc_topic_status_str(got),
                    iotc_topic_status_str(exp));
        _fail(__FILE__, line);
    }
}
#define FILTER(f, share, exp) filter_is(S(f), share, exp, __LINE__)

static void match_is(const char *f, const char *t, unsigned flags, bool exp, int line)
{
    bool got = iotc_topic_match(S(f), S(t), flags);
    if (got != exp) {
        print_error("match(\"%s\", \"%s\", flags %u) = %d, expected %d\n", f, t, flags, got, exp);
        _fail(__FILE__, line);
    }
}
#define MATCH(f, t, flags, exp) match_is(f, t, flags, exp, __LINE__)

static void limits_is(const char *t, size_t n, bool filter, const iotc_aws_topic_limits *l, iotc_topic_status exp,
                      int line)
{
    iotc_topic_status got = iotc_aws_topic_limits_check(t, n, filter, l);
    if (got != exp) {
        print_error("limits(\"%.*s\"%s, %zu bytes): %s, expected %s\n", n > 80 ? 80 : (int)n, t,
                    filter ? " as filter" : "", n, iotc_topic_status_str(got), iotc_topic_status_str(exp));
        _fail(__FILE__, line);
    }
}
#define LIMITS(t, filter, l, exp) limits_is(S(t), filter, l, exp, __LINE__)

/* ---- names --------------------------------------------------------------------------- */

static void test_name_check(void **state)
{
    (void)state;
    NAME("a/b", IOTC_TOPIC_OK);
    NAME("a", IOTC_TOPIC_OK);
    NAME("/", IOTC_TOPIC_OK);          /* §4.7.1.1: '/' may be used anywhere */
    NAME("/finance", IOTC_TOPIC_OK);
    NAME("a//b", IOTC_TOPIC_OK);
    NAME("a/", IOTC_TOPIC_OK);
    NAME(" ", IOTC_TOPIC_OK);          /* §4.7.3: spaces are allowed */
    NAME("$SYS/x", IOTC_TOPIC_OK);
    NAME("$aws/things/t/shadow/update", IOTC_TOPIC_OK);
    NAME("caf\xC3\xA9", IOTC_TOPIC_OK);
    NAME("", IOTC_TOPIC_EMPTY);        /* [MQTT-4.7.3-1] */
    /* [MQTT-3.3.2-2]: no wildcards in a Topic Name. */
    NAME("a/+", IOTC_TOPIC_WILDCARD_IN_NAME);
    NAME("#", IOTC_TOPIC_WILDCARD_IN_NAME);
    NAME("+", IOTC_TOPIC_WILDCARD_IN_NAME);
    NAME("a+b", IOTC_TOPIC_WILDCARD_IN_NAME);
    NAME("a/b#", IOTC_TOPIC_WILDCARD_IN_NAME);
    /* [MQTT-4.7.3-2] no U+0000; §1.5.4 well-formed UTF-8, no surrogates. */
    name_is("a\0b", 3, IOTC_TOPIC_BAD_UTF8, __LINE__);
    NAME("a/\xED\xA0\x80", IOTC_TOPIC_BAD_UTF8);
    NAME("\xC0\xAF", IOTC_TOPIC_BAD_UTF8);
    NAME("\xF4\x90\x80\x80", IOTC_TOPIC_BAD_UTF8);
    NAME("ab\xE2\x82", IOTC_TOPIC_BAD_UTF8);
    NAME("\xFF", IOTC_TOPIC_BAD_UTF8);
    /* Lengths are honoured: not NUL-terminated. */
    name_is("a/b+", 3, IOTC_TOPIC_OK, __LINE__);
    name_is("a/b", 0, IOTC_TOPIC_EMPTY, __LINE__);

    /* [MQTT-4.7.3-3]: at most 65535 bytes. */
    char *big = malloc(65537);
    assert_non_null(big);
    memset(big, 'a', 65536);
    big[65536] = '\0';
    name_is(big, 65535, IOTC_TOPIC_OK, __LINE__);
    name_is(big, 65536, IOTC_TOPIC_TOO_LONG, __LINE__);
    free(big);
}

/* ---- filters ---------------------------------------------------------------------------- */

static void test_filter_check(void **state)
{
    (void)state;
    static const char *const good[] = {"#", "+", "a/#", "+/+", "+/+/#", "/", "//", "a//b", "/+", "+/", "/#",
                                       "sport/tennis/player1/#", "sport/+/player1", "+/tennis/#", "$SYS/#",
                                       "a/b", "$sharex/a", "$SHARE/g/t", "x/$share"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        filter_is(S(good[i]), false, IOTC_TOPIC_OK, __LINE__);
        filter_is(S(good[i]), true, IOTC_TOPIC_OK, __LINE__);
    }
    /* §4.7.1.2: '#' alone in the last level; §4.7.1.3: '+' alone in its level. */
    static const char *const bad[] = {"a/b#", "sport/tennis#", "a/#/b", "sport/tennis/#/ranking", "#/", "#/a",
                                      "a+", "+a", "sport+", "a/+b/c", "##", "++", "a/#/", "+#"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        filter_is(S(bad[i]), false, IOTC_TOPIC_BAD_WILDCARD, __LINE__);
        filter_is(S(bad[i]), true, IOTC_TOPIC_BAD_WILDCARD, __LINE__);
    }
    FILTER("", false, IOTC_TOPIC_EMPTY);
    FILTER("", true, IOTC_TOPIC_EMPTY);
    filter_is("a\0", 2, false, IOTC_TOPIC_BAD_UTF8, __LINE__);
    FILTER("a/\xED\xBF\xBF/#", false, IOTC_TOPIC_BAD_UTF8);
    filter_is("a/#/b", 3, false, IOTC_TOPIC_OK, __LINE__); /* "a/#" */

    char *big = malloc(65537);
    assert_non_null(big);
    memset(big, 'a', 65536);
    big[65534] = '#';
    big[65533] = '/';
    filter_is(big, 65535, false, IOTC_TOPIC_OK, __LINE__);
    big[65534] = 'a';
    filter_is(big, 65536, false, IOTC_TOPIC_TOO_LONG, __LINE__);
    free(big);
}

/* MQTT 5 §4.8.2: $share/<ShareName>/<filter>; [MQTT-4.8.2-1] ShareName at least
 * one character; [MQTT-4.8.2-2] no '/', '+' or '#' in it, then '/' and a filter. */
static void test_shared_filters(void **state)
{
    (void)state;
    FILTER("$share/g/a/b", true, IOTC_TOPIC_OK);
    FILTER("$share/g/#", true, IOTC_TOPIC_OK);
    FILTER("$share/group1/+/x", true, IOTC_TOPIC_OK);
    FILTER("$share/g//", true, IOTC_TOPIC_OK);
    FILTER("$share/g/$SYS/#", true, IOTC_TOPIC_OK);
    FILTER("$share//a", true, IOTC_TOPIC_BAD_SHARE);     /* empty share name */
    FILTER("$share/g+/a", true, IOTC_TOPIC_BAD_SHARE);   /* wildcard in name */
    FILTER("$share/+/a", true, IOTC_TOPIC_BAD_SHARE);
    FILTER("$share/#/a", true, IOTC_TOPIC_BAD_SHARE);
    FILTER("$share/g#/a", true, IOTC_TOPIC_BAD_SHARE);
    FILTER("$share/g", true, IOTC_TOPIC_BAD_SHARE);      /* no filter */
    FILTER("$share/g/", true, IOTC_TOPIC_BAD_SHARE);     /* empty filter */
    FILTER("$share/", true, IOTC_TOPIC_BAD_SHARE);
    /* The filter part obeys the filter rules. */
    iotc_topic_status st = iotc_topic_filter_check(S("$share/g/a#"), true);
    assert_true(st == IOTC_TOPIC_BAD_WILDCARD || st == IOTC_TOPIC_BAD_SHARE);
    st = iotc_topic_filter_check(S("$share/g/a/#/b"), true);
    assert_true(st == IOTC_TOPIC_BAD_WILDCARD || st == IOTC_TOPIC_BAD_SHARE);
    /* Without allow_share "$share/..." is an ordinary filter. */
    FILTER("$share/g/a/b", false, IOTC_TOPIC_OK);
    FILTER("$share//a", false, IOTC_TOPIC_OK);
    FILTER("$share/g", false, IOTC_TOPIC_OK);
    FILTER("$share/g+/a", false, IOTC_TOPIC_BAD_WILDCARD);
    /* Not NUL-terminated. */
    filter_is("$share/g/a+", 10, true, IOTC_TOPIC_OK, __LINE__);

    const char *name = NULL, *rest = NULL;
    size_t nl = 0, rl = 0;
    const char *f = "$share/grp/a/b/#";
    assert_true(iotc_topic_split_share(S(f), &name, &nl, &rest, &rl));
    assert_ptr_equal(name, f + 7);
    assert_int_equal(nl, 3);
    assert_ptr_equal(rest, f + 11);
    assert_int_equal(rl, 5);
    assert_false(iotc_topic_split_share(S("a/b"), &name, &nl, &rest, &rl));
    assert_false(iotc_topic_split_share(S("$share"), &name, &nl, &rest, &rl));
    assert_false(iotc_topic_split_share(S("$SHARE/g/t"), &name, &nl, &rest, &rl));
}

/* ---- matching --------------------------------------------------------------------------- */

#define BOTH(f, t, exp)                          \
    do {                                         \
        MATCH(f, t, IOTC_MATCH_MQTT, exp);       \
        MATCH(f, t, IOTC_MATCH_AWS, exp);        \
        MATCH(f, t, 0, exp);                     \
    } while (0)

/* The examples of §4.7.1 (both versions). */
static void test_match_spec_examples(void **state)
{
    (void)state;
    /* §4.7.1.2 */
    BOTH("sport/tennis/player1/#", "sport/tennis/player1/ranking", true);
    BOTH("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true);
    MATCH("sport/tennis/player1/#", "sport/tennis/player1", IOTC_MATCH_MQTT, true);
    BOTH("sport/#", "sport/tennis/player1", true);
    MATCH("sport/#", "sport", IOTC_MATCH_MQTT, true); /* "#" includes the parent level */
    BOTH("#", "sport/tennis", true);
    BOTH("#", "/", true);
    BOTH("#", "a", true);
    /* §4.7.1.3 */
    BOTH("sport/tennis/+", "sport/tennis/player1", true);
    BOTH("sport/tennis/+", "sport/tennis/player2", true);
    BOTH("sport/tennis/+", "sport/tennis/player1/ranking", false);
    BOTH("sport/+", "sport", false);
    BOTH("sport/+", "sport/", true);
    BOTH("+/+", "/finance", true);
    BOTH("/+", "/finance", true);
    BOTH("+", "/finance", false);
    BOTH("+/tennis/#", "sport/tennis/player1", true);
    BOTH("sport/+/player1", "sport/tennis/player1", true);
    /* §4.7.3: case-sensitive; "/" is a level separator. */
    BOTH("ACCOUNTS", "Accounts", false);
    BOTH("ACCOUNTS", "ACCOUNTS", true);
    BOTH("/", "/", true);
    BOTH("+/+", "/", true);
    BOTH("+", "/", false);
    BOTH("/+", "/", true);
    BOTH("/", "a", false);
    BOTH("a", "/a", false);
    BOTH("/a", "/a", true);
    BOTH("/#", "/a", true);
    BOTH("/#", "/", true);
    BOTH("+/a", "/a", true);
    BOTH("+", "a", true);
    BOTH("+", "a/b", false);
    BOTH("a/b", "a/b/c", false);
    BOTH("a/b/c", "a/b", false);
    BOTH("a/b/", "a/b", false);
    BOTH("a/b", "a/b/", false);
    BOTH("a/+", "a/", true);
}

/* Empty levels are levels: "a//b" has three. */
static void test_match_empty_levels(void **state)
{
    (void)state;
    BOTH("a//b", "a//b", true);
    BOTH("a/+/b", "a//b", true);
    BOTH("a/b", "a//b", false);
    BOTH("a/#", "a//b", true);
    BOTH("+/+/+", "a//b", true);
    BOTH("+/+", "a//b", false);
    BOTH("a//#", "a//b", true);
    BOTH("a//+", "a//", true);
    BOTH("//", "//", true);
    BOTH("+/+/+", "//", true);
}

/* [MQTT-4.7.2-1]: "The Server MUST NOT match Topic Filters starting with a
 * wildcard character (# or +) with Topic Names beginning with a $ character". */
static void test_match_dollar(void **state)
{
    (void)state;
    MATCH("#", "$SYS/x", IOTC_MATCH_MQTT, false);
    MATCH("#", "$SYS/x", IOTC_MATCH_AWS, false);
    MATCH("#", "$SYS/x", IOTC_MATCH_DOLLAR_RULE, false);
    MATCH("#", "$SYS/x", 0, true);
    MATCH("+/x", "$SYS/x", IOTC_MATCH_MQTT, false);
    MATCH("+/x", "$SYS/x", 0, true);
    MATCH("+/monitor/Clients", "$SYS/monitor/Clients", IOTC_MATCH_MQTT, false);
    MATCH("+", "$SYS", IOTC_MATCH_MQTT, false);
    MATCH("+", "$SYS", 0, true);
    BOTH("$SYS/#", "$SYS/x", true);
    BOTH("$SYS/monitor/+", "$SYS/monitor/Clients", true);
    BOTH("$SYS/+", "$SYS/x", true);
    MATCH("$SYS/#", "$SYS", IOTC_MATCH_MQTT, true);
    /* Only a leading '$' counts. */
    BOTH("#", "a/$SYS", true);
    BOTH("+/$x", "a/$x", true);
    BOTH("a/+", "a/$x", true);
    BOTH("$aws/things/+/shadow/update", "$aws/things/t1/shadow/update", true);
}

/* AWS IoT: "a/#" does not match "a". */
static void test_match_aws_hash_parent(void **state)
{
    (void)state;
    MATCH("sport/#", "sport", IOTC_MATCH_MQTT, true);
    MATCH("sport/#", "sport", IOTC_MATCH_AWS, false);
    MATCH("sport/#", "sport", IOTC_MATCH_AWS_HASH_PARENT, false);
    MATCH("sport/tennis/player1/#", "sport/tennis/player1", IOTC_MATCH_AWS, false);
    MATCH("$SYS/#", "$SYS", IOTC_MATCH_AWS, false);
    MATCH("a/+/#", "a/b", IOTC_MATCH_MQTT, true);
    MATCH("a/+/#", "a/b", IOTC_MATCH_AWS, false);
    /* A child level, even an empty one, still matches. */
    MATCH("sport/#", "sport/", IOTC_MATCH_AWS, true);
    MATCH("sport/#", "sport/x", IOTC_MATCH_AWS, true);
    MATCH("#", "sport", IOTC_MATCH_AWS, true);
    MATCH("/#", "/", IOTC_MATCH_AWS, true);
    /* Lengths are honoured. */
    assert_true(iotc_topic_match("a/bc", 3, "a/b", 3, IOTC_MATCH_MQTT));
    assert_false(iotc_topic_match("a/b", 3, "a/bc", 4, IOTC_MATCH_MQTT));
    assert_true(iotc_topic_match("a/#xyz", 3, "a/q/r", 5, IOTC_MATCH_AWS));
}

/* ---- AWS limits ------------------------------------------------------------------------- */

static char *repeat(const char *prefix, char c, size_t n)
{
    size_t p = strlen(prefix);
    char *s = malloc(p + n + 1);
    assert_non_null(s);
    memcpy(s, prefix, p);
    memset(s + p, c, n);
    s[p + n] = '\0';
    return s;
}

static void test_aws_limits(void **state)
{
    (void)state;
    char *s;
    for (int f = 0; f < 2; f++) {
        s = repeat("", 'a', 256);
        limits_is(S(s), f, NULL, IOTC_TOPIC_OK, __LINE__);
        free(s);
        s = repeat("", 'a', 257);
        limits_is(S(s), f, NULL, IOTC_TOPIC_TOO_LONG, __LINE__);
        free(s);
        LIMITS("a/b/c/d/e/f/g/h", f, NULL, IOTC_TOPIC_OK);            /* 7 slashes */
        LIMITS("a/b/c/d/e/f/g/h/i", f, NULL, IOTC_TOPIC_TOO_MANY_SLASHES); /* 8 */
        LIMITS("///////", f, NULL, IOTC_TOPIC_OK);
        LIMITS("////////", f, NULL, IOTC_TOPIC_TOO_MANY_SLASHES);
        LIMITS("a/b/c/d/e/f/g/#", f, NULL, IOTC_TOPIC_OK);
        /* Basic Ingest: $aws/rules/<rule>/ counts toward neither limit. */
        s = repeat("$aws/rules/MyRule/", 'a', 256);
        limits_is(S(s), f, NULL, IOTC_TOPIC_OK, __LINE__);
        free(s);
        s = repeat("$aws/rules/MyRule/", 'a', 257);
        limits_is(S(s), f, NULL, IOTC_TOPIC_TOO_LONG, __LINE__);
        free(s);
        LIMITS("$aws/rules/MyRule/a/b/c/d/e/f/g/h", f, NULL, IOTC_TOPIC_OK);
        LIMITS("$aws/rules/MyRule/a/b/c/d/e/f/g/h/i", f, NULL, IOTC_TOPIC_TOO_MANY_SLASHES);
        /* Compared without case, as aws-c-mqtt does. */
        LIMITS("$AWS/RULES/MyRule/a/b/c/d/e/f/g/h", f, NULL, IOTC_TOPIC_OK);
        LIMITS("$Aws/Rules/MyRule/a/b/c/d/e/f/g/h", f, NULL, IOTC_TOPIC_OK);
        /* Not the prefix: counted in full. */
        LIMITS("$aws/rulesX/MyRule/a/b/c/d/e/f", f, NULL, IOTC_TOPIC_TOO_MANY_SLASHES);
        LIMITS("x/$aws/rules/MyRule/a/b/c/d/e", f, NULL, IOTC_TOPIC_TOO_MANY_SLASHES);
        LIMITS("$aws/things/t/shadow/name/n/get/accepted", f, NULL, IOTC_TOPIC_OK);
    }
    /* $share/<name>/ is exempt for filters only. */
    LIMITS("$share/g/a/b/c/d/e/f/g/h", true, NULL, IOTC_TOPIC_OK);
    LIMITS("$share/g/a/b/c/d/e/f/g/h/i", true, NULL, IOTC_TOPIC_TOO_MANY_SLASHES);
    LIMITS("$share/g/a/b/c/d/e/f/g/h", false, NULL, IOTC_TOPIC_TOO_MANY_SLASHES);
    s = repeat("$share/group/", 'a', 256);
    limits_is(S(s), true, NULL, IOTC_TOPIC_OK, __LINE__);
    limits_is(S(s), false, NULL, IOTC_TOPIC_TOO_LONG, __LINE__);
    free(s);
    s = repeat("$share/group/", 'a', 257);
    limits_is(S(s), true, NULL, IOTC_TOPIC_TOO_LONG, __LINE__);
    free(s);

    /* Custom limits. */
    iotc_aws_topic_limits l = {10, 2};
    LIMITS("aaaaaaaaaa", false, &l, IOTC_TOPIC_OK);
    LIMITS("aaaaaaaaaaa", false, &l, IOTC_TOPIC_TOO_LONG);
    LIMITS("a/b/c", false, &l, IOTC_TOPIC_OK);
    LIMITS("a/b/c/d", false, &l, IOTC_TOPIC_TOO_MANY_SLASHES);
    LIMITS("$aws/rules/r/a/b/c", false, &l, IOTC_TOPIC_OK);
    LIMITS("$aws/rules/r/aaaaaaaaaa", false, &l, IOTC_TOPIC_OK);
    LIMITS("$aws/rules/r/aaaaaaaaaaa", false, &l, IOTC_TOPIC_TOO_LONG);
    iotc_aws_topic_limits big = {1000, 100};
    s = repeat("", '/', 99);
    limits_is(S(s), false, &big, IOTC_TOPIC_OK, __LINE__);
    free(s);
    s = repeat("", 'a', 1000);
    limits_is(S(s), false, &big, IOTC_TOPIC_OK, __LINE__);
    free(s);
    /* Lengths are honoured. */
    limits_is("a/b/c/d/e/f/g/h/i/j", 15, false, NULL, IOTC_TOPIC_OK, __LINE__);
}

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = 0; s <= (int)IOTC_TOPIC_TOO_MANY_SLASHES; s++) {
        const char *a = iotc_topic_status_str((iotc_topic_status)s);
        assert_non_null(a);
        assert_true(a[0] != '\0');
        for (int u = 0; u < s; u++)
            assert_string_not_equal(a, iotc_topic_status_str((iotc_topic_status)u));
    }
    assert_non_null(iotc_topic_status_str((iotc_topic_status)99));
    assert_non_null(iotc_topic_status_str((iotc_topic_status)-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_check),
        cmocka_unit_test(test_filter_check),
        cmocka_unit_test(test_shared_filters),
        cmocka_unit_test(test_match_spec_examples),
        cmocka_unit_test(test_match_empty_levels),
        cmocka_unit_test(test_match_dollar),
        cmocka_unit_test(test_match_aws_hash_parent),
        cmocka_unit_test(test_aws_limits),
        cmocka_unit_test(test_status_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
