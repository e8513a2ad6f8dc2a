package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

type syncChange struct {
	Position       int64          `json:"position"`
	Kind           string         `json:"kind"`
	ConversationID string         `json:"conversation_id"`
	OccurredAt     string         `json:"occurred_at"`
	Data           map[string]any `json:"data"`
}

type syncPage struct {
	Changes []syncChange `json:"changes"`
	Next    int64        `json:"next"`
	HasMore bool         `json:"has_more"`
	Reset   bool         `json:"reset"`
}

func (e *env) sync(user, since int64, limit int) syncPage {
	e.t.Helper()
	var p syncPage
	if code := e.call(user, "GET", fmt.Sprintf("/sync?since=%d&limit=%d", since, limit), nil, &p); code != 200 {
		e.t.Fatalf("sync as %d since %d: status %d", user, since, code)
	}
	return p
}

// feed waits until user's whole feed holds n changes and returns it, paged
// as a client pages it.
func (e *env) feed(user int64, n int) []syncChange {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var all []syncChange
		for since := int64(0); ; {
			p := e.sync(user, since, 2)
			all = append(all, p.Changes...)
			if !p.HasMore {
				break
			}
			since = p.Next
		}
		if len(all) == n {
			return all
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("user %d's feed holds %v, want %d changes", user, changeKinds(all), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func changeKinds(cs []syncChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind)
	}
	return out
}

// TestSyncFeed runs chat dev with real WebSocket clients: a client that was
// away gets every change it missed from one sync, paged in order; a replay
// of the archive into an emptied database rebuilds the same feeds, and a
// second replay appends nothing.
func TestSyncFeed(t *testing.T) {
	e := newEnv(t)
	dev := e.start("dev")
	e.waitHTTP(dev)
	start := time.Now().Add(-time.Minute)
	_, b := e.dial(1), e.dial(2)

	first := e.send(1, 2, "before the gap")
	conv := first.ConversationID
	b.expect("newMessage", nil)
	// Both learn of the conversation's creation; the sender learns of the
	// delivery; the recipient has the message.
	if got := changeKinds(e.feed(1, 3)); !slices.Equal(got, []string{"conversationCreated", "newMessage", "messageDelivered"}) {
		t.Fatalf("the sender's feed: %v", got)
	}
	seen := e.feed(2, 2)[1].Position

	// User 2 goes away; changes happen, each waited for so that their
	// order is the archive's.
	if err := b.conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "user 2's connection is gone", func() bool {
		return count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE user_id = 2`) == 0
	})
	m2 := e.send(1, 2, "while away")
	e.feed(2, 3)
	m3 := e.send(1, 2, "still away")
	e.feed(2, 4)
	// User 2's other device reads; user 1 edits and reacts; user 2 pins.
	if code := e.call(2, "POST", "/messages/read", map[string]any{"message_ids": []string{first.ID, m2.ID, m3.ID}}, nil); code != 200 {
		t.Fatalf("read: %d", code)
	}
	e.feed(2, 5)
	if code := e.call(1, "PATCH", "/messages/"+first.ID, map[string]any{"text_content": "before the gap!"}, nil); code != 202 {
		t.Fatalf("edit: %d", code)
	}
	e.feed(2, 6)
	if code := e.call(1, "PUT", "/messages/"+m2.ID+"/reaction", map[string]any{"emoji": "👍"}, nil); code != 202 {
		t.Fatalf("react: %d", code)
	}
	e.feed(2, 7)
	if code := e.call(2, "PATCH", "/conversations/"+conv+"/settings", map[string]any{"pinned": true}, nil); code != 202 {
		t.Fatalf("pin: %d", code)
	}
	e.feed(2, 8)

	// Back: one sync from the last position seen, paged.
	e.dial(2)
	p := e.sync(2, seen, 4)
	if got := changeKinds(p.Changes); !slices.Equal(got, []string{"newMessage", "newMessage", "messageRead", "messageUpdated"}) || !p.HasMore || p.Next != seen+4 || p.Reset {
		t.Fatalf("first page after the gap: %v, next %d, has_more %v, reset %v", got, p.Next, p.HasMore, p.Reset)
	}
	for i, m := range []message{m2, m3} {
		if d := p.Changes[i].Data; d["id"] != m.ID || d["seq"] != float64(i+2) || d["textContent"] != *m.TextContent || p.Changes[i].Position != seen+int64(i)+1 {
			t.Fatalf("new message %d: %+v", i, p.Changes[i])
		}
	}
	if d := p.Changes[2].Data; d["readerId"] != float64(2) || len(d["messageIds"].([]any)) != 3 {
		t.Fatalf("read: %v", d)
	}
	if d := p.Changes[3].Data; d["messageId"] != first.ID || d["textContent"] != "before the gap!" {
		t.Fatalf("edit: %v", d)
	}
	q := e.sync(2, p.Next, 4)
	if got := changeKinds(q.Changes); !slices.Equal(got, []string{"reactionChanged", "settingsChanged"}) || q.HasMore || q.Next != seen+6 || q.Reset {
		t.Fatalf("second page: %v, next %d, has_more %v", got, q.Next, q.HasMore)
	}
	if d := q.Changes[0].Data; d["emoji"] != "👍" || d["userId"] != float64(1) || d["messageId"] != m2.ID {
		t.Fatalf("reaction: %v", d)
	}
	if d := q.Changes[1].Data; d["pinned"] != true || d["conversationId"] != conv {
		t.Fatalf("settings: %v", d)
	}
	if r := e.sync(2, q.Next, 4); len(r.Changes) != 0 || r.Next != q.Next || r.HasMore {
		t.Fatalf("nothing more: %+v", r)
	}

	// Replay into an emptied database.
	before1, before2 := e.feed(1, 8), e.feed(2, 8)
	if _, err := e.pool.Exec(context.Background(), `TRUNCATE conversations, conversation_participants, messages, message_deletions,
		message_reactions, pending_reads, feed_changes, user_feed, user_feed_heads, user_feed_floors CASCADE`); err != nil {
		t.Fatal(err)
	}
	if r := e.sync(2, 0, 10); len(r.Changes) != 0 || r.Next != 0 {
		t.Fatalf("feed after emptying: %+v", r)
	}
	same := func(what string) {
		t.Helper()
		for user, before := range map[int64][]syncChange{1: before1, 2: before2} {
			after := e.feed(user, len(before))
			a, _ := json.Marshal(after)
			b, _ := json.Marshal(before)
			if string(a) != string(b) {
				t.Fatalf("%s: user %d's feed\nbefore %s\nafter  %s", what, user, b, a)
			}
		}
	}
	replay := func() {
		t.Helper()
		if code := runCmd(t, e, "replay", "--worker", "persister", "--since", start.UTC().Format(time.RFC3339)); code != 0 {
			t.Fatalf("replay exited %d", code)
		}
		waitUntil(t, "the replay is handled", func() bool {
			return count(t, e.pool, `SELECT count(*) FROM queue_persister`) == 0
		})
	}
	replay()
	same("a replay into an empty database")
	replay()
	same("a second replay")
	if err := dev.stop(t); err != nil {
		t.Fatalf("chat dev did not exit cleanly: %v\n%s", err, tail(dev.output(), 20))
	}
}

// TestSyncRetention: entries older than CHAT_SYNC_RETENTION are pruned by
// `chat sync prune` and by the persister's process on its own; a position
// older than what is kept answers reset with the head, one within it does
// not.
func TestSyncRetention(t *testing.T) {
	e := newEnv(t)
	e.extra = []string{"CHAT_SYNC_RETENTION=1h"}
	dev := e.start("dev")
	e.waitHTTP(dev)
	for i := range 3 {
		e.send(1, 2, fmt.Sprintf("m%d", i))
	}
	e.feed(2, 4) // the conversation's creation and the messages
	age := func(upTo int) {
		t.Helper()
		if _, err := e.pool.Exec(context.Background(),
			`UPDATE user_feed SET appended_at = now() - interval '2 hours' WHERE user_id = 2 AND position <= $1`, upTo); err != nil {
			t.Fatal(err)
		}
	}
	age(2)
	if out := chatOutput(t, e, "sync", "prune"); !strings.Contains(out, "pruned 2 sync feed entries") {
		t.Fatalf("sync prune: %q", out)
	}
	for _, since := range []int64{0, 1} {
		if p := e.sync(2, since, 10); !p.Reset || p.Next != 4 || len(p.Changes) != 0 || p.HasMore {
			t.Fatalf("since %d after pruning positions 1 and 2: %+v", since, p)
		}
	}
	if p := e.sync(2, 2, 10); p.Reset || len(p.Changes) != 2 || p.Changes[0].Position != 3 || p.Next != 4 {
		t.Fatalf("since 2, within retention: %+v", p)
	}
	if p := e.sync(1, 0, 10); p.Reset || len(p.Changes) < 3 {
		t.Fatalf("the sender's feed, not pruned: %+v", p)
	}

	// The persister's own process prunes (at start, then every
	// CHAT_SYNC_PRUNE_INTERVAL).
	age(4)
	w := e.start("worker", "persister")
	waitUntil(t, "the persister's process pruned positions 3 and 4", func() bool { return e.sync(2, 3, 10).Reset })
	if p := e.sync(2, 4, 10); p.Reset || len(p.Changes) != 0 || p.Next != 4 {
		t.Fatalf("since the head, all pruned: %+v", p)
	}
	if code := runCmd(t, e, "sync", "--before", "soon", "prune"); code == 0 {
		t.Error("sync prune --before soon was accepted")
	}
	w.kill()

	// After a restore: every feed a new epoch.
	var before []int64
	rows, err := e.pool.Query(context.Background(), `SELECT epoch FROM user_feed_heads ORDER BY user_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		before = append(before, v)
	}
	rows.Close()
	if out := chatOutput(t, e, "sync", "new-epoch"); !strings.Contains(out, fmt.Sprintf("gave %d sync feeds a new epoch", len(before))) {
		t.Fatalf("sync new-epoch: %q, want %d feeds renewed", out, len(before))
	}
	if n := count(t, e.pool, `SELECT count(*) FROM user_feed_heads WHERE epoch = ANY($1)`, before); n != 0 || len(before) == 0 {
		t.Fatalf("%d feeds kept their epoch", n)
	}
	for _, args := range [][]string{{"sync", "--before", "1h", "new-epoch"}, {"sync", "renew"}, {"sync"}} {
		if code := runCmd(t, e, args...); code == 0 {
			t.Errorf("chat %v was accepted", args)
		}
	}
}
