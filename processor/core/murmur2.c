/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), see murmur2.h. */
#include "murmur2.h"

#include <string.h>

int32_t weir_murmur2(const void *key, size_t n) {
    const uint8_t *p = key;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = 0x9747b28cu ^ (uint32_t)n;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t k = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (n & 3) {
    case 3: h ^= (uint32_t)p[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)p[i + 1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)p[i]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    int32_t s;
    memcpy(&s, &h, sizeof(s));
    return s;
}
