package metrics

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/internal/push"
)

// Results of a push, the result label of parley_pushes_total.
const (
	PushOK           = "ok"
	PushInvalidToken = "invalid_token" // the device is deleted
	PushRetryable    = "retryable"     // throttled, 5xx or the network: tried again later
	PushError        = "error"         // permanent for that notification
)

// Pusher counts p's answers, one per notification, by provider (expo,
// apns, fcm, sink) and result.
func (m *Metrics) Pusher(provider string, p push.Provider) push.Provider {
	counts := map[string]prometheus.Counter{}
	for _, r := range []string{PushOK, PushInvalidToken, PushRetryable, PushError} {
		counts[r] = m.pushes.WithLabelValues(provider, r)
	}
	return countingPusher{p, counts}
}

type countingPusher struct {
	p      push.Provider
	counts map[string]prometheus.Counter
}

func (c countingPusher) Send(ctx context.Context, ns []push.Notification) []push.Result {
	out := c.p.Send(ctx, ns)
	for _, r := range out {
		c.counts[PushResult(r.Err)].Inc()
	}
	return out
}

// PushResult names the result of one push.
func PushResult(err error) string {
	switch {
	case err == nil:
		return PushOK
	case errors.Is(err, push.ErrInvalidToken):
		return PushInvalidToken
	case push.IsRetryable(err):
		return PushRetryable
	}
	return PushError
}
