"""End-to-end decode benchmark: a Llama-architecture model (Llama-3-8B
shapes, random bf16 weights) serving a seeded trace sample with continuous
batching, its KV cache in one of:

  static   one contiguous K/V per layer for max_batch x max_context, allocated up front
  paged16  a block pool with block tables (block 16), gathered to contiguous K/V per request
  paged256 the same, block 256
  vattn-sync / vattn-async / vattn-layered
           vattn (cudavmm backend) virtual tensors, mapped by step / step_async /
           step_layered + wait_layer

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
    """static or vattn: per-layer [B, T, H, D] tensors, read as views."""

    def __init__(self, ks, vs):
        self.ks, self.vs = ks, vs

    def before_layer(self, l):
        pass

    def write(self, l, seqs, k, v):
        at = 0
        if all(c == 1 for (_, _, c, _) in seqs) and len(seqs) > 1:
            slots = torch.tensor([s for (s, _, _, _) in seqs], device=k.device)
            pos = torch.tensor([st for (_, st, _, _) in seqs], device=k.device)
            self.ks[l][slots, pos] = k
            self.vs[l][slots, pos] = v
            return
        for (slot, start, count, _) in seqs:
            self.ks[l][slot, start: start + count] = k[at: at + count]
            self.vs[l][slot, start: start + count] = v[at: at + count]
            at += count

    def read(self, l, slot, total):
        return self.ks[l][slot, :total], self.vs[l][slot, :total]


class Paged:
    def __init__(self, layers, blocks, bs, dev):
        self.bs = bs
        self.k = [torch.zeros(blocks * bs, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.free = list(range(blocks))
        self.table = {}  # slot -> list of blocks
        self.idx = {}
        self.dev = dev

    def ensure(self, slot, n):
        t = self.table.setdefault(slot, [])
        while len(t) * self.bs < n:
            if not self.free:
                raise RuntimeError("paged pool exhausted")
            t.append(self.free.pop())
        self.idx[slot] = None

    def release(self, slot):
        self.free.extend(self.table.pop(slot, []))
        self.idx.pop(slot, None)

    def used_bytes(self):
        return sum(len(t) for t in self.table.values()) * self.bs * KV_HEADS * HEAD_DIM * 2 * 2 * len(self.k)

    def flat(self, slot, start, count):
        t = torch.tensor(self.table[slot], device=self.dev)
        p = torch.arange(start, start + count, device=self.dev)
        return t[p // self.bs] * self.bs + p % self.bs

    def before_layer(self, l):
        pass

    def write(self, l, seqs, k, v):
        if l == 0:  # block tables change only between steps: index once per step
            self._w = torch.cat([self.flat(s, st, c) for (s, st, c, _) in seqs])
            self._read = {s: self.flat(s, 0, t) for (s, _, _, t) in seqs}
        self.k[l][self._w] = k
        self.v[l][self._w] = v

    def read(self, l, slot, total):
        i = self._read[slot]
        return self.k[l][i], self.v[l][i]


def dev_used():
    free, total = torch.cuda.mem_get_info()
    return total - free


def run(cfg_name, args, model, reqs, dev, refs):
    import vattn
    L, B, T = args.layers, args.max_batch, args.max_ctx
    kvbytes_tok = KV_HEADS * HEAD_DIM * 2
    torch.cuda.synchronize()
    base_used = dev_used()
    cache = None
    mode = None
    if cfg_name == "static":
        ks = [torch.zeros(B, T, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(L)]
        vs = [torch.zeros_like(t) for t in ks]
        kv = Contiguous(ks, vs)
    elif cfg_name.startswith("paged"):
        bs = int(cfg_name[5:])
        kv = Paged(L, B * T // bs, bs, dev)
    else:
        mode = cfg_name.split("-")[1]
        cache = vattn.KVCache(L, KV_HEADS, HEAD_DIM, B, T, dev.index or 0, torch.bfloat16, "2M",
                              backend="cudavmm", grow_pool=True)
        cache.reserve_physical_pages(args.reserve_gib << 30)
        t = cache.tensors()
        kv = Contiguous(t[:L], t[L:])
        if mode == "layered":
            kv.before_layer = lambda l: cache.wait_layer(l)
    queue = list(enumerate(reqs))
    queue.reverse()
    active = {}  # slot -> [rid, length, remaining decode, next token]
    free_slots = list(range(B))
    lens = [0] * B
    st = dict(prefill_tokens=0, decode_tokens=0, prefill_s=0.0, decode_s=0.0, decode_steps=0,
              vattn_call_s=0.0, vattn_prefill_call_s=0.0, vattn_decode_call_s=0.0, mem=[], peak_used=0)
    recorded = {}
    rnd = torch.Generator(device=dev).manual_seed(7)
    t0 = time.perf_counter()

    def vcall(fn, arg, kind):
        s = time.perf_counter()
        fn(arg)
        d = time.perf_counter() - s
        st["vattn_call_s"] += d
        st["vattn_%s_call_s" % kind] += d

    while queue or active:
        # admit: one prefill per iteration while slots are free
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
                fn = {"sync": cache.step, "async": cache.step_async, "layered": cache.step_layered}[mode]
                vcall(fn, lens, "prefill")
            elif isinstance(kv, Paged):
                kv.ensure(slot, p)
            toks = torch.randint(0, VOCAB, (p,), device=dev, generator=rnd)
            pos = torch.arange(p, device=dev)
            rec = None
            if rid < 4:
                rec = lambda o, rid=rid: recorded.__setitem__((rid, 0), o.float().cpu())
            nxt = model.forward(toks, pos, kv, [(slot, 0, p, p)], rec)
            torch.cuda.synchronize()
            st["prefill_s"] += time.perf_counter() - s
            st["prefill_tokens"] += p
            active[slot] = [rid, p, d - 1, nxt[0]]
            admitted += 1
        # retire requests that produced all their tokens
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
            fn = cache.step if mode == "sync" else cache.step_async
            vcall(fn, lens, "decode")
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
        if mode == "layered":
            kv.before_layer = lambda l: None  # decode steps: step_async already mapped them
        nxt = model.forward(toks, pos, kv, seqs, rec)
        if mode == "layered":
            kv.before_layer = lambda l: cache.wait_layer(l)
        torch.cuda.synchronize()
        st["decode_s"] += time.perf_counter() - s
        st["decode_steps"] += 1
        st["decode_tokens"] += len(slots)
        for i, sl in enumerate(slots):
            a = active[sl]
            a[1] += 1
            a[2] -= 1
            a[3] = nxt[i]
        used = dev_used() - base_used
        st["peak_used"] = max(st["peak_used"], used)
        if st["decode_steps"] % 4 == 0:
            st["mem"].append((round(time.perf_counter() - t0, 3), used))
    st["wall_s"] = time.perf_counter() - t0
    if cache is not None:
        cache.wait()
        vs_ = cache.stats()
        st["vattn_stats"] = {k: vs_[k] for k in ("reserved_pages", "fg_map_calls", "fg_map_pages", "fg_map_seconds",
                                                "bg_map_calls", "bg_map_pages", "bg_map_seconds", "alloc_calls",
                                                "alloc_seconds", "fg_unmap_calls", "reclaimed_pages")}
    st["prefill_tok_s"] = st["prefill_tokens"] / st["prefill_s"]
    st["decode_tok_s"] = st["decode_tokens"] / st["decode_s"]
    st["ms_per_decode_step"] = 1000 * st["decode_s"] / max(1, st["decode_steps"])
    # correctness against the static run
    if refs is None:
        st["recorded"] = len(recorded)
    else:
        diffs = [float((recorded[k] - refs[k]).abs().max()) for k in refs if k in recorded]
        st["max_abs_diff_vs_static"] = max(diffs) if diffs else None
        st["compared_outputs"] = len(diffs)
        st["ref_scale"] = max(float(refs[k].abs().max()) for k in refs)
    del kv
    if cache is not None:
        cache.cleanup()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return st, recorded


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
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--configs", default="static,vattn-sync,vattn-async,vattn-layered,paged16,paged256")
    ap.add_argument("--workloads", default="arxiv,synthetic")
    ap.add_argument("--budget-s", type=float, default=400)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda:0")
    torch.cuda.init()
    torch.manual_seed(args.seed)
    model = Model(args.layers, dev, args.seed)
    # warm up cuBLAS and SDPA so the first configuration pays no start-up
    wk = [torch.zeros(2, 512, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev) for _ in range(args.layers)]
    warm = Contiguous(wk, [torch.zeros_like(t) for t in wk])
    for _ in range(2):
        model.forward(torch.zeros(300, dtype=torch.long, device=dev), torch.arange(300, device=dev), warm, [(0, 0, 300, 300)])
        model.forward(torch.zeros(2, dtype=torch.long, device=dev), torch.tensor([300, 300], device=dev), warm,
                      [(0, 300, 1, 301), (1, 300, 1, 301)])
    del warm, wk
    torch.cuda.synchronize()
    out = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
               layers=args.layers, max_batch=args.max_batch, max_ctx=args.max_ctx, requests=args.requests,
               date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), results={})
    try:
        import subprocess
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True).stdout.strip()
    except Exception as e:
        out["driver"] = "unknown (%s)" % e
    start = time.time()
    for wl in args.workloads.split(","):
        path = args.trace if wl == "arxiv" else args.synthetic
        if not path:
            print("no file for workload %s: skipped" % wl, file=sys.stderr)
            continue
        reqs = load_trace(path, args.requests, args.seed, args.max_ctx)
        out["results"][wl] = {"mean_prompt": sum(p for p, _ in reqs) / len(reqs),
                              "mean_decode": sum(d for _, d in reqs) / len(reqs), "configs": {}}
        refs = None
        for cfg in args.configs.split(","):
            if time.time() - start > args.budget_s:
                out["results"][wl]["configs"][cfg] = {"skipped": "time budget"}
                continue
            try:
                st, rec = run(cfg, args, model, reqs, dev, refs)
            except Exception as e:  # record it and go on: one layout's failure is a result too
                import traceback
                traceback.print_exc()
                out["results"][wl]["configs"][cfg] = {"error": "%s: %s" % (type(e).__name__, e)}
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                continue
            if cfg == "static":
                refs = rec
            print(wl, cfg, {k: v for k, v in st.items() if k != "mem"}, flush=True)
            out["results"][wl]["configs"][cfg] = st
            json.dump(out, open(args.out, "w"), indent=1)
        # largest batch each layout fits in the static layout's KV memory
        budget = args.max_batch * args.max_ctx
        per = lambda g: sum(math.ceil((p + d) / g) * g for p, d in reqs) / len(reqs)
        tok_page = (2 << 20) // (KV_HEADS * HEAD_DIM * 2)
        out["results"][wl]["max_batch_in_static_memory"] = {
            "static": args.max_batch, "paged16": int(budget / per(16)), "paged256": int(budget / per(256)),
            "vattn_2M": int(budget / per(tok_page))}
    json.dump(out, open(args.out, "w"), indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        for wl, r in out["results"].items():
            plt.figure(figsize=(8, 4))
            for cfg, st in r["configs"].items():
                if "mem" in st and st["mem"]:
                    xs, ys = zip(*st["mem"])
                    plt.plot(xs, [y / 2**30 for y in ys], label=cfg)
            plt.xlabel("seconds"); plt.ylabel("GiB used beyond weights"); plt.title("KV memory over time: " + wl)
            plt.legend(); plt.tight_layout()
            plt.savefig(os.path.join(os.path.dirname(args.out), "memory-%s.png" % wl))
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)


if __name__ == "__main__":
    main()
