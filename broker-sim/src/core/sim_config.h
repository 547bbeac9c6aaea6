/*
 * sim_config.h: iotsim's JSON configuration: the profile, every limit and
 * every deviation switch of sim_config, by the names listed in sim_config.c.
 * Unknown keys and bad values are refused with the key and the reason.
 * Example:
 *   {"profile": "current", "limits": {"max_payload": 65536},
 *    "deviations": {"qos0_dup_permille": 50}}
 */
#ifndef SIM_CONFIG_H
#define SIM_CONFIG_H

#include <stddef.h>

#include "sim_engine.h"

/* Applies a JSON text over *cfg (the profile first, so that explicit switches
 * win over the profile's defaults).  0, or -1 with "KEY: reason" in err. */
int sim_config_parse(sim_config *cfg, sim_profile *profile, const char *json, size_t len, char *err, size_t errlen);

#endif
