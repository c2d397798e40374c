/*
 * Reads a progressive Huffman JPEG's coefficients, every scan, into whole-image arrays: what
 * jpeg_read_coefficients does, 1.2-1.8x as fast on the progressive photos of our corpus
 * (docs/performance.md). libjpeg spends most of its time there in the refinement scans, where
 * each block is walked coefficient by coefficient, reading a correction bit for each non-zero
 * one with a branch on it; we keep a mask of each block's non-zero coefficients, so a run of
 * zeros is found at once and the correction bits a symbol passes are counted and read together.
 *
 * Given the output's quantisers, it does not decode a last refinement scan (Al 0) of AC
 * coefficients whose bit is at most an eighth of the output step each lands on, and at most 2
 * (a q~100 input's; not_needed in progressive_reader.c has the measured reasons): it moves the
 * requantised value by at most a sixteenth of a step once the coefficient is taken at the middle
 * of where it can be (unread_lsb; the rescaling in requantize.c), and such scans are a third to
 * three fifths of a fine progressive file's bytes (docs/performance.md).
 *
 * libjpeg reads the header, up to the first scan's data (jpeg_read_header); this reader goes on
 * from there, parsing the markers between scans itself. A file that is damaged, or that uses
 * what only libjpeg handles here (a quantisation table defined between scans, DNL), returns 0:
 * the caller decodes and re-encodes it.
 */
#ifndef IMGPIPE_PROGRESSIVE_READER_H
#define IMGPIPE_PROGRESSIVE_READER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jpeglib.h"

struct progressive_image {
  int components;
  /* Each component's blocks, in natural order, by row: padded like libjpeg's arrays, to whole
   * MCUs of an interleaved scan. Their DC coefficients are kept apart (`dc`, one per block, by
   * row) until progressive_image_fill_dc puts them in: a DC scan then touches 2 bytes per
   * block, not a cache line of each. */
  JDIMENSION width[MAX_COMPONENTS], height[MAX_COMPONENTS];
  JBLOCKROW *rows[MAX_COMPONENTS];
  JCOEF *dc[MAX_COMPONENTS];
  uint64_t *nonzero[MAX_COMPONENTS]; /* per block: bit k, the AC coefficient at zigzag index k is not 0 */
  int bands[MAX_COMPONENTS];         /* the blocks are allocated in bands of rows (allocate) */
  JBLOCKROW band[MAX_COMPONENTS][64];
  JDIMENSION dc_filled[MAX_COMPONENTS]; /* rows whose blocks have their DC */
  /* Per component, bit n (natural order): the AC coefficient's last bit was not read, its scan
   * skipped (progressive_read) */
  uint64_t unread_lsb[MAX_COMPONENTS];
};

/* The bytes progressive_read allocates for `src`'s image. */
size_t progressive_image_bytes(j_decompress_ptr src);

/* 1 with every scan read into `image` (and each component's quantisation table latched, as
 * libjpeg does), 0 when the file is damaged or not for this reader (see above), -1 out of
 * memory. Free `image` with progressive_image_free either way. output_steps[ci][n]: the smallest
 * output quantiser coefficient n (natural order) of component ci can land on, for skipping the
 * scans above; NULL: every scan is read. A skipped scan is not checked for damage beyond
 * having an end. */
int progressive_read(j_decompress_ptr src, struct progressive_image *image, const UINT16 (*output_steps)[DCTSIZE2]);

/* Puts the DC coefficients of component ci's rows up to `last_row` into their blocks. */
void progressive_image_fill_dc(struct progressive_image *image, int ci, JDIMENSION last_row);

void progressive_image_free(struct progressive_image *image);

#endif
