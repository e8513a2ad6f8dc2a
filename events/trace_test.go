package events

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestTraceError(t *testing.T) {
	ok := map[string][2]string{
		"none":            {"", ""},
		"sampled":         {goodTraceparent, ""},
		"unsampled":       {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		"with tracestate": {goodTraceparent, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
	}
	for name, c := range ok {
		if err := (Envelope{Traceparent: TraceField(c[0]), Tracestate: TraceField(c[1])}).TraceError(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string][2]string{
		"short":            {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", ""},
		"uppercase":        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		"zero trace id":    {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		"zero span id":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""},
		"version ff":       {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		"dashes misplaced": {"00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01", ""},
		"state alone":      {"", "rojo=1"},
		"state too long":   {goodTraceparent, "a=" + strings.Repeat("x", 600)},
		"state control":    {goodTraceparent, "a=\n"},
		"state members":    {goodTraceparent, strings.Repeat("a=1,", 40) + "a=1"},
	}
	for name, c := range bad {
		if err := (Envelope{Traceparent: TraceField(c[0]), Tracestate: TraceField(c[1])}).TraceError(); err == nil {
			t.Errorf("%s: accepted %q %q", name, c[0], c[1])
		}
	}
}

// A malformed trace context is the trace's problem, never the event's: the
// envelope still decodes and validates.
func TestMalformedTraceDoesNotFailTheEvent(t *testing.T) {
	const head = `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z","actor_id":1,"data":{},`
	b := head + `"traceparent":"garbage"}`
	e, err := Decode([]byte(b))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if e.TraceError() == nil {
		t.Fatal("garbage traceparent not reported")
	}
	// A field that is not a JSON string is dropped, never the event; its
	// neighbour, if a string, is kept.
	for name, c := range map[string]struct {
		fields        string
		parent, state TraceField
	}{
		"traceparent number":  {`"traceparent":123`, "", ""},
		"traceparent object":  {`"traceparent":{"a":1}`, "", ""},
		"traceparent array":   {`"traceparent":["00"]`, "", ""},
		"traceparent true":    {`"traceparent":true`, "", ""},
		"traceparent null":    {`"traceparent":null`, "", ""},
		"tracestate number":   {`"traceparent":"` + goodTraceparent + `","tracestate":7`, goodTraceparent, ""},
		"tracestate object":   {`"traceparent":"` + goodTraceparent + `","tracestate":{"rojo":1}`, goodTraceparent, ""},
		"both wrong":          {`"traceparent":1.5,"tracestate":[]`, "", ""},
		"string with escapes": {`"traceparent":"` + goodTraceparent + `","tracestate":"a=\u0031"`, goodTraceparent, "a=1"},
	} {
		e, err := Decode([]byte(head + c.fields + `}`))
		if err != nil {
			t.Errorf("%s: Decode: %v", name, err)
			continue
		}
		if e.Traceparent != c.parent || e.Tracestate != c.state {
			t.Errorf("%s: traceparent %q tracestate %q, want %q %q", name, e.Traceparent, e.Tracestate, c.parent, c.state)
		}
		if err := e.TraceError(); err != nil {
			t.Errorf("%s: what was kept is not usable: %v", name, err)
		}
	}
}

// TestGoldenTracedEnvelope pins the trace fields' wire format; without a
// trace they are omitted (the other golden files).
func TestGoldenTracedEnvelope(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 123456000, time.UTC)
	env, err := New("0190b6f4-8a40-7000-8000-0000000000ee", at, 1, "0190b6f4-8a3e-7c2d-9f10-1234567890ab",
		goldenPayloads()["message_sent_v1"])
	if err != nil {
		t.Fatal(err)
	}
	env.Traceparent, env.Tracestate = goodTraceparent, "rojo=00f067aa0ba902b7"
	got, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "message_sent_traced_v1.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test ./events -update to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("wire format changed:\n got: %s\nwant: %s", got, want)
	}
	back, err := Decode(want)
	if err != nil || back.Traceparent != env.Traceparent || back.Tracestate != env.Tracestate {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	plain, err := Envelope{ID: env.ID}.Encode()
	if err != nil || bytes.Contains(plain, []byte("trace")) {
		t.Fatalf("trace fields not omitted: %s %v", plain, err)
	}
}

type tracedKey struct{}

type recordingTracer struct{ caused []string }

func (r *recordingTracer) EventContext(ctx context.Context, e Envelope) context.Context {
	return context.WithValue(ctx, tracedKey{}, e.ID)
}

func (r *recordingTracer) Caused(_ context.Context, cause, derived Envelope) Envelope {
	r.caused = append(r.caused, cause.ID+">"+derived.ID)
	derived.Traceparent = "stamped"
	return derived
}

func TestEventContext(t *testing.T) {
	ctx := context.Background()
	e := Envelope{ID: "a"}
	if EventContext(ctx, e) != ctx {
		t.Fatal("without a tracer the context changed")
	}
	d := Envelope{ID: "b"}
	if got := Caused(ctx, e, d); got.ID != "b" || got.Traceparent != "" {
		t.Fatalf("no tracer, Caused changed the event: %+v", got)
	}
	// The derived event is a local of the loop that builds it, as in
	// fanout's receipts: stamping it must not move it to the heap.
	if allocs := testing.AllocsPerRun(100, func() {
		_ = EventContext(ctx, e)
		local := Envelope{ID: "c"}
		local = Caused(ctx, e, local)
		if local.ID != "c" {
			t.Fatal("lost the event")
		}
	}); allocs != 0 {
		t.Errorf("tracing off: %v allocations per event", allocs)
	}
	r := &recordingTracer{}
	tctx := WithEventTracer(ctx, r)
	if got := EventContext(tctx, e).Value(tracedKey{}); got != "a" {
		t.Errorf("EventContext did not reach the tracer: %v", got)
	}
	if got := Caused(tctx, e, d); got.Traceparent != "stamped" {
		t.Errorf("Caused did not return the stamped event: %+v", got)
	}
	if len(r.caused) != 1 || r.caused[0] != "a>b" {
		t.Errorf("Caused: %v", r.caused)
	}
}
