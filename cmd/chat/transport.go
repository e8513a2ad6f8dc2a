package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

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
	DeadLetters(ctx context.Context, worker string, all bool) ([]deadLetter, error)
	// Redrive puts dead letter id back on its worker's queue, or every one
	// when id is "", and says what it did. An id is checked by
	// checkDeadLetterID first.
	Redrive(ctx context.Context, id string) (string, error)
	// PurgeDeadLetters deletes dead letter id, or when id is "" every dead
	// letter of worker ("" = every worker), and says what it did.
	PurgeDeadLetters(ctx context.Context, worker string, id string) (string, error)
	// PruneArchive deletes the archived events that occurred before before
	// and returns how many.
	PruneArchive(ctx context.Context, before time.Time) (int64, error)
	// Status reads the workers' queues (chat status, GET /status, the
	// queue metrics).
	Status(ctx context.Context) ([]events.QueueStatus, error)
	// Run runs what the transport needs in the background (wake-ups) until
	// ctx ends.
	Run(ctx context.Context) error
}

// deadLetter is one line of chat deadletters list, whichever transport
// keeps it. Fields a transport does not know are zero.
type deadLetter struct {
	// ID is what redrive and purge take: a row id on PostgreSQL, an SQS
	// message id on AWS.
	ID         string
	Worker     string
	EventID    string
	EventType  string
	Attempts   int
	FailedAt   time.Time
	RedrivenAt *time.Time
	Error      string
}

// checkDeadLetterID checks the ID given to chat deadletters op (redrive or
// purge; "" when none is given) against what the transport names dead
// letters with, before anything is opened: a wrong one is a usage error.
func checkDeadLetterID(transport, op, id string) error {
	if transport == transportAWS {
		return nil // any SQS message id; purge refuses one itself
	}
	if op == "redrive" && id == "" {
		return usageError{errors.New("redrive takes the ID of one dead letter (see chat deadletters list)")}
	}
	_, err := pgDeadLetterID(id)
	return err
}

// pgDeadLetterID reads a dead letter's row id; "" is 0, none.
func pgDeadLetterID(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, usageError{fmt.Errorf("ID %q is not a number", s)}
	}
	if id <= 0 {
		return 0, usageError{fmt.Errorf("ID %d: dead letter ids are positive", id)}
	}
	return id, nil
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

func (t *pgTransport) DeadLetters(ctx context.Context, worker string, all bool) ([]deadLetter, error) {
	rows, err := t.bus.DeadLetters(ctx, worker, all, 1000)
	if err != nil {
		return nil, err
	}
	out := make([]deadLetter, len(rows))
	for i, r := range rows {
		out[i] = deadLetter{ID: strconv.FormatInt(r.ID, 10), Worker: r.Worker, EventID: r.EventID.String(), EventType: r.EventType,
			Attempts: int(r.Attempts), FailedAt: r.FailedAt, RedrivenAt: r.RedrivenAt, Error: r.Error}
	}
	return out, nil
}

func (t *pgTransport) Redrive(ctx context.Context, id string) (string, error) {
	n, err := pgDeadLetterID(id)
	if err != nil {
		return "", err
	}
	if err := t.bus.Redrive(ctx, n); err != nil {
		return "", err
	}
	t.flush(ctx, "the worker will find the event at its next poll")
	return fmt.Sprintf("dead letter %d redriven", n), nil
}

func (t *pgTransport) PurgeDeadLetters(ctx context.Context, worker string, id string) (string, error) {
	nid, err := pgDeadLetterID(id)
	if err != nil {
		return "", err
	}
	n, err := t.bus.PurgeDeadLetters(ctx, worker, nid)
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

func (t *pgTransport) Status(ctx context.Context) ([]events.QueueStatus, error) {
	return t.bus.Status(ctx)
}

// awsTransport is EventBridge in, one SQS queue per worker out.
type awsTransport struct {
	cfg       Config
	client    eventbridge.StartReplayAPI
	publisher *eventbridge.Publisher
	logger    *slog.Logger
}

var _ transport = (*awsTransport)(nil)

func (t *awsTransport) Publisher() events.Publisher { return t.publisher }

func (t *awsTransport) Consume(ctx context.Context, worker string, h events.Handler) error {
	if t.cfg.QueueURL == "" {
		return fmt.Errorf("worker %s: CHAT_QUEUE_URL is required with CHAT_TRANSPORT=aws", worker)
	}
	return sqs.Run(ctx, sqs.Config{QueueURL: t.cfg.QueueURL, AWS: t.cfg.awsAt(t.cfg.SQSEndpoint), Concurrency: t.cfg.concurrency(worker)}, h, t.logger.With("worker", worker))
}

// awsListLimit is how many messages chat deadletters list shows on AWS:
// each one is received, and hidden meanwhile, to be shown.
const awsListLimit = 1000

// DeadLetters lists the messages of the dead-letter queue
// CHAT_DEAD_LETTER_QUEUE_URL names (one worker's, so worker is not used).
// Listing receives them: see sqs.List.
func (t *awsTransport) DeadLetters(ctx context.Context, _ string, all bool) ([]deadLetter, error) {
	if all {
		return nil, errors.New("with CHAT_TRANSPORT=aws redriven messages leave the dead-letter queue: there are none to include, drop --all")
	}
	if err := t.needQueues("list", false); err != nil {
		return nil, err
	}
	msgs, err := sqs.List(ctx, t.cfg.awsAt(t.cfg.SQSEndpoint), t.cfg.DeadLetterQueueURL, awsListLimit, t.logger)
	if err != nil {
		return nil, err
	}
	out := make([]deadLetter, len(msgs))
	for i, m := range msgs {
		// The worker's error is in its logs, not on the message.
		out[i] = deadLetter{ID: m.MessageID, EventID: m.EventID, EventType: m.EventType, Attempts: m.ReceiveCount, Error: m.Invalid}
	}
	return out, nil
}

// Redrive moves message id (an SQS message id), or every message, of the
// dead-letter queue back to the worker's queue CHAT_QUEUE_URL.
func (t *awsTransport) Redrive(ctx context.Context, id string) (string, error) {
	if err := t.needQueues("redrive", true); err != nil {
		return "", err
	}
	n, err := sqs.Redrive(ctx, t.cfg.awsAt(t.cfg.SQSEndpoint), t.cfg.DeadLetterQueueURL, t.cfg.QueueURL, id, t.logger)
	if err != nil {
		if n > 0 {
			return "", fmt.Errorf("moved %d messages to %s, then: %w", n, t.cfg.QueueURL, err)
		}
		return "", err
	}
	return fmt.Sprintf("moved %d messages from %s to %s", n, t.cfg.DeadLetterQueueURL, t.cfg.QueueURL), nil
}

// needQueues says which of the queue variables chat deadletters op needs
// is missing.
func (t *awsTransport) needQueues(op string, source bool) error {
	var errs []error
	if t.cfg.DeadLetterQueueURL == "" {
		errs = append(errs, fmt.Errorf("CHAT_DEAD_LETTER_QUEUE_URL is required for chat deadletters %s with CHAT_TRANSPORT=aws (the worker's queue parley-<stage>-<worker>-dlq)", op))
	}
	if source && t.cfg.QueueURL == "" {
		errs = append(errs, fmt.Errorf("CHAT_QUEUE_URL is required for chat deadletters %s with CHAT_TRANSPORT=aws (the worker's queue parley-<stage>-<worker>, where the messages go back)", op))
	}
	return errors.Join(errs...)
}

// PurgeDeadLetters empties the dead-letter queue CHAT_DEAD_LETTER_QUEUE_URL
// names (one worker's). SQS deletes a queue's messages only all at once.
func (t *awsTransport) PurgeDeadLetters(ctx context.Context, _ string, id string) (string, error) {
	if id != "" {
		return "", errors.New("with CHAT_TRANSPORT=aws purge empties a whole dead-letter queue: drop the ID (delete one message with aws sqs delete-message)")
	}
	if err := t.needQueues("purge", false); err != nil {
		return "", err
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

// Status reads the queue CHAT_QUEUE_URL names and its dead-letter queue
// CHAT_DEAD_LETTER_QUEUE_URL (one worker's, as for chat deadletters), and
// names it after the queue (parley-<stage>-<worker>).
func (t *awsTransport) Status(ctx context.Context) ([]events.QueueStatus, error) {
	if t.cfg.QueueURL == "" {
		return nil, errors.New("CHAT_QUEUE_URL is required for chat status with CHAT_TRANSPORT=aws (the worker's queue parley-<stage>-<worker>; CHAT_DEAD_LETTER_QUEUE_URL adds its dead letters)")
	}
	name := t.cfg.QueueURL[strings.LastIndex(t.cfg.QueueURL, "/")+1:]
	s, err := sqs.Status(ctx, t.cfg.awsAt(t.cfg.SQSEndpoint), name, t.cfg.QueueURL, t.cfg.DeadLetterQueueURL)
	if err != nil {
		return nil, err
	}
	return []events.QueueStatus{s}, nil
}

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
