/* sim_policy.c: see sim_policy.h.  The tags in brackets name the documented
 * behaviours of ../shared/reference/aws-broker.md §6 implemented here. */
#include "sim_policy.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim_map.h"

typedef struct {
    bool deny;
    bool not_action, not_resource;
    char **actions;
    size_t nactions;
    char **resources;
    size_t nresources;
    char *sid;
} statement;

struct sim_policy {
    char *name;
    char *doc;
    statement *st;
    size_t nst;
};

/* ---- matching ------------------------------------------------------------ */

/* `*` and `?` are wild only where wild[i] (a substituted value or an escape
 * is literal text).  Classic backtracking on the last star: O(n*m) at worst,
 * and both sides are short (a policy resource, an ARN). */
static bool glob_n(const char *p, const unsigned char *wild, size_t plen, const char *t, size_t tlen, bool nocase)
{
    size_t pi = 0, ti = 0, star = SIZE_MAX, mark = 0;
    while (ti < tlen) {
        if (pi < plen && wild[pi] && p[pi] == '*') {
            star = pi++;
            mark = ti;
        } else if (pi < plen && ((wild[pi] && p[pi] == '?') ||
                                 (nocase ? tolower((unsigned char)p[pi]) == tolower((unsigned char)t[ti])
                                         : p[pi] == t[ti]))) {
            pi++;
            ti++;
        } else if (star != SIZE_MAX) {
            pi = star + 1;
            ti = ++mark;
        } else {
            return false;
        }
    }
    while (pi < plen && wild[pi] && p[pi] == '*')
        pi++;
    return pi == plen;
}

bool sim_policy_glob(const char *pattern, const char *text, bool nocase)
{
    size_t n = strlen(pattern);
    unsigned char *w = malloc(n + 1);
    if (!w)
        return false;
    memset(w, 1, n + 1);
    bool r = glob_n(pattern, w, n, text, strlen(text), nocase);
    free(w);
    return r;
}

/* ---- variables (§6.3) ----------------------------------------------------- */

static const char *const CERT_FIELDS[] = {"CommonName", "Country", "Organization", "OrganizationalUnit",
                                          "DistinguishedNameQualifier", "State", "Locality", "SerialNumber",
                                          "Title", "Surname", "GivenName", "Initials", "Pseudonym",
                                          "GenerationQualifier"};

static bool starts(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && strncasecmp(s, prefix, k) == 0;
}

static bool eq(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* "Subject.CommonName", "Subject.OrganizationalUnit.1", "Subject.AlternativeName.DNSName" */
static bool cert_dn_var(const char *s, size_t n)
{
    if (starts(s, n, "AlternativeName."))
        return n > 16;
    for (size_t i = 0; i < sizeof CERT_FIELDS / sizeof CERT_FIELDS[0]; i++) {
        size_t k = strlen(CERT_FIELDS[i]);
        if (n < k || strncasecmp(s, CERT_FIELDS[i], k))
            continue;
        if (n == k)
            return true;
        if (s[k] != '.')
            continue;
        if (eq(s + k + 1, n - k - 1, "List"))
            return true;
        size_t d = k + 1;
        while (d < n && isdigit((unsigned char)s[d]))
            d++;
        return d == n && d > k + 1;
    }
    return false;
}

/* [AWS-POLICY-VARIABLES] the variables AWS documents for the broker. */
static bool known_var(const char *s, size_t n)
{
    if (n == 1 && (s[0] == '*' || s[0] == '?' || s[0] == '$'))
        return true;
    if (eq(s, n, "iot:ClientId") || eq(s, n, "iot:Connection.Thing.ThingName") ||
        eq(s, n, "iot:Connection.Thing.ThingTypeName") || eq(s, n, "iot:Connection.Thing.IsAttached") ||
        eq(s, n, "iot:Certificate.SerialNumber") || eq(s, n, "iot:Certificate.AvailableKeys"))
        return true;
    if (starts(s, n, "iot:Connection.Thing.Attributes[") && s[n - 1] == ']' && n > 33)
        return true;
    if (starts(s, n, "iot:Certificate.Subject."))
        return cert_dn_var(s + 24, n - 24);
    if (starts(s, n, "iot:Certificate.Issuer."))
        return cert_dn_var(s + 23, n - 23);
    return false;
}

/* Checks every ${...} of a resource at load; 0 or -1 with err. */
static int check_vars(const char *r, char *err, size_t errlen, const char *where)
{
    for (const char *p = r; (p = strstr(p, "${")) != NULL;) {
        const char *end = strchr(p + 2, '}');
        if (!end) {
            snprintf(err, errlen, "%s: \"${\" without its \"}\"", where);
            return -1;
        }
        if (!known_var(p + 2, (size_t)(end - p - 2))) {
            snprintf(err, errlen,
                     "%s: unknown policy variable ${%.*s} (known: ${iot:ClientId}, ${iot:Connection.Thing.*}, "
                     "${iot:Certificate.*}, ${*}, ${?}, ${$})",
                     where, (int)(end - p - 2 > 100 ? 100 : end - p - 2), p + 2);
            return -1;
        }
        p = end + 1;
    }
    return 0;
}

typedef struct {
    char *s;
    unsigned char *wild;
    size_t len, cap;
} ebuf;

static bool eput(ebuf *b, const char *s, size_t n, bool wild)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns)
            return false;
        b->s = ns;
        unsigned char *nw = realloc(b->wild, nc);
        if (!nw)
            return false;
        b->wild = nw;
        b->cap = nc;
    }
    memcpy(b->s + b->len, s, n);
    memset(b->wild + b->len, wild, n);
    b->len += n;
    b->s[b->len] = 0;
    return true;
}

/* The value of a variable, or NULL to leave it unsubstituted. */
static const char *var_value(const char *s, size_t n, const sim_policy_vars *v)
{
    if (eq(s, n, "iot:ClientId"))
        return v->client_id;
    /* §6.3: the thing variables need the client id to be the thing's name. */
    bool attached = v->thing_name && v->client_id && !strcmp(v->thing_name, v->client_id);
    if (eq(s, n, "iot:Connection.Thing.ThingName"))
        return attached ? v->thing_name : NULL;
    if (eq(s, n, "iot:Connection.Thing.IsAttached"))
        return attached ? "true" : "false";
    if (starts(s, n, "iot:Certificate.")) {
        const char *k = s + 16;
        size_t kn = n - 16;
        for (size_t i = 0; i < v->ncert; i++) {
            if (!eq(k, kn, v->cert[i].name))
                continue;
            const char *val = v->cert[i].value;
            /* §6.3: a value with a wildcard character or over 1024
             * characters is not substituted. */
            if (strlen(val) > 1024 || strpbrk(val, "*$+?#"))
                return NULL;
            return val;
        }
    }
    return NULL;
}

/* Expands a resource pattern for one check. */
static bool expand(const char *r, const sim_policy_vars *v, ebuf *b)
{
    b->len = 0;
    if (!eput(b, "", 0, false))
        return false;
    const char *p = r;
    while (*p) {
        if (p[0] == '$' && p[1] == '(' && p[2] && strchr("*?$", p[2]) && p[3] == ')') {
            if (!eput(b, p + 2, 1, false)) /* the IoT spelling of an escape */
                return false;
            p += 4;
            continue;
        }
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            size_t n = end ? (size_t)(end - p - 2) : 0;
            if (end && n == 1 && strchr("*?$", p[2])) {
                if (!eput(b, p + 2, 1, false))
                    return false;
            } else if (end) {
                const char *val = var_value(p + 2, n, v);
                if (!(val ? eput(b, val, strlen(val), false) : eput(b, p, n + 3, false)))
                    return false;
            }
            if (end) {
                p = end + 1;
                continue;
            }
        }
        if (!eput(b, p, 1, true))
            return false;
        p++;
    }
    return true;
}

/* ---- parsing ---------------------------------------------------------------- */

static void st_free(statement *s)
{
    for (size_t i = 0; i < s->nactions; i++)
        free(s->actions[i]);
    for (size_t i = 0; i < s->nresources; i++)
        free(s->resources[i]);
    free(s->actions);
    free(s->resources);
    free(s->sid);
}

void sim_policy_free(sim_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nst; i++)
        st_free(&p->st[i]);
    free(p->st);
    free(p->name);
    free(p->doc);
    free(p);
}

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)n[i]) && !strchr("_+=,.@-", n[i]))
            return false;
    return true;
}

/* A string or a non-empty list of strings, copied into *out. */
static int strings(const cJSON *v, char ***out, size_t *n, const char *where, char *err, size_t errlen)
{
    if (cJSON_IsString(v)) {
        *out = calloc(1, sizeof **out);
        if (!*out || !((*out)[0] = strdup(v->valuestring)))
            goto oom;
        *n = 1;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
        snprintf(err, errlen, "%s: must be a string or a non-empty list of strings", where);
        return -1;
    }
    *out = calloc((size_t)cJSON_GetArraySize(v), sizeof **out);
    if (!*out)
        goto oom;
    const cJSON *x;
    cJSON_ArrayForEach(x, v)
    {
        if (!cJSON_IsString(x)) {
            snprintf(err, errlen, "%s[%zu]: must be a string", where, *n);
            return -1;
        }
        if (!((*out)[*n] = strdup(x->valuestring)))
            goto oom;
        (*n)++;
    }
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", where);
    return -1;
}

static int parse_statement(const cJSON *o, size_t i, statement *s, char *err, size_t errlen)
{
    char where[64];
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "Statement[%zu]: must be an object", i);
        return -1;
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, o)
    {
        static const char *const ok[] = {"Effect", "Action", "NotAction", "Resource", "NotResource", "Sid"};
        bool known = false;
        for (size_t j = 0; j < sizeof ok / sizeof ok[0]; j++)
            known |= !strcmp(k->string, ok[j]);
        if (!known) {
            bool later = !strcmp(k->string, "Condition") || !strcmp(k->string, "Principal") ||
                         !strcmp(k->string, "NotPrincipal");
            snprintf(err, errlen, "Statement[%zu].%.40s: %s", i, k->string,
                     later ? "not simulated (iotsim evaluates Effect, Action, Resource and their Not forms)"
                           : "unknown key (want Sid, Effect, Action or NotAction, Resource or NotResource)");
            return -1;
        }
    }
    const cJSON *eff = cJSON_GetObjectItemCaseSensitive(o, "Effect");
    if (!cJSON_IsString(eff) || (strcmp(eff->valuestring, "Allow") && strcmp(eff->valuestring, "Deny"))) {
        snprintf(err, errlen, "Statement[%zu].Effect: must be \"Allow\" or \"Deny\"", i);
        return -1;
    }
    s->deny = !strcmp(eff->valuestring, "Deny");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(o, "Sid");
    if (sid && (!cJSON_IsString(sid) || !(s->sid = strdup(sid->valuestring)))) {
        snprintf(err, errlen, "Statement[%zu].Sid: must be a string", i);
        return -1;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "Action");
    const cJSON *na = cJSON_GetObjectItemCaseSensitive(o, "NotAction");
    if (!a == !na) {
        snprintf(err, errlen, "Statement[%zu]: needs one of Action and NotAction", i);
        return -1;
    }
    s->not_action = na != NULL;
    snprintf(where, sizeof where, "Statement[%zu].%s", i, na ? "NotAction" : "Action");
    if (strings(a ? a : na, &s->actions, &s->nactions, where, err, errlen))
        return -1;
    for (size_t j = 0; j < s->nactions; j++) {
        const char *x = s->actions[j];
        const char *colon = strchr(x, ':');
        /* "*", or "service:Name" where either side may hold wildcards. */
        if (strcmp(x, "*") && (!colon || colon == x || !colon[1])) {
            snprintf(err, errlen, "%s[%zu]: \"%.80s\" is not an action (want \"iot:Publish\", \"iot:*\", \"*\")",
                     where, j, x);
            return -1;
        }
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "Resource");
    const cJSON *nr = cJSON_GetObjectItemCaseSensitive(o, "NotResource");
    if (!r == !nr) {
        snprintf(err, errlen, "Statement[%zu]: needs one of Resource and NotResource", i);
        return -1;
    }
    s->not_resource = nr != NULL;
    snprintf(where, sizeof where, "Statement[%zu].%s", i, nr ? "NotResource" : "Resource");
    if (strings(r ? r : nr, &s->resources, &s->nresources, where, err, errlen))
        return -1;
    for (size_t j = 0; j < s->nresources; j++) {
        const char *x = s->resources[j];
        char w2[112];
        snprintf(w2, sizeof w2, "%s[%zu]", where, j);
        if (strcmp(x, "*") && strncmp(x, "arn:", 4)) {
            snprintf(err, errlen,
                     "%s: \"%.80s\" is not an ARN (want \"*\" or arn:aws:iot:<region>:<account>:client/..., "
                     "topic/..., topicfilter/...)",
                     w2, x);
            return -1;
        }
        if (check_vars(x, err, errlen, w2))
            return -1;
    }
    return 0;
}

sim_policy *sim_policy_parse(const char *name, const char *json, size_t len, char *err, size_t errlen)
{
    if (!name || !name_ok(name)) {
        snprintf(err, errlen, "policy name \"%.64s\": 1..128 characters of A-Z a-z 0-9 _ + = , . @ -",
                 name ? name : "");
        return NULL;
    }
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        chars += !isspace((unsigned char)json[i]);
    if (chars > SIM_POLICY_MAX_CHARS) {
        snprintf(err, errlen, "document: %zu characters without whitespace; AWS IoT allows %d", chars,
                 SIM_POLICY_MAX_CHARS);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "document: not a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    sim_policy *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        cJSON_Delete(root);
        return NULL;
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, root)
    {
        if (strcmp(k->string, "Version") && strcmp(k->string, "Statement") && strcmp(k->string, "Id")) {
            snprintf(err, errlen, "%.40s: unknown key (want Version, Statement, Id)", k->string);
            goto bad;
        }
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "Version");
    /* Policy variables exist only in 2012-10-17 documents; an older or
     * missing Version would make them literal text, silently. */
    if (!cJSON_IsString(ver) || strcmp(ver->valuestring, "2012-10-17")) {
        snprintf(err, errlen, "Version: must be \"2012-10-17\"");
        goto bad;
    }
    const cJSON *sts = cJSON_GetObjectItemCaseSensitive(root, "Statement");
    if (cJSON_IsObject(sts)) {
        p->st = calloc(1, sizeof *p->st);
        if (!p->st)
            goto oom;
        p->nst = 1;
        if (parse_statement(sts, 0, &p->st[0], err, errlen))
            goto bad;
    } else if (cJSON_IsArray(sts) && cJSON_GetArraySize(sts) > 0) {
        p->st = calloc((size_t)cJSON_GetArraySize(sts), sizeof *p->st);
        if (!p->st)
            goto oom;
        const cJSON *s;
        cJSON_ArrayForEach(s, sts)
        {
            if (parse_statement(s, p->nst, &p->st[p->nst], err, errlen)) {
                p->nst++; /* so that what it holds is freed */
                goto bad;
            }
            p->nst++;
        }
    } else {
        snprintf(err, errlen, "Statement: must be an object or a non-empty list of objects");
        goto bad;
    }
    p->name = strdup(name);
    p->doc = cJSON_PrintUnformatted(root);
    if (!p->name || !p->doc)
        goto oom;
    cJSON_Delete(root);
    return p;
oom:
    snprintf(err, errlen, "out of memory");
bad:
    cJSON_Delete(root);
    sim_policy_free(p);
    return NULL;
}

const char *sim_policy_name(const sim_policy *p)
{
    return p->name;
}

const char *sim_policy_document(const sim_policy *p)
{
    return p->doc;
}

/* ---- evaluation ------------------------------------------------------------ */

static bool any_action(const statement *s, const char *action)
{
    for (size_t i = 0; i < s->nactions; i++)
        if (sim_policy_glob(s->actions[i], action, true))
            return true;
    return false;
}

static bool any_resource(const statement *s, const char *arn, const sim_policy_vars *v, ebuf *b)
{
    for (size_t i = 0; i < s->nresources; i++) {
        if (!expand(s->resources[i], v, b))
            continue; /* out of memory: this resource does not match */
        if (glob_n(b->s, b->wild, b->len, arn, strlen(arn), false))
            return true;
    }
    return false;
}

void sim_policy_eval(const sim_policy *const *v, size_t n, const char *action, const char *arn,
                     const sim_policy_vars *vars, sim_policy_decision *out)
{
    memset(out, 0, sizeof *out);
    out->statement = -1;
    static const sim_policy_vars none = {NULL, NULL, NULL, 0};
    if (!vars)
        vars = &none;
    ebuf b = {NULL, NULL, 0, 0};
    /* [AWS-POLICY-EVAL] an explicit Deny wins over any Allow; what no
     * statement allows is denied. */
    for (size_t i = 0; i < n; i++) {
        const sim_policy *p = v[i];
        for (size_t k = 0; k < p->nst; k++) {
            const statement *s = &p->st[k];
            if (any_action(s, action) == s->not_action)
                continue;
            if (any_resource(s, arn, vars, &b) == s->not_resource)
                continue;
            if (s->deny) {
                out->allowed = false;
                out->explicit_deny = true;
                out->policy = p->name;
                out->statement = (int)k;
                out->sid = s->sid;
                free(b.s);
                free(b.wild);
                return;
            }
            if (!out->allowed) {
                out->allowed = true;
                out->policy = p->name;
                out->statement = (int)k;
                out->sid = s->sid;
            }
        }
    }
    free(b.s);
    free(b.wild);
}

const char *sim_iot_action_name(sim_iot_action a)
{
    switch (a) {
    case SIM_IOT_CONNECT: return "iot:Connect";
    case SIM_IOT_PUBLISH: return "iot:Publish";
    case SIM_IOT_SUBSCRIBE: return "iot:Subscribe";
    case SIM_IOT_RECEIVE: return "iot:Receive";
    case SIM_IOT_RETAIN_PUBLISH: return "iot:RetainPublish";
    }
    return "iot:?";
}

/* ---- the store ------------------------------------------------------------ */

typedef struct {
    char *id;
    const sim_policy *att[SIM_POLICY_MAX_ATTACHED];
    size_t natt;
    sim_policy_kv *cert;
    size_t ncert;
} principal;

struct sim_policy_store {
    char *arn_prefix; /* "arn:aws:iot:<region>:<account>:" */
    sim_policy **pol;
    size_t npol;
    principal **pr; /* in the order they were first seen, for describe */
    size_t npr;
    sim_map by_id;
};

static const char ALLOW_ALL_DOC[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"}]}";

sim_policy_store *sim_policy_store_new(const char *region, const char *account)
{
    sim_policy_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    sim_map_init(&s->by_id);
    size_t n = strlen(region) + strlen(account) + 16;
    s->arn_prefix = malloc(n);
    char err[128];
    sim_policy *all = sim_policy_parse(SIM_POLICY_ALLOW_ALL, ALLOW_ALL_DOC, sizeof ALLOW_ALL_DOC - 1, err, sizeof err);
    if (!s->arn_prefix || !all || sim_policy_store_add(s, all, err, sizeof err)) {
        sim_policy_store_free(s);
        return NULL;
    }
    snprintf(s->arn_prefix, n, "arn:aws:iot:%s:%s:", region, account);
    return s;
}

void sim_policy_store_free(sim_policy_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->npol; i++)
        sim_policy_free(s->pol[i]);
    for (size_t i = 0; i < s->npr; i++) {
        principal *p = s->pr[i];
        for (size_t k = 0; k < p->ncert; k++) {
            free((char *)p->cert[k].name);
            free((char *)p->cert[k].value);
        }
        free(p->cert);
        free(p->id);
        free(p);
    }
    free(s->pr);
    free(s->pol);
    free(s->arn_prefix);
    sim_map_free(&s->by_id);
    free(s);
}

int sim_policy_store_add(sim_policy_store *s, sim_policy *p, char *err, size_t errlen)
{
    if (sim_policy_store_get(s, p->name)) {
        snprintf(err, errlen, "a policy named %.128s exists already%s", p->name,
                 strcmp(p->name, SIM_POLICY_ALLOW_ALL) ? "" : " (it is built in)");
        sim_policy_free(p);
        return -1;
    }
    sim_policy **nv = realloc(s->pol, (s->npol + 1) * sizeof *nv);
    if (!nv) {
        snprintf(err, errlen, "out of memory");
        sim_policy_free(p);
        return -1;
    }
    s->pol = nv;
    s->pol[s->npol++] = p;
    return 0;
}

const sim_policy *sim_policy_store_get(const sim_policy_store *s, const char *name)
{
    for (size_t i = 0; i < s->npol; i++)
        if (!strcmp(s->pol[i]->name, name))
            return s->pol[i];
    return NULL;
}

static principal *get_principal(sim_policy_store *s, const char *id, bool create)
{
    principal *p = sim_map_get(&s->by_id, id, strlen(id));
    if (p || !create)
        return p;
    principal **nv = realloc(s->pr, (s->npr + 1) * sizeof *nv);
    if (!nv)
        return NULL;
    s->pr = nv;
    p = calloc(1, sizeof *p);
    if (!p || !(p->id = strdup(id)) || !sim_map_put(&s->by_id, id, strlen(id), p)) {
        if (p)
            free(p->id);
        free(p);
        return NULL;
    }
    s->pr[s->npr++] = p;
    return p;
}

int sim_policy_store_attach(sim_policy_store *s, const char *principal_id, const char *policy, char *err,
                            size_t errlen)
{
    const sim_policy *pol = sim_policy_store_get(s, policy);
    if (!pol) {
        snprintf(err, errlen, "no policy named %.128s", policy);
        return -1;
    }
    principal *p = get_principal(s, principal_id, true);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < p->natt; i++)
        if (p->att[i] == pol)
            return 0;
    if (p->natt >= SIM_POLICY_MAX_ATTACHED) {
        snprintf(err, errlen, "more than %d policies attached to one certificate (the AWS IoT limit)",
                 SIM_POLICY_MAX_ATTACHED);
        return -1;
    }
    p->att[p->natt++] = pol;
    return 0;
}

void sim_policy_store_detach_all(sim_policy_store *s, const char *principal_id)
{
    principal *p = get_principal(s, principal_id, false);
    if (p)
        p->natt = 0;
}

int sim_policy_store_detach(sim_policy_store *s, const char *principal_id, const char *policy, char *err,
                            size_t errlen)
{
    const sim_policy *pol = sim_policy_store_get(s, policy);
    if (!pol) {
        snprintf(err, errlen, "no policy named %.128s", policy);
        return -1;
    }
    principal *p = get_principal(s, principal_id, false);
    for (size_t i = 0; p && i < p->natt; i++) {
        if (p->att[i] == pol) {
            memmove(&p->att[i], &p->att[i + 1], (p->natt - i - 1) * sizeof p->att[0]);
            p->natt--;
            return 0;
        }
    }
    snprintf(err, errlen, "policy %.128s is not attached to that certificate", policy);
    return -1;
}

/* The index of a policy that may be changed, or -1 with err. */
static long changeable(const sim_policy_store *s, const char *name, char *err, size_t errlen)
{
    if (!strcmp(name, SIM_POLICY_ALLOW_ALL)) {
        snprintf(err, errlen, "policy %s is built in and cannot be changed", SIM_POLICY_ALLOW_ALL);
        return -1;
    }
    for (size_t i = 0; i < s->npol; i++)
        if (!strcmp(s->pol[i]->name, name))
            return (long)i;
    snprintf(err, errlen, "no policy named %.128s", name);
    return -1;
}

int sim_policy_store_replace(sim_policy_store *s, sim_policy *p, char *err, size_t errlen)
{
    long i = changeable(s, p->name, err, errlen);
    if (i < 0) {
        sim_policy_free(p);
        return -1;
    }
    sim_policy *old = s->pol[i];
    for (size_t k = 0; k < s->npr; k++)
        for (size_t a = 0; a < s->pr[k]->natt; a++)
            if (s->pr[k]->att[a] == old)
                s->pr[k]->att[a] = p;
    s->pol[i] = p;
    sim_policy_free(old);
    return 0;
}

int sim_policy_store_delete(sim_policy_store *s, const char *policy, char *err, size_t errlen)
{
    long i = changeable(s, policy, err, errlen);
    if (i < 0)
        return -1;
    size_t users = 0;
    for (size_t k = 0; k < s->npr; k++)
        for (size_t a = 0; a < s->pr[k]->natt; a++)
            users += s->pr[k]->att[a] == s->pol[i];
    if (users) {
        snprintf(err, errlen, "policy %.128s is attached to %zu certificate%s: detach it first", policy, users,
                 users == 1 ? "" : "s");
        return -1;
    }
    sim_policy_free(s->pol[i]);
    memmove(&s->pol[i], &s->pol[i + 1], (s->npol - (size_t)i - 1) * sizeof s->pol[0]);
    s->npol--;
    return 0;
}

size_t sim_policy_store_attached(const sim_policy_store *s, const char *principal_id, const char **names, size_t max)
{
    const principal *p = sim_map_get(&s->by_id, principal_id, strlen(principal_id));
    if (!p)
        return 0;
    for (size_t i = 0; i < p->natt && i < max; i++)
        names[i] = p->att[i]->name;
    return p->natt;
}

int sim_policy_store_set_cert_var(sim_policy_store *s, const char *principal_id, const char *name, const char *value)
{
    principal *p = get_principal(s, principal_id, true);
    if (!p)
        return -1;
    sim_policy_kv *nv = realloc(p->cert, (p->ncert + 1) * sizeof *nv);
    if (!nv)
        return -1;
    p->cert = nv;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    p->cert[p->ncert].name = n;
    p->cert[p->ncert].value = v;
    p->ncert++;
    return 0;
}

void sim_policy_authorize(const sim_policy_store *s, const char *principal_id, const char *client_id,
                          const char *thing_name, sim_iot_action action, const char *name, size_t len,
                          sim_policy_decision *out, char *arn_out, size_t arnlen)
{
    static const char *const kind[] = {"client/", "topic/", "topicfilter/", "topic/", "topic/"};
    const char *k = kind[action];
    size_t pl = strlen(s->arn_prefix), kl = strlen(k);
    char *arn = malloc(pl + kl + len + 1);
    memset(out, 0, sizeof *out);
    out->statement = -1;
    if (arn_out && arnlen)
        arn_out[0] = 0;
    if (!arn)
        return; /* denied: out of memory must not grant anything */
    memcpy(arn, s->arn_prefix, pl);
    memcpy(arn + pl, k, kl);
    if (len)
        memcpy(arn + pl + kl, name, len);
    arn[pl + kl + len] = 0;
    const principal *p = principal_id ? sim_map_get(&s->by_id, principal_id, strlen(principal_id)) : NULL;
    sim_policy_vars v = {client_id, thing_name, p ? p->cert : NULL, p ? p->ncert : 0};
    sim_policy_eval(p ? (const sim_policy *const *)p->att : NULL, p ? p->natt : 0, sim_iot_action_name(action), arn,
                    &v, out);
    if (arn_out && arnlen)
        snprintf(arn_out, arnlen, "%s", arn);
    free(arn);
}

char *sim_policy_store_describe(const sim_policy_store *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *pa = o ? cJSON_AddArrayToObject(o, "policies") : NULL;
    cJSON *aa = o ? cJSON_AddArrayToObject(o, "attachments") : NULL;
    if (!pa || !aa) {
        cJSON_Delete(o);
        return NULL;
    }
    for (size_t i = 0; i < s->npol; i++) {
        cJSON *x = cJSON_CreateObject();
        if (!x)
            break;
        cJSON_AddStringToObject(x, "name", s->pol[i]->name);
        cJSON *d = cJSON_Parse(s->pol[i]->doc);
        if (d)
            cJSON_AddItemToObject(x, "document", d);
        cJSON_AddItemToArray(pa, x);
    }
    for (size_t i = 0; i < s->npr; i++) {
        const principal *p = s->pr[i];
        cJSON *x = cJSON_CreateObject();
        if (!x)
            break;
        cJSON_AddStringToObject(x, "principal", p->id);
        cJSON *l = cJSON_AddArrayToObject(x, "policies");
        for (size_t k = 0; l && k < p->natt; k++)
            cJSON_AddItemToArray(l, cJSON_CreateString(p->att[k]->name));
        cJSON_AddItemToArray(aa, x);
    }
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}
