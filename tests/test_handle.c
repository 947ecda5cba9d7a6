/* fds over a connection (reduction.send_handle / recv_handle): between
 * threads of one process, to a child under every start method, mixed with
 * messages that a receive reads ahead over, the errors of connections that
 * cannot carry fds, and Python's send_handle/recv_handle on the other side
 * in both directions. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "python/pypeer.h"
#include "sync_fixtures.h"

static void assert_message(mp_conn_t *c, const char *want) {
  void *buf = NULL;
  size_t len = 0;
  assert_mp_ok(mp_conn_recv_bytes(c, &buf, &len));
  assert_int_equal(strlen(want), len);
  assert_memory_equal(want, buf, len);
  mp_free(buf);
}

static void send_text(mp_conn_t *c, const char *text) {
  assert_mp_ok(mp_conn_send_bytes(c, text, strlen(text)));
}

/* Reads what fd has until its end into buf (NUL-terminated). */
static void read_all(int fd, char *buf, size_t cap) {
  size_t len = 0;
  ssize_t n;
  while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
    len += (size_t)n;
  buf[len] = 0;
}

/* A handle between messages: the receive of the first message reads ahead
 * over the handle's byte, and the fd is still there for recv_handle. */
static void test_handle_between_messages(void **state) {
  (void)state;
  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  int p[2];
  assert_int_equal(0, pipe2(p, O_CLOEXEC));
  send_text(a, "first");
  assert_mp_ok(mp_conn_send_handle(a, p[1]));
  send_text(a, "second");
  assert_mp_ok(mp_conn_send_handle(a, p[0]));
  close(p[1]);
  assert_message(b, "first"); /* reads all that came, handle bytes too */
  int w = -1, r = -1;
  assert_mp_ok(mp_conn_recv_handle(b, &w));
  assert_message(b, "second");
  assert_mp_ok(mp_conn_recv_handle(b, &r));
  assert_true(fcntl(w, F_GETFD) & FD_CLOEXEC);
  assert_int_equal(5, write(w, "hello", 5));
  close(w);
  char got[16];
  read_all(r, got, sizeof got); /* ends: every write end is closed */
  assert_string_equal("hello", got);
  close(r);
  close(p[0]);
  /* A message where a handle is expected: -EPROTO, and the stream goes on
   * (the byte is gone, so frame the rest by hand). */
  assert_mp_ok(mp_conn_send_bytes(a, NULL, 0)); /* 4 zero bytes */
  int fd = -1;
  assert_mp(-EPROTO, mp_conn_recv_handle(b, &fd));
  assert_int_equal(-1, fd);
  /* Unread handles are closed with the connection. */
  assert_mp_ok(mp_conn_send_handle(a, 0));
  mp_conn_free(a);
  assert_mp(MP_ECLOSED, mp_conn_recv_bytes(b, &(void *){0}, &(size_t){0}));
  mp_conn_free(b);
}

static void test_errors(void **state) {
  (void)state;
  mp_conn_t *r, *w;
  assert_mp_ok(mp_pipe(&r, &w, false)); /* a pipe cannot carry fds */
  int fd = -1;
  assert_mp(-EOPNOTSUPP, mp_conn_send_handle(w, 0));
  assert_mp(-EOPNOTSUPP, mp_conn_recv_handle(r, &fd));
  assert_mp(MP_ESTATE, mp_conn_send_handle(r, 0));
  assert_mp(MP_ESTATE, mp_conn_recv_handle(w, &fd));
  mp_conn_free(r);
  mp_conn_free(w);

  /* Nor can a TCP socket. */
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(ls >= 0);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof addr;
  assert_int_equal(0, bind(ls, (struct sockaddr *)&addr, sizeof addr));
  assert_int_equal(0, listen(ls, 1));
  assert_int_equal(0, getsockname(ls, (struct sockaddr *)&addr, &alen));
  int cs = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal(0, connect(cs, (struct sockaddr *)&addr, sizeof addr));
  int as = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  assert_true(as >= 0);
  close(ls);
  mp_conn_t *tc = mp_conn_from_fd(cs), *ta = mp_conn_from_fd(as);
  assert_non_null(tc);
  assert_non_null(ta);
  assert_mp(-EOPNOTSUPP, mp_conn_send_handle(tc, 0));
  assert_mp(-EOPNOTSUPP, mp_conn_recv_handle(ta, &fd));
  mp_conn_free(tc);
  mp_conn_free(ta);

  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  assert_mp(MP_EINVAL, mp_conn_send_handle(a, -1));
  int closed_fd = dup(0);
  close(closed_fd);
  assert_mp(-EBADF, mp_conn_send_handle(a, closed_fd));
  mp_conn_close(a);
  assert_mp(MP_ECLOSED, mp_conn_send_handle(a, 0));
  assert_mp(MP_ECLOSED, mp_conn_recv_handle(b, &fd)); /* the peer closed */
  mp_conn_free(a);
  mp_conn_free(b);
}

/* Over a Listener/Client connection of a Unix address, as in Python's
 * resource_sharer. */
static void test_over_listener_connection(void **state) {
  (void)state;
  char address[64];
  snprintf(address, sizeof address, "unix:@mproc_test_handle_%d",
           (int)getpid());
  mp_listener_t *l = mp_listener_new(address, NULL, 0);
  assert_non_null(l);
  mp_conn_t *client = NULL, *server = NULL;
  assert_mp_ok(mp_client(address, NULL, 0, &client));
  assert_mp_ok(mp_listener_accept(l, 30, &server));
  int p[2];
  assert_int_equal(0, pipe2(p, O_CLOEXEC));
  assert_mp_ok(mp_conn_send_handle(client, p[1]));
  close(p[1]);
  int w = -1;
  assert_mp_ok(mp_conn_recv_handle(server, &w));
  assert_int_equal(2, write(w, "ok", 2));
  close(w);
  char got[8];
  read_all(p[0], got, sizeof got);
  close(p[0]);
  assert_string_equal("ok", got);
  mp_conn_free(client);
  mp_conn_free(server);
  mp_listener_free(l);
}

/* ---- a child receives an fd --------------------------------------------- */

struct child_args {
  mp_conn_t *conn;
};

static void child_writes_to_handle(void *arg) {
  struct child_args *a = arg;
  int fd = -1;
  if (mp_conn_recv_handle(a->conn, &fd) != 0)
    exit(10);
  if (write(fd, "from the child", 14) != 14)
    exit(11);
  close(fd);
  if (mp_conn_send_bytes(a->conn, "ok", 2) != 0)
    exit(12);
}

static void test_child_receives_handle(void **state) {
  (void)state;
  struct child_args a;
  mp_conn_t *mine;
  assert_mp_ok(mp_pipe(&mine, &a.conn, true));
  int p[2];
  assert_int_equal(0, pipe2(p, O_CLOEXEC));
  mp_process_t *child = start_child(child_writes_to_handle, &a, sizeof a);
  /* Made after the start: the child can only have it through the handle. */
  assert_mp_ok(mp_conn_send_handle(mine, p[1]));
  close(p[1]);
  assert_message(mine, "ok");
  char got[32];
  read_all(p[0], got, sizeof got);
  close(p[0]);
  assert_int_equal(0, finish_child(child));
  assert_string_equal("from the child", got);
  mp_conn_free(mine);
  mp_conn_free(a.conn);
}

/* ---- Python on the other end -------------------------------------------- */

static void start_peer(pypeer_t *peer, const char *exe, const char *mode,
                       int fd) {
  char num[16];
  snprintf(num, sizeof num, "%d", fd);
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("handle_peer.py"), (char *)mode,
                  num, NULL};
  assert_mp_ok(pypeer_start(peer, argv, &fd, 1, false));
}

static void python_receives(const char *exe, const char *version) {
  (void)version;
  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  pypeer_t peer;
  start_peer(&peer, exe, "recv", mp_conn_fileno(b));
  mp_conn_close(b);
  int p[2];
  assert_int_equal(0, pipe2(p, O_CLOEXEC));
  send_text(a, "handle follows");
  assert_mp_ok(mp_conn_send_handle(a, p[1]));
  close(p[1]);
  assert_message(a, "done");
  char got[64];
  read_all(p[0], got, sizeof got);
  close(p[0]);
  mp_conn_close(a);
  assert_true(pypeer_exited_ok(pypeer_finish(&peer, JOIN_TIMEOUT)));
  assert_string_equal("written by python", got);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void python_sends(const char *exe, const char *version) {
  (void)version;
  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  pypeer_t peer;
  start_peer(&peer, exe, "send", mp_conn_fileno(b));
  mp_conn_close(b);
  assert_message(a, "before");
  int fd = -1;
  assert_mp_ok(mp_conn_recv_handle(a, &fd));
  assert_message(a, "after");
  char got[64];
  read_all(fd, got, sizeof got);
  close(fd);
  mp_conn_close(a);
  assert_true(pypeer_exited_ok(pypeer_finish(&peer, JOIN_TIMEOUT)));
  assert_string_equal("read by C", got);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void test_python_receives(void **state) {
  (void)state;
  pypeer_each_version(python_receives);
}

static void test_python_sends(void **state) {
  (void)state;
  pypeer_each_version(python_sends);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_handle_between_messages),
      mpt_test(test_errors),
      mpt_test(test_over_listener_connection),
      sync_test(test_child_receives_handle),
      mpt_test(test_python_receives),
      mpt_test(test_python_sends),
  };
  return MPT_RUN(argc, argv, tests);
}
