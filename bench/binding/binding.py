"""What a Python call into vattn costs, next to the same call made from Go in
the same process: step, step_async and step_layered with 256 slots, for
each way of passing the lengths (list, tuple, array('q'), numpy int64, a
torch int64 CPU tensor, and a persistent array('q') updated in place), with
every argument check in place. The Go figure comes from vattn_time_steps,
which loops the same Step inside the library; with the extension, the
step call is also timed from C (vattn_step in a C loop: the C-to-Go call
without Python). Each call is timed through
the C extension (python/vattn/_fast.c, scripts/build-python-ext.sh) when it
is built, and through ctypes (the path without it), in the same run.

    go build -buildmode=c-shared -o build/libvattn.so ./cmd/libvattn
    scripts/build-python-ext.sh    # optional: without it, ctypes rows only
    VATTN_BACKEND=sim python3 bench/binding/binding.py [--iters 20000] [--json out.json]

On the simulator nothing is mapped per call (the lengths stay inside the
slots' pages), so the figures are the binding's and the allocator's own
cost; on a GPU backend the same holds, the pages being mapped before the
timed calls.
"""

import argparse
import array
import ctypes
import json
import os
import platform
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, "..", "..", "python"))

import vattn  # noqa: E402

SLOTS = 256


def pct(ds, q):
    ds = sorted(ds)
    return ds[min(len(ds) - 1, int(q * len(ds)))]


def inputs(lens):
    """The ways of passing lengths, each a (name, make) pair; make returns
    the object passed to every call (built once, as a server would keep it)."""
    out = [("list", lambda: list(lens)), ("tuple", lambda: tuple(lens)),
           ("array('q')", lambda: array.array("q", lens))]
    try:
        import numpy as np
        out.append(("numpy int64", lambda: np.array(lens, dtype=np.int64)))
    except ImportError:
        pass
    try:
        import torch
        out.append(("torch int64 (CPU)", lambda: torch.tensor(lens, dtype=torch.int64)))
    except ImportError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--json")
    args = ap.parse_args()
    backend = os.environ.get("VATTN_BACKEND", "sim")
    kw = {"sim_gpu_memory": 8 << 30} if backend == "sim" else {}
    c = vattn.KVCache(32, 8, 128, SLOTS, 4096, 0, "bfloat16", "2M", megacache=True, backend=backend, **kw)
    rows = []
    try:
        c.reserve_physical_pages(4 * SLOTS * 2 * (2 << 20))  # 100 tokens: 4 indexes of 32 tokens
        lens = [0] * SLOTS
        for _ in range(SLOTS):
            i = c.alloc_new_batch_idx(100)
            lens[i] = 100
        c.step(lens)  # pages mapped before anything is timed
        buf = array.array("q", lens)
        addr, n = buf.buffer_info()
        p50, p99 = ctypes.c_int64(0), ctypes.c_int64(0)
        go = {}
        for name, mode in (("step", 0), ("step_async", 1)):
            fn = c._lib.vattn_time_steps
            fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int32,
                           ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
            st = fn(c._h, addr, n, args.iters, mode, ctypes.byref(p50), ctypes.byref(p99))
            if st != 0:
                raise RuntimeError("vattn_time_steps: status %d" % st)
            go[name] = (p50.value / 1e3, p99.value / 1e3)
        ext, ext_detail = vattn.extension()
        # vattn_step called from C (the extension's loop): what the C-to-Go
        # call adds to Go's Step, without Python.
        from_c = None
        if c._steps is not None:
            p50_ns, p99_ns = c._steps.time_step(buf, args.iters)
            from_c = (p50_ns / 1e3, p99_ns / 1e3)
        paths = [("extension", True), ("ctypes", False)] if c._steps is not None else [("ctypes", False)]
        for path, on in paths:
            c._bind_ext(on)
            for call in ("step", "step_async", "step_layered"):
                fn = getattr(c, call)
                persistent = c.lengths_buffer()
                persistent[:] = array.array("q", lens)
                for kind, make in inputs(lens) + [("array('q') in place", lambda: buf),
                                                  ("lengths_buffer()", lambda: persistent)]:
                    x = make()
                    ds = []
                    for _ in range(args.iters):
                        if kind == "array('q') in place":
                            buf[0] = lens[0]  # the caller updates its buffer, no new object
                        elif kind == "lengths_buffer()":
                            persistent[0] = lens[0]
                        t = time.perf_counter_ns()
                        fn(x)
                        ds.append(time.perf_counter_ns() - t)
                        if call != "step":
                            c.wait()  # the background mapping, outside the timed call
                    g = go.get(call, go["step"] if call == "step_layered" else None)
                    rows.append(dict(path=path, call=call, input=kind, p50_us=pct(ds, .5) / 1e3,
                                     p99_us=pct(ds, .99) / 1e3, go_p50_us=g[0], go_p99_us=g[1],
                                     ratio_p50=(pct(ds, .5) / 1e3) / g[0] if g[0] else None))
        c._bind_ext(True)
    finally:
        c.cleanup()
    out = dict(backend=backend, slots=SLOTS, iters=args.iters, python=platform.python_version(),
               machine=platform.processor() or platform.machine(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               extension=ext_detail if ext else None, extension_off=None if ext else ext_detail,
               go_step_p50_us=go["step"][0], go_step_p99_us=go["step"][1],
               c_step_p50_us=from_c and from_c[0], c_step_p99_us=from_c and from_c[1],
               go_note="Go's own Step/StepAsync (vattn_time_steps), same cache, same lengths", rows=rows)
    print("backend %s, %d slots, %d calls each; Go figure: the same call looped in Go" % (backend, SLOTS, args.iters))
    print("extension: %s" % (ext_detail if ext else "not in use, " + ext_detail))
    if from_c:
        print("vattn_step called from C: p50 %.2f µs, p99 %.2f µs (Go's Step: %.2f, %.2f)"
              % (from_c[0], from_c[1], go["step"][0], go["step"][1]))
    print("%-9s %-13s %-22s %9s %9s %9s %9s %7s" % ("path", "call", "lengths as", "p50 µs", "p99 µs", "Go p50",
                                                   "Go p99", "×Go"))
    for r in rows:
        print("%-9s %-13s %-22s %9.2f %9.2f %9.2f %9.2f %7.1f" % (r["path"], r["call"], r["input"], r["p50_us"],
                                                                r["p99_us"], r["go_p50_us"], r["go_p99_us"],
                                                                r["ratio_p50"] or 0))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
