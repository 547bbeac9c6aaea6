/*
 * iotsim: the simulated AWS IoT broker.
 *
 *   iotsim [--state-dir DIR] [--ports auto] [--listen ADDR] [--insecure-tcp]
 *          [--profile classic|current] [--time-scale X] [--log FILE] [--config FILE]
 *   iotsim device add NAME [--state-dir DIR]
 *
 * With no arguments it creates ./.iotsim (a CA, a server certificate, one
 * device with its certificate and key, registry.json), listens on loopback,
 * and writes endpoint.json there once every listener is up.  Device shadows
 * live in shadows.json there, saved after every change.  Ctrl-C or SIGTERM
 * closes every client as a shutting-down server does.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim_config.h"
#include "sim_pki.h"
#include "sim_policy.h"
#include "sim_fleet.h"
#include "sim_provision.h"
#include "sim_registry.h"
#include "sim_server.h"

#define REGION "us-east-1"
#define ACCOUNT "123456789012"
#define ENDPOINT_PREFIX "a1b2c3d4e5f6g7"
#define ACCESS_KEY_ID "AKIAIOTSIMEXAMPLE01"
#define SECRET_ACCESS_KEY "iotsim/example/secret/key/not/for/aws/0000"

typedef struct {
    char dir[PATH_MAX];
    sim_registry reg;
    sim_policy_store *pol; /* the IoT policies and what they are attached to */
    sim_provision *prov;   /* fleet provisioning: templates and ownership tokens */
    sim_fleet fleet;       /* its backend on the CA, the registry and the policies */
    char **cfg_certs;      /* certificates whose policies the config file set (things[i].policies) */
    size_t ncfg_certs;
    sim_profile profile;
    sim_server *srv;
    const char *log_path;
    const char *listen;  /* the address every listener is on */
    int lock_fd;         /* holds the state directory while a server runs */
} app;

static sim_server *g_srv; /* for the signal handler only */

/* After the engine, which points at the policies and the provisioning. */
static void app_free(app *a)
{
    sim_registry_free(&a->reg);
    sim_policy_store_free(a->pol);
    sim_provision_free(a->prov);
    for (size_t i = 0; i < a->ncfg_certs; i++)
        free(a->cfg_certs[i]);
    free(a->cfg_certs);
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_srv)
        sim_server_stop(g_srv);
}

static void path_in(const app *a, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", a->dir, name);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ${iot:Certificate.Subject.X} and .Issuer.X (aws-broker.md §6.3): the first
 * value as X, the next ones as X.1, X.2 ..., at most 5 values per field. */
static void dn_vars(app *a, const char *principal, const char *side, const X509_NAME *dn)
{
    static const struct {
        int nid;
        const char *name;
    } F[] = {{NID_commonName, "CommonName"},
             {NID_countryName, "Country"},
             {NID_organizationName, "Organization"},
             {NID_organizationalUnitName, "OrganizationalUnit"},
             {NID_dnQualifier, "DistinguishedNameQualifier"},
             {NID_stateOrProvinceName, "State"},
             {NID_localityName, "Locality"},
             {NID_serialNumber, "SerialNumber"},
             {NID_title, "Title"},
             {NID_surname, "Surname"},
             {NID_givenName, "GivenName"},
             {NID_initials, "Initials"},
             {NID_pseudonym, "Pseudonym"},
             {NID_generationQualifier, "GenerationQualifier"}};
    for (size_t f = 0; f < sizeof F / sizeof F[0]; f++) {
        int pos = -1, k = 0;
        while (k < 5 && (pos = X509_NAME_get_index_by_NID(dn, F[f].nid, pos)) >= 0) {
            unsigned char *utf8 = NULL;
            X509_NAME_ENTRY *ent = X509_NAME_get_entry(dn, pos);
            if (ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ent)) >= 0 && utf8) {
                char name[96];
                if (k)
                    snprintf(name, sizeof name, "%s%s.%d", side, F[f].name, k);
                else
                    snprintf(name, sizeof name, "%s%s", side, F[f].name);
                sim_policy_store_set_cert_var(a->pol, principal, name, (const char *)utf8);
            }
            OPENSSL_free(utf8);
            k++;
        }
    }
}

/* Attaches the policies a registry entry names; `warn`: say which are missing. */
static void attach_named(app *a, const sim_device *d, bool warn)
{
    char names[1600], err[256];
    snprintf(names, sizeof names, "%s", d->policy ? d->policy : SIM_POLICY_ALLOW_ALL);
    char *save = NULL;
    for (char *n = strtok_r(names, " ,", &save); n; n = strtok_r(NULL, " ,", &save))
        if (sim_policy_store_attach(a->pol, d->cert_id, n, err, sizeof err) && warn)
            fprintf(stderr, "iotsim: warning: thing %s: %s (registry.json): not attached\n",
                    d->thing[0] ? d->thing : d->cert_id, err);
}

/* After the config file: a registry entry may name a policy only the config
 * declares (a template's PolicyName, say), which did not exist when
 * principal_init ran.  The certificates whose policies the config set keep
 * exactly those. */
static void attach_registry_policies(app *a)
{
    for (size_t i = 0; i < a->reg.n; i++) {
        bool configured = false;
        for (size_t k = 0; k < a->ncfg_certs && !configured; k++)
            configured = !strcmp(a->cfg_certs[k], a->reg.v[i].cert_id);
        if (!configured)
            attach_named(a, &a->reg.v[i], true);
    }
}

/* Tells the policy store about a device: the policies its registry entry
 * names (the built-in allow-all for every device the simulator creates) and
 * the certificate's fields for the ${iot:Certificate.*} variables.  Missing
 * policies are reported by attach_registry_policies, once the config's are
 * in. */
static void principal_init(app *a, const sim_device *d)
{
    if (!a->pol)
        return;
    char err[256];
    attach_named(a, d, false);
    char p[PATH_MAX + 320];
    path_in(a, d->cert_file, p, sizeof p);
    X509 *x = NULL;
    if (sim_pki_load_cert(p, &x, err, sizeof err))
        return;
    dn_vars(a, d->cert_id, "Subject.", X509_get_subject_name(x));
    dn_vars(a, d->cert_id, "Issuer.", X509_get_issuer_name(x));
    /* The serial as hex digits, upper case as the AWS console shows
     * certificate ids [UNCONFIRMED: the format AWS substitutes]. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        sim_policy_store_set_cert_var(a->pol, d->cert_id, "SerialNumber", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(x);
}

/* A certificate fleet provisioning made or registered. */
static void fleet_changed(void *ctx, const sim_device *d)
{
    if (d)
        principal_init(ctx, d);
}

/* Writes a device certificate and key signed by the CA and registers it. */
static int add_device(app *a, const char *name, char *err, size_t errlen)
{
    if (!sim_thing_name_valid(name)) {
        snprintf(err, errlen, "thing name \"%s\": use 1..128 characters of a-z A-Z 0-9 : _ -", name);
        return -1;
    }
    if (sim_registry_by_thing(&a->reg, name)) {
        snprintf(err, errlen, "thing %s already exists", name);
        return -1;
    }
    char ca_crt[PATH_MAX + 16], ca_key[PATH_MAX + 16], dev_dir[PATH_MAX + 16];
    path_in(a, "ca.crt", ca_crt, sizeof ca_crt);
    path_in(a, "ca.key", ca_key, sizeof ca_key);
    path_in(a, "devices", dev_dir, sizeof dev_dir);
    if (mkdir(dev_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%.300s: %s", dev_dir, strerror(errno));
        return -1;
    }
    EVP_PKEY *cak = NULL, *key = NULL;
    X509 *cac = NULL, *crt = NULL;
    int rc = -1;
    char rel_crt[300], rel_key[300], abs_crt[PATH_MAX + 320], abs_key[PATH_MAX + 320], id[65];
    snprintf(rel_crt, sizeof rel_crt, "devices/%s.crt", name);
    snprintf(rel_key, sizeof rel_key, "devices/%s.key", name);
    path_in(a, rel_crt, abs_crt, sizeof abs_crt);
    path_in(a, rel_key, abs_key, sizeof abs_key);
    sim_pki_req req;
    sim_pki_req_init(&req);
    /* RFC 5280 caps a CN at 64 bytes; thing names may have 128. */
    char cn[65];
    snprintf(cn, sizeof cn, "%.64s", name);
    req.cn = cn;
    req.days = 3650;
    if (sim_pki_load_key(ca_key, &cak, err, errlen) || sim_pki_load_cert(ca_crt, &cac, err, errlen) ||
        sim_pki_issue(cak, cac, &req, &key, &crt, err, errlen) || sim_pki_cert_id(crt, id) ||
        sim_pki_write_key(abs_key, key, err, errlen) || sim_pki_write_cert(abs_crt, crt, err, errlen))
        goto out;
    sim_device d = {(char *)name, id, "ACTIVE", rel_crt, rel_key, SIM_POLICY_ALLOW_ALL};
    if (sim_registry_add(&a->reg, &d, err, errlen) || sim_registry_save(&a->reg, err, errlen))
        goto out;
    principal_init(a, sim_registry_by_thing(&a->reg, name));
    rc = 0;
out:
    EVP_PKEY_free(cak);
    EVP_PKEY_free(key);
    X509_free(cac);
    X509_free(crt);
    return rc;
}

/* One process at a time owns a state directory: a server for its lifetime,
 * `device add` for a moment.  Otherwise the server's next registry save
 * would silently drop what the other wrote. */
static int lock_state(app *a, char *err, size_t errlen)
{
    char p[PATH_MAX + 32];
    path_in(a, ".lock", p, sizeof p);
    a->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (a->lock_fd < 0 || fcntl(a->lock_fd, F_SETLK, &fl) != 0) {
        snprintf(err, errlen,
                 "%.300s is in use by a running iotsim: add devices through its control API (POST /devices)", a->dir);
        if (a->lock_fd >= 0)
            close(a->lock_fd);
        a->lock_fd = -1;
        return -1;
    }
    return 0;
}

/* The CA, the server certificate and the first device, unless they exist. */
static int ensure_state(app *a, char *err, size_t errlen)
{
    if (mkdir(a->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%.300s: %s", a->dir, strerror(errno));
        return -1;
    }
    char p[PATH_MAX + 32];
    path_in(a, "registry.json", p, sizeof p);
    if (sim_registry_load(&a->reg, p, err, errlen))
        return -1;
    /* The policies RegisterThing made, before the certificates name them. */
    if (sim_fleet_load_policies(&a->fleet, err, errlen))
        return -1;
    for (size_t i = 0; i < a->reg.n; i++)
        principal_init(a, &a->reg.v[i]);
    char ca_crt[PATH_MAX + 16], ca_key[PATH_MAX + 16], srv_crt[PATH_MAX + 16], srv_key[PATH_MAX + 16];
    path_in(a, "ca.crt", ca_crt, sizeof ca_crt);
    path_in(a, "ca.key", ca_key, sizeof ca_key);
    path_in(a, "server.crt", srv_crt, sizeof srv_crt);
    path_in(a, "server.key", srv_key, sizeof srv_key);
    EVP_PKEY *cak = NULL, *sk = NULL;
    X509 *cac = NULL, *sc = NULL;
    int rc = -1;
    if (!exists(ca_crt) || !exists(ca_key)) {
        if (sim_pki_make_ca("iotsim test CA", 3650, &cak, &cac, err, errlen) ||
            sim_pki_write_key(ca_key, cak, err, errlen) || sim_pki_write_cert(ca_crt, cac, err, errlen))
            goto out;
    } else if (sim_pki_load_key(ca_key, &cak, err, errlen) || sim_pki_load_cert(ca_crt, &cac, err, errlen)) {
        goto out;
    }
    /* The server certificate must name the address clients dial: a new
     * --listen address gets a new certificate. */
    bool covers = exists(srv_crt) && exists(srv_key);
    if (covers && a->listen && strcmp(a->listen, "127.0.0.1") && strcmp(a->listen, "localhost")) {
        X509 *cur = NULL;
        covers = sim_pki_load_cert(srv_crt, &cur, err, errlen) == 0 && X509_check_ip_asc(cur, a->listen, 0) == 1;
        X509_free(cur);
    }
    if (!covers) {
        const char *san[] = {"localhost", "127.0.0.1", "::1", ENDPOINT_PREFIX "-ats.iot." REGION ".amazonaws.com",
                             NULL};
        size_t nsan = 4;
        if (a->listen && strcmp(a->listen, "127.0.0.1") && strcmp(a->listen, "localhost"))
            san[nsan++] = a->listen;
        sim_pki_req req;
        sim_pki_req_init(&req);
        req.cn = "localhost";
        req.days = 825;
        req.server = true;
        req.san = san;
        req.nsan = nsan;
        if (sim_pki_issue(cak, cac, &req, &sk, &sc, err, errlen) || sim_pki_write_key(srv_key, sk, err, errlen) ||
            sim_pki_write_cert(srv_crt, sc, err, errlen))
            goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(cak);
    EVP_PKEY_free(sk);
    X509_free(cac);
    X509_free(sc);
    if (rc == 0 && a->reg.n == 0)
        rc = add_device(a, "iotsim-device-1", err, errlen);
    return rc;
}

static int principal_ok(void *ctx, const char *cert_id, const char **thing)
{
    app *a = ctx;
    const sim_device *d = sim_registry_by_cert(&a->reg, cert_id);
    if (!d)
        return SIM_PRINCIPAL_UNKNOWN;
    *thing = d->thing;
    return strcmp(d->status, "ACTIVE") ? SIM_PRINCIPAL_INACTIVE : SIM_PRINCIPAL_ACTIVE;
}

static char *device_add_api(void *ctx, const char *name, int *status)
{
    app *a = ctx;
    char err[256];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (add_device(a, name, err, sizeof err) != 0) {
        *status = strstr(err, "exists") ? 409 : 400;
        cJSON_AddStringToObject(o, "error", err);
    } else {
        const sim_device *d = sim_registry_by_thing(&a->reg, name);
        char p[PATH_MAX + 320];
        *status = 201;
        cJSON_AddStringToObject(o, "thing_name", d->thing);
        cJSON_AddStringToObject(o, "certificate_id", d->cert_id);
        path_in(a, d->cert_file, p, sizeof p);
        cJSON_AddStringToObject(o, "cert_file", p);
        path_in(a, d->key_file, p, sizeof p);
        cJSON_AddStringToObject(o, "key_file", p);
    }
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

/* Control API: GET /things, each registered thing with its certificate
 * (id, status, files) and the policies attached to it now. */
static char *things_api(void *ctx)
{
    app *a = ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "things") : NULL;
    /* Certificates fleet provisioning made and RegisterThing has not yet
     * given a thing (PENDING_ACTIVATION) are listed apart: they are no thing. */
    cJSON *pend = o ? cJSON_AddArrayToObject(o, "certificates_without_thing") : NULL;
    for (size_t i = 0; arr && pend && i < a->reg.n; i++) {
        const sim_device *d = &a->reg.v[i];
        cJSON *x = cJSON_CreateObject();
        if (!x || !cJSON_AddItemToArray(d->thing[0] ? arr : pend, x)) {
            cJSON_Delete(x);
            break;
        }
        char p[PATH_MAX + 320];
        if (d->thing[0])
            cJSON_AddStringToObject(x, "name", d->thing);
        cJSON_AddStringToObject(x, "certificate_id", d->cert_id);
        cJSON_AddStringToObject(x, "status", d->status);
        path_in(a, d->cert_file, p, sizeof p);
        cJSON_AddStringToObject(x, "cert_file", p);
        if (d->key_file[0]) { /* iotsim keeps no key for the certificates it provisioned */
            path_in(a, d->key_file, p, sizeof p);
            cJSON_AddStringToObject(x, "key_file", p);
        }
        const char *names[SIM_POLICY_MAX_ATTACHED];
        size_t n = sim_policy_store_attached(a->pol, d->cert_id, names, SIM_POLICY_MAX_ATTACHED);
        cJSON *pl = cJSON_AddArrayToObject(x, "policies");
        for (size_t k = 0; pl && k < n && k < SIM_POLICY_MAX_ATTACHED; k++)
            cJSON_AddItemToArray(pl, cJSON_CreateString(names[k]));
    }
    char *t = arr ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return t;
}

static int add_policy(app *a, const char *key, const char *name, const cJSON *doc, bool replace, char *err,
                      size_t errlen);

/* Control API: the IoT policies at run time, as AWS's CreatePolicy (with
 * "replace": CreatePolicyVersion --set-as-default), AttachPolicy,
 * DetachPolicy and DeletePolicy do.  Changes last until iotsim stops: the
 * config file is where policies are kept. */
static char *policy_admin_api(void *ctx, const char *op, const cJSON *b, int *status)
{
    app *a = ctx;
    char err[700] = "";
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(b, "name");
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(b, "policy");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(b, "thing");
    const cJSON *jc = cJSON_GetObjectItemCaseSensitive(b, "principal");
    *status = 200;
    if (!strcmp(op, "")) {
        bool replace = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "replace"));
        if (!cJSON_IsString(jn))
            snprintf(err, sizeof err, "name: the policy's name");
        else if (add_policy(a, "document", jn->valuestring, cJSON_GetObjectItemCaseSensitive(b, "document"), replace,
                            err, sizeof err) == 0)
            *status = replace ? 200 : 201;
    } else if (!strcmp(op, "/delete")) {
        if (!cJSON_IsString(jn))
            snprintf(err, sizeof err, "name: the policy's name");
        else
            sim_policy_store_delete(a->pol, jn->valuestring, err, sizeof err);
    } else if (!strcmp(op, "/attach") || !strcmp(op, "/detach")) {
        const sim_device *d = NULL;
        if (!cJSON_IsString(jp))
            snprintf(err, sizeof err, "policy: the policy's name");
        else if (cJSON_IsString(jt) == cJSON_IsString(jc))
            snprintf(err, sizeof err, "give one of thing (a thing's name) or principal (a certificate id)");
        else if (cJSON_IsString(jt) && !(d = sim_registry_by_thing(&a->reg, jt->valuestring)))
            snprintf(err, sizeof err, "thing: no thing named %.128s", jt->valuestring);
        else if (cJSON_IsString(jc) && !(d = sim_registry_by_cert(&a->reg, jc->valuestring)))
            snprintf(err, sizeof err, "principal: no certificate with id %.70s", jc->valuestring);
        else if (op[1] == 'a')
            sim_policy_store_attach(a->pol, d->cert_id, jp->valuestring, err, sizeof err);
        else
            sim_policy_store_detach(a->pol, d->cert_id, jp->valuestring, err, sizeof err);
    } else {
        *status = 404;
        snprintf(err, sizeof err, "no such resource (POST /policies, /policies/attach, /policies/detach, "
                                  "/policies/delete)");
    }
    /* The store says why in words only (it answers -1 for every refusal);
     * its messages are fixed texts, so they map to HTTP statuses here. */
    if (err[0] && *status < 400)
        *status = strstr(err, "no policy named") || strstr(err, "not attached") || strstr(err, "no thing") ||
                          strstr(err, "no certificate")
                      ? 404
                  : strstr(err, "exists already") || strstr(err, "is attached to") ? 409
                                                                                    : 400;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (err[0])
        cJSON_AddStringToObject(o, "error", err);
    else
        cJSON_AddStringToObject(o, "status", !strcmp(op, "") ? (*status == 201 ? "created" : "replaced")
                                             : !strcmp(op, "/delete") ? "deleted"
                                             : op[1] == 'a' ? "attached"
                                                            : "detached");
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

static void write_endpoint(void *ctx, const sim_server *srv)
{
    app *a = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    char p[PATH_MAX + 320];
    cJSON_AddStringToObject(o, "host", a->listen);
    cJSON_AddStringToObject(o, "endpoint", ENDPOINT_PREFIX "-ats.iot." REGION ".amazonaws.com");
    cJSON *ports = cJSON_AddObjectToObject(o, "ports");
    static const char *const names[] = {"mtls", "alpn", "tcp", "control"};
    for (size_t i = 0; ports && i < 4; i++) {
        int port = sim_server_port(srv, names[i]);
        if (port >= 0)
            cJSON_AddNumberToObject(ports, names[i], port);
    }
    path_in(a, "ca.crt", p, sizeof p);
    cJSON_AddStringToObject(o, "ca_file", p);
    const sim_device *d = &a->reg.v[0];
    cJSON_AddStringToObject(o, "thing_name", d->thing);
    path_in(a, d->cert_file, p, sizeof p);
    cJSON_AddStringToObject(o, "cert_file", p);
    path_in(a, d->key_file, p, sizeof p);
    cJSON_AddStringToObject(o, "key_file", p);
    cJSON_AddStringToObject(o, "region", REGION);
    cJSON_AddStringToObject(o, "account_id", ACCOUNT);
    cJSON_AddStringToObject(o, "access_key_id", ACCESS_KEY_ID);
    cJSON_AddStringToObject(o, "secret_access_key", SECRET_ACCESS_KEY);
    cJSON_AddStringToObject(o, "profile", a->profile == SIM_PROFILE_CURRENT ? "current" : "classic");
    cJSON_AddNumberToObject(o, "pid", (double)getpid());
    char logabs[PATH_MAX];
    if (a->log_path && realpath(a->log_path, logabs))
        cJSON_AddStringToObject(o, "log_file", logabs);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    if (!txt)
        return;
    char tmp[PATH_MAX + 32], fin[PATH_MAX + 32];
    path_in(a, "endpoint.json.tmp", tmp, sizeof tmp);
    path_in(a, "endpoint.json", fin, sizeof fin);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%s\n", txt);
        if (fclose(f) == 0)
            rename(tmp, fin); /* readers never see half a file */
    }
    free(txt);
    fprintf(stderr, "iotsim: ready: %s\n", fin);
}

/* Registers a device whose certificate the configuration gives as PEM; it
 * must be issued by this simulator's CA, or TLS would refuse it anyway. */
static int add_device_pem(app *a, const char *name, const char *pem, const char *status, char *err, size_t errlen)
{
    char ca_crt[PATH_MAX + 16], rel[300], abs[PATH_MAX + 320], id[65], why[256];
    path_in(a, "ca.crt", ca_crt, sizeof ca_crt);
    X509 *ca = NULL, *crt = NULL;
    int rc = -1;
    snprintf(rel, sizeof rel, "devices/%s.crt", name);
    path_in(a, rel, abs, sizeof abs);
    if (sim_pki_load_cert(ca_crt, &ca, err, errlen) || sim_pki_cert_from_pem(pem, &crt, why, sizeof why)) {
        if (!ca)
            goto out;
        snprintf(err, errlen, "things[%s].certificate_pem: %s", name, why);
        goto out;
    }
    if (sim_pki_verify(ca, crt, why, sizeof why)) {
        snprintf(err, errlen, "things[%.64s].certificate_pem: not issued by this simulator's CA (%.200s): %.100s", name, ca_crt,
                 why);
        goto out;
    }
    if (sim_pki_cert_id(crt, id) || sim_pki_write_cert(abs, crt, err, errlen))
        goto out;
    sim_device d = {(char *)name, id, (char *)status, rel, "", SIM_POLICY_ALLOW_ALL};
    rc = sim_registry_add(&a->reg, &d, err, errlen) || sim_registry_save(&a->reg, err, errlen) ? -1 : 0;
    if (rc == 0)
        principal_init(a, sim_registry_by_thing(&a->reg, name));
out:
    X509_free(ca);
    X509_free(crt);
    return rc;
}

/* things[i].policies: the names of declared policies, attached to the
 * thing's certificate in place of what it had (AWS attaches policies to
 * certificates, the principals, not to things). */
static int attach_policies(app *a, size_t i, const char *thing, const cJSON *pols, char *err, size_t errlen)
{
    if (!cJSON_IsArray(pols)) {
        snprintf(err, errlen, "things[%zu].policies: must be a list of policy names", i);
        return -1;
    }
    const sim_device *d = sim_registry_by_thing(&a->reg, thing);
    if (!d)
        return -1;
    char **nc = realloc(a->cfg_certs, (a->ncfg_certs + 1) * sizeof *nc);
    if (!nc || !(nc[a->ncfg_certs] = strdup(d->cert_id))) {
        if (nc)
            a->cfg_certs = nc;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->cfg_certs = nc;
    a->ncfg_certs++;
    sim_policy_store_detach_all(a->pol, d->cert_id);
    const cJSON *n;
    size_t k = 0;
    cJSON_ArrayForEach(n, pols)
    {
        char why[256];
        if (!cJSON_IsString(n)) {
            snprintf(err, errlen, "things[%zu].policies[%zu]: must be a policy name", i, k);
            return -1;
        }
        if (sim_policy_store_attach(a->pol, d->cert_id, n->valuestring, why, sizeof why)) {
            snprintf(err, errlen, "things[%zu].policies[%zu]: %s (declare it under \"policies\")", i, k, why);
            return -1;
        }
        k++;
    }
    return 0;
}

/* The configuration's "things": [{"name", "certificate_pem"?, "status"?,
 * "policies"?}].  A thing without a PEM gets a generated certificate and
 * key; a thing that is already registered keeps its certificate and takes
 * the status. */
static int apply_things(app *a, const cJSON *things, char *err, size_t errlen)
{
    if (!cJSON_IsArray(things)) {
        snprintf(err, errlen, "things: must be an array of {\"name\", \"certificate_pem\", \"status\"}");
        return -1;
    }
    const cJSON *t;
    size_t i = 0;
    cJSON_ArrayForEach(t, things)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *pem = cJSON_GetObjectItemCaseSensitive(t, "certificate_pem");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(t, "status");
        const cJSON *k;
        cJSON_ArrayForEach(k, t)
        {
            if (strcmp(k->string, "name") && strcmp(k->string, "certificate_pem") && strcmp(k->string, "status") &&
                strcmp(k->string, "policies")) {
                snprintf(err, errlen, "things[%zu].%.64s: unknown key (want name, certificate_pem, status, policies)",
                         i, k->string);
                return -1;
            }
        }
        if (!cJSON_IsString(name) || !sim_thing_name_valid(name->valuestring)) {
            snprintf(err, errlen, "things[%zu].name: 1..128 characters of a-z A-Z 0-9 : _ -", i);
            return -1;
        }
        if ((pem && !cJSON_IsString(pem)) ||
            (st && (!cJSON_IsString(st) || (strcmp(st->valuestring, "ACTIVE") && strcmp(st->valuestring, "INACTIVE") &&
                                             strcmp(st->valuestring, "REVOKED"))))) {
            snprintf(err, errlen, "things[%zu]: certificate_pem must be a string, status ACTIVE, INACTIVE or REVOKED",
                     i);
            return -1;
        }
        const char *status = st ? st->valuestring : "ACTIVE";
        const sim_device *d = sim_registry_by_thing(&a->reg, name->valuestring);
        if (d) {
            if (strcmp(d->status, status)) {
                char *ns = strdup(status);
                if (!ns)
                    return -1;
                free(((sim_device *)d)->status);
                ((sim_device *)d)->status = ns;
                if (sim_registry_save(&a->reg, err, errlen))
                    return -1;
            }
        } else if (pem) {
            if (add_device_pem(a, name->valuestring, pem->valuestring, status, err, errlen))
                return -1;
        } else {
            if (add_device(a, name->valuestring, err, errlen))
                return -1;
            if (strcmp(status, "ACTIVE")) {
                sim_device *nd = (sim_device *)sim_registry_by_thing(&a->reg, name->valuestring);
                free(nd->status);
                nd->status = strdup(status);
                if (!nd->status || sim_registry_save(&a->reg, err, errlen))
                    return -1;
            }
        }
        const cJSON *pols = cJSON_GetObjectItemCaseSensitive(t, "policies");
        if (pols && attach_policies(a, i, name->valuestring, pols, err, errlen))
            return -1;
        i++;
    }
    return 0;
}

/* One declared policy (or, with `replace`, a new document for a stored one);
 * errors name the key: "policies.NAME: reason". */
static int add_policy(app *a, const char *key, const char *name, const cJSON *doc, bool replace, char *err,
                      size_t errlen)
{
    char why[512];
    char *text = NULL;
    if (cJSON_IsString(doc))
        text = strdup(doc->valuestring); /* the document as text, as the AWS CLI takes it */
    else if (cJSON_IsObject(doc))
        text = cJSON_PrintUnformatted(doc);
    else {
        snprintf(err, errlen, "%s: the document must be a JSON object or a string holding one", key);
        return -1;
    }
    if (!text) {
        snprintf(err, errlen, "%s: out of memory", key);
        return -1;
    }
    sim_policy *p = sim_policy_parse(name, text, strlen(text), why, sizeof why);
    free(text);
    if (!p || (replace ? sim_policy_store_replace(a->pol, p, why, sizeof why)
                       : sim_policy_store_add(a->pol, p, why, sizeof why))) {
        snprintf(err, errlen, "%s: %s", key, why);
        return -1;
    }
    return 0;
}

/* "policies": {"NAME": DOCUMENT, ...} or [{"name": NAME, "document": DOCUMENT}]. */
static int apply_policies(app *a, const cJSON *pols, char *err, size_t errlen)
{
    char key[200];
    const cJSON *x;
    size_t i = 0;
    if (cJSON_IsObject(pols)) {
        cJSON_ArrayForEach(x, pols)
        {
            snprintf(key, sizeof key, "policies.%.128s", x->string);
            if (add_policy(a, key, x->string, x, false, err, errlen))
                return -1;
        }
        return 0;
    }
    if (!cJSON_IsArray(pols)) {
        snprintf(err, errlen, "policies: must be {\"NAME\": DOCUMENT} or [{\"name\", \"document\"}]");
        return -1;
    }
    cJSON_ArrayForEach(x, pols)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, "name");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(x, "document");
        const cJSON *k;
        snprintf(key, sizeof key, "policies[%zu]", i);
        cJSON_ArrayForEach(k, x)
        {
            if (strcmp(k->string, "name") && strcmp(k->string, "document")) {
                snprintf(err, errlen, "%s.%.64s: unknown key (want name, document)", key, k->string);
                return -1;
            }
        }
        if (!cJSON_IsString(n) || !d) {
            snprintf(err, errlen, "%s: needs \"name\" (a string) and \"document\"", key);
            return -1;
        }
        snprintf(key, sizeof key, "policies[%zu] (%.128s)", i, n->valuestring);
        if (add_policy(a, key, n->valuestring, d, false, err, errlen))
            return -1;
        i++;
    }
    return 0;
}

/* Reads and applies a --config file; errors start with the file name. */
/* One provisioning template: BODY (an object, or a string holding one) or
 * {"body": BODY, "enabled": bool}. */
static int put_template(app *a, const char *key, const char *name, const cJSON *v, char *err, size_t errlen)
{
    const cJSON *body = v, *en = NULL;
    if (cJSON_IsObject(v) && cJSON_GetObjectItemCaseSensitive(v, "body")) {
        body = cJSON_GetObjectItemCaseSensitive(v, "body");
        en = cJSON_GetObjectItemCaseSensitive(v, "enabled");
        if (en && !cJSON_IsBool(en)) {
            snprintf(err, errlen, "%s.enabled: must be true or false", key);
            return -1;
        }
    }
    char *text = cJSON_IsString(body) ? strdup(body->valuestring) : cJSON_PrintUnformatted(body);
    char why[512] = "";
    int rc = text ? sim_provision_template_put(a->prov, name, text, strlen(text), !en || cJSON_IsTrue(en), why,
                                               sizeof why)
                  : -1;
    if (rc)
        snprintf(err, errlen, "%s: %s", key, text ? why : "out of memory");
    free(text);
    return rc ? -1 : 0;
}

/* "provisioning_templates": {"NAME": TEMPLATE, ...} or [{"name", "body", "enabled"?}]. */
static int apply_templates(app *a, const cJSON *t, char *err, size_t errlen)
{
    char key[200];
    const cJSON *x;
    if (cJSON_IsObject(t)) {
        cJSON_ArrayForEach(x, t)
        {
            snprintf(key, sizeof key, "provisioning_templates.%.64s", x->string);
            if (put_template(a, key, x->string, x, err, errlen))
                return -1;
        }
        return 0;
    }
    if (!cJSON_IsArray(t)) {
        snprintf(err, errlen, "provisioning_templates: must be {\"NAME\": TEMPLATE} or [{\"name\", \"body\"}]");
        return -1;
    }
    size_t i = 0;
    cJSON_ArrayForEach(x, t)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, "name");
        snprintf(key, sizeof key, "provisioning_templates[%zu]", i++);
        if (!cJSON_IsString(n) || !cJSON_GetObjectItemCaseSensitive(x, "body")) {
            snprintf(err, errlen, "%s: want {\"name\", \"body\", \"enabled\"?}", key);
            return -1;
        }
        if (put_template(a, key, n->valuestring, x, err, errlen))
            return -1;
    }
    return 0;
}

static int config_load(app *a, sim_config *cfg, sim_profile *profile, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = NULL;
    size_t len = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n > 1024 * 1024) { /* a configuration, not a data set */
            free(buf);
            fclose(f);
            snprintf(err, errlen, "%s: larger than 1 MiB", path);
            return -1;
        }
        char *nb = realloc(buf, len + n);
        if (!nb) {
            free(buf);
            fclose(f);
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        buf = nb;
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    char inner[1024] = "";
    int rc = -1;
    cJSON *root = buf ? cJSON_ParseWithLength(buf, len) : NULL;
    free(buf);
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        cJSON_Delete(root);
        return -1;
    }
    cJSON *things = cJSON_DetachItemFromObjectCaseSensitive(root, "things");
    cJSON *pols = cJSON_DetachItemFromObjectCaseSensitive(root, "policies");
    cJSON *tpls = cJSON_DetachItemFromObjectCaseSensitive(root, "provisioning_templates");
    char *rest = NULL;
    /* Policies first: the things attach them by name. */
    if ((!pols || apply_policies(a, pols, inner, sizeof inner) == 0) &&
        (!tpls || apply_templates(a, tpls, inner, sizeof inner) == 0) &&
        (rest = cJSON_PrintUnformatted(root)) != NULL &&
        sim_config_parse(cfg, profile, rest, strlen(rest), inner, sizeof inner) == 0) {
        rc = things ? apply_things(a, things, inner, sizeof inner) : 0;
    }
    if (rc)
        snprintf(err, errlen, "%.300s: %s", path, inner[0] ? inner : "out of memory");
    free(rest);
    cJSON_Delete(things);
    cJSON_Delete(pols);
    cJSON_Delete(tpls);
    cJSON_Delete(root);
    return rc;
}

/* ---- shadows.json: the Device Shadow store across restarts ---------------- */

/* Written whole after every change (temporary file, then rename), so that
 * a crash or a kill leaves the previous or the new store, never half of one. */
static void shadows_save(void *ctx)
{
    app *a = ctx;
    sim_shadow_store *st = sim_engine_shadows(sim_server_engine(a->srv));
    char *t = st ? sim_shadow_save(st) : NULL;
    char p[PATH_MAX + 32], tmp[PATH_MAX + 40];
    path_in(a, "shadows.json", p, sizeof p);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    FILE *f = t ? fopen(tmp, "wb") : NULL;
    bool ok = f && fwrite(t, 1, strlen(t), f) == strlen(t);
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, p) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "iotsim: warning: %s: shadows not saved (%s)\n", p, t ? strerror(errno) : "out of memory");
        if (f)
            remove(tmp);
    }
    free(t);
}

/* Loads shadows.json when there is one.  A file that cannot be read or
 * parsed stops iotsim with the reason rather than be overwritten. */
static int shadows_load(app *a, char *err, size_t errlen)
{
    sim_shadow_store *st = sim_engine_shadows(sim_server_engine(a->srv));
    char p[PATH_MAX + 32];
    path_in(a, "shadows.json", p, sizeof p);
    if (!st || !exists(p))
        return 0;
    FILE *f = fopen(p, "rb");
    if (!f) {
        snprintf(err, errlen, "%.900s: %s", p, strerror(errno));
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            /* The store is bounded by max_shadows x max_state_bytes; 1 GiB is far past any real one. */
            if (cap > ((size_t)1 << 30)) {
                snprintf(err, errlen, "%.900s: larger than 1 GiB", p);
                free(buf);
                fclose(f);
                return -1;
            }
            size_t nc = cap ? cap * 2 : 65536 + 1;
            char *nb = realloc(buf, nc);
            if (!nb) {
                snprintf(err, errlen, "%.900s: out of memory", p);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
            cap = nc;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    buf[len] = 0;
    char why[512] = "";
    int rc = 0;
    if (bad) {
        snprintf(err, errlen, "%.900s: read error", p);
        rc = -1;
    } else if (!sim_shadow_load(st, buf, why, sizeof why)) {
        snprintf(err, errlen, "%.900s: %.500s (fix or remove the file)", p, why);
        rc = -1;
    }
    free(buf);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: iotsim [--state-dir DIR] [--ports auto] [--listen ADDR] [--insecure-tcp]\n"
                    "              [--profile classic|current] [--time-scale X] [--log FILE] [--config FILE]\n"
                    "       iotsim device add NAME [--state-dir DIR]\n");
    return 2;
}

int main(int argc, char **argv)
{
    app a;
    memset(&a, 0, sizeof a);
    const char *state = ".iotsim", *listen = "127.0.0.1", *config = NULL, *profile = "classic";
    bool auto_ports = false, tcp = false, device_cmd = false;
    double scale = 1.0;
    const char *device_name = NULL;
    int i = 1;
    if (argc >= 3 && !strcmp(argv[1], "device") && !strcmp(argv[2], "add")) {
        if (argc < 4)
            return usage();
        device_cmd = true;
        device_name = argv[3];
        i = 4;
    }
    for (; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--state-dir") && v)
            state = v, i++;
        else if (!strcmp(o, "--ports") && v && !strcmp(v, "auto"))
            auto_ports = true, i++;
        else if (!strcmp(o, "--listen") && v)
            listen = v, i++;
        else if (!strcmp(o, "--insecure-tcp"))
            tcp = true;
        else if (!strcmp(o, "--profile") && v && (!strcmp(v, "classic") || !strcmp(v, "current")))
            profile = v, i++;
        else if (!strcmp(o, "--time-scale") && v) {
            char *end;
            scale = strtod(v, &end);
            if (*end || scale <= 0 || scale > 1e6) {
                fprintf(stderr, "iotsim: --time-scale: a number > 0 (got \"%s\")\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(o, "--log") && v)
            a.log_path = v, i++;
        else if (!strcmp(o, "--config") && v)
            config = v, i++;
        else {
            fprintf(stderr, "iotsim: unknown or incomplete option \"%s\"\n", o);
            return usage();
        }
    }
    if (strlen(state) >= sizeof a.dir - 64) {
        fprintf(stderr, "iotsim: --state-dir is too long\n");
        return 2;
    }
    if (!realpath(state, a.dir)) {
        if (mkdir(state, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "iotsim: %s: %s\n", state, strerror(errno));
            return 1;
        }
        if (!realpath(state, a.dir)) {
            fprintf(stderr, "iotsim: %s: %s\n", state, strerror(errno));
            return 1;
        }
    }
    char err[1536] = "";
    a.listen = listen;
    a.lock_fd = -1;
    if (lock_state(&a, err, sizeof err) != 0) {
        fprintf(stderr, "iotsim: %s\n", err);
        return 1;
    }
    a.pol = sim_policy_store_new(REGION, ACCOUNT);
    sim_provision_config pc;
    sim_provision_config_init(&pc);
    /* Ownership tokens nobody can guess from the last one. */
    if (RAND_bytes((unsigned char *)&pc.seed, sizeof pc.seed) != 1)
        pc.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    a.prov = sim_provision_new(&pc);
    if (!a.pol || !a.prov) {
        fprintf(stderr, "iotsim: out of memory\n");
        app_free(&a);
        return 1;
    }
    a.fleet.dir = a.dir;
    a.fleet.reg = &a.reg;
    a.fleet.pol = a.pol;
    a.fleet.changed = fleet_changed;
    a.fleet.ctx = &a;
    a.fleet.key_type = SIM_PKI_KEY_RSA_2048;
    sim_prov_backend be;
    sim_fleet_backend(&a.fleet, &be);
    sim_provision_set_backend(a.prov, &be);
    if (ensure_state(&a, err, sizeof err) != 0) {
        fprintf(stderr, "iotsim: state directory %s: %s\n", a.dir, err);
        app_free(&a);
        return 1;
    }
    if (device_cmd) {
        int rc = add_device(&a, device_name, err, sizeof err);
        if (rc)
            fprintf(stderr, "iotsim: device add: %s\n", err);
        else
            printf("%s/devices/%s.crt\n%s/devices/%s.key\n", a.dir, device_name, a.dir, device_name);
        app_free(&a);
        return rc ? 1 : 0;
    }

    a.profile = !strcmp(profile, "current") ? SIM_PROFILE_CURRENT : SIM_PROFILE_CLASSIC;
    sim_config cfg;
    sim_config_init(&cfg, a.profile);
    if (config && config_load(&a, &cfg, &a.profile, config, err, sizeof err) != 0) {
        fprintf(stderr, "iotsim: %s\n", err);
        app_free(&a);
        return 2;
    }
    attach_registry_policies(&a);
    cfg.policies = a.pol;
    cfg.provisioning = a.prov;
    FILE *log = NULL;
    if (a.log_path && !(log = fopen(a.log_path, "a"))) {
        fprintf(stderr, "iotsim: --log %s: %s\n", a.log_path, strerror(errno));
        app_free(&a);
        return 1;
    }
    char ca[PATH_MAX + 16], crt[PATH_MAX + 16], key[PATH_MAX + 16];
    path_in(&a, "ca.crt", ca, sizeof ca);
    path_in(&a, "server.crt", crt, sizeof crt);
    path_in(&a, "server.key", key, sizeof key);
    sim_server_opts so;
    memset(&so, 0, sizeof so);
    so.listen_addr = listen;
    so.port_mtls = auto_ports ? 0 : 8883;
    so.port_alpn = auto_ports ? 0 : 8443;
    so.port_tcp = tcp ? (auto_ports ? 0 : 1883) : -1;
    so.port_control = auto_ports ? 0 : 9883;
    so.ca_file = ca;
    so.cert_file = crt;
    so.key_file = key;
    so.time_scale = scale;
    so.log = log;
    so.principal_ok = principal_ok;
    so.ready = write_endpoint;
    so.device_add = device_add_api;
    so.policy_admin = policy_admin_api;
    so.things_describe = things_api;
    so.shadows_changed = shadows_save;
    so.ctx = &a;
    a.srv = sim_server_new(&cfg, &so, err, sizeof err);
    if (!a.srv) {
        fprintf(stderr, "iotsim: %s\n", err);
        if (log)
            fclose(log);
        app_free(&a);
        return 1;
    }
    if (shadows_load(&a, err, sizeof err) != 0) {
        fprintf(stderr, "iotsim: %s\n", err);
        sim_server_free(a.srv);
        if (log)
            fclose(log);
        app_free(&a);
        return 1;
    }
    g_srv = a.srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = sim_server_run(a.srv);
    g_srv = NULL;
    sim_server_free(a.srv);
    char ep[PATH_MAX + 32];
    path_in(&a, "endpoint.json", ep, sizeof ep);
    remove(ep); /* nothing listens any more */
    if (log)
        fclose(log);
    app_free(&a); /* after the engine, which pointed at its parts */
    fprintf(stderr, "iotsim: stopped\n");
    return rc ? 1 : 0;
}
