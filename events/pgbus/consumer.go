package pgbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
}

// DefaultConsumerConfig is what a zero field of ConsumerConfig means; the
// chat's configuration documents the same values.
func DefaultConsumerConfig() ConsumerConfig {
	return ConsumerConfig{
		Concurrency:    4,
		BatchSize:      100,
		MaxAttempts:    5,
		RetryBackoff:   100 * time.Millisecond,
		HandlerTimeout: 30 * time.Second,
		FallbackPoll:   time.Second,
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

// claimed is one claimed row of a worker queue.
type claimed struct {
	offset   int64
	attempts int
	raw      []byte
}

// batchKey carries a claimed batch in its Watermill message's context.
type batchKey struct{}

type batch struct {
	tx   pgx.Tx
	rows []claimed
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
			case n < c.r.cfg.BatchSize:
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
	if err := tx.Commit(tctx); err != nil {
		return len(rows), fmt.Errorf("commit batch: %w", err)
	}
	scope.Committed()
	if b.retries > 0 {
		c.retrying = true
	}
	return len(rows), nil
}

func (c *claimer) claim(ctx context.Context, tx pgx.Tx) ([]claimed, error) {
	q := `SELECT "offset", attempts, payload::text FROM ` + c.r.table + `
WHERE part % $1 = $2 AND (not_before IS NULL OR not_before <= now())
ORDER BY "offset" LIMIT $3 FOR UPDATE SKIP LOCKED`
	rs, err := tx.Query(ctx, q, c.parts, c.part, c.r.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return pgx.CollectRows(rs, func(row pgx.CollectableRow) (claimed, error) {
		var c claimed
		var payload string
		err := row.Scan(&c.offset, &c.attempts, &payload)
		c.raw = []byte(payload)
		return c, err
	})
}

// handle runs the handler over a batch and records each event's outcome in
// the batch's transaction. It returns an error (the batch is rolled back
// and claimed again later) only when that bookkeeping fails or the handler
// was cut short.
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
		env, err := events.Decode(row.raw)
		if err != nil {
			errs[i] = err // invalid: permanent
			continue
		}
		envs = append(envs, env)
		idx = append(idx, i)
	}
	if len(envs) > 0 {
		res, err := r.run(hctx, b.tx, envs)
		if err != nil {
			return err
		}
		for k, e := range res {
			errs[idx[k]] = e
		}
	}
	if hctx.Err() != nil {
		// Out of time: nothing is acknowledged, the batch is tried again
		// whole, without counting it as an attempt.
		return fmt.Errorf("batch of %d: %w", len(b.rows), hctx.Err())
	}
	return r.settle(ctx, b, envs, idx, errs)
}

// run calls the handler inside a savepoint. If the batch panics as a whole,
// its writes are rolled back and each event is handled alone, in its own
// savepoint, so that the one that panics fails alone.
func (r *runner) run(ctx context.Context, tx pgx.Tx, envs []events.Envelope) ([]error, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	errs, panicked := events.InvokeBatch(ctx, r.h, envs)
	if panicked == nil || len(envs) == 1 {
		if panicked != nil {
			errs = []error{panicked}
			err = sp.Rollback(ctx)
		} else {
			err = sp.Commit(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		return errs, nil
	}
	r.logger.Warn("batch handler panicked; handling its events one by one", "events", len(envs), "err", panicked)
	if err := sp.Rollback(ctx); err != nil {
		return nil, fmt.Errorf("roll back to savepoint: %w", err)
	}
	errs = make([]error, len(envs))
	for i := range envs {
		one, err := tx.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		res, panicked := events.InvokeBatch(ctx, r.h, envs[i:i+1])
		if panicked != nil {
			errs[i] = panicked
			err = one.Rollback(ctx)
		} else {
			errs[i] = res[0]
			err = one.Commit(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
	}
	return errs, nil
}

// settle acknowledges the batch: handled events are deleted, failed ones
// wait for their next attempt, and those that cannot succeed (permanent
// errors, or out of attempts) become dead letters and are deleted.
func (r *runner) settle(ctx context.Context, b *batch, envs []events.Envelope, idx []int, errs []error) error {
	byRow := make([]*events.Envelope, len(b.rows))
	for k, i := range idx {
		byRow[i] = &envs[k]
	}
	var done, retry []int64
	q := db.New(b.tx)
	for i, row := range b.rows {
		err := errs[i]
		switch {
		case err == nil:
			done = append(done, row.offset)
		case events.Classify(err) == events.Retry && row.attempts+1 < r.cfg.MaxAttempts:
			retry = append(retry, row.offset)
			r.logger.Debug("event handling failed; retrying later", "event_id", eventID(byRow[i]), "attempt", row.attempts+1, "err", err)
		default:
			if err := r.deadLetter(ctx, q, row, byRow[i], err); err != nil {
				return err
			}
			done = append(done, row.offset)
		}
	}
	if len(done) > 0 {
		if _, err := b.tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE "offset" = ANY($1)`, done); err != nil {
			return fmt.Errorf("acknowledge: %w", err)
		}
		r.acked.Add(int64(len(done)))
	}
	b.retries = len(retry)
	if len(retry) > 0 {
		// The pause doubles with each attempt, from RetryBackoff up to
		// maxRetryBackoff.
		if _, err := b.tx.Exec(ctx, `UPDATE `+r.table+` SET attempts = attempts + 1,
	not_before = now() + least($2::float8 * power(2, attempts), $3::float8) * interval '1 millisecond'
WHERE "offset" = ANY($1)`, retry, float64(r.cfg.RetryBackoff.Milliseconds()), float64(maxRetryBackoff.Milliseconds())); err != nil {
			return fmt.Errorf("schedule retries: %w", err)
		}
	}
	return nil
}

func (r *runner) deadLetter(ctx context.Context, q *db.Queries, row claimed, env *events.Envelope, cause error) error {
	id, typ := uuid.Nil, "unknown"
	if env != nil {
		if u, err := uuid.Parse(env.ID); err == nil {
			id = u
		}
		typ = env.Type
	}
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

func eventID(e *events.Envelope) string {
	if e == nil {
		return ""
	}
	return e.ID
}

// vacuumEvery is how often a worker's queue table is vacuumed once rows
// were deleted from it. A queue is mostly dead rows at its head; without
// this, claims slow down as they walk them, and this does not rely on the
// server's autovacuum being on.
const vacuumEvery = 10 * time.Second

func (r *runner) vacuum(ctx context.Context, pool *pgxpool.Pool) {
	t := time.NewTicker(vacuumEvery)
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
