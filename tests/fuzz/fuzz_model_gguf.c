/* Model loading from GGUF (core/models/llama/model_gguf.c via model_load.c): the llama.* hyperparameters, then the
 * full and the quantized load, whose tensor lookups, shape checks and dequantization follow from them. */
#include <stdlib.h>

#include "core/backend/backend.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/models/model_load.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    backend_cpu_set_threads(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.gguf", data, size);
    LlamaConfig cfg;
    ModelInfo info;
    if (fuzz_note(model_read_config(path, &cfg, &info), "model_read_config") != PEFTC_OK) return 0;
    LlamaModel m;
    if (fuzz_note(llama_load(&m, backend_cpu(), path, &info), "model_load") == PEFTC_OK) llama_free(&m);
    PeftcStatus st = llama_load_quantized(&m, backend_cpu(), path, QUANT_BLOCKS, &info);
    if (fuzz_note(st, "model_load_quantized") == PEFTC_OK) llama_free(&m);
    return 0;
}
