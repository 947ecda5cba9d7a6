/* What the areas of mproc share. Internal non-static names are mp__. */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "mproc.h"

#define MP__UNUSED __attribute__((unused))

/* Lock protocols that comments state ("with X held") are asserted in debug
 * builds (NDEBUG unset; CI runs one). A pthread mutex does not say who
 * holds it: this checks that somebody does, the best a default mutex
 * allows. */
static inline bool mp__pthread_mutex_busy(pthread_mutex_t *m) {
  if (pthread_mutex_trylock(m) != 0)
    return true;
  pthread_mutex_unlock(m);
  return false;
}
/* Thread-local variables read on fast paths: one load, no call. */
#define MP__TLS_MODEL __attribute__((tls_model("initial-exec")))

/* ---- Deadlines ----------------------------------------------------------
 * Every wait is on CLOCK_MONOTONIC with an absolute deadline, converted to
 * a relative timeout at each wait, so EINTR and spurious wakeups just loop
 * and wait for the rest of the time. */
typedef struct mp__deadline {
  struct timespec at; /* absolute CLOCK_MONOTONIC time */
  bool forever;       /* timeout < 0 */
} mp__deadline_t;

mp__deadline_t mp__deadline_in(double timeout);
/* A deadline that never passes, for waits that have none. */
#define MP__NO_DEADLINE (&(const mp__deadline_t){.forever = true})
/* True once the deadline has passed (never for forever). */
bool mp__deadline_expired(const mp__deadline_t *d);
/* Milliseconds left for poll(): -1 forever, 0 when expired; rounded up. */
int mp__deadline_poll_ms(const mp__deadline_t *d);
/* Monotonic now in nanoseconds. */
uint64_t mp__now_ns(void);

/* n random bytes from the kernel (getrandom; /dev/urandom where the call is
 * refused or missing). 0, or -errno when neither gives them: never loops
 * on a failure. */
int mp__random(void *buf, size_t n);

/* ---- Shared memory allocation -------------------------------------------
 * Memory for shared objects (locks, queues, values). A pointer returned
 * here is valid at the same address in every process of the family, under
 * every start method, also in children started before the allocation.
 * Zeroed, aligned to 64 bytes. NULL with errno ENOMEM/ENOSPC when the
 * arena is full or the system has no memory for it (never SIGBUS later). */
void *mp__shm_alloc(size_t size);
void mp__shm_free(void *ptr);

/* Well-known pointers at the start of the arena, one per area that keeps a
 * family-wide object there (the first process to need it creates it with a
 * compare-and-swap on its root; everyone else finds it there). */
enum mp__root {
  MP__ROOT_OWNERS, /* the robust owner table of the futex core */
  MP__ROOT_CONNS,  /* the connection table */
  MP__ROOT_RESERVED2,
  MP__ROOT_RESERVED3,
  MP__ROOT_COUNT = 16,
};
_Atomic(void *) *mp__shm_root(enum mp__root which);

/* Creates the arena if this process has none yet (done at the first
 * process start, so that every child has it). 0 or -errno. */
int mp__arena_ensure(void);
/* What a spawned child needs to map the arena at the same address. */
int mp__arena_info(int *fd, uintptr_t *address, uint64_t *size);
/* In a spawned child: maps the parent's arena at its address. */
int mp__arena_attach(int fd, uintptr_t address, uint64_t size);
bool mp__arena_contains(const void *ptr);

/* fds that must exist, at the same number, in every child (spawn and
 * forkserver pass them explicitly; fork inherits them anyway). The fd keeps
 * FD_CLOEXEC in the parent. Thread-safe. Returns 0 or -errno. */
int mp__inherit_fd_add(int fd);
void mp__inherit_fd_remove(int fd);
/* A malloc'd copy of the registered fds, after `reserve` free slots at the
 * front (and one spare at the end). Returns the number copied, or -ENOMEM. */
int mp__inherit_fd_copy(int **out, size_t reserve);

/* ---- After fork -----------------------------------------------------------
 * One registry for what each area must do around fork(): every fork of the
 * process (the fork start method, the forkserver's forks and the user's own
 * fork()) runs the registered handlers, as pthread_atfork runs its own:
 * prepare in reverse order of registration, parent and child in order.
 * Handlers must be async-signal-safe in the child (it has one thread). */
typedef struct mp__atfork {
  void (*prepare)(void); /* any of the three may be NULL */
  void (*parent)(void);
  void (*child)(void);
  _Atomic bool registered; /* set by mp__atfork_register */
} mp__atfork_t;

void mp__atfork_add(mp__atfork_t *h);

/* Registers h (static storage) once: later calls cost one load, so areas
 * call it on their first use of anything fork must know about.
 * Thread-safe. Aborts with a message when the table is full: it has room
 * for every area of the library. */
static inline void mp__atfork_register(mp__atfork_t *h) {
  if (!atomic_load_explicit(&h->registered, memory_order_acquire))
    mp__atfork_add(h);
}

/* ---- Bootstrap of spawned children ------------------------------------------
 * A spawned child (spawn, or a child of the forkserver) is a fresh exec of
 * the program. Its start data is read before main(); mp_main() then runs it.
 * A process whose start data was found here is "pending" until mp_main()
 * takes over. */
enum mp__boot_role {
  MP__BOOT_NONE,   /* an ordinary program, or mp_main() already ran */
  MP__BOOT_CHILD,  /* a spawned child, waiting for mp_main() */
  MP__BOOT_SERVER, /* a forkserver, waiting for mp_main() */
};

/* Exit statuses of the start machinery: a child or forkserver that cannot
 * run exits with one of these, before any user code ran. */
enum mp__exit_status {
  MP__EXIT_START_FAILED = 70, /* start data unusable, target not found, no
                                 mp_main() in the program */
  MP__EXIT_NO_RANDOM = 71,    /* the forkserver found no random bytes */
  MP__EXIT_AUTH_FAILED = 72,  /* a forkserver's client failed the challenge */
  MP__EXIT_NO_MEMORY = 73,    /* the forkserver ran out of memory */
  MP__EXIT_POLL_FAILED = 74,  /* the forkserver's poll failed */
};

/* Called by the constructor that found start data. */
void mp__boot_set_role(enum mp__boot_role role);
/* mp_main(): the pending role, once (MP__BOOT_NONE afterwards). */
enum mp__boot_role mp__boot_take(void);
/* Stops a spawned child that reached the API without passing through
 * mp_main() (see mp_main); does nothing otherwise. */
void mp__check_bootstrapped(void);

#endif
