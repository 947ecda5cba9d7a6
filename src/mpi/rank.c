/* The ranks other than 0: each serves the root inside mp_pool_new_mpi.
 * A chunk's input is received straight into shared memory and run there
 * by the rank's local pool (map_async or apply_async: several chunks may
 * run at once), and its outputs are sent back from where the workers wrote
 * them. Only this thread calls MPI; a second thread watches the root's
 * liveness and ends the process if the root is lost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi/mpi_internal.h"
#include "testing.h"

#define PIECE (1u << 30)

/* Shared-memory buffers kept for the next chunks: a fresh one costs page
 * faults in the rank and in every worker that touches it. */
#define SPARE_MAX 8
typedef struct buffer {
  char *ptr;
  uint64_t cap;
} buffer_t;

typedef struct run {
  task_msg_t msg;
  buffer_t in, out;
  mp_async_t *async; /* NULL when it failed before it ran */
  int error;
  /* Once its result goes out: the sends still read the header, the
   * outcomes and the output buffer until they complete. */
  bool sending;
  result_msg_t res;
  mp__pool_outcome_t one, *outcomes;
  MPI_Request *req;
  int nreq;
} run_t;

typedef struct server {
  mp_pool_t *pool;
  mp__liveness_t *live;
  buffer_t spare[SPARE_MAX];
  unsigned spare_count;
  run_t **runs;
  size_t count, cap;
  bool stopping;
  /* Modules whose build differs from the root's, said once. */
  char refused[4][sizeof(((mp__fnref_t *)0)->module)];
  unsigned refused_count;
} server_t;

MP_API void (*mp__mpi_result_hook)(int part);

/* The liveness of the serving rank, for the test hook. */
static mp__liveness_t *serving_liveness;

MP_API void mp__mpi_test_cut_liveness(void) {
  if (serving_liveness)
    mp__liveness_cut(serving_liveness);
}

static uint64_t in_bytes(const task_msg_t *m) {
  return m->apply ? m->in_size : m->n * m->in_size;
}

static uint64_t out_bytes(const task_msg_t *m) {
  return m->apply ? m->out_size : m->n * m->out_size;
}

/* Blocking transfers in pieces: the root's side is already posted, and
 * if the root dies the watch ends this process. */
static void recv_root(void *buf, uint64_t len, int tag) {
  for (char *p = buf; len > 0;) {
    int piece = (int)(len > PIECE ? PIECE : len);
    MPI_Recv(p, piece, MPI_BYTE, 0, tag, mp__mpi.comm, MPI_STATUS_IGNORE);
    p += piece;
    len -= (uint64_t)piece;
  }
}

static int pieces(uint64_t len) {
  return (int)((len + PIECE - 1) / PIECE);
}

/* Posts the sends of len bytes to the root, in pieces, into req[*nreq...]. */
static void post_root(const void *buf, uint64_t len, int tag, MPI_Request *req,
                      int *nreq) {
  for (const char *p = buf; len > 0;) {
    int piece = (int)(len > PIECE ? PIECE : len);
    MPI_Isend(p, piece, MPI_BYTE, 0, tag, mp__mpi.comm, &req[(*nreq)++]);
    p += piece;
    len -= (uint64_t)piece;
  }
}

/* The task's function here, or NULL with *error: -ENOENT when it is not
 * found, -ENOEXEC when its module is another build than the root's. */
static void *resolve(server_t *s, const task_msg_t *m, int *error) {
  void *fn = mp__pool_backend_resolve(&m->fn);
  mp__build_id_t id;
  if (!fn || mp__build_id(m->fn.module, &id) < 0) {
    *error = -ENOENT;
    return NULL;
  }
  if (mp__build_id_equal(&id, &m->build_id))
    return fn;
  *error = -ENOEXEC;
  for (unsigned i = 0; i < s->refused_count; i++)
    if (strcmp(s->refused[i], m->fn.module) == 0)
      return NULL;
  char mine[2 * MP__BUILD_ID_MAX + 1], root[2 * MP__BUILD_ID_MAX + 1];
  mp__build_id_hex(&id, mine, sizeof mine);
  mp__build_id_hex(&m->build_id, root, sizeof root);
  fprintf(stderr,
          "mproc: rank %d: %s is another build than rank 0's (build id %s, "
          "rank 0: %s): its tasks fail with ENOEXEC\n",
          mp__mpi.rank, m->fn.module[0] ? m->fn.module : "the program", mine,
          root);
  if (s->refused_count < 4)
    snprintf(s->refused[s->refused_count++], sizeof s->refused[0], "%s",
             m->fn.module);
  return NULL;
}

static buffer_t buffer_get(server_t *s, uint64_t size) {
  size = size ? size : 1;
  for (unsigned i = 0; i < s->spare_count; i++) {
    buffer_t b = s->spare[i];
    if (b.cap >= size && b.cap / 2 <= size) {
      s->spare[i] = s->spare[--s->spare_count];
      return b;
    }
  }
  buffer_t b = {mp_raw_alloc(size), size};
  if (!b.ptr)
    abort(); /* the protocol cannot skip a message */
  return b;
}

static void buffer_put(server_t *s, buffer_t b) {
  if (s->spare_count == SPARE_MAX) {
    mp_raw_free(s->spare[0].ptr); /* the oldest goes */
    s->spare[0] = s->spare[--s->spare_count];
  }
  s->spare[s->spare_count++] = b;
}

static void run_free(server_t *s, run_t *r) {
  if (r->outcomes != &r->one)
    free(r->outcomes);
  free(r->req);
  mp_async_free(r->async);
  buffer_put(s, r->in);
  buffer_put(s, r->out);
  free(r);
}

/* Receives a task and hands it to the local pool. */
static void start_task(server_t *s) {
  run_t *r = calloc(1, sizeof *r);
  if (!r || (s->count == s->cap &&
             !(s->runs = realloc(s->runs,
                                 (s->cap = 2 * s->cap + 4) * sizeof *s->runs))))
    abort(); /* the protocol cannot skip a message */
  MPI_Recv(&r->msg, sizeof r->msg, MPI_BYTE, 0, TAG_TASK, mp__mpi.comm,
           MPI_STATUS_IGNORE);
  const task_msg_t *m = &r->msg;
  r->in = buffer_get(s, in_bytes(m));
  r->out = buffer_get(s, out_bytes(m));
  recv_root(r->in.ptr, in_bytes(m), TAG_INPUT);
  s->runs[s->count++] = r;
  void *fn = resolve(s, m, &r->error);
  if (!fn)
    return;
  if (m->apply) {
    /* result_max 0 would mean the default: a capacity of 0 gets 1, and a
     * longer result is an overflow as at the root. */
    mp_async_opts_t o = {.result_max = m->out_size ? m->out_size : 1};
    r->async = mp_pool_apply_async(s->pool, (mp_pool_task_fn)fn, r->in.ptr,
                                   m->in_size, &o);
  } else {
    r->async =
        mp_pool_map_async(s->pool, (mp_pool_map_fn)fn, r->in.ptr, m->in_size,
                          r->out.ptr, m->out_size, m->n, 0, NULL);
  }
  if (!r->async)
    r->error = errno == EINVAL ? MP_EINVAL : -errno;
}

/* A map's outcomes; the count of failures. */
static uint64_t map_outcomes(run_t *r, mp__pool_outcome_t *o) {
  uint64_t failed = 0;
  for (uint64_t k = 0; k < r->msg.n; k++) {
    int code = 0;
    int rc = mp_async_item(r->async, k, &code);
    o[k] = rc == 0 ? (mp__pool_outcome_t){MP__ITEM_OK, 0}
                   : (mp__pool_outcome_t){rc, code};
    failed += rc != 0;
  }
  return failed;
}

/* With failures, only the outputs of the items that succeeded go back,
 * packed in order: the others' are left as they were at the root, as the
 * local pool leaves them. Returns the packed length. */
static uint64_t pack_outputs(run_t *r, const mp__pool_outcome_t *o) {
  uint64_t size = r->msg.out_size, at = 0;
  for (uint64_t k = 0; k < r->msg.n; k++) {
    if (o[k].state != MP__ITEM_OK)
      continue;
    if (at != k)
      memmove(r->out.ptr + at * size, r->out.ptr + k * size, size);
    at++;
  }
  return at * size;
}

/* The header of a finished run's result, its outcomes when some item
 * failed (r->outcomes), and where its output is. */
static const void *result_of(run_t *r) {
  const task_msg_t *m = &r->msg;
  r->res = (result_msg_t){
      .id = m->id, .slot = m->slot, .error = r->error, .n = m->n};
  r->outcomes = &r->one;
  const void *output = r->out.ptr;
  if (!r->error && m->apply) {
    size_t len = 0;
    int rc = mp_async_get(r->async, 0, &output, &len);
    r->res.out_len = len;
    if (rc == 0 && len > m->out_size)
      rc = MP_EOVERFLOW;
    if (rc == 0)
      r->res.out_bytes = len;
    r->one = (mp__pool_outcome_t){rc ? rc : MP__ITEM_OK,
                                  mp_async_task_code(r->async)};
    r->res.failed = rc != 0;
  } else if (!r->error) {
    /* Every item succeeded: no outcomes to gather (a look at each item
     * costs more than the item of a trivial map). */
    if (mp_async_get(r->async, 0, NULL, NULL) != 0) {
      if (!(r->outcomes = malloc(m->n * sizeof *r->outcomes)))
        abort();
      r->res.failed = map_outcomes(r, r->outcomes);
    }
    r->res.out_bytes =
        r->res.failed ? pack_outputs(r, r->outcomes) : out_bytes(m);
  }
  return output;
}

/* Sends a finished run's result without waiting: the header, which MPI
 * delivers at once, then the root's hub is poked, then the outcomes and the
 * output (which wait for the hub to take them; meanwhile this rank takes
 * its next chunk). */
static void send_result(server_t *s, run_t *r) {
  const void *output = result_of(r);
  const result_msg_t *res = &r->res;
  uint64_t outcome_bytes = res->failed ? r->msg.n * sizeof *r->outcomes : 0;
  r->req = malloc((size_t)(1 + pieces(outcome_bytes) + pieces(res->out_bytes)) *
                  sizeof *r->req);
  if (!r->req)
    abort(); /* the protocol cannot skip a message */
  r->sending = true;
  void (*hook)(int) = mp__mpi_result_hook;
  if (hook) {
    /* The hook runs once rank 0 has taken the header (a synchronous
     * send): rank 0 then waits for the rest. */
    mp__liveness_poke(s->live);
    MPI_Ssend(res, sizeof *res, MPI_BYTE, 0, TAG_RESULT, mp__mpi.comm);
    hook(0);
  } else {
    MPI_Isend(res, sizeof *res, MPI_BYTE, 0, TAG_RESULT, mp__mpi.comm,
              &r->req[r->nreq++]);
    mp__liveness_poke(s->live);
  }
  post_root(r->outcomes, outcome_bytes, TAG_OUTCOMES, r->req, &r->nreq);
  post_root(output, res->out_bytes, TAG_OUTPUT, r->req, &r->nreq);
  if (hook) {
    for (int i = 0; i < r->nreq; i++)
      MPI_Wait(&r->req[i], MPI_STATUS_IGNORE);
    hook(1);
  }
}

/* Whether the sends of a run's result are complete. */
static bool sent(run_t *r) {
  for (int i = 0; i < r->nreq; i++) {
    int done = 0;
    if (r->req[i] != MPI_REQUEST_NULL &&
        (MPI_Test(&r->req[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
         !done))
      return false;
  }
  return true;
}

/* Handles one message of the root, if one came. */
static bool receive_one(server_t *s) {
  int tag;
  if (!mp__mpi_probe(0, &tag))
    return false;
  if (tag == TAG_TASK) {
    start_task(s);
  } else if (tag == TAG_STOP) {
    stop_msg_t msg;
    MPI_Recv(&msg, sizeof msg, MPI_BYTE, 0, TAG_STOP, mp__mpi.comm,
             MPI_STATUS_IGNORE);
    if (msg.lost)
      atomic_store(&mp__mpi.lost, true);
    s->stopping = true;
    /* What still runs is for nobody: its results fail at once. */
    mp_pool_terminate(s->pool);
  } else {
    abort(); /* only our own messages travel on our communicator */
  }
  return true;
}

/* Handles everything the root sent (a chunk that waits costs a worker its
 * time). true if anything came. */
static bool receive(server_t *s) {
  bool any = false;
  while (receive_one(s))
    any = true;
  return any;
}

/* Sends the results of the runs that finished, and frees the runs whose
 * results are sent. true if any did either. */
static bool finish(server_t *s) {
  bool any = false;
  for (size_t i = 0; i < s->count;) {
    run_t *r = s->runs[i];
    if (!r->sending && (!r->async || mp_async_ready(r->async))) {
      send_result(s, r);
      any = true;
    }
    if (!r->sending || !sent(r)) {
      i++;
      continue;
    }
    run_free(s, r);
    /* Keeps the order: the oldest run first. */
    memmove(&s->runs[i], &s->runs[i + 1], (--s->count - i) * sizeof *s->runs);
    any = true;
  }
  return any;
}

static void sleep_ns(int64_t ns) {
  if (ns <= 0)
    return;
  struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
  nanosleep(&ts, NULL);
}

int mp__mpi_serve(const mp__mpi_setup_t *setup, mp__liveness_t *l) {
  server_t s = {.pool = mp_pool_new(&setup->local), .live = l};
  int rc = mp__mpi_agree(s.pool ? 0 : -errno);
  if (rc < 0) {
    mp_pool_free(s.pool);
    mp__liveness_free(l);
    return rc;
  }
  serving_liveness = l;
  if ((rc = mp__liveness_watch_root(l)) < 0)
    fprintf(stderr, "mproc: rank %d: no watch of rank 0 (%s)\n", mp__mpi.rank,
            mp_strerror(rc)); /* it serves anyway: rank 0 still watches it */
  mp__backoff_t b = {0};
  while (!s.stopping || s.count > 0) {
    bool progress = receive(&s);
    progress |= finish(&s);
    if (progress) {
      mp__backoff_reset(&b);
      continue;
    }
    size_t running = 0;
    while (running < s.count && s.runs[running]->async &&
           !s.runs[running]->sending)
      running++;
    if (running >= MP__MPI_SLOTS_PER_RANK) {
      /* Nothing comes before this rank answers (but the stop): wait on
       * the oldest run, woken at once when it finishes (a futex). */
      mp_async_wait(s.runs[0]->async, (double)MP__BACKOFF_LONG / 1e9);
    } else if (s.count > 0) {
      /* A run is out, or its result on its way: the next chunk comes as
       * soon as the root takes a result. */
      int64_t ns = mp__backoff_next(&b, MP__BACKOFF_SHORT);
      if (running > 0)
        mp_async_wait(s.runs[0]->async, (double)ns / 1e9);
      else
        sleep_ns(ns);
    } else if (mp__liveness_wait_root(l,
                                      mp__backoff_next(&b, MP__BACKOFF_LONG))) {
      /* Idle until the root pokes as it sends a chunk: then MPI is
       * polled often again (over TCP the chunk may come after the poke). */
      mp__backoff_reset(&b);
    }
  }
  mp__liveness_stop_watch(l);
  MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_BYE, mp__mpi.comm);
  mp__liveness_wait_closed(l);
  serving_liveness = NULL;
  mp__liveness_free(l);
  mp_pool_free(s.pool);
  for (unsigned i = 0; i < s.spare_count; i++)
    mp_raw_free(s.spare[i].ptr);
  free(s.runs);
  return 0;
}
