/*
 * sim_pki tests. What sim_pki produces is checked twice: with OpenSSL's API
 * and with the openssl(1) command line tool run on PEM files, so that a
 * mistake shared by the code and its own checks (the same misread of an
 * OpenSSL call) still shows. Files live in a mkdtemp directory that the
 * group teardown removes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "sim_pki.h"

#define ENDPOINT "abc123-ats.iot.us-east-1.amazonaws.com"

static const char *const server_sans[] = {"localhost", "127.0.0.1", "::1", ENDPOINT};

/* Made once: EC keys are cheap, but every test needs a CA and its leaves. */
static struct {
    char dir[256];
    EVP_PKEY *ca_key, *srv_key, *cli_key;
    X509 *ca, *srv, *cli;
} F;

static const char *path(const char *name)
{
    static char buf[4][512];
    static unsigned next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", F.dir, name);
    return p;
}

/* Runs a shell command with stderr folded into out; returns the exit status, -1 if it did not exit. */
static int sh(char *out, size_t outlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t outlen, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    while (fgetc(p) != EOF) /* drain, so the child never blocks on a full pipe */
        ;
    int st = pclose(p);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int write_pair(const char *name, EVP_PKEY *key, X509 *cert)
{
    char err[256], n[128];
    snprintf(n, sizeof n, "%s.key", name);
    if (key && sim_pki_write_key(path(n), key, err, sizeof err) < 0)
        return -1;
    snprintf(n, sizeof n, "%s.pem", name);
    return sim_pki_write_cert(path(n), cert, err, sizeof err);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[768];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int group_setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(F.dir, sizeof F.dir, "%s/test_pki.XXXXXX", tmp && *tmp && !strchr(tmp, '\'') ? tmp : "/tmp");
    if (!mkdtemp(F.dir))
        return -1;
    char err[256];
    if (sim_pki_make_ca("iotsim test CA", 3650, &F.ca_key, &F.ca, err, sizeof err) < 0) {
        print_error("make_ca: %s\n", err);
        return -1;
    }
    sim_pki_req r;
    sim_pki_req_init(&r);
    r.cn = "iotsim server";
    r.server = true;
    r.san = server_sans;
    r.nsan = sizeof server_sans / sizeof server_sans[0];
    if (sim_pki_issue(F.ca_key, F.ca, &r, &F.srv_key, &F.srv, err, sizeof err) < 0) {
        print_error("issue server: %s\n", err);
        return -1;
    }
    sim_pki_req_init(&r);
    r.cn = "my-thing";
    if (sim_pki_issue(F.ca_key, F.ca, &r, &F.cli_key, &F.cli, err, sizeof err) < 0) {
        print_error("issue client: %s\n", err);
        return -1;
    }
    if (write_pair("ca", F.ca_key, F.ca) < 0 || write_pair("srv", F.srv_key, F.srv) < 0 ||
        write_pair("cli", F.cli_key, F.cli) < 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(F.ca_key);
    EVP_PKEY_free(F.srv_key);
    EVP_PKEY_free(F.cli_key);
    X509_free(F.ca);
    X509_free(F.srv);
    X509_free(F.cli);
    if (F.dir[0])
        remove_tree(F.dir);
    return 0;
}

/* ---- helpers on certificates ----------------------------------------------- */

static bool ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static int serial_bits(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    int bits = BN_num_bits(bn);
    BN_free(bn);
    return bits;
}

static void assert_cn(X509 *x, const char *cn)
{
    char buf[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf) > 0);
    assert_string_equal(buf, cn);
}

static void assert_validity_days(X509 *x, int days)
{
    int d = 0, s = 0;
    assert_true(ASN1_TIME_diff(&d, &s, X509_get0_notBefore(x), X509_get0_notAfter(x)));
    assert_int_equal(d, days);
    assert_int_equal(s, 0);
}

static void assert_ec_p256(EVP_PKEY *k)
{
    char group[64];
    size_t len = 0;
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_true(EVP_PKEY_get_group_name(k, group, sizeof group, &len));
    assert_string_equal(group, "prime256v1");
}

static void assert_akid_matches(X509 *leaf, X509 *ca)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
    assert_non_null(ski);
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);
    assert_non_null(X509_get0_subject_key_id(leaf));
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(ca)), 0);
}

static void assert_cert_der_equal(X509 *a, X509 *b)
{
    unsigned char *da = NULL, *db = NULL;
    int na = i2d_X509(a, &da), nb = i2d_X509(b, &db);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, (size_t)na);
    OPENSSL_free(da);
    OPENSSL_free(db);
}

static void assert_key_der_equal(EVP_PKEY *a, EVP_PKEY *b)
{
    unsigned char *da = NULL, *db = NULL;
    int na = i2d_PrivateKey(a, &da), nb = i2d_PrivateKey(b, &db);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, (size_t)na);
    OPENSSL_free(da);
    OPENSSL_free(db);
    assert_int_equal(EVP_PKEY_eq(a, b), 1);
}

/* A failure: -1, a message, no output, and nothing left on OpenSSL's error queue. */
#define assert_fails(call, err, needle)                                                              \
    do {                                                                                             \
        (err)[0] = '\0';                                                                             \
        assert_int_equal((call), -1);                                                                \
        if (!strstr((err), (needle))) {                                                              \
            print_error("message \"%s\" lacks \"%s\"\n", (err), (needle));                          \
            fail();                                                                                  \
        }                                                                                            \
        assert_int_equal(ERR_peek_error(), 0);                                                       \
    } while (0)

/* ---- the CA ----------------------------------------------------------------- */

static void test_ca(void **state)
{
    (void)state;
    char err[256], out[4096];
    assert_int_equal(sim_pki_verify(F.ca, F.ca, err, sizeof err), 0);
    assert_true(X509_check_ca(F.ca));
    assert_true(X509_get_extension_flags(F.ca) & EXFLAG_SS);
    assert_true(ext_critical(F.ca, NID_basic_constraints));
    assert_true(ext_critical(F.ca, NID_key_usage));
    assert_int_equal(X509_get_key_usage(F.ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(F.ca));
    assert_int_equal(X509_get_version(F.ca), X509_VERSION_3);
    assert_int_equal(X509_get_signature_nid(F.ca), NID_ecdsa_with_SHA256);
    assert_ec_p256(F.ca_key);
    assert_cn(F.ca, "iotsim test CA");
    assert_validity_days(F.ca, 3650);
    /* 128 random bits: fewer than 100 significant ones has probability 2^-28. */
    int bits = serial_bits(F.ca);
    assert_in_range(bits, 100, 128);
    assert_int_equal(sim_pki_check_key(F.ca, F.ca_key, err, sizeof err), 0);

    assert_int_equal(sh(out, sizeof out, "openssl x509 -noout -ext basicConstraints,keyUsage,subjectKeyIdentifier "
                                         "-in '%s'", path("ca.pem")),
                     0);
    assert_non_null(strstr(out, "X509v3 Basic Constraints: critical"));
    assert_non_null(strstr(out, "CA:TRUE"));
    assert_non_null(strstr(out, "X509v3 Key Usage: critical"));
    assert_non_null(strstr(out, "Certificate Sign, CRL Sign"));
    assert_non_null(strstr(out, "X509v3 Subject Key Identifier"));
    assert_int_equal(sh(out, sizeof out, "openssl verify -x509_strict -CAfile '%s' '%s'", path("ca.pem"),
                        path("ca.pem")),
                     0);
}

static void test_ca_serials_differ(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *k;
    X509 *c;
    assert_int_equal(sim_pki_make_ca("iotsim test CA", 3650, &k, &c, err, sizeof err), 0);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(c), X509_get0_serialNumber(F.ca)), 0);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(F.srv), X509_get0_serialNumber(F.cli)), 0);
    EVP_PKEY_free(k);
    X509_free(c);
}

/* ---- leaves ----------------------------------------------------------------- */

static void test_server_cert(void **state)
{
    (void)state;
    char err[256], out[4096];
    assert_int_equal(sim_pki_verify(F.ca, F.srv, err, sizeof err), 0);
    assert_int_equal(sim_pki_check_key(F.srv, F.srv_key, err, sizeof err), 0);
    assert_cn(F.srv, "iotsim server");
    assert_ec_p256(F.srv_key);
    assert_akid_matches(F.srv, F.ca);
    assert_validity_days(F.srv, 365);
    assert_false(X509_check_ca(F.srv));
    assert_true(ext_critical(F.srv, NID_basic_constraints));
    assert_int_equal(X509_get_key_usage(F.srv), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(F.srv), XKU_SSL_SERVER);
    assert_in_range(serial_bits(F.srv), 100, 128);
    /* As a TLS client would match them. */
    assert_int_equal(X509_check_host(F.srv, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(F.srv, ENDPOINT, 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(F.srv, "example.com", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(F.srv, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(F.srv, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(F.srv, "127.0.0.2", 0), 0);

    assert_int_equal(sh(out, sizeof out, "openssl verify -x509_strict -purpose sslserver -CAfile '%s' '%s'",
                        path("ca.pem"), path("srv.pem")),
                     0);
    assert_non_null(strstr(out, ": OK"));
    /* serverAuth only: the same certificate must not pass as a client's. */
    assert_int_not_equal(sh(out, sizeof out, "openssl verify -purpose sslclient -CAfile '%s' '%s'",
                            path("ca.pem"), path("srv.pem")),
                         0);
    assert_int_equal(sh(out, sizeof out, "openssl x509 -noout -ext subjectAltName -in '%s'", path("srv.pem")), 0);
    assert_non_null(strstr(out, "DNS:localhost"));
    assert_non_null(strstr(out, "IP Address:127.0.0.1"));
    assert_non_null(strstr(out, "DNS:" ENDPOINT));
    assert_null(strstr(out, "DNS:127.0.0.1")); /* an IP literal must not become a DNS name */
    assert_int_equal(sh(out, sizeof out, "openssl x509 -noout -ext extendedKeyUsage,keyUsage -in '%s'",
                        path("srv.pem")),
                     0);
    assert_non_null(strstr(out, "TLS Web Server Authentication"));
    assert_null(strstr(out, "TLS Web Client Authentication"));
}

static void test_client_cert(void **state)
{
    (void)state;
    char err[256], out[4096];
    assert_int_equal(sim_pki_verify(F.ca, F.cli, err, sizeof err), 0);
    assert_cn(F.cli, "my-thing");
    assert_ec_p256(F.cli_key);
    assert_akid_matches(F.cli, F.ca);
    assert_int_equal(X509_get_extended_key_usage(F.cli), XKU_SSL_CLIENT);
    assert_int_equal(X509_get_ext_by_NID(F.cli, NID_subject_alt_name, -1), -1);

    assert_int_equal(sh(out, sizeof out, "openssl verify -x509_strict -purpose sslclient -CAfile '%s' '%s'",
                        path("ca.pem"), path("cli.pem")),
                     0);
    assert_non_null(strstr(out, ": OK"));
    assert_int_not_equal(sh(out, sizeof out, "openssl verify -purpose sslserver -CAfile '%s' '%s'",
                            path("ca.pem"), path("cli.pem")),
                         0);
}

static void test_rsa_client_cert(void **state)
{
    (void)state;
    char err[256], out[4096];
    sim_pki_req r;
    sim_pki_req_init(&r);
    r.cn = "rsa-thing";
    r.key_type = SIM_PKI_KEY_RSA_2048;
    r.days = 30;
    EVP_PKEY *k;
    X509 *c;
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), 0);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(k), 2048);
    assert_int_equal(X509_get_key_usage(c), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_validity_days(c, 30);
    assert_int_equal(sim_pki_verify(F.ca, c, err, sizeof err), 0);
    assert_int_equal(write_pair("rsa", k, c), 0);
    assert_int_equal(sh(out, sizeof out, "openssl verify -x509_strict -purpose sslclient -CAfile '%s' '%s'",
                        path("ca.pem"), path("rsa.pem")),
                     0);
    /* PKCS#8 even for RSA, not the older "BEGIN RSA PRIVATE KEY". */
    assert_int_equal(sh(out, sizeof out, "head -n 1 '%s'", path("rsa.key")), 0);
    assert_string_equal(out, "-----BEGIN PRIVATE KEY-----\n");
    EVP_PKEY_free(k);
    X509_free(c);
}

/* ---- certificate id ----------------------------------------------------------- */

static void assert_id_matches_openssl(X509 *x, const char *file)
{
    char id[65], out[512], want[65];
    assert_int_equal(sim_pki_cert_id(x, id), 0);
    assert_int_equal(strlen(id), 64);
    assert_int_equal(sh(out, sizeof out, "openssl x509 -noout -fingerprint -sha256 -in '%s'", path(file)), 0);
    const char *p = strchr(out, '=');
    assert_non_null(p);
    size_t n = 0;
    for (p++; *p && *p != '\n'; p++)
        if (*p != ':' && n < 64)
            want[n++] = (char)tolower((unsigned char)*p);
    want[n] = '\0';
    assert_string_equal(id, want);
}

static void test_cert_id(void **state)
{
    (void)state;
    assert_id_matches_openssl(F.ca, "ca.pem");
    assert_id_matches_openssl(F.srv, "srv.pem");
    assert_id_matches_openssl(F.cli, "cli.pem");
    char id[65] = "x";
    assert_int_equal(sim_pki_cert_id(NULL, id), -1);
    assert_string_equal(id, "");
}

/* ---- verification failures -------------------------------------------------- */

static void test_other_ca_fails(void **state)
{
    (void)state;
    char err[256], out[4096];
    EVP_PKEY *k2, *lk;
    X509 *c2, *lc;
    /* Same name as the real CA, so that only the key tells them apart. */
    assert_int_equal(sim_pki_make_ca("iotsim test CA", 3650, &k2, &c2, err, sizeof err), 0);
    sim_pki_req r;
    sim_pki_req_init(&r);
    r.cn = "intruder";
    assert_int_equal(sim_pki_issue(k2, c2, &r, &lk, &lc, err, sizeof err), 0);
    assert_int_equal(sim_pki_verify(c2, lc, err, sizeof err), 0);
    assert_fails(sim_pki_verify(F.ca, lc, err, sizeof err), err, "does not verify");
    assert_non_null(strstr(err, "intruder"));
    assert_fails(sim_pki_verify(c2, F.cli, err, sizeof err), err, "does not verify");

    assert_int_equal(write_pair("other-ca", NULL, c2), 0);
    assert_int_equal(write_pair("intruder", NULL, lc), 0);
    assert_int_not_equal(sh(out, sizeof out, "openssl verify -CAfile '%s' '%s'", path("ca.pem"),
                            path("intruder.pem")),
                         0);
    assert_int_equal(sh(out, sizeof out, "openssl verify -CAfile '%s' '%s'", path("other-ca.pem"),
                        path("intruder.pem")),
                     0);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(lk);
    X509_free(c2);
    X509_free(lc);
}

static void test_expired_fails(void **state)
{
    (void)state;
    char err[256], out[4096];
    sim_pki_req r;
    sim_pki_req_init(&r);
    r.cn = "expired-thing";
    r.not_before_s = -2 * 86400L;
    r.days = 1; /* not-after: a day ago */
    EVP_PKEY *k;
    X509 *c;
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), 0);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(c)) < 0);
    assert_fails(sim_pki_verify(F.ca, c, err, sizeof err), err, "expired");
    assert_int_equal(write_pair("expired", NULL, c), 0);
    assert_int_not_equal(sh(out, sizeof out, "openssl verify -CAfile '%s' '%s'", path("ca.pem"),
                            path("expired.pem")),
                         0);
    assert_non_null(strstr(out, "expired"));
    EVP_PKEY_free(k);
    X509_free(c);
}

static void test_not_yet_valid_fails(void **state)
{
    (void)state;
    char err[256];
    sim_pki_req r;
    sim_pki_req_init(&r);
    r.cn = "future-thing";
    r.not_before_s = 86400L;
    r.days = 1;
    EVP_PKEY *k;
    X509 *c;
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), 0);
    assert_fails(sim_pki_verify(F.ca, c, err, sizeof err), err, "not yet valid");
    EVP_PKEY_free(k);
    X509_free(c);
}

/* ---- files and PEM strings -------------------------------------------------- */

static mode_t file_mode(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 07777;
}

/* Only names the tests wrote: a leftover "x.key.AbC123" would mean a temporary file escaped. */
static void assert_no_temp_files(void)
{
    DIR *d = opendir(F.dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!dot || (strcmp(dot, ".pem") && strcmp(dot, ".key"))) {
            print_error("unexpected file %s\n", e->d_name);
            closedir(d);
            fail();
        }
    }
    closedir(d);
}

static void test_files_roundtrip(void **state)
{
    (void)state;
    char err[256], out[4096];
    EVP_PKEY *k;
    X509 *c;
    mode_t old = umask(0); /* the modes must not depend on the caller's umask */
    assert_int_equal(sim_pki_write_key(path("dev.key"), F.srv_key, err, sizeof err), 0);
    assert_int_equal(sim_pki_write_cert(path("dev.pem"), F.srv, err, sizeof err), 0);
    umask(old);
    assert_int_equal(file_mode(path("dev.key")), 0600);
    assert_int_equal(file_mode(path("dev.pem")), 0644);
    assert_int_equal(file_mode(path("ca.key")), 0600);

    assert_int_equal(sim_pki_load_key(path("dev.key"), &k, err, sizeof err), 0);
    assert_int_equal(sim_pki_load_cert(path("dev.pem"), &c, err, sizeof err), 0);
    assert_key_der_equal(k, F.srv_key);
    assert_cert_der_equal(c, F.srv);
    EVP_PKEY_free(k);
    X509_free(c);

    /* Overwriting replaces the content and keeps the mode. */
    assert_int_equal(sim_pki_write_key(path("dev.key"), F.cli_key, err, sizeof err), 0);
    assert_int_equal(sim_pki_write_cert(path("dev.pem"), F.cli, err, sizeof err), 0);
    assert_int_equal(file_mode(path("dev.key")), 0600);
    assert_int_equal(sim_pki_load_key(path("dev.key"), &k, err, sizeof err), 0);
    assert_int_equal(sim_pki_load_cert(path("dev.pem"), &c, err, sizeof err), 0);
    assert_key_der_equal(k, F.cli_key);
    assert_cert_der_equal(c, F.cli);
    assert_int_equal(sim_pki_check_key(c, k, err, sizeof err), 0);
    EVP_PKEY_free(k);
    X509_free(c);
    assert_no_temp_files();

    /* openssl reads the key as unencrypted PKCS#8 and finds the certificate's public key in it. */
    assert_int_equal(sh(out, sizeof out, "head -n 1 '%s'", path("dev.key")), 0);
    assert_string_equal(out, "-----BEGIN PRIVATE KEY-----\n");
    assert_int_equal(sh(out, sizeof out, "openssl pkey -pubout -in '%s' -passin pass: > '%s'", path("dev.key"),
                        path("a.pem")),
                     0);
    assert_int_equal(sh(out, sizeof out, "openssl x509 -noout -pubkey -in '%s' > '%s'", path("dev.pem"),
                        path("b.pem")),
                     0);
    assert_int_equal(sh(out, sizeof out, "cmp '%s' '%s'", path("a.pem"), path("b.pem")), 0);
}

static void test_pem_strings(void **state)
{
    (void)state;
    char err[256];
    char *pem;
    X509 *c;
    EVP_PKEY *k;
    assert_int_equal(sim_pki_cert_to_pem(F.cli, &pem, err, sizeof err), 0);
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----\n"));
    assert_int_equal(sim_pki_cert_from_pem(pem, &c, err, sizeof err), 0);
    assert_cert_der_equal(c, F.cli);
    X509_free(c);
    free(pem);

    assert_int_equal(sim_pki_key_to_pem(F.cli_key, &pem, err, sizeof err), 0);
    assert_int_equal(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28), 0);
    assert_int_equal(sim_pki_key_from_pem(pem, &k, err, sizeof err), 0);
    assert_key_der_equal(k, F.cli_key);
    EVP_PKEY_free(k);
    free(pem);

    /* A config file may hold the PEM with text around it. */
    assert_int_equal(sim_pki_cert_to_pem(F.ca, &pem, err, sizeof err), 0);
    char *wrapped = malloc(strlen(pem) + 64);
    assert_non_null(wrapped);
    strcpy(wrapped, "subject=/CN=iotsim test CA\n");
    strcat(wrapped, pem);
    strcat(wrapped, "trailing words\n");
    assert_int_equal(sim_pki_cert_from_pem(wrapped, &c, err, sizeof err), 0);
    assert_cert_der_equal(c, F.ca);
    X509_free(c);
    free(wrapped);
    free(pem);

    c = (X509 *)1;
    assert_fails(sim_pki_cert_from_pem("not a certificate", &c, err, sizeof err), err, "no PEM certificate");
    assert_null(c);
    assert_fails(sim_pki_cert_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", &c, err,
                                       sizeof err),
                 err, "malformed PEM certificate");
    assert_fails(sim_pki_cert_from_pem(NULL, &c, err, sizeof err), err, "missing");
    k = (EVP_PKEY *)1;
    assert_fails(sim_pki_key_from_pem("", &k, err, sizeof err), err, "no PEM private key");
    assert_fails(sim_pki_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", &k, err,
                                      sizeof err),
                 err, "malformed PEM private key");
    assert_null(k);
}

/* ---- bad input -------------------------------------------------------------- */

static void test_bad_requests(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *k = (EVP_PKEY *)1;
    X509 *c = (X509 *)1;
    sim_pki_req r;

    sim_pki_req_init(&r);
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "CN is missing");
    assert_null(k);
    assert_null(c);
    char cn[80];
    memset(cn, 'a', 65);
    cn[65] = '\0';
    r.cn = cn;
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "longer than 64");
    cn[64] = '\0';
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), 0);
    EVP_PKEY_free(k);
    X509_free(c);

    r.cn = "srv";
    r.server = true;
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "needs at least one");
    const char *const bad[] = {"localhost", "bad name!"};
    r.san = bad;
    r.nsan = 2;
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "\"bad name!\"");
    const char *const bad_wild[] = {"a.*.example.com"};
    r.san = bad_wild;
    r.nsan = 1;
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "a.*.example.com");
    const char *const wild[] = {"*.iot.us-east-1.amazonaws.com", "2001:db8::7"};
    r.san = wild;
    r.nsan = 2;
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), 0);
    assert_int_equal(X509_check_host(c, ENDPOINT, 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(c, "2001:db8::7", 0), 1);
    EVP_PKEY_free(k);
    X509_free(c);

    sim_pki_req_init(&r);
    r.cn = "thing";
    r.days = 0;
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "at least 1 day");
    r.days = 1;
    r.key_type = (sim_pki_key_type)7;
    assert_fails(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, err, sizeof err), err, "unknown key type");
    r.key_type = SIM_PKI_KEY_EC_P256;
    assert_fails(sim_pki_issue(F.cli_key, F.ca, &r, &k, &c, err, sizeof err), err, "does not match");
    assert_fails(sim_pki_issue(F.cli_key, F.cli, &r, &k, &c, err, sizeof err), err, "not a CA");
    assert_fails(sim_pki_issue(F.ca_key, F.ca, NULL, &k, &c, err, sizeof err), err, "missing argument");
    assert_fails(sim_pki_make_ca("", 10, &k, &c, err, sizeof err), err, "CN is missing");
    assert_fails(sim_pki_make_ca("ca", 0, &k, &c, err, sizeof err), err, "at least 1 day");
    assert_null(k);
    assert_null(c);

    assert_fails(sim_pki_verify(F.cli, F.srv, err, sizeof err), err, "not a CA");
    assert_fails(sim_pki_check_key(F.srv, F.cli_key, err, sizeof err), err, "does not match");

    /* Messages are cut to fit, and err may be absent. */
    char tiny[8] = "xxxxxxx";
    r.cn = NULL;
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, tiny, sizeof tiny), -1);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_int_equal(sim_pki_issue(F.ca_key, F.ca, &r, &k, &c, NULL, 0), -1);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_bad_files(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *k = (EVP_PKEY *)1;
    X509 *c = (X509 *)1;

    assert_fails(sim_pki_load_key(path("missing.key"), &k, err, sizeof err), err, "missing.key");
    assert_non_null(strstr(err, "No such file"));
    assert_null(k);
    assert_fails(sim_pki_load_cert(path("missing.pem"), &c, err, sizeof err), err, "No such file");
    assert_null(c);
    assert_fails(sim_pki_load_cert(path("cli.key"), &c, err, sizeof err), err, "no PEM certificate");
    assert_fails(sim_pki_load_key(path("cli.pem"), &k, err, sizeof err), err, "no PEM private key");
    assert_fails(sim_pki_load_cert(F.dir, &c, err, sizeof err), err, "Is a directory");
    /* A wrong path to an endless file ends in an error, not in reading forever. */
    assert_fails(sim_pki_load_cert("/dev/zero", &c, err, sizeof err), err, "larger than");
    assert_fails(sim_pki_write_key(path("no/such/dir.key"), F.cli_key, err, sizeof err), err, "No such file");
    assert_fails(sim_pki_write_cert("", F.cli, err, sizeof err), err, "missing");

    /* An encrypted key is an error, not a passphrase prompt on the terminal. */
    BIO *b = BIO_new_file(path("enc.key"), "w");
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, F.cli_key, EVP_aes_256_cbc(), NULL, 0, NULL, "secret"), 1);
    BIO_free(b);
    assert_fails(sim_pki_load_key(path("enc.key"), &k, err, sizeof err), err, "is encrypted");
    assert_null(k);
    assert_no_temp_files();
}

/* ---- certificates from a CSR (CreateCertificateFromCsr) ----------------------- */

/* Reads a whole file made by the openssl CLI into a malloc'd string. */
static char *read_text(const char *file, size_t *len)
{
    FILE *f = fopen(path(file), "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

/* A CSR made by openssl(1), a peer this code did not write. */
static char *cli_csr(const char *name, const char *keyopts, const char *subj, size_t *len)
{
    char out[4096], f[64];
    snprintf(f, sizeof f, "%s.csr", name);
    int rc = sh(out, sizeof out, "openssl req -new -newkey %s -nodes -keyout '%s/%s.key' -subj '%s' -out '%s'",
                keyopts, F.dir, name, subj, path(f));
    if (rc != 0)
        fail_msg("openssl req: %s", out);
    return read_text(f, len);
}

static void assert_csr_issues(const char *name, const char *keyopts, bool rsa)
{
    char err[256], out[4096], f[64];
    size_t len;
    char *csr = cli_csr(name, keyopts, "/CN=csr-device/O=Acme Corp", &len);
    X509 *c = NULL;
    if (sim_pki_issue_csr(F.ca_key, F.ca, csr, len, 30, &c, err, sizeof err) != 0)
        fail_msg("%s: %s", name, err);
    free(csr);
    /* OpenSSL's API: the CSR's subject, a client certificate of the CA. */
    char *subj = X509_NAME_oneline(X509_get_subject_name(c), NULL, 0);
    assert_string_equal(subj, "/CN=csr-device/O=Acme Corp");
    OPENSSL_free(subj);
    assert_validity_days(c, 30);
    assert_true(ext_critical(c, NID_basic_constraints));
    assert_int_equal(X509_check_ca(c), 0);
    assert_true((X509_get_extended_key_usage(c) & XKU_SSL_CLIENT) != 0);
    assert_true(((X509_get_key_usage(c) & KU_KEY_ENCIPHERMENT) != 0) == rsa);
    assert_akid_matches(c, F.ca);
    assert_int_equal(sim_pki_verify(F.ca, c, err, sizeof err), 0);
    /* openssl(1): it verifies, and its public key is the one the CSR came with. */
    snprintf(f, sizeof f, "%s.pem", name);
    assert_int_equal(sim_pki_write_cert(path(f), c, err, sizeof err), 0);
    assert_int_equal(sh(out, sizeof out, "openssl verify -purpose sslclient -CAfile '%s' '%s'", path("ca.pem"),
                        path(f)),
                     0);
    char a[4096], b[4096];
    assert_int_equal(sh(a, sizeof a, "openssl x509 -in '%s' -noout -pubkey", path(f)), 0);
    assert_int_equal(sh(b, sizeof b, "openssl pkey -in '%s/%s.key' -pubout", F.dir, name), 0);
    assert_string_equal(a, b);
    X509_free(c);
}

static void test_csr_issue(void **state)
{
    (void)state;
    assert_csr_issues("csr-p256", "ec -pkeyopt ec_paramgen_curve:P-256", false);
    assert_csr_issues("csr-p384", "ec -pkeyopt ec_paramgen_curve:P-384", false);
    assert_csr_issues("csr-rsa", "rsa:2048", true);
}

static void assert_csr_refused(const char *csr, size_t len, const char *want)
{
    char err[256] = "";
    X509 *c = (X509 *)1;
    assert_int_equal(sim_pki_issue_csr(F.ca_key, F.ca, csr, len, 30, &c, err, sizeof err), -1);
    assert_null(c);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_csr_refused(void **state)
{
    (void)state;
    size_t len;
    char *csr = cli_csr("csr-rsa1024", "rsa:1024", "/CN=weak", &len);
    assert_csr_refused(csr, len, "1024 bits");
    free(csr);
    csr = cli_csr("csr-p521", "ec -pkeyopt ec_paramgen_curve:P-521", "/CN=big", &len);
    assert_csr_refused(csr, len, "secp521r1");
    free(csr);
    csr = cli_csr("csr-ed", "ed25519", "/CN=edwards", &len);
    assert_csr_refused(csr, len, "ED25519");
    free(csr);
    assert_csr_refused("hello", 5, "not a PEM CERTIFICATE REQUEST");
    assert_csr_refused("", 0, "not a PEM CERTIFICATE REQUEST");
    char *big = calloc(1, 9000);
    assert_non_null(big);
    memset(big, 'A', 8999);
    assert_csr_refused(big, 8999, "at most 8192");
    free(big);
    /* A certificate is not a request. */
    char *pem;
    char err[256];
    assert_int_equal(sim_pki_cert_to_pem(F.cli, &pem, err, sizeof err), 0);
    assert_csr_refused(pem, strlen(pem), "not a PEM CERTIFICATE REQUEST");
    free(pem);
    /* Proof of possession: a CSR whose signature was damaged. */
    csr = cli_csr("csr-tamper", "ec -pkeyopt ec_paramgen_curve:P-256", "/CN=tamper", &len);
    BIO *bio = BIO_new_mem_buf(csr, (int)len);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);
    free(csr);
    assert_non_null(req);
    const ASN1_BIT_STRING *sig;
    const X509_ALGOR *alg;
    X509_REQ_get0_signature(req, &sig, &alg);
    unsigned char *d = (unsigned char *)ASN1_STRING_get0_data(sig);
    d[ASN1_STRING_length(sig) / 2] ^= 0x55;
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    char *mem;
    long ml = BIO_get_mem_data(bio, &mem);
    assert_csr_refused(mem, (size_t)ml, "signature does not verify");
    BIO_free(bio);
    X509_REQ_free(req);
    /* A CSR with an empty subject. */
    csr = cli_csr("csr-empty", "ec -pkeyopt ec_paramgen_curve:P-256", "/", &len);
    assert_csr_refused(csr, len, "empty subject");
    free(csr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca),
        cmocka_unit_test(test_ca_serials_differ),
        cmocka_unit_test(test_server_cert),
        cmocka_unit_test(test_client_cert),
        cmocka_unit_test(test_rsa_client_cert),
        cmocka_unit_test(test_cert_id),
        cmocka_unit_test(test_other_ca_fails),
        cmocka_unit_test(test_expired_fails),
        cmocka_unit_test(test_not_yet_valid_fails),
        cmocka_unit_test(test_files_roundtrip),
        cmocka_unit_test(test_pem_strings),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_csr_issue),
        cmocka_unit_test(test_csr_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
