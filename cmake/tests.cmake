# The tests of the CMake build (-DSYNCPOOL_BUILD_TESTS=ON), registered with CTest under the
# names Bazel gives them, so that both builds run the same tests.
#
# Every tests/*_test.cc and tests/reliability/*_test.cc is a test of its own name, built from
# that one file against syncpool and GoogleTest (as Bazel's cc_tests are): a new one needs
# nothing here. The exceptions are the tables below, for what a file name cannot say.
# scripts/check_test_lists.sh compares the result with Bazel's tests: every Bazel cc_test under
# //tests/... must be a CTest test here, and every test here a Bazel test. Not run here: the
# sh_tests of Bazel's own outputs (dynamic_symbols_test: the per-layer shared libraries;
# valgrind_test) and the fuzzer (tests/fuzz: clang's libFuzzer).

find_package(GTest CONFIG REQUIRED)

set(SYNCPOOL_TESTS_DIR "${PROJECT_SOURCE_DIR}/tests")

# Tests that Bazel also runs as `<name>_perthread`, every cache per thread (syncpool_cc_test's
# both_modes, bazel/test_defs.bzl).
set(SYNCPOOL_BOTH_MODES_TESTS
  address_space_test
  allocation_failure_test
  fault_injection_test
  fork_test
  growth_test
  idle_sweeper_test
  owned_bytes_test
  policy_test
  pool_allocator_test
  pool_resource_test
  pool_test
  stress_test
  sweep_slices_test
  thread_exit_test)

# Tests that Bazel also runs as `<name>_cpuid`, the rseq caches' columns by CPU id
# (SYNCPOOL_CPU_ID=cpu; syncpool_cc_test's both_indexes).
set(SYNCPOOL_BOTH_INDEXES_TESTS
  cpu_index_test
  fork_test
  rseq_test
  rseq_window_test
  stress_test
  thread_exit_test)

# Tests that link the test-seam variant (src/test_seams.h, //:syncpool_rseq_window_for_test).
set(SYNCPOOL_RSEQ_WINDOW_TESTS rseq_window_test thread_window_test fork_window_test)

# Sources that Bazel builds into tests of other names, each run with one environment:
# "SOURCE_STEM TEST_NAME VAR=VALUE".
set(SYNCPOOL_RENAMED_TESTS
  "rseq_disabled_test rseq_tunable_off_test GLIBC_TUNABLES=glibc.pthread.rseq=0"
  "rseq_disabled_test rseq_env_off_test SYNCPOOL_RSEQ=0")

# Tests that Bazel declares as medium (300 s); the others are small (60 s).
set(SYNCPOOL_MEDIUM_TESTS fork_test rseq_test stress_test)

# The test-seam variant of the library, built only for the tests that need it: its sources,
# and the tests that link it (PUBLIC), include src/test_seams.h first (Bazel's SEAM_COPTS).
syncpool_add_library(syncpool_rseq_window_for_test STATIC)
target_compile_options(syncpool_rseq_window_for_test
  PUBLIC -include ${PROJECT_SOURCE_DIR}/src/test_seams.h)
set_target_properties(syncpool_rseq_window_for_test PROPERTIES EXCLUDE_FROM_ALL ON)

# The tests' shared helpers with sources of their own (tests/*.cc that are neither a test nor
# a main(): the accounting scenario of tests/churn.cc), as Bazel's helper libraries.
file(GLOB _syncpool_test_support CONFIGURE_DEPENDS "${SYNCPOOL_TESTS_DIR}/*.cc")
list(FILTER _syncpool_test_support EXCLUDE REGEX "(_test|_main)\\.cc$")
add_library(syncpool_test_support STATIC ${_syncpool_test_support})
target_include_directories(syncpool_test_support PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(syncpool_test_support PRIVATE ${SYNCPOOL_WARNING_FLAGS})
target_link_libraries(syncpool_test_support PUBLIC syncpool GTest::gtest absl::flat_hash_map)

# syncpool_test_binary(NAME SOURCE): a test program from one source, as Bazel's cc_test.
function(syncpool_test_binary name source)
  add_executable(${name} ${source})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})  # "tests/*.h"
  target_compile_options(${name} PRIVATE ${SYNCPOOL_WARNING_FLAGS})
  if(name IN_LIST SYNCPOOL_RSEQ_WINDOW_TESTS)
    target_link_libraries(${name} PRIVATE syncpool_rseq_window_for_test)
  else()
    target_link_libraries(${name} PRIVATE syncpool syncpool_test_support)
  endif()
  target_link_libraries(${name} PRIVATE
    GTest::gtest_main absl::flat_hash_map absl::inlined_vector ${CMAKE_DL_LIBS})
endfunction()

# syncpool_add_test(NAME COMMAND... [ENV VAR=VALUE...]): NAME, and its per-thread and CPU-id
# twins where Bazel has them.
function(syncpool_add_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "COMMAND;ENV")
  set(timeout 60)
  if(name IN_LIST SYNCPOOL_MEDIUM_TESTS)
    set(timeout 300)
  endif()
  if(CMAKE_CROSSCOMPILING_EMULATOR)
    math(EXPR timeout "${timeout} * 10")  # emulated instructions
  endif()
  add_test(NAME ${name} COMMAND ${arg_COMMAND})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} ENVIRONMENT "${arg_ENV}")
  if(name IN_LIST SYNCPOOL_BOTH_MODES_TESTS)
    add_test(NAME ${name}_perthread COMMAND ${arg_COMMAND})
    set_tests_properties(${name}_perthread PROPERTIES
      TIMEOUT ${timeout} ENVIRONMENT "${arg_ENV};SYNCPOOL_MODE=perthread")
  endif()
  if(name IN_LIST SYNCPOOL_BOTH_INDEXES_TESTS)
    add_test(NAME ${name}_cpuid COMMAND ${arg_COMMAND})
    set_tests_properties(${name}_cpuid PROPERTIES
      TIMEOUT ${timeout} ENVIRONMENT "${arg_ENV};SYNCPOOL_CPU_ID=cpu")
  endif()
endfunction()

file(GLOB _syncpool_test_sources CONFIGURE_DEPENDS
  "${SYNCPOOL_TESTS_DIR}/*_test.cc" "${SYNCPOOL_TESTS_DIR}/reliability/*_test.cc")
foreach(source IN LISTS _syncpool_test_sources)
  get_filename_component(stem ${source} NAME_WE)
  syncpool_test_binary(${stem} ${source})
  set(renamed OFF)
  foreach(entry IN LISTS SYNCPOOL_RENAMED_TESTS)
    separate_arguments(entry)
    list(GET entry 0 entry_stem)
    if(entry_stem STREQUAL stem)
      list(GET entry 1 test_name)
      list(GET entry 2 test_env)
      syncpool_add_test(${test_name} COMMAND ${stem} ENV ${test_env})
      set(renamed ON)
    endif()
  endforeach()
  if(NOT renamed)
    syncpool_add_test(${stem} COMMAND ${stem})
  endif()
endforeach()

# Static destruction order (tests/reliability/static_destruction_test.sh runs the program in
# each of its modes), as Bazel's sh_test of the same name. A cross build runs the program
# through its emulator, from a wrapper script.
add_executable(static_destruction_main
  "${SYNCPOOL_TESTS_DIR}/reliability/static_destruction_main.cc")
target_compile_options(static_destruction_main PRIVATE ${SYNCPOOL_WARNING_FLAGS})
target_link_libraries(static_destruction_main PRIVATE syncpool)
set(_syncpool_static_destruction_main $<TARGET_FILE:static_destruction_main>)
if(CMAKE_CROSSCOMPILING AND CMAKE_CROSSCOMPILING_EMULATOR)
  list(JOIN CMAKE_CROSSCOMPILING_EMULATOR " " _emulator)
  set(_syncpool_static_destruction_main "${CMAKE_CURRENT_BINARY_DIR}/static_destruction_main.sh")
  file(GENERATE OUTPUT "${_syncpool_static_destruction_main}"
       CONTENT "#!/bin/sh\nexec ${_emulator} $<TARGET_FILE:static_destruction_main> \"$@\"\n"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                        WORLD_READ WORLD_EXECUTE)
endif()
syncpool_add_test(static_destruction_test
  COMMAND bash "${SYNCPOOL_TESTS_DIR}/reliability/static_destruction_test.sh"
          "${_syncpool_static_destruction_main}")

# A program that prints the mode its caches picked, with debug checks off (which choose the
# locked mode): scripts/aarch64.sh checks the mode under qemu with it.
add_executable(cache_mode_main "${SYNCPOOL_TESTS_DIR}/cache_mode_main.cc")
target_compile_options(cache_mode_main PRIVATE ${SYNCPOOL_WARNING_FLAGS})
target_link_libraries(cache_mode_main PRIVATE syncpool)
