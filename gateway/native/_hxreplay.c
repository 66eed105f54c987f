/* _hxreplay: the replay buffer's reading of a risk batch, in C (gateway.replay_buffer).
 *
 * split(data, account_at, recent, fill_type, maker_at, seq_at) -> list of
 *     (account, first_seq, breaks, kept_seq, last_seq, events)
 * one tuple per account of `recent` with events in the batch, in the order of its first event:
 * `account_at` (256 int16, by message type) is the byte offset of the receiving account, -1 for a
 * type that has none; an event of type `fill_type` whose account is 0 is the maker's copy (the
 * account at `maker_at`); `recent` is a sorted uint32 array. For each account: the seq (uint64 at
 * `seq_at`) of its first event, the number of holes between its events (a seq that is not the
 * one before + 1), and the events from its last hole on (all of them when there is none) as one
 * bytes object with their first and last seq. ReplayBuffer._append does the bookkeeping; its
 * per-event reading in Python (ReplayBuffer._record_python) is the specification, and
 * tests/gateway/test_replay_buffer.py holds both to tests/gateway/replay_spec.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLOT 64

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v; /* (little-endian hosts only: the wire is little-endian, as x86 and arm64 are) */
}
static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int is_recent(const uint32_t *recent, Py_ssize_t k, uint32_t account) {
    Py_ssize_t lo = 0, hi = k;
    while (lo < hi) {
        const Py_ssize_t mid = lo + (hi - lo) / 2;
        if (recent[mid] < account) lo = mid + 1;
        else hi = mid;
    }
    return lo < k && recent[lo] == account;
}

static PyObject *split(PyObject *self, PyObject *args) {
    Py_buffer d = {0}, at_buf = {0}, rec = {0};
    int fill_type, maker_at, seq_at;
    if (!PyArg_ParseTuple(args, "y*y*y*iii", &d, &at_buf, &rec, &fill_type, &maker_at, &seq_at)) return NULL;
    PyObject *out = NULL;
    int32_t *next = NULL, *table = NULL;
    uint32_t *gacct = NULL;
    int32_t *ghead = NULL, *gtail = NULL, *gcount = NULL;
    if (at_buf.len != 256 * 2 || rec.len % 4 || maker_at < 0 || maker_at > SLOT - 4 || seq_at < 0 ||
        seq_at > SLOT - 8) {
        PyErr_SetString(PyExc_ValueError, "split: account_at must be 256 int16, recent uint32, offsets in a slot");
        goto done;
    }
    const int16_t *account_at = at_buf.buf;
    for (int t = 0; t < 256; t++)
        if (account_at[t] > SLOT - 4) {
            PyErr_SetString(PyExc_ValueError, "split: an account offset past the slot");
            goto done;
        }
    const uint8_t *base = d.buf;
    const Py_ssize_t n = d.len / SLOT, k = rec.len / 4;
    const uint32_t *recent = rec.buf;
    out = PyList_New(0);
    if (!out || !n || !k) goto done;
    /* groups by account, in order of first appearance; events of a group chained in batch order */
    Py_ssize_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    next = malloc(sizeof(int32_t) * (size_t)n);
    table = malloc(sizeof(int32_t) * (size_t)cap);
    gacct = malloc(sizeof(uint32_t) * (size_t)n);
    ghead = malloc(sizeof(int32_t) * (size_t)n);
    gtail = malloc(sizeof(int32_t) * (size_t)n);
    gcount = malloc(sizeof(int32_t) * (size_t)n);
    if (!next || !table || !gacct || !ghead || !gtail || !gcount) {
        PyErr_NoMemory();
        Py_CLEAR(out);
        goto done;
    }
    memset(table, 0xFF, sizeof(int32_t) * (size_t)cap);
    int32_t ngroups = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *ev = base + i * SLOT;
        const int at = account_at[ev[0]];
        if (at < 0) continue;
        uint32_t account = rd32(ev + at);
        if (!account && ev[0] == fill_type) account = rd32(ev + maker_at);
        if (!is_recent(recent, k, account)) continue;
        Py_ssize_t h = (Py_ssize_t)((account * 2654435761u) & (uint32_t)(cap - 1));
        while (table[h] >= 0 && gacct[table[h]] != account) h = (h + 1) & (cap - 1);
        int32_t g = table[h];
        if (g < 0) {
            g = table[h] = ngroups++;
            gacct[g] = account;
            ghead[g] = (int32_t)i;
            gcount[g] = 0;
        } else {
            next[gtail[g]] = (int32_t)i;
        }
        gtail[g] = (int32_t)i;
        next[i] = -1;
        gcount[g]++;
    }
    for (int32_t g = 0; g < ngroups; g++) {
        /* the holes, and the first event after the last one */
        uint64_t first = rd64(base + (Py_ssize_t)ghead[g] * SLOT + seq_at), prev = first;
        int32_t kept = ghead[g], kept_pos = 0, breaks = 0, pos = 0;
        for (int32_t i = ghead[g]; i >= 0; i = next[i], pos++) {
            const uint64_t seq = rd64(base + (Py_ssize_t)i * SLOT + seq_at);
            if (pos && seq != prev + 1) {
                breaks++;
                kept = i;
                kept_pos = pos;
            }
            prev = seq;
        }
        const Py_ssize_t m = gcount[g] - kept_pos;
        PyObject *blob = PyBytes_FromStringAndSize(NULL, m * SLOT);
        if (!blob) {
            Py_CLEAR(out);
            goto done;
        }
        char *dst = PyBytes_AS_STRING(blob);
        Py_ssize_t copied = 0;
        for (int32_t i = kept; i >= 0 && copied < m; i = next[i], dst += SLOT, copied++)
            memcpy(dst, base + (Py_ssize_t)i * SLOT, SLOT);
        PyObject *item = Py_BuildValue("(kKiKKN)", (unsigned long)gacct[g], (unsigned long long)first, breaks,
                                       (unsigned long long)rd64(base + (Py_ssize_t)kept * SLOT + seq_at),
                                       (unsigned long long)prev, blob);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(item);
    }
done:
    free(next);
    free(table);
    free(gacct);
    free(ghead);
    free(gtail);
    free(gcount);
    if (d.obj) PyBuffer_Release(&d);
    if (at_buf.obj) PyBuffer_Release(&at_buf);
    if (rec.obj) PyBuffer_Release(&rec);
    return out;
}

static PyMethodDef methods[] = {
    {"split", split, METH_VARARGS, "A risk batch's events of recent accounts, by account (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hxreplay", "The replay buffer's batch reading.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hxreplay(void) { return PyModule_Create(&module); }
