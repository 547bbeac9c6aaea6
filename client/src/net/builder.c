/*
 * net/builder.c: the connection builders of iotc/client.h (the seed's
 * mqtt_connection_builder) and their setters.
 *
 * Setters check what one value alone can tell (range, NUL, wildcards in a
 * Will topic); settings that only make sense together are checked where the
 * client is created (client.c, and the engine's own config check).
 */
#include "net/builder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "iotc/mqtt.h"
#include "iotc/topic.h"

static int bad(iotc_builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof b->why, fmt, ap);
    va_end(ap);
    return IOTC_ERR_INVALID_ARG;
}

static int nomem(iotc_builder *b)
{
    snprintf(b->why, sizeof b->why, "out of memory");
    return IOTC_ERR_NOMEM;
}

/* Replaces *dst by a copy of src (NULL clears). */
static bool set_str(char **dst, const char *src)
{
    char *c = NULL;
    if (src && !(c = strdup(src)))
        return false;
    free(*dst);
    *dst = c;
    return true;
}

static bool set_bytes(uint8_t **dst, size_t *dlen, const void *src, size_t len)
{
    uint8_t *c = NULL;
    if (src && len) {
        if (!(c = malloc(len)))
            return false;
        memcpy(c, src, len);
    }
    free(*dst);
    *dst = c;
    *dlen = c ? len : 0;
    return true;
}

/* Why the last constructor called on this thread failed: a failed
 * constructor has no builder to hold its reason. */
static __thread char ctor_why[160];

const char *iotc_builder_new_why(void)
{
    return ctor_why;
}

/* Refuses a constructor call: *out NULL, the reason kept for this thread. */
static int refuse_ctor(iotc_builder **out, const char *why)
{
    if (out)
        *out = NULL;
    snprintf(ctor_why, sizeof ctor_why, "%s", why);
    return IOTC_ERR_INVALID_ARG;
}

static iotc_builder *new_builder(const char *endpoint, iotc_link_kind kind)
{
    iotc_builder *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->kind = kind;
    b->tls = true;
    b->metrics = true;
    b->aws_limits = true;
    b->tcp_connect_timeout_ms = 5000;
    iotc_engine_config_init(&b->e);
    /* The seed's defaults where ours differ from the engine's: none today;
     * the engine's defaults are the seed's (keep-alive 1200 s, ping 3 s). */
    unsigned char r[4];
    char id[32];
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 0, sizeof r);
    snprintf(id, sizeof id, "iotc-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    if (!set_str(&b->endpoint, endpoint) || !set_str(&b->client_id, id)) {
        iotc_builder_free(b);
        return NULL;
    }
    return b;
}

static int start(iotc_builder **out, const char *endpoint, iotc_link_kind kind)
{
    if (!out)
        return refuse_ctor(out, "out: NULL");
    *out = NULL;
    if (!endpoint || !endpoint[0])
        return refuse_ctor(out, "endpoint: NULL or empty");
    *out = new_builder(endpoint, kind);
    if (!*out) {
        snprintf(ctor_why, sizeof ctor_why, "out of memory");
        return IOTC_ERR_NOMEM;
    }
    ctor_why[0] = 0;
    return IOTC_OK;
}

int iotc_mtls_from_path(iotc_builder **out, const char *endpoint, const char *cert_path, const char *key_path)
{
    if (!cert_path || !cert_path[0] || !key_path || !key_path[0])
        return refuse_ctor(out, "cert_path and key_path: both needed, not empty");
    int rc = start(out, endpoint, IOTC_LINK_TLS);
    if (rc != IOTC_OK)
        return rc;
    if (!set_str(&(*out)->cert_file, cert_path) || !set_str(&(*out)->key_file, key_path)) {
        iotc_builder_free(*out);
        *out = NULL;
        return IOTC_ERR_NOMEM;
    }
    return IOTC_OK;
}

int iotc_mtls_from_bytes(iotc_builder **out, const char *endpoint, const void *cert_pem, size_t cert_len,
                         const void *key_pem, size_t key_len)
{
    if (!cert_pem || !cert_len || !key_pem || !key_len)
        return refuse_ctor(out, "cert_pem and key_pem: both needed, with their lengths");
    int rc = start(out, endpoint, IOTC_LINK_TLS);
    if (rc != IOTC_OK)
        return rc;
    iotc_builder *b = *out;
    if (!set_bytes(&b->cert_pem, &b->cert_len, cert_pem, cert_len) ||
        !set_bytes(&b->key_pem, &b->key_len, key_pem, key_len)) {
        iotc_builder_free(b);
        *out = NULL;
        return IOTC_ERR_NOMEM;
    }
    return IOTC_OK;
}

int iotc_mtls_with_pkcs12(iotc_builder **out, const char *endpoint, const char *pkcs12_path, const char *password)
{
    if (!pkcs12_path || !pkcs12_path[0])
        return refuse_ctor(out, "pkcs12_path: NULL or empty");
    int rc = start(out, endpoint, IOTC_LINK_TLS);
    if (rc != IOTC_OK)
        return rc;
    if (!set_str(&(*out)->p12_file, pkcs12_path) || !set_str(&(*out)->p12_password, password)) {
        iotc_builder_free(*out);
        *out = NULL;
        return IOTC_ERR_NOMEM;
    }
    return IOTC_OK;
}

int iotc_websockets_with_default_aws_signing(iotc_builder **out, const char *endpoint, const char *region,
                                             const iotc_aws_creds *creds)
{
    if (!region || !region[0])
        return refuse_ctor(out, "region: NULL or empty (SigV4 signs for a region)");
    int rc = start(out, endpoint, IOTC_LINK_WSS);
    if (rc != IOTC_OK)
        return rc;
    iotc_builder *b = *out;
    b->ws_mode = IOTC_WS_SIGV4;
    bool ok = set_str(&b->region, region);
    if (creds) {
        b->has_creds = true;
        ok = ok && set_str(&b->akid, creds->access_key_id) && set_str(&b->secret, creds->secret_access_key) &&
             set_str(&b->token, creds->session_token);
    }
    if (!ok) {
        iotc_builder_free(b);
        *out = NULL;
        return IOTC_ERR_NOMEM;
    }
    return IOTC_OK;
}

int iotc_websockets_with_custom_handshake(iotc_builder **out, const char *endpoint, iotc_ws_handshake_fn fn,
                                          void *user)
{
    if (!fn)
        return refuse_ctor(out, "fn: the handshake callback is required");
    int rc = start(out, endpoint, IOTC_LINK_WSS);
    if (rc != IOTC_OK)
        return rc;
    (*out)->ws_mode = IOTC_WS_CUSTOM;
    (*out)->hs_fn = fn;
    (*out)->hs_user = user;
    return IOTC_OK;
}

static int custom_auth(iotc_builder **out, const char *endpoint, const iotc_custom_auth *a, iotc_link_kind kind)
{
    if (!a)
        return refuse_ctor(out, "auth: NULL");
    if ((a->token_key_name == NULL) != (a->token_value == NULL))
        return refuse_ctor(out, "token_key_name and token_value: give both or neither");
    int rc = start(out, endpoint, kind);
    if (rc != IOTC_OK)
        return rc;
    iotc_builder *b = *out;
    b->custom_auth = true;
    bool ok = set_str(&b->username, a->username) && set_str(&b->ca_name, a->authorizer_name) &&
              set_str(&b->ca_sig, a->authorizer_signature) && set_str(&b->ca_key_name, a->token_key_name) &&
              set_str(&b->ca_token, a->token_value);
    if (ok && a->password) {
        b->password_set = true;
        ok = set_bytes(&b->password, &b->password_len, a->password, strlen(a->password));
    }
    if (!ok) {
        iotc_builder_free(b);
        *out = NULL;
        return IOTC_ERR_NOMEM;
    }
    return IOTC_OK;
}

int iotc_direct_with_custom_authorizer(iotc_builder **out, const char *endpoint, const iotc_custom_auth *auth)
{
    int rc = custom_auth(out, endpoint, auth, IOTC_LINK_TLS);
    if (rc == IOTC_OK) {
        /* AWS: custom authentication over MQTT is 443 with ALPN "mqtt" (§5.1). */
        (*out)->port = 443;
        (*out)->alpn_set = true;
        if (!set_str(&(*out)->alpn, "mqtt")) {
            iotc_builder_free(*out);
            *out = NULL;
            return IOTC_ERR_NOMEM;
        }
    }
    return rc;
}

int iotc_websockets_with_custom_authorizer(iotc_builder **out, const char *endpoint, const iotc_custom_auth *auth)
{
    return custom_auth(out, endpoint, auth, IOTC_LINK_WSS);
}

int iotc_new_default_builder(iotc_builder **out, const char *endpoint)
{
    return start(out, endpoint, IOTC_LINK_TLS);
}

void iotc_builder_free(iotc_builder *b)
{
    if (!b)
        return;
    char **strs[] = {&b->endpoint, &b->address, &b->alpn, &b->cert_file, &b->key_file, &b->p12_file,
                     &b->p12_password, &b->ca_file, &b->ca_dir, &b->region, &b->akid, &b->secret,
                     &b->token, &b->ca_name, &b->ca_sig, &b->ca_key_name, &b->ca_token, &b->client_id,
                     &b->username, &b->will_topic};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    free(b->cert_pem);
    if (b->key_pem)
        memset(b->key_pem, 0, b->key_len);
    free(b->key_pem);
    free(b->ca_pem);
    if (b->password)
        memset(b->password, 0, b->password_len);
    free(b->password);
    free(b->will_payload);
    free(b);
}

iotc_builder *iotc_builder_clone(const iotc_builder *b)
{
    iotc_builder *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    *c = *b;
    /* Now every pointer is shared: replace each by a copy. */
    char **strs[] = {&c->endpoint, &c->address, &c->alpn, &c->cert_file, &c->key_file, &c->p12_file,
                     &c->p12_password, &c->ca_file, &c->ca_dir, &c->region, &c->akid, &c->secret,
                     &c->token, &c->ca_name, &c->ca_sig, &c->ca_key_name, &c->ca_token, &c->client_id,
                     &c->username, &c->will_topic};
    bool ok = true;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        const char *s = *strs[i];
        *strs[i] = NULL;
        ok = ok && set_str(strs[i], s);
    }
    struct {
        uint8_t **p;
        size_t *n;
    } bytes[] = {{&c->cert_pem, &c->cert_len}, {&c->key_pem, &c->key_len}, {&c->ca_pem, &c->ca_len},
                 {&c->password, &c->password_len}, {&c->will_payload, &c->will_len}};
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        const uint8_t *s = *bytes[i].p;
        size_t n = *bytes[i].n;
        *bytes[i].p = NULL;
        *bytes[i].n = 0;
        ok = ok && set_bytes(bytes[i].p, bytes[i].n, s, n);
    }
    if (!ok) {
        iotc_builder_free(c);
        return NULL;
    }
    return c;
}

const char *iotc_builder_why(const iotc_builder *b)
{
    return b ? b->why : "no builder";
}

#define NEED_B(b)                                                                                                \
    do {                                                                                                         \
        if (!(b))                                                                                                \
            return IOTC_ERR_INVALID_ARG;                                                                         \
        (b)->why[0] = 0;                                                                                         \
    } while (0)

int iotc_builder_set_client_id(iotc_builder *b, const char *client_id)
{
    NEED_B(b);
    if (!client_id || !client_id[0] || strlen(client_id) > 65535)
        return bad(b, "client id: 1 to 65535 bytes");
    if (b->aws_limits && strlen(client_id) > IOTC_AWS_CLIENT_ID_MAX)
        return bad(b, "client id: AWS IoT takes at most 128 bytes (iotc_builder_set_aws_limits(b, false) for "
                      "another broker)");
    if (!iotc_mqtt_utf8_valid((const uint8_t *)client_id, strlen(client_id), NULL))
        return bad(b, "client id: not valid MQTT UTF-8");
    return set_str(&b->client_id, client_id) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_port(iotc_builder *b, uint16_t port)
{
    NEED_B(b);
    if (!port)
        return bad(b, "port: 1 to 65535");
    b->port = port;
    return IOTC_OK;
}

int iotc_builder_set_address(iotc_builder *b, const char *address)
{
    NEED_B(b);
    if (address && !address[0])
        return bad(b, "address: empty");
    return set_str(&b->address, address) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_clean_session(iotc_builder *b, bool clean)
{
    NEED_B(b);
    b->e.clean_session = clean;
    return IOTC_OK;
}

int iotc_builder_set_keep_alive_secs(iotc_builder *b, uint16_t secs)
{
    NEED_B(b);
    b->e.keep_alive_s = secs;
    return IOTC_OK;
}

int iotc_builder_set_ping_timeout_ms(iotc_builder *b, uint32_t ms)
{
    NEED_B(b);
    if (!ms)
        return bad(b, "ping timeout: must be > 0");
    b->e.ping_timeout_ms = ms;
    return IOTC_OK;
}

int iotc_builder_set_protocol_operation_timeout_ms(iotc_builder *b, uint32_t ms)
{
    NEED_B(b);
    b->e.op_timeout_ms = ms;
    return IOTC_OK;
}

int iotc_builder_set_tcp_connect_timeout_ms(iotc_builder *b, uint32_t ms)
{
    NEED_B(b);
    if (!ms)
        return bad(b, "TCP connect timeout: must be > 0");
    b->tcp_connect_timeout_ms = ms;
    return IOTC_OK;
}

int iotc_builder_set_reconnect(iotc_builder *b, uint64_t min_ms, uint64_t max_ms)
{
    NEED_B(b);
    if (!min_ms)
        return bad(b, "reconnect: min must be > 0 (a reconnect loop with no pause)");
    if (max_ms < min_ms)
        return bad(b, "reconnect: min (%llu ms) > max (%llu ms)", (unsigned long long)min_ms,
                   (unsigned long long)max_ms);
    b->e.backoff.min_ms = min_ms;
    b->e.backoff.max_ms = max_ms;
    return IOTC_OK;
}

int iotc_builder_set_stable_time_ms(iotc_builder *b, uint64_t ms)
{
    NEED_B(b);
    b->e.backoff.stable_ms = ms;
    return IOTC_OK;
}

int iotc_builder_set_jitter(iotc_builder *b, iotc_jitter jitter)
{
    NEED_B(b);
    if (jitter != IOTC_JITTER_NONE && jitter != IOTC_JITTER_FULL && jitter != IOTC_JITTER_DECORRELATED)
        return bad(b, "jitter: unknown mode %d", (int)jitter);
    b->e.backoff.jitter = jitter;
    return IOTC_OK;
}

int iotc_builder_set_will(iotc_builder *b, const char *topic, const void *payload, size_t len, uint8_t qos,
                          bool retain)
{
    NEED_B(b);
    if (!topic || iotc_topic_name_check(topic, strlen(topic)) != IOTC_TOPIC_OK)
        return bad(b, "will: the topic must be a valid topic name without wildcards");
    if (qos > 1)
        return bad(b, "will: QoS %u (AWS IoT has no QoS 2)", (unsigned)qos);
    if (len && !payload)
        return bad(b, "will: payload NULL with a length");
    if (len > 65535)
        return bad(b, "will: payload over 65535 bytes");
    if (!set_str(&b->will_topic, topic) || !set_bytes(&b->will_payload, &b->will_len, payload, len))
        return nomem(b);
    b->e.will = true;
    b->e.will_qos = qos;
    b->e.will_retain = retain;
    return IOTC_OK;
}

int iotc_builder_set_username(iotc_builder *b, const char *username)
{
    NEED_B(b);
    if (username && strlen(username) > 65535)
        return bad(b, "username: over 65535 bytes");
    return set_str(&b->username, username) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_password(iotc_builder *b, const void *password, size_t len)
{
    NEED_B(b);
    if (len && !password)
        return bad(b, "password: NULL with a length");
    if (len > 65535)
        return bad(b, "password: over 65535 bytes");
    if (!set_bytes(&b->password, &b->password_len, password, len))
        return nomem(b);
    b->password_set = password != NULL;
    return IOTC_OK;
}

int iotc_builder_set_ca_file(iotc_builder *b, const char *path)
{
    NEED_B(b);
    return set_str(&b->ca_file, path) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_ca_dir(iotc_builder *b, const char *path)
{
    NEED_B(b);
    return set_str(&b->ca_dir, path) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_ca_bytes(iotc_builder *b, const void *pem, size_t len)
{
    NEED_B(b);
    if (len && !pem)
        return bad(b, "CA: NULL with a length");
    return set_bytes(&b->ca_pem, &b->ca_len, pem, len) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_tls(iotc_builder *b, bool tls)
{
    NEED_B(b);
    b->tls = tls;
    return IOTC_OK;
}

int iotc_builder_set_alpn(iotc_builder *b, const char *alpn)
{
    NEED_B(b);
    if (alpn && strlen(alpn) > 39)
        return bad(b, "ALPN: at most 39 bytes (the lws list buffer)");
    b->alpn_set = true;
    return set_str(&b->alpn, alpn && alpn[0] ? alpn : NULL) ? IOTC_OK : nomem(b);
}

int iotc_builder_set_metrics(iotc_builder *b, bool on)
{
    NEED_B(b);
    b->metrics = on;
    return IOTC_OK;
}

int iotc_builder_set_offline_queue(iotc_builder *b, int64_t size, iotc_drop_policy drop)
{
    NEED_B(b);
    if (size < IOTC_QUEUE_UNBOUNDED)
        return bad(b, "offline queue: size %lld (use -1 for unbounded, 0 for off)", (long long)size);
    if (drop != IOTC_DROP_OLDEST && drop != IOTC_DROP_NEWEST)
        return bad(b, "offline queue: unknown drop policy %d", (int)drop);
    b->e.queue.limit = size;
    b->e.queue.drop = drop == IOTC_DROP_OLDEST ? IOTC_OPQ_DROP_OLDEST : IOTC_OPQ_DROP_NEWEST;
    return IOTC_OK;
}

int iotc_builder_set_drain_hz(iotc_builder *b, double hz)
{
    NEED_B(b);
    iotc_drain_config d = {.hz = hz};
    const char *why = NULL;
    if (iotc_drain_config_check(&d, &why) != IOTC_OK)
        return bad(b, "drain frequency: %s", why ? why : "out of range");
    b->e.drain = d;
    return IOTC_OK;
}

int iotc_builder_set_resubscribe(iotc_builder *b, bool on)
{
    NEED_B(b);
    b->e.resubscribe = on;
    return IOTC_OK;
}

int iotc_builder_set_max_inflight(iotc_builder *b, uint16_t n)
{
    NEED_B(b);
    if (!n)
        return bad(b, "max in-flight: 1 to 65535");
    b->e.max_inflight = n;
    return IOTC_OK;
}

int iotc_builder_set_max_packet_size(iotc_builder *b, uint32_t bytes)
{
    NEED_B(b);
    if (bytes < 64)
        return bad(b, "max packet size: at least 64 bytes");
    b->e.max_packet_size = bytes;
    return IOTC_OK;
}

int iotc_builder_set_aws_limits(iotc_builder *b, bool on)
{
    NEED_B(b);
    if (on && b->client_id && strlen(b->client_id) > IOTC_AWS_CLIENT_ID_MAX)
        return bad(b, "AWS limits: the client id set is over 128 bytes");
    b->aws_limits = on;
    return IOTC_OK;
}

int iotc_builder_set_connack_timeout_ms(iotc_builder *b, uint32_t ms)
{
    NEED_B(b);
    if (!ms)
        return bad(b, "CONNACK timeout: must be > 0");
    b->e.connack_timeout_ms = ms;
    return IOTC_OK;
}
