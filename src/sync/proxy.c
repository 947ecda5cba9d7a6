/* Proxies of a manager's locks, semaphores and events (proxy.h). */
#include "sync/proxy.h"

/* h if it is a proxy of that kind. A handle in the arena never is one; any
 * other pointer is read for its magic (as the queue's remote handles). */
static mp__sync_proxy_t *proxy_of(const void *h, uint32_t kind) {
  if (!h || mp__arena_contains(h))
    return NULL;
  const mp__sync_proxy_t *p = h;
  return p->magic == MP__SYNC_PROXY_MAGIC && p->kind == kind
             ? (mp__sync_proxy_t *)p
             : NULL;
}

int mp__sync_proxy_call(const void *h, uint32_t kind, uint32_t op,
                        double timeout) {
  mp__sync_proxy_t *p = proxy_of(h, kind);
  return p ? p->ops->call(p, op, timeout) : MP_EINVAL;
}

bool mp__sync_proxy_free(void *h, uint32_t kind) {
  mp__sync_proxy_t *p = proxy_of(h, kind);
  if (p)
    p->ops->free(p);
  return p != NULL;
}
