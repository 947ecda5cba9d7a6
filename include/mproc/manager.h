/* mproc: managers (Python's multiprocessing.Manager(),
 * managers.BaseManager and managers.SharedMemoryManager): named dicts,
 * lists, queues, locks, semaphores and events served by a server process
 * to processes of the family and to unrelated processes, here or on
 * another host, and shared memory segments the server owns.
 *
 * mp_manager_new starts the server (BaseManager(address, authkey).start()).
 * Its handle lives in shared memory: it works in the process that made it
 * and in its children under every start method, and for them the objects
 * it returns are the shared-memory objects themselves (mp_dict_t,
 * mp_list_t, mp_queue_t as made by mp_dict_new and friends): calls on them
 * never go through the server. mp_manager_connect (BaseManager.connect())
 * connects any process, of the family or not, to a running server over an
 * authenticated mproc connection ("unix:" or "tcp:" address, see
 * listener.h); the objects it returns are proxies: the same mp_dict_*,
 * mp_list_* and mp_queue_* calls work on them, each a request and a reply.
 *
 * Failure is an error, never a hang:
 *   - server killed: every call on a proxy returns MP_ECLOSED at once (and
 *     from then on); mp_manager_* calls on a connected manager too;
 *   - a client killed in the middle of a call: the server and the other
 *     clients go on (the objects are the robust shared-memory ones, and the
 *     server notices the closed connection);
 *   - a client killed while its get waits in the server: the server notices
 *     the closed connection within 50 ms and stops waiting, so no message
 *     is taken for it. (A message taken in the instant the client died is
 *     put back at the end of the queue.)
 *
 * Threads: a connected manager and its proxies may be used by several
 * threads; their calls take turns on the one connection (a blocking get on
 * a proxy makes the other threads' calls wait for it). Proxies must be
 * freed before their manager. Names are at most 200 bytes. */
#ifndef MPROC_MANAGER_H
#define MPROC_MANAGER_H

#include <stddef.h>

#include "mproc/containers.h"
#include "mproc/error.h"
#include "mproc/memory.h"
#include "mproc/obj.h"
#include "mproc/queue.h"
#include "mproc/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A manager: the family handle made by mp_manager_new (in shared memory)
 * or a connected handle made by mp_manager_connect (process-local). */
typedef struct mp_manager mp_manager_t;

/* Starts a manager's server process listening on address ("unix:/path",
 * "unix:@name", "tcp:HOST:PORT"; NULL: a fresh private Unix socket) with
 * authkey (NULL: the current process's authkey, as Python). Returns when
 * the server listens. NULL with errno: the listener's errors (EADDRINUSE,
 * EINVAL, ...), ENOMEM, ETIMEDOUT (the server did not come up). */
MP_API mp_manager_t *mp_manager_new(const char *address, const void *authkey,
                                    size_t authkey_len);

/* Connects to a manager's server (BaseManager(address, authkey).connect()).
 * NULL with errno: ECONNREFUSED, ENOENT, EACCES (MP_EAUTH: wrong key),
 * ETIMEDOUT, EINVAL. */
MP_API mp_manager_t *mp_manager_connect(const char *address,
                                        const void *authkey,
                                        size_t authkey_len);

/* The address the server listens on (with the port the system picked for
 * "tcp:HOST:0"). */
MP_API const char *mp_manager_address(const mp_manager_t *m);

/* The server's dict, list or queue of that name, made on first use (a
 * queue with maxsize then; later maxsizes are ignored). Free the handle
 * with mp_dict_free / mp_list_free / mp_queue_free: for a proxy that frees
 * the proxy only; for a family handle it is the object itself, which the
 * manager frees (do not free it). NULL with errno: EINVAL (bad name),
 * ECONNRESET (server gone), ENOMEM. */
MP_API mp_dict_t *mp_manager_dict(mp_manager_t *m, const char *name);
MP_API mp_list_t *mp_manager_list(mp_manager_t *m, const char *name);
MP_API mp_queue_t *mp_manager_queue(mp_manager_t *m, const char *name,
                                    size_t maxsize);

/* The server's Lock, RLock, Semaphore or Event of that name, made on
 * first use (Manager().Lock(), .RLock(), .Semaphore(value), .Event(); a
 * semaphore with value then, later values are ignored). As for the
 * containers: for the family handle these are the shared-memory objects
 * themselves (the manager frees them: do not free them); for a connected
 * one they are proxies that take the same mp_lock_*, mp_rlock_*,
 * mp_semaphore_* and mp_event_* calls (free them with mp_lock_free and
 * friends, before the manager). On a proxy:
 *   - acquire and wait wait in the server, in slices of at most 0.1 s
 *     between which the connection is free for the other threads of this
 *     process (a thread waiting for a lock another thread of the process
 *     holds does not stop that thread's release); mp_interrupt() ends
 *     such a wait with MP_EINTR at the end of its slice;
 *   - a lock or rlock still held by a client when its connection closes
 *     (it freed the manager, exited or was killed) is released by the
 *     server; Python's manager leaves it held for ever;
 *   - an RLock's owner is the connection: the threads of one connected
 *     manager count as one owner; mp_rlock_is_mine, mp_rlock_count and
 *     mp_rlock_owner give false / 0 on a proxy;
 *   - every call returns MP_ECLOSED once the server is gone (a bool
 *     function: false).
 * NULL with errno as mp_manager_dict (EINVAL also for a semaphore value
 * over INT32_MAX). */
MP_API mp_lock_t *mp_manager_lock(mp_manager_t *m, const char *name);
MP_API mp_rlock_t *mp_manager_rlock(mp_manager_t *m, const char *name);
MP_API mp_semaphore_t *mp_manager_semaphore(mp_manager_t *m, const char *name,
                                            unsigned value);
MP_API mp_event_t *mp_manager_event(mp_manager_t *m, const char *name);

/* SharedMemoryManager().SharedMemory(size): a new named segment of size
 * bytes (zeroed, a random free name) owned by the manager's server: it is
 * unlinked when the server stops (mp_manager_shutdown), when the family
 * handle is freed, and, if the server and its family are all killed, by
 * the family's resource tracker. The handle is this process's mapping of
 * it: mp_shm_buf, mp_shm_size, mp_shm_name work as usual (a Python
 * SharedMemory(name) attaches too); release it with mp_shm_close (do not
 * unlink it: the manager does). NULL with errno: those of mp_shm_open,
 * and as mp_manager_dict. */
MP_API mp_shm_t *mp_manager_shm(mp_manager_t *m, size_t size);

/* SharedMemoryManager().ShareableList(sequence): a new ShareableList of
 * the n items (see mp_shareable_list_new) in a segment that the manager
 * owns as mp_manager_shm's: unlinked at shutdown, and so on. Release it
 * with mp_shareable_list_close (do not unlink it). NULL with errno: those
 * of mp_shareable_list_new, and as mp_manager_dict. */
MP_API mp_shareable_list_t *
mp_manager_shareable_list(mp_manager_t *m, const mp_shareable_item_t *items,
                          size_t n);

/* Stops the server (from the family handle or from a connected one):
 * it stops accepting, and the connections of its clients close (their
 * calls then return MP_ECLOSED). The family's shared objects stay usable
 * until mp_manager_free. 0, MP_ECLOSED (already stopped or gone). */
MP_API int mp_manager_shutdown(mp_manager_t *m);

/* Connected handle: closes the connection. Family handle, in the process
 * that made it: shuts the server down if needed and frees the named
 * objects (nobody may use them any more); in other processes: nothing. */
MP_API void mp_manager_free(mp_manager_t *m);

/* ---- Python's BaseManager -------------------------------------------------
 * Queues shared with Python programs through Python's own manager protocol
 * (pickled requests over the same authenticated connections), both ways:
 *
 * A Python client of an mproc server (mp_manager_new with a "tcp:" or
 * "unix:" address): the server tells its requests from mproc's by their
 * first bytes. Python registers a typeid without a callable and connects:
 *     class QueueManager(BaseManager): pass
 *     QueueManager.register('get_queue')
 *     m = QueueManager(address=('127.0.0.1', port), authkey=b'...')
 *     m.connect(); q = m.get_queue(); q.put([1, 'two']); q.get()
 * The typeid "get_<name>" (any other typeid: itself) is the manager's
 * queue <name>, the one mp_manager_queue(m, "<name>", 0) gives (made on
 * first use, unbounded then). Its methods: put, get, put_nowait,
 * get_nowait, qsize, empty, full; block and timeout as Python's queue
 * (queue.Empty, queue.Full). Any other method gets a RemoteError, as from
 * a Python server; a malformed or hostile request a RemoteError too.
 * Python's incref and decref are answered but not counted: a named queue
 * lives as long as the manager.
 *
 * An mproc client of a Python server: mp_manager_connect_python, then
 * mp_manager_queue(m, typeid, 0) with the typeid the Python server
 * registered (e.g. "get_queue" with callable=lambda: queue); then the
 * usual mp_queue_* calls (close excepted: -ENOTSUP) on the handle.
 *
 * Items: on a queue shared with Python each message is the pickle of one
 * Python value (None, bool, int, float, str, bytes, tuple, list, dict, set,
 * frozenset): mp_queue_put_obj and mp_queue_get_obj put and get values;
 * mp_queue_put and mp_queue_get see the pickles. A message that is not a
 * pickle reaches Python as a bytes object. Pickles from the network are
 * loaded with limits (nesting 100, the default size) and never run code. */

/* BaseManager(address, authkey).connect() to a Python manager's server.
 * NULL with errno as mp_manager_connect (also EPROTO: not a Python
 * manager's answer). Free with mp_manager_free, which also gives the
 * server back its references to the objects opened. */
MP_API mp_manager_t *mp_manager_connect_python(const char *address,
                                               const void *authkey,
                                               size_t authkey_len);

/* q.put(o) of one Python value, as its pickle (protocol 4); errors of
 * mp_obj_dumps and mp_queue_put. On a Python manager's queue a Python
 * exception comes back as a code: queue.Full MP_EFULL, queue.Empty
 * MP_EEMPTY, KeyError MP_EKEY, IndexError MP_EINDEX, EOFError MP_ECLOSED,
 * TimeoutError MP_ETIMEDOUT, any other (and RemoteError) -EREMOTEIO;
 * mp_manager_last_error() then has its name and message. */
MP_API int mp_queue_put_obj(mp_queue_t *q, const mp_obj_t *o, double timeout);

/* q.get(): one message as a Python value (free with mp_obj_free): a pickle
 * loaded (mp_obj_loads with the limits above: -EPROTO, -E2BIG; the message
 * is consumed), other bytes as a bytes object. Errors of mp_queue_get and
 * those of mp_queue_put_obj. */
MP_API int mp_queue_get_obj(mp_queue_t *q, mp_obj_t **out, double timeout);

/* What the last failed call of this thread on a Python manager reported:
 * "queue.Empty", "builtins.KeyError: x", "RemoteError (#TRACEBACK): ...".
 * Never NULL. */
MP_API const char *mp_manager_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
