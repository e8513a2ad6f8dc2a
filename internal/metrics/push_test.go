package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/parleychat/parley/internal/metrics"
	"github.com/parleychat/parley/internal/push"
)

// providerFunc answers every notification with the next error of a list:
// the wrapper is what is tested, the providers have tests of their own
// against servers speaking their protocols.
type providerFunc func() error

func (f providerFunc) Send(_ context.Context, ns []push.Notification) []push.Result {
	out := make([]push.Result, len(ns))
	for i := range ns {
		out[i].Err = f()
	}
	return out
}

func TestPusherCountsByResult(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	answers := []error{nil, fmt.Errorf("apns: %w", push.ErrInvalidToken), push.Retryable(errors.New("503")), errors.New("bad payload"), nil}
	p := m.Pusher("apns", providerFunc(func() error {
		err := answers[0]
		answers = answers[1:]
		return err
	}))
	res := p.Send(context.Background(), make([]push.Notification, 5))
	if len(res) != 5 || res[0].Err != nil || !errors.Is(res[1].Err, push.ErrInvalidToken) {
		t.Fatalf("results changed by the wrapper: %v", res)
	}
	for result, want := range map[string]float64{"ok": 2, "invalid_token": 1, "retryable": 1, "error": 1} {
		if got := sample(t, reg, "parley_pushes_total", "result", result); got != want {
			t.Errorf("pushes_total{provider=apns,result=%q} = %v, want %v", result, got, want)
		}
	}
}
