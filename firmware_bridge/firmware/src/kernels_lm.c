/* Language-model kernels (opcodes 24-29): what a KV-cached decoder step needs on the device,
   bit-exact with sdk/kernels/cache.py (docs/ops.md). Both move integers only.

   KV_CACHE_WRITE (24): in[0] cache [outer, C, inner], in[1] new rows [outer, T, inner] (same
     dtype), in[2] the position (one int32); out[0] the written cache.
     p[0] outer, p[1] C (capacity), p[2] T (new rows), p[3] bytes of one row (inner * size).
     out = cache, then out[o, pos + t, :] = new[o, t, :]. 0 <= pos and pos + T <= C, else the
     invocation fails (the host checks it first and says why).
   CAUSAL_MASK (25): in[0] scores [outer, T, C], in[1] the position (one int32); out[0].
     p[0] outer, p[1] T, p[2] C, p[3] fill.
     out[o, i, j] = scores[o, i, j] if j <= pos + i else fill; pos + T <= C. */
#include <string.h>
#include "kernels.h"

KERNEL int k_kv_cache_write(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 4 || !in[0] || !in[1] || !in[2] || !out[0] || in[2]->count < 1) return 1;
  uint32_t outer = (uint32_t)p[0], cap = (uint32_t)p[1], t = (uint32_t)p[2],
           row = (uint32_t)p[3];
  int32_t pos = tensor_load(in[2], 0);
  if (pos < 0 || (uint32_t)pos + t > cap || in[0]->dtype != in[1]->dtype ||
      in[0]->dtype != out[0]->dtype)
    return 1;
  uint8_t *dst = out[0]->data;
  const uint8_t *src = in[1]->data;
  if (dst != in[0]->data) memmove(dst, in[0]->data, (size_t)outer * cap * row);
  for (uint32_t o = 0; o < outer; o++)
    memcpy(dst + ((size_t)o * cap + (uint32_t)pos) * row, src + (size_t)o * t * row,
           (size_t)t * row);
  return 0;
}

KERNEL int k_causal_mask(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 4 || !in[0] || !in[1] || !out[0] || in[1]->count < 1) return 1;
  uint32_t outer = (uint32_t)p[0], t = (uint32_t)p[1], c = (uint32_t)p[2];
  int32_t pos = tensor_load(in[1], 0), fill = p[3];
  if (pos < 0 || (uint32_t)pos + t > c) return 1;
  const tensor_t *s = in[0];
  tensor_t *y = out[0];
  for (uint32_t o = 0; o < outer; o++)
    for (uint32_t i = 0; i < t; i++) {
      uint32_t base = (o * t + i) * c, seen = (uint32_t)pos + i + 1;  /* columns j < seen */
      if (y->data != s->data)
        for (uint32_t j = 0; j < seen; j++) tensor_store(y, base + j, tensor_load(s, base + j));
      for (uint32_t j = seen; j < c; j++) tensor_store(y, base + j, fill);
    }
  return 0;
}

/* MATMUL on 8/16-bit operands (attention: Q·Kᵀ, probabilities·V), called by k_matmul: the
   same sums as its generic loop (each product exact in 32 bits, the sum in 64 like the
   reference's int64 accumulator), read through typed pointers instead of tensor_load. Returns
   1 when it ran, 0 for operand types it does not take (the generic loop runs then). */
#define MATMUL_DOT(TA, TB)                                                                \
  {                                                                                       \
    const TA *a = (const TA *)in[0]->data + off[2 * b] + m * K;                           \
    const TB *bb = (const TB *)in[1]->data + off[2 * b + 1] + n;                          \
    for (uint32_t k = 0; k < K; k++, bb += N)                                             \
      acc += (int64_t)((int32_t)a[k] - azp) * (int32_t)((int32_t)*bb - bzp);              \
  }

int matmul_typed(tensor_t **in, tensor_t **out, const int32_t *p) {
  if (matmul_packed(in, out, p)) return 1;  /* int8 x int8: SMLAD blocks, kernels_packed.c */
  uint8_t da = in[0]->dtype, db = in[1]->dtype;
  int32_t azp = p[4], bzp = p[5];
  /* zero points within +-2^15: every difference fits 32 bits, as in the int64 loop */
  if ((da != 0 && da != 2) || (db != 0 && db != 2) || azp < -32768 || azp > 32768 ||
      bzp < -32768 || bzp > 32768)
    return 0;
  uint32_t B = (uint32_t)p[0], M = (uint32_t)p[1], K = (uint32_t)p[2], N = (uint32_t)p[3];
  const int32_t *m0 = (const int32_t *)in[2]->data, *sh = (const int32_t *)in[3]->data;
  const int32_t *off = (const int32_t *)in[4]->data;
  uint32_t o = 0;
  for (uint32_t b = 0; b < B; b++)
    for (uint32_t m = 0; m < M; m++)
      for (uint32_t n = 0; n < N; n++) {
        int64_t acc = 0;
        if (da == 0 && db == 0) MATMUL_DOT(int8_t, int8_t)
        else if (da == 0) MATMUL_DOT(int8_t, int16_t)
        else if (db == 0) MATMUL_DOT(int16_t, int8_t)
        else MATMUL_DOT(int16_t, int16_t)
        tensor_store(out[0], o++, requantize(acc, m0[n], sh[n], p[6], p[7], p[8]));
      }
  return 1;
}
