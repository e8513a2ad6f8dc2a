package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/internal/wsproto"
)

// tight allows one write of each kind given, then refuses for about 1000 s;
// the other kinds are not limited.
func tight(kinds ...chat.Write) chat.Limits {
	limits := chat.DefaultLimits()
	limits.Rates = chat.Rates{}
	for _, w := range kinds {
		limits.Rates[w] = chat.Rate{PerSecond: 0.001, Burst: 1}
	}
	return limits
}

// wantRateLimited checks a REST refusal for the rate: 429, the coded
// body, and Retry-After in whole seconds (the bucket refills in 1000 s).
func wantRateLimited(t *testing.T, name string, r pipelinetest.Response) {
	t.Helper()
	wantError(t, name, r, http.StatusTooManyRequests, chat.CodeRateLimited)
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 || n > 1000 {
		t.Errorf("%s: Retry-After %q, want whole seconds up to 1000", name, r.Header.Get("Retry-After"))
	}
}

// Every REST write has its own per-user limit: over it the answer is 429
// with Retry-After, nothing is written, and other users and other kinds of
// writes are not affected.
func TestEveryRESTWriteIsRateLimited(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{Limits: tight(chat.WriteSend, chat.WriteRead, chat.WriteSettings)})
	conv := e.Conversation(t, 1, 2)
	m := e.Send(t, 2, text(conv, "to be read and deleted"))
	e.AwaitMessages(t, 1, conv, 1)
	settings := convPath(conv) + "/settings"
	post, patch, del := http.MethodPost, http.MethodPatch, http.MethodDelete

	for _, c := range []struct {
		name         string
		method, path string
		body         any
	}{
		{"send", post, sendPath, text(conv, "hi")},
		{"read receipt", post, readPath, map[string]any{"message_ids": []string{m.ID}}},
		{"settings", patch, settings, map[string]any{"pinned": true}},
	} {
		first := e.Do(t, 1, c.method, c.path, c.body)
		if first.Status/100 != 2 {
			t.Fatalf("%s: the first answered %d %s", c.name, first.Status, first.Body)
		}
		e.AwaitIdle(t)
		before := counts(t, e)
		wantRateLimited(t, c.name+" over the limit", e.Do(t, 1, c.method, c.path, c.body))
		if after := counts(t, e); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("%s: a refused write stored something: before %v, after %v", c.name, before, after)
		}
	}
	// Settings changes and deletions share one limit.
	wantRateLimited(t, "delete a conversation", e.Do(t, 1, del, convPath(conv), nil))
	wantRateLimited(t, "delete a message", e.Do(t, 1, del, api.Prefix+"/messages/"+m.ID, nil))
	// Other users have buckets of their own.
	e.Send(t, 3, map[string]any{"recipient_id": 1, "text_content": "another user"})
	e.MustDo(t, 2, patch, settings, map[string]any{"muted": true}, http.StatusAccepted, nil)
}

// Creating conversations is limited per user and hour, so that nobody can
// fill strangers' conversation lists; a conversation that exists costs
// nothing, however it is asked for.
func TestNewConversationsAreRateLimited(t *testing.T) {
	t.Parallel()
	limits := tight()
	limits.Rates[chat.WriteConversation] = chat.Rate{PerSecond: 5.0 / 3600, Burst: 5}
	e := pipelinetest.New(t, pipelinetest.Options{Limits: limits})
	accepted := 0
	for to := int64(1000); to < 1200; to++ {
		r := e.Do(t, 1, http.MethodPost, api.Prefix+"/conversations", map[string]any{"recipient_id": to})
		switch r.Status {
		case http.StatusOK:
			accepted++
		case http.StatusTooManyRequests:
			wantRateLimited(t, "a conversation over the limit", r)
		default:
			t.Fatalf("conversation with %d: %d %s", to, r.Status, r.Body)
		}
	}
	if accepted != 5 || e.Count(t, "conversations") != 5 {
		t.Fatalf("%d of 200 conversations accepted, %d stored; want 5", accepted, e.Count(t, "conversations"))
	}
	// A first message to someone new creates a conversation too.
	wantRateLimited(t, "a message to someone new", e.Do(t, 1, http.MethodPost, sendPath, map[string]any{"recipient_id": 2000, "text_content": "hi"}))
	// Existing conversations are still there, from either side.
	e.MustDo(t, 1, http.MethodPost, api.Prefix+"/conversations", map[string]any{"recipient_id": 1000}, http.StatusOK, nil)
	e.Send(t, 1, map[string]any{"recipient_id": 1001, "text_content": "hi"})
	e.MustDo(t, 1002, http.MethodPost, api.Prefix+"/conversations", map[string]any{"recipient_id": 1}, http.StatusOK, nil)
	// Another user creates their own.
	e.Conversation(t, 7, 8)
}

// WebSocket writes are limited per user too: over the limit an error
// frame carries the code and when to retry; typing beyond its rate is
// dropped without an answer and without an event.
func TestEveryWebSocketWriteIsRateLimited(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{Limits: tight(chat.WriteSend, chat.WriteRead, chat.WritePing, chat.WriteTyping)})
	conv := e.Conversation(t, 1, 2)
	m := e.Send(t, 2, text(conv, "to be read"))
	e.AwaitMessages(t, 1, conv, 1)
	dial := wsEnv(t, e)
	alice := dial(1)

	wantRefused := func(name string, b []byte) {
		t.Helper()
		var f wsproto.Error
		if err := json.Unmarshal(b, &f); err != nil || f.Type != wsproto.TypeError || f.Code != string(chat.CodeRateLimited) || f.RetryAfterMs < 1 || f.Message == "" {
			t.Fatalf("%s answered %s, want a rate_limited error frame with retryAfterMs", name, b)
		}
	}
	send := `{"action":"sendMessage","data":{"conversationId":"` + conv + `","textContent":"hi"}}`
	read := `{"action":"markRead","data":{"conversationId":"` + conv + `","messageIds":["` + m.ID + `"]}}`
	for name, frame := range map[string]string{"sendMessage": send, "markRead": read} {
		if b := roundTrip(t, alice, frame); strings.Contains(string(b), `"error"`) {
			t.Fatalf("the first %s answered %s", name, b)
		}
		wantRefused(name+" over the limit", roundTrip(t, alice, frame))
	}
	if got := string(roundTrip(t, alice, `{"action":"ping"}`)); got != `{"type":"pong"}` {
		t.Fatalf("the first ping answered %s", got)
	}
	wantRefused("ping over the limit", roundTrip(t, alice, `{"action":"ping"}`))

	// 1,000 typing frames make one event; frames are handled in order, so
	// the answer to the frame after them says all were handled.
	typing := `{"action":"typing","data":{"conversationId":"` + conv + `","isTyping":true}}`
	for range 1000 {
		if err := alice.WriteMessage(websocket.TextMessage, []byte(typing)); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused("the frame after the typing", roundTrip(t, alice, `{"action":"ping"}`))
	if n := e.Count(t, `queue_fanout WHERE type = 'Typing'`); n != 1 {
		t.Fatalf("1,000 typing frames made %d events, want 1", n)
	}
}

// Connections are limited per user: over the limit the upgrade is refused
// with 429 and Retry-After, before anything is recorded or published.
func TestWebSocketConnectionsAreRateLimited(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{Limits: tight(chat.WriteConnect)})
	url, dial := wsServer(t, e)
	dial(1)
	before := e.Count(t, "ws_connections")
	token := strings.TrimPrefix(pipelinetest.Auth(1).Get("Authorization"), "Bearer ")
	_, resp, err := websocket.DefaultDialer.Dial(url+"?token="+token, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second connection: %v %+v, want 429", err, resp)
	}
	resp.Body.Close()
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if n := e.Count(t, "ws_connections"); n != before {
		t.Fatalf("a refused connection was recorded (%d records, were %d)", n, before)
	}
	dial(2) // another user connects
}
