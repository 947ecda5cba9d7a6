/* imap / imap_unordered over a stream: the input comes from a producer
 * called as the pool needs items, with a bound on the items in flight, so
 * memory stays the same for an input of any length (Python's imap takes
 * any iterable, lazily).
 *
 * Built on the public pool API only. The window of items in flight is cut
 * into (usually) four batches of whole chunks; each batch is one map_async
 * over its own input and output arrays in shared memory (used in place,
 * never copied), which the workers take chunk by chunk, so the cost of a
 * submission is shared by a quarter of the window. A batch's slot is
 * refilled from the producer once its items are delivered. imap delivers
 * the oldest batch first, in order; imap_unordered the batch that completes
 * first (mp_async_wait_any). The producer runs in the caller's thread: at
 * creation (to fill the window) and in
 * mp_stream_next (to refill it), never concurrently. */
#include <stdlib.h>
#include <string.h>

#include "mproc.h"

typedef struct batch {
  mp_async_t *a; /* NULL: a free slot */
  char *in;      /* batch * in_size bytes of shared memory (or NULL) */
  char *out;     /* batch * out_size bytes (or NULL) */
  size_t first;  /* the stream index of its first item */
  size_t n;      /* its items */
  size_t delivered;
} batch_t;

struct mp_stream {
  mp_pool_t *pool;
  mp_pool_map_fn fn;
  mp_pool_producer_fn producer;
  void *arg;
  size_t in_size, out_size, chunk;
  size_t batch; /* items per batch: whole chunks */
  bool unordered;
  batch_t *batches;
  size_t nbatches;
  size_t *inflight; /* batch indices, in submission order */
  size_t ninflight;
  mp_async_t **waitset; /* for mp_async_wait_any */
  batch_t *current;     /* ready, being delivered */
  size_t produced;      /* items taken from the producer */
  bool input_ended;     /* the producer said end, or failed */
  int failure;          /* the producer's code, reported after the rest */
  bool failure_reported;
  int error; /* a submission failed: reported from then on */
};

/* Takes up to batch items from the producer into b->in. */
static size_t produce(mp_stream_t *s, batch_t *b) {
  size_t n = 0;
  while (n < s->batch && !s->input_ended) {
    int rc = s->producer(s->arg, b->in ? b->in + n * s->in_size : NULL);
    if (rc == 1) {
      n++;
      continue;
    }
    s->input_ended = true;
    s->failure = rc < 0 ? rc : 0;
  }
  return n;
}

/* Fills the free slots of the window from the producer. 0 or the code of a
 * submission that failed. */
static int refill(mp_stream_t *s) {
  for (size_t i = 0; i < s->nbatches && !s->input_ended && !s->error; i++) {
    batch_t *b = &s->batches[i];
    if (b->a)
      continue;
    b->first = s->produced;
    b->n = produce(s, b);
    b->delivered = 0;
    s->produced += b->n;
    if (b->n == 0)
      break;
    b->a = mp_pool_map_async(s->pool, s->fn, b->in, s->in_size, b->out,
                             s->out_size, b->n, s->chunk, NULL);
    if (!b->a) {
      s->error = -errno;
      break;
    }
    s->inflight[s->ninflight++] = i;
  }
  return s->error;
}

/* Takes the batch at position pos of the in-flight list as the current. */
static void take_inflight(mp_stream_t *s, size_t pos) {
  s->current = &s->batches[s->inflight[pos]];
  memmove(&s->inflight[pos], &s->inflight[pos + 1],
          (s->ninflight - pos - 1) * sizeof s->inflight[0]);
  s->ninflight--;
}

/* Waits for the next batch to deliver from: the oldest (imap) or any that
 * completes first (imap_unordered). */
static int wait_batch(mp_stream_t *s, double timeout) {
  size_t pos = 0;
  int rc;
  if (!s->unordered) {
    rc = mp_async_wait(s->batches[s->inflight[0]].a, timeout);
  } else {
    for (size_t i = 0; i < s->ninflight; i++)
      s->waitset[i] = s->batches[s->inflight[i]].a;
    rc = mp_async_wait_any(s->waitset, s->ninflight, timeout, &pos);
  }
  if (rc == 0)
    take_inflight(s, pos);
  return rc;
}

static void deliver(mp_stream_t *s, void *out, mp_iter_item_t *item) {
  batch_t *b = s->current;
  size_t k = b->delivered++;
  int task_code = 0;
  int err = mp_async_item(b->a, k, &task_code);
  if (item)
    *item = (mp_iter_item_t){
        .index = b->first + k, .error = err, .task_code = task_code};
  if (out && err == 0 && s->out_size)
    memcpy(out, b->out + k * s->out_size, s->out_size);
}

/* The current batch is delivered: its slot is free for the producer. */
static void release_current(mp_stream_t *s) {
  mp_async_free(s->current->a);
  s->current->a = NULL;
  s->current = NULL;
}

int mp_stream_next(mp_stream_t *s, double timeout, void *out,
                   mp_iter_item_t *item) {
  if (!s)
    return MP_EINVAL;
  if (s->current && s->current->delivered == s->current->n)
    release_current(s);
  if (!s->current) {
    int rc = refill(s);
    if (rc < 0 && s->ninflight == 0)
      return rc;
    if (s->ninflight == 0) {
      if (s->failure == 0 || s->failure_reported)
        return 0; /* StopIteration */
      /* Python's test_imap_handle_iterable_exception: the items before
       * the failure, then the failure, then the end. */
      s->failure_reported = true;
      if (item)
        *item = (mp_iter_item_t){.index = s->produced, .error = s->failure};
      return s->failure;
    }
    if ((rc = wait_batch(s, timeout)) < 0)
      return rc;
  }
  deliver(s, out, item);
  return 1;
}

void mp_stream_free(mp_stream_t *s) {
  if (!s)
    return;
  /* The tasks in flight read and write the slots: they must end first. */
  for (size_t i = 0; i < s->nbatches; i++) {
    batch_t *b = &s->batches[i];
    if (b->a) {
      mp_async_wait(b->a, MP_FOREVER);
      mp_async_free(b->a);
    }
    mp_raw_free(b->in);
    mp_raw_free(b->out);
  }
  free(s->batches);
  free(s->inflight);
  free(s->waitset);
  free(s);
}

/* Without a bound from the caller: 4 MiB of inputs and outputs (at most
 * DEFAULT_WINDOW_MAX items, so that submissions are shared by many small
 * items), and at least four chunks per worker. */
#define DEFAULT_WINDOW_BYTES (4u << 20)
#define DEFAULT_WINDOW_MAX   16384u

static size_t default_window(const mp_stream_t *s) {
  size_t item = s->in_size + s->out_size;
  size_t window = item ? DEFAULT_WINDOW_BYTES / item : DEFAULT_WINDOW_MAX;
  if (window > DEFAULT_WINDOW_MAX)
    window = DEFAULT_WINDOW_MAX;
  size_t least = 4 * (size_t)mp_pool_processes(s->pool) * s->chunk;
  return window > least ? window : least;
}

/* The window's slots: nbatches of batch items each, a quarter of the
 * window in whole chunks (at least one chunk). */
static int make_slots(mp_stream_t *s, const mp_stream_opts_t *o) {
  size_t window = o && o->max_in_flight ? o->max_in_flight : default_window(s);
  size_t chunks = window / s->chunk ? window / s->chunk : 1;
  s->batch = s->chunk * (chunks >= 4 ? chunks / 4 : 1);
  s->nbatches = chunks * s->chunk / s->batch;
  s->batches = calloc(s->nbatches, sizeof *s->batches);
  s->inflight = calloc(s->nbatches, sizeof *s->inflight);
  s->waitset = calloc(s->nbatches, sizeof *s->waitset);
  if (!s->batches || !s->inflight || !s->waitset)
    return -ENOMEM;
  if (s->in_size > SIZE_MAX / s->batch || s->out_size > SIZE_MAX / s->batch)
    return -ENOMEM;
  for (size_t i = 0; i < s->nbatches; i++) {
    batch_t *b = &s->batches[i];
    if ((s->in_size && !(b->in = mp_raw_alloc(s->batch * s->in_size))) ||
        (s->out_size && !(b->out = mp_raw_alloc(s->batch * s->out_size))))
      return -ENOMEM;
  }
  return 0;
}

static mp_stream_t *stream_new(mp_pool_t *pool, mp_pool_map_fn fn,
                               size_t in_size, size_t out_size,
                               mp_pool_producer_fn producer, void *arg,
                               const mp_stream_opts_t *opts, bool unordered) {
  if (!pool || !fn || !producer) {
    errno = EINVAL;
    return NULL;
  }
  mp_stream_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  *s = (mp_stream_t){.pool = pool,
                     .fn = fn,
                     .producer = producer,
                     .arg = arg,
                     .in_size = in_size,
                     .out_size = out_size,
                     .chunk = opts && opts->chunksize ? opts->chunksize : 1,
                     .unordered = unordered};
  int rc = make_slots(s, opts);
  if (rc == 0)
    rc = refill(s);
  if (rc < 0) {
    mp_stream_free(s);
    errno = -rc;
    return NULL;
  }
  return s;
}

mp_stream_t *mp_pool_imap_stream(mp_pool_t *pool, mp_pool_map_fn fn,
                                 size_t in_size, size_t out_size,
                                 mp_pool_producer_fn producer, void *arg,
                                 const mp_stream_opts_t *opts) {
  return stream_new(pool, fn, in_size, out_size, producer, arg, opts, false);
}

mp_stream_t *mp_pool_imap_unordered_stream(mp_pool_t *pool, mp_pool_map_fn fn,
                                           size_t in_size, size_t out_size,
                                           mp_pool_producer_fn producer,
                                           void *arg,
                                           const mp_stream_opts_t *opts) {
  return stream_new(pool, fn, in_size, out_size, producer, arg, opts, true);
}
