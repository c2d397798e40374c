/*
 * Two builds of the codec's C side by side in one process (bench/codec_ab.sh links them, their
 * symbols prefixed a_ and b_): per file, imgpipe_requantize of each build by turns, A then B,
 * then B then A, so that both meet the same machine; the median of each build's times and of the
 * run-by-run ratios B / A, the same for the time spent reading the input, and whether the two
 * outputs are byte-identical (or both refused).
 *
 *   codec_ab RUNS FILE...
 *
 * A file named like the corpus's phone copies (...-o6.jpg) is turned by that EXIF orientation,
 * as the worker would; CODEC_AB_ORIENTATION=N turns every file by N.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int requantize_fn(const unsigned char *in, unsigned long in_len, int quality, int orientation,
                          unsigned long max_memory, unsigned char **out, unsigned long *out_len, unsigned int *width,
                          unsigned int *height, char *err_msg, int err_len, int flags, uint64_t *decode_ns);
requantize_fn a_imgpipe_requantize, b_imgpipe_requantize;

#define MAX_RUNS 101

struct result {
  int code;
  unsigned char *jpeg;
  unsigned long length;
  double ms, reading_ms;
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *values, int n) {
  qsort(values, (size_t)n, sizeof(double), by_value);
  return values[n / 2];
}

static struct result run(requantize_fn *requantize, const unsigned char *in, unsigned long length, int orientation) {
  struct result r;
  unsigned int width, height;
  char error[256];
  uint64_t reading_ns;
  double started = now_ms();
  r.code = requantize(in, length, 50, orientation, 0, &r.jpeg, &r.length, &width, &height, error, sizeof(error), 0,
                      &reading_ns);
  r.ms = now_ms() - started;
  r.reading_ms = reading_ns / 1e6;
  return r;
}

static unsigned char *read_file(const char *path, unsigned long *length) {
  FILE *f = fopen(path, "rb");
  unsigned char *data;
  long size;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    return NULL;
  data = malloc((size_t)size + 1);
  if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
    fclose(f);
    return NULL;
  }
  fclose(f);
  *length = (unsigned long)size;
  return data;
}

static int orientation_of(const char *path) {
  const char *fixed = getenv("CODEC_AB_ORIENTATION"), *name = strrchr(path, '/'), *o;
  name = name ? name + 1 : path;
  if (fixed != NULL)
    return atoi(fixed);
  o = strstr(name, "-o");
  return o != NULL && o[2] >= '1' && o[2] <= '8' && o[3] == '.' ? o[2] - '0' : 1;
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 0, i, differ = 0;
  double total_a = 0, total_b = 0, reading_a = 0, reading_b = 0;
  if (argc < 3 || runs < 1 || runs > MAX_RUNS) {
    fprintf(stderr, "usage: codec_ab RUNS(1-%d) FILE...\n", MAX_RUNS);
    return 2;
  }
  printf("| file | A ms (reading) | B ms (reading) | B / A | reading B / A | same output |\n|---|---|---|---|---|---|\n");
  for (i = 2; i < argc; i++) {
    unsigned long length;
    unsigned char *in = read_file(argv[i], &length);
    double a[MAX_RUNS], b[MAX_RUNS], a_reading[MAX_RUNS], b_reading[MAX_RUNS], ratio[MAX_RUNS], reading_ratio[MAX_RUNS];
    struct result first_a, first_b;
    int orientation = orientation_of(argv[i]), r, same;
    const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
    if (in == NULL) {
      perror(argv[i]);
      return 1;
    }
    /* the first run of each, not timed: the outputs compared, and the memory warmed */
    first_a = run(a_imgpipe_requantize, in, length, orientation);
    first_b = run(b_imgpipe_requantize, in, length, orientation);
    same = first_a.code == first_b.code && first_a.length == first_b.length &&
           (first_a.length == 0 || memcmp(first_a.jpeg, first_b.jpeg, first_a.length) == 0);
    differ += !same;
    free(first_a.jpeg);
    free(first_b.jpeg);
    for (r = 0; r < runs; r++) {
      struct result x, y;
      if (r & 1) {
        y = run(b_imgpipe_requantize, in, length, orientation);
        x = run(a_imgpipe_requantize, in, length, orientation);
      } else {
        x = run(a_imgpipe_requantize, in, length, orientation);
        y = run(b_imgpipe_requantize, in, length, orientation);
      }
      free(x.jpeg);
      free(y.jpeg);
      a[r] = x.ms, b[r] = y.ms, a_reading[r] = x.reading_ms, b_reading[r] = y.reading_ms;
      ratio[r] = y.ms / x.ms;
      reading_ratio[r] = x.reading_ms > 0 ? y.reading_ms / x.reading_ms : 1;
    }
    {
      double ma = median(a, runs), mb = median(b, runs), ra = median(a_reading, runs), rb = median(b_reading, runs);
      printf("| %s | %.1f (%.1f) | %.1f (%.1f) | %.3fx | %.3fx | %s |\n", name, ma, ra, mb, rb, median(ratio, runs),
             median(reading_ratio, runs), same ? "yes" : (first_a.code != first_b.code ? "NO: result code" : "NO"));
      total_a += ma, total_b += mb, reading_a += ra, reading_b += rb;
    }
    free(in);
  }
  printf("| **sum of the medians** | %.1f (%.1f) | %.1f (%.1f) | %.3fx | %.3fx | %d differ |\n", total_a, reading_a,
         total_b, reading_b, total_b / total_a, reading_b / reading_a, differ);
  return 0;
}
