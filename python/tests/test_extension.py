"""The C extension (python/vattn/_fast.c): it takes exactly the lengths
the Python path accepts and passes them on unchanged, and leaves everything
else to that path (which raises the argument's error), never calling the
library with it. The other test files run through whichever path is in
use; TestPython runs them once through each:

    scripts/build-python-ext.sh
    VATTN_LIB=build/libvattn.so VATTN_REQUIRE_EXT=1 python3 -m unittest discover -s python/tests -v
    VATTN_LIB=build/libvattn.so VATTN_NO_EXT=1 python3 -m unittest discover -s python/tests -v

VATTN_REQUIRE_EXT=1 makes a missing or stale extension a failure here
rather than a silent fall back to ctypes.
"""

import array
import ctypes
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import vattn  # noqa: E402
from test_arguments import NOT_INTS, TOO_WIDE, FakeTensor, Index  # noqa: E402

LAYERS, HEADS, DIM, BATCH, CTX = 4, 8, 128, 4, 1024


def make():
    return vattn.KVCache(LAYERS, HEADS, DIM, BATCH, CTX, 0, "bfloat16", "2M", backend="sim",
                         sim_gpu_memory=1 << 30, grow_pool=True)


class TorchDtype:
    """Stands for torch.dtype: a type of module torch, so the package
    registers the tensor type that carries it with the extension."""

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


TorchDtype.__module__ = "torch"
INT64, INT32 = TorchDtype("int64"), TorchDtype("int32")


class TorchTensor(FakeTensor):
    """torch.Tensor's part that vattn reads, with torch's dtype identity
    (one int64 object) and is_cpu, over an array('q')."""

    def __init__(self, values, dtype=INT64, device="cpu", shape=None, contiguous=True):
        super().__init__(values, device=device, shape=shape, contiguous=contiguous)
        self.dtype = dtype

    @property
    def is_cpu(self):
        return self.device.type == "cpu"


TorchTensor.__module__ = "torch"


class Extension(unittest.TestCase):
    def setUp(self):
        self.c = make()
        self.in_use, self.detail = vattn.extension()

    def tearDown(self):
        self.c.cleanup()

    def test_in_use_as_asked(self):
        if os.environ.get("VATTN_NO_EXT", "") not in ("", "0"):
            self.assertFalse(self.in_use, self.detail)
            self.assertIsNone(self.c._steps)
            self.assertIn("VATTN_NO_EXT", self.detail)
        elif os.environ.get("VATTN_REQUIRE_EXT"):
            self.assertTrue(self.in_use, "VATTN_REQUIRE_EXT is set, but the step calls go through ctypes: "
                            + self.detail)
            self.assertIsNotNone(self.c._steps)
        elif not self.in_use:
            self.skipTest("the extension is not in use: " + self.detail)

    def steps(self):
        if not self.in_use:
            self.skipTest("the extension is not in use: " + self.detail)
        return self.c._steps

    def live(self):
        return self.c.stats()["live_tokens"]

    def test_takes_what_python_accepts(self):
        steps = self.steps()
        a, b = self.c.alloc_new_batch_idx(1), self.c.alloc_new_batch_idx(1)
        self.assertEqual((a, b), (0, 1))
        readonly = memoryview(bytes(array.array("q", [9, 10]))).cast("q")
        cases = [([3, 4], 7), ((5, 6, 0), 11), ([], 0), ((), 0), (array.array("q", [1, 2, 0, 0]), 3),
                 (array.array("l", [2, 2]), 4), (array.array("q"), 0), ((ctypes.c_int64 * 2)(20, 30), 50),
                 (memoryview(array.array("q", [7, 8])), 15), (readonly, 19),
                 (memoryview(array.array("q", [5, 6, 7, 8]))[:2], 11)]
        for seq, live in cases:
            for call in range(3):
                with self.subTest(seq=seq, call=call):
                    self.assertEqual(steps.code(call, seq), 0)
                    self.c.wait()
                    self.assertEqual(self.live(), live)

    def test_leaves_the_rest_to_python(self):
        """Every input the extension does not take: -1, the cache as it
        was (the library was not called), and the public call still gives
        the Python path's answer."""
        steps = self.steps()
        self.c.alloc_new_batch_idx(1)
        self.c.step([1])
        two_d = memoryview(array.array("q", [1, 2, 3, 4])).cast("B").cast("q", (2, 2))
        strided = memoryview(array.array("q", [1, 0, 2, 0]))[::2]
        refused = [[1, bad] for bad in NOT_INTS + TOO_WIDE] + [
            "100", b"\x01" * 8, bytearray(8), {0: 5}, {1, 2}, range(2), 5, None, 1.5,
            array.array("i", [1, 2]), array.array("Q", [1]), array.array("d", [1.0]),
            memoryview(array.array("i", [1, 2])), two_d, strided, memoryview(array.array("q"))[::2],
            (ctypes.c_int32 * 2)(1, 2),
            (ctypes.c_uint64 * 2)(1, 2), memoryview(array.array("q", [1])).cast("B"),
            FakeTensor([1]), [2 ** 63], [-(2 ** 63) - 1]]
        accepted_by_python = [[Index(3)], (Index(2), 0)]
        for seq in refused + accepted_by_python:
            for call in range(3):
                with self.subTest(seq=repr(seq), call=call):
                    before = self.c.stats()
                    self.assertEqual(steps.code(call, seq), -1)
                    after = self.c.stats()
                    self.assertEqual((after["live_tokens"], after["fg_map_calls"]),
                                     (before["live_tokens"], before["fg_map_calls"]))
        for seq, live in ((accepted_by_python[0], 3), (accepted_by_python[1], 2)):
            self.c.step(seq)
            self.assertEqual(self.live(), live)

    def test_calls_bound_to_the_extension(self):
        """With the extension, the cache's step calls are its methods
        (no Python frame on the way); every way of calling them that the
        Python methods take still works, and after cleanup the methods
        answer as without the extension."""
        steps = self.steps()
        c = self.c
        for name in ("step", "step_async", "step_layered"):
            self.assertEqual(getattr(c, name), getattr(steps, name))
        i = c.alloc_new_batch_idx(1)
        lens = [0] * BATCH
        for n, call in enumerate([lambda: c.step(lens), lambda: c.step(lens, None), lambda: c.step(lens, False),
                                  lambda: c.step(lens, 0), lambda: c.step(seq_lens=lens),
                                  lambda: c.step(lens, eager_reclaim=False), lambda: c.step_async(seq_lens=lens),
                                  lambda: c.step_layered(seq_lens=lens), lambda: vattn.KVCache.step(c, lens)]):
            lens[i] = 10 + n
            with self.subTest(n=n):
                call()
                c.wait()
                self.assertEqual(self.live(), 10 + n)
        with self.assertRaises(TypeError):
            c.step()
        with self.assertRaises(TypeError):
            c.step_async(lens, None)
        with self.assertRaises(TypeError):
            c.step(lens, unknown=1)
        for bad in (True, "no", 2):
            with self.assertRaises(vattn.BadArgumentError) as cm:
                c.step(lens, bad)
            self.assertEqual(cm.exception.arg, "eager_reclaim")
        c.cleanup()
        self.assertEqual(c.step.__func__, vattn.KVCache.step)
        for call in (c.step, c.step_async, c.step_layered):
            with self.assertRaisesRegex(vattn.VattnError, "cleaned up"):
                call(lens)
        # A stale reference to the calls: the library refuses the handle.
        self.assertEqual(steps.code(0, lens), vattn.ERR_BAD_HANDLE)
        with self.assertRaises(vattn.VattnError) as cm:
            steps.step(lens)
        self.assertEqual(cm.exception.code, vattn.ERR_BAD_HANDLE)
        with self.assertRaises(vattn.BadArgumentError):
            steps.step(["x"])

    def test_eager_cache(self):
        c = vattn.KVCache(LAYERS, HEADS, DIM, BATCH, CTX, 0, "bfloat16", "2M", backend="sim",
                          sim_gpu_memory=1 << 30, grow_pool=True, eager_reclaim=True)
        try:
            if c._steps is None:
                self.skipTest("the extension is not in use: " + self.detail)
            i = c.alloc_new_batch_idx(1)
            c.step([5 if s == i else 0 for s in range(BATCH)], True)
            self.assertEqual(c.stats()["live_tokens"], 5)
            with self.assertRaises(vattn.BadArgumentError):
                c.step([], False)
        finally:
            c.cleanup()

    def test_library_status(self):
        """What the extension passes on, the library checks; its status
        comes back and the package raises the same error as through
        ctypes."""
        steps = self.steps()
        self.c.alloc_new_batch_idx(1)
        for seq, code in [([CTX + 1], vattn.ERR_CONTEXT_TOO_LONG), ([-1], vattn.ERR_BAD_LENGTH),
                          ([0, 0, 5], vattn.ERR_SLOT_INACTIVE), ([0] * (BATCH + 1), vattn.ERR_SLOT_RANGE),
                          ([2 ** 63 - 1], vattn.ERR_CONTEXT_TOO_LONG), ([-(2 ** 63)], vattn.ERR_BAD_LENGTH)]:
            with self.subTest(seq=seq):
                self.assertEqual(steps.code(0, seq), code)
                with self.assertRaises(vattn.VattnError) as cm:
                    self.c.step(seq)
                self.assertEqual((cm.exception.code, cm.exception.arg), (code, "seq_lens"))

    def test_time_step(self):
        """The benchmark's C loop: vattn_step from C, timed per call."""
        steps = self.steps()
        i = self.c.alloc_new_batch_idx(1)
        lens = array.array("q", [0] * BATCH)
        lens[i] = 9
        p50, p99 = steps.time_step(lens, 50)
        self.assertTrue(0 < p50 <= p99, (p50, p99))
        self.assertEqual(self.live(), 9)
        with self.assertRaisesRegex(RuntimeError, "status %d" % vattn.ERR_CONTEXT_TOO_LONG):
            steps.time_step([CTX + 1], 10)
        for bad, iters in (([True], 10), (lens, 0), (lens, 10 ** 8)):
            with self.assertRaises(ValueError):
                steps.time_step(bad, iters)
        self.assertEqual(self.live(), 9)

    def test_long_sequences(self):
        """Past the extension's stack buffer the lengths are converted on
        the heap: checked and passed the same."""
        steps = self.steps()
        self.c.alloc_new_batch_idx(1)
        n = vattn._ext.STACK_LENS + 7
        self.assertEqual(steps.code(0, [1] + [0] * (n - 1)), vattn.ERR_SLOT_RANGE)
        self.assertEqual(steps.code(0, tuple([0] * (n - 1) + [True])), -1)
        self.assertEqual(steps.code(0, [0] * (n - 1) + [2 ** 64]), -1)
        self.assertEqual(steps.code(0, [5]), 0)
        self.assertEqual(self.live(), 5)

    def test_torch_tensor_registered(self):
        """A tensor of torch's own type (dtype of module torch) goes the
        Python path once, which registers its type; from then on the
        extension reads such tensors itself, with the same checks."""
        steps = self.steps()
        ext = vattn._ext
        # Forgotten after the test: torch's own type registers itself again.
        self.addCleanup(ext.register_tensor, None, None)
        ext.register_tensor(None, None)
        self.c.alloc_new_batch_idx(1)
        self.c.alloc_new_batch_idx(1)
        self.assertEqual(steps.code(0, TorchTensor([3, 4])), -1)
        self.c.step(TorchTensor([3, 4]))  # the Python path, which registers the type
        self.assertEqual(self.live(), 7)
        self.assertIs(ext.tensor_type(), TorchTensor)
        self.assertEqual(steps.code(0, TorchTensor([5, 6])), 0)
        self.assertEqual(self.live(), 11)
        self.assertEqual(steps.code(1, TorchTensor([])), 0)
        self.c.wait()
        self.assertEqual(self.live(), 0)
        self.assertEqual(steps.code(0, TorchTensor([0] * (BATCH + 1))), vattn.ERR_SLOT_RANGE)
        for bad, regex in [(TorchTensor([1, 2], dtype=INT32), "int32 tensor"),
                           (TorchTensor([1, 2], dtype=TorchDtype("int64")), None),  # not torch.int64 itself
                           (TorchTensor([1, 2], device="cuda"), "want a CPU tensor"),
                           (TorchTensor([1, 2], shape=(1, 2)), "one contiguous dimension"),
                           (TorchTensor([1, 2], contiguous=False), "one contiguous dimension")]:
            with self.subTest(dtype=str(bad.dtype), device=str(bad.device), shape=bad.shape):
                self.assertEqual(steps.code(0, bad), -1)
                if regex is None:
                    self.c.step(bad)  # the Python path accepts it by name
                    self.assertEqual(self.live(), 3)
                    continue
                with self.assertRaisesRegex(vattn.BadArgumentError, regex):
                    self.c.step(bad)
        # A look-alike whose dtype is not torch's is never registered.
        ext.register_tensor(None, None)
        self.c.step(FakeTensor([1, 1]))
        self.assertIsNone(ext.tensor_type())

    def test_same_answers_as_python(self):
        """Random lengths of every kind, each passed to a cache bound to the
        extension and to a twin on the Python path in the same state: the
        same outcome, to the error's class, code, argument and message."""
        self.steps()
        twin = make()
        self.addCleanup(twin.cleanup)
        twin._bind_ext(False)
        for c in (self.c, twin):
            c.alloc_new_batch_idx(1)
            c.alloc_new_batch_idx(1)
            c.free_batch_idx(0)  # slot 0 inactive, slot 1 active
        rnd = random.Random(7)
        values = [0, 1, 5, CTX, CTX + 1, -1, 2 ** 63 - 1, -(2 ** 63)] + NOT_INTS + TOO_WIDE + [Index(3)]

        def one():
            n = rnd.randrange(BATCH + 3)
            if rnd.random() < 0.5:  # lengths the library takes: slot 1's, the rest 0
                n = min(n, BATCH)
                ints = [rnd.choice([1, 7, CTX]) if i == 1 else 0 for i in range(n)]
            else:
                ints = [rnd.choice([0, 0, 1, 7, CTX, CTX + 1, -1]) for _ in range(n)]
            k = rnd.randrange(9)
            if k == 0:
                return [rnd.choice(values) for _ in range(n)]
            if k == 1:
                return tuple(ints)
            if k == 2:
                return array.array(rnd.choice("qlQiIbd"), [abs(v) % 100 for v in ints])
            if k == 3:
                return (rnd.choice([ctypes.c_int64, ctypes.c_uint64, ctypes.c_int32]) * n)(*[abs(v) % 100 for v in ints])
            if k == 4:
                return memoryview(array.array("q", ints + ints))[::rnd.choice([1, 2])]
            if k == 5:
                return TorchTensor(ints, dtype=rnd.choice([INT64, INT32]), device=rnd.choice(["cpu", "cuda"]),
                                   contiguous=rnd.random() < 0.8)
            if k == 6:
                return FakeTensor(ints)
            if k == 7:
                return rnd.choice(["12", b"\0" * 8, bytearray(16), {1: 2}, None, 3, 2.5, range(3)])
            return ints

        def outcome(c, op, seq):
            try:
                getattr(c, op)(seq)
                c.wait()
            except vattn.VattnError as e:
                return (type(e), e.code, e.arg, str(e))
            st = c.stats()
            return (st["active_slots"], st["live_tokens"], st["mapped_pages"])

        kinds = set()
        for n in range(1000):
            seq = one()
            op = rnd.choice(["step", "step_async", "step_layered"])
            with self.subTest(n=n, op=op, seq=repr(seq)[:80]):
                got = outcome(self.c, op, seq)
                self.assertEqual(got, outcome(twin, op, seq))
                kinds.add(got[1] if isinstance(got[0], type) else "ok")
        # Both successes and every kind of refusal were compared.
        self.assertLessEqual({"ok", vattn.ERR_BAD_ARGUMENT, vattn.ERR_SLOT_RANGE, vattn.ERR_SLOT_INACTIVE,
                              vattn.ERR_BAD_LENGTH, vattn.ERR_CONTEXT_TOO_LONG}, kinds)

    def test_numpy(self):
        steps = self.steps()
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy not installed: the buffer path is tested with array('q') and memoryview")
        self.c.alloc_new_batch_idx(1)
        self.c.alloc_new_batch_idx(1)
        self.assertEqual(steps.code(0, np.array([3, 4], dtype=np.int64)), 0)
        self.assertEqual(self.live(), 7)
        self.assertEqual(steps.code(0, np.array([5, 6, 7, 8], dtype=np.int64)[:2]), 0)
        self.assertEqual(self.live(), 11)
        for bad in (np.array([3, 4], dtype=np.int32), np.array([3.0, 4.0]), np.array([[3, 4]], dtype=np.int64),
                    np.array([3, 0, 4, 0], dtype=np.int64)[::2], np.array([3, 4], dtype=np.uint64),
                    np.array([3, 4], dtype=">i8")):
            with self.subTest(dtype=str(bad.dtype), shape=bad.shape):
                self.assertEqual(steps.code(0, bad), -1)
                with self.assertRaises(vattn.BadArgumentError):
                    self.c.step(bad)

    def test_torch(self):
        steps = self.steps()
        try:
            import torch
        except ImportError:
            self.skipTest("torch not installed: the tensor path is tested with a look-alike")
        self.c.alloc_new_batch_idx(1)
        self.c.alloc_new_batch_idx(1)
        self.c.step(torch.tensor([3, 4], dtype=torch.int64))  # registers torch.Tensor, if not yet
        self.assertIs(vattn._ext.tensor_type(), torch.Tensor)
        self.assertEqual(steps.code(0, torch.tensor([5, 6], dtype=torch.int64)), 0)
        self.assertEqual(self.live(), 11)
        self.assertEqual(steps.code(0, torch.tensor([9, 9, 5, 6], dtype=torch.int64)[2:]), 0)
        self.assertEqual(self.live(), 11)
        self.assertEqual(steps.code(0, torch.zeros(0, dtype=torch.int64)), 0)
        self.assertEqual(self.live(), 0)
        bad = [torch.tensor([1, 2], dtype=torch.int32), torch.tensor([[1, 2]], dtype=torch.int64),
               torch.tensor([1, 0, 2, 0], dtype=torch.int64)[::2], torch.tensor([1.0, 2.0])]
        if torch.cuda.is_available():
            bad.append(torch.tensor([1, 2], dtype=torch.int64, device="cuda"))
        for t in bad:
            with self.subTest(dtype=str(t.dtype), shape=tuple(t.shape), device=str(t.device)):
                self.assertEqual(steps.code(0, t), -1)
                with self.assertRaises(vattn.BadArgumentError):
                    self.c.step(t)


if __name__ == "__main__":
    unittest.main()
