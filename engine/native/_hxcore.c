/*
 * _hxcore: the matching engine of one shard, compiled.
 *
 * The same deterministic state machine as engine/shard/matching_engine.py + book.py (the Python
 * twin is the specification; tests/engine/shard/test_native_engine.py holds this file to it, event
 * byte for event byte): 64-byte wire commands in, 64-byte wire events out, appended to one buffer.
 *
 * Why C: the Python engine spends its time in CPython's call, dict and allocation machinery
 * (~4 us per order on this interpreter); here an order costs a few hundred nanoseconds, and a ring
 * batch is handled in one call with no Python object per order or per event.
 *
 * Structure per market:
 *   orders  a pool of Order records (free list), linked into their level's FIFO queue (prev/next)
 *           and into their account's list (aprev/anext);
 *   levels  a pool of Level records; per side a sorted array of keys (price for bids, -price for
 *           asks, ascending, so the best level of either side is the last) and level indexes;
 *   maps    open-addressing hash maps (linear probing, backward-shift deletion) keyed by two u64:
 *           order id -> order, (account, client order id) -> order, account -> first order,
 *           and the same two id maps for stop orders waiting for their trigger;
 *   stops   a pool of waiting stop/take-profit records with an unordered index array;
 *   gtt     a binary min-heap of (expire_ns, order id), cleaned lazily like the Python heap.
 * All arithmetic that can overflow int64 (notional, band) is done in __int128. Aggregates are bounded
 * like the twin's (a level's total <= the market's max_level <= 2^62, checked before anything rests;
 * an account's live orders <= max_open, counted in the per-account map slots), and a level total is
 * added with __builtin_add_overflow as a last guard.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- wire constants: generated from engine/wire/layout.py, engine/types/enums.py and fixed.py ---- */
#include "hx_wire.h"

#define REST (-1) /* "rest the remainder" where a CancelReason is expected */

typedef __int128 i128;
static const i128 I128_MAX = (i128)(((unsigned __int128)1 << 127) - 1);

/* ---- records ---------------------------------------------------------------------------------- */
typedef struct {
    uint64_t oid, coid, expire;
    int64_t price, open, filled, trigger;
    uint32_t account;
    uint8_t side, tif, type, flags;
    int32_t prev, next;   /* level FIFO (prev/next), or the free list (next) */
    int32_t level;        /* level index (book orders) or position in the stop index (stops) */
    int32_t aprev, anext; /* account list (book orders only) */
} Order;

typedef struct {
    int64_t price, size;
    int32_t count, head, tail, next_free;
} Level;

typedef struct { uint64_t a, b; int32_t v, n; } Slot; /* n: 0 = empty slot, else a count (see map_find) */
typedef struct { Slot *s; uint32_t mask, n; } Map;

typedef struct { int64_t *keys; int32_t *lv; int32_t n, cap; } Side;
typedef struct { uint64_t expire, oid; } HeapItem;

typedef struct {
    uint32_t id;
    int64_t tick, lot, min_size, max_size, min_notional, max_price, band_bps;
    int status;
    int64_t mark;
    uint64_t last_oid, seq;
    int64_t bbo[4];
    Order *orders; int32_t ocap, ofree, ocount, init_cap;
    Level *levels; int32_t lcap, lfree;
    Side sides[2];
    Map by_oid, by_coid, by_account;
    Order *stops; int32_t scap, sfree;
    int32_t *stop_idx; int32_t nstops, stop_idx_cap;
    Map stop_by_oid, stop_by_coid, stop_by_account; /* stop_by_account: account -> (count in n) */
    int64_t max_level;  /* a level's total open size stays <= this (<= HX_MAX_LEVEL_TOTAL_LOTS) */
    int32_t max_open;   /* an account's live (resting + waiting) orders stay <= this */
    HeapItem *gtt; int32_t ngtt, gtt_cap;
} Market;

typedef struct {
    PyObject_HEAD
    Market *m; int32_t nm;
    uint64_t now;
    uint8_t *ev; size_t evlen, evcap;
    int oom;
} Core;

/* ---- little helpers ------------------------------------------------------------------------------ */
static void *xrealloc(Core *c, void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) { c->oom = 1; abort(); } /* no sane recovery from OOM inside a state transition */
    return q;
}

/* ---- hash map: two u64 keys -> int32 ----------------------------------------------------------- */
/* A slot is occupied when n != 0. Most maps keep n = 1; the per-account maps keep a count in it (the
   account's resting orders in by_account, its waiting stops in stop_by_account), so that the
   open-order cap costs no extra lookup on the matching path. */
static inline uint32_t hkey(uint64_t a, uint64_t b) {
    uint64_t h = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 29; h *= 0xBF58476D1CE4E5B9ULL; h ^= h >> 32;
    return (uint32_t)h;
}
static void map_init(Map *m, uint32_t cap) {
    /* malloc + memset rather than calloc: touch every page now, not on the matching path */
    m->s = malloc((size_t)cap * sizeof(Slot)); m->mask = cap - 1; m->n = 0;
    if (!m->s) abort();
    memset(m->s, 0, (size_t)cap * sizeof(Slot));
}
static void map_free(Map *m) { free(m->s); m->s = NULL; }
static Slot *map_find(const Map *m, uint64_t a, uint64_t b) {
    uint32_t i = hkey(a, b) & m->mask;
    for (;;) {
        Slot *s = &m->s[i];
        if (!s->n) return NULL;
        if (s->a == a && s->b == b) return s;
        i = (i + 1) & m->mask;
    }
}
static int32_t map_get(const Map *m, uint64_t a, uint64_t b) {
    const Slot *s = map_find(m, a, b);
    return s ? s->v : -1;
}
static inline int32_t map_count(const Map *m, uint64_t a, uint64_t b) {
    const Slot *s = map_find(m, a, b);
    return s ? s->n : 0;
}
static void map_grow(Map *m) {
    Slot *old = m->s; uint32_t cap = m->mask + 1;
    map_init(m, cap * 2);
    for (uint32_t i = 0; i < cap; i++) {
        if (!old[i].n) continue;
        uint32_t j = hkey(old[i].a, old[i].b) & m->mask;
        while (m->s[j].n) j = (j + 1) & m->mask;
        m->s[j] = old[i]; /* the whole slot: value and count */
        m->n++;
    }
    free(old);
}
/* the slot of (a, b), inserted (v = -1, n = 1, *fresh = 1) when absent */
static Slot *map_upsert(Map *m, uint64_t a, uint64_t b, int *fresh) {
    if ((m->n + 1) * 4 > (m->mask + 1) * 3) map_grow(m);
    uint32_t i = hkey(a, b) & m->mask;
    for (;;) {
        Slot *s = &m->s[i];
        if (!s->n) { s->a = a; s->b = b; s->v = -1; s->n = 1; m->n++; *fresh = 1; return s; }
        if (s->a == a && s->b == b) { *fresh = 0; return s; }
        i = (i + 1) & m->mask;
    }
}
static void map_put(Map *m, uint64_t a, uint64_t b, int32_t v) {
    int fresh;
    map_upsert(m, a, b, &fresh)->v = v;
}
static void map_del(Map *m, uint64_t a, uint64_t b) {
    uint32_t i = hkey(a, b) & m->mask;
    for (;;) {
        Slot *s = &m->s[i];
        if (!s->n) return;
        if (s->a == a && s->b == b) break;
        i = (i + 1) & m->mask;
    }
    /* backward-shift deletion: keep every probe chain unbroken */
    uint32_t j = i;
    for (;;) {
        m->s[i].n = 0;
        for (;;) {
            j = (j + 1) & m->mask;
            if (!m->s[j].n) { m->n--; return; }
            uint32_t k = hkey(m->s[j].a, m->s[j].b) & m->mask;
            /* can the entry at j move to the hole at i? only if its home k is not in (i, j] */
            if ((j > i) ? (k <= i || k > j) : (k <= i && k > j)) break;
        }
        m->s[i] = m->s[j];
        i = j;
    }
}
/* count (a, b) up by one, or down by one (removing it at zero) */
static void map_count_up(Map *m, uint64_t a, uint64_t b) {
    int fresh;
    Slot *s = map_upsert(m, a, b, &fresh);
    if (!fresh) s->n++;
}
static void map_count_down(Map *m, uint64_t a, uint64_t b) {
    Slot *s = map_find(m, a, b);
    if (s->n > 1) s->n--;
    else map_del(m, a, b);
}

/* ---- event emission ------------------------------------------------------------------------------ */
/* Every event is packed by its generated hx_put_<event> (hx_wire.h): arguments in wire order, which is
   the EventSink argument order of the Python twin. */
static inline uint8_t *ev_reserve(Core *c) {
    if (c->evlen + HX_SLOT_BYTES > c->evcap) {
        c->evcap = c->evcap ? c->evcap * 2 : 64 * HX_SLOT_BYTES;
        c->ev = xrealloc(c, c->ev, c->evcap);
    }
    uint8_t *p = c->ev + c->evlen;
    c->evlen += HX_SLOT_BYTES;
    return p;
}
/* EMIT(c, m, kind, fields...): market m's next event (seq + 1) of that kind */
#define EMIT(c, m, kind, ...) hx_put_##kind(ev_reserve(c), (m)->id, ++(m)->seq, __VA_ARGS__)
static Market *find_market(Core *c, uint32_t id);
static int reject(Core *c, uint32_t market, int command, uint64_t oid, uint64_t coid, uint32_t account,
                  int code) {
    Market *m = find_market(c, market);
    hx_put_rejected(ev_reserve(c), market, m ? m->seq : 0, oid, coid, c->now, account, (uint16_t)code,
                    (uint8_t)command);
    return code;
}

/* ---- pure checks (order_validator.py) ------------------------------------------------------------ */
static int is_triggered_by(int type, int side, int64_t trigger, int64_t mark) {
    if (type == HX_ORDER_TYPE_STOP_LIMIT || type == HX_ORDER_TYPE_STOP_MARKET)
        return side == 0 ? mark >= trigger : mark <= trigger;
    return side == 0 ? mark <= trigger : mark >= trigger;
}
static int check_status(int status, int post_only) {
    switch (status) {
    case HX_STATUS_OPEN: return HX_REJECT_OK;
    case HX_STATUS_POST_ONLY: return post_only ? HX_REJECT_OK : HX_REJECT_MARKET_POST_ONLY;
    case HX_STATUS_HALTED: return HX_REJECT_MARKET_HALTED;
    case HX_STATUS_CLOSED: return HX_REJECT_MARKET_CLOSED;
    default: return HX_REJECT_MARKET_RESOLVED;
    }
}
static int check_price_size(const Market *m, int64_t price, int64_t size) {
    if (price <= 0) return HX_REJECT_BAD_PRICE_TICK;
    if (size <= 0) return HX_REJECT_BAD_SIZE_LOT;
    i128 raw = (i128)price * size;
    if (raw > INT64_MAX) return HX_REJECT_NOTIONAL_OVERFLOW;
    i128 tl = (i128)m->tick * m->lot; /* both fit int64 and are positive: < 2^126 */
    if (raw > I128_MAX / tl) return HX_REJECT_NOTIONAL_OVERFLOW;
    i128 notional = raw * tl / HX_BASE_ATOMS_PER_UNIT;
    if (notional > INT64_MAX) return HX_REJECT_NOTIONAL_OVERFLOW;
    if (price > m->max_price) return HX_REJECT_BAD_PRICE_TICK;
    if (size < m->min_size) return HX_REJECT_SIZE_BELOW_MIN;
    if (size > m->max_size) return HX_REJECT_SIZE_ABOVE_MAX;
    if (notional < m->min_notional) return HX_REJECT_NOTIONAL_BELOW_MIN;
    return HX_REJECT_OK;
}
static int check_band(const Market *m, int64_t mark, int64_t price) {
    if (m->band_bps && mark > 0) {
        i128 d = (i128)price - mark;
        if (d < 0) d = -d;
        if (d * 10000 > (i128)m->band_bps * mark) return HX_REJECT_PRICE_OUTSIDE_BAND;
    }
    return HX_REJECT_OK;
}
#define STP_OF(flags) (((flags) & HX_FLAGS_STP_MASK) >> HX_FLAGS_STP_SHIFT)
static int check_new_order(const Market *m, uint64_t now, int side, int64_t price, int64_t size, int tif,
                           int type, int flags, int64_t trigger, uint64_t expire) {
    if (side != 0 && side != 1) return HX_REJECT_BAD_SIDE;
    if (type > HX_ORDER_TYPE_MAX) return HX_REJECT_BAD_ORDER_TYPE;
    if (tif > HX_TIF_MAX) return HX_REJECT_BAD_TIF;
    if ((flags & ~HX_FLAGS_KNOWN_BITS) || STP_OF(flags) > HX_STP_MAX) return HX_REJECT_BAD_FLAGS;
    int post_only = (flags & HX_FLAGS_POST_ONLY_BITS) != 0;
    if (hx_is_market_priced_order_type(type) && tif != HX_TIF_IOC && tif != HX_TIF_FOK) return HX_REJECT_BAD_TIF;
    if (post_only && (type != HX_ORDER_TYPE_LIMIT || tif == HX_TIF_IOC || tif == HX_TIF_FOK)) return HX_REJECT_BAD_FLAGS;
    int code = check_status(m->status, post_only);
    if (code) return code;
    code = check_price_size(m, price, size);
    if (code) return code;
    if (hx_is_stop_order_type(type)) {
        if (!(trigger > 0 && trigger <= m->max_price)) return HX_REJECT_BAD_TRIGGER_PRICE;
        if (m->mark > 0 && is_triggered_by(type, side, trigger, m->mark)) return HX_REJECT_BAD_TRIGGER_PRICE;
    } else if (trigger != 0) {
        return HX_REJECT_BAD_TRIGGER_PRICE;
    }
    if (tif == HX_TIF_GTT) {
        if (expire == 0) return HX_REJECT_BAD_EXPIRY;
        if (expire <= now) return HX_REJECT_EXPIRED;
    } else if (expire != 0) {
        return HX_REJECT_BAD_EXPIRY;
    }
    if (!hx_is_stop_order_type(type)) {
        code = check_band(m, m->mark, price);
        if (code) return code;
    }
    return HX_REJECT_OK;
}
static int check_amend(const Market *m, int64_t mark, int post_only, int64_t price, int64_t new_total,
                       int64_t filled) {
    int code = check_status(m->status, post_only);
    if (code) return code;
    if (new_total <= filled) return HX_REJECT_AMEND_BAD_SIZE;
    code = check_price_size(m, price, new_total);
    if (code) return code;
    return check_band(m, mark, price);
}

/* ---- pools ------------------------------------------------------------------------------------------ */
/* take a slot from a pool of Orders (live orders or stops), doubling it when the free list is empty */
static int32_t pool_take(Core *c, Order **pool, int32_t *cap, int32_t *free_head, int32_t first_cap) {
    if (*free_head < 0) {
        int32_t old = *cap, grown = old ? old * 2 : first_cap;
        *pool = xrealloc(c, *pool, (size_t)grown * sizeof(Order));
        for (int32_t i = old; i < grown; i++) (*pool)[i].next = i + 1 < grown ? i + 1 : -1;
        *free_head = old; *cap = grown;
    }
    int32_t i = *free_head;
    *free_head = (*pool)[i].next;
    return i;
}
static int32_t order_alloc(Core *c, Market *m) {
    m->ocount++;
    return pool_take(c, &m->orders, &m->ocap, &m->ofree, 1024);
}
static void order_release(Market *m, int32_t i) {
    m->orders[i].open = 0;
    m->orders[i].next = m->ofree;
    m->ofree = i;
    m->ocount--;
}
static int32_t level_alloc(Core *c, Market *m, int64_t price) {
    if (m->lfree < 0) {
        int32_t old = m->lcap, cap = old ? old * 2 : 256;
        m->levels = xrealloc(c, m->levels, (size_t)cap * sizeof(Level));
        for (int32_t i = old; i < cap; i++) m->levels[i].next_free = i + 1 < cap ? i + 1 : -1;
        m->lfree = old; m->lcap = cap;
    }
    int32_t i = m->lfree;
    Level *l = &m->levels[i];
    m->lfree = l->next_free;
    l->price = price; l->size = 0; l->count = 0; l->head = l->tail = -1;
    return i;
}
static int32_t stop_alloc(Core *c, Market *m) { return pool_take(c, &m->stops, &m->scap, &m->sfree, 64); }

/* ---- sides: sorted keys, best last ------------------------------------------------------------------ */
static inline int64_t key_of(int side, int64_t price) { return side == 0 ? price : -price; }
/* first position whose key >= k */
static int32_t side_lower_bound(const Side *s, int64_t k) {
    int32_t lo = 0, hi = s->n;
    /* levels cluster at the touch: try the top first */
    if (hi && s->keys[hi - 1] < k) return hi;
    while (lo < hi) {
        int32_t mid = (lo + hi) >> 1;
        if (s->keys[mid] < k) lo = mid + 1; else hi = mid;
    }
    return lo;
}
static int32_t side_find(const Side *s, int64_t k) {
    int32_t i = side_lower_bound(s, k);
    return (i < s->n && s->keys[i] == k) ? i : -1;
}
static void side_insert(Core *c, Side *s, int32_t pos, int64_t k, int32_t lv) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->keys = xrealloc(c, s->keys, (size_t)s->cap * sizeof(int64_t));
        s->lv = xrealloc(c, s->lv, (size_t)s->cap * sizeof(int32_t));
    }
    if (pos < s->n) {
        memmove(s->keys + pos + 1, s->keys + pos, (size_t)(s->n - pos) * sizeof(int64_t));
        memmove(s->lv + pos + 1, s->lv + pos, (size_t)(s->n - pos) * sizeof(int32_t));
    }
    s->keys[pos] = k; s->lv[pos] = lv; s->n++;
}
static void side_remove_at(Side *s, int32_t pos) {
    if (pos < s->n - 1) {
        memmove(s->keys + pos, s->keys + pos + 1, (size_t)(s->n - pos - 1) * sizeof(int64_t));
        memmove(s->lv + pos, s->lv + pos + 1, (size_t)(s->n - pos - 1) * sizeof(int32_t));
    }
    s->n--;
}
/* remove the (now empty) level with key k and return it to the pool */
static void level_drop(Market *m, int side, int64_t k) {
    Side *s = &m->sides[side];
    int32_t pos = (s->n && s->keys[s->n - 1] == k) ? s->n - 1 : side_find(s, k);
    int32_t li = s->lv[pos];
    side_remove_at(s, pos);
    m->levels[li].next_free = m->lfree;
    m->lfree = li;
}

/* ---- book queries -------------------------------------------------------------------------------- */
static inline int would_cross(const Market *m, int side, int64_t price) {
    const Side *o = &m->sides[side ^ 1];
    return o->n && o->keys[o->n - 1] >= key_of(side ^ 1, price); /* in the opposite side's key space */
}
static inline int64_t best_price(const Market *m, int side) {
    const Side *s = &m->sides[side];
    if (!s->n) return 0;
    return m->levels[s->lv[s->n - 1]].price;
}
/* open size resting at (side, price) (0: no such level) */
static int64_t level_size_at(const Market *m, int side, int64_t price) {
    const Side *s = &m->sides[side];
    int32_t pos = side_find(s, key_of(side, price));
    return pos >= 0 ? m->levels[s->lv[pos]].size : 0;
}
/* may `size` more lots rest at (side, price)? `except` lots already there are leaving first. Both
   the level total and the bound are <= 2^62, so the subtraction cannot overflow. */
static int level_room(const Market *m, int side, int64_t price, int64_t size, int64_t except) {
    return size <= m->max_level - (level_size_at(m, side, price) - except);
}
/* an account's live orders in the market: resting (by_account's count) and waiting (stop_by_account) */
static int32_t open_count(const Market *m, uint32_t account) {
    return map_count(&m->by_account, account, 0) + (m->nstops ? map_count(&m->stop_by_account, account, 0) : 0);
}
static int fillable(const Market *m, int side, int64_t price, int64_t size, uint32_t account, int stp) {
    const Side *o = &m->sides[side ^ 1];
    int64_t lk = key_of(side ^ 1, price);
    i128 need = size;
    int own_here = stp && map_get(&m->by_account, account, 0) >= 0;
    for (int32_t i = o->n - 1; i >= 0; i--) {
        if (o->keys[i] < lk) return 0;
        const Level *l = &m->levels[o->lv[i]];
        if (!own_here) {
            need -= l->size;
            if (need <= 0) return 1;
            continue;
        }
        for (int32_t j = l->head; j >= 0; j = m->orders[j].next) {
            const Order *x = &m->orders[j];
            if (x->account == account) {
                if (stp == HX_STP_CANCEL_OLDEST) continue;
                return 0;
            }
            need -= x->open;
            if (need <= 0) return 1;
        }
    }
    return 0;
}
static int32_t find_by_coid(const Market *m, uint32_t account, uint64_t coid) {
    return coid ? map_get(&m->by_coid, account, coid) : -1;
}

static void flush_bbo(Core *c, Market *m) {
    int64_t b[4] = {0, 0, 0, 0};
    for (int side = 0; side < 2; side++) {
        const Side *s = &m->sides[side];
        if (s->n) {
            const Level *l = &m->levels[s->lv[s->n - 1]];
            b[side * 2] = l->price; b[side * 2 + 1] = l->size;
        }
    }
    if (memcmp(b, m->bbo, sizeof b) != 0) {
        memcpy(m->bbo, b, sizeof b);
        EMIT(c, m, bbo, b[0], b[1], b[2], b[3], c->now);
    }
}

/* ---- book mutations -------------------------------------------------------------------------------- */
/* by_account: account -> its newest resting order (the head of its list), n = how many it has */
static void index_order(Market *m, int32_t i) {
    Order *o = &m->orders[i];
    map_put(&m->by_oid, o->oid, 0, i);
    if (o->coid) map_put(&m->by_coid, o->account, o->coid, i);
    int fresh;
    Slot *s = map_upsert(&m->by_account, o->account, 0, &fresh);
    o->aprev = -1;
    o->anext = fresh ? -1 : s->v;
    if (!fresh) { m->orders[s->v].aprev = i; s->n++; }
    s->v = i;
}
static void unindex_order(Market *m, int32_t i) {
    Order *o = &m->orders[i];
    map_del(&m->by_oid, o->oid, 0);
    if (o->coid) map_del(&m->by_coid, o->account, o->coid);
    if (o->aprev >= 0 || o->anext >= 0) {
        Slot *s = map_find(&m->by_account, o->account, 0);
        s->n--;
        if (o->aprev >= 0) m->orders[o->aprev].anext = o->anext;
        else s->v = o->anext;
    } else {
        map_del(&m->by_account, o->account, 0);
    }
    if (o->anext >= 0) m->orders[o->anext].aprev = o->aprev;
}
static void queue_unlink(Market *m, Level *l, int32_t i) {
    Order *o = &m->orders[i];
    if (o->prev >= 0) m->orders[o->prev].next = o->next; else l->head = o->next;
    if (o->next >= 0) m->orders[o->next].prev = o->prev; else l->tail = o->prev;
}
static void queue_append(Market *m, Level *l, int32_t i) {
    Order *o = &m->orders[i];
    o->prev = l->tail; o->next = -1;
    if (l->tail >= 0) m->orders[l->tail].next = i; else l->head = i;
    l->tail = i;
}
/* add a resting order at the back of its level (creating the level); returns the level index */
static int32_t rest_order(Core *c, Market *m, int32_t i) {
    Order *o = &m->orders[i];
    int side = o->side;
    int64_t k = key_of(side, o->price);
    Side *s = &m->sides[side];
    int32_t li;
    if (s->n && s->keys[s->n - 1] == k) {
        li = s->lv[s->n - 1];
    } else {
        int32_t pos = side_lower_bound(s, k);
        if (pos < s->n && s->keys[pos] == k) {
            li = s->lv[pos];
        } else {
            li = level_alloc(c, m, o->price);
            side_insert(c, s, pos, k, li);
        }
    }
    o = &m->orders[i];
    Level *l = &m->levels[li];
    o->level = li;
    queue_append(m, l, i);
    /* checked: every path that rests an order first checks the level's room (level_room), and a
       restore checks the bound, so this cannot overflow; if it ever did, stop rather than corrupt */
    if (__builtin_add_overflow(l->size, o->open, &l->size)) abort();
    l->count++;
    index_order(m, i);
    return li;
}
/* take a resting order out of its level and the indexes (no event); the level may be dropped.
   Reports the level's size and count afterwards. The order's slot is released. */
static void detach(Market *m, int32_t i, int64_t *lsize, int32_t *lcount) {
    Order *o = &m->orders[i];
    Level *l = &m->levels[o->level];
    l->size -= o->open;
    l->count--;
    queue_unlink(m, l, i);
    unindex_order(m, i);
    *lsize = l->size; *lcount = l->count;
    if (!l->count) level_drop(m, o->side, key_of(o->side, o->price));
    order_release(m, i);
}

/* Sweep the opposite side while it crosses; returns the open size left (0 when STP cancelled the
   taker, whose CANCELLED is emitted here) and adds the lots traded to *traded. */
static int64_t match(Core *c, Market *m, uint64_t oid, uint64_t coid, uint32_t account, int side,
                     int64_t price, int64_t rem, int stp, int64_t *traded) {
    int oside = side ^ 1;
    Side *s = &m->sides[oside];
    int64_t lk = key_of(oside, price);
    int stop = 0;
    while (s->n) {
        int64_t k = s->keys[s->n - 1];
        if (k < lk) break;
        int32_t li = s->lv[s->n - 1];
        Level *l = &m->levels[li];
        int64_t px = l->price, size0 = l->size;
        while (rem && l->count) {
            int32_t mi = l->head;
            Order *mk = &m->orders[mi];
            int64_t mo = mk->open;
            if (stp && mk->account == account) {
                if (stp == HX_STP_CANCEL_NEWEST) { stop = 1; break; }
                if (stp == HX_STP_CANCEL_OLDEST || stp == HX_STP_CANCEL_BOTH) {
                    uint64_t moid = mk->oid, mcoid = mk->coid; uint32_t macct = mk->account;
                    l->size -= mo; l->count--;
                    queue_unlink(m, l, mi); unindex_order(m, mi); order_release(m, mi);
                    EMIT(c, m, cancelled, moid, mcoid, mo, c->now, macct, HX_CANCEL_SELF_TRADE, oside);
                    if (stp == HX_STP_CANCEL_BOTH) { stop = 1; break; }
                    continue;
                }
                /* DECREMENT: both lose the overlap, no trade */
                int64_t d = rem < mo ? rem : mo;
                rem -= d; mo -= d;
                mk->open = mo;
                l->size -= d;
                if (mo) {
                    EMIT(c, m, amended, mk->oid, mk->coid, px, mo, mk->account, 1);
                } else {
                    uint64_t moid = mk->oid, mcoid = mk->coid; uint32_t macct = mk->account;
                    l->count--;
                    queue_unlink(m, l, mi); unindex_order(m, mi); order_release(m, mi);
                    EMIT(c, m, cancelled, moid, mcoid, d, c->now, macct, HX_CANCEL_SELF_TRADE, oside);
                }
                if (rem) EMIT(c, m, amended, oid, coid, price, rem, account, 1);
                else EMIT(c, m, cancelled, oid, coid, d, c->now, account, HX_CANCEL_SELF_TRADE, side);
                continue;
            }
            int64_t t;
            if (rem < mo) {
                t = rem;
                mk->open = mo - t; mk->filled += t;
                rem = 0; l->size -= t; *traded += t;
                EMIT(c, m, fill, oid, mk->oid, px, t, account, mk->account, side, 1);
            } else {
                t = mo;
                rem -= mo;
                uint64_t moid = mk->oid; uint32_t macct = mk->account;
                l->size -= mo; l->count--; *traded += mo;
                queue_unlink(m, l, mi); unindex_order(m, mi); order_release(m, mi);
                EMIT(c, m, fill, oid, moid, px, t, account, macct, side, rem ? 2 : 3);
            }
            EMIT(c, m, trade, px, t, c->now, side);
        }
        if (l->size != size0) EMIT(c, m, l2_delta, px, l->size, l->count, oside);
        if (!l->count) {
            s->n--;
            l->next_free = m->lfree; m->lfree = li;
        }
        if (stop || !rem) break;
    }
    if (stop && rem) {
        EMIT(c, m, cancelled, oid, coid, rem, c->now, account, HX_CANCEL_SELF_TRADE, side);
        rem = 0;
    }
    return rem;
}

/* Accept (ACCEPTED when accept), match, then rest the remainder (reason REST) or cancel it with
   that reason; BBO last. Returns DUPLICATE_CLIENT_ORDER_ID with nothing changed, else 0. */
static int submit(Core *c, Market *m, uint64_t oid, uint64_t coid, uint32_t account, int side, int64_t price,
                  int64_t size, int tif, int type, int flags, uint64_t expire, int reason, int64_t filled,
                  int accept) {
    if (coid && find_by_coid(m, account, coid) >= 0) return HX_REJECT_DUPLICATE_CLIENT_ORDER_ID;
    if (accept) EMIT(c, m, accepted, oid, coid, price, size, c->now, account, side, tif, type, flags);
    if (would_cross(m, side, price)) {
        int64_t traded = 0;
        size = match(c, m, oid, coid, account, side, price, size, STP_OF(flags), &traded);
        filled += traded;
        if (!size) { flush_bbo(c, m); return 0; }
    }
    if (reason >= 0) {
        EMIT(c, m, cancelled, oid, coid, size, c->now, account, reason, side);
        flush_bbo(c, m);
        return 0;
    }
    int32_t i = order_alloc(c, m);
    Order *o = &m->orders[i];
    o->oid = oid; o->coid = coid; o->expire = expire; o->price = price; o->open = size;
    o->filled = filled; o->trigger = 0; o->account = account; o->side = (uint8_t)side;
    o->tif = (uint8_t)tif; o->type = 0; o->flags = (uint8_t)flags;
    int32_t li = rest_order(c, m, i);
    Level *l = &m->levels[li];
    EMIT(c, m, l2_delta, price, l->size, l->count, side);
    flush_bbo(c, m);
    return 0;
}

/* cancel a resting order: CANCELLED (its open size), L2 of its level, BBO */
static void book_cancel(Core *c, Market *m, int32_t i, int reason) {
    Order o = m->orders[i];
    int64_t lsize; int32_t lcount;
    detach(m, i, &lsize, &lcount);
    EMIT(c, m, cancelled, o.oid, o.coid, o.open, c->now, o.account, reason, o.side);
    EMIT(c, m, l2_delta, o.price, lsize, lcount, o.side);
    flush_bbo(c, m);
}

typedef struct { int side; int64_t price; } Touched;
static int touched_cmp(const void *a, const void *b) {
    const Touched *x = a, *y = b;
    if (x->side != y->side) return x->side - y->side;
    return (x->price > y->price) - (x->price < y->price);
}
static Order *sort_base;
static int idx_oid_cmp(const void *a, const void *b) {
    uint64_t x = sort_base[*(const int32_t *)a].oid, y = sort_base[*(const int32_t *)b].oid;
    return (x > y) - (x < y);
}
static void sort_by_oid(Order *base, int32_t *idx, int32_t n) {
    sort_base = base; /* single-threaded under the GIL */
    qsort(idx, (size_t)n, sizeof(int32_t), idx_oid_cmp);
}

/* cancel the orders idx[0..n) in that order, then one L2 per touched level by (side, price), BBO */
static void cancel_many(Core *c, Market *m, int32_t *idx, int32_t n, int reason) {
    Touched *t = malloc((size_t)(n ? n : 1) * sizeof(Touched));
    if (!t) abort();
    for (int32_t k = 0; k < n; k++) {
        Order o = m->orders[idx[k]];
        int64_t lsize; int32_t lcount;
        detach(m, idx[k], &lsize, &lcount);
        t[k].side = o.side; t[k].price = o.price;
        EMIT(c, m, cancelled, o.oid, o.coid, o.open, c->now, o.account, reason, o.side);
    }
    qsort(t, (size_t)n, sizeof(Touched), touched_cmp);
    for (int32_t k = 0; k < n; k++) {
        if (k && t[k].side == t[k - 1].side && t[k].price == t[k - 1].price) continue;
        const Side *s = &m->sides[t[k].side];
        int32_t pos = side_find(s, key_of(t[k].side, t[k].price));
        if (pos >= 0) {
            const Level *l = &m->levels[s->lv[pos]];
            EMIT(c, m, l2_delta, t[k].price, l->size, l->count, t[k].side);
        } else {
            EMIT(c, m, l2_delta, t[k].price, 0, 0, t[k].side);
        }
    }
    free(t);
    flush_bbo(c, m);
}

/* ---- stops ----------------------------------------------------------------------------------------- */
static void stop_unindex(Market *m, int32_t si) {
    Order *s = &m->stops[si];
    map_del(&m->stop_by_oid, s->oid, 0);
    if (s->coid) map_del(&m->stop_by_coid, s->account, s->coid);
    map_count_down(&m->stop_by_account, s->account, 0);
    int32_t pos = s->level, last = m->stop_idx[m->nstops - 1];
    m->stop_idx[pos] = last;
    m->stops[last].level = pos;
    m->nstops--;
    s->next = m->sfree;
    m->sfree = si;
}
static int32_t stop_add(Core *c, Market *m, const Order *src) {
    int32_t si = stop_alloc(c, m);
    m->stops[si] = *src;
    if (m->nstops == m->stop_idx_cap) {
        m->stop_idx_cap = m->stop_idx_cap ? m->stop_idx_cap * 2 : 64;
        m->stop_idx = xrealloc(c, m->stop_idx, (size_t)m->stop_idx_cap * sizeof(int32_t));
    }
    m->stops[si].level = m->nstops;
    m->stop_idx[m->nstops++] = si;
    map_put(&m->stop_by_oid, src->oid, 0, si);
    if (src->coid) map_put(&m->stop_by_coid, src->account, src->coid, si);
    map_count_up(&m->stop_by_account, src->account, 0);
    return si;
}
static void drop_stop(Core *c, Market *m, int32_t si, int reason) {
    Order s = m->stops[si];
    stop_unindex(m, si);
    EMIT(c, m, cancelled, s.oid, s.coid, s.open, c->now, s.account, reason, s.side);
}
/* the market's stops (optionally only one account's), sorted by order id; caller frees */
static int32_t *stops_sorted(Market *m, int only_account, uint32_t account, int32_t *n_out) {
    int32_t *idx = malloc((size_t)(m->nstops ? m->nstops : 1) * sizeof(int32_t));
    if (!idx) abort();
    int32_t n = 0;
    for (int32_t k = 0; k < m->nstops; k++) {
        int32_t si = m->stop_idx[k];
        if (!only_account || m->stops[si].account == account) idx[n++] = si;
    }
    sort_by_oid(m->stops, idx, n);
    *n_out = n;
    return idx;
}

/* ---- GTT heap -------------------------------------------------------------------------------------- */
static inline int heap_less(const HeapItem *a, const HeapItem *b) {
    return a->expire < b->expire || (a->expire == b->expire && a->oid < b->oid);
}
static void heap_push(Core *c, Market *m, uint64_t expire, uint64_t oid) {
    if (m->ngtt == m->gtt_cap) {
        m->gtt_cap = m->gtt_cap ? m->gtt_cap * 2 : 64;
        m->gtt = xrealloc(c, m->gtt, (size_t)m->gtt_cap * sizeof(HeapItem));
    }
    int32_t i = m->ngtt++;
    HeapItem x = {expire, oid};
    while (i > 0) {
        int32_t p = (i - 1) >> 1;
        if (!heap_less(&x, &m->gtt[p])) break;
        m->gtt[i] = m->gtt[p];
        i = p;
    }
    m->gtt[i] = x;
}
static HeapItem heap_pop(Market *m) {
    HeapItem top = m->gtt[0], x = m->gtt[--m->ngtt];
    int32_t i = 0, n = m->ngtt;
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, best = i;
        const HeapItem *bp = &x;
        if (l < n && heap_less(&m->gtt[l], bp)) { best = l; bp = &m->gtt[l]; }
        if (r < n && heap_less(&m->gtt[r], bp)) { best = r; }
        if (best == i) break;
        m->gtt[i] = m->gtt[best];
        i = best;
    }
    if (n) m->gtt[i] = x;
    return top;
}

/* ---- engine commands ----------------------------------------------------------------------------- */
static Market *find_market(Core *c, uint32_t id) {
    int32_t lo = 0, hi = c->nm - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) >> 1;
        if (c->m[mid].id == id) return &c->m[mid];
        if (c->m[mid].id < id) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static int place(Core *c, uint32_t mid, uint64_t oid, uint64_t coid, uint32_t account, int side,
                 int64_t price, int64_t size, int tif, int type, int flags, int64_t trigger, uint64_t expire) {
    Market *m = find_market(c, mid);
    if (!m) return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_UNKNOWN_MARKET);
    int code = check_new_order(m, c->now, side, price, size, tif, type, flags, trigger, expire);
    if (code) return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, code);
    if (oid <= m->last_oid) {
        if (oid) return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_DUPLICATE_ORDER_ID);
        oid = m->last_oid + 1;
    }
    /* an order that would rest or wait counts against the account's cap of live orders */
    if ((type >= HX_ORDER_TYPE_STOP_LIMIT || (type == HX_ORDER_TYPE_LIMIT && (tif == HX_TIF_GTC || tif == HX_TIF_GTT)))
        && open_count(m, account) >= m->max_open)
        return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_TOO_MANY_OPEN_ORDERS);
    if (type >= HX_ORDER_TYPE_STOP_LIMIT) { /* stop / take-profit: wait for the trigger */
        if (coid && (find_by_coid(m, account, coid) >= 0 || map_get(&m->stop_by_coid, account, coid) >= 0))
            return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_DUPLICATE_CLIENT_ORDER_ID);
        m->last_oid = oid;
        Order s;
        memset(&s, 0, sizeof s);
        s.oid = oid; s.account = account; s.side = (uint8_t)side; s.price = price; s.open = size;
        s.filled = 0; s.coid = coid; s.tif = (uint8_t)tif; s.type = (uint8_t)type; s.flags = (uint8_t)flags;
        s.expire = expire; s.trigger = trigger;
        stop_add(c, m, &s);
        if (tif == HX_TIF_GTT) heap_push(c, m, expire, oid);
        EMIT(c, m, accepted, oid, coid, price, size, c->now, account, side, tif, type, flags);
        return 0;
    }
    if (coid && m->stop_by_coid.n && map_get(&m->stop_by_coid, account, coid) >= 0)
        return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_DUPLICATE_CLIENT_ORDER_ID);
    int reason = (tif == HX_TIF_GTC || tif == HX_TIF_GTT) ? REST : HX_CANCEL_IOC_REMAINDER;
    if ((flags & HX_FLAGS_POST_ONLY_BITS) || type || tif == HX_TIF_FOK) {
        if (coid && find_by_coid(m, account, coid) >= 0)
            return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_DUPLICATE_CLIENT_ORDER_ID);
        if ((flags & HX_FLAGS_POST_ONLY_BITS) && would_cross(m, side, price)) {
            if (!(flags & HX_FLAG_POST_ONLY_SLIDE)) return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_POST_ONLY_WOULD_TAKE);
            price = side == 0 ? best_price(m, 1) - 1 : best_price(m, 0) + 1;
            if (!(price > 0 && price <= m->max_price))
                return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_POST_ONLY_WOULD_TAKE);
        }
        if (type) { /* MARKET: price is the worst acceptable price */
            if (!would_cross(m, side, price)) return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_NO_LIQUIDITY);
            reason = HX_CANCEL_MARKET_NO_LIQUIDITY;
        }
        if (tif == HX_TIF_FOK) {
            if (!fillable(m, side, price, size, account, STP_OF(flags)))
                return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_FOK_NOT_FILLABLE);
            reason = HX_CANCEL_FOK_UNFILLED;
        }
    }
    if (reason == REST && !level_room(m, side, price, size, 0))
        return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, HX_REJECT_LEVEL_FULL);
    code = submit(c, m, oid, coid, account, side, price, size, tif, type, flags, expire, reason, 0, 1);
    if (code) return reject(c, mid, HX_MSG_NEW_ORDER, oid, coid, account, code);
    m->last_oid = oid;
    if (tif == HX_TIF_GTT) heap_push(c, m, expire, oid);
    return 0;
}

/* a live order by id or by (account, client id): *is_stop tells which pool the index is in */
static int32_t find_live(Market *m, uint64_t oid, uint64_t coid, uint32_t account, int *is_stop) {
    int32_t i;
    *is_stop = 0;
    if (oid) {
        i = map_get(&m->by_oid, oid, 0);
        if (i >= 0) return i;
        *is_stop = 1;
        return map_get(&m->stop_by_oid, oid, 0);
    }
    i = find_by_coid(m, account, coid);
    if (i >= 0) return i;
    *is_stop = 1;
    return coid ? map_get(&m->stop_by_coid, account, coid) : -1;
}

static int cancel(Core *c, uint32_t mid, uint64_t oid, uint64_t coid, uint32_t account) {
    Market *m = find_market(c, mid);
    if (!m) return reject(c, mid, HX_MSG_CANCEL, oid, coid, account, HX_REJECT_UNKNOWN_MARKET);
    if (oid) {
        int32_t i = map_get(&m->by_oid, oid, 0);
        if (i >= 0) {  /* another account's order is unknown to this one (matching_engine.py) */
            if (m->orders[i].account != account)
                return reject(c, mid, HX_MSG_CANCEL, oid, coid, account, HX_REJECT_UNKNOWN_ORDER);
            book_cancel(c, m, i, HX_CANCEL_USER);
            return 0;
        }
        if (!m->nstops) return reject(c, mid, HX_MSG_CANCEL, oid, coid, account, HX_REJECT_UNKNOWN_ORDER);
    }
    int is_stop;
    int32_t i = find_live(m, oid, coid, account, &is_stop);
    if (i < 0) return reject(c, mid, HX_MSG_CANCEL, oid, coid, account, HX_REJECT_UNKNOWN_ORDER);
    Order *o = is_stop ? &m->stops[i] : &m->orders[i];
    if (o->account != account) return reject(c, mid, HX_MSG_CANCEL, oid, coid, account, HX_REJECT_UNKNOWN_ORDER);
    if (is_stop) drop_stop(c, m, i, HX_CANCEL_USER);
    else book_cancel(c, m, i, HX_CANCEL_USER);
    return 0;
}

static int amend(Core *c, uint32_t mid, uint64_t oid_in, uint64_t coid_in, uint32_t account, int64_t price,
                 int64_t size) {
    Market *m = find_market(c, mid);
    if (!m) return reject(c, mid, HX_MSG_AMEND, oid_in, coid_in, account, HX_REJECT_UNKNOWN_MARKET);
    int is_stop;
    int32_t i = find_live(m, oid_in, coid_in, account, &is_stop);
    if (i < 0) return reject(c, mid, HX_MSG_AMEND, oid_in, coid_in, account, HX_REJECT_UNKNOWN_ORDER);
    Order *o = is_stop ? &m->stops[i] : &m->orders[i];
    if (o->account != account) return reject(c, mid, HX_MSG_AMEND, oid_in, coid_in, account, HX_REJECT_UNKNOWN_ORDER);
    uint64_t oid = o->oid, coid = o->coid;
    int64_t old_price = o->price, filled = o->filled, old_open = o->open;
    int64_t new_price = price ? price : old_price;
    i128 new_total = size ? (i128)size : (i128)old_open + filled;
    if (new_price == old_price && new_total == (i128)old_open + filled)
        return reject(c, mid, HX_MSG_AMEND, oid, coid, account, HX_REJECT_AMEND_NO_CHANGE);
    int post_only = (o->flags & HX_FLAGS_POST_ONLY_BITS) || m->status == HX_STATUS_POST_ONLY;
    /* a total beyond int64 can only come from size (old_open + filled fits): size is int64 */
    int code = check_amend(m, is_stop ? 0 : m->mark, post_only, new_price, (int64_t)new_total, filled);
    if (code) return reject(c, mid, HX_MSG_AMEND, oid, coid, account, code);
    int64_t new_open = (int64_t)new_total - filled;
    int side = o->side;
    if (is_stop) {
        o->price = new_price; o->open = new_open;
        EMIT(c, m, amended, oid, coid, new_price, new_open, account, 1);
    } else if (new_price == old_price && new_open < old_open) {
        Level *l = &m->levels[o->level];
        l->size -= old_open - new_open;
        o->open = new_open;
        EMIT(c, m, amended, oid, coid, old_price, new_open, account, 1);
        EMIT(c, m, l2_delta, old_price, l->size, l->count, side);
        flush_bbo(c, m);
    } else {
        if (post_only && would_cross(m, side, new_price))
            return reject(c, mid, HX_MSG_AMEND, oid, coid, account,
                          (o->flags & HX_FLAGS_POST_ONLY_BITS) ? HX_REJECT_POST_ONLY_WOULD_TAKE : HX_REJECT_MARKET_POST_ONLY);
        /* it leaves its level (same price: the same level) before it rejoins one */
        if (!level_room(m, side, new_price, new_open, new_price == old_price ? old_open : 0))
            return reject(c, mid, HX_MSG_AMEND, oid, coid, account, HX_REJECT_LEVEL_FULL);
        Order keep = *o;
        EMIT(c, m, amended, oid, coid, new_price, new_open, account, 0);
        int64_t lsize; int32_t lcount;
        detach(m, i, &lsize, &lcount);
        EMIT(c, m, l2_delta, old_price, lsize, lcount, side);
        submit(c, m, oid, coid, account, side, new_price, new_open, keep.tif, 0, keep.flags, keep.expire, REST,
               filled, 0);
    }
    return 0;
}

/* the account's resting orders in order-id order; caller frees */
static int32_t *orders_of(Market *m, uint32_t account, int32_t *n_out) {
    int32_t n = 0;
    for (int32_t i = map_get(&m->by_account, account, 0); i >= 0; i = m->orders[i].anext) n++;
    int32_t *idx = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!idx) abort();
    n = 0;
    for (int32_t i = map_get(&m->by_account, account, 0); i >= 0; i = m->orders[i].anext) idx[n++] = i;
    sort_by_oid(m->orders, idx, n);
    *n_out = n;
    return idx;
}

static void cancel_all_in(Core *c, Market *m, uint32_t account) {
    int32_t n;
    int32_t *mine = orders_of(m, account, &n);
    if (n) cancel_many(c, m, mine, n, HX_CANCEL_CANCEL_ALL);
    free(mine);
    if (m->nstops) {
        int32_t *st = stops_sorted(m, 1, account, &n);
        for (int32_t k = 0; k < n; k++) drop_stop(c, m, st[k], HX_CANCEL_CANCEL_ALL);
        free(st);
    }
}

static int cancel_all(Core *c, uint32_t mid, uint32_t account) {
    if (mid == HX_ALL_MARKETS) {
        for (int32_t k = 0; k < c->nm; k++) cancel_all_in(c, &c->m[k], account);
        return 0;
    }
    Market *m = find_market(c, mid);
    if (!m) return reject(c, mid, HX_MSG_CANCEL_ALL, 0, 0, account, HX_REJECT_UNKNOWN_MARKET);
    cancel_all_in(c, m, account);
    return 0;
}

static void fire(Core *c, Market *m, int32_t si, int64_t mark) {
    Order s = m->stops[si];
    stop_unindex(m, si);
    EMIT(c, m, triggered, s.oid, s.coid, mark, s.account);
    int is_market = s.type == HX_ORDER_TYPE_STOP_MARKET || s.type == HX_ORDER_TYPE_TAKE_PROFIT_MARKET;
    int stp = STP_OF(s.flags);
    int cancel_reason = -1;
    if (check_band(m, mark, s.price)) cancel_reason = HX_CANCEL_PRICE_BAND;
    else if (is_market && !would_cross(m, s.side, s.price)) cancel_reason = HX_CANCEL_MARKET_NO_LIQUIDITY;
    else if (s.tif == HX_TIF_FOK && !fillable(m, s.side, s.price, s.open, s.account, stp))
        cancel_reason = HX_CANCEL_FOK_UNFILLED;
    else if (!is_market && (s.tif == HX_TIF_GTC || s.tif == HX_TIF_GTT) && !level_room(m, s.side, s.price, s.open, 0))
        cancel_reason = HX_CANCEL_LEVEL_FULL; /* it would rest on a full level */
    if (cancel_reason >= 0) {
        EMIT(c, m, cancelled, s.oid, s.coid, s.open, c->now, s.account, cancel_reason, s.side);
        return;
    }
    int reason;
    if (is_market) reason = s.tif == HX_TIF_IOC ? HX_CANCEL_MARKET_NO_LIQUIDITY : HX_CANCEL_FOK_UNFILLED;
    else if (s.tif == HX_TIF_GTC || s.tif == HX_TIF_GTT) reason = REST;
    else reason = s.tif == HX_TIF_IOC ? HX_CANCEL_IOC_REMAINDER : HX_CANCEL_FOK_UNFILLED;
    submit(c, m, s.oid, s.coid, s.account, s.side, s.price, s.open, s.tif, is_market ? HX_ORDER_TYPE_MARKET : HX_ORDER_TYPE_LIMIT,
           s.flags, s.expire, reason, 0, 0);
}

static int set_mark(Core *c, uint32_t mid, int64_t price) {
    Market *m = find_market(c, mid);
    if (!m) return reject(c, mid, HX_MSG_MARK_PRICE, 0, 0, 0, HX_REJECT_UNKNOWN_MARKET);
    if (!(price > 0 && price <= m->max_price)) return reject(c, mid, HX_MSG_MARK_PRICE, 0, 0, 0, HX_REJECT_BAD_PRICE_TICK);
    m->mark = price;
    if (m->nstops && m->status == HX_STATUS_OPEN) {
        int32_t n, f = 0;
        int32_t *all = stops_sorted(m, 0, 0, &n);
        uint64_t *fired = malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
        if (!fired) abort();
        for (int32_t k = 0; k < n; k++) {
            const Order *s = &m->stops[all[k]];
            if (is_triggered_by(s->type, s->side, s->trigger, price)) fired[f++] = s->oid;
        }
        free(all);
        for (int32_t k = 0; k < f; k++) {
            /* a stop fired earlier in this loop may have taken a later one with it (none does today:
               nothing that a fill does cancels a stop; an OCO link would): skip what is gone */
            int32_t si = map_get(&m->stop_by_oid, fired[k], 0);
            if (si >= 0) fire(c, m, si, price);
        }
        free(fired);
    }
    return 0;
}

static int set_status(Core *c, uint32_t mid, int status) {
    Market *m = find_market(c, mid);
    if (!m) return reject(c, mid, HX_MSG_SET_MARKET_STATUS, 0, 0, 0, HX_REJECT_UNKNOWN_MARKET);
    if (status > HX_STATUS_MAX) return reject(c, mid, HX_MSG_SET_MARKET_STATUS, 0, 0, 0, HX_REJECT_BAD_FIELD);
    if (m->status == HX_STATUS_RESOLVED && status != HX_STATUS_RESOLVED)
        return reject(c, mid, HX_MSG_SET_MARKET_STATUS, 0, 0, 0, HX_REJECT_MARKET_RESOLVED);
    if (status == m->status) return 0;
    m->status = status;
    EMIT(c, m, market_status, status);
    if (status == HX_STATUS_RESOLVED) {
        int32_t n = 0;
        int32_t *idx = malloc((size_t)(m->ocount ? m->ocount : 1) * sizeof(int32_t));
        if (!idx) abort();
        for (int side = 0; side < 2; side++) {
            const Side *s = &m->sides[side];
            for (int32_t p = 0; p < s->n; p++)
                for (int32_t j = m->levels[s->lv[p]].head; j >= 0; j = m->orders[j].next) idx[n++] = j;
        }
        sort_by_oid(m->orders, idx, n);
        if (n) cancel_many(c, m, idx, n, HX_CANCEL_MARKET_STATUS);
        free(idx);
        if (m->nstops) {
            int32_t *st = stops_sorted(m, 0, 0, &n);
            for (int32_t k = 0; k < n; k++) drop_stop(c, m, st[k], HX_CANCEL_MARKET_STATUS);
            free(st);
        }
    }
    return 0;
}

static int advance_clock(Core *c, uint32_t mid, uint64_t now) {
    if (now < c->now) return reject(c, mid, HX_MSG_CLOCK, 0, 0, 0, HX_REJECT_STALE_SEQUENCE);
    c->now = now;
    for (int32_t k = 0; k < c->nm; k++) {
        Market *m = &c->m[k];
        if (!m->ngtt || m->gtt[0].expire > now) continue;
        int32_t nd = 0, ns = 0, cap = 16;
        int32_t *due = malloc((size_t)cap * sizeof(int32_t));
        uint64_t *due_stops = malloc((size_t)cap * sizeof(uint64_t));
        if (!due || !due_stops) abort();
        while (m->ngtt && m->gtt[0].expire <= now) {
            HeapItem h = heap_pop(m);
            if (nd == cap || ns == cap) {
                cap *= 2;
                due = xrealloc(c, due, (size_t)cap * sizeof(int32_t));
                due_stops = xrealloc(c, due_stops, (size_t)cap * sizeof(uint64_t));
            }
            int32_t i = map_get(&m->by_oid, h.oid, 0);
            if (i >= 0 && m->orders[i].expire == h.expire) {
                m->orders[i].expire = 0; /* collected once, even if the heap held it twice */
                due[nd++] = i;
            } else {
                int32_t si = map_get(&m->stop_by_oid, h.oid, 0);
                if (si >= 0 && m->stops[si].expire == h.expire) due_stops[ns++] = h.oid;
            }
        }
        if (nd) cancel_many(c, m, due, nd, HX_CANCEL_EXPIRED);
        for (int32_t j = 0; j < ns; j++) {
            int32_t si = map_get(&m->stop_by_oid, due_stops[j], 0);
            if (si >= 0) drop_stop(c, m, si, HX_CANCEL_EXPIRED); /* a lookup that misses is never indexed */
        }
        free(due);
        free(due_stops);
    }
    return 0;
}

/* one 64-byte command at p (length already checked) */
static int handle_one(Core *c, const uint8_t *p) {
    int type = hx_header_msg_type(p);
    uint32_t mid = hx_header_market_id(p);
    if (hx_header_version(p) != HX_WIRE_VERSION) return reject(c, mid, type, 0, 0, 0, HX_REJECT_BAD_VERSION);
    if (hx_header_length(p) != HX_SLOT_BYTES) return reject(c, mid, type, 0, 0, 0, HX_REJECT_BAD_LENGTH);
    switch (type) {
    case HX_MSG_NEW_ORDER:
        return place(c, mid, hx_new_order_order_id(p), hx_new_order_client_order_id(p), hx_new_order_account(p),
                     hx_new_order_side(p), hx_new_order_price_ticks(p), hx_new_order_size_lots(p),
                     hx_new_order_tif(p), hx_new_order_order_type(p), hx_new_order_flags(p),
                     hx_new_order_trigger_price_ticks(p), hx_new_order_expire_ns(p));
    case HX_MSG_CANCEL:
        return cancel(c, mid, hx_cancel_order_id(p), hx_cancel_client_order_id(p), hx_cancel_account(p));
    case HX_MSG_AMEND:
        return amend(c, mid, hx_amend_order_id(p), hx_amend_client_order_id(p), hx_amend_account(p),
                     hx_amend_price_ticks(p), hx_amend_size_lots(p));
    case HX_MSG_CANCEL_ALL: return cancel_all(c, mid, hx_cancel_all_account(p));
    case HX_MSG_MARK_PRICE: return set_mark(c, mid, hx_mark_price_price_ticks(p));
    case HX_MSG_SET_MARKET_STATUS: return set_status(c, mid, hx_set_market_status_status(p));
    case HX_MSG_CLOCK: return advance_clock(c, mid, hx_clock_now_ns(p));
    default: return reject(c, mid, type, 0, 0, 0, HX_REJECT_UNKNOWN_MSG_TYPE);
    }
}

/* ---- validate --------------------------------------------------------------------------------------- */
#define CHECK(cond, ...) do { if (!(cond)) { PyErr_Format(PyExc_AssertionError, __VA_ARGS__); return -1; } } while (0)
static int validate_market(Market *m) {
    int32_t live = 0;
    for (int side = 0; side < 2; side++) {
        const Side *s = &m->sides[side];
        for (int32_t p = 0; p < s->n; p++) {
            CHECK(p == 0 || s->keys[p - 1] < s->keys[p], "market %u side %d: keys not strictly sorted", m->id, side);
            const Level *l = &m->levels[s->lv[p]];
            CHECK(key_of(side, l->price) == s->keys[p], "market %u: level price/key mismatch", m->id);
            int64_t size = 0; int32_t count = 0, prev = -1;
            for (int32_t j = l->head; j >= 0; j = m->orders[j].next) {
                const Order *o = &m->orders[j];
                CHECK(o->prev == prev, "market %u: broken queue links", m->id);
                CHECK(o->open > 0 && o->side == side && o->price == l->price && o->level == s->lv[p],
                      "market %u: order %llu misplaced", m->id, (unsigned long long)o->oid);
                CHECK(map_get(&m->by_oid, o->oid, 0) == j, "market %u: order %llu not indexed", m->id,
                      (unsigned long long)o->oid);
                CHECK(o->oid <= m->last_oid, "market %u: order id above watermark", m->id);
                if (o->coid) CHECK(map_get(&m->by_coid, o->account, o->coid) == j, "market %u: coid index", m->id);
                size += o->open; count++; prev = j;
            }
            CHECK(l->tail == prev, "market %u: level tail", m->id);
            CHECK(count > 0, "market %u: empty level %lld", m->id, (long long)l->price);
            CHECK(count == l->count && size == l->size, "market %u: level %lld size/count mismatch", m->id,
                  (long long)l->price);
            CHECK(size <= HX_MAX_LEVEL_TOTAL_LOTS, "market %u: level %lld above the size bound", m->id,
                  (long long)l->price);
            live += count;
        }
    }
    const Side *b = &m->sides[0], *a = &m->sides[1];
    CHECK(!(b->n && a->n) || b->keys[b->n - 1] < -a->keys[a->n - 1], "market %u: book crossed", m->id);
    CHECK(live == m->ocount && (uint32_t)live == m->by_oid.n, "market %u: order index size", m->id);
    int32_t acct_total = 0;
    for (uint32_t k = 0; k <= m->by_account.mask; k++) {
        if (!m->by_account.s[k].n) continue;
        int32_t prev = -1, mine = 0;
        for (int32_t j = m->by_account.s[k].v; j >= 0; j = m->orders[j].anext) {
            CHECK(m->orders[j].aprev == prev && m->orders[j].account == m->by_account.s[k].a,
                  "market %u: account list", m->id);
            prev = j; acct_total++; mine++;
        }
        CHECK(mine == m->by_account.s[k].n, "market %u: account %llu resting count", m->id,
              (unsigned long long)m->by_account.s[k].a);
    }
    CHECK(acct_total == live, "market %u: account index size", m->id);
    int64_t bbo[4] = {0, 0, 0, 0};
    for (int side = 0; side < 2; side++) {
        const Side *s = &m->sides[side];
        if (s->n) { bbo[2 * side] = m->levels[s->lv[s->n - 1]].price; bbo[2 * side + 1] = m->levels[s->lv[s->n - 1]].size; }
    }
    CHECK(memcmp(bbo, m->bbo, sizeof bbo) == 0, "market %u: BBO changed without an event", m->id);
    CHECK((uint32_t)m->nstops == m->stop_by_oid.n, "market %u: stop index size", m->id);
    for (int32_t k = 0; k < m->nstops; k++) {
        const Order *s = &m->stops[m->stop_idx[k]];
        CHECK(s->type >= 2 && s->open > 0 && s->oid <= m->last_oid && s->level == k, "market %u: bad stop", m->id);
        CHECK(map_get(&m->by_oid, s->oid, 0) < 0, "market %u: order both resting and waiting", m->id);
        CHECK(s->side <= HX_SIDE_MAX, "market %u: stop %llu side", m->id, (unsigned long long)s->oid);
    }
    int32_t stop_total = 0;
    for (uint32_t k = 0; k <= m->stop_by_account.mask; k++) {
        const Slot *sl = &m->stop_by_account.s[k];
        if (!sl->n) continue;
        int32_t mine = 0;
        for (int32_t j = 0; j < m->nstops; j++) mine += m->stops[m->stop_idx[j]].account == sl->a;
        CHECK(mine == sl->n, "market %u: account %llu stop count", m->id, (unsigned long long)sl->a);
        stop_total += mine;
    }
    CHECK(stop_total == m->nstops, "market %u: stop counts", m->id);
    return 0;
}

/* ---- Python type ------------------------------------------------------------------------------------- */
static void market_free(Market *m) {
    free(m->orders); free(m->levels); free(m->stops); free(m->stop_idx); free(m->gtt);
    for (int s = 0; s < 2; s++) { free(m->sides[s].keys); free(m->sides[s].lv); }
    map_free(&m->by_oid); map_free(&m->by_coid); map_free(&m->by_account);
    map_free(&m->stop_by_oid); map_free(&m->stop_by_coid); map_free(&m->stop_by_account);
}
/* Size the order pool and the three order maps for `capacity` live orders up front: growing them
   later rehashes or copies every live order in one go (a millisecond stall at a few thousand
   orders, on the matching thread). They still grow past it. */
static void market_init(Core *c, Market *m, int32_t capacity) {
    uint32_t slots = 64;
    while (slots < (uint32_t)capacity * 2u) slots *= 2;
    map_init(&m->by_oid, slots); map_init(&m->by_coid, slots); map_init(&m->by_account, slots);
    map_init(&m->stop_by_oid, 64); map_init(&m->stop_by_coid, 64); map_init(&m->stop_by_account, 64);
    m->ofree = m->lfree = m->sfree = -1;
    m->orders = xrealloc(c, NULL, (size_t)capacity * sizeof(Order));
    for (int32_t i = 0; i < capacity; i++) m->orders[i].next = i + 1 < capacity ? i + 1 : -1;
    m->ofree = 0; m->ocap = capacity; m->init_cap = capacity;
}

static void Core_dealloc(Core *self) {
    for (int32_t k = 0; k < self->nm; k++) market_free(&self->m[k]);
    free(self->m);
    free(self->ev);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int market_cmp(const void *a, const void *b) {
    uint32_t x = ((const Market *)a)->id, y = ((const Market *)b)->id;
    return (x > y) - (x < y);
}

/* Core(specs, order_capacity=1024): specs = sequence of (market_id, tick_size_micro, lot_size_atoms, min_size_lots,
   max_size_lots, min_notional_micro, max_price_ticks, band_bps, status, max_level_total_lots,
   max_open_orders_per_account) */
static int Core_init(Core *self, PyObject *args, PyObject *kw) {
    PyObject *specs;
    int capacity = 1024;
    static char *kwlist[] = {"specs", "order_capacity", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|i", kwlist, &specs, &capacity)) return -1;
    if (self->m) {
        PyErr_SetString(PyExc_RuntimeError, "Core is already initialised");
        return -1;
    }
    if (capacity < 1 || capacity > (1 << 26)) {
        PyErr_SetString(PyExc_ValueError, "order_capacity must be in [1, 2**26]");
        return -1;
    }
    PyObject *seq = PySequence_Fast(specs, "specs must be a sequence");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->m = calloc((size_t)(n ? n : 1), sizeof(Market));
    if (!self->m) { Py_DECREF(seq); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t k = 0; k < n; k++) {
        Market *m = &self->m[k];
        unsigned int id; int status, max_open; long long max_level;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "ILLLLLLLiLi;a market spec tuple", &id, &m->tick,
                              &m->lot, &m->min_size, &m->max_size, &m->min_notional, &m->max_price,
                              &m->band_bps, &status, &max_level, &max_open)) {
            Py_DECREF(seq); return -1;
        }
        if (m->tick <= 0 || m->lot <= 0 || status < 0 || status > HX_STATUS_MAX || max_level < 1
            || max_level > HX_MAX_LEVEL_TOTAL_LOTS || max_open < 1 || max_open > HX_MAX_OPEN_ORDERS_PER_ACCOUNT) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "market %u: tick and lot must be positive, status 0-%d, the level bound "
                         "in [1, 2**62], the open-order cap in [1, %d]", id, HX_STATUS_MAX,
                         (int)HX_MAX_OPEN_ORDERS_PER_ACCOUNT);
            return -1;
        }
        m->max_level = max_level; m->max_open = max_open;
        m->id = id; m->status = status;
        market_init(self, m, capacity);
        self->nm = (int32_t)(k + 1);
    }
    Py_DECREF(seq);
    qsort(self->m, (size_t)self->nm, sizeof(Market), market_cmp);
    for (int32_t k = 1; k < self->nm; k++)
        if (self->m[k].id == self->m[k - 1].id) {
            PyErr_Format(PyExc_ValueError, "market %u given twice", self->m[k].id);
            return -1;
        }
    return 0;
}

static PyObject *Core_handle(Core *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTuple(args, "y*|n", &buf, &offset)) return NULL;
    int code;
    const uint8_t *p = buf.buf;
    if (offset < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "negative offset");
        return NULL;
    }
    if (buf.len - offset < HX_SLOT_BYTES) {
        int type = buf.len > offset ? hx_header_msg_type(p + offset) : 0;
        code = reject(self, 0, type, 0, 0, 0, HX_REJECT_BAD_LENGTH);
    } else {
        code = handle_one(self, p + offset);
    }
    PyBuffer_Release(&buf);
    return PyLong_FromLong(code);
}

/* handle_batch(buf, count, offset=0, stop_at_control=False, echo_seq=-1) -> commands handled. With
   stop_at_control it stops before a HEARTBEAT or L2_SNAPSHOT_REQUEST (the shard's own messages);
   with echo_seq >= 0 it answers a HEARTBEAT itself, as the shard does (HEARTBEAT event: the
   sender's ts_ns, last_seq = echo_seq, the journal record's seq), and goes on. */
static PyObject *Core_handle_batch(Core *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t count, offset = 0;
    int stop_at_control = 0;
    long long echo_seq = -1;
    if (!PyArg_ParseTuple(args, "y*n|npL", &buf, &count, &offset, &stop_at_control, &echo_seq)) return NULL;
    /* the count is never trusted: every slot must lie inside the buffer (no overflow: offset <= len) */
    if (count < 0 || offset < 0 || offset > buf.len || count > (buf.len - offset) / HX_SLOT_BYTES) {
        PyErr_Format(PyExc_ValueError, "batch of %zd slots at offset %zd does not fit a %zd-byte buffer", count,
                     offset, buf.len);
        PyBuffer_Release(&buf);
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)buf.buf;
    Py_ssize_t i = 0;
    for (; i < count; i++) {
        const uint8_t *p = base + offset + i * HX_SLOT_BYTES;
        int type = hx_header_msg_type(p);
        if (type == HX_MSG_HEARTBEAT && echo_seq >= 0) { /* the sender's ts_ns, as sent */
            hx_put_heartbeat(ev_reserve(self), 0, hx_heartbeat_ts_ns(p), (uint64_t)echo_seq);
            continue;
        }
        if (stop_at_control && (type == HX_MSG_HEARTBEAT || type == HX_MSG_L2_SNAPSHOT_REQUEST)) break;
        handle_one(self, p);
    }
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(i);
}

/* advance_clock(now_ns, market_id=ALL) -> RejectCode: a CLOCK command without packing one */
static PyObject *Core_advance_clock(Core *self, PyObject *args) {
    unsigned long long now;
    unsigned int mid = HX_ALL_MARKETS;
    if (!PyArg_ParseTuple(args, "K|I", &now, &mid)) return NULL;
    return PyLong_FromLong(advance_clock(self, mid, now));
}

static PyObject *Core_take_events(Core *self, PyObject *noargs) {
    PyObject *out = PyBytes_FromStringAndSize((const char *)self->ev, (Py_ssize_t)self->evlen);
    self->evlen = 0;
    return out;
}
static PyObject *Core_clear_events(Core *self, PyObject *noargs) {
    self->evlen = 0;
    Py_RETURN_NONE;
}

static Market *market_arg(Core *self, unsigned int id) {
    Market *m = find_market(self, id);
    if (!m) PyErr_Format(PyExc_KeyError, "market %u is not in this engine", id);
    return m;
}

/* market_state(id) -> (seq, status, mark, last_oid, bid_px, bid_size, ask_px, ask_size, n_orders, n_stops) */
static PyObject *Core_market_state(Core *self, PyObject *args) {
    unsigned int id;
    if (!PyArg_ParseTuple(args, "I", &id)) return NULL;
    Market *m = market_arg(self, id);
    if (!m) return NULL;
    return Py_BuildValue("(KiLKLLLLii)", (unsigned long long)m->seq, m->status, (long long)m->mark,
                         (unsigned long long)m->last_oid, (long long)m->bbo[0], (long long)m->bbo[1],
                         (long long)m->bbo[2], (long long)m->bbo[3], m->ocount, m->nstops);
}

/* one SNAP_ORDER record (engine_snapshot.py; offsets in hx_wire.h) */
static void snap_write(uint8_t *p, const Order *o) {
    hx_put_snap_order(p, o->oid, o->account, o->side, o->tif, o->type, o->flags, o->price, o->open, o->filled,
                      o->coid, o->expire, o->trigger);
}
static void snap_read(const uint8_t *p, Order *o) {
    memset(o, 0, sizeof *o);
    o->oid = hx_snap_order_oid(p); o->account = hx_snap_order_account(p);
    o->side = hx_snap_order_side(p); o->tif = hx_snap_order_tif(p); o->type = hx_snap_order_order_type(p);
    o->flags = hx_snap_order_flags(p); o->price = hx_snap_order_price(p); o->open = hx_snap_order_open(p);
    o->filled = hx_snap_order_filled(p); o->coid = hx_snap_order_coid(p); o->expire = hx_snap_order_expire_ns(p);
    o->trigger = hx_snap_order_trigger(p);
}

/* export_orders(id) -> bytes: resting orders, bids best first then asks best first, time priority */
static PyObject *Core_export_orders(Core *self, PyObject *args) {
    unsigned int id;
    if (!PyArg_ParseTuple(args, "I", &id)) return NULL;
    Market *m = market_arg(self, id);
    if (!m) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)m->ocount * HX_SNAP_ORDER_BYTES);
    if (!out) return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    for (int side = 0; side < 2; side++) {
        const Side *s = &m->sides[side];
        for (int32_t k = s->n - 1; k >= 0; k--)
            for (int32_t j = m->levels[s->lv[k]].head; j >= 0; j = m->orders[j].next, p += HX_SNAP_ORDER_BYTES)
                snap_write(p, &m->orders[j]);
    }
    return out;
}

/* export_stops(id) -> bytes: waiting stop orders by order id */
static PyObject *Core_export_stops(Core *self, PyObject *args) {
    unsigned int id;
    if (!PyArg_ParseTuple(args, "I", &id)) return NULL;
    Market *m = market_arg(self, id);
    if (!m) return NULL;
    int32_t n;
    int32_t *idx = stops_sorted(m, 0, 0, &n);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * HX_SNAP_ORDER_BYTES);
    if (out) {
        uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
        for (int32_t k = 0; k < n; k++) snap_write(p + HX_SNAP_ORDER_BYTES * k, &m->stops[idx[k]]);
    }
    free(idx);
    return out;
}

/* What is wrong with one snapshot record (NULL: nothing). The same rules, in the same order, as
   engine_snapshot.record_problem: a resting order is a GTC/GTT LIMIT with no trigger; a waiting one
   is a stop type with a trigger and nothing filled; sides, flags, prices, sizes and ids in range. */
static const char *record_problem(const Market *m, uint64_t last_oid, const Order *o, int waiting) {
    if (o->side > HX_SIDE_MAX) return "bad side";
    if (waiting ? !hx_is_stop_order_type(o->type) : o->type != HX_ORDER_TYPE_LIMIT) return "bad order type";
    if (o->tif > HX_TIF_MAX || (!waiting && o->tif != HX_TIF_GTC && o->tif != HX_TIF_GTT)) return "bad time in force";
    if (waiting && hx_is_market_priced_order_type(o->type) && o->tif != HX_TIF_IOC && o->tif != HX_TIF_FOK)
        return "bad time in force";
    if ((o->tif == HX_TIF_GTT) != (o->expire != 0)) return "bad expiry";
    if ((o->flags & ~HX_FLAGS_KNOWN_BITS) || STP_OF(o->flags) > HX_STP_MAX || (waiting && (o->flags & HX_FLAGS_POST_ONLY_BITS)))
        return "bad flags";
    if (!(o->price > 0 && o->price <= m->max_price)) return "bad price";
    if (o->open <= 0 || o->filled < 0 || o->open > INT64_MAX - o->filled || (waiting && o->filled)) return "bad size";
    if (waiting ? !(o->trigger > 0 && o->trigger <= m->max_price) : o->trigger != 0) return "bad trigger";
    if (!(o->oid > 0 && o->oid <= last_oid)) return "bad order id";
    return NULL;
}

/* back to the market as Core() built it (a refused restore leaves nothing behind) */
static void market_reset(Core *c, Market *m, int status) {
    market_free(m);
    m->orders = NULL; m->ocap = m->ocount = 0;
    m->levels = NULL; m->lcap = 0;
    for (int s = 0; s < 2; s++) { m->sides[s].keys = NULL; m->sides[s].lv = NULL; m->sides[s].n = m->sides[s].cap = 0; }
    m->stops = NULL; m->scap = 0;
    m->stop_idx = NULL; m->nstops = m->stop_idx_cap = 0;
    m->gtt = NULL; m->ngtt = m->gtt_cap = 0;
    m->seq = 0; m->mark = 0; m->last_oid = 0; m->status = status;
    memset(m->bbo, 0, sizeof m->bbo);
    market_init(c, m, m->init_cap);
}

/* restore_market(id, seq, status, mark, last_oid, bid_px, bid_size, ask_px, ask_size, orders, stops):
   load one market of a snapshot into a fresh engine (the clock first: set_now). Nothing is trusted:
   the records are checked like engine_snapshot.check_image does (same rules, same order), and a
   refused image raises ValueError with the market left exactly as it was (fresh). */
static PyObject *Core_restore_market(Core *self, PyObject *args) {
    unsigned int id; unsigned long long seq, last_oid; int status; long long mark, b0, b1, b2, b3;
    Py_buffer ob, sb;
    if (!PyArg_ParseTuple(args, "IKiLKLLLLy*y*", &id, &seq, &status, &mark, &last_oid, &b0, &b1, &b2, &b3, &ob, &sb))
        return NULL;
    Market *m = market_arg(self, id);
    PyObject *result = NULL;
    const char *problem = NULL;
    uint64_t bad_oid = 0;
    int fresh_status = m ? m->status : 0;
    if (!m) goto done;
    if (ob.len % HX_SNAP_ORDER_BYTES || sb.len % HX_SNAP_ORDER_BYTES) {
        PyErr_SetString(PyExc_ValueError, "order arrays must be whole SNAP_ORDER records");
        goto done;
    }
    if (m->ocount || m->nstops || m->seq) { PyErr_SetString(PyExc_ValueError, "restore into a fresh engine only"); goto done; }
    if (status < 0 || status > HX_STATUS_MAX) { problem = "bad status"; goto refuse; }
    if (mark < 0 || mark > m->max_price) { problem = "bad mark"; goto refuse; }
    m->seq = seq; m->status = status; m->mark = mark; m->last_oid = last_oid;
    for (int waiting = 0; waiting < 2; waiting++) {
        const Py_buffer *b = waiting ? &sb : &ob;
        for (Py_ssize_t k = 0; k < b->len / HX_SNAP_ORDER_BYTES; k++) {
            Order o;
            snap_read((const uint8_t *)b->buf + HX_SNAP_ORDER_BYTES * k, &o);
            bad_oid = o.oid;
            if ((problem = record_problem(m, last_oid, &o, waiting))) goto refuse;
            if (map_get(&m->by_oid, o.oid, 0) >= 0 || map_get(&m->stop_by_oid, o.oid, 0) >= 0) {
                problem = "duplicate order id"; goto refuse;
            }
            if (o.coid && (find_by_coid(m, o.account, o.coid) >= 0 || map_get(&m->stop_by_coid, o.account, o.coid) >= 0)) {
                problem = "duplicate client order id"; goto refuse;
            }
            if (waiting) {
                stop_add(self, m, &o);
            } else {
                if (o.open > HX_MAX_LEVEL_TOTAL_LOTS - level_size_at(m, o.side, o.price)) {
                    problem = "level total beyond 2**62"; goto refuse;
                }
                int32_t i = order_alloc(self, m);
                m->orders[i] = o;
                rest_order(self, m, i);
            }
            if (o.expire) heap_push(self, m, o.expire, o.oid);
        }
    }
    bad_oid = 0;
    const Side *bids = &m->sides[0], *asks = &m->sides[1];
    if (bids->n && asks->n && bids->keys[bids->n - 1] >= -asks->keys[asks->n - 1]) { problem = "crossed book"; goto refuse; }
    int64_t top[4] = {0, 0, 0, 0};
    for (int side = 0; side < 2; side++) {
        const Side *s = &m->sides[side];
        if (s->n) { top[2 * side] = m->levels[s->lv[s->n - 1]].price; top[2 * side + 1] = m->levels[s->lv[s->n - 1]].size; }
    }
    if (top[0] != b0 || top[1] != b1 || top[2] != b2 || top[3] != b3) { problem = "last BBO differs from the book"; goto refuse; }
    memcpy(m->bbo, top, sizeof top);
    result = Py_None;
    Py_INCREF(result);
    goto done;
refuse:
    market_reset(self, m, fresh_status);
    if (bad_oid) PyErr_Format(PyExc_ValueError, "market %u: %s (order %llu)", id, problem, (unsigned long long)bad_oid);
    else PyErr_Format(PyExc_ValueError, "market %u: %s", id, problem);
done:
    PyBuffer_Release(&ob);
    PyBuffer_Release(&sb);
    return result;
}

/* depth(id, side) -> [(price, size, count)], best first */
static PyObject *Core_depth(Core *self, PyObject *args) {
    unsigned int id; int side;
    if (!PyArg_ParseTuple(args, "Ii", &id, &side)) return NULL;
    Market *m = market_arg(self, id);
    if (!m) return NULL;
    if (side != 0 && side != 1) { PyErr_SetString(PyExc_ValueError, "side must be 0 or 1"); return NULL; }
    const Side *s = &m->sides[side];
    PyObject *out = PyList_New(s->n);
    if (!out) return NULL;
    for (int32_t k = 0; k < s->n; k++) {
        const Level *l = &m->levels[s->lv[s->n - 1 - k]];
        PyObject *t = Py_BuildValue("(LLi)", (long long)l->price, (long long)l->size, l->count);
        if (!t) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, k, t);
    }
    return out;
}

/* get_order(id, oid) -> 64-byte SNAP_ORDER record of a live (resting or waiting) order, or None */
static PyObject *Core_get_order(Core *self, PyObject *args) {
    unsigned int id; unsigned long long oid;
    if (!PyArg_ParseTuple(args, "IK", &id, &oid)) return NULL;
    Market *m = market_arg(self, id);
    if (!m) return NULL;
    const Order *o = NULL;
    int32_t i = map_get(&m->by_oid, oid, 0);
    if (i >= 0) o = &m->orders[i];
    else if ((i = map_get(&m->stop_by_oid, oid, 0)) >= 0) o = &m->stops[i];
    if (!o) Py_RETURN_NONE;
    uint8_t rec[HX_SNAP_ORDER_BYTES];
    snap_write(rec, o);
    return PyBytes_FromStringAndSize((const char *)rec, HX_SNAP_ORDER_BYTES);
}

static PyObject *Core_validate(Core *self, PyObject *noargs) {
    for (int32_t k = 0; k < self->nm; k++)
        if (validate_market(&self->m[k]) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Core_get_now(Core *self, void *closure) { return PyLong_FromUnsignedLongLong(self->now); }
static int Core_set_now(Core *self, PyObject *v, void *closure) {
    if (!v) { PyErr_SetString(PyExc_AttributeError, "cannot delete now_ns"); return -1; }
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    self->now = x;
    return 0;
}
static PyObject *Core_get_pending(Core *self, void *closure) {
    return PyLong_FromSize_t(self->evlen / HX_SLOT_BYTES);
}
static PyObject *Core_get_market_ids(Core *self, void *closure) {
    PyObject *out = PyList_New(self->nm);
    if (!out) return NULL;
    for (int32_t k = 0; k < self->nm; k++) PyList_SET_ITEM(out, k, PyLong_FromUnsignedLong(self->m[k].id));
    return out;
}

static PyMethodDef Core_methods[] = {
    {"handle", (PyCFunction)Core_handle, METH_VARARGS, "handle(buf, offset=0) -> RejectCode: one 64-byte command"},
    {"handle_batch", (PyCFunction)Core_handle_batch, METH_VARARGS,
     "handle_batch(buf, count, offset=0, stop_at_control=False, echo_seq=-1) -> commands handled"},
    {"advance_clock", (PyCFunction)Core_advance_clock, METH_VARARGS,
     "advance_clock(now_ns, market_id=0xFFFFFFFF) -> RejectCode: a CLOCK command"},
    {"take_events", (PyCFunction)Core_take_events, METH_NOARGS, "the packed events since the last take, as bytes"},
    {"clear_events", (PyCFunction)Core_clear_events, METH_NOARGS, "drop the pending events"},
    {"market_state", (PyCFunction)Core_market_state, METH_VARARGS, "market_state(id) -> tuple (see source)"},
    {"export_orders", (PyCFunction)Core_export_orders, METH_VARARGS, "resting orders as SNAP_ORDER bytes"},
    {"export_stops", (PyCFunction)Core_export_stops, METH_VARARGS, "waiting stops as SNAP_ORDER bytes"},
    {"restore_market", (PyCFunction)Core_restore_market, METH_VARARGS, "load one market of a snapshot"},
    {"depth", (PyCFunction)Core_depth, METH_VARARGS, "depth(id, side) -> [(price, size, count)] best first"},
    {"get_order", (PyCFunction)Core_get_order, METH_VARARGS, "get_order(id, oid) -> SNAP_ORDER bytes or None"},
    {"validate", (PyCFunction)Core_validate, METH_NOARGS, "raise AssertionError on a broken invariant"},
    {NULL, NULL, 0, NULL},
};
static PyGetSetDef Core_getset[] = {
    {"now_ns", (getter)Core_get_now, (setter)Core_set_now, "engine clock (ns)", NULL},
    {"pending_events", (getter)Core_get_pending, NULL, "events packed since the last take", NULL},
    {"market_ids", (getter)Core_get_market_ids, NULL, "market ids, ascending", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engine.native._hxcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled matching engine of one shard (see engine/shard/native_engine.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_getset = Core_getset,
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, .m_name = "_hxcore", .m_doc = "hx compiled matching core", .m_size = -1,
};

PyMODINIT_FUNC PyInit__hxcore(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&moddef);
    if (!mod) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(mod, "Core", (PyObject *)&CoreType) < 0) { Py_DECREF(&CoreType); Py_DECREF(mod); return NULL; }
    PyModule_AddIntConstant(mod, "ABI", 1);
    return mod;
}
