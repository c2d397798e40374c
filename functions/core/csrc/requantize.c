/*
 * DCT-domain requantisation of a JPEG to libjpeg's quality-N tables, through libjpeg-turbo
 * (the static libturbojpeg built by turbojpeg-sys carries the whole libjpeg API): read the
 * quantised DCT coefficients, rescale them to the new tables, write them as a baseline JPEG
 * with optimised Huffman tables. No IDCT, colour conversion, resampling or FDCT. A single-scan
 * input is read in bands (read_in_bands), a progressive one whole by our own reader
 * (progressive_reader.c; other multi-scan inputs by jpeg_read_coefficients); the output's blocks
 * are kept sparse (block_store.c) and its scan written from them (scan_writer.c), after libjpeg
 * has written the headers.
 *
 * The output is what decode + encode would write: q50 tables, 4:2:0 (or grayscale), upright.
 * Inputs: 8-bit grayscale or YCbCr (also as an Adobe marker with transform 1 declares it) at
 * 4:2:0, 4:2:2, 4:4:0 or 4:4:4, Huffman baseline/extended/progressive, every quantiser no
 * coarser than the target's (else the output would claim more precision than the input has).
 * Chroma at more than 4:2:0 is halved in the DCT domain (chroma_downsample.c); an EXIF
 * orientation is applied to the blocks and their coefficients, as jpegtran's lossless
 * transforms do (plan_layout says when that is exact; chroma half a block off the mirrored grid
 * is shifted, like the halving). Everything else returns IMGPIPE_RQ_NOT_APPLICABLE and the
 * caller decodes and re-encodes. No marker of the input is copied (EXIF, ICC, comments): the
 * output has a JFIF header only.
 *
 * libjpeg reports errors by calling error_exit, which would exit(); ours longjmps back here.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "jpeglib.h"
#include "jerror.h"

#include "block_store.h"
#include "chroma_downsample.h"
#include "coefficients.h"
#include "progressive_reader.h"
#include "scan_writer.h"


/* libjpeg internals, exported by the library but declared in headers it does not install
 * (jpegint.h, jchuff.h). */
extern const int jpeg_natural_order[]; /* zigzag index -> natural index */
extern void jpeg_gen_optimal_table(j_compress_ptr cinfo, JHUFF_TBL *htbl, long freq[]);
extern void jpeg_make_c_derived_tbl(j_compress_ptr cinfo, boolean isDC, int tblno, struct huffman_codes **codes);

/* The decompressor's inverse DCT, as libjpeg-turbo 3.1's jpegint.h declares it (its first two
 * members; the version is pinned by Cargo.lock, and a changed layout fails every requantisation
 * test): read_in_bands replaces it. */
typedef void (*inverse_dct_method)(j_decompress_ptr cinfo, jpeg_component_info *comp, JCOEFPTR block,
                                   JSAMPARRAY output_rows, JDIMENSION output_col);
struct jpeg_inverse_dct {
  void (*start_pass)(j_decompress_ptr cinfo);
  inverse_dct_method inverse_DCT[MAX_COMPONENTS];
};
/* The compressor's coefficient controller, the same way: requantize replaces its compress_data,
 * which would hand whole blocks to libjpeg's Huffman encoder, by write_scan_row. */
struct jpeg_c_coef_controller {
  void (*start_pass)(j_compress_ptr cinfo, int pass_mode);
  boolean (*compress_data)(j_compress_ptr cinfo, JSAMPIMAGE input_buf);
};

#define MAX_AC_BITS 10 /* 8-bit samples: data_precision + 2 */

#define IMGPIPE_RQ_OK 0
#define IMGPIPE_RQ_NOT_APPLICABLE 1
#define IMGPIPE_RQ_ERROR 2

/* flags */
#define IMGPIPE_RQ_LIBJPEG_WRITER 1 /* libjpeg gathers the Huffman statistics and writes the scan (tests) */
#define IMGPIPE_RQ_LIBJPEG_READER 2 /* libjpeg reads a progressive input (jpeg_read_coefficients; tests) */
#define IMGPIPE_RQ_EVERY_SCAN 4     /* every scan of a progressive input is read, none skipped (tests) */

struct imgpipe_err {
  struct jpeg_error_mgr pub;
  jmp_buf *jump;
  char *msg;
  int msg_len;
};

/* Output in a buffer we own (jpeg_mem_dest loses track of its buffer when an error interrupts
 * it after a reallocation). */
struct imgpipe_dest {
  struct jpeg_destination_mgr pub;
  unsigned char *buffer;
  size_t capacity;
  size_t length;
};

struct huff_stats {
  long dc[2][257]; /* jpeg_gen_optimal_table wants 257 entries */
  long ac[2][257];
  uint64_t zigzag_bits[8][256]; /* byte i of a natural-order mask -> its zigzag-order bits */
};

/* Everything libjpeg touches between setjmp and a longjmp lives on the heap, so its values are
 * well defined after the jump. */
struct imgpipe_ctx {
  struct jpeg_decompress_struct src;
  struct jpeg_compress_struct dst;
  struct imgpipe_err src_err, dst_err;
  struct imgpipe_dest dest;
  struct huff_stats stats;
  struct component_plan *plans; /* one per component */
  struct progressive_image progressive; /* a progressive input, read whole */
  struct block_store stores[MAX_COMPONENTS];
  size_t store_budget;
  struct scan_writer scan;
  /* The writer's own access to virtual arrays, for arrays other than the stores. */
  JBLOCKARRAY (*libjpeg_access)(j_common_ptr, jvirt_barray_ptr, JDIMENSION, JDIMENSION, boolean);
  /* read_in_bands: the band (iMCU row) being read, each component's ring of block rows and its
   * rows by number, and the pixel rows libjpeg is given but never writes. */
  JDIMENSION band_row;
  JBLOCKROW ring[MAX_COMPONENTS];
  JBLOCKROW *in_rows[MAX_COMPONENTS];
  JSAMPROW no_rows[MAX_SAMP_FACTOR * DCTSIZE];
  int src_created, dst_created;
  jmp_buf jump;
};

static void imgpipe_error_exit(j_common_ptr cinfo) {
  struct imgpipe_err *err = (struct imgpipe_err *)cinfo->err;
  if (err->msg != NULL && err->msg_len > 0) {
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(err->msg, (size_t)err->msg_len, "%s", buffer);
  }
  longjmp(*err->jump, 1);
}

/* Warnings (corrupt data, premature end) are counted, never printed; trace messages dropped. */
static void imgpipe_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0)
    cinfo->err->num_warnings++;
}

static void imgpipe_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void init_error(struct imgpipe_ctx *ctx, struct imgpipe_err *err, char *msg, int msg_len) {
  jpeg_std_error(&err->pub);
  err->pub.error_exit = imgpipe_error_exit;
  err->pub.emit_message = imgpipe_emit_message;
  err->pub.output_message = imgpipe_output_message;
  err->jump = &ctx->jump;
  err->msg = msg;
  err->msg_len = msg_len;
}

static void dest_init(j_compress_ptr cinfo) {
  struct imgpipe_dest *dest = (struct imgpipe_dest *)cinfo->dest;
  dest->pub.next_output_byte = dest->buffer;
  dest->pub.free_in_buffer = dest->capacity;
}

/* Room for `bytes` more at next_output_byte, the buffer grown (at least doubled) if need be:
 * for write_scan_row, and when libjpeg finds the buffer full (dest_empty). */
static unsigned char *dest_reserve(j_compress_ptr cinfo, size_t bytes) {
  struct imgpipe_dest *dest = (struct imgpipe_dest *)cinfo->dest;
  if (dest->pub.free_in_buffer < bytes) {
    size_t used = dest->capacity - dest->pub.free_in_buffer;
    size_t capacity = 2 * dest->capacity > used + bytes ? 2 * dest->capacity : used + bytes;
    unsigned char *grown = (unsigned char *)realloc(dest->buffer, capacity);
    if (grown == NULL)
      ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 10);
    dest->buffer = grown;
    dest->capacity = capacity;
    dest->pub.next_output_byte = grown + used;
    dest->pub.free_in_buffer = capacity - used;
  }
  return dest->pub.next_output_byte;
}

static boolean dest_empty(j_compress_ptr cinfo) {
  dest_reserve(cinfo, 1);
  return TRUE;
}

static void dest_term(j_compress_ptr cinfo) {
  struct imgpipe_dest *dest = (struct imgpipe_dest *)cinfo->dest;
  dest->length = dest->capacity - dest->pub.free_in_buffer;
}

/*
 * new = |v| * q_in / q_out rounded to nearest, sign restored: no dead zone. (A dead zone on
 * chroma, rounding it down more, saved 1-3% of bytes but cost 1-7% DSSIM: decode + encode's
 * chroma is blurred by resampling, not coarser; the colour it keeps is what users see.)
 *
 * Exact AC ties (j + 0.5, as far from j as from j + 1) go up one time in four, down the others,
 * chosen by a hash of the block's DC, the coefficient's place and its value (tie_goes_up). Ties
 * are common here: q50's even quantisers against a q90-q95 input's small ones (2 * 4 / 16,
 * 1 * 5 / 10), and on a q75 input, whose quantisers are about half of q50's, every odd
 * coefficient is one. Down costs fewer bits (a shorter or no symbol) for the same error, and on
 * q90-q95 inputs it cut 1-8% of the bytes per file at -1.4% to +0.3% DSSIM; but always down
 * shrinks every tied coefficient, and on the q75 one (freshflower) the texture lost its contrast:
 * DSSIM 1.9% worse than decode + encode's, which splits ties by its pixels' rounding, in effect
 * at random. Half of them up measured 2.4% better than decode + encode at 21% more bytes (up to
 * 1% more and 0.5% worse DSSIM on the others), a quarter 0.8% better at 11% more (0-2% more
 * bytes on the others; docs/performance.md). The DC coefficient keeps libjpeg's half away from
 * zero: its bits (a difference from the previous block's) do not follow its size, and turning
 * its ties down measured slightly worse. A flat block's DC is taken from its decoded level
 * instead (rescale_dc).
 *
 * Single-precision floats, cheaper than a division, and exact: |v| * q_in / q_out is a
 * multiple of 1 / (2 q_out), so a value that is not a tie is at least 1/510 from one, while
 * the float's error on a result below 2048 is below 2^-12 (a larger one is out of 8-bit
 * JPEG's range and refused anyway). Adding 0.5 less or more 2^-10 before truncating sends
 * exactly the ties down or up (checked against integer arithmetic by the tests).
 */
#define ROUND_HALF_AWAY (0.5f + 1.0f / 1024)
#define ROUND_HALF_DOWN (0.5f - 1.0f / 1024)

/* Whether an AC tie goes up (above): one time in four, by the top two bits of a multiplicative
 * hash of the block's input DC, the coefficient's place n and its input value v. */
static inline int tie_goes_up(int dc, int n, int v) {
  return ((unsigned)(dc * 31 + n * 131 + v * 7) * 2654435761u) >> 30 == 0;
}

/* max_zeroed[k]: the largest magnitude that the AC coefficient k rescales to 0 even as a tie that
 * goes up (-1 for the DC coefficient: it is always rescaled). A q90-q95 input's coefficients
 * mostly fall at or under it on q50's tables, so one vector comparison per 8 coefficients clears
 * them, and only the few that stay are rescaled one at a time (keep_survivors). */
struct rescale_table {
  float scale[DCTSIZE2];
  /* [0]: AC: ROUND_HALF_DOWN, plus half a step of the input's where its last bit was not read;
   * [1]: the same with ROUND_HALF_AWAY, for a tie that goes up. Indexed by tie_goes_up, not
   * chosen by a branch: the hash is random by design, and a branch on it was mispredicted a
   * quarter of the time (docs/performance.md). */
  float half[2][DCTSIZE2];
  JCOEF max_zeroed[DCTSIZE2];
  int dc_in;         /* the DC coefficient's quantiser */
  int flat_is_known; /* every AC coefficient's last bit was read: all 0 means a flat block */
  JCOEF flat_dc[256]; /* a flat block's DC by its level + 128 (rescale_dc) */
};

static float scale_of(unsigned q_in, unsigned q_out) { return (float)q_in / (float)q_out; }

/* One coefficient to the new table, `half` being ROUND_HALF_AWAY or ROUND_HALF_DOWN (above). */
static inline int rescale(int v, float scale, float half) {
  int sign = v >> 31; /* 0 or -1 */
  float magnitude = (float)((v ^ sign) - sign) * scale + half;
  int out = (int)(magnitude < 32767.0f ? magnitude : 32767.0f);
  return (out ^ sign) - sign;
}

/* AC coefficient n of a block whose input DC is `dc`, on the new table: an exact tie goes up or
 * down by tie_goes_up. */
static inline int rescale_ac(const struct rescale_table *t, int dc, int n, int v) {
  return rescale(v, t->scale[n], t->half[tie_goes_up(dc, n, v)][n]);
}

/* unread_lsb: bit k (natural order) set where the input coefficient's last bit was not read
 * (progressive_read): its magnitude is known to within one step of the input's, so it is taken
 * half a step up, the middle of where it can be. (|v| + 1/2) q_in / q_out is still a multiple
 * of 1 / (2 q_out), so the ties stay exact (the rounding test checks it). */
static void rescale_init(struct rescale_table *t, const UINT16 *q_in, const UINT16 *q_out, uint64_t unread_lsb) {
  int k;
  for (k = 0; k < DCTSIZE2; k++) {
    JCOEF zeroed = 0;
    t->scale[k] = scale_of(q_in[k], q_out[k]);
    t->half[0][k] = ROUND_HALF_DOWN + (float)(unread_lsb >> k & 1) * 0.5f * t->scale[k];
    t->half[1][k] = t->half[0][k] + (ROUND_HALF_AWAY - ROUND_HALF_DOWN);
    /* rescale is monotonic in the magnitude; this ends by q_out / (2 q_in), under 128. A tie
     * at 0.5 is kept, for its turn to go up. */
    while (rescale(zeroed + 1, t->scale[k], t->half[1][k]) == 0)
      zeroed++;
    t->max_zeroed[k] = k == 0 ? -1 : zeroed;
  }
  t->dc_in = q_in[0];
  t->flat_is_known = (unread_lsb & ~(uint64_t)1) == 0;
  for (k = 0; k < 256; k++) {
    int level = k - 128, dc = (16 * (level < 0 ? -level : level) + q_out[0]) / (2 * q_out[0]);
    t->flat_dc[k] = (JCOEF)(level < 0 ? -dc : dc); /* 8 level / q_out, half away from zero: libjpeg's */
  }
}

/* The DC coefficient on the new table: rounded half away from zero (above), except in a flat
 * block, quantised from its level (flat_level). */
static int rescale_dc(int dc, int ac_all_zero, const struct rescale_table *t) {
  int flat = t->flat_dc[flat_level(dc, t->dc_in) + 128];
  return ac_all_zero && t->flat_is_known ? flat : rescale(dc, t->scale[0], ROUND_HALF_AWAY);
}

/*
 * Huffman statistics, gathered while the coefficients are in cache instead of by libjpeg's
 * optimize_coding pass (a second walk over every coefficient, one at a time, which cost a
 * fifth of the time). The symbols counted are exactly those libjpeg's htest_one_block counts,
 * so jpeg_gen_optimal_table makes the same tables and the output is byte-identical to
 * optimize_coding's (checked by the tests).
 */

static void stats_init(struct huff_stats *st) {
  int zz, byte, bit;
  unsigned char zigzag_of[DCTSIZE2];
  memset(st, 0, sizeof(*st));
  for (zz = 0; zz < DCTSIZE2; zz++)
    zigzag_of[jpeg_natural_order[zz]] = (unsigned char)zz;
  for (byte = 0; byte < 8; byte++)
    for (bit = 0; bit < 8; bit++) {
      uint64_t zz_bit = (uint64_t)1 << zigzag_of[byte * 8 + bit];
      int value;
      for (value = 0; value < 256; value++)
        if (value & (1 << bit))
          st->zigzag_bits[byte][value] |= zz_bit;
    }
}

/*
 * Rescales a block in place (unless `t` is NULL: the tables are the same), counts its AC
 * symbols and writes the AC coefficients that stay into `kept`; 0 if a coefficient is out of
 * range for 8-bit JPEG. One walk over the non-zero coefficients in zigzag order does all three:
 * a q90-q95 input has a few to a few dozen per block, and a 64-wide vector rescale spent most of
 * its time widening and narrowing zeros.
 */
static int rescale_and_count(const struct huff_stats *st, long *ac, JCOEF *block,
                             const struct rescale_table *t, struct kept_coefficients *kept) {
  int ac_all_zero, byte, last = 0, dc_in = block[0], count = 0;
  uint64_t natural = t != NULL ? keep_survivors(block, t->max_zeroed, &ac_all_zero) : nonzero_mask(block), zz = 0;
  uint64_t kept_zigzag;
  for (byte = 0; byte < 8; byte++)
    zz |= st->zigzag_bits[byte][(natural >> (8 * byte)) & 0xFF];
  if (t != NULL)
    block[0] = (JCOEF)rescale_dc(dc_in, ac_all_zero, t);
  zz &= ~(uint64_t)1; /* DC */
  /* kept's mask and count in locals, written once at the end: GCC kept them in memory, a store
   * and a reload on every coefficient's path */
  kept_zigzag = zz;
  while (zz) {
    int k = __builtin_ctzll(zz), n = jpeg_natural_order[k], v = block[n], run, nbits;
    zz &= zz - 1;
    if (t != NULL) {
      v = rescale_ac(t, dc_in, n, v);
      block[n] = (JCOEF)v;
      if (v == 0) { /* a tie at 0.5 that went down */
        kept_zigzag &= ~((uint64_t)1 << k);
        continue;
      }
    }
    kept->ac[count++] = (JCOEF)v;
    run = k - last - 1;
    last = k;
    nbits = bit_length((unsigned)(v < 0 ? -v : v));
    if (nbits > MAX_AC_BITS)
      return 0; /* `kept` is not read then: the image goes to decode + encode */
    for (; run > 15; run -= 16)
      ac[0xF0]++;
    ac[(run << 4) + nbits]++;
  }
  kept->zigzag = kept_zigzag;
  kept->count = count;
  if (last < DCTSIZE2 - 1)
    ac[0]++; /* end of block */
  return 1;
}

/* One DC difference; 0 if out of range. */
static int count_dc(long *dc, int value, int *last) {
  int diff = value - *last, nbits = bit_length((unsigned)(diff < 0 ? -diff : diff));
  *last = value;
  if (nbits > MAX_AC_BITS + 1)
    return 0;
  dc[nbits]++;
  return 1;
}

static uint64_t monotonic_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/*
 * EXIF orientation as a lossless transform of the block grid and of each block's coefficients,
 * as jpegtran's: transpose first, then mirror the result left-right (flip_x) and/or top-bottom
 * (flip_y). Mirroring a block negates its odd frequencies on that axis; transposing it swaps
 * its rows and columns. Indexed by the EXIF value, 1-8.
 */
struct orientation {
  int transpose, flip_x, flip_y;
};

static const struct orientation ORIENTATIONS[9] = {
    {0, 0, 0}, {0, 0, 0}, {0, 1, 0}, {0, 1, 1}, {0, 0, 1}, {1, 0, 0}, {1, 1, 0}, {1, 1, 1}, {1, 0, 1},
};

/* out[to[n]] = sign[n] * in[n]: one block under an orientation. */
struct block_transform {
  unsigned char to[DCTSIZE2];
  signed char sign[DCTSIZE2];
};

static void block_transform_init(struct block_transform *bt, const struct orientation *o) {
  int v, u;
  for (v = 0; v < DCTSIZE; v++)
    for (u = 0; u < DCTSIZE; u++) {
      /* (u, v): the place in the output block, after the transpose */
      int k = v * DCTSIZE + u, n = o->transpose ? u * DCTSIZE + v : k;
      bt->to[n] = (unsigned char)k;
      bt->sign[n] = (signed char)((o->flip_x && (u & 1)) ^ (o->flip_y && (v & 1)) ? -1 : 1);
    }
}

/*
 * Turns the input block into `out`, rescaling it first when `t` is given (in the input's order:
 * each coefficient's input quantiser over the output quantiser of its new place). Only the
 * coefficients that stay are moved: a q90-q95 block keeps a few of its dozens on q50's tables,
 * so the turn costs little more than the upright walk. `in` may be cleared.
 */
static void turn_block(const struct block_transform *bt, JCOEF *in, JCOEF *out, const struct rescale_table *t) {
  int ac_all_zero;
  uint64_t kept = t != NULL ? keep_survivors(in, t->max_zeroed, &ac_all_zero) : nonzero_mask(in);
  memset(out, 0, DCTSIZE2 * sizeof(JCOEF));
  if (t != NULL) {
    out[0] = (JCOEF)rescale_dc(in[0], ac_all_zero, t); /* in place, never negated */
    kept &= ~(uint64_t)1;
  }
  while (kept) {
    int n = __builtin_ctzll(kept), v = in[n];
    kept &= kept - 1;
    if (t != NULL)
      v = rescale_ac(t, in[0], n, v);
    out[bt->to[n]] = (JCOEF)(bt->sign[n] * v);
  }
}

/* The output's shape: upright, grayscale or 4:2:0. */
struct layout {
  int components;
  int dx, dy; /* input chroma blocks per output chroma block, across and down (1 or 2) */
  /* Colour, a mirrored side 8 pixels off a whole MCU (the output's x, y): its chroma blocks
   * start half a block into the input's (see plan_layout) */
  int shift_x, shift_y;
  struct orientation orientation;
  JDIMENSION width, height;
  JDIMENSION width_in_blocks[MAX_COMPONENTS], height_in_blocks[MAX_COMPONENTS];
};

static JDIMENSION blocks_for(JDIMENSION pixels, int pixels_per_block) {
  return (pixels + (JDIMENSION)pixels_per_block - 1) / (JDIMENSION)pixels_per_block;
}

/*
 * The layout for an input header, or 0 when requantisation does not apply to it. Applies to
 * 8-bit Huffman-coded grayscale and YCbCr with full-size luma and chroma at 1x1 (4:2:0, 4:2:2,
 * 4:4:0, 4:4:4). Mirroring an axis is exact only when the output's size on it is a whole number
 * of blocks (8 pixels): a partial edge block would move to the other side with its padding.
 * Such files go through decode + encode (measured in docs/performance.md: how often phone sizes
 * are affected). In colour a mirrored side may be 8 pixels off a whole MCU, as 3000 of a
 * 4000x3000 phone photo is: its luma is whole blocks, and its chroma, 4 pixels off whole blocks,
 * starts half a chroma block into the input's once mirrored (shift_x, shift_y; build_component).
 */
static int plan_layout(j_decompress_ptr src, int orientation, struct layout *l) {
  jpeg_component_info *c = src->comp_info;
  int gray = src->num_components == 1 && src->jpeg_color_space == JCS_GRAYSCALE;
  int ycc = src->num_components == 3 && src->jpeg_color_space == JCS_YCbCr &&
            (c[0].h_samp_factor == 1 || c[0].h_samp_factor == 2) &&
            (c[0].v_samp_factor == 1 || c[0].v_samp_factor == 2) && c[1].h_samp_factor == 1 &&
            c[1].v_samp_factor == 1 && c[2].h_samp_factor == 1 && c[2].v_samp_factor == 1;
  int ci;
  /* The colour space is libjpeg's reading of the header: an Adobe marker with transform 1 (as
   * Photoshop writes YCbCr) gives YCbCr, transform 0 RGB (refused, like CMYK and YCCK). */
  if (!(gray || ycc) || src->data_precision != 8 || src->arith_code || orientation < 1 || orientation > 8)
    return 0;
  l->components = src->num_components;
  l->dx = gray ? 1 : 3 - c[0].h_samp_factor;
  l->dy = gray ? 1 : 3 - c[0].v_samp_factor;
  l->orientation = ORIENTATIONS[orientation];
  l->width = l->orientation.transpose ? src->image_height : src->image_width;
  l->height = l->orientation.transpose ? src->image_width : src->image_height;
  if ((l->orientation.flip_x && l->width % DCTSIZE) || (l->orientation.flip_y && l->height % DCTSIZE))
    return 0;
  l->shift_x = !gray && l->orientation.flip_x && l->width % (2 * DCTSIZE) != 0;
  l->shift_y = !gray && l->orientation.flip_y && l->height % (2 * DCTSIZE) != 0;
  for (ci = 0; ci < l->components; ci++) {
    int pixels_per_block = ci == 0 ? DCTSIZE : 2 * DCTSIZE;
    l->width_in_blocks[ci] = blocks_for(l->width, pixels_per_block);
    l->height_in_blocks[ci] = blocks_for(l->height, pixels_per_block);
  }
  return 1;
}

/* Every row of a virtual array, for walking it in any order. libjpeg keeps a whole array in
 * memory or fails (we give it no backing store), so the pointers stay valid. */
static JBLOCKROW *all_rows(j_decompress_ptr src, jvirt_barray_ptr array, JDIMENSION rows) {
  JBLOCKROW *pointers = (JBLOCKROW *)(*src->mem->alloc_large)((j_common_ptr)src, JPOOL_IMAGE,
                                                               (size_t)rows * sizeof(JBLOCKROW));
  JDIMENSION y;
  for (y = 0; y < rows; y++)
    pointers[y] = (*src->mem->access_virt_barray)((j_common_ptr)src, array, y, 1, FALSE)[0];
  return pointers;
}

/*
 * How component ci of the output is made (build_row). Each output block is taken from the input
 * block at its place before the orientation, or for chroma to be halved or shifted made from the
 * input blocks covering that place (chroma_downsample.c; the nearest where they run past the
 * edge), then turned by the orientation, rescaled to q_out, counted and stored. The blocks are
 * made in the input's order, row by row of the grid before the turn ("unturned"), so that an
 * input read in bands (read_in_bands) can be dropped row by row.
 */
struct component_plan {
  const struct orientation *o;
  int turned, mapped, same;
  /* Chroma, on each axis of the input: an output block is made of two input blocks where the
   * axis is halved or shifted, starting one block earlier (half a block, shifted) where the
   * mirrored side is 8 pixels off a whole MCU; of one where the axis is kept. */
  int dx, dy, back_x, back_y;
  JDIMENSION width, height;                   /* the output's, in blocks */
  JDIMENSION unturned_width, unturned_height; /* the same grid before the turn */
  JDIMENSION last_x, last_y;                  /* the input's last block */
  struct rescale_table table;
  struct block_transform bt;
  float q_in_float[DCTSIZE2], unread_half_step[DCTSIZE2], inverse_q_out_unturned[DCTSIZE2];
  struct chroma_downsampler downsampler;
  long *ac;
  struct block_store *store;
};

/* Component ci's chroma_axis_kind on each axis of the input (CHROMA_KEEP for luma), and on each
 * whether its output blocks start one input block earlier (back_x, back_y: shifted). Whether
 * either axis is halved or shifted, so that each output block is mapped from several input ones. */
static int chroma_axes(const struct layout *l, int ci, int *across, int *down, int *back_x, int *back_y) {
  const struct orientation *o = &l->orientation;
  *back_x = ci > 0 && (o->transpose ? l->shift_y : l->shift_x);
  *back_y = ci > 0 && (o->transpose ? l->shift_x : l->shift_y);
  *across = ci == 0 ? CHROMA_KEEP : l->dx == 2 ? CHROMA_HALVE : *back_x ? CHROMA_SHIFT : CHROMA_KEEP;
  *down = ci == 0 ? CHROMA_KEEP : l->dy == 2 ? CHROMA_HALVE : *back_y ? CHROMA_SHIFT : CHROMA_KEEP;
  return *across != CHROMA_KEEP || *down != CHROMA_KEEP;
}

static void plan_component(struct component_plan *p, const struct layout *l, int ci, const jpeg_component_info *comp,
                           const UINT16 *q_in, const UINT16 *q_out, uint64_t unread_lsb, long *ac,
                           struct block_store *store) {
  const struct orientation *o = &l->orientation;
  int across, down, k;
  /* The tables are not symmetric: a transposed coefficient keeps its input quantiser and takes
   * the output quantiser of its new place. So the tables are taken in the input's order: each
   * coefficient rescaled (or halved chroma quantised) before it is turned, on the output
   * quantiser of the place it will go to. */
  UINT16 q_out_unturned[DCTSIZE2];
  memset(p, 0, sizeof(*p));
  p->o = o;
  p->turned = o->transpose || o->flip_x || o->flip_y;
  p->mapped = chroma_axes(l, ci, &across, &down, &p->back_x, &p->back_y);
  p->dx = p->mapped ? l->dx : 1;
  p->dy = p->mapped ? l->dy : 1;
  p->width = l->width_in_blocks[ci];
  p->height = l->height_in_blocks[ci];
  p->unturned_width = o->transpose ? p->height : p->width;
  p->unturned_height = o->transpose ? p->width : p->height;
  p->last_x = comp->width_in_blocks - 1;
  p->last_y = comp->height_in_blocks - 1;
  p->ac = ac;
  p->store = store;
  block_transform_init(&p->bt, o);
  p->same = 1;
  for (k = 0; k < DCTSIZE2; k++) {
    q_out_unturned[k] = q_out[p->bt.to[k]];
    p->q_in_float[k] = (float)q_in[k];
    p->unread_half_step[k] = (float)(unread_lsb >> k & 1) * 0.5f * (float)q_in[k];
    p->inverse_q_out_unturned[k] = 1.0f / (float)q_out_unturned[k];
    p->same &= q_in[k] == q_out_unturned[k] && !(unread_lsb >> k & 1);
  }
  rescale_init(&p->table, q_in, q_out_unturned, unread_lsb);
  if (p->mapped)
    chroma_downsampler_init(&p->downsampler, across, down);
}

/* The last input row that unturned row sy reads (rows sy * dy - back_y and on). */
static JDIMENSION last_row_read(const struct component_plan *p, JDIMENSION sy) {
  long last = (long)sy * p->dy + (p->mapped ? p->downsampler.down.blocks : 1) - 1 - p->back_y;
  return last < (long)p->last_y ? (JDIMENSION)last : p->last_y;
}

/*
 * Makes, stores and counts the output blocks of unturned row sy from `in_rows` (the input's block
 * rows, indexed by row number; those sy reads must be there). 0 if a coefficient is out of range.
 * A block that is neither mapped nor turned is rescaled in the input's row, which only it reads.
 */
static int build_row(struct imgpipe_ctx *ctx, const struct component_plan *p, JBLOCKROW *in_rows, JDIMENSION sy) {
  JDIMENSION sx;
  for (sx = 0; sx < p->unturned_width; sx++) {
    /* The block's place in the output: (sx, sy) turned. */
    JDIMENSION fx = p->o->transpose ? sy : sx, fy = p->o->transpose ? sx : sy;
    JDIMENSION x = p->o->flip_x ? p->width - 1 - fx : fx, y = p->o->flip_y ? p->height - 1 - fy : fy;
    JCOEF built[DCTSIZE2], *block = built;
    struct kept_coefficients kept;
    int in_range;
    if (p->mapped) {
      JCOEF unturned[DCTSIZE2], before_edge[4][DCTSIZE2], *group[4];
      int nx = p->downsampler.across.blocks, ny = p->downsampler.down.blocks, i, j;
      for (j = 0; j < ny; j++)
        for (i = 0; i < nx; i++) {
          long bx = (long)sx * p->dx + i - p->back_x, by = (long)sy * p->dy + j - p->back_y;
          /* Before the first block (a shifted axis' first output block, whose other half
           * is the output's padding once mirrored): the first block mirrored, so that the
           * padding continues the edge smoothly, as the encoder's replicated padding does.
           * A step there would ring into the half that is seen. */
          struct orientation mirror = {0, bx < 0, by < 0};
          bx = bx < 0 ? 0 : bx > (long)p->last_x ? (long)p->last_x : bx;
          by = by < 0 ? 0 : by > (long)p->last_y ? (long)p->last_y : by;
          group[j * nx + i] = in_rows[by][bx];
          if (mirror.flip_x || mirror.flip_y) {
            struct block_transform flip;
            block_transform_init(&flip, &mirror);
            turn_block(&flip, in_rows[by][bx], before_edge[j * nx + i], NULL);
            group[j * nx + i] = before_edge[j * nx + i];
          }
        }
      chroma_downsample_block(&p->downsampler, group, p->q_in_float, p->unread_half_step, p->table.flat_is_known,
                              p->inverse_q_out_unturned, p->turned ? unturned : built);
      if (p->turned)
        turn_block(&p->bt, unturned, built, NULL);
      in_range = rescale_and_count(&ctx->stats, p->ac, built, NULL, &kept);
    } else if (p->turned) {
      turn_block(&p->bt, in_rows[sy][sx], built, p->same ? NULL : &p->table);
      in_range = rescale_and_count(&ctx->stats, p->ac, built, NULL, &kept);
    } else {
      block = in_rows[sy][sx];
      in_range = rescale_and_count(&ctx->stats, p->ac, block, p->same ? NULL : &p->table, &kept);
    }
    if (!in_range)
      return 0;
    if (!block_store_put(p->store, x, y, block[0], &kept))
      ERREXIT1(&ctx->src, JERR_OUT_OF_MEMORY, 12);
  }
  return 1;
}

/* Every row of every component, from whole-image arrays (`rows`: each component's rows; a
 * progressive input's, our reader's, get their DC coefficients just before they are read). */
static int build_from_arrays(struct imgpipe_ctx *ctx, const struct layout *l, JBLOCKROW **rows) {
  int ci;
  for (ci = 0; ci < l->components; ci++) {
    const struct component_plan *p = &ctx->plans[ci];
    JDIMENSION sy;
    for (sy = 0; sy < p->unturned_height; sy++) {
      if (ctx->progressive.rows[ci] != NULL)
        progressive_image_fill_dc(&ctx->progressive, ci, last_row_read(p, sy));
      if (!build_row(ctx, p, rows[ci], sy))
        return 0;
    }
  }
  return 1;
}

/*
 * A single-scan input (baseline or extended, not progressive) read in bands: libjpeg decodes one
 * row of MCUs at a time and hands each block to the inverse DCT, which we replace by a copy
 * into a ring of a few block rows per component (capture_block); the output rows those complete
 * are built at once, while they are in cache. jpeg_read_coefficients would keep every
 * coefficient of the image instead, 6 bytes a pixel at 4:4:4, fresh memory that the kernel
 * faults in and zeroes for each image: reading fossa (9.4 MP 4:4:4) into those arrays took 31 ms,
 * in bands 11-13 ms (docs/performance.md). The decoder's raw-data mode stops after the IDCT, so
 * no upsampling or colour conversion runs.
 */
#define RING_ROWS(v_samp) (2 * (v_samp) + 2) /* rows read at once, plus those a shifted pair reads back */

static void capture_block(j_decompress_ptr src, jpeg_component_info *comp, JCOEFPTR block, JSAMPARRAY output_rows,
                          JDIMENSION output_col) {
  struct imgpipe_ctx *ctx = (struct imgpipe_ctx *)src->client_data;
  /* libjpeg points output_rows at the block's pixel rows in the planes read_in_bands passed,
   * all no_rows: its distance from there gives the block's row within the band. */
  JDIMENSION y = ctx->band_row * (JDIMENSION)comp->v_samp_factor +
                 (JDIMENSION)(output_rows - ctx->no_rows) / DCTSIZE;
  memcpy(ctx->in_rows[comp->component_index][y][output_col / DCTSIZE], block, sizeof(JBLOCK));
}

static int read_in_bands(struct imgpipe_ctx *ctx, const struct layout *l, uint64_t *decode_ns) {
  j_decompress_ptr src = &ctx->src;
  JSAMPARRAY planes[MAX_COMPONENTS];
  JDIMENSION built[MAX_COMPONENTS];
  int ci;
  for (ci = 0; ci < l->components; ci++) {
    jpeg_component_info *comp = &src->comp_info[ci];
    size_t ring = (size_t)RING_ROWS(comp->v_samp_factor) * comp->width_in_blocks;
    ctx->ring[ci] = (JBLOCKROW)(*src->mem->alloc_large)((j_common_ptr)src, JPOOL_IMAGE, ring * sizeof(JBLOCK));
    ctx->in_rows[ci] = (JBLOCKROW *)(*src->mem->alloc_large)((j_common_ptr)src, JPOOL_IMAGE,
                                                             comp->height_in_blocks * sizeof(JBLOCKROW));
    /* The inverse DCT is chosen per component by jpeg_start_decompress: replaced after it. */
    src->idct->inverse_DCT[ci] = capture_block;
    planes[ci] = ctx->no_rows;
    built[ci] = 0;
  }
  src->client_data = ctx;
  for (ctx->band_row = 0; src->output_scanline < src->output_height; ctx->band_row++) {
    uint64_t started;
    for (ci = 0; ci < l->components; ci++) {
      jpeg_component_info *comp = &src->comp_info[ci];
      JDIMENSION v = (JDIMENSION)comp->v_samp_factor, y;
      for (y = ctx->band_row * v; y < (ctx->band_row + 1) * v && y < comp->height_in_blocks; y++)
        ctx->in_rows[ci][y] = ctx->ring[ci] + (size_t)(y % RING_ROWS(v)) * comp->width_in_blocks;
    }
    started = monotonic_ns();
    if (jpeg_read_raw_data(src, planes, (JDIMENSION)(src->max_v_samp_factor * DCTSIZE)) == 0)
      return 0; /* suspended: not with an input in memory */
    *decode_ns += monotonic_ns() - started;
    for (ci = 0; ci < l->components; ci++) {
      const struct component_plan *p = &ctx->plans[ci];
      jpeg_component_info *comp = &src->comp_info[ci];
      JDIMENSION read = (ctx->band_row + 1) * (JDIMENSION)comp->v_samp_factor;
      for (; built[ci] < p->unturned_height && last_row_read(p, built[ci]) < read; built[ci]++)
        if (!build_row(ctx, p, ctx->in_rows[ci], built[ci]))
          return 0;
    }
  }
  jpeg_finish_decompress(src); /* reads on to the end of the image, warning of damage after it */
  return 1;
}

/*
 * DC differences in the order the encoder writes the blocks. Gray: one non-interleaved scan,
 * raster order. 4:2:0: one interleaved scan of 16x16 MCUs, each 2x2 luma blocks then Cb then
 * Cr; where the luma blocks run out at the right or bottom edge, the encoder pads the MCU with
 * dummy blocks that repeat the previous DC (difference 0) and have no AC coefficients (an end
 * of block). 0 if a difference is out of range.
 */
static int count_dc_in_scan_order(struct huff_stats *st, const struct layout *l, const struct block_store *stores) {
  int last[3] = {0, 0, 0}, ci;
  long *dc_luma = st->dc[0], *dc_chroma = st->dc[1];
  JDIMENSION luma_w = l->width_in_blocks[0], luma_h = l->height_in_blocks[0];
  if (l->components == 1) {
    JDIMENSION x, y;
    for (y = 0; y < luma_h; y++)
      for (x = 0; x < luma_w; x++)
        if (!count_dc(dc_luma, block_store_dc(&stores[0], x, y), &last[0]))
          return 0;
  } else {
    JDIMENSION mcu_x, mcu_y, mcus_x = l->width_in_blocks[1], mcus_y = l->height_in_blocks[1];
    for (mcu_y = 0; mcu_y < mcus_y; mcu_y++)
      for (mcu_x = 0; mcu_x < mcus_x; mcu_x++) {
        int y, x;
        for (y = 0; y < 2; y++)
          for (x = 0; x < 2; x++) {
            JDIMENSION bx = 2 * mcu_x + (JDIMENSION)x, by = 2 * mcu_y + (JDIMENSION)y;
            if (bx < luma_w && by < luma_h) {
              if (!count_dc(dc_luma, block_store_dc(&stores[0], bx, by), &last[0]))
                return 0;
            } else {
              dc_luma[0]++;
              st->ac[0][0]++;
            }
          }
        for (ci = 1; ci < 3; ci++)
          if (!count_dc(dc_chroma, block_store_dc(&stores[ci], mcu_x, mcu_y), &last[ci]))
            return 0;
      }
  }
  return 1;
}

/* libjpeg's writer (the tests' reference, IMGPIPE_RQ_LIBJPEG_WRITER) reads the output's blocks
 * through its memory manager's virtual-array access: the stores stand in for its arrays
 * (requantize passes their addresses as the arrays). */
static JBLOCKARRAY writer_access(j_common_ptr cinfo, jvirt_barray_ptr array, JDIMENSION start, JDIMENSION rows,
                                 boolean writable) {
  struct imgpipe_ctx *ctx = (struct imgpipe_ctx *)cinfo->client_data;
  int ci;
  for (ci = 0; ci < MAX_COMPONENTS; ci++)
    if (array == (jvirt_barray_ptr)&ctx->stores[ci])
      return block_store_rows(&ctx->stores[ci], start, rows);
  return (*ctx->libjpeg_access)(cinfo, array, start, rows, writable);
}

/* One MCU row of the scan, called by jpeg_finish_compress once libjpeg has written the headers
 * (with our Huffman tables); the last row ends the scan's bits, so libjpeg's own encoder, never
 * given a block, has none to write before the end of image. */
static boolean write_scan_row(j_compress_ptr dst, JSAMPIMAGE unused) {
  struct imgpipe_ctx *ctx = (struct imgpipe_ctx *)dst->client_data;
  unsigned char *start = dest_reserve(dst, scan_writer_row_bound(&ctx->scan)), *end;
  (void)unused;
  end = scan_writer_row(&ctx->scan, start);
  if (ctx->scan.row == dst->total_iMCU_rows)
    end = scan_writer_flush(&ctx->scan, end);
  dst->dest->next_output_byte = end;
  dst->dest->free_in_buffer -= (size_t)(end - start);
  return TRUE;
}

/*
 * For each input component and coefficient (natural order), the smallest output quantiser it
 * can land on (progressive_read skips a last refinement scan whose bit is far below it): the
 * quantiser at its place once turned; for chroma halved or shifted, where each input
 * coefficient feeds several output frequencies, the smallest AC quantiser of the table.
 */
static void output_steps_of(j_decompress_ptr src, j_compress_ptr dst, const struct layout *l,
                            UINT16 steps[MAX_COMPONENTS][DCTSIZE2]) {
  struct block_transform bt;
  int ci, n, across, down, back_x, back_y;
  block_transform_init(&bt, &l->orientation);
  for (ci = 0; ci < src->num_components; ci++) {
    const UINT16 *q_out = dst->quant_tbl_ptrs[ci == 0 ? 0 : 1]->quantval;
    int mapped = chroma_axes(l, ci, &across, &down, &back_x, &back_y);
    UINT16 smallest_ac = 0xFFFF;
    for (n = 1; n < DCTSIZE2; n++)
      smallest_ac = q_out[n] < smallest_ac ? q_out[n] : smallest_ac;
    for (n = 0; n < DCTSIZE2; n++)
      steps[ci][n] = mapped ? smallest_ac : q_out[bt.to[n]];
  }
}

static int requantize(struct imgpipe_ctx *ctx, const unsigned char *in, unsigned long in_len, int quality,
                      int orientation, unsigned long max_memory, int flags, uint64_t *decode_ns) {
  j_decompress_ptr src = &ctx->src;
  j_compress_ptr dst = &ctx->dst;
  jvirt_barray_ptr *coefs, out_coefs[MAX_COMPONENTS];
  JBLOCKROW *whole_rows[MAX_COMPONENTS]; /* a multi-scan input's, read whole */
  size_t input_bytes = 0;
  struct layout l;
  int ci, k, in_bands;
  UINT16 output_steps[MAX_COMPONENTS][DCTSIZE2];

  jpeg_create_decompress(src);
  ctx->src_created = 1;
  if (max_memory > 0)
    src->mem->max_memory_to_use = (long)max_memory;
  jpeg_mem_src(src, in, in_len);
  /* No APPn/COM marker is saved: none is copied (the caller adds the ICC profile back). */
  if (jpeg_read_header(src, TRUE) != JPEG_HEADER_OK || ctx->src_err.pub.num_warnings > 0)
    return IMGPIPE_RQ_NOT_APPLICABLE;
  if (!plan_layout(src, orientation, &l))
    return IMGPIPE_RQ_NOT_APPLICABLE;

  /* The quantisation check, on the tables the header defined, before the expensive part: a
   * coarser input (the common case for files already at q50 or below) costs only its header. */
  jpeg_create_compress(dst);
  ctx->dst_created = 1;
  dst->in_color_space = src->jpeg_color_space;
  dst->input_components = src->num_components;
  jpeg_set_defaults(dst);
  jpeg_set_quality(dst, quality, TRUE);
  for (ci = 0; ci < src->num_components; ci++) {
    int tbl = src->comp_info[ci].quant_tbl_no;
    JQUANT_TBL *q_in = tbl >= 0 && tbl < NUM_QUANT_TBLS ? src->quant_tbl_ptrs[tbl] : NULL;
    JQUANT_TBL *q_out = dst->quant_tbl_ptrs[ci == 0 ? 0 : 1];
    if (q_in == NULL || q_out == NULL)
      continue; /* defined later in the file: checked below */
    for (k = 0; k < DCTSIZE2; k++)
      if (q_in->quantval[k] > q_out->quantval[k])
        return IMGPIPE_RQ_NOT_APPLICABLE;
  }

  /* A single scan is read in bands, the output built as it comes (read_in_bands); progressive
   * and other multi-scan inputs need every coefficient before any is final. Either way the
   * quantisers are latched by here. Damaged data: the decoder path judges it. */
  in_bands = !jpeg_has_multiple_scans(src);
  *decode_ns = monotonic_ns();
  if (in_bands) {
    src->raw_data_out = TRUE;
    jpeg_start_decompress(src);
  } else if (src->progressive_mode && !(flags & IMGPIPE_RQ_LIBJPEG_READER)) {
    int read;
    input_bytes = progressive_image_bytes(src);
    if (max_memory > 0 && input_bytes > max_memory)
      ERREXIT1(src, JERR_OUT_OF_MEMORY, 14);
    output_steps_of(src, dst, &l, output_steps);
    read = progressive_read(src, &ctx->progressive, (flags & IMGPIPE_RQ_EVERY_SCAN) ? NULL : output_steps);
    if (read < 0)
      ERREXIT1(src, JERR_OUT_OF_MEMORY, 15);
    if (read == 0)
      return IMGPIPE_RQ_NOT_APPLICABLE;
    for (ci = 0; ci < l.components; ci++)
      whole_rows[ci] = ctx->progressive.rows[ci];
  } else {
    coefs = jpeg_read_coefficients(src);
    if (coefs == NULL || ctx->src_err.pub.num_warnings > 0)
      return IMGPIPE_RQ_NOT_APPLICABLE;
    for (ci = 0; ci < l.components; ci++) {
      input_bytes += (size_t)src->comp_info[ci].width_in_blocks * src->comp_info[ci].height_in_blocks * sizeof(JBLOCK);
      whole_rows[ci] = all_rows(src, coefs[ci], src->comp_info[ci].height_in_blocks);
    }
  }
  *decode_ns = monotonic_ns() - *decode_ns;

  jpeg_copy_critical_parameters(src, dst);
  dst->image_width = l.width;
  dst->image_height = l.height;
  /* Tables 0 (luma) and 1 (chroma) at `quality` with libjpeg's scaling, and 4:2:0: the tables
   * and subsampling Pillow and turbojpeg write at that quality. */
  jpeg_set_quality(dst, quality, TRUE);
  for (ci = 0; ci < dst->num_components; ci++) {
    dst->comp_info[ci].quant_tbl_no = ci == 0 ? 0 : 1;
    dst->comp_info[ci].h_samp_factor = dst->comp_info[ci].v_samp_factor = ci == 0 && l.components == 3 ? 2 : 1;
  }
  /* Our own statistics and scan (below), or libjpeg's for the tests to compare with. */
  dst->optimize_coding = (flags & IMGPIPE_RQ_LIBJPEG_WRITER) != 0;
  dst->write_JFIF_header = TRUE;
  dst->write_Adobe_marker = FALSE;
  if (dst->comp_info[0].dc_tbl_no != 0 || dst->comp_info[0].ac_tbl_no != 0 ||
      (l.components == 3 && (dst->comp_info[1].dc_tbl_no != 1 || dst->comp_info[2].dc_tbl_no != 1)))
    return IMGPIPE_RQ_NOT_APPLICABLE; /* not the table assignment count_dc_in_scan_order assumes */

  /* Every input quantiser (as latched for decoding) must be no coarser than its target's. */
  for (ci = 0; ci < src->num_components; ci++) {
    JQUANT_TBL *q_in = src->comp_info[ci].quant_table;
    JQUANT_TBL *q_out = dst->quant_tbl_ptrs[dst->comp_info[ci].quant_tbl_no];
    if (q_in == NULL || q_out == NULL)
      return IMGPIPE_RQ_NOT_APPLICABLE;
    for (k = 0; k < DCTSIZE2; k++)
      if (q_in->quantval[k] == 0 || q_in->quantval[k] > q_out->quantval[k])
        return IMGPIPE_RQ_NOT_APPLICABLE;
  }

  /* The output's blocks, kept sparse, within what max_memory leaves beside the input's arrays. */
  ctx->store_budget = (size_t)-1;
  if (max_memory > 0)
    ctx->store_budget = max_memory > input_bytes ? max_memory - input_bytes : 0;
  ctx->plans = (struct component_plan *)(*src->mem->alloc_small)((j_common_ptr)src, JPOOL_IMAGE,
                                                                  (size_t)l.components * sizeof(struct component_plan));
  stats_init(&ctx->stats);
  for (ci = 0; ci < l.components; ci++) {
    const UINT16 *q_in = src->comp_info[ci].quant_table->quantval;
    const UINT16 *q_out = dst->quant_tbl_ptrs[dst->comp_info[ci].quant_tbl_no]->quantval;
    if (!block_store_init(&ctx->stores[ci], l.width_in_blocks[ci], l.height_in_blocks[ci],
                          dst->optimize_coding ? dst->comp_info[ci].v_samp_factor : 0, &ctx->store_budget))
      ERREXIT1(src, JERR_OUT_OF_MEMORY, 13);
    plan_component(&ctx->plans[ci], &l, ci, &src->comp_info[ci], q_in, q_out, ctx->progressive.unread_lsb[ci],
                   ctx->stats.ac[dst->comp_info[ci].ac_tbl_no ? 1 : 0], &ctx->stores[ci]);
    out_coefs[ci] = (jvirt_barray_ptr)&ctx->stores[ci];
  }

  /* Rescale (and turn, and halve chroma), counting the AC symbols and keeping the DC values:
   * their differences follow the MCU order, counted after. */
  if (!(in_bands ? read_in_bands(ctx, &l, decode_ns) : build_from_arrays(ctx, &l, whole_rows)))
    return IMGPIPE_RQ_NOT_APPLICABLE;
  progressive_image_free(&ctx->progressive); /* built: not needed while the output is written */
  if (ctx->src_err.pub.num_warnings > 0)
    return IMGPIPE_RQ_NOT_APPLICABLE; /* damaged data, found while reading in bands */
  if (!count_dc_in_scan_order(&ctx->stats, &l, ctx->stores))
    return IMGPIPE_RQ_NOT_APPLICABLE;
  for (ci = 0; ci < (l.components == 1 ? 1 : 2) && !dst->optimize_coding; ci++) {
    if (dst->dc_huff_tbl_ptrs[ci] == NULL)
      dst->dc_huff_tbl_ptrs[ci] = jpeg_alloc_huff_table((j_common_ptr)dst);
    if (dst->ac_huff_tbl_ptrs[ci] == NULL)
      dst->ac_huff_tbl_ptrs[ci] = jpeg_alloc_huff_table((j_common_ptr)dst);
    jpeg_gen_optimal_table(dst, dst->dc_huff_tbl_ptrs[ci], ctx->stats.dc[ci]);
    jpeg_gen_optimal_table(dst, dst->ac_huff_tbl_ptrs[ci], ctx->stats.ac[ci]);
  }

  /* Start at a third of the input: q50 of a finer input is usually smaller than that. */
  ctx->dest.capacity = in_len / 3 > 4096 ? in_len / 3 : 4096;
  ctx->dest.buffer = (unsigned char *)malloc(ctx->dest.capacity);
  if (ctx->dest.buffer == NULL)
    ERREXIT1(dst, JERR_OUT_OF_MEMORY, 11);
  ctx->dest.pub.init_destination = dest_init;
  ctx->dest.pub.empty_output_buffer = dest_empty;
  ctx->dest.pub.term_destination = dest_term;
  dst->dest = &ctx->dest.pub;
  dst->client_data = ctx;
  ctx->libjpeg_access = dst->mem->access_virt_barray;
  dst->mem->access_virt_barray = writer_access;
  jpeg_write_coefficients(dst, out_coefs);
  if (!dst->optimize_coding) {
    scan_writer_init(&ctx->scan, ctx->stores, l.components);
    for (ci = 0; ci < (l.components == 1 ? 1 : 2); ci++) {
      jpeg_make_c_derived_tbl(dst, TRUE, ci, &ctx->scan.dc[ci]);
      jpeg_make_c_derived_tbl(dst, FALSE, ci, &ctx->scan.ac[ci]);
    }
    dst->coef->compress_data = write_scan_row;
  }
  jpeg_finish_compress(dst);
  return IMGPIPE_RQ_OK;
}

/*
 * Returns IMGPIPE_RQ_OK with *out (free it with imgpipe_requantize_free), *out_len, *width and
 * *height set (the output's: turned by the orientation); IMGPIPE_RQ_NOT_APPLICABLE; or
 * IMGPIPE_RQ_ERROR with a message in err_msg. orientation: the input's EXIF orientation, 1-8,
 * applied to the output. max_memory bounds the input's coefficients and the output's blocks (0: no bound). flags:
 * 0, or IMGPIPE_RQ_LIBJPEG_WRITER. *decode_ns: time spent reading (entropy-decoding) the
 * coefficients, the part decode + encode would also spend (in bands: the time inside libjpeg's
 * reading calls, each block's copy into the ring included); the rest of the call is the encode.
 */
int imgpipe_requantize(const unsigned char *in, unsigned long in_len, int quality, int orientation,
                       unsigned long max_memory, unsigned char **out, unsigned long *out_len,
                       unsigned int *width, unsigned int *height, char *err_msg, int err_len,
                       int flags, uint64_t *decode_ns) {
  struct imgpipe_ctx *volatile ctx;
  int result, ci;

  *out = NULL;
  *out_len = 0;
  *decode_ns = 0;
  if (err_msg != NULL && err_len > 0)
    err_msg[0] = '\0';
  ctx = (struct imgpipe_ctx *)calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    if (err_msg != NULL && err_len > 0)
      snprintf(err_msg, (size_t)err_len, "out of memory");
    return IMGPIPE_RQ_ERROR;
  }
  ctx->src.err = &ctx->src_err.pub;
  ctx->dst.err = &ctx->dst_err.pub;
  init_error(ctx, &ctx->src_err, err_msg, err_len);
  init_error(ctx, &ctx->dst_err, err_msg, err_len);

  if (setjmp(ctx->jump))
    result = IMGPIPE_RQ_ERROR;
  else
    result = requantize(ctx, in, in_len, quality, orientation, max_memory, flags, decode_ns);

  if (result == IMGPIPE_RQ_OK) {
    *out = ctx->dest.buffer;
    *out_len = (unsigned long)ctx->dest.length;
    *width = ctx->dst.image_width;
    *height = ctx->dst.image_height;
    ctx->dest.buffer = NULL;
  }
  if (ctx->dst_created)
    jpeg_destroy_compress(&ctx->dst);
  if (ctx->src_created)
    jpeg_destroy_decompress(&ctx->src);
  for (ci = 0; ci < MAX_COMPONENTS; ci++)
    block_store_free(&ctx->stores[ci]);
  progressive_image_free(&ctx->progressive);
  free(ctx->dest.buffer);
  free(ctx);
  return result;
}

void imgpipe_requantize_free(unsigned char *buffer) { free(buffer); }

/* The rounding rule, for the tests: each of the `count` values, as an AC coefficient (`kind` 0),
 * the DC coefficient of a block with an AC one (1) or of a block whose AC are all 0 (2), of
 * quantiser q_in, expressed on q_out through the path a block takes (rescale_init's thresholds,
 * keep_survivors, rescale_and_count); `unread_lsb`: the AC coefficients' last bits were not read
 * (progressive_read). */
int imgpipe_requantize_coefficients(const int *values, int *out, int count, int q_in, int q_out, int kind,
                                    int unread_lsb) {
  struct huff_stats *st = (struct huff_stats *)malloc(sizeof(*st));
  struct rescale_table t;
  UINT16 q_in_table[DCTSIZE2], q_out_table[DCTSIZE2];
  int i, k, place = kind ? 0 : 9;
  if (st == NULL)
    return 0;
  stats_init(st);
  for (k = 0; k < DCTSIZE2; k++) {
    q_in_table[k] = (UINT16)q_in;
    q_out_table[k] = (UINT16)q_out;
  }
  rescale_init(&t, q_in_table, q_out_table, unread_lsb ? ~(uint64_t)1 : 0);
  for (i = 0; i < count; i++) {
    JCOEF block[DCTSIZE2];
    memset(block, 0, sizeof(block));
    block[place] = (JCOEF)values[i];
    block[DCTSIZE2 - 1] = (JCOEF)(kind == 1);
    struct kept_coefficients kept;
    (void)rescale_and_count(st, st->ac[0], block, &t, &kept); /* 0 when out of range; the value is written */
    out[i] = block[place];
  }
  free(st);
  return 1;
}
