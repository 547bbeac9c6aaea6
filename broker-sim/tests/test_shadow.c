/*
 * test_shadow.c: the Device Shadow service (sim_shadow.h) on its own: the
 * illustrative sequence of aws-services.md §1.4.6 message by message, every
 * error of §1.5 (with and without the clientToken echo), topic parsing,
 * merge and metadata rules, delta rules, limits at their boundaries, the
 * UNCONFIRMED switches both ways, the re-creation window, persistence and
 * allocation failures.
 *
 * Emitted payloads are parsed with cJSON and compared as JSON (every field,
 * key order ignored), never as strings.  Expected documents are written with
 * ' for " (J()) to keep them readable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "sim_shadow.h"

#define CL "$aws/things/T/shadow"
#define NM "$aws/things/T/shadow/name/cfg"

/* ---- capturing what the store publishes ------------------------------------ */

#define CAP_MAX 8

typedef struct {
    int n;
    char *topic[CAP_MAX];
    char *payload[CAP_MAX];
} cap;

static void cap_reset(cap *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->topic[i]);
        free(c->payload[i]);
    }
    c->n = 0;
}

static void on_emit(void *ctx, const char *topic, const char *payload, size_t len)
{
    cap *c = ctx;
    assert_true(c->n < CAP_MAX);
    assert_int_equal(strlen(payload), len);
    c->topic[c->n] = strdup(topic);
    c->payload[c->n] = strdup(payload);
    c->n++;
}

static char last_why[256];

static int req_bytes(sim_shadow_store *s, cap *c, const char *topic, const void *payload, size_t len, uint64_t now)
{
    cap_reset(c);
    sim_shadow_req r;
    if (!sim_shadow_parse_topic(topic, strlen(topic), &r))
        fail_msg("not a request topic: %s", topic);
    last_why[0] = '\0';
    return sim_shadow_handle(s, &r, payload, len, now, on_emit, c, last_why, sizeof last_why);
}

static int req(sim_shadow_store *s, cap *c, const char *topic, const char *payload, uint64_t now)
{
    return req_bytes(s, c, topic, payload, payload ? strlen(payload) : 0, now);
}

/* JSON written with ' for ": a few rotating buffers, so that several can be
 * used in one call. */
static const char *J(const char *text)
{
    static char ring[4][32768];
    static int k;
    char *b = ring[k++ % 4];
    size_t n = strlen(text);
    assert_true(n < sizeof ring[0]);
    for (size_t i = 0; i <= n; i++)
        b[i] = text[i] == '\'' ? '"' : text[i];
    return b;
}

/* J() into the caller's buffer, for a payload kept across other J() calls. */
#define JKEEP(name, text)                                     \
    char name##_buf[sizeof(text)];                            \
    const char *name = strcpy(name##_buf, J(text))

static void expect_json(const char *got_text, const char *want_q)
{
    cJSON *got = cJSON_Parse(got_text);
    cJSON *want = cJSON_Parse(J(want_q));
    if (!want)
        fail_msg("bad expected JSON: %s", want_q);
    if (!got)
        fail_msg("emitted text is not JSON: %s", got_text);
    if (!cJSON_Compare(got, want, true)) {
        char *w = cJSON_PrintUnformatted(want);
        print_error("got:  %s\nwant: %s\n", got_text, w);
        free(w);
        cJSON_Delete(got);
        cJSON_Delete(want);
        fail();
    }
    cJSON_Delete(got);
    cJSON_Delete(want);
}

/* Message i is on `topic` and equals the JSON `want_q`. */
static void expect_msg(const cap *c, int i, const char *topic, const char *want_q)
{
    assert_true(i < c->n);
    assert_string_equal(c->topic[i], topic);
    expect_json(c->payload[i], want_q);
}

/* Exactly one message, the error document of §1.5 on `topic`: code, message,
 * timestamp, and clientToken only when `token` is not NULL. */
static void expect_error(const cap *c, const char *topic, int code, const char *message, const char *token,
                         uint64_t ts)
{
    assert_int_equal(c->n, 1);
    assert_string_equal(c->topic[0], topic);
    cJSON *o = cJSON_Parse(c->payload[0]);
    assert_non_null(o);
    assert_true(cJSON_IsObject(o));
    const cJSON *jc = cJSON_GetObjectItemCaseSensitive(o, "code");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(o, "message");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
    const cJSON *jk = cJSON_GetObjectItemCaseSensitive(o, "clientToken");
    assert_true(cJSON_IsNumber(jc));
    assert_int_equal((int)jc->valuedouble, code);
    assert_true(jc->valuedouble == (double)code); /* an integer, not "400" */
    assert_true(cJSON_IsString(jm));
    assert_string_equal(jm->valuestring, message);
    assert_true(cJSON_IsNumber(jt));
    assert_true(jt->valuedouble == (double)ts);
    if (token) {
        assert_true(cJSON_IsString(jk));
        assert_string_equal(jk->valuestring, token);
    } else {
        assert_null(jk);
    }
    assert_int_equal(cJSON_GetArraySize(o), token ? 4 : 3);
    cJSON_Delete(o);
}

/* The current version of a shadow (via sim_shadow_document), -1 when missing. */
static long version_of(sim_shadow_store *s, const char *thing, const char *name)
{
    char *d = sim_shadow_document(s, thing, name, 0);
    if (!d)
        return -1;
    cJSON *o = cJSON_Parse(d);
    free(d);
    assert_non_null(o);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
    assert_true(cJSON_IsNumber(v));
    long r = (long)v->valuedouble;
    cJSON_Delete(o);
    return r;
}

/* The stored document (get/accepted form without clientToken) equals want_q,
 * its timestamp being `now`. */
static void expect_doc(sim_shadow_store *s, const char *thing, const char *name, uint64_t now, const char *want_q)
{
    char *d = sim_shadow_document(s, thing, name, now);
    assert_non_null(d);
    expect_json(d, want_q);
    free(d);
}

static sim_shadow_store *new_store(void (*tweak)(sim_shadow_config *))
{
    sim_shadow_config cfg;
    sim_shadow_config_init(&cfg);
    if (tweak)
        tweak(&cfg);
    sim_shadow_store *s = sim_shadow_store_new(&cfg);
    assert_non_null(s);
    return s;
}

/* Bounds of a test: the store and the capture, freed by teardown. */
typedef struct {
    sim_shadow_store *s;
    cap c;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->s = new_store(NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cap_reset(&f->c);
    sim_shadow_store_free(f->s);
    free(f);
    return 0;
}

/* Replaces the fixture's store by one with a tweaked configuration. */
static void reconfigure(fixture *f, void (*tweak)(sim_shadow_config *))
{
    sim_shadow_store_free(f->s);
    f->s = new_store(tweak);
}

/* ---- §1.4.6, step by step ------------------------------------------------- */

static void test_illustrative_sequence(void **state)
{
    fixture *f = *state;
    sim_shadow_store *s = f->s;
    cap *c = &f->c;

    /* 1. reported only: accepted and documents, no delta. */
    assert_int_equal(req(s, c, CL "/update", J("{'state':{'reported':{'c':'green'}},'clientToken':'t1'}"), 100), 200);
    assert_string_equal(last_why, "accepted");
    assert_int_equal(c->n, 2);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'reported':{'c':'green'}},'metadata':{'reported':{'c':{'timestamp':100}}},"
               "'version':1,'timestamp':100,'clientToken':'t1'}");
    expect_msg(c, 1, CL "/update/documents",
               "{'previous':null,'current':{'state':{'reported':{'c':'green'}},"
               "'metadata':{'reported':{'c':{'timestamp':100}}},'version':1},'timestamp':100,'clientToken':'t1'}");

    /* 2. desired red: accepted, delta, documents. */
    assert_int_equal(req(s, c, CL "/update", J("{'state':{'desired':{'c':'red'}},'clientToken':'t2'}"), 110), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'desired':{'c':'red'}},'metadata':{'desired':{'c':{'timestamp':110}}},"
               "'version':2,'timestamp':110,'clientToken':'t2'}");
    expect_msg(c, 1, CL "/update/delta",
               "{'version':2,'timestamp':110,'state':{'c':'red'},'metadata':{'c':{'timestamp':110}},'clientToken':'t2'}");
    expect_msg(c, 2, CL "/update/documents",
               "{'previous':{'state':{'reported':{'c':'green'}},'metadata':{'reported':{'c':{'timestamp':100}}},'version':1},"
               "'current':{'state':{'desired':{'c':'red'},'reported':{'c':'green'}},"
               "'metadata':{'desired':{'c':{'timestamp':110}},'reported':{'c':{'timestamp':100}}},'version':2},"
               "'timestamp':110,'clientToken':'t2'}");

    /* 3. reported red: in sync, no delta. */
    assert_int_equal(req(s, c, CL "/update", J("{'state':{'reported':{'c':'red'}},'clientToken':'t3'}"), 120), 200);
    assert_int_equal(c->n, 2);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'reported':{'c':'red'}},'metadata':{'reported':{'c':{'timestamp':120}}},"
               "'version':3,'timestamp':120,'clientToken':'t3'}");
    expect_msg(c, 1, CL "/update/documents",
               "{'previous':{'state':{'desired':{'c':'red'},'reported':{'c':'green'}},"
               "'metadata':{'desired':{'c':{'timestamp':110}},'reported':{'c':{'timestamp':100}}},'version':2},"
               "'current':{'state':{'desired':{'c':'red'},'reported':{'c':'red'}},"
               "'metadata':{'desired':{'c':{'timestamp':110}},'reported':{'c':{'timestamp':120}}},'version':3},"
               "'timestamp':120,'clientToken':'t3'}");

    /* 4. get. */
    assert_int_equal(req(s, c, CL "/get", J("{'clientToken':'t4'}"), 130), 200);
    assert_int_equal(c->n, 1);
    expect_msg(c, 0, CL "/get/accepted",
               "{'state':{'desired':{'c':'red'},'reported':{'c':'red'}},"
               "'metadata':{'desired':{'c':{'timestamp':110}},'reported':{'c':{'timestamp':120}}},"
               "'version':3,'timestamp':130,'clientToken':'t4'}");

    /* 5. a stale version. */
    assert_int_equal(req(s, c, CL "/update", J("{'state':{'desired':{'c':'blue'}},'version':2}"), 135), 409);
    expect_error(c, CL "/update/rejected", 409, "Version conflict", NULL, 135);
    assert_string_equal(last_why, "Version conflict");
    assert_int_equal(version_of(s, "T", ""), 3);

    /* 6. delete with an empty payload, then get: 404 naming the thing. */
    assert_int_equal(req(s, c, CL "/delete", "", 140), 200);
    assert_int_equal(c->n, 1);
    expect_msg(c, 0, CL "/delete/accepted", "{'version':3,'timestamp':140}");
    assert_int_equal(req(s, c, CL "/get", "", 150), 404);
    expect_error(c, CL "/get/rejected", 404, "No shadow exists with name: 'T'", NULL, 150);
}

/* ---- topics ------------------------------------------------------------------- */

static void test_parse_topic_accepts(void **state)
{
    (void)state;
    static const struct {
        const char *topic, *thing, *name;
        sim_shadow_op op;
    } ok[] = {
        {"$aws/things/T/shadow/get", "T", "", SIM_SHADOW_GET},
        {"$aws/things/T/shadow/update", "T", "", SIM_SHADOW_UPDATE},
        {"$aws/things/T/shadow/delete", "T", "", SIM_SHADOW_DELETE},
        {"$aws/things/my-Thing_1:x/shadow/name/cfg/update", "my-Thing_1:x", "cfg", SIM_SHADOW_UPDATE},
        {"$aws/things/T/shadow/name/$sh$1/get", "T", "$sh$1", SIM_SHADOW_GET}, /* [DOC] allows $ */
        {"$aws/things/T/shadow/name/name/get", "T", "name", SIM_SHADOW_GET},
        {"$aws/things/T/shadow/name/get/delete", "T", "get", SIM_SHADOW_DELETE},
        {"$aws/things/T/shadow/name/update/update", "T", "update", SIM_SHADOW_UPDATE},
        {"$aws/things/shadow/shadow/get", "shadow", "", SIM_SHADOW_GET},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sim_shadow_req r;
        memset(&r, 0x5a, sizeof r);
        if (!sim_shadow_parse_topic(ok[i].topic, strlen(ok[i].topic), &r))
            fail_msg("refused: %s", ok[i].topic);
        assert_string_equal(r.thing, ok[i].thing);
        assert_string_equal(r.name, ok[i].name);
        assert_int_equal(r.op, ok[i].op);
        assert_true(sim_shadow_parse_topic(ok[i].topic, strlen(ok[i].topic), NULL));
        /* Building the topic back gives the same text. */
        char buf[300];
        assert_int_equal(sim_shadow_topic(r.thing, r.name, "/", buf, sizeof buf) + strlen(sim_shadow_op_name(r.op)),
                         strlen(ok[i].topic));
        strcat(buf, sim_shadow_op_name(r.op));
        assert_string_equal(buf, ok[i].topic);
    }

    /* The longest names: 128 and 64 bytes. */
    char thing[129], name[65], topic[300];
    memset(thing, 'a', 128);
    thing[128] = '\0';
    memset(name, 'b', 64);
    name[64] = '\0';
    snprintf(topic, sizeof topic, "$aws/things/%s/shadow/name/%s/update", thing, name);
    sim_shadow_req r;
    assert_true(sim_shadow_parse_topic(topic, strlen(topic), &r));
    assert_string_equal(r.thing, thing);
    assert_string_equal(r.name, name);
    /* §1.1: the longest response topic is 234 bytes. */
    assert_int_equal(sim_shadow_topic(thing, name, "/update/documents", topic, sizeof topic), SIM_SHADOW_TOPIC_MAX);
    assert_int_equal(strlen(topic), 234);
    assert_int_equal(sim_shadow_topic(thing, name, "/update/documents", topic, 234), 0); /* no room for the NUL */
}

static void test_parse_topic_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* responses are not requests */
        "$aws/things/T/shadow/get/accepted",
        "$aws/things/T/shadow/get/rejected",
        "$aws/things/T/shadow/update/accepted",
        "$aws/things/T/shadow/update/rejected",
        "$aws/things/T/shadow/update/delta",
        "$aws/things/T/shadow/update/documents",
        "$aws/things/T/shadow/delete/accepted",
        "$aws/things/T/shadow/delete/rejected",
        "$aws/things/T/shadow/name/n/update/accepted",
        "$aws/things/T/shadow/name/n/update/delta",
        /* empty segments, trailing slashes, missing parts */
        "$aws/things//shadow/get",
        "$aws/things/T/shadow//get",
        "$aws/things/T/shadow/name//get",
        "$aws/things/T/shadow/get/",
        "$aws/things/T/shadow/name/n/get/",
        "$aws/things/T/shadow/",
        "$aws/things/T/shadow",
        "$aws/things/T/shadow/name/n",
        "$aws/things/T/shadow/name/n/",
        "$aws/things/T/shadow/name/get",
        "$aws/things/T/shadow/name",
        "$aws/things/T",
        "$aws/things/",
        "",
        /* bad names: $ in a thing name, other characters */
        "$aws/things/T$/shadow/get",
        "$aws/things/T x/shadow/get",
        "$aws/things/T.x/shadow/get",
        "$aws/things/T/shadow/name/a.b/get",
        "$aws/things/T/shadow/name/a+/get",
        "$aws/things/T/shadow/name/#/get",
        "$aws/things/+/shadow/get",
        "$aws/things/\xc3\xa9/shadow/get",
        /* other spellings and other $aws topics */
        "$aws/things/T/shadow/GET",
        "$aws/things/T/Shadow/get",
        "$aws/things/T/shadow/list",
        "$aws/things/T/shadow/namex/n/get",
        "$aws/things/T/shadow/T/get", /* the doc error of §1.1: no /name/ */
        "aws/things/T/shadow/get",
        "$aws/thing/T/shadow/get",
        "$AWS/things/T/shadow/get",
        "$aws/things/T/jobs/get",
        "$aws/events/presence/connected/T",
        "/$aws/things/T/shadow/get",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sim_shadow_req r;
        memset(&r, 0x5a, sizeof r);
        if (sim_shadow_parse_topic(bad[i], strlen(bad[i]), &r))
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal((unsigned char)r.thing[0], 0x5a); /* untouched */
    }

    /* 129-byte thing and 65-byte shadow name. */
    char thing[130], name[66], topic[400];
    memset(thing, 'a', 129);
    thing[129] = '\0';
    memset(name, 'b', 65);
    name[65] = '\0';
    snprintf(topic, sizeof topic, "$aws/things/%s/shadow/get", thing);
    assert_false(sim_shadow_parse_topic(topic, strlen(topic), NULL));
    snprintf(topic, sizeof topic, "$aws/things/T/shadow/name/%s/get", name);
    assert_false(sim_shadow_parse_topic(topic, strlen(topic), NULL));
    assert_int_equal(sim_shadow_topic(thing, "", "/get", topic, sizeof topic), 0);
    assert_int_equal(sim_shadow_topic("T", name, "/get", topic, sizeof topic), 0);
    assert_int_equal(sim_shadow_topic("T", "a/b", "/get", topic, sizeof topic), 0);
    assert_int_equal(sim_shadow_topic("", "", "/get", topic, sizeof topic), 0);

    /* The length counts: a prefix of a good topic, a NUL inside, bytes after. */
    static const char good[] = "$aws/things/T/shadow/get";
    assert_false(sim_shadow_parse_topic(good, strlen(good) - 1, NULL));
    assert_false(sim_shadow_parse_topic(good, 12, NULL));
    assert_false(sim_shadow_parse_topic(good, 0, NULL));
    assert_false(sim_shadow_parse_topic(good, sizeof good, NULL)); /* with its NUL */
    static const char nul[] = "$aws/things/T\0/shadow/get";
    assert_false(sim_shadow_parse_topic(nul, sizeof nul - 1, NULL));
    static const char longer[] = "$aws/things/T/shadow/getX";
    assert_true(sim_shadow_parse_topic(longer, sizeof longer - 2, NULL));
    assert_false(sim_shadow_parse_topic(longer, sizeof longer - 1, NULL));
    assert_false(sim_shadow_parse_topic(NULL, 0, NULL));
}

static void test_named_and_classic(void **state)
{
    fixture *f = *state;
    sim_shadow_store *s = f->s;
    cap *c = &f->c;

    assert_int_equal(req(s, c, NM "/update", J("{'state':{'desired':{'x':1}}}"), 10), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 0, NM "/update/accepted",
               "{'state':{'desired':{'x':1}},'metadata':{'desired':{'x':{'timestamp':10}}},'version':1,'timestamp':10}");
    expect_msg(c, 1, NM "/update/delta", "{'state':{'x':1},'metadata':{'x':{'timestamp':10}},'version':1,'timestamp':10}");
    assert_string_equal(c->topic[2], NM "/update/documents");

    /* The classic shadow of the same thing is another shadow. */
    assert_int_equal(req(s, c, CL "/get", J("{'clientToken':'g'}"), 11), 404);
    expect_error(c, CL "/get/rejected", 404, "No shadow exists with name: 'T'", "g", 11);
    assert_int_equal(req(s, c, CL "/delete", "", 12), 404);
    expect_error(c, CL "/delete/rejected", 404, "No shadow exists with name: 'T'", NULL, 12);

    /* A missing named shadow is named by its own name, not the thing's. */
    assert_int_equal(req(s, c, "$aws/things/T/shadow/name/other/get", "", 13), 404);
    expect_error(c, "$aws/things/T/shadow/name/other/get/rejected", 404, "No shadow exists with name: 'other'", NULL,
                 13);
    assert_int_equal(req(s, c, "$aws/things/U/shadow/name/cfg/delete", J("{'clientToken':'d'}"), 14), 404);
    expect_error(c, "$aws/things/U/shadow/name/cfg/delete/rejected", 404, "No shadow exists with name: 'cfg'", "d",
                 14);

    assert_int_equal(req(s, c, NM "/get", "", 15), 200);
    expect_msg(c, 0, NM "/get/accepted",
               "{'state':{'desired':{'x':1},'delta':{'x':1}},'metadata':{'desired':{'x':{'timestamp':10}}},"
               "'version':1,'timestamp':15}");
    assert_int_equal(req(s, c, NM "/delete", J("{'clientToken':'z'}"), 16), 200);
    expect_msg(c, 0, NM "/delete/accepted", "{'version':1,'timestamp':16,'clientToken':'z'}");
    assert_int_equal(req(s, c, NM "/get", "", 17), 404);
    expect_error(c, NM "/get/rejected", 404, "No shadow exists with name: 'cfg'", NULL, 17);
    assert_int_equal(req(s, c, NM "/delete", "", 18), 404);

    /* '$' in a shadow name works end to end. */
    assert_int_equal(req(s, c, "$aws/things/T/shadow/name/$x/update", J("{'state':{'reported':{'a':1}}}"), 19), 200);
    assert_string_equal(c->topic[0], "$aws/things/T/shadow/name/$x/update/accepted");
    assert_int_equal(version_of(s, "T", "$x"), 1);
    assert_int_equal(version_of(s, "T", NULL), -1);
}

/* ---- §1.5 errors, one per row -------------------------------------------------- */

static void test_err_encoding(void **state)
{
    fixture *f = *state;
    sim_shadow_store *s = f->s;
    cap *c = &f->c;
    static const char *const bad[] = {
        "\xff",
        "{\"state\":{},\"clientToken\":\"k\",\"x\":\"\xc3\x28\"}", /* bad UTF-8 in an otherwise valid update */
        "{\"state\":{\"desired\":{\"a\":\"\xed\xa0\x80\"}}}",      /* a surrogate */
        "{\"state\":{\"desired\":{\"a\":\"\xc0\xaf\"}}}",          /* overlong */
        "{\"state\":{\"desired\":{\"a\":\"\xf4\x90\x80\x80\"}}}",  /* past U+10FFFF */
        "{\"state\":{\"desired\":{\"a\":\"\xe2\x82\"}}}",          /* truncated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(req(s, c, CL "/update", bad[i], 5), 415);
        /* The token is not echoed: the payload could not be read. */
        expect_error(c, CL "/update/rejected", 415, "Unsupported documented encoding; supported encoding is UTF-8",
                     NULL, 5);
    }
    assert_int_equal(req(s, c, CL "/get", "{\"clientToken\":\"\xff\"}", 6), 415);
    expect_error(c, CL "/get/rejected", 415, "Unsupported documented encoding; supported encoding is UTF-8", NULL, 6);
    assert_int_equal(req(s, c, CL "/delete", "\x80", 7), 415);
    expect_error(c, CL "/delete/rejected", 415, "Unsupported documented encoding; supported encoding is UTF-8", NULL,
                 7);
    /* Valid UTF-8 beyond ASCII is fine. */
    assert_int_equal(req(s, c, CL "/update", "{\"state\":{\"desired\":{\"\xc3\xa9\":\"\xf0\x9f\x98\x80\"}}}", 8), 200);
    /* A NUL is UTF-8 but not JSON. */
    assert_int_equal(req_bytes(s, c, CL "/update", "{\"state\":{}}\0", 13, 9), 400);
    expect_error(c, CL "/update/rejected", 400, "Invalid JSON", NULL, 9);
}

static void test_err_invalid_json(void **state)
{
    fixture *f = *state;
    sim_shadow_store *s = f->s;
    cap *c = &f->c;
    static const char *const bad[] = {
        "", "{", "}", "x", "{}x", "{} {}", "[1]", "\"s\"", "null", "12", "  ",
        "{\"state\":{\"desired\":{\"a\":1e999}}}", /* no double holds it */
        "{\"state\":{\"desired\":{\"a\":\"x\x01y\"}}}", /* a raw control character */
        "{\"state\":{\"desired\":{\"a\":\"\\ud800\"}}}", /* a lone surrogate escape */
        "{\"state\":{},}",
        "{'state':{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(req(s, c, CL "/update", bad[i], 1), 400);
        expect_error(c, CL "/update/rejected", 400, "Invalid JSON", NULL, 1);
    }
    /* get and delete: empty is fine, anything else must be a JSON object. */
    static const char *const bad_get[] = {"x", "[]", "null", " ", "{\"clientToken\":\"a\"}x", "\"t\""};
    for (size_t i = 0; i < sizeof bad_get / sizeof bad_get[0]; i++) {
        assert_int_equal(req(s, c, CL "/get", bad_get[i], 2), 400);
        expect_error(c, CL "/get/rejected", 400, "Invalid JSON", NULL, 2);
        assert_int_equal(req(s, c, CL "/delete", bad_get[i], 3), 400);
        expect_error(c, CL "/delete/rejected", 400, "Invalid JSON", NULL, 3);
    }
    assert_int_equal(req(s, c, CL "/get", "", 4), 404);
    assert_int_equal(req(s, c, CL "/get", "{}", 4), 404);
    assert_int_equal(req(s, c, CL "/get", J("{'other':[null]}"), 4), 404); /* other fields are ignored */
    /* Whitespace around a document is fine; the shadow was never created. */
    assert_int_equal(req(s, c, CL "/update", " \n{\"state\":{\"reported\":{\"a\":1}}}\r\n\t", 5), 200);
    assert_int_equal(version_of(s, "T", ""), 1);
}

static void test_err_client_token(void **state)
{
    fixture *f = *state;
    sim_shadow_store *s = f->s;
    cap *c = &f->c;
    char tok65[66], tok64[65], doc[256];
    memset(tok65, 'k', 65);
    tok65[65] = '\0';
    memcpy(tok64, tok65, 64);
    tok64[64] = '\0';

    snprintf(doc, sizeof doc, "{\"state\":{\"reported\":{\"a\":1}},\"clientToken\":\"%s\"}", tok65);
    assert_int_equal(req(s, c, CL "/update", doc, 1), 400);
    expect_error(c, CL "/update/rejected", 400, "Invalid clientToken", NULL, 1); /* not echoed */
    assert_int_equal(version_of(s, "T", ""), -1);

    static const char *const not_string[] = {"1", "null", "true", "[\"a\"]", "{\"a\":1}"};
    for (size_t i = 0; i < sizeof not_string / sizeof not_string[0]; i++) {
        snprintf(doc, sizeof doc, "{\"state\":{\"reported\":{\"a\":1}},\"clientToken\":%s}", not_string[i]);
        assert_int_equal(req(s, c, CL "/update", doc, 2), 400);
        expect_error(c, CL "/update/rejected", 400, "Invalid clientToken", NULL, 2);
    }
    /* Checked on get and delete too. */
    snprintf(doc, sizeof doc, "{\"clientToken\":\"%s\"}", tok65);
    assert_int_equal(req(s, c, CL "/get", doc, 3), 400);
    expect_error(c, CL "/get/rejected", 400, "Invalid clientToken", NULL, 3);
    assert_int_equal(req(s, c, CL "/delete", J("{'clientToken':7}"), 3), 400);
    expect_error(c, CL "/delete/rejected", 400, "Invalid clientToken", NULL, 3);

    /* 64 bytes: accepted and echoed everywhere. */
    snprintf(doc, sizeof doc, "{\"state\":{\"desired\":{\"a\":1}},\"clientToken\":\"%s\"}", tok64);
    assert_int_equal(req(s, c, CL "/update", doc, 4), 200);
    assert_int_equal(c->n, 3);
    for (int i = 0; i < 3; i++) {
        cJSON *o = cJSON_Parse(c->payload[i]);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "clientToken")->valuestring, tok64);
        cJSON_Delete(o);
    }
    /* The empty string is a token too. */
    assert_int_equal(req(s, c, CL "/get", J("{'clientToken':''}"), 5), 200);
    expect_msg(c, 0, CL "/get/accepted",
               "{'state':{'desired':{'a':1},'delta':{'a':1}},'metadata':{'desired':{'a':{'timestamp':4}}},"
               "'version':1,'timestamp':5,'clientToken':''}");

    /* A configured limit. */
    sim_shadow_store_free(f->s);
    sim_shadow_config cfg;
    sim_shadow_config_init(&cfg);
    cfg.max_client_token = 3;
    s = f->s = sim_shadow_store_new(&cfg);
    assert_int_equal(req(s, c, CL "/get", J("{'clientToken':'abc'}"), 6), 404);
    assert_int_equal(req(s, c, CL "/get", J("{'clientToken':'abcd'}"), 6), 400);
}

static void test_err_missing_state(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'clientToken':'k','desired':{'a':1}}"), 7), 400);
    expect_error(c, CL "/update/rejected", 400, "Missing required node: state", "k", 7);
    assert_int_equal(req(f->s, c, CL "/update", "{}", 7), 400);
    expect_error(c, CL "/update/rejected", 400, "Missing required node: state", NULL, 7);
    assert_int_equal(req(f->s, c, CL "/update", J("{'State':{}}"), 7), 400); /* case matters */
    assert_int_equal(version_of(f->s, "T", ""), -1);
}

static void test_err_state_not_object(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    static const char *const v[] = {"5", "\"x\"", "[]", "[{}]", "true", "false"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char doc[128];
        snprintf(doc, sizeof doc, "{\"state\":%s,\"clientToken\":\"k\"}", v[i]);
        assert_int_equal(req(f->s, c, CL "/update", doc, 8), 400);
        expect_error(c, CL "/update/rejected", 400, "State node must be an object", "k", 8);
    }
}

static void test_err_invalid_node(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'delta':{'a':1}},'clientToken':'k'}"), 9), 400);
    expect_error(c, CL "/update/rejected", 400, "State contains an invalid node: 'delta'", "k", 9);
    assert_string_equal(last_why, "State contains an invalid node: 'delta'");
    /* The first offending key in document order; valid sections do not help. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1},'foo':1,'bar':2}}"), 9), 400);
    expect_error(c, CL "/update/rejected", 400, "State contains an invalid node: 'foo'", NULL, 9);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'Desired':{'a':1}}}"), 9), 400);
    expect_error(c, CL "/update/rejected", 400, "State contains an invalid node: 'Desired'", NULL, 9);
    assert_int_equal(version_of(f->s, "T", ""), -1);
}

static void test_err_section_not_object(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':5},'clientToken':'k'}"), 10), 400);
    expect_error(c, CL "/update/rejected", 400, "Desired node must be an object", "k", 10);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':[1]},'clientToken':'k'}"), 10), 400);
    expect_error(c, CL "/update/rejected", 400, "Reported node must be an object", "k", 10);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':'x','desired':true}}"), 10), 400);
    expect_error(c, CL "/update/rejected", 400, "Desired node must be an object", NULL, 10);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1},'reported':false}}"), 10), 400);
    expect_error(c, CL "/update/rejected", 400, "Reported node must be an object", NULL, 10);
    assert_int_equal(version_of(f->s, "T", ""), -1);
}

static void test_err_array_with_null(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    static const char *const bad[] = {
        "{'state':{'desired':{'a':[1,null]}},'clientToken':'k'}",
        "{'state':{'reported':{'a':[[null]]}},'clientToken':'k'}",
        "{'state':{'desired':{'b':{'a':[{'x':null}]}}},'clientToken':'k'}",
        "{'state':{'desired':{'a':[null]},'reported':{'b':1}},'clientToken':'k'}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(req(f->s, c, CL "/update", J(bad[i]), 11), 400);
        /* The token was valid: it is echoed. */
        expect_error(c, CL "/update/rejected", 400, "Invalid JSON", "k", 11);
    }
    assert_int_equal(version_of(f->s, "T", ""), -1);
    /* null outside arrays deletes; arrays without null are fine. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':[1,[2],{'x':3}],'b':null}}}"), 12), 200);
}

static void test_err_version_invalid(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    static const char *const bad[] = {"-1", "1.5", "\"1\"", "null", "true", "[1]", "{}", "1e300", "9007199254740994"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char doc[128];
        snprintf(doc, sizeof doc, "{\"state\":{\"reported\":{\"a\":1}},\"version\":%s,\"clientToken\":\"k\"}", bad[i]);
        assert_int_equal(req(f->s, c, CL "/update", doc, 12), 400);
        expect_error(c, CL "/update/rejected", 400, "Invalid version", "k", 12);
    }
    assert_int_equal(version_of(f->s, "T", ""), -1);
    /* 0 is the current version of a shadow that never existed; 1.0 is 1. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':1}},'version':0}"), 13), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':2}},'version':1.0}"), 14), 200);
    assert_int_equal(version_of(f->s, "T", ""), 2);
}

/* {"k1":{"k2":...{"kN":1}...}}: a desired section with keys down to level n. */
static char *nested(int n, const char *leaf)
{
    size_t cap_ = (size_t)n * 16 + strlen(leaf) + 64;
    char *b = malloc(cap_);
    assert_non_null(b);
    size_t k = (size_t)snprintf(b, cap_, "{\"state\":{\"desired\":");
    for (int i = 1; i <= n; i++)
        k += (size_t)snprintf(b + k, cap_ - k, "{\"k%d\":", i);
    k += (size_t)snprintf(b + k, cap_ - k, "%s", leaf);
    for (int i = 0; i <= n; i++)
        b[k++] = '}';
    snprintf(b + k, cap_ - k, ",\"clientToken\":\"k\"}");
    return b;
}

static void depth2(sim_shadow_config *cfg)
{
    cfg->max_depth = 2;
}

static void test_err_depth(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* Default 6: keys down to level 6 pass, a 7th level does not. */
    char *d = nested(6, "1");
    assert_int_equal(req(f->s, c, CL "/update", d, 20), 200);
    free(d);
    d = nested(7, "1");
    assert_int_equal(req(f->s, c, CL "/update", d, 21), 400);
    expect_error(c, CL "/update/rejected", 400, "JSON contains too many levels of nesting; maximum is 6", "k", 21);
    free(d);
    /* An array is a level too: its elements sit one level below its key. */
    d = nested(5, "[1]");
    assert_int_equal(req(f->s, c, CL "/update", d, 22), 200);
    free(d);
    d = nested(6, "[1]");
    assert_int_equal(req(f->s, c, CL "/update", d, 23), 400);
    free(d);
    /* An empty object or array at level 6 holds nothing deeper. */
    d = nested(6, "{}");
    assert_int_equal(req(f->s, c, CL "/update", d, 24), 200);
    free(d);
    d = nested(6, "[]");
    assert_int_equal(req(f->s, c, CL "/update", d, 24), 200);
    free(d);
    assert_int_equal(version_of(f->s, "T", ""), 4);
    /* reported is checked the same way. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':{'b':{'c':{'d':{'e':{'f':{'g':1}}}}}}}}}"), 25),
                     400);

    reconfigure(f, depth2);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':{'b':1}}}}"), 26), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':{'b':{'c':1}}}}}"), 27), 400);
    expect_error(c, CL "/update/rejected", 400, "JSON contains too many levels of nesting; maximum is 2", NULL, 27);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':[[1]]}}}"), 27), 400);
}

static void test_err_version_conflict(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* A shadow that never existed is at version 0. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':1}},'version':1,'clientToken':'k'}"), 30),
                     409);
    expect_error(c, CL "/update/rejected", 409, "Version conflict", "k", 30);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':1}}}"), 31), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':2}},'version':0}"), 32), 409);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':2}},'version':2}"), 32), 409);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':2}},'version':1,'clientToken':'m'}"), 33),
                     200);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'reported':{'a':2}},'metadata':{'reported':{'a':{'timestamp':33}}},'version':2,"
               "'timestamp':33,'clientToken':'m'}");
    assert_int_equal(version_of(f->s, "T", ""), 2);
}

/* An update of desired {"a": "x...x"} with n x's: n + 8 bytes compact. */
static char *big_update(size_t n, const char *section, const char *extra)
{
    char *b = malloc(n + 256);
    assert_non_null(b);
    int k = snprintf(b, n + 256, "{\"state\":{\"%s\":{\"a\":\"", section);
    memset(b + k, 'x', n);
    snprintf(b + (size_t)k + n, 256 - (size_t)k, "\"}%s}}", extra);
    return b;
}

/* The compact size of the stored desired + reported, from the list. */
static size_t stored_size(sim_shadow_store *s)
{
    char *l = sim_shadow_list(s);
    cJSON *a = cJSON_Parse(l);
    free(l);
    assert_int_equal(cJSON_GetArraySize(a), 1);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a, 0), "state");
    size_t n = 0;
    for (const cJSON *sec = st->child; sec; sec = sec->next) {
        char *t = cJSON_PrintUnformatted(sec);
        n += strlen(t);
        free(t);
    }
    cJSON_Delete(a);
    return n;
}

static void test_err_too_big(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* One byte over, on creation: refused, and nothing is created. */
    char *u = big_update(8192 - 8 + 1, "desired", "");
    assert_int_equal(req(f->s, c, CL "/update", u, 40), 413);
    expect_error(c, CL "/update/rejected", 413, "The payload exceeds the maximum size allowed", NULL, 40);
    free(u);
    assert_int_equal(version_of(f->s, "T", ""), -1);

    /* Exactly 8192: {"a":"<8184 x>"}. */
    u = big_update(8192 - 8, "desired", "");
    assert_int_equal(req(f->s, c, CL "/update", u, 41), 200);
    free(u);
    assert_int_equal(stored_size(f->s), 8192);

    /* The merged document counts, not the request: a 7-byte reported
     * {"b":1} is too much now. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'b':1}},'clientToken':'k'}"), 42), 413);
    expect_error(c, CL "/update/rejected", 413, "The payload exceeds the maximum size allowed", "k", 42);
    assert_int_equal(version_of(f->s, "T", ""), 1);
    assert_int_equal(stored_size(f->s), 8192);

    /* Both sections in one request adding up to 8192 exactly, then one more byte. */
    u = big_update(8192 - 8 - 7, "desired", ",\"reported\":{\"b\":1}");
    assert_int_equal(req(f->s, c, CL "/update", u, 43), 200);
    free(u);
    assert_int_equal(stored_size(f->s), 8192);
    u = big_update(8192 - 8 - 7 + 1, "desired", "");
    assert_int_equal(req(f->s, c, CL "/update", u, 44), 413);
    free(u);
    /* Deleting makes room: a request bigger than the limit may still fit
     * once merged (nulls remove). */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':null,'c':1}}}"), 45), 200);
    assert_int_equal(stored_size(f->s), 7 + 7);
    assert_int_equal(version_of(f->s, "T", ""), 3);
}

static void two_shadows(sim_shadow_config *cfg)
{
    cfg->max_shadows = 2;
}

static void test_err_too_many(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    reconfigure(f, two_shadows);
    JKEEP(up, "{'state':{'reported':{'a':1}},'clientToken':'k'}");
    assert_int_equal(req(f->s, c, CL "/update", up, 50), 200);
    assert_int_equal(req(f->s, c, NM "/update", up, 50), 200);
    assert_int_equal(req(f->s, c, "$aws/things/U/shadow/update", up, 51), 429);
    expect_error(c, "$aws/things/U/shadow/update/rejected", 429, "Too many shadows", "k", 51);
    /* Existing shadows still update. */
    assert_int_equal(req(f->s, c, CL "/update", up, 52), 200);
    /* A deletion makes room (the remembered deletion does not count). */
    assert_int_equal(req(f->s, c, NM "/delete", "", 53), 200);
    assert_int_equal(req(f->s, c, "$aws/things/U/shadow/update", up, 54), 200);
    size_t live, gone;
    sim_shadow_stats(f->s, &live, &gone);
    assert_int_equal(live, 2);
    assert_int_equal(gone, 1);
    /* Nor may a remembered one come back while the store is full. */
    assert_int_equal(req(f->s, c, NM "/update", up, 55), 429);
}

/* ---- merge, metadata, null ------------------------------------------------------- */

static void test_accepted_echoes_nulls(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1,'b':{'c':2}},'reported':{'r':1}}}"), 1),
                     200);
    assert_int_equal(req(f->s, c, CL "/update",
                         J("{'state':{'desired':{'a':null,'b':{'c':null,'d':[1,{'e':2}]},'z':null},'reported':null},"
                           "'ignored':1}"),
                         2),
                     200);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'desired':{'a':null,'b':{'c':null,'d':[1,{'e':2}]},'z':null},'reported':null},"
               "'metadata':{'desired':{'a':{'timestamp':2},'b':{'c':{'timestamp':2},"
               "'d':[{'timestamp':2},{'e':{'timestamp':2}}]},'z':{'timestamp':2}},'reported':{'timestamp':2}},"
               "'version':2,'timestamp':2}");
    expect_doc(f->s, "T", "", 3,
               "{'state':{'desired':{'b':{'d':[1,{'e':2}]}},'delta':{'b':{'d':[1,{'e':2}]}}},"
               "'metadata':{'desired':{'b':{'d':[{'timestamp':2},{'e':{'timestamp':2}}]}}},'version':2,'timestamp':3}");
}

static void test_null_deletion(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update",
                         J("{'state':{'desired':{'a':1,'b':{'c':1,'d':2},'e':[1]},'reported':{'x':1}}}"), 10),
                     200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':null,'b':{'c':null},'nope':null}}}"), 20),
                     200);
    /* Deleted keys lose their metadata; the others keep theirs. */
    expect_doc(f->s, "T", "", 21,
               "{'state':{'desired':{'b':{'d':2},'e':[1]},'reported':{'x':1},'delta':{'b':{'d':2},'e':[1]}},"
               "'metadata':{'desired':{'b':{'d':{'timestamp':10}},'e':[{'timestamp':10}]},"
               "'reported':{'x':{'timestamp':10}}},'version':2,'timestamp':21}");
    /* "desired": null drops the section. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':null}}"), 30), 200);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'desired':null},'metadata':{'desired':{'timestamp':30}},'version':3,'timestamp':30}");
    expect_doc(f->s, "T", "", 31,
               "{'state':{'reported':{'x':1}},'metadata':{'reported':{'x':{'timestamp':10}}},'version':3,'timestamp':31}");
    /* A section emptied key by key is dropped too; the shadow stays. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'x':null}}}"), 40), 200);
    expect_doc(f->s, "T", "", 41, "{'state':{},'metadata':{},'version':4,'timestamp':41}");
    expect_msg(c, 1, CL "/update/documents",
               "{'previous':{'state':{'reported':{'x':1}},'metadata':{'reported':{'x':{'timestamp':10}}},'version':3},"
               "'current':{'state':{},'metadata':{},'version':4},'timestamp':40}");
    /* Deleting what is not there, in a section that is not there. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'q':null}}}"), 50), 200);
    expect_doc(f->s, "T", "", 51, "{'state':{},'metadata':{},'version':5,'timestamp':51}");
    /* An empty section in a request changes nothing. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{}}}"), 60), 200);
    expect_doc(f->s, "T", "", 61, "{'state':{},'metadata':{},'version':6,'timestamp':61}");
}

static void test_state_null(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1},'reported':{'b':2}}}"), 10), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':null,'clientToken':'s'}"), 20), 200);
    assert_int_equal(c->n, 2); /* no delta: nothing is desired */
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':null,'metadata':{'timestamp':20},'version':2,'timestamp':20,'clientToken':'s'}");
    expect_msg(c, 1, CL "/update/documents",
               "{'previous':{'state':{'desired':{'a':1},'reported':{'b':2}},"
               "'metadata':{'desired':{'a':{'timestamp':10}},'reported':{'b':{'timestamp':10}}},'version':1},"
               "'current':{'state':{},'metadata':{},'version':2},'timestamp':20,'clientToken':'s'}");
    /* The shadow still exists, empty; get and list show it. */
    assert_int_equal(req(f->s, c, CL "/get", "", 21), 200);
    expect_msg(c, 0, CL "/get/accepted", "{'state':{},'metadata':{},'version':2,'timestamp':21}");
    char *l = sim_shadow_list(f->s);
    expect_json(l, "[{'thing':'T','name':null,'version':2,'state':{}}]");
    free(l);
    /* And the next update carries on from version 2. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'b':3}}}"), 30), 200);
    assert_int_equal(version_of(f->s, "T", ""), 3);
    /* state: null on a new shadow creates it, empty. */
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':null}"), 31), 200);
    expect_doc(f->s, "T", "cfg", 32, "{'state':{},'metadata':{},'version':1,'timestamp':32}");
}

static void test_arrays(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'rgb':[255,255,0],'e':[]}}}"), 10), 200);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'desired':{'rgb':[255,255,0],'e':[]}},"
               "'metadata':{'desired':{'rgb':[{'timestamp':10},{'timestamp':10},{'timestamp':10}],'e':[]}},"
               "'version':1,'timestamp':10}");
    /* A new array replaces the whole old one, metadata included. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'rgb':[1]}}}"), 20), 200);
    expect_doc(f->s, "T", "", 21,
               "{'state':{'desired':{'rgb':[1],'e':[]},'delta':{'rgb':[1],'e':[]}},"
               "'metadata':{'desired':{'rgb':[{'timestamp':20}],'e':[]}},'version':2,'timestamp':21}");
    /* Objects inside arrays get object metadata; arrays of arrays nest. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'rgb':[{'x':1},[2,3]]}}}"), 30), 200);
    expect_doc(f->s, "T", "", 31,
               "{'state':{'desired':{'rgb':[{'x':1},[2,3]],'e':[]},'delta':{'rgb':[{'x':1},[2,3]],'e':[]}},"
               "'metadata':{'desired':{'rgb':[{'x':{'timestamp':30}},[{'timestamp':30},{'timestamp':30}]],'e':[]}},"
               "'version':3,'timestamp':31}");
    /* An object replaces an array, and an array an object. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'rgb':{'r':1},'e':{'z':[]}}}}"), 40), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'e':[true]}}}"), 41), 200);
    expect_doc(f->s, "T", "", 42,
               "{'state':{'desired':{'rgb':{'r':1},'e':[true]},'delta':{'rgb':{'r':1},'e':[true]}},"
               "'metadata':{'desired':{'rgb':{'r':{'timestamp':40}},'e':[{'timestamp':41}]}},"
               "'version':5,'timestamp':42}");
    /* Arrays compare whole for the delta: same elements, no delta; order matters. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'rgb':{'r':1},'e':[true]}}}"), 50), 200);
    assert_int_equal(c->n, 2);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'e':[1,2]},'reported':{'e':[2,1]}}}"), 51), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 1, CL "/update/delta", "{'state':{'e':[1,2]},'metadata':{'e':[{'timestamp':51},{'timestamp':51}]},"
                                         "'version':7,'timestamp':51}");
    /* An array with null is refused (test_err_array_with_null) and changes nothing. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'e':[null]}}}"), 52), 400);
    assert_int_equal(version_of(f->s, "T", ""), 7);
}

/* ---- delta ------------------------------------------------------------------------ */

static void test_delta_reported_only_mismatch(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* [OBS v2 sample]: a reported-only update that creates a mismatch
     * sends the delta, with desired's (old) timestamp. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'Status':'Great'},'reported':{'Status':'Great'}}}"),
                         10),
                     200);
    assert_int_equal(c->n, 2); /* in sync: no delta */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'Status':'Awful'}},'clientToken':'r'}"), 20), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 1, CL "/update/delta",
               "{'version':2,'timestamp':20,'state':{'Status':'Great'},'metadata':{'Status':{'timestamp':10}},"
               "'clientToken':'r'}");
    /* Reported-only keys never appear; a string is not a number. */
    assert_int_equal(req(f->s, c, CL "/update",
                         J("{'state':{'desired':{'Status':'Awful','n':'1'},'reported':{'n':1,'extra':true}}}"), 30),
                     200);
    expect_msg(c, 1, CL "/update/delta",
               "{'version':3,'timestamp':30,'state':{'n':'1'},'metadata':{'n':{'timestamp':30}}}");
    /* Nested: the path from the root, only the differing leaf. */
    assert_int_equal(req(f->s, c, CL "/update",
                         J("{'state':{'desired':{'n':1,'l':{'c':{'r':1,'g':255},'on':true}},"
                           "'reported':{'l':{'c':{'r':1,'g':0},'on':true}}}}"),
                         40),
                     200);
    expect_msg(c, 1, CL "/update/delta",
               "{'version':4,'timestamp':40,'state':{'l':{'c':{'g':255}}},'metadata':{'l':{'c':{'g':{'timestamp':40}}}}}");
    /* A desired object against a reported scalar: the whole object. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'l':5}}}"), 50), 200);
    expect_msg(c, 1, CL "/update/delta",
               "{'version':5,'timestamp':50,'state':{'l':{'c':{'r':1,'g':255},'on':true}},"
               "'metadata':{'l':{'c':{'r':{'timestamp':40},'g':{'timestamp':40}},'on':{'timestamp':40}}}}");
    /* get shows the delta in state. */
    expect_doc(f->s, "T", "", 51,
               "{'state':{'desired':{'Status':'Awful','n':1,'l':{'c':{'r':1,'g':255},'on':true}},"
               "'reported':{'Status':'Awful','n':1,'extra':true,'l':5},"
               "'delta':{'l':{'c':{'r':1,'g':255},'on':true}}},"
               "'metadata':{'desired':{'Status':{'timestamp':30},'n':{'timestamp':40},"
               "'l':{'c':{'r':{'timestamp':40},'g':{'timestamp':40}},'on':{'timestamp':40}}},"
               "'reported':{'Status':{'timestamp':20},'n':{'timestamp':30},'extra':{'timestamp':30},'l':{'timestamp':50}}},"
               "'version':5,'timestamp':51}");
}

static void test_delta_sync_and_removal(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1,'b':2}}}"), 10), 200);
    expect_msg(c, 1, CL "/update/delta",
               "{'version':1,'timestamp':10,'state':{'a':1,'b':2},'metadata':{'a':{'timestamp':10},'b':{'timestamp':10}}}");
    /* The whole remaining delta, not just this request's keys. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':1}}}"), 20), 200);
    expect_msg(c, 1, CL "/update/delta",
               "{'version':2,'timestamp':20,'state':{'b':2},'metadata':{'b':{'timestamp':10}}}");
    /* Bringing them into sync: no delta. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'b':2}}}"), 30), 200);
    assert_int_equal(c->n, 2);
    assert_string_equal(c->topic[1], CL "/update/documents");
    /* Removing the desired key that differed (issue js #52): no delta. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'c':3}}}"), 40), 200);
    assert_int_equal(c->n, 3);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'c':null}}}"), 50), 200);
    assert_int_equal(c->n, 2);
    expect_doc(f->s, "T", "", 51,
               "{'state':{'desired':{'a':1,'b':2},'reported':{'a':1,'b':2}},"
               "'metadata':{'desired':{'a':{'timestamp':10},'b':{'timestamp':10}},"
               "'reported':{'a':{'timestamp':20},'b':{'timestamp':30}}},'version':5,'timestamp':51}");
}

static void delta_on_change(sim_shadow_config *cfg)
{
    cfg->delta_when_unchanged = false;
}

static void test_delta_when_unchanged(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* true (default, [GG]): every accepted update with a non-empty delta. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'b':2}}}"), 10), 200);
    assert_int_equal(c->n, 3);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'z':9}}}"), 20), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 1, CL "/update/delta", "{'version':2,'timestamp':20,'state':{'b':2},'metadata':{'b':{'timestamp':10}}}");

    /* false: only when the delta changed. */
    reconfigure(f, delta_on_change);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'b':2}}}"), 10), 200);
    assert_int_equal(c->n, 3); /* from nothing to {"b":2} */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'z':9}}}"), 20), 200);
    assert_int_equal(c->n, 2);
    assert_string_equal(c->topic[0], CL "/update/accepted");
    assert_string_equal(c->topic[1], CL "/update/documents");
    /* The same value desired again: same delta, none sent. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'b':2}}}"), 25), 200);
    assert_int_equal(c->n, 2);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'b':3}}}"), 30), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 1, CL "/update/delta", "{'version':4,'timestamp':30,'state':{'b':3},'metadata':{'b':{'timestamp':30}}}");
    /* A shrinking delta is a change too. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'c':1}}}"), 40), 200);
    assert_int_equal(c->n, 3);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'c':1}}}"), 50), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 1, CL "/update/delta", "{'version':6,'timestamp':50,'state':{'b':3},'metadata':{'b':{'timestamp':30}}}");
}

static void test_number_equality(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* 1 and 1.0 are the same number: no delta ([GG]; UNCONFIRMED for IoT Core). */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'n':1,'x':1.5,'e':1e2},"
                                                  "'reported':{'n':1.0,'x':1.50,'e':100}}}"),
                         10),
                     200);
    assert_int_equal(c->n, 2);
    expect_doc(f->s, "T", "", 11,
               "{'state':{'desired':{'n':1,'x':1.5,'e':100},'reported':{'n':1,'x':1.5,'e':100}},"
               "'metadata':{'desired':{'n':{'timestamp':10},'x':{'timestamp':10},'e':{'timestamp':10}},"
               "'reported':{'n':{'timestamp':10},'x':{'timestamp':10},'e':{'timestamp':10}}},'version':1,'timestamp':11}");
    /* Inside arrays too. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':[1,2.0]},'reported':{'a':[1.0,2]}}}"), 20),
                     200);
    assert_int_equal(c->n, 2);
    /* But 1 is not true, nor "1". */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'n':true}}}"), 30), 200);
    assert_int_equal(c->n, 3);
}

/* ---- versions -------------------------------------------------------------------- */

static void test_recreate_window(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    const uint64_t t0 = 1000000, window = 172800;
    JKEEP(up, "{'state':{'reported':{'a':1}}}");
    /* Two shadows at version 2, both deleted at t0. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(req(f->s, c, CL "/update", up, t0 - 10), 200);
        assert_int_equal(req(f->s, c, NM "/update", up, t0 - 10), 200);
    }
    assert_int_equal(req(f->s, c, CL "/delete", "", t0), 200);
    expect_msg(c, 0, CL "/delete/accepted", "{'version':2,'timestamp':1000000}");
    assert_int_equal(req(f->s, c, NM "/delete", "", t0), 200);
    size_t live, gone;
    sim_shadow_stats(f->s, &live, &gone);
    assert_int_equal(live, 0);
    assert_int_equal(gone, 2);
    /* Deleted means deleted, even while remembered. */
    assert_int_equal(req(f->s, c, CL "/get", "", t0 + 1), 404);
    assert_int_equal(req(f->s, c, CL "/delete", "", t0 + 1), 404);
    assert_null(sim_shadow_document(f->s, "T", "", t0 + 1));

    /* Exactly 48 h later: still within; the remembered version is current. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':1}},'version':0}"), t0 + window), 409);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'a':1}},'version':2}"), t0 + window), 200);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'reported':{'a':1}},'metadata':{'reported':{'a':{'timestamp':1172800}}},'version':3,"
               "'timestamp':1172800}");
    /* A re-creation: previous is null. */
    expect_msg(c, 1, CL "/update/documents",
               "{'previous':null,'current':{'state':{'reported':{'a':1}},"
               "'metadata':{'reported':{'a':{'timestamp':1172800}}},'version':3},'timestamp':1172800}");

    /* One second more: the version starts again. */
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{'reported':{'a':1}},'version':2}"), t0 + window + 1), 409);
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{'reported':{'a':1}},'version':0}"), t0 + window + 1), 200);
    assert_int_equal(version_of(f->s, "T", "cfg"), 1);
    sim_shadow_stats(f->s, &live, &gone);
    assert_int_equal(live, 2);
    assert_int_equal(gone, 0);

    /* A clock that went back: the later deletion (U) is the older one.
     * When only U's window has passed, U is forgotten (its re-creation
     * starts at 1) while T, ahead of it in the list, is still remembered. */
    const uint64_t t1 = 5000000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(req(f->s, c, "$aws/things/U/shadow/update", up, t1 - 200), 200);
    assert_int_equal(req(f->s, c, CL "/delete", "", t1), 200);
    assert_int_equal(req(f->s, c, "$aws/things/U/shadow/delete", "", t1 - 100), 200);
    assert_int_equal(req(f->s, c, "$aws/things/U/shadow/get", "", t1 - 100 + window + 1), 404);
    sim_shadow_stats(f->s, &live, &gone);
    assert_int_equal(gone, 1);
    assert_int_equal(req(f->s, c, "$aws/things/U/shadow/update", up, t1 - 100 + window + 1), 200);
    assert_int_equal(version_of(f->s, "U", ""), 1);
    assert_int_equal(req(f->s, c, CL "/update", up, t1 - 100 + window + 1), 200);
    assert_int_equal(version_of(f->s, "T", ""), 4);
}

static void test_recreate_memory_is_bounded(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    sim_shadow_store_free(f->s);
    sim_shadow_config cfg;
    sim_shadow_config_init(&cfg);
    cfg.max_shadows = 3;
    f->s = sim_shadow_store_new(&cfg);
    /* Create (version 1) and delete ten shadows: only the last three
     * deletions are remembered. */
    for (int i = 0; i < 10; i++) {
        char topic[64];
        snprintf(topic, sizeof topic, "$aws/things/t%d/shadow/update", i);
        assert_int_equal(req(f->s, c, topic, J("{'state':{'reported':{'a':1}}}"), 100), 200);
        snprintf(topic, sizeof topic, "$aws/things/t%d/shadow/delete", i);
        assert_int_equal(req(f->s, c, topic, "", 100 + (uint64_t)i), 200);
        size_t live, gone;
        sim_shadow_stats(f->s, &live, &gone);
        assert_int_equal(live, 0);
        assert_true(gone <= 3);
    }
    assert_int_equal(req(f->s, c, "$aws/things/t0/shadow/update", J("{'state':{'reported':{'a':1}}}"), 200), 200);
    assert_int_equal(version_of(f->s, "t0", ""), 1); /* forgotten: starts again */
    assert_int_equal(req(f->s, c, "$aws/things/t9/shadow/update", J("{'state':{'reported':{'a':1}}}"), 200), 200);
    assert_int_equal(version_of(f->s, "t9", ""), 2); /* remembered: continues */
}

static void no_bump(sim_shadow_config *cfg)
{
    cfg->version_on_noop = false;
}

static void test_version_on_noop(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* true (default, [GG]): an update that changes nothing still counts. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1}}}"), 10), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1.0}}}"), 20), 200);
    assert_int_equal(version_of(f->s, "T", ""), 2);
    expect_doc(f->s, "T", "", 21,
               "{'state':{'desired':{'a':1},'delta':{'a':1}},'metadata':{'desired':{'a':{'timestamp':20}}},"
               "'version':2,'timestamp':21}");
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{}}"), 30), 200);
    assert_int_equal(version_of(f->s, "T", ""), 3);

    /* false: nothing changes, the version included, but it is answered. */
    reconfigure(f, no_bump);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1}}}"), 10), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1}},'clientToken':'n'}"), 20), 200);
    assert_int_equal(c->n, 3);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'desired':{'a':1}},'metadata':{'desired':{'a':{'timestamp':20}}},'version':1,"
               "'timestamp':20,'clientToken':'n'}");
    expect_msg(c, 2, CL "/update/documents",
               "{'previous':{'state':{'desired':{'a':1}},'metadata':{'desired':{'a':{'timestamp':10}}},'version':1},"
               "'current':{'state':{'desired':{'a':1}},'metadata':{'desired':{'a':{'timestamp':10}}},'version':1},"
               "'timestamp':20,'clientToken':'n'}");
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{}}"), 30), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'q':null}}}"), 31), 200);
    assert_int_equal(version_of(f->s, "T", ""), 1);
    /* A version check still applies to the unchanged version. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{},'version':1}"), 32), 200);
    /* A real change counts. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':2}}}"), 40), 200);
    assert_int_equal(version_of(f->s, "T", ""), 2);
    /* Creating an empty shadow is a change. */
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{}}"), 50), 200);
    assert_int_equal(version_of(f->s, "T", "cfg"), 1);
}

static void drop_empty(sim_shadow_config *cfg)
{
    cfg->keep_empty_parents = false;
}

static void test_keep_empty_parents(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    JKEEP(setup_up, "{'state':{'desired':{'a':{'b':1},'z':1,'s':'x'}}}");
    JKEEP(empty_a, "{'state':{'desired':{'a':{'b':null},'n':{'x':null},'e':{},'s':{'q':null}}}}");
    /* true (default, [GG]): the emptied parent stays as {}, metadata too;
     * a new object of only nulls is not created (and replaces nothing: s
     * goes); an explicit {} is stored. */
    assert_int_equal(req(f->s, c, CL "/update", setup_up, 10), 200);
    assert_int_equal(req(f->s, c, CL "/update", empty_a, 20), 200);
    expect_doc(f->s, "T", "", 21,
               "{'state':{'desired':{'a':{},'z':1,'e':{}},'delta':{'z':1}},"
               "'metadata':{'desired':{'a':{},'z':{'timestamp':10},'e':{}}},'version':2,'timestamp':21}");
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{'reported':{'n':{'m':{'x':null},'k':1,'e':{}}}}}"), 25), 200);
    expect_doc(f->s, "T", "cfg", 26,
               "{'state':{'reported':{'n':{'k':1,'e':{}}}},'metadata':{'reported':{'n':{'k':{'timestamp':25},'e':{}}}},"
               "'version':1,'timestamp':26}");

    /* false: no empty object is kept, an explicit {} included. */
    reconfigure(f, drop_empty);
    assert_int_equal(req(f->s, c, CL "/update", setup_up, 10), 200);
    assert_int_equal(req(f->s, c, CL "/update", empty_a, 20), 200);
    expect_doc(f->s, "T", "", 21,
               "{'state':{'desired':{'z':1},'delta':{'z':1}},'metadata':{'desired':{'z':{'timestamp':10}}},"
               "'version':2,'timestamp':21}");
    /* Inside a new object, a member of only nulls is not created either. */
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{'reported':{'n':{'m':{'x':null},'k':1,'e':{}}}}}"), 25), 200);
    expect_doc(f->s, "T", "cfg", 26,
               "{'state':{'reported':{'n':{'k':1}}},'metadata':{'reported':{'n':{'k':{'timestamp':25}}}},"
               "'version':1,'timestamp':26}");
    /* Deep emptying collapses every level. */
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'p':{'q':{'r':1}},'k':1}}}"), 30), 200);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'reported':{'p':{'q':{'r':null}}}}}"), 40), 200);
    expect_doc(f->s, "T", "", 41,
               "{'state':{'desired':{'z':1},'reported':{'k':1},'delta':{'z':1}},"
               "'metadata':{'desired':{'z':{'timestamp':10}},'reported':{'k':{'timestamp':30}}},"
               "'version':4,'timestamp':41}");
}

static void test_duplicate_keys(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    /* The last of duplicate keys wins, at every level. */
    assert_int_equal(req(f->s, c, CL "/update",
                         "{\"state\":{\"desired\":{\"a\":1,\"a\":{\"b\":1,\"b\":2}}},"
                         "\"state\":{\"reported\":{\"r\":1}},\"clientToken\":\"x\",\"clientToken\":\"y\"}",
                         10),
                     200);
    expect_msg(c, 0, CL "/update/accepted",
               "{'state':{'reported':{'r':1}},'metadata':{'reported':{'r':{'timestamp':10}}},'version':1,"
               "'timestamp':10,'clientToken':'y'}");
    assert_int_equal(req(f->s, c, CL "/update", "{\"state\":{\"desired\":{\"a\":1,\"a\":{\"b\":1,\"b\":2}}}}", 20), 200);
    expect_doc(f->s, "T", "", 21,
               "{'state':{'desired':{'a':{'b':2}},'reported':{'r':1},'delta':{'a':{'b':2}}},"
               "'metadata':{'desired':{'a':{'b':{'timestamp':20}}},'reported':{'r':{'timestamp':10}}},"
               "'version':2,'timestamp':21}");
}

/* ---- the API's edges -------------------------------------------------------------- */

static void test_bad_request_struct(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    cap_reset(c);
    sim_shadow_req r;
    memset(&r, 0, sizeof r);
    char why[64];
    r.op = SIM_SHADOW_GET;
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, on_emit, c, why, sizeof why), 400); /* empty thing */
    strcpy(r.thing, "a/b");
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, on_emit, c, why, sizeof why), 400);
    strcpy(r.thing, "T");
    strcpy(r.name, "x y");
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, on_emit, c, why, sizeof why), 400);
    r.name[0] = '\0';
    r.op = (sim_shadow_op)7;
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, on_emit, c, why, sizeof why), 400);
    memset(r.thing, 'a', sizeof r.thing); /* not terminated */
    r.op = SIM_SHADOW_GET;
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, on_emit, c, why, sizeof why), 400);
    assert_int_equal(c->n, 0); /* no topic to answer on */
    /* No emit callback, no why: still handled. */
    strcpy(r.thing, "T");
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, NULL, NULL, NULL, 0), 404);
    r.op = SIM_SHADOW_UPDATE;
    JKEEP(up, "{'state':{'reported':{'a':1}}}");
    assert_int_equal(sim_shadow_handle(f->s, &r, (const uint8_t *)up, strlen(up), 1, NULL, NULL, NULL, 0), 200);
    /* A short why is truncated, not overrun. */
    r.op = SIM_SHADOW_DELETE;
    strcpy(r.name, "nope");
    char tiny[5];
    assert_int_equal(sim_shadow_handle(f->s, &r, NULL, 0, 1, NULL, NULL, tiny, sizeof tiny), 404);
    assert_string_equal(tiny, "No s");
    assert_null(sim_shadow_document(f->s, "T", "nope", 1));
    assert_null(sim_shadow_document(f->s, "T/", "", 1));
    assert_null(sim_shadow_document(f->s, NULL, NULL, 1));
    char *d = sim_shadow_document(f->s, "T", NULL, 1);
    assert_non_null(d);
    free(d);
    sim_shadow_store_free(NULL);
    assert_string_equal(sim_shadow_op_name(SIM_SHADOW_UPDATE), "update");
}

static void test_list(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    char *l = sim_shadow_list(f->s);
    expect_json(l, "[]");
    free(l);
    assert_int_equal(req(f->s, c, "$aws/things/B/shadow/update", J("{'state':{'reported':{'b':1}}}"), 1), 200);
    assert_int_equal(req(f->s, c, "$aws/things/A/shadow/name/n/update", J("{'state':{'desired':{'n':1}}}"), 1), 200);
    assert_int_equal(req(f->s, c, "$aws/things/A/shadow/update", J("{'state':{'desired':{'x':[1]},'reported':{'y':2}}}"),
                         1),
                     200);
    assert_int_equal(req(f->s, c, "$aws/things/A/shadow/update", J("{'state':{'reported':{'y':3}}}"), 2), 200);
    assert_int_equal(req(f->s, c, "$aws/things/C/shadow/update", J("{'state':{'reported':{'c':1}}}"), 3), 200);
    assert_int_equal(req(f->s, c, "$aws/things/C/shadow/delete", "", 4), 200);
    l = sim_shadow_list(f->s);
    /* Sorted by thing, classic first; no metadata, no delta; deleted ones left out. */
    cJSON *a = cJSON_Parse(l);
    assert_int_equal(cJSON_GetArraySize(a), 3);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a, 0), "thing")->valuestring, "A");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a, 0), "name")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a, 1), "name")->valuestring, "n");
    cJSON_Delete(a);
    expect_json(l, "[{'thing':'A','name':null,'version':2,'state':{'desired':{'x':[1]},'reported':{'y':3}}},"
                   "{'thing':'A','name':'n','version':1,'state':{'desired':{'n':1}}},"
                   "{'thing':'B','name':null,'version':1,'state':{'reported':{'b':1}}}]");
    free(l);
}

/* ---- persistence -------------------------------------------------------------------- */

static void fill(sim_shadow_store *s, cap *c)
{
    assert_int_equal(req(s, c, CL "/update", J("{'state':{'desired':{'a':{'b':[1,{'c':true}]}},'reported':{'x':'\\u00e9'}}}"),
                         100),
                     200);
    assert_int_equal(req(s, c, CL "/update", J("{'state':{'reported':{'y':1.25}}}"), 110), 200);
    assert_int_equal(req(s, c, NM "/update", J("{'state':null}"), 120), 200);
    assert_int_equal(req(s, c, "$aws/things/D/shadow/name/$d/update", J("{'state':{'reported':{'d':1}}}"), 130), 200);
    assert_int_equal(req(s, c, "$aws/things/D/shadow/name/$d/update", J("{'state':{'reported':{'d':2}}}"), 131), 200);
    assert_int_equal(req(s, c, "$aws/things/D/shadow/name/$d/delete", "", 140), 200);
    assert_int_equal(req(s, c, "$aws/things/E/shadow/update", J("{'state':{'reported':{'e':1}}}"), 150), 200);
    assert_int_equal(req(s, c, "$aws/things/E/shadow/delete", "", 160), 200);
}

static void test_save_load_roundtrip(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    fill(f->s, c);
    char *saved = sim_shadow_save(f->s);
    assert_non_null(saved);
    /* Live shadows sorted, with metadata; deletions oldest first. */
    expect_json(saved,
                "{'format':1,'shadows':["
                "{'thing':'T','name':null,'version':2,"
                "'state':{'desired':{'a':{'b':[1,{'c':true}]}},'reported':{'x':'\\u00e9','y':1.25}},"
                "'metadata':{'desired':{'a':{'b':[{'timestamp':100},{'c':{'timestamp':100}}]}},"
                "'reported':{'x':{'timestamp':100},'y':{'timestamp':110}}}},"
                "{'thing':'T','name':'cfg','version':1,'state':{},'metadata':{}}],"
                "'deleted':[{'thing':'D','name':'$d','version':2,'deleted_at':140},"
                "{'thing':'E','name':null,'version':1,'deleted_at':160}]}");
    char *list = sim_shadow_list(f->s);
    char *doc = sim_shadow_document(f->s, "T", "", 500);

    sim_shadow_store *t = new_store(NULL);
    /* Something in t first: load replaces it. */
    assert_int_equal(req(t, c, "$aws/things/Z/shadow/update", J("{'state':{'reported':{'z':1}}}"), 1), 200);
    char why[256];
    if (!sim_shadow_load(t, saved, why, sizeof why))
        fail_msg("load: %s", why);
    assert_string_equal(why, "loaded 2 shadows, 2 deletions");
    char *saved2 = sim_shadow_save(t);
    char *list2 = sim_shadow_list(t);
    char *doc2 = sim_shadow_document(t, "T", "", 500);
    /* The same text: the save is deterministic, so a fixed point. */
    assert_string_equal(saved2, saved);
    assert_string_equal(list2, list);
    assert_string_equal(doc2, doc);
    free(saved2);
    free(list2);
    free(doc2);
    assert_int_equal(version_of(t, "Z", ""), -1);
    size_t live, gone;
    sim_shadow_stats(t, &live, &gone);
    assert_int_equal(live, 2);
    assert_int_equal(gone, 2);
    /* The deletion memory came along: D/$d continues, E (past its window) restarts. */
    assert_int_equal(req(t, c, "$aws/things/D/shadow/name/$d/update", J("{'state':{'reported':{'d':3}},'version':2}"),
                         200),
                     200);
    assert_int_equal(version_of(t, "D", "$d"), 3);
    assert_int_equal(req(t, c, "$aws/things/E/shadow/update", J("{'state':{'reported':{'e':3}}}"), 160 + 172801), 200);
    assert_int_equal(version_of(t, "E", ""), 1);
    /* Updates go on merging into loaded state. */
    assert_int_equal(req(t, c, CL "/update", J("{'state':{'desired':{'a':{'n':1}}}}"), 600), 200);
    expect_doc(t, "T", "", 601,
               "{'state':{'desired':{'a':{'b':[1,{'c':true}],'n':1}},'reported':{'x':'\\u00e9','y':1.25},"
               "'delta':{'a':{'b':[1,{'c':true}],'n':1}}},"
               "'metadata':{'desired':{'a':{'b':[{'timestamp':100},{'c':{'timestamp':100}}],'n':{'timestamp':600}}},"
               "'reported':{'x':{'timestamp':100},'y':{'timestamp':110}}},'version':3,'timestamp':601}");
    sim_shadow_store_free(t);

    /* An empty save empties a store. */
    assert_true(sim_shadow_load(f->s, J("{'format':1,'shadows':[],'deleted':[]}"), NULL, 0));
    char *l = sim_shadow_list(f->s);
    expect_json(l, "[]");
    free(l);
    sim_shadow_stats(f->s, &live, &gone);
    assert_int_equal(live + gone, 0);
    /* An empty section loads as no section. */
    assert_true(sim_shadow_load(f->s,
                                J("{'format':1,'shadows':[{'thing':'A','name':null,'version':4,"
                                  "'state':{'desired':{}},'metadata':{'desired':{}}}],'deleted':[]}"),
                                why, sizeof why));
    expect_doc(f->s, "A", NULL, 9, "{'state':{},'metadata':{},'version':4,'timestamp':9}");
    free(list);
    free(doc);
    free(saved);
}

static void test_load_refuses_bad_input(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    reconfigure(f, two_shadows);
    assert_int_equal(req(f->s, c, CL "/update", J("{'state':{'desired':{'a':1}}}"), 5), 200);
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{'desired':{'a':1}}}"), 5), 200);
    assert_int_equal(req(f->s, c, NM "/delete", "", 6), 200);
    char *before = sim_shadow_save(f->s);

#define SH(x) "{'format':1,'shadows':[" x "],'deleted':[]}"
#define ONE(state_, meta_) SH("{'thing':'A','name':null,'version':1,'state':" state_ ",'metadata':" meta_ "}")
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{'format':2,'shadows':[],'deleted':[]}",
        "{'shadows':[],'deleted':[]}",
        "{'format':1,'shadows':{},'deleted':[]}",
        "{'format':1,'shadows':[]}",
        "{'format':1,'shadows':[],'deleted':[]} x",
        SH("1"),
        SH("{'thing':'a/b','name':null,'version':1,'state':{},'metadata':{}}"),
        SH("{'thing':'A','name':'','version':1,'state':{},'metadata':{}}"),
        SH("{'thing':'A','name':'a b','version':1,'state':{},'metadata':{}}"),
        SH("{'name':null,'version':1,'state':{},'metadata':{}}"),
        SH("{'thing':'A','name':null,'version':0,'state':{},'metadata':{}}"),
        SH("{'thing':'A','name':null,'version':1.5,'state':{},'metadata':{}}"),
        SH("{'thing':'A','name':null,'version':'1','state':{},'metadata':{}}"),
        SH("{'thing':'A','name':null,'version':1,'metadata':{}}"),
        SH("{'thing':'A','name':null,'version':1,'state':{}}"),
        ONE("{'desired':{'a':null}}", "{'desired':{'a':{'timestamp':1}}}"),
        ONE("{'desired':{'a':[null]}}", "{'desired':{'a':[{'timestamp':1}]}}"),
        ONE("{'desired':{'a':1e999}}", "{'desired':{'a':{'timestamp':1}}}"),
        ONE("{'desired':{'a':1,'a':2}}", "{'desired':{'a':{'timestamp':1}}}"),
        ONE("{'delta':{'a':1}}", "{}"),
        ONE("{'desired':1}", "{'desired':{'timestamp':1}}"),
        ONE("{'desired':{'a':1}}", "{}"),
        ONE("{'desired':{'a':1}}", "{'desired':{}}"),
        ONE("{'desired':{'a':1}}", "{'desired':{'a':{'timestamp':1}},'reported':{}}"),
        ONE("{'desired':{'a':1}}", "{'desired':{'a':{'ts':1}}}"),
        ONE("{'desired':{'a':1}}", "{'desired':{'a':{'timestamp':1,'x':1}}}"),
        ONE("{'desired':{'a':1}}", "{'desired':{'a':{'timestamp':-1}}}"),
        ONE("{'desired':{'a':1}}", "{'desired':{'a':[{'timestamp':1}]}}"),
        ONE("{'desired':{'a':[1,2]}}", "{'desired':{'a':[{'timestamp':1}]}}"),
        ONE("{'desired':{'a':{}}}", "{'desired':{'a':{'timestamp':1}}}"),
        ONE("{'desired':{'a':{'b':1}}}", "{'desired':{'a':{'b':{'timestamp':1},'c':{'timestamp':1}}}}"),
        ONE("{'desired':{'a':1}}", "{'desired':{'a':{'timestamp':1}},'extra':{}}"),
        SH("{'thing':'A','name':null,'version':1,'state':{},'metadata':{}},"
           "{'thing':'A','name':null,'version':2,'state':{},'metadata':{}}"),
        SH("{'thing':'A','name':null,'version':1,'state':{},'metadata':{}},"
           "{'thing':'B','name':null,'version':1,'state':{},'metadata':{}},"
           "{'thing':'C','name':null,'version':1,'state':{},'metadata':{}}"), /* over max_shadows */
        "{'format':1,'shadows':[{'thing':'A','name':null,'version':1,'state':{},'metadata':{}}],"
        "'deleted':[{'thing':'A','name':null,'version':1,'deleted_at':1}]}", /* live and deleted */
        "{'format':1,'shadows':[],'deleted':[{'thing':'A','name':null,'version':1}]}",
        "{'format':1,'shadows':[],'deleted':[{'thing':'A','name':null,'version':-1,'deleted_at':1}]}",
        "{'format':1,'shadows':[],'deleted':[{'thing':'A','version':1,'deleted_at':1}]}",
        "{'format':1,'shadows':[],'deleted':[{'thing':'A','name':null,'version':1,'deleted_at':1},"
        "{'thing':'B','name':null,'version':1,'deleted_at':1},{'thing':'C','name':null,'version':1,'deleted_at':1}]}",
    };
#undef SH
#undef ONE
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[256] = "";
        if (sim_shadow_load(f->s, J(bad[i]), why, sizeof why))
            fail_msg("loaded: %s", bad[i]);
        assert_true(why[0] != '\0');
        char *after = sim_shadow_save(f->s);
        assert_string_equal(after, before);
        free(after);
    }
    char why[256] = "";
    assert_false(sim_shadow_load(f->s, NULL, why, sizeof why));
    assert_false(sim_shadow_load(f->s, "{", NULL, 0));
    /* The reason says where. */
    assert_false(sim_shadow_load(f->s, J("{'format':1,'shadows':[{'thing':'A','name':null,'version':1,'state':{},"
                                         "'metadata':{}},{'thing':'#'}],'deleted':[]}"),
                                 why, sizeof why));
    assert_string_equal(why, "shadows[1]: thing: not a valid thing name");
    /* The store still works as before. */
    assert_int_equal(version_of(f->s, "T", ""), 1);
    assert_int_equal(req(f->s, c, NM "/update", J("{'state':{'desired':{'a':1}}}"), 7), 200);
    assert_int_equal(version_of(f->s, "T", "cfg"), 2);
    free(before);
}

/* ---- allocation failures ------------------------------------------------------------ */

/* cJSON's allocator (which sim_shadow.c uses for all its own memory too)
 * fails once `budget` allocations have succeeded; -1: never. */
static long budget = -1;

static void *budget_malloc(size_t n)
{
    if (budget == 0)
        return NULL;
    if (budget > 0)
        budget--;
    return malloc(n);
}

static void budget_set(long n)
{
    budget = n;
    cJSON_Hooks h = {budget_malloc, free};
    cJSON_InitHooks(&h);
}

static void budget_off(void)
{
    budget = -1;
    cJSON_InitHooks(NULL);
}

static sim_shadow_store *copy_of(const char *saved)
{
    sim_shadow_store *t = new_store(NULL);
    assert_true(sim_shadow_load(t, saved, NULL, 0));
    return t;
}

static void test_allocation_failures(void **state)
{
    fixture *f = *state;
    cap *c = &f->c;
    fill(f->s, c);
    char *before = sim_shadow_save(f->s);
    static const char *const ops[][2] = {
        {CL "/update", "{'state':{'desired':{'a':{'b':[2]},'n':{'m':1}},'reported':{'x':null}},'clientToken':'k'}"},
        {CL "/update", "{'state':{'desired':{'a':{'b':null}},'reported':{'q':[{'r':1}]}},'version':2}"},
        {CL "/get", "{'clientToken':'k'}"},
        {NM "/update", "{'state':{'desired':{'q':1}}}"},
        {"$aws/things/New/shadow/update", "{'state':{'desired':{'q':1},'reported':{'q':2}}}"},
        {"$aws/things/D/shadow/name/$d/update", "{'state':{'reported':{'d':9}}}"},
        {CL "/delete", "{'clientToken':'k'}"},
        {CL "/update", "{'state':{'desired':{'d':1,'d':{'e':1,'e':2}},'reported':{'d':[1]}}}"},
        {CL "/update", "{'state':{'bad':1},'clientToken':'k'}"},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char payload[256];
        assert_true(strlen(ops[i][1]) < sizeof payload);
        strcpy(payload, J(ops[i][1]));
        int expect = -1, failures = 0;
        for (long k = 0;; k++) {
            assert_true(k < 100000);
            sim_shadow_store *t = copy_of(before);
            budget_set(k);
            int rc = req(t, c, ops[i][0], payload, 1000);
            budget_off();
            if (rc == 200 || rc == 400) {
                if (rc == 400 && k < 5000 && c->n == 1 && strstr(c->payload[0], "Invalid JSON")) {
                    /* A failed parse looks like bad JSON; retry with more. */
                } else {
                    expect = rc;
                    sim_shadow_store_free(t);
                    break;
                }
            } else {
                assert_int_equal(rc, 500);
                failures++;
                assert_int_equal(c->n, 1);
                assert_non_null(strstr(c->topic[0], "/rejected"));
                cJSON *o = cJSON_Parse(c->payload[0]);
                assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "code")->valuedouble, 500);
                cJSON_Delete(o);
            }
            /* A refused request leaves the store as it was. */
            char *after = sim_shadow_save(t);
            assert_string_equal(after, before);
            free(after);
            sim_shadow_store_free(t);
        }
        assert_int_equal(expect, i == 8 ? 400 : 200);
        assert_true(failures > 0); /* the 500 path was taken */
    }

    /* The other entry points: NULL or false, never a crash or a leak. */
    for (long k = 0;; k++) {
        assert_true(k < 100000);
        budget_set(k);
        char *a = sim_shadow_save(f->s);
        char *b = sim_shadow_list(f->s);
        char *d = sim_shadow_document(f->s, "T", "", 1);
        sim_shadow_store *t = sim_shadow_store_new(NULL);
        bool loaded = t && sim_shadow_load(t, before, NULL, 0);
        budget_off();
        bool done = a && b && d && t && loaded;
        if (t && !loaded) {
            char *e = sim_shadow_save(t);
            expect_json(e, "{'format':1,'shadows':[],'deleted':[]}");
            free(e);
        }
        free(a);
        free(b);
        free(d);
        sim_shadow_store_free(t);
        if (done)
            break;
    }
    free(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_illustrative_sequence, setup, teardown),
        cmocka_unit_test(test_parse_topic_accepts),
        cmocka_unit_test(test_parse_topic_refuses),
        cmocka_unit_test_setup_teardown(test_named_and_classic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_invalid_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_client_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_missing_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_state_not_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_invalid_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_section_not_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_array_with_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_version_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_version_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_too_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accepted_echoes_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_reported_only_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_sync_and_removal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_when_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_equality, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recreate_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recreate_memory_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_on_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_empty_parents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_request_struct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_load_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
