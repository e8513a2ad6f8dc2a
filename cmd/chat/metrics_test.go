package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/parleychat/parley/events"
)

// scrape reads the metrics of the process listening on e.metrics.
func (e *env) scrape() map[string]*dto.MetricFamily {
	e.t.Helper()
	resp, err := http.Get("http://" + e.metrics + "/metrics")
	if err != nil {
		e.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		e.t.Fatalf("scrape: parse: %v", err)
	}
	return fams
}

// value is the sample of family name whose labels include want (a
// histogram's sample count); ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsMoveWithTraffic runs chat dev, sends over WebSocket and REST,
// and checks the main series of /metrics moved, then the same queues on
// GET /status and chat status.
func TestMetricsMoveWithTraffic(t *testing.T) {
	e := newEnv(t)
	e.extra = append(e.extra, "CHAT_METRICS_ADDR="+e.metrics) // the last value wins
	e.waitHTTP(e.start("dev"))

	before := e.scrape()
	if _, ok := value(before, "go_goroutines", nil); !ok {
		t.Fatal("no Go runtime metrics")
	}
	if _, ok := value(before, "process_resident_memory_bytes", nil); !ok {
		t.Fatal("no process metrics")
	}

	a, b := e.dial(1), e.dial(2)
	a.send(map[string]any{"action": "sendMessage", "data": map[string]any{"recipientId": 2, "contentType": "text", "textContent": "over ws", "clientMessageId": "metrics-ws-1"}})
	ack := a.expect("acknowledgment", nil)
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == ack["messageId"] })
	rest := e.send(1, 2, "over rest")
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == rest.ID })
	if code := e.call(1, "GET", "/conversations/not-a-uuid/messages", nil, nil); code != 400 {
		t.Fatalf("bad conversation id: status %d", code)
	}

	// Workers acknowledge after the frames went out: wait for the counts.
	var fams map[string]*dto.MetricFamily
	waitUntil(t, "the persister and fanout counted both messages", func() bool {
		fams = e.scrape()
		p, _ := value(fams, "parley_worker_events_total", map[string]string{"worker": events.WorkerPersister, "result": "handled"})
		f, _ := value(fams, "parley_worker_events_total", map[string]string{"worker": events.WorkerFanout, "result": "handled"})
		return p >= 2 && f >= 2
	})
	atLeast := func(name string, labels map[string]string, min float64) {
		t.Helper()
		v, ok := value(fams, name, labels)
		if !ok || v < min {
			t.Errorf("%s%v = %v (present %v), want at least %v", name, labels, v, ok, min)
		}
	}
	atLeast("parley_worker_batch_duration_seconds", map[string]string{"worker": events.WorkerPersister}, 1)
	atLeast("parley_http_requests_total", map[string]string{"route": "POST /api/v1/chat/messages", "code": "200"}, 1)
	atLeast("parley_http_requests_total", map[string]string{"route": "GET /api/v1/chat/conversations/{id}/messages", "code": "400"}, 1)
	atLeast("parley_http_request_duration_seconds", map[string]string{"route": "POST /api/v1/chat/messages"}, 1)
	atLeast("parley_publish_duration_seconds", nil, 2)
	atLeast("parley_publish_group_events", nil, 1)
	atLeast("parley_events_published_total", map[string]string{"type": events.TypeMessageSent}, 2)
	atLeast("parley_ws_connections", nil, 2)
	atLeast("parley_ws_frames_received_total", nil, 1)
	// Two greetings, an acknowledgment, two newMessages.
	atLeast("parley_ws_frames_sent_total", nil, 5)
	atLeast("parley_ws_posts_total", map[string]string{"result": "ok"}, 4)
	for _, w := range events.Workers() {
		atLeast("parley_queue_consumers", map[string]string{"worker": w}, 1)
		if _, ok := value(fams, "parley_queue_depth", map[string]string{"worker": w}); !ok {
			t.Errorf("no parley_queue_depth for %s", w)
		}
		if _, ok := value(fams, "parley_queue_oldest_event_age_seconds", map[string]string{"worker": w}); !ok {
			t.Errorf("no parley_queue_oldest_event_age_seconds for %s", w)
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && strings.Contains(l.GetValue(), "not-a-uuid") {
					t.Errorf("%s has a raw path in its route label: %q", name, l.GetValue())
				}
			}
		}
	}
	pub := func(fams map[string]*dto.MetricFamily) float64 {
		v, _ := value(fams, "parley_publish_duration_seconds", nil)
		return v
	}
	if pub(fams) <= pub(before) {
		t.Errorf("publish count did not move: %v then %v", pub(before), pub(fams))
	}

	// GET /status: the same queues as JSON.
	resp, err := http.Get("http://" + e.metrics + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Workers []struct {
			Worker      string   `json:"worker"`
			Depth       int64    `json:"depth"`
			OldestAge   *float64 `json:"oldest_age_seconds"`
			DeadLetters int64    `json:"dead_letters"`
			Consumers   *int     `json:"consumers"`
		} `json:"workers"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /status: %d %v", resp.StatusCode, err)
	}
	if len(st.Workers) != len(events.Workers()) {
		t.Fatalf("GET /status: %d workers, want %d: %+v", len(st.Workers), len(events.Workers()), st.Workers)
	}
	for _, w := range st.Workers {
		if w.OldestAge == nil || w.Consumers == nil || *w.Consumers < 1 {
			t.Errorf("GET /status: %s: oldest age %v, consumers %v", w.Worker, w.OldestAge, w.Consumers)
		}
	}

	// chat status: a table with every worker and its consumer.
	cmd := exec.Command(chatBin, "status")
	cmd.Env = e.vars()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chat status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1+len(events.Workers()) || !strings.HasPrefix(lines[0], "WORKER") {
		t.Fatalf("chat status:\n%s", out)
	}
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		// WORKER DEPTH OLDEST DEAD-LETTERS CONSUMERS
		f := strings.Fields(l)
		if len(f) != 5 || f[4] != "1" {
			t.Errorf("chat status line %q: want 5 columns, 1 consumer", l)
			continue
		}
		seen[f[0]] = true
	}
	for _, w := range events.Workers() {
		if !seen[w] {
			t.Errorf("chat status shows no %s:\n%s", w, out)
		}
	}
	t.Logf("chat status:\n%s", out)
}
