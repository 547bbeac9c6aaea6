/* sim_shadow.c: see sim_shadow.h.  Section numbers refer to
 * ../shared/reference/aws-services.md. */
#include "sim_shadow.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h" /* iotc_mqtt_utf8_valid: the codec's strict UTF-8 check */
#include "sim_map.h"

/* §1.5 [DOC] messages.  AWS's "documented" typo is kept on purpose. */
#define MSG_ENCODING "Unsupported documented encoding; supported encoding is UTF-8"
#define MSG_JSON "Invalid JSON"
#define MSG_TOKEN "Invalid clientToken"
#define MSG_NO_STATE "Missing required node: state"
#define MSG_STATE_OBJ "State node must be an object"
#define MSG_DESIRED_OBJ "Desired node must be an object"
#define MSG_REPORTED_OBJ "Reported node must be an object"
#define MSG_VERSION "Invalid version"
#define MSG_CONFLICT "Version conflict"
#define MSG_TOO_BIG "The payload exceeds the maximum size allowed"
#define MSG_INTERNAL "Internal service failure"
/* Not AWS's: the simulator's own max_shadows limit (sim_shadow.h). */
#define MSG_TOO_MANY "Too many shadows"

/* Versions and timestamps travel as JSON numbers, i.e. doubles: above 2^53
 * they would no longer be exact. */
#define MAX_EXACT 9007199254740992.0

static const char *const SECTION[2] = {"desired", "reported"};

/* ---- allocation ---------------------------------------------------------------
 * Through cJSON's hooks (malloc and free unless someone installs others), so
 * that a test that makes cJSON's allocator fail reaches this file's failure
 * paths too. */

static void *xmalloc(size_t n)
{
    return cJSON_malloc(n ? n : 1);
}

static void xfree(void *p)
{
    if (p)
        cJSON_free(p);
}

/* ---- records and the store ------------------------------------------------ */

typedef struct rec {
    struct rec *prev, *next; /* the deletion list, oldest first, while !exists */
    char thing[SIM_SHADOW_THING_MAX + 1];
    char name[SIM_SHADOW_NAME_MAX + 1]; /* "" for the classic shadow */
    bool exists;                        /* false: only the memory of a deletion */
    uint64_t version;                   /* the current one, or the deleted one */
    uint64_t deleted_at;
    /* Compact JSON objects, NULL when the section is absent: desired,
     * reported, and their metadata. */
    char *sec[2];
    char *meta[2];
} rec;

/* The content that sim_shadow_load() replaces as a whole. */
typedef struct {
    sim_map map; /* "thing" or "thing/name" ('/' is in neither name) -> rec */
    size_t live, gone;
    rec *gone_head, *gone_tail;
} shelf;

struct sim_shadow_store {
    sim_shadow_config cfg;
    shelf sh;
};

void sim_shadow_config_init(sim_shadow_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_state_bytes = 8192;
    cfg->max_depth = 6;
    cfg->max_client_token = 64;
    cfg->delta_when_unchanged = true;
    cfg->version_on_noop = true;
    cfg->keep_empty_parents = true;
    cfg->recreate_window_s = 172800;
    cfg->max_shadows = 100000;
}

const char *sim_shadow_op_name(sim_shadow_op op)
{
    switch (op) {
    case SIM_SHADOW_GET:
        return "get";
    case SIM_SHADOW_UPDATE:
        return "update";
    case SIM_SHADOW_DELETE:
        return "delete";
    }
    return "?";
}

static void rec_clear_state(rec *r)
{
    for (int i = 0; i < 2; i++) {
        xfree(r->sec[i]);
        xfree(r->meta[i]);
        r->sec[i] = r->meta[i] = NULL;
    }
}

static void rec_free(rec *r)
{
    if (!r)
        return;
    rec_clear_state(r);
    xfree(r);
}

static size_t make_key(const char *thing, const char *name, char *buf, size_t buflen)
{
    int n = name[0] ? snprintf(buf, buflen, "%s/%s", thing, name) : snprintf(buf, buflen, "%s", thing);
    return n < 0 ? 0 : (size_t)n;
}

#define KEY_MAX (SIM_SHADOW_THING_MAX + 1 + SIM_SHADOW_NAME_MAX + 1)

static void gone_link(shelf *sh, rec *r)
{
    r->next = NULL;
    r->prev = sh->gone_tail;
    if (sh->gone_tail)
        sh->gone_tail->next = r;
    else
        sh->gone_head = r;
    sh->gone_tail = r;
    sh->gone++;
}

static void gone_unlink(shelf *sh, rec *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        sh->gone_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        sh->gone_tail = r->prev;
    r->prev = r->next = NULL;
    sh->gone--;
}

/* Drops a remembered deletion for good. */
static void forget(shelf *sh, rec *r)
{
    char key[KEY_MAX];
    gone_unlink(sh, r);
    sim_map_del(&sh->map, key, make_key(r->thing, r->name, key, sizeof key));
    rec_free(r);
}

static void shelf_clear(shelf *sh)
{
    size_t i;
    for (sim_map_entry *e = sim_map_first(&sh->map, &i); e; e = sim_map_next(&sh->map, &i, e))
        rec_free(e->value);
    sim_map_free(&sh->map);
    memset(sh, 0, sizeof *sh);
}

sim_shadow_store *sim_shadow_store_new(const sim_shadow_config *cfg)
{
    sim_shadow_store *s = xmalloc(sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    if (cfg)
        s->cfg = *cfg;
    else
        sim_shadow_config_init(&s->cfg);
    sim_map_init(&s->sh.map);
    return s;
}

void sim_shadow_store_free(sim_shadow_store *s)
{
    if (!s)
        return;
    shelf_clear(&s->sh);
    xfree(s);
}

void sim_shadow_stats(const sim_shadow_store *s, size_t *live, size_t *remembered)
{
    if (live)
        *live = s ? s->sh.live : 0;
    if (remembered)
        *remembered = s ? s->sh.gone : 0;
}

/* The re-creation window of §1.4.5: "within 48 hours" is taken to include
 * the 48th hour's last second.  A clock that went back counts as no time. */
static bool expired(const sim_shadow_config *cfg, const rec *r, uint64_t now)
{
    return now > r->deleted_at && now - r->deleted_at > cfg->recreate_window_s;
}

static rec *find_rec(const shelf *sh, const char *thing, const char *name)
{
    char key[KEY_MAX];
    return sim_map_get(&sh->map, key, make_key(thing, name, key, sizeof key));
}

/* The record of a shadow, live or remembered; a memory past its window is
 * forgotten on the way. */
static rec *lookup(sim_shadow_store *s, const char *thing, const char *name, uint64_t now)
{
    rec *r = find_rec(&s->sh, thing, name);
    if (r && !r->exists && expired(&s->cfg, r, now)) {
        forget(&s->sh, r);
        r = NULL;
    }
    return r;
}

/* Deletions are remembered oldest first, so the expired ones are at the head
 * (while the clock goes forward; lookup() catches the others). */
static void purge_expired(sim_shadow_store *s, uint64_t now)
{
    while (s->sh.gone_head && expired(&s->cfg, s->sh.gone_head, now))
        forget(&s->sh, s->sh.gone_head);
}

/* ---- names and topics ----------------------------------------------------- */

/* §1.1 [DOC]: thing names [a-zA-Z0-9:_-]{1,128}; shadow names also allow '$'
 * ([GG] does not, but the API reference's pattern does). */
static bool name_chars_ok(const char *s, size_t n, size_t max, bool dollar)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
                  c == '_' || c == '-' || (dollar && c == '$');
        if (!ok)
            return false;
    }
    return true;
}

static bool thing_ok(const char *s)
{
    return s && name_chars_ok(s, strnlen(s, SIM_SHADOW_THING_MAX + 1), SIM_SHADOW_THING_MAX, false);
}

static bool shadow_name_ok(const char *s) /* a named shadow's name; "" is not one */
{
    return s && name_chars_ok(s, strnlen(s, SIM_SHADOW_NAME_MAX + 1), SIM_SHADOW_NAME_MAX, true);
}

size_t sim_shadow_topic(const char *thing, const char *name, const char *suffix, char *buf, size_t buflen)
{
    if (!name)
        name = "";
    if (!suffix)
        suffix = "";
    if (!buf || !thing_ok(thing) || (name[0] && !shadow_name_ok(name)))
        return 0;
    int n = name[0] ? snprintf(buf, buflen, "$aws/things/%s/shadow/name/%s%s", thing, name, suffix)
                    : snprintf(buf, buflen, "$aws/things/%s/shadow%s", thing, suffix);
    if (n < 0 || (size_t)n >= buflen)
        return 0;
    return (size_t)n;
}

static bool starts(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

bool sim_shadow_parse_topic(const char *topic, size_t len, sim_shadow_req *out)
{
    if (!topic)
        return false;
    const char *p = topic, *end = topic + len;
    if (!starts(p, end, "$aws/things/"))
        return false;
    p += strlen("$aws/things/");
    const char *thing = p;
    while (p < end && *p != '/')
        p++;
    size_t tlen = (size_t)(p - thing);
    if (!name_chars_ok(thing, tlen, SIM_SHADOW_THING_MAX, false) || !starts(p, end, "/shadow/"))
        return false;
    p += strlen("/shadow/");
    const char *name = p;
    size_t nlen = 0;
    if (starts(p, end, "name/")) {
        p += strlen("name/");
        name = p;
        while (p < end && *p != '/')
            p++;
        nlen = (size_t)(p - name);
        if (!name_chars_ok(name, nlen, SIM_SHADOW_NAME_MAX, true) || p == end)
            return false;
        p++;
    }
    /* What is left must be exactly the operation: a response topic
     * (.../get/accepted) is not a request. */
    size_t olen = (size_t)(end - p);
    sim_shadow_op op;
    if (olen == 3 && memcmp(p, "get", 3) == 0)
        op = SIM_SHADOW_GET;
    else if (olen == 6 && memcmp(p, "update", 6) == 0)
        op = SIM_SHADOW_UPDATE;
    else if (olen == 6 && memcmp(p, "delete", 6) == 0)
        op = SIM_SHADOW_DELETE;
    else
        return false;
    if (out) {
        memcpy(out->thing, thing, tlen);
        out->thing[tlen] = '\0';
        memcpy(out->name, name, nlen);
        out->name[nlen] = '\0';
        out->op = op;
    }
    return true;
}

/* ---- JSON helpers --------------------------------------------------------- */

static const char *key_of(const cJSON *c)
{
    return c->string ? c->string : "";
}

static size_t child_count(const cJSON *v)
{
    size_t n = 0;
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next)
        n++;
    return n;
}

/*
 * An object's members sorted by key (ties in document order), for lookups
 * in O(log n): a request may hold thousands of keys, and cJSON's own lookup
 * is a linear scan.  When the array cannot be allocated, lookups fall back
 * to that scan, so building an index never fails.
 */
typedef struct {
    cJSON *item;
    size_t pos;
} kent;

typedef struct {
    const cJSON *obj;
    kent *e;
    size_t n;
    bool sorted;
} kindex;

static int kent_cmp(const void *a, const void *b)
{
    const kent *x = a, *y = b;
    int c = strcmp(key_of(x->item), key_of(y->item));
    if (c)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void kindex_build(kindex *ix, const cJSON *obj)
{
    memset(ix, 0, sizeof *ix);
    ix->obj = obj;
    size_t n = cJSON_IsObject(obj) ? child_count(obj) : 0;
    if (n == 0) {
        ix->sorted = true;
        return;
    }
    ix->e = xmalloc(n * sizeof *ix->e);
    if (!ix->e)
        return;
    size_t i = 0;
    for (cJSON *c = obj->child; c; c = c->next, i++) {
        ix->e[i].item = c;
        ix->e[i].pos = i;
    }
    ix->n = n;
    qsort(ix->e, n, sizeof *ix->e, kent_cmp);
    ix->sorted = true;
}

static void kindex_free(kindex *ix)
{
    xfree(ix->e);
    ix->e = NULL;
}

static cJSON *kindex_find(const kindex *ix, const char *key)
{
    if (!ix->sorted)
        return cJSON_GetObjectItemCaseSensitive(ix->obj, key);
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key_of(ix->e[mid].item), key);
        if (c == 0)
            return ix->e[mid].item;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Deep equality.  Numbers compare by value, so 1 equals 1.0 (what [GG] does;
 * UNCONFIRMED for IoT Core, §1.3); cJSON keeps every number as a double
 * anyway.  Objects compare as key sets (their keys are unique here). */
static bool json_equal(const cJSON *a, const cJSON *b)
{
    if (!a || !b)
        return a == b;
    int ta = a->type & 0xFF, tb = b->type & 0xFF;
    if (ta != tb)
        return false;
    switch (ta) {
    case cJSON_Number:
        return a->valuedouble == b->valuedouble;
    case cJSON_String:
        return strcmp(a->valuestring ? a->valuestring : "", b->valuestring ? b->valuestring : "") == 0;
    case cJSON_Array: {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y))
                return false;
        return !x && !y;
    }
    case cJSON_Object: {
        if (child_count(a) != child_count(b))
            return false;
        kindex bi;
        kindex_build(&bi, b);
        bool eq = true;
        for (const cJSON *x = a->child; x && eq; x = x->next)
            eq = json_equal(x, kindex_find(&bi, key_of(x)));
        kindex_free(&bi);
        return eq;
    }
    default: /* true, false, null */
        return true;
    }
}

/* Adds `item` under `key`, taking it over (deleted when that fails). */
static bool put(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

static bool put_num(cJSON *obj, const char *key, uint64_t v)
{
    return put(obj, key, cJSON_CreateNumber((double)v));
}

static bool put_dup(cJSON *obj, const char *key, const cJSON *v)
{
    return put(obj, key, cJSON_Duplicate(v, true));
}

/* A stored text back into a tree.  *ok false when a text would not parse,
 * which for a text this module wrote means an allocation failed. */
static cJSON *parse_text(const char *text, bool *ok)
{
    if (!text)
        return NULL;
    cJSON *v = cJSON_Parse(text);
    if (!v)
        *ok = false;
    return v;
}

static char *print_or_null(const cJSON *v, bool *ok)
{
    if (!v)
        return NULL;
    char *t = cJSON_PrintUnformatted(v);
    if (!t)
        *ok = false;
    return t;
}

typedef enum { NORM_OK, NORM_BAD, NORM_OOM } norm_rc;

/*
 * Prepares a parsed request: duplicate keys are reduced to the last one (what
 * Jackson, which AWS's Java services use, does by default; UNCONFIRMED for
 * IoT Core), and a number cJSON could not hold (1e999 is infinite as a
 * double, and would be printed as null) makes the document Invalid JSON.
 */
static norm_rc normalize(cJSON *v)
{
    if (cJSON_IsNumber(v))
        return isfinite(v->valuedouble) ? NORM_OK : NORM_BAD;
    if (cJSON_IsObject(v) && v->child && v->child->next) {
        kindex ix;
        kindex_build(&ix, v);
        if (ix.e) {
            for (size_t i = 0; i + 1 < ix.n; i++)
                if (strcmp(key_of(ix.e[i].item), key_of(ix.e[i + 1].item)) == 0)
                    cJSON_Delete(cJSON_DetachItemViaPointer(v, ix.e[i].item));
        } else {
            /* No memory for the index: the quadratic way. */
            cJSON *c = v->child;
            while (c) {
                cJSON *next = c->next;
                for (cJSON *d = next; d; d = d->next)
                    if (strcmp(key_of(c), key_of(d)) == 0) {
                        cJSON_Delete(cJSON_DetachItemViaPointer(v, c));
                        break;
                    }
                c = next;
            }
        }
        kindex_free(&ix);
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (cJSON *c = v->child; c; c = c->next) {
            norm_rc r = normalize(c);
            if (r != NORM_OK)
                return r;
        }
    return NORM_OK;
}

static bool has_null(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return true;
    for (const cJSON *c = (cJSON_IsObject(v) || cJSON_IsArray(v)) ? v->child : NULL; c; c = c->next)
        if (has_null(c))
            return true;
    return false;
}

/* §1.3 rule 6 [DOC]: an array may not hold null, at any depth (in an object
 * inside it too).  Elsewhere null means "delete". */
static bool array_with_null(const cJSON *v)
{
    if (cJSON_IsArray(v))
        return has_null(v);
    for (const cJSON *c = cJSON_IsObject(v) ? v->child : NULL; c; c = c->next)
        if (array_with_null(c))
            return true;
    return false;
}

/* Whether what `v` holds stays within max levels, its members being at `level`
 * (see max_depth in sim_shadow.h). */
static bool depth_ok(const cJSON *v, uint32_t level, uint32_t max)
{
    for (const cJSON *c = v->child; c; c = c->next) {
        if (level > max)
            return false;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && !depth_ok(c, level + 1, max))
            return false;
    }
    return true;
}

/* A whole number in 0..2^53. */
static bool exact_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= MAX_EXACT))
        return false;
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return false;
    *out = u;
    return true;
}

/* ---- metadata, merge, delta (§1.3) ------------------------------------------ */

/* The metadata of a value written at ts: {"timestamp":ts} for each leaf,
 * objects mirrored, arrays as an array of per-element metadata ([DOC]; the
 * 2019 page's single timestamp per array is the older form).  A null counts
 * as a leaf: update/accepted gives deleted keys and sections a timestamp
 * ([DOC-OLD] `"desired": {"timestamp": 1469564801}`). */
static cJSON *meta_of(const cJSON *v, double ts)
{
    bool obj = cJSON_IsObject(v);
    if (obj || cJSON_IsArray(v)) {
        cJSON *m = obj ? cJSON_CreateObject() : cJSON_CreateArray();
        if (!m)
            return NULL;
        for (const cJSON *c = v->child; c; c = c->next) {
            cJSON *cm = meta_of(c, ts);
            bool ok = cm && (obj ? cJSON_AddItemToObject(m, key_of(c), cm) : cJSON_AddItemToArray(m, cm));
            if (!ok) {
                cJSON_Delete(cm);
                cJSON_Delete(m);
                return NULL;
            }
        }
        return m;
    }
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddNumberToObject(m, "timestamp", ts)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/*
 * The stored form of a value written where no object is merged into (a new
 * key, or one of another type): nulls inside objects are dropped, as there
 * is nothing under them to delete.  *gone when nothing is left of it: an
 * object of only nulls is not created ([GG] "collapses a new object that
 * contains only nulls"), and without keep_empty_parents no empty object is
 * ever stored, an explicit {} included.  Arrays are copied as they are
 * (they hold no null: checked before).  NULL and !*gone: no memory.
 */
static cJSON *build_value(const cJSON *v, bool keep_empty, bool *gone)
{
    *gone = false;
    if (!cJSON_IsObject(v))
        return cJSON_Duplicate(v, true);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (cJSON_IsNull(c))
            continue;
        bool cg;
        cJSON *cv = build_value(c, keep_empty, &cg);
        if (cg)
            continue;
        if (!put(o, key_of(c), cv)) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    if (!o->child && (!keep_empty || v->child)) {
        cJSON_Delete(o);
        *gone = true;
        return NULL;
    }
    return o;
}

/* Items taken out of an object during a merge are chained here and deleted
 * at its end: the sorted index still points at them until then. */
static void trash_push(cJSON **trash, cJSON *parent, cJSON *item)
{
    if (!item)
        return;
    cJSON_DetachItemViaPointer(parent, item);
    item->next = *trash;
    *trash = item;
}

typedef struct {
    double ts;
    bool keep_empty;
} merge_ctx;

/*
 * §1.3 rules 2-3: merges the request object `src` into the stored `dst`
 * (and its metadata `dmeta`).  Only the keys given change; objects merge
 * key by key; anything else replaces the old value; null deletes the key.
 * Every written leaf gets the timestamp; deleted keys lose their metadata.
 * src's keys are unique (normalize()), so each is looked up once.
 * false on allocation failure (dst is then half-merged: the caller merges
 * into a copy).
 */
static bool merge_object(const merge_ctx *mc, cJSON *dst, cJSON *dmeta, const cJSON *src)
{
    kindex di, mi;
    kindex_build(&di, dst);
    kindex_build(&mi, dmeta);
    cJSON *trash = NULL;
    bool ok = true;
    for (const cJSON *v = src->child; v && ok; v = v->next) {
        const char *k = key_of(v);
        cJSON *d = kindex_find(&di, k), *m = kindex_find(&mi, k);
        if (cJSON_IsNull(v)) {
            trash_push(&trash, dst, d);
            trash_push(&trash, dmeta, m);
            continue;
        }
        if (cJSON_IsObject(v) && cJSON_IsObject(d)) {
            /* The metadata of an object is an object (this module writes
             * it so, a load checks it): anything else is an internal error. */
            if (!cJSON_IsObject(m) || !merge_object(mc, d, m, v)) {
                ok = false;
                break;
            }
            if (!d->child && !mc->keep_empty) {
                trash_push(&trash, dst, d);
                trash_push(&trash, dmeta, m);
            }
            continue;
        }
        bool gone;
        cJSON *nv = build_value(v, mc->keep_empty, &gone);
        if (!nv && !gone) {
            ok = false;
            break;
        }
        trash_push(&trash, dst, d);
        trash_push(&trash, dmeta, m);
        if (gone)
            continue;
        cJSON *nm = meta_of(nv, mc->ts);
        if (!nm) {
            cJSON_Delete(nv);
            ok = false;
        } else if (!put(dst, k, nv)) {
            cJSON_Delete(nm);
            ok = false;
        } else if (!put(dmeta, k, nm)) {
            ok = false;
        }
    }
    cJSON_Delete(trash);
    kindex_free(&di);
    kindex_free(&mi);
    return ok;
}

/*
 * §1.3 delta [DOC]: every desired field that reported lacks or holds
 * differently, with the path from the root; objects recurse, arrays and
 * scalars compare whole; reported-only fields never appear.  An empty
 * desired object asks for nothing and is left out ([GG] skips it as
 * "null or missing"; with keep_empty_parents it would otherwise give a
 * delta no report could clear).  *out is NULL when the delta is empty;
 * *outm holds desired's metadata for what *out holds.  false on allocation
 * failure.
 */
/* [AWS-SHADOW-DELTA] */
static bool delta_of(const cJSON *des, const cJSON *rep, const cJSON *mdes, cJSON **out, cJSON **outm)
{
    *out = *outm = NULL;
    if (!cJSON_IsObject(des))
        return true;
    kindex ri, mi;
    kindex_build(&ri, cJSON_IsObject(rep) ? rep : NULL);
    kindex_build(&mi, cJSON_IsObject(mdes) ? mdes : NULL);
    cJSON *o = NULL, *om = NULL;
    bool ok = true;
    for (const cJSON *dv = des->child; dv && ok; dv = dv->next) {
        if (cJSON_IsObject(dv) && !dv->child)
            continue;
        const char *k = key_of(dv);
        const cJSON *rv = kindex_find(&ri, k), *mv = kindex_find(&mi, k);
        cJSON *sub = NULL, *subm = NULL;
        if (cJSON_IsObject(dv) && cJSON_IsObject(rv)) {
            if (!delta_of(dv, rv, mv, &sub, &subm)) {
                ok = false;
                break;
            }
            if (!sub)
                continue;
        } else if (rv && json_equal(dv, rv)) {
            continue;
        } else {
            sub = cJSON_Duplicate(dv, true);
            subm = mv ? cJSON_Duplicate(mv, true) : NULL;
            if (!sub || (mv && !subm)) {
                cJSON_Delete(sub);
                cJSON_Delete(subm);
                ok = false;
                break;
            }
        }
        if (!o && (!(o = cJSON_CreateObject()) || !(om = cJSON_CreateObject()))) {
            cJSON_Delete(sub);
            cJSON_Delete(subm);
            ok = false;
        } else if (!put(o, k, sub)) {
            cJSON_Delete(subm);
            ok = false;
        } else if (subm && !put(om, k, subm)) {
            ok = false;
        }
    }
    kindex_free(&ri);
    kindex_free(&mi);
    if (!ok) {
        cJSON_Delete(o);
        cJSON_Delete(om);
        return false;
    }
    *out = o;
    *outm = om;
    return true;
}

/* ---- rendering ---------------------------------------------------------------- */

/* {"desired":..,"reported":..} of the present sections (and delta). */
static cJSON *sections(cJSON *const v[2], const cJSON *delta)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    for (int i = 0; i < 2; i++)
        if (v[i] && !put_dup(o, SECTION[i], v[i]))
            goto fail;
    if (delta && !put_dup(o, "delta", delta))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* A parsed shadow: sections and metadata (NULL when absent). */
typedef struct {
    cJSON *sec[2], *meta[2];
} doc;

static void doc_free(doc *d)
{
    for (int i = 0; i < 2; i++) {
        cJSON_Delete(d->sec[i]);
        cJSON_Delete(d->meta[i]);
        d->sec[i] = d->meta[i] = NULL;
    }
}

static bool doc_load(doc *d, const rec *r)
{
    bool ok = true;
    memset(d, 0, sizeof *d);
    for (int i = 0; i < 2; i++) {
        d->sec[i] = parse_text(r->sec[i], &ok);
        d->meta[i] = parse_text(r->meta[i], &ok);
    }
    if (!ok)
        doc_free(d);
    return ok;
}

/* update/documents' previous and current (§1.4.2): state, metadata, version;
 * no delta, no timestamp of their own. */
static cJSON *snapshot(const doc *d, uint64_t version)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !put(o, "state", sections(d->sec, NULL)) || !put(o, "metadata", sections(d->meta, NULL)) ||
        !put_num(o, "version", version)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/*
 * get/accepted (§1.4.4): state with desired, reported and delta (when not
 * empty), metadata of desired and reported, version, timestamp, clientToken.
 * No metadata.delta: only the 2019 doc example shows one (UNCONFIRMED, §5
 * q7) and the v2 SDK's model does not read it.  A shadow whose state was
 * nulled out renders as "state":{} and "metadata":{} (§5 q4: the docs call
 * an empty document valid).
 */
static char *render_get(const rec *r, uint64_t now, const char *token)
{
    doc d;
    if (!doc_load(&d, r))
        return NULL;
    cJSON *delta = NULL, *deltam = NULL, *o = NULL;
    char *text = NULL;
    if (!delta_of(d.sec[0], d.sec[1], d.meta[0], &delta, &deltam))
        goto out;
    o = cJSON_CreateObject();
    if (!o || !put(o, "state", sections(d.sec, delta)) || !put(o, "metadata", sections(d.meta, NULL)) ||
        !put_num(o, "version", r->version) || !put_num(o, "timestamp", now) ||
        (token && !put(o, "clientToken", cJSON_CreateString(token))))
        goto out;
    text = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    cJSON_Delete(delta);
    cJSON_Delete(deltam);
    doc_free(&d);
    return text;
}

char *sim_shadow_document(const sim_shadow_store *s, const char *thing, const char *name, uint64_t now_s)
{
    if (!name)
        name = "";
    if (!s || !thing_ok(thing) || (name[0] && !shadow_name_ok(name)))
        return NULL;
    const rec *r = find_rec(&s->sh, thing, name);
    if (!r || !r->exists)
        return NULL;
    return render_get(r, now_s, NULL);
}

/* ---- one request ---------------------------------------------------------------- */

typedef struct {
    sim_shadow_store *s;
    const sim_shadow_req *req;
    uint64_t now;
    sim_shadow_emit_fn emit;
    void *ctx;
    char *why;
    size_t whylen;
    const char *token; /* a valid clientToken, echoed; NULL when none */
    char prefix[SIM_SHADOW_TOPIC_MAX + 1];
} call;

static void set_why(call *c, const char *msg)
{
    if (c->why && c->whylen)
        snprintf(c->why, c->whylen, "%s", msg);
}

/* Publishes text on <prefix>/<op>/<kind>. */
static void emit(call *c, const char *kind, const char *text)
{
    if (!c->emit)
        return;
    char topic[SIM_SHADOW_TOPIC_MAX + 32];
    snprintf(topic, sizeof topic, "%s/%s/%s", c->prefix, sim_shadow_op_name(c->req->op), kind);
    c->emit(c->ctx, topic, text, strlen(text));
}

/*
 * §1.5: {"code":<int>,"message":"...","timestamp":T,"clientToken":"..."}.
 * The docs say timestamp is "not present in all error response documents";
 * it is always here (harmless to a client, useful in a log).  clientToken
 * only when the request had a valid one.  When even the error cannot be
 * built, a fixed 500 without the token goes out instead.
 */
/* [AWS-SHADOW-ERRORS] */
static int reject(call *c, int code, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && put_num(o, "code", (uint64_t)code) && put(o, "message", cJSON_CreateString(msg)) &&
        put_num(o, "timestamp", c->now) && (!c->token || put(o, "clientToken", cJSON_CreateString(c->token))))
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) {
        char fixed[128];
        snprintf(fixed, sizeof fixed, "{\"code\":500,\"message\":\"" MSG_INTERNAL "\",\"timestamp\":%" PRIu64 "}",
                 c->now);
        set_why(c, MSG_INTERNAL);
        emit(c, "rejected", fixed);
        return 500;
    }
    set_why(c, msg);
    emit(c, "rejected", text);
    xfree(text);
    return code;
}

/* UTF-8 as §1.5's 415 asks.  The codec's check also refuses U+0000, which is
 * well-formed UTF-8 (a NUL then fails as Invalid JSON instead, see
 * control_bytes()): it is skipped here. */
static bool utf8_ok(const uint8_t *p, size_t len)
{
    size_t bad = 0;
    while (len && !iotc_mqtt_utf8_valid(p, len, &bad)) {
        if (bad >= len || p[bad] != 0)
            return false;
        p += bad + 1;
        len -= bad + 1;
    }
    return true;
}

/* A control character other than JSON's whitespace is valid nowhere in a
 * JSON text (in a string it must be escaped); cJSON would let it through
 * inside strings, and a NUL would cut a string short. */
static bool control_bytes(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 && p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return true;
    return false;
}

/*
 * The checks every operation shares, in this order (IoT Core's is unknown;
 * this follows [GG]'s where it has one, §1.5):
 *   1. not UTF-8                                   415
 *   2. empty: fine for get and delete; update      400 Invalid JSON
 *   3. not JSON, JSON with trailing bytes or raw control
 *      characters, a number no double holds (1e999),
 *      or not an object                            400 Invalid JSON
 *   4. clientToken not a string, or too long       400 Invalid clientToken
 * From 4 on the token is echoed; in 4 and before it is not (there is no
 * valid one).  The update's own checks follow in handle_update().
 */
static int parse_request(call *c, const uint8_t *p, size_t len, cJSON **root)
{
    *root = NULL;
    if (!utf8_ok(p, len))
        return reject(c, 415, MSG_ENCODING);
    if (len == 0)
        return c->req->op == SIM_SHADOW_UPDATE ? reject(c, 400, MSG_JSON) : 0;
    if (control_bytes(p, len))
        return reject(c, 400, MSG_JSON);
    /* A NUL-terminated copy: then neither an embedded NUL nor the end of the
     * buffer relies on cJSON's length handling. */
    char *copy = xmalloc(len + 1);
    if (!copy)
        return reject(c, 500, MSG_INTERNAL);
    memcpy(copy, p, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithLengthOpts(copy, len, &end, false);
    bool ok = r && cJSON_IsObject(r) && end;
    if (ok) {
        while (end < copy + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
        ok = end == copy + len;
    }
    xfree(copy);
    if (!ok) {
        cJSON_Delete(r);
        return reject(c, 400, MSG_JSON);
    }
    norm_rc n = normalize(r);
    if (n != NORM_OK) {
        cJSON_Delete(r);
        return n == NORM_BAD ? reject(c, 400, MSG_JSON) : reject(c, 500, MSG_INTERNAL);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "clientToken");
    if (t) {
        if (!cJSON_IsString(t) || strlen(t->valuestring) > c->s->cfg.max_client_token) {
            cJSON_Delete(r);
            return reject(c, 400, MSG_TOKEN);
        }
        c->token = t->valuestring;
    }
    *root = r;
    return 0;
}

static int not_found(call *c)
{
    /* §1.5 [OBS]: the shadow's name, or the thing's for the classic one. */
    char msg[64 + SIM_SHADOW_THING_MAX];
    snprintf(msg, sizeof msg, "No shadow exists with name: '%s'", c->req->name[0] ? c->req->name : c->req->thing);
    return reject(c, 404, msg);
}

/* [AWS-SHADOW-GET-DELETE] get/accepted, and delete below. */
static int handle_get(call *c)
{
    rec *r = lookup(c->s, c->req->thing, c->req->name, c->now);
    if (!r || !r->exists)
        return not_found(c);
    char *text = render_get(r, c->now, c->token);
    if (!text)
        return reject(c, 500, MSG_INTERNAL);
    set_why(c, "accepted");
    emit(c, "accepted", text);
    xfree(text);
    return 200;
}

/* §1.4.5: the deleted version, not incremented; the shadow is then
 * remembered for the re-creation window. */
static int handle_delete(call *c)
{
    shelf *sh = &c->s->sh;
    rec *r = lookup(c->s, c->req->thing, c->req->name, c->now);
    if (!r || !r->exists)
        return not_found(c);
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && put_num(o, "version", r->version) && put_num(o, "timestamp", c->now) &&
        (!c->token || put(o, "clientToken", cJSON_CreateString(c->token))))
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text)
        return reject(c, 500, MSG_INTERNAL);
    rec_clear_state(r);
    r->exists = false;
    r->deleted_at = c->now;
    sh->live--;
    gone_link(sh, r);
    while (sh->gone > c->s->cfg.max_shadows && sh->gone_head)
        forget(sh, sh->gone_head);
    set_why(c, "accepted");
    emit(c, "accepted", text);
    xfree(text);
    return 200;
}

/* Everything an update builds before it commits, freed in one place. */
typedef struct {
    doc old, nw;
    cJSON *odelta, *odeltam, *delta, *deltam;
    char *txt[2], *mtxt[2];
    char *out_accepted, *out_delta, *out_documents;
    char *msg;
} upd;

static void upd_free(upd *u)
{
    doc_free(&u->old);
    doc_free(&u->nw);
    cJSON_Delete(u->odelta);
    cJSON_Delete(u->odeltam);
    cJSON_Delete(u->delta);
    cJSON_Delete(u->deltam);
    for (int i = 0; i < 2; i++) {
        xfree(u->txt[i]);
        xfree(u->mtxt[i]);
    }
    xfree(u->out_accepted);
    xfree(u->out_delta);
    xfree(u->out_documents);
    xfree(u->msg);
}

/* Adds version, timestamp and the token to a response and prints it. */
static char *finish(call *c, cJSON *o, uint64_t version)
{
    char *text = NULL;
    if (o && put_num(o, "version", version) && put_num(o, "timestamp", c->now) &&
        (!c->token || put(o, "clientToken", cJSON_CreateString(c->token))))
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/*
 * An update's own checks, after parse_request()'s, in this order:
 *   5. no `state`                                  400 Missing required node: state
 *   6. state neither object nor null               400 State node must be an object
 *   7. a key in state but desired/reported         400 State contains an invalid node: '<key>'
 *      (the first one in the document)
 *   8. desired, then reported, neither object nor null   400 Desired/Reported node must be an object
 *   9. an array holding null in desired/reported   400 Invalid JSON ([DOC] says such arrays are
 *      rejected but not with which text; "State contains an invalid node" is the other candidate,
 *      UNCONFIRMED)
 *  10. `version` not a whole number in 0..2^53     400 Invalid version
 *  11. nesting beyond max_depth                    400 JSON contains too many levels of nesting; ...
 *  12. `version` given and not the current one     409 Version conflict [AWS-SHADOW-VERSION]
 *      (a missing shadow's current version is the one remembered from its deletion within the
 *      window, else 0: so "version":0 may create a shadow; [GG]'s 400 for other values on a new
 *      shadow is not followed, §5 q8)
 *  13. a new shadow beyond max_shadows             429 Too many shadows (the simulator's limit)
 *  14. desired + reported after the merge over max_state_bytes   413
 * Fields outside state other than clientToken and version are ignored [DOC].
 */
/* [AWS-SHADOW-UPDATE] */
static int handle_update(call *c, cJSON *root)
{
    sim_shadow_store *s = c->s;
    const sim_shadow_config *cfg = &s->cfg;
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(root, "state");
    if (!state)
        return reject(c, 400, MSG_NO_STATE);
    if (!cJSON_IsObject(state) && !cJSON_IsNull(state))
        return reject(c, 400, MSG_STATE_OBJ);
    const cJSON *sec[2] = {NULL, NULL};
    for (const cJSON *k = cJSON_IsObject(state) ? state->child : NULL; k; k = k->next) {
        if (strcmp(key_of(k), SECTION[0]) == 0) {
            sec[0] = k;
        } else if (strcmp(key_of(k), SECTION[1]) == 0) {
            sec[1] = k;
        } else {
            /* The quoted form is confirmed for 'delta' (§1.2). */
            static const char fmt[] = "State contains an invalid node: '%s'";
            size_t n = sizeof fmt + strlen(key_of(k));
            char *msg = xmalloc(n);
            if (!msg)
                return reject(c, 500, MSG_INTERNAL);
            snprintf(msg, n, fmt, key_of(k));
            int rc = reject(c, 400, msg);
            xfree(msg);
            return rc;
        }
    }
    for (int i = 0; i < 2; i++)
        if (sec[i] && !cJSON_IsObject(sec[i]) && !cJSON_IsNull(sec[i]))
            return reject(c, 400, i == 0 ? MSG_DESIRED_OBJ : MSG_REPORTED_OBJ);
    for (int i = 0; i < 2; i++)
        if (array_with_null(sec[i]))
            return reject(c, 400, MSG_JSON);
    const cJSON *vj = cJSON_GetObjectItemCaseSensitive(root, "version");
    uint64_t want = 0;
    if (vj && !exact_uint(vj, &want))
        return reject(c, 400, MSG_VERSION);
    for (int i = 0; i < 2; i++)
        if (cJSON_IsObject(sec[i]) && !depth_ok(sec[i], 1, cfg->max_depth)) {
            char msg[96];
            snprintf(msg, sizeof msg, "JSON contains too many levels of nesting; maximum is %" PRIu32,
                     cfg->max_depth);
            return reject(c, 400, msg);
        }

    rec *r = lookup(s, c->req->thing, c->req->name, c->now);
    bool existed = r && r->exists;
    uint64_t cur = r ? r->version : 0;
    if (vj && want != cur)
        return reject(c, 409, MSG_CONFLICT);
    if (!existed && s->sh.live >= cfg->max_shadows)
        return reject(c, 429, MSG_TOO_MANY);

    upd u;
    memset(&u, 0, sizeof u);
    bool ok = true;
    if (existed && (!doc_load(&u.old, r) || !doc_load(&u.nw, r)))
        goto oom;

    /* The merge, into the copy in u.nw (§1.3 rules 3-5). */
    merge_ctx mc = {(double)c->now, cfg->keep_empty_parents};
    for (int i = 0; i < 2; i++) {
        if (!cJSON_IsNull(state) && !sec[i])
            continue;
        if (cJSON_IsNull(state) || cJSON_IsNull(sec[i])) {
            /* "desired": null drops the section, "state": null both [DOC];
             * the shadow itself stays. */
            cJSON_Delete(u.nw.sec[i]);
            cJSON_Delete(u.nw.meta[i]);
            u.nw.sec[i] = u.nw.meta[i] = NULL;
            continue;
        }
        if (!u.nw.sec[i] && !(u.nw.sec[i] = cJSON_CreateObject()))
            goto oom;
        if (!cJSON_IsObject(u.nw.meta[i])) {
            cJSON_Delete(u.nw.meta[i]);
            if (!(u.nw.meta[i] = meta_of(u.nw.sec[i], mc.ts)))
                goto oom;
        }
        if (!merge_object(&mc, u.nw.sec[i], u.nw.meta[i], sec[i]))
            goto oom;
        if (!u.nw.sec[i]->child) {
            /* A section left empty is dropped ("present only if it has a
             * desired state"), with or without keep_empty_parents. */
            cJSON_Delete(u.nw.sec[i]);
            cJSON_Delete(u.nw.meta[i]);
            u.nw.sec[i] = u.nw.meta[i] = NULL;
        }
    }

    /* §1.3 rule 8: the compact texts of desired and reported; these texts
     * are also what is stored. */
    size_t size = 0;
    for (int i = 0; i < 2; i++) {
        u.txt[i] = print_or_null(u.nw.sec[i], &ok);
        u.mtxt[i] = print_or_null(u.nw.meta[i], &ok);
        size += u.txt[i] ? strlen(u.txt[i]) : 0;
    }
    if (!ok)
        goto oom;
    if (size > cfg->max_state_bytes) {
        upd_free(&u);
        return reject(c, 413, MSG_TOO_BIG);
    }

    bool changed = !existed || !json_equal(u.old.sec[0], u.nw.sec[0]) || !json_equal(u.old.sec[1], u.nw.sec[1]);
    bool commit = changed || cfg->version_on_noop;
    uint64_t version = commit ? cur + 1 : cur;
    const doc *after = commit ? &u.nw : &u.old;

    /* §1.4.3: the whole delta of the resulting shadow. */
    if (!delta_of(after->sec[0], after->sec[1], after->meta[0], &u.delta, &u.deltam))
        goto oom;
    bool send_delta = u.delta != NULL;
    if (send_delta && !cfg->delta_when_unchanged) {
        if (existed && !delta_of(u.old.sec[0], u.old.sec[1], u.old.meta[0], &u.odelta, &u.odeltam))
            goto oom;
        send_delta = !json_equal(u.odelta, u.delta);
    }

    /* §1.4.1: the request's state as sent (nulls included; after
     * normalize()), metadata for exactly those fields.  After
     * {"state": null} that is "state": null with "metadata":
     * {"timestamp": T}, as for any null (§5 q4; [GG] answers "state": {}). */
    cJSON *o = cJSON_CreateObject();
    if (!o || !put_dup(o, "state", state) || !put(o, "metadata", meta_of(state, mc.ts))) {
        cJSON_Delete(o);
        goto oom;
    }
    if (!(u.out_accepted = finish(c, o, version)))
        goto oom;
    if (send_delta) {
        o = cJSON_CreateObject();
        /* Key order of the [OBS] sample: version, timestamp, state, metadata. */
        if (!o || !put_num(o, "version", version) || !put_num(o, "timestamp", c->now) ||
            !put_dup(o, "state", u.delta) || !put_dup(o, "metadata", u.deltam) ||
            (c->token && !put(o, "clientToken", cJSON_CreateString(c->token)))) {
            cJSON_Delete(o);
            goto oom;
        }
        u.out_delta = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!u.out_delta)
            goto oom;
    }
    /* §1.4.2: previous is JSON null when this update created the shadow
     * ([DOC-OLD]; [GG] leaves it out), a re-creation within the window
     * included. */
    o = cJSON_CreateObject();
    if (!o || !put(o, "previous", existed ? snapshot(&u.old, cur) : cJSON_CreateNull()) ||
        !put(o, "current", snapshot(after, version)) || !put_num(o, "timestamp", c->now) ||
        (c->token && !put(o, "clientToken", cJSON_CreateString(c->token)))) {
        cJSON_Delete(o);
        goto oom;
    }
    u.out_documents = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!u.out_documents)
        goto oom;

    /* Commit: nothing below can fail but the new record's insertion. */
    if (!r) {
        char key[KEY_MAX];
        r = xmalloc(sizeof *r);
        if (!r)
            goto oom;
        memset(r, 0, sizeof *r);
        snprintf(r->thing, sizeof r->thing, "%s", c->req->thing);
        snprintf(r->name, sizeof r->name, "%s", c->req->name);
        if (!sim_map_put(&s->sh.map, key, make_key(r->thing, r->name, key, sizeof key), r)) {
            xfree(r);
            goto oom;
        }
        r->exists = true;
        s->sh.live++;
    } else if (!r->exists) {
        gone_unlink(&s->sh, r);
        r->exists = true;
        s->sh.live++;
    }
    if (commit) {
        rec_clear_state(r);
        for (int i = 0; i < 2; i++) {
            r->sec[i] = u.txt[i];
            r->meta[i] = u.mtxt[i];
            u.txt[i] = u.mtxt[i] = NULL;
        }
    }
    r->version = version;

    set_why(c, "accepted");
    emit(c, "accepted", u.out_accepted);
    if (u.out_delta)
        emit(c, "delta", u.out_delta);
    emit(c, "documents", u.out_documents);
    upd_free(&u);
    return 200;
oom:
    upd_free(&u);
    return reject(c, 500, MSG_INTERNAL);
}

int sim_shadow_handle(sim_shadow_store *s, const sim_shadow_req *req, const uint8_t *payload, size_t len,
                      uint64_t now_s, sim_shadow_emit_fn emit_fn, void *ctx, char *why, size_t whylen)
{
    call c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.req = req;
    c.now = now_s;
    c.emit = emit_fn;
    c.ctx = ctx;
    c.why = why;
    c.whylen = whylen;
    if (!s || !req || (req->op != SIM_SHADOW_GET && req->op != SIM_SHADOW_UPDATE && req->op != SIM_SHADOW_DELETE) ||
        !memchr(req->thing, '\0', sizeof req->thing) || !memchr(req->name, '\0', sizeof req->name) ||
        !sim_shadow_topic(req->thing, req->name, "", c.prefix, sizeof c.prefix)) {
        set_why(&c, "invalid thing or shadow name");
        return 400;
    }
    if (!payload)
        len = 0;
    purge_expired(s, now_s);

    cJSON *root = NULL;
    int rc = parse_request(&c, payload, len, &root);
    if (rc != 0)
        return rc;
    switch (req->op) {
    case SIM_SHADOW_GET:
        rc = handle_get(&c);
        break;
    case SIM_SHADOW_DELETE:
        rc = handle_delete(&c);
        break;
    default:
        rc = handle_update(&c, root);
        break;
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- listing, saving, loading ----------------------------------------------------- */

static int rec_cmp(const void *a, const void *b)
{
    const rec *x = *(const rec *const *)a, *y = *(const rec *const *)b;
    int c = strcmp(x->thing, y->thing);
    return c ? c : strcmp(x->name, y->name);
}

/* The live records sorted by thing, then name; *n of them.  NULL with *n 0
 * when there are none; NULL with *n > 0 when out of memory. */
static rec **sorted_live(const shelf *sh, size_t *n)
{
    *n = sh->live;
    if (!sh->live)
        return NULL;
    rec **v = xmalloc(sh->live * sizeof *v);
    if (!v)
        return NULL;
    size_t i, k = 0;
    for (sim_map_entry *e = sim_map_first(&sh->map, &i); e; e = sim_map_next(&sh->map, &i, e)) {
        rec *r = e->value;
        if (r->exists && k < sh->live)
            v[k++] = r;
    }
    *n = k;
    qsort(v, k, sizeof *v, rec_cmp);
    return v;
}

static cJSON *name_json(const rec *r)
{
    return r->name[0] ? cJSON_CreateString(r->name) : cJSON_CreateNull();
}

/* One shadow for the list or the save: thing, name, version, state, and its
 * metadata when `meta`. */
static cJSON *rec_json(const rec *r, bool meta)
{
    doc d;
    if (!doc_load(&d, r))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o || !put(o, "thing", cJSON_CreateString(r->thing)) || !put(o, "name", name_json(r)) ||
        !put_num(o, "version", r->version) || !put(o, "state", sections(d.sec, NULL)) ||
        (meta && !put(o, "metadata", sections(d.meta, NULL)))) {
        cJSON_Delete(o);
        o = NULL;
    }
    doc_free(&d);
    return o;
}

static char *print_and_delete(cJSON *o)
{
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return t;
}

char *sim_shadow_list(const sim_shadow_store *s)
{
    if (!s)
        return NULL;
    size_t n;
    rec **v = sorted_live(&s->sh, &n);
    if (!v && n)
        return NULL;
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *o = rec_json(v[i], false);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            a = NULL;
        }
    }
    xfree(v);
    return print_and_delete(a);
}

char *sim_shadow_save(const sim_shadow_store *s)
{
    if (!s)
        return NULL;
    size_t n;
    rec **v = sorted_live(&s->sh, &n);
    if (!v && n)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *live = cJSON_CreateArray(), *dead = cJSON_CreateArray();
    bool ok = o && live && dead && put_num(o, "format", 1);
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *e = rec_json(v[i], true);
        ok = e && cJSON_AddItemToArray(live, e);
        if (!ok)
            cJSON_Delete(e);
    }
    for (const rec *r = s->sh.gone_head; ok && r; r = r->next) {
        cJSON *e = cJSON_CreateObject();
        ok = e && put(e, "thing", cJSON_CreateString(r->thing)) && put(e, "name", name_json(r)) &&
             put_num(e, "version", r->version) && put_num(e, "deleted_at", r->deleted_at) &&
             cJSON_AddItemToArray(dead, e);
        if (!ok)
            cJSON_Delete(e);
    }
    xfree(v);
    /* put() takes each array over, freeing it when it fails. */
    if (ok) {
        ok = put(o, "shadows", live);
        live = NULL;
    }
    if (ok) {
        ok = put(o, "deleted", dead);
        dead = NULL;
    }
    cJSON_Delete(live);
    cJSON_Delete(dead);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_and_delete(o);
}

/* A stored value: no null anywhere, numbers a double holds, no duplicate keys. */
static bool stored_value_ok(const cJSON *v)
{
    if (cJSON_IsNull(v) || cJSON_IsInvalid(v) || cJSON_IsRaw(v))
        return false;
    if (cJSON_IsNumber(v))
        return isfinite(v->valuedouble);
    if (cJSON_IsObject(v) && v->child && v->child->next) {
        kindex ix;
        kindex_build(&ix, v);
        bool dup = false;
        if (ix.e) {
            for (size_t i = 0; i + 1 < ix.n && !dup; i++)
                dup = strcmp(key_of(ix.e[i].item), key_of(ix.e[i + 1].item)) == 0;
        } else {
            for (const cJSON *a = v->child; a && !dup; a = a->next)
                for (const cJSON *b = a->next; b && !dup; b = b->next)
                    dup = strcmp(key_of(a), key_of(b)) == 0;
        }
        kindex_free(&ix);
        if (dup)
            return false;
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (const cJSON *c = v->child; c; c = c->next)
            if (!stored_value_ok(c))
                return false;
    return true;
}

/* Whether m is the metadata of the (checked) value v, shaped as meta_of()
 * makes it. */
static bool meta_mirrors(const cJSON *v, const cJSON *m)
{
    if (cJSON_IsObject(v)) {
        if (!cJSON_IsObject(m) || child_count(v) != child_count(m) || !stored_value_ok(m))
            return false;
        kindex mi;
        kindex_build(&mi, m);
        bool ok = true;
        for (const cJSON *c = v->child; c && ok; c = c->next)
            ok = meta_mirrors(c, kindex_find(&mi, key_of(c)));
        kindex_free(&mi);
        return ok;
    }
    if (cJSON_IsArray(v)) {
        if (!cJSON_IsArray(m) || child_count(v) != child_count(m))
            return false;
        const cJSON *x = v->child, *y = m->child;
        for (; x && y; x = x->next, y = y->next)
            if (!meta_mirrors(x, y))
                return false;
        return true;
    }
    uint64_t ts;
    return cJSON_IsObject(m) && m->child && !m->child->next && strcmp(key_of(m->child), "timestamp") == 0 &&
           exact_uint(m->child, &ts);
}

static bool load_fail(char *why, size_t whylen, const char *what, size_t i, const char *reason)
{
    if (why && whylen) {
        if (what)
            snprintf(why, whylen, "%s[%zu]: %s", what, i, reason);
        else
            snprintf(why, whylen, "%s", reason);
    }
    return false;
}

/* thing and name of a saved entry into r; NULL or a reason. */
static const char *load_names(const cJSON *e, rec *r)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "thing");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
    if (!cJSON_IsString(t) || !thing_ok(t->valuestring))
        return "thing: not a valid thing name";
    if (!cJSON_IsNull(n) && !(cJSON_IsString(n) && shadow_name_ok(n->valuestring)))
        return "name: not null or a valid shadow name";
    snprintf(r->thing, sizeof r->thing, "%s", t->valuestring);
    snprintf(r->name, sizeof r->name, "%s", cJSON_IsString(n) ? n->valuestring : "");
    return NULL;
}

/* The state and metadata of a saved shadow into r's texts; NULL or a reason. */
static const char *load_state(const cJSON *e, rec *r)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "state");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(e, "metadata");
    if (!cJSON_IsObject(st) || !cJSON_IsObject(md))
        return "state and metadata must be objects";
    for (const cJSON *k = st->child; k; k = k->next)
        if (strcmp(key_of(k), SECTION[0]) && strcmp(key_of(k), SECTION[1]))
            return "state: only desired and reported may be stored";
    for (const cJSON *k = md->child; k; k = k->next)
        if (strcmp(key_of(k), SECTION[0]) && strcmp(key_of(k), SECTION[1]))
            return "metadata: only desired and reported may be stored";
    if (!stored_value_ok(st))
        return "state: null, an unusable number or a duplicate key";
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, SECTION[i]);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(md, SECTION[i]);
        if (v && !cJSON_IsObject(v))
            return "state: desired and reported must be objects";
        if (!v ? m != NULL : !meta_mirrors(v, m))
            return "metadata: does not mirror the state";
        if (!v || !v->child)
            continue; /* an empty section is no section */
        bool ok = true;
        r->sec[i] = print_or_null(v, &ok);
        r->meta[i] = print_or_null(m, &ok);
        if (!ok)
            return "out of memory";
    }
    return NULL;
}

/* One entry of "shadows" (live) or "deleted" into nsh; NULL or a reason. */
static const char *load_entry(const sim_shadow_config *cfg, shelf *nsh, const cJSON *e, bool live)
{
    if (!cJSON_IsObject(e))
        return "not an object";
    if ((live ? nsh->live : nsh->gone) >= cfg->max_shadows)
        return "more entries than max_shadows";
    rec *r = xmalloc(sizeof *r);
    if (!r)
        return "out of memory";
    memset(r, 0, sizeof *r);
    const char *reason = load_names(e, r);
    uint64_t ver = 0, at = 0;
    if (!reason && (!exact_uint(cJSON_GetObjectItemCaseSensitive(e, "version"), &ver) || (live && ver == 0)))
        reason = live ? "version: not a whole number in 1..2^53" : "version: not a whole number in 0..2^53";
    if (!reason && !live && !exact_uint(cJSON_GetObjectItemCaseSensitive(e, "deleted_at"), &at))
        reason = "deleted_at: not a whole number in 0..2^53";
    if (!reason && find_rec(nsh, r->thing, r->name))
        reason = "the same shadow twice";
    if (!reason && live)
        reason = load_state(e, r);
    if (!reason) {
        char key[KEY_MAX];
        r->version = ver;
        r->exists = live;
        r->deleted_at = at;
        if (!sim_map_put(&nsh->map, key, make_key(r->thing, r->name, key, sizeof key), r))
            reason = "out of memory";
    }
    if (reason) {
        rec_free(r);
        return reason;
    }
    if (live)
        nsh->live++;
    else
        gone_link(nsh, r);
    return NULL;
}

bool sim_shadow_load(sim_shadow_store *s, const char *json, char *why, size_t whylen)
{
    if (!s || !json)
        return load_fail(why, whylen, NULL, 0, "no input");
    cJSON *root = cJSON_ParseWithOpts(json, NULL, true);
    if (!root)
        return load_fail(why, whylen, NULL, 0, "not JSON (or out of memory)");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *live = cJSON_GetObjectItemCaseSensitive(root, "shadows");
    const cJSON *dead = cJSON_GetObjectItemCaseSensitive(root, "deleted");
    uint64_t f;
    if (!cJSON_IsObject(root) || !exact_uint(fmt, &f) || f != 1 || !cJSON_IsArray(live) || !cJSON_IsArray(dead)) {
        cJSON_Delete(root);
        return load_fail(why, whylen, NULL, 0, "not a shadow store: {\"format\":1,\"shadows\":[],\"deleted\":[]}");
    }
    shelf nsh;
    memset(&nsh, 0, sizeof nsh);
    sim_map_init(&nsh.map);
    const char *what = NULL, *reason = NULL;
    size_t i = 0;
    for (int pass = 0; pass < 2 && !reason; pass++) {
        what = pass == 0 ? "shadows" : "deleted";
        i = 0;
        for (const cJSON *e = (pass == 0 ? live : dead)->child; e && !reason; e = e->next)
            if (!(reason = load_entry(&s->cfg, &nsh, e, pass == 0)))
                i++;
    }
    cJSON_Delete(root);
    if (reason) {
        shelf_clear(&nsh);
        return load_fail(why, whylen, what, i, reason);
    }
    shelf_clear(&s->sh);
    s->sh = nsh;
    if (why && whylen)
        snprintf(why, whylen, "loaded %zu shadows, %zu deletions", nsh.live, nsh.gone);
    return true;
}
