/*
 * Frame-pointer ground truth for refhound doctor's checks (tests/test_doctor.py).
 *
 * Plain C, no Python: exported non-leaf functions big enough to need a
 * frame.  Built once with -fno-omit-frame-pointer and once without (at -O2,
 * where gcc omits frame pointers on x86-64); doctor's code sample and its
 * reading of the compiler flags recorded in DWARF must tell them apart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORK(name, k)                                                     \
    __attribute__((noinline)) int name(const char *s, int n)              \
    {                                                                     \
        char buf[64];                                                     \
        int total = 0;                                                    \
        for (int i = 0; i < n; i++) {                                     \
            snprintf(buf, sizeof(buf), "%s-%d-%d", s, i, k);              \
            total += (int)strlen(buf) * (i + k);                          \
            if (total > 100000)                                           \
                total = atoi(buf + 1);                                    \
        }                                                                 \
        return total;                                                     \
    }

WORK(fp_work_a, 1)
WORK(fp_work_b, 2)
WORK(fp_work_c, 3)
WORK(fp_work_d, 4)
WORK(fp_work_e, 5)
WORK(fp_work_f, 6)
