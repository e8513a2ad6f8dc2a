package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/internal/wsproto"
)

// The send path caches who is in which direct conversation; a cached
// conversation still refuses everyone else, on every path that names it.
func TestCachedConversationsRefuseOutsiders(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	dial := wsEnv(t, e)
	conv := e.Conversation(t, 1, 2)
	// Both ways in, so the pair and the participants are cached.
	e.Send(t, 1, map[string]any{"recipient_id": 2, "text_content": "by recipient"})
	e.Send(t, 1, text(conv, "by conversation"))
	e.Send(t, 2, text(conv, "reply"))

	for name, body := range map[string]map[string]any{
		"send to their conversation":    text(conv, "let me in"),
		"send naming both":              {"conversation_id": conv, "recipient_id": 1, "text_content": "let me in"},
		"send with a client id":         {"conversation_id": conv, "text_content": "let me in", "client_message_id": "x-1"},
		"retry another's client id":     {"conversation_id": conv, "text_content": "by conversation", "client_message_id": "x-1"},
		"send to a forged conversation": text(uuid.NewString(), "let me in"),
	} {
		resp := e.Do(t, 3, http.MethodPost, sendPath, body)
		if resp.Status != http.StatusForbidden && resp.Status != http.StatusNotFound {
			t.Errorf("%s: outsider got %d %s, want 403 or 404", name, resp.Status, resp.Body)
		}
	}
	if resp := e.Do(t, 3, http.MethodPost, readPath, map[string]any{"conversation_id": conv, "message_ids": []string{uuid.NewString()}}); resp.Status != http.StatusForbidden {
		t.Errorf("outsider's read receipt in a cached conversation: %d %s", resp.Status, resp.Body)
	}
	outsider := dial(3)
	for name, frame := range map[string]string{
		"sendMessage": `{"action":"sendMessage","data":{"conversationId":"` + conv + `","textContent":"let me in"}}`,
		"typing":      `{"action":"typing","data":{"conversationId":"` + conv + `","isTyping":true}}`,
	} {
		var f wsproto.Error
		if b := roundTrip(t, outsider, frame); json.Unmarshal(b, &f) != nil || f.Code != string(chat.CodeForbidden) {
			t.Errorf("%s: outsider answered %s, want a forbidden error", name, b)
		}
	}
	// The outsider's own direct conversation with user 1 is another one.
	mine := e.Send(t, 3, map[string]any{"recipient_id": 1, "text_content": "hello"})
	if mine.ConversationID == conv {
		t.Fatal("a cached pair answered another pair's conversation")
	}
	e.AwaitIdle(t)
	if got := e.AwaitMessages(t, 1, conv, 3); len(got) != 3 {
		t.Fatalf("conversation holds %d messages, want the participants' 3", len(got))
	}
}

// Beyond capacity, sends are refused at once with a retryable answer, and
// nothing accepted is lost. Fanout does not run in this environment, so its
// queue ages until the test drains it.
func TestOverloadRefusesSends(t *testing.T) {
	t.Parallel()
	const limit = 150 * time.Millisecond
	e := pipelinetest.New(t, pipelinetest.Options{OverloadQueueAge: limit})
	dial := wsEnv(t, e)
	alice := dial(1)
	conv := e.Conversation(t, 1, 2)
	accepted := []string{e.Send(t, 1, map[string]any{"conversation_id": conv, "text_content": "before", "client_message_id": "ok-1"}).ID}

	pipelinetest.Eventually(t, "the backlog to exceed its limit", func() (bool, string) {
		return e.Backlog.Overloaded(), fmt.Sprintf("oldest event %s old", e.Backlog.Age())
	})
	archived := e.Count(t, "event_archive")
	refused := map[string]any{"conversation_id": conv, "text_content": "refused", "client_message_id": "late-1"}
	resp := e.Do(t, 1, http.MethodPost, sendPath, refused)
	wantError(t, "REST send", resp, http.StatusServiceUnavailable, chat.CodeOverloaded)
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("overloaded REST send: Retry-After %q, want 1", ra)
	}
	var f wsproto.Error
	b := roundTrip(t, alice, `{"action":"sendMessage","data":{"conversationId":"`+conv+`","textContent":"refused","clientMessageId":"late-2"}}`)
	if err := json.Unmarshal(b, &f); err != nil || f.Type != wsproto.TypeError || f.Code != string(chat.CodeOverloaded) ||
		f.Action != wsproto.ActionSendMessage || f.RetryAfterMs != chat.RetryAfter.Milliseconds() {
		t.Fatalf("overloaded WebSocket send answered %s", b)
	}
	// A typing frame is dropped without a reply (the next reply is the
	// ping's) and enqueues nothing.
	typing := e.Count(t, "queue_fanout")
	if err := alice.WriteMessage(websocket.TextMessage, []byte(`{"action":"typing","data":{"conversationId":"`+conv+`","isTyping":true}}`)); err != nil {
		t.Fatal(err)
	}
	if b := roundTrip(t, alice, `{"action":"ping"}`); !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("after an overloaded typing frame the next reply is %s, want the pong", b)
	}
	if n := e.Count(t, "queue_fanout"); n != typing {
		t.Fatalf("an overloaded typing frame enqueued %d events", n-typing)
	}
	// Reads are never refused; receipts are accepted (see chat.Service.admit).
	e.MustDo(t, 2, http.MethodGet, messagesPath(conv), nil, http.StatusOK, nil)
	e.MustDo(t, 2, http.MethodPost, readPath, map[string]any{"conversation_id": conv, "message_ids": accepted}, http.StatusOK, nil)
	if n := e.Count(t, "event_archive"); n != archived+1 { // the receipt
		t.Fatalf("%d events archived while overloaded, want only the receipt's", n-archived)
	}
	var n int
	if err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM message_requests WHERE client_message_id LIKE 'late-%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused sends claimed %d client ids (err %v): a retry would not be a first attempt", n, err)
	}

	// The consumer catches up (here: its queue is drained): sends flow again
	// and the refused one, retried with its id, is a new message.
	if _, err := e.Pool.Exec(context.Background(), `DELETE FROM queue_fanout`); err != nil {
		t.Fatal(err)
	}
	pipelinetest.Eventually(t, "the backlog to clear", func() (bool, string) {
		return !e.Backlog.Overloaded(), fmt.Sprintf("oldest event %s old", e.Backlog.Age())
	})
	accepted = append(accepted, e.Send(t, 1, refused).ID)
	e.AwaitIdle(t)
	got := e.AwaitMessages(t, 2, conv, 2)
	if len(got) != 2 || got[0].ID != accepted[0] || got[1].ID != accepted[1] {
		t.Fatalf("stored %v, want the accepted %v", idsOf(got), accepted)
	}
}

// TestIngressTransactionsPerSend counts the PostgreSQL transactions that a
// WebSocket send with a clientMessageId costs at ingress (persister and
// fanout stopped), everything included: the connection lookup, the
// conversation's checks, the claim, the publish, the waker's NOTIFY.
func TestIngressTransactionsPerSend(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for PostgreSQL's statistics to be flushed")
	}
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{NoPersister: true})
	dial := wsEnv(t, e)
	alice := dial(1)
	conv := e.Conversation(t, 1, 2)
	send := func(i int, by string) {
		data := `"conversationId":"` + conv + `"`
		if by == "recipient" {
			data = `"recipientId":2`
		}
		b := roundTrip(t, alice, fmt.Sprintf(`{"action":"sendMessage","data":{%s,"textContent":"n%d","clientMessageId":"tx-%s-%d"}}`, data, i, by, i))
		var ack wsproto.Acknowledgment
		if err := json.Unmarshal(b, &ack); err != nil || ack.Type != wsproto.TypeAcknowledgment {
			t.Fatalf("send %d answered %s", i, b)
		}
	}
	send(0, "conversation")
	send(0, "recipient")

	// A backend reports its transactions when it exits, or within about a
	// second while busy and ten when idle: close the pool's connections and
	// wait that out before each reading.
	xacts := func() int64 {
		e.Pool.Reset()
		time.Sleep(11 * time.Second)
		conn, err := pgx.Connect(context.Background(), e.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int64
		if err := conn.QueryRow(context.Background(),
			`SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := xacts()
	const sends = 100
	for i := range sends / 2 {
		send(i+1, "conversation")
		send(i+1, "recipient")
	}
	after := xacts()
	perSend := float64(after-before-1) / sends // -1: the first reading's own
	t.Logf("ingress: %.2f PostgreSQL transactions per WebSocket send (%d over %d sends)", perSend, after-before-1, sends)
	if perSend > 2.5 {
		t.Fatalf("%.2f transactions per send at ingress, want at most 2.5", perSend)
	}
}
