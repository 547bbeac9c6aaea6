/*
 * The fleet provisioning client's protocol core (svc/identity_core.h), on a
 * virtual clock: topics and template names at their limits, request
 * payloads (a PEM's newlines, quotes and backslashes in parameters),
 * accepted and rejected answers including malformed ones, the
 * one-outstanding-per-topic-pair rule that stands in for the correlation
 * token AWS does not send, and deadlines (aws-services.md §2 and §4.4).
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

#include "svc/identity_core.h"

#define KEYS IOTC_IDENTITY_OP_CREATE_KEYS
#define CSR IOTC_IDENTITY_OP_CREATE_FROM_CSR
#define REG IOTC_IDENTITY_OP_REGISTER_THING
#define REQ IOTC_IDENTITY_SFX_REQUEST
#define ACC IOTC_IDENTITY_SFX_ACCEPTED
#define REJ IOTC_IDENTITY_SFX_REJECTED

static const char PEM_CSR[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
                              "MIIBVTCB/AIBADAaMRgwFgYDVQQDDA9kZXYtNDItZnJvbS1jc3I=\n"
                              "-----END CERTIFICATE REQUEST-----\n";

static const char ACCEPTED_KEYS[] =
    "{\"certificateId\":\"770c2b3befd821bcbbe06f0932ab4afdc950bc8a3fbcabf4c0333fcae5a1217d\","
    "\"certificatePem\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\","
    "\"privateKey\":\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\\n-----END RSA PRIVATE KEY-----\\n\","
    "\"certificateOwnershipToken\":\"tok-1\"}";

static const char ACCEPTED_REG[] =
    "{\"deviceConfiguration\":{\"FallbackUrl\":\"https://www.example.com/test-site\","
    "\"LocationUrl\":\"https://example.aws\"},\"thingName\":\"ThingPrefix_1\"}";

static const char REJECTED_TOKEN[] = "{\"statusCode\":400,\"errorCode\":\"InvalidCertificateOwnershipToken\","
                                     "\"errorMessage\":\"Certificate ownership token cannot be empty.\"}";

static iotc_identity_core *mk(void)
{
    iotc_identity_core *ic = NULL;
    assert_int_equal(iotc_identity_core_new(&ic), IOTC_OK);
    assert_non_null(ic);
    return ic;
}

static iotc_identity_args keys_args(void)
{
    iotc_identity_args a;
    memset(&a, 0, sizeof a);
    a.op = KEYS;
    return a;
}

static iotc_identity_args csr_args(const char *csr)
{
    iotc_identity_args a;
    memset(&a, 0, sizeof a);
    a.op = CSR;
    a.csr_pem = csr;
    return a;
}

static iotc_identity_args reg_args(const char *tmpl, const char *token)
{
    iotc_identity_args a;
    memset(&a, 0, sizeof a);
    a.op = REG;
    a.template_name = tmpl;
    a.token = token;
    return a;
}

/* A begin; on failure checks that nothing was handed out and `why` says something. */
static int begin(iotc_identity_core *ic, const iotc_identity_args *a, uint64_t now, uint32_t timeout, void *user,
                 iotc_identity_request *rq)
{
    const char *why = NULL;
    int rc = iotc_identity_core_begin(ic, a, now, timeout, user, rq, &why);
    assert_non_null(why);
    if (rc != IOTC_OK) {
        assert_true(strlen(why) > 0);
        assert_null(rq->payload);
        assert_int_equal(rq->channel, -1);
    } else {
        assert_string_equal(why, "");
    }
    return rc;
}

/* A begin that must succeed; returns the channel, the id in *id. */
static int begin_ok(iotc_identity_core *ic, const iotc_identity_args *a, uint64_t now, uint32_t timeout, void *user,
                    uint64_t *id)
{
    iotc_identity_request rq;
    assert_int_equal(begin(ic, a, now, timeout, user, &rq), IOTC_OK);
    assert_non_null(rq.payload);
    free(rq.payload);
    if (id)
        *id = rq.id;
    return rq.channel;
}

static void feed(iotc_identity_core *ic, const char *topic, const char *payload, iotc_identity_event *ev)
{
    iotc_identity_core_input(ic, topic, strlen(topic), (const uint8_t *)payload, payload ? strlen(payload) : 0, ev);
}

static int parse_acc(iotc_identity_op op, const char *p, iotc_identity_doc *d, const char **why)
{
    return iotc_identity_parse_accepted(op, (const uint8_t *)p, strlen(p), d, why);
}

static int parse_rej(const char *p, iotc_identity_doc *d, const char **why)
{
    return iotc_identity_parse_rejected((const uint8_t *)p, strlen(p), d, why);
}

/* ---- names and topics -------------------------------------------------------------- */

static void test_op_names(void **state)
{
    (void)state;
    assert_string_equal(iotc_identity_op_name(KEYS), "CreateKeysAndCertificate");
    assert_string_equal(iotc_identity_op_name(CSR), "CreateCertificateFromCsr");
    assert_string_equal(iotc_identity_op_name(REG), "RegisterThing");
    assert_string_equal(iotc_identity_op_name((iotc_identity_op)3), "?");
    assert_string_equal(iotc_identity_op_name((iotc_identity_op)-1), "?");
}

static void test_template_name_limits(void **state)
{
    (void)state;
    const char *why = NULL;
    char name[64];
    memset(name, 'a', sizeof name);
    assert_int_equal(iotc_identity_check_template(name, 1, &why), IOTC_OK);
    assert_string_equal(why, "");
    assert_int_equal(iotc_identity_check_template(name, 36, &why), IOTC_OK);
    assert_int_equal(iotc_identity_check_template(name, 37, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "36"));
    assert_int_equal(iotc_identity_check_template(name, 0, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "empty"));
    assert_int_equal(iotc_identity_check_template(NULL, 3, &why), IOTC_ERR_INVALID_ARG);
    const char *all = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    assert_int_equal(iotc_identity_check_template(all, strlen(all), NULL), IOTC_OK);
    assert_int_equal(iotc_identity_check_template("abcdefghijklmnopqrstuvwxyz_-", 28, NULL), IOTC_OK);
    /* Every byte outside [0-9A-Za-z_-], alone and inside a name: MQTT's
     * wildcards and separator, the shadow names' `:` and `$`, a dot, a space,
     * a NUL, a UTF-8 letter. */
    const char *bad[] = {"a/b", "a+b", "a#b", "a:b", "$a", "a.b", "a b", "\xc3\xa9t\xc3\xa9", "a\tb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(iotc_identity_check_template(bad[i], strlen(bad[i]), &why), IOTC_ERR_INVALID_ARG);
        assert_non_null(strstr(why, "[0-9A-Za-z_-]"));
    }
    assert_int_equal(iotc_identity_check_template("a\0b", 3, &why), IOTC_ERR_INVALID_ARG);
    for (int ch = 1; ch < 256; ch++) {
        char s[2] = {(char)ch, 0};
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_' ||
                  ch == '-';
        assert_int_equal(iotc_identity_check_template(s, 1, NULL), ok ? IOTC_OK : IOTC_ERR_INVALID_ARG);
    }
}

static void topic_is(iotc_identity_op op, const char *tmpl, iotc_identity_sfx sfx, const char *want)
{
    char buf[IOTC_IDENTITY_TOPIC_MAX + 1];
    int n = iotc_identity_topic(buf, sizeof buf, op, tmpl, sfx);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    /* And back. */
    iotc_identity_topic_parts t;
    assert_true(iotc_identity_topic_parse(buf, strlen(buf), &t));
    assert_int_equal(t.op, op);
    assert_int_equal(t.sfx, sfx);
    if (tmpl) {
        assert_int_equal(t.template_len, strlen(tmpl));
        assert_memory_equal(t.template_name, tmpl, t.template_len);
    } else {
        assert_null(t.template_name);
        assert_int_equal(t.template_len, 0);
    }
}

static void test_topics(void **state)
{
    (void)state;
    topic_is(KEYS, NULL, REQ, "$aws/certificates/create/json");
    topic_is(KEYS, NULL, ACC, "$aws/certificates/create/json/accepted");
    topic_is(KEYS, NULL, REJ, "$aws/certificates/create/json/rejected");
    topic_is(CSR, NULL, REQ, "$aws/certificates/create-from-csr/json");
    topic_is(CSR, NULL, ACC, "$aws/certificates/create-from-csr/json/accepted");
    topic_is(CSR, NULL, REJ, "$aws/certificates/create-from-csr/json/rejected");
    topic_is(REG, "FleetTpl", REQ, "$aws/provisioning-templates/FleetTpl/provision/json");
    topic_is(REG, "FleetTpl", ACC, "$aws/provisioning-templates/FleetTpl/provision/json/accepted");
    topic_is(REG, "a-b_C9", REJ, "$aws/provisioning-templates/a-b_C9/provision/json/rejected");
}

static void test_topic_limits_and_errors(void **state)
{
    (void)state;
    char t36[37];
    memset(t36, 'T', 36);
    t36[36] = 0;
    char buf[IOTC_IDENTITY_TOPIC_MAX + 1];
    /* The longest topic is exactly IOTC_IDENTITY_TOPIC_MAX (§2.1: 88). */
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, REG, t36, ACC), IOTC_IDENTITY_TOPIC_MAX);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, REG, t36, REJ), IOTC_IDENTITY_TOPIC_MAX);
    assert_int_equal(iotc_identity_topic(buf, IOTC_IDENTITY_TOPIC_MAX, REG, t36, ACC), IOTC_ERR_TOO_LARGE);
    assert_string_equal(buf, "");
    assert_int_equal(iotc_identity_topic(buf, 5, KEYS, NULL, REQ), IOTC_ERR_TOO_LARGE);
    char t37[38];
    memset(t37, 'T', 37);
    t37[37] = 0;
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, REG, t37, ACC), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, REG, NULL, ACC), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, REG, "", ACC), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, REG, "a/b", ACC), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, KEYS, "T", ACC), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, (iotc_identity_op)3, NULL, ACC), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(buf, sizeof buf, KEYS, NULL, (iotc_identity_sfx)3), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_topic(NULL, 10, KEYS, NULL, REQ), IOTC_ERR_INVALID_ARG);
}

static void test_topic_parse_refuses(void **state)
{
    (void)state;
    iotc_identity_topic_parts t;
    const char *bad[] = {
        "",
        "$aws",
        "$aws/certificates",
        "$aws/certificates/create",
        "$aws/certificates/create/cbor/accepted", /* never asked for */
        "$aws/certificates/create/json/accepted/x",
        "$aws/certificates/create/json/delta",
        "$aws/certificates/create/json/",
        "$aws/certificates/create-from/json/accepted",
        "$aws/certificates//json",
        "aws/certificates/create/json",
        "$aws/things/t/shadow/get/accepted",
        "$aws/provisioning-templates/T/provision",
        "$aws/provisioning-templates/T/provision/cbor/accepted",
        "$aws/provisioning-templates//provision/json",
        "$aws/provisioning-templates/a+b/provision/json",
        "$aws/provisioning-templates/TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT/provision/json", /* 37 */
        "$aws/provisioning-templates/T/register/json",
        "$aws/provisioning-templates/T/provision/json/accepted/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(iotc_identity_topic_parse(bad[i], strlen(bad[i]), &t));
    /* Lengths, not NULs: a prefix of a valid topic is not that topic. */
    const char *full = "$aws/certificates/create/json/accepted";
    assert_true(iotc_identity_topic_parse(full, strlen(full), &t));
    assert_int_equal(t.sfx, ACC);
    assert_true(iotc_identity_topic_parse(full, strlen("$aws/certificates/create/json"), &t));
    assert_int_equal(t.sfx, REQ);
    assert_false(iotc_identity_topic_parse(full, strlen("$aws/certificates/create/js"), &t));
    assert_false(iotc_identity_topic_parse(NULL, 3, &t));
    assert_false(iotc_identity_topic_parse(full, strlen(full), NULL));
}

/* ---- payloads ---------------------------------------------------------------------- */

static void test_payload_create_keys(void **state)
{
    (void)state;
    char *p = NULL;
    size_t n = 0;
    assert_int_equal(iotc_identity_build_create_keys(&p, &n), IOTC_OK);
    assert_string_equal(p, "{}");
    assert_int_equal(n, 2);
    free(p);
    assert_int_equal(iotc_identity_build_create_keys(NULL, &n), IOTC_ERR_INVALID_ARG);
}

static void test_payload_csr_escapes_pem(void **state)
{
    (void)state;
    char *p = NULL;
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(iotc_identity_build_csr(PEM_CSR, &p, &n, &why), IOTC_OK);
    assert_string_equal(why, "");
    assert_int_equal(n, strlen(p));
    /* One line: the PEM's newlines are escapes, not bytes. */
    assert_null(strchr(p, '\n'));
    assert_non_null(strstr(p, "{\"certificateSigningRequest\":\"-----BEGIN CERTIFICATE REQUEST-----\\nMIIB"));
    assert_non_null(strstr(p, "-----END CERTIFICATE REQUEST-----\\n\"}"));
    cJSON *doc = cJSON_Parse(p);
    assert_non_null(doc);
    assert_int_equal(cJSON_GetArraySize(doc), 1);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "certificateSigningRequest");
    assert_true(cJSON_IsString(v));
    assert_string_equal(v->valuestring, PEM_CSR);
    cJSON_Delete(doc);
    free(p);
    /* CRLF line ends, quotes and backslashes survive the round trip too. */
    const char *odd = "-----BEGIN X-----\r\nA\"B\\C\t/\r\n-----END X-----";
    assert_int_equal(iotc_identity_build_csr(odd, &p, &n, &why), IOTC_OK);
    assert_null(strchr(p, '\r'));
    doc = cJSON_Parse(p);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "certificateSigningRequest")->valuestring, odd);
    cJSON_Delete(doc);
    free(p);
}

static void test_payload_csr_refused(void **state)
{
    (void)state;
    char *p = (char *)1;
    size_t n = 7;
    const char *why = NULL;
    assert_int_equal(iotc_identity_build_csr("", &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_null(p);
    assert_int_equal(n, 0);
    assert_non_null(strstr(why, "empty"));
    assert_int_equal(iotc_identity_build_csr(NULL, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_build_csr("\xff\xfe", &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "UTF-8"));
    assert_int_equal(iotc_identity_build_csr("x", NULL, &n, &why), IOTC_ERR_INVALID_ARG);
    /* Over 128 KiB, and a CSR that only its escaping pushes over. */
    size_t big = IOTC_IDENTITY_PAYLOAD_MAX + 1;
    char *csr = malloc(big + 1);
    memset(csr, 'A', big);
    csr[big] = 0;
    assert_int_equal(iotc_identity_build_csr(csr, &p, &n, &why), IOTC_ERR_TOO_LARGE);
    assert_non_null(strstr(why, "128 KiB"));
    assert_null(p);
    memset(csr, '\n', IOTC_IDENTITY_PAYLOAD_MAX / 2);
    csr[IOTC_IDENTITY_PAYLOAD_MAX / 2] = 0;
    assert_int_equal(iotc_identity_build_csr(csr, &p, &n, &why), IOTC_ERR_TOO_LARGE);
    /* Just under. */
    size_t fit = IOTC_IDENTITY_PAYLOAD_MAX - strlen("{\"certificateSigningRequest\":\"\"}");
    memset(csr, 'B', fit);
    csr[fit] = 0;
    assert_int_equal(iotc_identity_build_csr(csr, &p, &n, &why), IOTC_OK);
    assert_int_equal(n, IOTC_IDENTITY_PAYLOAD_MAX);
    free(p);
    free(csr);
}

static void test_payload_register(void **state)
{
    (void)state;
    char *p = NULL;
    size_t n = 0;
    const char *why = NULL;
    const char *k[] = {"SerialNumber", "DeviceLocation", "Quote\"d", "back\\slash", "multi"};
    const char *v[] = {"42", "Seattle", "say \"hi\"", "C:\\dev", "line1\nline2\u00e9"};
    assert_int_equal(iotc_identity_build_register("tok-1", k, v, 5, &p, &n, &why), IOTC_OK);
    assert_string_equal(why, "");
    assert_int_equal(n, strlen(p));
    assert_null(strchr(p, '\n'));
    const char *head = "{\"certificateOwnershipToken\":\"tok-1\",\"parameters\":{\"SerialNumber\":\"42\",";
    assert_memory_equal(p, head, strlen(head));
    assert_non_null(strstr(p, "\"Quote\\\"d\":\"say \\\"hi\\\"\""));
    assert_non_null(strstr(p, "\"back\\\\slash\":\"C:\\\\dev\""));
    cJSON *doc = cJSON_Parse(p);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "certificateOwnershipToken")->valuestring, "tok-1");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc, "parameters");
    assert_int_equal(cJSON_GetArraySize(params), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(params, k[i])->valuestring, v[i]);
    cJSON_Delete(doc);
    free(p);
    /* No parameters: no `parameters` member (it is optional). */
    assert_int_equal(iotc_identity_build_register("t", NULL, NULL, 0, &p, &n, &why), IOTC_OK);
    assert_string_equal(p, "{\"certificateOwnershipToken\":\"t\"}");
    free(p);
    /* An empty value is a value. */
    const char *k1[] = {"Empty"}, *v1[] = {""};
    assert_int_equal(iotc_identity_build_register("t", k1, v1, 1, &p, &n, &why), IOTC_OK);
    assert_string_equal(p, "{\"certificateOwnershipToken\":\"t\",\"parameters\":{\"Empty\":\"\"}}");
    free(p);
}

static void test_payload_register_refused(void **state)
{
    (void)state;
    char *p = NULL;
    size_t n = 0;
    const char *why = NULL;
    const char *k[] = {"a", "b", "a"}, *v[] = {"1", "2", "3"};
    assert_int_equal(iotc_identity_build_register("", k, v, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "token"));
    assert_int_equal(iotc_identity_build_register(NULL, k, v, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_build_register("\xc3", k, v, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_build_register("t", k, v, 3, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "twice"));
    assert_int_equal(iotc_identity_build_register("t", NULL, v, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_build_register("t", k, NULL, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    const char *kn[] = {"a", NULL}, *vn[] = {"1", NULL};
    assert_int_equal(iotc_identity_build_register("t", kn, v, 2, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "NULL"));
    assert_int_equal(iotc_identity_build_register("t", k, vn, 2, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    const char *ke[] = {""};
    assert_int_equal(iotc_identity_build_register("t", ke, v, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "empty"));
    const char *kb[] = {"ok"}, *vb[] = {"\xed\xa0\x80"}; /* a UTF-16 surrogate */
    assert_int_equal(iotc_identity_build_register("t", kb, vb, 1, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "UTF-8"));
    assert_null(p);
    /* Many distinct parameters are fine; too many bytes are not. */
    enum { N = 2000 };
    static char keys_buf[N][8];
    static const char *ks[N], *vs[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys_buf[i], sizeof keys_buf[i], "k%d", i);
        ks[i] = keys_buf[i];
        vs[i] = "v";
    }
    assert_int_equal(iotc_identity_build_register("t", ks, vs, N, &p, &n, &why), IOTC_OK);
    free(p);
    ks[N - 1] = ks[0]; /* a duplicate far apart */
    assert_int_equal(iotc_identity_build_register("t", ks, vs, N, &p, &n, &why), IOTC_ERR_INVALID_ARG);
    char *big = malloc(IOTC_IDENTITY_PAYLOAD_MAX + 2);
    memset(big, 'x', IOTC_IDENTITY_PAYLOAD_MAX + 1);
    big[IOTC_IDENTITY_PAYLOAD_MAX + 1] = 0;
    const char *kbig[] = {"big"}, *vbig[] = {big};
    assert_int_equal(iotc_identity_build_register("t", kbig, vbig, 1, &p, &n, &why), IOTC_ERR_TOO_LARGE);
    assert_int_equal(iotc_identity_build_register(big, NULL, NULL, 0, &p, &n, &why), IOTC_ERR_TOO_LARGE);
    /* Escaping alone pushes 64 KiB of quotes over. */
    memset(big, '"', IOTC_IDENTITY_PAYLOAD_MAX / 2);
    big[IOTC_IDENTITY_PAYLOAD_MAX / 2] = 0;
    assert_int_equal(iotc_identity_build_register("t", kbig, vbig, 1, &p, &n, &why), IOTC_ERR_TOO_LARGE);
    assert_null(p);
    free(big);
}

/* ---- documents --------------------------------------------------------------------- */

static void test_parse_accepted_keys(void **state)
{
    (void)state;
    iotc_identity_doc d;
    const char *why = NULL;
    assert_int_equal(parse_acc(KEYS, ACCEPTED_KEYS, &d, &why), IOTC_OK);
    assert_string_equal(why, "");
    assert_string_equal(d.certificate_id, "770c2b3befd821bcbbe06f0932ab4afdc950bc8a3fbcabf4c0333fcae5a1217d");
    assert_string_equal(d.certificate_pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    assert_string_equal(d.private_key, "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n");
    assert_string_equal(d.certificate_ownership_token, "tok-1");
    assert_null(d.thing_name);
    assert_int_equal(d.config_len, 0);
    assert_int_equal(d.status_code, 0);
    iotc_identity_doc_clear(&d);
    assert_null(d.doc_);
    iotc_identity_doc_clear(&d); /* twice is fine */
    /* Members AWS may add are ignored; surrounding whitespace is fine. */
    const char *extra = " {\"certificateId\":\"c\",\"certificatePem\":\"p\",\"privateKey\":\"k\","
                        "\"certificateOwnershipToken\":\"t\",\"new\":{\"x\":[1,2]}} \n";
    assert_int_equal(parse_acc(KEYS, extra, &d, &why), IOTC_OK);
    assert_string_equal(d.private_key, "k");
    iotc_identity_doc_clear(&d);
}

static void test_parse_accepted_csr(void **state)
{
    (void)state;
    iotc_identity_doc d;
    const char *why = NULL;
    const char *acc = "{\"certificateOwnershipToken\":\"t\",\"certificateId\":\"c\",\"certificatePem\":\"p\"}";
    assert_int_equal(parse_acc(CSR, acc, &d, &why), IOTC_OK);
    assert_string_equal(d.certificate_id, "c");
    assert_null(d.private_key);
    iotc_identity_doc_clear(&d);
    /* A private key in a CSR's answer is not the device's: not handed on. */
    assert_int_equal(parse_acc(CSR, ACCEPTED_KEYS, &d, &why), IOTC_OK);
    assert_null(d.private_key);
    iotc_identity_doc_clear(&d);
    /* The same answer is malformed for CreateKeysAndCertificate. */
    assert_int_equal(parse_acc(KEYS, acc, &d, &why), IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(why, "privateKey"));
    assert_null(d.doc_);
    assert_null(d.certificate_id);
}

static void test_parse_accepted_malformed(void **state)
{
    (void)state;
    struct {
        iotc_identity_op op;
        const char *doc;
        const char *why;
    } cases[] = {
        {KEYS, "", "empty"},
        {KEYS, "not json", "not JSON"},
        {KEYS, "{\"certificateId\":\"c\"", "not JSON"},
        {KEYS, "[1,2]", "not a JSON object"},
        {KEYS, "\"str\"", "not a JSON object"},
        {KEYS, "{} {}", "not JSON"},
        {KEYS, "{\"certificateId\":\"c\"}x", "not JSON"},
        {KEYS, "{\"certificateId\":\"\xff\"}", "UTF-8"},
        {KEYS, "{\"certificatePem\":\"p\",\"privateKey\":\"k\",\"certificateOwnershipToken\":\"t\"}", "certificateId"},
        {KEYS, "{\"certificateId\":\"\",\"certificatePem\":\"p\",\"privateKey\":\"k\",\"certificateOwnershipToken\":\"t\"}",
         "certificateId"},
        {KEYS, "{\"certificateId\":7,\"certificatePem\":\"p\",\"privateKey\":\"k\",\"certificateOwnershipToken\":\"t\"}",
         "certificateId"},
        {KEYS, "{\"certificateId\":\"c\",\"privateKey\":\"k\",\"certificateOwnershipToken\":\"t\"}", "certificatePem"},
        {KEYS, "{\"certificateId\":\"c\",\"certificatePem\":\"p\",\"privateKey\":\"k\"}", "certificateOwnershipToken"},
        {KEYS, "{\"certificateId\":\"c\",\"certificatePem\":\"p\",\"privateKey\":null,\"certificateOwnershipToken\":\"t\"}",
         "privateKey"},
        {CSR, "{\"certificateId\":\"c\",\"certificatePem\":\"p\",\"certificateOwnershipToken\":[]}",
         "certificateOwnershipToken"},
        {REG, "{\"thingName\":5}", "thingName"},
        {REG, "{\"thingName\":\"t\",\"deviceConfiguration\":[]}", "deviceConfiguration"},
        {REG, "{\"thingName\":\"t\",\"deviceConfiguration\":\"a=b\"}", "deviceConfiguration"},
        {REG, "{\"thingName\":\"t\",\"deviceConfiguration\":{\"a\":{\"nested\":\"x\"}}}", "flat"},
        {REG, "{\"thingName\":\"t\",\"deviceConfiguration\":{\"a\":\"x\",\"n\":1}}", "flat"},
        {REG, "{\"thingName\":\"t\",\"deviceConfiguration\":{\"a\":null}}", "flat"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        iotc_identity_doc d;
        const char *why = NULL;
        int rc = parse_acc(cases[i].op, cases[i].doc, &d, &why);
        if (rc != IOTC_ERR_PROTOCOL || !strstr(why, cases[i].why))
            fail_msg("case %zu (%s): rc %d, why \"%s\", want PROTOCOL and \"%s\"", i, cases[i].doc, rc,
                     why ? why : "(null)", cases[i].why);
        assert_null(d.doc_);
    }
    iotc_identity_doc d;
    const char *why = NULL;
    assert_int_equal(iotc_identity_parse_accepted(KEYS, NULL, 5, &d, &why), IOTC_ERR_PROTOCOL);
    assert_int_equal(iotc_identity_parse_accepted((iotc_identity_op)3, (const uint8_t *)"{}", 2, &d, &why),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_parse_accepted(KEYS, (const uint8_t *)"{}", 2, NULL, &why), IOTC_ERR_INVALID_ARG);
    /* A payload with a NUL in it (length, not C string). */
    const char nul[] = "{\"thingName\":\"a\"}\0{}";
    assert_int_equal(iotc_identity_parse_accepted(REG, (const uint8_t *)nul, sizeof nul - 1, &d, &why),
                     IOTC_ERR_PROTOCOL);
}

static void test_parse_accepted_register(void **state)
{
    (void)state;
    iotc_identity_doc d;
    const char *why = NULL;
    assert_int_equal(parse_acc(REG, ACCEPTED_REG, &d, &why), IOTC_OK);
    assert_string_equal(d.thing_name, "ThingPrefix_1");
    assert_int_equal(d.config_len, 2);
    assert_string_equal(d.config_keys[0], "FallbackUrl");
    assert_string_equal(d.config_values[0], "https://www.example.com/test-site");
    assert_string_equal(d.config_keys[1], "LocationUrl");
    assert_string_equal(d.config_values[1], "https://example.aws");
    assert_null(d.certificate_id);
    assert_null(d.private_key);
    iotc_identity_doc_clear(&d);
    /* No configuration, an empty one, a null one: none. */
    const char *none[] = {"{\"thingName\":\"t\"}", "{\"thingName\":\"t\",\"deviceConfiguration\":{}}",
                          "{\"thingName\":\"t\",\"deviceConfiguration\":null}"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parse_acc(REG, none[i], &d, &why), IOTC_OK);
        assert_string_equal(d.thing_name, "t");
        assert_int_equal(d.config_len, 0);
        assert_null(d.config_keys);
        iotc_identity_doc_clear(&d);
    }
    /* A template without a thing: iotsim says "", AWS may leave it out. */
    assert_int_equal(parse_acc(REG, "{\"thingName\":\"\",\"deviceConfiguration\":{\"k\":\"\"}}", &d, &why), IOTC_OK);
    assert_string_equal(d.thing_name, "");
    assert_int_equal(d.config_len, 1);
    assert_string_equal(d.config_values[0], "");
    iotc_identity_doc_clear(&d);
    assert_int_equal(parse_acc(REG, "{}", &d, &why), IOTC_OK);
    assert_string_equal(d.thing_name, "");
    iotc_identity_doc_clear(&d);
    /* Escapes decoded. */
    assert_int_equal(parse_acc(REG, "{\"thingName\":\"a\\u00e9\",\"deviceConfiguration\":{\"q\\\"\":\"x\\ny\"}}", &d,
                               &why),
                     IOTC_OK);
    assert_string_equal(d.thing_name, "a\xc3\xa9");
    assert_string_equal(d.config_keys[0], "q\"");
    assert_string_equal(d.config_values[0], "x\ny");
    iotc_identity_doc_clear(&d);
}

static void test_parse_rejected(void **state)
{
    (void)state;
    iotc_identity_doc d;
    const char *why = NULL;
    assert_int_equal(parse_rej(REJECTED_TOKEN, &d, &why), IOTC_OK);
    assert_int_equal(d.status_code, 400);
    assert_string_equal(d.error_code, "InvalidCertificateOwnershipToken");
    assert_string_equal(d.error_message, "Certificate ownership token cannot be empty.");
    assert_null(d.certificate_id);
    iotc_identity_doc_clear(&d);
    /* Only statusCode: the strings are "". */
    assert_int_equal(parse_rej("{\"statusCode\":403}", &d, &why), IOTC_OK);
    assert_int_equal(d.status_code, 403);
    assert_string_equal(d.error_code, "");
    assert_string_equal(d.error_message, "");
    iotc_identity_doc_clear(&d);
    assert_int_equal(parse_rej("{\"statusCode\":404,\"errorCode\":null,\"errorMessage\":null}", &d, &why), IOTC_OK);
    assert_string_equal(d.error_code, "");
    iotc_identity_doc_clear(&d);
    assert_int_equal(parse_rej("{\"statusCode\":-1}", &d, &why), IOTC_OK);
    assert_int_equal(d.status_code, -1);
    iotc_identity_doc_clear(&d);
    const char *bad[] = {"{}",
                         "{\"statusCode\":\"400\"}",
                         "{\"statusCode\":400.5}",
                         "{\"statusCode\":1e12}",
                         "{\"statusCode\":null}",
                         "{\"statusCode\":400,\"errorCode\":5}",
                         "{\"statusCode\":400,\"errorMessage\":{}}",
                         "[400]",
                         "400",
                         "garbage"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_rej(bad[i], &d, &why), IOTC_ERR_PROTOCOL);
        assert_true(strlen(why) > 0);
        assert_null(d.doc_);
    }
    assert_int_equal(parse_rej("{\"statusCode\":\"400\"}", &d, &why), IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(why, "statusCode"));
    assert_int_equal(parse_rej("{\"statusCode\":400,\"errorCode\":5}", &d, &why), IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(why, "errorCode"));
    assert_int_equal(iotc_identity_parse_rejected((const uint8_t *)"{}", 2, NULL, &why), IOTC_ERR_INVALID_ARG);
}

/* ---- the core ------------------------------------------------------------------------ */

static void test_core_channels(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    assert_int_equal(iotc_identity_core_channels(ic), 2);
    assert_string_equal(iotc_identity_core_topic(ic, 0, REQ), "$aws/certificates/create/json");
    assert_string_equal(iotc_identity_core_topic(ic, 1, ACC), "$aws/certificates/create-from-csr/json/accepted");
    assert_int_equal(iotc_identity_core_channel_op(ic, 0), KEYS);
    assert_int_equal(iotc_identity_core_channel_op(ic, 1), CSR);
    assert_int_equal(iotc_identity_core_channel_op(ic, 2), IOTC_IDENTITY_NOPS);
    assert_null(iotc_identity_core_topic(ic, 2, REQ));
    assert_null(iotc_identity_core_topic(ic, -1, REQ));
    assert_null(iotc_identity_core_topic(ic, 0, (iotc_identity_sfx)3));
    assert_int_equal(iotc_identity_core_find(ic, KEYS, NULL), 0);
    assert_int_equal(iotc_identity_core_find(ic, CSR, NULL), 1);
    assert_int_equal(iotc_identity_core_find(ic, REG, "T"), -1);
    iotc_identity_args a = reg_args("T", "tok");
    assert_int_equal(begin_ok(ic, &a, 0, 100, NULL, NULL), 2);
    assert_int_equal(iotc_identity_core_channels(ic), 3);
    assert_int_equal(iotc_identity_core_find(ic, REG, "T"), 2);
    assert_int_equal(iotc_identity_core_channel_op(ic, 2), REG);
    assert_string_equal(iotc_identity_core_topic(ic, 2, REJ), "$aws/provisioning-templates/T/provision/json/rejected");
    /* Template names are case-sensitive: another channel. */
    a = reg_args("t", "tok");
    assert_int_equal(begin_ok(ic, &a, 0, 100, NULL, NULL), 3);
    iotc_identity_core_free(ic);
    iotc_identity_core_free(NULL);
    assert_int_equal(iotc_identity_core_new(NULL), IOTC_ERR_INVALID_ARG);
}

static void test_core_begin_payloads(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    iotc_identity_request rq;
    iotc_identity_args a = keys_args();
    assert_int_equal(begin(ic, &a, 10, 100, NULL, &rq), IOTC_OK);
    assert_int_equal(rq.channel, 0);
    assert_string_equal(rq.payload, "{}");
    assert_int_equal(rq.payload_len, 2);
    free(rq.payload);
    a = csr_args(PEM_CSR);
    assert_int_equal(begin(ic, &a, 10, 100, NULL, &rq), IOTC_OK);
    assert_int_equal(rq.channel, 1);
    assert_non_null(strstr(rq.payload, "\"certificateSigningRequest\":\"-----BEGIN CERTIFICATE REQUEST-----\\n"));
    free(rq.payload);
    const char *k[] = {"SerialNumber"}, *v[] = {"42"};
    a = reg_args("DevTpl", "tok-9");
    a.param_keys = k;
    a.param_values = v;
    a.nparams = 1;
    assert_int_equal(begin(ic, &a, 10, 100, NULL, &rq), IOTC_OK);
    assert_int_equal(rq.channel, 2);
    assert_string_equal(rq.payload, "{\"certificateOwnershipToken\":\"tok-9\",\"parameters\":{\"SerialNumber\":\"42\"}}");
    free(rq.payload);
    assert_int_equal(iotc_identity_core_pending(ic), 3);
    iotc_identity_core_free(ic);
}

static void test_core_begin_refused(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    iotc_identity_request rq;
    const char *why = NULL;
    iotc_identity_args a = keys_args();
    assert_int_equal(begin(ic, &a, 0, 0, NULL, &rq), IOTC_ERR_INVALID_ARG); /* no timeout */
    assert_int_equal(iotc_identity_core_begin(NULL, &a, 0, 10, NULL, &rq, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_core_begin(ic, NULL, 0, 10, NULL, &rq, &why), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_core_begin(ic, &a, 0, 10, NULL, NULL, &why), IOTC_ERR_INVALID_ARG);
    /* Arguments an operation does not take. */
    a.csr_pem = "x";
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = keys_args();
    a.template_name = "T";
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = csr_args(PEM_CSR);
    a.token = "t";
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = csr_args("");
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = csr_args(NULL);
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = reg_args("T", "t");
    a.csr_pem = PEM_CSR;
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = reg_args(NULL, "t");
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = reg_args("bad/name", "t");
    assert_int_equal(iotc_identity_core_begin(ic, &a, 0, 10, NULL, &rq, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(why, "template name"));
    a = reg_args("TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT", "t"); /* 37 */
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = reg_args("T", "");
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = reg_args("T", "t");
    a.nparams = 1; /* no arrays */
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    a = (iotc_identity_args){.op = (iotc_identity_op)7};
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_INVALID_ARG);
    char *big = malloc(IOTC_IDENTITY_PAYLOAD_MAX + 1);
    memset(big, 'A', IOTC_IDENTITY_PAYLOAD_MAX);
    big[IOTC_IDENTITY_PAYLOAD_MAX] = 0;
    a = csr_args(big);
    assert_int_equal(begin(ic, &a, 0, 10, NULL, &rq), IOTC_ERR_TOO_LARGE);
    free(big);
    /* Nothing was registered, no channel was added. */
    assert_int_equal(iotc_identity_core_pending(ic), 0);
    assert_int_equal(iotc_identity_core_channels(ic), 2);
    assert_int_equal(iotc_identity_core_next_deadline(ic), UINT64_MAX);
    iotc_identity_core_free(ic);
}

/* The rule that replaces the correlation token AWS does not send. */
static void test_one_outstanding(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    iotc_identity_request rq;
    const char *why = NULL;
    iotc_identity_args keys = keys_args(), csr = csr_args(PEM_CSR);
    iotc_identity_args ta = reg_args("A", "t1"), tb = reg_args("B", "t2");
    uint64_t id1 = 0;
    assert_int_equal(begin_ok(ic, &keys, 0, 100, NULL, &id1), 0);
    /* A second CreateKeysAndCertificate: BUSY at the call. */
    assert_int_equal(iotc_identity_core_begin(ic, &keys, 0, 100, NULL, &rq, &why), IOTC_ERR_BUSY);
    assert_non_null(strstr(why, "already pending"));
    assert_null(rq.payload);
    /* The other operations have topics of their own: fine meanwhile. */
    assert_int_equal(begin_ok(ic, &csr, 0, 100, NULL, NULL), 1);
    assert_int_equal(begin(ic, &csr, 0, 100, NULL, &rq), IOTC_ERR_BUSY);
    assert_int_equal(begin_ok(ic, &ta, 0, 100, NULL, NULL), 2);
    assert_int_equal(begin_ok(ic, &tb, 0, 100, NULL, NULL), 3);
    /* RegisterThing: one per template, whatever the token. */
    iotc_identity_args ta2 = reg_args("A", "another-token");
    assert_int_equal(iotc_identity_core_begin(ic, &ta2, 0, 100, NULL, &rq, &why), IOTC_ERR_BUSY);
    assert_non_null(strstr(why, "template"));
    assert_int_equal(iotc_identity_core_pending(ic), 4);
    assert_true(iotc_identity_core_is_pending(ic, 0));
    /* Answered: the next one may go, with a new id. */
    iotc_identity_event ev;
    feed(ic, "$aws/certificates/create/json/accepted", ACCEPTED_KEYS, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_RESPONSE);
    iotc_identity_event_clear(&ev);
    assert_false(iotc_identity_core_is_pending(ic, 0));
    uint64_t id2 = 0;
    assert_int_equal(begin_ok(ic, &keys, 0, 100, NULL, &id2), 0);
    assert_true(id2 > id1);
    /* Expired: the same. */
    iotc_identity_taken tk;
    while (iotc_identity_core_expire(ic, 100, &tk))
        ;
    assert_int_equal(iotc_identity_core_pending(ic), 0);
    assert_int_equal(begin_ok(ic, &ta2, 100, 100, NULL, NULL), 2);
    iotc_identity_core_free(ic);
}

static void test_template_bound(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    char name[8];
    for (int i = 0; i < IOTC_IDENTITY_MAX_TEMPLATES; i++) {
        snprintf(name, sizeof name, "T%d", i);
        iotc_identity_args a = reg_args(name, "t");
        assert_int_equal(begin_ok(ic, &a, 0, 100, NULL, NULL), 2 + i);
    }
    assert_int_equal(iotc_identity_core_channels(ic), IOTC_IDENTITY_MAX_CHANNELS);
    iotc_identity_request rq;
    const char *why = NULL;
    iotc_identity_args a = reg_args("OneMore", "t");
    assert_int_equal(iotc_identity_core_begin(ic, &a, 0, 100, NULL, &rq, &why), IOTC_ERR_BUSY);
    assert_non_null(strstr(why, "16 templates"));
    /* Still so once they are idle: the channels (and a wrapper's
     * subscriptions) are kept; a known template goes on working. */
    iotc_identity_taken tk;
    while (iotc_identity_core_take_any(ic, &tk))
        ;
    assert_int_equal(begin(ic, &a, 0, 100, NULL, &rq), IOTC_ERR_BUSY);
    a = reg_args("T3", "t");
    assert_int_equal(begin_ok(ic, &a, 0, 100, NULL, NULL), 5);
    /* The certificate operations are not templates. */
    a = keys_args();
    assert_int_equal(begin_ok(ic, &a, 0, 100, NULL, NULL), 0);
    iotc_identity_core_free(ic);
}

static void test_input_accepted(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    int u1, u2, u3;
    iotc_identity_args a = keys_args();
    uint64_t id = 0;
    begin_ok(ic, &a, 0, 100, &u1, &id);
    iotc_identity_event ev;
    feed(ic, "$aws/certificates/create/json/accepted", ACCEPTED_KEYS, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_RESPONSE);
    assert_int_equal(ev.status, IOTC_OK);
    assert_int_equal(ev.op, KEYS);
    assert_int_equal(ev.channel, 0);
    assert_int_equal(ev.id, id);
    assert_ptr_equal(ev.user, &u1);
    assert_string_equal(ev.why, "");
    assert_string_equal(ev.doc.certificate_ownership_token, "tok-1");
    assert_non_null(ev.doc.private_key);
    iotc_identity_event_clear(&ev);
    assert_int_equal(iotc_identity_core_pending(ic), 0);
    /* A second answer, now that nothing is pending: ignored. */
    feed(ic, "$aws/certificates/create/json/accepted", ACCEPTED_KEYS, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_IGNORED);
    assert_int_equal(ev.ignored, IOTC_IDENTITY_IGN_NOT_PENDING);
    iotc_identity_event_clear(&ev);
    /* CSR and RegisterThing. */
    a = csr_args(PEM_CSR);
    begin_ok(ic, &a, 0, 100, &u2, NULL);
    a = reg_args("FleetTpl", "tok-1");
    begin_ok(ic, &a, 0, 100, &u3, NULL);
    feed(ic, "$aws/provisioning-templates/FleetTpl/provision/json/accepted", ACCEPTED_REG, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_RESPONSE);
    assert_int_equal(ev.op, REG);
    assert_ptr_equal(ev.user, &u3);
    assert_string_equal(ev.doc.thing_name, "ThingPrefix_1");
    assert_int_equal(ev.doc.config_len, 2);
    iotc_identity_event_clear(&ev);
    feed(ic, "$aws/certificates/create-from-csr/json/accepted",
         "{\"certificateOwnershipToken\":\"t\",\"certificateId\":\"c\",\"certificatePem\":\"p\"}", &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_RESPONSE);
    assert_ptr_equal(ev.user, &u2);
    assert_null(ev.doc.private_key);
    iotc_identity_event_clear(&ev);
    iotc_identity_core_free(ic);
}

static void test_input_rejected_and_malformed(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    iotc_identity_args a = reg_args("FleetTpl", "tok");
    int u;
    begin_ok(ic, &a, 0, 100, &u, NULL);
    iotc_identity_event ev;
    feed(ic, "$aws/provisioning-templates/FleetTpl/provision/json/rejected", REJECTED_TOKEN, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_RESPONSE);
    assert_int_equal(ev.status, IOTC_ERR_REJECTED);
    assert_int_equal(ev.doc.status_code, 400);
    assert_string_equal(ev.doc.error_code, "InvalidCertificateOwnershipToken");
    assert_ptr_equal(ev.user, &u);
    iotc_identity_event_clear(&ev);
    /* A malformed answer is the answer all the same (nothing else could be):
     * the request completes with PROTOCOL and says why. */
    begin_ok(ic, &a, 0, 100, &u, NULL);
    feed(ic, "$aws/provisioning-templates/FleetTpl/provision/json/accepted",
         "{\"thingName\":\"t\",\"deviceConfiguration\":{\"a\":{\"b\":\"c\"}}}", &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_RESPONSE);
    assert_int_equal(ev.status, IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(ev.why, "deviceConfiguration"));
    assert_null(ev.doc.doc_);
    iotc_identity_event_clear(&ev);
    assert_int_equal(iotc_identity_core_pending(ic), 0);
    a = keys_args();
    begin_ok(ic, &a, 0, 100, &u, NULL);
    feed(ic, "$aws/certificates/create/json/rejected", "{\"errorCode\":\"x\"}", &ev);
    assert_int_equal(ev.status, IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(ev.why, "statusCode"));
    iotc_identity_event_clear(&ev);
    begin_ok(ic, &a, 0, 100, &u, NULL);
    feed(ic, "$aws/certificates/create/json/accepted", NULL, &ev);
    assert_int_equal(ev.status, IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(ev.why, "empty"));
    iotc_identity_event_clear(&ev);
    iotc_identity_core_free(ic);
}

static void test_input_ignored(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    iotc_identity_args a = reg_args("A", "tok");
    begin_ok(ic, &a, 0, 100, NULL, NULL);
    a = keys_args();
    begin_ok(ic, &a, 0, 100, NULL, NULL);
    struct {
        const char *topic;
        iotc_identity_ignore why;
    } cases[] = {
        {"$aws/provisioning-templates/B/provision/json/accepted", IOTC_IDENTITY_IGN_TOPIC}, /* another template */
        {"$aws/provisioning-templates/a/provision/json/accepted", IOTC_IDENTITY_IGN_TOPIC}, /* case */
        {"$aws/provisioning-templates/A/provision/json", IOTC_IDENTITY_IGN_TOPIC},          /* a request */
        {"$aws/provisioning-templates/A/provision/cbor/accepted", IOTC_IDENTITY_IGN_TOPIC},
        {"$aws/certificates/create/json", IOTC_IDENTITY_IGN_TOPIC},
        {"$aws/certificates/create/cbor/accepted", IOTC_IDENTITY_IGN_TOPIC},
        {"$aws/things/A/shadow/get/accepted", IOTC_IDENTITY_IGN_TOPIC},
        {"other/topic", IOTC_IDENTITY_IGN_TOPIC},
        {"$aws/certificates/create-from-csr/json/accepted", IOTC_IDENTITY_IGN_NOT_PENDING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        iotc_identity_event ev;
        feed(ic, cases[i].topic, ACCEPTED_KEYS, &ev);
        assert_int_equal(ev.type, IOTC_IDENTITY_EV_IGNORED);
        if (ev.ignored != cases[i].why)
            fail_msg("%s: ignored as %d, want %d", cases[i].topic, ev.ignored, cases[i].why);
        assert_null(ev.user);
        iotc_identity_event_clear(&ev);
    }
    assert_int_equal(iotc_identity_core_pending(ic), 2);
    iotc_identity_event ev;
    iotc_identity_core_input(NULL, "x", 1, NULL, 0, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_IGNORED);
    iotc_identity_core_input(ic, NULL, 0, NULL, 0, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_IGNORED);
    iotc_identity_core_input(ic, "x", 1, NULL, 0, NULL); /* no crash */
    iotc_identity_event_clear(NULL);
    iotc_identity_core_free(ic);
}

static void test_timeouts(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    int u1, u2, u3;
    iotc_identity_args k = keys_args(), c = csr_args(PEM_CSR), r = reg_args("T", "tok");
    uint64_t idk = 0, idc = 0, idr = 0;
    begin_ok(ic, &k, 1000, 500, &u1, &idk); /* due 1500 */
    begin_ok(ic, &c, 1100, 200, &u2, &idc); /* due 1300 */
    begin_ok(ic, &r, 1200, 300, &u3, &idr); /* due 1500, after k */
    assert_int_equal(iotc_identity_core_next_deadline(ic), 1300);
    iotc_identity_taken tk;
    assert_false(iotc_identity_core_expire(ic, 1299, &tk));
    assert_true(iotc_identity_core_expire(ic, 1300, &tk)); /* due means <= now */
    assert_ptr_equal(tk.user, &u2);
    assert_int_equal(tk.op, CSR);
    assert_int_equal(tk.channel, 1);
    assert_int_equal(tk.id, idc);
    assert_false(iotc_identity_core_expire(ic, 1300, &tk));
    assert_int_equal(iotc_identity_core_next_deadline(ic), 1500);
    /* Equal deadlines: the earlier request first. */
    assert_true(iotc_identity_core_expire(ic, 5000, &tk));
    assert_ptr_equal(tk.user, &u1);
    assert_true(iotc_identity_core_expire(ic, 5000, &tk));
    assert_ptr_equal(tk.user, &u3);
    assert_int_equal(tk.op, REG);
    assert_false(iotc_identity_core_expire(ic, 5000, &tk));
    assert_int_equal(iotc_identity_core_next_deadline(ic), UINT64_MAX);
    /* An answer after the timeout is nobody's. */
    iotc_identity_event ev;
    feed(ic, "$aws/certificates/create/json/accepted", ACCEPTED_KEYS, &ev);
    assert_int_equal(ev.type, IOTC_IDENTITY_EV_IGNORED);
    assert_int_equal(ev.ignored, IOTC_IDENTITY_IGN_NOT_PENDING);
    iotc_identity_event_clear(&ev);
    /* Near the end of time the deadline saturates. */
    begin_ok(ic, &k, UINT64_MAX - 10, 100, &u1, NULL);
    assert_int_equal(iotc_identity_core_next_deadline(ic), UINT64_MAX);
    assert_false(iotc_identity_core_expire(ic, UINT64_MAX - 1, &tk));
    assert_true(iotc_identity_core_expire(ic, UINT64_MAX, &tk));
    iotc_identity_core_free(ic);
}

static void test_take(void **state)
{
    (void)state;
    iotc_identity_core *ic = mk();
    int u1, u2;
    iotc_identity_args k = keys_args(), r = reg_args("T", "tok");
    uint64_t idk = 0, idr = 0;
    begin_ok(ic, &k, 0, 100, &u1, &idk);
    begin_ok(ic, &r, 0, 100, &u2, &idr);
    assert_int_not_equal(idk, idr);
    iotc_identity_taken tk;
    assert_false(iotc_identity_core_take(ic, idk + idr + 1, &tk)); /* never issued */
    assert_true(iotc_identity_core_take(ic, idr, &tk));
    assert_ptr_equal(tk.user, &u2);
    assert_int_equal(tk.channel, 2);
    assert_false(iotc_identity_core_take(ic, idr, &tk)); /* once */
    /* A new request on the same channel has a new id: the old one does not
     * take it (a late PUBACK failure of the old request, say). */
    uint64_t idr2 = 0;
    begin_ok(ic, &r, 0, 100, &u2, &idr2);
    assert_int_not_equal(idr2, idr);
    assert_false(iotc_identity_core_take(ic, idr, &tk));
    assert_true(iotc_identity_core_is_pending(ic, 2));
    assert_true(iotc_identity_core_take(ic, idk, NULL));
    assert_true(iotc_identity_core_take_any(ic, &tk));
    assert_int_equal(tk.id, idr2);
    assert_false(iotc_identity_core_take_any(ic, &tk));
    assert_false(iotc_identity_core_take(NULL, 1, &tk));
    assert_false(iotc_identity_core_take_any(NULL, &tk));
    assert_false(iotc_identity_core_expire(NULL, 1, &tk));
    assert_int_equal(iotc_identity_core_next_deadline(NULL), UINT64_MAX);
    assert_int_equal(iotc_identity_core_pending(NULL), 0);
    iotc_identity_core_free(ic);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_names),
        cmocka_unit_test(test_template_name_limits),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_topic_limits_and_errors),
        cmocka_unit_test(test_topic_parse_refuses),
        cmocka_unit_test(test_payload_create_keys),
        cmocka_unit_test(test_payload_csr_escapes_pem),
        cmocka_unit_test(test_payload_csr_refused),
        cmocka_unit_test(test_payload_register),
        cmocka_unit_test(test_payload_register_refused),
        cmocka_unit_test(test_parse_accepted_keys),
        cmocka_unit_test(test_parse_accepted_csr),
        cmocka_unit_test(test_parse_accepted_malformed),
        cmocka_unit_test(test_parse_accepted_register),
        cmocka_unit_test(test_parse_rejected),
        cmocka_unit_test(test_core_channels),
        cmocka_unit_test(test_core_begin_payloads),
        cmocka_unit_test(test_core_begin_refused),
        cmocka_unit_test(test_one_outstanding),
        cmocka_unit_test(test_template_bound),
        cmocka_unit_test(test_input_accepted),
        cmocka_unit_test(test_input_rejected_and_malformed),
        cmocka_unit_test(test_input_ignored),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
