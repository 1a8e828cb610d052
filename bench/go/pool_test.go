// Go's side of the Alloc-vs-Pool comparison: sync.Pool against a fresh heap allocation of a
// 1 KiB buffer, the Go counterpart of //bench:pool_bench's BM_Seed_Alloc and BM_Seed_Pool.
// Run it with `bash scripts/bench_go.sh`, which puts both sides in one table, or alone with
// (standard library only; nothing is downloaded):
//
//	cd bench/go && GOTOOLCHAIN=local GOPROXY=off go test -run '^$' -bench . -benchmem -cpu 1,2
//
// BenchmarkAlloc and BenchmarkPool run on one goroutine; BenchmarkAllocParallel and
// BenchmarkPoolParallel run on GOMAXPROCS goroutines (b.RunParallel), so with -cpu 2 their
// ns/op is the wall time divided by the operations of both workers.
package bench

import (
	"sync"
	"sync/atomic"
	"testing"
)

const bufSize = 1024

// sink is where BenchmarkAlloc stores every buffer it allocates. Because the pointer is
// stored in a package-level variable, escape analysis has to put each buffer on the heap:
// without it the compiler would keep the array on the stack (or drop it), and the benchmark
// would measure nothing. `go test -benchmem` confirms it: 1024 B/op, 1 allocs/op.
var sink *[bufSize]byte

// slot is one parallel worker's sink, padded so that two workers never write the same cache
// line (nor an adjacent-line prefetch pair): a single shared sink would measure cache-line
// ping-pong (and be a data race) instead of the allocator.
type slot struct {
	buf *[bufSize]byte
	_   [120]byte
}

var (
	// slots are the sinks of BenchmarkAllocParallel's workers; being a package-level array,
	// they force each allocation onto the heap just as sink does.
	slots [64]slot
	// workers numbers the workers of BenchmarkAllocParallel, to hand each its own slot.
	// The workers of one RunParallel call get consecutive numbers, so they never share a slot.
	workers uint32
)

// pool hands out 1 KiB buffers, making one with New when it has none cached.
var pool = sync.Pool{
	New: func() any { return new([bufSize]byte) },
}

// BenchmarkAlloc allocates a 1 KiB buffer on the heap every iteration (it escapes via sink)
// and leaves it to the garbage collector.
func BenchmarkAlloc(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sink = new([bufSize]byte)
	}
}

// BenchmarkPool takes a 1 KiB buffer from a sync.Pool and puts it back every iteration.
func BenchmarkPool(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf := pool.Get().(*[bufSize]byte)
		pool.Put(buf)
	}
}

// BenchmarkAllocParallel is BenchmarkAlloc on GOMAXPROCS goroutines, each storing its
// buffers in its own slot (so every allocation escapes to the heap, as in BenchmarkAlloc).
func BenchmarkAllocParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := &slots[atomic.AddUint32(&workers, 1)%uint32(len(slots))]
		for pb.Next() {
			s.buf = new([bufSize]byte)
		}
	})
}

// BenchmarkPoolParallel is BenchmarkPool on GOMAXPROCS goroutines sharing one sync.Pool.
func BenchmarkPoolParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			buf := pool.Get().(*[bufSize]byte)
			pool.Put(buf)
		}
	})
}
