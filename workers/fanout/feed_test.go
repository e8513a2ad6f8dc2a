package fanout_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/workers/fanout"
	"github.com/parleychat/parley/workers/persister"
)

// takeAnnounced returns the one FeedAppended the persister published to
// b since the last call.
func takeAnnounced(t *testing.T, b *bus) events.Envelope {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) != 1 || b.events[0].Type != events.TypeFeedAppended {
		t.Fatalf("announced %v, want one FeedAppended", ids(b.events))
	}
	e := b.events[0]
	b.events = nil
	return e
}

// feedFrame is a feedChange frame, decoded.
type feedFrame struct {
	Type  string `json:"type"`
	Epoch int64  `json:"epoch"`
	Data  struct {
		Position       int64          `json:"position"`
		Kind           string         `json:"kind"`
		ConversationID string         `json:"conversation_id"`
		Data           map[string]any `json:"data"`
	} `json:"data"`
}

// TestFeedMode: a connection in feed mode gets no fast frame of a feed
// change; the persister's announcement brings it the entry, read from the
// feed, and confirms the message to the sender, or asks for a push when no
// feed connection of the recipient got it; an announcement of another
// epoch posts nothing.
func TestFeedMode(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	f := fanout.New(h.store, h.client, h.bus, nil, testLogger(t), fanout.WithFeed(db.New(h.pool)))
	ann := &bus{}
	p := persister.New(h.pool, slog.New(slog.DiscardHandler), persister.WithFeedAnnouncements(ann, true))
	plain1, feed2 := h.dial(t, 1), h.dialQuery(t, 2, "&feed=1")

	// message is a message from user 1 to user to, in their stored
	// conversation, as the ingress publishes it.
	message := func(to int64) (events.MessageSentV1, events.Envelope) {
		conv, _, err := db.GetOrCreateDirect(ctx, h.pool, uuid.Must(uuid.NewV7()), 1, to)
		if err != nil {
			t.Fatal(err)
		}
		m := textMessage(1, to, "")
		m.ConversationID = conv.String()
		e := envelope(t, 1, m.ConversationID, m)
		e.ID = m.MessageID
		return m, e
	}
	m, sent := message(2)
	handle(t, f, sent)
	plain1.expectJSON(t, newMessageJSON(m)) // the sender's other device, as always
	feed2.expectNothing(t)
	if pub := h.bus.published(); len(pub) != 0 {
		t.Fatalf("published %v: a recipient in feed mode is confirmed or pushed from the feed", ids(pub))
	}

	if err := p.Handle(ctx, sent); err != nil {
		t.Fatal(err)
	}
	a := takeAnnounced(t, ann) // user 2's entry only: user 1 has no feed connection
	handle(t, f, a)
	var fr feedFrame
	if err := json.Unmarshal(feed2.read(t), &fr); err != nil {
		t.Fatal(err)
	}
	if fr.Type != "feedChange" || fr.Epoch <= 0 || fr.Data.Position != 1 || fr.Data.Kind != "newMessage" ||
		fr.Data.ConversationID != m.ConversationID || fr.Data.Data["id"] != m.MessageID || fr.Data.Data["seq"] != float64(1) {
		t.Fatalf("feed frame %+v", fr)
	}
	if d := delivered(t, h.bus); len(d) != 1 || d[0].MessageID != m.MessageID || d[0].RecipientID != 2 {
		t.Fatalf("receipts %+v, want the message delivered to user 2", d)
	}
	var receipt map[string]any
	if err := json.Unmarshal(plain1.read(t), &receipt); err != nil || receipt["type"] != "messageDelivered" {
		t.Fatalf("the sender's plain device got %v (%v), want messageDelivered", receipt, err)
	}
	if pr := pushRequests(t, h.bus); len(pr) != 0 {
		t.Fatalf("push requests %+v for a message a feed connection got", pr)
	}

	// The same announcement in another epoch (the feed renewed since):
	// nothing posted, nothing published.
	var stale events.FeedAppendedV1
	if err := a.Unmarshal(&stale); err != nil {
		t.Fatal(err)
	}
	stale.Entries[0].Epoch++
	before := len(h.bus.published())
	handle(t, f, envelope(t, 0, "", stale))
	feed2.expectNothing(t)
	if n := len(h.bus.published()); n != before {
		t.Fatalf("a stale announcement published %d events", n-before)
	}

	// User 3's only record is of a feed connection that is gone: its post
	// fails, so the message is pushed.
	at := time.Now().Add(-time.Hour)
	if err := h.store.Put(ctx, connstore.Connection{ID: "gone", UserID: 3, Feed: true, ConnectedAt: at, LastPingAt: at, ExpiresAt: at.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	m3, sent3 := message(3)
	handle(t, f, sent3)
	if pr := pushRequests(t, h.bus); len(pr) != 0 {
		t.Fatalf("push requests %+v before the feed's post", pr)
	}
	if err := p.Handle(ctx, sent3); err != nil {
		t.Fatal(err)
	}
	handle(t, f, takeAnnounced(t, ann))
	if pr := pushRequests(t, h.bus); len(pr) != 1 || pr[0].MessageID != m3.MessageID || pr[0].RecipientID != 3 || pr[0].TextContent != "hello" {
		t.Fatalf("push requests %+v, want message %s pushed to user 3", pr, m3.MessageID)
	}
	if _, err := h.store.Get(ctx, "gone"); err == nil {
		t.Error("the gone connection's record was kept")
	}

	// User 4 closes its feed connection between the message's fanout and
	// the announcement's: it holds no connection then, and the message is
	// pushed all the same (plain and plain+feed recipients alike).
	if err := h.store.Put(ctx, connstore.Connection{ID: "closing", UserID: 4, Feed: true, ConnectedAt: at, LastPingAt: at, ExpiresAt: at.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	m4, sent4 := message(4)
	handle(t, f, sent4)
	if err := p.Handle(ctx, sent4); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Delete(ctx, "closing"); err != nil {
		t.Fatal(err)
	}
	handle(t, f, takeAnnounced(t, ann))
	if pr := pushRequests(t, h.bus); len(pr) != 2 || pr[1].MessageID != m4.MessageID || pr[1].RecipientID != 4 {
		t.Fatalf("push requests %+v, want message %s pushed to user 4", pr, m4.MessageID)
	}

	// User 5 closes it even before the persister stores the message: the
	// persister still announces the entry (the connection was removed
	// moments ago), and the message is pushed.
	if err := h.store.Put(ctx, connstore.Connection{ID: "closed", UserID: 5, Feed: true, ConnectedAt: at, LastPingAt: at, ExpiresAt: at.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	m5, sent5 := message(5)
	handle(t, f, sent5)
	if err := h.store.Delete(ctx, "closed"); err != nil {
		t.Fatal(err)
	}
	if err := p.Handle(ctx, sent5); err != nil {
		t.Fatal(err)
	}
	handle(t, f, takeAnnounced(t, ann))
	if pr := pushRequests(t, h.bus); len(pr) != 3 || pr[2].MessageID != m5.MessageID || pr[2].RecipientID != 5 {
		t.Fatalf("push requests %+v, want message %s pushed to user 5", pr, m5.MessageID)
	}
}

// readsCounted passes reads of feed entries to the database, telling reads
// on after each.
type readsCounted struct {
	fanout.FeedEntries
	read chan int // the number of rows each read found
}

func (r readsCounted) ListFeedEntries(ctx context.Context, arg db.ListFeedEntriesParams) ([]db.ListFeedEntriesRow, error) {
	rows, err := r.FeedEntries.ListFeedEntries(ctx, arg)
	r.read <- len(rows)
	return rows, err
}

// TestFeedAnnouncementBeforeItsCommit: an announcement published before its
// batch committed (EventBridge) whose entries fanout does not find yet is
// read again a moment later, and posted.
func TestFeedAnnouncementBeforeItsCommit(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	reads := readsCounted{FeedEntries: db.New(h.pool), read: make(chan int, 4)}
	f := fanout.New(h.store, h.client, h.bus, nil, testLogger(t), fanout.WithFeed(reads))
	ann := &bus{}
	p := persister.New(h.pool, slog.New(slog.DiscardHandler), persister.WithFeedAnnouncements(ann, false))
	feed2 := h.dialQuery(t, 2, "&feed=1")
	conv, _, err := db.GetOrCreateDirect(ctx, h.pool, uuid.Must(uuid.NewV7()), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := textMessage(1, 2, "")
	m.ConversationID = conv.String()
	sent := envelope(t, 1, m.ConversationID, m)
	sent.ID = m.MessageID

	// The batch's transaction, open while its announcement is handled.
	tx, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	sctx, _ := db.WithScope(ctx, tx)
	if errs := p.HandleBatch(sctx, []events.Envelope{sent}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	a := takeAnnounced(t, ann)
	done := make(chan error, 1)
	go func() { done <- f.Handle(ctx, a) }()
	if n := <-reads.read; n != 0 {
		t.Fatalf("the first read found %d entries of an uncommitted batch", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := <-reads.read; n != 1 {
		t.Fatalf("the read after the commit found %d entries, want 1", n)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var fr feedFrame
	if err := json.Unmarshal(feed2.read(t), &fr); err != nil || fr.Data.Data["id"] != m.MessageID {
		t.Fatalf("feed frame %+v (%v), want the message", fr, err)
	}
}
