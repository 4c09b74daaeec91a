/*
 * libFuzzer harness: the JSON decoder (schemas/codec.c, fast path and the
 * jansson fallback) and the event-time stamping of a decoded record
 * (processor/engine/runtime.c: epoch numbers and ISO-8601 strings).
 *
 * The input is one message. It is decoded against two row types: one with a
 * field of every type, plain and nullable (short names the fuzzer finds), and
 * the sensor_reading schema's (the seeds' shape). The fast path and jansson
 * must agree (the same object with a first member only jansson takes), and
 * whatever decodes must survive the round trip: encode as JSON, decode
 * again, same record.
 */
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fuzz_util.h"
#include "runtime.h"

static weir_rowtype_t *all_rt;
static weir_schema_t *sensor;
static weir_decoder_t *dec[2];
static weir_encoder_t *enc[2];
static const weir_rowtype_t *rts[2];
static weir_record_t rec[2], back[2], tree[2];
static weir_source_spec_t stamp_by[3][2]; /* event time from a long, a double, a string field */

static void init_stamps(int k, const weir_rowtype_t *rt, const char *const names[3], const char *key) {
    for (int i = 0; i < 3; i++) {
        stamp_by[i][k].rt = rt;
        stamp_by[i][k].event_time_slot = weir_rowtype_find(rt, names[i]);
        stamp_by[i][k].key_slot = weir_rowtype_find(rt, key);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[WEIR_ERRSTR_SIZE];
    all_rt = weir_rowtype_new();
    static const struct {
        const char *name;
        weir_type_t type;
        bool nullable;
    } f[] = {
        {"b", WEIR_BOOL, false},   {"l", WEIR_LONG, false},  {"d", WEIR_DOUBLE, false}, {"s", WEIR_STRING, false},
        {"y", WEIR_BYTES, false},  {"nb", WEIR_BOOL, true},  {"nl", WEIR_LONG, true},   {"nd", WEIR_DOUBLE, true},
        {"ns", WEIR_STRING, true}, {"ny", WEIR_BYTES, true}, {"z", WEIR_NULL, true},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        weir_rowtype_add(all_rt, f[i].name, f[i].type, f[i].nullable);
    sensor = weir_schema_load(WEIR_DATADIR "/schemas/sensor_reading.avsc", err, sizeof(err));
    FUZZ_CHECK(sensor != NULL, "%s", err);
    rts[0] = all_rt;
    rts[1] = weir_schema_rowtype(sensor);
    for (int k = 0; k < 2; k++) {
        dec[k] = weir_decoder_new(WEIR_FMT_JSON, NULL, rts[k], false, err, sizeof(err));
        enc[k] = weir_encoder_new(WEIR_FMT_JSON, NULL, rts[k], false, 0, err, sizeof(err));
        FUZZ_CHECK(dec[k] != NULL && enc[k] != NULL, "%s", err);
        weir_record_init(&rec[k], rts[k]);
        weir_record_init(&back[k], rts[k]);
        weir_record_init(&tree[k], rts[k]);
    }
    init_stamps(0, all_rt, (const char *const[]){"l", "nd", "ns"}, "s");
    init_stamps(1, rts[1], (const char *const[]){"ts", "temperature", "sensor_id"}, "site");
    return 0;
}

static inline bool json_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The message with a first member that the fast path never takes
 * ({"zz_tree":[0], ...}), so that jansson alone decodes it; only for an
 * object whose first member follows. @returns false if not applicable. */
static bool force_tree(const uint8_t *data, size_t size, weir_buf_t *out) {
    size_t i = 0, j;
    while (i < size && json_ws(data[i]))
        i++;
    if (i == size || data[i] != '{')
        return false;
    for (j = i + 1; j < size && json_ws(data[j]); j++)
        ;
    if (j == size || data[j] != '"')
        return false;
    weir_buf_reset(out);
    weir_buf_append(out, data, i);
    weir_buf_puts(out, "{\"zz_tree\":[0],");
    weir_buf_append(out, data + i + 1, size - i - 1);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char reason[WEIR_ERRSTR_SIZE];
    weir_buf_t out = {0}, forced = {0};
    bool have_forced = force_tree(data, size, &forced);
    for (int k = 0; k < 2; k++) {
        int rc = weir_decode(dec[k], data, size, &rec[k], reason, sizeof(reason));
        /* The fast path and jansson accept the same messages and give the same records. */
        if (have_forced) {
            int rc_tree = weir_decode(dec[k], forced.p, forced.len, &tree[k], reason, sizeof(reason));
            FUZZ_CHECK(rc == rc_tree, "decoded %s by the fast path, %s by jansson", rc ? "not" : "",
                       rc_tree ? "not" : "");
            for (int i = 0; rc == WEIR_OK && i < rts[k]->nfields; i++)
                FUZZ_CHECK(fuzz_value_equal(&rec[k].v[i], &tree[k].v[i], 1), "field '%s': fast path and jansson differ",
                           rts[k]->fields[i].name);
        }
        if (rc != WEIR_OK)
            continue;
        for (int i = 0; i < 3; i++)
            (void)weir_source_stamp(&stamp_by[i][k], &rec[k], 0, reason, sizeof(reason));

        /* Round trip. A decoded double is always finite (JSON has no NaN), so
         * the encoder never has to write one as null. */
        weir_buf_reset(&out);
        FUZZ_CHECK(weir_encode(enc[k], &rec[k], NULL, NULL, &out, reason, sizeof(reason)) == WEIR_OK, "%s", reason);
        rc = weir_decode(dec[k], out.p, out.len, &back[k], reason, sizeof(reason));
        FUZZ_CHECK(rc == WEIR_OK, "re-decoding %.*s: %s", (int)out.len, (const char *)out.p, reason);
        for (int i = 0; i < rts[k]->nfields; i++)
            FUZZ_CHECK(fuzz_value_equal(&rec[k].v[i], &back[k].v[i], 1), "field '%s' changed in %.*s",
                       rts[k]->fields[i].name, (int)out.len, (const char *)out.p);
    }
    /* The input as an ISO-8601 time stamp, as a string event-time field holds it. */
    int64_t ms;
    (void)weir_parse_iso8601((const char *)data, size, &ms);
    weir_buf_free(&out);
    weir_buf_free(&forced);
    return 0;
}
