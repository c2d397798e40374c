/* What both coefficient loops need (requantize.c, chroma_downsample.c). */
#ifndef IMGPIPE_COEFFICIENTS_H
#define IMGPIPE_COEFFICIENTS_H

#include <stdint.h>
#include <stdio.h>

#include "jpeglib.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

#endif
