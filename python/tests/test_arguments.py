"""Bad arguments never pass silently: every integer and every sequence of
lengths is checked for type and range before C sees it, and a refused call
leaves the cache as it was. Runs on the simulator, like test_vattn.py:

    VATTN_LIB=build/libvattn.so python3 -m unittest discover -s python/tests -v
"""

import array
import ctypes
import os
import random
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import vattn  # noqa: E402

LAYERS, HEADS, DIM, BATCH, CTX = 4, 8, 128, 4, 1024


def make(**kw):
    args = dict(backend="sim", sim_gpu_memory=1 << 30, grow_pool=True)
    args.update(kw)
    return vattn.KVCache(LAYERS, HEADS, DIM, BATCH, CTX, 0, "bfloat16", "2M", **args)


class Index:
    """An integer that is not an int, as numpy.int64 is: it has __index__."""

    def __init__(self, v):
        self.v = v

    def __index__(self):
        return self.v

    def __repr__(self):
        return "Index(%d)" % self.v


class FakeDevice:
    def __init__(self, kind):
        self.type = kind

    def __str__(self):
        return self.type


class FakeDtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class FakeTensor:
    """Just the part of torch.Tensor that vattn reads, over an array('q')."""

    def __init__(self, values, dtype="int64", device="cpu", shape=None, contiguous=True):
        self.buf = array.array("q", values)
        self.dtype, self.device = FakeDtype(dtype), FakeDevice(device)
        self.shape = shape or (len(values),)
        self.contiguous = contiguous

    def data_ptr(self):
        return self.buf.buffer_info()[0]

    def numel(self):
        return len(self.buf)

    def dim(self):
        return len(self.shape)

    def is_contiguous(self):
        return self.contiguous


FakeTensor.__module__ = "torch"  # how vattn tells a tensor without importing torch


class Base(unittest.TestCase):
    def setUp(self):
        self.c = make()

    def tearDown(self):
        self.c.cleanup()

    def state(self):
        st = self.c.stats()
        return st["active_slots"], st["live_tokens"], st["mapped_pages"]

    def refused(self, code, fn, *args, arg=None, regex=None):
        """fn(*args) raises VattnError with code, naming arg, and changes
        nothing the stats show."""
        before = self.state()
        with self.assertRaises(vattn.VattnError) as cm:
            fn(*args)
        e = cm.exception
        self.assertEqual(e.code, code, str(e))
        if arg is not None:
            self.assertEqual(e.arg, arg, str(e))
            self.assertIn(arg + ": ", str(e))
        if regex is not None:
            self.assertRegex(str(e), regex)
        self.assertEqual(self.state(), before, "a refused %s changed the cache" % getattr(fn, "__name__", fn))
        return e


class Issue(Base):
    """The cases the issue reported, each once."""

    def test_free_wide_index_keeps_slot_zero(self):
        c = self.c
        i = c.alloc_new_batch_idx(10)
        self.assertEqual(i, 0)
        c.step([10])
        e = self.refused(vattn.ERR_SLOT_RANGE, c.free_batch_idx, 2 ** 32, arg="batch_idx")
        self.assertIn("4294967296", str(e))
        self.assertEqual(c.stats()["active_slots"], 1)
        c.free_batch_idx(0)  # slot 0 was still active

    def test_step_length_beyond_int64(self):
        c = self.c
        c.alloc_new_batch_idx(10)
        c.step([10])
        self.refused(vattn.ERR_BAD_ARGUMENT, c.step, [2 ** 64 + 500], arg="seq_lens[0]", regex="out of range")
        self.assertEqual(c.stats()["live_tokens"], 10)

    def test_kv_pointers_wide_layer(self):
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.kv_pointers, 2 ** 32 + 1, arg="layer",
                     regex="4294967297 not in")

    def test_alloc_huge_length(self):
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.alloc_new_batch_idx, 2 ** 70, arg="seq_len")
        self.refused(vattn.ERR_CONTEXT_TOO_LONG, self.c.alloc_new_batch_idx, 2 ** 40, arg="seq_len")

    def test_step_string(self):
        self.c.alloc_new_batch_idx(1)
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.step, "100", arg="seq_lens", regex="got str")

    def test_step_dict(self):
        self.c.alloc_new_batch_idx(1)
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.step, {0: 5}, arg="seq_lens", regex="got dict")

    def test_alloc_float_and_bool(self):
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.alloc_new_batch_idx, 1.7, arg="seq_len", regex="got float")
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.alloc_new_batch_idx, True, arg="seq_len", regex="bool")


# Values that are not integers, each refused wherever an integer is wanted.
NOT_INTS = [True, False, 1.0, 1.7, float("nan"), "1", b"1", None, {0: 1}, [1], (1,), 1j, object()]
# Integers that do not fit in int64.
TOO_WIDE = [2 ** 63, -(2 ** 63) - 1, 2 ** 64, 2 ** 64 + 1, 2 ** 70, -(2 ** 70)]


class Scalars(Base):
    def calls(self):
        c = self.c
        return {"alloc_new_batch_idx/seq_len": c.alloc_new_batch_idx, "free_batch_idx/batch_idx": c.free_batch_idx,
                "kv_pointers/layer": c.kv_pointers, "wait_layer/layer": c.wait_layer,
                "reserve_physical_pages/num_bytes": c.reserve_physical_pages}

    def test_types_and_widths(self):
        for name, fn in self.calls().items():
            arg = name.split("/")[1]
            for v in NOT_INTS + TOO_WIDE:
                with self.subTest(call=name, value=v):
                    e = self.refused(vattn.ERR_BAD_ARGUMENT, fn, v, arg=arg)
                    self.assertIsInstance(e, vattn.BadArgumentError)

    def test_ranges_checked_by_the_library(self):
        c = self.c
        cases = [
            (c.free_batch_idx, -1, vattn.ERR_SLOT_RANGE, "batch_idx"),
            (c.free_batch_idx, BATCH, vattn.ERR_SLOT_RANGE, "batch_idx"),
            (c.free_batch_idx, 2 ** 63 - 1, vattn.ERR_SLOT_RANGE, "batch_idx"),
            (c.free_batch_idx, -(2 ** 63), vattn.ERR_SLOT_RANGE, "batch_idx"),
            (c.free_batch_idx, 0, vattn.ERR_SLOT_INACTIVE, "batch_idx"),
            (c.kv_pointers, LAYERS, vattn.ERR_BAD_ARGUMENT, "layer"),
            (c.kv_pointers, -(2 ** 63), vattn.ERR_BAD_ARGUMENT, "layer"),
            (c.wait_layer, 2 ** 32, vattn.ERR_BAD_ARGUMENT, "layer"),
            (c.alloc_new_batch_idx, -1, vattn.ERR_BAD_LENGTH, "seq_len"),
            (c.alloc_new_batch_idx, CTX + 1, vattn.ERR_CONTEXT_TOO_LONG, "seq_len"),
            (c.reserve_physical_pages, -1, vattn.ERR_BAD_ARGUMENT, "num_bytes"),
            (c.reserve_physical_pages, 0, vattn.ERR_BAD_ARGUMENT, "num_bytes"),
        ]
        for fn, v, code, arg in cases:
            with self.subTest(call=fn.__name__, value=v):
                self.refused(code, fn, v, arg=arg)
        e = self.refused(vattn.ERR_BAD_ARGUMENT, c.reserve_physical_pages, 0)
        self.assertIn("bad byte count: zero bytes", str(e))
        self.assertNotIn("sequence length", str(e))

    def test_index_types_accepted(self):
        c = self.c
        i = c.alloc_new_batch_idx(Index(5))
        self.assertEqual(c.kv_pointers(Index(1)), c.kv_pointers(1))
        c.wait_layer(Index(LAYERS - 1))
        c.reserve_physical_pages(Index(2 << 20))
        c.free_batch_idx(Index(i))

    def test_failed_reserve_is_not_counted(self):
        c = self.c
        self.refused(vattn.ERR_OUT_OF_PAGES, c.reserve_physical_pages, 1 << 40)
        st = c.stats()
        self.assertEqual((st["reserved_pages"], st["alloc_pages"], st["alloc_calls"]), (0, 0, 1))

    def test_init_arguments(self):
        good = dict(num_layers=1, num_kv_heads=1, head_size=64, max_batch_size=1, max_context_length=16,
                    device=0, dtype="float16", page_size="2M")
        bad = [("num_layers", True), ("num_kv_heads", 1.0), ("head_size", "64"), ("max_batch_size", 2 ** 31),
               ("max_context_length", 2 ** 32 + 16), ("device", True), ("device", 2 ** 40), ("device", -1),
               ("device", 1.0), ("page_size", True), ("page_size", 2.0 * 2 ** 20), ("page_size", 2 ** 64),
               ("page_size", "99999999999999999999999M"), ("dtype", 2), ("megacache", "no"), ("grow_pool", 2),
               ("eager_reclaim", None), ("sim_gpu_memory", 2 ** 64), ("sim_gpu_memory", -1),
               ("sim_gpu_memory", 1.5), ("backend", 5)]
        for name, v in bad:
            with self.subTest(arg=name, value=v):
                kw = dict(good, backend="sim")
                kw[name] = v
                with self.assertRaises(vattn.BadArgumentError) as cm:
                    vattn.KVCache(**kw)
                self.assertEqual(cm.exception.arg, name)
        kv = vattn.KVCache(**dict(good, backend="sim", megacache=1, grow_pool=False, device=Index(0)))
        kv.cleanup()

    def test_step_eager_reclaim_flag(self):
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.step, [], "yes", arg="eager_reclaim")
        self.refused(vattn.ERR_BAD_ARGUMENT, self.c.step, [], True, arg="eager_reclaim")
        self.c.step([], 0)

    def test_module_functions_check_too(self):
        vattn.init_kvcache(LAYERS, HEADS, DIM, BATCH, CTX, "cuda:0", "bfloat16", "2M", backend="sim",
                           sim_gpu_memory=1 << 30, grow_pool=True)
        try:
            i = vattn.alloc_new_batch_idx(3)
            vattn.step([3 if s == i else 0 for s in range(BATCH)])
            for fn, v in [(vattn.free_batch_idx, 2 ** 32 + i), (vattn.alloc_new_batch_idx, 1.7),
                          (vattn.step, "100"), (vattn.step_async, {i: 5}), (vattn.step_layered, [True]),
                          (vattn.wait_layer, 2 ** 64), (vattn.reserve_physical_pages, "1G")]:
                with self.subTest(call=fn.__name__, value=v):
                    with self.assertRaises(vattn.VattnError):
                        fn(v)
            self.assertEqual(vattn.stats()["active_slots"], 1)
            self.assertEqual(vattn.stats()["live_tokens"], 3)
        finally:
            vattn.cleanup()


class Sequences(Base):
    def setUp(self):
        super().setUp()
        self.a = self.c.alloc_new_batch_idx(1)
        self.b = self.c.alloc_new_batch_idx(1)
        self.assertEqual((self.a, self.b), (0, 1))

    def accepted(self, seq, live):
        for op in (self.c.step, self.c.step_async, self.c.step_layered):
            with self.subTest(type=type(seq).__name__, op=op.__name__):
                op(seq)
                self.c.wait()
                self.assertEqual(self.c.stats()["live_tokens"], live)

    def test_accepted(self):
        mv = memoryview(array.array("q", [7, 8]))
        readonly = memoryview(bytes(array.array("q", [9, 10]))).cast("q")
        self.assertTrue(readonly.readonly)
        for seq, live in [([3, 4], 7), ((5, 6, 0), 11), (array.array("q", [1, 2, 0, 0]), 3),
                          ((ctypes.c_int64 * 2)(20, 30), 50), (mv, 15), (readonly, 19),
                          ([Index(2), Index(2)], 4), (FakeTensor([40, 2]), 42), ([], 0), (array.array("q"), 0),
                          (FakeTensor([]), 0), (memoryview(array.array("q")), 0)]:
            self.accepted(seq, live)

    def test_numpy(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy not installed: the buffer path is tested with array('q') and memoryview")
        self.accepted(np.array([3, 4], dtype=np.int64), 7)
        self.accepted(np.array([3, 4, 5, 6], dtype=np.int64)[:2], 7)
        for bad in (np.array([3, 4], dtype=np.int32), np.array([3.0, 4.0]), np.array([[3, 4]], dtype=np.int64),
                    np.array([3, 0, 4, 0], dtype=np.int64)[::2], np.array([3, 4], dtype=np.uint64)):
            with self.subTest(dtype=str(bad.dtype), shape=bad.shape):
                self.refused(vattn.ERR_BAD_ARGUMENT, self.c.step, bad, arg="seq_lens")

    def test_refused_containers(self):
        c = self.c
        two_d = memoryview(array.array("q", [1, 2, 3, 4])).cast("B").cast("q", (2, 2))
        strided = memoryview(array.array("q", [1, 0, 2, 0]))[::2]
        for seq, regex in [("100", "got str"), (b"\x01\x00", "got bytes"), (bytearray(8), "got bytearray"),
                           ({0: 5}, "got dict"), ({1, 2}, "got set"), (range(2), "got range"),
                           ((x for x in [1, 2]), "got generator"), (5, "got int"), (None, "got NoneType"),
                           (array.array("i", [1, 2]), r"array\('i'\)"), (array.array("d", [1.0]), r"array\('d'\)"),
                           (array.array("Q", [1]), r"array\('Q'\)"),
                           (memoryview(array.array("i", [1, 2])), "format 'i'"), (two_d, "one contiguous dimension"),
                           (strided, "one contiguous dimension"), ((ctypes.c_int32 * 2)(1, 2), "int64 elements"),
                           (FakeTensor([1, 2], dtype="int32"), "int32 tensor"),
                           (FakeTensor([1, 2], device="cuda"), "want a CPU tensor"),
                           (FakeTensor([1, 2], shape=(1, 2)), "one contiguous dimension"),
                           (FakeTensor([1, 2], contiguous=False), "one contiguous dimension")]:
            for op in (c.step, c.step_async, c.step_layered):
                with self.subTest(seq=type(seq).__name__, op=op.__name__):
                    self.refused(vattn.ERR_BAD_ARGUMENT, op, seq, arg="seq_lens", regex=regex)

    def test_refused_elements(self):
        for i, bad in enumerate(NOT_INTS + TOO_WIDE):
            seq = [1, bad] if i % 2 else (bad, 1)
            for op in (self.c.step, self.c.step_async, self.c.step_layered):
                with self.subTest(element=bad, op=op.__name__):
                    pos = 0 if isinstance(seq, tuple) else 1
                    self.refused(vattn.ERR_BAD_ARGUMENT, op, seq, arg="seq_lens[%d]" % pos)

    def test_ranges_checked_by_the_library(self):
        c = self.c
        for seq, code in [([-1], vattn.ERR_BAD_LENGTH), ([CTX + 1], vattn.ERR_CONTEXT_TOO_LONG),
                          ([2 ** 63 - 1], vattn.ERR_CONTEXT_TOO_LONG), ([-(2 ** 63)], vattn.ERR_BAD_LENGTH),
                          ([0, 0, 5], vattn.ERR_SLOT_INACTIVE), ([0] * (BATCH + 1), vattn.ERR_SLOT_RANGE),
                          (array.array("q", [0] * 1000), vattn.ERR_SLOT_RANGE),
                          (FakeTensor([1, 1, 1, 1, 1]), vattn.ERR_SLOT_RANGE)]:
            for op in (c.step, c.step_async, c.step_layered):
                with self.subTest(seq=type(seq).__name__, n=len(getattr(seq, "buf", seq)), op=op.__name__):
                    self.refused(code, op, seq, arg="seq_lens")

    def test_buffer_updated_in_place(self):
        """The zero-copy path: one array('q') the caller rewrites between
        steps; each step sees the values of the moment."""
        lens = array.array("q", [0] * BATCH)
        for n in range(1, 200, 37):
            lens[self.a], lens[self.b] = n, 2 * n
            self.c.step_async(lens)
            self.c.wait()
            self.assertEqual(self.c.stats()["live_tokens"], 3 * n)


class Unavailable(unittest.TestCase):
    def test_names_the_simulator(self):
        if os.path.exists("/dev/nvidiactl"):
            self.skipTest("a GPU is present: cudavmm is available")
        with self.assertRaises(vattn.UnavailableError) as cm:
            vattn.KVCache(1, 1, 64, 1, 16, 0, "float16", "2M", backend="cudavmm")
        self.assertIn("VATTN_BACKEND=sim", str(cm.exception))


def scalar(rnd, valid):
    """A random argument: one of valid's ints, a boundary, or junk."""
    k = rnd.random()
    if k < 0.55:
        return rnd.choice(valid)
    if k < 0.65:
        return Index(rnd.choice(valid))
    if k < 0.8:
        return rnd.choice([-1, 0, 1, BATCH, LAYERS, CTX, CTX + 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 63 - 1,
                           -(2 ** 63)])
    return rnd.choice(NOT_INTS + TOO_WIDE)


def int_value(v):
    """v's integer value if vattn must accept it as one, else None."""
    if type(v) is int:
        return v
    if isinstance(v, Index):
        return v.v
    return None


def fits(v):
    return v is not None and -(2 ** 63) <= v < 2 ** 63


class Properties(unittest.TestCase):
    """Random calls, seeded, against a model of the slots: a call whose
    arguments are valid succeeds and does what the model says; any other
    raises VattnError and changes nothing."""

    def test_random_calls(self):
        for seed in range(12):
            with self.subTest(seed=seed):
                self.run_seed(seed)

    def run_seed(self, seed):
        rnd = random.Random(seed)
        c = make()
        k_ptrs = [c.kv_pointers(layer) for layer in range(LAYERS)]
        model = {}  # active slot -> length at the last step
        try:
            for n in range(250):
                what = rnd.randrange(6)
                before = (len(model), sum(model.values()))
                try:
                    ok = self.one(rnd, c, what, model, k_ptrs)
                except vattn.VattnError as e:
                    ok = e
                st = c.stats()
                now = (st["active_slots"], st["live_tokens"])
                self.assertEqual(now, (len(model), sum(model.values())),
                                 "seed %d call %d (%d): the cache and the model differ after %r" % (seed, n, what, ok))
                if isinstance(ok, vattn.VattnError):
                    self.assertEqual(now, before, "seed %d call %d: a refused call changed the cache: %s" % (seed, n, ok))
        finally:
            c.cleanup()

    def one(self, rnd, c, what, model, k_ptrs):
        """Makes one call; returns normally only when the call succeeded and
        the model predicted success; raises VattnError when the library
        refused and the model predicted that (a mismatch fails the test)."""
        if what == 0:
            v = scalar(rnd, list(range(0, CTX + 1, 97)))
            iv = int_value(v)
            expect = fits(iv) and 0 <= iv <= CTX and len(model) < BATCH
            return self.expect(expect, lambda: model.setdefault(c.alloc_new_batch_idx(v), 0), v)
        if what == 1:
            v = scalar(rnd, sorted(model) or [0])
            iv = int_value(v)
            return self.expect(fits(iv) and iv in model, lambda: (c.free_batch_idx(v), model.pop(iv)), v)
        if what in (2, 3):
            seq, want = self.lengths(rnd, model)
            op = c.step if what == 2 else rnd.choice([c.step_async, c.step_layered])

            def call():
                op(seq)
                c.wait()
                self.assertIsNotNone(want, "%s accepted %r" % (op.__name__, seq))
                for s in model:
                    model[s] = want[s] if s < len(want) else 0
            return self.expect(want is not None, call, seq)
        if what == 4:
            v = scalar(rnd, list(range(LAYERS)))
            iv = int_value(v)
            expect = fits(iv) and 0 <= iv < LAYERS

            def call():
                self.assertEqual(c.kv_pointers(v), k_ptrs[iv])
                c.wait_layer(v)
            return self.expect(expect, call, v)
        v = scalar(rnd, [1, 2 << 20, 64 << 20])
        iv = int_value(v)
        return self.expect(fits(iv) and 0 < iv <= 64 << 20, lambda: c.reserve_physical_pages(v), v)

    def expect(self, valid, call, arg):
        if valid:
            call()  # must not raise
            return None
        with self.assertRaises(vattn.VattnError, msg="accepted %r" % (arg,)) as cm:
            call()
        raise cm.exception

    def lengths(self, rnd, model):
        """A random seq_lens and, when vattn must accept it, the lengths it
        asks for (else None)."""
        n = rnd.randrange(BATCH + 2)
        vals = [rnd.choice([0, 1, 100, 513, CTX]) if s in model else 0 for s in range(n)]
        valid = n <= BATCH
        k = rnd.random()
        if k < 0.15 and n:  # one junk element
            i = rnd.randrange(n)
            vals[i] = scalar(rnd, [0])
            iv = int_value(vals[i])
            valid = valid and fits(iv) and (iv == 0 or (0 < iv <= CTX and i in model))
        elif k < 0.25 and n:  # a length for an inactive slot, or out of range
            i = rnd.randrange(n)
            vals[i] = rnd.choice([-1, CTX + 1, 2 ** 63 - 1, 5])
            valid = valid and vals[i] == 5 and i in model
        want = [int_value(v) for v in vals] if valid else None
        k = rnd.random()
        if k < 0.1:
            return rnd.choice(["12", {0: 1}, {1, 2}, None, 7, b"\0" * 8]), None
        if k < 0.4 or not all(type(v) is int and fits(v) for v in vals):
            return (vals if rnd.random() < 0.7 else tuple(vals)), want
        if k < 0.6:
            return array.array("q", vals), want
        if k < 0.7:
            return (ctypes.c_int64 * n)(*vals), want
        if k < 0.8:
            return array.array("i", [0] * n), None
        if k < 0.9:
            return FakeTensor(vals), want
        return FakeTensor(vals, device="cuda"), None


class Threads(unittest.TestCase):
    def test_steps_from_many_threads_then_cleanup(self):
        """Four threads step at once while a fifth cleans up: no hang, and
        every error is a VattnError about the cache being gone."""
        c = make()
        errors, calls = [], [0]
        started = threading.Event()

        def worker(g):
            try:
                slot = c.alloc_new_batch_idx(1)
                lens = array.array("q", [0] * BATCH)
                for n in range(1, 100000):
                    lens[slot] = 1 + n % CTX
                    (c.step_async if n % 2 else c.step)(lens)
                    c.stats()
                    calls[0] += 1
                    if calls[0] > 200:
                        started.set()
            except vattn.VattnError as e:
                if e.code != vattn.ERR_BAD_HANDLE:
                    errors.append(e)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                started.set()

        ts = [threading.Thread(target=worker, args=(g,)) for g in range(4)]
        for t in ts:
            t.start()
        started.wait()
        c.cleanup()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])


if __name__ == "__main__":
    unittest.main()
