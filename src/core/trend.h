/* trend.h — statistics on a series of samples (trend.c): the Mann-Kendall
 * test and the Theil-Sen slope, and the classification of a series.  Pure
 * functions on plain arrays: no Python, no state. */
#ifndef RH_TREND_H
#define RH_TREND_H

#ifndef REFHOUND_CORE_BUILD
#error "trend.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef enum {
    RH_TREND_FLAT = 0,      /* no change over the window */
    RH_TREND_NOISE = 1,     /* changes, no significant trend */
    RH_TREND_UNCLEAR = 2,   /* leaning one way, not significant yet */
    RH_TREND_GROWING = 3,
    RH_TREND_FALLING = 4
} rh_trend_t;

typedef struct {
    rh_trend_t trend;
    double slope;        /* Theil-Sen slope per sample over the window */
    double p_up;         /* Mann-Kendall one-sided p-values */
    double p_down;
    double window_growth;
    int window;          /* number of samples in the window */
} rh_trend_result_t;

void _rh_trend_classify(const double *x, int n, double alpha, rh_trend_result_t *out);
/* "flat", "noise", "unclear", "growing", "falling". */
const char *_rh_trend_name(rh_trend_t t);

#endif /* RH_TREND_H */
