/*
 * SigV4 presigned /mqtt URL and the AWS credential chain (net/sigv4.h).
 *
 * The presigned URLs are compared byte for byte with the ones python3-awscrt
 * (aws-c-auth, the CRT IoT SDKs' signer) produces, run live through
 * client/tests/helpers/awscrt_presign.py: a test fails, never skips, when
 * the reference signer cannot run, so a green run always means "equal to
 * the real signer".  Run from the repository root (as `make check` does).
 *
 * The credential tests point HOME at a mkdtemp directory and save and
 * restore every AWS_* variable they touch.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/sigv4.h"

#define AWSCRT_SCRIPT "client/tests/helpers/awscrt_presign.py"
#define PYTHON "/usr/bin/python3"

/* AWS's documented example secret (SigV4 "derive a signing key" example). */
#define DOC_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* ---- (1) AWS documented values ---------------------------------------- */

static void test_signing_key_aws_example(void **state)
{
    (void)state;
    /* docs.aws.amazon.com "Examples of how to derive a signing key for
     * Signature Version 4": 20120215 / us-east-1 / iam. */
    unsigned char key[32];
    assert_int_equal(iotc_sigv4_signing_key(DOC_SECRET, "20120215", "us-east-1", "iam", key),
                     IOTC_OK);
    char hex[65];
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    assert_int_equal(iotc_sigv4_signing_key(NULL, "20120215", "us-east-1", "iam", key),
                     IOTC_ERR_INVALID_ARG);
}

/* ---- (2) against awscrt ------------------------------------------------- */

typedef struct sigcase {
    const char *endpoint;
    uint16_t port;
    const char *region;
    const char *akid;
    const char *secret;
    const char *token; /* NULL: none */
    long long now;
} sigcase;

/* Runs the reference signer; the returned string is malloc'd. */
static char *awscrt_url(const sigcase *c)
{
    char host[300];
    if (c->port == 0 || c->port == 443)
        snprintf(host, sizeof host, "%s", c->endpoint);
    else
        snprintf(host, sizeof host, "%s:%u", c->endpoint, (unsigned)c->port);
    const char *args[] = {host, c->region, c->akid, c->secret, c->token ? c->token : "-"};
    /* Single-quoted for sh: no test value may contain a quote. */
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        assert_null(strchr(args[i], '\''));
    size_t cmdcap = 8192;
    char *cmd = malloc(cmdcap);
    assert_non_null(cmd);
    int n = snprintf(cmd, cmdcap, "%s %s '%s' '%s' '%s' '%s' '%s' %lld", PYTHON, AWSCRT_SCRIPT,
                     args[0], args[1], args[2], args[3], args[4], c->now);
    assert_true(n > 0 && (size_t)n < cmdcap);
    FILE *f = popen(cmd, "r");
    free(cmd);
    assert_non_null(f);
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - 1 - len, f)) > 0)
        len += got;
    buf[len] = '\0';
    int st = pclose(f);
    if (st != 0)
        fail_msg("reference signer failed (status %d): is python3-awscrt installed? "
                 "run from the repository root",
                 st);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    assert_true(len > 0);
    return buf;
}

static char *our_url(const sigcase *c)
{
    iotc_sigv4_params p = {c->endpoint, c->port, c->region, c->akid,
                           c->secret,   c->token, (time_t)c->now};
    size_t need = 0;
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, NULL, 0, &need), IOTC_OK);
    char *buf = malloc(need);
    assert_non_null(buf);
    size_t need2 = 0;
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, buf, need, &need2), IOTC_OK);
    assert_int_equal(need, need2);
    assert_int_equal(strlen(buf) + 1, need);
    return buf;
}

/* A realistic STS-style token: long, with '/', '+' and '='. */
static const char LONG_TOKEN[] =
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDkV7+rLs2Fq0eXAMPLE/aB3c"
    "d+eFgH1jK2lM3nO4pQ5rS6tU7vW8xY9zA0bC1dE2fG3hI4jK5lM6nO7pQ8rS9tU0vW1xY2zA3bC4dE5"
    "fG6hI7jK8lM9nO0pQ1rS2tU3vW4xY5zA6bC7dE8fG9hI0jK1lM2nO3pQ4rS5tU6vW7xY8zA9bC0dE1"
    "KqQCCJP//////////ARAAGgw1NTU1NTU1NTU1NTUiDEXAMPLE+TOKEN/VALUE+WITH+PLUS/SLASH=="
    "fG2hI3jK4lM5nO6pQ7rS8tU9vW0xY1zA2bC3dE4fG5hI6jK7lM8nO9pQ0rS1tU2vW3xY4zA5bC6dE7=";

static const sigcase CASES[] = {
    /* no token, AWS's example key pair, 2015-08-30T12:36:00Z */
    {"a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com", 0, "us-east-1", "AKIDEXAMPLE", DOC_SECRET,
     NULL, 1440938160LL},
    /* a short token with every character that needs encoding */
    {"a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com", 443, "us-east-1", "ASIAEXAMPLEKEY12",
     DOC_SECRET, "ab/cd+ef==", 1440938160LL},
    /* a long realistic token, another region */
    {"xyz123-ats.iot.eu-west-1.amazonaws.com", 0, "eu-west-1", "ASIAIOSFODNN7EXAMPLE",
     "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY", LONG_TOKEN, 1700000000LL},
    /* one second before UTC midnight: the date is still the 30th */
    {"abc-ats.iot.ap-southeast-2.amazonaws.com", 0, "ap-southeast-2", "AKIAIOSFODNN7EXAMPLE",
     "secret+with/slash=", NULL, 1440979199LL},
    /* UTC midnight exactly: the 31st, the date in the scope changes */
    {"abc-ats.iot.ap-southeast-2.amazonaws.com", 0, "ap-southeast-2", "AKIAIOSFODNN7EXAMPLE",
     "secret+with/slash=", "tok/+=", 1440979200LL},
    /* a non-443 port is part of the signed host */
    {"localhost", 8443, "us-west-2", "AKIDEXAMPLE", DOC_SECRET, "FwoGZXIvYXdzEBY/x+y=z",
     1234567890LL},
    /* China partition region, a leap day */
    {"abc.ats.iot.cn-north-1.amazonaws.com.cn", 0, "cn-north-1", "AKIDEXAMPLE", DOC_SECRET, NULL,
     1709208000LL},
};

static void test_presign_equals_awscrt(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *want = awscrt_url(&CASES[i]);
        char *got = our_url(&CASES[i]);
        if (strcmp(want, got) != 0) {
            print_error("case %zu\n awscrt: %s\n ours:   %s\n", i, want, got);
            free(want);
            free(got);
            fail_msg("case %zu differs from awscrt", i);
        }
        free(want);
        free(got);
    }
}

/* The token is not signed: removing it leaves the same signature. */
static void test_token_unsigned(void **state)
{
    (void)state;
    sigcase with = CASES[1], without = CASES[1];
    without.token = NULL;
    char *a = our_url(&with), *b = our_url(&without);
    const char *sa = strstr(a, "&X-Amz-Signature="), *sb = strstr(b, "&X-Amz-Signature=");
    assert_non_null(sa);
    assert_non_null(sb);
    assert_string_equal(sa, sb);
    assert_non_null(strstr(a, "&X-Amz-Security-Token=ab%2Fcd%2Bef%3D%3D&X-Amz-Signature="));
    assert_null(strstr(b, "Security-Token"));
    /* the fixed parts, spelled out */
    assert_non_null(strstr(
        b, "wss://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com/mqtt?X-Amz-Algorithm="
           "AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLEKEY12%2F20150830%2Fus-east-1%2F"
           "iotdevicegateway%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host"
           "&X-Amz-Signature="));
    free(a);
    free(b);
}

static void test_buffer_and_args(void **state)
{
    (void)state;
    iotc_sigv4_params p = {"h.example.com", 0, "us-east-1", "AKID", "SECRET", NULL, 1440938160};
    size_t need = 0;
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, NULL, 0, &need), IOTC_OK);
    assert_true(need > 100);
    char buf[1024];
    size_t need2 = 0;
    /* one byte short: refused with the size, the buffer left empty */
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, buf, need - 1, &need2), IOTC_ERR_INVALID_ARG);
    assert_int_equal(need2, need);
    assert_string_equal(buf, "");
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, buf, need, NULL), IOTC_OK);
    assert_int_equal(strlen(buf) + 1, need);

    assert_int_equal(iotc_sigv4_presign_mqtt(NULL, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, NULL, 10, NULL), IOTC_ERR_INVALID_ARG);
    iotc_sigv4_params q;
    const char *bad_hosts[] = {"", "h/x", "h x", "h?x", "user@h", "h:443"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        q = p;
        q.endpoint = bad_hosts[i];
        assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    }
    q = p;
    q.endpoint = NULL;
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.region = "";
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.region = "us east";
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.access_key_id = "";
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.secret_access_key = NULL;
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.session_token = "a\r\nHost: evil";
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.now = -1;
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf, sizeof buf, NULL), IOTC_ERR_INVALID_ARG);
    q = p;
    q.session_token = ""; /* empty token = none */
    char buf2[1024];
    assert_int_equal(iotc_sigv4_presign_mqtt(&q, buf2, sizeof buf2, NULL), IOTC_OK);
    assert_string_equal(buf, buf2);
}

/* lws 4.1.6 corrupts a request whose path is over 2032 bytes. */
static void test_path_limit(void **state)
{
    (void)state;
    const char *host = "h.example.com";
    iotc_sigv4_params p = {host, 0, "us-east-1", "AKID", "SECRET", NULL, 1440938160};
    size_t need = 0;
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, NULL, 0, &need), IOTC_OK);
    size_t base_path = need - 1 - strlen("wss://") - strlen(host);
    size_t tok_len = IOTC_SIGV4_MAX_PATH - base_path - strlen("&X-Amz-Security-Token=");
    /* unreserved characters encode to themselves: one byte each */
    char *tok = malloc(tok_len + 2);
    assert_non_null(tok);
    memset(tok, 'a', tok_len + 1);
    tok[tok_len] = '\0';
    p.session_token = tok;
    char *buf = malloc(4096);
    assert_non_null(buf);
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, buf, 4096, &need), IOTC_OK);
    assert_int_equal(strlen(strstr(buf, "/mqtt?")), IOTC_SIGV4_MAX_PATH);
    tok[tok_len] = 'a';
    tok[tok_len + 1] = '\0';
    assert_int_equal(iotc_sigv4_presign_mqtt(&p, buf, 4096, &need), IOTC_ERR_TOO_LARGE);
    assert_string_equal(buf, "");
    free(tok);
    free(buf);
}

/* ---- (3) the credential chain ------------------------------------------- */

static const char *const SAVED_VARS[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE",
                                         "AWS_PROFILE",       "HOME"};
#define NSAVED (sizeof SAVED_VARS / sizeof SAVED_VARS[0])

typedef struct env_fixture {
    char *saved[NSAVED];
    char home[64];
    char awsdir[128];
    char credfile[160];
} env_fixture;

static int env_setup(void **state)
{
    env_fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    for (size_t i = 0; i < NSAVED; i++) {
        const char *v = getenv(SAVED_VARS[i]);
        fx->saved[i] = v ? strdup(v) : NULL;
        unsetenv(SAVED_VARS[i]);
    }
    snprintf(fx->home, sizeof fx->home, "/tmp/iotc_sigv4_XXXXXX");
    if (mkdtemp(fx->home) == NULL)
        return -1;
    snprintf(fx->awsdir, sizeof fx->awsdir, "%s/.aws", fx->home);
    snprintf(fx->credfile, sizeof fx->credfile, "%s/credentials", fx->awsdir);
    if (mkdir(fx->awsdir, 0700) != 0)
        return -1;
    setenv("HOME", fx->home, 1);
    *state = fx;
    return 0;
}

static int env_teardown(void **state)
{
    env_fixture *fx = *state;
    for (size_t i = 0; i < NSAVED; i++) {
        if (fx->saved[i] != NULL)
            setenv(SAVED_VARS[i], fx->saved[i], 1);
        else
            unsetenv(SAVED_VARS[i]);
        free(fx->saved[i]);
    }
    char other[200];
    snprintf(other, sizeof other, "%s/other", fx->home);
    unlink(other);
    unlink(fx->credfile);
    rmdir(fx->awsdir);
    rmdir(fx->home);
    free(fx);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static const char FILE_TEXT[] = "# shared credentials\n"
                                "[default]\n"
                                "aws_access_key_id = FILEDEFAULTID\n"
                                "aws_secret_access_key=filedefaultsecret\n"
                                "\n"
                                "[ work ]\r\n"
                                "; a comment\r\n"
                                "  AWS_Access_Key_Id =  FILEWORKID  \r\n"
                                "aws_secret_access_key = work/secret+x=\r\n"
                                "aws_session_token = work/token+y==\r\n"
                                "region = eu-west-1\r\n"
                                "[half]\n"
                                "aws_access_key_id = HALFID\n"
                                "[empty]\n";

static iotc_aws_credentials *cred_new(void)
{
    iotc_aws_credentials *c = calloc(1, sizeof *c);
    assert_non_null(c);
    return c;
}

static void test_chain_explicit_wins(void **state)
{
    env_fixture *fx = *state;
    write_file(fx->credfile, FILE_TEXT);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    iotc_aws_credentials *ex = cred_new(), *out = cred_new();
    strcpy(ex->access_key_id, "EXID");
    strcpy(ex->secret_access_key, "exsecret");
    strcpy(ex->session_token, "extoken");
    char why[256];
    assert_int_equal(iotc_aws_credentials_resolve(ex, out, why, sizeof why), IOTC_OK);
    assert_int_equal(out->source, IOTC_AWS_CRED_EXPLICIT);
    assert_string_equal(out->access_key_id, "EXID");
    assert_string_equal(out->secret_access_key, "exsecret");
    assert_string_equal(out->session_token, "extoken");
    /* in place */
    assert_int_equal(iotc_aws_credentials_resolve(ex, ex, why, sizeof why), IOTC_OK);
    assert_string_equal(ex->access_key_id, "EXID");
    /* an all-empty explicit struct means "not given": env next */
    memset(ex, 0, sizeof *ex);
    assert_int_equal(iotc_aws_credentials_resolve(ex, out, why, sizeof why), IOTC_OK);
    assert_int_equal(out->source, IOTC_AWS_CRED_ENV);
    /* half explicit: an error, not a fall-through */
    strcpy(ex->access_key_id, "EXID");
    assert_int_equal(iotc_aws_credentials_resolve(ex, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "no secret access key"));
    assert_int_equal(out->source, IOTC_AWS_CRED_NONE);
    assert_string_equal(out->access_key_id, "");
    assert_int_equal(iotc_aws_credentials_resolve(ex, NULL, why, sizeof why),
                     IOTC_ERR_INVALID_ARG);
    free(ex);
    free(out);
}

static void test_chain_env_over_file(void **state)
{
    env_fixture *fx = *state;
    write_file(fx->credfile, FILE_TEXT);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "env/token+=", 1);
    iotc_aws_credentials *out = cred_new();
    char why[256];
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why), IOTC_OK);
    assert_int_equal(out->source, IOTC_AWS_CRED_ENV);
    assert_string_equal(out->access_key_id, "ENVID");
    assert_string_equal(out->secret_access_key, "envsecret");
    assert_string_equal(out->session_token, "env/token+=");
    /* only one env key: a clear error naming the missing one */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "AWS_SECRET_ACCESS_KEY is not"));
    /* none in env: the file's default profile, no token */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SESSION_TOKEN");
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why), IOTC_OK);
    assert_int_equal(out->source, IOTC_AWS_CRED_FILE);
    assert_string_equal(out->access_key_id, "FILEDEFAULTID");
    assert_string_equal(out->secret_access_key, "filedefaultsecret");
    assert_string_equal(out->session_token, "");
    /* empty env values count as unset */
    setenv("AWS_ACCESS_KEY_ID", "", 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why), IOTC_OK);
    assert_int_equal(out->source, IOTC_AWS_CRED_FILE);
    free(out);
}

static void test_chain_profiles(void **state)
{
    env_fixture *fx = *state;
    write_file(fx->credfile, FILE_TEXT);
    iotc_aws_credentials *out = cred_new();
    char why[256];
    setenv("AWS_PROFILE", "work", 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why), IOTC_OK);
    assert_string_equal(out->access_key_id, "FILEWORKID");
    assert_string_equal(out->secret_access_key, "work/secret+x=");
    assert_string_equal(out->session_token, "work/token+y==");

    setenv("AWS_PROFILE", "nosuch", 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "profile [nosuch] not found"));
    assert_non_null(strstr(why, fx->credfile));

    /* only one of the keys */
    setenv("AWS_PROFILE", "half", 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "has aws_access_key_id but no aws_secret_access_key"));
    assert_string_equal(out->access_key_id, "");

    setenv("AWS_PROFILE", "empty", 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "no aws_access_key_id or aws_secret_access_key"));

    /* AWS_SHARED_CREDENTIALS_FILE, absolute and "~/" */
    char other[200];
    snprintf(other, sizeof other, "%s/other", fx->home);
    write_file(other, "[default]\naws_access_key_id=OTHERID\naws_secret_access_key=o\n");
    unsetenv("AWS_PROFILE");
    setenv("AWS_SHARED_CREDENTIALS_FILE", other, 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why), IOTC_OK);
    assert_string_equal(out->access_key_id, "OTHERID");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "~/other", 1);
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why), IOTC_OK);
    assert_string_equal(out->access_key_id, "OTHERID");
    free(out);
}

static void test_chain_nothing_found(void **state)
{
    env_fixture *fx = *state;
    iotc_aws_credentials *out = cred_new();
    char why[512];
    /* no file at all */
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "no AWS credentials found"));
    assert_non_null(strstr(why, fx->credfile));
    assert_non_null(strstr(why, "No such file"));
    /* no HOME either */
    unsetenv("HOME");
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_non_null(strstr(why, "HOME not set"));
    /* a NULL why is allowed */
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, NULL, 0), IOTC_ERR_CREDENTIALS);
    setenv("HOME", fx->home, 1);
    /* a secret never appears in the reason */
    write_file(fx->credfile, "[default]\naws_secret_access_key = TOPSECRETVALUE\n");
    assert_int_equal(iotc_aws_credentials_resolve(NULL, out, why, sizeof why),
                     IOTC_ERR_CREDENTIALS);
    assert_null(strstr(why, "TOPSECRETVALUE"));
    assert_non_null(strstr(why, "has aws_secret_access_key but no aws_access_key_id"));
    free(out);
}

/* Resolved credentials feed the signer; with file credentials the URL still
 * matches awscrt. */
static void test_chain_to_url(void **state)
{
    env_fixture *fx = *state;
    write_file(fx->credfile, FILE_TEXT);
    setenv("AWS_PROFILE", "work", 1);
    iotc_aws_credentials *c = cred_new();
    assert_int_equal(iotc_aws_credentials_resolve(NULL, c, NULL, 0), IOTC_OK);
    sigcase sc = {"e-ats.iot.eu-west-1.amazonaws.com", 0, "eu-west-1", c->access_key_id,
                  c->secret_access_key, c->session_token, 1767225599LL};
    char *want = awscrt_url(&sc), *got = our_url(&sc);
    assert_string_equal(want, got);
    free(want);
    free(got);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signing_key_aws_example),
        cmocka_unit_test(test_presign_equals_awscrt),
        cmocka_unit_test(test_token_unsigned),
        cmocka_unit_test(test_buffer_and_args),
        cmocka_unit_test(test_path_limit),
        cmocka_unit_test_setup_teardown(test_chain_explicit_wins, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_chain_env_over_file, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_chain_profiles, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_chain_nothing_found, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_chain_to_url, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
