/* What the coefficient loops need (requantize.c, chroma_downsample.c, scan_writer.c). */
#ifndef IMGPIPE_COEFFICIENTS_H
#define IMGPIPE_COEFFICIENTS_H

#include <stdint.h>
#include <stdio.h>

#include "jpeglib.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* How many bits a magnitude takes: JPEG's size category of a coefficient or a DC difference. */
static inline int bit_length(unsigned value) { return value ? 32 - __builtin_clz(value) : 0; }

/*
 * The level, -128 to 127 (0 is mid-grey, 128), that a decoder shows a flat block at: one whose
 * AC coefficients are all 0, every last bit read. libjpeg's IDCT rounds it to a whole 8-bit
 * value, (DC q + 4) / 8 rounded down (its DESCALE, an arithmetic shift), and clamps it. Decode +
 * encode starts from that whole level, so a flat block is requantised from it too (rescale_dc,
 * chroma_downsample_block). From the coefficient instead, a level is off by up to q / 16, and
 * where it sits on a tie of the output's steps (an odd level on q50's 2-level DC steps) that
 * decides the side: on a q90 input (DC q 3) one odd level in three went the other way from its
 * neighbours, and a smooth gradient of flat areas became steps of uneven widths. Measured on
 * the corpus' smoothest photos (docs/performance.md): DSSIM against decode + encode's, painting
 * 1.021x -> 0.999x, fossa 1.018x -> 1.001x.
 */
static inline int flat_level(int dc, int q) {
  int level = (dc * q + 4) >> 3;
  return level < -128 ? -128 : level > 127 ? 127 : level;
}

/* Bit n set when the coefficient at natural index n is not zero. */
static inline uint64_t nonzero_mask(const JCOEF *block) {
  uint64_t zero = 0;
#if defined(__SSE2__)
  __m128i z = _mm_setzero_si128();
  int i;
  for (i = 0; i < 4; i++) {
    __m128i lo = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(block + 16 * i)), z);
    __m128i hi = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(block + 16 * i + 8)), z);
    zero |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_packs_epi16(lo, hi)) << (16 * i);
  }
#else
  int k;
  for (k = 0; k < DCTSIZE2; k++)
    zero |= (uint64_t)(block[k] == 0) << k;
#endif
  return ~zero;
}


/* Clears every coefficient whose magnitude is at most max_zeroed[k]; bit n of the result is set
 * when coefficient n is kept. Saturating: -32768 counts as 32767, so it is kept. `ac_all_zero`:
 * whether every AC coefficient was 0 before (a flat block). */
static inline uint64_t keep_survivors(JCOEF *block, const JCOEF *max_zeroed, int *ac_all_zero) {
  uint64_t kept = 0;
#if defined(__SSE2__)
  __m128i z = _mm_setzero_si128(), any = z;
  int i, half;
  for (i = 0; i < 4; i++) {
    __m128i keep[2];
    for (half = 0; half < 2; half++) {
      JCOEF *at = block + 16 * i + 8 * half;
      __m128i v = _mm_loadu_si128((const __m128i *)at);
      __m128i magnitude = _mm_max_epi16(v, _mm_subs_epi16(z, v));
      any = _mm_or_si128(any, i == 0 && half == 0 ? _mm_and_si128(v, _mm_set_epi16(-1, -1, -1, -1, -1, -1, -1, 0)) : v);
      keep[half] = _mm_cmpgt_epi16(magnitude, _mm_loadu_si128((const __m128i *)(max_zeroed + 16 * i + 8 * half)));
      _mm_storeu_si128((__m128i *)at, _mm_and_si128(v, keep[half]));
    }
    kept |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_packs_epi16(keep[0], keep[1])) << (16 * i);
  }
  *ac_all_zero = _mm_movemask_epi8(_mm_cmpeq_epi16(any, z)) == 0xFFFF;
#else
  int k;
  *ac_all_zero = 1;
  for (k = 0; k < DCTSIZE2; k++) {
    int v = block[k];
    *ac_all_zero &= k == 0 || v == 0;
    if ((v < 0 ? -v : v) > max_zeroed[k])
      kept |= (uint64_t)1 << k;
    else
      block[k] = 0;
  }
#endif
  return kept;
}

#endif
