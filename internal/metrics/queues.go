package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/events"
)

// Queues exports every worker's queue as read by status at scrape time
// (pgbus.Bus.Status: a few index reads), so nothing samples between scrapes.
// A failed read exports no queue series for that scrape (and counts in
// parley_queue_status_errors_total); the scrape itself still answers.
func (m *Metrics) Queues(status func(ctx context.Context) ([]events.QueueStatus, error)) {
	c := &queueCollector{
		status: status,
		depth: prometheus.NewDesc(namespace+"_queue_depth",
			"Events in a worker's queue, waiting or being handled.", []string{"worker"}, nil),
		age: prometheus.NewDesc(namespace+"_queue_oldest_event_age_seconds",
			"Age of the oldest event in a worker's queue (0 when empty).", []string{"worker"}, nil),
		dead: prometheus.NewDesc(namespace+"_queue_dead_letters",
			"Dead letters of a worker not redriven.", []string{"worker"}, nil),
		consumers: prometheus.NewDesc(namespace+"_queue_consumers",
			"Processes holding consumer connections for a worker.", []string{"worker"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "queue_status_errors_total",
			Help: "Scrapes that could not read the worker queues.",
		}),
	}
	m.reg.MustRegister(c)
}

// queueStatusTimeout bounds the read of one scrape.
const queueStatusTimeout = 5 * time.Second

type queueCollector struct {
	status                      func(ctx context.Context) ([]events.QueueStatus, error)
	depth, age, dead, consumers *prometheus.Desc
	errors                      prometheus.Counter
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.age
	ch <- c.dead
	ch <- c.consumers
	c.errors.Describe(ch)
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueStatusTimeout)
	defer cancel()
	qs, err := c.status(ctx)
	if err != nil {
		c.errors.Inc()
	}
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(q.Depth), q.Worker)
		if q.OldestAge >= 0 {
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, q.OldestAge.Seconds(), q.Worker)
		}
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(q.DeadLetters), q.Worker)
		if q.Consumers >= 0 {
			ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(q.Consumers), q.Worker)
		}
	}
	c.errors.Collect(ch)
}
