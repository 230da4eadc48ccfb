/* rules.h — LEGACY: the verdict rules that Session.decide() and the
 * "trends" key of Session.results() still use (rules.c).  The rules now
 * belong to the Python policy (src/refhound); this file, rules.c and the
 * two places in binding/py_session.c marked "LEGACY RULES" go together
 * once nothing calls decide() or reads "trends". */
#ifndef RH_RULES_H
#define RH_RULES_H

#ifndef REFHOUND_CORE_BUILD
#error "rules.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"
#include "session.h"
#include "trend.h"

typedef struct {
    int min_measured, max_measured;
    double alpha;
    int leak_streak, error_streak;       /* state between decide() calls */
    rh_trend_result_t trends[RH_NMETRICS];
} rh_rules_t;

/* Classify every metric over the recent window of the measured samples
 * into r->trends; *measured: measured iterations.  -1 out of memory. */
int _rh_rules_classify(rh_rules_t *r, const rh_session_t *s, int *measured);
/* Classify, then the verdict ("leak", "error", "clean", "inconclusive" or
 * "continue") and whether to stop.  -1 out of memory. */
int _rh_rules_decide(rh_rules_t *r, const rh_session_t *s, const char **verdict, int *stop);

#endif /* RH_RULES_H */
