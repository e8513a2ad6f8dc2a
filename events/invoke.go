package events

import (
	"context"
	"errors"
	"fmt"
)

// ErrPanic marks the error Invoke makes of a handler's panic.
var ErrPanic = errors.New("handler panic")

// Invoke calls h.Handle, turning a panic into an error wrapping ErrPanic
// (and the panic value, when that is an error), so that one bad event can
// take down neither the worker nor, on Lambda, the rest of its batch.
//
// A panic is not permanent: it may come from a passing state (a nil left by
// a failed dependency) as much as from the event, so it is retried like any
// other failure, and the consumer's attempt limit or the queue's redrive
// policy dead-letters an event that panics every time. Only a panic whose
// value is itself a Permanent error is permanent.
func Invoke(ctx context.Context, h Handler, e Envelope) (err error) {
	defer recoverInto(&err)
	return h.Handle(ctx, e)
}

// InvokeBatch calls h.HandleBatch and returns one result per event. A
// panic of the batch as a whole is returned as panicked (wrapping
// ErrPanic), with no per-event results: the caller then handles the events
// one at a time (undoing the batch's writes first where it can), so that an
// event that panics fails alone instead of failing its neighbours.
func InvokeBatch(ctx context.Context, h BatchHandler, envs []Envelope) (errs []error, panicked error) {
	defer recoverInto(&panicked)
	errs = h.HandleBatch(ctx, envs)
	if errs == nil {
		errs = make([]error, len(envs))
	}
	if len(errs) != len(envs) {
		return nil, fmt.Errorf("%w: %d results for %d events", ErrPanic, len(errs), len(envs))
	}
	return errs, nil
}

func recoverInto(err *error) {
	if p := recover(); p != nil {
		if perr, ok := p.(error); ok {
			*err = fmt.Errorf("%w: %w", ErrPanic, perr)
		} else {
			*err = fmt.Errorf("%w: %v", ErrPanic, p)
		}
	}
}

// Disposition is what a consumer does with an event once it was handled.
type Disposition int

const (
	// Ack: handled; remove it from the queue.
	Ack Disposition = iota
	// Retry: failed, but a later attempt may succeed; deliver it again.
	Retry
	// DeadLetter: can never succeed; set it aside without further attempts.
	DeadLetter
)

func (d Disposition) String() string {
	switch d {
	case Ack:
		return "ack"
	case Retry:
		return "retry"
	case DeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("Disposition(%d)", int(d))
}

// Classify maps a handler's result to its disposition: nil is Ack, a
// permanent error (see IsPermanent) is DeadLetter, anything else Retry.
// Whether the consumer itself is stopping is not the error's business: an
// adapter whose context ended leaves the event queued whatever this says.
func Classify(err error) Disposition {
	switch {
	case err == nil:
		return Ack
	case IsPermanent(err):
		return DeadLetter
	default:
		return Retry
	}
}
