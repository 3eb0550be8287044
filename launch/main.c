/* peftc: parameter-efficient fine-tuning, one rank per process. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: peftc <command> [args]\n"
            "\n"
            "commands:\n"
            "  train [config.yaml] [key=value ...]   train a model (see 'peftc train --help' for every key)\n"
            "\n"
            "Data-parallel runs: mpirun -np N peftc train ...   (or srun --mpi=pmix under Slurm)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        printf("\n");
        train_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("peftc %s\n", PEFTC_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc - 2, argv + 2);
    fprintf(stderr, "peftc: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
