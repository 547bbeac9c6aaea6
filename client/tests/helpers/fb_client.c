/* helpers/fb_client.c: see fb_client.h. */
#include "fb_client.h"

#include <stddef.h>

iotc_client *fb_client_new(fb *b, const char *client_id, int64_t queue, bool connect, uint32_t timeout_ms)
{
    iotc_builder *bld = NULL;
    if (iotc_new_default_builder(&bld, "127.0.0.1") != IOTC_OK)
        return NULL;
    iotc_client *c = NULL;
    bool ok = iotc_builder_set_tls(bld, false) == IOTC_OK && iotc_builder_set_port(bld, fb_port(b)) == IOTC_OK &&
              iotc_builder_set_reconnect(bld, 50, 200) == IOTC_OK && iotc_builder_set_drain_hz(bld, 0) == IOTC_OK &&
              iotc_builder_set_client_id(bld, client_id) == IOTC_OK &&
              iotc_builder_set_offline_queue(bld, queue, IOTC_DROP_NEWEST) == IOTC_OK &&
              iotc_client_new(bld, NULL, NULL, &c) == IOTC_OK;
    iotc_builder_free(bld);
    if (!ok)
        return NULL;
    if (connect && (iotc_client_connect_wait(c, timeout_ms, NULL) != IOTC_OK || !fb_wait_connected(b, timeout_ms))) {
        iotc_client_free(c);
        return NULL;
    }
    return c;
}
