/* What the connection files share with each other (conn.c, wait.c,
 * listener.c, auth.c). */
#ifndef MPROC_CONN_INTERNAL_H
#define MPROC_CONN_INTERNAL_H

#include "core/internal.h"
#include "mproc/conn.h"

/* Wraps fd (owned from now on) as a connection that reads and/or writes as
 * told (whether it is a socket is found out from the fd). NULL with errno
 * on failure; the fd is left open then. */
mp_conn_t *mp__conn_wrap(int fd, bool readable, bool writable);

/* Sends one message, waiting for the fd at most until the deadline (NULL:
 * forever). MP_ETIMEDOUT if the deadline passed: the message may be partly
 * sent, so the caller must drop the connection. (On a pipe the deadline
 * bounds the waits between writes, not a write the kernel blocks in; the
 * deadlines are meant for sockets.) Other codes as mp_conn_send_bytes. */
int mp__conn_send(mp_conn_t *c, const void *buf, size_t len,
                  const mp__deadline_t *deadline);

/* Receives one message of at most cap bytes into buf, waiting at most until
 * the deadline (NULL: forever). A longer message is refused before its
 * payload is read: -EMSGSIZE, and the end loses readability as after
 * mp_conn_recv_bytes_max. MP_ETIMEDOUT if the deadline passed: what came
 * of the message stays in the read-ahead buffer for the next call, but a
 * message longer than that buffer and half read makes the end lose
 * readability. Other codes as mp_conn_recv_bytes_into. */
int mp__conn_recv(mp_conn_t *c, void *buf, size_t cap, size_t *len,
                  const mp__deadline_t *deadline);

/* For mp_wait: the fd to poll for c in this process (>= 0), or MP_ECLOSED.
 * *ready_now is set when bytes are waiting already in the read-ahead
 * buffer (an earlier receive read them from the fd), so polling is not
 * needed. */
int mp__conn_wait_fd(mp_conn_t *c, bool *ready_now);

/* Waits until fd has one of events (POLLIN/POLLOUT), the deadline passes
 * (NULL: forever) or it hangs up. Returns 1 ready (also hung up or in
 * error: the next read or write tells), 0 timed out, -EBADF, -errno. */
int mp__wait_fd(int fd, short events, const mp__deadline_t *deadline);

/* ---- authentication (auth.c) -------------------------------------------
 * Python's challenge/response over a connection. Both return 0 when both
 * sides are authenticated; MP_EAUTH (wrong key, not the protocol, a frame
 * over MP__AUTH_FRAME_MAX), MP_ETIMEDOUT (deadline), MP_ECLOSED (the peer
 * closed), -ENOTSUP (no libcrypto could be loaded at run time), other -errno.
 * key may be NULL only with key_len 0 (an empty key). */
#define MP__AUTH_FRAME_MAX 256 /* Python's recv_bytes(256) */

/* The listener's side (deliver_challenge, then answer_challenge) on a
 * non-blocking socket, one step at a time, so that one thread carries many
 * handshakes at once. */
typedef struct mp__handshake {
  int step;
  int failed; /* the response was refused (its code): "#FAILURE#" sent */
  uint8_t message[48]; /* our MESSAGE: "{sha256}" and 40 random bytes */
  uint8_t out[4 + MP__AUTH_FRAME_MAX]; /* the frame being sent */
  size_t out_len, out_done;
  uint8_t in[4 + MP__AUTH_FRAME_MAX]; /* the frame being received */
  size_t in_len;
} mp__handshake_t;
/* Starts one (the challenge is ready to send). 0 or -errno. */
int mp__handshake_begin(mp__handshake_t *h);
/* Does what the socket allows now: 0 when both sides are authenticated,
 * POLLIN or POLLOUT to wait for, or the peer is to be dropped: MP_EAUTH
 * (wrong key, not the protocol, a frame over MP__AUTH_FRAME_MAX),
 * MP_ECLOSED (it hung up), -ENOTSUP (no libcrypto), -errno. */
int mp__handshake_step(mp__handshake_t *h, int fd, const void *key,
                       size_t key_len);
/* The client's side: answer_challenge, then deliver_challenge. */
int mp__auth_client(mp_conn_t *c, const void *key, size_t key_len,
                    const mp__deadline_t *deadline);
/* False when no libcrypto can be loaded at run time: no HMAC, no
 * authentication. */
bool mp__auth_available(void);

/* ---- fds over Unix sockets (handle.c, under conn.c) ---------------------
 * recvmsg of at most n bytes from the Unix socket fd; the fds that come
 * with them (SCM_RIGHTS, made close-on-exec) are kept under key (the
 * connection's serial). flags: MSG_DONTWAIT or 0. As read(): the count, 0
 * at the end, -1 and errno. */
ssize_t mp__handle_recv(int fd, uint64_t key, void *buf, size_t n, int flags);
/* The oldest fd kept under key, now the caller's; -1 when there is none. */
int mp__handle_take(uint64_t key);
/* Closes every fd kept under key (the connection is closed here). */
void mp__handle_drop(uint64_t key);
/* sendmsg of n bytes (MSG_NOSIGNAL) with handle as SCM_RIGHTS: as send(). */
ssize_t mp__handle_send(int fd, const void *buf, size_t n, int handle);

#endif
