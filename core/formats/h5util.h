/* Thin HDF5 helpers for the checkpoint: scalar and array attributes, and whole 1-D datasets that carry
 * a CRC32 of their raw bytes. Every failure names the file and the object. HDF5's own error printing is
 * switched off; its failures come back as PeftcStatus like everything else. */
#ifndef PEFTC_H5UTIL_H
#define PEFTC_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

/* HDF5 never prints; call before the first HDF5 call of a command. */
void h5_quiet(void);

/* CRC32 (zlib's polynomial) of n bytes; _update continues crc over more bytes (start from 0). */
uint32_t h5_crc32(const void *data, size_t n);
uint32_t h5_crc32_update(uint32_t crc, const void *data, size_t n);

PeftcStatus h5_attr_str(hid_t obj, const char *file, const char *name, const char *value);
PeftcStatus h5_attr_i64(hid_t obj, const char *file, const char *name, const int64_t *v, size_t n);
/* n fixed-length strings of width bytes each (names[i] at names + i * width). */
PeftcStatus h5_attr_strs(hid_t obj, const char *file, const char *name, const char *names, size_t n, size_t width);

/* Reads a string attribute into a fresh malloc'ed buffer. */
PeftcStatus h5_read_attr_str(hid_t obj, const char *file, const char *name, char **out);
/* Reads exactly n int64 values (1 means a scalar or a 1-element array). */
PeftcStatus h5_read_attr_i64(hid_t obj, const char *file, const char *name, int64_t *v, size_t n);
/* Reads n fixed-length strings into names (n * width bytes, each NUL-terminated within width). */
PeftcStatus h5_read_attr_strs(hid_t obj, const char *file, const char *name, char *names, size_t n, size_t width);

/* A file built in memory. HDF5 1.10 cannot recover from a failed write on disk (a full disk): the file
 * stays half-closed and the library crashes at exit. So files are built with the core driver and no
 * backing store, and the caller writes the finished image with ordinary writes, whose errors come back
 * with their OS reason. The buffer is handed over at H5Fclose (no copy): free it with free(). */
typedef struct {
    void *buf;    /* the image after H5Fclose, NULL before */
    size_t size;  /* bytes allocated; after h5_image_finish, bytes that make the file */
} H5Image;
/* A file-access property list (newest format) whose files live in memory and hand their buffer to
 * img when closed; `expected` bytes is the first allocation (it grows as needed). -1 on failure. */
hid_t h5_image_fapl(H5Image *img, size_t expected);
/* After H5Fclose: sets img->size to the file's length as its superblock records it. */
PeftcStatus h5_image_finish(H5Image *img, const char *file);

/* A creation property list of `cls` (H5P_FILE_CREATE, H5P_GROUP_CREATE, H5P_DATASET_CREATE) that records
 * no timestamps, so the same state always makes the same bytes. -1 on failure. */
hid_t h5_untimed(hid_t cls);
/* Creates the group named by the first len characters of `path` (absolute) and any missing parents,
 * all untimed; existing ones are left as they are. */
PeftcStatus h5_make_groups(hid_t file_id, const char *file, const char *path, size_t len);
/* Writes data (n elements of type, elem bytes each) as the 1-D dataset `path` (missing parent groups
 * created) with its crc32 attribute; untimed. */
PeftcStatus h5_write_array(hid_t file_id, const char *file, const char *path, hid_t type, const void *data, size_t n,
                           size_t elem);
/* The element count of dataset `path`, checking its element class/size matches type. */
PeftcStatus h5_array_len(hid_t file_id, const char *file, const char *path, hid_t type, size_t *n);
/* Reads the whole dataset `path` (n elements, from h5_array_len) into data and checks its crc32. */
PeftcStatus h5_read_array(hid_t file_id, const char *file, const char *path, hid_t type, void *data, size_t n,
                          size_t elem);

#endif
