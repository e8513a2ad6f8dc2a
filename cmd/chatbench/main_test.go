package main

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func TestTxPerMessage(t *testing.T) {
	for _, c := range []struct {
		name                string
		before, after, sent int64
		want                float64
		wantErr             bool
	}{
		// The first reading's own transaction is not the chat's.
		{"one per message", 100, 1101, 1000, 1.0, false},
		{"a quarter", 0, 251, 1000, 0.25, false},
		{"nothing but the reading", 7, 8, 10, 0, false},
		{"nothing sent", 0, 10, 0, 0, true},
		{"statistics reset", 500, 3, 10, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := txPerMessage(c.before, c.after, c.sent)
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
			if math.Abs(got-c.want) > 1e-9 {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestOnlyLoopbackTargets(t *testing.T) {
	for _, args := range [][]string{
		{"-url", "ws://example.com/ws"},
		{"-url", "ws://10.0.0.1:8080/ws"},
		{"-db", "postgres://postgres@db.example.com:5432/chat"},
		{"-duration", "11m"},
	} {
		var out bytes.Buffer
		err := run(t.Context(), args, &out)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err %v, want a refusal naming %s", args, err, args[0])
		}
	}
}

// TestRefusalsCountedByWindow runs the tool against a WebSocket server of the
// test's own that refuses every frame, as an overloaded chat does: every
// send is refused, and those of the warm-up are not counted as the
// measured window's.
func TestRefusalsCountedByWindow(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
			if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"error","code":"overloaded"}`)); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	var out bytes.Buffer
	args := []string{"-url", "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", "-users", "2", "-rate", "50",
		"-warmup", "500ms", "-duration", "1s", "-settle", "300ms"}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("chatbench: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`sent (\d+), delivered (\d+), refused (\d+) map\[overloaded:\d+\] \((\d+) in the measured window\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no send summary in:\n%s", out.String())
	}
	sent, _ := strconv.Atoi(m[1])
	refused, _ := strconv.Atoi(m[3])
	measured, _ := strconv.Atoi(m[4])
	if sent == 0 || refused != sent {
		t.Fatalf("sent %d, refused %d: the server refused every send\n%s", sent, refused, out.String())
	}
	// At 50/s: about 25 sends in the warm-up and 50 in the window.
	if measured == 0 || measured >= refused {
		t.Errorf("%d of %d refusals counted in the measured window: want the window's alone\n%s", measured, refused, out.String())
	}
}
