package events

import (
	"context"
	"errors"
)

// Handler is a worker: a plain function over a decoded event. The same value
// runs under a Watermill router or inside an SQS Lambda; only adapters differ.
type Handler interface {
	Handle(ctx context.Context, e Envelope) error
}

// BatchHandler handles several events at once, where cost is per round trip
// (one transaction, one lookup, one publish for the whole batch), and
// reports per event, as Lambda's partial batch responses do: the result has
// one entry per event, in order (nil: handled), or is nil when every event
// was handled. Events are given in queue order; a handler keeps the order of
// one conversation's events.
type BatchHandler interface {
	HandleBatch(ctx context.Context, envs []Envelope) []error
}

// EarlyHandler is a handler that can also act on events the moment their
// publish commits, in the publishing process, ahead of their queued
// delivery: the in-process fast path of a local bus (pgbus.Bus.HandOff).
// The queued copy still arrives, through HandleBatch, and stays the durable
// record: HandleEarly only saves latency, and HandleBatch completes whatever
// it did not do (after a crash, everything). HandleEarly must not block.
type EarlyHandler interface {
	HandleEarly(ctx context.Context, envs []Envelope)
}

// AsBatch returns h itself if it handles batches, else a BatchHandler that
// handles the events one by one, in order.
func AsBatch(h Handler) BatchHandler {
	if b, ok := h.(BatchHandler); ok {
		return b
	}
	return oneByOne{h}
}

type oneByOne struct{ h Handler }

// HandleBatch stops at a context that ended: the events left get its error
// without being handled.
func (o oneByOne) HandleBatch(ctx context.Context, envs []Envelope) []error {
	var errs []error
	for i, e := range envs {
		err := ctx.Err()
		if err == nil {
			err = o.h.Handle(ctx, e)
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(envs))
			}
			errs[i] = err
		}
	}
	return errs
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, e Envelope) error

func (f HandlerFunc) Handle(ctx context.Context, e Envelope) error { return f(ctx, e) }

// Publisher puts events on the bus. It returns only once the events are
// durable; an error means the caller must not acknowledge its own input.
type Publisher interface {
	Publish(ctx context.Context, events ...Envelope) error
}

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks an error that retrying cannot fix (bad payload, a reference
// that will never exist): adapters dead-letter it at once instead of retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or anything it wraps, was marked
// Permanent or is an invalid event.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, ErrInvalid)
}
