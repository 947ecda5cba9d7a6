/* What the spawn and forkserver start methods share (internal). */
#ifndef MPROC_START_H
#define MPROC_START_H

#include "core/internal.h"

/* A function (or static object) named so that another process of the same
 * program finds it: the path of its module (empty for the main program)
 * and its offset from the module's load base. Under spawn every library is
 * at another address (ASLR), so a raw pointer would be wrong there. Store
 * this, not a function pointer, in shared objects whose callbacks may run
 * in another process (a barrier's action, a pool's task). */
typedef struct mp__fnref {
  uint64_t offset;
  uint32_t valid;
  char module[236];
} mp__fnref_t;

/* 0, or MP_EINVAL when fn is in no loaded module. fn NULL gives an invalid
 * reference that decodes to NULL. */
int mp__fn_encode(const void *fn, mp__fnref_t *ref);
/* The address in this process, loading the module if needed; NULL if it
 * cannot be found. */
void *mp__fn_decode(const mp__fnref_t *ref);

/* Writes the start data of p into a new memfd (returned) and gives the fd
 * numbers the child needs at the same numbers (malloc'd). channel_fd is an
 * extra fd for the child (the forkserver's socket), -1 if none. */
int mp__start_data_write(mp_process_t *p, int channel_fd, int **fds,
                         int *count);
/* Reads start data (closing fd). close_others: close every fd the child
 * does not need. Maps the arena. */
int mp__start_data_read(int fd, bool close_others);
/* The number the start data gives its index-th fd (-1 if none). */
int mp__start_data_fd(int index);
/* Closes every fd above 2 that the start data does not list. */
void mp__start_data_close_others(void);
/* Runs the child described by the start data read last. */
_Noreturn void mp__run_from_start_data(pid_t direct_parent);

/* posix_spawn of this program in mode "c" (a child) or "s" (a forkserver),
 * with start_fd and fds[] at the same numbers. 0 or -errno (the exec error
 * included). */
int mp__exec_self(char mode, int start_fd, const int *fds, int n, pid_t *pid);

/* The path the spawn method executes ("/proc/self/exe"); tests only. */
extern const char *mp__spawn_path;
/* The pid of this process's forkserver, 0 if none (tests only). */
pid_t mp__forkserver_pid(void);

/* The forkserver's main loop (in the server process). */
_Noreturn void mp__forkserver_main(int channel_fd, const unsigned char *key,
                                   size_t key_len);
/* In a forked child: forget the parent's forkserver. */
void mp__forkserver_after_fork_child(void);
/* The fd of the channel to this process's forkserver, -1 if none. */
int mp__forkserver_channel(void);

/* HMAC through libcrypto, loaded on first use (so that programs that never
 * authenticate do not pay for loading it). digest: "sha256", "md5", ...
 * Returns the MAC length, or a negative code. */
int mp__hmac(const char *digest, const void *key, size_t key_len,
             const void *msg, size_t msg_len, unsigned char *out,
             size_t out_cap);
/* Constant-time comparison: 0 when equal. */
int mp__memcmp_const(const void *a, const void *b, size_t len);

#endif
