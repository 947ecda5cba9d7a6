/* libFuzzer target: the authentication handshake and the frame reader, fed
 * with what a hostile peer sends. The first input byte picks the part:
 *   0  the listener's side (challenge, check the answer, answer back), as
 *      the listener runs it: a step at a time on a non-blocking socket
 *   1  the client's side (answer, then challenge)
 *   2  the frame reader (recv_bytes with a limit, recv_bytes_into)
 * The rest is the peer's bytes, written to the other end of a socketpair,
 * which is then shut for writing: every read ends (end of stream) instead
 * of waiting. Build and run: scripts/fuzz.sh [SECONDS]. */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/internal.h"

#define KEY       "fuzz key"
#define INPUT_MAX 65536 /* fits the socket buffer: the write never blocks */
#define FRAME_MAX 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_frames(mp_conn_t *c) {
  char small[64];
  for (int i = 0;; i++) {
    void *buf;
    size_t len;
    int rc = i % 2 ? mp_conn_recv_bytes_into(c, small, sizeof small, &len)
                   : mp_conn_recv_bytes_max(c, FRAME_MAX, &buf, &len);
    if (rc == 0 && i % 2 == 0)
      mp_free(buf);
    if (rc < 0 && rc != MP_EOVERFLOW)
      return;
    if (rc == MP_EOVERFLOW && len > FRAME_MAX)
      return; /* recv_bytes_max refuses it next; nothing new to see */
  }
}

/* The listener's handshake, stepped as mp_listener_accept steps it, until
 * it ends (the peer's bytes run out: the socket reads end of stream). The
 * steps are bounded: each one either moves a frame or ends. */
static void listener_side(int fd) {
  if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
    return;
  mp__handshake_t h;
  if (mp__handshake_begin(&h) < 0)
    return;
  for (int i = 0; i < 64; i++) {
    int rc = mp__handshake_step(&h, fd, KEY, sizeof KEY - 1);
    if (rc != POLLIN && rc != POLLOUT)
      return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fds[2];
  if (size < 1 || size > INPUT_MAX ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    return 0;
  if (write(fds[1], data + 1, size - 1) != (ssize_t)(size - 1) ||
      shutdown(fds[1], SHUT_WR) < 0) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  if (data[0] % 3 == 0) {
    listener_side(fds[0]);
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  mp_conn_t *c = mp__conn_wrap(fds[0], true, true);
  if (!c) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  mp__deadline_t deadline = mp__deadline_in(1.0);
  switch (data[0] % 3) {
  case 1:
    mp__auth_client(c, KEY, sizeof KEY - 1, &deadline);
    break;
  default:
    read_frames(c);
    break;
  }
  mp_conn_free(c);
  close(fds[1]);
  return 0;
}
