package pgbus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/retry"
	"github.com/parleychat/parley/internal/wmlog"
)

// ConsumerConfig tunes one worker's consumption.
type ConsumerConfig struct {
	// Concurrency is how many consumers share the worker's queue; each
	// takes the events of its share of the conversations, in order.
	Concurrency int
	// BatchSize is how many rows one consumer locks per query.
	BatchSize int
	// MaxAttempts is how often a failing event is tried before it is
	// dead-lettered. Permanent errors are dead-lettered at once.
	MaxAttempts int
	// RetryBackoff is the first pause between attempts; it doubles.
	RetryBackoff time.Duration
	// HandlerTimeout bounds one event's handling, retries included.
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

// Consume runs h over the worker's queue until ctx ends. Handlers that
// write the same PostgreSQL server as the bus may commit asynchronously
// (events.AckFlushes): the acknowledgement flushes their commits. An event is
// acknowledged only after h succeeded or the event was stored as a dead
// letter, in the same transaction that held it: a crash at any point
// redelivers it.
func Consume(ctx context.Context, pool *pgxpool.Pool, waker *Waker, worker string, h events.Handler, cfg ConsumerConfig, logger *slog.Logger) error {
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
	r := &runner{worker: worker, h: h, cfg: cfg, retry: retryPolicy(cfg), q: db.New(pool), logger: logger}
	ackDeadline := cfg.HandlerTimeout + 5*time.Second
	for i := range cfg.Concurrency {
		var wake <-chan struct{}
		if waker != nil {
			wake = waker.subscribe(worker, i, cfg.Concurrency)
		}
		sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
			SchemaAdapter:  partitionedQueueSchema(cfg.BatchSize, i, cfg.Concurrency),
			OffsetsAdapter: ackUpToLastRow{wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true}},
			BackoffManager: wakeBackoff{wake: wake, done: ctx.Done(), fallback: cfg.FallbackPoll, retry: time.Second},
			AckDeadline:    &ackDeadline,
			ResendInterval: time.Second,
		}, wlog)
		if err != nil {
			return fmt.Errorf("subscriber: %w", err)
		}
		router.AddConsumerHandler(fmt.Sprintf("%s-%d", worker, i), worker, sub, r.handle)
	}

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

type runner struct {
	worker string
	h      events.Handler
	cfg    ConsumerConfig
	retry  retry.Policy
	q      *db.Queries
	logger *slog.Logger
}

// maxRetryBackoff caps the doubling of ConsumerConfig.RetryBackoff.
const maxRetryBackoff = 5 * time.Second

// retryPolicy spaces a failing event's attempts as ConsumerConfig says: the
// backoff starts at RetryBackoff and doubles up to maxRetryBackoff, and each
// pause adds up to half of it at random. retry takes its jitter off the top
// of a wait instead, hence a wait of 1.5 times the backoff, a third random.
func retryPolicy(cfg ConsumerConfig) retry.Policy {
	return retry.Policy{
		Attempts: cfg.MaxAttempts,
		Base:     cfg.RetryBackoff * 3 / 2,
		Max:      maxRetryBackoff * 3 / 2,
		Jitter:   1.0 / 3,
	}
}

// handle returns nil (ack) after success or after dead-lettering; it returns
// an error (nack, redelivered) only when even the dead letter could not be
// stored or the consumer is stopping.
func (r *runner) handle(msg *message.Message) error {
	ctx, cancel := context.WithTimeout(msg.Context(), r.cfg.HandlerTimeout)
	defer cancel()
	// The ack below is a synchronous commit on this database (the consume
	// transaction deletes the row), after the handler's own commits.
	ctx = events.WithAckFlush(ctx)

	env, err := events.Decode(msg.Payload)
	attempts := 0
	if err == nil {
		attempts, err = r.attempt(ctx, env)
		switch d := events.Classify(err); {
		case d == events.Ack:
			return nil
		case d == events.Retry && ctx.Err() != nil:
			// Stopping or out of time: leave it queued for the next consumer.
			return fmt.Errorf("handle %s %s: %w", env.Type, env.ID, err)
		}
		// A permanent failure, or the attempts are used up.
	}
	return r.deadLetter(msg, env, attempts, err)
}

// attempt handles env up to MaxAttempts times, while the failures are
// retryable, and returns the number of attempts and the last error.
func (r *runner) attempt(ctx context.Context, env events.Envelope) (int, error) {
	return r.retry.Do(ctx, func(ctx context.Context) error {
		return events.Invoke(ctx, r.h, env)
	}, func(err error) bool {
		return events.Classify(err) == events.Retry
	}, func(n int, err error, _ time.Duration) {
		r.logger.Debug("event handling failed; retrying", "event_id", env.ID, "type", env.Type, "attempt", n, "err", err)
	})
}

func (r *runner) deadLetter(msg *message.Message, env events.Envelope, attempts int, cause error) error {
	ctx := context.WithoutCancel(msg.Context())
	id, perr := uuid.Parse(msg.UUID)
	if perr != nil {
		id = uuid.Nil
	}
	typ := env.Type
	if typ == "" {
		typ = "unknown"
	}
	dl, err := r.q.InsertDeadLetter(ctx, db.InsertDeadLetterParams{
		Worker: r.worker, EventID: id, EventType: typ, Envelope: validJSON(msg.Payload),
		Error: cause.Error(), Attempts: int32(attempts),
	})
	if err != nil {
		r.logger.Error("could not store dead letter; event stays queued", "event_id", msg.UUID, "err", err, "cause", cause)
		return fmt.Errorf("store dead letter: %w", err)
	}
	r.logger.Error("event dead-lettered", "event_id", msg.UUID, "type", typ, "attempts", attempts,
		"dead_letter_id", dl, "err", cause)
	return nil
}

// validJSON keeps the dead letter storable even when the payload is not JSON.
func validJSON(b []byte) []byte {
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
		return b
	}
	out, _ := jsonString(b)
	return out
}
