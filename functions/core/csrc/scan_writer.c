#include "scan_writer.h"

#include <string.h>

#include "coefficients.h"

/* The bits being written and where their bytes go; local to a row, so they stay in registers.
 * As libjpeg-turbo's encoder does, whole 64-bit words are written at once unless one holds a
 * 0xFF byte, which needs a 0 after it (byte stuffing: 0xFF starts a marker). */
struct bit_output {
  uint64_t buffer; /* the newest bits lowest; only the last 64 - free are still to be written */
  int free;
  unsigned char *out;
};

static inline void put_byte(struct bit_output *o, unsigned char byte) {
  *o->out++ = byte;
  if (byte == 0xFF)
    *o->out++ = 0;
}

static inline void put_word(struct bit_output *o, uint64_t word) {
  if (word & 0x8080808080808080ull & ~(word + 0x0101010101010101ull)) { /* a byte is 0xFF */
    int shift;
    for (shift = 56; shift >= 0; shift -= 8)
      put_byte(o, (unsigned char)(word >> shift));
  } else {
    word = __builtin_bswap64(word); /* big-endian: the oldest bits first */
    memcpy(o->out, &word, sizeof(word));
    o->out += sizeof(word);
  }
}

/* Appends the low `size` bits of `bits` (size <= 27: a code and its value's bits). */
static inline void put(struct bit_output *o, unsigned bits, int size) {
  if (size < o->free) {
    o->buffer = o->buffer << size | bits;
    o->free -= size;
  } else {
    int spill = size - o->free; /* free <= size <= 27 here, so no shift is by 64 */
    put_word(o, o->buffer << o->free | (uint64_t)bits >> spill);
    o->buffer = bits;
    o->free = 64 - spill;
  }
}

/* A symbol's code followed by the low nbits of value, negative values one less (JPEG's
 * one's-complement-like form, as libjpeg writes it). */
static inline void put_symbol(struct bit_output *o, const struct huffman_codes *t, int symbol, int value, int nbits) {
  unsigned extra = (unsigned)(value < 0 ? value - 1 : value) & ((1u << nbits) - 1);
  put(o, t->code[symbol] << nbits | extra, t->size[symbol] + nbits);
}

/* One block: its DC difference, then each kept AC coefficient after its run of zeros (a ZRL
 * symbol per 16), then an end of block unless the last coefficient is kept. */
static inline void put_block(struct bit_output *o, const struct huffman_codes *dc, const struct huffman_codes *ac,
                             int *last_dc, const struct block_store *s, const struct stored_block *b) {
  const JCOEF *v = s->values + b->first;
  uint64_t zz = b->zigzag;
  int diff = b->dc - *last_dc, last = 0;
  int nbits = bit_length((unsigned)(diff < 0 ? -diff : diff));
  *last_dc = b->dc;
  put_symbol(o, dc, nbits, diff, nbits);
  while (zz) {
    int k = __builtin_ctzll(zz), value = *v++, run = k - last - 1;
    zz &= zz - 1;
    last = k;
    for (; run > 15; run -= 16)
      put(o, ac->code[0xF0], ac->size[0xF0]);
    nbits = bit_length((unsigned)(value < 0 ? -value : value));
    put_symbol(o, ac, run << 4 | nbits, value, nbits);
  }
  if (last < DCTSIZE2 - 1)
    put(o, ac->code[0], ac->size[0]);
}

/* A padding block of an MCU cut by the right or bottom edge: libjpeg gives it the DC of the
 * block before it in the MCU (a difference of 0) and no AC coefficient. */
static inline void put_padding(struct bit_output *o, const struct huffman_codes *dc, const struct huffman_codes *ac) {
  put(o, dc->code[0], dc->size[0]);
  put(o, ac->code[0], ac->size[0]);
}

size_t scan_writer_row_bound(const struct scan_writer *w) {
  /* A block: a DC code and its value (16 + 11 bits), then 63 AC codes and values (16 + 10), as
   * many ZRL codes before them, doubled for stuffing: under 512 bytes. */
  size_t blocks = w->components == 1 ? w->stores[0].width : (size_t)w->stores[1].width * 6;
  return blocks * 512 + 16;
}

void scan_writer_init(struct scan_writer *w, const struct block_store *stores, int components) {
  memset(w, 0, sizeof(*w));
  w->stores = stores;
  w->components = components;
  w->free = 64;
}

unsigned char *scan_writer_row(struct scan_writer *w, unsigned char *out) {
  struct bit_output o = {w->buffer, w->free, out};
  const struct block_store *luma = &w->stores[0];
  JDIMENSION x, y = w->row++;
  if (w->components == 1) {
    /* One component: a scan of its blocks alone, in rows, no padding. */
    for (x = 0; x < luma->width; x++)
      put_block(&o, w->dc[0], w->ac[0], &w->last_dc[0], luma, &luma->blocks[(size_t)y * luma->width + x]);
  } else {
    /* 4:2:0: each MCU its 2x2 luma blocks, then Cb, then Cr. */
    for (x = 0; x < w->stores[1].width; x++) {
      int i, j, ci;
      for (j = 0; j < 2; j++)
        for (i = 0; i < 2; i++) {
          JDIMENSION bx = 2 * x + (JDIMENSION)i, by = 2 * y + (JDIMENSION)j;
          if (bx < luma->width && by < luma->height)
            put_block(&o, w->dc[0], w->ac[0], &w->last_dc[0], luma, &luma->blocks[(size_t)by * luma->width + bx]);
          else
            put_padding(&o, w->dc[0], w->ac[0]);
        }
      for (ci = 1; ci < 3; ci++) {
        const struct block_store *s = &w->stores[ci];
        put_block(&o, w->dc[1], w->ac[1], &w->last_dc[ci], s, &s->blocks[(size_t)y * s->width + x]);
      }
    }
  }
  w->buffer = o.buffer;
  w->free = o.free;
  return o.out;
}

unsigned char *scan_writer_flush(struct scan_writer *w, unsigned char *out) {
  struct bit_output o = {w->buffer, w->free, out};
  int left = 64 - o.free;
  for (; left >= 8; left -= 8)
    put_byte(&o, (unsigned char)(o.buffer >> (left - 8)));
  if (left > 0) /* the last bits, padded with ones to the byte's end */
    put_byte(&o, (unsigned char)(o.buffer << (8 - left) | 0xFFu >> left));
  w->buffer = 0;
  w->free = 64;
  return o.out;
}
