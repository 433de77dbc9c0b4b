/* clients/hdr.c: see hdr.h. */
#include "hdr.h"

#include <math.h>
#include <string.h>

void hdr_init(hdr_t *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hdr_reset(hdr_t *h) { hdr_init(h); }

size_t hdr_index(uint64_t v) {
    if (v < HDR_LINEAR) return (size_t)v;
    /* msb >= SUB_BITS here. Keep the top SUB_BITS bits: mantissa in
     * [2^(SUB_BITS-1), 2^SUB_BITS), shift >= 1. */
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HDR_SUB_BITS + 1u;
    uint64_t mant = v >> shift;
    return HDR_LINEAR + (size_t)(shift - 1u) * HDR_HALF + (size_t)(mant - HDR_HALF);
}

uint64_t hdr_bucket_lo(size_t idx) {
    if (idx < HDR_LINEAR) return idx;
    size_t k = idx - HDR_LINEAR;
    unsigned shift = (unsigned)(k / HDR_HALF) + 1u;
    uint64_t mant = (uint64_t)(k % HDR_HALF) + HDR_HALF;
    return mant << shift;
}

uint64_t hdr_bucket_hi(size_t idx) {
    if (idx < HDR_LINEAR) return idx;
    size_t k = idx - HDR_LINEAR;
    unsigned shift = (unsigned)(k / HDR_HALF) + 1u;
    return hdr_bucket_lo(idx) + ((uint64_t)1 << shift) - 1u;
}

void hdr_record(hdr_t *h, uint64_t v) {
    h->counts[hdr_index(v)]++;
    h->total++;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->sum += (double)v;
}

void hdr_add(hdr_t *dst, const hdr_t *src) {
    if (src->total == 0) return;
    for (size_t i = 0; i < HDR_BUCKETS; i++) dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->sum += src->sum;
}

uint64_t hdr_percentile(const hdr_t *h, double p) {
    if (h->total == 0) return 0;
    if (p <= 0) return h->min;
    if (p >= 100) return h->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HDR_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hdr_bucket_hi(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

double hdr_mean(const hdr_t *h) { return h->total ? h->sum / (double)h->total : 0.0; }
