/*
 * libFuzzer harness: snapshot frames (processor/core/snapshot.c) and task
 * restore (processor/engine/task.c and every operator's restore()).
 *
 * The input is a task snapshot, as weir_task_snapshot writes it and the
 * checkpoint store keeps it. Two passes:
 *   1. the raw reader: the input drives a sequence of reads (integers,
 *      doubles, byte strings, frames under each operator's tag);
 *   2. restore into a task of a pipeline with every stateful operator
 *      (window, kmeans, arima, plus filter and map). Frames are CRC-checked,
 *      so a mutated snapshot would almost never get past the CRC into an
 *      operator's restore(): the harness first rewrites every frame's CRC it
 *      can find (the CRC check itself is trivial and unit-tested). A restored
 *      task must dump its state as JSON (`weir state dump`), then run records,
 *      reach the end of input and snapshot again.
 *
 * Kept to one call of weir_task_restore so it follows that function's
 * signature easily.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "snapshot_pipeline.h"
#include "snapshot.h"
#include "task.h"

static const char *const TAGS[] = {"task", "filter", "map", "window", "kmeans", "arima"};
#define NTAGS (sizeof(TAGS) / sizeof(TAGS[0]))

static weir_pipeline_t *pl;

static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque, (void)sink, (void)seq, (void)rec;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[WEIR_ERRSTR_SIZE];
    pl = weir_pipeline_load_string("fuzz-snapshot.yaml", FUZZ_SNAPSHOT_PIPELINE, err, sizeof(err));
    FUZZ_CHECK(pl != NULL, "%s", err);
    return 0;
}

/* Pass 1: every reader call, in an order the input chooses. */
static void read_raw(const uint8_t *data, size_t size) {
    weir_reader_t r;
    weir_reader_init(&r, data, size);
    while (!r.err) {
        uint8_t op = weir_r_u8(&r);
        size_t n;
        switch (op % 8) {
        case 0: (void)weir_r_u32(&r); break;
        case 1: (void)weir_r_u64(&r); break;
        case 2: (void)weir_r_i64(&r); break;
        case 3: (void)weir_r_f64(&r); break;
        case 4: (void)weir_r_bytes(&r, &n); break;
        case 5: free(weir_r_strdup(&r)); break;
        case 6: (void)weir_r_raw(&r, op / 8); break;
        case 7: {
            uint16_t version;
            weir_reader_t body;
            if (weir_r_frame_open(&r, TAGS[(op / 8) % NTAGS], &version, &body) == WEIR_OK)
                while (!body.err)
                    (void)weir_r_u64(&body);
            break;
        }
        }
    }
}

/* Rewrite the CRC of the frame at *pos (if it is whole) and move past it. */
static int fix_frame(uint8_t *p, size_t n, size_t *pos) {
    weir_reader_t r;
    weir_reader_init(&r, p, n);
    r.pos = *pos;
    (void)weir_r_raw(&r, 8); /* magic, version, reserved */
    size_t tl;
    (void)weir_r_bytes(&r, &tl);
    uint64_t plen = weir_r_u64(&r);
    if (r.err || plen > n - r.pos || n - r.pos - plen < 4)
        return -1;
    r.pos += plen;
    uint32_t crc = weir_crc32(0, p + *pos, r.pos - *pos);
    for (int i = 0; i < 4; i++)
        p[r.pos + i] = (uint8_t)(crc >> (8 * i));
    *pos = r.pos + 4;
    return 0;
}

/* u32 node count, the task frame, then per node: name, frame. */
static void fix_crcs(uint8_t *p, size_t n) {
    size_t pos = 4;
    if (n < 4 || fix_frame(p, n, &pos))
        return;
    while (pos < n) {
        weir_reader_t r;
        weir_reader_init(&r, p, n);
        r.pos = pos;
        free(weir_r_strdup(&r));
        if (r.err)
            return;
        pos = r.pos;
        if (fix_frame(p, n, &pos))
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    read_raw(data, size);

    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    char err[WEIR_ERRSTR_SIZE];
    weir_task_t *t = weir_task_new(pl, on_sink, NULL, NULL);
    if (weir_task_restore(t, copy, size, NULL, err, sizeof(err)) == WEIR_OK) {
        fuzz_check_dumps(t); /* `weir state dump` of what was accepted */
        weir_record_t rec;
        weir_record_init(&rec, pl->source.rt);
        for (int k = 0; k < 8; k++) {
            fuzz_fill_record(&rec, k);
            rec.ts = 1700000000000LL + 2000 * k; /* event_time: ts */
            rec.v[1] = weir_v_long(rec.ts);
            weir_task_process(t, &rec);
        }
        weir_buf_t snap = {0};
        FUZZ_CHECK(weir_task_snapshot(t, &snap) == WEIR_OK, "snapshot after restore failed");
        weir_task_advance(t, WEIR_WM_END);
        weir_buf_free(&snap);
        weir_record_free(&rec);
    }
    weir_task_destroy(t);
    free(copy);
    return 0;
}
