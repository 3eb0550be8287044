/* A reader of TensorBoard event files for the tests (test_tensorboard, tfevents_dump): TFRecord framing
 * with both CRCs checked, and the Event fields peftc writes decoded by a generic protobuf walk that skips
 * whatever else a file holds. */
#ifndef PEFTC_TFEVENTS_READER_H
#define PEFTC_TFEVENTS_READER_H

#include <stdint.h>
#include <string.h>

#include "core/base/crc32c.h"

enum { TFR_MAX_SCALARS = 8 };

typedef struct {
    double wall_time;
    int64_t step;
    char version[32]; /* file_version, "" when absent */
    int start;        /* a SessionLog with status START */
    int n;            /* scalars in its Summary */
    char tags[TFR_MAX_SCALARS][160];
    float values[TFR_MAX_SCALARS];
} TfrEvent;

typedef struct {
    int field, wire;
    uint64_t num;        /* varint and fixed fields */
    const uint8_t *data; /* length-delimited fields */
    uint64_t len;
} TfrField;

static inline uint64_t tfr_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline int tfr_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* The next field at *p; -1 when it runs past end or has a wire type this reader does not know. */
static inline int tfr_field(const uint8_t **p, const uint8_t *end, TfrField *f) {
    uint64_t key;
    if (tfr_varint(p, end, &key)) return -1;
    f->field = (int)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0: return tfr_varint(p, end, &f->num);
    case 1:
    case 5: {
        int bytes = f->wire == 1 ? 8 : 4;
        if (end - *p < bytes) return -1;
        f->num = tfr_le(*p, bytes);
        *p += bytes;
        return 0;
    }
    case 2:
        if (tfr_varint(p, end, &f->len) || (uint64_t)(end - *p) < f->len) return -1;
        f->data = *p;
        *p += f->len;
        return 0;
    default: return -1;
    }
}

/* One Summary.Value into e's next slot. */
static inline const char *tfr_value(const uint8_t *p, const uint8_t *end, TfrEvent *e) {
    if (e->n == TFR_MAX_SCALARS) return "too many values in one summary";
    TfrField f;
    int i = e->n++;
    e->tags[i][0] = '\0';
    e->values[i] = 0;
    while (p < end) {
        if (tfr_field(&p, end, &f)) return "bad field in a Summary.Value";
        if (f.field == 1 && f.wire == 2 && f.len < sizeof e->tags[i]) {
            memcpy(e->tags[i], f.data, f.len);
            e->tags[i][f.len] = '\0';
        } else if (f.field == 2 && f.wire == 5) {
            uint32_t bits = (uint32_t)f.num;
            memcpy(&e->values[i], &bits, sizeof bits);
        }
    }
    return NULL;
}

static inline const char *tfr_event(const uint8_t *p, const uint8_t *end, TfrEvent *e) {
    memset(e, 0, sizeof *e);
    TfrField f, g;
    while (p < end) {
        if (tfr_field(&p, end, &f)) return "bad field in an Event";
        if (f.field == 1 && f.wire == 1) {
            memcpy(&e->wall_time, &f.num, sizeof e->wall_time);
        } else if (f.field == 2 && f.wire == 0) {
            e->step = (int64_t)f.num;
        } else if (f.field == 3 && f.wire == 2 && f.len < sizeof e->version) {
            memcpy(e->version, f.data, f.len);
            e->version[f.len] = '\0';
        } else if (f.field == 5 && f.wire == 2) {
            for (const uint8_t *q = f.data, *qe = f.data + f.len; q < qe;) {
                if (tfr_field(&q, qe, &g)) return "bad field in a Summary";
                const char *why = g.field == 1 && g.wire == 2 ? tfr_value(g.data, g.data + g.len, e) : NULL;
                if (why) return why;
            }
        } else if (f.field == 7 && f.wire == 2) {
            for (const uint8_t *q = f.data, *qe = f.data + f.len; q < qe;) {
                if (tfr_field(&q, qe, &g)) return "bad field in a SessionLog";
                if (g.field == 1 && g.wire == 0) e->start = g.num == 1;
            }
        }
    }
    return NULL;
}

/* The record at *pos of buf (n bytes): 1 with *e filled and *pos moved past it; 0 at the end; -1 with
 * *why when it is truncated, fails a CRC or does not decode. */
static inline int tfr_next(const uint8_t *buf, size_t n, size_t *pos, TfrEvent *e, const char **why) {
    if (*pos == n) return 0;
    const uint8_t *r = buf + *pos;
    size_t left = n - *pos;
    *why = NULL;
    if (left < 12) *why = "truncated record header";
    else if ((uint32_t)tfr_le(r + 8, 4) != crc32c_masked(r, 8)) *why = "the length's CRC does not match";
    else if (left < 16 || left - 16 < tfr_le(r, 8)) *why = "truncated record";
    if (*why) return -1;
    size_t len = (size_t)tfr_le(r, 8);
    if ((uint32_t)tfr_le(r + 12 + len, 4) != crc32c_masked(r + 12, len)) *why = "the payload's CRC does not match";
    else *why = tfr_event(r + 12, r + 12 + len, e);
    if (*why) return -1;
    *pos += 16 + len;
    return 1;
}

#endif
