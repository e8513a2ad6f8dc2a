// Package tracing follows one event through the chat with OpenTelemetry:
// ingress (REST, WebSocket routes), its publish, every worker that handles
// it and fanout's posts to connections. The trace context crosses the bus
// inside the event envelope (events.Envelope.Traceparent), so the same
// trace spans processes and Lambdas on either transport.
//
// Tracing is off unless an OTLP endpoint is configured. Off, there is no
// *Tracing (nil), and every wrapper returns what it was given: nothing is
// added to the event path.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer, as OpenTelemetry asks libraries to.
const instrumentation = "github.com/parleychat/parley"

// defaultServiceName is service.name unless OTEL_SERVICE_NAME says otherwise.
const defaultServiceName = "parley"

// Config says where spans go.
type Config struct {
	// Endpoint is the OTLP/HTTP traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// as given, else OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces". Empty: off.
	Endpoint string
	// Exporter, when set, receives every span as it ends instead of an
	// OTLP endpoint (tests; an exporter running in-process).
	Exporter sdktrace.SpanExporter
	// Lambda: each invocation flushes its spans before it returns, so an
	// export must fail fast rather than retry (see flushTimeout).
	Lambda bool
}

// A Lambda's export gets at most flushTimeout (one attempt, no retries),
// and ends flushMargin before the invocation's deadline at the latest: a
// collector that is down or slow costs the spans, never the invocation.
const (
	flushTimeout = time.Second
	flushMargin  = 200 * time.Millisecond
)

// ConfigFromEnv reads the standard OpenTelemetry variables (other OTEL_*
// variables, such as OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER and
// OTEL_SERVICE_NAME, are read by the SDK itself). OTEL_SDK_DISABLED=true
// turns tracing off whatever the endpoint.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return Config{}, nil
	}
	name, raw := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if raw == "" {
		name, raw = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
		if raw == "" {
			return Config{}, nil
		}
		// The general endpoint is a base: the signal's path is added.
		raw = strings.TrimSuffix(raw, "/") + "/v1/traces"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Config{}, fmt.Errorf("%s: %q is not an http(s) URL", name, raw)
	}
	return Config{Endpoint: raw}, nil
}

// On reports whether c exports spans.
func (c Config) On() bool { return c.Endpoint != "" || c.Exporter != nil }

// Tracing is the tracer of one process. A nil *Tracing is tracing off: its
// wrappers return their argument and Shutdown does nothing.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TraceContext
}

// New starts tracing as c says, or returns nil when c is off. The sampler
// is the SDK's (OTEL_TRACES_SAMPLER; default: parent-based, always on).
func New(ctx context.Context, c Config) (*Tracing, error) {
	if !c.On() {
		return nil, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", defaultServiceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if c.Exporter != nil {
		opts = append(opts, sdktrace.WithSyncer(c.Exporter))
	} else {
		eopts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint)}
		var bopts []sdktrace.BatchSpanProcessorOption
		if c.Lambda {
			eopts = append(eopts, otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}), otlptracehttp.WithTimeout(flushTimeout))
			bopts = append(bopts, sdktrace.WithExportTimeout(flushTimeout))
		}
		exp, err := otlptracehttp.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("OTLP exporter for %s: %w", c.Endpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp, bopts...))
	}
	p := sdktrace.NewTracerProvider(opts...)
	return &Tracing{provider: p, tracer: p.Tracer(instrumentation)}, nil
}

// Flush exports the spans ended so far: a Lambda calls it before its
// invocation returns, as its environment may be frozen right after.
func (t *Tracing) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.ForceFlush(ctx); err != nil {
		return fmt.Errorf("flush spans: %w", err)
	}
	return nil
}

// Shutdown exports what is left and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop tracing: %w", err)
	}
	return nil
}

// end ends span with err's outcome.
func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// errPanic is recorded on the spans of a handler that panicked.
var errPanic = errors.New("handler panicked")

// Flushing wraps a Lambda handler to export its invocation's spans before
// it returns: the environment may be frozen, or never thawed, right after.
// The flush is bounded (flushBudget); a failed or cut export is logged and
// costs only the spans.
func Flushing[Req, Resp any](t *Tracing, logger *slog.Logger, f func(context.Context, Req) (Resp, error)) func(context.Context, Req) (Resp, error) {
	if t == nil {
		return f
	}
	return func(ctx context.Context, req Req) (Resp, error) {
		out, err := f(ctx, req)
		deadline, _ := ctx.Deadline()
		budget := flushBudget(time.Now(), deadline)
		if budget <= 0 {
			logger.WarnContext(ctx, "spans of this invocation not exported", "err", "no time left before the invocation's deadline")
			return out, err
		}
		// Not cancelled with the invocation's context: its spans are
		// worth exporting even when the handler gave up.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
		defer cancel()
		if ferr := t.Flush(fctx); ferr != nil {
			logger.WarnContext(ctx, "spans of this invocation not exported", "err", ferr)
		}
		return out, err
	}
}

// flushBudget is how long a flush at now may take: flushTimeout, cut to
// end flushMargin before deadline (zero: no deadline).
func flushBudget(now, deadline time.Time) time.Duration {
	budget := flushTimeout
	if !deadline.IsZero() {
		budget = min(budget, deadline.Sub(now)-flushMargin)
	}
	return max(budget, 0)
}
