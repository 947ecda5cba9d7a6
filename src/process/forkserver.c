/* The forkserver start method.
 *
 * Each process that uses the method starts its own server on first use: a
 * spawned copy of the program (clean: one thread, nothing inherited but the
 * arena) that forks a child per request. The two talk over a SOCK_SEQPACKET
 * socketpair that no other process holds (forked children close their copy),
 * and the server makes the client prove it knows the authkey (HMAC-SHA256 of
 * a random challenge) before it serves anything, as Python 3.14 does.
 *
 * A request is one message: the start data (a memfd) and the fds the child
 * needs, passed with SCM_RIGHTS. The reply gives the child's pid, a pidfd
 * for it (signals can never reach a reused pid; left out where the system
 * has no pidfds, and the client signals by pid, as Python does) and the
 * read end of a status pipe: the server, which is the child's real parent,
 * reaps it (on SIGCHLD, read from a signalfd, with waitpid: no pidfd
 * needed) and writes its exit code there, so the client's join, exitcode
 * and sentinel work as under fork. Every request gets a reply. The server exits
 * when its client's end of the socket closes: when the client exits or dies. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testing.h"
#include "core/crypto.h"
#include "process/start.h"

#define CHALLENGE_LEN 32
#define MAX_FDS       250 /* SCM_MAX_FD is 253 */

/* ---- SCM_RIGHTS messages ------------------------------------------------- */

static int send_msg(int sock, const void *buf, size_t len, const int *fds,
                    int nfds) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  }
  ssize_t n;
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

/* Receives one message; *nfds in: capacity, out: count. Returns the bytes
 * received (0 at EOF) or -errno. */
static ssize_t recv_msg(int sock, void *buf, size_t len, int *fds, int *nfds) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control,
                       .msg_controllen = sizeof control};
  ssize_t n;
  do
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  int got = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n >= 0 && c;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    int *in = (int *)CMSG_DATA(c);
    for (int i = 0; i < count; i++) {
      if (got < *nfds)
        fds[got++] = mp__fd_high(in[i]);
      else
        close(in[i]);
    }
  }
  *nfds = got;
  if (n < 0)
    return -errno;
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (int i = 0; i < got; i++)
      close(fds[i]);
    *nfds = 0;
    return MP_EINVAL;
  }
  return n;
}

/* ---- the client side -------------------------------------------------------
 */

static struct {
  int sock; /* guarded by the family lock (every start holds it) */
  pid_t pid;
  int pidfd;
} server = {-1, 0, -1};

pid_t mp__forkserver_pid(void) {
  return server.pid;
}

static void server_forget(void) {
  if (server.sock >= 0)
    close(server.sock);
  if (server.pid > 0) {
    /* The server ends when its socket closes; reap it. */
    while (waitpid(server.pid, NULL, 0) < 0 && errno == EINTR)
      ;
  }
  if (server.pidfd >= 0)
    close(server.pidfd);
  server.sock = server.pidfd = -1;
  server.pid = 0;
}

/* In a forked child: the parent's server is not ours. */
static void forget_in_child(void) {
  if (server.sock >= 0)
    close(server.sock);
  if (server.pidfd >= 0)
    close(server.pidfd);
  server.sock = server.pidfd = -1;
  server.pid = 0;
}

static mp__atfork_t forkserver_atfork = {.child = forget_in_child};

static int answer_challenge(int sock, const mp_process_t *self) {
  unsigned char challenge[CHALLENGE_LEN], mac[64];
  int nfds = 0;
  ssize_t n = recv_msg(sock, challenge, sizeof challenge, NULL, &nfds);
  if (n != CHALLENGE_LEN)
    return n < 0 ? (int)n : n == 0 ? -EPIPE : MP_EAUTH;
  int len = mp__hmac("sha256", self->authkey, sizeof self->authkey, challenge,
                     sizeof challenge, mac, sizeof mac);
  if (len < 0)
    return len;
  int rc = send_msg(sock, mac, (size_t)len, NULL, 0);
  if (rc < 0)
    return rc;
  char verdict = 0;
  n = recv_msg(sock, &verdict, 1, NULL, &nfds);
  return n == 1 && verdict == 'y' ? 0 : MP_EAUTH;
}

static int server_start(const mp_process_t *self) {
  int pair[2];
  if (mp__fd_pair_high(
          socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), pair) <
      0)
    return -errno;
  int *fds, n;
  int start_fd = mp__start_data_write(NULL, self, pair[1], &fds, &n);
  if (start_fd < 0) {
    close(pair[0]);
    close(pair[1]);
    return start_fd;
  }
  pid_t pid;
  int rc = mp__exec_self('s', start_fd, fds, n, &pid);
  free(fds);
  close(start_fd);
  close(pair[1]);
  if (rc < 0) {
    close(pair[0]);
    return rc;
  }
  server.sock = pair[0];
  server.pid = pid;
  server.pidfd = mp__pidfd_open(pid);
  mp__atfork_register(&forkserver_atfork);
  rc = answer_challenge(server.sock, self);
  if (rc == -EPIPE) {
    /* The server ended before it challenged us: say why, not "wrong key"
     * (127: its exec failed, e.g. an emulator without binfmt_misc). */
    int status = 0;
    close(server.sock);
    server.sock = -1;
    while (waitpid(server.pid, &status, 0) < 0 && errno == EINTR)
      ;
    server.pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    rc = code == 127                    ? -ENOEXEC
         : code == MP__EXIT_NO_RANDOM   ? -EIO
         : code == MP__EXIT_NO_MEMORY   ? -ENOMEM
         : code == MP__EXIT_AUTH_FAILED ? MP_EAUTH
                                        : -ECHILD;
  }
  if (rc < 0)
    server_forget();
  return rc;
}

static int request(mp_process_t *p, const mp_process_t *self) {
  int *fds, n;
  int start_fd = mp__start_data_write(p, self, -1, &fds, &n);
  if (start_fd < 0)
    return start_fd;
  if (n + 1 > MAX_FDS) {
    free(fds);
    close(start_fd);
    return -EMFILE;
  }
  /* The start fd first, then the fds in the order the start data lists
   * them; the child puts each back at its number. */
  int send_fds[MAX_FDS];
  send_fds[0] = start_fd;
  memcpy(send_fds + 1, fds, (size_t)n * sizeof(int));
  free(fds);
  char op = 'f';
  int rc = send_msg(server.sock, &op, 1, send_fds, n + 1);
  close(start_fd);
  if (rc < 0)
    return rc;
  int32_t reply[2]; /* pid and the fd count, or 0 and an error code */
  int got[2], nfds = 2;
  ssize_t len = recv_msg(server.sock, reply, sizeof reply, got, &nfds);
  if (len != sizeof reply || (reply[0] > 0 && nfds != reply[1]) ||
      (reply[0] > 0 && nfds < 1)) {
    for (int i = 0; i < nfds; i++)
      close(got[i]);
    return len < 0 ? (int)len : -EPIPE;
  }
  if (reply[0] <= 0)
    return reply[1] < 0 ? reply[1] : -EAGAIN;
  p->pid = reply[0];
  /* The status pipe last; a pidfd before it where the server has one. */
  p->pidfd = nfds == 2 ? got[0] : -1;
  p->sentinel = got[nfds - 1];
  p->via_server = true;
  return 0;
}

int mp__start_forkserver(mp_process_t *p, const mp_process_t *self) {
  if (server.sock < 0) {
    int rc = server_start(self);
    if (rc < 0)
      return rc;
  }
  int rc = request(p, self);
  if (rc == -EPIPE || rc == -ECONNRESET) {
    /* The server died (killed?): start a new one, once. */
    server_forget();
    if ((rc = server_start(self)) == 0)
      rc = request(p, self);
  }
  return rc;
}

/* ---- the server side
 * --------------------------------------------------------- */

typedef struct served {
  pid_t pid;
  int status_fd; /* write end */
} served_t;

static served_t *served;
static size_t served_count, served_cap;
static int child_signals = -1;      /* signalfd for SIGCHLD */
static void (*client_sigpipe)(int); /* as the client had it (inherited) */
static pid_t server_pid;

static void challenge_client(int sock, const unsigned char *key,
                             size_t key_len) {
  unsigned char challenge[CHALLENGE_LEN], want[64], got[64];
  if (mp__random(challenge, sizeof challenge) < 0)
    _exit(MP__EXIT_NO_RANDOM);
  int len = mp__hmac("sha256", key, key_len, challenge, sizeof challenge, want,
                     sizeof want);
  int nfds = 0;
  if (len < 0 || send_msg(sock, challenge, sizeof challenge, NULL, 0) < 0 ||
      recv_msg(sock, got, sizeof got, NULL, &nfds) != len ||
      mp__memcmp_const(want, got, (size_t)len) != 0) {
    send_msg(sock, "n", 1, NULL, 0);
    _exit(MP__EXIT_AUTH_FAILED); /* a client that cannot prove the key gets
                                    nothing */
  }
  send_msg(sock, "y", 1, NULL, 0);
}

/* This server's pid: the parent of every child it forks. */
static pid_t server_pid;

/* In the forked child: puts every fd at the number the start data gives
 * (received[0] is the start data, received[1..] the fds it lists, in its
 * order), then closes everything else. */
static _Noreturn void run_child(int sock, int *received, int count,
                                mp__child_runner_cb run) {
  close(sock);
  close(child_signals);
  signal(SIGPIPE, client_sigpipe);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_UNBLOCK, &chld, NULL);
  for (size_t i = 0; i < served_count; i++)
    close(served[i].status_fd);
  if (mp__start_data_read(received[0], false) < 0)
    _exit(MP__EXIT_START_FAILED);
  /* First move them all above every target number, so that no dup2 below
   * overwrites one not yet placed. */
  int above = 3;
  for (int i = 1; i < count; i++)
    if (mp__start_data_fd(i - 1) >= above)
      above = mp__start_data_fd(i - 1) + 1;
  for (int i = 1; i < count; i++) {
    int high = fcntl(received[i], F_DUPFD_CLOEXEC, above);
    if (high < 0)
      _exit(MP__EXIT_START_FAILED);
    close(received[i]);
    received[i] = high;
  }
  for (int i = 1; i < count; i++) {
    int target = mp__start_data_fd(i - 1);
    if (target >= 0 && dup2(received[i], target) < 0)
      _exit(MP__EXIT_START_FAILED);
    close(received[i]);
  }
  mp__start_data_close_others();
  /* SIGINT was blocked in the server (see mp__forkserver_main): one sent
   * to this child since the fork is pending, and is delivered now. */
  sigset_t sigint;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  sigprocmask(SIG_UNBLOCK, &sigint, NULL);
  /* The server's pid as known before the fork: getppid() here would give
   * the reaper if the server died meanwhile, and the child would miss its
   * parent's death (end_with_parent, daemons). */
  run(server_pid);
}

static void serve_request(int sock, int *received, int count,
                          mp__child_runner_cb run) {
  int32_t reply[2] = {0, 0};
  int status[2] = {-1, -1};
  if (mp__fd_pair_high(pipe2(status, O_CLOEXEC), status) < 0 ||
      fcntl(status[0], F_SETFL, O_NONBLOCK) < 0) {
    reply[1] = -errno;
    goto answer;
  }
  pid_t pid = fork();
  if (pid == 0)
    run_child(sock, received, count, run);
  if (pid < 0) {
    reply[1] = -errno;
    goto answer;
  }
  if (served_count == served_cap) {
    served_cap = served_cap ? served_cap * 2 : 16;
    served = realloc(served, served_cap * sizeof *served);
    if (!served)
      _exit(MP__EXIT_NO_MEMORY);
  }
  served[served_count++] = (served_t){pid, status[1]};
  status[1] = -1;
  /* The pidfd for the client, where the system has them; the server itself
   * reaps by pid. */
  int pidfd = mp__pidfd_open(pid);
  int out[2] = {pidfd, status[0]}, nout = pidfd >= 0 ? 2 : 1;
  reply[0] = pid;
  reply[1] = nout;
  int rc = send_msg(sock, reply, sizeof reply, out + 2 - nout, nout);
  if (pidfd >= 0)
    close(pidfd);
  if (rc < 0) {
    /* The client cannot learn of the child: it must not run unseen. Its
     * end is reported (to nobody) and it is reaped as any other. */
    kill(pid, SIGKILL);
    reply[0] = 0;
    reply[1] = rc;
    goto answer;
  }
  close(status[0]);
  for (int i = 0; i < count; i++)
    close(received[i]);
  return;
answer:
  send_msg(sock, reply, sizeof reply, NULL, 0);
  for (int i = 0; i < 2; i++)
    if (status[i] >= 0)
      close(status[i]);
  for (int i = 0; i < count; i++)
    close(received[i]);
}

/* Served children ended: reap each and tell its client its exit code. */
static void report_exits(void) {
  struct signalfd_siginfo si;
  while (read(child_signals, &si, sizeof si) == (ssize_t)sizeof si)
    ; /* drained: the reaping below finds every ended child */
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR)
      continue;
    if (pid <= 0)
      return;
    int32_t code = WIFEXITED(status)     ? WEXITSTATUS(status)
                   : WIFSIGNALED(status) ? -WTERMSIG(status)
                                         : 255;
    for (size_t i = 0; i < served_count; i++) {
      if (served[i].pid != pid)
        continue;
      if (write(served[i].status_fd, &code, sizeof code) < 0) {
        /* The client closed its end: nobody to tell. */
      }
      close(served[i].status_fd);
      served[i] = served[--served_count];
      break;
    }
  }
}

_Noreturn void mp__forkserver_main(int sock, const unsigned char *key,
                                   size_t key_len, mp__child_runner_cb run) {
  /* As Python's forkserver: Ctrl-C is for the client, not the server.
   * Blocked rather than ignored: an ignored signal sent to a child in the
   * instant between its fork and its reset would be lost (discarded at
   * once), a blocked one waits in the child until it unblocks it
   * (run_child). In the server it stays pending and is never delivered. */
  sigset_t sigint;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  sigprocmask(SIG_BLOCK, &sigint, NULL);
  server_pid = getpid();
  /* Children are reaped here: SIGCHLD must not be ignored (an ignored one
   * is inherited through exec and would reap them behind our back). */
  signal(SIGCHLD, SIG_DFL);
  /* A client that closed a status pipe must not kill the server when the
   * exit code is written to it; children get the client's disposition. */
  client_sigpipe = signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  child_signals = mp__fd_high(signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
  if (child_signals < 0)
    _exit(MP__EXIT_POLL_FAILED);
  challenge_client(sock, key, key_len);
  for (;;) {
    struct pollfd pfds[2] = {{.fd = sock, .events = POLLIN},
                             {.fd = child_signals, .events = POLLIN}};
    int ready = poll(pfds, 2, -1);
    if (ready < 0 && errno != EINTR)
      _exit(MP__EXIT_POLL_FAILED);
    if (ready > 0 && pfds[1].revents)
      report_exits();
    if (ready <= 0 || !pfds[0].revents)
      continue;
    char op;
    int received[MAX_FDS], count = MAX_FDS;
    ssize_t len = recv_msg(sock, &op, 1, received, &count);
    if (len <= 0)
      _exit(0); /* the client is gone */
    if (op == 'f' && count >= 1)
      serve_request(sock, received, count, run);
    else
      for (int i = 0; i < count; i++)
        close(received[i]);
  }
}
