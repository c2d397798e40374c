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
 * coefficients at a time: first across, each non-zero input coefficient times its column of the
 * map added into its row (a chroma block has a few of them: no transpose, no pass over zeros),
 * then down, each row a vector. A kept axis is left as it is. No IDCT, no FDCT, no colour
 * conversion.
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
      axis->columns[0][n][k] = axis->t0[k][n];
      axis->columns[1][n][k] = (k + n) & 1 ? -axis->t0[k][n] : axis->t0[k][n];
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

/* A coefficient times its quantiser, moved away from zero by half_step (see
 * chroma_downsample_block): as dequantize's vectors compute it, lane by lane. */
static inline float dequantized(int value, float q, float half_step) {
  return (float)value * q + (float)((value > 0) - (value < 0)) * half_step;
}

/* A flat block's DC at its level when flat_is_known (flat_level), else the coefficient dequantized. */
static float dc_of(const JCOEF *block, uint64_t nonzero, const float *q, const float *unread_half_step,
                   int flat_is_known) {
  if (flat_is_known && nonzero == 1)
    return 8.0f * (float)flat_level(block[0], (int)q[0]);
  return dequantized(block[0], q[0], unread_half_step[0]);
}

/* Bit v set where row v of a block is not zero, from its nonzero_mask. */
static unsigned rows_of(uint64_t nonzero) {
  unsigned rows = 0;
  int v;
  for (v = 0; v < DCTSIZE; v++)
    rows |= (unsigned)((nonzero >> (DCTSIZE * v) & 0xFF) != 0) << v;
  return rows;
}

/* The block's coefficients (`nonzero`: its nonzero_mask) times their quantisers, row by row (a
 * flat block's DC at its level when flat_is_known); bit v of the result is set where row v is
 * not zero. */
static unsigned dequantize(const JCOEF *block, uint64_t nonzero, const float *q, const float *unread_half_step,
                           int flat_is_known, struct row8 rows[DCTSIZE]) {
  unsigned used = rows_of(nonzero);
  int v;
  for (v = 0; v < DCTSIZE; v++) {
    const JCOEF *c = block + DCTSIZE * v;
    if (used >> v & 1) {
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
    } else
      rows[v].lo = rows[v].hi = (float4){0, 0, 0, 0};
  }
  rows[0].lo[0] = dc_of(block, nonzero, q, unread_half_step, flat_is_known);
  return used;
}

/* The two blocks of a row of blocks across (`in`: left, right) mapped across into `rows`: each
 * non-zero input coefficient, dequantized as dequantize does, times its block's column of the
 * map, added into its row (the left block's coefficients in order, then the right's). A chroma
 * block has a few of them (1-28 in the corpus, most often 1-5), so this costs one product per
 * coefficient; the map applied row by row to the whole blocks, transposed and back, cost
 * 5-18% more time on the 4:4:4 originals (docs/performance.md). Bit v of the result is set where
 * row v may be other than zero (row 0, with the DC, always). */
static unsigned across_pair(const struct chroma_axis *axis, JCOEF *const in[2], const uint64_t nonzero_of[2],
                            const float *q, const float *unread_half_step, int flat_is_known,
                            struct row8 rows[DCTSIZE]) {
  unsigned used = 0;
  int v, b;
  for (v = 0; v < DCTSIZE; v++)
    rows[v].lo = rows[v].hi = (float4){0, 0, 0, 0};
  for (b = 0; b < 2; b++) {
    uint64_t nonzero = nonzero_of[b], left = nonzero & ~(uint64_t)1;
    float dc = dc_of(in[b], nonzero, q, unread_half_step, flat_is_known);
    float4 lo, hi;
    memcpy(&lo, axis->columns[b][0], sizeof(lo));
    memcpy(&hi, axis->columns[b][0] + 4, sizeof(hi));
    rows[0].lo += dc * lo;
    rows[0].hi += dc * hi;
    while (left) {
      int n = __builtin_ctzll(left), u = n & 7;
      float c = dequantized(in[b][n], q[n], unread_half_step[n]);
      left &= left - 1;
      memcpy(&lo, axis->columns[b][u], sizeof(lo));
      memcpy(&hi, axis->columns[b][u] + 4, sizeof(hi));
      rows[n >> 3].lo += c * lo;
      rows[n >> 3].hi += c * hi;
    }
    used |= 1 | rows_of(nonzero);
  }
  return used;
}

/* One output coefficient: x times one over its quantiser, rounded half away from zero as
 * libjpeg's quantiser rounds, at most 32767 in magnitude. */
static inline JCOEF quantized(float x, float inverse_q) {
  float m = fabsf(x * inverse_q) + 0.5f;
  int rounded = (int)(m < 32767.0f ? m : 32767.0f);
  return (JCOEF)(x < 0 ? -rounded : rounded);
}

/*
 * Whether the group is flat: every input block's AC coefficients 0 and the same DC, as nearly
 * all of a smooth photo's chroma is (97% of painting's groups, 35-48% of fossa's and bridge's).
 * Then the output is flat at that level, its DC alone, written here with the operations the
 * general path below would do on it (it would add 0 to the first product, and the two blocks'
 * odd frequencies would cancel exactly), so the output is the same, at a fraction of the time
 * (docs/performance.md).
 */
static int flat_group(const struct chroma_downsampler *ds, JCOEF *const in[4], const uint64_t nonzero[4],
                      int count, const float *q_in, const float *unread_half_step, int flat_is_known,
                      const float *inverse_q_out, JCOEF *out) {
  float level;
  int b;
  for (b = 0; b < count; b++)
    if ((nonzero[b] & ~(uint64_t)1) != 0 || in[b][0] != in[0][0])
      return 0;
  level = dc_of(in[0], nonzero[0], q_in, unread_half_step, flat_is_known);
  if (ds->across.blocks == 2) { /* across_pair: the first product added to 0, then the second */
    float product = level * ds->across.columns[0][0][0];
    level = (0.0f + product) + product;
  }
  if (ds->down.blocks == 2) /* pair: the two rows' sum, times the map, added to 0 */
    level = 0.0f + ds->down.t0[0][0] * (level + level);
  memset(out, 0, DCTSIZE2 * sizeof(JCOEF));
  out[0] = quantized(level, inverse_q_out[0]);
  return 1;
}

void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const float *q_in,
                             const float *unread_half_step, int flat_is_known, const float *inverse_q_out,
                             JCOEF *out) {
  struct row8 rows[2][DCTSIZE], result[DCTSIZE];
  uint64_t nonzero[4];
  unsigned used = 0;
  float acc[DCTSIZE2];
  int count = ds->across.blocks * ds->down.blocks, ny = ds->down.blocks, b, j, k;
  for (b = 0; b < count; b++)
    nonzero[b] = nonzero_mask(in[b]);
  if (flat_group(ds, in, nonzero, count, q_in, unread_half_step, flat_is_known, inverse_q_out, out))
    return;
  /* Across: each row of blocks to one block's rows (a kept axis: its one block's). */
  for (j = 0; j < ny; j++)
    used |= ds->across.blocks == 2
                ? across_pair(&ds->across, in + 2 * j, nonzero + 2 * j, q_in, unread_half_step, flat_is_known, rows[j])
                : dequantize(in[j], nonzero[j], q_in, unread_half_step, flat_is_known, rows[j]);
  /* Down: the top and bottom rows of blocks, each row a vector. */
  if (ny == 2)
    pair(&ds->down, rows[0], rows[1], used, result);
  else
    memcpy(result, rows[0], sizeof(result));
  for (k = 0; k < DCTSIZE; k++) {
    memcpy(acc + DCTSIZE * k, &result[k].lo, sizeof(result[k].lo));
    memcpy(acc + DCTSIZE * k + 4, &result[k].hi, sizeof(result[k].hi));
  }
  for (k = 0; k < DCTSIZE2; k++) /* vectorised by the compiler */
    out[k] = quantized(acc[k], inverse_q_out[k]);
}
