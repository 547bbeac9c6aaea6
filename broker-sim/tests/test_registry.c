/*
 * test_registry.c: registry.json, the things and certificates of iotsim's
 * state directory: new things, certificates without a thing or sharing one
 * (fleet provisioning), updates, removal, and a save/load round trip with
 * what a hand-edited file may get wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_registry.h"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/test_registry.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char p[300];
    snprintf(p, sizeof p, "%s/registry.json", g_dir);
    unlink(p);
    rmdir(g_dir);
    return 0;
}

static const char *reg_path(void)
{
    static char p[300];
    snprintf(p, sizeof p, "%s/registry.json", g_dir);
    return p;
}

static void write_file(const char *text)
{
    FILE *f = fopen(reg_path(), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static sim_device dev(const char *thing, const char *cert, const char *status)
{
    sim_device d;
    memset(&d, 0, sizeof d);
    d.thing = (char *)thing;
    d.cert_id = (char *)cert;
    d.status = (char *)status;
    return d;
}

static void things_and_certificates(void **state)
{
    (void)state;
    sim_registry r;
    char err[256];
    assert_int_equal(sim_registry_load(&r, reg_path(), err, sizeof err), 0); /* no file: empty */
    assert_int_equal(r.n, 0);
    sim_device d = dev("t1", "c1", NULL);
    assert_int_equal(sim_registry_add(&r, &d, err, sizeof err), 0);
    assert_string_equal(sim_registry_by_thing(&r, "t1")->status, "ACTIVE");
    assert_string_equal(sim_registry_by_cert(&r, "c1")->policy, "allow-all");
    /* A new thing: a taken name, a bad name, a taken certificate id. */
    d = dev("t1", "c2", NULL);
    assert_int_equal(sim_registry_add(&r, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));
    d = dev("bad name", "c2", NULL);
    assert_int_equal(sim_registry_add(&r, &d, err, sizeof err), -1);
    d = dev("", "c2", NULL);
    assert_int_equal(sim_registry_add(&r, &d, err, sizeof err), -1);
    d = dev("t2", "c1", NULL);
    assert_int_equal(sim_registry_add(&r, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "certificate c1 already exists"));
    /* Certificates without a thing, and a second certificate of t1. */
    d = dev(NULL, "p1", "PENDING_ACTIVATION");
    assert_int_equal(sim_registry_add_cert(&r, &d, err, sizeof err), 0);
    assert_string_equal(sim_registry_by_cert(&r, "p1")->thing, "");
    assert_null(sim_registry_by_thing(&r, ""));
    d = dev("t1", "c3", NULL);
    assert_int_equal(sim_registry_add_cert(&r, &d, err, sizeof err), 0);
    assert_string_equal(sim_registry_by_thing(&r, "t1")->cert_id, "c1"); /* the first one */
    d = dev(NULL, "p1", NULL);
    assert_int_equal(sim_registry_add_cert(&r, &d, err, sizeof err), -1);
    d = dev("no way", "p9", NULL);
    assert_int_equal(sim_registry_add_cert(&r, &d, err, sizeof err), -1);
    d = dev(NULL, NULL, NULL);
    assert_int_equal(sim_registry_add_cert(&r, &d, err, sizeof err), -1);
    /* RegisterThing: the pending certificate gets its thing and status. */
    assert_int_equal(sim_registry_update(&r, "p1", "t9", "ACTIVE", "pol-a pol-b", err, sizeof err), 0);
    assert_string_equal(sim_registry_by_thing(&r, "t9")->cert_id, "p1");
    assert_string_equal(sim_registry_by_cert(&r, "p1")->status, "ACTIVE");
    assert_int_equal(sim_registry_update(&r, "p1", NULL, "INACTIVE", NULL, err, sizeof err), 0);
    assert_string_equal(sim_registry_by_cert(&r, "p1")->thing, "t9");
    assert_string_equal(sim_registry_by_cert(&r, "p1")->policy, "pol-a pol-b");
    assert_int_equal(sim_registry_update(&r, "nope", "x", NULL, NULL, err, sizeof err), -1);
    assert_int_equal(sim_registry_update(&r, "p1", "bad/name", NULL, NULL, err, sizeof err), -1);
    assert_string_equal(sim_registry_by_cert(&r, "p1")->thing, "t9");
    /* Save, load: the same entries. */
    assert_int_equal(sim_registry_save(&r, err, sizeof err), 0);
    sim_registry r2;
    assert_int_equal(sim_registry_load(&r2, reg_path(), err, sizeof err), 0);
    assert_int_equal(r2.n, r.n);
    for (size_t i = 0; i < r.n; i++) {
        assert_string_equal(r2.v[i].thing, r.v[i].thing);
        assert_string_equal(r2.v[i].cert_id, r.v[i].cert_id);
        assert_string_equal(r2.v[i].status, r.v[i].status);
    }
    sim_registry_free(&r2);
    /* Removal. */
    size_t n = r.n;
    assert_true(sim_registry_remove(&r, "c1"));
    assert_false(sim_registry_remove(&r, "c1"));
    assert_int_equal(r.n, n - 1);
    assert_string_equal(sim_registry_by_thing(&r, "t1")->cert_id, "c3");
    assert_non_null(sim_registry_by_cert(&r, "p1"));
    sim_registry_free(&r);
}

static void bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{", "not a registry"},
        {"{\"things\": {}}", "not a registry"},
        {"{\"things\": [{\"name\": \"a\"}]}", "without certificate_id"},
        {"{\"things\": [{\"name\": 5, \"certificate_id\": \"x\"}]}", "must be a string"},
        {"{\"things\": [{\"name\": \"a b\", \"certificate_id\": \"x\"}]}", "thing name"},
        {"{\"things\": [{\"name\": \"a\", \"certificate_id\": \"x\"}, {\"name\": \"b\", \"certificate_id\": \"x\"}]}",
         "certificate x already exists"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(cases[i].text);
        sim_registry r;
        char err[256] = "";
        assert_int_equal(sim_registry_load(&r, reg_path(), err, sizeof err), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].text, err, cases[i].want);
        sim_registry_free(&r);
    }
    /* A thing with two certificates and a certificate without a thing load. */
    write_file("{\"things\": [{\"name\": \"a\", \"certificate_id\": \"x\"}, {\"name\": \"a\", \"certificate_id\": \"y\"},"
               "{\"name\": \"\", \"certificate_id\": \"z\", \"status\": \"PENDING_ACTIVATION\"}]}");
    sim_registry r;
    char err[256];
    assert_int_equal(sim_registry_load(&r, reg_path(), err, sizeof err), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(sim_registry_by_cert(&r, "z")->status, "PENDING_ACTIVATION");
    sim_registry_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(things_and_certificates, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
