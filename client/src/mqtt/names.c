/*
 * names.c: names of packet types, statuses and reason codes, and which reason
 * codes each packet type may carry (MQTT 5 §2.4 and the per-packet tables of
 * §3; MQTT 3.1.1 §3.2.2.3 and §3.9.3).
 */
#include "codec_internal.h"

const char *iotc_mqtt_type_name(unsigned type)
{
    static const char *const N[16] = {"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
                                      "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
                                      "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
    return type < 16 ? N[type] : "RESERVED";
}

const char *iotc_mqtt_status_str(iotc_mqtt_status s)
{
    switch (s) {
    case IOTC_MQTT_OK: return "ok";
    case IOTC_MQTT_NEED_MORE: return "incomplete packet";
    case IOTC_MQTT_ERR_MALFORMED: return "malformed packet";
    case IOTC_MQTT_ERR_PROTOCOL: return "protocol error";
    case IOTC_MQTT_ERR_TOO_LARGE: return "packet too large";
    case IOTC_MQTT_ERR_UNSUPPORTED_VERSION: return "unsupported protocol version";
    case IOTC_MQTT_ERR_BUFFER: return "output buffer too small";
    case IOTC_MQTT_ERR_INVALID_ARG: return "invalid argument";
    case IOTC_MQTT_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}

static const char *v5_reason(uint8_t c)
{
    switch (c) {
    case 0x00: return "Success";
    case 0x01: return "Granted QoS 1";
    case 0x02: return "Granted QoS 2";
    case 0x04: return "Disconnect with Will Message";
    case 0x10: return "No matching subscribers";
    case 0x11: return "No subscription existed";
    case 0x18: return "Continue authentication";
    case 0x19: return "Re-authenticate";
    case 0x80: return "Unspecified error";
    case 0x81: return "Malformed Packet";
    case 0x82: return "Protocol Error";
    case 0x83: return "Implementation specific error";
    case 0x84: return "Unsupported Protocol Version";
    case 0x85: return "Client Identifier not valid";
    case 0x86: return "Bad User Name or Password";
    case 0x87: return "Not authorized";
    case 0x88: return "Server unavailable";
    case 0x89: return "Server busy";
    case 0x8A: return "Banned";
    case 0x8B: return "Server shutting down";
    case 0x8C: return "Bad authentication method";
    case 0x8D: return "Keep Alive timeout";
    case 0x8E: return "Session taken over";
    case 0x8F: return "Topic Filter invalid";
    case 0x90: return "Topic Name invalid";
    case 0x91: return "Packet Identifier in use";
    case 0x92: return "Packet Identifier not found";
    case 0x93: return "Receive Maximum exceeded";
    case 0x94: return "Topic Alias invalid";
    case 0x95: return "Packet too large";
    case 0x96: return "Message rate too high";
    case 0x97: return "Quota exceeded";
    case 0x98: return "Administrative action";
    case 0x99: return "Payload format invalid";
    case 0x9A: return "Retain not supported";
    case 0x9B: return "QoS not supported";
    case 0x9C: return "Use another server";
    case 0x9D: return "Server moved";
    case 0x9E: return "Shared Subscriptions not supported";
    case 0x9F: return "Connection rate exceeded";
    case 0xA0: return "Maximum connect time";
    case 0xA1: return "Subscription Identifiers not supported";
    case 0xA2: return "Wildcard Subscriptions not supported";
    default: return NULL;
    }
}

const char *iotc_mqtt_reason_name(iotc_mqtt_type type, iotc_mqtt_version version, uint8_t code)
{
    if (version == IOTC_MQTT_V311) {
        if (type == IOTC_MQTT_CONNACK) {
            static const char *const R[6] = {"Connection Accepted",
                                             "Connection Refused, unacceptable protocol version",
                                             "Connection Refused, identifier rejected",
                                             "Connection Refused, Server unavailable",
                                             "Connection Refused, bad user name or password",
                                             "Connection Refused, not authorized"};
            return code < 6 ? R[code] : "Unknown return code";
        }
        if (type == IOTC_MQTT_SUBACK) {
            if (code <= 2)
                return code == 0 ? "Success - Maximum QoS 0" : code == 1 ? "Success - Maximum QoS 1"
                                                                         : "Success - Maximum QoS 2";
            return code == 0x80 ? "Failure" : "Unknown return code";
        }
    }
    if (code == 0x00) {
        if (type == IOTC_MQTT_DISCONNECT)
            return "Normal disconnection";
        if (type == IOTC_MQTT_SUBACK)
            return "Granted QoS 0";
    }
    const char *n = v5_reason(code);
    return n ? n : "Unknown reason code";
}

bool iotc_mqtt_reason_allowed(iotc_mqtt_type type, iotc_mqtt_version version, uint8_t c)
{
    if (version == IOTC_MQTT_V311) {
        switch (type) {
        case IOTC_MQTT_CONNACK: return c <= 5;
        case IOTC_MQTT_SUBACK: return c <= 2 || c == 0x80;
        default: return c == 0;
        }
    }
    switch (type) {
    case IOTC_MQTT_CONNACK:
        return c == 0x00 || (c >= 0x80 && c <= 0x8A) || c == 0x8C || c == 0x90 || c == 0x95 ||
               c == 0x97 || (c >= 0x99 && c <= 0x9D) || c == 0x9F;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
        return c == 0x00 || c == 0x10 || c == 0x80 || c == 0x83 || c == 0x87 || c == 0x90 || c == 0x91 ||
               c == 0x97 || c == 0x99;
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP: return c == 0x00 || c == 0x92;
    case IOTC_MQTT_SUBACK:
        return c <= 0x02 || c == 0x80 || c == 0x83 || c == 0x87 || c == 0x8F || c == 0x91 || c == 0x97 ||
               c == 0x9E || c == 0xA1 || c == 0xA2;
    case IOTC_MQTT_UNSUBACK:
        return c == 0x00 || c == 0x11 || c == 0x80 || c == 0x83 || c == 0x87 || c == 0x8F || c == 0x91;
    case IOTC_MQTT_DISCONNECT:
        return c == 0x00 || c == 0x04 || (c >= 0x80 && c <= 0x83) || c == 0x87 || c == 0x89 || c == 0x8B ||
               (c >= 0x8D && c <= 0x90) || (c >= 0x93 && c <= 0xA2);
    case IOTC_MQTT_AUTH: return c == 0x00 || c == 0x18 || c == 0x19;
    default: return false;
    }
}
