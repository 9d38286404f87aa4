/* The image loader and interpreter: validates an image in place (weights stay in flash),
   binds every tensor to flash or to its arena offset, and runs the op list in order. */
#include <string.h>
#include "fw.h"
#include "kernels.h"

#define MAX_TENSORS 1024
#define MAX_OPS 512
#define MAX_OP_IO 8

enum {
  OP_REQUANTIZE = 1, OP_FULLY_CONNECTED = 2, OP_CONV2D = 3, OP_ADD = 4, OP_MUL = 5,
  OP_CLAMP = 6, OP_MAXPOOL2D = 7, OP_AVGPOOL2D = 8, OP_GLOBAL_AVGPOOL = 9, OP_LUT = 10,
  OP_COPY = 11, OP_SHIFTMAX = 12, OP_SHIFT_GELU = 13, OP_INT_NORM = 14, OP_MATMUL = 15,
  OP_TRANSPOSE = 16, OP_CONCAT = 17, OP_FC_PACKED = 18, OP_CONV2D_PACKED = 19,
  OP_RESIZE_NEAREST = 20, OP_GATHER = 22,
  OP_KV_CACHE_WRITE = 24, OP_CAUSAL_MASK = 25,
  OP_EXIT_MARGIN = 30, OP_EXIT_ENTROPY = 31, OP_EXIT_PATIENCE = 32, OP_EXIT_GATE = 33, OP_COUNT
};

static const kernel_fn KERNELS[OP_COUNT] = {
  0, k_requantize, k_fully_connected, k_conv2d, k_add, k_mul, k_clamp, k_maxpool2d,
  k_avgpool2d, k_global_avgpool, k_lut, k_copy, k_shiftmax, k_shift_gelu, k_int_norm,
  k_matmul, k_transpose, k_concat, k_fully_connected_packed, k_conv2d_packed,
  [OP_RESIZE_NEAREST] = k_resize_nearest, [OP_GATHER] = k_gather,
  [OP_KV_CACHE_WRITE] = k_kv_cache_write, [OP_CAUSAL_MASK] = k_causal_mask,
  [OP_EXIT_MARGIN] = k_exit_margin, [OP_EXIT_ENTROPY] = k_exit_entropy,
  [OP_EXIT_PATIENCE] = k_exit_patience, [OP_EXIT_GATE] = k_exit_gate,
};

typedef struct {
  uint16_t opcode;
  uint8_t n_in, n_out;
  uint16_t n_params, words;
} op_record_t;

static struct {
  int ready;
  const img_header_t *h;
  const img_tensor_t *tt;
  tensor_t tensors[MAX_TENSORS];
  const op_record_t *ops[MAX_OPS];
  uint32_t ticks[MAX_OPS];
  const uint32_t *io;
} M;

static uint32_t elem_size(uint8_t dt) { return dt == DT_INT16 ? 2u : dt == DT_INT32 ? 4u : 1u; }

void model_close(void) { M.ready = 0; }
int model_ready(void) { return M.ready; }
int model_exit(void) { return exit_fired; }
uint32_t model_n_ops(void) { return M.ready ? M.h->n_ops : 0; }
const uint32_t *model_profile(void) { return M.ticks; }

uint32_t model_n_io(int kind) {
  if (!M.ready) return 0;
  return kind == 0 ? M.h->n_inputs : kind == 1 ? M.h->n_outputs : M.h->n_state;
}

int model_open(const uint8_t *img, uint32_t size) {
  M.ready = 0;
  const img_header_t *h = (const img_header_t *)img;
  if (size < sizeof *h || h->magic != IMG_MAGIC || h->version != IMG_VERSION ||
      h->total_size > size)
    return ST_BAD_IMAGE;
  if (h->n_tensors > MAX_TENSORS || h->n_ops > MAX_OPS) return ST_TOO_BIG;
  if (h->arena_size > port_arena_size()) return ST_TOO_BIG;
  if ((uint64_t)h->tensors_offset + (uint64_t)h->n_tensors * sizeof(img_tensor_t) > h->total_size ||
      (uint64_t)h->ops_offset + h->ops_bytes > h->total_size ||
      (uint64_t)h->io_offset + 4ull * (h->n_inputs + h->n_outputs + 2ull * h->n_state) > h->total_size ||
      (h->tensors_offset | h->ops_offset | h->io_offset) & 3u)
    return ST_BAD_IMAGE;
  const img_tensor_t *tt = (const img_tensor_t *)(img + h->tensors_offset);
  for (uint32_t i = 0; i < h->n_tensors; i++) {
    const img_tensor_t *t = &tt[i];
    uint64_t end = (uint64_t)t->offset + t->nbytes;
    if (t->dtype > DT_INT32 || t->nbytes % elem_size(t->dtype)) return ST_BAD_IMAGE;
    if (t->kind == TK_CONST) {
      if (end > h->total_size) return ST_BAD_IMAGE;
      M.tensors[i].data = (uint8_t *)(uintptr_t)(img + t->offset);
    } else if (t->kind == TK_ARENA) {
      if (end > h->arena_size) return ST_BAD_IMAGE;
      M.tensors[i].data = port_arena() + t->offset;
    } else {
      return ST_BAD_IMAGE;
    }
    M.tensors[i].dtype = t->dtype;
    M.tensors[i].zero_point = t->zero_point;
    M.tensors[i].count = t->nbytes / elem_size(t->dtype);
  }
  uint32_t pos = 0;
  for (uint32_t k = 0; k < h->n_ops; k++) {
    if (pos + sizeof(op_record_t) > h->ops_bytes) return ST_BAD_IMAGE;
    const op_record_t *op = (const op_record_t *)(img + h->ops_offset + pos);
    uint32_t nio = (uint32_t)op->n_in + op->n_out;
    uint32_t need = 2u + (nio + 1u) / 2u + op->n_params;
    if (op->words < need || pos + 4u * op->words > h->ops_bytes || nio > MAX_OP_IO)
      return ST_BAD_IMAGE;
    if (op->opcode == 0 || op->opcode >= OP_COUNT || !KERNELS[op->opcode]) return ST_UNSUPPORTED_OP;
    const uint16_t *ids = (const uint16_t *)(op + 1);
    for (uint32_t i = 0; i < nio; i++)
      if (ids[i] != TENSOR_NONE && ids[i] >= h->n_tensors) return ST_BAD_IMAGE;
    M.ops[k] = op;
    pos += 4u * op->words;
  }
  M.io = (const uint32_t *)(img + h->io_offset);
  for (uint32_t i = 0; i < h->n_inputs + h->n_outputs + 2u * h->n_state; i++)
    if (M.io[i] >= h->n_tensors || tt[M.io[i]].kind != TK_ARENA) return ST_BAD_IMAGE;
  M.h = h;
  M.tt = tt;
  M.ready = 1;
  model_reset_state();
  memset(M.ticks, 0, sizeof M.ticks);
  return ST_OK;
}

int model_io(int kind, uint32_t index, uint8_t **ptr, uint32_t *nbytes) {
  if (!M.ready) return ST_NO_MODEL;
  uint32_t n = model_n_io(kind);
  if (index >= n) return ST_BAD_ARG;
  /* state: the (in) tensor of pair `index` holds the state between invocations */
  uint32_t id = kind == 0 ? M.io[index]
              : kind == 1 ? M.io[M.h->n_inputs + index]
              : M.io[M.h->n_inputs + M.h->n_outputs + 2u * index];
  *ptr = M.tensors[id].data;
  *nbytes = M.tt[id].nbytes;
  return ST_OK;
}

void model_reset_state(void) {
  for (uint32_t s = 0; M.ready && s < M.h->n_state; s++) {
    tensor_t *t = &M.tensors[M.io[M.h->n_inputs + M.h->n_outputs + 2u * s]];
    for (uint32_t i = 0; i < t->count; i++) tensor_store(t, i, t->zero_point);
  }
}

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

int model_invoke(void) {
  if (!M.ready) return ST_NO_MODEL;
  tensor_t *ins[MAX_OP_IO], *outs[MAX_OP_IO];
  exit_fired = -1;
  for (uint32_t k = 0; k < M.h->n_ops; k++) {
    if (exit_fired >= 0) { M.ticks[k] = 0; continue; }  /* early exit: skip the rest */
    const op_record_t *op = M.ops[k];
    const uint16_t *ids = (const uint16_t *)(op + 1);
    for (uint32_t i = 0; i < op->n_in; i++)
      ins[i] = ids[i] == TENSOR_NONE ? 0 : &M.tensors[ids[i]];
    for (uint32_t i = 0; i < op->n_out; i++)
      outs[i] = ids[op->n_in + i] == TENSOR_NONE ? 0 : &M.tensors[ids[op->n_in + i]];
    const int32_t *params = (const int32_t *)(ids + 2u * (((uint32_t)op->n_in + op->n_out + 1u) / 2u));
    barrier();
    uint32_t t0 = port_ticks();
    barrier();
    int rc = KERNELS[op->opcode](ins, outs, params, op->n_params);
    barrier();
    uint32_t t1 = port_ticks();
    barrier();
    M.ticks[k] = t1 - t0;
    if (rc) return ST_INVOKE_FAILED;
  }
  /* carry state: out -> in for each state pair */
  for (uint32_t s = 0; s < M.h->n_state; s++) {
    uint32_t base = M.h->n_inputs + M.h->n_outputs + 2u * s;
    tensor_t *si = &M.tensors[M.io[base]], *so = &M.tensors[M.io[base + 1]];
    uint32_t nb = M.tt[M.io[base]].nbytes;
    if (M.tt[M.io[base + 1]].nbytes == nb && si->data != so->data) memmove(si->data, so->data, nb);
  }
  return ST_OK;
}
