/* Named shared memory: create, attach, unlink and their errors, processes
 * that find a segment by name, a full /dev/shm, and Python's SharedMemory
 * on the other side in both directions. Every name contains "mproc" and is
 * unlinked, so `make test`'s leftover check sees none. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "sync_fixtures.h"

static void test_name(char *buf, size_t cap, const char *what) {
  snprintf(buf, cap, "mproc_test_%d_%s", (int)getpid(), what);
}

static bool shm_exists(const char *name) {
  char path[300];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  return access(path, F_OK) == 0;
}

/* Create, attach a second mapping, see the same bytes, unlink. */
static void test_create_attach_unlink(void **state) {
  (void)state;
  char name[64];
  test_name(name, sizeof name, "basic");
  mp_shm_t *a = mp_shm_open(name, true, 10000);
  assert_non_null(a);
  assert_string_equal(name, mp_shm_name(a));
  assert_int_equal(10000, mp_shm_size(a));
  unsigned char *p = mp_shm_buf(a);
  for (int i = 0; i < 10000; i++)
    assert_int_equal(0, p[i]); /* zeroed */
  memcpy(p, "shared bytes", 12);

  char slashed[70];
  snprintf(slashed, sizeof slashed, "/%s", name);
  mp_shm_t *b = mp_shm_open(slashed, false, 0); /* leading '/' is fine */
  assert_non_null(b);
  assert_string_equal(name, mp_shm_name(b));
  assert_int_equal(10000, mp_shm_size(b)); /* the segment's size */
  assert_ptr_not_equal(mp_shm_buf(a), mp_shm_buf(b));
  assert_memory_equal("shared bytes", mp_shm_buf(b), 12);
  ((char *)mp_shm_buf(b))[0] = 'S';
  assert_int_equal('S', p[0]);

  errno = 0;
  assert_null(mp_shm_open(name, true, 100)); /* FileExistsError */
  assert_int_equal(EEXIST, errno);
  assert_mp_ok(mp_shm_unlink(a));
  assert_false(shm_exists(name));
  assert_mp(-ENOENT, mp_shm_unlink(b));
  assert_null(mp_shm_open(name, false, 0)); /* FileNotFoundError */
  assert_int_equal(ENOENT, errno);
  /* Unlinked, still mapped in both. */
  assert_int_equal('S', ((char *)mp_shm_buf(b))[0]);
  assert_mp_ok(mp_shm_close(a));
  assert_mp_ok(mp_shm_close(b));
  assert_mp_ok(mp_shm_close(NULL));
}

static void test_errors(void **state) {
  (void)state;
  char name[64];
  test_name(name, sizeof name, "errors");
  errno = 0;
  assert_null(mp_shm_open(name, true, 0));
  assert_int_equal(EINVAL, errno);
  assert_false(shm_exists(name));
  static const char *const bad[] = {"", "/", "a/b", "/a/b"};
  for (size_t i = 0; i < 4; i++) {
    errno = 0;
    assert_null(mp_shm_open(bad[i], true, 10));
    assert_int_equal(EINVAL, errno);
    assert_mp(-EINVAL, mp_shm_unlink_name(bad[i]));
  }
  assert_null(mp_shm_open(NULL, false, 0));
  assert_int_equal(EINVAL, errno);
  char longname[400];
  memset(longname, 'm', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_null(mp_shm_open(longname, true, 10));
  assert_int_equal(ENAMETOOLONG, errno);
  assert_null(mp_shm_open("mproc_surely_missing_segment", false, 0));
  assert_int_equal(ENOENT, errno);
  assert_mp(-ENOENT, mp_shm_unlink_name("mproc_surely_missing_segment"));

  /* An empty segment cannot be mapped (Python: ValueError). */
  char path[80];
  snprintf(path, sizeof path, "/%s", name);
  int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  assert_true(fd >= 0);
  close(fd);
  assert_null(mp_shm_open(name, false, 0));
  assert_int_equal(EINVAL, errno);
  assert_mp_ok(mp_shm_unlink_name(name));
}

/* create with name NULL picks a free "mproc_" name; mode 0600. */
static void test_random_name(void **state) {
  (void)state;
  mp_shm_t *a = mp_shm_open(NULL, true, 4096);
  mp_shm_t *b = mp_shm_open(NULL, true, 4096);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(0, strncmp(mp_shm_name(a), "mproc_", 6));
  assert_string_not_equal(mp_shm_name(a), mp_shm_name(b));
  char path[300];
  snprintf(path, sizeof path, "/dev/shm/%s", mp_shm_name(a));
  struct stat st;
  assert_int_equal(0, stat(path, &st));
  assert_int_equal(0600, st.st_mode & 0777);
  mp_shm_t *c = mp_shm_open(mp_shm_name(a), false, 0);
  assert_non_null(c);
  assert_mp_ok(mp_shm_unlink(a));
  assert_mp_ok(mp_shm_unlink(b));
  mp_shm_close(a);
  mp_shm_close(b);
  mp_shm_close(c);
}

/* No room in /dev/shm: an error at create time, and no entry left (Python
 * would create it and die of SIGBUS at the first touch). The size asked is
 * beyond the whole file system, which tmpfs refuses at once without
 * touching any memory. */
static void test_no_space(void **state) {
  (void)state;
  struct statvfs fs;
  if (statvfs("/dev/shm", &fs) != 0 || fs.f_blocks == 0)
    skip(); /* no size limit to go beyond */
  size_t too_big = (size_t)fs.f_blocks * fs.f_frsize + (64u << 20);
  char name[64];
  test_name(name, sizeof name, "nospace");
  errno = 0;
  assert_null(mp_shm_open(name, true, too_big));
  assert_true(errno == ENOSPC || errno == EFBIG);
  assert_false(shm_exists(name));
}

/* ---- Other processes ----------------------------------------------------- */
struct child_args {
  char name[64];
  int part;
};

/* Finds the segment by name (nothing inherited) and fills its part. */
static void attach_child(void *arg) {
  struct child_args *a = arg;
  mp_shm_t *s = mp_shm_open(a->name, false, 0);
  if (!s)
    _exit(2);
  unsigned char *p = mp_shm_buf(s);
  for (int i = 0; i < 1000; i++)
    p[a->part * 1000 + i] = (unsigned char)(a->part + i);
  mp_shm_close(s);
}

static void test_processes_attach_by_name(void **state) {
  (void)state;
  struct child_args a;
  test_name(a.name, sizeof a.name, "children");
  mp_shm_t *s = mp_shm_open(a.name, true, 3000);
  assert_non_null(s);
  mp_process_t *p[3];
  for (int i = 0; i < 3; i++) {
    a.part = i;
    p[i] = start_child(attach_child, &a, sizeof a);
  }
  int codes[3];
  for (int i = 0; i < 3; i++)
    codes[i] = finish_child(p[i]);
  unsigned char *buf = mp_shm_buf(s);
  bool same = true;
  for (int part = 0; part < 3; part++)
    for (int i = 0; i < 1000; i++)
      same &= buf[part * 1000 + i] == (unsigned char)(part + i);
  assert_mp_ok(mp_shm_unlink(s));
  mp_shm_close(s);
  for (int i = 0; i < 3; i++)
    assert_int_equal(0, codes[i]);
  assert_true(same);
}

/* ---- Python on the other side -------------------------------------------- */
/* Python checks what it attached to and writes back; its resource tracker
 * is told not to unlink a segment it did not create (it would on 3.8-3.12
 * otherwise, at exit). */
static const char attach_script[] =
    "import sys\n"
    "from multiprocessing import shared_memory, resource_tracker\n"
    "shm = shared_memory.SharedMemory(name=sys.argv[1])\n"
    "resource_tracker.unregister(shm._name, 'shared_memory')\n"
    "n = int(sys.argv[2])\n"
    "ok = bytes(shm.buf[:n]) == bytes((i * 7 + 3) & 255 for i in range(n))\n"
    "print(shm.name, shm.size, 'same' if ok else 'different')\n"
    "shm.buf[:6] = b'python'\n"
    "shm.close()\n";

static const char create_script[] =
    "import sys\n"
    "from multiprocessing import shared_memory, resource_tracker\n"
    "n = int(sys.argv[2])\n"
    "shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, "
    "size=n)\n"
    "resource_tracker.unregister(shm._name, 'shared_memory')\n"
    "shm.buf[:] = bytes((i * 5 + 1) & 255 for i in range(n))\n"
    "print(shm.name)\n"
    "shm.close()\n";

static bool have_python(void) {
  char *argv[] = {"/usr/bin/env", "python3", "-c",
                  "import multiprocessing.shared_memory", NULL};
  int status = -1;
  return mpt_run_command(argv, 60, NULL, &status) == 0 && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

static char *run_python(const char *script, const char *name, size_t n) {
  char size[32];
  snprintf(size, sizeof size, "%zu", n);
  char *argv[] = {"/usr/bin/env", "python3", "-c", (char *)script,
                  (char *)name,   size,      NULL};
  char *out = NULL;
  int status = -1;
  assert_mp_ok(mpt_run_command(argv, 60, &out, &status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("python3 failed: %s", out);
  return out;
}

/* A segment mproc made, read and written by Python's SharedMemory(name=). */
static void test_python_attaches(void **state) {
  (void)state;
  if (!have_python())
    skip();
  char name[64];
  test_name(name, sizeof name, "to_python");
  enum { N = 100000 };
  mp_shm_t *s = mp_shm_open(name, true, N);
  assert_non_null(s);
  unsigned char *p = mp_shm_buf(s);
  for (int i = 0; i < N; i++)
    p[i] = (unsigned char)(i * 7 + 3);
  char *out = run_python(attach_script, mp_shm_name(s), N);
  char want[128];
  snprintf(want, sizeof want, "%s %d same", name, N);
  bool ok = mpt_line_index(out, want) >= 0;
  bool written = memcmp(p, "python", 6) == 0;
  assert_mp_ok(mp_shm_unlink(s));
  mp_shm_close(s);
  if (!ok)
    fail_msg("python printed: %s", out);
  free(out);
  assert_true(written);
}

/* A segment Python made, read by mproc and unlinked by it. */
static void test_python_creates(void **state) {
  (void)state;
  if (!have_python())
    skip();
  char name[64];
  test_name(name, sizeof name, "from_python");
  enum { N = 50000 };
  char *out = run_python(create_script, name, N);
  bool named = mpt_line_index(out, name) >= 0;
  free(out);
  mp_shm_t *s = mp_shm_open(name, false, 0);
  assert_non_null(s);
  size_t size = mp_shm_size(s);
  bool same = size == N;
  for (size_t i = 0; same && i < N; i++)
    same = ((unsigned char *)mp_shm_buf(s))[i] == (unsigned char)(i * 5 + 1);
  assert_mp_ok(mp_shm_unlink(s));
  mp_shm_close(s);
  assert_true(named);
  assert_int_equal(N, size);
  assert_true(same);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_create_attach_unlink),
      mpt_test(test_errors),
      mpt_test(test_random_name),
      mpt_test(test_no_space),
      mpt_test(test_processes_attach_by_name),
      mpt_test(test_python_attaches),
      mpt_test(test_python_creates),
  };
  return MPT_RUN(argc, argv, tests);
}
