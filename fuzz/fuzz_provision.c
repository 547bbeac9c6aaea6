/*
 * fuzz/fuzz_provision.c: the Fleet Provisioning service (broker-sim/src/svc/
 * sim_provision.h) with a fake backend: one request per input, in JSON or
 * CBOR, against a built-in template or one the input brings.
 *
 * Input layout:
 *   [flags] [tpl] ([len lo] [len hi] [template body: len bytes])? [payload...]
 *   flags bits 0-1: 0 CreateKeysAndCertificate, 1 CreateCertificateFromCsr,
 *                   2 and 3 RegisterThing (template "T");
 *         bit 2:    the cbor topic (else json);
 *         bit 3:    a template body follows, loaded as "T" over the built-in
 *                   one (a refused body leaves the built-in one in place);
 *         bit 4:    the harness first gets a token (CreateKeysAndCertificate)
 *                   and every run of 64 '~' in the payload becomes that token
 *                   (same length, so CBOR framing survives);
 *         bit 5:    the clock jumps to that token's expiry before the request;
 *         bits 6-7: the backend: 0 obliging, 1 register_thing answers 409,
 *                   2 the CA fails (-1), 3 no backend at all.
 *   tpl   bits 0-1: the built-in template (canonical §2.4, every function,
 *                   no thing, a policy by name); bit 6: RegisterThing names
 *                   template "U", which does not exist; bit 7: loaded disabled.
 * The whole input is also tried as a topic: when sim_provision_parse_topic()
 * takes it, sim_provision_topic() must give it back byte for byte.
 *
 * Invariants: exactly one response per request, on .../accepted when the
 * status is 200 and .../rejected otherwise; it parses (JSON, or one CBOR
 * item filling the payload) and its text is UTF-8; a rejection is exactly
 * {statusCode = the returned status, errorCode, errorMessage}; an acceptance
 * has the fields of its operation (a 64-hex token, no privateKey from a CSR,
 * a flat deviceConfiguration of strings, the thing the backend registered);
 * statuses stay within what the backend allows (no 500 from a template that
 * loaded); a token that registered is refused the second time; describe()
 * parses; and every certificate the CA made is, in the end, registered or
 * forgotten exactly once (the final expiry forgets the rest).  No leaks.
 * Seeds: python3 fuzz/make-provision-seeds.py; FUZZ_PROVISION_LOG=1 prints each
 * request's status and why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <cjson/cJSON.h>

#include "iotc/mqtt.h"
#include "sim_provision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static void fail(int line, const char *what)
{
    fprintf(stderr, "fuzz_provision.c:%d: check failed: %s\n", line, what);
    abort();
}

#define CHECK(c)                     \
    do {                             \
        if (!(c))                    \
            fail(__LINE__, #c);      \
    } while (0)

#define MAXCERTS 8

typedef struct {
    int mode; /* flags bits 6-7 */
    int next;
    char made[MAXCERTS][80];
    int registered[MAXCERTS], forgotten[MAXCERTS];
    char last_thing[160];
    bool have_thing;
} fake;

static int cert_index(fake *f, const char *id)
{
    for (int i = 0; i < f->next; i++)
        if (strcmp(f->made[i], id) == 0)
            return i;
    return -1;
}

static char *dup_s(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    if (!d)
        abort();
    strcpy(d, s);
    return d;
}

static char *make_cert(fake *f)
{
    CHECK(f->next < MAXCERTS);
    snprintf(f->made[f->next], sizeof f->made[0], "%064x", f->next + 1);
    return dup_s(f->made[f->next++]);
}

static int fk_keys(void *ctx, char **id, char **pem, char **key, char *why, size_t whylen)
{
    fake *f = ctx;
    if (f->mode == 2) {
        snprintf(why, whylen, "down");
        return -1;
    }
    *id = make_cert(f);
    *pem = dup_s("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n");
    *key = dup_s("-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n");
    return 0;
}

static int fk_csr(void *ctx, const char *csr, char **id, char **pem, char *why, size_t whylen)
{
    fake *f = ctx;
    CHECK(csr && csr[0]);
    CHECK(iotc_mqtt_utf8_valid((const uint8_t *)csr, strlen(csr), NULL));
    if (f->mode == 2 || strstr(csr, "BAD")) {
        snprintf(why, whylen, "bad CSR");
        return -1;
    }
    *id = make_cert(f);
    *pem = dup_s("-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n");
    return 0;
}

static bool strings_only(const cJSON *o, bool object)
{
    if (!(object ? cJSON_IsObject(o) : cJSON_IsArray(o)))
        return false;
    for (const cJSON *c = o->child; c; c = c->next)
        if (!cJSON_IsString(c) || !c->valuestring)
            return false;
    return true;
}

static int fk_register(void *ctx, const sim_prov_registration *r, char *code, size_t codelen, char *why,
                       size_t whylen)
{
    fake *f = ctx;
    int i = cert_index(f, r->certificate_id);
    CHECK(i >= 0);
    CHECK(f->registered[i] == 0 && f->forgotten[i] == 0);
    CHECK(r->template_name && strcmp(r->template_name, "T") == 0); /* never "U" */
    CHECK(r->certificate_status &&
          (strcmp(r->certificate_status, "ACTIVE") == 0 || strcmp(r->certificate_status, "INACTIVE") == 0));
    CHECK(!r->certificate_override || strcmp(r->certificate_override, "DO_NOTHING") == 0 ||
          strcmp(r->certificate_override, "REPLACE") == 0 || strcmp(r->certificate_override, "FAIL") == 0);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r->parameters, "AWS::IoT::Certificate::Id");
    CHECK(cJSON_IsString(id) && strcmp(id->valuestring, r->certificate_id) == 0);
    CHECK(strings_only(r->parameters, true));
    if (r->thing_name) {
        size_t n = strlen(r->thing_name);
        CHECK(n >= 1 && n <= 128 &&
              strspn(r->thing_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-") == n);
    } else {
        CHECK(!r->attributes && !r->thing_groups && !r->thing_type_name && !r->billing_group && !r->thing_override);
    }
    CHECK(!r->attributes || strings_only(r->attributes, true));
    CHECK(!r->thing_groups || strings_only(r->thing_groups, false));
    CHECK(r->npolicies <= SIM_PROV_MAX_POLICIES);
    for (size_t k = 0; k < r->npolicies; k++) {
        CHECK(r->policies[k].name && r->policies[k].name[0]);
        if (r->policies[k].document) {
            cJSON *d = cJSON_Parse(r->policies[k].document);
            CHECK(cJSON_IsObject(d));
            cJSON_Delete(d);
            CHECK(strlen(r->policies[k].name) == 64);
        }
    }
    if (f->mode == 1) {
        snprintf(code, codelen, "ResourceConflictsException");
        snprintf(why, whylen, "exists");
        return 409;
    }
    f->registered[i]++;
    f->have_thing = r->thing_name != NULL;
    snprintf(f->last_thing, sizeof f->last_thing, "%s", r->thing_name ? r->thing_name : "");
    return 0;
}

static void fk_forget(void *ctx, const char *cert_id)
{
    fake *f = ctx;
    int i = cert_index(f, cert_id);
    CHECK(i >= 0);
    CHECK(f->registered[i] == 0);
    f->forgotten[i]++;
    CHECK(f->forgotten[i] == 1);
}

/* ---- responses ---------------------------------------------------------------- */

typedef struct {
    int n;
    char topic[SIM_PROV_TOPIC_MAX + 1];
    uint8_t *payload;
    size_t len;
} capture;

static void on_emit(void *ctx, const char *topic, const uint8_t *payload, size_t len)
{
    capture *c = ctx;
    c->n++;
    CHECK(strlen(topic) <= SIM_PROV_TOPIC_MAX);
    snprintf(c->topic, sizeof c->topic, "%s", topic);
    free(c->payload);
    c->payload = malloc(len ? len : 1);
    if (!c->payload)
        abort();
    if (len)
        memcpy(c->payload, payload, len);
    c->len = len;
}

/* A CBOR response as cJSON (maps of text keys, strings, unsigned ints). */
static cJSON *cbor_item_json(const cbor_item_t *it, int depth)
{
    CHECK(depth < 4);
    if (cbor_isa_map(it)) {
        cJSON *o = cJSON_CreateObject();
        struct cbor_pair *p = cbor_map_handle(it);
        for (size_t i = 0; i < cbor_map_size(it); i++) {
            CHECK(cbor_isa_string(p[i].key) && cbor_string_is_definite(p[i].key));
            size_t n = cbor_string_length(p[i].key);
            char *k = malloc(n + 1);
            if (!k)
                abort();
            memcpy(k, cbor_string_handle(p[i].key), n);
            k[n] = '\0';
            cJSON_AddItemToObject(o, k, cbor_item_json(p[i].value, depth + 1));
            free(k);
        }
        return o;
    }
    if (cbor_isa_string(it)) {
        CHECK(cbor_string_is_definite(it));
        size_t n = cbor_string_length(it);
        CHECK(iotc_mqtt_utf8_valid(cbor_string_handle(it), n, NULL) || n == 0);
        char *s = malloc(n + 1);
        if (!s)
            abort();
        memcpy(s, cbor_string_handle(it), n);
        s[n] = '\0';
        cJSON *j = cJSON_CreateString(s);
        free(s);
        return j;
    }
    CHECK(cbor_isa_uint(it));
    return cJSON_CreateNumber((double)cbor_get_int(it));
}

static cJSON *parse_response(const capture *c, bool cbor)
{
    if (cbor) {
        struct cbor_load_result res;
        cbor_item_t *it = cbor_load(c->payload, c->len, &res);
        CHECK(it != NULL && res.error.code == CBOR_ERR_NONE && res.read == c->len);
        cJSON *j = cbor_item_json(it, 0);
        cbor_decref(&it);
        return j;
    }
    CHECK(iotc_mqtt_utf8_valid(c->payload, c->len, NULL));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)c->payload, c->len, &end, false);
    CHECK(j != NULL && end == (const char *)c->payload + c->len);
    return j;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* Checks the one response to req; returns its token (static) for a create, else NULL. */
static const char *check_response(const sim_prov_req *req, int status, capture *c, const fake *f)
{
    static char token[SIM_PROV_TOKEN_LEN + 1];
    CHECK(c->n == 1);
    char want[SIM_PROV_TOPIC_MAX + 1];
    CHECK(sim_provision_topic(req, status == 200 ? "/accepted" : "/rejected", want, sizeof want) > 0);
    CHECK(strcmp(c->topic, want) == 0);
    cJSON *j = parse_response(c, req->cbor);
    CHECK(cJSON_IsObject(j));
    const char *ret = NULL;
    if (status != 200) {
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "statusCode");
        CHECK(cJSON_IsNumber(sc) && sc->valueint == status);
        CHECK(str_of(j, "errorCode") && str_of(j, "errorCode")[0]);
        CHECK(str_of(j, "errorMessage"));
        CHECK(cJSON_GetArraySize(j) == 3);
    } else if (req->op == SIM_PROV_REGISTER) {
        CHECK(cJSON_GetArraySize(j) == 2);
        CHECK(strings_only(cJSON_GetObjectItemCaseSensitive(j, "deviceConfiguration"), true));
        const char *t = str_of(j, "thingName");
        CHECK(t && strcmp(t, f->last_thing) == 0);
        CHECK(f->have_thing == (t[0] != '\0'));
    } else {
        bool csr = req->op == SIM_PROV_CREATE_FROM_CSR;
        CHECK(cJSON_GetArraySize(j) == (csr ? 3 : 4));
        const char *t = str_of(j, "certificateOwnershipToken");
        CHECK(t && strlen(t) == SIM_PROV_TOKEN_LEN && strspn(t, "0123456789abcdef") == SIM_PROV_TOKEN_LEN);
        CHECK(str_of(j, "certificateId") && str_of(j, "certificatePem"));
        CHECK(csr == !str_of(j, "privateKey"));
        strcpy(token, t);
        ret = token;
    }
    cJSON_Delete(j);
    c->n = 0;
    return ret;
}

/* ---- built-in templates ------------------------------------------------------- */

static const char *const TEMPLATES[4] = {
    /* §2.4 */
    "{\"Parameters\":{\"SerialNumber\":{\"Type\":\"String\"},\"DeviceLocation\":{\"Type\":\"String\"},"
    "\"AWS::IoT::Certificate::Id\":{\"Type\":\"String\"}},"
    "\"Mappings\":{\"LocationTable\":{\"Seattle\":{\"LocationUrl\":\"https://example.aws\"}}},"
    "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":{\"Fn::Join\":[\"\","
    "[\"ThingPrefix_\",{\"Ref\":\"SerialNumber\"}]]},\"AttributePayload\":{\"version\":\"v1\",\"serialNumber\":"
    "\"serialNumber\"}},\"OverrideSettings\":{\"AttributePayload\":\"MERGE\",\"ThingTypeName\":\"REPLACE\","
    "\"ThingGroups\":\"DO_NOTHING\"}},\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{"
    "\"CertificateId\":{\"Ref\":\"AWS::IoT::Certificate::Id\"},\"Status\":\"Active\"},\"OverrideSettings\":{"
    "\"Status\":\"REPLACE\"}},\"policy\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":{"
    "\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:Connect\",\"iot:Publish\"],"
    "\"Resource\":\"*\"}]}}}},"
    "\"DeviceConfiguration\":{\"FallbackUrl\":\"https://www.example.com/test-site\",\"LocationUrl\":{"
    "\"Fn::FindInMap\":[\"LocationTable\",{\"Ref\":\"DeviceLocation\"},\"LocationUrl\"]}}}",
    /* every function, every thing property */
    "{\"Parameters\":{\"A\":{\"Type\":\"String\",\"Default\":\"x,y,z\"},\"I\":{\"Type\":\"String\",\"Default\":"
    "\"1\"},\"L\":{\"Type\":\"String\",\"Default\":\"Seattle\"},\"N\":{\"Type\":\"String\"}},"
    "\"Mappings\":{\"M\":{\"Seattle\":{\"U\":\"u1\",\"H\":[\"h0\",\"h1\"]},\"Oslo\":{\"U\":\"u2\",\"H\":[\"h2\"]}}},"
    "\"Resources\":{\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":{\"Fn::Sub\":\"dev-${N}\"},"
    "\"AttributePayload\":{\"a\":{\"Fn::Select\":[{\"Ref\":\"I\"},{\"Fn::Split\":[\",\",{\"Ref\":\"A\"}]}]}},"
    "\"ThingTypeName\":{\"Ref\":\"L\"},\"ThingGroups\":{\"Fn::FindInMap\":[\"M\",{\"Ref\":\"L\"},\"H\"]},"
    "\"BillingGroup\":\"bg\"},\"OverrideSettings\":{\"THING_GROUPS\":\"merge\"}},"
    "\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":{\"Ref\":"
    "\"AWS::IoT::Certificate::Id\"},\"Status\":{\"Fn::Select\":[0,[\"INACTIVE\",\"ACTIVE\"]]}}},"
    "\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":{\"Fn::Sub\":[\"{\\\"v\\\":\\\"${X}\\\"}"
    "\","
    "{\"X\":{\"Fn::Join\":[\"-\",[{\"Ref\":\"N\"},\"${!Y}\"]]}}]}}}},"
    "\"DeviceConfiguration\":{\"u\":{\"Fn::FindInMap\":[\"M\",{\"Ref\":\"L\"},\"U\"]},\"s\":{\"Fn::Sub\":"
    "\"${L}/${I}\"},\"j\":{\"Fn::Join\":[\"\",{\"Fn::Split\":[\",\",{\"Ref\":\"A\"}]}]}}}",
    /* no thing */
    "{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":{\"Ref\":"
    "\"AWS::IoT::Certificate::Id\"}}}},\"DeviceConfiguration\":{\"k\":{\"Ref\":\"K\"}}}",
    /* a policy by name, from a parameter */
    "{\"Resources\":{\"c\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"CertificateId\":{\"Ref\":"
    "\"AWS::IoT::Certificate::Id\"},\"Status\":\"inactive\"}},\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":"
    "{\"PolicyName\":{\"Ref\":\"P\"}}},\"t\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":{\"Ref\":"
    "\"P\"}}}}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sim_prov_req tr;
    if (sim_provision_parse_topic((const char *)data, size, &tr)) {
        char back[SIM_PROV_TOPIC_MAX + 1];
        CHECK(sim_provision_topic(&tr, "", back, sizeof back) == size && memcmp(back, data, size) == 0);
    }
    if (size < 2)
        return 0;
    uint8_t flags = data[0], tplsel = data[1];
    data += 2;
    size -= 2;

    sim_provision_config cfg;
    sim_provision_config_init(&cfg);
    cfg.max_tokens = 4;
    sim_provision *p = sim_provision_new(&cfg);
    CHECK(p);
    fake f;
    memset(&f, 0, sizeof f);
    f.mode = flags >> 6;
    sim_prov_backend be = {fk_keys, fk_csr, fk_register, fk_forget, &f};
    sim_provision_set_backend(p, f.mode == 3 ? NULL : &be);

    char why[1024];
    const char *builtin = TEMPLATES[tplsel & 3];
    bool enabled = !(tplsel & 0x80);
    CHECK(sim_provision_template_put(p, "T", builtin, strlen(builtin), enabled, why, sizeof why) == 0);
    bool own_template = false;
    if (flags & 0x08) {
        if (size < 2)
            goto done;
        size_t tlen = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2;
        size -= 2;
        if (tlen > size)
            tlen = size;
        own_template = sim_provision_template_put(p, "T", (const char *)data, tlen, enabled, why, sizeof why) == 0;
        if (!own_template)
            CHECK(why[0] != '\0');
        data += tlen;
        size -= tlen;
    }

    capture c;
    memset(&c, 0, sizeof c);
    uint64_t now = 1000;
    sim_prov_req req;
    memset(&req, 0, sizeof req);
    req.cbor = (flags & 0x04) != 0;

    /* An exact-size copy of the payload, with the token put in. */
    uint8_t *payload = malloc(size ? size : 1);
    if (!payload)
        abort();
    if (size)
        memcpy(payload, data, size);
    if (flags & 0x10) {
        sim_prov_req cr = {.op = SIM_PROV_CREATE_KEYS, .cbor = false};
        int st = sim_provision_handle(p, &cr, "claim", "client", NULL, 0, now, on_emit, &c, why, sizeof why);
        const char *tok = check_response(&cr, st, &c, &f);
        if (tok) {
            for (size_t i = 0; i + SIM_PROV_TOKEN_LEN <= size; i++) {
                size_t k = 0;
                while (k < SIM_PROV_TOKEN_LEN && payload[i + k] == '~')
                    k++;
                if (k == SIM_PROV_TOKEN_LEN) {
                    memcpy(payload + i, tok, SIM_PROV_TOKEN_LEN);
                    i += SIM_PROV_TOKEN_LEN - 1;
                }
            }
        }
        if (flags & 0x20)
            now += cfg.token_ttl_s;
    }

    switch (flags & 3) {
    case 0:
        req.op = SIM_PROV_CREATE_KEYS;
        break;
    case 1:
        req.op = SIM_PROV_CREATE_FROM_CSR;
        break;
    default:
        req.op = SIM_PROV_REGISTER;
        strcpy(req.template_name, tplsel & 0x40 ? "U" : "T");
        break;
    }
    int st = sim_provision_handle(p, &req, "claim", NULL, payload, size, now, on_emit, &c, why, sizeof why);
    check_response(&req, st, &c, &f);
    CHECK(why[0] != '\0');
    if (getenv("FUZZ_PROVISION_LOG"))
        fprintf(stderr, "%s %s%s: %d %s\n", sim_prov_op_name(req.op), req.cbor ? "cbor" : "json",
                flags & 0x08 ? (own_template ? " (its template)" : " (template refused)") : "", st, why);
    if (req.op == SIM_PROV_REGISTER) {
        if (f.mode == 0)
            CHECK(st == 200 || st == 400 || st == 404);
        else if (f.mode == 1)
            CHECK(st == 409 || st == 400 || st == 404);
        else if (f.mode == 2)
            CHECK(st == 400 || st == 404); /* no token could be made */
        else
            CHECK(st == 500 || st == 400 || st == 404);
        if (st == 200) { /* single use */
            st = sim_provision_handle(p, &req, "claim", NULL, payload, size, now, on_emit, &c, why, sizeof why);
            check_response(&req, st, &c, &f);
            CHECK(st == 400 && strncmp(why, "InvalidCertificateOwnershipToken", 32) == 0);
        }
    } else if (f.mode <= 1) { /* the CA works */
        CHECK(st == 200 || st == 400);
    } else {
        CHECK(st == 400 || st == 500);
    }

    char *d = sim_provision_describe(p);
    CHECK(d);
    cJSON *dj = cJSON_Parse(d);
    CHECK(cJSON_IsObject(dj));
    cJSON_Delete(dj);
    free(d);

    /* Everything made is registered or, once every token expired, forgotten. */
    CHECK(sim_provision_expire(p, UINT64_MAX) == UINT64_MAX);
    CHECK(sim_provision_token_count(p) == 0);
    for (int i = 0; i < f.next; i++)
        CHECK(f.registered[i] + f.forgotten[i] == 1);
    free(payload);
    free(c.payload);
done:
    sim_provision_free(p);
    return 0;
}
