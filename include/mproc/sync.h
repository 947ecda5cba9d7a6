/* mproc: synchronization between processes (Python's multiprocessing.Lock,
 * RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier).
 *
 * Every object lives in shared memory: a pointer made before
 * mp_process_start() may be passed to the child in its arg struct and
 * works there under every start method. Waits are futexes on
 * CLOCK_MONOTONIC; a timeout is double seconds, MP_FOREVER blocks, 0 never
 * blocks; signals and spurious wake-ups never shorten or lengthen a wait.
 *
 * Beyond Python: a process (or thread) that dies never leaves the others
 * hanging.
 *   - Lock and RLock know the thread that acquired them. Acquiring one whose
 *     holder has ended (killed, exited, or exec'd without releasing) takes
 *     it over and returns MP_EOWNERDEAD: the caller holds it and should
 *     repair whatever the dead holder left half done.
 *   - A Barrier whose waiting party dies breaks (MP_EBROKEN for everyone).
 *   - A Condition waiter that has died never takes a notify meant for
 *     another.
 * Death detection uses the kernel's robust futex list as glibc registers
 * it (Linux >= 6.0 for every case; futex_waitv needs Linux >= 5.16: before,
 * or where a sandbox refuses it, a wait on several words re-checks the
 * others every 5 ms). A
 * thread of a program whose C library registers an incompatible list is
 * not detected when it dies (it can still detect others).
 *
 * *_free: every process must have stopped using the object; freeing one
 * that another process still uses is undefined behaviour, but for this: a
 * process asleep on a Lock, RLock, Semaphore, Event, Condition or Barrier
 * that is freed wakes up with MP_EINVAL (a Condition's waiter without the
 * lock). A NULL, freed or foreign handle is checked by every
 * function, in every build, also once the freed object's memory holds a
 * new object of the same kind (a handle carries a generation): MP_EINVAL
 * (false or 0 where no code is returned); freeing an object twice aborts
 * with a message naming its kind (see the guide's conventions). */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Lock ------------------------------------------------------------------
 * multiprocessing.Lock: a non-recursive lock that any thread of any process
 * may release. */
typedef struct mp_lock mp_lock_t;

/* Lock(). NULL with errno ENOMEM when shared memory is exhausted. */
MP_API mp_lock_t *mp_lock_new(void);

/* Lock.acquire(timeout=timeout): 0 when acquired; MP_ETIMEDOUT when it is
 * still held at the deadline (at once for timeout 0); MP_EOWNERDEAD when
 * its holder ended without releasing it (the lock is now held by the
 * caller); -EAGAIN when the family already has 1024 live threads using
 * locks. As in Python, a thread acquiring a Lock it holds waits until
 * another thread releases it (or the timeout). */
MP_API int mp_lock_acquire(mp_lock_t *l, double timeout);

/* Lock.locked() (Python 3.14): whether some thread holds it now (a snapshot:
 * it may change at once). A lock whose holder died reads as unlocked, since
 * the next acquire takes it over without waiting (with MP_EOWNERDEAD). */
MP_API bool mp_lock_locked(const mp_lock_t *l);

/* Lock.release(): 0, or MP_EOVERFLOW if it was not locked ("released too
 * many times"). Any thread may release it, not only the one that acquired
 * it. */
MP_API int mp_lock_release(mp_lock_t *l);

/* Frees it (NULL does nothing); see *_free at the top of this file. */
MP_API void mp_lock_free(mp_lock_t *l);

/* ---- RLock -----------------------------------------------------------------
 * multiprocessing.RLock: recursive, owned by one thread of one process. */
typedef struct mp_rlock mp_rlock_t;

/* RLock(). NULL with errno ENOMEM when shared memory is exhausted. */
MP_API mp_rlock_t *mp_rlock_new(void);

/* RLock.acquire(timeout=timeout): as mp_lock_acquire; the owner acquiring
 * again only increments the recursion count (-EAGAIN past UINT32_MAX). */
MP_API int mp_rlock_acquire(mp_rlock_t *r, double timeout);

/* RLock.release(): 0, or MP_ENOTOWNER if the calling thread does not hold
 * it ("cannot release un-acquired lock"). */
MP_API int mp_rlock_release(mp_rlock_t *r);

/* RLock.locked() (Python 3.14): whether any thread holds it, as
 * mp_lock_locked. */
MP_API bool mp_rlock_locked(const mp_rlock_t *r);

/* Whether the calling thread holds it (Python's _is_mine()). */
MP_API bool mp_rlock_is_mine(const mp_rlock_t *r);

/* The holder's recursion count (Python's _count()); 0 when unlocked. */
MP_API unsigned mp_rlock_count(const mp_rlock_t *r);

/* The process id of the holder, and its thread id (gettid()) in *tid if
 * tid is not NULL; 0 (both) when unlocked or when the holder has ended. */
MP_API pid_t mp_rlock_owner(const mp_rlock_t *r, pid_t *tid);

/* Frees it (NULL does nothing); see *_free at the top of this file. */
MP_API void mp_rlock_free(mp_rlock_t *r);

/* ---- Semaphore and BoundedSemaphore ----------------------------------------
 * multiprocessing.Semaphore / BoundedSemaphore. Units have no owner: those
 * taken by a process that dies are not given back (as in Python). */
typedef struct mp_semaphore mp_semaphore_t;

/* Semaphore(value). NULL with errno EINVAL if value > INT32_MAX, ENOMEM. */
MP_API mp_semaphore_t *mp_semaphore_new(unsigned value);

/* BoundedSemaphore(value): a semaphore whose value may never exceed the
 * initial value. Used with the mp_semaphore_* functions below. */
MP_API mp_semaphore_t *mp_bounded_semaphore_new(unsigned value);

/* acquire(timeout=timeout): 0 when a unit was taken, MP_ETIMEDOUT when
 * none came before the deadline. */
MP_API int mp_semaphore_acquire(mp_semaphore_t *s, double timeout);

/* release(): 0; MP_EOVERFLOW for a BoundedSemaphore already at its initial
 * value ("semaphore or lock released too many times"), or for any
 * semaphore at INT32_MAX. */
MP_API int mp_semaphore_release(mp_semaphore_t *s);

/* get_value(). */
MP_API int mp_semaphore_value(const mp_semaphore_t *s);

/* Frees it (NULL does nothing); see *_free at the top of this file. */
MP_API void mp_semaphore_free(mp_semaphore_t *s);

/* ---- Condition -------------------------------------------------------------
 * multiprocessing.Condition. It works with an RLock (its own, by default)
 * or a Lock: two constructors, as C has no union of the two types. */
typedef struct mp_condition mp_condition_t;

/* A predicate for mp_condition_wait_for, called in the waiting process
 * with the lock held. */
typedef bool (*mp_condition_pred_cb)(void *arg);

/* Condition(lock): lock NULL makes a Condition with an RLock of its own
 * (Python's default); else it uses the given RLock, which must outlive
 * it (once it is freed, the condition's calls return MP_EINVAL). */
MP_API mp_condition_t *mp_condition_new(mp_rlock_t *lock);

/* Condition(Lock()): a Condition on a plain Lock, which must outlive it.
 * NULL with errno EINVAL if lock is NULL. */
MP_API mp_condition_t *mp_condition_new_with_lock(mp_lock_t *lock);

/* acquire/release of the underlying lock: as mp_rlock_acquire /
 * mp_rlock_release (or the Lock ones). */
MP_API int mp_condition_acquire(mp_condition_t *c, double timeout);
MP_API int mp_condition_release(mp_condition_t *c);

/* Condition.wait(timeout): releases the lock (every recursion level),
 * sleeps until notified or the timeout, and takes the lock back (waiting
 * as long as that takes). 0 when notified; MP_ETIMEDOUT at the timeout
 * (Python's False); MP_ENOTOWNER if the calling thread does not hold the
 * lock; MP_EOWNERDEAD if, while it waited, a holder of the lock died (the
 * lock is held by the caller again either way). As with POSIX condition
 * variables, it may return 0 without a notify meant for it (a waiter that
 * was between releasing the lock and sleeping when notify came); check
 * the condition in a loop, or use mp_condition_wait_for. */
MP_API int mp_condition_wait(mp_condition_t *c, double timeout);

/* Condition.wait_for(predicate, timeout): waits until pred(arg) is true.
 * 0 when it is; MP_ETIMEDOUT when it is still false at the deadline;
 * MP_ENOTOWNER; MP_EOWNERDEAD as mp_condition_wait (returned at once, the
 * predicate not evaluated again). */
MP_API int mp_condition_wait_for(mp_condition_t *c, mp_condition_pred_cb pred,
                                 void *arg, double timeout);

/* Condition.notify(n): wakes up to n of the threads waiting (n <= 0:
 * none); MP_ENOTOWNER if the caller does not hold the lock. */
MP_API int mp_condition_notify(mp_condition_t *c, int n);

/* Condition.notify_all(). MP_ENOTOWNER if the caller does not hold the
 * lock. */
MP_API int mp_condition_notify_all(mp_condition_t *c);

/* Frees it with its own RLock, never a lock the caller gave it (NULL does
 * nothing); see *_free at the top of this file. */
MP_API void mp_condition_free(mp_condition_t *c);

/* ---- Event -----------------------------------------------------------------
 * multiprocessing.Event. */
typedef struct mp_event mp_event_t;

/* Event(), initially clear. NULL with errno ENOMEM when shared memory is
 * exhausted. */
MP_API mp_event_t *mp_event_new(void);

/* set(): wakes every waiter. Always 0. */
MP_API int mp_event_set(mp_event_t *e);

/* clear(). Always 0. */
MP_API int mp_event_clear(mp_event_t *e);

/* is_set(). */
MP_API bool mp_event_is_set(const mp_event_t *e);

/* wait(timeout): 0 once the flag is set (also when set() and clear() both
 * happened while it slept, as threading.Event), MP_ETIMEDOUT otherwise. */
MP_API int mp_event_wait(mp_event_t *e, double timeout);

/* Frees it (NULL does nothing); see *_free at the top of this file. */
MP_API void mp_event_free(mp_event_t *e);

/* ---- Barrier ---------------------------------------------------------------
 * multiprocessing.Barrier. */
typedef struct mp_barrier mp_barrier_t;

/* The action of a Barrier: called once per generation, in the process of
 * the last party to arrive, before any party is released. It must be a
 * function of the program or of a library it loaded: under spawn and
 * forkserver each process finds it at its own address. If a process cannot
 * find it, the barrier breaks there (as Python's does when the action
 * raises). */
typedef void (*mp_barrier_action_cb)(void);

/* Barrier(parties, action, timeout): action may be NULL; timeout is the
 * default of mp_barrier_wait (MP_FOREVER: none). NULL with errno EINVAL if
 * parties is 0 or above 65535, ENOMEM. */
MP_API mp_barrier_t *
mp_barrier_new(unsigned parties, mp_barrier_action_cb action, double timeout);

/* Barrier.wait(): waits for all parties, with the barrier's timeout.
 * Returns the arrival index, 0 .. parties - 1, different for each party of
 * a generation; MP_EBROKEN if the barrier is or becomes broken while
 * waiting (abort(), reset() while waiting, a party that died, or a
 * timeout: the party that times out breaks the barrier and gets MP_EBROKEN
 * too, as Python raises BrokenBarrierError there). -EAGAIN as
 * mp_lock_acquire. */
MP_API int mp_barrier_wait(mp_barrier_t *b);

/* Barrier.wait(timeout): the same with a timeout of its own. */
MP_API int mp_barrier_wait_timeout(mp_barrier_t *b, double timeout);

/* reset(): back to the empty state; the parties waiting get MP_EBROKEN.
 * Repairs a broken barrier. Always 0. */
MP_API int mp_barrier_reset(mp_barrier_t *b);

/* abort(): breaks the barrier: current and future waits return MP_EBROKEN
 * until reset(). Always 0. */
MP_API int mp_barrier_abort(mp_barrier_t *b);

/* broken and parties. */
MP_API bool mp_barrier_broken(const mp_barrier_t *b);
MP_API unsigned mp_barrier_parties(const mp_barrier_t *b);

/* n_waiting: parties waiting in the current generation (0 when broken). */
MP_API unsigned mp_barrier_n_waiting(const mp_barrier_t *b);

/* Frees it (NULL does nothing); see *_free at the top of this file. */
MP_API void mp_barrier_free(mp_barrier_t *b);

#ifdef __cplusplus
}
#endif
#endif
