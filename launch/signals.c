/* Preemption signals (see signals.h). */
#include "launch/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t pending;
static volatile sig_atomic_t interrupts;

static void on_signal(int sig) {
    if (sig == SIGINT && ++interrupts > 1) {
        static const char msg[] = "\npeftc: second interrupt, exiting without a checkpoint\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(130);
    }
    if (!pending) pending = sig;
}

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* a signal during a file write must not turn it into an EINTR failure */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int signals_pending(void) { return (int)pending; }
