package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/events/sqs"
)

// transport is the event bus a process runs on, chosen once from
// CHAT_TRANSPORT: everything that publishes, consumes, replays or inspects
// dead letters goes through it and never asks which one it is.
type transport interface {
	// Publisher puts events on the bus; it answers once they are durable.
	Publisher() events.Publisher
	// Consume runs one worker's handler until ctx ends.
	Consume(ctx context.Context, worker string, h events.Handler) error
	// Replay re-delivers the archived events of [from, to) to one worker and
	// says what it did, for the operator.
	Replay(ctx context.Context, worker string, from, to time.Time) (string, error)
	// DeadLetters lists the events a worker gave up on ("" = every worker).
	DeadLetters(ctx context.Context, worker string, all bool) ([]db.DeadLetter, error)
	// Redrive puts one dead letter back on its worker's queue.
	Redrive(ctx context.Context, id int64) error
	// PurgeDeadLetters deletes dead letter id, or when id is 0 every dead
	// letter of worker ("" = every worker), and says what it did.
	PurgeDeadLetters(ctx context.Context, worker string, id int64) (string, error)
	// PruneArchive deletes the archived events that occurred before before
	// and returns how many.
	PruneArchive(ctx context.Context, before time.Time) (int64, error)
	// Run runs what the transport needs in the background (wake-ups) until
	// ctx ends.
	Run(ctx context.Context) error
}

// pgTransport is the embedded default: queue tables on the chat's own
// PostgreSQL, woken by LISTEN/NOTIFY.
type pgTransport struct {
	cfg       Config
	bus       *pgbus.Bus
	waker     *pgbus.Waker
	consumers *pgxpool.Pool // nil in a process that runs no worker
	consume   pgbus.ConsumerConfig
	logger    *slog.Logger
}

var _ transport = (*pgTransport)(nil)

func (t *pgTransport) Publisher() events.Publisher { return t.bus }

func (t *pgTransport) Consume(ctx context.Context, worker string, h events.Handler) error {
	if t.consumers == nil {
		return fmt.Errorf("worker %s: this process has no consumer connections", worker)
	}
	cfg := t.consume
	cfg.Concurrency = t.cfg.concurrency(worker)
	if worker == events.WorkerThumbnailer {
		// A batch is handled in one transaction, and a thumbnail takes
		// hundreds of milliseconds (video poster frames, seconds): small
		// batches keep that transaction short.
		cfg.BatchSize, cfg.HandlerTimeout = 4, 2*time.Minute
	}
	if eh, ok := h.(events.EarlyHandler); ok {
		// This process's publishes reach the worker the moment they
		// commit; the queue delivers them again, durably.
		stop := t.bus.HandOff(worker, func(envs []events.Envelope) { eh.HandleEarly(ctx, envs) })
		defer stop()
	}
	return pgbus.Consume(ctx, t.consumers, t.waker, worker, events.AsBatch(h), cfg, t.logger)
}

func (t *pgTransport) Replay(ctx context.Context, worker string, from, to time.Time) (string, error) {
	n, err := t.bus.Replay(ctx, worker, from, to)
	if err != nil {
		return "", err
	}
	t.flush(ctx, "running workers will find the replayed events at their next poll")
	return fmt.Sprintf("re-delivered %d events to %s", n, worker), nil
}

func (t *pgTransport) DeadLetters(ctx context.Context, worker string, all bool) ([]db.DeadLetter, error) {
	return t.bus.DeadLetters(ctx, worker, all, 1000)
}

func (t *pgTransport) Redrive(ctx context.Context, id int64) error {
	if err := t.bus.Redrive(ctx, id); err != nil {
		return err
	}
	t.flush(ctx, "the worker will find the event at its next poll")
	return nil
}

func (t *pgTransport) PurgeDeadLetters(ctx context.Context, worker string, id int64) (string, error) {
	n, err := t.bus.PurgeDeadLetters(ctx, worker, id)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("purged %d dead letters", n), nil
}

func (t *pgTransport) PruneArchive(ctx context.Context, before time.Time) (int64, error) {
	return t.bus.PruneArchive(ctx, before, t.cfg.ArchivePruneBatch)
}

// flush tells running workers now, for one-shot commands that do not run
// the waker; failing that, their fallback poll finds the rows.
func (t *pgTransport) flush(ctx context.Context, fallback string) {
	if err := t.waker.Flush(ctx); err != nil {
		t.logger.Warn(fallback, "err", err)
	}
}

func (t *pgTransport) Run(ctx context.Context) error { return t.waker.Run(ctx) }

// awsTransport is EventBridge in, one SQS queue per worker out.
type awsTransport struct {
	cfg       Config
	client    eventbridge.StartReplayAPI
	publisher *eventbridge.Publisher
	logger    *slog.Logger
}

var _ transport = (*awsTransport)(nil)

// errAWSDeadLetters says where dead letters are on AWS.
var errAWSDeadLetters = errors.New("with CHAT_TRANSPORT=aws dead letters are in each worker's SQS dead-letter queue (parley-<stage>-<worker>-dlq): " +
	"inspect them with aws sqs receive-message, move them back with aws sqs start-message-move-task, or drop them with chat deadletters purge (see DEPLOY.md)")

func (t *awsTransport) Publisher() events.Publisher { return t.publisher }

func (t *awsTransport) Consume(ctx context.Context, worker string, h events.Handler) error {
	if t.cfg.QueueURL == "" {
		return fmt.Errorf("worker %s: CHAT_QUEUE_URL is required with CHAT_TRANSPORT=aws", worker)
	}
	return sqs.Run(ctx, sqs.Config{QueueURL: t.cfg.QueueURL, AWS: t.cfg.awsAt(t.cfg.SQSEndpoint), Concurrency: t.cfg.concurrency(worker)}, h, t.logger.With("worker", worker))
}

func (t *awsTransport) DeadLetters(context.Context, string, bool) ([]db.DeadLetter, error) {
	return nil, errAWSDeadLetters
}

func (t *awsTransport) Redrive(context.Context, int64) error { return errAWSDeadLetters }

// PurgeDeadLetters empties the dead-letter queue CHAT_DEAD_LETTER_QUEUE_URL
// names (one worker's). SQS deletes a queue's messages only all at once.
func (t *awsTransport) PurgeDeadLetters(ctx context.Context, _ string, id int64) (string, error) {
	if id != 0 {
		return "", errors.New("with CHAT_TRANSPORT=aws purge empties a whole dead-letter queue: drop the ID (delete one message with aws sqs delete-message)")
	}
	if t.cfg.DeadLetterQueueURL == "" {
		return "", errors.New("CHAT_DEAD_LETTER_QUEUE_URL is required for chat deadletters purge with CHAT_TRANSPORT=aws (the worker's queue parley-<stage>-<worker>-dlq)")
	}
	if err := sqs.Purge(ctx, t.cfg.awsAt(t.cfg.SQSEndpoint), t.cfg.DeadLetterQueueURL); err != nil {
		return "", err
	}
	return fmt.Sprintf("purged %s (SQS deletes its messages within a minute)", t.cfg.DeadLetterQueueURL), nil
}

// PruneArchive has nothing to do on AWS: the EventBridge archive expires
// events itself, after the retention the stack sets on it.
func (t *awsTransport) PruneArchive(context.Context, time.Time) (int64, error) {
	return 0, errors.New("with CHAT_TRANSPORT=aws the EventBridge archive expires events itself (its RetentionDays, set by the stack)")
}

func (t *awsTransport) Run(ctx context.Context) error { return nil }

// Replay starts an EventBridge archive replay delivered only through the
// worker's rule. It needs AWS credentials and no database, so an operator can
// run it from any machine. The replay runs on in EventBridge after this
// returns.
func (t *awsTransport) Replay(ctx context.Context, worker string, from, to time.Time) (string, error) {
	cfg := t.cfg
	var errs []error
	for _, v := range []struct{ name, value, hint string }{
		{"CHAT_EVENT_ARCHIVE_ARN", cfg.ArchiveARN, "the stack output EventArchiveArn"},
		{"CHAT_EVENT_BUS_ARN", cfg.EventBusARN, "the stack output EventBusArn"},
		{"CHAT_RULE_ARN_PREFIX", cfg.RuleARNPrefix, "the workers' rule ARN without the worker name: " + ruleARNPrefixExample},
	} {
		if v.value == "" {
			errs = append(errs, fmt.Errorf("%s is required for chat replay with CHAT_TRANSPORT=aws (%s)", v.name, v.hint))
		}
	}
	if p := cfg.RuleARNPrefix; p != "" && (!strings.HasPrefix(p, "arn:") || !strings.Contains(p, ":rule/")) {
		errs = append(errs, fmt.Errorf("CHAT_RULE_ARN_PREFIX=%q is not a rule ARN prefix like %s", p, ruleARNPrefixExample))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	rule := cfg.RuleARNPrefix + worker
	name, err := eventbridge.Replay(ctx, t.client, eventbridge.ReplayRequest{
		ArchiveARN: cfg.ArchiveARN, BusARN: cfg.EventBusARN, RuleARNs: []string{rule},
		Since: from, Until: to,
		// Unique per account and region, and says what it was for.
		Name: worker + "-" + uuid.NewString(),
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("started replay %s to %s (rule %s)\nfollow it with: aws events describe-replay --replay-name %s", name, worker, rule, name), nil
}

// ruleARNPrefixExample is the form of CHAT_RULE_ARN_PREFIX: the stack names
// each worker's rule parley-<stage>-<worker>, on the bus parley-<stage>.
const ruleARNPrefixExample = "arn:aws:events:REGION:ACCOUNT:rule/parley-STAGE/parley-STAGE-"
