/* Layout kernels of the segmentation graphs (opcodes 20-23): nearest-neighbour resize and
   gather. Both move elements of any dtype (1, 2 or 4 bytes) and keep the quantization grid,
   so they are bit-exact with the NumPy reference by construction (sdk/kernels/resize.py,
   sdk/kernels/layout.py). Slice needs no kernel of its own: it runs on TRANSPOSE (a strided
   gather with a base offset, see op_encoders.py). */
#include <string.h>
#include "kernels.h"

static uint32_t dims_count(const int32_t *d, int n) {
  uint64_t c = 1;
  for (int i = 0; i < n; i++) {
    if (d[i] <= 0) return 0;
    c *= (uint64_t)d[i];
    if (c > 0xFFFFFFFFull) return 0;
  }
  return (uint32_t)c;
}

static int esize_ok(uint32_t esz, const tensor_t *t) {
  return (esz == 1 || esz == 2 || esz == 4) &&
         esz == (t->dtype == 2 ? 2u : t->dtype == 3 ? 4u : 1u);
}

/* RESIZE_NEAREST: out[a,b,c,d] = in[src0(a), src1(b), src2(c), src3(d)] over 4 dims (the
   encoder pads the rank with leading 1s), src_k(i) = floor(i * in_k / out_k), computed
   exactly in integers as nearest_indices() does.
   p: elem_bytes, in_dims[4], out_dims[4] */
KERNEL int k_resize_nearest(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 9 || !in[0] || !out[0]) return -1;
  uint32_t esz = (uint32_t)p[0];
  const int32_t *id = p + 1, *od = p + 5;
  uint32_t n_in = dims_count(id, 4), n_out = dims_count(od, 4);
  if (!n_in || !n_out || n_in != in[0]->count || n_out != out[0]->count ||
      !esize_ok(esz, in[0]) || !esize_ok(esz, out[0]))
    return -1;
  const uint8_t *src = in[0]->data;
  uint8_t *dst = out[0]->data;
  uint32_t i1 = (uint32_t)id[1], i2 = (uint32_t)id[2], i3 = (uint32_t)id[3];
  uint32_t o3 = (uint32_t)od[3];
  for (uint32_t a = 0; a < (uint32_t)od[0]; a++) {
    uint32_t sa = (uint32_t)(((uint64_t)a * (uint32_t)id[0]) / (uint32_t)od[0]);
    for (uint32_t b = 0; b < (uint32_t)od[1]; b++) {
      uint32_t sb = (uint32_t)(((uint64_t)b * i1) / (uint32_t)od[1]);
      for (uint32_t c = 0; c < (uint32_t)od[2]; c++) {
        uint32_t sc = (uint32_t)(((uint64_t)c * i2) / (uint32_t)od[2]);
        const uint8_t *row = src + (size_t)((sa * i1 + sb) * i2 + sc) * i3 * esz;
        if (esz == 1) {
          for (uint32_t d = 0; d < o3; d++)
            *dst++ = row[(uint32_t)(((uint64_t)d * i3) / o3)];
        } else {
          for (uint32_t d = 0; d < o3; d++, dst += esz)
            memcpy(dst, row + (size_t)((uint32_t)(((uint64_t)d * i3) / o3)) * esz, esz);
        }
      }
    }
  }
  return 0;
}

/* GATHER (ONNX Gather): the data viewed as [outer, N, inner] (N = the gathered axis, inner
   in elements), indices any integer tensor of K elements (int8/uint8/int16/int32; constant
   in flash or computed in the arena, e.g. token ids for an embedding table):
   out[o, j, :] = in[o, idx[j], :], a negative index counts from the end (idx + N); an index
   outside [-N, N) fails the invocation (ST_INVOKE_FAILED) instead of reading out of bounds.
   p: elem_bytes, outer, N, inner, K */
KERNEL int k_gather(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 5 || !in[0] || !in[1] || !out[0]) return -1;
  uint32_t esz = (uint32_t)p[0];
  int32_t geo[4] = {p[1], p[2], p[3], p[4]};
  uint32_t n_in = dims_count(geo, 3);
  int32_t og[3] = {p[1], p[4], p[3]};
  uint32_t n_out = dims_count(og, 3);
  if (!n_in || !n_out || n_in != in[0]->count || n_out != out[0]->count ||
      (uint32_t)p[4] != in[1]->count || !esize_ok(esz, in[0]) || !esize_ok(esz, out[0]))
    return -1;
  int32_t big_n = p[2];
  uint32_t outer = (uint32_t)p[1], k = (uint32_t)p[4];
  uint32_t row = (uint32_t)p[3] * esz;
  for (uint32_t j = 0; j < k; j++) {   /* validate every index before writing anything */
    int32_t ix = tensor_load(in[1], j);
    if (ix < -big_n || ix >= big_n) return 1;
  }
  uint8_t *dst = out[0]->data;
  for (uint32_t o = 0; o < outer; o++) {
    const uint8_t *base = in[0]->data + (size_t)o * (uint32_t)big_n * row;
    for (uint32_t j = 0; j < k; j++, dst += row) {
      int32_t ix = tensor_load(in[1], j);
      if (ix < 0) ix += big_n;
      memmove(dst, base + (size_t)(uint32_t)ix * row, row);
    }
  }
  return 0;
}
