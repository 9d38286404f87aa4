/* Fast int8 fully-connected and convolution for the Cortex-M4's dual 16-bit MAC (SMLAD).

   The packer (firmware_bridge/op_encoders.py pack_weights) prepares the weights at compile time:
   * int16 (so no SXTB16 in the inner loop), rows padded to Kp with zeros and to an even count
     with a zero row, stored in pairs of rows: for each pair, for each k-pair q, the two rows'
     words (w[2q], w[2q+1] as one 32-bit word) follow each other: [N/2][Kp/2][2 rows][2];
   * FC only: Kp is a multiple of 6 and within each group of 4 k the order is k0 k2 k1 k3, the
     order SXTB16 widens four int8 inputs in (one load, two SXTB16 per 4 inputs);
   * the input zero point is folded into the bias: bias_eff[j] = bias[j] - x_zp * sum_k w[j,k],
     so acc = sum_k x[k] w[j,k] + bias_eff[j] equals the reference's sum_k (x[k]-x_zp) w[j,k]
     + bias[j] modulo 2^32 — and requantize wraps to 32 bits first, so the bits are the same.

   Two register-blocked inner loops (hand-scheduled assembly on the DSP build, the same
   arithmetic in C elsewhere):
   * gemm_2x3: 2 output rows x 3 input columns (3 conv pixels, or 3 FC input rows) per pass;
     per k-pair one LDM of the 3 columns' words (interleaved [k-pair][3]), one LDRD of the two
     rows' words, 6 SMLAD = 8 instructions for 12 MACs, 12 k-pairs unrolled per loop branch.
   * gemv_2x3: FC with one input row: 2 output rows, 3 k-pairs per step: LDM of 3 input words,
     LDM of 6 weight words, 6 SMLAD = 8 instructions for 12 MACs, 8 steps per loop branch.
   Both keep the accumulators in registers for the whole row (r0-r12 and lr all in use).
   Requantization takes a 32-bit path when the packer found it exact for every channel (p flag,
   see requant_fast); otherwise the general requantize32. */
#include <string.h>
#include "kernels.h"

#define SCRATCH_HALFWORDS 8192u
#define PADDED_HALFWORDS 32768u
/* im2col / widened input: up to 3 interleaved columns of SCRATCH_HALFWORDS */
static int16_t scratch[3 * SCRATCH_HALFWORDS] __attribute__((aligned(8)));
static int16_t padded[PADDED_HALFWORDS] __attribute__((aligned(8)));

#if defined(__ARM_FEATURE_DSP)
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
static inline int32_t qadd(int32_t a, int32_t b) {
  int32_t r;
  __asm__("qadd %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
#else
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
  uint32_t lo = (uint32_t)((int32_t)(int16_t)a * (int16_t)b);
  uint32_t hi = (uint32_t)((int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16));
  return (int32_t)((uint32_t)acc + lo + hi);
}
static inline int32_t qadd(int32_t a, int32_t b) {
  int64_t s = (int64_t)a + b;
  return s > INT32_MAX ? INT32_MAX : s < INT32_MIN ? INT32_MIN : (int32_t)s;
}
#endif

/* The 32-bit requantization, equal to requantize32 when shift <= -1, m0 != INT32_MIN and
   2^(31+shift) - 1 + zp >= act_max (the packer checks this per channel):
   srdhm(a, m0) = (a*m0 + 2^30) >> 31 exactly (both nudge branches of the reference reduce to
   this); rounding_divide_by_pot(t, e) = (t + 2^(e-1) - [t<0]) >> e. The only difference is
   when t + 2^(e-1) overflows: QADD saturates, giving 2^(31-e) - 1 instead of 2^(31-e), and the
   condition above makes both clamp to act_max. */
static inline int32_t requant_fast(int32_t acc, int32_t m0, int32_t shift, int32_t zp,
                                   int32_t lo, int32_t hi) {
  int32_t e = -shift;
  int32_t t = (int32_t)(((int64_t)acc * m0 + (1ll << 30)) >> 31);
  int32_t v = ((qadd(t, (int32_t)(1u << (e - 1))) + (t >> 31)) >> e) + zp;
  return v < lo ? lo : v > hi ? hi : v;
}

static inline int32_t requant_sel(int32_t acc, int32_t m0, int32_t sh, const int32_t *q,
                                  int fast) {
  return fast ? requant_fast(acc, m0, sh, q[0], q[1], q[2])
              : requantize32(acc, m0, sh, q[0], q[1], q[2]);
}

#if defined(__ARM_FEATURE_DSP)
/* one k-pair of gemm_2x3: r0 columns (x), r1 weights, r4..r9 accumulators
   (col0 row0, col0 row1, col1 row0, col1 row1, col2 row0, col2 row1) */
#define KP_2x3 \
  "ldm r0!, {r3, r10, r11}\n\t" \
  "ldrd r12, lr, [r1], #8\n\t" \
  "smlad r4, r3, r12, r4\n\t" \
  "smlad r5, r3, lr, r5\n\t" \
  "smlad r6, r10, r12, r6\n\t" \
  "smlad r7, r10, lr, r7\n\t" \
  "smlad r8, r11, r12, r8\n\t" \
  "smlad r9, r11, lr, r9\n\t"
#define KP_2x3_x4 KP_2x3 KP_2x3 KP_2x3 KP_2x3

/* acc[6] += 2 rows x 3 columns over (counts >> 16) * 12 + (counts & 0xffff) k-pairs */
__attribute__((naked, noinline)) static void gemm_2x3(const uint32_t *x, const uint32_t *w,
                                                      uint32_t counts, int32_t *acc) {
  __asm__ volatile(
      "push {r4-r11, lr}\n\t"
      "uxth lr, r2\n\t"
      "push {r3, lr}\n\t"
      "ldm r3, {r4-r9}\n\t"
      "lsrs r2, r2, #16\n\t"
      "beq 2f\n"
      "1:\n\t"
      KP_2x3_x4 KP_2x3_x4 KP_2x3_x4
      "subs r2, r2, #1\n\t"
      "bne 1b\n"
      "2:\n\t"
      "ldr r2, [sp, #4]\n\t"
      "cbz r2, 4f\n"
      "3:\n\t"
      KP_2x3
      "subs r2, r2, #1\n\t"
      "bne 3b\n"
      "4:\n\t"
      "pop {r3, lr}\n\t"
      "stm r3, {r4-r9}\n\t"
      "pop {r4-r11, pc}\n\t");
}

/* one step of gemv_2x3: 3 k-pairs of one input row (r0), 2 rows' 6 weight words (r1) */
#define STEP_2x1 \
  "ldm r0!, {r6, r7, r8}\n\t" \
  "ldm r1!, {r3, r9, r10, r11, r12, lr}\n\t" \
  "smlad r4, r6, r3, r4\n\t" \
  "smlad r5, r6, r9, r5\n\t" \
  "smlad r4, r7, r10, r4\n\t" \
  "smlad r5, r7, r11, r5\n\t" \
  "smlad r4, r8, r12, r4\n\t" \
  "smlad r5, r8, lr, r5\n\t"
#define STEP_2x1_x4 STEP_2x1 STEP_2x1 STEP_2x1 STEP_2x1

/* acc[2] += 2 rows x 1 input over ((counts >> 16) * 8 + (counts & 0xffff)) * 3 k-pairs */
__attribute__((naked, noinline)) static void gemv_2x3(const uint32_t *x, const uint32_t *w,
                                                      uint32_t counts, int32_t *acc) {
  __asm__ volatile(
      "push {r4-r11, lr}\n\t"
      "uxth lr, r2\n\t"
      "push {r3, lr}\n\t"
      "ldrd r4, r5, [r3]\n\t"
      "lsrs r2, r2, #16\n\t"
      "beq 2f\n"
      "1:\n\t"
      STEP_2x1_x4 STEP_2x1_x4
      "subs r2, r2, #1\n\t"
      "bne 1b\n"
      "2:\n\t"
      "ldr r2, [sp, #4]\n\t"
      "cbz r2, 4f\n"
      "3:\n\t"
      STEP_2x1
      "subs r2, r2, #1\n\t"
      "bne 3b\n"
      "4:\n\t"
      "pop {r3, lr}\n\t"
      "strd r4, r5, [r3]\n\t"
      "pop {r4-r11, pc}\n\t");
}

/* dst[3 i + p] = s_p[i] for i < 4 * groups (words): three columns interleaved, 2 LDM per
   column and 1 STM per 2 words of each */
__attribute__((naked, noinline)) static void interleave3(uint32_t *dst, const uint32_t *s0,
                                                         const uint32_t *s1, const uint32_t *s2,
                                                         uint32_t groups) {
  __asm__ volatile(
      "push {r4-r9, lr}\n\t"
      "ldr lr, [sp, #28]\n"
      "1:\n\t"
      "ldm r1!, {r4, r7}\n\t"
      "ldm r2!, {r5, r8}\n\t"
      "ldm r3!, {r6, r9}\n\t"
      "stm r0!, {r4-r9}\n\t"
      "ldm r1!, {r4, r7}\n\t"
      "ldm r2!, {r5, r8}\n\t"
      "ldm r3!, {r6, r9}\n\t"
      "stm r0!, {r4-r9}\n\t"
      "subs lr, lr, #1\n\t"
      "bne 1b\n\t"
      "pop {r4-r9, pc}\n\t");
}

static inline uint32_t sxtb16(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(v));
  return r;
}
static inline uint32_t sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
#else
static void gemm_2x3(const uint32_t *x, const uint32_t *w, uint32_t counts, int32_t *acc) {
  uint32_t nkp = (counts >> 16) * 12u + (counts & 0xffffu);
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5];
  for (uint32_t q = 0; q < nkp; q++, x += 3, w += 2) {
    a0 = smlad(x[0], w[0], a0); a1 = smlad(x[0], w[1], a1);
    a2 = smlad(x[1], w[0], a2); a3 = smlad(x[1], w[1], a3);
    a4 = smlad(x[2], w[0], a4); a5 = smlad(x[2], w[1], a5);
  }
  acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5;
}

static void gemv_2x3(const uint32_t *x, const uint32_t *w, uint32_t counts, int32_t *acc) {
  uint32_t nkp = ((counts >> 16) * 8u + (counts & 0xffffu)) * 3u;
  int32_t a0 = acc[0], a1 = acc[1];
  for (uint32_t q = 0; q < nkp; q++, w += 2) {
    a0 = smlad(x[q], w[0], a0);
    a1 = smlad(x[q], w[1], a1);
  }
  acc[0] = a0; acc[1] = a1;
}

static void interleave3(uint32_t *dst, const uint32_t *s0, const uint32_t *s1,
                        const uint32_t *s2, uint32_t groups) {
  for (uint32_t i = 0; i < 4u * groups; i++) {
    dst[3 * i] = s0[i]; dst[3 * i + 1] = s1[i]; dst[3 * i + 2] = s2[i];
  }
}
#endif

/* position of input k in the FC's widened vector: within full groups of 4 (below kp4) the
   order is k0 k2 k1 k3 (what SXTB16 produces), beyond them natural */
static inline uint32_t fc_pos(uint32_t k, uint32_t kp4) {
  return k < kp4 ? (k & ~3u) | ((k & 1u) << 1) | ((k & 2u) >> 1) : k;
}

/* Widen one int8 input row (K values) into `stride`-word slots: word q of the result goes to
   dst32[q * stride + col], the halfwords in fc_pos order; positions K..Kp-1 hold 0. */
static void widen_fc(const int8_t *xr, uint32_t K, uint32_t Kp, uint32_t *dst32,
                     uint32_t stride, uint32_t col) {
  uint32_t kp4 = Kp & ~3u, k = 0;
#if defined(__ARM_FEATURE_DSP)
  if (stride == 1) {   /* consecutive words: pointer walk */
    uint32_t *d = dst32;
    for (; k + 4 <= K; k += 4, d += 2) {
      uint32_t v;
      memcpy(&v, xr + k, 4);
      d[0] = sxtb16(v);
      d[1] = sxtb16_ror8(v);
    }
  }
  for (; k + 4 <= K; k += 4) {   /* 4 inputs: one (unaligned) load, two SXTB16, two stores */
    uint32_t v;
    memcpy(&v, xr + k, 4);
    dst32[(k / 2) * stride + col] = sxtb16(v);
    dst32[(k / 2 + 1) * stride + col] = sxtb16_ror8(v);
  }
#endif
  /* the rest one by one: clear the words from k on, then place each input */
  for (uint32_t q = k / 2; q < Kp / 2; q++) dst32[q * stride + col] = 0;
  for (; k < K; k++) {
    uint32_t pos = fc_pos(k, kp4);
    int16_t *h = (int16_t *)&dst32[(pos / 2) * stride + col];
    h[pos & 1u] = xr[k];
  }
}

/* Requantize and store a block: acc[c * 2 + r] is column c (< ncols), row j + r (< nrows);
   column c's element goes to out_index[c] + (j + r) * out_stride. */
static inline void store_block(const int32_t *acc, uint32_t ncols, uint32_t nrows, uint32_t j,
                               const int32_t *m0, const int32_t *sh, const int32_t *q, int fast,
                               tensor_t *out, const uint32_t *out_index, uint32_t out_stride) {
  for (uint32_t r = 0; r < nrows; r++) {
    int32_t mj = m0[j + r], sj = sh[j + r];
    for (uint32_t c = 0; c < ncols; c++) {
      int32_t v = requant_sel(acc[c * 2 + r], mj, sj, q, fast);
      uint32_t i = out_index[c] + (j + r) * out_stride;
      if (out->dtype == 0) ((int8_t *)out->data)[i] = (int8_t)v;
      else tensor_store(out, i, v);
    }
  }
}

/* fast requantization with the per-row constants hoisted: e = -shift, half = 2^(e-1) */
static inline int32_t rq_t(int32_t acc, int32_t m0, int32_t e, int32_t half) {
  int32_t t = (int32_t)(((int64_t)acc * m0 + (1ll << 30)) >> 31);
  return (qadd(t, half) + (t >> 31)) >> e;
}
static inline int32_t rq_row(int32_t acc, int32_t m0, int32_t e, int32_t half, int32_t zp,
                             int32_t lo, int32_t hi) {
  int32_t v = rq_t(acc, m0, e, half) + zp;
  return v < lo ? lo : v > hi ? hi : v;
}
/* clamp to [-128, 127] */
#if defined(__ARM_FEATURE_DSP)
static inline int32_t sat8(int32_t v) {
  int32_t r;
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
  return r;
}
#else
static inline int32_t sat8(int32_t v) { return v < -128 ? -128 : v > 127 ? 127 : v; }
#endif

/* All N outputs of 3 interleaved input columns (a kp-halfword interleaved block at x3) */
static void gemm_cols3(const uint32_t *x3, uint32_t kp, const int16_t *wp, const int32_t *bias,
                       const int32_t *m0, const int32_t *sh, uint32_t N, const int32_t *q,
                       int fast, tensor_t *out, const uint32_t *out_index, uint32_t ncols,
                       uint32_t out_stride) {
  uint32_t nkp = kp / 2, counts = ((nkp / 12u) << 16) | (nkp % 12u);
  const uint32_t *w = (const uint32_t *)wp;
  int32_t zp = q[0], lo = q[1], hi = q[2];
  int quick = fast && out->dtype == 0 && ncols == 3, full = lo == -128 && hi == 127;
  int8_t *o0 = (int8_t *)out->data + out_index[0], *o1 = (int8_t *)out->data + out_index[1],
         *o2 = (int8_t *)out->data + out_index[2];
  for (uint32_t j = 0; j < N; j += 2, w += nkp * 2u) {
    uint32_t nrows = N - j < 2 ? 1u : 2u;
    int32_t b0 = bias ? bias[j] : 0, b1 = bias && nrows > 1 ? bias[j + 1] : 0;
    int32_t acc[6] = {b0, b1, b0, b1, b0, b1};
    gemm_2x3(x3, w, counts, acc);
    if (quick && full) {   /* int8 out, 32-bit requantization, no activation clamp */
      for (uint32_t r = 0; r < nrows; r++) {
        int32_t m = m0[j + r], e = -sh[j + r], half = (int32_t)(1u << (e - 1));
        uint32_t i = (j + r) * out_stride;
        o0[i] = (int8_t)sat8(rq_t(acc[r], m, e, half) + zp);
        o1[i] = (int8_t)sat8(rq_t(acc[2 + r], m, e, half) + zp);
        o2[i] = (int8_t)sat8(rq_t(acc[4 + r], m, e, half) + zp);
      }
    } else if (quick) {   /* int8 out, 32-bit requantization: the common case, unrolled */
      for (uint32_t r = 0; r < nrows; r++) {
        int32_t m = m0[j + r], e = -sh[j + r], half = (int32_t)(1u << (e - 1));
        uint32_t i = (j + r) * out_stride;
        o0[i] = (int8_t)rq_row(acc[r], m, e, half, zp, lo, hi);
        o1[i] = (int8_t)rq_row(acc[2 + r], m, e, half, zp, lo, hi);
        o2[i] = (int8_t)rq_row(acc[4 + r], m, e, half, zp, lo, hi);
      }
    } else if (fast && out->dtype == 2 && ncols == 3) {   /* int16 out (attention scores) */
      for (uint32_t r = 0; r < nrows; r++) {
        int32_t m = m0[j + r], e = -sh[j + r], half = (int32_t)(1u << (e - 1));
        uint32_t i = (j + r) * out_stride;
        int16_t *d = (int16_t *)out->data;
        d[out_index[0] + i] = (int16_t)rq_row(acc[r], m, e, half, zp, lo, hi);
        d[out_index[1] + i] = (int16_t)rq_row(acc[2 + r], m, e, half, zp, lo, hi);
        d[out_index[2] + i] = (int16_t)rq_row(acc[4 + r], m, e, half, zp, lo, hi);
      }
    } else {
      store_block(acc, ncols, nrows, j, m0, sh, q, fast, out, out_index, out_stride);
    }
  }
}

/* Packed FC. in: x int8 [rows,K], w int16 packed [N,Kp], bias_eff int32 [N], m0 [N], shift [N].
   p: rows, K, Kp (multiple of 6), N, out_zp, act_min, act_max, fast_requant */
KERNEL int k_fully_connected_packed(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 8 || (uint32_t)p[2] > SCRATCH_HALFWORDS || p[2] % 6) return -1;
  const int8_t *x = (const int8_t *)in[0]->data;
  uint32_t rows = (uint32_t)p[0], K = (uint32_t)p[1], Kp = (uint32_t)p[2], N = (uint32_t)p[3];
  const int16_t *wp = (const int16_t *)in[1]->data;
  const int32_t *bias = (const int32_t *)in[2]->data, *m0 = (const int32_t *)in[3]->data,
                *sh = (const int32_t *)in[4]->data;
  const int32_t *q = p + 4;
  int fast = p[7], full = q[1] == -128 && q[2] == 127;
  uint32_t *x32 = (uint32_t *)scratch;
  uint32_t r = 0;
  for (; r + 3 <= rows; r += 3) {   /* three input rows share each weight word */
    uint32_t idx[3];
    for (uint32_t c = 0; c < 3; c++) {
      widen_fc(x + (size_t)(r + c) * K, K, Kp, x32, 3, c);
      idx[c] = (r + c) * N;
    }
    gemm_cols3(x32, Kp, wp, bias, m0, sh, N, q, fast, out[0], idx, 3, 1);
  }
  uint32_t steps = Kp / 6, counts = ((steps / 8u) << 16) | (steps % 8u);
  for (; r < rows; r++) {
    widen_fc(x + (size_t)r * K, K, Kp, x32, 1, 0);
    const uint32_t *w = (const uint32_t *)wp;
    for (uint32_t j = 0; j < N; j += 2, w += Kp) {
      uint32_t nrows = N - j < 2 ? 1u : 2u, idx = r * N;
      int32_t acc[2] = {bias[j], nrows > 1 ? bias[j + 1] : 0};
      gemv_2x3(x32, w, counts, acc);
      if (fast && out[0]->dtype == 0 && nrows == 2) {
        int8_t *o = (int8_t *)out[0]->data + idx + j;
        int32_t e0 = -sh[j], e1 = -sh[j + 1];
        int32_t v0 = rq_t(acc[0], m0[j], e0, (int32_t)(1u << (e0 - 1))) + q[0];
        int32_t v1 = rq_t(acc[1], m0[j + 1], e1, (int32_t)(1u << (e1 - 1))) + q[0];
        if (full) {
          o[0] = (int8_t)sat8(v0);
          o[1] = (int8_t)sat8(v1);
        } else {
          o[0] = (int8_t)(v0 < q[1] ? q[1] : v0 > q[2] ? q[2] : v0);
          o[1] = (int8_t)(v1 < q[1] ? q[1] : v1 > q[2] ? q[2] : v1);
        }
      } else {
        store_block(acc, 1, nrows, j, m0, sh, q, fast, out[0], &idx, 1);
      }
    }
  }
  return 0;
}


/* Packed conv (group 1). Two layouts, chosen by the packer (p[20]):
   mode 0, im2col: weights in (c, i, j) order padded to Pp; the im2col rows of 3 output pixels
   are written interleaved ([k-pair][3]).
   mode 1, channels-last (dilation 1 along W): the input is widened once into a padded
   [HP][WP][Cp] int16 buffer (Cp = C rounded up to 8, extra channels 0), weights are in
   (i, j, c) order, and the KW taps of kernel row i for one pixel are then KW*Cp contiguous
   halfwords: interleave3 copies them for 3 pixels with LDM/STM.
   Both then run gemm_2x3 over all output channels for those 3 pixels (the last group repeats
   its final pixel and stores only the real ones).
   in: x int8, w int16 packed, bias_eff [O], m0 [O], shift [O].
   p: B,C,H,W, O,OH,OW, KH,KW, SH,SW, PT,PL, DH,DW, x_zp, Pp, out_zp, act_min, act_max, mode, Cp,
      fast_requant */
KERNEL int k_conv2d_packed(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 23 || (uint32_t)p[16] > SCRATCH_HALFWORDS || p[16] % 8) return -1;
  const int8_t *x = (const int8_t *)in[0]->data;
  int B = p[0], C = p[1], H = p[2], W = p[3], O = p[4], OH = p[5], OW = p[6];
  int KH = p[7], KW = p[8], SH = p[9], SW = p[10], PT = p[11], PL = p[12], DH = p[13], DW = p[14];
  int16_t x_zp = (int16_t)p[15];
  uint32_t Pp = (uint32_t)p[16], P = (uint32_t)(C * KH * KW);
  const int16_t *wp = (const int16_t *)in[1]->data;
  const int32_t *bias = (const int32_t *)in[2]->data, *m0 = (const int32_t *)in[3]->data,
                *sh = (const int32_t *)in[4]->data;
  const int32_t *q = p + 17;
  int fast = p[22];
  int npix = OH * OW;
  uint32_t *x32 = (uint32_t *)scratch;
  if (p[20] == 1) {
    int Cp = p[21];
    int HP = (OH - 1) * SH + (KH - 1) * DH + 1, WP = (OW - 1) * SW + KW;
    if (DW != 1 || Cp % 8 || (uint32_t)(KH * KW * Cp) != Pp ||
        (uint64_t)HP * WP * Cp > PADDED_HALFWORDS)
      return -1;
    uint32_t row_words = (uint32_t)(KW * Cp / 2);
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
      for (int t = 0; t < npix; t += 3) {
        uint32_t ncols = npix - t < 3 ? (uint32_t)(npix - t) : 3u, idx[3];
        const uint32_t *src[3];
        for (uint32_t c = 0; c < 3; c++) {
          int pix = t + (int)(c < ncols ? c : ncols - 1);
          int oy = pix / OW, ox = pix % OW;
          src[c] = (const uint32_t *)(padded + ((size_t)(oy * SH) * WP + (size_t)(ox * SW)) * Cp);
          idx[c] = (uint32_t)(b * O * npix + pix);
        }
        for (int i = 0; i < KH; i++) {
          uint32_t off = (uint32_t)(i * DH * WP * Cp / 2);
          interleave3(x32 + (uint32_t)i * row_words * 3u, src[0] + off, src[1] + off,
                      src[2] + off, row_words / 4u);
        }
        gemm_cols3(x32, Pp, wp, bias, m0, sh, (uint32_t)O, q, fast, out[0], idx, ncols,
                   (uint32_t)npix);
      }
    }
    return 0;
  }
  for (uint32_t k = P; k < Pp; k++)
    for (uint32_t c = 0; c < 3; c++) scratch[(k / 2) * 6 + c * 2 + (k & 1)] = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < npix; t += 3) {
      uint32_t ncols = npix - t < 3 ? (uint32_t)(npix - t) : 3u, idx[3];
      for (uint32_t c = 0; c < 3; c++) {
        int pix = t + (int)(c < ncols ? c : ncols - 1);
        int oy = pix / OW, ox = pix % OW;
        idx[c] = (uint32_t)(b * O * npix + pix);
        uint32_t k = 0;
        for (int ch = 0; ch < C; ch++) {
          const int8_t *xc = x + ((size_t)b * C + (size_t)ch) * H * W;
          for (int i = 0; i < KH; i++) {
            int iy = oy * SH - PT + i * DH;
            for (int j = 0; j < KW; j++, k++) {
              int ix = ox * SW - PL + j * DW;
              scratch[(k / 2) * 6 + c * 2 + (k & 1)] =
                  (iy < 0 || iy >= H || ix < 0 || ix >= W) ? x_zp : xc[iy * W + ix];
            }
          }
        }
      }
      gemm_cols3(x32, Pp, wp, bias, m0, sh, (uint32_t)O, q, fast, out[0], idx, ncols,
                 (uint32_t)npix);
    }
  return 0;
}


/* 1 when requant_fast equals requantize32 for every channel (op_encoders._fast_requant) */
static int fast_requant_ok(const int32_t *m0, const int32_t *sh, uint32_t n, int32_t zp,
                           int32_t hi) {
  for (uint32_t i = 0; i < n; i++)
    if (sh[i] > -1 || sh[i] < -31 || m0[i] == INT32_MIN ||
        ((int64_t)1 << (31 + sh[i])) - 1 + zp < hi)
      return 0;
  return 1;
}

/* MATMUL of 8-bit (or zero-point-0 int16) operands (attention: Q.K^T, probabilities.V),
   called by matmul_typed.
   Per batch: B - b_zp is widened once into the row-pair layout of the packed weights (columns
   of B as "rows", int16, zero-padded to even K and N), A - a_zp three rows at a time into the
   interleaved layout, and gemm_2x3 does the products: the same int32-wrapped sums as the
   reference's int64 accumulator once requantize wraps it (zero points within +-32000 keep
   every difference in int16). Returns 1 when it ran, 0 when the operands do not fit.
   p: B, M, K, N, a_zp, b_zp, out_zp, act_min, act_max */
/* element i of an int8 / uint8 / int16 operand */
static inline int32_t ld8_16(const uint8_t *base, uint8_t dt, uint32_t i) {
  return dt == 0 ? ((const int8_t *)base)[i] : dt == 1 ? base[i] : ((const int16_t *)base)[i];
}

int matmul_packed(tensor_t **in, tensor_t **out, const int32_t *p) {
  uint8_t da = in[0]->dtype, db = in[1]->dtype;
  uint32_t B = (uint32_t)p[0], M = (uint32_t)p[1], K = (uint32_t)p[2], N = (uint32_t)p[3];
  int32_t azp = p[4], bzp = p[5];
  /* every difference x - zp must fit int16: 8-bit operands with |zp| <= 32000, int16 ones
     with zp 0 */
  int a_ok = da <= 1 ? azp >= -32000 && azp <= 32000 : da == 2 && azp == 0;
  int b_ok = db <= 1 ? bzp >= -32000 && bzp <= 32000 : db == 2 && bzp == 0;
  uint32_t Kp = (K + 1u) & ~1u, N2 = (N + 1u) & ~1u;
  /* M < 3 (a decoder step's single query): widening B costs more than the blocks save */
  if (!a_ok || !b_ok || K == 0 || M < 3 || Kp > SCRATCH_HALFWORDS ||
      (uint64_t)N2 * Kp > PADDED_HALFWORDS)
    return 0;
  const int32_t *m0 = (const int32_t *)in[2]->data, *sh = (const int32_t *)in[3]->data;
  const int32_t *off = (const int32_t *)in[4]->data;
  const int32_t *q = p + 6;
  int fast = fast_requant_ok(m0, sh, N, q[0], q[2]);
  uint32_t *x32 = (uint32_t *)scratch;
  uint32_t ea = da == 2 ? 2u : 1u, eb = db == 2 ? 2u : 1u;
  for (uint32_t b = 0; b < B; b++) {
    const uint8_t *A = in[0]->data + (size_t)off[2 * b] * ea;
    const uint8_t *Bm = in[1]->data + (size_t)off[2 * b + 1] * eb;
    for (uint32_t n = 0; n < N2; n++) {         /* column n of B -> row n of the packed block */
      int16_t *d = padded + (n / 2u) * Kp * 2u + (n & 1u) * 2u;
      if (n >= N) {
        for (uint32_t k = 0; k < Kp; k++) d[(k / 2u) * 4u + (k & 1u)] = 0;
        continue;
      }
      uint32_t k = 0;
      if (db == 0) {
        const int8_t *col = (const int8_t *)Bm + n;
        for (; k + 2 <= K; k += 2, d += 4, col += 2 * N) {
          d[0] = (int16_t)(col[0] - bzp);
          d[1] = (int16_t)(col[N] - bzp);
        }
      }
      for (; k + 2 <= K; k += 2, d += 4) {
        d[0] = (int16_t)(ld8_16(Bm, db, k * N + n) - bzp);
        d[1] = (int16_t)(ld8_16(Bm, db, (k + 1) * N + n) - bzp);
      }
      if (k < K) { d[0] = (int16_t)(ld8_16(Bm, db, k * N + n) - bzp); d[1] = 0; }
    }
    for (uint32_t m = 0; m < M; m += 3) {
      uint32_t ncols = M - m < 3 ? M - m : 3u, idx[3];
      for (uint32_t c = 0; c < 3; c++) {
        uint32_t row = m + (c < ncols ? c : ncols - 1);
        int16_t *d = scratch + c * 2u;
        uint32_t k = 0;
        if (da == 0) {
          const int8_t *a = (const int8_t *)A + row * K;
          for (; k + 2 <= K; k += 2, d += 6) {
            d[0] = (int16_t)(a[k] - azp);
            d[1] = (int16_t)(a[k + 1] - azp);
          }
        } else if (da == 2) {   /* zp 0: the row as it is */
          const int16_t *a = (const int16_t *)A + row * K;
          for (; k + 2 <= K; k += 2, d += 6) {
            d[0] = a[k];
            d[1] = a[k + 1];
          }
        }
        for (; k + 2 <= K; k += 2, d += 6) {
          d[0] = (int16_t)(ld8_16(A, da, row * K + k) - azp);
          d[1] = (int16_t)(ld8_16(A, da, row * K + k + 1) - azp);
        }
        if (k < K) { d[0] = (int16_t)(ld8_16(A, da, row * K + k) - azp); d[1] = 0; }
        idx[c] = (b * M + row) * N;
      }
      gemm_cols3(x32, Kp, padded, 0, m0, sh, N, q, fast, out[0], idx, ncols, 1);
    }
  }
  return 1;
}
