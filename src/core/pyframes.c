/* pyframes.c — the Python frames of the running thread, for allocation
 * stacks: (code object, bytecode offset) per frame, innermost first.
 *
 * The frame chain is the interpreter's own, and its layout changes with
 * each release:
 *   3.9, 3.10  tstate->frame, a chain of PyFrameObject (public struct in
 *              cpython/frameobject.h); f_lasti is the last instruction, in
 *              bytes on 3.9 and in code units on 3.10; every frame runs
 *              in its own call of the eval loop.
 *   3.11       tstate->cframe->current_frame, a chain of
 *              _PyInterpreterFrame (internal: its layout is copied here);
 *              prev_instr; an entry frame is marked is_entry.
 *   3.12       as 3.11 with f_code first; a shim frame
 *              (FRAME_OWNED_BY_CSTACK) marks each C-to-Python entry.
 *   3.13       tstate->current_frame; f_executable (a code object, or None
 *              in a shim frame); instr_ptr, the instruction executing.
 * Other versions and free-threaded builds give no frames.
 *
 * Called from the allocator hooks of the GIL domains (stacks.c): the GIL
 * is held, so the chain does not change while it is read; nothing is
 * allocated and no lock is taken.  No state.
 */
#include "pyframes.h"

#if PY_VERSION_HEX < 0x030B0000
#  include <frameobject.h>
#endif

#if defined(Py_GIL_DISABLED)
#  define RH_PY_FRAMES 0
#elif PY_VERSION_HEX >= 0x03090000 && PY_VERSION_HEX < 0x030B0000
#  define RH_PY_FRAMES 1            /* PyFrameObject chain */
#elif PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#  define RH_PY_FRAMES 2
typedef struct rh_iframe {
    void *f_func, *f_globals, *f_builtins, *f_locals;
    PyCodeObject *f_code;
    void *frame_obj;
    struct rh_iframe *previous;
    _Py_CODEUNIT *prev_instr;
    int stacktop;
    char is_entry;
    char owner;
} rh_iframe_t;
#  define IFRAME_CODE(f) ((f)->f_code)
#  define IFRAME_INSTR(f) ((f)->prev_instr)
#  define IFRAME_SKIP(f) 0
#  define IFRAME_ENTRY(f) ((f)->is_entry ? 1 : 0)
#  define CURRENT_IFRAME(ts) ((ts)->cframe ? (rh_iframe_t *)(ts)->cframe->current_frame : NULL)
#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
#  define RH_PY_FRAMES 2
typedef struct rh_iframe {
    PyCodeObject *f_code;
    struct rh_iframe *previous;
    void *f_funcobj, *f_globals, *f_builtins, *f_locals, *frame_obj;
    _Py_CODEUNIT *prev_instr;
    int stacktop;
    uint16_t return_offset;
    char owner;
} rh_iframe_t;
#  define IFRAME_CODE(f) ((f)->f_code)
#  define IFRAME_INSTR(f) ((f)->prev_instr)
#  define IFRAME_SKIP(f) ((f)->owner == 3)      /* FRAME_OWNED_BY_CSTACK */
#  define IFRAME_ENTRY(f) ((f)->owner == 3)     /* a shim frame per C entry */
#  define CURRENT_IFRAME(ts) ((ts)->cframe ? (rh_iframe_t *)(ts)->cframe->current_frame : NULL)
#elif PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000
#  define RH_PY_FRAMES 2
typedef struct rh_iframe {
    PyObject *f_executable;
    struct rh_iframe *previous;
    void *f_funcobj, *f_globals, *f_builtins, *f_locals, *frame_obj;
    void *instr_ptr;               /* _Py_CODEUNIT *, internal in 3.13 */
    int stacktop;
    uint16_t return_offset;
    char owner;
} rh_iframe_t;
/* f_executable is None in a shim frame: only a code object is a frame. */
#  define IFRAME_CODE(f) \
    ((f)->f_executable != NULL && Py_IS_TYPE((f)->f_executable, &PyCode_Type) \
     ? (PyCodeObject *)(f)->f_executable : NULL)
#  define IFRAME_INSTR(f) ((f)->instr_ptr)
#  define IFRAME_SKIP(f) ((f)->owner == 3)      /* FRAME_OWNED_BY_CSTACK */
#  define IFRAME_ENTRY(f) ((f)->owner == 3)
#  define CURRENT_IFRAME(ts) ((rh_iframe_t *)(ts)->current_frame)
#else
#  define RH_PY_FRAMES 0
#endif

#define MAX_DEPTH 10000         /* a chain longer than this is not walked further */

int _rh_python_frames_supported(void) { return RH_PY_FRAMES != 0; }

int _rh_python_frames(uintptr_t *pairs, int max, int *entries)
{
    *entries = 0;
#if RH_PY_FRAMES == 1
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    if (ts == NULL)
        return 0;
    int n = 0, depth = 0;
    for (PyFrameObject *f = ts->frame; f != NULL && depth < MAX_DEPTH; f = f->f_back, depth++) {
        *entries += 1;                          /* one eval loop per frame */
        if (n >= max || f->f_code == NULL)
            continue;
        int lasti = f->f_lasti < 0 ? 0 : f->f_lasti;
#  if PY_VERSION_HEX >= 0x030A0000
        lasti *= (int)sizeof(_Py_CODEUNIT);    /* 3.10: in code units */
#  endif
        pairs[2 * n] = (uintptr_t)f->f_code;
        pairs[2 * n + 1] = (uintptr_t)lasti;
        n++;
    }
    return n;
#elif RH_PY_FRAMES == 2
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    if (ts == NULL)
        return 0;
    int n = 0, depth = 0;
    for (rh_iframe_t *f = CURRENT_IFRAME(ts); f != NULL && depth < MAX_DEPTH;
         f = f->previous, depth++) {
        *entries += IFRAME_ENTRY(f);
        if (n >= max || IFRAME_SKIP(f))
            continue;
        PyCodeObject *co = IFRAME_CODE(f);
        if (co == NULL)
            continue;
        char *first = (char *)co->co_code_adaptive;
        char *instr = (char *)IFRAME_INSTR(f);
        pairs[2 * n] = (uintptr_t)co;
        pairs[2 * n + 1] = instr > first ? (uintptr_t)(instr - first) : 0;
        n++;
    }
    return n;
#else
    (void)pairs;
    (void)max;
    return 0;
#endif
}
