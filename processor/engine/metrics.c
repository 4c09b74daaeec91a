/* Prometheus text exposition of weir_metrics_t over a minimal HTTP/1.0 server thread. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "pipeline.h"

struct weir_metrics_server {
    weir_metrics_t *m;
    char *pipeline;
    int fd;
    volatile int stop;
    pthread_t thread;
};

static void render(const weir_metrics_server_t *s, weir_buf_t *b) {
    const weir_metrics_t *m = s->m;
    const char *p = s->pipeline;
    struct {
        const char *name, *type, *help;
        double v;
    } rows[] = {
        {"weir_records_in_total", "counter", "records read from the source", (double)atomic_load(&m->records_in)},
        {"weir_records_out_total", "counter", "records written to sinks", (double)atomic_load(&m->records_out)},
        {"weir_dead_lettered_total", "counter", "records sent to the dead-letter topic",
         (double)atomic_load(&m->dead_lettered)},
        {"weir_checkpoints_total", "counter", "checkpoints written to Redis", (double)atomic_load(&m->checkpoints)},
        {"weir_checkpoint_failures_total", "counter", "checkpoint attempts that failed",
         (double)atomic_load(&m->checkpoint_failures)},
        {"weir_checkpoint_last_bytes", "gauge", "size of the last checkpoint",
         (double)atomic_load(&m->checkpoint_last_bytes)},
        {"weir_checkpoint_last_duration_seconds", "gauge", "duration of the last checkpoint write",
         (double)atomic_load(&m->checkpoint_last_us) / 1e6},
        {"weir_consumption_paused", "gauge", "1 while consumption is paused because Redis is unavailable",
         (double)atomic_load(&m->paused)},
        {"weir_assigned_partitions", "gauge", "input partitions assigned to this process",
         (double)atomic_load(&m->partitions)},
        {"weir_watermark_delay_seconds", "gauge", "wall clock minus the smallest task watermark",
         (double)atomic_load(&m->watermark_delay_ms) / 1e3},
    };
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(rows); i++)
        weir_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{pipeline=\"%s\"} %.17g\n", rows[i].name, rows[i].help,
                        rows[i].name, rows[i].type, rows[i].name, p, rows[i].v);
    if (!m->pl)
        return;
    weir_buf_printf(b, "# HELP weir_evicted_keys_total keys evicted by a node's max_keys or max_open_windows\n"
                       "# TYPE weir_evicted_keys_total counter\n");
    for (int i = 0; i < m->pl->nnodes; i++) {
        const weir_plan_t *plan = &m->pl->nodes[i].plan;
        if (plan->stats)
            weir_buf_printf(b, "weir_evicted_keys_total{pipeline=\"%s\",node=\"%s\"} %" PRIu64 "\n", p, plan->name,
                            atomic_load_explicit(&plan->stats->evicted_keys, memory_order_relaxed));
    }
}

static void *serve(void *arg) {
    weir_metrics_server_t *s = arg;
    while (!s->stop) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        char req[1024];
        struct pollfd cp = {.fd = c, .events = POLLIN};
        ssize_t n = poll(&cp, 1, 1000) > 0 ? read(c, req, sizeof(req) - 1) : -1;
        weir_buf_t body = {0}, out = {0};
        if (n > 0) {
            req[n] = '\0';
            bool ok = !strncmp(req, "GET /metrics", 12) || !strncmp(req, "GET / ", 6);
            if (ok)
                render(s, &body);
            weir_buf_printf(&out,
                            "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n\r\n",
                            ok ? "200 OK" : "404 Not Found", body.len);
            weir_buf_append(&out, body.p, body.len);
            size_t off = 0;
            while (off < out.len) {
                ssize_t w = send(c, out.p + off, out.len - off, MSG_NOSIGNAL);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
        }
        weir_buf_free(&body);
        weir_buf_free(&out);
        close(c);
    }
    return NULL;
}

weir_metrics_server_t *weir_metrics_serve(weir_metrics_t *m, const char *pipeline, int port, int *bound, char *errstr,
                                          size_t errstr_size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = INADDR_ANY};
    socklen_t len = sizeof(a);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        weir_err(errstr, errstr_size, "metrics port %d: %s", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    weir_metrics_server_t *s = weir_calloc(1, sizeof(*s));
    s->m = m;
    s->pipeline = weir_strdup(pipeline);
    s->fd = fd;
    if (bound)
        *bound = ntohs(a.sin_port);
    pthread_create(&s->thread, NULL, serve, s);
    return s;
}

void weir_metrics_stop(weir_metrics_server_t *s) {
    if (!s)
        return;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    close(s->fd);
    free(s->pipeline);
    free(s);
}
