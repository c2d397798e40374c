/*
 * Chroma of a 4:4:4, 4:2:2 or 4:4:0 JPEG brought to 4:2:0 in the DCT domain (issue 14): one
 * output block from the 1, 2 or 4 input blocks that cover the same 16x16 luma pixels, as the
 * encoder of decode + encode would make it from the decoded pixels (a 2:1 box average on each
 * halved axis, libjpeg's h2v2/h2v1 downsampling), but computed directly on the coefficients.
 */
#ifndef IMGPIPE_CHROMA_DOWNSAMPLE_H
#define IMGPIPE_CHROMA_DOWNSAMPLE_H

#include <stddef.h>
#include <stdio.h>

#include "jpeglib.h"

/* T_0 of a halved axis (chroma_downsample.c): half[k][n] takes input coefficient n of the first
 * (top or left) block to output coefficient k; bit n of half_from[k] is set where it is not
 * zero. The second block's map follows from it. */
struct chroma_downsampler {
  int dx, dy; /* 2 where that axis is halved, 1 where it is kept */
  float half[DCTSIZE][DCTSIZE];
  unsigned char half_from[DCTSIZE];
};

/* dx, dy: 1 or 2, not both 1. */
void chroma_downsampler_init(struct chroma_downsampler *ds, int dx, int dy);

/*
 * Writes into `out` the output block from the dx * dy input blocks in `in` (row-major:
 * in[row * dx + column]): each input coefficient times q_in (its quantiser), each output one
 * times inverse_q_out (one over its quantiser), rounded half away from zero as libjpeg's
 * quantiser rounds.
 */
void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const float *q_in,
                             const float *inverse_q_out, JCOEF *out);

#endif
