package pgbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
)

func statusOf(t *testing.T, h harness) map[string]events.QueueStatus {
	t.Helper()
	qs, err := h.bus.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]events.QueueStatus{}
	for _, q := range qs {
		out[q.Worker] = q
	}
	if len(out) != len(events.Workers()) {
		t.Fatalf("status of %d workers, want %d: %+v", len(out), len(events.Workers()), qs)
	}
	return out
}

// Status shows what waits in each queue and since when, the dead letters,
// and the processes whose consumer connections name the worker.
func TestStatus(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	if err := h.bus.Publish(ctx, sent(t, "waiting")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // an age above zero by the server's clock
	st := statusOf(t, h)
	for _, w := range []string{events.WorkerPersister, events.WorkerFanout} {
		if q := st[w]; q.Depth != 1 || q.OldestAge <= 0 || q.DeadLetters != 0 || q.Consumers != 0 {
			t.Errorf("%s: %+v, want one event waiting, no dead letters, no consumers", w, q)
		}
	}
	if q := st[events.WorkerThumbnailer]; q.Depth != 0 || q.OldestAge != 0 {
		t.Errorf("thumbnailer (takes no text): %+v", q)
	}

	// fanout gives up on it: its queue empties, its dead letters count it.
	h.consume(t, events.WorkerFanout, events.HandlerFunc(func(context.Context, events.Envelope) error {
		return events.Permanent(errors.New("never"))
	}), pgbus.ConsumerConfig{Concurrency: 1})
	waitStatus(t, "fanout dead-letters the event", func() bool {
		q := statusOf(t, h)[events.WorkerFanout]
		return q.Depth == 0 && q.DeadLetters == 1
	})
	if q := statusOf(t, h)[events.WorkerPersister]; q.Depth != 1 || q.DeadLetters != 0 {
		t.Errorf("persister: %+v, another worker's dead letter counted", q)
	}

	// A process consuming for two workers is one consumer of each.
	cfg, err := pgxpool.ParseConfig(h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = pgbus.ConsumerAppName([]string{events.WorkerPersister, events.WorkerThumbnailer})
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c1, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Release()
	c2, err := pool.Acquire(ctx) // a second connection of the same process
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Release()
	st = statusOf(t, h)
	if st[events.WorkerPersister].Consumers != 1 || st[events.WorkerThumbnailer].Consumers != 1 || st[events.WorkerFanout].Consumers != 0 {
		t.Errorf("consumers: %+v", st)
	}
}

func waitStatus(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
