/* See fuzz_util.h. */
#include "tests/fuzz/fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[128];
static char written[16][64]; /* names written, removed at exit */
static int n_written;

static void cleanup(void) {
    char path[256];
    for (int i = 0; i < n_written; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, written[i]);
        unlink(path);
    }
    rmdir(dir);
}

const char *fuzz_dir(void) {
    if (dir[0]) return dir;
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/peftc-fuzz-%ld", base, (long)getpid());
    if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
        perror(dir);
        abort();
    }
    atexit(cleanup);
    return dir;
}

static void remember(const char *name) {
    for (int i = 0; i < n_written; i++)
        if (strcmp(written[i], name) == 0) return;
    if (n_written == (int)(sizeof written / sizeof written[0]) || strlen(name) >= sizeof written[0]) abort();
    snprintf(written[n_written++], sizeof written[0], "%s", name);
}

const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    static char paths[16][256];
    static int next;
    char *path = paths[next++ % 16];
    snprintf(path, sizeof paths[0], "%s/%s", fuzz_dir(), name);
    remember(name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

void fuzz_copy(const char *from, const char *name) {
    static uint8_t buf[1 << 20];
    FILE *f = fopen(from, "rb");
    if (!f) {
        perror(from);
        abort();
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    int whole = !ferror(f) && fgetc(f) == EOF;
    fclose(f);
    if (!whole) { /* a larger fixture would be fuzzed truncated, which is not the harness's intent */
        fprintf(stderr, "%s: unreadable or over %zu bytes\n", from, sizeof buf);
        abort();
    }
    fuzz_write(name, buf, n);
}

void fuzz_remove(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    unlink(path);
}

PeftcStatus fuzz_note(PeftcStatus st, const char *what) {
    static int debug = -1;
    if (debug < 0) debug = getenv("FUZZ_DEBUG") != NULL;
    if (debug && st != PEFTC_OK) fprintf(stderr, "%s: %s: %s\n", what, peftc_status_name(st), peftc_err_msg());
    return st;
}
