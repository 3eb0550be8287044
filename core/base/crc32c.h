/* CRC-32C (Castagnoli; reflected polynomial 0x82F63B78), the checksum of TFRecord framing that
 * TensorBoard event files use. zlib's crc32 is CRC-32 (polynomial 0xEDB88320): a different code. */
#ifndef PEFTC_CRC32C_H
#define PEFTC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(const void *data, size_t n);

/* The masked form TFRecord stores (from LevelDB): rotated right by 15 and offset, so the CRC of bytes
 * that themselves hold CRCs does not degenerate. */
static inline uint32_t crc32c_masked(const void *data, size_t n) {
    uint32_t c = crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

#endif
