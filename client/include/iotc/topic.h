/*
 * iotc/topic.h: MQTT topic names and filters, and AWS IoT's rules for them.
 *
 * Owns: syntax checks of topic names and filters (MQTT 3.1.1 §4.7, MQTT 5
 * §4.7 and §4.8.2 shared subscriptions), filter matching with AWS IoT's two
 * differences switchable, and the AWS IoT size limits (256 bytes, 7 slashes)
 * with their documented exemptions (../shared/reference/aws-broker.md §1.9, §2).
 * Pure functions: no allocation, no state.  Topics are byte strings with a
 * length; they need not be NUL-terminated.
 */
#ifndef IOTC_TOPIC_H
#define IOTC_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    IOTC_TOPIC_OK = 0,
    IOTC_TOPIC_EMPTY,            /* zero length */
    IOTC_TOPIC_BAD_UTF8,         /* not well-formed, U+0000 or a surrogate */
    IOTC_TOPIC_TOO_LONG,         /* over 65535 bytes (MQTT) or the AWS limit */
    IOTC_TOPIC_WILDCARD_IN_NAME, /* '+' or '#' in a topic name */
    IOTC_TOPIC_BAD_WILDCARD,     /* '+' or '#' not alone in its level, '#' not last */
    IOTC_TOPIC_BAD_SHARE,        /* $share/ without a valid share name and filter */
    IOTC_TOPIC_TOO_MANY_SLASHES  /* over the AWS limit */
} iotc_topic_status;

/* A topic name that may be published to (no wildcards, 1..65535 bytes, UTF-8). */
iotc_topic_status iotc_topic_name_check(const char *topic, size_t len);

/* A topic filter (wildcards in whole levels, '#' last).  With `allow_share`,
 * `$share/<name>/<filter>` is accepted and its parts checked (MQTT 5, and AWS
 * IoT for 3.1.1 too); without, "$share/..." is an ordinary filter. */
iotc_topic_status iotc_topic_filter_check(const char *filter, size_t len, bool allow_share);

/* Matching switches. */
enum {
    /* AWS IoT: `a/#` does not match `a` (MQTT says it does). */
    IOTC_MATCH_AWS_HASH_PARENT = 1u << 0,
    /* MQTT [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a
     * topic starting with '$'.  Brokers must; the switch exists for tools. */
    IOTC_MATCH_DOLLAR_RULE = 1u << 1
};
#define IOTC_MATCH_MQTT IOTC_MATCH_DOLLAR_RULE
#define IOTC_MATCH_AWS (IOTC_MATCH_DOLLAR_RULE | IOTC_MATCH_AWS_HASH_PARENT)

/* Whether a valid topic name matches a valid filter (give a shared
 * subscription's filter part, not "$share/<name>/").  Case-sensitive.
 * Precondition: both passed their checks above.  The match does not check
 * them again, because it runs once per subscription for every message
 * routed; on inputs that were not checked its answer means nothing (it
 * still reads nothing outside them). */
bool iotc_topic_match(const char *filter, size_t flen, const char *topic, size_t tlen, unsigned flags);

/* The share name and filter of `$share/<name>/<filter>`; false if not one. */
bool iotc_topic_split_share(const char *filter, size_t len, const char **name, size_t *name_len,
                            const char **rest, size_t *rest_len);

/* AWS IoT's limits on topic names and filters. */
typedef struct {
    size_t max_bytes;    /* 256 */
    unsigned max_slashes; /* 7 */
} iotc_aws_topic_limits;

#define IOTC_AWS_TOPIC_MAX_BYTES 256u
#define IOTC_AWS_TOPIC_MAX_SLASHES 7u

/*
 * Checks a name or filter against AWS IoT's size limits (NULL limits: the
 * defaults).  The Basic Ingest prefix `$aws/rules/<rule>/` (compared without
 * case, as aws-c-mqtt does) and, for filters, `$share/<name>/` do not count
 * toward either limit.  Returns IOTC_TOPIC_OK, IOTC_TOPIC_TOO_LONG or
 * IOTC_TOPIC_TOO_MANY_SLASHES; syntax is the other checks' job.
 */
iotc_topic_status iotc_aws_topic_limits_check(const char *topic, size_t len, bool is_filter,
                                              const iotc_aws_topic_limits *limits);

const char *iotc_topic_status_str(iotc_topic_status s);

#ifdef __cplusplus
}
#endif
#endif
