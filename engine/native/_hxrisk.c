/*
 * _hxrisk: the compiled hot path of the risk engine (engine/risk/risk_engine.py is its specification).
 *
 * Two types:
 *
 * - Ledger: the open-order reservations (engine/risk/order_ledger.py's OrderLedger, same method API),
 *   two open-addressing hash tables over one array of entries: (market, account, client order id)
 *   and (market, order id). It IS the engine's ledger (engine.ledger): Python paths use its methods,
 *   the core reads and writes the entries directly.
 * - Core: run(engine, buf, off, end, source) applies the 64-byte slots of one journal record from
 *   ``off`` to ``end`` exactly as RiskEngine.handle_command (source >= 0) or RiskEngine.apply_event
 *   (source < 0) would, and returns the offset of the first slot it did not apply. It stops BEFORE a
 *   slot it leaves to Python, having changed nothing for it: rare message types, anything from the
 *   oracle, an account that has no row yet, an order whose account's exposure moved since the last
 *   recomputation (Python recomputes it first), figures out of the range of the 128-bit arithmetic,
 *   and the fee account's fills. The events of risk's own liquidation orders (client ids >= 2^63)
 *   are applied here, their liquidation fee to the insurance fund included; a slot that ends one (a
 *   refusal, a cancelled remainder, its last fill) stops the run after it, and Python calls the
 *   liquidator's on_order_end for what ``Core.ended()`` lists, as RiskEngine does within that slot
 *   (after the rest of it here: on_order_end changes only the liquidator's own state).
 *
 * Shared state, one copy: the account book's numpy columns are re-bound at every call (they move
 * when the book grows or is restored), the engine's dicts (rows, priced, leverage, liquidation
 * cases) are looked up in place, outputs are appended to the engine's own bytearrays.
 *
 * The pre-trade bound (engine/math/pre_trade.py calc_order_impact) is computed in overflow-checked
 * 128-bit integers, its one product of five factors in 256 bits; where Python's unbounded integers
 * would leave those, the slot goes to Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "hx_risk.h"
#include "hx_wire.h"

typedef __int128 i128;
typedef unsigned __int128 u128;

#define HANDBACK 0
#define APPLIED 1
#define FAILED (-1)
#define APPLIED_STOP 2 /* applied; the run stops after it (a liquidation order ended: see Core.ended) */

/* Why a slot went to Python (counted per Core: Core.handbacks()) */
enum {
    HB_ORACLE,       /* anything the oracle sends */
    HB_RARE_TYPE,    /* a message type the core does not apply */
    HB_NO_ROW,       /* an account of this partition without a row yet (Python creates it) */
    HB_DIRTY,        /* an order whose account's exposure moved since the last recomputation */
    HB_RANGE,        /* figures outside the core's exact 128-bit arithmetic, or odd state */
    HB_FEE_ACCOUNT,  /* the fee account's fills */
    HB_ISOLATED,     /* orders, amends and fills in a market the account trades isolated */
    HB_REDUCE_ONLY,  /* reduce-only orders, the orders and amends of an account that has one live,
                      * and the shard's answers to risk's cancels of them (engine/risk/reduce_only.py) */
    HB_N
};
static const char *HB_NAMES[HB_N] = {"oracle", "rare_type", "no_row", "dirty", "range", "fee_account", "isolated",
                                     "reduce_only"};
#define HB(b, reason) ((b)->handback = (reason), HANDBACK)
#define MAX_TIERS 32
#define MAX_MARKET_ID 65536
#define I64_MAX_ ((i128)INT64_MAX)
#define I64_MIN_ ((i128)INT64_MIN)

static PyObject *reservation_type; /* engine.risk.order_ledger.Reservation, set by set_reservation_type */

/* ================================================================================================ */
/* Ledger                                                                                           */
/* ================================================================================================ */
typedef struct {
    uint64_t coid, order_id;
    int64_t open_lots, reserve, amend_extra, price_ticks;
    uint32_t account, market;
    uint8_t side, live;
} Res;

typedef struct {
    PyObject_HEAD
    Res *res;
    int64_t cap, top, live;
    int32_t *free_slots;
    int64_t n_free;
    int32_t *by_coid, *by_oid;
    uint64_t mask;
} Ledger;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}
static inline uint64_t h_coid(uint32_t m, uint32_t a, uint64_t coid) {
    return mix64(coid * 0x9E3779B97F4A7C15ULL ^ (((uint64_t)m << 32) | a));
}
static inline uint64_t h_oid(uint32_t m, uint64_t oid) { return mix64(oid * 0x9E3779B97F4A7C15ULL ^ m); }

static int ledger_alloc(Ledger *L, int64_t cap) {
    L->res = PyMem_Calloc((size_t)cap, sizeof(Res));
    L->free_slots = PyMem_Malloc((size_t)cap * sizeof(int32_t));
    uint64_t size = 16;
    while (size < (uint64_t)cap * 2) size <<= 1;
    L->by_coid = PyMem_Malloc(size * sizeof(int32_t));
    L->by_oid = PyMem_Malloc(size * sizeof(int32_t));
    if (!L->res || !L->free_slots || !L->by_coid || !L->by_oid) {
        PyErr_NoMemory();
        return -1;
    }
    memset(L->by_coid, 0xff, size * sizeof(int32_t));
    memset(L->by_oid, 0xff, size * sizeof(int32_t));
    L->mask = size - 1;
    L->cap = cap;
    L->top = L->live = L->n_free = 0;
    return 0;
}

static void ledger_free_arrays(Ledger *L) {
    PyMem_Free(L->res);
    PyMem_Free(L->free_slots);
    PyMem_Free(L->by_coid);
    PyMem_Free(L->by_oid);
    L->res = NULL;
    L->free_slots = L->by_coid = L->by_oid = NULL;
}

static int64_t find_coid(const Ledger *L, uint32_t m, uint32_t a, uint64_t coid) {
    uint64_t i = h_coid(m, a, coid) & L->mask;
    for (;;) {
        int32_t k = L->by_coid[i];
        if (k < 0) return -1;
        const Res *r = &L->res[k];
        if (r->coid == coid && r->account == a && r->market == m) return k;
        i = (i + 1) & L->mask;
    }
}

static int64_t find_oid(const Ledger *L, uint32_t m, uint64_t oid) {
    uint64_t i = h_oid(m, oid) & L->mask;
    for (;;) {
        int32_t k = L->by_oid[i];
        if (k < 0) return -1;
        const Res *r = &L->res[k];
        if (r->order_id == oid && r->market == m) return k;
        i = (i + 1) & L->mask;
    }
}

/* RiskEngine's ledger.find: by order id when given (and the account matches), else by client id. */
static int64_t ledger_find(const Ledger *L, uint32_t m, uint32_t a, uint64_t oid, uint64_t coid) {
    if (oid) {
        int64_t k = find_oid(L, m, oid);
        return (k >= 0 && L->res[k].account == a) ? k : -1;
    }
    return find_coid(L, m, a, coid);
}

static void put_coid(Ledger *L, int32_t k) {
    const Res *r = &L->res[k];
    uint64_t i = h_coid(r->market, r->account, r->coid) & L->mask;
    for (;;) {
        int32_t j = L->by_coid[i];
        if (j < 0 || j == k) break;
        const Res *o = &L->res[j];
        if (o->coid == r->coid && o->account == r->account && o->market == r->market) break; /* replace */
        i = (i + 1) & L->mask;
    }
    L->by_coid[i] = k;
}

static void put_oid(Ledger *L, int32_t k) {
    const Res *r = &L->res[k];
    uint64_t i = h_oid(r->market, r->order_id) & L->mask;
    for (;;) {
        int32_t j = L->by_oid[i];
        if (j < 0 || j == k) break;
        const Res *o = &L->res[j];
        if (o->order_id == r->order_id && o->market == r->market) break; /* replace (as a dict would) */
        i = (i + 1) & L->mask;
    }
    L->by_oid[i] = k;
}

/* Remove slot i from a linear-probing table (backward-shift deletion: no tombstones). */
static void table_delete(Ledger *L, int32_t *table, uint64_t i, int is_oid) {
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & L->mask;
        int32_t k = table[j];
        if (k < 0) break;
        const Res *r = &L->res[k];
        uint64_t home = (is_oid ? h_oid(r->market, r->order_id) : h_coid(r->market, r->account, r->coid)) & L->mask;
        /* move k back to i when its home is not cyclically in (i, j] */
        int in_between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_between) {
            table[i] = k;
            i = j;
        }
    }
    table[i] = -1;
}

static void del_coid(Ledger *L, uint32_t m, uint32_t a, uint64_t coid) {
    uint64_t i = h_coid(m, a, coid) & L->mask;
    for (;;) {
        int32_t k = L->by_coid[i];
        if (k < 0) return;
        const Res *r = &L->res[k];
        if (r->coid == coid && r->account == a && r->market == m) break;
        i = (i + 1) & L->mask;
    }
    table_delete(L, L->by_coid, i, 0);
}

static void del_oid(Ledger *L, uint32_t m, uint64_t oid) {
    uint64_t i = h_oid(m, oid) & L->mask;
    for (;;) {
        int32_t k = L->by_oid[i];
        if (k < 0) return;
        const Res *r = &L->res[k];
        if (r->order_id == oid && r->market == m) break;
        i = (i + 1) & L->mask;
    }
    table_delete(L, L->by_oid, i, 1);
}

static int ledger_grow(Ledger *L) {
    Ledger n;
    if (ledger_alloc(&n, L->cap * 2) < 0) return -1;
    for (int64_t k = 0; k < L->top; k++) {
        if (!L->res[k].live) continue;
        int32_t j = (int32_t)n.top++;
        n.res[j] = L->res[k];
        n.live++;
        put_coid(&n, j);
        if (n.res[j].order_id) put_oid(&n, j);
    }
    /* order-id entries pointing at a replaced reservation are dropped with it; the dict twin keeps
       them, but a key is only ever replaced for a reservation that is not live (never, by contract) */
    ledger_free_arrays(L);
    L->res = n.res;
    L->free_slots = n.free_slots;
    L->by_coid = n.by_coid;
    L->by_oid = n.by_oid;
    L->mask = n.mask;
    L->cap = n.cap;
    L->top = n.top;
    L->live = n.live;
    L->n_free = 0;
    return 0;
}

/* Add a reservation (its key must not be live: RiskEngine checks is_live first). Returns its slot. */
static int64_t ledger_add(Ledger *L, const Res *src) {
    int64_t old = find_coid(L, src->market, src->account, src->coid);
    if (old >= 0) { /* replace, as the dict would */
        Res *r = &L->res[old];
        if (r->order_id) del_oid(L, r->market, r->order_id);
        *r = *src;
        r->live = 1;
        if (r->order_id) put_oid(L, (int32_t)old);
        return old;
    }
    int32_t k;
    if (L->n_free) {
        k = L->free_slots[--L->n_free];
    } else {
        if (L->top == L->cap && ledger_grow(L) < 0) return -1;
        if (L->top >= INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "ledger full");
            return -1;
        }
        k = (int32_t)L->top++;
    }
    L->res[k] = *src;
    L->res[k].live = 1;
    L->live++;
    put_coid(L, k);
    if (src->order_id) put_oid(L, k);
    return k;
}

static int64_t ledger_remove(Ledger *L, int64_t k) {
    Res *r = &L->res[k];
    del_coid(L, r->market, r->account, r->coid);
    if (r->order_id) del_oid(L, r->market, r->order_id);
    int64_t held = r->reserve + r->amend_extra;
    r->reserve = r->amend_extra = 0;
    r->live = 0;
    L->free_slots[L->n_free++] = (int32_t)k;
    L->live--;
    return held;
}

static int64_t ledger_shrink(Ledger *L, int64_t k, int64_t lots) {
    Res *r = &L->res[k];
    int64_t released;
    if (lots >= r->open_lots) {
        released = r->reserve;
        r->open_lots = 0;
    } else {
        released = (int64_t)(((i128)r->reserve * lots) / r->open_lots); /* >= 0 operands: floor */
        if (r->reserve < 0) released = (int64_t)(((i128)r->reserve * lots - (r->open_lots - 1)) / r->open_lots);
        r->open_lots -= lots;
    }
    r->reserve -= released;
    return released;
}

static void ledger_accept(Ledger *L, uint32_t m, uint32_t a, uint64_t coid, uint64_t oid, int64_t open_lots) {
    int64_t k = find_coid(L, m, a, coid);
    if (k >= 0 && L->res[k].order_id == 0) {
        L->res[k].order_id = oid;
        L->res[k].open_lots = open_lots;
        put_oid(L, (int32_t)k);
    }
}

/* ---- Python API of the ledger (order_ledger.OrderLedger's methods) ---- */
static PyObject *Ledger_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    Ledger *L = (Ledger *)type->tp_alloc(type, 0);
    if (!L) return NULL;
    if (ledger_alloc(L, 1024) < 0) {
        Py_DECREF(L);
        return NULL;
    }
    return (PyObject *)L;
}

static void Ledger_dealloc(Ledger *L) {
    ledger_free_arrays(L);
    Py_TYPE(L)->tp_free((PyObject *)L);
}

static Py_ssize_t Ledger_len(Ledger *L) { return (Py_ssize_t)L->live; }

static PyObject *res_object(const Res *r) {
    if (!reservation_type) {
        PyErr_SetString(PyExc_RuntimeError, "set_reservation_type was not called");
        return NULL;
    }
    return PyObject_CallFunction(reservation_type, "kkKBLLKLL", (unsigned long)r->account,
                                 (unsigned long)r->market, (unsigned long long)r->coid, r->side,
                                 (long long)r->open_lots, (long long)r->reserve,
                                 (unsigned long long)r->order_id, (long long)r->amend_extra,
                                 (long long)r->price_ticks);
}

/* PyObject_GetAttrString makes (decodes and hashes) a new str for `name` at every call, and the
 * binds below look up ~30 attributes per call of the core (each record, each handed-back event,
 * each transfer): `name` (a string literal, so its address is its identity) is interned once. */
#define ATTR_NAMES 96
static const char *attr_keys[ATTR_NAMES];
static PyObject *attr_vals[ATTR_NAMES];
static int attr_count;

static PyObject *get_attr(PyObject *o, const char *name) {
    for (int i = 0; i < attr_count; i++)
        if (attr_keys[i] == name) return PyObject_GetAttr(o, attr_vals[i]);
    if (attr_count == ATTR_NAMES) return PyObject_GetAttrString(o, name);
    PyObject *key = PyUnicode_InternFromString(name);
    if (!key) return NULL;
    attr_keys[attr_count] = name;
    attr_vals[attr_count++] = key; /* (kept for the life of the module) */
    return PyObject_GetAttr(o, key);
}

static int get_u64_attr(PyObject *o, const char *name, uint64_t *out) {
    PyObject *v = get_attr(o, name);
    if (!v) return -1;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    Py_DECREF(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

static int get_i64_attr(PyObject *o, const char *name, int64_t *out) {
    PyObject *v = get_attr(o, name);
    if (!v) return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

static int res_from_object(PyObject *o, Res *r) {
    uint64_t account, market, side;
    memset(r, 0, sizeof(*r));
    if (get_u64_attr(o, "account", &account) < 0 || get_u64_attr(o, "market", &market) < 0 ||
        get_u64_attr(o, "client_order_id", &r->coid) < 0 || get_u64_attr(o, "side", &side) < 0 ||
        get_i64_attr(o, "open_lots", &r->open_lots) < 0 || get_i64_attr(o, "reserve_micro", &r->reserve) < 0 ||
        get_u64_attr(o, "order_id", &r->order_id) < 0 ||
        get_i64_attr(o, "amend_extra_micro", &r->amend_extra) < 0 ||
        get_i64_attr(o, "price_ticks", &r->price_ticks) < 0)
        return -1;
    if (account > UINT32_MAX || market > UINT32_MAX || side > 255) {
        PyErr_SetString(PyExc_OverflowError, "reservation field out of range");
        return -1;
    }
    r->account = (uint32_t)account;
    r->market = (uint32_t)market;
    r->side = (uint8_t)side;
    return 0;
}

/* The live slot of a Reservation-like object's key, or -1. */
static int64_t slot_of(Ledger *L, PyObject *o) {
    uint64_t account, market, coid;
    if (get_u64_attr(o, "account", &account) < 0 || get_u64_attr(o, "market", &market) < 0 ||
        get_u64_attr(o, "client_order_id", &coid) < 0)
        return -2;
    if (account > UINT32_MAX || market > UINT32_MAX) return -1;
    return find_coid(L, (uint32_t)market, (uint32_t)account, coid);
}

static PyObject *Ledger_is_live(Ledger *L, PyObject *args) {
    unsigned long long m, a, coid;
    if (!PyArg_ParseTuple(args, "KKK", &m, &a, &coid)) return NULL;
    if (m > UINT32_MAX || a > UINT32_MAX) Py_RETURN_FALSE;
    return PyBool_FromLong(find_coid(L, (uint32_t)m, (uint32_t)a, coid) >= 0);
}

static PyObject *Ledger_add(Ledger *L, PyObject *obj) {
    Res r;
    if (res_from_object(obj, &r) < 0) return NULL;
    if (ledger_add(L, &r) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Ledger_find(Ledger *L, PyObject *args) {
    unsigned long long m, a, oid, coid;
    if (!PyArg_ParseTuple(args, "KKKK", &m, &a, &oid, &coid)) return NULL;
    if (m > UINT32_MAX || a > UINT32_MAX) Py_RETURN_NONE;
    int64_t k = ledger_find(L, (uint32_t)m, (uint32_t)a, oid, coid);
    if (k < 0) Py_RETURN_NONE;
    return res_object(&L->res[k]);
}

static PyObject *Ledger_accept(Ledger *L, PyObject *args) {
    unsigned long long m, a, coid, oid;
    long long open_lots;
    if (!PyArg_ParseTuple(args, "KKKKL", &m, &a, &coid, &oid, &open_lots)) return NULL;
    if (m <= UINT32_MAX && a <= UINT32_MAX) ledger_accept(L, (uint32_t)m, (uint32_t)a, coid, oid, open_lots);
    Py_RETURN_NONE;
}

static PyObject *Ledger_remove(Ledger *L, PyObject *obj) {
    int64_t k = slot_of(L, obj);
    if (k == -2) return NULL;
    if (k < 0) return PyLong_FromLong(0);
    return PyLong_FromLongLong(ledger_remove(L, k));
}

static PyObject *Ledger_shrink(Ledger *L, PyObject *args) {
    PyObject *obj;
    long long lots;
    if (!PyArg_ParseTuple(args, "OL", &obj, &lots)) return NULL;
    int64_t k = slot_of(L, obj);
    if (k == -2) return NULL;
    if (k < 0) return PyLong_FromLong(0);
    return PyLong_FromLongLong(ledger_shrink(L, k, lots));
}

static PyObject *Ledger_set_amend_extra(Ledger *L, PyObject *args) {
    PyObject *obj;
    long long extra;
    if (!PyArg_ParseTuple(args, "OL", &obj, &extra)) return NULL;
    int64_t k = slot_of(L, obj);
    if (k == -2) return NULL;
    if (k >= 0) L->res[k].amend_extra = extra;
    Py_RETURN_NONE;
}

static PyObject *Ledger_release_amend(Ledger *L, PyObject *obj) {
    int64_t k = slot_of(L, obj);
    if (k == -2) return NULL;
    if (k < 0) return PyLong_FromLong(0);
    int64_t extra = L->res[k].amend_extra;
    L->res[k].amend_extra = 0;
    return PyLong_FromLongLong(extra);
}

/* The shard amended the order: the amend's extra becomes the order's own reservation, then a
   smaller open size releases its share. Returns what was released. */
static int64_t ledger_amended(Ledger *L, int64_t k, int64_t price_ticks, int64_t new_open) {
    Res *r = &L->res[k];
    r->reserve += r->amend_extra;
    r->amend_extra = 0;
    r->price_ticks = price_ticks;
    if (new_open < r->open_lots) return ledger_shrink(L, k, r->open_lots - new_open);
    r->open_lots = new_open;
    return 0;
}

static PyObject *Ledger_amended(Ledger *L, PyObject *args) {
    PyObject *obj;
    long long price, new_open;
    if (!PyArg_ParseTuple(args, "OLL", &obj, &price, &new_open)) return NULL;
    int64_t k = slot_of(L, obj);
    if (k == -2) return NULL;
    if (k < 0) return PyLong_FromLong(0);
    return PyLong_FromLongLong(ledger_amended(L, k, price, new_open));
}

static PyObject *Ledger_held_by_account(Ledger *L, PyObject *unused) {
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    for (int64_t k = 0; k < L->top; k++) {
        const Res *r = &L->res[k];
        if (!r->live) continue;
        PyObject *key = PyLong_FromUnsignedLong(r->account);
        if (!key) goto fail;
        PyObject *cur = PyDict_GetItemWithError(out, key);
        long long base = 0;
        if (cur) base = PyLong_AsLongLong(cur);
        PyObject *v = PyLong_FromLongLong(base + r->reserve + r->amend_extra);
        if (!v || PyDict_SetItem(out, key, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(key);
            goto fail;
        }
        Py_DECREF(v);
        Py_DECREF(key);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static int cmp_res_key(const void *x, const void *y, void *ctx) {
    const Res *res = ctx;
    const Res *a = &res[*(const int32_t *)x], *b = &res[*(const int32_t *)y];
    if (a->market != b->market) return a->market < b->market ? -1 : 1;
    if (a->account != b->account) return a->account < b->account ? -1 : 1;
    if (a->coid != b->coid) return a->coid < b->coid ? -1 : 1;
    return 0;
}

static const Res *sort_ctx;
static int cmp_res_key_global(const void *x, const void *y) { return cmp_res_key(x, y, (void *)sort_ctx); }

/* Live slots sorted by (market, account, client order id); account filter when >= 0. */
static int32_t *sorted_slots(Ledger *L, int64_t account, int64_t *n_out) {
    int32_t *idx = PyMem_Malloc((size_t)(L->live + 1) * sizeof(int32_t));
    if (!idx) {
        PyErr_NoMemory();
        return NULL;
    }
    int64_t n = 0;
    for (int64_t k = 0; k < L->top; k++)
        if (L->res[k].live && (account < 0 || L->res[k].account == (uint64_t)account)) idx[n++] = (int32_t)k;
    sort_ctx = L->res;
    qsort(idx, (size_t)n, sizeof(int32_t), cmp_res_key_global);
    *n_out = n;
    return idx;
}

static PyObject *Ledger_entries(Ledger *L, PyObject *unused) {
    int64_t n;
    int32_t *idx = sorted_slots(L, -1, &n);
    if (!idx) return NULL;
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; out && i < n; i++) {
        const Res *r = &L->res[idx[i]];
        PyObject *t = Py_BuildValue("(kkKBLLKLL)", (unsigned long)r->account, (unsigned long)r->market,
                                    (unsigned long long)r->coid, r->side, (long long)r->open_lots,
                                    (long long)r->reserve, (unsigned long long)r->order_id,
                                    (long long)r->amend_extra, (long long)r->price_ticks);
        if (!t) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    PyMem_Free(idx);
    return out;
}

static PyObject *Ledger_orders_of(Ledger *L, PyObject *arg) {
    long long account = PyLong_AsLongLong(arg);
    if (account == -1 && PyErr_Occurred()) return NULL;
    int64_t n;
    int32_t *idx = sorted_slots(L, account < 0 ? INT64_MAX : account, &n);
    if (!idx) return NULL;
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; out && i < n; i++) {
        PyObject *o = res_object(&L->res[idx[i]]);
        if (!o) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, o);
    }
    PyMem_Free(idx);
    return out;
}

static PyObject *Ledger_load(Ledger *L, PyObject *entries) {
    PyObject *seq = PySequence_Fast(entries, "entries must be a sequence");
    if (!seq) return NULL;
    ledger_free_arrays(L);
    if (ledger_alloc(L, 1024) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long account, market;
        unsigned long long coid, oid;
        unsigned char side;
        long long open_lots, reserve, extra, price;
        PyObject *t = PySequence_Tuple(PySequence_Fast_GET_ITEM(seq, i));
        if (!t) goto fail;
        int ok = PyArg_ParseTuple(t, "kkKbLLKLL", &account, &market, &coid, &side, &open_lots, &reserve, &oid,
                                  &extra, &price);
        Py_DECREF(t);
        if (!ok) goto fail;
        Res r = {.coid = coid, .order_id = oid, .open_lots = open_lots, .reserve = reserve,
                 .amend_extra = extra, .price_ticks = price, .account = (uint32_t)account,
                 .market = (uint32_t)market, .side = side};
        if (ledger_add(L, &r) < 0) goto fail;
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
fail:
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef Ledger_methods[] = {
    {"is_live", (PyCFunction)Ledger_is_live, METH_VARARGS, "is_live(market, account, coid)"},
    {"add", (PyCFunction)Ledger_add, METH_O, "add(reservation): a new order (its key not live)"},
    {"find", (PyCFunction)Ledger_find, METH_VARARGS, "find(market, account, order_id, coid) -> copy or None"},
    {"accept", (PyCFunction)Ledger_accept, METH_VARARGS, "accept(market, account, coid, order_id, open_lots)"},
    {"remove", (PyCFunction)Ledger_remove, METH_O, "remove(r) -> everything still held for it"},
    {"shrink", (PyCFunction)Ledger_shrink, METH_VARARGS, "shrink(r, lots) -> released"},
    {"set_amend_extra", (PyCFunction)Ledger_set_amend_extra, METH_VARARGS, "set_amend_extra(r, extra)"},
    {"release_amend", (PyCFunction)Ledger_release_amend, METH_O, "release_amend(r) -> the amend's extra"},
    {"amended", (PyCFunction)Ledger_amended, METH_VARARGS, "amended(r, price_ticks, new_open) -> released"},
    {"held_by_account", (PyCFunction)Ledger_held_by_account, METH_NOARGS, "account -> reserved for orders"},
    {"entries", (PyCFunction)Ledger_entries, METH_NOARGS, "sorted tuples (Reservation field order)"},
    {"orders_of", (PyCFunction)Ledger_orders_of, METH_O, "orders_of(account): its reservations, sorted"},
    {"load", (PyCFunction)Ledger_load, METH_O, "load(entries): replace everything"},
    {NULL}};

static PySequenceMethods Ledger_as_sequence = {.sq_length = (lenfunc)Ledger_len};

static PyTypeObject LedgerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "engine.native._hxrisk.Ledger",
    .tp_basicsize = sizeof(Ledger),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Open-order reservations in C (OrderLedger's API).",
    .tp_new = Ledger_new,
    .tp_dealloc = (destructor)Ledger_dealloc,
    .tp_methods = Ledger_methods,
    .tp_as_sequence = &Ledger_as_sequence,
};

/* ================================================================================================ */
/* integer helpers                                                                                   */
/* ================================================================================================ */
static inline i128 floordiv(i128 a, i128 b) { /* b > 0 */
    i128 q = a / b;
    if ((a % b) != 0 && a < 0) q--;
    return q;
}
static inline i128 ceildiv(i128 a, i128 b) { return -floordiv(-a, b); } /* b > 0 */
static inline i128 abs128(i128 a) { return a < 0 ? -a : a; }
static inline int mul_ok(i128 a, i128 b, i128 *out) { return !__builtin_mul_overflow(a, b, out); }
#define BOUND ((i128)1 << 120) /* operands below it keep sums of a few terms inside i128 */
static inline int small(i128 v) { return v < BOUND && v > -BOUND; }

typedef struct {
    uint64_t w[4];
} u256;

static int u256_mul64(u256 *x, uint64_t m) {
    u128 carry = 0;
    for (int i = 0; i < 4; i++) {
        u128 p = (u128)x->w[i] * m + carry;
        x->w[i] = (uint64_t)p;
        carry = p >> 64;
    }
    return carry == 0;
}
/* x = ceil(x / d), d > 0 */
static void u256_ceildiv64(u256 *x, uint64_t d) {
    u128 rem = 0;
    for (int i = 3; i >= 0; i--) {
        u128 cur = (rem << 64) | x->w[i];
        x->w[i] = (uint64_t)(cur / d);
        rem = cur % d;
    }
    if (rem) {
        for (int i = 0; i < 4; i++)
            if (++x->w[i] != 0) break;
    }
}

/* ================================================================================================ */
/* Core                                                                                              */
/* ================================================================================================ */
typedef struct {
    uint8_t present, is_perp, prediction;
    int32_t perp, asset;
    int64_t tick, lot, maker_fee, taker_fee;
} Mkt;

typedef struct {
    int kind;
    int64_t qty_scale, floor_ppm, fee_maker, fee_taker;
    int n_w;
    int64_t w_upper[MAX_TIERS], w_ppm[MAX_TIERS + 1];
    i128 w_add[MAX_TIERS + 1];
    int n_s;
    int64_t s_upper[MAX_TIERS], s_rate[MAX_TIERS + 1];
    int n_group; /* 0: no group */
    int32_t *group;
} Asset;

typedef struct {
    int64_t fee_maker, fee_taker, lot;
    int32_t underlying;
} Perp;

typedef struct {
    PyObject_HEAD
    Mkt *mkts;
    int64_t n_mkts;
    Asset *assets;
    Perp *perps;
    int64_t n_assets, n_perps;
    uint64_t factor; /* max(1, w k) in ppm^2 */
    uint32_t partition, partitions, shards;
    PyObject *k_fee_changed;
    int64_t handbacks[HB_N];
    int64_t liquidation_fills; /* fills of risk's liquidation orders applied here */
    int64_t liquidation_ends;  /* and their ends (last fill, cancelled remainder, refusal) */
    /* the liquidation orders the last slot applied ended (its run stopped after it): client order
     * id, filled in full, refused by the shard; taken by Core.ended() for the liquidator */
    uint64_t ended_coid[2];
    uint8_t ended_filled[2], ended_refused[2];
    int n_ended;
} Core;

typedef struct {
    Py_buffer views[20];
    int n_views;
    int64_t *balance, *held, *perp_size, *perp_cost, *perp_realised, *perp_funding;
    int64_t *reserved, *converting, *equity, *initial, *private_seq, *prices, *marks, *mult;
    uint8_t *dirty, *stale;
    double *exposure;
    int64_t n_stale, capacity;
    PyObject *engine, *book, *rows, *priced, *leverage, *cases, *events, *orders, *trade_flow;
    PyObject *ro_orders, *ro_cancels; /* engine.reduce_only's two dicts */
    Ledger *ledger;
    int64_t fee_row, insurance_row, liq_fee_ppm;
    uint64_t now_ns, records;
    int fee_changed;
    int64_t checked, rejected, fills;
    int handback;
} Bind;

static void Core_dealloc(Core *c) {
    if (c->assets)
        for (int64_t i = 0; i < c->n_assets; i++) PyMem_Free(c->assets[i].group);
    PyMem_Free(c->mkts);
    PyMem_Free(c->assets);
    PyMem_Free(c->perps);
    Py_XDECREF(c->k_fee_changed);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int i64_item(PyObject *seq, Py_ssize_t i, int64_t *out) {
    PyObject *v = PySequence_GetItem(seq, i);
    if (!v) return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

static int i64_tuple(PyObject *seq, int64_t *out, Py_ssize_t max, int *n_out) {
    Py_ssize_t n = PySequence_Size(seq);
    if (n < 0) return -1;
    if (n > max) {
        PyErr_SetString(PyExc_ValueError, "too many tiers for the compiled risk core");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (i64_item(seq, i, &out[i]) < 0) return -1;
    *n_out = (int)n;
    return 0;
}

/*
 * Core(markets, assets, perps, factor, partition, partitions, shards): the static tables, built by
 * engine/risk/native_risk.py from the config and the risk spec:
 *   markets: [(market_id, perp, base_asset, tick_micro, lot_atoms, maker_ppm, taker_ppm, prediction)]
 *   assets:  [(kind, qty_scale, floor_ppm, spot_maker_ppm, spot_taker_ppm, (w_upper...), (w_ppm...),
 *              (s_upper...), (s_rate...), (group asset ids...))]
 *   perps:   [(maker_ppm, taker_ppm, lot_atoms, underlying)]
 */
static int Core_init(Core *c, PyObject *args, PyObject *kw) {
    PyObject *markets, *assets, *perps;
    unsigned long long factor;
    unsigned int partition, partitions, shards;
    if (!PyArg_ParseTuple(args, "OOOKIII", &markets, &assets, &perps, &factor, &partition, &partitions, &shards))
        return -1;
    if (partitions == 0 || shards == 0) {
        PyErr_SetString(PyExc_ValueError, "partitions and shards must be >= 1");
        return -1;
    }
    c->factor = factor;
    c->partition = partition;
    c->partitions = partitions;
    c->shards = shards;
    c->k_fee_changed = PyUnicode_InternFromString("_fee_changed");
    Py_ssize_t nm = PySequence_Size(markets), na = PySequence_Size(assets), np_ = PySequence_Size(perps);
    if (nm < 0 || na < 0 || np_ < 0) return -1;
    c->n_assets = na;
    c->n_perps = np_;
    c->mkts = PyMem_Calloc(MAX_MARKET_ID, sizeof(Mkt));
    c->assets = PyMem_Calloc((size_t)na + 1, sizeof(Asset));
    c->perps = PyMem_Calloc((size_t)np_ + 1, sizeof(Perp));
    if (!c->mkts || !c->assets || !c->perps) {
        PyErr_NoMemory();
        return -1;
    }
    c->n_mkts = MAX_MARKET_ID;
    for (Py_ssize_t i = 0; i < nm; i++) {
        PyObject *t = PySequence_GetItem(markets, i);
        if (!t) return -1;
        long long mid, perp, asset, tick, lot, maker, taker;
        int pred;
        int ok = PyArg_ParseTuple(t, "LLLLLLLp", &mid, &perp, &asset, &tick, &lot, &maker, &taker, &pred);
        Py_DECREF(t);
        if (!ok) return -1;
        if (mid < 0 || mid >= MAX_MARKET_ID || asset < 0 || asset >= na || perp >= np_ || tick <= 0 || lot <= 0) {
            PyErr_SetString(PyExc_ValueError, "market out of the compiled risk core's range");
            return -1;
        }
        Mkt *m = &c->mkts[mid];
        *m = (Mkt){.present = 1, .is_perp = perp >= 0, .prediction = (uint8_t)pred, .perp = (int32_t)perp,
                   .asset = (int32_t)asset, .tick = tick, .lot = lot, .maker_fee = maker, .taker_fee = taker};
    }
    for (Py_ssize_t i = 0; i < na; i++) {
        PyObject *t = PySequence_GetItem(assets, i);
        if (!t) return -1;
        long long kind, scale, floor_ppm, fm, ft;
        PyObject *wu, *wp, *su, *sr, *grp;
        int ok = PyArg_ParseTuple(t, "LLLLLOOOOO", &kind, &scale, &floor_ppm, &fm, &ft, &wu, &wp, &su, &sr, &grp);
        if (!ok) {
            Py_DECREF(t);
            return -1;
        }
        Asset *a = &c->assets[i];
        a->kind = (int)kind;
        a->qty_scale = scale;
        a->floor_ppm = floor_ppm;
        a->fee_maker = fm;
        a->fee_taker = ft;
        int n_wp, n_sr;
        if (i64_tuple(wu, a->w_upper, MAX_TIERS, &a->n_w) < 0 || i64_tuple(wp, a->w_ppm, MAX_TIERS + 1, &n_wp) < 0 ||
            i64_tuple(su, a->s_upper, MAX_TIERS, &a->n_s) < 0 || i64_tuple(sr, a->s_rate, MAX_TIERS + 1, &n_sr) < 0) {
            Py_DECREF(t);
            return -1;
        }
        if (n_wp != a->n_w + 1 || n_sr != a->n_s + 1 || scale <= 0) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_ValueError, "tier tables do not match");
            return -1;
        }
        a->w_add[0] = 0; /* engine.math.collateral.calc_weight_addends */
        for (int k = 1; k <= a->n_w; k++)
            a->w_add[k] = a->w_add[k - 1] + (i128)a->w_upper[k - 1] * (a->w_ppm[k - 1] - a->w_ppm[k]);
        Py_ssize_t ng = PySequence_Size(grp);
        if (ng < 0) {
            Py_DECREF(t);
            return -1;
        }
        a->n_group = (int)ng;
        a->group = PyMem_Calloc((size_t)ng + 1, sizeof(int32_t));
        for (Py_ssize_t g = 0; g < ng; g++) {
            int64_t v;
            if (i64_item(grp, g, &v) < 0 || v < 0 || v >= na) {
                Py_DECREF(t);
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "group asset out of range");
                return -1;
            }
            a->group[g] = (int32_t)v;
        }
        Py_DECREF(t);
    }
    for (Py_ssize_t i = 0; i < np_; i++) {
        PyObject *t = PySequence_GetItem(perps, i);
        if (!t) return -1;
        long long fm, ft, lot, und;
        int ok = PyArg_ParseTuple(t, "LLLL", &fm, &ft, &lot, &und);
        Py_DECREF(t);
        if (!ok) return -1;
        if (und < 0 || und >= na) {
            PyErr_SetString(PyExc_ValueError, "perp underlying out of range");
            return -1;
        }
        c->perps[i] = (Perp){.fee_maker = fm, .fee_taker = ft, .lot = lot, .underlying = (int32_t)und};
    }
    return 0;
}

/* ---- binding the engine's state for one call ---- */
static void unbind(Bind *b) {
    for (int i = 0; i < b->n_views; i++) PyBuffer_Release(&b->views[i]);
    b->n_views = 0;
    Py_CLEAR(b->book);
    Py_CLEAR(b->rows);
    Py_CLEAR(b->priced);
    Py_CLEAR(b->leverage);
    Py_CLEAR(b->cases);
    Py_CLEAR(b->ro_orders);
    Py_CLEAR(b->ro_cancels);
    Py_CLEAR(b->events);
    Py_CLEAR(b->orders);
    Py_CLEAR(b->trade_flow);
    Py_CLEAR(b->ledger);
}

static void *view_of(Bind *b, PyObject *owner, const char *name, Py_ssize_t itemsize, Py_ssize_t cols) {
    PyObject *arr = get_attr(owner, name);
    if (!arr) return NULL;
    Py_buffer *v = &b->views[b->n_views];
    int rc = PyObject_GetBuffer(arr, v, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
    Py_DECREF(arr);
    if (rc < 0) return NULL;
    b->n_views++;
    if (v->itemsize != itemsize || (cols > 0 && (v->ndim != 2 || v->shape[1] != cols))) {
        PyErr_Format(PyExc_TypeError, "%s: unexpected array layout", name);
        return NULL;
    }
    return v->buf;
}

static PyObject *attr_chain(PyObject *o, const char *a, const char *b2) {
    PyObject *x = get_attr(o, a);
    if (!x || !b2) return x;
    PyObject *y = get_attr(x, b2);
    Py_DECREF(x);
    return y;
}

static int u64_attr(PyObject *o, const char *name, uint64_t *out) { return get_u64_attr(o, name, out); }

static int bind(Core *c, Bind *b, PyObject *engine) {
    memset(b, 0, sizeof(*b));
    b->engine = engine;
    PyObject *book = b->book = get_attr(engine, "book");
    if (!book) return -1;
    int64_t A = c->n_assets, P = c->n_perps;
    if (!(b->balance = view_of(b, book, "balance", 8, A)) || !(b->held = view_of(b, book, "held", 8, A)) ||
        !(b->perp_size = view_of(b, book, "perp_size", 8, P)) || !(b->perp_cost = view_of(b, book, "perp_cost", 8, P)) ||
        !(b->perp_realised = view_of(b, book, "perp_realised", 8, P)) ||
        !(b->perp_funding = view_of(b, book, "perp_funding", 8, P)) ||
        !(b->reserved = view_of(b, book, "reserved", 8, 0)) || !(b->converting = view_of(b, book, "converting", 8, 0)) ||
        !(b->equity = view_of(b, book, "equity", 8, 0)) || !(b->initial = view_of(b, book, "initial", 8, 0)) ||
        !(b->private_seq = view_of(b, book, "private_seq", 8, 0)) || !(b->dirty = view_of(b, book, "dirty", 1, 0)) ||
        !(b->exposure = view_of(b, book, "exposure", 8, A)) || !(b->prices = view_of(b, engine, "prices", 8, 0)) ||
        !(b->marks = view_of(b, engine, "marks", 8, 0)) || !(b->stale = view_of(b, engine, "stale", 1, 0)))
        return -1;
    b->n_stale = b->views[b->n_views - 1].len;
    PyObject *margin = get_attr(engine, "margin");
    if (!margin) return -1;
    b->mult = view_of(b, margin, "multiplier", 8, 0);
    Py_DECREF(margin);
    if (!b->mult) return -1;
    b->capacity = b->views[6].shape[0]; /* reserved */
    if (!(b->rows = get_attr(book, "rows")) || !(b->priced = get_attr(engine, "priced")) ||
        !(b->leverage = get_attr(engine, "leverage")) ||
        !(b->cases = attr_chain(engine, "liquidator", "cases")) || !(b->events = get_attr(engine, "events")) ||
        !(b->ro_orders = attr_chain(engine, "reduce_only", "orders")) ||
        !(b->ro_cancels = attr_chain(engine, "reduce_only", "cancels")) ||
        !(b->orders = get_attr(engine, "orders")) ||
        !(b->trade_flow = get_attr(engine, "trade_flow")) ||
        !(b->ledger = (Ledger *)get_attr(engine, "ledger")))
        return -1;
    if (!PyDict_Check(b->rows) || !PyDict_Check(b->priced) || !PyDict_Check(b->leverage) || !PyDict_Check(b->cases) ||
        !PyDict_Check(b->ro_orders) || !PyDict_Check(b->ro_cancels) ||
        !PyByteArray_Check(b->events) || !PyList_Check(b->orders) || PyList_GET_SIZE(b->orders) != c->shards ||
        !PyList_Check(b->trade_flow) || PyList_GET_SIZE(b->trade_flow) != A ||
        !PyObject_TypeCheck((PyObject *)b->ledger, &LedgerType)) {
        PyErr_SetString(PyExc_TypeError, "the engine's state is not what the risk core expects");
        return -1;
    }
    for (Py_ssize_t i = 0; i < c->shards; i++)
        if (!PyByteArray_Check(PyList_GET_ITEM(b->orders, i))) {
            PyErr_SetString(PyExc_TypeError, "engine.orders must hold bytearrays");
            return -1;
        }
    uint64_t fee_row, insurance_row;
    if (u64_attr(engine, "fee_row", &fee_row) < 0 || u64_attr(engine, "now_ns", &b->now_ns) < 0 ||
        u64_attr(engine, "records", &b->records) < 0 || u64_attr(engine, "insurance_row", &insurance_row) < 0)
        return -1;
    b->fee_row = (int64_t)fee_row;
    b->insurance_row = (int64_t)insurance_row;
    PyObject *params = attr_chain(engine, "liquidator", "params");
    if (!params) return -1;
    int rc = get_i64_attr(params, "fee_ppm", &b->liq_fee_ppm);
    Py_DECREF(params);
    if (rc < 0) return -1;
    if (b->insurance_row < 0 || b->insurance_row >= b->capacity || b->liq_fee_ppm < 0 || b->liq_fee_ppm > (int64_t)HXR_PPM) {
        PyErr_SetString(PyExc_ValueError, "insurance row or liquidation fee out of range");
        return -1;
    }
    return 0;
}

/* ---- small pieces of RiskEngine ---- */
static inline int owns(const Core *c, uint32_t account) {
    if (account >= HXR_SYSTEM_ACCOUNT_BASE) return ((account - HXR_SYSTEM_ACCOUNT_BASE) & 0x3F) == c->partition;
    return account % c->partitions == c->partition;
}

/* The account's row, or -1 (no row yet), or -2 (error). */
static int64_t find_row(Bind *b, uint32_t account) {
    PyObject *key = PyLong_FromUnsignedLong(account);
    if (!key) return -2;
    PyObject *v = PyDict_GetItemWithError(b->rows, key);
    Py_DECREF(key);
    if (!v) return PyErr_Occurred() ? -2 : -1;
    long long r = PyLong_AsLongLong(v);
    if (r == -1 && PyErr_Occurred()) return -2;
    if (r < 0 || r >= b->capacity) {
        PyErr_SetString(PyExc_IndexError, "account row out of the book");
        return -2;
    }
    return r;
}

/* 1 when the account trades ``mid`` with isolated margin (engine.leverage[(account, mid)][1] == 1),
 * 0 when not, -1 on error. Such a position is a row of its own, which Python keeps. */
static int isolated(Bind *b, uint32_t account, uint32_t mid) {
    if (!PyDict_GET_SIZE(b->leverage)) return 0;
    PyObject *key = Py_BuildValue("(kk)", (unsigned long)account, (unsigned long)mid);
    if (!key) return -1;
    PyObject *lev = PyDict_GetItemWithError(b->leverage, key);
    Py_DECREF(key);
    if (!lev) return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(lev) || PyTuple_GET_SIZE(lev) < 2) return 1; /* odd: let Python look */
    long mode = PyLong_AsLong(PyTuple_GET_ITEM(lev, 1));
    if (mode == -1 && PyErr_Occurred()) return -1;
    return mode != 0;
}

/* 1 when the account has a live reduce-only order (engine.reduce_only.orders), 0 when not, -1 on error */
static int has_reduce_only(Bind *b, uint32_t account) {
    if (!PyDict_GET_SIZE(b->ro_orders)) return 0;
    PyObject *key = PyLong_FromUnsignedLong(account);
    if (!key) return -1;
    int in = PyDict_Contains(b->ro_orders, key);
    Py_DECREF(key);
    return in;
}

/* 1 when (market, account, client order id) is a cancel risk sent for a reduce-only order
 * (engine.reduce_only.cancels), 0 when not, -1 on error */
static int risk_cancel(Bind *b, uint32_t mid, uint32_t account, uint64_t coid) {
    if (!PyDict_GET_SIZE(b->ro_cancels)) return 0;
    PyObject *key = Py_BuildValue("(kkK)", (unsigned long)mid, (unsigned long)account, (unsigned long long)coid);
    if (!key) return -1;
    int in = PyDict_Contains(b->ro_cancels, key);
    Py_DECREF(key);
    return in;
}

static uint8_t *emit(Bind *b) {
    Py_ssize_t n = PyByteArray_GET_SIZE(b->events);
    if (PyByteArray_Resize(b->events, n + HX_SLOT_BYTES) < 0) return NULL;
    return (uint8_t *)PyByteArray_AS_STRING(b->events) + n;
}

static int append_to(PyObject *bytearray, const uint8_t *msg) {
    Py_ssize_t n = PyByteArray_GET_SIZE(bytearray);
    if (PyByteArray_Resize(bytearray, n + HX_SLOT_BYTES) < 0) return -1;
    memcpy(PyByteArray_AS_STRING(bytearray) + n, msg, HX_SLOT_BYTES);
    return 0;
}

static int forward(Core *c, Bind *b, const uint8_t *msg, uint32_t market) {
    if (market == HX_ALL_MARKETS) {
        for (uint32_t s = 0; s < c->shards; s++)
            if (append_to(PyList_GET_ITEM(b->orders, s), msg) < 0) return -1;
        return 0;
    }
    return append_to(PyList_GET_ITEM(b->orders, market % c->shards), msg);
}

static inline uint64_t row_seq(Bind *b, int64_t row) { return (uint64_t)++b->private_seq[row]; }

/* RiskEngine._reject; ``row``: the account's row when it is owned (it must exist), else ignored */
static int reject(Core *c, Bind *b, uint32_t market, uint8_t command, uint64_t oid, uint64_t coid, uint32_t account,
                  int64_t row, uint16_t reason) {
    b->rejected++;
    uint64_t seq = owns(c, account) ? row_seq(b, row) : 0;
    uint8_t *p = emit(b);
    if (!p) return FAILED;
    hx_put_rejected(p, market, seq, oid, coid, b->now_ns, account, reason, command);
    return APPLIED;
}

static int emit_balance(Bind *b, int64_t row, int A, uint16_t asset, uint8_t reason, int64_t delta, uint64_t ref,
                        uint32_t account) {
    uint64_t seq = row_seq(b, row);
    uint8_t *p = emit(b);
    if (!p) return -1;
    hx_put_balance(p, 0, seq, account, asset, reason, b->balance[row * A + asset], delta, b->held[row * A + asset], ref);
    return 0;
}

static int emit_position(Bind *b, int64_t row, int P, uint32_t market, int32_t perp, uint32_t account) {
    uint64_t seq = row_seq(b, row);
    uint8_t *p = emit(b);
    if (!p) return -1;
    int64_t k = row * P + perp;
    hx_put_position(p, market, seq, account, b->perp_size[k], b->perp_cost[k], b->perp_realised[k], b->perp_funding[k]);
    return 0;
}

static int emit_price(Bind *b, uint32_t market, uint16_t asset, uint8_t kind, int64_t price_micro) {
    uint8_t status = asset < b->n_stale ? b->stale[asset] : 0;
    uint8_t *p = emit(b);
    if (!p) return -1;
    hx_put_price(p, market, asset, kind, status, price_micro, b->now_ns);
    return 0;
}

static int add_trade_flow(Bind *b, Py_ssize_t asset, i128 delta) {
    PyObject *cur = PyList_GET_ITEM(b->trade_flow, asset);
    long long v = PyLong_AsLongLong(cur);
    if (v == -1 && PyErr_Occurred()) return -1;
    i128 n = (i128)v + delta;
    if (n > I64_MAX_ || n < I64_MIN_) {
        PyErr_SetString(PyExc_OverflowError, "trade flow leaves int64");
        return -1;
    }
    PyObject *nv = PyLong_FromLongLong((long long)n);
    if (!nv) return -1;
    PyList_SetItem(b->trade_flow, asset, nv); /* steals nv */
    return 0;
}

/* RiskEngine._add: a breach is a bug upstream (bounded by the pre-trade checks) */
static int add_checked(int64_t *cell, i128 delta, const char *what) {
    i128 v = (i128)*cell + delta;
    if (!(v > I64_MIN_ && v <= I64_MAX_)) {
        PyErr_Format(PyExc_OverflowError, "%s leaves int64", what);
        return -1;
    }
    *cell = (int64_t)v;
    return 0;
}

/* engine.math.fees.calc_fee_micro: rounded against the account */
static inline int fee_micro(i128 notional, int64_t rate, i128 *out) {
    i128 n = abs128(notional), x;
    if (rate >= 0) {
        if (!mul_ok(n, rate, &x)) return 0;
        *out = ceildiv(x, HXR_PPM);
    } else {
        if (!mul_ok(n, -(i128)rate, &x)) return 0;
        *out = -floordiv(x, HXR_PPM);
    }
    return 1;
}
static inline int max_fee(i128 notional, int64_t maker, int64_t taker, i128 *out) {
    i128 a, b2;
    if (!fee_micro(notional, maker, &a) || !fee_micro(notional, taker, &b2)) return 0;
    *out = a > b2 ? a : b2;
    return 1;
}

/* bisect_left over int64 edges with an i128 needle */
static inline int bisect_left(const int64_t *edges, int n, i128 x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if ((i128)edges[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* _weighted_numerator: W(q) * 1e6 (atoms*ppm); q * 1e6 for a liability */
static inline i128 weighted_num(const Asset *a, i128 q) {
    if (q <= 0) return q * HXR_PPM;
    int i = bisect_left(a->w_upper, a->n_w, q);
    return q * a->w_ppm[i] + a->w_add[i];
}

/*
 * engine.math.pre_trade.calc_order_impact(...).reserve_micro, then MarginModel.order_reserve's
 * max(0, .). Returns 1 and *out, or 0 when a figure leaves the range this arithmetic is exact in
 * (the caller gives the order to Python, which has unbounded integers).
 */
static int order_reserve(const Core *c, const Bind *b, int64_t row, const Mkt *m, int side_buy, i128 q, i128 L,
                         i128 P, i128 *out) {
    const int A = (int)c->n_assets;
    const Asset *as = &c->assets[m->asset];
    const int side = side_buy ? 1 : -1;
    const int sell = side_buy ? 0 : 1;
    if (!small(q) || !small(L) || !small(P) || q <= 0 || L <= 0 || P < 0) return 0;
    if (q >= ((i128)1 << 62) || L >= ((i128)1 << 63) || P >= ((i128)1 << 63)) return 0;
    double e = b->exposure[row * A + m->asset];
    if (isnan(e) || fabs(e) >= 4.0e18) return 0;
    double e_abs = fabs(e);
    i128 e_floor = (i128)floor(e_abs), e_ceil = (i128)ceil(e_abs);
    int e_sign = (e > 0) - (e < 0);
    i128 loss, d_e_num, d_e_den, d_floor, fee, fills, x;
    int moves;
    if (m->is_perp) {
        const Perp *pp = &c->perps[m->perp];
        int64_t lot = m->lot ? m->lot : pp->lot;
        fills = ceildiv(q, lot > 1 ? lot : 1);
        if (!max_fee(ceildiv(q * L, HXR_ATOMS_PER_UNIT), pp->fee_maker, pp->fee_taker, &fee)) return 0;
        loss = ceildiv(side * q * (L - P), HXR_ATOMS_PER_UNIT) + fee + fills * (1 + sell);
        d_e_num = q * P;
        d_e_den = HXR_ATOMS_PER_UNIT;
        moves = d_e_num != 0;
        i128 ps = b->perp_size[row * c->n_perps + m->perp];
        i128 growth = abs128(ps + side * q) - abs128(ps);
        if (growth < 0) growth = 0;
        if (!mul_ok(growth, P, &x) || !mul_ok(x, as->floor_ppm, &x)) return 0;
        d_floor = ceildiv(x, (i128)HXR_ATOMS_PER_UNIT * HXR_PPM);
    } else {
        if (as->kind == HXR_ASSET_CASH) return 0; /* Python raises: let it */
        i128 scale = as->qty_scale;
        int64_t lot = m->lot;
        fills = ceildiv(q, lot > 1 ? lot : 1);
        if (!max_fee(ceildiv(q * L, HXR_ATOMS_PER_UNIT), as->fee_maker, as->fee_taker, &fee)) return 0;
        i128 bal = b->balance[row * A + m->asset];
        i128 nb = bal + side * q;
        i128 d_w = weighted_num(as, nb) - weighted_num(as, bal);
        i128 den, t1, t2;
        if (!mul_ok((i128)HXR_ATOMS_PER_UNIT * HXR_PPM, scale, &den)) return 0;
        if (!mul_ok(side * q, L, &t1) || !mul_ok(t1, HXR_PPM, &t1) || !mul_ok(t1, scale, &t1)) return 0;
        if (!mul_ok(d_w, P, &t2) || !mul_ok(t2, HXR_ATOMS_PER_UNIT, &t2)) return 0;
        if (!small(t1) || !small(t2)) return 0;
        loss = ceildiv(t1 - t2, den) + fee + fills * (1 + sell);
        d_e_num = q * P;
        d_e_den = scale;
        moves = d_w != 0 && P != 0;
        i128 lb = nb < 0 ? -nb : 0, la = bal < 0 ? -bal : 0;
        i128 growth = lb - la;
        if (growth < 0) growth = 0;
        if (!mul_ok(growth, P, &x) || !mul_ok(x, as->floor_ppm, &x)) return 0;
        d_floor = ceildiv(x, scale * HXR_PPM);
    }
    int mixed = 0;
    if (as->n_group) {
        int pos = 0, neg = 0;
        for (int g = 0; g < as->n_group; g++) {
            double v = b->exposure[row * A + as->group[g]];
            pos |= v > 0;
            neg |= v < 0;
        }
        mixed = pos && neg;
    }
    i128 lim;
    int reduces = !mixed && e_floor > HXR_EXPOSURE_SLACK_MICRO && moves && side == -e_sign &&
                  mul_ok(e_floor - HXR_EXPOSURE_SLACK_MICRO, d_e_den, &lim) && d_e_num <= lim;
    i128 d_loss;
    if (reduces) {
        d_loss = 0;
    } else if (as->kind == HXR_ASSET_PREDICTION) {
        i128 pm = P > HXR_MICRO_PER_UNIT - P ? P : HXR_MICRO_PER_UNIT - P;
        if (!mul_ok(q, pm, &x)) return 0;
        d_loss = ceildiv(x, as->qty_scale);
    } else {
        i128 reach = e_ceil + ceildiv(d_e_num, d_e_den);
        reach += reach / 1000000000 + 1 + HXR_EXPOSURE_SLACK_MICRO;
        int64_t rate = as->s_rate[bisect_left(as->s_upper, as->n_s, reach)];
        int64_t mult = b->mult[m->asset];
        if (rate < 0 || mult < 0 || d_e_num < 0) return 0;
        /* ceil(d_e_num * rate * mult * factor / (d_e_den * ppm^4)), in 256 bits */
        u256 v = {{(uint64_t)(u128)d_e_num, (uint64_t)((u128)d_e_num >> 64), 0, 0}};
        if (!u256_mul64(&v, (uint64_t)rate) || !u256_mul64(&v, (uint64_t)mult) || !u256_mul64(&v, c->factor)) return 0;
        if (d_e_den <= 0 || d_e_den > (i128)UINT64_MAX) return 0;
        u256_ceildiv64(&v, (uint64_t)d_e_den);
        for (int k = 0; k < 4; k++) u256_ceildiv64(&v, HXR_PPM);
        if (v.w[3] || v.w[2] || v.w[1] >> 55) return 0;
        d_loss = (i128)(((u128)v.w[1] << 64) | v.w[0]);
    }
    i128 margin = d_loss;
    if (d_floor > margin) margin = d_floor;
    if (margin < 0) margin = 0;
    i128 cash = loss + HXR_ROUNDING_SLACK_MICRO + (reduces ? HXR_EXPOSURE_SLACK_MICRO : 0);
    i128 r = margin + cash;
    *out = r > 0 ? r : 0;
    return small(*out);
}

/* ---- commands ---- */
static int cmd_new_order(Core *c, Bind *b, const uint8_t *p) {
    uint32_t mid = hx_header_market_id(p), account = hx_new_order_account(p);
    uint64_t coid = hx_new_order_client_order_id(p);
    int64_t price = hx_new_order_price_ticks(p), size = hx_new_order_size_lots(p);
    uint8_t side = hx_new_order_side(p), flags = hx_new_order_flags(p);
    const uint8_t T = HX_MSG_NEW_ORDER;
    int ro = (flags & HX_FLAG_REDUCE_ONLY) ? 1 : has_reduce_only(b, account);
    if (ro < 0) return FAILED;
    if (ro) return HB(b, HB_REDUCE_ONLY); /* RiskEngine._new_order counts it among the others */
    int owned = owns(c, account);
    int64_t row = -1;
    if (owned) {
        row = find_row(b, account);
        if (row == -2) return FAILED;
        if (row < 0) return HB(b, HB_NO_ROW); /* Python gives it a row first */
    }
    const Mkt *m = mid < c->n_mkts && c->mkts[mid].present ? &c->mkts[mid] : NULL;
    b->checked++;
    if (!m) return reject(c, b, mid, T, 0, coid, account, row, HX_REJECT_UNKNOWN_MARKET);
    if (!owned) return reject(c, b, mid, T, 0, coid, account, row, HX_REJECT_ACCOUNT_NOT_HERE);
    if (side > 1 || size <= 0 || price <= 0) return forward(c, b, p, mid) < 0 ? FAILED : APPLIED;
    if (find_coid(b->ledger, mid, account, coid) >= 0)
        return reject(c, b, mid, T, 0, coid, account, row, HX_REJECT_DUPLICATE_CLIENT_ORDER_ID);
    int liquidating = 0;
    if (PyDict_GET_SIZE(b->cases)) {
        PyObject *key = PyLong_FromUnsignedLong(account);
        if (!key) return FAILED;
        liquidating = PyDict_Contains(b->cases, key);
        Py_DECREF(key);
        if (liquidating < 0) return FAILED;
    }
    if (liquidating || coid >= HXR_LIQUIDATION_COID_BASE)
        return reject(c, b, mid, T, 0, coid, account, row,
                      coid < HXR_LIQUIDATION_COID_BASE ? HX_REJECT_ACCOUNT_LIQUIDATING : HX_REJECT_BAD_FIELD);
    int iso = isolated(b, account, mid);
    if (iso < 0) return FAILED;
    if (iso) {
        b->checked--;
        return HB(b, HB_ISOLATED);
    }
    const int A = (int)c->n_assets;
    i128 size_atoms = (i128)size * m->lot, price_micro = (i128)price * m->tick;
    i128 held = m->is_perp ? b->perp_size[row * c->n_perps + m->perp] : b->balance[row * A + m->asset];
    int buy = side == HX_SIDE_BUY;
    int reduces = held != 0 && ((held > 0) != buy) && size_atoms <= abs128(held);
    if (abs128(held) + size_atoms >= (i128)HXR_MAX_POSITION_ATOMS)
        return reject(c, b, mid, T, 0, coid, account, row, HX_REJECT_AMOUNT_OUT_OF_RANGE);
    if (b->dirty[row]) {
        b->checked--;
        return HB(b, HB_DIRTY); /* its exposure moved: Python recomputes it first */
    }
    i128 mark = m->is_perp ? b->marks[m->perp] : b->prices[m->asset];
    if (!mark) mark = price_micro;
    i128 reserve;
    if (!order_reserve(c, b, row, m, buy, size_atoms, price_micro, mark, &reserve)) {
        b->checked--;
        return HB(b, HB_RANGE);
    }
    i128 free_ = (i128)b->equity[row] - b->initial[row] - b->reserved[row];
    if (PyDict_GET_SIZE(b->leverage) && !reduces) {
        PyObject *key = Py_BuildValue("(kk)", (unsigned long)account, (unsigned long)mid);
        if (!key) return FAILED;
        PyObject *lev = PyDict_GetItemWithError(b->leverage, key);
        Py_DECREF(key);
        if (!lev && PyErr_Occurred()) return FAILED;
        if (lev) {
            if (!PyTuple_Check(lev) || PyTuple_GET_SIZE(lev) < 1) return HB(b, HB_RANGE);
            long long lv = PyLong_AsLongLong(PyTuple_GET_ITEM(lev, 0));
            if (lv == -1 && PyErr_Occurred()) return FAILED;
            if (lv <= 0) {
                b->checked--;
                return HB(b, HB_RANGE);
            }
            i128 hi = price_micro > mark ? price_micro : mark, x;
            if (!mul_ok(size_atoms, hi, &x) || !small(x)) {
                b->checked--;
                return HB(b, HB_RANGE);
            }
            i128 by_lev = floordiv(ceildiv(x, HXR_ATOMS_PER_UNIT), lv) + 1;
            if (by_lev > free_ && reserve <= free_)
                return reject(c, b, mid, T, 0, coid, account, row, HX_REJECT_LEVERAGE_EXCEEDED);
            if (by_lev > reserve) reserve = by_lev;
        }
    }
    if (reserve > free_) return reject(c, b, mid, T, 0, coid, account, row, HX_REJECT_INSUFFICIENT_MARGIN);
    i128 new_reserved = (i128)b->reserved[row] + reserve;
    if (reserve > I64_MAX_ || new_reserved > I64_MAX_ || new_reserved < I64_MIN_) {
        b->checked--;
        return HB(b, HB_RANGE);
    }
    Res r = {.coid = coid, .order_id = 0, .open_lots = size, .reserve = (int64_t)reserve, .amend_extra = 0,
             .price_ticks = price, .account = account, .market = mid, .side = side};
    if (ledger_add(b->ledger, &r) < 0) return FAILED;
    b->reserved[row] = (int64_t)new_reserved;
    return forward(c, b, p, mid) < 0 ? FAILED : APPLIED;
}

static int cmd_forward_owned(Core *c, Bind *b, const uint8_t *p, uint32_t market, uint32_t account, uint8_t t,
                             uint64_t oid, uint64_t coid) {
    if (!owns(c, account)) return reject(c, b, market, t, oid, coid, account, -1, HX_REJECT_ACCOUNT_NOT_HERE);
    return forward(c, b, p, market) < 0 ? FAILED : APPLIED;
}

static int cmd_amend(Core *c, Bind *b, const uint8_t *p) {
    uint32_t mid = hx_header_market_id(p), account = hx_amend_account(p);
    uint64_t oid = hx_amend_order_id(p), coid = hx_amend_client_order_id(p);
    int64_t price = hx_amend_price_ticks(p), size = hx_amend_size_lots(p);
    if (!owns(c, account)) return reject(c, b, mid, HX_MSG_AMEND, oid, coid, account, -1, HX_REJECT_ACCOUNT_NOT_HERE);
    int ro = has_reduce_only(b, account);
    if (ro < 0) return FAILED;
    if (ro) return HB(b, HB_REDUCE_ONLY);
    int64_t k = ledger_find(b->ledger, mid, account, oid, coid);
    const Mkt *m = mid < c->n_mkts && c->mkts[mid].present ? &c->mkts[mid] : NULL;
    if (k < 0 || !m || b->ledger->res[k].amend_extra) return forward(c, b, p, mid) < 0 ? FAILED : APPLIED;
    int64_t row = find_row(b, account);
    if (row == -2) return FAILED;
    if (row < 0) return HB(b, HB_NO_ROW);
    if (b->dirty[row]) return HB(b, HB_DIRTY);
    int iso = isolated(b, account, mid);
    if (iso < 0) return FAILED;
    if (iso) return HB(b, HB_ISOLATED);
    Res *r = &b->ledger->res[k];
    int64_t new_open = size <= 0 ? r->open_lots : size;
    i128 price_micro = (i128)price * m->tick;
    i128 mark = m->is_perp ? b->marks[m->perp] : b->prices[m->asset];
    if (price_micro <= 0) price_micro = mark ? mark : 1;
    i128 lots = new_open > r->open_lots ? new_open : r->open_lots;
    i128 reserve;
    if (!order_reserve(c, b, row, m, r->side == HX_SIDE_BUY, lots * m->lot, price_micro, mark ? mark : price_micro,
                       &reserve))
        return HB(b, HB_RANGE);
    i128 extra = reserve - r->reserve;
    if (extra < 0) extra = 0;
    i128 free_ = (i128)b->equity[row] - b->initial[row] - b->reserved[row];
    if (extra > free_) return reject(c, b, mid, HX_MSG_AMEND, oid, coid, account, row, HX_REJECT_INSUFFICIENT_MARGIN);
    i128 new_reserved = (i128)b->reserved[row] + extra;
    if (extra > I64_MAX_ || new_reserved > I64_MAX_) return HB(b, HB_RANGE);
    r->amend_extra = (int64_t)extra;
    b->reserved[row] = (int64_t)new_reserved;
    return forward(c, b, p, mid) < 0 ? FAILED : APPLIED;
}

static int heartbeat_echo(Bind *b, const uint8_t *p, uint32_t market) {
    uint8_t *q = emit(b);
    if (!q) return FAILED;
    hx_put_heartbeat(q, market, hx_heartbeat_ts_ns(p), b->records);
    return APPLIED;
}

static int step_command(Core *c, Bind *b, const uint8_t *p, int source) {
    if (source == 1) return HB(b, HB_ORACLE); /* the oracle's: Python */
    switch (p[0]) {
    case HX_MSG_NEW_ORDER:
        return cmd_new_order(c, b, p);
    case HX_MSG_CANCEL:
        return cmd_forward_owned(c, b, p, hx_header_market_id(p), hx_cancel_account(p), HX_MSG_CANCEL,
                                 hx_cancel_order_id(p), hx_cancel_client_order_id(p));
    case HX_MSG_CANCEL_ALL:
        return cmd_forward_owned(c, b, p, hx_header_market_id(p), hx_cancel_all_account(p), HX_MSG_CANCEL_ALL, 0, 0);
    case HX_MSG_AMEND:
        return cmd_amend(c, b, p);
    case HX_MSG_L2_SNAPSHOT_REQUEST:
        return forward(c, b, p, hx_header_market_id(p)) < 0 ? FAILED : APPLIED;
    case HX_MSG_HEARTBEAT: {
        int rc = heartbeat_echo(b, p, 0);
        if (rc != APPLIED) return rc;
        for (uint32_t s = 0; s < c->shards; s++)
            if (append_to(PyList_GET_ITEM(b->orders, s), p) < 0) return FAILED;
        return APPLIED;
    }
    default:
        return HB(b, HB_RARE_TYPE);
    }
}

/* ---- shard events ---- */
static int republish(Bind *b, const uint8_t *p, int64_t row) {
    uint8_t *q = emit(b);
    if (!q) return -1;
    memcpy(q, p, HX_SLOT_BYTES);
    hx_wr_u64(q + HX_OFF_ACCEPTED_SEQ, row_seq(b, row));
    return 0;
}

static void release(Bind *b, int64_t row, int64_t amount) {
    if (row >= 0 && amount) b->reserved[row] -= amount;
}

/* RiskEngine._order_gone without the liquidator (the caller hands risk's own orders back). */
static void order_gone(Bind *b, int64_t k, int64_t row) {
    if (k >= 0) release(b, row, ledger_remove(b->ledger, k));
}

/* engine.math.position.apply_fill on a position (size, cost) in place: a fill of signed ``qty`` (not 0)
 * whose notional is ``notional`` (>= 0); the P&L it realises in *realised. -1 (OverflowError, as numpy
 * storing the figures would raise) when the new size or cost leaves int64, nothing written. */
static int perp_fill(int64_t *size_p, int64_t *cost_p, i128 qty, i128 notional, i128 *realised) {
    const i128 size = *size_p, cost = *cost_p;
    i128 new_size, new_cost;
    i128 sq = qty > 0 ? 1 : -1;
    i128 signed_n = sq * notional;
    if (size == 0 || (size > 0) == (qty > 0)) {
        new_size = size + qty;
        new_cost = cost + signed_n;
        *realised = 0;
    } else {
        i128 aq = abs128(qty), as_ = abs128(size);
        i128 close = aq < as_ ? aq : as_;
        i128 closing;
        if (aq <= as_) closing = notional;
        else if (qty > 0) closing = ceildiv(notional * close, qty);
        else closing = floordiv(notional * close, -qty);
        i128 closing_signed = sq * closing;
        i128 removed = close == as_ ? cost : ceildiv(cost * close, as_);
        *realised = -closing_signed - removed;
        new_size = size + qty;
        new_cost = cost - removed + (signed_n - closing_signed);
    }
    if (new_size > I64_MAX_ || new_size < I64_MIN_ || new_cost > I64_MAX_ || new_cost < I64_MIN_) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C long");
        return -1;
    }
    *size_p = (int64_t)new_size;
    *cost_p = (int64_t)new_cost;
    return 0;
}

static int settle_fill(Core *c, Bind *b, int64_t row, uint32_t account, const Mkt *m, int buy, i128 size_atoms,
                       i128 notional, int is_maker, uint64_t oid, uint32_t mid) {
    const int A = (int)c->n_assets, P = (int)c->n_perps;
    i128 fee;
    if (!fee_micro(notional, is_maker ? m->maker_fee : m->taker_fee, &fee)) {
        PyErr_SetString(PyExc_OverflowError, "fee out of range");
        return -1;
    }
    if (m->is_perp) {
        int64_t k = row * P + m->perp;
        i128 realised;
        if (perp_fill(&b->perp_size[k], &b->perp_cost[k], buy ? size_atoms : -size_atoms, notional, &realised) < 0)
            return -1;
        if (add_trade_flow(b, 0, buy ? -notional : notional) < 0) return -1;
        if (add_checked(&b->perp_realised[k], realised, "realised P&L") < 0) return -1;
        if (realised) {
            if (add_checked(&b->balance[row * A], realised, "balance") < 0) return -1;
            if (emit_balance(b, row, A, 0, HXR_REASON_TRADE, (int64_t)realised, oid, account) < 0) return -1;
        }
        if (emit_position(b, row, P, mid, m->perp, account) < 0) return -1;
    } else {
        int a = m->asset;
        i128 cash = buy ? -notional : notional, qty = buy ? size_atoms : -size_atoms;
        if (add_trade_flow(b, 0, cash) < 0 || add_trade_flow(b, a, qty) < 0) return -1;
        if (add_checked(&b->balance[row * A], cash, "balance") < 0) return -1;
        if (emit_balance(b, row, A, 0, HXR_REASON_TRADE, (int64_t)cash, oid, account) < 0) return -1;
        if (add_checked(&b->balance[row * A + a], qty, "balance") < 0) return -1;
        if (emit_balance(b, row, A, (uint16_t)a, HXR_REASON_TRADE, (int64_t)qty, oid, account) < 0) return -1;
    }
    if (fee) {
        if (add_checked(&b->balance[row * A], -fee, "balance") < 0) return -1;
        if (emit_balance(b, row, A, 0, HXR_REASON_FEE, (int64_t)-fee, oid, account) < 0) return -1;
        if (add_checked(&b->balance[b->fee_row * A], fee, "fee balance") < 0) return -1;
        b->fee_changed = 1;
    }
    return 0;
}

/* RiskEngine._liquidation_fee: ``fee_ppm`` of the notional, never more than the row's positive
 * cash, from the row to the insurance fund (RiskEngine.move_cash: both adds, then both events). */
static int liquidation_fee(Core *c, Bind *b, int64_t row, uint32_t account, i128 notional, uint64_t coid) {
    const int A = (int)c->n_assets;
    int64_t fee = (int64_t)floordiv(notional * b->liq_fee_ppm, HXR_PPM);
    int64_t cash = b->balance[row * A];
    if (fee > (cash > 0 ? cash : 0)) fee = cash > 0 ? cash : 0;
    if (!fee) return 0;
    int64_t ins = b->insurance_row;
    if (add_checked(&b->balance[row * A], -fee, "balance") < 0) return -1;
    if (add_checked(&b->balance[ins * A], fee, "balance") < 0) return -1;
    b->dirty[row] = b->dirty[ins] = 1;
    if (emit_balance(b, row, A, 0, HXR_REASON_LIQUIDATION, -fee, coid, account) < 0) return -1;
    uint32_t ins_account = (uint32_t)(HXR_INSURANCE_ACCOUNT_BASE + c->partition);
    return emit_balance(b, ins, A, 0, HXR_REASON_INSURANCE, fee, coid, ins_account);
}

/* A liquidation order ended with this slot: listed for the liquidator (Core.ended); the slot then
 * returns APPLIED_STOP. */
static void ended(Core *c, uint64_t coid, int filled_all, int refused) {
    const int i = c->n_ended++;
    c->liquidation_ends++;
    c->ended_coid[i] = coid;
    c->ended_filled[i] = (uint8_t)filled_all;
    c->ended_refused[i] = (uint8_t)refused;
}

static int ev_fill(Core *c, Bind *b, const uint8_t *p) {
    uint32_t mid = hx_header_market_id(p);
    const Mkt *m = mid < c->n_mkts && c->mkts[mid].present ? &c->mkts[mid] : NULL;
    if (!m) return APPLIED; /* changes nothing */
    uint64_t t_oid = hx_fill_taker_order_id(p), m_oid = hx_fill_maker_order_id(p);
    int64_t price = hx_fill_price_ticks(p), size = hx_fill_size_lots(p);
    uint32_t t_acct = hx_fill_taker_account(p), m_acct = hx_fill_maker_account(p);
    uint8_t t_side = hx_fill_taker_side(p), flags = hx_fill_flags(p);
    i128 price_micro = (i128)price * m->tick, size_atoms = (i128)size * m->lot;
    const i128 LIM = (i128)1 << 62;
    if (price_micro >= LIM || price_micro <= -LIM || size_atoms >= LIM || size_atoms <= -LIM) return HB(b, HB_RANGE);
    i128 notional = floordiv(price_micro * size_atoms, HXR_ATOMS_PER_UNIT);
    if (notional >= LIM || notional < 0 || size_atoms <= 0) return HB(b, HB_RANGE);
    /* everything Python must do itself, decided before anything changes */
    uint32_t accts[2] = {t_acct, m_acct};
    uint64_t oids[2] = {t_oid, m_oid};
    int64_t rows[2] = {-1, -1}, slots[2] = {-1, -1};
    uint64_t liq_coid[2] = {0, 0}; /* a liquidation order's fill: its fee here */
    int liq_done[2] = {0, 0};       /* ... and the fill that ends it: the liquidator follows that */
    for (int s = 0; s < 2; s++) {
        if (!owns(c, accts[s])) continue;
        rows[s] = find_row(b, accts[s]);
        if (rows[s] == -2) return FAILED;
        if (rows[s] < 0) return HB(b, HB_NO_ROW);
        if (rows[s] == b->fee_row) return HB(b, HB_FEE_ACCOUNT);
        int iso = isolated(b, accts[s], mid);
        if (iso < 0) return FAILED;
        if (iso) return HB(b, HB_ISOLATED);
        slots[s] = ledger_find(b->ledger, mid, accts[s], oids[s], 0);
        if (slots[s] >= 0 && b->ledger->res[slots[s]].coid >= HXR_LIQUIDATION_COID_BASE) {
            liq_coid[s] = b->ledger->res[slots[s]].coid;
            liq_done[s] = (s == 0 ? (flags & 1) : (flags & 2)) != 0;
        }
    }
    PyObject *key = PyLong_FromUnsignedLong(mid);
    if (!key) return FAILED;
    PyObject *pr = PyDict_GetItemWithError(b->priced, key);
    Py_DECREF(key);
    if (!pr && PyErr_Occurred()) return FAILED;
    int priced = pr ? PyObject_IsTrue(pr) : 0;
    if (priced < 0) return FAILED;
    if (!priced) { /* no mark from the oracle yet: value at the last trade */
        if (m->is_perp) {
            b->marks[m->perp] = (int64_t)price_micro;
            if (emit_price(b, mid, (uint16_t)m->asset, 0, (int64_t)price_micro) < 0) return FAILED;
        } else {
            b->prices[m->asset] = (int64_t)price_micro;
            if (emit_price(b, HX_ALL_MARKETS, (uint16_t)m->asset, 1, (int64_t)price_micro) < 0) return FAILED;
        }
    }
    for (int s = 0; s < 2; s++) {
        if (rows[s] < 0) continue;
        int is_maker = s == 1;
        int64_t row = rows[s];
        if (!is_maker || m_acct != t_acct) { /* a self-trade is published once */
            uint8_t *q = emit(b);
            if (!q) return FAILED;
            memcpy(q, p, HX_SLOT_BYTES);
            hx_wr_u64(q + HX_OFF_FILL_SEQ, row_seq(b, row));
            if (t_acct != m_acct) {
                if (!is_maker) {
                    hx_wr_u32(q + HX_OFF_FILL_MAKER_ACCOUNT, 0);
                    hx_wr_u64(q + HX_OFF_FILL_MAKER_ORDER_ID, 0);
                } else {
                    hx_wr_u32(q + HX_OFF_FILL_TAKER_ACCOUNT, 0);
                    hx_wr_u64(q + HX_OFF_FILL_TAKER_ORDER_ID, 0);
                }
            }
        }
        b->fills++;
        int buy = (is_maker ? (t_side ^ 1) : t_side) == HX_SIDE_BUY;
        if (settle_fill(c, b, row, accts[s], m, buy, size_atoms, notional, is_maker, oids[s], mid) < 0) return FAILED;
        if (liq_coid[s]) {
            c->liquidation_fills++;
            if (liquidation_fee(c, b, row, accts[s], notional, liq_coid[s]) < 0) return FAILED;
        }
        /* the maker's slot was found before the taker's side moved the ledger: find it again */
        int64_t k = ledger_find(b->ledger, mid, accts[s], oids[s], 0);
        if (k >= 0) {
            int done = is_maker ? (flags & 2) : (flags & 1);
            int64_t released = done ? ledger_remove(b->ledger, k) : ledger_shrink(b->ledger, k, size);
            b->converting[row] += released; /* held until the margin is recomputed */
        }
        b->dirty[row] = 1;
    }
    /* RiskEngine._fill calls on_order_end as each side's order ends: the run stops after this slot
     * and Python calls it, taker first (it reads nothing this slot's other side changes) */
    for (int s = 0; s < 2; s++)
        if (rows[s] >= 0 && liq_done[s]) ended(c, liq_coid[s], 1, 0);
    return c->n_ended ? APPLIED_STOP : APPLIED;
}

static int step_event(Core *c, Bind *b, const uint8_t *p) {
    uint8_t t = p[0];
    uint32_t account;
    switch (t) {
    case HX_MSG_FILL:
        return ev_fill(c, b, p);
    case HX_MSG_HEARTBEAT:
        return heartbeat_echo(b, p, 1);
    case HX_MSG_ACCEPTED:
        account = hx_accepted_account(p);
        break;
    case HX_MSG_REJECTED:
        account = hx_rejected_account(p);
        break;
    case HX_MSG_CANCELLED:
        account = hx_cancelled_account(p);
        break;
    case HX_MSG_AMENDED:
        account = hx_amended_account(p);
        break;
    case HX_MSG_TRIGGERED:
        account = hx_triggered_account(p);
        break;
    default:
        return HB(b, HB_RARE_TYPE);
    }
    if (!owns(c, account)) return APPLIED; /* other partitions' accounts change nothing here */
    uint32_t mid = hx_header_market_id(p);
    if (t == HX_MSG_CANCELLED || (t == HX_MSG_REJECTED && hx_rejected_command(p) == HX_MSG_CANCEL)) {
        uint64_t coid = t == HX_MSG_CANCELLED ? hx_cancelled_client_order_id(p) : hx_rejected_client_order_id(p);
        int ours = risk_cancel(b, mid, account, coid);
        if (ours < 0) return FAILED;
        if (ours) return HB(b, HB_REDUCE_ONLY); /* RiskEngine._reduce_only_answer */
    }
    int64_t row = find_row(b, account);
    if (row == -2) return FAILED;
    if (row < 0) return HB(b, HB_NO_ROW);
    Ledger *L = b->ledger;
    int64_t k = -1;
    /* risk's own liquidation order ending (its IOC remainder cancelled, or refused): after the
     * slot, the liquidator follows it (RiskEngine._order_gone's on_order_end; see Core.ended) */
    uint64_t liq_coid = 0;
    if (t == HX_MSG_CANCELLED) {
        k = ledger_find(L, mid, account, hx_cancelled_order_id(p), hx_cancelled_client_order_id(p));
    } else if (t == HX_MSG_REJECTED && hx_rejected_command(p) == HX_MSG_NEW_ORDER) {
        k = ledger_find(L, mid, account, 0, hx_rejected_client_order_id(p));
    }
    if (k >= 0 && L->res[k].coid >= HXR_LIQUIDATION_COID_BASE) liq_coid = L->res[k].coid;
    if (republish(b, p, row) < 0) return FAILED;
    switch (t) {
    case HX_MSG_ACCEPTED:
        ledger_accept(L, mid, account, hx_accepted_client_order_id(p), hx_accepted_order_id(p),
                      hx_accepted_size_lots(p));
        break;
    case HX_MSG_CANCELLED:
        order_gone(b, k, row);
        if (liq_coid) {
            ended(c, liq_coid, 0, 0);
            return APPLIED_STOP;
        }
        break;
    case HX_MSG_REJECTED:
        if (hx_rejected_command(p) == HX_MSG_NEW_ORDER) {
            order_gone(b, k, row);
            if (liq_coid) {
                ended(c, liq_coid, 0, 1);
                return APPLIED_STOP;
            }
        } else if (hx_rejected_command(p) == HX_MSG_AMEND) {
            k = ledger_find(L, mid, account, hx_rejected_order_id(p), hx_rejected_client_order_id(p));
            if (k >= 0 && L->res[k].amend_extra) {
                release(b, row, L->res[k].amend_extra);
                L->res[k].amend_extra = 0;
            }
        }
        break;
    case HX_MSG_AMENDED:
        k = ledger_find(L, mid, account, hx_amended_order_id(p), hx_amended_client_order_id(p));
        if (k >= 0) release(b, row, ledger_amended(L, k, hx_amended_price_ticks(p), hx_amended_size_lots(p)));
        break;
    default:
        break;
    }
    return APPLIED;
}

static int add_counter(PyObject *counters, const char *name, int64_t n) {
    if (!n) return 0;
    PyObject *cur = PyDict_GetItemString(counters, name);
    long long v = cur ? PyLong_AsLongLong(cur) : 0;
    if (v == -1 && PyErr_Occurred()) return -1;
    PyObject *nv = PyLong_FromLongLong(v + n);
    if (!nv) return -1;
    int rc = PyDict_SetItemString(counters, name, nv);
    Py_DECREF(nv);
    return rc;
}

/* run(engine, buf, off, end, source) -> the offset of the first slot not applied */
static PyObject *Core_run(Core *c, PyObject *args) {
    PyObject *engine;
    Py_buffer in;
    Py_ssize_t off, end;
    int source;
    if (!PyArg_ParseTuple(args, "Oy*nni", &engine, &in, &off, &end, &source)) return NULL;
    if (off < 0 || end > in.len || off > end || (end - off) % HX_SLOT_BYTES) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "run: off/end must frame whole 64-byte slots inside the buffer");
        return NULL;
    }
    Bind b;
    if (bind(c, &b, engine) < 0) {
        unbind(&b);
        PyBuffer_Release(&in);
        return NULL;
    }
    const uint8_t *base = in.buf;
    int rc = APPLIED;
    c->n_ended = 0; /* (what the last run listed was taken, or is of no use now) */
    while (off < end) {
        rc = source >= 0 ? step_command(c, &b, base + off, source) : step_event(c, &b, base + off);
        if (rc == APPLIED_STOP) { /* applied, and a liquidation order ended: Python follows it now */
            off += HX_SLOT_BYTES;
            rc = APPLIED;
            break;
        }
        if (rc != APPLIED) break;
        off += HX_SLOT_BYTES;
    }
    if (rc == HANDBACK) c->handbacks[b.handback]++;
    if (rc != FAILED && b.fee_changed && PyObject_SetAttr(engine, c->k_fee_changed, Py_True) < 0) rc = FAILED;
    if (rc != FAILED && (b.checked || b.rejected || b.fills)) {
        PyObject *counters = get_attr(engine, "counters");
        if (!counters || !PyDict_Check(counters) || add_counter(counters, "checked", b.checked) < 0 ||
            add_counter(counters, "rejected", b.rejected) < 0 || add_counter(counters, "fills", b.fills) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "engine.counters must be a dict");
            rc = FAILED;
        }
        Py_XDECREF(counters);
    }
    unbind(&b);
    PyBuffer_Release(&in);
    if (rc == FAILED) return NULL;
    return PyLong_FromSsize_t(off);
}

static PyObject *Core_handbacks(Core *c, PyObject *unused) {
    PyObject *out = PyDict_New();
    for (int i = 0; out && i < HB_N; i++) {
        PyObject *v = PyLong_FromLongLong(c->handbacks[i]);
        if (!v || PyDict_SetItemString(out, HB_NAMES[i], v) < 0) Py_CLEAR(out);
        Py_XDECREF(v);
    }
    return out;
}

static PyObject *Core_liquidation_fills(Core *c, PyObject *unused) { return PyLong_FromLongLong(c->liquidation_fills); }
static PyObject *Core_liquidation_ends(Core *c, PyObject *unused) { return PyLong_FromLongLong(c->liquidation_ends); }

/* The columns the transfers below touch (not the whole of bind()'s: they are called per account of
 * a takeover or an ADL) for rows ``src`` and ``dst``: 1 bound, 0 when RiskEngine must do it (an
 * isolated position on the book: its events go on the owner's stream; a row outside the book: its
 * error), -1 error. Unbind in every case. */
static int bind_transfer(Core *c, Bind *b, PyObject *engine, long long src, long long dst, uint8_t **dirty,
                         uint32_t **ids) {
    const int A = (int)c->n_assets, P = (int)c->n_perps;
    memset(b, 0, sizeof *b);
    PyObject *book = b->book = get_attr(engine, "book");
    if (!book) return -1;
    PyObject *v = get_attr(book, "n_isolated");
    if (!v) return -1;
    long long n_isolated = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (n_isolated == -1 && PyErr_Occurred()) return -1;
    if (n_isolated) return 0;
    if (!(b->balance = view_of(b, book, "balance", 8, A)) || !(b->held = view_of(b, book, "held", 8, A)) ||
        !(b->perp_size = view_of(b, book, "perp_size", 8, P)) || !(b->perp_cost = view_of(b, book, "perp_cost", 8, P)) ||
        !(b->perp_realised = view_of(b, book, "perp_realised", 8, P)) ||
        !(b->perp_funding = view_of(b, book, "perp_funding", 8, P)) ||
        !(b->private_seq = view_of(b, book, "private_seq", 8, 0)) || !(*dirty = view_of(b, book, "dirty", 1, 0)) ||
        !(*ids = view_of(b, book, "ids", 4, 0)))
        return -1;
    b->capacity = b->views[0].shape[0];
    for (int i = 6; i < 9; i++) /* (the 1-D ones: private_seq, dirty, ids) */
        if (b->views[i].shape[0] < b->capacity) {
            PyErr_SetString(PyExc_ValueError, "account book columns of different lengths");
            return -1;
        }
    if (src < 0 || src >= b->capacity || dst < 0 || dst >= b->capacity) return 0;
    if (!(b->events = get_attr(engine, "events"))) return -1;
    if (!PyByteArray_Check(b->events)) {
        PyErr_SetString(PyExc_TypeError, "engine.events must be a bytearray");
        return -1;
    }
    return 1;
}

/* Arguments the C transfers take as int64 (the ref as uint64); anything else is RiskEngine's to
 * refuse with its own error: 0 then, and no exception left set. */
static int args_i64(PyObject *const *objs, long long *out, int n) {
    for (int i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(objs[i]);
        if (out[i] == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* RiskEngine.transfer_perp on bound rows: each side as a fill (its realised P&L to its cash with a
 * BALANCE, then its POSITION). 0, or -1 with an exception set. */
static int transfer(const Core *c, Bind *b, uint8_t *dirty, const uint32_t *ids, int64_t src, int64_t dst, int64_t perp,
                    uint32_t market, int64_t size, int64_t notional) {
    const int A = (int)c->n_assets, P = (int)c->n_perps;
    const int64_t rows[2] = {src, dst};
    const i128 qty[2] = {-(i128)size, (i128)size};
    for (int s = 0; s < 2; s++) {
        const int64_t row = rows[s], k = row * P + perp;
        i128 realised;
        if (perp_fill(&b->perp_size[k], &b->perp_cost[k], qty[s], notional, &realised) < 0) return -1;
        if (add_checked(&b->perp_realised[k], realised, "realised P&L") < 0) return -1;
        if (realised) {
            if (add_checked(&b->balance[row * A], realised, "balance") < 0) return -1;
            if (emit_balance(b, row, A, 0, HXR_REASON_LIQUIDATION, (int64_t)realised, (uint64_t)perp, ids[row]) < 0)
                return -1;
        }
        dirty[row] = 1;
        if (emit_position(b, row, P, market, (int32_t)perp, ids[row]) < 0) return -1;
    }
    return 0;
}

/* RiskEngine.move_cash on bound rows: both adds, then both BALANCE events. 0, or -1. */
static int move_cash(const Core *c, Bind *b, uint8_t *dirty, const uint32_t *ids, int64_t src, int64_t dst,
                     int64_t amount, uint8_t reason_src, uint8_t reason_dst, uint64_t ref) {
    const int A = (int)c->n_assets;
    if (add_checked(&b->balance[src * A], -(i128)amount, "balance") < 0 ||
        add_checked(&b->balance[dst * A], (i128)amount, "balance") < 0)
        return -1;
    dirty[src] = dirty[dst] = 1;
    if (emit_balance(b, src, A, 0, reason_src, -amount, ref, ids[src]) < 0 ||
        emit_balance(b, dst, A, 0, reason_dst, amount, ref, ids[dst]) < 0)
        return -1;
    return 0;
}

/* transfer_perp(engine, src, dst, perp, market, size, notional) -> True when applied, False when
 * RiskEngine.transfer_perp must (see bind_transfer; a zero size, a negative notional, a row outside
 * the book: its errors): ``src`` hands ``size`` atoms of its perp position (signed as it holds it)
 * to ``dst`` at ``notional``, each side as a fill (its realised P&L to its cash with a BALANCE, then
 * its POSITION): a takeover's or an ADL's transfer. */
static PyObject *Core_transfer_perp(Core *c, PyObject *args) {
    PyObject *engine, *o[6];
    long long v[6];
    if (!PyArg_ParseTuple(args, "OOOOOOO", &engine, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    if (!args_i64(o, v, 6)) Py_RETURN_FALSE;
    const long long src = v[0], dst = v[1], perp = v[2], market = v[3], size = v[4], notional = v[5];
    if (size == 0 || size == LLONG_MIN || notional < 0 || perp < 0 || perp >= c->n_perps || market < 0 ||
        market > UINT32_MAX)
        Py_RETURN_FALSE;
    Bind b;
    uint8_t *dirty = NULL;
    uint32_t *ids = NULL;
    PyObject *result = NULL;
    int rc = bind_transfer(c, &b, engine, src, dst, &dirty, &ids);
    if (rc <= 0) {
        if (rc == 0) result = Py_NewRef(Py_False);
        goto done;
    }
    if (transfer(c, &b, dirty, ids, src, dst, perp, (uint32_t)market, size, notional) == 0) result = Py_NewRef(Py_True);
done:
    unbind(&b);
    return result;
}

/* move_cash(engine, src, dst, amount, reason_src, reason_dst, ref) -> True when applied, False when
 * RiskEngine.move_cash must (see bind_transfer; a row outside the book): ``amount`` micro-USDC from
 * one row to another, both adds then both BALANCE events (a haircut, a cover, a liquidation fee). */
static PyObject *Core_move_cash(Core *c, PyObject *args) {
    PyObject *engine, *o[5], *ref_o;
    long long v[5];
    if (!PyArg_ParseTuple(args, "OOOOOOO", &engine, &o[0], &o[1], &o[2], &o[3], &o[4], &ref_o)) return NULL;
    if (!args_i64(o, v, 5)) Py_RETURN_FALSE;
    const long long src = v[0], dst = v[1], amount = v[2], reason_src = v[3], reason_dst = v[4];
    PyObject *ref_i = PyNumber_Index(ref_o); /* (an int, or what numpy hands over) */
    const unsigned long long ref = ref_i ? PyLong_AsUnsignedLongLong(ref_i) : (unsigned long long)-1;
    Py_XDECREF(ref_i);
    if (ref == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    if (amount == LLONG_MIN || reason_src < 0 || reason_src > 255 || reason_dst < 0 || reason_dst > 255)
        Py_RETURN_FALSE;
    Bind b;
    uint8_t *dirty = NULL;
    uint32_t *ids = NULL;
    PyObject *result = NULL;
    int rc = bind_transfer(c, &b, engine, src, dst, &dirty, &ids);
    if (rc <= 0) {
        if (rc == 0) result = Py_NewRef(Py_False);
        goto done;
    }
    if (move_cash(c, &b, dirty, ids, src, dst, amount, (uint8_t)reason_src, (uint8_t)reason_dst, (uint64_t)ref) == 0)
        result = Py_NewRef(Py_True);
done:
    unbind(&b);
    return result;
}

/* ``n`` ints of a list into ``out`` (int64): 1, or 0 when one is not an int64 (no exception left set:
 * the caller declines and Python does it), -1 on error. */
static int list_i64(PyObject *list, Py_ssize_t n, long long *out) {
    if (!PyList_Check(list) || PyList_GET_SIZE(list) != n) {
        PyErr_SetString(PyExc_TypeError, "expected lists of the same length");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError) && !PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* Three lists of ints, as long as ``rows``, into one new buffer (``*out``: rows, then the second,
 * then the third; PyMem_Free it): 1, or 0 when one is not an int64 list (nothing allocated, no
 * exception: the caller declines), -1 on error (nothing allocated). */
static int three_lists(PyObject *rows, PyObject *second, PyObject *third, Py_ssize_t *n, long long **out) {
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list");
        return -1;
    }
    *n = PyList_GET_SIZE(rows);
    long long *v = PyMem_Malloc(sizeof(long long) * (size_t)(3 * *n + 1));
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    int ok = list_i64(rows, *n, v);
    if (ok == 1) ok = list_i64(second, *n, v + *n);
    if (ok == 1) ok = list_i64(third, *n, v + 2 * *n);
    if (ok <= 0) {
        PyMem_Free(v);
        return ok;
    }
    *out = v;
    return 1;
}

/* bind_transfer for rows ``one`` and ``two``, and every one of ``rows`` within the book: 1, 0 (RiskEngine's
 * or the loop's to do), -1 error. Unbind in every case. */
static int bind_rows(Core *c, Bind *b, PyObject *engine, long long one, long long two, const long long *rows,
                     Py_ssize_t n, uint8_t **dirty, uint32_t **ids) {
    int rc = bind_transfer(c, b, engine, one, two, dirty, ids);
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++)
        if (rows[i] < 0 || rows[i] >= b->capacity) rc = 0;
    return rc;
}

/* One ADL step of a counterparty's account (LIQUIDATION on its private stream, as Liquidator._event:
 * the fund's balance after it). The row is the account's own (bind_transfer: no isolated rows). */
static int emit_adl(const Core *c, Bind *b, int64_t row, uint32_t market, uint8_t kind, uint8_t side, int64_t size,
                    int64_t price, int64_t amount, int64_t insurance_row, uint32_t *ids) {
    const uint32_t account = ids[row];
    const uint64_t seq = owns(c, account) ? row_seq(b, row) : 0;
    uint8_t *p = emit(b);
    if (!p) return -1;
    hx_put_liquidation(p, market, seq, account, kind, side, size, price, amount, b->balance[insurance_row * c->n_assets]);
    return 0;
}

/* adl_closes(engine, fund, perp, market, rows, sizes, notionals, kind, side, price) -> True when applied,
 * False (having changed nothing) when Liquidator._apply_closes's loop must: for each row in order, what
 * ``transfer_perp(fund, row, perp, size, notional)`` then the counterparty's ADL event (``kind``,
 * ``side``, ``|size|``, ``price``) do. The fund is the insurance row. */
static PyObject *Core_adl_closes(Core *c, PyObject *args) {
    PyObject *engine, *rows_o, *sizes_o, *notionals_o;
    long long fund, perp, market, kind, side, price;
    if (!PyArg_ParseTuple(args, "OLLLOOOLLL", &engine, &fund, &perp, &market, &rows_o, &sizes_o, &notionals_o,
                          &kind, &side, &price))
        return NULL;
    if (perp < 0 || perp >= c->n_perps || market < 0 || market > UINT32_MAX || kind < 0 || kind > 255 || side < 0 ||
        side > 255)
        Py_RETURN_FALSE;
    Py_ssize_t n;
    long long *v;
    int ok = three_lists(rows_o, sizes_o, notionals_o, &n, &v);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_False);
    long long *rows = v, *sizes = v + n, *notionals = v + 2 * n;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (sizes[i] == 0 || sizes[i] == LLONG_MIN || notionals[i] < 0 || rows[i] == fund) {
            PyMem_Free(v);
            Py_RETURN_FALSE;
        }
    Bind b;
    uint8_t *dirty = NULL;
    uint32_t *ids = NULL;
    int rc = bind_rows(c, &b, engine, fund, fund, rows, n, &dirty, &ids);
    if (rc <= 0) {
        if (rc == 0) result = Py_NewRef(Py_False);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t size = sizes[i] < 0 ? -sizes[i] : sizes[i];
        if (transfer(c, &b, dirty, ids, fund, rows[i], perp, (uint32_t)market, sizes[i], notionals[i]) < 0 ||
            emit_adl(c, &b, rows[i], (uint32_t)market, (uint8_t)kind, (uint8_t)side, size, price, 0, fund, ids) < 0)
            goto done;
    }
    result = Py_NewRef(Py_True);
done:
    unbind(&b);
    PyMem_Free(v);
    return result;
}

/* haircuts(engine, dst, rows, amounts, markets, kind, reason_src, reason_dst, ref, insurance) -> True when
 * applied, False (having changed nothing) when Liquidator._haircut's loop must: for each row in order,
 * what ``move_cash(row, dst, amount, reason_src, reason_dst, ref)`` then the row's ADL event (``kind``,
 * the market, the amount) do. */
static PyObject *Core_haircuts(Core *c, PyObject *args) {
    PyObject *engine, *rows_o, *amounts_o, *markets_o;
    long long dst, kind, reason_src, reason_dst, insurance;
    unsigned long long ref;
    if (!PyArg_ParseTuple(args, "OLOOOLLLKL", &engine, &dst, &rows_o, &amounts_o, &markets_o, &kind, &reason_src,
                          &reason_dst, &ref, &insurance))
        return NULL;
    if (kind < 0 || kind > 255 || reason_src < 0 || reason_src > 255 || reason_dst < 0 || reason_dst > 255)
        Py_RETURN_FALSE;
    Py_ssize_t n;
    long long *v;
    int ok = three_lists(rows_o, amounts_o, markets_o, &n, &v);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_False);
    long long *rows = v, *amounts = v + n, *markets = v + 2 * n;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (amounts[i] == LLONG_MIN || markets[i] < 0 || markets[i] > UINT32_MAX) {
            PyMem_Free(v);
            Py_RETURN_FALSE;
        }
    Bind b;
    uint8_t *dirty = NULL;
    uint32_t *ids = NULL;
    int rc = bind_rows(c, &b, engine, dst, insurance, rows, n, &dirty, &ids);
    if (rc <= 0) {
        if (rc == 0) result = Py_NewRef(Py_False);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (move_cash(c, &b, dirty, ids, rows[i], dst, amounts[i], (uint8_t)reason_src, (uint8_t)reason_dst, ref) < 0 ||
            emit_adl(c, &b, rows[i], (uint32_t)markets[i], (uint8_t)kind, 0, 0, 0, amounts[i], insurance, ids) < 0)
            goto done;
    result = Py_NewRef(Py_True);
done:
    unbind(&b);
    PyMem_Free(v);
    return result;
}

/* ended() -> ((client order id, filled in full, refused), ...): the liquidation orders the last run's
 * last slot ended (it stopped after that slot), taken once */
static PyObject *Core_ended(Core *c, PyObject *unused) {
    PyObject *out = PyTuple_New(c->n_ended);
    for (int i = 0; out && i < c->n_ended; i++) {
        PyObject *v = Py_BuildValue("(KOO)", (unsigned long long)c->ended_coid[i], c->ended_filled[i] ? Py_True : Py_False,
                                    c->ended_refused[i] ? Py_True : Py_False);
        if (!v) Py_CLEAR(out);
        else PyTuple_SET_ITEM(out, i, v);
    }
    c->n_ended = 0;
    return out;
}

static PyMethodDef Core_methods[] = {
    {"handbacks", (PyCFunction)Core_handbacks, METH_NOARGS, "slots left to Python so far, by reason"},
    {"liquidation_fills", (PyCFunction)Core_liquidation_fills, METH_NOARGS,
     "fills of risk's liquidation orders applied by the core"},
    {"liquidation_ends", (PyCFunction)Core_liquidation_ends, METH_NOARGS,
     "ends of risk's liquidation orders applied by the core (last fill, cancelled remainder, refusal)"},
    {"transfer_perp", (PyCFunction)Core_transfer_perp, METH_VARARGS,
     "transfer_perp(engine, src, dst, perp, market, size, notional) -> applied (False: RiskEngine's own)"},
    {"move_cash", (PyCFunction)Core_move_cash, METH_VARARGS,
     "move_cash(engine, src, dst, amount, reason_src, reason_dst, ref) -> applied (False: RiskEngine's own)"},
    {"adl_closes", (PyCFunction)Core_adl_closes, METH_VARARGS,
     "adl_closes(engine, fund, perp, market, rows, sizes, notionals, kind, side, price) -> applied"},
    {"haircuts", (PyCFunction)Core_haircuts, METH_VARARGS,
     "haircuts(engine, dst, rows, amounts, markets, kind, reason_src, reason_dst, ref, insurance) -> applied"},
    {"ended", (PyCFunction)Core_ended, METH_NOARGS,
     "((client order id, filled in full, refused), ...): the liquidation orders the last run's last slot ended"},
    {"run", (PyCFunction)Core_run, METH_VARARGS,
     "run(engine, buf, off, end, source) -> offset of the first slot left to Python (source < 0: shard events)"},
    {NULL}};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "engine.native._hxrisk.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The risk engine's hot path (see the module docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
};

static PyObject *set_reservation_type(PyObject *self, PyObject *t) {
    Py_XSETREF(reservation_type, Py_NewRef(t));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_reservation_type", set_reservation_type, METH_O, "the class Ledger.find and orders_of return"},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_hxrisk", .m_doc = "The compiled risk core.", .m_size = -1,
    .m_methods = module_methods};

PyMODINIT_FUNC PyInit__hxrisk(void) {
    if (PyType_Ready(&LedgerType) < 0 || PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&LedgerType);
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Ledger", (PyObject *)&LedgerType) < 0 ||
        PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
