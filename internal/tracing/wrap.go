package tracing

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/metrics"
)

// Span names and attributes (README.md's "Traces" lists the same).
const (
	spanPublish = "publish"
	spanPost    = "PostToConnection"
	// A worker's span is "<worker> process"; a REST request's
	// "<METHOD> <route pattern>"; a WebSocket route's "WebSocket <route key>".
	spanProcessSuffix = " process"
	spanWSPrefix      = "WebSocket "

	attrSystem       = attribute.Key("messaging.system")
	attrOperation    = attribute.Key("messaging.operation.type")
	attrDestination  = attribute.Key("messaging.destination.name")
	attrMessageID    = attribute.Key("messaging.message.id")
	attrBatchCount   = attribute.Key("messaging.batch.message_count")
	attrEventType    = attribute.Key("parley.event.type")
	attrConnectionID = attribute.Key("parley.connection_id")
	attrPostResult   = attribute.Key("parley.post.result")
	attrMethod       = attribute.Key("http.request.method")
	attrRoute        = attribute.Key("http.route")
	attrStatus       = attribute.Key("http.response.status_code")
	attrWSRoute      = attribute.Key("parley.ws.route")

	systemName = "parley"
)

// envCarrier lets the W3C propagator read and write an envelope's fields.
type envCarrier struct{ e *events.Envelope }

func (c envCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return string(c.e.Traceparent)
	case "tracestate":
		return string(c.e.Tracestate)
	}
	return ""
}

func (c envCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.e.Traceparent = events.TraceField(value)
	case "tracestate":
		c.e.Tracestate = events.TraceField(value)
	}
}

func (c envCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// Inject writes ctx's span into e whenever it has one, sampled or not:
// an unsampled decision (flags 00) must travel too, or every worker would
// sample afresh and start a trace of its own. Without a span it clears e's
// trace context.
func (t *Tracing) Inject(ctx context.Context, e *events.Envelope) {
	e.Traceparent, e.Tracestate = "", ""
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.prop.Inject(ctx, envCarrier{e})
	}
}

// Extract returns ctx with e's trace context as the remote parent, and the
// reason e's trace context is malformed, if it is. A malformed traceparent
// is ignored (ctx is returned as it was); a malformed tracestate is dropped
// alone, as it costs only vendors' hints: the traceparent still joins the
// trace.
func (t *Tracing) Extract(ctx context.Context, e events.Envelope) (context.Context, error) {
	err := e.TraceError()
	if err != nil {
		if e.Traceparent == "" || (events.Envelope{Traceparent: e.Traceparent}).TraceError() != nil {
			return ctx, err
		}
		e.Tracestate = ""
	}
	if e.Traceparent == "" {
		return ctx, nil
	}
	return t.prop.Extract(ctx, envCarrier{&e}), err
}

// Publisher gives each publish a span ("publish", a child of the caller's
// span) and stamps it on the published envelopes. A publisher that claims
// while publishing (chat.ClaimPublisher) keeps doing so.
func (t *Tracing) Publisher(p events.Publisher) events.Publisher {
	if t == nil {
		return p
	}
	tp := tracedPublisher{t, p}
	if c, ok := p.(claimPublisher); ok {
		return tracedClaimPublisher{tp, c}
	}
	return tp
}

type claimPublisher interface {
	PublishClaimed(ctx context.Context, claim db.InsertMessageRequestParams, env events.Envelope) (bool, error)
}

type tracedPublisher struct {
	t *Tracing
	p events.Publisher
}

func (p tracedPublisher) start(ctx context.Context, envs []events.Envelope) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{attrSystem.String(systemName), attrOperation.String("send"), attrBatchCount.Int(len(envs))}
	if len(envs) == 1 {
		attrs = append(attrs, attrMessageID.String(envs[0].ID), attrEventType.String(envs[0].Type))
	}
	return p.t.tracer.Start(ctx, spanPublish, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// Publish stamps copies (the caller's envelopes stay as they were), all
// but those already stamped with the event that caused them
// (events.Caused) or, replayed, with their first publish.
func (p tracedPublisher) Publish(ctx context.Context, envs ...events.Envelope) error {
	ctx, span := p.start(ctx, envs)
	stamped := make([]events.Envelope, len(envs))
	for i, e := range envs {
		if e.Traceparent == "" {
			p.t.Inject(ctx, &e)
		}
		stamped[i] = e
	}
	err := p.p.Publish(ctx, stamped...)
	end(span, err)
	return err
}

type tracedClaimPublisher struct {
	tracedPublisher
	c claimPublisher
}

func (p tracedClaimPublisher) PublishClaimed(ctx context.Context, claim db.InsertMessageRequestParams, env events.Envelope) (bool, error) {
	ctx, span := p.start(ctx, []events.Envelope{env})
	if env.Traceparent == "" {
		p.t.Inject(ctx, &env)
	}
	claimed, err := p.c.PublishClaimed(ctx, claim, env)
	span.SetAttributes(attribute.Bool("parley.claimed", claimed))
	end(span, err)
	return claimed, err
}

// Worker gives every event a worker handles a span ("<worker> process"),
// a child of the span that published it. Work a batch handler does for one
// event (a post, a publish) finds that event's span through
// events.EventContext. A malformed trace context is logged and ignored.
func (t *Tracing) Worker(name string, h events.Handler, logger *slog.Logger) events.Handler {
	if t == nil {
		return h
	}
	w := &worker{t: t, name: name, h: h, logger: logger}
	if b, ok := h.(events.BatchHandler); ok {
		w.b = b
	}
	if e, ok := h.(events.EarlyHandler); ok {
		return earlyWorker{w, e}
	}
	return w
}

type worker struct {
	t      *Tracing
	name   string
	h      events.Handler
	b      events.BatchHandler // nil: h handles one event at a time
	logger *slog.Logger
}

func (w *worker) start(ctx context.Context, e events.Envelope, batch int) (context.Context, trace.Span) {
	parent, err := w.t.Extract(ctx, e)
	if err != nil {
		w.logger.WarnContext(ctx, "ignoring the event's trace context", "event_id", e.ID, "event_type", e.Type, "reason", err)
	}
	return w.t.tracer.Start(withEventID(parent, e.ID), w.name+spanProcessSuffix, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attrSystem.String(systemName), attrOperation.String("process"), attrDestination.String(w.name),
		attrMessageID.String(e.ID), attrEventType.String(e.Type), attrBatchCount.Int(batch)))
}

func (w *worker) Handle(ctx context.Context, e events.Envelope) (err error) {
	ctx, span := w.start(ctx, e, 1)
	defer endOnPanic(span)
	err = w.h.Handle(ctx, e)
	end(span, err)
	return err
}

func (w *worker) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	if w.b == nil {
		// One span per call of Handle, each in the context it gets.
		return events.AsBatch(events.HandlerFunc(w.Handle)).HandleBatch(ctx, envs)
	}
	spans := make(map[string]trace.Span, len(envs))
	ended := make([]trace.Span, len(envs))
	for i, e := range envs {
		_, span := w.start(ctx, e, len(envs))
		spans[e.ID], ended[i] = span, span
	}
	defer func() {
		if p := recover(); p != nil {
			for _, s := range ended {
				markPanic(s)
			}
			panic(p)
		}
	}()
	errs := w.b.HandleBatch(events.WithEventTracer(ctx, batchTracer{w, spans}), envs)
	for i, s := range ended {
		var err error
		if errs != nil {
			err = errs[i]
		}
		end(s, err)
	}
	return errs
}

// batchTracer finds a batch's events' spans for the handler's work.
type batchTracer struct {
	w     *worker
	spans map[string]trace.Span
}

func (b batchTracer) EventContext(ctx context.Context, e events.Envelope) context.Context {
	if s, ok := b.spans[e.ID]; ok {
		return trace.ContextWithSpan(withEventID(ctx, e.ID), s)
	}
	return remoteTracer{b.w}.EventContext(ctx, e)
}

func (b batchTracer) Caused(ctx context.Context, cause, derived events.Envelope) events.Envelope {
	b.w.t.Inject(b.EventContext(ctx, cause), &derived)
	return derived
}

// remoteTracer serves work done for events outside a span of their own
// (fanout's fast path): its publisher's span is the remote parent.
type remoteTracer struct{ w *worker }

func (r remoteTracer) EventContext(ctx context.Context, e events.Envelope) context.Context {
	parent, _ := r.w.t.Extract(ctx, e) // a malformed one is logged with its queued copy
	return parent
}

func (r remoteTracer) Caused(ctx context.Context, cause, derived events.Envelope) events.Envelope {
	r.w.t.Inject(r.EventContext(ctx, cause), &derived)
	return derived
}

// endOnPanic, deferred, marks and ends span when its handler panics; the
// panic goes on (events.Invoke turns it into an error, net/http and the
// Lambda runtime answer it with a failure).
func endOnPanic(span trace.Span) {
	if !span.IsRecording() {
		return
	}
	if p := recover(); p != nil {
		markPanic(span)
		panic(p)
	}
}

func markPanic(span trace.Span) {
	span.SetStatus(codes.Error, errPanic.Error())
	span.End()
}

type earlyWorker struct {
	*worker
	e events.EarlyHandler
}

// HandleEarly starts no span of its own (it returns before its posts are
// made): the posts it makes join each event's publisher span.
func (w earlyWorker) HandleEarly(ctx context.Context, envs []events.Envelope) {
	w.e.HandleEarly(events.WithEventTracer(ctx, remoteTracer{w.worker}), envs)
}

// Poster is what fanout posts through (fanout.Poster).
type Poster = metrics.Poster

type closer interface {
	DeleteConnection(ctx context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
}

// Poster gives each post to a connection a span (PostToConnection), a
// child of the span of the event it carries: the Management API call on
// AWS, the local gateway's post in-process or over its loopback listener.
func (t *Tracing) Poster(p Poster) Poster {
	if t == nil {
		return p
	}
	tp := tracedPoster{t, p}
	if c, ok := p.(closer); ok {
		return tracedClosingPoster{tp, c}
	}
	return tp
}

type tracedPoster struct {
	t *Tracing
	p Poster
}

func (p tracedPoster) PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	ctx, span := p.t.tracer.Start(ctx, spanPost, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrConnectionID.String(aws.ToString(in.ConnectionId))))
	out, err := p.p.PostToConnection(ctx, in, optFns...)
	result := metrics.PostResult(err)
	span.SetAttributes(attrPostResult.String(result))
	if result == metrics.PostGone {
		// A connection that went away is routine (fanout drops it), not a
		// failed post: the attribute says so, the status stays unset.
		span.End()
	} else {
		end(span, err)
	}
	return out, err
}

type tracedClosingPoster struct {
	tracedPoster
	closer
}

// HTTP gives each request a server span named after its method and the
// ServeMux pattern that served it. It does not continue a trace the client
// sends: callers are mobile apps, whose sampling decision is not ours to
// take.
func (t *Tracing) HTTP(next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := t.tracer.Start(r.Context(), r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attrMethod.String(r.Method)))
		defer endOnPanic(span)
		sw := &metrics.StatusWriter{ResponseWriter: w}
		inner := r.WithContext(ctx)
		next.ServeHTTP(sw, inner)
		// The mux set the pattern on the request it was given; an outer
		// middleware (metrics) reads it from its own.
		r.Pattern = inner.Pattern
		if r.Pattern != "" {
			name := r.Pattern
			if !strings.Contains(name, " ") { // a pattern without its method
				name = r.Method + " " + name
			}
			span.SetName(name)
			span.SetAttributes(attrRoute.String(r.Pattern))
		}
		code := sw.Status()
		span.SetAttributes(attrStatus.Int(code))
		if code >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		span.End()
	})
}

// WSRoute gives each call of a WebSocket route handler ($connect,
// $disconnect, $default) a server span, "WebSocket <route key>".
func WSRoute[R any](t *Tracing, route func(context.Context, lambdaevents.APIGatewayWebsocketProxyRequest) (R, error)) func(context.Context, lambdaevents.APIGatewayWebsocketProxyRequest) (R, error) {
	if t == nil {
		return route
	}
	return func(ctx context.Context, req lambdaevents.APIGatewayWebsocketProxyRequest) (R, error) {
		key := req.RequestContext.RouteKey
		ctx, span := t.tracer.Start(ctx, spanWSPrefix+key, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attrWSRoute.String(key), attrConnectionID.String(req.RequestContext.ConnectionID)))
		defer endOnPanic(span)
		out, err := route(ctx, req)
		end(span, err)
		return out, err
	}
}
