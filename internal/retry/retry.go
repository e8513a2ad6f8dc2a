// Package retry runs an operation again after failures, with exponential
// backoff and jitter, a bound on attempts, and waits that end with their
// context.
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy says how often and how patiently to retry. The zero value retries
// forever without waiting; set at least Base.
type Policy struct {
	// Attempts bounds the calls, the first included; 0 or less means no
	// bound (until success, a final error or the context's end).
	Attempts int
	// Base is the wait after the first failure; it doubles after each
	// further one, up to Max (no cap when Max is 0).
	Base, Max time.Duration
	// Jitter is the random share of each wait, from 0 (none) to 1 ("full
	// jitter": anywhere from zero to the full wait). A wait d becomes a
	// random duration in [d·(1-Jitter), d], so that callers failing
	// together do not retry together.
	Jitter float64

	// Sleep waits d or until ctx ends, returning ctx.Err() then. Nil means
	// a timer; tests pass a recorder.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) for the jitter. Nil means
	// math/rand/v2.
	Rand func() float64
}

// Wait returns the wait after the given failed attempt (1-based).
func (p Policy) Wait(attempt int) time.Duration {
	d := p.Base
	for i := 1; i < attempt && (p.Max <= 0 || d < p.Max); i++ {
		if d >= time.Duration(1)<<62 {
			break // doubling again would overflow
		}
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	if j := min(max(p.Jitter, 0), 1); j > 0 && d > 0 {
		r := p.Rand
		if r == nil {
			r = rand.Float64
		}
		d -= time.Duration(j * r() * float64(d))
	}
	return d
}

// Do calls op until it returns nil, returns an error that retryable rejects
// (nil retryable retries every error), or has been called p.Attempts times,
// and between calls waits as p says. Before each wait onRetry, if not nil,
// learns the failed attempt, its error and the wait: the place to log a
// retry. Do returns the number of calls and op's last error; if ctx ended
// during a wait, that error is joined with ctx.Err().
func (p Policy) Do(ctx context.Context, op func(ctx context.Context) error, retryable func(error) bool, onRetry func(attempt int, err error, wait time.Duration)) (int, error) {
	sleep := p.Sleep
	if sleep == nil {
		sleep = Sleep
	}
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || retryable != nil && !retryable(err) || p.Attempts > 0 && attempt >= p.Attempts {
			return attempt, err
		}
		wait := p.Wait(attempt)
		if onRetry != nil {
			onRetry(attempt, err, wait)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return attempt, errors.Join(err, serr)
		}
	}
}

// Sleep waits d, or until ctx ends and returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
