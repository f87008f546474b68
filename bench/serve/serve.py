"""Trace-driven serving benchmark: one Llama-architecture model (Llama-3-8B
layer shapes, random bf16 weights) serves a request trace with continuous
batching, admission and preemption by memory, its K/V cache in one of the
layouts below, every layout given the same K/V memory budget.

  static        one [slots, max_ctx] K/V per layer; slots = budget / max_ctx
  paged16/256   FlexAttention paged: a block pool with block tables, the
                block masks' KV block size equal to the page size
  vattn<P>-flex the same FlexAttention kernel over vattn's contiguous
                per-slot K/V with a length mask (P: 2m or 64k pages)
  vattn<P>-fa   an unmodified dense kernel: flash attention (varlen, one
                query per request, each request's K/V a contiguous run of
                its slot, seqused_k its length), what vAttention serves with
  ...-mega      megacache ([slot, token, layer, head, dim]); -ahead adds
                map_ahead and grow_margin (growth off the critical path)
  static-fa     static with the flash kernel

FlexAttention is a Triton kernel, and Triton's and Inductor's launchers
check every tensor argument with cuPointerGetAttribute, which does not
know memory that nvidia-uvm mapped: 64 KiB pages (the stock driver path)
take the flash kernel (CUDA C++), as they take every non-Triton kernel.

Decode attention is one kernel call per layer per step (FlexAttention is
compiled once per shape, the compile time reported as warm-up); decode
input tokens are a fixed function of (request, position), so every layout
computes the same attention whatever its batching; prefill attention
is SDPA over each prompt's own fresh K/V (no prefix caching: the cache is
only written), the same in every layout. Requests arrive all at once
(offline) or as a Poisson process; the scheduler admits FCFS while the
prompt fits in the free memory units of the layout (a block, a page index,
a static slot), and when a decode step would not fit it preempts the
youngest request, which is recomputed later (vLLM's recompute policy).

Reported per layout and workload: output tokens/s, TTFT and TPOT p50/p99,
requests running at once, preemptions, K/V memory in use and held over
time, the memory system's time on the critical path (block tables or
vattn's step calls), the warm-up (compile) time, and the last layer's
attention outputs of a few requests against static's.

    python3 bench/serve/serve.py --trace arxiv.csv --out serve.json
    python3 bench/serve/serve.py --smoke --trace arxiv.csv --out smoke.json
"""

import argparse
import collections
import json
import os
import random
import sys
import time
import traceback

import torch
import torch._dynamo
import torch.nn.functional as F

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, "..", "..", "python"))

# The model and the trace reader are the end-to-end benchmark's.
sys.path.insert(0, os.path.join(_here, "..", "e2e"))
import e2e  # noqa: E402
from e2e import HEADS, HEAD_DIM, HIDDEN, FFN, KV_HEADS, VOCAB, kv_bytes_per_token, load_trace, pct  # noqa: E402

Q_BLOCK = 128  # FlexAttention's Q block size: one row for a decode query
LEN_BLOCK = 256  # KV block size of the length-masked layouts (paged256's)


def cdiv(a, b):
    return -(-a // b)


class Model(e2e.Model):
    """e2e's model (Llama-3-8B layer shapes, random weights), its attention
    batched: one decode call per layer per step."""

    def __init__(self, layers, dev, seed, max_ctx):
        super().__init__(layers, dev, seed)
        if max_ctx > self.cos.shape[0]:  # rotary tables long enough for every position
            inv = 1.0 / (500000.0 ** (torch.arange(0, HEAD_DIM, 2, device=dev).float() / HEAD_DIM))
            f = torch.outer(torch.arange(max_ctx, device=dev).float(), inv)
            self.cos, self.sin = f.cos().to(torch.bfloat16), f.sin().to(torch.bfloat16)

    def forward(self, b, store, record=None):
        """One engine step over batch b (prefill tokens first, then one
        token per decoding request). Returns the next token of every
        request, prefills first."""
        x = self.embed[b.toks]
        for l in range(self.layers):
            h = F.rms_norm(x, (HIDDEN,))
            qkv = h @ self.wqkv[l]
            q = qkv[:, : HEADS * HEAD_DIM].view(-1, HEADS, HEAD_DIM)
            k = qkv[:, HEADS * HEAD_DIM: (HEADS + KV_HEADS) * HEAD_DIM].view(-1, KV_HEADS, HEAD_DIM)
            v = qkv[:, (HEADS + KV_HEADS) * HEAD_DIM:].view(-1, KV_HEADS, HEAD_DIM)
            q, k = self.rope(q, b.pos), self.rope(k, b.pos)
            store.write(l, k, v)
            o = torch.empty_like(q)
            for (off, n) in b.prefills:  # the prompt's own K/V: nothing read from the cache
                qq, kk, vv = (t[off: off + n].transpose(0, 1)[None] for t in (q, k, v))
                o[off: off + n] = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)[0].transpose(0, 1)
            if b.n_dec:
                o[b.dec_off:] = store.attend(l, q[b.dec_off:])
            if record is not None and l == self.layers - 1:
                record(o)
            x = x + o.reshape(-1, HEADS * HEAD_DIM) @ self.wo[l]
            h = F.rms_norm(x, (HIDDEN,))
            gu = h @ self.w13[l]
            x = x + (F.silu(gu[:, :FFN]) * gu[:, FFN:]) @ self.w2[l]
        return (F.rms_norm(x[b.last], (HIDDEN,)) @ self.lm).argmax(-1)


_FLEX = None


def flex():
    """flex_attention compiled once per process (per shape by Inductor)."""
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention
        _FLEX = torch.compile(flex_attention, dynamic=False)
    return _FLEX


def block_mask(kv_num, kv_idx, full_num, full_idx, kv_block, mask_mod, kv_len):
    from torch.nn.attention.flex_attention import BlockMask
    B = kv_num.shape[0]
    args = (kv_num.view(B, 1, 1), kv_idx.view(B, 1, 1, -1), full_num.view(B, 1, 1), full_idx.view(B, 1, 1, -1))
    kw = dict(BLOCK_SIZE=(Q_BLOCK, kv_block), mask_mod=mask_mod, seq_lengths=(1, kv_len))
    try:
        return BlockMask.from_kv_blocks(*args, compute_q_blocks=False, **kw)
    except TypeError:  # a PyTorch without compute_q_blocks
        return BlockMask.from_kv_blocks(*args, **kw)


class Decoder:
    """Batched decode attention with FlexAttention: one query row per slot
    (rows of idle slots have no KV blocks), GQA, one call per layer."""

    def __init__(self, slots, dev):
        self.q = torch.zeros(slots, HEADS, 1, HEAD_DIM, dtype=torch.bfloat16, device=dev)
        self.bm = None
        self.dec = None

    def attend(self, k, v, q):
        self.q.index_copy_(0, self.dec, q.unsqueeze(2))
        o = flex()(self.q, k, v, block_mask=self.bm, enable_gqa=True)
        return o.index_select(0, self.dec).squeeze(2)


class Batch:
    """One step's tokens: prefill prompts first, then the decoders'."""

    def __init__(self, dev, toks, pos, prefills, n_dec, last, wslots):
        self.toks = toks
        self.pos = pos
        self.prefills = prefills  # (offset, count) per prompt
        self.n_dec = n_dec
        self.dec_off = toks.numel() - n_dec
        self.last = last  # token index of every request's next-token logits
        self.wslots = wslots  # GPU slot of every token


class Store:
    """A K/V layout. unit: tokens per allocation unit (a block, a page
    index, a static slot); units: how many the budget holds; slots: requests
    at most at once. reserve() runs the layout's memory work for the step
    (vattn's step calls, block tables) and is what is timed as the memory
    system's critical path."""

    kind = "?"

    def units_for(self, tokens):
        return cdiv(tokens, self.unit)

    def used_bytes(self):
        raise NotImplementedError

    def held_bytes(self):
        raise NotImplementedError

    def mark(self):
        """Start of the measured run."""

    def stats(self):
        return {}

    def close(self):
        pass


class Contiguous(Store):
    """static and vattn: per-layer [slots, T, heads, dim] K/V (views of
    vattn's megacache where it is one), read through a length mask."""

    def __init__(self, ks, vs, slots, T, dev, attn="flex", kv_block=LEN_BLOCK):
        self.ks, self.vs, self.slots, self.T = ks, vs, slots, T
        self.attn = attn
        self.kv_block = kv_block
        if attn == "fa":  # each layer's K/V as [slots*T, heads, dim] rows for the varlen kernel
            self.kflat = [flat(t) for t in ks]
            self.vflat = [flat(t) for t in vs]
        self.dev = dev
        self.dec = Decoder(slots, dev)
        self.lens = torch.zeros(slots, dtype=torch.int32, device=dev)
        self.nblk = T // kv_block
        self.ar = torch.arange(self.nblk, dtype=torch.int32, device=dev)
        self.full_idx = self.ar.expand(slots, self.nblk).contiguous()
        lens = self.lens

        def length_mask(b, h, q_idx, kv_idx):
            return kv_idx < lens[b]

        self.mask = length_mask

    def begin(self, b, wpos, dec_slots, dec_lens):
        """Index tensors for the step's writes and its decode block mask."""
        self.wslots, self.wpos = b.wslots, wpos
        if not b.n_dec:
            return
        if self.attn == "fa":
            # Request i's keys start at row slot_i*T; dec_slots is ascending.
            n = dec_slots.numel()
            cu_k = torch.empty(n + 1, dtype=torch.int32)
            cu_k[:n] = dec_slots * self.T
            cu_k[n] = cu_k[n - 1] + self.T
            self.cu_k = cu_k.to(self.dev, non_blocking=True)
            self.cu_q = torch.arange(n + 1, dtype=torch.int32, device=self.dev)
            self.used_k = dec_lens.to(torch.int32).to(self.dev, non_blocking=True)
            self.max_k = int(dec_lens.max())
            return
        ds, dl = dec_slots.to(self.dev, non_blocking=True), dec_lens.to(self.dev, non_blocking=True)
        self.dec.dec = ds
        self.lens.zero_()
        self.lens.index_copy_(0, ds, dl.to(torch.int32))
        full = self.lens // self.kv_block
        part = (self.lens % self.kv_block > 0).to(torch.int32)
        kv_idx = (full[:, None] + self.ar[None, :]).clamp_(max=self.nblk - 1).to(torch.int32)
        self.dec.bm = block_mask(part, kv_idx, full.to(torch.int32), self.full_idx, self.kv_block, self.mask, self.T)

    def write(self, l, k, v):
        # Scattered writes (a kernel, not cudaMemcpy: CUDA's copy functions
        # refuse memory nvidia-uvm mapped, which the 64 KiB layouts use).
        self.ks[l].index_put_((self.wslots, self.wpos), k)
        self.vs[l].index_put_((self.wslots, self.wpos), v)

    def attend(self, l, q):
        if self.attn == "fa":
            return torch.ops.aten._flash_attention_forward(
                q, self.kflat[l], self.vflat[l], self.cu_q, self.cu_k, 1, self.max_k, 0.0, False, False,
                seqused_k=self.used_k)[0]
        return self.dec.attend(self.ks[l].permute(0, 2, 1, 3), self.vs[l].permute(0, 2, 1, 3), q)


def flat(t):
    """[slots, T, heads, dim] (any slot and token strides, the slot stride
    T token strides, as vattn's layouts are) as [slots*T, heads, dim]."""
    B, T, H, D = t.shape
    assert t.stride(0) == T * t.stride(1) and t.stride(3) == 1
    return t.as_strided((B * T, H, D), (t.stride(1), t.stride(2), 1))


class Static(Contiguous):
    kind = "static"

    def __init__(self, layers, budget, max_ctx, max_slots, dev, attn):
        slots = min(max_slots, budget // (max_ctx * kv_bytes_per_token(layers)))
        if slots < 1:
            raise ValueError("the K/V budget holds no max-context slot")
        ks = [torch.zeros(slots, max_ctx, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(layers)]
        vs = [torch.zeros_like(t) for t in ks]
        super().__init__(ks, vs, slots, max_ctx, dev, attn)
        self.unit, self.units = max_ctx, slots
        self.free_slots = list(range(slots))[::-1]
        self.bytes = sum(t.numel() * t.element_size() for t in ks + vs)
        self.active = 0
        self.per_slot = self.bytes // slots

    def alloc(self, n):
        self.active += 1
        return self.free_slots.pop()

    def free(self, s):
        self.active -= 1
        self.free_slots.append(s)

    def reserve(self, lens):
        pass

    def used_bytes(self):
        return self.active * self.per_slot

    def held_bytes(self):
        return self.bytes


class Vattn(Contiguous):
    def __init__(self, layers, budget, max_ctx, max_slots, dev, page, megacache, attn, mode, map_ahead, grow_margin):
        import vattn
        self.kind = "vattn"
        self.cache = c = vattn.KVCache(layers, KV_HEADS, HEAD_DIM, max_slots, max_ctx, dev.index or 0, torch.bfloat16, page,
                                       megacache=megacache, backend="auto", map_ahead=map_ahead, grow_margin=grow_margin)
        try:
            c.reserve_physical_pages(budget)
            lay = c.layout
            self.page = lay["page_size"]
            self.unit = lay["tokens_per_page"]
            # FlexAttention loads whole KV blocks (the mask hides what is
            # past a request's length): a block must not reach past the
            # request's last mapped page, so it divides a page's tokens.
            kv_block = LEN_BLOCK
            while self.unit % kv_block:
                kv_block //= 2
            if attn == "flex" and kv_block < 16:
                raise ValueError("%d tokens per page: FlexAttention's KV blocks (at least 16 tokens) would read "
                                 "past a request's last page; take the flash kernel (-fa)" % self.unit)
            t = c.tensors(per_layer=True)
            super().__init__(t[:layers], t[layers:], max_slots, max_ctx, dev, attn, kv_block)
            self.units = c.stats()["reserved_pages"] // lay["pages_per_index"]
            self.fn = c.step if mode == "sync" else c.step_async
            self.base = {}
        except Exception:
            c.cleanup()
            raise

    def alloc(self, n):
        return self.cache.alloc_new_batch_idx(n)

    def free(self, s):
        self.cache.free_batch_idx(s)

    def reserve(self, lens):
        self.fn(lens)

    def used_bytes(self):
        return self.cache.stats()["mapped_bytes"]

    def held_bytes(self):
        return self.cache.stats()["reserved_pages"] * self.page

    COUNTERS = ("fg_map_calls", "fg_map_pages", "fg_map_seconds", "bg_map_calls", "bg_map_pages", "bg_map_seconds",
                "fg_unmap_calls", "reclaimed_pages", "background_errors", "inconsistencies")

    def mark(self):
        self.cache.wait()
        s = self.cache.stats()
        self.base = {k: s[k] for k in self.COUNTERS}

    def stats(self):
        """The run's counters (the warm-up's taken off)."""
        self.cache.wait()
        s = self.cache.stats()
        out = {k: s[k] - self.base.get(k, 0) for k in self.COUNTERS}
        out["reserved_pages"] = s["reserved_pages"]
        return out

    def close(self):
        # Nothing may point into the address range once it is gone.
        self.ks = self.vs = self.kflat = self.vflat = None
        self.dec.bm = None
        self.cache.cleanup()


class Paged(Store):
    """FlexAttention paged attention: a pool [1, heads, blocks*bs, dim] per
    layer, block tables per slot (kept on the CPU, copied to the GPU when
    they change), physical block masks with KV block size bs, and a mask
    that bounds each request's last, partial block."""

    kind = "paged"

    def __init__(self, layers, budget, max_ctx, max_slots, dev, bs):
        self.bs, self.unit = bs, bs
        self.units = budget // (bs * kv_bytes_per_token(layers))
        R = self.units * bs
        self.k = [torch.zeros(1, KV_HEADS, R, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.bytes = sum(t.numel() * t.element_size() for t in self.k + self.v)
        self.block_bytes = self.bytes // self.units
        self.slots, self.R, self.dev = max_slots, R, dev
        self.maxp = cdiv(max_ctx, bs)
        self.free_blocks = list(range(self.units))[::-1]
        self.tables = [[] for _ in range(max_slots)]
        self.free_slots = list(range(max_slots))[::-1]
        self.table_cpu = torch.zeros(max_slots, self.maxp, dtype=torch.int32).pin_memory()
        self.table = torch.zeros(max_slots, self.maxp, dtype=torch.int32, device=dev)
        self.dirty = False
        self.fill = torch.zeros(self.units, dtype=torch.int32, device=dev)  # valid tokens of each block
        self.lens = torch.zeros(max_slots, dtype=torch.int32, device=dev)
        self.ar = torch.arange(self.maxp, dtype=torch.int32, device=dev)
        self.dec = Decoder(max_slots, dev)
        fill = self.fill

        def last_block_mask(b, h, q_idx, kv_idx):
            return (kv_idx % bs) < fill[kv_idx // bs]

        self.mask = last_block_mask

    def alloc(self, n):
        return self.free_slots.pop()

    def free(self, s):
        self.free_blocks.extend(reversed(self.tables[s]))
        self.tables[s] = []
        self.free_slots.append(s)

    def reserve(self, lens):
        for s, n in enumerate(lens):
            t = self.tables[s]
            need = cdiv(n, self.bs)
            if len(t) < need:
                if len(self.free_blocks) < need - len(t):
                    raise RuntimeError("paged pool exhausted (the scheduler's accounting is wrong)")
                while len(t) < need:
                    b = self.free_blocks.pop()
                    self.table_cpu[s, len(t)] = b
                    t.append(b)
                self.dirty = True
        if self.dirty:
            self.table.copy_(self.table_cpu, non_blocking=True)
            self.dirty = False

    def begin(self, b, wpos, dec_slots, dec_lens):
        ws = b.wslots
        self.rows = self.table[ws, wpos // self.bs].long() * self.bs + wpos % self.bs
        if not b.n_dec:
            return
        ds, dl = dec_slots.to(self.dev, non_blocking=True), dec_lens.to(self.dev, non_blocking=True).to(torch.int32)
        self.dec.dec = ds
        last = (dl - 1) // self.bs
        self.fill.index_copy_(0, self.table[ds, last].long(), (dl - 1) % self.bs + 1)
        self.lens.zero_()
        self.lens.index_copy_(0, ds, dl)
        full = self.lens // self.bs
        part = (self.lens % self.bs > 0).to(torch.int32)
        pos = (full[:, None] + self.ar[None, :]).clamp_(max=self.maxp - 1).long()
        kv_idx = torch.gather(self.table, 1, pos)
        self.dec.bm = block_mask(part, kv_idx, full.to(torch.int32), self.table, self.bs, self.mask, self.R)

    def write(self, l, k, v):
        self.k[l][0][:, self.rows] = k.transpose(0, 1)
        self.v[l][0][:, self.rows] = v.transpose(0, 1)

    def attend(self, l, q):
        return self.dec.attend(self.k[l], self.v[l], q)

    def used_bytes(self):
        return (self.units - len(self.free_blocks)) * self.block_bytes

    def held_bytes(self):
        return self.bytes


def make_store(cfg, args, dev):
    """A layout by name: static[-fa], paged<bs>, vattn<2m|64k>[-mega]-<flex|fa>[-ahead][-sync]."""
    L, budget, T, B = args.layers, int(args.kv_budget_gib * (1 << 30)), args.max_ctx, args.max_slots
    if cfg in ("static", "static-fa"):
        return Static(L, budget, T, B, dev, "fa" if cfg == "static-fa" else "flex")
    if cfg.startswith("paged"):
        return Paged(L, budget, T, B, dev, int(cfg[5:]))
    if cfg.startswith("vattn"):
        parts = cfg.split("-")
        page = parts[0][len("vattn"):] or "2m"
        opts = set(parts[1:])
        ahead = "ahead" in opts
        if ("fa" in opts) == ("flex" in opts):
            raise ValueError("configuration %r: name one kernel, -flex or -fa" % cfg)
        return Vattn(L, budget, T, B, dev, page, megacache="mega" in opts, attn="fa" if "fa" in opts else "flex",
                     mode="sync" if "sync" in opts else "async",
                     map_ahead=args.map_ahead if ahead else 0, grow_margin=args.grow_margin if ahead else 0)
    raise ValueError("unknown configuration %r" % cfg)


class Req:
    __slots__ = ("rid", "p", "d", "arrival", "g", "slot", "len", "t_first", "t_last", "admitted", "preempted")

    def __init__(self, rid, p, d, arrival):
        self.rid, self.p, self.d, self.arrival = rid, p, d, arrival
        self.g = 0  # output tokens so far
        self.slot = None
        self.len = 0  # tokens in the cache
        self.t_first = self.t_last = None
        self.admitted = 0
        self.preempted = 0


def serve(store, model, trace, arrivals, args, dev, live):
    """Run the trace through the engine; returns the run's figures and the
    recorded attention outputs (request id, output index) -> tensor."""
    reqs = [Req(i, p, d, a) for i, ((p, d), a) in enumerate(zip(trace, arrivals))]
    waiting = collections.deque(reqs)
    running = []  # admission order: the youngest is last
    lens = [0] * store.slots
    gen = torch.Generator(device=dev)
    # Recorded: the first requests (fresh slots) and the last ones (slots,
    # pages and blocks reused), their first outputs and every
    # record_every-th (positions across page and block boundaries).
    # A request preempted and recomputed is recorded too: its prompt and
    # decode inputs come back in order, so its outputs are static's (static
    # never preempts), and every layout records the same outputs.
    n = len(reqs)
    rec, redo, want = {}, set(), set(range(min(args.record, n))) | set(range(max(0, n - args.record), n))
    store.mark()
    peak = 0
    st = dict(preemptions=0, steps=0, prefill_tokens=0, decode_tokens=0, mm=[], running=[], mem=[])
    live["st"] = st
    used_units = 0
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    while waiting or running:
        now = time.perf_counter() - t0
        if not running and waiting and waiting[0].arrival > now:
            time.sleep(waiting[0].arrival - now)
            now = time.perf_counter() - t0
        # Decoders need one more token each; preempt the youngest until it fits.
        dec_units = sum(store.units_for(r.len + 1) for r in running)
        while running and dec_units > store.units:
            r = running.pop()
            dec_units -= store.units_for(r.len + 1)
            store.free(r.slot)
            lens[r.slot] = 0
            r.slot, r.len = None, 0
            r.preempted += 1
            st["preemptions"] += 1
            waiting.appendleft(r)
        used_units = dec_units
        decoders = sorted(running, key=lambda r: r.slot)
        new, new_tokens = [], 0
        while waiting and waiting[0].arrival <= now and len(running) + len(new) < store.slots:
            r = waiting[0]
            ctx = r.p + r.g  # a preempted request recomputes its prompt and what it generated
            need = store.units_for(ctx + 1)
            if not running and not new and need > store.units:
                raise RuntimeError("request %d (%d tokens) never fits the budget" % (r.rid, ctx))
            if used_units + need > store.units or (new and new_tokens + ctx > args.max_prefill_tokens):
                break
            waiting.popleft()
            r.slot = store.alloc(ctx)
            r.admitted += 1
            r.len = ctx
            lens[r.slot] = ctx
            used_units += need
            new_tokens += ctx
            new.append(r)
        for r in decoders:
            lens[r.slot] = r.len + 1
        if not new and not decoders:
            continue
        s = time.perf_counter()
        store.reserve(lens)
        st["mm"].append(time.perf_counter() - s)
        peak = max(peak, store.used_bytes())
        # The step's tokens: prompts (random ids), then each decoder's last token.
        parts, pos, wsl, prefills, off = [], [], [], [], 0
        for r in new:
            gen.manual_seed(args.seed * 1000003 + r.rid)  # a request's prompt is the same in every layout
            parts.append(torch.randint(0, VOCAB, (r.p,), device=dev, generator=gen))
            if r.len > r.p:  # recomputed after a preemption: the decode inputs it had, in order
                parts.append(torch.tensor([decode_token(r.rid, j) for j in range(1, r.len - r.p + 1)], device=dev))
            pos.append(torch.arange(r.len, device=dev))
            wsl.append(torch.full((r.len,), r.slot, dtype=torch.long, device=dev))
            prefills.append((off, r.len))
            off += r.len
        n_dec = len(decoders)
        if n_dec:
            ds_cpu = torch.tensor([r.slot for r in decoders], dtype=torch.long)
            dl_cpu = torch.tensor([r.len + 1 for r in decoders], dtype=torch.long)
            ds = ds_cpu.to(dev, non_blocking=True)
            parts.append(torch.tensor([decode_token(r.rid, r.g) for r in decoders], device=dev))
            pos.append((dl_cpu - 1).to(dev, non_blocking=True))
            wsl.append(ds)
        else:
            ds_cpu = dl_cpu = None
        toks, wpos, wslots = torch.cat(parts), torch.cat(pos), torch.cat(wsl)
        last = [o + n - 1 for (o, n) in prefills] + list(range(off, off + n_dec))
        b = Batch(dev, toks, wpos, prefills, n_dec, torch.tensor(last, device=dev), wslots)
        store.begin(b, wpos, ds_cpu, dl_cpu)
        outs = new + decoders
        rows = {}
        for i, r in enumerate(outs):
            if r.rid in want and (r.g < args.record_tokens or r.g % args.record_every == 0):
                rows[(r.rid, r.g)] = last[i]
                if r.preempted:
                    redo.add((r.rid, r.g))
        record = None
        if rows:
            def record(o, rows=rows):
                for key, i in rows.items():
                    rec[key] = o[i].float().cpu()
        model.forward(b, store, record)  # the next tokens are computed, then replaced by decode_token
        torch.cuda.synchronize()
        t = time.perf_counter() - t0
        st["steps"] += 1
        st["prefill_tokens"] += new_tokens
        st["decode_tokens"] += n_dec
        for r in decoders:
            r.len += 1
        for r in outs:
            r.g += 1
            if r.t_first is None:
                r.t_first = t
            r.t_last = t
        running.extend(new)
        done = [r for r in running if r.g >= r.d]
        for r in done:
            store.free(r.slot)
            lens[r.slot] = 0
            r.slot = None
        if done:
            running = [r for r in running if r.slot is not None]
        st["running"].append(len(running) + len(done))
        if st["steps"] % args.sample_every == 0 or done or new:
            st["mem"].append((round(t, 3), store.used_bytes(), store.held_bytes(), len(running)))
    wall = time.perf_counter() - t0
    out_tokens = sum(r.g for r in reqs)
    ttft = [r.t_first - r.arrival for r in reqs]
    tpot = [(r.t_last - r.t_first) / (r.g - 1) for r in reqs if r.g > 1]
    mm = st.pop("mm")
    runs = st.pop("running")
    res = dict(kind=store.kind, slots=store.slots, unit_tokens=store.unit, units=store.units, requests=len(reqs),
               wall_s=round(wall, 3), output_tokens=out_tokens, output_tok_s=round(out_tokens / wall, 1),
               ttft_p50_ms=round(1e3 * pct(ttft, .5), 1), ttft_p99_ms=round(1e3 * pct(ttft, .99), 1),
               tpot_p50_ms=round(1e3 * pct(tpot, .5), 2) if tpot else None,
               tpot_p99_ms=round(1e3 * pct(tpot, .99), 2) if tpot else None,
               running_mean=round(sum(runs) / len(runs), 1), running_max=max(runs),
               preemptions=st["preemptions"], steps=st["steps"], prefill_tokens=st["prefill_tokens"],
               decode_tokens=st["decode_tokens"],
               mm_critical_s=round(sum(mm), 4), mm_share=round(sum(mm) / wall, 4),
               mm_p50_us=round(1e6 * pct(mm, .5), 1), mm_p99_us=round(1e6 * pct(mm, .99), 1),
               mm_max_us=round(1e6 * max(mm), 1),
               peak_used_bytes=max([peak] + [m[1] for m in st["mem"]]), held_bytes=max(m[2] for m in st["mem"]),
               mem=thin(st["mem"], 400))
    res.update(store.stats())
    return res, (rec, redo)


def decode_token(rid, g):
    """The input token of request rid's decode step after g outputs."""
    return (rid * 7919 + g * 104729) % VOCAB


def thin(xs, n):
    if len(xs) <= n:
        return xs
    step = len(xs) / n
    return [xs[int(i * step)] for i in range(n)] + [xs[-1]]


def warm_up(store, model, dev):
    """One short request through the layout (prefill, then decode steps):
    compiles the layout's FlexAttention call. Returns seconds."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    s = store.alloc(64)
    lens = [0] * store.slots
    for n in (64, 65, 66):
        lens[s] = n
        store.reserve(lens)
        if n == 64:
            b = Batch(dev, torch.zeros(64, dtype=torch.long, device=dev), torch.arange(64, device=dev), [(0, 64)], 0,
                      torch.tensor([63], device=dev), torch.full((64,), s, dtype=torch.long, device=dev))
            store.begin(b, b.pos, None, None)
        else:
            b = Batch(dev, torch.zeros(1, dtype=torch.long, device=dev), torch.tensor([n - 1], device=dev), [], 1,
                      torch.tensor([0], device=dev), torch.tensor([s], device=dev))
            store.begin(b, b.pos, torch.tensor([s]), torch.tensor([n]))
        model.forward(b, store)
    torch.cuda.synchronize()
    store.free(s)
    return time.perf_counter() - t0


def poisson(n, rate, seed):
    rnd = random.Random(seed + 17)
    t, out = 0.0, []
    for _ in range(n):
        t += rnd.expovariate(rate)
        out.append(t)
    return out


def compare(results, recs, args, n):
    """Recorded attention outputs of every layout against static's (or
    static-fa's, where static did not run): all of them, and apart the
    first requests' (fresh slots), the last requests' (reused slots, pages
    and blocks), the every-record_every-th outputs past the first
    record_tokens (positions across page and block boundaries) and those
    computed after a preemption (recomputed prompt and decode inputs)."""
    name = "static" if "static" in recs else "static-fa"
    ref = recs.get(name, ({}, set()))[0]
    if not ref:
        return
    scale = max(float(t.abs().max()) for t in ref.values())
    groups = dict(first_requests=lambda k: k[0] < args.record, last_requests=lambda k: k[0] >= n - args.record,
                  every_nth=lambda k: k[1] >= args.record_tokens)
    for cfg, (rec, redo) in recs.items():
        if cfg == name or cfg not in results:
            continue
        diffs = {k: float((rec[k] - ref[k]).abs().max()) for k in ref if k in rec}
        r = results[cfg]
        r["compared_outputs"] = len(diffs)
        r["missing_outputs"] = sorted(k for k in ref if k not in rec)[:20]
        r["max_abs_diff_vs_static"] = max(diffs.values()) if diffs else None
        r["ref_scale"] = scale
        r["reference"] = name
        by = {g: [d for k, d in diffs.items() if f(k)] for g, f in groups.items()}
        by["after_recompute"] = [d for k, d in diffs.items() if k in redo]
        r["diff_by_group"] = {g: dict(outputs=len(ds), max_abs_diff=max(ds) if ds else None) for g, ds in by.items()}
        r["correct"] = bool(diffs) and len(diffs) == len(ref) and max(diffs.values()) <= args.tol * scale


def plot(out, folder):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return []
    files = []
    for wl, r in out["results"].items():
        cfgs = {c: s for c, s in r["configs"].items() if s.get("mem")}
        if not cfgs:
            continue
        fig, ax = plt.subplots(1, 3, figsize=(17, 4.2))
        for c, s in cfgs.items():
            xs = [m[0] for m in s["mem"]]
            ax[0].plot(xs, [m[1] / 2**30 for m in s["mem"]], label=c)
            ax[1].plot(xs, [m[3] for m in s["mem"]], label=c)
        ax[0].set_title("K/V memory in use (GiB), budget %.2f GiB" % out["kv_budget_gib"])
        ax[1].set_title("requests running")
        names = list(cfgs)
        ax[2].bar(range(len(names)), [cfgs[c]["output_tok_s"] for c in names])
        ax[2].set_xticks(range(len(names)))
        ax[2].set_xticklabels(names, rotation=40, ha="right", fontsize=7)
        ax[2].set_title("output tokens/s")
        for a in ax[:2]:
            a.set_xlabel("seconds")
            a.legend(fontsize=7)
        fig.suptitle("%s: %s, %d layers, %s" % (wl, out["device"], out["layers"], out["date"]), fontsize=9)
        fig.tight_layout()
        p = os.path.join(folder, "serve-%s.png" % wl)
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True, help="Sarathi-format CSV (num_prefill_tokens,num_decode_tokens,...)")
    ap.add_argument("--synthetic", help="CSV from go run ./bench/e2e/gensynth (the project's generator)")
    ap.add_argument("--workloads", default="arxiv-offline,arxiv-poisson",
                    help="comma list of <arxiv|synthetic>-<offline|poisson>")
    ap.add_argument("--rate", type=float, default=5.0, help="Poisson arrivals per second")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--layers", type=int, default=8, help="Llama-3-8B layers (32 for the whole model)")
    ap.add_argument("--max-ctx", type=int, default=8192)
    ap.add_argument("--max-slots", type=int, default=128, help="requests at most at once (paged and vattn)")
    ap.add_argument("--kv-budget-gib", type=float, default=4.0, help="K/V memory every layout gets")
    ap.add_argument("--max-prefill-tokens", type=int, default=8192, help="prompt tokens per step at most")
    ap.add_argument("--map-ahead", type=int, default=7, help="-ahead layouts: vattn map_ahead")
    ap.add_argument("--grow-margin", type=int, default=64, help="-ahead layouts: vattn grow_margin (tokens)")
    ap.add_argument("--configs", default="static,paged16,paged256,vattn2m-flex,static-fa,vattn2m-fa,"
                                          "vattn64k-fa,vattn64k-mega-fa-ahead")
    ap.add_argument("--record", type=int, default=3,
                    help="the first and the last this many requests' outputs are compared with static's")
    ap.add_argument("--record-tokens", type=int, default=4, help="each recorded request's first outputs")
    ap.add_argument("--record-every", type=int, default=61, help="and every this-many-th output after them")
    ap.add_argument("--tol", type=float, default=1e-2, help="bound on |output - static's| / max|static's|")
    ap.add_argument("--sample-every", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=540, help="skip what would start after this many seconds")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check every layout runs")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for name in ("requests", "layers", "max_ctx", "max_slots", "max_prefill_tokens", "record_tokens", "record_every",
                 "sample_every"):
        if getattr(args, name) < 1:
            ap.error("--%s must be at least 1, got %d" % (name.replace("_", "-"), getattr(args, name)))
    if args.max_ctx % LEN_BLOCK:
        ap.error("--max-ctx must be a multiple of %d (the KV block), got %d" % (LEN_BLOCK, args.max_ctx))
    if not args.rate > 0 or not args.kv_budget_gib > 0 or not args.tol > 0:
        ap.error("--rate, --kv-budget-gib and --tol must be positive")
    if args.map_ahead < 0 or args.grow_margin < 0 or args.record < 0:
        ap.error("--map-ahead, --grow-margin and --record must not be negative")
    for wl in args.workloads.split(","):
        if wl.count("-") != 1 or wl.split("-")[0] not in ("arxiv", "synthetic") or wl.split("-")[1] not in ("offline", "poisson"):
            ap.error("--workloads: want <arxiv|synthetic>-<offline|poisson>, got %r" % wl)
    for p in (args.trace, args.synthetic):
        if p and not os.path.isfile(p):
            ap.error("no such trace file: %s" % p)
    if args.smoke:
        args.layers, args.requests, args.max_ctx, args.max_slots = 2, 12, 8192, 16
        args.kv_budget_gib, args.rate = 0.125, 20.0
    dev = torch.device("cuda:0")
    torch.cuda.init()
    # Every layout and workload compiles its own decode call (shapes,
    # strides, the mask's captured tensors): more than Dynamo's default 8.
    for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 256)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    # Flash (else memory-efficient) SDPA for the prompts: PyTorch may pick
    # cuDNN on Hopper, which builds a plan per new length (tens of ms).
    # Held in a name: a context manager object collected early restores
    # the defaults.
    sdpa = sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
    sdpa.__enter__()
    torch.manual_seed(args.seed)
    model = Model(args.layers, dev, args.seed, args.max_ctx)
    torch.cuda.synchronize()
    out = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
               layers=args.layers, max_ctx=args.max_ctx, max_slots=args.max_slots, requests=args.requests,
               kv_budget_gib=args.kv_budget_gib, kv_bytes_per_token=kv_bytes_per_token(args.layers),
               max_prefill_tokens=args.max_prefill_tokens, rate=args.rate, map_ahead=args.map_ahead,
               grow_margin=args.grow_margin, tol=args.tol,
               date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), results={})
    try:
        import subprocess
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True).stdout.strip()
    except Exception as e:
        out["driver"] = "unknown (%s)" % e
    folder = os.path.dirname(os.path.abspath(args.out))
    start = time.time()
    order = args.configs.split(",")
    warm = {}
    for wi, wl in enumerate(args.workloads.split(",")):
        src, arr = wl.split("-")
        path = args.trace if src == "arxiv" else args.synthetic
        if not path:
            print("no file for workload %s: skipped" % wl, file=sys.stderr)
            continue
        trace = load_trace(path, args.requests, args.seed, args.max_ctx)
        arrivals = [0.0] * len(trace) if arr == "offline" else poisson(len(trace), args.rate, args.seed)
        cfgs = order[wi % len(order):] + order[:wi % len(order)]  # who pays first-use costs rotates
        res = out["results"][wl] = dict(mean_prompt=sum(p for p, _ in trace) / len(trace),
                                        mean_decode=sum(d for _, d in trace) / len(trace), order=cfgs, configs={})
        recs = {}
        for cfg in cfgs:
            if time.time() - start > args.budget_s:
                res["configs"][cfg] = {"skipped": "time budget"}
                continue
            live, store = {}, None
            try:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                store = make_store(cfg, args, dev)
                w = warm_up(store, model, dev)
                r, rec = serve(store, model, trace, arrivals, args, dev, live)
                r["warm_up_s"] = round(w, 2)
                r["first_warm_up_s"] = warm.setdefault(cfg, round(w, 2))
                recs[cfg] = rec
                res["configs"][cfg] = r
                print(wl, cfg, {k: v for k, v in r.items() if k != "mem"}, flush=True)
            except Exception as e:  # one layout's failure is a result too
                traceback.print_exc()
                got = live.get("st", {})
                res["configs"][cfg] = {"error": "%s: %s" % (type(e).__name__, e), "steps": got.get("steps")}
            finally:
                if store is not None:
                    store.close()
                del store
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            json.dump(out, open(args.out, "w"), indent=1)
        compare(res["configs"], recs, args, len(trace))
        json.dump(out, open(args.out, "w"), indent=1)
    print_table(out)
    plot(out, folder)


def print_table(out):
    cols = ("output_tok_s", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "running_mean", "preemptions",
            "mm_share", "warm_up_s", "compared_outputs", "max_abs_diff_vs_static")
    for wl, r in out["results"].items():
        print("\n%s (%d requests, mean prompt %.0f, mean decode %.0f)" % (wl, out["requests"], r["mean_prompt"], r["mean_decode"]))
        print("%-22s" % "layout" + "".join("%13s" % c[:12] for c in cols) + "  correct")
        for cfg, s in r["configs"].items():
            if "error" in s or "skipped" in s:
                print("%-22s %s" % (cfg, s.get("error") or s.get("skipped")))
                continue
            print("%-22s" % cfg + "".join("%13s" % s.get(c) for c in cols) + "  %s" % s.get("correct", "-"))


if __name__ == "__main__":
    main()
