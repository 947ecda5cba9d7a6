/* Process objects and the start methods (internal to src/process, and
 * what the areas above may know of a process object). */
#ifndef MPROC_PROCESS_INTERNAL_H
#define MPROC_PROCESS_INTERNAL_H

#include <pthread.h>

#include "core/internal.h"

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
  bool end_with_parent; /* parent-death signal, as daemons */
  bool library_owned;   /* freed by the user while running */
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
  bool via_server;   /* started by the forkserver: the exit status comes
                        through the sentinel, not waitid */
  bool exit_logged;  /* the checking mode reported its end */
  void *start_block; /* spawn: its start data in the arena, freed by the
                        creator once the child is reaped */
  int exitcode;
};

/* The start methods. Each launches p (state INITIAL, checks done, the
 * family lock held) on behalf of self (the calling process's own object)
 * and fills pid, pidfd and sentinel, or returns a code. */
int mp__start_fork(mp_process_t *p, const mp_process_t *self);
int mp__start_spawn(mp_process_t *p, const mp_process_t *self);
int mp__start_forkserver(mp_process_t *p, const mp_process_t *self);

/* The default context's method (MPROC_START_METHOD, or set_start_method),
 * fixing it as Python's first use does. */
const mp_context_t *mp__default_context(void);

/* Who a child's parent is, as the child learns it at start. */
typedef struct mp__child_start {
  pid_t parent_pid;    /* the process that started it */
  char *parent_name;   /* never freed in the child */
  int parent_pidfd;    /* a pidfd of the parent, or -1 */
  pid_t direct_parent; /* who forked it: the parent, or the forkserver */
  bool fresh; /* a new program (spawn): no state of a parent to forget */
} mp__child_start_t;

/* Runs the child side of a started process: p becomes the current
 * process, the target or run() is called, the process exits. Never
 * returns. */
_Noreturn void mp__child_main(mp_process_t *p, const mp__child_start_t *start);

/* Sets the default start method of a child to its parent's (as Python's
 * spawn preparation does). */
void mp__set_default_method(enum mp__start_method method);

/* ---- exit handlers (atexit.c) --------------------------------------------
 * A new child forgets its parent's mp_atexit handlers (in mp__child_main);
 * a child runs its own when it ends normally. */
void mp__atexit_forget(void);
void mp__atexit_run(void);

/* mp_process_join until the deadline: MP__NO_DEADLINE for the library's
 * own joins, which mp_interrupt() must not end. */
int mp__process_join_until(mp_process_t *p, const mp__deadline_t *d);

/* A copy (malloc'd, NULL when empty) of the paths set with
 * mp_set_forkserver_preload, NUL-terminated one after the other, and their
 * total size. 0 or -ENOMEM. */
int mp__forkserver_preload(char **paths, size_t *size);

/* ---- pidfds (pidfd.c) --------------------------------------------------- */

/* After a start method set p->pid: opens the pidfd that watches the child
 * (or keeps the pipe sentinel where there are no pidfds). On failure the
 * child is killed and reaped. 0 or -errno. */
int mp__watch_child(mp_process_t *p);

/* The calling process's own pidfd, opened once; -errno on failure
 * (-ENOSYS where the system has no pidfds: the kernel lacks the call, or a
 * sandbox refuses it with EPERM or EINVAL). */
int mp__self_pidfd(void);

/* The system calls, as the kernel answers them: an fd or -1 with errno. */
int mp__pidfd_open(pid_t pid);
int mp__pidfd_send_signal(int pidfd, int sig);

#endif
