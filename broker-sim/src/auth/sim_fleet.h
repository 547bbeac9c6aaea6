/*
 * sim_fleet.h: what fleet provisioning (sim_provision.h) does to iotsim's
 * state: the backend of sim_prov_backend on the simulator's CA (sim_pki),
 * its registry of things and certificates (registry.json) and its IoT policy
 * store (sim_policy).
 *
 * Owns: the certificates CreateKeysAndCertificate and
 * CreateCertificateFromCsr make (state directory certificates/<id>.crt,
 * registered PENDING_ACTIVATION with no thing, so that they cannot connect),
 * what RegisterThing does with one (the thing attached, the template's
 * status, its policies created and attached), the removal of a pending
 * certificate whose ownership token expired (aws-services.md §2.3), and
 * provisioned-policies.json, the policies RegisterThing created from a
 * template's PolicyDocument, which iotsim loads again at start.
 *
 * Not kept (the registry has no place for them): a thing's attributes, type,
 * groups and billing group; the AttributePayload/ThingTypeName/ThingGroups
 * override settings are honoured only for FAIL (a thing that exists is then
 * 409 ResourceConflictsException).  The private key of
 * CreateKeysAndCertificate is handed to the device and not stored, as AWS
 * does.
 *
 * Everything runs on the caller's thread; files are written atomically
 * (temporary file, then rename).
 */
#ifndef SIM_FLEET_H
#define SIM_FLEET_H

#include <stddef.h>

#include "sim_policy.h"
#include "sim_provision.h"
#include "sim_registry.h"

typedef struct {
    const char *dir;       /* the state directory (ca.crt, ca.key live there) */
    sim_registry *reg;     /* saved after every change */
    sim_policy_store *pol;
    /* A certificate was registered or changed (may be NULL): the program
     * records its fields for the ${iot:Certificate.*} policy variables. */
    void (*changed)(void *ctx, const sim_device *d);
    void *ctx;
    /* RSA 2048 for CreateKeysAndCertificate, as AWS hands out; tests may
     * ask for EC P-256, which is quicker to make. */
    int key_type; /* sim_pki_key_type */
} sim_fleet;

/* The backend for sim_provision_set_backend; f must outlive its use. */
void sim_fleet_backend(sim_fleet *f, sim_prov_backend *out);

/* Loads provisioned-policies.json ({"NAME": DOCUMENT, ...}) into the policy
 * store; a missing file is fine.  0, or -1 with the file and reason in err. */
int sim_fleet_load_policies(sim_fleet *f, char *err, size_t errlen);

#endif
