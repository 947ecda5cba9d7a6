/* The pool on MPI (internal to libmproc_mpi). See include/mproc/mpi.h.
 *
 * Rank 0 ("the root") creates a local pool with backend slots
 * (src/pool/backend.h): its hub thread (root.c) claims chunks from the
 * pool's queue through those slots, two per other rank, sends each to its
 * rank over MPI, and commits the rank's results into the job; its own
 * workers take chunks from the same queue. The other ranks (rank.c) run
 * each chunk on a local pool and send the outputs back. Liveness runs
 * beside MPI, over mproc's authenticated TCP connections (liveness.c).
 *
 * Messages, on a duplicate of MPI_COMM_WORLD (rank 0 <-> rank r):
 *   TAG_TASK    root -> r   task_msg_t, then TAG_INPUT with the input bytes
 *                           (if any)
 *   TAG_RESULT  r -> root   result_msg_t, then TAG_OUTCOMES (n outcomes,
 *                           when some item failed) and TAG_OUTPUT (the
 *                           output bytes, if any)
 *   TAG_STOP    root -> r   stop_msg_t: the pool is freed
 *   TAG_BYE     r -> root   nothing more comes from r */
#ifndef MPROC_MPI_INTERNAL_H
#define MPROC_MPI_INTERNAL_H

#include <mpi.h>
#include <pthread.h>

#include "mproc/mpi.h"
#include "pool/backend.h"

/* The chunks the root keeps out on each other rank: one running, one
 * waiting, so that a rank has its next chunk while it sends back the last.
 * A rank that holds this many expects no message before it answers one. */
#define MP__MPI_SLOTS_PER_RANK 2

enum {
  TAG_TASK = 0x4d50, /* "MP" */
  TAG_INPUT,
  TAG_RESULT,
  TAG_OUTCOMES,
  TAG_OUTPUT,
  TAG_STOP,
  TAG_BYE,
};

#define MP__BUILD_ID_MAX 64

/* A module's build id (its ELF NT_GNU_BUILD_ID note); len 0 if it has
 * none. */
typedef struct mp__build_id {
  uint32_t len;
  uint8_t bytes[MP__BUILD_ID_MAX];
} mp__build_id_t;

typedef struct task_msg {
  uint64_t id;   /* the root's number of this run of the chunk */
  uint32_t slot; /* the root's backend slot */
  uint32_t apply;
  uint64_t in_size, out_size, n; /* as mp__pool_chunk_t */
  mp__build_id_t build_id;       /* of fn's module */
  mp__fnref_t fn;
} task_msg_t;

typedef struct result_msg {
  uint64_t id;
  uint32_t slot;
  int32_t error;      /* 0, or the error of every item (-ENOEXEC: another
                         build; a submission error of the local pool) */
  uint64_t n;         /* the chunk's items */
  uint64_t failed;    /* items not OK: TAG_OUTCOMES follows (n of them) */
  uint64_t out_len;   /* apply: the result's length */
  uint64_t out_bytes; /* TAG_OUTPUT's length */
} result_msg_t;

typedef struct stop_msg {
  uint32_t lost; /* a rank was lost: mp_mpi_finalize says MP_ELOST */
} stop_msg_t;

/* The process's MPI state (mpi.c). */
typedef struct mp__mpi {
  bool initialized, finalized;
  int rank, size;
  MPI_Comm comm;     /* our own: errors return, traffic apart from the
                        program's */
  _Atomic bool lost; /* a rank was lost */
  bool pool_exists;
} mp__mpi_t;
extern mp__mpi_t mp__mpi;

/* What every rank agreed on in mp_pool_new_mpi. */
typedef struct mp__mpi_setup {
  mp_pool_opts_t local; /* this rank's local pool */
  int total_processes;  /* the workers of all ranks */
  uint32_t retries;     /* runs again of a lost chunk */
  double liveness_timeout;
} mp__mpi_setup_t;

/* Collective: one outcome for all ranks, the lowest (first error) of
 * their rc. */
int mp__mpi_agree(int rc);

/* ---- Build ids (build_id.c) -------------------------------------------- */

/* The build id of the loaded module named as mp__fnref_t names it ("" for
 * the main program). 0, or -ENOENT when no such module is loaded. */
int mp__build_id(const char *module, mp__build_id_t *id);
bool mp__build_id_equal(const mp__build_id_t *a, const mp__build_id_t *b);
/* Hex, for messages. */
void mp__build_id_hex(const mp__build_id_t *id, char *out, size_t cap);

/* ---- Waiting without burning a CPU (mpi.c) ------------------------------
 * MPI's own blocking calls spin; we poll with nonblocking calls instead, a
 * short spin first (a reply that is about to arrive costs no sleep), then
 * sleeps doubling up to a cap: the workers on the same host keep the CPUs. */
typedef struct mp__backoff {
  uint32_t round;
} mp__backoff_t;
static inline void mp__backoff_reset(mp__backoff_t *b) {
  b->round = 0;
}
/* The time to sleep next (ns; 0: spin again), growing up to cap ns. */
int64_t mp__backoff_next(mp__backoff_t *b, int64_t cap);

/* Caps: while a reply is due any moment, and while nothing is expected
 * soon (a wake-up comes another way, or latency matters less than the
 * CPU that polling takes from the workers). */
#define MP__BACKOFF_SHORT 200000LL  /* 0.2 ms */
#define MP__BACKOFF_LONG  5000000LL /* 5 ms */

/* Whether a message from source waits (its tag in *tag). MPI_Iprobe
 * looks for a match before it runs the progress engine: a message that
 * its progress brings in is seen by the next call only (Open MPI 4.1 and
 * MPICH 4.0 alike: of 20 small messages already delivered to the process,
 * a first probe saw none, a second one 19 and 20), so one that finds
 * nothing looks again. Else a rank's poke woke the hub for nothing, and
 * the result waited for the hub's next poll. */
bool mp__mpi_probe(int source, int *tag);

/* ---- Liveness (liveness.c) ----------------------------------------------
 * Each rank connects to a listener of the root (tcp:, authenticated with a
 * key the root sends over MPI) and both sides send a heartbeat every
 * quarter of the timeout. */
typedef struct mp__liveness mp__liveness_t;

/* Collective: sets up the connections. 0 on every rank, or an error on
 * every rank. */
int mp__liveness_new(double timeout, mp__liveness_t **out);

/* Root: the fds to wait on (one per rank, -1 for itself and the lost);
 * fills fds[size]. */
void mp__liveness_fds(mp__liveness_t *l, int *fds);
/* Root: after a wait, reads what arrived, sends the heartbeats due, and
 * returns the rank found lost (marks it), or -1. readable: one flag per
 * rank from the wait. */
int mp__liveness_check(mp__liveness_t *l, const bool *readable);
bool mp__liveness_lost(const mp__liveness_t *l, int rank);
/* Root: a byte to a rank that wakes it at once (sent with each chunk, so
 * that an idle rank need not poll MPI often). */
void mp__liveness_poke_rank(mp__liveness_t *l, int rank);
/* Root: the heartbeat period (ns), the longest a wait may last. */
int64_t mp__liveness_period_ns(const mp__liveness_t *l);

/* Other ranks: a thread that sends heartbeats and ends the process when
 * the root is lost. Stopped before the rank says goodbye. */
int mp__liveness_watch_root(mp__liveness_t *l);
void mp__liveness_stop_watch(mp__liveness_t *l);
/* Other ranks: a byte to the root that wakes its hub at once (sent when a
 * result goes out, so that the hub need not poll MPI often). */
void mp__liveness_poke(mp__liveness_t *l);
/* Other ranks: sleeps up to ns or until the root sends something (a
 * chunk's poke, a heartbeat); true if it did. Without the watch, a sleep. */
bool mp__liveness_wait_root(mp__liveness_t *l, int64_t ns);
/* Other ranks, after their goodbye: waits until the root closes the
 * connection (so that the root never takes the close for a loss), at most
 * the timeout. */
void mp__liveness_wait_closed(mp__liveness_t *l);
/* Other ranks, for tests: stops the watch and closes the connection, so
 * that the root takes this rank for lost while MPI still joins them. */
void mp__liveness_cut(mp__liveness_t *l);

void mp__liveness_free(mp__liveness_t *l);

/* ---- The two roles (root.c, rank.c) ------------------------------------ */

mp_pool_t *mp__mpi_root_pool(const mp__mpi_setup_t *setup, mp__liveness_t *l);
/* Serves until the root's stop; returns 0 or an error of the local pool.
 * Frees l. */
int mp__mpi_serve(const mp__mpi_setup_t *setup, mp__liveness_t *l);

#endif
