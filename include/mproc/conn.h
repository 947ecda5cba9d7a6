/* mproc: connections (Python's multiprocessing.Pipe, Connection and
 * multiprocessing.connection.wait).
 *
 * A connection is one end of a byte channel (a socketpair, a pipe, a TCP or
 * Unix socket) that carries whole messages. The framing is byte for byte
 * Python's Connection.send_bytes: a 4-byte big-endian signed length, then
 * the payload; a message longer than 0x7fffffff bytes has the length -1
 * followed by an 8-byte big-endian unsigned length. A C process and a
 * Python process (multiprocessing.connection.Connection(fd)) can therefore
 * talk over one fd, in both directions.
 *
 * Sharing with children. An mp_conn_t * made before mp_process_start may be
 * put in the child's arg, as Python passes a Connection in args=, under
 * every start method: the object lives in the family's shared memory (the
 * same address in every process) and its fd is passed to the child at the
 * same number. The shared object holds only what never changes (the fd
 * number, its direction, the identity of the file behind it). What Python
 * keeps per process -- whether this process closed its copy, whether it
 * lost readability after a bad message length -- is kept per process: a
 * child that closes or frees its copy never closes the parent's, and the
 * other way round. A child started by fork inherits its parent's view at
 * the moment of the start; a child started by spawn or forkserver sees the
 * connections open in the parent at start (it recognises the fd by the
 * identity of its file, so a closed connection whose fd number was reused
 * for something else reads as closed, never as that other file).
 *
 * Threads. Every call is thread-safe: within one process, sends on one
 * connection are serialized and so are receives, so messages are never
 * interleaved. Several processes sending on the same end at once are not
 * serialized (as in Python, which documents that a pipe end must be used by
 * one process at a time); use a lock, or a queue. The same holds for
 * several processes receiving on one end at once: not supported. Receiving
 * in turns is: a receive reads ahead what the fd has (up to about 4 KiB)
 * and keeps it in the shared object, so the process that receives next
 * gets those bytes first, whichever process it is. Closing a connection
 * while another thread of the same process is blocked on it is not
 * supported (as in Python).
 *
 * Signals. No call ever raises SIGPIPE: sockets are written with
 * MSG_NOSIGNAL, and a write to a pipe whose reader is gone runs with SIGPIPE
 * blocked in the calling thread and consumes the signal it caused; both
 * report MP_ECLOSED. A call interrupted by a signal handler is restarted and
 * never leaves half a message behind. */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include <stdint.h>

#include "error.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One end of a pipe or of a socket connection
 * (multiprocessing.connection.Connection); opaque. */
typedef struct mp_conn mp_conn_t;

/* multiprocessing.Pipe(duplex). duplex: a socketpair, both ends read and
 * write. Not duplex: a pipe, *a is the read end and *b the write end (as in
 * Python: `r, w = Pipe(False)`). The fds are close-on-exec. On failure *a
 * and *b are NULL and the code is -errno (-EMFILE, -ENFILE, -ENOMEM). */
MP_API int mp_pipe(mp_conn_t **a, mp_conn_t **b, bool duplex);

/* multiprocessing.connection.Connection(fd): wraps an open fd, which the
 * connection now owns (mp_conn_close closes it). The direction comes from
 * the fd's access mode (O_RDONLY: read-only, O_WRONLY: write-only, O_RDWR:
 * both), so a pipe end gets the right one. The fd's close-on-exec flag is
 * left as it is. Sockets are written with MSG_NOSIGNAL, anything else with
 * write(). A non-blocking fd works: the calls wait for it.
 * Returns NULL with errno EINVAL (fd < 0), EBADF (not open), ENOMEM. */
MP_API mp_conn_t *mp_conn_from_fd(int fd);

/* Connection.send_bytes(buf): sends len bytes as one message (len 0 is an
 * empty message). Blocks until the whole message is handed to the kernel;
 * large messages go out in as few system calls as the kernel allows
 * (header and payload together with writev/sendmsg).
 * Errors: MP_ECLOSED (closed in this process, or the reader end is gone:
 * EPIPE/ECONNRESET -- the message may be partly sent, the peer is gone
 * anyway), MP_ESTATE (a read-only end: Python's "connection is read-only"),
 * MP_EINVAL (buf NULL with len > 0), other -errno. */
MP_API int mp_conn_send_bytes(mp_conn_t *c, const void *buf, size_t len);

/* Connection.recv_bytes(): blocks until a whole message has arrived and
 * returns it in *buf (malloc'ed, free with mp_free; never NULL on success,
 * also for an empty message) and its length in *len.
 * Errors (*buf untouched):
 *   MP_ECLOSED  the peer closed its end (Python's EOFError), also in the
 *               middle of a message (the partial message is dropped); or
 *               this end was closed in this process.
 *   MP_ESTATE   a write-only end (Python's "connection is write-only"), or
 *               an end that lost readability after -EMSGSIZE/-EPROTO.
 *   -EMSGSIZE   the message is longer than the limit set with
 *               mp_conn_set_max_message (Python's "bad message length"); see
 *               mp_conn_recv_bytes_max.
 *   -EPROTO     the header is not a valid length (a negative one other
 *               than -1): the stream is not Python's framing; the end
 *               loses readability as after -EMSGSIZE.
 *   -ENOMEM     no memory for the message: the message is still pending,
 *               a later call (or recv_bytes_into) receives it.
 *   other -errno. */
MP_API int mp_conn_recv_bytes(mp_conn_t *c, void **buf, size_t *len);

/* Connection.recv_bytes(maxlength): as mp_conn_recv_bytes, but a message
 * longer than maxlength is refused with -EMSGSIZE before any of its payload
 * is read (nothing is allocated for it). As in Python the connection can
 * then no longer be read, since the stream is in the middle of a message:
 * a duplex end becomes write-only (MP_ESTATE on receive), a read-only end
 * is closed (MP_ECLOSED afterwards). */
MP_API int mp_conn_recv_bytes_max(mp_conn_t *c, size_t maxlength, void **buf,
                                  size_t *len);

/* Connection.recv_bytes_into(buf): receives the next message into the
 * caller's buffer of cap bytes; *len gets its length. If the message is
 * longer than cap, returns MP_EOVERFLOW with the needed size in *len and
 * leaves the message where it is: the next receive call on this
 * connection (with a larger buffer, or mp_conn_recv_bytes) gets it. (Python
 * raises BufferTooShort with the message inside the exception; C has no
 * place for it, so it stays queued instead.) Other errors as
 * mp_conn_recv_bytes. buf may be NULL when cap is 0. */
MP_API int mp_conn_recv_bytes_into(mp_conn_t *c, void *buf, size_t cap,
                                   size_t *len);

/* Connection.poll(timeout): whether a message (or the end of the stream)
 * can be read without blocking. Returns 1 ready, 0 not ready after timeout
 * seconds (0: just check, MP_FOREVER: wait), or MP_ECLOSED (closed in this
 * process), MP_ESTATE (write-only end), other -errno. "Ready" includes the
 * peer having closed: the next receive then returns MP_ECLOSED. Bytes an
 * earlier receive read ahead (in any process) count as ready without
 * looking at the fd; as with the fd, they may be only part of a message,
 * and a receive then waits for the rest. */
MP_API int mp_conn_poll(mp_conn_t *c, double timeout);

/* Connection.fileno(): the fd (the same number in every process that has
 * the connection), or MP_ECLOSED if closed in this process. */
MP_API int mp_conn_fileno(mp_conn_t *c);

/* Connection.closed / readable / writable, as seen by this process. */
MP_API bool mp_conn_closed(mp_conn_t *c);
MP_API bool mp_conn_readable(mp_conn_t *c);
MP_API bool mp_conn_writable(mp_conn_t *c);

/* Beyond Python: a limit on the length of every message this connection
 * receives (0: none, the default; the listener sets it on the connections
 * it accepts when asked to). A longer message gives -EMSGSIZE as
 * mp_conn_recv_bytes_max does. Applies in every process. */
MP_API void mp_conn_set_max_message(mp_conn_t *c, size_t max_len);

/* Connection.close(): closes this process's copy of the connection (other
 * processes keep theirs; the peer sees the end of the stream once every
 * process has closed it). Closing twice is allowed. Returns 0. */
MP_API int mp_conn_close(mp_conn_t *c);

/* Closes this process's copy (as mp_conn_close) and forgets it. In the
 * process that made the connection this also releases the shared object:
 * do that only when the processes that received the pointer are done with
 * it (as for every shared object), e.g. after joining them; a child that
 * is done with its copy may free it at any time. NULL does nothing. */
MP_API void mp_conn_free(mp_conn_t *c);

/* ---- fds over a connection ---------------------------------------------
 * multiprocessing.reduction.send_handle(conn, fd, pid) and
 * recv_handle(conn): an open file descriptor passed to the process at the
 * other end of a Unix-domain connection (a duplex mp_pipe, a "unix:"
 * Listener/Client connection, or mp_conn_from_fd of a Unix socket). The
 * bytes on the wire are Python's (one byte, the fd count, with the fd as
 * SCM_RIGHTS, outside the message framing, no acknowledgement on Linux),
 * so a Python peer's send_handle/recv_handle is the other side. Handles
 * and messages may be mixed on one connection in any order: a receive of
 * messages that reads ahead over a handle's byte keeps its fd (in the
 * process that read it) for the next recv_handle.
 *
 * mp_conn_send_handle: sends a duplicate of fd (the caller keeps its own).
 * 0, MP_EINVAL (fd < 0), -EBADF (fd not open), -EOPNOTSUPP (the connection
 * is not a Unix-domain socket: a pipe, a TCP socket; Python fails there
 * too), MP_ECLOSED (closed here, or the peer is gone), MP_ESTATE (a
 * read-only end), other -errno.
 *
 * mp_conn_recv_handle: blocks until a handle arrives and stores the new fd
 * (close-on-exec; the caller closes it) in *fd. MP_ECLOSED (the peer closed,
 * or closed here), -EOPNOTSUPP (not a Unix socket), MP_ESTATE (a
 * write-only end), -EPROTO (the next byte carried no fd: the peer sent a
 * message, not a handle, or another process read the handle's byte ahead;
 * the byte is consumed), other -errno. */
MP_API int mp_conn_send_handle(mp_conn_t *c, int fd);
MP_API int mp_conn_recv_handle(mp_conn_t *c, int *fd);

/* ---- wait ----------------------------------------------------------------
 * multiprocessing.connection.wait(object_list, timeout). The list is an
 * array of tagged objects: connections, processes (ready when they ended,
 * through their sentinel) and raw fds (ready when readable or hung up). */
typedef enum mp_waitable_kind {
  MP_WAITABLE_CONN = 1,
  MP_WAITABLE_PROCESS,
  MP_WAITABLE_FD,
} mp_waitable_kind_t;

/* One object for mp_wait: kind says which member of u is set
 * (mp_waitable_conn, mp_waitable_process and mp_waitable_fd fill it). */
typedef struct mp_waitable {
  mp_waitable_kind_t kind;
  union {
    mp_conn_t *conn;
    mp_process_t *process;
    int fd;
  } u;
} mp_waitable_t;

static inline mp_waitable_t mp_waitable_conn(mp_conn_t *c) {
  mp_waitable_t w = {.kind = MP_WAITABLE_CONN, .u = {.conn = c}};
  return w;
}

static inline mp_waitable_t mp_waitable_process(mp_process_t *p) {
  mp_waitable_t w = {.kind = MP_WAITABLE_PROCESS, .u = {.process = p}};
  return w;
}

static inline mp_waitable_t mp_waitable_fd(int fd) {
  mp_waitable_t w = {.kind = MP_WAITABLE_FD, .u = {.fd = fd}};
  return w;
}

/* Waits until at least one of the n objects is ready, or timeout seconds
 * pass (MP_FOREVER: no limit, 0: just check). Ready means: a connection has
 * a message or the end of the stream to read (as mp_conn_poll), a process
 * has ended, an fd is readable or hung up. Returns the number of ready
 * objects and, when ready_out is not NULL (room for n entries), stores
 * their indices into objs in increasing order -- Python's returned list,
 * in the order of the input. Returns 0 when none became ready in time
 * (Python returns an empty list). Errors: MP_ECLOSED (a connection closed
 * in this process), MP_ESTATE (a process not started or closed), MP_EINVAL
 * (a negative fd, an unknown kind, or n == 0 with no timeout: Python would
 * hang forever), -EBADF (an fd that is not open), other -errno. */
MP_API int mp_wait(const mp_waitable_t *objs, size_t n, double timeout,
                   size_t *ready_out);

#ifdef __cplusplus
}
#endif
#endif
