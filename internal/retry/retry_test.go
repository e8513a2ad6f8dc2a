package retry_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/retry"
)

// recorder is an injected Sleep that records the waits and never waits.
type recorder struct{ waits []time.Duration }

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.waits = append(r.waits, d)
	return ctx.Err()
}

func TestWait(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		p    retry.Policy
		rand float64
		want []time.Duration // for attempts 1, 2, ...
	}{
		{"doubles up to the cap", retry.Policy{Base: 100 * ms, Max: 500 * ms}, 0.99,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms}},
		{"no cap", retry.Policy{Base: ms}, 0.5, []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms}},
		{"half jitter, top of range", retry.Policy{Base: 100 * ms, Max: time.Second, Jitter: 0.5}, 0,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second}},
		{"half jitter, bottom of range", retry.Policy{Base: 100 * ms, Max: time.Second, Jitter: 0.5}, 1,
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms}},
		{"full jitter", retry.Policy{Base: 100 * ms, Jitter: 1}, 0.25, []time.Duration{75 * ms, 150 * ms}},
		{"jitter above 1 is full jitter", retry.Policy{Base: 100 * ms, Jitter: 7}, 0.5, []time.Duration{50 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Rand = func() float64 { return tt.rand }
			for i, want := range tt.want {
				if got := tt.p.Wait(i + 1); got != want {
					t.Errorf("Wait(%d) = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestWaitDoesNotOverflow(t *testing.T) {
	p := retry.Policy{Base: time.Second}
	for _, attempt := range []int{40, 64, 100, 1 << 20} {
		if d := p.Wait(attempt); d <= 0 {
			t.Errorf("Wait(%d) = %v, want a positive wait", attempt, d)
		}
	}
}

func TestWaitJitterStaysInRange(t *testing.T) {
	p := retry.Policy{Base: 100 * time.Millisecond, Jitter: 0.5} // default random source
	for range 1000 {
		if d := p.Wait(1); d < 50*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("Wait(1) = %v, want it in [50ms, 100ms]", d)
		}
	}
}

func TestDo(t *testing.T) {
	errTransient := errors.New("transient")
	errFinal := errors.New("final")
	onlyTransient := func(err error) bool { return errors.Is(err, errTransient) }
	tests := []struct {
		name         string
		attempts     int
		results      []error // op's results in order; the last one repeats
		retryable    func(error) bool
		wantAttempts int
		wantErr      error
	}{
		{"success at once", 3, []error{nil}, nil, 1, nil},
		{"success after failures", 5, []error{errTransient, errTransient, nil}, nil, 3, nil},
		{"attempts used up", 3, []error{errTransient}, nil, 3, errTransient},
		{"one attempt means no retry", 1, []error{errTransient}, nil, 1, errTransient},
		{"final error stops at once", 5, []error{errTransient, errFinal}, onlyTransient, 2, errFinal},
		{"no bound", 0, []error{errTransient, errTransient, errTransient, errTransient, errTransient, errTransient, nil}, nil, 7, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			p := retry.Policy{Attempts: tt.attempts, Base: time.Millisecond, Max: 4 * time.Millisecond, Sleep: rec.sleep}
			calls := 0
			op := func(context.Context) error {
				err := tt.results[min(calls, len(tt.results)-1)]
				calls++
				return err
			}
			var retried []int
			n, err := p.Do(t.Context(), op, tt.retryable, func(attempt int, err error, wait time.Duration) {
				if err == nil || wait != p.Wait(attempt) {
					t.Errorf("onRetry(%d, %v, %v): want the failure and its wait", attempt, err, wait)
				}
				retried = append(retried, attempt)
			})
			if n != tt.wantAttempts || calls != tt.wantAttempts {
				t.Errorf("Do returned %d attempts after %d calls, want %d", n, calls, tt.wantAttempts)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Do error %v, want %v", err, tt.wantErr)
			}
			if len(rec.waits) != n-1 || len(retried) != n-1 {
				t.Errorf("%d waits and %d onRetry calls for %d attempts, want one between each two", len(rec.waits), len(retried), n)
			}
			if want := []int{1, 2, 3}; n == 4 && !slices.Equal(retried, want) {
				t.Errorf("onRetry attempts %v, want %v", retried, want)
			}
		})
	}
}

func TestDoStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	errTransient := errors.New("transient")
	p := retry.Policy{Attempts: 10, Base: time.Hour} // the real Sleep
	calls := 0
	n, err := p.Do(ctx, func(context.Context) error {
		calls++
		return errTransient
	}, nil, func(int, error, time.Duration) { cancel() })
	if n != 1 || calls != 1 {
		t.Errorf("Do made %d attempts (%d calls) after the context ended, want 1", n, calls)
	}
	if !errors.Is(err, errTransient) || !errors.Is(err, context.Canceled) {
		t.Errorf("Do error %v, want the last failure joined with context.Canceled", err)
	}
}

func TestSleep(t *testing.T) {
	if err := retry.Sleep(t.Context(), time.Millisecond); err != nil {
		t.Errorf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := retry.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on an ended context: %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Second {
		t.Error("Sleep waited although the context had ended")
	}
}
