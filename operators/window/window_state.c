/*
 * window_state.c: the keyed state of a window node, built so that a record in
 * steady state costs one hash probe and no allocation:
 *  - keys live in a pool of wkey_t (stable indices) found through an
 *    open-addressing table (linear probing, load <= 1/2, backward-shift delete);
 *  - key bytes live in one slab, recycled through per-size-class free lists;
 *  - panes and sessions are fixed-size elements of one pool, linked per key;
 *  - timers are a binary min-heap of (time, key seq, key), so that a watermark
 *    that fires nothing costs one comparison with the heap's top.
 * Every array grows by doubling; nothing shrinks (a task's high-water mark).
 */
#include <stdlib.h>
#include <string.h>

#include "window_int.h"

#define NONE32 UINT32_MAX
#define SLAB_CLASSES (WINDOW_MAX_KEY / 16 + 1)

void wstate_init(wstate_t *st, int naggs, bool sliding) {
    memset(st, 0, sizeof(*st));
    st->naggs = naggs;
    st->key_free = NONE32;
    st->wfree = NONE32;
    /* Sliding panes: own states + suffix states + one more state whose n is the suffix's rows. */
    st->wsize = sizeof(wwin_t) + (size_t)(sliding ? 2 * naggs + 1 : naggs) * sizeof(wagg_state_t);
    st->slide_size = sliding ? sizeof(wslide_t) + (size_t)naggs * sizeof(wagg_state_t) : 0;
    st->slab_free = weir_malloc(SLAB_CLASSES * sizeof(uint32_t));
    memset(st->slab_free, 0xff, SLAB_CLASSES * sizeof(uint32_t));
    st->tab_mask = 1023;
    st->tab = weir_calloc(st->tab_mask + 1, sizeof(*st->tab));
}

void wstate_free(wstate_t *st) {
    free(st->keys);
    free(st->slide);
    free(st->tab);
    free(st->slab);
    free(st->slab_free);
    free(st->wmem);
    free(st->heap);
    memset(st, 0, sizeof(*st));
}

void wstate_clear(wstate_t *st) {
    int naggs = st->naggs;
    bool sliding = st->slide_size != 0;
    wstate_free(st);
    wstate_init(st, naggs, sliding);
}

/* A small multiply-xorshift hash (8 bytes per step, then a murmur3 finaliser). */
uint64_t wstate_hash(const void *p, size_t n) {
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

/* ---- key slab ---- */

static uint32_t slab_alloc(wstate_t *st, size_t n) {
    size_t cls = n ? (n + 15) / 16 : 1;
    uint32_t off = st->slab_free[cls];
    if (off != NONE32) {
        memcpy(&st->slab_free[cls], st->slab + off, sizeof(uint32_t));
        return off;
    }
    size_t need = cls * 16;
    if (st->slab_len + need > st->slab_cap) {
        size_t cap = st->slab_cap ? st->slab_cap * 2 : 4096;
        while (cap < st->slab_len + need)
            cap *= 2;
        if (cap > UINT32_MAX)
            cap = UINT32_MAX; /* 4 GiB of key bytes: the allocation below fails loudly first */
        st->slab = weir_realloc(st->slab, cap);
        st->slab_cap = cap;
    }
    off = (uint32_t)st->slab_len;
    st->slab_len += need;
    return off;
}

static void slab_release(wstate_t *st, uint32_t off, size_t n) {
    size_t cls = n ? (n + 15) / 16 : 1;
    memcpy(st->slab + off, &st->slab_free[cls], sizeof(uint32_t));
    st->slab_free[cls] = off;
}

/* ---- key index ---- */

int64_t wstate_key_find(const wstate_t *st, const void *p, size_t n, uint64_t h) {
    uint32_t h32 = (uint32_t)h;
    for (uint32_t i = h32 & st->tab_mask;; i = (i + 1) & st->tab_mask) {
        const struct wslot *s = &st->tab[i];
        if (!s->idx1)
            return -1;
        if (s->hash != h32)
            continue;
        const wkey_t *k = &st->keys[s->idx1 - 1];
        if (k->klen == n && !memcmp(st->slab + k->koff, p, n))
            return s->idx1 - 1;
    }
}

static void tab_put(struct wslot *tab, uint32_t mask, uint32_t h32, uint32_t idx1) {
    uint32_t i = h32 & mask;
    while (tab[i].idx1)
        i = (i + 1) & mask;
    tab[i].hash = h32;
    tab[i].idx1 = idx1;
}

static void tab_grow(wstate_t *st) {
    uint32_t nmask = st->tab_mask * 2 + 1;
    struct wslot *nt = weir_calloc((size_t)nmask + 1, sizeof(*nt));
    for (uint32_t i = 0; i <= st->tab_mask; i++)
        if (st->tab[i].idx1)
            tab_put(nt, nmask, st->tab[i].hash, st->tab[i].idx1);
    free(st->tab);
    st->tab = nt;
    st->tab_mask = nmask;
}

uint32_t wstate_key_add(wstate_t *st, const void *p, size_t n, uint64_t h) {
    if ((uint64_t)(st->nkeys + 1) * 2 > (uint64_t)st->tab_mask + 1)
        tab_grow(st);
    uint32_t k;
    if (st->key_free != NONE32) {
        k = st->key_free;
        st->key_free = (uint32_t)st->keys[k].tail;
    } else {
        if (st->keys_used == st->keys_cap) {
            st->keys_cap = st->keys_cap ? st->keys_cap * 2 : 256;
            st->keys = weir_realloc(st->keys, (size_t)st->keys_cap * sizeof(wkey_t));
            if (st->slide_size)
                st->slide = weir_realloc(st->slide, (size_t)st->keys_cap * st->slide_size);
        }
        k = st->keys_used++;
    }
    uint32_t off = slab_alloc(st, n);
    if (n)
        memcpy(st->slab + off, p, n);
    wkey_t *key = &st->keys[k];
    key->hash = (uint32_t)h;
    key->klen = (uint32_t)n;
    key->koff = off;
    key->head = key->tail = -1;
    key->nwin = 0;
    key->seq = ++st->next_seq;
    key->sched = WINDOW_NEVER;
    key->fired_upto = key->early_upto = WINDOW_WM_NONE;
    if (st->slide_size) {
        wslide_t *sl = wstate_slide(st, k);
        sl->fblk = sl->bblk = WINDOW_NEVER;
        sl->bnext = -1;
    }
    tab_put(st->tab, st->tab_mask, key->hash, k + 1);
    st->nkeys++;
    return k;
}

void wstate_key_del(wstate_t *st, uint32_t k) {
    wkey_t *key = &st->keys[k];
    uint32_t mask = st->tab_mask;
    uint32_t i = key->hash & mask;
    while (st->tab[i].idx1 != k + 1)
        i = (i + 1) & mask;
    /* Backward-shift deletion: move later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; st->tab[j].idx1; j = (j + 1) & mask) {
        uint32_t home = st->tab[j].hash & mask;
        /* j may move to hole if its home is not in the cyclic range (hole, j]. */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            st->tab[hole] = st->tab[j];
            hole = j;
        }
    }
    st->tab[hole].idx1 = 0;
    slab_release(st, key->koff, key->klen);
    key->seq = 0;
    key->tail = (int32_t)st->key_free;
    st->key_free = k;
    st->nkeys--;
}

/* ---- window pool ---- */

int32_t wstate_win_new(wstate_t *st, uint32_t k, int64_t start, int32_t before) {
    uint32_t i;
    if (st->wfree != NONE32) {
        i = st->wfree;
        st->wfree = (uint32_t)wstate_win(st, (int32_t)i)->next;
    } else {
        if (st->wused == st->wcap) {
            st->wcap = st->wcap ? st->wcap * 2 : 256;
            st->wmem = weir_realloc(st->wmem, (size_t)st->wcap * st->wsize);
        }
        i = st->wused++;
    }
    wwin_t *w = wstate_win(st, (int32_t)i);
    memset(w, 0, st->wsize);
    w->start = start;
    w->last_ts = start;
    wkey_t *key = &st->keys[k];
    if (before < 0) {
        w->prev = key->tail;
        w->next = -1;
        if (key->tail >= 0)
            wstate_win(st, key->tail)->next = (int32_t)i;
        else
            key->head = (int32_t)i;
        key->tail = (int32_t)i;
    } else {
        wwin_t *b = wstate_win(st, before);
        w->next = before;
        w->prev = b->prev;
        if (b->prev >= 0)
            wstate_win(st, b->prev)->next = (int32_t)i;
        else
            key->head = (int32_t)i;
        b->prev = (int32_t)i;
    }
    key->nwin++;
    st->nwin++;
    return (int32_t)i;
}

void wstate_win_del(wstate_t *st, uint32_t k, int32_t i) {
    wkey_t *key = &st->keys[k];
    wwin_t *w = wstate_win(st, i);
    if (w->prev >= 0)
        wstate_win(st, w->prev)->next = w->next;
    else
        key->head = w->next;
    if (w->next >= 0)
        wstate_win(st, w->next)->prev = w->prev;
    else
        key->tail = w->prev;
    w->next = (int32_t)st->wfree;
    st->wfree = (uint32_t)i;
    key->nwin--;
    st->nwin--;
}

/* ---- timers ---- */

static inline bool timer_less(const wtimer_t *a, const wtimer_t *b) {
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

void wstate_timer_push(wstate_t *st, int64_t t, uint32_t k) {
    if (st->nheap == st->heap_cap) {
        st->heap_cap = st->heap_cap ? st->heap_cap * 2 : 256;
        st->heap = weir_realloc(st->heap, st->heap_cap * sizeof(wtimer_t));
    }
    wtimer_t e = {.t = t, .seq = st->keys[k].seq, .key = k};
    size_t i = st->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(&e, &st->heap[parent]))
            break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = e;
}

bool wstate_timer_pop(wstate_t *st, int64_t limit, wtimer_t *out) {
    if (!st->nheap || st->heap[0].t > limit)
        return false;
    *out = st->heap[0];
    wtimer_t last = st->heap[--st->nheap];
    size_t n = st->nheap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_less(&st->heap[c + 1], &st->heap[c]))
            c++;
        if (!timer_less(&st->heap[c], &last))
            break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    if (n)
        st->heap[i] = last;
    return true;
}

size_t wstate_bytes(const wstate_t *st) {
    return (size_t)st->keys_cap * (sizeof(wkey_t) + st->slide_size) +
           ((size_t)st->tab_mask + 1) * sizeof(struct wslot) + st->slab_cap + SLAB_CLASSES * sizeof(uint32_t) +
           (size_t)st->wcap * st->wsize + st->heap_cap * sizeof(wtimer_t);
}
