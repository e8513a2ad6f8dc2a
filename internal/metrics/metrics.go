// Package metrics holds the chat's Prometheus metrics: one Metrics value,
// built by the composition root over its own registry, with the wrappers
// that count at the one place each thing happens (a worker's batch, a
// publish, a REST request, a post to a connection).
//
// The per-event paths touch only series resolved ahead of time (or cached
// lock-free on first use), so counting costs an atomic add, not a label
// lookup.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// namespace prefixes every metric of the chat.
const namespace = "parley"

// Worker event results (label result of parley_worker_events_total).
const (
	ResultHandled   = "handled"   // acknowledged
	ResultFailed    = "failed"    // retryable: delivered again
	ResultPermanent = "permanent" // cannot succeed: dead-lettered at once
)

// Post results (label result of parley_ws_posts_total).
const (
	PostOK       = "ok"
	PostGone     = "gone"
	PostTooLarge = "too_large"
	PostError    = "error"
)

// Metrics is every series the chat exports. Build it with New.
type Metrics struct {
	reg prometheus.Registerer

	workerEvents  *prometheus.CounterVec
	workerBatches *prometheus.HistogramVec

	publishSeconds prometheus.Histogram
	published      map[string]prometheus.Counter // by event type, resolved in New
	publishedVec   *prometheus.CounterVec
	groupEvents    prometheus.Histogram

	httpRequests *prometheus.CounterVec
	httpSeconds  *prometheus.HistogramVec
	httpSeries   sync.Map // httpKey -> httpSeries

	posts  map[string]prometheus.Counter // by result
	pushes *prometheus.CounterVec        // by provider and result
}

// NewRegistry returns a registry with the Go runtime and process
// collectors on it: what every chat process exports besides its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New registers the chat's metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		workerEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "worker_events_total",
			Help: "Events a worker's handler finished, by worker and result (handled, failed: retried, permanent: dead-lettered at once).",
		}, []string{"worker", "result"}),
		workerBatches: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "worker_batch_duration_seconds",
			Help:    "Time a worker's handler took over one batch of events.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30},
		}, []string{"worker"}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_duration_seconds",
			Help:    "Time a publish took until its events were durable on the bus.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		published: map[string]prometheus.Counter{},
		groupEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_group_events",
			Help:    "Events per group commit of the PostgreSQL bus (publishes that share one transaction).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "REST requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer a REST request, by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		posts: map[string]prometheus.Counter{},
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pushes_total",
			Help: "Push notifications the notifier sent, by provider (expo, apns, fcm, sink) and result (ok, invalid_token, retryable, error).",
		}, []string{"provider", "result"}),
	}
	publishedVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "events_published_total",
		Help: "Events published to the bus, by event type (ThumbnailReady counts thumbnails made).",
	}, []string{"type"})
	m.publishedVec = publishedVec
	for _, r := range events.Routes() { // every type a worker takes
		for _, t := range r.Types {
			m.published[t] = publishedVec.WithLabelValues(t)
		}
	}
	postsVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "ws_posts_total",
		Help: "Posts of fanout to a WebSocket connection through the management API, by result (ok, gone, too_large, error).",
	}, []string{"result"})
	for _, r := range []string{PostOK, PostGone, PostTooLarge, PostError} {
		m.posts[r] = postsVec.WithLabelValues(r)
	}
	for _, w := range events.Workers() {
		for _, r := range []string{ResultHandled, ResultFailed, ResultPermanent} {
			m.workerEvents.WithLabelValues(w, r) // exported at 0 from the start
		}
	}
	reg.MustRegister(m.workerEvents, m.workerBatches, m.publishSeconds, publishedVec, m.groupEvents,
		m.httpRequests, m.httpSeconds, postsVec, m.pushes)
	return m
}

// Handler serves the registry's metrics in the Prometheus text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// GroupSize records the number of events of one group commit.
func (m *Metrics) GroupSize(n int) { m.groupEvents.Observe(float64(n)) }

// Gateway exports a WebSocket gateway's connections and frames, read from
// its own counters at scrape time: nothing is added to its frame path.
func (m *Metrics) Gateway(gw interface {
	Len() int
	FramesIn() uint64
	FramesOut() uint64
}) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ws_connections",
			Help: "Live WebSocket connections of this process's gateway.",
		}, func() float64 { return float64(gw.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "ws_frames_received_total",
			Help: "Data frames received from WebSocket clients.",
		}, func() float64 { return float64(gw.FramesIn()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "ws_frames_sent_total",
			Help: "Data frames written to WebSocket clients.",
		}, func() float64 { return float64(gw.FramesOut()) }),
	)
}

// Poster is what fanout posts through (fanout.Poster).
type Poster interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
}

// Poster counts p's posts by result: the fanout side of the management
// API, the same whether it posts in-process, to a local gateway or to API
// Gateway. A poster that also closes connections (fanout.Closer) keeps
// doing so.
func (m *Metrics) Poster(p Poster) Poster {
	c := countingPoster{p, m.posts}
	if d, ok := p.(closer); ok {
		return closingPoster{c, d}
	}
	return c
}

type closer interface {
	DeleteConnection(ctx context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
}

type closingPoster struct {
	countingPoster
	closer
}

type countingPoster struct {
	p      Poster
	counts map[string]prometheus.Counter
}

func (c countingPoster) PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	out, err := c.p.PostToConnection(ctx, in, optFns...)
	c.counts[PostResult(err)].Inc()
	return out, err
}

// PostResult names the result of a post to a connection.
func PostResult(err error) string {
	var gone *types.GoneException
	var tooLarge *types.PayloadTooLargeException
	switch {
	case err == nil:
		return PostOK
	case errors.As(err, &gone):
		return PostGone
	case errors.As(err, &tooLarge):
		return PostTooLarge
	}
	return PostError
}

// Publisher times p's publishes and counts their events by type. A
// publisher that claims while publishing (chat.ClaimPublisher) keeps doing
// so.
func (m *Metrics) Publisher(p events.Publisher) events.Publisher {
	t := timedPublisher{p: p, m: m}
	if c, ok := p.(claimPublisher); ok {
		return timedClaimPublisher{t, c}
	}
	return t
}

type claimPublisher interface {
	PublishClaimed(ctx context.Context, claim db.InsertMessageRequestParams, env events.Envelope) (bool, error)
}

type timedPublisher struct {
	p events.Publisher
	m *Metrics
}

func (t timedPublisher) Publish(ctx context.Context, envs ...events.Envelope) error {
	start := time.Now()
	err := t.p.Publish(ctx, envs...)
	t.m.published1(start, err, envs...)
	return err
}

type timedClaimPublisher struct {
	timedPublisher
	c claimPublisher
}

func (t timedClaimPublisher) PublishClaimed(ctx context.Context, claim db.InsertMessageRequestParams, env events.Envelope) (bool, error) {
	start := time.Now()
	claimed, err := t.c.PublishClaimed(ctx, claim, env)
	if claimed {
		t.m.published1(start, err, env)
	} else if err == nil {
		t.m.publishSeconds.Observe(time.Since(start).Seconds())
	}
	return claimed, err
}

// published1 records a publish that ended: its latency when it succeeded,
// and its events.
func (m *Metrics) published1(start time.Time, err error, envs ...events.Envelope) {
	if err != nil {
		return
	}
	m.publishSeconds.Observe(time.Since(start).Seconds())
	for _, e := range envs {
		c := m.published[e.Type]
		if c == nil { // a type no worker takes: rare, so looked up
			c = m.publishedVec.WithLabelValues(e.Type)
		}
		c.Inc()
	}
}

// HTTP counts and times the requests next answers, labelled by the
// pattern of the ServeMux route that served them (never the raw path: one
// series per route, not per conversation id). Requests no route matched
// are labelled "unmatched". Put it around a handler whose ServeMux sets
// r.Pattern, not around a WebSocket upgrade.
func (m *Metrics) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		code := sw.Status()
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s := m.httpSeriesFor(route, code)
		s.requests.Inc()
		s.seconds.Observe(time.Since(start).Seconds())
	})
}

type httpKey struct {
	route string
	code  int
}

type httpSeries struct {
	requests prometheus.Counter
	seconds  prometheus.Observer
}

// httpSeriesFor resolves a route's series once: later requests read them
// from a sync.Map, lock-free.
func (m *Metrics) httpSeriesFor(route string, code int) httpSeries {
	k := httpKey{route, code}
	if s, ok := m.httpSeries.Load(k); ok {
		return s.(httpSeries)
	}
	s := httpSeries{
		requests: m.httpRequests.WithLabelValues(route, strconv.Itoa(code)),
		seconds:  m.httpSeconds.WithLabelValues(route),
	}
	m.httpSeries.Store(k, s)
	return s
}

// StatusWriter remembers the status code written, for the middlewares
// that report it (metrics, traces). Unwrap lets http.ResponseController
// reach the connection (deadlines, flushes).
type StatusWriter struct {
	http.ResponseWriter
	code int
}

func (s *StatusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Status is the status code written, 200 when the handler wrote none.
func (s *StatusWriter) Status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
