/* Early-exit checks (opcodes 30-33): the integer exit rules of sdk/exits/rules.py, evaluated
   on the device after each stage's exit head. When a rule fires the kernel records the exit
   (exit_fire) and the interpreter skips every remaining op; the INVOKE reply reports it.
   Scores and thresholds are integers: the same exit as the NumPy spec and the Numba twins.

   Common params: p[0] exit index k (0-based), p[1] threshold (int32; score >= threshold
   fires). in[0]: the exit's integer logits (int8/int16), or the gating logits (gate).
   EXIT_ENTROPY: in[1] E table (int32), in[2] LN table (int32); p[2] shift, p[3] s16.
   EXIT_GATE: in[0] the gate tensor; the score is gate[k]. */
#include "kernels.h"

int exit_fired = -1;      /* model.c resets it to -1 before each invocation */
static int32_t prev_argmax, run_length;

void exit_fire(int k) { exit_fired = k; }

static int32_t argmax_of(const tensor_t *q) {
  int32_t best = 0, bv = tensor_load(q, 0);
  for (uint32_t i = 1; i < q->count; i++) {
    int32_t v = tensor_load(q, i);
    if (v > bv) { bv = v; best = (int32_t)i; }
  }
  return best;
}

int KERNEL k_exit_margin(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 2 || !in[0] || in[0]->count < 2) return 1;
  const tensor_t *q = in[0];
  int64_t top = INT64_MIN, second = INT64_MIN;
  for (uint32_t i = 0; i < q->count; i++) {
    int64_t v = tensor_load(q, i);
    if (v > top) { second = top; top = v; }
    else if (v > second) second = v;
  }
  if (top - second >= (int64_t)p[1]) exit_fire(p[0]);
  return 0;
}

int KERNEL k_exit_entropy(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 4 || !in[0] || !in[1] || !in[2] || in[0]->count < 2 || in[1]->count < 1 ||
      in[2]->count < 1 || p[2] < 0 || p[2] > 62)
    return 1;
  const tensor_t *q = in[0];
  int64_t top = tensor_load(q, 0);
  for (uint32_t i = 1; i < q->count; i++) {
    int64_t v = tensor_load(q, i);
    if (v > top) top = v;
  }
  int64_t w = 0, a = 0, last = (int64_t)in[1]->count - 1;
  for (uint32_t i = 0; i < q->count; i++) {
    int64_t d = top - tensor_load(q, i);
    if (d > last) d = last;
    int64_t e = tensor_load(in[1], (uint32_t)d);
    w += e;
    a += e * d;
  }
  if (w <= 0) return 1;
  int64_t j = (w - (1ll << 15)) >> p[2];
  if (j > (int64_t)in[2]->count - 1) j = (int64_t)in[2]->count - 1;
  /* floor division as NumPy's // (both operands are >= 0 here) */
  int64_t h = (int64_t)tensor_load(in[2], (uint32_t)j) + ((int64_t)p[3] * a) / w;
  if (-h >= (int64_t)p[1]) exit_fire(p[0]);
  return 0;
}

int KERNEL k_exit_patience(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 2 || !in[0] || in[0]->count < 1) return 1;
  int32_t a = argmax_of(in[0]);
  run_length = (p[0] > 0 && a == prev_argmax) ? run_length + 1 : 1;
  prev_argmax = a;
  if (run_length >= p[1]) exit_fire(p[0]);
  return 0;
}

int KERNEL k_exit_gate(tensor_t **in, tensor_t **out, const int32_t *p, uint32_t n) {
  if (n < 2 || !in[0] || p[0] < 0 || (uint32_t)p[0] >= in[0]->count) return 1;
  if (tensor_load(in[0], (uint32_t)p[0]) >= p[1]) exit_fire(p[0]);
  return 0;
}
