/*
 * _hxring: the ordering-critical words of a shared-memory ring (engine/ring/ring_buffer.py), in C11
 * atomics.
 *
 * The Python classes engine.ring.RingBuffer and engine.ring.Consumer subclass RingCore and
 * ConsumerCore, so the hot methods (try_publish, free_slots, available, peek, release, set_waiting)
 * are these C functions, called directly with no Python frame in between. Rare paths (waking parked
 * consumers, raising ConsumerDropped with its details) call back into Python methods by name.
 *
 * Every load and store of a cursor, generation or waiting word below is an explicit atomic with the
 * order it needs; nothing relies on x86 store ordering. The layout, the owner of each word and the
 * argument why the orders suffice are in the ring_buffer module docstring; the numbered notes here
 * refer to it:
 *   (1) producer: slot bytes, then `published` with release; consumer: `published` with acquire,
 *       then slot bytes;
 *   (2) consumer: slot reads, then its cursor with release; producer: cursors with acquire before
 *       it reuses their slots;
 *   (3) park/wake (Dekker): consumer stores waiting=1, seq_cst fence, loads `published`; producer
 *       stores `published`, seq_cst fence, loads the waiting words;
 *   (4) drop (seqlock): producer stores drop_gen+1, seq_cst fence, then may overwrite the dropped
 *       consumer's slots; consumer reads slots, acquire fence, loads drop_gen and discards the read
 *       if it changed;
 *   (5) (re-)registration (Dekker): consumer stores ack=drop_gen, seq_cst fence, loads `published`
 *       and resumes there; producer: seq_cst fence before it loads the acks to compute its gate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "the ring needs lock-free 64-bit atomics");
_Static_assert(sizeof(long long) == 8, "64-bit words");

typedef _Atomic long long aword;

/* Layout: keep in step with engine/ring/ring_buffer.py (LAYOUT_VERSION 2). */
#define CONTROL_BYTES 256
#define CONSUMER_BYTES 256
#define W_PUBLISHED 8 /* control block word: byte 64, its own cache line */
/* consumer block words (8-byte words from the block's start) */
#define C_CURSOR 0  /* consumer-owned line 0: cursor, ack generation, pid, start ticks */
#define C_ACK 1
#define C_PID 2
#define C_START 3
#define C_WAITING 16 /* consumer-owned line 2 */
#define C_DROP_GEN 24 /* producer-owned line 3: drop generation, reason, cursor and head at the drop */
#define C_DROP_REASON 25
#define C_DROP_CURSOR 26
#define C_DROP_PUBLISHED 27
#define MAX_CONSUMERS 64

#define LD(p, mo) atomic_load_explicit((p), memory_order_##mo)
#define ST(p, v, mo) atomic_store_explicit((p), (v), memory_order_##mo)
#define FENCE(mo) atomic_thread_fence(memory_order_##mo)

static PyObject *str_wake, *str_raise_dropped, *str_batch_too_big, *str_count;

/* ================================================================================================
 * RingCore: one process's handle on a ring (producer side and shared words).
 * ============================================================================================== */
typedef struct {
    PyObject_HEAD
    Py_buffer buf;          /* export held on the mapping while `base` is set */
    char *base;             /* NULL once released: every method checks it */
    long long slot_bytes, capacity, mask, nconsumers;
    aword *published;
    char *slots;
    long long gate;         /* producer-local: a lower bound of every active cursor (see min_cursor) */
    PyObject *slots_view;   /* memoryview of the slots: consumers' peek returns slices of it */
} RingCore;

static inline aword *cword(const RingCore *r, long long i, int w) {
    return (aword *)(r->base + CONTROL_BYTES + i * CONSUMER_BYTES) + w;
}

static int ring_closed(const RingCore *r) {
    if (r->base == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed ring");
        return 1;
    }
    return 0;
}

/* Lowest cursor of the active consumers, or `published` if there is none. The seq_cst fence first
 * pairs with a registering consumer's fence (5): either this pass sees its ack (and then a cursor at
 * least as new as the one it stored before the ack), or that consumer's load of `published` sees
 * every value this producer stored before the fence, so it resumes at or after the gate computed
 * here and the slots this gate lets the producer reuse are all behind it. */
static long long min_cursor(RingCore *r) {
    FENCE(seq_cst);
    long long low = LD(r->published, acquire);
    for (long long i = 0; i < r->nconsumers; i++) {
        long long gen = LD(cword(r, i, C_DROP_GEN), relaxed); /* written by the producer only */
        long long ack = LD(cword(r, i, C_ACK), acquire);
        if (ack != gen)
            continue; /* dropped and not re-registered: does not gate */
        long long c = LD(cword(r, i, C_CURSOR), acquire); /* (2) */
        if (c < low)
            low = c;
    }
    return low;
}

static int RingCore_init(RingCore *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"buffer", "slots", "consumers", "slot_bytes", "capacity", "data_offset", NULL};
    PyObject *buffer, *slots;
    long long consumers, slot_bytes, capacity, data_offset;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOLLLL", kwlist, &buffer, &slots, &consumers,
                                     &slot_bytes, &capacity, &data_offset))
        return -1;
    if (self->base != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RingCore already initialised");
        return -1;
    }
    if (consumers < 1 || consumers > MAX_CONSUMERS || slot_bytes < 8 || slot_bytes % 8 || capacity < 2 ||
        (capacity & (capacity - 1)) || data_offset < CONTROL_BYTES + consumers * CONSUMER_BYTES) {
        PyErr_SetString(PyExc_ValueError, "inconsistent ring geometry");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->buf, PyBUF_WRITABLE) < 0)
        return -1;
    if (self->buf.len < data_offset + capacity * slot_bytes || ((uintptr_t)self->buf.buf & 63)) {
        PyBuffer_Release(&self->buf);
        PyErr_SetString(PyExc_ValueError, "ring buffer too small or not cache-line aligned");
        return -1;
    }
    self->base = self->buf.buf;
    self->slot_bytes = slot_bytes;
    self->capacity = capacity;
    self->mask = capacity - 1;
    self->nconsumers = consumers;
    self->published = (aword *)(self->base) + W_PUBLISHED;
    self->slots = self->base + data_offset;
    self->gate = 0;
    Py_INCREF(slots);
    Py_XSETREF(self->slots_view, slots);
    return 0;
}

static int RingCore_traverse(RingCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->slots_view);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int RingCore_clear(RingCore *self) {
    Py_CLEAR(self->slots_view);
    return 0;
}

static void RingCore_dealloc(RingCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->base != NULL) {
        self->base = NULL;
        PyBuffer_Release(&self->buf);
    }
    RingCore_clear(self);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *RingCore_release_memory(RingCore *self, PyObject *unused) {
    if (self->base != NULL) {
        self->base = NULL;
        PyBuffer_Release(&self->buf);
    }
    Py_RETURN_NONE;
}

/* try_publish(data, count=None) -> bool */
static PyObject *RingCore_try_publish(RingCore *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
    PyObject *data, *count = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 1 || nargs + nkw > 2) {
        PyErr_SetString(PyExc_TypeError, "try_publish(data, count=None)");
        return NULL;
    }
    data = args[0];
    if (nargs == 2)
        count = args[1];
    if (nkw) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, 0);
        if (PyUnicode_Compare(key, str_count) != 0) {
            PyErr_Format(PyExc_TypeError, "try_publish() got an unexpected keyword argument %R", key);
            return NULL;
        }
        count = args[1];
    }
    if (ring_closed(self))
        return NULL;
    Py_buffer src;
    if (PyObject_GetBuffer(data, &src, PyBUF_SIMPLE) < 0)
        return NULL;
    const long long sb = self->slot_bytes;
    long long n;
    if (count == Py_None) {
        n = src.len / sb;
    } else {
        n = PyLong_AsLongLong(count);
        if (n == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&src);
            return NULL;
        }
    }
    if (n > self->capacity) {
        PyBuffer_Release(&src);
        PyObject *arg = PyLong_FromLongLong(n);
        PyObject *r = arg ? PyObject_CallMethodOneArg((PyObject *)self, str_batch_too_big, arg) : NULL;
        Py_XDECREF(arg);
        Py_XDECREF(r);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "batch exceeds the ring's capacity");
        return NULL;
    }
    if (n < 0 || n * sb > src.len) {
        PyBuffer_Release(&src);
        PyErr_Format(PyExc_ValueError, "count %lld needs %lld bytes, data has %zd", n, n * sb, src.len);
        return NULL;
    }
    if (n == 0) {
        PyBuffer_Release(&src);
        Py_RETURN_TRUE;
    }
    const long long cap = self->capacity;
    const long long pub = LD(self->published, relaxed); /* our own word: we are its only writer */
    if (cap - (pub - self->gate) < n) {
        self->gate = min_cursor(self);
        if (cap - (pub - self->gate) < n) {
            PyBuffer_Release(&src);
            Py_RETURN_FALSE;
        }
    }
    /* The slot bytes: plain stores, ordered before the release store of `published` below (1). */
    const long long start = (pub & self->mask) * sb, bytes = n * sb, limit = cap * sb;
    const char *p = src.buf;
    if (start + bytes <= limit) {
        memcpy(self->slots + start, p, bytes);
    } else {
        memcpy(self->slots + start, p, limit - start);
        memcpy(self->slots, p + (limit - start), bytes - (limit - start));
    }
    PyBuffer_Release(&src);
    ST(self->published, pub + n, release); /* (1) */
    FENCE(seq_cst);                         /* (3): the store above before the waiting loads below */
    unsigned long long wake = 0;
    for (long long i = 0; i < self->nconsumers; i++)
        if (LD(cword(self, i, C_WAITING), relaxed))
            wake |= 1ULL << i;
    if (wake) {
        PyObject *mask = PyLong_FromUnsignedLongLong(wake);
        if (mask == NULL)
            return NULL;
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_wake, mask);
        Py_DECREF(mask);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_TRUE;
}

static PyObject *RingCore_free_slots(RingCore *self, PyObject *const *args, Py_ssize_t nargs) {
    long long needed = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "free_slots(needed=1)");
        return NULL;
    }
    if (nargs == 1) {
        needed = PyLong_AsLongLong(args[0]);
        if (needed == -1 && PyErr_Occurred())
            return NULL;
    }
    if (ring_closed(self))
        return NULL;
    long long pub = LD(self->published, acquire);
    long long free_n = self->capacity - (pub - self->gate);
    if (free_n < needed) {
        self->gate = min_cursor(self);
        free_n = self->capacity - (pub - self->gate);
    }
    return PyLong_FromLongLong(free_n);
}

static PyObject *RingCore_min_cursor(RingCore *self, PyObject *unused) {
    if (ring_closed(self))
        return NULL;
    self->gate = min_cursor(self);
    return PyLong_FromLongLong(self->gate);
}

static int check_index(RingCore *self, PyObject *arg, long long *index) {
    if (ring_closed(self))
        return -1;
    *index = PyLong_AsLongLong(arg);
    if (*index == -1 && PyErr_Occurred())
        return -1;
    if (*index < 0 || *index >= self->nconsumers) {
        PyErr_Format(PyExc_IndexError, "consumer index %lld outside 0..%lld", *index, self->nconsumers - 1);
        return -1;
    }
    return 0;
}

static PyObject *RingCore_consumer_cursor(RingCore *self, PyObject *arg) {
    long long i;
    if (check_index(self, arg, &i) < 0)
        return NULL;
    return PyLong_FromLongLong(LD(cword(self, i, C_CURSOR), acquire));
}

static PyObject *RingCore_is_active(RingCore *self, PyObject *arg) {
    long long i;
    if (check_index(self, arg, &i) < 0)
        return NULL;
    long long ack = LD(cword(self, i, C_ACK), acquire);
    return PyBool_FromLong(ack == LD(cword(self, i, C_DROP_GEN), acquire));
}

/* _consumer_words(i) -> (cursor, ack, pid, start, waiting, drop_gen, drop_reason, drop_cursor,
 * drop_published): a snapshot for liveness checks, diagnostics and tests (not one atomic read). */
static PyObject *RingCore_consumer_words(RingCore *self, PyObject *arg) {
    long long i;
    if (check_index(self, arg, &i) < 0)
        return NULL;
    long long gen = LD(cword(self, i, C_DROP_GEN), acquire);
    return Py_BuildValue("(LLLLLLLLL)", LD(cword(self, i, C_CURSOR), acquire), LD(cword(self, i, C_ACK), acquire),
                         LD(cword(self, i, C_PID), relaxed), LD(cword(self, i, C_START), relaxed),
                         LD(cword(self, i, C_WAITING), relaxed), gen, LD(cword(self, i, C_DROP_REASON), relaxed),
                         LD(cword(self, i, C_DROP_CURSOR), relaxed), LD(cword(self, i, C_DROP_PUBLISHED), relaxed));
}

/* _drop(i, reason) -> bool: producer only. Drop consumer i if it is active: record why and where,
 * bump its drop generation (release), then a seq_cst fence so that no later slot store of this
 * producer can become visible before the new generation (4). */
static PyObject *RingCore_drop(RingCore *self, PyObject *const *args, Py_ssize_t nargs) {
    long long i, reason;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_drop(index, reason)");
        return NULL;
    }
    if (check_index(self, args[0], &i) < 0)
        return NULL;
    reason = PyLong_AsLongLong(args[1]);
    if (reason == -1 && PyErr_Occurred())
        return NULL;
    long long gen = LD(cword(self, i, C_DROP_GEN), relaxed);
    if (LD(cword(self, i, C_ACK), acquire) != gen)
        Py_RETURN_FALSE;
    ST(cword(self, i, C_DROP_REASON), reason, relaxed);
    ST(cword(self, i, C_DROP_CURSOR), LD(cword(self, i, C_CURSOR), acquire), relaxed);
    ST(cword(self, i, C_DROP_PUBLISHED), LD(self->published, relaxed), relaxed);
    ST(cword(self, i, C_DROP_GEN), gen + 1, release);
    FENCE(seq_cst); /* (4) */
    self->gate = min_cursor(self);
    Py_RETURN_TRUE;
}

static PyObject *RingCore_get_published(RingCore *self, void *closure) {
    if (ring_closed(self))
        return NULL;
    return PyLong_FromLongLong(LD(self->published, acquire));
}

static PyObject *RingCore_get_released(RingCore *self, void *closure) {
    return PyBool_FromLong(self->base == NULL);
}

static PyMethodDef RingCore_methods[] = {
    {"try_publish", (PyCFunction)(void (*)(void))RingCore_try_publish, METH_FASTCALL | METH_KEYWORDS,
     "try_publish(data, count=None) -> bool: publish whole slots if all fit now; never partial."},
    {"free_slots", (PyCFunction)(void (*)(void))RingCore_free_slots, METH_FASTCALL,
     "free_slots(needed=1) -> int: slots the producer may write now without overtaking an active consumer."},
    {"min_cursor", (PyCFunction)RingCore_min_cursor, METH_NOARGS,
     "min_cursor() -> int: lowest active consumer cursor (``published`` if none); refreshes the gate."},
    {"consumer_cursor", (PyCFunction)RingCore_consumer_cursor, METH_O, "consumer_cursor(index) -> int"},
    {"is_active", (PyCFunction)RingCore_is_active, METH_O,
     "is_active(index) -> bool: registered under the current drop generation (gates the producer)."},
    {"_consumer_words", (PyCFunction)RingCore_consumer_words, METH_O,
     "_consumer_words(index) -> (cursor, ack, pid, start, waiting, drop_gen, drop_reason, drop_cursor, "
     "drop_published)"},
    {"_drop", (PyCFunction)(void (*)(void))RingCore_drop, METH_FASTCALL,
     "_drop(index, reason) -> bool: producer only; drop an active consumer."},
    {"_release_memory", (PyCFunction)RingCore_release_memory, METH_NOARGS,
     "Release the mapping; every later call raises ValueError."},
    {NULL},
};

static PyGetSetDef RingCore_getset[] = {
    {"published", (getter)RingCore_get_published, NULL, "Messages published so far (acquire load).", NULL},
    {"_memory_released", (getter)RingCore_get_released, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot RingCore_slots[] = {
    {Py_tp_doc, "Shared words of a ring and the producer's side (subclassed by engine.ring.RingBuffer)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, RingCore_init},
    {Py_tp_dealloc, RingCore_dealloc},
    {Py_tp_traverse, RingCore_traverse},
    {Py_tp_clear, RingCore_clear},
    {Py_tp_methods, RingCore_methods},
    {Py_tp_getset, RingCore_getset},
    {0, NULL},
};

static PyType_Spec RingCore_spec = {
    .name = "engine.native._hxring.RingCore",
    .basicsize = sizeof(RingCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = RingCore_slots,
};

static PyTypeObject *RingCore_Type;

/* ================================================================================================
 * ConsumerCore: one consumer cursor (subclassed by engine.ring.Consumer).
 * ============================================================================================== */
typedef struct {
    PyObject_HEAD
    RingCore *ring;         /* strong reference */
    long long index;
    aword *cursor_w, *ack_w, *pid_w, *start_w, *waiting_w, *gen_w;
    long long cursor;       /* == *cursor_w: we are its only writer */
    long long ack;          /* the drop generation we registered under */
    long long seen;         /* last `published` loaded: release() checks against it first */
    int registered;
} ConsumerCore;

static int consumer_unusable(ConsumerCore *self) {
    if (self->ring == NULL || !self->registered) {
        PyErr_SetString(PyExc_ValueError, "consumer is not registered");
        return 1;
    }
    return ring_closed(self->ring);
}

static int ConsumerCore_init(ConsumerCore *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ring", "index", NULL};
    PyObject *ring;
    long long index;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!L", kwlist, RingCore_Type, &ring, &index))
        return -1;
    RingCore *r = (RingCore *)ring;
    if (ring_closed(r))
        return -1;
    if (index < 0 || index >= r->nconsumers) {
        PyErr_Format(PyExc_IndexError, "consumer index %lld outside 0..%lld", index, r->nconsumers - 1);
        return -1;
    }
    Py_INCREF(ring);
    Py_XSETREF(self->ring, r);
    self->index = index;
    self->cursor_w = cword(r, index, C_CURSOR);
    self->ack_w = cword(r, index, C_ACK);
    self->pid_w = cword(r, index, C_PID);
    self->start_w = cword(r, index, C_START);
    self->waiting_w = cword(r, index, C_WAITING);
    self->gen_w = cword(r, index, C_DROP_GEN);
    self->registered = 0;
    return 0;
}

/* _register(pid, start_ticks) -> (was_dropped, cursor). Claims this consumer index for the calling
 * process. If the producer dropped the index since it was last registered, re-register at the head
 * (5): store a provisional cursor, then ack = drop generation, seq_cst fence, load `published` and
 * resume exactly there. Otherwise resume at the stored cursor. */
static PyObject *ConsumerCore_register(ConsumerCore *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_register(pid, start_ticks)");
        return NULL;
    }
    long long pid = PyLong_AsLongLong(args[0]), start = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (self->ring == NULL || ring_closed(self->ring))
        return NULL;
    ST(self->start_w, start, relaxed);
    ST(self->pid_w, pid, release);
    long long gen = LD(self->gen_w, acquire);
    long long ack = LD(self->ack_w, acquire);
    int dropped = gen != ack;
    if (dropped) {
        long long head = LD(self->ring->published, acquire);
        ST(self->cursor_w, head, relaxed); /* provisional: ordered before the ack by its release */
        ST(self->ack_w, gen, release);
        FENCE(seq_cst); /* (5) */
        head = LD(self->ring->published, acquire);
        ST(self->cursor_w, head, release);
        self->cursor = head;
    } else {
        self->cursor = LD(self->cursor_w, acquire);
    }
    self->ack = gen;
    self->seen = self->cursor;
    self->registered = 1;
    return Py_BuildValue("(OL)", dropped ? Py_True : Py_False, self->cursor);
}

static PyObject *raise_dropped(ConsumerCore *self) {
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, str_raise_dropped);
    if (r != NULL) { /* the Python hook must raise; be safe if it does not */
        Py_DECREF(r);
        PyErr_SetString(PyExc_RuntimeError, "consumer dropped");
    }
    return NULL;
}

static PyObject *ConsumerCore_available(ConsumerCore *self, PyObject *unused) {
    if (consumer_unusable(self))
        return NULL;
    long long pub = LD(self->ring->published, acquire); /* (1) */
    self->seen = pub;
    return PyLong_FromLongLong(pub - self->cursor);
}

/* peek(max_n=1<<30) -> (memoryview, n): up to max_n contiguous unread slots (stops at the wrap).
 * Raises ConsumerDropped (through _raise_dropped) when the producer dropped this consumer. */
static PyObject *ConsumerCore_peek(ConsumerCore *self, PyObject *const *args, Py_ssize_t nargs) {
    long long max_n = 1LL << 30;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "peek(max_n=1 << 30)");
        return NULL;
    }
    if (nargs == 1) {
        max_n = PyLong_AsLongLong(args[0]);
        if (max_n == -1 && PyErr_Occurred())
            return NULL;
    }
    if (consumer_unusable(self))
        return NULL;
    RingCore *r = self->ring;
    if (LD(self->gen_w, acquire) != self->ack)
        return raise_dropped(self);
    long long pub = LD(r->published, acquire); /* (1): slot bytes read after this load */
    self->seen = pub;
    long long n = pub - self->cursor;
    if (n > max_n)
        n = max_n;
    if (n < 0)
        n = 0;
    long long start = self->cursor & r->mask;
    if (start + n > r->capacity)
        n = r->capacity - start;
    long long sb = r->slot_bytes;
    PyObject *view = PySequence_GetSlice(r->slots_view, start * sb, (start + n) * sb);
    if (view == NULL)
        return NULL;
    PyObject *count = PyLong_FromLongLong(n);
    if (count == NULL) {
        Py_DECREF(view);
        return NULL;
    }
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(view);
        Py_DECREF(count);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, view);
    PyTuple_SET_ITEM(t, 1, count);
    return t;
}

/* release(n): the caller is done with the next n slots. Validates the reads first (4): acquire
 * fence, then the drop generation; if it moved, the slots may have been overwritten while they were
 * read, so nothing is released and ConsumerDropped is raised. Otherwise the cursor moves on with a
 * release store (2). */
static PyObject *ConsumerCore_release(ConsumerCore *self, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (consumer_unusable(self))
        return NULL;
    if (n < 0 || n > self->seen - self->cursor) {
        self->seen = LD(self->ring->published, acquire);
        if (n < 0 || n > self->seen - self->cursor) {
            PyErr_Format(PyExc_ValueError, "release(%lld): only %lld messages are unread", n,
                         self->seen - self->cursor);
            return NULL;
        }
    }
    FENCE(acquire); /* (4): every slot read made so far happens before the generation load */
    if (LD(self->gen_w, relaxed) != self->ack)
        return raise_dropped(self);
    self->cursor += n;
    ST(self->cursor_w, self->cursor, release); /* (2) */
    Py_RETURN_NONE;
}

/* is_dropped() -> bool: True when the producer has dropped this consumer. An acquire fence comes
 * first, so False also means "every slot read so far was intact" (4). */
static PyObject *ConsumerCore_is_dropped(ConsumerCore *self, PyObject *unused) {
    if (consumer_unusable(self))
        return NULL;
    FENCE(acquire);
    return PyBool_FromLong(LD(self->gen_w, relaxed) != self->ack);
}

/* set_waiting(flag): announce (1) or withdraw (0) a park. Setting it is followed by a seq_cst fence
 * (3), so a check of `available()` made after set_waiting(1) either sees a publish or the producer
 * of that publish sees waiting=1 and writes the wake FIFO. */
static PyObject *ConsumerCore_set_waiting(ConsumerCore *self, PyObject *arg) {
    long flag = PyLong_AsLong(arg);
    if (flag == -1 && PyErr_Occurred())
        return NULL;
    if (consumer_unusable(self))
        return NULL;
    ST(self->waiting_w, flag ? 1 : 0, relaxed);
    if (flag)
        FENCE(seq_cst); /* (3) */
    Py_RETURN_NONE;
}

static PyObject *ConsumerCore_get_cursor(ConsumerCore *self, void *closure) {
    return PyLong_FromLongLong(self->cursor);
}

static PyObject *ConsumerCore_get_generation(ConsumerCore *self, void *closure) {
    return PyLong_FromLongLong(self->ack);
}

static int ConsumerCore_traverse(ConsumerCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->ring);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int ConsumerCore_clear(ConsumerCore *self) {
    Py_CLEAR(self->ring);
    return 0;
}

static void ConsumerCore_dealloc(ConsumerCore *self) {
    PyObject_GC_UnTrack(self);
    ConsumerCore_clear(self);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef ConsumerCore_methods[] = {
    {"_register", (PyCFunction)(void (*)(void))ConsumerCore_register, METH_FASTCALL,
     "_register(pid, start_ticks) -> (was_dropped, cursor)"},
    {"available", (PyCFunction)ConsumerCore_available, METH_NOARGS,
     "available() -> int: messages published and not yet released by this consumer."},
    {"peek", (PyCFunction)(void (*)(void))ConsumerCore_peek, METH_FASTCALL,
     "peek(max_n=1 << 30) -> (memoryview, n): zero-copy view of up to max_n contiguous unread slots."},
    {"release", (PyCFunction)ConsumerCore_release, METH_O,
     "release(n): mark n slots consumed; raises ConsumerDropped if they may have been overwritten."},
    {"is_dropped", (PyCFunction)ConsumerCore_is_dropped, METH_NOARGS,
     "is_dropped() -> bool: dropped by the producer (False also validates every read so far)."},
    {"set_waiting", (PyCFunction)ConsumerCore_set_waiting, METH_O,
     "set_waiting(flag): announce or withdraw a park (a full fence follows an announcement)."},
    {NULL},
};

static PyGetSetDef ConsumerCore_getset[] = {
    {"cursor", (getter)ConsumerCore_get_cursor, NULL, "Messages this consumer has released.", NULL},
    {"generation", (getter)ConsumerCore_get_generation, NULL,
     "The producer's drop generation this consumer registered under.", NULL},
    {NULL},
};

static PyType_Slot ConsumerCore_slots[] = {
    {Py_tp_doc, "One consumer cursor of a ring (subclassed by engine.ring.Consumer)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, ConsumerCore_init},
    {Py_tp_dealloc, ConsumerCore_dealloc},
    {Py_tp_traverse, ConsumerCore_traverse},
    {Py_tp_clear, ConsumerCore_clear},
    {Py_tp_methods, ConsumerCore_methods},
    {Py_tp_getset, ConsumerCore_getset},
    {0, NULL},
};

static PyType_Spec ConsumerCore_spec = {
    .name = "engine.native._hxring.ConsumerCore",
    .basicsize = sizeof(ConsumerCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = ConsumerCore_slots,
};

/* ================================================================================================ */
static struct PyModuleDef hxring_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "engine.native._hxring",
    .m_doc = "Atomic cursor, generation and waiting words of the shared-memory ring (see ring_buffer.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__hxring(void) {
    str_wake = PyUnicode_InternFromString("_wake");
    str_raise_dropped = PyUnicode_InternFromString("_raise_dropped");
    str_batch_too_big = PyUnicode_InternFromString("_raise_batch_too_big");
    str_count = PyUnicode_InternFromString("count");
    if (!str_wake || !str_raise_dropped || !str_batch_too_big || !str_count)
        return NULL;
    PyObject *m = PyModule_Create(&hxring_module);
    if (m == NULL)
        return NULL;
    RingCore_Type = (PyTypeObject *)PyType_FromSpec(&RingCore_spec);
    if (RingCore_Type == NULL || PyModule_AddObjectRef(m, "RingCore", (PyObject *)RingCore_Type) < 0)
        goto fail;
    PyObject *cons = PyType_FromSpec(&ConsumerCore_spec);
    if (cons == NULL || PyModule_AddObject(m, "ConsumerCore", cons) < 0) {
        Py_XDECREF(cons);
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "CONTROL_BYTES", CONTROL_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "CONSUMER_BYTES", CONSUMER_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_CONSUMERS", MAX_CONSUMERS) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
