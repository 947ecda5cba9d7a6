/* mproc: Process objects, start methods and contexts
 * (Python's multiprocessing.Process, current_process, active_children,
 * set_start_method, get_context). */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A process object (multiprocessing.Process); opaque. */
typedef struct mp_process mp_process_t;
/* A start method's context (multiprocessing.get_context()); opaque. */
typedef struct mp_context mp_context_t;

/* Options of a new process; a NULL pointer means all defaults. */
typedef struct mp_process_opts {
  const char *name;     /* NULL: "Process-N" / "<type>-N", numbered as Python */
  bool daemon;          /* as Python: a daemon cannot have children, so
                           inheriting always gives false */
  mp_context_t *ctx;    /* NULL: the default start method */
  bool end_with_parent; /* beyond Python: the child is killed (SIGKILL)
                           when its parent ends, however it ends (see
                           mp_process_set_end_with_parent) */
} mp_process_opts_t;

/* The subclass-with-run() form: a type names the process ("<name>-N"),
 * gives its run() and the size of a data block that travels with it (the
 * Python subclass's attributes). */
typedef struct mp_process_type {
  const char *name;
  void (*run)(mp_process_t *self);
  size_t data_size;
} mp_process_type_t;

/* Call first thing in main(): the C form of Python's
 * `if __name__ == "__main__":` guard. In the main program it returns 0 at
 * once. In a process started with the "spawn" method (a fresh exec of the
 * program) and in the forkserver it runs the child and never returns, so
 * the parent's main() never runs there. A spawned child that reaches any
 * other mproc call without having passed through mp_main() stops with a
 * message on stderr and exit status 70 instead of starting processes of
 * its own. A program started with the spawn marker (MPROC_SPAWN) whose
 * start data cannot be read (the marker names no readable start data)
 * stops before main() with a message and the same status 70: it never
 * runs main() as a child. Returns a negative code if the program was
 * started as a child but the start data could not be read. */
MP_API int mp_main(int argc, char **argv);

/* ---- Process objects ---------------------------------------------------
 * multiprocessing.Process(target=..., args=...). The arg_size bytes at arg
 * are copied now and delivered to target in the child (under every start
 * method), so the caller's buffer may go away after this call. Returns NULL
 * with errno EINVAL (NULL target, NULL arg with arg_size > 0), or ENOMEM. */
MP_API mp_process_t *mp_process_new(void (*target)(void *arg), const void *arg,
                                    size_t arg_size,
                                    const mp_process_opts_t *opts);

/* The subclass form: run(self) is called in the child; the type's data
 * block (data_size bytes, zeroed) is reached with mp_process_data() and is
 * copied into the child when it starts. The type must outlive the object. */
MP_API mp_process_t *mp_process_new_type(const mp_process_type_t *type,
                                         const mp_process_opts_t *opts);

/* The data block of a process made with mp_process_new_type (NULL for the
 * plain form). In the child, the child's own copy. */
MP_API void *mp_process_data(mp_process_t *p);

/* Process.start(). MP_ESTATE if already started, closed, if the caller is
 * a daemonic process ("daemonic processes are not allowed to have
 * children"), or if the object is not the caller's child. MP_ENOMAIN under
 * spawn and forkserver when the program's main() did not call mp_main()
 * first (its child would run main() again; a message says so on stderr);
 * MP_EINVAL when the default method is used and MPROC_START_METHOD names
 * no method. -errno if the system refused (EAGAIN, ENOMEM, or the exec
 * error under spawn). */
MP_API int mp_process_start(mp_process_t *p);

/* Process.join(timeout): waits until the process ends and reaps it.
 * MP_ETIMEDOUT if it still runs after timeout seconds (MP_FOREVER: wait
 * forever, 0: just check); MP_ESTATE if never started, closed, or not a
 * child of the caller. */
MP_API int mp_process_join(mp_process_t *p, double timeout);

/* Process.terminate() (SIGTERM) and Process.kill() (SIGKILL). Nothing
 * happens if the process already ended. MP_ESTATE if never started or
 * closed. The signal goes through a pidfd, so it can never reach another
 * process that reused the pid (where the system has no pidfds, by pid, as
 * Python: still safe while the child is unreaped, which it is until join,
 * is_alive or exitcode saw it end; under forkserver the server reaps it). */
MP_API int mp_process_terminate(mp_process_t *p);
MP_API int mp_process_kill(mp_process_t *p);

/* Process.interrupt() (Python 3.14): SIGINT to the process, as terminate.
 * A C child without a handler for SIGINT ends with exit code -SIGINT
 * (Python's child raises KeyboardInterrupt and usually ends with 1). */
MP_API int mp_process_interrupt(mp_process_t *p);

/* Process.close(): releases the sentinel and other resources. MP_ESTATE if
 * the process is still running. Afterwards every call but mp_process_name
 * and mp_process_free returns MP_ESTATE (or false/NULL/-1 where the return
 * type allows no code). Closing twice is allowed. */
MP_API int mp_process_close(mp_process_t *p);

/* Frees the object. A process that is still running is not lost: the
 * library keeps tracking it, and reaps it in mp_active_children() or at
 * exit (where a daemon is terminated and a non-daemon joined). Freeing
 * mp_current_process() or mp_parent_process() does nothing. */
MP_API void mp_process_free(mp_process_t *p);

/* Process.is_alive(): true between start and the end of the process (the
 * current process is always alive). Reaps the process if it has ended. */
MP_API bool mp_process_is_alive(mp_process_t *p);

/* Process.pid and Process.ident: 0 before start; -1 after close. */
MP_API pid_t mp_process_pid(const mp_process_t *p);

/* Process.name: never NULL for a process object (NULL for a NULL handle,
 * as every function's NULL rule in the guide says). Valid until the name is set
 * again or the object is freed. */
MP_API const char *mp_process_name(const mp_process_t *p);
MP_API int mp_process_set_name(mp_process_t *p, const char *name);

/* Process.daemon. Setting it after start gives MP_ESTATE. */
MP_API bool mp_process_daemon(const mp_process_t *p);
MP_API int mp_process_set_daemon(mp_process_t *p, bool daemon);

/* Beyond Python: whether the child ends with its parent, however the
 * parent ends. By default (false) a non-daemonic child outlives a parent
 * that was killed or interrupted without running its exit (SIGKILL, a
 * SIGINT or SIGTERM sent to the parent alone): it goes on, orphaned, until
 * it ends by itself. With true it gets SIGKILL when the parent dies
 * (PR_SET_PDEATHSIG, as daemons always do). At a normal exit the parent
 * still joins it first, as Python joins non-daemonic children. Under the
 * forkserver the child's parent is the forkserver, which ends when the
 * program does. Linux ties the parent-death signal to the thread that
 * started the child: start such children from a thread that lives as
 * long as they should. Setting it after start gives MP_ESTATE. */
/* Beyond Python's C side: Python's atexit.register(fn, arg) for a process
 * of the family. fn(arg) runs when this process ends normally (a child's
 * target returns or it calls exit(); the main program calls exit() or
 * returns from main), last registered first, once; not when it is killed
 * by a signal or calls _exit(). A child starts with no handlers, under
 * every start method: those its parent registered are the parent's (with
 * plain atexit() a forked child would run its parent's handlers if it
 * called exit(), and mproc ends a child without running glibc's list). In a
 * child, the handlers run before it joins its own children. Up to 32.
 * Returns 0, MP_EINVAL (fn NULL), -ENOMEM (full). */
MP_API int mp_atexit(void (*fn)(void *arg), void *arg);

MP_API bool mp_process_end_with_parent(const mp_process_t *p);
MP_API int mp_process_set_end_with_parent(mp_process_t *p, bool on);

/* Process.exitcode: *code is 0 after a normal return, n after exit(n) in the
 * child, -N after death by signal N. MP_ESTATE (and *code untouched) while
 * the process has not started or is still running, or after close. Reaps
 * the process if it has ended. */
MP_API int mp_process_exitcode(const mp_process_t *p, int *code);

/* Process.sentinel: an fd that becomes readable when the process ends (a
 * pidfd; under forkserver, or where the system has no pidfds, the read end
 * of a pipe, as Python's). Owned by the object; valid until close/free.
 * MP_ESTATE if not started, or closed. */
MP_API int mp_process_sentinel(const mp_process_t *p);

/* Process.authkey: 32 random bytes made in the main process and inherited
 * by every child. Never NULL for a live object; *len gets the length. */
MP_API const unsigned char *mp_process_authkey(const mp_process_t *p,
                                               size_t *len);

/* ---- Module functions -------------------------------------------------- */

/* multiprocessing.current_process(): "MainProcess" in the main program, the
 * child's own object (with its name, daemon flag, data) in a child. */
MP_API mp_process_t *mp_current_process(void);

/* multiprocessing.parent_process(): NULL in the main program. In a child an
 * object standing for the parent: name, pid, is_alive, join(timeout) and
 * sentinel work; it cannot be started, terminated or freed. */
MP_API mp_process_t *mp_parent_process(void);

/* multiprocessing.active_children(): reaps the children that ended, stores
 * up to cap of the live ones in out (out may be NULL when cap is 0) and
 * returns how many are alive. The pointers are owned by the library or by
 * the caller as before; they are valid until freed. */
MP_API size_t mp_active_children(mp_process_t **out, size_t cap);

/* The number of CPUs this process may run on (its affinity mask). */
MP_API int mp_cpu_count(void);

/* ---- Start methods and contexts ----------------------------------------
 * "fork" (the default), "spawn" and "forkserver". The environment variable
 * MPROC_START_METHOD sets the default for a whole program run. A value
 * that names no method (a typo: "spwan", "Spawn") is an error, not fork:
 * a message naming the valid methods is printed once on stderr, starting
 * a process with the default method returns MP_EINVAL, and the functions
 * below that report the default return NULL with errno EINVAL, until
 * mp_set_start_method fixes a method. */

/* multiprocessing.get_context(method): NULL method gives the default
 * context. Unknown name: NULL with errno EINVAL. Contexts are static. A
 * child started through a context (opts.ctx) has that context's method as
 * its own default, as in Python; a child started with ctx NULL has its
 * parent's default. */
MP_API mp_context_t *mp_get_context(const char *method);

/* The name of a context's start method. */
MP_API const char *mp_context_start_method(const mp_context_t *ctx);

/* multiprocessing.set_start_method(method, force): MP_ESTATE if the method
 * was already set (by a call or by first use) and force is false;
 * MP_EINVAL for an unknown name. */
MP_API int mp_set_start_method(const char *method, bool force);

/* multiprocessing.get_start_method(): fixes the default if not yet set.
 * NULL (errno EINVAL) when MPROC_START_METHOD names no method. */
MP_API const char *mp_get_start_method(void);

/* multiprocessing.set_forkserver_preload(module_names): shared libraries
 * (paths as dlopen takes them) that the next forkserver this process starts
 * loads once (RTLD_NOW | RTLD_GLOBAL), so that every child it forks has
 * them loaded: the cost of loading is paid once instead of per child. A
 * server already running is not changed (as in Python). A library that
 * fails to load is skipped, as Python skips a module that fails to import.
 * Replaces the previous list; n 0 clears it. 0, MP_EINVAL (paths NULL with
 * n > 0, a NULL or empty path), -ENOMEM. */
MP_API int mp_set_forkserver_preload(const char *const *paths, size_t n);

/* multiprocessing.get_all_start_methods(): stores up to cap names in out
 * and returns how many there are (3), the default first. */
MP_API size_t mp_get_all_start_methods(const char **out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
