/*
 * sim_pki.c: see sim_pki.h. Built on OpenSSL 3's EVP_PKEY and X509 APIs
 * only (nothing deprecated, no openssl(1) child process).
 */
#include "sim_pki.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define CN_MAX 64        /* ub-common-name (RFC 5280); OpenSSL would refuse more, less clearly */
#define DNS_MAX 253      /* longest textual DNS name */
#define BACKDATE_S 300   /* see sim_pki_req_init */
#define PEM_FILE_MAX (1 << 20) /* a key or a certificate chain is a few KiB */

/* Format the message, append OpenSSL's most recent reason if there is one, then empty the queue. */
static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        unsigned long e = ERR_peek_last_error();
        if (e) {
            char buf[256];
            const char *why = ERR_reason_error_string(e);
            if (!why) {
                ERR_error_string_n(e, buf, sizeof buf);
                why = buf;
            }
            size_t n = strlen(err);
            if (n + 1 < errlen)
                snprintf(err + n, errlen - n, " (%s)", why);
        }
    }
    ERR_clear_error();
    return -1;
}

void sim_pki_req_init(sim_pki_req *req)
{
    memset(req, 0, sizeof *req);
    /*
     * Backdated a little so that a peer whose clock runs slightly behind ours
     * (another container, a VM) does not see a certificate that is not yet valid.
     */
    req->not_before_s = -BACKDATE_S;
    req->days = 365;
    req->key_type = SIM_PKI_KEY_EC_P256;
}

static EVP_PKEY *new_key(sim_pki_key_type t)
{
    if (t == SIM_PKI_KEY_RSA_2048)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int check_cn(const char *cn, char *err, size_t errlen)
{
    if (!cn || !*cn)
        return fail(err, errlen, "certificate subject CN is missing");
    if (strlen(cn) > CN_MAX)
        return fail(err, errlen, "certificate subject CN is longer than %d bytes: \"%.40s...\"", CN_MAX, cn);
    return 0;
}

/*
 * A full 128 bits of randomness, read as a positive integer: at most 17 DER
 * octets, inside RFC 5280's limit of 20; zero (not allowed) is bumped to 1.
 */
static int set_random_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, (int)sizeof b) != 1)
        return -1;
    unsigned char any = 0;
    for (size_t i = 0; i < sizeof b; i++)
        any |= b[i];
    if (!any)
        b[sizeof b - 1] = 1;
    BIGNUM *bn = BN_bin2bn(b, (int)sizeof b, NULL);
    if (!bn)
        return -1;
    ASN1_INTEGER *s = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    int ok = s && X509_set_serialNumber(x, s);
    ASN1_INTEGER_free(s);
    return ok ? 0 : -1;
}

/* Both ends from one reading of the clock, so that notAfter - notBefore is exactly `days`. */
static int set_validity(X509 *x, long not_before_s, unsigned days, char *err, size_t errlen)
{
    if (days == 0)
        return fail(err, errlen, "certificate validity must be at least 1 day");
    if (days > INT_MAX)
        return fail(err, errlen, "certificate validity of %u days is out of range", days);
    time_t now = time(NULL);
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, not_before_s, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, not_before_s, &now))
        return fail(err, errlen, "certificate validity (not-before offset %ld s, %u days) is out of range",
                    not_before_s, days);
    return 0;
}

/* An unsigned v3 certificate with a serial, validity, subject CN and public key. */
static X509 *new_cert(const char *cn, EVP_PKEY *pub, long not_before_s, unsigned days, char *err, size_t errlen)
{
    X509 *x = X509_new();
    if (!x) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    if (set_validity(x, not_before_s, days, err, errlen) < 0)
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) < 0) {
        fail(err, errlen, "cannot set certificate version or serial");
        goto out;
    }
    if (!X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0)) {
        fail(err, errlen, "cannot set certificate subject CN \"%s\"", cn);
        goto out;
    }
    if (!X509_set_pubkey(x, pub)) {
        fail(err, errlen, "cannot set certificate public key");
        goto out;
    }
    return x;
out:
    X509_free(x);
    return NULL;
}

/*
 * An extension from OpenSSL's config syntax ("critical,CA:TRUE"), which reads
 * closer to RFC 5280 than building the ASN.1 by hand. subject_cert must
 * already carry its public key when value is the SKI's "hash".
 */
static int add_ext(X509 *x, int nid, const char *value, char *err, size_t errlen)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (!ok)
        return fail(err, errlen, "cannot add %s extension \"%s\"", OBJ_nid2sn(nid), value);
    return 0;
}

/*
 * authorityKeyIdentifier = the issuer's subjectKeyIdentifier, so that a
 * verifier picks the right CA when several share a name. A CA from a config
 * file may lack an SKI; RFC 5280's method 1 (SHA-1 of its public key) is then
 * what any tool would have put there.
 */
static int add_akid(X509 *x, X509 *ca, char *err, size_t errlen)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    if (!akid)
        return fail(err, errlen, "out of memory");
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    int ok = 0;
    if (ski) {
        akid->keyid = ASN1_OCTET_STRING_dup(ski);
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (X509_pubkey_digest(ca, EVP_sha1(), md, &n) && (akid->keyid = ASN1_OCTET_STRING_new()) != NULL &&
            !ASN1_OCTET_STRING_set(akid->keyid, md, (int)n)) {
            ASN1_OCTET_STRING_free(akid->keyid);
            akid->keyid = NULL;
        }
    }
    if (akid->keyid)
        ok = X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1;
    AUTHORITY_KEYID_free(akid);
    return ok ? 0 : fail(err, errlen, "cannot add authorityKeyIdentifier extension");
}

/*
 * A DNS SAN as TLS clients match it: letters, digits, '-', '.', '_', and a
 * wildcard only as a whole leftmost label. Anything else is a typo that
 * would make every hostname check fail later, far from its cause.
 */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DNS_MAX || s[0] == '.' || s[n - 1] == '.')
        return false;
    if (s[0] == '*') {
        if (s[1] != '.' || !s[2])
            return false;
        s += 2;
    }
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_'))
            return false;
    }
    return true;
}

static int add_san(X509 *x, const char *const *san, size_t nsan, char *err, size_t errlen)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    if (!gens)
        return fail(err, errlen, "out of memory");
    for (size_t i = 0; i < nsan; i++) {
        const char *s = san[i];
        if (!s) {
            GENERAL_NAMES_free(gens);
            return fail(err, errlen, "subjectAltName entry %zu is NULL", i);
        }
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s);
        ERR_clear_error(); /* "not an IP address" is an answer here, not an error */
        if (g && ip) {
            GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
        } else if (g && dns_name_ok(s)) {
            ASN1_IA5STRING *d = ASN1_IA5STRING_new();
            if (!d || !ASN1_STRING_set(d, s, (int)strlen(s))) {
                ASN1_IA5STRING_free(d);
                GENERAL_NAME_free(g);
                GENERAL_NAMES_free(gens);
                return fail(err, errlen, "out of memory");
            }
            GENERAL_NAME_set0_value(g, GEN_DNS, d);
        } else {
            ASN1_OCTET_STRING_free(ip);
            GENERAL_NAME_free(g);
            GENERAL_NAMES_free(gens);
            if (!g)
                return fail(err, errlen, "out of memory");
            return fail(err, errlen, "subjectAltName \"%s\" is neither an IP address nor a DNS name", s);
        }
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            GENERAL_NAMES_free(gens);
            return fail(err, errlen, "out of memory");
        }
    }
    int ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok ? 0 : fail(err, errlen, "cannot add subjectAltName extension");
}

static int sign(X509 *x, EVP_PKEY *key, char *err, size_t errlen)
{
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        return fail(err, errlen, "cannot sign certificate");
    return 0;
}

int sim_pki_make_ca(const char *cn, unsigned days, EVP_PKEY **key, X509 **cert, char *err, size_t errlen)
{
    ERR_clear_error();
    if (key)
        *key = NULL;
    if (cert)
        *cert = NULL;
    if (!key || !cert)
        return fail(err, errlen, "sim_pki_make_ca: missing output argument");
    if (check_cn(cn, err, errlen) < 0)
        return -1;
    EVP_PKEY *k = new_key(SIM_PKI_KEY_EC_P256);
    if (!k)
        return fail(err, errlen, "cannot generate EC P-256 key");
    X509 *x = new_cert(cn, k, -BACKDATE_S, days, err, errlen);
    if (!x)
        goto out;
    if (!X509_set_issuer_name(x, X509_get_subject_name(x))) {
        fail(err, errlen, "cannot set CA issuer name");
        goto out;
    }
    if (add_ext(x, NID_basic_constraints, "critical,CA:TRUE", err, errlen) < 0 ||
        add_ext(x, NID_key_usage, "critical,keyCertSign,cRLSign", err, errlen) < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash", err, errlen) < 0 || sign(x, k, err, errlen) < 0)
        goto out;
    *key = k;
    *cert = x;
    return 0;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    return -1;
}

int sim_pki_issue(EVP_PKEY *ca_key, X509 *ca_cert, const sim_pki_req *req, EVP_PKEY **key, X509 **cert,
                  char *err, size_t errlen)
{
    ERR_clear_error();
    if (key)
        *key = NULL;
    if (cert)
        *cert = NULL;
    if (!ca_key || !ca_cert || !req || !key || !cert)
        return fail(err, errlen, "sim_pki_issue: missing argument");
    if (check_cn(req->cn, err, errlen) < 0)
        return -1;
    if (req->key_type != SIM_PKI_KEY_EC_P256 && req->key_type != SIM_PKI_KEY_RSA_2048)
        return fail(err, errlen, "unknown key type %d", (int)req->key_type);
    if (req->nsan && !req->san)
        return fail(err, errlen, "%zu subjectAltNames announced but none given", req->nsan);
    /* TLS clients check the hostname against SANs only (RFC 6125); without one the certificate is useless. */
    if (req->server && req->nsan == 0)
        return fail(err, errlen, "server certificate \"%s\" needs at least one subjectAltName", req->cn);
    if (X509_check_ca(ca_cert) == 0)
        return fail(err, errlen, "issuer certificate is not a CA");
    if (X509_check_private_key(ca_cert, ca_key) != 1)
        return fail(err, errlen, "CA key does not match the CA certificate");

    bool rsa = req->key_type == SIM_PKI_KEY_RSA_2048;
    EVP_PKEY *k = new_key(req->key_type);
    if (!k)
        return fail(err, errlen, "cannot generate %s key", rsa ? "RSA 2048" : "EC P-256");
    X509 *x = new_cert(req->cn, k, req->not_before_s, req->days, err, errlen);
    if (!x)
        goto out;
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca_cert))) {
        fail(err, errlen, "cannot set issuer name");
        goto out;
    }
    /* keyEncipherment: TLS 1.2's RSA key exchange encrypts to the certificate's key. */
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE", err, errlen) < 0 ||
        add_ext(x, NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature",
                err, errlen) < 0 ||
        add_ext(x, NID_ext_key_usage, req->server ? "serverAuth" : "clientAuth", err, errlen) < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash", err, errlen) < 0 || add_akid(x, ca_cert, err, errlen) < 0)
        goto out;
    if (req->nsan && add_san(x, req->san, req->nsan, err, errlen) < 0)
        goto out;
    if (sign(x, ca_key, err, errlen) < 0)
        goto out;
    *key = k;
    *cert = x;
    return 0;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    return -1;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u);

/* The key types AWS IoT takes in a CSR: RSA 2048..4096, EC P-256 and P-384. */
static int csr_key_ok(EVP_PKEY *k, char *err, size_t errlen)
{
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits < 2048 || bits > 4096)
            return fail(err, errlen, "CSR: an RSA key of %d bits (want 2048..4096)", bits);
        return 0;
    }
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t gl = 0;
        if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl))
            return fail(err, errlen, "CSR: an EC key without a named curve");
        if (strcmp(group, "prime256v1") && strcmp(group, "secp384r1"))
            return fail(err, errlen, "CSR: an EC key on %s (want P-256 or P-384)", group);
        return 0;
    }
    return fail(err, errlen, "CSR: a %s key (want RSA or EC)", OBJ_nid2sn(id));
}

int sim_pki_issue_csr(EVP_PKEY *ca_key, X509 *ca_cert, const char *csr_pem, size_t len, unsigned days, X509 **cert,
                      char *err, size_t errlen)
{
    ERR_clear_error();
    if (cert)
        *cert = NULL;
    if (!ca_key || !ca_cert || !csr_pem || !cert || days == 0)
        return fail(err, errlen, "sim_pki_issue_csr: missing argument");
    if (len > 8192)
        return fail(err, errlen, "CSR: %zu bytes (at most 8192)", len);
    if (X509_check_ca(ca_cert) == 0)
        return fail(err, errlen, "issuer certificate is not a CA");
    BIO *b = BIO_new_mem_buf(csr_pem, (int)len);
    X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    X509 *x = NULL;
    EVP_PKEY *pub = NULL;
    if (!req) {
        ERR_clear_error();
        return fail(err, errlen, "CSR: not a PEM CERTIFICATE REQUEST");
    }
    pub = X509_REQ_get_pubkey(req);
    if (!pub) {
        fail(err, errlen, "CSR: no usable public key");
        goto out;
    }
    if (csr_key_ok(pub, err, errlen) < 0)
        goto out;
    if (X509_REQ_verify(req, pub) != 1) {
        fail(err, errlen, "CSR: the signature does not verify");
        goto out;
    }
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    if (!subj || X509_NAME_entry_count(subj) == 0) {
        fail(err, errlen, "CSR: an empty subject");
        goto out;
    }
    x = X509_new();
    if (!x || set_validity(x, -300, days, err, errlen) < 0)
        goto out_x;
    if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) < 0 || !X509_set_subject_name(x, subj) ||
        !X509_set_pubkey(x, pub) || !X509_set_issuer_name(x, X509_get_subject_name(ca_cert))) {
        fail(err, errlen, "cannot build the certificate");
        goto out_x;
    }
    bool rsa = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA;
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE", err, errlen) < 0 ||
        add_ext(x, NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature",
                err, errlen) < 0 ||
        add_ext(x, NID_ext_key_usage, "clientAuth", err, errlen) < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash", err, errlen) < 0 || add_akid(x, ca_cert, err, errlen) < 0 ||
        sign(x, ca_key, err, errlen) < 0)
        goto out_x;
    *cert = x;
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
    ERR_clear_error();
    return 0;
out_x:
    if (!x)
        fail(err, errlen, "out of memory");
    X509_free(x);
out:
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
    ERR_clear_error();
    return -1;
}

int sim_pki_cert_id(X509 *cert, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    ERR_clear_error();
    if (!cert || !X509_digest(cert, EVP_sha256(), md, &n) || n != 32) {
        ERR_clear_error();
        return -1;
    }
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

/* ---- PEM files and strings ---------------------------------------------- */

typedef int (*emit_fn)(BIO *b, void *obj);

/* With a NULL cipher this is unencrypted PKCS#8, whatever the key type (not SEC1's "EC PRIVATE KEY"). */
static int emit_key(BIO *b, void *obj)
{
    return PEM_write_bio_PKCS8PrivateKey(b, obj, NULL, NULL, 0, NULL, NULL);
}

static int emit_cert(BIO *b, void *obj)
{
    return PEM_write_bio_X509(b, obj);
}

/*
 * The temporary file is created by mkstemp (mode 0600 from the start, so a
 * key never sits in a readable file), in the target's directory so that
 * rename() replaces the target atomically; fsync first so that a crash
 * cannot leave a renamed but empty file.
 */
static int write_atomic(const char *path, mode_t mode, emit_fn emit, void *obj, const char *what, char *err,
                        size_t errlen)
{
    ERR_clear_error();
    if (!path || !*path || !obj)
        return fail(err, errlen, "cannot write %s: missing argument", what);
    size_t n = strlen(path);
    char *tmp = malloc(n + 8);
    if (!tmp)
        return fail(err, errlen, "out of memory");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fail(err, errlen, "cannot create a temporary file for %s %s: %s", what, path, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *step = "write";
    int e = 0;
    if (fchmod(fd, mode) != 0) {
        step = "chmod";
        e = errno;
        goto out;
    }
    BIO *b = BIO_new_fd(fd, BIO_NOCLOSE);
    errno = 0;
    int ok = b && emit(b, obj) > 0 && BIO_flush(b) == 1;
    e = errno;
    BIO_free(b);
    if (!ok)
        goto out;
    if (fsync(fd) != 0) {
        step = "fsync";
        e = errno;
        goto out;
    }
    int fd2 = fd;
    fd = -1;
    if (close(fd2) != 0) {
        step = "close";
        e = errno;
        goto out;
    }
    if (rename(tmp, path) != 0) {
        step = "rename";
        e = errno;
        goto out;
    }
    free(tmp);
    ERR_clear_error();
    return 0;
out:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    if (e)
        return fail(err, errlen, "cannot %s %s %s: %s", step, what, path, strerror(e));
    return fail(err, errlen, "cannot %s %s %s", step, what, path);
}

int sim_pki_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
    return write_atomic(path, 0600, emit_key, key, "private key", err, errlen);
}

int sim_pki_write_cert(const char *path, X509 *cert, char *err, size_t errlen)
{
    return write_atomic(path, 0644, emit_cert, cert, "certificate", err, errlen);
}

/*
 * OpenSSL's default passphrase callback reads the terminal: a simulator
 * started by a script would hang on an encrypted key. Refusing makes it an
 * error instead.
 */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/*
 * Whole files are read into memory first: the text then tells an encrypted
 * or damaged PEM block from a file that holds none, which OpenSSL's decoder
 * errors ("unsupported") do not, and a size limit keeps a wrong path (a log,
 * a device file) from being read without end.
 */
static char *slurp(const char *path, size_t *lenp, char *err, size_t errlen)
{
    if (!path || !*path) {
        fail(err, errlen, "missing file name");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    enum { SLURP_OK, SLURP_NOMEM, SLURP_TOO_BIG, SLURP_READ_ERR } why = buf ? SLURP_OK : SLURP_NOMEM;
    int e = 0;
    while (why == SLURP_OK) {
        if (len + 1 == cap) {
            if (len > PEM_FILE_MAX) {
                why = SLURP_TOO_BIG;
                break;
            }
            size_t ncap = cap * 2 > PEM_FILE_MAX + 2 ? PEM_FILE_MAX + 2 : cap * 2;
            char *bigger = realloc(buf, ncap);
            if (!bigger) {
                why = SLURP_NOMEM;
                break;
            }
            buf = bigger;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                e = errno;
                why = SLURP_READ_ERR;
            }
            break;
        }
    }
    fclose(f);
    if (why == SLURP_OK) {
        buf[len] = '\0';
        *lenp = len;
        return buf;
    }
    free(buf);
    if (why == SLURP_READ_ERR)
        fail(err, errlen, "cannot read %s: %s", path, strerror(e));
    else if (why == SLURP_TOO_BIG)
        fail(err, errlen, "%s is larger than %d bytes: not a PEM key or certificate", path, PEM_FILE_MAX);
    else
        fail(err, errlen, "out of memory");
    return NULL;
}

/* OpenSSL's reasons here ("unsupported", "ASN1 lib") say less than the text does, hence ERR_clear_error. */
static int parse_key(const char *text, const char *where, EVP_PKEY **key, char *err, size_t errlen)
{
    *key = NULL;
    if (!text)
        return fail(err, errlen, "missing PEM text");
    BIO *b = BIO_new_mem_buf(text, -1);
    if (b)
        *key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (*key) {
        ERR_clear_error();
        return 0;
    }
    if (!b)
        return fail(err, errlen, "out of memory");
    ERR_clear_error();
    if (strstr(text, "ENCRYPTED")) /* "BEGIN ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" */
        return fail(err, errlen, "the private key in %s is encrypted; only unencrypted keys are supported", where);
    if (strstr(text, "PRIVATE KEY-----"))
        return fail(err, errlen, "malformed PEM private key in %s", where);
    return fail(err, errlen, "no PEM private key in %s", where);
}

static int parse_cert(const char *text, const char *where, X509 **cert, char *err, size_t errlen)
{
    *cert = NULL;
    if (!text)
        return fail(err, errlen, "missing PEM text");
    BIO *b = BIO_new_mem_buf(text, -1);
    if (b)
        *cert = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (*cert) {
        ERR_clear_error();
        return 0;
    }
    if (!b)
        return fail(err, errlen, "out of memory");
    ERR_clear_error();
    if (strstr(text, "CERTIFICATE-----"))
        return fail(err, errlen, "malformed PEM certificate in %s", where);
    return fail(err, errlen, "no PEM certificate in %s", where);
}

int sim_pki_load_key(const char *path, EVP_PKEY **key, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!key)
        return fail(err, errlen, "sim_pki_load_key: missing output argument");
    *key = NULL;
    size_t len = 0;
    char *text = slurp(path, &len, err, errlen);
    if (!text)
        return -1;
    int rc = parse_key(text, path, key, err, errlen);
    OPENSSL_cleanse(text, len); /* it held a private key */
    free(text);
    return rc;
}

int sim_pki_load_cert(const char *path, X509 **cert, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!cert)
        return fail(err, errlen, "sim_pki_load_cert: missing output argument");
    *cert = NULL;
    size_t len = 0;
    char *text = slurp(path, &len, err, errlen);
    if (!text)
        return -1;
    int rc = parse_cert(text, path, cert, err, errlen);
    free(text);
    return rc;
}

int sim_pki_key_from_pem(const char *pem, EVP_PKEY **key, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!key)
        return fail(err, errlen, "sim_pki_key_from_pem: missing output argument");
    return parse_key(pem, "the PEM text", key, err, errlen);
}

int sim_pki_cert_from_pem(const char *pem, X509 **cert, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!cert)
        return fail(err, errlen, "sim_pki_cert_from_pem: missing output argument");
    return parse_cert(pem, "the PEM text", cert, err, errlen);
}

static int to_pem(emit_fn emit, void *obj, const char *what, char **pem, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!pem)
        return fail(err, errlen, "missing output argument");
    *pem = NULL;
    if (!obj)
        return fail(err, errlen, "no %s given", what);
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = 0;
    if (!b || emit(b, obj) <= 0 || (n = BIO_get_mem_data(b, &data)) <= 0) {
        BIO_free(b);
        return fail(err, errlen, "cannot encode %s as PEM", what);
    }
    char *s = malloc((size_t)n + 1);
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    BIO_free(b);
    if (!s)
        return fail(err, errlen, "out of memory");
    *pem = s;
    return 0;
}

int sim_pki_key_to_pem(EVP_PKEY *key, char **pem, char *err, size_t errlen)
{
    return to_pem(emit_key, key, "private key", pem, err, errlen);
}

int sim_pki_cert_to_pem(X509 *cert, char **pem, char *err, size_t errlen)
{
    return to_pem(emit_cert, cert, "certificate", pem, err, errlen);
}

/* ---- checks ------------------------------------------------------------- */

int sim_pki_verify(X509 *ca, X509 *cert, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!ca || !cert)
        return fail(err, errlen, "sim_pki_verify: missing argument");
    if (X509_check_ca(ca) == 0)
        return fail(err, errlen, "trust anchor is not a CA certificate");
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(cert), subject, (int)sizeof subject);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!store || !ctx || !X509_STORE_add_cert(store, ca) || !X509_STORE_CTX_init(ctx, store, cert, NULL)) {
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(store);
        return fail(err, errlen, "cannot set up certificate verification");
    }
    /* The given CA is what is trusted, as AWS IoT trusts a registered CA, self-signed or not. */
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
    int rc = X509_verify_cert(ctx);
    int code = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    if (rc != 1) {
        /* The verifier's own code says more than whatever it left on the error queue. */
        ERR_clear_error();
        return fail(err, errlen, "certificate %s does not verify: %s", subject,
                    X509_verify_cert_error_string(code));
    }
    ERR_clear_error();
    return 0;
}

int sim_pki_check_key(X509 *cert, EVP_PKEY *key, char *err, size_t errlen)
{
    ERR_clear_error();
    if (!cert || !key)
        return fail(err, errlen, "sim_pki_check_key: missing argument");
    if (X509_check_private_key(cert, key) != 1)
        return fail(err, errlen, "private key does not match the certificate");
    return 0;
}
