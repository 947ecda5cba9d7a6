/* mproc: shared memory (Python's RawValue/RawArray, Value/Array,
 * shared_memory.SharedMemory). */
#ifndef MPROC_MEMORY_H
#define MPROC_MEMORY_H

#include <stdint.h>
#include <string.h>

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

/* Initial contents in one call: Value('i', 7) is
 * `int x = 7; mp_value_new_from(&x, sizeof x, true)`, Array('d', [1.0, 2.0])
 * is `mp_array_new_from(xs, 2, sizeof xs[0], true)`: the bytes are copied
 * from init (NULL: zeroed, as the forms above). Errors as above. */
MP_API mp_value_t *mp_value_new_from(const void *init, size_t size, bool lock);
MP_API mp_value_t *mp_array_new_from(const void *init, size_t n,
                                     size_t elem_size, bool lock);

/* Array(typecode, init, lock=<a Lock or RLock>): an array guarded by the
 * caller's lock (as mp_value_new_with_rlock / _with_lock), its bytes copied
 * from init (NULL: zeroed). NULL with errno EINVAL (lock NULL, freed or of
 * another kind; elem_size 0), ENOMEM (the size overflows or no memory). */
MP_API mp_value_t *mp_array_new_with_rlock(size_t n, size_t elem_size,
                                           const void *init, mp_rlock_t *lock);
MP_API mp_value_t *mp_array_new_with_lock(size_t n, size_t elem_size,
                                          const void *init, mp_lock_t *lock);

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
 * A segment created here is tracked, as Python's resource tracker does:
 * if it is still there when every process of the family is gone (also
 * after SIGKILL of all of them), a helper process unlinks it. The helper
 * starts at the first named resource (none without). mp_shm_untrack keeps
 * a segment meant to outlive its creator.
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

/* Python's SharedMemory(track=False), after the fact: the resource tracker
 * forgets the segment, which then outlives the family unless someone
 * unlinks it. Returns 0. */
MP_API int mp_shm_untrack(const mp_shm_t *s);

/* Removes a segment by name (_posixshmem.shm_unlink): same codes, plus
 * -EINVAL for a bad name. */
MP_API int mp_shm_unlink_name(const char *name);

/* close(): unmaps the segment and frees the handle (the segment itself
 * stays until unlinked). 0 or -errno. NULL does nothing. */
MP_API int mp_shm_close(mp_shm_t *s);

/* ---- ShareableList
 * ------------------------------------------------------------
 * multiprocessing.shared_memory.ShareableList: a fixed-length list of
 * 64-bit integers, doubles, bools, None, str and bytes in a named segment,
 * laid out byte for byte as Python lays it out (native byte order), so that
 * ShareableList(name=mp_shareable_list_name(l)) in Python reads and writes
 * the same items, and mp_shareable_list_open attaches to a list Python
 * made. As in Python there is no lock: guard concurrent writers yourself.
 *
 * The layout (Python's): the item count (int64); the offsets of the N + 1
 * item slots from the start of the data area (int64 each); the data area,
 * a slot of 8 bytes per number and of a multiple of 8 bytes per str or
 * bytes (its length rounded up to the next multiple of 8, always one byte
 * more at least); a struct format of 8 bytes per item ("q", "d",
 * "xxxxxxx?", "xxxxxx?x", "<n>s"); one byte per item telling str (1),
 * bytes (2) and None (3) from numbers (0). A slot's size is fixed at
 * creation: an item set later must fit it. */
typedef struct mp_shareable_list mp_shareable_list_t;

typedef enum mp_shareable_kind {
  MP_SHAREABLE_INT = 1, /* Python int in [-2**63, 2**63): int64_t */
  MP_SHAREABLE_FLOAT,   /* float: double */
  MP_SHAREABLE_BOOL,    /* bool */
  MP_SHAREABLE_NONE,    /* None */
  MP_SHAREABLE_STR,     /* str: its UTF-8 bytes */
  MP_SHAREABLE_BYTES,   /* bytes */
} mp_shareable_kind_t;

/* One item. For STR and BYTES, bytes.ptr/bytes.len: what is stored on set;
 * on get, a pointer into the segment (valid until the item is set again or
 * the list closed) and the length without the trailing NUL bytes, which
 * Python strips too (a bytes item ending in NULs loses them, as in
 * Python). */
typedef struct mp_shareable_item {
  mp_shareable_kind_t kind;
  union {
    int64_t i;
    double f;
    bool b;
    struct {
      const void *ptr;
      size_t len;
    } bytes;
  } u;
} mp_shareable_item_t;

static inline mp_shareable_item_t mp_shareable_int(int64_t v) {
  mp_shareable_item_t it = {.kind = MP_SHAREABLE_INT, .u = {.i = v}};
  return it;
}
static inline mp_shareable_item_t mp_shareable_float(double v) {
  mp_shareable_item_t it = {.kind = MP_SHAREABLE_FLOAT, .u = {.f = v}};
  return it;
}
static inline mp_shareable_item_t mp_shareable_bool(bool v) {
  mp_shareable_item_t it = {.kind = MP_SHAREABLE_BOOL, .u = {.b = v}};
  return it;
}
static inline mp_shareable_item_t mp_shareable_none(void) {
  mp_shareable_item_t it = {.kind = MP_SHAREABLE_NONE, .u = {.i = 0}};
  return it;
}
/* A str from a NUL-terminated UTF-8 string. */
static inline mp_shareable_item_t mp_shareable_str(const char *s) {
  mp_shareable_item_t it = {.kind = MP_SHAREABLE_STR};
  it.u.bytes.ptr = s;
  it.u.bytes.len = strlen(s);
  return it;
}
static inline mp_shareable_item_t mp_shareable_bytes(const void *p,
                                                     size_t len) {
  mp_shareable_item_t it = {.kind = MP_SHAREABLE_BYTES};
  it.u.bytes.ptr = p;
  it.u.bytes.len = len;
  return it;
}

/* ShareableList(sequence, name=name): a new segment (name NULL: a random
 * free name, as mp_shm_open) holding the n items. A str or bytes item gets
 * a slot of its length rounded up to the next multiple of 8 (at least one
 * byte more), at most 9999999 bytes (Python's format field has 8
 * characters). NULL with errno: EINVAL (items NULL with n > 0, an unknown
 * kind, a str or bytes item too long for Python's format), or the errno of
 * mp_shm_open(name, true, size). */
MP_API mp_shareable_list_t *
mp_shareable_list_new(const char *name, const mp_shareable_item_t *items,
                      size_t n);

/* ShareableList(name=name): attaches to an existing list. NULL with errno:
 * the errno of mp_shm_open(name, false, 0), or EPROTO when the segment is
 * not laid out as a ShareableList (its count, offsets and sizes are checked
 * against the segment's size, so a foreign segment is refused, never read
 * out of bounds). */
MP_API mp_shareable_list_t *mp_shareable_list_open(const char *name);

/* len(l). */
MP_API size_t mp_shareable_list_len(const mp_shareable_list_t *l);

/* l[index] into *out. A negative index counts from the end, as in Python.
 * MP_EINDEX (IndexError) out of range; -EPROTO when the item's format in
 * the segment is not one ShareableList writes. */
MP_API int mp_shareable_list_get(const mp_shareable_list_t *l, ptrdiff_t index,
                                 mp_shareable_item_t *out);

/* l[index] = item. Any kind may replace any other; a str or bytes item
 * must fit the slot the position got at creation (8 bytes for a number).
 * MP_EINDEX; MP_EOVERFLOW when it does not fit (Python's ValueError "exceeds
 * available storage"); MP_EINVAL (item NULL, unknown kind, NULL bytes with
 * a length). */
MP_API int mp_shareable_list_set(mp_shareable_list_t *l, ptrdiff_t index,
                                 const mp_shareable_item_t *item);

/* l.format: the items' struct formats joined ("q16sd"), NUL-terminated
 * into buf of cap bytes. The length of the string; MP_EOVERFLOW (buf
 * untouched) when cap is not more than it. */
MP_API int mp_shareable_list_format(const mp_shareable_list_t *l, char *buf,
                                    size_t cap);

/* l.shm: the segment (for mp_shm_name, mp_shm_unlink; mp_shm_buf is the
 * raw layout above). It belongs to the list: do not close it. */
MP_API mp_shm_t *mp_shareable_list_shm(const mp_shareable_list_t *l);

/* l.shm.name, without the leading slash. */
MP_API const char *mp_shareable_list_name(const mp_shareable_list_t *l);

/* l.shm.close(): unmaps the segment and frees the handle (unlink first,
 * with mp_shm_unlink(mp_shareable_list_shm(l)), from the one process that
 * removes it). 0 or -errno. NULL does nothing. */
MP_API int mp_shareable_list_close(mp_shareable_list_t *l);

#ifdef __cplusplus
}
#endif
#endif
