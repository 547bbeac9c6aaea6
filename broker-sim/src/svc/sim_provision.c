/* sim_provision.c: see sim_provision.h.  Section numbers refer to
 * ../shared/reference/aws-services.md. */
#include "sim_provision.h"

#include <cbor.h>
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h> /* isfinite, a macro */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h" /* iotc_mqtt_utf8_valid: the codec's strict UTF-8 check (no U+0000, no surrogates) */

#define MSG_EMPTY_TOKEN "Certificate ownership token cannot be empty." /* [OBS] */

/* Nesting of a CBOR request, and of a template (cJSON itself stops at 1000,
 * which a 10 KiB template could nearly reach; the evaluator recurses). */
#define CBOR_MAX_DEPTH 32
#define TPL_MAX_DEPTH 64
/* What one RegisterThing evaluation may produce, in string bytes: a device
 * could otherwise send one long parameter that the template repeats a
 * thousand times [local]. */
#define EVAL_BUDGET (1u << 20)
#define PATH_MAX_LEN 320

/* ---- allocation ---------------------------------------------------------------
 * Through cJSON's hooks (malloc and free unless someone installs others), so
 * that a test that makes cJSON's allocator fail reaches these failure paths. */

static void *xmalloc(size_t n)
{
    return cJSON_malloc(n ? n : 1);
}

static void xfree(void *p)
{
    if (p)
        cJSON_free(p);
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *xstrdup(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

/* The length of s[0..n) without a UTF-8 sequence that a truncation cut in
 * two, so that messages made of UTF-8 pieces stay UTF-8 when shortened. */
static size_t utf8_cut(const char *s, size_t n)
{
    size_t i = n, cont = 0;
    while (i > 0 && cont < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0)
        return n;
    unsigned char b = (unsigned char)s[i - 1];
    size_t need = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
    return cont + 1 < need ? i - 1 : n;
}

/* NUL-terminates buf where utf8_cut says. */
static void utf8_fix(char *buf)
{
    buf[utf8_cut(buf, strlen(buf))] = '\0';
}

/* At most max bytes of s, whole UTF-8 sequences only, into out (max + 1 bytes). */
static const char *utf8_prefix(const char *s, char *out, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        n = utf8_cut(s, max);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

static void vsetf(char *buf, size_t len, const char *fmt, va_list ap)
{
    if (buf && len) {
        vsnprintf(buf, len, fmt, ap);
        utf8_fix(buf);
    }
}

static void setf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void setf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsetf(buf, len, fmt, ap);
    va_end(ap);
}

/* ASCII case-insensitive equality (no locale). */
static bool ieq(const char *a, const char *b)
{
    for (;; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'a' && x <= 'z')
            x = (char)(x - 32);
        if (y >= 'a' && y <= 'z')
            y = (char)(y - 32);
        if (x != y)
            return false;
        if (!x)
            return true;
    }
}

/* An integer exactly representable as a double (no libm: the link lines have no -lm). */
static bool whole(double d)
{
    return d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(int64_t)d;
}

static bool str_ok(const cJSON *j)
{
    return cJSON_IsString(j) && j->valuestring;
}

/* ---- SHA-256 (FIPS 180-4), for the names of template policies ------------- */

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t nbuf;
    uint64_t total;
} sha256;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha_block(sha256 *s, const uint8_t *b)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = bb;
        bb = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += bb;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

static void sha_update(sha256 *s, const uint8_t *d, size_t n)
{
    s->total += n;
    while (n) {
        size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, d, take);
        s->nbuf += take;
        d += take;
        n -= take;
        if (s->nbuf == 64) {
            sha_block(s, s->buf);
            s->nbuf = 0;
        }
    }
}

/* hex: 65 bytes. */
static void sha256_hex(const char *text, char *hex)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    sha256 s;
    memset(&s, 0, sizeof s);
    memcpy(s.h, H0, sizeof H0);
    sha_update(&s, (const uint8_t *)text, strlen(text));
    uint64_t bits = s.total * 8;
    uint8_t pad = 0x80, zero = 0;
    sha_update(&s, &pad, 1);
    while (s.nbuf != 56)
        sha_update(&s, &zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(&s, len, 8);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08" PRIx32, s.h[i]);
}

/* ---- the module ------------------------------------------------------------- */

typedef struct {
    char name[SIM_PROV_TEMPLATE_MAX + 1];
    bool enabled;
    cJSON *body; /* validated */
} tpl;

typedef struct {
    char token[SIM_PROV_TOKEN_LEN + 1];
    char *cert_id;
    char *claim;  /* or NULL */
    char *client; /* or NULL */
    uint64_t expires;
} tok;

typedef struct {
    char token[SIM_PROV_TOKEN_LEN + 1];
    bool used; /* else expired */
} spent;

struct sim_provision {
    sim_provision_config cfg;
    sim_prov_backend be;
    bool has_be;
    uint64_t rng;
    tpl *tpls; /* sorted by name */
    size_t ntpl, tplcap;
    tok *toks; /* oldest first */
    size_t ntok, tokcap;
    spent *ring; /* the last ringcap spent tokens */
    size_t ringcap, ringn, ringnext;
};

void sim_provision_config_init(sim_provision_config *c)
{
    memset(c, 0, sizeof *c);
    c->token_ttl_s = 3600;
    c->max_tokens = 1000;
    c->max_template_bytes = 10240;
    c->max_templates = 100;
    c->seed = 0x1f07c0ffee5eedULL;
}

sim_provision *sim_provision_new(const sim_provision_config *c)
{
    sim_provision *p = xmalloc(sizeof *p);
    if (!p)
        return NULL;
    memset(p, 0, sizeof *p);
    if (c)
        p->cfg = *c;
    else
        sim_provision_config_init(&p->cfg);
    p->rng = p->cfg.seed;
    p->ringcap = p->cfg.max_tokens ? p->cfg.max_tokens : 1;
    p->ring = xmalloc(p->ringcap * sizeof *p->ring);
    if (!p->ring) {
        xfree(p);
        return NULL;
    }
    return p;
}

static void tok_clear(tok *t)
{
    xfree(t->cert_id);
    xfree(t->claim);
    xfree(t->client);
    memset(t, 0, sizeof *t);
}

void sim_provision_free(sim_provision *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ntpl; i++)
        cJSON_Delete(p->tpls[i].body);
    for (size_t i = 0; i < p->ntok; i++)
        tok_clear(&p->toks[i]);
    xfree(p->tpls);
    xfree(p->toks);
    xfree(p->ring);
    xfree(p);
}

void sim_provision_set_backend(sim_provision *p, const sim_prov_backend *b)
{
    if (b) {
        p->be = *b;
        p->has_be = true;
    } else {
        memset(&p->be, 0, sizeof p->be);
        p->has_be = false;
    }
}

const char *sim_prov_op_name(sim_prov_op op)
{
    switch (op) {
    case SIM_PROV_CREATE_KEYS:
        return "CreateKeysAndCertificate";
    case SIM_PROV_CREATE_FROM_CSR:
        return "CreateCertificateFromCsr";
    case SIM_PROV_REGISTER:
        return "RegisterThing";
    }
    return "?";
}

/* ---- topics (§2.1) ------------------------------------------------------------ */

#define T_CREATE "$aws/certificates/create/"
#define T_CSR "$aws/certificates/create-from-csr/"
#define T_TPL "$aws/provisioning-templates/"
#define T_PROV "/provision/"

static bool tpl_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > SIM_PROV_TEMPLATE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* 0 json, 1 cbor, -1 neither: s[0..n) must be exactly the format. */
static int topic_fmt(const char *s, size_t n)
{
    if (n == 4 && memcmp(s, "json", 4) == 0)
        return 0;
    if (n == 4 && memcmp(s, "cbor", 4) == 0)
        return 1;
    return -1;
}

static bool has_prefix(const char *s, size_t n, const char *pre, size_t *plen)
{
    *plen = strlen(pre);
    return n >= *plen && memcmp(s, pre, *plen) == 0;
}

bool sim_provision_parse_topic(const char *topic, size_t len, sim_prov_req *out)
{
    sim_prov_req r;
    memset(&r, 0, sizeof r);
    size_t pl;
    int f;
    if (!topic)
        return false;
    if (has_prefix(topic, len, T_CREATE, &pl)) {
        if ((f = topic_fmt(topic + pl, len - pl)) < 0)
            return false;
        r.op = SIM_PROV_CREATE_KEYS;
    } else if (has_prefix(topic, len, T_CSR, &pl)) {
        if ((f = topic_fmt(topic + pl, len - pl)) < 0)
            return false;
        r.op = SIM_PROV_CREATE_FROM_CSR;
    } else if (has_prefix(topic, len, T_TPL, &pl)) {
        const char *name = topic + pl;
        const char *slash = memchr(name, '/', len - pl);
        if (!slash)
            return false;
        size_t nlen = (size_t)(slash - name);
        if (!tpl_name_ok(name, nlen))
            return false;
        const char *rest = slash;
        size_t rlen = len - pl - nlen, prl;
        if (!has_prefix(rest, rlen, T_PROV, &prl) || (f = topic_fmt(rest + prl, rlen - prl)) < 0)
            return false;
        r.op = SIM_PROV_REGISTER;
        memcpy(r.template_name, name, nlen);
    } else {
        return false;
    }
    r.cbor = f == 1;
    if (out)
        *out = r;
    return true;
}

static bool req_ok(const sim_prov_req *req)
{
    switch (req->op) {
    case SIM_PROV_CREATE_KEYS:
    case SIM_PROV_CREATE_FROM_CSR:
        return true;
    case SIM_PROV_REGISTER:
        return tpl_name_ok(req->template_name, strnlen(req->template_name, sizeof req->template_name));
    }
    return false;
}

size_t sim_provision_topic(const sim_prov_req *req, const char *suffix, char *buf, size_t buflen)
{
    if (!req || !req_ok(req) || !buf)
        return 0;
    const char *fmt = req->cbor ? "cbor" : "json";
    if (!suffix)
        suffix = "";
    int n;
    switch (req->op) {
    case SIM_PROV_CREATE_KEYS:
        n = snprintf(buf, buflen, T_CREATE "%s%s", fmt, suffix);
        break;
    case SIM_PROV_CREATE_FROM_CSR:
        n = snprintf(buf, buflen, T_CSR "%s%s", fmt, suffix);
        break;
    default:
        n = snprintf(buf, buflen, T_TPL "%s" T_PROV "%s%s", req->template_name, fmt, suffix);
        break;
    }
    if (n < 0 || (size_t)n >= buflen)
        return 0;
    return (size_t)n;
}

/* ---- CBOR in: libcbor's streaming decoder building a cJSON tree -------------
 * Not cbor_load(): its tree is freed recursively and has no depth limit, so a
 * request of nested one-byte arrays could exhaust the stack; here the depth is
 * bounded and every item is checked as it comes. */

typedef struct {
    cJSON *node;
    size_t left; /* items still due (a map counts keys and values); unused when indefinite */
    bool indef;
    char *key; /* a map's pending key */
} cb_frame;

typedef struct {
    cb_frame st[CBOR_MAX_DEPTH];
    size_t depth;
    cJSON *root;
    size_t len; /* input bytes: no container can hold more items */
    bool failed, done, tag;
    const char *err;
    unsigned called;
    bool in_str; /* inside an indefinite text string */
    char *sbuf;
    size_t slen;
} cb_ctx;

static void cb_fail(cb_ctx *c, const char *why)
{
    if (!c->failed) {
        c->failed = true;
        c->err = why;
    }
}

/* Pops every finished definite container; the whole item is done at depth 0. */
static void cb_settle(cb_ctx *c)
{
    while (c->depth > 0) {
        cb_frame *f = &c->st[c->depth - 1];
        if (f->indef || f->left > 0)
            break;
        c->depth--;
    }
    if (c->depth == 0)
        c->done = true;
}

/* Adds an item where the stream is; a container with items due becomes the
 * new top (`count` items, or indefinite). */
static void cb_add(cb_ctx *c, cJSON *item, bool container, size_t count, bool indef)
{
    c->called++;
    if (!item)
        cb_fail(c, "out of memory");
    if (c->failed || c->done || c->in_str) {
        cb_fail(c, "malformed CBOR");
        cJSON_Delete(item);
        return;
    }
    c->tag = false;
    if (c->depth == 0) {
        c->root = item;
    } else {
        cb_frame *f = &c->st[c->depth - 1];
        if (!f->indef)
            f->left--;
        if (cJSON_IsObject(f->node) && !f->key) {
            if (!cJSON_IsString(item)) {
                cb_fail(c, "a map key is not a text string");
                cJSON_Delete(item);
                return;
            }
            f->key = xstrdup(item->valuestring);
            cJSON_Delete(item);
            if (!f->key)
                cb_fail(c, "out of memory");
            cb_settle(c);
            return;
        }
        if (cJSON_IsObject(f->node)) {
            bool ok = cJSON_AddItemToObject(f->node, f->key, item);
            xfree(f->key);
            f->key = NULL;
            if (!ok) {
                cJSON_Delete(item);
                cb_fail(c, "out of memory");
                return;
            }
        } else {
            cJSON_AddItemToArray(f->node, item);
        }
    }
    if (container && (indef || count > 0)) {
        if (c->depth == CBOR_MAX_DEPTH) {
            cb_fail(c, "CBOR nested too deeply");
            return;
        }
        c->st[c->depth++] = (cb_frame){.node = item, .left = count, .indef = indef, .key = NULL};
        return;
    }
    cb_settle(c);
}

static void cb_number(cb_ctx *c, double v)
{
    if (!isfinite(v)) {
        c->called++;
        cb_fail(c, "a number is not finite");
        return;
    }
    cb_add(c, cJSON_CreateNumber(v), false, 0, false);
}

static void cb_u8(void *ctx, uint8_t v)
{
    cb_number(ctx, (double)v);
}
static void cb_u16(void *ctx, uint16_t v)
{
    cb_number(ctx, (double)v);
}
static void cb_u32(void *ctx, uint32_t v)
{
    cb_number(ctx, (double)v);
}
static void cb_u64(void *ctx, uint64_t v)
{
    cb_number(ctx, (double)v);
}
static void cb_n8(void *ctx, uint8_t v)
{
    cb_number(ctx, -1.0 - (double)v);
}
static void cb_n16(void *ctx, uint16_t v)
{
    cb_number(ctx, -1.0 - (double)v);
}
static void cb_n32(void *ctx, uint32_t v)
{
    cb_number(ctx, -1.0 - (double)v);
}
static void cb_n64(void *ctx, uint64_t v)
{
    cb_number(ctx, -1.0 - (double)v);
}
static void cb_f4(void *ctx, float v)
{
    cb_number(ctx, (double)v);
}
static void cb_f8(void *ctx, double v)
{
    cb_number(ctx, v);
}

static bool text_ok(const unsigned char *d, size_t n)
{
    return iotc_mqtt_utf8_valid(d, n, NULL); /* also refuses NUL */
}

static void cb_string(void *ctx, cbor_data d, size_t n)
{
    cb_ctx *c = ctx;
    if (c->in_str) { /* a chunk of an indefinite string */
        c->called++;
        if (c->failed)
            return;
        char *nb = xmalloc(c->slen + n + 1);
        if (!nb) {
            cb_fail(c, "out of memory");
            return;
        }
        if (c->slen)
            memcpy(nb, c->sbuf, c->slen);
        memcpy(nb + c->slen, d, n);
        nb[c->slen + n] = '\0';
        xfree(c->sbuf);
        c->sbuf = nb;
        c->slen += n;
        return;
    }
    if (!text_ok(d, n)) {
        c->called++;
        cb_fail(c, "a text string is not UTF-8 or holds NUL");
        return;
    }
    char *s = xstrndup((const char *)d, n);
    cb_add(c, s ? cJSON_CreateString(s) : NULL, false, 0, false);
    xfree(s);
}

static void cb_string_start(void *ctx)
{
    cb_ctx *c = ctx;
    if (c->in_str || c->done) {
        c->called++;
        cb_fail(c, "malformed CBOR");
        return;
    }
    c->called++;
    c->in_str = true;
    c->slen = 0;
    xfree(c->sbuf);
    c->sbuf = NULL;
}

static void cb_bytes(void *ctx, cbor_data d, size_t n)
{
    (void)d;
    (void)n;
    cb_ctx *c = ctx;
    c->called++;
    cb_fail(c, "byte strings are not supported");
}

static void cb_bytes_start(void *ctx)
{
    cb_ctx *c = ctx;
    c->called++;
    cb_fail(c, "byte strings are not supported");
}

static void cb_array(void *ctx, size_t n)
{
    cb_ctx *c = ctx;
    if (n > c->len) {
        c->called++;
        cb_fail(c, "an array is longer than the payload");
        return;
    }
    cb_add(c, cJSON_CreateArray(), true, n, false);
}

static void cb_indef_array(void *ctx)
{
    cb_add(ctx, cJSON_CreateArray(), true, 0, true);
}

static void cb_map(void *ctx, size_t n)
{
    cb_ctx *c = ctx;
    if (n > c->len) {
        c->called++;
        cb_fail(c, "a map is longer than the payload");
        return;
    }
    cb_add(c, cJSON_CreateObject(), true, 2 * n, false);
}

static void cb_indef_map(void *ctx)
{
    cb_add(ctx, cJSON_CreateObject(), true, 0, true);
}

static void cb_tag(void *ctx, uint64_t t)
{
    (void)t;
    cb_ctx *c = ctx;
    c->called++;
    if (c->in_str)
        cb_fail(c, "malformed CBOR");
    c->tag = true; /* skipped: the tagged item follows */
}

static void cb_null(void *ctx)
{
    cb_add(ctx, cJSON_CreateNull(), false, 0, false);
}

static void cb_bool(void *ctx, bool v)
{
    cb_add(ctx, cJSON_CreateBool(v), false, 0, false);
}

static void cb_break(void *ctx)
{
    cb_ctx *c = ctx;
    if (c->in_str) {
        c->called++;
        c->in_str = false;
        if (c->failed)
            return;
        if (c->tag) {
            cb_fail(c, "malformed CBOR");
            return;
        }
        const char *s = c->sbuf ? c->sbuf : "";
        if (!text_ok((const unsigned char *)s, c->slen) || strlen(s) != c->slen) {
            cb_fail(c, "a text string is not UTF-8 or holds NUL");
            return;
        }
        c->called--; /* cb_add counts it */
        cb_add(c, cJSON_CreateString(s), false, 0, false);
        xfree(c->sbuf);
        c->sbuf = NULL;
        c->slen = 0;
        return;
    }
    c->called++;
    if (c->failed)
        return;
    if (c->depth == 0 || !c->st[c->depth - 1].indef || c->st[c->depth - 1].key || c->tag) {
        cb_fail(c, "malformed CBOR (stray break)");
        return;
    }
    c->depth--;
    cb_settle(c);
}

static const struct cbor_callbacks CB = {
    .uint8 = cb_u8,
    .uint16 = cb_u16,
    .uint32 = cb_u32,
    .uint64 = cb_u64,
    .negint64 = cb_n64,
    .negint32 = cb_n32,
    .negint16 = cb_n16,
    .negint8 = cb_n8,
    .byte_string_start = cb_bytes_start,
    .byte_string = cb_bytes,
    .string = cb_string,
    .string_start = cb_string_start,
    .indef_array_start = cb_indef_array,
    .array_start = cb_array,
    .indef_map_start = cb_indef_map,
    .map_start = cb_map,
    .tag = cb_tag,
    .float2 = cb_f4,
    .float4 = cb_f4,
    .float8 = cb_f8,
    .undefined = cb_null,
    .null = cb_null,
    .boolean = cb_bool,
    .indef_break = cb_break,
};

/* One CBOR item filling d[0..n) exactly, as a cJSON tree; NULL with err. */
static cJSON *cbor_to_json(const uint8_t *d, size_t n, const char **err)
{
    cb_ctx c;
    memset(&c, 0, sizeof c);
    c.len = n;
    size_t off = 0;
    while (off < n && !c.done && !c.failed) {
        c.called = 0;
        struct cbor_decoder_result r = cbor_stream_decode(d + off, n - off, &CB, &c);
        if (r.status != CBOR_DECODER_FINISHED || r.read == 0) {
            cb_fail(&c, r.status == CBOR_DECODER_NEDATA ? "truncated CBOR" : "malformed CBOR");
            break;
        }
        if (c.called == 0) /* something libcbor has no callback for (a simple value) */
            cb_fail(&c, "unsupported CBOR item");
        off += r.read;
    }
    if (!c.failed && (!c.done || off != n))
        cb_fail(&c, c.done ? "trailing bytes after the CBOR item" : "truncated CBOR");
    for (size_t i = 0; i < c.depth; i++)
        xfree(c.st[i].key);
    xfree(c.sbuf);
    if (c.failed) {
        cJSON_Delete(c.root);
        *err = c.err;
        return NULL;
    }
    return c.root;
}

/* ---- CBOR out ------------------------------------------------------------------ */

typedef struct {
    uint8_t *b;
    size_t n, cap;
    bool oom;
} obuf;

static void ob_put(obuf *o, const void *d, size_t n)
{
    if (o->oom)
        return;
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + n)
            cap *= 2;
        uint8_t *nb = xmalloc(cap);
        if (!nb) {
            o->oom = true;
            return;
        }
        if (o->n)
            memcpy(nb, o->b, o->n);
        xfree(o->b);
        o->b = nb;
        o->cap = cap;
    }
    memcpy(o->b + o->n, d, n);
    o->n += n;
}

static void json_to_cbor(obuf *o, const cJSON *j)
{
    unsigned char h[9];
    size_t hn = 0;
    if (cJSON_IsObject(j) || cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j);
        hn = cJSON_IsObject(j) ? cbor_encode_map_start(n, h, sizeof h) : cbor_encode_array_start(n, h, sizeof h);
        ob_put(o, h, hn);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (cJSON_IsObject(j)) {
                const char *k = c->string ? c->string : "";
                size_t kn = strlen(k);
                ob_put(o, h, cbor_encode_string_start(kn, h, sizeof h));
                ob_put(o, k, kn);
            }
            json_to_cbor(o, c);
        }
        return;
    }
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        size_t n = strlen(s);
        ob_put(o, h, cbor_encode_string_start(n, h, sizeof h));
        ob_put(o, s, n);
        return;
    }
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (whole(d))
            hn = d >= 0 ? cbor_encode_uint((uint64_t)d, h, sizeof h)
                        : cbor_encode_negint((uint64_t)(-d - 1), h, sizeof h);
        else
            hn = cbor_encode_double(d, h, sizeof h);
    } else if (cJSON_IsBool(j)) {
        hn = cbor_encode_bool(cJSON_IsTrue(j), h, sizeof h);
    } else {
        hn = cbor_encode_null(h, sizeof h);
    }
    ob_put(o, h, hn);
}

/* ---- request payloads ------------------------------------------------------- */

/* One JSON value filling s[0..n) (whitespace around it allowed), UTF-8
 * without NUL; NULL otherwise.  (cJSON_Parse accepts trailing bytes.) */
static cJSON *json_exact(const char *s, size_t n)
{
    if (!iotc_mqtt_utf8_valid((const uint8_t *)s, n, NULL))
        return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, false);
    if (!j)
        return NULL;
    size_t at = (size_t)(end - s);
    while (at < n && (s[at] == ' ' || s[at] == '\t' || s[at] == '\r' || s[at] == '\n'))
        at++;
    if (at != n) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* 0 with *out (NULL for an empty payload), or -1 with a message. */
static int decode_payload(bool cbor, const uint8_t *d, size_t n, cJSON **out, char *msg, size_t msglen)
{
    *out = NULL;
    if (n == 0)
        return 0;
    if (cbor) {
        const char *err = NULL;
        *out = cbor_to_json(d, n, &err);
        if (!*out) {
            setf(msg, msglen, "The payload is not valid CBOR: %s.", err ? err : "malformed");
            return -1;
        }
        return 0;
    }
    if (!iotc_mqtt_utf8_valid(d, n, NULL)) {
        setf(msg, msglen, "The payload is not valid UTF-8.");
        return -1;
    }
    cJSON *j = json_exact((const char *)d, n);
    if (!j) {
        setf(msg, msglen, "The payload is not valid JSON.");
        return -1;
    }
    *out = j;
    return 0;
}

/* ---- paths, for messages that name the key --------------------------------- */

typedef struct {
    char s[PATH_MAX_LEN];
    size_t n;
} pathbuf;

static size_t path_key(pathbuf *pb, const char *key)
{
    size_t old = pb->n;
    int w = snprintf(pb->s + pb->n, sizeof pb->s - pb->n, "%s%s", pb->n ? "." : "", key);
    if (w > 0 && pb->n + (size_t)w >= sizeof pb->s) {
        pb->n = utf8_cut(pb->s, sizeof pb->s - 1);
        pb->s[pb->n] = '\0';
    } else if (w > 0) {
        pb->n += (size_t)w;
    }
    return old;
}

static size_t path_idx(pathbuf *pb, size_t i)
{
    size_t old = pb->n;
    int w = snprintf(pb->s + pb->n, sizeof pb->s - pb->n, "[%zu]", i);
    if (w > 0)
        pb->n = pb->n + (size_t)w >= sizeof pb->s ? sizeof pb->s - 1 : pb->n + (size_t)w;
    return old;
}

static void path_set(pathbuf *pb, size_t n)
{
    pb->n = n;
    pb->s[n] = '\0';
}

/* ---- intrinsic functions: shared by the load check and the evaluator ----- */

static const char *const FNS[] = {"Ref", "Fn::Join", "Fn::Select", "Fn::FindInMap", "Fn::Split", "Fn::Sub"};
#define FN_LIST "Ref, Fn::Join, Fn::Select, Fn::FindInMap, Fn::Split, Fn::Sub"

static bool fn_key(const char *k)
{
    return k && (strcmp(k, "Ref") == 0 || strncmp(k, "Fn::", 4) == 0);
}

static bool has_fn_key(const cJSON *n)
{
    if (!cJSON_IsObject(n))
        return false;
    for (const cJSON *c = n->child; c; c = c->next)
        if (fn_key(c->string))
            return true;
    return false;
}

/* The function an object calls, when it is exactly one function call. */
static const char *fn_of(const cJSON *n)
{
    if (!cJSON_IsObject(n) || !n->child || n->child->next || !fn_key(n->child->string))
        return NULL;
    return n->child->string;
}

static bool fn_known(const char *k)
{
    for (size_t i = 0; i < sizeof FNS / sizeof FNS[0]; i++)
        if (strcmp(FNS[i], k) == 0)
            return true;
    return false;
}

/* Thing, thing type, group names [DOC API]: 1..128 of [a-zA-Z0-9:_-]. */
static bool thing_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ':' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

/* Policy names [DOC API]: 1..128 of [\w+=,.@-]. */
static bool policy_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || strchr("_+=,.@-", c)))
            return false;
    }
    return true;
}

/* The mapping value of Fn::FindInMap, or NULL. */
static const cJSON *map_find(const cJSON *mappings, const char *m, const char *k1, const char *k2, int *missing)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(mappings, m);
    *missing = 0;
    if (!cJSON_IsObject(a))
        return NULL;
    *missing = 1;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(a, k1);
    if (!cJSON_IsObject(b))
        return NULL;
    *missing = 2;
    return cJSON_GetObjectItemCaseSensitive(b, k2);
}

/* Fn::Sub's ${...} syntax: NULL when fine, else what is wrong. */
static const char *sub_syntax(const char *s)
{
    for (const char *q = strstr(s, "${"); q; q = strstr(q, "${")) {
        const char *e = strchr(q + 2, '}');
        if (!e)
            return "an unterminated ${";
        if (e == q + 2 || (q[2] == '!' && e == q + 3))
            return "an empty ${}";
        q = e + 1;
    }
    return NULL;
}

/* Override values, upper-cased in place into out (16 bytes); false when unknown. */
static bool override_value(const char *v, bool merge_ok, char *out)
{
    static const char *const V[] = {"DO_NOTHING", "REPLACE", "FAIL", "MERGE"};
    for (size_t i = 0; i < 4; i++)
        if (ieq(v, V[i])) {
            if (i == 3 && !merge_ok)
                return false;
            strcpy(out, V[i]);
            return true;
        }
    return false;
}

/* A thing's override key in its property form, or NULL. */
static const char *thing_override_key(const char *k)
{
    if (strcmp(k, "AttributePayload") == 0 || strcmp(k, "ATTRIBUTE_PAYLOAD") == 0)
        return "AttributePayload";
    if (strcmp(k, "ThingTypeName") == 0 || strcmp(k, "THING_TYPE_NAME") == 0)
        return "ThingTypeName";
    if (strcmp(k, "ThingGroups") == 0 || strcmp(k, "THING_GROUPS") == 0)
        return "ThingGroups";
    return NULL;
}

/* ---- template validation at load ------------------------------------------- */

typedef struct {
    pathbuf pb;
    char *why;
    size_t whylen;
    const cJSON *mappings;
} vctx;

static int verr(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int verr(vctx *v, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_fix(msg);
    setf(v->why, v->whylen, "%s: %s", v->pb.n ? v->pb.s : "(template)", msg);
    return -1;
}

static int check_value(vctx *v, const cJSON *n, int depth);
static int check_fn(vctx *v, const char *name, const cJSON *arg, int depth);

/* A call or a literal string (what gives a string). */
static int check_strish(vctx *v, const cJSON *n, int depth, const char *what)
{
    if (str_ok(n))
        return 0;
    if (has_fn_key(n))
        return check_value(v, n, depth);
    return verr(v, "%s must be a string or an intrinsic function", what);
}

/* A literal list (of strings or calls) or a call (what gives a list). */
static int check_listish(vctx *v, const cJSON *n, int depth, const char *what)
{
    if (cJSON_IsArray(n) || has_fn_key(n))
        return check_value(v, n, depth);
    return verr(v, "%s must be a list or an intrinsic function", what);
}

static int check_arg(vctx *v, const cJSON *args, size_t i, int depth, int kind, const char *what)
{
    size_t mark = path_idx(&v->pb, i);
    const cJSON *a = cJSON_GetArrayItem(args, (int)i);
    int rc;
    if (kind == 0)
        rc = check_strish(v, a, depth, what);
    else if (kind == 1)
        rc = check_listish(v, a, depth, what);
    else
        rc = check_value(v, a, depth);
    path_set(&v->pb, mark);
    return rc;
}

static int check_fn(vctx *v, const char *name, const cJSON *arg, int depth)
{
    size_t mark = path_key(&v->pb, name);
    int rc = 0;
    if (!fn_known(name)) {
        rc = verr(v, "%s is not supported (the functions are " FN_LIST ")", name);
    } else if (strcmp(name, "Ref") == 0) {
        if (!str_ok(arg) || !arg->valuestring[0])
            rc = verr(v, "Ref takes a parameter name");
    } else if (strcmp(name, "Fn::Join") == 0) {
        if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2)
            rc = verr(v, "Fn::Join takes [delimiter, [values]]");
        else if (check_arg(v, arg, 0, depth, 0, "the delimiter") || check_arg(v, arg, 1, depth, 1, "the values"))
            rc = -1;
    } else if (strcmp(name, "Fn::Select") == 0) {
        const cJSON *i = cJSON_GetArrayItem(arg, 0);
        if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2)
            rc = verr(v, "Fn::Select takes [index, [values]]");
        else if (cJSON_IsNumber(i) && (i->valuedouble < 0 || !whole(i->valuedouble)))
            rc = verr(v, "Fn::Select: the index must be a non-negative integer");
        else if (!cJSON_IsNumber(i) && check_arg(v, arg, 0, depth, 0, "the index"))
            rc = -1;
        else if (check_arg(v, arg, 1, depth, 1, "the values"))
            rc = -1;
    } else if (strcmp(name, "Fn::FindInMap") == 0) {
        if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 3) {
            rc = verr(v, "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]");
        } else if (check_arg(v, arg, 0, depth, 0, "MapName") || check_arg(v, arg, 1, depth, 0, "TopLevelKey") ||
                   check_arg(v, arg, 2, depth, 0, "SecondLevelKey")) {
            rc = -1;
        } else {
            const cJSON *m = arg->child, *k1 = m->next, *k2 = k1->next;
            int missing;
            if (str_ok(m) && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v->mappings, m->valuestring)))
                rc = verr(v, "Fn::FindInMap: no map %s in Mappings", m->valuestring);
            else if (str_ok(m) && str_ok(k1) && str_ok(k2) &&
                     !map_find(v->mappings, m->valuestring, k1->valuestring, k2->valuestring, &missing))
                rc = verr(v, "Fn::FindInMap: Mappings.%s has no %s.%s", m->valuestring, k1->valuestring,
                          k2->valuestring);
        }
    } else if (strcmp(name, "Fn::Split") == 0) {
        const cJSON *dl = cJSON_GetArrayItem(arg, 0);
        if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2)
            rc = verr(v, "Fn::Split takes [delimiter, string]");
        else if (str_ok(dl) && !dl->valuestring[0])
            rc = verr(v, "Fn::Split: the delimiter is empty");
        else if (check_arg(v, arg, 0, depth, 0, "the delimiter") || check_arg(v, arg, 1, depth, 0, "the string"))
            rc = -1;
    } else { /* Fn::Sub */
        const cJSON *s = cJSON_IsArray(arg) ? cJSON_GetArrayItem(arg, 0) : arg;
        const cJSON *vars = cJSON_IsArray(arg) ? cJSON_GetArrayItem(arg, 1) : NULL;
        const char *bad;
        if (cJSON_IsArray(arg) && (cJSON_GetArraySize(arg) != 2 || !str_ok(s) || !cJSON_IsObject(vars)))
            rc = verr(v, "Fn::Sub takes a string or [string, {variables}]");
        else if (!str_ok(s))
            rc = verr(v, "Fn::Sub takes a string or [string, {variables}]");
        else if ((bad = sub_syntax(s->valuestring)) != NULL)
            rc = verr(v, "Fn::Sub: %s", bad);
        else if (vars) {
            size_t m2 = path_idx(&v->pb, 1);
            for (const cJSON *c = vars->child; c && rc == 0; c = c->next) {
                size_t m3 = path_key(&v->pb, c->string);
                rc = check_strish(v, c, depth, "a variable");
                path_set(&v->pb, m3);
            }
            path_set(&v->pb, m2);
        }
    }
    if (rc == 0)
        path_set(&v->pb, mark);
    return rc;
}

static int check_value(vctx *v, const cJSON *n, int depth)
{
    if (depth > TPL_MAX_DEPTH)
        return verr(v, "nested deeper than %d levels", TPL_MAX_DEPTH);
    if (cJSON_IsObject(n)) {
        if (has_fn_key(n)) {
            if (!fn_of(n))
                return verr(v, "an intrinsic function object has exactly one key");
            return check_fn(v, n->child->string, n->child, depth + 1);
        }
        for (const cJSON *c = n->child; c; c = c->next) {
            size_t mark = path_key(&v->pb, c->string);
            if (check_value(v, c, depth + 1))
                return -1;
            path_set(&v->pb, mark);
        }
    } else if (cJSON_IsArray(n)) {
        size_t i = 0;
        for (const cJSON *c = n->child; c; c = c->next, i++) {
            size_t mark = path_idx(&v->pb, i);
            if (check_value(v, c, depth + 1))
                return -1;
            path_set(&v->pb, mark);
        }
    }
    return 0;
}

/* Checks the member `key` of obj with check(); absent is fine unless required. */
#define WITH_KEY(v, key, stmt)                          \
    do {                                                \
        size_t mark_ = path_key(&(v)->pb, (key));       \
        if (stmt)                                       \
            return -1;                                  \
        path_set(&(v)->pb, mark_);                      \
    } while (0)

static int check_parameters(vctx *v, const cJSON *ps)
{
    if (!cJSON_IsObject(ps))
        return verr(v, "must be an object");
    for (const cJSON *c = ps->child; c; c = c->next) {
        size_t mark = path_key(&v->pb, c->string);
        if (!c->string[0])
            return verr(v, "a parameter name is empty");
        if (!cJSON_IsObject(c))
            return verr(v, "must be an object like {\"Type\": \"String\"}");
        for (const cJSON *k = c->child; k; k = k->next)
            if (strcmp(k->string, "Type") != 0 && strcmp(k->string, "Default") != 0)
                WITH_KEY(v, k->string, verr(v, "unknown key (a parameter has Type and an optional Default)"));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "Type");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "Default");
        if (!t)
            return verr(v, "Type is missing");
        if (!str_ok(t) || strcmp(t->valuestring, "String") != 0)
            WITH_KEY(v, "Type", verr(v, "must be \"String\""));
        if (d && !str_ok(d))
            WITH_KEY(v, "Default", verr(v, "must be a string"));
        path_set(&v->pb, mark);
    }
    return 0;
}

static int check_mappings(vctx *v, const cJSON *ms)
{
    if (!cJSON_IsObject(ms))
        return verr(v, "must be an object");
    for (const cJSON *m = ms->child; m; m = m->next) {
        size_t m1 = path_key(&v->pb, m->string);
        if (!cJSON_IsObject(m))
            return verr(v, "a map must be an object of objects");
        for (const cJSON *a = m->child; a; a = a->next) {
            size_t m2 = path_key(&v->pb, a->string);
            if (!cJSON_IsObject(a))
                return verr(v, "must be an object (maps have two levels)");
            for (const cJSON *b = a->child; b; b = b->next) {
                size_t m3 = path_key(&v->pb, b->string);
                bool ok = str_ok(b);
                if (cJSON_IsArray(b)) {
                    ok = true;
                    for (const cJSON *e = b->child; e; e = e->next)
                        ok = ok && str_ok(e);
                }
                if (!ok)
                    return verr(v, "must be a string or a list of strings (no parameters or intrinsic functions "
                                   "in Mappings)");
                path_set(&v->pb, m3);
            }
            path_set(&v->pb, m2);
        }
        path_set(&v->pb, m1);
    }
    return 0;
}

static int check_thing(vctx *v, const cJSON *props, const cJSON *ov)
{
    static const char *const OK[] = {"ThingName", "AttributePayload", "ThingTypeName", "ThingGroups", "BillingGroup"};
    size_t mark = path_key(&v->pb, "Properties");
    for (const cJSON *c = props->child; c; c = c->next) {
        bool known = false;
        for (size_t i = 0; i < 5; i++)
            known = known || strcmp(c->string, OK[i]) == 0;
        if (!known)
            WITH_KEY(v, c->string,
                     verr(v, "not a property of AWS::IoT::Thing the simulator knows (ThingName, AttributePayload, "
                             "ThingTypeName, ThingGroups, BillingGroup)"));
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(props, "ThingName");
    if (!name)
        return verr(v, "ThingName is missing");
    WITH_KEY(v, "ThingName", check_strish(v, name, 3, "ThingName"));
    if (str_ok(name) && !thing_name_ok(name->valuestring))
        WITH_KEY(v, "ThingName",
                 verr(v, "\"%s\" is not a valid thing name (1-128 of a-zA-Z0-9:_-)", name->valuestring));
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(props, "AttributePayload");
    if (attrs) {
        size_t m2 = path_key(&v->pb, "AttributePayload");
        if (!cJSON_IsObject(attrs) || has_fn_key(attrs))
            return verr(v, "must be an object of attribute names and values");
        for (const cJSON *a = attrs->child; a; a = a->next)
            WITH_KEY(v, a->string, check_strish(v, a, 4, "an attribute value"));
        path_set(&v->pb, m2);
    }
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(props, "ThingTypeName")) != NULL)
        WITH_KEY(v, "ThingTypeName", check_strish(v, x, 3, "ThingTypeName"));
    if ((x = cJSON_GetObjectItemCaseSensitive(props, "BillingGroup")) != NULL)
        WITH_KEY(v, "BillingGroup", check_strish(v, x, 3, "BillingGroup"));
    if ((x = cJSON_GetObjectItemCaseSensitive(props, "ThingGroups")) != NULL)
        WITH_KEY(v, "ThingGroups", check_listish(v, x, 3, "ThingGroups"));
    path_set(&v->pb, mark);
    if (ov) {
        mark = path_key(&v->pb, "OverrideSettings");
        if (!cJSON_IsObject(ov))
            return verr(v, "must be an object");
        for (const cJSON *c = ov->child; c; c = c->next) {
            const char *k = thing_override_key(c->string);
            char val[16];
            if (!k)
                WITH_KEY(v, c->string, verr(v, "not an override of a thing (AttributePayload, ThingTypeName, "
                                               "ThingGroups)"));
            if (!str_ok(c) || !override_value(c->valuestring, strcmp(k, "ThingTypeName") != 0, val))
                WITH_KEY(v, c->string,
                         verr(v, "must be DO_NOTHING, REPLACE, FAIL%s",
                              strcmp(k, "ThingTypeName") != 0 ? " or MERGE" : " (MERGE is for AttributePayload and "
                                                                               "ThingGroups only)"));
        }
        path_set(&v->pb, mark);
    }
    return 0;
}

static int check_certificate(vctx *v, const cJSON *props, const cJSON *ov)
{
    size_t mark = path_key(&v->pb, "Properties");
    for (const cJSON *c = props->child; c; c = c->next) {
        if (strcmp(c->string, "CertificateSigningRequest") == 0 || strcmp(c->string, "CertificatePem") == 0 ||
            strcmp(c->string, "CACertificatePem") == 0)
            WITH_KEY(v, c->string, verr(v, "fleet provisioning templates may only use CertificateId"));
        if (strcmp(c->string, "CertificateId") != 0 && strcmp(c->string, "Status") != 0)
            WITH_KEY(v, c->string, verr(v, "not a property of AWS::IoT::Certificate (CertificateId, Status)"));
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(props, "CertificateId");
    if (!id)
        return verr(v, "CertificateId is missing (normally {\"Ref\": \"AWS::IoT::Certificate::Id\"})");
    WITH_KEY(v, "CertificateId", check_strish(v, id, 3, "CertificateId"));
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(props, "Status");
    if (st) {
        WITH_KEY(v, "Status", check_strish(v, st, 3, "Status"));
        if (str_ok(st) && !ieq(st->valuestring, "ACTIVE") && !ieq(st->valuestring, "INACTIVE"))
            WITH_KEY(v, "Status", verr(v, "must be ACTIVE or INACTIVE"));
    }
    path_set(&v->pb, mark);
    if (ov) {
        mark = path_key(&v->pb, "OverrideSettings");
        if (!cJSON_IsObject(ov))
            return verr(v, "must be an object");
        for (const cJSON *c = ov->child; c; c = c->next) {
            char val[16];
            if (strcmp(c->string, "Status") != 0)
                WITH_KEY(v, c->string, verr(v, "not an override of a certificate (Status)"));
            if (!str_ok(c) || !override_value(c->valuestring, false, val))
                WITH_KEY(v, c->string, verr(v, "must be DO_NOTHING, REPLACE or FAIL"));
        }
        path_set(&v->pb, mark);
    }
    return 0;
}

static int check_policy(vctx *v, const cJSON *props, const cJSON *ov)
{
    if (ov)
        WITH_KEY(v, "OverrideSettings", verr(v, "OverrideSettings are not available for policy resources"));
    size_t mark = path_key(&v->pb, "Properties");
    for (const cJSON *c = props->child; c; c = c->next)
        if (strcmp(c->string, "PolicyName") != 0 && strcmp(c->string, "PolicyDocument") != 0)
            WITH_KEY(v, c->string, verr(v, "not a property of AWS::IoT::Policy (PolicyName, PolicyDocument)"));
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(props, "PolicyName");
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(props, "PolicyDocument");
    if (!name == !doc)
        return verr(v, "give PolicyName or PolicyDocument, not both and not neither");
    if (name) {
        WITH_KEY(v, "PolicyName", check_strish(v, name, 3, "PolicyName"));
        if (str_ok(name) && !policy_name_ok(name->valuestring))
            WITH_KEY(v, "PolicyName", verr(v, "\"%s\" is not a valid policy name", name->valuestring));
    } else if (str_ok(doc)) {
        cJSON *j = json_exact(doc->valuestring, strlen(doc->valuestring));
        bool ok = cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok)
            WITH_KEY(v, "PolicyDocument", verr(v, "the string does not hold a JSON object"));
    } else if (cJSON_IsObject(doc)) {
        WITH_KEY(v, "PolicyDocument", check_value(v, doc, 3));
    } else {
        WITH_KEY(v, "PolicyDocument", verr(v, "must be an object, a string holding one, or an intrinsic function"));
    }
    path_set(&v->pb, mark);
    return 0;
}

static int check_resources(vctx *v, const cJSON *rs)
{
    if (!cJSON_IsObject(rs))
        return verr(v, "must be an object");
    int things = 0, certs = 0, policies = 0;
    for (const cJSON *r = rs->child; r; r = r->next) {
        size_t mark = path_key(&v->pb, r->string);
        if (!cJSON_IsObject(r))
            return verr(v, "a resource must be an object with Type and Properties");
        for (const cJSON *k = r->child; k; k = k->next)
            if (strcmp(k->string, "Type") != 0 && strcmp(k->string, "Properties") != 0 &&
                strcmp(k->string, "OverrideSettings") != 0)
                WITH_KEY(v, k->string, verr(v, "unknown key (a resource has Type, Properties, OverrideSettings)"));
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "Type");
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(r, "Properties");
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(r, "OverrideSettings");
        if (!str_ok(type))
            return verr(v, "Type is missing or not a string");
        if (!cJSON_IsObject(props) || has_fn_key(props))
            return verr(v, "Properties is missing or not an object");
        int rc;
        if (strcmp(type->valuestring, "AWS::IoT::Thing") == 0) {
            if (++things > 1)
                return verr(v, "a template has at most one AWS::IoT::Thing");
            rc = check_thing(v, props, ov);
        } else if (strcmp(type->valuestring, "AWS::IoT::Certificate") == 0) {
            if (++certs > 1)
                return verr(v, "a template has at most one AWS::IoT::Certificate");
            rc = check_certificate(v, props, ov);
        } else if (strcmp(type->valuestring, "AWS::IoT::Policy") == 0) {
            if (++policies > SIM_PROV_MAX_POLICIES)
                return verr(v, "a template has at most %d AWS::IoT::Policy resources", SIM_PROV_MAX_POLICIES);
            rc = check_policy(v, props, ov);
        } else {
            WITH_KEY(v, "Type", verr(v, "\"%s\" is not AWS::IoT::Thing, AWS::IoT::Certificate or AWS::IoT::Policy",
                                     type->valuestring));
            rc = 0;
        }
        if (rc)
            return -1;
        path_set(&v->pb, mark);
    }
    if (certs == 0)
        return verr(v, "a fleet provisioning template needs an AWS::IoT::Certificate resource "
                       "(CertificateId {\"Ref\": \"AWS::IoT::Certificate::Id\"})");
    return 0;
}

static int check_device_config(vctx *v, const cJSON *dc)
{
    if (!cJSON_IsObject(dc) || has_fn_key(dc))
        return verr(v, "must be an object");
    for (const cJSON *c = dc->child; c; c = c->next) {
        size_t mark = path_key(&v->pb, c->string);
        if (cJSON_IsObject(c) && !has_fn_key(c))
            return verr(v, "nested objects are not supported in DeviceConfiguration");
        if (!str_ok(c) && !has_fn_key(c))
            return verr(v, "must be a string or an intrinsic function");
        if (check_value(v, c, 2))
            return -1;
        path_set(&v->pb, mark);
    }
    return 0;
}

static int check_template(vctx *v, const cJSON *t)
{
    if (!cJSON_IsObject(t))
        return verr(v, "a template is a JSON object");
    for (const cJSON *c = t->child; c; c = c->next)
        if (strcmp(c->string, "Parameters") != 0 && strcmp(c->string, "Mappings") != 0 &&
            strcmp(c->string, "Resources") != 0 && strcmp(c->string, "DeviceConfiguration") != 0)
            WITH_KEY(v, c->string, verr(v, "unknown section (a template has Parameters, Mappings, Resources, "
                                           "DeviceConfiguration)"));
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(t, "Parameters")) != NULL)
        WITH_KEY(v, "Parameters", check_parameters(v, x));
    if ((x = cJSON_GetObjectItemCaseSensitive(t, "Mappings")) != NULL)
        WITH_KEY(v, "Mappings", check_mappings(v, x));
    v->mappings = cJSON_GetObjectItemCaseSensitive(t, "Mappings");
    if ((x = cJSON_GetObjectItemCaseSensitive(t, "Resources")) == NULL)
        return verr(v, "Resources is missing");
    WITH_KEY(v, "Resources", check_resources(v, x));
    if ((x = cJSON_GetObjectItemCaseSensitive(t, "DeviceConfiguration")) != NULL)
        WITH_KEY(v, "DeviceConfiguration", check_device_config(v, x));
    return 0;
}

/* ---- templates -------------------------------------------------------------- */

static tpl *tpl_find(const sim_provision *p, const char *name, size_t *at)
{
    size_t lo = 0, hi = p->ntpl;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(p->tpls[mid].name, name);
        if (c == 0) {
            if (at)
                *at = mid;
            return &p->tpls[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (at)
        *at = lo;
    return NULL;
}

int sim_provision_template_put(sim_provision *p, const char *name, const char *body, size_t len, bool enabled,
                               char *why, size_t whylen)
{
    setf(why, whylen, "%s", "");
    if (!p || !name || !tpl_name_ok(name, strlen(name))) {
        setf(why, whylen, "template name: must be 1-%d of 0-9 A-Z a-z _ -", SIM_PROV_TEMPLATE_MAX);
        return -1;
    }
    if (!body) {
        setf(why, whylen, "(template): no body");
        return -1;
    }
    cJSON *j = json_exact(body, len);
    size_t size = len;
    if (cJSON_IsString(j)) { /* a templateBody string, as the AWS API takes it */
        cJSON *inner = json_exact(j->valuestring, strlen(j->valuestring));
        size = strlen(j->valuestring);
        cJSON_Delete(j);
        j = inner;
    }
    if (!j) {
        setf(why, whylen, "(template): not a JSON object, or a string holding one (valid UTF-8 JSON)");
        return -1;
    }
    if (size > p->cfg.max_template_bytes) {
        cJSON_Delete(j);
        setf(why, whylen, "(template): %zu bytes, more than the %" PRIu32 " allowed", size, p->cfg.max_template_bytes);
        return -1;
    }
    vctx v;
    memset(&v, 0, sizeof v);
    v.why = why;
    v.whylen = whylen;
    if (check_template(&v, j) != 0) {
        cJSON_Delete(j);
        return -1;
    }
    size_t at;
    tpl *t = tpl_find(p, name, &at);
    if (t) {
        cJSON_Delete(t->body);
        t->body = j;
        t->enabled = enabled;
        return 0;
    }
    if (p->ntpl >= p->cfg.max_templates) {
        cJSON_Delete(j);
        setf(why, whylen, "(template): already %zu templates, the most the simulator keeps", p->ntpl);
        return -1;
    }
    if (p->ntpl == p->tplcap) {
        size_t cap = p->tplcap ? p->tplcap * 2 : 8;
        tpl *nt = xmalloc(cap * sizeof *nt);
        if (!nt) {
            cJSON_Delete(j);
            setf(why, whylen, "(template): out of memory");
            return -1;
        }
        if (p->ntpl)
            memcpy(nt, p->tpls, p->ntpl * sizeof *nt);
        xfree(p->tpls);
        p->tpls = nt;
        p->tplcap = cap;
    }
    memmove(p->tpls + at + 1, p->tpls + at, (p->ntpl - at) * sizeof *p->tpls);
    memset(&p->tpls[at], 0, sizeof p->tpls[at]);
    strcpy(p->tpls[at].name, name);
    p->tpls[at].body = j;
    p->tpls[at].enabled = enabled;
    p->ntpl++;
    return 0;
}

int sim_provision_template_delete(sim_provision *p, const char *name)
{
    size_t at;
    if (!p || !name || !tpl_find(p, name, &at))
        return -1;
    cJSON_Delete(p->tpls[at].body);
    memmove(p->tpls + at, p->tpls + at + 1, (p->ntpl - at - 1) * sizeof *p->tpls);
    p->ntpl--;
    return 0;
}

size_t sim_provision_template_count(const sim_provision *p)
{
    return p ? p->ntpl : 0;
}

/* ---- tokens ------------------------------------------------------------------ */

static uint64_t rnd(sim_provision *p)
{
    if (p->cfg.random)
        return p->cfg.random(p->cfg.random_ctx);
    uint64_t z = (p->rng += 0x9E3779B97F4A7C15ULL); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static tok *tok_find(const sim_provision *p, const char *token, size_t *at)
{
    if (strlen(token) != SIM_PROV_TOKEN_LEN)
        return NULL;
    for (size_t i = 0; i < p->ntok; i++)
        if (strcmp(p->toks[i].token, token) == 0) {
            if (at)
                *at = i;
            return &p->toks[i];
        }
    return NULL;
}

/* -1 unknown, 0 expired, 1 used. */
static int spent_find(const sim_provision *p, const char *token)
{
    if (strlen(token) != SIM_PROV_TOKEN_LEN)
        return -1;
    for (size_t i = 0; i < p->ringn; i++)
        if (strcmp(p->ring[i].token, token) == 0)
            return p->ring[i].used ? 1 : 0;
    return -1;
}

static void spent_add(sim_provision *p, const char *token, bool used)
{
    spent *s = &p->ring[p->ringnext];
    strcpy(s->token, token);
    s->used = used;
    p->ringnext = (p->ringnext + 1) % p->ringcap;
    if (p->ringn < p->ringcap)
        p->ringn++;
}

/* Removes toks[at] (its strings are the caller's now). */
static void tok_remove(sim_provision *p, size_t at)
{
    memmove(p->toks + at, p->toks + at + 1, (p->ntok - at - 1) * sizeof *p->toks);
    p->ntok--;
}

/* A new token for cert_id (taken over on success): 0, or -1 (no memory, or
 * the random source keeps repeating itself). */
static int tok_issue(sim_provision *p, char *cert_id, const char *claim, const char *client, uint64_t now,
                     char *out)
{
    char t[SIM_PROV_TOKEN_LEN + 1];
    int tries = 0;
    do {
        if (++tries > 8)
            return -1;
        for (int i = 0; i < 4; i++)
            snprintf(t + 16 * i, 17, "%016" PRIx64, rnd(p));
    } while (tok_find(p, t, NULL) || spent_find(p, t) >= 0);
    if (p->ntok == p->tokcap) {
        size_t cap = p->tokcap ? p->tokcap * 2 : 16;
        tok *nt = xmalloc(cap * sizeof *nt);
        if (!nt)
            return -1;
        if (p->ntok)
            memcpy(nt, p->toks, p->ntok * sizeof *nt);
        xfree(p->toks);
        p->toks = nt;
        p->tokcap = cap;
    }
    tok *k = &p->toks[p->ntok];
    memset(k, 0, sizeof *k);
    k->claim = claim ? xstrdup(claim) : NULL;
    k->client = client ? xstrdup(client) : NULL;
    if ((claim && !k->claim) || (client && !k->client)) {
        xfree(k->claim);
        xfree(k->client);
        return -1;
    }
    strcpy(k->token, t);
    k->cert_id = cert_id;
    k->expires = now + p->cfg.token_ttl_s;
    p->ntok++;
    strcpy(out, t);
    return 0;
}

uint64_t sim_provision_next_expiry(const sim_provision *p)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; p && i < p->ntok; i++)
        if (p->toks[i].expires < next)
            next = p->toks[i].expires;
    return next;
}

uint64_t sim_provision_expire(sim_provision *p, uint64_t now_s)
{
    if (!p)
        return UINT64_MAX;
    size_t i = 0;
    while (i < p->ntok) {
        if (p->toks[i].expires > now_s) {
            i++;
            continue;
        }
        tok t = p->toks[i];
        tok_remove(p, i);
        spent_add(p, t.token, false);
        if (p->has_be && p->be.forget_cert)
            p->be.forget_cert(p->be.ctx, t.cert_id);
        tok_clear(&t);
    }
    return sim_provision_next_expiry(p);
}

size_t sim_provision_token_count(const sim_provision *p)
{
    return p ? p->ntok : 0;
}

/* ---- responses ------------------------------------------------------------------ */

typedef struct {
    sim_provision *p;
    const sim_prov_req *req;
    sim_prov_emit_fn emit;
    void *ctx;
    char *why;
    size_t whylen;
} hctx;

/* Serializes body as the request's format and emits it; 0, or -1 out of memory. */
static int respond(hctx *h, bool accepted, const cJSON *body)
{
    char topic[SIM_PROV_TOPIC_MAX + 1];
    if (!sim_provision_topic(h->req, accepted ? "/accepted" : "/rejected", topic, sizeof topic))
        return -1;
    if (h->req->cbor) {
        obuf o;
        memset(&o, 0, sizeof o);
        json_to_cbor(&o, body);
        if (o.oom) {
            xfree(o.b);
            return -1;
        }
        if (h->emit)
            h->emit(h->ctx, topic, o.b, o.n);
        xfree(o.b);
        return 0;
    }
    char *s = cJSON_PrintUnformatted(body);
    if (!s)
        return -1;
    if (h->emit)
        h->emit(h->ctx, topic, (const uint8_t *)s, strlen(s));
    xfree(s);
    return 0;
}

static const char *default_code(int status)
{
    switch (status) {
    case 403:
        return "AccessDenied";
    case 404:
        return "ResourceNotFound";
    case 409:
        return "ResourceConflictsException";
    case 429:
        return "ThrottlingException";
    case 503:
        return "ServiceUnavailable";
    default:
        return status >= 500 ? "InternalFailure" : "InvalidRequest";
    }
}

static int reject(hctx *h, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int reject(hctx *h, int status, const char *code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_fix(msg);
    setf(h->why, h->whylen, "%s: %s", code, msg);
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddNumberToObject(e, "statusCode", status) || !cJSON_AddStringToObject(e, "errorCode", code) ||
        !cJSON_AddStringToObject(e, "errorMessage", msg) || respond(h, false, e) != 0) {
        cJSON_Delete(e);
        if (status != 500)
            setf(h->why, h->whylen, "InternalFailure: out of memory (answering %s: %s)", code, msg);
        return 500;
    }
    cJSON_Delete(e);
    return status;
}

#define OOM(h) reject((h), 500, "InternalFailure", "Internal failure (out of memory).")

/* Emits body (taken over) on accepted. */
static int accept_with(hctx *h, cJSON *body)
{
    int rc = body ? respond(h, true, body) : -1;
    cJSON_Delete(body);
    if (rc != 0)
        return OOM(h);
    setf(h->why, h->whylen, "accepted");
    return 200;
}

/* ---- CreateKeysAndCertificate, CreateCertificateFromCsr ------------------------ */

static int create(hctx *h, const uint8_t *payload, size_t len, const char *claim, const char *client, uint64_t now)
{
    sim_provision *p = h->p;
    bool csr = h->req->op == SIM_PROV_CREATE_FROM_CSR;
    char msg[256];
    cJSON *j;
    if (decode_payload(h->req->cbor, payload, len, &j, msg, sizeof msg) != 0)
        return reject(h, 400, "InvalidPayload", "%s", msg);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return reject(h, 400, "InvalidPayload", "The payload must be a JSON object.");
    }
    const cJSON *c = csr ? cJSON_GetObjectItemCaseSensitive(j, "certificateSigningRequest") : NULL;
    if (csr && (!str_ok(c) || !c->valuestring[0])) {
        cJSON_Delete(j);
        return reject(h, 400, "InvalidPayload", "certificateSigningRequest is missing or not a non-empty string.");
    }
    if (p->ntok >= p->cfg.max_tokens) {
        cJSON_Delete(j);
        return reject(h, 429, "ThrottlingException",
                      "Rate exceeded: %zu certificate ownership tokens are outstanding, the most the simulator keeps.",
                      p->ntok);
    }
    if (!p->has_be || (csr ? !p->be.create_from_csr : !p->be.create_keys_and_cert)) {
        cJSON_Delete(j);
        return reject(h, 500, "InternalFailure", "The simulator has no certificate authority for this operation.");
    }
    char *id = NULL, *pem = NULL, *key = NULL;
    char bwhy[256] = "";
    int rc = csr ? p->be.create_from_csr(p->be.ctx, c->valuestring, &id, &pem, bwhy, sizeof bwhy)
                 : p->be.create_keys_and_cert(p->be.ctx, &id, &pem, &key, bwhy, sizeof bwhy);
    cJSON_Delete(j);
    if (rc != 0) {
        free(id);
        free(pem);
        free(key);
        int st = rc >= 400 && rc <= 599 ? rc : csr ? 400 : 500;
        const char *code = csr && st == 400 ? "InvalidCSR" : default_code(st);
        return reject(h, st, code, "%s",
                      bwhy[0]            ? bwhy
                      : csr && st == 400 ? "The CSR was refused."
                                         : "Internal failure.");
    }
    if (!id || !id[0] || !pem || (!csr && !key)) {
        if (id && id[0] && p->be.forget_cert)
            p->be.forget_cert(p->be.ctx, id);
        free(id);
        free(pem);
        free(key);
        return reject(h, 500, "InternalFailure", "The certificate authority returned no certificate.");
    }
    /* The certificate id moves into the token table: a copy in our allocator. */
    char *owned = xstrdup(id);
    char token[SIM_PROV_TOKEN_LEN + 1];
    if (!owned || tok_issue(p, owned, claim, client, now, token) != 0) {
        xfree(owned);
        if (p->be.forget_cert)
            p->be.forget_cert(p->be.ctx, id);
        free(id);
        free(pem);
        free(key);
        return OOM(h);
    }
    cJSON *r = cJSON_CreateObject();
    bool ok = r != NULL;
    if (csr) {
        ok = ok && cJSON_AddStringToObject(r, "certificateOwnershipToken", token) &&
             cJSON_AddStringToObject(r, "certificateId", id) && cJSON_AddStringToObject(r, "certificatePem", pem);
    } else {
        ok = ok && cJSON_AddStringToObject(r, "certificateId", id) &&
             cJSON_AddStringToObject(r, "certificatePem", pem) && cJSON_AddStringToObject(r, "privateKey", key) &&
             cJSON_AddStringToObject(r, "certificateOwnershipToken", token);
    }
    free(id);
    free(pem);
    if (key) { /* do not leave the private key lying in freed memory */
        memset(key, 0, strlen(key));
        free(key);
    }
    if (!ok) {
        cJSON_Delete(r);
        return OOM(h); /* the token stays: it expires, and its certificate goes */
    }
    return accept_with(h, r);
}

/* ---- template evaluation ------------------------------------------------------ */

typedef struct {
    pathbuf pb;
    const cJSON *params;
    const cJSON *mappings;
    char msg[PATH_MAX_LEN + 320];
    int status; /* 0, 400 (msg) or 500 */
    size_t budget;
} ectx;

static cJSON *eerr(ectx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *eerr(ectx *e, const char *fmt, ...)
{
    if (e->status)
        return NULL;
    char m[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    utf8_fix(m);
    snprintf(e->msg, sizeof e->msg, "%s: %s", e->pb.n ? e->pb.s : "(template)", m);
    utf8_fix(e->msg);
    e->status = 400;
    return NULL;
}

static cJSON *eoom(ectx *e)
{
    if (!e->status) {
        e->status = 500;
        snprintf(e->msg, sizeof e->msg, "out of memory");
    }
    return NULL;
}

/* A new string value, counted against the budget. */
static cJSON *estr(ectx *e, const char *s)
{
    size_t n = strlen(s);
    if (n > e->budget)
        return eerr(e, "the template's values add up to more than %u bytes", EVAL_BUDGET);
    e->budget -= n;
    cJSON *j = cJSON_CreateString(s);
    return j ? j : eoom(e);
}

static cJSON *ev(ectx *e, const cJSON *n, int depth);

/* Evaluates argument i of a function at path ...[i]. */
static cJSON *ev_arg(ectx *e, const cJSON *args, int i, int depth)
{
    size_t mark = path_idx(&e->pb, (size_t)i);
    cJSON *r = ev(e, cJSON_GetArrayItem(args, i), depth);
    if (r)
        path_set(&e->pb, mark);
    return r;
}

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *nb = xmalloc(cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        if (b->n)
            memcpy(nb, b->s, b->n);
        xfree(b->s);
        b->s = nb;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static cJSON *sb_take(ectx *e, sbuf *b)
{
    if (b->oom) {
        xfree(b->s);
        return eoom(e);
    }
    cJSON *r = estr(e, b->s ? b->s : "");
    xfree(b->s);
    return r;
}

static const char *param(const ectx *e, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e->params, name);
    return str_ok(v) ? v->valuestring : NULL;
}

static cJSON *fn_ref(ectx *e, const cJSON *arg)
{
    if (!str_ok(arg))
        return eerr(e, "Ref takes a parameter name");
    const char *v = param(e, arg->valuestring);
    if (!v)
        return eerr(e, "Ref: no value for parameter %s (not in parameters, no Default)", arg->valuestring);
    return estr(e, v);
}

static cJSON *fn_join(ectx *e, const cJSON *arg, int depth)
{
    if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2)
        return eerr(e, "Fn::Join takes [delimiter, [values]]");
    cJSON *d = ev_arg(e, arg, 0, depth);
    if (!d)
        return NULL;
    cJSON *l = ev_arg(e, arg, 1, depth);
    if (!l) {
        cJSON_Delete(d);
        return NULL;
    }
    cJSON *r = NULL;
    if (!str_ok(d)) {
        eerr(e, "Fn::Join: the delimiter must be a string");
    } else if (!cJSON_IsArray(l)) {
        eerr(e, "Fn::Join: the values must be a list of strings");
    } else {
        sbuf b = {0};
        bool ok = true;
        for (const cJSON *c = l->child; c && ok; c = c->next) {
            if (!str_ok(c)) {
                eerr(e, "Fn::Join: the values must be a list of strings");
                ok = false;
                break;
            }
            if (c != l->child)
                sb_put(&b, d->valuestring, strlen(d->valuestring));
            sb_put(&b, c->valuestring, strlen(c->valuestring));
            if (b.n > e->budget) {
                eerr(e, "the template's values add up to more than %u bytes", EVAL_BUDGET);
                ok = false;
            }
        }
        if (ok)
            r = sb_take(e, &b);
        else
            xfree(b.s);
    }
    cJSON_Delete(d);
    cJSON_Delete(l);
    return r;
}

static cJSON *fn_select(ectx *e, const cJSON *arg, int depth)
{
    if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2)
        return eerr(e, "Fn::Select takes [index, [values]]");
    cJSON *i = ev_arg(e, arg, 0, depth);
    if (!i)
        return NULL;
    cJSON *l = ev_arg(e, arg, 1, depth);
    if (!l) {
        cJSON_Delete(i);
        return NULL;
    }
    long idx = -1;
    if (cJSON_IsNumber(i) && i->valuedouble >= 0 && whole(i->valuedouble) && i->valuedouble < 1e9) {
        idx = (long)i->valuedouble;
    } else if (str_ok(i) && i->valuestring[0] && strlen(i->valuestring) <= 9 &&
               strspn(i->valuestring, "0123456789") == strlen(i->valuestring)) {
        idx = strtol(i->valuestring, NULL, 10);
    }
    cJSON *r = NULL;
    if (idx < 0) {
        eerr(e, "Fn::Select: the index must be a non-negative integer");
    } else if (!cJSON_IsArray(l)) {
        eerr(e, "Fn::Select: the values must be a list");
    } else if (idx >= cJSON_GetArraySize(l)) {
        eerr(e, "Fn::Select: index %ld is out of range (%d values)", idx, cJSON_GetArraySize(l));
    } else {
        cJSON *it = cJSON_DetachItemFromArray(l, (int)idx);
        if (cJSON_IsNull(it)) {
            cJSON_Delete(it);
            eerr(e, "Fn::Select: value %ld is null", idx);
        } else {
            r = it;
        }
    }
    cJSON_Delete(i);
    cJSON_Delete(l);
    return r;
}

static cJSON *fn_findinmap(ectx *e, const cJSON *arg, int depth)
{
    if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 3)
        return eerr(e, "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]");
    cJSON *k[3] = {NULL, NULL, NULL};
    cJSON *r = NULL;
    int i;
    for (i = 0; i < 3; i++) {
        k[i] = ev_arg(e, arg, i, depth);
        if (!k[i])
            break;
        if (!str_ok(k[i])) {
            eerr(e, "Fn::FindInMap: the keys must be strings");
            break;
        }
    }
    if (i == 3) {
        int missing;
        const cJSON *v = map_find(e->mappings, k[0]->valuestring, k[1]->valuestring, k[2]->valuestring, &missing);
        if (!v && missing == 0)
            eerr(e, "Fn::FindInMap: no map %s in Mappings", k[0]->valuestring);
        else if (!v && missing == 1)
            eerr(e, "Fn::FindInMap: no key %s in map %s", k[1]->valuestring, k[0]->valuestring);
        else if (!v)
            eerr(e, "Fn::FindInMap: no key %s in %s.%s", k[2]->valuestring, k[0]->valuestring, k[1]->valuestring);
        else if (!(r = cJSON_Duplicate(v, true)))
            eoom(e);
    }
    for (i = 0; i < 3; i++)
        cJSON_Delete(k[i]);
    return r;
}

static cJSON *fn_split(ectx *e, const cJSON *arg, int depth)
{
    if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2)
        return eerr(e, "Fn::Split takes [delimiter, string]");
    cJSON *d = ev_arg(e, arg, 0, depth);
    if (!d)
        return NULL;
    cJSON *s = ev_arg(e, arg, 1, depth);
    if (!s) {
        cJSON_Delete(d);
        return NULL;
    }
    cJSON *r = NULL;
    if (!str_ok(d) || !d->valuestring[0]) {
        eerr(e, "Fn::Split: the delimiter must be a non-empty string");
    } else if (!str_ok(s)) {
        eerr(e, "Fn::Split: the value to split must be a string");
    } else if (!(r = cJSON_CreateArray())) {
        eoom(e);
    } else {
        size_t dl = strlen(d->valuestring);
        const char *q = s->valuestring;
        for (;;) {
            const char *hit = strstr(q, d->valuestring);
            size_t n = hit ? (size_t)(hit - q) : strlen(q);
            char *piece = xstrndup(q, n);
            cJSON *ps = piece ? estr(e, piece) : eoom(e);
            xfree(piece);
            if (!ps) {
                cJSON_Delete(r);
                r = NULL;
                break;
            }
            cJSON_AddItemToArray(r, ps);
            if (!hit)
                break;
            q = hit + dl;
        }
    }
    cJSON_Delete(d);
    cJSON_Delete(s);
    return r;
}

static cJSON *fn_sub(ectx *e, const cJSON *arg, int depth)
{
    const cJSON *s = cJSON_IsArray(arg) ? cJSON_GetArrayItem(arg, 0) : arg;
    const cJSON *vars = cJSON_IsArray(arg) ? cJSON_GetArrayItem(arg, 1) : NULL;
    if (!str_ok(s) || (cJSON_IsArray(arg) && (cJSON_GetArraySize(arg) != 2 || !cJSON_IsObject(vars))))
        return eerr(e, "Fn::Sub takes a string or [string, {variables}]");
    cJSON *vals = NULL;
    if (vars) { /* the variables, evaluated at ...[1].Name */
        if (!(vals = cJSON_CreateObject()))
            return eoom(e);
        size_t m1 = path_idx(&e->pb, 1);
        for (const cJSON *c = vars->child; c; c = c->next) {
            size_t m2 = path_key(&e->pb, c->string);
            cJSON *v = ev(e, c, depth);
            if (v && !str_ok(v)) {
                cJSON_Delete(v);
                v = eerr(e, "Fn::Sub: a variable must be a string");
            }
            if (!v) {
                cJSON_Delete(vals);
                return NULL;
            }
            if (!cJSON_AddItemToObject(vals, c->string, v)) {
                cJSON_Delete(v);
                cJSON_Delete(vals);
                return eoom(e);
            }
            path_set(&e->pb, m2);
        }
        path_set(&e->pb, m1);
    }
    sbuf b = {0};
    const char *q = s->valuestring;
    cJSON *r = NULL;
    for (;;) {
        const char *at = strstr(q, "${");
        if (!at) {
            sb_put(&b, q, strlen(q));
            break;
        }
        sb_put(&b, q, (size_t)(at - q));
        const char *end = strchr(at + 2, '}');
        if (!end || end == at + 2) {
            eerr(e, "Fn::Sub: %s", end ? "an empty ${}" : "an unterminated ${");
            break;
        }
        char *name = xstrndup(at + 2, (size_t)(end - at - 2));
        if (!name) {
            eoom(e);
            break;
        }
        if (name[0] == '!') { /* ${!Literal} is the text ${Literal} */
            sb_put(&b, "${", 2);
            sb_put(&b, name + 1, strlen(name + 1));
            sb_put(&b, "}", 1);
        } else {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(vals, name);
            const char *val = str_ok(v) ? v->valuestring : param(e, name);
            if (!val) {
                eerr(e, "Fn::Sub: no value for ${%s} (not a variable, not in parameters, no Default)", name);
                xfree(name);
                break;
            }
            sb_put(&b, val, strlen(val));
        }
        xfree(name);
        if (b.n > e->budget) {
            eerr(e, "the template's values add up to more than %u bytes", EVAL_BUDGET);
            break;
        }
        q = end + 1;
    }
    cJSON_Delete(vals);
    if (e->status) {
        xfree(b.s);
        return NULL;
    }
    r = sb_take(e, &b);
    return r;
}

static cJSON *ev_fn(ectx *e, const char *name, const cJSON *arg, int depth)
{
    size_t mark = path_key(&e->pb, name);
    cJSON *r;
    if (strcmp(name, "Ref") == 0)
        r = fn_ref(e, arg);
    else if (strcmp(name, "Fn::Join") == 0)
        r = fn_join(e, arg, depth);
    else if (strcmp(name, "Fn::Select") == 0)
        r = fn_select(e, arg, depth);
    else if (strcmp(name, "Fn::FindInMap") == 0)
        r = fn_findinmap(e, arg, depth);
    else if (strcmp(name, "Fn::Split") == 0)
        r = fn_split(e, arg, depth);
    else if (strcmp(name, "Fn::Sub") == 0)
        r = fn_sub(e, arg, depth);
    else
        r = eerr(e, "%s is not supported", name);
    if (r)
        path_set(&e->pb, mark);
    return r;
}

/* A new tree: n with every function call replaced by its value. */
static cJSON *ev(ectx *e, const cJSON *n, int depth)
{
    if (e->status)
        return NULL;
    if (!n)
        return eerr(e, "a value is missing");
    if (depth > TPL_MAX_DEPTH)
        return eerr(e, "nested deeper than %d levels", TPL_MAX_DEPTH);
    const char *fn = fn_of(n);
    if (fn)
        return ev_fn(e, fn, n->child, depth + 1);
    if (cJSON_IsObject(n) || cJSON_IsArray(n)) {
        bool obj = cJSON_IsObject(n);
        cJSON *r = obj ? cJSON_CreateObject() : cJSON_CreateArray();
        if (!r)
            return eoom(e);
        size_t i = 0;
        for (const cJSON *c = n->child; c; c = c->next, i++) {
            size_t mark = obj ? path_key(&e->pb, c->string) : path_idx(&e->pb, i);
            cJSON *v = ev(e, c, depth + 1);
            if (!v) {
                cJSON_Delete(r);
                return NULL;
            }
            if (obj ? !cJSON_AddItemToObject(r, c->string, v) : !cJSON_AddItemToArray(r, v)) {
                cJSON_Delete(v);
                cJSON_Delete(r);
                return eoom(e);
            }
            path_set(&e->pb, mark);
        }
        return r;
    }
    if (str_ok(n))
        return estr(e, n->valuestring);
    cJSON *r = cJSON_Duplicate(n, false);
    return r ? r : eoom(e);
}

/* ---- RegisterThing ------------------------------------------------------------- */

/* Everything one registration allocates, freed together. */
typedef struct {
    cJSON *keep; /* an array holding the evaluated trees */
    char *policy_text[SIM_PROV_MAX_POLICIES];
    char policy_hash[SIM_PROV_MAX_POLICIES][65];
    sim_prov_policy pol[SIM_PROV_MAX_POLICIES];
    char cert_status[16], cert_override[16];
} regmem;

static cJSON *keep(regmem *m, cJSON *j)
{
    if (j)
        cJSON_AddItemToArray(m->keep, j);
    return j;
}

/* Evaluates one property of a resource at Resources.<res>.Properties.<prop>. */
static const cJSON *ev_prop(ectx *e, regmem *m, const cJSON *props, const char *prop)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(props, prop);
    if (!n)
        return NULL;
    size_t mark = path_key(&e->pb, prop);
    cJSON *r = keep(m, ev(e, n, 3));
    if (r)
        path_set(&e->pb, mark);
    return r;
}

static int prop_err(ectx *e, const char *prop, const char *msg)
{
    size_t mark = path_key(&e->pb, prop);
    eerr(e, "%s", msg);
    path_set(&e->pb, mark);
    return -1;
}

static int eval_thing(ectx *e, regmem *m, const cJSON *res, sim_prov_registration *r)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(res, "Properties");
    size_t mark = path_key(&e->pb, "Properties");
    const cJSON *v = ev_prop(e, m, props, "ThingName");
    if (e->status)
        return -1;
    if (!str_ok(v))
        return prop_err(e, "ThingName", "must be a string");
    if (!thing_name_ok(v->valuestring)) {
        size_t m2 = path_key(&e->pb, "ThingName");
        char shown[151];
        eerr(e, "\"%s\" is not a valid thing name (1-128 of a-zA-Z0-9:_-)", utf8_prefix(v->valuestring, shown, 150));
        path_set(&e->pb, m2);
        return -1;
    }
    r->thing_name = v->valuestring;
    v = ev_prop(e, m, props, "AttributePayload");
    if (e->status)
        return -1;
    if (v) {
        bool ok = cJSON_IsObject(v);
        for (const cJSON *c = ok ? v->child : NULL; c; c = c->next)
            ok = ok && str_ok(c);
        if (!ok)
            return prop_err(e, "AttributePayload", "must be an object of strings");
        r->attributes = v;
    }
    v = ev_prop(e, m, props, "ThingTypeName");
    if (e->status)
        return -1;
    if (v && !str_ok(v))
        return prop_err(e, "ThingTypeName", "must be a string");
    r->thing_type_name = v ? v->valuestring : NULL;
    v = ev_prop(e, m, props, "BillingGroup");
    if (e->status)
        return -1;
    if (v && !str_ok(v))
        return prop_err(e, "BillingGroup", "must be a string");
    r->billing_group = v ? v->valuestring : NULL;
    v = ev_prop(e, m, props, "ThingGroups");
    if (e->status)
        return -1;
    if (v) {
        bool ok = cJSON_IsArray(v);
        for (const cJSON *c = ok ? v->child : NULL; c; c = c->next)
            ok = ok && str_ok(c);
        if (!ok)
            return prop_err(e, "ThingGroups", "must be a list of strings");
        r->thing_groups = v;
    }
    path_set(&e->pb, mark);
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(res, "OverrideSettings");
    if (ov) {
        cJSON *o = keep(m, cJSON_CreateObject());
        if (!o) {
            eoom(e);
            return -1;
        }
        for (const cJSON *c = ov->child; c; c = c->next) {
            const char *k = thing_override_key(c->string);
            char val[16];
            if (k && str_ok(c) && override_value(c->valuestring, true, val)) {
                cJSON_DeleteItemFromObjectCaseSensitive(o, k);
                if (!cJSON_AddStringToObject(o, k, val)) {
                    eoom(e);
                    return -1;
                }
            }
        }
        r->thing_override = o;
    }
    return 0;
}

static int eval_certificate(ectx *e, regmem *m, const cJSON *res, const char *cert_id, sim_prov_registration *r)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(res, "Properties");
    size_t mark = path_key(&e->pb, "Properties");
    const cJSON *v = ev_prop(e, m, props, "CertificateId");
    if (e->status)
        return -1;
    if (!str_ok(v) || strcmp(v->valuestring, cert_id) != 0)
        return prop_err(e, "CertificateId", "must be the certificate of the ownership token "
                                            "({\"Ref\": \"AWS::IoT::Certificate::Id\"})");
    v = ev_prop(e, m, props, "Status");
    if (e->status)
        return -1;
    if (v && (!str_ok(v) || (!ieq(v->valuestring, "ACTIVE") && !ieq(v->valuestring, "INACTIVE"))))
        return prop_err(e, "Status", "must be ACTIVE or INACTIVE");
    strcpy(m->cert_status, v && ieq(v->valuestring, "INACTIVE") ? "INACTIVE" : "ACTIVE");
    r->certificate_status = m->cert_status;
    path_set(&e->pb, mark);
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(res, "OverrideSettings");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ov, "Status");
    if (str_ok(st) && override_value(st->valuestring, false, m->cert_override))
        r->certificate_override = m->cert_override;
    return 0;
}

static int eval_policy(ectx *e, regmem *m, const cJSON *res, sim_prov_registration *r)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(res, "Properties");
    size_t i = r->npolicies;
    size_t mark = path_key(&e->pb, "Properties");
    const cJSON *name = ev_prop(e, m, props, "PolicyName");
    if (e->status)
        return -1;
    if (name) {
        if (!str_ok(name) || !policy_name_ok(name->valuestring))
            return prop_err(e, "PolicyName", "must be a valid policy name (1-128 of a-zA-Z0-9_+=,.@-)");
        m->pol[i].name = name->valuestring;
    } else {
        const cJSON *doc = ev_prop(e, m, props, "PolicyDocument");
        if (e->status)
            return -1;
        cJSON *parsed = NULL;
        if (str_ok(doc))
            doc = parsed = json_exact(doc->valuestring, strlen(doc->valuestring));
        if (!cJSON_IsObject(doc)) {
            cJSON_Delete(parsed);
            return prop_err(e, "PolicyDocument", "must be a JSON object, or a string holding one");
        }
        m->policy_text[i] = cJSON_PrintUnformatted(doc);
        cJSON_Delete(parsed);
        if (!m->policy_text[i]) {
            eoom(e);
            return -1;
        }
        sha256_hex(m->policy_text[i], m->policy_hash[i]);
        m->pol[i].name = m->policy_hash[i];
        m->pol[i].document = m->policy_text[i];
    }
    path_set(&e->pb, mark);
    r->npolicies++;
    return 0;
}

/* The parameters in force: the device's, then the Defaults of what it left
 * out, and the certificate id from the token. */
static cJSON *params_in_force(const cJSON *tplparams, const cJSON *given, const char *cert_id)
{
    cJSON *pm = cJSON_CreateObject();
    if (!pm)
        return NULL;
    for (const cJSON *c = given ? given->child : NULL; c; c = c->next)
        if (!cJSON_GetObjectItemCaseSensitive(pm, c->string) && !cJSON_AddStringToObject(pm, c->string, c->valuestring))
            goto oom;
    for (const cJSON *c = tplparams ? tplparams->child : NULL; c; c = c->next) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "Default");
        if (str_ok(d) && !cJSON_GetObjectItemCaseSensitive(pm, c->string) &&
            !cJSON_AddStringToObject(pm, c->string, d->valuestring))
            goto oom;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(pm, "AWS::IoT::Certificate::Id");
    if (!cJSON_AddStringToObject(pm, "AWS::IoT::Certificate::Id", cert_id))
        goto oom;
    return pm;
oom:
    cJSON_Delete(pm);
    return NULL;
}

static int register_thing(hctx *h, const uint8_t *payload, size_t len, const char *claim, const char *client)
{
    sim_provision *p = h->p;
    const char *tname = h->req->template_name;
    tpl *t = tpl_find(p, tname, NULL);
    if (!t)
        return reject(h, 404, "ResourceNotFound", "The provisioning template %s does not exist.", tname);
    if (!t->enabled)
        return reject(h, 404, "ResourceNotFound", "The provisioning template %s is disabled.", tname);
    char msg[256];
    cJSON *j;
    if (decode_payload(h->req->cbor, payload, len, &j, msg, sizeof msg) != 0)
        return reject(h, 400, "InvalidPayload", "%s", msg);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return reject(h, 400, "InvalidPayload", "The payload must be a JSON object.");
    }
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "certificateOwnershipToken");
    if (!tk || cJSON_IsNull(tk) || (str_ok(tk) && !tk->valuestring[0])) {
        cJSON_Delete(j);
        return reject(h, 400, "InvalidCertificateOwnershipToken", MSG_EMPTY_TOKEN);
    }
    if (!str_ok(tk)) {
        cJSON_Delete(j);
        return reject(h, 400, "InvalidPayload", "certificateOwnershipToken must be a string.");
    }
    size_t at;
    tok *k = tok_find(p, tk->valuestring, &at);
    if (!k) {
        int s = spent_find(p, tk->valuestring);
        cJSON_Delete(j);
        return reject(h, 400, "InvalidCertificateOwnershipToken", "%s",
                      s == 1   ? "The certificate ownership token has already been used."
                      : s == 0 ? "The certificate ownership token has expired."
                               : "The certificate ownership token is invalid.");
    }
    const cJSON *given = cJSON_GetObjectItemCaseSensitive(j, "parameters");
    if (cJSON_IsNull(given))
        given = NULL;
    if (given && !cJSON_IsObject(given)) {
        cJSON_Delete(j);
        return reject(h, 400, "InvalidPayload", "parameters must be an object of strings.");
    }
    for (const cJSON *c = given ? given->child : NULL; c; c = c->next)
        if (!str_ok(c)) {
            char shown[101];
            int rc =
                reject(h, 400, "InvalidPayload", "parameters.%s must be a string.", utf8_prefix(c->string, shown, 100));
            cJSON_Delete(j);
            return rc;
        }

    const cJSON *body = t->body;
    regmem m;
    memset(&m, 0, sizeof m);
    sim_prov_registration r;
    memset(&r, 0, sizeof r);
    ectx e;
    memset(&e, 0, sizeof e);
    e.budget = EVAL_BUDGET;
    e.mappings = cJSON_GetObjectItemCaseSensitive(body, "Mappings");
    cJSON *pm = params_in_force(cJSON_GetObjectItemCaseSensitive(body, "Parameters"), given, k->cert_id);
    cJSON_Delete(j);
    m.keep = cJSON_CreateArray();
    if (!pm || !m.keep) {
        cJSON_Delete(pm);
        cJSON_Delete(m.keep);
        return OOM(h);
    }
    e.params = pm;
    r.template_name = tname;
    r.claim_certificate_id = claim;
    r.client_id = client;
    r.certificate_id = k->cert_id;
    r.parameters = pm;
    r.policies = m.pol;

    /* Everything is evaluated before the backend changes anything. */
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(body, "Resources");
    size_t m0 = path_key(&e.pb, "Resources");
    for (const cJSON *c = res ? res->child : NULL; c && !e.status; c = c->next) {
        const char *type = cJSON_GetObjectItemCaseSensitive(c, "Type")->valuestring;
        size_t m1 = path_key(&e.pb, c->string);
        if (strcmp(type, "AWS::IoT::Thing") == 0)
            eval_thing(&e, &m, c, &r);
        else if (strcmp(type, "AWS::IoT::Certificate") == 0)
            eval_certificate(&e, &m, c, k->cert_id, &r);
        else
            eval_policy(&e, &m, c, &r);
        if (!e.status)
            path_set(&e.pb, m1);
    }
    cJSON *dc = NULL;
    if (!e.status) {
        path_set(&e.pb, m0);
        const cJSON *dsec = cJSON_GetObjectItemCaseSensitive(body, "DeviceConfiguration");
        if (dsec) {
            size_t m2 = path_key(&e.pb, "DeviceConfiguration");
            dc = ev(&e, dsec, 1);
            for (const cJSON *c = dc ? dc->child : NULL; c && !e.status; c = c->next)
                if (!str_ok(c)) {
                    path_key(&e.pb, c->string);
                    eerr(&e, "must evaluate to a string (DeviceConfiguration is flat)");
                }
            if (!e.status)
                path_set(&e.pb, m2);
        } else if (!(dc = cJSON_CreateObject())) {
            eoom(&e);
        }
    }
    int status = 0;
    if (e.status == 500) {
        status = OOM(h);
    } else if (e.status) {
        status = reject(h, 400, "InvalidParameters", "%s", e.msg);
    } else if (!p->has_be || !p->be.register_thing) {
        status = reject(h, 500, "InternalFailure", "The simulator has no registry to provision into.");
    } else {
        char code[64] = "", bwhy[256] = "";
        int rc = p->be.register_thing(p->be.ctx, &r, code, sizeof code, bwhy, sizeof bwhy);
        if (rc != 0) {
            int st = rc >= 400 && rc <= 599 ? rc : 500;
            status = reject(h, st, code[0] ? code : default_code(st), "%s", bwhy[0] ? bwhy : "Provisioning failed.");
        } else {
            /* Registered: the token is spent (before the answer, which may fail). */
            char used[SIM_PROV_TOKEN_LEN + 1];
            strcpy(used, k->token);
            tok old = *k;
            tok_remove(p, at);
            tok_clear(&old);
            spent_add(p, used, true);
            cJSON *out = cJSON_CreateObject();
            if (out && cJSON_AddItemToObject(out, "deviceConfiguration", dc)) {
                dc = NULL;
                if (!cJSON_AddStringToObject(out, "thingName", r.thing_name ? r.thing_name : "")) {
                    cJSON_Delete(out);
                    out = NULL;
                }
            } else {
                cJSON_Delete(out);
                out = NULL;
            }
            status = accept_with(h, out);
        }
    }
    cJSON_Delete(dc);
    cJSON_Delete(pm);
    cJSON_Delete(m.keep);
    for (size_t i = 0; i < SIM_PROV_MAX_POLICIES; i++)
        xfree(m.policy_text[i]);
    return status;
}

int sim_provision_handle(sim_provision *p, const sim_prov_req *req, const char *claim_cert_id, const char *client_id,
                         const uint8_t *payload, size_t len, uint64_t now_s, sim_prov_emit_fn emit, void *ctx,
                         char *why, size_t whylen)
{
    setf(why, whylen, "%s", "");
    if (!p || !req || !req_ok(req)) {
        setf(why, whylen, "InvalidRequest: not a fleet provisioning request topic");
        return 400;
    }
    if (!payload)
        len = 0;
    sim_provision_expire(p, now_s);
    hctx h = {.p = p, .req = req, .emit = emit, .ctx = ctx, .why = why, .whylen = whylen};
    if (req->op == SIM_PROV_REGISTER)
        return register_thing(&h, payload, len, claim_cert_id, client_id);
    return create(&h, payload, len, claim_cert_id, client_id, now_s);
}

/* ---- describe ------------------------------------------------------------------ */

char *sim_provision_describe(const sim_provision *p)
{
    if (!p)
        return NULL;
    cJSON *d = cJSON_CreateObject();
    cJSON *ts = cJSON_AddArrayToObject(d, "templates");
    cJSON *ks = cJSON_AddArrayToObject(d, "tokens");
    if (!ts || !ks)
        goto oom;
    for (size_t i = 0; i < p->ntpl; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON *b = cJSON_Duplicate(p->tpls[i].body, true);
        if (!t || !b || !cJSON_AddItemToArray(ts, t)) {
            cJSON_Delete(t);
            cJSON_Delete(b);
            goto oom;
        }
        if (!cJSON_AddStringToObject(t, "name", p->tpls[i].name) ||
            !cJSON_AddBoolToObject(t, "enabled", p->tpls[i].enabled) || !cJSON_AddItemToObject(t, "body", b)) {
            cJSON_Delete(b);
            goto oom;
        }
    }
    for (size_t i = 0; i < p->ntok; i++) {
        const tok *k = &p->toks[i];
        cJSON *t = cJSON_CreateObject();
        if (!t || !cJSON_AddItemToArray(ks, t)) {
            cJSON_Delete(t);
            goto oom;
        }
        if (!cJSON_AddStringToObject(t, "certificateId", k->cert_id) ||
            !cJSON_AddNumberToObject(t, "expiresAt", (double)k->expires) ||
            !(k->claim ? cJSON_AddStringToObject(t, "claimCertificateId", k->claim)
                       : cJSON_AddNullToObject(t, "claimCertificateId")) ||
            !(k->client ? cJSON_AddStringToObject(t, "clientId", k->client) : cJSON_AddNullToObject(t, "clientId")))
            goto oom;
    }
    char *s = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    return s;
oom:
    cJSON_Delete(d);
    return NULL;
}
