/* trend.h — statistics on a series of samples (trend.c): the Mann-Kendall
 * test and the Theil-Sen slope.  Pure functions on plain arrays: no Python,
 * no state.  The verdict rules built on them are refhound/verdict.py. */
#ifndef RH_TREND_H
#define RH_TREND_H

#ifndef REFHOUND_CORE_BUILD
#error "trend.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

typedef struct {
    double slope;        /* Theil-Sen slope per sample */
    double p_up;         /* Mann-Kendall one-sided p-values (1 when there is no test) */
    double p_down;
    double s;            /* Mann-Kendall S */
} rh_trend_stats_t;

/* The statistics of x[0..n).  A constant series has slope 0 and p-values 1. */
void _rh_trend_stats(const double *x, int n, rh_trend_stats_t *out);

#endif /* RH_TREND_H */
