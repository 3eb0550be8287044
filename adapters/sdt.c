/* SDT's selection (adapters/sdt.h) and its file. */
#include "adapters/sdt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/formats/safetensors.h"
#include "core/nn/csr.h"

int sdt_kept(double f, int n) { return n - (int)lround(f * n); }

PeftcStatus sdt_select(const float *delta, int D, int N, int n_ch, int n_st, int32_t *channels, int64_t *a_flat) {
    float *score = malloc((size_t)D * sizeof *score), *row = malloc((size_t)N * sizeof *row);
    int64_t *pick = malloc((size_t)(D > N ? D : N) * sizeof *pick);
    PeftcStatus st = score && row && pick ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "sdt: out of memory selecting");
    for (int d = 0; st == PEFTC_OK && d < D; d++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += (double)delta[(size_t)d * N + n] * delta[(size_t)d * N + n];
        score[d] = (float)s;
    }
    if (st == PEFTC_OK) st = csr_topk_flat(score, D, n_ch, pick);
    for (int i = 0; st == PEFTC_OK && i < n_ch; i++) {
        int d = (int)pick[i];
        channels[i] = d;
        for (int n = 0; n < N; n++) row[n] = delta[(size_t)d * N + n] * delta[(size_t)d * N + n];
        int64_t states[4096];
        if (n_st > 4096) st = PEFTC_ERR(PEFTC_EINVAL, "sdt: %d states kept per channel, at most 4096", n_st);
        if (st == PEFTC_OK) st = csr_topk_flat(row, N, n_st, states);
        for (int k = 0; st == PEFTC_OK && k < n_st; k++) a_flat[(size_t)i * n_st + k] = (int64_t)d * N + states[k];
    }
    free(score);
    free(row);
    free(pick);
    return st;
}

void sdt_xproj_flat(const int32_t *channels, int n_ch, int R, int N, int D, int64_t *out) {
    size_t k = 0;
    for (int r = R; r < R + 2 * N; r++)
        for (int i = 0; i < n_ch; i++) out[k++] = (int64_t)r * D + channels[i];
}

static void layer_name(char *buf, size_t n, int l, const char *leaf) {
    snprintf(buf, n, "backbone.layers.%d.mixer.%s", l, leaf);
}

PeftcStatus sdt_save_masks(const char *path, int L, int n_ch, int n_st, const int32_t *channels, const int64_t *a_flat) {
    StWriter *w = st_writer_new();
    int32_t *idx = malloc(((size_t)n_ch * n_st + 1) * sizeof *idx);
    PeftcStatus st = w && idx ? st_writer_meta(w, "format", "peftc-sdt") : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    for (int l = 0; l < L && st == PEFTC_OK; l++) {
        char name[128];
        Shape sc = shape1(n_ch), sa = shape1((int64_t)n_ch * n_st);
        layer_name(name, sizeof name, l, "sdt_channels");
        st = st_writer_add_i32(w, name, &sc, channels + (size_t)l * n_ch);
        for (int64_t i = 0; i < (int64_t)n_ch * n_st; i++) idx[i] = (int32_t)a_flat[(size_t)l * n_ch * n_st + i];
        layer_name(name, sizeof name, l, "A_log.sdt_index");
        if (st == PEFTC_OK) st = st_writer_add_i32(w, name, &sa, idx);
    }
    if (st == PEFTC_OK) st = st_write(w, path);
    st_writer_free(w);
    free(idx);
    return st;
}

static PeftcStatus read_i32(const StFile *f, const char *path, const char *name, int64_t n, int32_t *out) {
    const StTensor *t = st_find(f, name);
    if (!t)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing; the selection was made for another model or "
                         "other sdt.f_ch / sdt.f_st", path, name);
    Shape want = shape1(n);
    return st_read_i32(f, t, &want, out);
}

PeftcStatus sdt_load_masks(const char *path, int L, int n_ch, int n_st, int32_t *channels, int64_t *a_flat) {
    StFile f;
    PEFTC_TRY(st_open(&f, path));
    int32_t *idx = malloc(((size_t)n_ch * n_st + 1) * sizeof *idx);
    PeftcStatus st = idx ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    for (int l = 0; l < L && st == PEFTC_OK; l++) {
        char name[128];
        layer_name(name, sizeof name, l, "sdt_channels");
        st = read_i32(&f, path, name, n_ch, channels + (size_t)l * n_ch);
        layer_name(name, sizeof name, l, "A_log.sdt_index");
        if (st == PEFTC_OK) st = read_i32(&f, path, name, (int64_t)n_ch * n_st, idx);
        for (int64_t i = 0; st == PEFTC_OK && i < (int64_t)n_ch * n_st; i++)
            a_flat[(size_t)l * n_ch * n_st + i] = idx[i];
    }
    free(idx);
    st_close(&f);
    return st;
}
