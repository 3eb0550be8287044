/* PEFT adapter_config.json (adapters/peft_io.c): peft_type, r, lora_alpha, target_modules, rslora,
 * dropout and the refusals of what this trainer cannot load. */
#include "adapters/formats/peft_io.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("adapter_config.json", data, size);
    LoraConfig cfg;
    (void)fuzz_note(peft_read_config(fuzz_dir(), &cfg), "peft_read_config");
    return 0;
}
