/*
 * DCT-domain chroma downsampling (see chroma_downsample.h).
 *
 * JPEG's 8-point DCT is orthonormal: with C[k][x] = c(k) cos((2x + 1) k pi / 16), c(0) =
 * sqrt(1/8), c(k > 0) = 1/2, a block's samples are x = C^T X and its coefficients X = C x. On
 * one halved axis, output sample i (of 8) is the mean of input samples 2i and 2i + 1 of the 16
 * that two neighbouring input blocks hold: output samples 0-3 come from the first block, 4-7
 * from the second. So the output's coefficients are T_0 X_0 + T_1 X_1 with T_b = C A_b C^T, A_b
 * the 8x8 averaging matrix of block b. In two dimensions the map of input block (row j, column
 * i) is T_j (vertically) and T_i (horizontally); a kept axis uses the identity. Applied one
 * axis at a time: each non-zero input coefficient adds a multiple of one 8-wide row of T_i to
 * its row, then each row that is not zero adds multiples of itself to the output rows T_j sends
 * it to. No IDCT, no FDCT, no colour conversion.
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

/* T_b for a halved axis (b = 0, 1), or the identity (b = -1), as T[out][in]. */
static void axis_map(double T[DCTSIZE][DCTSIZE], int b) {
  double C[DCTSIZE][DCTSIZE], A[DCTSIZE][DCTSIZE], CA[DCTSIZE][DCTSIZE];
  int k, x, i;
  memset(T, 0, sizeof(double) * DCTSIZE2);
  if (b < 0) {
    for (k = 0; k < DCTSIZE; k++)
      T[k][k] = 1.0;
    return;
  }
  for (k = 0; k < DCTSIZE; k++)
    for (x = 0; x < DCTSIZE; x++)
      C[k][x] = (k == 0 ? 0.35355339059327376220 : 0.5) * cos_pi16((2 * x + 1) * k);
  memset(A, 0, sizeof(A));
  for (i = 0; i < DCTSIZE / 2; i++) {
    A[4 * b + i][2 * i] = 0.5;
    A[4 * b + i][2 * i + 1] = 0.5;
  }
  multiply(CA, C, A, 0); /* T = C A C^T */
  multiply(T, CA, C, 1);
}

/* T stored [b][n][k] (transposed), or the identity on a kept axis (only b = 0 used), and for
 * each (b, k) the bits of the n that reach k. About a third of a halving map's entries are zero
 * (input coefficient 4 reaches nothing); those the cosines' rounding leaves at 1e-17 are made
 * exactly zero, so that skipping every zero entry changes no sum. */
static void axis_maps(float maps[2][DCTSIZE][DCTSIZE], unsigned char from[2][DCTSIZE], int halved) {
  double T[DCTSIZE][DCTSIZE];
  int b, n, k;
  memset(from, 0, 2 * DCTSIZE);
  for (b = 0; b < 2; b++) {
    axis_map(T, halved ? b : -1);
    for (n = 0; n < DCTSIZE; n++)
      for (k = 0; k < DCTSIZE; k++) {
        maps[b][n][k] = fabs(T[k][n]) < 1e-12 ? 0.0f : (float)T[k][n];
        if (maps[b][n][k] != 0.0f)
          from[b][k] |= (unsigned char)(1 << n);
      }
  }
}

void chroma_downsampler_init(struct chroma_downsampler *ds, int dx, int dy) {
  unsigned char across_from[2][DCTSIZE];
  int b, k;
  ds->dx = dx;
  ds->dy = dy;
  axis_maps(ds->across, across_from, dx == 2);
  axis_maps(ds->down, ds->down_from, dy == 2);
  for (b = 0; b < 2; b++) {
    ds->across_used[b] = 0;
    for (k = 0; k < DCTSIZE; k++)
      ds->across_used[b] |= across_from[b][k];
  }
}

/* Eight floats, a row of a block, as two vectors of four (GCC's vector extension: SSE2 on
 * x86-64, NEON on arm64), so that a sum stays in registers: a float array summed one
 * coefficient at a time waited on a store and a load per coefficient. Each lane is still a
 * multiply and then an add (-ffp-contract=off), the same arithmetic on both machines. */
typedef float float4 __attribute__((vector_size(4 * sizeof(float))));
typedef int int4 __attribute__((vector_size(4 * sizeof(int))));
struct row8 {
  float4 lo, hi;
};

/* sum += value * map[0..8] */
static inline void add_scaled(struct row8 *sum, float value, const float *map) {
  float4 lo, hi;
  memcpy(&lo, map, sizeof(lo));
  memcpy(&hi, map + 4, sizeof(hi));
  sum->lo += value * lo;
  sum->hi += value * hi;
}

void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const float *q_in,
                             const float *inverse_q_out, JCOEF *out) {
  /* rows[j][v]: row v of input block row j after the horizontal pass (8 output columns), where
   * bit v of used[j] is set; the other rows are zero. */
  struct row8 rows[2][DCTSIZE];
  float acc[DCTSIZE2], magnitude[DCTSIZE2];
  int used[2] = {0, 0}, i, j, v, r, k;
  for (j = 0; j < ds->dy; j++) {
    uint64_t nonzero[2];
    for (i = 0; i < ds->dx; i++)
      nonzero[i] = nonzero_mask(in[j * ds->dx + i]);
    for (v = 0; v < DCTSIZE; v++) {
      struct row8 sum = {{0, 0, 0, 0}, {0, 0, 0, 0}};
      unsigned any = 0;
      for (i = 0; i < ds->dx; i++) {
        const JCOEF *row = in[j * ds->dx + i] + DCTSIZE * v;
        unsigned columns = (unsigned)(nonzero[i] >> (DCTSIZE * v)) & ds->across_used[i];
        any |= columns;
        if (ds->dx == 1 && columns) {
          /* Kept horizontally: the row itself, times its quantisers. */
          int4 lo = {row[0], row[1], row[2], row[3]}, hi = {row[4], row[5], row[6], row[7]};
          float4 q_lo, q_hi;
          memcpy(&q_lo, q_in + DCTSIZE * v, sizeof(q_lo));
          memcpy(&q_hi, q_in + DCTSIZE * v + 4, sizeof(q_hi));
          sum.lo = __builtin_convertvector(lo, float4) * q_lo;
          sum.hi = __builtin_convertvector(hi, float4) * q_hi;
          break;
        }
        while (columns) {
          int n = __builtin_ctz(columns);
          columns &= columns - 1;
          add_scaled(&sum, (float)row[n] * q_in[DCTSIZE * v + n], ds->across[i][n]);
        }
      }
      if (any) {
        rows[j][v] = sum;
        used[j] |= 1 << v;
      }
    }
  }
  /* Vertical pass over the rows that are not zero (a kept axis: the identity). */
  for (r = 0; r < DCTSIZE; r++) {
    struct row8 sum = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    for (j = 0; j < ds->dy; j++) {
      unsigned from = (unsigned)used[j] & ds->down_from[j][r];
      while (from) {
        v = __builtin_ctz(from);
        from &= from - 1;
        sum.lo += ds->down[j][v][r] * rows[j][v].lo;
        sum.hi += ds->down[j][v][r] * rows[j][v].hi;
      }
    }
    memcpy(acc + DCTSIZE * r, &sum.lo, sizeof(sum.lo));
    memcpy(acc + DCTSIZE * r + 4, &sum.hi, sizeof(sum.hi));
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
