/**
 * `weir broker`: librdkafka's Kafka-protocol mock cluster (rdkafka_mock.h)
 * as a process of its own on loopback, for development, the demo and the
 * tests. Weir's consumer and producer talk to it over TCP exactly as to any
 * Kafka cluster. Prints the bootstrap string on the first line of stdout and
 * runs until SIGTERM/SIGINT.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/stat.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runtime.h"

static void broker_usage(FILE *fp) {
    fprintf(fp,
            "usage: weir broker [--brokers N] [--topic NAME:PARTITIONS]... [--default-partitions P]\n"
            "\n"
            "Run a local Kafka-protocol cluster (librdkafka's mock cluster) on 127.0.0.1.\n"
            "Prints the bootstrap servers on the first line of stdout, then runs until SIGTERM.\n"
            "Topics that are not created up front are auto-created on first use with\n"
            "4 partitions (librdkafka's mock default); --default-partitions sets the\n"
            "count used for --topic NAME without :P.\n"
            "\n"
            "  --brokers N             number of brokers (default 1)\n"
            "  --topic NAME:P          create topic NAME with P partitions (repeatable)\n"
            "  --default-partitions P  partitions for --topic NAME without :P (default 4)\n"
            "  --control FIFO          fault injection: create FIFO and read commands from it, one a line:\n"
            "                            down ID            broker ID refuses connections (drops the ones it has)\n"
            "                            up ID              broker ID accepts connections again\n"
            "                            errors API CODE N  the next N requests of Kafka API key API fail with\n"
            "                                               error code CODE (e.g. 0=Produce 1=Fetch, 6=NOT_LEADER)\n"
            "                            rtt ID MS          broker ID answers MS milliseconds late\n");
}

/* One fault-injection command from the control FIFO. */
static void broker_control(rd_kafka_mock_cluster_t *mc, const char *cmd) {
    int a = 0, b = 0, n = 0;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (sscanf(cmd, "down %d", &a) == 1) {
        err = rd_kafka_mock_broker_set_down(mc, a);
    } else if (sscanf(cmd, "up %d", &a) == 1) {
        err = rd_kafka_mock_broker_set_up(mc, a);
    } else if (sscanf(cmd, "rtt %d %d", &a, &b) == 2) {
        err = rd_kafka_mock_broker_set_rtt(mc, a, b);
    } else if (sscanf(cmd, "errors %d %d %d", &a, &b, &n) == 3 && n > 0 && n <= 10000) {
        rd_kafka_resp_err_t *errs = weir_calloc((size_t)n, sizeof(*errs));
        for (int i = 0; i < n; i++)
            errs[i] = (rd_kafka_resp_err_t)b;
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)n, errs);
        free(errs);
    } else {
        weir_log(WEIR_LOG_WARN, "broker", "control: unknown command '%s'", cmd);
        return;
    }
    weir_log(err ? WEIR_LOG_WARN : WEIR_LOG_INFO, "broker", "control: %s%s%s", cmd, err ? ": " : "",
             err ? rd_kafka_err2str(err) : "");
}

int weir_cmd_broker(int argc, char **argv) {
    int nbrokers = 1;
    const char *defparts = "4";
    char **topics = weir_calloc((size_t)argc + 1, sizeof(char *));
    int ntopics = 0;
    static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"default-partitions", required_argument, NULL, 'p'},
                                         {"control", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    int64_t v;
    optind = 1;
    const char *control = NULL;
    while ((c = getopt_long(argc, argv, "b:t:p:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': control = optarg; break;
        case 'b':
            if (weir_cli_parse_i64("broker", "brokers", optarg, 1, 16, &v)) {
                free(topics);
                return 2;
            }
            nbrokers = (int)v;
            break;
        case 't': topics[ntopics++] = optarg; break;
        case 'p': defparts = optarg; break;
        case 'h':
            broker_usage(stdout);
            free(topics);
            return 0;
        default:
            broker_usage(stderr);
            free(topics);
            return 2;
        }
    }
    if (nbrokers < 1 || nbrokers > 16 || weir_cli_parse_i64("broker", "default-partitions", defparts, 1, 100000, &v)) {
        fprintf(stderr, "weir broker: --brokers must be 1..16 and --default-partitions >= 1\n");
        free(topics);
        return 2;
    }
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "weir broker: %s\n", errstr);
        free(topics);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "weir broker: %s\n", errstr);
        free(topics);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        fprintf(stderr, "weir broker: cannot create the cluster\n");
        rd_kafka_destroy(rk);
        free(topics);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < ntopics; i++) {
        char *colon = strrchr(topics[i], ':');
        char *pend = NULL;
        long parts = strtol(colon ? colon + 1 : defparts, &pend, 10);
        if (*pend || parts > 100000)
            parts = 0;
        if (colon)
            *colon = '\0';
        if (parts < 1 || !topics[i][0]) {
            fprintf(stderr, "weir broker: --topic %s: expected NAME:PARTITIONS\n", topics[i]);
            rc = 2;
            goto out;
        }
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], (int)parts, nbrokers < 3 ? nbrokers : 3);
        if (err) {
            fprintf(stderr, "weir broker: create %s: %s\n", topics[i], rd_kafka_err2str(err));
            rc = 1;
            goto out;
        }
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    weir_install_signals();
    weir_log(WEIR_LOG_INFO, "broker", "%d broker(s) at %s, pid %d", nbrokers, rd_kafka_mock_cluster_bootstraps(mc),
             (int)getpid());
    int cfd = -1;
    if (control) {
        unlink(control);
        if (mkfifo(control, 0600) || (cfd = open(control, O_RDWR | O_NONBLOCK)) < 0) {
            fprintf(stderr, "weir broker: --control %s: %s\n", control, strerror(errno));
            rc = 1;
            goto out;
        }
    }
    char line[256];
    size_t used = 0;
    while (!weir_stop) {
        if (cfd < 0) {
            usleep(100000);
            continue;
        }
        struct pollfd pfd = {.fd = cfd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = read(cfd, line + used, sizeof(line) - 1 - used);
        if (n <= 0)
            continue;
        used += (size_t)n;
        line[used] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            broker_control(mc, line);
            memmove(line, nl + 1, used - (size_t)(nl + 1 - line) + 1);
            used -= (size_t)(nl + 1 - line);
        }
        if (used == sizeof(line) - 1)
            used = 0; /* an overlong line: drop it */
    }
    if (cfd >= 0) {
        close(cfd);
        unlink(control);
    }
    weir_log(WEIR_LOG_INFO, "broker", "stopping");
out:
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    free(topics);
    return rc;
}
