/* Rank 0: the pool, and its hub thread, the pool's backend (see
 * src/pool/backend.h). MPI is called under mpi_lock only: by the hub,
 * or by a submitting thread that hands out the first chunks while the hub
 * sleeps. Each other rank has MP__MPI_SLOTS_PER_RANK backend slots, so that
 * a rank has its next chunk while it sends back the last; a chunk is
 * claimed for an idle slot, sent with nonblocking calls straight from the
 * job's input, its result received straight into the job's output and
 * committed. Between messages the hub waits in ppoll() on the liveness
 * connections and its wake-up eventfd: a rank pokes its connection as it
 * sends a result, so the hub need not poll MPI (whose blocking calls
 * would spin on a CPU the workers need); the hub pokes a rank likewise as
 * it sends it a chunk.
 *
 * A rank found lost (liveness.c) gives back its chunks: the pool queues
 * them again (up to the retries) or fails them with MP_ELOST. A result is
 * taken only for the run of a chunk it answers: each run has its own id,
 * and a result's header must name a run still out on that rank's slot
 * before anything of it is kept; one for a run no longer out (given back,
 * or dropped by terminate) is read and discarded, and a lost rank's
 * messages are never read at all. A result's outcomes and output are
 * received into the hub's own landing buffer and copied into the job only
 * once the whole message is in and its run is still current: a rank lost
 * in the middle of a message leaves a receive posted that MPI may still
 * complete later (a link that heals), and it must land where nothing of
 * the job can be. Such a buffer is abandoned, never freed. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mpi/mpi_internal.h"

/* MPI counts are int: larger buffers travel in pieces. */
#define PIECE      (1u << 30)
#define PIECES_MAX 16

/* A slot's landing buffer is kept for the next result up to this size
 * (a fresh one costs page faults); a larger one is freed after use. */
#define LANDING_KEEP (16u << 20)

typedef struct flight {
  bool busy;
  mp__pool_chunk_t chunk;
  task_msg_t msg;
  int nreq;
  MPI_Request req[1 + PIECES_MAX]; /* the task's sends */
  /* Where this slot's results land (outcomes, then output) before they
   * are copied into the job; kept from one result to the next. */
  char *landing;
  uint64_t landing_cap;
} flight_t;

typedef struct hub {
  mp_pool_t *pool;
  mp__liveness_t *live;
  int size;
  uint32_t retries;
  uint32_t nslots;
  flight_t *flights;
  bool *bye; /* per rank: said goodbye (its connection may end) */
  int wake_fd;
  pthread_t thread;
  /* Held by the thread that talks MPI and uses the flights: the hub,
   * except while it sleeps idle, or a submitting thread that hands out
   * the first chunks itself instead of waiting for the hub to wake (on a
   * host whose CPUs the workers fill, that wake-up can take
   * milliseconds). MPI_THREAD_SERIALIZED is all this needs. */
  pthread_mutex_t mpi_lock;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool running, stop_requested, stop_done, release_requested;
  /* The build id of the last task's module. */
  char module[sizeof(((mp__fnref_t *)0)->module)];
  mp__build_id_t module_id;
  bool module_known;
} hub_t;

/* Ids of the runs of chunks, unique in the process (across pools): a
 * result is taken only for the run it answers. */
static uint64_t last_id;

static int slot_rank(const hub_t *h, uint32_t slot) {
  return 1 + (int)(slot % (uint32_t)(h->size - 1));
}

/* MPI_Waitall, one by one: GCC 12 misreads MPICH's access attributes on
 * MPI_Waitall for arrays it cannot size. */
static void wait_all(MPI_Request *req, int n) {
  for (int i = 0; i < n; i++)
    MPI_Wait(&req[i], MPI_STATUS_IGNORE);
}

static uint64_t chunk_in_bytes(const mp__pool_chunk_t *c) {
  return c->apply ? c->in_size : c->n * c->in_size;
}

static uint64_t chunk_out_bytes(const mp__pool_chunk_t *c) {
  return c->apply ? c->out_size : c->n * c->out_size;
}

/* Buffers that a receive may still be posted into (their sender was lost
 * in the middle of a message): kept reachable until the process ends,
 * since MPI may yet write into them. Only the hub thread (under mpi_lock)
 * adds to them. */
static void **abandoned;
static size_t abandoned_count;

static void abandon(void *buf) {
  void **grown = realloc(abandoned, (abandoned_count + 1) * sizeof *grown);
  if (grown) {
    abandoned = grown;
    abandoned[abandoned_count++] = buf;
  } /* else it is not freed all the same */
}

/* The slot's landing buffer, at least len bytes; NULL if out of memory. */
static char *landing(flight_t *f, uint64_t len) {
  if (len == 0)
    len = 1;
  if (len > f->landing_cap) {
    free(f->landing);
    f->landing = malloc(len);
    f->landing_cap = f->landing ? len : 0;
  }
  return f->landing;
}

/* ---- Waiting, and lost ranks ------------------------------------------- */

/* Gives back the chunks of a lost rank. A rank that said goodbye and then
 * closed its connection is not lost. */
static void rank_lost(hub_t *h, int rank) {
  if (h->bye[rank])
    return;
  atomic_store(&mp__mpi.lost, true);
  for (uint32_t s = 0; s < h->nslots; s++) {
    flight_t *f = &h->flights[s];
    if (!f->busy || slot_rank(h, s) != rank)
      continue;
    /* Its send requests stay unfinished: the peer is gone. They read the
     * job's input, which is in the arena (mapped as long as the process
     * lives): should MPI still send from it later, the bytes go to a rank
     * whose messages are never read again. */
    mp__pool_backend_lost(h->pool, s, h->retries);
    f->busy = false;
  }
}

/* Waits up to ns for a heartbeat, a lost rank or a wake-up, and handles
 * what came. idle: the hub's own sleep, during which a submitting thread
 * may take mpi_lock. */
static void wait_events(hub_t *h, int64_t ns, bool idle) {
  struct pollfd fds[1 + h->size];
  int live_fds[h->size];
  mp__liveness_fds(h->live, live_fds);
  fds[0] = (struct pollfd){.fd = h->wake_fd, .events = POLLIN};
  for (int r = 0; r < h->size; r++)
    fds[1 + r] = (struct pollfd){.fd = live_fds[r], .events = POLLIN};
  int64_t period = mp__liveness_period_ns(h->live);
  if (ns > period)
    ns = period;
  struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
  if (idle)
    pthread_mutex_unlock(&h->mpi_lock);
  int n = ppoll(fds, (nfds_t)(1 + h->size), &ts, NULL);
  if (idle)
    pthread_mutex_lock(&h->mpi_lock);
  bool readable[h->size];
  for (int r = 0; r < h->size; r++)
    readable[r] = n > 0 && fds[1 + r].revents != 0;
  if (n > 0 && fds[0].revents) {
    uint64_t value;
    ssize_t got = read(h->wake_fd, &value, sizeof value);
    (void)got;
  }
  int lost;
  while ((lost = mp__liveness_check(h->live, readable)) >= 0) {
    readable[lost] = false;
    rank_lost(h, lost);
  }
}

/* Receives len bytes from rank in pieces, watching the rank's liveness.
 * false when it was lost meanwhile. */
static bool recv_from(hub_t *h, int rank, void *buf, uint64_t len, int tag) {
  char *p = buf;
  while (len > 0) {
    int piece = (int)(len > PIECE ? PIECE : len);
    MPI_Request req;
    if (MPI_Irecv(p, piece, MPI_BYTE, rank, tag, mp__mpi.comm, &req) !=
        MPI_SUCCESS)
      return false;
    mp__backoff_t b = {0};
    for (;;) {
      int done = 0;
      if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return false;
      if (done)
        break;
      wait_events(h, mp__backoff_next(&b, MP__BACKOFF_SHORT), false);
      if (mp__liveness_lost(h->live, rank))
        return false; /* the request is left: its peer is gone */
    }
    p += piece;
    len -= (uint64_t)piece;
  }
  return true;
}

/* ---- Sending chunks ------------------------------------------------------ */

static void module_build_id(hub_t *h, const mp__fnref_t *fn,
                            mp__build_id_t *id) {
  if (!h->module_known || strcmp(h->module, fn->module) != 0) {
    snprintf(h->module, sizeof h->module, "%s", fn->module);
    mp__build_id(fn->module, &h->module_id);
    h->module_known = true;
  }
  *id = h->module_id;
}

static void send_chunk(hub_t *h, uint32_t slot) {
  flight_t *f = &h->flights[slot];
  const mp__pool_chunk_t *c = &f->chunk;
  int rank = slot_rank(h, slot);
  f->msg = (task_msg_t){.id = ++last_id,
                        .slot = slot,
                        .apply = c->apply,
                        .in_size = c->in_size,
                        .out_size = c->out_size,
                        .n = c->n,
                        .fn = *c->fn};
  module_build_id(h, c->fn, &f->msg.build_id);
  f->nreq = 0;
  MPI_Isend(&f->msg, sizeof f->msg, MPI_BYTE, rank, TAG_TASK, mp__mpi.comm,
            &f->req[f->nreq++]);
  const char *p = c->in;
  for (uint64_t left = chunk_in_bytes(c); left > 0;) {
    int piece = (int)(left > PIECE ? PIECE : left);
    MPI_Isend(p, piece, MPI_BYTE, rank, TAG_INPUT, mp__mpi.comm,
              &f->req[f->nreq++]);
    p += piece;
    left -= (uint64_t)piece;
  }
  mp__liveness_poke_rank(h->live, rank);
}

/* Claims work for the idle slots of live ranks, one slot of each rank in
 * turn. true if it sent any. */
static bool dispatch(hub_t *h) {
  bool sent = false;
  for (uint32_t s = 0; s < h->nslots; s++) {
    flight_t *f = &h->flights[s];
    if (f->busy || mp__liveness_lost(h->live, slot_rank(h, s)))
      continue;
    if (!mp__pool_backend_claim(h->pool, s, &f->chunk))
      break;
    /* Too large for the pieces we track: it fails here rather than
     * going out half. */
    if (chunk_in_bytes(&f->chunk) > (uint64_t)PIECE * PIECES_MAX ||
        chunk_out_bytes(&f->chunk) > (uint64_t)PIECE * PIECES_MAX) {
      mp__pool_outcome_t *o = calloc(f->chunk.n, sizeof *o);
      for (uint64_t k = 0; o && k < f->chunk.n; k++)
        o[k].state = -EMSGSIZE;
      if (o)
        mp__pool_backend_commit(h->pool, s, o, 0);
      else
        mp__pool_backend_lost(h->pool, s, 0);
      free(o);
      continue;
    }
    f->busy = true;
    send_chunk(h, s);
    sent = true;
  }
  return sent;
}

/* ---- Results ---------------------------------------------------------------
 */

/* Reads and drops len bytes from rank. */
static bool discard(hub_t *h, int rank, uint64_t len, int tag) {
  void *scratch = malloc(len ? (len > PIECE ? PIECE : len) : 1);
  bool ok = scratch != NULL;
  while (ok && len > 0) {
    uint64_t piece = len > PIECE ? PIECE : len;
    ok = recv_from(h, rank, scratch, piece, tag);
    len -= piece;
  }
  if (ok)
    free(scratch);
  else if (scratch)
    abandon(scratch); /* a receive may stay posted into it */
  return ok;
}

/* Copies a result's output, whole in the landing buffer, into the job. A
 * map's outputs when some items failed are those of the items that
 * succeeded, packed (rank.c): they go to their places, and the failed
 * items' places stay as they were. */
static void place_output(const mp__pool_chunk_t *c, const result_msg_t *m,
                         const mp__pool_outcome_t *outcomes, const char *data) {
  if (m->out_bytes == 0)
    return;
  if (m->failed == 0 || c->apply) {
    memcpy(c->out, data, m->out_bytes);
    return;
  }
  uint64_t at = 0;
  for (uint64_t k = 0; k < c->n && (at + 1) * c->out_size <= m->out_bytes; k++)
    if (outcomes[k].state == MP__ITEM_OK)
      memcpy(c->out + k * c->out_size, data + at++ * c->out_size, c->out_size);
}

/* The rest of a result for the run out on its slot: outcomes then output
 * into the landing buffer, then into the job, then the commit. */
static void take_result(hub_t *h, int rank, const result_msg_t *m) {
  flight_t *f = &h->flights[m->slot];
  const mp__pool_chunk_t *c = &f->chunk;
  uint64_t sent = m->failed ? c->n * sizeof(mp__pool_outcome_t) : 0;
  uint64_t room = m->failed || m->error ? c->n * sizeof(mp__pool_outcome_t) : 0;
  char *buf = landing(f, room + m->out_bytes);
  if (!buf)
    abort(); /* out of memory in the middle of a message: no way back */
  if (!recv_from(h, rank, buf, sent, TAG_OUTCOMES) ||
      !recv_from(h, rank, buf + room, m->out_bytes, TAG_OUTPUT)) {
    /* A receive may stay posted into the buffer. */
    abandon(f->landing);
    f->landing = NULL;
    f->landing_cap = 0;
    /* Lost meanwhile: rank_lost gave the chunk back. Else MPI failed
     * with the rank alive: the chunk goes back all the same. */
    if (f->busy && f->msg.id == m->id) {
      mp__pool_backend_lost(h->pool, m->slot, h->retries);
      f->busy = false;
    }
    return;
  }
  mp__pool_outcome_t *outcomes = room ? (mp__pool_outcome_t *)buf : NULL;
  for (uint64_t k = 0; m->error && k < c->n; k++)
    outcomes[k] = (mp__pool_outcome_t){m->error, 0};
  place_output(c, m, outcomes, buf + room);
  wait_all(f->req, f->nreq);
  f->busy = false;
  mp__pool_backend_commit(h->pool, m->slot, outcomes, m->out_len);
  if (f->landing_cap > LANDING_KEEP) {
    free(f->landing);
    f->landing = NULL;
    f->landing_cap = 0;
  }
}

/* Handles one message of a live rank: a result or its goodbye. */
static void collect_one(hub_t *h, int rank, int tag) {
  if (tag == TAG_BYE) {
    MPI_Recv(NULL, 0, MPI_BYTE, rank, TAG_BYE, mp__mpi.comm, MPI_STATUS_IGNORE);
    h->bye[rank] = true;
    return;
  }
  result_msg_t m;
  if (tag != TAG_RESULT)
    abort(); /* only our own messages travel on our communicator */
  if (MPI_Recv(&m, sizeof m, MPI_BYTE, rank, TAG_RESULT, mp__mpi.comm,
               MPI_STATUS_IGNORE) != MPI_SUCCESS)
    return; /* the rank is failing: its liveness tells */
  const flight_t *f = m.slot < h->nslots ? &h->flights[m.slot] : NULL;
  bool current = f && f->busy && f->msg.id == m.id &&
                 slot_rank(h, m.slot) == rank && m.n == f->chunk.n &&
                 m.out_bytes <= chunk_out_bytes(&f->chunk);
  if (current) {
    take_result(h, rank, &m);
    return;
  }
  /* Stale (given back or dropped): read and forget. */
  uint64_t outcomes = m.failed ? m.n * sizeof(mp__pool_outcome_t) : 0;
  if (discard(h, rank, outcomes, TAG_OUTCOMES))
    discard(h, rank, m.out_bytes, TAG_OUTPUT);
}

/* Handles the results and goodbyes that arrived from the live ranks. A
 * lost rank's messages are never read: one that arrives late (a link that
 * healed) must not be taken for a result of now. true if any came. */
static bool collect(hub_t *h) {
  bool any = false;
  for (int rank = 1; rank < h->size; rank++) {
    int tag;
    while (!mp__liveness_lost(h->live, rank) && mp__mpi_probe(rank, &tag)) {
      any = true;
      collect_one(h, rank, tag);
    }
  }
  return any;
}

/* ---- The thread ------------------------------------------------------------
 */

/* Terminate: drops every chunk out (their results will be discarded) and
 * lets the pool settle them. */
static void drop_all(hub_t *h) {
  for (uint32_t s = 0; s < h->nslots; s++) {
    if (!h->flights[s].busy)
      continue;
    mp__pool_backend_drop(h->pool, s);
    h->flights[s].busy = false;
  }
}

static bool any_busy(const hub_t *h) {
  for (uint32_t s = 0; s < h->nslots; s++)
    if (h->flights[s].busy)
      return true;
  return false;
}

/* Tells every live rank to stop, and waits for their goodbyes (or their
 * loss), reading and discarding what they still send. */
static void shutdown_ranks(hub_t *h) {
  stop_msg_t msg = {.lost = atomic_load(&mp__mpi.lost)};
  MPI_Request req[h->size];
  int nreq = 0;
  for (int r = 1; r < h->size; r++)
    if (!mp__liveness_lost(h->live, r))
      MPI_Isend(&msg, sizeof msg, MPI_BYTE, r, TAG_STOP, mp__mpi.comm,
                &req[nreq++]);
  mp__backoff_t b = {0};
  for (;;) {
    bool waiting = false;
    for (int r = 1; r < h->size; r++)
      waiting |= !h->bye[r] && !mp__liveness_lost(h->live, r);
    if (!waiting)
      break;
    if (collect(h))
      mp__backoff_reset(&b);
    else
      wait_events(h, mp__backoff_next(&b, MP__BACKOFF_SHORT), false);
  }
  if (!atomic_load(&mp__mpi.lost))
    wait_all(req, nreq);
}

static void *hub_main(void *arg) {
  hub_t *h = arg;
  mp__backoff_t b = {0};
  pthread_mutex_lock(&h->mpi_lock);
  for (;;) {
    pthread_mutex_lock(&h->lock);
    bool stop = h->stop_requested, release = h->release_requested;
    if (stop && !h->stop_done) {
      drop_all(h);
      h->stop_done = true;
      pthread_cond_broadcast(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    if (release)
      break;
    bool progress = !stop && dispatch(h);
    progress |= collect(h);
    if (progress) {
      mp__backoff_reset(&b);
      continue;
    }
    /* Idle: until a submission, a heartbeat or a lost rank. */
    /* A rank pokes the liveness connection as it sends a result: the
     * wait ends then, and the backoff only bounds a lost poke. */
    wait_events(
        h, any_busy(h) ? mp__backoff_next(&b, MP__BACKOFF_LONG) : INT64_MAX,
        true);
  }
  shutdown_ranks(h);
  pthread_mutex_unlock(&h->mpi_lock);
  return NULL;
}

/* ---- The backend's entry points ---------------------------------------- */

static void signal_hub(hub_t *h) {
  uint64_t one = 1;
  ssize_t n = write(h->wake_fd, &one, sizeof one);
  (void)n;
}

/* Work was queued: hands it out at once if the hub sleeps, and wakes it. */
static void hub_wake(void *arg) {
  hub_t *h = arg;
  if (pthread_mutex_trylock(&h->mpi_lock) == 0) {
    dispatch(h);
    pthread_mutex_unlock(&h->mpi_lock);
  }
  signal_hub(h);
}

static void hub_stop(void *arg) {
  hub_t *h = arg;
  pthread_mutex_lock(&h->lock);
  if (h->running) {
    h->stop_requested = true;
    signal_hub(h);
    while (!h->stop_done)
      pthread_cond_wait(&h->cond, &h->lock);
  }
  pthread_mutex_unlock(&h->lock);
}

static void hub_free(hub_t *h) {
  mp__liveness_free(h->live);
  if (h->wake_fd >= 0)
    close(h->wake_fd);
  pthread_mutex_destroy(&h->lock);
  pthread_mutex_destroy(&h->mpi_lock);
  pthread_cond_destroy(&h->cond);
  for (uint32_t s = 0; h->flights && s < h->nslots; s++)
    free(h->flights[s].landing);
  free(h->flights);
  free(h->bye);
  free(h);
  mp__mpi.pool_exists = false;
}

static void hub_release(void *arg) {
  hub_t *h = arg;
  pthread_mutex_lock(&h->lock);
  bool running = h->running;
  h->release_requested = true;
  pthread_mutex_unlock(&h->lock);
  if (running) {
    signal_hub(h);
    pthread_join(h->thread, NULL);
  }
  hub_free(h);
}

static const mp__pool_backend_t hub_backend = {
    .wake = hub_wake,
    .stop = hub_stop,
    .release = hub_release,
};

static hub_t *hub_new(const mp__mpi_setup_t *setup, mp__liveness_t *l) {
  hub_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->live = l;
  h->size = mp__mpi.size;
  h->retries = setup->retries;
  h->nslots = (uint32_t)(h->size - 1) * MP__MPI_SLOTS_PER_RANK;
  h->flights = calloc(h->nslots ? h->nslots : 1, sizeof *h->flights);
  h->bye = calloc((size_t)h->size, sizeof *h->bye);
  h->wake_fd = mp__fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->mpi_lock, NULL);
  pthread_cond_init(&h->cond, NULL);
  if (!h->flights || !h->bye || h->wake_fd < 0) {
    h->live = NULL;
    hub_free(h);
    return NULL;
  }
  return h;
}

mp_pool_t *mp__mpi_root_pool(const mp__mpi_setup_t *setup, mp__liveness_t *l) {
  hub_t *h = hub_new(setup, l);
  mp_pool_t *pool = NULL;
  if (h)
    pool = mp__pool_new_backend(&setup->local, h->nslots,
                                setup->total_processes, &hub_backend, h);
  int rc = mp__mpi_agree(pool ? 0 : h ? -errno : -ENOMEM);
  if (rc < 0) {
    if (pool)
      mp_pool_free(pool); /* frees h */
    else if (h)
      hub_free(h);
    else
      mp__liveness_free(l);
    errno = -rc;
    return NULL;
  }
  h->pool = pool;
  pthread_mutex_lock(&h->lock);
  rc = pthread_create(&h->thread, NULL, hub_main, h);
  h->running = rc == 0;
  pthread_mutex_unlock(&h->lock);
  if (rc != 0) {
    /* The ranks serve already: they are told to stop. */
    shutdown_ranks(h);
    mp_pool_free(pool);
    errno = rc;
    return NULL;
  }
  return pool;
}
