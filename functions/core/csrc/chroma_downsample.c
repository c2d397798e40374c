/*
 * DCT-domain chroma downsampling (see chroma_downsample.h).
 *
 * JPEG's 8-point DCT is orthonormal: with C[k][x] = c(k) cos((2x + 1) k pi / 16), c(0) =
 * sqrt(1/8), c(k > 0) = 1/2, a block's samples are x = C^T X and its coefficients X = C x. On
 * one halved axis, output sample i (of 8) is the mean of input samples 2i and 2i + 1 of the 16
 * that two neighbouring input blocks hold: output samples 0-3 come from the first block, 4-7
 * from the second. So the output's coefficients are T_0 X_0 + T_1 X_1 with T_b = C A_b C^T, A_b
 * the 8x8 averaging matrix of block b. A shifted axis (chroma_downsample.h) is the same with
 * A_b moving samples instead: the first block's last 4 to the front, the second's first 4 to
 * the back. Either way the second block's A is the first's mirrored, and mirroring negates a
 * block's odd frequencies, so T_1[k][n] = (-1)^(k + n) T_0[k][n]:
 *
 *   out[k] = sum_n T_0[k][n] (X_0[n] + (-1)^(k + n) X_1[n]),
 *
 * one product per pair of input coefficients (and a halving's T_0 has 35 entries of 64 that
 * are not zero). In two dimensions the axes are mapped one after the other, rows of 8
 * coefficients at a time: down the columns (each row a vector), then across (the blocks
 * transposed, and back). A kept axis is left as it is. No IDCT, no FDCT, no colour conversion.
 *
 * The same mean as libjpeg's encoder takes (h2v2_downsample, h2v1_downsample), without its
 * rounding of each sample to an integer: the output is what decode + encode gives, less the
 * rounding and clamping of the pixels in between.
 */
#include <math.h>
#include <string.h>

#include "chroma_downsample.h"
#include "coefficients.h"

/* cos(m pi / 16) from literals rather than libm, whose last bit may differ between the host and
 * arm64 Lambda: the outputs must be byte-identical on both (with -ffp-contract=off, build.rs). */
static double cos_pi16(int m) {
  static const double first_quadrant[9] = {
      1.0, 0.98078528040323044913, 0.92387953251128675613, 0.83146961230254523708, 0.70710678118654752440,
      0.55557023301960222474, 0.38268343236508977173, 0.19509032201612826785, 0.0};
  m %= 32;
  if (m > 16)
    m = 32 - m; /* cos is even and 2 pi periodic */
  return m <= 8 ? first_quadrant[m] : -first_quadrant[16 - m];
}

/* out = a b, or a b^T; summed in index order, so the same on every machine. */
static void multiply(double out[DCTSIZE][DCTSIZE], double a[DCTSIZE][DCTSIZE], double b[DCTSIZE][DCTSIZE],
                     int b_transposed) {
  int k, n, i;
  for (k = 0; k < DCTSIZE; k++)
    for (n = 0; n < DCTSIZE; n++) {
      double sum = 0;
      for (i = 0; i < DCTSIZE; i++)
        sum += a[k][i] * (b_transposed ? b[n][i] : b[i][n]);
      out[k][n] = sum;
    }
}

/* T_0 of a halved or shifted axis, as T[out][in]: C A C^T, A the first block's samples' part
 * in the output's (their means, or the last 4 of them moved to the front). */
static void first_block_map(double T[DCTSIZE][DCTSIZE], int kind) {
  double C[DCTSIZE][DCTSIZE], A[DCTSIZE][DCTSIZE], CA[DCTSIZE][DCTSIZE];
  int k, x, i;
  for (k = 0; k < DCTSIZE; k++)
    for (x = 0; x < DCTSIZE; x++)
      C[k][x] = (k == 0 ? 0.35355339059327376220 : 0.5) * cos_pi16((2 * x + 1) * k);
  memset(A, 0, sizeof(A));
  for (i = 0; i < DCTSIZE / 2; i++) {
    if (kind == CHROMA_HALVE) {
      A[i][2 * i] = 0.5;
      A[i][2 * i + 1] = 0.5;
    } else
      A[i][DCTSIZE / 2 + i] = 1.0;
  }
  multiply(CA, C, A, 0); /* T = C A C^T */
  multiply(T, CA, C, 1);
}

static void axis_init(struct chroma_axis *axis, int kind) {
  double T[DCTSIZE][DCTSIZE];
  int k, n;
  axis->blocks = kind == CHROMA_KEEP ? 1 : 2;
  if (kind == CHROMA_KEEP)
    return;
  first_block_map(T, kind);
  for (k = 0; k < DCTSIZE; k++) {
    axis->from[k] = 0;
    for (n = 0; n < DCTSIZE; n++) {
      /* Entries the cosines' rounding leaves at 1e-17 are zero: skipped. */
      axis->t0[k][n] = fabs(T[k][n]) < 1e-12 ? 0.0f : (float)T[k][n];
      if (axis->t0[k][n] != 0.0f)
        axis->from[k] |= (unsigned char)(1 << n);
    }
  }
}

void chroma_downsampler_init(struct chroma_downsampler *ds, int across, int down) {
  axis_init(&ds->across, across);
  axis_init(&ds->down, down);
}

/* A row of 8 coefficients as two vectors of four (GCC's vector extension: SSE2 on x86-64, NEON
 * on arm64). Each lane is a multiply and then an add (-ffp-contract=off): the same arithmetic on
 * both machines. */
typedef float float4 __attribute__((vector_size(4 * sizeof(float))));
typedef int int4 __attribute__((vector_size(4 * sizeof(int))));
struct row8 {
  float4 lo, hi;
};

/* out = the map of the axis the rows are stacked on, `first` the top (or left) block. Bit n of
 * `used` is set where row n of either input may be other than zero; the other rows are skipped
 * (adding a product with zero would change no sum). */
static void pair(const struct chroma_axis *axis, const struct row8 first[DCTSIZE],
                 const struct row8 second[DCTSIZE], unsigned used, struct row8 out[DCTSIZE]) {
  /* What even outputs take of input n, X_0[n] + (-1)^n X_1[n], and odd ones, X_0[n] - (-1)^n X_1[n]. */
  struct row8 even[DCTSIZE], odd[DCTSIZE];
  unsigned rows = used;
  int n, k;
  while (rows) {
    struct row8 sum, difference;
    n = __builtin_ctz(rows);
    rows &= rows - 1;
    sum.lo = first[n].lo + second[n].lo;
    sum.hi = first[n].hi + second[n].hi;
    difference.lo = first[n].lo - second[n].lo;
    difference.hi = first[n].hi - second[n].hi;
    even[n] = n & 1 ? difference : sum;
    odd[n] = n & 1 ? sum : difference;
  }
  for (k = 0; k < DCTSIZE; k++) {
    const struct row8 *from = k & 1 ? odd : even;
    struct row8 sum = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    unsigned inputs = axis->from[k] & used;
    while (inputs) {
      n = __builtin_ctz(inputs);
      inputs &= inputs - 1;
      sum.lo += axis->t0[k][n] * from[n].lo;
      sum.hi += axis->t0[k][n] * from[n].hi;
    }
    out[k] = sum;
  }
}

/* A 4x4 transpose of the rows a, b, c, d. */
static void transpose_quarter(float4 a, float4 b, float4 c, float4 d, float4 out[4]) {
  float4 ab_low = __builtin_shufflevector(a, b, 0, 4, 1, 5), ab_high = __builtin_shufflevector(a, b, 2, 6, 3, 7);
  float4 cd_low = __builtin_shufflevector(c, d, 0, 4, 1, 5), cd_high = __builtin_shufflevector(c, d, 2, 6, 3, 7);
  out[0] = __builtin_shufflevector(ab_low, cd_low, 0, 1, 4, 5);
  out[1] = __builtin_shufflevector(ab_low, cd_low, 2, 3, 6, 7);
  out[2] = __builtin_shufflevector(ab_high, cd_high, 0, 1, 4, 5);
  out[3] = __builtin_shufflevector(ab_high, cd_high, 2, 3, 6, 7);
}

/* 8x8: each quarter transposed, the off-diagonal ones swapped. */
static void transpose(const struct row8 in[DCTSIZE], struct row8 out[DCTSIZE]) {
  float4 quarter[4];
  int half, i;
  for (half = 0; half < 2; half++) {
    const struct row8 *rows = in + 4 * half;
    transpose_quarter(rows[0].lo, rows[1].lo, rows[2].lo, rows[3].lo, quarter);
    for (i = 0; i < 4; i++)
      half ? (out[i].hi = quarter[i]) : (out[i].lo = quarter[i]);
    transpose_quarter(rows[0].hi, rows[1].hi, rows[2].hi, rows[3].hi, quarter);
    for (i = 0; i < 4; i++)
      half ? (out[4 + i].hi = quarter[i]) : (out[4 + i].lo = quarter[i]);
  }
}

/* The block's coefficients times their quantisers, row by row (a flat block's DC at its level
 * when flat_is_known); bit v of the result is set where row v is not zero, bit 8 + c where
 * column c is not. */
static unsigned dequantize(const JCOEF *block, const float *q, const float *unread_half_step, int flat_is_known,
                           struct row8 rows[DCTSIZE]) {
  uint64_t nonzero = nonzero_mask(block);
  unsigned used = 0, columns = 0;
  int v;
  for (v = 0; v < DCTSIZE; v++) {
    const JCOEF *c = block + DCTSIZE * v;
    unsigned row = (unsigned)(nonzero >> (DCTSIZE * v)) & 0xFF;
    if (row) {
      int4 lo = {c[0], c[1], c[2], c[3]}, hi = {c[4], c[5], c[6], c[7]};
      float4 q_lo, q_hi, half_lo, half_hi;
      memcpy(&q_lo, q + DCTSIZE * v, sizeof(q_lo));
      memcpy(&q_hi, q + DCTSIZE * v + 4, sizeof(q_hi));
      memcpy(&half_lo, unread_half_step + DCTSIZE * v, sizeof(half_lo));
      memcpy(&half_hi, unread_half_step + DCTSIZE * v + 4, sizeof(half_hi));
      /* value * q, moved away from zero by the half step where the last bit is unread: the
       * signs as -1, 0, 1 (a vector comparison gives -1 for true) */
      rows[v].lo = __builtin_convertvector(lo, float4) * q_lo + __builtin_convertvector((lo < 0) - (lo > 0), float4) * half_lo;
      rows[v].hi = __builtin_convertvector(hi, float4) * q_hi + __builtin_convertvector((hi < 0) - (hi > 0), float4) * half_hi;
      used |= 1u << v;
      columns |= row;
    } else
      rows[v].lo = rows[v].hi = (float4){0, 0, 0, 0};
  }
  if (flat_is_known && nonzero == 1)
    rows[0].lo[0] = 8.0f * (float)flat_level(block[0], (int)q[0]);
  return used | columns << DCTSIZE;
}

void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const float *q_in,
                             const float *unread_half_step, int flat_is_known, const float *inverse_q_out,
                             JCOEF *out) {
  struct row8 blocks[4][DCTSIZE], down[2][DCTSIZE], across[2][DCTSIZE], paired[DCTSIZE], result[DCTSIZE];
  const struct row8 *columns[2];
  unsigned used[4], used_columns = 0;
  float acc[DCTSIZE2], magnitude[DCTSIZE2];
  int nx = ds->across.blocks, ny = ds->down.blocks, b, i, k;
  for (b = 0; b < nx * ny; b++) {
    used[b] = dequantize(in[b], q_in, unread_half_step, flat_is_known, blocks[b]);
    used_columns |= used[b] >> DCTSIZE;
  }
  /* Down: the top and bottom block of each column of blocks. A column stays zero down the way. */
  for (i = 0; i < nx; i++) {
    if (ny == 2)
      pair(&ds->down, blocks[i], blocks[nx + i], (used[i] | used[nx + i]) & 0xFF, down[i]);
    columns[i] = ny == 2 ? down[i] : blocks[i];
  }
  /* Across: the left and right result, transposed so that their columns are rows. */
  if (nx == 2) {
    transpose(columns[0], across[0]);
    transpose(columns[1], across[1]);
    pair(&ds->across, across[0], across[1], used_columns, paired);
    transpose(paired, result);
  } else
    memcpy(result, columns[0], sizeof(result));
  for (k = 0; k < DCTSIZE; k++) {
    memcpy(acc + DCTSIZE * k, &result[k].lo, sizeof(result[k].lo));
    memcpy(acc + DCTSIZE * k + 4, &result[k].hi, sizeof(result[k].hi));
  }
  /* Two loops the compiler vectorises: magnitudes, then truncation with the sign back. */
  for (k = 0; k < DCTSIZE2; k++) {
    float m = fabsf(acc[k] * inverse_q_out[k]) + 0.5f;
    magnitude[k] = m < 32767.0f ? m : 32767.0f;
  }
  for (k = 0; k < DCTSIZE2; k++) {
    int rounded = (int)magnitude[k];
    out[k] = (JCOEF)(acc[k] < 0 ? -rounded : rounded);
  }
}
