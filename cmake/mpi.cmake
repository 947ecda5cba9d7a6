# libmproc_mpi (include/mproc/mpi.h): the pool across hosts on MPI. Built
# and installed when CMake finds an MPI for C (Open MPI preferred, MPICH
# builds too); skipped with a message otherwise. It links the shared core,
# so that a program has one arena whichever library it calls.
# As a subproject mproc builds only libmproc unless asked (-DMPROC_MPI=ON).
option(MPROC_MPI "Build libmproc_mpi when an MPI is found" ${MPROC_TOP_LEVEL})
set(MPROC_HAVE_MPI OFF)
if(MPROC_MPI)
  find_package(MPI COMPONENTS C QUIET)
endif()
if(NOT MPI_C_FOUND)
  message(STATUS "mproc: no MPI found: libmproc_mpi and its tests skipped "
                 "(Debian: apt-get install libopenmpi-dev openmpi-bin)")
  return()
endif()
set(MPROC_HAVE_MPI ON)
message(STATUS "mproc: MPI ${MPI_C_VERSION} (${MPIEXEC_EXECUTABLE}): "
               "building libmproc_mpi")

file(GLOB MPROC_MPI_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/mpi/*.c)
add_library(mproc_mpi SHARED ${MPROC_MPI_SOURCES})
add_library(mproc::mpi ALIAS mproc_mpi)
target_include_directories(mproc_mpi
  PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
         $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
  PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_compile_definitions(mproc_mpi PRIVATE MPROC_BUILDING _GNU_SOURCE)
target_link_libraries(mproc_mpi PUBLIC mproc PRIVATE MPI::MPI_C)
set_target_properties(mproc_mpi PROPERTIES C_VISIBILITY_PRESET hidden
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})

configure_file(cmake/mproc-mpi.pc.in ${PROJECT_BINARY_DIR}/mproc-mpi.pc @ONLY)
if(MPROC_INSTALL)
  install(TARGETS mproc_mpi LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES ${PROJECT_BINARY_DIR}/mproc-mpi.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()

# The example (make demo) and the benchmark link the MPI library.
foreach(src ${PROJECT_SOURCE_DIR}/examples/mpi/mpi_pool_demo.c
            ${PROJECT_SOURCE_DIR}/bench/mpi/bench_mpi.c)
  if(NOT EXISTS ${src} OR (MPROC_SANITIZE AND src MATCHES "/bench/") OR
     (NOT MPROC_BUILD_BENCH AND src MATCHES "/bench/") OR
     (NOT MPROC_BUILD_EXAMPLES AND src MATCHES "/examples/"))
    continue()
  endif()
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(dir ${src} DIRECTORY)
  get_filename_component(dir ${dir} DIRECTORY)
  get_filename_component(dir ${dir} NAME)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE mproc::mpi)
  target_compile_definitions(${name} PRIVATE _GNU_SOURCE
                             MPROC_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/${dir})
endforeach()
