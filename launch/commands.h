/* The subcommands of the peftc binary. Each returns the process exit code:
 * 0 success, 1 a runtime failure, 2 a usage or configuration error. */
#ifndef PEFTC_COMMANDS_H
#define PEFTC_COMMANDS_H

#include <stdio.h>

/* EXIT_PREEMPTED: a signal (SIGTERM, SIGINT, SIGUSR1) stopped training after a checkpoint was written;
 * run the same command again (requeue) and it resumes. 75 is sysexits.h's EX_TEMPFAIL. */
enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_PREEMPTED = 75 };

#include "config.h"
#include "../comm/comm.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_eigen(int argc, char **argv);
/* Usage of `peftc train` with every configuration key and its default. */
void train_usage(FILE *f);
void generate_usage(FILE *f);

/* The run configuration from the arguments of train and eval: an optional YAML file first, then
 * settings as key=value, --key=value or --key value, applied in order; then the cross-field checks and
 * the model's own hyperparameters. Prints nothing. */
PeftcStatus run_config_from_args(RunConfig *c, int argc, char **argv);
/* Prints a failure once: configuration errors by rank 0 only, runtime errors by each failing rank. */
void report_error(PeftcStatus st, const Comm *comm, int is_config);
/* The start of train and eval: the communicator, the configuration and the threads. Returns 0, or the
 * exit code after reporting the error (the communicator is then already freed). */
int run_start(int argc, char **argv, RunConfig *cfg, Comm **comm);
/* Threads per rank from train.threads, OMP_NUM_THREADS, the CPU affinity or the node's cores. */
void set_rank_threads(const RunConfig *c, const Comm *comm);

#endif
