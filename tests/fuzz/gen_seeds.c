/*
 * Writes the generated part of the fuzzers' seed corpora with weir's own
 * encoders and tasks (the hand-written seeds -- expressions, pipeline files,
 * a few JSON messages -- are files in tests/fuzz/corpus/ themselves):
 *
 *   corpus/json/gen-*      JSON messages: sensor readings and all-types records
 *   corpus/avro/gen-*      Avro datums of sensor_reading.avsc and all_types.avsc,
 *                          plain and with the Confluent header
 *   corpus/snapshot/gen-*  task snapshots of snapshot_pipeline.h after 0..N records
 *
 * Usage: build-fuzz/tests/fuzz/gen_seeds tests/fuzz/corpus   (tests/README.md)
 * Deterministic: the same build writes the same bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"
#include "snapshot_pipeline.h"
#include "task.h"

static const char *dir;

static void put(const char *sub, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/gen-%s", dir, sub, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(p, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "gen_seeds: cannot write %s\n", path);
        exit(1);
    }
}

/* Reading i of a plausible sensor stream (values a real stream would carry). */
static void sensor_reading(weir_record_t *rec, int i) {
    static const char *const ids[] = {"s-0001", "s-0002", "s-0042"};
    static const char *const sites[] = {"lab-1", "roof", "caf\xc3\xa9"};
    const weir_rowtype_t *rt = rec->rt;
    weir_record_clear(rec);
    for (int f = 0; f < rt->nfields; f++) {
        const char *name = rt->fields[f].name;
        weir_value_t *v = &rec->v[f];
        if (!strcmp(name, "sensor_id"))
            *v = weir_v_str(ids[i % 3], strlen(ids[i % 3]));
        else if (!strcmp(name, "site"))
            *v = weir_v_str(sites[i % 3], strlen(sites[i % 3]));
        else if (!strcmp(name, "ts"))
            *v = weir_v_long(1700000000000LL + 700LL * i);
        else if (!strcmp(name, "temperature"))
            *v = weir_v_double(20.0 + 5.0 * sin(i * 0.7) + (i % 3));
        else if (!strcmp(name, "humidity"))
            *v = weir_v_double(45.5 + (i % 7));
        else if (!strcmp(name, "pressure"))
            *v = i % 4 == 3 ? weir_v_null() : weir_v_double(1013.25 - i);
    }
    rec->ts = 1700000000000LL + 700LL * i;
}

/* all_types.avsc: fuzz_fill_record's values, but ints, enum symbols and fixed
 * sizes that fit the schema, and finite floats (JSON cannot carry the others). */
static void all_types(weir_record_t *rec, int k) {
    static const char *const syms[] = {"LOW", "MID", "HIGH"};
    fuzz_fill_record(rec, k);
    const weir_rowtype_t *rt = rec->rt;
    for (int f = 0; f < rt->nfields; f++) {
        const char *name = rt->fields[f].name;
        weir_value_t *v = &rec->v[f];
        if (v->type == WEIR_DOUBLE && !isfinite(v->u.d))
            v->u.d = 1.5 * k;
        if (v->type == WEIR_DOUBLE && (!strcmp(name, "f") || !strcmp(name, "nf")))
            v->u.d = (float)v->u.d;
        if ((!strcmp(name, "e") || !strcmp(name, "ne")) && v->type != WEIR_NULL)
            *v = weir_v_str(syms[k % 3], strlen(syms[k % 3]));
        if ((!strcmp(name, "x") || !strcmp(name, "nx")) && v->type != WEIR_NULL)
            weir_set_str(v, WEIR_BYTES, "\x00\xff\x7f\x80", 4);
        if ((!strcmp(name, "i") || !strcmp(name, "ni")) && v->type == WEIR_LONG)
            v->u.i = (int32_t)v->u.i;
        if (!strcmp(name, "x0"))
            weir_set_str(v, WEIR_BYTES, "", 0);
    }
}

static void gen_codecs(void) {
    static const char *const names[] = {"sensor", "all"};
    static const char *const paths[] = {WEIR_DATADIR "/schemas/sensor_reading.avsc",
                                        WEIR_DATADIR "/tests/fuzz/all_types.avsc"};
    char err[WEIR_ERRSTR_SIZE], name[64];
    for (int s = 0; s < 2; s++) {
        weir_schema_t *schema = weir_schema_load(paths[s], err, sizeof(err));
        FUZZ_CHECK(schema != NULL, "%s", err);
        const weir_rowtype_t *rt = weir_schema_rowtype(schema);
        weir_encoder_t *json = weir_encoder_new(WEIR_FMT_JSON, NULL, rt, false, 0, err, sizeof(err));
        weir_encoder_t *avro[2];
        for (int c = 0; c < 2; c++) {
            avro[c] = weir_encoder_new(WEIR_FMT_AVRO, schema, rt, c, 42, err, sizeof(err));
            FUZZ_CHECK(avro[c] != NULL, "%s", err);
        }
        weir_record_t rec;
        weir_record_init(&rec, rt);
        weir_buf_t out = {0};
        for (int k = 0; k < 6; k++) {
            if (s == 0)
                sensor_reading(&rec, k);
            else
                all_types(&rec, k);
            weir_buf_reset(&out);
            FUZZ_CHECK(weir_encode(json, &rec, NULL, NULL, &out, err, sizeof(err)) == WEIR_OK, "%s", err);
            snprintf(name, sizeof(name), "%s-%d.json", names[s], k);
            put("json", name, out.p, out.len);
            for (int c = 0; c < 2; c++) {
                if (c && k >= 2)
                    continue; /* two Confluent-framed datums are enough */
                weir_buf_reset(&out);
                FUZZ_CHECK(weir_encode(avro[c], &rec, NULL, NULL, &out, err, sizeof(err)) == WEIR_OK, "%s", err);
                snprintf(name, sizeof(name), "%s-%d%s.avro", names[s], k, c ? "-confluent" : "");
                put("avro", name, out.p, out.len);
            }
        }
        weir_buf_free(&out);
        weir_record_free(&rec);
        weir_encoder_destroy(json);
        for (int c = 0; c < 2; c++)
            weir_encoder_destroy(avro[c]);
        weir_schema_destroy(schema);
    }
}

static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque, (void)sink, (void)seq, (void)rec;
}

/* Snapshots after 0, 5, 20, 60 and 150 readings: empty state, open windows,
 * kmeans buffering and then initialised, arima before and after its fits. */
static void gen_snapshots(void) {
    static const int after[] = {0, 5, 20, 60, 150};
    char err[WEIR_ERRSTR_SIZE], name[64];
    weir_pipeline_t *pl = weir_pipeline_load_string("snapshot.yaml", FUZZ_SNAPSHOT_PIPELINE, err, sizeof(err));
    FUZZ_CHECK(pl != NULL, "%s", err);
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    for (size_t a = 0; a < sizeof(after) / sizeof(after[0]); a++) {
        weir_task_t *t = weir_task_new(pl, on_sink, NULL, NULL);
        for (int i = 0; i < after[a]; i++) {
            sensor_reading(&rec, i);
            weir_task_process(t, &rec);
        }
        weir_buf_t snap = {0};
        FUZZ_CHECK(weir_task_snapshot(t, &snap) == WEIR_OK, "snapshot failed");
        snprintf(name, sizeof(name), "after-%d.snap", after[a]);
        put("snapshot", name, snap.p, snap.len);
        weir_buf_free(&snap);
        weir_task_destroy(t);
    }
    weir_record_free(&rec);
    weir_pipeline_destroy(pl);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds CORPUS_DIR   (tests/fuzz/corpus)\n");
        return 2;
    }
    dir = argv[1];
    gen_codecs();
    gen_snapshots();
    return 0;
}
