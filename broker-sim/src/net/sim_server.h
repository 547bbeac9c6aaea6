/*
 * sim_server.h: iotsim's network edge on libwebsockets.
 *
 * Owns the lws context and its listeners: mTLS MQTT (AWS's 8883 role), the
 * ALPN port (AWS's 443 role: `x-amzn-mqtt-ca` selects mTLS MQTT; anything
 * else is refused until custom authentication exists), plain TCP MQTT only
 * when asked (AWS has none), and the control API (HTTP + JSON).  It moves
 * bytes between sockets and the sans-I/O engine, runs the engine's timers on
 * the virtual clock (`time_scale` times faster than the wall clock, plus any
 * advance the control API asks for), and writes the event log.
 *
 * The three lws traps of ../shared/reference/libwebsockets-4.1.6.md §0 are
 * handled here: client certificates are verified (PERFORM_CLIENT_CERT_
 * VERIFICATION returns !preverify_ok), every TLS vhost has DO_SSL_GLOBAL_INIT,
 * and loopback listeners disable IPv6 so "127.0.0.1" binds only loopback.
 */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <stdbool.h>
#include <stdio.h>

#include "sim_engine.h"

struct cJSON; /* <cjson/cJSON.h> */

typedef struct sim_server sim_server;

enum { SIM_PRINCIPAL_UNKNOWN = 0, SIM_PRINCIPAL_ACTIVE = 1, SIM_PRINCIPAL_INACTIVE = 2 };

/* Ports: 0 lets the OS pick; -1 turns the listener off. */
typedef struct {
    const char *listen_addr;  /* "127.0.0.1" */
    int port_mtls;
    int port_alpn;
    int port_tcp;             /* -1 unless --insecure-tcp */
    int port_control;
    const char *ca_file;      /* the CA that signs device certificates */
    const char *cert_file;    /* the server's certificate and key */
    const char *key_file;
    double time_scale;        /* 1.0: real time */
    FILE *log;                /* event log (JSON lines), or NULL */
    /* What a verified client certificate may do.  cert_id is the SHA-256 of
     * the DER, hex; *thing may name the thing it is attached to (owned by the
     * callee).  SIM_PRINCIPAL_UNKNOWN is refused during TLS; INACTIVE gets as
     * far as its CONNECT, which is refused as not authorized. */
    int (*principal_ok)(void *ctx, const char *cert_id, const char **thing);
    /* Called once every listener is up, with the ports they got. */
    void (*ready)(void *ctx, const sim_server *srv);
    /* Control API: POST /devices {"name": N} (NULL: not offered).  Returns a
     * malloc'd JSON reply or NULL with *status set. */
    char *(*device_add)(void *ctx, const char *name, int *status);
    /* Control API: GET /things, the registry as a malloc'd JSON reply (NULL:
     * not offered, or out of memory). */
    char *(*things_describe)(void *ctx);
    /* Control API: POST /policies{,/attach,/detach,/delete} (NULL: not
     * offered).  `op` is what follows "/policies"; `body` the request's JSON
     * object.  Returns a malloc'd JSON reply or NULL, with *status set; a
     * change that was made (status < 300) goes to the event log. */
    char *(*policy_admin)(void *ctx, const char *op, const struct cJSON *body, int *status);
    /* A shadow changed (NULL: nothing to do); the program saves the store
     * (sim_engine_shadows(sim_server_engine(srv))). */
    void (*shadows_changed)(void *ctx);
    void *ctx;
} sim_server_opts;

/* NULL with a message in err on failure (a port in use, a bad certificate). */
sim_server *sim_server_new(const sim_config *cfg, const sim_server_opts *opts, char *err, size_t errlen);
/* Runs until sim_server_stop() (from a signal handler too) or a fatal error. */
int sim_server_run(sim_server *s);
/* Async-signal-safe. */
void sim_server_stop(sim_server *s);
/* Closes every client as the broker shutting down would, then frees. */
void sim_server_free(sim_server *s);

int sim_server_port(const sim_server *s, const char *which); /* "mtls", "alpn", "tcp", "control"; -1: off */
uint64_t sim_server_now(const sim_server *s);                /* virtual ms */
sim_engine *sim_server_engine(sim_server *s);

#endif
