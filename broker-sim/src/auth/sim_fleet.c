/* sim_fleet.c: see sim_fleet.h. */
#define _XOPEN_SOURCE 700
#include "sim_fleet.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim_pki.h"

#define PENDING "PENDING_ACTIVATION"
#define POLICIES_FILE "provisioned-policies.json"

static void path_in(const sim_fleet *f, const char *rel, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", f->dir, rel);
}

static int load_ca(const sim_fleet *f, EVP_PKEY **k, X509 **c, char *why, size_t whylen)
{
    char key[4200], crt[4200];
    path_in(f, "ca.key", key, sizeof key);
    path_in(f, "ca.crt", crt, sizeof crt);
    *k = NULL;
    *c = NULL;
    if (sim_pki_load_key(key, k, why, whylen) || sim_pki_load_cert(crt, c, why, whylen)) {
        EVP_PKEY_free(*k);
        *k = NULL;
        return -1;
    }
    return 0;
}

/* A new certificate: certificates/<id>.crt, registered PENDING_ACTIVATION
 * without a thing (it cannot connect before RegisterThing). */
static int register_new(sim_fleet *f, X509 *x, char **cert_id, char **cert_pem, char *why, size_t whylen)
{
    char id[65], rel[128], abs[4400], dir[4200];
    if (sim_pki_cert_id(x, id)) {
        snprintf(why, whylen, "cannot compute the certificate id");
        return -1;
    }
    path_in(f, "certificates", dir, sizeof dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "%.300s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(rel, sizeof rel, "certificates/%s.crt", id);
    path_in(f, rel, abs, sizeof abs);
    if (sim_pki_write_cert(abs, x, why, whylen))
        return -1;
    sim_device d = {NULL, id, PENDING, rel, "", ""};
    if (sim_registry_add_cert(f->reg, &d, why, whylen) != 0) {
        remove(abs);
        return -1;
    }
    if (sim_registry_save(f->reg, why, whylen) != 0 || sim_pki_cert_to_pem(x, cert_pem, why, whylen) != 0 ||
        !(*cert_id = strdup(id))) {
        free(*cert_pem);
        *cert_pem = NULL;
        sim_registry_remove(f->reg, id);
        sim_registry_save(f->reg, why, whylen);
        remove(abs);
        if (!why[0])
            snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (f->changed)
        f->changed(f->ctx, sim_registry_by_cert(f->reg, id));
    return 0;
}

static int create_keys(void *ctx, char **cert_id, char **cert_pem, char **key_pem, char *why, size_t whylen)
{
    sim_fleet *f = ctx;
    EVP_PKEY *cak, *key = NULL;
    X509 *cac, *x = NULL;
    if (load_ca(f, &cak, &cac, why, whylen))
        return -1;
    sim_pki_req req;
    sim_pki_req_init(&req);
    req.cn = "AWS IoT Certificate"; /* the subject AWS gives the certificates it makes */
    req.days = 3650;
    req.key_type = (sim_pki_key_type)f->key_type;
    int rc = -1;
    if (sim_pki_issue(cak, cac, &req, &key, &x, why, whylen) == 0 && sim_pki_key_to_pem(key, key_pem, why, whylen) == 0) {
        rc = register_new(f, x, cert_id, cert_pem, why, whylen);
        if (rc) {
            free(*key_pem);
            *key_pem = NULL;
        }
    }
    EVP_PKEY_free(cak);
    EVP_PKEY_free(key);
    X509_free(cac);
    X509_free(x);
    return rc;
}

static int create_csr(void *ctx, const char *csr, char **cert_id, char **cert_pem, char *why, size_t whylen)
{
    sim_fleet *f = ctx;
    EVP_PKEY *cak;
    X509 *cac, *x = NULL;
    if (load_ca(f, &cak, &cac, why, whylen))
        return -1;
    int rc = 400; /* the CSR's fault: InvalidCSR */
    if (sim_pki_issue_csr(cak, cac, csr, strlen(csr), 3650, &x, why, whylen) == 0)
        rc = register_new(f, x, cert_id, cert_pem, why, whylen);
    EVP_PKEY_free(cak);
    X509_free(cac);
    X509_free(x);
    return rc;
}

/* ---- provisioned-policies.json ---------------------------------------------- */

static cJSON *read_json_file(const char *path, char *why, size_t whylen, bool *missing)
{
    *missing = false;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        *missing = errno == ENOENT;
        if (!*missing)
            snprintf(why, whylen, "%.300s: %s", path, strerror(errno));
        return NULL;
    }
    /* Bounded: policies are at most 2048 characters each, and a certificate
     * has at most 10 of them; 16 MiB is far past any real file. */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            if (cap > (16u << 20)) {
                snprintf(why, whylen, "%.300s: larger than 16 MiB", path);
                free(buf);
                fclose(fp);
                return NULL;
            }
            size_t nc = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(fp);
                snprintf(why, whylen, "out of memory");
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, fp);
        len += n;
        if (!n)
            break;
    }
    fclose(fp);
    cJSON *o = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(why, whylen, "%.300s: not a JSON object of policy documents", path);
        return NULL;
    }
    return o;
}

/* Adds name -> document to provisioned-policies.json (whole file rewritten,
 * then renamed). */
static int remember_policy(sim_fleet *f, const char *name, const char *doc, char *why, size_t whylen)
{
    char path[4200], tmp[4300];
    path_in(f, POLICIES_FILE, path, sizeof path);
    bool missing;
    cJSON *o = read_json_file(path, why, whylen, &missing);
    if (!o && !missing)
        return -1;
    if (!o)
        o = cJSON_CreateObject();
    cJSON *d = cJSON_Parse(doc);
    if (!o || !d) {
        cJSON_Delete(o);
        cJSON_Delete(d);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    cJSON_AddItemToObject(o, name, d);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = text ? fopen(tmp, "wb") : NULL;
    bool ok = fp && fputs(text, fp) >= 0;
    if (fp && fclose(fp) != 0)
        ok = false;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        snprintf(why, whylen, "%.300s: %s", path, text ? strerror(errno) : "out of memory");
        remove(tmp);
    }
    free(text);
    return ok ? 0 : -1;
}

int sim_fleet_load_policies(sim_fleet *f, char *err, size_t errlen)
{
    char path[4200], why[512] = "";
    path_in(f, POLICIES_FILE, path, sizeof path);
    bool missing;
    cJSON *o = read_json_file(path, why, sizeof why, &missing);
    if (!o) {
        if (missing)
            return 0;
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        if (sim_policy_store_get(f->pol, it->string))
            continue; /* declared again (the config file): that one is in force */
        char *doc = cJSON_PrintUnformatted(it);
        sim_policy *p = doc ? sim_policy_parse(it->string, doc, strlen(doc), why, sizeof why) : NULL;
        free(doc);
        if (!p || sim_policy_store_add(f->pol, p, why, sizeof why)) {
            snprintf(err, errlen, "%.300s: %.128s: %.300s", path, it->string, why);
            rc = -1;
            break;
        }
    }
    cJSON_Delete(o);
    return rc;
}

/* ---- RegisterThing ------------------------------------------------------------ */

static int refuse(char *code, size_t codelen, const char *c, char *why, size_t whylen, int status, const char *msg)
{
    snprintf(code, codelen, "%s", c);
    snprintf(why, whylen, "%s", msg);
    return status;
}

static bool any_fail(const cJSON *override)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, override)
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "FAIL"))
        return true;
    return false;
}

static int register_thing(void *ctx, const sim_prov_registration *r, char *code, size_t codelen, char *why,
                          size_t whylen)
{
    sim_fleet *f = ctx;
    char msg[600];
    const sim_device *d = sim_registry_by_cert(f->reg, r->certificate_id);
    if (!d) {
        snprintf(msg, sizeof msg, "certificate %.64s does not exist", r->certificate_id);
        return refuse(code, codelen, "ResourceNotFoundException", why, whylen, 404, msg);
    }
    if (r->thing_name && sim_registry_by_thing(f->reg, r->thing_name) && any_fail(r->thing_override)) {
        snprintf(msg, sizeof msg, "thing %.128s exists and the template's OverrideSettings say FAIL", r->thing_name);
        return refuse(code, codelen, "ResourceConflictsException", why, whylen, 409, msg);
    }
    /* Every policy checked before anything changes. */
    sim_policy *made[SIM_PROV_MAX_POLICIES] = {NULL};
    int rc = 0;
    for (size_t i = 0; i < r->npolicies && !rc; i++) {
        const sim_prov_policy *p = &r->policies[i];
        if (sim_policy_store_get(f->pol, p->name))
            continue;
        if (!p->document) {
            snprintf(msg, sizeof msg, "no policy named %.128s", p->name);
            rc = refuse(code, codelen, "ResourceNotFoundException", why, whylen, 404, msg);
        } else if (!(made[i] = sim_policy_parse(p->name, p->document, strlen(p->document), msg, sizeof msg))) {
            char m2[700];
            snprintf(m2, sizeof m2, "the template's policy document: %s", msg);
            rc = refuse(code, codelen, "InvalidRequestException", why, whylen, 400, m2);
        }
    }
    char names[SIM_PROV_MAX_POLICIES * 140] = "";
    for (size_t i = 0; i < r->npolicies && !rc; i++) {
        const sim_prov_policy *p = &r->policies[i];
        if (made[i]) {
            sim_policy *m = made[i];
            made[i] = NULL;
            if (sim_policy_store_add(f->pol, m, msg, sizeof msg) ||
                remember_policy(f, p->name, p->document, msg, sizeof msg)) {
                rc = refuse(code, codelen, "InternalFailureException", why, whylen, 500, msg);
                break;
            }
        }
        if (sim_policy_store_attach(f->pol, r->certificate_id, p->name, msg, sizeof msg)) {
            rc = refuse(code, codelen, "InvalidRequestException", why, whylen, 400, msg);
            break;
        }
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s%s", n ? " " : "", p->name);
    }
    for (size_t i = 0; i < SIM_PROV_MAX_POLICIES; i++)
        sim_policy_free(made[i]);
    if (rc)
        return rc;
    if (sim_registry_update(f->reg, r->certificate_id, r->thing_name, r->certificate_status, names, msg,
                            sizeof msg) ||
        sim_registry_save(f->reg, msg, sizeof msg))
        return refuse(code, codelen, "InternalFailureException", why, whylen, 500, msg);
    if (f->changed)
        f->changed(f->ctx, sim_registry_by_cert(f->reg, r->certificate_id));
    return 0;
}

/* A token expired before RegisterThing: the pending certificate goes. */
static void forget_cert(void *ctx, const char *cert_id)
{
    sim_fleet *f = ctx;
    const sim_device *d = sim_registry_by_cert(f->reg, cert_id);
    if (!d || strcmp(d->status, PENDING))
        return;
    char abs[4400], why[256];
    path_in(f, d->cert_file, abs, sizeof abs);
    remove(abs);
    sim_registry_remove(f->reg, cert_id);
    if (sim_registry_save(f->reg, why, sizeof why))
        fprintf(stderr, "iotsim: warning: %s\n", why);
}

void sim_fleet_backend(sim_fleet *f, sim_prov_backend *out)
{
    memset(out, 0, sizeof *out);
    out->create_keys_and_cert = create_keys;
    out->create_from_csr = create_csr;
    out->register_thing = register_thing;
    out->forget_cert = forget_cert;
    out->ctx = f;
}
