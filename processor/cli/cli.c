/* `weir` sub-commands: run, validate, broker, produce, demo. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* WEIR_VERSION comes from meson.build (project version), see meson.build in this folder. */

static void main_usage(FILE *fp) {
    fprintf(fp,
            "weir %s: a small, fast stream processor for Kafka\n"
            "\n"
            "usage: weir COMMAND [options]   (weir COMMAND --help for details)\n"
            "\n"
            "  run PIPELINE        run a pipeline over Kafka (consumer group member) or files\n"
            "  validate PIPELINE   compile a pipeline and print the graph, or the errors\n"
            "  broker              run a local Kafka-protocol cluster for development and tests\n"
            "  produce             write synthetic sensor readings (or a JSON-lines file) to a topic\n"
            "  demo                broker + generator + demo pipeline, printing results\n"
            "  state               list, dump and delete checkpoints in Redis\n"
            "  version             print the version\n",
            WEIR_VERSION);
}

int weir_cli_main(int argc, char **argv) {
    if (argc < 2) {
        main_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        main_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("weir %s\n", WEIR_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"run", weir_cmd_run},         {"validate", weir_cmd_validate}, {"broker", weir_cmd_broker},
                {"produce", weir_cmd_produce}, {"demo", weir_cmd_demo},         {"state", weir_cmd_state}};
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(cmds); i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "weir: unknown command '%s'\n\n", cmd);
    main_usage(stderr);
    return 2;
}

static int parse_log_level(const char *s) {
    if (!strcmp(s, "error"))
        return WEIR_LOG_ERR;
    if (!strcmp(s, "warn"))
        return WEIR_LOG_WARN;
    if (!strcmp(s, "info"))
        return WEIR_LOG_INFO;
    if (!strcmp(s, "debug"))
        return WEIR_LOG_DEBUG;
    return -1;
}

static void run_usage(FILE *fp) {
    fprintf(fp, "usage: weir run PIPELINE [options]\n"
                "\n"
                "Kafka mode (default): join the consumer group of the pipeline and process the\n"
                "partitions assigned to this process; run more processes to scale out.\n"
                "  --brokers LIST         bootstrap servers (else $WEIR_BROKERS or the pipeline's\n"
                "                         source.kafka.properties.bootstrap.servers)\n"
                "  --group ID             consumer group (default: source.kafka.group_id or the pipeline name)\n"
                "  --until-end            bounded run: read every partition up to the end offset it had\n"
                "                         at start, flush all operators, commit, print a summary, exit 0\n"
                "  --duration D           stop after D (e.g. 30s)\n"
                "  --commit-interval D    offset commit interval (default 5s)\n"
                "  --instance NAME        name of this member in logs\n"
                "  --redis URL            checkpoint state to Redis (redis://[user:pass@]host:port/db);\n"
                "                         overrides checkpoint.redis of the pipeline file\n"
                "  --checkpoint-interval D  overrides checkpoint.interval (default 10s)\n"
                "  --reset-state NODES    start these nodes (comma-separated, or all) without saved state\n"
                "  --metrics-port P       serve Prometheus metrics on P (0 = any free port, logged)\n"
                "  --no-sink-thread       make the librdkafka produce calls on the worker thread (by\n"
                "                         default one hand-off thread makes them, in order)\n"
                "  -X KEY=VALUE           librdkafka consumer property (repeatable; after the file's)\n"
                "\n"
                "File mode: replace the Kafka source with a JSON-lines file and every sink with one\n"
                "JSON-lines output whose records carry \"node\": the node they came from.\n"
                "  --input FILE           JSON-lines input (- for stdin)\n"
                "  --output FILE          JSON-lines output (- for stdout, the default)\n"
                "  --dead-letter FILE     where undecodable records go, with the reason and line\n"
                "\n"
                "  --log-level L          error, warn, info (default), debug\n"
                "  --quiet                no summary line\n");
}

/* --reset-state all, or a comma-separated list of node names without empty ones. A name that is not a node of
 * the pipeline is accepted only when there are checkpoints (a node removed from the pipeline has saved state to
 * drop); weir_task_restore then refuses a name that neither the pipeline nor the checkpoint knows. */
static int check_reset_state(const weir_pipeline_t *pl, const weir_run_opts_t *o) {
    const char *reset = o->reset_state;
    if (!strcmp(reset, "all"))
        return 0;
    for (const char *p = reset;;) {
        size_t n = strcspn(p, ",");
        char name[256];
        if (n == 0 || n >= sizeof(name)) {
            fprintf(stderr, "weir run: --reset-state: expected all or NODE[,NODE...], got '%s'\n", reset);
            return -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        if (weir_pipeline_find_node(pl, name) < 0 && (o->input || !(o->redis || pl->redis_url))) {
            fprintf(stderr, "weir run: --reset-state: no node '%s' in the pipeline (and no checkpoints)\n", name);
            return -1;
        }
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

int weir_cmd_run(int argc, char **argv) {
    weir_run_opts_t o = {.commit_interval_ms = 5000, .metrics_port = -1};
    static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                         {"group", required_argument, NULL, 'g'},
                                         {"until-end", no_argument, NULL, 'u'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"commit-interval", required_argument, NULL, 'c'},
                                         {"input", required_argument, NULL, 'i'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"dead-letter", required_argument, NULL, 'D'},
                                         {"instance", required_argument, NULL, 'n'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"redis", required_argument, NULL, 'R'},
                                         {"checkpoint-interval", required_argument, NULL, 'C'},
                                         {"reset-state", required_argument, NULL, 'Z'},
                                         {"metrics-port", required_argument, NULL, 'M'},
                                         {"no-sink-thread", no_argument, NULL, 'T'},
                                         {0}};
    int c;
    int64_t v;
    optind = 1;
    char *props[64];
    o.props = props;
    while ((c = getopt_long(argc, argv, "b:g:ud:c:i:o:D:n:l:qhX:R:C:Z:M:", opts, NULL)) != -1) {
        switch (c) {
        case 'R': o.redis = optarg; break;
        case 'T': o.inline_produce = true; break;
        case 'M':
            if (weir_cli_parse_i64("run", "metrics-port", optarg, 0, 65535, &v))
                return 2;
            o.metrics_port = (int)v;
            break;
        case 'Z': o.reset_state = optarg; break;
        case 'C':
            if (weir_parse_duration(optarg, &o.checkpoint_interval_ms) || o.checkpoint_interval_ms <= 0) {
                fprintf(stderr, "weir run: --checkpoint-interval: bad duration '%s'\n", optarg);
                return 2;
            }
            break;
        case 'X':
            if (!strchr(optarg, '=') || o.nprops == 64) {
                fprintf(stderr, "weir run: -X: expected KEY=VALUE\n");
                return 2;
            }
            props[o.nprops++] = optarg;
            break;
        case 'b': o.brokers = optarg; break;
        case 'g': o.group_id = optarg; break;
        case 'u': o.until_end = true; break;
        case 'd':
            if (weir_parse_duration(optarg, &o.duration_ms)) {
                fprintf(stderr, "weir run: --duration: bad duration '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            if (weir_parse_duration(optarg, &o.commit_interval_ms) || o.commit_interval_ms <= 0) {
                fprintf(stderr, "weir run: --commit-interval: bad duration '%s'\n", optarg);
                return 2;
            }
            break;
        case 'i': o.input = optarg; break;
        case 'o': o.output = optarg; break;
        case 'D': o.dead_letter = optarg; break;
        case 'n': o.instance = optarg; break;
        case 'l':
            if ((weir_log_level = parse_log_level(optarg)) < 0) {
                fprintf(stderr, "weir run: --log-level: expected error, warn, info or debug\n");
                return 2;
            }
            break;
        case 'q': o.quiet = true; break;
        case 'h': run_usage(stdout); return 0;
        default: run_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        run_usage(stderr);
        return 2;
    }
    if ((o.output || o.dead_letter) && !o.input) {
        fprintf(stderr, "weir run: --output and --dead-letter need --input (file mode)\n");
        return 2;
    }
    char errstr[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load(argv[optind], errstr, sizeof(errstr));
    if (!pl) {
        fprintf(stderr, "weir run: %s\n", errstr);
        return 2;
    }
    if (o.reset_state && check_reset_state(pl, &o)) {
        weir_pipeline_destroy(pl);
        return 2;
    }
    weir_install_signals();
    int rc = o.input ? weir_run_file(pl, &o) : weir_run_kafka(pl, &o);
    weir_pipeline_destroy(pl);
    return rc;
}

int weir_cmd_validate(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: weir validate PIPELINE\n\nCompile PIPELINE and print the graph with resolved fields and "
               "types;\nexit 0 if it is valid, else print the error (FILE:LINE:COL: message) and exit 2.\n");
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: weir validate PIPELINE\n");
        return 2;
    }
    char errstr[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load(argv[1], errstr, sizeof(errstr));
    if (!pl) {
        fprintf(stderr, "%s\n", errstr);
        return 2;
    }
    weir_pipeline_print(pl, stdout);
    weir_pipeline_destroy(pl);
    return 0;
}

int weir_cli_parse_i64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || isspace((unsigned char)*s) || v < min || v > max) {
        fprintf(stderr, "weir %s: --%s: expected an integer in %lld..%lld, got '%s'\n", cmd, flag, (long long)min,
                (long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int weir_cli_parse_rate(const char *cmd, const char *flag, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || !(v > 0)) {
        fprintf(stderr, "weir %s: --%s: expected a positive number, got '%s'\n", cmd, flag, s);
        return -1;
    }
    *out = v;
    return 0;
}
