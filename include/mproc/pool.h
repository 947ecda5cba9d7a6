/* mproc: the process pool (Python's multiprocessing.Pool and AsyncResult).
 *
 * A pool starts `processes` worker processes (with the pool's context:
 * fork, spawn or forkserver) and runs tasks in them. Tasks are C functions
 * of the program or of a library it has loaded (also with dlopen): under
 * spawn and forkserver a worker is a fresh copy of the program, and the
 * pool finds the function there by its module and offset, never by a raw
 * pointer. Inputs and outputs are bytes, copied once into shared memory
 * (not pickled through pipes); a map's input array is handed out to the
 * workers in chunks where it lies.
 *
 * Two task forms:
 *   - map form, fixed-size items: int fn(const void *in, void *out) reads
 *     one item of in_size bytes and writes one of out_size bytes (map,
 *     map_async, imap, imap_unordered; starmap is map over an array of
 *     structs);
 *   - bytes form, variable size: mp_pool_task_fn (apply, apply_async)
 *     gets in_len bytes and room for out_cap bytes of result, and sets
 *     *out_len. out_cap is the caller's buffer size for apply, and
 *     mp_async_opts_t.result_max (default MP_POOL_RESULT_MAX) for
 *     apply_async. A task whose result does not fit sets *out_len to the
 *     size it needs and returns 0: the result is then MP_EOVERFLOW, with
 *     that size, so the caller can submit it again with more room.
 * A task writes only the room it was given: out_size bytes (map form) or
 * out_cap bytes (bytes form). It writes into memory of its worker that ends
 * at an inaccessible page, and the worker copies the result into place, so
 * a task that writes past its room never touches the caller's memory: it
 * dies there, and its result is MP_EWORKER (the worker is replaced).
 * A task returns 0, or a nonzero code of its own: its result is then
 * MP_ETASK and the code is kept (mp_async_task_code, mp_pool_task_code,
 * mp_iter_item_t.task_code).
 *
 * Task timeouts are watched by sampling, not by a clock in the workers: a
 * task is killed no sooner than task_timeout after it started, and at
 * most a quarter of task_timeout later (but at least 2 ms, at most 0.2 s). A
 * task that finishes in the instant its worker is killed for it is not reported
 * as timed out; the task the worker had just begun is run again elsewhere.
 *
 * Failures are results, not hangs (where Python's Pool hangs forever):
 *   - a worker that dies while running a task (killed, crashed, or calling
 *     exit() in the task) fails that task with MP_EWORKER; the worker is
 *     replaced and every other task still runs;
 *   - with task_timeout, a task that runs longer is killed with its worker
 *     (replaced) and fails with MP_ETIMEDOUT (Python's Pool cannot do this;
 *     the library pebble can);
 *   - a worker that dies before it is ready -- its initializer crashed or
 *     called exit(), or the worker could not start at all -- breaks the
 *     pool (Python's BrokenProcessPool, where Pool would restart it forever):
 *     every pending result fails with MP_EBROKEN, so do later submissions,
 *     and mp_pool_error() tells how the worker ended. A worker killed from
 *     outside (SIGKILL, SIGTERM) while it starts is replaced instead, up to
 *     8 times in a row.
 *
 * The pool thread. Each pool has one thread in the parent (Python's Pool
 * has three) that watches the workers, replaces those that die or that
 * reached maxtasksperchild, enforces task_timeout, and runs the callbacks.
 * Callbacks therefore run on that thread, one at a time: they must return
 * quickly, and may not call blocking pool functions (map, apply, join,
 * terminate, free return MP_ESTATE there; close is allowed).
 *
 * Workers are daemonic processes made by the pool thread, so they die with
 * it even when the parent is killed, and the pool terminates them at the
 * normal exit of the program if it was not freed: no orphan ever.
 *
 * All functions are thread-safe. */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include "error.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A process pool (multiprocessing.Pool); opaque. */
typedef struct mp_pool mp_pool_t;
/* The handle of an asynchronous result (AsyncResult); opaque. */
typedef struct mp_async mp_async_t;
/* The iterator of mp_pool_imap and mp_pool_imap_unordered; opaque. */
typedef struct mp_iter mp_iter_t;

/* Options of mp_pool_new; a NULL pointer means all defaults. */
typedef struct mp_pool_opts {
  int processes;                  /* 0: mp_cpu_count() */
  void (*initializer)(void *arg); /* run once in each worker before any task;
                                     it reports failure by ending the worker
                                     (exit(code), abort, a crash): the pool
                                     breaks (see above) */
  const void *initarg;            /* bytes copied to each worker: the
                                     initializer gets a private copy */
  size_t initarg_size;
  size_t maxtasksperchild; /* 0: unlimited. As in Python a task is one
                              apply or one chunk of a map */
  double task_timeout;     /* <= 0: none. Seconds a task may run */
  mp_context_t *ctx;       /* NULL: the default start method */
} mp_pool_opts_t;

/* The two task forms (see above). */
typedef int (*mp_pool_map_fn)(const void *in, void *out);
typedef int (*mp_pool_task_fn)(const void *in, size_t in_len, void *out,
                               size_t out_cap, size_t *out_len);

/* Callbacks (Python's callback and error_callback), run on the pool thread
 * once for each result: callback on success with the result (a map's whole
 * output array, or an apply's result bytes), error_callback on failure with
 * the error code and, for MP_ETASK, the task's own code. */
typedef void (*mp_pool_callback)(void *arg, const void *result, size_t len);
typedef void (*mp_pool_error_callback)(void *arg, int err, int task_code);

/* Options of the asynchronous submissions; a NULL pointer means none. */
typedef struct mp_async_opts {
  mp_pool_callback callback;
  mp_pool_error_callback error_callback;
  void *arg;         /* passed to both callbacks */
  size_t result_max; /* apply_async: the out_cap its task gets, the largest
                        result it may write; 0: MP_POOL_RESULT_MAX (1 GiB,
                        address space only) */
} mp_async_opts_t;

/* The default result capacity of apply_async: 1 GiB, so that results of
 * any practical size work as in Python. It is address space in the
 * worker, not memory: a result costs what it holds. */
#define MP_POOL_RESULT_MAX ((size_t)1 << 30)

/* multiprocessing.Pool(processes, initializer, initargs, maxtasksperchild,
 * context), plus task_timeout. Starts the workers and returns once they
 * are started (not waiting for their initializers). NULL with errno EINVAL
 * (processes < 0, task_timeout NaN, initarg NULL with a size, an
 * initializer not in any loaded module), ENOMEM, EAGAIN (the system could
 * not start a worker), or the start error of the context. */
MP_API mp_pool_t *mp_pool_new(const mp_pool_opts_t *opts);

/* The number of worker processes. */
MP_API int mp_pool_processes(const mp_pool_t *pool);

/* Stores the pids of the live workers in out (up to cap) and returns how
 * many there are (Python's pool._pool). */
MP_API size_t mp_pool_workers(mp_pool_t *pool, pid_t *out, size_t cap);

/* 0 while the pool can run tasks; MP_EBROKEN once a worker died before it
 * was ready, with its exit code in *exitcode (n for exit(n), -N for signal
 * N; exitcode may be NULL); or the error that prevented starting a worker
 * (-EAGAIN, ...). */
MP_API int mp_pool_error(const mp_pool_t *pool, int *exitcode);

/* Pool.map(fn, iterable, chunksize): runs fn on each of the n items of
 * in_size bytes at in, writing each result (out_size bytes) to the same
 * index of out, and returns when all are done. chunksize 0 chooses as
 * Python does (n / (4 * processes), rounded up). in_size or out_size may be
 * 0 (then in or out may be NULL). Arrays already in shared memory
 * (mp_raw_alloc) are used in place; others are copied once.
 * Returns 0 when every item succeeded; otherwise the error of the first
 * failing item in input order: MP_ETASK (its code: mp_pool_task_code()),
 * MP_EWORKER, MP_ETIMEDOUT, MP_ECLOSED (terminated meanwhile), MP_EBROKEN,
 * and every item that succeeded has its output written (the others' are
 * left as they were). Also MP_ESTATE (pool closed or terminated, or called
 * from a callback), MP_EBROKEN (broken pool), MP_EINVAL (NULL fn, NULL
 * array with a size), -ENOMEM, -ENOSPC (more than 256 distinct task
 * functions in one pool). */
MP_API int mp_pool_map(mp_pool_t *pool, int (*fn)(const void *in, void *out),
                       const void *in, size_t in_size, void *out,
                       size_t out_size, size_t n, size_t chunksize);

/* The task's own code of the last MP_ETASK that mp_pool_map or
 * mp_pool_apply returned in the calling thread (0 if none). */
MP_API int mp_pool_task_code(void);

/* Pool.apply(fn, args): runs fn in a worker on in_len bytes at in, with
 * out_cap = out_cap (the caller's buffer), and copies its result to out;
 * *out_len (may be NULL) gets its length. Returns 0; the task's failure
 * (MP_ETASK with mp_pool_task_code(), MP_EWORKER, MP_ETIMEDOUT,
 * MP_ECLOSED, MP_EBROKEN); MP_EOVERFLOW when the task set *out_len above
 * out_cap to say how much room it needs (then *out_len is that size and
 * out is untouched); or the submission errors of mp_pool_map. */
MP_API int mp_pool_apply(mp_pool_t *pool, mp_pool_task_fn fn, const void *in,
                         size_t in_len, void *out, size_t out_cap,
                         size_t *out_len);

/* Pool.apply_async(fn, args, callback, error_callback): as mp_pool_apply
 * but returns at once with a handle. The task gets out_cap =
 * opts->result_max, or MP_POOL_RESULT_MAX without one (results of any
 * practical size; the memory a result uses is its size). NULL with errno
 * EINVAL, ENOMEM, or the positive value of MP_ESTATE / MP_EBROKEN
 * (mp_strerror(-errno) names it). */
MP_API mp_async_t *mp_pool_apply_async(mp_pool_t *pool, mp_pool_task_fn fn,
                                       const void *in, size_t in_len,
                                       const mp_async_opts_t *opts);

/* Pool.map_async: as mp_pool_map but returns at once with a handle. out
 * must stay valid until the result is ready; it is written by then (before
 * the callback runs, or when mp_async_wait/get/ready first finds it
 * ready). Errors as mp_pool_apply_async. */
MP_API mp_async_t *
mp_pool_map_async(mp_pool_t *pool, int (*fn)(const void *in, void *out),
                  const void *in, size_t in_size, void *out, size_t out_size,
                  size_t n, size_t chunksize, const mp_async_opts_t *opts);

/* ---- AsyncResult -------------------------------------------------------- */

/* AsyncResult.wait(timeout): 0 once ready, MP_ETIMEDOUT if not ready at
 * the deadline. With callbacks, ready means the callback has run. */
MP_API int mp_async_wait(mp_async_t *a, double timeout);

/* AsyncResult.ready(). */
MP_API bool mp_async_ready(mp_async_t *a);

/* AsyncResult.successful(): 1 or 0; MP_ESTATE before it is ready. */
MP_API int mp_async_successful(mp_async_t *a);

/* AsyncResult.get(timeout): waits, then returns 0 with the result in
 * *result / *len (either may be NULL): an apply's result bytes (valid until
 * mp_async_free) or a map's out array; or the result's error as
 * mp_pool_apply / mp_pool_map return it. MP_ETIMEDOUT either when not ready
 * at the deadline (mp_async_ready() false) or, once ready, when the task
 * exceeded task_timeout (as Python's TimeoutError serves both). */
MP_API int mp_async_get(mp_async_t *a, double timeout, const void **result,
                        size_t *len);

/* The task's own code when the result is MP_ETASK (0 otherwise, or while
 * not ready). */
MP_API int mp_async_task_code(mp_async_t *a);

/* A ready map_async result's item: 0 or its error (MP_ETASK with its code
 * in *task_code, may be NULL). MP_ESTATE before ready, MP_EINVAL for an
 * index out of range. */
MP_API int mp_async_item(mp_async_t *a, size_t index, int *task_code);

/* Frees the handle. A result not ready yet still completes (its callbacks
 * still run); the pool frees it then. NULL does nothing. */
MP_API void mp_async_free(mp_async_t *a);

/* ---- Futures: the first of several results ------------------------------
 * concurrent.futures.wait(fs, timeout, return_when=FIRST_COMPLETED) and
 * as_completed(fs), for apply_async and map_async results of any pools. */

/* An fd that becomes readable once the result is ready (and stays so), for
 * mp_wait (mp_waitable_fd) or poll/epoll, beside connections and process
 * sentinels. Made on the first call (then the same fd), owned by the
 * result: closed by mp_async_free, do not close it yourself. "Readable" is
 * a hint to look: mp_async_ready is the truth. The fd is an eventfd; its
 * counter is never read by the library. Returns the fd, MP_EINVAL (a NULL
 * handle), -EMFILE/-ENFILE/-ENOMEM. */
MP_API int mp_async_fd(mp_async_t *a);

/* wait(asyncs, timeout, FIRST_COMPLETED): waits until one of the n
 * results is ready and stores in *index (may be NULL) the lowest index of
 * a ready one. 0, MP_ETIMEDOUT (none ready in time; at once for timeout 0),
 * MP_EINVAL (asyncs NULL, n 0, a NULL handle, a NaN timeout), or the codes
 * of mp_async_fd. The result itself is read as usual (mp_async_get).
 * as_completed is a loop: wait for any, take it, remove it from the array
 * (e.g. swap it with the last) and wait again for the n - 1 others. */
MP_API int mp_async_wait_any(mp_async_t *const *asyncs, size_t n,
                             double timeout, size_t *index);

/* ---- imap ------------------------------------------------------------------
 * Pool.imap / Pool.imap_unordered: results are delivered while the other
 * tasks still run. chunksize 0 means 1 (Python's default here). Results
 * are kept in shared memory until delivered. NULL with errno as
 * mp_pool_apply_async. */
MP_API mp_iter_t *mp_pool_imap(mp_pool_t *pool,
                               int (*fn)(const void *in, void *out),
                               const void *in, size_t in_size, size_t out_size,
                               size_t n, size_t chunksize);
MP_API mp_iter_t *mp_pool_imap_unordered(mp_pool_t *pool,
                                         int (*fn)(const void *in, void *out),
                                         const void *in, size_t in_size,
                                         size_t out_size, size_t n,
                                         size_t chunksize);

/* One delivered item: its index in the input, and its result: 0 (its
 * output was copied to out) or its error (MP_ETASK with task_code,
 * MP_EWORKER, MP_ETIMEDOUT, MP_ECLOSED, MP_EBROKEN). */
typedef struct mp_iter_item {
  size_t index;
  int error;
  int task_code;
} mp_iter_item_t;

/* IMapIterator.next(timeout): 1 when it delivered the next item (in input
 * order for imap, in completion order for imap_unordered) into *item (may
 * be NULL) and its output into out (out_size bytes; may be NULL); 0 when
 * every item was delivered (StopIteration); MP_ETIMEDOUT when none became
 * ready in time. */
MP_API int mp_iter_next(mp_iter_t *it, double timeout, void *out,
                        mp_iter_item_t *item);

/* Frees the iterator; items not delivered yet still run. NULL does
 * nothing. */
MP_API void mp_iter_free(mp_iter_t *it);

/* ---- imap over a stream ------------------------------------------------
 * Pool.imap(fn, iterable) / imap_unordered over an input of any length:
 * the items come from a producer that the pool calls as it needs them, and
 * at most max_in_flight items are produced and not yet delivered, so
 * memory stays the same whatever the length. Results are taken as they
 * come with mp_stream_next. */
typedef struct mp_stream mp_stream_t;

/* Writes the next input item (in_size bytes) to item and returns 1;
 * returns 0 at the end of the input, or a negative code of its own when
 * the input fails (Python: the iterable raised). Called in the thread that
 * creates the stream and calls mp_stream_next, one call at a time. */
typedef int (*mp_pool_producer_fn)(void *arg, void *item);

typedef struct mp_stream_opts {
  size_t chunksize;     /* items per task, Python's chunksize; 0: 1 */
  size_t max_in_flight; /* items produced and not yet delivered, at most
                           (rounded down to chunks, at least one chunk);
                           0: 4 MiB of inputs and outputs (at most
                           16384 items), and at least
                           4 * processes * chunksize */
} mp_stream_opts_t;

/* imap (results in input order) and imap_unordered (in completion order,
 * by batches of a quarter of the window) of fn over the producer's items. The
 * window is filled at once (the producer is called here), and refilled by
 * mp_stream_next as results are taken: the workers stay busy while the caller
 * consumes. The input and output of the items in flight sit in shared memory,
 * used in place. NULL with errno EINVAL (pool, fn or producer NULL), ENOMEM, or
 * the errno of mp_pool_map_async (a positive MP_ESTATE for a closed pool,
 * ...). opts may be NULL. */
MP_API mp_stream_t *mp_pool_imap_stream(mp_pool_t *pool, mp_pool_map_fn fn,
                                        size_t in_size, size_t out_size,
                                        mp_pool_producer_fn producer, void *arg,
                                        const mp_stream_opts_t *opts);
MP_API mp_stream_t *mp_pool_imap_unordered_stream(
    mp_pool_t *pool, mp_pool_map_fn fn, size_t in_size, size_t out_size,
    mp_pool_producer_fn producer, void *arg, const mp_stream_opts_t *opts);

/* IMapIterator.next(timeout), as mp_iter_next: 1 with the next item (its
 * index is its place in the producer's sequence) and its output in out; 0
 * at the end (StopIteration); MP_ETIMEDOUT. A producer that failed ends
 * the stream as Python's does: the items produced before are delivered,
 * then mp_stream_next returns the producer's code once (item->index is the
 * failed item's place, item->error the code), then 0. A submission that
 * failed (pool terminated: MP_ESTATE, MP_EBROKEN, -ENOMEM) is returned
 * once the items already in flight are delivered. MP_EINVAL for NULL. */
MP_API int mp_stream_next(mp_stream_t *s, double timeout, void *out,
                          mp_iter_item_t *item);

/* Frees the stream. The tasks in flight (at most max_in_flight items) are
 * waited for, since they use its memory; the producer is not called again.
 * NULL does nothing. */
MP_API void mp_stream_free(mp_stream_t *s);

/* ---- Life cycle -----------------------------------------------------------
 */

/* Pool.close(): no more submissions (they return MP_ESTATE); the workers
 * finish the pending tasks and exit. Closing twice, or after terminate,
 * does nothing (as in Python). Allowed in a callback. */
MP_API int mp_pool_close(mp_pool_t *pool);

/* Pool.terminate(): kills the workers now; every pending result fails with
 * MP_ECLOSED (its error_callback runs). Returns once the workers are gone.
 * Terminating twice is allowed. MP_ESTATE from a callback. */
MP_API int mp_pool_terminate(mp_pool_t *pool);

/* Pool.join(): waits until the workers have exited and every result is
 * ready (callbacks run). MP_ESTATE before close or terminate, or from a
 * callback. */
MP_API int mp_pool_join(mp_pool_t *pool);

/* Frees the pool. One not closed and joined is terminated first (Python's
 * __exit__): no worker survives it. Handles (mp_async_t, mp_iter_t) stay
 * valid until freed; their pending results fail with MP_ECLOSED. Called
 * from a callback it does nothing (a programming error). */
MP_API void mp_pool_free(mp_pool_t *pool);

#ifdef __cplusplus
}
#endif
#endif
