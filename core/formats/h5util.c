/* HDF5 helpers (see h5util.h). Each function closes every handle it opens, on every path. */
#include "core/formats/h5util.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

uint32_t h5_crc32_update(uint32_t crc, const void *data, size_t n) {
    return (uint32_t)crc32_z(crc, (const Bytef *)data, (z_size_t)n);
}

uint32_t h5_crc32(const void *data, size_t n) { return h5_crc32_update(0, data, n); }

/* Creates and writes one attribute of memory type mtype over dataspace space; closes space. */
static PeftcStatus put_attr(hid_t obj, const char *file, const char *name, hid_t ftype, hid_t mtype, hid_t space,
                            const void *data) {
    hid_t at = space < 0 ? -1 : H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = at < 0 ? -1 : H5Awrite(at, mtype, data);
    if (at >= 0) H5Aclose(at);
    if (space >= 0) H5Sclose(space);
    if (w < 0) return PEFTC_ERR(PEFTC_EWRITE, "checkpoint '%s': cannot write attribute '%s'", file, name);
    return PEFTC_OK;
}

static hid_t fixed_string(size_t width) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, width ? width : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

PeftcStatus h5_attr_str(hid_t obj, const char *file, const char *name, const char *value) {
    hid_t t = fixed_string(strlen(value) + 1);
    if (t < 0) return PEFTC_ERR(PEFTC_EIO, "checkpoint '%s': cannot make a string type for '%s'", file, name);
    PeftcStatus st = put_attr(obj, file, name, t, t, H5Screate(H5S_SCALAR), value);
    H5Tclose(t);
    return st;
}

PeftcStatus h5_attr_i64(hid_t obj, const char *file, const char *name, const int64_t *v, size_t n) {
    hsize_t dims[1] = {n};
    hid_t space = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    return put_attr(obj, file, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space, v);
}

PeftcStatus h5_attr_strs(hid_t obj, const char *file, const char *name, const char *names, size_t n, size_t width) {
    hid_t t = fixed_string(width);
    if (t < 0) return PEFTC_ERR(PEFTC_EIO, "checkpoint '%s': cannot make a string type for '%s'", file, name);
    hsize_t dims[1] = {n};
    PeftcStatus st = put_attr(obj, file, name, t, t, H5Screate_simple(1, dims, NULL), names);
    H5Tclose(t);
    return st;
}

/* Opens attribute `name` and checks it holds n elements of class cls; returns it or -1 with an error. */
static hid_t open_attr(hid_t obj, const char *file, const char *name, H5T_class_t cls, size_t n, PeftcStatus *st) {
    hid_t at = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    if (at < 0) {
        *st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': attribute '%s' is missing", file, name);
        return -1;
    }
    hid_t t = H5Aget_type(at), space = H5Aget_space(at);
    hssize_t count = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    int ok = t >= 0 && H5Tget_class(t) == cls && count == (hssize_t)n;
    if (t >= 0) H5Tclose(t);
    if (space >= 0) H5Sclose(space);
    if (!ok) {
        H5Aclose(at);
        *st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': attribute '%s' has the wrong type or size (expected %zu)",
                        file, name, n);
        return -1;
    }
    return at;
}

PeftcStatus h5_read_attr_str(hid_t obj, const char *file, const char *name, char **out) {
    PeftcStatus st = PEFTC_OK;
    hid_t at = open_attr(obj, file, name, H5T_STRING, 1, &st);
    if (at < 0) return st;
    hid_t ft = H5Aget_type(at);
    size_t width = ft >= 0 && H5Tis_variable_str(ft) == 0 ? H5Tget_size(ft) : 0;
    if (ft >= 0) H5Tclose(ft);
    hid_t t = width ? fixed_string(width) : -1;
    char *buf = width ? calloc(width + 1, 1) : NULL;
    if (!buf || t < 0 || H5Aread(at, t, buf) < 0) {
        free(buf);
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': attribute '%s' is not a readable fixed-length string", file,
                       name);
    } else {
        *out = buf;
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(at);
    return st;
}

PeftcStatus h5_read_attr_i64(hid_t obj, const char *file, const char *name, int64_t *v, size_t n) {
    PeftcStatus st = PEFTC_OK;
    hid_t at = open_attr(obj, file, name, H5T_INTEGER, n, &st);
    if (at < 0) return st;
    if (H5Aread(at, H5T_NATIVE_INT64, v) < 0)
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': attribute '%s' cannot be read", file, name);
    H5Aclose(at);
    return st;
}

PeftcStatus h5_read_attr_strs(hid_t obj, const char *file, const char *name, char *names, size_t n, size_t width) {
    PeftcStatus st = PEFTC_OK;
    hid_t at = open_attr(obj, file, name, H5T_STRING, n, &st);
    if (at < 0) return st;
    hid_t t = fixed_string(width);
    if (t < 0 || H5Aread(at, t, names) < 0)
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': attribute '%s' cannot be read as %zu strings", file, name, n);
    for (size_t i = 0; st == PEFTC_OK && i < n; i++) names[i * width + width - 1] = '\0';
    if (t >= 0) H5Tclose(t);
    H5Aclose(at);
    return st;
}

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    void *p = malloc(size);
    if (p) ((H5Image *)udata)->size = size;
    return p;
}

static void *image_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op, (void)udata;
    return memcpy(dst, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    void *p = realloc(ptr, size);
    if (p) ((H5Image *)udata)->size = size;
    return p;
}

/* The closing file's buffer is kept for the caller; every other one is freed. */
static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
    H5Image *img = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !img->buf) img->buf = ptr;
    else free(ptr);
    return 0;
}

/* The property lists copy udata by reference: img outlives them. */
static void *udata_copy(void *udata) { return udata; }
static herr_t udata_free(void *udata) {
    (void)udata;
    return 0;
}

hid_t h5_image_fapl(H5Image *img, size_t expected) {
    img->buf = NULL;
    img->size = 0;
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free, udata_copy, udata_free,
                                      img};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_fapl_core(fapl, expected ? expected : 1 << 16, 0) < 0 || H5Pset_file_image_callbacks(fapl, &cb) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

/* The end-of-file address a version 2 or 3 superblock (the newest format's) records: closing a file
 * frees its unused metadata space and may lower it below the size of the buffer. Layout: signature
 * (8 bytes), version, size of offsets, size of lengths, flags, then base address, extension address
 * and end-of-file address, each "size of offsets" bytes, little-endian. */
PeftcStatus h5_image_finish(H5Image *img, const char *file) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    const unsigned char *p = img->buf;
    if (!p || img->size < 12 || memcmp(p, sig, 8) != 0 || (p[8] != 2 && p[8] != 3) || p[9] != 8)
        return PEFTC_ERR(PEFTC_ESTATE, "'%s': the HDF5 image in memory has no version 2/3 superblock", file);
    if (img->size < 12 + 3 * 8) return PEFTC_ERR(PEFTC_ESTATE, "'%s': the HDF5 image in memory is too short", file);
    uint64_t eoa = 0;
    for (int i = 7; i >= 0; i--) eoa = eoa << 8 | p[12 + 2 * 8 + i];
    if (eoa == 0 || eoa > img->size)
        return PEFTC_ERR(PEFTC_ESTATE, "'%s': the HDF5 image records %llu bytes of %zu", file, (unsigned long long)eoa,
                         img->size);
    img->size = (size_t)eoa;
    return PEFTC_OK;
}

hid_t h5_untimed(hid_t cls) {
    hid_t pl = H5Pcreate(cls);
    if (pl >= 0 && H5Pset_obj_track_times(pl, 0) < 0) {
        H5Pclose(pl);
        return -1;
    }
    return pl;
}

PeftcStatus h5_make_groups(hid_t file_id, const char *file, const char *path, size_t len) {
    char part[1024];
    if (len >= sizeof part)
        return PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s': group path '%s' is too long", file, path);
    memcpy(part, path, len);
    part[len] = '\0';
    hid_t gcpl = h5_untimed(H5P_GROUP_CREATE);
    PeftcStatus st = gcpl < 0 ? PEFTC_ERR(PEFTC_EIO, "checkpoint '%s': HDF5 property list failed", file) : PEFTC_OK;
    /* Each prefix ending before a '/' (and the whole path), from the root down. */
    for (char *slash = part + 1; st == PEFTC_OK; slash++) {
        if (*slash != '/' && *slash != '\0') continue;
        char end = *slash;
        *slash = '\0';
        if (H5Lexists(file_id, part, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(file_id, part, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            if (g < 0) st = PEFTC_ERR(PEFTC_EWRITE, "checkpoint '%s': cannot create group '%s'", file, part);
            else H5Gclose(g);
        }
        *slash = end;
        if (end == '\0') break;
    }
    if (gcpl >= 0) H5Pclose(gcpl);
    return st;
}

PeftcStatus h5_write_array(hid_t file_id, const char *file, const char *path, hid_t type, const void *data, size_t n,
                           size_t elem) {
    const char *leaf = strrchr(path, '/');
    if (leaf && leaf != path) PEFTC_TRY(h5_make_groups(file_id, file, path, (size_t)(leaf - path)));
    hsize_t dims[1] = {n};
    hid_t dcpl = h5_untimed(H5P_DATASET_CREATE);
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = dcpl < 0 || space < 0 ? -1 : H5Dcreate2(file_id, path, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t w = ds < 0 ? -1 : n == 0 ? 0 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    PeftcStatus st = PEFTC_OK;
    if (w < 0) st = PEFTC_ERR(PEFTC_EWRITE, "checkpoint '%s': cannot write dataset '%s' (%zu elements)", file, path, n);
    int64_t crc = h5_crc32(data, n * elem);
    if (st == PEFTC_OK) st = h5_attr_i64(ds, file, "crc32", &crc, 1);
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    return st;
}

PeftcStatus h5_array_len(hid_t file_id, const char *file, const char *path, hid_t type, size_t *n) {
    hid_t ds = H5Lexists(file_id, path, H5P_DEFAULT) > 0 ? H5Dopen2(file_id, path, H5P_DEFAULT) : -1;
    if (ds < 0) return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' is missing", file, path);
    hid_t t = H5Dget_type(ds), space = H5Dget_space(ds);
    /* Checkpoints hold numbers only: a string, variable-length or compound dataset read whole would hand
     * back memory HDF5 allocated (and pointers to CRC). */
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int ok = (cls == H5T_INTEGER || cls == H5T_FLOAT) && cls == H5Tget_class(type) &&
             H5Tget_size(t) == H5Tget_size(type) && space >= 0 && H5Sget_simple_extent_ndims(space) == 1;
    hssize_t count = ok ? H5Sget_simple_extent_npoints(space) : -1;
    /* The extent is only a declaration: what the file stores must back it before anything is sized by it
     * (peftc writes every dataset whole and uncompressed). */
    hsize_t stored = ok ? H5Dget_storage_size(ds) : 0;
    size_t elem = H5Tget_size(type);
    if (t >= 0) H5Tclose(t);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    if (!ok || count < 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' is not a 1-D array of the expected type", file,
                         path);
    if ((uint64_t)count > (uint64_t)stored / (elem ? elem : 1))
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' declares %lld elements of %zu bytes but stores "
                         "%llu bytes (expected the whole array, uncompressed)", file, path, (long long)count, elem,
                         (unsigned long long)stored);
    *n = (size_t)count;
    return PEFTC_OK;
}

PeftcStatus h5_read_array(hid_t file_id, const char *file, const char *path, hid_t type, void *data, size_t n,
                          size_t elem) {
    size_t have;
    PEFTC_TRY(h5_array_len(file_id, file, path, type, &have));
    if (have != n)
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' holds %zu elements, expected %zu", file, path,
                         have, n);
    hid_t ds = H5Dopen2(file_id, path, H5P_DEFAULT);
    herr_t r = ds < 0 ? -1 : n == 0 ? 0 : H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    int64_t stored = -1;
    PeftcStatus st = r < 0 ? PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' cannot be read", file, path)
                           : h5_read_attr_i64(ds, file, "crc32", &stored, 1);
    if (ds >= 0) H5Dclose(ds);
    if (st != PEFTC_OK) return st;
    uint32_t crc = h5_crc32(data, n * elem);
    if ((int64_t)crc != stored)
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' fails its CRC32 check (stored %08llx, computed "
                         "%08x): the file is corrupt", file, path, (unsigned long long)stored, crc);
    return PEFTC_OK;
}
