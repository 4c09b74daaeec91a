/**
 * @file keymap.h
 * @brief The per-key state map every keyed operator uses (window, kmeans,
 *        arima): key bytes -> one fixed-size value slot the operator owns.
 *
 * DESIGN.md §5 says "state is keyed inside the operator (hash map key ->
 * per-key state)"; this is that map, written once. What it guarantees:
 *  - **Insertion order, or recency order.** Iteration (weir_keymap_first /
 *    _next) visits the live keys in the order they were added, whatever their
 *    hashes, so a snapshot, a dump or end-of-input firing is deterministic and
 *    does not change when the hash function or the table size does. A removed
 *    key leaves the order; adding it again puts it at the end.
 *    weir_keymap_touch() moves a key to the end too: an operator that touches
 *    the key of every record it takes gets the keys least recently updated
 *    first (an LRU order, for max_keys eviction), still a pure function of its
 *    input. A snapshot written in this order and restored by adding the keys
 *    in it rebuilds the same order, so eviction after a restore picks the same
 *    keys as an uninterrupted run.
 *  - **Stable ids.** A key keeps its id (a small integer) until it is
 *    removed; an id is then reused. Operators may store ids (timers, lists).
 *  - **No allocation on the per-record path.** Finding an existing key is a
 *    hash probe and one memcmp. Adding a key allocates only when an array
 *    doubles; key bytes live in one slab recycled through per-size free lists.
 *
 * Layout: entries (a 16-byte header + the value, `stride` bytes each) in one
 * array indexed by id; the order as prev/next ids in a separate array of
 * 8 bytes per id (so that weir_keymap_touch, on the per-record path, touches
 * three slots of a compact array, not two more entries at random); an
 * open-addressing index (linear probing, load <= 1/2, backward-shift delete)
 * of {low 32 bits of the hash, id + 1}; key bytes (NUL-terminated, for
 * printing) in a slab with one free list per 16-byte size class.
 *
 * Values move when the entry array grows: a pointer from weir_keymap_val()
 * is valid until the next weir_keymap_add(). A value starts zeroed.
 * Not thread-safe (a map belongs to one task).
 */
#ifndef WEIR_KEYMAP_H
#define WEIR_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/** Longest key in bytes a map stores (weir_key_eval rejects longer keys). */
#define WEIR_KEYMAP_MAX_KEY 65536
/** "No entry": the end of an iteration, or a key not found. */
#define WEIR_KEYMAP_NONE UINT32_MAX

/** Header of one entry (internal; the value follows it). */
typedef struct weir_keymap_ent {
    uint32_t hash; /**< low 32 bits of the key's hash */
    uint32_t klen; /**< key length in bytes */
    uint32_t koff; /**< offset of the key bytes in the slab */
    uint32_t live; /**< 1 = in use */
} weir_keymap_ent_t;

/** The neighbours of an id in the order (internal). */
typedef struct weir_keymap_link {
    uint32_t prev, next; /**< ids, WEIR_KEYMAP_NONE at the ends (next: free-list link when free) */
} weir_keymap_link_t;

typedef struct weir_keymap {
    uint8_t *ents;             /**< cap entries of `stride` bytes, indexed by id */
    weir_keymap_link_t *links; /**< cap links, indexed by id: the iteration order */
    size_t stride;             /**< sizeof(weir_keymap_ent_t) + value size rounded up to 8 */
    size_t vsize;              /**< value bytes */
    uint32_t cap, used;        /**< entries allocated / ever handed out */
    uint32_t free_head;        /**< free entries (linked by next), WEIR_KEYMAP_NONE = none */
    uint32_t n;                /**< live keys */
    uint32_t head, tail;       /**< first and last live key of the order (least / most recently added or touched) */
    struct weir_keymap_slot {
        uint32_t hash;
        uint32_t id1; /**< id + 1; 0 = empty */
    } * tab;
    uint32_t tab_mask;
    uint8_t *slab; /**< key bytes */
    size_t slab_len, slab_cap;
    uint32_t *slab_free; /**< one free-list head per 16-byte class, UINT32_MAX = none */
} weir_keymap_t;

/** @brief An empty map whose values are vsize bytes (0 allowed). */
void weir_keymap_init(weir_keymap_t *m, size_t vsize);
/**
 * @brief Free the map. If free_val is not NULL it is called first on every
 *        live value, in insertion order (the operator frees what a value owns).
 *        Accepts a zeroed (never initialised) map.
 */
void weir_keymap_free(weir_keymap_t *m, void (*free_val)(void *val, void *arg), void *arg);
/** @brief Remove every key (free_val as in weir_keymap_free); the map stays usable. */
void weir_keymap_clear(weir_keymap_t *m, void (*free_val)(void *val, void *arg), void *arg);

/** @returns the hash of n key bytes (compute once, pass to find and add). */
uint64_t weir_keymap_hash(const void *p, size_t n);

/** @returns the id of the key, or WEIR_KEYMAP_NONE. */
static inline uint32_t weir_keymap_find(const weir_keymap_t *m, const void *p, size_t n, uint64_t h);
/**
 * @brief Add a key that is not in the map (n <= WEIR_KEYMAP_MAX_KEY), last
 *        in insertion order, with a zeroed value.
 * @returns its id.
 */
uint32_t weir_keymap_add(weir_keymap_t *m, const void *p, size_t n, uint64_t h);
/** @brief Remove the key with this id (the caller freed what its value owns). */
void weir_keymap_del(weir_keymap_t *m, uint32_t id);

/**
 * @brief Move key id to the end of the order (most recently used). O(1); a
 *        no-op when it is already last (a run of records of one key).
 */
static inline void weir_keymap_touch(weir_keymap_t *m, uint32_t id);

/** @returns the number of live keys. */
static inline uint32_t weir_keymap_count(const weir_keymap_t *m) { return m->n; }
static inline weir_keymap_ent_t *weir_keymap_ent(const weir_keymap_t *m, uint32_t id) {
    return (weir_keymap_ent_t *)(m->ents + (size_t)id * m->stride);
}
/** @returns the value of key id (valid until the next weir_keymap_add). */
static inline void *weir_keymap_val(const weir_keymap_t *m, uint32_t id) {
    return m->ents + (size_t)id * m->stride + sizeof(weir_keymap_ent_t);
}
/** @returns the key bytes of id (NUL-terminated, not counted in *n). */
static inline const char *weir_keymap_key(const weir_keymap_t *m, uint32_t id, size_t *n) {
    const weir_keymap_ent_t *e = weir_keymap_ent(m, id);
    *n = e->klen;
    return (const char *)m->slab + e->koff;
}
/** @returns the oldest live key's id, or WEIR_KEYMAP_NONE. */
static inline uint32_t weir_keymap_first(const weir_keymap_t *m) { return m->n ? m->head : WEIR_KEYMAP_NONE; }
/** @returns the id added after id (still live), or WEIR_KEYMAP_NONE. */
static inline uint32_t weir_keymap_next(const weir_keymap_t *m, uint32_t id) { return m->links[id].next; }
/** @returns the id before id in the order, or WEIR_KEYMAP_NONE. */
static inline uint32_t weir_keymap_prev(const weir_keymap_t *m, uint32_t id) { return m->links[id].prev; }

/**
 * @brief The live ids sorted by key bytes (bytewise, a prefix first): the order
 *        of state dumps, which must not depend on insertion order either.
 * @returns a new array of weir_keymap_count(m) ids (the caller frees it; NULL when empty).
 */
uint32_t *weir_keymap_sorted_ids(const weir_keymap_t *m);

/** @returns approximate bytes held by the map (for docs and benches). */
size_t weir_keymap_bytes(const weir_keymap_t *m);

static inline uint32_t weir_keymap_find(const weir_keymap_t *m, const void *p, size_t n, uint64_t h) {
    uint32_t h32 = (uint32_t)h;
    for (uint32_t i = h32 & m->tab_mask;; i = (i + 1) & m->tab_mask) {
        const struct weir_keymap_slot *s = &m->tab[i];
        if (!s->id1)
            return WEIR_KEYMAP_NONE;
        if (s->hash != h32)
            continue;
        const weir_keymap_ent_t *e = weir_keymap_ent(m, s->id1 - 1);
        if (e->klen == n && (!n || !memcmp(m->slab + e->koff, p, n)))
            return s->id1 - 1;
    }
}

static inline void weir_keymap_touch(weir_keymap_t *m, uint32_t id) {
    if (id == m->tail)
        return;
    weir_keymap_link_t *l = &m->links[id];
    /* Not the tail, so l->next exists. */
    m->links[l->next].prev = l->prev;
    if (l->prev != WEIR_KEYMAP_NONE)
        m->links[l->prev].next = l->next;
    else
        m->head = l->next;
    l->prev = m->tail;
    l->next = WEIR_KEYMAP_NONE;
    m->links[m->tail].next = id;
    m->tail = id;
}

#endif
