package main

import (
	"fmt"
	"testing"
	"time"
)

// presenceGrace is the grace the presence test runs with: short, so the
// test is quick, and long enough for a reconnect to land inside it.
const presenceGrace = 1500 * time.Millisecond

// TestPresence runs `chat dev` with real WebSocket clients: partners hear
// of each presence change once, a connection that flaps inside the grace
// sends nothing, last seen is stored once per offline, and the privacy
// setting and blocks hide presence both ways.
func TestPresence(t *testing.T) {
	e := newEnv(t)
	e.extra = append(e.extra, fmt.Sprintf("CHAT_PRESENCE_GRACE=%s", presenceGrace))
	e.waitHTTP(e.start("dev"))
	const a, b, c, d = int64(1), int64(2), int64(3), int64(4)
	ab := e.send(a, b, "hi B").ConversationID
	e.send(a, d, "hi D")
	e.send(d, b, "hi B, from D")
	e.messages(b, ab, 1)

	isPresence := func(user int64, online bool) func(map[string]any) bool {
		return func(f map[string]any) bool { return data(f)["userId"] == float64(user) && data(f)["online"] == online }
	}
	wa := e.dial(a)

	// B comes online: A hears it once, without a last seen.
	wb := e.dial(b)
	on := wa.expect("presence", isPresence(b, true))
	if got := data(on); len(got) != 3 || got["lastSeenAt"] != nil {
		t.Fatalf("online frame data = %v, want userId, online and a null lastSeenAt", got)
	}

	// B's connection drops and comes back inside the grace: nobody hears.
	_ = wb.conn.Close()
	time.Sleep(200 * time.Millisecond)
	wb = e.dial(b)
	wa.quiet("presence", presenceGrace+time.Second)

	// B leaves: after the grace, A hears it once, with the last seen, which
	// is stored once.
	left := time.Now()
	_ = wb.conn.Close()
	off := wa.expect("presence", isPresence(b, false))
	if waited := time.Since(left); waited < presenceGrace-200*time.Millisecond {
		t.Errorf("offline announced after %v, before the grace of %v", waited, presenceGrace)
	}
	seen, _ := data(off)["lastSeenAt"].(string)
	seenAt, err := time.Parse(time.RFC3339Nano, seen)
	if err != nil || seenAt.Before(left.Add(-time.Second)) || seenAt.After(time.Now()) {
		t.Fatalf("offline frame lastSeenAt = %q (%v), want about %v", seen, err, left)
	}
	wa.quiet("presence", 700*time.Millisecond)
	if n := count(t, e.pool, `SELECT count(*) FROM user_presence WHERE user_id = $1 AND last_seen_at = $2`, b, seenAt); n != 1 {
		t.Fatalf("stored last seen of B: %d rows at %v", n, seenAt)
	}

	// GET /presence answers for partners only: C shares no conversation.
	type view struct {
		UserID     int64      `json:"user_id"`
		Online     bool       `json:"online"`
		LastSeenAt *time.Time `json:"last_seen_at"`
	}
	presence := func(user int64, ids string) []view {
		t.Helper()
		var out struct {
			Data []view `json:"data"`
		}
		if got := e.call(user, "GET", "/presence?user_ids="+ids, nil, &out); got != 200 {
			t.Fatalf("GET /presence?user_ids=%s as %d: status %d", ids, user, got)
		}
		return out.Data
	}
	if got := presence(a, fmt.Sprintf("%d,%d", b, c)); len(got) != 1 || got[0].UserID != b || got[0].Online ||
		got[0].LastSeenAt == nil || !got[0].LastSeenAt.Equal(seenAt) {
		t.Fatalf("presence of B and C as A = %+v, want B offline, last seen %v", got, seenAt)
	}
	wc := e.dial(c)
	wa.quiet("presence", 500*time.Millisecond)
	if got := presence(b, fmt.Sprintf("%d", a)); len(got) != 1 || !got[0].Online || got[0].LastSeenAt != nil {
		t.Fatalf("presence of A as B = %+v, want online", got)
	}
	for _, q := range []string{"", "x", "0", "1,-2", fmt.Sprintf("%d&other=1", b)} {
		var body map[string]map[string]string
		if got := e.call(a, "GET", "/presence?user_ids="+q, nil, &body); got != 400 || body["error"]["message"] == "" {
			t.Errorf("GET /presence?user_ids=%s: status %d, %v; want 400 with a reason", q, got, body)
		}
	}
	_ = wc.conn.Close()

	// D hides their last seen: nobody hears of D, and D sees no one's last
	// seen (online still shows).
	var st map[string]any
	if got := e.call(d, "PUT", "/presence/settings", map[string]any{"hide_last_seen": true}, &st); got != 200 || st["hide_last_seen"] != true {
		t.Fatalf("hide last seen: status %d, %v", got, st)
	}
	if got := e.call(d, "PUT", "/presence/settings", map[string]any{}, nil); got != 422 {
		t.Fatalf("empty settings: status %d, want 422", got)
	}
	for user, want := range map[int64]bool{d: true, a: false} {
		var got map[string]any
		if code := e.call(user, "GET", "/presence/settings", nil, &got); code != 200 || got["hide_last_seen"] != want {
			t.Fatalf("settings of %d: status %d, %v; want hide_last_seen %v", user, code, got, want)
		}
	}
	wd := e.dial(d)
	wa.quiet("presence", 500*time.Millisecond)
	if got := presence(a, fmt.Sprintf("%d", d)); len(got) != 1 || got[0].Online || got[0].LastSeenAt != nil {
		t.Fatalf("presence of D as A = %+v, want hidden", got)
	}
	if got := presence(d, fmt.Sprintf("%d,%d", a, b)); len(got) != 2 || !got[0].Online || got[1].Online || got[1].LastSeenAt != nil {
		t.Fatalf("presence of A and B as D = %+v, want A online, B offline without last seen", got)
	}
	// B comes online: A hears it, D (who hides their own) hears it too,
	// and B's leaving reaches D without a last seen.
	wb = e.dial(b)
	wa.expect("presence", isPresence(b, true))
	wd.expect("presence", isPresence(b, true))
	_ = wb.conn.Close()
	wa.expect("presence", isPresence(b, false))
	if off := wd.expect("presence", isPresence(b, false)); data(off)["lastSeenAt"] != nil {
		t.Fatalf("D, who hides their last seen, got B's: %v", off)
	}

	// A blocks B: neither hears of the other, nor sees the other's presence.
	if got := e.call(a, "POST", "/blocks", map[string]any{"user_id": b}, nil); got != 200 {
		t.Fatalf("block: status %d", got)
	}
	wb = e.dial(b)
	wa.quiet("presence", presenceGrace)
	if got := presence(a, fmt.Sprintf("%d", b)); len(got) != 1 || got[0].Online || got[0].LastSeenAt != nil {
		t.Fatalf("presence of B as A while A blocks B = %+v, want hidden", got)
	}
	if got := presence(b, fmt.Sprintf("%d", a)); len(got) != 1 || got[0].Online || got[0].LastSeenAt != nil {
		t.Fatalf("presence of A as B while A blocks B = %+v, want hidden", got)
	}
	_ = wa.conn.Close()
	wb.quiet("presence", presenceGrace+time.Second)
}
