package api_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/pipelinetest"
)

// BenchmarkSendToPersisted sends b.N text messages through the real HTTP
// handler, the PostgreSQL bus and the persister (its default consumer),
// from several senders at once, each in a conversation of its own, and waits
// until all are stored. The requests skip the tests' OpenAPI check, which
// would take as much CPU as the handler from the cores it shares. It reports:
//
//   - persisted_msgs/s: b.N over the time from the first send until the
//     last message is stored;
//   - p50_ms, p99_ms, max_ms: per-message latency from ingress (created_at,
//     stamped by the API before publishing) to the persister's insert
//     (sent_at, stamped in the storing transaction; its commit follows).
//
// ns/op is the same measure as persisted_msgs/s, inverted.
//
//	go test -run '^$' -bench BenchmarkSendToPersisted -benchtime 2000x ./api/
func BenchmarkSendToPersisted(b *testing.B) {
	for _, senders := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			benchSendToPersisted(b, senders)
		})
	}
}

func benchSendToPersisted(b *testing.B, senders int) {
	e := pipelinetest.New(b, pipelinetest.Options{})
	ctx := context.Background()
	convs := make([]string, senders)
	for i := range convs {
		convs[i] = e.Conversation(b, int64(2*i+1), int64(2*i+2))
	}
	// Warm up connections and caches outside the measurement.
	e.Send(b, 1, text(convs[0], "warm-up"))
	e.AwaitIdle(b)
	if _, err := e.Pool.Exec(ctx, `TRUNCATE messages CASCADE`); err != nil {
		b.Fatal(err)
	}

	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			header := pipelinetest.Auth(int64(2*s + 1))
			for next.Add(1) <= int64(b.N) {
				resp, err := e.RequestUnchecked(header, http.MethodPost, sendPath, text(convs[s], "benchmark message"))
				if err == nil && resp.Status != http.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d messages stored after a minute", n, b.N)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	var p50, p99, worst float64
	if err := e.Pool.QueryRow(ctx, `SELECT
		percentile_cont(0.5) WITHIN GROUP (ORDER BY lat),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY lat),
		max(lat)
		FROM (SELECT extract(epoch FROM sent_at - created_at) * 1000 AS lat FROM messages) l`).Scan(&p50, &p99, &worst); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "persisted_msgs/s")
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(worst, "max_ms")
}
