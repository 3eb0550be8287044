/* The event record encoder: protobuf varints, fixed64/fixed32 and length-delimited fields. */
#include "core/formats/tfevents.h"

#include <string.h>

#include "core/base/crc32c.h"

/* Room for the record's 12-byte header comes first; len keeps counting past cap so the caller sees
 * how much was needed, while nothing is written beyond cap. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} Out;

enum { HEADER = 12, WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };

static void put(Out *o, const void *src, size_t n) {
    if (o->len + n <= o->cap) memcpy(o->p + o->len, src, n);
    o->len += n;
}

static void put_byte(Out *o, uint8_t b) { put(o, &b, 1); }

static void put_le(Out *o, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) put_byte(o, (uint8_t)(v >> (8 * i)));
}

static void put_varint(Out *o, uint64_t v) {
    for (; v >= 0x80; v >>= 7) put_byte(o, (uint8_t)(v | 0x80));
    put_byte(o, (uint8_t)v);
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    for (; v >= 0x80; v >>= 7) n++;
    return n;
}

/* Every field number used here is below 16, so its key is one byte. */
static void put_key(Out *o, int field, int wire) { put_byte(o, (uint8_t)(field << 3 | wire)); }

static void put_string(Out *o, int field, const char *s, size_t n) {
    put_key(o, field, WIRE_BYTES);
    put_varint(o, n);
    put(o, s, n);
}

/* The Event fields every record has. */
static Out begin(uint8_t *buf, size_t cap, double wall_time, int64_t step) {
    Out o = {buf, HEADER, cap};
    uint64_t bits;
    memcpy(&bits, &wall_time, sizeof bits);
    put_key(&o, 1, WIRE_FIXED64);
    put_le(&o, bits, 8);
    if (step != 0) {
        put_key(&o, 2, WIRE_VARINT);
        put_varint(&o, (uint64_t)step);
    }
    return o;
}

/* Fills in the header and appends the payload's CRC. */
static size_t finish(Out *o) {
    if (o->len + 4 > o->cap) return 0;
    size_t n = o->len - HEADER;
    Out head = {o->p, 0, HEADER};
    put_le(&head, n, 8);
    put_le(&head, crc32c_masked(o->p, 8), 4);
    put_le(o, crc32c_masked(o->p + HEADER, n), 4);
    return o->len;
}

size_t tfevents_version(uint8_t *buf, size_t cap, double wall_time) {
    static const char VERSION[] = "brain.Event:2";
    Out o = begin(buf, cap, wall_time, 0);
    put_string(&o, 3, VERSION, sizeof VERSION - 1);
    return finish(&o);
}

/* Bytes of one Summary.Value holding a simple_value. */
static size_t value_len(const TfScalar *v) {
    size_t tag = strlen(v->tag);
    return 1 + varint_len(tag) + tag + 1 + 4;
}

size_t tfevents_scalars(uint8_t *buf, size_t cap, double wall_time, int64_t step, const TfScalar *v, int n) {
    Out o = begin(buf, cap, wall_time, step);
    size_t summary = 0;
    for (int i = 0; i < n; i++) summary += 1 + varint_len(value_len(&v[i])) + value_len(&v[i]);
    put_key(&o, 5, WIRE_BYTES);
    put_varint(&o, summary);
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i].value, sizeof bits);
        put_key(&o, 1, WIRE_BYTES);
        put_varint(&o, value_len(&v[i]));
        put_string(&o, 1, v[i].tag, strlen(v[i].tag));
        put_key(&o, 2, WIRE_FIXED32);
        put_le(&o, bits, 4);
    }
    return finish(&o);
}

size_t tfevents_start(uint8_t *buf, size_t cap, double wall_time, int64_t step) {
    Out o = begin(buf, cap, wall_time, step);
    put_key(&o, 7, WIRE_BYTES);
    put_varint(&o, 2);
    put_key(&o, 1, WIRE_VARINT);
    put_byte(&o, 1); /* SessionLog.START */
    return finish(&o);
}
