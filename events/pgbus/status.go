package pgbus

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// consumerAppPrefix starts the application_name of every consumer
// connection, so that Status can count consumers from pg_stat_activity,
// whichever process they run in.
const consumerAppPrefix = "parley consumer "

// ConsumerAppName is the application_name for the consumer connections of
// a process consuming for workers: the prefix, a process id, and the
// workers. PostgreSQL keeps 63 bytes of it, enough for every worker name.
func ConsumerAppName(workers []string) string {
	return consumerAppPrefix + strconv.Itoa(os.Getpid()) + " " + strings.Join(workers, ",")
}

// Status reads every worker's queue: its depth, the age of its oldest
// event (by the server's clock, as Backlog), its pending dead letters, and
// how many processes hold consumer connections for it. Each queue is read
// by its primary key's order for the oldest row; the count reads the
// queue, which a live queue keeps short.
func (b *Bus) Status(ctx context.Context) ([]events.QueueStatus, error) {
	pool := b.pool
	workers := events.Workers()
	var parts []string
	for _, w := range workers {
		parts = append(parts, fmt.Sprintf(`SELECT %s::text, (SELECT count(*) FROM %s), (SELECT COALESCE(GREATEST(now() - min(created_at), interval '0'), interval '0') FROM (SELECT created_at FROM %s ORDER BY "offset" LIMIT 1) o)`,
			quoteLiteral(w), queueTable(w), queueTable(w)))
	}
	rows, err := pool.Query(ctx, strings.Join(parts, " UNION ALL "))
	if err != nil {
		return nil, fmt.Errorf("read the worker queues: %w", err)
	}
	byWorker := map[string]*events.QueueStatus{}
	out := make([]events.QueueStatus, 0, len(workers))
	for rows.Next() {
		var s events.QueueStatus
		if err := rows.Scan(&s.Worker, &s.Depth, &s.OldestAge); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read the worker queues: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the worker queues: %w", err)
	}
	for i := range out {
		byWorker[out[i].Worker] = &out[i]
	}
	q := db.New(pool)
	dead, err := q.CountPendingDeadLetters(ctx)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	for _, d := range dead {
		if s := byWorker[d.Worker]; s != nil {
			s.DeadLetters = d.Pending
		}
	}
	apps, err := q.ConsumerApplications(ctx, consumerAppPrefix)
	if err != nil {
		return nil, fmt.Errorf("count consumers: %w", err)
	}
	for _, name := range apps {
		// "parley consumer <pid> <worker>,<worker>": one process.
		f := strings.Fields(strings.TrimPrefix(name, consumerAppPrefix))
		if len(f) != 2 {
			continue
		}
		for _, w := range strings.Split(f[1], ",") {
			if s := byWorker[w]; s != nil {
				s.Consumers++
			}
		}
	}
	slices.SortFunc(out, func(a, b events.QueueStatus) int { return strings.Compare(a.Worker, b.Worker) })
	return out, nil
}

// quoteLiteral quotes a worker name (a constant of the routes) as SQL.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
