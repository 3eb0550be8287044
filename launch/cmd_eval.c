/* peftc eval: held-out loss and perplexity, and exact-match accuracy of generated answers, for a model
 * with an optional adapter (lora.init_from), configured exactly like a training run. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/session.h"

static PeftcStatus evaluate(Session *s, Comm *comm) {
    EvalStats es;
    PEFTC_TRY(trainer_eval(&s->trainer, &es));
    if (comm_rank(comm) == 0) {
        printf("held-out loss %.4f, perplexity %.3f over %.0f target tokens\n", es.loss, exp(es.loss), es.tokens);
        fflush(stdout);
    }
    double acc;
    if (em_enabled(s)) PEFTC_TRY(em_report(s, comm, "on held-out prompts", &acc));
    return PEFTC_OK;
}

int cmd_eval(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: peftc eval [config.yaml] [key=value ...]\n"
                   "Same keys as 'peftc train' (see peftc train --help); the adapter to evaluate is\n"
                   "lora.init_from=<PEFT folder> (none: the base model alone).\n");
            return 0;
        }
    Comm *comm;
    static RunConfig cfg;
    int rc = run_start(argc, argv, &cfg, &comm);
    if (rc) return rc;
    static Session s;
    PeftcStatus local = session_open(&s, &cfg, comm);
    PeftcStatus st = comm_agree(comm, local);
    if (st == PEFTC_OK) st = evaluate(&s, comm);
    if (local == PEFTC_OK) session_close(&s);
    report_error(st, comm, 0);
    comm_free(comm);
    return exit_code_for(st);
}
