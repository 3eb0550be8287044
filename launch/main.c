/* peftc: parameter-efficient fine-tuning, one rank per process. */
#include <stdio.h>
#include <string.h>

#include "launch/commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: peftc <command> [args]\n"
            "\n"
            "commands:\n"
            "  train [config.yaml] [key=value ...]   train a model (see 'peftc train --help' for every key)\n"
            "  eval [config.yaml] [key=value ...]    held-out loss, perplexity and exact-match accuracy\n"
            "  generate --prompt TEXT [flags]        continue a prompt or answer it as a chat turn\n"
            "  export --adapter DIR --out PATH       write an adapter as a PEFT folder or llama.cpp GGUF\n"
            "  merge --adapter DIR --out DIR         fold an adapter into the base; write an HF folder\n"
            "  eigen build --adapters D1,D2 --k N --out FILE\n"
            "                                        EigenLoRAx basis from several LoRA adapters of one base\n"
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
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {{"train", cmd_train}, {"eval", cmd_eval}, {"generate", cmd_generate}, {"export", cmd_export},
                {"merge", cmd_merge}, {"eigen", cmd_eigen}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].run(argc - 2, argv + 2);
    fprintf(stderr, "peftc: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
