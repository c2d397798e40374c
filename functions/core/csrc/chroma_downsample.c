/*
 * DCT-domain chroma downsampling (see chroma_downsample.h).
 *
 * JPEG's 8-point DCT is orthonormal: with C[k][x] = c(k) cos((2x + 1) k pi / 16), c(0) =
 * sqrt(1/8), c(k > 0) = 1/2, a block's samples are x = C^T X and its coefficients X = C x. On
 * one halved axis, output sample i (of 8) is the mean of input samples 2i and 2i + 1 of the 16
 * that two neighbouring input blocks hold: output samples 0-3 come from the first block, 4-7
 * from the second. So the output's coefficients are T_0 X_0 + T_1 X_1 with T_b = C A_b C^T, A_b
 * the 8x8 averaging matrix of block b. In two dimensions the map of input block (row j, column
 * i) is T_j (vertically) and T_i (horizontally); a kept axis uses the identity. The basis holds
 * their products, so each non-zero input coefficient (a q90-95 chroma block has a few) adds one
 * 64-wide multiple to the output: no IDCT, no FDCT, no colour conversion.
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

/* T stored [b][n][k] (transposed), or the identity on a kept axis (only b = 0 used). */
static void axis_maps(float maps[2][DCTSIZE][DCTSIZE], int halved) {
  double T[DCTSIZE][DCTSIZE];
  int b, n, k;
  for (b = 0; b < 2; b++) {
    axis_map(T, halved ? b : -1);
    for (n = 0; n < DCTSIZE; n++)
      for (k = 0; k < DCTSIZE; k++)
        maps[b][n][k] = (float)T[k][n];
  }
}

void chroma_downsampler_init(struct chroma_downsampler *ds, int dx, int dy) {
  ds->dx = dx;
  ds->dy = dy;
  axis_maps(ds->across, dx == 2);
  axis_maps(ds->down, dy == 2);
}

/* out[k] += value * map[k], k < 8 (vectorised by -O3). */
static void add_scaled(float *out, const float *map, float value) {
  int k;
  for (k = 0; k < DCTSIZE; k++)
    out[k] += value * map[k];
}

void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const float *q_in,
                             const float *inverse_q_out, JCOEF *out) {
  /* rows[j][v]: input row v of block row j after the horizontal pass (output columns). */
  float rows[2][DCTSIZE][DCTSIZE], acc[DCTSIZE2], magnitude[DCTSIZE2];
  int used[2] = {0, 0}, b, j, v, r, k;
  memset(acc, 0, sizeof(acc));
  for (b = 0; b < ds->dx * ds->dy; b++) {
    const JCOEF *block = in[b];
    uint64_t nonzero = nonzero_mask(block);
    int i = ds->dx == 2 ? b & 1 : 0;
    j = ds->dx == 2 ? b >> 1 : b;
    while (nonzero) {
      int n = __builtin_ctzll(nonzero), row = n / DCTSIZE, column = n % DCTSIZE;
      float value = (float)block[n] * q_in[n];
      nonzero &= nonzero - 1;
      if (ds->dx == 1) {
        /* Kept horizontally: halve down this column right away. */
        for (r = 0; r < DCTSIZE; r++)
          acc[r * DCTSIZE + column] += value * ds->down[j][row][r];
      } else {
        if (!(used[j] & (1 << row))) {
          memset(rows[j][row], 0, sizeof(rows[j][row]));
          used[j] |= 1 << row;
        }
        add_scaled(rows[j][row], ds->across[i][column], value);
      }
    }
  }
  /* Vertical pass over the non-zero rows (a kept axis: the identity). */
  for (j = 0; j < ds->dy && ds->dx == 2; j++)
    for (v = 0; v < DCTSIZE; v++) {
      if (!(used[j] & (1 << v)))
        continue;
      for (r = 0; r < DCTSIZE; r++)
        add_scaled(acc + r * DCTSIZE, rows[j][v], ds->down[j][v][r]);
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
