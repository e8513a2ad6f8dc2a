package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/metrics"
)

// batch fails events whose type is "retry" (retryably) or "bad"
// (permanently), and handles early.
type batch struct{ early int }

func (batch) Handle(ctx context.Context, e events.Envelope) error { return nil }
func (batch) HandleBatch(_ context.Context, envs []events.Envelope) []error {
	errs := make([]error, len(envs))
	for i, e := range envs {
		switch e.Type {
		case "retry":
			errs[i] = errors.New("try again")
		case "bad":
			errs[i] = events.Permanent(errors.New("never"))
		}
	}
	return errs
}
func (b *batch) HandleEarly(context.Context, []events.Envelope) { b.early++ }

func TestWorkerCountsByResult(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	inner := &batch{}
	h := m.Worker(events.WorkerPersister, inner)
	bh, ok := h.(events.BatchHandler)
	if !ok {
		t.Fatal("the wrapped handler lost HandleBatch")
	}
	eh, ok := h.(events.EarlyHandler)
	if !ok {
		t.Fatal("the wrapped handler lost HandleEarly")
	}
	eh.HandleEarly(context.Background(), nil)
	if inner.early != 1 {
		t.Fatal("HandleEarly did not reach the handler")
	}
	errs := bh.HandleBatch(context.Background(), []events.Envelope{{Type: "ok"}, {Type: "retry"}, {Type: "bad"}, {Type: "ok"}})
	if len(errs) != 4 || errs[1] == nil || errs[2] == nil {
		t.Fatalf("results changed: %v", errs)
	}
	if err := h.Handle(context.Background(), events.Envelope{Type: "ok"}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP parley_worker_events_total Events a worker's handler finished, by worker and result (handled, failed: retried, permanent: dead-lettered at once).
# TYPE parley_worker_events_total counter
parley_worker_events_total{result="failed",worker="persister"} 1
parley_worker_events_total{result="handled",worker="persister"} 3
parley_worker_events_total{result="permanent",worker="persister"} 1
`
	if err := testutil.GatherAndCompare(reg, bytes.NewBufferString(want+workerZeros(events.WorkerPersister)), "parley_worker_events_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "parley_worker_batch_duration_seconds"); n != 1 {
		t.Fatalf("%d batch duration series, want 1", n)
	}
}

// workerZeros are the series of the other workers, exported at 0.
func workerZeros(except string) string {
	var b bytes.Buffer
	for _, w := range events.Workers() {
		if w == except {
			continue
		}
		for _, r := range []string{"failed", "handled", "permanent"} {
			fmt.Fprintf(&b, "parley_worker_events_total{result=%q,worker=%q} 0\n", r, w)
		}
	}
	return b.String()
}

type claimBus struct{ published int }

func (c *claimBus) Publish(_ context.Context, envs ...events.Envelope) error {
	c.published += len(envs)
	return nil
}

func (c *claimBus) PublishClaimed(context.Context, db.InsertMessageRequestParams, events.Envelope) (bool, error) {
	c.published++
	return true, nil
}

func TestPublisherKeepsClaimsAndCountsTypes(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	bus := &claimBus{}
	p := m.Publisher(bus)
	c, ok := p.(interface {
		PublishClaimed(context.Context, db.InsertMessageRequestParams, events.Envelope) (bool, error)
	})
	if !ok {
		t.Fatal("the wrapped publisher lost PublishClaimed")
	}
	if _, err := c.PublishClaimed(context.Background(), db.InsertMessageRequestParams{}, events.Envelope{Type: events.TypeMessageSent}); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), events.Envelope{Type: events.TypeThumbnailReady}, events.Envelope{Type: "Unrouted"}); err != nil {
		t.Fatal(err)
	}
	if bus.published != 3 {
		t.Fatalf("published %d, want 3", bus.published)
	}
	m.GroupSize(3)
	for typ, want := range map[string]float64{events.TypeMessageSent: 1, events.TypeThumbnailReady: 1, "Unrouted": 1, events.TypeMessageRead: 0} {
		if got := max(sample(t, reg, "parley_events_published_total", "type", typ), 0); got != want {
			t.Errorf("events_published_total{type=%q} = %v, want %v", typ, got, want)
		}
	}
	if got := sample(t, reg, "parley_publish_duration_seconds", "", ""); got != 2 {
		t.Errorf("publish durations: %v, want 2", got)
	}
	if got := sample(t, reg, "parley_publish_group_events", "", ""); got != 1 {
		t.Errorf("group sizes: %v, want 1", got)
	}
}

// sample is the value of family name's series with label k=v (a
// histogram's count); -1 when there is none.
func sample(t *testing.T, g prometheus.Gatherer, name, k, v string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := k == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestPosterCountsByResult(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	answers := []error{nil, &types.GoneException{}, fmt.Errorf("post: %w", &types.PayloadTooLargeException{}), errors.New("connection refused"), nil}
	p := m.Poster(posterFunc(func() error {
		err := answers[0]
		answers = answers[1:]
		return err
	}))
	for range 5 {
		_, _ = p.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{})
	}
	for result, want := range map[string]float64{"ok": 2, "gone": 1, "too_large": 1, "error": 1} {
		if got := sample(t, reg, "parley_ws_posts_total", "result", result); got != want {
			t.Errorf("ws_posts_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

// A poster that closes connections still does once counted.
func TestPosterKeepsDeleteConnection(t *testing.T) {
	m := metrics.New(metrics.NewRegistry())
	if _, ok := m.Poster(posterFunc(nil)).(interface {
		DeleteConnection(context.Context, *apigatewaymanagementapi.DeleteConnectionInput, ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
	}); ok {
		t.Fatal("a poster that cannot close gained DeleteConnection")
	}
	c := &closingPoster{}
	p := m.Poster(c)
	d, ok := p.(interface {
		DeleteConnection(context.Context, *apigatewaymanagementapi.DeleteConnectionInput, ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
	})
	if !ok {
		t.Fatal("the wrapped poster lost DeleteConnection")
	}
	if _, err := d.DeleteConnection(context.Background(), &apigatewaymanagementapi.DeleteConnectionInput{}); err != nil || c.deleted != 1 {
		t.Fatalf("DeleteConnection: %v, %d calls", err, c.deleted)
	}
}

type closingPoster struct{ deleted int }

func (c *closingPoster) PostToConnection(context.Context, *apigatewaymanagementapi.PostToConnectionInput, ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
}

func (c *closingPoster) DeleteConnection(context.Context, *apigatewaymanagementapi.DeleteConnectionInput, ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error) {
	c.deleted++
	return &apigatewaymanagementapi.DeleteConnectionOutput{}, nil
}

type posterFunc func() error

func (f posterFunc) PostToConnection(context.Context, *apigatewaymanagementapi.PostToConnectionInput, ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	if err := f(); err != nil {
		return nil, err
	}
	return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
}

// The REST middleware labels by the ServeMux pattern, never the raw path,
// and leaves http.ResponseController working (the upload's deadline).
func TestHTTPLabelsByRoutePattern(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	srv := httptest.NewServer(m.HTTP(mux))
	defer srv.Close()
	for _, path := range []string{"/items/1", "/items/2", "/items/missing", "/nowhere"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := `
# HELP parley_http_requests_total REST requests answered, by route pattern and status code.
# TYPE parley_http_requests_total counter
parley_http_requests_total{code="200",route="GET /items/{id}"} 2
parley_http_requests_total{code="404",route="GET /items/{id}"} 1
parley_http_requests_total{code="404",route="unmatched"} 1
`
	if err := testutil.GatherAndCompare(reg, bytes.NewBufferString(want), "parley_http_requests_total"); err != nil {
		t.Fatal(err)
	}
	if got := sample(t, reg, "parley_http_request_duration_seconds", "route", "GET /items/{id}"); got != 3 {
		t.Fatalf("duration count %v, want 3", got)
	}
}

func TestEMFLine(t *testing.T) {
	var out bytes.Buffer
	h := metrics.EMF(&out, events.WorkerFanout, &batch{})
	h.HandleBatch(context.Background(), []events.Envelope{{Type: "ok"}, {Type: "retry"}, {Type: "bad"}, {Type: "ok"}})
	var line struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Worker                                       string
		EventsHandled, EventsFailed, EventsPermanent int
		BatchDuration                                *float64
	}
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q: %v", out.String(), err)
	}
	if line.Worker != events.WorkerFanout || line.EventsHandled != 2 || line.EventsFailed != 1 || line.EventsPermanent != 1 || line.BatchDuration == nil {
		t.Fatalf("line %+v", line)
	}
	d := line.AWS.CloudWatchMetrics
	if line.AWS.Timestamp == 0 || len(d) != 1 || d[0].Namespace != metrics.EMFNamespace || len(d[0].Dimensions) != 1 || d[0].Dimensions[0][0] != "Worker" || len(d[0].Metrics) != 4 {
		t.Fatalf("metadata %+v", line.AWS)
	}
	// Every metric the directive names is a member of the line.
	var members map[string]any
	_ = json.Unmarshal(out.Bytes(), &members)
	for _, m := range d[0].Metrics {
		if _, ok := members[m.Name]; !ok {
			t.Errorf("directive names %s, which the line lacks", m.Name)
		}
	}
}
