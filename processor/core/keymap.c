/* The per-key state map (keymap.h): entries in insertion order, an open-addressing index, a key slab. */
#include "keymap.h"

#include <stdlib.h>

#include "common.h"

#define SLAB_CLASSES ((WEIR_KEYMAP_MAX_KEY + 1) / 16 + 2)

void weir_keymap_init(weir_keymap_t *m, size_t vsize) {
    memset(m, 0, sizeof(*m));
    m->vsize = vsize;
    m->stride = sizeof(weir_keymap_ent_t) + ((vsize + 7) & ~(size_t)7);
    m->free_head = WEIR_KEYMAP_NONE;
    m->head = m->tail = WEIR_KEYMAP_NONE;
    m->slab_free = weir_malloc(SLAB_CLASSES * sizeof(uint32_t));
    memset(m->slab_free, 0xff, SLAB_CLASSES * sizeof(uint32_t));
    m->tab_mask = 63;
    m->tab = weir_calloc((size_t)m->tab_mask + 1, sizeof(*m->tab));
}

static void free_values(weir_keymap_t *m, void (*free_val)(void *, void *), void *arg) {
    if (!free_val || !m->n)
        return;
    for (uint32_t id = m->head; id != WEIR_KEYMAP_NONE; id = m->links[id].next)
        free_val(weir_keymap_val(m, id), arg);
}

void weir_keymap_free(weir_keymap_t *m, void (*free_val)(void *val, void *arg), void *arg) {
    if (!m->tab)
        return;
    free_values(m, free_val, arg);
    free(m->ents);
    free(m->links);
    free(m->tab);
    free(m->slab);
    free(m->slab_free);
    memset(m, 0, sizeof(*m));
}

void weir_keymap_clear(weir_keymap_t *m, void (*free_val)(void *val, void *arg), void *arg) {
    size_t vsize = m->vsize;
    weir_keymap_free(m, free_val, arg);
    weir_keymap_init(m, vsize);
}

/* A small multiply-xorshift hash (8 bytes per step, then a murmur3 finaliser). */
uint64_t weir_keymap_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        memcpy(&v, s, n);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* ---- key slab: n bytes + a NUL, in 16-byte classes ---- */

static uint32_t slab_alloc(weir_keymap_t *m, size_t n) {
    size_t cls = (n + 1 + 15) / 16;
    uint32_t off = m->slab_free[cls];
    if (off != UINT32_MAX) {
        memcpy(&m->slab_free[cls], m->slab + off, sizeof(uint32_t));
        return off;
    }
    size_t need = cls * 16;
    if (m->slab_len + need > m->slab_cap) {
        size_t cap = m->slab_cap ? m->slab_cap * 2 : 1024;
        while (cap < m->slab_len + need)
            cap *= 2;
        if (cap > UINT32_MAX)
            cap = UINT32_MAX; /* 4 GiB of key bytes: the allocation below fails loudly first */
        m->slab = weir_realloc(m->slab, cap);
        m->slab_cap = cap;
    }
    off = (uint32_t)m->slab_len;
    m->slab_len += need;
    return off;
}

static void slab_release(weir_keymap_t *m, uint32_t off, size_t n) {
    size_t cls = (n + 1 + 15) / 16;
    memcpy(m->slab + off, &m->slab_free[cls], sizeof(uint32_t));
    m->slab_free[cls] = off;
}

/* ---- index ---- */

static void tab_put(struct weir_keymap_slot *tab, uint32_t mask, uint32_t h32, uint32_t id1) {
    uint32_t i = h32 & mask;
    while (tab[i].id1)
        i = (i + 1) & mask;
    tab[i].hash = h32;
    tab[i].id1 = id1;
}

static void tab_grow(weir_keymap_t *m) {
    uint32_t nmask = m->tab_mask * 2 + 1;
    struct weir_keymap_slot *nt = weir_calloc((size_t)nmask + 1, sizeof(*nt));
    for (uint32_t i = 0; i <= m->tab_mask; i++)
        if (m->tab[i].id1)
            tab_put(nt, nmask, m->tab[i].hash, m->tab[i].id1);
    free(m->tab);
    m->tab = nt;
    m->tab_mask = nmask;
}

uint32_t weir_keymap_add(weir_keymap_t *m, const void *p, size_t n, uint64_t h) {
    if ((uint64_t)(m->n + 1) * 2 > (uint64_t)m->tab_mask + 1)
        tab_grow(m);
    uint32_t id;
    if (m->free_head != WEIR_KEYMAP_NONE) {
        id = m->free_head;
        m->free_head = m->links[id].next;
    } else {
        if (m->used == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 64;
            m->ents = weir_realloc(m->ents, (size_t)m->cap * m->stride);
            m->links = weir_realloc(m->links, (size_t)m->cap * sizeof(*m->links));
        }
        id = m->used++;
    }
    weir_keymap_ent_t *e = weir_keymap_ent(m, id);
    memset(e, 0, m->stride);
    uint32_t off = slab_alloc(m, n);
    if (n)
        memcpy(m->slab + off, p, n);
    m->slab[off + n] = '\0';
    e->hash = (uint32_t)h;
    e->klen = (uint32_t)n;
    e->koff = off;
    e->live = 1;
    m->links[id].prev = m->tail;
    m->links[id].next = WEIR_KEYMAP_NONE;
    if (m->tail != WEIR_KEYMAP_NONE)
        m->links[m->tail].next = id;
    else
        m->head = id;
    m->tail = id;
    tab_put(m->tab, m->tab_mask, e->hash, id + 1);
    m->n++;
    return id;
}

void weir_keymap_del(weir_keymap_t *m, uint32_t id) {
    weir_keymap_ent_t *e = weir_keymap_ent(m, id);
    uint32_t mask = m->tab_mask;
    uint32_t i = e->hash & mask;
    while (m->tab[i].id1 != id + 1)
        i = (i + 1) & mask;
    /* Backward-shift deletion: move later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; m->tab[j].id1; j = (j + 1) & mask) {
        uint32_t home = m->tab[j].hash & mask;
        /* j may move to hole if its home is not in the cyclic range (hole, j]. */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            m->tab[hole] = m->tab[j];
            hole = j;
        }
    }
    m->tab[hole].id1 = 0;
    /* Unlink from the order. */
    weir_keymap_link_t *l = &m->links[id];
    if (l->prev != WEIR_KEYMAP_NONE)
        m->links[l->prev].next = l->next;
    else
        m->head = l->next;
    if (l->next != WEIR_KEYMAP_NONE)
        m->links[l->next].prev = l->prev;
    else
        m->tail = l->prev;
    slab_release(m, e->koff, e->klen);
    e->live = 0;
    l->next = m->free_head;
    m->free_head = id;
    m->n--;
}

typedef struct sort_ent {
    const uint8_t *p;
    uint32_t n, id;
} sort_ent_t;

static int sort_ent_cmp(const void *va, const void *vb) {
    const sort_ent_t *a = va, *b = vb;
    uint32_t n = a->n < b->n ? a->n : b->n;
    int r = n ? memcmp(a->p, b->p, n) : 0;
    if (r)
        return r;
    return (a->n > b->n) - (a->n < b->n);
}

uint32_t *weir_keymap_sorted_ids(const weir_keymap_t *m) {
    if (!m->n)
        return NULL;
    sort_ent_t *v = weir_malloc((size_t)m->n * sizeof(*v));
    size_t i = 0;
    for (uint32_t id = m->head; id != WEIR_KEYMAP_NONE; id = m->links[id].next, i++) {
        const weir_keymap_ent_t *e = weir_keymap_ent(m, id);
        v[i] = (sort_ent_t){m->slab + e->koff, e->klen, id};
    }
    qsort(v, i, sizeof(*v), sort_ent_cmp);
    uint32_t *ids = weir_malloc(i * sizeof(*ids));
    for (size_t j = 0; j < i; j++)
        ids[j] = v[j].id;
    free(v);
    return ids;
}

size_t weir_keymap_bytes(const weir_keymap_t *m) {
    return (size_t)m->cap * (m->stride + sizeof(*m->links)) + ((size_t)m->tab_mask + 1) * sizeof(*m->tab) +
           m->slab_cap + (m->slab_free ? SLAB_CLASSES * sizeof(uint32_t) : 0);
}
