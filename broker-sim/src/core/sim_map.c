/* sim_map.c: see sim_map.h. */
#include "sim_map.h"

#include <stdlib.h>
#include <string.h>

static unsigned long hash(const void *key, size_t len)
{
    /* FNV-1a: keys are client ids and topics, not attacker-chosen at scale. */
    const unsigned char *p = key;
    unsigned long h = 2166136261ul;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619ul;
    return h;
}

void sim_map_init(sim_map *m)
{
    memset(m, 0, sizeof *m);
}

void sim_map_free(sim_map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        sim_map_entry *e = m->buckets[i];
        while (e) {
            sim_map_entry *n = e->next;
            free(e);
            e = n;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof *m);
}

static sim_map_entry **slot(const sim_map *m, const void *key, size_t klen, unsigned long h)
{
    sim_map_entry **pp = &m->buckets[h % m->nbuckets];
    while (*pp && !((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0))
        pp = &(*pp)->next;
    return pp;
}

void *sim_map_get(const sim_map *m, const void *key, size_t klen)
{
    if (!m->nbuckets)
        return NULL;
    sim_map_entry *e = *slot(m, key, klen, hash(key, klen));
    return e ? e->value : NULL;
}

static bool grow(sim_map *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
    sim_map_entry **b = calloc(n, sizeof *b);
    if (!b)
        return false;
    for (size_t i = 0; i < m->nbuckets; i++) {
        sim_map_entry *e = m->buckets[i];
        while (e) {
            sim_map_entry *next = e->next;
            e->next = b[e->hash % n];
            b[e->hash % n] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return true;
}

bool sim_map_put(sim_map *m, const void *key, size_t klen, void *value)
{
    if (m->count >= m->nbuckets && !grow(m) && !m->nbuckets)
        return false;
    unsigned long h = hash(key, klen);
    sim_map_entry **pp = slot(m, key, klen, h);
    if (*pp) {
        (*pp)->value = value;
        return true;
    }
    sim_map_entry *e = malloc(sizeof *e + klen + 1);
    if (!e)
        return false;
    e->next = NULL;
    e->value = value;
    e->klen = klen;
    e->hash = h;
    memcpy(e->key, key, klen);
    e->key[klen] = 0;
    *pp = e;
    m->count++;
    return true;
}

void *sim_map_del(sim_map *m, const void *key, size_t klen)
{
    if (!m->nbuckets)
        return NULL;
    sim_map_entry **pp = slot(m, key, klen, hash(key, klen));
    sim_map_entry *e = *pp;
    if (!e)
        return NULL;
    void *v = e->value;
    *pp = e->next;
    free(e);
    m->count--;
    return v;
}

sim_map_entry *sim_map_first(const sim_map *m, size_t *i)
{
    for (*i = 0; *i < m->nbuckets; (*i)++)
        if (m->buckets[*i])
            return m->buckets[*i];
    return NULL;
}

sim_map_entry *sim_map_next(const sim_map *m, size_t *i, sim_map_entry *e)
{
    if (e->next)
        return e->next;
    for ((*i)++; *i < m->nbuckets; (*i)++)
        if (m->buckets[*i])
            return m->buckets[*i];
    return NULL;
}
