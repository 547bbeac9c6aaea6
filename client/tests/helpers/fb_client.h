/*
 * helpers/fb_client.h: a client of the library set up the way the service
 * client tests (test_shadow_api, test_identity_api) drive it against the
 * fake broker (fake_broker.h).
 */
#ifndef FB_CLIENT_H
#define FB_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "fake_broker.h"
#include "iotc/client.h"

/* A new client of `b`: plain TCP to its port, reconnecting after 50 to
 * 200 ms, no drain limit, `client_id`, an offline queue of `queue`
 * (IOTC_DROP_NEWEST).  With `connect`, connected and seen by `b` within
 * timeout_ms.  NULL on any failure (nothing is left behind); the caller
 * frees it with iotc_client_free. */
iotc_client *fb_client_new(fb *b, const char *client_id, int64_t queue, bool connect, uint32_t timeout_ms);

#endif
