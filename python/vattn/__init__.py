"""vattn for Python: a drop-in for vAttention's Python API over libvattn.so.

A server written against vAttention switches by changing its import::

    import vattn as vattention
    kv = vattention.init_kvcache(num_layers, num_kv_heads, head_size,
                                 max_batch_size, max_context_length,
                                 device, dtype, page_size)
    k_caches, v_caches = kv[:num_layers], kv[num_layers:]
    # megacache=True: kv is [K, V], each [batch, context, layers, heads, dim]

Python over ctypes: no build step beyond the library's. The library is
found through the VATTN_LIB environment variable, next to this package, or
in the repository's build/ directory (go build -buildmode=c-shared -o
build/libvattn.so ./cmd/libvattn). An optional C extension, _fast.abi3.so
(_fast.c; scripts/build-python-ext.sh builds it, for any CPython from 3.11
on), makes step, step_async and step_layered cost little more than the Go
call: it is used when it is found in this package, beside libvattn.so, or
at $VATTN_EXT; VATTN_NO_EXT=1 turns it off, and extension() says which
path is in use. Both paths accept and refuse the same arguments with the
same errors: the extension takes only what it can pass on as it is, and
leaves everything else to the Python checks.

The K and V caches are virtual ranges whose physical pages come and go: the
tensors init_kvcache returns are zero-copy views of them (built through
__cuda_array_interface__), shaped [max_batch_size, max_context_length,
num_kv_heads, head_size] per layer, valid until cleanup(). With
megacache=True, as in vAttention, they are one K and one V tensor shaped
[max_batch_size, max_context_length, num_layers, num_kv_heads, head_size]
(all layers of a token side by side); per_layer=True (init_kvcache,
KVCache.tensors) or KVCache.layer_tensors() gives the 2*num_layers
per-layer views of either layout instead. On the "sim"
backend (no GPU) there is no device memory: init_kvcache returns
CudaArray descriptions (pointer, shape, strides) instead of tensors.

Every failure raises VattnError (or a subclass) carrying the library's
status code and message; nothing exits the process. The module-level
functions act on one process-wide cache, as vAttention's do; KVCache is the
same API as an object, for several caches.

Arguments are checked before they reach C, where ctypes would silently
truncate them: an integer argument must be an int (or an integer type with
__index__, such as numpy.int64), never a bool, float or str, and fit in
64 bits; libvattn checks the rest of its range (a slot below max_batch_size,
a layer below num_layers, ...). A bad one raises BadArgumentError, or the
library's own error, with .arg naming the argument. Step lengths
(seq_lens) are a list or tuple of ints, or a one-dimensional CPU buffer of
int64: array('q'), a numpy int64 array, a torch int64 CPU tensor, or any
buffer of format 'q'. The buffers are passed to the library by pointer,
without a copy, so a server that keeps one array('q') (or tensor) and
updates it in place pays no conversion per step.

Without a GPU, use the simulator: VATTN_BACKEND=sim, or backend="sim".
"""

import array
import ctypes
import functools
import importlib.util
import operator
import os
import sys
import threading
import weakref

__all__ = [
    "init_kvcache", "reserve_physical_pages", "alloc_new_batch_idx", "step",
    "step_async", "step_layered", "wait_layer", "wait", "free_batch_idx", "num_free_kvblocks", "cleanup",
    "stats", "layout", "KVCache", "CudaArray", "VattnError", "BadArgumentError", "NoFreeSlotError",
    "OutOfPagesError", "UnavailableError",
]

# vattn_status, as libvattn.h declares it.
OK = 0
ERR_BAD_HANDLE = 1
ERR_BAD_ARGUMENT = 2
ERR_BAD_CONFIG = 3
ERR_SLOT_RANGE = 4
ERR_SLOT_INACTIVE = 5
ERR_BAD_LENGTH = 6
ERR_CONTEXT_TOO_LONG = 7
ERR_NO_FREE_SLOT = 8
ERR_OUT_OF_PAGES = 9
ERR_BACKEND = 10
ERR_UNAVAILABLE = 11
ERR_PANIC = 12
ERR_BUFFER_TOO_SMALL = 13

STATUS_NAMES = {
    OK: "ok", ERR_BAD_HANDLE: "bad handle", ERR_BAD_ARGUMENT: "bad argument",
    ERR_BAD_CONFIG: "bad config", ERR_SLOT_RANGE: "slot out of range",
    ERR_SLOT_INACTIVE: "slot inactive", ERR_BAD_LENGTH: "bad length",
    ERR_CONTEXT_TOO_LONG: "context too long", ERR_NO_FREE_SLOT: "no free slot",
    ERR_OUT_OF_PAGES: "out of pages", ERR_BACKEND: "backend failure",
    ERR_UNAVAILABLE: "backend unavailable", ERR_PANIC: "internal error",
    ERR_BUFFER_TOO_SMALL: "buffer too small",
}


class VattnError(RuntimeError):
    """A libvattn call failed. code is the vattn_status, op the call, arg
    the name of the argument at fault (None when the failure is not one
    argument's)."""

    def __init__(self, op, code, message, arg=None):
        self.op, self.code, self.message, self.arg = op, code, message, arg
        name = STATUS_NAMES.get(code, "status %d" % code)
        head = "vattn: %s: %s%s" % (op, arg + ": " if arg else "", name)
        super().__init__(head + ": " + message if message else head)


class BadArgumentError(VattnError):
    """An argument of the wrong type or out of range."""


class NoFreeSlotError(VattnError):
    """Every batch slot holds a request."""


class OutOfPagesError(VattnError):
    """No physical page left: reserve more, or free requests."""


class UnavailableError(VattnError):
    """The backend cannot run here (no libcuda, no GPU)."""


_SUBCLASS = {ERR_NO_FREE_SLOT: NoFreeSlotError, ERR_OUT_OF_PAGES: OutOfPagesError,
             ERR_UNAVAILABLE: UnavailableError, ERR_BAD_ARGUMENT: BadArgumentError}

# The statuses that blame a call's argument (rather than the cache's state
# or the device), so the error names it.
_ARG_CODES = frozenset((ERR_BAD_ARGUMENT, ERR_SLOT_RANGE, ERR_SLOT_INACTIVE, ERR_BAD_LENGTH,
                        ERR_CONTEXT_TOO_LONG))

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_I32_MAX = (1 << 31) - 1


def _bad(op, arg, message):
    return BadArgumentError(op, ERR_BAD_ARGUMENT, message, arg)


def _int(op, arg, v, lo=_I64_MIN, hi=_I64_MAX):
    """v as an int in [lo, hi]: an int or an integer type with __index__
    (numpy.int64), never a bool, float or str."""
    if type(v) is not int:
        if isinstance(v, bool) or type(v).__name__ in ("bool_", "bool"):
            raise _bad(op, arg, "want an int, got the bool %r" % (v,))
        try:
            v = operator.index(v)
        except TypeError:
            raise _bad(op, arg, "want an int, got %s %r" % (type(v).__name__, v)) from None
    if not lo <= v <= hi:
        raise _bad(op, arg, "%d out of range [%d, %d]" % (v, lo, hi))
    return v


def _flag(op, arg, v):
    """v as a bool: True, False, 1 or 0; nothing else."""
    if v is True or v is False:
        return v
    if type(v) is int and v in (0, 1):
        return bool(v)
    raise _bad(op, arg, "want True or False, got %s %r" % (type(v).__name__, v))


_NATIVE = "@=" + ("<" if sys.byteorder == "little" else ">")
_SEQ_TYPES = "a list or tuple of ints, or a 1-D CPU int64 buffer (array('q'), numpy int64, torch int64 CPU tensor)"


def _seq_lens(op, seq):
    """seq as (address, count, keepalive) of int64 lengths for the C ABI.
    Buffers are passed as they are; lists and tuples are packed into an
    array('q'), which refuses non-integers and values beyond int64."""
    t = type(seq)
    if t is list or t is tuple:
        if seq and not _all_int(seq):
            seq = _slow_ints(op, seq)
        try:
            buf = array.array("q", seq)
        except OverflowError:
            for i, v in enumerate(seq):
                _int(op, "seq_lens[%d]" % i, v)
            raise  # not reached: one of them is out of range
        addr, n = buf.buffer_info()
        return addr, n, buf
    if t is array.array:
        if seq.itemsize != 8 or seq.typecode not in "qlQL" or seq.typecode in "QL":
            raise _bad(op, "seq_lens", "array('%s'): want array('q') (int64)" % seq.typecode)
        addr, n = seq.buffer_info()
        return addr, n, seq
    if t.__module__ == "torch" and hasattr(seq, "data_ptr"):
        return _torch_lens(op, seq)
    if t is str or t is bytes or t is bytearray or t is dict:
        raise _bad(op, "seq_lens", "want %s, got %s" % (_SEQ_TYPES, t.__name__))
    try:
        m = memoryview(seq)
    except TypeError:
        raise _bad(op, "seq_lens", "want %s, got %s" % (_SEQ_TYPES, t.__name__)) from None
    fmt = m.format
    if len(fmt) == 2 and fmt[0] in _NATIVE:
        fmt = fmt[1:]
    if fmt not in ("q", "l") or m.itemsize != 8:
        raise _bad(op, "seq_lens", "%s of format %r: want int64 elements (format 'q')" % (t.__name__, m.format))
    if m.ndim != 1 or not m.c_contiguous:
        raise _bad(op, "seq_lens", "%s of shape %s: want one contiguous dimension" % (t.__name__, m.shape))
    n = m.shape[0]
    if n == 0:
        return None, 0, m
    if m.readonly:
        buf = array.array("q")
        buf.frombytes(m.cast("B"))
        addr, n = buf.buffer_info()
        return addr, n, buf
    ref = ctypes.c_char.from_buffer(m)
    return ctypes.addressof(ref), n, ref


def _all_int(seq):
    # array('q') refuses non-integers and values beyond int64, but takes
    # bools (an int subclass); this finds them, and anything that is not a
    # plain int, in one C-level pass.
    return list(map(type, seq)).count(int) == len(seq)


def _slow_ints(op, seq):
    """seq's elements as ints, or the error naming the first bad one."""
    return [_int(op, "seq_lens[%d]" % i, v) for i, v in enumerate(seq)]


def _torch_lens(op, t):
    if str(t.dtype) != "torch.int64":
        raise _bad(op, "seq_lens", "a %s tensor: want torch.int64" % str(t.dtype).replace("torch.", ""))
    if t.device.type != "cpu":
        raise _bad(op, "seq_lens", "a tensor on %s: want a CPU tensor (the lengths are read on the host)" % (t.device,))
    if t.dim() != 1 or not t.is_contiguous():
        raise _bad(op, "seq_lens", "a tensor of shape %s: want one contiguous dimension" % (tuple(t.shape),))
    if _ext is not None and _ext.tensor_type() is not type(t) and type(t.dtype).__module__ == "torch":
        # torch's own tensor type (not a look-alike): from now on the
        # extension reads such tensors itself, with the checks above.
        _ext.register_tensor(type(t), t.dtype)
    return t.data_ptr(), t.numel(), t

_i32, _i64, _u64, _f64 = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_double


class _Config(ctypes.Structure):
    _fields_ = [("layers", _i32), ("kv_heads", _i32), ("head_dim", _i32), ("dtype_bytes", _i32),
                ("max_batch", _i32), ("max_context", _i32), ("megacache", _i32),
                ("eager_reclaim", _i32), ("grow_pool", _i32), ("map_ahead", _i32), ("page_size", _i64), ("sim_gpu_memory", _i64),
                ("grow_margin", _i32), ("grow_limit", _i32), ("grow_limit_pages", _i32)]


class _Layout(ctypes.Structure):
    _fields_ = [("page_size", _i64), ("megacache", _i32), ("ranges", _i32), ("slot_bytes", _i64),
                ("token_bytes", _i64), ("layer_bytes", _i64), ("head_bytes", _i64),
                ("pages_per_index", _i32), ("indexes_per_slot", _i32), ("tokens_per_page", _i32)]


_STAT_FIELDS = [
    ("reserved_pages", _i64), ("free_pages", _i64), ("mapped_pages", _i64), ("idle_pages", _i64),
    ("active_slots", _i64), ("live_tokens", _i64), ("mapped_bytes", _i64), ("live_bytes", _i64),
]
for _phase in ("fg_map", "fg_unmap", "bg_map", "bg_unmap", "alloc"):
    _STAT_FIELDS += [(_phase + "_calls", _i64), (_phase + "_pages", _i64), (_phase + "_seconds", _f64)]
_STAT_FIELDS += [("reclaimed_pages", _i64), ("fence_waits", _i64), ("background_errors", _i64),
                 ("inconsistencies", _i64)]


class _Stats(ctypes.Structure):
    _fields_ = _STAT_FIELDS


_lib = None
_lib_lock = threading.Lock()


def _candidates():
    env = os.environ.get("VATTN_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, "libvattn.so"),
            os.path.join(here, "..", "..", "build", "libvattn.so"),
            os.path.join(here, "..", "build", "libvattn.so")]


def _load():
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            if not os.path.exists(path):
                tried.append(path + " (missing)")
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                raise VattnError("load", ERR_UNAVAILABLE, "load %s: %s" % (path, e)) from e
            _declare(lib)
            _load_ext(lib, path)
            _lib = lib
            return lib
        raise VattnError("load", ERR_UNAVAILABLE,
                         "libvattn.so not found (set VATTN_LIB or build it: go build -buildmode=c-shared "
                         "-o build/libvattn.so ./cmd/libvattn); tried " + ", ".join(tried))


# The C extension (_fast.c, built by scripts/build-python-ext.sh): step,
# step_async and step_layered without ctypes. _ext is the module when it is
# in use; _ext_why says where it came from, or why it is not in use.
_EXT_VERSION = 2
_EXT_NAME = "_fast.abi3.so"
_ext = None
_ext_fns = None
_ext_why = "not loaded yet: no cache made"
_NOT_TAKEN = -1  # the extension's code for a call it left to the Python path
_EXT_CALLS = ("step", "step_async", "step_layered")  # the extension's call numbers


def _load_ext(lib, lib_path):
    """Load the extension if it is built: VATTN_EXT names it (then it must
    load), else it is looked for in this package and beside libvattn.so.
    VATTN_NO_EXT=1 keeps the ctypes path."""
    global _ext, _ext_fns, _ext_why
    if os.environ.get("VATTN_NO_EXT", "") not in ("", "0"):
        _ext_why = "off: VATTN_NO_EXT is set"
        return
    explicit = os.environ.get("VATTN_EXT")
    if sys.version_info < (3, 11):
        if explicit:
            raise VattnError("load", ERR_UNAVAILABLE, "VATTN_EXT=%s: the extension needs Python 3.11 or newer" % explicit)
        _ext_why = "off: the extension needs Python 3.11 or newer"
        return
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [explicit] if explicit else [os.path.join(here, _EXT_NAME),
                                         os.path.join(os.path.dirname(os.path.abspath(lib_path)), _EXT_NAME)]
    tried = []
    for path in paths:
        if not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            spec = importlib.util.spec_from_file_location(__name__ + "._fast", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            if getattr(mod, "VERSION", None) != _EXT_VERSION:
                raise ImportError("version %r, want %d (a stale build: re-run scripts/build-python-ext.sh)"
                                  % (getattr(mod, "VERSION", None), _EXT_VERSION))
        except (ImportError, OSError) as e:
            tried.append("%s (%s)" % (path, e))
            continue
        _ext_fns = tuple(ctypes.cast(lib[name], ctypes.c_void_p).value
                         for name in ("vattn_step", "vattn_step_async", "vattn_step_layered"))
        _ext, _ext_why = mod, path
        return
    if explicit:
        raise VattnError("load", ERR_UNAVAILABLE, "VATTN_EXT: cannot load the extension: " + "; ".join(tried))
    _ext_why = "off: not built (scripts/build-python-ext.sh); tried " + ", ".join(tried)


def extension():
    """(in_use, detail): whether step, step_async and step_layered go
    through the C extension, and its path, or why they go through ctypes.
    Settled when libvattn.so is loaded (by the first cache made)."""
    return _ext is not None, _ext_why


def _ext_fallback(ref, call, code, args, kwargs):
    """What the extension did not complete: a library status (code > 0)
    becomes its error; anything else (NOT_TAKEN: arguments the extension
    leaves to the Python checks, or a call shaped otherwise) is made again
    through the method, whose checks raise the argument's error or which
    makes the call through ctypes."""
    c = ref()
    op = _EXT_CALLS[call]
    if c is None:
        raise VattnError(op, ERR_BAD_HANDLE, "the cache is gone")
    if code != _NOT_TAKEN:
        h = c._h
        _check(c._lib, op, code, 0 if h is None else h, "seq_lens")
    return getattr(KVCache, op)(c, *args, **(kwargs or {}))


def _declare(lib):
    P = ctypes.POINTER
    sigs = {
        "vattn_create": [ctypes.c_char_p, _i32, P(_Config), P(_i64)],
        "vattn_destroy": [_i64],
        "vattn_reserve_physical": [_i64, _i64],
        "vattn_layout": [_i64, P(_Layout)],
        "vattn_kv_pointers": [_i64, _i64, P(_u64), P(_u64)],
        "vattn_alloc_batch_idx": [_i64, _i64, P(_i32)],
        "vattn_free_batch_idx": [_i64, _i64],
        "vattn_step": [_i64, ctypes.c_void_p, _i64],
        "vattn_step_async": [_i64, ctypes.c_void_p, _i64],
        "vattn_wait": [_i64],
        "vattn_step_layered": [_i64, ctypes.c_void_p, _i64],
        "vattn_wait_layer": [_i64, _i64],
        "vattn_free_kvblocks": [_i64, P(_i64)],
        "vattn_shrink": [_i64, P(_i64)],
        "vattn_stats": [_i64, P(_Stats)],
        "vattn_last_error": [_i64, ctypes.c_char_p, ctypes.c_size_t, P(ctypes.c_size_t)],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_int


def _last_error(lib, handle):
    n = ctypes.c_size_t(0)
    lib.vattn_last_error(handle, None, 0, ctypes.byref(n))
    buf = ctypes.create_string_buffer(n.value + 1)
    if lib.vattn_last_error(handle, buf, len(buf), None) not in (OK, ERR_BUFFER_TOO_SMALL):
        return ""
    return buf.value.decode("utf-8", "replace")


def _check(lib, op, code, handle, arg=None):
    if code == OK:
        return
    # Bad-handle errors are recorded process-wide (handle 0).
    msg = _last_error(lib, 0 if code == ERR_BAD_HANDLE else handle)
    raise _SUBCLASS.get(code, VattnError)(op, code, msg, arg if code in _ARG_CODES else None)


_DTYPES = {  # name: (bytes, typestr for __cuda_array_interface__)
    "float16": (2, "<f2"), "half": (2, "<f2"),
    # bf16 and fp8 have no array-interface type: torch views them.
    "bfloat16": (2, "<i2"),
    "float32": (4, "<f4"), "float": (4, "<f4"),
    "float8_e4m3fn": (1, "|u1"), "float8_e5m2": (1, "|u1"), "uint8": (1, "|u1"), "int8": (1, "|i1"),
}


def _dtype_name(dtype):
    if not isinstance(dtype, str) and type(dtype).__module__ != "torch":
        raise _bad("init_kvcache", "dtype", "want a name or a torch.dtype, got %s %r" % (type(dtype).__name__, dtype))
    name = str(dtype)
    if name.startswith("torch."):
        name = name[len("torch."):]
    if name not in _DTYPES:
        raise _bad("init_kvcache", "dtype", "unsupported dtype %r (want one of %s)" % (dtype, ", ".join(sorted(_DTYPES))))
    return name


def _device_index(device):
    op = "init_kvcache"
    if type(device).__module__ == "torch":  # torch.device
        index = device.index
        return 0 if index is None and device.type == "cuda" else _int(op, "device", index, 0, _I32_MAX)
    if not isinstance(device, str):
        return _int(op, "device", device, 0, _I32_MAX)
    s = device
    if s == "cuda":
        return 0
    if s.startswith("cuda:") and s[5:].isdigit():
        return _int(op, "device", int(s[5:]), 0, _I32_MAX)
    if s.isdigit():
        return _int(op, "device", int(s), 0, _I32_MAX)
    raise _bad(op, "device", "device %r: want an index, 'cuda:N' or a torch.device" % (device,))


_SIZE_SUFFIX = {"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def _page_bytes(page_size):
    op = "init_kvcache"
    if not isinstance(page_size, str):
        return _int(op, "page_size", page_size, 0, _I64_MAX)
    s = page_size.strip().lower()
    for suf in sorted(_SIZE_SUFFIX, key=len, reverse=True):
        if s.endswith(suf) and s[: -len(suf)].isdigit():
            return _int(op, "page_size", int(s[: -len(suf)]) * _SIZE_SUFFIX[suf], 0, _I64_MAX)
    if s.isdigit():
        return _int(op, "page_size", int(s), 0, _I64_MAX)
    raise _bad(op, "page_size", "page size %r: want bytes or e.g. '64K', '2M'" % (page_size,))


class CudaArray:
    """A device array description: what __cuda_array_interface__ needs."""

    def __init__(self, ptr, shape, strides, typestr, dtype_name, device):
        self.ptr, self.shape, self.strides = ptr, tuple(shape), tuple(strides)
        self.typestr, self.dtype_name, self.device = typestr, dtype_name, device

    @property
    def __cuda_array_interface__(self):
        # stream None: the caller orders access (vAttention's tensors work so).
        return {"shape": self.shape, "strides": self.strides, "typestr": self.typestr,
                "data": (self.ptr, False), "version": 3, "stream": None}

    def __repr__(self):
        return "CudaArray(ptr=%#x, shape=%s, strides=%s, dtype=%s)" % (self.ptr, self.shape, self.strides, self.dtype_name)


def _as_tensor(arr):
    import torch
    t = torch.as_tensor(arr, device="cuda:%d" % arr.device)
    want = getattr(torch, arr.dtype_name)
    return t if t.dtype == want else t.view(want)


# Stands for "no lengths buffer made yet": an object no caller can pass, so
# the step calls' identity test never matches by accident (None would).
_NO_BUFFER = object()


class KVCache:
    """One cache: the vAttention API as methods. Safe to use from several
    threads: libvattn serializes calls on one cache, and stats() and
    num_free_kvblocks() do not wait for a step in progress."""

    def __init__(self, num_layers, num_kv_heads, head_size, max_batch_size, max_context_length,
                 device, dtype, page_size, megacache=False, backend=None, eager_reclaim=False,
                 sim_gpu_memory=0, grow_pool=False, map_ahead=0, grow_margin=0, grow_limit=0,
                 grow_limit_pages=0):
        self._h = None
        self._steps = None  # the extension's step calls for this cache, when it is in use (_bind_ext)
        self._lbuf = _NO_BUFFER  # lengths_buffer(): the persistent lengths, once made
        self._lib = _load()
        op = "init_kvcache"
        # "auto": the Go side picks uvm (small pages on the stock driver)
        # below 2 MiB pages and cudavmm at 2 MiB.
        self.backend = backend or os.environ.get("VATTN_BACKEND", "auto")
        if not isinstance(self.backend, str):
            raise _bad(op, "backend", "want 'auto', 'uvm', 'cudavmm' or 'sim', got %s %r" % (type(self.backend).__name__, self.backend))
        ints = {}
        for name, v in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_size", head_size),
                        ("max_batch_size", max_batch_size), ("max_context_length", max_context_length)):
            ints[name] = _int(op, name, v, 0, _I32_MAX)
        num_layers, max_batch_size = ints["num_layers"], ints["max_batch_size"]
        self.num_layers, self.max_batch_size = num_layers, max_batch_size
        self.eager_reclaim = _flag(op, "eager_reclaim", eager_reclaim)
        self.dtype_name = _dtype_name(dtype)
        self.device = _device_index(device)
        size, self._typestr = _DTYPES[self.dtype_name]
        cfg = _Config(layers=num_layers, kv_heads=ints["num_kv_heads"], head_dim=ints["head_size"], dtype_bytes=size,
                      max_batch=max_batch_size, max_context=ints["max_context_length"],
                      megacache=int(_flag(op, "megacache", megacache)), eager_reclaim=int(self.eager_reclaim),
                      grow_pool=int(_flag(op, "grow_pool", grow_pool)), map_ahead=_int(op, "map_ahead", map_ahead, 0, _I32_MAX),
                      grow_margin=_int(op, "grow_margin", grow_margin, 0, _I32_MAX),
                      grow_limit=_int(op, "grow_limit", grow_limit, 0, _I32_MAX),
                      grow_limit_pages=_int(op, "grow_limit_pages", grow_limit_pages, 0, _I32_MAX),
                      page_size=_page_bytes(page_size),
                      sim_gpu_memory=_int(op, "sim_gpu_memory", sim_gpu_memory, 0, _I64_MAX))
        h = _i64(0)
        _check(self._lib, op,
               self._lib.vattn_create(self.backend.encode(), self.device, ctypes.byref(cfg), ctypes.byref(h)), 0)
        self._h = h.value
        if _ext is not None:
            self._steps = _ext.steps(self._h, *_ext_fns, self.eager_reclaim,
                                     functools.partial(_ext_fallback, weakref.ref(self)))
            self._bind_ext(True)
        self.layout = self._layout()
        self.megacache = bool(cfg.megacache)
        self.shape = (max_batch_size, ints["max_context_length"], ints["num_kv_heads"], ints["head_size"])
        self.mega_shape = self.shape[:2] + (num_layers,) + self.shape[2:]

    def _call(self, op, fn, *args, arg=None):
        if self._h is None:
            raise VattnError(op, ERR_BAD_HANDLE, "the cache was cleaned up")
        _check(self._lib, op, fn(self._h, *args), self._h, arg)

    def _layout(self):
        lay = _Layout()
        self._call("layout", self._lib.vattn_layout, ctypes.byref(lay))
        return {name: getattr(lay, name) for name, _ in _Layout._fields_}

    def kv_pointers(self, layer):
        """Device addresses of layer's K and V tensors."""
        k, v = _u64(0), _u64(0)
        self._call("kv_pointers", self._lib.vattn_kv_pointers, _int("kv_pointers", "layer", layer),
                   ctypes.byref(k), ctypes.byref(v), arg="layer")
        return k.value, v.value

    def _per_layer(self, op, per_layer):
        """Whether op returns per-layer views: per_layer None means the
        layout's own shape (vAttention's: [K, V] with megacache)."""
        if per_layer is None:
            return not self.megacache
        per_layer = _flag(op, "per_layer", per_layer)
        if not per_layer and not self.megacache:
            raise _bad(op, "per_layer", "per_layer=False needs megacache=True: "
                       "without it every layer's K and V are ranges of their own, not one tensor")
        return per_layer

    def arrays(self, per_layer=None):
        """The K and V caches as CudaArray descriptions: the 2*num_layers
        per-layer arrays (K of every layer, then V), shaped [batch, context,
        heads, dim]; or, with megacache and per_layer not True, vAttention's
        [K, V], each shaped [batch, context, layers, heads, dim]."""
        size = _DTYPES[self.dtype_name][0]
        lay = self.layout
        if not self._per_layer("arrays", per_layer):
            k, v = self.kv_pointers(0)
            strides = (lay["slot_bytes"], lay["token_bytes"], lay["layer_bytes"], lay["head_bytes"], size)
            return [CudaArray(p, self.mega_shape, strides, self._typestr, self.dtype_name, self.device) for p in (k, v)]
        strides = (lay["slot_bytes"], lay["token_bytes"], lay["head_bytes"], size)
        ks, vs = [], []
        for layer in range(self.num_layers):
            k, v = self.kv_pointers(layer)
            ks.append(CudaArray(k, self.shape, strides, self._typestr, self.dtype_name, self.device))
            vs.append(CudaArray(v, self.shape, strides, self._typestr, self.dtype_name, self.device))
        return ks + vs

    def layer_tensors(self):
        """The 2*num_layers per-layer K then V caches, in either layout
        (with megacache, views into the [K, V] tensors of tensors())."""
        return self.tensors(per_layer=True)

    def tensors(self, per_layer=None):
        """The K and V caches (see arrays for the shapes): torch tensors
        where the backend has device memory and torch is importable, else
        CudaArray descriptions."""
        arrs = self.arrays(per_layer)
        if self.backend == "sim":
            return arrs
        try:
            import torch  # noqa: F401
        except ImportError:
            return arrs
        return [_as_tensor(a) for a in arrs]

    def reserve_physical_pages(self, num_bytes):
        op = "reserve_physical_pages"
        self._call(op, self._lib.vattn_reserve_physical, _int(op, "num_bytes", num_bytes), arg="num_bytes")

    def alloc_new_batch_idx(self, seq_len):
        op = "alloc_new_batch_idx"
        out = _i32(0)
        self._call(op, self._lib.vattn_alloc_batch_idx, _int(op, "seq_len", seq_len), ctypes.byref(out), arg="seq_len")
        return out.value

    def free_batch_idx(self, batch_idx):
        op = "free_batch_idx"
        self._call(op, self._lib.vattn_free_batch_idx, _int(op, "batch_idx", batch_idx), arg="batch_idx")

    def _step(self, op, fn, seq_lens):
        addr, n, keep = _seq_lens(op, seq_lens)
        self._call(op, fn, addr, n, arg="seq_lens")
        del keep  # the buffer lives until the call has returned

    def lengths_buffer(self):
        """A persistent array('q') of max_batch_size lengths, all 0 at first.
        Update it in place (buf[slot] = n) and pass it to step, step_async
        or step_layered: without the C extension those calls then skip
        every conversion and type check (the buffer's type and size are
        known) and cost one ctypes call into the library, which still
        checks every length's range. With the extension any int64 buffer
        costs that little. Made once per cache; later calls return the
        same buffer."""
        if self._lbuf is _NO_BUFFER and self._h is not None:
            buf = array.array("q", bytes(8 * self.max_batch_size))
            addr, n = buf.buffer_info()
            # The arguments as ctypes values, made once, and function
            # pointers without argtypes: a call converts nothing.
            self._largs = (_i64(self._h), ctypes.c_void_p(addr), _i64(n))
            self._lfns = {}
            for name in ("vattn_step", "vattn_step_async", "vattn_step_layered"):
                fn = self._lib[name]
                fn.restype = ctypes.c_int
                self._lfns[name] = fn
            self._lbuf = buf
        if self._lbuf is _NO_BUFFER:
            raise VattnError("lengths_buffer", ERR_BAD_HANDLE, "the cache was cleaned up")
        return self._lbuf

    def _fast(self, op, name):
        if self._h is None:
            raise VattnError(op, ERR_BAD_HANDLE, "the cache was cleaned up")
        code = self._lfns[name](*self._largs)
        if code:
            _check(self._lib, op, code, self._h, "seq_lens")

    def _bind_ext(self, on):
        """Route step, step_async and step_layered through the extension
        (instance attributes over the methods below, so a call goes from
        the caller straight into C), or (on False) through the methods."""
        for name in _EXT_CALLS:
            if on and self._steps is not None:
                setattr(self, name, getattr(self._steps, name))
            else:
                self.__dict__.pop(name, None)

    def step(self, seq_lens, eager_reclaim=None):
        """Map pages so slot i holds seq_lens[i] tokens (slots past the end
        of seq_lens: 0). The reclaim policy is fixed at init
        (eager_reclaim=...); vAttention's per-step flag is accepted only
        when it agrees."""
        if eager_reclaim is not None and _flag("step", "eager_reclaim", eager_reclaim) != self.eager_reclaim:
            raise _bad("step", "eager_reclaim",
                       "eager_reclaim=%s, but the cache was made with eager_reclaim=%s (set it in init_kvcache)"
                       % (bool(eager_reclaim), self.eager_reclaim))
        if seq_lens is self._lbuf:
            return self._fast("step", "vattn_step")
        self._step("step", self._lib.vattn_step, seq_lens)

    def step_async(self, seq_lens):
        if seq_lens is self._lbuf:
            return self._fast("step_async", "vattn_step_async")
        self._step("step_async", self._lib.vattn_step_async, seq_lens)

    def step_layered(self, seq_lens):
        """Layer-pipelined prefill: maps layer 0's pages now and the other
        layers' in the background. Call wait_layer(l) before layer l's
        attention (from any thread)."""
        if seq_lens is self._lbuf:
            return self._fast("step_layered", "vattn_step_layered")
        self._step("step_layered", self._lib.vattn_step_layered, seq_lens)

    def wait_layer(self, layer):
        self._call("wait_layer", self._lib.vattn_wait_layer, _int("wait_layer", "layer", layer), arg="layer")

    def wait(self):
        self._call("wait", self._lib.vattn_wait)

    def shrink(self):
        """Give the device back what the cache does not use now (idle slots'
        pages once the GPU is done with them, active slots' surplus, the
        unmapped pool); returns the number of pages freed. Not in vAttention."""
        out = _i64(0)
        self._call("shrink", self._lib.vattn_shrink, ctypes.byref(out))
        return out.value

    def num_free_kvblocks(self):
        out = _i64(0)
        self._call("num_free_kvblocks", self._lib.vattn_free_kvblocks, ctypes.byref(out))
        return out.value

    def stats(self):
        st = _Stats()
        self._call("stats", self._lib.vattn_stats, ctypes.byref(st))
        return {name: getattr(st, name) for name, _ in _Stats._fields_}

    def cleanup(self):
        if getattr(self, "_h", None) is None:
            return
        self._bind_ext(False)
        self._steps = None
        h, self._h = self._h, None
        _check(self._lib, "cleanup", self._lib.vattn_destroy(h), 0)

    def __del__(self):
        try:
            self.cleanup()
        except Exception:
            pass


_cache = None


def _current(op):
    if _cache is None:
        raise VattnError(op, ERR_BAD_HANDLE, "no cache: call init_kvcache first")
    return _cache


def init_kvcache(num_layers, num_kv_heads, head_size, max_batch_size, max_context_length,
                 device, dtype, page_size, megacache=False, per_layer=None, **kw):
    """Create the process-wide cache and return its tensors, as vAttention
    does: the 2*num_layers per-layer K then V tensors, or with megacache
    one K and one V tensor shaped [batch, context, layers, heads, dim]
    (per_layer=True: the per-layer views of those instead). Extra
    keywords: backend ("auto", "uvm", "cudavmm" or "sim"; default
    $VATTN_BACKEND or auto: uvm below 2 MiB pages, cudavmm at 2 MiB; "sim"
    needs no GPU), eager_reclaim, grow_pool, sim_gpu_memory, map_ahead
    (page indexes a growing request gets beyond its need: with small pages,
    fewer driver calls per step for a little memory), grow_margin,
    grow_limit and grow_limit_pages (step_async also grows requests within
    grow_margin tokens of their mapped end, at most grow_limit page indexes
    and grow_limit_pages physical pages per step: growth spread over steps
    instead of bursts; a per-layer page index is 2*num_layers pages, a
    megacache one 2)."""
    global _cache
    if _cache is not None:
        raise VattnError("init_kvcache", ERR_BAD_CONFIG, "a cache exists: call cleanup first")
    c = KVCache(num_layers, num_kv_heads, head_size, max_batch_size, max_context_length,
                device, dtype, page_size, megacache, **kw)
    try:
        kv = c.tensors(per_layer)
    except BaseException:
        c.cleanup()
        raise
    _cache = c
    return kv


def reserve_physical_pages(num_bytes):
    _current("reserve_physical_pages").reserve_physical_pages(num_bytes)


def alloc_new_batch_idx(seq_len):
    return _current("alloc_new_batch_idx").alloc_new_batch_idx(seq_len)


def free_batch_idx(batch_idx):
    _current("free_batch_idx").free_batch_idx(batch_idx)


def step(seq_lens, eager_reclaim=None):
    c = _cache  # not through _current: this is the hot call
    (c or _current("step")).step(seq_lens, eager_reclaim)


def step_async(seq_lens):
    c = _cache
    (c or _current("step_async")).step_async(seq_lens)


def step_layered(seq_lens):
    c = _cache
    (c or _current("step_layered")).step_layered(seq_lens)


def wait_layer(layer):
    _current("wait_layer").wait_layer(layer)


def wait():
    _current("wait").wait()


def num_free_kvblocks():
    return _current("num_free_kvblocks").num_free_kvblocks()


def stats():
    return _current("stats").stats()


def layout():
    return dict(_current("layout").layout)


def cleanup():
    global _cache
    if _cache is not None:
        c, _cache = _cache, None
        c.cleanup()
