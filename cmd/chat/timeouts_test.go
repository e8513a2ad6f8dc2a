package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// Every HTTP listener of the binary drops a client that dribbles its
// request and closes kept-alive connections left idle; an upload's body
// has its own, longer deadline, and WebSocket connections are not bound by
// either.
func TestHTTPTimeouts(t *testing.T) {
	e := newEnv(t)
	e.extra = []string{"CHAT_HTTP_READ_TIMEOUT=1s", "CHAT_HTTP_IDLE_TIMEOUT=1s", "CHAT_HTTP_UPLOAD_TIMEOUT=1m"}
	dev := e.start("dev")
	e.waitHTTP(dev)

	listeners := map[string]string{"REST and /ws": e.http, "management API": e.admin}
	for name, addr := range listeners {
		t.Run("a dribbled body is cut off on the "+name+" listener", func(t *testing.T) {
			const size = 200 // bytes, one every 50 ms: 10 s to send it all
			c := connect(t, addr)
			fmt.Fprintf(c, "POST /api/v1/chat/messages HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, e.token(1), size)
			var sent atomic.Int64
			go func() {
				for range size {
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
					sent.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, c) // until the server closes the connection
			if n := sent.Load(); n >= size {
				t.Fatalf("the server waited for all %d dribbled bytes", n)
			}
		})
	}
	// The embedded S3 gives each request the upload deadline (a minute
	// here), but closes idle connections all the same.
	listeners["embedded S3"] = e.s3
	for name, addr := range listeners {
		t.Run("an idle kept-alive connection is closed on the "+name+" listener", func(t *testing.T) {
			c := connect(t, addr)
			fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := r.ReadByte(); err != io.EOF {
				t.Fatalf("an idle connection read %v, want the server to close it (EOF)", err)
			}
		})
	}

	t.Run("an upload slower than the read timeout goes through", func(t *testing.T) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("file", "photo.jpg")
		_, _ = fw.Write(testJPEG(t, 400, 300))
		_ = mw.Close()
		pr, pw := io.Pipe()
		go func() {
			// Four parts, 600 ms apart: about 2 s for the body.
			b := body.Bytes()
			for i := range 4 {
				if _, err := pw.Write(b[i*len(b)/4 : (i+1)*len(b)/4]); err != nil {
					return
				}
				time.Sleep(600 * time.Millisecond)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", "http://"+e.http+"/api/v1/chat/upload", pr)
		req.ContentLength = int64(body.Len())
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+e.token(1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("slow upload: status %d: %s", resp.StatusCode, raw)
		}
	})

	t.Run("a WebSocket connection outlives both", func(t *testing.T) {
		c := e.dial(1)
		// Past the read and idle timeouts: a deadline left on the hijacked
		// connection would have fired by now.
		time.Sleep(1500 * time.Millisecond)
		c.send(map[string]any{"action": "ping"})
		c.expect("pong", nil)
	})
}

func connect(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
