package persister_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/workers/persister"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestPersister runs the persister's cases in parallel over one database.
// Each case has users of its own (its fixture's u(1), u(2), ...), so their
// conversations never meet; TestReplayAfterTruncateRestoresState, which
// empties tables, has a database of its own.
func TestPersister(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	p := persister.New(pool, quiet)
	cases := []struct {
		name string
		run  func(t *testing.T, f fixture)
	}{
		{"MessageSent twice stores one row", messageSentTwice},
		{"concurrent writers get gap-free sequences", concurrentWriters},
		{"every event is idempotent", everyEventIsIdempotent},
		{"events before their message are retried", eventsBeforeTheirMessage},
		{"a read receipt applies stored messages first", readAppliesStoredFirst},
		{"a read of unknown or foreign messages applies to nothing", readOfUnknownMessages},
		{"the sender's own read receipt changes nothing", readBySender},
		{"settings: last writer wins", settingsLastWriterWins},
		{"bad events", badEvents},
		{"a lost conversation is recreated", lostConversation},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newFixture(t, pool, p, int64(1000*(i+1))))
		})
	}
}

type fixture struct {
	pool *pgxpool.Pool
	p    *persister.Persister
	base int64
	conv uuid.UUID // the direct conversation of u(1) and u(2)
}

func newFixture(t *testing.T, pool *pgxpool.Pool, p *persister.Persister, base int64) fixture {
	t.Helper()
	f := fixture{pool: pool, p: p, base: base}
	f.conv = f.direct(t, 1, 2)
	return f
}

// u is the fixture's user number n.
func (f fixture) u(n int64) int64 { return f.base + n }

// direct returns the direct conversation of users u(a) and u(b).
func (f fixture) direct(t *testing.T, a, b int64) uuid.UUID {
	t.Helper()
	id, _, err := db.GetOrCreateDirect(context.Background(), f.pool, uuid.Must(uuid.NewV7()), f.u(a), f.u(b))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// now is the ingress clock: microseconds, as PostgreSQL stores them.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// envelope wraps p as an event of user u(actor).
func (f fixture) envelope(t *testing.T, actor int64, conv uuid.UUID, at time.Time, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(uuid.Must(uuid.NewV7()).String(), at, f.u(actor), conv.String(), p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sent builds a MessageSent from u(from) to u(to) the way ingress does:
// the event id is the message id.
func (f fixture) sent(t *testing.T, conv uuid.UUID, from, to int64, text string) events.Envelope {
	t.Helper()
	id, at := uuid.Must(uuid.NewV7()).String(), now()
	from, to = f.u(from), f.u(to)
	e, err := events.New(id, at, from, conv.String(), events.MessageSentV1{
		MessageID: id, ConversationID: conv.String(), SenderID: from, RecipientID: to,
		ContentType: events.ContentText, TextContent: text, CreatedAt: at,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f fixture) image(t *testing.T, conv uuid.UUID, from, to int64) events.Envelope {
	t.Helper()
	id, at := uuid.Must(uuid.NewV7()).String(), now()
	from, to = f.u(from), f.u(to)
	e, err := events.New(id, at, from, conv.String(), events.MessageSentV1{
		MessageID: id, ConversationID: conv.String(), SenderID: from, RecipientID: to,
		ContentType: events.ContentImage, MediaKey: "chat/1/" + id + ".jpg", CreatedAt: at,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f fixture) read(t *testing.T, conv uuid.UUID, reader int64, at time.Time, ids ...string) events.Envelope {
	t.Helper()
	return f.envelope(t, reader, conv, at, events.MessageReadV1{ConversationID: conv.String(), ReaderID: f.u(reader), MessageIDs: ids, ReadAt: at})
}

func (f fixture) settings(t *testing.T, conv uuid.UUID, user int64, at time.Time, s events.ConversationSettingsChangedV1) events.Envelope {
	t.Helper()
	s.ConversationID, s.UserID, s.ChangedAt = conv.String(), f.u(user), at
	return f.envelope(t, user, conv, at, s)
}

func handle(t *testing.T, p *persister.Persister, envs ...events.Envelope) {
	t.Helper()
	for _, e := range envs {
		if err := p.Handle(context.Background(), e); err != nil {
			t.Fatalf("handle %s %s: %v", e.Type, e.ID, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// snapshot is the fixture's chat state as JSON (everything of its users'
// conversations), for before/after comparisons. With exact false it leaves
// out the two times that record when the persister wrote (messages.sent_at,
// conversations.updated_at).
func (f fixture) snapshot(t *testing.T, exact bool) string {
	t.Helper()
	var s string
	err := f.pool.QueryRow(context.Background(), `WITH mine AS (
		SELECT DISTINCT conversation_id AS id FROM conversation_participants WHERE user_id BETWEEN $3 AND $3 + 999)
	SELECT json_build_object(
		'conversations', (SELECT json_agg(to_jsonb(c) - $1::text ORDER BY c.id) FROM conversations c WHERE c.id IN (SELECT id FROM mine)),
		'participants', (SELECT json_agg(p ORDER BY p.conversation_id, p.user_id) FROM conversation_participants p WHERE p.conversation_id IN (SELECT id FROM mine)),
		'messages', (SELECT json_agg(to_jsonb(m) - $2::text ORDER BY m.conversation_id, m.seq) FROM messages m WHERE m.conversation_id IN (SELECT id FROM mine)),
		'deletions', (SELECT json_agg(d ORDER BY d.message_id, d.user_id) FROM message_deletions d WHERE d.user_id BETWEEN $3 AND $3 + 999))::text`,
		map[bool]string{true: "", false: "updated_at"}[exact], map[bool]string{true: "", false: "sent_at"}[exact], f.base).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type stored struct {
	ID      string
	Seq     int64
	Text    string
	ReadAt  *time.Time
	Deliver *time.Time
	Thumb   *string
}

func message(t *testing.T, pool *pgxpool.Pool, id string) (stored, bool) {
	t.Helper()
	m, err := db.New(pool).GetMessage(context.Background(), uuid.MustParse(id))
	if err != nil {
		return stored{}, false
	}
	s := stored{ID: m.ID.String(), Seq: m.Seq, ReadAt: m.ReadAt, Deliver: m.DeliveredAt, Thumb: m.MediaThumbnailKey}
	if m.TextContent != nil {
		s.Text = *m.TextContent
	}
	return s, true
}

func (f fixture) participant(t *testing.T, conv uuid.UUID, user int64) db.ConversationParticipant {
	t.Helper()
	p, err := db.New(f.pool).GetParticipant(context.Background(), db.GetParticipantParams{ConversationID: conv, UserID: f.u(user)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// seqs returns the conversation's message ids by sequence, failing unless
// the sequence is exactly 1..n.
func seqs(t *testing.T, pool *pgxpool.Pool, conv uuid.UUID) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, seq FROM messages WHERE conversation_id = $1 ORDER BY seq`, conv)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id uuid.UUID
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		if seq != int64(len(ids)+1) {
			t.Fatalf("conversation %s: seq %d at position %d: the sequence has a gap or a duplicate", conv, seq, len(ids)+1)
		}
		ids = append(ids, id.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func messageSentTwice(t *testing.T, f fixture) {
	ctx := context.Background()

	t.Run("one after the other", func(t *testing.T) {
		e := f.sent(t, f.conv, 1, 2, "hello")
		handle(t, f.p, e)
		before := f.snapshot(t, true)
		handle(t, f.p, e)
		if after := f.snapshot(t, true); after != before {
			t.Fatalf("second delivery changed the state:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("two deliveries at once", func(t *testing.T) {
		for range 20 {
			e := f.sent(t, f.conv, 2, 1, "race")
			start := make(chan struct{})
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs[i] = f.p.Handle(ctx, e)
				}()
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("concurrent deliveries: %v", err)
			}
			var n int
			if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE id = $1`, uuid.MustParse(e.ID)).Scan(&n); err != nil || n != 1 {
				t.Fatalf("message %s stored %d times (err %v)", e.ID, n, err)
			}
		}
	})

	if ids := seqs(t, f.pool, f.conv); len(ids) != 21 {
		t.Fatalf("%d messages stored, want 21", len(ids))
	}
}

// Many writers of one conversation at once get the sequence 1..N without
// gaps or duplicates, and each conversation has its own sequence.
func concurrentWriters(t *testing.T, f fixture) {
	other := f.direct(t, 1, 3)
	const writers, each = 50, 4
	want := map[uuid.UUID]map[string]bool{f.conv: {}, other: {}}
	batches := make([][]events.Envelope, writers)
	for w := range batches {
		conv, to := f.conv, int64(2)
		if w%5 == 0 {
			conv, to = other, 3
		}
		for i := range each {
			e := f.sent(t, conv, 1, to, fmt.Sprintf("w%d-%d", w, i))
			want[conv][e.ID] = true
			batches[w] = append(batches[w], e)
		}
	}
	errs := make(chan error, writers*each)
	var wg sync.WaitGroup
	for _, batch := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range batch {
				if err := f.p.Handle(context.Background(), e); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for conv, ids := range want {
		got := seqs(t, f.pool, conv)
		if len(got) != len(ids) {
			t.Fatalf("conversation %s holds %d messages, want %d", conv, len(got), len(ids))
		}
		for _, id := range got {
			if !ids[id] {
				t.Fatalf("conversation %s holds unexpected message %s", conv, id)
			}
		}
		var lastSeq int64
		if err := f.pool.QueryRow(context.Background(), `SELECT last_seq FROM conversations WHERE id = $1`, conv).Scan(&lastSeq); err != nil || lastSeq != int64(len(ids)) {
			t.Fatalf("conversation %s last_seq %d (err %v), want %d", conv, lastSeq, err, len(ids))
		}
	}
}

// Every event type the persister handles changes nothing when delivered a
// second time.
func everyEventIsIdempotent(t *testing.T, f fixture) {
	text := f.sent(t, f.conv, 1, 2, "to be read")
	img := f.image(t, f.conv, 1, 2)
	handle(t, f.p, text, img)
	again := f.sent(t, f.conv, 2, 1, "again")
	at := now()
	cases := []struct {
		name  string
		event events.Envelope
		check func(t *testing.T)
	}{
		{"MessageSent", again, func(t *testing.T) {
			if m, ok := message(t, f.pool, again.ID); !ok || m.Text != "again" || m.Seq != 3 {
				t.Fatalf("stored %+v (found %v), want text \"again\" at seq 3", m, ok)
			}
		}},
		{"MessageRead", f.read(t, f.conv, 2, at, text.ID), func(t *testing.T) {
			m, _ := message(t, f.pool, text.ID)
			if m.ReadAt == nil || !m.ReadAt.Equal(at) {
				t.Fatalf("read_at = %v, want %v", m.ReadAt, at)
			}
			if p := f.participant(t, f.conv, 2); p.LastReadSeq != m.Seq {
				t.Fatalf("last_read_seq = %d, want %d", p.LastReadSeq, m.Seq)
			}
		}},
		{"MessageDelivered", f.envelope(t, 2, f.conv, at, events.MessageDeliveredV1{
			MessageID: img.ID, ConversationID: f.conv.String(), SenderID: f.u(1), RecipientID: f.u(2), DeliveredAt: at,
		}), func(t *testing.T) {
			if m, _ := message(t, f.pool, img.ID); m.Deliver == nil || !m.Deliver.Equal(at) {
				t.Fatalf("delivered_at = %v, want %v", m.Deliver, at)
			}
		}},
		{"MessageDeleted", f.envelope(t, 1, f.conv, at, events.MessageDeletedV1{
			MessageID: text.ID, ConversationID: f.conv.String(), UserID: f.u(1), DeletedAt: at,
		}), func(t *testing.T) {
			var n int
			if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM message_deletions WHERE message_id = $1 AND user_id = $2`, uuid.MustParse(text.ID), f.u(1)).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%d deletions (err %v), want 1", n, err)
			}
		}},
		{"ConversationSettingsChanged", f.settings(t, f.conv, 1, at, events.ConversationSettingsChangedV1{Pinned: ptr(true), Muted: ptr(true)}), func(t *testing.T) {
			if p := f.participant(t, f.conv, 1); !p.Pinned || !p.Muted || p.Archived {
				t.Fatalf("settings = %+v", p)
			}
		}},
		{"ThumbnailReady", f.envelope(t, 1, f.conv, at, events.ThumbnailReadyV1{
			MessageID: img.ID, ConversationID: f.conv.String(), SenderID: f.u(1), RecipientID: f.u(2),
			MediaKey: "chat/1/x.jpg", ThumbnailKey: "chat/1/x_thumb.jpg", Width: 10, Height: 10,
		}), func(t *testing.T) {
			if m, _ := message(t, f.pool, img.ID); m.Thumb == nil || *m.Thumb != "chat/1/x_thumb.jpg" {
				t.Fatalf("thumbnail = %v", m.Thumb)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			handle(t, f.p, c.event)
			c.check(t)
			before := f.snapshot(t, true)
			handle(t, f.p, c.event)
			c.check(t)
			if after := f.snapshot(t, true); after != before {
				t.Fatalf("second delivery changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// A later, different event of the same kind does not overwrite what
	// the first one set: the first read and the first thumbnail win.
	handle(t, f.p, f.read(t, f.conv, 2, at.Add(time.Minute), text.ID),
		f.envelope(t, 1, f.conv, at, events.ThumbnailReadyV1{MessageID: img.ID, ConversationID: f.conv.String(), ThumbnailKey: "other.jpg"}))
	if m, _ := message(t, f.pool, text.ID); !m.ReadAt.Equal(at) {
		t.Fatalf("a later read receipt moved read_at to %v", m.ReadAt)
	}
	if m, _ := message(t, f.pool, img.ID); *m.Thumb != "chat/1/x_thumb.jpg" {
		t.Fatalf("a second thumbnail replaced the first: %s", *m.Thumb)
	}
}

// Replaying the same history into a messages table that lost its rows
// restores the same ids, sequences and contents.
func TestReplayAfterTruncateRestoresState(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	f := newFixture(t, pool, persister.New(pool, quiet), 0)
	other := f.direct(t, 2, 3)
	var history []events.Envelope
	for i := range 30 {
		conv, from, to := f.conv, int64(1+i%2), int64(2-i%2)
		if i%3 == 0 {
			conv, from, to = other, 3, 2
		}
		history = append(history, f.sent(t, conv, from, to, fmt.Sprintf("message %d", i)))
	}
	img := f.image(t, f.conv, 1, 2)
	at := now()
	history = append(history,
		img,
		f.read(t, f.conv, 2, at, history[2].ID, history[4].ID), // both addressed to user 2
		f.envelope(t, 2, f.conv, at, events.MessageDeliveredV1{MessageID: history[5].ID, ConversationID: f.conv.String(), DeliveredAt: at}),
		f.envelope(t, 1, f.conv, at, events.MessageDeletedV1{MessageID: history[1].ID, ConversationID: f.conv.String(), UserID: f.u(1), DeletedAt: at}),
		f.envelope(t, 1, f.conv, at, events.ThumbnailReadyV1{MessageID: img.ID, ConversationID: f.conv.String(), ThumbnailKey: "thumb.jpg"}),
	)
	handle(t, f.p, history...)
	want := f.snapshot(t, false)

	if _, err := f.pool.Exec(context.Background(), `TRUNCATE messages, message_deletions CASCADE`); err != nil {
		t.Fatal(err)
	}
	if got := f.snapshot(t, false); got == want {
		t.Fatal("truncating changed nothing; the test proves nothing")
	}
	handle(t, f.p, history...)
	if got := f.snapshot(t, false); got != want {
		t.Fatalf("replay did not restore the state:\nwant %s\ngot  %s", want, got)
	}
}

// Queues do not promise order: a delivery or thumbnail of a message not
// stored yet is an error the bus retries, and applies once the message is
// there; a read is recorded as pending and applied when the message is
// stored, with no retry.
func eventsBeforeTheirMessage(t *testing.T, f fixture) {
	ctx := context.Background()
	at := now()
	msg := f.sent(t, f.conv, 1, 2, "late")
	img := f.image(t, f.conv, 1, 2)
	read := f.read(t, f.conv, 2, at, msg.ID)
	if err := f.p.Handle(ctx, read); err != nil {
		t.Fatalf("read before its message: %v, want it recorded without a retry", err)
	}
	early := []events.Envelope{
		f.envelope(t, 2, f.conv, at, events.MessageDeliveredV1{MessageID: img.ID, ConversationID: f.conv.String(), DeliveredAt: at}),
		f.envelope(t, 1, f.conv, at, events.ThumbnailReadyV1{MessageID: img.ID, ConversationID: f.conv.String(), ThumbnailKey: "t.jpg"}),
	}
	for _, e := range early {
		err := f.p.Handle(ctx, e)
		if !errors.Is(err, persister.ErrNotYetStored) {
			t.Fatalf("%s before its message: err = %v, want ErrNotYetStored", e.Type, err)
		}
		if events.IsPermanent(err) {
			t.Fatalf("%s before its message is a permanent error; the bus would not retry it", e.Type)
		}
	}
	handle(t, f.p, msg, img)
	m, _ := message(t, f.pool, msg.ID)
	if m.ReadAt == nil || !m.ReadAt.Equal(at) {
		t.Fatalf("read_at = %v once stored, want %v", m.ReadAt, at)
	}
	if p := f.participant(t, f.conv, 2); p.LastReadSeq != m.Seq {
		t.Fatalf("last_read_seq = %d, want %d", p.LastReadSeq, m.Seq)
	}
	handle(t, f.p, early...)
	if i, _ := message(t, f.pool, img.ID); i.Deliver == nil || i.Thumb == nil {
		t.Fatalf("delivery or thumbnail not applied after the retry: %+v", i)
	}
	if n := pendingReads(t, f.pool, f.conv); n != 0 {
		t.Errorf("%d pending reads left after their messages were stored", n)
	}
	// Redelivery and replay change nothing.
	handle(t, f.p, read, msg)
	if m2, _ := message(t, f.pool, msg.ID); !m2.ReadAt.Equal(at) || m2.Seq != m.Seq {
		t.Fatalf("after redelivery: %+v, want %+v", m2, m)
	}
}

// A read receipt naming stored and not-yet-stored messages marks the stored
// ones at once, and the rest when they are stored.
func readAppliesStoredFirst(t *testing.T, f fixture) {
	at := now()
	here, later := f.sent(t, f.conv, 1, 2, "here"), f.sent(t, f.conv, 1, 2, "later")
	handle(t, f.p, here)
	r := f.read(t, f.conv, 2, at, here.ID, later.ID)
	if err := f.p.Handle(context.Background(), r); err != nil {
		t.Fatalf("err = %v, want none", err)
	}
	if m, _ := message(t, f.pool, here.ID); m.ReadAt == nil {
		t.Fatal("the stored message was not marked read")
	}
	handle(t, f.p, later)
	for _, id := range []string{here.ID, later.ID} {
		if m, _ := message(t, f.pool, id); m.ReadAt == nil || !m.ReadAt.Equal(at) {
			t.Fatalf("message %s read_at = %v, want %v", id, m.ReadAt, at)
		}
	}
	if p := f.participant(t, f.conv, 2); p.LastReadSeq != 2 {
		t.Fatalf("last_read_seq = %d, want 2", p.LastReadSeq)
	}
}

// A read naming an id that is no message, a message of another
// conversation, or a later message of that id in another conversation
// succeeds and changes nothing: a client's mistake is not the operator's.
func readOfUnknownMessages(t *testing.T, f fixture) {
	other := f.direct(t, 1, 3)
	theirs := f.sent(t, other, 1, 3, "not yours")
	handle(t, f.p, theirs)
	before := f.snapshot(t, true)
	random := uuid.Must(uuid.NewV7()).String()
	late := f.sent(t, other, 1, 3, "sent elsewhere")
	for _, r := range []events.Envelope{
		f.read(t, f.conv, 2, now(), random),
		f.read(t, f.conv, 2, now(), theirs.ID),
		f.read(t, f.conv, 2, now(), late.ID),
	} {
		if err := f.p.Handle(context.Background(), r); err != nil {
			t.Fatalf("read of an unknown or foreign message: %v, want none", err)
		}
	}
	if after := f.snapshot(t, true); after != before {
		t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
	}
	handle(t, f.p, late)
	if m, _ := message(t, f.pool, late.ID); m.ReadAt != nil {
		t.Fatalf("a read from another conversation marked %s read", late.ID)
	}
	if p := f.participant(t, other, 3); p.LastReadSeq != 0 {
		t.Fatalf("last_read_seq of the real recipient = %d", p.LastReadSeq)
	}
}

// Only the recipient's receipt marks a message read.
func readBySender(t *testing.T, f fixture) {
	m := f.sent(t, f.conv, 1, 2, "mine")
	handle(t, f.p, m)
	before := f.snapshot(t, true)
	handle(t, f.p, f.read(t, f.conv, 1, now(), m.ID))
	if after := f.snapshot(t, true); after != before {
		t.Fatalf("the sender's own receipt changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// Settings: last writer wins by changed_at, per setting, whatever order the
// changes arrive in.
func settingsLastWriterWins(t *testing.T, f fixture) {
	t0 := now()
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	type change struct {
		at time.Time
		s  events.ConversationSettingsChangedV1
	}
	type want struct{ pinned, muted, archived, deleted bool }
	cases := []struct {
		name    string
		changes []change
		want    want
	}{
		{"newer after older", []change{{t1, events.ConversationSettingsChangedV1{Pinned: ptr(true)}}, {t2, events.ConversationSettingsChangedV1{Pinned: ptr(false)}}}, want{}},
		{"older after newer is ignored", []change{{t2, events.ConversationSettingsChangedV1{Pinned: ptr(true)}}, {t1, events.ConversationSettingsChangedV1{Pinned: ptr(false)}}}, want{pinned: true}},
		{"same time twice", []change{{t1, events.ConversationSettingsChangedV1{Muted: ptr(true)}}, {t1, events.ConversationSettingsChangedV1{Muted: ptr(false)}}}, want{muted: true}},
		{"different settings out of order both apply", []change{{t2, events.ConversationSettingsChangedV1{Muted: ptr(true)}}, {t1, events.ConversationSettingsChangedV1{Pinned: ptr(true)}}}, want{pinned: true, muted: true}},
		{"an older change of two settings applies only where it is newer", []change{
			{t2, events.ConversationSettingsChangedV1{Archived: ptr(true)}},
			{t1, events.ConversationSettingsChangedV1{Archived: ptr(false), Pinned: ptr(true)}},
		}, want{pinned: true, archived: true}},
		{"delete then undelete", []change{{t1, events.ConversationSettingsChangedV1{Deleted: ptr(true)}}, {t2, events.ConversationSettingsChangedV1{Deleted: ptr(false)}}}, want{}},
		{"undelete arrives before the delete it follows", []change{{t2, events.ConversationSettingsChangedV1{Deleted: ptr(false)}}, {t1, events.ConversationSettingsChangedV1{Deleted: ptr(true)}}}, want{}},
		{"delete", []change{{t1, events.ConversationSettingsChangedV1{Deleted: ptr(true)}}}, want{deleted: true}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conv := f.direct(t, 1, int64(100+i))
			for _, ch := range c.changes {
				handle(t, f.p, f.settings(t, conv, 1, ch.at, ch.s))
			}
			p := f.participant(t, conv, 1)
			got := want{p.Pinned, p.Muted, p.Archived, p.DeletedAt != nil}
			if got != c.want {
				t.Fatalf("settings = %+v, want %+v", got, c.want)
			}
			if other := f.participant(t, conv, int64(100+i)); other.Pinned || other.Muted || other.Archived || other.DeletedAt != nil {
				t.Fatalf("the other participant's settings changed: %+v", other)
			}
		})
	}
}

// Events that can never be applied are permanent errors, dead-lettered at
// once; an unknown type is acknowledged and skipped.
func badEvents(t *testing.T, f fixture) {
	raw := func(typ string, data string) events.Envelope {
		return events.Envelope{ID: uuid.Must(uuid.NewV7()).String(), Type: typ, Version: 1, OccurredAt: now(), ActorID: 1, Data: []byte(data)}
	}
	cases := []struct {
		name      string
		event     events.Envelope
		permanent bool
	}{
		{"MessageSent without text", raw(events.TypeMessageSent, fmt.Sprintf(`{"message_id":%q,"conversation_id":%q,"sender_id":1,"recipient_id":2,"content_type":"text","created_at":"2026-01-01T00:00:00Z"}`, uuid.NewString(), f.conv)), true},
		{"MessageSent with a bad id", raw(events.TypeMessageSent, `{"message_id":"x"}`), true},
		{"MessageSent of version 2", func() events.Envelope { e := f.sent(t, f.conv, 1, 2, "v2"); e.Version = 2; return e }(), true},
		{"MessageRead without ids", raw(events.TypeMessageRead, fmt.Sprintf(`{"conversation_id":%q,"reader_id":2,"message_ids":[],"read_at":"2026-01-01T00:00:00Z"}`, f.conv)), true},
		{"settings changing nothing", raw(events.TypeConversationSettingsChanged, fmt.Sprintf(`{"conversation_id":%q,"user_id":1,"changed_at":"2026-01-01T00:00:00Z"}`, f.conv)), true},
		{"data that is not JSON", raw(events.TypeMessageDeleted, `nope`), true},
		{"a MessageSent for a pair that already has another conversation", func() events.Envelope {
			return f.sent(t, uuid.Must(uuid.NewV7()), 1, 2, "wrong conversation")
		}(), true},
		{"an unknown type", raw("MessageStarred", `{}`), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.snapshot(t, true)
			err := f.p.Handle(context.Background(), c.event)
			if c.permanent != events.IsPermanent(err) || (!c.permanent && err != nil) {
				t.Fatalf("err = %v, want permanent=%v", err, c.permanent)
			}
			if after := f.snapshot(t, true); after != before {
				t.Fatalf("a refused event changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// After a restore that lost a conversation, its messages recreate it from
// the event, under the same id.
func lostConversation(t *testing.T, f fixture) {
	first := f.sent(t, f.conv, 1, 2, "before the loss")
	handle(t, f.p, first)
	if _, err := f.pool.Exec(context.Background(), `DELETE FROM conversations WHERE id = $1`, f.conv); err != nil {
		t.Fatal(err)
	}
	handle(t, f.p, first, f.sent(t, f.conv, 2, 1, "after"))
	if ids := seqs(t, f.pool, f.conv); len(ids) != 2 || ids[0] != first.ID {
		t.Fatalf("messages after recreation: %v", ids)
	}
	for _, u := range []int64{1, 2} {
		f.participant(t, f.conv, u)
	}
}

// failures counts the handler's calls and errors, to see the bus retry.
type failures struct {
	events.Handler
	mu    sync.Mutex
	calls int
	errs  []error
}

func (f *failures) Handle(ctx context.Context, e events.Envelope) error {
	err := f.Handler.Handle(ctx, e)
	f.mu.Lock()
	f.calls++
	if err != nil {
		f.errs = append(f.errs, err)
	}
	f.mu.Unlock()
	return err
}

func (f *failures) handled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *failures) seen() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs)
}

// Through the real bus: a read receipt that arrives before its message is
// handled once, without an error, and applies when the message is stored;
// one naming an id that is no message is handled once too. Nothing is
// retried or dead-lettered.
func TestBusReadBeforeItsMessage(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	f := newFixture(t, pool, persister.New(pool, quiet), 0)
	h := &failures{Handler: f.p}
	ctx, bus := consume(t, pool, events.AsBatch(h), pgbus.ConsumerConfig{Concurrency: 1, MaxAttempts: 5, RetryBackoff: 10 * time.Millisecond})

	msg := f.sent(t, f.conv, 1, 2, "slow")
	at := now()
	reads := []events.Envelope{f.read(t, f.conv, 2, at, msg.ID), f.read(t, f.conv, 2, at, uuid.Must(uuid.NewV7()).String())}
	if err := bus.Publish(ctx, reads...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.handled() < len(reads) || queued(t, pool) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the read receipts were never handled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if errs := h.seen(); len(errs) != 0 || h.handled() != len(reads) {
		t.Fatalf("%d calls for %d receipts, errors %v: want each handled once", h.handled(), len(reads), errs)
	}
	if err := bus.Publish(ctx, msg); err != nil {
		t.Fatal(err)
	}
	for {
		if m, _ := message(t, pool, msg.ID); m.ReadAt != nil {
			if !m.ReadAt.Equal(at) {
				t.Fatalf("read_at %v, want %v", m.ReadAt, at)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read receipt was never applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if dls, err := bus.DeadLetters(ctx, "", true, 10); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters: %v (err %v)", dls, err)
	}
	if errs := h.seen(); len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
}

// pendingReads counts the reads in a conversation waiting for their message.
func pendingReads(t *testing.T, pool *pgxpool.Pool, conv uuid.UUID) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pending_reads WHERE conversation_id = $1", conv).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// queued counts the persister's events waiting in its queue, retries too.
func queued(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM queue_persister").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Through the real bus, consumers claiming batches that grow with load:
// every conversation's messages get gap-free sequences in the order each
// sender sent them, also when events are delivered again; a message the
// database refuses fails alone, and its neighbours in the same batch are
// stored.
func TestBatchesKeepOrderAndGaplessSequences(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	f := newFixture(t, pool, persister.New(pool, quiet), 0)
	ctx, bus := consume(t, pool, f.p, pgbus.ConsumerConfig{Concurrency: 4, BatchSize: 50, MaxAttempts: 3, RetryBackoff: time.Millisecond})

	const convs, each = 12, 40
	sent := make([][]events.Envelope, convs)
	var bad events.Envelope
	var wg sync.WaitGroup
	for c := range convs {
		conv := f.direct(t, 1, int64(10+c))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := f.sent(t, conv, 1, int64(10+c), fmt.Sprintf("c%d-%d", c, i))
				if c == 0 && i == each/2 {
					// Valid as an event, refused by the table's check.
					id, at := uuid.Must(uuid.NewV7()).String(), now()
					neg := int32(-5)
					e, _ = events.New(id, at, f.u(1), conv.String(), events.MessageSentV1{
						MessageID: id, ConversationID: conv.String(), SenderID: f.u(1), RecipientID: f.u(int64(10 + c)),
						ContentType: events.ContentAudio, MediaKey: "chat/1/" + id + ".m4a", AudioDuration: &neg, CreatedAt: at,
					})
					bad = e
				} else {
					sent[c] = append(sent[c], e)
				}
				if err := bus.Publish(ctx, e); err != nil {
					t.Error(err)
					return
				}
				if i == each/4 {
					// Redelivery: earlier events of this conversation again.
					if err := bus.PublishTo(ctx, events.WorkerPersister, sent[c][:5]...); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for c := range convs {
		conv := uuid.MustParse(sent[c][0].ConversationID)
		for {
			got := seqs(t, pool, conv)
			if len(got) == len(sent[c]) {
				for i, e := range sent[c] {
					if got[i] != e.ID {
						t.Fatalf("conversation %d: position %d holds %s, want %s (sent order)", c, i+1, got[i], e.ID)
					}
				}
				break
			}
			if len(got) > len(sent[c]) || time.Now().After(deadline) {
				t.Fatalf("conversation %d holds %d messages, want %d", c, len(got), len(sent[c]))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var dl struct {
		id       uuid.UUID
		attempts int32
	}
	for {
		err := pool.QueryRow(ctx, `SELECT event_id, attempts FROM dead_letters`).Scan(&dl.id, &dl.attempts)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused message was not dead-lettered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dl.id.String() != bad.ID || dl.attempts != 1 {
		t.Fatalf("dead letter %s after %d attempts, want %s after 1 (a refused row is permanent)", dl.id, dl.attempts, bad.ID)
	}
}

// consume runs h as the persister worker over the real bus until the test
// ends, and returns the bus to publish to and a context ended with it.
func consume(t *testing.T, pool *pgxpool.Pool, h events.BatchHandler, cfg pgbus.ConsumerConfig) (context.Context, *pgbus.Bus) {
	t.Helper()
	dsn := pool.Config().ConnString()
	waker := pgbus.NewWaker(dsn, quiet)
	bus := pgbus.New(pool, waker, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	if err := bus.Init(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = waker.Run(ctx) }()
	done := make(chan error, 1)
	go func() { done <- pgbus.Consume(ctx, pool, waker, events.WorkerPersister, h, cfg, quiet) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consume: %v", err)
		}
	})
	return ctx, bus
}

// A delivery receipt in its message's batch is stored with the message, in
// the insert, instead of updating the row just written; a receipt of a
// message stored before still updates it. Outcomes, stored times and the
// sender's feed are those of applying the receipts one by one. A database
// of its own: a trigger records every update of a message.
func TestReceiptInItsMessageBatch(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE message_updates (id uuid NOT NULL);
CREATE FUNCTION note_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO message_updates VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER note_message_update AFTER UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION note_message_update();`); err != nil {
		t.Fatal(err)
	}
	updates := func(id string) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM message_updates WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	f := newFixture(t, pool, persister.New(pool, quiet), 1000)
	t0 := now()
	before := f.sent(t, f.conv, 1, 2, "stored before")
	batch(t, f.p, before)

	m1 := f.sent(t, f.conv, 1, 2, "one")
	m2 := f.sent(t, f.conv, 1, 2, "two, never delivered")
	all := []events.Envelope{
		m1,
		f.delivered(t, m1, t0.Add(time.Second)),
		f.delivered(t, before, t0.Add(2*time.Second)),
		m2,
		f.delivered(t, m1, t0.Add(3*time.Second)), // a second receipt: the first one's time stays
	}
	batch(t, f.p, all...)

	for _, c := range []struct {
		m       events.Envelope
		want    *time.Time
		updates int
	}{
		{m1, ptr(t0.Add(time.Second)), 0},
		{before, ptr(t0.Add(2 * time.Second)), 1},
		{m2, nil, 0},
	} {
		s, ok := message(t, pool, c.m.ID)
		switch {
		case !ok:
			t.Fatalf("message %s not stored", c.m.ID)
		case (s.Deliver == nil) != (c.want == nil) || s.Deliver != nil && !s.Deliver.Equal(*c.want):
			t.Fatalf("message %q: delivered at %v, want %v", s.Text, s.Deliver, c.want)
		case updates(c.m.ID) != c.updates:
			t.Fatalf("message %q: updated %d times, want %d", s.Text, updates(c.m.ID), c.updates)
		}
	}
	delivered := func() []string {
		var ids []string
		for _, e := range f.feed(t, 1) {
			if e.Kind == "messageDelivered" {
				ids = append(ids, e.Data["messageId"].(string))
			}
		}
		return ids
	}
	// Each message once, in the receipts' order.
	if got, want := delivered(), []string{m1.ID, before.ID}; !slices.Equal(got, want) {
		t.Fatalf("u1's messageDelivered entries %v, want %v", got, want)
	}
	if k := kinds(f.feed(t, 2)); len(k) != 3 || k[0] != "newMessage" {
		t.Fatalf("u2's feed %v, want its three newMessage entries", kinds(f.feed(t, 2)))
	}

	// Redelivered, as one batch and one by one: nothing changes.
	feed1 := f.feed(t, 1)
	batch(t, f.p, all...)
	handle(t, f.p, all...)
	if got := f.feed(t, 1); !slices.EqualFunc(got, feed1, sameEntry) {
		t.Fatalf("redelivery changed u1's feed: %v, was %v", kinds(got), kinds(feed1))
	}
	if s, _ := message(t, pool, m1.ID); !s.Deliver.Equal(t0.Add(time.Second)) || updates(m1.ID) != 0 {
		t.Fatalf("after redelivery: delivered at %v, updated %d times", s.Deliver, updates(m1.ID))
	}
}
