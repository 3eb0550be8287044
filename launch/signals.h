/* Preemption signals. SIGTERM (Slurm's time limit and scancel), SIGUSR1 (sbatch --signal=USR1@N) and
 * SIGINT (Ctrl-C) only set a flag; the training loop reads it at the next step boundary, the ranks agree
 * on it, a checkpoint is written and peftc exits with EXIT_PREEMPTED. A second SIGINT exits at once
 * (130), for a person who does not want to wait for the step to finish. */
#ifndef PEFTC_SIGNALS_H
#define PEFTC_SIGNALS_H

/* Installs the handlers (idempotent). */
void signals_install(void);
/* The first preemption signal received so far, or 0. */
int signals_pending(void);

#endif
