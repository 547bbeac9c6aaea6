/*
 * The text of iotc_err (iotc/error.h).  A switch rather than a table indexed
 * by -err, so that a gap or a reordering in the enum cannot shift a message
 * onto the wrong code, and -Wswitch names any code left without text.
 */
#include "iotc/error.h"

/* The enum's type is implementation-defined (C11 6.7.2.2); gcc and clang
 * make it int, which is what lets any int reach the switch below. */
_Static_assert(sizeof(iotc_err) == sizeof(int), "iotc_err must be int-sized");

static const char *err_text(iotc_err e)
{
    switch (e) {
    case IOTC_OK: return "success";
    case IOTC_ERR_INVALID_ARG: return "invalid argument";
    case IOTC_ERR_NOMEM: return "out of memory";
    case IOTC_ERR_QUEUE_DROPPED: return "dropped from the offline queue";
    case IOTC_ERR_QUEUE_OFF: return "offline and the offline queue is off";
    case IOTC_ERR_TIMEOUT: return "timed out";
    case IOTC_ERR_NOT_CONNECTED: return "not connected";
    case IOTC_ERR_CLOSED: return "client closed";
    case IOTC_ERR_REFUSED: return "refused by the broker";
    case IOTC_ERR_TLS: return "TLS failure";
    case IOTC_ERR_PROTOCOL: return "MQTT protocol error";
    case IOTC_ERR_BUSY: return "busy: too many operations in flight";
    case IOTC_ERR_INTERNAL: return "internal error";
    case IOTC_ERR_CONNECTION_LOST: return "connection lost";
    case IOTC_ERR_CONNECT: return "could not connect";
    case IOTC_ERR_TOO_LARGE: return "over a size limit";
    case IOTC_ERR_CREDENTIALS: return "credentials missing or unreadable";
    case IOTC_ERR_UNSUPPORTED: return "not supported";
    case IOTC_ERR_REJECTED: return "rejected by the AWS IoT service";
    }
    return 0;
}

const char *iotc_strerror(int err)
{
    /* Every int converts to the enum unchanged (asserted below), and one
     * that names no code falls out of the switch. */
    const char *s = err_text((iotc_err)err);
    return s ? s : "unknown error";
}

static const char *err_name(iotc_err e)
{
    switch (e) {
    case IOTC_OK: return "IOTC_OK";
    case IOTC_ERR_INVALID_ARG: return "IOTC_ERR_INVALID_ARG";
    case IOTC_ERR_NOMEM: return "IOTC_ERR_NOMEM";
    case IOTC_ERR_QUEUE_DROPPED: return "IOTC_ERR_QUEUE_DROPPED";
    case IOTC_ERR_QUEUE_OFF: return "IOTC_ERR_QUEUE_OFF";
    case IOTC_ERR_TIMEOUT: return "IOTC_ERR_TIMEOUT";
    case IOTC_ERR_NOT_CONNECTED: return "IOTC_ERR_NOT_CONNECTED";
    case IOTC_ERR_CLOSED: return "IOTC_ERR_CLOSED";
    case IOTC_ERR_REFUSED: return "IOTC_ERR_REFUSED";
    case IOTC_ERR_TLS: return "IOTC_ERR_TLS";
    case IOTC_ERR_PROTOCOL: return "IOTC_ERR_PROTOCOL";
    case IOTC_ERR_BUSY: return "IOTC_ERR_BUSY";
    case IOTC_ERR_INTERNAL: return "IOTC_ERR_INTERNAL";
    case IOTC_ERR_CONNECTION_LOST: return "IOTC_ERR_CONNECTION_LOST";
    case IOTC_ERR_CONNECT: return "IOTC_ERR_CONNECT";
    case IOTC_ERR_TOO_LARGE: return "IOTC_ERR_TOO_LARGE";
    case IOTC_ERR_CREDENTIALS: return "IOTC_ERR_CREDENTIALS";
    case IOTC_ERR_UNSUPPORTED: return "IOTC_ERR_UNSUPPORTED";
    case IOTC_ERR_REJECTED: return "IOTC_ERR_REJECTED";
    }
    return 0;
}

const char *iotc_err_name(int err)
{
    const char *s = err_name((iotc_err)err);
    return s ? s : "IOTC_ERR_UNKNOWN";
}
