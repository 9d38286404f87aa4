/* Fast int8 fully-connected and convolution for the Cortex-M4's dual 16-bit MAC (SMLAD).

   The packer (firmware_bridge/op_encoders.py) prepares the weights at compile time:
   * int16, rows padded to Kp (a multiple of 8) with zeros, and interleaved in blocks of 4
     output rows: for each group of 4 k, the 4 rows' 4 values follow each other, so one pointer
     walks the block linearly;
   * the input zero point is folded into the bias: bias_eff[j] = bias[j] - x_zp * sum_k w[j,k],
     so acc = sum_k x[k] w[j,k] + bias_eff[j] equals the reference's sum_k (x[k]-x_zp) w[j,k]
     + bias[j] modulo 2^32 — and requantize wraps to 32 bits first, so the bits are the same.
   The activations are widened to int16 once per input row (FC) or output pixel (conv, an
   im2col row holding x_zp in the padding, which then contributes exactly 0). */
#include <string.h>
#include "kernels.h"

#define SCRATCH_HALFWORDS 8192u
#define PADDED_HALFWORDS 32768u
static int16_t scratch[SCRATCH_HALFWORDS] __attribute__((aligned(8)));
static int16_t padded[PADDED_HALFWORDS] __attribute__((aligned(8)));

#if defined(__ARM_FEATURE_DSP)
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#else
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
  uint32_t lo = (uint32_t)((int32_t)(int16_t)a * (int16_t)b);
  uint32_t hi = (uint32_t)((int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16));
  return (int32_t)((uint32_t)acc + lo + hi);
}
#endif

#if defined(__ARM_FEATURE_DSP)
/* 8 k x 4 rows per iteration: 2 LDRD of x, 8 LDRD of w, 16 SMLAD, 2 loop = 28 instructions
   for 32 MACs; x and w pointers advance, n8 counts down to 0. */
#define SMLAD_4x8(a0, a1, a2, a3, x, w, n8, x0, x1, w0, w1) \
    __asm__ volatile( \
        "1:\n\t" \
        "ldrd %[x0], %[x1], [%[x]], #8\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a0], %[x0], %[w0], %[a0]\n\t" \
        "smlad %[a0], %[x1], %[w1], %[a0]\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a1], %[x0], %[w0], %[a1]\n\t" \
        "smlad %[a1], %[x1], %[w1], %[a1]\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a2], %[x0], %[w0], %[a2]\n\t" \
        "smlad %[a2], %[x1], %[w1], %[a2]\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a3], %[x0], %[w0], %[a3]\n\t" \
        "smlad %[a3], %[x1], %[w1], %[a3]\n\t" \
        "ldrd %[x0], %[x1], [%[x]], #8\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a0], %[x0], %[w0], %[a0]\n\t" \
        "smlad %[a0], %[x1], %[w1], %[a0]\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a1], %[x0], %[w0], %[a1]\n\t" \
        "smlad %[a1], %[x1], %[w1], %[a1]\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a2], %[x0], %[w0], %[a2]\n\t" \
        "smlad %[a2], %[x1], %[w1], %[a2]\n\t" \
        "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
        "smlad %[a3], %[x0], %[w0], %[a3]\n\t" \
        "smlad %[a3], %[x1], %[w1], %[a3]\n\t" \
        "subs %[n], %[n], #1\n\t" \
        "bne 1b\n\t" \
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), \
          [w] "+r"(w), [n] "+r"(n8), [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "=&r"(w0), \
          [w1] "=&r"(w1) \
        : \
        : "cc", "memory");
#endif

/* acc[r] (r < rows, rows <= 4) = sum over Kp of x16 . w for one interleaved block */
static void dot_block(const uint32_t *x, const uint32_t *w, uint32_t kp, uint32_t rows,
                      int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#if defined(__ARM_FEATURE_DSP)
  if (rows == 4) {
    /* 8 k x 4 rows per iteration: 2 LDRD of x, 8 LDRD of w, 16 SMLAD, 2 loop = 28 instructions
       for 32 MACs. Registers: 4 accumulators, 2 x, 2 w, 3 pointers/counter. */
    uint32_t n8 = kp / 8, x0, x1, w0, w1;
    SMLAD_4x8(a0, a1, a2, a3, x, w, n8, x0, x1, w0, w1);
  } else
#endif
  if (rows == 4) {
    for (uint32_t k = 0; k < kp; k += 8) {
      uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
      x += 4;
      a0 = smlad(x0, w[0], a0); a0 = smlad(x1, w[1], a0);
      a1 = smlad(x0, w[2], a1); a1 = smlad(x1, w[3], a1);
      a2 = smlad(x0, w[4], a2); a2 = smlad(x1, w[5], a2);
      a3 = smlad(x0, w[6], a3); a3 = smlad(x1, w[7], a3);
      a0 = smlad(x2, w[8], a0); a0 = smlad(x3, w[9], a0);
      a1 = smlad(x2, w[10], a1); a1 = smlad(x3, w[11], a1);
      a2 = smlad(x2, w[12], a2); a2 = smlad(x3, w[13], a2);
      a3 = smlad(x2, w[14], a3); a3 = smlad(x3, w[15], a3);
      w += 16;
    }
  } else {
    /* tail block of 1..3 rows: each group of 4 k holds `rows` rows of 2 words */
    for (uint32_t k = 0; k < kp; k += 4) {
      uint32_t x0 = x[0], x1 = x[1];
      x += 2;
      a0 = smlad(x0, w[0], a0); a0 = smlad(x1, w[1], a0);
      if (rows > 1) { a1 = smlad(x0, w[2], a1); a1 = smlad(x1, w[3], a1); }
      if (rows > 2) { a2 = smlad(x0, w[4], a2); a2 = smlad(x1, w[5], a2); }
      w += 2 * rows;
    }
  }
  acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}

/* All output rows for one widened input vector, read as `nchunks` pieces of `chunk` int16
   (multiple of 8) that lie `stride` halfwords apart; the packed weight row is their
   concatenation (kp = nchunks * chunk). One piece for FC and im2col conv; KH pieces (one per
   kernel row) for the channels-last conv. */
static void gemv_packed(const int16_t *x16, uint32_t nchunks, uint32_t chunk, uint32_t stride,
                        const int16_t *wp, const int32_t *bias, const int32_t *m0,
                        const int32_t *sh, uint32_t n, tensor_t *out, uint32_t out_index,
                        uint32_t out_stride, const int32_t *q /* out_zp, act_min, act_max */) {
  uint32_t kp = nchunks * chunk;
  uint32_t j = 0;
#if defined(__ARM_FEATURE_DSP)
  if (out->dtype == 0) {
    /* full blocks of 4 rows, int8 out: accumulators stay in registers across the chunks, the
       weight pointer simply runs on (a block's chunks are contiguous) */
    int8_t *o8 = (int8_t *)out->data + out_index;
    const uint32_t *w = (const uint32_t *)wp;
    for (; j + 4 <= n; j += 4, o8 += 4 * out_stride) {
      int32_t a0 = bias[j], a1 = bias[j + 1], a2 = bias[j + 2], a3 = bias[j + 3];
      for (uint32_t c = 0; c < nchunks; c++) {
        const uint32_t *x = (const uint32_t *)(x16 + (size_t)c * stride);
        uint32_t n8 = chunk / 8, x0, x1, w0, w1;
        SMLAD_4x8(a0, a1, a2, a3, x, w, n8, x0, x1, w0, w1);
      }
      o8[0] = (int8_t)requantize32(a0, m0[j], sh[j], q[0], q[1], q[2]);
      o8[out_stride] = (int8_t)requantize32(a1, m0[j + 1], sh[j + 1], q[0], q[1], q[2]);
      o8[2 * out_stride] = (int8_t)requantize32(a2, m0[j + 2], sh[j + 2], q[0], q[1], q[2]);
      o8[3 * out_stride] = (int8_t)requantize32(a3, m0[j + 3], sh[j + 3], q[0], q[1], q[2]);
    }
  }
#endif
  for (; j < n; j += 4) {
    uint32_t rows = n - j < 4 ? n - j : 4;
    int32_t acc[4];  /* element-wise init: newlib-nano's memcpy is a byte loop */
    acc[0] = bias[j];
    acc[1] = rows > 1 ? bias[j + 1] : 0;
    acc[2] = rows > 2 ? bias[j + 2] : 0;
    acc[3] = rows > 3 ? bias[j + 3] : 0;
    const int16_t *wb = wp + (size_t)j * kp;
    for (uint32_t c = 0; c < nchunks; c++)
      dot_block((const uint32_t *)(x16 + (size_t)c * stride),
                (const uint32_t *)(wb + (size_t)c * chunk * rows), chunk, rows, acc);
    if (out->dtype == 0) {  /* int8: store directly (no per-element dtype dispatch) */
      int8_t *o8 = (int8_t *)out->data + out_index;
      for (uint32_t r = 0; r < rows; r++)
        o8[(j + r) * out_stride] = (int8_t)requantize32(acc[r], m0[j + r], sh[j + r], q[0], q[1], q[2]);
    } else {
      for (uint32_t r = 0; r < rows; r++)
        tensor_store(out, out_index + (j + r) * out_stride,
                     requantize32(acc[r], m0[j + r], sh[j + r], q[0], q[1], q[2]));
    }
  }
}

/* Packed FC. in: x int8 [rows,K], w int16 packed [N,Kp], bias_eff int32 [N], m0 [N], shift [N].
   p: rows, K, Kp, N, out_zp, act_min, act_max */
KERNEL int k_fully_connected_packed(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 7 || (uint32_t)p[2] > SCRATCH_HALFWORDS) return -1;
  const int8_t *x = (const int8_t *)in[0]->data;
  uint32_t rows = (uint32_t)p[0], K = (uint32_t)p[1], Kp = (uint32_t)p[2], N = (uint32_t)p[3];
  for (uint32_t r = 0; r < rows; r++) {
    const int8_t *xr = x + (size_t)r * K;
    for (uint32_t k = 0; k < K; k++) scratch[k] = xr[k];
    for (uint32_t k = K; k < Kp; k++) scratch[k] = 0;
    gemv_packed(scratch, 1, Kp, 0, (const int16_t *)in[1]->data, (const int32_t *)in[2]->data,
                (const int32_t *)in[3]->data, (const int32_t *)in[4]->data, N, out[0],
                r * N, 1, p + 4);
  }
  return 0;
}


/* Packed conv (group 1). Two layouts, chosen by the packer (p[20]):
   mode 0, im2col: weights in (c, i, j) order padded to Pp; one im2col row per output pixel.
   mode 1, channels-last (dilation 1 along W): the input is widened once into a padded
   [HP][WP][Cp] int16 buffer (Cp = C rounded up to 8, extra channels 0), weights are in
   (i, j, c) order, and the KW taps of kernel row i for one pixel are then KW*Cp contiguous
   halfwords: the GEMV reads them in place, no per-pixel copy.
   in: x int8, w int16 packed, bias_eff [O], m0 [O], shift [O].
   p: B,C,H,W, O,OH,OW, KH,KW, SH,SW, PT,PL, DH,DW, x_zp, Pp, out_zp, act_min, act_max, mode, Cp */
KERNEL int k_conv2d_packed(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 22 || (uint32_t)p[16] > SCRATCH_HALFWORDS) return -1;
  const int8_t *x = (const int8_t *)in[0]->data;
  int B = p[0], C = p[1], H = p[2], W = p[3], O = p[4], OH = p[5], OW = p[6];
  int KH = p[7], KW = p[8], SH = p[9], SW = p[10], PT = p[11], PL = p[12], DH = p[13], DW = p[14];
  int16_t x_zp = (int16_t)p[15];
  uint32_t Pp = (uint32_t)p[16], P = (uint32_t)(C * KH * KW);
  const int16_t *wp = (const int16_t *)in[1]->data;
  const int32_t *bias = (const int32_t *)in[2]->data, *m0 = (const int32_t *)in[3]->data,
                *sh = (const int32_t *)in[4]->data;
  if (p[20] == 1) {
    int Cp = p[21];
    int HP = (OH - 1) * SH + (KH - 1) * DH + 1, WP = (OW - 1) * SW + KW;
    if (DW != 1 || Cp % 8 || (uint64_t)HP * WP * Cp > PADDED_HALFWORDS) return -1;
    for (int b = 0; b < B; b++) {
      const int8_t *xb = x + (size_t)b * C * H * W;
      for (int c = 0; c < Cp; c++)
        for (int yp = 0; yp < HP; yp++) {
          int iy = yp - PT;
          int16_t *d = padded + (size_t)yp * WP * Cp + c;
          if (c >= C || iy < 0 || iy >= H) {   /* padding row, or a channel added for Cp */
            int16_t v = c >= C ? 0 : x_zp;
            for (int xp = 0; xp < WP; xp++, d += Cp) *d = v;
            continue;
          }
          const int8_t *row = xb + ((size_t)c * H + iy) * W;
          int xp = 0;
          for (; xp < WP && xp < PL; xp++, d += Cp) *d = x_zp;          /* left padding */
          int xend = PL + W < WP ? PL + W : WP;
          for (; xp < xend; xp++, d += Cp) *d = row[xp - PL];           /* the image row */
          for (; xp < WP; xp++, d += Cp) *d = x_zp;                     /* right padding */
        }
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
          gemv_packed(padded + ((size_t)(oy * SH) * WP + (size_t)(ox * SW)) * Cp, (uint32_t)KH,
                      (uint32_t)(KW * Cp), (uint32_t)(DH * WP * Cp), wp, bias, m0, sh,
                      (uint32_t)O, out[0], (uint32_t)((b * O) * OH * OW + oy * OW + ox),
                      (uint32_t)(OH * OW), p + 17);
    }
    return 0;
  }
  for (uint32_t k = P; k < Pp; k++) scratch[k] = 0;
  for (int b = 0; b < B; b++)
    for (int oy = 0; oy < OH; oy++)
      for (int ox = 0; ox < OW; ox++) {
        int16_t *col = scratch;
        for (int c = 0; c < C; c++) {
          const int8_t *xc = x + ((size_t)b * C + (size_t)c) * H * W;
          for (int i = 0; i < KH; i++) {
            int iy = oy * SH - PT + i * DH;
            for (int j = 0; j < KW; j++) {
              int ix = ox * SW - PL + j * DW;
              *col++ = (iy < 0 || iy >= H || ix < 0 || ix >= W) ? x_zp : xc[iy * W + ix];
            }
          }
        }
        gemv_packed(scratch, 1, Pp, 0, wp, bias, m0, sh, (uint32_t)O, out[0],
                    (uint32_t)((b * O) * OH * OW + oy * OW + ox), (uint32_t)(OH * OW), p + 17);
      }
  return 0;
}
