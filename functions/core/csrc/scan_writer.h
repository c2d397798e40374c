/*
 * The output's entropy-coded scan, written from the sparse blocks (block_store.h) instead of by
 * libjpeg's coefficient writer: libjpeg's Huffman encoder scans all 64 coefficients of every
 * block, which the writer must first be handed whole, where a q50 block keeps a few. The
 * stored zigzag mask gives the runs of zeros directly. The codes are libjpeg's, made from the
 * same tables (jpeg_make_c_derived_tbl), and the blocks go in the scan order libjpeg's writer
 * takes, edge padding included, so the bytes are the same as its output (checked by the tests,
 * which let libjpeg write the same blocks).
 */
#ifndef IMGPIPE_SCAN_WRITER_H
#define IMGPIPE_SCAN_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jpeglib.h"

#include "block_store.h"

/* jchuff.h's c_derived_tbl: a table's code and code length per symbol. */
struct huffman_codes {
  unsigned int code[256];
  char size[256];
};

struct scan_writer {
  const struct block_store *stores; /* one per component: luma, then Cb and Cr */
  int components;
  struct huffman_codes *dc[2], *ac[2]; /* luma, chroma */
  int last_dc[3];
  uint64_t buffer; /* bits not yet written (see scan_writer.c) */
  int free;
  JDIMENSION row; /* the next MCU row */
};

void scan_writer_init(struct scan_writer *w, const struct block_store *stores, int components);

/* The most bytes one MCU row may take (every coefficient kept at its largest, every byte 0xFF). */
size_t scan_writer_row_bound(const struct scan_writer *w);

/* Writes the next MCU row at `out`, returning where it ended. */
unsigned char *scan_writer_row(struct scan_writer *w, unsigned char *out);

/* The last bits, padded with ones to a whole byte, as libjpeg ends a scan. */
unsigned char *scan_writer_flush(struct scan_writer *w, unsigned char *out);

#endif
