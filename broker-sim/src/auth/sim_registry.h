/*
 * sim_registry.h: the simulator's thing and certificate registry, kept as
 * registry.json in the state directory: each thing with its certificate id
 * (SHA-256 of the DER, hex), the certificate's status (ACTIVE, INACTIVE,
 * REVOKED, PENDING_ACTIVATION), its files and its policy.  The TLS edge asks
 * it whether a client certificate may connect.
 *
 * A certificate made by fleet provisioning has no thing until RegisterThing
 * attaches one (thing ""), and a thing may then have several certificates
 * (a device provisioned again keeps its name): such entries come from
 * sim_registry_add_cert, not sim_registry_add, which is for new things.
 */
#ifndef SIM_REGISTRY_H
#define SIM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *thing;
    char *cert_id;
    char *status;    /* "ACTIVE", "INACTIVE", "REVOKED", "PENDING_ACTIVATION" */
    char *cert_file; /* relative to the state directory; "" when iotsim has no copy */
    char *key_file;
    char *policy;    /* the policies attached when it was registered ("allow-all"); the config
                      * file's things[i].policies and the control API change what is in force */
} sim_device;

typedef struct {
    sim_device *v;
    size_t n;
    char *path; /* registry.json */
} sim_registry;

/* Loads `path`; a missing file is an empty registry.  0, or -1 with err. */
int sim_registry_load(sim_registry *r, const char *path, char *err, size_t errlen);
/* Writes it atomically (temporary file, then rename). */
int sim_registry_save(const sim_registry *r, char *err, size_t errlen);
void sim_registry_free(sim_registry *r);

const sim_device *sim_registry_by_cert(const sim_registry *r, const char *cert_id);
const sim_device *sim_registry_by_thing(const sim_registry *r, const char *thing);
/* A new thing with its certificate.  Copies every string.  -1 on a bad or
 * duplicate thing name, a duplicate certificate id, or allocation failure. */
int sim_registry_add(sim_registry *r, const sim_device *d, char *err, size_t errlen);
/* A certificate, with or without a thing (NULL or ""), which may already
 * have others.  -1 on a duplicate certificate id, a bad thing name, or
 * allocation failure. */
int sim_registry_add_cert(sim_registry *r, const sim_device *d, char *err, size_t errlen);
/* Attaches a thing (NULL: keep), sets the status (NULL: keep) and the
 * policy names (space-separated; NULL: keep) of a certificate.  -1 when
 * there is no such certificate, the thing name is bad, or memory runs out
 * (nothing changed then). */
int sim_registry_update(sim_registry *r, const char *cert_id, const char *thing, const char *status,
                        const char *policy, char *err, size_t errlen);
/* Forgets a certificate; false if there was none. */
bool sim_registry_remove(sim_registry *r, const char *cert_id);

/* A thing name AWS IoT accepts: 1..128 of [a-zA-Z0-9:_-]. */
bool sim_thing_name_valid(const char *name);

#endif
