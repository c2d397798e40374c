/* See progressive_reader.h. The decoding rules are ITU T.81 G.1.2; where the standard leaves a
 * damaged stream's reading open, libjpeg-turbo's jdphuff.c is followed as far as telling damage
 * apart, and damage ends the reading (libjpeg would warn, and the caller goes to the decoder). */
#include <stdlib.h>
#include <string.h>

#include "progressive_reader.h"

extern const int jpeg_natural_order[]; /* zigzag index -> natural index (libjpeg) */

#define LOOKAHEAD 9 /* bits of a Huffman code decoded by one table lookup */
#define SKIP_RATIO 8       /* see not_needed */
#define SKIP_QUANTISER 2   /* see not_needed */
#define DATA_END 0x100 /* in place of a marker: the data ended without one */

/* A Huffman table, as DHT defines it and as decoding wants it. */
struct huffman_table {
  int defined;
  UINT8 bits[17]; /* codes of each length */
  UINT8 symbols[256];
  uint16_t fast[1 << LOOKAHEAD]; /* the next LOOKAHEAD bits -> length << 8 | symbol; 0: longer */
  /* The codes of a value whose bits (a refinement scan's: its sign) fit in LOOKAHEAD with the
   * code's: the next LOOKAHEAD bits -> the value << 16 | run << 4 | the bits of both; 0: another
   * symbol, or longer. In an AC scan the value is a new coefficient (as the scan's Al shifts it),
   * in a DC first scan the difference from the previous DC. */
  int32_t fast_value[1 << LOOKAHEAD];
  int32_t max_code[18];          /* the largest code of each length, -1 if none */
  int offset[17];                /* a code of that length, plus this, indexes symbols */
};

/* The entropy-coded bits, most significant first, after the byte stuffing is undone. At a
 * marker (or the end of the data) reading stops and zero bits are given instead, counted in
 * `padding`: a scan that takes any of them is damaged. */
struct bit_reader {
  const UINT8 *next, *end;
  uint64_t bits; /* the next `count` bits, left-aligned */
  int count, padding;
  int marker; /* the marker reading stopped at (its second byte), 0 before one */
};

struct reader {
  j_decompress_ptr src;
  struct progressive_image *image;
  struct bit_reader in;
  struct huffman_table dc[NUM_HUFF_TBLS], ac[NUM_HUFF_TBLS];
  unsigned restart_interval;
  /* The scan being read */
  int comps_in_scan, scan_comp[MAX_COMPS_IN_SCAN], dc_table[MAX_COMPS_IN_SCAN], ac_table[MAX_COMPS_IN_SCAN];
  int Ss, Se, Ah, Al;
  int last_dc[MAX_COMPS_IN_SCAN];
  unsigned eobrun;
  /* Per component and coefficient, the last bit position read: -1 before any scan (libjpeg's
   * coef_bits), to refuse scans out of order. */
  int coef_bits[MAX_COMPONENTS][DCTSIZE2];
  const UINT16 (*output_steps)[DCTSIZE2]; /* progressive_read's; NULL: every scan is read */
  UINT8 select_in_byte[256][8]; /* [byte][n]: the place of its set bit n (from 0, lowest first) */
};

/* A component's width or height in blocks, padded to whole MCUs of an interleaved scan. */
static JDIMENSION padded(JDIMENSION blocks, int samp_factor) {
  return (blocks + (JDIMENSION)samp_factor - 1) / (JDIMENSION)samp_factor * (JDIMENSION)samp_factor;
}

/* Bytes of blocks per band of rows. Below glibc's largest mmap threshold (32 MB), so that the
 * bands come from its heap and are used again by the next image: a fresh mapping is zeroed by
 * the kernel page by page as it is first touched, ~35 ms of faults for the 18 MP elephants. */
#define BAND_BYTES ((size_t)8 << 20)

size_t progressive_image_bytes(j_decompress_ptr src) {
  size_t bytes = 0;
  int ci;
  for (ci = 0; ci < src->num_components; ci++) {
    jpeg_component_info *c = &src->comp_info[ci];
    size_t height = padded(c->height_in_blocks, c->v_samp_factor);
    size_t blocks = (size_t)padded(c->width_in_blocks, c->h_samp_factor) * height;
    bytes += blocks * (sizeof(JBLOCK) + sizeof(JCOEF) + sizeof(uint64_t)) + height * sizeof(JBLOCKROW);
  }
  return bytes;
}

void progressive_image_free(struct progressive_image *image) {
  int ci, b;
  for (ci = 0; ci < MAX_COMPONENTS; ci++) {
    for (b = 0; b < image->bands[ci]; b++)
      free(image->band[ci][b]);
    free(image->rows[ci]);
    free(image->dc[ci]);
    free(image->nonzero[ci]);
  }
  memset(image, 0, sizeof(*image));
}

static int allocate(j_decompress_ptr src, struct progressive_image *image) {
  int ci;
  memset(image, 0, sizeof(*image));
  image->components = src->num_components;
  for (ci = 0; ci < src->num_components; ci++) {
    jpeg_component_info *c = &src->comp_info[ci];
    JDIMENSION width = padded(c->width_in_blocks, c->h_samp_factor);
    JDIMENSION height = padded(c->height_in_blocks, c->v_samp_factor), y;
    /* as many rows per band as fit, and few enough bands (at most 64: 65535 rows of blocks) */
    JDIMENSION rows_per_band = (JDIMENSION)(BAND_BYTES / ((size_t)width * sizeof(JBLOCK)));
    if (rows_per_band * 64 < height)
      rows_per_band = (height + 63) / 64;
    if (rows_per_band == 0)
      rows_per_band = 1;
    image->width[ci] = width;
    image->height[ci] = height;
    image->dc[ci] = (JCOEF *)calloc((size_t)width * height, sizeof(JCOEF));
    image->nonzero[ci] = (uint64_t *)calloc((size_t)width * height, sizeof(uint64_t));
    image->rows[ci] = (JBLOCKROW *)malloc((size_t)height * sizeof(JBLOCKROW));
    if (image->dc[ci] == NULL || image->nonzero[ci] == NULL || image->rows[ci] == NULL)
      return 0;
    for (y = 0; y < height; y += rows_per_band) {
      JDIMENSION rows = height - y < rows_per_band ? height - y : rows_per_band, i;
      JBLOCKROW band = (JBLOCKROW)calloc((size_t)width * rows, sizeof(JBLOCK)); /* zeroed, as libjpeg's arrays */
      if (band == NULL)
        return 0;
      image->band[ci][image->bands[ci]++] = band;
      for (i = 0; i < rows; i++)
        image->rows[ci][y + i] = band + (size_t)i * width;
    }
  }
  return 1;
}

void progressive_image_fill_dc(struct progressive_image *image, int ci, JDIMENSION last_row) {
  for (; image->dc_filled[ci] <= last_row && image->dc_filled[ci] < image->height[ci]; image->dc_filled[ci]++) {
    JDIMENSION y = image->dc_filled[ci], x;
    const JCOEF *dc = image->dc[ci] + (size_t)y * image->width[ci];
    for (x = 0; x < image->width[ci]; x++)
      image->rows[ci][y][x][0] = dc[x];
  }
}

/* --- Huffman tables --- */

/* A coefficient of `size` bits as the stream codes it (T.81 F.12, EXTEND), without a branch on
 * its sign, which the predictor would miss half the time. */
static inline int extend(unsigned bits, int size) {
  int negative = -(int)(bits < (1u << size) >> 1);
  return (int)bits + (negative & (int)(1u - (1u << size)));
}

/* al: an AC scan's point transform, for fast_value; 0 for a DC table, whose fast_value gives the
 * difference (size 0 included: a difference of 0). max_size: the largest coefficient fast_value
 * gives (1 in a refinement scan, whose other sizes are damage). */
static int build_table(struct huffman_table *t, int is_dc, int al, int max_size) {
  int length, i, n = 0, code = 0;
  memset(t->fast, 0, sizeof(t->fast));
  for (length = 1; length <= 16; length++) {
    int count = t->bits[length];
    t->offset[length] = n - code;
    t->max_code[length] = count ? code + count - 1 : -1;
    for (i = 0; i < count; i++, n++, code++) {
      if (n > 255)
        return 0;
      if (is_dc && t->symbols[n] > 15)
        return 0;
      if (length <= LOOKAHEAD) {
        int low = code << (LOOKAHEAD - length), fill;
        for (fill = 0; fill < 1 << (LOOKAHEAD - length); fill++)
          t->fast[low + fill] = (uint16_t)(length << 8 | t->symbols[n]);
      }
    }
    if (code >= 1 << length)
      return 0; /* more codes than the length allows, or the all-ones code (libjpeg: JERR_BAD_HUFF_TABLE) */
    code <<= 1;
  }
  t->max_code[17] = 0x7FFFFFFF; /* ends the slow search */
  for (i = 0; i < 1 << LOOKAHEAD; i++) {
    int entry = t->fast[i], length = entry >> 8, run = (entry >> 4) & 15, size = entry & 15;
    t->fast_value[i] = 0;
    if (entry != 0 && (size != 0 || is_dc) && size <= max_size && length + size <= LOOKAHEAD) {
      unsigned bits = (unsigned)(i >> (LOOKAHEAD - length - size)) & ((1u << size) - 1);
      JCOEF value = (JCOEF)((unsigned)extend(bits, size) << al);
      t->fast_value[i] = (int32_t)((uint32_t)(uint16_t)value << 16 | (uint32_t)(run << 4 | (length + size)));
    }
  }
  return 1;
}

static void copy_table(struct huffman_table *t, const JHUFF_TBL *from) {
  t->defined = from != NULL;
  if (from != NULL) {
    memcpy(t->bits, from->bits, sizeof(t->bits));
    memcpy(t->symbols, from->huffval, sizeof(t->symbols));
  }
}

/* --- Bits --- */

static int has_ff_byte(uint64_t w) {
  uint64_t x = ~w;
  return ((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL) != 0;
}

/* Tops up to at least 57 bits a byte at a time (ensure takes eight bytes without an FF at once),
 * or pads after a marker or the end of data. */
static __attribute__((noinline)) void fill(struct bit_reader *in) {
  while (in->count <= 56) {
    unsigned byte;
    if (in->marker != 0 || in->next >= in->end) {
      in->marker = in->marker != 0 ? in->marker : DATA_END;
      in->padding += 64 - in->count;
      in->count = 64; /* the bits below the real ones are zero already */
      return;
    }
    byte = *in->next++;
    if (byte == 0xFF) {
      while (in->next < in->end && *in->next == 0xFF)
        in->next++; /* fill bytes before a marker */
      if (in->next >= in->end) {
        in->marker = DATA_END;
        continue;
      }
      if (*in->next != 0) {
        in->marker = *in->next++;
        continue;
      }
      in->next++; /* 0xFF 0x00: a data byte 0xFF */
    }
    in->bits |= (uint64_t)byte << (56 - in->count);
    in->count += 8;
  }
}

/* At least 32 bits in the reader: a Huffman code and the bits after it. Eight bytes without an
 * FF among them are taken here, inline; the rest (stuffing, markers, the end) in fill. */
static inline __attribute__((always_inline)) void ensure(struct bit_reader *in) {
  if (in->count < 32) {
    if (__builtin_expect(in->marker == 0 && in->end - in->next >= 8, 1)) {
      uint64_t w = 0;
      int i;
      for (i = 0; i < 8; i++)
        w = w << 8 | in->next[i];
      if (!has_ff_byte(w)) {
        int bytes = (63 - in->count) >> 3;
        in->bits |= w >> (64 - 8 * bytes) << (64 - in->count - 8 * bytes);
        in->count += 8 * bytes;
        in->next += bytes;
        return;
      }
    }
    {
      /* fill on a copy: a scan loop's reader is a local whose address no out-of-line call
       * takes, so that GCC keeps its fields in registers. With its address passed to fill, it
       * kept them on the stack: a store and a reload of the bits on every symbol's path, and
       * reading the progressive originals took 18% more time (docs/performance.md). */
      struct bit_reader copy = *in;
      fill(&copy);
      *in = copy;
    }
  }
}

static inline unsigned take(struct bit_reader *in, int n) {
  unsigned v = n ? (unsigned)(in->bits >> (64 - n)) : 0;
  in->bits = n ? in->bits << n : in->bits;
  in->count -= n;
  return v;
}

/* The next Huffman symbol, or -1 for a code the table does not have. */
static inline int decode(struct bit_reader *in, const struct huffman_table *t) {
  unsigned entry = t->fast[in->bits >> (64 - LOOKAHEAD)];
  int length;
  if (entry != 0) {
    take(in, (int)(entry >> 8));
    return (int)(entry & 0xFF);
  }
  for (length = LOOKAHEAD + 1; length <= 16; length++) {
    int32_t code = (int32_t)(in->bits >> (64 - length));
    if (code <= t->max_code[length]) {
      take(in, length);
      return t->symbols[(code + t->offset[length]) & 0xFF];
    }
  }
  return -1;
}

static inline int popcount(uint64_t x) {
#if defined(__POPCNT__) || defined(__aarch64__)
  return __builtin_popcountll(x);
#else /* x86-64 without -mpopcnt: GCC would call a function */
  x -= (x >> 1) & 0x5555555555555555ULL;
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return (int)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* --- Blocks --- */

static inline __attribute__((always_inline)) int dc_first(struct reader *r, struct bit_reader *in, JCOEF *out, int scan_ci) {
  const struct huffman_table *t = &r->dc[r->dc_table[scan_ci]];
  int size, diff;
  int32_t coded;
  long dc;
  ensure(in);
  coded = t->fast_value[in->bits >> (64 - LOOKAHEAD)];
  if (coded != 0) { /* most differences: code and bits in one lookup */
    diff = coded >> 16;
    take(in, coded & 15);
  } else {
    size = decode(in, t);
    if (size < 0)
      return 0;
    diff = extend(take(in, size), size);
  }
  dc = (long)r->last_dc[scan_ci] + diff;
  if (dc > 0x7FFFFFFFL / 2 || dc < -0x7FFFFFFFL / 2)
    return 0; /* libjpeg: JERR_BAD_DCT_COEF */
  r->last_dc[scan_ci] = (int)dc;
  *out = (JCOEF)((unsigned)dc << r->Al);
  return 1;
}

static inline __attribute__((always_inline)) int dc_refine(struct reader *r, struct bit_reader *in, JCOEF *dc) {
  ensure(in);
  *dc = (JCOEF)(*dc | (int)take(in, 1) << r->Al);
  return 1;
}

static inline __attribute__((always_inline)) int ac_first(struct reader *r, struct bit_reader *in, JCOEF *block, uint64_t *nonzero) {
  const struct huffman_table *t = &r->ac[r->ac_table[0]]; /* an AC scan has one component */
  uint64_t mask = *nonzero;
  int k;
  if (r->eobrun > 0) {
    r->eobrun--;
    return 1;
  }
  for (k = r->Ss; k <= r->Se; k++) {
    int run;
    JCOEF value;
    int32_t coded;
    ensure(in);
    coded = t->fast_value[in->bits >> (64 - LOOKAHEAD)];
    if (coded != 0) { /* most coefficients: one lookup */
      run = (coded >> 4) & 15;
      value = (JCOEF)(coded >> 16);
      take(in, coded & 15);
    } else {
      int symbol = decode(in, t), size;
      if (symbol < 0)
        return 0;
      run = symbol >> 4;
      size = symbol & 15;
      if (size == 0) {
        if (run == 15) { /* sixteen zeros */
          k += 15;
          continue;
        }
        r->eobrun = (1u << run) - 1 + take(in, run);
        break;
      }
      value = (JCOEF)((unsigned)extend(take(in, size), size) << r->Al);
    }
    k += run;
    if (k > r->Se)
      return 0;
    block[jpeg_natural_order[k]] = value;
    mask |= (uint64_t)(value != 0) << k;
  }
  *nonzero = mask;
  return 1;
}

/* The place of set bit n (from 0, lowest first) of x, 64 if it has n or fewer: a
 * broadword select (byte counts, their running sums, the byte that passes n, a table within it)
 * instead of clearing n bits in a loop whose length the predictor cannot know. */
static inline int select_bit(const struct reader *r, uint64_t x, int n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t counts = x - ((x >> 1) & 0x5555555555555555ULL), sums, at_most_n;
  int byte, before;
  counts = (counts & 0x3333333333333333ULL) + ((counts >> 2) & 0x3333333333333333ULL);
  counts = (counts + (counts >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  sums = counts * ones; /* byte i: set bits in bytes 0 to i (at most 64) */
  if ((int)(sums >> 56) <= n)
    return 64; /* not enough */
  at_most_n = (((uint64_t)n * ones | highs) - sums) & highs; /* high bit of byte i: sums_i <= n */
  byte = __builtin_ctzll(~at_most_n & highs) >> 3;
  before = (int)((sums << 8) >> (8 * byte)) & 0xFF;
  return 8 * byte + r->select_in_byte[(x >> (8 * byte)) & 0xFF][n - before];
}

/* n (at most 63) bits, the first in the highest place. */
static inline uint64_t take_many(struct bit_reader *in, int n) {
  uint64_t v = 0;
  while (n > 0) {
    int chunk = n < 32 ? n : 32;
    ensure(in);
    v = v << chunk | take(in, chunk);
    n -= chunk;
  }
  return v;
}

/*
 * A refinement scan sends one correction bit for every coefficient that was non-zero before it,
 * in zigzag order, interleaved with the coefficients that become non-zero. The bits are gathered
 * here as they come and applied once at the end of the block: per newly non-zero coefficient, the
 * corrections it passes are counted (the places it moves past, less the zeros of its run) and
 * read at once, instead of a loop over them whose length the branch predictor cannot know.
 */
static inline __attribute__((always_inline)) int ac_refine(struct reader *r, struct bit_reader *in, JCOEF *block,
                                                           uint64_t *nonzero) {
  const struct huffman_table *t = &r->ac[r->ac_table[0]]; /* an AC scan has one component */
  uint64_t band = (~0ULL >> (63 - r->Se)) & (~0ULL << r->Ss), mask = *nonzero, before = mask & band;
  uint64_t corrections = 0;
  int k = r->Ss, n = 0, p1 = 1 << r->Al;
  if (r->eobrun == 0) {
    while (k <= r->Se) {
      int symbol, run, size, target, passed;
      JCOEF value;
      uint64_t zeros;
      int32_t coded;
      ensure(in); /* at least 32 bits: the code (up to 16), its sign and up to 15 corrections */
      coded = t->fast_value[in->bits >> (64 - LOOKAHEAD)];
      if (coded != 0) { /* most new coefficients: code and sign in one lookup */
        run = (coded >> 4) & 15;
        size = 1;
        value = (JCOEF)(coded >> 16);
        take(in, coded & 15);
      } else {
        symbol = decode(in, t);
        if (symbol < 0)
          return 0;
        run = symbol >> 4;
        size = symbol & 15;
        if (size == 0 && run != 15) {
          r->eobrun = (1u << run) + take(in, run);
          break;
        }
        if (size > 1)
          return 0; /* libjpeg warns: JWRN_HUFF_BAD_CODE */
        /* size 1: a new coefficient, +-p1 by its sign bit; size 0 (a run of sixteen zeros
         * alone): 0, written to the last of them, which is 0 already. No branch between the two. */
        value = (JCOEF)(((int)take(in, size) * 2 - 1) * p1 * size);
      }
      /* Past `run` coefficients that are zero so far, each non-zero one on the way corrected; the
       * new coefficient goes to the next zero. */
      zeros = ~mask & band & (~0ULL << k);
      if (run <= 3) {
        /* The most common runs (0 to 3, 80-99% of them in our corpus) without a branch on which:
         * the zeros' lowest bits cleared one to three times, all computed while the symbol is
         * still being decoded, since they depend only on the block so far. */
        uint64_t z1 = zeros & (zeros - 1), z2 = z1 & (z1 - 1), z3 = z2 & (z2 - 1);
        uint64_t pick = run == 0 ? zeros : run == 1 ? z1 : run == 2 ? z2 : z3;
        target = pick ? __builtin_ctzll(pick) : 64;
      } else {
        target = select_bit(r, zeros, run);
      }
      if (target > 63)
        return 0; /* runs past the band */
      passed = target - k - run; /* the places before the target that are not the run's zeros */
      if (passed <= 15) { /* no branch on passed == 0 */
        corrections = corrections << passed | (in->bits >> (63 - passed) >> 1);
        in->bits = in->bits << passed;
        in->count -= passed;
      } else {
        corrections = corrections << passed | take_many(in, passed);
      }
      n += passed;
      block[jpeg_natural_order[target]] = value;
      mask |= (uint64_t)size << target;
      k = target + 1;
    }
  }
  if (r->eobrun > 0) {
    /* The rest of the block is in an end-of-band run: only the corrections */
    int rest = k <= 63 ? popcount(before & (~0ULL << k)) : 0;
    if (rest) {
      corrections = corrections << rest | take_many(in, rest);
      n += rest;
    }
    r->eobrun--;
  }
  /* Bit n - 1 of `corrections` is the first coefficient's: a 1 adds the bit at Al to its
   * magnitude (once: libjpeg skips a coefficient that has it already). */
  while (before) {
    JCOEF *c = &block[jpeg_natural_order[__builtin_ctzll(before)]];
    int v = *c, on = (int)(corrections >> --n) & 1 & ((v & p1) == 0);
    int sign = -(v < 0); /* 0 or -1: a branch on it would be mispredicted half the time */
    *c = (JCOEF)(v + (((p1 ^ sign) - sign) & -on));
    before &= before - 1;
  }
  *nonzero = mask;
  return 1;
}

/* --- Scans and markers --- */

static unsigned segment_length(const UINT8 *at) { return (unsigned)at[0] << 8 | at[1]; }

/* A scan header (SOS) at `at` (after the marker), `length` bytes. */
static int read_scan_header(struct reader *r, const UINT8 *at, unsigned length) {
  j_decompress_ptr src = r->src;
  int n = at[2], i, j, ci;
  if (n < 1 || n > MAX_COMPS_IN_SCAN || length != 6 + 2 * (unsigned)n)
    return 0;
  for (i = 0; i < n; i++) {
    int id = at[3 + 2 * i], tables = at[4 + 2 * i];
    for (ci = 0; ci < src->num_components && src->comp_info[ci].component_id != id; ci++)
      ;
    if (ci == src->num_components)
      return 0;
    for (j = 0; j < i; j++)
      if (r->scan_comp[j] == ci)
        return 0;
    r->scan_comp[i] = ci;
    r->dc_table[i] = tables >> 4;
    r->ac_table[i] = tables & 15;
  }
  r->comps_in_scan = n;
  r->Ss = at[3 + 2 * n];
  r->Se = at[4 + 2 * n];
  r->Ah = at[5 + 2 * n] >> 4;
  r->Al = at[5 + 2 * n] & 15;
  return 1;
}

/* The scan's parameters against the progression so far (libjpeg's start_pass_phuff_decoder:
 * where it warns, this reader stops), and its tables. */
static int start_scan(struct reader *r) {
  int dc = r->Ss == 0, i, k;
  if (dc ? r->Se != 0 : r->Ss > r->Se || r->Se > 63 || r->comps_in_scan != 1)
    return 0;
  if ((r->Ah != 0 && r->Al != r->Ah - 1) || r->Al > 13)
    return 0;
  for (i = 0; i < r->comps_in_scan; i++) {
    int *bits = r->coef_bits[r->scan_comp[i]];
    if (!dc && bits[0] < 0)
      return 0; /* AC before DC */
    for (k = r->Ss; k <= r->Se; k++) {
      if (r->Ah != (bits[k] < 0 ? 0 : bits[k]) || (r->Ah == 0 && bits[k] >= 0))
        return 0;
      bits[k] = r->Al;
    }
    /* The tables the scan decodes with: a DC first scan's DC table, an AC scan's AC table */
    if (dc && r->Ah == 0) {
      struct huffman_table *t = r->dc_table[i] < NUM_HUFF_TBLS ? &r->dc[r->dc_table[i]] : NULL;
      if (t == NULL || !t->defined || !build_table(t, 1, 0, 15))
        return 0;
    } else if (!dc) {
      struct huffman_table *t = r->ac_table[i] < NUM_HUFF_TBLS ? &r->ac[r->ac_table[i]] : NULL;
      if (t == NULL || !t->defined || !build_table(t, 0, r->Al, r->Ah == 0 ? 15 : 1))
        return 0;
    }
    r->last_dc[i] = 0;
  }
  r->eobrun = 0;
  return 1;
}

/* Sets the reader at the next marker, for a restart or the end of a scan: 0 if whole bytes of
 * data come before it (libjpeg warns: extraneous data) or the scan took padding. */
static __attribute__((noinline)) int find_marker(struct bit_reader *in) {
  if (in->padding > in->count)
    return 0;
  if (in->marker == 0) {
    if (in->count - in->padding >= 8 || in->next >= in->end || *in->next != 0xFF)
      return 0;
    while (in->next < in->end && *in->next == 0xFF)
      in->next++;
    if (in->next >= in->end || *in->next == 0)
      return 0;
    in->marker = *in->next++;
  } else if (in->count - in->padding >= 8) {
    return 0;
  }
  in->bits = 0;
  in->count = in->padding = 0;
  return 1;
}

/* find_marker for a scan loop's reader, on a copy (see ensure). */
static inline __attribute__((always_inline)) int at_marker(struct bit_reader *in) {
  struct bit_reader copy = *in;
  int ok = find_marker(&copy);
  *in = copy;
  return ok;
}

enum scan_kind { DC_FIRST, DC_REFINE, AC_FIRST, AC_REFINE };

/* The block PREFETCH_AHEAD places further along the row, both its cache lines, asked for before
 * it is written: an AC scan writes a few coefficients of every block of a whole-image array too
 * large for the cache. Reading sea, seeding and bridge took 8-16% less time with it when this
 * machine's memory was slow to answer, 0-5% when it was not (docs/performance.md). */
#define PREFETCH_AHEAD 4
static inline void prefetch_ahead(const struct progressive_image *image, int ci, JDIMENSION x, JDIMENSION y) {
  if (x + PREFETCH_AHEAD < image->width[ci]) {
    const JCOEF *block = image->rows[ci][y][x + PREFETCH_AHEAD];
    __builtin_prefetch(block, 1);
    __builtin_prefetch(block + DCTSIZE2 / 2, 1);
  }
}

/* Before the next MCU: at a restart interval's end, its marker (the next in turn) passed and the
 * predictions reset; 0 if the marker is not there. */
static inline int restart(struct reader *r, struct bit_reader *in, unsigned *to_restart, unsigned *next_restart) {
  int i;
  if (r->restart_interval == 0)
    return 1;
  if (*to_restart == 0) {
    if (!at_marker(in) || in->marker != 0xD0 + (int)*next_restart)
      return 0;
    in->marker = 0;
    *next_restart = (*next_restart + 1) & 7;
    *to_restart = r->restart_interval;
    for (i = 0; i < r->comps_in_scan; i++)
      r->last_dc[i] = 0;
    r->eobrun = 0;
  }
  (*to_restart)--;
  return 1;
}

/* An AC scan (one component, start_scan: its blocks in rows); `kind` is a constant in each of
 * read_scan's calls, so that each gets its own loop. */
static inline __attribute__((always_inline)) int read_ac_scan_of(struct reader *r, enum scan_kind kind) {
  struct progressive_image *image = r->image;
  int ci = r->scan_comp[0];
  jpeg_component_info *c = &r->src->comp_info[ci];
  unsigned to_restart = r->restart_interval, next_restart = 0;
  struct bit_reader in = r->in; /* a local copy, kept in registers: no store of a block can touch it */
  JDIMENSION x, y;
  int ok = 0;
  for (y = 0; y < c->height_in_blocks; y++)
    for (x = 0; x < c->width_in_blocks; x++) {
      JCOEF *block = image->rows[ci][y][x];
      uint64_t *nonzero = &image->nonzero[ci][(size_t)y * image->width[ci] + x];
      if (!restart(r, &in, &to_restart, &next_restart))
        goto done;
      prefetch_ahead(image, ci, x, y);
      if (!(kind == AC_FIRST ? ac_first(r, &in, block, nonzero) : ac_refine(r, &in, block, nonzero)))
        goto done;
    }
  ok = at_marker(&in);
done:
  r->in = in;
  return ok;
}

/* A DC scan: each block's DC to its component's DC array, MCU by MCU (an interleaved scan's MCU
 * has each component's h x v blocks). The MCU's blocks are listed once, each with its component
 * and its place from the MCU's first, so that the loop per block is one step: a loop over the
 * components and their sampling factors within each MCU took a third of a DC refinement's time,
 * whose blocks are a bit each (docs/performance.md). */
static inline __attribute__((always_inline)) int read_dc_scan_of(struct reader *r, enum scan_kind kind) {
  j_decompress_ptr src = r->src;
  struct progressive_image *image = r->image;
  JDIMENSION mcus_across, mcus_down, mx, my;
  unsigned to_restart = r->restart_interval, next_restart = 0;
  struct bit_reader in = r->in; /* a local copy, kept in registers: no store of a block can touch it */
  int comps = r->comps_in_scan, blocks = 0, ok = 0, i, b;
  int component_of[D_MAX_BLOCKS_IN_MCU];
  size_t place[D_MAX_BLOCKS_IN_MCU], step[MAX_COMPS_IN_SCAN], row_step[MAX_COMPS_IN_SCAN];
  JCOEF *row[MAX_COMPS_IN_SCAN];
  for (i = 0; i < comps; i++) {
    int ci = r->scan_comp[i], h = 1, v = 1, bx, by;
    if (comps > 1) { /* a single component's MCU is one block */
      h = src->comp_info[ci].h_samp_factor;
      v = src->comp_info[ci].v_samp_factor;
    }
    for (by = 0; by < v; by++)
      for (bx = 0; bx < h; bx++) {
        if (blocks == D_MAX_BLOCKS_IN_MCU)
          return 0; /* libjpeg: JERR_BAD_MCU_SIZE */
        component_of[blocks] = i;
        place[blocks++] = (size_t)by * image->width[ci] + (size_t)bx;
      }
    step[i] = (size_t)h;
    row_step[i] = (size_t)v * image->width[ci];
    row[i] = image->dc[ci];
  }
  if (comps == 1) {
    mcus_across = src->comp_info[r->scan_comp[0]].width_in_blocks;
    mcus_down = src->comp_info[r->scan_comp[0]].height_in_blocks;
  } else {
    mcus_across = (src->image_width + (JDIMENSION)(src->max_h_samp_factor * DCTSIZE) - 1) /
                  (JDIMENSION)(src->max_h_samp_factor * DCTSIZE);
    mcus_down = (src->image_height + (JDIMENSION)(src->max_v_samp_factor * DCTSIZE) - 1) /
                (JDIMENSION)(src->max_v_samp_factor * DCTSIZE);
  }
  for (my = 0; my < mcus_down; my++) {
    for (mx = 0; mx < mcus_across; mx++) {
      if (!restart(r, &in, &to_restart, &next_restart))
        goto done;
      for (b = 0; b < blocks; b++) {
        JCOEF *dc = row[component_of[b]] + mx * step[component_of[b]] + place[b];
        if (!(kind == DC_FIRST ? dc_first(r, &in, dc, component_of[b]) : dc_refine(r, &in, dc)))
          goto done;
      }
    }
    for (i = 0; i < comps; i++)
      row[i] += row_step[i];
  }
  ok = at_marker(&in);
done:
  r->in = in;
  return ok;
}

/* Whether the scan is a last refinement of AC coefficients (Al 0: no scan can follow it for
 * them) whose bit hardly matters on the output's tables: each of its coefficients' input
 * quantiser is at most 1/SKIP_RATIO of the smallest output quantiser it can land on, and at
 * most SKIP_QUANTISER, so that the bit is about the size of the encoder's own DCT rounding and
 * the middle of the two values it can give is a fair guess. At 8 and 2, the three progressive
 * originals it applies to kept their DSSIM against Pillow's within 0.2%; without the second
 * bound, q95 inputs (quantisers up to 12) lost up to 1.7%; at a ratio of 4, one original lost
 * 0.8% (docs/performance.md). */
static int not_needed(const struct reader *r) {
  int ci = r->scan_comp[0], k;
  const UINT16 *q_in = r->src->comp_info[ci].quant_table->quantval;
  if (r->output_steps == NULL || r->Ss == 0 || r->Ah == 0 || r->Al != 0)
    return 0;
  for (k = r->Ss; k <= r->Se; k++) {
    int n = jpeg_natural_order[k];
    if (q_in[n] > SKIP_QUANTISER || (unsigned)q_in[n] * SKIP_RATIO > r->output_steps[ci][n])
      return 0;
  }
  return 1;
}

/* Past a scan's data without decoding it, to the marker after it (restart markers are part of
 * the data): 0 if the data ends first. */
static int skip_scan(struct reader *r) {
  struct bit_reader *in = &r->in;
  const UINT8 *at = in->next;
  int k;
  for (k = r->Ss; k <= r->Se; k++)
    r->image->unread_lsb[r->scan_comp[0]] |= (uint64_t)1 << jpeg_natural_order[k];
  for (;;) {
    const UINT8 *ff = (const UINT8 *)memchr(at, 0xFF, (size_t)(in->end - at));
    if (ff == NULL || in->end - ff < 2)
      return 0;
    at = ff + 1;
    if (*at == 0 || *at == 0xFF || (*at >= 0xD0 && *at <= 0xD7))
      continue;
    in->marker = *at;
    in->next = at + 1;
    in->bits = 0;
    in->count = in->padding = 0;
    return 1;
  }
}

static int read_scan(struct reader *r) {
  if (not_needed(r))
    return skip_scan(r);
  if (r->Ss == 0)
    return r->Ah == 0 ? read_dc_scan_of(r, DC_FIRST) : read_dc_scan_of(r, DC_REFINE);
  return r->Ah == 0 ? read_ac_scan_of(r, AC_FIRST) : read_ac_scan_of(r, AC_REFINE);
}

/* Markers after a scan, up to the next scan's header or the end of the image: 1 at a scan,
 * 2 at the end, 0 otherwise. */
static int read_markers(struct reader *r) {
  struct bit_reader *in = &r->in;
  for (;;) {
    int marker = in->marker;
    unsigned length;
    const UINT8 *at = in->next;
    in->marker = 0;
    if (marker == 0xD9)
      return 2;
    if (in->end - at < 2 || (length = segment_length(at)) < 2 || (size_t)(in->end - at) < length)
      return 0;
    in->next = at + length;
    if (marker == 0xDA) {
      return read_scan_header(r, at, length);
    } else if (marker == 0xC4) { /* DHT */
      const UINT8 *p = at + 2, *end = at + length;
      while (p < end) {
        int klass = p[0] >> 4, slot = p[0] & 15, count = 0, i;
        struct huffman_table *t;
        if (klass > 1 || slot >= NUM_HUFF_TBLS || end - p < 17)
          return 0;
        t = klass ? &r->ac[slot] : &r->dc[slot];
        t->bits[0] = 0;
        for (i = 1; i <= 16; i++)
          count += t->bits[i] = p[i];
        if (count > 256 || end - p < 17 + count)
          return 0;
        memset(t->symbols, 0, sizeof(t->symbols));
        memcpy(t->symbols, p + 17, (size_t)count);
        t->defined = 1;
        p += 17 + count;
      }
    } else if (marker == 0xDD) { /* DRI */
      if (length != 4)
        return 0;
      r->restart_interval = segment_length(at + 2);
    } else if (!(marker == 0xFE || (marker >= 0xE0 && marker <= 0xEF))) {
      return 0; /* DQT, DNL, another frame, a restart out of place: libjpeg's */
    }
    /* The next marker, right after this segment */
    if (in->end - in->next < 2 || in->next[0] != 0xFF)
      return 0;
    while (in->next < in->end && *in->next == 0xFF)
      in->next++;
    if (in->next >= in->end || *in->next == 0)
      return 0;
    in->marker = *in->next++;
  }
}

int progressive_read(j_decompress_ptr src, struct progressive_image *image, const UINT16 (*output_steps)[DCTSIZE2]) {
  struct reader *r;
  int ci, i, result = 0;
  if (!allocate(src, image))
    return -1;
  r = (struct reader *)calloc(1, sizeof(*r));
  if (r == NULL)
    return -1;
  r->src = src;
  r->image = image;
  r->output_steps = output_steps;
  r->in.next = src->src->next_input_byte;
  r->in.end = r->in.next + src->src->bytes_in_buffer;
  r->restart_interval = src->restart_interval;
  memset(r->coef_bits, 0xFF, sizeof(r->coef_bits));
  for (i = 0; i < 256; i++) {
    int bit, n = 0;
    for (bit = 0; bit < 8; bit++)
      if (i >> bit & 1)
        r->select_in_byte[i][n++] = (UINT8)bit;
  }
  for (i = 0; i < NUM_HUFF_TBLS; i++) {
    copy_table(&r->dc[i], src->dc_huff_tbl_ptrs[i]);
    copy_table(&r->ac[i], src->ac_huff_tbl_ptrs[i]);
  }
  /* Every quantisation table is defined by now (one defined between scans ends the reading) */
  for (ci = 0; ci < src->num_components; ci++) {
    jpeg_component_info *c = &src->comp_info[ci];
    JQUANT_TBL *q = c->quant_tbl_no >= 0 && c->quant_tbl_no < NUM_QUANT_TBLS ? src->quant_tbl_ptrs[c->quant_tbl_no] : NULL;
    if (q == NULL)
      goto done;
    c->quant_table = (JQUANT_TBL *)(*src->mem->alloc_small)((j_common_ptr)src, JPOOL_IMAGE, sizeof(JQUANT_TBL));
    memcpy(c->quant_table, q, sizeof(JQUANT_TBL));
  }
  /* The first scan's header, as libjpeg read it */
  r->comps_in_scan = src->comps_in_scan;
  for (i = 0; i < src->comps_in_scan; i++) {
    r->scan_comp[i] = src->cur_comp_info[i]->component_index;
    r->dc_table[i] = src->cur_comp_info[i]->dc_tbl_no;
    r->ac_table[i] = src->cur_comp_info[i]->ac_tbl_no;
  }
  r->Ss = src->Ss;
  r->Se = src->Se;
  r->Ah = src->Ah;
  r->Al = src->Al;
  for (;;) {
    int next;
    if (!start_scan(r) || !read_scan(r))
      break;
    next = read_markers(r);
    if (next != 1) {
      result = next == 2;
      break;
    }
  }
done:
  free(r);
  return result;
}
