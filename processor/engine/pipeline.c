/* Pipeline files compiled into the operator graph. */
#include "pipeline.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "expr.h"
#include "key.h"

#ifndef WEIR_DATADIR
#define WEIR_DATADIR "."
#endif

typedef struct load_ctx {
    weir_pipeline_t *pl;
    char *dir;     /* folder of the pipeline file */
    int *state;    /* per node: 0 new, 1 compiling, 2 done */
    int order_pos; /* next free place in pl->order */
    char *errstr;
    size_t errstr_size;
} load_ctx_t;

static weir_schema_t *load_schema(load_ctx_t *lc, const weir_cfg_t *at) {
    const char *path;
    if (weir_cfg_as_str(at, &path, lc->errstr, lc->errstr_size))
        return NULL;
    char cand[4][4096];
    int n = 0;
    snprintf(cand[n++], sizeof(cand[0]), "%s", path);
    if (path[0] != '/') {
        snprintf(cand[n++], sizeof(cand[0]), "%s/%s", lc->dir, path);
        snprintf(cand[n++], sizeof(cand[0]), "%s/../%s", lc->dir, path);
        snprintf(cand[n++], sizeof(cand[0]), "%s/%s", WEIR_DATADIR, path);
    }
    for (int i = 0; i < n; i++) {
        if (access(cand[i], R_OK) == 0) {
            char msg[WEIR_ERRSTR_SIZE];
            weir_schema_t *s = weir_schema_load(cand[i], msg, sizeof(msg));
            if (!s)
                weir_cfg_error(at, lc->errstr, lc->errstr_size, "schema: %s", msg);
            return s;
        }
    }
    weir_cfg_error(at, lc->errstr, lc->errstr_size,
                   "schema '%s' not found (looked in the current folder and next to the pipeline file)", path);
    return NULL;
}

static int parse_format(load_ctx_t *lc, const weir_cfg_t *map, weir_format_t *fmt) {
    const weir_cfg_t *f = weir_cfg_get(map, "format");
    *fmt = WEIR_FMT_JSON;
    if (!f)
        return WEIR_OK;
    const char *s;
    if (weir_cfg_as_str(f, &s, lc->errstr, lc->errstr_size))
        return WEIR_ERR;
    if (weir_format_parse(s, fmt))
        return weir_cfg_error(f, lc->errstr, lc->errstr_size, "format: expected avro or json, got '%s'", s);
    return WEIR_OK;
}

static int parse_bool_key(load_ctx_t *lc, const weir_cfg_t *map, const char *key, bool *out) {
    const weir_cfg_t *c = weir_cfg_get(map, key);
    *out = false;
    return c ? weir_cfg_as_bool(c, out, lc->errstr, lc->errstr_size) : WEIR_OK;
}

/* A Kafka topic name: a non-empty string (Kafka refuses "" and weir would produce nowhere). */
static int as_topic(load_ctx_t *lc, const weir_cfg_t *c, const char **out) {
    if (weir_cfg_as_str(c, out, lc->errstr, lc->errstr_size))
        return WEIR_ERR;
    if (!**out)
        return weir_cfg_error(c, lc->errstr, lc->errstr_size, "topic: expected a topic name, got an empty string");
    return WEIR_OK;
}

static int parse_properties(load_ctx_t *lc, const weir_cfg_t *kafka, const weir_cfg_t **out) {
    const weir_cfg_t *p = weir_cfg_get(kafka, "properties");
    *out = p;
    if (!p)
        return WEIR_OK;
    if (p->kind != WEIR_CFG_MAP)
        return weir_cfg_error(p, lc->errstr, lc->errstr_size, "properties: expected a map of librdkafka properties");
    for (size_t i = 0; i < p->n; i++) {
        p->used[i] = true;
        if (p->items[i]->kind != WEIR_CFG_SCALAR)
            return weir_cfg_error(p->items[i], lc->errstr, lc->errstr_size, "properties.%s: expected a scalar",
                                  p->keys[i]);
    }
    return WEIR_OK;
}

/* `fields: {name: type, other: double?}` for JSON sources without a schema. */
static weir_rowtype_t *parse_inline_fields(load_ctx_t *lc, const weir_cfg_t *f) {
    if (f->kind != WEIR_CFG_MAP || f->n == 0) {
        weir_cfg_error(f, lc->errstr, lc->errstr_size, "fields: expected a map of field: type");
        return NULL;
    }
    weir_rowtype_t *rt = weir_rowtype_new();
    static const weir_type_t types[] = {WEIR_BOOL, WEIR_LONG, WEIR_DOUBLE, WEIR_STRING, WEIR_BYTES};
    for (size_t i = 0; i < f->n; i++) {
        f->used[i] = true;
        const weir_cfg_t *t = f->items[i];
        const char *ts = t->kind == WEIR_CFG_SCALAR ? t->scalar : "";
        size_t n = strlen(ts);
        bool nullable = n > 0 && ts[n - 1] == '?';
        if (nullable)
            n--;
        int found = -1;
        for (size_t k = 0; k < WEIR_ARRAY_SIZE(types); k++)
            if (strlen(weir_type_name(types[k])) == n && !strncmp(weir_type_name(types[k]), ts, n))
                found = (int)k;
        if (found < 0) {
            weir_cfg_error(t, lc->errstr, lc->errstr_size,
                           "fields.%s: unknown type '%s' (bool, long, double, string, bytes; add ? for nullable)",
                           f->keys[i], ts);
            weir_rowtype_destroy(rt);
            return NULL;
        }
        weir_rowtype_add(rt, f->keys[i], types[found], nullable);
    }
    return rt;
}

static int load_source(load_ctx_t *lc, weir_rowtype_t **owned_rt) {
    weir_pipeline_t *pl = lc->pl;
    weir_source_spec_t *src = &pl->source;
    const weir_cfg_t *s = weir_cfg_get(pl->root, "source");
    if (!s)
        return weir_cfg_error(pl->root, lc->errstr, lc->errstr_size, "missing required key 'source'");
    if (s->kind != WEIR_CFG_MAP)
        return weir_cfg_error(s, lc->errstr, lc->errstr_size, "source: expected a map");
    src->cfg = s;
    src->event_time_slot = -1;
    src->key_slot = -1;
    const weir_cfg_t *k = weir_cfg_get(s, "kafka");
    if (k) {
        if (k->kind != WEIR_CFG_MAP)
            return weir_cfg_error(k, lc->errstr, lc->errstr_size, "source.kafka: expected a map");
        const weir_cfg_t *topics = weir_cfg_get(k, "topics");
        const weir_cfg_t *topic = weir_cfg_get(k, "topic");
        if (topics && topics->kind == WEIR_CFG_SEQ && topics->n > 0) {
            src->ntopics = (int)topics->n;
            src->topics = weir_calloc(topics->n, sizeof(char *));
            for (size_t i = 0; i < topics->n; i++)
                if (as_topic(lc, topics->items[i], &src->topics[i]))
                    return WEIR_ERR;
        } else if (topic || (topics && topics->kind == WEIR_CFG_SCALAR)) {
            src->ntopics = 1;
            src->topics = weir_calloc(1, sizeof(char *));
            if (as_topic(lc, topic ? topic : topics, &src->topics[0]))
                return WEIR_ERR;
        } else {
            return weir_cfg_error(k, lc->errstr, lc->errstr_size, "source.kafka: needs 'topics: [name, ...]'");
        }
        const weir_cfg_t *g = weir_cfg_get(k, "group_id");
        src->group_id = pl->name;
        if (g && weir_cfg_as_str(g, &src->group_id, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (parse_properties(lc, k, &src->properties))
            return WEIR_ERR;
        if (weir_cfg_check_unused(k, "source.kafka", lc->errstr, lc->errstr_size))
            return WEIR_ERR;
    }
    if (parse_format(lc, s, &src->format) || parse_bool_key(lc, s, "confluent", &src->confluent))
        return WEIR_ERR;
    const weir_cfg_t *sc = weir_cfg_get(s, "schema");
    const weir_cfg_t *fields = weir_cfg_get(s, "fields");
    if (sc) {
        if (!(src->schema = load_schema(lc, sc)))
            return WEIR_ERR;
        src->rt = weir_schema_rowtype(src->schema);
    } else if (fields && src->format == WEIR_FMT_JSON) {
        if (!(*owned_rt = parse_inline_fields(lc, fields)))
            return WEIR_ERR;
        src->rt = *owned_rt;
    } else {
        return weir_cfg_error(s, lc->errstr, lc->errstr_size,
                              src->format == WEIR_FMT_AVRO
                                  ? "source: format avro needs 'schema: FILE.avsc'"
                                  : "source: needs 'schema: FILE.avsc' or 'fields: {name: type}'");
    }
    const weir_cfg_t *et = weir_cfg_get(s, "event_time");
    if (et) {
        const char *f;
        if (weir_cfg_as_str(et, &f, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        int slot = weir_rowtype_find(src->rt, f);
        if (slot < 0)
            return weir_cfg_error(et, lc->errstr, lc->errstr_size, "event_time: unknown field '%s'", f);
        weir_type_t t = src->rt->fields[slot].type;
        if (t != WEIR_LONG && t != WEIR_STRING && t != WEIR_DOUBLE)
            return weir_cfg_error(
                et, lc->errstr, lc->errstr_size,
                "event_time: field '%s' is %s; expected epoch milliseconds (long) or an ISO-8601 string", f,
                weir_type_name(t));
        src->event_time_slot = slot;
    }
    const weir_cfg_t *key = weir_cfg_get(s, "key");
    if (key) {
        const char *f;
        if (weir_cfg_as_str(key, &f, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if ((src->key_slot = weir_rowtype_find(src->rt, f)) < 0)
            return weir_cfg_error(key, lc->errstr, lc->errstr_size, "key: unknown field '%s'", f);
    }
    const weir_cfg_t *pb = weir_cfg_get(s, "partitioned_by");
    if (pb && weir_cfg_as_str(pb, &src->partitioned_by, lc->errstr, lc->errstr_size))
        return WEIR_ERR;
    const weir_cfg_t *wm = weir_cfg_get(s, "watermark");
    if (wm) {
        static const weir_config_map_t wm_map[] = {
            {WEIR_CM_DURATION, "max_out_of_orderness", "0", false,
             offsetof(weir_source_spec_t, max_out_of_orderness_ms), "how late records may arrive"},
            {WEIR_CM_DURATION, "idle_timeout", "0", false, offsetof(weir_source_spec_t, idle_timeout_ms),
             "advance an idle partition's watermark by processing time after this long (0 = never)"},
            {WEIR_CM_DURATION, "max_future", "0", false, offsetof(weir_source_spec_t, max_future_ms),
             "dead-letter records whose event time is further ahead of processing time (0 = off)"},
            {0},
        };
        if (wm->kind != WEIR_CFG_MAP)
            return weir_cfg_error(wm, lc->errstr, lc->errstr_size, "watermark: expected a map");
        if (weir_config_map_apply(wm_map, wm, src, lc->errstr, lc->errstr_size) ||
            weir_cfg_check_unused(wm, "source.watermark", lc->errstr, lc->errstr_size))
            return WEIR_ERR;
    }
    return weir_cfg_check_unused(s, "source", lc->errstr, lc->errstr_size);
}

static int compile_node(load_ctx_t *lc, int i);

/* Resolve "name" or "name.port" to (node, port), compiling the upstream node first. */
static int resolve_ref(load_ctx_t *lc, const weir_cfg_t *at, const char *ref, int *node, int *port) {
    weir_pipeline_t *pl = lc->pl;
    char name[256];
    snprintf(name, sizeof(name), "%s", ref);
    const char *suffix = NULL;
    int idx = weir_pipeline_find_node(pl, name);
    if (idx < 0) {
        char *dot = strrchr(name, '.');
        if (dot) {
            *dot = '\0';
            suffix = dot + 1;
            idx = weir_pipeline_find_node(pl, name);
        }
    }
    if (idx < 0)
        return weir_cfg_error(at, lc->errstr, lc->errstr_size, "unknown node '%s'", ref);
    if (compile_node(lc, idx))
        return WEIR_ERR;
    const weir_plan_t *up = &pl->nodes[idx].plan;
    if (!suffix) {
        *node = idx;
        *port = 0;
        return WEIR_OK;
    }
    for (int p = 1; p < up->nports; p++)
        if (up->ports[p].suffix && !strcmp(up->ports[p].suffix, suffix)) {
            *node = idx;
            *port = p;
            return WEIR_OK;
        }
    return weir_cfg_error(at, lc->errstr, lc->errstr_size, "node '%s' (%s) has no output '%s'", name, up->cls->name,
                          suffix);
}

static void edge_add(weir_edge_list_t *l, int v) {
    l->items = weir_realloc(l->items, (size_t)(l->n + 1) * sizeof(int));
    l->items[l->n++] = v;
}

int weir_plan_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    const weir_operator_class_t *cls = plan->cls;
    if (cls->conf_size)
        plan->conf = weir_calloc(1, cls->conf_size);
    if (!plan->stats)
        plan->stats = weir_calloc(1, sizeof(*plan->stats));
    if (cls->conf_init)
        cls->conf_init(plan->conf);
    if (weir_config_map_apply(cls->config_map, plan->cfg, plan->conf, errstr, errstr_size))
        return WEIR_ERR;
    return cls->configure(plan, errstr, errstr_size);
}

void weir_plan_release(weir_plan_t *plan) {
    if (plan->cls && plan->cls->plan_destroy && plan->conf)
        plan->cls->plan_destroy(plan->conf);
    free(plan->conf);
    plan->conf = NULL;
    free(plan->stats);
    plan->stats = NULL;
}

static int compile_node(load_ctx_t *lc, int i) {
    weir_pipeline_t *pl = lc->pl;
    weir_node_t *node = &pl->nodes[i];
    if (lc->state[i] == 2)
        return WEIR_OK;
    if (lc->state[i] == 1)
        return weir_cfg_error(node->plan.cfg, lc->errstr, lc->errstr_size,
                              "node '%s' is part of a cycle: a pipeline must be a DAG", node->plan.name);
    lc->state[i] = 1;
    const weir_cfg_t *cfg = node->plan.cfg;
    const weir_cfg_t *in = weir_cfg_get(cfg, "input");
    node->input_node = WEIR_SOURCE;
    node->input_port = 0;
    node->plan.input = pl->source.rt;
    if (in) {
        const char *ref;
        if (weir_cfg_as_str(in, &ref, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (strcmp(ref, "source") != 0) {
            if (resolve_ref(lc, in, ref, &node->input_node, &node->input_port))
                return WEIR_ERR;
            const weir_plan_t *up = &pl->nodes[node->input_node].plan;
            node->plan.input = up->ports[node->input_port].rt;
        }
    }
    char msg[WEIR_ERRSTR_SIZE];
    if (weir_plan_configure(&node->plan, msg, sizeof(msg))) {
        weir_err(lc->errstr, lc->errstr_size, "%s", msg);
        return WEIR_ERR;
    }
    char what[300];
    snprintf(what, sizeof(what), "node '%s' (%s)", node->plan.name, node->plan.cls->name);
    if (weir_cfg_check_unused(cfg, what, lc->errstr, lc->errstr_size))
        return WEIR_ERR;
    if (node->input_node != WEIR_SOURCE)
        edge_add(&pl->nodes[node->input_node].nodes[node->input_port], i);
    lc->state[i] = 2;
    pl->order[lc->order_pos++] = i;
    return WEIR_OK;
}

static int load_nodes(load_ctx_t *lc) {
    weir_pipeline_t *pl = lc->pl;
    const weir_cfg_t *nodes = weir_cfg_get(pl->root, "nodes");
    if (!nodes)
        return weir_cfg_error(pl->root, lc->errstr, lc->errstr_size, "missing required key 'nodes'");
    if (nodes->kind != WEIR_CFG_SEQ || nodes->n == 0)
        return weir_cfg_error(nodes, lc->errstr, lc->errstr_size, "nodes: expected a list of nodes");
    pl->nnodes = (int)nodes->n;
    pl->nodes = weir_calloc(nodes->n, sizeof(weir_node_t));
    pl->order = weir_calloc(nodes->n, sizeof(int));
    lc->state = weir_calloc(nodes->n, sizeof(int));
    for (size_t i = 0; i < nodes->n; i++) {
        const weir_cfg_t *n = nodes->items[i];
        weir_plan_t *plan = &pl->nodes[i].plan;
        plan->pipeline = pl->name;
        plan->cfg = n;
        if (n->kind != WEIR_CFG_MAP)
            return weir_cfg_error(n, lc->errstr, lc->errstr_size, "nodes[%zu]: expected a map", i);
        const weir_cfg_t *name = weir_cfg_get(n, "name");
        const weir_cfg_t *op = weir_cfg_get(n, "op");
        if (!name)
            return weir_cfg_error(n, lc->errstr, lc->errstr_size, "nodes[%zu]: missing required key 'name'", i);
        if (weir_cfg_as_str(name, &plan->name, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (!strcmp(plan->name, "source") || strchr(plan->name, '.') || !plan->name[0])
            return weir_cfg_error(name, lc->errstr, lc->errstr_size, "node name '%s' is reserved or contains '.'",
                                  plan->name);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(pl->nodes[j].plan.name, plan->name))
                return weir_cfg_error(name, lc->errstr, lc->errstr_size, "duplicate node name '%s'", plan->name);
        if (!op)
            return weir_cfg_error(n, lc->errstr, lc->errstr_size, "node '%s': missing required key 'op'", plan->name);
        const char *ops;
        if (weir_cfg_as_str(op, &ops, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (!(plan->cls = weir_operator_find(ops))) {
            char known[256] = "";
            for (const weir_operator_class_t *const *c = weir_operator_list(); *c; c++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", known[0] ? ", " : "",
                         (*c)->name);
            return weir_cfg_error(op, lc->errstr, lc->errstr_size, "node '%s': unknown op '%s' (known: %s)", plan->name,
                                  ops, known);
        }
        char why[WEIR_ERRSTR_SIZE];
        if (weir_operator_check(plan->cls, why, sizeof(why)))
            return weir_cfg_error(op, lc->errstr, lc->errstr_size, "node '%s': %s", plan->name, why);
    }
    for (int i = 0; i < pl->nnodes; i++)
        if (compile_node(lc, i))
            return WEIR_ERR;
    return WEIR_OK;
}

static int load_sinks(load_ctx_t *lc) {
    weir_pipeline_t *pl = lc->pl;
    const weir_cfg_t *sinks = weir_cfg_get(pl->root, "sinks");
    if (!sinks)
        return WEIR_OK;
    if (sinks->kind != WEIR_CFG_SEQ)
        return weir_cfg_error(sinks, lc->errstr, lc->errstr_size, "sinks: expected a list");
    if (sinks->n == 0)
        return weir_cfg_error(sinks, lc->errstr, lc->errstr_size, "sinks: empty list (give at least one sink)");
    pl->nsinks = (int)sinks->n;
    pl->sinks = weir_calloc(sinks->n + 1, sizeof(weir_sink_spec_t));
    for (size_t i = 0; i < sinks->n; i++) {
        weir_sink_spec_t *sk = &pl->sinks[i];
        const weir_cfg_t *c = sinks->items[i];
        sk->cfg = c;
        if (c->kind != WEIR_CFG_MAP)
            return weir_cfg_error(c, lc->errstr, lc->errstr_size, "sinks[%zu]: expected a map", i);
        const weir_cfg_t *in = weir_cfg_get(c, "input");
        const weir_cfg_t *late = weir_cfg_get(c, "late");
        if (!!in == !!late)
            return weir_cfg_error(c, lc->errstr, lc->errstr_size, "sinks[%zu]: needs exactly one of 'input' or 'late'",
                                  i);
        const char *ref;
        if (weir_cfg_as_str(in ? in : late, &ref, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        char buf[300];
        if (late)
            snprintf(buf, sizeof(buf), "%s.late", ref);
        else
            snprintf(buf, sizeof(buf), "%s", ref);
        if (resolve_ref(lc, in ? in : late, buf, &sk->node, &sk->port))
            return WEIR_ERR;
        const weir_plan_t *up = &pl->nodes[sk->node].plan;
        sk->rt = up->ports[sk->port].rt;
        size_t ln = strlen(up->name) + (up->ports[sk->port].suffix ? strlen(up->ports[sk->port].suffix) + 1 : 0) + 1;
        sk->label = weir_malloc(ln);
        snprintf(sk->label, ln, "%s%s%s", up->name, up->ports[sk->port].suffix ? "." : "",
                 up->ports[sk->port].suffix ? up->ports[sk->port].suffix : "");
        const weir_cfg_t *k = weir_cfg_get(c, "kafka");
        if (!k || k->kind != WEIR_CFG_MAP)
            return weir_cfg_error(k ? k : c, lc->errstr, lc->errstr_size, "sinks[%zu]: needs 'kafka: {topic: NAME}'",
                                  i);
        const weir_cfg_t *t = weir_cfg_get(k, "topic");
        if (!t)
            return weir_cfg_error(k, lc->errstr, lc->errstr_size, "sinks[%zu].kafka: missing required key 'topic'", i);
        if (as_topic(lc, t, &sk->topic) || parse_properties(lc, k, &sk->properties) ||
            weir_cfg_check_unused(k, "sink kafka", lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (parse_format(lc, c, &sk->format) || parse_bool_key(lc, c, "confluent", &sk->confluent))
            return WEIR_ERR;
        const weir_cfg_t *sc = weir_cfg_get(c, "schema");
        if (sc && !(sk->schema = load_schema(lc, sc)))
            return WEIR_ERR;
        if (sk->format == WEIR_FMT_AVRO && !sk->schema)
            return weir_cfg_error(c, lc->errstr, lc->errstr_size, "sinks[%zu]: format avro needs 'schema: FILE.avsc'",
                                  i);
        if (sk->schema) {
            /* Check now that the node's output fits the schema: fail fast at start-up. */
            char msg[WEIR_ERRSTR_SIZE];
            weir_encoder_t *enc = weir_encoder_new(sk->format, sk->schema, sk->rt, sk->confluent, 0, msg, sizeof(msg));
            if (!enc)
                return weir_cfg_error(sc, lc->errstr, lc->errstr_size, "sink of '%s': %s", sk->label, msg);
            weir_encoder_destroy(enc);
        }
        if (weir_cfg_check_unused(c, "sink", lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        edge_add(&pl->nodes[sk->node].sinks[sk->port], (int)i);
    }
    return WEIR_OK;
}

/* ---- stages: where the records must move between tasks (docs/keyby.md) ---- */

/* Expression text without blanks, for comparing two keys ("a + b" = "a+b"). */
static char *key_canon(const char *src) {
    char *c = weir_strdup(src ? src : "");
    char *o = c;
    for (const char *q = c; *q; q++)
        if (*q != ' ' && *q != '\t')
            *o++ = *q;
    *o = '\0';
    return c;
}

/* Does a stage partitioned as st already give node n what it needs? */
static bool stage_satisfies(const weir_stage_t *st, const weir_plan_t *n) {
    if (n->partitioning == WEIR_PART_ANY || st->partitioning == WEIR_PART_GLOBAL)
        return true; /* one partition holds every key */
    if (n->partitioning == WEIR_PART_GLOBAL || st->partitioning != WEIR_PART_KEY)
        return false;
    char *a = key_canon(st->key_src), *b = key_canon(n->key ? n->key->src : NULL);
    bool same = n->key && n->key->src && st->key_src && !strcmp(a, b);
    free(a);
    free(b);
    return same;
}

/*
 * Give every node a stage. Stage 0 is fed by the source (its partitioning: the
 * source's `partitioned_by`, else unknown); a keyed node whose records are not
 * partitioned by its key starts a new stage fed by the repartition topic
 * "<pipeline>-<node>-repartition", keyed by the node's key (one partition for
 * a global node). Nodes downstream stay in their input's stage unless they
 * need another partitioning: chained nodes with the same key share one stage.
 */
static int load_stages(load_ctx_t *lc) {
    weir_pipeline_t *pl = lc->pl;
    const weir_cfg_t *rp = weir_cfg_get(pl->root, "repartition_partitions");
    if (rp) {
        int64_t v;
        if (weir_cfg_as_long(rp, &v, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (v < 1 || v > 100000)
            return weir_cfg_error(rp, lc->errstr, lc->errstr_size,
                                  "repartition_partitions: expected 1..100000, got %lld", (long long)v);
        pl->repartition_partitions = (int)v;
    }
    pl->stages = weir_calloc((size_t)pl->nnodes + 1, sizeof(weir_stage_t));
    pl->nstages = 1;
    weir_stage_t *s0 = &pl->stages[0];
    s0->head = -1;
    s0->upstream = -1;
    s0->partitioning = pl->source.partitioned_by ? WEIR_PART_KEY : WEIR_PART_ANY;
    s0->key_src = pl->source.partitioned_by;
    for (int k = 0; k < pl->nnodes; k++) {
        int i = pl->order[k];
        weir_node_t *n = &pl->nodes[i];
        int ps = n->input_node == WEIR_SOURCE ? 0 : pl->nodes[n->input_node].stage;
        if (stage_satisfies(&pl->stages[ps], &n->plan)) {
            n->stage = ps;
            continue;
        }
        weir_stage_t *st = &pl->stages[pl->nstages];
        n->stage = pl->nstages++;
        st->head = i;
        st->upstream = ps;
        st->partitioning = n->plan.partitioning;
        st->key = n->plan.key;
        st->key_src = n->plan.key ? n->plan.key->src : NULL;
        size_t len = strlen(pl->name) + strlen(n->plan.name) + 16;
        st->topic = weir_malloc(len);
        snprintf(st->topic, len, "%s-%s-repartition", pl->name, n->plan.name);
        st->partitions = st->partitioning == WEIR_PART_GLOBAL ? 1 : pl->repartition_partitions;
    }
    return WEIR_OK;
}

static int load_rest(load_ctx_t *lc) {
    weir_pipeline_t *pl = lc->pl;
    const weir_cfg_t *dl = weir_cfg_get(pl->root, "dead_letter");
    if (dl) {
        const weir_cfg_t *t = dl;
        if (dl->kind == WEIR_CFG_MAP) {
            const weir_cfg_t *k = weir_cfg_get(dl, "kafka");
            t = k ? weir_cfg_get(k, "topic") : NULL;
            if (!t)
                return weir_cfg_error(dl, lc->errstr, lc->errstr_size, "dead_letter: expected {kafka: {topic: NAME}}");
        }
        if (as_topic(lc, t, &pl->dead_letter_topic))
            return WEIR_ERR;
    } else {
        size_t n = strlen(pl->name) + 5;
        pl->dead_letter_owned = weir_malloc(n);
        snprintf(pl->dead_letter_owned, n, "%s.dlq", pl->name);
        pl->dead_letter_topic = pl->dead_letter_owned;
    }
    const weir_cfg_t *ck = weir_cfg_get(pl->root, "checkpoint");
    pl->checkpoint_interval_ms = 10000;
    if (ck) {
        static const weir_config_map_t ck_map[] = {
            {WEIR_CM_STR, "redis", NULL, false, offsetof(weir_pipeline_t, redis_url),
             "redis://[user:pass@]host:port/db"},
            {WEIR_CM_DURATION, "interval", "10s", false, offsetof(weir_pipeline_t, checkpoint_interval_ms),
             "time between checkpoints"},
            {0},
        };
        if (ck->kind != WEIR_CFG_MAP)
            return weir_cfg_error(ck, lc->errstr, lc->errstr_size, "checkpoint: expected a map");
        if (weir_config_map_apply(ck_map, ck, pl, lc->errstr, lc->errstr_size) ||
            weir_cfg_check_unused(ck, "checkpoint", lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (pl->checkpoint_interval_ms <= 0)
            return weir_cfg_error(ck, lc->errstr, lc->errstr_size, "checkpoint.interval must be > 0");
    }
    const weir_cfg_t *dv = weir_cfg_get(pl->root, "delivery");
    pl->delivery = WEIR_AT_LEAST_ONCE;
    if (dv) {
        const char *d;
        if (weir_cfg_as_str(dv, &d, lc->errstr, lc->errstr_size))
            return WEIR_ERR;
        if (!strcmp(d, "exactly_once"))
            pl->delivery = WEIR_EXACTLY_ONCE;
        else if (strcmp(d, "at_least_once"))
            return weir_cfg_error(dv, lc->errstr, lc->errstr_size, "delivery: expected at_least_once or exactly_once");
    }
    return weir_cfg_check_unused(pl->root, "pipeline", lc->errstr, lc->errstr_size);
}

static weir_rowtype_t *source_rt_owned_get(weir_pipeline_t *pl);

typedef struct pipeline_priv {
    weir_pipeline_t pub;
    weir_rowtype_t *inline_rt;
} pipeline_priv_t;

static weir_pipeline_t *pipeline_compile(weir_cfg_t *root, char *errstr, size_t errstr_size) {
    pipeline_priv_t *pp = weir_calloc(1, sizeof(*pp));
    weir_pipeline_t *pl = &pp->pub;
    pl->root = root;
    pl->path = root->file;
    char *pathcopy = weir_strdup(root->file);
    load_ctx_t lc = {.pl = pl, .dir = weir_strdup(dirname(pathcopy)), .errstr = errstr, .errstr_size = errstr_size};
    free(pathcopy);
    int rc = WEIR_ERR;
    const weir_cfg_t *name = weir_cfg_get(root, "pipeline");
    if (!name) {
        weir_cfg_error(root, errstr, errstr_size, "missing required key 'pipeline' (the pipeline's name)");
        goto done;
    }
    if (weir_cfg_as_str(name, &pl->name, errstr, errstr_size))
        goto done;
    if (!pl->name[0] || strpbrk(pl->name, " :{}")) {
        weir_cfg_error(name, errstr, errstr_size, "pipeline: name '%s' must be non-empty without spaces, ':' or braces",
                       pl->name);
        goto done;
    }
    if (load_source(&lc, &pp->inline_rt) || load_nodes(&lc) || load_sinks(&lc) || load_stages(&lc) || load_rest(&lc))
        goto done;
    for (int i = 0; i < pl->nnodes; i++)
        for (int p = 0; p < WEIR_MAX_PORTS; p++)
            pl->nodes[i].plan.port_used[p] = pl->nodes[i].nodes[p].n + pl->nodes[i].sinks[p].n > 0;
    rc = WEIR_OK;
done:
    free(lc.dir);
    free(lc.state);
    if (rc) {
        weir_pipeline_destroy(pl);
        return NULL;
    }
    return pl;
}

static weir_rowtype_t *source_rt_owned_get(weir_pipeline_t *pl) { return ((pipeline_priv_t *)pl)->inline_rt; }

weir_pipeline_t *weir_pipeline_load(const char *path, char *errstr, size_t errstr_size) {
    weir_cfg_t *root = weir_cfg_load_file(path, errstr, errstr_size);
    return root ? pipeline_compile(root, errstr, errstr_size) : NULL;
}

weir_pipeline_t *weir_pipeline_load_string(const char *name, const char *yaml, char *errstr, size_t errstr_size) {
    weir_cfg_t *root = weir_cfg_load_string(name, yaml, errstr, errstr_size);
    return root ? pipeline_compile(root, errstr, errstr_size) : NULL;
}

void weir_pipeline_destroy(weir_pipeline_t *pl) {
    if (!pl)
        return;
    for (int i = 0; i < pl->nnodes; i++) {
        weir_node_t *n = &pl->nodes[i];
        weir_plan_release(&n->plan);
        for (int p = 0; p < WEIR_MAX_PORTS; p++) {
            weir_rowtype_destroy(n->plan.ports[p].rt);
            free(n->nodes[p].items);
            free(n->sinks[p].items);
        }
    }
    for (int i = 0; i < pl->nsinks; i++) {
        free(pl->sinks[i].label);
        weir_schema_destroy(pl->sinks[i].schema);
    }
    free(pl->sinks);
    free(pl->nodes);
    free(pl->order);
    for (int i = 0; pl->stages && i < pl->nstages; i++)
        free(pl->stages[i].topic);
    free(pl->stages);
    free(pl->source.topics);
    weir_schema_destroy(pl->source.schema);
    weir_rowtype_destroy(source_rt_owned_get(pl));
    free(pl->dead_letter_owned);
    weir_cfg_destroy(pl->root);
    free(pl);
}

const char *weir_delivery_name(weir_delivery_t d) { return d == WEIR_EXACTLY_ONCE ? "exactly_once" : "at_least_once"; }

int weir_pipeline_find_node(const weir_pipeline_t *pl, const char *name) {
    for (int i = 0; i < pl->nnodes; i++)
        if (pl->nodes[i].plan.name && !strcmp(pl->nodes[i].plan.name, name))
            return i;
    return -1;
}

static void print_rowtype(const weir_rowtype_t *rt, FILE *fp) {
    for (int i = 0; i < rt->nfields; i++)
        fprintf(fp, "%s%s#%d:%s%s", i ? ", " : "", rt->fields[i].name, i, weir_type_name(rt->fields[i].type),
                rt->fields[i].nullable ? "?" : "");
}

void weir_pipeline_print_stages(const weir_pipeline_t *pl, FILE *fp) {
    for (int g = 0; g < pl->nstages; g++) {
        const weir_stage_t *st = &pl->stages[g];
        if (g == 0) {
            fprintf(fp, "stage 0: tasks = the source partitions (partitioned by %s)",
                    st->key_src ? st->key_src : "an undeclared key");
        } else {
            fprintf(fp, "stage %d: tasks = repartition topic %s, ", g, st->topic);
            if (st->partitions)
                fprintf(fp, "%d partition%s", st->partitions, st->partitions == 1 ? "" : "s");
            else
                fprintf(fp, "partitions: the largest input partition count");
            if (st->partitioning == WEIR_PART_GLOBAL)
                fprintf(fp, " (global: every record)");
            else
                fprintf(fp, ", keyed by %s", st->key_src ? st->key_src : "the record key");
            fprintf(fp, ", fed by stage %d", st->upstream);
        }
        fprintf(fp, "\n  nodes:");
        int k = 0;
        for (int j = 0; j < pl->nnodes; j++)
            if (pl->nodes[pl->order[j]].stage == g)
                fprintf(fp, "%s%s", k++ ? ", " : " ", pl->nodes[pl->order[j]].plan.name);
        fprintf(fp, "%s\n", k ? "" : " (none: records go straight to the repartition)");
    }
}

void weir_pipeline_print(const weir_pipeline_t *pl, FILE *fp) {
    const weir_source_spec_t *s = &pl->source;
    fprintf(fp, "pipeline %s (%s)\n", pl->name, pl->path);
    fprintf(fp, "source: ");
    for (int i = 0; i < s->ntopics; i++)
        fprintf(fp, "%s%s", i ? "," : "topics ", s->topics[i]);
    fprintf(fp, "%sformat %s", s->ntopics ? ", " : "", s->format == WEIR_FMT_AVRO ? "avro" : "json");
    if (s->schema)
        fprintf(fp, ", schema %s (%s)", weir_schema_path(s->schema), weir_schema_name(s->schema));
    if (s->ntopics)
        fprintf(fp, ", group %s", s->group_id);
    fprintf(fp, "\n  fields: ");
    print_rowtype(s->rt, fp);
    fprintf(fp, "\n  event time: %s",
            s->event_time_slot >= 0 ? s->rt->fields[s->event_time_slot].name : "Kafka message timestamp");
    fprintf(fp, ", max out-of-orderness %lld ms, idle timeout %lld ms", (long long)s->max_out_of_orderness_ms,
            (long long)s->idle_timeout_ms);
    if (s->max_future_ms > 0)
        fprintf(fp, ", max future %lld ms", (long long)s->max_future_ms);
    fputc('\n', fp);
    for (int k = 0; k < pl->nnodes; k++) {
        const weir_node_t *n = &pl->nodes[pl->order[k]];
        const char *in = n->input_node == WEIR_SOURCE ? "source" : pl->nodes[n->input_node].plan.name;
        const char *ins =
            n->input_node != WEIR_SOURCE ? pl->nodes[n->input_node].plan.ports[n->input_port].suffix : NULL;
        fprintf(fp, "node %s: %s <- %s%s%s\n", n->plan.name, n->plan.cls->name, in, ins ? "." : "", ins ? ins : "");
        if (n->plan.cls->describe)
            n->plan.cls->describe(&n->plan, fp);
        for (int p = 0; p < n->plan.nports; p++) {
            fprintf(fp, "  output %s%s%s: ", n->plan.name, p ? "." : "", p ? n->plan.ports[p].suffix : "");
            print_rowtype(n->plan.ports[p].rt, fp);
            fprintf(fp, "\n");
        }
    }
    for (int i = 0; i < pl->nsinks; i++) {
        const weir_sink_spec_t *sk = &pl->sinks[i];
        fprintf(fp, "sink %s -> kafka topic %s, format %s%s%s\n", sk->label, sk->topic,
                sk->format == WEIR_FMT_AVRO ? "avro" : "json", sk->schema ? ", schema " : "",
                sk->schema ? weir_schema_path(sk->schema) : "");
    }
    fprintf(fp, "dead letters -> kafka topic %s\n", pl->dead_letter_topic);
    weir_pipeline_print_stages(pl, fp);
    if (pl->redis_url)
        fprintf(fp, "checkpoint -> %s every %lld ms, delivery %s\n", pl->redis_url,
                (long long)pl->checkpoint_interval_ms, weir_delivery_name(pl->delivery));
}

static void canon_cfg(const weir_cfg_t *c, weir_buf_t *b) {
    switch (c->kind) {
    case WEIR_CFG_SCALAR:
        weir_buf_printf(b, "%s%zu:", c->quoted ? "q" : "s", strlen(c->scalar));
        weir_buf_puts(b, c->scalar);
        break;
    case WEIR_CFG_SEQ:
        weir_buf_printf(b, "[%zu", c->n);
        for (size_t i = 0; i < c->n; i++)
            canon_cfg(c->items[i], b);
        weir_buf_putc(b, ']');
        break;
    case WEIR_CFG_MAP: {
        /* Keys in sorted order: reordering keys is not a change. */
        size_t *idx = weir_malloc((c->n + 1) * sizeof(size_t));
        for (size_t i = 0; i < c->n; i++)
            idx[i] = i;
        for (size_t i = 1; i < c->n; i++)
            for (size_t j = i; j > 0 && strcmp(c->keys[idx[j - 1]], c->keys[idx[j]]) > 0; j--) {
                size_t t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            }
        weir_buf_printf(b, "{%zu", c->n);
        for (size_t k = 0; k < c->n; k++) {
            weir_buf_printf(b, "k%zu:%s", strlen(c->keys[idx[k]]), c->keys[idx[k]]);
            canon_cfg(c->items[idx[k]], b);
        }
        weir_buf_putc(b, '}');
        free(idx);
        break;
    }
    }
}

char *weir_pipeline_fingerprint(const weir_pipeline_t *pl) {
    weir_buf_t out = {0}, tmp = {0};
    for (int i = 0; i < pl->nnodes; i++) {
        const weir_plan_t *p = &pl->nodes[i].plan;
        weir_buf_reset(&tmp);
        canon_cfg(p->cfg, &tmp);
        weir_buf_printf(&out, "%s%s=%s:%08x", i ? ";" : "", p->name, p->cls->name, weir_crc32(0, tmp.p, tmp.len));
    }
    weir_buf_putc(&out, '\0');
    weir_buf_free(&tmp);
    return (char *)out.p;
}
