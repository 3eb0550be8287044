/* The subcommands of the peftc binary. Each returns the process exit code:
 * 0 success, 1 a runtime failure, 2 a usage or configuration error. */
#ifndef PEFTC_COMMANDS_H
#define PEFTC_COMMANDS_H

#include <stdio.h>

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

int cmd_train(int argc, char **argv);
/* Usage of `peftc train` with every configuration key and its default. */
void train_usage(FILE *f);

#endif
