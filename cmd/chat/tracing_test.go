package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/tracing"
)

// TestOneTraceAcrossThePipeline runs chat dev's pipeline in-process, on
// the PostgreSQL transport, with spans going to an in-memory exporter, and
// follows one image message: its REST request's trace holds the publish,
// every worker that handles it (persister, fanout, thumbnailer, and the
// notifier through fanout's push request, the recipient being offline)
// and the post to the sender's WebSocket connection.
func TestOneTraceAcrossThePipeline(t *testing.T) {
	e := newEnv(t)
	vars := map[string]string{}
	for _, kv := range e.vars() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := loadConfig(func(k string) string { return vars[k] }, true, true)
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	cfg.Tracing = tracing.Config{Exporter: exp}
	p := parts{api: true, gateway: true, workers: events.Workers(), db: true, bus: true, migrate: true, oneAddr: true, s3: true}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := openApp(ctx, cfg, newLogger(cfg, io.Discard), p)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.listen(p); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		a.Close()
	})
	waitUntil(t, "the API is up", func() bool {
		resp, err := http.Get("http://" + e.http + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	ws := e.dial(1) // the sender's phone; the recipient is offline
	sent := e.sendImage(1, 2, testJPEG(t, 64, 48))
	ws.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == sent.ID })

	want := []string{"publish", "persister process", "fanout process", "thumbnailer process", "notifier process", "PostToConnection"}
	var trace tracetest.SpanStubs
	// The persister's span of the message can end after its span of the
	// ThumbnailReady in the same trace: wait for the spans of the
	// message's own event too, not only for every name.
	own := func(s tracetest.SpanStub) bool {
		return strings.HasSuffix(s.Name, " process") && attrOf(s, "messaging.message.id") == sent.ID
	}
	waitUntil(t, "the message's trace is complete", func() bool {
		trace = messageTrace(exp.GetSpans())
		for _, w := range want {
			if !slices.ContainsFunc(trace, func(s tracetest.SpanStub) bool { return s.Name == w }) {
				return false
			}
		}
		for _, w := range []string{"persister process", "fanout process", "thumbnailer process"} {
			if !slices.ContainsFunc(trace, func(s tracetest.SpanStub) bool { return s.Name == w && own(s) }) {
				return false
			}
		}
		return true
	})
	// The workers' spans are of this message's event (the thumbnailer's
	// ThumbnailReady is handled in the same trace, too).
	var of []string
	for _, s := range trace {
		if own(s) {
			of = append(of, s.Name)
			if !s.Parent.IsValid() || !s.Parent.IsRemote() {
				t.Errorf("%s: parent %v is not the remote publish span", s.Name, s.Parent)
			}
		}
	}
	if len(of) < 3 {
		t.Errorf("spans of the message's own event: %v, want persister, fanout and thumbnailer", of)
	}
	notifier := trace[slices.IndexFunc(trace, func(s tracetest.SpanStub) bool { return s.Name == "notifier process" })]
	if attrOf(notifier, "parley.event.type") != events.TypePushRequested {
		t.Errorf("notifier span is of %q", attrOf(notifier, "parley.event.type"))
	}
}

// messageTrace is the trace of the POST /messages request among spans.
func messageTrace(spans tracetest.SpanStubs) tracetest.SpanStubs {
	i := slices.IndexFunc(spans, func(s tracetest.SpanStub) bool { return s.Name == "POST /api/v1/chat/messages" })
	if i < 0 {
		return nil
	}
	id := spans[i].SpanContext.TraceID()
	var out tracetest.SpanStubs
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}
