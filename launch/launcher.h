/* Ranks end when their launcher dies. A rank started by mpirun (or orted, or srun's slurmstepd) whose
 * launcher is killed outright (SIGKILL, a crashed node daemon) keeps training and writing checkpoints
 * until a collective happens to fail, racing the job that replaces it. A rank that sees its parent
 * change ends at once; its partial writes are temporaries that a later run replaces. */
#ifndef PEFTC_LAUNCHER_H
#define PEFTC_LAUNCHER_H

/* When started by a known launcher (Open MPI, PMI/PMIx, a Slurm step), watches the parent process
 * from a background thread (5 checks a second) and exits with status 1 when it is gone. Does nothing
 * for a process started from a shell, which may outlive it on purpose (nohup). */
void launcher_watch_start(void);

#endif
