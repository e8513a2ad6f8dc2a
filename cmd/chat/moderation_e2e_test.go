package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBlocking runs `chat dev` with real WebSocket clients: while A (1)
// blocks B (2), nothing B sends reaches A, B is told nothing, A keeps the
// history, and B cannot start a conversation with a user who blocks them.
func TestBlocking(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))
	const a, b, c = int64(1), int64(2), int64(3)

	first := e.send(b, a, "before the block")
	conv := first.ConversationID
	e.messages(a, conv, 1)
	wa, wb := e.dial(a), e.dial(b)

	// Bad input is refused with a reason.
	for _, tc := range []struct {
		body any
		want int
	}{
		{map[string]any{"user_id": 0}, 422},
		{map[string]any{"user_id": a}, 422},
		{map[string]any{"user_id": "x"}, 400},
		{map[string]any{"user": 2}, 400},
	} {
		var body map[string]map[string]string
		if got := e.call(a, "POST", "/blocks", tc.body, &body); got != tc.want || body["error"]["message"] == "" {
			t.Errorf("POST /blocks %v: status %d, body %v; want %d with a reason", tc.body, got, body, tc.want)
		}
	}
	if got := e.call(a, "DELETE", "/blocks/abc", nil, nil); got != 400 {
		t.Errorf("DELETE /blocks/abc: status %d, want 400", got)
	}

	// A blocks B, twice: the same block.
	var blk struct {
		UserID    int64     `json:"user_id"`
		CreatedAt time.Time `json:"created_at"`
	}
	var firstAt time.Time
	for i := range 2 {
		if got := e.call(a, "POST", "/blocks", map[string]any{"user_id": b}, &blk); got != 200 || blk.UserID != b {
			t.Fatalf("block: status %d, %+v", got, blk)
		}
		if i == 0 {
			firstAt = blk.CreatedAt
			time.Sleep(2 * time.Millisecond) // a second block at a later time
		} else if !blk.CreatedAt.Equal(firstAt) {
			t.Errorf("blocking again answered created_at %v, want the block's own %v", blk.CreatedAt, firstAt)
		}
	}
	var list struct {
		Data []struct {
			UserID int64 `json:"user_id"`
		} `json:"data"`
	}
	if got := e.call(a, "GET", "/blocks", nil, &list); got != 200 || len(list.Data) != 1 || list.Data[0].UserID != b {
		t.Fatalf("GET /blocks: status %d, %+v", got, list)
	}

	// B sends over WebSocket and types: B gets the usual acknowledgment,
	// A gets nothing, and B never learns of a delivery.
	wb.send(map[string]any{"action": "sendMessage", "data": map[string]any{"recipientId": a, "textContent": "while blocked", "clientMessageId": "blocked-1"}})
	ack := wb.expect("acknowledgment", nil)
	withheld, _ := ack["messageId"].(string)
	if withheld == "" || ack["conversationId"] != conv {
		t.Fatalf("acknowledgment = %v", ack)
	}
	wb.send(map[string]any{"action": "typing", "data": map[string]any{"conversationId": conv, "recipientId": a, "isTyping": true}})
	overREST := e.send(b, a, "also while blocked")
	wa.quiet("newMessage", 700*time.Millisecond)
	wa.quiet("typing", 100*time.Millisecond)
	wb.quiet("messageDelivered", 100*time.Millisecond)

	// B keeps both messages; A sees neither: not listed, not counted, not
	// the conversation's preview.
	if got := e.messages(b, conv, 3); got[1].ID != withheld || got[2].ID != overREST.ID {
		t.Fatalf("B's messages = %+v", got)
	}
	// Stored in the transaction that hid them from A.
	if got := e.catchUp(a, conv, 0); len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("A's messages = %+v, want only %s", got, first.ID)
	}
	var view struct {
		UnreadCount int64 `json:"unread_count"`
		LastMessage struct {
			ID string `json:"id"`
		} `json:"last_message"`
	}
	if got := e.call(a, "GET", "/conversations/"+conv, nil, &view); got != 200 || view.UnreadCount != 1 || view.LastMessage.ID != first.ID {
		t.Fatalf("A's conversation: status %d, %+v; want 1 unread, last %s", got, view, first.ID)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM messages WHERE id = $1 AND delivered_at IS NULL`, withheld); n != 1 {
		t.Fatalf("withheld message stored undelivered: %d rows", n)
	}

	// A user who blocks B cannot be reached by a new conversation, nor can
	// the blocker start one.
	if got := e.call(c, "POST", "/blocks", map[string]any{"user_id": b}, nil); got != 200 {
		t.Fatalf("block as %d: status %d", c, got)
	}
	var refusal map[string]map[string]string
	if got := e.call(b, "POST", "/conversations", map[string]any{"recipient_id": c}, &refusal); got != 403 || refusal["error"]["code"] != "forbidden" {
		t.Fatalf("B starts a conversation with a blocker: status %d, %v", got, refusal)
	}
	if got := e.call(b, "POST", "/messages", map[string]any{"recipient_id": c, "text_content": "hi"}, nil); got != 403 {
		t.Fatalf("B messages a blocker without a conversation: status %d", got)
	}
	if got := e.call(c, "POST", "/conversations", map[string]any{"recipient_id": b}, nil); got != 403 {
		t.Fatalf("the blocker starts a conversation: status %d", got)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM conversations WHERE direct_key = $1`, fmt.Sprintf("%d:%d", b, c)); n != 0 {
		t.Fatalf("%d conversations of B and C exist", n)
	}

	// A conversation its blocker deleted stays deleted: a withheld message
	// does not bring it back, nor move it.
	const f = int64(5)
	old := e.send(b, f, "before").ConversationID
	e.messages(f, old, 1)
	if got := e.call(f, "DELETE", "/conversations/"+old, nil, nil); got != 202 {
		t.Fatalf("delete the conversation: status %d", got)
	}
	var convs struct {
		Total int `json:"total"`
	}
	waitUntil(t, "the deletion is applied", func() bool {
		return e.call(f, "GET", "/conversations", nil, &convs) == 200 && convs.Total == 0
	})
	if got := e.call(f, "POST", "/blocks", map[string]any{"user_id": b}, nil); got != 200 {
		t.Fatalf("block as %d: status %d", f, got)
	}
	e.send(b, f, "withheld")
	e.messages(b, old, 2)
	var list5 struct {
		Data  []map[string]any `json:"data"`
		Total int              `json:"total"`
	}
	if got := e.call(f, "GET", "/conversations", nil, &list5); got != 200 || list5.Total != 0 || len(list5.Data) != 0 {
		t.Fatalf("the blocker's conversations after a withheld message: status %d, %+v", got, list5)
	}

	// Unblocked: B reaches A again, at once.
	if got := e.call(a, "DELETE", fmt.Sprintf("/blocks/%d", b), nil, nil); got != 200 {
		t.Fatalf("unblock: status %d", got)
	}
	after := e.send(b, a, "after the unblock")
	wa.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == after.ID })
	if got := e.messages(a, conv, 2); got[len(got)-1].ID != after.ID {
		t.Fatalf("A's messages after the unblock = %+v", got)
	}
}

// TestReports files reports over REST against `chat dev` and lists them
// with `chat reports list`: the reported message's content is kept as it
// was, bad reports are refused with a reason, and a retry files nothing new.
func TestReports(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))
	const a, b, c = int64(1), int64(2), int64(3)
	abuse := e.send(b, a, "an abusive\tmessage")
	e.messages(a, abuse.ConversationID, 1)

	type report struct {
		ID             int64   `json:"id"`
		ReportedUserID int64   `json:"reported_user_id"`
		MessageID      *string `json:"message_id"`
		Reason         string  `json:"reason"`
		Status         string  `json:"status"`
	}
	var first, again report
	if got := e.call(a, "POST", "/reports", map[string]any{"message_id": abuse.ID, "reason": "harassment", "details": "keeps insulting me"}, &first); got != 201 ||
		first.ReportedUserID != b || first.MessageID == nil || *first.MessageID != abuse.ID || first.Status != "received" {
		t.Fatalf("report a message: status %d, %+v", got, first)
	}
	if got := e.call(a, "POST", "/reports", map[string]any{"message_id": abuse.ID, "reason": "harassment"}, &again); got != 201 || again.ID != first.ID {
		t.Fatalf("the same report again: status %d, %+v; want report %d", got, again, first.ID)
	}
	var byUser report
	if got := e.call(a, "POST", "/reports", map[string]any{"user_id": b, "reason": "other", "details": "fake profile"}, &byUser); got != 201 || byUser.ReportedUserID != b || byUser.MessageID != nil || byUser.ID == first.ID {
		t.Fatalf("report a user: status %d, %+v", got, byUser)
	}

	for _, tc := range []struct {
		user int64
		body map[string]any
		want int
		says string
	}{
		{a, map[string]any{"reason": "spam"}, 422, "message_id or user_id is required"},
		{a, map[string]any{"message_id": abuse.ID, "user_id": b, "reason": "spam"}, 422, "not both"},
		{a, map[string]any{"user_id": b, "reason": "rude"}, 422, "reason must be one of spam, harassment"},
		{a, map[string]any{"user_id": b, "reason": "other"}, 422, `reason "other" needs details`},
		{a, map[string]any{"user_id": b, "reason": "spam", "details": strings.Repeat("x", 1001)}, 422, "more than 1000 characters"},
		{a, map[string]any{"user_id": a, "reason": "spam"}, 422, "yourself"},
		{a, map[string]any{"message_id": "nope", "reason": "spam"}, 400, "not a UUID"},
		{a, map[string]any{"message_id": "0190a8a0-0000-7000-8000-000000000000", "reason": "spam"}, 404, "not found"},
		{b, map[string]any{"message_id": abuse.ID, "reason": "spam"}, 422, "your own message"},
		{c, map[string]any{"message_id": abuse.ID, "reason": "spam"}, 403, "not in one of your conversations"},
		{a, map[string]any{"user_id": b, "reason": "spam", "extra": 1}, 400, "extra"},
	} {
		var body map[string]map[string]string
		if got := e.call(tc.user, "POST", "/reports", tc.body, &body); got != tc.want || !strings.Contains(body["error"]["message"], tc.says) {
			t.Errorf("report %v as %d: status %d, %v; want %d saying %q", tc.body, tc.user, got, body, tc.want, tc.says)
		}
	}

	// The sender deleting the message does not erase the evidence.
	if got := e.call(b, "DELETE", "/messages/"+abuse.ID, nil, nil); got != 202 {
		t.Fatalf("delete: status %d", got)
	}
	out := chatOutput(t, e, "reports", "list")
	for _, want := range []string{"REASON", "harassment", abuse.ID, `"an abusive\tmessage"`, `"keeps insulting me"`, `"fake profile"`, "2 reports"} {
		if !strings.Contains(out, want) {
			t.Errorf("reports list lacks %q:\n%s", want, out)
		}
	}
	if out := chatOutput(t, e, "reports", "--user", "3", "list"); !strings.Contains(out, "0 reports") {
		t.Errorf("reports of user 3:\n%s", out)
	}
	if code := runCmd(t, e, "reports", "--limit", "0", "list"); code != 2 {
		t.Errorf("reports --limit 0: exit %d, want 2", code)
	}
}
