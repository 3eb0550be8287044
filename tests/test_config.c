/* The run configuration: defaults, YAML, overrides, messages, cross-field checks, write-out, help. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch/config/config.h"
#include "launch/config/config_keys.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

static char tmpdir[64];

/* Writes `text` to tmpdir/name and returns the path (static buffer, one at a time). */
static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

#define ck_msg_has(needle)                                                                                     \
    ck_assert_msg(strstr(peftc_err_msg(), (needle)) != NULL, "message \"%s\" lacks \"%s\"", peftc_err_msg(), \
                  (needle))

/* Applies an override that must fail, and returns nothing: the message is checked by the caller. */
static void override_fails(RunConfig *c, const char *kv) {
    peftc_err_clear();
    ck_assert_msg(config_apply_override(c, kv) != PEFTC_OK, "override '%s' was accepted", kv);
}

static void override_ok(RunConfig *c, const char *kv) {
    PeftcStatus st = config_apply_override(c, kv);
    ck_assert_msg(st == PEFTC_OK, "override '%s' failed: %s", kv, peftc_err_msg());
}

static RunConfig defaults(void) {
    RunConfig c;
    config_defaults(&c);
    return c;
}

START_TEST(defaults_pass_finish) {
    RunConfig c = defaults();
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    ck_assert_int_eq(c.model.hidden, 128);
    ck_assert_int_eq(c.model.head_dim, 32);
    ck_assert_int_eq(c.model.tie_embeddings, 1);
    ck_assert(c.model.rms_eps == 1e-5);
    ck_assert(c.lr == 1e-3);
    ck_assert_str_eq(c.model_path, "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    ck_assert(c.train.adamw.beta2 == 0.999);
    ck_assert_str_eq(config_method(&c)->name, "lora");
    ck_assert_int_eq(lora_settings(&c.methods)->lora.r, 8);
    ck_assert_uint_eq(lora_settings(&c.methods)->lora.targets, LORA_T_ALL);
    ck_assert_int_eq(c.train.steps, 40);
    ck_assert_int_eq(c.train.sched.total, 40);
    ck_assert_int_eq(c.train.sched.type, SCHED_COSINE);
    ck_assert(c.train.sched.min_ratio == 0.1);
    ck_assert_int_eq(c.task, DATA_RECORDS);
    ck_assert_int_eq(c.sft.task, TASK_RECORDS);
    ck_assert_int_eq(c.sft.seq_len, 96);
    ck_assert_uint_eq(c.model_seed, 1234);
    ck_assert_str_eq(c.out_dir, "runs/default");
    ck_assert_int_eq(c.log_every, 10);
    ck_assert_int_eq(c.tensorboard, 0);
}
END_TEST

/* The table itself: two-component names under a listed section, defaults that parse, enum names that
 * store their modules' enum values. */
START_TEST(table_is_consistent) {
    int nk, ns;
    const ConfigKey *keys = config_keys(&nk);
    const ConfigSection *secs = config_sections(&ns);
    ck_assert_int_ge(nk, 40);
    for (int i = 0; i < nk; i++) {
        const char *dot = strchr(keys[i].name, '.');
        ck_assert_msg(dot && !strchr(dot + 1, '.'), "%s", keys[i].name);
        int found = 0;
        for (int s = 0; s < ns; s++) found |= config_key_in_section(&keys[i], secs[s].name);
        ck_assert_msg(found, "%s has no section", keys[i].name);
        RunConfig c = defaults();
        ck_assert_msg(config_key_set(&keys[i], &c, keys[i].def, "") == PEFTC_OK, "%s", peftc_err_msg());
        ck_assert_ptr_eq(config_key_find(keys[i].name), &keys[i]);
    }
    /* Enum names store their module's enum value; unknown names are refused with the choices. */
    RunConfig c = defaults();
    override_ok(&c, "sched.type=linear");
    ck_assert_int_eq(c.train.sched.type, SCHED_LINEAR);
    override_ok(&c, "data.task=reverse");
    ck_assert_int_eq(c.task, DATA_REVERSE);
    override_ok(&c, "method.name=full");
    ck_assert_str_eq(config_method(&c)->name, "full");
    override_fails(&c, "sched.type=step");
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "cosine, linear, constant"));
    override_fails(&c, "data.task=sort");
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.task"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "arith, records, sql, copy, reverse, add"));
}
END_TEST

START_TEST(yaml_sets_nested_keys) {
    const char *path = write_tmp("nested.yaml",
                                 "# a job\n"
                                 "model:\n"
                                 "  hidden: 64\n"
                                 "  heads: 8\n"
                                 "  kv_heads: 4\n"
                                 "  tie_embeddings: no\n"
                                 "  seed: 99\n"
                                 "method: {name: full}\n"
                                 "lora.alpha: 32.5\n"
                                 "train:\n"
                                 "  steps: 1000\n"
                                 "  accum: 4\n"
                                 "optim: {lr: 1e-4, beta1: 0.8}\n"
                                 "sched:\n"
                                 "  type: linear\n"
                                 "data:\n"
                                 "  task: add\n"
                                 "  max_digits: 4\n"
                                 "output:\n"
                                 "  dir: \"runs/a: b #1\"\n");
    RunConfig c = defaults();
    ck_assert_msg(config_load_yaml(&c, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(c.model.hidden, 64);
    ck_assert_int_eq(c.model.heads, 8);
    ck_assert_int_eq(c.model.kv_heads, 4);
    ck_assert_int_eq(c.model.tie_embeddings, 0);
    ck_assert_uint_eq(c.model_seed, 99);
    ck_assert_str_eq(config_method(&c)->name, "full");
    ck_assert(lora_settings(&c.methods)->lora.alpha == 32.5);
    ck_assert_int_eq(c.train.steps, 1000);
    ck_assert_int_eq(c.train.accum, 4);
    ck_assert(c.lr == 1e-4);
    ck_assert(c.train.adamw.beta1 == 0.8);
    ck_assert_int_eq(c.train.sched.type, SCHED_LINEAR);
    ck_assert_int_eq(c.task, DATA_ADD);
    ck_assert_str_eq(c.out_dir, "runs/a: b #1");
    ck_assert_int_eq(lora_settings(&c.methods)->lora.r, 8); /* untouched keys keep their defaults */
    ck_assert_msg(config_finish(&c) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(c.model.head_dim, 8);
    ck_assert_int_eq(c.train.sched.total, 1000);
}
END_TEST

START_TEST(yaml_sequence_targets) {
    RunConfig c = defaults();
    const char *path = write_tmp("flow.yaml", "lora:\n  targets: [q, v, down]\n");
    ck_assert_msg(config_load_yaml(&c, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_str_eq(lora_settings(&c.methods)->targets, "q,v,down");
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    ck_assert_uint_eq(lora_settings(&c.methods)->lora.targets, LORA_T_Q | LORA_T_V | LORA_T_DOWN);

    c = defaults();
    path = write_tmp("block.yaml", "lora:\n  targets:\n    - gate\n    - up\n");
    ck_assert_msg(config_load_yaml(&c, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    ck_assert_uint_eq(lora_settings(&c.methods)->lora.targets, LORA_T_GATE | LORA_T_UP);

    c = defaults();
    path = write_tmp("nested_seq.yaml", "lora:\n  targets: [q, [k]]\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has("lora.targets");
}
END_TEST

START_TEST(override_full_key_and_leaf) {
    RunConfig c = defaults();
    override_ok(&c, "lora.r=4");
    override_ok(&c, "accum=2");
    override_ok(&c, "beta2=0.95");
    override_ok(&c, "rslora=on");
    override_ok(&c, "sched.type=constant");
    override_ok(&c, "targets=q,v");
    override_ok(&c, "dir=runs/x=y"); /* only the first '=' separates */
    ck_assert_int_eq(lora_settings(&c.methods)->lora.r, 4);
    ck_assert_int_eq(c.train.accum, 2);
    ck_assert(c.train.adamw.beta2 == 0.95);
    ck_assert_int_eq(lora_settings(&c.methods)->lora.rslora, 1);
    ck_assert_int_eq(c.train.sched.type, SCHED_CONSTANT);
    ck_assert_str_eq(lora_settings(&c.methods)->targets, "q,v");
    ck_assert_str_eq(c.out_dir, "runs/x=y");
}
END_TEST

START_TEST(override_ambiguous_leaf) {
    RunConfig c = defaults();
    override_fails(&c, "seed=1");
    ck_msg_has("override 'seed=1': 'seed' is ambiguous");
    ck_msg_has("model.seed");
    ck_msg_has("train.seed");
    ck_msg_has("data.seed");
    override_fails(&c, "lr=0.1");
    ck_msg_has("lora.lr");
    ck_msg_has("optim.lr");
    override_ok(&c, "optim.lr=0.1");
    ck_assert(c.lr == 0.1);
}
END_TEST

START_TEST(override_unknown_key) {
    RunConfig c = defaults();
    override_fails(&c, "lora.rank=4");
    ck_assert_str_eq(peftc_err_msg(), "override 'lora.rank=4': unknown key 'lora.rank' (did you mean 'lora.r'?)");
    override_fails(&c, "acum=2");
    ck_msg_has("(did you mean 'train.accum'?)");
    override_fails(&c, "zzzzzzzz=1");
    ck_msg_has("unknown key 'zzzzzzzz'");
    ck_assert_ptr_null(strstr(peftc_err_msg(), "did you mean"));
    override_fails(&c, "lora.r");
    ck_msg_has("override 'lora.r'");
    ck_msg_has("key=value");
    override_fails(&c, "=3");
    ck_msg_has("override '=3'");
}
END_TEST

START_TEST(yaml_unknown_key_names_file_and_line) {
    const char *path = write_tmp("job.yaml",
                                 "# job\n"
                                 "model:\n"
                                 "  hidden: 64\n"
                                 "  heads: 4\n"
                                 "lora:\n"
                                 "  r: 4\n"
                                 "  rank: 8\n");
    char want[512];
    snprintf(want, sizeof want, "%s:7: unknown key 'lora.rank' (did you mean 'lora.r'?)", path);
    RunConfig c = defaults(), before = c;
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_assert_str_eq(peftc_err_msg(), want);
    ck_assert_int_eq(c.model.hidden, before.model.hidden); /* a failed file changes nothing */
    ck_assert_int_eq(lora_settings(&c.methods)->lora.r, lora_settings(&before.methods)->lora.r);

    path = write_tmp("section.yaml", "trian:\n  steps: 5\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has(":2: unknown key 'trian.steps' (did you mean 'train.steps'?)");
}
END_TEST

START_TEST(wrong_types) {
    RunConfig c = defaults();
    override_fails(&c, "train.steps=ten");
    ck_assert_str_eq(peftc_err_msg(), "override 'train.steps=ten': key 'train.steps' expects an integer, got 'ten'");
    const char *bad_ints[] = {"3.5", "", "12abc", " 3", "99999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
        char kv[64];
        snprintf(kv, sizeof kv, "train.accum=%s", bad_ints[i]);
        override_fails(&c, kv);
        ck_msg_has("key 'train.accum' expects an integer");
    }
    override_fails(&c, "model.tie_embeddings=maybe");
    ck_msg_has("key 'model.tie_embeddings' expects a boolean");
    const char *bad_floats[] = {"1.5x", "nan", "inf", "-inf", "1e999", "", "abc"};
    for (size_t i = 0; i < sizeof bad_floats / sizeof bad_floats[0]; i++) {
        char kv[64];
        snprintf(kv, sizeof kv, "optim.lr=%s", bad_floats[i]);
        override_fails(&c, kv);
        ck_msg_has("key 'optim.lr' expects a number");
    }
    override_fails(&c, "sched.type=step");
    ck_msg_has("key 'sched.type' expects one of cosine, linear, constant, got 'step'");
    override_fails(&c, "method.name=prefix");
    ck_msg_has("one of lora, full");
    ck_assert_int_eq(c.train.accum, 1); /* failed overrides leave the value alone */
}
END_TEST

START_TEST(yaml_wrong_types) {
    RunConfig c = defaults();
    const char *path = write_tmp("type.yaml", "train:\n  accum: 2\n  steps: ten\n");
    char want[512];
    snprintf(want, sizeof want, "%s:3: key 'train.steps' expects an integer, got 'ten'", path);
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_assert_str_eq(peftc_err_msg(), want);

    path = write_tmp("map.yaml", "lora:\n  r:\n    value: 4\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has("key 'lora.r' expects an integer, got a mapping");
    path = write_tmp("seq.yaml", "lora:\n  r: [4, 8]\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has(":2: key 'lora.r' expects an integer, got a sequence");
    path = write_tmp("scalar_section.yaml", "model: 5\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has(":1: key 'model' expects a mapping of keys, got a scalar");
    path = write_tmp("bool.yaml", "model:\n  qkv_bias: maybe\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has(":2: key 'model.qkv_bias' expects a boolean");
    path = write_tmp("top.yaml", "- a\n- b\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has("expected a mapping");
}
END_TEST

START_TEST(yaml_file_errors) {
    RunConfig c = defaults();
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no/such.yaml", tmpdir);
    ck_assert_int_eq(config_load_yaml(&c, missing), PEFTC_EINVAL); /* a usage error: exit code 2 */
    ck_msg_has(missing);

    const char *path = write_tmp("syntax.yaml", "model:\n  hidden: 64\n  heads: [4\n");
    ck_assert_int_eq(config_load_yaml(&c, path), PEFTC_EINVAL);
    ck_msg_has(path);
    ck_msg_has("YAML syntax error");

    path = write_tmp("dup.yaml", "lora:\n  r: 4\n  alpha: 8\n  r: 16\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has(":4: duplicate key 'r' (first on line 2)");
    path = write_tmp("dup2.yaml", "lora:\n  r: 4\nlora.r: 16\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has(":3: duplicate key 'lora.r' (first set on line 2)");
    path = write_tmp("twodocs.yaml", "lora:\n  r: 4\n---\nlora:\n  r: 5\n");
    ck_assert_int_ne(config_load_yaml(&c, path), PEFTC_OK);
    ck_msg_has("only one YAML document");

    path = write_tmp("empty.yaml", "# nothing here\n");
    ck_assert_int_eq(config_load_yaml(&c, path), PEFTC_OK);
    path = write_tmp("empty_section.yaml", "lora:\ntrain:\n  steps: 7\n");
    ck_assert_msg(config_load_yaml(&c, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(c.train.steps, 7);
    ck_assert_int_eq(lora_settings(&c.methods)->lora.r, 8);
}
END_TEST

START_TEST(out_of_range) {
    RunConfig c = defaults();
    override_fails(&c, "lora.dropout=1.5");
    ck_assert_str_eq(peftc_err_msg(), "override 'lora.dropout=1.5': key 'lora.dropout' must be in [0, 1), got 1.5");
    override_fails(&c, "lora.dropout=1");
    override_fails(&c, "lora.dropout=-0.1");
    override_ok(&c, "lora.dropout=0");
    override_fails(&c, "lora.r=0");
    ck_msg_has("key 'lora.r' must be in [1, 4096], got 0");
    override_fails(&c, "lora.r=4097");
    override_ok(&c, "lora.r=4096");
    override_fails(&c, "optim.lr=0");
    ck_msg_has("key 'optim.lr' must be > 0, got 0");
    override_fails(&c, "train.steps=0");
    ck_msg_has("key 'train.steps' must be >= 1, got 0");
    override_fails(&c, "model.hidden=3000000000"); /* does not fit the int field */
    ck_msg_has("key 'model.hidden' must be in [1, 2147483647]");
    override_ok(&c, "train.steps=3000000000"); /* an int64_t field does */
    ck_assert_int_eq(c.train.steps, 3000000000LL);
    override_fails(&c, "model.seed=-1");
    override_fails(&c, "data.eval_percent=51");
    override_ok(&c, "sched.min_lr_ratio=1");
    override_fails(&c, "train.seq_len=1");

    char kv[700] = "output.dir=";
    memset(kv + strlen(kv), 'x', 600);
    kv[611] = '\0';
    override_fails(&c, kv);
    ck_msg_has("key 'output.dir' is too long: 600 bytes, at most 511");
    override_fails(&c, "output.dir=");
    ck_msg_has("key 'output.dir' must not be empty");
}
END_TEST

static void finish_fails(RunConfig *c, const char *const *overrides) {
    for (int i = 0; overrides[i]; i++) override_ok(c, overrides[i]);
    peftc_err_clear();
    ck_assert_msg(config_finish(c) != PEFTC_OK, "finish accepted %s", overrides[0]);
}

START_TEST(cross_field_checks) {
    RunConfig c = defaults();
    finish_fails(&c, (const char *const[]){"kv_heads=3", NULL});
    ck_assert_str_eq(peftc_err_msg(), "model.kv_heads (3) must divide model.heads (4)");

    c = defaults();
    finish_fails(&c, (const char *const[]){"seq_len=16", "data.task=reverse", NULL});
    ck_msg_has("train.seq_len (16)");
    ck_msg_has("data.task=reverse");
    ck_msg_has("data.max_digits=8");
    ck_msg_has("19 tokens");

    c = defaults();
    finish_fails(&c, (const char *const[]){"hidden=130", NULL});
    ck_msg_has("model.hidden (130) must be divisible by model.heads (4)");
    c = defaults();
    finish_fails(&c, (const char *const[]){"hidden=12", NULL});
    ck_msg_has("model.head_dim (3 = model.hidden / model.heads) must be even");
    c = defaults();
    finish_fails(&c, (const char *const[]){"head_dim=5", NULL});
    ck_msg_has("model.head_dim (5) must be even");
    c = defaults();
    finish_fails(&c, (const char *const[]){"steps=3", NULL});
    ck_msg_has("sched.warmup (5) must be <= train.steps (3)");
    c = defaults();
    finish_fails(&c, (const char *const[]){"min_digits=9", "data.task=copy", NULL});
    ck_msg_has("data.min_digits (9) must be <= data.max_digits (8)");
    c = defaults();
    finish_fails(&c, (const char *const[]){"model.path=", NULL});
    ck_msg_has("data.task=records is text and needs a tokenizer: set model.path");
    c = defaults();
    finish_fails(&c, (const char *const[]){"model.path=", "data.path=x.jsonl", NULL});
    ck_msg_has("data.path needs a tokenizer");
    c = defaults();
    finish_fails(&c, (const char *const[]){"data.task=add", "data.eval_path=e.jsonl", NULL});
    ck_msg_has("data.eval_path is set but data.path is not");
    c = defaults();
    finish_fails(&c, (const char *const[]){"vocab=14", "model.path=", "data.task=add", NULL});
    ck_msg_has("model.vocab (14) must be >= 15");
    c = defaults();
    finish_fails(&c, (const char *const[]){"targets=q,x", NULL});
    ck_msg_has("lora.targets");

    c = defaults(); /* targets do not matter to full fine-tuning */
    override_ok(&c, "targets=q,x");
    override_ok(&c, "method.name=full");
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    c = defaults(); /* explicit even head_dim need not equal hidden/heads */
    override_ok(&c, "head_dim=16");
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    ck_assert_int_eq(c.model.head_dim, 16);
}
END_TEST

static void assert_same_keys(const RunConfig *a, const RunConfig *b) {
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(memcmp((const char *)a + keys[i].offset, (const char *)b + keys[i].offset,
                             keys[i].type == KEY_STRING
                                 ? strlen((const char *)a + keys[i].offset) + 1
                                 : keys[i].size) == 0,
                      "key %s differs after the round trip", keys[i].name);
    }
}

static void round_trip(const RunConfig *c, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(config_write_yaml(c, f), PEFTC_OK);
    fclose(f);
    RunConfig back = defaults();
    ck_assert_msg(config_load_yaml(&back, path) == PEFTC_OK, "%s", peftc_err_msg());
    assert_same_keys(c, &back);
}

START_TEST(write_yaml_round_trips) {
    RunConfig c = defaults();
    round_trip(&c, "rt_defaults.yaml");

    lora_settings(&c.methods)->lora.alpha = 0.1 + 0.2; /* not the double nearest 0.3 */
    c.lr = 1.0 / 3.0;
    c.model.rms_eps = 1e-300;
    c.train.adamw.eps = 5e-324;
    c.init_std = 123456789.123456789;
    c.model_seed = 18446744073709ULL;
    c.train.steps = 1LL << 40;
    c.model.qkv_bias = 1;
    c.method = tu_method_index("full");
    snprintf(lora_settings(&c.methods)->targets, sizeof lora_settings(&c.methods)->targets, "q,v,gate");
    snprintf(c.out_dir, sizeof c.out_dir, "runs/\"odd\": #dir\\ with\ttab and \xc3\xa9");
    c.train.sched.type = SCHED_LINEAR;
    c.task = DATA_COPY;
    round_trip(&c, "rt_odd.yaml");

    c = defaults();
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    round_trip(&c, "rt_finished.yaml");
}
END_TEST

/* model.quantized takes three words (the bool spelling "true" still meaning a GGUF file's blocks), from
 * an override, a leaf override or YAML, and writes back what it read. */
START_TEST(quantized_modes) {
    RunConfig c = defaults();
    ck_assert_int_eq(c.model.quantized, QUANT_NONE);
    override_ok(&c, "model.quantized=nf4");
    ck_assert_int_eq(c.model.quantized, QUANT_NF4);
    override_ok(&c, "model.quantized=true");
    ck_assert_int_eq(c.model.quantized, QUANT_BLOCKS);
    override_ok(&c, "quantized=false");
    ck_assert_int_eq(c.model.quantized, QUANT_NONE);
    override_fails(&c, "model.quantized=yes");
    ck_msg_has("key 'model.quantized' expects one of false, true, nf4, got 'yes'");
    const char *path = write_tmp("nf4.yaml", "model: {quantized: nf4}\n");
    ck_assert_msg(config_load_yaml(&c, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(c.model.quantized, QUANT_NF4);
    round_trip(&c, "rt_nf4.yaml");
    path = write_tmp("true.yaml", "model:\n  quantized: true\n");
    ck_assert_msg(config_load_yaml(&c, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(c.model.quantized, QUANT_BLOCKS);
    round_trip(&c, "rt_true.yaml");
}
END_TEST

START_TEST(help_lists_every_key) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    config_print_help(f);
    fclose(f);
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(strstr(text, keys[i].name) != NULL, "help lacks %s", keys[i].name);
        ck_assert_msg(strstr(text, keys[i].help) != NULL, "help lacks the text of %s", keys[i].name);
    }
    ck_assert_ptr_nonnull(strstr(text, "lora|full"));
    ck_assert_ptr_nonnull(strstr(text, "cosine|linear|constant"));
    ck_assert_ptr_nonnull(strstr(text, "float in [0, 1)"));
    ck_assert_ptr_nonnull(strstr(text, "all-linear"));
    free(text);
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_pass_finish);
    tcase_add_test(tc, table_is_consistent);
    tcase_add_test(tc, yaml_sets_nested_keys);
    tcase_add_test(tc, yaml_sequence_targets);
    tcase_add_test(tc, override_full_key_and_leaf);
    tcase_add_test(tc, override_ambiguous_leaf);
    tcase_add_test(tc, override_unknown_key);
    tcase_add_test(tc, yaml_unknown_key_names_file_and_line);
    tcase_add_test(tc, wrong_types);
    tcase_add_test(tc, yaml_wrong_types);
    tcase_add_test(tc, yaml_file_errors);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, cross_field_checks);
    tcase_add_test(tc, write_yaml_round_trips);
    tcase_add_test(tc, quantized_modes);
    tcase_add_test(tc, help_lists_every_key);
    suite_add_tcase(s, tc);
    return s;
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/peftc_test_config_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = tu_run_suite(config_suite());
    remove_tmpdir();
    return rc;
}
