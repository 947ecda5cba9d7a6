/* seccomp_run: runs a command, and everything it starts, as an older kernel
 * or a container sandbox would run it, so that the suite can be tested on
 * the fallbacks of mproc without such a kernel (scripts/ci_portability.sh).
 *
 *   seccomp_run PROFILE COMMAND [ARG...]
 *   seccomp_run PROFILE --probe        (prints what the profile answers)
 *
 * Profiles: a kernel version makes the system calls it lacks answer ENOSYS
 * (from the first one that version lacks: one table since Linux 5.1, the
 * same numbers on every architecture), and below 5.4 waitid(P_PIDFD)
 * answers EINVAL:
 *   5.15  futex_waitv (449) and later          Ubuntu 22.04
 *   5.10  epoll_pwait2 (441) and later          Debian 11
 *   5.4   close_range (436) and later           Ubuntu 20.04
 *   5.3   as 5.4, and waitid(P_PIDFD) EINVAL
 *   4.18  pidfd_send_signal (424) and later,    RHEL 8
 *         waitid(P_PIDFD) EINVAL
 *   eperm every call from 424 on answers EPERM, as the seccomp profiles of
 *         older container runtimes do, but clone3 ENOSYS (runtimes answer
 *         that since 2021, and glibc's threads and posix_spawn need it)
 *   3.16  as 4.18, and getrandom and memfd_create ENOSYS (not supported
 *         by mproc: for checking that it fails with an error there)
 * The filter is inherited by every child and kept across exec. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp_run: add this architecture's AUDIT_ARCH"
#endif

#define NR_PIDFD_SEND_SIGNAL 424
#define NR_PIDFD_OPEN        434
#define NR_CLONE3            435
#define NR_CLOSE_RANGE       436
#define NR_EPOLL_PWAIT2      441
#define NR_FUTEX_WAITV       449
#define WAITID_P_PIDFD       3

typedef struct profile {
  const char *name;
  unsigned first_missing; /* first refused call number */
  int error;              /* what it answers */
  int pidfd_wait_einval;  /* waitid(P_PIDFD) answers EINVAL */
  int clone3_enosys;      /* clone3 answers ENOSYS whatever error is */
  int before_3_17;        /* getrandom and memfd_create answer ENOSYS too */
} profile_t;

static const profile_t profiles[] = {
    {"5.15", NR_FUTEX_WAITV, ENOSYS, 0, 0, 0},
    {"5.10", NR_EPOLL_PWAIT2, ENOSYS, 0, 0, 0},
    {"5.4", NR_CLOSE_RANGE, ENOSYS, 0, 0, 0},
    {"5.3", NR_CLOSE_RANGE, ENOSYS, 1, 0, 0},
    {"4.18", NR_PIDFD_SEND_SIGNAL, ENOSYS, 1, 0, 0},
    {"eperm", NR_PIDFD_SEND_SIGNAL, EPERM, 0, 1, 0},
    {"3.16", NR_PIDFD_SEND_SIGNAL, ENOSYS, 1, 0, 1},
};

#define RET(v)   ((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (v)))
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e)&SECCOMP_RET_DATA))
#define LOAD(field)                                                            \
  ((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,                      \
                                offsetof(struct seccomp_data, field)))
#define JUMP(...) ((struct sock_filter)BPF_JUMP(__VA_ARGS__))

static int install(const profile_t *p) {
  struct sock_filter f[16];
  unsigned n = 0;
  f[n++] = LOAD(arch);
  f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
  f[n++] = RET(SECCOMP_RET_ALLOW); /* another ABI: not ours to judge */
  f[n++] = LOAD(nr);
  if (p->pidfd_wait_einval) {
    /* nr == waitid && args[0] (low word) == P_PIDFD -> EINVAL */
    f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_waitid, 0, 4);
    f[n++] = LOAD(args[0]);
    f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, WAITID_P_PIDFD, 0, 1);
    f[n++] = RET(ERRNO(EINVAL));
    f[n++] = RET(SECCOMP_RET_ALLOW);
  }
  if (p->clone3_enosys) {
    f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_CLONE3, 0, 1);
    f[n++] = RET(ERRNO(ENOSYS));
  }
  if (p->before_3_17) {
    f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getrandom, 1, 0);
    f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1);
    f[n++] = RET(ERRNO(ENOSYS));
  }
  f[n++] = JUMP(BPF_JMP | BPF_JGE | BPF_K, p->first_missing, 0, 1);
  f[n++] = RET(ERRNO(p->error));
  f[n++] = RET(SECCOMP_RET_ALLOW);
  struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
    perror("seccomp_run: installing the filter");
    return -1;
  }
  return 0;
}

static const char *answer(long rc) {
  static char buf[32];
  if (rc >= 0)
    return "ok";
  snprintf(buf, sizeof buf, "%s",
           errno == ENOSYS   ? "ENOSYS"
           : errno == EPERM  ? "EPERM"
           : errno == EINVAL ? "EINVAL"
                             : strerror(errno));
  return buf;
}

/* What the filtered calls answer (run under the filter). */
static int probe(void) {
  long fd = syscall(NR_PIDFD_OPEN, getpid(), 0);
  printf("pidfd_open %s\n", answer(fd));
  printf("pidfd_send_signal %s\n",
         answer(syscall(NR_PIDFD_SEND_SIGNAL, fd < 0 ? 0 : fd, 0, NULL, 0)));
  pid_t child = fork();
  if (child == 0)
    _exit(0);
  long cfd = syscall(NR_PIDFD_OPEN, child, 0);
  siginfo_t info;
  long w = syscall(__NR_waitid, WAITID_P_PIDFD, cfd < 0 ? 0 : cfd, &info,
                   WEXITED, NULL);
  printf("waitid(P_PIDFD) %s\n", answer(w));
  if (w < 0)
    waitpid(child, NULL, 0);
  printf("close_range %s\n",
         answer(syscall(NR_CLOSE_RANGE, 1000000u, 1000001u, 0)));
  char byte;
  printf("getrandom %s\n", answer(syscall(__NR_getrandom, &byte, 1, 0)));
  printf("futex_waitv %s\n",
         answer(syscall(NR_FUTEX_WAITV, NULL, 0, 0, NULL, 1)));
  if (fd >= 0)
    close((int)fd);
  if (cfd >= 0)
    close((int)cfd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: seccomp_run PROFILE (COMMAND [ARG...] | --probe)\n"
                    "profiles: none");
    for (size_t i = 0; i < sizeof profiles / sizeof *profiles; i++)
      fprintf(stderr, " %s", profiles[i].name);
    fprintf(stderr, "\n");
    return 2;
  }
  const profile_t *p = NULL;
  for (size_t i = 0; i < sizeof profiles / sizeof *profiles; i++)
    if (strcmp(argv[1], profiles[i].name) == 0)
      p = &profiles[i];
  if (!p && strcmp(argv[1], "none") != 0) {
    fprintf(stderr, "seccomp_run: unknown profile %s\n", argv[1]);
    return 2;
  }
  if (p && install(p) < 0)
    return 2;
  if (strcmp(argv[2], "--probe") == 0)
    return probe();
  execvp(argv[2], argv + 2);
  perror(argv[2]);
  return 127;
}
