package pgbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/wmlog"
)

// ConsumerConfig tunes one worker's consumption.
type ConsumerConfig struct {
	// Concurrency is how many consumers share the worker's queue; each
	// takes the events of its share of the conversations, in order.
	Concurrency int
	// BatchSize is the most events one consumer claims at once. A batch is
	// whatever is queued, up to this: one event when idle, more under load.
	BatchSize int
	// MaxAttempts is how often a failing event is tried before it is
	// dead-lettered. Permanent errors are dead-lettered at once.
	MaxAttempts int
	// RetryBackoff is the first pause before a failed event is tried
	// again; it doubles with each attempt, up to maxRetryBackoff.
	RetryBackoff time.Duration
	// HandlerTimeout bounds the handling of one batch.
	HandlerTimeout time.Duration
	// FallbackPoll is the poll interval used when no notification arrives.
	FallbackPoll time.Duration
	// VacuumEvery is how often the consumers vacuum the worker's queue
	// table once rows were deleted from it. A queue is mostly dead rows at
	// its head; without this, claims slow down as they walk them, and
	// this does not rely on the server's autovacuum being on.
	VacuumEvery time.Duration
}

// DefaultConsumerConfig is what a zero field of ConsumerConfig means; the
// chat's configuration documents the same values.
func DefaultConsumerConfig() ConsumerConfig {
	return ConsumerConfig{
		// One consumer claiming batches carries what several did one event
		// at a time, with fewer commits contending for the WAL: measured,
		// more consumers made latency worse.
		Concurrency: 1,
		// Under load a larger batch spreads a transaction's fixed costs
		// (claim, round trips, commit) over more events: at 1,000 msg/s
		// 250 let the persister catch up where 100 sometimes fell behind.
		BatchSize:      250,
		MaxAttempts:    5,
		RetryBackoff:   100 * time.Millisecond,
		HandlerTimeout: 30 * time.Second,
		FallbackPoll:   time.Second,
		VacuumEvery:    10 * time.Second,
	}
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	d := DefaultConsumerConfig()
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	if c.BatchSize <= 0 {
		c.BatchSize = d.BatchSize
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = d.RetryBackoff
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = d.HandlerTimeout
	}
	if c.FallbackPoll <= 0 {
		c.FallbackPoll = d.FallbackPoll
	}
	if c.VacuumEvery <= 0 {
		c.VacuumEvery = d.VacuumEvery
	}
	return c
}

// maxRetryBackoff caps the doubling of ConsumerConfig.RetryBackoff.
const maxRetryBackoff = 5 * time.Second

// Consume runs h over the worker's queue until ctx ends.
//
// Each of cfg.Concurrency consumers owns a share of the queue's partitions
// (so of the conversations) and loops: in one transaction it claims the
// oldest events of its share (FOR UPDATE SKIP LOCKED, up to BatchSize),
// hands them to h as one batch with the transaction in the context
// (db.ScopeFrom), then acknowledges them in the same transaction: handled
// and dead-lettered events are deleted, failed ones are kept with their
// attempt count and a time before which they are not claimed again. One
// commit covers the handler's writes, what it published and the
// acknowledgement, so a crash at any point leaves the whole batch queued and
// nothing half applied.
//
// Batches go through a Watermill router: one Watermill message per claimed
// batch.
func Consume(ctx context.Context, pool *pgxpool.Pool, waker *Waker, worker string, h events.BatchHandler, cfg ConsumerConfig, logger *slog.Logger) error {
	if _, ok := events.RouteFor(worker); !ok {
		return fmt.Errorf("unknown worker %q", worker)
	}
	cfg = cfg.withDefaults()
	logger = logger.With("worker", worker)
	wlog := wmlog.New(logger.With("component", "watermill"))

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.HandlerTimeout}, wlog)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	r := &runner{worker: worker, table: queueTable(worker), h: h, cfg: cfg, logger: logger}
	for i := range cfg.Concurrency {
		var wake <-chan struct{}
		if waker != nil {
			wake = waker.subscribe(worker, i, cfg.Concurrency)
		}
		sub := &claimer{pool: pool, r: r, part: i, parts: cfg.Concurrency, wake: wake, done: ctx.Done()}
		router.AddConsumerHandler(fmt.Sprintf("%s-%d", worker, i), worker, sub, r.handle)
	}
	go r.vacuum(ctx, pool)

	errc := make(chan error, 1)
	go func() { errc <- router.Run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// router.Run returns once ctx is done and handlers have finished.
	return <-errc
}

// runner handles the batches of one worker.
type runner struct {
	worker, table string
	h             events.BatchHandler
	cfg           ConsumerConfig
	logger        *slog.Logger
	// acked counts deleted queue rows since the last vacuum.
	acked atomic.Int64
}

// claimed is one claimed row of a worker queue: claiming deletes it, and
// a failed event's row is written back (settle).
type claimed struct {
	offset    int64
	eventID   uuid.UUID
	typ       string
	raw       []byte
	part      int16
	attempts  int
	createdAt time.Time
}

// batchKey carries a claimed batch in its Watermill message's context.
type batchKey struct{}

type batch struct {
	tx   pgx.Tx
	rows []claimed
	// broken is set when the handler left nothing in the transaction to
	// trust (it panicked, or a statement of its own aborted the
	// transaction): the claimer rolls back and deals with the events
	// without it (see once).
	broken error
	// retries is how many events settle held back for a later attempt.
	retries int
}

// claimer is one consumer's Watermill subscriber: it claims batches from its
// share of the queue and publishes each as one message, then commits or
// rolls back the claiming transaction on the message's ack or nack.
type claimer struct {
	pool        *pgxpool.Pool
	r           *runner
	part, parts int
	wake        <-chan struct{}
	done        <-chan struct{}
	// retrying: this consumer held events back for a retry, so it wakes
	// for them rather than waiting for a publish.
	retrying bool
	// split holds the offsets of a batch that panicked as a whole: they
	// are claimed again one at a time, so that the event that panics fails
	// alone and its neighbours commit.
	split map[int64]bool
}

var _ message.Subscriber = (*claimer)(nil)

func (c *claimer) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			n, err := c.once(ctx, out)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				c.r.logger.Error("consuming a batch failed; retrying", "err", err)
				c.sleep(ctx, time.Second)
			case n < c.r.cfg.BatchSize && len(c.split) == 0:
				// Drained: wait for a publish or the next retry, or poll
				// in case a notification was lost.
				c.sleep(ctx, c.nextWait(ctx))
			}
		}
	}()
	return out, nil
}

func (c *claimer) Close() error { return nil }

// nextWait is how long to wait for work: the fallback poll, or less when a
// held-back event is due sooner.
func (c *claimer) nextWait(ctx context.Context) time.Duration {
	d := c.r.cfg.FallbackPoll
	if !c.retrying {
		return d
	}
	var ms *float64
	err := c.pool.QueryRow(ctx, `SELECT EXTRACT(EPOCH FROM min(not_before) - now()) * 1000 FROM `+c.r.table+`
WHERE part % $1 = $2 AND not_before IS NOT NULL`, c.parts, c.part).Scan(&ms)
	switch {
	case err != nil:
		return min(d, time.Second)
	case ms == nil:
		c.retrying = false
		return d
	}
	return min(d, max(time.Duration(*ms*float64(time.Millisecond)), 0)+time.Millisecond)
}

// sleep waits d, or less when woken.
func (c *claimer) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.wake:
	case <-t.C:
	case <-ctx.Done():
	}
}

// once claims one batch, hands it out and finishes its transaction; it
// returns how many events it claimed.
func (c *claimer) once(ctx context.Context, out chan<- *message.Message) (int, error) {
	// The transaction must survive a shutdown that begins while the batch
	// is handled: the handler finishes within HandlerTimeout and commits.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.r.cfg.HandlerTimeout+5*time.Second)
	defer cancel()
	tx, err := c.pool.Begin(tctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(tctx)) }()
	rows, err := c.claim(tctx, tx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	msg := message.NewMessage(uuid.NewString(), nil)
	scoped, scope := db.WithScope(tctx, tx)
	b := &batch{tx: tx, rows: rows}
	msg.SetContext(context.WithValue(scoped, batchKey{}, b))
	select {
	case out <- msg:
	case <-ctx.Done():
		return 0, nil // not handed out: the rollback leaves it queued
	}
	select {
	case <-msg.Acked():
	case <-msg.Nacked():
		return len(rows), errors.New("batch not acknowledged; it stays queued")
	}
	switch {
	case b.broken != nil && len(rows) > 1:
		// Claim these again one at a time, so that the event that broke
		// the batch fails alone and its neighbours commit.
		_ = tx.Rollback(tctx)
		if c.split == nil {
			c.split = map[int64]bool{}
		}
		for _, row := range rows {
			c.split[row.offset] = true
		}
		return 0, nil
	case b.broken != nil:
		// One event, whose failure aborted the transaction: count the
		// attempt (or dead-letter it) in a transaction of its own.
		_ = tx.Rollback(tctx)
		delete(c.split, rows[0].offset)
		if err := c.failAlone(tctx, rows[0], b.broken); err != nil {
			return 1, err
		}
		c.r.acked.Add(1) // its row was deleted or rewritten
		return 1, nil
	}
	for _, row := range rows {
		delete(c.split, row.offset)
	}
	if err := tx.Commit(tctx); err != nil {
		return len(rows), fmt.Errorf("commit batch: %w", err)
	}
	c.r.acked.Add(int64(len(rows))) // each claimed row left a dead tuple
	scope.Committed()
	if b.retries > 0 {
		c.retrying = true
	}
	return len(rows), nil
}

// failAlone records the failure of one event whose batch was rolled back:
// its row is queued again, so it is held back for its next attempt, or
// dead-lettered and deleted.
func (c *claimer) failAlone(ctx context.Context, row claimed, cause error) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		b := &batch{tx: tx, rows: []claimed{row}}
		if err := c.r.settle(ctx, b, []error{cause}, true); err != nil {
			return err
		}
		if b.retries > 0 {
			c.retrying = true
		}
		return nil
	})
}

// claim takes the oldest events of this consumer's partitions that are not
// held back, by deleting them: the deletion commits with the batch (the
// acknowledgement costs no statement of its own) or rolls back with it.
func (c *claimer) claim(ctx context.Context, tx pgx.Tx) ([]claimed, error) {
	limit := c.r.cfg.BatchSize
	if len(c.split) > 0 {
		limit = 1
	}
	// A row without a payload is read from the archive (queueDDL): a
	// scalar subquery, so that it is always the primary key's probe and
	// only for those rows.
	q := `WITH d AS (
	DELETE FROM ` + c.r.table + ` WHERE "offset" IN (
		SELECT "offset" FROM ` + c.r.table + `
		WHERE part % $1 = $2 AND (not_before IS NULL OR not_before <= now())
		ORDER BY "offset" LIMIT $3 FOR UPDATE SKIP LOCKED)
	RETURNING "offset", event_id, type, payload, part, attempts, created_at
)
SELECT "offset", event_id, type,
	COALESCE(payload, (SELECT a.envelope FROM event_archive a WHERE a.id = d.event_id))::text,
	part, attempts, created_at
FROM d`
	rs, err := tx.Query(ctx, q, c.parts, c.part, limit)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	rows, err := pgx.CollectRows(rs, func(row pgx.CollectableRow) (claimed, error) {
		var c claimed
		var payload *string
		err := row.Scan(&c.offset, &c.eventID, &c.typ, &payload, &c.part, &c.attempts, &c.createdAt)
		if payload != nil {
			c.raw = []byte(*payload)
		}
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	// RETURNING promises no order; the queue's order is the offsets'.
	slices.SortFunc(rows, func(a, b claimed) int { return cmp.Compare(a.offset, b.offset) })
	if len(rows) > 0 {
		// Claims go in offset order: an earlier offset still marked was
		// settled elsewhere, or is held back and will be claimed again.
		for o := range c.split {
			if o < rows[0].offset {
				delete(c.split, o)
			}
		}
	}
	return rows, nil
}

// handle runs the handler over a batch and records each event's outcome in
// the batch's transaction. It returns an error (the batch is rolled back and
// claimed again later) only when that bookkeeping fails or the handler was
// cut short.
func (r *runner) handle(msg *message.Message) error {
	ctx := msg.Context()
	b, _ := ctx.Value(batchKey{}).(*batch)
	if b == nil {
		return errors.New("message carries no batch")
	}
	hctx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
	defer cancel()

	envs := make([]events.Envelope, 0, len(b.rows))
	idx := make([]int, 0, len(b.rows)) // envs[k] is b.rows[idx[k]]
	errs := make([]error, len(b.rows))
	for i, row := range b.rows {
		if row.raw == nil {
			// Its archive row is gone: deleted by hand, since PruneArchive
			// keeps what queues point at. Nothing to retry.
			errs[i] = events.Permanent(fmt.Errorf("event %s: its archived envelope is missing", row.eventID))
			continue
		}
		env, err := events.Decode(row.raw)
		if err != nil {
			errs[i] = err // invalid: permanent
			continue
		}
		envs = append(envs, env)
		idx = append(idx, i)
	}
	if len(envs) > 0 {
		res, panicked := events.InvokeBatch(hctx, r.h, envs)
		if hctx.Err() != nil {
			// Out of time, or stopping: nothing is acknowledged, the
			// batch is tried again whole, without counting an attempt.
			return fmt.Errorf("batch of %d: %w", len(b.rows), hctx.Err())
		}
		if panicked == nil && b.tx.Conn().PgConn().TxStatus() == 'E' {
			panicked = errors.New("the handler left its transaction aborted")
		}
		if panicked != nil {
			r.logger.Warn("a batch failed as a whole", "events", len(b.rows), "err", panicked)
			b.broken = panicked
			return nil
		}
		for k, e := range res {
			errs[idx[k]] = e
		}
	}
	return r.settle(ctx, b, errs, false)
}

// settle acknowledges the batch in its transaction: claiming deleted every
// row; a failed event's row is written back, with its attempt counted and
// held back for the next try, unless it cannot succeed (a permanent error,
// or out of attempts), when it becomes a dead letter instead. queued says
// the rows are still in the queue (the claim was rolled back).
func (r *runner) settle(ctx context.Context, b *batch, errs []error, queued bool) error {
	q := db.New(b.tx)
	var retry []claimed
	var gone []int64
	for i, row := range b.rows {
		err := errs[i]
		switch {
		case err == nil:
		case events.Classify(err) == events.Retry && row.attempts+1 < r.cfg.MaxAttempts:
			retry = append(retry, row)
			r.logger.Debug("event handling failed; retrying later", "event_id", row.eventID, "attempt", row.attempts+1, "err", err)
		default:
			if err := r.deadLetter(ctx, q, row, err); err != nil {
				return err
			}
			gone = append(gone, row.offset)
		}
	}
	if queued && len(gone) > 0 {
		if _, err := b.tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE "offset" = ANY($1)`, gone); err != nil {
			return fmt.Errorf("delete dead-lettered events: %w", err)
		}
	}
	if len(retry) == 0 {
		return nil
	}
	b.retries = len(retry)
	// The pause doubles with each attempt, from RetryBackoff up to
	// maxRetryBackoff. A row written back keeps its offset, so its place.
	n := len(retry)
	offsets, ids, types, payloads := make([]int64, n), make([]uuid.UUID, n), make([]string, n), make([]string, n)
	parts, attempts, created := make([]int16, n), make([]int32, n), make([]time.Time, n)
	for i, row := range retry {
		offsets[i], ids[i], types[i], payloads[i] = row.offset, row.eventID, row.typ, string(row.raw)
		parts[i], attempts[i], created[i] = row.part, int32(row.attempts), row.createdAt
	}
	_, err := b.tx.Exec(ctx, `INSERT INTO `+r.table+` ("offset", event_id, type, payload, part, attempts, not_before, created_at)
SELECT o, e, t, p::jsonb, pt, a + 1, now() + least($8::float8 * power(2, a), $9::float8) * interval '1 millisecond', c
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::smallint[], $6::integer[], $7::timestamptz[]) AS x(o, e, t, p, pt, a, c)
ON CONFLICT ("offset") DO UPDATE SET attempts = EXCLUDED.attempts, not_before = EXCLUDED.not_before`,
		offsets, ids, types, payloads, parts, attempts, created,
		float64(r.cfg.RetryBackoff.Milliseconds()), float64(maxRetryBackoff.Milliseconds()))
	if err != nil {
		return fmt.Errorf("hold back failed events: %w", err)
	}
	return nil
}

func (r *runner) deadLetter(ctx context.Context, q *db.Queries, row claimed, cause error) error {
	id, typ := row.eventID, row.typ
	dl, err := q.InsertDeadLetter(ctx, db.InsertDeadLetterParams{
		Worker: r.worker, EventID: id, EventType: typ, Envelope: validJSON(row.raw),
		Error: cause.Error(), Attempts: int32(row.attempts + 1),
	})
	if err != nil {
		return fmt.Errorf("store dead letter: %w", err)
	}
	r.logger.Error("event dead-lettered", "event_id", id, "type", typ, "attempts", row.attempts+1,
		"dead_letter_id", dl, "err", cause)
	return nil
}

func (r *runner) vacuum(ctx context.Context, pool *pgxpool.Pool) {
	t := time.NewTicker(r.cfg.VacuumEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.acked.Swap(0) == 0 {
			continue
		}
		if _, err := pool.Exec(ctx, `VACUUM (SKIP_LOCKED) `+r.table); err != nil && ctx.Err() == nil {
			r.logger.Warn("vacuum queue", "table", r.table, "err", err)
		}
	}
}

// validJSON keeps the dead letter storable even when the payload is not JSON.
func validJSON(b []byte) []byte {
	if s := strings.TrimSpace(string(b)); len(s) > 0 && (s[0] == '{' || s[0] == '[') {
		return b
	}
	out, _ := jsonString(b)
	return out
}
