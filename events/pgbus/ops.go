package pgbus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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

// PruneArchive deletes the archived events that occurred before before, in
// batches of batch rows, each its own short statement, so that publishes
// appending to the archive never wait on it. It returns how many it deleted.
// An event still queued for a worker without a payload of its own keeps its
// archive row, which is where that worker reads it from (queueDDL).
//
// A queue row points only at an archive row its own statement inserted, so
// an archive row this statement can see has every queue row that points at
// it visible too: none is missed by a concurrent publish.
func (b *Bus) PruneArchive(ctx context.Context, before time.Time, batch int) (int64, error) {
	if batch < 1 {
		return 0, fmt.Errorf("prune archive: batch size %d", batch)
	}
	var sb strings.Builder
	sb.WriteString(`DELETE FROM event_archive WHERE id IN (
	SELECT a.id FROM event_archive a
	WHERE a.occurred_at < $1`)
	for _, r := range b.routes {
		fmt.Fprintf(&sb, `
	AND NOT EXISTS (SELECT 1 FROM %s q WHERE q.event_id = a.id AND q.payload IS NULL)`, queueTable(r.Worker))
	}
	// Oldest first, along the replay index.
	sb.WriteString(`
	ORDER BY a.occurred_at, a.id
	LIMIT $2
)`)
	stmt := sb.String()
	var total int64
	for {
		tag, err := b.pool.Exec(ctx, stmt, before, batch)
		n := tag.RowsAffected()
		total += n
		if err != nil {
			return total, fmt.Errorf("prune archive: %w", err)
		}
		if n < int64(batch) {
			return total, nil
		}
	}
}

// PurgeDeadLetters deletes dead letter id, or when id is 0 every dead letter
// of worker ("" = of every worker). It returns how many it deleted.
func (b *Bus) PurgeDeadLetters(ctx context.Context, worker string, id int64) (int64, error) {
	var arg db.PurgeDeadLettersParams
	if worker != "" {
		arg.Worker = &worker
	}
	if id != 0 {
		arg.ID = &id
	}
	n, err := db.New(b.pool).PurgeDeadLetters(ctx, arg)
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	if id != 0 && n == 0 {
		return 0, fmt.Errorf("dead letter %d: no such dead letter", id)
	}
	return n, nil
}

func jsonString(b []byte) ([]byte, error) { return json.Marshal(map[string]string{"raw": string(b)}) }
