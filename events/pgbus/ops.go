package pgbus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// Replay re-delivers archived events that occurred in [since, until) to one
// worker, oldest first, in batches. Workers are idempotent, so replaying
// while traffic flows is safe. It returns how many events were re-delivered.
func (b *Bus) Replay(ctx context.Context, worker string, since, until time.Time) (int, error) {
	route, ok := events.RouteFor(worker)
	if !ok {
		return 0, fmt.Errorf("unknown worker %q", worker)
	}
	if until.IsZero() {
		until = time.Now().Add(time.Hour)
	}
	q := db.New(b.pool)
	afterTime, afterID := since.Add(-time.Microsecond), uuid.Nil
	total := 0
	for {
		rows, err := q.ListArchivedEvents(ctx, db.ListArchivedEventsParams{
			AfterTime: afterTime, AfterID: afterID, Until: until, Types: route.Types, BatchSize: 500,
		})
		if err != nil {
			return total, fmt.Errorf("read archive: %w", err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		batch := make([]events.Envelope, 0, len(rows))
		for _, row := range rows {
			env, err := events.Decode(row.Envelope)
			if err != nil {
				return total, fmt.Errorf("archived event %s: %w", row.ID, err)
			}
			if route.Matches(env) {
				batch = append(batch, env)
			}
		}
		if err := b.PublishTo(ctx, worker, batch...); err != nil {
			return total, err
		}
		total += len(batch)
		last := rows[len(rows)-1]
		afterTime, afterID = last.OccurredAt, last.ID
	}
}

// DeadLetters lists dead letters, pending ones only unless all is set.
func (b *Bus) DeadLetters(ctx context.Context, worker string, all bool, limit int) ([]db.DeadLetter, error) {
	var w *string
	if worker != "" {
		w = &worker
	}
	rows, err := db.New(b.pool).ListDeadLetters(ctx, db.ListDeadLettersParams{Worker: w, IncludeRedriven: all, PageLimit: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return rows, nil
}

// Redrive puts a dead letter back on its worker's queue and marks it.
func (b *Bus) Redrive(ctx context.Context, id int64) error {
	q := db.New(b.pool)
	dl, err := q.GetDeadLetter(ctx, id)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", id, err)
	}
	if dl.RedrivenAt != nil {
		return fmt.Errorf("dead letter %d was already redriven at %s", id, dl.RedrivenAt.Format(time.RFC3339))
	}
	env, err := events.Decode(dl.Envelope)
	if err != nil {
		return fmt.Errorf("dead letter %d cannot be redriven, its event is invalid: %w", id, err)
	}
	if err := b.PublishTo(ctx, dl.Worker, env); err != nil {
		return err
	}
	if err := q.MarkDeadLetterRedriven(ctx, id); err != nil {
		return fmt.Errorf("mark dead letter %d: %w", id, err)
	}
	return nil
}

func jsonString(b []byte) ([]byte, error) { return json.Marshal(map[string]string{"raw": string(b)}) }
