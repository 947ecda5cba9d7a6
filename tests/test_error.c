/* Error codes: names and messages come from one list. */
#include <string.h>

#include "support.h"

static void test_names_and_messages(void **state) {
  (void)state;
  assert_string_equal(mp_errname(MP_ESTATE), "MP_ESTATE");
  assert_string_equal(mp_errname(MP_ETIMEDOUT), "MP_ETIMEDOUT");
  assert_string_equal(mp_errname(MP_EOWNERDEAD), "MP_EOWNERDEAD");
  assert_string_equal(mp_errname(MP_ETASK), "MP_ETASK");
  assert_string_equal(mp_errname(MP_ENOMAIN), "MP_ENOMAIN");
  assert_string_equal(mp_strerror(MP_ETIMEDOUT), "timed out");
  assert_string_equal(mp_errname(0), "OK");
}

static void test_system_codes(void **state) {
  (void)state;
  assert_string_equal(mp_errname(-ENOENT), "ENOENT");
  assert_string_equal(mp_strerror(-ENOENT), "No such file or directory");
  assert_int_equal(MP_EINVAL, -EINVAL);
  assert_string_equal(mp_errname(MP_EINVAL), "EINVAL");
  assert_string_equal(mp_errname(12345), "UNKNOWN");
  assert_string_equal(mp_strerror(-99999), "unknown error");
  /* Names from the library's own table (no strerrorname_np, for glibc
   * before 2.32 and musl), aliases under their first name. */
  assert_string_equal(mp_errname(-EAGAIN), "EAGAIN");
  assert_string_equal(mp_errname(-EWOULDBLOCK), "EAGAIN");
  assert_string_equal(mp_errname(-EOPNOTSUPP), "EOPNOTSUPP");
  assert_string_equal(mp_errname(-ENOTRECOVERABLE), "ENOTRECOVERABLE");
  assert_string_equal(mp_errname(5000), "UNKNOWN");
  assert_string_equal(mp_strerror(-5000), "unknown error");
}

/* Every code of the map is its own: two areas adding codes at once must
 * not pick the same number. */
static void test_codes_are_distinct(void **state) {
  (void)state;
#define MPT_CODE_(name, value, message) value,
  const int codes[] = {MP_ERROR_MAP(MPT_CODE_)};
#undef MPT_CODE_
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (codes[i] == codes[j])
        fail_msg("%s and %s are both %d", mp_errname(codes[i]),
                 mp_errname(codes[j]), codes[i]);
}

static void test_codes_are_distinct_from_errno(void **state) {
  (void)state;
  const int codes[] = {MP_ESTATE,    MP_ETIMEDOUT,  MP_EEMPTY,  MP_EFULL,
                       MP_EOVERFLOW, MP_ENOTOWNER,  MP_EBROKEN, MP_ECLOSED,
                       MP_EAUTH,     MP_EOWNERDEAD, MP_EWORKER, MP_ETASK,
                       MP_EKEY,      MP_EINDEX,     MP_ELOST,   MP_EINTR,
                       MP_ENOMAIN,   MP_ENOHMAC};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
    assert_null(strerrorname_np(-codes[i])); /* no errno value */
#endif
    assert_true(strncmp(mp_errname(codes[i]), "MP_E", 4) == 0);
  }
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_names_and_messages),
      mpt_test(test_system_codes),
      mpt_test(test_codes_are_distinct),
      mpt_test(test_codes_are_distinct_from_errno),
  };
  return MPT_RUN(argc, argv, tests);
}
