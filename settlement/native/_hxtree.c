/* _hxtree: keccak256 and the Merkle sum tree's hot loops in C (settlement.incremental_sum_tree).
 *
 * The encodings are settlement.sum_tree's (and contracts/src/libraries/SumTree.sol's):
 *   leaf = keccak256(kind || account(20) || token(20) || amount(32, big-endian))
 *   node = keccak256(0x01 || left_hash(32) || left_sum(32) || right_hash(32) || right_sum(32)),
 *   sum(node) = left_sum + right_sum (encoded 256-bit big-endian; the arrays keep sums in 16 bytes,
 *   the tree's totals stay below 2**128, and overflow is an error).
 * Arrays are C-contiguous byte buffers: hashes 32 bytes a row, sums and amounts 16, accounts 20;
 * index arrays int64. Leaf hashes are not stored: hash_leaf_parents makes them for the first level.
 * Keccak is the original Keccak-256 (pad 0x01 ... 0x80), as Ethereum uses, not FIPS SHA3-256.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>

static const uint64_t RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL};

#define ROTL64(x, y) (((x) << (y)) | ((x) >> (64 - (y))))
#define RATE 136

/* Keccak-f[1600], one round per loop turn with the 25 lanes' theta, rho, pi and chi unrolled (the
 * rotation of every lane and its place after pi written out: no tables, no modulo), ~2x the
 * compact loop form. */
static void keccakf(uint64_t s[25]) {
    for (int r = 0; r < 24; r++) {
        const uint64_t c0 = s[0] ^ s[5] ^ s[10] ^ s[15] ^ s[20];
        const uint64_t c1 = s[1] ^ s[6] ^ s[11] ^ s[16] ^ s[21];
        const uint64_t c2 = s[2] ^ s[7] ^ s[12] ^ s[17] ^ s[22];
        const uint64_t c3 = s[3] ^ s[8] ^ s[13] ^ s[18] ^ s[23];
        const uint64_t c4 = s[4] ^ s[9] ^ s[14] ^ s[19] ^ s[24];
        const uint64_t d0 = c4 ^ ROTL64(c1, 1);
        const uint64_t d1 = c0 ^ ROTL64(c2, 1);
        const uint64_t d2 = c1 ^ ROTL64(c3, 1);
        const uint64_t d3 = c2 ^ ROTL64(c4, 1);
        const uint64_t d4 = c3 ^ ROTL64(c0, 1);
        const uint64_t b0 = (s[0] ^ d0);
        const uint64_t b1 = ROTL64(s[6] ^ d1, 44);
        const uint64_t b2 = ROTL64(s[12] ^ d2, 43);
        const uint64_t b3 = ROTL64(s[18] ^ d3, 21);
        const uint64_t b4 = ROTL64(s[24] ^ d4, 14);
        const uint64_t b5 = ROTL64(s[3] ^ d3, 28);
        const uint64_t b6 = ROTL64(s[9] ^ d4, 20);
        const uint64_t b7 = ROTL64(s[10] ^ d0, 3);
        const uint64_t b8 = ROTL64(s[16] ^ d1, 45);
        const uint64_t b9 = ROTL64(s[22] ^ d2, 61);
        const uint64_t b10 = ROTL64(s[1] ^ d1, 1);
        const uint64_t b11 = ROTL64(s[7] ^ d2, 6);
        const uint64_t b12 = ROTL64(s[13] ^ d3, 25);
        const uint64_t b13 = ROTL64(s[19] ^ d4, 8);
        const uint64_t b14 = ROTL64(s[20] ^ d0, 18);
        const uint64_t b15 = ROTL64(s[4] ^ d4, 27);
        const uint64_t b16 = ROTL64(s[5] ^ d0, 36);
        const uint64_t b17 = ROTL64(s[11] ^ d1, 10);
        const uint64_t b18 = ROTL64(s[17] ^ d2, 15);
        const uint64_t b19 = ROTL64(s[23] ^ d3, 56);
        const uint64_t b20 = ROTL64(s[2] ^ d2, 62);
        const uint64_t b21 = ROTL64(s[8] ^ d3, 55);
        const uint64_t b22 = ROTL64(s[14] ^ d4, 39);
        const uint64_t b23 = ROTL64(s[15] ^ d0, 41);
        const uint64_t b24 = ROTL64(s[21] ^ d1, 2);
        s[0] = b0 ^ (~b1 & b2);
        s[1] = b1 ^ (~b2 & b3);
        s[2] = b2 ^ (~b3 & b4);
        s[3] = b3 ^ (~b4 & b0);
        s[4] = b4 ^ (~b0 & b1);
        s[5] = b5 ^ (~b6 & b7);
        s[6] = b6 ^ (~b7 & b8);
        s[7] = b7 ^ (~b8 & b9);
        s[8] = b8 ^ (~b9 & b5);
        s[9] = b9 ^ (~b5 & b6);
        s[10] = b10 ^ (~b11 & b12);
        s[11] = b11 ^ (~b12 & b13);
        s[12] = b12 ^ (~b13 & b14);
        s[13] = b13 ^ (~b14 & b10);
        s[14] = b14 ^ (~b10 & b11);
        s[15] = b15 ^ (~b16 & b17);
        s[16] = b16 ^ (~b17 & b18);
        s[17] = b17 ^ (~b18 & b19);
        s[18] = b18 ^ (~b19 & b15);
        s[19] = b19 ^ (~b15 & b16);
        s[20] = b20 ^ (~b21 & b22);
        s[21] = b21 ^ (~b22 & b23);
        s[22] = b22 ^ (~b23 & b24);
        s[23] = b23 ^ (~b24 & b20);
        s[24] = b24 ^ (~b20 & b21);
        s[0] ^= RC[r];
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

/* a + b into out (16-byte big-endian: the trees keep sums below 2**128); returns 1 on overflow */
static int add128(const uint8_t *a, const uint8_t *b, uint8_t *out) {
    unsigned carry = 0;
    for (int i = 15; i >= 0; i--) {
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
typedef struct {
    const uint8_t *H, *S;  /* children: hashes (32-byte rows; NULL: leaves, hashed here) and sums (16) */
    const uint8_t *ACC, *TOK;  /* leaves only: accounts (20-byte rows) and the token */
    int kind;
    const int64_t *P;
    uint8_t *OH, *OS;
    Py_ssize_t n, cap_out, lo, hi;
    int bad, overflow;
} ParentJob;

/* The hash of child i: stored (an inner level), or the leaf's, from its account and amount. */
static void child_hash(const ParentJob *j, int64_t i, uint8_t out[32]) {
    if (j->H) {
        memcpy(out, j->H + 32 * i, 32);
        return;
    }
    uint8_t msg[73];
    msg[0] = (uint8_t)j->kind;
    memcpy(msg + 1, j->ACC + 20 * i, 20);
    memcpy(msg + 21, j->TOK, 20);
    memset(msg + 41, 0, 16);
    memcpy(msg + 57, j->S + 16 * i, 16);
    keccak256(msg, 73, out);
}

static void *parents_run(void *arg) {
    ParentJob *j = arg;
    static const uint8_t ZERO[32] = {0};
    uint8_t msg[129];
    msg[0] = 0x01;
    for (Py_ssize_t k = j->lo; k < j->hi; k++) {
        int64_t p = j->P[k];
        int64_t l = 2 * p, r = 2 * p + 1;
        if (p < 0 || p >= j->cap_out || l >= j->n) {
            j->bad = 1;
            return NULL;
        }
        const uint8_t *rs = r < j->n ? j->S + 16 * r : ZERO;
        child_hash(j, l, msg + 1);
        memset(msg + 33, 0, 16);
        memcpy(msg + 49, j->S + 16 * l, 16);
        if (r < j->n) child_hash(j, r, msg + 65);
        else memset(msg + 65, 0, 32);
        memset(msg + 97, 0, 16);
        memcpy(msg + 113, rs, 16);
        keccak256(msg, 129, j->OH + 32 * p);
        if (add128(j->S + 16 * l, rs, j->OS + 16 * p)) {
            j->overflow = 1;
            return NULL;
        }
    }
    return NULL;
}

#define PARALLEL_MIN 4096 /* parents per call below which a second thread costs more than it saves */

/* Every parent of `jobs[0]` (its lo..hi), split over two threads past PARALLEL_MIN (parents are
 * distinct: each writes its own output row); 0, or -1 with the error set. */
static int run_parents(ParentJob *job) {
    ParentJob jobs[2] = {*job, *job};
    const Py_ssize_t np_ = job->hi;
    const int split = np_ >= PARALLEL_MIN;
    jobs[0].hi = split ? np_ / 2 : np_;
    jobs[1].lo = jobs[0].hi;
    Py_BEGIN_ALLOW_THREADS
    pthread_t helper;
    int helped = split && pthread_create(&helper, NULL, parents_run, &jobs[1]) == 0;
    parents_run(&jobs[0]);
    if (split && !helped) parents_run(&jobs[1]);
    if (helped) pthread_join(helper, NULL);
    Py_END_ALLOW_THREADS
    if (jobs[0].bad | jobs[1].bad) {
        PyErr_SetString(PyExc_IndexError, "hash_parents: index out of range");
        return -1;
    }
    if (jobs[0].overflow | jobs[1].overflow) {
        PyErr_SetString(PyExc_OverflowError, "hash_parents: sum overflows uint128");
        return -1;
    }
    return 0;
}

/* hash_parents(child_h, child_s, n_children, parents, out_h, out_s) -> number hashed: an inner
 * level (hashes 32-byte rows, sums 16-byte big-endian rows). */
static PyObject *py_hash_parents(PyObject *self, PyObject *args) {
    Py_buffer ch, cs, par, oh, os_;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*ny*w*w*", &ch, &cs, &n, &par, &oh, &os_)) return NULL;
    Py_ssize_t np_ = par.len / 8;
    int ok = n >= 0 && ch.len >= 32 * n && cs.len >= 16 * n && os_.len / 16 >= oh.len / 32;
    ParentJob job = {ch.buf, cs.buf, NULL, NULL, 0, par.buf, oh.buf, os_.buf, n, oh.len / 32, 0, np_, 0, 0};
    int rc = ok ? run_parents(&job) : -1;
    if (!ok) PyErr_SetString(PyExc_ValueError, "hash_parents: buffers shorter than their counts");
    PyBuffer_Release(&ch);
    PyBuffer_Release(&cs);
    PyBuffer_Release(&par);
    PyBuffer_Release(&oh);
    PyBuffer_Release(&os_);
    return rc < 0 ? NULL : PyLong_FromSsize_t(np_);
}

/* hash_leaf_parents(accounts, token, amounts, kind, n_leaves, parents, out_h, out_s) -> number
 * hashed: the first inner level, straight from the leaves (accounts 20-byte rows, amounts 16-byte
 * big-endian rows): leaf hashes are not stored (32 bytes a leaf a tree), they are made here and
 * for proofs. */
static PyObject *py_hash_leaf_parents(PyObject *self, PyObject *args) {
    Py_buffer acc, tok, amt, par, oh, os_;
    int kind;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*y*iny*w*w*", &acc, &tok, &amt, &kind, &n, &par, &oh, &os_)) return NULL;
    Py_ssize_t np_ = par.len / 8;
    int ok = tok.len == 20 && n >= 0 && acc.len >= 20 * n && amt.len >= 16 * n && os_.len / 16 >= oh.len / 32;
    ParentJob job = {NULL, amt.buf, acc.buf, tok.buf, kind, par.buf, oh.buf, os_.buf, n, oh.len / 32, 0, np_, 0, 0};
    int rc = ok ? run_parents(&job) : -1;
    if (!ok) PyErr_SetString(PyExc_ValueError, "hash_leaf_parents: bad token length or short buffers");
    PyBuffer_Release(&acc);
    PyBuffer_Release(&tok);
    PyBuffer_Release(&amt);
    PyBuffer_Release(&par);
    PyBuffer_Release(&oh);
    PyBuffer_Release(&os_);
    return rc < 0 ? NULL : PyLong_FromSsize_t(np_);
}


static PyMethodDef METHODS[] = {
    {"keccak256", py_keccak256, METH_VARARGS, "keccak256(data) -> 32 bytes (Ethereum's Keccak-256)."},
    {"hash_parents", py_hash_parents, METH_VARARGS,
     "hash_parents(child_h, child_s16, n_children, parents_int64, out_h, out_s16) -> count: node hashes and sums."},
    {"hash_leaf_parents", py_hash_leaf_parents, METH_VARARGS,
     "hash_leaf_parents(accounts, token, amounts16, kind, n_leaves, parents_int64, out_h, out_s16) -> count."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_hxtree", "keccak256 and sum-tree loops in C", -1, METHODS};

PyMODINIT_FUNC PyInit__hxtree(void) { return PyModule_Create(&MODULE); }
