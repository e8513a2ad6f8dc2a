package metrics

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/parleychat/parley/events"
)

// EMFNamespace is the CloudWatch namespace of the Lambda workers' metrics.
const EMFNamespace = "Parley"

// EMF wraps a worker's batch handler on Lambda to write, per batch, one
// line in CloudWatch's embedded metric format to w (the function's log):
// CloudWatch turns it into the metrics EventsHandled, EventsFailed,
// EventsPermanent (counts) and BatchDuration (milliseconds) with the
// dimension Worker, the numbers parley_worker_events_total and
// parley_worker_batch_duration_seconds are elsewhere. Queue depth and age
// are SQS's own metrics.
func EMF(w io.Writer, worker string, h events.BatchHandler) events.BatchHandler {
	return emfWorker{w: w, worker: worker, h: h, directives: []emfDirective{{
		Namespace:  EMFNamespace,
		Dimensions: [][]string{{"Worker"}},
		Metrics: []emfMetric{
			{Name: "EventsHandled", Unit: "Count"},
			{Name: "EventsFailed", Unit: "Count"},
			{Name: "EventsPermanent", Unit: "Count"},
			{Name: "BatchDuration", Unit: "Milliseconds"},
		},
	}}}
}

type emfWorker struct {
	w          io.Writer
	worker     string
	h          events.BatchHandler
	directives []emfDirective
}

func (e emfWorker) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	start := time.Now()
	errs := e.h.HandleBatch(ctx, envs)
	line := emfLine{Worker: e.worker, BatchDuration: float64(time.Since(start).Microseconds()) / 1000}
	line.EventsHandled = len(envs)
	for _, err := range errs {
		switch events.Classify(err) {
		case events.Retry:
			line.EventsFailed++
			line.EventsHandled--
		case events.DeadLetter:
			line.EventsPermanent++
			line.EventsHandled--
		}
	}
	line.AWS.Timestamp = start.UnixMilli()
	line.AWS.CloudWatchMetrics = e.directives
	b, err := json.Marshal(line)
	if err == nil {
		_, _ = e.w.Write(append(b, '\n')) // a lost line loses a sample, not an event
	}
	return errs
}

type emfLine struct {
	AWS struct {
		Timestamp         int64          `json:"Timestamp"`
		CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	Worker          string  `json:"Worker"`
	EventsHandled   int     `json:"EventsHandled"`
	EventsFailed    int     `json:"EventsFailed"`
	EventsPermanent int     `json:"EventsPermanent"`
	BatchDuration   float64 `json:"BatchDuration"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}
