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
 * One call: for every row of `rows` (four rows interleaved; split between two threads when asked
 * and there are many: rows are independent, so the bytes do not depend on either), equity /
 * initial / maintenance (int64, micro) and the exposure row (float64) are written into the account
 * book's columns in place; the rows whose three figures changed are listed in `changed`, those
 * below maintenance (MM > 0, equity < MM) in `below`, both counted in the returned pair. A row
 * that holds nothing but cash gets the exact figures (equity = cash, no margin), as
 * MarginModel.recompute.
 * An equity or margin beyond 2**62 micro raises OverflowError as numpy does; unlike numpy, the
 * rows before it (in each thread's half) are already written. Either way the risk process stops
 * on it (the engine's checked int64 columns keep real books far below).
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
    int gi, count, ext, idio_pos;
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
    int A, P, G;
    int n_spot, n_fg, n_risky, n_sg, n_pg, wk_gt1;
    SpotAsset *spot;
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
    free(p->sg); free(p->pg); free(p->members);
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
    int overflow;
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

static void run_block(const Plan *pp, const Job *job, const int64_t *rws, int L, double *ws, Py_ssize_t *nchanged,
                      Py_ssize_t *nbelow, Py_ssize_t *nnews, int *overflow) {
    int64_t *changed = job->changed, *below = job->below;
    const Plan plan = *pp;
    const int A = plan.A, P = plan.P, G = plan.G;
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
    int holds[LANES];
    int64_t cost[LANES];
    /* 1-3. spot values */
    FOR_L {
        X(expo_l, 0) = (double)bal[l][0];
        mag[l] = fabs(X(expo_l, 0));
        holds[l] = 0;
        cost[l] = 0;
        for (int a = 1; a < A; a++) holds[l] |= (bal[l][a] != 0);
    }
    for (int j = 0; j < plan.n_spot; j++) {
        const SpotAsset *s = &plan.spot[j];
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
    for (int p = 0; p < P; p++) {
        const int a = plan.perp_under[p];
        const double coef = plan.perp_coef[p];
        int any = 0;
        FOR_L any |= (ps[l][p] != 0) | (pc[l][p] != 0);
        if (!any) continue; /* adds +0.0 and 0 only: nothing a later step can tell apart */
        FOR_L {
            holds[l] |= (ps[l][p] != 0) | (pc[l][p] != 0);
            const double t = (double)ps[l][p] * coef;
            X(expo_l, a) += t;
            X(gross, a) += fabs(t);
            cost[l] = (int64_t)((uint64_t)cost[l] + (uint64_t)pc[l][p]); /* numpy int64 adds wrap */
        }
    }
    FOR_L eq[l] = X(expo_l, 0);
    for (int j = 0; j < plan.n_spot; j++) {
        const int a = plan.spot[j].a;
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
    for (int g = 0; g < plan.n_fg; g++) {
        const FloorGroup *f = &plan.fg[g];
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
    for (int j = 0; j < plan.n_risky; j++) {
        const RiskyAsset *s = &plan.risky[j];
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
    for (int g = 0; g < G; g++) FOR_L X(loss, g) = 0.0;
    for (int j = 0; j < plan.n_sg; j++) {
        const ShockGroup *g = &plan.sg[j];
        FOR_L {
            double s_sum, lg;
            if (g->count == 1) {
                s_sum = X(sgn, g->members[0]);
                lg = fabs(s_sum);
            } else {
                s_sum = X(sgn, g->members[0]) + X(sgn, g->members[1]);
                for (int m = 2; m < g->count; m++) s_sum += X(sgn, g->members[m]);
                lg = fabs(s_sum);
                if (g->idio_pos) {
                    double t2 = np_max(X(shock, g->members[0]), X(shock, g->members[1]));
                    for (int m = 2; m < g->count; m++) t2 = np_max(t2, X(shock, g->members[m]));
                    t2 *= g->idio;
                    lg = np_max(lg, t2);
                }
            }
            if (plan.wk_gt1) lg = np_max(lg, s_sum * plan.neg_wk);
            if (g->ext) {
                double ext = 0.0;
                for (int m = 0; m < g->count; m++) {
                    const int a = g->members[m];
                    double t3 = X(shock, a) * plan.k;
                    t3 = np_min(t3, fabs(X(expo_l, a)));
                    t3 = copysign(t3, X(expo_l, a));
                    ext += t3;
                }
                ext *= plan.w;
                lg = np_max(lg, ext);
            }
            X(loss, g->gi) = lg;
        }
    }
    for (int j = 0; j < plan.n_pg; j++) {
        const PredGroup *g = &plan.pg[j];
        FOR_L X(loss, g->gi) = np_max(X(expo_l, g->a), (double)bal[l][g->a] * g->coef);
    }
    FOR_L im[l] = 0.0;
    if (G) {
        double largest[LANES];
        FOR_L largest[l] = 0.0;
        for (int g = 0; g < G; g++) FOR_L X(loss, g) = np_max(X(loss, g), 0.0);
        for (int g = 0; g < G; g++) FOR_L {
                im[l] += X(loss, g);
                largest[l] = np_max(largest[l], X(loss, g));
            }
        FOR_L {
            im[l] *= plan.one_minus_offset;
            largest[l] *= plan.offset;
            im[l] += largest[l];
        }
    }
    /* 8. against the account, with the safety margin; write the valid lanes */
    for (int l = 0; l < L; l++) {
        double m_ = np_max(im[l], floor_[l]);
        double t1 = mag[l] * plan.safety;
        t1 += plan.safety_abs;
        m_ += t1;
        const double e_ = eq[l] - t1;
        if (m_ > plan.max_mag || -e_ > plan.max_mag || e_ > plan.max_mag) {
            *overflow = 1;
            return;
        }
        int64_t out_im = ceil_i64(m_), out_eq = floor_i64(e_), out_mm;
        {
            const int64_t PPM = 1000000;
            const int64_t q = floordiv(out_im, PPM), rem = out_im - q * PPM;
            out_mm = q * plan.mm_f + floordiv(rem * plan.mm_f + PPM - 1, PPM);
        }
        if (!holds[l]) { /* cash only: exact, no margin */
            out_eq = bal[l][0];
            out_im = 0;
            out_mm = 0;
        }
        const int64_t r = row[l];
        double *dst = job->exposure + r * A;
        for (int a = 0; a < A; a++) dst[a] = X(expo_l, a);
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
#undef X
}

/* The rows [lo, hi) of a call: no Python, no allocation beyond its work space; the region of
 * `changed` from lo is the job's own, so two jobs can run at once and their lists be joined in
 * row order after. */
static void *run_rows(void *arg) {
    Job *job = arg;
    const int A = job->plan->A, G = job->plan->G;
    double *ws = malloc(sizeof(double) * (size_t)LANES * (size_t)(5 * A + G + 1));
    Py_ssize_t nchanged = 0, nbelow = 0, nnews = 0;
    int overflow = 0;
    if (!ws) {
        job->overflow = -1;
        return NULL;
    }
    for (Py_ssize_t i = job->lo; i < job->hi && !overflow; i += LANES) {
        const int L = (int)(job->hi - i < LANES ? job->hi - i : LANES);
        run_block(job->plan, job, job->rows + i, L, ws, &nchanged, &nbelow, &nnews, &overflow);
    }
    free(ws);
    job->nnews = nnews;
    job->nchanged = nchanged;
    job->nbelow = nbelow;
    job->overflow = overflow;
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
    Py_BEGIN_ALLOW_THREADS
    Job jobs[2];
    const int split = threads > 1 && n >= THREAD_MIN_ROWS;
    const Py_ssize_t mid = split ? n / 2 : n;
    for (int j = 0; j < 2; j++) {
        jobs[j] = (Job){.plan = &plan, .balance = balance, .psize = psize, .pcost = pcost, .rows = rows,
                        .equity = equity, .initial = initial, .maint = maint, .exposure = exposure};
        jobs[j].lo = j ? mid : 0;
        jobs[j].hi = j ? n : mid;
        jobs[j].changed = changed + jobs[j].lo;
        jobs[j].below = below + jobs[j].lo;
        if (do_settle) {
            jobs[j].reserved = b[12].b.buf;
            jobs[j].converting = b[13].b.buf;
            jobs[j].dirty = b[14].b.buf;
        }
        if (do_near) {
            jobs[j].near = b[NEAR].b.buf;
            jobs[j].near_reach = near_reach;
        }
        if (do_news) {
            jobs[j].news = (int64_t *)b[NEWS].b.buf + jobs[j].lo;
            jobs[j].pseq = b[16].b.buf;
            jobs[j].peq = b[17].b.buf;
            jobs[j].pim = b[18].b.buf;
            jobs[j].pmm = b[19].b.buf;
            jobs[j].pps = b[20].b.buf;
            jobs[j].iso = b[ISO].held ? b[ISO].b.buf : NULL;
            jobs[j].fee_row = fee_row;
            jobs[j].publish_ppm = publish_ppm;
            jobs[j].f_maint = f_maint;
            jobs[j].f_init = f_init;
        }
    }
    pthread_t helper;
    int helped = split && pthread_create(&helper, NULL, run_rows, &jobs[1]) == 0;
    run_rows(&jobs[0]);
    if (split && !helped) run_rows(&jobs[1]);
    if (helped) pthread_join(helper, NULL);
    /* jobs[0].changed starts at changed[0]: rows changed in job 1 follow it in row order */
    nchanged = jobs[0].nchanged;
    nbelow = jobs[0].nbelow;
    nnews = jobs[0].nnews;
    overflow = jobs[0].overflow;
    if (split) {
        memmove(changed + nchanged, jobs[1].changed, sizeof(int64_t) * (size_t)jobs[1].nchanged);
        nchanged += jobs[1].nchanged;
        memmove(below + nbelow, jobs[1].below, sizeof(int64_t) * (size_t)jobs[1].nbelow);
        nbelow += jobs[1].nbelow;
        if (do_news) memmove(jobs[0].news + nnews, jobs[1].news, sizeof(int64_t) * (size_t)jobs[1].nnews);
        nnews += jobs[1].nnews;
        overflow |= jobs[1].overflow;
    }
    Py_END_ALLOW_THREADS
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

static PyMethodDef methods[] = {
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
