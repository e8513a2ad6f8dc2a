package pgbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
)

// Typing is ephemeral: it reaches fanout's queue, but writes no archive
// row and does not wait for a WAL flush.
func TestTypingIsNotArchived(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	typ, text := typing(t, 1), sent(t, "durable")
	if err := h.bus.Publish(ctx, typ); err != nil {
		t.Fatal(err)
	}
	if err := h.bus.Publish(ctx, text, typing(t, 2)); err != nil { // mixed in one call
		t.Fatal(err)
	}
	if n := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM event_archive WHERE type = '%s'`, events.TypeTyping)); n != 0 {
		t.Fatalf("%d typing events archived, want 0", n)
	}
	if n := count(t, h.pool, `SELECT count(*) FROM event_archive`); n != 1 {
		t.Fatalf("archive holds %d events, want the one message", n)
	}
	rec := newRecorder()
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{})
	rec.await(t, typ.ID, text.ID)
}

func claimOf(e events.Envelope, sender int64, clientID, hash string) db.InsertMessageRequestParams {
	raw, _ := e.Encode()
	return db.InsertMessageRequestParams{SenderID: sender, ClientMessageID: clientID,
		MessageID: uuid.MustParse(e.ID), RequestHash: hash, Envelope: raw}
}

// A claimed publish writes the claim and the event together; a second
// claim of the same client id publishes nothing, also when both arrive in
// one group.
func TestPublishClaimed(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	first := sent(t, "once")
	ok, err := h.bus.PublishClaimed(ctx, claimOf(first, 1, "c-1", "h"), first)
	if err != nil || !ok {
		t.Fatalf("first claim: claimed=%v err=%v", ok, err)
	}
	again := sent(t, "once")
	ok, err = h.bus.PublishClaimed(ctx, claimOf(again, 1, "c-1", "h"), again)
	if err != nil || ok {
		t.Fatalf("second claim: claimed=%v err=%v, want false", ok, err)
	}
	for id, want := range map[string]int{first.ID: 1, again.ID: 0} {
		if n := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM event_archive WHERE id = '%s'`, id)); n != want {
			t.Errorf("event %s archived %d times, want %d", id, n, want)
		}
		if n := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM queue_persister WHERE event_id = '%s'`, id)); n != want {
			t.Errorf("event %s queued %d times for the persister, want %d", id, n, want)
		}
	}

	// Many concurrent first attempts of one id, grouped: exactly one wins.
	const n = 32
	envs := make([]events.Envelope, n)
	won := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		envs[i] = sent(t, "race")
		wg.Go(func() { won[i], errs[i] = h.bus.PublishClaimed(ctx, claimOf(envs[i], 2, "c-race", "h"), envs[i]) })
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("attempt %d: %v", i, errs[i])
		}
		if won[i] {
			winners++
			if c := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM event_archive WHERE id = '%s'`, envs[i].ID)); c != 1 {
				t.Fatalf("the winner's event archived %d times", c)
			}
		}
	}
	if winners != 1 {
		t.Fatalf("%d attempts claimed c-race, want 1", winners)
	}
	if c := count(t, h.pool, `SELECT count(*) FROM event_archive`); c != 2 {
		t.Fatalf("archive holds %d events, want 2 (one per claimed id)", c)
	}
}

// The backlog is the age of the oldest event waiting for the persister or
// fanout; it ignores the thumbnailer.
func TestBacklogAge(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	b := pgbus.NewBacklog(h.pool, 200*time.Millisecond, 10*time.Millisecond, quiet)
	if age, err := b.Sample(ctx); err != nil || age != 0 || b.Overloaded() {
		t.Fatalf("empty queues: age %s err %v overloaded %v", age, err, b.Overloaded())
	}
	if _, err := h.pool.Exec(ctx, `INSERT INTO queue_thumbnailer (event_id, type, payload, created_at) VALUES ($1, 'MessageSent', '{}', now() - interval '1 hour')`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sample(ctx); err != nil || b.Overloaded() {
		t.Fatalf("a lagging thumbnailer made sends overloaded (err %v)", err)
	}
	if _, err := h.pool.Exec(ctx, `INSERT INTO queue_fanout (event_id, type, payload, created_at) VALUES ($1, 'Connected', '{}', now() - interval '1 hour')`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sample(ctx); err != nil || b.Overloaded() {
		t.Fatalf("a greeting waiting for its connection made sends overloaded (err %v)", err)
	}
	if _, err := h.pool.Exec(ctx, `INSERT INTO queue_fanout (event_id, type, payload, created_at) VALUES ($1, 'MessageSent', '{}', now() - interval '1 second')`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	age, err := b.Sample(ctx)
	if err != nil || age < time.Second || age > time.Minute { // the message's age, not the greeting's
		t.Fatalf("fanout lags a second: age %s err %v", age, err)
	}
	if b.Overloaded() {
		t.Fatal("one sample over the limit (a stall as likely as a backlog) refused sends")
	}
	for range 5 {
		if _, err := b.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !b.Overloaded() {
		t.Fatal("a lag that lasts several samples does not refuse sends")
	}
	if _, err := h.pool.Exec(ctx, `DELETE FROM queue_fanout`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sample(ctx); err != nil || b.Overloaded() {
		t.Fatalf("drained queue still overloaded (err %v)", err)
	}
}
