/* mproc: shared memory (Python's RawValue/RawArray, Value/Array,
 * shared_memory.SharedMemory). */
#ifndef MPROC_MEMORY_H
#define MPROC_MEMORY_H

#include "error.h"
#include "sync.h"

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

/* ---- Value and Array
 * --------------------------------------------------------- Python's
 * Value(typecode, lock=...) and Array(typecode, n, lock=...): zeroed shared
 * memory (aligned to 64 bytes) with a lock to guard it. C has no typecodes: a
 * value is size bytes, an array n elements of elem_size bytes, used through
 * mp_value_ptr. Like every shared object the pointer may be passed in a
 * process's arg under every start method.
 *
 * The lock, as Python's `lock` argument:
 *   - mp_value_new(size, true) / mp_array_new(n, elem, true): an RLock of
 *     the value's own (Python's default lock=True);
 *   - mp_value_new(size, false): no lock (Python's lock=False, which gives a
 *     raw object: mp_value_lock returns NULL, acquire gives MP_ESTATE);
 *   - mp_value_new_with_rlock / mp_value_new_with_lock: a lock the caller
 *     made (Python's lock=<a Lock or RLock>), shared with whatever else uses
 *     it; it must outlive the value and is not freed with it. */
typedef struct mp_value mp_value_t;

/* Value: size bytes. NULL with errno EINVAL (size 0), ENOMEM (no shared
 * memory left), EAGAIN (1024 live threads already use locks). */
MP_API mp_value_t *mp_value_new(size_t size, bool lock);

/* Value with the caller's RLock or Lock. NULL with errno EINVAL when lock is
 * NULL or size is 0, ENOMEM. */
MP_API mp_value_t *mp_value_new_with_rlock(size_t size, mp_rlock_t *lock);
MP_API mp_value_t *mp_value_new_with_lock(size_t size, mp_lock_t *lock);

/* Array: n elements of elem_size bytes (n may be 0). NULL with errno EINVAL
 * (elem_size 0), ENOMEM (n * elem_size overflows or no memory is left),
 * EAGAIN. Freed with mp_value_free. */
MP_API mp_value_t *mp_array_new(size_t n, size_t elem_size, bool lock);

/* The value's bytes (Python's .value / the array's items). Never NULL for
 * a live value; NULL for a NULL, freed or foreign handle. */
MP_API void *mp_value_ptr(const mp_value_t *v);

/* The size in bytes, and the number of elements (1 for a value: Python's
 * len() of an Array). */
MP_API size_t mp_value_size(const mp_value_t *v);
MP_API size_t mp_value_len(const mp_value_t *v);

/* get_lock(): the RLock (the value's own or the caller's), or NULL when the
 * value has no lock or a plain Lock (then mp_value_plain_lock gives it).
 * The value's own RLock belongs to it: do not free it. */
MP_API mp_rlock_t *mp_value_lock(const mp_value_t *v);
MP_API mp_lock_t *mp_value_plain_lock(const mp_value_t *v);

/* get_lock().acquire(timeout) and release() (Python's Synchronized.acquire
 * and release, or `with v.get_lock():`), whichever kind the lock is: the
 * codes of mp_rlock_acquire / mp_lock_acquire and their release; MP_ESTATE
 * when the value has no lock. */
MP_API int mp_value_acquire(mp_value_t *v, double timeout);
MP_API int mp_value_release(mp_value_t *v);

/* Frees the value (and its own RLock). NULL does nothing. */
MP_API void mp_value_free(mp_value_t *v);

/* ---- Named shared memory
 * -------------------------------------------------------
 * multiprocessing.shared_memory.SharedMemory: a segment in /dev/shm that
 * unrelated processes (C or Python) attach to by name. Unlike the objects
 * above it is not in the arena: a handle is local to the process that
 * opened it (a child opens the segment again by name).
 *
 * Names are as Python's: "foo" names /dev/shm/foo (shm_open("/foo")); a
 * leading '/' is accepted and dropped, no other '/' is allowed.
 * mp_shm_name() gives the name without the slash, as Python's .name does,
 * so SharedMemory(name=mp_shm_name(s)) attaches in Python. The segment is
 * mapped read-write and shared. */
typedef struct mp_shm mp_shm_t;

/* SharedMemory(name, create, size).
 *   create true: a new segment of size bytes, mode 0600, failing if the
 *     name exists; name NULL picks a free random name "mproc_<hex>". The
 *     memory is reserved now (fallocate), so a full /dev/shm is an error
 *     here and never a SIGBUS later (Python only sets the size). Zeroed.
 *   create false: attaches to an existing segment; its size is the
 *     segment's (size is ignored, as in Python).
 * NULL with errno: EEXIST (create, the name exists: FileExistsError),
 * ENOENT (attach, no such name: FileNotFoundError), EINVAL (size 0 on
 * create, name NULL on attach, an empty name, a '/' inside it, or an empty
 * segment to attach to), ENAMETOOLONG, ENOSPC (create: /dev/shm has no
 * room), EACCES, ENOMEM, EMFILE. */
MP_API mp_shm_t *mp_shm_open(const char *name, bool create, size_t size);

/* .buf and .size: the mapping and its length in bytes. */
MP_API void *mp_shm_buf(const mp_shm_t *s);
MP_API size_t mp_shm_size(const mp_shm_t *s);

/* .name: without the leading slash. */
MP_API const char *mp_shm_name(const mp_shm_t *s);

/* unlink(): removes the name, so that nobody can attach any more; the
 * memory lives on until every process has closed it. Call it once, from
 * one process (as in Python), before mp_shm_close if this handle is the
 * one doing it. 0, -ENOENT (already unlinked), or -errno. */
MP_API int mp_shm_unlink(const mp_shm_t *s);

/* Removes a segment by name (_posixshmem.shm_unlink): same codes, plus
 * -EINVAL for a bad name. */
MP_API int mp_shm_unlink_name(const char *name);

/* close(): unmaps the segment and frees the handle (the segment itself
 * stays until unlinked). 0 or -errno. NULL does nothing. */
MP_API int mp_shm_close(mp_shm_t *s);

#ifdef __cplusplus
}
#endif
#endif
