/**
 * @file cli.h
 * @brief The `weir` command line: one function per sub-command.
 */
#ifndef WEIR_CLI_H
#define WEIR_CLI_H

#include <stdint.h>

int weir_cli_main(int argc, char **argv);

/**
 * @brief Parse a whole decimal integer flag value in [min, max] (no sign tricks, no trailing text).
 * @returns 0, or -1 after printing "weir CMD: --FLAG: ..." to stderr (the caller exits 2).
 */
int weir_cli_parse_i64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max, int64_t *out);
/** @brief The same for a finite number > min_excl (e.g. a rate). */
int weir_cli_parse_rate(const char *cmd, const char *flag, const char *s, double *out);
int weir_cmd_run(int argc, char **argv);
int weir_cmd_validate(int argc, char **argv);
int weir_cmd_broker(int argc, char **argv);
int weir_cmd_produce(int argc, char **argv);
int weir_cmd_demo(int argc, char **argv);
/** `weir state`: list, dump and delete a pipeline's checkpoints in Redis (state_cmd.c). */
int weir_cmd_state(int argc, char **argv);

#endif
