/* native_side.c — a plain C library for tests/e2e/test_native.py, loaded
 * after tracking started: by ctypes with its full path, and by
 * native_helpers.load_side() with its bare name (found on the module's
 * RUNPATH).  side_leak96() leaks one 96-byte block per call. */
#include <stdlib.h>
#include <string.h>

char *volatile side_sink;

int side_leak96(void);
int side_clean96(void);

int
side_leak96(void)
{
    char *p = malloc(96);  /* side: the culprit */
    if (p == NULL)
        return -1;
    memset(p, 7, 96);
    side_sink = p;
    return p[3];
}

int
side_clean96(void)
{
    char *p = malloc(96);
    if (p == NULL)
        return -1;
    memset(p, 7, 96);
    side_sink = p;
    int r = p[3];
    free(p);
    return r;
}
