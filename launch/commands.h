/* The subcommands of the peftc binary. Each returns the process exit code, one per class of failure
 * (the README's "Failure behaviour" lists them). */
#ifndef PEFTC_COMMANDS_H
#define PEFTC_COMMANDS_H

#include <stdio.h>

#include "comm/comm.h"
#include "launch/config/config.h"

/* The codes above 2 follow sysexits.h where it has a class, so schedulers' scripts can act on them:
 *   EXIT_RUNTIME    1  anything else: out of memory, a lost rank, an internal error
 *   EXIT_USAGE      2  the command line or configuration (including a checkpoint made with other settings)
 *   EXIT_DIVERGED   3  a non-finite loss or gradient norm stopped training (no checkpoint of it was written)
 *   EXIT_INPUT     65  a model, data, adapter or checkpoint file is missing, unreadable or damaged (EX_DATAERR)
 *   EXIT_BUSY      73  output.dir or checkpoint.folder is locked by another running peftc (EX_CANTCREAT)
 *   EXIT_IO        74  an output file could not be written: disk full, read-only, permissions (EX_IOERR)
 *   EXIT_PREEMPTED 75  a signal stopped training after a checkpoint was written; run the same command
 *                      again (requeue) and it resumes (EX_TEMPFAIL) */
enum {
    EXIT_RUNTIME = 1,
    EXIT_USAGE = 2,
    EXIT_DIVERGED = 3,
    EXIT_INPUT = 65,
    EXIT_BUSY = 73,
    EXIT_IO = 74,
    EXIT_PREEMPTED = 75
};

/* The exit code of a failure with status st (0 for PEFTC_OK); a failure reported by another rank
 * takes that rank's class. */
int exit_code_for(PeftcStatus st);


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
