/*
 * svc/svc_topic.h: the topic-string helpers the service cores
 * (shadow_core.c, identity_core.c) share: walking a topic level by level
 * and the result of formatting one into a caller's buffer.  Pure: no
 * allocation, no I/O.
 */
#ifndef IOTC_SVC_TOPIC_H
#define IOTC_SVC_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* The next '/'-separated level of [*p, end): its start in *lv and length in
 * *lvlen, *p moved past it; false when there is none left.  Start with
 * *p = topic, end = topic + len. */
bool iotc_svc_topic_level(const char **p, const char *end, const char **lv, size_t *lvlen);

/* Whether the level [lv, lv + len) is exactly `word` (NUL-terminated). */
bool iotc_svc_level_is(const char *lv, size_t len, const char *word);

/* What a topic formatter returns once snprintf(buf, cap, ...) gave `n`: n
 * when it fit, IOTC_ERR_TOO_LARGE (buf emptied) when it did not,
 * IOTC_ERR_INTERNAL when snprintf failed. */
int iotc_svc_topic_fit(int n, char *buf, size_t cap);

#endif
