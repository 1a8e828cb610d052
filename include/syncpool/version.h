// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/version.h
// -----------------------------------------------------------------------------
//
// The version of syncpool, written here once: CMakeLists.txt reads it for the CMake package,
// syncpool.pc and the Debian package. CHANGELOG.md says what each version brought.
//
// Every public header needs C++20 (concepts, std::bit_width): a translation unit compiled
// against an older standard stops here with a message saying so, rather than at the first use.

#ifndef SYNCPOOL_VERSION_H_
#define SYNCPOOL_VERSION_H_

#define SYNCPOOL_VERSION_MAJOR 0
#define SYNCPOOL_VERSION_MINOR 5
#define SYNCPOOL_VERSION_PATCH 0

#if __cplusplus < 202002L
#error "syncpool's headers need C++20 (-std=c++20); README.md says where each build declares it"
#endif

#endif  // SYNCPOOL_VERSION_H_
