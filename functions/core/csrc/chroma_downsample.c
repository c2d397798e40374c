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

/* T_b for a halved axis (b = 0, 1), or the identity (b = -1), as T[out][in]. */
static void axis_map(double T[DCTSIZE][DCTSIZE], int b) {
  double C[DCTSIZE][DCTSIZE], A[DCTSIZE][DCTSIZE], CA[DCTSIZE][DCTSIZE];
  int k, x, i, n;
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
  /* T = C A C^T */
  for (k = 0; k < DCTSIZE; k++)
    for (x = 0; x < DCTSIZE; x++) {
      double sum = 0;
      for (i = 0; i < DCTSIZE; i++)
        sum += C[k][i] * A[i][x];
      CA[k][x] = sum;
    }
  for (k = 0; k < DCTSIZE; k++)
    for (n = 0; n < DCTSIZE; n++) {
      double sum = 0;
      for (x = 0; x < DCTSIZE; x++)
        sum += CA[k][x] * C[n][x];
      T[k][n] = sum;
    }
}

void chroma_downsampler_init(struct chroma_downsampler *ds, int dx, int dy) {
  double Tv[DCTSIZE][DCTSIZE], Th[DCTSIZE][DCTSIZE];
  int j, i, v, u, r, s;
  ds->dx = dx;
  ds->dy = dy;
  memset(ds->basis, 0, sizeof(ds->basis));
  for (j = 0; j < dy; j++) {
    axis_map(Tv, dy == 2 ? j : -1);
    for (i = 0; i < dx; i++) {
      float(*basis)[DCTSIZE2] = ds->basis[j * dx + i];
      axis_map(Th, dx == 2 ? i : -1);
      /* Input coefficient (v, u) -> output coefficient (r, s): Tv[r][v] * Th[s][u]. */
      for (v = 0; v < DCTSIZE; v++)
        for (u = 0; u < DCTSIZE; u++)
          for (r = 0; r < DCTSIZE; r++)
            for (s = 0; s < DCTSIZE; s++)
              basis[v * DCTSIZE + u][r * DCTSIZE + s] = (float)(Tv[r][v] * Th[s][u]);
    }
  }
}

void chroma_downsample_block(const struct chroma_downsampler *ds, JCOEF *const in[4], const UINT16 *q_in,
                             const UINT16 *q_out, JCOEF *out) {
  float acc[DCTSIZE2];
  int b, n, k;
  memset(acc, 0, sizeof(acc));
  for (b = 0; b < ds->dx * ds->dy; b++) {
    const JCOEF *block = in[b];
    for (n = 0; n < DCTSIZE2; n++) {
      const float *row = ds->basis[b][n];
      float value;
      if (block[n] == 0)
        continue;
      value = (float)block[n] * (float)q_in[n];
      for (k = 0; k < DCTSIZE2; k++) /* vectorised by -O3 */
        acc[k] += value * row[k];
    }
  }
  for (k = 0; k < DCTSIZE2; k++) {
    float q = acc[k] / (float)q_out[k], magnitude = fabsf(q) + 0.5f;
    int rounded = (int)(magnitude < 32767.0f ? magnitude : 32767.0f);
    out[k] = (JCOEF)(q < 0 ? -rounded : rounded);
  }
}
