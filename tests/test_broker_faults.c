/**
 * Broker faults: `weir run` keeps going through a broker that goes down for a
 * few seconds and through injected Produce and Fetch errors (librdkafka's
 * mock-cluster fault injection behind `weir broker --control FIFO`), and
 * loses no record: every input has its output once the faults are over.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define N_PHASE 10000

static void control(const char *fifo, const char *cmd) {
    FILE *f = fopen(fifo, "w");
    cr_assert_not_null(f, "control FIFO %s", fifo);
    fprintf(f, "%s\n", cmd);
    fclose(f);
}

static void produce_range(const char *bootstrap, int from, int to) {
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    char buf[128], key[16];
    for (int i = from; i < to; i++) {
        int n = snprintf(buf, sizeof(buf), "{\"seq\":%d,\"v\":%d.5}", i, i % 97);
        int kn = snprintf(key, sizeof(key), "k%d", i % 13);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("f.in"), RD_KAFKA_V_KEY(key, (size_t)kn),
                                      RD_KAFKA_V_VALUE(buf, (size_t)n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        cr_assert_eq(e, 0);
    }
    cr_assert_eq(rd_kafka_flush(rk, 60000), 0, "test producer could not deliver");
    rd_kafka_destroy(rk);
}

/* A plain HTTP/1.0 GET on loopback; returns the whole response (malloc'ed). */
static char *http_get(int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect to the metrics port %d", port);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - len - 1)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    return buf;
}

static int *seen;
static int bad;

static void on_out(const rd_kafka_message_t *m, void *arg) {
    (void)arg;
    json_error_t je;
    json_t *j = json_loadb(m->payload, m->len, 0, &je);
    json_t *s = j ? json_object_get(j, "seq") : NULL;
    json_t *w = j ? json_object_get(j, "w") : NULL;
    int seq = s ? (int)json_integer_value(s) : -1;
    if (seq < 0 || seq >= 2 * N_PHASE || !w || json_real_value(w) != (double)(seq % 97) * 2 + 1)
        bad++;
    else
        seen[seq]++;
    json_decref(j);
}

Test(broker_faults, broker_down_and_request_errors_lose_nothing, .timeout = 240) {
    const char *fifo = h_path("control.fifo");
    h_broker_t b;
    const char *args[] = {"--topic", "f.in:4", "--topic", "f.out:4", "--control", fifo, NULL};
    h_broker_start(&b, args);
    const char *pipe = h_path("f.yaml");
    FILE *f = fopen(pipe, "w");
    fprintf(f, "pipeline: faults\n"
               "source:\n  kafka: {topics: [f.in]}\n  format: json\n  fields: {seq: long, v: double}\n"
               "nodes:\n  - {name: m, op: map, set: {w: 'v * 2'}}\n"
               "sinks:\n  - {input: m, kafka: {topic: f.out}}\n");
    fclose(f);
    const char *log = h_path("weir.log");
    char *argv[] = {(char *)h_weir_bin(),
                    "run",
                    (char *)pipe,
                    "--brokers",
                    b.bootstrap,
                    "--commit-interval",
                    "1s",
                    "-X",
                    "session.timeout.ms=6000",
                    "-X",
                    "heartbeat.interval.ms=500",
                    "--metrics-port",
                    "0",
                    NULL};
    pid_t w = h_spawn(argv, NULL, log);
    cr_assert(h_wait_for_text(log, "assigned partitions: f.in", 30000), "weir was assigned nothing");

    produce_range(b.bootstrap, 0, N_PHASE / 2);
    /* The (only) broker goes away for 3 s while weir consumes and produces. */
    control(fifo, "down 1");
    sleep(3);
    control(fifo, "up 1");
    produce_range(b.bootstrap, N_PHASE / 2, N_PHASE);
    /* Retriable errors on the next Produce (NOT_LEADER_OR_FOLLOWER = 6) and Fetch requests. */
    control(fifo, "errors 0 6 8");
    control(fifo, "errors 1 6 8");
    produce_range(b.bootstrap, N_PHASE, 2 * N_PHASE);

    seen = calloc(2 * N_PHASE, sizeof(int));
    int got = h_consume_topic(b.bootstrap, "f.out", 4, 2 * N_PHASE, 90000, on_out, NULL);
    cr_assert_eq(bad, 0, "%d outputs are malformed or wrong", bad);
    int missing = 0, first = -1;
    for (int i = 0; i < 2 * N_PHASE; i++)
        if (!seen[i] && !missing++)
            first = i;
    cr_assert_eq(missing, 0, "%d records have no output (first: seq %d); %d outputs read", missing, first, got);
    cr_assert(h_count_text(h_path("broker0.err"), "control: down 1") == 1, "the broker did not go down");
    /* The Prometheus endpoint counts what went through. */
    char *text = h_read_file(log);
    const char *at = strstr(text, "metrics on http://0.0.0.0:");
    cr_assert_not_null(at, "no metrics line in the log");
    int port = atoi(at + strlen("metrics on http://0.0.0.0:"));
    free(text);
    char *page = http_get(port, "/metrics");
    cr_assert(strstr(page, "HTTP/1.0 200 OK"), "%s", page);
    const char *in = strstr(page, "weir_records_in_total{pipeline=\"faults\"} ");
    cr_assert_not_null(in, "%s", page);
    cr_assert_geq(atof(in + strlen("weir_records_in_total{pipeline=\"faults\"} ")), 2 * N_PHASE, "%s", page);
    cr_assert(strstr(page, "weir_assigned_partitions{pipeline=\"faults\"} 4\n"), "%s", page);
    cr_assert(strstr(page, "weir_dead_lettered_total{pipeline=\"faults\"} 0\n"), "%s", page);
    free(page);
    cr_assert_eq(h_stop(w, SIGTERM, 30000), 0, "weir did not survive the faults and exit cleanly");
    free(seen);
    h_broker_stop(&b);
}
