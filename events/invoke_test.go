package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestInvoke(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name          string
		h             HandlerFunc
		wantErr       error // errors.Is
		wantText      string
		wantPermanent bool
	}{
		{"success", func(context.Context, Envelope) error { return nil }, nil, "", false},
		{"error passes through", func(context.Context, Envelope) error { return errBoom }, errBoom, "boom", false},
		{"permanent error passes through", func(context.Context, Envelope) error { return Permanent(errBoom) }, errBoom, "boom", true},
		{"panic with a string", func(context.Context, Envelope) error { panic("nil map") }, ErrPanic, "handler panic: nil map", false},
		{"panic with an error", func(context.Context, Envelope) error { panic(errBoom) }, errBoom, "handler panic: boom", false},
		{"panic with a permanent error", func(context.Context, Envelope) error { panic(Permanent(errBoom)) }, ErrPanic, "handler panic: boom", true},
		{"runtime error", func(_ context.Context, e Envelope) error {
			_ = e.Data[len(e.Data)]
			return nil
		}, ErrPanic, "handler panic: runtime error: index out of range", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Invoke(t.Context(), tt.h, Envelope{ID: "e-1"})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Invoke error %v, want it to wrap %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Invoke error %q, want %q in it", err, tt.wantText)
			}
			if got := IsPermanent(err); got != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.wantPermanent)
			}
		})
	}
}

func TestInvokePassesContextAndEvent(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(t.Context(), key{}, "v")
	err := Invoke(ctx, HandlerFunc(func(ctx context.Context, e Envelope) error {
		if ctx.Value(key{}) != "v" || e.ID != "e-2" {
			return fmt.Errorf("got context value %v and event %q", ctx.Value(key{}), e.ID)
		}
		return nil
	}), Envelope{ID: "e-2"})
	if err != nil {
		t.Error(err)
	}
}

func TestClassify(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want Disposition
	}{
		{"nil", nil, Ack},
		{"plain error", errBoom, Retry},
		{"wrapped plain error", fmt.Errorf("store: %w", errBoom), Retry},
		{"cancellation", context.Canceled, Retry},
		{"panic", fmt.Errorf("%w: nil map", ErrPanic), Retry},
		{"permanent", Permanent(errBoom), DeadLetter},
		{"wrapped permanent", fmt.Errorf("decode: %w", Permanent(errBoom)), DeadLetter},
		{"joined with a permanent one", errors.Join(errBoom, Permanent(errBoom)), DeadLetter},
		{"invalid event", fmt.Errorf("%w: no id", ErrInvalid), DeadLetter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	for d, want := range map[Disposition]string{Ack: "ack", Retry: "retry", DeadLetter: "dead-letter", 7: "Disposition(7)"} {
		if d.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(d), d.String(), want)
		}
	}
}
