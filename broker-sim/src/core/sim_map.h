/*
 * sim_map.h: a hash map from byte-string keys to pointers.
 *
 * Owns copies of its keys, not its values.  Hand-written because Debian's C
 * libraries offer none that fits (hsearch keeps one global table; GLib would
 * be a large dependency for forty lines).  Chained buckets; grows at load 1.
 */
#ifndef SIM_MAP_H
#define SIM_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sim_map_entry {
    struct sim_map_entry *next;
    void *value;
    size_t klen;
    unsigned long hash;
    char key[]; /* NUL-terminated copy, so string keys can be printed */
} sim_map_entry;

typedef struct {
    sim_map_entry **buckets;
    size_t nbuckets;
    size_t count;
} sim_map;

void sim_map_init(sim_map *m);
/* Frees the map's entries (not the values). */
void sim_map_free(sim_map *m);
void *sim_map_get(const sim_map *m, const void *key, size_t klen);
/* Inserts or replaces; false on allocation failure. */
bool sim_map_put(sim_map *m, const void *key, size_t klen, void *value);
/* Removes the key; returns its value or NULL. */
void *sim_map_del(sim_map *m, const void *key, size_t klen);

/* Iteration: for (sim_map_entry *e = sim_map_first(m, &i); e; e = sim_map_next(m, &i, e)).
 * Do not insert while iterating.  To delete the current entry, take its
 * successor with sim_map_next() first: deleting frees only that entry. */
sim_map_entry *sim_map_first(const sim_map *m, size_t *i);
sim_map_entry *sim_map_next(const sim_map *m, size_t *i, sim_map_entry *e);

#endif
