package events

import (
	"context"
	"encoding/json"
	"fmt"
)

// W3C Trace Context bounds: a version-00 traceparent is exactly this long,
// and a tracestate holds at most 32 members in at most 512 characters.
const (
	traceparentLen    = 55
	maxTracestateLen  = 512
	maxTracestateList = 32
)

// TraceField is a trace context field of the envelope. It decodes a JSON
// string as it is and any other JSON value (a number, an object, null) as
// absent: the trace context comes from whoever published the event, and a
// wrong type in it must not fail the envelope's decoding.
type TraceField string

func (f *TraceField) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		*f = ""
		return nil
	}
	*f = TraceField(s)
	return nil
}

// TraceError says why the envelope's trace context is unusable, or returns
// nil when it is absent or well formed. A consumer that gets an error logs
// it and handles the event without its trace: the trace is a diagnostic
// aid, never a reason to lose an event.
func (e Envelope) TraceError() error {
	if e.Traceparent == "" {
		if e.Tracestate != "" {
			return fmt.Errorf("tracestate without traceparent")
		}
		return nil
	}
	if err := checkTraceparent(string(e.Traceparent)); err != nil {
		return fmt.Errorf("traceparent %.60q: %w", e.Traceparent, err)
	}
	if err := checkTracestate(string(e.Tracestate)); err != nil {
		return fmt.Errorf("tracestate: %w", err)
	}
	return nil
}

// checkTraceparent accepts version 00's "00-<32 hex>-<16 hex>-<2 hex>"
// with non-zero ids (lowercase hex, as the specification requires).
func checkTraceparent(s string) error {
	if len(s) != traceparentLen {
		return fmt.Errorf("length %d, want %d", len(s), traceparentLen)
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return fmt.Errorf("want 00-TRACEID-SPANID-FLAGS")
	}
	if s[:2] != "00" {
		return fmt.Errorf("version %q, want 00", s[:2])
	}
	for _, f := range []struct{ name, v string }{{"trace id", s[3:35]}, {"span id", s[36:52]}, {"flags", s[53:]}} {
		zero := true
		for i := 0; i < len(f.v); i++ {
			c := f.v[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return fmt.Errorf("%s is not lowercase hex", f.name)
			}
			zero = zero && c == '0'
		}
		if zero && f.name != "flags" {
			return fmt.Errorf("%s is all zeros", f.name)
		}
	}
	return nil
}

// checkTracestate checks only the bounds and the alphabet; members are the
// tracing vendors' business.
func checkTracestate(s string) error {
	if len(s) > maxTracestateLen {
		return fmt.Errorf("%d characters, at most %d", len(s), maxTracestateLen)
	}
	members := 1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("character %q at %d is not printable ASCII", c, i)
		}
		if c == ',' {
			members++
		}
	}
	if members > maxTracestateList {
		return fmt.Errorf("%d members, at most %d", members, maxTracestateList)
	}
	return nil
}

type eventTracerKey struct{}

// EventTracer is what a tracing wrapper of a batch handler puts in the
// batch's context, so that work the handler does for one event is traced
// under that event's span rather than the batch's.
type EventTracer interface {
	// EventContext returns the context for work done for e (a post).
	EventContext(ctx context.Context, e Envelope) context.Context
	// Caused returns derived, an event published because of cause (a
	// receipt, a push request), stamped with cause's span as its parent.
	Caused(ctx context.Context, cause, derived Envelope) Envelope
}

// WithEventTracer returns ctx carrying t.
func WithEventTracer(ctx context.Context, t EventTracer) context.Context {
	return context.WithValue(ctx, eventTracerKey{}, t)
}

// EventContext returns the context for work done for e within a batch whose
// context is ctx: ctx itself unless a tracing wrapper set an EventTracer
// (tracing off costs one lookup and no allocation).
func EventContext(ctx context.Context, e Envelope) context.Context {
	if t, ok := ctx.Value(eventTracerKey{}).(EventTracer); ok {
		return t.EventContext(ctx, e)
	}
	return ctx
}

// Caused returns derived stamped as published because of cause, when a
// tracing wrapper set an EventTracer; otherwise derived as it was. It takes
// and returns values, not a pointer: a pointer to a caller's local would
// escape through the interface call, one allocation per event even with
// tracing off.
func Caused(ctx context.Context, cause, derived Envelope) Envelope {
	if t, ok := ctx.Value(eventTracerKey{}).(EventTracer); ok {
		return t.Caused(ctx, cause, derived)
	}
	return derived
}
