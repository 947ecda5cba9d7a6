/* The public calls of libmproc_mpi: MPI's life cycle, and the collective
 * set-up of an MPI pool (the options every rank agrees on, the build-id
 * check, the liveness connections) before each rank takes its role
 * (root.c, rank.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi/mpi_internal.h"

mp__mpi_t mp__mpi = {.rank = -1, .size = -1};

/* ---- Life cycle ------------------------------------------------------------
 */

int mp_mpi_init(int *argc, char ***argv) {
  if (mp__mpi.initialized)
    return MP_ESTATE;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) !=
      MPI_SUCCESS)
    return -EIO;
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    return -ENOTSUP;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &mp__mpi.comm);
  MPI_Comm_set_errhandler(mp__mpi.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(mp__mpi.comm, &mp__mpi.rank);
  MPI_Comm_size(mp__mpi.comm, &mp__mpi.size);
  mp__mpi.initialized = true;
  return 0;
}

int mp_mpi_rank(void) {
  return mp__mpi.rank;
}

int mp_mpi_size(void) {
  return mp__mpi.size;
}

int mp_mpi_finalize(void) {
  if (!mp__mpi.initialized || mp__mpi.finalized)
    return MP_ESTATE;
  mp__mpi.finalized = true;
  /* After a loss MPI_Finalize may wait for the lost rank forever (about
   * one time in seven with Open MPI 4.1): the loss is reported instead, and
   * the launcher sees a rank end without finalizing. */
  if (atomic_load(&mp__mpi.lost))
    return MP_ELOST;
  MPI_Comm_free(&mp__mpi.comm);
  MPI_Finalize();
  return 0;
}

/* ---- Waiting ----------------------------------------------------------------
 */

#define SPIN_ROUNDS 32
#define SLEEP_MIN   10000LL /* ns */

int64_t mp__backoff_next(mp__backoff_t *b, int64_t cap) {
  uint32_t r = b->round < UINT32_MAX ? b->round++ : b->round;
  if (r < SPIN_ROUNDS)
    return 0;
  r -= SPIN_ROUNDS;
  int64_t ns = r >= 20 ? cap : SLEEP_MIN << r;
  return ns > cap ? cap : ns;
}

bool mp__mpi_probe(int source, int *tag) {
  for (int i = 0; i < 2; i++) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(source, MPI_ANY_TAG, mp__mpi.comm, &flag, &st) !=
        MPI_SUCCESS)
      return false;
    if (flag) {
      *tag = st.MPI_TAG;
      return true;
    }
  }
  return false;
}

/* ---- Set-up
 * -------------------------------------------------------------------- */

/* The ranks on this rank's host. */
static int ranks_on_host(void) {
  MPI_Comm host;
  int n = 1;
  if (MPI_Comm_split_type(mp__mpi.comm, MPI_COMM_TYPE_SHARED, mp__mpi.rank,
                          MPI_INFO_NULL, &host) == MPI_SUCCESS) {
    MPI_Comm_size(host, &n);
    MPI_Comm_free(&host);
  }
  return n;
}

/* The workers of this rank: the option, or the host's CPUs shared among its
 * ranks. Warns when the launcher bound the rank to fewer CPUs than the
 * host has (Open MPI binds to one core by default). */
static int local_processes(const mp_pool_opts_t *opts, const mp_mpi_opts_t *m,
                           int on_host) {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int visible = mp_cpu_count();
  if (online > 0 && visible < online)
    fprintf(stderr,
            "mproc: rank %d: the pool sees %d of the host's %ld CPUs (the "
            "launcher bound the rank; with Open MPI use mpirun --bind-to "
            "none)\n",
            mp__mpi.rank, visible, online);
  if (m->local_processes > 0)
    return m->local_processes;
  if (opts->processes > 0)
    return opts->processes;
  int n = (int)(online > 0 ? online : visible) / on_host;
  return n > 0 ? n : 1;
}

/* Every rank must run the same build of the program: the root's build id
 * against each rank's, one outcome for all. */
static int check_build(void) {
  mp__build_id_t mine, root;
  mp__build_id("", &mine);
  root = mine;
  MPI_Bcast(&root, sizeof root, MPI_BYTE, 0, mp__mpi.comm);
  int ok = mp__build_id_equal(&mine, &root), all = 0;
  if (!ok) {
    char a[2 * MP__BUILD_ID_MAX + 1], b[2 * MP__BUILD_ID_MAX + 1];
    mp__build_id_hex(&mine, a, sizeof a);
    mp__build_id_hex(&root, b, sizeof b);
    fprintf(stderr,
            "mproc: rank %d runs another build of the program than rank 0 "
            "(build id %s, rank 0: %s): refused\n",
            mp__mpi.rank, a, b);
  }
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, mp__mpi.comm);
  return all ? 0 : -ENOEXEC;
}

static int check_opts(const mp_pool_opts_t *o, const mp_mpi_opts_t *m) {
  if (o->processes < 0 || m->local_processes < 0 ||
      !(m->liveness_timeout >= 0) || m->liveness_timeout > 1e6)
    return MP_EINVAL;
  return 0;
}

int mp__mpi_agree(int rc) {
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MIN, mp__mpi.comm);
  return worst;
}

static mp_pool_t *fail(int rc) {
  errno = rc == MP_EINVAL ? EINVAL : -rc;
  return NULL;
}

mp_pool_t *mp_pool_new_mpi(const mp_pool_opts_t *opts,
                           const mp_mpi_opts_t *mpi_opts) {
  if (!mp__mpi.initialized || mp__mpi.finalized || mp__mpi.pool_exists)
    return fail(MP_ESTATE);
  mp_pool_opts_t o = opts ? *opts : (mp_pool_opts_t){0};
  mp_mpi_opts_t m = mpi_opts ? *mpi_opts : (mp_mpi_opts_t){0};
  int rc = mp__mpi_agree(check_opts(&o, &m));
  if (rc == 0)
    rc = check_build();
  if (rc < 0)
    return fail(rc);
  mp__mpi_setup_t setup = {
      .local = o,
      .retries = m.max_retries < 0
                     ? 0u
                     : (uint32_t)(m.max_retries ? m.max_retries : 1),
      .liveness_timeout = m.liveness_timeout > 0 ? m.liveness_timeout : 5.0,
  };
  setup.local.processes = local_processes(&o, &m, ranks_on_host());
  MPI_Allreduce(&setup.local.processes, &setup.total_processes, 1, MPI_INT,
                MPI_SUM, mp__mpi.comm);
  mp__liveness_t *l = NULL;
  if ((rc = mp__liveness_new(setup.liveness_timeout, &l)) < 0)
    return fail(rc);
  mp__mpi.pool_exists = true;
  if (mp__mpi.rank == 0) {
    mp_pool_t *pool = mp__mpi_root_pool(&setup, l);
    if (!pool)
      mp__mpi.pool_exists = false;
    return pool;
  }
  rc = mp__mpi_serve(&setup, l);
  mp__mpi.pool_exists = false;
  return rc < 0 ? fail(rc) : (errno = 0, NULL);
}
