/* File mode: a JSON-lines file in place of the Kafka source, one JSON-lines
 * output in place of every sink (each record tagged with "node"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "task.h"

typedef struct file_run {
    const weir_pipeline_t *pl;
    FILE *out;
    FILE *dead;
    weir_encoder_t **enc; /* per sink */
    weir_buf_t buf;
    uint64_t dead_count;  /* every dead letter: undecodable lines and records an operator rejected */
    uint64_t undecodable; /* lines that never reached the task (not in its records_in) */
    const char *input_name;
} file_run_t;

static void file_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq; /* file outputs carry no id */
    file_run_t *fr = opaque;
    char reason[256];
    weir_buf_reset(&fr->buf);
    if (weir_encode(fr->enc[sink], rec, "node", fr->pl->sinks[sink].label, &fr->buf, reason, sizeof(reason))) {
        weir_log(WEIR_LOG_ERR, "file", "cannot encode output of %s: %s", fr->pl->sinks[sink].label, reason);
        return;
    }
    weir_buf_putc(&fr->buf, '\n');
    fwrite(fr->buf.p, 1, fr->buf.len, fr->out);
}

static void write_dead(file_run_t *fr, int64_t line, const char *node, const char *reason, const char *raw,
                       size_t rawlen) {
    fr->dead_count++;
    if (!fr->dead) {
        if (fr->dead_count <= 10)
            weir_log(WEIR_LOG_WARN, "file", "%s:%lld: %s%s%s (no --dead-letter file given)", fr->input_name,
                     (long long)line, node ? node : "", node ? ": " : "", reason);
        return;
    }
    weir_buf_t b = {0};
    weir_buf_puts(&b, "{\"reason\":");
    weir_json_append_str(&b, reason, strlen(reason));
    weir_buf_puts(&b, ",\"file\":");
    weir_json_append_str(&b, fr->input_name, strlen(fr->input_name));
    weir_buf_printf(&b, ",\"line\":%lld", (long long)line);
    if (node) {
        weir_buf_puts(&b, ",\"node\":");
        weir_json_append_str(&b, node, strlen(node));
    }
    if (raw) {
        weir_buf_puts(&b, ",\"raw\":");
        weir_json_append_str(&b, raw, rawlen);
    }
    weir_buf_puts(&b, "}\n");
    fwrite(b.p, 1, b.len, fr->dead);
    weir_buf_free(&b);
}

static void file_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    file_run_t *fr = opaque;
    weir_buf_t b = {0};
    char why[256];
    weir_encoder_t *enc = weir_encoder_new(WEIR_FMT_JSON, NULL, rec->rt, false, 0, why, sizeof(why));
    if (enc && weir_encode(enc, rec, NULL, NULL, &b, why, sizeof(why)) == WEIR_OK)
        write_dead(fr, rec->offset, node, reason, (const char *)b.p, b.len);
    else
        write_dead(fr, rec->offset, node, reason, NULL, 0);
    weir_encoder_destroy(enc);
    weir_buf_free(&b);
}

int weir_run_file(const weir_pipeline_t *pl, const weir_run_opts_t *o) {
    file_run_t fr = {.pl = pl, .input_name = o->input};
    int rc = 1;
    FILE *in = NULL;
    weir_decoder_t *dec = NULL;
    weir_task_t *task = NULL;
    char *line = NULL;
    size_t linecap = 0;
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    char errstr[WEIR_ERRSTR_SIZE];

    fr.enc = weir_calloc((size_t)pl->nsinks + 1, sizeof(*fr.enc));
    for (int i = 0; i < pl->nsinks; i++)
        if (!(fr.enc[i] = weir_encoder_new(WEIR_FMT_JSON, NULL, pl->sinks[i].rt, false, 0, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, "file", "sink %s: %s", pl->sinks[i].label, errstr);
            goto done;
        }
    in = strcmp(o->input, "-") ? weir_open_regular(o->input, errstr, sizeof(errstr)) : stdin;
    if (!in) {
        weir_log(WEIR_LOG_ERR, "file", "%s", errstr);
        goto done;
    }
    fr.out = !o->output || !strcmp(o->output, "-") ? stdout : fopen(o->output, "wb");
    if (!fr.out) {
        weir_log(WEIR_LOG_ERR, "file", "%s: cannot create: %s", o->output, strerror(errno));
        goto done;
    }
    if (o->dead_letter && !(fr.dead = fopen(o->dead_letter, "wb"))) {
        weir_log(WEIR_LOG_ERR, "file", "%s: cannot create: %s", o->dead_letter, strerror(errno));
        goto done;
    }
    if (!(dec = weir_decoder_new(WEIR_FMT_JSON, NULL, pl->source.rt, false, errstr, sizeof(errstr)))) {
        weir_log(WEIR_LOG_ERR, "file", "decoder: %s", errstr);
        goto done;
    }
    task = weir_task_new(pl, file_sink, file_reject, &fr);
    int64_t start = weir_now_ns();
    int64_t lineno = 0;
    bool stopped = false;
    ssize_t n;
    char reason[WEIR_ERRSTR_SIZE];
    bool too_long;
    while (!weir_stop && (n = weir_getline_max(&line, &linecap, in, WEIR_MAX_INPUT_LINE, &too_long)) >= 0) {
        lineno++;
        if (too_long) { /* dead-lettered with its first bytes, never held whole in memory */
            snprintf(reason, sizeof(reason), "line longer than %zu bytes (the limit of an input line)",
                     WEIR_MAX_INPUT_LINE);
            fr.undecodable++;
            write_dead(&fr, lineno, NULL, reason, line, n > 256 ? 256 : (size_t)n);
            continue;
        }
        while (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            continue;
        rec.topic = o->input;
        rec.partition = -1;
        rec.offset = lineno;
        rec.key = NULL;
        rec.key_len = 0;
        if (weir_decode(dec, line, (size_t)n, &rec, reason, sizeof(reason)) ||
            weir_source_stamp(&pl->source, &rec, WEIR_TS_NONE, reason, sizeof(reason))) {
            fr.undecodable++;
            write_dead(&fr, lineno, NULL, reason, line, (size_t)n);
            continue;
        }
        weir_task_process(task, &rec);
    }
    if (ferror(in)) {
        weir_log(WEIR_LOG_ERR, "file", "%s: read error: %s", o->input, strerror(errno));
        goto done;
    }
    /* End of input: the watermark goes to +infinity and every open window fires (operators stop early on
     * weir_stop, so a SIGTERM ends even a long firing within a second). */
    if (!weir_stop)
        weir_task_advance(task, WEIR_WM_END);
    if (weir_stop) {
        weir_log(WEIR_LOG_WARN, "file", "%s: stopped by a signal after line %lld: the output is incomplete (exit 1)",
                 o->input, (long long)lineno);
        stopped = true;
    }
    if (fflush(fr.out) || (fr.dead && fflush(fr.dead))) {
        weir_log(WEIR_LOG_ERR, "file", "write error: %s", strerror(errno));
        goto done;
    }
    double elapsed = (double)(weir_now_ns() - start) / 1e9;
    if (!o->quiet)
        weir_print_summary(weir_task_stats(task)->records_in + fr.undecodable, weir_task_stats(task)->sink_out,
                           fr.dead_count, elapsed, "start..last_output_written");
    rc = stopped ? 1 : 0;
done:
    free(line);
    weir_record_free(&rec);
    weir_task_destroy(task);
    weir_decoder_destroy(dec);
    for (int i = 0; fr.enc && i < pl->nsinks; i++)
        weir_encoder_destroy(fr.enc[i]);
    free(fr.enc);
    weir_buf_free(&fr.buf);
    if (in && in != stdin)
        fclose(in);
    if (fr.out && fr.out != stdout && fclose(fr.out) && rc == 0) {
        weir_log(WEIR_LOG_ERR, "file", "%s: %s", o->output, strerror(errno));
        rc = 1;
    }
    if (fr.dead)
        fclose(fr.dead);
    return rc;
}
