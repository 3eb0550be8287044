/* safetensors reading (core/formats/safetensors.c): the header JSON, dtypes, shapes and offsets, then every
 * tensor read through the converters the loaders use (real and I32), and name lookups. */
#include <stdlib.h>

#include "core/formats/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.safetensors", data, size);
    StFile f;
    if (fuzz_note(st_open(&f, path), "st_open") != PEFTC_OK) return 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        (void)st_find(&f, t->name);
        int64_t n = shape_numel(&t->shape);
        if (n < 0 || n > 1 << 20) continue; /* the data is inside the file, so this only bounds the time */
        void *out = malloc((size_t)(n ? n : 1) * (sizeof(real_t) > 4 ? sizeof(real_t) : 4));
        if (!out) continue;
        if (t->dtype == ST_I32) (void)fuzz_note(st_read_i32(&f, t, &t->shape, out), "st_read_i32");
        else (void)fuzz_note(st_read_real(&f, t, &t->shape, out), "st_read_real");
        free(out);
    }
    (void)st_find(&f, "__metadata__");
    st_close(&f);
    return 0;
}
