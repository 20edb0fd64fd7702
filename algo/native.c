/* Fused integer kernels of hardware-aware training (see native.py, which builds and loads this
 * file). Every kernel computes exactly what the torch code in cim.py and hardware.py computes;
 * tests compare the two on random inputs. Only integer arithmetic: results do not depend on
 * the compiler's vector width or the number of threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Inputs (batch, k) as bit planes in subarray blocks: int8 (n_sub, bits * batch, rows), the
 * plane index outer within a block's rows, zero where a block runs past k. */
void insitu_bit_planes(const int64_t *a, int64_t batch, int64_t k, int64_t bits, int64_t rows,
                       int64_t n_sub, int8_t *out) {
  for (int64_t s = 0; s < n_sub; ++s) {
    const int64_t r0 = s * rows;
    const int64_t live = (k - r0) < rows ? (k - r0) : rows;
    for (int64_t p = 0; p < bits; ++p)
      for (int64_t b = 0; b < batch; ++b) {
        int8_t *dst = out + ((s * bits + p) * batch + b) * rows;
        const int64_t *src = a + b * k + r0;
        for (int64_t r = 0; r < live; ++r) dst[r] = (int8_t)((src[r] >> p) & 1);
        for (int64_t r = live; r < rows; ++r) dst[r] = 0;
      }
  }
}

/* Cells of weights (k, n): int8 (n_sub * rows, n * arrays * slices), the last axis ordered
 * (column, polarity, slice), slice 0 holding the least significant cell bits; rows past k are
 * zero. differential: a positive and a negative array of magnitudes; otherwise one array of
 * offset-binary codes w + 2**(weight_bits - 1). */
/* The cells of one magnitude x as the low bytes of a word (slice s in byte s). */
static inline uint64_t spread(uint64_t x, int64_t slices, int64_t cell_bits, uint64_t mask) {
  uint64_t r = 0;
  for (int64_t s = 0; s < slices; ++s) r |= ((x >> (cell_bits * s)) & mask) << (8 * s);
  return r;
}

/* A weight's cells packed into one word of T (S slices per array), stored as one aligned T:
 * these loops vectorize. */
#define SLICE_DIFFERENTIAL(S, T)                                                                \
  {                                                                                            \
    T *dst = (T *)out;                                                                         \
    for (int64_t i = 0; i < k * n; ++i) {                                                      \
      const int64_t v = w[i];                                                                  \
      const uint64_t pos = spread((uint64_t)(v > 0 ? v : 0), (S), cell_bits, mask);            \
      const uint64_t neg = spread((uint64_t)(v < 0 ? -v : 0), (S), cell_bits, mask);           \
      dst[i] = (T)(pos | (neg << (8 * (S))));                                                  \
    }                                                                                          \
  }
#define SLICE_OFFSET(S, T)                                                                      \
  {                                                                                            \
    T *dst = (T *)out;                                                                         \
    for (int64_t i = 0; i < k * n; ++i)                                                        \
      dst[i] = (T)spread((uint64_t)(w[i] + offset), (S), cell_bits, mask);                     \
  }

void insitu_slice_cells(const int64_t *w, int64_t k, int64_t n, int64_t weight_bits,
                        int64_t cell_bits, int64_t differential, int64_t padded_rows,
                        int8_t *out) {
  const int64_t slices = weight_bits / cell_bits;
  const int64_t cpo = (differential ? 2 : 1) * slices;
  const uint64_t mask = (1ULL << cell_bits) - 1;
  const int64_t offset = 1LL << (weight_bits - 1);
  if (cpo == 8 && differential) SLICE_DIFFERENTIAL(4, uint64_t)
  else if (cpo == 8) SLICE_OFFSET(8, uint64_t)
  else if (cpo == 4 && differential) SLICE_DIFFERENTIAL(2, uint32_t)
  else if (cpo == 4) SLICE_OFFSET(4, uint32_t)
  else if (cpo == 2 && differential) SLICE_DIFFERENTIAL(1, uint16_t)
  else if (cpo == 2) SLICE_OFFSET(2, uint16_t)
  else {
    for (int64_t i = 0; i < k * n; ++i) {
      const int64_t v = w[i];
      int8_t *dst = out + i * cpo;
      if (differential) {
        const int64_t pos = v > 0 ? v : 0, neg = v < 0 ? -v : 0;
        for (int64_t s = 0; s < slices; ++s) {
          dst[s] = (int8_t)((pos >> (cell_bits * s)) & (int64_t)mask);
          dst[slices + s] = (int8_t)((neg >> (cell_bits * s)) & (int64_t)mask);
        }
      } else {
        const int64_t code = v + offset;
        for (int64_t s = 0; s < slices; ++s)
          dst[s] = (int8_t)((code >> (cell_bits * s)) & (int64_t)mask);
      }
    }
  }
  memset(out + k * n * cpo, 0, (size_t)((padded_rows - k) * n * cpo));
}

/* The ADC and the shift-add of one layer for samples b0..b1-1:
 * y[b, o] = sum over subarrays s, planes p, cells c of coef[c] * 2**p * lut[ps[s, p*batch+b, o*cpo+c]]
 * with ps int32 (n_sub, planes * batch, width = n_out * cpo). A partial sum outside the table
 * reads its nearest end (noisy sums are clamped before, so this never fires for valid input).
 * ACC is the per-cell accumulator; the caller picks int32 only when it cannot overflow. */
#define ADC_ACCUMULATE(NAME, ACC)                                                             \
  int64_t NAME(const int32_t *ps, int64_t n_sub, int64_t planes, int64_t batch, int64_t width,  \
               int64_t cpo, const int32_t *lut, int64_t lut_len, const int64_t *coef,          \
               int64_t b0, int64_t b1, int64_t *y) {                                           \
    ACC *acc = (ACC *)malloc(sizeof(ACC) * (size_t)width);                                      \
    if (acc == NULL) return -1;                                                                 \
    const int64_t n_out = width / cpo;                                                          \
    const int32_t top = (int32_t)(lut_len - 1);                                                 \
    for (int64_t b = b0; b < b1; ++b) {                                                         \
      memset(acc, 0, sizeof(ACC) * (size_t)width);                                              \
      for (int64_t s = 0; s < n_sub; ++s)                                                       \
        for (int64_t p = 0; p < planes; ++p) {                                                  \
          const int32_t *row = ps + ((s * planes + p) * batch + b) * width;                     \
          const ACC weight = (ACC)1 << p;                                                       \
          for (int64_t j = 0; j < width; ++j) {                                                 \
            int32_t v = row[j];                                                                 \
            v = v < 0 ? 0 : (v > top ? top : v);                                                \
            acc[j] += weight * (ACC)lut[v];                                                     \
          }                                                                                     \
        }                                                                                       \
      int64_t *yb = y + b * n_out;                                                              \
      for (int64_t o = 0; o < n_out; ++o) {                                                     \
        int64_t sum = 0;                                                                        \
        for (int64_t c = 0; c < cpo; ++c) sum += coef[c] * (int64_t)acc[o * cpo + c];          \
        yb[o] = sum;                                                                            \
      }                                                                                         \
    }                                                                                           \
    free(acc);                                                                                  \
    return 0;                                                                                   \
  }

ADC_ACCUMULATE(insitu_adc_accumulate32, int32_t)
ADC_ACCUMULATE(insitu_adc_accumulate64, int64_t)

/* A uniform ADC evaluated arithmetically in float32, which vectorizes without gathers (slow on
 * CPUs with the gather-data-sampling mitigation): code = min(floor(s * a + b), top_code), level
 * = floor(code * c + d). insitu_uniform_check compares it with the table on every partial sum
 * the table covers; the caller uses it only when they agree everywhere. */
static inline int32_t uniform_level(int32_t v, const float *q) {
  float code = floorf(fmaf((float)v, q[0], q[1]));
  code = code < q[2] ? code : q[2];
  return (int32_t)floorf(fmaf(code, q[3], q[4]));
}

int64_t insitu_uniform_check(const float *q, const int32_t *lut, int64_t lut_len) {
  for (int64_t v = 0; v < lut_len; ++v)
    if (uniform_level((int32_t)v, q) != lut[v]) return v + 1;
  return 0;
}

int64_t insitu_uniform_accumulate(const int32_t *ps, int64_t n_sub, int64_t planes,
                                  int64_t batch, int64_t width, int64_t cpo, const float *q,
                                  int64_t lut_len, const int64_t *coef, int64_t b0, int64_t b1,
                                  int64_t *y) {
  int64_t *acc = (int64_t *)malloc(sizeof(int64_t) * (size_t)width);
  int32_t *part = (int32_t *)malloc(sizeof(int32_t) * (size_t)width);
  if (acc == NULL || part == NULL) {
    free(acc);
    free(part);
    return -1;
  }
  const int64_t n_out = width / cpo;
  const int32_t top = (int32_t)(lut_len - 1);
  for (int64_t b = b0; b < b1; ++b) {
    memset(acc, 0, sizeof(int64_t) * (size_t)width);
    for (int64_t s = 0; s < n_sub; ++s) {
      /* the planes of one subarray sum in int32: at most 2**planes * lut_len per cell */
      memset(part, 0, sizeof(int32_t) * (size_t)width);
      for (int64_t p = 0; p < planes; ++p) {
        const int32_t *row = ps + ((s * planes + p) * batch + b) * width;
        const int32_t weight = (int32_t)1 << p;
        for (int64_t j = 0; j < width; ++j) {
          int32_t v = row[j];
          v = v < 0 ? 0 : (v > top ? top : v);
          part[j] += weight * uniform_level(v, q);
        }
      }
      for (int64_t j = 0; j < width; ++j) acc[j] += part[j];
    }
    int64_t *yb = y + b * n_out;
    for (int64_t o = 0; o < n_out; ++o) {
      int64_t sum = 0;
      for (int64_t c = 0; c < cpo; ++c) sum += coef[c] * acc[o * cpo + c];
      yb[o] = sum;
    }
  }
  free(acc);
  free(part);
  return 0;
}

/* The contract's hash dither word of element i (hardware.py, _dither). */
static inline uint32_t dither_word(int64_t i, uint32_t base) {
  uint32_t x = (uint32_t)((uint64_t)i * 0x27D4EB2Fu) + base;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x2C1B3C6Du;
  x ^= x >> 16;
  return x;
}

static inline int64_t saturate(int64_t v, int64_t limit) {
  return v > limit ? limit : (v < -limit ? -limit : v);
}

/* One layer's weight update: dw = sat(round(g / 2**shift), grad_limit) with rounding 0
 * (nearest, half up), 1 (the hash dither) or any rounding when shift <= 0 (g << -shift);
 * w = sat(w - dw, weight_limit) in place. dw is written when dw_out is not NULL; the new
 * weights' cells (as insitu_slice_cells, weight_bits = log2(weight_limit + 1) + 1) when cells
 * is not NULL. */
void insitu_update(int64_t *w, const int64_t *g, int64_t count, int64_t shift, int64_t dither,
                   int64_t layer, int64_t step, int64_t seed, int64_t grad_limit,
                   int64_t weight_limit, int64_t *dw_out, int64_t cell_bits,
                   int64_t differential, int8_t *cells) {
  const uint32_t base = (uint32_t)((uint64_t)step * 0x165667B1u) +
                        (uint32_t)((uint64_t)layer * 0x61C88647u) + (uint32_t)(uint64_t)seed;
  const int64_t half = shift > 0 ? (1LL << (shift - 1)) : 0;
  for (int64_t i = 0; i < count; ++i) {
    int64_t r;
    if (shift <= 0) {
      r = g[i] * (1LL << -shift);
    } else if (dither) {
      const uint32_t x = dither_word(i, base);
      const int64_t d = shift <= 32 ? (int64_t)(x >> (32 - shift)) : ((int64_t)x << (shift - 32));
      r = (g[i] + d) >> shift;
    } else {
      r = (g[i] + half) >> shift;
    }
    const int64_t dw = saturate(r, grad_limit);
    if (dw_out != NULL) dw_out[i] = dw;
    w[i] = saturate(w[i] - dw, weight_limit);
  }
  if (cells != NULL) {
    int64_t weight_bits = 1;
    while ((1LL << (weight_bits - 1)) - 1 < weight_limit) ++weight_bits;
    /* the padding rows of cells are already zero and stay so */
    insitu_slice_cells(w, count, 1, weight_bits, cell_bits, differential, count, cells);
  }
}
