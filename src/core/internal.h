/* What the areas of mproc share. Internal non-static names are mp__. */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "mproc.h"

#define MP__UNUSED __attribute__((unused))
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
/* True once the deadline has passed (never for forever). */
bool mp__deadline_expired(const mp__deadline_t *d);
/* Milliseconds left for poll(): -1 forever, 0 when expired; rounded up. */
int mp__deadline_poll_ms(const mp__deadline_t *d);
/* Monotonic now in nanoseconds. */
uint64_t mp__now_ns(void);

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
/* The allocator's lock word (the holder's tid), for tests. */
_Atomic uint32_t *mp__arena_lock_word(void);
/* Bytes handed out and not yet freed, headers included (for tests). */
uint64_t mp__arena_in_use(void);

/* fds that must exist, at the same number, in every child (spawn and
 * forkserver pass them explicitly; fork inherits them anyway). The fd keeps
 * FD_CLOEXEC in the parent. Thread-safe. Returns 0 or -errno. */
int mp__inherit_fd_add(int fd);
void mp__inherit_fd_remove(int fd);

/* ---- Process objects ------------------------------------------------------
 */
#include <pthread.h>

#define MP__AUTHKEY_LEN 32
#define MP__MAX_DEPTH   16 /* nesting of Process-1:2:3 names */

enum mp__process_kind {
  MP__PROCESS_CHILD,  /* made by mp_process_new*: started by the caller */
  MP__PROCESS_MAIN,   /* mp_current_process() of the main program */
  MP__PROCESS_SELF,   /* mp_current_process() inside a child */
  MP__PROCESS_PARENT, /* mp_parent_process() inside a child */
};

enum mp__process_state {
  MP__PROCESS_INITIAL,
  MP__PROCESS_STARTED,
  MP__PROCESS_CLOSED,
};

enum mp__start_method {
  MP__METHOD_FORK,
  MP__METHOD_SPAWN,
  MP__METHOD_FORKSERVER,
  MP__METHOD_COUNT,
};

struct mp_context {
  const char *name;
  enum mp__start_method method;
};

/* A process object lives in the memory of the process that made it.
 * `lock` guards the fields below it that change after start (pidfd,
 * reaped, exitcode, sentinel); the library's family lock guards the
 * children list links. */
struct mp_process {
  enum mp__process_kind kind;
  _Atomic int state; /* enum mp__process_state */
  char *name;
  bool daemon;
  bool library_owned; /* freed by the user while running */
  const mp_context_t *ctx;
  void (*target)(void *arg);
  void *arg;
  size_t arg_size;
  const mp_process_type_t *type;
  void *data;
  unsigned identity[MP__MAX_DEPTH];
  unsigned depth;
  pid_t creator_pid; /* only this process may start, join, signal it */
  unsigned char authkey[MP__AUTHKEY_LEN];
  mp_process_t *prev, *next; /* children list, while tracked */

  pthread_mutex_t lock;
  pid_t pid;
  int pidfd;    /* for signals and, for true children, waitid */
  int sentinel; /* readable when the process ended (== pidfd, or a status
                   fd from the forkserver) */
  bool reaped;
  bool via_server; /* started by the forkserver: the exit status comes
                      through the sentinel, not waitid */
  int exitcode;
};

/* The start methods. Each launches p (state INITIAL, checks done, the
 * family lock held) and fills pid, pidfd and sentinel, or returns a code. */
int mp__start_fork(mp_process_t *p);
int mp__start_spawn(mp_process_t *p);
int mp__start_forkserver(mp_process_t *p);

/* The default context's method (MPROC_START_METHOD, or set_start_method),
 * fixing it as Python's first use does. */
const mp_context_t *mp__default_context(void);

/* Who a child's parent is, as the child learns it at start. */
typedef struct mp__child_start {
  pid_t parent_pid;    /* the process that started it */
  char *parent_name;   /* never freed in the child */
  int parent_pidfd;    /* a pidfd of the parent, or -1 */
  pid_t direct_parent; /* who forked it: the parent, or the forkserver */
} mp__child_start_t;

/* Runs the child side of a started process: p becomes the current
 * process, the target or run() is called, the process exits. Never
 * returns. */
_Noreturn void mp__child_main(mp_process_t *p, const mp__child_start_t *start);

/* Sets the default start method of a child to its parent's (as Python's
 * spawn preparation does). */
void mp__set_default_method(enum mp__start_method method);

/* After a start method set p->pid: opens the pidfd that watches the child
 * (or keeps the pipe sentinel where there are no pidfds). On failure the
 * child is killed and reaped. 0 or -errno. */
int mp__watch_child(mp_process_t *p);

/* The calling process's own pidfd, opened once; -errno on failure
 * (-ENOSYS where the system has no pidfds). */
int mp__self_pidfd(void);

/* ---- Process family -------------------------------------------------------
 * Called in a child right after it came to life (fork, spawn or forkserver)
 * before it runs user code: areas reset their per-process state. */
void mp__process_after_fork_child(void);

/* Stops a spawned child that reached the API without passing through
 * mp_main() (see mp_main); does nothing otherwise. */
void mp__check_bootstrapped(void);

#endif
