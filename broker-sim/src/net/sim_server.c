/*
 * sim_server.c: see sim_server.h.  Every lws type and callback of iotsim
 * lives in this file.
 */
#include "sim_server.h"

#include "sim_provision.h"

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sim_map.h"
#include "sim_pki.h"
#include "sim_policy.h"

enum { L_MTLS, L_ALPN, L_TCP, L_CONTROL, L_COUNT };
static const char *const LISTENER_NAME[L_COUNT] = {"mtls", "alpn", "tcp", "control"};

/* Output a client does not read is bounded: past this the connection closes. */
#define MAX_OUT_BACKLOG (8u * 1024u * 1024u)
/* Input held back by the throughput limit, likewise. */
#define MAX_IN_BACKLOG (1024u * 1024u)
#define MAX_CONTROL_BODY (64u * 1024u)
#define WRITE_CHUNK 16384u

typedef struct conn_pss {
    struct sim_server *srv;
    struct lws *wsi;
    sim_conn_id id;
    int listener;
    bool opened;        /* the engine knows it */
    bool engine_closed; /* the engine asked for the close: do not report it lost */
    bool closing;
    bool refused;       /* identify() refused it and said why */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint8_t *in;        /* held back by the throughput limit */
    size_t in_len;
    struct conn_pss *next_stalled;
} conn_pss;

typedef struct {
    char path[320]; /* /shadows/{thing: 128}/{shadow: 64} fits */
    bool path_too_long;
    bool post;
    char *body;
    size_t body_len;
    char *reply;
    unsigned status;
} http_pss;

struct sim_server {
    sim_config cfg;
    sim_server_opts o;
    struct lws_context *ctx;
    struct lws_vhost *vh[L_COUNT];
    int port[L_COUNT];
    sim_engine *engine;
    sim_map by_id; /* sim_conn_id -> conn_pss */
    conn_pss *stalled;
    lws_sorted_usec_list_t sul;
    struct timespec mono0;
    uint64_t offset_ms;
    uint64_t armed_at; /* virtual time the timer is set for; UINT64_MAX: none */
    volatile sig_atomic_t stop;
    uint64_t rng;
    bool ready_called;
};

/* ---- clocks and randomness ---------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

uint64_t sim_server_now(const sim_server *s)
{
    uint64_t real = mono_ms() - ((uint64_t)s->mono0.tv_sec * 1000u + (uint64_t)s->mono0.tv_nsec / 1000000u);
    return (uint64_t)((double)real * s->o.time_scale) + s->offset_ms;
}

static uint64_t io_wall_ms(void *ctx)
{
    (void)ctx;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void io_shadows_changed(void *ctx)
{
    sim_server *s = ctx;
    s->o.shadows_changed(s->o.ctx);
}

static uint64_t io_random(void *ctx)
{
    sim_server *s = ctx;
    /* xorshift64*: UUIDs and fault dice need no cryptographic strength. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ull;
}

/* ---- event log ------------------------------------------------------------ */

static void io_log(void *ctx, const char *json)
{
    sim_server *s = ctx;
    if (s->o.log) {
        fputs(json, s->o.log);
        fputc('\n', s->o.log);
        fflush(s->o.log);
    }
}

/* A decision taken here, before the engine knows the connection. */
static void edge_log(sim_server *s, int listener, const char *what, const char *detail)
{
    if (!s->o.log)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddNumberToObject(o, "t", (double)sim_server_now(s));
    cJSON_AddNumberToObject(o, "wall", (double)io_wall_ms(s));
    cJSON_AddStringToObject(o, "kind", "decision");
    cJSON_AddStringToObject(o, "what", what);
    cJSON_AddStringToObject(o, "listener", LISTENER_NAME[listener]);
    if (detail)
        cJSON_AddStringToObject(o, "detail", detail);
    char *txt = cJSON_PrintUnformatted(o);
    if (txt)
        io_log(s, txt);
    free(txt);
    cJSON_Delete(o);
}

/* ---- engine callbacks ----------------------------------------------------- */

static void kill_async(struct lws *wsi)
{
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void io_send(void *ctx, sim_conn_id id, const uint8_t *data, size_t len)
{
    sim_server *s = ctx;
    conn_pss *p = sim_map_get(&s->by_id, &id, sizeof id);
    if (!p || p->closing)
        return;
    size_t live = p->out_len - p->out_off;
    if (live + len > MAX_OUT_BACKLOG) {
        edge_log(s, p->listener, "close", "client does not read: output backlog over the limit");
        p->closing = true;
        kill_async(p->wsi);
        return;
    }
    if (p->out_off && p->out_off == p->out_len)
        p->out_off = p->out_len = 0;
    if (p->out_len + len > p->out_cap) {
        if (p->out_off) { /* compact before growing */
            memmove(p->out, p->out + p->out_off, live);
            p->out_len = live;
            p->out_off = 0;
        }
        if (p->out_len + len > p->out_cap) {
            size_t ncap = p->out_cap ? p->out_cap * 2 : 4096;
            while (ncap < p->out_len + len)
                ncap *= 2;
            uint8_t *nb = realloc(p->out, ncap);
            if (!nb) {
                p->closing = true;
                kill_async(p->wsi);
                return;
            }
            p->out = nb;
            p->out_cap = ncap;
        }
    }
    memcpy(p->out + p->out_len, data, len);
    p->out_len += len;
    lws_callback_on_writable(p->wsi);
}

static void io_close(void *ctx, sim_conn_id id)
{
    sim_server *s = ctx;
    conn_pss *p = sim_map_del(&s->by_id, &id, sizeof id);
    if (!p)
        return;
    p->engine_closed = true;
    p->closing = true;
    if (p->out_len == p->out_off)
        kill_async(p->wsi);
    else
        lws_callback_on_writable(p->wsi); /* closes once the backlog is written */
}

/* ---- timers --------------------------------------------------------------- */

static void sul_cb(lws_sorted_usec_list_t *sul);

static void unstall(sim_server *s)
{
    conn_pss **pp = &s->stalled;
    while (*pp) {
        conn_pss *p = *pp;
        size_t n = p->closing ? p->in_len : sim_engine_input(s->engine, p->id, p->in, p->in_len, sim_server_now(s));
        if (n < p->in_len) {
            memmove(p->in, p->in + n, p->in_len - n);
            p->in_len -= n;
            pp = &p->next_stalled;
            continue;
        }
        p->in_len = 0;
        *pp = p->next_stalled;
        p->next_stalled = NULL;
        if (!p->closing)
            lws_rx_flow_control(p->wsi, 1);
    }
}

/* Arms the one timer for virtual time `at`. */
static void arm(sim_server *s, uint64_t at)
{
    uint64_t now = sim_server_now(s);
    uint64_t delay_ms = at == UINT64_MAX ? 3600000u : at > now ? at - now : 0;
    double real_ms = (double)delay_ms / s->o.time_scale;
    if (real_ms > 3600000.0)
        real_ms = 3600000.0;
    lws_usec_t us = (lws_usec_t)(real_ms * 1000.0) + 1000; /* +1 ms: never early */
    lws_sul_schedule(s->ctx, 0, &s->sul, sul_cb, us);
    s->armed_at = at;
}

/* After an event: the engine's deadlines can only have come earlier, so the
 * timer moves only if they did.  Ticking here instead would walk every
 * connection on every packet of every client. */
static void reschedule(sim_server *s)
{
    uint64_t hint = sim_engine_next_deadline(s->engine);
    if (hint < s->armed_at)
        arm(s, hint);
}

static void sul_cb(lws_sorted_usec_list_t *sul)
{
    sim_server *s = lws_container_of(sul, sim_server, sul);
    s->armed_at = UINT64_MAX;
    unstall(s);
    uint64_t now = sim_server_now(s);
    uint64_t next = sim_engine_tick(s->engine, now);
    if (s->stalled && next > now + 50)
        next = now + 50;
    arm(s, next);
}

/* ---- MQTT connections ------------------------------------------------------ */


/* At the first bytes of a TLS connection the handshake is done: check who it
 * is and which ALPN it chose.  False: the connection must close. */
static bool identify(sim_server *s, conn_pss *p, char id_out[65], const char **thing, bool *denied)
{
    SSL *ssl = lws_get_ssl(p->wsi);
    if (!ssl) {
        edge_log(s, p->listener, "tls_refused", "no TLS session");
        return false;
    }
    if (p->listener == L_ALPN) {
        const unsigned char *a = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(ssl, &a, &alen);
        static const char want[] = "x-amzn-mqtt-ca";
        if (alen != sizeof want - 1 || memcmp(a, want, alen) != 0) {
            /* [AWS-ALPN] custom authentication (ALPN "mqtt") is not simulated
             * yet.  The server selects only x-amzn-mqtt-ca, so any other
             * offer shows here as none selected. */
            edge_log(s, p->listener, "alpn_refused", "ALPN x-amzn-mqtt-ca not selected (custom auth not simulated)");
            return false;
        }
    }
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (!x) {
        edge_log(s, p->listener, "tls_refused", "no client certificate");
        return false;
    }
    long vr = SSL_get_verify_result(ssl);
    bool ok = vr == X509_V_OK && sim_pki_cert_id(x, id_out) == 0; /* SHA-256 of the DER, hex */
    X509_free(x);
    if (!ok) {
        edge_log(s, p->listener, "tls_refused", X509_verify_cert_error_string(vr));
        return false;
    }
    *thing = NULL;
    *denied = false;
    int st = s->o.principal_ok ? s->o.principal_ok(s->o.ctx, id_out, thing) : SIM_PRINCIPAL_ACTIVE;
    if (st == SIM_PRINCIPAL_UNKNOWN) {
        edge_log(s, p->listener, "certificate_refused", "not registered");
        return false;
    }
    *denied = st != SIM_PRINCIPAL_ACTIVE;
    return true;
}

static bool open_conn(sim_server *s, conn_pss *p)
{
    char id[65] = "";
    const char *thing = NULL;
    bool denied = false;
    if (p->listener != L_TCP && !identify(s, p, id, &thing, &denied))
        return false;
    /* lws leaves its TLS-accept timeout (5 s) armed on raw TLS sockets: it
     * would cut every mTLS client at 5 s.  From here the engine's keep-alive
     * and CONNECT timers decide. */
    lws_set_timeout(p->wsi, NO_PENDING_TIMEOUT, 0);
    char ip[64] = "";
    lws_get_peer_simple(p->wsi, ip, sizeof ip);
    sim_conn_info info = {id[0] ? id : NULL, thing, ip, LISTENER_NAME[p->listener], denied};
    p->id = sim_engine_open(s->engine, &info, sim_server_now(s));
    if (!p->id || !sim_map_put(&s->by_id, &p->id, sizeof p->id, p))
        return false;
    p->opened = true;
    return true;
}

static int cb_mqtt(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    conn_pss *p = user;
    sim_server *s = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* lws ignores preverify_ok unless told: any certificate would get in. */
        if (!len) {
            int which = L_MTLS;
            for (int i = 0; i < L_COUNT; i++)
                if (s->vh[i] == lws_get_vhost(wsi))
                    which = i;
            edge_log(s, which, "tls_refused",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error((X509_STORE_CTX *)user)));
        }
        return !len;
    case LWS_CALLBACK_RAW_ADOPT: {
        memset(p, 0, sizeof *p);
        p->srv = s;
        p->wsi = wsi;
        struct lws_vhost *vh = lws_get_vhost(wsi);
        for (int i = 0; i < L_COUNT; i++)
            if (s->vh[i] == vh)
                p->listener = i;
        if (p->listener == L_TCP && !open_conn(s, p))
            return -1;
        reschedule(s);
        return 0;
    }
    case LWS_CALLBACK_RAW_RX:
        if (!p || p->closing || !len)
            return 0;
        if (!p->opened && !open_conn(s, p)) {
            p->refused = true;
            return -1;
        }
        if (p->in_len) { /* already held back: keep the order */
            if (p->in_len + len > MAX_IN_BACKLOG)
                return -1;
            uint8_t *nb = realloc(p->in, p->in_len + len);
            if (!nb)
                return -1;
            p->in = nb;
            memcpy(p->in + p->in_len, in, len);
            p->in_len += len;
            return 0;
        } else {
            size_t n = sim_engine_input(s->engine, p->id, in, len, sim_server_now(s));
            if (n < len && !p->closing) {
                /* [AWS-THROUGHPUT] hold the rest and stop reading. */
                uint8_t *nb = realloc(p->in, len - n);
                if (!nb)
                    return -1;
                p->in = nb;
                memcpy(p->in, (uint8_t *)in + n, len - n);
                p->in_len = len - n;
                p->next_stalled = s->stalled;
                s->stalled = p;
                lws_rx_flow_control(wsi, 0);
            }
        }
        reschedule(s);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE: {
        if (!p)
            return 0;
        size_t live = p->out_len - p->out_off;
        if (live) {
            size_t n = live > WRITE_CHUNK ? WRITE_CHUNK : live;
            uint8_t buf[LWS_PRE + WRITE_CHUNK];
            memcpy(buf + LWS_PRE, p->out + p->out_off, n);
            if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_RAW) < 0)
                return -1;
            p->out_off += n;
            if (p->out_off == p->out_len) {
                /* Idle connections keep no output buffer: thousands of them
                 * would otherwise each hold one. */
                free(p->out);
                p->out = NULL;
                p->out_len = p->out_off = p->out_cap = 0;
            }
            /* One write per callback: lws buffers what the socket refuses. */
            lws_callback_on_writable(wsi);
            return 0;
        }
        return p->closing ? -1 : 0;
    }
    case LWS_CALLBACK_RAW_CLOSE:
        if (!p)
            return 0;
        if (!p->opened && p->listener != L_TCP && !p->refused)
            /* The TLS handshake failed (no client certificate, a protocol
             * error) or the client left before sending anything. */
            edge_log(s, p->listener, "closed_before_mqtt", "TLS handshake failed or nothing was sent");
        if (p->opened && !p->engine_closed) {
            sim_map_del(&s->by_id, &p->id, sizeof p->id);
            sim_engine_lost(s->engine, p->id, sim_server_now(s));
        }
        for (conn_pss **pp = &s->stalled; *pp; pp = &(*pp)->next_stalled) {
            if (*pp == p) {
                *pp = p->next_stalled;
                break;
            }
        }
        free(p->out);
        free(p->in);
        p->out = p->in = NULL;
        if (!s->stop)
            reschedule(s);
        return 0;
    default: return 0;
    }
}

/* ---- control API ----------------------------------------------------------- */

static char *reply_msg(unsigned *status, unsigned code, const char *key, const char *msg)
{
    *status = code;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, key, msg);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

static double num(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* GET /shadows: every shadow (sim_shadow_list); GET /shadows/{thing} and
 * /shadows/{thing}/{name}: the classic or named shadow as get/accepted
 * renders it. */
static char *shadows_api(sim_server *s, const char *rest, unsigned *status)
{
    const sim_shadow_store *st = sim_engine_shadows(s->engine);
    if (!st)
        return reply_msg(status, 404, "error", "the shadow service is off (config: shadow.service)");
    if (!rest[0] || !strcmp(rest, "/")) {
        char *t = sim_shadow_list(st);
        *status = t ? 200 : 500;
        return t;
    }
    char thing[160], name[96] = "";
    const char *a = rest + 1, *sl = strchr(a, '/');
    size_t tl = sl ? (size_t)(sl - a) : strlen(a);
    if (tl == 0 || tl >= sizeof thing || (sl && (strlen(sl + 1) == 0 || strlen(sl + 1) >= sizeof name)))
        return reply_msg(status, 400, "error", "want /shadows/{thing} or /shadows/{thing}/{shadow name}");
    memcpy(thing, a, tl);
    thing[tl] = 0;
    if (sl)
        snprintf(name, sizeof name, "%s", sl + 1);
    char *d = sim_shadow_document(st, thing, name, io_wall_ms(s) / 1000);
    if (!d)
        return reply_msg(status, 404, "error", "no such shadow");
    *status = 200;
    return d;
}

/* POST /provisioning/templates {"name", "body", "enabled"?} (CreateProvisioningTemplate,
 * or a new version of one) and /provisioning/templates/delete {"name"}. */
static char *templates_api(sim_server *s, const char *rest, const cJSON *b, unsigned *status)
{
    sim_provision *pv = sim_engine_config(s->engine)->provisioning;
    const char *name = str(b, "name");
    if (!name)
        return reply_msg(status, 400, "error", "name: the template's name");
    char *what = cJSON_PrintUnformatted(b);
    char *r = NULL;
    if (!strcmp(rest, "/delete")) {
        if (sim_provision_template_delete(pv, name) != 0)
            r = reply_msg(status, 404, "error", "no such template");
        else {
            sim_engine_note(s->engine, "provisioning_template_delete", what);
            r = reply_msg(status, 200, "status", "deleted");
        }
    } else if (!rest[0]) {
        const cJSON *body = cJSON_GetObjectItemCaseSensitive(b, "body");
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(b, "enabled");
        char *text = cJSON_IsString(body) ? strdup(body->valuestring) : body ? cJSON_PrintUnformatted(body) : NULL;
        char why[512] = "";
        if (!body)
            r = reply_msg(status, 400, "error", "body: the template (an object, or a string holding one)");
        else if (en && !cJSON_IsBool(en))
            r = reply_msg(status, 400, "error", "enabled: true or false");
        else if (!text)
            r = reply_msg(status, 500, "error", "out of memory");
        else if (sim_provision_template_put(pv, name, text, strlen(text), !en || cJSON_IsTrue(en), why, sizeof why))
            r = reply_msg(status, 400, "error", why);
        else {
            sim_engine_note(s->engine, "provisioning_template_put", what);
            r = reply_msg(status, 200, "status", "stored");
        }
        free(text);
    } else {
        r = reply_msg(status, 404, "error", "no such resource (POST /provisioning/templates, .../delete)");
    }
    free(what);
    return r;
}

/* Routes one request; returns the JSON reply (malloc'd). */
static char *control(sim_server *s, const http_pss *h, unsigned *status)
{
    uint64_t now = sim_server_now(s);
    if (h->path_too_long)
        return reply_msg(status, 414, "error", "the path is too long");
    if (!h->post) {
        if (!strcmp(h->path, "/health"))
            return reply_msg(status, 200, "status", "ok");
        if (!strcmp(h->path, "/clients")) {
            *status = 200;
            return sim_engine_describe(s->engine);
        }
        if (!strcmp(h->path, "/clock")) {
            *status = 200;
            char buf[96];
            snprintf(buf, sizeof buf, "{\"now_ms\":%llu,\"time_scale\":%g}", (unsigned long long)now,
                     s->o.time_scale);
            return strdup(buf);
        }
        if (!strcmp(h->path, "/things") && s->o.things_describe) {
            char *t = s->o.things_describe(s->o.ctx);
            *status = t ? 200 : 500;
            return t;
        }
        /* The IoT policies and their attachments (sim_policy.h). */
        if (!strcmp(h->path, "/policies")) {
            const struct sim_policy_store *ps = sim_engine_config(s->engine)->policies;
            *status = 200;
            return ps ? sim_policy_store_describe(ps) : strdup("{\"policies\":[],\"attachments\":[]}");
        }
        if (!strncmp(h->path, "/shadows", 8) && (!h->path[8] || h->path[8] == '/'))
            return shadows_api(s, h->path + 8, status);
        if (!strcmp(h->path, "/provisioning")) {
            const sim_provision *pv = sim_engine_config(s->engine)->provisioning;
            char *t = pv ? sim_provision_describe(pv) : NULL;
            if (!pv)
                return reply_msg(status, 404, "error", "fleet provisioning is not offered");
            *status = t ? 200 : 500;
            return t;
        }
        return reply_msg(status, 404, "error",
                         "no such resource (GET /health, /clients, /clock, /things, /policies, /shadows, "
                         "/provisioning)");
    }
    cJSON *b = h->body_len ? cJSON_ParseWithLength(h->body, h->body_len) : cJSON_CreateObject();
    if (!b || !cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return reply_msg(status, 400, "error", "the body must be a JSON object");
    }
    char *r = NULL;
    const char *cid = str(b, "client_id");
    sim_conn_id id = cid ? sim_engine_find_client(s->engine, cid) : 0;
    if (!strcmp(h->path, "/faults/drop")) {
        double reason = num(b, "reason", 0x98); /* Administrative action */
        bool abrupt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "abrupt"));
        if (!cid || !id)
            r = reply_msg(status, 404, "error", "client_id: no such connected client");
        else if (reason < 0 || reason > 255)
            r = reply_msg(status, 400, "error", "reason: an MQTT 5 reason code 0..255");
        else {
            if (abrupt) {
                /* A reset, not a close: SO_LINGER 0 makes close() send RST,
                 * and no DISCONNECT goes first. */
                conn_pss *p = sim_map_get(&s->by_id, &id, sizeof id);
                struct linger lg = {1, 0};
                if (p)
                    setsockopt(lws_get_socket_fd(p->wsi), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                reason = 0;
            }
            if (sim_engine_drop(s->engine, id, (uint8_t)reason, abrupt ? "control API: reset" : "control API: drop",
                                now))
                r = reply_msg(status, 200, "status", abrupt ? "reset" : "dropped");
        }
    } else if (!strcmp(h->path, "/faults/delay")) {
        double ms = num(b, "ms", -1);
        if (ms < 0 || ms > 86400000)
            r = reply_msg(status, 400, "error", "ms: a number of milliseconds, 0..86400000");
        else if (cid && !id)
            r = reply_msg(status, 404, "error", "client_id: no such connected client");
        else {
            sim_engine_delay_deliveries(s->engine, id, (uint32_t)ms, now);
            r = reply_msg(status, 200, "status", "delaying");
        }
    } else if (!strcmp(h->path, "/faults/refuse")) {
        double secs = num(b, "seconds", -1);
        if (secs < 0)
            r = reply_msg(status, 400, "error", "seconds: a number >= 0");
        else {
            sim_engine_refuse_until(s->engine, now + (uint64_t)(secs * 1000.0));
            r = reply_msg(status, 200, "status", "refusing");
        }
    } else if (!strcmp(h->path, "/faults/blackhole")) {
        const cJSON *on = cJSON_GetObjectItemCaseSensitive(b, "on");
        if (!cid || !id)
            r = reply_msg(status, 404, "error", "client_id: no such connected client");
        else {
            sim_engine_blackhole(s->engine, id, !cJSON_IsFalse(on));
            r = reply_msg(status, 200, "status", cJSON_IsFalse(on) ? "released" : "blackholed");
        }
    } else if (!strcmp(h->path, "/faults/duplicate-qos0")) {
        double n = num(b, "count", -1);
        if (n < 0 || n > 1e9)
            r = reply_msg(status, 400, "error", "count: a number >= 0");
        else {
            sim_engine_duplicate_next_qos0(s->engine, (uint32_t)n);
            r = reply_msg(status, 200, "status", "armed");
        }
    } else if (!strcmp(h->path, "/clock/advance")) {
        double secs = num(b, "seconds", -1);
        if (secs < 0 || secs > 1e9)
            r = reply_msg(status, 400, "error", "seconds: a number >= 0");
        else {
            s->offset_ms += (uint64_t)(secs * 1000.0);
            r = reply_msg(status, 200, "status", "advanced");
        }
    } else if (!strncmp(h->path, "/policies", 9) && s->o.policy_admin) {
        int st = 500;
        r = s->o.policy_admin(s->o.ctx, h->path + 9, b, &st);
        *status = (unsigned)st;
        if (r && st < 300) {
            /* The change, with what was asked, in the event log. */
            char *what = cJSON_PrintUnformatted(b);
            char word[32];
            snprintf(word, sizeof word, "policy_%s", h->path[9] ? h->path + 10 : st == 201 ? "create" : "replace");
            sim_engine_note(s->engine, word, what);
            free(what);
        }
    } else if (!strncmp(h->path, "/provisioning/templates", 23) && sim_engine_config(s->engine)->provisioning) {
        r = templates_api(s, h->path + 23, b, status);
    } else if (!strcmp(h->path, "/devices") && s->o.device_add) {
        const char *name = str(b, "name");
        int st = 400;
        r = name ? s->o.device_add(s->o.ctx, name, &st) : NULL;
        if (!name)
            r = reply_msg(status, 400, "error", "name: the thing name");
        else
            *status = (unsigned)st;
    } else {
        r = reply_msg(status, 404, "error", "no such resource");
    }
    cJSON_Delete(b);
    arm(s, 0); /* a fault or a clock step may make something due now */
    return r;
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    http_pss *h = user;
    sim_server *s = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        memset(h, 0, sizeof *h);
        h->path_too_long = strlen((const char *)in) >= sizeof h->path;
        snprintf(h->path, sizeof h->path, "%s", (const char *)in);
        h->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
        if (!h->post) {
            h->reply = control(s, h, &h->status);
            lws_callback_on_writable(wsi);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY:
        if (h->body_len + len > MAX_CONTROL_BODY) {
            lws_return_http_status(wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, NULL);
            return -1;
        } else {
            char *nb = realloc(h->body, h->body_len + len + 1);
            if (!nb)
                return -1;
            h->body = nb;
            memcpy(h->body + h->body_len, in, len);
            h->body_len += len;
            h->body[h->body_len] = 0;
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        h->reply = control(s, h, &h->status);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!h->reply)
            h->reply = reply_msg(&h->status, 500, "error", "out of memory");
        if (!h->reply)
            return -1;
        size_t n = strlen(h->reply);
        uint8_t hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *pp = start, *end = hdr + sizeof hdr - 1;
        if (lws_add_http_common_headers(wsi, h->status, "application/json", n + 1, &pp, end) ||
            lws_finalize_write_http_header(wsi, start, &pp, end))
            return -1;
        uint8_t *body = malloc(LWS_PRE + n + 1);
        if (!body)
            return -1;
        memcpy(body + LWS_PRE, h->reply, n);
        body[LWS_PRE + n] = '\n';
        int w = lws_write(wsi, body + LWS_PRE, n + 1, LWS_WRITE_HTTP_FINAL);
        free(body);
        free(h->reply);
        h->reply = NULL;
        if (w < 0)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h) {
            free(h->body);
            free(h->reply);
            h->body = h->reply = NULL;
        }
        return 0;
    default: return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- setup ------------------------------------------------------------------- */

/* Memory per idle mTLS connection (bench/README.md, "iotsim against
 * mosquitto"; measured with heaptrack and with malloc_stats() over 2,000 and
 * 5,000 idle connections): lws holds exactly two heap blocks per idle raw
 * connection, its `struct lws` (840 bytes, fixed by the library build) and
 * the conn_pss below (per_session_data_size).  Nothing else of lws is per
 * connection here, so its knobs do not shrink the figure:
 * - rx_buffer_size / pt_serv_buf_size: a raw socket reads into the one
 *   per-thread serv_buf; no per-connection buffer shows in the profile;
 * - max_http_header_data / _pool: raw listeners never take an HTTP header
 *   table (only the control API's vhost does);
 * - the fd tables lws sizes from the fd limit are allocated once, when the
 *   context is created (8 bytes per descriptor each);
 * - SSL_MODE_RELEASE_BUFFERS is already set on every SSL by lws 4.1.6, so an
 *   idle connection holds no OpenSSL read or write buffer.
 * The rest is OpenSSL's per-connection state (the SSL object, the parsed
 * client certificate, the record ciphers: about 24 KB, the same in
 * mosquitto) and the engine's (about 0.8 KB).  Two TLS settings would save
 * a little but change what clients negotiate, so they are not applied:
 * preferring ChaCha20-Poly1305 over the client's AES-256-GCM (-0.4 KB:
 * smaller cipher contexts), and sending no TLS 1.3 session tickets
 * (-0.05 KB). */
static const struct lws_protocols MQTT_PROTOCOLS[] = {
    {"iotsim-mqtt", cb_mqtt, sizeof(conn_pss), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_protocols HTTP_PROTOCOLS[] = {
    {"http", cb_http, sizeof(http_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_quiet(int level, const char *line)
{
    (void)level;
    (void)line;
}

static struct lws_vhost *make_vhost(sim_server *s, int which, int port, char *err, size_t errlen)
{
    struct lws_context_creation_info i;
    memset(&i, 0, sizeof i);
    i.vhost_name = LISTENER_NAME[which];
    i.port = port;
    /* lws binds every interface for "127.0.0.1" while IPv6 is on (§0.4). */
    i.iface = s->o.listen_addr;
    i.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (which == L_CONTROL) {
        i.protocols = HTTP_PROTOCOLS;
    } else {
        i.protocols = MQTT_PROTOCOLS;
        i.listen_accept_role = "raw-skt";
        i.listen_accept_protocol = "iotsim-mqtt";
        i.options |= LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG;
        if (which != L_TCP) {
            /* Without DO_SSL_GLOBAL_INIT on the vhost it serves plain text (§0.3). */
            i.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
            i.ssl_cert_filepath = s->o.cert_file;
            i.ssl_private_key_filepath = s->o.key_file;
            i.ssl_ca_filepath = s->o.ca_file;
            if (which == L_ALPN)
                i.alpn = "x-amzn-mqtt-ca";
        }
    }
    struct lws_vhost *vh = lws_create_vhost(s->ctx, &i);
    if (!vh)
        snprintf(err, errlen, "cannot listen on %s:%d for %s (port in use, or a bad certificate or key)",
                 s->o.listen_addr, port, LISTENER_NAME[which]);
    return vh;
}

sim_server *sim_server_new(const sim_config *cfg, const sim_server_opts *opts, char *err, size_t errlen)
{
    sim_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->o = *opts;
    if (s->o.time_scale <= 0)
        s->o.time_scale = 1.0;
    if (!s->o.listen_addr)
        s->o.listen_addr = "127.0.0.1";
    clock_gettime(CLOCK_MONOTONIC, &s->mono0);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    s->rng = ((uint64_t)t.tv_nsec << 20) ^ (uint64_t)t.tv_sec ^ ((uint64_t)getpid() << 40) ^ 0x9E3779B97F4A7C15ull;
    sim_map_init(&s->by_id);
    /* Without a log file the engine builds no records at all: building them
     * only to throw them away was most of its CPU under load. */
    sim_io io = {io_send, io_close, opts->log ? io_log : NULL, io_random, io_wall_ms,
                 opts->shadows_changed ? io_shadows_changed : NULL};
    s->engine = sim_engine_new(cfg, &io, s);
    if (!s->engine) {
        snprintf(err, errlen, "cannot create the engine");
        free(s);
        return NULL;
    }
    lws_set_log_level(LLL_ERR, lws_log_quiet);
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    ci.user = s;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    s->ctx = lws_create_context(&ci);
    if (!s->ctx) {
        snprintf(err, errlen, "cannot create the libwebsockets context");
        sim_engine_free(s->engine);
        free(s);
        return NULL;
    }
    int want[L_COUNT] = {opts->port_mtls, opts->port_alpn, opts->port_tcp, opts->port_control};
    for (int i = 0; i < L_COUNT; i++) {
        s->port[i] = -1;
        if (want[i] < 0)
            continue;
        s->vh[i] = make_vhost(s, i, want[i], err, errlen);
        if (!s->vh[i]) {
            sim_server_free(s);
            return NULL;
        }
        s->port[i] = lws_get_vhost_listen_port(s->vh[i]);
    }
    s->armed_at = UINT64_MAX;
    arm(s, 0);
    return s;
}

int sim_server_port(const sim_server *s, const char *which)
{
    for (int i = 0; i < L_COUNT; i++)
        if (!strcmp(which, LISTENER_NAME[i]))
            return s->port[i];
    return -1;
}

sim_engine *sim_server_engine(sim_server *s)
{
    return s->engine;
}

int sim_server_run(sim_server *s)
{
    if (!s->ready_called && s->o.ready) {
        s->ready_called = true;
        s->o.ready(s->o.ctx, s);
    }
    while (!s->stop)
        if (lws_service(s->ctx, 0) < 0)
            return -1;
    return 0;
}

void sim_server_stop(sim_server *s)
{
    s->stop = 1;
    if (s->ctx)
        lws_cancel_service(s->ctx);
}

void sim_server_free(sim_server *s)
{
    if (!s)
        return;
    if (s->ctx) {
        /* [AWS-SHUTDOWN] every client is told the server is shutting down
         * (MQTT 5 DISCONNECT 0x8B), then the backlog gets a moment to drain. */
        s->stop = 1;
        size_t i;
        sim_map_entry *me;
        while ((me = sim_map_first(&s->by_id, &i)) != NULL) {
            conn_pss *p = me->value;
            sim_conn_id id = p->id;
            if (!sim_engine_drop(s->engine, id, 0x8B, "shutdown", sim_server_now(s)))
                sim_map_del(&s->by_id, &id, sizeof id);
        }
        uint64_t until = mono_ms() + 200;
        while (mono_ms() < until)
            lws_service(s->ctx, -1);
        lws_sul_cancel(&s->sul);
        lws_context_destroy(s->ctx);
    }
    sim_engine_free(s->engine);
    sim_map_free(&s->by_id);
    free(s);
}
