/* trend.c — statistics of a series of samples: the Mann-Kendall test (a
 * rank test for a monotonic trend, with the tie correction: most of our
 * series are integers that repeat) and the Theil-Sen slope (median of
 * pairwise slopes), which ignores the odd outlier.  What they mean for a
 * verdict is decided in Python (refhound/verdict.py), not here.
 *
 * Pure C on plain arrays; no Python, no global state.
 */
#include "trend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double mann_kendall(const double *x, int n, double *p_up, double *p_down)
{
    *p_up = *p_down = 1.0;
    if (n < 3)
        return 0.0;
    double s = 0;
    for (int i = 0; i < n - 1; i++)
        for (int j = i + 1; j < n; j++)
            s += (x[j] > x[i]) - (x[j] < x[i]);
    /* Tie correction: sum over groups of equal values. */
    double *sorted = malloc(sizeof(double) * n);
    if (sorted == NULL)
        return s;
    memcpy(sorted, x, sizeof(double) * n);
    qsort(sorted, n, sizeof(double), cmp_double);
    double ties = 0;
    for (int i = 0; i < n;) {
        int j = i + 1;     /* i + 1: a NaN equals nothing, not even itself */
        while (j < n && sorted[j] == sorted[i])
            j++;
        double t = j - i;
        ties += t * (t - 1) * (2 * t + 5);
        i = j;
    }
    free(sorted);
    double var = ((double)n * (n - 1) * (2.0 * n + 5) - ties) / 18.0;
    if (var <= 0)
        return s;
    double z = 0;
    if (s > 0)
        z = (s - 1) / sqrt(var);
    else if (s < 0)
        z = (s + 1) / sqrt(var);
    *p_up = 0.5 * erfc(z / M_SQRT2);
    *p_down = 0.5 * erfc(-z / M_SQRT2);
    return s;
}

static double theil_sen(const double *x, int n)
{
    if (n < 2)
        return 0.0;
    size_t m = (size_t)n * (n - 1) / 2, k = 0;
    double *slopes = malloc(sizeof(double) * m);
    if (slopes == NULL)
        return (x[n - 1] - x[0]) / (n - 1);
    for (int i = 0; i < n - 1; i++)
        for (int j = i + 1; j < n; j++)
            slopes[k++] = (x[j] - x[i]) / (j - i);
    qsort(slopes, m, sizeof(double), cmp_double);
    double med = (m % 2) ? slopes[m / 2] : 0.5 * (slopes[m / 2 - 1] + slopes[m / 2]);
    free(slopes);
    return med;
}

void _rh_trend_stats(const double *x, int n, rh_trend_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->p_up = out->p_down = 1.0;
    if (n < 2)
        return;
    int all_equal = 1;
    for (int i = 1; i < n; i++)
        if (x[i] != x[0])
            all_equal = 0;
    if (all_equal)
        return;
    out->s = mann_kendall(x, n, &out->p_up, &out->p_down);
    out->slope = theil_sen(x, n);
}
