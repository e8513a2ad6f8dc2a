package persister_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/workers/persister"
)

// TestMessageChanges covers edits, unsend and reactions as the persister
// applies them: redelivered, replayed and out of order, the stored state is
// the newest allowed change's.
func TestMessageChanges(t *testing.T) {
	runFixtures(t, 100000, []fixtureCase{
		{"edits: newest wins, redelivery and replay change nothing", editsNewestWins},
		{"edits: only the sender's, within the window, of a text message", editsRefused},
		{"unsend leaves a tombstone in sequence", unsendTombstone},
		{"reactions: set, change, remove, counted", reactions},
		{"changes before their message are retried", changesBeforeMessage},
		{"a reaction racing an unsend waits for it and is not stored", reactionDuringUnsend},
		{"the event's deadline decides, not the persister's window", deadlineOfTheEvent},
	})
}

type fixtureCase struct {
	name string
	run  func(t *testing.T, f fixture)
}

// runFixtures runs cases in parallel over a database of their own, each
// with users of its own: case i's are stride*(i+1) + 1, + 2, ...
func runFixtures(t *testing.T, stride int64, cases []fixtureCase) (*pgxpool.Pool, *persister.Persister) {
	t.Parallel()
	_, pool := dbtest.New(t)
	p := persister.New(pool, quiet)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newFixture(t, pool, p, stride*int64(i+1)))
		})
	}
	return pool, p
}

func (f fixture) edit(t *testing.T, m events.Envelope, by int64, text string, at time.Time) events.Envelope {
	t.Helper()
	return f.envelope(t, by, f.conv, at, events.MessageEditedV1{MessageID: m.ID, ConversationID: f.conv.String(),
		SenderID: f.u(by), TextContent: text, EditedAt: at, Deadline: events.ChangeDeadline(m.OccurredAt, events.DefaultEditWindow),
		ParticipantIDs: []int64{f.u(1), f.u(2)}})
}

func (f fixture) unsend(t *testing.T, m events.Envelope, by int64, contentType string, at time.Time) events.Envelope {
	t.Helper()
	return f.envelope(t, by, f.conv, at, events.MessageUnsentV1{MessageID: m.ID, ConversationID: f.conv.String(),
		SenderID: f.u(by), ContentType: contentType, UnsentAt: at, Deadline: events.ChangeDeadline(m.OccurredAt, events.DefaultUnsendWindow),
		ParticipantIDs: []int64{f.u(1), f.u(2)}})
}

func (f fixture) react(t *testing.T, m events.Envelope, by int64, emoji string, at time.Time) events.Envelope {
	t.Helper()
	return f.envelope(t, by, f.conv, at, events.ReactionChangedV1{MessageID: m.ID, ConversationID: f.conv.String(),
		UserID: f.u(by), Emoji: emoji, ChangedAt: at, ParticipantIDs: []int64{f.u(1), f.u(2)}})
}

func (f fixture) stored(t *testing.T, id string) db.Message {
	t.Helper()
	m, err := db.New(f.pool).GetMessage(context.Background(), uuid.MustParse(id))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func editsNewestWins(t *testing.T, f fixture) {
	m := f.sent(t, f.conv, 1, 2, "frist")
	handle(t, f.p, m)
	at := now()
	older := f.edit(t, m, 1, "firts", at.Add(time.Second))
	newer := f.edit(t, m, 1, "first", at.Add(2*time.Second))
	// The newer edit arrives first, then the older, then both again.
	handle(t, f.p, newer, older, newer, older)
	got := f.stored(t, m.ID)
	if got.TextContent == nil || *got.TextContent != "first" || got.EditedAt == nil || !got.EditedAt.Equal(at.Add(2*time.Second)) {
		t.Fatalf("stored text %v edited at %v; want the newer edit's", deref(got.TextContent), got.EditedAt)
	}
	// A replay of the whole history from the start gives the same row.
	handle(t, f.p, m, older, newer)
	if again := f.stored(t, m.ID); *again.TextContent != "first" || !again.EditedAt.Equal(*got.EditedAt) || again.Seq != got.Seq {
		t.Fatalf("after replay: %q at %v seq %d", *again.TextContent, again.EditedAt, again.Seq)
	}
}

func editsRefused(t *testing.T, f fixture) {
	m := f.sent(t, f.conv, 1, 2, "original")
	img := f.image(t, f.conv, 1, 2)
	handle(t, f.p, m, img)
	at := now()
	handle(t, f.p,
		f.edit(t, m, 2, "by the recipient", at.Add(time.Second)),                  // not the sender
		f.edit(t, m, 1, "too late", at.Add(events.DefaultEditWindow+time.Minute)), // past the window
		f.edit(t, img, 1, "caption", at.Add(time.Second)),                         // not a text message
	)
	if got := f.stored(t, m.ID); *got.TextContent != "original" || got.EditedAt != nil {
		t.Fatalf("refused edits applied: %q edited at %v", *got.TextContent, got.EditedAt)
	}
	if got := f.stored(t, img.ID); got.TextContent != nil || got.EditedAt != nil {
		t.Fatalf("an image was edited: %v", got.EditedAt)
	}
	// An edit of a tombstone applies nothing either.
	handle(t, f.p, f.unsend(t, m, 1, events.ContentText, at.Add(time.Second)), f.edit(t, m, 1, "revived", at.Add(2*time.Second)))
	if got := f.stored(t, m.ID); got.TextContent != nil || got.UnsentAt == nil {
		t.Fatalf("edit after unsend: text %v, unsent at %v", deref(got.TextContent), got.UnsentAt)
	}
}

func unsendTombstone(t *testing.T, f fixture) {
	before := f.sent(t, f.conv, 1, 2, "before")
	img := f.image(t, f.conv, 1, 2)
	after := f.sent(t, f.conv, 2, 1, "after")
	handle(t, f.p, before, img, after)
	handle(t, f.p, f.react(t, img, 2, "❤️", now()))
	at := now()
	// The recipient cannot unsend it, nor can the sender once the window
	// has passed.
	handle(t, f.p, f.unsend(t, img, 2, events.ContentImage, at), f.unsend(t, img, 1, events.ContentImage, at.Add(2*events.DefaultUnsendWindow)))
	if got := f.stored(t, img.ID); got.UnsentAt != nil {
		t.Fatal("a refused unsend applied")
	}
	u := f.unsend(t, img, 1, events.ContentImage, at)
	handle(t, f.p, u, u)
	got := f.stored(t, img.ID)
	if got.UnsentAt == nil || !got.UnsentAt.Equal(at) || got.MediaKey != nil || got.MediaThumbnailKey != nil || got.TextContent != nil {
		t.Fatalf("tombstone: unsent %v, media %v, thumb %v", got.UnsentAt, got.MediaKey, got.MediaThumbnailKey)
	}
	if ids := seqs(t, f.pool, f.conv); !slices.Equal(ids, []string{before.ID, img.ID, after.ID}) {
		t.Fatalf("sequence %v: the tombstone must keep its place", ids)
	}
	if n := f.reactionCount(t, img.ID); n != 0 {
		t.Fatalf("a tombstone keeps %d reactions", n)
	}
	// A later thumbnail and a late reaction fill nothing in.
	handle(t, f.p, f.envelope(t, 1, f.conv, now(), events.ThumbnailReadyV1{MessageID: img.ID, ConversationID: f.conv.String(),
		SenderID: f.u(1), RecipientID: f.u(2), MediaKey: "chat/1/a.jpg", ThumbnailKey: "chat/1/a.thumb.jpg"}),
		f.react(t, img, 2, "👍", now()))
	if got := f.stored(t, img.ID); got.MediaThumbnailKey != nil || f.reactionCount(t, img.ID) != 0 {
		t.Fatalf("tombstone filled in: thumb %v", got.MediaThumbnailKey)
	}
}

func (f fixture) reactionCount(t *testing.T, id string) int64 {
	t.Helper()
	var n int64
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM message_reactions WHERE message_id = $1 AND emoji IS NOT NULL`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f fixture) counts(t *testing.T, id string, viewer int64) []db.ReactionCountsRow {
	t.Helper()
	rows, err := db.New(f.pool).ReactionCounts(context.Background(), db.ReactionCountsParams{ViewerID: f.u(viewer), Ids: []uuid.UUID{uuid.MustParse(id)}})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func reactions(t *testing.T, f fixture) {
	m := f.sent(t, f.conv, 1, 2, "react to me")
	handle(t, f.p, m)
	at := now()
	handle(t, f.p, f.react(t, m, 1, "👍", at), f.react(t, m, 2, "👍", at))
	if c := f.counts(t, m.ID, 2); len(c) != 1 || c[0].Emoji != "👍" || c[0].Count != 2 || !c[0].Mine {
		t.Fatalf("two 👍: %+v", c)
	}
	// u(2) changes to ❤️; an older change of theirs, late, does not undo it.
	handle(t, f.p, f.react(t, m, 2, "❤️", at.Add(2*time.Second)), f.react(t, m, 2, "😮", at.Add(time.Second)))
	c := f.counts(t, m.ID, 2)
	if len(c) != 2 || c[0].Count != 1 || c[1].Count != 1 {
		t.Fatalf("after the change: %+v", c)
	}
	for _, r := range c {
		if (r.Emoji == "❤️") != r.Mine || (r.Emoji != "❤️" && r.Emoji != "👍") {
			t.Fatalf("after the change: %+v", c)
		}
	}
	// Removal, redelivered; an older set delivered after it stays undone.
	rm := f.react(t, m, 2, "", at.Add(3*time.Second))
	handle(t, f.p, rm, rm, f.react(t, m, 2, "❤️", at.Add(2*time.Second)))
	if c := f.counts(t, m.ID, 2); len(c) != 1 || c[0].Emoji != "👍" || c[0].Count != 1 || c[0].Mine {
		t.Fatalf("after removal: %+v", c)
	}
	// Someone outside the conversation cannot react.
	handle(t, f.p, f.react(t, m, 3, "🎉", at))
	if n := f.reactionCount(t, m.ID); n != 1 {
		t.Fatalf("%d reactions; an outsider's was stored", n)
	}
}

func changesBeforeMessage(t *testing.T, f fixture) {
	m := f.sent(t, f.conv, 1, 2, "late")
	at := now()
	for _, e := range []events.Envelope{f.edit(t, m, 1, "edited", at), f.unsend(t, m, 1, events.ContentText, at), f.react(t, m, 2, "👍", at)} {
		if err := f.p.Handle(context.Background(), e); !errors.Is(err, persister.ErrNotYetStored) {
			t.Fatalf("%s before its message: %v, want ErrNotYetStored", e.Type, err)
		}
	}
}

func reactionDuringUnsend(t *testing.T, f fixture) {
	ctx := context.Background()
	m := f.sent(t, f.conv, 1, 2, "unsent while reacted to")
	handle(t, f.p, m)
	at := now()
	// The unsend's transaction holds the message's row while the reaction
	// is applied by another connection.
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if n, err := db.New(tx).UnsendMessage(ctx, db.UnsendMessageParams{UnsentAt: &at, ID: uuid.MustParse(m.ID),
		SenderID: f.u(1)}); err != nil || n != 1 {
		t.Fatalf("unsend: %d, %v", n, err)
	}
	done := make(chan error, 1)
	go func() { done <- f.p.Handle(ctx, f.react(t, m, 2, "👍", at.Add(time.Millisecond))) }()
	// Commit once the reaction either waits on the unsend's row lock or
	// has finished without waiting (the defect this guards against).
	var finished bool
	for !finished {
		var waiting bool
		if err := f.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%message_reactions%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-done:
			done <- err
			finished = true
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("reaction: %v", err)
	}
	if n := f.reactionCount(t, m.ID); n != 0 {
		t.Fatalf("a tombstone keeps %d reactions: the reaction did not wait for the unsend", n)
	}
	// Nor does a tombstone show a reaction stored for it by other means.
	if _, err := f.pool.Exec(ctx, `INSERT INTO message_reactions (message_id, user_id, emoji, changed_at) VALUES ($1, $2, '🎉', now())`, m.ID, f.u(1)); err != nil {
		t.Fatal(err)
	}
	if c := f.counts(t, m.ID, 2); len(c) != 0 {
		t.Fatalf("a tombstone shows reactions %+v", c)
	}
}

func deadlineOfTheEvent(t *testing.T, f fixture) {
	var logs bytes.Buffer // written by this subtest's persister only, synchronously
	p := persister.New(f.pool, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	m := f.sent(t, f.conv, 1, 2, "a window longer than the default")
	handle(t, p, m)
	// The ingress was configured with a day: an edit two hours after
	// sending applies, though the persister's defaults know 15 minutes.
	late := f.edit(t, m, 1, "edited after two hours", m.OccurredAt.Add(2*time.Hour))
	var e events.MessageEditedV1
	if err := late.Unmarshal(&e); err != nil {
		t.Fatal(err)
	}
	e.Deadline = m.OccurredAt.Add(24 * time.Hour)
	handle(t, p, f.envelope(t, 1, f.conv, e.EditedAt, e))
	if got := f.stored(t, m.ID); deref(got.TextContent) != e.TextContent {
		t.Fatalf("an edit within its event's deadline stored %q", deref(got.TextContent))
	}
	// An edit after the deadline its event carries is refused, at warn.
	e.TextContent, e.EditedAt = "after the deadline", e.Deadline.Add(time.Second)
	handle(t, p, f.envelope(t, 1, f.conv, e.EditedAt, e))
	if got := f.stored(t, m.ID); deref(got.TextContent) == e.TextContent {
		t.Fatal("an edit after its deadline applied")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), m.ID) {
		t.Fatalf("the refusal was not logged at warn: %q", logs.String())
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
