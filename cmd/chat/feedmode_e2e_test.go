package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/wsproto"
)

// dialFeed connects as user in feed mode.
func (e *env) dialFeed(user int64) *wsClient {
	e.t.Helper()
	c := e.dialQuery(user, "&feed=1")
	c.expect("connected", nil)
	return c
}

// feedChanges waits for n feedChange frames and returns them.
func (c *wsClient) feedChanges(n int) []map[string]any {
	c.t.Helper()
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = c.expect(wsproto.TypeFeedChange, nil)
	}
	return out
}

// rawSync is user's feed after since as GET /sync answers it, undecoded.
func (e *env) rawSync(user, since int64) (changes []map[string]any, epoch int64) {
	e.t.Helper()
	var p struct {
		Changes []map[string]any `json:"changes"`
		Epoch   int64            `json:"epoch"`
	}
	if code := e.call(user, "GET", fmt.Sprintf("/sync?since=%d&limit=100", since), nil, &p); code != 200 {
		e.t.Fatalf("sync as %d: status %d", user, code)
	}
	return p.Changes, p.Epoch
}

// sameAsSync fails unless frames carry, in order, exactly the changes
// GET /sync answers for user after since, in its epoch.
func (e *env) sameAsSync(user, since int64, frames []map[string]any) {
	e.t.Helper()
	changes, epoch := e.rawSync(user, since)
	if len(changes) != len(frames) {
		e.t.Fatalf("user %d: %d feedChange frames, the feed has %d changes after %d: %v", user, len(frames), len(changes), since, changes)
	}
	for i, f := range frames {
		got, _ := json.Marshal(f["data"])
		want, _ := json.Marshal(changes[i])
		if string(got) != string(want) || f["epoch"] != float64(epoch) {
			e.t.Fatalf("user %d, frame %d:\n got %s (epoch %v)\nwant %s (epoch %d)", user, i, got, f["epoch"], want, epoch)
		}
	}
}

// TestFeedModeFrames runs chat dev with real WebSocket clients: a
// connection opened with ?feed=1 gets every change of its user's feed, its
// own sends included, as feedChange frames equal to what GET /sync
// answers, and none of those changes' own frames; the sender's other
// device hears of the delivery through the recipient's feed, and nothing is
// pushed to a recipient whose feed connection got the message; after a
// reconnect the first frame shows the gap, which one sync fills.
func TestFeedModeFrames(t *testing.T) {
	e := newEnv(t)
	dev := e.start("dev")
	e.waitHTTP(dev)
	plain1, feed1, feed2 := e.dial(1), e.dialFeed(1), e.dialFeed(2)

	plain1.send(wsproto.SendMessage(wsproto.SendMessageData{RecipientID: 2, ContentType: "text", TextContent: "hello", ClientMessageID: "feed-mode-1"}))
	id := plain1.expect(wsproto.TypeAcknowledgment, nil)["messageId"]
	plain1.expect(wsproto.TypeMessageDelivered, func(f map[string]any) bool { return data(f)["messageId"] == id })

	got2 := feed2.feedChanges(2) // conversationCreated, newMessage
	e.sameAsSync(2, 0, got2)
	if d := data(got2[1])["data"].(map[string]any); data(got2[1])["kind"] != wsproto.TypeNewMessage || d["id"] != id || d["seq"] != float64(1) || d["textContent"] != "hello" {
		t.Fatalf("user 2's message entry: %v", got2[1])
	}
	got1 := feed1.feedChanges(3) // conversationCreated, its own newMessage, messageDelivered
	e.sameAsSync(1, 0, got1)
	if data(got1[2])["kind"] != wsproto.TypeMessageDelivered {
		t.Fatalf("user 1's third entry: %v", got1[2])
	}
	for _, c := range []*wsClient{feed1, feed2} {
		c.quiet(wsproto.TypeNewMessage, 300*time.Millisecond)
		c.quiet(wsproto.TypeMessageDelivered, 0)
	}
	receipts := func(typ, message any) int {
		return count(t, e.pool, `SELECT count(*) FROM event_archive WHERE type = $1 AND envelope->'data'->>'message_id' = $2`, typ, message)
	}
	if d, p := receipts("MessageDelivered", id), receipts("PushRequested", id); d != 1 || p != 0 {
		t.Fatalf("%d receipts and %d push requests archived for a message a feed connection got; want 1 and 0", d, p)
	}

	// A read by user 2 and an edit by user 1 come as feed changes too.
	if code := e.call(2, "POST", "/messages/read", map[string]any{"message_ids": []any{id}}, nil); code != 200 {
		t.Fatalf("read: %d", code)
	}
	e.sameAsSync(2, 2, feed2.feedChanges(1))
	e.sameAsSync(1, 3, feed1.feedChanges(1))
	plain1.expect(wsproto.TypeMessageRead, nil) // the plain device as before

	// User 2 goes away and comes back: the first frame after shows the gap.
	if err := feed2.conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "user 2's connection is gone", func() bool {
		return count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE user_id = 2`) == 0
	})
	away := e.send(1, 2, "while away")
	waitUntil(t, "the message is pushed to user 2, who has no connection", func() bool { return receipts("PushRequested", away.ID) == 1 })
	e.feed(2, 4)
	back := e.dialFeed(2)
	after := e.send(1, 2, "after")
	first := back.expect(wsproto.TypeFeedChange, nil)
	if pos := data(first)["position"]; pos != float64(5) {
		t.Fatalf("first frame after the reconnect at position %v, want 5 (4 missed)", pos)
	}
	changes, _ := e.rawSync(2, 3)
	if len(changes) != 2 || changes[0]["data"].(map[string]any)["id"] != away.ID || changes[1]["data"].(map[string]any)["id"] != after.ID {
		t.Fatalf("the sync that fills the gap: %v", changes)
	}
	if err := dev.stop(t); err != nil {
		t.Fatalf("chat dev did not exit cleanly: %v\n%s", err, tail(dev.output(), 20))
	}
}
