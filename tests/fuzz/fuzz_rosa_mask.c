/* RoSA mask / sparse-delta files (adapters/rosa_io.c): row_ptr, col_idx and values of every RoSA layer
 * of a fixed tiny model (hidden 8, one layer, RoSA on q and v at 3 non-zeros each), read into fresh
 * adapters' masks and arena each time. */
#include <stdio.h>
#include <stdlib.h>

#include "adapters/method.h"
#include "adapters/rosa.h"
#include "core/models/llama/llama.h"
#include "adapters/formats/rosa_io.h"
#include "tests/fuzz/fuzz_util.h"

static LlamaModel base;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    backend_cpu_set_threads(1);
    LlamaConfig cfg = {.hidden = 8, .intermediate = 16, .layers = 1, .heads = 2, .kv_heads = 1, .vocab = 10,
                       .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1};
    if (fuzz_note(llama_create(&base, backend_cpu(), &cfg, 1, 0.02), "llama_create") != PEFTC_OK) abort();
    return 0;
}

/* A mask is fixed once set, so every input gets fresh adapters on the shared base. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("masks.safetensors", data, size);
    MethodConfig mc;
    if (method_config_defaults(&mc, "rosa", 1e-3) != PEFTC_OK) abort();
    LoraSettings *ls = lora_settings(&mc.settings);
    ls->lora = (LoraConfig){.r = 2, .alpha = 4};
    snprintf(ls->targets, sizeof ls->targets, "q,v");
    RosaSettings *rs = method_section_settings(&mc.settings, &rosa_section);
    rs->density = 0.05; /* mask_path stays empty: the masks come from the fuzzed file only */
    Arena arena;
    arena_init(&arena, base.base.be);
    PeftcStatus st = fuzz_note(method_attach(&base.base, &arena, &mc), "method_attach");
    if (st == PEFTC_OK) st = fuzz_note(arena_finalize(&arena), "arena_finalize");
    if (st == PEFTC_OK) st = fuzz_note(method_init(&base.base, &arena, &mc, 1), "method_init");
    if (st != PEFTC_OK) abort(); /* the fixed setup, not the input */
    (void)fuzz_note(rosa_load_sparse(&base.base, &arena, path, 1), "rosa_load_sparse");
    method_detach(&base.base, &mc);
    arena_free(&arena);
    return 0;
}
