#!/usr/bin/env python3
# Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
#
# Writes the seed corpus of pool_fuzzer (tests/fuzz/corpus/seed_*): short programs in the
# fuzzer's input format, each aimed at one path (spills and the TransferStack, caches of other
# fake CPUs, capacities that grow and shrink, sweeps and budgets, discarded pages, failing upstream calls, handles, ...), so that
# the bounded CI run starts from every part of the library, and the reproducers of the
# violations it found (tests/fuzz/corpus/repro_*), reduced by hand, each explained below.
#
#   python3 tests/fuzz/make_corpus.py        # rewrites seed_* and repro_*
#
# The format (pool_fuzzer.cc has the authority): three option bytes, then operations, each an
# opcode byte (modulo the number of opcodes) followed by its argument bytes.

import pathlib
import random

# Opcodes, in the order of enum Op in pool_fuzzer.cc.
(ALLOC, ALLOC_INLINE, FREE, FREE_INLINE, GET, RESET_HANDLE, RELEASE_HANDLE, PUT_RELEASED,
 DELETE_RELEASED, MOVE_HANDLE, SWEEP, TRIM, CLEAR, SET_CPU, FAILING_ALLOC, BAD_ALIGNMENT,
 THROWING_RESET, GET_WITHOUT_NEW, BURST, POOL_BURST) = range(20)

# Size modes (first size byte modulo 8; see DecodeSize()).
TINY, SMALL, MEDIUM, AROUND_MAX, AROUND_CLASS, LARGE, ZERO, POW2 = range(8)
# Alignment indexes into kAlignments: 1, 2, 4, 8, 16, 32, 64, 128, 256, 4096.
A1, A2, A4, A8, A16, A32, A64, A128, A256, A4096 = range(10)
# Sweep argument: which cache, plus PRESSURE.
RESOURCE, POOL, BOTH, PRESSURE = 0, 1, 2, 4
# SET_CPU takes a fake CPU id modulo (CPUs + 1), the last value meaning the real CPU; seeds
# use ids 0 and 1 only, fake CPUs on every machine with two CPUs or more.


def options(victim=False, locked=False, debug=False, pool_victim=False, max_block=0,
            discard=0, caps=2, class_bytes=0, pool_caps=2, budget=0, pool_budget=0,
            destroy_full=False, growth=False):
    """The three option bytes (see Harness::Harness()). caps and pool_caps are the blocks per
    class (1..8), where the caches start and, with growth, a sixteenth of where they may grow;
    the others are indexes into the fuzzer's tables."""
    flags = (victim << 0) | (locked << 1) | (debug << 2) | (pool_victim << 3)
    flags |= (max_block << 4) | (discard << 6)
    caps_byte = (caps - 1) | (class_bytes << 3) | ((pool_caps - 1) << 5)
    return bytes([flags, caps_byte,
                  budget | (pool_budget << 3) | (destroy_full << 6) | (growth << 7)])


def alloc(mode, value, align=A16, inline=False):
    return [ALLOC_INLINE if inline else ALLOC, mode, value, align]


def free(index=0, inline=False):
    return [FREE_INLINE if inline else FREE, index]


def program(opts, *ops):
    out = bytearray(opts)
    for op in ops:
        out += bytes(b & 0xFF for b in (op if isinstance(op, list) else [op]))
    return bytes(out)


def seeds():
    s = {}
    s['empty'] = options()
    s['alloc_free_small'] = program(
        options(), alloc(SMALL, 16), alloc(SMALL, 17), alloc(TINY, 1), free(1), free(0),
        alloc(SMALL, 16), free(0), free(0))
    # Every size mode with a few alignments, through both APIs.
    ops = []
    for mode in range(8):
        for align, inline in ((A1, False), (A16, True), (A64, False), (A4096, True)):
            ops.append(alloc(mode, 37 * mode + 5, align, inline))
    ops += [free(i % 3, i % 2 == 0) for i in range(32)]
    s['every_size_mode'] = program(options(), *ops)
    s['direct_and_over_aligned'] = program(
        options(), alloc(AROUND_MAX, 20), alloc(POW2, 20), alloc(SMALL, 64, A128),
        alloc(ZERO, 0, A4096), alloc(MEDIUM, 3, A256, True), free(0), free(0, True), free(2),
        free(0), free(0))
    s['max_block_boundary'] = program(
        options(max_block=2), *[alloc(AROUND_MAX, v, A64) for v in (14, 15, 16, 17, 18)],
        *[free(0) for _ in range(5)], *[alloc(AROUND_MAX, v) for v in (15, 16, 17)],
        SWEEP, RESOURCE, *[free(0) for _ in range(3)])
    s['zero_bytes'] = program(
        options(), alloc(ZERO, 0), alloc(ZERO, 0, A1), alloc(ZERO, 0, A64), alloc(TINY, 0),
        free(3), free(1), free(0), free(0), alloc(ZERO, 0), free(0))
    s['class_boundaries'] = program(
        options(max_block=3),
        *[alloc(AROUND_CLASS | (k << 3), c, A32)
          for c in (0, 7, 8, 9, 20, 35, 47) for k in (0, 1, 2)],
        BURST, 5, AROUND_CLASS, 40, A8)
    # Capacity 1: every second free moves a batch to the TransferStack, which fills and spills.
    s['spill_transfer_cap1'] = program(
        options(caps=1), SET_CPU, 0, BURST, 39, SMALL, 48, A16, BURST, 12, MEDIUM, 100, A64,
        SWEEP, RESOURCE, BURST, 20, SMALL, 48, A16)
    s['spill_transfer_cap8'] = program(
        options(caps=8, class_bytes=2), BURST, 39, SMALL, 200, A8, BURST, 39, SMALL, 200, A8)
    # Freed on CPU 1, allocated on CPU 0: through the TransferStack, or stolen as victims.
    s['cross_cpu_transfer'] = program(
        options(caps=2), SET_CPU, 0, *[alloc(SMALL, 64) for _ in range(6)], SET_CPU, 1,
        *[free(0) for _ in range(6)], SET_CPU, 0, *[alloc(SMALL, 64) for _ in range(6)],
        *[free(0) for _ in range(6)])
    s['other_cpus_victims'] = program(
        options(caps=4), SET_CPU, 1, *[alloc(SMALL, 32) for _ in range(4)],
        *[free(0) for _ in range(4)], SWEEP, RESOURCE, SET_CPU, 0,
        *[alloc(SMALL, 32) for _ in range(3)], *[free(0) for _ in range(3)], SWEEP, RESOURCE,
        SWEEP, RESOURCE)
    ops = [SET_CPU, 0]
    for _ in range(3):
        ops += [alloc(SMALL, 96), alloc(SMALL, 96), free(0), free(0), SWEEP, RESOURCE]
    s['working_set_sweeps'] = program(options(caps=4), *ops)
    # Growth: bursts beyond the starting capacity grow it; idle sweeps shrink it back; the
    # next burst grows it again. On the real CPU (rseq), then a fake one (locked).
    grow_shrink = [BURST, 39, SMALL, 48, A16, BURST, 39, SMALL, 48, A16, SWEEP, RESOURCE,
                   BURST, 30, SMALL, 48, A16] + [SWEEP, RESOURCE] * 6 + [
                   BURST, 39, SMALL, 48, A16, POOL_BURST, 39, SWEEP, BOTH, POOL_BURST, 39]
    s['growth_shrink'] = program(options(caps=2, pool_caps=1, growth=True), *grow_shrink)
    s['growth_shrink_fake_cpu'] = program(
        options(caps=1, pool_caps=2, growth=True), SET_CPU, 1, *grow_shrink)
    s['growth_budget'] = program(
        options(caps=2, growth=True, budget=5, pool_budget=6), BURST, 39, MEDIUM, 30, A16,
        POOL_BURST, 39, SWEEP, BOTH, BURST, 39, MEDIUM, 30, A16, SWEEP, BOTH, SWEEP, BOTH)
    s['growth_victim_policy'] = program(
        options(victim=True, pool_victim=True, caps=3, growth=True), *grow_shrink)
    s['victim_sweeps'] = program(options(victim=True, caps=4), *ops)
    s['pressure_sweep'] = program(
        options(), BURST, 30, MEDIUM, 20, A16, alloc(SMALL, 8), SWEEP, BOTH | PRESSURE, free(0),
        SWEEP, RESOURCE, SWEEP, RESOURCE)
    s['resource_budget'] = program(
        options(caps=8, budget=5), BURST, 39, MEDIUM, 30, A16, SWEEP, RESOURCE, BURST, 39,
        MEDIUM, 60, A16, SWEEP, RESOURCE)
    s['resource_budget_tight'] = program(
        options(caps=4, budget=4), BURST, 20, LARGE, 2, A64, SWEEP, RESOURCE)
    s['discard_pages'] = program(
        options(discard=3), alloc(LARGE, 40), alloc(LARGE, 200), alloc(POW2, 18), free(0),
        free(0), free(0), SWEEP, RESOURCE, SWEEP, RESOURCE)
    s['discard_16k'] = program(
        options(discard=2, caps=1), BURST, 6, LARGE, 20, A64, BURST, 3, POW2, 20, A16, TRIM)
    s['destroy_full'] = program(
        options(destroy_full=True, caps=4), SET_CPU, 1, BURST, 30, SMALL, 60, A16, GET, GET,
        RESET_HANDLE, 0, 1, SET_CPU, 0, BURST, 9, LARGE, 3, A64, SWEEP, BOTH, POOL_BURST, 12,
        alloc(SMALL, 60), GET)
    s['trim_midway'] = program(
        options(), BURST, 10, SMALL, 100, A8, alloc(SMALL, 100), TRIM, free(0), TRIM,
        alloc(SMALL, 100), free(0))
    s['failing_upstream'] = program(
        options(), FAILING_ALLOC, SMALL, 50, A16, FAILING_ALLOC, POW2, 20, A16, alloc(SMALL, 50),
        free(0), FAILING_ALLOC, SMALL, 50, A16, FAILING_ALLOC, SMALL, 50, A16, free(0))
    s['bad_alignment'] = program(
        options(), *[[BAD_ALIGNMENT, 16 * k, k, k] for k in range(8)], alloc(SMALL, 1), free(0))
    s['pool_get_put'] = program(
        options(pool_caps=4), GET, GET, GET, RESET_HANDLE, 0, 1, RESET_HANDLE, 0, 0, GET, GET,
        RESET_HANDLE, 1, 1, RESET_HANDLE, 0, 0, RESET_HANDLE, 0, 1)
    s['pool_handles'] = program(
        options(), GET, GET, GET, MOVE_HANDLE, 0, 1, 0, MOVE_HANDLE, 0, 0, 1, MOVE_HANDLE, 1, 1, 0,
        RELEASE_HANDLE, 0, PUT_RELEASED, 0, GET, RELEASE_HANDLE, 0, DELETE_RELEASED, 0,
        PUT_RELEASED, 0, GET, RELEASE_HANDLE, 0)
    s['pool_throwing_reset'] = program(
        options(), GET, GET, THROWING_RESET, RELEASE_HANDLE, 0, THROWING_RESET, GET,
        RESET_HANDLE, 0, 1, GET)
    s['pool_without_new'] = program(
        options(), GET_WITHOUT_NEW, GET, RESET_HANDLE, 0, 1, GET_WITHOUT_NEW, GET_WITHOUT_NEW)
    s['pool_burst_sweeps'] = program(
        options(pool_caps=1), POOL_BURST, 30, SWEEP, POOL, POOL_BURST, 5, SWEEP, POOL, SWEEP,
        POOL, POOL_BURST, 39, CLEAR)
    s['pool_budget'] = program(
        options(pool_caps=8, pool_budget=5), POOL_BURST, 39, SWEEP, POOL, POOL_BURST, 20,
        SWEEP, BOTH)
    s['pool_cross_cpu'] = program(
        options(pool_caps=3), SET_CPU, 0, GET, GET, GET, GET, SET_CPU, 1, RESET_HANDLE, 0, 1,
        RESET_HANDLE, 0, 1, RESET_HANDLE, 0, 1, RESET_HANDLE, 0, 1, SWEEP, POOL, SET_CPU, 0, GET,
        GET, GET)
    mixed = [alloc(SMALL, 80), GET, SET_CPU, 1, alloc(MEDIUM, 9, A64), GET, free(0), SWEEP, BOTH,
             RESET_HANDLE, 0, 0, SET_CPU, 0, alloc(LARGE, 1), free(1, True), RELEASE_HANDLE, 0,
             SWEEP, BOTH, PUT_RELEASED, 0, TRIM, CLEAR, free(0)]
    s['debug_checks_on'] = program(options(debug=True), *mixed)
    s['locked_mode'] = program(options(locked=True, caps=3, pool_caps=2), *mixed)
    s['locked_victim'] = program(options(locked=True, victim=True, pool_victim=True), *mixed)
    s['max_block_1000'] = program(
        options(max_block=2, class_bytes=3), BURST, 10, AROUND_MAX, 10, A64, alloc(SMALL, 250),
        alloc(AROUND_MAX, 16, A64), free(0), free(0))
    s['max_block_4096'] = program(
        options(max_block=1, class_bytes=2, caps=5), BURST, 20, MEDIUM, 255, A16,
        BURST, 20, AROUND_MAX, 15, A32)
    s['class_bytes_256'] = program(
        options(class_bytes=2, caps=8), BURST, 39, SMALL, 100, A16, BURST, 39, MEDIUM, 40, A16)
    long_ops = []
    for k in range(24):
        long_ops += [alloc(k % 8, 11 * k, k % 10, k % 2 == 1), GET]
        if k % 3 == 0:
            long_ops += [free(k), RESET_HANDLE, k, k]
        if k % 5 == 0:
            long_ops += [SET_CPU, k % 3]
        if k % 7 == 0:
            long_ops += [SWEEP, k % 3]
    s['long_mixed'] = program(options(caps=2, pool_caps=2), *long_ops)
    s.update(span_seeds())
    return s


def span_seeds():
    """Seeds for PoolResource's spans (src/spans.h): blocks of up to 4 KiB live in spans of
    64 KiB or more, 31 blocks of 2048 or 4096 bytes to a span, 63 of 1024. The first three
    fill several spans of one class, free a fragmenting part of the blocks, sweep twice
    (wholly free spans go upstream at each epoch, partly free ones stay and are refilled
    lowest address first), allocate into the holes, and drain (Trim); the last makes the
    upstream fail when a span is needed."""
    s = {}
    # 124 blocks of 4096 bytes: four spans of 128 KiB. Blocks are freed in reverse, every other
    # one (FREE swaps the last block into the hole: freeing the even indexes from the top down
    # leaves the odd ones), so every span stays partly used through both sweeps.
    n = 124
    ops = [alloc(POW2, 12) for _ in range(n)]
    ops += [free(i) for i in range(n - 2, -1, -2)]
    ops += [SWEEP, RESOURCE, SWEEP, RESOURCE]
    ops += [alloc(POW2, 12) for _ in range(20)]
    # Then all but 7 freed (in a scattered order): a span left with no block (one of the four)
    # goes back at the first sweep; the rest serve the next allocations.
    ops += [TRIM, *[free(0) for _ in range(75)], SWEEP, RESOURCE, SWEEP, RESOURCE, TRIM]
    ops += [alloc(POW2, 12) for _ in range(5)]
    s['spans_every_other'] = program(options(caps=2), *ops)
    # 124 blocks of 2048 bytes (four spans of 64 KiB), 90 % of them freed in a random order,
    # on two fake CPUs (two shards: blocks go back to the shard of their span), with growth and
    # refills of up to 32 blocks (64 KiB refill_bytes).
    rng = random.Random(1234)
    ops = [SET_CPU, 0] + [alloc(POW2, 11) for _ in range(n // 2)]
    ops += [SET_CPU, 1] + [alloc(POW2, 11) for _ in range(n // 2)]
    for k in range(n * 9 // 10):
        if k % 10 == 0:
            ops += [SET_CPU, k // 10 % 2]
        ops.append(free(rng.randrange(256), inline=k % 2 == 1))
    ops += [SWEEP, RESOURCE, SWEEP, RESOURCE, alloc(POW2, 11), alloc(POW2, 11), TRIM]
    ops += [*[free(0) for _ in range(n)], SWEEP, RESOURCE, TRIM]
    s['spans_random_90'] = program(options(caps=4, pool_caps=3, growth=True), *ops)
    # The same in the locked mode with victim retention and a budget of 1 KiB (blocks over it
    # go straight back to their spans, counted as over the budget), a smaller class (1 KiB, 63
    # to a span) freed every other one, a pressure sweep of the resource (6: 6 % 3 == 0 is the
    # resource alone, bit 2 the pressure), then rounds that fill the cache and sweep.
    ops = [alloc(LARGE, 1) for _ in range(126)]
    ops += [free(i, inline=i % 4 == 0) for i in range(124, -1, -2)]
    ops += [SWEEP, 6]
    for _ in range(2):
        ops += [*[alloc(LARGE, 1) for _ in range(12)], *[free(0) for _ in range(12)], SWEEP,
                RESOURCE]
    ops += [SWEEP, RESOURCE, TRIM, alloc(LARGE, 1), SWEEP, RESOURCE]
    s['spans_locked_budget'] = program(options(locked=True, victim=True, caps=8, budget=4),
                                       *ops)
    # A failing upstream at a span allocation: 31 blocks of 4096 bytes fill a span, so the
    # 32nd allocation needs a new span, which fails (nothing changes but the miss); the next
    # succeeds with a new span. A failing call served from the spans (64 bytes, a span with
    # free blocks) or from a cache never reaches the upstream.
    ops = [alloc(SMALL, 50)] + [alloc(POW2, 12) for _ in range(31)]
    ops += [FAILING_ALLOC, POW2, 12, A16, FAILING_ALLOC, SMALL, 50, A16, alloc(POW2, 12),
            free(5), FAILING_ALLOC, POW2, 12, A16, FAILING_ALLOC, POW2, 12, A16]
    ops += [*[free(0) for _ in range(40)], SWEEP, RESOURCE, FAILING_ALLOC, POW2, 12, A16,
            TRIM, FAILING_ALLOC, POW2, 11, A16, alloc(POW2, 11)]
    s['spans_failing_upstream'] = program(options(caps=1), *ops)
    return s


def reproducers():
    r = {}
    # A deallocate on a CPU whose primary stack is full moves a batch of Batch() = capacity / 2
    # blocks to the TransferStack and pushes the block: with a capacity of 1 to 3 the batch is
    # one block, the CPU's counts end where they were, no hit, miss or spill is counted, so
    # CpuCache::Activity() does not change and the next sweep drains the CPU as cold, releasing
    # the block given back during that very epoch ("survives at least one epoch" is broken).
    # The locked mode (here through a fake CPU); capacity 2, working-set retention: the second
    # sweep keeps a full primary, X is freed after it, the third sweep releases X.
    r['cold_cpu_drains_block_freed_this_epoch'] = program(
        options(caps=2), SET_CPU, 0, alloc(SMALL, 16), alloc(SMALL, 16), alloc(SMALL, 16),
        free(2), free(1), SWEEP, RESOURCE, alloc(SMALL, 16), alloc(SMALL, 16), free(2), free(1),
        SWEEP, RESOURCE, free(0), SWEEP, RESOURCE)
    # The same with Pool<T> (max_blocks_per_class 2): the object put back after the second sweep
    # is destroyed by the third.
    r['cold_cpu_destroys_object_put_this_epoch'] = program(
        options(pool_caps=2), SET_CPU, 0, GET, GET, GET, RESET_HANDLE, 2, 1, RESET_HANDLE, 1, 1,
        SWEEP, POOL, GET, GET, RESET_HANDLE, 2, 1, RESET_HANDLE, 1, 1, SWEEP, POOL,
        RESET_HANDLE, 0, 1, SWEEP, POOL)
    # In the rseq mode (the real CPU), PutSlow() moves the batch out of a full primary stack
    # with RseqPopPrimary(), whose sequence counts a hit: a deallocate counts a hit per block
    # moved, so Stats::hits exceeds the allocations served (the locked mode counts none).
    # Capacity 2: the third deallocate in a row moves one block.
    r['rseq_batch_move_counts_hits'] = program(
        options(caps=2), alloc(SMALL, 16), alloc(SMALL, 16), alloc(SMALL, 16), free(0), free(0),
        free(0))
    return r


def main():
    corpus = pathlib.Path(__file__).resolve().parent / 'corpus'
    corpus.mkdir(exist_ok=True)
    for old in list(corpus.glob('seed_*')) + list(corpus.glob('repro_*')):
        old.unlink()
    files = {f'seed_{name}': data for name, data in seeds().items()}
    files.update({f'repro_{name}': data for name, data in reproducers().items()})
    for name, data in files.items():
        (corpus / name).write_bytes(data)
    print(f'{len(files)} files in {corpus}')


if __name__ == '__main__':
    main()
