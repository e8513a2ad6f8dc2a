package pgbus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/events"
)

// Backlog watches how far the workers that sends feed lag behind: the age
// of the oldest message still in their queues. A process that takes sends
// asks it whether to refuse them (Overloaded), so that beyond capacity the
// excess is refused at once instead of waiting in the queues, where it
// would delay every message accepted after it.
//
// It reads the shared queue tables, so it works the same whether the
// workers run in this process or in others.
type Backlog struct {
	pool     *pgxpool.Pool
	maxAge   time.Duration
	interval time.Duration
	query    string
	logger   *slog.Logger

	age  atomic.Int64 // nanoseconds, of the last sample
	over atomic.Bool
	// above counts consecutive samples over the limit (Sample's caller
	// is one goroutine).
	above int
}

// confirmSamples is how many samples in a row must exceed the limit before
// sends are refused: a single one over it is as likely a WAL flush stalled
// behind the kernel's writeback (100–400 ms on a small machine) as a
// backlog, and refusing then would refuse a machine that keeps up. A
// backlog that grows stays over it.
const confirmSamples = 3

// BacklogWorkers are the workers whose lag decides: those that consume
// every message sent. The thumbnailer takes only media and is slow by
// design; its lag delays previews, not messages.
func BacklogWorkers() []string {
	var names []string
	for _, r := range events.Routes() {
		if slices.Contains(r.Types, events.TypeMessageSent) && len(r.Media) == 0 {
			names = append(names, r.Worker)
		}
	}
	return names
}

// NewBacklog samples the queues of BacklogWorkers every interval and reports
// overload while the oldest event waiting is older than maxAge.
func NewBacklog(pool *pgxpool.Pool, maxAge, interval time.Duration, logger *slog.Logger) *Backlog {
	var oldest []string
	for _, w := range BacklogWorkers() {
		// The primary key's order is the queue's: the first message row is
		// the oldest waiting, found without reading the rest. Only messages
		// count: they are what a new message would wait behind, where a
		// connection greeting retried until its connection can be posted
		// to, say, is no lag at all.
		oldest = append(oldest, fmt.Sprintf(`(SELECT created_at FROM %s WHERE type = '%s' AND attempts = 0 ORDER BY "offset" LIMIT 1)`,
			queueTable(w), events.TypeMessageSent))
	}
	// LEAST ignores the NULL of an empty queue; the server's clock is the
	// one that stamped created_at, so processes' clocks do not matter.
	q := `SELECT COALESCE(GREATEST(now() - LEAST(` + strings.Join(oldest, ", ") + `), interval '0'), interval '0')`
	return &Backlog{pool: pool, maxAge: maxAge, interval: interval, query: q, logger: logger}
}

// Overloaded reports whether the last confirmSamples samples exceeded the
// limit.
func (b *Backlog) Overloaded() bool { return b.over.Load() }

// Age is the last sampled age of the oldest waiting event.
func (b *Backlog) Age() time.Duration { return time.Duration(b.age.Load()) }

// Sample measures the backlog once and updates Overloaded.
func (b *Backlog) Sample(ctx context.Context) (time.Duration, error) {
	var age time.Duration
	if err := b.pool.QueryRow(ctx, b.query).Scan(&age); err != nil {
		// Fail open: a database that cannot answer this refuses the
		// publishes themselves, with their own retryable error.
		b.over.Store(false)
		return 0, fmt.Errorf("sample queue backlog: %w", err)
	}
	b.age.Store(int64(age))
	b.above++
	if age <= b.maxAge {
		b.above = 0
	}
	over := b.above >= confirmSamples
	if was := b.over.Swap(over); was != over {
		if over {
			b.logger.WarnContext(ctx, "refusing sends: the worker queues lag", "oldest_event_age", age, "limit", b.maxAge)
		} else {
			b.logger.InfoContext(ctx, "accepting sends again", "oldest_event_age", age)
		}
	}
	return age, nil
}

// Run samples until ctx ends.
func (b *Backlog) Run(ctx context.Context) error {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	failing := false
	for {
		_, err := b.Sample(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			b.logger.WarnContext(ctx, "cannot watch the worker queues; sends are not refused meanwhile", "err", err)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
