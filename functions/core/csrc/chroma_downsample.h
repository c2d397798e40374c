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

/* The linear map of each input block's coefficients onto the output block: for input block b
 * (b = row * dx + column within the 2x2 or 1x2 or 2x1 group), coefficient n contributes
 * value * basis[b][n][k] to output coefficient k. All coefficients in natural order. */
struct chroma_downsampler {
  int dx, dy; /* 2 where that axis is halved, 1 where it is kept */
  float basis[4][DCTSIZE2][DCTSIZE2];
};

/* dx, dy: 1 or 2, not both 1. */
void chroma_downsampler_init(struct chroma_downsampler *ds, int dx, int dy);

/*
 * Writes into `out` the output block, quantised on q_out, from the dx * dy input blocks in
 * `in` (quantised on q_in; row-major, as `basis` numbers them). Rounds half away from zero, as
 * libjpeg's quantiser does.
 */
void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const UINT16 *q_in,
                             const UINT16 *q_out, JCOEF *out);

#endif
