/**
 * @file cli.h
 * @brief The `weir` command line: one function per sub-command.
 */
#ifndef WEIR_CLI_H
#define WEIR_CLI_H

int weir_cli_main(int argc, char **argv);
int weir_cmd_run(int argc, char **argv);
int weir_cmd_validate(int argc, char **argv);
int weir_cmd_broker(int argc, char **argv);
int weir_cmd_produce(int argc, char **argv);
int weir_cmd_demo(int argc, char **argv);
/** `weir state`: list, dump and delete a pipeline's checkpoints in Redis (state_cmd.c). */
int weir_cmd_state(int argc, char **argv);

#endif
