# Cross build for aarch64 Linux with Debian's cross compiler (g++-aarch64-linux-gnu) and the
# arm64 builds of the libraries installed beside the machine's own (dpkg --add-architecture
# arm64: /usr/lib/aarch64-linux-gnu, headers shared under /usr/include). Tests run under
# qemu-aarch64 (CTest prepends it).
#   cmake -S . -B out/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# The arm64 libraries' package configs live under /usr/lib/aarch64-linux-gnu/cmake, found
# through CMAKE_LIBRARY_ARCHITECTURE; nothing of the build machine's own architecture.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# The programs run with the arm64 loader and C library of multiarch (libc6:arm64, beside the
# arm64 Abseil), not with the cross toolchain's copies in /usr/aarch64-linux-gnu (qemu's -L):
# a loader of one glibc build with the C library of another corrupts pthread_create's state.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
