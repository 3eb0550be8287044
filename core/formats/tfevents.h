/* TensorBoard event files, written without a protobuf library: TFRecord framing around hand-encoded
 * Event messages, only the fields a scalar curve needs.
 *
 *   record:  uint64 length | uint32 masked crc32c(length bytes) | payload | uint32 masked crc32c(payload)
 *   Event:   wall_time = 1 (double), step = 2 (int64), then one of
 *            file_version = 3 (string "brain.Event:2": a file's first record),
 *            summary = 5 (Summary: repeated value = 1, each tag = 1 (string), simple_value = 2 (float)),
 *            session_log = 7 (SessionLog: status = 1, START = 1)
 *
 * Integers are little-endian. A step of 0 is left out, as proto3 encoders leave out zero scalars, so the
 * bytes equal what TensorBoard's own writer produces (tests/fixtures/gen_tfevents.py). */
#ifndef PEFTC_TFEVENTS_H
#define PEFTC_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *tag;
    float value;
} TfScalar;

/* Each writes one whole record into buf and returns its length in bytes, or 0 when that would need
 * more than cap bytes. wall_time is seconds since the Unix epoch. */
size_t tfevents_version(uint8_t *buf, size_t cap, double wall_time);
size_t tfevents_scalars(uint8_t *buf, size_t cap, double wall_time, int64_t step, const TfScalar *v, int n);
/* A SessionLog START: TensorBoard's readers then drop what earlier files hold at steps >= step. */
size_t tfevents_start(uint8_t *buf, size_t cap, double wall_time, int64_t step);

#endif
