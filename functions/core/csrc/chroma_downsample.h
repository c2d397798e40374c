/*
 * Chroma brought to the output's 4:2:0 grid in the DCT domain (issue 14): one output block from
 * the 1, 2 or 4 input blocks that cover it, as the encoder of decode + encode would make it from
 * the decoded pixels, but computed directly on the coefficients. On each axis, either
 * - halved: a 4:4:4, 4:2:2 or 4:4:0 input's finer chroma, a 2:1 box average of two blocks
 *   (libjpeg's h2v2/h2v1 downsampling);
 * - shifted: the output's blocks start half a block into the input's, the last 4 samples of
 *   one block then the first 4 of the next (a turn whose mirrored side is 8 pixels off a
 *   whole MCU, as 3000 of a 4000x3000 phone photo is);
 * - or kept: one block.
 */
#ifndef IMGPIPE_CHROMA_DOWNSAMPLE_H
#define IMGPIPE_CHROMA_DOWNSAMPLE_H

#include <stddef.h>
#include <stdio.h>

#include "jpeglib.h"

enum chroma_axis_kind { CHROMA_KEEP, CHROMA_HALVE, CHROMA_SHIFT };

/* The map of one axis (chroma_downsample.c): t0[k][n] takes input coefficient n of the first
 * (top or left) block to output coefficient k; bit n of from[k] is set where it is not zero.
 * The second block's map follows from it. `blocks`: 2, or 1 where the axis is kept. */
struct chroma_axis {
  int blocks;
  float t0[DCTSIZE][DCTSIZE];
  unsigned char from[DCTSIZE];
  /* columns[b][n][k]: the map's column n for block b (T_b[k][n]), to add one input coefficient
   * at a time into a row of 8 outputs */
  float columns[2][DCTSIZE][DCTSIZE];
};

struct chroma_downsampler {
  struct chroma_axis across, down;
};

/* across, down: each a chroma_axis_kind, not both CHROMA_KEEP. */
void chroma_downsampler_init(struct chroma_downsampler *ds, int across, int down);

/*
 * Writes into `out` the output block from the across.blocks * down.blocks input blocks in `in`
 * (row-major: in[row * across.blocks + column]): each input coefficient times q_in (its
 * quantiser), a non-zero one moved away from zero by unread_half_step (half its quantiser where
 * its last bit was not read, see progressive_read; else 0), a flat block's DC at its level
 * (flat_level) when `flat_is_known` (every last bit read), each output one times inverse_q_out
 * (one over its quantiser), rounded half away from zero as libjpeg's quantiser rounds.
 */
void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const float *q_in,
                             const float *unread_half_step, int flat_is_known, const float *inverse_q_out,
                             JCOEF *out);

#endif
