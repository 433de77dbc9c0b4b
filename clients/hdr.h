/* clients/hdr.h: a log-linear latency histogram in the style of HdrHistogram.
 *
 * Values (nanoseconds in spacesim-load, but any uint64) go into buckets whose
 * width grows with the value: below 2^SUB_BITS every integer has its own
 * bucket; above, each power-of-two range [2^k, 2^(k+1)) is cut into
 * 2^(SUB_BITS-1) equal buckets. With SUB_BITS = 8 the relative error of any
 * reported value is below 1/128 (0.8%), and the whole uint64 range needs
 * 256 + 56 * 128 = 7,424 counters (58 KiB) regardless of how many values are
 * recorded. Recording is O(1) (a count-leading-zeros and an increment);
 * percentiles walk the counters once (no sorting of raw samples, so memory
 * and time do not grow with the number of samples). The exact minimum,
 * maximum and sum are tracked on the side.
 *
 * Not thread-safe: one histogram per thread, merged with hdr_add(). */
#ifndef SP_CLIENTS_HDR_H
#define SP_CLIENTS_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HDR_SUB_BITS 8
#define HDR_LINEAR (1u << HDR_SUB_BITS)            /* 256 exact buckets */
#define HDR_HALF (1u << (HDR_SUB_BITS - 1))         /* 128 buckets per octave above */
#define HDR_BUCKETS (HDR_LINEAR + (64 - HDR_SUB_BITS) * HDR_HALF)

typedef struct hdr {
    uint64_t counts[HDR_BUCKETS];
    uint64_t total;
    uint64_t min, max;
    double sum;
} hdr_t;

/* Empty histogram (no allocation; the struct itself is ~58 KiB, allocate it
 * on the heap). */
void hdr_init(hdr_t *h);
void hdr_reset(hdr_t *h);

/* Record one value. O(1). */
void hdr_record(hdr_t *h, uint64_t v);

/* Add every count of src into dst. O(HDR_BUCKETS). */
void hdr_add(hdr_t *dst, const hdr_t *src);

/* Bucket index of a value, and the range of values a bucket holds
 * [lo, hi] (inclusive). Exposed for tests. */
size_t hdr_index(uint64_t v);
uint64_t hdr_bucket_lo(size_t idx);
uint64_t hdr_bucket_hi(size_t idx);

/* The value at percentile p (0..100): the highest value equivalent to the
 * bucket holding the ceil(p/100 * total)-th smallest sample, clamped to the
 * exact max (so p100 == max). 0 when empty. O(HDR_BUCKETS). */
uint64_t hdr_percentile(const hdr_t *h, double p);

double hdr_mean(const hdr_t *h);

#endif /* SP_CLIENTS_HDR_H */
