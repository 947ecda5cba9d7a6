/* The calls of the generated NULL-handle test (gen_null_handles.py). */
#ifndef MPT_NULL_HANDLES_H
#define MPT_NULL_HANDLES_H
#include <stddef.h>

typedef struct mpt_null_call {
  const char *name;
  void (*call)(void); /* the function with a NULL handle */
} mpt_null_call_t;

extern const mpt_null_call_t mpt_null_calls[];
extern const size_t mpt_null_call_count;

#endif
