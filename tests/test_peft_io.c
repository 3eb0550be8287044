/* PEFT adapter folders and llama.cpp GGUF LoRA export: round trips, the exact names, shapes and keys
 * other tools read, and the errors a bad folder must give. */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/nn/adapter.h"
#include "core/models/llama/llama.h"
#include "adapters/method.h"
#include "adapters/formats/peft_io.h"
#include "core/formats/gguf.h"
#include "core/formats/safetensors.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 6, R = 4 };

static const LlamaConfig cfg = {.hidden = 64, .intermediate = 96, .layers = 2, .heads = 4, .kv_heads = 2,
                                .vocab = 50, .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1};
static const int HD = 16; /* hidden / heads */

static const unsigned TARGETS = LORA_T_Q | LORA_T_K | LORA_T_V | LORA_T_DOWN;

static MethodConfig lora_mc(unsigned targets, int rslora) {
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = R, .alpha = 8, .dropout = 0.05, .rslora = rslora};
    tu_targets(&mc, targets);
    return mc;
}

/* The models opened are llama.cpp's qwen2 architecture (q/k rows never permuted in GGUF) when set. */
static int as_qwen2;

/* Same base weights whatever the adapter seed: only the LoRA initialisation differs. */
static void open_model(LlamaModel *m, Arena *a, MethodConfig *mc, uint64_t lora_seed) {
    LlamaConfig c = cfg;
    c.gguf_qwen2 = as_qwen2;
    ck_assert_int_eq(llama_create(m, backend_cpu(), &c, 1, 0.02), PEFTC_OK);
    arena_init(a, backend_cpu());
    ck_assert_int_eq(method_attach(&m->base, a, mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m->base, a, mc, lora_seed), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
}

static void close_model(LlamaModel *m, Arena *a) {
    method_detach(&m->base, NULL);
    llama_free(m);
    arena_free(a);
}

/* A trained-looking adapter: B != 0 so it changes the logits. */
static void open_trained(LlamaModel *m, Arena *a, MethodConfig *mc) {
    open_model(m, a, mc, 5);
    tu_fill_uniform(a->params, a->numel, 11, -0.3, 0.3);
}

static void make_dir(char *dir) {
    snprintf(dir, 64, "/tmp/peftio_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* The folders are flat: remove every file, then the folder. */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void logits_of(LlamaModel *m, real_t *out) {
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(rng_u64(4, i) % (uint64_t)cfg.vocab);
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    memcpy(out, m->acts.logits, (size_t)B * T * cfg.vocab * sizeof *out);
}

static int same_entry(const Arena *a, const Arena *b, const char *name) {
    int ha = arena_find(a, name), hb = arena_find(b, name);
    ck_assert_msg(ha >= 0 && hb >= 0, "arena entry %s missing", name);
    return memcmp(arena_param(a, ha), arena_param(b, hb), a->entries[ha].numel * sizeof(real_t)) == 0;
}

START_TEST(save_then_load_round_trips) {
    LlamaModel m1, m2;
    Arena a1, a2;
    MethodConfig mc = lora_mc(TARGETS, 1);
    open_trained(&m1, &a1, &mc);
    char dir[64];
    make_dir(dir);
    ck_assert_int_eq(peft_save(&m1.base, tu_lora(&mc), "tiny-llama", dir), PEFTC_OK);

    LoraConfig back;
    ck_assert_int_eq(peft_read_config(dir, &back), PEFTC_OK);
    ck_assert_int_eq(back.r, R);
    ck_assert(back.alpha == tu_lora(&mc)->alpha);
    ck_assert(back.dropout == tu_lora(&mc)->dropout);
    ck_assert_int_eq(back.rslora, 1);
    ck_assert_uint_eq(back.targets, TARGETS);

    *tu_lora(&mc) = back;
    open_model(&m2, &a2, &mc, 99);
    size_t n = (size_t)B * T * cfg.vocab;
    real_t *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    logits_of(&m1, want);
    logits_of(&m2, got);
    ck_assert_msg(memcmp(want, got, n * sizeof *got) != 0, "a fresh adapter must change nothing to compare");
    ck_assert(!same_entry(&a1, &a2, "model.layers.1.self_attn.k_proj.lora_A"));

    ck_assert_int_eq(peft_load(&m2.base, &a2, dir), PEFTC_OK);
    for (int i = 0; i < a1.n_entries; i++)
        ck_assert_msg(same_entry(&a1, &a2, a1.entries[i].name), "%s differs after load", a1.entries[i].name);
    logits_of(&m2, got);
    ck_assert_msg(memcmp(want, got, n * sizeof *got) == 0, "logits differ after loading the adapter");
    free(want);
    free(got);
    close_model(&m1, &a1);
    close_model(&m2, &a2);
    remove_dir(dir);
}
END_TEST

static void check_st_names(const char *dir) {
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    const char *mods[4] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"};
    const int in[4] = {64, 64, 64, 96}, out[4] = {64, 32, 32, 64};
    ck_assert_int_eq(f.n_tensors, cfg.layers * 4 * 2);
    for (int l = 0; l < cfg.layers; l++)
        for (int j = 0; j < 4; j++) {
            char name[160];
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_A.weight", l, mods[j]);
            const StTensor *t = st_find(&f, name);
            ck_assert_msg(t != NULL, "%s missing", name);
            ck_assert_int_eq(t->dtype, ST_F32);
            ck_assert(shape_equal(&t->shape, &(Shape){2, {R, in[j]}}));
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.weight", l, mods[j]);
            t = st_find(&f, name);
            ck_assert_msg(t != NULL, "%s missing", name);
            ck_assert_int_eq(t->dtype, ST_F32);
            ck_assert(shape_equal(&t->shape, &(Shape){2, {out[j], R}}));
        }
    st_close(&f);
}

static cJSON *read_json(const char *dir) {
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    cJSON *o = cJSON_Parse(text);
    ck_assert_ptr_nonnull(o);
    return o;
}

static void check_key_null(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(it && cJSON_IsNull(it), "%s must be null", key);
}

static void check_key_bool(const cJSON *o, const char *key, int want) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsBool(it) && cJSON_IsTrue(it) == want, "%s must be %s", key, want ? "true" : "false");
}

static void check_key_str(const cJSON *o, const char *key, const char *want) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsString(it), "%s must be a string", key);
    ck_assert_str_eq(it->valuestring, want);
}

static void check_key_num(const cJSON *o, const char *key, double want) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(it) && it->valuedouble == want, "%s must be %g", key, want);
}

static void check_config_keys(const char *dir) {
    cJSON *o = read_json(dir);
    check_key_str(o, "peft_type", "LORA");
    check_key_str(o, "task_type", "CAUSAL_LM");
    check_key_str(o, "base_model_name_or_path", "tiny-llama");
    check_key_str(o, "bias", "none");
    check_key_num(o, "r", R);
    check_key_num(o, "lora_alpha", 8);
    check_key_num(o, "lora_dropout", 0.05);
    check_key_bool(o, "inference_mode", 1);
    check_key_bool(o, "fan_in_fan_out", 0);
    check_key_bool(o, "use_rslora", 0);
    check_key_bool(o, "use_dora", 0);
    check_key_bool(o, "init_lora_weights", 1);
    check_key_null(o, "modules_to_save");
    check_key_null(o, "layers_to_transform");
    check_key_null(o, "layers_pattern");
    check_key_null(o, "revision");
    const char *pats[2] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, pats[i]);
        ck_assert_msg(cJSON_IsObject(p) && !p->child, "%s must be {}", pats[i]);
    }
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "target_modules");
    const char *want[4] = {"q_proj", "k_proj", "v_proj", "down_proj"};
    ck_assert(cJSON_IsArray(tm));
    ck_assert_int_eq(cJSON_GetArraySize(tm), 4);
    for (int i = 0; i < 4; i++) ck_assert_str_eq(cJSON_GetArrayItem(tm, i)->valuestring, want[i]);
    cJSON_Delete(o);
}

START_TEST(files_hold_peft_names_and_keys) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(TARGETS, 0);
    open_trained(&m, &a, &mc);
    char dir[64], sub[96];
    make_dir(dir);
    snprintf(sub, sizeof sub, "%s/nested", dir); /* created if missing */
    ck_assert_int_eq(peft_save(&m.base, tu_lora(&mc), "tiny-llama", sub), PEFTC_OK);
    check_st_names(sub);
    check_config_keys(sub);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/adapter_config.json.tmp", sub);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    close_model(&m, &a);
    remove_dir(sub);
    remove_dir(dir);
}
END_TEST

/* ---- error cases: hand-written folders ---- */

typedef enum { W_PLAIN, W_SKIP, W_RESHAPE, W_EXTRA, W_UNKNOWN, W_DEFAULT } WriteMode;

typedef struct {
    StWriter *w;
    WriteMode mode;
    const char *victim; /* the tensor the mode applies to */
} Writer;

static PeftcStatus write_one(void *user, const char *name, const Tensor *t) {
    Writer *s = user;
    Shape shape = t->shape;
    char renamed[200];
    if (strcmp(name, s->victim) == 0) {
        if (s->mode == W_SKIP) return PEFTC_OK;
        if (s->mode == W_RESHAPE) shape.dim[1] -= 1; /* fewer elements than the data: still a valid file */
        if (s->mode == W_EXTRA)
            ck_assert_int_eq(st_writer_add(s->w, "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
                                           ST_F32, &t->shape, t->data), PEFTC_OK);
        if (s->mode == W_UNKNOWN)
            ck_assert_int_eq(st_writer_add(s->w, "base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight",
                                           ST_F32, &t->shape, t->data), PEFTC_OK);
    }
    if (s->mode == W_DEFAULT) {
        /* ".lora_X.weight" -> ".lora_X.default.weight" */
        size_t n = strlen(name) - strlen(".weight");
        snprintf(renamed, sizeof renamed, "%.*s.default.weight", (int)n, name);
        name = renamed;
    }
    return st_writer_add(s->w, name, ST_F32, &shape, t->data);
}

static void write_weights(LlamaModel *m, const char *dir, WriteMode mode, const char *victim) {
    Writer s = {st_writer_new(), mode, victim};
    for (int i = 0; i < llama_linear_count(m); i++) {
        Adapter *ad = llama_linear(m, i)->adapter;
        if (ad) ck_assert_int_eq(ad->ops->export_tensors(ad, write_one, &s), PEFTC_OK);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    ck_assert_int_eq(st_write(s.w, path), PEFTC_OK);
    st_writer_free(s.w);
}

static void expect_load_error(LlamaModel *m, Arena *a, const char *dir, const char *needle) {
    ck_assert_int_ne(peft_load(&m->base, a, dir), PEFTC_OK);
    const char *msg = peftc_err_msg();
    ck_assert_msg(strstr(msg, dir) != NULL, "message does not name the folder: %s", msg);
    ck_assert_msg(strstr(msg, needle) != NULL, "message does not name %s: %s", needle, msg);
}

START_TEST(bad_weights_are_named) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(TARGETS, 0);
    open_trained(&m, &a, &mc);
    char dir[64];
    make_dir(dir);
    const char *victim = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
    write_weights(&m, dir, W_SKIP, victim);
    expect_load_error(&m, &a, dir, victim);
    write_weights(&m, dir, W_RESHAPE, victim);
    expect_load_error(&m, &a, dir, victim);
    write_weights(&m, dir, W_EXTRA, victim);
    expect_load_error(&m, &a, dir, "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight");
    write_weights(&m, dir, W_UNKNOWN, victim);
    expect_load_error(&m, &a, dir, "lora_C.weight");
    write_weights(&m, dir, W_DEFAULT, victim);
    ck_assert_msg(peft_load(&m.base, &a, dir) == PEFTC_OK, "PEFT's .default. names must load: %s", peftc_err_msg());

    char path[128], legacy[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    snprintf(legacy, sizeof legacy, "%s/adapter_model.bin", dir);
    ck_assert_int_eq(rename(path, legacy), 0);
    expect_load_error(&m, &a, dir, "safetensors");
    close_model(&m, &a);
    remove_dir(dir);
}
END_TEST

static void write_text(const char *dir, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The saved config with one key replaced by `value` (JSON text). */
static void write_edited(const char *dir, const cJSON *saved, const char *key, const char *value) {
    cJSON *o = cJSON_Duplicate(saved, 1);
    cJSON_ReplaceItemInObjectCaseSensitive(o, key, cJSON_Parse(value));
    char *text = cJSON_Print(o);
    write_text(dir, text);
    cJSON_free(text);
    cJSON_Delete(o);
}

static void expect_config_error(const char *dir, const char *needle) {
    LoraConfig c;
    ck_assert_int_eq(peft_read_config(dir, &c), PEFTC_EFORMAT);
    const char *msg = peftc_err_msg();
    ck_assert_msg(strstr(msg, "adapter_config.json") != NULL, "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, needle) != NULL, "message does not say %s: %s", needle, msg);
}

START_TEST(bad_configs_are_named) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(TARGETS, 0);
    open_trained(&m, &a, &mc);
    char dir[64];
    make_dir(dir);
    ck_assert_int_eq(peft_save(&m.base, tu_lora(&mc), "tiny-llama", dir), PEFTC_OK);
    cJSON *saved = read_json(dir);

    write_text(dir, "{ \"peft_type\": \"LORA\", \"r\": 4,");
    expect_config_error(dir, "JSON");
    write_edited(dir, saved, "peft_type", "\"PREFIX_TUNING\"");
    expect_config_error(dir, "PREFIX_TUNING");
    write_edited(dir, saved, "use_dora", "true");
    expect_config_error(dir, "use_dora");
    write_edited(dir, saved, "target_modules", "\".*\\\\.(q_proj|v_proj)\"");
    expect_config_error(dir, "target_modules as a regex is not supported");
    write_edited(dir, saved, "target_modules", "[\"q_proj\", \"lm_head\"]");
    expect_config_error(dir, "lm_head");
    write_edited(dir, saved, "rank_pattern", "{\"q_proj\": 8}");
    expect_config_error(dir, "rank_pattern");
    write_edited(dir, saved, "alpha_pattern", "{\"q_proj\": 8}");
    expect_config_error(dir, "alpha_pattern");
    write_edited(dir, saved, "layers_to_transform", "[0]");
    expect_config_error(dir, "layers_to_transform");
    write_edited(dir, saved, "r", "2.5");
    expect_config_error(dir, "r must be");

    /* What PEFT itself accepts: "all-linear" and parent-qualified names. */
    LoraConfig c;
    write_edited(dir, saved, "target_modules", "\"all-linear\"");
    ck_assert_int_eq(peft_read_config(dir, &c), PEFTC_OK);
    ck_assert_uint_eq(c.targets, LORA_T_ALL);
    write_edited(dir, saved, "target_modules", "[\"self_attn.o_proj\", \"up_proj\"]");
    ck_assert_int_eq(peft_read_config(dir, &c), PEFTC_OK);
    ck_assert_uint_eq(c.targets, LORA_T_O | LORA_T_UP);
    cJSON_Delete(saved);
    close_model(&m, &a);
    remove_dir(dir);
}
END_TEST

/* ---- GGUF ---- */

static void check_gguf_str(const GgufFile *g, const char *key, const char *want) {
    GgufStr s;
    ck_assert_int_eq(gguf_get_str(g, key, &s), PEFTC_OK);
    ck_assert_msg(s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0, "%s is '%.*s', expected '%s'", key,
                  (int)s.len, s.ptr, want);
}

static const real_t *entry(const Arena *a, const char *module, char which) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%s.lora_%c", module, which);
    int h = arena_find(a, name);
    ck_assert_msg(h >= 0, "%s", name);
    return arena_param(a, h);
}

static const float *gguf_lora(const GgufFile *g, const char *name, int64_t ne0, int64_t ne1) {
    const GgufTensor *t = gguf_tensor(g, name);
    ck_assert_msg(t != NULL, "%s missing", name);
    ck_assert_int_eq(t->type, GGML_F32);
    ck_assert_int_eq(t->n_dims, 2);
    ck_assert_msg(t->ne[0] == ne0 && t->ne[1] == ne1, "%s has ne [%lld, %lld], expected [%lld, %lld]", name,
                  (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
    return (const float *)t->data;
}

/* convert_hf_to_gguf's q/k permutation undone: GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i. */
static void unpermute(real_t *hf, const float *gg, int n_head, int r) {
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < HD / 2; i++)
            for (int j = 0; j < 2; j++)
                for (int c = 0; c < r; c++)
                    hf[(size_t)(h * HD + j * HD / 2 + i) * r + c] = (real_t)gg[(size_t)(h * HD + 2 * i + j) * r + c];
}

static void check_gguf_tensors(const GgufFile *g, const Arena *a) {
    static const struct { const char *hf, *gg; int in, out, heads; } mods[3] = {
        {"self_attn.q_proj", "attn_q", 64, 64, 4}, {"self_attn.k_proj", "attn_k", 64, 32, 2},
        {"self_attn.o_proj", "attn_output", 64, 64, 0}};
    real_t back[64 * R];
    for (int l = 0; l < cfg.layers; l++)
        for (int j = 0; j < 3; j++) {
            char hf[64], name[96];
            snprintf(hf, sizeof hf, "%d.%s", l, mods[j].hf);
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, mods[j].gg);
            const float *ga = gguf_lora(g, name, mods[j].in, R);
            const real_t *A = entry(a, hf, 'A'), *Bm = entry(a, hf, 'B');
            for (int i = 0; i < R * mods[j].in; i++) ck_assert((real_t)ga[i] == A[i]);
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, mods[j].gg);
            const float *gb = gguf_lora(g, name, R, mods[j].out);
            int n = R * mods[j].out, same = 1;
            for (int i = 0; i < n; i++) same &= (real_t)gb[i] == Bm[i];
            int permuted = mods[j].heads && !as_qwen2;
            ck_assert_msg(same == !permuted, "%s: rows %s be permuted", name, permuted ? "must" : "must not");
            if (!permuted) continue;
            unpermute(back, gb, mods[j].heads, R);
            ck_assert_msg(memcmp(back, Bm, (size_t)n * sizeof *Bm) == 0, "%s: un-permuted rows differ from lora_B",
                          name);
        }
}

/* llama.cpp's llama files permute q/k rows for its interleaved RoPE, its qwen2 files do not (NEOX
 * RoPE): a LoRA B follows its base, and the adapter names the base's architecture. */
START_TEST(gguf_export_follows_llama_cpp) {
    as_qwen2 = _i;
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(LORA_T_Q | LORA_T_K | LORA_T_O, 1);
    open_trained(&m, &a, &mc);
    char dir[64], path[96];
    make_dir(dir);
    snprintf(path, sizeof path, "%s/adapter.gguf", dir);
    ck_assert_int_eq(peft_save_gguf(&m.base, tu_lora(&mc), path), PEFTC_OK);
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, path), PEFTC_OK);
    ck_assert_int_eq(g.version, 3);
    check_gguf_str(&g, "general.architecture", as_qwen2 ? "qwen2" : "llama");
    check_gguf_str(&g, "general.type", "adapter");
    check_gguf_str(&g, "adapter.type", "lora");
    float alpha;
    ck_assert_int_eq(gguf_get_f32(&g, "adapter.lora.alpha", &alpha), PEFTC_OK);
    /* llama.cpp scales by alpha / r: the stored alpha reproduces the rsLoRA scale 8 / sqrt(4) = 4. */
    ck_assert_double_eq_tol(alpha / R, lora_scale(tu_lora(&mc)), 1e-6);
    ck_assert_double_eq_tol(alpha, 16.0, 1e-5);
    ck_assert_int_eq(g.n_tensors, cfg.layers * 3 * 2);
    check_gguf_tensors(&g, &a);
    gguf_close(&g);
    close_model(&m, &a);
    remove_dir(dir);
    as_qwen2 = 0;
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("peft_io");
    TCase *tc = tcase_create("peft_io");
    tcase_add_test(tc, save_then_load_round_trips);
    tcase_add_test(tc, files_hold_peft_names_and_keys);
    tcase_add_test(tc, bad_weights_are_named);
    tcase_add_test(tc, bad_configs_are_named);
    tcase_add_loop_test(tc, gguf_export_follows_llama_cpp, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
