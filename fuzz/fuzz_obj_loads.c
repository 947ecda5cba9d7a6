/* libFuzzer target: mp_obj_loads on hostile pickles. Whatever loads must
 * also dump in every protocol, load back equal (NaNs aside) and compare
 * with itself without trouble; nothing may crash, leak or run away with
 * memory (the size limit is small here so that the fuzzer's own memory
 * limit is never what stops an input). Build and run: scripts/fuzz.sh. */
#include <math.h>
#include <stdint.h>

#include "obj/obj_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const mp_obj_limits_t limits = {.max_depth = 200, .max_size = 8 << 20};

static void check_dumps(const mp_obj_t *o) {
  static const int protocols[] = {MP_OBJ_PROTOCOL_0, 1, 2, 3, 4, 5};
  for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++) {
    void *buf;
    size_t len;
    if (mp_obj_dumps(o, protocols[i], &buf, &len) != 0)
      continue; /* e.g. an int too long for protocol 0 */
    mp_obj_t *back = NULL;
    mp_obj_limits_t deeper = {.max_depth = 400, .max_size = 1u << 30};
    if (mp_obj_loads_limits(buf, len, &deeper, &back) != 0)
      __builtin_trap(); /* what we write, we must read */
    (void)mp_obj_equal(o, back);
    mp_obj_free(back);
    mp_free(buf);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mp_obj_t *o = NULL;
  if (mp_obj_loads_limits(data, size, &limits, &o) != 0)
    return 0;
  check_dumps(o);
  (void)mp_obj_equal(o, o);
  mp_obj_free(o);
  return 0;
}
