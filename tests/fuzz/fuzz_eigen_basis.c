/* EigenLoRAx basis files (adapters/eigen_basis.c): the metadata (format, r, k, k_rand, seed), the
 * "<module>.eigen_A|B" tensors and their shapes, then each side's leading columns read back. */
#include <stdlib.h>
#include <string.h>

#include "adapters/formats/eigen_basis.h"
#include "tests/fuzz/fuzz_util.h"

static void read_sides(const EigenBasis *b) {
    for (int i = 0; i < b->file.n_tensors; i++) {
        const StTensor *t = &b->file.tensors[i];
        size_t len = strlen(t->name);
        if (len < 8 || strncmp(t->name + len - 8, ".eigen_", 7) != 0 || t->shape.ndim != 2) continue;
        char module[160];
        memcpy(module, t->name, len - 8);
        module[len - 8] = 0;
        int64_t n = t->shape.dim[0];
        if (n < 1 || n > 1 << 16 || b->k < 1 || b->k > 1 << 10) continue; /* bounds the time, not safety */
        real_t *out = malloc((size_t)(n * b->k) * sizeof *out);
        if (!out) continue;
        (void)fuzz_note(eigen_basis_read(b, module, t->name[len - 1], (int)n, b->k, out), "eigen_basis_read");
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("basis.safetensors", data, size);
    EigenBasis b;
    if (fuzz_note(eigen_basis_open(&b, path), "eigen_basis_open") != PEFTC_OK) return 0;
    read_sides(&b);
    eigen_basis_close(&b);
    return 0;
}
