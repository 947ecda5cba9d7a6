# The system libraries libmproc needs, found the way this C library splits
# them: glibc >= 2.34 has threads, dlopen and shm_open in libc itself; older
# glibc needs -lpthread, -ldl and -lrt; libm is separate everywhere (ceil:
# gcc at -O2 inlines it, -O0 and clang call it). Sets
#   MPROC_LINK_LIBS        what the targets link (CMake names)
#   MPROC_PC_PRIVATE_LIBS  the same as linker flags, for mproc.pc's
#                          Libs.private (what `pkg-config --static` adds)
# libcrypto (HMAC) is loaded with dlopen on first use: not a link dependency.
include(CheckLibraryExists)
include(CheckSymbolExists)

find_package(Threads REQUIRED)
set(MPROC_LINK_LIBS Threads::Threads)
set(MPROC_PC_PRIVATE_LIBS "")
if(CMAKE_THREAD_LIBS_INIT)
  list(APPEND MPROC_PC_PRIVATE_LIBS ${CMAKE_THREAD_LIBS_INIT})
endif()

# mproc_need_lib(LIB SYMBOL HEADER): links LIB when SYMBOL is not in libc.
function(mproc_need_lib lib symbol header)
  string(TOUPPER "${lib}" up)
  check_symbol_exists(${symbol} ${header} MPROC_${up}_IN_LIBC)
  if(MPROC_${up}_IN_LIBC)
    return()
  endif()
  check_library_exists(${lib} ${symbol} "" MPROC_HAVE_LIB${up})
  if(NOT MPROC_HAVE_LIB${up})
    message(FATAL_ERROR "mproc: ${symbol} is neither in libc nor in lib${lib}")
  endif()
  set(MPROC_LINK_LIBS ${MPROC_LINK_LIBS} ${lib} PARENT_SCOPE)
  set(MPROC_PC_PRIVATE_LIBS ${MPROC_PC_PRIVATE_LIBS} -l${lib} PARENT_SCOPE)
endfunction()

mproc_need_lib(dl dlopen dlfcn.h)
mproc_need_lib(rt shm_open sys/mman.h)
# check_symbol_exists takes ceil's address, which a builtin satisfies: ask
# the linker directly whether libm exists, and use it when it does.
check_library_exists(m ceil "" MPROC_HAVE_LIBM)
if(MPROC_HAVE_LIBM)
  list(APPEND MPROC_LINK_LIBS m)
  list(APPEND MPROC_PC_PRIVATE_LIBS -lm)
endif()
list(JOIN MPROC_PC_PRIVATE_LIBS " " MPROC_PC_PRIVATE_LIBS)
