/* _hxtree: keccak256 and the Merkle sum tree's hot loops in C (settlement.incremental_sum_tree).
 *
 * The encodings are settlement.sum_tree's (and contracts/src/libraries/SumTree.sol's):
 *   leaf = keccak256(kind || account(20) || token(20) || amount(32, big-endian))
 *   node = keccak256(0x01 || left_hash(32) || left_sum(32) || right_hash(32) || right_sum(32)),
 *   sum(node) = left_sum + right_sum (256-bit, big-endian; overflow is an error).
 * Arrays are C-contiguous byte buffers: hashes and sums 32 bytes a row, accounts 20; index arrays int64.
 * Keccak is the original Keccak-256 (pad 0x01 ... 0x80), as Ethereum uses, not FIPS SHA3-256.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const uint64_t RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL};
static const int ROTC[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
static const int PILN[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

#define ROTL64(x, y) (((x) << (y)) | ((x) >> (64 - (y))))
#define RATE 136

static void keccakf(uint64_t st[25]) {
    uint64_t t, bc[5];
    for (int r = 0; r < 24; r++) {
        for (int i = 0; i < 5; i++) bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
        for (int i = 0; i < 5; i++) {
            t = bc[(i + 4) % 5] ^ ROTL64(bc[(i + 1) % 5], 1);
            for (int j = 0; j < 25; j += 5) st[j + i] ^= t;
        }
        t = st[1];
        for (int i = 0; i < 24; i++) {
            int j = PILN[i];
            bc[0] = st[j];
            st[j] = ROTL64(t, ROTC[i]);
            t = bc[0];
        }
        for (int j = 0; j < 25; j += 5) {
            for (int i = 0; i < 5; i++) bc[i] = st[j + i];
            for (int i = 0; i < 5; i++) st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
        }
        st[0] ^= RC[r];
    }
}

/* little-endian hosts only (x86-64, aarch64): lanes are the bytes in memory order */
static void keccak256(const uint8_t *in, size_t len, uint8_t out[32]) {
    uint64_t st[25];
    uint8_t block[RATE];
    memset(st, 0, sizeof st);
    while (len >= RATE) {
        for (int i = 0; i < RATE / 8; i++) {
            uint64_t lane;
            memcpy(&lane, in + 8 * i, 8);
            st[i] ^= lane;
        }
        keccakf(st);
        in += RATE;
        len -= RATE;
    }
    memset(block, 0, RATE);
    memcpy(block, in, len);
    block[len] ^= 0x01;
    block[RATE - 1] ^= 0x80;
    for (int i = 0; i < RATE / 8; i++) {
        uint64_t lane;
        memcpy(&lane, block + 8 * i, 8);
        st[i] ^= lane;
    }
    keccakf(st);
    memcpy(out, st, 32);
}

/* a + b into out (32-byte big-endian); returns 1 on overflow */
static int add256(const uint8_t *a, const uint8_t *b, uint8_t *out) {
    unsigned carry = 0;
    for (int i = 31; i >= 0; i--) {
        unsigned v = (unsigned)a[i] + (unsigned)b[i] + carry;
        out[i] = (uint8_t)v;
        carry = v >> 8;
    }
    return (int)carry;
}

static PyObject *py_keccak256(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    uint8_t out[32];
    keccak256((const uint8_t *)in.buf, (size_t)in.len, out);
    PyBuffer_Release(&in);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

/* hash_parents(child_h, child_s, n_children, parents, out_h, out_s) -> number hashed */
static PyObject *py_hash_parents(PyObject *self, PyObject *args) {
    Py_buffer ch, cs, par, oh, os_;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*ny*w*w*", &ch, &cs, &n, &par, &oh, &os_)) return NULL;
    const uint8_t *H = ch.buf, *S = cs.buf;
    const int64_t *P = par.buf;
    uint8_t *OH = oh.buf, *OS = os_.buf;
    Py_ssize_t np_ = par.len / 8, cap_out = oh.len / 32;
    static const uint8_t ZERO[32] = {0};
    uint8_t msg[129];
    int overflow = 0, bad = 0;
    msg[0] = 0x01;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < np_; k++) {
        int64_t p = P[k];
        int64_t l = 2 * p, r = 2 * p + 1;
        if (p < 0 || p >= cap_out || l >= n || (Py_ssize_t)(r * 32) > ch.len + 32 || os_.len < oh.len) {
            bad = 1;
            break;
        }
        const uint8_t *rh = r < n ? H + 32 * r : ZERO, *rs = r < n ? S + 32 * r : ZERO;
        memcpy(msg + 1, H + 32 * l, 32);
        memcpy(msg + 33, S + 32 * l, 32);
        memcpy(msg + 65, rh, 32);
        memcpy(msg + 97, rs, 32);
        keccak256(msg, 129, OH + 32 * p);
        if (add256(S + 32 * l, rs, OS + 32 * p)) {
            overflow = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ch);
    PyBuffer_Release(&cs);
    PyBuffer_Release(&par);
    PyBuffer_Release(&oh);
    PyBuffer_Release(&os_);
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "hash_parents: index out of range");
        return NULL;
    }
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "hash_parents: sum overflows uint256");
        return NULL;
    }
    return PyLong_FromSsize_t(np_);
}

/* hash_leaves(accounts(n*20), token(20), amounts(n*32), indices, kind, out_h(n*32)) */
static PyObject *py_hash_leaves(PyObject *self, PyObject *args) {
    Py_buffer acc, tok, amt, idx, oh;
    int kind;
    if (!PyArg_ParseTuple(args, "y*y*y*y*iw*", &acc, &tok, &amt, &idx, &kind, &oh)) return NULL;
    int bad = tok.len != 20;
    const int64_t *I = idx.buf;
    Py_ssize_t ni = idx.len / 8, n = acc.len / 20;
    uint8_t msg[73];
    msg[0] = (uint8_t)kind;
    if (!bad) memcpy(msg + 21, tok.buf, 20);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < ni && !bad; k++) {
        int64_t i = I[k];
        if (i < 0 || i >= n || (i + 1) * 32 > amt.len || (i + 1) * 32 > oh.len) {
            bad = 1;
            break;
        }
        memcpy(msg + 1, (const uint8_t *)acc.buf + 20 * i, 20);
        memcpy(msg + 41, (const uint8_t *)amt.buf + 32 * i, 32);
        keccak256(msg, 73, (uint8_t *)oh.buf + 32 * i);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&acc);
    PyBuffer_Release(&tok);
    PyBuffer_Release(&amt);
    PyBuffer_Release(&idx);
    PyBuffer_Release(&oh);
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "hash_leaves: bad token length or index out of range");
        return NULL;
    }
    return PyLong_FromSsize_t(ni);
}

static PyMethodDef METHODS[] = {
    {"keccak256", py_keccak256, METH_VARARGS, "keccak256(data) -> 32 bytes (Ethereum's Keccak-256)."},
    {"hash_parents", py_hash_parents, METH_VARARGS,
     "hash_parents(child_h, child_s, n_children, parents_int64, out_h, out_s) -> count: node hashes and sums."},
    {"hash_leaves", py_hash_leaves, METH_VARARGS,
     "hash_leaves(accounts, token, amounts, indices_int64, kind, out_h) -> count: leaf hashes."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_hxtree", "keccak256 and sum-tree loops in C", -1, METHODS};

PyMODINIT_FUNC PyInit__hxtree(void) { return PyModule_Create(&MODULE); }
