/* The ring of messages in shared memory under Queue, SimpleQueue and
 * JoinableQueue (ring.c). The three public queues are thin layers over it
 * (queue.c). */
#ifndef MPROC_RING_H
#define MPROC_RING_H

#include "core/internal.h"

typedef struct mp__ring mp__ring_t;

/* The magic a ring starts with (every queue handle is a ring). */
#define MP__RING_MAGIC 0x52494e47u /* "RING" */

/* Which public type a ring was made for (checked by queue.c). */
enum mp__ring_kind {
  MP__RING_QUEUE = 1,
  MP__RING_SIMPLE,
  MP__RING_JOINABLE, /* also counts unfinished tasks */
};

/* A new ring in the arena; maxsize counts messages (0: unbounded). Returns
 * its handle (mp__object_publish: open it with mp__object_open before
 * use), or NULL with errno ENOMEM or EAGAIN. */
mp__ring_t *mp__ring_new(uint64_t maxsize, enum mp__ring_kind kind);
/* The kind of the ring at r (an opened handle). */
enum mp__ring_kind mp__ring_kind(const mp__ring_t *r);

/* The operations behind the public functions; same codes as queue.h. */
int mp__ring_put(mp__ring_t *r, const void *buf, size_t len, double timeout);
int mp__ring_get(mp__ring_t *r, void **buf, size_t *len, double timeout);
int mp__ring_get_into(mp__ring_t *r, void *buf, size_t cap, size_t *len,
                      double timeout);
size_t mp__ring_qsize(const mp__ring_t *r);
bool mp__ring_full(const mp__ring_t *r);
int mp__ring_close(mp__ring_t *r);
int mp__ring_task_done(mp__ring_t *r);
int mp__ring_join(mp__ring_t *r, double timeout);
void mp__ring_free(mp__ring_t *r);

#endif
