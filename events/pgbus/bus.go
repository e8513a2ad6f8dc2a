// Package pgbus is the embedded event bus: the same topology as the AWS one
// (one durable stream per worker, an archive for replay, a dead-letter store)
// on PostgreSQL, consumed through Watermill.
//
// Each worker has its own queue table, claimed with FOR UPDATE SKIP LOCKED,
// not a consumer group on a shared log: a log read only below the cluster's
// oldest open transaction (as Watermill SQL's default schema reads) would let
// one slow handler stall every other worker. Consumers wake on LISTEN/NOTIFY
// and fall back to polling only when a notification is lost.
package pgbus

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// notifyChannel carries the name of the worker queue that has new rows.
const notifyChannel = "parley_bus"

// Bus publishes events into the archive and every matching worker queue in
// one transaction.
type Bus struct {
	pool   *pgxpool.Pool
	routes []events.Route
	waker  *Waker
	logger *slog.Logger

	mu         sync.Mutex
	statements map[string]string // publish statement per set of workers

	gmu      sync.Mutex
	pending  []*pubRequest // publishes waiting for a group
	flushers int           // goroutines writing groups
}

var _ events.Publisher = (*Bus)(nil)

// New returns a bus over pool. waker (may be nil) announces new events to
// consumers; without it they find them at their fallback poll.
func New(pool *pgxpool.Pool, waker *Waker, logger *slog.Logger) *Bus {
	return &Bus{
		pool:       pool,
		routes:     events.Routes(),
		waker:      waker,
		logger:     logger,
		statements: map[string]string{},
	}
}

// queueTable names a worker's queue table.
func queueTable(worker string) string { return pgx.Identifier{"queue_" + worker}.Sanitize() }

// queueDDL creates a worker's queue. part is the event's partition, written
// by the publisher: the consumer that owns a partition claims its rows, in
// offset order, so one conversation's events are handled in order while
// conversations run in parallel, and the publisher can wake just that
// consumer. attempts and not_before hold a failed event back for its retry.
var queueDDL = []string{
	`CREATE TABLE IF NOT EXISTS %s (
	"offset"   bigserial PRIMARY KEY,
	event_id   uuid NOT NULL,
	type       text NOT NULL,
	payload    jsonb NOT NULL,
	part       smallint NOT NULL DEFAULT 0,
	attempts   integer NOT NULL DEFAULT 0,
	not_before timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
)`,
	// Where the server runs autovacuum, clean a queue after a few thousand
	// deleted rows rather than a fraction of its size; consumers vacuum it
	// themselves too (see vacuumEvery).
	`ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
	autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000)`,
}

// Init creates the worker queue tables. It is idempotent.
func (b *Bus) Init(ctx context.Context) error {
	for _, r := range b.routes {
		for _, ddl := range queueDDL {
			if _, err := b.pool.Exec(ctx, fmt.Sprintf(ddl, queueTable(r.Worker))); err != nil {
				return fmt.Errorf("create queue %s: %w", r.Worker, err)
			}
		}
	}
	return nil
}

// Publish archives the events and enqueues each one for every worker whose
// route matches, atomically: when it returns nil the events are durable.
//
// It is one SQL statement (one round trip, atomic on its own) that writes
// the archive and the worker queues. Publishing is on every request's path,
// and on a small machine round trips, not rows, are what it costs.
//
// Called by a handler inside a consumer's transaction (db.ScopeFrom), the
// events are written in that transaction: they commit with the batch that
// caused them, and consumers are woken after that commit.
func (b *Bus) Publish(ctx context.Context, envs ...events.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if scope, ok := db.ScopeFrom(ctx); ok {
		return b.publish(ctx, scope, true, b.routes, envs)
	}
	for _, e := range envs {
		// Checked before joining a group, so that one bad event cannot fail
		// the others' statement.
		if err := e.Validate(); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return b.groupCommit(ctx, envs)
}

// Group commit: concurrent publishes that arrive while earlier ones are
// being written share one statement, so one disk flush answers many
// requests. Each caller still returns only once its own events are durable.
const (
	maxFlushers    = 4   // statements in flight at once
	maxGroupEvents = 256 // events per statement
)

type pubRequest struct {
	envs []events.Envelope
	done chan error
}

func (b *Bus) groupCommit(ctx context.Context, envs []events.Envelope) error {
	r := &pubRequest{envs: envs, done: make(chan error, 1)}
	b.gmu.Lock()
	b.pending = append(b.pending, r)
	if b.flushers < maxFlushers {
		b.flushers++
		go b.flush()
	}
	b.gmu.Unlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		// The events may still be written; the caller retries with the
		// same ids, which every handler tolerates.
		return fmt.Errorf("publish: %w", ctx.Err())
	}
}

// flush writes pending requests, a group at a time, until none are left.
func (b *Bus) flush() {
	for {
		b.gmu.Lock()
		if len(b.pending) == 0 {
			b.flushers--
			b.gmu.Unlock()
			return
		}
		var group []*pubRequest
		n := 0
		for len(b.pending) > 0 && (n == 0 || n+len(b.pending[0].envs) <= maxGroupEvents) {
			group = append(group, b.pending[0])
			n += len(b.pending[0].envs)
			b.pending = b.pending[1:]
		}
		b.gmu.Unlock()
		envs := make([]events.Envelope, 0, n)
		for _, r := range group {
			envs = append(envs, r.envs...)
		}
		// Not any caller's context: the group outlives each of them.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.publish(ctx, nil, true, b.routes, envs)
		cancel()
		for _, r := range group {
			r.done <- err
		}
	}
}

// PublishTo enqueues events for one worker only, without archiving them:
// replay and dead-letter redrive use it so other workers are not disturbed.
func (b *Bus) PublishTo(ctx context.Context, worker string, envs ...events.Envelope) error {
	r, ok := events.RouteFor(worker)
	if !ok {
		return fmt.Errorf("unknown worker %q", worker)
	}
	r.Types, r.Media = nil, nil // every given event, whatever its type
	if err := b.publish(ctx, nil, false, []events.Route{r}, envs); err != nil {
		return fmt.Errorf("to %s: %w", worker, err)
	}
	return nil
}

// publish writes envs in one statement: in scope's transaction when scope is
// set, else on its own.
func (b *Bus) publish(ctx context.Context, scope *db.Scope, archive bool, routes []events.Route, envs []events.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	n := len(envs)
	ids, types, convs, raws := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times, parts := make([]time.Time, n), make([]int16, n)
	for i, e := range envs {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		raw, err := e.Encode()
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		ids[i], types[i], times[i], convs[i], raws[i], parts[i] = e.ID, e.Type, e.OccurredAt, e.ConversationID, string(raw), partition(e)
	}
	var workers, notify []string
	args := []any{ids, types, times, convs, raws, parts}
	for _, r := range routes {
		var ords []int64
		seen := map[int16]bool{}
		for i, e := range envs {
			if len(r.Types) == 0 || r.Matches(e) {
				ords = append(ords, int64(i+1))
				if !seen[parts[i]] {
					seen[parts[i]] = true
					notify = append(notify, fmt.Sprintf("%s/%d", r.Worker, parts[i]))
				}
			}
		}
		if len(ords) > 0 {
			workers = append(workers, r.Worker)
			args = append(args, ords)
		}
	}
	stmt := b.publishStatement(workers, archive)
	var exec db.DBTX = b.pool
	if scope != nil {
		exec = scope.Tx
	}
	if _, err := exec.Exec(ctx, stmt, args...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if b.waker != nil {
		if scope != nil {
			scope.AfterCommit(func() { b.waker.Announce(notify) })
		} else {
			b.waker.Announce(notify)
		}
	}
	return nil
}

// partitions is how many partitions a queue has; a worker's consumers
// share them (consumer i of n owns p with p%n == i).
const partitions = 1024

// partition places an event by conversation, so that one conversation's
// events are handled in order by one consumer.
func partition(e events.Envelope) int16 {
	key := e.ConversationID
	if key == "" {
		key = e.ID
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int16(h.Sum32() % partitions)
}

// publishStatement builds (once per shape) the statement publish runs:
// $1..$6 are the events' columns, then one array of event ordinals per
// worker.
func (b *Bus) publishStatement(workers []string, archive bool) string {
	key := fmt.Sprint(archive, workers)
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.statements[key]; ok {
		return s
	}
	var sb strings.Builder
	sb.WriteString(`WITH e AS (
	SELECT t.id::uuid AS id, t.type, t.occurred_at, NULLIF(t.conv, '')::uuid AS conversation_id,
	       t.envelope::jsonb AS envelope, t.part, t.ord
	FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::smallint[])
	     WITH ORDINALITY AS t(id, type, occurred_at, conv, envelope, part, ord)
)`)
	if archive {
		sb.WriteString(`, archived AS (
	INSERT INTO event_archive (id, type, occurred_at, conversation_id, envelope)
	SELECT id, type, occurred_at, conversation_id, envelope FROM e ORDER BY ord
	ON CONFLICT (id) DO NOTHING
)`)
	}
	for i, w := range workers {
		fmt.Fprintf(&sb, `, q%d AS (
	INSERT INTO %s (event_id, type, payload, part)
	SELECT id, type, envelope, part FROM e WHERE ord = ANY($%d::bigint[]) ORDER BY ord
)`, i, queueTable(w), 7+i)
	}
	sb.WriteString("\nSELECT 1")
	s := sb.String()
	b.statements[key] = s
	return s
}
