/* What the areas of mproc share. Internal non-static names are mp__. */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
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

/* ---- fds ------------------------------------------------------------------
 * Every fd the library opens is passed through mp__fd_high as it is made
 * (memfds, pipes, sockets, pidfds, eventfds): it comes back at a number
 * above 2, close-on-exec, so that a program whose fd 0, 1 or 2 is closed
 * never has an mproc fd there. fd < 0 is returned as is (errno kept); on
 * failure the fd is closed and -1 returned with errno set. Exported (under
 * MPROC_PRIVATE_<major>, cmake/mproc.map.in) for libmproc_mpi's own fds. */
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
 * Every shared object (lock, rlock, semaphore, event, condition, barrier,
 * the queues' ring, value, connection, dict, list, family manager) starts
 * with the layout of mp__object_t: the 32-bit magic of its kind, then a
 * generation. The handle a constructor returns (mp__object_publish) is the
 * object's address with the generation in its top 16 bits: user addresses
 * are below 2^48 on x86-64 and aarch64, so those bits are free. The
 * generation comes from one family-wide counter in the arena's header and
 * is never 0.
 *
 * Every public call turns the handle it is given into the object's address
 * with mp__object_open, in every build: a NULL handle, an address outside
 * the arena, an object of another kind, a freed one, or memory that now
 * holds another object of the same kind (its generation differs) gives
 * NULL, which the call turns into MP_EINVAL (false, 0 or NULL where it
 * returns no code). Handles kept inside other objects (a condition's lock,
 * a value's lock, a manager's objects) stay handles, opened the same way.
 *
 * Generation 0 means unchecked: objects inside another object (the RLock
 * of a value or condition) are reached by their plain address, and an arena
 * that lies above 2^48 (where no address bits are free) gives every object
 * generation 0, so that its handles are plain addresses and only the magic
 * is checked.
 *
 * Freeing marks the object freed (MP__FREED of its magic, the generation
 * kept) before its memory goes back, so that a second free, also through a
 * stale handle, aborts with a message naming the kind. NULL is freed as
 * nothing. */
typedef struct mp__object {
  uint32_t magic;
  uint32_t generation;
} mp__object_t;

/* In a struct that starts with `uint32_t magic; uint32_t generation;`. */
#define MP__OBJECT_LAYOUT(type)                                                \
  _Static_assert(offsetof(type, generation) == 4 &&                            \
                     sizeof(((type *)0)->generation) == 4,                     \
                 #type " starts with the layout of mp__object_t")

#define MP__FREED(magic)    (~(uint32_t)(magic))
#define MP__HANDLE_SHIFT    48
#define MP__HANDLE_ADDRESS  (((uintptr_t)1 << MP__HANDLE_SHIFT) - 1)
#define MP__GENERATION_MASK 0xffffu

/* Where the arena lies in this process (all 0 until it is mapped here), and
 * which bits of a handle are its address: MP__HANDLE_ADDRESS, or all of
 * them when the arena lies above 2^48. Written once, when the arena is
 * created or attached, before any handle exists in the process. */
typedef struct mp__arena_span {
  uintptr_t base;
  uintptr_t size;  /* bytes */
  uintptr_t words; /* size / 8 */
  uintptr_t address_mask;
} mp__arena_span_t;
extern mp__arena_span_t mp__arena_span;

/* Whether the address ptr, or the address in the handle ptr, lies in the
 * arena. */
static inline bool mp__arena_contains(const void *ptr) {
  return ((uintptr_t)ptr & mp__arena_span.address_mask) - mp__arena_span.base <
         mp__arena_span.size;
}

/* The identity of the object at obj (an address, not a handle): its magic
 * and generation as one word. A sleeper takes it after opening its handle
 * and compares it after every wake-up, to learn that the object was freed
 * (or its memory given to another) while it slept. */
static inline uint64_t mp__object_id(const void *obj) {
  return __atomic_load_n((const uint64_t *)obj, __ATOMIC_ACQUIRE);
}

/* Whether addr is the address of an aligned 8-byte word of the arena. The
 * offset is rotated right by 3: one that is not a multiple of 8 becomes
 * huge, so one comparison refuses a misaligned address (whose word could
 * not be read atomically, or would cross the arena's end) along with every
 * address outside the arena. */
static inline bool mp__arena_word(uintptr_t addr) {
  uintptr_t offset = addr - mp__arena_span.base;
  return (offset >> 3 | offset << (sizeof offset * 8 - 3)) <
         mp__arena_span.words;
}

/* The address of the live object of kind `magic` that handle names, or
 * NULL (see above). The one check of every public entry point. */
static inline void *mp__object_open(const void *handle, uint32_t magic) {
  uintptr_t h = (uintptr_t)handle, addr = h & mp__arena_span.address_mask;
  if (!mp__arena_word(addr))
    return NULL;
  /* In the arena, so not NULL (no arena is mapped at page 0): the caller's
   * own NULL test then costs nothing. */
  if (addr == 0)
    __builtin_unreachable();
  /* The generation, from the top 16 bits of the handle to bits 32..47 of
   * the identity word (little-endian: the magic is its low half). */
  uint64_t want = magic | (uint64_t)(h ^ addr) >> (MP__HANDLE_SHIFT - 32);
  return mp__object_id((const void *)addr) == want ? (void *)addr : NULL;
}

/* Stamps obj (a new object, not yet shared) with a new generation and its
 * magic, and returns its handle. NULL gives NULL. */
void *mp__object_publish(void *obj, uint32_t magic);

/* At the top of mp_<kind>_free of a non-NULL handle: marks the object
 * freed and returns its address, or aborts with a message when it is freed
 * already (also through a stale handle) or not a <kind>. */
void *mp__object_retire(const void *handle, uint32_t magic, const char *kind);

/* A new generation (never 0) from the family-wide counter (arena.c). */
uint32_t mp__arena_generation(void);

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
