package contracttest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TestGoldenFramesPass: the validator takes the protocol's golden frames,
// so what the tap refuses below is refused for the right reason.
func TestGoldenFramesPass(t *testing.T) {
	f, err := AsyncAPI()
	if err != nil {
		t.Fatal(err)
	}
	golden, err := filepath.Glob(filepath.Join("..", "wsproto", "testdata", "*.json"))
	if err != nil || len(golden) == 0 {
		t.Fatalf("no golden frames (%v)", err)
	}
	for _, path := range golden {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		check := f.Server
		if strings.HasPrefix(filepath.Base(path), "action.") {
			check = f.Client
		}
		if err := check(raw); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// TestTapChecksEveryFrame runs a real WebSocket server that answers each
// client frame with a scripted reply, some off the contract, and checks
// the tapped dialer reports exactly those.
func TestTapChecksEveryFrame(t *testing.T) {
	const ack = `{"type":"acknowledgment","messageId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","conversationId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","createdAt":"2026-03-14T15:09:26Z"}`
	replies := map[string][]string{
		`{"action":"ping"}`:                          {`{"type":"pong"}`},
		`{"action":"ping","extra":1}`:                {`{"type":"error","code":"bad_request","message":"frame must be {action,data}"}`},
		`{"action":"fly"}`:                           {},         // refused by the document, not by the server
		`{"action":"ping","again":true}`:             {ack[:40]}, // a cut frame: not JSON
		`{"action":"ping","big":"` + big + `"}`:      {`{"type":"pong","colour":"red"}`},
		`{"action":"ping","fragmented":"yes"}`:       {`{"type":"newMessage","data":{}}`},
		`{"action":"sendMessage","data":{"x":true}}`: {ack},
	}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			for _, reply := range replies[string(b)] {
				if err := c.WriteMessage(websocket.TextMessage, []byte(reply)); err != nil {
					return
				}
			}
			if strings.Contains(string(b), "fragmented") {
				// A fragmented message: reassembled before it is checked.
				wc, _ := c.NextWriter(websocket.TextMessage)
				_, _ = wc.Write([]byte(`{"type":`))
				_, _ = wc.Write([]byte(strings.Repeat(" ", 5000) + `"pong"}`))
				_ = wc.Close()
			}
		}
	}))
	t.Cleanup(srv.Close)
	frames, err := AsyncAPI()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{frames: frames}
	c, _, err := rec.dialer().Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for frame, reply := range replies {
		if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		n := len(reply)
		if strings.Contains(frame, "fragmented") {
			n++
		}
		for range n {
			if _, _, err := c.ReadMessage(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = c.Close()
	problems := rec.report()
	joined := strings.Join(problems, "\n")
	// Off the contract from the server: the cut frame, the extra field
	// and the empty newMessage. From the client: six frames the document
	// refuses against one error frame.
	for _, s := range []string{"is not JSON", "colour", "newMessage", "6 client frames are off the AsyncAPI contract but only 1 error frames"} {
		if !strings.Contains(joined, s) {
			t.Errorf("no problem mentions %q; got:\n%s", s, joined)
		}
	}
	if len(problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(problems), joined)
	}
}

var big = strings.Repeat("x", 70000) // a payload with a 64-bit length
