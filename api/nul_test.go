package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/parleychat/parley/internal/pipelinetest"
)

// A NUL character cannot be stored by PostgreSQL: it is refused at the edge
// with a reason, and legitimate sends made at the same time by other users
// (which may share a publish statement with it) all succeed.
func TestNULIsRefusedAloneAtTheEdge(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const n = 40
	status := make([]int, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("hello %d", i)
			from := int64(100 + i)
			if i%2 == 1 {
				text = "bad \x00 text" // encoded as \u0000 in the JSON body
			}
			status[i] = e.Do(t, from, http.MethodPost, "/api/v1/chat/messages", map[string]any{
				"recipient_id": from + 1000, "content_type": "text", "text_content": text,
			}).Status
		}()
	}
	wg.Wait()
	for i, s := range status {
		want := http.StatusOK
		if i%2 == 1 {
			want = http.StatusUnprocessableEntity
		}
		if s != want {
			t.Errorf("send %d answered %d, want %d", i, s, want)
		}
	}
	r := e.Do(t, 1, http.MethodPost, "/api/v1/chat/messages", map[string]any{
		"recipient_id": 2, "content_type": "text", "text_content": "x", "client_message_id": "c\x00",
	})
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `client_message_id`) || !strings.Contains(string(r.Body), "NUL") {
		t.Fatalf("NUL in client_message_id: %d %s", r.Status, r.Body)
	}

	// Over WebSocket the reason names the field as the client wrote it.
	c := wsEnv(t, e)(7)
	got := string(roundTrip(t, c, `{"action":"sendMessage","data":{"recipientId":8,"textContent":"a\u0000b"}}`))
	if !strings.Contains(got, `"code":"invalid_argument"`) || !strings.Contains(got, `textContent`) {
		t.Fatalf("WebSocket send with NUL answered %s", got)
	}
}
