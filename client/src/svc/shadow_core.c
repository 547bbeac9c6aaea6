/*
 * svc/shadow_core.c: the Device Shadow client's protocol (shadow_core.h).
 *
 * The pending table is a small array (AWS allows 10 requests in flight, so a
 * linear search is the fastest structure there is).  JSON is read with
 * cJSON; the update payload is *not* re-printed by cJSON, because cJSON
 * holds numbers as doubles and would silently change a caller's integer
 * beyond 2^53 or its number formatting: the payload is spliced together
 * from the caller's own bytes instead (see build_update).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "iotc/mqtt.h"
#include "svc/shadow_core.h"
#include "svc/svc_topic.h"

/* ---- names and topics ----------------------------------------------------------- */

static const char *const op_names[IOTC_SHADOW_NOPS] = {"get", "update", "delete"};
static const char *const sfx_text[] = {"", "/accepted", "/rejected", "/delta", "/documents"};
#define NSFX (sizeof sfx_text / sizeof sfx_text[0])

const char *iotc_shadow_op_name(iotc_shadow_op op)
{
    return (unsigned)op < IOTC_SHADOW_NOPS ? op_names[op] : "?";
}

/* Explicit ranges, not <ctype.h>: isalnum() follows the locale. */
static bool name_byte(unsigned char ch, bool dollar)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == ':' ||
           ch == '_' || ch == '-' || (dollar && ch == '$');
}

static int check_name(const char *s, size_t len, size_t max, bool dollar, const char **why, const char *w_empty,
                      const char *w_long, const char *w_byte)
{
    const char *w = NULL;
    if (!s || len == 0)
        w = w_empty;
    else if (len > max)
        w = w_long;
    for (size_t i = 0; !w && i < len; i++)
        if (!name_byte((unsigned char)s[i], dollar))
            w = w_byte;
    if (why)
        *why = w ? w : "";
    return w ? IOTC_ERR_INVALID_ARG : IOTC_OK;
}

int iotc_shadow_check_thing(const char *thing, size_t len, const char **why)
{
    return check_name(thing, len, IOTC_SHADOW_THING_MAX, false, why, "the thing name is empty",
                      "the thing name is over 128 bytes",
                      "the thing name has a byte outside [a-zA-Z0-9:_-]");
}

int iotc_shadow_check_name(const char *name, size_t len, const char **why)
{
    return check_name(name, len, IOTC_SHADOW_NAME_MAX, true, why, "the shadow name is empty",
                      "the shadow name is over 64 bytes",
                      "the shadow name has a byte outside [$a-zA-Z0-9:_-]");
}

static bool sfx_valid(iotc_shadow_op op, iotc_shadow_sfx sfx)
{
    if ((unsigned)op >= IOTC_SHADOW_NOPS || (unsigned)sfx >= NSFX)
        return false;
    return op == IOTC_SHADOW_OP_UPDATE || (sfx != IOTC_SHADOW_SFX_DELTA && sfx != IOTC_SHADOW_SFX_DOCUMENTS);
}

int iotc_shadow_topic(char *buf, size_t cap, const char *thing, const char *name, iotc_shadow_op op,
                      iotc_shadow_sfx sfx)
{
    if (!buf || !thing || !sfx_valid(op, sfx))
        return IOTC_ERR_INVALID_ARG;
    if (iotc_shadow_check_thing(thing, strlen(thing), NULL) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    bool named = name && name[0];
    if (named && iotc_shadow_check_name(name, strlen(name), NULL) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    int n = snprintf(buf, cap, "$aws/things/%s/shadow%s%s/%s%s", thing, named ? "/name/" : "", named ? name : "",
                     op_names[op], sfx_text[sfx]);
    return iotc_svc_topic_fit(n, buf, cap);
}

bool iotc_shadow_topic_parse(const char *topic, size_t len, iotc_shadow_topic_parts *out)
{
    if (!topic || !out)
        return false;
    const char *p = topic, *end = topic + len, *lv;
    size_t n;
    iotc_shadow_topic_parts r;
    memset(&r, 0, sizeof r);
    if (!iotc_svc_topic_level(&p, end, &lv, &n) || !iotc_svc_level_is(lv, n, "$aws"))
        return false;
    if (!iotc_svc_topic_level(&p, end, &lv, &n) || !iotc_svc_level_is(lv, n, "things"))
        return false;
    if (!iotc_svc_topic_level(&p, end, &r.thing, &r.thing_len) || iotc_shadow_check_thing(r.thing, r.thing_len, NULL))
        return false;
    if (!iotc_svc_topic_level(&p, end, &lv, &n) || !iotc_svc_level_is(lv, n, "shadow"))
        return false;
    if (!iotc_svc_topic_level(&p, end, &lv, &n))
        return false;
    /* "name" is not an operation, so a classic topic cannot be mistaken for
     * a named one (and a shadow may itself be called "get"). */
    if (iotc_svc_level_is(lv, n, "name")) {
        if (!iotc_svc_topic_level(&p, end, &r.name, &r.name_len) || iotc_shadow_check_name(r.name, r.name_len, NULL))
            return false;
        if (!iotc_svc_topic_level(&p, end, &lv, &n))
            return false;
    }
    int op = -1;
    for (int i = 0; i < IOTC_SHADOW_NOPS; i++)
        if (iotc_svc_level_is(lv, n, op_names[i]))
            op = i;
    if (op < 0)
        return false;
    r.op = (iotc_shadow_op)op;
    r.sfx = IOTC_SHADOW_SFX_REQUEST;
    if (iotc_svc_topic_level(&p, end, &lv, &n)) {
        int sfx = -1;
        for (size_t i = 1; i < NSFX; i++)
            if (iotc_svc_level_is(lv, n, sfx_text[i] + 1))
                sfx = (int)i;
        if (sfx < 0 || !sfx_valid(r.op, (iotc_shadow_sfx)sfx))
            return false;
        r.sfx = (iotc_shadow_sfx)sfx;
        if (iotc_svc_topic_level(&p, end, &lv, &n))
            return false; /* anything after the suffix */
    }
    *out = r;
    return true;
}

void iotc_shadow_uuid4(const uint8_t random[IOTC_SHADOW_RANDOM_BYTES], char out[IOTC_SHADOW_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[IOTC_SHADOW_RANDOM_BYTES];
    memcpy(b, random, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    size_t j = 0;
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[b[i] >> 4];
        out[j++] = hex[b[i] & 15];
    }
    out[j] = '\0';
}

/* ---- the core ------------------------------------------------------------------------ */

typedef struct {
    bool used;
    iotc_shadow_op op;
    uint64_t deadline;
    uint64_t seq; /* begin order: the earlier of two equal deadlines expires first */
    void *user;
    char token[IOTC_SHADOW_TOKEN_MAX + 1];
} slot;

struct iotc_shadow_core {
    char *thing;
    char *name; /* NULL: classic */
    char *topics[IOTC_SHADOW_NOPS][NSFX];
    slot *slots;
    size_t max, n;
    uint64_t counter;
    bool has_version;
    uint64_t version;
};

int iotc_shadow_core_new(const char *thing, const char *name, size_t max_pending, iotc_shadow_core **out,
                         const char **why)
{
    if (why)
        *why = "";
    if (!out)
        return IOTC_ERR_INVALID_ARG;
    *out = NULL;
    if (!thing) {
        if (why)
            *why = "no thing name";
        return IOTC_ERR_INVALID_ARG;
    }
    if (iotc_shadow_check_thing(thing, strlen(thing), why) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    bool named = name && name[0];
    if (named && iotc_shadow_check_name(name, strlen(name), why) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    if (max_pending == 0)
        max_pending = IOTC_SHADOW_DEFAULT_MAX_PENDING;
    iotc_shadow_core *sc = calloc(1, sizeof *sc);
    if (!sc)
        return IOTC_ERR_NOMEM;
    sc->max = max_pending;
    bool ok = (sc->thing = strdup(thing)) != NULL && (!named || (sc->name = strdup(name)) != NULL) &&
              (sc->slots = calloc(max_pending, sizeof *sc->slots)) != NULL;
    for (int op = 0; ok && op < IOTC_SHADOW_NOPS; op++) {
        for (size_t sfx = 0; ok && sfx < NSFX; sfx++) {
            if (!sfx_valid((iotc_shadow_op)op, (iotc_shadow_sfx)sfx))
                continue;
            char buf[IOTC_SHADOW_TOPIC_MAX + 1];
            ok = iotc_shadow_topic(buf, sizeof buf, thing, sc->name, (iotc_shadow_op)op, (iotc_shadow_sfx)sfx) > 0 &&
                 (sc->topics[op][sfx] = strdup(buf)) != NULL;
        }
    }
    if (!ok) {
        iotc_shadow_core_free(sc);
        if (why)
            *why = "out of memory";
        return IOTC_ERR_NOMEM;
    }
    *out = sc;
    return IOTC_OK;
}

void iotc_shadow_core_free(iotc_shadow_core *sc)
{
    if (!sc)
        return;
    for (int op = 0; op < IOTC_SHADOW_NOPS; op++)
        for (size_t sfx = 0; sfx < NSFX; sfx++)
            free(sc->topics[op][sfx]);
    free(sc->slots);
    free(sc->thing);
    free(sc->name);
    free(sc);
}

const char *iotc_shadow_core_topic(const iotc_shadow_core *sc, iotc_shadow_op op, iotc_shadow_sfx sfx)
{
    if (!sc || !sfx_valid(op, sfx))
        return NULL;
    return sc->topics[op][sfx];
}

bool iotc_shadow_core_is_classic(const iotc_shadow_core *sc)
{
    return sc && !sc->name;
}

size_t iotc_shadow_core_pending(const iotc_shadow_core *sc)
{
    return sc ? sc->n : 0;
}

size_t iotc_shadow_core_max_pending(const iotc_shadow_core *sc)
{
    return sc ? sc->max : 0;
}

static slot *find_token(const iotc_shadow_core *sc, const char *token)
{
    for (size_t i = 0; i < sc->max; i++)
        if (sc->slots[i].used && strcmp(sc->slots[i].token, token) == 0)
            return &sc->slots[i];
    return NULL;
}

bool iotc_shadow_core_is_pending(const iotc_shadow_core *sc, const char *token)
{
    return sc && token && find_token(sc, token) != NULL;
}

/* ---- the update payload ------------------------------------------------------------- */

/* A small scanner over JSON that cJSON has already accepted: it only needs
 * to find where each top-level member begins and ends, so that the payload
 * can be rebuilt from the caller's own bytes. */
static size_t skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

static size_t skip_string(const char *p, size_t i, size_t n)
{
    for (i++; i < n && p[i] != '"'; i++)
        if (p[i] == '\\')
            i++;
    return i < n ? i + 1 : n;
}

static size_t skip_value(const char *p, size_t i, size_t n)
{
    if (i >= n)
        return n;
    if (p[i] == '"')
        return skip_string(p, i, n);
    if (p[i] == '{' || p[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char ch = p[i];
            if (ch == '"') {
                i = skip_string(p, i, n);
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return n;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' &&
           p[i] != '\n')
        i++;
    return i;
}

static bool only_ws(const char *p, size_t n)
{
    return skip_ws(p, 0, n) == n;
}

/* Parses `len` bytes as one JSON value, nothing but whitespace after it. */
static cJSON *parse_exact(const char *p, size_t len)
{
    if (!p || len == 0)
        return NULL;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(p, len, &end, 0);
    if (doc && (!end || end < p || !only_ws(end, len - (size_t)(end - p)))) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

#define TOKEN_KEY "clientToken"

/* `{"clientToken":"<token>"` followed by every top-level member of the
 * caller's object except its own clientToken(s), each copied byte for byte. */
static int build_update(const char *json, size_t len, const cJSON *root, const char *token, char **out,
                        size_t *out_len)
{
    size_t tl = strlen(token);
    size_t cap = sizeof "{\"" TOKEN_KEY "\":\"\"}" + tl + len + 1;
    char *buf = malloc(cap);
    if (!buf)
        return IOTC_ERR_NOMEM;
    size_t o = (size_t)snprintf(buf, cap, "{\"" TOKEN_KEY "\":\"%s\"", token);
    size_t i = skip_ws(json, 0, len);
    i++; /* '{' */
    i = skip_ws(json, i, len);
    const cJSON *child = root->child;
    while (i < len && json[i] == '"') {
        size_t start = i;
        i = skip_string(json, i, len);
        i = skip_ws(json, i, len);
        i++; /* ':' */
        i = skip_ws(json, i, len);
        i = skip_value(json, i, len);
        /* cJSON keeps the members in document order, duplicates included,
         * and has decoded the key (escapes and all): compare that. */
        if (!child) {
            free(buf);
            return IOTC_ERR_INTERNAL;
        }
        if (!child->string || strcmp(child->string, TOKEN_KEY) != 0) {
            buf[o++] = ',';
            memcpy(buf + o, json + start, i - start);
            o += i - start;
        }
        child = child->next;
        i = skip_ws(json, i, len);
        if (i < len && json[i] == ',')
            i = skip_ws(json, i + 1, len);
    }
    if (child) {
        free(buf);
        return IOTC_ERR_INTERNAL;
    }
    buf[o++] = '}';
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return IOTC_OK;
}

/* What cJSON lets through and JSON does not: control bytes as whitespace
 * (cJSON skips every byte <= 32) and raw inside strings.  The payload keeps
 * the caller's bytes, so they would reach AWS; and the scanner above knows
 * only JSON's four whitespace bytes. */
static bool control_bytes_ok(const char *p, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (in_str) {
            if (ch < 0x20)
                return false;
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') {
            return false;
        }
    }
    return true;
}

static int check_update(const char *json, size_t len, cJSON **root, const char **why)
{
    size_t bad = 0;
    if (!iotc_mqtt_utf8_valid((const uint8_t *)json, len, &bad)) {
        *why = "the update document is not valid UTF-8 (AWS answers 415)";
        return IOTC_ERR_INVALID_ARG;
    }
    cJSON *doc = control_bytes_ok(json, len) ? parse_exact(json, len) : NULL;
    if (!doc) {
        *why = "the update document is not JSON";
        return IOTC_ERR_INVALID_ARG;
    }
    if (!cJSON_IsObject(doc)) {
        *why = "the update document is not a JSON object";
        cJSON_Delete(doc);
        return IOTC_ERR_INVALID_ARG;
    }
    bool has_state = false;
    for (const cJSON *m = doc->child; m; m = m->next) {
        if (!m->string || strcmp(m->string, "state") != 0)
            continue;
        has_state = true;
        if (!cJSON_IsObject(m) && !cJSON_IsNull(m)) {
            *why = "the update document's state is neither an object nor null";
            cJSON_Delete(doc);
            return IOTC_ERR_INVALID_ARG;
        }
    }
    if (!has_state) {
        *why = "the update document has no state (AWS requires {\"state\":{...}})";
        cJSON_Delete(doc);
        return IOTC_ERR_INVALID_ARG;
    }
    *root = doc;
    return IOTC_OK;
}

static slot *free_slot(iotc_shadow_core *sc)
{
    for (size_t i = 0; i < sc->max; i++)
        if (!sc->slots[i].used)
            return &sc->slots[i];
    return NULL;
}

int iotc_shadow_core_begin(iotc_shadow_core *sc, iotc_shadow_op op, const char *json, size_t json_len,
                           const uint8_t random[IOTC_SHADOW_RANDOM_BYTES], uint64_t now_ms, uint32_t timeout_ms,
                           void *user, iotc_shadow_request *out, const char **why)
{
    const char *w = "";
    if (why)
        *why = w;
    if (!sc || !random || !out || (unsigned)op >= IOTC_SHADOW_NOPS) {
        if (why)
            *why = "a NULL argument or an unknown operation";
        return IOTC_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    if (timeout_ms == 0) {
        if (why)
            *why = "a request needs a timeout (a lost response would hold its slot forever)";
        return IOTC_ERR_INVALID_ARG;
    }
    cJSON *root = NULL;
    if (op == IOTC_SHADOW_OP_UPDATE) {
        if (!json) {
            if (why)
                *why = "an update needs a document";
            return IOTC_ERR_INVALID_ARG;
        }
        int rc = check_update(json, json_len, &root, &w);
        if (rc != IOTC_OK) {
            if (why)
                *why = w;
            return rc;
        }
    } else if (json) {
        if (why)
            *why = "get and delete take no document";
        return IOTC_ERR_INVALID_ARG;
    }
    slot *s = free_slot(sc);
    if (!s) {
        cJSON_Delete(root);
        if (why)
            *why = "too many shadow requests pending (AWS allows 10 in flight)";
        return IOTC_ERR_BUSY;
    }
    /* A counter mixed into the random bytes: distinct counters give
     * distinct tokens even from a broken random source, and a late answer to
     * an old request can never match a new one. */
    char token[IOTC_SHADOW_TOKEN_LEN + 1];
    for (int tries = 0;; tries++) {
        uint8_t b[IOTC_SHADOW_RANDOM_BYTES];
        memcpy(b, random, sizeof b);
        uint64_t ctr = ++sc->counter;
        for (int k = 0; k < 8; k++)
            b[15 - k] ^= (uint8_t)(ctr >> (8 * k));
        iotc_shadow_uuid4(b, token);
        if (!find_token(sc, token))
            break;
        if (tries == 64) { /* only an adversarial `random` gets here */
            cJSON_Delete(root);
            if (why)
                *why = "could not make a unique clientToken";
            return IOTC_ERR_INTERNAL;
        }
    }
    int rc;
    if (root) {
        rc = build_update(json, json_len, root, token, &out->payload, &out->payload_len);
        cJSON_Delete(root);
    } else {
        size_t cap = sizeof "{\"" TOKEN_KEY "\":\"\"}" + IOTC_SHADOW_TOKEN_LEN;
        out->payload = malloc(cap);
        rc = out->payload ? IOTC_OK : IOTC_ERR_NOMEM;
        if (rc == IOTC_OK)
            out->payload_len = (size_t)snprintf(out->payload, cap, "{\"" TOKEN_KEY "\":\"%s\"}", token);
    }
    if (rc != IOTC_OK) {
        out->payload = NULL;
        out->payload_len = 0;
        if (why)
            *why = rc == IOTC_ERR_NOMEM ? "out of memory" : "internal error building the payload";
        return rc;
    }
    memcpy(out->token, token, sizeof token);
    s->used = true;
    s->op = op;
    s->deadline = UINT64_MAX - now_ms < timeout_ms ? UINT64_MAX : now_ms + timeout_ms;
    s->seq = sc->counter;
    s->user = user;
    memcpy(s->token, token, sizeof token);
    sc->n++;
    return IOTC_OK;
}

static void take_slot(iotc_shadow_core *sc, slot *s, iotc_shadow_taken *out)
{
    if (out) {
        out->user = s->user;
        out->op = s->op;
        memcpy(out->token, s->token, sizeof out->token);
    }
    memset(s, 0, sizeof *s);
    sc->n--;
}

bool iotc_shadow_core_take(iotc_shadow_core *sc, const char *token, iotc_shadow_taken *out)
{
    if (!sc || !token)
        return false;
    slot *s = find_token(sc, token);
    if (!s)
        return false;
    take_slot(sc, s, out);
    return true;
}

bool iotc_shadow_core_take_any(iotc_shadow_core *sc, iotc_shadow_taken *out)
{
    if (!sc)
        return false;
    for (size_t i = 0; i < sc->max; i++) {
        if (sc->slots[i].used) {
            take_slot(sc, &sc->slots[i], out);
            return true;
        }
    }
    return false;
}

static slot *earliest(const iotc_shadow_core *sc)
{
    slot *best = NULL;
    for (size_t i = 0; i < sc->max; i++) {
        slot *s = &sc->slots[i];
        if (s->used && (!best || s->deadline < best->deadline ||
                        (s->deadline == best->deadline && s->seq < best->seq)))
            best = s;
    }
    return best;
}

bool iotc_shadow_core_expire(iotc_shadow_core *sc, uint64_t now_ms, iotc_shadow_taken *out)
{
    if (!sc)
        return false;
    slot *s = earliest(sc);
    if (!s || s->deadline > now_ms)
        return false;
    take_slot(sc, s, out);
    return true;
}

uint64_t iotc_shadow_core_next_deadline(const iotc_shadow_core *sc)
{
    const slot *s = sc ? earliest(sc) : NULL;
    return s ? s->deadline : UINT64_MAX;
}

bool iotc_shadow_core_version(const iotc_shadow_core *sc, uint64_t *version)
{
    if (!sc || !sc->has_version)
        return false;
    if (version)
        *version = sc->version;
    return true;
}

/* ---- what arrives ------------------------------------------------------------------- */

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_u64(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0))
        return false;
    uint64_t v = (uint64_t)d;
    if ((double)v != d)
        return false;
    *out = v;
    return true;
}

/* AWS's shadow `code` is an integer (Jobs uses a string: not this). */
static int json_code(const cJSON *item)
{
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    if (!(d >= (double)INT_MIN && d <= (double)INT_MAX))
        return 0;
    int v = (int)d;
    return (double)v == d ? v : 0;
}

static bool ours(const iotc_shadow_core *sc, const iotc_shadow_topic_parts *t)
{
    if (strlen(sc->thing) != t->thing_len || memcmp(sc->thing, t->thing, t->thing_len) != 0)
        return false;
    if (!sc->name)
        return t->name == NULL;
    return t->name && strlen(sc->name) == t->name_len && memcmp(sc->name, t->name, t->name_len) == 0;
}

/* The version rule for the streams: older than the newest seen is dropped,
 * equal passes (§4.4: the v1 SDK's `>` lost the delta that follows its own
 * update/accepted). */
static bool stream_fresh(iotc_shadow_core *sc, uint64_t v)
{
    if (sc->has_version && v < sc->version)
        return false;
    sc->has_version = true;
    sc->version = v;
    return true;
}

static void ignore(iotc_shadow_event *ev, iotc_shadow_ignore why)
{
    ev->type = IOTC_SHADOW_EV_IGNORED;
    ev->ignored = why;
}

void iotc_shadow_core_input(iotc_shadow_core *sc, const char *topic, size_t topic_len, const uint8_t *payload,
                            size_t len, iotc_shadow_event *ev)
{
    if (!ev)
        return;
    memset(ev, 0, sizeof *ev);
    ev->message = "";
    iotc_shadow_topic_parts t;
    if (!sc || !topic || !iotc_shadow_topic_parse(topic, topic_len, &t) || !ours(sc, &t) ||
        t.sfx == IOTC_SHADOW_SFX_REQUEST) {
        ignore(ev, IOTC_SHADOW_IGN_TOPIC);
        return;
    }
    cJSON *doc = payload ? parse_exact((const char *)payload, len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        ignore(ev, IOTC_SHADOW_IGN_JSON);
        return;
    }
    ev->doc_ = doc;
    ev->op = t.op;
    if (t.sfx == IOTC_SHADOW_SFX_DELTA || t.sfx == IOTC_SHADOW_SFX_DOCUMENTS) {
        const cJSON *vitem = cJSON_GetObjectItemCaseSensitive(doc, "version");
        if (t.sfx == IOTC_SHADOW_SFX_DOCUMENTS)
            vitem = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "current"), "version");
        uint64_t v = 0;
        if (!json_u64(vitem, &v)) {
            ignore(ev, IOTC_SHADOW_IGN_NO_VERSION);
            return;
        }
        ev->has_version = true;
        ev->version = v;
        if (!stream_fresh(sc, v)) {
            ignore(ev, IOTC_SHADOW_IGN_STALE);
            return;
        }
        ev->type = t.sfx == IOTC_SHADOW_SFX_DELTA ? IOTC_SHADOW_EV_DELTA : IOTC_SHADOW_EV_DOCUMENTS;
        return;
    }
    /* accepted or rejected: only answers to our own pending requests count;
     * everyone subscribed to these topics receives everyone's answers. */
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, TOKEN_KEY);
    if (!cJSON_IsString(tok) || !tok->valuestring) {
        ignore(ev, IOTC_SHADOW_IGN_NO_TOKEN);
        return;
    }
    slot *s = find_token(sc, tok->valuestring);
    if (!s) {
        ignore(ev, IOTC_SHADOW_IGN_UNKNOWN_TOKEN);
        return;
    }
    if (s->op != t.op) {
        ignore(ev, IOTC_SHADOW_IGN_OP_MISMATCH);
        return;
    }
    iotc_shadow_taken tk;
    take_slot(sc, s, &tk);
    ev->type = IOTC_SHADOW_EV_RESPONSE;
    ev->user = tk.user;
    memcpy(ev->token, tk.token, sizeof ev->token);
    uint64_t v = 0;
    if (json_u64(cJSON_GetObjectItemCaseSensitive(doc, "version"), &v)) {
        ev->has_version = true;
        ev->version = v;
    }
    if (t.sfx == IOTC_SHADOW_SFX_ACCEPTED) {
        ev->status = IOTC_OK;
        if (t.op == IOTC_SHADOW_OP_DELETE) {
            /* The shadow is gone; a re-created one may start its versions
             * again (after 48 h, §1.4.5), so nothing older is stale now. */
            sc->has_version = false;
            sc->version = 0;
        } else if (ev->has_version && (!sc->has_version || v > sc->version)) {
            sc->has_version = true;
            sc->version = v;
        }
    } else {
        ev->status = IOTC_ERR_REJECTED;
        ev->code = json_code(cJSON_GetObjectItemCaseSensitive(doc, "code"));
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "message");
        if (cJSON_IsString(msg) && msg->valuestring)
            ev->message = msg->valuestring;
    }
}

void iotc_shadow_event_clear(iotc_shadow_event *ev)
{
    if (!ev)
        return;
    cJSON_Delete(ev->doc_);
    ev->doc_ = NULL;
    ev->message = "";
}
