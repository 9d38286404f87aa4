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

/* requantization rule: docs/ops.md, sdk/kernels/requant.py */
int32_t srdhm(int32_t a, int32_t b);
int32_t rounding_divide_by_pot(int32_t x, int exponent);
int32_t mbqm(int64_t x, int32_t m0, int32_t shift);
int32_t requantize(int64_t acc, int32_t m0, int32_t shift, int32_t zp, int32_t lo, int32_t hi);

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
#endif
