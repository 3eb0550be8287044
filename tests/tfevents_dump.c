/* tfevents_dump FILE...: prints the events of TensorBoard event files one per line, for the shell tests
 * (cli_tensorboard.sh), through the reader test_tensorboard checks:
 *
 *   version brain.Event:2
 *   start STEP                  a SessionLog START
 *   scalar STEP TAG VALUE       each Summary value (%.9g, the float's exact digits)
 *
 * Exits 1 naming the file and record at the first bad CRC, truncation or undecodable record. */
#include <stdio.h>
#include <stdlib.h>

#include "tests/tfevents_reader.h"

static int dump(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tfevents_dump: cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n + 1);
    int ok = buf && fread(buf, 1, n, f) == n;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "tfevents_dump: cannot read %s\n", path);
        free(buf);
        return 1;
    }
    size_t pos = 0;
    TfrEvent e;
    const char *why = NULL;
    int r, k = 0;
    while ((r = tfr_next(buf, n, &pos, &e, &why)) == 1) {
        k++;
        if (e.version[0]) printf("version %s\n", e.version);
        if (e.start) printf("start %lld\n", (long long)e.step);
        for (int i = 0; i < e.n; i++) printf("scalar %lld %s %.9g\n", (long long)e.step, e.tags[i], e.values[i]);
    }
    free(buf);
    if (r < 0) fprintf(stderr, "tfevents_dump: %s: record %d: %s\n", path, k + 1, why);
    return r < 0;
}

int main(int argc, char **argv) {
    int bad = 0;
    for (int i = 1; i < argc; i++) bad |= dump(argv[i]);
    return bad;
}
