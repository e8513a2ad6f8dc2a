package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/events"
)

// Worker wraps a worker's handler to count its events by result and time
// its batches. Both transports hand batches (or, SQS long-polling, single
// events) to the wrapped handler, so this is the one place handling is
// measured. The fast path of an events.EarlyHandler is kept and not
// counted: the queued copy of each event is.
func (m *Metrics) Worker(name string, h events.Handler) events.Handler {
	w := &worker{
		h:         h,
		b:         events.AsBatch(h),
		handled:   m.workerEvents.WithLabelValues(name, ResultHandled),
		failed:    m.workerEvents.WithLabelValues(name, ResultFailed),
		permanent: m.workerEvents.WithLabelValues(name, ResultPermanent),
		seconds:   m.workerBatches.WithLabelValues(name),
	}
	if e, ok := h.(events.EarlyHandler); ok {
		return earlyWorker{w, e}
	}
	return w
}

type worker struct {
	h                          events.Handler
	b                          events.BatchHandler
	handled, failed, permanent prometheus.Counter
	seconds                    prometheus.Observer
}

func (w *worker) Handle(ctx context.Context, e events.Envelope) error {
	start := time.Now()
	err := w.h.Handle(ctx, e)
	w.seconds.Observe(time.Since(start).Seconds())
	w.count(err)
	return err
}

// HandleBatch counts nothing for a batch that panics: its events are
// handled again (one at a time) and counted then.
func (w *worker) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	start := time.Now()
	errs := w.b.HandleBatch(ctx, envs)
	w.seconds.Observe(time.Since(start).Seconds())
	if errs == nil {
		w.handled.Add(float64(len(envs)))
		return nil
	}
	for _, err := range errs {
		w.count(err)
	}
	return errs
}

func (w *worker) count(err error) {
	switch events.Classify(err) {
	case events.Ack:
		w.handled.Inc()
	case events.Retry:
		w.failed.Inc()
	default:
		w.permanent.Inc()
	}
}

type earlyWorker struct {
	*worker
	e events.EarlyHandler
}

func (w earlyWorker) HandleEarly(ctx context.Context, envs []events.Envelope) {
	w.e.HandleEarly(ctx, envs)
}
