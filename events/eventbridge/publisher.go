// Package eventbridge is the AWS event bus: it publishes chat events to an
// EventBridge bus, whose rules route them to one SQS queue per worker, and
// starts archive replays.
package eventbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/retry"
)

// Limits of one PutEvents request.
const (
	MaxBatchEntries = 10
	// DefaultMaxBatchBytes is the documented PutEvents request limit, counted
	// the way EventBridge counts it (see entrySize).
	DefaultMaxBatchBytes = 256 * 1024
)

var (
	// ErrPublishFailed means the bus did not accept every event, even after
	// retries. The caller must not acknowledge its input; its client retries.
	ErrPublishFailed = errors.New("eventbridge: publish failed")
	// ErrTooLarge means one event alone exceeds the request size limit: no
	// retry can publish it.
	ErrTooLarge = errors.New("eventbridge: event too large")
)

// PutEventsAPI is the part of the EventBridge client the publisher uses.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ PutEventsAPI = (*eventbridge.Client)(nil)

// Options configure a Publisher. Only BusName is required.
type Options struct {
	// BusName is the name or ARN of the event bus.
	BusName string
	// MaxAttempts bounds the PutEvents calls per batch when entries fail
	// (default 5). Transport errors are retried by the SDK client itself.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the exponential backoff with full jitter
	// between attempts (defaults 50 ms and 1 s).
	BaseDelay, MaxDelay time.Duration
	// MaxBatchBytes is the request size limit (default DefaultMaxBatchBytes).
	MaxBatchBytes int
	// Logger receives one warning per retried batch (default slog.Default()).
	Logger *slog.Logger
}

// Publisher puts chat events on an EventBridge bus.
type Publisher struct {
	client PutEventsAPI
	opts   Options
	retry  retry.Policy
}

var _ events.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher to the bus named in opts.
func NewPublisher(client PutEventsAPI, opts Options) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("eventbridge: nil client")
	}
	if opts.BusName == "" {
		return nil, errors.New("eventbridge: bus name is required")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = 50 * time.Millisecond
	}
	if opts.MaxDelay < opts.BaseDelay {
		opts.MaxDelay = max(time.Second, opts.BaseDelay)
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Full jitter: publishers refused together spread their retries over
	// the whole wait.
	policy := retry.Policy{Attempts: opts.MaxAttempts, Base: opts.BaseDelay, Max: opts.MaxDelay, Jitter: 1}
	return &Publisher{client: client, opts: opts, retry: policy}, nil
}

// Publish puts the events on the bus in batches of at most ten entries and
// MaxBatchBytes. Entries the bus rejects are retried, alone, with backoff. It
// returns nil only once every event was accepted; otherwise an error wrapping
// ErrPublishFailed names the events that were not, and later batches are not
// sent. Invalid and oversized events fail the whole call before anything is
// sent.
func (p *Publisher) Publish(ctx context.Context, envs ...events.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	entries := make([]types.PutEventsRequestEntry, len(envs))
	sizes := make([]int, len(envs))
	for i, env := range envs {
		if err := env.Validate(); err != nil {
			return fmt.Errorf("publish event %d of %d: %w", i+1, len(envs), err)
		}
		detail, err := env.Encode()
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		entries[i] = types.PutEventsRequestEntry{
			EventBusName: aws.String(p.opts.BusName),
			Source:       aws.String(events.Source),
			DetailType:   aws.String(env.Type),
			Detail:       aws.String(string(detail)),
			Time:         aws.Time(env.OccurredAt),
		}
		sizes[i] = entrySize(entries[i])
		if sizes[i] > p.opts.MaxBatchBytes {
			return fmt.Errorf("%w: %s event %s is %d bytes, the limit is %d", ErrTooLarge, env.Type, env.ID, sizes[i], p.opts.MaxBatchBytes)
		}
	}
	for start := 0; start < len(entries); {
		end := batchEnd(sizes, start, p.opts.MaxBatchBytes)
		if err := p.putBatch(ctx, entries[start:end], envs[start:end]); err != nil {
			if rest := len(entries) - end; rest > 0 {
				return fmt.Errorf("%w (%d later events not sent)", err, rest)
			}
			return err
		}
		start = end
	}
	return nil
}

// batchEnd returns the end of the batch starting at start: at most ten
// entries and maxBytes. Every size is at most maxBytes.
func batchEnd(sizes []int, start, maxBytes int) int {
	end, total := start, 0
	for end < len(sizes) && end-start < MaxBatchEntries && total+sizes[end] <= maxBytes {
		total += sizes[end]
		end++
	}
	return end
}

// entrySize is EventBridge's documented size of an entry: 14 bytes for the
// time plus the UTF-8 bytes of source, detail type, detail and resources.
func entrySize(e types.PutEventsRequestEntry) int {
	n := 0
	if e.Time != nil {
		n += 14
	}
	n += len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// rejection is an entry the bus refused on the last attempt.
type rejection struct {
	id, code, message string
}

// errRejected marks an attempt in which the bus refused entries: the only
// failure putBatch retries (the SDK client retries transport errors).
var errRejected = errors.New("entries rejected")

// putBatch sends one batch and retries exactly the entries the bus refused,
// matched by position, until none is left or the attempts are used up.
func (p *Publisher) putBatch(ctx context.Context, entries []types.PutEventsRequestEntry, envs []events.Envelope) error {
	pending := make([]int, len(entries)) // indexes into entries
	for i := range pending {
		pending[i] = i
	}
	var rejected []rejection // by the last attempt
	sent := 0                // entries in the last attempt
	attempts, err := p.retry.Do(ctx, func(ctx context.Context) error {
		in := &eventbridge.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(pending))}
		for j, i := range pending {
			in.Entries[j] = entries[i]
		}
		sent = len(pending)
		out, err := p.client.PutEvents(ctx, in)
		if err != nil {
			return fmt.Errorf("%w: put %d events: %w", ErrPublishFailed, len(pending), err)
		}
		var failed []int
		rejected = nil
		if len(out.Entries) != len(pending) {
			// Positions are meaningless: resend them all (consumers are idempotent).
			failed = pending
			for _, i := range pending {
				rejected = append(rejected, rejection{id: envs[i].ID, code: "MalformedResponse",
					message: fmt.Sprintf("%d result entries for %d events", len(out.Entries), len(pending))})
			}
		} else {
			for j, r := range out.Entries {
				if r.ErrorCode == nil && r.EventId != nil {
					continue
				}
				failed = append(failed, pending[j])
				rejected = append(rejected, rejection{id: envs[pending[j]].ID, code: aws.ToString(r.ErrorCode), message: aws.ToString(r.ErrorMessage)})
			}
		}
		if len(failed) == 0 {
			return nil
		}
		pending = failed
		return errRejected
	}, func(err error) bool { return errors.Is(err, errRejected) }, func(attempt int, _ error, _ time.Duration) {
		p.opts.Logger.WarnContext(ctx, "eventbridge refused events; retrying them",
			"attempt", attempt, "failed", len(rejected), "sent", sent, "first_error", describe(rejected[:1]))
	})
	switch {
	case err == nil || !errors.Is(err, errRejected):
		return err // nil, or a transport error the SDK already retried
	case attempts >= p.retry.Attempts:
		return fmt.Errorf("%w: %d of %d events not accepted after %d attempts: %s",
			ErrPublishFailed, len(rejected), len(entries), attempts, describe(rejected))
	default: // ctx ended while waiting to retry
		return fmt.Errorf("%w: %d of %d events not accepted: %s: %w",
			ErrPublishFailed, len(rejected), len(entries), describe(rejected), ctx.Err())
	}
}

func describe(rs []rejection) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s (%s: %s)", r.id, r.code, r.message)
	}
	return strings.Join(parts, ", ")
}
