/*
 * libFuzzer harness: the pipeline compiler (processor/engine/pipeline.c, the
 * YAML configuration layer in processor/core/config.c, every operator's
 * config handling) and a short run of what it compiles.
 *
 * The input is a pipeline file. When it compiles, it is printed (`weir
 * validate`), a task runs a few records with awkward values through it
 * (stamped like the runtimes do), its state must dump as JSON (`weir state
 * dump`), the task's snapshot must restore into a fresh task, and both run to
 * the end of input.
 *
 * Runs in the source folder, so `schema: schemas/...` paths resolve.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "runtime.h"
#include "task.h"

#define NRECORDS 8

static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq;
    const weir_pipeline_t *pl = opaque;
    FUZZ_CHECK(sink >= 0 && sink < pl->nsinks, "sink %d of %d", sink, pl->nsinks);
    FUZZ_CHECK(rec->rt == pl->sinks[sink].rt || rec->rt->nfields == pl->sinks[sink].rt->nfields,
               "sink '%s' got a record of another row type", pl->sinks[sink].label);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (chdir(WEIR_DATADIR) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *yaml = malloc(size + 1);
    memcpy(yaml, data, size);
    yaml[size] = '\0';
    char err[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("fuzz.yaml", yaml, err, sizeof(err));
    free(yaml);
    if (pl == NULL)
        return 0;
    weir_pipeline_print(pl, fuzz_devnull());

    weir_task_t *t = weir_task_new(pl, on_sink, NULL, pl);
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    for (int k = 0; k < NRECORDS; k++) {
        fuzz_fill_record(&rec, k);
        if (weir_source_stamp(&pl->source, &rec, 1700000000000LL + k, err, sizeof(err)) == WEIR_OK)
            weir_task_process(t, &rec);
    }

    fuzz_check_dumps(t);
    /* Whatever state the records left must restore into a fresh task, and
     * both tasks must then run to the end of input. */
    weir_buf_t snap = {0};
    FUZZ_CHECK(weir_task_snapshot(t, &snap) == WEIR_OK, "snapshot failed");
    weir_task_t *t2 = weir_task_new(pl, on_sink, NULL, pl);
    FUZZ_CHECK(weir_task_restore(t2, snap.p, snap.len, NULL, err, sizeof(err)) == WEIR_OK, "restore: %s", err);
    weir_buf_free(&snap);
    weir_task_advance(t, WEIR_WM_END);
    weir_task_advance(t2, WEIR_WM_END);
    weir_task_destroy(t2);
    weir_task_destroy(t);
    weir_record_free(&rec);
    weir_pipeline_destroy(pl);
    return 0;
}
