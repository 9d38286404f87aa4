"""KV-cached generation on the microcontroller: an encoder-decoder generation bundle
(:func:`sdk.compile_generation_model`) runs on the edge firmware, bit-exact with
:class:`sdk.GenerationSession` on the host.

Two flash images, one per A/B slot of the device (both stay in flash; ``SELECT`` switches):

* **encoder**: token ids + mask (int32) → the cross-attention keys and values of every decoder
  layer, once per input. The token-embedding and mask-bias lookups run on the device
  (``Gather`` of the int8 tables in flash).
* **decoder step**: one token id and its position (int32) → integer logits. The per-layer
  self-attention KV caches are device state (``KVCacheWrite`` at the position, ``CausalMask``
  in front of each self-attention Shiftmax, firmware opcodes 24/25): the firmware keeps them
  in its arena between invocations; the cross K/V and the encoder mask are device state too,
  written once per input (``SET_STATE``) and never changed by a step. The RoPE rows are looked
  up on the device by the position. Two rewrites that move bytes only (so the logits keep
  every bit, checked by ``tests/slm/test_slm_mcu.py``): the cross keys' head repeat and
  transpose happen once per input on the host instead of once per token, and each K cache is
  held transposed, so a step writes one column instead of transposing the whole cache.

Per input the host sends the ids, reads the cross K/V (int8) and puts them on the decoder's
input grid with the same float arithmetic the host session uses (on the committed G2P model
the two grids are the same, so the values come back unchanged), then per token sends the token
and its position and reads the logits (int8, a few dozen bytes). Greedy decoding and seeded
sampling pick on the host from the device's integer logits; beam search needs one cache per
beam and is refused.

A decoder-only bundle runs as one image (the decoder step): its prompt goes through the
step one token at a time (the image has static shapes; the host's ``prefill`` entry takes
the prompt at once), the same bits from the separator's logits on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_bridge.client import DeviceClient
from firmware_bridge.image import PackedImage, pack_image
from sdk.errors import DeviceError, GraphError, InputError
from sdk.runtime.generation import GenerationConfig, GenerationSession

_ID_INPUTS = ("input_ids", "attention_mask", "tokens", "positions", "enc_mask")


def _merge_lookup(bundle: Any, entry: str) -> Any:
    """Entry ``entry`` with its split-off table lookups (``<entry>_lookup``) put back in front,
    token ids / positions / masks as int32 graph inputs (the firmware has no int64)."""
    from sdk.graph import Tensor

    main = bundle.entry(entry).copy()
    names = bundle.entry_names
    if f"{entry}_lookup" in names:
        look = bundle.entry(f"{entry}_lookup").copy()
        for name, t in look.tensors.items():
            if name not in main.tensors:
                main.add_tensor(t)
        rows = set(look.outputs)
        main.nodes = list(look.nodes) + main.nodes
        main.inputs = [i for i in main.inputs if i not in rows] + \
            [i for i in look.inputs if i not in main.inputs]
    for name in _ID_INPUTS:
        if name in main.inputs:
            t = main.tensor(name)
            main.tensors[name] = Tensor(name, "int32", t.shape)
    main.validate()
    return main


@dataclass
class DeviceGraphs:
    """The integer graphs the firmware runs, and how the host feeds the decoder's state."""

    encoder: Any
    decoder: Any
    held: list[str]                     # decoder inputs set once per input (device state)
    quant: dict[str, tuple[str, dict]]  # encoder output -> (decoder tensor, QuantizeLinear attrs)
    prep: Any = None                    # layout ops on the held tensors, run once per input
    k_transposed: list[str] = field(default_factory=list)  # K caches held as [B, H, D, C]


def device_graphs(bundle: Any, hoist: bool = True) -> DeviceGraphs:
    """The integer graphs of an encoder-decoder generation bundle as the firmware runs them:
    lookups included, int32 ids; the decoder's ``positions`` (the RoPE row index) is a view of
    its ``pos`` scalar, so a step takes a token and one position. The decoder's cross K/V come
    in on their integer grid (the host quantizes the encoder's outputs onto it, as
    :class:`sdk.GenerationSession` does). With ``hoist`` (default), two rewrites that move
    bytes only: the layout ops on the per-input cross K/V run once per input on the host
    (``prep``), and the K caches are held transposed (see :func:`_transpose_k_caches`)."""
    from sdk.graph import Node
    from sdk.ops.shapes import infer_shapes

    names = bundle.entry_names
    if "decoder_step" not in names:
        raise InputError(f"{bundle.name} is not a generation bundle (entries {names}); build "
                         "one with sdk.compile_generation_model")
    enc = _merge_lookup(bundle, "encoder") if "encoder" in names else None
    dec = _merge_lookup(bundle, "decoder_step")
    if "positions" in dec.inputs and "pos" in dec.inputs:
        shape = dec.tensor("positions").shape
        dec.add_constant("positions_shape", np.asarray(shape, np.int64))
        dec.nodes.insert(0, Node("Reshape", ["pos", "positions_shape"], ["positions"], {},
                                 name="positions_from_pos"))
        dec.inputs.remove("positions")
    quant = {}
    held = []
    for n in [n for n in dec.nodes if n.op == "QuantizeLinear" and n.inputs[0] in dec.inputs]:
        x, q = n.inputs[0], n.outputs[0]
        quant[x] = (q, dict(n.attrs))
        dec.nodes.remove(n)
        dec.inputs[dec.inputs.index(x)] = q
        del dec.tensors[x]
        held.append(q)
    if "enc_mask" in dec.inputs:
        held.append("enc_mask")
    prep, k_t = None, []
    if hoist:
        k_t = _transpose_k_caches(dec)
        prep = _hoist_held_layout(dec, [h for h in held if h != "enc_mask"])
        if prep is not None:
            used = {i for n in dec.nodes for i in n.inputs}
            gone = [h for h in prep.inputs if h not in used]
            dec.inputs = [i for i in dec.inputs if i not in gone]
            held = [h for h in held if h not in gone] + list(prep.outputs)
    dec.validate()
    return DeviceGraphs(infer_shapes(enc) if enc is not None else None, infer_shapes(dec), held,
                        quant, prep, k_t)


_LAYOUT = ("Concat", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Identity")


def _transpose_k_caches(dec: Any) -> list[str]:
    """Hold each self-attention K cache transposed, ``[B, H, D, C]``, where the step graph
    reads it only as ``Transpose(Concat([k'] * r, axis=1), perm=[0, 1, 3, 2])`` (the scores'
    ``Kᵀ`` with the heads repeated for grouped-query attention): the new row is written as a
    column (``KVCacheWrite`` on axis 3) and the per-token transpose of the whole cache is gone.
    Moves bytes only, so the logits keep every bit. Returns the caches it changed (in place)."""
    from sdk.graph import Node

    changed = []
    cons = dec.consumers()
    for w in [n for n in dec.nodes if n.op == "KVCacheWrite"]:
        cache, rows, pos = w.inputs[:3]
        out = w.outputs[0]
        users = list({id(u): u for u in cons.get(out, [])}.values())
        if len(users) != 1 or users[0].op != "Concat" or int(users[0].attrs.get("axis", 0)) != 1 \
                or set(users[0].inputs) != {out}:
            continue
        cat = users[0]
        after = list({id(u): u for u in cons.get(cat.outputs[0], [])}.values())
        if len(after) != 1 or after[0].op != "Transpose" or \
                list(after[0].attrs.get("perm", [])) != [0, 1, 3, 2]:
            continue
        tr = after[0]
        rs = dec.tensor(rows).shape
        if int(w.attrs.get("axis", 2)) != 2 or rs is None or len(rs) != 4 or rs[2] != 1:
            continue  # one new row [B, H, 1, D] is a column [B, H, D, 1] in place
        b, h, c, d = dec.tensor(cache).shape
        col = dec.unique_name(f"{rows}_column")
        shape = dec.unique_name(f"{rows}_column_shape")
        dec.add_constant(shape, np.asarray([b, h, d, 1], np.int64))
        t = dec.tensor(rows)
        dec.add_tensor(type(t)(col, t.dtype, (b, h, d, 1), t.quant))
        dec.nodes.insert(dec.nodes.index(w), Node("Reshape", [rows, shape], [col], {},
                                                  name=f"{col}_view"))
        w.inputs = [cache, col, pos]
        w.attrs = {**w.attrs, "axis": 3}
        for name in (cache, out):
            old = dec.tensor(name)
            dec.tensors[name] = type(old)(name, old.dtype, (b, h, d, c), old.quant)
        old = dec.tensor(cat.outputs[0])
        dec.tensors[cat.outputs[0]] = type(old)(old.name, old.dtype, dec.tensor(tr.outputs[0]).shape,
                                                old.quant)
        for n in dec.nodes:
            n.inputs = [cat.outputs[0] if i == tr.outputs[0] else i for i in n.inputs]
        dec.outputs = [cat.outputs[0] if o == tr.outputs[0] else o for o in dec.outputs]
        dec.nodes.remove(tr)
        del dec.tensors[tr.outputs[0]]
        changed.append(cache)
    return changed


def _hoist_held_layout(dec: Any, held: list[str]) -> Any:
    """Move the layout ops that depend only on per-input tensors (``held``: the cross K/V,
    after their QuantizeLinear) out of the step graph, in place: e.g. the cross keys' head
    repeat and transpose, the same at every token. Returns the graph of those ops (inputs
    ``held``, outputs what the step graph now takes in their place), or None if none."""
    from sdk.graph import Graph

    have = set(held)
    moved = []
    for n in dec.topological_order():
        if n.op in _LAYOUT and all(i in have or dec.tensor(i).is_constant
                                   for i in n.inputs if i):
            moved.append(n)
            have.update(n.outputs)
    if not moved:
        return None
    gone = {id(n) for n in moved}
    rest = [n for n in dec.nodes if id(n) not in gone]
    used = {i for n in rest for i in n.inputs} | set(dec.outputs)
    frontier = [t for n in moved for t in n.outputs if t in used]
    prep = Graph(f"{dec.name}_held")
    for t in list(held) + [i for n in moved for i in n.inputs + n.outputs if i]:
        if t not in prep.tensors:
            prep.add_tensor(dec.tensor(t))
    prep.nodes = list(moved)
    prep.inputs = list(held)
    prep.outputs = frontier
    dec.nodes = rest
    dec.inputs = dec.inputs + frontier
    return prep


def decoder_state(graphs: DeviceGraphs) -> list[tuple[str, str]]:
    """State pairs of the device decoder: the KV caches (written each step) and the per-input
    tensors held on the device (cross K/V, encoder mask: in = out, never rewritten)."""
    pairs = [(d.input, d.output) for d in graphs.decoder.state]
    if not pairs:
        raise GraphError("the decoder step declares no KV cache state")
    return pairs + [(h, h) for h in graphs.held]


@dataclass
class DeviceImages:
    """The two packed images and what the host needs to drive them."""

    encoder: PackedImage | None          # None: a decoder-only model
    decoder: PackedImage
    graphs: DeviceGraphs

    @property
    def sizes(self) -> dict[str, int]:
        """Flash image bytes, weight bytes and arena bytes of each image."""
        from firmware_bridge.image import read_header

        out = {}
        for k, p in (("encoder", self.encoder), ("decoder", self.decoder)):
            if p is None:
                continue
            out[f"{k}_image"] = len(p.data)
            out[f"{k}_weights"] = int(read_header(p.data)["weights_bytes"])
            out[f"{k}_arena"] = int(p.arena_bytes)
        return out


def pack_generation(bundle: Any, packed_kernels: bool = True, hoist: bool = True
                    ) -> DeviceImages:
    """Pack a generation bundle's encoder (encoder-decoder) and decoder step for the firmware."""
    g = device_graphs(bundle, hoist)
    penc = pack_image(g.encoder, state=[], packed_kernels=packed_kernels) \
        if g.encoder is not None else None
    pdec = pack_image(g.decoder, state=decoder_state(g), packed_kernels=packed_kernels)
    missing = [io.name for io in (penc.outputs if penc else [])
               if io.name not in g.quant or io.quantize is None]
    if missing:
        raise GraphError(f"encoder outputs {missing} have no quantization boundary on both "
                         "sides; cannot move them between the images")
    return DeviceImages(penc, pdec, g)


@dataclass
class _DeviceState:
    position: int = 0


class DeviceGenerationSession(GenerationSession):
    """:class:`sdk.GenerationSession` with the encoder and the KV-cached decoder step on a
    device running the edge firmware (QEMU ``mps2-an386``, a board, or the host build); a
    decoder-only bundle with its prompt fed through the step token by token.

    ``DeviceGenerationSession("samples/slm/encdec.edge", client).generate(ids)``: the same
    :class:`GenerationConfig` (greedy, sampling, stop tokens, ``max_new_tokens``, ``stream``);
    ``last_logits`` holds every step's integer logits of the last input, ``ticks`` the device
    ticks of each invocation (``"encoder"`` and one per decoder step).
    """

    def __init__(self, model: Any, client: DeviceClient, packed_kernels: bool = True,
                 load: bool = True) -> None:
        from sdk.compile import Bundle, load_bundle
        from sdk.text import BOS, EOS, SEP

        bundle = model if isinstance(model, Bundle) else load_bundle(model)
        self.bundle = bundle
        meta = bundle.entry("decoder_step").metadata.get("slm") \
            if "decoder_step" in bundle.entry_names else None
        info = json.loads(meta) if isinstance(meta, str) else dict(meta or {})
        self.meta = info
        self.kind = "encdec" if "encoder" in bundle.entry_names else "deconly"
        cfg = info.get("config", {})
        self.images = pack_generation(bundle, packed_kernels)
        self.client = client
        self.encoder = self.prefill = None
        decls = self.images.graphs.decoder.state
        self.capacity = int(decls[0].capacity) if decls else int(cfg.get("capacity", 0))
        self.max_src = int(self.images.encoder.inputs[0].shape[-1]) \
            if self.images.encoder is not None else self.capacity
        self.vocab = int(cfg.get("vocab", 0))
        self.bos, self.eos, self.sep = BOS, EOS, SEP
        out = self.images.decoder.outputs[0]
        q = out.quantize or {}
        self._logit_scale = float(np.asarray(q.get("scale", 1.0)))
        self._logit_zp = int(np.asarray(q.get("zero_point", 0)))
        self._logits_io = out
        self.slots: dict[str, int] = {}
        self.ticks: dict[str, Any] = {"encoder": 0, "prompt_steps": 0, "steps": []}
        self.last_logits: list[np.ndarray] = []
        self._active = ""
        if load:
            self.load()

    # -- device ------------------------------------------------------------------------
    def load(self) -> dict[str, int]:
        """Put the images (encoder-decoder: both, one per slot) into the device's slots
        unless they are there already (matched by CRC32); returns slot per image."""
        c = self.client
        want = {k: p for k, p in (("encoder", self.images.encoder),
                                  ("decoder", self.images.decoder)) if p is not None}
        info = c.hello()
        for k, p in want.items():
            if len(p.data) > info.slot_size:
                raise DeviceError(f"the {k} image needs {len(p.data)} bytes; the device's slot "
                                  f"holds {info.slot_size}")
            if p.arena_bytes > info.arena_size:
                raise DeviceError(f"the {k} needs {p.arena_bytes} bytes of arena; the device "
                                  f"has {info.arena_size}")
        slots = {}
        for k, p in want.items():
            for s in (0, 1):
                if info.slot_valid[s] and info.slot_crc[s] == p.crc32:
                    slots[k] = s
        if len(want) == 1:  # decoder-only: one image
            self.slots = slots or {"decoder": c.load_image(want["decoder"].data)}
            return self.slots
        if len(slots) == 2 and slots["encoder"] != slots["decoder"]:
            self.slots = slots
            return slots
        if len(slots) == 1:  # keep that one, write the other into the other slot
            have, s = next(iter(slots.items()))
            other = "decoder" if have == "encoder" else "encoder"
            if c.hello().active_slot == 1 - s:
                c.select(s)
            slots[other] = c.load_image(want[other].data, slot=1 - s)
        else:
            slots = {"encoder": c.load_image(want["encoder"].data)}
            slots["decoder"] = c.load_image(want["decoder"].data)
        if slots["encoder"] == slots["decoder"]:
            raise DeviceError("the encoder and decoder images did not land in two slots")
        self.slots = slots
        self._active = "decoder"
        return slots

    def _select(self, which: str) -> None:
        self.client.select(self.slots[which])
        self._active = which

    def _invoke(self) -> int:
        return self.client.invoke()

    # -- GenerationSession hooks ---------------------------------------------------------
    def encode(self, ids: Any) -> dict[str, np.ndarray]:
        """Run the encoder on the device; returns the decoder's held tensors: the cross K/V
        put on the decoder's grid as the host session does, the mask, and what the hoisted
        layout ops make of them."""
        from sdk.kernels.quantize import dequantize_linear, quantize_linear
        from sdk.ops.interpreter import run_graph

        x, m = self.encoder_inputs(ids, np.int32)
        p = self.images.encoder
        self._select("encoder")
        feeds = {"input_ids": x, "attention_mask": m}
        for k, io in enumerate(p.inputs):
            self.client.set_input(k, np.ascontiguousarray(feeds[io.name].reshape(io.shape))
                                  .astype(io.dtype).tobytes())
        self.ticks = {"encoder": self._invoke(), "prompt_steps": 0, "steps": []}
        g = self.images.graphs
        held = {"enc_mask": m}
        for k, io in enumerate(p.outputs):
            q = np.frombuffer(self.client.get_output(k, io.nbytes), io.dtype).reshape(io.shape)
            deq = io.quantize
            f = dequantize_linear(q, deq.get("scale"), deq.get("zero_point", 0), deq.get("axis"))
            name, qin = g.quant[io.name]
            held[name] = quantize_linear(f, qin.get("scale"), qin.get("zero_point", 0),
                                         qin.get("dtype", "int8"), qin.get("axis"))
        if g.prep is not None:  # moves bytes only (head repeat, transpose): NumPy reference
            held.update(run_graph(g.prep, {k: held[k] for k in g.prep.inputs}, fast=False))
        return held

    def start(self, ids: Any) -> tuple[dict, Any, np.ndarray]:
        if self.kind == "deconly":
            return self._prompt(ids)
        held = self.encode(ids)
        self._select("decoder")  # opening the image resets its state (the KV caches)
        names = set(self.images.graphs.held)
        for k, (s, _) in enumerate(self.images.decoder.state):
            if s.name in names:
                v = np.ascontiguousarray(held[s.name], dtype=s.dtype).reshape(s.shape)
                self.client.set_state(k, v.tobytes())
        state = _DeviceState()
        self.last_logits = []
        return held, state, self._decode(held, [self.bos], state)

    def _prompt(self, ids: Any) -> tuple[dict, Any, np.ndarray]:
        """Decoder-only: the prompt (``ids`` + separator) goes through the decoder step one
        token at a time, each written into the device's KV caches (its ``prefill`` entry has a
        run-time length; the device image has static shapes)."""
        ids = list(ids)
        if not ids:
            raise InputError("empty input: give at least one token")
        prompt = ids + [self.sep]
        if len(prompt) >= self.capacity:
            raise InputError(f"input has {len(ids)} tokens; with <sep> and one output token "
                             f"it needs {len(prompt) + 1} of the {self.capacity} KV cache rows "
                             "(recompile with a larger capacity)")
        self._select("decoder")  # opening the image resets its state (the KV caches)
        self.ticks = {"encoder": 0, "prompt_steps": len(prompt), "steps": []}
        self.last_logits = []
        state = _DeviceState()
        for t in prompt:
            logits = self._decode({}, [t], state)
        return {}, state, logits

    def _decode(self, feeds: Any, tokens: Any, state: Any) -> np.ndarray:
        if len(tokens) != 1:
            raise InputError("the encoder-decoder step takes one token per call")
        p = state.position
        if p + 1 > self.capacity:
            raise InputError(f"the KV cache holds {self.capacity} tokens; writing 1 more at "
                             f"position {p} would pass it (recompile with a larger capacity)")
        if self._active != "decoder":
            raise DeviceError("the device runs another image: start() the input again")
        dec = self.images.decoder
        values = {"tokens": int(tokens[0]), "pos": p}
        for k, io in enumerate(dec.inputs):
            if io.name not in values:
                raise GraphError(f"the device decoder takes an input {io.name!r} the host does "
                                 "not know")
            self.client.set_input(k, np.full(io.shape, values[io.name], io.dtype).tobytes())
        self.ticks["steps"].append(self._invoke())
        io = self._logits_io
        lg = np.frombuffer(self.client.get_output(0, io.nbytes), io.dtype).reshape(io.shape)
        state.position = p + 1
        row = lg.reshape(-1, lg.shape[-1])[-1].copy()
        self.last_logits.append(row)
        return row

    def kv_cache(self) -> dict[str, np.ndarray]:
        """The device's self-attention KV caches now (GET_STATE), in the host's layout
        ``[B, H, C, D]`` (a K cache held transposed on the device is transposed back)."""
        out = {}
        for k, (s, o) in enumerate(self.images.decoder.state):
            if s.name != o.name:
                v = np.frombuffer(self.client.get_state(k, s.nbytes), s.dtype).reshape(s.shape)
                if s.name in self.images.graphs.k_transposed:
                    v = np.swapaxes(v, 2, 3)
                out[s.name] = np.ascontiguousarray(v)
        return out

    def generate(self, ids: Any, config: GenerationConfig | None = None) -> Any:
        config = config or GenerationConfig()
        if config.strategy == "beam" and config.num_beams > 1:
            raise InputError("beam search on the device needs one KV cache per beam; use "
                             "--strategy greedy or sample with the device")
        return super().generate(ids, config)

    def full_logits(self, ids: Any, prefix: Any) -> np.ndarray:
        raise InputError("full-prefix logits run on the host: use sdk.GenerationSession")


__all__ = ["DeviceGenerationSession", "DeviceImages", "decoder_state", "device_graphs",
           "pack_generation"]


def program_flash_file(flash_path: Any, images: DeviceImages) -> None:
    """Write the images into a firmware flash file the way a debug probe programs a board:
    the host build of the same firmware (same flash layout, boot records and CRC checks)
    loads them over its pty into ``flash_path``, which an emulated board (``QemuFirmware(
    flash_path)``) then boots with both slots filled. The emulated UART of ``mps2-an386``
    moves ~10 KB/s (a megabyte of images: minutes); the pty, a few MB/s."""
    from firmware_bridge.host_firmware import HostFirmware
    from firmware_bridge.qemu import PSRAM_BYTES

    with HostFirmware(flash_path, flash_bytes=4 << 20) as fw:
        client = DeviceClient(fw.url, timeout=1.0)
        try:
            for p in (images.encoder, images.decoder):
                if p is not None:
                    client.load_image(p.data)
        finally:
            client.close()
    with open(flash_path, "ab") as f:  # the emulator's PSRAM file: flash is its first 4 MiB
        f.truncate(PSRAM_BYTES)
