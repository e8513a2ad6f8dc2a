package persister_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/workers/persister"
)

// TestGroupChangesReplay: a group's changes, applied from their events
// alone (a replay into an emptied database) and in one batch with its
// messages, rebuild the group: its members and windows, its system
// messages in queue order in the sequence, and the feed of each member
// within their window; applying them again changes nothing.
func TestGroupChangesReplay(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	p := persister.New(pool, quiet)
	f := fixture{pool: pool, p: p, base: 70000}
	conv := uuid.Must(uuid.NewV7())
	a, b, c := f.u(1), f.u(2), f.u(3)
	t0 := now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	change := func(ms int, m events.GroupChangedV1) events.Envelope {
		m.ConversationID, m.At = conv.String(), at(ms)
		return f.envelope(t, 1, conv, at(ms), m)
	}
	msg := func(ms int, text string, members ...int64) events.Envelope {
		id := uuid.Must(uuid.NewV7()).String()
		e, err := events.New(id, at(ms), a, conv.String(), events.MessageSentV1{
			MessageID: id, ConversationID: conv.String(), SenderID: a, ContentType: events.ContentText,
			TextContent: text, CreatedAt: at(ms), MemberIDs: members})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	batch := []events.Envelope{
		change(0, events.GroupChangedV1{ActorID: a, Action: events.GroupCreated, Title: "g", UserIDs: []int64{a, b}, MemberIDs: []int64{a, b}}),
		msg(1, "one", b),
		change(2, events.GroupChangedV1{ActorID: a, Action: events.GroupAdded, UserIDs: []int64{c}, MemberIDs: []int64{a, b, c}}),
		msg(3, "two", b, c),
		change(4, events.GroupChangedV1{ActorID: a, Action: events.GroupRemoved, UserIDs: []int64{b}, MemberIDs: []int64{a, c}}),
		msg(5, "three", c),
	}
	for round := range 2 {
		// The creation first, then the rest in one batch: messages and
		// changes interleaved.
		for _, part := range [][]events.Envelope{batch[:1], batch[1:]} {
			for i, err := range p.HandleBatch(context.Background(), part) {
				if err != nil {
					t.Fatalf("round %d: event %d (%s): %v", round, i, part[i].Type, err)
				}
			}
		}
		got := column(t, pool, `SELECT COALESCE(text_content, system->>'action') FROM messages WHERE conversation_id = $1 ORDER BY seq`, conv)
		if want := []string{"created", "one", "added", "two", "removed", "three"}; !slices.Equal(got, want) {
			t.Fatalf("round %d: the group's sequence is %q, want %q (queue order)", round, got, want)
		}
		if s := seqs(t, pool, conv); len(s) != 6 {
			t.Fatalf("round %d: seqs %v", round, s)
		}
		var left, cLeft *time.Time
		var bRead, cRead int64
		if err := pool.QueryRow(context.Background(), `SELECT
			(SELECT left_at FROM conversation_participants WHERE conversation_id = $1 AND user_id = $2),
			(SELECT left_at FROM conversation_participants WHERE conversation_id = $1 AND user_id = $3),
			(SELECT last_read_seq FROM conversation_participants WHERE conversation_id = $1 AND user_id = $2),
			(SELECT last_read_seq FROM conversation_participants WHERE conversation_id = $1 AND user_id = $3)`,
			conv, b, c).Scan(&left, &cLeft, &bRead, &cRead); err != nil {
			t.Fatal(err)
		}
		if left == nil || !left.Equal(at(4)) || cLeft != nil || bRead != 0 || cRead != 2 {
			t.Fatalf("round %d: b left at %v (want %v), c left at %v, read positions b %d c %d (want 0, 2)", round, left, at(4), cLeft, bRead, cRead)
		}
		// Each member's feed: what was created while they were one.
		for user, want := range map[int64][]string{
			a: {"created", "one", "added", "two", "removed", "three"},
			b: {"created", "one", "added", "two", "removed"},
			c: {"added", "two", "removed", "three"},
		} {
			got := column(t, pool, `SELECT COALESCE(c.body->>'textContent', c.body->'system'->>'action')
				FROM user_feed f JOIN feed_changes c ON c.id = f.change_id WHERE f.user_id = $1 ORDER BY f.position`, user)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d: u%d's feed is %q, want %q", round, user-f.base, got, want)
			}
		}
	}
}

// column answers a query's one text column, row by row.
func column(t *testing.T, pool *pgxpool.Pool, query string, args ...any) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
