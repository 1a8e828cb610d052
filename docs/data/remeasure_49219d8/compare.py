#!/usr/bin/env python3
"""The figures docs/benchmarks.md and docs/memory.md quoted before the restructuring into layers,
each beside the same figure re-measured; prints Markdown (comparison.md beside this file).

    python3 compare.py [RUN_DIR...]   # default: this directory (run 1) and run2/

A run directory is what `bash scripts/measure_docs.sh DIR` writes. The documented figures are
written out below, each with the commit its document names.
"""
import csv, re, sys, os, statistics
HERE = os.path.dirname(os.path.abspath(__file__))
DIRS = sys.argv[1:] or [HERE, os.path.join(HERE, 'run2')]
print('# Documented figures against the runs of ' + ', '.join(DIRS).replace(HERE, '.') + '\n')
print('Run 1 is `bash scripts/measure_docs.sh` at 49219d8; run 2 the same steps at 3333145 (the same')
print('library and tools), a few minutes earlier; see commands.txt in each. Times are medians of three')
print('repetitions where the command asked for them. Written by compare.py.')
D = DIRS[0]

def csv_medians(path):
    out = {}
    rows = {}
    with open(path) as f:
        lines = [l for l in f if l.startswith('name,') or l.startswith('"')]
    for r in csv.DictReader(lines):
        n = r['name']
        if n.endswith('_median'):
            out[n[:-7]] = float(r['real_time'])
        elif not re.search(r'_(mean|stddev|cv)$', n):
            rows.setdefault(n, []).append(float(r['real_time']))
    for n, v in rows.items():
        out.setdefault(n, statistics.median(v))
    return out

UNIT = {'ns': 1, 'us': 1e3, 'ms': 1e6, 's': 1e9}
def console(path):
    out = {}
    for l in open(path):
        m = re.match(r'^(BM_\S+)\s+([\d.]+) (ns|us|ms|s)\s', l)
        if m:
            n = m.group(1)
            if n.endswith('_median'): n = n[:-7]
            elif re.search(r'_(mean|stddev|cv)$', n): continue
            out.setdefault(n, float(m.group(2)) * UNIT[m.group(3)])
    return out

def f(x):
    if x is None: return 'n/a'
    if x >= 100: return '%.0f' % x
    if x >= 10: return '%.1f' % x
    return '%.2f' % x

rows_all = []
def table(title, loader, items, scale=1.0, unit='ns'):
    """loader(dir) -> dict, or None where the dir lacks the file."""
    datas = [loader(d) for d in DIRS]
    print('\n### ' + title + '\n')
    print('| figure | documented | ' + ' | '.join('run %d' % (i + 1) for i in range(len(DIRS))) + ' | run / documented |')
    print('| --- | --- | ' + ' | '.join('---' for _ in DIRS) + ' | --- |')
    for label, key, old in items:
        news = [None if data is None or data.get(key) is None else data[key] / scale for data in datas]
        rows_all.append((title, label, old, news))
        print('| %s | %s %s | %s | %s |' % (label, f(old), unit, ' | '.join('%s %s' % (f(n), unit) for n in news),
              ', '.join('n/a' if n is None else '%.2f' % (n / old) for n in news)))

def loader(name, parse):
    def load(d):
        p = os.path.join(d, name)
        return parse(p) if os.path.exists(p) else None
    return load

def rt(res, size, t): return 'BM_RoundTrip/%s/%d/real_time/threads:%d' % (res, size, t)
def ch(res, t): return 'BM_Churn/%s/real_time/threads:%d' % (res, t)
def seed(k, t): return 'BM_Seed_%s/real_time/threads:%d' % (k, t)

pb = loader('pool_bench.csv', csv_medians)
table('The seed\'s comparison (docs/benchmarks.md, 6f0bd66)', pb, [
    ('BM_Seed_Alloc, 1 thread', seed('Alloc', 1), 7.71), ('BM_Seed_Alloc, 2 threads', seed('Alloc', 2), 4.00),
    ('BM_Seed_Pool, 1 thread', seed('Pool', 1), 2.04), ('BM_Seed_Pool, 2 threads', seed('Pool', 2), 1.05),
    ('BM_PerCpu_PopPush, 1 thread', 'BM_PerCpu_PopPush/real_time/threads:1', 1.80),
    ('BM_PerCpu_PopPush, 2 threads', 'BM_PerCpu_PopPush/real_time/threads:2', 0.93)])
items = []
for res, vals in [('syncpool_allocator', (1.90, 1.94, 8.44, 1.12)), ('syncpool', (4.17, 4.20, 5.67, 1.90)),
                  ('interface_floor', (None, 2.59, None, 1.22)), ('syncpool_locked', (26.1, 25.9, 27.2, 13.1)),
                  ('mimalloc', (7.75, 10.0, 15.4, 4.79)), ('new_delete', (11.1, 10.1, 39.2, 7.33)),
                  ('unsynchronized_pool', (15.3, 15.9, 42.1, None)), ('synchronized_pool', (39.7, 39.7, 83.4, 84.7))]:
    for (size, t), old in zip([(64, 1), (1024, 1), (65536, 1), (1024, 2)], vals):
        if old is not None:
            items.append(('%s, %d B, %d thread%s' % (res, size, t, 's' if t > 1 else ''), rt(res, size, t), old))
table('Round trips (docs/benchmarks.md, 6f0bd66)', pb, items)
items = []
for res, vals in [('syncpool', (552, 280)), ('syncpool_locked', (2036, 1016)), ('mimalloc', (1054, 441)),
                  ('new_delete', (2490, 1452)), ('unsynchronized_pool', (2307, None)), ('synchronized_pool', (3951, 7014))]:
    for t, old in zip((1, 2), vals):
        if old is not None: items.append(('BM_Churn/%s, %d thread%s' % (res, t, 's' if t > 1 else ''), ch(res, t), old))
table('Churn (docs/benchmarks.md, 6f0bd66)', pb, items)
table('A miss (docs/benchmarks.md, 6f0bd66)', pb, [
    ('BM_Miss/syncpool/64', 'BM_Miss/syncpool/64/real_time', 11.2), ('BM_Miss/syncpool/1024', 'BM_Miss/syncpool/1024/real_time', 15.4),
    ('BM_Miss/upstream/64', 'BM_Miss/upstream/64/real_time', 7.53), ('BM_Miss/upstream/1024', 'BM_Miss/upstream/1024/real_time', 10.3),
    ('BM_Miss/upstream_aligned64/64', 'BM_Miss/upstream_aligned64/64/real_time', 8.21),
    ('BM_Miss/upstream_aligned64/1024', 'BM_Miss/upstream_aligned64/1024/real_time', 10.8)])
table('Pools of buffers (docs/benchmarks.md, 93aa9bf)', pb, [
    ('BM_Buffer_Alloc/1024, 1 thread', 'BM_Buffer_Alloc/1024/real_time/threads:1', 12.0),
    ('BM_Buffer_Alloc/1024, 2 threads', 'BM_Buffer_Alloc/1024/real_time/threads:2', 6.21),
    ('BM_Buffer_Pool/1024, 1 thread', 'BM_Buffer_Pool/1024/real_time/threads:1', 12.4),
    ('BM_Buffer_Pool/1024, 2 threads', 'BM_Buffer_Pool/1024/real_time/threads:2', 9.44),
    ('BM_Buffer_Alloc/65536, 1 thread', 'BM_Buffer_Alloc/65536/real_time/threads:1', 488),
    ('BM_Buffer_Alloc/65536, 2 threads', 'BM_Buffer_Alloc/65536/real_time/threads:2', 251),
    ('BM_Buffer_Pool/65536, 1 thread', 'BM_Buffer_Pool/65536/real_time/threads:1', 484),
    ('BM_Buffer_Pool/65536, 2 threads', 'BM_Buffer_Pool/65536/real_time/threads:2', 324)])
if True:
    pt = loader('perthread_buffer.txt', console)
    table('Pools of buffers, per-thread caches (docs/benchmarks.md, 93aa9bf)', pt, [
        ('BM_Buffer_Alloc/1024, 1 thread', 'BM_Buffer_Alloc/1024/real_time/threads:1', 12.0),
        ('BM_Buffer_Alloc/1024, 2 threads', 'BM_Buffer_Alloc/1024/real_time/threads:2', 5.96),
        ('BM_Buffer_Pool/1024, 1 thread', 'BM_Buffer_Pool/1024/real_time/threads:1', 12.1),
        ('BM_Buffer_Pool/1024, 2 threads', 'BM_Buffer_Pool/1024/real_time/threads:2', 8.49),
        ('BM_Buffer_Alloc/65536, 1 thread', 'BM_Buffer_Alloc/65536/real_time/threads:1', 518),
        ('BM_Buffer_Alloc/65536, 2 threads', 'BM_Buffer_Alloc/65536/real_time/threads:2', 250),
        ('BM_Buffer_Pool/65536, 1 thread', 'BM_Buffer_Pool/65536/real_time/threads:1', 503),
        ('BM_Buffer_Pool/65536, 2 threads', 'BM_Buffer_Pool/65536/real_time/threads:2', 327)])
for peer, vals in [('glibc', (7.94, 2.00, 14.2, 3.39, 2.58, 34.5, 5.16, 3224, 927)),
                   ('jemalloc', (5.91, 2.00, 15.3, 3.43, 2.67, 205, 5.23, 1786, 870)),
                   ('tcmalloc', (3.52, 2.05, 4.60, 3.59, 2.01, 7.50, 5.17, 718, 605))]:
    data = loader('peers_%s.csv' % peer, csv_medians)
    keys = [('BM_Seed_Alloc', seed('Alloc', 1)), ('BM_Seed_Pool', seed('Pool', 1)),
            ('new_delete/1024', rt('new_delete', 1024, 1)), ('syncpool/1024', rt('syncpool', 1024, 1)),
            ('syncpool_allocator/1024', rt('syncpool_allocator', 1024, 1)),
            ('new_delete/65536', rt('new_delete', 65536, 1)), ('syncpool/65536', rt('syncpool', 65536, 1)),
            ('BM_Churn/new_delete', ch('new_delete', 1)), ('BM_Churn/syncpool', ch('syncpool', 1))]
    table('%s under new/delete, 1 thread (docs/benchmarks.md, 9b94582)' % peer, data,
          [(l, k, o) for (l, k), o in zip(keys, vals)])
for name, vals in [('debug_off', (3.07, 1.23, 4.98, 2.16, 2.39, 1.03, 535, 375)),
                   ('debug_on', (72.7, 216, 77.9, 244, 72.4, 205, 4653, 38607))]:
    data = loader(name + '.csv', csv_medians)
    keys = [(seed('Pool', 1)), seed('Pool', 2), rt('syncpool', 1024, 1), rt('syncpool', 1024, 2),
            rt('syncpool_allocator', 1024, 1), rt('syncpool_allocator', 1024, 2), ch('syncpool', 1), ch('syncpool', 2)]
    table('%s (docs/benchmarks.md, 9b94582)' % ('SYNCPOOL_DEBUG=1' if name == 'debug_on' else 'checks off, same filter'),
          data, [(k.replace('/real_time', ''), k, o) for k, o in zip(keys, vals)])
if True:
    data = loader('perthread_pool_bench.txt', console)
    items = []
    for k, vals in [(seed('Alloc', 0), (8.01, 3.93)), (seed('Pool', 0), (2.87, 1.46)),
                    ('BM_PerCpu_PopPush/real_time/threads:0', (2.57, 1.29)), (rt('new_delete', 1024, 0), (10.1, 7.65)),
                    (rt('syncpool', 1024, 0), (4.04, 2.54)), (rt('syncpool_allocator', 1024, 0), (2.83, 1.47)),
                    (rt('synchronized_pool', 1024, 0), (48.0, 98.7)), (ch('new_delete', 0), (2705, 1321)),
                    (ch('syncpool', 0), (630, 314))]:
        for t, o in zip((1, 2), vals):
            kk = k.replace('threads:0', 'threads:%d' % t)
            items.append((kk.replace('/real_time', ''), kk, o))
    table('Per-thread caches, GLIBC_TUNABLES=glibc.pthread.rseq=0 (docs/benchmarks.md, 8ad4810)', data, items)

def tree_tables(name, title):
    datas = [loader(name, console)(d) or {} for d in DIRS]
    tree = {'std': (52.7, 44.9, 83.6, 45.0, 117.4, 60.9, 146.3, 88.0),
            'syncpool_allocator': (32.0, 16.1, 33.9, 17.2, 52.7, 26.9, 67.6, 40.2),
            'syncpool': (35.1, 17.8, 39.2, 19.7, 61.6, 30.6, 75.7, 40.8),
            'new_delete': (92.3, 48.7, 102.7, 50.2, 174.3, 78.3, 229.1, 127.3),
            'mimalloc': (39.6, 20.1, 41.3, 20.6, 57.5, 29.1, 66.9, 34.3),
            'synchronized_pool': (143.5, 333.9, 147.7, 359.7, 170.3, 367.2, 183.8, 349.2),
            'tbb': (81.2, 41.2, 83.4, 42.4, 114.8, 67.0, 410.8, 104.3),
            'boost_pool': (115.1, 916.9, 114.3, 956.3, 127.9, 1276.0, 199.2, 1496.7)}
    req = {'std': (900, 453, 1117, 571), 'syncpool_allocator': (409, 208, 596, 424), 'syncpool': (435, 329, 626, 439),
           'new_delete': (986, 507, 1234, 636), 'mimalloc': (460, 225, 671, 329),
           'synchronized_pool': (1041, 2008, 1311, 3206), 'tbb': (702, 350, 896, 466), 'boost_pool': (734, 5570, 989, 6227)}
    print('\n### ' + title + '\n')
    print('BM_Tree, ns per node: documented / ' + ' / '.join('run %d' % (i + 1) for i in range(len(DIRS))) + '\n')
    cols = [(n, t) for n in (100, 1000, 10000, 100000) for t in (1, 2)]
    print('| allocator | ' + ' | '.join('%d t%d' % c for c in cols) + ' |')
    print('|---' * (len(cols) + 1) + '|')
    for a, vals in tree.items():
        cells = []
        for (n, t), o in zip(cols, vals):
            vs = [data.get('BM_Tree/%s/%d/real_time/threads:%d' % (a, n, t)) for data in datas]
            vs = [None if v is None else v / n for v in vs]
            cells.append(' / '.join([f(o)] + [f(v) for v in vs]))
            rows_all.append(('BM_Tree ' + title, '%s %d t%d' % (a, n, t), o, vs))
        print('| %s | %s |' % (a, ' | '.join(cells)))
    print('\nBM_Request, µs per iteration: documented / ' + ' / '.join('run %d' % (i + 1) for i in range(len(DIRS))) + '\n')
    cols = [(k, t) for k in (4, 64) for t in (1, 2)]
    print('| allocator | ' + ' | '.join('%d KiB t%d' % c for c in cols) + ' |')
    print('|---' * (len(cols) + 1) + '|')
    for a, vals in req.items():
        cells = []
        for (k, t), o in zip(cols, vals):
            vs = [data.get('BM_Request/%s/%d/real_time/threads:%d' % (a, k, t)) for data in datas]
            vs = [None if v is None else v / 1e3 for v in vs]
            cells.append(' / '.join([f(o)] + [f(v) for v in vs]))
            rows_all.append(('BM_Request ' + title, '%s %d t%d' % (a, k, t), o, vs))
        print('| %s | %s |' % (a, ' | '.join(cells)))
    return data
tree_tables('workload.txt', 'Real work (docs/benchmarks.md, 97e7003)')

# Outside noise: more than 30 % either way, in every run.
def outside():
    print('\n### Summary of the tables above\n')
    total = len(rows_all)
    for i in range(len(DIRS)):
        inside = sum(1 for _, _, o, ns in rows_all if ns[i] is not None and 0.7 <= ns[i] / o <= 1.3)
        faster = sum(1 for _, _, o, ns in rows_all if ns[i] is not None and ns[i] / o < 0.7)
        print('- run %d: %d of %d figures within 0.70 to 1.30 of the documented one, %d below 0.70 (faster), %d above 1.30' %
              (i + 1, inside, total, faster, total - inside - faster))
    anyin = sum(1 for _, _, o, ns in rows_all if any(n is not None and 0.7 <= n / o <= 1.3 for n in ns))
    print('- within 0.70 to 1.30 in at least one run: %d of %d' % (anyin, total))
    print('\n### Outside 0.70 to 1.30 of the documented figure in every run\n')
    for t, l, o, ns in rows_all:
        ns = [n for n in ns if n is not None]
        if ns and all(not (0.7 <= n / o <= 1.3) for n in ns):
            print('- %s: %s: %s -> %s' % (t, l, f(o), ', '.join('%s (%.2f)' % (f(n), n / o) for n in ns)))

# ----- the rest: per-thread workload ratios, latency, Go, memory -----
def rest():
    def pth_ratios():
        p = os.path.join(D, 'perthread_workload.txt')
        if not os.path.exists(p): return
        d = console(p)
        print('\n### Per-thread caches: document trees (docs/benchmarks.md, 8ad4810)\n')
        print('| ratio | documented (100, 1,000, 10,000, 100,000 nodes) | re-measured |')
        print('| --- | --- | --- |')
        def g(a, n, t): return d['BM_Tree/%s/%d/real_time/threads:%d' % (a, n, t)]
        N = (100, 1000, 10000, 100000)
        rows = [('`syncpool_allocator` / `std`, 1 thread', '0.74, 0.53, 0.52, 0.49', [g('syncpool_allocator', n, 1) / g('std', n, 1) for n in N]),
                ('the same, 2 threads', '0.51, 0.51, 0.51, 0.47', [g('syncpool_allocator', n, 2) / g('std', n, 2) for n in N]),
                ('`syncpool` / `new_delete`, 1 thread', '0.42, 0.42, 0.35, 0.39', [g('syncpool', n, 1) / g('new_delete', n, 1) for n in N]),
                ('`syncpool` / `new_delete`, 2 threads', '0.55, 0.62, 0.42, 0.40', [g('syncpool', n, 2) / g('new_delete', n, 2) for n in N]),
                ('`syncpool_allocator` 2 threads / 1 (speedup)', '1.54, 1.63, 1.58, 1.62', [g('syncpool_allocator', n, 1) / g('syncpool_allocator', n, 2) for n in N]),
                ('`std` 2 threads / 1 (speedup)', '1.05 to 1.56', [g('std', n, 1) / g('std', n, 2) for n in N])]
        for l, o, v in rows: print('| %s | %s | %s |' % (l, o, ', '.join('%.2f' % x for x in v)))
        def r(a, k, t): return d['BM_Request/%s/%d/real_time/threads:%d' % (a, k, t)]
        print('| `BM_Request` `syncpool_allocator` / `std`, 4 and 64 KiB, 1 thread | 0.51, 0.57 | %.2f, %.2f |' % (r('syncpool_allocator', 4, 1) / r('std', 4, 1), r('syncpool_allocator', 64, 1) / r('std', 64, 1)))
        print('| the same, 2 threads | 0.50, 0.43 | %.2f, %.2f |' % (r('syncpool_allocator', 4, 2) / r('std', 4, 2), r('syncpool_allocator', 64, 2) / r('std', 64, 2)))
    pth_ratios()

    def result_lines(name):
        p = os.path.join(D, name)
        out = []
        if not os.path.exists(p): return out
        for l in open(p):
            if l.startswith('RESULT '): out.append(l.split()[1:])
        return out

    print('\n### Latency under sweeps (`sweep_latency --seconds=4`)\n')
    print('| run | documented p50 / p99 / p99.9 | re-measured p50 / p99 / p99.9 (largest sample) |')
    print('| --- | --- | --- |')
    for f_, doc in [('sweep_latency.txt', '(2 CPUs: not in the documents; 16 CPUs: 50 / 68 / 162 ns)'), ('perthread_sweep_latency.txt', '30 / 40 / 40 ns (8ad4810)')]:
        for r_ in result_lines(f_):
            kv = dict(x.split('=') for x in r_[1:])
            print('| %s, %s (%s sweeps) | %s | %s / %s / %s ns (%.1f ms) |' % (f_.replace('.txt', ''), r_[0], kv['sweeps'], doc,
                  kv['p50_ns'], kv['p99_ns'], kv['p999_ns'], int(kv['max_ns']) / 1e6))

    p = os.path.join(D, 'go.txt')
    if os.path.exists(p):
        print('\n### Go\'s sync.Pool (`SYNCPOOL_BENCH_COUNT=3 bash scripts/bench_go.sh`; documented at 97e7003: three runs)\n')
        doc = {'Alloc, 1 thread': '99.7 to 101.4 / 7.75 to 8.08 (12.3 to 13.1 x)', 'Pool, 1 thread': '11.16 to 11.25 / 2.01 (5.5 to 5.6 x)',
               'Alloc, 2 threads': '477.5 to 497.4 / 3.90 to 3.97 (122 to 125 x)', 'Pool, 2 threads': '5.63 to 5.67 / 1.06 to 1.07 (5.3 x)'}
        print('| | documented Go / syncpool ns/op | re-measured Go / syncpool ns/op |')
        print('| --- | --- | --- |')
        for l in open(p):
            m = re.match(r'^((?:Alloc|Pool), \d threads?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+x)', l)
            if m: print('| %s | %s | %s / %s (%s) |' % (m.group(1), doc[m.group(1)], m.group(2), m.group(3), m.group(4).replace('x', ' x')))

    def results(name):
        out = {}
        for r_ in result_lines(name):
            kv = dict(x.split('=') for x in r_[1:])
            out.setdefault(r_[0], kv)
        return out
    def fmt(kv): return '%s / %s / %s MiB, %s' % (kv['baseline_mib'], kv['peak_mib'], kv['final_mib'], 'never settles' if kv['settle_ms'] == '-1' else kv['settle_ms'] + ' ms') if kv else 'n/a'

    print('\n### Memory after a burst (docs/memory.md; baseline / peak / final, settle)\n')
    print('| run | documented | re-measured |')
    print('| --- | --- | --- |')
    b = results('burst.txt')
    for res, doc in [('syncpool', '4.6 / 540.2 / 24.3 MiB, 204 ms (c1516d1; 106 to 204 ms in other runs)'),
                     ('synchronized_pool', '4.4 / 519.6 / 316.3 MiB, -1 (316 to 514 MiB in other runs)'),
                     ('unsynchronized_pool', '4.4 / 517.9 / 347.3 MiB, -1'), ('new_delete', '4.4 / 512.0 / 436.7 MiB, -1'),
                     ('mimalloc', '4.4 / 567.3 / 567.3 MiB, -1')]:
        print('| `burst`, %s | %s | %s |' % (res, doc, fmt(b.get(res))))
    q = [results('burst_syncpool_%d.txt' % i).get('syncpool') for i in (1, 2, 3)]
    print('| `burst --resources=syncpool`, three quiet runs: settle (final) | 171, 161, 192 ms (24.4, 24.0, 24.4 MiB); after the refill (97e7003) 245, 233, 156 ms (23.5, 23.3, 22.9) | %s |' %
          ', '.join('%s ms (%s)' % (k['settle_ms'], k['final_mib']) for k in q if k))
    q = [results('burst_syncpool_hogs_%d.txt' % i).get('syncpool') for i in (1, 2, 3)]
    print('| the same with a `yes` per CPU | 275, 370, 269 ms | %s |' % ', '.join(k['settle_ms'] + ' ms' for k in q if k))
    q = [results('burst_syncpool_hogs_fixed_%d.txt' % i).get('syncpool') for i in (1, 2, 3)]
    print('| the same, old fixed limits (`SYNCPOOL_PER_CPU_CLASS_BYTES=65536 SYNCPOOL_MAX_BLOCKS_PER_CLASS=128`) | 199, 199, 231 ms | %s |' % ', '.join(k['settle_ms'] + ' ms' for k in q if k))
    k = results('burst_peak64.txt').get('syncpool')
    if k:
        rem = (float(k['final_mib']) - float(k['baseline_mib'])) / 64 * 100
        print('| `--peak_mib=64`: what stays, share of the burst | 7 %% (just outside the 5 %% band) | %.1f %% (%s) |' % (rem, fmt(k)))
    k = results('burst_new_delete_exit.txt').get('new_delete')
    print('| glibc, threads exit (`--resources=new_delete --workers_exit`) | 5.2 MiB within 16 ms | %s MiB within %s ms |' % (k['final_mib'], k['settle_ms']) if k else '')

    print('\n### Buffers through a burst (docs/memory.md, 93aa9bf): burst, peak, final, settle, largest Get after the outlier\n')
    def outl(name):
        o = {}
        p = os.path.join(D, name)
        if os.path.exists(p):
            for l in open(p):
                m = re.match(r'^(\S+): burst of (\d+) ms', l)
                if m: o.setdefault(m.group(1), {})['burst'] = m.group(2)
                m = re.match(r'^OUTLIER (\S+) largest_get_mib=([\d.]+) oversized=(\d+)', l)
                if m: o.setdefault(m.group(1), {}).update(largest=m.group(2), oversized=m.group(3))
        return o
    print('| child | documented | re-measured |')
    print('| --- | --- | --- |')
    for name, child, doc in [('burst_strings.txt', 'string_pool', '1797 ms, 623.5, 5.6 MiB, 192 ms, 16.0 MiB (oversized=1)'),
                             ('burst_strings.txt', 'string_new', '2481 ms, 563.6, 6.6 MiB, 1 ms'),
                             ('burst_strings_nomax.txt', 'string_pool', '1379 ms, 624.4, 5.4 MiB, 171 ms, 256.0 MiB (oversized=0)')]:
        kv = results(name).get(child); o = outl(name).get(child, {})
        extra = ', %s MiB (oversized=%s)' % (o['largest'], o['oversized']) if child == 'string_pool' and 'largest' in o else ''
        print('| `%s`%s | %s | %s ms, %s, %s MiB, %s ms%s |' % (child, ' (`--max_object_mib=0`)' if 'nomax' in name else '', doc,
              o.get('burst'), kv['peak_mib'], kv['final_mib'], kv['settle_ms'], extra))

    print('\n### What returns mimalloc\'s memory (docs/memory.md\'s investigation; final MiB, settle ms)\n')
    print('The syncpool column differs by design: those runs predate the page discard (7c8727b).\n')
    print('| experiment | documented syncpool | re-measured syncpool | documented mimalloc | re-measured mimalloc |')
    print('| --- | --- | --- | --- | --- |')
    for name, label, ds, dm in [
            ('inv_default.txt', 'as above', '549.5, -1', '559.6, -1'),
            ('inv_free_others.txt', '`--free_others`', '541.7, -1', '570.0, -1'),
            ('inv_owners_collect.txt', '`--owners_collect`', '4.9, 551', '4.7, 528'),
            ('inv_free_others_owners_collect.txt', '`--free_others --owners_collect`', '4.9, 551', '4.7, 553'),
            ('inv_delay0.txt', '`MIMALLOC_DECOMMIT_DELAY=0`', '206.3, -1', '26.7, 4'),
            ('inv_delay0_free_others.txt', '`MIMALLOC_DECOMMIT_DELAY=0 --free_others`', '494.5, -1', '532.3, -1'),
            ('inv_delay0_owners_collect.txt', '`MIMALLOC_DECOMMIT_DELAY=0 --owners_collect`', '4.9, 526', '4.7, 4'),
            ('inv_collect_after_sweep.txt', '`--collect_after_sweep`', '544.8, -1', ''),
            ('inv_delay0_collect_after_sweep.txt', '`MIMALLOC_DECOMMIT_DELAY=0 --collect_after_sweep`', '202.8, -1', ''),
            ('inv_workers_exit.txt', '`--workers_exit`', '540.0, -1', '568.9, -1'),
            ('inv_delay0_workers_exit.txt', '`MIMALLOC_DECOMMIT_DELAY=0 --workers_exit`', '48.5, -1', '5.7, 5'),
            ('inv_workers_exit_collect.txt', '`--workers_exit --collect_after_sweep`', '4.9, 194', ''),
            ('inv_delay0_workers_exit_collect.txt', '`MIMALLOC_DECOMMIT_DELAY=0 --workers_exit --collect_after_sweep`', '4.9, 149', '')]:
        r_ = results(name)
        s_ = r_.get('syncpool'); m_ = r_.get('mimalloc')
        print('| %s | %s | %s | %s | %s |' % (label, ds, '%s, %s' % (s_['final_mib'], s_['settle_ms']) if s_ else '', dm,
              '%s, %s' % (m_['final_mib'], m_['settle_ms']) if m_ else ''))

    print('\n### Retention (docs/memory.md, c1516d1: upstream allocations per second)\n')
    print('| threads | documented working set / victim | re-measured, defaults | re-measured, `SYNCPOOL_REFILL_BYTES=0` |')
    print('| --- | --- | --- | --- |')
    for t, doc in [(1, '805 / 2309 (2.9 x fewer)'), (2, '1761 / 4275 (2.4 x fewer)')]:
        cells = []
        for name in ('retention%d.txt' % t, 'retention%d_refill0.txt' % t):
            r_ = results(name)
            if 'working_set' in r_ and 'victim' in r_:
                w = float(r_['working_set']['upstream_allocations_per_s']); v = float(r_['victim']['upstream_allocations_per_s'])
                cells.append('%.0f / %.0f (%.1f x fewer)' % (w, v, v / w))
            else: cells.append('n/a')
        print('| %d | %s | %s |' % (t, doc, ' | '.join(cells)))
    p = os.path.join(D, 'idle.txt')
    if os.path.exists(p):
        print('\n### An idle process (docs/memory.md, 86736eb: the sweeper\'s thread 0 voluntary context switches in 10 s, 1 in all)\n')
        for l in open(p):
            if l.startswith('total:'): print('Re-measured: ' + l.strip())


outside()
for i, D in enumerate(DIRS):
    print('\n## Run %d: latency, Go, memory' % (i + 1))
    rest()
