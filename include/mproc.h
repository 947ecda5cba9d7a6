/* mproc: Python's multiprocessing for C on Linux.
 *
 * One header for the whole API; each area is declared, with its
 * documentation, in include/mproc/<area>.h. Conventions (see docs/):
 *   - int functions return 0 or a negative code (MP_E* or -errno);
 *   - constructors return a pointer, or NULL with errno set;
 *   - timeouts are double seconds, MP_FOREVER waits forever, 0 never blocks;
 *   - every shared object is a pointer into shared memory that stays valid
 *     in children under every start method. */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/error.h"
#include "mproc/process.h"
#include "mproc/memory.h"
#include "mproc/conn.h"
#include "mproc/listener.h"
#include "mproc/sync.h"
#include "mproc/queue.h"
#include "mproc/pool.h"
#include "mproc/containers.h"
#include "mproc/manager.h"
#include "mproc/obj.h"

#endif
