/*
 * net/sigv4.c: SigV4 presigned /mqtt URL and the AWS credential chain.
 * See sigv4.h for the contract and aws-broker.md §5.2 for the algorithm.
 */
#include "net/sigv4.h"
#include "net/strbuf.h"

#include <ctype.h>
#include <limits.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIGV4_SERVICE "iotdevicegateway"
#define SIGV4_ALGO "AWS4-HMAC-SHA256"
/* hex(SHA-256("")): a WebSocket upgrade GET has no body. */
#define SIGV4_EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Bounds on inputs, so the canonical request fits a stack buffer and a
 * hostile or broken value is refused early.  253 is DNS's name limit. */
#define SIGV4_HOST_MAX 253
#define SIGV4_REGION_MAX 63
/* Longest credentials-file line we read; a session token is ~2 KiB. */
#define SIGV4_LINE_MAX 8192

/* ---- crypto ------------------------------------------------------------ */

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int hmac_sha256(const unsigned char *key, size_t keylen, const char *msg, size_t msglen,
                       unsigned char out[32])
{
    unsigned int olen = 0;
    if (keylen > (size_t)INT_MAX)
        return -1;
    if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, msglen, out, &olen) ==
            NULL ||
        olen != 32)
        return -1;
    return 0;
}

static int sha256_hex(const char *msg, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(msg, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    hex_encode(md, 32, out);
    return 0;
}

int iotc_sigv4_signing_key(const char *secret, const char *date, const char *region,
                           const char *service, unsigned char key[32])
{
    if (secret == NULL || date == NULL || region == NULL || service == NULL || key == NULL)
        return IOTC_ERR_INVALID_ARG;
    size_t slen = strlen(secret);
    if (slen >= IOTC_AWS_SECRET_MAX)
        return IOTC_ERR_INVALID_ARG;

    unsigned char k0[4 + IOTC_AWS_SECRET_MAX];
    unsigned char k1[32], k2[32], k3[32];
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    int bad = hmac_sha256(k0, 4 + slen, date, strlen(date), k1) ||
              hmac_sha256(k1, 32, region, strlen(region), k2) ||
              hmac_sha256(k2, 32, service, strlen(service), k3) ||
              hmac_sha256(k3, 32, "aws4_request", 12, key);
    /* The intermediate keys are as good as the secret for a day. */
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    if (bad) {
        OPENSSL_cleanse(key, 32);
        return IOTC_ERR_INTERNAL;
    }
    return IOTC_OK;
}

/* ---- presigning --------------------------------------------------------- */

/* Printable ASCII without space: what AWS key ids, secrets and tokens use.
 * Refusing the rest keeps control characters out of the request line. */
static int printable_len_ok(const char *s, size_t max_with_nul, int allow_empty)
{
    if (s == NULL)
        return allow_empty;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n + 1 >= max_with_nul)
            return 0;
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
            return 0;
    }
    return n > 0 || allow_empty;
}

static int host_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= SIGV4_HOST_MAX || !(isalnum(c) || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return n > 0;
}

static int region_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= SIGV4_REGION_MAX || !(isalnum(c) || c == '-'))
            return 0;
    }
    return n > 0;
}

/* The query up to and excluding any token and the signature; it is both
 * the canonical query string and the start of the URL's query. */
static void put_signed_query(iotc_strbuf *sb, const iotc_sigv4_params *p, const char *date,
                             const char *amzdate)
{
    iotc_strbuf_puts(sb, "X-Amz-Algorithm=" SIGV4_ALGO "&X-Amz-Credential=");
    iotc_strbuf_put_uri_encoded(sb, p->access_key_id);
    iotc_strbuf_puts(sb, "%2F");
    iotc_strbuf_puts(sb, date);
    iotc_strbuf_puts(sb, "%2F");
    iotc_strbuf_put_uri_encoded(sb, p->region);
    iotc_strbuf_puts(sb, "%2F" SIGV4_SERVICE "%2Faws4_request&X-Amz-Date=");
    iotc_strbuf_puts(sb, amzdate);
    iotc_strbuf_puts(sb, "&X-Amz-SignedHeaders=host");
}

int iotc_sigv4_presign_mqtt(const iotc_sigv4_params *p, char *out, size_t cap, size_t *needed)
{
    if (p == NULL || (out == NULL && cap != 0) || p->endpoint == NULL || p->region == NULL ||
        !host_ok(p->endpoint) || !region_ok(p->region) ||
        !printable_len_ok(p->access_key_id, IOTC_AWS_KEY_ID_MAX, 0) ||
        !printable_len_ok(p->secret_access_key, IOTC_AWS_SECRET_MAX, 0) ||
        !printable_len_ok(p->session_token, IOTC_AWS_TOKEN_MAX, 1))
        return IOTC_ERR_INVALID_ARG;

    /* SigV4 dates are fixed-width: a year outside 4 digits cannot be
     * written, and before 1970 is certainly a broken clock. */
    struct tm tm;
    if (p->now < 0 || gmtime_r(&p->now, &tm) == NULL || tm.tm_year + 1900 > 9999)
        return IOTC_ERR_INVALID_ARG;
    char date[9], amzdate[17];
    if (strftime(date, sizeof date, "%Y%m%d", &tm) != 8 ||
        strftime(amzdate, sizeof amzdate, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return IOTC_ERR_INVALID_ARG;

    /* The signed host must equal the Host header lws sends (see sigv4.h). */
    char host[SIGV4_HOST_MAX + 8];
    if (p->port == 0 || p->port == 443)
        snprintf(host, sizeof host, "%s", p->endpoint);
    else
        snprintf(host, sizeof host, "%s:%u", p->endpoint, (unsigned)p->port);

    /* Canonical request.  Bounded inputs keep it well under the buffer;
     * the check guards the bounds against future edits. */
    char creq[2048];
    iotc_strbuf cr = {creq, sizeof creq, 0};
    iotc_strbuf_puts(&cr, "GET\n/mqtt\n");
    put_signed_query(&cr, p, date, amzdate);
    iotc_strbuf_puts(&cr, "\nhost:");
    iotc_strbuf_puts(&cr, host);
    iotc_strbuf_puts(&cr, "\n\nhost\n" SIGV4_EMPTY_HASH);
    if (iotc_strbuf_finish(&cr) != 0)
        return IOTC_ERR_INTERNAL;

    char creq_hash[65];
    if (sha256_hex(creq, cr.len, creq_hash) != 0)
        return IOTC_ERR_INTERNAL;

    char sts[256];
    iotc_strbuf st = {sts, sizeof sts, 0};
    iotc_strbuf_puts(&st, SIGV4_ALGO "\n");
    iotc_strbuf_puts(&st, amzdate);
    iotc_strbuf_puts(&st, "\n");
    iotc_strbuf_puts(&st, date);
    iotc_strbuf_puts(&st, "/");
    iotc_strbuf_puts(&st, p->region);
    iotc_strbuf_puts(&st, "/" SIGV4_SERVICE "/aws4_request\n");
    iotc_strbuf_puts(&st, creq_hash);
    if (iotc_strbuf_finish(&st) != 0)
        return IOTC_ERR_INTERNAL;

    unsigned char key[32], sig[32];
    int rc = iotc_sigv4_signing_key(p->secret_access_key, date, p->region, SIGV4_SERVICE, key);
    if (rc != IOTC_OK)
        return rc;
    int bad = hmac_sha256(key, sizeof key, sts, st.len, sig);
    OPENSSL_cleanse(key, sizeof key);
    if (bad)
        return IOTC_ERR_INTERNAL;
    char sig_hex[65];
    hex_encode(sig, sizeof sig, sig_hex);

    /* The URL.  The token is outside the signature (IoT does not sign it,
     * aws-broker.md §5.2 step 10) but before X-Amz-Signature: aws-c-auth
     * emits the query sorted, and "Security" < "Signature". */
    iotc_strbuf u = {out, cap, 0};
    iotc_strbuf_puts(&u, "wss://");
    iotc_strbuf_puts(&u, host);
    size_t path_start = u.len;
    iotc_strbuf_puts(&u, "/mqtt?");
    put_signed_query(&u, p, date, amzdate);
    if (p->session_token != NULL && p->session_token[0] != '\0') {
        iotc_strbuf_puts(&u, "&X-Amz-Security-Token=");
        iotc_strbuf_put_uri_encoded(&u, p->session_token);
    }
    iotc_strbuf_puts(&u, "&X-Amz-Signature=");
    iotc_strbuf_puts(&u, sig_hex);

    if (needed != NULL)
        *needed = u.len + 1;
    if (u.len - path_start > IOTC_SIGV4_MAX_PATH) {
        if (out != NULL && cap > 0)
            out[0] = '\0';
        return IOTC_ERR_TOO_LARGE;
    }
    if (out == NULL && cap == 0)
        return IOTC_OK; /* measuring only */
    if (iotc_strbuf_finish(&u) != 0) {
        out[0] = '\0';
        return IOTC_ERR_INVALID_ARG;
    }
    return IOTC_OK;
}

/* ---- credentials ------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why != NULL && whylen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return IOTC_ERR_CREDENTIALS;
}

/* Copies a value into a fixed field; 0, or -1 when it does not fit. */
static int copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* Reads [profile] from the open file into *c.  Returns IOTC_OK or an error
 * with `why` set. */
static int parse_credentials_file(FILE *f, const char *path, const char *profile,
                                  iotc_aws_credentials *c, char *why, size_t whylen)
{
    char line[SIGV4_LINE_MAX];
    int in_profile = 0, found = 0;
    unsigned long lineno = 0;

    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            /* Over-long line: skip its remainder.  Only fatal inside our
             * profile, where it would be a truncated key. */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
            if (in_profile)
                return fail(why, whylen, "%s line %lu: longer than %d bytes", path, lineno,
                            SIGV4_LINE_MAX - 1);
            continue;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end == NULL) {
                in_profile = 0;
                continue;
            }
            *end = '\0';
            in_profile = strcmp(trim(s + 1), profile) == 0;
            found |= in_profile;
            continue;
        }
        if (!in_profile)
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        char *dst = NULL;
        size_t cap = 0;
        if (strcasecmp(key, "aws_access_key_id") == 0) {
            dst = c->access_key_id;
            cap = sizeof c->access_key_id;
        } else if (strcasecmp(key, "aws_secret_access_key") == 0) {
            dst = c->secret_access_key;
            cap = sizeof c->secret_access_key;
        } else if (strcasecmp(key, "aws_session_token") == 0) {
            dst = c->session_token;
            cap = sizeof c->session_token;
        }
        if (dst != NULL && copy_field(dst, cap, val) != 0)
            return fail(why, whylen, "%s line %lu: %s longer than %zu bytes", path, lineno, key,
                        cap - 1);
    }
    if (ferror(f))
        return fail(why, whylen, "cannot read %s: %s", path, strerror(errno));
    if (!found)
        return fail(why, whylen, "no AWS credentials: profile [%s] not found in %s", profile, path);
    int has_id = c->access_key_id[0] != '\0', has_secret = c->secret_access_key[0] != '\0';
    if (!has_id && !has_secret)
        return fail(why, whylen,
                    "no AWS credentials: profile [%s] in %s has no aws_access_key_id "
                    "or aws_secret_access_key",
                    profile, path);
    if (!has_id || !has_secret)
        return fail(why, whylen, "profile [%s] in %s has %s but no %s", profile, path,
                    has_id ? "aws_access_key_id" : "aws_secret_access_key",
                    has_id ? "aws_secret_access_key" : "aws_access_key_id");
    return IOTC_OK;
}

static int resolve(const iotc_aws_credentials *ex, iotc_aws_credentials *c, char *why,
                   size_t whylen)
{
    /* 1. explicit values.  strnlen: the caller's arrays may be unterminated. */
    if (ex != NULL) {
        size_t il = strnlen(ex->access_key_id, sizeof ex->access_key_id);
        size_t sl = strnlen(ex->secret_access_key, sizeof ex->secret_access_key);
        size_t tl = strnlen(ex->session_token, sizeof ex->session_token);
        if (il > 0 || sl > 0) {
            if (il == sizeof ex->access_key_id || sl == sizeof ex->secret_access_key ||
                tl == sizeof ex->session_token)
                return fail(why, whylen, "explicit AWS credentials: a field is not NUL-terminated");
            if (il == 0 || sl == 0)
                return fail(why, whylen, "explicit AWS credentials: %s given but no %s",
                            il ? "access key id" : "secret access key",
                            il ? "secret access key" : "access key id");
            memcpy(c->access_key_id, ex->access_key_id, il + 1);
            memcpy(c->secret_access_key, ex->secret_access_key, sl + 1);
            memcpy(c->session_token, ex->session_token, tl + 1);
            c->source = IOTC_AWS_CRED_EXPLICIT;
            return IOTC_OK;
        }
    }

    /* 2. environment. */
    const char *id = env_nonempty("AWS_ACCESS_KEY_ID");
    const char *secret = env_nonempty("AWS_SECRET_ACCESS_KEY");
    if (id != NULL || secret != NULL) {
        if (id == NULL || secret == NULL)
            return fail(why, whylen, "%s is set but %s is not",
                        id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                        id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        const char *token = env_nonempty("AWS_SESSION_TOKEN");
        if (copy_field(c->access_key_id, sizeof c->access_key_id, id) != 0)
            return fail(why, whylen, "AWS_ACCESS_KEY_ID longer than %d bytes",
                        IOTC_AWS_KEY_ID_MAX - 1);
        if (copy_field(c->secret_access_key, sizeof c->secret_access_key, secret) != 0)
            return fail(why, whylen, "AWS_SECRET_ACCESS_KEY longer than %d bytes",
                        IOTC_AWS_SECRET_MAX - 1);
        if (token != NULL && copy_field(c->session_token, sizeof c->session_token, token) != 0)
            return fail(why, whylen, "AWS_SESSION_TOKEN longer than %d bytes",
                        IOTC_AWS_TOKEN_MAX - 1);
        c->source = IOTC_AWS_CRED_ENV;
        return IOTC_OK;
    }

    /* 3. shared credentials file. */
    char path[4096];
    const char *file = env_nonempty("AWS_SHARED_CREDENTIALS_FILE");
    const char *home = env_nonempty("HOME");
    int n;
    if (file != NULL && strncmp(file, "~/", 2) != 0) {
        n = snprintf(path, sizeof path, "%s", file);
    } else {
        if (home == NULL)
            return fail(why, whylen,
                        "no AWS credentials found: none given, AWS_ACCESS_KEY_ID/"
                        "AWS_SECRET_ACCESS_KEY not set, and HOME not set to find "
                        "the shared credentials file");
        n = snprintf(path, sizeof path, "%s/%s", home, file != NULL ? file + 2 : ".aws/credentials");
    }
    if (n < 0 || (size_t)n >= sizeof path)
        return fail(why, whylen, "shared credentials file path too long");
    const char *profile = env_nonempty("AWS_PROFILE");
    if (profile == NULL)
        profile = "default";

    FILE *f = fopen(path, "r");
    if (f == NULL)
        return fail(why, whylen,
                    "no AWS credentials found: none given, AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY not set, and cannot open %s: %s",
                    path, strerror(errno));
    int rc = parse_credentials_file(f, path, profile, c, why, whylen);
    fclose(f);
    if (rc == IOTC_OK)
        c->source = IOTC_AWS_CRED_FILE;
    return rc;
}

int iotc_aws_credentials_resolve(const iotc_aws_credentials *explicit_or_null,
                                 iotc_aws_credentials *out, char *why, size_t whylen)
{
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    if (out == NULL)
        return IOTC_ERR_INVALID_ARG;
    /* Work on a local copy: `explicit_or_null` may be `out` itself, and a
     * failure must leave *out zeroed, not half-filled. */
    iotc_aws_credentials c;
    memset(&c, 0, sizeof c);
    int rc = resolve(explicit_or_null, &c, why, whylen);
    if (rc == IOTC_OK)
        memcpy(out, &c, sizeof c);
    else
        memset(out, 0, sizeof *out);
    OPENSSL_cleanse(&c, sizeof c);
    return rc;
}
