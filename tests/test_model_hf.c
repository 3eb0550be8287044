/* HF model folders: save -> load reproduces every weight (tied, untied, q/k/v bias, shards, 16-bit
 * dtypes), config.json and weight errors name the file, key or tensor, and transformers' own output
 * (tests/fixtures/hf_tiny_llama) loads. */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/models/model_load.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/quant.h"
#include "core/formats/safetensors.h"
#include "tests/testutil.h"

static const LlamaConfig base_cfg = {.hidden = 32, .intermediate = 48, .layers = 2, .heads = 4, .kv_heads = 2,
                                     .vocab = 40, .rope_theta = 10000, .rms_eps = 1e-5};

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/peftc_hf_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char p[768];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        remove_tree(p);
    }
    closedir(d);
    rmdir(path);
}

static void remove_tmpdir(void) { remove_tree(tmpdir); }

static void in_dir(char *out, const char *dir, const char *name) { snprintf(out, 1024, "%s/%s", dir, name); }

/* Random matrices (init_std 0.02) and, so that they are checked too, non-trivial norms and biases. */
static void make_model(LlamaModel *m, int tied, int bias, int head_dim) {
    LlamaConfig c = base_cfg;
    c.tie_embeddings = tied;
    c.qkv_bias = bias;
    c.head_dim = head_dim;
    ck_assert_int_eq(llama_create(m, backend_cpu(), &c, 7, 0.02), PEFTC_OK);
    for (int i = 0; i < m->base.n_refs; i++)
        if (!m->base.refs[i].decay)
            tu_fill_uniform(*m->base.refs[i].data, (size_t)shape_numel(&m->base.refs[i].shape), 100 + (uint64_t)i, 0.5, 1.5);
}

static void assert_same_config(const LlamaConfig *a, const LlamaConfig *b) {
    ck_assert_int_eq(a->hidden, b->hidden);
    ck_assert_int_eq(a->intermediate, b->intermediate);
    ck_assert_int_eq(a->layers, b->layers);
    ck_assert_int_eq(a->heads, b->heads);
    ck_assert_int_eq(a->kv_heads, b->kv_heads);
    ck_assert_int_eq(a->vocab, b->vocab);
    ck_assert(a->rope_theta == b->rope_theta);
    ck_assert(a->rms_eps == b->rms_eps);
    ck_assert_int_eq(a->tie_embeddings, b->tie_embeddings);
    ck_assert_int_eq(a->qkv_bias, b->qkv_bias);
}

static void assert_same_weights(const LlamaModel *a, const LlamaModel *b) {
    assert_same_config(&a->cfg, &b->cfg);
    ck_assert_int_eq(a->cfg.head_dim, b->cfg.head_dim);
    ck_assert_int_eq(a->base.n_refs, b->base.n_refs);
    for (int i = 0; i < a->base.n_refs; i++) {
        ck_assert_str_eq(a->base.refs[i].name, b->base.refs[i].name);
        ck_assert(shape_equal(&a->base.refs[i].shape, &b->base.refs[i].shape));
        size_t n = (size_t)shape_numel(&a->base.refs[i].shape);
        ck_assert_msg(memcmp(*a->base.refs[i].data, *b->base.refs[i].data, n * sizeof(real_t)) == 0, "%s differs",
                      a->base.refs[i].name);
    }
}

/* Writes m's tensors to path, leaving out `skip` and adding `extra` (zeros) with shape `es`. */
static void write_tensors(const char *path, const LlamaModel *m, const char *skip, const char *extra, Shape es,
                          StDType extra_dtype) {
    StWriter *w = st_writer_new();
    for (int i = 0; i < m->base.n_refs; i++)
        if (!skip || strcmp(skip, m->base.refs[i].name) != 0)
            ck_assert_int_eq(st_writer_add(w, m->base.refs[i].name, ST_F32, &m->base.refs[i].shape, *m->base.refs[i].data), PEFTC_OK);
    if (extra) {
        real_t *z = calloc((size_t)shape_numel(&es) + 1, sizeof *z);
        ck_assert_int_eq(st_writer_add(w, extra, extra_dtype, &es, z), PEFTC_OK);
        free(z);
    }
    ck_assert_int_eq(st_write(w, path), PEFTC_OK);
    st_writer_free(w);
}

static void expect_load_error(const char *dir, PeftcStatus want, const char *n1, const char *n2, const char *n3) {
    LlamaModel m;
    peftc_err_clear();
    PeftcStatus st = llama_load(&m, backend_cpu(), dir, NULL);
    ck_assert_msg(st == want, "expected status %d, got %d: %s", want, st, peftc_err_msg());
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(!needles[i] || strstr(peftc_err_msg(), needles[i]), "message lacks '%s': %s", needles[i],
                      peftc_err_msg());
    ck_assert_ptr_null(m.base_own);
}

static void round_trip(int tied, int bias, int head_dim) {
    LlamaModel a, b;
    make_model(&a, tied, bias, head_dim);
    char dir[512], file[1024];
    snprintf(dir, sizeof dir, "%s/nested/smol", tmpdir); /* created with its parents */
    ck_assert_int_eq(model_save_hf(&a, dir, ST_F32), PEFTC_OK);
    LlamaConfig cfg;
    ModelInfo info, info2;
    ck_assert_int_eq(model_read_config(dir, &cfg, &info), PEFTC_OK);
    assert_same_config(&cfg, &a.cfg);
    ck_assert_int_eq(info.is_gguf, 0);
    ck_assert_str_eq(info.name, "smol");
    ck_assert_str_eq(info.path, dir);
    ck_assert_str_eq(info.arch, bias ? "qwen2" : "llama");
    ck_assert_uint_ne(info.content_hash, 0);
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, &info2), PEFTC_OK);
    ck_assert_uint_eq(info2.content_hash, info.content_hash);
    assert_same_weights(&a, &b);
    StFile f;
    in_dir(file, dir, "model.safetensors");
    ck_assert_int_eq(st_open(&f, file), PEFTC_OK);
    ck_assert_int_eq(f.n_tensors, a.base.n_refs);
    ck_assert_int_eq(st_find(&f, "lm_head.weight") != NULL, !tied);
    ck_assert_int_eq(st_find(&f, "model.layers.1.self_attn.k_proj.bias") != NULL, bias);
    st_close(&f);
    llama_free(&a);
    llama_free(&b);
}

START_TEST(save_load_tied) { round_trip(1, 0, 0); }
END_TEST

START_TEST(save_load_untied_with_qkv_bias) { round_trip(0, 1, 0); }
END_TEST

START_TEST(save_load_head_dim_and_tied_bias) {
    round_trip(0, 0, 12);
    round_trip(1, 1, 6);
}
END_TEST

static cJSON *read_config(const char *dir) {
    char path[1024];
    in_dir(path, dir, "config.json");
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(j);
    return j;
}

static void write_config(const char *dir, const cJSON *j) {
    char path[1024];
    in_dir(path, dir, "config.json");
    char *text = cJSON_Print(j);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    free(text);
}

START_TEST(config_json_is_what_transformers_reads) {
    LlamaModel a;
    make_model(&a, 1, 0, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/m", tmpdir);
    ck_assert_int_eq(model_save_hf(&a, dir, ST_BF16), PEFTC_OK);
    cJSON *j = read_config(dir);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "model_type")->valuestring, "llama");
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring, "LlamaForCausalLM");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "torch_dtype")->valuestring, "bfloat16");
    ck_assert_int_eq(cJSON_GetObjectItem(j, "head_dim")->valueint, 8);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "num_key_value_heads")->valueint, 2);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "tie_word_embeddings")));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "attention_bias")));
    ck_assert(cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble == 1e-5);
    cJSON_Delete(j);
    llama_free(&a);
}
END_TEST

/* 16-bit saves store the nearest-even rounding of each weight, and loading gives exactly that back. */
START_TEST(save_load_16bit) {
    StDType dts[2] = {ST_F16, ST_BF16};
    for (int d = 0; d < 2; d++) {
        LlamaModel a, b;
        make_model(&a, 0, 1, 0);
        char dir[512];
        snprintf(dir, sizeof dir, "%s/half%d", tmpdir, d);
        ck_assert_int_eq(model_save_hf(&a, dir, dts[d]), PEFTC_OK);
        ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, NULL), PEFTC_OK);
        int changed = 0;
        for (int i = 0; i < a.base.n_refs; i++) {
            const real_t *x = *a.base.refs[i].data, *y = *b.base.refs[i].data;
            for (int64_t k = 0; k < shape_numel(&a.base.refs[i].shape); k++) {
                float want = dts[d] == ST_F16 ? f16_to_f32(f32_to_f16((float)x[k])) : bf16_to_f32(f32_to_bf16((float)x[k]));
                ck_assert_msg(y[k] == want, "%s[%lld]: %g, expected %g", a.base.refs[i].name, (long long)k, (double)y[k], want);
                changed += y[k] != x[k];
            }
        }
        ck_assert_int_gt(changed, 0);
        llama_free(&a);
        llama_free(&b);
    }
}
END_TEST

/* Shards as transformers writes them: weight_map -> file, each file holding part of the tensors. */
static void write_sharded(const char *dir, const LlamaModel *m, const char *misplace) {
    const char *shard[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    StWriter *w[2] = {st_writer_new(), st_writer_new()};
    cJSON *index = cJSON_CreateObject(), *map = cJSON_CreateObject();
    cJSON_AddItemToObject(cJSON_AddObjectToObject(index, "metadata"), "total_size", cJSON_CreateNumber(1));
    cJSON_AddItemToObject(index, "weight_map", map);
    for (int i = 0; i < m->base.n_refs; i++) {
        int s = i >= m->base.n_refs / 2;
        const ParamRef *r = &m->base.refs[i];
        ck_assert_int_eq(st_writer_add(w[s], r->name, ST_F32, &r->shape, *r->data), PEFTC_OK);
        int listed = misplace && strcmp(misplace, r->name) == 0 ? 1 - s : s;
        cJSON_AddStringToObject(map, r->name, shard[listed]);
    }
    real_t inv_freq[4] = {1, 2, 3, 4};
    Shape s4 = shape1(4);
    ck_assert_int_eq(st_writer_add(w[1], "model.layers.0.self_attn.rotary_emb.inv_freq", ST_F32, &s4, inv_freq),
                     PEFTC_OK);
    char path[1024];
    for (int s = 0; s < 2; s++) {
        in_dir(path, dir, shard[s]);
        ck_assert_int_eq(st_write(w[s], path), PEFTC_OK);
        st_writer_free(w[s]);
    }
    char *text = cJSON_Print(index);
    in_dir(path, dir, "model.safetensors.index.json");
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(index);
    in_dir(path, dir, "model.safetensors");
    unlink(path);
}

START_TEST(sharded_folder_loads_the_same) {
    LlamaModel a, b;
    make_model(&a, 0, 1, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    ck_assert_int_eq(model_save_hf(&a, dir, ST_F32), PEFTC_OK); /* for config.json */
    write_sharded(dir, &a, NULL);
    ModelInfo info;
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, &info), PEFTC_OK);
    assert_same_weights(&a, &b);
    ck_assert_str_eq(info.name, "sharded");
    llama_free(&b);
    /* The index placing a tensor in the wrong shard is reported against that shard. */
    write_sharded(dir, &a, "model.layers.0.mlp.gate_proj.weight");
    expect_load_error(dir, PEFTC_EFORMAT, "model-00002-of-00002.safetensors", "'model.layers.0.mlp.gate_proj.weight'",
                      "expected shape (48, 32)");
    /* A tensor absent from weight_map is reported against the index. */
    char path[1024];
    in_dir(path, dir, "model.safetensors.index.json");
    FILE *f = fopen(path, "wb");
    fputs("{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"}}", f);
    fclose(f);
    expect_load_error(dir, PEFTC_EFORMAT, "model.safetensors.index.json", "weight_map", "model.layers.0");
    f = fopen(path, "wb");
    fputs("{\"weight_map\": {\"model.embed_tokens.weight\": \"../elsewhere.safetensors\"}}", f);
    fclose(f);
    expect_load_error(dir, PEFTC_EFORMAT, "model.safetensors.index.json", "same folder", NULL);
    llama_free(&a);
}
END_TEST

/* Saves a good model in tmpdir/cfg, then applies `edit` to its config.json. */
static void saved_folder(char *dir, int bias) {
    LlamaModel a;
    make_model(&a, 0, bias, 0);
    snprintf(dir, 512, "%s/cfg", tmpdir);
    ck_assert_int_eq(model_save_hf(&a, dir, ST_F32), PEFTC_OK);
    llama_free(&a);
}

static void expect_config_error(const char *dir, cJSON *j, const char *n1, const char *n2) {
    write_config(dir, j);
    cJSON_Delete(j);
    LlamaConfig cfg;
    peftc_err_clear();
    ck_assert_int_eq(model_read_config(dir, &cfg, NULL), PEFTC_EFORMAT);
    ck_assert_msg(strstr(peftc_err_msg(), "config.json") && strstr(peftc_err_msg(), n1) &&
                      (!n2 || strstr(peftc_err_msg(), n2)),
                  "message lacks config.json / '%s' / '%s': %s", n1, n2 ? n2 : "", peftc_err_msg());
    expect_load_error(dir, PEFTC_EFORMAT, "config.json", n1, n2);
}

START_TEST(config_errors_name_file_and_key) {
    char dir[512];
    saved_folder(dir, 0);
    cJSON *orig = read_config(dir), *j = cJSON_Duplicate(orig, 1);
    cJSON_DeleteItemFromObject(j, "hidden_size");
    expect_config_error(dir, j, "\"hidden_size\"", "missing");
    j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "vocab_size", cJSON_CreateString("40"));
    expect_config_error(dir, j, "\"vocab_size\"", "positive integer");
    j = cJSON_Duplicate(orig, 1);
    cJSON *rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "rope_type", "dynamic");
    cJSON_AddNumberToObject(rs, "factor", 8);
    cJSON_ReplaceItemInObject(j, "rope_scaling", rs);
    expect_config_error(dir, j, "\"rope_scaling.rope_type\" is \"dynamic\"", "not implemented");
    j = cJSON_Duplicate(orig, 1);
    rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
    cJSON_AddNumberToObject(rs, "factor", 8);
    cJSON_ReplaceItemInObject(j, "rope_scaling", rs);
    expect_config_error(dir, j, "rope_scaling", "original_max_position_embeddings");
    j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "model_type", cJSON_CreateString("gpt2"));
    expect_config_error(dir, j, "\"gpt2\"", "not supported");
    j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "hidden_act", cJSON_CreateString("gelu"));
    expect_config_error(dir, j, "hidden_act", "silu");
    j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "num_key_value_heads", cJSON_CreateNumber(3));
    expect_config_error(dir, j, "kv_heads", NULL);
    cJSON_Delete(orig);
    char path[1024];
    in_dir(path, dir, "config.json");
    FILE *f = fopen(path, "wb");
    fputs("{\"model_type\": \"llama\", ", f);
    fclose(f);
    expect_load_error(dir, PEFTC_EFORMAT, path, "not valid JSON", NULL);
    unlink(path);
    expect_load_error(dir, PEFTC_EIO, path, "not found", NULL);
}
END_TEST

/* Variants transformers writes that mean exactly this model. */
START_TEST(equivalent_configs_are_accepted) {
    char dir[512];
    saved_folder(dir, 0);
    LlamaConfig cfg;
    cJSON *j = read_config(dir);
    cJSON_DeleteItemFromObject(j, "model_type");
    cJSON_DeleteItemFromObject(j, "rope_theta");
    cJSON_DeleteItemFromObject(j, "rope_scaling");
    cJSON *rp = cJSON_AddObjectToObject(j, "rope_parameters"); /* transformers 5 */
    cJSON_AddStringToObject(rp, "rope_type", "default");
    cJSON_AddNumberToObject(rp, "rope_theta", 500000);
    write_config(dir, j);
    cJSON_Delete(j);
    ck_assert_int_eq(model_read_config(dir, &cfg, NULL), PEFTC_OK);
    ck_assert(cfg.rope_theta == 500000);
    j = read_config(dir);
    cJSON_ReplaceItemInObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"MistralForCausalLM"}, 1));
    cJSON_AddStringToObject(j, "model_type", "mistral");
    cJSON_AddNullToObject(j, "sliding_window");
    write_config(dir, j);
    ck_assert_int_eq(model_read_config(dir, &cfg, NULL), PEFTC_OK);
    ck_assert_int_eq(cfg.sliding_window, 0);
    cJSON_ReplaceItemInObject(j, "sliding_window", cJSON_CreateNumber(4096)); /* kept as a length limit */
    write_config(dir, j);
    ck_assert_int_eq(model_read_config(dir, &cfg, NULL), PEFTC_OK);
    ck_assert_int_eq(cfg.sliding_window, 4096);
    cJSON_ReplaceItemInObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1));
    cJSON_ReplaceItemInObject(j, "model_type", cJSON_CreateString("llama"));
    cJSON_ReplaceItemInObject(j, "attention_bias", cJSON_CreateTrue()); /* q, k, v and o biases */
    write_config(dir, j);
    cJSON_Delete(j);
    ck_assert_int_eq(model_read_config(dir, &cfg, NULL), PEFTC_OK);
    ck_assert(cfg.o_bias && cfg.qkv_bias && !cfg.sliding_window);
}
END_TEST

START_TEST(weight_errors_name_file_and_tensor) {
    LlamaModel a, b;
    make_model(&a, 0, 0, 0);
    char dir[512], file[1024];
    snprintf(dir, sizeof dir, "%s/w", tmpdir);
    ck_assert_int_eq(model_save_hf(&a, dir, ST_F32), PEFTC_OK);
    in_dir(file, dir, "model.safetensors");
    const char *up = "model.layers.1.mlp.up_proj.weight";
    write_tensors(file, &a, up, NULL, shape1(1), ST_F32);
    expect_load_error(dir, PEFTC_EFORMAT, file, "'model.layers.1.mlp.up_proj.weight' is missing",
                      "expected shape (48, 32)");
    write_tensors(file, &a, up, up, shape2(32, 48), ST_F32);
    expect_load_error(dir, PEFTC_EFORMAT, file, "'model.layers.1.mlp.up_proj.weight' has shape (32, 48)",
                      "expected (48, 32)");
    write_tensors(file, &a, up, up, shape2(48, 32), ST_BF16); /* 16-bit weights load too */
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, NULL), PEFTC_OK);
    llama_free(&b);
    write_tensors(file, &a, "lm_head.weight", NULL, shape1(1), ST_F32);
    expect_load_error(dir, PEFTC_EFORMAT, file, "'lm_head.weight' is missing", "tie_word_embeddings");
    write_tensors(file, &a, NULL, "model.layers.0.self_attn.o_proj.bias", shape1(32), ST_F32);
    expect_load_error(dir, PEFTC_EFORMAT, file, "'model.layers.0.self_attn.o_proj.bias'", "different model");
    write_tensors(file, &a, NULL, "model.layers.2.input_layernorm.weight", shape1(32), ST_F32);
    expect_load_error(dir, PEFTC_EFORMAT, file, "'model.layers.2.input_layernorm.weight'", "2 layers");
    /* Buffers and tensors outside the decoder layers are not the model's business. */
    write_tensors(file, &a, NULL, "model.layers.1.self_attn.rotary_emb.inv_freq", shape1(4), ST_F32);
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, NULL), PEFTC_OK);
    assert_same_weights(&a, &b);
    llama_free(&b);
    write_tensors(file, &a, NULL, "score.weight", shape2(2, 32), ST_F32);
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, NULL), PEFTC_OK);
    llama_free(&b);
    write_tensors(file, &a, NULL, "model.norm.bias", shape1(4), ST_F32);
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, NULL), PEFTC_OK);
    llama_free(&b);
    llama_free(&a);
}
END_TEST

/* Sizes the weight files cannot back are refused from the tensor headers before the model is allocated:
 * a 2^30 vocabulary or 2^24 layers would otherwise ask for hundreds of GB first (ENOMEM, or minutes of
 * zeroing where the allocation succeeds). */
START_TEST(absurd_sizes_are_refused_before_allocating) {
    char dir[512];
    saved_folder(dir, 0);
    cJSON *orig = read_config(dir), *j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "vocab_size", cJSON_CreateNumber(1 << 30));
    write_config(dir, j);
    cJSON_Delete(j);
    expect_load_error(dir, PEFTC_EFORMAT, "model.safetensors", "'model.embed_tokens.weight' has shape (40, 32)",
                      "expected (1073741824, 32) from config.json");
    j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "num_hidden_layers", cJSON_CreateNumber(1 << 24));
    write_config(dir, j);
    cJSON_Delete(j);
    expect_load_error(dir, PEFTC_EFORMAT, "model.safetensors", "'model.layers.2.input_layernorm.weight' is missing",
                      NULL);
    j = cJSON_Duplicate(orig, 1);
    cJSON_ReplaceItemInObject(j, "intermediate_size", cJSON_CreateNumber(1 << 28));
    write_config(dir, j);
    cJSON_Delete(j);
    expect_load_error(dir, PEFTC_EFORMAT, "'model.layers.0.mlp.gate_proj.weight' has shape (48, 32)",
                      "expected (268435456, 32)", NULL);
    cJSON_Delete(orig);
}
END_TEST

/* A tied config ignores an lm_head.weight in the file (some exporters write the shared tensor twice). */
START_TEST(tied_config_ignores_lm_head) {
    LlamaModel a, b;
    make_model(&a, 1, 0, 0);
    char dir[512], file[1024];
    snprintf(dir, sizeof dir, "%s/t", tmpdir);
    ck_assert_int_eq(model_save_hf(&a, dir, ST_F32), PEFTC_OK);
    in_dir(file, dir, "model.safetensors");
    write_tensors(file, &a, NULL, "lm_head.weight", shape2(40, 32), ST_F32);
    ck_assert_int_eq(llama_load(&b, backend_cpu(), dir, NULL), PEFTC_OK);
    assert_same_weights(&a, &b);
    llama_free(&a);
    llama_free(&b);
}
END_TEST

START_TEST(paths_that_are_not_models) {
    char path[1024];
    LlamaConfig cfg;
    in_dir(path, tmpdir, "absent");
    ck_assert_int_eq(model_read_config(path, &cfg, NULL), PEFTC_EIO);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), path));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "HF model folder"));
    in_dir(path, tmpdir, "junk.bin");
    FILE *f = fopen(path, "wb");
    fputs("NOT A MODEL", f);
    fclose(f);
    expect_load_error(path, PEFTC_EFORMAT, path, "\"GGUF\"", "HF model folder");
    in_dir(path, tmpdir, "model.safetensors");
    f = fopen(path, "wb");
    fclose(f);
    expect_load_error(path, PEFTC_EFORMAT, path, "give the folder", NULL);
    /* A folder without config.json. */
    expect_load_error(tmpdir, PEFTC_EIO, "config.json", "not found", NULL);
    /* config.json without weights. */
    char dir[512];
    saved_folder(dir, 0);
    in_dir(path, dir, "model.safetensors");
    unlink(path);
    expect_load_error(dir, PEFTC_EIO, dir, "no model.safetensors", NULL);
}
END_TEST

START_TEST(default_gguf_is_dispatched) {
    if (access(PEFTC_DEFAULT_MODEL, R_OK) != 0) {
        printf("default_gguf_is_dispatched: skipped, %s is absent\n", PEFTC_DEFAULT_MODEL);
        return;
    }
    LlamaConfig cfg;
    ModelInfo info;
    ck_assert_int_eq(model_read_config(PEFTC_DEFAULT_MODEL, &cfg, &info), PEFTC_OK);
    ck_assert_int_eq(info.is_gguf, 1);
    ck_assert_str_eq(info.path, PEFTC_DEFAULT_MODEL);
    ck_assert_int_eq(cfg.hidden, 576);
}
END_TEST

/* Written by transformers 4.49 (LlamaForCausalLM.save_pretrained, float32, untied). */
START_TEST(transformers_fixture_loads) {
    const char *dir = PEFTC_FIXTURE_DIR "/hf_tiny_llama";
    LlamaConfig cfg;
    ModelInfo info;
    ck_assert_int_eq(model_read_config(dir, &cfg, &info), PEFTC_OK);
    LlamaConfig want = {.hidden = 64, .intermediate = 160, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 128,
                        .rope_theta = 10000, .rms_eps = 1e-5};
    assert_same_config(&cfg, &want);
    ck_assert_int_eq(cfg.head_dim, 16);
    ck_assert_int_eq(info.context_length, 64);
    ck_assert_str_eq(info.arch, "llama");
    ck_assert_str_eq(info.name, "hf_tiny_llama");
    LlamaModel m;
    ck_assert_int_eq(llama_load(&m, backend_cpu(), dir, &info), PEFTC_OK);
    StFile f;
    ck_assert_int_eq(st_open(&f, PEFTC_FIXTURE_DIR "/hf_tiny_llama/model.safetensors"), PEFTC_OK);
    ck_assert_int_eq(f.n_tensors, m.base.n_refs); /* every tensor in the file is one of the model's */
    for (int i = 0; i < m.base.n_refs; i++) {
        const StTensor *t = st_find(&f, m.base.refs[i].name);
        ck_assert_msg(t != NULL, "%s not in the file", m.base.refs[i].name);
        ck_assert_str_eq(t->dtype_name, "F32");
        size_t n = (size_t)shape_numel(&m.base.refs[i].shape);
        ck_assert_uint_eq(t->nbytes, n * 4);
        ck_assert_msg(memcmp(t->data, *m.base.refs[i].data, t->nbytes) == 0, "%s differs from the file", m.base.refs[i].name);
        double sumsq = 0;
        for (size_t k = 0; k < n; k++) sumsq += (double)(*m.base.refs[i].data)[k] * (*m.base.refs[i].data)[k];
        ck_assert_msg(sumsq > 0, "%s is all zeros", m.base.refs[i].name);
    }
    st_close(&f);
    llama_free(&m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("model_hf");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_add_test(tc, save_load_tied);
    tcase_add_test(tc, save_load_untied_with_qkv_bias);
    tcase_add_test(tc, save_load_head_dim_and_tied_bias);
    tcase_add_test(tc, config_json_is_what_transformers_reads);
    tcase_add_test(tc, save_load_16bit);
    tcase_add_test(tc, sharded_folder_loads_the_same);
    tcase_add_test(tc, config_errors_name_file_and_key);
    tcase_add_test(tc, equivalent_configs_are_accepted);
    tcase_add_test(tc, weight_errors_name_file_and_tensor);
    tcase_add_test(tc, absurd_sizes_are_refused_before_allocating);
    tcase_add_test(tc, tied_config_ignores_lm_head);
    tcase_add_test(tc, paths_that_are_not_models);
    tcase_add_test(tc, default_gguf_is_dispatched);
    tcase_add_test(tc, transformers_fixture_loads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
