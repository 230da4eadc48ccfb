/* binding.h — the Python face of the engine (src/core/binding): the only
 * C that parses arguments and builds Python objects.  Each py_*.c file
 * turns one area of the engine into functions of refhound._core and
 * exports its method table; module.c assembles the module. */
#ifndef RH_BINDING_H
#define RH_BINDING_H

#ifndef REFHOUND_CORE_BUILD
#error "binding.h is internal to refhound's engine (src/core)"
#endif
#include "rh_common.h"

/* refhound._core.TrackingError: tracking stopped (the tracker ran out of
 * memory); the program goes on, the check cannot conclude. */
extern PyObject *_rh_TrackingError;
/* Raise TrackingError with the tracker's reason; returns NULL. */
PyObject *_rh_py_tracking_stopped(void);

extern PyTypeObject _rh_SessionType;                /* py_session.c */

extern PyMethodDef _rh_py_tracking_methods[];       /* py_tracking.c */
extern PyMethodDef _rh_py_stacks_methods[];         /* py_stacks.c */
extern PyMethodDef _rh_py_watch_methods[];          /* py_watch.c */
extern PyMethodDef _rh_py_probes_methods[];         /* py_probes.c */
extern PyMethodDef _rh_py_system_methods[];         /* py_system.c */
extern PyMethodDef _rh_py_valgrind_methods[];       /* py_valgrind.c */
extern PyMethodDef _rh_py_native_methods[];         /* py_native.c */
extern PyMethodDef _rh_py_guard_methods[];          /* py_guard.c */

/* py_probes.c: the capsule refhound._core._C_API.  0, -1 with exception. */
int _rh_py_add_probes_capsule(PyObject *module);

#endif /* RH_BINDING_H */
