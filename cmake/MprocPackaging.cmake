# CPack: `cpack -G DEB` in a build directory makes two Debian packages from
# the install components (scripts/deb.sh configures one for /usr and runs
# it; `make deb`):
#   libmproc<major>  the shared library (section libs)
#   libmproc-dev     headers, static library, mproc.pc, CMake package
set(CPACK_PACKAGE_NAME mproc)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Python's multiprocessing for C on Linux")
set(CPACK_PACKAGE_CONTACT "mproc maintainers <mproc@localhost>")
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(MPROC_DEB_RUNTIME libmproc${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${MPROC_DEB_RUNTIME})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "Python's multiprocessing for C on Linux (shared library)")
# The shlibs file and the ldconfig trigger of a shared library package.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# HMAC (authenticated connections, the forkserver) loads libcrypto.so.3.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "libssl3")
find_program(MPROC_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(MPROC_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
else()
  # What dpkg-shlibdeps computes on Debian 12 (the newest symbol versions).
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libc6 (>= 2.34)")
endif()

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libmproc-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "Python's multiprocessing for C on Linux (headers, static library, pkg-config and CMake files)")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "${MPROC_DEB_RUNTIME} (= ${PROJECT_VERSION})")

include(CPack)
