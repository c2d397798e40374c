/*
 * The output's blocks between the requantisation and the scan's writer, kept sparse: a q50 block
 * of a q90-q95 photo keeps a few of its 64 coefficients, so each block is its DC, a mask of the
 * AC coefficients it keeps (zigzag order) and their values, 16 bytes plus 2 per value, where a
 * whole-image coefficient array takes 128 bytes per block. scan_writer.c encodes them as they
 * are; libjpeg's writer (the tests' reference) reads them through its virtual-array access
 * (block_store_rows), one band of rows at a time, made whole again. Blocks may be put in any
 * order (a turn writes them down the output's columns).
 */
#ifndef IMGPIPE_BLOCK_STORE_H
#define IMGPIPE_BLOCK_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jpeglib.h"

/* What one block keeps: the AC coefficients that stay non-zero, in zigzag order. */
struct kept_coefficients {
  uint64_t zigzag; /* bit k: the AC coefficient at zigzag index k is kept (bit 0, the DC, never) */
  int count;
  JCOEF ac[DCTSIZE2 - 1];
};

struct stored_block {
  uint64_t zigzag;
  uint32_t first; /* index of its first value in `values` */
  JCOEF dc;
};

struct block_store {
  JDIMENSION width, height; /* in blocks: the component's, without the MCU padding */
  struct stored_block *blocks; /* row-major */
  JCOEF *values;
  size_t count, capacity; /* of values */
  size_t *budget;         /* bytes this and the other stores may still take */
  JBLOCKROW band;         /* the rows handed to the writer, made whole */
  JBLOCKROW rows[2 * DCTSIZE];
  int band_rows;
};

/* 0 if the budget or memory runs out. band_rows: the most rows libjpeg's writer asks for at
 * once (the component's vertical sampling factor), or 0 where it does not read the store. */
int block_store_init(struct block_store *s, JDIMENSION width, JDIMENSION height, int band_rows, size_t *budget);
void block_store_free(struct block_store *s);

/* 0 if the budget or memory runs out. */
int block_store_put(struct block_store *s, JDIMENSION x, JDIMENSION y, JCOEF dc, const struct kept_coefficients *kept);

static inline JCOEF block_store_dc(const struct block_store *s, JDIMENSION x, JDIMENSION y) {
  return s->blocks[(size_t)y * s->width + x].dc;
}

/* Rows start .. start + count - 1 (count <= band_rows) as whole blocks, valid until the next
 * call. Rows past the last are the MCU padding, which the writer asks for but never reads. */
JBLOCKARRAY block_store_rows(struct block_store *s, JDIMENSION start, JDIMENSION count);

#endif
