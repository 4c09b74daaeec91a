/**
 * `weir demo`: the embedded default job. Starts `weir broker` as a child
 * process on loopback, a generator of sensor readings, and the demo
 * pipeline (filter + map, Avro in and out) as a consumer-group member, then
 * prints every result record as it arrives on the output topic. Stops on
 * Ctrl-C or after --duration, and cleans up the broker by pid.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "produce.h"
#include "runtime.h"

static const char demo_pipeline[] =
    "# The demo pipeline (weir demo --print-pipeline)\n"
    "pipeline: weir-demo\n"
    "source:\n"
    "  kafka: {topics: [sensor.readings]}\n"
    "  format: avro\n"
    "  schema: schemas/sensor_reading.avsc\n"
    "  event_time: ts\n"
    "  watermark: {max_out_of_orderness: 1s, idle_timeout: 5s}\n"
    "  partitioned_by: sensor_id   # the generator keys each reading by its sensor\n"
    "nodes:\n"
    "  - {name: valid, op: filter, where: \"temperature > -40 and temperature < 125\"}\n"
    "  - name: enriched\n"
    "    op: map\n"
    "    input: valid\n"
    "    set: {temp_f: \"temperature * 9 / 5 + 32\", heat_alert: \"temperature > 26\"}\n"
    "  - name: per_10s\n"
    "    op: window\n"
    "    input: valid\n"
    "    key: sensor_id\n"
    "    type: tumbling\n"
    "    size: 10s\n"
    "    aggregate: {n: count(), mean_temp: mean(temperature), max_temp: max(temperature)}\n"
    "sinks:\n"
    "  - {input: enriched, kafka: {topic: sensor.enriched}, format: avro, schema: schemas/sensor_enriched.avsc}\n"
    "  - {input: per_10s, kafka: {topic: sensor.stats}, format: json}\n"
    "checkpoint: {interval: 2s}   # the demo passes --redis to its own redis-server\n";

typedef struct demo_run_arg {
    const weir_pipeline_t *pl;
    weir_run_opts_t o;
    int rc;
} demo_run_arg_t;

static void *run_thread(void *p) {
    demo_run_arg_t *a = p;
    a->rc = weir_run_kafka(a->pl, &a->o);
    return NULL;
}

static volatile int gen_stop;

static void *gen_thread(void *p) {
    weir_produce_run(p);
    return NULL;
}

/* Start `weir broker` and read its bootstrap line. */
static pid_t start_broker(char *bootstrap, size_t n) {
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the demo */
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "weir", "broker", "--topic", "sensor.readings:4", "--topic", "sensor.enriched:4",
              "--topic", "sensor.stats:4", "--topic", "weir-demo.dlq:1", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *fp = fdopen(fds[0], "r");
    if (!fp || !fgets(bootstrap, (int)n, fp)) {
        if (fp)
            fclose(fp);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    fclose(fp);
    bootstrap[strcspn(bootstrap, "\r\n")] = '\0';
    return pid;
}

/* Start redis-server on a free loopback port (no persistence); NULL-safe if absent. */
static pid_t start_redis(char *url, size_t n) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int port = ntohs(a.sin_port);
    close(fd);
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "", "--appendonly",
               "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    snprintf(url, n, "redis://127.0.0.1:%d/0", port);
    for (int i = 0; i < 50; i++) { /* wait until it accepts connections */
        redisContext *c = redisConnect("127.0.0.1", port);
        bool ok = c && !c->err;
        redisFree(c);
        if (ok)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int weir_cmd_demo(int argc, char **argv) {
    int64_t duration_ms = 0;
    double rate = 20;
    static const struct option opts[] = {{"duration", required_argument, NULL, 'd'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"print-pipeline", no_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:r:Ph", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (weir_parse_duration(optarg, &duration_ms)) {
                fprintf(stderr, "weir demo: --duration: bad duration '%s'\n", optarg);
                return 2;
            }
            break;
        case 'r':
            if (weir_cli_parse_rate("demo", "rate", optarg, &rate))
                return 2;
            break;
        case 'P': fputs(demo_pipeline, stdout); return 0;
        case 'h':
            printf("usage: weir demo [--duration D] [--rate R] [--print-pipeline]\n\n"
                   "Start a local broker, a sensor-reading generator (R records/s, default 20) and the\n"
                   "demo pipeline (filter + map, Avro in and out), and print each result as it arrives.\n"
                   "Stops on Ctrl-C or after D (e.g. 20s).\n");
            return 0;
        default: return 2;
        }
    }
    char errstr[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("<demo pipeline>", demo_pipeline, errstr, sizeof(errstr));
    if (!pl) {
        fprintf(stderr, "weir demo: %s\n", errstr);
        return 1;
    }
    weir_install_signals();
    char bootstrap[512];
    pid_t broker = start_broker(bootstrap, sizeof(bootstrap));
    if (broker < 0) {
        fprintf(stderr, "weir demo: could not start the local broker\n");
        weir_pipeline_destroy(pl);
        return 1;
    }
    weir_log(WEIR_LOG_INFO, "demo", "local broker pid %d at %s", (int)broker, bootstrap);

    char redis_url[64] = "";
    pid_t redis = start_redis(redis_url, sizeof(redis_url));
    if (redis > 0)
        weir_log(WEIR_LOG_INFO, "demo", "local redis-server pid %d at %s (checkpoints)", (int)redis, redis_url);
    else
        weir_log(WEIR_LOG_WARN, "demo", "redis-server not available: running without checkpoints");

    weir_produce_opts_t g = {.brokers = bootstrap,
                             .topic = "sensor.readings",
                             .rate = rate,
                             .format = WEIR_FMT_AVRO,
                             .sensors = 8,
                             .seed = 42,
                             .step_ms = 0,
                             .quiet = false,
                             .stop = &gen_stop};
    static char *props[] = {"session.timeout.ms=6000", "heartbeat.interval.ms=500"};
    static volatile int run_stop;
    demo_run_arg_t ra = {.pl = pl,
                         .o = {.brokers = bootstrap,
                               .commit_interval_ms = 2000,
                               .instance = "demo",
                               .redis = redis > 0 ? redis_url : NULL,
                               .stop = &run_stop,
                               .nprops = 2,
                               .props = props,
                               .metrics_port = -1}};
    pthread_t gt, rt;
    pthread_create(&rt, NULL, run_thread, &ra);
    pthread_create(&gt, NULL, gen_thread, &g);
    /* Halfway through, stop the pipeline (it writes a final checkpoint) and start it
     * again: it restores its window state from Redis and resumes at the stored offsets. */
    int64_t restart_after_ms = duration_ms > 0 ? duration_ms / 2 : 30000;
    bool restarted = false;

    /* Print the results: a plain consumer of the output topics (Avro decoded to JSON). */
    weir_schema_t *sch = pl->sinks[0].schema;
    weir_decoder_t *dec = weir_decoder_new(WEIR_FMT_AVRO, sch, weir_schema_rowtype(sch), false, errstr, sizeof(errstr));
    weir_encoder_t *enc =
        weir_encoder_new(WEIR_FMT_JSON, NULL, weir_schema_rowtype(sch), false, 0, errstr, sizeof(errstr));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "weir-demo-printer", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    int rc = 0;
    uint64_t printed = 0;
    if (!rk || !dec || !enc) {
        fprintf(stderr, "weir demo: %s\n", errstr);
        rc = 1;
        weir_stop = 1;
    } else {
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(sub, "sensor.enriched", RD_KAFKA_PARTITION_UA);
        rd_kafka_topic_partition_list_add(sub, "sensor.stats", RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(rk, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        weir_record_t rec;
        weir_record_init(&rec, weir_schema_rowtype(sch));
        weir_buf_t out = {0};
        int64_t t0 = weir_now_ns();
        while (!weir_stop && (duration_ms <= 0 || weir_now_ns() - t0 < duration_ms * 1000000)) {
            if (!restarted && weir_now_ns() - t0 >= restart_after_ms * 1000000) {
                restarted = true;
                weir_log(WEIR_LOG_INFO, "demo", "stopping the pipeline to show a restart from its checkpoint");
                run_stop = 1;
                pthread_join(rt, NULL);
                run_stop = 0;
                weir_log(WEIR_LOG_INFO, "demo", "starting the pipeline again");
                pthread_create(&rt, NULL, run_thread, &ra);
            }
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (!m)
                continue;
            const char *topic = m->err ? "" : rd_kafka_topic_name(m->rkt);
            if (!m->err && !strcmp(topic, "sensor.stats")) {
                printf("%s [%d] @%lld %.*s\n", topic, (int)m->partition, (long long)m->offset, (int)m->len,
                       (const char *)m->payload);
                fflush(stdout);
                printed++;
            } else if (!m->err && weir_decode(dec, m->payload, m->len, &rec, errstr, sizeof(errstr)) == WEIR_OK) {
                weir_buf_reset(&out);
                weir_encode(enc, &rec, NULL, NULL, &out, errstr, sizeof(errstr));
                printf("%s [%d] @%lld %.*s\n", topic, (int)m->partition, (long long)m->offset, (int)out.len,
                       (const char *)out.p);
                fflush(stdout);
                printed++;
            }
            rd_kafka_message_destroy(m);
        }
        weir_record_free(&rec);
        weir_buf_free(&out);
        rd_kafka_consumer_close(rk);
    }
    gen_stop = 1;
    weir_stop = 1;
    pthread_join(gt, NULL);
    pthread_join(rt, NULL);
    if (rk)
        rd_kafka_destroy(rk);
    weir_decoder_destroy(dec);
    weir_encoder_destroy(enc);
    kill(broker, SIGTERM);
    waitpid(broker, NULL, 0);
    if (redis > 0) {
        kill(redis, SIGTERM);
        waitpid(redis, NULL, 0);
    }
    weir_log(WEIR_LOG_INFO, "demo", "printed %llu results; broker %d%s stopped", (unsigned long long)printed,
             (int)broker, redis > 0 ? " and redis-server" : "");
    weir_pipeline_destroy(pl);
    return rc ? rc : (ra.rc ? ra.rc : (printed ? 0 : 1));
}
