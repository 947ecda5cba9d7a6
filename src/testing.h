/* Test hooks: what the library exposes to its own tests, and nothing else
 * (not installed, not part of the API). Tests include this header instead
 * of declaring internals themselves; the files that define these include it
 * too, so that a declaration that drifts from its definition fails to
 * compile. It includes nothing of src/ but the leaf compat.h (the system
 * call numbers older headers lack, which tests use too), and any layer may
 * include it. */
#ifndef MPROC_TESTING_H
#define MPROC_TESTING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "compat.h"

/* ---- core/arena.c ----------------------------------------------------------
 */
/* Bytes handed out and not yet freed, headers included (leak checks). */
uint64_t mp__arena_in_use(void);
/* The allocator's lock word (the holder's tid). */
_Atomic uint32_t *mp__arena_lock_word(void);
/* The arena's memfd, address and size. */
int mp__arena_info(int *fd, uintptr_t *address, uint64_t *size);
/* Checks the allocator under its lock: the blocks tile the used range,
 * in_use is the sum of the blocks in use, every free block is on its free
 * list exactly once. Calls each_used (when not NULL) with the address of
 * each block in use. 0, or -1 with a message on stderr. */
int mp__arena_check(void (*each_used)(void *ptr, void *arg), void *arg);
/* Fault injection: when set, called inside the allocator's lock before
 * each change it records (step: the journal entry about to be written) and
 * before the journal is emptied (step 128); a test ends the process
 * there. */
extern void (*mp__arena_fault_hook)(unsigned step);

/* ---- core/object.c ---------------------------------------------------------
 */
/* The arena address a handle of a shared object names (its generation
 * taken off), without any check: lets a test see that the arena gave a
 * freed object's memory to a new one. */
void *mp__object_address(const void *handle);

/* ---- core/sha256.c, core/crypto.c
 * ----------------------------------------------------------
 */
/* The built-in HMAC-SHA256 (used where libcrypto cannot be loaded). */
void mp__hmac_sha256(const void *key, size_t key_len, const void *msg,
                     size_t msg_len, unsigned char out[32]);
/* HMAC through libcrypto only: the MAC length, or -ENOENT when libcrypto
 * cannot be loaded here. For comparing the built-in with it. */
int mp__hmac_libcrypto(const char *digest, const void *key, size_t key_len,
                       const void *msg, size_t msg_len, unsigned char *out,
                       size_t out_cap);

/* From now on this process computes HMAC as if no libcrypto could be
 * loaded (the built-in only). For tests; call before other threads use
 * HMAC. */
void mp__crypto_without_libcrypto(void);

/* ---- process/spawn.c, process/forkserver.c ------------------------------- */
/* The program the spawn method executes ("/proc/self/exe"): tests point it
 * elsewhere to make the exec fail. */
extern const char *mp__spawn_path;
/* The pid of this process's forkserver, 0 if none. */
pid_t mp__forkserver_pid(void);

/* ---- sync/barrier.c ---------------------------------------------------------
 */
/* Called (when set) right after a party was counted: a test kills the
 * party there. */
extern void (*mp__barrier_counted_hook)(void);

/* ---- sync/lock.c, semaphore.c, condition.c, barrier.c -------------------
 */
/* Whether a process announced that it sleeps on the Lock or RLock handle
 * (the waiters bit of its word: set just before the futex wait), or on
 * the Semaphore handle. False for a handle that is not one. */
bool mp__lock_has_sleepers(const void *handle);
bool mp__semaphore_has_sleepers(const void *handle);
/* Whether a process waits on the Condition handle (between its release of
 * the lock and taking it back), or on the Barrier handle (a party counted
 * in the current generation). */
bool mp__condition_has_sleepers(const void *handle);
bool mp__barrier_has_sleepers(const void *handle);

/* ---- queue/ring.c
 * ------------------------------------------------------------ */
/* Whether a process died inside an arena call made for the queue q: the
 * block it was allocating may be lost, so leak checks are skipped. */
bool mp__ring_arena_interrupted(const void *q);
/* When set (before the processes start), a waiter never spins for the
 * other side's progress: it goes to sleep at once, so that every wait
 * takes the sleeper's path (and its races with the waker). */
extern _Atomic bool mp__ring_spin_off;
/* Called (when set) by a waiter between its look at the other side's lock
 * and its look at that side's progress: a test widens the window there. */
extern void (*mp__ring_wait_hook)(void);

/* ---- mpi/rank.c (libmproc_mpi) ---------------------------------------------
 * When set, a rank other than 0 calls it as it sends each result: with
 * part 0 once rank 0 has taken the result's header (sent synchronously
 * then), part 1 after the rest went. A test makes the rank look lost
 * between the two (mp__mpi_test_cut_liveness: its liveness connection
 * closes while MPI still joins it to rank 0), so that the rest arrives
 * late. */
extern void (*mp__mpi_result_hook)(int part);
void mp__mpi_test_cut_liveness(void);

/* ---- containers/store.c ----------------------------------------------------
 * When set above 0, the shared-memory store (of a dict or list change) that
 * brings it to 0 kills the calling process (SIGKILL), so that a test can
 * die at every step of every change in turn and check what others find. */
extern int mp__store_kill_countdown;

/* ---- pool/queue.c
 * ------------------------------------------------------------- Fault injection
 * (sqlite's way of reaching failure paths): when set (in a worker, by a test's
 * initializer), called at each numbered point inside the pool's queue lock,
 * where it may end the process. */
extern void (*mp__pool_fault_hook)(int point);
enum mp__pool_fault {
  MP__FAULT_CLAIM_WRITTEN = 1,
  MP__FAULT_CLAIMING,
  MP__FAULT_CLAIM_MOVED,
  MP__FAULT_CLAIMED,
  MP__FAULT_COMMIT_JOURNAL,
  MP__FAULT_COMMITTING,
  MP__FAULT_COMMIT_LOGGED,
  MP__FAULT_COMMIT_COUNTED,
  MP__FAULT_COMMIT_PUSHED,
  MP__FAULT_COMMITTED,
  MP__FAULT_POPPED,
  MP__FAULT_COUNT,
};

#endif
