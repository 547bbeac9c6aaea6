/*
 * iotc-agent: libiotc driven by a script, one JSON command per line on
 * stdin, one JSON event per line on stdout.
 *
 * The scenario runner and the client validator (issue 5) drive the library
 * through this program, so its protocol is a contract: the field names and
 * event kinds below are what they parse.  Every event carries "t" (ms since
 * the agent started, monotonic, 3 decimals) and "ev".
 *
 *   {"cmd":"connect","endpoint":..,options}   -> connecting | error
 *   {"cmd":"publish","id":..,"topic":..,"payload":..,"qos":..,"retain":..,
 *    "count":K,"interval_ms":N}               -> accepted|refused, later done
 *   {"cmd":"subscribe","id":..,"filter":..,"qos":..}  -> accepted|refused, done
 *   {"cmd":"unsubscribe","id":..,"filter":..}         -> accepted|refused, done
 *   {"cmd":"disconnect"}                      -> later closed
 *   {"cmd":"stats","id":..}                   -> stats
 *   {"cmd":"sleep","ms":N}                    -> nothing (the reader pauses)
 *   {"cmd":"quit"} or EOF                     -> pending done events, bye
 *
 * Callback events: connection_success, connection_failure, interrupted,
 * resumed, closed, message.  Statuses come with a stable "status_name"
 * (the enum's identifier) so that scripts never compare magic numbers.
 *
 * Ordering: an operation's "accepted" always precedes its "done", and
 * "connecting" precedes the connection events, although the library may
 * complete a QoS 0 publish or fail a connect on its service thread before
 * the call returns here.  Rather than hold the output lock across a library
 * call (the library runs callbacks under its own lock, so that would be a
 * lock-order inversion), events from callbacks are parked while the reader
 * is inside a call and written right after the call's own event.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iotc/client.h"
#include "iotc/mqtt.h"

/* ---- output ------------------------------------------------------------------ */

static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;
static struct timespec g_t0;
/* While true (set by the reader around a library call), events from
 * callbacks wait in g_parked instead of being written. */
static bool g_hold;
static cJSON *g_parked;
static unsigned long g_line; /* the input line being executed, for errors */

static double elapsed_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - g_t0.tv_sec) * 1e3 + (double)(now.tv_nsec - g_t0.tv_nsec) / 1e6;
}

/* Writes one event; g_out held.  "t" is taken here, under the lock, so that
 * the times in the output never go backwards.  Takes ownership of `ev`. */
static void write_locked(cJSON *ev)
{
    char *s = cJSON_PrintUnformatted(ev);
    double t = elapsed_ms();
    /* The object always has "ev", so s is "{...}" and s+1 its members:
     * printing "t" first by hand keeps the 3 decimals cJSON would not. */
    if (s)
        printf("{\"t\":%.3f,%s\n", t, s + 1);
    else
        printf("{\"t\":%.3f,\"ev\":\"error\",\"reason\":\"out of memory printing an event\"}\n", t);
    fflush(stdout);
    cJSON_free(s);
    cJSON_Delete(ev);
}

/* A new event object with "ev" first. */
static cJSON *event(const char *ev)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        fputs("iotc-agent: out of memory\n", stderr);
        exit(1);
    }
    cJSON_AddStringToObject(o, "ev", ev);
    return o;
}

/* Writes an event now, or parks it while the reader is inside a call. */
static void emit(cJSON *ev)
{
    pthread_mutex_lock(&g_out);
    if (g_hold)
        cJSON_AddItemToArray(g_parked, ev);
    else
        write_locked(ev);
    pthread_mutex_unlock(&g_out);
}

static void hold(void)
{
    pthread_mutex_lock(&g_out);
    g_hold = true;
    pthread_mutex_unlock(&g_out);
}

/* Writes the call's own event (may be NULL), then what was parked meanwhile. */
static void release(cJSON *own)
{
    pthread_mutex_lock(&g_out);
    if (own)
        write_locked(own);
    cJSON *p;
    while ((p = cJSON_DetachItemFromArray(g_parked, 0)) != NULL)
        write_locked(p);
    g_hold = false;
    pthread_mutex_unlock(&g_out);
}

/* ---- statuses ------------------------------------------------------------------ */


static void add_status(cJSON *o, int st)
{
    cJSON_AddNumberToObject(o, "status", st);
    cJSON_AddStringToObject(o, "status_name", iotc_err_name(st));
}

/* ---- text or base64 ---------------------------------------------------------------- */

/* Adds `name` (text) or `name`_b64 (anything else) to `o`. */
static void add_bytes(cJSON *o, const char *name, const void *p, size_t n)
{
    /* Text when it is strict UTF-8 without NUL (the codec's MQTT rule): a
     * JSON string read back by a C program must round-trip. */
    if (iotc_mqtt_utf8_valid(p, n, NULL)) {
        char *s = malloc(n + 1);
        if (!s)
            return;
        memcpy(s, p, n);
        s[n] = 0;
        cJSON_AddStringToObject(o, name, s);
        free(s);
        return;
    }
    char key[64];
    snprintf(key, sizeof key, "%s_b64", name);
    size_t cap = 4 * ((n + 2) / 3) + 1;
    unsigned char *b = malloc(cap);
    if (!b)
        return;
    /* EVP_EncodeBlock takes an int; payloads are at most 256 KiB (the
     * library's packet limit), far below. */
    EVP_EncodeBlock(b, p, (int)n);
    cJSON_AddStringToObject(o, key, (const char *)b);
    free(b);
}

/* ---- the client and its callbacks --------------------------------------------------- */

static iotc_client *g_client;
/* True from a successful connect until on_closed: a second connect then is
 * an error, not a silent reconnect with the old options. */
static atomic_bool g_running;

/* One operation in flight: its id, for the done event. */
typedef struct {
    int kind; /* 'p', 's', 'u' */
    char id[];
} op;

static op *op_new(int kind, const char *id)
{
    size_t n = strlen(id);
    op *o = malloc(sizeof *o + n + 1);
    if (!o) {
        fputs("iotc-agent: out of memory\n", stderr);
        exit(1);
    }
    o->kind = kind;
    memcpy(o->id, id, n + 1);
    return o;
}

static void on_done(int status, uint8_t granted, void *user)
{
    op *o = user;
    cJSON *ev = event("done");
    cJSON_AddStringToObject(ev, "id", o->id);
    add_status(ev, status);
    cJSON_AddNumberToObject(ev, "granted", granted);
    free(o);
    emit(ev);
}

static void on_success(iotc_client *c, bool session_present, void *user)
{
    (void)c, (void)user;
    cJSON *ev = event("connection_success");
    cJSON_AddBoolToObject(ev, "session_present", session_present);
    emit(ev);
}

static void on_failure(iotc_client *c, int err, uint8_t return_code, const char *reason, void *user)
{
    (void)c, (void)user;
    cJSON *ev = event("connection_failure");
    add_status(ev, err);
    cJSON_AddNumberToObject(ev, "return_code", return_code);
    cJSON_AddStringToObject(ev, "reason", reason ? reason : "");
    emit(ev);
}

static void on_interrupted(iotc_client *c, int err, const char *reason, void *user)
{
    (void)c, (void)user;
    cJSON *ev = event("interrupted");
    add_status(ev, err);
    cJSON_AddStringToObject(ev, "reason", reason ? reason : "");
    emit(ev);
}

static void on_resumed(iotc_client *c, uint8_t return_code, bool session_present, void *user)
{
    (void)c, (void)user;
    cJSON *ev = event("resumed");
    cJSON_AddNumberToObject(ev, "return_code", return_code);
    cJSON_AddBoolToObject(ev, "session_present", session_present);
    emit(ev);
}

static void on_closed(iotc_client *c, void *user)
{
    (void)c, (void)user;
    atomic_store(&g_running, false);
    emit(event("closed"));
}

static void on_message(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                       uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c, (void)user;
    cJSON *ev = event("message");
    add_bytes(ev, "topic", topic, topic_len);
    add_bytes(ev, "payload", payload, len);
    cJSON_AddNumberToObject(ev, "qos", qos);
    cJSON_AddBoolToObject(ev, "retain", retain);
    cJSON_AddBoolToObject(ev, "dup", dup);
    emit(ev);
}

static const iotc_callbacks g_cbs = {
    .on_connection_success = on_success,
    .on_connection_failure = on_failure,
    .on_interrupted = on_interrupted,
    .on_resumed = on_resumed,
    .on_closed = on_closed,
    .on_message = on_message,
};

/* ---- command arguments ---------------------------------------------------------------- */

/* An error event for the current line; `cmd` may be NULL. */
static void cmd_error(const char *cmd, const cJSON *id, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cmd_error(const char *cmd, const cJSON *id, int status, const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "line %lu: ", g_line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    cJSON *ev = event("error");
    if (cmd)
        cJSON_AddStringToObject(ev, "cmd", cmd);
    if (cJSON_IsString(id))
        cJSON_AddStringToObject(ev, "id", id->valuestring);
    if (status)
        add_status(ev, status);
    cJSON_AddStringToObject(ev, "reason", buf);
    cJSON_AddNumberToObject(ev, "line", (double)g_line);
    emit(ev);
}

/* A misspelt option must not be ignored silently: a scenario would then
 * test the defaults and pass for the wrong reason. */
static bool known_keys(const cJSON *cmd, const char *const *keys, char *bad, size_t badlen)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cmd)
    {
        bool ok = !strcmp(it->string, "cmd");
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = !strcmp(it->string, keys[i]);
        if (!ok) {
            snprintf(bad, badlen, "%s", it->string);
            return false;
        }
    }
    return true;
}

/* Field getters: false (with `why` set) when present with the wrong type
 * or out of range; absent leaves *out untouched and *set false. */
typedef struct {
    char why[256];
} argerr;

static bool get_str(const cJSON *o, const char *k, const char **out, argerr *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsString(v)) {
        snprintf(e->why, sizeof e->why, "\"%s\": want a string", k);
        return false;
    }
    *out = v->valuestring;
    return true;
}

static bool get_bool(const cJSON *o, const char *k, int *out, argerr *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsBool(v)) {
        snprintf(e->why, sizeof e->why, "\"%s\": want true or false", k);
        return false;
    }
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return true;
}

static bool get_int(const cJSON *o, const char *k, double lo, double hi, double *out, bool *set, argerr *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (set)
        *set = false;
    if (!v || cJSON_IsNull(v))
        return true;
    /* The range first: casting an out-of-range double is undefined. */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(long long)v->valuedouble) {
        snprintf(e->why, sizeof e->why, "\"%s\": want an integer %.0f..%.0f", k, lo, hi);
        return false;
    }
    *out = v->valuedouble;
    if (set)
        *set = true;
    return true;
}

static bool get_num(const cJSON *o, const char *k, double lo, double hi, double *out, bool *set, argerr *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    *set = false;
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) {
        snprintf(e->why, sizeof e->why, "\"%s\": want a number %g..%g", k, lo, hi);
        return false;
    }
    *out = v->valuedouble;
    *set = true;
    return true;
}

/* ---- connect ----------------------------------------------------------------------------- */

static int no_change(iotc_ws_request *req, void *user)
{
    (void)req, (void)user;
    return IOTC_OK;
}

static const char *const connect_keys[] = {
    "endpoint", "address", "port", "tls", "ws", "ca_file", "cert", "key", "alpn", "client_id", "clean_session",
    "keep_alive", "ping_timeout_ms", "op_timeout_ms", "connect_timeout_ms", "reconnect_min_ms",
    "reconnect_max_ms", "stable_ms", "jitter", "queue", "drop", "drain_hz", "resubscribe", "metrics", "username",
    "password", "will", NULL};

/* Builds the builder from the command; NULL with `why` and *status set. */
static iotc_builder *build(const cJSON *cmd, argerr *e, int *status)
{
    const char *endpoint = NULL, *address = NULL, *ca = NULL, *cert = NULL, *key = NULL, *alpn = NULL;
    const char *client_id = NULL, *jitter = NULL, *drop = NULL, *username = NULL, *password = NULL;
    int tls = 1, ws = 0, clean = -1, resub = -1, metrics = -1;
    double port = 0, ka = 0, ping = 0, opto = 0, cto = 0, rmin = 1000, rmax = 128000, stable = 0, queue = 20,
           hz = 0;
    bool port_set, ka_set, ping_set, opto_set, cto_set, rmin_set, rmax_set, stable_set, queue_set, hz_set;
    *status = IOTC_ERR_INVALID_ARG;
    char bad[128];
    if (!known_keys(cmd, connect_keys, bad, sizeof bad)) {
        snprintf(e->why, sizeof e->why, "unknown option \"%s\"", bad);
        return NULL;
    }
    if (!get_str(cmd, "endpoint", &endpoint, e) || !get_str(cmd, "address", &address, e) ||
        !get_str(cmd, "ca_file", &ca, e) || !get_str(cmd, "cert", &cert, e) || !get_str(cmd, "key", &key, e) ||
        !get_str(cmd, "alpn", &alpn, e) || !get_str(cmd, "client_id", &client_id, e) ||
        !get_str(cmd, "jitter", &jitter, e) || !get_str(cmd, "drop", &drop, e) ||
        !get_str(cmd, "username", &username, e) || !get_str(cmd, "password", &password, e) ||
        !get_bool(cmd, "tls", &tls, e) || !get_bool(cmd, "ws", &ws, e) ||
        !get_bool(cmd, "clean_session", &clean, e) || !get_bool(cmd, "resubscribe", &resub, e) ||
        !get_bool(cmd, "metrics", &metrics, e) || !get_int(cmd, "port", 1, 65535, &port, &port_set, e) ||
        !get_int(cmd, "keep_alive", 0, 65535, &ka, &ka_set, e) ||
        !get_int(cmd, "ping_timeout_ms", 0, UINT32_MAX, &ping, &ping_set, e) ||
        !get_int(cmd, "op_timeout_ms", 0, UINT32_MAX, &opto, &opto_set, e) ||
        !get_int(cmd, "connect_timeout_ms", 0, UINT32_MAX, &cto, &cto_set, e) ||
        !get_int(cmd, "reconnect_min_ms", 0, 1e15, &rmin, &rmin_set, e) ||
        !get_int(cmd, "reconnect_max_ms", 0, 1e15, &rmax, &rmax_set, e) ||
        !get_int(cmd, "stable_ms", 0, 1e15, &stable, &stable_set, e) ||
        !get_int(cmd, "queue", -1, 1e15, &queue, &queue_set, e) ||
        !get_num(cmd, "drain_hz", 0, 1e9, &hz, &hz_set, e))
        return NULL;
    if (!endpoint || !endpoint[0]) {
        snprintf(e->why, sizeof e->why, "\"endpoint\" is required");
        return NULL;
    }
    if ((cert != NULL) != (key != NULL)) {
        snprintf(e->why, sizeof e->why, "\"%s\" needs \"%s\" too", cert ? "cert" : "key", cert ? "key" : "cert");
        return NULL;
    }
    if (ws && cert) {
        snprintf(e->why, sizeof e->why, "\"ws\" with \"cert\": libiotc has no mTLS-over-WebSocket builder");
        return NULL;
    }
    iotc_jitter jit = IOTC_JITTER_NONE;
    if (jitter) {
        if (!strcmp(jitter, "none"))
            jit = IOTC_JITTER_NONE;
        else if (!strcmp(jitter, "full"))
            jit = IOTC_JITTER_FULL;
        else if (!strcmp(jitter, "decorrelated"))
            jit = IOTC_JITTER_DECORRELATED;
        else {
            snprintf(e->why, sizeof e->why, "\"jitter\": want \"none\", \"full\" or \"decorrelated\"");
            return NULL;
        }
    }
    /* The library's default drops the newest (the v1 SDKs' behaviour). */
    iotc_drop_policy dp = IOTC_DROP_NEWEST;
    if (drop) {
        if (!strcmp(drop, "oldest"))
            dp = IOTC_DROP_OLDEST;
        else if (!strcmp(drop, "newest"))
            dp = IOTC_DROP_NEWEST;
        else {
            snprintf(e->why, sizeof e->why, "\"drop\": want \"oldest\" or \"newest\"");
            return NULL;
        }
    }
    const cJSON *will = cJSON_GetObjectItemCaseSensitive(cmd, "will");
    const char *will_topic = NULL, *will_payload = "";
    int will_retain = 0;
    double will_qos = 0;
    if (will && !cJSON_IsNull(will)) {
        static const char *const will_keys[] = {"topic", "payload", "qos", "retain", NULL};
        if (!cJSON_IsObject(will)) {
            snprintf(e->why, sizeof e->why, "\"will\": want an object");
            return NULL;
        }
        if (!known_keys(will, will_keys, bad, sizeof bad)) {
            snprintf(e->why, sizeof e->why, "\"will\": unknown field \"%s\"", bad);
            return NULL;
        }
        if (!get_str(will, "topic", &will_topic, e) || !get_str(will, "payload", &will_payload, e) ||
            !get_int(will, "qos", 0, 255, &will_qos, NULL, e) || !get_bool(will, "retain", &will_retain, e))
            return NULL;
        if (!will_topic) {
            snprintf(e->why, sizeof e->why, "\"will\": \"topic\" is required");
            return NULL;
        }
    }

    iotc_builder *b = NULL;
    const char *what;
    int rc;
    if (cert) {
        what = "iotc_mtls_from_path";
        rc = iotc_mtls_from_path(&b, endpoint, cert, key);
    } else if (ws) {
        what = "iotc_websockets_with_custom_handshake";
        rc = iotc_websockets_with_custom_handshake(&b, endpoint, no_change, NULL);
    } else {
        what = "iotc_new_default_builder";
        rc = iotc_new_default_builder(&b, endpoint);
    }
    if (rc != IOTC_OK) {
        *status = rc;
        snprintf(e->why, sizeof e->why, "%s: %s", what, b ? iotc_builder_why(b) : iotc_strerror(rc));
        iotc_builder_free(b);
        return NULL;
    }
    /* mosquitto's ports for plain MQTT, as the iotc CLI does; TLS keeps the
     * constructor's (8883, or 443). */
    if (!port_set && !tls) {
        port = ws ? 80 : 1883;
        port_set = true;
    }
    /* A local plain broker is not AWS IoT: "?SDK=..." in the username would
     * break its password check, so metrics follow TLS unless asked. */
    if (metrics < 0 && !tls)
        metrics = 0;
    if (rmin_set && !rmax_set && rmax < rmin)
        rmax = rmin;
    if (rmax_set && !rmin_set && rmin > rmax)
        rmin = rmax;

#define SET(call, name)                                                                                            \
    do {                                                                                                           \
        if ((rc = (call)) != IOTC_OK) {                                                                            \
            *status = rc;                                                                                          \
            snprintf(e->why, sizeof e->why, "\"%s\": %s", name, iotc_builder_why(b));                              \
            iotc_builder_free(b);                                                                                  \
            return NULL;                                                                                           \
        }                                                                                                          \
    } while (0)
    if (port_set)
        SET(iotc_builder_set_port(b, (uint16_t)port), "port");
    if (address)
        SET(iotc_builder_set_address(b, address), "address");
    if (!tls)
        SET(iotc_builder_set_tls(b, false), "tls");
    if (metrics >= 0)
        SET(iotc_builder_set_metrics(b, metrics == 1), "metrics");
    if (ca)
        SET(iotc_builder_set_ca_file(b, ca), "ca_file");
    if (alpn)
        SET(iotc_builder_set_alpn(b, alpn), "alpn");
    if (client_id)
        SET(iotc_builder_set_client_id(b, client_id), "client_id");
    if (clean >= 0)
        SET(iotc_builder_set_clean_session(b, clean == 1), "clean_session");
    if (ka_set)
        SET(iotc_builder_set_keep_alive_secs(b, (uint16_t)ka), "keep_alive");
    if (ping_set)
        SET(iotc_builder_set_ping_timeout_ms(b, (uint32_t)ping), "ping_timeout_ms");
    if (opto_set)
        SET(iotc_builder_set_protocol_operation_timeout_ms(b, (uint32_t)opto), "op_timeout_ms");
    if (cto_set)
        SET(iotc_builder_set_tcp_connect_timeout_ms(b, (uint32_t)cto), "connect_timeout_ms");
    if (rmin_set || rmax_set)
        SET(iotc_builder_set_reconnect(b, (uint64_t)rmin, (uint64_t)rmax), "reconnect_min_ms");
    if (stable_set)
        SET(iotc_builder_set_stable_time_ms(b, (uint64_t)stable), "stable_ms");
    if (jitter)
        SET(iotc_builder_set_jitter(b, jit), "jitter");
    if (queue_set || drop)
        SET(iotc_builder_set_offline_queue(b, (int64_t)queue, dp), "queue");
    if (hz_set)
        SET(iotc_builder_set_drain_hz(b, hz), "drain_hz");
    if (resub >= 0)
        SET(iotc_builder_set_resubscribe(b, resub == 1), "resubscribe");
    if (username)
        SET(iotc_builder_set_username(b, username), "username");
    if (password)
        SET(iotc_builder_set_password(b, password, strlen(password)), "password");
    if (will_topic)
        SET(iotc_builder_set_will(b, will_topic, will_payload, strlen(will_payload), (uint8_t)will_qos,
                                  will_retain == 1),
            "will");
#undef SET
    return b;
}

static void cmd_connect(const cJSON *cmd)
{
    if (g_client && atomic_load(&g_running)) {
        cmd_error("connect", NULL, IOTC_ERR_BUSY, "a client is already connected or connecting; disconnect first");
        return;
    }
    /* Simplest faithful semantics: a connect after "closed" starts a new
     * client with exactly the options given now. */
    iotc_client_free(g_client);
    g_client = NULL;

    argerr e = {{0}};
    int status;
    iotc_builder *b = build(cmd, &e, &status);
    if (!b) {
        cmd_error("connect", NULL, status, "%s", e.why);
        return;
    }
    int rc = iotc_client_new(b, &g_cbs, NULL, &g_client);
    iotc_builder_free(b);
    if (rc != IOTC_OK) {
        cmd_error("connect", NULL, rc, "iotc_client_new: %s", iotc_client_new_why());
        g_client = NULL;
        return;
    }
    atomic_store(&g_running, true);
    hold();
    rc = iotc_client_connect(g_client);
    if (rc != IOTC_OK) {
        atomic_store(&g_running, false);
        release(NULL);
        cmd_error("connect", NULL, rc, "iotc_client_connect: %s", iotc_strerror(rc));
        return;
    }
    release(event("connecting"));
}

/* ---- operations ---------------------------------------------------------------------------- */

/* The id of a command: "id", or "L<line>" so that a script that does not
 * care still gets matching accepted/done pairs. */
static const char *cmd_id(const cJSON *cmd, char *buf, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, "id");
    if (cJSON_IsString(v))
        return v->valuestring;
    snprintf(buf, len, "L%lu", g_line);
    return buf;
}

/* The event for the call's return: accepted, or refused with the status. */
static cJSON *answer(const char *id, int rc)
{
    cJSON *ev = event(rc == IOTC_OK ? "accepted" : "refused");
    cJSON_AddStringToObject(ev, "id", id);
    if (rc != IOTC_OK)
        add_status(ev, rc);
    return ev;
}

/* `payload` with every "{i}" replaced by `i`; caller frees. */
static char *expand(const char *payload, long i, size_t *len)
{
    char num[24];
    int nl = snprintf(num, sizeof num, "%ld", i);
    size_t n = 0;
    for (const char *p = payload; (p = strstr(p, "{i}")) != NULL; p += 3)
        n++;
    size_t cap = strlen(payload) + n * (size_t)nl + 1;
    char *out = malloc(cap), *w = out;
    if (!out)
        return NULL;
    for (const char *p = payload;;) {
        const char *q = strstr(p, "{i}");
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(w, p, k);
        w += k;
        if (!q)
            break;
        memcpy(w, num, (size_t)nl);
        w += nl;
        p = q + 3;
    }
    *w = 0;
    *len = (size_t)(w - out);
    return out;
}

static void sleep_ms(double ms)
{
    long long n = (long long)ms; /* an integer from get_int; no libm */
    struct timespec ts = {(time_t)(n / 1000), (long)(n % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void cmd_publish(const cJSON *cmd)
{
    static const char *const keys[] = {"id", "topic", "payload", "qos", "retain", "count", "interval_ms", NULL};
    char idbuf[32], bad[128];
    const char *id = cmd_id(cmd, idbuf, sizeof idbuf);
    const cJSON *idv = cJSON_GetObjectItemCaseSensitive(cmd, "id");
    argerr e = {{0}};
    const char *topic = NULL, *payload = "";
    double qos = 0, count = 1, interval = 0;
    bool count_set;
    int retain = 0;
    if (!known_keys(cmd, keys, bad, sizeof bad)) {
        cmd_error("publish", idv, 0, "unknown field \"%s\"", bad);
        return;
    }
    /* QoS up to 255 goes to the library, which refuses 2 at the call: a
     * validator script checks exactly that. */
    if (!get_str(cmd, "topic", &topic, &e) || !get_str(cmd, "payload", &payload, &e) ||
        !get_int(cmd, "qos", 0, 255, &qos, NULL, &e) || !get_bool(cmd, "retain", &retain, &e) ||
        !get_int(cmd, "count", 1, 1e9, &count, &count_set, &e) ||
        !get_int(cmd, "interval_ms", 0, 1e9, &interval, NULL, &e)) {
        cmd_error("publish", idv, 0, "%s", e.why);
        return;
    }
    if (!topic) {
        cmd_error("publish", idv, 0, "\"topic\" is required");
        return;
    }
    for (long i = 1; i <= (long)count; i++) {
        char sub[512];
        const char *oid = id;
        char *body = NULL;
        size_t len = strlen(payload);
        if (count_set) {
            snprintf(sub, sizeof sub, "%s#%ld", id, i);
            oid = sub;
            body = expand(payload, i, &len);
        }
        if (!g_client) {
            release(answer(oid, IOTC_ERR_CLOSED));
        } else {
            op *o = op_new('p', oid);
            hold();
            int rc = iotc_publish(g_client, topic, body ? body : payload, len, (uint8_t)qos, retain == 1, on_done, o);
            if (rc != IOTC_OK)
                free(o); /* a refused call never completes */
            release(answer(oid, rc));
        }
        free(body);
        if (i < (long)count && interval > 0)
            sleep_ms(interval);
    }
}

static void cmd_subscribe(const cJSON *cmd, bool sub)
{
    static const char *const skeys[] = {"id", "filter", "qos", NULL};
    static const char *const ukeys[] = {"id", "filter", NULL};
    const char *name = sub ? "subscribe" : "unsubscribe";
    char idbuf[32], bad[128];
    const char *id = cmd_id(cmd, idbuf, sizeof idbuf);
    const cJSON *idv = cJSON_GetObjectItemCaseSensitive(cmd, "id");
    argerr e = {{0}};
    const char *filter = NULL;
    double qos = 0;
    if (!known_keys(cmd, sub ? skeys : ukeys, bad, sizeof bad)) {
        cmd_error(name, idv, 0, "unknown field \"%s\"", bad);
        return;
    }
    if (!get_str(cmd, "filter", &filter, &e) || !get_int(cmd, "qos", 0, 255, &qos, NULL, &e)) {
        cmd_error(name, idv, 0, "%s", e.why);
        return;
    }
    if (!filter) {
        cmd_error(name, idv, 0, "\"filter\" is required");
        return;
    }
    if (!g_client) {
        release(answer(id, IOTC_ERR_CLOSED));
        return;
    }
    op *o = op_new(sub ? 's' : 'u', id);
    hold();
    int rc = sub ? iotc_subscribe(g_client, filter, (uint8_t)qos, NULL, NULL, on_done, o)
                 : iotc_unsubscribe(g_client, filter, on_done, o);
    if (rc != IOTC_OK)
        free(o);
    release(answer(id, rc));
}

static void cmd_stats(const cJSON *cmd)
{
    char idbuf[32];
    const char *id = cmd_id(cmd, idbuf, sizeof idbuf);
    iotc_client_stats st = {0};
    int rc = g_client ? iotc_client_get_stats(g_client, &st) : IOTC_OK;
    if (rc != IOTC_OK) {
        cmd_error("stats", cJSON_GetObjectItemCaseSensitive(cmd, "id"), rc, "iotc_client_get_stats: %s",
                  iotc_strerror(rc));
        return;
    }
    /* No client yet (or any more): all zero, which is the truth. */
    cJSON *ev = event("stats");
    cJSON_AddStringToObject(ev, "id", id);
    cJSON_AddBoolToObject(ev, "connected", st.connected);
    cJSON_AddNumberToObject(ev, "queued", (double)st.queued);
    cJSON_AddNumberToObject(ev, "inflight", (double)st.inflight);
    cJSON_AddNumberToObject(ev, "dropped", (double)st.dropped);
    cJSON_AddNumberToObject(ev, "drained", (double)st.drained);
    cJSON_AddNumberToObject(ev, "attempts", st.attempts);
    cJSON_AddNumberToObject(ev, "messages", (double)st.messages);
    emit(ev);
}

static void cmd_disconnect(void)
{
    if (!g_client) {
        cmd_error("disconnect", NULL, IOTC_ERR_NOT_CONNECTED, "no client");
        return;
    }
    int rc = iotc_client_disconnect(g_client);
    if (rc != IOTC_OK)
        cmd_error("disconnect", NULL, rc, "iotc_client_disconnect: %s", iotc_strerror(rc));
}

/* Frees the client (its pending operations report done with CLOSED, on this
 * thread), says bye and exits. */
_Noreturn static void quit(void)
{
    iotc_client_free(g_client);
    g_client = NULL;
    emit(event("bye"));
    cJSON_Delete(g_parked);
    exit(0);
}

/* ---- main loop ------------------------------------------------------------------------------- */

static void run_line(char *line)
{
    const char *end = NULL;
    cJSON *cmd = cJSON_ParseWithOpts(line, &end, true);
    if (!cmd) {
        long col = end ? (long)(end - line) + 1 : 1;
        cmd_error(NULL, NULL, 0, "invalid JSON at column %ld", col);
        return;
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cmd, "cmd");
    if (!cJSON_IsObject(cmd)) {
        cmd_error(NULL, NULL, 0, "want a JSON object");
    } else if (!cJSON_IsString(c)) {
        cmd_error(NULL, NULL, 0, "no \"cmd\" string");
    } else if (!strcmp(c->valuestring, "connect")) {
        cmd_connect(cmd);
    } else if (!strcmp(c->valuestring, "publish")) {
        cmd_publish(cmd);
    } else if (!strcmp(c->valuestring, "subscribe")) {
        cmd_subscribe(cmd, true);
    } else if (!strcmp(c->valuestring, "unsubscribe")) {
        cmd_subscribe(cmd, false);
    } else if (!strcmp(c->valuestring, "disconnect")) {
        cmd_disconnect();
    } else if (!strcmp(c->valuestring, "stats")) {
        cmd_stats(cmd);
    } else if (!strcmp(c->valuestring, "sleep")) {
        argerr e = {{0}};
        double ms = 0;
        if (get_int(cmd, "ms", 0, 1e9, &ms, NULL, &e))
            sleep_ms(ms);
        else
            cmd_error("sleep", NULL, 0, "%s", e.why);
    } else if (!strcmp(c->valuestring, "quit")) {
        cJSON_Delete(cmd);
        quit();
    } else {
        cmd_error(NULL, NULL, 0, "unknown cmd \"%s\"", c->valuestring);
    }
    cJSON_Delete(cmd);
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fputs("usage: iotc-agent  (JSON commands on stdin, JSON events on stdout; see client/tools/agent.c)\n",
              stderr);
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &g_t0);
    /* A runner that stops reading must not kill us mid-free with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    g_parked = cJSON_CreateArray();
    if (!g_parked)
        return 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        g_line++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        size_t sp = strspn(line, " \t");
        if (line[sp] == 0)
            continue; /* blank lines separate steps in a script */
        run_line(line);
    }
    free(line);
    quit();
}
