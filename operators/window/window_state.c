/*
 * window_state.c: the keyed state of a window node, built so that a record in
 * steady state costs one hash probe and no allocation:
 *  - keys live in a weir_keymap (processor/core/keymap.h): stable ids, one
 *    wkey_t per key (+ its wslide_t when sliding) as the value;
 *  - panes and sessions are fixed-size elements of one pool, linked per key;
 *  - timers are a binary min-heap of (time, key seq, key), so that a watermark
 *    that fires nothing costs one comparison with the heap's top.
 * Every array grows by doubling; nothing shrinks (a task's high-water mark).
 */
#include <stdlib.h>
#include <string.h>

#include "window_int.h"

#define NONE32 UINT32_MAX

void wstate_init(wstate_t *st, int naggs, bool sliding) {
    memset(st, 0, sizeof(*st));
    st->naggs = naggs;
    st->wfree = NONE32;
    /* Sliding panes: own states + suffix states + one more state whose n is the suffix's rows. */
    st->wsize = sizeof(wwin_t) + (size_t)(sliding ? 2 * naggs + 1 : naggs) * sizeof(wagg_state_t);
    st->slide_size = sliding ? sizeof(wslide_t) + (size_t)naggs * sizeof(wagg_state_t) : 0;
    weir_keymap_init(&st->keys, sizeof(wkey_t) + st->slide_size);
}

void wstate_free(wstate_t *st) {
    weir_keymap_free(&st->keys, NULL, NULL);
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

/* ---- keys ---- */

uint32_t wstate_key_add(wstate_t *st, const void *p, size_t n, uint64_t h) {
    uint32_t k = weir_keymap_add(&st->keys, p, n, h);
    wkey_t *key = wstate_key(st, k);
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
    return k;
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
    wkey_t *key = wstate_key(st, k);
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
    wkey_t *key = wstate_key(st, k);
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
    wtimer_t e = {.t = t, .seq = wstate_key(st, k)->seq, .key = k};
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
    return weir_keymap_bytes(&st->keys) + (size_t)st->wcap * st->wsize + st->heap_cap * sizeof(wtimer_t);
}
