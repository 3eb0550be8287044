/* Status to exit code (see commands.h). */
#include "launch/commands.h"

int exit_code_for(PeftcStatus st) {
    if (st == PEFTC_OK) return 0;
    if (st == PEFTC_ECOMM && peftc_err_cause() != PEFTC_ECOMM && peftc_err_cause() != PEFTC_OK) st = peftc_err_cause();
    switch (st) {
    case PEFTC_EINVAL: return EXIT_USAGE;
    case PEFTC_EIO:
    case PEFTC_EFORMAT: return EXIT_INPUT;
    case PEFTC_EWRITE: return EXIT_IO;
    case PEFTC_EDIVERGED: return EXIT_DIVERGED;
    case PEFTC_EBUSY: return EXIT_BUSY;
    default: return EXIT_RUNTIME;
    }
}
