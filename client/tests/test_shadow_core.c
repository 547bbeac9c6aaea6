/*
 * The Device Shadow client's protocol core (svc/shadow_core.h), on a virtual
 * clock: topics and names at their limits, tokens, payloads, matching
 * responses in a broadcast world (other clients' answers, answers without a
 * token, second answers), deadlines, the pending bound and version tracking
 * (aws-services.md §1 and §4).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "svc/shadow_core.h"

static const uint8_t R0[IOTC_SHADOW_RANDOM_BYTES];

static iotc_shadow_core *mk(const char *thing, const char *name, size_t max)
{
    iotc_shadow_core *sc = NULL;
    const char *why = NULL;
    assert_int_equal(iotc_shadow_core_new(thing, name, max, &sc, &why), IOTC_OK);
    assert_non_null(sc);
    return sc;
}

static int begin(iotc_shadow_core *sc, iotc_shadow_op op, const char *json, uint64_t now, uint32_t timeout,
                 void *user, iotc_shadow_request *rq)
{
    const char *why = NULL;
    int rc = iotc_shadow_core_begin(sc, op, json, json ? strlen(json) : 0, R0, now, timeout, user, rq, &why);
    assert_non_null(why);
    if (rc != IOTC_OK) {
        assert_true(strlen(why) > 0);
        assert_null(rq->payload);
    }
    return rc;
}

/* A begin that must succeed; the payload is not needed. */
static void begin_ok(iotc_shadow_core *sc, iotc_shadow_op op, uint64_t now, uint32_t timeout, void *user,
                     char token[IOTC_SHADOW_TOKEN_MAX + 1])
{
    iotc_shadow_request rq;
    assert_int_equal(begin(sc, op, op == IOTC_SHADOW_OP_UPDATE ? "{\"state\":{}}" : NULL, now, timeout, user, &rq),
                     IOTC_OK);
    strcpy(token, rq.token);
    free(rq.payload);
}

static void feed(iotc_shadow_core *sc, const char *topic, const char *payload, iotc_shadow_event *ev)
{
    iotc_shadow_core_input(sc, topic, strlen(topic), (const uint8_t *)payload, payload ? strlen(payload) : 0, ev);
}

static const char *topic_of(iotc_shadow_core *sc, iotc_shadow_op op, iotc_shadow_sfx sfx)
{
    const char *t = iotc_shadow_core_topic(sc, op, sfx);
    assert_non_null(t);
    return t;
}

/* Feeds `payload` on (op, sfx) and returns the event type (the event is cleared). */
static iotc_shadow_ev_type feed_t(iotc_shadow_core *sc, iotc_shadow_op op, iotc_shadow_sfx sfx, const char *payload,
                                  iotc_shadow_ignore *why)
{
    iotc_shadow_event ev;
    feed(sc, topic_of(sc, op, sfx), payload, &ev);
    iotc_shadow_ev_type t = ev.type;
    if (why)
        *why = ev.ignored;
    iotc_shadow_event_clear(&ev);
    return t;
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ---- names and topics -------------------------------------------------------------- */

static void test_op_names(void **state)
{
    (void)state;
    assert_string_equal(iotc_shadow_op_name(IOTC_SHADOW_OP_GET), "get");
    assert_string_equal(iotc_shadow_op_name(IOTC_SHADOW_OP_UPDATE), "update");
    assert_string_equal(iotc_shadow_op_name(IOTC_SHADOW_OP_DELETE), "delete");
    assert_string_equal(iotc_shadow_op_name((iotc_shadow_op)7), "?");
}

static void test_thing_name_limits(void **state)
{
    (void)state;
    const char *why = NULL;
    char *s128 = repeat('a', 128), *s129 = repeat('a', 129);
    assert_int_equal(iotc_shadow_check_thing("a", 1, &why), IOTC_OK);
    assert_string_equal(why, "");
    assert_int_equal(iotc_shadow_check_thing(s128, 128, &why), IOTC_OK);
    assert_int_equal(iotc_shadow_check_thing(s129, 129, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "128"));
    assert_int_equal(iotc_shadow_check_thing("", 0, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "empty"));
    assert_int_equal(iotc_shadow_check_thing(NULL, 3, &why), IOTC_ERR_INVALID_ARG);
    const char *all = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-";
    assert_int_equal(iotc_shadow_check_thing(all, strlen(all), NULL), IOTC_OK);
    /* The shadow name allows '$'; the thing name does not. */
    const char *bad[] = {"a b", "a/b", "a#", "a+", "$a", "a.b", "a\xc3\xa9", "a\"", "a\\", "a\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(iotc_shadow_check_thing(bad[i], strlen(bad[i]), &why), IOTC_ERR_INVALID_ARG);
        assert_non_null(strstr(why, "[a-zA-Z0-9:_-]"));
    }
    /* The length is what counts: a NUL inside is a byte outside the pattern. */
    assert_int_equal(iotc_shadow_check_thing("ab\0c", 4, NULL), IOTC_ERR_INVALID_ARG);
    free(s128);
    free(s129);
}

static void test_shadow_name_limits(void **state)
{
    (void)state;
    const char *why = NULL;
    char *s64 = repeat('n', 64), *s65 = repeat('n', 65);
    assert_int_equal(iotc_shadow_check_name("x", 1, &why), IOTC_OK);
    assert_int_equal(iotc_shadow_check_name(s64, 64, &why), IOTC_OK);
    assert_int_equal(iotc_shadow_check_name(s65, 65, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "64"));
    assert_int_equal(iotc_shadow_check_name("", 0, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_check_name("$x:_-Z9", 7, &why), IOTC_OK);
    const char *bad[] = {"a/b", "a b", "+", "#", "a.b", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(iotc_shadow_check_name(bad[i], strlen(bad[i]), &why), IOTC_ERR_INVALID_ARG);
    free(s64);
    free(s65);
}

static void test_topics_classic(void **state)
{
    (void)state;
    char b[IOTC_SHADOW_TOPIC_MAX + 1];
    struct {
        iotc_shadow_op op;
        iotc_shadow_sfx sfx;
        const char *want;
    } cases[] = {
        {IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST, "$aws/things/T-1/shadow/get"},
        {IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, "$aws/things/T-1/shadow/get/accepted"},
        {IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REJECTED, "$aws/things/T-1/shadow/get/rejected"},
        {IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_REQUEST, "$aws/things/T-1/shadow/update"},
        {IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_ACCEPTED, "$aws/things/T-1/shadow/update/accepted"},
        {IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_REJECTED, "$aws/things/T-1/shadow/update/rejected"},
        {IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA, "$aws/things/T-1/shadow/update/delta"},
        {IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS, "$aws/things/T-1/shadow/update/documents"},
        {IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_REQUEST, "$aws/things/T-1/shadow/delete"},
        {IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_ACCEPTED, "$aws/things/T-1/shadow/delete/accepted"},
        {IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_REJECTED, "$aws/things/T-1/shadow/delete/rejected"},
    };
    iotc_shadow_core *sc = mk("T-1", "", 0);
    assert_true(iotc_shadow_core_is_classic(sc));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* NULL and "" both select the classic shadow. */
        assert_int_equal(iotc_shadow_topic(b, sizeof b, "T-1", NULL, cases[i].op, cases[i].sfx),
                         (int)strlen(cases[i].want));
        assert_string_equal(b, cases[i].want);
        assert_int_equal(iotc_shadow_topic(b, sizeof b, "T-1", "", cases[i].op, cases[i].sfx),
                         (int)strlen(cases[i].want));
        assert_string_equal(b, cases[i].want);
        assert_string_equal(iotc_shadow_core_topic(sc, cases[i].op, cases[i].sfx), cases[i].want);
    }
    iotc_shadow_core_free(sc);
}

static void test_topics_named(void **state)
{
    (void)state;
    char b[IOTC_SHADOW_TOPIC_MAX + 1];
    assert_true(iotc_shadow_topic(b, sizeof b, "thing", "$cfg", IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED) > 0);
    assert_string_equal(b, "$aws/things/thing/shadow/name/$cfg/get/accepted");
    assert_true(iotc_shadow_topic(b, sizeof b, "thing", "n", IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_REQUEST) > 0);
    assert_string_equal(b, "$aws/things/thing/shadow/name/n/update");
    assert_true(iotc_shadow_topic(b, sizeof b, "thing", "n", IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS) > 0);
    assert_string_equal(b, "$aws/things/thing/shadow/name/n/update/documents");
    assert_true(iotc_shadow_topic(b, sizeof b, "thing", "n", IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_REJECTED) > 0);
    assert_string_equal(b, "$aws/things/thing/shadow/name/n/delete/rejected");
    iotc_shadow_core *sc = mk("thing", "n", 0);
    assert_false(iotc_shadow_core_is_classic(sc));
    assert_string_equal(iotc_shadow_core_topic(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA),
                        "$aws/things/thing/shadow/name/n/update/delta");
    iotc_shadow_core_free(sc);
}

static void test_topic_limits_and_errors(void **state)
{
    (void)state;
    char b[IOTC_SHADOW_TOPIC_MAX + 1];
    char *t128 = repeat('t', 128), *n64 = repeat('n', 64), *t129 = repeat('t', 129), *n65 = repeat('n', 65);
    /* The longest topic there is fits the documented maximum exactly. */
    assert_int_equal(iotc_shadow_topic(b, sizeof b, t128, n64, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS),
                     IOTC_SHADOW_TOPIC_MAX);
    assert_int_equal(strlen(b), 234);
    /* One byte short of room: refused, and the buffer holds no half topic. */
    assert_int_equal(iotc_shadow_topic(b, IOTC_SHADOW_TOPIC_MAX, t128, n64, IOTC_SHADOW_OP_UPDATE,
                                       IOTC_SHADOW_SFX_DOCUMENTS),
                     IOTC_ERR_TOO_LARGE);
    assert_string_equal(b, "");
    assert_int_equal(iotc_shadow_topic(b, 0, "t", NULL, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_TOO_LARGE);
    /* Exactly len + 1 is enough. */
    assert_int_equal(iotc_shadow_topic(b, strlen("$aws/things/t/shadow/get") + 1, "t", NULL, IOTC_SHADOW_OP_GET,
                                       IOTC_SHADOW_SFX_REQUEST),
                     (int)strlen("$aws/things/t/shadow/get"));
    assert_int_equal(iotc_shadow_topic(b, sizeof b, t129, NULL, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "t", n65, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "a/b", NULL, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "t", "a+", IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, NULL, NULL, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_INVALID_ARG);
    /* delta and documents belong to update only. */
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "t", NULL, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_DELTA),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "t", NULL, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_DOCUMENTS),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "t", NULL, (iotc_shadow_op)3, IOTC_SHADOW_SFX_REQUEST),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_topic(b, sizeof b, "t", NULL, IOTC_SHADOW_OP_GET, (iotc_shadow_sfx)5),
                     IOTC_ERR_INVALID_ARG);
    iotc_shadow_core *sc = mk(t128, n64, 0);
    assert_null(iotc_shadow_core_topic(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_DELTA));
    assert_null(iotc_shadow_core_topic(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_DOCUMENTS));
    assert_int_equal(strlen(iotc_shadow_core_topic(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS)), 234);
    iotc_shadow_core_free(sc);
    free(t128);
    free(n64);
    free(t129);
    free(n65);
}

static void test_core_new_args(void **state)
{
    (void)state;
    iotc_shadow_core *sc = (iotc_shadow_core *)1;
    const char *why = NULL;
    assert_int_equal(iotc_shadow_core_new("bad thing", NULL, 0, &sc, &why), IOTC_ERR_INVALID_ARG);
    assert_null(sc);
    assert_non_null(strstr(why, "thing"));
    assert_int_equal(iotc_shadow_core_new("t", "bad/name", 0, &sc, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "shadow name"));
    assert_int_equal(iotc_shadow_core_new(NULL, NULL, 0, &sc, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_new("t", NULL, 0, NULL, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_new("t", NULL, 0, &sc, NULL), IOTC_OK);
    assert_int_equal(iotc_shadow_core_max_pending(sc), IOTC_SHADOW_DEFAULT_MAX_PENDING);
    assert_int_equal(iotc_shadow_core_max_pending(sc), 10);
    assert_int_equal(iotc_shadow_core_pending(sc), 0);
    assert_int_equal(iotc_shadow_core_next_deadline(sc), UINT64_MAX);
    assert_false(iotc_shadow_core_version(sc, NULL));
    iotc_shadow_core_free(sc);
    iotc_shadow_core_free(NULL);
}

static void check_parse(const char *topic, const char *thing, const char *name, iotc_shadow_op op,
                        iotc_shadow_sfx sfx)
{
    iotc_shadow_topic_parts p;
    assert_true(iotc_shadow_topic_parse(topic, strlen(topic), &p));
    assert_int_equal(p.thing_len, strlen(thing));
    assert_memory_equal(p.thing, thing, p.thing_len);
    if (name) {
        assert_non_null(p.name);
        assert_int_equal(p.name_len, strlen(name));
        assert_memory_equal(p.name, name, p.name_len);
    } else {
        assert_null(p.name);
        assert_int_equal(p.name_len, 0);
    }
    assert_int_equal(p.op, op);
    assert_int_equal(p.sfx, sfx);
}

static void test_topic_parse(void **state)
{
    (void)state;
    /* Every topic built parses back to what built it. */
    const char *names[] = {NULL, "n", "$x", "get", "name", "shadow"};
    char b[IOTC_SHADOW_TOPIC_MAX + 1];
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        for (int op = 0; op < IOTC_SHADOW_NOPS; op++) {
            for (int sfx = 0; sfx <= IOTC_SHADOW_SFX_DOCUMENTS; sfx++) {
                if (iotc_shadow_topic(b, sizeof b, "th:ing_1", names[k], (iotc_shadow_op)op, (iotc_shadow_sfx)sfx) <
                    0)
                    continue;
                check_parse(b, "th:ing_1", names[k], (iotc_shadow_op)op, (iotc_shadow_sfx)sfx);
            }
        }
    }
    check_parse("$aws/things/T/shadow/name/name/get", "T", "name", IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REQUEST);
    const char *no[] = {
        "",
        "$aws",
        "$aws/things/T/shadow",
        "$aws/things/T/shadow/",
        "$aws/things/T/shadow/get/",
        "$aws/things/T/shadow/get/accepted/x",
        "$aws/things/T/shadow/get/delta",
        "$aws/things/T/shadow/delete/documents",
        "$aws/things/T/shadow/update/foo",
        "$aws/things/T/shadow/Get",
        "$aws/things/T/shadow/list",
        "$aws/things/T/shadow/name",
        "$aws/things/T/shadow/name/n",
        "$aws/things/T/shadow/name//get",
        "$aws/things//shadow/get",
        "$aws/things/T.x/shadow/get",
        "$aws/things/$T/shadow/get",
        "$aws/things/T/shadows/get",
        "$aws/thing/T/shadow/get",
        "aws/things/T/shadow/get",
        "$AWS/things/T/shadow/get",
        "$aws/things/T/shadow/name/a+/get",
        "$aws/things/T/jobs/get",
        "/$aws/things/T/shadow/get",
    };
    iotc_shadow_topic_parts p;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (iotc_shadow_topic_parse(no[i], strlen(no[i]), &p))
            fail_msg("parsed: %s", no[i]);
    }
    char *t129 = repeat('t', 129);
    char topic[300];
    snprintf(topic, sizeof topic, "$aws/things/%s/shadow/get", t129);
    assert_false(iotc_shadow_topic_parse(topic, strlen(topic), &p));
    free(t129);
    /* The length is what counts, not a NUL. */
    const char *t = "$aws/things/T/shadow/get/accepted";
    check_parse(t, "T", NULL, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED);
    assert_true(iotc_shadow_topic_parse(t, strlen(t) - strlen("/accepted"), &p));
    assert_int_equal(p.sfx, IOTC_SHADOW_SFX_REQUEST);
    assert_false(iotc_shadow_topic_parse(NULL, 3, &p));
    assert_false(iotc_shadow_topic_parse(t, strlen(t), NULL));
}

/* ---- tokens ------------------------------------------------------------------------------- */

static bool is_uuid4(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

static void test_uuid4(void **state)
{
    (void)state;
    char out[IOTC_SHADOW_TOKEN_LEN + 1];
    uint8_t r[16];
    memset(r, 0, sizeof r);
    iotc_shadow_uuid4(r, out);
    assert_string_equal(out, "00000000-0000-4000-8000-000000000000");
    memset(r, 0xff, sizeof r);
    iotc_shadow_uuid4(r, out);
    assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    for (int i = 0; i < 16; i++)
        r[i] = (uint8_t)(i * 17);
    iotc_shadow_uuid4(r, out);
    assert_string_equal(out, "00112233-4455-4677-8899-aabbccddeeff");
    assert_true(is_uuid4(out));
}

static void test_tokens_unique_and_short(void **state)
{
    (void)state;
    /* The same "random" bytes every time, the worst random source there is:
     * the tokens must still differ, among the pending and over time. */
    iotc_shadow_core *sc = mk("t", NULL, 10);
    enum { N = 2000 };
    static char seen[N][IOTC_SHADOW_TOKEN_MAX + 1];
    for (int i = 0; i < N; i++) {
        char tok[IOTC_SHADOW_TOKEN_MAX + 1];
        begin_ok(sc, (iotc_shadow_op)(i % 3), 0, 1000, NULL, tok);
        assert_true(strlen(tok) <= IOTC_SHADOW_TOKEN_MAX);
        assert_int_equal(strlen(tok), IOTC_SHADOW_TOKEN_LEN);
        assert_true(is_uuid4(tok));
        for (int j = 0; j < i; j++)
            if (strcmp(seen[j], tok) == 0)
                fail_msg("token %s issued twice (%d and %d)", tok, j, i);
        strcpy(seen[i], tok);
        /* Keep up to 9 pending so that the pending check is exercised too. */
        if (iotc_shadow_core_pending(sc) == 9)
            assert_true(iotc_shadow_core_take(sc, seen[i - 8], NULL));
    }
    iotc_shadow_core_free(sc);
}

static void test_token_from_random(void **state)
{
    (void)state;
    /* Distinct random bytes give distinct tokens from the first request on. */
    iotc_shadow_core *a = mk("t", NULL, 0), *b = mk("t", NULL, 0);
    uint8_t r1[16], r2[16];
    memset(r1, 1, sizeof r1);
    memset(r2, 2, sizeof r2);
    iotc_shadow_request q1, q2;
    assert_int_equal(iotc_shadow_core_begin(a, IOTC_SHADOW_OP_GET, NULL, 0, r1, 0, 10, NULL, &q1, NULL), IOTC_OK);
    assert_int_equal(iotc_shadow_core_begin(b, IOTC_SHADOW_OP_GET, NULL, 0, r2, 0, 10, NULL, &q2, NULL), IOTC_OK);
    assert_string_not_equal(q1.token, q2.token);
    free(q1.payload);
    free(q2.payload);
    iotc_shadow_core_free(a);
    iotc_shadow_core_free(b);
}

/* ---- payloads ----------------------------------------------------------------------------- */

static void test_get_delete_payload(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("t", NULL, 0);
    for (int op = 0; op < IOTC_SHADOW_NOPS; op += 2) {
        iotc_shadow_request rq;
        assert_int_equal(begin(sc, (iotc_shadow_op)op, NULL, 0, 100, NULL, &rq), IOTC_OK);
        char want[128];
        snprintf(want, sizeof want, "{\"clientToken\":\"%s\"}", rq.token);
        assert_string_equal(rq.payload, want);
        assert_int_equal(rq.payload_len, strlen(want));
        free(rq.payload);
        /* get and delete take no document. */
        assert_int_equal(begin(sc, (iotc_shadow_op)op, "{\"state\":{}}", 0, 100, NULL, &rq), IOTC_ERR_INVALID_ARG);
    }
    assert_int_equal(iotc_shadow_core_pending(sc), 2);
    iotc_shadow_core_free(sc);
}

static char *update_payload(iotc_shadow_core *sc, const char *json, char token[IOTC_SHADOW_TOKEN_MAX + 1])
{
    iotc_shadow_request rq;
    assert_int_equal(begin(sc, IOTC_SHADOW_OP_UPDATE, json, 0, 100, NULL, &rq), IOTC_OK);
    assert_int_equal(strlen(rq.payload), rq.payload_len);
    strcpy(token, rq.token);
    /* Whatever the input, the output is JSON with exactly one clientToken. */
    cJSON *doc = cJSON_Parse(rq.payload);
    assert_non_null(doc);
    int n = 0;
    for (cJSON *m = doc->child; m; m = m->next)
        if (strcmp(m->string, "clientToken") == 0) {
            n++;
            assert_string_equal(m->valuestring, token);
        }
    assert_int_equal(n, 1);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(doc, "state"));
    cJSON_Delete(doc);
    return rq.payload;
}

static void test_update_payload_inserts_token(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("t", NULL, 0);
    char tok[IOTC_SHADOW_TOKEN_MAX + 1], want[512];
    char *p = update_payload(sc, "{\"state\":{\"desired\":{\"a\":1}}}", tok);
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\",\"state\":{\"desired\":{\"a\":1}}}", tok);
    assert_string_equal(p, want);
    free(p);
    /* Whitespace around and between members, and state null. */
    p = update_payload(sc, " \n{ \"state\" : null , \"version\" :\t3 }\r\n", tok);
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\",\"state\" : null,\"version\" :\t3}", tok);
    assert_string_equal(p, want);
    free(p);
    iotc_shadow_core_free(sc);
}

static void test_update_overrides_caller_token(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("t", NULL, 0);
    char tok[IOTC_SHADOW_TOKEN_MAX + 1], want[512];
    char *p = update_payload(sc, "{\"clientToken\":\"mine\",\"state\":{\"reported\":{\"x\":true}},\"version\":7}", tok);
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\",\"state\":{\"reported\":{\"x\":true}},\"version\":7}", tok);
    assert_string_equal(p, want);
    free(p);
    /* Twice, last, escaped in the key, and with a non-string value: all go. */
    p = update_payload(sc,
                       "{\"state\":{},\"clientToken\":1,\"client\\u0054oken\":\"x\",\"a\":[1,{\"clientToken\":2}],"
                       "\"clientToken\":{\"k\":\"}\"}}",
                       tok);
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\",\"state\":{},\"a\":[1,{\"clientToken\":2}]}", tok);
    assert_string_equal(p, want);
    free(p);
    /* Only the caller's token: the result is the request's alone. */
    char *big = malloc(200);
    snprintf(big, 200, "{\"state\":{},\"clientToken\":\"%s\"}", "0123456789012345678901234567890123456789");
    p = update_payload(sc, big, tok);
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\",\"state\":{}}", tok);
    assert_string_equal(p, want);
    free(p);
    free(big);
    iotc_shadow_core_free(sc);
}

static void test_update_keeps_caller_bytes(void **state)
{
    (void)state;
    /* cJSON would print 12345678901234567890 as 1.2345678901234567e+19 and
     * 1.50 as 1.5: the payload keeps the caller's text instead. */
    iotc_shadow_core *sc = mk("t", NULL, 0);
    char tok[IOTC_SHADOW_TOKEN_MAX + 1], want[512];
    const char *in = "{\"state\":{\"reported\":{\"serial\":12345678901234567890,\"t\":1.50,\"e\":1E+2,"
                     "\"s\":\"a\\\"}{,\\\\\",\"u\":\"\\u00e9\xc3\xa9\",\"n\":[ ],\"o\":{ }}}}";
    char *p = update_payload(sc, in, tok);
    snprintf(want, sizeof want, "{\"clientToken\":\"%s\",%s", tok, in + 1);
    assert_string_equal(p, want);
    free(p);
    iotc_shadow_core_free(sc);
}

static void test_update_rejects_bad_json(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("t", NULL, 1);
    const char *bad[] = {
        "",                                /* empty */
        "{",                               /* not JSON */
        "{\"state\":{}} x",                /* trailing garbage */
        "{\"state\":{}}{}",                /* two documents */
        "[{\"state\":{}}]",                /* not an object */
        "\"state\"", "42", "null", "true", /* not an object */
        "{}",                              /* no state */
        "{\"desired\":{\"a\":1}}",         /* no state (a common mistake) */
        "{\"State\":{}}",                  /* keys are case-sensitive */
        "{\"state\":[]}",                  /* state neither object nor null */
        "{\"state\":\"on\"}",
        "{\"state\":1}",
        "{\"state\":{},\"state\":2}",      /* any state member must be right */
        "{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", /* not UTF-8 */
        "{'state':{}}",
        /* Control bytes cJSON would take as whitespace, or raw in a string. */
        "{\x01\"state\":{}}",
        "{\"state\":{}}\f",
        "\v{\"state\":{}}",
        "{\"state\":{\"reported\":{\"a\":\"x\ty\"}}}",
        "{\"state\":{\"reported\":{\"a\":\"x\x1fy\"}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iotc_shadow_request rq;
        const char *why = NULL;
        int rc = iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, bad[i], strlen(bad[i]), R0, 0, 100, NULL, &rq,
                                        &why);
        if (rc != IOTC_ERR_INVALID_ARG)
            fail_msg("accepted: %s", bad[i]);
        assert_true(strlen(why) > 0);
        assert_null(rq.payload);
        assert_int_equal(iotc_shadow_core_pending(sc), 0);
    }
    const char *why = NULL;
    iotc_shadow_request rq;
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, "{}", 2, R0, 0, 100, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "state"));
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, "[1]", 3, R0, 0, 100, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "object"));
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, "{x", 2, R0, 0, 100, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "not JSON"));
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, NULL, 0, R0, 0, 100, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    /* The length is what counts: a document cut short is not JSON. */
    const char *ok = "{\"state\":{}}";
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, ok, strlen(ok) - 1, R0, 0, 100, NULL, &rq,
                                            &why),
                     IOTC_ERR_INVALID_ARG);
    /* The bad documents did not use the one slot. */
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, ok, strlen(ok), R0, 0, 100, NULL, &rq, &why),
                     IOTC_OK);
    free(rq.payload);
    /* Full now: bad JSON is still INVALID_ARG (checked first), good is BUSY. */
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, "{}", 2, R0, 0, 100, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_UPDATE, ok, strlen(ok), R0, 0, 100, NULL, &rq, &why),
                     IOTC_ERR_BUSY);
    iotc_shadow_core_free(sc);
}

static void test_begin_args(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("t", NULL, 0);
    iotc_shadow_request rq;
    const char *why = NULL;
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_GET, NULL, 0, R0, 0, 0, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "timeout"));
    assert_int_equal(iotc_shadow_core_begin(NULL, IOTC_SHADOW_OP_GET, NULL, 0, R0, 0, 1, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_GET, NULL, 0, NULL, 0, 1, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_begin(sc, IOTC_SHADOW_OP_GET, NULL, 0, R0, 0, 1, NULL, NULL, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_begin(sc, (iotc_shadow_op)3, NULL, 0, R0, 0, 1, NULL, &rq, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_shadow_core_pending(sc), 0);
    iotc_shadow_core_free(sc);
}

/* ---- the pending bound ------------------------------------------------------------------- */

static void test_pending_limit(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("t", NULL, 0);
    char toks[10][IOTC_SHADOW_TOKEN_MAX + 1];
    for (int i = 0; i < 10; i++)
        begin_ok(sc, (iotc_shadow_op)(i % 3), 0, 1000, NULL, toks[i]);
    assert_int_equal(iotc_shadow_core_pending(sc), 10);
    for (int op = 0; op < IOTC_SHADOW_NOPS; op++) {
        iotc_shadow_request rq;
        const char *why = NULL;
        assert_int_equal(iotc_shadow_core_begin(sc, (iotc_shadow_op)op, op == 1 ? "{\"state\":{}}" : NULL,
                                                op == 1 ? 12 : 0, R0, 0, 1000, NULL, &rq, &why),
                         IOTC_ERR_BUSY);
        assert_non_null(strstr(why, "10"));
        assert_null(rq.payload);
    }
    /* An answer frees a slot. */
    char resp[128];
    snprintf(resp, sizeof resp, "{\"clientToken\":\"%s\",\"version\":1}", toks[3]);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, resp, NULL), IOTC_SHADOW_EV_RESPONSE);
    char tok[IOTC_SHADOW_TOKEN_MAX + 1];
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 1000, NULL, tok);
    iotc_shadow_request rq;
    assert_int_equal(begin(sc, IOTC_SHADOW_OP_GET, NULL, 0, 1000, NULL, &rq), IOTC_ERR_BUSY);
    /* So does an expiry. */
    iotc_shadow_taken tk;
    assert_true(iotc_shadow_core_expire(sc, 1000, &tk));
    begin_ok(sc, IOTC_SHADOW_OP_GET, 1000, 1000, NULL, tok);
    iotc_shadow_core_free(sc);

    /* A configured bound. */
    sc = mk("t", "n", 2);
    assert_int_equal(iotc_shadow_core_max_pending(sc), 2);
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 1, NULL, tok);
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 1, NULL, tok);
    assert_int_equal(begin(sc, IOTC_SHADOW_OP_DELETE, NULL, 0, 1, NULL, &rq), IOTC_ERR_BUSY);
    assert_true(iotc_shadow_core_take(sc, tok, NULL));
    begin_ok(sc, IOTC_SHADOW_OP_DELETE, 0, 1, NULL, tok);
    iotc_shadow_core_free(sc);
}

/* ---- responses ---------------------------------------------------------------------------- */

static void test_accepted_response(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", "cfg", 0);
    int u1, u2;
    char t1[IOTC_SHADOW_TOKEN_MAX + 1], t2[IOTC_SHADOW_TOKEN_MAX + 1];
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 100, &u1, t1);
    begin_ok(sc, IOTC_SHADOW_OP_UPDATE, 0, 100, &u2, t2);
    char p[256];
    snprintf(p, sizeof p, "{\"state\":{\"reported\":{\"a\":1}},\"version\":4,\"timestamp\":1,\"clientToken\":\"%s\"}",
             t2);
    iotc_shadow_event ev;
    feed(sc, "$aws/things/dev/shadow/name/cfg/update/accepted", p, &ev);
    assert_int_equal(ev.type, IOTC_SHADOW_EV_RESPONSE);
    assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_NONE);
    assert_int_equal(ev.op, IOTC_SHADOW_OP_UPDATE);
    assert_int_equal(ev.status, IOTC_OK);
    assert_ptr_equal(ev.user, &u2);
    assert_string_equal(ev.token, t2);
    assert_true(ev.has_version);
    assert_int_equal(ev.version, 4);
    assert_int_equal(ev.code, 0);
    assert_string_equal(ev.message, "");
    iotc_shadow_event_clear(&ev);
    iotc_shadow_event_clear(&ev); /* twice is fine */
    assert_int_equal(iotc_shadow_core_pending(sc), 1);
    assert_false(iotc_shadow_core_is_pending(sc, t2));
    assert_true(iotc_shadow_core_is_pending(sc, t1));
    uint64_t v = 0;
    assert_true(iotc_shadow_core_version(sc, &v));
    assert_int_equal(v, 4);
    /* An accepted answer without a version is still the answer. */
    snprintf(p, sizeof p, "{\"clientToken\":\"%s\"}", t1);
    feed(sc, "$aws/things/dev/shadow/name/cfg/get/accepted", p, &ev);
    assert_int_equal(ev.type, IOTC_SHADOW_EV_RESPONSE);
    assert_ptr_equal(ev.user, &u1);
    assert_false(ev.has_version);
    iotc_shadow_event_clear(&ev);
    assert_int_equal(iotc_shadow_core_pending(sc), 0);
    iotc_shadow_core_free(sc);
}

static void test_rejected_response(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    struct {
        const char *body; /* %s: the token */
        int code;
        const char *message;
    } cases[] = {
        {"{\"code\":404,\"message\":\"No shadow exists with name: 'dev'\",\"clientToken\":\"%s\"}", 404,
         "No shadow exists with name: 'dev'"},
        {"{\"code\":409,\"message\":\"Version conflict\",\"timestamp\":1591142747,\"clientToken\":\"%s\"}", 409,
         "Version conflict"},
        {"{\"clientToken\":\"%s\"}", 0, ""},                                   /* both missing */
        {"{\"code\":\"404\",\"message\":7,\"clientToken\":\"%s\"}", 0, ""},    /* wrong types (Jobs-style code) */
        {"{\"code\":400.5,\"message\":\"m\",\"clientToken\":\"%s\"}", 0, "m"}, /* not an integer */
        {"{\"code\":1e12,\"clientToken\":\"%s\"}", 0, ""},                     /* beyond int */
        {"{\"code\":-1,\"message\":\"\",\"clientToken\":\"%s\"}", -1, ""},
        {"{\"code\":429,\"message\":\"Too Many Requests\",\"clientToken\":\"%s\"}", 429, "Too Many Requests"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char t[IOTC_SHADOW_TOKEN_MAX + 1], p[256];
        iotc_shadow_op op = (iotc_shadow_op)(i % 3);
        begin_ok(sc, op, 0, 100, &cases[i], t);
        snprintf(p, sizeof p, cases[i].body, t);
        iotc_shadow_event ev;
        feed(sc, topic_of(sc, op, IOTC_SHADOW_SFX_REJECTED), p, &ev);
        assert_int_equal(ev.type, IOTC_SHADOW_EV_RESPONSE);
        assert_int_equal(ev.op, op);
        assert_int_equal(ev.status, IOTC_ERR_REJECTED);
        assert_int_equal(ev.code, cases[i].code);
        assert_string_equal(ev.message, cases[i].message);
        assert_ptr_equal(ev.user, &cases[i]);
        iotc_shadow_event_clear(&ev);
        assert_string_equal(ev.message, "");
    }
    /* A rejection does not move the version. */
    assert_false(iotc_shadow_core_version(sc, NULL));
    iotc_shadow_core_free(sc);
}

static void test_foreign_missing_unknown_tokens(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    char t[IOTC_SHADOW_TOKEN_MAX + 1], p[256];
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 100, NULL, t);
    iotc_shadow_ignore why;
    /* Another client's answer, on the same broadcast topic. */
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED,
                            "{\"clientToken\":\"1400d004-176a-4639-8378-d1da06aaebe4\",\"version\":3}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REJECTED,
                            "{\"code\":404,\"message\":\"x\",\"clientToken\":\"other\"}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
    /* A prefix or an extension of ours is not ours. */
    snprintf(p, sizeof p, "{\"clientToken\":\"%.35s\"}", t);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
    snprintf(p, sizeof p, "{\"clientToken\":\"%sx\"}", t);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    /* No token (the console's requests), or one that is not a string. */
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, "{\"version\":3}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_NO_TOKEN);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_REJECTED, "{\"code\":400,\"message\":\"m\"}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_NO_TOKEN);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, "{\"clientToken\":42}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_NO_TOKEN);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, "{\"clientToken\":null}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_NO_TOKEN);
    /* Our token on another thing's or shadow's topic is not for us. */
    snprintf(p, sizeof p, "{\"clientToken\":\"%s\"}", t);
    const char *elsewhere[] = {
        "$aws/things/dev2/shadow/get/accepted",
        "$aws/things/de/shadow/get/accepted",
        "$aws/things/dev/shadow/name/x/get/accepted",
        "$aws/things/dev/shadow/get",
        "$aws/things/dev/shadow/get/accepted/",
        "dev/shadow/get/accepted",
    };
    for (size_t i = 0; i < sizeof elsewhere / sizeof elsewhere[0]; i++) {
        iotc_shadow_event ev;
        feed(sc, elsewhere[i], p, &ev);
        assert_int_equal(ev.type, IOTC_SHADOW_EV_IGNORED);
        assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_TOPIC);
        iotc_shadow_event_clear(&ev);
    }
    /* Our token on the right shadow but another operation's topic. */
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_OP_MISMATCH);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_REJECTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_OP_MISMATCH);
    /* Through all that, the request is still pending, and its own answer
     * still completes it. */
    assert_true(iotc_shadow_core_is_pending(sc, t));
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_RESPONSE);
    assert_int_equal(iotc_shadow_core_pending(sc), 0);
    iotc_shadow_core_free(sc);
}

static void test_named_and_classic_apart(void **state)
{
    (void)state;
    /* A classic and a named shadow of the same thing never take each
     * other's answers. */
    iotc_shadow_core *classic = mk("dev", NULL, 0), *named = mk("dev", "n", 0);
    char t[IOTC_SHADOW_TOKEN_MAX + 1], p[128];
    begin_ok(classic, IOTC_SHADOW_OP_GET, 0, 100, NULL, t);
    snprintf(p, sizeof p, "{\"clientToken\":\"%s\"}", t);
    iotc_shadow_event ev;
    feed(named, "$aws/things/dev/shadow/get/accepted", p, &ev);
    assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_TOPIC);
    iotc_shadow_event_clear(&ev);
    feed(classic, "$aws/things/dev/shadow/name/n/get/accepted", p, &ev);
    assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_TOPIC);
    iotc_shadow_event_clear(&ev);
    feed(classic, "$aws/things/dev/shadow/get/accepted", p, &ev);
    assert_int_equal(ev.type, IOTC_SHADOW_EV_RESPONSE);
    iotc_shadow_event_clear(&ev);
    iotc_shadow_core_free(classic);
    iotc_shadow_core_free(named);
}

static void test_duplicate_response_ignored(void **state)
{
    (void)state;
    /* QoS 1 may deliver an answer twice, and a buggy service may answer on
     * both topics: the request completes once. */
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    char t[IOTC_SHADOW_TOKEN_MAX + 1], p[128];
    begin_ok(sc, IOTC_SHADOW_OP_DELETE, 0, 100, NULL, t);
    snprintf(p, sizeof p, "{\"version\":2,\"clientToken\":\"%s\"}", t);
    iotc_shadow_ignore why;
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_RESPONSE);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_REJECTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
    /* And an answer that comes after its request expired. */
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 100, NULL, t);
    assert_true(iotc_shadow_core_expire(sc, 100, NULL));
    snprintf(p, sizeof p, "{\"clientToken\":\"%s\"}", t);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, p, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
    iotc_shadow_core_free(sc);
}

static void test_not_json_ignored(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    char t[IOTC_SHADOW_TOKEN_MAX + 1];
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 100, NULL, t);
    const char *bad[] = {"", "garbage", "[1,2]", "\"s\"", "{\"clientToken\":", "{} x", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iotc_shadow_ignore why;
        assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, bad[i], &why),
                         IOTC_SHADOW_EV_IGNORED);
        assert_int_equal(why, IOTC_SHADOW_IGN_JSON);
        assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA, bad[i], &why),
                         IOTC_SHADOW_EV_IGNORED);
        assert_int_equal(why, IOTC_SHADOW_IGN_JSON);
    }
    /* A NULL payload, and the payload's length rather than a NUL. */
    iotc_shadow_event ev;
    const char *topic = topic_of(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED);
    iotc_shadow_core_input(sc, topic, strlen(topic), NULL, 0, &ev);
    assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_JSON);
    iotc_shadow_event_clear(&ev);
    char p[128];
    int n = snprintf(p, sizeof p, "{\"clientToken\":\"%s\"}", t);
    iotc_shadow_core_input(sc, topic, strlen(topic), (const uint8_t *)p, (size_t)n - 1, &ev);
    assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_JSON);
    iotc_shadow_event_clear(&ev);
    iotc_shadow_core_input(sc, topic, strlen(topic), (const uint8_t *)p, (size_t)n, &ev);
    assert_int_equal(ev.type, IOTC_SHADOW_EV_RESPONSE);
    iotc_shadow_event_clear(&ev);
    /* NULL everything does not crash. */
    iotc_shadow_core_input(NULL, topic, strlen(topic), (const uint8_t *)p, (size_t)n, &ev);
    assert_int_equal(ev.ignored, IOTC_SHADOW_IGN_TOPIC);
    iotc_shadow_core_input(sc, topic, strlen(topic), (const uint8_t *)p, (size_t)n, NULL);
    iotc_shadow_core_free(sc);
}

/* ---- deadlines ---------------------------------------------------------------------------- */

static void test_expiry(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    int a, b, c;
    char ta[IOTC_SHADOW_TOKEN_MAX + 1], tb[IOTC_SHADOW_TOKEN_MAX + 1], tc[IOTC_SHADOW_TOKEN_MAX + 1];
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 1000, &a, ta);
    begin_ok(sc, IOTC_SHADOW_OP_UPDATE, 10, 500, &b, tb);
    begin_ok(sc, IOTC_SHADOW_OP_DELETE, 500, 500, &c, tc); /* the same deadline as a, made later */
    assert_int_equal(iotc_shadow_core_next_deadline(sc), 510);
    iotc_shadow_taken tk;
    assert_false(iotc_shadow_core_expire(sc, 509, &tk));
    assert_true(iotc_shadow_core_expire(sc, 510, &tk));
    assert_ptr_equal(tk.user, &b);
    assert_int_equal(tk.op, IOTC_SHADOW_OP_UPDATE);
    assert_string_equal(tk.token, tb);
    assert_false(iotc_shadow_core_expire(sc, 510, &tk));
    assert_int_equal(iotc_shadow_core_next_deadline(sc), 1000);
    assert_false(iotc_shadow_core_expire(sc, 999, &tk));
    /* Two due at once: the earlier request first. */
    assert_true(iotc_shadow_core_expire(sc, 5000, &tk));
    assert_ptr_equal(tk.user, &a);
    assert_true(iotc_shadow_core_expire(sc, 5000, &tk));
    assert_ptr_equal(tk.user, &c);
    assert_string_equal(tk.token, tc);
    assert_false(iotc_shadow_core_expire(sc, UINT64_MAX, &tk));
    assert_int_equal(iotc_shadow_core_next_deadline(sc), UINT64_MAX);
    assert_int_equal(iotc_shadow_core_pending(sc), 0);
    /* A deadline beyond the clock saturates instead of wrapping to the past. */
    begin_ok(sc, IOTC_SHADOW_OP_GET, UINT64_MAX - 5, 1000, &a, ta);
    assert_int_equal(iotc_shadow_core_next_deadline(sc), UINT64_MAX);
    assert_false(iotc_shadow_core_expire(sc, UINT64_MAX - 1, &tk));
    iotc_shadow_core_free(sc);
}

static void test_take(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    int u[5];
    char t[5][IOTC_SHADOW_TOKEN_MAX + 1];
    for (int i = 0; i < 5; i++)
        begin_ok(sc, (iotc_shadow_op)(i % 3), 0, 100, &u[i], t[i]);
    iotc_shadow_taken tk;
    assert_true(iotc_shadow_core_take(sc, t[2], &tk));
    assert_ptr_equal(tk.user, &u[2]);
    assert_int_equal(tk.op, IOTC_SHADOW_OP_DELETE);
    assert_false(iotc_shadow_core_take(sc, t[2], &tk));
    assert_false(iotc_shadow_core_take(sc, "nope", &tk));
    assert_false(iotc_shadow_core_take(sc, NULL, &tk));
    int seen = 0;
    while (iotc_shadow_core_take_any(sc, &tk)) {
        int idx = (int)((int *)tk.user - u);
        assert_true(idx >= 0 && idx < 5 && idx != 2);
        assert_string_equal(tk.token, t[idx]);
        seen |= 1 << idx;
    }
    assert_int_equal(seen, 0x1b);
    assert_int_equal(iotc_shadow_core_pending(sc), 0);
    assert_false(iotc_shadow_core_take_any(NULL, &tk));
    iotc_shadow_core_free(sc);
}

/* ---- versions ----------------------------------------------------------------------------- */

static iotc_shadow_ev_type delta(iotc_shadow_core *sc, int version, iotc_shadow_ignore *why)
{
    char p[128];
    snprintf(p, sizeof p, "{\"version\":%d,\"timestamp\":1,\"state\":{\"c\":\"red\"},\"metadata\":{}}", version);
    return feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA, p, why);
}

static iotc_shadow_ev_type documents(iotc_shadow_core *sc, int version, iotc_shadow_ignore *why)
{
    char p[256];
    snprintf(p, sizeof p,
             "{\"previous\":{\"state\":{},\"version\":%d},\"current\":{\"state\":{},\"metadata\":{},\"version\":%d},"
             "\"timestamp\":1}",
             version - 1, version);
    return feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS, p, why);
}

static uint64_t ver(const iotc_shadow_core *sc)
{
    uint64_t v = 0;
    assert_true(iotc_shadow_core_version(sc, &v));
    return v;
}

static void answer(iotc_shadow_core *sc, iotc_shadow_op op, const char *token, int version)
{
    char p[128];
    snprintf(p, sizeof p, "{\"version\":%d,\"clientToken\":\"%s\"}", version, token);
    assert_int_equal(feed_t(sc, op, IOTC_SHADOW_SFX_ACCEPTED, p, NULL), IOTC_SHADOW_EV_RESPONSE);
}

static void test_version_delta(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    iotc_shadow_ignore why;
    iotc_shadow_event ev;
    /* Nothing seen yet: any version passes. */
    feed(sc, topic_of(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA), "{\"version\":5,\"state\":{}}", &ev);
    assert_int_equal(ev.type, IOTC_SHADOW_EV_DELTA);
    assert_true(ev.has_version);
    assert_int_equal(ev.version, 5);
    iotc_shadow_event_clear(&ev);
    assert_int_equal(ver(sc), 5);
    /* The same version again passes (>=), an older one does not. */
    assert_int_equal(delta(sc, 5, &why), IOTC_SHADOW_EV_DELTA);
    assert_int_equal(delta(sc, 4, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_STALE);
    assert_int_equal(delta(sc, 0, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(delta(sc, 6, &why), IOTC_SHADOW_EV_DELTA);
    assert_int_equal(ver(sc), 6);
    /* The v1 SDK's race (issue #94): update/accepted for version 7 comes
     * first, then the delta for 7, which must not be suppressed. */
    char t[IOTC_SHADOW_TOKEN_MAX + 1];
    begin_ok(sc, IOTC_SHADOW_OP_UPDATE, 0, 100, NULL, t);
    answer(sc, IOTC_SHADOW_OP_UPDATE, t, 7);
    assert_int_equal(ver(sc), 7);
    assert_int_equal(delta(sc, 7, &why), IOTC_SHADOW_EV_DELTA);
    assert_int_equal(delta(sc, 6, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_STALE);
    /* get/accepted moves it too. */
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 100, NULL, t);
    answer(sc, IOTC_SHADOW_OP_GET, t, 9);
    assert_int_equal(delta(sc, 8, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(delta(sc, 9, &why), IOTC_SHADOW_EV_DELTA);
    iotc_shadow_core_free(sc);
}

static void test_version_documents(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", "n", 0);
    iotc_shadow_ignore why;
    iotc_shadow_event ev;
    feed(sc, topic_of(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS),
         "{\"previous\":null,\"current\":{\"state\":{},\"version\":1},\"timestamp\":100}", &ev);
    assert_int_equal(ev.type, IOTC_SHADOW_EV_DOCUMENTS);
    assert_int_equal(ev.version, 1); /* current's, not a top-level one */
    iotc_shadow_event_clear(&ev);
    assert_int_equal(documents(sc, 3, &why), IOTC_SHADOW_EV_DOCUMENTS);
    assert_int_equal(documents(sc, 3, &why), IOTC_SHADOW_EV_DOCUMENTS);
    assert_int_equal(documents(sc, 2, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_STALE);
    /* Deltas and documents share the one version. */
    assert_int_equal(delta(sc, 2, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(delta(sc, 4, &why), IOTC_SHADOW_EV_DELTA);
    assert_int_equal(documents(sc, 3, &why), IOTC_SHADOW_EV_IGNORED);
    /* A top-level version is not current's. */
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS,
                            "{\"version\":9,\"current\":{\"state\":{}}}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_NO_VERSION);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DOCUMENTS, "{\"current\":null}", &why),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_NO_VERSION);
    assert_int_equal(ver(sc), 4);
    iotc_shadow_core_free(sc);
}

static void test_stream_without_version(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    const char *bad[] = {"{\"state\":{}}", "{\"version\":\"3\"}", "{\"version\":-1}", "{\"version\":1.5}",
                         "{\"version\":null}", "{\"version\":1e300}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iotc_shadow_ignore why;
        assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA, bad[i], &why),
                         IOTC_SHADOW_EV_IGNORED);
        assert_int_equal(why, IOTC_SHADOW_IGN_NO_VERSION);
    }
    assert_false(iotc_shadow_core_version(sc, NULL));
    /* Versions up to 2^53 are exact. */
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_UPDATE, IOTC_SHADOW_SFX_DELTA, "{\"version\":9007199254740992}", NULL),
                     IOTC_SHADOW_EV_DELTA);
    assert_int_equal(ver(sc), 9007199254740992ull);
    iotc_shadow_core_free(sc);
}

static void test_delete_resets_versions(void **state)
{
    (void)state;
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    iotc_shadow_ignore why;
    assert_int_equal(delta(sc, 9, &why), IOTC_SHADOW_EV_DELTA);
    char t[IOTC_SHADOW_TOKEN_MAX + 1];
    /* A rejected delete changes nothing. */
    begin_ok(sc, IOTC_SHADOW_OP_DELETE, 0, 100, NULL, t);
    char p[128];
    snprintf(p, sizeof p, "{\"code\":404,\"message\":\"No shadow\",\"clientToken\":\"%s\"}", t);
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_REJECTED, p, NULL), IOTC_SHADOW_EV_RESPONSE);
    assert_int_equal(ver(sc), 9);
    /* An accepted one forgets: a re-created shadow may count from 1 again. */
    begin_ok(sc, IOTC_SHADOW_OP_DELETE, 0, 100, NULL, t);
    answer(sc, IOTC_SHADOW_OP_DELETE, t, 9);
    assert_false(iotc_shadow_core_version(sc, NULL));
    assert_int_equal(delta(sc, 1, &why), IOTC_SHADOW_EV_DELTA);
    assert_int_equal(ver(sc), 1);
    /* Another client's delete/accepted does not reset ours. */
    assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_DELETE, IOTC_SHADOW_SFX_ACCEPTED,
                            "{\"version\":1,\"clientToken\":\"someone-else\"}", NULL),
                     IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(ver(sc), 1);
    iotc_shadow_core_free(sc);
}

static void test_older_accepted_keeps_version(void **state)
{
    (void)state;
    /* The v1 SDK reset its version whenever an accepted answer was not newer;
     * an older answer must not lower the bar here. */
    iotc_shadow_core *sc = mk("dev", NULL, 0);
    char t[IOTC_SHADOW_TOKEN_MAX + 1];
    begin_ok(sc, IOTC_SHADOW_OP_UPDATE, 0, 100, NULL, t);
    answer(sc, IOTC_SHADOW_OP_UPDATE, t, 7);
    begin_ok(sc, IOTC_SHADOW_OP_GET, 0, 100, NULL, t);
    answer(sc, IOTC_SHADOW_OP_GET, t, 3);
    assert_int_equal(ver(sc), 7);
    iotc_shadow_ignore why;
    assert_int_equal(delta(sc, 5, &why), IOTC_SHADOW_EV_IGNORED);
    assert_int_equal(why, IOTC_SHADOW_IGN_STALE);
    iotc_shadow_core_free(sc);
}

/* ---- a long run against a model ------------------------------------------------------------ */

/* Random requests, answers (ours, foreign, duplicated), expiries and takes;
 * the core must agree with a plain model on what is pending and must
 * complete every request exactly once. */
static void test_random_against_model(void **state)
{
    (void)state;
    enum { MAXP = 6, STEPS = 20000, TRACK = 4096 };
    iotc_shadow_core *sc = mk("dev", NULL, MAXP);
    static char tokens[TRACK][IOTC_SHADOW_TOKEN_MAX + 1];
    static uint64_t deadline[TRACK];
    static int state_of[TRACK]; /* 0 unused, 1 pending, 2 completed */
    static int completions[TRACK];
    int issued = 0;
    uint64_t now = 0;
    uint32_t rnd = 12345;
#define NEXT() (rnd = rnd * 1103515245u + 12345u, (rnd >> 16) & 0x7fff)
    for (int step = 0; step < STEPS && issued < TRACK; step++) {
        unsigned what = NEXT() % 6;
        int pending = 0;
        for (int i = 0; i < issued; i++)
            pending += state_of[i] == 1;
        assert_int_equal(iotc_shadow_core_pending(sc), (size_t)pending);
        if (what <= 1) {
            iotc_shadow_request rq;
            uint32_t to = 1 + NEXT() % 200;
            iotc_shadow_op op = (iotc_shadow_op)(NEXT() % 3);
            int rc = begin(sc, op, op == IOTC_SHADOW_OP_UPDATE ? "{\"state\":{}}" : NULL, now, to,
                           (void *)(intptr_t)(issued + 1), &rq);
            if (pending == MAXP) {
                assert_int_equal(rc, IOTC_ERR_BUSY);
            } else {
                assert_int_equal(rc, IOTC_OK);
                strcpy(tokens[issued], rq.token);
                deadline[issued] = now + to;
                state_of[issued++] = 1;
                free(rq.payload);
            }
        } else if (what == 2 && issued) {
            /* An answer for a random token, maybe completed already. */
            int i = (int)(NEXT() % (unsigned)issued);
            char p[128];
            snprintf(p, sizeof p, "{\"clientToken\":\"%s\"}", tokens[i]);
            iotc_shadow_event ev;
            /* Try every operation's topic: only the right one may take it. */
            for (int op = 0; op < IOTC_SHADOW_NOPS; op++) {
                feed(sc, topic_of(sc, (iotc_shadow_op)op, NEXT() % 2 ? IOTC_SHADOW_SFX_ACCEPTED : IOTC_SHADOW_SFX_REJECTED),
                     p, &ev);
                if (ev.type == IOTC_SHADOW_EV_RESPONSE) {
                    assert_int_equal(state_of[i], 1);
                    assert_int_equal((intptr_t)ev.user, i + 1);
                    state_of[i] = 2;
                    completions[i]++;
                }
                iotc_shadow_event_clear(&ev);
            }
        } else if (what == 3) {
            now += NEXT() % 50;
            iotc_shadow_taken tk;
            while (iotc_shadow_core_expire(sc, now, &tk)) {
                int i = (int)(intptr_t)tk.user - 1;
                assert_int_equal(state_of[i], 1);
                assert_true(deadline[i] <= now);
                state_of[i] = 2;
                completions[i]++;
            }
            for (int i = 0; i < issued; i++)
                if (state_of[i] == 1)
                    assert_true(deadline[i] > now);
        } else if (what == 4) {
            assert_int_equal(feed_t(sc, IOTC_SHADOW_OP_GET, IOTC_SHADOW_SFX_ACCEPTED, "{\"clientToken\":\"x\"}", NULL),
                             IOTC_SHADOW_EV_IGNORED);
        } else if (what == 5 && issued) {
            int i = (int)(NEXT() % (unsigned)issued);
            iotc_shadow_taken tk;
            bool took = iotc_shadow_core_take(sc, tokens[i], &tk);
            assert_int_equal(took, state_of[i] == 1);
            if (took) {
                state_of[i] = 2;
                completions[i]++;
            }
        }
    }
    iotc_shadow_taken tk;
    while (iotc_shadow_core_take_any(sc, &tk)) {
        int i = (int)(intptr_t)tk.user - 1;
        assert_int_equal(state_of[i], 1);
        state_of[i] = 2;
        completions[i]++;
    }
    for (int i = 0; i < issued; i++)
        assert_int_equal(completions[i], 1);
    iotc_shadow_core_free(sc);
#undef NEXT
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_names),
        cmocka_unit_test(test_thing_name_limits),
        cmocka_unit_test(test_shadow_name_limits),
        cmocka_unit_test(test_topics_classic),
        cmocka_unit_test(test_topics_named),
        cmocka_unit_test(test_topic_limits_and_errors),
        cmocka_unit_test(test_core_new_args),
        cmocka_unit_test(test_topic_parse),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_tokens_unique_and_short),
        cmocka_unit_test(test_token_from_random),
        cmocka_unit_test(test_get_delete_payload),
        cmocka_unit_test(test_update_payload_inserts_token),
        cmocka_unit_test(test_update_overrides_caller_token),
        cmocka_unit_test(test_update_keeps_caller_bytes),
        cmocka_unit_test(test_update_rejects_bad_json),
        cmocka_unit_test(test_begin_args),
        cmocka_unit_test(test_pending_limit),
        cmocka_unit_test(test_accepted_response),
        cmocka_unit_test(test_rejected_response),
        cmocka_unit_test(test_foreign_missing_unknown_tokens),
        cmocka_unit_test(test_named_and_classic_apart),
        cmocka_unit_test(test_duplicate_response_ignored),
        cmocka_unit_test(test_not_json_ignored),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_version_delta),
        cmocka_unit_test(test_version_documents),
        cmocka_unit_test(test_stream_without_version),
        cmocka_unit_test(test_delete_resets_versions),
        cmocka_unit_test(test_older_accepted_keeps_version),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
