// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// This workspace's other code keeps its own language (.bazelrc) beside syncpool's targets.
static_assert(__cplusplus == 201703L, "built as C++17, the workspace's -std");
