/* mproc: shared memory (Python's RawValue/RawArray, Value/Array,
 * shared_memory.SharedMemory). */
#ifndef MPROC_MEMORY_H
#define MPROC_MEMORY_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RawValue / RawArray: size bytes of zeroed shared memory, aligned to 64
 * bytes, with no lock. The pointer is valid at the same address in every
 * process of the family under every start method: it may be stored in a
 * process's arg, also in children started before the allocation (a pointer
 * sent to them later works). NULL with errno EINVAL (size 0), ENOMEM (the
 * arena's limit, MPROC_ARENA_SIZE, is reached, or no memory is left to back
 * it). Never SIGBUS later. */
MP_API void *mp_raw_alloc(size_t size);

/* Returns the memory to the arena. Every process of the family must have
 * stopped using it. NULL does nothing. */
MP_API void mp_raw_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
