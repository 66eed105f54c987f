/*
 * _hxmargin: the margin recompute of many accounts, compiled.
 *
 * The specification is engine.math.portfolio_margin.calc_portfolio_margin_arrays (numpy, column
 * by column); this is the same sequence of IEEE-754 double operations applied row by row, so it
 * gives the same bytes (tests/engine/risk/test_native_margin.py holds the two to that). Nothing
 * here knows the spec: engine/risk/native_margin.py compiles the spec and the current prices,
 * marks and shock multipliers into a "plan" (an int64 and a float64 array, read in order below)
 * with the very expressions numpy evaluates, so every coefficient is the same double.
 *
 * Rules that keep the bytes equal: no FMA contraction (setup.py builds with -ffp-contract=off),
 * minimum/maximum as numpy defines them for equal operands, fold only the rows numpy folds.
 *
 * One call: for every row of `rows` (four rows interleaved, with the plan reduced to what the four
 * hold; in chunks two threads take in turn when asked and there are many: rows are independent,
 * so the bytes do not depend on either), equity /
 * initial / maintenance (int64, micro) and the exposure row (float64) are written into the account
 * book's columns in place; the rows whose three figures changed are listed in `changed`, those
 * below maintenance (MM > 0, equity < MM) in `below`, both counted in the returned pair. A row
 * that holds nothing but cash gets the exact figures (equity = cash, no margin), as
 * MarginModel.recompute.
 * An equity or margin beyond 2**62 micro raises OverflowError as numpy does; unlike numpy, the
 * rows before it (in its chunk) and other chunks' rows are already written. Either way the risk
 * process stops on it (the engine's checked int64 columns keep real books far below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>

#include "hx_wire.h" /* generated from engine/wire/layout.py (python -m engine.native.codegen) */

#define MAX_PIECES 16
#define MAX_ASSETS 512
#define THREAD_MIN_ROWS 16384 /* below it a second thread costs more than it saves */

/* numpy's np.minimum / np.maximum on two finite doubles */
static inline double np_min(double a, double b) { return (a < b) ? a : b; }
static inline double np_max(double a, double b) { return (a >= b) ? a : b; }

typedef struct {
    const int64_t *ip, *iend;
    const double *dp, *dend;
    int bad;
} Reader;

static inline int64_t RI(Reader *r) {
    if (r->ip >= r->iend) { r->bad = 1; return 0; }
    return *r->ip++;
}
static inline double RD(Reader *r) {
    if (r->dp >= r->dend) { r->bad = 1; return 0.0; }
    return *r->dp++;
}

typedef struct {
    int a, npieces, tiered, floor, perpa;
    uint64_t edge0;
    double s[MAX_PIECES], c[MAX_PIECES];
} SpotAsset;

typedef struct {
    int a, ntiers;
    double first, thresh;
    double rc[MAX_PIECES], dc[MAX_PIECES];
} RiskyAsset;

typedef struct {
    int gi, count, ext, idio_pos, multi; /* multi: the spec's group has more than one member */
    int *members;
    double idio;
} ShockGroup;

typedef struct {
    int has, count;
    int *members;
    double coef;
} FloorGroup;

typedef struct {
    int gi, a;
    double coef;
} PredGroup;

typedef struct {
    int a, floor, perpa;
    double s0;
} ZeroAsset;

typedef struct {
    int A, P, G;
    int n_spot, n_fg, n_risky, n_sg, n_pg, wk_gt1;
    SpotAsset *spot;
    /* What run_block walks: the full plan's are every entry (n_zero = 0); a plan reduced to the
     * support of a block (see reduce_plan) keeps the entries some row of the block holds and gives
     * the spot assets none holds only the values a zero quantity gives. */
    int n_held, n_zero, n_plist, n_glist;
    int *glist; /* the groups whose losses are summed, in order (a reduced plan: those it writes) */
    const SpotAsset **held;
    ZeroAsset *zero;
    int *plist;
    const RiskyAsset **riskyp;
    int *perp_under;
    double *perp_coef;
    FloorGroup *fg;
    RiskyAsset *risky;
    ShockGroup *sg;
    PredGroup *pg;
    int *members; /* storage for every group's member list */
    double neg_wk, k, w, one_minus_offset, offset, safety, safety_abs, max_mag;
    int64_t mm_f;
} Plan;

static void plan_free(Plan *p) {
    free(p->spot); free(p->perp_under); free(p->perp_coef); free(p->fg); free(p->risky);
    free(p->sg); free(p->pg); free(p->members); free(p->held); free(p->zero); free(p->plist); free(p->riskyp);
    free(p->glist);
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v < hi; }

/* Read the plan written by engine/risk/native_margin.py::build_plan (same order). 0 or -1 (error set). */
static int plan_read(Plan *p, const int64_t *ints, Py_ssize_t ni, const double *dbls, Py_ssize_t nd) {
    Reader r = {ints, ints + ni, dbls, dbls + nd, 0};
    memset(p, 0, sizeof *p);
    p->A = (int)RI(&r); p->P = (int)RI(&r); p->G = (int)RI(&r);
    if (!in_range(p->A, 1, MAX_ASSETS) || !in_range(p->P, 0, MAX_ASSETS) || !in_range(p->G, 0, MAX_ASSETS)) goto bad;
    int A = p->A, P = p->P;
    p->members = calloc((size_t)(4 * A + 4), sizeof(int));
    int used = 0, cap = 4 * A + 4;
    p->n_spot = (int)RI(&r);
    if (!in_range(p->n_spot, 0, A)) goto bad;
    p->spot = calloc((size_t)p->n_spot + 1, sizeof(SpotAsset));
    for (int i = 0; i < p->n_spot; i++) {
        SpotAsset *s = &p->spot[i];
        s->a = (int)RI(&r); s->npieces = (int)RI(&r); s->tiered = (int)RI(&r);
        s->floor = (int)RI(&r); s->perpa = (int)RI(&r); s->edge0 = (uint64_t)RI(&r);
        if (!in_range(s->a, 1, A) || !in_range(s->npieces, 1, MAX_PIECES + 1)) goto bad;
        for (int j = 0; j < s->npieces; j++) s->s[j] = RD(&r);
        for (int j = 0; j < s->npieces; j++) s->c[j] = RD(&r);
    }
    p->perp_under = calloc((size_t)P + 1, sizeof(int));
    p->perp_coef = calloc((size_t)P + 1, sizeof(double));
    for (int i = 0; i < P; i++) {
        p->perp_under[i] = (int)RI(&r);
        p->perp_coef[i] = RD(&r);
        if (!in_range(p->perp_under[i], 1, A)) goto bad;
    }
    p->n_fg = (int)RI(&r);
    if (!in_range(p->n_fg, 0, A + 1)) goto bad;
    p->fg = calloc((size_t)p->n_fg + 1, sizeof(FloorGroup));
    for (int i = 0; i < p->n_fg; i++) {
        FloorGroup *g = &p->fg[i];
        g->has = (int)RI(&r); g->count = (int)RI(&r); g->coef = RD(&r);
        if (!in_range(g->count, 1, A + 1) || used + g->count > cap) goto bad;
        g->members = p->members + used; used += g->count;
        for (int j = 0; j < g->count; j++) {
            g->members[j] = (int)RI(&r);
            if (!in_range(g->members[j], 1, A)) goto bad;
        }
    }
    p->n_risky = (int)RI(&r);
    if (!in_range(p->n_risky, 0, A + 1)) goto bad;
    p->risky = calloc((size_t)p->n_risky + 1, sizeof(RiskyAsset));
    for (int i = 0; i < p->n_risky; i++) {
        RiskyAsset *s = &p->risky[i];
        s->a = (int)RI(&r); s->ntiers = (int)RI(&r);
        s->first = RD(&r); s->thresh = RD(&r);
        if (!in_range(s->a, 1, A) || !in_range(s->ntiers, 0, MAX_PIECES)) goto bad;
        for (int j = 0; j < s->ntiers; j++) { s->rc[j] = RD(&r); s->dc[j] = RD(&r); }
    }
    p->n_sg = (int)RI(&r); p->wk_gt1 = (int)RI(&r);
    p->neg_wk = RD(&r); p->k = RD(&r); p->w = RD(&r);
    if (!in_range(p->n_sg, 0, p->G + 1)) goto bad;
    p->sg = calloc((size_t)p->n_sg + 1, sizeof(ShockGroup));
    for (int i = 0; i < p->n_sg; i++) {
        ShockGroup *g = &p->sg[i];
        g->gi = (int)RI(&r); g->count = (int)RI(&r); g->ext = (int)RI(&r); g->idio_pos = (int)RI(&r);
        g->idio = RD(&r);
        g->multi = g->count > 1;
        if (!in_range(g->gi, 0, p->G) || !in_range(g->count, 1, A + 1) || used + g->count > cap) goto bad;
        g->members = p->members + used; used += g->count;
        for (int j = 0; j < g->count; j++) {
            g->members[j] = (int)RI(&r);
            if (!in_range(g->members[j], 1, A)) goto bad;
        }
    }
    p->n_pg = (int)RI(&r);
    if (!in_range(p->n_pg, 0, p->G + 1)) goto bad;
    p->pg = calloc((size_t)p->n_pg + 1, sizeof(PredGroup));
    for (int i = 0; i < p->n_pg; i++) {
        p->pg[i].gi = (int)RI(&r); p->pg[i].a = (int)RI(&r); p->pg[i].coef = RD(&r);
        if (!in_range(p->pg[i].gi, 0, p->G) || !in_range(p->pg[i].a, 1, A)) goto bad;
    }
    p->mm_f = RI(&r);
    p->one_minus_offset = RD(&r); p->offset = RD(&r); p->safety = RD(&r);
    p->safety_abs = RD(&r); p->max_mag = RD(&r);
    if (r.bad || r.ip != r.iend || r.dp != r.dend) goto bad;
    p->held = calloc((size_t)p->n_spot + 1, sizeof(SpotAsset *));
    p->zero = calloc((size_t)p->n_spot + 1, sizeof(ZeroAsset));
    p->plist = calloc((size_t)P + 1, sizeof(int));
    p->riskyp = calloc((size_t)p->n_risky + 1, sizeof(RiskyAsset *));
    p->glist = calloc((size_t)p->G + 1, sizeof(int));
    if (!p->held || !p->zero || !p->plist || !p->riskyp || !p->glist) goto bad;
    p->n_glist = p->G;
    for (int g = 0; g < p->G; g++) p->glist[g] = g;
    p->n_held = p->n_spot;
    for (int i = 0; i < p->n_spot; i++) p->held[i] = &p->spot[i];
    p->n_plist = P;
    for (int i = 0; i < P; i++) p->plist[i] = i;
    for (int i = 0; i < p->n_risky; i++) p->riskyp[i] = &p->risky[i];
    return 0;
bad:
    plan_free(p);
    PyErr_SetString(PyExc_ValueError, "malformed margin plan");
    return -1;
}

/* (int64_t)ceil(x) and (int64_t)floor(x) for |x| <= 2**62 (checked before), without a libm call:
 * truncation is exact there, then one step toward the rounding's side. */
static inline int64_t ceil_i64(double x) {
    const int64_t t = (int64_t)x;
    return t + (x > (double)t);
}
static inline int64_t floor_i64(double x) {
    const int64_t t = (int64_t)x;
    return t - (x < (double)t);
}

/* floor division of a non-negative or negative int64 by a positive one (numpy's floor_divide) */
static inline int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
    return q;
}

typedef struct {
    Py_buffer b;
    int held;
} Buf;

static int get_buf(PyObject *o, Buf *out, int writable, Py_ssize_t itemsize, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, &out->b, flags) < 0) return -1;
    out->held = 1;
    if (out->b.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected %zd-byte items", name, itemsize);
        return -1;
    }
    return 0;
}

typedef struct {
    const Plan *plan;
    const int64_t *balance, *psize, *pcost, *rows;
    int64_t *equity, *initial, *maint, *changed, *below; /* lists: this job's own regions, from its lo */
    double *exposure;
    /* settle (RiskEngine._recompute's close of each row: reserved -= converting, converting = 0,
     * dirty = 0) when reserved is not NULL */
    int64_t *reserved, *converting;
    uint8_t *dirty;
    /* the news selection (pack_margin's) of the changed rows when news is not NULL: the rows but
     * fee_row and isolated positions' (iso[r] != 0, iso may be NULL) that are news, listed in news */
    const int64_t *pseq, *peq, *pim, *pmm, *pps, *iso;
    int64_t *news;
    int64_t fee_row, publish_ppm, f_maint, f_init;
    /* the book's near flags (AccountBook.near: headroom below near_reach x maintenance), kept */
    uint8_t *near;
    double near_reach;
    Py_ssize_t lo, hi, nchanged, nbelow, nnews;
    int overflow, ran;
} Job;

static inline uint8_t margin_flags(int64_t eq, int64_t im, int64_t mm, long long f_maint, long long f_init) {
    return (uint8_t)((eq < mm ? f_maint : 0) | (eq < im ? f_init : 0));
}

static inline int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

/* A maintenance requirement and a headroom over it below `reach` times it, in doubles (the
 * difference wraps as numpy's int64 subtraction does; real figures stay far inside int64): the
 * near flags the recompute keeps and the candidates near() lists (AccountBook.near_flags and
 * RiskEngine._nearest evaluate the same operations). */
static inline int within_reach(int64_t eq, int64_t mm, double reach, double *ratio) {
    const int64_t head = (int64_t)((uint64_t)eq - (uint64_t)mm);
    if (!(mm > 0 && (double)head < (double)mm * reach)) return 0;
    if (ratio) *ratio = (double)head / (double)mm;
    return 1;
}

/* Is row r's new margin news to its account (RiskEngine._margin_news): a private event since its
 * last ACCOUNT_MARGIN, a threshold crossed either way, or equity / initial moved more than
 * publish_ppm of its scale (max(|equity|, initial, 1 USDC) as last published). */
static inline int is_news(const int64_t *pseq, const int64_t *peq, const int64_t *pim, const int64_t *pmm,
                          const int64_t *pps, int64_t r, int64_t eq, int64_t im, int64_t mm, int64_t f_maint,
                          int64_t f_init, int64_t publish_ppm) {
    const int own = pps[r] != pseq[r];
    const int crossed = margin_flags(eq, im, mm, f_maint, f_init) != margin_flags(peq[r], pim[r], pmm[r], f_maint, f_init);
    int64_t scale = abs64(peq[r]);
    if (pim[r] > scale) scale = pim[r];
    if (scale < 1000000) scale = 1000000;
    const int64_t limit = scale / 1000000 * publish_ppm + scale % 1000000 * publish_ppm / 1000000;
    const int moved = abs64(eq - peq[r]) > limit || abs64(im - pim[r]) > limit;
    return own || crossed || moved;
}

/* Four rows at a time, lane by lane (L lanes valid, the others repeat lane 0 and are never written):
 * each step's operations are the row-by-row ones, in the same order per lane, so the bytes do not
 * change; four independent dependency chains keep the CPU busy where one row's chain would stall
 * it (the recompute is latency-bound, not memory-bound). */
#define LANES 4
#define FOR_L for (int l = 0; l < LANES; l++)

static void run_block(const Plan *pp, const Job *job, const int64_t *rws, int L, const int *holds, double *ws,
                      Py_ssize_t *nchanged, Py_ssize_t *nbelow, Py_ssize_t *nnews, int *overflow) {
    int64_t *changed = job->changed, *below = job->below;
    const Plan *const plan = pp; /* (a pointer: a copy of the struct per block cost ~14 instructions a row) */
    const int A = plan->A, P = plan->P, G = plan->G;
    double *expo_l = ws, *gross = ws + (size_t)A * LANES, *shock = ws + (size_t)2 * A * LANES,
           *sgn = ws + (size_t)3 * A * LANES, *loss = ws + (size_t)4 * A * LANES;
#define X(arr, a) (arr)[(size_t)(a) * LANES + l]
    int64_t row[LANES];
    const int64_t *bal[LANES], *ps[LANES], *pc[LANES];
    FOR_L {
        row[l] = rws[l < L ? l : 0];
        bal[l] = job->balance + row[l] * A;
        ps[l] = job->psize + row[l] * P;
        pc[l] = job->pcost + row[l] * P;
    }
    double mag[LANES], eq[LANES], floor_[LANES], im[LANES];
    int64_t cost[LANES];
    /* 1-3. spot values */
    FOR_L {
        X(expo_l, 0) = (double)bal[l][0];
        mag[l] = fabs(X(expo_l, 0));
        cost[l] = 0;
    }
    for (int j = 0; j < plan->n_zero; j++) { /* no row of the block holds it (a reduced plan) */
        const ZeroAsset *z = &plan->zero[j];
        FOR_L {
            X(expo_l, z->a) = 0.0 * z->s0;
            if (z->floor) X(gross, z->a) = np_max(-X(expo_l, z->a), 0.0);
            else if (z->perpa) X(gross, z->a) = 0.0;
        }
    }
    for (int j = 0; j < plan->n_held; j++) {
        const SpotAsset *s = plan->held[j];
        const int a = s->a;
        int any = 0;
        FOR_L any |= (bal[l][a] != 0);
        if (!any) { /* nobody in the block holds it: the values q = 0 gives, without the arithmetic */
            FOR_L {
                X(expo_l, a) = 0.0 * s->s[0];
                if (s->floor) X(gross, a) = np_max(-X(expo_l, a), 0.0);
                else if (s->perpa) X(gross, a) = 0.0;
            }
            continue;
        }
        FOR_L {
            const int64_t qi = bal[l][a];
            const double q = (double)qi;
            double v = q * s->s[0];
            if (s->tiered && (uint64_t)qi > s->edge0) {
                for (int t = 1; t < s->npieces; t++) {
                    double piece = q * s->s[t];
                    if (s->c[t] != 0.0) piece += s->c[t];
                    v = np_min(v, piece);
                }
            }
            X(expo_l, a) = v;
            mag[l] += fabs(v);
            if (s->floor) X(gross, a) = np_max(-v, 0.0);
            else if (s->perpa) X(gross, a) = 0.0;
        }
    }
    /* perps into their underlying's exposure and gross notional */
    for (int i = 0; i < plan->n_plist; i++) {
        const int p = plan->plist[i];
        const int a = plan->perp_under[p];
        const double coef = plan->perp_coef[p];
        int any = 0;
        FOR_L any |= (ps[l][p] != 0) | (pc[l][p] != 0);
        if (!any) { /* adds +0.0 and 0 only: -0.0 (a short quantity at a price of 0) becomes +0.0 */
            FOR_L X(expo_l, a) += 0.0;
            continue;
        }
        FOR_L {
            const double t = (double)ps[l][p] * coef;
            X(expo_l, a) += t;
            X(gross, a) += fabs(t);
            cost[l] = (int64_t)((uint64_t)cost[l] + (uint64_t)pc[l][p]); /* numpy int64 adds wrap */
        }
    }
    FOR_L eq[l] = X(expo_l, 0);
    for (int j = 0; j < plan->n_held; j++) {
        const int a = plan->held[j]->a;
        FOR_L eq[l] += X(expo_l, a);
    }
    FOR_L {
        const double t = (double)cost[l];
        eq[l] -= t;
        mag[l] += fabs(t);
        X(expo_l, 0) = 0.0;
        floor_[l] = 0.0;
    }
    /* 7. floor on gross notional */
    for (int g = 0; g < plan->n_fg; g++) {
        const FloorGroup *f = &plan->fg[g];
        FOR_L {
            double t = X(gross, f->members[0]);
            for (int m = 1; m < f->count; m++) t += X(gross, f->members[m]);
            mag[l] += t;
            if (f->has) {
                t *= f->coef;
                floor_[l] += t;
            }
        }
    }
    /* 4. shocks */
    for (int j = 0; j < plan->n_risky; j++) {
        const RiskyAsset *s = plan->riskyp[j];
        const int a = s->a;
        FOR_L {
            const double e = X(expo_l, a);
            double sg = e * s->first;
            double sh = fabs(sg);
            if (s->ntiers && sh > s->thresh) {
                const double e_abs = fabs(e);
                double best = sh;
                for (int t = 0; t < s->ntiers; t++) best = np_max(best, e_abs * s->rc[t] - s->dc[t]);
                sh = best;
                sg = copysign(best, e);
            }
            X(shock, a) = sh;
            X(sgn, a) = sg;
        }
    }
    /* 5-6. group losses */
    for (int i = 0; i < plan->n_glist; i++) FOR_L X(loss, plan->glist[i]) = 0.0;
    for (int j = 0; j < plan->n_sg; j++) {
        const ShockGroup *g = &plan->sg[j];
        FOR_L {
            double s_sum, lg;
            if (!g->multi) {
                s_sum = X(sgn, g->members[0]);
                lg = fabs(s_sum);
            } else { /* (a reduced plan may keep one member of a larger group: see reduce_plan) */
                s_sum = X(sgn, g->members[0]);
                for (int m = 1; m < g->count; m++) s_sum += X(sgn, g->members[m]);
                lg = fabs(s_sum);
                if (g->idio_pos) {
                    double t2 = X(shock, g->members[0]);
                    for (int m = 1; m < g->count; m++) t2 = np_max(t2, X(shock, g->members[m]));
                    t2 *= g->idio;
                    lg = np_max(lg, t2);
                }
            }
            if (plan->wk_gt1) lg = np_max(lg, s_sum * plan->neg_wk);
            if (g->ext) {
                double ext = 0.0;
                for (int m = 0; m < g->count; m++) {
                    const int a = g->members[m];
                    double t3 = X(shock, a) * plan->k;
                    t3 = np_min(t3, fabs(X(expo_l, a)));
                    t3 = copysign(t3, X(expo_l, a));
                    ext += t3;
                }
                ext *= plan->w;
                lg = np_max(lg, ext);
            }
            X(loss, g->gi) = lg;
        }
    }
    for (int j = 0; j < plan->n_pg; j++) {
        const PredGroup *g = &plan->pg[j];
        FOR_L X(loss, g->gi) = np_max(X(expo_l, g->a), (double)bal[l][g->a] * g->coef);
    }
    FOR_L im[l] = 0.0;
    if (G) {
        double largest[LANES];
        FOR_L largest[l] = 0.0;
        const int *gl = plan->glist;
        for (int i = 0; i < plan->n_glist; i++) FOR_L X(loss, gl[i]) = np_max(X(loss, gl[i]), 0.0);
        for (int i = 0; i < plan->n_glist; i++) FOR_L {
                im[l] += X(loss, gl[i]);
                largest[l] = np_max(largest[l], X(loss, gl[i]));
            }
        FOR_L {
            im[l] *= plan->one_minus_offset;
            largest[l] *= plan->offset;
            im[l] += largest[l];
        }
    }
    /* 8. against the account, with the safety margin; write the valid lanes */
    for (int l = 0; l < L; l++) {
        double m_ = np_max(im[l], floor_[l]);
        double t1 = mag[l] * plan->safety;
        t1 += plan->safety_abs;
        m_ += t1;
        const double e_ = eq[l] - t1;
        if (m_ > plan->max_mag || -e_ > plan->max_mag || e_ > plan->max_mag) {
            if (L == LANES) /* (the rows before it are written, their exposures too) */
                for (int j = 0; j < l; j++)
                    for (int a = 0; a < A; a++) job->exposure[row[j] * A + a] = expo_l[(size_t)a * LANES + j];
            *overflow = 1;
            return;
        }
        int64_t out_im = ceil_i64(m_), out_eq = floor_i64(e_), out_mm;
        {
            const int64_t PPM = 1000000;
            if (out_im >= 0 && plan->mm_f >= 0) { /* (non-negative: floor division is the plain one) */
                const uint64_t q = (uint64_t)out_im / 1000000u, rem = (uint64_t)out_im % 1000000u;
                out_mm = (int64_t)q * plan->mm_f + (int64_t)((rem * (uint64_t)plan->mm_f + 999999u) / 1000000u);
            } else {
                const int64_t q = floordiv(out_im, PPM), rem = out_im - q * PPM;
                out_mm = q * plan->mm_f + floordiv(rem * plan->mm_f + PPM - 1, PPM);
            }
        }
        if (!holds[l]) { /* cash only: exact, no margin */
            out_eq = bal[l][0];
            out_im = 0;
            out_mm = 0;
        }
        const int64_t r = row[l];
        if (L < LANES) {
            double *dst = job->exposure + r * A;
            for (int a = 0; a < A; a++) dst[a] = X(expo_l, a);
        }
        const int moved = job->equity[r] != out_eq || job->initial[r] != out_im || job->maint[r] != out_mm;
        if (moved) changed[(*nchanged)++] = r;
        if (out_mm > 0 && out_eq < out_mm) below[(*nbelow)++] = r; /* what the liquidator must look at */
        job->equity[r] = out_eq;
        job->initial[r] = out_im;
        job->maint[r] = out_mm;
        if (job->near) job->near[r] = (uint8_t)within_reach(out_eq, out_mm, job->near_reach, NULL);
        if (job->reserved) {
            job->reserved[r] = (int64_t)((uint64_t)job->reserved[r] - (uint64_t)job->converting[r]);
            job->converting[r] = 0;
            job->dirty[r] = 0;
        }
        if (moved && job->news && r != job->fee_row && !(job->iso && job->iso[r]) &&
            is_news(job->pseq, job->peq, job->pim, job->pmm, job->pps, r, out_eq, out_im, out_mm, job->f_maint,
                    job->f_init, job->publish_ppm))
            job->news[(*nnews)++] = r;
    }
    if (L == LANES) { /* the exposures of the block: row by row, four stores per asset */
        double *d0 = job->exposure + row[0] * A, *d1 = job->exposure + row[1] * A;
        double *d2 = job->exposure + row[2] * A, *d3 = job->exposure + row[3] * A;
        for (int a = 0; a < A; a++) {
            const double *src = expo_l + (size_t)a * LANES;
            d0[a] = src[0];
            d1[a] = src[1];
            d2[a] = src[2];
            d3[a] = src[3];
        }
    }
#undef X
}

/* ---- plans reduced to what a block holds ----------------------------------------------------
 *
 * Most accounts hold a few of the exchange's assets; the full plan walks every one. A block's
 * support is the set of non-cash assets with a balance and of perps open (size or cost) in any of
 * its rows, plus each open perp's underlying. reduce_plan keeps the entries of the full plan
 * that touch the support, in the full plan's order; every entry dropped is one whose values in
 * every row of the block are the exact zeros a zero quantity gives, and the operations it would
 * have done add +0.0 to a sum that is never -0.0 (eq, mag, cost, floor, im and ext start at +0.0
 * or an int64 converted, and round-to-nearest never makes -0.0 of +0.0 + x), take a maximum with
 * +0.0 among non-negative values, or give a loss of +0.0 to a group; so the bytes are the full
 * plan's. (A group's own sum of signed shocks may then differ in the sign of a zero only: it is
 * used through fabs and a maximum with +0.0.) tests/engine/risk/test_native_margin.py holds the
 * two paths and numpy to the same bytes. */
#define SUPPORT_BITS 64 /* non-cash assets + perps a key can name; beyond, the full plan runs */
#define CACHED_PLANS 16

typedef struct {
    uint64_t key;
    int ready;
    Plan p;   /* lists in its own storage; everything else shared with the full plan */
    uint8_t *sup, *gsup;
} Reduced;

typedef struct {
    Reduced e[CACHED_PLANS];
    int n, last, next;
} PlanCache;

static int reduced_alloc(Reduced *r, const Plan *f) {
    Plan *p = &r->p;
    p->held = calloc((size_t)f->n_spot + 1, sizeof(SpotAsset *));
    p->zero = calloc((size_t)f->n_spot + 1, sizeof(ZeroAsset));
    p->plist = calloc((size_t)f->P + 1, sizeof(int));
    p->riskyp = calloc((size_t)f->n_risky + 1, sizeof(RiskyAsset *));
    p->fg = calloc((size_t)f->n_fg + 1, sizeof(FloorGroup));
    p->sg = calloc((size_t)f->n_sg + 1, sizeof(ShockGroup));
    p->pg = calloc((size_t)f->n_pg + 1, sizeof(PredGroup));
    p->members = calloc((size_t)(4 * f->A + 4), sizeof(int));
    p->glist = calloc((size_t)f->G + 1, sizeof(int));
    r->sup = calloc((size_t)f->A, 1);
    r->gsup = calloc((size_t)f->G + 1, 1);
    r->ready = p->held && p->zero && p->plist && p->riskyp && p->fg && p->sg && p->pg && p->members && p->glist &&
               r->sup && r->gsup;
    return r->ready;
}

static void reduced_free(Reduced *r) {
    free(r->p.held); free(r->p.zero); free(r->p.plist); free(r->p.riskyp); free(r->p.fg); free(r->p.sg);
    free(r->p.pg); free(r->p.members); free(r->p.glist); free(r->sup);
    free(r->gsup);
}

/* Of a group's members, those in the support, in order, into out; their count. */
static int held_members(const int *members, int count, const uint8_t *sup, int *out) {
    int k = 0;
    for (int m = 0; m < count; m++)
        if (sup[members[m]]) out[k++] = members[m];
    return k;
}

static void reduce_plan(const Plan *f, uint64_t key, Reduced *r) {
    const int A = f->A;
    Plan *p = &r->p;
    uint8_t *sup = r->sup;
    const SpotAsset **held = p->held;
    ZeroAsset *zero = p->zero;
    int *plist = p->plist, *members = p->members, *glist = p->glist;
    const RiskyAsset **riskyp = p->riskyp;
    FloorGroup *fg = p->fg;
    ShockGroup *sg = p->sg;
    PredGroup *pg = p->pg;
    *p = *f; /* the scalars and the shared arrays (perp_under, perp_coef) */
    p->held = held; p->zero = zero; p->plist = plist; p->members = members; p->riskyp = riskyp;
    p->fg = fg; p->sg = sg; p->pg = pg; p->glist = glist;
    p->spot = NULL; p->risky = NULL; /* (run_block walks held and riskyp) */
    sup[0] = 0;
    for (int a = 1; a < A; a++) sup[a] = (uint8_t)((key >> (a - 1)) & 1);
    for (int i = 0; i < f->P; i++)
        if ((key >> (A - 1 + i)) & 1) sup[f->perp_under[i]] = 1;
    /* the perps held, and those none holds on a held underlying: numpy adds their +0.0 notional,
     * which turns a -0.0 exposure (a short quantity at a price of 0) into +0.0 */
    p->n_plist = 0;
    for (int i = 0; i < f->P; i++)
        if (sup[f->perp_under[i]]) plist[p->n_plist++] = i;
    p->n_held = p->n_zero = 0;
    for (int j = 0; j < f->n_spot; j++) {
        const SpotAsset *s = &f->spot[j];
        if (sup[s->a]) held[p->n_held++] = s;
        else zero[p->n_zero++] = (ZeroAsset){.a = s->a, .floor = s->floor, .perpa = s->perpa, .s0 = s->s[0]};
    }
    int used = 0;
    p->n_fg = 0;
    for (int g = 0; g < f->n_fg; g++) {
        FloorGroup *d = &fg[p->n_fg];
        *d = f->fg[g];
        d->members = members + used;
        d->count = held_members(f->fg[g].members, f->fg[g].count, sup, d->members);
        used += d->count;
        p->n_fg += d->count > 0;
    }
    p->n_risky = 0;
    for (int j = 0; j < f->n_risky; j++)
        if (sup[f->risky[j].a]) riskyp[p->n_risky++] = &f->risky[j];
    p->n_sg = 0;
    for (int g = 0; g < f->n_sg; g++) {
        ShockGroup *d = &sg[p->n_sg];
        *d = f->sg[g]; /* (multi and idio_pos stay the spec group's) */
        d->members = members + used;
        d->count = held_members(f->sg[g].members, f->sg[g].count, sup, d->members);
        used += d->count;
        p->n_sg += d->count > 0;
    }
    p->n_pg = 0;
    for (int j = 0; j < f->n_pg; j++)
        if (sup[f->pg[j].a]) pg[p->n_pg++] = f->pg[j];
    /* the groups written (a group left out has a loss of +0.0: nothing to the sum, nothing to the
     * largest, both >= +0.0) */
    memset(r->gsup, 0, (size_t)f->G + 1);
    for (int g = 0; g < p->n_sg; g++) r->gsup[sg[g].gi] = 1;
    for (int j = 0; j < p->n_pg; j++) r->gsup[pg[j].gi] = 1;
    p->n_glist = 0;
    for (int g = 0; g < f->G; g++)
        if (r->gsup[g]) glist[p->n_glist++] = g;
}

/* The plan for a block whose support is `key`: the last one, a cached one, or a new reduction
 * (the oldest cached one replaced); the full plan when memory is short. */
static const Plan *plan_for(PlanCache *c, const Plan *full, uint64_t key) {
    if (c->last >= 0 && c->e[c->last].key == key) return &c->e[c->last].p;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].key == key) {
            c->last = i;
            return &c->e[i].p;
        }
    int i;
    if (c->n < CACHED_PLANS) {
        i = c->n;
        if (!reduced_alloc(&c->e[i], full)) {
            reduced_free(&c->e[i]);
            return full;
        }
        c->n++;
    } else {
        i = c->next;
        c->next = (c->next + 1) % CACHED_PLANS;
    }
    reduce_plan(full, key, &c->e[i]);
    c->e[i].key = key;
    c->last = i;
    return &c->e[i].p;
}

/* The rows [lo, hi) of a job, with a worker's work space and plan cache; the region of `changed`
 * (and below, news) from lo is the job's own, so jobs can run at once and their lists be joined in
 * row order after. */
static void run_range(Job *job, double *ws, PlanCache *cache) {
    const Plan *full = job->plan;
    const int A = full->A, P = full->P;
    const int keyed = cache != NULL;
    Py_ssize_t nchanged = 0, nbelow = 0, nnews = 0;
    int overflow = 0;
    for (Py_ssize_t i = job->lo; i < job->hi && !overflow; i += LANES) {
        const int L = (int)(job->hi - i < LANES ? job->hi - i : LANES);
        const int64_t *rws = job->rows + i;
        int holds[LANES];
        const Plan *plan = full;
        if (keyed) { /* the block's support: a bit per column any row of it holds */
            const int64_t *bl[LANES], *sl[LANES], *cl[LANES];
            int64_t h[LANES];
            FOR_L {
                const int64_t r = rws[l < L ? l : 0];
                bl[l] = job->balance + r * A;
                sl[l] = job->psize + r * P;
                cl[l] = job->pcost + r * P;
                h[l] = 0;
            }
            uint64_t key = 0;
            for (int a = 1; a < A; a++) {
                int64_t u = 0;
                FOR_L {
                    h[l] |= bl[l][a];
                    u |= bl[l][a];
                }
                key |= (uint64_t)(u != 0) << (a - 1);
            }
            for (int p = 0; p < P; p++) {
                int64_t u = 0;
                FOR_L {
                    const int64_t v = sl[l][p] | cl[l][p];
                    h[l] |= v;
                    u |= v;
                }
                key |= (uint64_t)(u != 0) << (A - 1 + p);
            }
            FOR_L holds[l] = h[l] != 0;
            plan = plan_for(cache, full, key);
        } else {
            FOR_L {
                const int64_t r = rws[l < L ? l : 0];
                const int64_t *bal = job->balance + r * A, *ps = job->psize + r * P, *pc = job->pcost + r * P;
                holds[l] = 0;
                for (int a = 1; a < A; a++) holds[l] |= (bal[a] != 0);
                for (int p = 0; p < P; p++) holds[l] |= (ps[p] != 0) | (pc[p] != 0);
            }
        }
        run_block(plan, job, rws, L, holds, ws, &nchanged, &nbelow, &nnews, &overflow);
    }
    job->nnews = nnews;
    job->nchanged = nchanged;
    job->nbelow = nbelow;
    job->overflow = overflow;
    job->ran = 1;
}

/* A call's rows in chunks of CHUNK_ROWS, taken in turn by the calling thread and (over
 * THREAD_MIN_ROWS rows) one helper: a helper the kernel starts late only costs the chunk it is
 * in, not half of the call. */
#define CHUNK_ROWS 4096

typedef struct {
    Job *jobs;
    Py_ssize_t njobs, next; /* next: taken with an atomic add */
    int failed;             /* the calling thread's work space could not be had */
} Work;

static void *worker(void *arg) {
    Work *w = arg;
    const Plan *full = w->jobs[0].plan;
    const int A = full->A, G = full->G, P = full->P;
    double *ws = malloc(sizeof(double) * (size_t)LANES * (size_t)(5 * A + G + 1));
    PlanCache *cache = A - 1 + P <= SUPPORT_BITS ? calloc(1, sizeof(PlanCache)) : NULL;
    if (ws && (cache || A - 1 + P > SUPPORT_BITS)) {
        if (cache) cache->last = -1;
        for (;;) {
            const Py_ssize_t i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);
            if (i >= w->njobs) break;
            run_range(&w->jobs[i], ws, cache);
        }
    } else {
        __atomic_store_n(&w->failed, 1, __ATOMIC_RELAXED);
    }
    if (cache) {
        for (int k = 0; k < cache->n; k++) reduced_free(&cache->e[k]);
        free(cache);
    }
    free(ws);
    return NULL;
}

static PyObject *recompute(PyObject *self, PyObject *args, PyObject *kw) {
    /* ints, dbls, balance, perp_size, perp_cost, rows, equity, initial, maintenance, exposure, changed, below;
     * settle: reserved, converting, dirty; news: out, private_seq, published_equity, published_initial,
     * published_maintenance, published_seq, isolated_market (or None); near: flags */
    enum { NB = 23, NREQ = 12, SETTLE = 12, NEWS = 15, ISO = 21, NEAR = 22 };
    static char *kwlist[] = {"ints", "dbls", "balance", "perp_size", "perp_cost", "rows", "equity", "initial",
                             "maintenance", "exposure", "changed", "below", "threads", "settle", "news", "near", NULL};
    PyObject *o[NB] = {0}, *settle_args = Py_None, *news_args = Py_None, *near_args = Py_None;
    int threads = 1;
    double near_reach = 0.0;
    long long fee_row = -1, publish_ppm = 0, f_maint = 0, f_init = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOOOO|iOOO", kwlist, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                                     &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &threads, &settle_args, &news_args,
                                     &near_args))
        return NULL;
    const int do_settle = settle_args != Py_None, do_news = news_args != Py_None, do_near = near_args != Py_None;
    if (do_near && !PyArg_ParseTuple(near_args, "Od;near: (flags, reach)", &o[NEAR], &near_reach)) return NULL;
    if (do_settle && !PyArg_ParseTuple(settle_args, "OOO;settle: (reserved, converting, dirty)", &o[12], &o[13], &o[14]))
        return NULL;
    if (do_news && !PyArg_ParseTuple(news_args,
                                     "OOOOOOOLLLL;news: (out, private_seq, published_equity, published_initial, "
                                     "published_maintenance, published_seq, isolated_market or None, fee_row, "
                                     "publish_ppm, below_maintenance, below_initial)",
                                     &o[15], &o[16], &o[17], &o[18], &o[19], &o[20], &o[21], &fee_row, &publish_ppm,
                                     &f_maint, &f_init))
        return NULL;
    if (do_news && (publish_ppm < 0 || publish_ppm > 1000000)) {
        PyErr_SetString(PyExc_ValueError, "publish_ppm outside [0, 1e6]");
        return NULL;
    }
    Buf b[NB];
    memset(b, 0, sizeof b);
    static const int writable[NB] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1};
    static const Py_ssize_t isz[NB] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 1, 8, 8, 8, 8, 8, 8, 8, 1};
    static const char *names[NB] = {"ints", "dbls", "balance", "perp_size", "perp_cost", "rows", "equity",
                                    "initial", "maintenance", "exposure", "changed", "below", "reserved",
                                    "converting", "dirty", "news", "private_seq", "published_equity",
                                    "published_initial", "published_maintenance", "published_seq",
                                    "isolated_market", "near"};
    PyObject *result = NULL;
    Plan plan;
    int have_plan = 0;
    for (int i = 0; i < NB; i++) {
        const int wanted = i < NREQ || (i >= SETTLE && i < NEWS && do_settle) ||
                           (i >= NEWS && i < NEAR && do_news && !(i == ISO && o[i] == Py_None)) ||
                           (i == NEAR && do_near);
        if (wanted && get_buf(o[i], &b[i], writable[i], isz[i], names[i]) < 0) goto done;
    }
    if (plan_read(&plan, b[0].b.buf, b[0].b.len / 8, b[1].b.buf, b[1].b.len / 8) < 0) goto done;
    have_plan = 1;
    const int A = plan.A, P = plan.P;
    const Py_ssize_t cap = b[6].b.len / 8;
    if (b[2].b.len / 8 != cap * A || b[3].b.len / 8 != cap * P || b[4].b.len / 8 != cap * P ||
        b[7].b.len / 8 != cap || b[8].b.len / 8 != cap || b[9].b.len / 8 != cap * A) {
        PyErr_SetString(PyExc_ValueError, "account columns of different capacities");
        goto done;
    }
    for (int i = SETTLE; i < NB; i++)
        if (b[i].held && i != NEWS && b[i].b.len / b[i].b.itemsize != cap) {
            PyErr_Format(PyExc_ValueError, "%s: not a column of the book's capacity", names[i]);
            goto done;
        }
    const Py_ssize_t n = b[5].b.len / 8;
    if (b[10].b.len / 8 < n || b[11].b.len / 8 < n || (do_news && b[NEWS].b.len / 8 < n)) {
        PyErr_SetString(PyExc_ValueError, "changed / below / news: shorter than rows");
        goto done;
    }
    const int64_t *balance = b[2].b.buf, *psize = b[3].b.buf, *pcost = b[4].b.buf, *rows = b[5].b.buf;
    int64_t *equity = b[6].b.buf, *initial = b[7].b.buf, *maint = b[8].b.buf, *changed = b[10].b.buf,
            *below = b[11].b.buf;
    double *exposure = b[9].b.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= cap) {
            PyErr_Format(PyExc_IndexError, "row %lld outside the book", (long long)rows[i]);
            goto done;
        }
    Py_ssize_t nchanged = 0, nbelow = 0, nnews = 0;
    int overflow = 0;
    const int split = threads > 1 && n >= THREAD_MIN_ROWS;
    const Py_ssize_t njobs = split ? (n + CHUNK_ROWS - 1) / CHUNK_ROWS : 1;
    Job *jobs = PyMem_RawCalloc((size_t)njobs, sizeof(Job));
    if (!jobs) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < njobs; j++) {
        Job *job = &jobs[j];
        *job = (Job){.plan = &plan, .balance = balance, .psize = psize, .pcost = pcost, .rows = rows,
                     .equity = equity, .initial = initial, .maint = maint, .exposure = exposure};
        job->lo = split ? j * CHUNK_ROWS : 0;
        job->hi = split && job->lo + CHUNK_ROWS < n ? job->lo + CHUNK_ROWS : n;
        job->changed = changed + job->lo;
        job->below = below + job->lo;
        if (do_settle) {
            job->reserved = b[12].b.buf;
            job->converting = b[13].b.buf;
            job->dirty = b[14].b.buf;
        }
        if (do_near) {
            job->near = b[NEAR].b.buf;
            job->near_reach = near_reach;
        }
        if (do_news) {
            job->news = (int64_t *)b[NEWS].b.buf + job->lo;
            job->pseq = b[16].b.buf;
            job->peq = b[17].b.buf;
            job->pim = b[18].b.buf;
            job->pmm = b[19].b.buf;
            job->pps = b[20].b.buf;
            job->iso = b[ISO].held ? b[ISO].b.buf : NULL;
            job->fee_row = fee_row;
            job->publish_ppm = publish_ppm;
            job->f_maint = f_maint;
            job->f_init = f_init;
        }
    }
    Work work = {.jobs = jobs, .njobs = njobs, .next = 0, .failed = 0};
    pthread_t helper;
    const int helped = split && pthread_create(&helper, NULL, worker, &work) == 0;
    worker(&work);
    if (helped) pthread_join(helper, NULL);
    /* each job's lists start at its lo: joined in row order */
    for (Py_ssize_t j = 0; j < njobs; j++) {
        const Job *job = &jobs[j];
        if (!job->ran) {
            overflow = -1; /* (no work space for it) */
            continue;
        }
        memmove(changed + nchanged, job->changed, sizeof(int64_t) * (size_t)job->nchanged);
        nchanged += job->nchanged;
        memmove(below + nbelow, job->below, sizeof(int64_t) * (size_t)job->nbelow);
        nbelow += job->nbelow;
        if (do_news) memmove((int64_t *)b[NEWS].b.buf + nnews, job->news, sizeof(int64_t) * (size_t)job->nnews);
        nnews += job->nnews;
        if (job->overflow && overflow >= 0) overflow = job->overflow;
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(jobs);
    if (overflow < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError,
                        "an equity or margin beyond what the vectorised recompute rounds to int64 safely");
        goto done;
    }
    result = do_news ? Py_BuildValue("nnn", nchanged, nbelow, nnews) : Py_BuildValue("nn", nchanged, nbelow);
done:
    if (have_plan) plan_free(&plan);
    for (int i = 0; i < NB; i++)
        if (b[i].held) PyBuffer_Release(&b[i].b);
    return result;
}

/* pack_margin(rows, ids, private_seq, equity, initial, maintenance, reserved, published_equity,
 * published_initial, published_maintenance, published_seq, partition, partitions, system_base,
 * below_maintenance, below_initial, publish_ppm) -> bytes: of `rows` (their margin changed), the
 * ones that are news (RiskEngine._margin_news, the Python twin: a private event since the last
 * ACCOUNT_MARGIN, a threshold crossed, or equity / initial moved more than publish_ppm of the
 * account's scale) each get one ACCOUNT_MARGIN, packed as RiskEngine.pack_private packs them (an
 * owned row's private sequence number advances and is carried; another partition's gets seq 0),
 * and their published_* columns take the new figures. */
static PyObject *pack_margin(PyObject *self, PyObject *args) {
    enum { NB = 11 };
    PyObject *o[NB];
    long long partition, partitions, system_base, f_maint, f_init, publish_ppm;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOLLLLLL", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                          &o[9], &o[10], &partition, &partitions, &system_base, &f_maint, &f_init, &publish_ppm))
        return NULL;
    if (partitions < 1 || partition < 0 || partition >= partitions || publish_ppm < 0 || publish_ppm > 1000000) {
        PyErr_SetString(PyExc_ValueError, "partition outside [0, partitions) or publish_ppm outside [0, 1e6]");
        return NULL;
    }
    Buf b[NB];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    int64_t *pick = NULL;
    static const Py_ssize_t isz[NB] = {8, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8};
    static const int writable[NB] = {0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1};
    static const char *names[NB] = {"rows", "ids", "private_seq", "equity", "initial", "maintenance", "reserved",
                                    "published_equity", "published_initial", "published_maintenance",
                                    "published_seq"};
    for (int i = 0; i < NB; i++)
        if (get_buf(o[i], &b[i], writable[i], isz[i], names[i]) < 0) goto done;
    const Py_ssize_t n = b[0].b.len / 8, cap = b[1].b.len / 4;
    for (int i = 2; i < NB; i++)
        if (b[i].b.len / 8 != cap) {
            PyErr_SetString(PyExc_ValueError, "account columns of different capacities");
            goto done;
        }
    const int64_t *rows = b[0].b.buf, *eq = b[3].b.buf, *im = b[4].b.buf, *mm = b[5].b.buf, *res = b[6].b.buf;
    const uint32_t *ids = b[1].b.buf;
    int64_t *pseq = b[2].b.buf, *peq = b[7].b.buf, *pim = b[8].b.buf, *pmm = b[9].b.buf, *pps = b[10].b.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= cap) {
            PyErr_Format(PyExc_IndexError, "row %lld outside the book", (long long)rows[i]);
            goto done;
        }
    pick = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!pick) { PyErr_NoMemory(); goto done; }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t r = rows[i];
        if (is_news(pseq, peq, pim, pmm, pps, r, eq[r], im[r], mm[r], f_maint, f_init, publish_ppm)) pick[m++] = r;
    }
    result = PyBytes_FromStringAndSize(NULL, m * HX_SLOT_BYTES);
    if (!result) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < m; i++) {
        const int64_t r = pick[i];
        const int64_t id = ids[r];
        const int owned = id >= system_base ? ((id - system_base) & 0x3F) == partition : id % partitions == partition;
        uint64_t seq = 0;
        if (owned) {
            pseq[r] += 1;
            seq = (uint64_t)pseq[r];
        }
        hx_put_account_margin(out + i * HX_SLOT_BYTES, 0, seq, (uint32_t)id, margin_flags(eq[r], im[r], mm[r], f_maint, f_init),
                              eq[r], im[r], mm[r], res[r]);
        peq[r] = eq[r];
        pim[r] = im[r];
        pmm[r] = mm[r];
        pps[r] = pseq[r];
    }
done:
    free(pick);
    for (int i = 0; i < NB; i++)
        if (b[i].held) PyBuffer_Release(&b[i].b);
    return result;
}

/* near(rows, equity, maintenance, reach, out, ratio) -> count: the rows of `rows` with a
 * maintenance requirement and a headroom over it below `reach` times it, (double)(equity -
 * maintenance) < (double)maintenance * reach, listed in `out` in order with their headroom /
 * maintenance in `ratio` (RiskEngine._nearest; its numpy twin evaluates the same double operations). */
static PyObject *near(PyObject *self, PyObject *args) {
    PyObject *o[5];
    double reach;
    PyObject *out_o, *ratio_o;
    if (!PyArg_ParseTuple(args, "OOOdOO", &o[0], &o[1], &o[2], &reach, &out_o, &ratio_o)) return NULL;
    Buf b[5];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    static const char *names[5] = {"rows", "equity", "maintenance", "out", "ratio"};
    o[3] = out_o;
    o[4] = ratio_o;
    for (int i = 0; i < 5; i++)
        if (get_buf(o[i], &b[i], i >= 3, 8, names[i]) < 0) goto done;
    const Py_ssize_t n = b[0].b.len / 8, cap = b[1].b.len / 8;
    if (b[2].b.len / 8 != cap || b[3].b.len / 8 < n || b[4].b.len / 8 < n) {
        PyErr_SetString(PyExc_ValueError, "columns of different capacities, or out / ratio shorter than rows");
        goto done;
    }
    const int64_t *rows = b[0].b.buf, *eq = b[1].b.buf, *mm = b[2].b.buf;
    int64_t *out = b[3].b.buf;
    double *ratio = b[4].b.buf;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t r = rows[i];
        if (r < 0 || r >= cap) {
            PyErr_Format(PyExc_IndexError, "row %lld outside the book", (long long)r);
            goto done;
        }
        if (within_reach(eq[r], mm[r], reach, &ratio[m])) out[m++] = r;
    }
    result = PyLong_FromSsize_t(m);
done:
    for (int i = 0; i < 5; i++)
        if (b[i].held) PyBuffer_Release(&b[i].b);
    return result;
}

/* mark_held(dirty, perp_size, balance, perps, assets, n): dirty[r] |= the row holds (a non-zero
 * entry of) any of the perps `perps` or the assets `assets`, for every row r < n, in one pass over
 * the rows (RiskEngine._flush_touched: its numpy twin reads one strided column per perp and asset). */
static PyObject *mark_held(PyObject *self, PyObject *args) {
    PyObject *o[5];
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOOOOn", &o[0], &o[1], &o[2], &o[3], &o[4], &n)) return NULL;
    Buf b[5];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    static const char *names[5] = {"dirty", "perp_size", "balance", "perps", "assets"};
    static const Py_ssize_t sizes[5] = {1, 8, 8, 8, 8};
    for (int i = 0; i < 5; i++)
        if (get_buf(o[i], &b[i], i == 0, sizes[i], names[i]) < 0) goto done;
    if (b[1].b.ndim != 2 || b[2].b.ndim != 2) {
        PyErr_SetString(PyExc_ValueError, "perp_size and balance must be 2-D (rows x columns)");
        goto done;
    }
    const Py_ssize_t P = b[1].b.shape[1], A = b[2].b.shape[1];
    const Py_ssize_t np_ = b[3].b.len / 8, na = b[4].b.len / 8;
    if (n < 0 || n > b[0].b.len || n > b[1].b.shape[0] || n > b[2].b.shape[0]) {
        PyErr_SetString(PyExc_ValueError, "n beyond a column");
        goto done;
    }
    const int64_t *perps = b[3].b.buf, *assets = b[4].b.buf;
    for (Py_ssize_t i = 0; i < np_; i++)
        if (perps[i] < 0 || perps[i] >= P) {
            PyErr_Format(PyExc_IndexError, "perp %lld outside the book", (long long)perps[i]);
            goto done;
        }
    for (Py_ssize_t i = 0; i < na; i++)
        if (assets[i] < 0 || assets[i] >= A) {
            PyErr_Format(PyExc_IndexError, "asset %lld outside the book", (long long)assets[i]);
            goto done;
        }
    uint8_t *dirty = b[0].b.buf;
    const int64_t *ps = b[1].b.buf, *bal = b[2].b.buf;
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t any = 0;
        for (Py_ssize_t i = 0; i < np_; i++) any |= ps[r * P + perps[i]];
        for (Py_ssize_t i = 0; i < na; i++) any |= bal[r * A + assets[i]];
        if (any) dirty[r] = 1;
    }
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < 5; i++)
        if (b[i].held) PyBuffer_Release(&b[i].b);
    return result;
}

/* adl_scores(perp_size, perp_cost, initial, equity, ids, n, perp, sign, mark_per_atom, system_base,
 * rows, scores) -> count: the rows r < n holding a position of `sign` (+1 long, -1 short) in column
 * `perp`, of an account below `system_base`, with a positive ADL score, in row order, listed in
 * `rows` with their scores in `scores`. The score is Liquidator._ranked's numpy expression, the
 * same doubles (no FMA: built with -ffp-contract=off): value = size * mark_per_atom,
 * upnl = value - cost, score = (upnl / max(initial, 1)) * (|value| / equity) where upnl > 0 and
 * equity > 0. One pass over the rows without numpy's temporaries (a bounded liquidation scan
 * ranks afresh in every record of a cascade). */
static PyObject *adl_scores(PyObject *self, PyObject *args) {
    PyObject *o[7];
    Py_ssize_t n, perp;
    int sign;
    double m;
    long long system_base;
    if (!PyArg_ParseTuple(args, "OOOOOnnidLOO", &o[0], &o[1], &o[2], &o[3], &o[4], &n, &perp, &sign, &m,
                          &system_base, &o[5], &o[6]))
        return NULL;
    Buf b[7];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    static const char *names[7] = {"perp_size", "perp_cost", "initial", "equity", "ids", "rows", "scores"};
    static const Py_ssize_t sizes[7] = {8, 8, 8, 8, 4, 8, 8};
    for (int i = 0; i < 7; i++)
        if (get_buf(o[i], &b[i], i >= 5, sizes[i], names[i]) < 0) goto done;
    if (b[0].b.ndim != 2 || b[1].b.ndim != 2 || b[0].b.shape[1] != b[1].b.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "perp_size and perp_cost must be 2-D with the same columns");
        goto done;
    }
    const Py_ssize_t P = b[0].b.shape[1];
    if (perp < 0 || perp >= P) {
        PyErr_Format(PyExc_IndexError, "perp %zd outside the book", perp);
        goto done;
    }
    if (sign != 1 && sign != -1) {
        PyErr_SetString(PyExc_ValueError, "sign must be 1 or -1");
        goto done;
    }
    if (n < 0 || n > b[0].b.shape[0] || n > b[1].b.shape[0] || n > b[2].b.len / 8 || n > b[3].b.len / 8 ||
        n > b[4].b.len / 4 || n > b[5].b.len / 8 || n > b[6].b.len / 8) {
        PyErr_SetString(PyExc_ValueError, "n beyond a column");
        goto done;
    }
    const int64_t *ps = b[0].b.buf, *pc = b[1].b.buf, *init = b[2].b.buf, *eq = b[3].b.buf;
    const uint32_t *ids = b[4].b.buf;
    int64_t *rows = b[5].b.buf;
    double *scores = b[6].b.buf;
    Py_ssize_t k = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        const int64_t size = ps[r * P + perp];
        if ((sign > 0 ? size <= 0 : size >= 0) || (long long)ids[r] >= system_base) continue;
        const double value = (double)size * m;
        const double upnl = value - (double)pc[r * P + perp];
        const double equity = (double)eq[r];
        if (!(upnl > 0 && equity > 0)) continue;
        const double margin = (double)(init[r] > 1 ? init[r] : 1);
        const double score = (upnl / margin) * (fabs(value) / equity);
        if (score > 0) {
            rows[k] = r;
            scores[k] = score;
            k++;
        }
    }
    result = PyLong_FromSsize_t(k);
done:
    for (int i = 0; i < 7; i++)
        if (b[i].held) PyBuffer_Release(&b[i].b);
    return result;
}

static PyMethodDef methods[] = {
    {"adl_scores", adl_scores, METH_VARARGS,
     "adl_scores(perp_size, perp_cost, initial, equity, ids, n, perp, sign, mark_per_atom, system_base, rows, "
     "scores) -> count: the rows with a position of sign in perp and a positive ADL score, with the scores"},
    {"mark_held", mark_held, METH_VARARGS,
     "mark_held(dirty, perp_size, balance, perps, assets, n): dirty[r] |= row r holds any of perps or assets, r < n"},
    {"near", near, METH_VARARGS,
     "near(rows, equity, maintenance, reach, out, ratio) -> count: the rows whose headroom over maintenance is "
     "below reach x maintenance, listed in out, their headroom / maintenance in ratio"},
    {"pack_margin", pack_margin, METH_VARARGS,
     "pack_margin(rows, ids, private_seq, equity, initial, maintenance, reserved, published_equity, "
     "published_initial, published_maintenance, published_seq, partition, partitions, system_base, "
     "below_maintenance, below_initial, publish_ppm) -> bytes: an ACCOUNT_MARGIN per row that is news"},
    {"recompute", (PyCFunction)(void (*)(void))recompute, METH_VARARGS | METH_KEYWORDS,
     "recompute(ints, dbls, balance, perp_size, perp_cost, rows, equity, initial, maintenance, exposure, "
     "changed, below, threads=1, settle=None, news=None, near=None) -> (changed count, below count[, news count]): margins "
     "of `rows` written in place; the rows whose figures changed listed in `changed`, those below maintenance in "
     "`below`; with near=(flags, reach) each row's flag is set when its headroom over maintenance is below reach x "
     "maintenance; with settle=(reserved, converting, dirty) each row is also settled (reserved -= converting, converting = 0, not dirty); with "
     "news=(out, private_seq, published_equity, published_initial, published_maintenance, published_seq, "
     "isolated_market or None, fee_row, publish_ppm, below_maintenance, below_initial) the changed rows but "
     "fee_row and isolated positions' that pack_margin would publish are listed in `out`"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hxmargin", "Compiled margin recompute.", -1, methods};

PyMODINIT_FUNC PyInit__hxmargin(void) { return PyModule_Create(&module); }
