/* Integer kernels, bit-exact with the NumPy reference (sdk/kernels, docs/ops.md). */
#ifndef EDGE_KERNELS_H
#define EDGE_KERNELS_H
#include <stdint.h>

typedef struct {
  uint8_t *data;
  uint8_t dtype;
  int32_t zero_point;
  uint32_t count;   /* elements */
} tensor_t;

#if defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((noipa))
#else
#define KERNEL __attribute__((noinline))
#endif

int32_t tensor_load(const tensor_t *t, uint32_t i);
void tensor_store(tensor_t *t, uint32_t i, int32_t v);
int32_t dtype_min(uint8_t dt);
int32_t dtype_max(uint8_t dt);

/* requantization rule: docs/ops.md, sdk/kernels/requant.py. Inline: it runs once per output
   element of every kernel, so its cost shows in the instructions per MAC. */

/* SaturatingRoundingDoublingHighMul: trunc((a*b + nudge) / 2^31), nudge = 2^30 or 1-2^30. */
static inline int32_t srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t s = ab + (ab >= 0 ? (1ll << 30) : (1ll - (1ll << 30)));
  /* C division truncates toward zero: for s < 0 add 2^31 - 1 before the arithmetic shift */
  return (int32_t)((s + (s < 0 ? (1ll << 31) - 1 : 0)) >> 31);
}

/* RoundingDivideByPOT: x / 2^e rounded half away from zero (0 <= e <= 31). */
static inline int32_t rounding_divide_by_pot(int32_t x, int e) {
  uint32_t mask = (uint32_t)((1ull << e) - 1u);
  uint32_t rem = (uint32_t)x & mask;
  uint32_t thr = (mask >> 1) + (x < 0 ? 1u : 0u);
  return (x >> e) + (rem > thr ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier: rdbp(srdhm(wrap32(x << max(shift,0)), m0), max(-shift,0)). */
static inline int32_t mbqm(int64_t x, int32_t m0, int32_t shift) {
  int left = shift > 0 ? shift : 0;
  int right = shift > 0 ? 0 : -shift;
  int32_t wrapped = (int32_t)((uint32_t)(uint64_t)x << left);
  return rounding_divide_by_pot(srdhm(wrapped, m0), right);
}

/* requantize() for an int32 accumulator: the same bits without 64-bit shifts */
static inline int32_t requantize32(int32_t acc, int32_t m0, int32_t shift, int32_t zp,
                                   int32_t lo, int32_t hi) {
  int32_t wrapped = shift > 0 ? (int32_t)((uint32_t)acc << shift) : acc;
  int32_t v = rounding_divide_by_pot(srdhm(wrapped, m0), shift > 0 ? 0 : -shift);
  int64_t r = (int64_t)v + zp;
  return (int32_t)(r < lo ? lo : r > hi ? hi : r);
}

/* clamp(mbqm(acc, m0, shift) + zp, lo, hi) */
static inline int32_t requantize(int64_t acc, int32_t m0, int32_t shift, int32_t zp,
                                 int32_t lo, int32_t hi) {
  int64_t v = (int64_t)mbqm(acc, m0, shift) + zp;
  return (int32_t)(v < lo ? lo : v > hi ? hi : v);
}

typedef int (*kernel_fn)(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n_params);
int k_requantize(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_fully_connected(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_conv2d(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_add(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_mul(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_clamp(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_maxpool2d(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_avgpool2d(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_global_avgpool(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_lut(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_copy(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_shiftmax(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_shift_gelu(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_int_norm(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_matmul(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_transpose(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_concat(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_fully_connected_packed(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_conv2d_packed(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
/* segmentation layout kernels (kernels_seg.c) */
int k_resize_nearest(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_gather(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
/* language models (kernels_lm.c) */
int k_kv_cache_write(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_causal_mask(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int matmul_typed(tensor_t **in, tensor_t **out, const int32_t *p);  /* k_matmul fast path */
int matmul_packed(tensor_t **in, tensor_t **out, const int32_t *p);  /* int8 x int8, SMLAD */
/* early exit (kernels_exit.c): a rule that fires sets exit_fired; model.c stops there */
extern int exit_fired;
int k_exit_margin(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_exit_entropy(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_exit_patience(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
int k_exit_gate(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n);
#endif
