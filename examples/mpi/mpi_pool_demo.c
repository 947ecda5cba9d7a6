/* The pool across hosts on MPI: the same calls as the local pool.
 *
 *   mpirun --bind-to none -np 3 ./mpi_pool_demo          # one host
 *   mpirun --bind-to none --host a,b,c -np 3 ./mpi_pool_demo
 *
 * Every rank runs main: mp_main first (the workers of each rank may be
 * spawned), then mp_mpi_init and the collective mp_pool_new_mpi. Rank 0
 * gets the pool; the other ranks serve it inside mp_pool_new_mpi until
 * rank 0 frees it. mp_mpi_finalize says MP_ELOST if a rank was lost
 * meanwhile: the program then exits nonzero. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>
#include <mproc/mpi.h>

typedef struct result {
  int64_t square;
  int32_t rank; /* where it ran, from the launcher's environment */
  int32_t pad;
} result_t;

static int32_t launcher_rank(void) {
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  if (!r)
    r = getenv("PMI_RANK");
  return r ? atoi(r) : 0;
}

static int square(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  struct timespec pause = {0, 2 * 1000 * 1000}; /* some work to share */
  nanosleep(&pause, NULL);
  *(result_t *)out = (result_t){.square = x * x, .rank = launcher_rank()};
  return 0;
}

/* apply form: bytes in, bytes out. */
static int shout(const void *in, size_t in_len, void *out, size_t out_cap,
                 size_t *out_len) {
  *out_len = in_len;
  if (in_len > out_cap)
    return 0; /* the caller gets MP_EOVERFLOW with the size needed */
  for (size_t i = 0; i < in_len; i++) {
    char c = ((const char *)in)[i];
    ((char *)out)[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
  }
  return 0;
}

enum { N = 600 };

int main(int argc, char **argv) {
  mp_main(argc, argv);
  int rc = mp_mpi_init(&argc, &argv);
  if (rc < 0) {
    fprintf(stderr, "mp_mpi_init: %s\n", mp_strerror(rc));
    return 1;
  }
  mp_pool_t *pool = mp_pool_new_mpi(NULL, NULL);
  if (mp_mpi_rank() != 0) { /* served until rank 0 freed the pool */
    int served = errno == 0;
    return mp_mpi_finalize() == 0 && served ? 0 : 1;
  }
  if (!pool) {
    fprintf(stderr, "mp_pool_new_mpi: %s\n", strerror(errno));
    return 1;
  }

  static int64_t in[N];
  static result_t out[N];
  for (int i = 0; i < N; i++)
    in[i] = i;
  rc = mp_pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], N, 0);
  int64_t sum = 0;
  int per_rank[64] = {0};
  for (int i = 0; i < N; i++) {
    sum += out[i].square;
    if (out[i].rank >= 0 && out[i].rank < 64)
      per_rank[out[i].rank]++;
  }
  printf("map of %d squares on %d ranks: %s, sum %lld\n", N, mp_mpi_size(),
         mp_strerror(rc), (long long)sum);
  int used = 0;
  for (int r = 0; r < 64; r++)
    used += per_rank[r] > 0;
  printf("ranks that ran items: %d of %d\n", used, mp_mpi_size());

  char text[32];
  size_t len = 0;
  rc = mp_pool_apply(pool, shout, "hello from rank 0", 17, text, sizeof text,
                     &len);
  printf("apply: %s, \"%.*s\"\n", mp_strerror(rc), (int)len, text);

  mp_pool_close(pool);
  mp_pool_join(pool);
  mp_pool_free(pool);
  rc = mp_mpi_finalize();
  if (rc < 0)
    printf("a rank was lost: %s\n", mp_strerror(rc));
  return rc == 0 ? 0 : 1;
}
