/* mproc: the process pool across hosts, on MPI (library libmproc_mpi,
 * pkg-config mproc-mpi, CMake target mproc::mpi). Not included by
 * <mproc.h>: a program that uses it links the MPI library too.
 *
 * Every rank calls mp_main, mp_mpi_init, then mp_pool_new_mpi (collective).
 * Rank 0 gets an ordinary mp_pool_t *: mp_pool_map, map_async, imap,
 * imap_unordered, apply and apply_async run across all ranks, with the
 * same results and the same per-item errors as the local pool. The other
 * ranks serve rank 0 inside mp_pool_new_mpi until rank 0 frees its pool,
 * then get NULL with errno 0. Rank 0 hands out chunks of a map
 * dynamically, to its own workers and to each other rank, which runs its
 * chunk on a local pool of its own (hierarchical: no per-item messages).
 * Inputs go from the caller's array through MPI into the rank's shared
 * memory and the outputs back, with no serialization.
 *
 * Functions travel as references (their module and offset), with the
 * module's build id: a rank that runs a different build of the program
 * refuses to start (mp_pool_new_mpi gives NULL with errno ENOEXEC on every
 * rank, and says which rank and module on stderr), and a task whose
 * library differs on a rank fails with -ENOEXEC instead of calling a wrong
 * address.
 *
 * Lost hosts. Each rank keeps an authenticated TCP connection to rank 0
 * (mproc's listener, with heartbeats), independent of MPI. A rank whose
 * connection breaks, or stays silent for liveness_timeout, is lost: the
 * chunks it held run again elsewhere, up to max_retries times each (so an
 * item may run more than once: at-least-once semantics), then fail with
 * MP_ELOST. The map returns either way. A rank that loses rank 0 ends at
 * once (exit status 70), its workers with it. Whether the job survives a
 * lost rank at all is the launcher's choice: Open MPI's mpirun ends the
 * whole job unless started with --enable-recovery; MPICH always ends it
 * (see docs/guide.md).
 *
 * CPUs. Open MPI binds each rank to one core by default, and the rank's
 * pool then sees one CPU: launch with `--bind-to none`. A rank whose pool
 * sees fewer CPUs than its host has says so on stderr.
 *
 * Threads: rank 0's pool is thread-safe as any pool; the MPI calls are
 * made by one thread of the library at a time (MPI_THREAD_SERIALIZED is
 * enough). The program must not use MPI itself while an MPI pool exists. */
#ifndef MPROC_MPI_H
#define MPROC_MPI_H

#include "error.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options of mp_pool_new_mpi; a NULL pointer means all defaults. */
typedef struct mp_mpi_opts {
  int local_processes;     /* workers per rank; 0: the host's CPUs shared
                              among its ranks (at least 1) */
  int max_retries;         /* runs again of a lost rank's work; 0: 1;
                              < 0: none */
  double liveness_timeout; /* seconds of silence before a host counts as
                              lost; 0: 5 */
} mp_mpi_opts_t;

/* The exit status of a rank that lost rank 0. */
#define MP_MPI_EXIT_ROOT_LOST 70

/* Initializes MPI (MPI_Init_thread) after mp_main. Returns 0; MP_ESTATE if
 * called twice; -ENOTSUP when the MPI cannot give MPI_THREAD_SERIALIZED;
 * -EIO when MPI fails to start. */
MP_API int mp_mpi_init(int *argc, char ***argv);

/* This process's rank in MPI_COMM_WORLD, and the number of ranks (-1
 * before mp_mpi_init). */
MP_API int mp_mpi_rank(void);
MP_API int mp_mpi_size(void);

/* Collective: every rank calls it with the same options. Rank 0 gets the
 * pool (opts as mp_pool_new, on every rank: the context, initializer and
 * task_timeout; each rank's workers are mpi_opts->local_processes, else
 * opts->processes, else the host's CPUs shared among its ranks). The
 * other ranks serve until rank 0 frees it, then get NULL with errno 0.
 * NULL with errno on every rank: EINVAL (bad options), ENOEXEC (ranks run
 * different builds), ESTATE's positive value (mp_mpi_init not called, or
 * a pool already exists), or the error of the local pool or of the
 * liveness connections. */
MP_API mp_pool_t *mp_pool_new_mpi(const mp_pool_opts_t *opts,
                                  const mp_mpi_opts_t *mpi_opts);

/* Ends MPI. 0; or MP_ELOST when a rank was lost during the run (then
 * MPI_Finalize is not called, as it may hang waiting for the lost rank:
 * the program should exit with a nonzero status, which the launcher
 * reports). MP_ESTATE before mp_mpi_init. */
MP_API int mp_mpi_finalize(void);

#ifdef __cplusplus
}
#endif
#endif
