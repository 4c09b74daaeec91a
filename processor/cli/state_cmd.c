/*
 * state_cmd.c: `weir state`, the operator's view of a pipeline's checkpoints
 * in Redis: list them, dump one as JSON, delete them all.
 *
 * dump shows the task snapshot as weir_task_snapshot_parse() (task.c, the one
 * reader of that layout) takes it apart: the task header, and each node's name
 * and frame header (tag, version, payload length, CRC). The payload of a frame is an
 * operator's private format: with the pipeline file (--file) the checkpoint is
 * restored into that pipeline's operators and each class's `dump` callback
 * prints the node's state as JSON (a stateless operator's state is `{}`);
 * without it, dump shows the frame headers and says how to see the state.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "pipeline.h"
#include "task.h"
#include "snapshot.h"

#define STATE_NO_DUMP_NOTE "give the pipeline file with --file to see the operator's state as JSON"

static void state_usage(FILE *fp) {
    fprintf(fp, "usage: weir state --redis URL --pipeline NAME COMMAND\n"
                "\n"
                "Inspect and manage a pipeline's checkpoints in Redis.\n"
                "\n"
                "commands:\n"
                "  list                     every checkpoint: topic, partition, number, next offset, size, age\n"
                "  dump TOPIC PARTITION     the checkpoint's meta as JSON, verified (size, CRC-32), with the\n"
                "                           task header and every node's frame header (tag, version, length)\n"
                "    --node NODE            only this node\n"
                "    --file PIPELINE.yaml   restore the checkpoint into that pipeline's operators and print\n"
                "                           each node's state as JSON (refused, with the reason, when the\n"
                "                           pipeline changed incompatibly since the checkpoint)\n"
                "    --checkpoint N         checkpoint N instead of the partition's latest\n"
                "  delete                   remove every key of the pipeline (stop the pipeline first)\n"
                "\n"
                "options:\n"
                "  --redis URL              redis://[user:password@]host[:port][/db] (default $WEIR_REDIS)\n"
                "  --pipeline NAME          the pipeline's name (its `pipeline:` key)\n"
                "  --help                   this text\n"
                "\n"
                "Exit status: 0 done, 1 Redis unreachable / no such checkpoint / checkpoint corrupt, 2 usage.\n");
}

static void fmt_size(int64_t n, char *buf, size_t size) {
    if (n < 1024)
        snprintf(buf, size, "%" PRId64 " B", n);
    else if (n < ((int64_t)1 << 20))
        snprintf(buf, size, "%.1f KiB", (double)n / 1024);
    else if (n < ((int64_t)1 << 30))
        snprintf(buf, size, "%.1f MiB", (double)n / (1 << 20));
    else
        snprintf(buf, size, "%.2f GiB", (double)n / (1 << 30));
}

static void fmt_age(int64_t ms, char *buf, size_t size) {
    if (ms < 0)
        ms = 0;
    int64_t s = ms / 1000;
    if (s < 60)
        snprintf(buf, size, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, (s / 60) % 60);
    else
        snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", s / 86400, (s / 3600) % 24);
}

static int cmd_list(weir_ckpt_t *c, const char *pipeline) {
    char errstr[WEIR_ERRSTR_SIZE];
    weir_ckpt_info_t *infos;
    int count;
    if (weir_ckpt_list(c, &infos, &count, errstr, sizeof(errstr))) {
        fprintf(stderr, "weir state list: %s\n", errstr);
        return 1;
    }
    if (!count) {
        printf("no checkpoints for pipeline '%s'\n", pipeline);
        return 0;
    }
    int tw = 5;
    for (int i = 0; i < count; i++)
        if ((int)strlen(infos[i].topic) > tw)
            tw = (int)strlen(infos[i].topic);
    printf("%-*s  %9s  %-17s  %12s  %10s  %s\n", tw, "TOPIC", "PARTITION", "CHECKPOINT", "NEXT_OFFSET", "SIZE", "AGE");
    int64_t now = weir_now_ms();
    for (int i = 0; i < count; i++) {
        char size[32], age[32], n[40];
        fmt_size(infos[i].size, size, sizeof(size));
        fmt_age(now - infos[i].created_ms, age, sizeof(age));
        snprintf(n, sizeof(n), "%" PRId64 "%s", infos[i].n, infos[i].latest ? " (latest)" : "");
        printf("%-*s  %9" PRId32 "  %-17s  %12" PRId64 "  %10s  %s\n", tw, infos[i].topic, infos[i].partition, n,
               infos[i].next_offset, size, age);
    }
    weir_ckpt_info_free(infos, count);
    return 0;
}

static int cmd_delete(weir_ckpt_t *c, const char *pipeline) {
    char errstr[WEIR_ERRSTR_SIZE];
    int64_t deleted;
    if (weir_ckpt_delete_all(c, &deleted, errstr, sizeof(errstr))) {
        fprintf(stderr, "weir state delete: %s\n", errstr);
        return 1;
    }
    printf("deleted %" PRId64 " key%s of pipeline '%s'\n", deleted, deleted == 1 ? "" : "s", pipeline);
    return 0;
}

/** A meta value as a JSON integer when it is one, else as a string. */
static json_t *meta_value(const char *s) {
    if (!s)
        return json_null();
    char *e;
    long long v = strtoll(s, &e, 10);
    if (*s && !*e && (s[0] != '0' || !s[1]))
        return json_integer(v);
    return json_string(s);
}

/** A frame header as JSON: tag, version, payload length, and "error" when it is damaged. */
static json_t *frame_json(const weir_frame_t *f, bool readable) {
    json_t *o = json_object();
    if (f->tag) {
        json_object_set_new(o, "tag", json_stringn((const char *)f->tag, f->tag_len));
        json_object_set_new(o, "version", json_integer(f->version));
        json_object_set_new(o, "payload_length", json_integer((json_int_t)f->payload_len));
    }
    if (readable && f->crc_ok) {
        json_object_set_new(o, "frame_bytes", json_integer((json_int_t)f->len));
        json_object_set_new(o, "crc_ok", json_true());
    } else if (readable) {
        char why[200];
        snprintf(why, sizeof(why), "snapshot of '%.*s' fails its CRC check (stored %08x, computed %08x)",
                 (int)(f->tag_len > 64 ? 64 : f->tag_len), (const char *)f->tag, f->crc_stored, f->crc_computed);
        json_object_set_new(o, "error", json_string(why));
    }
    return o;
}

/** Task snapshot layout -> {"max_ts", "watermark", "nodes": [...]}; only `node` if given. */
static json_t *task_json(const weir_buf_t *state, const char *node, bool *node_found) {
    json_t *t = json_object();
    weir_task_snapshot_view_t v;
    int rc = weir_task_snapshot_parse(state->p, state->len, &v);
    if (rc && v.bad_node < 0) {
        json_object_set_new(t, "error", json_string(v.errstr));
        weir_task_snapshot_view_free(&v);
        return t;
    }
    json_object_set_new(t, "node_count", json_integer(v.node_count));
    json_object_set_new(t, "max_ts", json_integer(v.max_ts));
    json_object_set_new(t, "watermark", json_integer(v.watermark));
    json_t *nodes = json_array();
    for (uint32_t i = 0; i < v.nnodes; i++) {
        const weir_task_snapshot_node_t *n = &v.nodes[i];
        bool readable = !rc || (int)i != v.bad_node;
        json_t *f = frame_json(&n->frame, readable);
        if (!readable)
            json_object_set_new(f, "error", json_string(v.errstr));
        json_object_set_new(f, "name", json_string(n->name));
        if (!node || !strcmp(node, n->name)) {
            if (node) {
                *node_found = true;
                json_object_set_new(f, "state", json_null());
                json_object_set_new(f, "note", json_string(STATE_NO_DUMP_NOTE));
            }
            json_array_append_new(nodes, f);
        } else {
            json_decref(f);
        }
    }
    if (rc && (v.bad_node >= (int)v.nnodes)) /* no name: nothing to show for that node */
        json_object_set_new(t, "error", json_string(v.errstr));
    if (!rc && v.trailing)
        json_object_set_new(t, "trailing_bytes", json_integer((json_int_t)v.trailing));
    if (!node) {
        json_object_set_new(t, "nodes", nodes);
    } else {
        json_object_set(t, "node", json_array_size(nodes) ? json_array_get(nodes, 0) : json_null());
        json_decref(nodes);
    }
    weir_task_snapshot_view_free(&v);
    return t;
}

static void nop_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque;
    (void)sink;
    (void)seq;
    (void)rec;
}

/* Restore the task snapshot into the pipeline's operators and put each node's dump() into "state". */
static void add_operator_states(json_t *task, const weir_pipeline_t *pl, const weir_buf_t *state,
                                const char *saved_fp) {
    char errstr[WEIR_ERRSTR_SIZE];
    char *fp = weir_pipeline_fingerprint(pl);
    /* Every node, restoring those the checkpoint has: a partition's checkpoint holds the nodes of its
     * stage only (docs/keyby.md). */
    weir_task_t *t = weir_task_new(pl, nop_sink, NULL, NULL);
    json_t *nodes = json_object_get(task, "nodes");
    json_t *single = json_object_get(task, "node"); /* --node: one object instead of the array */
    if (!nodes && single) {
        nodes = json_array();
        json_array_append(nodes, single);
        json_object_set_new(task, "__tmp", nodes); /* owned by task while we fill it */
    }
    weir_restore_opts_t opts = {.saved_fp = saved_fp, .cur_fp = fp, .partial = true};
    if (weir_task_restore(t, state->p, state->len, &opts, errstr, sizeof(errstr))) {
        json_object_set_new(task, "state_error", json_string(errstr));
    } else {
        size_t i;
        json_t *f;
        json_array_foreach(nodes, i, f) {
            const char *name = json_string_value(json_object_get(f, "name"));
            int k = name ? weir_pipeline_find_node(pl, name) : -1;
            json_object_del(f, "note");
            if (k < 0)
                continue;
            const weir_operator_class_t *cls = pl->nodes[k].plan.cls;
            if (!cls->snapshot) { /* stateless: its state is the empty object */
                json_object_set_new(f, "state", json_object());
                continue;
            }
            if (!cls->dump) {
                json_object_set_new(f, "state", json_null());
                json_object_set_new(f, "note", json_string("this operator has no dump"));
                continue;
            }
            weir_buf_t b = {0};
            json_error_t je;
            json_t *js = cls->dump(weir_task_node_state(t, k), &b) == WEIR_OK
                             ? json_loadb((const char *)b.p, b.len, JSON_DECODE_ANY, &je)
                             : NULL;
            json_object_set_new(f, "state", js ? js : json_string("dump failed"));
            weir_buf_free(&b);
        }
    }
    json_object_del(task, "__tmp");
    weir_task_destroy(t);
    free(fp);
}

static int cmd_dump(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, const char *node,
                    const weir_pipeline_t *pl) {
    char errstr[WEIR_ERRSTR_SIZE];
    weir_ckpt_field_t *fields;
    int nf;
    int64_t n;
    int rc = weir_ckpt_meta(c, topic, partition, n_want, &n, &fields, &nf, errstr, sizeof(errstr));
    if (rc) {
        fprintf(stderr, "weir state dump: %s\n", errstr);
        return 1;
    }
    char key[1024];
    weir_ckpt_key(c, topic, partition, n, key, sizeof(key));
    json_t *o = json_object();
    json_object_set_new(o, "key", json_string(key));
    json_object_set_new(o, "topic", json_string(topic));
    json_object_set_new(o, "partition", json_integer(partition));
    json_object_set_new(o, "checkpoint", json_integer(n));
    json_t *meta = json_object();
    for (int i = 0; i < nf; i++)
        json_object_set_new(meta, fields[i].name, meta_value(fields[i].value));
    weir_ckpt_fields_free(fields, nf);
    json_object_set_new(o, "meta", meta);

    /* Read it again through the verifying path: a corrupt checkpoint still shows its meta. */
    weir_buf_t state = {0};
    int64_t n2, off;
    char *saved_fp = NULL;
    rc = weir_ckpt_read(c, topic, partition, n, &n2, &off, &saved_fp, &state, errstr, sizeof(errstr));
    json_object_set_new(o, "verified", json_boolean(rc == WEIR_OK));
    bool node_found = false;
    if (rc != WEIR_OK) {
        json_object_set_new(o, "error", json_string(errstr));
    } else {
        json_t *task = task_json(&state, node, &node_found);
        if (pl)
            add_operator_states(task, pl, &state, saved_fp);
        json_object_set_new(o, "task", task);
    }
    free(saved_fp);
    weir_buf_free(&state);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    if (rc != WEIR_OK)
        return 1;
    if (node && !node_found) {
        fprintf(stderr, "weir state dump: checkpoint %s has no node '%s'\n", key, node);
        return 1;
    }
    return 0;
}

int weir_cmd_state(int argc, char **argv) {
    static const struct option opts[] = {{"redis", required_argument, NULL, 'r'},
                                         {"pipeline", required_argument, NULL, 'p'},
                                         {"node", required_argument, NULL, 'n'},
                                         {"checkpoint", required_argument, NULL, 'c'},
                                         {"file", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    const char *url = getenv("WEIR_REDIS"), *pipeline = NULL, *node = NULL, *file = NULL;
    int64_t n_want = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "r:p:n:c:f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': file = optarg; break;
        case 'r': url = optarg; break;
        case 'p': pipeline = optarg; break;
        case 'n': node = optarg; break;
        case 'c': {
            char *e;
            n_want = strtoll(optarg, &e, 10);
            if (*e || n_want < 1) {
                fprintf(stderr, "weir state: --checkpoint: expected a number >= 1\n");
                return 2;
            }
            break;
        }
        case 'h': state_usage(stdout); return 0;
        default: state_usage(stderr); return 2;
        }
    }
    int npos = argc - optind;
    const char *cmd = npos > 0 ? argv[optind] : NULL;
    weir_pipeline_t *pl = NULL;
    if (file) {
        char perr[WEIR_ERRSTR_SIZE];
        if (!(pl = weir_pipeline_load(file, perr, sizeof(perr)))) {
            fprintf(stderr, "weir state: %s\n", perr);
            return 2;
        }
        if (!pipeline)
            pipeline = pl->name;
    }
    if (!cmd || !url || !pipeline) {
        weir_pipeline_destroy(pl);
        if (cmd && (!url || !pipeline))
            fprintf(stderr, "weir state: --redis (or $WEIR_REDIS) and --pipeline are required\n");
        state_usage(stderr);
        return 2;
    }
    bool is_dump = !strcmp(cmd, "dump");
    if ((is_dump && npos != 3) || (!is_dump && npos != 1) || (!is_dump && (node || n_want || file))) {
        weir_pipeline_destroy(pl);
        state_usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "list") && strcmp(cmd, "delete") && !is_dump) {
        weir_pipeline_destroy(pl);
        fprintf(stderr, "weir state: unknown command '%s'\n", cmd);
        return 2;
    }
    char errstr[WEIR_ERRSTR_SIZE];
    weir_ckpt_t *c = weir_ckpt_new(url, pipeline, errstr, sizeof(errstr));
    if (!c) {
        weir_pipeline_destroy(pl);
        fprintf(stderr, "weir state: %s\n", errstr);
        return 2;
    }
    int rc;
    if (is_dump) {
        char *e;
        long part = strtol(argv[optind + 2], &e, 10);
        if (*e || part < 0 || part > INT32_MAX) {
            fprintf(stderr, "weir state dump: bad partition '%s'\n", argv[optind + 2]);
            rc = 2;
        } else {
            rc = cmd_dump(c, argv[optind + 1], (int32_t)part, n_want, node, pl);
        }
    } else if (!strcmp(cmd, "list")) {
        rc = cmd_list(c, pipeline);
    } else {
        rc = cmd_delete(c, pipeline);
    }
    weir_ckpt_destroy(c);
    weir_pipeline_destroy(pl);
    return rc;
}
