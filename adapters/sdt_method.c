/* The sdt.* keys and the descriptors of SDT (sparse dimension tuning alone) and SDLoRA (SDT + LoRA on
 * out_proj): the warm-up run, the selection and the restart (prepare), the main run's sparse deltas
 * (attach, init), the selection in checkpoints (state) and the deltas' file (export). adapters/sdt.h
 * gives the recipe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapters/formats/base_deltas.h"
#include "adapters/formats/peft_io.h"
#include "adapters/lora.h"
#include "adapters/rosa.h"
#include "adapters/sdt.h"
#include "core/base/fsutil.h"
#include "core/models/mamba/mamba.h"

static const SettingKey sdt_keys[] = {
    SETTING_FLT("sdt.f_ch", SdtSettings, f_ch, "0.99", KEY_IN_HO(0, 1), "fraction of channels left frozen"),
    SETTING_FLT("sdt.f_st", SdtSettings, f_st, "0.9", KEY_IN_HO(0, 1),
                "fraction of a kept channel's A_log states left frozen"),
    SETTING_INT("sdt.warmup", SdtSettings, warmup, "50", KEY_GE(1), "steps of the warm-up run that picks them"),
    SETTING_STR("sdt.mask_path", SdtSettings, mask_path, "", KEYF_OPTIONAL,
                "selection to load, or where a new one goes; \"\" = output.dir/sdt_masks.safetensors"),
    SETTING_FLT("sdt.lr", SdtSettings, lr, "0", KEY_GE(0), "sparse values' learning rate; 0 = optim.lr"),
};

static PeftcStatus sdt_finish(void *settings, const MethodDesc *d, const MethodEnv *env) {
    SdtSettings *s = settings;
    if (!method_reads(d, &sdt_section)) return PEFTC_OK;
    if (s->mask_path[0] || !env->out_dir) return PEFTC_OK;
    const char *leaf = "/sdt_masks.safetensors";
    if (strlen(env->out_dir) + strlen(leaf) >= sizeof s->mask_path)
        return PEFTC_ERR(PEFTC_EINVAL, "output.dir is too long to hold sdt_masks.safetensors; set sdt.mask_path");
    snprintf(s->mask_path, sizeof s->mask_path, "%s%s", env->out_dir, leaf);
    return PEFTC_OK;
}

const MethodSection sdt_section = {
    .name = "sdt",
    .help = "sparse dimension tuning of a Mamba's SSM (SDT, SDLoRA)",
    .keys = sdt_keys,
    .n_keys = sizeof sdt_keys / sizeof sdt_keys[0],
    .size = sizeof(SdtSettings),
    .finish = sdt_finish,
};

extern const MethodDesc sdt_method, sdlora_method;

/* One run's SDT state (MethodConfig.state). */
typedef struct {
    MambaModel *m;
    int L, D, N, R;
    int warmup;        /* 1: this run is the warm-up (a dense delta on A_log, no selection yet) */
    int n_ch, n_st;
    TensorDelta *A;    /* (L) the A_log deltas the model applies */
    int *hA;           /* (L) their arena handles */
    int32_t *channels; /* (L n_ch) the selection (main run) */
    int64_t *a_flat;   /* (L n_ch n_st) */
} SdtState;

static const SdtSettings *sdt_settings_c(const MethodConfig *mc) {
    return method_section_settings_c(&mc->settings, &sdt_section);
}

static void release(MethodConfig *mc) {
    SdtState *s = mc->state;
    if (!s) return;
    for (int l = 0; l < s->L; l++) {
        if (s->m) mamba_set_A_delta(s->m, l, NULL);
        if (s->A) csr_free(&s->A[l].pat, s->m->base.be);
    }
    free(s->A);
    free(s->hA);
    free(s->channels);
    free(s->a_flat);
    free(s);
    mc->state = NULL;
}

static int file_exists(const char *path) {
    struct stat sb;
    return path[0] && stat(path, &sb) == 0;
}

/* LoRA on out_proj: the warm-up run's, and SDLoRA's main run's (METHODS.md: r 8, alpha 8, dropout 0.1
 * on out_proj only; rank, alpha and dropout come from the lora.* keys). */
static PeftcStatus attach_out_lora(Model *m, Arena *a, MethodConfig *mc) {
    LoraConfig lc = lora_settings_c(&mc->settings)->lora;
    unsigned bit;
    PEFTC_TRY(model_target_mask(m, "out_proj", "sdt", &bit));
    lc.targets = bit;
    int group;
    PEFTC_TRY(arena_group(a, "lora", lora_group_lr(mc), mc->weight_decay, &group));
    return method_attach_each(m, a, bit, lora_maker, &lc, group, -1);
}

/* The A_log deltas: every entry in the warm-up, the selection in the main run. */
static PeftcStatus attach_A(SdtState *s, Arena *a, int group) {
    int64_t per = s->warmup ? (int64_t)s->D * s->N : (int64_t)s->n_ch * s->n_st;
    int64_t *flat = malloc((size_t)per * sizeof *flat);
    if (!flat) return PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory");
    PeftcStatus st = PEFTC_OK;
    for (int l = 0; l < s->L && st == PEFTC_OK; l++) {
        for (int64_t i = 0; i < per; i++) flat[i] = s->warmup ? i : s->a_flat[(size_t)l * per + i];
        char name[128];
        snprintf(name, sizeof name, "backbone.layers.%d.mixer.A_log.%s", l, s->warmup ? "sdt_warmup_delta" : "sdt_values");
        st = csr_from_flat(&s->A[l].pat, s->m->base.be, s->D, s->N, flat, per, name);
        if (st == PEFTC_OK) st = arena_register(a, name, shape1(per), group, 0, &s->hA[l]);
    }
    free(flat);
    return st;
}

/* x_proj's B and C rows at the kept channels, as RoSA's sparse adapter with no LoRA branch: every
 * layer's x_proj has the same shape and count, so one configuration attaches them all. */
static PeftcStatus attach_xproj(SdtState *s, Arena *a, int group) {
    const Linear *x0 = &s->m->layers[0].x_proj;
    int64_t count = 2 * (int64_t)s->N * s->n_ch;
    RosaConfig rc = {.lora = {.r = 0}, .nnz = count};
    PEFTC_TRY(method_attach_each(&s->m->base, a, linear_target_bit(x0), rosa_maker, &rc, group, group));
    int64_t *flat = malloc((size_t)count * sizeof *flat);
    if (!flat) return PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory");
    PeftcStatus st = PEFTC_OK;
    for (int l = 0; l < s->L && st == PEFTC_OK; l++) {
        sdt_xproj_flat(s->channels + (size_t)l * s->n_ch, s->n_ch, s->R, s->N, s->D, flat);
        st = rosa_set_mask(s->m->layers[l].x_proj.adapter, flat, count);
    }
    free(flat);
    return st;
}

static PeftcStatus new_state(Model *m, const SdtSettings *ss, SdtState **out) {
    if (strcmp(m->ops->family, "mamba") != 0)
        return PEFTC_ERR(PEFTC_EINVAL, "method sdt / sdlora tunes a Mamba's SSM; model.path holds a %s model",
                         m->ops->family);
    MambaModel *mm = mamba_of(m);
    const MambaConfig *c = &mm->cfg;
    SdtState *s = calloc(1, sizeof *s);
    if (!s) return PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory");
    *out = s;
    *s = (SdtState){.m = mm, .L = c->layers, .D = c->inner, .N = c->state, .R = c->dt_rank,
                    .warmup = !file_exists(ss->mask_path), .n_ch = sdt_kept(ss->f_ch, c->inner),
                    .n_st = sdt_kept(ss->f_st, c->state)};
    if (s->n_ch < 1 || s->n_st < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "sdt.f_ch %g and sdt.f_st %g keep %d of %d channels and %d of %d states: "
                         "nothing would train", ss->f_ch, ss->f_st, s->n_ch, s->D, s->n_st, s->N);
    s->A = calloc((size_t)s->L, sizeof *s->A);
    s->hA = calloc((size_t)s->L, sizeof *s->hA);
    s->channels = calloc((size_t)s->L * s->n_ch, sizeof *s->channels);
    s->a_flat = calloc((size_t)s->L * s->n_ch * s->n_st, sizeof *s->a_flat);
    if (!s->A || !s->hA || !s->channels || !s->a_flat) return PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory");
    if (s->warmup) return PEFTC_OK;
    return sdt_load_masks(ss->mask_path, s->L, s->n_ch, s->n_st, s->channels, s->a_flat);
}

static PeftcStatus attach(Model *m, Arena *a, MethodConfig *mc) {
    const SdtSettings *ss = sdt_settings_c(mc);
    SdtState *s = NULL;
    PeftcStatus st = new_state(m, ss, &s);
    mc->state = s;
    PEFTC_TRY(st);
    int group;
    PEFTC_TRY(arena_group(a, "sdt", ss->lr > 0 ? ss->lr : mc->lr, mc->weight_decay, &group));
    PEFTC_TRY(attach_A(s, a, group));
    if (!s->warmup) PEFTC_TRY(attach_xproj(s, a, group));
    if (s->warmup || mc->desc == &sdlora_method) PEFTC_TRY(attach_out_lora(m, a, mc));
    return PEFTC_OK;
}

/* Deltas start at 0 (the arena is zeroed); LoRA as lora.c initialises it. */
static PeftcStatus init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    SdtState *s = mc->state;
    PEFTC_TRY(method_init_adapters(m, a, seed));
    for (int l = 0; l < s->L; l++) {
        s->A[l].values = arena_param(a, s->hA[l]);
        s->A[l].dvalues = arena_grad(a, s->hA[l]);
        PEFTC_TRY(mamba_set_A_delta(s->m, l, &s->A[l]));
    }
    mc->found_earlier = !s->warmup;
    return PEFTC_OK;
}

/* Every rank must hold rank 0's selection: data parallelism keeps the delta identical, and a rank whose
 * delta drifted shows here rather than as silently diverging models. */
static PeftcStatus check_same(const SdtState *s, Comm *comm) {
    size_t n = (size_t)s->L * s->n_ch * s->n_st * sizeof *s->a_flat;
    int64_t *root = malloc(n ? n : 1);
    PeftcStatus st = root ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory comparing selections");
    if (st == PEFTC_OK) memcpy(root, s->a_flat, n);
    if (st == PEFTC_OK) st = comm_bcast(comm, root, n, 0);
    if (st == PEFTC_OK && memcmp(root, s->a_flat, n) != 0)
        st = PEFTC_ERR(PEFTC_ECOMM, "sdt: rank %d's selection differs from rank 0's", comm_rank(comm));
    free(root);
    return comm_agree(comm, st);
}

/* After the warm-up steps: each layer's delta to the host, the selection, the file, the restart. */
static PeftcStatus select_all(SdtState *s) {
    size_t n = (size_t)s->D * s->N;
    real_t *host = malloc(n * sizeof *host);
    float *delta = malloc(n * sizeof *delta);
    PeftcStatus st = host && delta ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory selecting");
    const Backend *be = s->m->base.be;
    for (int l = 0; l < s->L && st == PEFTC_OK; l++) {
        be->download(be, host, s->A[l].values, n * sizeof *host); /* full pattern: values are (D, N) in order */
        st = be->status(be);
        for (size_t i = 0; st == PEFTC_OK && i < n; i++) delta[i] = (float)host[i];
        if (st == PEFTC_OK)
            st = sdt_select(delta, s->D, s->N, s->n_ch, s->n_st, s->channels + (size_t)l * s->n_ch,
                            s->a_flat + (size_t)l * s->n_ch * s->n_st);
    }
    free(host);
    free(delta);
    return st;
}

static PeftcStatus prepare(MethodConfig *mc, Model *m, Trainer *t, Comm *comm, int *restart, char *report,
                           size_t cap) {
    (void)m;
    SdtState *s = mc->state;
    const SdtSettings *ss = sdt_settings_c(mc);
    *restart = 0;
    if (!s->warmup) return PEFTC_OK;
    PeftcStatus st = PEFTC_OK;
    for (int64_t i = 0; i < ss->warmup && st == PEFTC_OK; i++) {
        StepStats ss_;
        st = trainer_step(t, &ss_);
    }
    if (st == PEFTC_OK) st = select_all(s);
    st = comm_agree(comm, st);
    if (st == PEFTC_OK) st = check_same(s, comm);
    if (st == PEFTC_OK && comm_rank(comm) == 0)
        st = sdt_save_masks(ss->mask_path, s->L, s->n_ch, s->n_st, s->channels, s->a_flat);
    PEFTC_TRY(comm_agree(comm, st));
    snprintf(report, cap, "sdt: %d of %d channels and %d of %d states per channel selected after %lld warm-up steps, "
             "saved to %s; training again from step 0 with them", s->n_ch, s->D, s->n_st, s->N,
             (long long)ss->warmup, ss->mask_path);
    *restart = 1;
    return PEFTC_OK;
}

/* The selection, checked on resume: a checkpoint continues only the run that chose it. */
static PeftcStatus state(const MethodConfig *mc, const Model *m, MethodStateSink sink, void *user) {
    (void)m;
    const SdtState *s = mc->state;
    if (s->warmup) return PEFTC_OK;
    size_t n = (size_t)s->L * s->n_ch * s->n_st;
    int64_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint: out of memory for the sdt selection");
    memcpy(copy, s->a_flat, n * sizeof *copy);
    return sink(user, "sdt/A_log_index", CKPT_I64, copy, n);
}

/* The dense delta of one base tensor from a sparse one: d (rows, cols) on the backend, then the host. */
static PeftcStatus dense_delta(const Backend *be, const int32_t *row_ptr, const int32_t *col_idx,
                               const real_t *values, int rows, int cols, real_t *dev, real_t *host) {
    size_t n = (size_t)rows * cols;
    be->zero(be, dev, n);
    be->csr_add_dense(be, dev, row_ptr, col_idx, values, rows, cols, 1);
    be->download(be, host, dev, n * sizeof *host);
    return be->status(be);
}

/* Each layer's trained deltas of A_log and x_proj.weight, dense, for peftc merge. */
static PeftcStatus add_layer_deltas(const SdtState *s, BaseDeltas *bd, int l, real_t *dev, real_t *host) {
    const Backend *be = s->m->base.be;
    const MambaLayer *Ly = &s->m->layers[l];
    const ParamRef *A = NULL, *X = NULL;
    for (int i = 0; i < s->m->base.n_refs; i++) {
        if (s->m->base.refs[i].data == &Ly->A_log) A = &s->m->base.refs[i];
        if (s->m->base.refs[i].data == &Ly->x_proj.W) X = &s->m->base.refs[i];
    }
    if (!A || !X) return PEFTC_ERR(PEFTC_ESTATE, "sdt: layer %d's A_log or x_proj has no base tensor entry", l);
    PEFTC_TRY(dense_delta(be, s->A[l].pat.row_ptr, s->A[l].pat.col_idx, s->A[l].values, s->D, s->N, dev, host));
    PEFTC_TRY(base_deltas_add(bd, A, host));
    const Adapter *ad = Ly->x_proj.adapter;
    if (s->warmup || !ad) return PEFTC_OK;
    int out = Ly->x_proj.out, in = Ly->x_proj.in;
    int64_t nnz = rosa_layer_nnz(ad);
    int32_t *rp = malloc((size_t)(out + 1) * sizeof *rp), *ci = malloc((size_t)(nnz + 1) * sizeof *ci);
    real_t *v = malloc((size_t)(nnz + 1) * sizeof *v);
    int32_t *drp = be->alloc(be, (size_t)(out + 1) * sizeof *drp), *dci = be->alloc(be, (size_t)(nnz + 1) * sizeof *dci);
    real_t *dv = be->alloc(be, (size_t)(nnz + 1) * sizeof *dv);
    PeftcStatus st = rp && ci && v && drp && dci && dv ? rosa_export_sparse(ad, rp, ci, v)
                                                      : PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory for x_proj's delta");
    if (st == PEFTC_OK) {
        be->upload(be, drp, rp, (size_t)(out + 1) * sizeof *rp);
        be->upload(be, dci, ci, (size_t)nnz * sizeof *ci);
        be->upload(be, dv, v, (size_t)nnz * sizeof *v);
        st = dense_delta(be, drp, dci, dv, out, in, dev, host);
    }
    if (st == PEFTC_OK) st = base_deltas_add(bd, X, host);
    free(rp), free(ci), free(v);
    be->free(be, drp), be->free(be, dci), be->free(be, dv);
    return st;
}

/* SDLoRA's LoRA as a PEFT folder, and beside it base_deltas.safetensors: every layer's trained A_log and
 * x_proj deltas, dense, which peftc merge adds to the base (adapters/formats/base_deltas.h). */
static PeftcStatus export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    const SdtState *s = mc->state;
    if (mc->desc == &sdlora_method) PEFTC_TRY(peft_save(m, &lora_settings_c(&mc->settings)->lora, base_name, dir));
    PEFTC_TRY(fs_mkdir_p(dir));
    char path[700];
    snprintf(path, sizeof path, "%s/base_deltas.safetensors", dir);
    const Backend *be = s->m->base.be;
    size_t most = 0;
    for (int l = 0; l < s->L; l++) {
        const Linear *x = &s->m->layers[l].x_proj;
        size_t n = (size_t)x->out * x->in > (size_t)s->D * s->N ? (size_t)x->out * x->in : (size_t)s->D * s->N;
        most = n > most ? n : most;
    }
    BaseDeltas *bd = NULL;
    real_t *host = malloc(most * sizeof *host), *dev = be->alloc(be, most * sizeof *dev);
    PeftcStatus st = host && dev ? base_deltas_new(&bd) : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    for (int l = 0; l < s->L && st == PEFTC_OK; l++) st = add_layer_deltas(s, bd, l, dev, host);
    if (st == PEFTC_OK) st = base_deltas_write(bd, path);
    base_deltas_free(bd);
    free(host);
    be->free(be, dev);
    return st;
}

#define SDT_FAMILY(n, h)                                                                                        \
    const MethodDesc n##_method = {.name = #n, .help = h,                                                       \
                                   .sections = (const MethodSection *const[]){&lora_section, &sdt_section, NULL}, \
                                   .attach = attach, .init = init, .prepare = prepare, .state = state,          \
                                   .export = export, .release = release, .ops = rosa_sparse_ops,                \
                                   .n_ops = ROSA_SPARSE_OPS}

SDT_FAMILY(sdt, "Mamba: sparse dimension tuning of A_log and x_proj's B, C");
SDT_FAMILY(sdlora, "Mamba: SDT plus LoRA on out_proj");
