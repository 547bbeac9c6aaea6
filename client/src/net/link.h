/*
 * net/link.h: one client's byte pipe to the broker, on libwebsockets.
 *
 * Owns the lws context of one iotc_client, its service thread, the timer
 * that wakes the engine, and at most one live connection at a time:
 *   TCP  lws raw socket;
 *   TLS  lws raw socket carrying OpenSSL over memory BIOs (net/tls.h),
 *        because lws 4.1.6 cannot open a raw TLS client (DESIGN.md);
 *   WS   lws WebSocket client, subprotocol "mqtt";
 *   WSS  the same over lws's own TLS.
 * It knows nothing of MQTT: the client (net/client.c) moves bytes between
 * it and the engine.
 *
 * Threads.  iotc_link_new starts the service thread; every callback below
 * runs on it.  iotc_link_send, iotc_link_wake, iotc_link_out_pending and
 * iotc_link_on_service_thread may be called from any thread; the rest only
 * from the service thread (from inside a callback).  iotc_link_free from any
 * thread but the service thread.
 *
 * A connection reports exactly one of: up then (later) down, or down.  A
 * connection the client closed reports nothing more.  Reports never happen
 * inside iotc_link_open or iotc_link_close.
 */
#ifndef IOTC_NET_LINK_H
#define IOTC_NET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/client.h"
#include "net/tls.h"

typedef enum { IOTC_LINK_TCP, IOTC_LINK_TLS, IOTC_LINK_WS, IOTC_LINK_WSS } iotc_link_kind;

/* The WebSocket upgrade request (public as iotc_ws_request). */
#define IOTC_WS_MAX_PATH 2032 /* lws 4.1.6 corrupts longer request lines */
#define IOTC_WS_MAX_HEADERS 32
struct iotc_ws_request {
    char path[IOTC_WS_MAX_PATH + 1];
    int n;
    char *name[IOTC_WS_MAX_HEADERS]; /* "name:" as lws wants it */
    char *value[IOTC_WS_MAX_HEADERS];
};
void iotc_ws_request_init(iotc_ws_request *r);
void iotc_ws_request_clear(iotc_ws_request *r);

typedef struct {
    void (*up)(void *ctx);                                 /* ready for MQTT bytes */
    void (*down)(void *ctx, int err, const char *why);     /* lost or failed to open */
    void (*data)(void *ctx, const uint8_t *p, size_t n);   /* bytes from the broker */
    void (*wake)(void *ctx);                               /* iotc_link_wake or the timer */
    /* WS/WSS: shape the upgrade request before each attempt; non-zero fails it. */
    int (*handshake)(void *ctx, iotc_ws_request *req, char *why, size_t whylen);
} iotc_link_cb;

typedef struct {
    iotc_link_kind kind;
    const char *address;         /* where to connect */
    const char *host;            /* verified name, SNI and Host header */
    uint16_t port;
    uint32_t connect_timeout_ms; /* TCP connect, and the TLS/WS handshake after it */
    /* TLS and WSS: trust, identity, ALPN (hostname is taken from `host`).
     * Borrowed: must outlive the link. */
    const iotc_tls_config *tls;
} iotc_link_config;

typedef struct iotc_link iotc_link;

/* Creates the lws context and starts the service thread.  IOTC_OK,
 * IOTC_ERR_NOMEM, IOTC_ERR_INTERNAL (lws or the thread would not start);
 * `why` names the reason. */
int iotc_link_new(const iotc_link_config *cfg, const iotc_link_cb *cb, void *ctx, iotc_link **out, char *why,
                  size_t whylen);
/* Stops the thread, closes any connection (no report) and frees. */
void iotc_link_free(iotc_link *l);

/* Service thread: opens a connection (reports come later). */
void iotc_link_open(iotc_link *l);
/* Service thread: closes the current connection after writing what is
 * queued (a DISCONNECT), at most 2 s; no report follows. */
void iotc_link_close(iotc_link *l);
/* Any thread: queues bytes on the live connection (dropped when none is up:
 * the engine only sends on an up link). */
void iotc_link_send(iotc_link *l, const uint8_t *p, size_t n);
/* Any thread: bytes queued and not yet handed to the socket. */
size_t iotc_link_out_pending(iotc_link *l);
/* Any thread: the wake callback runs soon on the service thread. */
void iotc_link_wake(iotc_link *l);
/* Service thread: the wake callback runs at `deadline_ms` (iotc_link_now_ms
 * clock); UINT64_MAX cancels. */
void iotc_link_set_timer(iotc_link *l, uint64_t deadline_ms);
bool iotc_link_on_service_thread(const iotc_link *l);
/* Any thread: no connection is open or still closing (flushing). */
bool iotc_link_idle(iotc_link *l);


/* The monotonic clock the client gives the engine. */
uint64_t iotc_link_now_ms(void);

#endif
