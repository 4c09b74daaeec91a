/*
 * rate_meter: how fast bytes arrive on stdin, between the first read and the
 * last one before the writer's final flush. bench/kafka/filter_map.sh pipes
 * `kcat -f x` (one byte per message, block-buffered by stdio) into it, so the
 * rate counts messages from the first consumed block to the last full one:
 * kcat's start-up (connect, metadata, first fetch) and shutdown are excluded,
 * as weir's summary excludes its group join and end-of-input wait.
 * Prints "records_per_s=R bytes=B".
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void) {
    static char buf[1 << 16];
    double t_first = 0, t_prev = 0, t_last = 0;
    uint64_t b_first = 0, b_prev = 0, total = 0;
    int reads = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n <= 0)
            break;
        double t = now();
        total += (uint64_t)n;
        if (reads++ == 0) {
            t_first = t;
            b_first = total;
        }
        t_prev = t_last; /* the read before this one */
        b_prev = total - (uint64_t)n;
        t_last = t;
    }
    /* the last read is the writer's flush at exit: measure up to the one before it */
    double rate = reads >= 3 && t_prev > t_first ? (double)(b_prev - b_first) / (t_prev - t_first) : 0.0;
    printf("records_per_s=%.0f bytes=%llu\n", rate, (unsigned long long)total);
    return 0;
}
