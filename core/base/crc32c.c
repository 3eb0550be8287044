/* CRC-32C, bit by bit: event records are a few dozen bytes per step, so a table would buy nothing. */
#include "core/base/crc32c.h"

uint32_t crc32c(const void *data, size_t n) {
    const uint8_t *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    }
    return ~c;
}
