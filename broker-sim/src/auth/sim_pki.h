/*
 * sim_pki.h: the simulator's certificate authority. iotsim starts with no
 * configuration, so it mints its own CA, a server certificate for its TLS
 * listeners (loopback addresses and the AWS-style endpoint name) and device
 * certificates, and names each certificate the way AWS IoT does (the SHA-256
 * of its DER encoding).
 *
 * Ownership: every EVP_PKEY and X509 handed out belongs to the caller, who
 * frees it with EVP_PKEY_free() / X509_free(); strings from *_to_pem() are
 * freed with free(). Arguments are borrowed and never kept.
 *
 * Errors: every function returns 0, or -1 with a one-line message in err
 * (err may be NULL and errlen 0; the message is truncated to fit). Nothing
 * prints, prompts or aborts. On failure every output pointer is NULL. Each
 * call clears the calling thread's OpenSSL error queue, so that the message
 * names the real cause and no stale entry confuses later TLS calls.
 *
 * Threads: no shared state; calls on distinct objects may run concurrently.
 */
#ifndef SIM_PKI_H
#define SIM_PKI_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

typedef enum {
    SIM_PKI_KEY_EC_P256 = 0, /* small and fast: the default */
    SIM_PKI_KEY_RSA_2048,    /* what AWS IoT's CreateKeysAndCertificate hands out */
} sim_pki_key_type;

typedef struct {
    const char *cn;         /* subject CN, 1..64 bytes (RFC 5280's upper bound) */
    /*
     * notBefore = now + not_before_s (negative: in the past);
     * notAfter = notBefore + days. An expired certificate is e.g. {-2 days, 1};
     * one that expires in 5 s is {-(86400 - 5), 1}.
     */
    long not_before_s;
    unsigned days;          /* at least 1 */
    bool server;            /* serverAuth (SANs required); otherwise clientAuth */
    /*
     * subjectAltName entries: each is an IPv4 or IPv6 literal (an IP entry)
     * or else a DNS name ("localhost", "*.example.com",
     * "abc123-ats.iot.us-east-1.amazonaws.com").
     */
    const char *const *san;
    size_t nsan;
    sim_pki_key_type key_type;
} sim_pki_req;

/* Defaults: client certificate, EC P-256, 365 days from 5 minutes ago, no SANs, cn NULL. */
void sim_pki_req_init(sim_pki_req *req);

/*
 * A self-signed EC P-256 CA: basicConstraints critical CA:TRUE, keyUsage
 * critical keyCertSign+cRLSign, subjectKeyIdentifier, random 128-bit serial,
 * valid from 5 minutes ago for `days` days.
 */
int sim_pki_make_ca(const char *cn, unsigned days, EVP_PKEY **key, X509 **cert, char *err, size_t errlen);

/*
 * A new key pair and a certificate for it, signed by the CA: basicConstraints
 * critical CA:FALSE, keyUsage critical digitalSignature (plus keyEncipherment
 * for RSA), extendedKeyUsage serverAuth or clientAuth, subjectAltName if
 * given, subject and authority key identifiers, random 128-bit serial,
 * SHA-256 signature. Fails if ca_key does not belong to ca_cert or ca_cert is
 * not a CA.
 */
int sim_pki_issue(EVP_PKEY *ca_key, X509 *ca_cert, const sim_pki_req *req, EVP_PKEY **key, X509 **cert,
                  char *err, size_t errlen);

/*
 * A client certificate for the public key of a PEM certificate signing
 * request (CreateCertificateFromCsr, aws-services.md §2.2), signed by the CA
 * with the extensions of sim_pki_issue's client certificates, `days` days
 * from 5 minutes ago.  The subject is the request's (AWS keeps it); its
 * other attributes and extensions are ignored.  Refused with the reason: not
 * one PEM CERTIFICATE REQUEST, over 8 KiB, a signature that does not verify
 * (proof of possession), a key other than RSA 2048..4096 or EC P-256/P-384
 * (what AWS IoT accepts [UNCONFIRMED in detail]), an empty subject.
 */
int sim_pki_issue_csr(EVP_PKEY *ca_key, X509 *ca_cert, const char *csr_pem, size_t len, unsigned days, X509 **cert,
                      char *err, size_t errlen);

/* AWS IoT's certificate id: SHA-256 of the DER encoding, 64 lowercase hex digits and a NUL. */
int sim_pki_cert_id(X509 *cert, char out[65]);

/*
 * Write PEM files atomically (a temporary file in the same directory, then
 * rename), so that a reader never sees half a file. The key is unencrypted
 * PKCS#8 ("BEGIN PRIVATE KEY") with mode 0600; the certificate gets 0644.
 */
int sim_pki_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen);
int sim_pki_write_cert(const char *path, X509 *cert, char *err, size_t errlen);

/* Read the first key / certificate in a PEM file. Encrypted keys are refused (no prompt). */
int sim_pki_load_key(const char *path, EVP_PKEY **key, char *err, size_t errlen);
int sim_pki_load_cert(const char *path, X509 **cert, char *err, size_t errlen);

/* The same from a NUL-terminated PEM string, as a config file or an API request gives it. */
int sim_pki_key_from_pem(const char *pem, EVP_PKEY **key, char *err, size_t errlen);
int sim_pki_cert_from_pem(const char *pem, X509 **cert, char *err, size_t errlen);

/* PEM text in a malloc'd NUL-terminated string (the key as unencrypted PKCS#8). */
int sim_pki_key_to_pem(EVP_PKEY *key, char **pem, char *err, size_t errlen);
int sim_pki_cert_to_pem(X509 *cert, char **pem, char *err, size_t errlen);

/*
 * Does cert chain to ca, at the current time? ca is the trust anchor even if
 * it is not self-signed (an intermediate registered as a CA); it must be a
 * CA certificate. No purpose or hostname is checked.
 */
int sim_pki_verify(X509 *ca, X509 *cert, char *err, size_t errlen);

/* Does key hold the private half of cert's public key? */
int sim_pki_check_key(X509 *cert, EVP_PKEY *key, char *err, size_t errlen);

#endif
