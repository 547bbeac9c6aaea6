/* sim_registry.c: see sim_registry.h. */
#include "sim_registry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const FIELDS[] = {"name", "certificate_id", "status", "cert", "key", "policy"};

static char **field(sim_device *d, size_t i)
{
    char **f[] = {&d->thing, &d->cert_id, &d->status, &d->cert_file, &d->key_file, &d->policy};
    return f[i];
}

static void device_free(sim_device *d)
{
    for (size_t i = 0; i < 6; i++)
        free(*field(d, i));
}

void sim_registry_free(sim_registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        device_free(&r->v[i]);
    free(r->v);
    free(r->path);
    memset(r, 0, sizeof *r);
}

bool sim_thing_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

static int add(sim_registry *r, const sim_device *d, bool new_thing, char *err, size_t errlen)
{
    bool has_thing = d->thing && d->thing[0];
    if ((new_thing || has_thing) && (!d->thing || !sim_thing_name_valid(d->thing))) {
        snprintf(err, errlen, "thing name must be 1..128 characters of a-z A-Z 0-9 : _ -");
        return -1;
    }
    if (new_thing && sim_registry_by_thing(r, d->thing)) {
        snprintf(err, errlen, "thing %s already exists", d->thing);
        return -1;
    }
    if (!d->cert_id || !d->cert_id[0]) {
        snprintf(err, errlen, "a certificate id is required");
        return -1;
    }
    if (sim_registry_by_cert(r, d->cert_id)) {
        snprintf(err, errlen, "certificate %s already exists", d->cert_id);
        return -1;
    }
    sim_device *nv = realloc(r->v, (r->n + 1) * sizeof *nv);
    if (!nv) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->v = nv;
    sim_device *x = &r->v[r->n];
    memset(x, 0, sizeof *x);
    sim_device src = *d;
    for (size_t i = 0; i < 6; i++) {
        const char *v = *field(&src, i);
        if (!v)
            v = i == 2 ? "ACTIVE" : i == 5 ? "allow-all" : "";
        if (!(*field(x, i) = strdup(v))) {
            device_free(x);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    r->n++;
    return 0;
}

int sim_registry_add(sim_registry *r, const sim_device *d, char *err, size_t errlen)
{
    return add(r, d, true, err, errlen);
}

int sim_registry_add_cert(sim_registry *r, const sim_device *d, char *err, size_t errlen)
{
    return add(r, d, false, err, errlen);
}

int sim_registry_update(sim_registry *r, const char *cert_id, const char *thing, const char *status,
                        const char *policy, char *err, size_t errlen)
{
    sim_device *d = (sim_device *)sim_registry_by_cert(r, cert_id);
    if (!d) {
        snprintf(err, errlen, "no certificate %s", cert_id);
        return -1;
    }
    if (thing && !sim_thing_name_valid(thing)) {
        snprintf(err, errlen, "thing name must be 1..128 characters of a-z A-Z 0-9 : _ -");
        return -1;
    }
    const char *in[3] = {thing, status, policy};
    char **at[3] = {&d->thing, &d->status, &d->policy};
    char *nv[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        if (in[i] && !(nv[i] = strdup(in[i]))) {
            for (int k = 0; k < 3; k++)
                free(nv[k]);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (nv[i]) {
            free(*at[i]);
            *at[i] = nv[i];
        }
    }
    return 0;
}

bool sim_registry_remove(sim_registry *r, const char *cert_id)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].cert_id, cert_id))
            continue;
        device_free(&r->v[i]);
        memmove(&r->v[i], &r->v[i + 1], (r->n - i - 1) * sizeof r->v[0]);
        r->n--;
        return true;
    }
    return false;
}

const sim_device *sim_registry_by_cert(const sim_registry *r, const char *cert_id)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->v[i].cert_id, cert_id))
            return &r->v[i];
    return NULL;
}

const sim_device *sim_registry_by_thing(const sim_registry *r, const char *thing)
{
    for (size_t i = 0; thing[0] && i < r->n; i++)
        if (!strcmp(r->v[i].thing, thing))
            return &r->v[i];
    return NULL;
}

int sim_registry_load(sim_registry *r, const char *path, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->path = strdup(path);
    if (!r->path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            buf = nb;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    cJSON *root = buf ? cJSON_ParseWithLength(buf, len) : NULL;
    free(buf);
    const cJSON *things = cJSON_GetObjectItemCaseSensitive(root, "things");
    if (!cJSON_IsArray(things)) {
        cJSON_Delete(root);
        snprintf(err, errlen, "%s: not a registry (want {\"things\": [...]})", path);
        return -1;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, things)
    {
        sim_device d;
        memset(&d, 0, sizeof d);
        for (size_t i = 0; i < 6; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, FIELDS[i]);
            if (v && !cJSON_IsString(v)) {
                snprintf(err, errlen, "%s: thing field \"%s\" must be a string", path, FIELDS[i]);
                cJSON_Delete(root);
                return -1;
            }
            *field(&d, i) = v ? v->valuestring : NULL;
        }
        /* Saved entries may share a thing or have none (fleet provisioning). */
        char why[256] = "";
        if (!d.cert_id || add(r, &d, false, why, sizeof why) != 0) {
            if (!d.cert_id)
                snprintf(err, errlen, "%s: a thing without certificate_id", path);
            else
                snprintf(err, errlen, "%s: %s", path, why);
            cJSON_Delete(root);
            return -1;
        }
    }
    cJSON_Delete(root);
    return 0;
}

int sim_registry_save(const sim_registry *r, char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "things") : NULL;
    for (size_t i = 0; arr && i < r->n; i++) {
        cJSON *t = cJSON_CreateObject();
        if (!t)
            break;
        for (size_t k = 0; k < 6; k++)
            cJSON_AddStringToObject(t, FIELDS[k], *field(&r->v[i], k));
        cJSON_AddItemToArray(arr, t);
    }
    char *txt = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!txt) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t plen = strlen(r->path);
    char *tmp = malloc(plen + 8);
    if (!tmp) {
        free(txt);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(tmp, plen + 8, "%s.tmp", r->path);
    FILE *f = fopen(tmp, "wb");
    int rc = -1;
    if (f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF && fclose(f) == 0) {
        f = NULL;
        rc = rename(tmp, r->path) == 0 ? 0 : -1;
    }
    if (f)
        fclose(f);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", r->path, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    free(txt);
    return rc;
}
