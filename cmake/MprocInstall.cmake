# Install rules: the libraries, headers, mproc.pc and the CMake package
# (find_package(mproc CONFIG) gives mproc::mproc and mproc::mproc_static),
# split into two components that are also the two Debian packages:
#   runtime  libmproc.so.<major> (package libmproc<major>)
#   dev      headers, libmproc.so, libmproc.a, mproc.pc, CMake files
#            (package libmproc-dev)
include(CMakePackageConfigHelpers)

set(MPROC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mproc)

install(TARGETS mproc EXPORT mprocTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
                COMPONENT runtime NAMELINK_COMPONENT dev)
install(TARGETS mproc_static EXPORT mprocTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(EXPORT mprocTargets NAMESPACE mproc::
        DESTINATION ${MPROC_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(cmake/mprocConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mprocConfig.cmake
  INSTALL_DESTINATION ${MPROC_CMAKE_DIR})
# Compatible within a major version, as the SONAME.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mprocConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mprocConfig.cmake
              ${PROJECT_BINARY_DIR}/mprocConfigVersion.cmake
        DESTINATION ${MPROC_CMAKE_DIR} COMPONENT dev)

# mproc.pc. Relocatable by default: the prefix is found from the file's own
# place (${pcfiledir}), so it is right for any libdir depth (lib, lib64,
# Debian's lib/x86_64-linux-gnu), for `cmake --install --prefix` elsewhere
# and inside a DESTDIR staging tree. A distribution package wants the plain
# absolute paths (pkg-config then drops /usr/include): MPROC_PC_RELOCATABLE
# OFF, as scripts/deb.sh does. An absolute libdir or includedir is written
# as it is.
if(MPROC_PC_RELOCATABLE AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}"
   AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  file(RELATIVE_PATH up "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  string(REGEX REPLACE "/$" "" up "${up}")
  set(MPROC_PC_PREFIX "\${pcfiledir}/${up}")
  set(MPROC_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(MPROC_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(MPROC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(MPROC_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(MPROC_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
endif()
configure_file(cmake/mproc.pc.in ${PROJECT_BINARY_DIR}/mproc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mproc.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

if(MPROC_TOP_LEVEL)
  include(cmake/MprocPackaging.cmake)
endif()
