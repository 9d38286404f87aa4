/* Integer kernels, written for reading. Each one states the formula it computes; the NumPy
   reference (sdk/kernels) is the specification and tests/firmware checks these bit for bit.
   Accumulators are int64 here and wrapped to int32 inside mbqm, which is exactly what the
   reference's wrap_int32 does. */
#include <string.h>
#include "kernels.h"

int32_t tensor_load(const tensor_t *t, uint32_t i) {
  switch (t->dtype) {
    case 0: return ((const int8_t *)t->data)[i];
    case 1: return ((const uint8_t *)t->data)[i];
    case 2: { int16_t v; memcpy(&v, t->data + 2u * i, 2); return v; }
    default: { int32_t v; memcpy(&v, t->data + 4u * i, 4); return v; }
  }
}

void tensor_store(tensor_t *t, uint32_t i, int32_t v) {
  switch (t->dtype) {
    case 0: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case 1: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case 2: { int16_t s = (int16_t)v; memcpy(t->data + 2u * i, &s, 2); break; }
    default: memcpy(t->data + 4u * i, &v, 4); break;
  }
}

int32_t dtype_min(uint8_t dt) {
  return dt == 0 ? -128 : dt == 1 ? 0 : dt == 2 ? -32768 : INT32_MIN;
}
int32_t dtype_max(uint8_t dt) {
  return dt == 0 ? 127 : dt == 1 ? 255 : dt == 2 ? 32767 : INT32_MAX;
}

/* Requantize: out[i] = requantize(x[i] - in_zp, m0[c], shift[c], out_zp), c = (i / inner) % n_ch.
   in: x, m0, shift. p: count, in_zp, out_zp, act_min, act_max, n_ch, inner */
KERNEL int k_requantize(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 7) return -1;
  const int32_t *m0 = (const int32_t *)in[1]->data, *sh = (const int32_t *)in[2]->data;
  uint32_t count = (uint32_t)p[0], n_ch = (uint32_t)p[5], inner = (uint32_t)p[6];
  for (uint32_t i = 0; i < count; i++) {
    uint32_t c = (i / inner) % n_ch;
    int64_t x = (int64_t)tensor_load(in[0], i) - p[1];
    tensor_store(out[0], i, requantize(x, m0[c], sh[c], p[2], p[3], p[4]));
  }
  return 0;
}

/* Fully connected: acc[r,j] = sum_k (x[r,k] - x_zp) * w[j,k] + bias[j];
   out[r,j] = requantize(acc, m0[j], shift[j], out_zp, act_min, act_max).
   in: x int8 or int16 (recurrent state) [rows,K], w int8 [N,K], bias int32 [N] or NULL,
   m0 [N], shift [N].
   p: rows, K, N, x_zp, out_zp, act_min, act_max */
KERNEL int k_fully_connected(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 7) return -1;
  const int8_t *x = (const int8_t *)in[0]->data, *w = (const int8_t *)in[1]->data;
  const int32_t *bias = in[2] ? (const int32_t *)in[2]->data : 0;
  const int32_t *m0 = (const int32_t *)in[3]->data, *sh = (const int32_t *)in[4]->data;
  uint32_t rows = (uint32_t)p[0], K = (uint32_t)p[1], N = (uint32_t)p[2];
  int32_t x_zp = p[3];
  int wide = in[0]->dtype != 0;  /* not int8: read each element by its dtype */
  for (uint32_t r = 0; r < rows; r++) {
    const int8_t *xr = x + (size_t)r * K;
    for (uint32_t j = 0; j < N; j++) {
      const int8_t *wj = w + (size_t)j * K;
      int64_t acc = bias ? bias[j] : 0;
      if (wide)
        for (uint32_t k = 0; k < K; k++)
          acc += (int64_t)(tensor_load(in[0], r * K + k) - x_zp) * wj[k];
      else
        for (uint32_t k = 0; k < K; k++) acc += (int64_t)((int32_t)xr[k] - x_zp) * wj[k];
      tensor_store(out[0], r * N + j, requantize(acc, m0[j], sh[j], p[4], p[5], p[6]));
    }
  }
  return 0;
}

/* 2-D convolution, NCHW, grouped (group = C gives depthwise), padding value x_zp (so padded
   taps contribute 0): acc[b,o,y,x] = bias[o] + sum_{c,i,j} (x[b,g*Cg+c, y*sh-pt+i*dh,
   x*sw-pl+j*dw] - x_zp) * w[o,c,i,j]; out = requantize(acc, m0[o], shift[o], out_zp).
   in: x int8, w int8 [O,C/g,KH,KW], bias int32 or NULL, m0 [O], shift [O].
   p: B,C,H,W, O,OH,OW, KH,KW, SH,SW, PT,PL, DH,DW, group, x_zp, out_zp, act_min, act_max */
KERNEL int k_conv2d(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 20) return -1;
  const int8_t *x = (const int8_t *)in[0]->data, *w = (const int8_t *)in[1]->data;
  const int32_t *bias = in[2] ? (const int32_t *)in[2]->data : 0;
  const int32_t *m0 = (const int32_t *)in[3]->data, *sh = (const int32_t *)in[4]->data;
  int B = p[0], C = p[1], H = p[2], W = p[3], O = p[4], OH = p[5], OW = p[6];
  int KH = p[7], KW = p[8], SH = p[9], SW = p[10], PT = p[11], PL = p[12], DH = p[13], DW = p[14];
  int G = p[15], x_zp = p[16];
  int Cg = C / G, Og = O / G;
  uint32_t o_i = 0;
  for (int b = 0; b < B; b++)
    for (int o = 0; o < O; o++) {
      int g = o / Og;
      const int8_t *wo = w + (size_t)o * Cg * KH * KW;
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          int64_t acc = bias ? bias[o] : 0;
          for (int c = 0; c < Cg; c++) {
            const int8_t *xc = x + ((size_t)b * C + (size_t)(g * Cg + c)) * H * W;
            const int8_t *wc = wo + (size_t)c * KH * KW;
            for (int i = 0; i < KH; i++) {
              int iy = oy * SH - PT + i * DH;
              if (iy < 0 || iy >= H) continue;
              for (int j = 0; j < KW; j++) {
                int ix = ox * SW - PL + j * DW;
                if (ix < 0 || ix >= W) continue;
                acc += (int64_t)((int32_t)xc[iy * W + ix] - x_zp) * wc[i * KW + j];
              }
            }
          }
          tensor_store(out[0], o_i++, requantize(acc, m0[o], sh[o], p[17], p[18], p[19]));
        }
    }
  return 0;
}

/* broadcast helper: 5-d output dims d[5], input strides sa[5], sb[5] (0 on broadcast axes) */
static void bcast_index(uint32_t i, const int32_t *d, const int32_t *sa, const int32_t *sb,
                        uint32_t *ia, uint32_t *ib) {
  uint32_t a = 0, b = 0;
  for (int k = 4; k >= 0; k--) {
    uint32_t q = i % (uint32_t)d[k];
    i /= (uint32_t)d[k];
    a += q * (uint32_t)sa[k];
    b += q * (uint32_t)sb[k];
  }
  *ia = a; *ib = b;
}

/* ADD and MUL without the per-element divisions: called by k_add / k_mul, the same arithmetic
   on the same elements, the broadcast indices walked like an odometer over the 5 output dims
   (bcast_index's digits) and the operands read inline. Returns 0 (the generic loop runs)
   when count is not the product of the dims. */
static inline int32_t ld(const tensor_t *t, uint32_t i) {
  switch (t->dtype) {
    case 0: return ((const int8_t *)t->data)[i];
    case 1: return ((const uint8_t *)t->data)[i];
    case 2: { int16_t v; memcpy(&v, t->data + 2u * i, 2); return v; }
    default: { int32_t v; memcpy(&v, t->data + 4u * i, 4); return v; }
  }
}

static inline void st(tensor_t *t, uint32_t i, int32_t v) {
  switch (t->dtype) {
    case 0: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case 1: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case 2: { int16_t h = (int16_t)v; memcpy(t->data + 2u * i, &h, 2); break; }
    default: memcpy(t->data + 4u * i, &v, 4); break;
  }
}

static int dims_match(uint32_t count, const int32_t *d) {
  uint64_t c = 1;
  for (int k = 0; k < 5; k++) {
    if (d[k] <= 0) return 0;
    c *= (uint64_t)d[k];
  }
  return c == count;
}

/* next output element: advance the odometer (digit 4 fastest), moving ia / ib with it */
static inline void step5(uint32_t *q, const int32_t *d, const int32_t *sa, const int32_t *sb,
                         uint32_t *ia, uint32_t *ib) {
  for (int k = 4; k >= 0; k--) {
    if (++q[k] < (uint32_t)d[k]) { *ia += (uint32_t)sa[k]; *ib += (uint32_t)sb[k]; return; }
    *ia -= (q[k] - 1u) * (uint32_t)sa[k];
    *ib -= (q[k] - 1u) * (uint32_t)sb[k];
    q[k] = 0;
  }
}

static int add_walk(tensor_t **in, tensor_t **out, const int32_t *p) {
  uint32_t count = (uint32_t)p[12], q[5] = {0, 0, 0, 0, 0}, ia = 0, ib = 0;
  const int32_t *d = p + 13, *sa = p + 18, *sb = p + 23;
  if (!dims_match(count, d)) return 0;
  int64_t scale = (int64_t)1 << p[2];
  for (uint32_t i = 0; i < count; i++) {
    int64_t a = ((int64_t)ld(in[0], ia) - p[0]) * scale;
    int64_t b = ((int64_t)ld(in[1], ib) - p[1]) * scale;
    int64_t s = (int64_t)mbqm(a, p[3], p[4]) + mbqm(b, p[5], p[6]);
    st(out[0], i, requantize(s, p[7], p[8], p[9], p[10], p[11]));
    step5(q, d, sa, sb, &ia, &ib);
  }
  return 1;
}

static int mul_walk(tensor_t **in, tensor_t **out, const int32_t *p) {
  uint32_t count = (uint32_t)p[7], q[5] = {0, 0, 0, 0, 0}, ia = 0, ib = 0;
  const int32_t *d = p + 8, *sa = p + 13, *sb = p + 18;
  if (!dims_match(count, d)) return 0;
  for (uint32_t i = 0; i < count; i++) {
    int64_t prod = ((int64_t)ld(in[0], ia) - p[0]) * ((int64_t)ld(in[1], ib) - p[1]);
    st(out[0], i, requantize(prod, p[2], p[3], p[4], p[5], p[6]));
    step5(q, d, sa, sb, &ia, &ib);
  }
  return 1;
}

/* TFLite integer Add: s = mbqm((a-a_zp)<<ls, a_m0, a_sh) + mbqm((b-b_zp)<<ls, b_m0, b_sh);
   out = clamp(mbqm(s, out_m0, out_sh) + out_zp).
   p: a_zp,b_zp,ls,a_m0,a_sh,b_m0,b_sh,out_m0,out_sh,out_zp,act_min,act_max,count,
      dims[5], a_strides[5], b_strides[5] */
KERNEL int k_add(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 28) return -1;
  if (add_walk(in, out, p)) return 0;  /* same bits, no per-element division */
  uint32_t count = (uint32_t)p[12];
  for (uint32_t i = 0; i < count; i++) {
    uint32_t ia, ib;
    bcast_index(i, p + 13, p + 18, p + 23, &ia, &ib);
    int64_t a = ((int64_t)tensor_load(in[0], ia) - p[0]) * ((int64_t)1 << p[2]);
    int64_t b = ((int64_t)tensor_load(in[1], ib) - p[1]) * ((int64_t)1 << p[2]);
    int64_t s = (int64_t)mbqm(a, p[3], p[4]) + mbqm(b, p[5], p[6]);
    tensor_store(out[0], i, requantize(s, p[7], p[8], p[9], p[10], p[11]));
  }
  return 0;
}

/* Mul: out = requantize((a-a_zp)*(b-b_zp), m0, shift, out_zp).
   p: a_zp,b_zp,m0,shift,out_zp,act_min,act_max,count, dims[5], a_strides[5], b_strides[5] */
KERNEL int k_mul(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 23) return -1;
  if (mul_walk(in, out, p)) return 0;  /* same bits, no per-element division */
  uint32_t count = (uint32_t)p[7];
  for (uint32_t i = 0; i < count; i++) {
    uint32_t ia, ib;
    bcast_index(i, p + 8, p + 13, p + 18, &ia, &ib);
    int64_t prod = ((int64_t)tensor_load(in[0], ia) - p[0]) * ((int64_t)tensor_load(in[1], ib) - p[1]);
    tensor_store(out[0], i, requantize(prod, p[2], p[3], p[4], p[5], p[6]));
  }
  return 0;
}

/* Clamp: out = min(max(x, lo), hi). p: count, lo, hi */
KERNEL int k_clamp(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 3) return -1;
  for (uint32_t i = 0; i < (uint32_t)p[0]; i++) {
    int32_t v = tensor_load(in[0], i);
    tensor_store(out[0], i, v < p[1] ? p[1] : v > p[2] ? p[2] : v);
  }
  return 0;
}

/* MaxPool2d: max over the window's in-image taps (padding never wins; a window wholly in the
   padding gives the dtype minimum).
   p: B,C,H,W, OH,OW, KH,KW, SH,SW, PT,PL, DH,DW */
KERNEL int k_maxpool2d(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 14) return -1;
  int BC = p[0] * p[1], H = p[2], W = p[3], OH = p[4], OW = p[5];
  uint32_t o = 0;
  for (int bc = 0; bc < BC; bc++)
    for (int oy = 0; oy < OH; oy++)
      for (int ox = 0; ox < OW; ox++) {
        int32_t m = INT32_MIN;
        for (int i = 0; i < p[6]; i++) {
          int iy = oy * p[8] - p[10] + i * p[12];
          if (iy < 0 || iy >= H) continue;
          for (int j = 0; j < p[7]; j++) {
            int ix = ox * p[9] - p[11] + j * p[13];
            if (ix < 0 || ix >= W) continue;
            int32_t v = tensor_load(in[0], (uint32_t)((bc * H + iy) * W + ix));
            if (v > m) m = v;
          }
        }
        tensor_store(out[0], o++, m == INT32_MIN ? dtype_min(in[0]->dtype) : m);
      }
  return 0;
}

/* AvgPool2d: out = round_half_away(sum / count), clipped to the dtype; count = in-image taps,
   or KH*KW with count_include_pad (padded taps then hold x_zp); count 0 gives x_zp.
   p: B,C,H,W, OH,OW, KH,KW, SH,SW, PT,PL, count_include_pad, x_zp */
KERNEL int k_avgpool2d(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 14) return -1;
  int BC = p[0] * p[1], H = p[2], W = p[3], OH = p[4], OW = p[5];
  int32_t lo = dtype_min(in[0]->dtype), hi = dtype_max(in[0]->dtype);
  uint32_t o = 0;
  for (int bc = 0; bc < BC; bc++)
    for (int oy = 0; oy < OH; oy++)
      for (int ox = 0; ox < OW; ox++) {
        int64_t sum = 0, cnt = 0;
        for (int i = 0; i < p[6]; i++) {
          int iy = oy * p[8] - p[10] + i;
          for (int j = 0; j < p[7]; j++) {
            int ix = ox * p[9] - p[11] + j;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
              if (p[12]) sum += p[13];
              continue;
            }
            sum += tensor_load(in[0], (uint32_t)((bc * H + iy) * W + ix));
            cnt++;
          }
        }
        if (p[12]) cnt = (int64_t)p[6] * p[7];
        int64_t q = cnt == 0 ? p[13]
                  : sum >= 0 ? (sum + cnt / 2) / cnt : -((-sum + cnt / 2) / cnt);
        tensor_store(out[0], o++, (int32_t)(q < lo ? lo : q > hi ? hi : q));
      }
  return 0;
}

/* Global average pool: out[b,c] = requantize(sum_s (x[b,c,s] - x_zp), m0[c], shift[c], out_zp).
   in: x, m0 [C], shift [C]. p: B, C, S, x_zp, out_zp, act_min, act_max */
KERNEL int k_global_avgpool(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 7) return -1;
  const int32_t *m0 = (const int32_t *)in[1]->data, *sh = (const int32_t *)in[2]->data;
  uint32_t B = (uint32_t)p[0], C = (uint32_t)p[1], S = (uint32_t)p[2];
  for (uint32_t bc = 0; bc < B * C; bc++) {
    int64_t acc = 0;
    for (uint32_t s = 0; s < S; s++) acc += (int64_t)tensor_load(in[0], bc * S + s) - p[3];
    tensor_store(out[0], bc, requantize(acc, m0[bc % C], sh[bc % C], p[4], p[5], p[6]));
  }
  return 0;
}

/* LUT: out[i] = table[x[i] + 128] (int8 -> int8). in: x, table. p: count */
KERNEL int k_lut(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 1) return -1;
  const int8_t *x = (const int8_t *)in[0]->data, *t = (const int8_t *)in[1]->data;
  int8_t *y = (int8_t *)out[0]->data;
  for (uint32_t i = 0; i < (uint32_t)p[0]; i++) y[i] = t[x[i] + 128];
  return 0;
}

/* Reshape / Flatten / Squeeze / Unsqueeze / Identity: the bytes do not change. p: nbytes */
KERNEL int k_copy(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 1) return -1;
  if (out[0]->data != in[0]->data) memmove(out[0]->data, in[0]->data, (size_t)p[0]);
  return 0;
}
