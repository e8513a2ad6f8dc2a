package pgbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
)

// envelopes is a handler that hands each event it gets to a channel.
func envelopes() (events.Handler, chan events.Envelope) {
	got := make(chan events.Envelope, 100)
	return events.HandlerFunc(func(_ context.Context, e events.Envelope) error {
		got <- e
		return nil
	}), got
}

// sameJSON compares two JSON documents as values: jsonb reorders keys.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func receive(t *testing.T, got chan events.Envelope, n int) map[string]events.Envelope {
	t.Helper()
	out := map[string]events.Envelope{}
	deadline := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case e := <-got:
			out[e.ID] = e
		case <-deadline:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

// TestQueuedEventsAreReadFromTheArchive: an event archived by the statement
// that queues it is queued without a copy of its envelope, and consumers
// still get the whole envelope; an event that statement did not archive (an
// ephemeral one, a republished one, PublishTo's) carries its own.
func TestQueuedEventsAreReadFromTheArchive(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	msg, typ, again := sent(t, "from the archive"), typing(t, 1), sent(t, "published twice")
	if err := h.bus.Publish(ctx, again); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `DELETE FROM queue_persister; DELETE FROM queue_fanout`); err != nil {
		t.Fatal(err)
	}
	if err := h.bus.Publish(ctx, msg, typ, again); err != nil {
		t.Fatal(err)
	}
	replayed := connected(t, 7)
	if err := h.bus.PublishTo(ctx, events.WorkerFanout, replayed); err != nil {
		t.Fatal(err)
	}
	// The persister's and fanout's copies of msg point at its archive row.
	if n := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM queue_persister WHERE event_id = '%s' AND payload IS NULL`, msg.ID)); n != 1 {
		t.Errorf("the persister's row of an archived event: %d without a payload, want 1", n)
	}
	if n := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM queue_fanout WHERE event_id = '%s' AND payload IS NULL`, msg.ID)); n != 1 {
		t.Errorf("fanout's row of an archived event: %d without a payload, want 1", n)
	}
	for _, e := range []events.Envelope{typ, again, replayed} {
		if n := count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM queue_fanout WHERE event_id = '%s' AND payload IS NOT NULL`, e.ID)); n != 1 {
			t.Errorf("%s (%s): %d queue rows with a payload, want 1", e.Type, e.ID, n)
		}
	}

	handler, got := envelopes()
	h.consume(t, events.WorkerFanout, handler, pgbus.ConsumerConfig{})
	seen := receive(t, got, 4)
	for _, want := range []events.Envelope{msg, typ, again, replayed} {
		e, ok := seen[want.ID]
		if !ok {
			t.Errorf("%s never delivered", want.ID)
			continue
		}
		if e.Type != want.Type || e.ConversationID != want.ConversationID || !sameJSON(t, e.Data, want.Data) {
			t.Errorf("delivered %s %s %s, want %s %s %s", e.Type, e.ConversationID, e.Data, want.Type, want.ConversationID, want.Data)
		}
	}
}

// TestQueuedEventWithoutItsArchiveRowIsDeadLettered: an event whose archive
// row was deleted by hand fails alone, as a dead letter that says why; its
// neighbour is handled.
func TestQueuedEventWithoutItsArchiveRowIsDeadLettered(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	lost, kept := connected(t, 1), connected(t, 2)
	if err := h.bus.Publish(ctx, lost, kept); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `DELETE FROM event_archive WHERE id = $1`, lost.ID); err != nil {
		t.Fatal(err)
	}
	handler, got := envelopes()
	h.consume(t, events.WorkerFanout, handler, pgbus.ConsumerConfig{})
	if seen := receive(t, got, 1); seen[kept.ID].ID == "" {
		t.Fatalf("delivered %v, want %s", seen, kept.ID)
	}
	eventually(t, "the dead letter", func() bool {
		return count(t, h.pool, fmt.Sprintf(`SELECT count(*) FROM dead_letters WHERE event_id = '%s' AND error LIKE '%%archived envelope is missing%%'`, lost.ID)) == 1
	})
	if n := count(t, h.pool, `SELECT count(*) FROM queue_fanout`); n != 0 {
		t.Errorf("%d rows left in the queue", n)
	}
}

// TestInitMakesOldQueuesTakeArchivedEvents: a queue created when every row
// carried its payload is altered once, and a later start does not alter it
// again, so it does not wait for an open claim (nor hold up the publishes
// that would queue behind its lock).
func TestInitMakesOldQueuesTakeArchivedEvents(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	if _, err := h.pool.Exec(ctx, `ALTER TABLE queue_fanout ALTER COLUMN payload SET NOT NULL`); err != nil {
		t.Fatal(err)
	}
	if err := h.bus.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, h.pool, `SELECT count(*) FROM pg_attribute WHERE attrelid = 'queue_fanout'::regclass AND attname = 'payload' AND attnotnull`); n != 0 {
		t.Fatal("queue_fanout.payload is still NOT NULL")
	}
	claim, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = claim.Rollback(ctx) }()
	if _, err := claim.Exec(ctx, `DELETE FROM queue_fanout WHERE false`); err != nil {
		t.Fatal(err)
	}
	// Waiting on the open claim's lock would take the whole timeout.
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.bus.Init(ictx); err != nil {
		t.Fatalf("a second start waited on an open claim: %v", err)
	}
}
