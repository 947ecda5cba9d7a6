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
  bool interruptible; /* mp_interrupt() ends the wait with MP_EINTR: the
                         waits of the API (mp__deadline_in), not the
                         library's own short ones (MP__NO_DEADLINE) */
} mp__deadline_t;

/* The deadline of a wait of the API: interruptible. */
mp__deadline_t mp__deadline_in(double timeout);
/* The one check of a caller's timeout: NaN is MP_EINVAL (it would wait
 * forever otherwise); every public function that takes a timeout calls it
 * before anything else, also on its fast path. 0 or MP_EINVAL. */
static inline int mp__timeout_check(double timeout) {
  return timeout != timeout ? MP_EINVAL : 0;
}
/* A deadline that never passes, for the library's own waits (not
 * interruptible). */
#define MP__NO_DEADLINE (&(const mp__deadline_t){.forever = true})
/* The one of a and b that passes first. */
mp__deadline_t mp__deadline_earlier(const mp__deadline_t *a,
                                    const mp__deadline_t *b);
/* True once the deadline has passed (never for forever). */
bool mp__deadline_expired(const mp__deadline_t *d);
/* Milliseconds left for poll(): -1 forever, 0 when expired; rounded up. */
int mp__deadline_poll_ms(const mp__deadline_t *d);
/* Monotonic now in nanoseconds. */
uint64_t mp__now_ns(void);

/* ---- Interrupts (interrupt.c) --------------------------------------------
 * mp_interrupt() sets the word (process-local, 0 or 1) and wakes its
 * futex waiters and the eventfd; futex.c watches the word, mp__poll the
 * eventfd. */
extern _Atomic uint32_t mp__interrupt_word;
/* Whether a wait with this deadline must stop now (MP_EINTR). */
bool mp__interrupted(const mp__deadline_t *deadline);
/* The eventfd that mp_interrupt writes, made on first use; -errno. */
int mp__interrupt_fd(void);
struct pollfd;
/* poll() over fds[0..n) until one is ready (returns how many), the
 * deadline passes (0) or, for an interruptible deadline, mp_interrupt()
 * (MP_EINTR; something ready wins). Restarts after signals; -errno on
 * failure. fds must have room for n + 1 entries: the last one is the
 * interrupt's. */
int mp__poll(struct pollfd *fds, size_t n, const mp__deadline_t *deadline);
/* ---- The checking mode (debug.c) ------------------------------------------
 * mp__debug_log(level, format, ...) prints one line on stderr when the
 * level set by MPROC_DEBUG or mp_set_debug is at least `level`; off, it is
 * one load and a branch, and its arguments are not evaluated. */
extern _Atomic int mp__debug_level;
void mp__debug_print(int level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
#define mp__debug_log(level, ...)                                              \
  do {                                                                         \
    if (__builtin_expect(                                                      \
            atomic_load_explicit(&mp__debug_level, memory_order_relaxed) >=    \
                (level),                                                       \
            0))                                                                \
      mp__debug_print((level), __VA_ARGS__);                                   \
  } while (0)
/* Warns (one line per word) about the 8-byte aligned words of bytes that
 * point into this process's own stack, heap, code or data, which a child
 * started with spawn or forkserver cannot use; `what` and `name` say whose
 * bytes they are. Returns the number of such words. Call it only when the
 * checking mode is on. */
int mp__debug_scan_pointers(const void *bytes, size_t len, const char *what,
                            const char *name);
/* Whether the checks of that level are on (for checks that cost). */
static inline bool mp__debug_on(int level) {
  return atomic_load_explicit(&mp__debug_level, memory_order_relaxed) >= level;
}

/* ---- Sizes ----------------------------------------------------------------
 * Every size the library computes from a caller's numbers goes through
 * mp__size: a * b + c, refused (false) when it overflows or exceeds
 * MP__SIZE_MAX. The bound is far above any arena or message and far below
 * where later arithmetic (headers, rounding to pages, doubling a capacity)
 * could overflow, so code after the check need not think about it. The
 * caller turns false into -ENOMEM (or NULL with errno ENOMEM). */
#define MP__SIZE_MAX ((size_t)1 << 48)
static inline bool mp__size(size_t a, size_t b, size_t c, size_t *out) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r) || __builtin_add_overflow(r, c, &r) ||
      r > MP__SIZE_MAX)
    return false;
  *out = r;
  return true;
}
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
  MP__ROOT_OWNERS,  /* the robust owner table of the futex core */
  MP__ROOT_CONNS,   /* the connection table */
  MP__ROOT_TRACKER, /* the resource tracker's end (tracker.c) */
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

/* ---- fds ------------------------------------------------------------------
 * Every fd the library opens is passed through mp__fd_high as it is made
 * (memfds, pipes, sockets, pidfds, eventfds): it comes back at a number
 * above 2, close-on-exec, so that a program whose fd 0, 1 or 2 is closed
 * never has an mproc fd there. fd < 0 is returned as is (errno kept); on
 * failure the fd is closed and -1 returned with errno set. Exported
 * (privately, cmake/mproc.map.in) for libmproc_mpi. */
MP_API int mp__fd_high(int fd);
/* The same for both fds of a pipe2() or socketpair() call that returned
 * rc: 0, or -1 with errno (and nothing left open). */
int mp__fd_pair_high(int rc, int fds[2]);

/* fds that must exist, at the same number, in every child (spawn and
 * forkserver pass them explicitly; fork inherits them anyway). The fd keeps
 * FD_CLOEXEC in the parent. Thread-safe. Returns 0 or -errno. */
int mp__inherit_fd_add(int fd);
void mp__inherit_fd_remove(int fd);
/* A malloc'd copy of the registered fds, after `reserve` free slots at the
 * front (and one spare at the end). Returns the number copied, or -ENOMEM. */
int mp__inherit_fd_copy(int **out, size_t reserve);

/* ---- The resource tracker (tracker.c) ------------------------------------
 * Named resources a process of the family created are unlinked by a helper
 * process once every process holding the family's tracker is gone,
 * however they ended. The helper starts at the first registration. */
enum mp__resource {
  MP__RESOURCE_SHM = 's',    /* a POSIX shm name, "/name" */
  MP__RESOURCE_SOCKET = 'u', /* a Unix socket file's path */
};
/* Registers a resource this process created: 0, or -errno when no tracker
 * could be started (the resource then lives on if the family is killed). */
int mp__track(enum mp__resource kind, const char *name);
/* Forgets it: unlinked by its owner, or meant to outlive the family. */
void mp__untrack(enum mp__resource kind, const char *name);
/* ---- Handles of shared objects ----------------------------------------------
 * Every shared object (lock, semaphore, event, condition, barrier, queue,
 * value, connection) starts with a 32-bit magic of its kind. Every public
 * call checks the handle it is given with mp__object_check, in every
 * build: a NULL handle, a pointer outside the arena, an object of another
 * kind or a freed one gives MP_EINVAL (false, 0 or NULL where the function
 * returns no code). Freeing marks the object freed (MP__FREED of its
 * magic) before its memory goes back, so that a use after the free is
 * caught until the memory is used again, and a second free aborts with a
 * message naming the kind. NULL is freed as nothing. */
#define MP__FREED(magic) (~(uint32_t)(magic))
static inline int mp__object_check(const void *obj, uint32_t magic) {
  return obj && mp__arena_contains(obj) &&
                 atomic_load_explicit((_Atomic uint32_t *)obj,
                                      memory_order_acquire) == magic
             ? 0
             : MP_EINVAL;
}
/* At the top of mp_<kind>_free of a non-NULL handle: marks obj freed, or
 * aborts with a message when it is freed already or not a <kind>. */
void mp__object_retire(void *obj, uint32_t magic, const char *kind);

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
/* Whether mp_main() ran in this process (or in the parent it was forked
 * from): a program whose main() does not call it cannot use spawn or the
 * forkserver, since its children would run main() again. */
bool mp__boot_main_called(void);
/* Stops a spawned child that reached the API without passing through
 * mp_main() (see mp_main); does nothing otherwise. */
void mp__check_bootstrapped(void);

#endif
