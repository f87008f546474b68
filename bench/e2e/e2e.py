"""End-to-end decode benchmark: a Llama-architecture model (Llama-3-8B
shapes, random bf16 weights) serving a seeded trace sample with continuous
batching, its KV cache in one of:

  static   one contiguous K/V per layer for max_batch x max_context, allocated up front
  paged16  a block pool with block tables (block 16), gathered to contiguous K/V per request
  paged256 the same, block 256
  vattn-sync / vattn-async / vattn-layered
           vattn (cudavmm backend, 2 MiB pages) virtual tensors, mapped by
           step / step_async / step_layered + wait_layer
  vattn64k-sync / vattn64k-async / ...
           the same with 64 KiB pages on NVIDIA's stock driver (uvm backend);
           K/V are written by kernels, since CUDA's copy functions refuse
           memory that nvidia-uvm mapped
  vattn-shrink
           vattn-sync that also calls shrink() every --shrink-every decode
           steps, giving idle pages back to the device (memory follows load)

Attention is PyTorch SDPA over each request's contiguous K/V (a view for
static and vattn, a gather for paged): the kernel knows nothing about paging.

    python3 bench/e2e/e2e.py --trace sample.csv --out results.json
"""

import argparse
import csv
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

# The vattn module: python/ of the repository (or of the carried copy).
_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, "..", "..", "python"))

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 4096, 32, 8, 128, 14336, 128256


def load_trace(path, n, seed, max_ctx):
    rows = list(csv.DictReader(open(path)))
    rnd = random.Random(seed)
    rnd.shuffle(rows)
    out = []
    for r in rows:
        p, d = int(r["num_prefill_tokens"]), int(r["num_decode_tokens"])
        if p + d <= max_ctx and p > 0 and d > 0:
            out.append((p, d))
        if len(out) == n:
            break
    return out


class Model:
    def __init__(self, layers, dev, seed):
        g = torch.Generator(device=dev).manual_seed(seed)

        def w(*shape):
            return (torch.randn(*shape, device=dev, generator=g, dtype=torch.float32) / math.sqrt(shape[0])).to(torch.bfloat16)

        self.layers = layers
        self.embed = (torch.randn(VOCAB, HIDDEN, device=dev, generator=g) * 0.02).to(torch.bfloat16)
        self.wqkv = [w(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM) for _ in range(layers)]
        self.wo = [w(HEADS * HEAD_DIM, HIDDEN) for _ in range(layers)]
        self.w13 = [w(HIDDEN, 2 * FFN) for _ in range(layers)]
        self.w2 = [w(FFN, HIDDEN) for _ in range(layers)]
        self.lm = w(HIDDEN, VOCAB)
        inv = 1.0 / (500000.0 ** (torch.arange(0, HEAD_DIM, 2, device=dev).float() / HEAD_DIM))
        t = torch.arange(8192, device=dev).float()
        f = torch.outer(t, inv)
        self.cos, self.sin = f.cos().to(torch.bfloat16), f.sin().to(torch.bfloat16)

    def rope(self, x, pos):  # x [n, h, d], pos [n]
        c, s = self.cos[pos][:, None, :], self.sin[pos][:, None, :]
        x1, x2 = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    def forward(self, tokens, pos, kv, seqs, record=None):
        """tokens/pos [n]; seqs: list of (slot, start, count, total) per
        request in token order. kv does the cache work. Returns next tokens."""
        x = self.embed[tokens]
        for l in range(self.layers):
            h = F.rms_norm(x, (HIDDEN,))
            qkv = h @ self.wqkv[l]
            q = qkv[:, : HEADS * HEAD_DIM].view(-1, HEADS, HEAD_DIM)
            k = qkv[:, HEADS * HEAD_DIM: (HEADS + KV_HEADS) * HEAD_DIM].view(-1, KV_HEADS, HEAD_DIM)
            v = qkv[:, (HEADS + KV_HEADS) * HEAD_DIM:].view(-1, KV_HEADS, HEAD_DIM)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kv.before_layer(l)
            kv.write(l, seqs, k, v)
            o = torch.empty_like(q)
            at = 0
            for (slot, start, count, total) in seqs:
                K, V = kv.read(l, slot, total)  # [total, kvh, d]
                qq = q[at: at + count].transpose(0, 1)[None]
                oo = F.scaled_dot_product_attention(qq, K.transpose(0, 1)[None], V.transpose(0, 1)[None],
                                                    is_causal=count > 1, enable_gqa=True)
                o[at: at + count] = oo[0].transpose(0, 1)
                at += count
            if record is not None and l == self.layers - 1:
                record(o)
            x = x + o.reshape(-1, HEADS * HEAD_DIM) @ self.wo[l]
            h = F.rms_norm(x, (HIDDEN,))
            gu = h @ self.w13[l]
            x = x + (F.silu(gu[:, :FFN]) * gu[:, FFN:]) @ self.w2[l]
        # next token of each request: its last position
        ends, at = [], 0
        for (_, _, count, _) in seqs:
            at += count
            ends.append(at - 1)
        last = torch.tensor(ends, device=x.device)
        return (F.rms_norm(x[last], (HIDDEN,)) @ self.lm).argmax(-1)


class Contiguous:
    """static or vattn: per-layer [B, T, H, D] tensors, read as views. With
    kernel_writes, slices are written by an elementwise kernel rather than a
    copy: CUDA's copy functions (what copy_ of contiguous tensors uses)
    refuse memory that nvidia-uvm mapped for the small-page path."""

    def __init__(self, ks, vs, kernel_writes=False):
        self.ks, self.vs = ks, vs
        self.kernel_writes = kernel_writes

    def _put(self, dst, src):
        if self.kernel_writes:
            torch.mul(src, 1, out=dst)
        else:
            dst.copy_(src)

    def before_layer(self, l):
        pass

    def write(self, l, seqs, k, v):
        at = 0
        if all(c == 1 for (_, _, c, _) in seqs) and len(seqs) > 1:
            if l == 0:  # the same positions in every layer: build the index once per step
                self._slots = torch.tensor([s for (s, _, _, _) in seqs], device=k.device)
                self._pos = torch.tensor([st for (_, st, _, _) in seqs], device=k.device)
            self.ks[l][self._slots, self._pos] = k
            self.vs[l][self._slots, self._pos] = v
            return
        for (slot, start, count, _) in seqs:
            self._put(self.ks[l][slot, start: start + count], k[at: at + count])
            self._put(self.vs[l][slot, start: start + count], v[at: at + count])
            at += count

    def read(self, l, slot, total):
        return self.ks[l][slot, :total], self.vs[l][slot, :total]


class Paged:
    """A block pool with per-request block tables (vLLM-style), preallocated to
    the static layout's size; attention reads a request's K/V through a gather
    of its blocks. Each slot keeps its token -> pool-row index on the GPU,
    extended when a block is added, so a step builds no index it already has."""

    def __init__(self, layers, blocks, bs, dev):
        self.bs = bs
        self.k = [torch.zeros(blocks * bs, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.free = list(range(blocks))
        self.table = {}  # slot -> list of blocks
        self.rows = {}  # slot -> int64 GPU tensor: pool row of each token slot the blocks hold
        self.ar = torch.arange(bs, device=dev)
        self.dev = dev

    def ensure(self, slot, n):
        t = self.table.setdefault(slot, [])
        new = []
        while len(t) * self.bs < n:
            if not self.free:
                raise RuntimeError("paged pool exhausted")
            b = self.free.pop()
            t.append(b)
            new.append(b)
        if new:
            add = (torch.tensor(new, device=self.dev)[:, None] * self.bs + self.ar).reshape(-1)
            old = self.rows.get(slot)
            self.rows[slot] = add if old is None else torch.cat([old, add])

    def release(self, slot):
        self.free.extend(self.table.pop(slot, []))
        self.rows.pop(slot, None)

    def blocks_in_use(self):
        return sum(len(t) for t in self.table.values())

    def before_layer(self, l):
        pass

    def write(self, l, seqs, k, v):
        if l == 0:  # block tables change only between steps: index once per step
            if all(c == 1 for (_, _, c, _) in seqs):
                w = [self.table[s][st // self.bs] * self.bs + st % self.bs for (s, st, _, _) in seqs]
                self._w = torch.tensor(w, device=self.dev)
            else:
                self._w = torch.cat([self.rows[s][st: st + c] for (s, st, c, _) in seqs])
        self.k[l][self._w] = k
        self.v[l][self._w] = v

    def read(self, l, slot, total):
        i = self.rows[slot][:total]
        return self.k[l][i], self.v[l][i]


def dev_used():
    free, total = torch.cuda.mem_get_info()
    return total - free


def pct(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def call_summary(xs):
    """Seconds per call -> total and per-call microseconds."""
    return dict(calls=len(xs), total_s=round(sum(xs), 4),
                mean_us=round(1e6 * sum(xs) / len(xs), 1) if xs else None,
                p50_us=round(1e6 * pct(xs, 0.5), 1) if xs else None,
                p99_us=round(1e6 * pct(xs, 0.99), 1) if xs else None,
                max_us=round(1e6 * max(xs), 1) if xs else None)


def kv_bytes_per_token(layers):
    return KV_HEADS * HEAD_DIM * 2 * 2 * layers  # bf16, K and V, every layer


def warm_up(model, reqs, args, dev):
    """Run every prompt length of the sample once and every decode batch size,
    so cuBLAS's per-shape kernel choice and the caching allocator's growth are
    paid before any configuration is timed, whatever the order."""
    L, B = args.layers, args.max_batch
    T = max(p for p, _ in reqs) + 1
    ks = [torch.zeros(B, max(T, 64), KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(L)]
    kv = Contiguous(ks, [torch.zeros_like(t) for t in ks])
    t0 = time.perf_counter()
    for p in sorted({p for p, _ in reqs}):
        model.forward(torch.zeros(p, dtype=torch.long, device=dev), torch.arange(p, device=dev), kv, [(0, 0, p, p)])
    for b in range(1, B + 1):
        model.forward(torch.zeros(b, dtype=torch.long, device=dev), torch.full((b,), 32, device=dev), kv,
                      [(s, 32, 1, 33) for s in range(b)])
    torch.cuda.synchronize()
    del kv, ks
    return time.perf_counter() - t0


def run(cfg_name, args, model, reqs, dev, live):
    """One configuration over reqs. live gets the cache and the counters as
    they are made, so a failed run can be cleaned up and reported."""
    import vattn
    L, B, T = args.layers, args.max_batch, args.max_ctx
    per_tok = kv_bytes_per_token(L)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base_used = dev_used()  # before any KV memory of this configuration
    cache = None
    mode = None
    page_bytes = 2 << 20
    if cfg_name == "static":
        ks = [torch.zeros(B, T, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(L)]
        vs = [torch.zeros_like(t) for t in ks]
        kv = Contiguous(ks, vs)
    elif cfg_name.startswith("paged"):
        bs = int(cfg_name[5:])
        tokens = B * T if not args.kv_budget_gib else (args.kv_budget_gib << 30) // per_tok
        kv = Paged(L, tokens // bs, bs, dev)
    else:
        name, mode = cfg_name.split("-")
        page = name[len("vattn"):] or "2M"  # "vattn64k" -> "64k"
        page_bytes = vattn._page_bytes(page)
        cache = vattn.KVCache(L, KV_HEADS, HEAD_DIM, B, T, dev.index or 0, torch.bfloat16, page,
                              backend="auto", grow_pool=not args.kv_budget_gib)
        live["cache"] = cache
        cache.reserve_physical_pages((args.kv_budget_gib or args.reserve_gib) << 30)
        t = cache.tensors()
        kv = Contiguous(t[:L], t[L:], kernel_writes=page_bytes < (2 << 20))
    torch.cuda.synchronize()

    def kv_held():
        """Device bytes the layout holds for K/V right now: static and paged
        hold their whole pool for the run, vattn its physical pages."""
        if cache is None:
            return kv_alloc
        return cache.stats()["reserved_pages"] * page_bytes

    if cache is None:  # exact: what the layout's tensors hold (the caching allocator may reuse old segments)
        tensors = (kv.ks + kv.vs) if isinstance(kv, Contiguous) else (kv.k + kv.v)
        kv_alloc = sum(t.numel() * t.element_size() for t in tensors)
    else:
        kv_alloc = kv_held()
    queue = list(enumerate(reqs))
    queue.reverse()
    active = {}  # slot -> [rid, length, remaining decode, next token]
    free_slots = list(range(B))
    lens = [0] * B
    calls = {"prefill": [], "wait_layer": [], "decode": [], "shrink": []}
    st = dict(prefill_tokens=0, decode_tokens=0, prefill_s=0.0, decode_s=0.0, decode_steps=0,
              kv_alloc_bytes=kv_alloc, mem=[], peak_kv_bytes=0, peak_device_bytes=0, peak_live_kv_bytes=0)
    live["st"] = st
    recorded = {}
    rnd = torch.Generator(device=dev).manual_seed(7)

    def timed(kind, fn, *a):
        s = time.perf_counter()
        fn(*a)
        calls[kind].append(time.perf_counter() - s)

    if mode == "layered":
        prefill_wait = lambda l: timed("wait_layer", cache.wait_layer, l)
    t0 = time.perf_counter()

    def sample():
        held, used = kv_held(), dev_used() - base_used
        live = sum(lens) * per_tok
        st["peak_kv_bytes"] = max(st["peak_kv_bytes"], held)
        st["peak_device_bytes"] = max(st["peak_device_bytes"], used)
        st["peak_live_kv_bytes"] = max(st["peak_live_kv_bytes"], live)
        st["mem"].append((round(time.perf_counter() - t0, 3), held, used, live))

    while queue or active:
        admitted = 0
        while queue and admitted < args.admit and len(active) < B:
            rid, (p, d) = queue.pop()
            if cache is not None:
                slot = cache.alloc_new_batch_idx(p)
            else:
                slot = min(free_slots)
                free_slots.remove(slot)
            torch.cuda.synchronize()
            s = time.perf_counter()
            lens[slot] = p
            if cache is not None:
                fn = {"sync": cache.step, "shrink": cache.step, "async": cache.step_async,
                      "layered": cache.step_layered}[mode]
                timed("prefill", fn, lens)
                if mode == "layered":
                    kv.before_layer = prefill_wait
            elif isinstance(kv, Paged):
                kv.ensure(slot, p)
            toks = torch.randint(0, VOCAB, (p,), device=dev, generator=rnd)
            pos = torch.arange(p, device=dev)
            rec = None
            if rid < 4:
                rec = lambda o, rid=rid: recorded.__setitem__((rid, 0), o.float().cpu())
            nxt = model.forward(toks, pos, kv, [(slot, 0, p, p)], rec)
            if mode == "layered":
                kv.before_layer = lambda l: None  # decode steps: step_async mapped them already
            torch.cuda.synchronize()
            st["prefill_s"] += time.perf_counter() - s
            st["prefill_tokens"] += p
            active[slot] = [rid, p, d - 1, nxt[0]]
            admitted += 1
        if admitted:
            sample()
        for slot in [s for s, a in active.items() if a[2] <= 0]:
            del active[slot]
            lens[slot] = 0
            if cache is not None:
                cache.free_batch_idx(slot)
            else:
                free_slots.append(slot)
                if isinstance(kv, Paged):
                    kv.release(slot)
        if not active:
            continue
        torch.cuda.synchronize()
        s = time.perf_counter()
        slots = sorted(active)
        for sl in slots:
            lens[sl] = active[sl][1] + 1
        if cache is not None:
            timed("decode", cache.step if mode in ("sync", "shrink") else cache.step_async, lens)
            if mode == "shrink" and st["decode_steps"] % args.shrink_every == 0:
                timed("shrink", cache.shrink)
        elif isinstance(kv, Paged):
            for sl in slots:
                kv.ensure(sl, lens[sl])
        toks = torch.stack([active[sl][3] for sl in slots])
        pos = torch.tensor([active[sl][1] for sl in slots], device=dev)
        seqs = [(sl, active[sl][1], 1, active[sl][1] + 1) for sl in slots]
        rec_rows = {}
        for i, sl in enumerate(slots):
            rid = active[sl][0]
            step_no = reqs[rid][1] - active[sl][2]
            if rid < 4 and step_no <= 5:
                rec_rows[i] = (rid, step_no)
        rec = (lambda o: [recorded.__setitem__(k, o[i:i + 1].float().cpu()) for i, k in rec_rows.items()]) if rec_rows else None
        nxt = model.forward(toks, pos, kv, seqs, rec)
        torch.cuda.synchronize()
        st["decode_s"] += time.perf_counter() - s
        st["decode_steps"] += 1
        st["decode_tokens"] += len(slots)
        for i, sl in enumerate(slots):
            a = active[sl]
            a[1] += 1
            a[2] -= 1
            a[3] = nxt[i]
        if st["decode_steps"] % 2 == 0:
            sample()
    st["wall_s"] = round(time.perf_counter() - t0, 2)
    if cache is not None:
        cache.wait()
        vs_ = cache.stats()
        st["vattn_stats"] = {k: vs_[k] for k in ("reserved_pages", "fg_map_calls", "fg_map_pages", "fg_map_seconds",
                                                "bg_map_calls", "bg_map_pages", "bg_map_seconds", "alloc_calls",
                                                "alloc_seconds", "fg_unmap_calls", "reclaimed_pages")}
        st["vattn_calls"] = {k: call_summary(v) for k, v in calls.items() if v}
        st["vattn_critical_path_s"] = round(sum(sum(v) for v in calls.values()), 4)
    st["prefill_tok_s"] = st["prefill_tokens"] / st["prefill_s"]
    st["decode_tok_s"] = st["decode_tokens"] / st["decode_s"]
    st["ms_per_decode_step"] = 1000 * st["decode_s"] / max(1, st["decode_steps"])
    del kv
    if cache is not None:
        cache.cleanup()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return st, recorded


def compare(results, recs):
    """Attention outputs of every configuration against the static run's."""
    ref = recs.get("static")
    if not ref:
        return
    scale = max(float(t.abs().max()) for t in ref.values())
    for cfg, rec in recs.items():
        if cfg == "static" or cfg not in results:
            continue
        diffs = [float((rec[k] - ref[k]).abs().max()) for k in ref if k in rec]
        results[cfg]["compared_outputs"] = len(diffs)
        results[cfg]["max_abs_diff_vs_static"] = max(diffs) if diffs else None
        results[cfg]["ref_scale"] = scale
        results[cfg]["correct"] = bool(diffs) and len(diffs) == len(ref) and max(diffs) <= 1e-2 * scale


def plot(out, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    for wl, r in out["results"].items():
        fig, ax = plt.subplots(1, 2, figsize=(12, 4))
        for cfg, st in r["configs"].items():
            if st.get("mem"):
                xs = [m[0] for m in st["mem"]]
                ax[0].plot(xs, [m[1] / 2**30 for m in st["mem"]], label=cfg)
                ax[1].plot(xs, [m[2] / 2**30 for m in st["mem"]], label=cfg)
        live = max((c for c in r["configs"].values() if c.get("mem")), key=lambda c: len(c["mem"]), default=None)
        if live:
            ax[0].plot([m[0] for m in live["mem"]], [m[3] / 2**30 for m in live["mem"]], "k:", label="live K/V (tokens)")
        ax[0].set_title("K/V device memory held: " + wl)
        ax[1].set_title("device memory beyond the model: " + wl)
        for a in ax:
            a.set_xlabel("seconds")
            a.set_ylabel("GiB")
            a.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(path, "memory-%s.png" % wl))
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", required=True)
    ap.add_argument("--synthetic", help="CSV from go run ./bench/e2e/gensynth (the project's generator)")
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-ctx", type=int, default=4096)
    ap.add_argument("--admit", type=int, default=4)
    ap.add_argument("--reserve-gib", type=int, default=1)
    ap.add_argument("--kv-budget-gib", type=int, default=0,
                    help="paged and vattn get exactly this much K/V memory (vattn: reserved up front, no growth), "
                         "to test whether --max-batch fits in it; 0: paged as static, vattn grows")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shrink-every", type=int, default=64, help="vattn-shrink: decode steps between shrink() calls")
    ap.add_argument("--configs", default="vattn-sync,vattn-async,vattn-layered,vattn-shrink,static,paged16,paged256",
                    help="run order of the first workload; later workloads rotate it by one")
    ap.add_argument("--workloads", default="arxiv,synthetic")
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda:0")
    torch.cuda.init()
    # Flash (else memory-efficient) attention for every configuration: the
    # cuDNN backend PyTorch may pick on Hopper builds a plan per new K/V length,
    # which costs tens of ms each and lands on whichever configuration meets a
    # length first (seen on the H200: the first configuration's decode 5x slower).
    from torch.nn.attention import SDPBackend, sdpa_kernel
    sdpa = sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
    sdpa.__enter__()
    torch.manual_seed(args.seed)
    model = Model(args.layers, dev, args.seed)
    torch.cuda.synchronize()
    out = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
               layers=args.layers, max_batch=args.max_batch, max_ctx=args.max_ctx, requests=args.requests,
               kv_budget_gib=args.kv_budget_gib,
               kv_bytes_per_token=kv_bytes_per_token(args.layers), sdpa="flash, else memory-efficient",
               date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), results={})
    try:
        import subprocess
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True).stdout.strip()
    except Exception as e:
        out["driver"] = "unknown (%s)" % e
    start = time.time()
    order = args.configs.split(",")
    for wi, wl in enumerate(args.workloads.split(",")):
        path = args.trace if wl == "arxiv" else args.synthetic
        if not path:
            print("no file for workload %s: skipped" % wl, file=sys.stderr)
            continue
        reqs = load_trace(path, args.requests, args.seed, args.max_ctx)
        cfgs = order[wi % len(order):] + order[:wi % len(order)]
        res = out["results"][wl] = {"mean_prompt": sum(p for p, _ in reqs) / len(reqs),
                                    "mean_decode": sum(d for _, d in reqs) / len(reqs),
                                    "order": cfgs, "configs": {}}
        res["warm_up_s"] = round(warm_up(model, reqs, args, dev), 2)
        recs = {}
        for cfg in cfgs:
            if time.time() - start > args.budget_s:
                res["configs"][cfg] = {"skipped": "time budget"}
                continue
            live = {}
            try:
                st, rec = run(cfg, args, model, reqs, dev, live)
            except Exception as e:  # record it and go on: one layout's failure is a result too
                import traceback
                traceback.print_exc()
                got = live.get("st", {})
                res["configs"][cfg] = {"error": "%s: %s" % (type(e).__name__, e),
                                       "prefill_tokens": got.get("prefill_tokens"),
                                       "decode_steps": got.get("decode_steps")}
                if live.get("cache") is not None:
                    live["cache"].cleanup()
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                continue
            recs[cfg] = rec
            res["configs"][cfg] = st
            print(wl, cfg, {k: v for k, v in st.items() if k != "mem"}, flush=True)
            json.dump(out, open(args.out, "w"), indent=1)
        compare(res["configs"], recs)
        # largest batch each layout fits in the static layout's K/V memory, from the sample's lengths
        budget = args.max_batch * args.max_ctx
        per = lambda g: sum(math.ceil((p + d) / g) * g for p, d in reqs) / len(reqs)
        tok_page = (2 << 20) // (KV_HEADS * HEAD_DIM * 2)
        res["max_batch_in_static_memory"] = {
            "static": args.max_batch, "paged16": int(budget / per(16)), "paged256": int(budget / per(256)),
            "vattn_2M": int(budget / per(tok_page)), "vattn_64K": int(budget / per(tok_page // 32))}
        json.dump(out, open(args.out, "w"), indent=1)
    plot(out, os.path.dirname(os.path.abspath(args.out)))


if __name__ == "__main__":
    main()
