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

type ackFlushKey struct{}

// WithAckFlush marks a handler's context when the consumer acknowledges the
// event with a synchronous commit on the same PostgreSQL server the handler
// writes to. That commit flushes the write-ahead log up to itself, and so
// makes every earlier commit durable too: the handler may then commit its
// own writes asynchronously (one disk flush per batch instead of per write)
// without risking that an acknowledged event's effects are lost.
func WithAckFlush(ctx context.Context) context.Context {
	return context.WithValue(ctx, ackFlushKey{}, true)
}

// AckFlushes reports whether WithAckFlush marked ctx.
func AckFlushes(ctx context.Context) bool {
	v, _ := ctx.Value(ackFlushKey{}).(bool)
	return v
}
