package pgbus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
)

// TestPruneArchiveDeletesOnlyOlderEventsInBatches: events older than the
// cutoff go, however many batches that takes, except one still queued for a
// worker, which reads its envelope from the archive; newer ones stay and
// still replay.
func TestPruneArchiveDeletesOnlyOlderEventsInBatches(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	now := time.Now()
	publishAt := func(at time.Time) events.Envelope {
		e, err := events.New(uuid.Must(uuid.NewV7()).String(), at, 1, conv, events.ConnectedV1{ConnectionID: "PruneTestConn=", UserID: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.bus.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	var old []events.Envelope
	for i := range 7 {
		old = append(old, publishAt(now.Add(-8*24*time.Hour-time.Duration(i)*time.Minute)))
	}
	kept := []string{old[0].ID}
	for i := range 3 {
		kept = append(kept, publishAt(now.Add(-time.Duration(i)*time.Hour)).ID)
	}
	cutoff := now.Add(-7 * 24 * time.Hour)
	// Nothing consumed yet: fanout's queue points at every one of them.
	if n, err := h.bus.PruneArchive(ctx, cutoff, 2); err != nil || n != 0 {
		t.Fatalf("pruning while queued: %d, %v; want 0, nil", n, err)
	}
	// Handled, all but the first old one.
	if _, err := h.pool.Exec(ctx, `DELETE FROM queue_fanout WHERE event_id <> $1`, old[0].ID); err != nil {
		t.Fatal(err)
	}
	n, err := h.bus.PruneArchive(ctx, cutoff, 2) // 4 batches, the last one short
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("pruned %d events, want 6", n)
	}
	rows, err := h.pool.Query(ctx, `SELECT id::text FROM event_archive ORDER BY occurred_at DESC`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	slices.Sort(kept)
	if !slices.Equal(left, kept) {
		t.Errorf("archive holds %v, want %v", left, kept)
	}
	// The queued one is delivered whole, and pruned once handled.
	handler, got := envelopes()
	stop := h.consume(t, events.WorkerFanout, handler, pgbus.ConsumerConfig{})
	if e := receive(t, got, 1)[old[0].ID]; e.ID == "" || !sameJSON(t, e.Data, old[0].Data) {
		t.Errorf("delivered %s, want %s", e.Data, old[0].Data)
	}
	stop()
	if n, err := h.bus.PruneArchive(ctx, cutoff, 2); err != nil || n != 1 {
		t.Errorf("pruning once handled: %d, %v; want 1, nil", n, err)
	}
	if n, err := h.bus.PruneArchive(ctx, cutoff, 2); err != nil || n != 0 {
		t.Errorf("pruning again: %d, %v; want 0, nil", n, err)
	}
	if _, err := h.bus.PruneArchive(ctx, now, 0); err == nil {
		t.Error("a batch size of 0 was accepted")
	}
}

// TestPurgeDeadLetters deletes one by id, then a worker's, then the rest;
// an unknown id is an error, not a silent success.
func TestPurgeDeadLetters(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	insert := func(worker string) int64 {
		var id int64
		if err := h.pool.QueryRow(ctx, `INSERT INTO dead_letters (worker, event_id, event_type, envelope, error, attempts)
			VALUES ($1, $2, 'Connected', '{}', 'boom', 5) RETURNING id`, worker, uuid.New()).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	one := insert(events.WorkerFanout)
	insert(events.WorkerFanout)
	insert(events.WorkerPersister)
	insert(events.WorkerThumbnailer)
	count := func() int {
		var n int
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n, err := h.bus.PurgeDeadLetters(ctx, "", one); err != nil || n != 1 || count() != 3 {
		t.Fatalf("purge by id: %d, %v; %d left", n, err, count())
	}
	if _, err := h.bus.PurgeDeadLetters(ctx, "", one); err == nil {
		t.Error("purging a missing id succeeded")
	}
	if n, err := h.bus.PurgeDeadLetters(ctx, events.WorkerFanout, 0); err != nil || n != 1 || count() != 2 {
		t.Fatalf("purge a worker's: %d, %v; %d left", n, err, count())
	}
	if n, err := h.bus.PurgeDeadLetters(ctx, "", 0); err != nil || n != 2 || count() != 0 {
		t.Fatalf("purge all: %d, %v; %d left", n, err, count())
	}
}
