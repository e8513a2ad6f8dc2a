package gateway

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleConnectionMemory reports what one idle connection costs the
// gateway. The clients are raw sockets that complete the handshake and then
// hold no goroutine or buffer, so the growth measured is the server's.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	const n = 5000 // both ends live in this process: mind the file limit
	for b.Loop() {
		g := newGateway(Routes{}, Config{})
		srv := httptest.NewServer(g)

		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		goroutines := runtime.NumGoroutine()

		conns := make([]net.Conn, 0, n)
		for range n {
			conns = append(conns, rawDial(b, srv.Listener.Addr().String()))
		}
		// Wait for each connection's reader to park; an idle connection
		// has no writer.
		for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine() < goroutines+n; {
			if time.Now().After(deadline) {
				b.Fatalf("%d goroutines, want %d more than %d", runtime.NumGoroutine(), n, goroutines)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if g.Len() != n {
			b.Fatalf("Len() = %d, want %d", g.Len(), n)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		inuse := func(m *runtime.MemStats) float64 { return float64(m.HeapInuse + m.StackInuse) }
		b.ReportMetric((inuse(&after)-inuse(&before))/n, "B/conn")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stackB/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/n, "goroutines/conn")

		for _, c := range conns {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := g.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		srv.Close()
	}
}

func rawDial(b *testing.B, addr string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("handshake status %d", resp.StatusCode)
	}
	return c
}
