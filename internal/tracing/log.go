package tracing

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// LogHandler adds the trace_id and span_id of the record's context to
// every record logged with one (slog's ...Context methods), so a log line
// leads to its trace, and the event_id of the event a worker is handling
// in that context, unless the record or the logger (slog.Logger.With)
// names one itself.
type LogHandler struct {
	slog.Handler
	// hasEventID: WithAttrs was given an event_id in the current group, so
	// the context's would write the key twice.
	hasEventID bool
}

func (h LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if id, ok := ctx.Value(eventIDKey{}).(string); ok && !h.hasEventID && !hasAttr(r, "event_id") {
		r.AddAttrs(slog.String("event_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// eventIDKey carries the id of the event a worker's span is for.
type eventIDKey struct{}

func withEventID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, eventIDKey{}, id)
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

func (h LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	has := h.hasEventID
	for _, a := range attrs {
		has = has || a.Key == "event_id"
	}
	return LogHandler{Handler: h.Handler.WithAttrs(attrs), hasEventID: has}
}

// WithGroup opens a group: the context's event_id would go inside it,
// beside none the logger was given so far.
func (h LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return LogHandler{Handler: h.Handler.WithGroup(name)}
}
