/* Fused integer kernels of hardware-aware training (see native.py, which builds and loads this
 * file). Every kernel computes exactly what the torch code in cim.py and hardware.py computes;
 * tests compare the two on random inputs. Only integer arithmetic: results do not depend on
 * the compiler's vector width or the number of threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Inputs (batch, k) as bit-plane rows of each subarray block: out int8 (n_sub, batch * bits,
 * rows), zero where a block runs past k. Rows are listed sample-major: rowmap[s, r] = b * bits
 * + p names row r's sample b and plane p, counts[s] how many rows block s has. With skip_zero
 * a row of zeros is left out (its partial sums are 0 and the ADC's level of 0 is 0, so it
 * adds nothing: the array does not fire a read for an all-zero input plane). */
void insitu_bit_planes(const int64_t *a, int64_t batch, int64_t k, int64_t bits, int64_t rows,
                       int64_t n_sub, int64_t skip_zero, int8_t *out, int32_t *rowmap,
                       int64_t *counts) {
  for (int64_t s = 0; s < n_sub; ++s) {
    const int64_t r0 = s * rows;
    const int64_t live = (k - r0) < rows ? (k - r0) : rows;
    int64_t n = 0;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t p = 0; p < bits; ++p) {
        int8_t *dst = out + (s * batch * bits + n) * rows;
        const int64_t *src = a + b * k + r0;
        int64_t any = 0;
        for (int64_t r = 0; r < live; ++r) {
          dst[r] = (int8_t)((src[r] >> p) & 1);
          any |= dst[r];
        }
        for (int64_t r = live; r < rows; ++r) dst[r] = 0;
        if (any || !skip_zero) rowmap[s * batch * bits + n++] = (int32_t)(b * bits + p);
      }
    counts[s] = n;
  }
}

/* The cells of one magnitude x as the low bytes of a word (slice s in byte s). */
static inline uint64_t spread(uint64_t x, int64_t slices, int64_t cell_bits, uint64_t mask) {
  uint64_t r = 0;
  for (int64_t s = 0; s < slices; ++s) r |= ((x >> (cell_bits * s)) & mask) << (8 * s);
  return r;
}

/* A weight's cells packed into one word of T (S slices per array), stored as one aligned T:
 * these loops vectorize. */
#define SLICE_DIFFERENTIAL(S, CB, T)                                                            \
  {                                                                                            \
    T *dst = (T *)out;                                                                         \
    for (int64_t i = 0; i < k * n; ++i) {                                                      \
      const int64_t v = w[i];                                                                  \
      const uint64_t pos = spread((uint64_t)(v > 0 ? v : 0), (S), (CB), (1ULL << (CB)) - 1);    \
      const uint64_t neg = spread((uint64_t)(v < 0 ? -v : 0), (S), (CB), (1ULL << (CB)) - 1);   \
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
  /* constant slice counts and cell widths unroll into straight vector code; the default
   * (8-bit weights in 2-bit cells) comes first */
  if (cpo == 8 && differential && cell_bits == 2) SLICE_DIFFERENTIAL(4, 2, uint64_t)
  else if (cpo == 8 && differential) SLICE_DIFFERENTIAL(4, cell_bits, uint64_t)
  else if (cpo == 8) SLICE_OFFSET(8, uint64_t)
  else if (cpo == 4 && differential && cell_bits == 4) SLICE_DIFFERENTIAL(2, 4, uint32_t)
  else if (cpo == 4 && differential) SLICE_DIFFERENTIAL(2, cell_bits, uint32_t)
  else if (cpo == 4) SLICE_OFFSET(4, uint32_t)
  else if (cpo == 2 && differential) SLICE_DIFFERENTIAL(1, cell_bits, uint16_t)
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

/* The ADC and the plane shift-add of one subarray: for each listed row r (sample b, plane p
 * from rowmap[r] = b * bits + p, rows of one sample consecutive) and cell column j,
 * acc[b, j] += 2**p * level(ps[r, j]), with ps int32 (nrows, width) and acc int64
 * (batch, width). level is the table lut; a partial sum outside it reads its nearest end
 * (noisy sums are clamped before, so this never fires for valid input). PART sums one
 * sample's planes; the caller picks int32 only when (2**bits - 1) * max level fits. The
 * partial sums of one subarray are fresh in cache when this runs right after their product. */
#define ADC_SUBARRAY(NAME, PART)                                                                \
  int64_t NAME(const int32_t *ps, const int32_t *rowmap, int64_t nrows, int64_t bits,           \
               int64_t width, const int32_t *lut, int64_t lut_len, int64_t *acc) {              \
    PART *part = (PART *)malloc(sizeof(PART) * (size_t)width);                                  \
    if (part == NULL) return -1;                                                                \
    const int32_t top = (int32_t)(lut_len - 1);                                                 \
    for (int64_t r = 0; r < nrows;) {                                                           \
      const int64_t b = rowmap[r] / bits;                                                       \
      memset(part, 0, sizeof(PART) * (size_t)width);                                            \
      for (; r < nrows && rowmap[r] / bits == b; ++r) {                                         \
        const int32_t *row = ps + r * width;                                                    \
        const PART weight = (PART)1 << (rowmap[r] % bits);                                      \
        for (int64_t j = 0; j < width; ++j) {                                                   \
          int32_t v = row[j];                                                                   \
          v = v < 0 ? 0 : (v > top ? top : v);                                                  \
          part[j] += weight * (PART)lut[v];                                                     \
        }                                                                                       \
      }                                                                                         \
      int64_t *ab = acc + b * width;                                                            \
      for (int64_t j = 0; j < width; ++j) ab[j] += (int64_t)part[j];                            \
    }                                                                                           \
    free(part);                                                                                 \
    return 0;                                                                                   \
  }

ADC_SUBARRAY(insitu_adc_subarray32, int32_t)
ADC_SUBARRAY(insitu_adc_subarray64, int64_t)

/* The uniform ADC form of insitu_adc_subarray (arithmetic, no gathers) with a sample's planes
 * summed in float32 registers, 64 columns at a time (exact: the caller checks
 * (2**bits - 1) * max level < 2**24). Partial sums must lie in 0..top of the table, as
 * products of bit planes and cells always do (no clamp here). */
#define CHUNK 64
/* part[j] += weight * level(row[j]) for one chunk of columns (restrict: lets it vectorize) */
static inline void uniform_chunk(float *restrict part, const int32_t *restrict row, float weight,
                                 const float *restrict q) {
  const float a = q[0], b0 = q[1], top = q[2], c = q[3], d = q[4];
  for (int64_t j = 0; j < CHUNK; ++j) {
    float code = floorf(fmaf((float)row[j], a, b0));
    code = code < top ? code : top;
    part[j] = fmaf(floorf(fmaf(code, c, d)), weight, part[j]);
  }
}

int64_t insitu_uniform_subarray(const int32_t *ps, const int32_t *rowmap, int64_t nrows,
                                int64_t bits, int64_t width, const float *q, int64_t *acc) {
  int64_t r0 = 0;
  while (r0 < nrows) {
    const int64_t b = rowmap[r0] / bits;
    int64_t r1 = r0 + 1;
    while (r1 < nrows && rowmap[r1] / bits == b) ++r1;
    int64_t *ab = acc + b * width;
    int64_t j0 = 0;
    for (; j0 + CHUNK <= width; j0 += CHUNK) {
      float part[CHUNK];
      memset(part, 0, sizeof part);
      for (int64_t r = r0; r < r1; ++r)
        uniform_chunk(part, ps + r * width + j0, (float)(1 << (rowmap[r] % bits)), q);
      for (int64_t j = 0; j < CHUNK; ++j) ab[j0 + j] += (int64_t)part[j];
    }
    for (int64_t j = j0; j < width; ++j) {
      float sum = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        const float code0 = floorf(fmaf((float)ps[r * width + j], q[0], q[1]));
        const float code = code0 < q[2] ? code0 : q[2];
        sum = fmaf(floorf(fmaf(code, q[3], q[4])), (float)(1 << (rowmap[r] % bits)), sum);
      }
      ab[j] += (int64_t)sum;
    }
    r0 = r1;
  }
  return 0;
}

static inline int64_t saturate(int64_t v, int64_t limit) {
  return v > limit ? limit : (v < -limit ? -limit : v);
}

static inline int64_t rshift_round(int64_t v, int64_t shift) {
  return shift <= 0 ? v * (1LL << -shift) : (v + (1LL << (shift - 1))) >> shift;
}

/* y[b, o] = sum over cells c of coef[c] * acc[b, o * cpo + c] (the slices' shifts and the
 * polarities' signs), minus offset * rowsum[b] when rowsum is not NULL (offset-binary
 * weights), then the tile's requantization: mode 1 (hidden) min(rshift_round(max(y, 0)),
 * limit), mode 2 (output) sat(rshift_round(y), limit), mode 0 none. */
void insitu_reduce_cells(const int64_t *acc, int64_t batch, int64_t n_out, int64_t cpo,
                         const int64_t *coef, const int64_t *rowsum, int64_t offset,
                         int64_t mode, int64_t shift, int64_t limit, int64_t *y) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t o = 0; o < n_out; ++o) {
      const int64_t *a = acc + (b * n_out + o) * cpo;
      int64_t sum = 0;
      for (int64_t c = 0; c < cpo; ++c) sum += coef[c] * a[c];
      if (rowsum != NULL) sum -= offset * rowsum[b];
      if (mode == 1) {
        sum = rshift_round(sum > 0 ? sum : 0, shift);
        sum = sum < limit ? sum : limit;
      } else if (mode == 2) {
        sum = saturate(rshift_round(sum, shift), limit);
      }
      y[b * n_out + o] = sum;
    }
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

/* One layer's weight update: dw = sat(round(g / 2**shift), grad_limit) with rounding 0
 * (nearest, half up), 1 (the hash dither) or any rounding when shift <= 0 (g << -shift);
 * w = sat(w - dw, weight_limit) in place. g is int64 (g_kind 0), or integer-valued float32
 * (1) or float64 (2) straight from an exact BLAS product. dw is written when dw_out is not
 * NULL; the new weights' cells (as insitu_slice_cells, weight_bits = log2(weight_limit + 1)
 * + 1) when cells is not NULL. */
void insitu_update(int64_t *w, const void *g_any, int64_t g_kind, int64_t count, int64_t shift,
                   int64_t dither, int64_t layer, int64_t step, int64_t seed, int64_t grad_limit,
                   int64_t weight_limit, int64_t *dw_out, int64_t cell_bits,
                   int64_t differential, int8_t *cells) {
  const uint32_t base = (uint32_t)((uint64_t)step * 0x165667B1u) +
                        (uint32_t)((uint64_t)layer * 0x61C88647u) + (uint32_t)(uint64_t)seed;
  const int64_t half = shift > 0 ? (1LL << (shift - 1)) : 0;
  /* one loop per rounding and operand type, so that each vectorizes */
#define UPDATE_LOOP(T, ROUND)                                                                   \
  {                                                                                            \
    const T *g = (const T *)g_any;                                                             \
    for (int64_t i = 0; i < count; ++i) {                                                      \
      const int64_t gi = (int64_t)g[i];                                                        \
      const int64_t r = ROUND;                                                                 \
      const int64_t dw = saturate(r, grad_limit);                                              \
      if (dw_out != NULL) dw_out[i] = dw;                                                      \
      w[i] = saturate(w[i] - dw, weight_limit);                                                \
    }                                                                                          \
  }
#define DITHERED ((gi + (shift <= 32 ? (int64_t)(dither_word(i, base) >> (32 - shift))           \
                                     : ((int64_t)dither_word(i, base) << (shift - 32)))) >>      \
                  shift)
#define BY_TYPE(ROUND)                                                                          \
  if (g_kind == 1) UPDATE_LOOP(float, ROUND)                                                   \
  else if (g_kind == 2) UPDATE_LOOP(double, ROUND)                                             \
  else UPDATE_LOOP(int64_t, ROUND)
  if (shift <= 0) {
    BY_TYPE(gi * (1LL << -shift))
  } else if (dither) {
    BY_TYPE(DITHERED)
  } else {
    BY_TYPE((gi + half) >> shift)
  }
#undef BY_TYPE
#undef DITHERED
#undef UPDATE_LOOP
  if (cells != NULL) {
    int64_t weight_bits = 1;
    while ((1LL << (weight_bits - 1)) - 1 < weight_limit) ++weight_bits;
    /* the padding rows of cells are already zero and stay so */
    insitu_slice_cells(w, count, 1, weight_bits, cell_bits, differential, count, cells);
  }
}

/* The output error of a step: e = sat(o - t, limit) with t = target at each sample's label and
 * 0 elsewhere; with margin, a component that is already past its target (o >= t for the label,
 * o <= 0 elsewhere) is 0. Returns the sum of e**2 (the caller's mean squared error). */
double insitu_output_error(const int64_t *o, const int64_t *labels, int64_t batch, int64_t n_out,
                           int64_t target, int64_t limit, int64_t margin, int64_t *e) {
  double sse = 0.0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < n_out; ++k) {
      const int64_t t = labels[b] == k ? target : 0;
      int64_t v = saturate(o[b * n_out + k] - t, limit);
      if (margin) v = t > 0 ? (v < 0 ? v : 0) : (v > 0 ? v : 0);
      e[b * n_out + k] = v;
      sse += (double)v * (double)v;
    }
  return sse;
}

/* A hidden layer's delta from its feedback product u (integer-valued float32, kind 1, or
 * float64, kind 2): sat(rshift_round(u, shift), limit) where the neuron fired (hidden > 0),
 * else 0. */
void insitu_hidden_delta(const void *u_any, int64_t kind, const int64_t *hidden, int64_t count,
                         int64_t shift, int64_t limit, int64_t *delta) {
  const float *u32 = (const float *)u_any;
  const double *u64 = (const double *)u_any;
  if (kind == 1) {
    for (int64_t i = 0; i < count; ++i)
      delta[i] = hidden[i] > 0 ? saturate(rshift_round((int64_t)u32[i], shift), limit) : 0;
  } else {
    for (int64_t i = 0; i < count; ++i)
      delta[i] = hidden[i] > 0 ? saturate(rshift_round((int64_t)u64[i], shift), limit) : 0;
  }
}

/* The device model's update (algo/device.py), its two memory-bound passes; the pulse and curve
 * arithmetic between them stays in torch. Gather: the devices with a positive request, then
 * those with a negative one (each group in ascending index), their request as float64, their
 * conductance and their rank among all the programmed devices in ascending index (the order
 * the random draws are made in). kind 0: int64 requests, 1: float64. Returns how many; *n_pos
 * how many are positive. */
#define DEVICE_GATHER(T)                                                                        \
  {                                                                                            \
    const T *dw = (const T *)dw_any;                                                           \
    for (int64_t sign = 1; sign >= -1; sign -= 2) {                                            \
      int64_t r = 0;                                                                           \
      for (int64_t i = 0; i < n; ++i)                                                          \
        if (dw[i] != 0) {                                                                      \
          if ((dw[i] > 0) == (sign > 0)) {                                                     \
            idx[k] = i;                                                                        \
            rank[k] = r;                                                                       \
            req[k] = (double)dw[i];                                                            \
            g_out[k++] = g[i];                                                                 \
          }                                                                                    \
          ++r;                                                                                 \
        }                                                                                      \
      if (sign > 0) *n_pos = k;                                                                \
    }                                                                                          \
  }
int64_t insitu_device_gather(const void *dw_any, int64_t kind, int64_t n, const double *g,
                             int64_t *idx, int64_t *rank, double *req, double *g_out,
                             int64_t *n_pos) {
  int64_t k = 0;
  if (kind == 0)
    DEVICE_GATHER(int64_t)
  else
    DEVICE_GATHER(double)
  return k;
}
#undef DEVICE_GATHER

/* Scatter: g[idx] = new_g and, when w is not NULL, re-read those devices as DeviceArray.read
 * does: stuck ? stuck_value : clamp(round_half_even((2g - 1) * w_max * gain), +-w_max). */
void insitu_device_scatter(const int64_t *idx, int64_t k, const double *new_g, double *g,
                           const double *gain, const uint8_t *stuck, const int64_t *stuck_value,
                           int64_t w_max, int64_t *w) {
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = idx[j];
    g[i] = new_g[j];
    if (w != NULL) {
      double v = nearbyint((2.0 * new_g[j] - 1.0) * (double)w_max * gain[i]);
      v = v < (double)-w_max ? (double)-w_max : (v > (double)w_max ? (double)w_max : v);
      w[i] = stuck[i] ? stuck_value[i] : (int64_t)v;
    }
  }
}
