// Package pgbus is the embedded event bus: the same topology as the AWS one
// (one durable stream per worker, an archive for replay, a dead-letter store)
// on PostgreSQL with Watermill SQL.
//
// Each worker has its own queue table (Watermill's PostgreSQL queue schema),
// not a consumer group on a shared topic: the default schema only reads rows
// older than the cluster's oldest open transaction, so one slow handler would
// stall every other worker. Consumers wake on LISTEN/NOTIFY and fall back to
// polling only when a notification is lost.
package pgbus

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
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
	wlog   watermill.LoggerAdapter
}

var _ events.Publisher = (*Bus)(nil)

// New returns a bus over pool. waker may be nil; then only other processes'
// LISTEN loops and the fallback poll wake consumers.
func New(pool *pgxpool.Pool, waker *Waker, logger *slog.Logger) *Bus {
	return &Bus{
		pool:   pool,
		routes: events.Routes(),
		waker:  waker,
		logger: logger,
		wlog:   watermill.NewSlogLogger(logger.With("component", "watermill")),
	}
}

func queueSchema(batch int) wsql.SchemaAdapter {
	return partitionedQueueSchema(batch, 0, 1)
}

// partitionedQueueSchema reads only the rows of one partition of a worker's
// queue: events are partitioned by conversation, so the consumers of one
// worker run in parallel across conversations while each conversation's
// events are handled one at a time, in queue order. That keeps sequential
// sends in sequence order and lets a replay reproduce the same sequences.
func partitionedQueueSchema(batch, partition, partitions int) wsql.SchemaAdapter {
	schema := wsql.PostgreSQLQueueSchema{
		GeneratePayloadType: func(string) string { return "JSONB" },
		SubscribeBatchSize:  batch,
	}
	if partitions > 1 {
		schema.GenerateWhereClause = func(wsql.GenerateWhereClauseParams) (string, []any) {
			return `part % $1 = $2`, []any{partitions, partition}
		}
	}
	return skipLockedQueueSchema{schema}
}

// partitionColumn adds to a queue table the conversation's hash bucket,
// computed once at insert: filtering on it is cheap, where hashing the
// JSON payload of every queued row on every poll made polls cost as much
// as the backlog was long.
const partitionColumn = `ALTER TABLE %s ADD COLUMN IF NOT EXISTS part smallint
	GENERATED ALWAYS AS ((hashtext(COALESCE(payload->>'conversation_id', payload->>'id')) & 1023)::smallint) STORED`

// queueVacuum makes autovacuum clean a queue table after a few thousand
// acknowledged (deleted) rows rather than a fraction of its size: dead rows
// at the head of the queue are what every poll walks through first.
const queueVacuum = `ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
	autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000)`

// Init creates the worker queue tables. It is idempotent.
func (b *Bus) Init(ctx context.Context) error {
	schema := queueSchema(1)
	for _, r := range b.routes {
		qs, err := schema.SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams{Topic: r.Worker})
		if err != nil {
			return fmt.Errorf("queue schema for %s: %w", r.Worker, err)
		}
		for _, q := range qs {
			if _, err := b.pool.Exec(ctx, q.Query, q.Args...); err != nil {
				return fmt.Errorf("create queue %s: %w", r.Worker, err)
			}
		}
		table := schema.(skipLockedQueueSchema).MessagesTable(r.Worker)
		for _, ddl := range []string{partitionColumn, queueVacuum} {
			if _, err := b.pool.Exec(ctx, fmt.Sprintf(ddl, table)); err != nil {
				return fmt.Errorf("prepare queue %s: %w", r.Worker, err)
			}
		}
	}
	return nil
}

// Publish archives the events and enqueues each one for every worker whose
// route matches, atomically: when it returns nil the events are durable.
func (b *Bus) Publish(ctx context.Context, envs ...events.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	var topics []string
	// From inside a worker on this bus, the worker's acknowledgement makes
	// this commit durable; from an input, the caller is answered on return,
	// so the commit must be flushed before.
	err := db.InTx(ctx, b.pool, events.AckFlushes(ctx), func(tx pgx.Tx) error {
		q := db.New(tx)
		for _, e := range envs {
			if err := e.Validate(); err != nil {
				return err
			}
			raw, err := e.Encode()
			if err != nil {
				return err
			}
			var conv *uuid.UUID
			if e.ConversationID != "" {
				c := uuid.MustParse(e.ConversationID) // Validate checked the format
				conv = &c
			}
			if err := q.ArchiveEvent(ctx, db.ArchiveEventParams{
				ID: uuid.MustParse(e.ID), Type: e.Type, OccurredAt: e.OccurredAt, ConversationID: conv, Envelope: raw,
			}); err != nil {
				return fmt.Errorf("archive event %s: %w", e.ID, err)
			}
		}
		for _, r := range b.routes {
			var matched []events.Envelope
			for _, e := range envs {
				if r.Matches(e) {
					matched = append(matched, e)
				}
			}
			if len(matched) == 0 {
				continue
			}
			if err := b.enqueue(ctx, tx, r.Worker, matched); err != nil {
				return err
			}
			topics = append(topics, r.Worker)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	b.wake(topics...)
	return nil
}

// PublishTo enqueues events for one worker only, without archiving them:
// replay and dead-letter redrive use it so other workers are not disturbed.
func (b *Bus) PublishTo(ctx context.Context, worker string, envs ...events.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return b.enqueue(ctx, tx, worker, envs)
	})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", worker, err)
	}
	b.wake(worker)
	return nil
}

// enqueue writes through Watermill's publisher inside the caller's
// transaction, then queues a notification that PostgreSQL sends on commit.
func (b *Bus) enqueue(ctx context.Context, tx pgx.Tx, worker string, envs []events.Envelope) error {
	if _, ok := events.RouteFor(worker); !ok {
		return fmt.Errorf("unknown worker %q", worker)
	}
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{
		SchemaAdapter: queueSchema(1),
	}, b.wlog)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	msgs := make([]*message.Message, 0, len(envs))
	for _, e := range envs {
		raw, err := e.Encode()
		if err != nil {
			return err
		}
		m := message.NewMessage(e.ID, raw)
		m.SetContext(ctx)
		m.Metadata.Set("type", e.Type)
		msgs = append(msgs, m)
	}
	if err := pub.Publish(worker, msgs...); err != nil {
		return fmt.Errorf("enqueue for %s: %w", worker, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, worker); err != nil {
		return fmt.Errorf("notify %s: %w", worker, err)
	}
	return nil
}

func (b *Bus) wake(topics ...string) {
	if b.waker == nil {
		return
	}
	for _, t := range topics {
		b.waker.Wake(t)
	}
}

// skipLockedQueueSchema lets several consumers share one worker queue: each
// takes rows the others have not locked instead of waiting for them.
type skipLockedQueueSchema struct {
	wsql.PostgreSQLQueueSchema
}

func (s skipLockedQueueSchema) SelectQuery(params wsql.SelectQueryParams) (wsql.Query, error) {
	q, err := s.PostgreSQLQueueSchema.SelectQuery(params)
	if err != nil {
		return q, err
	}
	q.Query += " SKIP LOCKED"
	return q, nil
}

// ackUpToLastRow fixes a loss window: Watermill passes every row of the
// fetched batch to the ack query, also those after a message it could not
// hand over (the subscriber was closing). Acking only up to LastRow leaves
// the rest in the queue for the next consumer.
type ackUpToLastRow struct {
	wsql.PostgreSQLQueueOffsetsAdapter
}

func (a ackUpToLastRow) AckMessageQuery(params wsql.AckMessageQueryParams) (wsql.Query, error) {
	rows := make([]wsql.Row, 0, len(params.Rows))
	for _, r := range params.Rows {
		if r.Offset <= params.LastRow.Offset {
			rows = append(rows, r)
		}
	}
	params.Rows = rows
	return a.PostgreSQLQueueOffsetsAdapter.AckMessageQuery(params)
}
