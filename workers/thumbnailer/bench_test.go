package thumbnailer_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/workers/thumbnailer"
)

// BenchmarkHandleImage4000x3000 runs the worker's whole Handle path for a
// 12-megapixel phone photo: fetch from the embedded S3 server over
// loopback HTTP, decode, scale to 320 px, encode, store, publish.
//
//	go test -run '^$' -bench HandleImage -benchtime 20x ./workers/thumbnailer/
//
// serial is one consumer; parallel-2 is the bus's default of two consumers
// sharing the queue (each with its own original, so thumbnails are made,
// not reused; its loop includes one S3 DELETE per thumbnail). peak-RSS-MB
// is the process's high-water mark (VmHWM), which includes the test's own
// 4000x3000 fixture and the in-process S3 server; setup-RSS-MB is that mark
// before the first thumbnail.
func BenchmarkHandleImage4000x3000(b *testing.B) {
	store := mediatest.Store(b, nil)
	photo := mediatest.Photo(b, 4000, 3000)
	keys := make([]string, 2)
	for i := range keys {
		keys[i] = upload(b, store, 1, photo).Key
	}
	th := thumbnailer.New(store, &recorder{}, thumbnailer.Config{}, nil)
	setupHWM := peakRSSMB(b)
	ctx := context.Background()

	handle := func(b *testing.B, key string) {
		env, _ := sentEvent(b, events.ContentImage, key, nil)
		if err := th.Handle(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(int64(len(photo)))
		b.ReportAllocs()
		for range b.N {
			b.StopTimer()
			if err := store.Delete(ctx, media.ThumbnailKey(keys[0])); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			handle(b, keys[0])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "thumbs/s")
		b.ReportMetric(setupHWM, "setup-RSS-MB")
		b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
	})
	b.Run("parallel-2", func(b *testing.B) {
		b.SetBytes(int64(len(photo)))
		b.ReportAllocs()
		b.SetParallelism(1) // with GOMAXPROCS 2: two goroutines
		var next atomic.Int32
		b.RunParallel(func(pb *testing.PB) {
			key := keys[int(next.Add(1)-1)%len(keys)]
			for pb.Next() {
				if err := store.Delete(ctx, media.ThumbnailKey(key)); err != nil {
					b.Error(err)
					return
				}
				handle(b, key)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "thumbs/s")
		b.ReportMetric(setupHWM, "setup-RSS-MB")
		b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
	})
}

// peakRSSMB reads the process's resident set high-water mark (Linux).
func peakRSSMB(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb / 1024
		}
	}
	b.Skip("no VmHWM in /proc/self/status")
	return 0
}
