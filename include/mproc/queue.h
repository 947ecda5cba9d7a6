/* mproc: queues between processes (Python's multiprocessing.Queue,
 * SimpleQueue and JoinableQueue).
 *
 * A queue carries messages of bytes. It lives in shared memory: a pointer
 * made before mp_process_start() may be passed to the child in its arg
 * struct and works there under every start method. Python's Queue is a pipe,
 * a feeder thread and pickling; an mproc queue is a ring of variable-size
 * messages in shared memory: a put copies the message into shared memory
 * once, a get copies it out once, waiting is on futexes, and there is no
 * helper thread. Messages arrive whole and in FIFO order (per producer, and
 * overall in the order the puts completed).
 *
 * Any size goes through (0 bytes included). Small messages (up to 16 KiB)
 * are copied into the ring; larger ones into a block of shared memory of
 * their own that the ring refers to. Blocks are recycled, so a stream of
 * large messages does not allocate once it runs.
 *
 * Unbounded as in Python (maxsize 0): a put never fails for lack of room.
 * While consumers keep taking messages a producer that finds the ring full
 * waits for them (so a fast producer does not buffer without end); when
 * nobody takes anything for about 2 ms the queue grows instead (and at once
 * for a put with timeout 0). Only the message count (maxsize) makes a put
 * block and fail with MP_EFULL.
 *
 * Beyond Python (whose docs warn that a process killed while using a queue
 * may corrupt it): a producer or consumer killed at any moment, even in the
 * middle of a put or get, leaves the queue consistent, and the other
 * processes keep putting and getting.
 *   - A message is delivered whole or not at all: the message of a
 *     producer killed before its put completed is dropped, never delivered
 *     torn; one whose put completed is delivered.
 *   - A message is lost only with its consumer: a consumer killed inside
 *     mp_queue_get may take the message it was getting with it (and then
 *     nobody else gets it; it is never delivered twice).
 *   - Memory: whatever a killed process held (a block it was filling or
 *     reading) is taken back by the queue at a later large put, and
 *     everything is returned when the queue is freed. The one exception is
 *     a process killed while inside the arena's allocator for the queue
 *     (growing the ring, making or freeing a block for a large message):
 *     the arena is not safe against that, and the block it was handing out
 *     or taking back stays lost until the whole process family has exited
 *     (the arena is an anonymous memfd). Such calls are rare: a queue in
 *     steady use allocates nothing.
 *   - A waiter that dies while blocked leaves nothing behind (except one
 *     killed in the instant it registers as a sleeper, or beyond 14
 *     sleepers on one side of a queue: that costs the others an extra futex
 *     wake per operation).
 *
 * close(): unlike Python, where close() only stops the calling process's
 * feeder thread, mp_*_close closes the queue for every process: later puts
 * fail with MP_ECLOSED, gets deliver what is left and then fail with
 * MP_ECLOSED, and blocked puts and gets return at once. (join_thread and
 * cancel_join_thread have nothing to do: there is no feeder thread.)
 *
 * *_free: every process must have stopped using the queue; freeing a queue
 * that another process still uses is undefined behaviour (but a process
 * blocked in a put, get or join of a freed queue returns MP_EINVAL). A
 * NULL, freed or foreign queue is checked by every function, in every
 * build, also once the freed queue's memory holds a new queue (a handle
 * carries a generation): MP_EINVAL (false or 0 where no code is
 * returned); freeing a queue twice aborts with a message (see the guide's
 * conventions). All functions are thread-safe. */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Queue -----------------------------------------------------------------
 * multiprocessing.Queue(maxsize). */
typedef struct mp_queue mp_queue_t;

/* Queue(maxsize): maxsize counts messages; 0 means unbounded (Python's
 * maxsize <= 0). NULL with errno ENOMEM when shared memory is exhausted,
 * EAGAIN when the family already has 1024 live threads using locks. */
MP_API mp_queue_t *mp_queue_new(size_t maxsize);

/* put(obj, block, timeout): copies len bytes at buf into the queue. Waits
 * while maxsize messages are in it: at most timeout seconds (MP_FOREVER:
 * without end, 0: not at all). Returns 0; MP_EFULL when the queue stayed
 * full (queue.Full); MP_ECLOSED after close; -ENOMEM when shared memory is
 * exhausted; -EAGAIN as mp_queue_new. */
MP_API int mp_queue_put(mp_queue_t *q, const void *buf, size_t len,
                        double timeout);

/* get(block, timeout): takes the oldest message into a buffer from malloc
 * (free it with mp_free; a 0-byte message gives a valid 1-byte buffer and
 * *len 0). Waits while the queue is empty as mp_queue_put waits. Returns 0;
 * MP_EEMPTY when no message came (queue.Empty); MP_ECLOSED when the queue
 * is closed and empty; -ENOMEM when malloc fails (the message stays
 * queued). */
MP_API int mp_queue_get(mp_queue_t *q, void **buf, size_t *len, double timeout);

/* As mp_queue_get, into the caller's buffer of cap bytes; *len gets the
 * message's length. MP_EOVERFLOW when the message is longer than cap: *len
 * is then the size needed and the message stays queued (buf NULL with cap 0
 * asks for the size of the next message). */
MP_API int mp_queue_get_into(mp_queue_t *q, void *buf, size_t cap, size_t *len,
                             double timeout);

/* put_nowait(obj) and get_nowait(): put and get with timeout 0. */
#define mp_queue_put_nowait(q, buf, len) mp_queue_put((q), (buf), (len), 0)
#define mp_queue_get_nowait(q, buf, len) mp_queue_get((q), (buf), (len), 0)

/* qsize(): the number of messages in the queue (counting puts in progress);
 * as in Python, only a snapshot when other processes use the queue. */
MP_API size_t mp_queue_qsize(const mp_queue_t *q);

/* empty(): qsize() == 0. full(): maxsize > 0 and qsize() >= maxsize. */
MP_API bool mp_queue_empty(const mp_queue_t *q);
MP_API bool mp_queue_full(const mp_queue_t *q);

/* close(), for every process (see the top of this file). Always 0;
 * closing twice is harmless. */
MP_API int mp_queue_close(mp_queue_t *q);

/* Frees the queue, its messages and its memory. NULL does nothing. */
MP_API void mp_queue_free(mp_queue_t *q);

/* ---- SimpleQueue -----------------------------------------------------------
 * multiprocessing.SimpleQueue: unbounded; put never blocks, get blocks
 * until a message comes. Same guarantees as Queue. */
typedef struct mp_simple_queue mp_simple_queue_t;

/* SimpleQueue(). NULL with errno as mp_queue_new. */
MP_API mp_simple_queue_t *mp_simple_queue_new(void);

/* put(obj): 0; MP_ECLOSED after close; -ENOMEM; -EAGAIN. */
MP_API int mp_simple_queue_put(mp_simple_queue_t *q, const void *buf,
                               size_t len);

/* get(): waits for a message (malloc'd buffer, free with mp_free). 0;
 * MP_ECLOSED when closed and empty; -ENOMEM. */
MP_API int mp_simple_queue_get(mp_simple_queue_t *q, void **buf, size_t *len);

/* get() into the caller's buffer: MP_EOVERFLOW as mp_queue_get_into. */
MP_API int mp_simple_queue_get_into(mp_simple_queue_t *q, void *buf, size_t cap,
                                    size_t *len);

/* empty(). */
MP_API bool mp_simple_queue_empty(const mp_simple_queue_t *q);

/* close(): as mp_queue_close. */
MP_API int mp_simple_queue_close(mp_simple_queue_t *q);

/* As mp_queue_free. */
MP_API void mp_simple_queue_free(mp_simple_queue_t *q);

/* ---- JoinableQueue ---------------------------------------------------------
 * multiprocessing.JoinableQueue(maxsize): a Queue that also counts the
 * messages put and not yet marked done. Every mp_queue_* function has its
 * mp_joinable_queue_* twin with the same behaviour. */
typedef struct mp_joinable_queue mp_joinable_queue_t;

/* The twins of mp_queue_new, _put, _get, _get_into, _qsize, _empty, _full,
 * _close and _free. */
MP_API mp_joinable_queue_t *mp_joinable_queue_new(size_t maxsize);
MP_API int mp_joinable_queue_put(mp_joinable_queue_t *q, const void *buf,
                                 size_t len, double timeout);
MP_API int mp_joinable_queue_get(mp_joinable_queue_t *q, void **buf,
                                 size_t *len, double timeout);
MP_API int mp_joinable_queue_get_into(mp_joinable_queue_t *q, void *buf,
                                      size_t cap, size_t *len, double timeout);
MP_API size_t mp_joinable_queue_qsize(const mp_joinable_queue_t *q);
MP_API bool mp_joinable_queue_empty(const mp_joinable_queue_t *q);
MP_API bool mp_joinable_queue_full(const mp_joinable_queue_t *q);
MP_API int mp_joinable_queue_close(mp_joinable_queue_t *q);
MP_API void mp_joinable_queue_free(mp_joinable_queue_t *q);

/* task_done(): marks one message taken from the queue as processed. 0, or
 * MP_EOVERFLOW when called more times than messages were put ("task_done()
 * called too many times"). */
MP_API int mp_joinable_queue_task_done(mp_joinable_queue_t *q);

/* join(): waits until every message put has been marked done. 0, or
 * MP_ETIMEDOUT when some are still not done after timeout seconds (Python
 * has no timeout: MP_FOREVER). As in Python, a message whose consumer died
 * before calling task_done stays unfinished. A producer killed in the
 * middle of a put never leaves counted a message that will not come: the
 * next process to put or join repairs the count. */
MP_API int mp_joinable_queue_join(mp_joinable_queue_t *q, double timeout);

#ifdef __cplusplus
}
#endif
#endif
