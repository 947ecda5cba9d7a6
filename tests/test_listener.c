/* Listener and Client (issue 7): addresses, authentication with Python's
 * protocol against real Python 3.11/3.12/3.13 processes in both directions,
 * and clients that misbehave. Runs once: nothing here depends on the start
 * method (C-to-C peers are threads of this process). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"
#include "python/pypeer.h"

#define KEY          "secret password"
#define KEY_HEX      "7365637265742070617373776f7264"
#define BAD_HEX      "77726f6e67206b6579" /* "wrong key" */
#define PEER_TIMEOUT 60.0

/* ---- fixtures ----------------------------------------------------------- */

static const size_t echo_sizes[] = {0, 1, 100, 16385, 1u << 20};
#define N_ECHO (sizeof echo_sizes / sizeof echo_sizes[0])

/* Sends each size and checks the echo. Returns 0 or the first failure. */
static int echo_check(mp_conn_t *c) {
  for (size_t i = 0; i < N_ECHO; i++) {
    uint8_t *msg = pypeer_pattern(echo_sizes[i]);
    void *back = NULL;
    size_t len = 0;
    int rc = mp_conn_send_bytes(c, msg, echo_sizes[i]);
    if (rc == 0)
      rc = mp_conn_recv_bytes(c, &back, &len);
    if (rc == 0 && (len != echo_sizes[i] || memcmp(back, msg, len) != 0))
      rc = -EBADMSG;
    mp_free(back);
    free(msg);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Echoes until the peer closes; returns how many messages, or a code. */
static int echo_serve(mp_conn_t *c) {
  int n = 0;
  for (;;) {
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(c, &buf, &len);
    if (rc == MP_ECLOSED)
      return n;
    if (rc < 0)
      return rc;
    rc = mp_conn_send_bytes(c, buf, len);
    mp_free(buf);
    if (rc < 0)
      return rc;
    n++;
  }
}

/* A C client in a thread: connects with its key and runs echo_check. */
typedef struct client_job {
  char address[128];
  const char *key; /* NULL: no authentication */
  double timeout;
  int connect_rc;
  int echo_rc;
  pthread_t thread;
} client_job_t;

static void *client_main(void *p) {
  client_job_t *job = p;
  mp_conn_t *c;
  mp_client_opts_t opts = {.timeout = job->timeout};
  job->connect_rc = mp_client_with_opts(
      job->address, job->key, job->key ? strlen(job->key) : 0, &opts, &c);
  job->echo_rc = job->connect_rc;
  if (job->connect_rc == 0) {
    job->echo_rc = echo_check(c);
    mp_conn_free(c);
  }
  return NULL;
}

static void client_start(client_job_t *job, const mp_listener_t *l,
                         const char *key) {
  memset(job, 0, sizeof *job);
  snprintf(job->address, sizeof job->address, "%s", mp_listener_address(l));
  job->key = key;
  job->timeout = PEER_TIMEOUT;
  assert_int_equal(pthread_create(&job->thread, NULL, client_main, job), 0);
}

static void client_join(client_job_t *job) {
  pthread_join(job->thread, NULL);
}

/* Accepts a peer that must be refused. A connection accepted by mistake is
 * closed at once, so that its client does not wait for it forever. */
static int accept_refused(mp_listener_t *l) {
  mp_conn_t *c = NULL;
  int rc = mp_listener_accept(l, PEER_TIMEOUT, &c);
  mp_conn_free(c);
  return rc;
}

/* Accepts one peer and echoes for it; the code of accept, or of serving. */
static int accept_and_serve(mp_listener_t *l) {
  mp_conn_t *c;
  int rc = mp_listener_accept(l, PEER_TIMEOUT, &c);
  if (rc < 0)
    return rc;
  rc = echo_serve(c);
  mp_conn_free(c);
  return rc < 0 ? rc : 0;
}

static char sock_path[256];

static const char *unix_address(void) {
  snprintf(sock_path, sizeof sock_path, "/tmp/mproc-test-listener-%d.sock",
           (int)getpid());
  unlink(sock_path);
  static char address[300];
  snprintf(address, sizeof address, "unix:%s", sock_path);
  return address;
}

/* ---- addresses ------------------------------------------------------------
 */

static void c_to_c(const char *address, const char *key) {
  mp_listener_t *l = mp_listener_new(address, key, key ? strlen(key) : 0);
  assert_non_null(l);
  client_job_t job;
  client_start(&job, l, key);
  int rc = accept_and_serve(l);
  client_join(&job);
  mp_listener_free(l);
  assert_mp_ok(rc);
  assert_mp_ok(job.connect_rc);
  assert_mp_ok(job.echo_rc);
}

static void test_unix_path_socket(void **state) {
  (void)state;
  const char *address = unix_address();
  mp_listener_t *l = mp_listener_new(address, KEY, strlen(KEY));
  assert_non_null(l);
  assert_string_equal(mp_listener_address(l), address);
  struct stat st;
  assert_int_equal(stat(sock_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  mp_listener_free(l);
  assert_int_equal(stat(sock_path, &st), -1); /* removed on close */
  c_to_c(address, KEY);
  c_to_c(address, NULL);
}

static void test_abstract_socket(void **state) {
  (void)state;
  char address[64];
  snprintf(address, sizeof address, "unix:@mproc-test-%d", (int)getpid());
  mp_listener_t *l = mp_listener_new(address, NULL, 0);
  assert_non_null(l);
  assert_string_equal(mp_listener_address(l), address);
  mp_listener_free(l);
  c_to_c(address, KEY);
}

static void test_tcp_ipv4_and_ipv6(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", KEY, strlen(KEY));
  assert_non_null(l);
  const char *bound = mp_listener_address(l);
  assert_true(strncmp(bound, "tcp:127.0.0.1:", 14) == 0);
  assert_true(atoi(bound + 14) > 0); /* the port the system picked */
  mp_listener_free(l);
  c_to_c("tcp:127.0.0.1:0", KEY);
  c_to_c("tcp:localhost:0", KEY);

  l = mp_listener_new("tcp:[::1]:0", NULL, 0);
  if (!l) {
    print_message("[  SKIPPED ] IPv6: %s\n", strerror(errno));
    return;
  }
  assert_true(strncmp(mp_listener_address(l), "tcp:[::1]:", 10) == 0);
  mp_listener_free(l);
  c_to_c("tcp:[::1]:0", KEY);
}

/* Serves one client (thread) and returns with the listener still open. */
static void serve_one(mp_listener_t *l, const char *key) {
  client_job_t job;
  client_start(&job, l, key);
  int rc = accept_and_serve(l);
  client_join(&job);
  assert_mp_ok(rc);
  assert_mp_ok(job.connect_rc);
}

/* Listener's port, path and last_accepted, without parsing addresses. */
static void test_port_path_last_accepted(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", KEY, strlen(KEY));
  assert_non_null(l);
  int port = mp_listener_port(l);
  assert_true(port > 0 && port < 65536);
  assert_int_equal(port, atoi(mp_listener_address(l) + 14));
  errno = 0;
  assert_null(mp_listener_path(l));
  assert_int_equal(errno, EINVAL);
  assert_null(mp_listener_last_accepted(l));
  serve_one(l, KEY);
  const char *peer = mp_listener_last_accepted(l);
  assert_non_null(peer);
  assert_true(strncmp(peer, "tcp:127.0.0.1:", 14) == 0);
  int peer_port = atoi(peer + 14);
  assert_true(peer_port > 0 && peer_port != port); /* the client's own */
  mp_listener_free(l);

  const char *address = unix_address();
  l = mp_listener_new(address, NULL, 0);
  assert_non_null(l);
  assert_mp(MP_EINVAL, mp_listener_port(l));
  assert_string_equal(mp_listener_path(l), sock_path);
  serve_one(l, NULL);
  assert_string_equal(mp_listener_last_accepted(l), "unix:"); /* unnamed */
  mp_listener_free(l);
}

static void test_default_address(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new(NULL, KEY, strlen(KEY));
  assert_non_null(l);
  const char *address = mp_listener_address(l);
  assert_true(strncmp(address, "unix:/", 6) == 0);
  char path[256];
  snprintf(path, sizeof path, "%s", address + 5);
  client_job_t job;
  client_start(&job, l, KEY);
  int rc = accept_and_serve(l);
  client_join(&job);
  mp_listener_free(l);
  assert_mp_ok(rc);
  assert_mp_ok(job.echo_rc);
  assert_int_equal(access(path, F_OK), -1);
}

static void test_bad_addresses(void **state) {
  (void)state;
  const char *bad[] = {"",
                       "foo",
                       "unix:",
                       "unix:@",
                       "tcp:127.0.0.1",
                       "tcp:127.0.0.1:",
                       "tcp:127.0.0.1:99999",
                       "tcp:127.0.0.1:12ab",
                       "udp:1.2.3.4:5"};
  char long_path[200];
  memset(long_path, 'x', sizeof long_path - 1);
  memcpy(long_path, "unix:/", 6);
  long_path[sizeof long_path - 1] = 0;
  mp_conn_t *c = (mp_conn_t *)1;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    assert_null(mp_listener_new(bad[i], NULL, 0));
    assert_int_equal(errno, EINVAL);
    assert_mp(MP_EINVAL, mp_client(bad[i], NULL, 0, &c));
    assert_null(c);
  }
  errno = 0;
  assert_null(mp_listener_new(long_path, NULL, 0));
  assert_int_equal(errno, EINVAL);
  assert_mp(MP_EINVAL, mp_client(NULL, NULL, 0, &c));

  /* Nobody there. */
  assert_mp(-ENOENT, mp_client("unix:/nonexistent/mproc.sock", NULL, 0, &c));
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", NULL, 0);
  assert_non_null(l);
  char address[128];
  snprintf(address, sizeof address, "%s", mp_listener_address(l));
  mp_listener_free(l); /* the port is free again */
  assert_mp(-ECONNREFUSED, mp_client(address, KEY, strlen(KEY), &c));

  /* The address is in use. */
  l = mp_listener_new(unix_address(), NULL, 0);
  assert_non_null(l);
  errno = 0;
  assert_null(mp_listener_new(mp_listener_address(l), NULL, 0));
  assert_int_equal(errno, EADDRINUSE);
  mp_listener_free(l);
}

/* ---- the listener's own life ----------------------------------------------
 */

static void test_accept_timeout_and_close(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new(unix_address(), KEY, strlen(KEY));
  assert_non_null(l);
  mp_conn_t *c = (mp_conn_t *)1;
  assert_mp(MP_ETIMEDOUT, mp_listener_accept(l, 0, &c));
  assert_null(c);
  assert_mp(MP_ETIMEDOUT, mp_listener_accept(l, 0.05, &c));

  /* The listening fd works with mp_wait: readable when a peer waits. */
  mp_waitable_t w = mp_waitable_fd(mp_listener_fileno(l));
  assert_int_equal(mp_wait(&w, 1, 0, NULL), 0);
  client_job_t job;
  client_start(&job, l, KEY);
  assert_int_equal(mp_wait(&w, 1, PEER_TIMEOUT, NULL), 1);
  int rc = accept_and_serve(l);
  client_join(&job);
  assert_mp_ok(rc);
  assert_mp_ok(job.echo_rc);

  assert_mp_ok(mp_listener_close(l));
  assert_mp_ok(mp_listener_close(l));
  assert_mp(MP_ECLOSED, mp_listener_accept(l, 0, &c));
  assert_mp(MP_ECLOSED, mp_listener_fileno(l));
  mp_listener_free(l);
}

static void test_socket_file_left_alone_when_not_ours(void **state) {
  (void)state;
  const char *address = unix_address();
  /* A child's copy (fork) does not remove the parent's socket file. */
  mp_listener_t *l = mp_listener_new(address, NULL, 0);
  assert_non_null(l);
  pid_t pid = fork();
  if (pid == 0) {
    mp_listener_free(l);
    _exit(0);
  }
  int status;
  waitpid(pid, &status, 0);
  assert_int_equal(access(sock_path, F_OK), 0);
  /* A file put at the path by someone else stays too. */
  unlink(sock_path);
  FILE *f = fopen(sock_path, "w");
  assert_non_null(f);
  fclose(f);
  mp_listener_free(l);
  assert_int_equal(access(sock_path, F_OK), 0);
  unlink(sock_path);
}

/* ---- authentication between C peers ---------------------------------------
 */

static void test_wrong_key_fails_on_both_sides(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new(unix_address(), KEY, strlen(KEY));
  assert_non_null(l);
  client_job_t job;
  client_start(&job, l, "not the key");
  int rc = accept_refused(l);
  client_join(&job);
  assert_mp(MP_EAUTH, rc);
  assert_mp(MP_EAUTH, job.connect_rc);

  /* The listener goes on serving the next one. */
  client_start(&job, l, KEY);
  rc = accept_and_serve(l);
  client_join(&job);
  mp_listener_free(l);
  assert_mp_ok(rc);
  assert_mp_ok(job.echo_rc);
}

static void test_empty_key_is_a_key(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new(unix_address(), "", 0);
  assert_non_null(l);
  client_job_t job;
  client_start(&job, l, "");
  int rc = accept_and_serve(l);
  client_join(&job);
  assert_mp_ok(rc);
  assert_mp_ok(job.echo_rc);
  /* A client without a key cannot talk to it. */
  mp_conn_t *raw, *c;
  assert_mp_ok(mp_client(mp_listener_address(l), NULL, 0, &raw));
  assert_mp_ok(mp_conn_send_bytes(raw, "hello", 5));
  assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
  mp_conn_free(raw);
  mp_listener_free(l);
}

static void test_client_times_out_on_a_silent_listener(void **state) {
  (void)state;
  /* A listener nobody accepts on: the client waits for a challenge. */
  mp_listener_t *l = mp_listener_new(unix_address(), NULL, 0);
  assert_non_null(l);
  mp_client_opts_t opts = {.timeout = 0.1};
  mp_conn_t *c = (mp_conn_t *)1;
  assert_mp(MP_ETIMEDOUT, mp_client_with_opts(mp_listener_address(l), KEY,
                                              strlen(KEY), &opts, &c));
  assert_null(c);
  mp_listener_free(l);
}

/* ---- bad clients ------------------------------------------------------------
 */

/* A raw peer: connected without authentication, free to misbehave. */
static mp_conn_t *raw_peer(const mp_listener_t *l) {
  mp_conn_t *c;
  assert_mp_ok(mp_client(mp_listener_address(l), NULL, 0, &c));
  return c;
}

static mp_listener_t *hardened_listener(double handshake_timeout,
                                        size_t max_message) {
  mp_listener_opts_t opts = {.handshake_timeout = handshake_timeout,
                             .max_message = max_message};
  mp_listener_t *l =
      mp_listener_new_with_opts(unix_address(), KEY, strlen(KEY), &opts);
  assert_non_null(l);
  return l;
}

/* Everything a peer received until the end: only the challenge and
 * "#FAILURE#" may come to an unauthenticated peer. */
static void expect_only_challenge_then_failure(mp_conn_t *raw) {
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv_bytes(raw, &buf, &len));
  assert_true(len == 11 + 8 + 40);
  assert_memory_equal(buf, "#CHALLENGE#{sha256}", 19);
  mp_free(buf);
  int rc = mp_conn_recv_bytes(raw, &buf, &len);
  if (rc == 0) {
    assert_int_equal(len, 9);
    assert_memory_equal(buf, "#FAILURE#", 9);
    mp_free(buf);
    rc = mp_conn_recv_bytes(raw, &buf, &len);
  }
  assert_mp(MP_ECLOSED, rc);
}

static void test_silent_client_times_out_listener_goes_on(void **state) {
  (void)state;
  mp_listener_t *l = hardened_listener(0.1, 0);
  mp_conn_t *silent = raw_peer(l), *c;
  assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
  assert_null(c);
  client_job_t job;
  client_start(&job, l, KEY);
  int rc = accept_and_serve(l);
  client_join(&job);
  mp_conn_free(silent);
  mp_listener_free(l);
  assert_mp_ok(rc);
  assert_mp_ok(job.echo_rc);
}

static void test_oversized_frame_refused_from_its_header(void **state) {
  (void)state;
  /* No handshake timeout: were the listener to read the announced 100000
   * bytes it would wait forever, since they never come. */
  mp_listener_t *l = hardened_listener(MP_FOREVER, 0);
  mp_conn_t *raw = raw_peer(l), *c;
  int fd = mp_conn_fileno(raw);
  assert_int_equal(write(fd, "\0\x01\x86\xa0", 4), 4); /* 100000 */
  assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv_bytes(raw, &buf, &len)); /* the challenge */
  mp_free(buf);
  assert_mp(MP_ECLOSED, mp_conn_recv_bytes(raw, &buf, &len));
  mp_conn_free(raw);

  /* The 8-byte form of the header is refused the same way. */
  raw = raw_peer(l);
  assert_int_equal(
      write(mp_conn_fileno(raw), "\xff\xff\xff\xff\0\0\0\x01\0\0\0\0", 12), 12);
  assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
  mp_conn_free(raw);
  mp_listener_free(l);
}

static void test_garbage_and_wrong_answers(void **state) {
  (void)state;
  mp_listener_t *l = hardened_listener(PEER_TIMEOUT, 0);
  mp_conn_t *raw, *c;
  /* Not the framing at all: "GET " read as a length is far over 256. */
  raw = raw_peer(l);
  const char *http = "GET / HTTP/1.0\r\n\r\n";
  assert_int_equal(write(mp_conn_fileno(raw), http, strlen(http)),
                   (ssize_t)strlen(http));
  assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
  mp_conn_free(raw);

  /* Well framed, wrong answers: too short, unknown digest, right length
   * but wrong MAC (legacy MD5 form). */
  const char *answers[] = {"x", "{sha1}0123456789012345678901234567890123",
                           "0123456789abcdef", "{sha256}"};
  for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
    raw = raw_peer(l);
    assert_mp_ok(mp_conn_send_bytes(raw, answers[i], strlen(answers[i])));
    assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
    expect_only_challenge_then_failure(raw);
    mp_conn_free(raw);
  }

  /* A peer that hangs up at once. */
  raw = raw_peer(l);
  mp_conn_close(raw);
  assert_mp(MP_EAUTH, mp_listener_accept(l, PEER_TIMEOUT, &c));
  mp_conn_free(raw);
  mp_listener_free(l);
}

static void test_client_refuses_a_bad_listener(void **state) {
  (void)state;
  /* A listener without a key that sends its own bytes first. */
  mp_listener_t *l = mp_listener_new(unix_address(), NULL, 0);
  assert_non_null(l);
  client_job_t job;
  client_start(&job, l, KEY);
  mp_conn_t *c;
  assert_mp_ok(mp_listener_accept(l, PEER_TIMEOUT, &c));
  assert_mp_ok(mp_conn_send_bytes(c, "#CHALLENGE#short", 16));
  client_join(&job);
  assert_mp(MP_EAUTH, job.connect_rc);
  mp_conn_free(c);
  mp_listener_free(l);
}

static void test_max_message_on_accepted_connections(void **state) {
  (void)state;
  mp_listener_opts_t opts = {.max_message = 1000};
  mp_listener_t *l = mp_listener_new_with_opts(unix_address(), NULL, 0, &opts);
  assert_non_null(l);
  mp_conn_t *client = raw_peer(l), *server;
  assert_mp_ok(mp_listener_accept(l, PEER_TIMEOUT, &server));
  uint8_t *big = pypeer_pattern(1001);
  assert_mp_ok(mp_conn_send_bytes(client, big, 1000));
  assert_mp_ok(mp_conn_send_bytes(client, big, 1001));
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv_bytes(server, &buf, &len));
  mp_free(buf);
  assert_mp(-EMSGSIZE, mp_conn_recv_bytes(server, &buf, &len));
  free(big);
  mp_conn_free(client);
  mp_conn_free(server);
  mp_listener_free(l);
}

/* ---- Python on the other side ---------------------------------------------
 * For one Python version: both directions (C listener with Python clients,
 * Python listener with C clients) over a Unix path, the abstract namespace
 * and TCP/IPv4 (Python's Listener and Client speak no IPv6), each with a
 * wrong key (refused on both sides) and the right one (messages from 0 bytes
 * to 1 MiB echoed), then once without a key. Each case prints a line of the
 * interop matrix. */

typedef struct family {
  const char *name;
  const char *address; /* NULL: a fresh Unix path */
} family_t;

static char abstract_name[64];

static family_t families[] = {{"unix-path", NULL},
                              {"unix-abstract", abstract_name},
                              {"tcp-ipv4", "tcp:127.0.0.1:0"}};

static const char *family_address(const family_t *f) {
  if (f == &families[1])
    snprintf(abstract_name, sizeof abstract_name, "unix:@mproc-py-%d",
             (int)getpid());
  return f->address ? f->address : unix_address();
}

static char **py_argv(const char *exe, const char *mode, const char *address,
                      const char *a, const char *b) {
  static char *argv[16];
  static char sizes[N_ECHO][24];
  int k = 0;
  argv[k++] = (char *)exe;
  argv[k++] = PYPEER_SCRIPT("listener_peer.py");
  argv[k++] = (char *)mode;
  argv[k++] = (char *)address;
  argv[k++] = (char *)a;
  argv[k++] = (char *)b;
  if (strcmp(mode, "clients") == 0) {
    for (size_t i = 0; i < N_ECHO; i++) {
      snprintf(sizes[i], sizeof sizes[i], "%zu", echo_sizes[i]);
      argv[k++] = sizes[i];
    }
  }
  argv[k] = NULL;
  return argv;
}

/* C listens; Python connects with a bad key, then the good one. */
static void c_listener_python_client(const char *exe, const char *version,
                                     const family_t *f, const char *key) {
  mp_listener_t *l =
      mp_listener_new(family_address(f), key, key ? strlen(key) : 0);
  assert_non_null(l);
  pypeer_t peer;
  assert_mp_ok(
      pypeer_start(&peer,
                   py_argv(exe, "clients", mp_listener_address(l),
                           key ? KEY_HEX : "-", key ? BAD_HEX : "skip"),
                   NULL, 0, true));
  int bad_rc = key ? accept_refused(l) : MP_EAUTH;
  int good_rc = accept_and_serve(l);
  char line1[64] = "", line2[64] = "";
  pypeer_read_line(&peer, line1, sizeof line1, PEER_TIMEOUT);
  if (key)
    pypeer_read_line(&peer, line2, sizeof line2, PEER_TIMEOUT);
  int status = pypeer_finish(&peer, PEER_TIMEOUT);
  mp_listener_free(l);
  print_message("interop python%s  C listener <- Python client  %-13s %s: "
                "%s\n",
                version, f->name, key ? "keys" : "no key",
                good_rc == 0 && pypeer_exited_ok(status) ? "ok" : "FAILED");
  assert_mp(MP_EAUTH, bad_rc);
  assert_mp_ok(good_rc);
  assert_string_equal(key ? line2 : line1, "OK");
  if (key)
    assert_string_equal(line1, "AUTHFAIL");
  assert_true(pypeer_exited_ok(status));
}

/* Python listens; C connects with a bad key, then the good one. */
static void python_listener_c_client(const char *exe, const char *version,
                                     const family_t *f, const char *key) {
  pypeer_t peer;
  char line[256] = "", served[64] = "", refused[64] = "";
  assert_mp_ok(pypeer_start(&peer,
                            py_argv(exe, "serve", family_address(f),
                                    key ? KEY_HEX : "-", key ? "2" : "1"),
                            NULL, 0, true));
  int rc = pypeer_read_line(&peer, line, sizeof line, PEER_TIMEOUT);
  int bad_rc = MP_EAUTH, good_rc = rc, echo_rc = rc;
  if (rc == 0 && strncmp(line, "ADDR ", 5) == 0) {
    mp_conn_t *c;
    const char *address = line + 5;
    if (key) {
      bad_rc = mp_client(address, "wrong key", 9, &c);
      if (bad_rc == 0)
        mp_conn_free(c); /* accepted by mistake: let the server go on */
      pypeer_read_line(&peer, refused, sizeof refused, PEER_TIMEOUT);
    }
    good_rc = echo_rc = mp_client(address, key, key ? strlen(key) : 0, &c);
    if (good_rc == 0) {
      echo_rc = echo_check(c);
      mp_conn_free(c);
    }
    pypeer_read_line(&peer, served, sizeof served, PEER_TIMEOUT);
  }
  int status = pypeer_finish(&peer, PEER_TIMEOUT);
  if (!f->address)
    unlink(sock_path); /* Python removes it; this is for a failed run */
  print_message("interop python%s  Python listener <- C client  %-13s %s: "
                "%s\n",
                version, f->name, key ? "keys" : "no key",
                echo_rc == 0 && pypeer_exited_ok(status) ? "ok" : "FAILED");
  assert_mp_ok(rc);
  assert_mp(MP_EAUTH, bad_rc);
  if (key)
    assert_string_equal(refused, "AUTHFAIL");
  assert_mp_ok(good_rc);
  assert_mp_ok(echo_rc);
  char want[32];
  snprintf(want, sizeof want, "SERVED %zu", N_ECHO);
  assert_string_equal(served, want);
  assert_true(pypeer_exited_ok(status));
}

static void python_matrix(const char *version) {
  char exe[512];
  if (!pypeer_find_for_test(version, exe, sizeof exe))
    skip();
  for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
    c_listener_python_client(exe, version, &families[i], KEY);
    python_listener_c_client(exe, version, &families[i], KEY);
  }
  c_listener_python_client(exe, version, &families[2], NULL);
  python_listener_c_client(exe, version, &families[2], NULL);
}

static void test_python_3_11(void **state) {
  (void)state;
  python_matrix("3.11");
}

static void test_python_3_12(void **state) {
  (void)state;
  python_matrix("3.12");
}

static void test_python_3_13(void **state) {
  (void)state;
  python_matrix("3.13");
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_unix_path_socket),
      mpt_test(test_abstract_socket),
      mpt_test(test_tcp_ipv4_and_ipv6),
      mpt_test(test_port_path_last_accepted),
      mpt_test(test_default_address),
      mpt_test(test_bad_addresses),
      mpt_test(test_accept_timeout_and_close),
      mpt_test(test_socket_file_left_alone_when_not_ours),
      mpt_test(test_wrong_key_fails_on_both_sides),
      mpt_test(test_empty_key_is_a_key),
      mpt_test(test_client_times_out_on_a_silent_listener),
      mpt_test(test_silent_client_times_out_listener_goes_on),
      mpt_test(test_oversized_frame_refused_from_its_header),
      mpt_test(test_garbage_and_wrong_answers),
      mpt_test(test_client_refuses_a_bad_listener),
      mpt_test(test_max_message_on_accepted_connections),
      mpt_test(test_python_3_11),
      mpt_test(test_python_3_12),
      mpt_test(test_python_3_13),
  };
  return MPT_RUN(argc, argv, tests);
}
