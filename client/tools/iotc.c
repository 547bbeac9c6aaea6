/*
 * iotc: a command-line MQTT client for AWS IoT, iotsim and any MQTT 3.1.1
 * broker, in the mould of mosquitto_pub and mosquitto_sub.
 *
 *   iotc pub [options]    publish --message --count times and wait for each
 *   iotc sub [options]    print "topic payload" per message
 *   iotc shadow get|update|delete|delta [options]
 *                         the Device Shadow of --thing (--shadow_name for a
 *                         named one): print the accepted document, or each
 *                         delta as it comes
 *   iotc provision --template NAME [--csr FILE] [--param K=V ...] [--out DIR]
 *                         fleet provisioning by claim, connected with the
 *                         claim certificate: a new certificate (AWS's keys,
 *                         or signed from --csr), registered with the
 *                         template; the credentials go to DIR and a JSON
 *                         summary to stdout
 *
 * The flags are spelled as in the AWS IoT Device SDK samples (--endpoint,
 * --cert, --key, --ca_file, --client_id, --topic, --message, --count), so a
 * command line copied from a sample works.  `--sim DIR` takes the endpoint,
 * ports and credentials from an iotsim state directory's endpoint.json.
 *
 * Exit codes (scripts branch on them, so they are fixed):
 *   0 ok, 1 anything else, 2 usage, 3 connection refused (CONNACK code),
 *   4 TLS failure, 5 timeout, 6 any other connection failure, 7 the shadow
 *   or fleet provisioning service rejected the request (its error document
 *   is printed).
 *
 * The first connection is tried once: a CLI that silently retried a wrong
 * endpoint or CA forever would hide the mistake.  Once connected, `sub`
 * keeps the library's reconnect (a long-running subscriber survives a broker
 * restart, as mosquitto_sub does).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "iotc/client.h"
#include "iotc/identity.h"
#include "iotc/shadow.h"

enum {
    EXIT_OK = 0,
    EXIT_OTHER = 1,
    EXIT_USAGE = 2,
    EXIT_REFUSED = 3,
    EXIT_TLS = 4,
    EXIT_TIMEOUT = 5,
    EXIT_CONNECT = 6,
    EXIT_REJECTED = 7
};

/* ---- options --------------------------------------------------------------- */

/* A flag that may be given several times (--param). */
#define LIST_MAX 64
typedef struct {
    const char *v[LIST_MAX];
    size_t n;
} strlist;

typedef struct {
    const char *endpoint, *cert, *key, *ca_file, *client_id, *topic, *message, *sim;
    const char *pkcs12, *pkcs12_password, *region, *username, *password, *header;
    /* The seed's custom_authorizer_connect sample names these. */
    const char *ca_user, *ca_name, *ca_sig, *ca_pass, *ca_key, *ca_token;
    const char *thing, *shadow_name, *state; /* shadow */
    const char *template_name, *csr, *out;   /* provision */
    strlist params;                          /* provision: K=V */
    long port, count, qos, keep_alive, clean_session, timeout;
    bool no_tls, ws, signing, verbose, help;
    bool port_set, count_set; /* an explicit flag beats endpoint.json and the defaults */
} opts;

typedef enum { K_STR, K_BOOL, K_LONG, K_LIST } kind;

typedef struct {
    const char *name;
    kind k;
    size_t off;
    long min, max; /* K_LONG only */
    const char *arg, *help;
} flag;

#define S(f) K_STR, offsetof(opts, f), 0, 0
#define B(f) K_BOOL, offsetof(opts, f), 0, 0
#define L(f, lo, hi) K_LONG, offsetof(opts, f), lo, hi
#define LS(f) K_LIST, offsetof(opts, f), 0, 0

static const flag FLAGS[] = {
    {"--endpoint", S(endpoint), "HOST", "broker host name (AWS: xxx-ats.iot.REGION.amazonaws.com)"},
    {"--port", L(port, 1, 65535), "N", "port (default 8883; 1883 with --no-tls; WebSocket: 443, 80 with --no-tls)"},
    {"--cert", S(cert), "FILE", "client certificate (PEM) for mTLS"},
    {"--key", S(key), "FILE", "client private key (PEM) for mTLS"},
    {"--ca_file", S(ca_file), "FILE", "trust only this CA (PEM) instead of the system store"},
    {"--pkcs12", S(pkcs12), "FILE", "client certificate and key as PKCS#12, instead of --cert/--key"},
    {"--pkcs12_password", S(pkcs12_password), "P", "password of the --pkcs12 file"},
    {"--client_id", S(client_id), "ID", "MQTT client id (default iotc-<random>)"},
    {"--topic", S(topic), "TOPIC", "topic to publish to, or filter to subscribe to (default test/topic)"},
    {"--message", S(message), "TEXT", "payload to publish (default \"Hello World!\")"},
    {"--count", L(count, 0, LONG_MAX), "N", "pub: publish N times (default 1); sub: stop after N (default 0: forever)"},
    {"--qos", L(qos, 0, 1), "0|1", "QoS (default 1; AWS IoT has no QoS 2)"},
    {"--sim", S(sim), "DIR", "take endpoint, port, CA, cert and key from iotsim's DIR/endpoint.json"},
    {"--thing", S(thing), "NAME", "shadow: the thing (default with --sim: its device's thing)"},
    {"--shadow_name", S(shadow_name), "NAME", "shadow: a named shadow (default: the classic one)"},
    {"--state", S(state), "JSON", "shadow update: the document, e.g. '{\"state\":{\"reported\":{\"on\":true}}}'"},
    {"--template", S(template_name), "NAME", "provision: the provisioning template"},
    {"--csr", S(csr), "FILE", "provision: a PEM CSR to sign (CreateCertificateFromCsr) instead of AWS's keys"},
    {"--param", LS(params), "K=V", "provision: a template parameter (again for more)"},
    {"--out", S(out), "DIR", "provision: where certificate.pem.crt and private.pem.key go (default .)"},
    {"--no-tls", B(no_tls), NULL, "plain MQTT (or ws:// with --ws), e.g. a local mosquitto"},
    {"--ws", B(ws), NULL, "MQTT over WebSocket"},
    {"--signing", B(signing), NULL, "MQTT over WebSocket with a SigV4-signed URL (needs --region)"},
    {"--region", S(region), "R", "AWS region for --signing"},
    {"--header", S(header), "'N: V'", "add this header to the WebSocket upgrade request (with --ws)"},
    {"--custom_auth_username", S(ca_user), "U", "custom authorizer: the username part"},
    {"--custom_auth_authorizer_name", S(ca_name), "NAME", "custom authorizer: its name"},
    {"--custom_auth_authorizer_signature", S(ca_sig), "SIG", "custom authorizer: the token's signature"},
    {"--custom_auth_password", S(ca_pass), "P", "custom authorizer: the password"},
    {"--custom_auth_token_key_name", S(ca_key), "KEY", "custom authorizer: the token's key name"},
    {"--custom_auth_token_value", S(ca_token), "TOKEN", "custom authorizer: the token"},
    {"--username", S(username), "U", "MQTT username"},
    {"--password", S(password), "P", "MQTT password"},
    {"--keep_alive", L(keep_alive, 0, 65535), "SECS", "MQTT keep-alive (default 1200; 0: no pings)"},
    {"--clean_session", L(clean_session, 0, 1), "0|1", "clean session (default 1)"},
    {"--timeout", L(timeout, 1, 86400), "SECS", "limit on the connect, subscribe and publish waits (default 10)"},
    {"--verbose", B(verbose), NULL, "say what happens on stderr (connected, subscribed, lost...)"},
    {"--help", B(help), NULL, "this text"},
};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("iotc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void usage(FILE *f, const char *cmd)
{
    if (!cmd) {
        fprintf(f, "usage: iotc pub|sub|shadow|provision [options]   (iotc pub --help for the options)\n"
                   "  pub  publish --message --count times to --topic and wait for each (QoS 1: PUBACK)\n"
                   "  sub  subscribe to --topic and print \"topic payload\" per message\n"
                   "  shadow get|update|delete|delta  the Device Shadow of --thing [--shadow_name]: print\n"
                   "       the accepted document (update: --state JSON), or each delta (--count of them)\n"
                   "  provision --template NAME [--csr FILE] [--param K=V ...] [--out DIR]  fleet provisioning\n"
                   "       by claim: a new certificate, registered with the template; writes DIR/certificate.pem.crt\n"
                   "       (and DIR/private.pem.key without --csr), prints {certificateId, thingName,\n"
                   "       deviceConfiguration}\n"
                   "exit codes: 0 ok, 1 other error, 2 usage, 3 refused by the broker, 4 TLS failure,\n"
                   "            5 timeout, 6 cannot connect, 7 rejected by the shadow or provisioning service\n");
        return;
    }
    fprintf(f, "usage: iotc %s [options]\n", cmd);
    for (size_t i = 0; i < NFLAGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", FLAGS[i].name, FLAGS[i].arg ? " " : "", FLAGS[i].arg ? FLAGS[i].arg : "");
        fprintf(f, "  %-24s %s\n", left, FLAGS[i].help);
    }
    fprintf(f, "Connection kinds: --cert/--key or --pkcs12 (mTLS), --signing --region (SigV4 WebSocket),\n"
               "--custom_auth_* (a custom authorizer: TLS on 443 with ALPN mqtt, or WebSocket with --ws),\n"
               "--ws (WebSocket), --no-tls (plain TCP; no metrics suffix in the username), none of them\n"
               "(TLS without a client certificate, e.g. with --username/--password).\n"
               "--sim DIR fills in what the other flags leave out.\n");
}

/* "--name value" or "--name=value"; returns EXIT_OK or EXIT_USAGE. */
static int parse(const char *cmd, int argc, char **argv, opts *o)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h"))
            a = "--help";
        else if (!strcmp(a, "-v"))
            a = "--verbose";
        const char *eq = strchr(a, '=');
        size_t nlen = eq && !strncmp(a, "--", 2) ? (size_t)(eq - a) : strlen(a);
        const flag *f = NULL;
        for (size_t j = 0; j < NFLAGS && !f; j++)
            if (strlen(FLAGS[j].name) == nlen && !strncmp(FLAGS[j].name, a, nlen))
                f = &FLAGS[j];
        if (!f) {
            say("unknown option %s (iotc %s --help lists them)", a, cmd);
            return EXIT_USAGE;
        }
        char *field = (char *)o + f->off;
        if (f->k == K_BOOL) {
            if (eq && a[nlen] == '=') {
                say("%s takes no value", f->name);
                return EXIT_USAGE;
            }
            *(bool *)field = true;
            continue;
        }
        const char *v;
        if (eq && a[nlen] == '=')
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            say("%s needs a value (%s)", f->name, f->arg);
            return EXIT_USAGE;
        }
        if (f->k == K_STR) {
            *(const char **)field = v;
            continue;
        }
        if (f->k == K_LIST) {
            strlist *l = (strlist *)(void *)field;
            if (l->n == LIST_MAX) {
                say("%s: at most %d of them", f->name, LIST_MAX);
                return EXIT_USAGE;
            }
            l->v[l->n++] = v;
            continue;
        }
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (!*v || *end || errno || n < f->min || n > f->max) {
            say("%s: want an integer in %ld..%ld, got \"%s\"", f->name, f->min, f->max, v);
            return EXIT_USAGE;
        }
        *(long *)field = n;
        if (f->off == offsetof(opts, port))
            o->port_set = true;
        if (f->off == offsetof(opts, count))
            o->count_set = true;
    }
    return EXIT_OK;
}

/* ---- iotsim's endpoint.json ------------------------------------------------- */

/* The parsed file stays alive until exit: opts points into it. */
static cJSON *g_sim;
/* iotc shadow's operation (get, update, delete, delta), or NULL. */
static const char *g_shadow_op;
/* iotc provision. */
static bool g_provision;
static char g_sim_address[256];

static const char *sim_str(const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(g_sim, key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static long sim_port(const char *name)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g_sim, "ports"), name);
    return cJSON_IsNumber(p) && p->valuedouble >= 1 && p->valuedouble <= 65535 ? (long)p->valuedouble : 0;
}

/* Fills what the command line left out.  The made-up AWS endpoint name goes
 * into SNI and hostname verification while the socket goes to "host", as a
 * device talking to AWS IoT would see it. */
static int apply_sim(opts *o)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/endpoint.json", o->sim);
    FILE *f = fopen(path, "r");
    if (!f) {
        say("--sim: cannot open %s: %s (is iotsim running with --state-dir %s?)", path, strerror(errno), o->sim);
        return EXIT_OTHER;
    }
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    g_sim = cJSON_Parse(buf);
    if (!cJSON_IsObject(g_sim)) {
        say("--sim: %s is not a JSON object", path);
        return EXIT_OTHER;
    }
    const char *host = sim_str("host");
    if (!o->endpoint) {
        o->endpoint = sim_str("endpoint") ? sim_str("endpoint") : host;
        if (host)
            snprintf(g_sim_address, sizeof g_sim_address, "%s", host);
    }
    if (!o->endpoint) {
        say("--sim: %s names neither endpoint nor host", path);
        return EXIT_OTHER;
    }
    if (!o->port_set) {
        const char *which = o->no_tls ? "tcp" : (o->ws || o->signing) ? "wss" : "mtls";
        o->port = sim_port(which);
        if (!o->port) {
            say("--sim: %s has no ports.%s%s", path, which,
                o->no_tls ? " (start iotsim with --insecure-tcp)" : "; give --port");
            return EXIT_OTHER;
        }
    }
    if (!o->ca_file && !o->no_tls)
        o->ca_file = sim_str("ca_file");
    if (g_shadow_op && !o->thing)
        o->thing = sim_str("thing_name");
    if (o->signing) {
        if (!o->region)
            o->region = sim_str("region");
    } else if (!o->no_tls && !o->ws && !o->pkcs12 && !o->cert && !o->key) {
        o->cert = sim_str("cert_file");
        o->key = sim_str("key_file");
    }
    return EXIT_OK;
}

/* ---- the client's events ---------------------------------------------------- */

/* Shared between the service thread (callbacks) and main. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool connected, failed, closed, verbose;
    int fail_err;
    uint8_t fail_code;
    char fail_why[512];
    long received, want; /* sub: messages so far and the --count to stop at */
} state;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_success(iotc_client *c, bool session_present, void *user)
{
    (void)c;
    state *s = user;
    pthread_mutex_lock(&s->mu);
    s->connected = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->verbose)
        say("connected (session present: %d)", session_present);
}

static void on_failure(iotc_client *c, int err, uint8_t code, const char *reason, void *user)
{
    state *s = user;
    pthread_mutex_lock(&s->mu);
    bool first = !s->connected && !s->failed;
    if (first) {
        s->failed = true;
        s->fail_err = err;
        s->fail_code = code;
        snprintf(s->fail_why, sizeof s->fail_why, "%s", reason ? reason : "");
        pthread_cond_broadcast(&s->cv);
    }
    bool was_connected = s->connected;
    pthread_mutex_unlock(&s->mu);
    if (first)
        iotc_client_disconnect(c); /* no retry: main reports this failure */
    else if (was_connected)
        say("reconnect failed: %s: %s", iotc_strerror(err), reason ? reason : "");
}

static void on_interrupted(iotc_client *c, int err, const char *reason, void *user)
{
    (void)c;
    (void)user;
    say("connection lost (%s: %s); reconnecting", iotc_strerror(err), reason ? reason : "");
}

static void on_resumed(iotc_client *c, uint8_t code, bool session_present, void *user)
{
    (void)c;
    (void)code;
    state *s = user;
    if (s->verbose)
        say("reconnected (session present: %d)", session_present);
}

static void on_closed(iotc_client *c, void *user)
{
    (void)c;
    state *s = user;
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_message(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                       uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c;
    (void)qos;
    (void)retain;
    (void)dup;
    state *s = user;
    pthread_mutex_lock(&s->mu);
    /* Past --count the subscriber is on its way out: extra lines would break
     * a script that reads exactly N. */
    bool print = s->want == 0 || s->received < s->want;
    if (print) {
        fwrite(topic, 1, topic_len, stdout);
        fputc(' ', stdout);
        fwrite(payload, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout); /* a pipe reader sees each message as it comes */
        s->received++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static bool is_up_or_failed(const state *s) { return s->connected || s->failed; }
static bool got_enough(const state *s) { return s->want > 0 && s->received >= s->want; }
static bool is_closed(const state *s) { return s->closed; }

/* Waits for pred, at most timeout_s (0: forever), waking for signals.
 * 0: pred holds; 1: timed out; 2: interrupted by a signal. */
static int wait_for(state *s, bool (*pred)(const state *), long timeout_s)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += timeout_s;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (!pred(s)) {
        if (g_stop) {
            rc = 2;
            break;
        }
        /* Short slices: a signal handler cannot signal a condition variable. */
        struct timespec now, t;
        clock_gettime(CLOCK_REALTIME, &now);
        if (timeout_s > 0 && (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))) {
            rc = 1;
            break;
        }
        t = now;
        t.tv_nsec += 100 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &t);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static const char *connack_text(uint8_t code)
{
    switch (code) {
    case 1: return "unacceptable protocol version";
    case 2: return "identifier rejected";
    case 3: return "server unavailable";
    case 4: return "bad user name or password";
    case 5: return "not authorized";
    default: return "refused";
    }
}

/* ---- building the connection ------------------------------------------------ */

/* --ws: the upgrade request as lws builds it, plus the --header if any. */
static int add_header(iotc_ws_request *req, void *user)
{
    const char *h = user;
    if (!h)
        return IOTC_OK;
    const char *colon = strchr(h, ':');
    char name[128];
    size_t n = (size_t)(colon - h);
    if (n >= sizeof name)
        return IOTC_ERR_INVALID_ARG;
    memcpy(name, h, n);
    name[n] = 0;
    const char *v = colon + 1;
    while (*v == ' ')
        v++;
    return iotc_ws_request_add_header(req, name, v);
}

static bool custom_auth(const opts *o)
{
    return o->ca_user || o->ca_name || o->ca_sig || o->ca_pass || o->ca_key || o->ca_token;
}

/* Picks the constructor from the flags; EXIT_OK with *out set, or an exit code. */
static int build(const opts *o, iotc_builder **out)
{
    iotc_builder *b = NULL;
    int rc;
    const char *what;
    bool ws = o->ws || o->signing;
    if (o->signing) {
        what = "iotc_websockets_with_default_aws_signing";
        iotc_aws_creds creds = {sim_str("access_key_id"), sim_str("secret_access_key"), NULL};
        bool from_sim = g_sim && creds.access_key_id && creds.secret_access_key;
        rc = iotc_websockets_with_default_aws_signing(&b, o->endpoint, o->region, from_sim ? &creds : NULL);
    } else if (o->pkcs12) {
        what = "iotc_mtls_with_pkcs12";
        rc = iotc_mtls_with_pkcs12(&b, o->endpoint, o->pkcs12, o->pkcs12_password);
    } else if (o->cert) {
        what = "iotc_mtls_from_path";
        rc = iotc_mtls_from_path(&b, o->endpoint, o->cert, o->key);
    } else if (custom_auth(o)) {
        iotc_custom_auth a = {o->ca_user, o->ca_name, o->ca_sig, o->ca_pass, o->ca_key, o->ca_token};
        what = ws ? "iotc_websockets_with_custom_authorizer" : "iotc_direct_with_custom_authorizer";
        rc = ws ? iotc_websockets_with_custom_authorizer(&b, o->endpoint, &a)
                : iotc_direct_with_custom_authorizer(&b, o->endpoint, &a);
    } else if (ws) {
        what = "iotc_websockets_with_custom_handshake";
        rc = iotc_websockets_with_custom_handshake(&b, o->endpoint, add_header, (void *)o->header);
    } else {
        what = "iotc_new_default_builder";
        rc = iotc_new_default_builder(&b, o->endpoint);
    }
    if (rc != IOTC_OK) {
        say("%s: %s: %s", what, iotc_strerror(rc), b ? iotc_builder_why(b) : iotc_builder_new_why());
        iotc_builder_free(b);
        return EXIT_OTHER;
    }
    uint32_t timeout_ms = (uint32_t)o->timeout * 1000u;
    long port = o->port;
    /* Each setter in turn; the first refusal is reported with its reason. */
#define SET(call, name)                                                                                            \
    do {                                                                                                           \
        if ((rc = (call)) != IOTC_OK) {                                                                            \
            say("%s: %s: %s", name, iotc_strerror(rc), iotc_builder_why(b));                                       \
            iotc_builder_free(b);                                                                                  \
            return EXIT_USAGE;                                                                                     \
        }                                                                                                          \
    } while (0)
    SET(iotc_builder_set_port(b, (uint16_t)port), "--port");
    if (g_sim_address[0])
        SET(iotc_builder_set_address(b, g_sim_address), "--sim host");
    /* AWS IoT takes mTLS on 443 only with this ALPN, as the SDK v2 sets it. */
    if ((o->cert || o->pkcs12) && port == 443)
        SET(iotc_builder_set_alpn(b, "x-amzn-mqtt-ca"), "ALPN");
    if (o->no_tls) {
        SET(iotc_builder_set_tls(b, false), "--no-tls");
        /* A local broker is not AWS IoT: "?SDK=..." in the username would
         * break its password check. */
        SET(iotc_builder_set_metrics(b, false), "--no-tls");
    }
    if (o->ca_file)
        SET(iotc_builder_set_ca_file(b, o->ca_file), "--ca_file");
    if (o->client_id)
        SET(iotc_builder_set_client_id(b, o->client_id), "--client_id");
    if (o->username)
        SET(iotc_builder_set_username(b, o->username), "--username");
    if (o->password)
        SET(iotc_builder_set_password(b, o->password, strlen(o->password)), "--password");
    if (o->keep_alive >= 0)
        SET(iotc_builder_set_keep_alive_secs(b, (uint16_t)o->keep_alive), "--keep_alive");
    if (o->clean_session >= 0)
        SET(iotc_builder_set_clean_session(b, o->clean_session == 1), "--clean_session");
    SET(iotc_builder_set_tcp_connect_timeout_ms(b, timeout_ms), "--timeout");
#undef SET
    *out = b;
    return EXIT_OK;
}

/* Flag combinations that cannot work, refused before anything is opened. */
static int check(const opts *o, bool pub)
{
    if (!o->endpoint) {
        say("--endpoint is required (or --sim DIR)");
        return EXIT_USAGE;
    }
    if ((o->cert != NULL) != (o->key != NULL)) {
        say("%s needs %s too", o->cert ? "--cert" : "--key", o->cert ? "--key" : "--cert");
        return EXIT_USAGE;
    }
    if (o->pkcs12_password && !o->pkcs12) {
        say("--pkcs12_password needs --pkcs12");
        return EXIT_USAGE;
    }
    if (o->pkcs12 && o->cert) {
        say("--pkcs12 and --cert/--key: give one client identity");
        return EXIT_USAGE;
    }
    if (o->signing && !o->region) {
        say("--signing needs --region");
        return EXIT_USAGE;
    }
    if (o->region && !o->signing) {
        say("--region is for --signing");
        return EXIT_USAGE;
    }
    if (o->header && (!o->ws || o->signing || custom_auth(o))) {
        say("--header is for --ws (a WebSocket upgrade shaped by a handshake callback)");
        return EXIT_USAGE;
    }
    if (o->header && !strchr(o->header, ':')) {
        say("--header: want 'Name: value'");
        return EXIT_USAGE;
    }
    if (custom_auth(o) && (o->cert || o->pkcs12 || o->signing || o->username || o->password)) {
        say("--custom_auth_* cannot go with --cert, --pkcs12, --signing, --username or --password");
        return EXIT_USAGE;
    }
    if ((o->ca_key != NULL) != (o->ca_token != NULL)) {
        say("--custom_auth_token_key_name and --custom_auth_token_value go together");
        return EXIT_USAGE;
    }
    if (o->no_tls && (o->cert || o->pkcs12 || o->signing || o->ca_file)) {
        say("--no-tls cannot go with %s", o->cert ? "--cert" : o->pkcs12 ? "--pkcs12" : o->signing ? "--signing" : "--ca_file");
        return EXIT_USAGE;
    }
    if ((o->ws || o->signing) && (o->cert || o->pkcs12)) {
        say("--ws with a client certificate: AWS IoT authenticates WebSocket clients by --signing (SigV4) "
            "or a custom authorizer, and libiotc has no mTLS-over-WebSocket builder");
        return EXIT_USAGE;
    }
    if ((o->thing || o->shadow_name || o->state) && !g_shadow_op) {
        say("--thing, --shadow_name and --state are for iotc shadow");
        return EXIT_USAGE;
    }
    if (g_shadow_op && !o->thing) {
        say("iotc shadow needs --thing (or --sim DIR: its device's thing)");
        return EXIT_USAGE;
    }
    if (g_shadow_op && (!strcmp(g_shadow_op, "update") != (o->state != NULL))) {
        say(o->state ? "--state is for iotc shadow update" : "iotc shadow update needs --state JSON");
        return EXIT_USAGE;
    }
    if ((o->template_name || o->csr || o->out || o->params.n) && !g_provision) {
        say("--template, --csr, --param and --out are for iotc provision");
        return EXIT_USAGE;
    }
    if (g_provision && !o->template_name) {
        say("iotc provision needs --template NAME");
        return EXIT_USAGE;
    }
    if (g_provision && iotc_identity_check_template_name(o->template_name) != IOTC_OK) {
        say("--template: %s", iotc_identity_why());
        return EXIT_USAGE;
    }
    for (size_t i = 0; g_provision && i < o->params.n; i++) {
        const char *p = o->params.v[i], *eq = strchr(p, '=');
        if (!eq || eq == p) {
            say("--param: want KEY=VALUE, got \"%s\"", p);
            return EXIT_USAGE;
        }
        for (size_t j = 0; j < i; j++) {
            const char *q = o->params.v[j];
            if (!strncmp(p, q, (size_t)(eq - p) + 1)) {
                say("--param: %.*s given twice", (int)(eq - p), p);
                return EXIT_USAGE;
            }
        }
    }
    if (!pub && o->count_set && o->count < 0) {
        say("--count: want 0 or more");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---- shadow ------------------------------------------------------------------ */

/* The request's outcome, handed from the service thread to main. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long deltas, want;
    int sub_rc;     /* the delta subscription's completion */
    bool sub_done;
} shadow_wait;

static void on_delta(iotc_shadow *sh, const char *json, size_t len, uint64_t version, void *user)
{
    (void)sh;
    (void)version;
    shadow_wait *w = user;
    pthread_mutex_lock(&w->mu);
    if (w->want == 0 || w->deltas < w->want) {
        fwrite(json, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        w->deltas++;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

static void on_delta_subscribed(int status, uint8_t granted, void *user)
{
    shadow_wait *w = user;
    pthread_mutex_lock(&w->mu);
    w->sub_rc = status == IOTC_OK && granted == 0x80 ? IOTC_ERR_REFUSED : status;
    w->sub_done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits on w's condition until done(w), a signal, or the deadline (0: none);
 * false when it gave up. */
static bool shadow_wait_for(shadow_wait *w, bool (*done)(const shadow_wait *), long timeout_s)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += timeout_s;
    pthread_mutex_lock(&w->mu);
    bool ok;
    while (!(ok = done(w)) && !g_stop) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        if (timeout_s > 0 && (t.tv_sec > end.tv_sec || (t.tv_sec == end.tv_sec && t.tv_nsec >= end.tv_nsec)))
            break;
        /* Short slices: a signal handler cannot signal a condition variable. */
        t.tv_nsec += 100 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &t);
    }
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static bool sub_settled(const shadow_wait *w) { return w->sub_done; }
static bool deltas_enough(const shadow_wait *w) { return w->want > 0 && w->deltas >= w->want; }

/* One shadow operation on a connected client; returns the exit code. */
static int shadow_run(iotc_client *c, const opts *o)
{
    iotc_shadow *sh = NULL;
    int rc = iotc_shadow_new(c, o->thing, o->shadow_name, &sh);
    if (rc != IOTC_OK) {
        say("shadow of %s: %s: %s", o->thing, iotc_strerror(rc), iotc_shadow_why());
        return EXIT_USAGE;
    }
    uint32_t timeout_ms = (uint32_t)o->timeout * 1000u;
    const char *op = g_shadow_op;
    int exit_code = EXIT_OK;
    if (!strcmp(op, "delta")) {
        static shadow_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        w.want = o->count;
        rc = iotc_shadow_on_delta(sh, on_delta, &w, on_delta_subscribed, &w);
        if (rc != IOTC_OK) {
            say("shadow delta: %s", iotc_strerror(rc));
            iotc_shadow_free(sh);
            return EXIT_OTHER;
        }
        /* The SUBACK, then "subscribed" on stderr: a script may now update. */
        bool settled = shadow_wait_for(&w, sub_settled, o->timeout);
        pthread_mutex_lock(&w.mu);
        int sub_rc = settled ? w.sub_rc : IOTC_ERR_TIMEOUT;
        pthread_mutex_unlock(&w.mu);
        if (sub_rc != IOTC_OK) {
            if (!g_stop)
                say("shadow delta: subscribe: %s", iotc_strerror(sub_rc));
            iotc_shadow_free(sh);
            return g_stop ? EXIT_OK : sub_rc == IOTC_ERR_TIMEOUT ? EXIT_TIMEOUT : EXIT_OTHER;
        }
        say("subscribed to the delta of %s%s%s", o->thing, o->shadow_name ? "/" : "",
            o->shadow_name ? o->shadow_name : "");
        shadow_wait_for(&w, deltas_enough, 0); /* until --count deltas or a signal */
        iotc_shadow_free(sh);
        return EXIT_OK;
    }
    int code = 0;
    char *json = NULL;
    if (!strcmp(op, "get"))
        rc = iotc_shadow_get_wait(sh, timeout_ms, &code, &json);
    else if (!strcmp(op, "update"))
        rc = iotc_shadow_update_wait(sh, o->state, timeout_ms, &code, &json);
    else
        rc = iotc_shadow_delete_wait(sh, timeout_ms, &code, &json);
    if (json)
        printf("%s\n", json);
    if (rc == IOTC_ERR_REJECTED) {
        const char *m = NULL;
        cJSON *doc = json ? cJSON_Parse(json) : NULL;
        const cJSON *jm = cJSON_GetObjectItemCaseSensitive(doc, "message");
        m = cJSON_IsString(jm) ? jm->valuestring : "";
        say("shadow %s rejected: %d %s", op, code, m);
        cJSON_Delete(doc);
        exit_code = EXIT_REJECTED;
    } else if (rc != IOTC_OK) {
        say("shadow %s: %s%s%s", op, iotc_strerror(rc), rc == IOTC_ERR_INVALID_ARG ? ": " : "",
            rc == IOTC_ERR_INVALID_ARG ? iotc_shadow_why() : "");
        exit_code = rc == IOTC_ERR_TIMEOUT ? EXIT_TIMEOUT : rc == IOTC_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_OTHER;
    }
    free(json);
    iotc_shadow_free(sh);
    return exit_code;
}

/* ---- provision --------------------------------------------------------------- */

#define CERT_FILE "certificate.pem.crt"
#define KEY_FILE "private.pem.key"
/* AWS IoT's largest message: a CSR beyond it cannot be sent. */
#define CSR_MAX (128 * 1024)

static char *g_csr_pem; /* --csr's contents */
static char g_cert_path[PATH_MAX], g_key_path[PATH_MAX];

/* Reads --csr and makes sure --out can take the files, before anything is
 * asked of AWS: a certificate made and then not saved would be an orphan. */
static int provision_prepare(const opts *o)
{
    if (o->csr) {
        FILE *f = fopen(o->csr, "rb");
        if (!f) {
            say("--csr: cannot open %s: %s", o->csr, strerror(errno));
            return EXIT_OTHER;
        }
        g_csr_pem = malloc(CSR_MAX + 2);
        size_t n = g_csr_pem ? fread(g_csr_pem, 1, CSR_MAX + 1, f) : 0;
        bool bad = !g_csr_pem || ferror(f);
        fclose(f);
        if (bad) {
            say("--csr: cannot read %s", o->csr);
            return EXIT_OTHER;
        }
        g_csr_pem[n] = '\0';
        if (n > CSR_MAX || n == 0 || strlen(g_csr_pem) != n) {
            say("--csr: %s is %s", o->csr, n == 0 ? "empty" : n > CSR_MAX ? "over 128 KiB" : "not text (a NUL byte)");
            return EXIT_USAGE;
        }
    }
    const char *dir = o->out ? o->out : ".";
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        say("--out: cannot create %s: %s", dir, strerror(errno));
        return EXIT_OTHER;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        say("--out: %s is not a directory", dir);
        return EXIT_OTHER;
    }
    if ((size_t)snprintf(g_cert_path, sizeof g_cert_path, "%s/" CERT_FILE, dir) >= sizeof g_cert_path ||
        (size_t)snprintf(g_key_path, sizeof g_key_path, "%s/" KEY_FILE, dir) >= sizeof g_key_path) {
        say("--out: %s is too long a path", dir);
        return EXIT_USAGE;
    }
    /* Never over credentials that a device may be using. */
    const char *exists = access(g_cert_path, F_OK) == 0                 ? g_cert_path
                         : !o->csr && access(g_key_path, F_OK) == 0 ? g_key_path
                                                                      : NULL;
    if (exists) {
        say("--out: %s already exists (provisioning does not replace credentials)", exists);
        return EXIT_OTHER;
    }
    return EXIT_OK;
}

/* Writes `text` to a new file (never over an existing one) with `mode`,
 * on disk before it returns: AWS sends a private key it made only once. */
static bool write_new_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        say("cannot create %s: %s", path, strerror(errno));
        return false;
    }
    size_t len = strlen(text), off = 0;
    bool ok = true;
    while (ok && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        if (ok)
            off += (size_t)w;
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        say("cannot write %s: %s", path, strerror(saved ? saved : errno));
        unlink(path);
    }
    return ok;
}

/* A step that failed: the exit code, a line on stderr and, for a
 * rejection, AWS's error document on stdout (as iotc shadow does). */
static int provision_failed(const char *step, const iotc_identity_result *r)
{
    switch (r->status) {
    case IOTC_ERR_REJECTED:
        if (r->json)
            printf("%s\n", r->json);
        say("%s rejected: %d %s: %s", step, r->status_code, r->error_code, r->error_message);
        return EXIT_REJECTED;
    case IOTC_ERR_PROTOCOL:
        say("%s: the service's answer is malformed: %s", step, r->error_message);
        return EXIT_OTHER;
    case IOTC_ERR_TIMEOUT:
        say("%s: no answer in time", step);
        return EXIT_TIMEOUT;
    case IOTC_ERR_REFUSED:
        say("%s: the broker refused the subscription to the answer topics (the claim certificate's policy?)", step);
        return EXIT_OTHER;
    case IOTC_ERR_INVALID_ARG:
        say("%s: %s", step, iotc_identity_why());
        return EXIT_USAGE;
    default:
        say("%s: %s", step, iotc_strerror(r->status));
        return EXIT_OTHER;
    }
}

/* The summary scripts read: {certificateId, thingName, deviceConfiguration}. */
static bool print_summary(const iotc_identity_result *cert, const iotc_identity_result *reg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *cfg = NULL;
    bool ok = o && cJSON_AddStringToObject(o, "certificateId", cert->certificate_id) &&
              cJSON_AddStringToObject(o, "thingName", reg->thing_name) &&
              (cfg = cJSON_AddObjectToObject(o, "deviceConfiguration")) != NULL;
    for (size_t i = 0; ok && i < reg->device_configuration_len; i++)
        ok = cJSON_AddStringToObject(cfg, reg->device_configuration_keys[i], reg->device_configuration_values[i]) !=
             NULL;
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return false;
    printf("%s\n", text);
    cJSON_free(text);
    return true;
}

/* Provisioning by claim on a connected client; returns the exit code. */
static int provision_run(iotc_client *c, const opts *o)
{
    iotc_identity *id = NULL;
    int rc = iotc_identity_new(c, &id);
    if (rc != IOTC_OK) {
        say("provision: %s", iotc_strerror(rc));
        return EXIT_OTHER;
    }
    uint32_t timeout_ms = (uint32_t)o->timeout * 1000u;
    iotc_identity_result cert, reg;
    memset(&reg, 0, sizeof reg);
    char *keys[LIST_MAX] = {0};
    const char *values[LIST_MAX] = {0};
    size_t np = o->params.n;
    int exit_code = EXIT_OK;
    const char *step = g_csr_pem ? "CreateCertificateFromCsr" : "CreateKeysAndCertificate";
    rc = g_csr_pem ? iotc_identity_create_certificate_from_csr_wait(id, g_csr_pem, timeout_ms, &cert)
                   : iotc_identity_create_keys_and_certificate_wait(id, timeout_ms, &cert);
    if (rc != IOTC_OK) {
        exit_code = provision_failed(step, &cert);
        goto out;
    }
    if (o->verbose)
        say("%s: certificate %s", step, cert.certificate_id);
    /* Saved before RegisterThing: should its answer be lost, the
     * certificate may be active all the same, and its key exists nowhere
     * else. */
    if (!write_new_file(g_cert_path, cert.certificate_pem, 0644)) {
        exit_code = EXIT_OTHER;
        goto out;
    }
    if (cert.private_key && !write_new_file(g_key_path, cert.private_key, 0600)) {
        unlink(g_cert_path);
        exit_code = EXIT_OTHER;
        goto out;
    }
    if (o->verbose)
        say("wrote %s%s%s", g_cert_path, cert.private_key ? " and " : "", cert.private_key ? g_key_path : "");
    for (size_t i = 0; i < np; i++) {
        const char *p = o->params.v[i], *eq = strchr(p, '=');
        keys[i] = strndup(p, (size_t)(eq - p));
        values[i] = eq + 1;
        if (!keys[i]) {
            say("out of memory");
            exit_code = EXIT_OTHER;
            goto out;
        }
    }
    rc = iotc_identity_register_thing_wait(id, o->template_name, cert.certificate_ownership_token,
                                           (const char *const *)keys, values, np, timeout_ms, &reg);
    if (rc != IOTC_OK) {
        exit_code = provision_failed("RegisterThing", &reg);
        if (rc == IOTC_ERR_REJECTED) {
            /* Refused: the certificate stays PENDING_ACTIVATION until AWS
             * deletes it with its token, so the files are of no use, and
             * left there they would stop the next attempt. */
            unlink(g_cert_path);
            if (cert.private_key)
                unlink(g_key_path);
        }
        goto out;
    }
    if (o->verbose)
        say("RegisterThing: thing %s", reg.thing_name);
    if (!print_summary(&cert, &reg)) {
        say("out of memory");
        exit_code = EXIT_OTHER;
    }
out:
    for (size_t i = 0; i < np; i++)
        free(keys[i]);
    iotc_identity_result_free(&cert);
    iotc_identity_result_free(&reg);
    iotc_identity_free(id);
    return exit_code;
}

/* ---- pub and sub --------------------------------------------------------------- */

static int run(const char *cmd, opts *o)
{
    bool pub = !strcmp(cmd, "pub");
    if (o->sim) {
        int rc = apply_sim(o);
        if (rc != EXIT_OK)
            return rc;
    }
    int rc = check(o, pub);
    if (rc != EXIT_OK)
        return rc;
    if (g_provision && (rc = provision_prepare(o)) != EXIT_OK)
        return rc;
    /* The seed's defaults, plus mosquitto's 1883 for plain MQTT: resolved
     * here so that every message can name the port. */
    if (!o->port)
        o->port = o->ws || o->signing || custom_auth(o) ? (o->no_tls ? (o->ws ? 80 : 1883) : 443)
                  : o->no_tls ? 1883 : 8883;
    if (!o->topic)
        o->topic = "test/topic";
    if (!o->message)
        o->message = "Hello World!";
    if (!o->count_set)
        o->count = pub ? 1 : 0;

    iotc_builder *b;
    if ((rc = build(o, &b)) != EXIT_OK)
        return rc;
    static state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    s.verbose = o->verbose;
    s.want = pub ? 0 : o->count;
    iotc_callbacks cb = {
        .on_connection_success = on_success,
        .on_connection_failure = on_failure,
        .on_interrupted = on_interrupted,
        .on_resumed = on_resumed,
        .on_closed = on_closed,
        .on_message = on_message,
    };
    iotc_client *c = NULL;
    int err = iotc_client_new(b, &cb, &s, &c);
    iotc_builder_free(b);
    if (err != IOTC_OK) {
        say("cannot create the client: %s: %s", iotc_strerror(err), iotc_client_new_why());
        return err == IOTC_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_OTHER;
    }
    uint32_t timeout_ms = (uint32_t)o->timeout * 1000u;
    long port = o->port;
    if (o->verbose)
        say("connecting to %s%s%s port %ld", o->endpoint, g_sim_address[0] ? " at " : "", g_sim_address, port);

    int exit_code = EXIT_OK;
    if ((err = iotc_client_connect(c)) != IOTC_OK) {
        say("iotc_client_connect: %s", iotc_strerror(err));
        iotc_client_free(c);
        return EXIT_OTHER;
    }
    int w = wait_for(&s, is_up_or_failed, o->timeout);
    if (w == 0 && s.failed) {
        const char *why = s.fail_why[0] ? s.fail_why : iotc_strerror(s.fail_err);
        switch (s.fail_err) {
        case IOTC_ERR_REFUSED:
            say("connection refused by the broker: CONNACK return code %u (%s)%s%s", s.fail_code,
                connack_text(s.fail_code), s.fail_why[0] ? ": " : "", s.fail_why);
            exit_code = EXIT_REFUSED;
            break;
        case IOTC_ERR_TLS:
            say("TLS failure with %s: %s", o->endpoint, why);
            exit_code = EXIT_TLS;
            break;
        case IOTC_ERR_TIMEOUT:
            say("timed out connecting to %s: %s", o->endpoint, why);
            exit_code = EXIT_TIMEOUT;
            break;
        default:
            say("cannot connect to %s port %ld: %s (%s)", o->endpoint, port, why, iotc_strerror(s.fail_err));
            exit_code = EXIT_CONNECT;
            break;
        }
        goto out;
    }
    if (w == 1) {
        say("timed out after %ld s connecting to %s", o->timeout, o->endpoint);
        exit_code = EXIT_TIMEOUT;
        goto out;
    }
    if (w == 2) {
        exit_code = pub || g_provision ? EXIT_OTHER : EXIT_OK;
        goto out;
    }

    if (g_shadow_op) {
        exit_code = shadow_run(c, o);
    } else if (g_provision) {
        exit_code = provision_run(c, o);
    } else if (pub) {
        for (long i = 0; i < o->count && !g_stop; i++) {
            err = iotc_publish_wait(c, o->topic, o->message, strlen(o->message), (uint8_t)o->qos, false, timeout_ms);
            if (err != IOTC_OK) {
                say("publish %ld of %ld to %s: %s", i + 1, o->count, o->topic, iotc_strerror(err));
                exit_code = err == IOTC_ERR_TIMEOUT ? EXIT_TIMEOUT : EXIT_OTHER;
                break;
            }
            if (o->verbose)
                say("published %ld of %ld to %s (QoS %ld)", i + 1, o->count, o->topic, o->qos);
        }
        if (g_stop && exit_code == EXIT_OK)
            exit_code = EXIT_OTHER;
    } else {
        uint8_t granted = 0;
        err = iotc_subscribe_wait(c, o->topic, (uint8_t)o->qos, on_message, &s, timeout_ms, &granted);
        if (err == IOTC_OK && granted == 0x80)
            err = IOTC_ERR_REFUSED;
        if (err != IOTC_OK) {
            say("subscribe to %s: %s%s", o->topic, iotc_strerror(err),
                err == IOTC_ERR_REFUSED ? " (SUBACK 0x80)" : "");
            exit_code = err == IOTC_ERR_TIMEOUT ? EXIT_TIMEOUT : EXIT_OTHER;
            goto out;
        }
        if (o->verbose)
            say("subscribed to %s (granted QoS %u)", o->topic, granted);
        wait_for(&s, got_enough, 0); /* until --count messages or a signal */
    }

out:
    /* Connected: a clean DISCONNECT, so that the broker publishes no Will.
     * Otherwise the failure callback has already stopped the client. */
    pthread_mutex_lock(&s.mu);
    bool up = s.connected;
    pthread_mutex_unlock(&s.mu);
    if (up && iotc_client_disconnect(c) == IOTC_OK && wait_for(&s, is_closed, o->timeout) != 0 &&
        o->verbose)
        say("disconnect did not finish in %ld s", o->timeout);
    iotc_client_free(c);
    return exit_code;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr, NULL);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout, NULL);
        return EXIT_OK;
    }
    int first = 2;
    if (!strcmp(cmd, "shadow")) {
        static const char *const OPS[] = {"get", "update", "delete", "delta"};
        for (size_t i = 0; argc > 2 && i < sizeof OPS / sizeof OPS[0]; i++)
            if (!strcmp(argv[2], OPS[i]))
                g_shadow_op = OPS[i];
        if (!g_shadow_op && !(argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")))) {
            say("iotc shadow: want get, update, delete or delta%s%s", argc > 2 ? ", not " : "",
                argc > 2 ? argv[2] : "");
            return EXIT_USAGE;
        }
        if (g_shadow_op)
            first = 3;
    } else if (!strcmp(cmd, "provision")) {
        g_provision = true;
    } else if (strcmp(cmd, "pub") && strcmp(cmd, "sub")) {
        say("unknown command \"%s\" (want pub, sub, shadow or provision)", cmd);
        usage(stderr, NULL);
        return EXIT_USAGE;
    }
    opts o = {.qos = 1, .keep_alive = -1, .clean_session = -1, .timeout = 10};
    int rc = parse(cmd, argc - first, argv + first, &o);
    if (rc != EXIT_OK)
        return rc;
    if (o.help) {
        usage(stdout, cmd);
        return EXIT_OK;
    }
    /* SA_RESETHAND: a second Ctrl-C kills at once if the clean stop hangs. */
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = (int)SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout or socket is an error, not a death */
    rc = run(cmd, &o);
    cJSON_Delete(g_sim);
    free(g_csr_pem);
    return rc;
}
