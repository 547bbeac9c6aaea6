/*
 * fuzz/fuzz_shadow.c: iotsim's Device Shadow service (broker-sim/src/svc/
 * sim_shadow.h), a sequence of requests into one store.
 *
 * Input layout:
 *   [cfg] [window] then records [op] [len] [payload: len bytes]
 *   cfg bit 0: delta_when_unchanged; bit 1: version_on_noop; bit 2:
 *     keep_empty_parents; bits 3-4: max_state_bytes 8192, 64, 256, 1024;
 *     bits 5-6: max_depth 6, 1, 2, 3; bit 7: max_shadows 3 and
 *     max_client_token 8 (else 100000 and 64).  Small limits so that 413,
 *     429, depth and token errors are reached by short inputs.
 *   window: recreate_window_s, 0..255 seconds.
 *   op bits 0-1: 0 get, 1 update, 2 delete, 3 other (below); bits 2-4: the
 *     shadow, one of TARGETS; bits 5-7: the clock step before the request
 *     (0, 1, 10, 100, window, window + 1, 1000, 100000 s).
 *   len: 0..254 bytes, or 255 followed by a 2-byte big-endian length; a
 *     payload cut short by the end of the input is what is left.
 *   op 3, by the target bits: 0 save and load into a fresh store, which must
 *     save the same text; 1 load the payload into a scratch store (refused:
 *     the scratch store stays empty; accepted: saving it is a fixed point);
 *     2 sim_shadow_parse_topic on the payload (accepted: building the topic
 *     back from the names gives the same bytes); 3-7 a document check of the
 *     shadow.
 *
 * Checks, on every response: the topic is the request's prefix, operation
 * and a kind allowed at that place (accepted or rejected first; after an
 * accepted update, delta (optional) then documents; nothing else); the
 * payload is exactly its length and a JSON object; accepted responses carry
 * an integer version and the request time; rejected ones the returned code
 * and a message.  Per request: the code is one the API lists (never 500:
 * nothing fails to allocate here); a shadow's version never decreases while
 * it exists, and moves by exactly 1 per update with version_on_noop; get and
 * delete agree with what the harness saw; documents.previous is null exactly
 * when the update created the shadow; 409 only for a request with a version.
 * After each request on a shadow: its stored desired + reported are at most
 * max_state_bytes (compact), its metadata mirrors its state, its delta only
 * names desired keys; live and remembered shadows stay within max_shadows.
 * At the end: a save/load round trip is a fixed point.  Nothing may leak
 * (ASan's leak check).
 *
 * Seeds: python3 fuzz/make-shadow-seeds.py (fuzz/corpus/shadow/).
 * FUZZ_SHADOW_LOG=1 prints each request and its result.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "sim_shadow.h"

#define NTARGETS 8

static const char *const THINGS[NTARGETS] = {
    "T", "T", "T", "U", "U",
    ("L234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678"), /* 128 bytes */
    "T", "V:_-"};
static const char *const NAMES[NTARGETS] = {
    "", "a", "$b", "", "a", "", "N234567890123456789012345678901234567890123456789012345678901234", "$"};

#define MAX_MSGS 4

typedef struct {
    int n;
    bool overflow;
    char topic[MAX_MSGS][SIM_SHADOW_TOPIC_MAX + 40];
    cJSON *json[MAX_MSGS];
} seen;

static void seen_clear(seen *m)
{
    for (int i = 0; i < m->n; i++)
        cJSON_Delete(m->json[i]);
    memset(m, 0, sizeof *m);
}

static void on_emit(void *ctx, const char *topic, const char *payload, size_t len)
{
    seen *m = ctx;
    FZ_EXPECT("emit", topic && payload);
    FZ_EXPECT(topic, strlen(payload) == len);
    FZ_EXPECT(topic, strlen(topic) <= SIM_SHADOW_TOPIC_MAX);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(payload, &end, true);
    if (!j || !cJSON_IsObject(j))
        fprintf(stderr, "payload on %s: %s\n", topic, payload);
    FZ_EXPECT(topic, j != NULL);
    FZ_EXPECT(topic, cJSON_IsObject(j));
    if (m->n == MAX_MSGS) {
        m->overflow = true;
        cJSON_Delete(j);
        return;
    }
    snprintf(m->topic[m->n], sizeof m->topic[m->n], "%s", topic);
    m->json[m->n++] = j;
}

static bool whole_number(const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
        return false;
    *out = d;
    return true;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* m mirrors v as the metadata of §1.3: objects key for key, arrays element
 * for element, a leaf as {"timestamp": n}. */
static bool mirrors(const cJSON *v, const cJSON *m)
{
    if (cJSON_IsObject(v)) {
        if (!cJSON_IsObject(m) || cJSON_GetArraySize(v) != cJSON_GetArraySize(m))
            return false;
        for (const cJSON *c = v->child; c; c = c->next)
            if (!mirrors(c, get(m, c->string)))
                return false;
        return true;
    }
    if (cJSON_IsArray(v)) {
        if (!cJSON_IsArray(m) || cJSON_GetArraySize(v) != cJSON_GetArraySize(m))
            return false;
        for (const cJSON *x = v->child, *y = m->child; x; x = x->next, y = y->next)
            if (!mirrors(x, y))
                return false;
        return true;
    }
    double ts;
    return cJSON_IsObject(m) && cJSON_GetArraySize(m) == 1 && whole_number(get(m, "timestamp"), &ts);
}

/* Every key of the delta is desired; nested objects the same way. */
static bool delta_within(const cJSON *delta, const cJSON *desired)
{
    if (!cJSON_IsObject(delta) || !cJSON_IsObject(desired))
        return false;
    for (const cJSON *c = delta->child; c; c = c->next) {
        const cJSON *d = get(desired, c->string);
        if (!d)
            return false;
        if (cJSON_IsObject(c) && cJSON_IsObject(d) && !delta_within(c, d))
            return false;
    }
    return true;
}

static size_t compact_len(const cJSON *v)
{
    if (!v)
        return 0;
    char *t = cJSON_PrintUnformatted(v);
    FZ_EXPECT("print", t != NULL);
    size_t n = strlen(t);
    free(t);
    return n;
}

typedef struct {
    sim_shadow_config cfg;
    sim_shadow_store *s;
    uint64_t now;
    bool log; /* FUZZ_SHADOW_LOG=1: each request and its result on stderr */
    bool exists[NTARGETS];
    double version[NTARGETS];
} run;

/* The stored document of target i against the harness's view and the limits. */
static void check_stored(run *r, int i)
{
    char *text = sim_shadow_document(r->s, THINGS[i], NAMES[i], r->now);
    FZ_EXPECT("document", (text != NULL) == r->exists[i]);
    if (!text)
        return;
    cJSON *d = cJSON_Parse(text);
    free(text);
    FZ_EXPECT("document", cJSON_IsObject(d));
    double v, ts;
    FZ_EXPECT("document version", whole_number(get(d, "version"), &v) && v == r->version[i]);
    FZ_EXPECT("document timestamp", whole_number(get(d, "timestamp"), &ts) && ts == (double)r->now);
    FZ_EXPECT("document clientToken", !get(d, "clientToken"));
    const cJSON *st = get(d, "state"), *md = get(d, "metadata");
    FZ_EXPECT("document state", cJSON_IsObject(st) && cJSON_IsObject(md));
    const cJSON *des = get(st, "desired"), *rep = get(st, "reported"), *delta = get(st, "delta");
    FZ_EXPECT("size", compact_len(des) + compact_len(rep) <= r->cfg.max_state_bytes);
    FZ_EXPECT("desired metadata", des ? mirrors(des, get(md, "desired")) : !get(md, "desired"));
    FZ_EXPECT("reported metadata", rep ? mirrors(rep, get(md, "reported")) : !get(md, "reported"));
    FZ_EXPECT("no empty section", (!des || des->child) && (!rep || rep->child));
    FZ_EXPECT("delta", !delta || (delta->child && delta_within(delta, des)));
    for (const cJSON *c = st->child; c; c = c->next)
        FZ_EXPECT("state keys", !strcmp(c->string, "desired") || !strcmp(c->string, "reported") ||
                                    !strcmp(c->string, "delta"));
    cJSON_Delete(d);
    size_t live, gone;
    sim_shadow_stats(r->s, &live, &gone);
    FZ_EXPECT("bounded", live <= r->cfg.max_shadows && gone <= r->cfg.max_shadows);
}

/* Whether the request payload has a top-level "version" (for the 409 check). */
static bool has_version(const uint8_t *p, size_t n)
{
    char *t = malloc(n + 1);
    FZ_EXPECT("malloc", t != NULL);
    memcpy(t, p, n);
    t[n] = '\0';
    cJSON *j = cJSON_ParseWithLength(t, n);
    bool v = cJSON_IsObject(j) && get(j, "version");
    cJSON_Delete(j);
    free(t);
    return v;
}

static void request(run *r, int i, sim_shadow_op op, const uint8_t *p, size_t n)
{
    sim_shadow_req req;
    memset(&req, 0, sizeof req);
    snprintf(req.thing, sizeof req.thing, "%s", THINGS[i]);
    snprintf(req.name, sizeof req.name, "%s", NAMES[i]);
    req.op = op;
    char prefix[SIM_SHADOW_TOPIC_MAX + 1], why[128];
    FZ_EXPECT("prefix", sim_shadow_topic(req.thing, req.name, "", prefix, sizeof prefix) > 0);

    seen m;
    memset(&m, 0, sizeof m);
    int rc = sim_shadow_handle(r->s, &req, p, n, r->now, on_emit, &m, why, sizeof why);
    const char *opn = sim_shadow_op_name(op);
    if (r->log)
        fprintf(stderr, "t=%llu %s %s/%s [%zu] -> %d %s (%d messages)\n", (unsigned long long)r->now, opn, THINGS[i],
                NAMES[i], n, rc, why, m.n);
    FZ_EXPECT(why, rc == 200 || rc == 400 || rc == 404 || rc == 409 || rc == 413 || rc == 415 || rc == 429);
    FZ_EXPECT(why, !m.overflow && m.n >= 1);
    char want[SIM_SHADOW_TOPIC_MAX + 40];
    snprintf(want, sizeof want, "%s/%s/%s", prefix, opn, rc == 200 ? "accepted" : "rejected");
    FZ_EXPECT(want, strcmp(m.topic[0], want) == 0);
    const cJSON *first = m.json[0];
    double ts, v;
    FZ_EXPECT(want, whole_number(get(first, "timestamp"), &ts) && ts == (double)r->now);
    const cJSON *tok = get(first, "clientToken");
    FZ_EXPECT(want, !tok || (cJSON_IsString(tok) && strlen(tok->valuestring) <= r->cfg.max_client_token));

    if (rc != 200) {
        FZ_EXPECT(want, m.n == 1);
        FZ_EXPECT(want, whole_number(get(first, "code"), &v) && v == rc);
        FZ_EXPECT(want, cJSON_IsString(get(first, "message")));
        /* why is a 128-byte buffer: the message may be longer. */
        FZ_EXPECT(why, strncmp(get(first, "message")->valuestring, why, strlen(why)) == 0);
        if (rc == 404)
            FZ_EXPECT("404 for an existing shadow", !r->exists[i] && op != SIM_SHADOW_UPDATE);
        if (rc == 409)
            FZ_EXPECT("409 without a version", op == SIM_SHADOW_UPDATE && has_version(p, n));
        if (rc == 429)
            FZ_EXPECT("429 for an existing shadow", !r->exists[i]);
        seen_clear(&m);
        check_stored(r, i);
        return;
    }

    FZ_EXPECT(want, whole_number(get(first, "version"), &v));
    FZ_EXPECT(why, strcmp(why, "accepted") == 0);
    switch (op) {
    case SIM_SHADOW_GET:
        FZ_EXPECT("get", m.n == 1 && r->exists[i] && v == r->version[i]);
        break;
    case SIM_SHADOW_DELETE:
        FZ_EXPECT("delete", m.n == 1 && r->exists[i] && v == r->version[i]);
        r->exists[i] = false;
        break;
    case SIM_SHADOW_UPDATE: {
        FZ_EXPECT("update", m.n == 2 || m.n == 3);
        FZ_EXPECT("update version", v >= 1);
        if (r->exists[i]) {
            FZ_EXPECT("version decreased", v >= r->version[i]);
            FZ_EXPECT("version step", v <= r->version[i] + 1);
            if (r->cfg.version_on_noop)
                FZ_EXPECT("version_on_noop", v == r->version[i] + 1);
        }
        FZ_EXPECT("metadata", get(first, "metadata") != NULL && get(first, "state") != NULL);
        if (m.n == 3) {
            snprintf(want, sizeof want, "%s/update/delta", prefix);
            FZ_EXPECT(want, strcmp(m.topic[1], want) == 0);
            double dv;
            const cJSON *ds = get(m.json[1], "state");
            FZ_EXPECT(want, whole_number(get(m.json[1], "version"), &dv) && dv == v);
            FZ_EXPECT(want, cJSON_IsObject(ds) && ds->child && cJSON_IsObject(get(m.json[1], "metadata")));
        }
        const cJSON *docs = m.json[m.n - 1];
        snprintf(want, sizeof want, "%s/update/documents", prefix);
        FZ_EXPECT(want, strcmp(m.topic[m.n - 1], want) == 0);
        const cJSON *prev = get(docs, "previous"), *cur = get(docs, "current");
        double cv, pv;
        FZ_EXPECT(want, cJSON_IsObject(cur) && whole_number(get(cur, "version"), &cv) && cv == v);
        if (r->exists[i])
            FZ_EXPECT(want, cJSON_IsObject(prev) && whole_number(get(prev, "version"), &pv) && pv == r->version[i]);
        else
            FZ_EXPECT(want, cJSON_IsNull(prev));
        const cJSON *cs = get(cur, "state");
        FZ_EXPECT(want, cJSON_IsObject(cs) && !get(cs, "delta"));
        FZ_EXPECT(want, compact_len(get(cs, "desired")) + compact_len(get(cs, "reported")) <= r->cfg.max_state_bytes);
        r->exists[i] = true;
        r->version[i] = v;
        break;
    }
    }
    seen_clear(&m);
    check_stored(r, i);
}

static void check_topic(const uint8_t *p, size_t n)
{
    sim_shadow_req req;
    if (!sim_shadow_parse_topic((const char *)p, n, &req))
        return;
    char back[SIM_SHADOW_TOPIC_MAX + 8], suffix[16];
    snprintf(suffix, sizeof suffix, "/%s", sim_shadow_op_name(req.op));
    size_t k = sim_shadow_topic(req.thing, req.name, suffix, back, sizeof back);
    FZ_EXPECT("parse_topic", k == n && memcmp(back, p, n) == 0);
}

/* A saved store loads into a fresh one that saves the same text. */
static void check_roundtrip(const sim_shadow_config *cfg, const char *saved)
{
    sim_shadow_store *t = sim_shadow_store_new(cfg);
    FZ_EXPECT("new", t != NULL);
    char why[256];
    bool ok = sim_shadow_load(t, saved, why, sizeof why);
    if (!ok)
        fprintf(stderr, "load: %s\n%s\n", why, saved);
    FZ_EXPECT("reload", ok);
    char *again = sim_shadow_save(t);
    FZ_EXPECT("resave", again && strcmp(again, saved) == 0);
    free(again);
    sim_shadow_store_free(t);
}

static void check_load(const sim_shadow_config *cfg, const uint8_t *p, size_t n)
{
    char *text = malloc(n + 1);
    FZ_EXPECT("malloc", text != NULL);
    memcpy(text, p, n);
    text[n] = '\0';
    sim_shadow_store *t = sim_shadow_store_new(cfg);
    FZ_EXPECT("new", t != NULL);
    char *empty = sim_shadow_save(t);
    char why[256] = "";
    if (sim_shadow_load(t, text, why, sizeof why)) {
        char *saved = sim_shadow_save(t);
        FZ_EXPECT("save", saved != NULL);
        check_roundtrip(cfg, saved);
        free(saved);
    } else {
        FZ_EXPECT("why", why[0] != '\0');
        char *after = sim_shadow_save(t);
        FZ_EXPECT("unchanged", after && empty && strcmp(after, empty) == 0);
        free(after);
    }
    free(empty);
    free(text);
    sim_shadow_store_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    run r;
    memset(&r, 0, sizeof r);
    sim_shadow_config_init(&r.cfg);
    uint8_t c = data[0];
    static const uint32_t sizes[4] = {8192, 64, 256, 1024}, depths[4] = {6, 1, 2, 3};
    r.cfg.delta_when_unchanged = c & 1;
    r.cfg.version_on_noop = (c >> 1) & 1;
    r.cfg.keep_empty_parents = (c >> 2) & 1;
    r.cfg.max_state_bytes = sizes[(c >> 3) & 3];
    r.cfg.max_depth = depths[(c >> 5) & 3];
    if (c & 0x80) {
        r.cfg.max_shadows = 3;
        r.cfg.max_client_token = 8;
    }
    r.cfg.recreate_window_s = data[1];
    r.s = sim_shadow_store_new(&r.cfg);
    FZ_EXPECT("new", r.s != NULL);
    r.now = 1000000;
    r.log = getenv("FUZZ_SHADOW_LOG") != NULL;

    const uint64_t steps[8] = {0, 1, 10, 100, r.cfg.recreate_window_s, (uint64_t)r.cfg.recreate_window_s + 1, 1000,
                               100000};
    size_t pos = 2;
    while (pos < size) {
        uint8_t op = data[pos++];
        size_t n = 0;
        if (pos < size) {
            n = data[pos++];
            if (n == 255) {
                n = 0;
                for (int k = 0; k < 2 && pos < size; k++)
                    n = n << 8 | data[pos++];
            }
        }
        if (n > size - pos)
            n = size - pos;
        const uint8_t *p = data + pos;
        pos += n;
        int target = (op >> 2) & 7;
        r.now += steps[op >> 5];
        /* A deletion remembered past its window is forgotten; the harness
         * does not need to know: it tracks only live shadows. */
        switch (op & 3) {
        case 0:
            request(&r, target, SIM_SHADOW_GET, p, n);
            break;
        case 1:
            request(&r, target, SIM_SHADOW_UPDATE, p, n);
            break;
        case 2:
            request(&r, target, SIM_SHADOW_DELETE, p, n);
            break;
        default:
            if (target == 0) {
                char *saved = sim_shadow_save(r.s);
                FZ_EXPECT("save", saved != NULL);
                check_roundtrip(&r.cfg, saved);
                free(saved);
            } else if (target == 1) {
                check_load(&r.cfg, p, n);
            } else if (target == 2) {
                check_topic(p, n);
            } else {
                for (int i = 0; i < NTARGETS; i++)
                    check_stored(&r, i);
                char *l = sim_shadow_list(r.s);
                cJSON *a = cJSON_Parse(l);
                free(l);
                size_t live = 0;
                for (int i = 0; i < NTARGETS; i++)
                    live += r.exists[i];
                FZ_EXPECT("list", cJSON_IsArray(a) && (size_t)cJSON_GetArraySize(a) == live);
                cJSON_Delete(a);
            }
            break;
        }
    }
    char *saved = sim_shadow_save(r.s);
    FZ_EXPECT("save", saved != NULL);
    check_roundtrip(&r.cfg, saved);
    free(saved);
    sim_shadow_store_free(r.s);
    return 0;
}
