/**
 * @file window_int.h
 * @brief Internal-but-shared declarations of the window operator: the compiled
 *        configuration, the aggregate functions (window_agg.c) and the keyed
 *        state (window_state.c: keys in a weir_keymap, window pool, timer heap).
 *
 * Nothing here is public API: the operator is reached only through
 * `weir_window_class` (window.c). See README.md in this folder for the
 * semantics and the memory layout.
 */
#ifndef WEIR_WINDOW_INT_H
#define WEIR_WINDOW_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "expr.h"
#include "key.h"
#include "keymap.h"
#include "operator.h"

/** Snapshot format version of the "window" frame. */
#define WINDOW_SNAPSHOT_VERSION 1
/** Event times outside (-2^60, 2^60) ms are rejected: no overflow in time arithmetic. */
#define WINDOW_TS_LIMIT ((int64_t)1 << 60)
/** Panes per window (size / gcd(size, slide)) at most, hence windows per record (size / slide) too: one record
 *  of a new key otherwise opens, and at end of input fires, that many windows (docs/windows.md, "Limits"). */
#define WINDOW_MAX_PANES 100000
/** The watermark before any: far below any accepted event time. */
#define WINDOW_WM_NONE (-((int64_t)1 << 62))
/** "No time": an empty timer. */
#define WINDOW_NEVER INT64_MAX

/* ---- aggregates (window_agg.c) ---- */

typedef enum wagg_kind {
    WAGG_COUNT, /**< count() rows, or count(x) non-null values */
    WAGG_SUM,
    WAGG_MEAN,
    WAGG_MIN,
    WAGG_MAX,
    WAGG_STDDEV,   /**< sample standard deviation (Welford / Chan merge) */
    WAGG_VARIANCE, /**< sample variance */
    WAGG_FIRST,    /**< value at the smallest event time (earliest arrival on ties) */
    WAGG_LAST,     /**< value at the largest event time (latest arrival on ties) */
} wagg_kind_t;

/** One configured aggregate, e.g. `mean_temp: mean(temperature)`. */
typedef struct wagg_spec {
    wagg_kind_t kind;
    const char *name; /**< output field name (borrowed from the cfg tree) */
    char *arg_src;    /**< argument text, owned; NULL for count() */
    weir_expr_t *arg; /**< compiled argument, owned; NULL for count() */
    int arg_slot;     /**< argument is a plain input field: its slot, else -1 */
    int arg_ref;      /**< first aggregate with the same argument text (evaluated once) */
    bool is_long;     /**< argument is a long: sum/min/max/first/last stay long */
    int out_slot;     /**< output slot of the result */
    int nulls_slot;   /**< output slot of `<name>_nulls`, or -1 */
} wagg_spec_t;

/**
 * Running state of one aggregate in one pane or window: 24 bytes whatever the
 * function, so that memory per open window is O(number of aggregates).
 */
typedef struct wagg_state {
    int64_t n; /**< values aggregated (non-null) */
    union {
        double d;
        int64_t i;
    } v; /**< sum, Welford mean, min, max, first or last */
    union {
        double m2;
        int64_t ts;
    } w; /**< Welford M2 (stddev/variance) or event time of first/last */
} wagg_state_t;

/**
 * @brief Parse "fn(expr)" held by `at`, compile the argument against the
 *        plan's input, fill *a. Errors are placed at the scalar with the column.
 */
int wagg_parse(const weir_plan_t *plan, const weir_cfg_t *at, const char *name, wagg_spec_t *a, char *errstr,
               size_t errstr_size);
/** @returns the function's name ("count", "sum", ...). */
const char *wagg_kind_name(wagg_kind_t k);
/** @brief Output type and nullability of an aggregate. */
void wagg_out_type(const wagg_spec_t *a, weir_type_t *t, bool *nullable);
/** @brief Add one value (x NULL: a row for count()) observed at event time ts. */
void wagg_update(const wagg_spec_t *a, wagg_state_t *s, const weir_value_t *x, int64_t ts);
/** @brief dst := dst ⊕ src (both states of the same aggregate). */
void wagg_merge(const wagg_spec_t *a, wagg_state_t *dst, const wagg_state_t *src);
/** @brief The result over `rows` records into *out. */
void wagg_result(const wagg_spec_t *a, const wagg_state_t *s, int64_t rows, weir_value_t *out);

/* ---- compiled configuration (window.c) ---- */

typedef enum window_type { WINDOW_TUMBLING, WINDOW_SLIDING, WINDOW_SESSION } window_type_t;

typedef struct window_conf {
    /* filled by the config map */
    const char *type_src;
    int64_t size, slide, gap, lateness, max_keys, max_open_windows;
    bool emit_early, count_nulls;
    /* derived */
    window_type_t type;
    int64_t pane;        /**< pane width: gcd(size, slide) (tumbling: size) */
    bool early;          /**< emit_early and lateness > 0 */
    weir_key_spec_t key; /**< `key:` (key.h: an expression; absent: the record key) */
    int key_out_slot;    /**< output slot of the key under its own name, or -1 */
    int naggs;
    wagg_spec_t *aggs;
    /* output slots */
    int slot_key, slot_start, slot_end, slot_last_ts, slot_final, slot_id;
} window_conf_t;

/* ---- keyed state (window_state.c) ---- */

/** One key with open windows: the value of its entry in the keymap (sliding: a wslide_t follows it). */
typedef struct wkey {
    int32_t head, tail; /**< the key's panes/sessions, ascending start */
    uint32_t nwin;      /**< panes/sessions in the list */
    uint32_t pad;
    uint64_t seq;       /**< creation number: ties between keys fire in this order (and stale timers are told apart) */
    int64_t sched;      /**< time of the key's live timer entry, WINDOW_NEVER if none */
    int64_t fired_upto; /**< tumbling/sliding: start of the last window closed for this key */
    int64_t early_upto; /**< tumbling/sliding: start of the last window emitted early */
} wkey_t;

/**
 * Sliding windows only: a key's two-stacks cache (see README.md, "Sliding
 * windows: two stacks over panes"). Panes are grouped in blocks of `size`
 * aligned to the epoch; a window [s, s + size) is the suffix of block
 * B = align(s, size) from s (the "front": suffix aggregates cached in the
 * panes) ⊕ the prefix of block B + size up to s + size (the "back": one
 * running aggregate here). Both are pure functions of the panes' contents,
 * so the cache is never snapshotted: it is rebuilt, bit for bit, on demand.
 */
typedef struct wslide {
    int64_t fblk;  /**< block whose panes hold valid suffix aggregates; WINDOW_NEVER = none */
    int64_t bblk;  /**< block of the back prefix; WINDOW_NEVER = invalid */
    int64_t bupto; /**< the back covers the panes in [bblk, bupto) */
    int64_t brows; /**< records in the back */
    int32_t bnext; /**< first pane with start >= bupto, -1 = none yet */
    uint32_t pad;
    wagg_state_t bagg[]; /**< naggs states: the back aggregate */
} wslide_t;

/** A pane (tumbling/sliding) or a session: a fixed-size element of the window pool. */
typedef struct wwin {
    int64_t start;       /**< pane start, or session start (first event time) */
    int64_t last_ts;     /**< session: last event time */
    int64_t rows;        /**< records aggregated */
    int32_t prev, next;  /**< neighbours in the key's list (next: free-list link when free) */
    uint32_t early_done; /**< session: emitted early, not yet final */
    uint32_t pad;
    wagg_state_t agg[]; /**< conf->naggs states; sliding panes then hold naggs suffix
                             states and the suffix's row count (wstate_suf, wstate_suf_rows) */
} wwin_t;

/** A timer: key `key` has something to fire at time t. Ordered by (t, seq). */
typedef struct wtimer {
    int64_t t;
    uint64_t seq;
    uint32_t key;
} wtimer_t;

/** Per-task state of one window node. */
typedef struct wstate {
    int naggs;
    /* keys: key bytes -> wkey_t (+ wslide_t when sliding); ids are stable while a key lives */
    weir_keymap_t keys;
    size_t slide_size; /**< bytes per wslide_t, 0 = no two-stacks cache */
    /* windows: a pool of fixed-size wwin_t elements */
    uint8_t *wmem;
    size_t wsize; /**< bytes per element */
    uint32_t wcap, wused, wfree;
    uint64_t nwin; /**< live panes/sessions */
    /* timers: a binary min-heap */
    wtimer_t *heap;
    size_t nheap, heap_cap;
    uint64_t next_seq;
} wstate_t;

/** @brief Empty state; `sliding`: panes carry suffix aggregates and keys a wslide_t. */
void wstate_init(wstate_t *st, int naggs, bool sliding);
void wstate_free(wstate_t *st);
/** @brief Drop everything (restore starts from an empty state). */
void wstate_clear(wstate_t *st);

/** @returns key k's state (valid until the next wstate_key_add). */
static inline wkey_t *wstate_key(const wstate_t *st, uint32_t k) { return (wkey_t *)weir_keymap_val(&st->keys, k); }
/** @returns a new key (which must not exist) with an empty window list. */
uint32_t wstate_key_add(wstate_t *st, const void *p, size_t n, uint64_t h);
/** @brief Remove a key whose window list is empty. */
static inline void wstate_key_del(wstate_t *st, uint32_t k) { weir_keymap_del(&st->keys, k); }

static inline wwin_t *wstate_win(const wstate_t *st, int32_t i) { return (wwin_t *)(st->wmem + (size_t)i * st->wsize); }
/** @returns a new zeroed window linked into key k before `before` (-1: at the tail). */
int32_t wstate_win_new(wstate_t *st, uint32_t k, int64_t start, int32_t before);
/** @brief Unlink window i from key k and free it. */
void wstate_win_del(wstate_t *st, uint32_t k, int32_t i);

/** @returns key k's two-stacks cache (sliding windows only). */
static inline wslide_t *wstate_slide(const wstate_t *st, uint32_t k) { return (wslide_t *)(wstate_key(st, k) + 1); }
/** @returns the suffix aggregates of a sliding pane (naggs states after its own). */
static inline wagg_state_t *wstate_suf(const wstate_t *st, wwin_t *w) { return w->agg + st->naggs; }
/** @returns the row count of a sliding pane's suffix. */
static inline int64_t *wstate_suf_rows(const wstate_t *st, wwin_t *w) { return &w->agg[2 * st->naggs].n; }

void wstate_timer_push(wstate_t *st, int64_t t, uint32_t k);
/** @returns true and the earliest timer if its time is <= limit (it is removed). */
bool wstate_timer_pop(wstate_t *st, int64_t limit, wtimer_t *out);

/** @brief Approximate bytes held by the state (for docs and the bench). */
size_t wstate_bytes(const wstate_t *st);

#endif
