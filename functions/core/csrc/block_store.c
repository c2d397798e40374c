#include "block_store.h"

#include <stdlib.h>
#include <string.h>

extern const int jpeg_natural_order[]; /* libjpeg's, zigzag index -> natural index */

static int take(size_t *budget, size_t bytes) {
  if (bytes > *budget)
    return 0;
  *budget -= bytes;
  return 1;
}

int block_store_init(struct block_store *s, JDIMENSION width, JDIMENSION height, int band_rows, size_t *budget) {
  size_t blocks = (size_t)width * height, band = (size_t)band_rows * width * sizeof(JBLOCK);
  memset(s, 0, sizeof(*s));
  s->width = width;
  s->height = height;
  s->budget = budget;
  s->band_rows = band_rows;
  if (band_rows < 0 || band_rows > (int)(sizeof(s->rows) / sizeof(s->rows[0])) ||
      !take(budget, blocks * sizeof(struct stored_block) + band))
    return 0;
  s->blocks = (struct stored_block *)malloc(blocks * sizeof(struct stored_block));
  s->band = band_rows > 0 ? (JBLOCKROW)malloc(band) : NULL;
  return s->blocks != NULL && (band_rows == 0 || s->band != NULL);
}

void block_store_free(struct block_store *s) {
  free(s->blocks);
  free(s->values);
  free(s->band);
  memset(s, 0, sizeof(*s));
}

int block_store_put(struct block_store *s, JDIMENSION x, JDIMENSION y, JCOEF dc, const struct kept_coefficients *kept) {
  struct stored_block *b = &s->blocks[(size_t)y * s->width + x];
  if (s->count + (size_t)kept->count > s->capacity) {
    /* Start at 4 values a block, a q90 photo's usual, and double. */
    size_t capacity = s->capacity ? 2 * s->capacity : 4 * (size_t)s->width * s->height + DCTSIZE2;
    JCOEF *grown;
    if (!take(s->budget, (capacity - s->capacity) * sizeof(JCOEF)))
      return 0;
    grown = (JCOEF *)realloc(s->values, capacity * sizeof(JCOEF));
    if (grown == NULL)
      return 0;
    s->values = grown;
    s->capacity = capacity;
  }
  b->zigzag = kept->zigzag;
  b->first = (uint32_t)s->count;
  b->dc = dc;
  if (kept->count > 0) /* values is NULL until the first */
    memcpy(s->values + s->count, kept->ac, (size_t)kept->count * sizeof(JCOEF));
  s->count += (size_t)kept->count;
  return 1;
}

JBLOCKARRAY block_store_rows(struct block_store *s, JDIMENSION start, JDIMENSION count) {
  JDIMENSION r, x;
  for (r = 0; r < count && (int)r < s->band_rows; r++) {
    JDIMENSION y = start + r;
    JBLOCKROW row = s->band + (size_t)r * s->width;
    s->rows[r] = row;
    if (y >= s->height)
      continue; /* padding */
    for (x = 0; x < s->width; x++) {
      const struct stored_block *b = &s->blocks[(size_t)y * s->width + x];
      const JCOEF *v = s->values + b->first;
      uint64_t zz = b->zigzag;
      JCOEF *block = row[x];
      memset(block, 0, sizeof(JBLOCK));
      block[0] = b->dc;
      while (zz) {
        block[jpeg_natural_order[__builtin_ctzll(zz)]] = *v++;
        zz &= zz - 1;
      }
    }
  }
  return s->rows;
}
