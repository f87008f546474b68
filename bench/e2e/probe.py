"""Two measurements behind notes in docs/results.md, run on the GPU machine:

  sdpa   time of PyTorch SDPA decode calls (q length 1, GQA) at K/V lengths
         not seen before vs seen before, per SDPA backend: does a backend
         pay a per-length set-up cost?
  calls  time of vattn step vs step_async calls from Python (ctypes) with
         the caller idle (sleeping) or busy (spinning) between calls, for
         the cudavmm backend: what a call costs on the critical path.

    python3 bench/e2e/probe.py --out probe.json
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, "..", "..", "python"))


def pcts(xs):
    s = sorted(xs)
    return {"n": len(s), "p50_us": round(1e6 * s[len(s) // 2], 1), "p99_us": round(1e6 * s[int(0.99 * len(s))], 1),
            "mean_us": round(1e6 * sum(s) / len(s), 1)}


def sdpa_probe(dev):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    out = {}
    K = torch.randn(1, 8, 4096, 128, dtype=torch.bfloat16, device=dev)
    q = torch.randn(1, 32, 1, 128, dtype=torch.bfloat16, device=dev)
    for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("default", None)):
        lengths = range(1000 + 7 * len(out), 1000 + 7 * len(out) + 60)
        res = {}
        try:
            for label in ("new_lengths", "same_lengths_again"):
                xs = []
                for n in lengths:
                    torch.cuda.synchronize()
                    s = time.perf_counter()
                    if be is None:
                        F.scaled_dot_product_attention(q, K[:, :, :n], K[:, :, :n], enable_gqa=True)
                    else:
                        with sdpa_kernel([be]):
                            F.scaled_dot_product_attention(q, K[:, :, :n], K[:, :, :n], enable_gqa=True)
                    torch.cuda.synchronize()
                    xs.append(time.perf_counter() - s)
                res[label] = pcts(xs)
        except RuntimeError as e:
            res = {"error": str(e).splitlines()[0]}
        out[name] = res
    return out


def calls_probe(dev, steps):
    import vattn
    out = {}
    for mode in ("step", "step_async"):
        for between in ("sleep", "spin"):
            c = vattn.KVCache(8, 8, 128, 32, 4096, dev.index or 0, torch.bfloat16, "2M", backend="cudavmm",
                              grow_pool=True)
            c.reserve_physical_pages(1 << 30)
            lens = [0] * 32
            for i in range(32):
                c.alloc_new_batch_idx(100)
                lens[i] = 100
            c.step(lens)
            fn = getattr(c, mode)
            xs = []
            for _ in range(steps):
                lens = [n + 1 for n in lens]
                s = time.perf_counter()
                fn(lens)
                xs.append(time.perf_counter() - s)
                if between == "sleep":
                    time.sleep(0.005)
                else:
                    e = time.perf_counter() + 0.005
                    while time.perf_counter() < e:
                        pass
            c.cleanup()
            out["%s/%s" % (mode, between)] = pcts(xs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda:0")
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "sdpa": sdpa_probe(dev), "calls": calls_probe(dev, args.steps)}
    json.dump(res, open(args.out, "w"), indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
