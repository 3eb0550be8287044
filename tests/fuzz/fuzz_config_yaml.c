/* The YAML run configuration (launch/config_yaml.c): nesting, sequences, duplicate and unknown keys,
 * every typed value, then the cross-field checks of config_finish on what was accepted. */
#include "launch/config/config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("job.yaml", data, size);
    static RunConfig c; /* large: kept off the stack */
    config_defaults(&c);
    if (fuzz_note(config_load_yaml(&c, path), "config_load_yaml") != PEFTC_OK) return 0;
    (void)fuzz_note(config_finish(&c), "config_finish");
    return 0;
}
