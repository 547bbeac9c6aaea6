/*
 * svc/identity_core.c: the fleet provisioning client's protocol
 * (identity_core.h).
 *
 * The channels are a fixed array: at most 2 + 16 of them, so a linear
 * search is all it takes.  Payloads are printed by cJSON rather than
 * formatted by hand: a CSR is PEM text full of newlines, and parameters are
 * whatever the device passes, and cJSON's string printer escapes every
 * control byte, quote and backslash the way JSON wants.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "iotc/mqtt.h"
#include "svc/identity_core.h"
#include "svc/svc_topic.h"

/* ---- names and topics ----------------------------------------------------------- */

static const char *const op_names[IOTC_IDENTITY_NOPS] = {"CreateKeysAndCertificate", "CreateCertificateFromCsr",
                                                          "RegisterThing"};
static const char *const sfx_text[] = {"", "/accepted", "/rejected"};
#define NSFX (sizeof sfx_text / sizeof sfx_text[0])

#define CERT_PREFIX "$aws/certificates/"
#define TMPL_PREFIX "$aws/provisioning-templates/"

const char *iotc_identity_op_name(iotc_identity_op op)
{
    return (unsigned)op < IOTC_IDENTITY_NOPS ? op_names[op] : "?";
}

/* Explicit ranges, not <ctype.h>: isalnum() follows the locale. */
static bool template_byte(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '-';
}

int iotc_identity_check_template(const char *name, size_t len, const char **why)
{
    const char *w = NULL;
    if (!name || len == 0)
        w = "the template name is empty";
    else if (len > IOTC_IDENTITY_TEMPLATE_MAX)
        w = "the template name is over 36 bytes";
    for (size_t i = 0; !w && i < len; i++)
        if (!template_byte((unsigned char)name[i]))
            w = "the template name has a byte outside [0-9A-Za-z_-]";
    if (why)
        *why = w ? w : "";
    return w ? IOTC_ERR_INVALID_ARG : IOTC_OK;
}

int iotc_identity_topic(char *buf, size_t cap, iotc_identity_op op, const char *template_name,
                        iotc_identity_sfx sfx)
{
    if (!buf || (unsigned)op >= IOTC_IDENTITY_NOPS || (unsigned)sfx >= NSFX)
        return IOTC_ERR_INVALID_ARG;
    int n;
    if (op == IOTC_IDENTITY_OP_REGISTER_THING) {
        if (!template_name ||
            iotc_identity_check_template(template_name, strlen(template_name), NULL) != IOTC_OK)
            return IOTC_ERR_INVALID_ARG;
        n = snprintf(buf, cap, TMPL_PREFIX "%s/provision/json%s", template_name, sfx_text[sfx]);
    } else {
        if (template_name)
            return IOTC_ERR_INVALID_ARG;
        n = snprintf(buf, cap, CERT_PREFIX "%s/json%s", op == IOTC_IDENTITY_OP_CREATE_KEYS ? "create" : "create-from-csr",
                     sfx_text[sfx]);
    }
    return iotc_svc_topic_fit(n, buf, cap);
}

bool iotc_identity_topic_parse(const char *topic, size_t len, iotc_identity_topic_parts *out)
{
    if (!topic || !out)
        return false;
    const char *p = topic, *end = topic + len, *lv;
    size_t n;
    iotc_identity_topic_parts r;
    memset(&r, 0, sizeof r);
    if (!iotc_svc_topic_level(&p, end, &lv, &n) || !iotc_svc_level_is(lv, n, "$aws") ||
        !iotc_svc_topic_level(&p, end, &lv, &n))
        return false;
    if (iotc_svc_level_is(lv, n, "certificates")) {
        if (!iotc_svc_topic_level(&p, end, &lv, &n))
            return false;
        if (iotc_svc_level_is(lv, n, "create"))
            r.op = IOTC_IDENTITY_OP_CREATE_KEYS;
        else if (iotc_svc_level_is(lv, n, "create-from-csr"))
            r.op = IOTC_IDENTITY_OP_CREATE_FROM_CSR;
        else
            return false;
    } else if (iotc_svc_level_is(lv, n, "provisioning-templates")) {
        r.op = IOTC_IDENTITY_OP_REGISTER_THING;
        if (!iotc_svc_topic_level(&p, end, &r.template_name, &r.template_len) ||
            iotc_identity_check_template(r.template_name, r.template_len, NULL) != IOTC_OK)
            return false;
        if (!iotc_svc_topic_level(&p, end, &lv, &n) || !iotc_svc_level_is(lv, n, "provision"))
            return false;
    } else {
        return false;
    }
    /* json only: a cbor answer is for a cbor request, which this core never makes. */
    if (!iotc_svc_topic_level(&p, end, &lv, &n) || !iotc_svc_level_is(lv, n, "json"))
        return false;
    r.sfx = IOTC_IDENTITY_SFX_REQUEST;
    if (iotc_svc_topic_level(&p, end, &lv, &n)) {
        if (iotc_svc_level_is(lv, n, "accepted"))
            r.sfx = IOTC_IDENTITY_SFX_ACCEPTED;
        else if (iotc_svc_level_is(lv, n, "rejected"))
            r.sfx = IOTC_IDENTITY_SFX_REJECTED;
        else
            return false;
        if (iotc_svc_topic_level(&p, end, &lv, &n))
            return false; /* anything after the suffix */
    }
    *out = r;
    return true;
}

/* ---- payloads ----------------------------------------------------------------------- */

static void set_why(const char **why, const char *w)
{
    if (why)
        *why = w;
}

static bool utf8_ok(const char *s)
{
    size_t bad = 0;
    return iotc_mqtt_utf8_valid((const uint8_t *)s, strlen(s), &bad);
}

/* Prints `obj` (consumed) into *out, within the payload limit. */
static int print_payload(cJSON *obj, char **out, size_t *len, const char **why)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!text) {
        set_why(why, "out of memory");
        return IOTC_ERR_NOMEM;
    }
    size_t n = strlen(text);
    if (n > IOTC_IDENTITY_PAYLOAD_MAX) {
        cJSON_free(text);
        set_why(why, "the request is over AWS IoT's 128 KiB message limit");
        return IOTC_ERR_TOO_LARGE;
    }
    /* cJSON's allocator is malloc unless someone hooked it; copy so that the
     * caller's free() is right either way. */
    char *copy = malloc(n + 1);
    if (!copy) {
        cJSON_free(text);
        set_why(why, "out of memory");
        return IOTC_ERR_NOMEM;
    }
    memcpy(copy, text, n + 1);
    cJSON_free(text);
    *out = copy;
    *len = n;
    set_why(why, "");
    return IOTC_OK;
}

int iotc_identity_build_create_keys(char **out, size_t *len)
{
    if (!out || !len)
        return IOTC_ERR_INVALID_ARG;
    *out = NULL;
    *len = 0;
    char *p = malloc(3);
    if (!p)
        return IOTC_ERR_NOMEM;
    memcpy(p, "{}", 3);
    *out = p;
    *len = 2;
    return IOTC_OK;
}

int iotc_identity_build_csr(const char *csr_pem, char **out, size_t *len, const char **why)
{
    set_why(why, "");
    if (!out || !len) {
        set_why(why, "a NULL argument");
        return IOTC_ERR_INVALID_ARG;
    }
    *out = NULL;
    *len = 0;
    if (!csr_pem || !csr_pem[0]) {
        set_why(why, "the CSR is empty");
        return IOTC_ERR_INVALID_ARG;
    }
    /* Cheaper than printing a megabyte to find out: the JSON is longer. */
    if (strlen(csr_pem) > IOTC_IDENTITY_PAYLOAD_MAX) {
        set_why(why, "the request is over AWS IoT's 128 KiB message limit");
        return IOTC_ERR_TOO_LARGE;
    }
    if (!utf8_ok(csr_pem)) {
        set_why(why, "the CSR is not valid UTF-8 (PEM is ASCII)");
        return IOTC_ERR_INVALID_ARG;
    }
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "certificateSigningRequest", csr_pem)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return print_payload(o, out, len, why);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Non-empty, unique, UTF-8 keys; values present and UTF-8. */
static int check_params(const char *const *keys, const char *const *values, size_t n, const char **why)
{
    if (n == 0)
        return IOTC_OK;
    if (!keys || !values) {
        set_why(why, "parameters without their keys or values");
        return IOTC_ERR_INVALID_ARG;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i] || !values[i]) {
            set_why(why, "a parameter key or value is NULL");
            return IOTC_ERR_INVALID_ARG;
        }
        if (!keys[i][0]) {
            set_why(why, "a parameter key is empty (templates have no parameter without a name)");
            return IOTC_ERR_INVALID_ARG;
        }
        if (!utf8_ok(keys[i]) || !utf8_ok(values[i])) {
            set_why(why, "a parameter key or value is not valid UTF-8");
            return IOTC_ERR_INVALID_ARG;
        }
        total += strlen(keys[i]) + strlen(values[i]);
        if (total > IOTC_IDENTITY_PAYLOAD_MAX) {
            set_why(why, "the request is over AWS IoT's 128 KiB message limit");
            return IOTC_ERR_TOO_LARGE;
        }
    }
    /* Sorted, so that many parameters do not cost n^2 comparisons. */
    const char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
        set_why(why, "out of memory");
        return IOTC_ERR_NOMEM;
    }
    memcpy(sorted, keys, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = strcmp(sorted[i - 1], sorted[i]) == 0;
    free(sorted);
    if (dup) {
        /* A JSON object with a key twice means whatever its reader decides. */
        set_why(why, "a parameter key is given twice");
        return IOTC_ERR_INVALID_ARG;
    }
    return IOTC_OK;
}

int iotc_identity_build_register(const char *token, const char *const *keys, const char *const *values,
                                 size_t nparams, char **out, size_t *len, const char **why)
{
    set_why(why, "");
    if (!out || !len) {
        set_why(why, "a NULL argument");
        return IOTC_ERR_INVALID_ARG;
    }
    *out = NULL;
    *len = 0;
    if (!token || !token[0]) {
        set_why(why, "the certificate ownership token is empty (AWS rejects it)");
        return IOTC_ERR_INVALID_ARG;
    }
    if (strlen(token) > IOTC_IDENTITY_PAYLOAD_MAX) {
        set_why(why, "the request is over AWS IoT's 128 KiB message limit");
        return IOTC_ERR_TOO_LARGE;
    }
    if (!utf8_ok(token)) {
        set_why(why, "the certificate ownership token is not valid UTF-8");
        return IOTC_ERR_INVALID_ARG;
    }
    int rc = check_params(keys, values, nparams, why);
    if (rc != IOTC_OK)
        return rc;
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "certificateOwnershipToken", token);
    if (ok && nparams > 0) {
        cJSON *params = cJSON_AddObjectToObject(o, "parameters");
        ok = params != NULL;
        for (size_t i = 0; ok && i < nparams; i++)
            ok = cJSON_AddStringToObject(params, keys[i], values[i]) != NULL;
    }
    if (!ok) {
        cJSON_Delete(o);
        o = NULL;
    }
    return print_payload(o, out, len, why);
}

/* ---- documents ------------------------------------------------------------------------ */

typedef struct {
    cJSON *root;
    const char **arrays; /* config keys then values, one block */
} doc_priv;

static bool only_ws(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

/* One JSON object and nothing but whitespace after it; NULL otherwise, and
 * `why` says which. */
static cJSON *parse_object(const uint8_t *payload, size_t len, const char **why)
{
    size_t bad = 0;
    if (!payload || len == 0) {
        set_why(why, "the answer is empty");
        return NULL;
    }
    /* JSON is UTF-8, and the strings here reach the device's files and logs. */
    if (!iotc_mqtt_utf8_valid(payload, len, &bad)) {
        set_why(why, "the answer is not valid UTF-8");
        return NULL;
    }
    const char *p = (const char *)payload;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(p, len, &end, 0);
    if (doc && (!end || end < p || !only_ws(end, len - (size_t)(end - p)))) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    if (!doc) {
        set_why(why, "the answer is not JSON");
        return NULL;
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        set_why(why, "the answer is not a JSON object");
        return NULL;
    }
    return doc;
}

/* A non-empty string member; NULL when absent, empty or of another type. */
static const char *str_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring && v->valuestring[0] ? v->valuestring : NULL;
}

/* An optional string member: absent or null gives "", a string itself,
 * anything else false. */
static bool opt_str_member(const cJSON *o, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = "";
        return true;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return false;
    *out = v->valuestring;
    return true;
}

static int keep(cJSON *root, const char **arrays, iotc_identity_doc *out, const char **why)
{
    doc_priv *pv = malloc(sizeof *pv);
    if (!pv) {
        cJSON_Delete(root);
        free(arrays);
        memset(out, 0, sizeof *out);
        set_why(why, "out of memory");
        return IOTC_ERR_NOMEM;
    }
    pv->root = root;
    pv->arrays = arrays;
    out->doc_ = pv;
    set_why(why, "");
    return IOTC_OK;
}

static int malformed(cJSON *root, iotc_identity_doc *out, const char **why, const char *w)
{
    cJSON_Delete(root);
    memset(out, 0, sizeof *out);
    set_why(why, w);
    return IOTC_ERR_PROTOCOL;
}

int iotc_identity_parse_accepted(iotc_identity_op op, const uint8_t *payload, size_t len, iotc_identity_doc *out,
                                 const char **why)
{
    set_why(why, "");
    if (!out || (unsigned)op >= IOTC_IDENTITY_NOPS) {
        set_why(why, "a NULL argument or an unknown operation");
        return IOTC_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    const char *w = "";
    cJSON *root = parse_object(payload, len, &w);
    if (!root)
        return malformed(NULL, out, why, w);
    if (op != IOTC_IDENTITY_OP_REGISTER_THING) {
        out->certificate_id = str_member(root, "certificateId");
        out->certificate_pem = str_member(root, "certificatePem");
        out->certificate_ownership_token = str_member(root, "certificateOwnershipToken");
        if (!out->certificate_id)
            return malformed(root, out, why, "the accepted answer has no certificateId (a non-empty string)");
        if (!out->certificate_pem)
            return malformed(root, out, why, "the accepted answer has no certificatePem (a non-empty string)");
        if (!out->certificate_ownership_token)
            return malformed(root, out, why,
                             "the accepted answer has no certificateOwnershipToken (a non-empty string)");
        if (op == IOTC_IDENTITY_OP_CREATE_KEYS) {
            /* Without it the new certificate is useless: the key is made by
             * AWS and sent once. */
            out->private_key = str_member(root, "privateKey");
            if (!out->private_key)
                return malformed(root, out, why, "the accepted answer has no privateKey (a non-empty string)");
        }
        return keep(root, NULL, out, why);
    }
    /* RegisterThing.  thingName absent or null reads as "": AWS does not say
     * what it sends for a template without a thing (§2.2, UNCONFIRMED). */
    if (!opt_str_member(root, "thingName", &out->thing_name))
        return malformed(root, out, why, "the accepted answer's thingName is not a string");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "deviceConfiguration");
    if (!cfg || cJSON_IsNull(cfg))
        return keep(root, NULL, out, why);
    if (!cJSON_IsObject(cfg))
        return malformed(root, out, why, "the accepted answer's deviceConfiguration is not an object");
    size_t n = (size_t)cJSON_GetArraySize(cfg);
    for (const cJSON *m = cfg->child; m; m = m->next)
        if (!cJSON_IsString(m) || !m->valuestring || !m->string)
            return malformed(root, out, why,
                             "the accepted answer's deviceConfiguration has a value that is not a string "
                             "(AWS's is a flat map of strings)");
    const char **arrays = NULL;
    if (n > 0) {
        arrays = malloc(2 * n * sizeof *arrays);
        if (!arrays) {
            cJSON_Delete(root);
            memset(out, 0, sizeof *out);
            set_why(why, "out of memory");
            return IOTC_ERR_NOMEM;
        }
        size_t i = 0;
        for (const cJSON *m = cfg->child; m && i < n; m = m->next, i++) {
            arrays[i] = m->string;
            arrays[n + i] = m->valuestring;
        }
        out->config_keys = arrays;
        out->config_values = arrays + n;
        out->config_len = n;
    }
    return keep(root, arrays, out, why);
}

int iotc_identity_parse_rejected(const uint8_t *payload, size_t len, iotc_identity_doc *out, const char **why)
{
    set_why(why, "");
    if (!out) {
        set_why(why, "a NULL argument");
        return IOTC_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    const char *w = "";
    cJSON *root = parse_object(payload, len, &w);
    if (!root)
        return malformed(NULL, out, why, w);
    /* AWS's error document always has it (§2.2); it is what a caller
     * branches on. */
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "statusCode");
    double d = cJSON_IsNumber(sc) ? sc->valuedouble : 0.5;
    if (!(d >= (double)INT_MIN && d <= (double)INT_MAX) || (double)(int)d != d)
        return malformed(root, out, why, "the rejected answer has no integer statusCode");
    out->status_code = (int)d;
    if (!opt_str_member(root, "errorCode", &out->error_code))
        return malformed(root, out, why, "the rejected answer's errorCode is not a string");
    if (!opt_str_member(root, "errorMessage", &out->error_message))
        return malformed(root, out, why, "the rejected answer's errorMessage is not a string");
    return keep(root, NULL, out, why);
}

void iotc_identity_doc_clear(iotc_identity_doc *d)
{
    if (!d)
        return;
    doc_priv *pv = d->doc_;
    if (pv) {
        cJSON_Delete(pv->root);
        free(pv->arrays);
        free(pv);
    }
    memset(d, 0, sizeof *d);
}

/* ---- the core ------------------------------------------------------------------------- */

typedef struct {
    iotc_identity_op op;
    char *tmpl; /* RegisterThing only */
    char *topics[NSFX];
    bool pending;
    uint64_t id;
    uint64_t deadline;
    void *user;
} chan;

struct iotc_identity_core {
    chan ch[IOTC_IDENTITY_MAX_CHANNELS];
    int nch;
    size_t npending;
    uint64_t counter;
};

static void channel_free(chan *c)
{
    for (size_t i = 0; i < NSFX; i++)
        free(c->topics[i]);
    free(c->tmpl);
    memset(c, 0, sizeof *c);
}

/* Fills a channel's topics; false when out of memory (it is then freed). */
static bool channel_init(chan *c, iotc_identity_op op, const char *tmpl)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    bool ok = !tmpl || (c->tmpl = strdup(tmpl)) != NULL;
    for (size_t s = 0; ok && s < NSFX; s++) {
        char buf[IOTC_IDENTITY_TOPIC_MAX + 1];
        ok = iotc_identity_topic(buf, sizeof buf, op, tmpl, (iotc_identity_sfx)s) > 0 &&
             (c->topics[s] = strdup(buf)) != NULL;
    }
    if (!ok)
        channel_free(c);
    return ok;
}

int iotc_identity_core_new(iotc_identity_core **out)
{
    if (!out)
        return IOTC_ERR_INVALID_ARG;
    *out = NULL;
    iotc_identity_core *ic = calloc(1, sizeof *ic);
    if (!ic)
        return IOTC_ERR_NOMEM;
    if (!channel_init(&ic->ch[0], IOTC_IDENTITY_OP_CREATE_KEYS, NULL) ||
        !channel_init(&ic->ch[1], IOTC_IDENTITY_OP_CREATE_FROM_CSR, NULL)) {
        iotc_identity_core_free(ic);
        return IOTC_ERR_NOMEM;
    }
    ic->nch = 2;
    *out = ic;
    return IOTC_OK;
}

void iotc_identity_core_free(iotc_identity_core *ic)
{
    if (!ic)
        return;
    for (int i = 0; i < IOTC_IDENTITY_MAX_CHANNELS; i++)
        channel_free(&ic->ch[i]);
    free(ic);
}

int iotc_identity_core_channels(const iotc_identity_core *ic)
{
    return ic ? ic->nch : 0;
}

/* The channel of (op, template bytes); -1 when none. */
static int find_n(const iotc_identity_core *ic, iotc_identity_op op, const char *tmpl, size_t tlen)
{
    if (op == IOTC_IDENTITY_OP_CREATE_KEYS)
        return 0;
    if (op == IOTC_IDENTITY_OP_CREATE_FROM_CSR)
        return 1;
    if (op != IOTC_IDENTITY_OP_REGISTER_THING || !tmpl)
        return -1;
    for (int i = 2; i < ic->nch; i++)
        if (strlen(ic->ch[i].tmpl) == tlen && memcmp(ic->ch[i].tmpl, tmpl, tlen) == 0)
            return i;
    return -1;
}

int iotc_identity_core_find(const iotc_identity_core *ic, iotc_identity_op op, const char *template_name)
{
    if (!ic)
        return -1;
    return find_n(ic, op, template_name, template_name ? strlen(template_name) : 0);
}

const char *iotc_identity_core_topic(const iotc_identity_core *ic, int channel, iotc_identity_sfx sfx)
{
    if (!ic || channel < 0 || channel >= ic->nch || (unsigned)sfx >= NSFX)
        return NULL;
    return ic->ch[channel].topics[sfx];
}

iotc_identity_op iotc_identity_core_channel_op(const iotc_identity_core *ic, int channel)
{
    if (!ic || channel < 0 || channel >= ic->nch)
        return (iotc_identity_op)IOTC_IDENTITY_NOPS;
    return ic->ch[channel].op;
}

size_t iotc_identity_core_pending(const iotc_identity_core *ic)
{
    return ic ? ic->npending : 0;
}

bool iotc_identity_core_is_pending(const iotc_identity_core *ic, int channel)
{
    return ic && channel >= 0 && channel < ic->nch && ic->ch[channel].pending;
}

/* Checks the arguments against the op and builds the payload. */
static int build_for(const iotc_identity_args *a, char **payload, size_t *len, const char **why)
{
    switch (a->op) {
    case IOTC_IDENTITY_OP_CREATE_KEYS:
        if (a->template_name || a->csr_pem || a->token || a->nparams) {
            set_why(why, "CreateKeysAndCertificate takes no template, CSR, token or parameters");
            return IOTC_ERR_INVALID_ARG;
        }
        if (iotc_identity_build_create_keys(payload, len) != IOTC_OK) {
            set_why(why, "out of memory");
            return IOTC_ERR_NOMEM;
        }
        return IOTC_OK;
    case IOTC_IDENTITY_OP_CREATE_FROM_CSR:
        if (a->template_name || a->token || a->nparams) {
            set_why(why, "CreateCertificateFromCsr takes no template, token or parameters");
            return IOTC_ERR_INVALID_ARG;
        }
        return iotc_identity_build_csr(a->csr_pem, payload, len, why);
    case IOTC_IDENTITY_OP_REGISTER_THING:
        if (a->csr_pem) {
            set_why(why, "RegisterThing takes no CSR");
            return IOTC_ERR_INVALID_ARG;
        }
        if (!a->template_name) {
            set_why(why, "RegisterThing needs a template name");
            return IOTC_ERR_INVALID_ARG;
        }
        if (iotc_identity_check_template(a->template_name, strlen(a->template_name), why) != IOTC_OK)
            return IOTC_ERR_INVALID_ARG;
        return iotc_identity_build_register(a->token, a->param_keys, a->param_values, a->nparams, payload, len, why);
    default:
        set_why(why, "an unknown operation");
        return IOTC_ERR_INVALID_ARG;
    }
}

int iotc_identity_core_begin(iotc_identity_core *ic, const iotc_identity_args *a, uint64_t now_ms,
                             uint32_t timeout_ms, void *user, iotc_identity_request *out, const char **why)
{
    set_why(why, "");
    if (!ic || !a || !out) {
        set_why(why, "a NULL argument");
        return IOTC_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    out->channel = -1;
    if (timeout_ms == 0) {
        set_why(why, "a request needs a timeout (a lost answer would hold its operation forever)");
        return IOTC_ERR_INVALID_ARG;
    }
    char *payload = NULL;
    size_t len = 0;
    int rc = build_for(a, &payload, &len, why);
    if (rc != IOTC_OK)
        return rc;
    int ch = find_n(ic, a->op, a->template_name, a->template_name ? strlen(a->template_name) : 0);
    if (ch >= 0 && ic->ch[ch].pending) {
        free(payload);
        /* No correlation token (§2.1): a second request on the same topics
         * could not tell its answer from the first one's. */
        set_why(why, a->op == IOTC_IDENTITY_OP_REGISTER_THING
                         ? "a RegisterThing with this template is already pending (AWS's answers carry no "
                           "correlation token: one at a time)"
                         : "a request of this operation is already pending (AWS's answers carry no correlation "
                           "token: one at a time)");
        return IOTC_ERR_BUSY;
    }
    if (ch < 0) {
        if (ic->nch >= IOTC_IDENTITY_MAX_CHANNELS) {
            free(payload);
            set_why(why, "this identity client has registered things with 16 templates already");
            return IOTC_ERR_BUSY;
        }
        if (!channel_init(&ic->ch[ic->nch], a->op, a->template_name)) {
            free(payload);
            set_why(why, "out of memory");
            return IOTC_ERR_NOMEM;
        }
        ch = ic->nch++;
    }
    chan *c = &ic->ch[ch];
    c->pending = true;
    c->id = ++ic->counter;
    c->deadline = UINT64_MAX - now_ms < timeout_ms ? UINT64_MAX : now_ms + timeout_ms;
    c->user = user;
    ic->npending++;
    out->channel = ch;
    out->id = c->id;
    out->payload = payload;
    out->payload_len = len;
    return IOTC_OK;
}

static void take_channel(iotc_identity_core *ic, int ch, iotc_identity_taken *out)
{
    chan *c = &ic->ch[ch];
    if (out) {
        out->user = c->user;
        out->op = c->op;
        out->channel = ch;
        out->id = c->id;
    }
    c->pending = false;
    c->user = NULL;
    c->deadline = 0;
    ic->npending--;
}

bool iotc_identity_core_take(iotc_identity_core *ic, uint64_t id, iotc_identity_taken *out)
{
    if (!ic)
        return false;
    for (int i = 0; i < ic->nch; i++) {
        if (ic->ch[i].pending && ic->ch[i].id == id) {
            take_channel(ic, i, out);
            return true;
        }
    }
    return false;
}

bool iotc_identity_core_take_any(iotc_identity_core *ic, iotc_identity_taken *out)
{
    if (!ic)
        return false;
    for (int i = 0; i < ic->nch; i++) {
        if (ic->ch[i].pending) {
            take_channel(ic, i, out);
            return true;
        }
    }
    return false;
}

/* The pending channel with the earliest deadline (the earlier request of
 * two equal ones), -1 when none. */
static int earliest(const iotc_identity_core *ic)
{
    int best = -1;
    for (int i = 0; i < ic->nch; i++) {
        const chan *c = &ic->ch[i];
        if (c->pending && (best < 0 || c->deadline < ic->ch[best].deadline ||
                           (c->deadline == ic->ch[best].deadline && c->id < ic->ch[best].id)))
            best = i;
    }
    return best;
}

bool iotc_identity_core_expire(iotc_identity_core *ic, uint64_t now_ms, iotc_identity_taken *out)
{
    if (!ic)
        return false;
    int i = earliest(ic);
    if (i < 0 || ic->ch[i].deadline > now_ms)
        return false;
    take_channel(ic, i, out);
    return true;
}

uint64_t iotc_identity_core_next_deadline(const iotc_identity_core *ic)
{
    int i = ic ? earliest(ic) : -1;
    return i >= 0 ? ic->ch[i].deadline : UINT64_MAX;
}

/* ---- what arrives ---------------------------------------------------------------------- */

void iotc_identity_core_input(iotc_identity_core *ic, const char *topic, size_t topic_len, const uint8_t *payload,
                              size_t len, iotc_identity_event *ev)
{
    if (!ev)
        return;
    memset(ev, 0, sizeof *ev);
    ev->why = "";
    ev->channel = -1;
    iotc_identity_topic_parts t;
    int ch = -1;
    if (ic && topic && iotc_identity_topic_parse(topic, topic_len, &t) && t.sfx != IOTC_IDENTITY_SFX_REQUEST)
        ch = find_n(ic, t.op, t.template_name, t.template_len);
    if (ch < 0) {
        ev->type = IOTC_IDENTITY_EV_IGNORED;
        ev->ignored = IOTC_IDENTITY_IGN_TOPIC;
        return;
    }
    if (!ic->ch[ch].pending) {
        ev->type = IOTC_IDENTITY_EV_IGNORED;
        ev->ignored = IOTC_IDENTITY_IGN_NOT_PENDING;
        return;
    }
    iotc_identity_taken tk;
    take_channel(ic, ch, &tk);
    ev->type = IOTC_IDENTITY_EV_RESPONSE;
    ev->op = tk.op;
    ev->channel = ch;
    ev->id = tk.id;
    ev->user = tk.user;
    const char *w = "";
    int rc = t.sfx == IOTC_IDENTITY_SFX_ACCEPTED ? iotc_identity_parse_accepted(tk.op, payload, len, &ev->doc, &w)
                                                 : iotc_identity_parse_rejected(payload, len, &ev->doc, &w);
    if (rc == IOTC_OK) {
        ev->status = t.sfx == IOTC_IDENTITY_SFX_ACCEPTED ? IOTC_OK : IOTC_ERR_REJECTED;
    } else {
        /* Malformed (or no memory to read it): the request is over either
         * way, since its answer came. */
        ev->status = rc == IOTC_ERR_NOMEM ? IOTC_ERR_NOMEM : IOTC_ERR_PROTOCOL;
        ev->why = w;
    }
}

void iotc_identity_event_clear(iotc_identity_event *ev)
{
    if (!ev)
        return;
    iotc_identity_doc_clear(&ev->doc);
    ev->why = "";
}
