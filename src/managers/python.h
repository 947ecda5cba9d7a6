/* Python's BaseManager protocol (python.c), in both directions: a Python
 * client of an mproc manager's server, and an mproc client of a Python
 * manager's server. Only queues are shared this way (manager.h says how
 * Python typeids map to them).
 *
 * The protocol (Lib/multiprocessing/managers.py): after the connection's
 * HMAC handshake, each request is a pickle of (ident, methodname, args,
 * kwds); ident is None for the server's public functions (dummy, create,
 * accept_connection, incref, decref, shutdown, ...) and the object's id
 * for a method call. A reply is ('#RETURN', value), ('#ERROR', exception)
 * or ('#TRACEBACK', text). A Python server answers one public function per
 * connection and closes it, except accept_connection, after which the
 * connection carries method calls; each proxy (per thread) has its own. */
#ifndef MPROC_MANAGERS_PYTHON_H
#define MPROC_MANAGERS_PYTHON_H

#include "managers/manager.h"
#include "mproc/obj.h"

/* ---- server side (server.c calls these) ---------------------------------- */

/* Whether a request is a Python client's: a pickle (0x80 and a protocol
 * of 2 to 5), where mproc's own requests start with an op number below
 * 0x80 (or a 0 byte on a big-endian machine). */
bool mp__python_request(const void *buf, size_t len);

/* Answers a Python client's request on conn. false once the connection
 * should end (the client hung up, or asked the server to shut down). */
bool mp__python_answer(mp__family_manager_t *m, mp_conn_t *conn,
                       const void *buf, size_t len);

/* ---- client side (manager.c calls these) --------------------------------- */

typedef struct mp__pyclient mp__pyclient_t;

/* Connects to a Python manager's server (BaseManager.connect()). NULL with
 * errno as mp_manager_connect's. */
mp__pyclient_t *mp__pyclient_connect(const char *address, const void *key,
                                     size_t key_len);

/* Creates the object of that typeid on the server (m.<typeid>()): *id
 * then names it for mp__pyclient_call. Only queues: -ENOTSUP for other
 * kinds. 0 or a code (mp_manager_last_error() says more). */
int mp__pyclient_open(mp__pyclient_t *pc, uint32_t kind, const char *typeid,
                      int64_t *id);

/* Performs a remote handle's request as the Python method call. */
int mp__pyclient_call(mp__pyclient_t *pc, const mp__remote_req_t *req,
                      mp__remote_reply_t *rep);

/* Asks the server to shut down. */
int mp__pyclient_shutdown(mp__pyclient_t *pc);

/* Drops the server's references to the objects opened, closes. */
void mp__pyclient_free(mp__pyclient_t *pc);

#endif
