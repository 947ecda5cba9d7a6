/* What the spawn and forkserver start methods share (internal): the start
 * data of a child (start_data.c), the exec of this program (spawn.c) and
 * the forkserver (forkserver.c). Files here sit below process.c and main.c:
 * they are handed what they need of the process objects, and never call
 * back up. */
#ifndef MPROC_START_H
#define MPROC_START_H

#include "core/fnref.h"
#include "process/process.h"

/* The environment variable that tells a spawned program where its start
 * data is: "c:<fd>" (a memfd) for a child, "s:<fd>" for a forkserver, or
 * "c:<fd>:<address>:<size>:<offset>" for a child whose start data is a
 * block at offset in the arena (fd, address and size: the arena's, as
 * mp__arena_info gives them). */
#define MP__START_ENV "MPROC_SPAWN"

/* The start data: everything a spawned child or a forkserver needs, written
 * by the parent into a memfd; the inherited fd numbers and the payload (the
 * arg bytes or the type's data block) follow the header. */
typedef struct mp__start_header {
  uint32_t magic, version;
  int32_t parent_pid;
  int32_t parent_pidfd;
  int32_t arena_fd;
  int32_t default_method;
  int32_t channel_fd; /* the forkserver's socket, -1 for a child */
  uint64_t arena_address, arena_size;
  uint32_t daemon;
  uint32_t end_with_parent;
  uint32_t depth;
  uint32_t identity[MP__MAX_DEPTH];
  unsigned char authkey[MP__AUTHKEY_LEN];
  mp__fnref_t target;    /* the plain form's target, or */
  mp__fnref_t type;      /* the type of the run() form */
  uint64_t payload_size; /* the arg bytes or the type's data block */
  int32_t debug_level;   /* the parent's checking mode (mp_set_debug) */
  uint32_t fd_count;     /* inherited fd numbers that follow the header */
  uint32_t user_fds;     /* the index of the first of them that is the
                            user's (connections, pools): the child
                            registers those to pass them on in turn */
  char name[256];
  char parent_name[256];
} mp__start_header_t;

/* Writes the start data of p, started by self, into a new memfd (returned)
 * and gives the fd numbers the child needs at the same numbers (malloc'd).
 * p NULL describes a forkserver for self. channel_fd is an extra fd for the
 * child (the forkserver's socket), -1 if none. */
int mp__start_data_write(const mp_process_t *p, const mp_process_t *self,
                         int channel_fd, int **fds, int *count);
/* The same for a spawned child, in a block of the arena (*block, which
 * the parent frees once it has reaped the child): no file to make, write
 * and read. marker: the value of MP__START_ENV that names the block.
 * -E2BIG when the start data is above MP__START_BLOCK_MAX: the arena would
 * keep what a big payload made it commit after the block is freed, a
 * memfd (mp__start_data_write) gives it back. */
#define MP__START_BLOCK_MAX (64 * 1024)
int mp__start_data_put(const mp_process_t *p, const mp_process_t *self,
                       void **block, char *marker, size_t marker_size,
                       int **fds, int *count);
/* Reads start data (closing fd). close_others: close every fd the child
 * does not need. Maps the arena. */
int mp__start_data_read(int fd, bool close_others);
/* The start data read last, its payload, and the error of reading it (0,
 * or the code mp__start_data_read returned). */
const mp__start_header_t *mp__start_data(void **payload, int *error);
/* The number the start data gives its index-th fd (-1 if none). */
int mp__start_data_fd(int index);
/* Closes every fd above 2 that the start data does not list. */
void mp__start_data_close_others(void);

/* posix_spawn of this program in mode "c" (a child) or "s" (a forkserver),
 * with start_fd and fds[] at the same numbers. 0 or -errno (the exec error
 * included). */
int mp__exec_self(char mode, int start_fd, const int *fds, int n, pid_t *pid);

/* What the forkserver runs in each child it forks, once the child's fds are
 * in place: builds the process object from the start data and never
 * returns (main.c gives it). */
typedef void (*mp__child_runner_cb)(pid_t direct_parent)
    __attribute__((noreturn));

/* The forkserver's main loop (in the server process). */
_Noreturn void mp__forkserver_main(int channel_fd, const unsigned char *key,
                                   size_t key_len, mp__child_runner_cb run);

#endif
