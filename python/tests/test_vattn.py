"""Tests of the vattn Python module against the real libvattn.so, on the
simulator backend (and, where torch and a GPU are present, cudavmm).

    VATTN_LIB=build/libvattn.so python3 -m unittest discover -s python/tests -v
"""

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import vattn  # noqa: E402

MB = 1 << 20
LAYERS, HEADS, DIM, BATCH, CTX = 4, 8, 128, 4, 1024


def make(**kw):
    args = dict(backend="sim", sim_gpu_memory=1 << 30)
    args.update(kw)
    return vattn.KVCache(LAYERS, HEADS, DIM, BATCH, CTX, 0, "bfloat16", "2M", **args)


class ModuleAPI(unittest.TestCase):
    """The vAttention-style module functions, in a server's order."""

    def tearDown(self):
        vattn.cleanup()

    def test_lifecycle(self):
        kv = vattn.init_kvcache(LAYERS, HEADS, DIM, BATCH, CTX, "cuda:0", "torch.bfloat16", 2 * MB,
                                backend="sim", sim_gpu_memory=1 << 30)
        self.assertEqual(len(kv), 2 * LAYERS)
        ks, vs = kv[:LAYERS], kv[LAYERS:]
        self.assertEqual(ks[0].shape, (BATCH, CTX, HEADS, DIM))
        self.assertEqual(ks[0].strides, (CTX * HEADS * DIM * 2, HEADS * DIM * 2, DIM * 2, 2))
        self.assertEqual(len({a.ptr for a in kv}), 2 * LAYERS, "every range distinct")
        cai = vs[1].__cuda_array_interface__
        self.assertEqual(cai["data"], (vs[1].ptr, False))
        self.assertEqual(cai["version"], 3)

        vattn.reserve_physical_pages(64 * MB)
        self.assertEqual(vattn.num_free_kvblocks(), 4)  # 32 pages, 8 per block
        i = vattn.alloc_new_batch_idx(100)
        lens = [0] * BATCH
        lens[i] = 100
        vattn.step(lens)
        st = vattn.stats()
        self.assertEqual(st["mapped_pages"], 8)
        self.assertEqual(st["live_tokens"], 100)
        self.assertEqual(vattn.num_free_kvblocks(), 3)
        lens[i] = 1024
        vattn.step_async(lens)
        vattn.wait()
        self.assertEqual(vattn.stats()["live_tokens"], 1024)
        j = vattn.alloc_new_batch_idx(500)
        lens[j] = 500
        vattn.step_layered(lens)
        for layer in range(LAYERS):
            vattn.wait_layer(layer)
        vattn.wait()
        st = vattn.stats()
        self.assertEqual(st["live_tokens"], 1524)
        self.assertGreaterEqual(st["bg_map_calls"], LAYERS - 1)
        vattn.free_batch_idx(j)
        vattn.free_batch_idx(i)
        self.assertEqual(vattn.stats()["active_slots"], 0)
        self.assertEqual(vattn.layout()["tokens_per_page"], 1024)
        vattn.cleanup()
        with self.assertRaisesRegex(vattn.VattnError, "call init_kvcache first"):
            vattn.num_free_kvblocks()

    def test_second_init_refused(self):
        vattn.init_kvcache(1, 1, 64, 1, 16, 0, "float16", "2M", backend="sim")
        with self.assertRaisesRegex(vattn.VattnError, "cleanup first"):
            vattn.init_kvcache(1, 1, 64, 1, 16, 0, "float16", "2M", backend="sim")


class Errors(unittest.TestCase):
    def setUp(self):
        self.c = make()

    def tearDown(self):
        self.c.cleanup()

    def expect(self, code, regex, fn, *args, cls=vattn.VattnError, **kw):
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code, code, str(cm.exception))
        self.assertRegex(str(cm.exception), regex)

    def test_config(self):
        self.expect(vattn.ERR_BAD_CONFIG, "layers must be positive", make_layers, 0)
        self.expect(vattn.ERR_BAD_ARGUMENT, "unsupported dtype", vattn.KVCache, 1, 1, 64, 1, 16, 0, "complex", "2M")
        self.expect(vattn.ERR_BAD_ARGUMENT, "device 'tpu'", vattn.KVCache, 1, 1, 64, 1, 16, "tpu", "float16", "2M")
        self.expect(vattn.ERR_BAD_ARGUMENT, "page size 'huge'", vattn.KVCache, 1, 1, 64, 1, 16, 0, "float16", "huge")
        self.expect(vattn.ERR_BAD_ARGUMENT, "num_layers: bad argument: -1 out of range", vattn.KVCache, -1, 1, 64, 1, 16, 0,
                    "float16", "2M")
        self.expect(vattn.ERR_BAD_ARGUMENT, "unknown backend", vattn.KVCache, 1, 1, 64, 1, 16, 0, "float16", "2M",
                    backend="tpu")
        self.expect(vattn.ERR_BAD_CONFIG, "page size", vattn.KVCache, 1, 1, 64, 1, 16, 0, "float16", 12345,
                    backend="sim")

    def test_unavailable(self):
        if os.path.exists("/dev/nvidiactl"):
            self.skipTest("a GPU is present: cudavmm is available")
        self.expect(vattn.ERR_UNAVAILABLE, "unavailable", vattn.KVCache, 1, 1, 64, 1, 16, 0, "float16", "2M",
                    backend="cudavmm", cls=vattn.UnavailableError)

    def test_slots(self):
        c = self.c
        self.expect(vattn.ERR_BAD_LENGTH, "bad sequence length", c.alloc_new_batch_idx, -1)
        self.expect(vattn.ERR_CONTEXT_TOO_LONG, "longer than max context", c.alloc_new_batch_idx, CTX + 1)
        self.expect(vattn.ERR_SLOT_RANGE, "out of range", c.free_batch_idx, BATCH)
        self.expect(vattn.ERR_SLOT_INACTIVE, "double free", c.free_batch_idx, 0)
        got = [c.alloc_new_batch_idx(1) for _ in range(BATCH)]
        self.assertEqual(sorted(got), list(range(BATCH)))
        self.expect(vattn.ERR_NO_FREE_SLOT, "all 4 slots active", c.alloc_new_batch_idx, 1, cls=vattn.NoFreeSlotError)

    def test_steps(self):
        c = self.c
        i = c.alloc_new_batch_idx(10)
        lens = [0] * BATCH
        lens[i] = 10
        self.expect(vattn.ERR_OUT_OF_PAGES, "reserve more", c.step, lens, cls=vattn.OutOfPagesError)
        self.expect(vattn.ERR_OUT_OF_PAGES, "out of", c.reserve_physical_pages, 2 << 30, cls=vattn.OutOfPagesError)
        self.expect(vattn.ERR_BAD_ARGUMENT, "negative byte count", c.reserve_physical_pages, -1)
        c.reserve_physical_pages(64 * MB)
        c.step(lens)
        self.expect(vattn.ERR_SLOT_RANGE, "5 lengths for 4 slots", c.step, [0] * 5)
        other = [0] * BATCH
        other[(i + 1) % BATCH] = 3
        self.expect(vattn.ERR_SLOT_INACTIVE, "not active", c.step_async, other)
        lens[i] = CTX + 1
        self.expect(vattn.ERR_CONTEXT_TOO_LONG, "longer than max context", c.step, lens)
        self.expect(vattn.ERR_BAD_ARGUMENT, "eager_reclaim", c.step, [0] * BATCH, True)
        c.step([0] * BATCH, False)

    def test_grow_pool(self):
        c = make(grow_pool=True)
        try:
            i = c.alloc_new_batch_idx(10)
            c.step([10 if k == i else 0 for k in range(BATCH)])  # no reservation: the step allocates
            self.assertEqual(c.stats()["reserved_pages"], 8)
        finally:
            c.cleanup()

    def test_shrink(self):
        c = make(grow_pool=True)
        try:
            i = c.alloc_new_batch_idx(10)
            j = c.alloc_new_batch_idx(10)
            c.step([10 if k in (i, j) else 0 for k in range(BATCH)])
            c.free_batch_idx(j)
            self.assertEqual(c.shrink(), 8)  # j's pages
            st = c.stats()
            self.assertEqual((st["reserved_pages"], st["mapped_pages"], st["idle_pages"]), (8, 8, 0))
            self.assertEqual(c.shrink(), 0)
        finally:
            c.cleanup()
        self.expect(vattn.ERR_BAD_HANDLE, "cleaned up", c.shrink)

    def test_pointers(self):
        self.expect(vattn.ERR_BAD_ARGUMENT, "layer: bad argument: .*layer out of range: 4 not in", self.c.kv_pointers, LAYERS)
        self.expect(vattn.ERR_BAD_ARGUMENT, "layer: bad argument: .*layer out of range: -1 not in", self.c.wait_layer, -1)
        self.expect(vattn.ERR_OUT_OF_PAGES, "reserve more", lambda: (self.c.alloc_new_batch_idx(5),
                    self.c.step_layered([5, 0, 0, 0])), cls=vattn.OutOfPagesError)

    def test_after_cleanup(self):
        self.c.cleanup()
        self.c.cleanup()  # idempotent
        self.expect(vattn.ERR_BAD_HANDLE, "cleaned up", self.c.step, [0])


def make_layers(n):
    return vattn.KVCache(n, HEADS, DIM, BATCH, CTX, 0, "bfloat16", "2M", backend="sim")


class Layouts(unittest.TestCase):
    """The arrays' shapes, byte strides and addresses against the library's
    layout and kv_pointers, in both layouts (sim: descriptions, never
    tensors)."""

    def check_per_layer(self, c, arrs):
        lay = c.layout
        self.assertEqual(len(arrs), 2 * LAYERS)
        for a in arrs:
            self.assertIsInstance(a, vattn.CudaArray)
            self.assertEqual(a.shape, (BATCH, CTX, HEADS, DIM))
            self.assertEqual(a.strides, (lay["slot_bytes"], lay["token_bytes"], DIM * 2, 2))
            self.assertEqual(a.__cuda_array_interface__["strides"], a.strides)
        for layer in range(LAYERS):
            self.assertEqual((arrs[layer].ptr, arrs[LAYERS + layer].ptr), c.kv_pointers(layer))

    def test_per_layer(self):
        c = make()
        try:
            lay = c.layout
            self.assertEqual(lay["ranges"], 2 * LAYERS)
            self.assertEqual(lay["token_bytes"], HEADS * DIM * 2)
            self.check_per_layer(c, c.tensors())
            self.check_per_layer(c, c.layer_tensors())
            self.check_per_layer(c, c.arrays(per_layer=True))
            with self.assertRaises(vattn.BadArgumentError) as cm:
                c.tensors(per_layer=False)  # no one tensor spans separate ranges
            self.assertEqual(cm.exception.arg, "per_layer")
            self.assertRegex(str(cm.exception), "needs megacache")
        finally:
            c.cleanup()

    def test_megacache(self):
        c = make(megacache=True)
        try:
            lay = c.layout
            self.assertEqual(lay["ranges"], 2)
            self.assertEqual(lay["layer_bytes"], HEADS * DIM * 2)
            self.assertEqual(lay["token_bytes"], LAYERS * lay["layer_bytes"])
            # vAttention's shape: one K and one V, [batch, context, layers, heads, dim].
            kv = c.tensors()
            self.assertEqual(len(kv), 2)
            self.assertEqual([a.ptr for a in kv], list(c.kv_pointers(0)))
            for a in kv:
                self.assertIsInstance(a, vattn.CudaArray)
                self.assertEqual(a.shape, (BATCH, CTX, LAYERS, HEADS, DIM))
                self.assertEqual(a.strides, (lay["slot_bytes"], lay["token_bytes"], lay["layer_bytes"], DIM * 2, 2))
                self.assertEqual(a.__cuda_array_interface__["shape"], a.shape)
                self.assertEqual(a.__cuda_array_interface__["strides"], a.strides)
            # Layer l of K (V) starts where the library says layer l's K (V) does.
            for layer in range(LAYERS):
                self.assertEqual(tuple(a.ptr + layer * a.strides[2] for a in kv), c.kv_pointers(layer))
            self.assertEqual(len(c.arrays()), 2)
            # The per-layer views alias them: the same bytes, without the layer axis.
            per = c.layer_tensors()
            self.check_per_layer(c, per)
            desc = lambda arrs: [(a.ptr, a.shape, a.strides) for a in arrs]  # noqa: E731
            self.assertEqual(desc(per), desc(c.tensors(per_layer=True)))
            for layer in range(LAYERS):
                for i, a in enumerate(kv):
                    v = per[i * LAYERS + layer]
                    self.assertEqual(v.ptr, a.ptr + layer * a.strides[2])
                    self.assertEqual(v.strides, a.strides[:2] + a.strides[3:])
            self.assertEqual(c.tensors(per_layer=False)[0].shape, kv[0].shape)
            with self.assertRaises(vattn.BadArgumentError) as cm:
                c.tensors(per_layer="yes")
            self.assertEqual(cm.exception.arg, "per_layer")
        finally:
            c.cleanup()

    def test_init_kvcache_shapes(self):
        args = (LAYERS, HEADS, DIM, BATCH, CTX, 0, "bfloat16", "2M")
        try:
            kv = vattn.init_kvcache(*args, megacache=True, backend="sim")
            self.assertEqual([a.shape for a in kv], [(BATCH, CTX, LAYERS, HEADS, DIM)] * 2)
            vattn.cleanup()
            kv = vattn.init_kvcache(*args, megacache=True, per_layer=True, backend="sim")
            self.assertEqual([a.shape for a in kv], [(BATCH, CTX, HEADS, DIM)] * (2 * LAYERS))
            vattn.cleanup()
            kv = vattn.init_kvcache(*args, backend="sim")
            self.assertEqual(len(kv), 2 * LAYERS)
            vattn.cleanup()
            # A refused per_layer leaves no cache behind.
            with self.assertRaises(vattn.BadArgumentError):
                vattn.init_kvcache(*args, per_layer=False, backend="sim")
            kv = vattn.init_kvcache(*args, backend="sim")
            self.assertEqual(len(kv), 2 * LAYERS)
        finally:
            vattn.cleanup()


class Threads(unittest.TestCase):
    def test_stats_while_stepping(self):
        c = make()
        c.reserve_physical_pages(64 * MB)
        errors = []
        stop = threading.Event()

        def stepper():
            try:
                for n in range(200):
                    i = c.alloc_new_batch_idx(1)
                    lens = [0] * BATCH
                    lens[i] = 1 + n % CTX
                    c.step_async(lens)
                    c.free_batch_idx(i)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                stop.set()

        def reader():
            try:
                while not stop.is_set():
                    c.stats()
                    c.num_free_kvblocks()
            except Exception as e:
                errors.append(e)

        ts = [threading.Thread(target=stepper), threading.Thread(target=reader), threading.Thread(target=reader)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        c.cleanup()
        self.assertEqual(errors, [])


class LengthsBuffer(unittest.TestCase):
    """lengths_buffer(): the persistent int64 buffer the step calls take
    without any conversion; the library still checks every length."""

    def test_buffer(self):
        c = make()
        try:
            buf = c.lengths_buffer()
            self.assertIs(c.lengths_buffer(), buf)
            self.assertEqual((buf.typecode, len(buf), sum(buf)), ("q", BATCH, 0))
            c.reserve_physical_pages(64 * MB)
            i = c.alloc_new_batch_idx(100)
            buf[i] = 100
            c.step(buf)
            self.assertGreater(c.stats()["mapped_pages"], 0)
            buf[i] = 101
            c.step_async(buf)
            c.wait()
            buf[i] = CTX + 1
            with self.assertRaises(vattn.VattnError) as e:
                c.step(buf)
            self.assertEqual(e.exception.arg, "seq_lens")
            buf[i] = -1
            for call in (c.step, c.step_async, c.step_layered):
                with self.assertRaises(vattn.VattnError):
                    call(buf)
            buf[i] = 101
            buf[(i + 1) % BATCH] = 5  # a slot with no request
            with self.assertRaises(vattn.VattnError):
                c.step(buf)
            buf[(i + 1) % BATCH] = 0
            c.step(buf)
        finally:
            c.cleanup()
        with self.assertRaises(vattn.VattnError):
            c.step(buf)


class MapAhead(unittest.TestCase):
    def test_map_ahead(self):
        c = vattn.KVCache(2, 8, 128, 2, 4096, 0, "bfloat16", "64K", backend="sim", map_ahead=3)
        try:
            c.reserve_physical_pages(64 * MB)
            i = c.alloc_new_batch_idx(10)
            lens = [0, 0]
            lens[i] = 10  # one 64 KiB index of 32 tokens needed, three more ahead
            c.step(lens)
            self.assertEqual(c.stats()["mapped_pages"], 4 * 4)
        finally:
            c.cleanup()
        for name in ("map_ahead", "grow_margin", "grow_limit", "grow_limit_pages"):
            for bad in (-1, 1.5, True, "3"):
                with self.assertRaises(vattn.VattnError) as e:
                    vattn.KVCache(2, 8, 128, 2, 4096, 0, "bfloat16", "64K", backend="sim", **{name: bad})
                self.assertEqual(e.exception.arg, name)

    def test_grow_margin(self):
        # step_async grows a request within grow_margin tokens of its mapped
        # end in the background, ahead of need.
        c = vattn.KVCache(2, 8, 128, 2, 4096, 0, "bfloat16", "64K", backend="sim", grow_margin=64)
        try:
            c.reserve_physical_pages(64 * MB)
            i = c.alloc_new_batch_idx(10)
            lens = [0, 0]
            lens[i] = 10
            c.step_async(lens)
            c.wait()
            # 10 tokens need one 32-token index; the margin asks for 10+1+64.
            self.assertGreaterEqual(c.stats()["mapped_pages"], 3 * 4)
        finally:
            c.cleanup()

    def test_grow_limit_pages(self):
        # A job maps at most grow_limit_pages pages ahead of need (whole
        # indexes of 4 pages here, at least one); what the next step needs
        # is not bounded.
        for pages, want in ((4, 2), (7, 2), (1, 2), (8, 3), (0, 3)):
            c = vattn.KVCache(2, 8, 128, 2, 4096, 0, "bfloat16", "64K", backend="sim", grow_margin=64,
                              grow_limit_pages=pages)
            try:
                c.reserve_physical_pages(64 * MB)
                i = c.alloc_new_batch_idx(10)
                lens = [0, 0]
                lens[i] = 10
                c.step_async(lens)
                c.wait()
                st = c.stats()
                self.assertEqual((st["mapped_pages"], st["mapped_pages"] // 4), (want * 4, want), pages)
            finally:
                c.cleanup()


class Torch(unittest.TestCase):
    """Zero-copy tensors on a real GPU: needs torch, and the GPU's driver.
    2 MiB pages go through cudavmm, 64 KiB pages through the stock
    nvidia-uvm path (backend auto picks both). Small pages are written and
    read by kernels: CUDA's copy functions (copy_ between contiguous
    tensors, .cpu()) refuse memory that nvidia-uvm mapped, CUDA did not."""

    def _write_read(self, page_size, backend):
        try:
            import torch
        except ImportError:
            self.skipTest("torch not installed: tensor wrapping not tested")
        if not torch.cuda.is_available():
            self.skipTest("no CUDA device: tensor wrapping not tested")
        torch.cuda.init()
        c = vattn.KVCache(2, 8, 128, 2, 4096, 0, torch.bfloat16, page_size, backend=backend)
        try:
            kv = c.tensors()
            self.assertEqual(kv[0].dtype, torch.bfloat16)
            self.assertEqual(kv[0].data_ptr(), c.kv_pointers(0)[0])
            c.reserve_physical_pages(64 * MB)
            i = c.alloc_new_batch_idx(300)
            lens = [0, 0]
            lens[i] = 300
            c.step(lens)
            small = vattn._page_bytes(page_size) < (2 << 20)

            def put(dst, src):
                if small:
                    torch.mul(src, 1, out=dst)  # an elementwise kernel
                else:
                    dst.copy_(src)  # cudaMemcpyAsync

            x = torch.randn(300, 8, 128, device="cuda", dtype=torch.bfloat16)
            put(kv[1][i, :300], x)
            torch.cuda.synchronize()
            self.assertTrue(torch.equal(kv[1][i, :300], x))
            # A second request grows across small-page boundaries.
            j = c.alloc_new_batch_idx(1000)
            lens[j] = 1000
            c.step(lens)
            y = torch.randn(1000, 8, 128, device="cuda", dtype=torch.bfloat16)
            put(kv[0][j, :1000], y)
            torch.cuda.synchronize()
            self.assertTrue(torch.equal(kv[0][j, :1000], y))
            self.assertTrue(torch.equal(kv[1][i, :300], x))
        finally:
            torch.cuda.synchronize()
            c.cleanup()

    def test_megacache_tensors(self):
        """vAttention's megacache tensors and the per-layer views share
        their bytes: what is written through one reads back through the
        other."""
        try:
            import torch
        except ImportError:
            self.skipTest("torch not installed: tensor wrapping not tested")
        if not torch.cuda.is_available():
            self.skipTest("no CUDA device: tensor wrapping not tested")
        torch.cuda.init()
        c = vattn.KVCache(2, 8, 128, 2, 4096, 0, torch.bfloat16, "2M", megacache=True, backend="cudavmm")
        try:
            k, v = c.tensors()
            self.assertEqual(tuple(k.shape), (2, 4096, 2, 8, 128))
            self.assertEqual((k.data_ptr(), v.data_ptr()), c.kv_pointers(0))
            self.assertEqual((k[:, :, 1].data_ptr(), v[:, :, 1].data_ptr()), c.kv_pointers(1))
            per = c.layer_tensors()
            self.assertEqual(per[1].data_ptr(), c.kv_pointers(1)[0])
            c.reserve_physical_pages(64 * MB)
            i = c.alloc_new_batch_idx(300)
            lens = [0, 0]
            lens[i] = 300
            c.step(lens)
            x = torch.randn(300, 8, 128, device="cuda", dtype=torch.bfloat16)
            v[i, :300, 1].copy_(x)
            torch.cuda.synchronize()
            self.assertTrue(torch.equal(per[2 + 1][i, :300], x))
        finally:
            torch.cuda.synchronize()
            c.cleanup()

    def test_tensors_write_read(self):
        self._write_read("2M", "cudavmm")

    def test_tensors_small_pages(self):
        self._write_read(64 << 10, "auto")


if __name__ == "__main__":
    unittest.main()
