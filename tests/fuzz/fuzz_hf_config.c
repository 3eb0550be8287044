/* HF config.json (core/models/llama/model_hf.c): the hyperparameters and every refusal, then, when they are
 * accepted, the model built from them and loaded against a fixed tiny model.safetensors (the weights
 * of tests/fixtures/hf_tiny_llama, copied beside the input once), dense and with its projections
 * quantized to NF4. */
#include <stdio.h>
#include <stdlib.h>

#include "core/backend/backend.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/models/model_load.h"
#include "tests/fuzz/fuzz_util.h"

static char dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    backend_cpu_set_threads(1);
    fuzz_copy(PEFTC_FIXTURE_DIR "/hf_tiny_llama/model.safetensors", "model.safetensors");
    snprintf(dir, sizeof dir, "%s", fuzz_dir());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("config.json", data, size);
    LlamaConfig cfg;
    ModelInfo info;
    if (fuzz_note(model_read_config(dir, &cfg, &info), "model_read_config") != PEFTC_OK) return 0;
    LlamaModel m;
    if (fuzz_note(llama_load(&m, backend_cpu(), dir, &info), "model_load") == PEFTC_OK) llama_free(&m);
    if (fuzz_note(llama_load_quantized(&m, backend_cpu(), dir, QUANT_NF4, &info), "model_load nf4") == PEFTC_OK)
        llama_free(&m);
    return 0;
}
