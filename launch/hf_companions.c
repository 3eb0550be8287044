/* The files beside a saved HF folder's config.json and weights (hf_companions.h). */
#include "launch/hf_companions.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/fsutil.h"
#include "core/base/mapped.h"
#include "core/formats/json_file.h"
#include "core/models/hf_folder.h"

static int is_dir(const char *p) {
    struct stat sb;
    return p[0] && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* from/name copied to dir/name when it exists; *copied says whether it did. */
static PeftcStatus copy_file(const char *from, const char *name, const char *dir, int *copied) {
    char src[1100], dst[1100];
    snprintf(src, sizeof src, "%s/%s", from, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    *copied = hf_is_file(src);
    if (!*copied) return PEFTC_OK;
    MappedFile f;
    PEFTC_TRY(mapped_open(&f, src));
    PeftcStatus st = fs_write_atomic(dst, f.data, f.size);
    mapped_close(&f);
    return st;
}

/* The folder the run's tokenizer came from (data.tokenizer, a tokenizer.json's folder, or the model
 * folder), or "" for a GGUF's. */
static void tokenizer_folder(const RunConfig *c, char *out, size_t n) {
    const char *from = c->tokenizer_path[0] ? c->tokenizer_path : c->model_path;
    out[0] = '\0';
    if (is_dir(from)) {
        snprintf(out, n, "%s", from);
    } else if (strlen(from) > 5 && strcmp(from + strlen(from) - 5, ".json") == 0) {
        snprintf(out, n, "%s", from);
        char *slash = strrchr(out, '/');
        if (slash) *slash = '\0';
        else snprintf(out, n, ".");
    }
}

static PeftcStatus write_tokenizer(const Session *s, const char *dir) {
    char from[1024];
    tokenizer_folder(&s->cfg, from, sizeof from);
    int copied = 0, extra;
    if (from[0]) PEFTC_TRY(copy_file(from, "tokenizer.json", dir, &copied));
    if (copied) {
        PEFTC_TRY(copy_file(from, "tokenizer_config.json", dir, &extra));
        return copy_file(from, "special_tokens_map.json", dir, &extra);
    }
    return s->tok ? tok_write_hf(s->tok, dir, s->info.context_length) : PEFTC_OK;
}

static void set_id(cJSON *j, const char *key, int id) {
    if (cJSON_GetObjectItemCaseSensitive(j, key)) return;
    if (id >= 0) cJSON_AddNumberToObject(j, key, id);
    else cJSON_AddNullToObject(j, key);
}

/* The token ids (and for decoders with positions, the context length) transformers falls back on
 * defaults for when config.json lacks them: bos 1, eos 2, and 2048 positions. */
static void complete_config(const Session *s, cJSON *j) {
    int bos = s->tok ? tok_bos(s->tok) : -1, eos = s->tok ? tok_eos(s->tok) : -1;
    set_id(j, "bos_token_id", bos);
    set_id(j, "eos_token_id", eos);
    set_id(j, "pad_token_id", -1);
    if (s->info.context_length > 0 && !strcmp(s->model->ops->family, "llama") &&
        !cJSON_GetObjectItemCaseSensitive(j, "max_position_embeddings"))
        cJSON_AddNumberToObject(j, "max_position_embeddings", (double)s->info.context_length);
}

/* The base folder's ids and context length where it has them, else the tokenizer's. */
static PeftcStatus patch_config(const Session *s, const char *dir) {
    char path[1100], src[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j, *base = NULL;
    PEFTC_TRY(json_read_object(path, &j));
    snprintf(src, sizeof src, "%s/config.json", s->cfg.model_path);
    if (is_dir(s->cfg.model_path) && hf_is_file(src) && json_read_object(src, &base) == PEFTC_OK) {
        static const char *keep[] = {"bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings"};
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(base, keep[k]);
            if (v && !cJSON_GetObjectItemCaseSensitive(j, keep[k]))
                cJSON_AddItemToObject(j, keep[k], cJSON_Duplicate(v, 1));
        }
        cJSON_Delete(base);
    }
    peftc_err_clear();
    complete_config(s, j);
    return json_write_object(path, j);
}

static PeftcStatus write_generation_config(const Session *s, const char *dir) {
    int copied = 0;
    if (is_dir(s->cfg.model_path)) PEFTC_TRY(copy_file(s->cfg.model_path, "generation_config.json", dir, &copied));
    if (copied) return PEFTC_OK;
    char path[1100];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    cJSON *j = cJSON_CreateObject();
    int bos = s->tok ? tok_bos(s->tok) : -1, eos = s->tok ? tok_eos(s->tok) : -1;
    if (bos >= 0) cJSON_AddNumberToObject(j, "bos_token_id", bos);
    if (eos >= 0) cJSON_AddNumberToObject(j, "eos_token_id", eos);
    return json_write_object(path, j);
}

PeftcStatus hf_companions_write(const Session *s, const char *dir) {
    PEFTC_TRY(write_tokenizer(s, dir));
    PEFTC_TRY(patch_config(s, dir));
    return write_generation_config(s, dir);
}
