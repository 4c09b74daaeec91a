/**
 * @file config.h
 * @brief The pipeline file as a tree of maps, sequences and scalars, each
 *        remembering its file, line and column, plus a Fluent-Bit-style
 *        config map that fills a struct from a node's keys.
 *
 * Every configuration error names the place: weir_cfg_error() formats
 * "FILE:LINE:COL: message". Keys are marked when read, so that unknown keys
 * (typos) are reported too (weir_cfg_check_unused).
 */
#ifndef WEIR_CONFIG_H
#define WEIR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum weir_cfg_kind { WEIR_CFG_SCALAR, WEIR_CFG_MAP, WEIR_CFG_SEQ } weir_cfg_kind_t;

typedef struct weir_cfg {
    weir_cfg_kind_t kind;
    const char *file;        /**< path of the pipeline file (shared, owned by the root) */
    int line, col;           /**< 1-based position of this node */
    char *scalar;            /**< SCALAR: the text (owned) */
    bool quoted;             /**< SCALAR: was quoted in the file (a string, never a number) */
    size_t n;                /**< MAP/SEQ: number of items */
    char **keys;             /**< MAP: keys (owned) */
    int *key_lines;          /**< MAP: line of each key */
    int *key_cols;           /**< MAP: column of each key (a flow mapping has several keys on one line) */
    struct weir_cfg **items; /**< MAP/SEQ: children (owned) */
    bool *used;              /**< MAP: key was read */
} weir_cfg_t;

/** @brief Parse a YAML file. @returns the root (a map) or NULL with errstr set. */
weir_cfg_t *weir_cfg_load_file(const char *path, char *errstr, size_t errstr_size);
/** @brief Parse YAML text; `name` is used in error messages in place of a path. */
weir_cfg_t *weir_cfg_load_string(const char *name, const char *text, char *errstr, size_t errstr_size);
void weir_cfg_destroy(weir_cfg_t *c);

/** @brief Child of a map by key (marks it used), or NULL. */
const weir_cfg_t *weir_cfg_get(const weir_cfg_t *map, const char *key);
/** @brief Format "FILE:LINE:COL: msg" into errstr. @returns WEIR_ERR. */
int weir_cfg_error(const weir_cfg_t *at, char *errstr, size_t errstr_size, const char *fmt, ...) WEIR_PRINTF(4, 5);
/** @brief Error for the first key of map that was never read ("unknown key 'x'"). */
int weir_cfg_check_unused(const weir_cfg_t *map, const char *what, char *errstr, size_t errstr_size);

/* Typed scalar readers: each fails with a placed error when the node is not a
 * scalar of the right form. */
int weir_cfg_as_str(const weir_cfg_t *c, const char **out, char *errstr, size_t errstr_size);
int weir_cfg_as_long(const weir_cfg_t *c, int64_t *out, char *errstr, size_t errstr_size);
int weir_cfg_as_double(const weir_cfg_t *c, double *out, char *errstr, size_t errstr_size);
int weir_cfg_as_bool(const weir_cfg_t *c, bool *out, char *errstr, size_t errstr_size);
int weir_cfg_as_duration(const weir_cfg_t *c, int64_t *ms, char *errstr, size_t errstr_size);

/** Config map entry types. WEIR_CM_CUSTOM keys are declared (for docs and the
 *  unknown-key check) but parsed by the operator itself. */
typedef enum weir_cm_type {
    WEIR_CM_STR,      /**< char * (borrowed from the cfg tree, which outlives the plan) */
    WEIR_CM_LONG,     /**< int64_t */
    WEIR_CM_DOUBLE,   /**< double */
    WEIR_CM_BOOL,     /**< bool */
    WEIR_CM_DURATION, /**< int64_t milliseconds */
    WEIR_CM_CUSTOM,   /**< no automatic parsing */
} weir_cm_type_t;

/** One documented configuration key: Fluent Bit's config map. */
typedef struct weir_config_map {
    weir_cm_type_t type;
    const char *name;
    const char *def; /**< default as text, NULL = no default */
    bool required;
    size_t offset; /**< offsetof(struct, field) */
    const char *desc;
} weir_config_map_t;

/**
 * @brief Fill dst from the keys of map that appear in cm (terminated by an
 *        entry with name NULL), applying defaults; marks the keys used.
 * @returns WEIR_OK or WEIR_ERR with a placed message.
 */
int weir_config_map_apply(const weir_config_map_t *cm, const weir_cfg_t *map, void *dst, char *errstr,
                          size_t errstr_size);

#endif
