/*
 * vattn._fast: python/vattn's step calls (step, step_async, step_layered)
 * without ctypes. Built by scripts/build-python-ext.sh as _fast.abi3.so
 * against the limited C API of Python 3.11 (the first whose limited API
 * has the buffer protocol), so one build loads on every CPython from 3.11
 * on; the package falls back to ctypes where it is absent.
 *
 * It has no link-time tie to libvattn.so: the package hands it the
 * addresses of vattn_step, vattn_step_async and vattn_step_layered, taken
 * from the library ctypes loaded.
 *
 * It takes only what it can pass on exactly, and leaves anything else
 * (NOT_TAKEN, -1) to the Python path without calling the library, so that
 * the Python path raises its own error for it (one source for every
 * message):
 *   - a list or tuple whose elements are all exact ints that fit in int64,
 *     converted into a buffer on the stack (or the heap, past STACK_LENS);
 *   - any buffer of one C-contiguous dimension of int64 (format q or l,
 *     optionally prefixed @, = or <, itemsize 8): array('q'), numpy int64,
 *     memoryview, ctypes arrays. Passed by pointer, no copy; the exporter
 *     stays locked (cannot resize) until the call returns;
 *   - a torch CPU int64 tensor of one contiguous dimension, once the
 *     package has registered torch's tensor type (register_tensor): read
 *     through data_ptr(), as the Python path does (and as there, nothing
 *     stops another thread from resizing the tensor during the call).
 * The package binds a cache's Steps methods over its own (KVCache.step, ...),
 * so a call goes from the caller straight into C. A call the library
 * completes returns None; one it refuses, one whose arguments are left to
 * the Python path (NOT_TAKEN), and any other shape of call (keywords, an
 * eager_reclaim that is not the cache's flag) go to the package's fallback
 * as they were made: it raises the library's error, or makes the call
 * through the Python method. The GIL is released while the library runs,
 * as ctypes does.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bumped whenever the package's use of this module changes: the package
 * ignores a build whose VERSION differs (a stale .so left in place). */
#define FAST_VERSION 2

#define NOT_TAKEN (-1)

/* Lengths converted on the stack up to this many slots (8 KiB). */
#define STACK_LENS 1024

typedef int (*step_fn)(int64_t handle, const int64_t *seq_lens, int64_t n);

enum { CALL_STEP, CALL_STEP_ASYNC, CALL_STEP_LAYERED, NCALLS };

typedef struct {
    PyObject_HEAD
    int64_t handle;
    step_fn fns[NCALLS];
    PyObject *eager;    /* Py_True or Py_False: the cache's eager_reclaim */
    /* fallback(call, code, args, kwargs): what the package does with a
     * call the extension did not complete (code NOT_TAKEN, or the
     * library's status). */
    PyObject *fallback;
} StepsObject;

/* torch's tensor type and what is read of it, set by register_tensor. */
static struct {
    PyTypeObject *type;
    PyObject *int64;        /* torch.int64 */
    PyObject *dim, *is_contiguous, *numel, *data_ptr; /* the type's methods */
} tensor;

static PyObject *s_dtype, *s_is_cpu;

/* How seq's lengths reach the library. */
typedef struct {
    const int64_t *lens;
    int64_t n;
    int64_t *heap;      /* PyMem_Malloc'ed conversion, or NULL */
    Py_buffer view;
    int have_view;
} lengths_t;

static void lengths_release(lengths_t *l)
{
    if (l->have_view)
        PyBuffer_Release(&l->view);
    PyMem_Free(l->heap);
}

/* Return 1 with l filled, 0 for "not taken" (no exception set), -1 with an
 * exception set (out of memory). */
static int lengths_from_sequence(PyObject *seq, int is_list, int64_t *stack, lengths_t *l)
{
    Py_ssize_t len = is_list ? PyList_Size(seq) : PyTuple_Size(seq);
    int64_t *dst = stack;
    if (len < 0)
        return -1;
    if (len > STACK_LENS) {
        dst = PyMem_Malloc((size_t)len * sizeof(int64_t));
        if (dst == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        l->heap = dst;
    }
    /* No Python code runs in this loop (exact ints only), so the list
     * cannot change under it. */
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *item = is_list ? PyList_GetItem(seq, i) : PyTuple_GetItem(seq, i);
        int overflow;
        long long v;
        if (item == NULL || Py_TYPE(item) != &PyLong_Type) {
            PyErr_Clear();
            return 0; /* bool, float, __index__ types, ...: the Python path */
        }
        v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        dst[i] = v;
    }
    l->lens = len ? dst : NULL;
    l->n = len;
    return 1;
}

/* The Python path's format test: q or l, alone or after @, = or the
 * native byte order's sign. */
static int int64_format(const char *f)
{
    if (f == NULL)
        return 0; /* unsigned bytes */
#if PY_LITTLE_ENDIAN
    const char *native = "@=<";
#else
    const char *native = "@=>";
#endif
    if (f[0] != '\0' && f[1] != '\0' && f[2] == '\0' && strchr(native, f[0]) != NULL)
        f++;
    return (f[0] == 'q' || f[0] == 'l') && f[1] == '\0';
}

static int lengths_from_buffer(PyObject *seq, lengths_t *l)
{
    if (!PyObject_CheckBuffer(seq))
        return 0;
    if (PyObject_GetBuffer(seq, &l->view, PyBUF_FULL_RO) < 0) {
        PyErr_Clear();
        return 0;
    }
    l->have_view = 1;
    if (!int64_format(l->view.format) || l->view.itemsize != 8 || l->view.ndim != 1 ||
        l->view.suboffsets != NULL)
        return 0;
    /* Contiguous as memoryview has it for one dimension (the Python path's
     * test): one element, or a stride of one element; an empty view with
     * another stride is not. */
    if (l->view.strides != NULL && l->view.shape[0] != 1 && l->view.strides[0] != l->view.itemsize)
        return 0;
    l->n = l->view.shape[0];
    l->lens = l->n ? (const int64_t *)l->view.buf : NULL;
    return 1;
}

/* Calls method (an unbound method of the tensor type) on t. */
static PyObject *tensor_call(PyObject *method, PyObject *t)
{
    return PyObject_CallFunctionObjArgs(method, t, NULL);
}

/* The Python path's tensor test (int64, CPU, one contiguous dimension),
 * the tensor's own attributes read as the Python path reads them. */
static int lengths_from_tensor(PyObject *t, lengths_t *l)
{
    PyObject *v;
    int ok;
    long long dim, numel;
    void *ptr;

    v = PyObject_GetAttr(t, s_dtype);
    ok = v == tensor.int64;
    Py_XDECREF(v);
    if (!ok)
        goto not_taken;
    v = PyObject_GetAttr(t, s_is_cpu);
    ok = v == Py_True;
    Py_XDECREF(v);
    if (!ok)
        goto not_taken;
    v = tensor_call(tensor.dim, t);
    dim = v != NULL && Py_TYPE(v) == &PyLong_Type ? PyLong_AsLongLong(v) : -1;
    Py_XDECREF(v);
    if (dim != 1)
        goto not_taken;
    v = tensor_call(tensor.is_contiguous, t);
    ok = v == Py_True;
    Py_XDECREF(v);
    if (!ok)
        goto not_taken;
    v = tensor_call(tensor.numel, t);
    numel = v != NULL && Py_TYPE(v) == &PyLong_Type ? PyLong_AsLongLong(v) : -1;
    Py_XDECREF(v);
    if (numel < 0)
        goto not_taken;
    v = tensor_call(tensor.data_ptr, t);
    ptr = v != NULL && Py_TYPE(v) == &PyLong_Type ? PyLong_AsVoidPtr(v) : NULL;
    Py_XDECREF(v);
    if (PyErr_Occurred() || (ptr == NULL && numel > 0))
        goto not_taken;
    l->lens = numel ? (const int64_t *)ptr : NULL;
    l->n = numel;
    return 1;
not_taken:
    PyErr_Clear();
    return 0;
}

static int lengths_of(PyObject *seq, int64_t *stack, lengths_t *l)
{
    PyTypeObject *t = Py_TYPE(seq);
    if (t == &PyList_Type || t == &PyTuple_Type)
        return lengths_from_sequence(seq, t == &PyList_Type, stack, l);
    if (tensor.type != NULL && t == tensor.type)
        return lengths_from_tensor(seq, l);
    /* Buffers of bytes the Python path refuses by type, before their format. */
    if (t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyByteArray_Type)
        return 0;
    return lengths_from_buffer(seq, l);
}

/* The library's status for seq, or NOT_TAKEN; -2 with an exception set. */
static int steps_code(StepsObject *s, int which, PyObject *seq)
{
    int64_t stack[STACK_LENS];
    lengths_t l;
    int r, st;

    memset(&l, 0, sizeof(l));
    r = lengths_of(seq, stack, &l);
    if (r <= 0) {
        lengths_release(&l);
        return r < 0 ? -2 : NOT_TAKEN;
    }
    step_fn fn = s->fns[which];
    int64_t h = s->handle;
    Py_BEGIN_ALLOW_THREADS
    st = fn(h, l.lens, l.n);
    Py_END_ALLOW_THREADS
    lengths_release(&l);
    return st;
}

/* Hands the call as it was made to the package's fallback. */
static PyObject *steps_fallback(StepsObject *s, int which, int code, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *tuple, *kwargs = NULL, *res = NULL;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_Size(kwnames) : 0;

    tuple = PyTuple_New(nargs);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SetItem(tuple, i, args[i]);
    }
    if (nkw > 0) {
        kwargs = PyDict_New();
        if (kwargs == NULL)
            goto out;
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (PyDict_SetItem(kwargs, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0)
                goto out;
        }
    }
    res = PyObject_CallFunction(s->fallback, "iiOO", which, code, tuple, kwargs != NULL ? kwargs : Py_None);
out:
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return res;
}

/* step(seq_lens), and step's eager_reclaim: taken here when it is None or
 * the cache's own flag (True or False itself); any other shape of call goes
 * to the fallback as it was made. */
static PyObject *steps_call(PyObject *self, int which, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    StepsObject *s = (StepsObject *)self;
    int code;

    if (kwnames != NULL || nargs < 1 || nargs > (which == CALL_STEP ? 2 : 1) ||
        (nargs == 2 && args[1] != Py_None && args[1] != s->eager))
        return steps_fallback(s, which, NOT_TAKEN, args, nargs, kwnames);
    code = steps_code(s, which, args[0]);
    if (code == 0)
        Py_RETURN_NONE;
    if (code == -2)
        return NULL;
    return steps_fallback(s, which, code, args, nargs, kwnames);
}

static PyObject *steps_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return steps_call(self, CALL_STEP, args, nargs, kwnames);
}

static PyObject *steps_step_async(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return steps_call(self, CALL_STEP_ASYNC, args, nargs, kwnames);
}

static PyObject *steps_step_layered(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return steps_call(self, CALL_STEP_LAYERED, args, nargs, kwnames);
}

static PyObject *steps_code_method(PyObject *self, PyObject *args)
{
    int which, code;
    PyObject *seq;

    if (!PyArg_ParseTuple(args, "iO:code", &which, &seq))
        return NULL;
    if (which < 0 || which >= NCALLS) {
        PyErr_SetString(PyExc_ValueError, "code: call 0 (step), 1 (step_async) or 2 (step_layered)");
        return NULL;
    }
    code = steps_code((StepsObject *)self, which, seq);
    return code == -2 ? NULL : PyLong_FromLong(code);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* time_step(seq_lens, iters) -> (p50_ns, p99_ns): vattn_step called from
 * C iters times with the same lengths, timed one call at a time with the
 * monotonic clock: the C-to-Go call and the library's own work, without
 * Python. bench/binding sets it beside Go's own loop (vattn_time_steps). */
static PyObject *steps_time_step(PyObject *self, PyObject *args)
{
    StepsObject *s = (StepsObject *)self;
    PyObject *seq;
    long long iters;
    int64_t stack[STACK_LENS], *ds;
    lengths_t l;
    int r, st = 0;

    if (!PyArg_ParseTuple(args, "OL:time_step", &seq, &iters))
        return NULL;
    if (iters < 1 || iters > 10000000) {
        PyErr_SetString(PyExc_ValueError, "time_step: iterations from 1 to 10,000,000");
        return NULL;
    }
    memset(&l, 0, sizeof(l));
    r = lengths_of(seq, stack, &l);
    if (r <= 0) {
        lengths_release(&l);
        if (r == 0)
            PyErr_SetString(PyExc_ValueError, "time_step: lengths the extension does not take");
        return NULL;
    }
    ds = PyMem_Malloc((size_t)iters * sizeof(int64_t));
    if (ds == NULL) {
        lengths_release(&l);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (long long i = 0; i < iters && st == 0; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        st = s->fns[CALL_STEP](s->handle, l.lens, l.n);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ds[i] = (int64_t)(b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
    }
    Py_END_ALLOW_THREADS
    lengths_release(&l);
    if (st != 0) {
        PyMem_Free(ds);
        PyErr_Format(PyExc_RuntimeError, "time_step: vattn_step answered status %d", st);
        return NULL;
    }
    qsort(ds, (size_t)iters, sizeof(int64_t), cmp_i64);
    PyObject *res = Py_BuildValue("LL", (long long)ds[iters / 2], (long long)ds[iters * 99 / 100]);
    PyMem_Free(ds);
    return res;
}

#define FASTCALL_KW(fn) (PyCFunction)(void (*)(void))(fn), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef steps_methods[] = {
    {"step", FASTCALL_KW(steps_step), "step(seq_lens, eager_reclaim=None): vattn_step, or the fallback"},
    {"step_async", FASTCALL_KW(steps_step_async), "step_async(seq_lens): vattn_step_async, or the fallback"},
    {"step_layered", FASTCALL_KW(steps_step_layered),
     "step_layered(seq_lens): vattn_step_layered, or the fallback"},
    {"code", steps_code_method, METH_VARARGS,
     "code(call, seq_lens) -> the library's vattn_status (0: done), or NOT_TAKEN: the library was not "
     "called; call 0: step, 1: step_async, 2: step_layered; no fallback"},
    {"time_step", steps_time_step, METH_VARARGS,
     "time_step(seq_lens, iters) -> (p50_ns, p99_ns) of vattn_step called from C (a benchmark)"},
    {NULL, NULL, 0, NULL},
};

static void steps_dealloc(PyObject *self)
{
    StepsObject *s = (StepsObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(s->eager);
    Py_XDECREF(s->fallback);
    freefunc free_fn = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    free_fn(self);
    Py_DECREF(tp);
}

static PyType_Slot steps_slots[] = {
    {Py_tp_dealloc, steps_dealloc},
    {Py_tp_methods, steps_methods},
    {Py_tp_doc, "One cache's step calls into libvattn (made by vattn._fast.steps)."},
    {0, NULL},
};

static PyType_Spec steps_spec = {
    "vattn._fast.Steps", sizeof(StepsObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, steps_slots,
};

static PyTypeObject *steps_type;

static PyObject *fast_steps(PyObject *mod, PyObject *args)
{
    long long handle;
    unsigned long long addr[NCALLS];
    int eager;
    PyObject *fallback;
    StepsObject *s;

    (void)mod;
    if (!PyArg_ParseTuple(args, "LKKKpO:steps", &handle, &addr[0], &addr[1], &addr[2], &eager, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "steps: the fallback is not callable");
        return NULL;
    }
    for (int i = 0; i < NCALLS; i++) {
        if (addr[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "steps: a null function address");
            return NULL;
        }
    }
    s = (StepsObject *)PyType_GenericAlloc(steps_type, 0);
    if (s == NULL)
        return NULL;
    s->handle = handle;
    for (int i = 0; i < NCALLS; i++)
        s->fns[i] = (step_fn)(uintptr_t)addr[i];
    s->eager = PyBool_FromLong(eager);
    Py_INCREF(fallback);
    s->fallback = fallback;
    return (PyObject *)s;
}

static PyObject *fast_register_tensor(PyObject *mod, PyObject *args)
{
    PyObject *type, *int64;
    PyObject *m[4] = {NULL, NULL, NULL, NULL};
    static const char *names[4] = {"dim", "is_contiguous", "numel", "data_ptr"};

    (void)mod;
    if (!PyArg_ParseTuple(args, "OO:register_tensor", &type, &int64))
        return NULL;
    if (type == Py_None) {
        /* Forget the registered type. */
        memset(m, 0, sizeof(m));
        type = int64 = NULL;
    } else if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "register_tensor: want a type, or None");
        return NULL;
    }
    for (int i = 0; type != NULL && i < 4; i++) {
        m[i] = PyObject_GetAttrString(type, names[i]);
        if (m[i] == NULL) {
            for (int j = 0; j < i; j++)
                Py_DECREF(m[j]);
            return NULL;
        }
    }
    PyObject *old[6] = {(PyObject *)tensor.type, tensor.int64, tensor.dim, tensor.is_contiguous,
                        tensor.numel, tensor.data_ptr};
    Py_XINCREF(type);
    Py_XINCREF(int64);
    tensor.type = (PyTypeObject *)type;
    tensor.int64 = int64;
    tensor.dim = m[0];
    tensor.is_contiguous = m[1];
    tensor.numel = m[2];
    tensor.data_ptr = m[3];
    /* Released once the new ones are in place: a release may run code. */
    for (int i = 0; i < 6; i++)
        Py_XDECREF(old[i]);
    Py_RETURN_NONE;
}

static PyObject *fast_tensor_type(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    if (tensor.type == NULL)
        Py_RETURN_NONE;
    PyObject *t = (PyObject *)tensor.type;
    Py_INCREF(t);
    return t;
}

static PyMethodDef fast_methods[] = {
    {"steps", fast_steps, METH_VARARGS,
     "steps(handle, vattn_step, vattn_step_async, vattn_step_layered, eager_reclaim, fallback): "
     "the step calls of one cache, given the library functions' addresses; a call not completed "
     "here is handed as fallback(call, code, args, kwargs)"},
    {"register_tensor", fast_register_tensor, METH_VARARGS,
     "register_tensor(tensor_type, int64_dtype): take CPU int64 tensors of that exact type "
     "(None, None: take none)"},
    {"tensor_type", fast_tensor_type, METH_NOARGS, "the registered tensor type, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT, "_fast",
    "vattn's step calls without ctypes (see _fast.c).", -1, fast_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    PyObject *m;

    s_dtype = PyUnicode_InternFromString("dtype");
    s_is_cpu = PyUnicode_InternFromString("is_cpu");
    if (s_dtype == NULL || s_is_cpu == NULL)
        return NULL;
    steps_type = (PyTypeObject *)PyType_FromSpec(&steps_spec);
    if (steps_type == NULL)
        return NULL;
    m = PyModule_Create(&fast_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "VERSION", FAST_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "NOT_TAKEN", NOT_TAKEN) < 0 ||
        PyModule_AddIntConstant(m, "STACK_LENS", STACK_LENS) < 0 ||
        PyModule_AddObjectRef(m, "Steps", (PyObject *)steps_type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
