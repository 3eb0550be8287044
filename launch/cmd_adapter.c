/* peftc export and peftc merge: what happens to a trained PEFT adapter afterwards.
 *   export: rewrite it as a PEFT folder (normalised names and config) or a llama.cpp GGUF LoRA file;
 *   merge:  fold it into the base model and write an HF folder (config.json + model.safetensors), or for
 *           --out X.gguf a GGUF file carrying the GGUF base's metadata, with the base tensors' deltas a
 *           method left beside it (SDT's base_deltas.safetensors). */
#include <stdio.h>
#include <string.h>

#include "adapters/formats/base_deltas.h"
#include "adapters/formats/peft_io.h"
#include "adapters/lora.h"
#include "core/base/str.h"
#include "core/formats/safetensors.h"
#include "core/models/gguf_save.h"
#include "launch/hf_companions.h"
#include "core/models/hf_folder.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/session.h"

typedef struct {
    char model[512], adapter[512], out[512], format[16], dtype[16];
} AdapterArgs;

static int wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

/* path = dir/name, and whether that file exists. */
static int in_folder(const char *dir, const char *name, char *path, size_t cap) {
    return hf_join(path, cap, dir, name) == PEFTC_OK && hf_is_file(path);
}

/* The base model with the adapter attached and loaded. A folder that holds only base deltas (SDT) gets
 * a fresh LoRA, whose zero B merges as nothing. */
static PeftcStatus open_adapted(Session *s, const AdapterArgs *a, int need_peft) {
    static RunConfig cfg;
    config_defaults(&cfg);
    if (a->model[0]) snprintf(cfg.model_path, sizeof cfg.model_path, "%s", a->model);
    LoraSettings *ls = lora_settings(&cfg.methods);
    char path[700];
    if (need_peft || in_folder(a->adapter, "adapter_config.json", path, sizeof path))
        snprintf(ls->init_from, sizeof ls->init_from, "%s", a->adapter);
    PEFTC_TRY(session_resolve_model(&cfg));
    return session_open_model(s, &cfg);
}

static int finish(PeftcStatus st, int usage) {
    if (st == PEFTC_OK) return 0;
    fprintf(stderr, "peftc: error: %s\n", peftc_err_msg());
    return usage ? EXIT_USAGE : exit_code_for(st);
}

static PeftcStatus parse(const Flag *f, int n, int argc, char **argv, const AdapterArgs *a) {
    PEFTC_TRY(flags_parse(f, n, argc, argv));
    if (!a->adapter[0]) return PEFTC_ERR(PEFTC_EINVAL, "--adapter (a PEFT folder) is required");
    if (!a->out[0]) return PEFTC_ERR(PEFTC_EINVAL, "--out is required");
    return PEFTC_OK;
}

int cmd_export(int argc, char **argv) {
    AdapterArgs a = {.format = "peft"};
    Flag f[] = {
        {"adapter", FLAG_STR, a.adapter, sizeof a.adapter, "PEFT adapter folder (e.g. runs/default/adapter)"},
        {"out", FLAG_STR, a.out, sizeof a.out, "output folder (peft) or file (gguf)"},
        {"format", FLAG_STR, a.format, sizeof a.format, "peft (HF PEFT, vLLM) or gguf (llama.cpp); default peft"},
        {"model", FLAG_STR, a.model, sizeof a.model, "the base model the adapter belongs to (default: bundled SmolLM2)"},
    };
    int n = (int)(sizeof f / sizeof f[0]);
    if (wants_help(argc, argv)) {
        printf("usage: peftc export --adapter DIR --out PATH [--format peft|gguf] [--model PATH]\n\n");
        flags_usage(f, n, stdout);
        return 0;
    }
    PeftcStatus st = parse(f, n, argc, argv, &a);
    if (st == PEFTC_OK && strcmp(a.format, "peft") && strcmp(a.format, "gguf"))
        st = PEFTC_ERR(PEFTC_EINVAL, "--format: expected peft or gguf, got '%s'", a.format);
    if (st != PEFTC_OK) return finish(st, 1);
    static Session s;
    st = open_adapted(&s, &a, 1);
    if (st != PEFTC_OK) return finish(st, 0);
    if (!strcmp(a.format, "gguf")) st = peft_save_gguf(s.model, &lora_settings(&s.method.settings)->lora, a.out);
    else st = peft_save(s.model, &lora_settings(&s.method.settings)->lora, s.cfg.model_path, a.out);
    if (st == PEFTC_OK) printf("peftc: wrote %s adapter %s\n", a.format, a.out);
    session_close(&s);
    return finish(st, 0);
}

/* --dtype as a safetensors dtype (HF folder) and a ggml type (GGUF file). */
static PeftcStatus parse_dtype(const char *name, int *st, GgmlType *ggml) {
    if (!strcmp(name, "f32")) *st = ST_F32, *ggml = GGML_F32;
    else if (!strcmp(name, "f16")) *st = ST_F16, *ggml = GGML_F16;
    else if (!strcmp(name, "bf16")) *st = ST_BF16, *ggml = GGML_BF16;
    else return PEFTC_ERR(PEFTC_EINVAL, "--dtype: expected f32, f16 or bf16, got '%s'", name);
    return PEFTC_OK;
}

/* The merged model as --out asks: a GGUF file carrying the GGUF base's metadata, or an HF folder with
 * the base's tokenizer files. */
static PeftcStatus save_merged(const Session *s, const char *out, int st_dtype, GgmlType ggml) {
    if (!str_ends_with(out, ".gguf")) {
        PEFTC_TRY(s->model->ops->save_hf(s->model, out, st_dtype));
        return hf_companions_write(s, out);
    }
    if (!s->info.is_gguf)
        return PEFTC_ERR(PEFTC_EINVAL, "--out %s: a .gguf output carries the metadata of a GGUF base, and --model %s "
                         "is an HF folder (expected a GGUF base); give --out a folder name to write an HF folder",
                         out, s->cfg.model_path);
    return model_save_gguf(s->model, s->cfg.model_path, out, ggml);
}

int cmd_merge(int argc, char **argv) {
    AdapterArgs a = {.dtype = "f32"};
    Flag f[] = {
        {"model", FLAG_STR, a.model, sizeof a.model, "base model: GGUF file or HF folder (default: bundled SmolLM2)"},
        {"adapter", FLAG_STR, a.adapter, sizeof a.adapter,
         "adapter folder to fold in: a PEFT adapter and/or base_deltas.safetensors (SDT)"},
        {"out", FLAG_STR, a.out, sizeof a.out,
         "output HF folder (config.json + model.safetensors), or a FILE.gguf carrying a GGUF base's metadata"},
        {"dtype", FLAG_STR, a.dtype, sizeof a.dtype, "f32 (default), f16 or bf16"},
    };
    int n = (int)(sizeof f / sizeof f[0]), dtype = ST_F32;
    GgmlType ggml = GGML_F32;
    if (wants_help(argc, argv)) {
        printf("usage: peftc merge --adapter DIR --out DIR|FILE.gguf [--model PATH] [--dtype f32|f16|bf16]\n\n");
        flags_usage(f, n, stdout);
        return 0;
    }
    PeftcStatus st = parse(f, n, argc, argv, &a);
    if (st == PEFTC_OK) st = parse_dtype(a.dtype, &dtype, &ggml);
    if (st != PEFTC_OK) return finish(st, 1);
    static Session s;
    st = open_adapted(&s, &a, 0);
    if (st != PEFTC_OK) return finish(st, 0);
    method_merge(s.model);
    char deltas[700];
    if (in_folder(a.adapter, "base_deltas.safetensors", deltas, sizeof deltas)) st = base_deltas_apply(s.model, deltas);
    if (st == PEFTC_OK) st = save_merged(&s, a.out, dtype, ggml);
    if (st == PEFTC_OK) printf("peftc: wrote merged model %s (%s)\n", a.out, a.dtype);
    session_close(&s);
    return finish(st, 0);
}
