/* Integer transformer kernels after I-ViT, bit-exact with sdk/kernels/transformer.py, plus
   the integer MatMul and the layout ops attention needs (Transpose, Concat).
   Rows: an op over `axis` sees the tensor as [outer, C, inner]; element (o, c, i) is at
   (o*C + c)*inner + i. All intermediates are int64; >> on negatives is a floor (arithmetic
   shift), / is only applied to non-negative operands, so C and NumPy agree. */
#include <string.h>
#include "kernels.h"

#define INT31 2147483647ll

/* shift-exp of x <= 0: t = x + (x>>1) - (x>>4); t = max(t, n*x0); q = floor(t/x0);
   r = t - q*x0; exp = ((r - 2*x0) << (n - q)) >> 1 (scale S/2^n) */
static int64_t shift_exp(int64_t x, int64_t x0, int64_t n) {
  int64_t t = x + (x >> 1) - (x >> 4);
  if (t < n * x0) t = n * x0;
  int64_t q = t / x0;  /* t <= 0, x0 < 0: the quotient is >= 0, so truncation = floor */
  int64_t r = t - q * x0;
  return ((r - 2 * x0) << (n - q)) >> 1;
}

static uint32_t at(uint32_t o, uint32_t c, uint32_t i, uint32_t C, uint32_t inner) {
  return (o * C + c) * inner + i;
}

/* Shiftmax along axis: e = shift_exp(x - max), total = min(sum e, 2^31-1),
   out = (e * floor((2^31-1)/total)) >> (32 - out_bits).
   p: outer, C, inner, x0, n, out_bits */
KERNEL int k_shiftmax(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t np_) {
  if (np_ < 6) return -1;
  uint32_t outer = (uint32_t)p[0], C = (uint32_t)p[1], inner = (uint32_t)p[2];
  int64_t x0 = p[3], n = p[4];
  int sh = 32 - p[5];
  for (uint32_t o = 0; o < outer; o++)
    for (uint32_t i = 0; i < inner; i++) {
      int64_t mx = INT64_MIN, total = 0;
      for (uint32_t c = 0; c < C; c++) {
        int64_t v = tensor_load(in[0], at(o, c, i, C, inner));
        if (v > mx) mx = v;
      }
      for (uint32_t c = 0; c < C; c++)
        total += shift_exp(tensor_load(in[0], at(o, c, i, C, inner)) - mx, x0, n);
      if (total > INT31) total = INT31;
      int64_t factor = INT31 / total;
      for (uint32_t c = 0; c < C; c++) {
        uint32_t k = at(o, c, i, C, inner);
        int64_t e = shift_exp(tensor_load(in[0], k) - mx, x0, n);
        tensor_store(out[0], k, (int32_t)((e * factor) >> sh));
      }
    }
  return 0;
}

/* ShiftGELU: xc = x - x_zp; xs = clip(xc, clip_min, clip_max); m = max(max_row(xs), 0);
   e = shift_exp(xs - m), e_m = shift_exp(-m); sig = (e * floor((2^31-1)/min(e + e_m, 2^31-1)))
   >> (32 - sig_bits); out = requantize(xc * sig, m0, shift, out_zp). The row maximum is read
   before any output is written, so the op may run in place.
   p: outer, C, inner, x0, n, sig_bits, clip_min, clip_max, x_zp, m0, shift, out_zp, act_min, act_max */
KERNEL int k_shift_gelu(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t np_) {
  if (np_ < 14) return -1;
  uint32_t outer = (uint32_t)p[0], C = (uint32_t)p[1], inner = (uint32_t)p[2];
  int64_t x0 = p[3], n = p[4], lo = p[6], hi = p[7], zp = p[8];
  int sh = 32 - p[5];
  for (uint32_t o = 0; o < outer; o++)
    for (uint32_t i = 0; i < inner; i++) {
      int64_t m = INT64_MIN;
      for (uint32_t c = 0; c < C; c++) {
        int64_t xs = tensor_load(in[0], at(o, c, i, C, inner)) - zp;
        xs = xs < lo ? lo : xs > hi ? hi : xs;
        if (xs > m) m = xs;
      }
      if (m < 0) m = 0;
      int64_t em = shift_exp(-m, x0, n);
      for (uint32_t c = 0; c < C; c++) {
        uint32_t k = at(o, c, i, C, inner);
        int64_t xc = tensor_load(in[0], k) - zp;
        int64_t xs = xc < lo ? lo : xc > hi ? hi : xc;
        int64_t e = shift_exp(xs - m, x0, n);
        int64_t total = e + em;
        if (total > INT31) total = INT31;
        int64_t sig = (e * (INT31 / total)) >> sh;
        tensor_store(out[0], k, requantize(xc * sig, p[9], p[10], p[11], p[12], p[13]));
      }
    }
  return 0;
}

/* I-LayerNorm (centre = 1) / integer RMSNorm (centre = 0) along axis:
   mu = round_half_away(sum x / C) (centre only); y = x - mu; var = sum y^2;
   k = newton_isqrt(var): k <- max((k + var/k) >> 1, 1), `iters` times from 2^16;
   yn = (y * floor((2^31-1)/k)) >> 1; acc = sat32(yn + beta_q[c]);
   out = requantize(acc, m0[c], shift[c], out_zp).
   in: x, beta_q or NULL, m0 [C], shift [C]. p: outer, C, inner, iters, centre, out_zp, act_min, act_max */
KERNEL int k_int_norm(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t np_) {
  if (np_ < 8) return -1;
  uint32_t outer = (uint32_t)p[0], C = (uint32_t)p[1], inner = (uint32_t)p[2];
  const int32_t *beta = in[1] ? (const int32_t *)in[1]->data : 0;
  const int32_t *m0 = (const int32_t *)in[2]->data, *shv = (const int32_t *)in[3]->data;
  for (uint32_t o = 0; o < outer; o++)
    for (uint32_t i = 0; i < inner; i++) {
      int64_t mu = 0, var = 0;
      if (p[4]) {
        int64_t sum = 0, half = (int64_t)C / 2;
        for (uint32_t c = 0; c < C; c++) sum += tensor_load(in[0], at(o, c, i, C, inner));
        mu = sum >= 0 ? (sum + half) / (int64_t)C : -((-sum + half) / (int64_t)C);
      }
      for (uint32_t c = 0; c < C; c++) {
        int64_t y = tensor_load(in[0], at(o, c, i, C, inner)) - mu;
        var += y * y;
      }
      int64_t k = 65536;
      for (int it = 0; it < p[3]; it++) {
        k = (k + var / k) >> 1;
        if (k < 1) k = 1;
      }
      int64_t factor = INT31 / k;
      for (uint32_t c = 0; c < C; c++) {
        uint32_t idx = at(o, c, i, C, inner);
        int64_t y = tensor_load(in[0], idx) - mu;
        int64_t acc = ((y * factor) >> 1) + (beta ? beta[c] : 0);
        if (acc > INT32_MAX) acc = INT32_MAX;
        if (acc < INT32_MIN) acc = INT32_MIN;
        tensor_store(out[0], idx, requantize(acc, m0[c], shv[c], p[5], p[6], p[7]));
      }
    }
  return 0;
}

/* Integer MatMul: acc[b,m,n] = sum_k (a[b,m,k] - a_zp) * (bm[b,k,n] - b_zp);
   out = requantize(acc, m0[n], shift[n], out_zp). Batch broadcasting is resolved on the host:
   offsets[2*b], offsets[2*b+1] are the element offsets of batch b's A and B matrices.
   in: a, b, m0 [N], shift [N], offsets [2B]. p: B, M, K, N, a_zp, b_zp, out_zp, act_min, act_max */
KERNEL int k_matmul(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t np_) {
  if (np_ < 9) return -1;
  if (matmul_typed(in, out, p)) return 0;  /* 8/16-bit operands: kernels_lm.c, same bits */
  uint32_t B = (uint32_t)p[0], M = (uint32_t)p[1], K = (uint32_t)p[2], N = (uint32_t)p[3];
  const int32_t *m0 = (const int32_t *)in[2]->data, *sh = (const int32_t *)in[3]->data;
  const int32_t *off = (const int32_t *)in[4]->data;
  uint32_t o = 0;
  for (uint32_t b = 0; b < B; b++)
    for (uint32_t m = 0; m < M; m++)
      for (uint32_t n = 0; n < N; n++) {
        int64_t acc = 0;
        for (uint32_t k = 0; k < K; k++)
          acc += ((int64_t)tensor_load(in[0], (uint32_t)off[2 * b] + m * K + k) - p[4]) *
                 ((int64_t)tensor_load(in[1], (uint32_t)off[2 * b + 1] + k * N + n) - p[5]);
        tensor_store(out[0], o++, requantize(acc, m0[n], sh[n], p[6], p[7], p[8]));
      }
  return 0;
}

/* Strided gather (any dtype): Transpose and Slice. out[i] = in[base + sum_d idx_d(i) *
   src_stride[d]] over up to 6 output dims; strides are signed (negative Slice steps).
   p: elem_bytes, count, out_dims[6], src_strides[6] (elements), base (optional, element) */
KERNEL int k_transpose(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t np_) {
  if (np_ < 14) return -1;
  uint32_t esz = (uint32_t)p[0], count = (uint32_t)p[1];
  int32_t base = np_ > 14 ? p[14] : 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t rest = i;
    int32_t src = base;
    for (int d = 5; d >= 0; d--) {
      uint32_t q = rest % (uint32_t)p[2 + d];
      rest /= (uint32_t)p[2 + d];
      src += (int32_t)q * p[8 + d];
    }
    memcpy(out[0]->data + (size_t)i * esz, in[0]->data + (size_t)src * esz, esz);
  }
  return 0;
}

/* Concat (any dtype): for each of `outer` rows, copy each input's block of bytes in turn.
   p: outer, block_bytes[n_in] */
KERNEL int k_concat(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t np_) {
  uint32_t n_in = np_ - 1, outer = (uint32_t)p[0];
  uint8_t *dst = out[0]->data;
  for (uint32_t o = 0; o < outer; o++)
    for (uint32_t j = 0; j < n_in; j++) {
      uint32_t blk = (uint32_t)p[1 + j];
      memcpy(dst, in[j]->data + (size_t)o * blk, blk);
      dst += blk;
    }
  return 0;
}
