/* rules.c — LEGACY verdict rules (see rules.h): streaks and p-value
 * thresholds over the trend of each metric.  Pure C over a session's
 * samples; the state of the streaks lives in the caller's rh_rules_t. */
#include "rules.h"

#include <stdlib.h>
#include <string.h>

/* Metrics whose growth makes a leak (the others are shown only). */
static const int verdict_metrics[] = {RH_M_REFS, RH_M_OBJECTS, RH_M_BLOCKS, RH_M_BYTES,
                                      RH_M_NATIVE, RH_M_FDS, RH_M_THREADS};
#define NVERDICT ((int)(sizeof(verdict_metrics) / sizeof(verdict_metrics[0])))

int _rh_rules_classify(rh_rules_t *r, const rh_session_t *s, int *measured)
{
    int base = _rh_session_base(s);
    int m = s->nsamples - 1 - base;     /* measured iterations */
    *measured = m;
    int npoints = m + 1;
    int window = (2 * npoints + 2) / 3;
    if (window < 8)
        window = npoints < 8 ? npoints : 8;
    int start = s->nsamples - window;
    double *x = malloc(sizeof(double) * (window > 0 ? window : 1));
    if (x == NULL)
        return -1;
    for (int k = 0; k < RH_NMETRICS; k++) {
        int missing = 0;
        for (int i = 0; i < window; i++) {
            int64_t v = s->samples[start + i].m[k];
            if (v < 0 && _rh_metric_optional(k))
                missing = 1;
            x[i] = (double)v;
        }
        if (missing)
            memset(&r->trends[k], 0, sizeof(r->trends[k]));
        else
            _rh_trend_classify(x, window, r->alpha, &r->trends[k]);
    }
    free(x);
    return 0;
}

int _rh_rules_decide(rh_rules_t *r, const rh_session_t *s, const char **verdict_out, int *stop_out)
{
    int m;
    if (_rh_rules_classify(r, s, &m) < 0)
        return -1;
    /* unclear: leaning one way without significance.  leaning: any hint of
     * net growth or loss over the window (p < 0.1), which forbids an early
     * "clean": a leak every 10th call, checked one call per iteration,
     * shows as a rare step that needs more iterations to tell from noise.
     * The glibc heap figure is too noisy to hold a check back. */
    int growing = 0, falling = 0, unclear = 0, leaning = 0, flat = 1;
    for (int i = 0; i < NVERDICT; i++) {
        int k = verdict_metrics[i];
        const rh_trend_result_t *t = &r->trends[k];
        if (t->trend == RH_TREND_GROWING)
            growing = 1;
        if (t->trend == RH_TREND_UNCLEAR)
            unclear = 1;
        if (k != RH_M_NATIVE && ((t->p_up < 0.1 && t->window_growth > 0) ||
                                 (t->p_down < 0.1 && t->window_growth < 0)))
            leaning = 1;
        if (t->trend != RH_TREND_FLAT && k != RH_M_NATIVE)
            flat = 0;
    }
    if (r->trends[RH_M_REFS].trend == RH_TREND_FALLING)
        falling = 1;
    r->leak_streak = growing ? r->leak_streak + 1 : 0;
    r->error_streak = falling ? r->error_streak + 1 : 0;
    const char *verdict = "continue";
    int stop = 0;
    if (m >= r->min_measured) {
        if (falling && r->error_streak >= 2) {
            verdict = "error";
            stop = 1;
        }
        else if (growing && r->leak_streak >= 3) {
            verdict = "leak";
            stop = 1;
        }
        else if (!growing && !falling && !unclear && flat) {
            verdict = "clean";
            stop = 1;
        }
        else if (!growing && !falling && !unclear && !leaning && m >= 2 * r->min_measured) {
            verdict = "clean";
            stop = 1;
        }
    }
    if (!stop && (m >= r->max_measured || s->nsamples >= s->max_samples - 1)) {
        stop = 1;
        if (falling)
            verdict = "error";
        else if (growing)
            verdict = "leak";
        else if (unclear)
            verdict = "inconclusive";
        else
            verdict = "clean";
    }
    *verdict_out = verdict;
    *stop_out = stop;
    return 0;
}
