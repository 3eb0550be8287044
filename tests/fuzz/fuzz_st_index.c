/* The sharded-weights index, model.safetensors.index.json (core/models/llama/model_hf.c): the weight_map, shard
 * names (which must stay inside the folder), the shard list, and loading the tiny fixture model from
 * the shards it names. The folder holds the fixture's config.json and its weights as one shard
 * (model-00001-of-00001.safetensors), and no model.safetensors, so the index is what is read. */
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
    fuzz_copy(PEFTC_FIXTURE_DIR "/hf_tiny_llama/config.json", "config.json");
    fuzz_copy(PEFTC_FIXTURE_DIR "/hf_tiny_llama/model.safetensors", "model-00001-of-00001.safetensors");
    snprintf(dir, sizeof dir, "%s", fuzz_dir());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("model.safetensors.index.json", data, size);
    LlamaConfig cfg;
    ModelInfo info;
    if (fuzz_note(model_read_config(dir, &cfg, &info), "model_read_config") != PEFTC_OK) return 0;
    LlamaModel m;
    if (fuzz_note(llama_load(&m, backend_cpu(), dir, &info), "model_load") == PEFTC_OK) llama_free(&m);
    return 0;
}
