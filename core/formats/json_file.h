/* A whole file read as one JSON object (config.json and friends), through a memory map. */
#ifndef PEFTC_JSON_FILE_H
#define PEFTC_JSON_FILE_H

#include <cjson/cJSON.h>

#include "core/base/status.h"

/* *out = the object the file holds (the caller cJSON_Deletes it). EIO when it cannot be read,
 * EFORMAT naming the path and the byte near a parse error, or when it is not an object. */
PeftcStatus json_read_object(const char *path, cJSON **out);
/* j printed (formatted) into path, atomically, then freed (NULL j: out of memory while building it). */
PeftcStatus json_write_object(const char *path, cJSON *j);

#endif
