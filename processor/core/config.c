/* The pipeline file as a placed tree (libyaml event parser) and config maps. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct cfg_root {
    weir_cfg_t node; /* first member: the root map is freed as a cfg_root */
    char *file;
} cfg_root_t;

static weir_cfg_t *cfg_new(weir_cfg_kind_t kind, const char *file, const yaml_mark_t *m) {
    weir_cfg_t *c = weir_calloc(1, sizeof(*c));
    c->kind = kind;
    c->file = file;
    c->line = (int)m->line + 1;
    c->col = (int)m->column + 1;
    return c;
}

static void cfg_push(weir_cfg_t *parent, char *key, int key_line, int key_col, weir_cfg_t *child) {
    size_t n = parent->n + 1;
    parent->items = weir_realloc(parent->items, n * sizeof(*parent->items));
    parent->items[parent->n] = child;
    if (parent->kind == WEIR_CFG_MAP) {
        parent->keys = weir_realloc(parent->keys, n * sizeof(*parent->keys));
        parent->key_lines = weir_realloc(parent->key_lines, n * sizeof(int));
        parent->key_cols = weir_realloc(parent->key_cols, n * sizeof(int));
        parent->used = weir_realloc(parent->used, n * sizeof(bool));
        parent->keys[parent->n] = key;
        parent->key_lines[parent->n] = key_line;
        parent->key_cols[parent->n] = key_col;
        parent->used[parent->n] = false;
    }
    parent->n = n;
}

static void cfg_free_node(weir_cfg_t *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        cfg_free_node(c->items[i]);
        if (c->keys)
            free(c->keys[i]);
    }
    free(c->items);
    free(c->keys);
    free(c->key_lines);
    free(c->key_cols);
    free(c->used);
    free(c->scalar);
    free(c);
}

void weir_cfg_destroy(weir_cfg_t *c) {
    if (!c)
        return;
    char *file = (char *)c->file;
    cfg_free_node(c);
    free(file);
}

/* Recursive descent over libyaml events. */
typedef struct {
    yaml_parser_t parser;
    const char *file;
    char *errstr;
    size_t errstr_size;
    int depth;
} yp_t;

static int yp_next(yp_t *y, yaml_event_t *ev) {
    if (!yaml_parser_parse(&y->parser, ev)) {
        return weir_err(y->errstr, y->errstr_size, "%s:%zu:%zu: YAML syntax error: %s%s%s", y->file,
                        y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1,
                        y->parser.problem ? y->parser.problem : "invalid YAML", y->parser.context ? " " : "",
                        y->parser.context ? y->parser.context : "");
    }
    return WEIR_OK;
}

static weir_cfg_t *yp_node(yp_t *y, yaml_event_t *ev);

static weir_cfg_t *yp_collection(yp_t *y, yaml_event_t *start, weir_cfg_kind_t kind) {
    weir_cfg_t *c = cfg_new(kind, y->file, &start->start_mark);
    yaml_event_type_t end = kind == WEIR_CFG_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    if (++y->depth > 64) {
        weir_err(y->errstr, y->errstr_size, "%s:%d: nesting too deep", y->file, c->line);
        goto fail;
    }
    for (;;) {
        yaml_event_t ev;
        if (yp_next(y, &ev))
            goto fail;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            break;
        }
        if (kind == WEIR_CFG_SEQ) {
            weir_cfg_t *item = yp_node(y, &ev);
            yaml_event_delete(&ev);
            if (!item)
                goto fail;
            cfg_push(c, NULL, 0, 0, item);
            continue;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            weir_err(y->errstr, y->errstr_size, "%s:%zu:%zu: a map key must be a plain scalar", y->file,
                     ev.start_mark.line + 1, ev.start_mark.column + 1);
            yaml_event_delete(&ev);
            goto fail;
        }
        char *key = weir_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        int key_line = (int)ev.start_mark.line + 1;
        int key_col = (int)ev.start_mark.column + 1;
        yaml_event_delete(&ev);
        for (size_t i = 0; i < c->n; i++)
            if (!strcmp(c->keys[i], key)) {
                weir_err(y->errstr, y->errstr_size, "%s:%d:%d: duplicate key '%s' (first at line %d)", y->file,
                         key_line, key_col, key, c->key_lines[i]);
                free(key);
                goto fail;
            }
        if (yp_next(y, &ev)) {
            free(key);
            goto fail;
        }
        weir_cfg_t *val = yp_node(y, &ev);
        yaml_event_delete(&ev);
        if (!val) {
            free(key);
            goto fail;
        }
        cfg_push(c, key, key_line, key_col, val);
    }
    y->depth--;
    return c;
fail:
    cfg_free_node(c);
    return NULL;
}

static weir_cfg_t *yp_node(yp_t *y, yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        weir_cfg_t *c = cfg_new(WEIR_CFG_SCALAR, y->file, &ev->start_mark);
        c->scalar = weir_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        c->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        return c;
    }
    case YAML_MAPPING_START_EVENT: return yp_collection(y, ev, WEIR_CFG_MAP);
    case YAML_SEQUENCE_START_EVENT: return yp_collection(y, ev, WEIR_CFG_SEQ);
    case YAML_ALIAS_EVENT:
        weir_err(y->errstr, y->errstr_size, "%s:%zu:%zu: YAML aliases are not supported", y->file,
                 ev->start_mark.line + 1, ev->start_mark.column + 1);
        return NULL;
    default:
        weir_err(y->errstr, y->errstr_size, "%s:%zu:%zu: unexpected YAML event", y->file, ev->start_mark.line + 1,
                 ev->start_mark.column + 1);
        return NULL;
    }
}

weir_cfg_t *weir_cfg_load_string(const char *name, const char *text, char *errstr, size_t errstr_size) {
    yp_t y = {.errstr = errstr, .errstr_size = errstr_size};
    char *file = weir_strdup(name);
    y.file = file;
    weir_cfg_t *root = NULL;
    yaml_parser_initialize(&y.parser);
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, strlen(text));
    yaml_event_t ev;
    /* stream start, document start */
    for (;;) {
        if (yp_next(&y, &ev))
            goto done;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            weir_err(errstr, errstr_size, "%s:1: the file is empty", name);
            goto done;
        }
        root = yp_node(&y, &ev);
        if (root && root->kind != WEIR_CFG_MAP) {
            weir_cfg_error(root, errstr, errstr_size, "the top level must be a map of keys");
            cfg_free_node(root);
            root = NULL;
        }
        yaml_event_delete(&ev);
        break;
    }
    if (root) {
        /* Only one document. */
        if (yp_next(&y, &ev) == WEIR_OK) {
            bool extra = ev.type == YAML_DOCUMENT_END_EVENT ? false : true;
            yaml_event_delete(&ev);
            if (!extra && yp_next(&y, &ev) == WEIR_OK) {
                extra = ev.type != YAML_STREAM_END_EVENT;
                if (extra)
                    weir_err(errstr, errstr_size, "%s:%zu: only one YAML document is allowed", name,
                             ev.start_mark.line + 1);
                yaml_event_delete(&ev);
            } else if (!extra) {
                extra = true;
            }
            if (extra) {
                cfg_free_node(root);
                root = NULL;
            }
        } else {
            cfg_free_node(root);
            root = NULL;
        }
    }
done:
    yaml_parser_delete(&y.parser);
    if (!root) {
        free(file);
        return NULL;
    }
    return root; /* root->file == file, freed by weir_cfg_destroy */
}

weir_cfg_t *weir_cfg_load_file(const char *path, char *errstr, size_t errstr_size) {
    size_t len;
    char *text = weir_read_file(path, WEIR_MAX_CONFIG_FILE, &len, errstr, errstr_size);
    if (!text)
        return NULL;
    weir_cfg_t *c = weir_cfg_load_string(path, text, errstr, errstr_size);
    free(text);
    return c;
}

const weir_cfg_t *weir_cfg_get(const weir_cfg_t *map, const char *key) {
    if (!map || map->kind != WEIR_CFG_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) {
            map->used[i] = true;
            return map->items[i];
        }
    return NULL;
}

int weir_cfg_error(const weir_cfg_t *at, char *errstr, size_t errstr_size, const char *fmt, ...) {
    char msg[WEIR_ERRSTR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (at)
        return weir_err(errstr, errstr_size, "%s:%d:%d: %s", at->file, at->line, at->col, msg);
    return weir_err(errstr, errstr_size, "%s", msg);
}

int weir_cfg_check_unused(const weir_cfg_t *map, const char *what, char *errstr, size_t errstr_size) {
    if (!map || map->kind != WEIR_CFG_MAP)
        return WEIR_OK;
    for (size_t i = 0; i < map->n; i++)
        if (!map->used[i])
            return weir_err(errstr, errstr_size, "%s:%d:%d: %s: unknown key '%s'", map->file, map->key_lines[i],
                            map->key_cols[i], what, map->keys[i]);
    return WEIR_OK;
}

static int want_scalar(const weir_cfg_t *c, const char *what, char *errstr, size_t errstr_size) {
    if (c->kind != WEIR_CFG_SCALAR)
        return weir_cfg_error(c, errstr, errstr_size, "expected %s, got a %s", what,
                              c->kind == WEIR_CFG_MAP ? "map" : "list");
    return WEIR_OK;
}

int weir_cfg_as_str(const weir_cfg_t *c, const char **out, char *errstr, size_t errstr_size) {
    if (want_scalar(c, "a string", errstr, errstr_size))
        return WEIR_ERR;
    *out = c->scalar;
    return WEIR_OK;
}

int weir_cfg_as_long(const weir_cfg_t *c, int64_t *out, char *errstr, size_t errstr_size) {
    if (want_scalar(c, "an integer", errstr, errstr_size))
        return WEIR_ERR;
    char *end;
    errno = 0;
    long long v = strtoll(c->scalar, &end, 10);
    if (c->quoted || end == c->scalar || *end || errno)
        return weir_cfg_error(c, errstr, errstr_size, "expected an integer, got '%s'", c->scalar);
    *out = v;
    return WEIR_OK;
}

int weir_cfg_as_double(const weir_cfg_t *c, double *out, char *errstr, size_t errstr_size) {
    if (want_scalar(c, "a number", errstr, errstr_size))
        return WEIR_ERR;
    char *end;
    double v = strtod(c->scalar, &end);
    if (c->quoted || end == c->scalar || *end || !isfinite(v))
        return weir_cfg_error(c, errstr, errstr_size, "expected a number, got '%s'", c->scalar);
    *out = v;
    return WEIR_OK;
}

int weir_cfg_as_bool(const weir_cfg_t *c, bool *out, char *errstr, size_t errstr_size) {
    if (want_scalar(c, "true or false", errstr, errstr_size))
        return WEIR_ERR;
    if (!strcasecmp(c->scalar, "true") || !strcasecmp(c->scalar, "yes") || !strcasecmp(c->scalar, "on"))
        *out = true;
    else if (!strcasecmp(c->scalar, "false") || !strcasecmp(c->scalar, "no") || !strcasecmp(c->scalar, "off"))
        *out = false;
    else
        return weir_cfg_error(c, errstr, errstr_size, "expected true or false, got '%s'", c->scalar);
    return WEIR_OK;
}

int weir_cfg_as_duration(const weir_cfg_t *c, int64_t *ms, char *errstr, size_t errstr_size) {
    if (want_scalar(c, "a duration", errstr, errstr_size))
        return WEIR_ERR;
    /* A unit is required in a pipeline file (`size: 10` is 10 ms or 10 s? say which); 0 needs none. The
     * command line keeps accepting bare milliseconds. Defaults in config maps are trusted text. */
    size_t n = strlen(c->scalar);
    bool bare = n > 0 && isdigit((unsigned char)c->scalar[n - 1]) && strcmp(c->file, "<default>");
    char *end;
    bool zero = strtod(c->scalar, &end) == 0 && end != c->scalar && !*end;
    if (weir_parse_duration(c->scalar, ms) || (bare && !zero))
        return weir_cfg_error(c, errstr, errstr_size,
                              "expected a duration with a unit such as 500ms, 10s, 5m, 1h or 1d, got '%s'", c->scalar);
    return WEIR_OK;
}

static int cm_set(const weir_config_map_t *e, const weir_cfg_t *c, const char *text, void *dst, char *errstr,
                  size_t errstr_size) {
    char *field = (char *)dst + e->offset;
    weir_cfg_t tmp = {.kind = WEIR_CFG_SCALAR, .file = "<default>", .scalar = (char *)text};
    if (!c)
        c = &tmp;
    switch (e->type) {
    case WEIR_CM_STR: {
        const char *s;
        if (weir_cfg_as_str(c, &s, errstr, errstr_size))
            return WEIR_ERR;
        *(const char **)field = s == tmp.scalar ? text : s;
        return WEIR_OK;
    }
    case WEIR_CM_LONG: return weir_cfg_as_long(c, (int64_t *)field, errstr, errstr_size);
    case WEIR_CM_DOUBLE: return weir_cfg_as_double(c, (double *)field, errstr, errstr_size);
    case WEIR_CM_BOOL: return weir_cfg_as_bool(c, (bool *)field, errstr, errstr_size);
    case WEIR_CM_DURATION: return weir_cfg_as_duration(c, (int64_t *)field, errstr, errstr_size);
    case WEIR_CM_CUSTOM: return WEIR_OK;
    }
    return WEIR_OK;
}

int weir_config_map_apply(const weir_config_map_t *cm, const weir_cfg_t *map, void *dst, char *errstr,
                          size_t errstr_size) {
    for (const weir_config_map_t *e = cm; e && e->name; e++) {
        const weir_cfg_t *c = weir_cfg_get(map, e->name);
        if (!c && e->required)
            return weir_cfg_error(map, errstr, errstr_size, "missing required key '%s' (%s)", e->name,
                                  e->desc ? e->desc : "");
        if (e->type == WEIR_CM_CUSTOM)
            continue;
        if (c) {
            if (cm_set(e, c, NULL, dst, errstr, errstr_size))
                return WEIR_ERR;
        } else if (e->def) {
            if (cm_set(e, NULL, e->def, dst, errstr, errstr_size))
                return WEIR_ERR;
        }
    }
    return WEIR_OK;
}
