/*
 * test_provision.c: the Fleet Provisioning service (sim_provision.h) on its
 * own, with a fake backend: topics, the canonical template of §2.4, each
 * intrinsic function and its errors, Defaults, every rejected row, token
 * expiry, single use and the bound, CBOR both ways (requests built and
 * responses read with libcbor), template validation naming the key, size
 * limits and the control API's description.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cbor.h>
#include <cjson/cJSON.h>

#include "iotc/mqtt.h"
#include "sim_provision.h"

/* ---- the fake backend ------------------------------------------------------ */

typedef struct {
    int ncreate, ncsr, nregister, nforget;
    int create_rc;     /* what create_* return */
    bool no_pem;       /* create_* succeed but give no certificate */
    char csr[256];     /* the last CSR */
    int register_rc;   /* what register_thing returns */
    char register_code[64];
    char forgot[8][80];
    int next_cert;
    /* The last registration, as JSON text (strings copied). */
    char *reg;
} fake;

static char *dup_str(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    assert_non_null(d);
    strcpy(d, s);
    return d;
}

static char *next_id(fake *f)
{
    char id[80];
    snprintf(id, sizeof id, "%064x", ++f->next_cert);
    return dup_str(id);
}

static int fk_keys(void *ctx, char **cert_id, char **cert_pem, char **key_pem, char *why, size_t whylen)
{
    fake *f = ctx;
    f->ncreate++;
    if (f->create_rc) {
        snprintf(why, whylen, "the CA is down");
        return f->create_rc;
    }
    *cert_id = next_id(f);
    *cert_pem = f->no_pem ? NULL : dup_str("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    *key_pem = dup_str("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    return 0;
}

static int fk_csr(void *ctx, const char *csr, char **cert_id, char **cert_pem, char *why, size_t whylen)
{
    fake *f = ctx;
    f->ncsr++;
    snprintf(f->csr, sizeof f->csr, "%s", csr);
    if (f->create_rc) {
        snprintf(why, whylen, "Could not parse the CSR.");
        return f->create_rc;
    }
    *cert_id = next_id(f);
    *cert_pem = dup_str("-----BEGIN CERTIFICATE-----\nCSR\n-----END CERTIFICATE-----\n");
    return 0;
}

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_tree(cJSON *o, const char *k, const cJSON *v)
{
    if (v)
        cJSON_AddItemToObject(o, k, cJSON_Duplicate(v, true));
    else
        cJSON_AddNullToObject(o, k);
}

static int fk_register(void *ctx, const sim_prov_registration *r, char *code, size_t codelen, char *why,
                       size_t whylen)
{
    fake *f = ctx;
    f->nregister++;
    cJSON *o = cJSON_CreateObject();
    add_str(o, "template", r->template_name);
    add_str(o, "claim", r->claim_certificate_id);
    add_str(o, "client", r->client_id);
    add_str(o, "cert", r->certificate_id);
    add_tree(o, "parameters", r->parameters);
    add_str(o, "thing", r->thing_name);
    add_tree(o, "attributes", r->attributes);
    add_str(o, "type", r->thing_type_name);
    add_tree(o, "groups", r->thing_groups);
    add_str(o, "billing", r->billing_group);
    add_tree(o, "override", r->thing_override);
    add_str(o, "status", r->certificate_status);
    add_str(o, "certOverride", r->certificate_override);
    cJSON *pols = cJSON_AddArrayToObject(o, "policies");
    for (size_t i = 0; i < r->npolicies; i++) {
        cJSON *pp = cJSON_CreateObject();
        add_str(pp, "name", r->policies[i].name);
        add_str(pp, "document", r->policies[i].document);
        cJSON_AddItemToArray(pols, pp);
    }
    free(f->reg);
    f->reg = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (f->register_rc) {
        snprintf(code, codelen, "%s", f->register_code);
        snprintf(why, whylen, "the backend says no");
        return f->register_rc;
    }
    return 0;
}

static void fk_forget(void *ctx, const char *cert_id)
{
    fake *f = ctx;
    if (f->nforget < 8)
        snprintf(f->forgot[f->nforget], sizeof f->forgot[0], "%s", cert_id);
    f->nforget++;
}

/* ---- the environment: module, backend, the last response -------------------- */

typedef struct {
    sim_provision *p;
    fake f;
    int nemit;
    char topic[128];
    uint8_t *payload;
    size_t len;
    char why[1024];
    uint64_t now;
} env;

static void on_emit(void *ctx, const char *topic, const uint8_t *payload, size_t len)
{
    env *e = ctx;
    e->nemit++;
    snprintf(e->topic, sizeof e->topic, "%s", topic);
    free(e->payload);
    e->payload = malloc(len + 1);
    assert_non_null(e->payload);
    memcpy(e->payload, payload, len);
    e->payload[len] = '\0';
    e->len = len;
}

static env *env_new_cfg(const sim_provision_config *cfg)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->p = sim_provision_new(cfg);
    assert_non_null(e->p);
    sim_prov_backend b = {fk_keys, fk_csr, fk_register, fk_forget, &e->f};
    sim_provision_set_backend(e->p, &b);
    e->now = 1000;
    return e;
}

static env *env_new(void)
{
    return env_new_cfg(NULL);
}

static void env_free(env *e)
{
    sim_provision_free(e->p);
    free(e->payload);
    free(e->f.reg);
    free(e);
}

/* Publishes payload on topic (which must be a request topic). */
static int req_n(env *e, const char *topic, const void *payload, size_t len)
{
    sim_prov_req r;
    if (!sim_provision_parse_topic(topic, strlen(topic), &r))
        fail_msg("not a request topic: %s", topic);
    e->why[0] = '\0';
    return sim_provision_handle(e->p, &r, "claim-cert", "client-1", payload, len, e->now, on_emit, e, e->why,
                                sizeof e->why);
}

static int req(env *e, const char *topic, const char *payload)
{
    return req_n(e, topic, payload, payload ? strlen(payload) : 0);
}

/* The last response as JSON (freed by the caller). */
static cJSON *resp(env *e)
{
    assert_non_null(e->payload);
    cJSON *j = cJSON_Parse((const char *)e->payload);
    if (!j)
        fail_msg("response is not JSON: %s", (const char *)e->payload);
    return j;
}

static const char *sget(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Checks the last response is a rejection with these fields (msg: a substring). */
static void expect_rejected(env *e, const char *suffix_topic, int status, const char *code, const char *msg)
{
    cJSON *j = resp(e);
    if (!strstr(e->topic, suffix_topic) || !strstr(e->topic, "/rejected"))
        fail_msg("topic %s, wanted %s.../rejected", e->topic, suffix_topic);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "statusCode");
    assert_true(cJSON_IsNumber(sc));
    assert_int_equal(sc->valueint, status);
    assert_string_equal(sget(j, "errorCode"), code);
    const char *m = sget(j, "errorMessage");
    assert_non_null(m);
    if (msg && !strstr(m, msg))
        fail_msg("errorMessage \"%s\" does not say \"%s\"", m, msg);
    assert_int_equal(cJSON_GetArraySize(j), 3);
    /* why: "errorCode: errorMessage" */
    char want[1024];
    snprintf(want, sizeof want, "%s: %s", code, m);
    assert_string_equal(e->why, want);
    cJSON_Delete(j);
}

#define CREATE "$aws/certificates/create/json"
#define CSR "$aws/certificates/create-from-csr/json"
#define PROV(t) "$aws/provisioning-templates/" t "/provision/json"

/* CreateKeysAndCertificate; the token in tok (65 bytes), the id in id (80). */
static void new_token(env *e, char *tok, char *id)
{
    assert_int_equal(req(e, CREATE, ""), 200);
    cJSON *j = resp(e);
    snprintf(tok, 65, "%s", sget(j, "certificateOwnershipToken"));
    if (id)
        snprintf(id, 80, "%s", sget(j, "certificateId"));
    cJSON_Delete(j);
}

static int register_with(env *e, const char *topic, const char *tok, const char *params)
{
    char body[8192];
    if (params)
        snprintf(body, sizeof body, "{\"certificateOwnershipToken\":\"%s\",\"parameters\":%s}", tok, params);
    else
        snprintf(body, sizeof body, "{\"certificateOwnershipToken\":\"%s\"}", tok);
    return req(e, topic, body);
}

static void put_ok(env *e, const char *name, const char *body)
{
    char why[512] = "";
    if (sim_provision_template_put(e->p, name, body, strlen(body), true, why, sizeof why) != 0)
        fail_msg("template %s refused: %s", name, why);
}

/* The template of §2.4, verbatim. */
static const char CANONICAL[] =
    "{\n"
    "  \"Parameters\": { \"SerialNumber\": {\"Type\":\"String\"}, \"DeviceLocation\": {\"Type\":\"String\"},\n"
    "                  \"AWS::IoT::Certificate::Id\": {\"Type\":\"String\"} },\n"
    "  \"Mappings\": { \"LocationTable\": { \"Seattle\": { \"LocationUrl\": \"https://example.aws\" } } },\n"
    "  \"Resources\": {\n"
    "    \"thing\": { \"Type\": \"AWS::IoT::Thing\",\n"
    "      \"Properties\": { \"ThingName\": {\"Fn::Join\":[\"\",[\"ThingPrefix_\",{\"Ref\":\"SerialNumber\"}]]},\n"
    "                      \"AttributePayload\": {\"version\":\"v1\",\"serialNumber\":\"serialNumber\"} },\n"
    "      \"OverrideSettings\": "
    "{\"AttributePayload\":\"MERGE\",\"ThingTypeName\":\"REPLACE\",\"ThingGroups\":\"DO_NOTHING\"} },\n"
    "    \"certificate\": { \"Type\": \"AWS::IoT::Certificate\",\n"
    "      \"Properties\": { \"CertificateId\": {\"Ref\":\"AWS::IoT::Certificate::Id\"}, \"Status\": \"Active\" },\n"
    "      \"OverrideSettings\": {\"Status\":\"REPLACE\"} },\n"
    "    \"policy\": { \"Type\": \"AWS::IoT::Policy\",\n"
    "      \"Properties\": { \"PolicyDocument\": { \"Version\":\"2012-10-17\",\n"
    "        \"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:Connect\",\"iot:Subscribe\",\"iot:Publish\","
    "\"iot:Receive\"],\"Resource\":\"*\"}] } } }\n"
    "  },\n"
    "  \"DeviceConfiguration\": { \"FallbackUrl\": \"https://www.example.com/test-site\",\n"
    "    \"LocationUrl\": {\"Fn::FindInMap\":[\"LocationTable\",{\"Ref\":\"DeviceLocation\"},\"LocationUrl\"]} }\n"
    "}\n";

/* The smallest valid template, plus a DeviceConfiguration value and more. */
#define CERT_RES                                                                                                     \
    "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":{\"Ref\":\"AWS::IoT::" \
    "Certificate::Id\"}}}"

/* ---- topics ------------------------------------------------------------------- */

static void test_topics(void **state)
{
    (void)state;
    static const struct {
        const char *topic;
        bool ok;
        sim_prov_op op;
        bool cbor;
        const char *tpl;
    } T[] = {
        {"$aws/certificates/create/json", true, SIM_PROV_CREATE_KEYS, false, ""},
        {"$aws/certificates/create/cbor", true, SIM_PROV_CREATE_KEYS, true, ""},
        {"$aws/certificates/create-from-csr/json", true, SIM_PROV_CREATE_FROM_CSR, false, ""},
        {"$aws/certificates/create-from-csr/cbor", true, SIM_PROV_CREATE_FROM_CSR, true, ""},
        {"$aws/provisioning-templates/T/provision/json", true, SIM_PROV_REGISTER, false, "T"},
        {"$aws/provisioning-templates/my_Template-2/provision/cbor", true, SIM_PROV_REGISTER, true, "my_Template-2"},
        {"$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789/provision/json", true, SIM_PROV_REGISTER,
         false, "abcdefghijklmnopqrstuvwxyz0123456789"},
        /* 37 characters */
        {"$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789a/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates//provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/a.b/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/a b/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/a+/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/#/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/\xc3\xa4/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/a/b/provision/json", false, 0, false, NULL},
        {"$aws/provisioning-templates/T/provision", false, 0, false, NULL},
        {"$aws/provisioning-templates/T/provision/", false, 0, false, NULL},
        {"$aws/provisioning-templates/T/provision/xml", false, 0, false, NULL},
        {"$aws/provisioning-templates/T", false, 0, false, NULL},
        /* responses are not requests */
        {"$aws/certificates/create/json/accepted", false, 0, false, NULL},
        {"$aws/certificates/create/json/rejected", false, 0, false, NULL},
        {"$aws/certificates/create-from-csr/cbor/accepted", false, 0, false, NULL},
        {"$aws/provisioning-templates/T/provision/json/accepted", false, 0, false, NULL},
        {"$aws/provisioning-templates/T/provision/cbor/rejected", false, 0, false, NULL},
        {"$aws/certificates/create/JSON", false, 0, false, NULL},
        {"$aws/certificates/create/", false, 0, false, NULL},
        {"$aws/certificates/create", false, 0, false, NULL},
        {"$aws/certificates/create/json/", false, 0, false, NULL},
        {"$aws/certificates/create-from-csr/", false, 0, false, NULL},
        {"$aws/certificates/delete/json", false, 0, false, NULL},
        {"aws/certificates/create/json", false, 0, false, NULL},
        {"$aws/things/T/shadow/get", false, 0, false, NULL},
        {"", false, 0, false, NULL},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        sim_prov_req r;
        memset(&r, 0x5a, sizeof r);
        bool ok = sim_provision_parse_topic(T[i].topic, strlen(T[i].topic), &r);
        if (ok != T[i].ok)
            fail_msg("%s: %d", T[i].topic, ok);
        if (!ok) {
            /* out untouched */
            const unsigned char *b = (const unsigned char *)&r;
            for (size_t k = 0; k < sizeof r; k++)
                assert_int_equal(b[k], 0x5a);
            continue;
        }
        assert_int_equal(r.op, T[i].op);
        assert_int_equal(r.cbor, T[i].cbor);
        assert_string_equal(r.template_name, T[i].tpl);
        assert_true(sim_provision_parse_topic(T[i].topic, strlen(T[i].topic), NULL));
        /* And back. */
        char buf[SIM_PROV_TOPIC_MAX + 1];
        assert_int_equal(sim_provision_topic(&r, "", buf, sizeof buf), strlen(T[i].topic));
        assert_string_equal(buf, T[i].topic);
    }
    /* Length, not NUL, ends the topic. */
    const char *t = "$aws/certificates/create/json";
    assert_false(sim_provision_parse_topic(t, strlen(t) - 1, NULL));
    char withnul[64];
    memcpy(withnul, t, strlen(t) + 1);
    assert_false(sim_provision_parse_topic(withnul, strlen(t) + 1, NULL));
    assert_false(sim_provision_parse_topic(NULL, 0, NULL));

    /* The longest topic is 88 bytes (§2.1). */
    sim_prov_req r;
    assert_true(sim_provision_parse_topic(T[6].topic, strlen(T[6].topic), &r));
    char buf[SIM_PROV_TOPIC_MAX + 1];
    assert_int_equal(sim_provision_topic(&r, "/accepted", buf, sizeof buf), SIM_PROV_TOPIC_MAX);
    assert_int_equal(sim_provision_topic(&r, "/accepted", buf, SIM_PROV_TOPIC_MAX), 0);
    assert_int_equal(sim_provision_topic(&r, "/rejected", buf, sizeof buf), 88);
    assert_string_equal(buf,
                        "$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789/provision/json/rejected");
    r.template_name[0] = '\0';
    assert_int_equal(sim_provision_topic(&r, "", buf, sizeof buf), 0);

    assert_string_equal(sim_prov_op_name(SIM_PROV_CREATE_KEYS), "CreateKeysAndCertificate");
    assert_string_equal(sim_prov_op_name(SIM_PROV_CREATE_FROM_CSR), "CreateCertificateFromCsr");
    assert_string_equal(sim_prov_op_name(SIM_PROV_REGISTER), "RegisterThing");
}

/* ---- the canonical flow --------------------------------------------------------- */

static void test_canonical(void **state)
{
    (void)state;
    env *e = env_new();
    put_ok(e, "FleetTemplate", CANONICAL);

    /* CreateKeysAndCertificate, empty payload [DOC]. */
    assert_int_equal(req(e, CREATE, NULL), 200);
    assert_string_equal(e->why, "accepted");
    assert_string_equal(e->topic, "$aws/certificates/create/json/accepted");
    cJSON *j = resp(e);
    assert_int_equal(cJSON_GetArraySize(j), 4);
    /* The documented order. */
    assert_string_equal(j->child->string, "certificateId");
    assert_string_equal(j->child->next->string, "certificatePem");
    assert_string_equal(j->child->next->next->string, "privateKey");
    assert_string_equal(j->child->next->next->next->string, "certificateOwnershipToken");
    char id[80], tok[65];
    snprintf(id, sizeof id, "%s", sget(j, "certificateId"));
    snprintf(tok, sizeof tok, "%s", sget(j, "certificateOwnershipToken"));
    assert_int_equal(strlen(tok), 64);
    assert_int_equal(strspn(tok, "0123456789abcdef"), 64);
    assert_non_null(strstr(sget(j, "certificatePem"), "BEGIN CERTIFICATE"));
    assert_non_null(strstr(sget(j, "privateKey"), "PRIVATE KEY"));
    cJSON_Delete(j);
    assert_int_equal(sim_provision_token_count(e->p), 1);
    assert_int_equal(sim_provision_next_expiry(e->p), 1000 + 3600);

    /* RegisterThing with the documented parameters. */
    e->now += 10;
    assert_int_equal(
        register_with(e, PROV("FleetTemplate"), tok, "{\"SerialNumber\":\"1\",\"DeviceLocation\":\"Seattle\"}"), 200);
    assert_string_equal(e->topic, "$aws/provisioning-templates/FleetTemplate/provision/json/accepted");
    assert_string_equal((const char *)e->payload,
                        "{\"deviceConfiguration\":{\"FallbackUrl\":\"https://www.example.com/test-site\","
                        "\"LocationUrl\":\"https://example.aws\"},\"thingName\":\"ThingPrefix_1\"}");
    assert_int_equal(sim_provision_token_count(e->p), 0);

    /* What the backend was asked to do. */
    cJSON *r = cJSON_Parse(e->f.reg);
    assert_string_equal(sget(r, "template"), "FleetTemplate");
    assert_string_equal(sget(r, "claim"), "claim-cert");
    assert_string_equal(sget(r, "client"), "client-1");
    assert_string_equal(sget(r, "cert"), id);
    assert_string_equal(sget(r, "thing"), "ThingPrefix_1");
    assert_string_equal(sget(r, "status"), "ACTIVE"); /* "Active" in the template */
    assert_string_equal(sget(r, "certOverride"), "REPLACE");
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "attributes"));
    assert_string_equal(s, "{\"version\":\"v1\",\"serialNumber\":\"serialNumber\"}");
    free(s);
    s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "override"));
    assert_string_equal(
        s, "{\"AttributePayload\":\"MERGE\",\"ThingTypeName\":\"REPLACE\",\"ThingGroups\":\"DO_NOTHING\"}");
    free(s);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "type")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "groups")));
    const cJSON *pm = cJSON_GetObjectItem(r, "parameters");
    assert_string_equal(sget(pm, "SerialNumber"), "1");
    assert_string_equal(sget(pm, "DeviceLocation"), "Seattle");
    assert_string_equal(sget(pm, "AWS::IoT::Certificate::Id"), id);
    const cJSON *pols = cJSON_GetObjectItem(r, "policies");
    assert_int_equal(cJSON_GetArraySize(pols), 1);
    /* The name is the SHA-256 of the compact document. */
    assert_string_equal(sget(pols->child, "name"), "dd8c6c93de1f49d6ea0f9ee0b0a0f456d0edec3aa61c399dca2a00f7f2fdbf13");
    assert_string_equal(sget(pols->child, "document"),
                        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:Connect\","
                        "\"iot:Subscribe\",\"iot:Publish\",\"iot:Receive\"],\"Resource\":\"*\"}]}");
    cJSON_Delete(r);
    assert_int_equal(e->f.nforget, 0);
    env_free(e);
}

/* ---- CreateKeysAndCertificate -------------------------------------------------- */

static void test_create_keys(void **state)
{
    (void)state;
    env *e = env_new();
    static const char *const ok[] = {"", "{}", " { } ", "{\"a\":1}", "{\"x\":{\"y\":[1,2]}}\n"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (req(e, CREATE, ok[i]) != 200)
            fail_msg("refused %s: %s", ok[i], e->why);
    static const char *const bad[] = {"[]", "null", "\"{}\"", "1", "nope", "{} x", "{", "{}{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (req(e, CREATE, bad[i]) != 400)
            fail_msg("accepted %s", bad[i]);
        expect_rejected(e, "create/json", 400, "InvalidPayload", NULL);
    }
    assert_int_equal(req_n(e, CREATE, "{\"a\":\"\xff\"}", 9), 400);
    expect_rejected(e, "create/json", 400, "InvalidPayload", "UTF-8");
    assert_int_equal(req_n(e, CREATE, "{}\0", 3), 400);
    assert_int_equal(e->f.ncreate, 5);

    /* The backend failing. */
    e->f.create_rc = -1;
    assert_int_equal(req(e, CREATE, ""), 500);
    expect_rejected(e, "create/json", 500, "InternalFailure", "the CA is down");
    e->f.create_rc = 503;
    assert_int_equal(req(e, CREATE, ""), 503);
    expect_rejected(e, "create/json", 503, "ServiceUnavailable", "the CA is down");
    e->f.create_rc = 0;
    /* ...or giving no certificate: the half-made one is forgotten. */
    e->f.no_pem = true;
    assert_int_equal(req(e, CREATE, ""), 500);
    expect_rejected(e, "create/json", 500, "InternalFailure", NULL);
    assert_int_equal(e->f.nforget, 1);
    e->f.no_pem = false;

    /* No backend at all. */
    sim_provision_set_backend(e->p, NULL);
    assert_int_equal(req(e, CREATE, ""), 500);
    expect_rejected(e, "create/json", 500, "InternalFailure", "no certificate authority");
    assert_int_equal(req(e, CSR, "{\"certificateSigningRequest\":\"x\"}"), 500);
    env_free(e);
}

/* ---- CreateCertificateFromCsr ------------------------------------------------------ */

static void test_create_from_csr(void **state)
{
    (void)state;
    env *e = env_new();
    assert_int_equal(req(e, CSR, "{\"certificateSigningRequest\":\"-----BEGIN CERTIFICATE REQUEST-----\\nA\"}"), 200);
    assert_string_equal(e->f.csr, "-----BEGIN CERTIFICATE REQUEST-----\nA");
    assert_string_equal(e->topic, "$aws/certificates/create-from-csr/json/accepted");
    cJSON *j = resp(e);
    assert_int_equal(cJSON_GetArraySize(j), 3);
    assert_null(cJSON_GetObjectItem(j, "privateKey"));
    assert_string_equal(j->child->string, "certificateOwnershipToken");
    assert_int_equal(strlen(sget(j, "certificateOwnershipToken")), 64);
    assert_int_equal(strlen(sget(j, "certificateId")), 64);
    assert_non_null(strstr(sget(j, "certificatePem"), "CSR"));
    cJSON_Delete(j);
    assert_int_equal(sim_provision_token_count(e->p), 1);

    static const char *const bad[] = {"", "{}", "{\"certificateSigningRequest\":\"\"}",
                                      "{\"certificateSigningRequest\":1}", "{\"certificateSigningRequest\":null}",
                                      "{\"csr\":\"x\"}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (req(e, CSR, bad[i]) != 400)
            fail_msg("accepted %s", bad[i]);
        expect_rejected(e, "create-from-csr/json", 400, "InvalidPayload", NULL);
    }
    assert_int_equal(e->f.ncsr, 1);

    /* The CA refusing the CSR: 400 InvalidCSR. */
    e->f.create_rc = -1;
    assert_int_equal(req(e, CSR, "{\"certificateSigningRequest\":\"garbage\"}"), 400);
    expect_rejected(e, "create-from-csr/json", 400, "InvalidCSR", "Could not parse the CSR.");
    e->f.create_rc = 400;
    assert_int_equal(req(e, CSR, "{\"certificateSigningRequest\":\"garbage\"}"), 400);
    expect_rejected(e, "create-from-csr/json", 400, "InvalidCSR", NULL);
    e->f.create_rc = 500;
    assert_int_equal(req(e, CSR, "{\"certificateSigningRequest\":\"garbage\"}"), 500);
    expect_rejected(e, "create-from-csr/json", 500, "InternalFailure", NULL);
    assert_int_equal(sim_provision_token_count(e->p), 1);
    env_free(e);
}

/* ---- RegisterThing: every rejected row --------------------------------------------- */

static void test_register_errors(void **state)
{
    (void)state;
    env *e = env_new();
    put_ok(e, "FleetTemplate", CANONICAL);
    char why[256];
    assert_int_equal(sim_provision_template_put(e->p, "Off", CANONICAL, strlen(CANONICAL), false, why, sizeof why), 0);
    char tok[65], id[80];
    new_token(e, tok, id);
    const char *params = "{\"SerialNumber\":\"1\",\"DeviceLocation\":\"Seattle\"}";

    assert_int_equal(register_with(e, PROV("Nope"), tok, params), 404);
    expect_rejected(e, "Nope/provision/json", 404, "ResourceNotFound", "Nope does not exist");
    assert_int_equal(register_with(e, PROV("Off"), tok, params), 404);
    expect_rejected(e, "Off/provision/json", 404, "ResourceNotFound", "disabled");
    /* The template is checked before the payload. */
    assert_int_equal(req(e, PROV("Nope"), "garbage"), 404);

    assert_int_equal(req(e, PROV("FleetTemplate"), "garbage"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidPayload", "JSON");
    assert_int_equal(req(e, PROV("FleetTemplate"), "[1]"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidPayload", "object");

    /* [OBS]: the empty token. */
    static const char *const empty[] = {"", "{}", "{\"certificateOwnershipToken\":\"\"}",
                                        "{\"certificateOwnershipToken\":null}", "{\"parameters\":{}}"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        assert_int_equal(req(e, PROV("FleetTemplate"), empty[i]), 400);
        expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", NULL);
        cJSON *j = resp(e);
        assert_string_equal(sget(j, "errorMessage"), "Certificate ownership token cannot be empty.");
        cJSON_Delete(j);
    }
    assert_int_equal(req(e, PROV("FleetTemplate"), "{\"certificateOwnershipToken\":5}"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidPayload", "must be a string");
    assert_int_equal(register_with(e, PROV("FleetTemplate"), "not-a-token", params), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", "invalid");
    char other[65];
    memset(other, 'a', 64);
    other[64] = '\0';
    assert_int_equal(register_with(e, PROV("FleetTemplate"), other, params), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", "invalid");

    /* Parameters: an object of strings. */
    static const char *const badp[] = {"[]", "\"x\"", "1", "{\"SerialNumber\":1}", "{\"a\":\"b\",\"c\":null}",
                                       "{\"a\":{}}"};
    for (size_t i = 0; i < sizeof badp / sizeof badp[0]; i++) {
        assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, badp[i]), 400);
        expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidPayload", "parameters");
    }
    /* A parameter the template needs is missing: the key, the function, the name. */
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, "{\"DeviceLocation\":\"Seattle\"}"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidParameters",
                    "Resources.thing.Properties.ThingName.Fn::Join[1][1].Ref: Ref: no value for parameter "
                    "SerialNumber");
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, NULL), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidParameters", "SerialNumber");
    /* A location the map lacks. */
    assert_int_equal(
        register_with(e, PROV("FleetTemplate"), tok, "{\"SerialNumber\":\"1\",\"DeviceLocation\":\"Oslo\"}"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidParameters",
                    "DeviceConfiguration.LocationUrl.Fn::FindInMap: Fn::FindInMap: no key Oslo in map LocationTable");
    /* A thing name the template makes invalid. */
    assert_int_equal(
        register_with(e, PROV("FleetTemplate"), tok, "{\"SerialNumber\":\"a b\",\"DeviceLocation\":\"Seattle\"}"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidParameters",
                    "Resources.thing.Properties.ThingName: \"ThingPrefix_a b\" is not a valid thing name");
    assert_int_equal(e->f.nregister, 0);

    /* The backend refusing: its status and code; the token stays usable. */
    e->f.register_rc = 409;
    snprintf(e->f.register_code, sizeof e->f.register_code, "ResourceConflictsException");
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 409);
    expect_rejected(e, "FleetTemplate/provision/json", 409, "ResourceConflictsException", "the backend says no");
    e->f.register_rc = 403;
    e->f.register_code[0] = '\0';
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 403);
    expect_rejected(e, "FleetTemplate/provision/json", 403, "AccessDenied", NULL);
    e->f.register_rc = 7; /* not a status: 500 */
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 500);
    expect_rejected(e, "FleetTemplate/provision/json", 500, "InternalFailure", NULL);
    e->f.register_rc = 0;
    assert_int_equal(sim_provision_token_count(e->p), 1);
    sim_provision_set_backend(e->p, NULL);
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 500);
    expect_rejected(e, "FleetTemplate/provision/json", 500, "InternalFailure", "registry");
    sim_prov_backend b = {fk_keys, fk_csr, fk_register, fk_forget, &e->f};
    sim_provision_set_backend(e->p, &b);
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 200);

    /* Single use. */
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", "already been used");
    assert_int_equal(e->f.nforget, 0);

    /* A request the topic parser would not give: no topic, nothing emitted. */
    sim_prov_req bad = {.op = SIM_PROV_REGISTER, .cbor = false, .template_name = "a.b"};
    int n = e->nemit;
    assert_int_equal(sim_provision_handle(e->p, &bad, NULL, NULL, NULL, 0, e->now, on_emit, e, why, sizeof why), 400);
    bad.op = (sim_prov_op)7;
    assert_int_equal(sim_provision_handle(e->p, &bad, NULL, NULL, NULL, 0, e->now, on_emit, e, why, sizeof why), 400);
    assert_int_equal(sim_provision_handle(e->p, NULL, NULL, NULL, NULL, 0, e->now, on_emit, e, NULL, 0), 400);
    assert_int_equal(e->nemit, n);
    /* emit may be NULL. */
    sim_prov_req cr = {.op = SIM_PROV_CREATE_KEYS};
    assert_int_equal(sim_provision_handle(e->p, &cr, NULL, NULL, NULL, 0, e->now, NULL, NULL, NULL, 0), 200);
    env_free(e);
}

/* ---- tokens ------------------------------------------------------------------------ */

static void test_token_expiry(void **state)
{
    (void)state;
    env *e = env_new();
    put_ok(e, "FleetTemplate", CANONICAL);
    const char *params = "{\"SerialNumber\":\"1\",\"DeviceLocation\":\"Seattle\"}";
    char t1[65], id1[80], t2[65], id2[80];
    new_token(e, t1, id1); /* expires at 4600 */
    e->now = 2000;
    new_token(e, t2, id2); /* expires at 5600 */
    assert_int_equal(sim_provision_next_expiry(e->p), 4600);
    assert_int_equal(sim_provision_expire(e->p, 4599), 4600);
    assert_int_equal(e->f.nforget, 0);

    /* Still valid in its last second. */
    e->now = 5599;
    assert_int_equal(sim_provision_expire(e->p, 4599), 4600);
    e->now = 4599;
    assert_int_equal(register_with(e, PROV("FleetTemplate"), t1, params), 200);
    assert_int_equal(sim_provision_next_expiry(e->p), 5600);

    /* t2 expires unused: forget_cert once, then refused as expired. */
    e->now = 5600;
    assert_int_equal(register_with(e, PROV("FleetTemplate"), t2, params), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", "expired");
    assert_int_equal(e->f.nforget, 1);
    assert_string_equal(e->f.forgot[0], id2);
    assert_int_equal(sim_provision_expire(e->p, 9999), UINT64_MAX);
    assert_int_equal(register_with(e, PROV("FleetTemplate"), t2, params), 400);
    assert_int_equal(e->f.nforget, 1);
    assert_int_equal(sim_provision_token_count(e->p), 0);
    assert_int_equal(sim_provision_next_expiry(e->p), UINT64_MAX);

    /* sim_provision_expire alone, several at once, oldest first. */
    new_token(e, t1, id1);
    new_token(e, t2, id2);
    assert_int_equal(sim_provision_expire(e->p, e->now + 3600), UINT64_MAX);
    assert_int_equal(e->f.nforget, 3);
    assert_string_equal(e->f.forgot[1], id1);
    assert_string_equal(e->f.forgot[2], id2);
    env_free(e);
}

static void test_max_tokens(void **state)
{
    (void)state;
    sim_provision_config c;
    sim_provision_config_init(&c);
    assert_int_equal(c.token_ttl_s, 3600);
    assert_int_equal(c.max_template_bytes, 10240);
    c.max_tokens = 2;
    c.token_ttl_s = 60;
    env *e = env_new_cfg(&c);
    put_ok(e, "FleetTemplate", CANONICAL);
    char t1[65], t2[65];
    new_token(e, t1, NULL);
    new_token(e, t2, NULL);
    assert_int_equal(req(e, CREATE, ""), 429);
    expect_rejected(e, "create/json", 429, "ThrottlingException", NULL);
    assert_int_equal(req(e, CSR, "{\"certificateSigningRequest\":\"x\"}"), 429);
    expect_rejected(e, "create-from-csr/json", 429, "ThrottlingException", NULL);
    assert_int_equal(e->f.ncreate, 2); /* the backend was not asked */
    assert_int_equal(e->f.ncsr, 0);
    /* One used: room again. */
    assert_int_equal(
        register_with(e, PROV("FleetTemplate"), t1, "{\"SerialNumber\":\"1\",\"DeviceLocation\":\"Seattle\"}"), 200);
    assert_int_equal(req(e, CREATE, ""), 200);
    /* Expiry makes room too; the spent memory is bounded by max_tokens (2):
     * the oldest spent token is then just unknown. */
    e->now += 60;
    assert_int_equal(req(e, CREATE, ""), 200);
    assert_int_equal(e->f.nforget, 2);
    assert_int_equal(register_with(e, PROV("FleetTemplate"), t1, "{}"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", "invalid");
    assert_int_equal(register_with(e, PROV("FleetTemplate"), t2, "{}"), 400);
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidCertificateOwnershipToken", "expired");
    env_free(e);
}

static uint64_t counter_random(void *ctx)
{
    uint64_t *n = ctx;
    return (*n)++;
}

static uint64_t constant_random(void *ctx)
{
    (void)ctx;
    return 42;
}

static void test_random_source(void **state)
{
    (void)state;
    sim_provision_config c;
    sim_provision_config_init(&c);
    uint64_t n = 1;
    c.random = counter_random;
    c.random_ctx = &n;
    env *e = env_new_cfg(&c);
    char t[65];
    new_token(e, t, NULL);
    assert_string_equal(t, "0000000000000001000000000000000200000000000000030000000000000004");
    env_free(e);

    /* A source that repeats itself: the second token cannot be unique. */
    c.random = constant_random;
    e = env_new_cfg(&c);
    new_token(e, t, NULL);
    assert_int_equal(req(e, CREATE, ""), 500);
    expect_rejected(e, "create/json", 500, "InternalFailure", NULL);
    assert_int_equal(e->f.nforget, 1); /* the certificate made for it */
    env_free(e);

    /* The default source is deterministic for a seed. */
    sim_provision_config_init(&c);
    env *a = env_new_cfg(&c), *b = env_new_cfg(&c);
    char ta[65], tb[65];
    new_token(a, ta, NULL);
    new_token(b, tb, NULL);
    assert_string_equal(ta, tb);
    c.seed = 7;
    env *d = env_new_cfg(&c);
    new_token(d, tb, NULL);
    assert_string_not_equal(ta, tb);
    env_free(a);
    env_free(b);
    env_free(d);
}

/* ---- evaluation ------------------------------------------------------------------- */

#define EVAL_PARAMS                                                                                                  \
    "\"Parameters\":{\"Loc\":{\"Type\":\"String\",\"Default\":\"Seattle\"},\"Csv\":{\"Type\":\"String\",\"Default\":" \
    "\"a,b,,c\"},\"Idx\":{\"Type\":\"String\",\"Default\":\"1\"},\"Name\":{\"Type\":\"String\"}}"
#define EVAL_MAPPINGS                                                                                                \
    "\"Mappings\":{\"Loc\":{\"Seattle\":{\"Url\":\"https://sea\",\"Hosts\":[\"h0\",\"h1\"]},\"Oslo\":{\"Url\":"     \
    "\"https://osl\"}}}"

/* Loads a template whose DeviceConfiguration is {"v": value}, provisions
 * with params; the value given, or the error message (into out). */
static int eval_value(const char *value, const char *params, char *out, size_t outlen)
{
    env *e = env_new();
    char body[4096];
    snprintf(body, sizeof body, "{" EVAL_PARAMS "," EVAL_MAPPINGS ",\"Resources\":{" CERT_RES
                                "},\"DeviceConfiguration\":{\"v\":%s}}",
             value);
    char why[512];
    if (sim_provision_template_put(e->p, "T", body, strlen(body), true, why, sizeof why) != 0)
        fail_msg("refused %s: %s", value, why);
    char tok[65], id[80];
    new_token(e, tok, id);
    int st = register_with(e, PROV("T"), tok, params ? params : "{}");
    cJSON *j = resp(e);
    if (st == 200) {
        const cJSON *dc = cJSON_GetObjectItem(j, "deviceConfiguration");
        snprintf(out, outlen, "%s", sget(dc, "v"));
        assert_string_equal(sget(j, "thingName"), ""); /* no thing resource */
    } else {
        assert_int_equal(st, 400);
        assert_string_equal(sget(j, "errorCode"), "InvalidParameters");
        snprintf(out, outlen, "%s", sget(j, "errorMessage"));
    }
    cJSON_Delete(j);
    /* The certificate id, for Fn::Sub's check below. */
    if (st == 200 && strstr(value, "Certificate::Id"))
        snprintf(out + strlen(out), outlen - strlen(out), "|%s", id);
    env_free(e);
    return st;
}

static void value_is(const char *value, const char *params, const char *want)
{
    char out[512];
    if (eval_value(value, params, out, sizeof out) != 200)
        fail_msg("%s: refused: %s", value, out);
    if (strcmp(out, want) != 0)
        fail_msg("%s: got \"%s\", wanted \"%s\"", value, out, want);
}

static void value_err(const char *value, const char *params, const char *want)
{
    char out[512];
    if (eval_value(value, params, out, sizeof out) == 200)
        fail_msg("%s: accepted: %s", value, out);
    if (!strstr(out, want))
        fail_msg("%s: error \"%s\" does not say \"%s\"", value, out, want);
}

static void test_intrinsics(void **state)
{
    (void)state;
    /* Ref and Defaults. */
    value_is("{\"Ref\":\"Loc\"}", NULL, "Seattle");
    value_is("{\"Ref\":\"Loc\"}", "{\"Loc\":\"Oslo\"}", "Oslo");
    value_is("{\"Ref\":\"Name\"}", "{\"Name\":\"n\"}", "n");
    /* An undeclared parameter the device sends (AWS's fleet example does this). */
    value_is("{\"Ref\":\"Extra\"}", "{\"Extra\":\"x\"}", "x");
    /* The certificate id is the token's, whatever the device says. */
    char out[512], want[512];
    assert_int_equal(eval_value("{\"Ref\":\"AWS::IoT::Certificate::Id\"}", "{\"AWS::IoT::Certificate::Id\":\"forged\"}",
                                out, sizeof out),
                     200);
    char *bar = strchr(out, '|');
    assert_non_null(bar);
    *bar = '\0';
    assert_string_equal(out, bar + 1);

    /* Fn::Join */
    value_is("{\"Fn::Join\":[\"\",[\"a\",\"b\",{\"Ref\":\"Loc\"}]]}", NULL, "abSeattle");
    value_is("{\"Fn::Join\":[\"-\",[\"a\"]]}", NULL, "a");
    value_is("{\"Fn::Join\":[\", \",[]]}", NULL, "");
    value_is("{\"Fn::Join\":[\"/\",{\"Fn::Split\":[\",\",{\"Ref\":\"Csv\"}]}]}", NULL, "a/b//c");
    value_is("{\"Fn::Join\":[{\"Ref\":\"Idx\"},[\"x\",\"y\"]]}", NULL, "x1y");
    value_err("{\"Fn::Join\":[\"\",[\"a\",{\"Fn::Split\":[\",\",\"b,c\"]}]]}", NULL,
              "DeviceConfiguration.v.Fn::Join: Fn::Join: the values must be a list of strings");
    value_err("{\"Fn::Join\":[\"\",{\"Ref\":\"Loc\"}]}", NULL, "Fn::Join: the values must be a list of strings");
    value_err("{\"Fn::Join\":[{\"Fn::Split\":[\",\",\"a\"]},[\"x\"]]}", NULL,
              "Fn::Join: the delimiter must be a string");

    /* Fn::Select: numbers, digit strings, from Split and FindInMap lists. */
    value_is("{\"Fn::Select\":[1,[\"a\",\"b\",\"c\"]]}", NULL, "b");
    value_is("{\"Fn::Select\":[\"2\",[\"a\",\"b\",\"c\"]]}", NULL, "c");
    value_is("{\"Fn::Select\":[{\"Ref\":\"Idx\"},{\"Fn::Split\":[\",\",{\"Ref\":\"Csv\"}]}]}", NULL, "b");
    value_is("{\"Fn::Select\":[\"2\",{\"Fn::Split\":[\",\",{\"Ref\":\"Csv\"}]}]}", NULL, "");
    value_is("{\"Fn::Select\":[1,{\"Fn::FindInMap\":[\"Loc\",\"Seattle\",\"Hosts\"]}]}", NULL, "h1");
    value_err("{\"Fn::Select\":[3,[\"a\",\"b\",\"c\"]]}", NULL,
              "DeviceConfiguration.v.Fn::Select: Fn::Select: index 3 is out of range (3 values)");
    value_err("{\"Fn::Select\":[{\"Ref\":\"Idx\"},[\"a\"]]}", NULL, "index 1 is out of range");
    value_err("{\"Fn::Select\":[0,[null]]}", NULL, "Fn::Select: value 0 is null");
    value_err("{\"Fn::Select\":[{\"Ref\":\"Idx\"},[\"a\"]]}", "{\"Idx\":\"-1\"}",
              "Fn::Select: the index must be a non-negative integer");
    value_err("{\"Fn::Select\":[{\"Ref\":\"Idx\"},[\"a\"]]}", "{\"Idx\":\"x\"}", "non-negative integer");
    value_err("{\"Fn::Select\":[0,{\"Ref\":\"Loc\"}]}", NULL, "Fn::Select: the values must be a list");
    value_err("{\"Fn::Select\":[0,[[\"a\"]]]}", NULL, "DeviceConfiguration.v: must evaluate to a string");

    /* Fn::FindInMap */
    value_is("{\"Fn::FindInMap\":[\"Loc\",{\"Ref\":\"Loc\"},\"Url\"]}", NULL, "https://sea");
    value_is("{\"Fn::FindInMap\":[\"Loc\",{\"Ref\":\"Loc\"},\"Url\"]}", "{\"Loc\":\"Oslo\"}", "https://osl");
    value_err("{\"Fn::FindInMap\":[\"Loc\",{\"Ref\":\"Loc\"},\"Url\"]}", "{\"Loc\":\"Rome\"}",
              "Fn::FindInMap: no key Rome in map Loc");
    value_err("{\"Fn::FindInMap\":[\"Loc\",\"Seattle\",{\"Ref\":\"Name\"}]}", "{\"Name\":\"Port\"}",
              "Fn::FindInMap: no key Port in Loc.Seattle");
    value_err("{\"Fn::FindInMap\":[{\"Ref\":\"Name\"},\"Seattle\",\"Url\"]}", "{\"Name\":\"Nope\"}",
              "Fn::FindInMap: no map Nope in Mappings");
    value_err("{\"Fn::FindInMap\":[\"Loc\",{\"Fn::Split\":[\",\",\"a\"]},\"Url\"]}", NULL,
              "Fn::FindInMap: the keys must be strings");

    /* Fn::Split */
    value_is("{\"Fn::Select\":[0,{\"Fn::Split\":[\"::\",\"x::y\"]}]}", NULL, "x");
    value_is("{\"Fn::Select\":[1,{\"Fn::Split\":[{\"Ref\":\"Idx\"},\"a1b\"]}]}", NULL, "b");
    value_err("{\"Fn::Select\":[0,{\"Fn::Split\":[{\"Ref\":\"Name\"},\"a\"]}]}", "{\"Name\":\"\"}",
              "Fn::Split: the delimiter must be a non-empty string");
    value_err("{\"Fn::Split\":[\",\",\"a,b\"]}", NULL, "must evaluate to a string (DeviceConfiguration is flat)");

    /* Fn::Sub */
    value_is("{\"Fn::Sub\":\"${Loc}-${Idx}\"}", NULL, "Seattle-1");
    value_is("{\"Fn::Sub\":\"no vars\"}", NULL, "no vars");
    value_is("{\"Fn::Sub\":\"${!Loc} is ${Loc}\"}", NULL, "${Loc} is Seattle");
    value_is("{\"Fn::Sub\":[\"${A}/${Loc}\",{\"A\":{\"Fn::Join\":[\"\",[\"x\",\"y\"]]}}]}", NULL, "xy/Seattle");
    value_is("{\"Fn::Sub\":[\"${Loc}\",{\"Loc\":\"shadowed\"}]}", NULL, "shadowed");
    assert_int_equal(eval_value("{\"Fn::Sub\":\"c=${AWS::IoT::Certificate::Id}\"}", NULL, out, sizeof out), 200);
    bar = strchr(out, '|');
    snprintf(want, sizeof want, "c=%s", bar + 1);
    *bar = '\0';
    assert_string_equal(out, want);
    value_err("{\"Fn::Sub\":\"${Nope}\"}", NULL, "Fn::Sub: no value for ${Nope}");
    value_err("{\"Fn::Sub\":[\"${A}\",{\"A\":{\"Fn::Split\":[\",\",\"a\"]}}]}", NULL,
              "DeviceConfiguration.v.Fn::Sub[1].A: Fn::Sub: a variable must be a string");

    /* Ref */
    value_err("{\"Ref\":\"Name\"}", NULL, "DeviceConfiguration.v.Ref: Ref: no value for parameter Name");
    value_err("{\"Fn::Join\":[\"\",[{\"Ref\":\"Missing\"}]]}", NULL,
              "DeviceConfiguration.v.Fn::Join[1][0].Ref: Ref: no value for parameter Missing");
}

/* The evaluation budget: one long parameter repeated. */
static void test_budget(void **state)
{
    (void)state;
    env *e = env_new();
    char body[2048] = "{\"Resources\":{" CERT_RES "},\"DeviceConfiguration\":{";
    for (int i = 0; i < 20; i++)
        snprintf(body + strlen(body), sizeof body - strlen(body), "%s\"k%d\":{\"Ref\":\"P\"}", i ? "," : "", i);
    strcat(body, "}}");
    put_ok(e, "T", body);
    char tok[65];
    new_token(e, tok, NULL);
    size_t n = 60000;
    char *params = malloc(n + 16);
    assert_non_null(params);
    strcpy(params, "{\"P\":\"");
    memset(params + 6, 'x', n);
    strcpy(params + 6 + n, "\"}");
    assert_int_equal(register_with(e, PROV("T"), tok, NULL), 400); /* P missing */
    char *reqbody = malloc(n + 200);
    if (!reqbody)
        abort();
    snprintf(reqbody, n + 200, "{\"certificateOwnershipToken\":\"%s\",\"parameters\":%s}", tok, params);
    assert_int_equal(req(e, PROV("T"), reqbody), 400);
    expect_rejected(e, "T/provision/json", 400, "InvalidParameters", "add up to more than");
    /* Shorter: fine. */
    params[6 + 1000] = '\0';
    strcat(params, "\"}");
    snprintf(reqbody, n + 200, "{\"certificateOwnershipToken\":\"%s\",\"parameters\":%s}", tok, params);
    assert_int_equal(req(e, PROV("T"), reqbody), 200);
    free(params);
    free(reqbody);
    env_free(e);
}

/* ---- resources ------------------------------------------------------------------- */

static void test_resources(void **state)
{
    (void)state;
    env *e = env_new();
    /* Thing with every property, functions in lists and attributes; two
     * policies, one by name and one a document in a string; upper-case
     * override keys; INACTIVE. */
    put_ok(e, "Full",
           "{\"Parameters\":{\"Sn\":{\"Type\":\"String\"},\"Loc\":{\"Type\":\"String\",\"Default\":\"WA\"}},"
           "\"Resources\":{"
           "\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{"
           "\"ThingName\":{\"Fn::Sub\":\"dev-${Sn}\"},"
           "\"AttributePayload\":{\"version\":\"v1\",\"serialNumber\":{\"Ref\":\"Sn\"}},"
           "\"ThingTypeName\":\"lightBulb-versionA\","
           "\"ThingGroups\":[\"v1-lightbulbs\",{\"Ref\":\"Loc\"}],"
           "\"BillingGroup\":\"bg\"},"
           "\"OverrideSettings\":{\"ATTRIBUTE_PAYLOAD\":\"merge\",\"THING_TYPE_NAME\":\"Replace\",\"THING_GROUPS\":"
           "\"FAIL\"}},"
           "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":{\"Ref\":"
           "\"AWS::IoT::Certificate::Id\"},\"Status\":\"inactive\"}},"
           "\"p1\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"existing-policy\"}},"
           "\"p2\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":\"{ \\\"Version\\\": "
           "\\\"2012-10-17\\\", \\\"Statement\\\": [{ \\\"Effect\\\": \\\"Allow\\\", "
           "\\\"Action\\\":[\\\"iot:Publish\\\"], "
           "\\\"Resource\\\": [\\\"arn:aws:iot:us-east-1:123456789012:topic/foo/bar\\\"] }] }\"}}"
           "}}");
    char tok[65];
    new_token(e, tok, NULL);
    assert_int_equal(register_with(e, PROV("Full"), tok, "{\"Sn\":\"42\"}"), 200);
    assert_string_equal((const char *)e->payload, "{\"deviceConfiguration\":{},\"thingName\":\"dev-42\"}");
    cJSON *r = cJSON_Parse(e->f.reg);
    assert_string_equal(sget(r, "thing"), "dev-42");
    assert_string_equal(sget(r, "type"), "lightBulb-versionA");
    assert_string_equal(sget(r, "billing"), "bg");
    assert_string_equal(sget(r, "status"), "INACTIVE");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "certOverride")));
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "groups"));
    assert_string_equal(s, "[\"v1-lightbulbs\",\"WA\"]");
    free(s);
    s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "attributes"));
    assert_string_equal(s, "{\"version\":\"v1\",\"serialNumber\":\"42\"}");
    free(s);
    s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "override"));
    assert_string_equal(s, "{\"AttributePayload\":\"MERGE\",\"ThingTypeName\":\"REPLACE\",\"ThingGroups\":\"FAIL\"}");
    free(s);
    const cJSON *pols = cJSON_GetObjectItem(r, "policies");
    assert_int_equal(cJSON_GetArraySize(pols), 2);
    assert_string_equal(sget(pols->child, "name"), "existing-policy");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(pols->child, "document")));
    assert_string_equal(sget(pols->child->next, "name"),
                        "00fef4cd287474484487f0b30be9d807363146e9c46c0d2f0551a372967b8b1c");
    assert_string_equal(sget(pols->child->next, "document"),
                        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\"],"
                        "\"Resource\":[\"arn:aws:iot:us-east-1:123456789012:topic/foo/bar\"]}]}");
    cJSON_Delete(r);

    /* SHA-256 around the padding boundaries (55, 56, 64, 119, 120 bytes). */
    static const struct {
        int n;
        const char *hex;
    } H[] = {{47, "d08834b873b5615b1ad5c14d5444c883f9c4067a8f2560f225eea884e60678d7"},
             {48, "d3b29c0ba3ab8f13a760dbca290a0538887a1e184c3d394ad36c81e71ac27cba"},
             {56, "dbf4bcc20158ff7658b3d65a73bb51834bd94ca5b032329b98694cb6fabb7d0e"},
             {111, "696597dd6bdf2657a2dc389d5273e49ddc61aa8bdba1c15a4bbe270f3d22269c"},
             {112, "41f4819471e0193fa4184c08059c074505129a8fc217c4c4775379c832bb8874"}};
    for (size_t i = 0; i < sizeof H / sizeof H[0]; i++) {
        char body[1024], x[200];
        memset(x, 'x', (size_t)H[i].n);
        x[H[i].n] = '\0';
        snprintf(body, sizeof body,
                 "{\"Resources\":{" CERT_RES ",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":"
                 "{\"a\":\"%s\"}}}}}",
                 x);
        put_ok(e, "H", body);
        new_token(e, tok, NULL);
        assert_int_equal(register_with(e, PROV("H"), tok, NULL), 200);
        r = cJSON_Parse(e->f.reg);
        assert_string_equal(sget(cJSON_GetObjectItem(r, "policies")->child, "name"), H[i].hex);
        cJSON_Delete(r);
    }

    /* A PolicyDocument made by Fn::Sub, and a PolicyName from a parameter. */
    put_ok(e, "Sub",
           "{\"Resources\":{" CERT_RES ",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":"
           "{\"Fn::Sub\":\"{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\","
           "\\\"Action\\\":\\\"iot:Connect\\\",\\\"Resource\\\":\\\"arn:aws:iot:*:*:client/${C}\\\"}]}\"}}},"
           "\"q\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":{\"Ref\":\"PN\"}}}}}");
    new_token(e, tok, NULL);
    assert_int_equal(register_with(e, PROV("Sub"), tok, "{\"C\":\"dev1\",\"PN\":\"pn\"}"), 200);
    r = cJSON_Parse(e->f.reg);
    pols = cJSON_GetObjectItem(r, "policies");
    assert_non_null(strstr(sget(pols->child, "document"), "client/dev1"));
    assert_string_equal(sget(pols->child->next, "name"), "pn");
    cJSON_Delete(r);
    assert_int_equal(register_with(e, PROV("Sub"), tok, "{\"C\":\"dev1\",\"PN\":\"bad name\"}"), 400);
    new_token(e, tok, NULL);
    assert_int_equal(register_with(e, PROV("Sub"), tok, "{\"C\":\"dev1\",\"PN\":\"bad name\"}"), 400);
    expect_rejected(e, "Sub/provision/json", 400, "InvalidParameters",
                    "Resources.q.Properties.PolicyName: must be a valid");
    assert_int_equal(register_with(e, PROV("Sub"), tok, "{\"C\":\"\\\"\",\"PN\":\"pn\"}"), 400);
    expect_rejected(e, "Sub/provision/json", 400, "InvalidParameters",
                    "Resources.p.Properties.PolicyDocument: must be a JSON object");

    /* CertificateId must be the token's certificate. */
    put_ok(e, "Fixed",
           "{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":\"abc\"}}}}");
    assert_int_equal(register_with(e, PROV("Fixed"), tok, NULL), 400);
    expect_rejected(e, "Fixed/provision/json", 400, "InvalidParameters",
                    "Resources.c.Properties.CertificateId: must be the certificate of the ownership token");
    /* Status from a parameter, checked when evaluated. */
    put_ok(e, "St",
           "{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":{\"Ref\":"
           "\"AWS::IoT::Certificate::Id\"},\"Status\":{\"Ref\":\"S\"}}}}}");
    assert_int_equal(register_with(e, PROV("St"), tok, "{\"S\":\"REVOKED\"}"), 400);
    expect_rejected(e, "St/provision/json", 400, "InvalidParameters", "Resources.c.Properties.Status: must be ACTIVE");
    /* Thing property types checked after evaluation. */
    put_ok(e, "Tg",
           "{\"Resources\":{" CERT_RES ",\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"n\","
           "\"ThingGroups\":{\"Ref\":\"G\"}}}}}");
    assert_int_equal(register_with(e, PROV("Tg"), tok, "{\"G\":\"g\"}"), 400);
    expect_rejected(e, "Tg/provision/json", 400, "InvalidParameters",
                    "Resources.t.Properties.ThingGroups: must be a list of strings");
    put_ok(e, "Tg",
           "{\"Resources\":{" CERT_RES ",\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"n\","
           "\"ThingGroups\":{\"Fn::Split\":[\",\",{\"Ref\":\"G\"}]}}}}}");
    assert_int_equal(register_with(e, PROV("Tg"), tok, "{\"G\":\"g1,g2\"}"), 200);
    r = cJSON_Parse(e->f.reg);
    s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "groups"));
    assert_string_equal(s, "[\"g1\",\"g2\"]");
    free(s);
    cJSON_Delete(r);
    env_free(e);
}

/* ---- template validation ---------------------------------------------------------------- */

static void put_bad(sim_provision *p, const char *body, const char *want)
{
    char why[512] = "";
    if (sim_provision_template_put(p, "Bad", body, strlen(body), true, why, sizeof why) == 0)
        fail_msg("accepted: %s", body);
    if (!strstr(why, want))
        fail_msg("error \"%s\" does not say \"%s\"\n  (template %s)", why, want, body);
}

#define R(x) "{\"Resources\":{" CERT_RES x "}}"
#define THING(props) ",\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{" props "}}"
#define DC(x) "{\"Resources\":{" CERT_RES "},\"DeviceConfiguration\":{\"x\":" x "}}"

static void test_template_validation(void **state)
{
    (void)state;
    sim_provision *p = sim_provision_new(NULL);
    assert_non_null(p);
    static const struct {
        const char *body;
        const char *want;
    } B[] = {
        {"", "(template): not a JSON object"},
        {"{", "not a JSON object"},
        {"{} x", "not a JSON object"},
        {"[]", "(template): a template is a JSON object"},
        {"\"[]\"", "a template is a JSON object"},
        {"\"nope\"", "not a JSON object"},
        {"{}", "(template): Resources is missing"},
        {"{\"Resources\":{" CERT_RES "},\"Outputs\":{}}", "Outputs: unknown section"},
        {"{\"Resources\":[]}", "Resources: must be an object"},
        {"{\"Resources\":{}}", "Resources: a fleet provisioning template needs an AWS::IoT::Certificate"},
        {R(",\"x\":1"), "Resources.x: a resource must be an object"},
        {R(",\"x\":{\"Type\":\"AWS::IoT::Foo\",\"Properties\":{}}"), "Resources.x.Type: \"AWS::IoT::Foo\" is not"},
        {R(",\"x\":{\"Properties\":{}}"), "Resources.x: Type is missing"},
        {R(",\"x\":{\"Type\":\"AWS::IoT::Thing\"}"), "Resources.x: Properties is missing"},
        {R(",\"x\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"a\"},\"DependsOn\":[]}"),
         "Resources.x.DependsOn: unknown key"},
        {R(THING("")), "Resources.thing.Properties: ThingName is missing"},
        {R(THING("\"ThingName\":\"bad name\"")), "Resources.thing.Properties.ThingName: \"bad name\" is not a valid"},
        {R(THING("\"ThingName\":5")), "Resources.thing.Properties.ThingName: ThingName must be a string"},
        {R(THING("\"ThingName\":\"a\",\"Foo\":1")),
         "Resources.thing.Properties.Foo: not a property of AWS::IoT::Thing"},
        {R(THING("\"ThingName\":\"a\",\"PackageVersions\":{}")), "Resources.thing.Properties.PackageVersions: not a"},
        {R(THING("\"ThingName\":\"a\",\"AttributePayload\":[]")),
         "Resources.thing.Properties.AttributePayload: must be an object"},
        {R(THING("\"ThingName\":\"a\",\"AttributePayload\":{\"k\":{\"x\":1}}")),
         "Resources.thing.Properties.AttributePayload.k: an attribute value must be a string"},
        {R(THING("\"ThingName\":\"a\",\"ThingGroups\":\"g\"")),
         "Resources.thing.Properties.ThingGroups: ThingGroups must be a list"},
        {R(THING("\"ThingName\":\"a\"") THING("\"ThingName\":\"b\"")), "at most one AWS::IoT::Thing"},
        {R(",\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"a\"},\"OverrideSettings\":{"
           "\"AttributePayload\":\"SMASH\"}}"),
         "Resources.t.OverrideSettings.AttributePayload: must be DO_NOTHING, REPLACE, FAIL or MERGE"},
        {R(",\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"a\"},\"OverrideSettings\":{"
           "\"ThingTypeName\":\"MERGE\"}}"),
         "Resources.t.OverrideSettings.ThingTypeName: must be DO_NOTHING, REPLACE, FAIL (MERGE is for"},
        {R(",\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"a\"},\"OverrideSettings\":{"
           "\"BillingGroup\":\"REPLACE\"}}"),
         "Resources.t.OverrideSettings.BillingGroup: not an override of a thing"},
        {"{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateSigningRequest\":"
         "{\"Ref\":\"CSR\"}}}}}",
         "Resources.c.Properties.CertificateSigningRequest: fleet provisioning templates may only use CertificateId"},
        {"{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificatePem\":\"x\"}}}}",
         "Resources.c.Properties.CertificatePem: fleet provisioning templates may only use CertificateId"},
        {"{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{}}}}",
         "Resources.c.Properties: CertificateId is missing"},
        {"{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":\"x\","
         "\"Status\":\"ENABLED\"}}}}",
         "Resources.c.Properties.Status: must be ACTIVE or INACTIVE"},
        {"{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":\"x\"},"
         "\"OverrideSettings\":{\"Status\":\"MERGE\"}}}}",
         "Resources.c.OverrideSettings.Status: must be DO_NOTHING, REPLACE or FAIL"},
        {R("," CERT_RES), "at most one AWS::IoT::Certificate"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{}}"),
         "Resources.p.Properties: give PolicyName or PolicyDocument, not both"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"a\",\"PolicyDocument\":{}}}"),
         "Resources.p.Properties: give PolicyName or PolicyDocument"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":\"{not json\"}}"),
         "Resources.p.Properties.PolicyDocument: the string does not hold a JSON object"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":7}}"),
         "Resources.p.Properties.PolicyDocument: must be an object"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"a b\"}}"),
         "Resources.p.Properties.PolicyName: \"a b\" is not a valid policy name"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"a\"},\"OverrideSettings\":{}}"),
         "Resources.p.OverrideSettings: OverrideSettings are not available for policy resources"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":{\"Statement\":[{\"Resource\":"
           "{\"Fn::GetAtt\":[\"a\",\"b\"]}}]}}}"),
         "Resources.p.Properties.PolicyDocument.Statement[0].Resource.Fn::GetAtt: Fn::GetAtt is not supported"},
        {R(",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"a\",\"Tags\":[]}}"),
         "Resources.p.Properties.Tags: not a property of AWS::IoT::Policy"},
        {DC("{\"a\":\"b\"}"), "DeviceConfiguration.x: nested objects are not supported"},
        {DC("[\"a\"]"), "DeviceConfiguration.x: must be a string or an intrinsic function"},
        {DC("5"), "DeviceConfiguration.x: must be a string"},
        {"{\"Resources\":{" CERT_RES "},\"DeviceConfiguration\":[]}", "DeviceConfiguration: must be an object"},
        {DC("{\"Ref\":\"a\",\"b\":1}"), "DeviceConfiguration.x: an intrinsic function object has exactly one key"},
        {DC("{\"Ref\":\"\"}"), "DeviceConfiguration.x.Ref: Ref takes a parameter name"},
        {DC("{\"Ref\":[\"a\"]}"), "Ref takes a parameter name"},
        {DC("{\"Fn::Join\":[\"a\"]}"), "DeviceConfiguration.x.Fn::Join: Fn::Join takes [delimiter, [values]]"},
        {DC("{\"Fn::Join\":[1,[\"a\"]]}"), "DeviceConfiguration.x.Fn::Join[0]: the delimiter must be a string"},
        {DC("{\"Fn::Join\":[\"\",\"a\"]}"), "DeviceConfiguration.x.Fn::Join[1]: the values must be a list"},
        {DC("{\"Fn::Join\":[\"\",[{\"Fn::If\":[]}]]}"), "DeviceConfiguration.x.Fn::Join[1][0].Fn::If: Fn::If is not"},
        {DC("{\"Fn::Select\":[-1,[\"a\"]]}"), "Fn::Select: the index must be a non-negative integer"},
        {DC("{\"Fn::Select\":[0.5,[\"a\"]]}"), "Fn::Select: the index must be a non-negative integer"},
        {DC("{\"Fn::Select\":[0]}"), "Fn::Select takes [index, [values]]"},
        {DC("{\"Fn::Select\":[true,[\"a\"]]}"), "Fn::Select[0]: the index must be a string"},
        {DC("{\"Fn::FindInMap\":[\"M\",\"a\"]}"), "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]"},
        {DC("{\"Fn::FindInMap\":[\"M\",\"a\",\"b\"]}"), "DeviceConfiguration.x.Fn::FindInMap: Fn::FindInMap: no map M"},
        {"{\"Mappings\":{\"M\":{\"a\":{\"b\":\"c\"}}},\"Resources\":{" CERT_RES
         "},\"DeviceConfiguration\":{\"x\":{\"Fn::FindInMap\":[\"M\",\"a\",\"z\"]}}}",
         "Fn::FindInMap: Mappings.M has no a.z"},
        {DC("{\"Fn::FindInMap\":[\"M\",[],\"b\"]}"), "Fn::FindInMap[1]: TopLevelKey must be a string"},
        {DC("{\"Fn::Split\":[\"\",\"a\"]}"), "Fn::Split: the delimiter is empty"},
        {DC("{\"Fn::Split\":[\",\"]}"), "Fn::Split takes [delimiter, string]"},
        {DC("{\"Fn::Split\":[\",\",[]]}"), "Fn::Split[1]: the string must be a string"},
        {DC("{\"Fn::Sub\":\"${a\"}"), "DeviceConfiguration.x.Fn::Sub: Fn::Sub: an unterminated ${"},
        {DC("{\"Fn::Sub\":\"${}\"}"), "Fn::Sub: an empty ${}"},
        {DC("{\"Fn::Sub\":\"${!}\"}"), "Fn::Sub: an empty ${}"},
        {DC("{\"Fn::Sub\":5}"), "Fn::Sub takes a string or [string, {variables}]"},
        {DC("{\"Fn::Sub\":[\"a\"]}"), "Fn::Sub takes a string or [string, {variables}]"},
        {DC("{\"Fn::Sub\":[\"a\",{\"v\":[]}]}"), "DeviceConfiguration.x.Fn::Sub[1].v: a variable must be a string"},
        {"{\"Parameters\":[],\"Resources\":{" CERT_RES "}}", "Parameters: must be an object"},
        {"{\"Parameters\":{\"P\":\"String\"},\"Resources\":{" CERT_RES "}}", "Parameters.P: must be an object"},
        {"{\"Parameters\":{\"P\":{}},\"Resources\":{" CERT_RES "}}", "Parameters.P: Type is missing"},
        {"{\"Parameters\":{\"P\":{\"Type\":\"Number\"}},\"Resources\":{" CERT_RES "}}",
         "Parameters.P.Type: must be \"String\""},
        {"{\"Parameters\":{\"P\":{\"Type\":\"String\",\"Default\":1}},\"Resources\":{" CERT_RES "}}",
         "Parameters.P.Default: must be a string"},
        {"{\"Parameters\":{\"P\":{\"Type\":\"String\",\"AllowedValues\":[]}},\"Resources\":{" CERT_RES "}}",
         "Parameters.P.AllowedValues: unknown key"},
        {"{\"Mappings\":{\"M\":{\"a\":{\"b\":{\"Ref\":\"P\"}}}},\"Resources\":{" CERT_RES "}}",
         "Mappings.M.a.b: must be a string or a list of strings (no parameters or intrinsic functions"},
        {"{\"Mappings\":{\"M\":{\"a\":{\"b\":[1]}}},\"Resources\":{" CERT_RES "}}", "Mappings.M.a.b: must be a string"},
        {"{\"Mappings\":{\"M\":{\"a\":\"b\"}},\"Resources\":{" CERT_RES "}}", "Mappings.M.a: must be an object"},
        {"{\"Mappings\":{\"M\":1},\"Resources\":{" CERT_RES "}}", "Mappings.M: a map must be an object"},
    };
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++)
        put_bad(p, B[i].body, B[i].want);
    assert_int_equal(sim_provision_template_count(p), 0);

    /* Too deep. */
    char deep[4096] = "{\"Resources\":{" CERT_RES ",\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{"
                      "\"PolicyDocument\":";
    for (int i = 0; i < 70; i++)
        strcat(deep, "{\"a\":");
    strcat(deep, "1");
    for (int i = 0; i < 70; i++)
        strcat(deep, "}");
    strcat(deep, "}}}}");
    put_bad(p, deep, "nested deeper than 64 levels");

    /* Eleven policies. */
    char many[4096] = "{\"Resources\":{" CERT_RES;
    for (int i = 0; i < 11; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 ",\"p%d\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"n\"}}", i);
    strcat(many, "}}");
    put_bad(p, many, "Resources.p10: a template has at most 10 AWS::IoT::Policy resources");

    /* Names. */
    char why[512];
    const char *ok = R("");
    assert_int_equal(sim_provision_template_put(p, "abcdefghijklmnopqrstuvwxyz0123456789a", ok, strlen(ok), true, why,
                                                sizeof why),
                     -1);
    assert_non_null(strstr(why, "template name"));
    assert_int_equal(sim_provision_template_put(p, "", ok, strlen(ok), true, why, sizeof why), -1);
    assert_int_equal(sim_provision_template_put(p, "a/b", ok, strlen(ok), true, why, sizeof why), -1);
    assert_int_equal(sim_provision_template_put(p, "abcdefghijklmnopqrstuvwxyz0123456789", ok, strlen(ok), true, why,
                                                sizeof why),
                     0);
    assert_int_equal(sim_provision_template_put(p, "x", NULL, 0, true, why, sizeof why), -1);

    /* A string holding the template, as the AWS API takes templateBody. */
    const char *str = "\"{\\\"Resources\\\":{\\\"c\\\":{\\\"Type\\\":\\\"AWS::IoT::Certificate\\\",\\\"Properties\\\":"
                      "{\\\"CertificateId\\\":{\\\"Ref\\\":\\\"AWS::IoT::Certificate::Id\\\"}}}}}\"";
    assert_int_equal(sim_provision_template_put(p, "Str", str, strlen(str), true, why, sizeof why), 0);
    assert_int_equal(sim_provision_template_count(p), 2);

    /* A refused replacement leaves the template as it was. */
    put_bad(p, "{}", "Resources is missing");
    assert_int_equal(sim_provision_template_put(p, "Str", "{}", 2, true, why, sizeof why), -1);
    char *d = sim_provision_describe(p);
    assert_non_null(strstr(d, "AWS::IoT::Certificate::Id"));
    free(d);

    assert_int_equal(sim_provision_template_delete(p, "Str"), 0);
    assert_int_equal(sim_provision_template_delete(p, "Str"), -1);
    assert_int_equal(sim_provision_template_count(p), 1);
    sim_provision_free(p);
}

static void test_template_limits(void **state)
{
    (void)state;
    sim_provision_config c;
    sim_provision_config_init(&c);
    c.max_templates = 2;
    sim_provision *p = sim_provision_new(&c);
    char why[512];
    /* Exactly max_template_bytes: fine; one more: refused. */
    char *body = malloc(10300);
    assert_non_null(body);
    strcpy(body, "{\"Resources\":{" CERT_RES "},\"DeviceConfiguration\":{\"x\":\"");
    size_t head = strlen(body);
    memset(body + head, 'a', 10240 - head - 3);
    strcpy(body + 10240 - 3, "\"}}");
    assert_int_equal(strlen(body), 10240);
    assert_int_equal(sim_provision_template_put(p, "Big", body, strlen(body), true, why, sizeof why), 0);
    strcpy(body + 10240 - 3, "a\"}}");
    assert_int_equal(sim_provision_template_put(p, "Big2", body, strlen(body), true, why, sizeof why), -1);
    assert_non_null(strstr(why, "10241 bytes, more than the 10240 allowed"));
    /* In a string, the content counts, not its escaped form. */
    char *str = malloc(30000);
    assert_non_null(str);
    strcpy(str, "\"");
    body[10240 - 3] = '\0';
    strcat(body, "\"}}");
    for (const char *q = body; *q; q++) {
        size_t n = strlen(str);
        if (*q == '"')
            str[n++] = '\\';
        str[n++] = *q;
        str[n] = '\0';
    }
    strcat(str, "\"");
    assert_true(strlen(str) > 10240);
    assert_int_equal(sim_provision_template_put(p, "Str", str, strlen(str), true, why, sizeof why), 0);
    /* max_templates: replacing is fine, a third is not. */
    const char *ok = R("");
    assert_int_equal(sim_provision_template_put(p, "Big", ok, strlen(ok), false, why, sizeof why), 0);
    assert_int_equal(sim_provision_template_put(p, "Third", ok, strlen(ok), true, why, sizeof why), -1);
    assert_non_null(strstr(why, "already 2 templates"));
    assert_int_equal(sim_provision_template_delete(p, "Str"), 0);
    assert_int_equal(sim_provision_template_put(p, "Third", ok, strlen(ok), true, why, sizeof why), 0);
    free(body);
    free(str);
    sim_provision_free(p);
}

/* ---- CBOR --------------------------------------------------------------------------- */

static unsigned char *cbor_bytes(cbor_item_t *item, size_t *len)
{
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = cbor_serialize_alloc(item, &buf, &cap);
    assert_true(*len > 0);
    cbor_decref(&item);
    return buf;
}

static void map_put(cbor_item_t *m, const char *k, cbor_item_t *v)
{
    assert_true(cbor_map_add(m, (struct cbor_pair){.key = cbor_move(cbor_build_string(k)), .value = cbor_move(v)}));
}

/* The value of text key k in CBOR map m, or NULL. */
static cbor_item_t *map_get(cbor_item_t *m, const char *k)
{
    assert_true(cbor_isa_map(m));
    struct cbor_pair *pairs = cbor_map_handle(m);
    for (size_t i = 0; i < cbor_map_size(m); i++) {
        assert_true(cbor_isa_string(pairs[i].key));
        if (cbor_string_length(pairs[i].key) == strlen(k) &&
            memcmp(cbor_string_handle(pairs[i].key), k, strlen(k)) == 0)
            return pairs[i].value;
    }
    return NULL;
}

static char *cbor_str(cbor_item_t *v)
{
    assert_non_null(v);
    assert_true(cbor_isa_string(v));
    size_t n = cbor_string_length(v);
    char *s = malloc(n + 1);
    memcpy(s, cbor_string_handle(v), n);
    s[n] = '\0';
    return s;
}

static cbor_item_t *resp_cbor(env *e)
{
    struct cbor_load_result res;
    cbor_item_t *it = cbor_load(e->payload, e->len, &res);
    assert_non_null(it);
    assert_int_equal(res.error.code, CBOR_ERR_NONE);
    assert_int_equal(res.read, e->len);
    return it;
}

#define CREATE_C "$aws/certificates/create/cbor"
#define CSR_C "$aws/certificates/create-from-csr/cbor"

static void test_cbor(void **state)
{
    (void)state;
    env *e = env_new();
    put_ok(e, "FleetTemplate", CANONICAL);

    /* CreateKeysAndCertificate: empty payload, then an empty map. */
    assert_int_equal(req_n(e, CREATE_C, NULL, 0), 200);
    assert_string_equal(e->topic, "$aws/certificates/create/cbor/accepted");
    size_t n;
    unsigned char *b = cbor_bytes(cbor_new_definite_map(0), &n);
    assert_int_equal(req_n(e, CREATE_C, b, n), 200);
    free(b);
    cbor_item_t *r = resp_cbor(e);
    assert_int_equal(cbor_map_size(r), 4);
    char *id = cbor_str(map_get(r, "certificateId"));
    char *tok = cbor_str(map_get(r, "certificateOwnershipToken"));
    char *pem = cbor_str(map_get(r, "certificatePem"));
    char *key = cbor_str(map_get(r, "privateKey"));
    assert_int_equal(strlen(tok), 64);
    assert_non_null(strstr(pem, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(key, "PRIVATE KEY"));
    free(pem);
    free(key);
    cbor_decref(&r);

    /* CreateCertificateFromCsr. */
    cbor_item_t *m = cbor_new_definite_map(1);
    map_put(m, "certificateSigningRequest", cbor_build_string("-----BEGIN CERTIFICATE REQUEST-----"));
    b = cbor_bytes(m, &n);
    assert_int_equal(req_n(e, CSR_C, b, n), 200);
    free(b);
    assert_string_equal(e->f.csr, "-----BEGIN CERTIFICATE REQUEST-----");
    assert_string_equal(e->topic, "$aws/certificates/create-from-csr/cbor/accepted");
    r = resp_cbor(e);
    assert_int_equal(cbor_map_size(r), 3);
    assert_null(map_get(r, "privateKey"));
    assert_non_null(map_get(r, "certificateOwnershipToken"));
    cbor_decref(&r);

    /* RegisterThing. */
    m = cbor_new_definite_map(2);
    map_put(m, "certificateOwnershipToken", cbor_build_string(tok));
    cbor_item_t *pm = cbor_new_definite_map(2);
    map_put(pm, "SerialNumber", cbor_build_string("1"));
    map_put(pm, "DeviceLocation", cbor_build_string("Seattle"));
    map_put(m, "parameters", pm);
    b = cbor_bytes(m, &n);
    assert_int_equal(req_n(e, "$aws/provisioning-templates/FleetTemplate/provision/cbor", b, n), 200);
    assert_string_equal(e->topic, "$aws/provisioning-templates/FleetTemplate/provision/cbor/accepted");
    r = resp_cbor(e);
    char *thing = cbor_str(map_get(r, "thingName"));
    assert_string_equal(thing, "ThingPrefix_1");
    free(thing);
    cbor_item_t *dc = map_get(r, "deviceConfiguration");
    assert_int_equal(cbor_map_size(dc), 2);
    char *fb = cbor_str(map_get(dc, "FallbackUrl"));
    char *lu = cbor_str(map_get(dc, "LocationUrl"));
    assert_string_equal(fb, "https://www.example.com/test-site");
    assert_string_equal(lu, "https://example.aws");
    free(fb);
    free(lu);
    cbor_decref(&r);
    cJSON *reg = cJSON_Parse(e->f.reg);
    assert_string_equal(sget(reg, "cert"), id);
    cJSON_Delete(reg);

    /* Rejected in CBOR: the same request again (the token is used). */
    assert_int_equal(req_n(e, "$aws/provisioning-templates/FleetTemplate/provision/cbor", b, n), 400);
    free(b);
    assert_string_equal(e->topic, "$aws/provisioning-templates/FleetTemplate/provision/cbor/rejected");
    r = resp_cbor(e);
    assert_int_equal(cbor_map_size(r), 3);
    cbor_item_t *sc = map_get(r, "statusCode");
    assert_true(cbor_isa_uint(sc));
    assert_int_equal(cbor_get_int(sc), 400);
    char *code = cbor_str(map_get(r, "errorCode"));
    assert_string_equal(code, "InvalidCertificateOwnershipToken");
    free(code);
    cbor_decref(&r);
    /* The empty-token row in CBOR. */
    b = cbor_bytes(cbor_new_definite_map(0), &n);
    assert_int_equal(req_n(e, "$aws/provisioning-templates/FleetTemplate/provision/cbor", b, n), 400);
    free(b);
    r = resp_cbor(e);
    char *msg = cbor_str(map_get(r, "errorMessage"));
    assert_string_equal(msg, "Certificate ownership token cannot be empty.");
    free(msg);
    cbor_decref(&r);

    /* Indefinite maps and strings, and tags, are read too. */
    char tok2[65];
    new_token(e, tok2, NULL);
    m = cbor_new_indefinite_map();
    cbor_item_t *is = cbor_new_indefinite_string();
    assert_true(cbor_string_add_chunk(is, cbor_move(cbor_build_stringn(tok2, 10))));
    assert_true(cbor_string_add_chunk(is, cbor_move(cbor_build_stringn(tok2 + 10, 54))));
    map_put(m, "certificateOwnershipToken", is);
    pm = cbor_new_indefinite_map();
    map_put(pm, "SerialNumber", cbor_build_tag(0, cbor_move(cbor_build_string("2"))));
    map_put(pm, "DeviceLocation", cbor_build_string("Seattle"));
    map_put(m, "parameters", pm);
    b = cbor_bytes(m, &n);
    assert_int_equal(req_n(e, "$aws/provisioning-templates/FleetTemplate/provision/cbor", b, n), 200);
    free(b);
    r = resp_cbor(e);
    thing = cbor_str(map_get(r, "thingName"));
    assert_string_equal(thing, "ThingPrefix_2");
    free(thing);
    cbor_decref(&r);

    /* Malformed CBOR: 400 InvalidPayload. */
    static const struct {
        const char *hex;
        const char *why;
    } BAD[] = {
        {"a1", "truncated"},                               /* a map missing its pair */
        {"a0a0", "trailing bytes"},                        /* two items */
        {"a1410041", "byte strings are not supported"},    /* byte-string key */
        {"a10161", "map key is not a text string"},        /* integer key */
        {"a161614100", "byte strings are not supported"},  /* byte-string value */
        {"a161615f4100ff", "byte strings are not supported"}, /* indefinite byte string */
        {"a1616161ff", "not UTF-8"},                       /* invalid UTF-8 */
        {"a161616100", "not UTF-8"},                       /* NUL */
        {"ff", "not valid CBOR"},                          /* a stray break */
        {"9fff", "payload must be a JSON object"},         /* [] */
        {"f7", "payload must be a JSON object"},           /* undefined reads as null */
        {"bf6161ff", "not valid CBOR"},                    /* a break between key and value */
        {"7f6161a0ff", "not valid CBOR"},                  /* a map inside an indefinite string */
        {"a16161f97e00", "not finite"},                    /* NaN */
        {"a16161f0", "not valid CBOR"},                    /* simple value 16 */
        {"a1616181c0", "not valid CBOR"},                  /* a tag with nothing after it */
        {"bf6161c0ff", "not valid CBOR"},                  /* a tag before a break */
        {"1c", "not valid CBOR"},                          /* reserved additional info */
        {"9b00000000ffffffff", "longer than the payload"}, /* a huge array */
        {"bb00000000ffffffff", "longer than the payload"}, /* a huge map */
        {"7b00000000ffffffff", "not valid CBOR"},          /* a huge string */
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        uint8_t bytes[64];
        size_t bl = strlen(BAD[i].hex) / 2;
        for (size_t k = 0; k < bl; k++) {
            unsigned v;
            sscanf(BAD[i].hex + 2 * k, "%2x", &v);
            bytes[k] = (uint8_t)v;
        }
        if (req_n(e, CREATE_C, bytes, bl) != 400)
            fail_msg("accepted %s", BAD[i].hex);
        r = resp_cbor(e);
        code = cbor_str(map_get(r, "errorCode"));
        msg = cbor_str(map_get(r, "errorMessage"));
        assert_string_equal(code, "InvalidPayload");
        if (!strstr(msg, BAD[i].why))
            fail_msg("%s: \"%s\" does not say \"%s\"", BAD[i].hex, msg, BAD[i].why);
        free(code);
        free(msg);
        cbor_decref(&r);
    }
    /* Deep nesting: refused past 32 levels. */
    uint8_t deep[64];
    deep[0] = 0xa1;
    deep[1] = 0x61;
    deep[2] = 'a';
    for (int i = 0; i < 40; i++)
        deep[3 + i] = 0x81;
    deep[43] = 0x01;
    assert_int_equal(req_n(e, CREATE_C, deep, 44), 400);
    r = resp_cbor(e);
    msg = cbor_str(map_get(r, "errorMessage"));
    assert_non_null(strstr(msg, "nested too deeply"));
    free(msg);
    cbor_decref(&r);
    /* ...and fine within them, with every scalar type. */
    static const uint8_t fine[] = {0xa2, 0x61, 'a', 0x83, 0x18, 0x20, 0x38, 0x1f, 0xf9, 0x3c, 0x00,
                                   0x61, 'b', 0x84, 0xf4, 0xf5, 0xf6, 0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(req_n(e, CREATE_C, fine, sizeof fine), 200);

    free(id);
    free(tok);
    env_free(e);
}

/* ---- messages stay UTF-8 when shortened ------------------------------------------ */

static void test_utf8_messages(void **state)
{
    (void)state;
    env *e = env_new();
    put_ok(e, "FleetTemplate", CANONICAL);
    char tok[65];
    new_token(e, tok, NULL);
    /* A thing name of 2-byte characters, shown cut to 150 bytes; a long
     * parameter name of 3-byte ones; a long Mappings key in the path. */
    char params[2048] = "{\"DeviceLocation\":\"Seattle\",\"SerialNumber\":\"x";
    for (int i = 0; i < 200; i++)
        strcat(params, "\xc3\xa9");
    strcat(params, "\"}");
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 400);
    assert_true(iotc_mqtt_utf8_valid(e->payload, e->len, NULL));
    assert_true(iotc_mqtt_utf8_valid((const uint8_t *)e->why, strlen(e->why), NULL));
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidParameters", "is not a valid thing name");
    strcpy(params, "{\"");
    for (int i = 0; i < 200; i++)
        strcat(params, "\xe2\x82\xac");
    strcat(params, "\":1}");
    assert_int_equal(register_with(e, PROV("FleetTemplate"), tok, params), 400);
    assert_true(iotc_mqtt_utf8_valid(e->payload, e->len, NULL));
    expect_rejected(e, "FleetTemplate/provision/json", 400, "InvalidPayload", "must be a string");

    char body[4096] = "{\"Resources\":{" CERT_RES "},\"DeviceConfiguration\":{\"";
    for (int i = 0; i < 150; i++)
        strcat(body, "\xe2\x82\xac");
    strcat(body, "\":{\"Ref\":\"Missing\"}}}");
    put_ok(e, "Long", body);
    assert_int_equal(register_with(e, PROV("Long"), tok, NULL), 400);
    assert_true(iotc_mqtt_utf8_valid(e->payload, e->len, NULL));
    char why[64]; /* a short why buffer cuts too */
    char *ref = strstr(body, "{\"Ref\":\"Missing\"}}}");
    assert_non_null(ref);
    strcpy(ref, "5}}");
    assert_int_equal(sim_provision_template_put(e->p, "Bad", body, strlen(body), true, why, sizeof why), -1);
    assert_true(iotc_mqtt_utf8_valid((const uint8_t *)why, strlen(why), NULL));
    assert_true(strlen(why) >= 60);
    assert_non_null(strstr(why, "DeviceConfiguration.\xe2\x82\xac"));
    char big[1024];
    assert_int_equal(sim_provision_template_put(e->p, "Bad", body, strlen(body), true, big, sizeof big), -1);
    assert_true(iotc_mqtt_utf8_valid((const uint8_t *)big, strlen(big), NULL));
    assert_non_null(strstr(big, ": must be a string or an intrinsic function"));
    env_free(e);
}

/* ---- describe ------------------------------------------------------------------ */

static void test_describe(void **state)
{
    (void)state;
    env *e = env_new();
    char *d = sim_provision_describe(e->p);
    assert_string_equal(d, "{\"templates\":[],\"tokens\":[]}");
    free(d);
    put_ok(e, "Zeta", R(""));
    char why[256];
    assert_int_equal(sim_provision_template_put(e->p, "Alpha", CANONICAL, strlen(CANONICAL), false, why, sizeof why),
                     0);
    char t1[65], id1[80];
    new_token(e, t1, id1);
    sim_prov_req cr = {.op = SIM_PROV_CREATE_KEYS};
    assert_int_equal(sim_provision_handle(e->p, &cr, NULL, NULL, NULL, 0, 2000, on_emit, e, why, sizeof why), 200);
    d = sim_provision_describe(e->p);
    assert_null(strstr(d, t1)); /* the token texts stay secret */
    cJSON *j = cJSON_Parse(d);
    free(d);
    const cJSON *ts = cJSON_GetObjectItem(j, "templates");
    assert_int_equal(cJSON_GetArraySize(ts), 2);
    assert_string_equal(sget(ts->child, "name"), "Alpha");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(ts->child, "enabled")));
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(ts->child, "body"), "DeviceConfiguration"));
    assert_string_equal(sget(ts->child->next, "name"), "Zeta");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ts->child->next, "enabled")));
    const cJSON *ks = cJSON_GetObjectItem(j, "tokens");
    assert_int_equal(cJSON_GetArraySize(ks), 2);
    assert_string_equal(sget(ks->child, "certificateId"), id1);
    assert_int_equal(cJSON_GetObjectItem(ks->child, "expiresAt")->valuedouble, 4600);
    assert_string_equal(sget(ks->child, "claimCertificateId"), "claim-cert");
    assert_string_equal(sget(ks->child, "clientId"), "client-1");
    assert_int_equal(cJSON_GetObjectItem(ks->child->next, "expiresAt")->valuedouble, 5600);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(ks->child->next, "claimCertificateId")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(ks->child->next, "clientId")));
    cJSON_Delete(j);
    assert_null(sim_provision_describe(NULL));
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_create_keys),
        cmocka_unit_test(test_create_from_csr),
        cmocka_unit_test(test_register_errors),
        cmocka_unit_test(test_token_expiry),
        cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_random_source),
        cmocka_unit_test(test_intrinsics),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_template_validation),
        cmocka_unit_test(test_template_limits),
        cmocka_unit_test(test_cbor),
        cmocka_unit_test(test_utf8_messages),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
