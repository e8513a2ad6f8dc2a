package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleychat/parley/events"
	ebpub "github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
	"github.com/parleychat/parley/events/lambdasqs"
	"github.com/parleychat/parley/internal/tracing"
)

const conversation = "0190b6f4-8a3e-7c2d-9f10-1234567890ab"

func newTracing(t *testing.T) (*tracing.Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := tracing.New(context.Background(), tracing.Config{Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

func typing(t *testing.T, id string) events.Envelope {
	t.Helper()
	env, err := events.New(id, time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), 2, conversation,
		events.TypingV1{ConversationID: conversation, UserID: 2, RecipientID: 1, IsTyping: true})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestConfigFromEnv(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "http://127.0.0.1:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}, "http://127.0.0.1:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/traces"}, "https://b/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, ""},
	}
	for _, c := range cases {
		got, err := tracing.ConfigFromEnv(func(k string) string { return c.env[k] })
		if err != nil || got.Endpoint != c.want || got.On() != (c.want != "") {
			t.Errorf("%v: %+v, %v; want %q", c.env, got, err, c.want)
		}
	}
	for _, bad := range []string{"127.0.0.1:4318", "ftp://x", "http://"} {
		if _, err := tracing.ConfigFromEnv(func(k string) string {
			if k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" {
				return bad
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

type recorder struct {
	mu   sync.Mutex
	envs []events.Envelope
	ctxs []trace.SpanContext
}

func (r *recorder) Handle(ctx context.Context, e events.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.envs = append(r.envs, e)
	r.ctxs = append(r.ctxs, trace.SpanContextFromContext(ctx))
	return nil
}

func (r *recorder) Publish(ctx context.Context, envs ...events.Envelope) error {
	for _, e := range envs {
		_ = r.Handle(ctx, e)
	}
	return nil
}

// TestOffAddsNothing: tracing off is a nil *Tracing, whose wrappers hand
// back what they were given, so the event path is the untraced one.
func TestOffAddsNothing(t *testing.T) {
	tr, err := tracing.New(context.Background(), tracing.Config{})
	if err != nil || tr != nil {
		t.Fatalf("off: %v, %v", tr, err)
	}
	r := &recorder{}
	if got := tr.Worker("persister", r, slog.New(slog.DiscardHandler)); got != events.Handler(r) {
		t.Errorf("Worker wrapped: %T", got)
	}
	if got := tr.Publisher(r); got != events.Publisher(r) {
		t.Errorf("Publisher wrapped: %T", got)
	}
	h := http.NotFoundHandler()
	if got := tr.HTTP(h); got == nil {
		t.Error("HTTP returned nil")
	}
	if err := tr.Flush(context.Background()); err != nil {
		t.Error(err)
	}
	// Off, a publish stamps nothing: the envelope stays small.
	if err := tr.Publisher(r).Publish(context.Background(), typing(t, "0190b6f4-8a40-7000-8000-0000000000e1")); err != nil {
		t.Fatal(err)
	}
	if r.envs[0].Traceparent != "" {
		t.Errorf("traceparent set with tracing off: %q", r.envs[0].Traceparent)
	}
}

// captureBus is EventBridge's PutEvents as the SDK client would call it.
type captureBus struct{ details []string }

func (c *captureBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	out := &eventbridge.PutEventsOutput{}
	for _, e := range in.Entries {
		c.details = append(c.details, *e.Detail)
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String("eb-1")})
	}
	return out, nil
}

// TestTraceCrossesEventBridgeAndSQS publishes through the EventBridge
// publisher inside a request's span, delivers the detail as a rule's SQS
// target receives it, and handles it with the Lambda SQS adapter: the
// worker's span is a child of the publish span, in the request's trace.
func TestTraceCrossesEventBridgeAndSQS(t *testing.T) {
	tr, exp := newTracing(t)
	bus := &captureBus{}
	pub, err := ebpub.NewPublisher(bus, ebpub.Options{BusName: "parley"})
	if err != nil {
		t.Fatal(err)
	}
	// The request: an HTTP handler that publishes.
	env := typing(t, "0190b6f4-8a40-7000-8000-0000000000e2")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /typing", func(w http.ResponseWriter, r *http.Request) {
		if err := tr.Publisher(pub).Publish(r.Context(), env); err != nil {
			t.Error(err)
		}
	})
	tr.HTTP(mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/typing", nil))
	if env.Traceparent != "" {
		t.Fatal("Publish changed the caller's envelope")
	}
	if len(bus.details) != 1 || !strings.Contains(bus.details[0], `"traceparent":"00-`) {
		t.Fatalf("EventBridge detail carries no traceparent: %v", bus.details)
	}
	// The SQS message body EventBridge delivers.
	body, err := json.Marshal(ebevent.Event{Version: "0", ID: "5b8e2d1c-0f3a-4e7b-9c6d-1a2b3c4d5e6f", DetailType: env.Type,
		Source: events.Source, Time: env.OccurredAt, Region: "us-east-1", Detail: json.RawMessage(bus.details[0])})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	logger := slog.New(slog.DiscardHandler)
	h := lambdasqs.Handler(events.AsBatch(tr.Worker(events.WorkerFanout, r, logger)), logger)
	resp, err := h(context.Background(), lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "m1", Body: string(body)}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("handler: %+v, %v", resp, err)
	}
	if len(r.envs) != 1 || r.envs[0].Traceparent == "" {
		t.Fatalf("decoded envelope lost its trace context: %+v", r.envs)
	}

	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	req, publish, work := byName["POST /typing"], byName["publish"], byName["fanout process"]
	if !req.SpanContext.IsValid() || !publish.SpanContext.IsValid() || !work.SpanContext.IsValid() {
		t.Fatalf("spans: %v", names(spans))
	}
	if publish.Parent.SpanID() != req.SpanContext.SpanID() || work.Parent.SpanID() != publish.SpanContext.SpanID() {
		t.Errorf("not one chain: request %s, publish parent %s, worker parent %s (publish %s)",
			req.SpanContext.SpanID(), publish.Parent.SpanID(), work.Parent.SpanID(), publish.SpanContext.SpanID())
	}
	if work.SpanContext.TraceID() != req.SpanContext.TraceID() || !work.Parent.IsRemote() {
		t.Errorf("worker span is not in the request's trace")
	}
	if r.ctxs[0].SpanID() != work.SpanContext.SpanID() {
		t.Errorf("the handler did not run in its span")
	}
	if got := attr(work, "messaging.message.id"); got != env.ID {
		t.Errorf("worker span's messaging.message.id = %q", got)
	}
}

// TestMalformedTraceparentIsIgnored: the event is handled, in a new trace,
// and the reason is logged with the event's id.
func TestMalformedTraceparentIsIgnored(t *testing.T) {
	tr, exp := newTracing(t)
	var logs bytes.Buffer
	logger := slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(&logs, nil)})
	r := &recorder{}
	env := typing(t, "0190b6f4-8a40-7000-8000-0000000000e3")
	env.Traceparent = "00-zz"
	errs := events.AsBatch(tr.Worker(events.WorkerPersister, r, logger)).HandleBatch(context.Background(), []events.Envelope{env})
	if errs != nil || len(r.envs) != 1 {
		t.Fatalf("event not handled: %v", errs)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Parent.IsValid() {
		t.Fatalf("want one root span, got %v", names(spans))
	}
	var rec map[string]any
	if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
		t.Fatalf("log: %q: %v", logs.String(), err)
	}
	if rec["event_id"] != env.ID || !strings.Contains(rec["reason"].(string), "traceparent") {
		t.Errorf("log does not say which event and why: %v", rec)
	}
}

// TestMalformedTracestateKeepsTheTraceparent: a bad tracestate is logged
// and dropped; the worker's span is still a child of the traceparent's.
func TestMalformedTracestateKeepsTheTraceparent(t *testing.T) {
	tr, exp := newTracing(t)
	var logs bytes.Buffer
	logger := slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(&logs, nil)})
	r := &recorder{}
	env := typing(t, "0190b6f4-8a40-7000-8000-0000000000e6")
	env.Traceparent, env.Tracestate = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=\n\x01"
	errs := events.AsBatch(tr.Worker(events.WorkerPersister, r, logger)).HandleBatch(context.Background(), []events.Envelope{env})
	if errs != nil || len(r.envs) != 1 {
		t.Fatalf("event not handled: %v", errs)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("worker span left the traceparent's trace: %v", spans)
	}
	if ts := spans[0].Parent.TraceState().String(); ts != "" {
		t.Errorf("malformed tracestate kept: %q", ts)
	}
	var rec map[string]any
	if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
		t.Fatalf("log: %q: %v", logs.String(), err)
	}
	if rec["event_id"] != env.ID || !strings.Contains(rec["reason"].(string), "tracestate") {
		t.Errorf("log does not say which event and why: %v", rec)
	}
}

// TestLogsCarryTraceIDs: a record logged with a span's context names the
// span; one without a span has no such fields.
func TestLogsCarryTraceIDs(t *testing.T) {
	tr, _ := newTracing(t)
	var logs bytes.Buffer
	logger := slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(&logs, nil)}).With("worker", "fanout")
	r := &recorder{}
	events.AsBatch(tr.Worker(events.WorkerFanout, events.HandlerFunc(func(ctx context.Context, e events.Envelope) error {
		logger.InfoContext(ctx, "handled") // the event id comes from the context
		return r.Handle(ctx, e)
	}), logger)).HandleBatch(context.Background(), []events.Envelope{typing(t, "0190b6f4-8a40-7000-8000-0000000000e4")})
	logger.Info("no span")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logs: %q", logs.String())
	}
	var withSpan, without map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &withSpan)
	_ = json.Unmarshal([]byte(lines[1]), &without)
	if withSpan["trace_id"] != r.ctxs[0].TraceID().String() || withSpan["span_id"] != r.ctxs[0].SpanID().String() || withSpan["worker"] != "fanout" ||
		withSpan["event_id"] != "0190b6f4-8a40-7000-8000-0000000000e4" {
		t.Errorf("record with a span: %v", withSpan)
	}
	if _, ok := without["trace_id"]; ok {
		t.Errorf("record without a span has a trace id: %v", without)
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestUnsampledDecisionIsCarried: a publish under an unsampled parent
// stamps its decision (flags 00) on the event, so a worker, whose sampler
// is parent-based, records nothing for it instead of starting a trace.
func TestUnsampledDecisionIsCarried(t *testing.T) {
	tr, exp := newTracing(t)
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 1}, SpanID: trace.SpanID{0x00, 0xf0, 0x67, 1}, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), unsampled)
	bus := &recorder{}
	if err := tr.Publisher(bus).Publish(ctx, typing(t, "0190b6f4-8a40-7000-8000-0000000000e5")); err != nil {
		t.Fatal(err)
	}
	if len(bus.envs) != 1 || !strings.HasPrefix(string(bus.envs[0].Traceparent), "00-"+unsampled.TraceID().String()) ||
		!strings.HasSuffix(string(bus.envs[0].Traceparent), "-00") {
		t.Fatalf("unsampled publish carries %q, want its trace with flags 00", bus.envs[0].Traceparent)
	}
	r := &recorder{}
	errs := events.AsBatch(tr.Worker(events.WorkerPersister, r, slog.New(slog.DiscardHandler))).HandleBatch(context.Background(), bus.envs)
	if errs != nil || len(r.envs) != 1 {
		t.Fatalf("event not handled: %v", errs)
	}
	if r.ctxs[0].IsSampled() || r.ctxs[0].TraceID() != unsampled.TraceID() {
		t.Errorf("worker ran in %v, want the publisher's unsampled trace", r.ctxs[0])
	}
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("spans recorded for an unsampled event: %v", names(spans))
	}
}

// TestGonePostIsNotAnError: API Gateway's 410 GoneException (a stale
// connection, routine) leaves the post span's status unset; a 500 does not.
func TestGonePostIsNotAnError(t *testing.T) {
	tr, exp := newTracing(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/gone") {
			w.Header().Set("X-Amzn-Errortype", "GoneException")
			w.WriteHeader(http.StatusGone)
		} else {
			w.Header().Set("X-Amzn-Errortype", "InternalServerErrorException")
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte(`{"message":"no"}`))
	}))
	defer srv.Close()
	client := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), HTTPClient: srv.Client(), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	p := tr.Poster(client)
	for _, id := range []string{"gone", "broken"} {
		if _, err := p.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String(id), Data: []byte(`{}`)}); err == nil {
			t.Fatalf("%s: post succeeded", id)
		}
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("spans: %v", names(spans))
	}
	gone, broken := spans[0], spans[1]
	if gone.Status.Code != codes.Unset || attr(gone, "parley.post.result") != "gone" {
		t.Errorf("gone post: status %v, result %q", gone.Status, attr(gone, "parley.post.result"))
	}
	if broken.Status.Code != codes.Error || attr(broken, "parley.post.result") != "error" {
		t.Errorf("failed post: status %v, result %q", broken.Status, attr(broken, "parley.post.result"))
	}
}

// TestPanicEndsIngressSpans: a REST or WebSocket route handler that panics
// still ends its span, marked as an error; the panic goes on.
func TestPanicEndsIngressSpans(t *testing.T) {
	tr, exp := newTracing(t)
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("%s: panic %v, want it to go on", name, p)
			}
		}()
		f()
	}
	h := tr.HTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	mustPanic("HTTP", func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil)) })
	ws := tracing.WSRoute(tr, func(context.Context, lambdaevents.APIGatewayWebsocketProxyRequest) (int, error) { panic("boom") })
	mustPanic("WebSocket", func() {
		req := lambdaevents.APIGatewayWebsocketProxyRequest{}
		req.RequestContext.RouteKey = "$default"
		_, _ = ws(context.Background(), req)
	})
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("ended spans: %v", names(spans))
	}
	for _, s := range spans {
		if s.Status.Code != codes.Error || s.EndTime.IsZero() {
			t.Errorf("%s: status %v, ended %v", s.Name, s.Status, s.EndTime)
		}
	}
}

// TestLoggerEventIDIsWrittenOnce: a logger built with With("event_id", …)
// keeps its own; the context's is not added beside it.
func TestLoggerEventIDIsWrittenOnce(t *testing.T) {
	tr, _ := newTracing(t)
	var logs bytes.Buffer
	base := slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(&logs, nil)})
	env := typing(t, "0190b6f4-8a40-7000-8000-0000000000e7")
	events.AsBatch(tr.Worker(events.WorkerFanout, events.HandlerFunc(func(ctx context.Context, e events.Envelope) error {
		base.With("event_id", "from-logger").InfoContext(ctx, "with")
		base.WithGroup("g").InfoContext(ctx, "grouped")
		return nil
	}), base)).HandleBatch(context.Background(), []events.Envelope{env})
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logs: %q", logs.String())
	}
	if n := strings.Count(lines[0], `"event_id"`); n != 1 || !strings.Contains(lines[0], `"event_id":"from-logger"`) {
		t.Errorf("logger's event_id: %d times in %s", n, lines[0])
	}
	var grouped struct{ G map[string]any }
	if err := json.Unmarshal([]byte(lines[1]), &grouped); err != nil || grouped.G["event_id"] != env.ID {
		t.Errorf("grouped logger lost the context's event_id: %s", lines[1])
	}
}

// TestFlushBudget: a Lambda's flush takes at most a second, and ends a
// margin before the invocation's deadline.
func TestFlushBudget(t *testing.T) {
	now := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		left time.Duration // to the deadline; 0: none
		want time.Duration
	}{
		{0, time.Second},
		{time.Minute, time.Second},
		{700 * time.Millisecond, 500 * time.Millisecond},
		{200 * time.Millisecond, 0},
		{-time.Second, 0},
	} {
		var deadline time.Time
		if c.left != 0 {
			deadline = now.Add(c.left)
		}
		if got := tracing.FlushBudget(now, deadline); got != c.want {
			t.Errorf("%v before the deadline: budget %v, want %v", c.left, got, c.want)
		}
	}
}

// TestFlushingABlockedCollector: with a collector that accepts the export
// and never answers, a Lambda invocation still returns, before its
// deadline, and says its spans were not exported.
func TestFlushingABlockedCollector(t *testing.T) {
	release := make(chan struct{})
	received := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	tr, err := tracing.New(context.Background(), tracing.Config{Endpoint: srv.URL + "/v1/traces", Lambda: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	t.Cleanup(func() { close(release) })
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	route := tracing.WSRoute(tr, func(context.Context, lambdaevents.APIGatewayWebsocketProxyRequest) (int, error) { return 200, nil })
	invoke := tracing.Flushing(tr, logger, route)
	// Far more than the flush's bound, and less than the exporter's own
	// default timeout and retries.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := invoke(ctx, lambdaevents.APIGatewayWebsocketProxyRequest{}); err != nil || out != 200 {
		t.Fatalf("invocation: %v, %v", out, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the flush ran until the invocation's deadline")
	}
	select {
	case <-received:
	default:
		t.Fatal("the collector got no export")
	}
	if !strings.Contains(logs.String(), "spans of this invocation not exported") {
		t.Errorf("the lost spans are not logged: %q", logs.String())
	}
	// Closer to its deadline than the margin, an invocation does not even
	// try: it returns at once.
	logs.Reset()
	late, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := invoke(late, lambdaevents.APIGatewayWebsocketProxyRequest{}); err != nil {
		t.Fatal(err)
	}
	if late.Err() != nil || !strings.Contains(logs.String(), "no time left before the invocation's deadline") {
		t.Errorf("a late invocation flushed anyway: %v, %q", late.Err(), logs.String())
	}
}
