/*
 * libFuzzer harness: the Avro binary decoder (schemas/codec.c).
 *
 * The input is one message, decoded against schemas/sensor_reading.avsc and
 * tests/fuzz/all_types.avsc (every type weir maps, plain and nullable in
 * both union orders, fixed, enum, a named-type reference), each without and
 * with the Confluent header. Whatever decodes must survive the round trip:
 * weir's encoder writes it again, the decoder reads back the same record,
 * and the encoding is never longer than the message (it is the canonical,
 * shortest form).
 */
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fuzz_util.h"

#define NSCHEMAS 2

static weir_schema_t *schema[NSCHEMAS];
static weir_decoder_t *dec[NSCHEMAS][2]; /* [schema][confluent] */
static weir_encoder_t *enc[NSCHEMAS][2];
static weir_record_t rec[NSCHEMAS], back[NSCHEMAS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const char *const paths[NSCHEMAS] = {WEIR_DATADIR "/schemas/sensor_reading.avsc",
                                                WEIR_DATADIR "/tests/fuzz/all_types.avsc"};
    char err[WEIR_ERRSTR_SIZE];
    for (int s = 0; s < NSCHEMAS; s++) {
        schema[s] = weir_schema_load(paths[s], err, sizeof(err));
        FUZZ_CHECK(schema[s] != NULL, "%s", err);
        const weir_rowtype_t *rt = weir_schema_rowtype(schema[s]);
        for (int c = 0; c < 2; c++) {
            dec[s][c] = weir_decoder_new(WEIR_FMT_AVRO, schema[s], rt, c, err, sizeof(err));
            enc[s][c] = weir_encoder_new(WEIR_FMT_AVRO, schema[s], rt, c, 7, err, sizeof(err));
            FUZZ_CHECK(dec[s][c] != NULL && enc[s][c] != NULL, "%s", err);
        }
        weir_record_init(&rec[s], rt);
        weir_record_init(&back[s], rt);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char reason[WEIR_ERRSTR_SIZE];
    weir_buf_t out = {0};
    for (int s = 0; s < NSCHEMAS; s++) {
        const weir_rowtype_t *rt = weir_schema_rowtype(schema[s]);
        for (int c = 0; c < 2; c++) {
            if (weir_decode(dec[s][c], data, size, &rec[s], reason, sizeof(reason)) != WEIR_OK)
                continue;
            weir_buf_reset(&out);
            FUZZ_CHECK(weir_encode(enc[s][c], &rec[s], NULL, NULL, &out, reason, sizeof(reason)) == WEIR_OK, "%s",
                       reason);
            FUZZ_CHECK(out.len <= size, "encoding of %zu bytes grew to %zu", size, out.len);
            FUZZ_CHECK(weir_decode(dec[s][c], out.p, out.len, &back[s], reason, sizeof(reason)) == WEIR_OK,
                       "re-decoding: %s", reason);
            for (int i = 0; i < rt->nfields; i++)
                FUZZ_CHECK(fuzz_value_equal(&rec[s].v[i], &back[s].v[i], 1), "field '%s' changed", rt->fields[i].name);
        }
    }
    weir_buf_free(&out);
    return 0;
}
