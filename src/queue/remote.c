/* Remote handles (remote.h): the calls shared by every kind, and the
 * queue's. */
#include <stdlib.h>
#include <string.h>

#include "queue/remote.h"

int (*mp__remote_call)(void *link, const mp__remote_req_t *req,
                       mp__remote_reply_t *rep);

int mp__remote_do(mp__remote_t *r, mp__remote_req_t req, void **out,
                  size_t *out_len, int64_t *n) {
  int (*call)(void *, const mp__remote_req_t *, mp__remote_reply_t *) =
      __atomic_load_n(&mp__remote_call, __ATOMIC_ACQUIRE);
  if (!call)
    return MP_EINVAL;
  req.id = r->id;
  mp__remote_reply_t rep = {0, 0, NULL, 0};
  int rc = call(r->link, &req, &rep);
  if (n)
    *n = rep.n;
  if (rc == 0 && out) {
    *out = rep.out ? rep.out : malloc(1);
    if (!*out)
      return -ENOMEM;
    if (out_len)
      *out_len = rep.out_len;
  } else {
    free(rep.out);
  }
  return rc;
}

int mp__remote_do_into(mp__remote_t *r, mp__remote_req_t req, void *buf,
                       size_t cap, size_t *len) {
  void *out = NULL;
  size_t got = 0;
  int rc = mp__remote_do(r, req, &out, &got, NULL);
  if (rc < 0)
    return rc;
  if (len)
    *len = got;
  if (got > cap)
    rc = MP_EOVERFLOW;
  else
    memcpy(buf, out, got);
  free(out);
  return rc;
}

size_t mp__remote_pack_size(const size_t *lens, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += 8 + lens[i];
  return total;
}

int mp__remote_queue_put(mp__remote_t *r, const void *buf, size_t len,
                         double timeout) {
  mp__remote_req_t req = {
      .op = MP__OP_QUEUE_PUT, .a = buf, .alen = len, .timeout = timeout};
  return mp__remote_do(r, req, NULL, NULL, NULL);
}

int mp__remote_queue_get(mp__remote_t *r, void **buf, size_t *len,
                         double timeout) {
  mp__remote_req_t req = {.op = MP__OP_QUEUE_GET, .timeout = timeout};
  return mp__remote_do(r, req, buf, len, NULL);
}

/* The server gets into a buffer of cap bytes, so that a message too large
 * stays in the queue (MP_EOVERFLOW, with its size), as locally. */
int mp__remote_queue_get_into(mp__remote_t *r, void *buf, size_t cap,
                              size_t *len, double timeout) {
  int64_t need = 0;
  mp__remote_req_t req = {
      .op = MP__OP_QUEUE_GET, .n = (int64_t)cap, .m = 1, .timeout = timeout};
  void *out = NULL;
  size_t got = 0;
  int rc = mp__remote_do(r, req, &out, &got, &need);
  if (rc == MP_EOVERFLOW && len)
    *len = (size_t)need;
  if (rc < 0)
    return rc;
  memcpy(buf, out, got);
  free(out);
  if (len)
    *len = got;
  return 0;
}

size_t mp__remote_queue_qsize(mp__remote_t *r) {
  int64_t n = 0;
  mp__remote_req_t req = {.op = MP__OP_QUEUE_QSIZE};
  return mp__remote_do(r, req, NULL, NULL, &n) == 0 ? (size_t)n : 0;
}

bool mp__remote_queue_full(mp__remote_t *r) {
  int64_t n = 0;
  mp__remote_req_t req = {.op = MP__OP_QUEUE_FULL};
  return mp__remote_do(r, req, NULL, NULL, &n) == 0 && n != 0;
}

int mp__remote_queue_close(mp__remote_t *r) {
  mp__remote_req_t req = {.op = MP__OP_QUEUE_CLOSE};
  return mp__remote_do(r, req, NULL, NULL, NULL);
}

void mp__remote_free(mp__remote_t *r) {
  r->magic = 0;
  free(r);
}
