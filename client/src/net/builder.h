/*
 * net/builder.h: what an iotc_builder holds (private).
 *
 * The builder is plain configuration: strings and bytes it owns, and the
 * engine's settings.  iotc_client_new clones it, so a client never points
 * into its caller's builder.
 */
#ifndef IOTC_NET_BUILDER_H
#define IOTC_NET_BUILDER_H

#include "core/engine.h"
#include "iotc/client.h"
#include "net/link.h"

typedef enum { IOTC_WS_NONE, IOTC_WS_SIGV4, IOTC_WS_CUSTOM } iotc_ws_mode;

struct iotc_builder {
    char why[256];
    char *endpoint;
    char *address;        /* NULL: the endpoint */
    uint16_t port;        /* 0: the transport's default */
    iotc_link_kind kind;  /* TLS or WSS; TCP or WS when tls is off */
    bool tls;
    bool alpn_set;        /* alpn overridden (NULL: none) */
    char *alpn;
    /* identity and trust */
    char *cert_file, *key_file, *p12_file, *p12_password;
    uint8_t *cert_pem, *key_pem;
    size_t cert_len, key_len;
    char *ca_file, *ca_dir;
    uint8_t *ca_pem;
    size_t ca_len;
    /* WebSocket */
    iotc_ws_mode ws_mode;
    char *region;
    bool has_creds;
    char *akid, *secret, *token;
    iotc_ws_handshake_fn hs_fn;
    void *hs_user;
    /* custom authentication */
    bool custom_auth;
    char *ca_name, *ca_sig, *ca_key_name, *ca_token;
    /* MQTT */
    iotc_engine_config e; /* string fields unused: the copies below */
    char *client_id, *username, *will_topic;
    uint8_t *password, *will_payload;
    size_t password_len, will_len;
    bool password_set;
    bool metrics;
    bool aws_limits;      /* AWS IoT's topic and client-id limits at the call */
    uint32_t tcp_connect_timeout_ms;
};

/* A deep copy; NULL on allocation failure. */
iotc_builder *iotc_builder_clone(const iotc_builder *b);

#endif
