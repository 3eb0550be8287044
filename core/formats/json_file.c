#include "core/formats/json_file.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/mapped.h"

PeftcStatus json_read_object(const char *path, cJSON **out) {
    MappedFile f;
    PEFTC_TRY(mapped_open(&f, path));
    const char *text = (const char *)f.data, *end = text;
    *out = f.size ? cJSON_ParseWithLengthOpts(text, f.size, &end, 0) : NULL;
    while (*out && end < text + f.size && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    long long at = end ? (long long)(end - text) : 0;
    int whole = *out && end == text + f.size;
    mapped_close(&f);
    if (whole && cJSON_IsObject(*out)) return PEFTC_OK;
    cJSON_Delete(*out);
    *out = NULL;
    if (!whole) return PEFTC_ERR(PEFTC_EFORMAT, "%s: not valid JSON (error near byte %lld)", path, at);
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: expected a JSON object", path);
}

PeftcStatus json_write_object(const char *path, cJSON *j) {
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory writing JSON", path);
    PeftcStatus st = fs_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}
