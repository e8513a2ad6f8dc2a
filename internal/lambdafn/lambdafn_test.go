package lambdafn

import (
	"testing"

	"github.com/parleychat/parley/events"
)

func TestAll(t *testing.T) {
	seen := map[string]bool{}
	for _, h := range All() {
		if seen[h.Name] {
			t.Errorf("handler %s listed twice", h.Name)
		}
		seen[h.Name] = true
		if got, ok := Find(h.Name); !ok || got != h {
			t.Errorf("Find(%s) = %v, %v", h.Name, got, ok)
		}
		if h.Description == "" {
			t.Errorf("handler %s has no description", h.Name)
		}
	}
	for _, r := range events.Routes() {
		if h, ok := Find(Worker(r.Worker)); !ok || h.Worker != r.Worker || IsWebSocket(h.Name) {
			t.Errorf("worker %s: handler %v, %v", r.Worker, h, ok)
		}
	}
	if len(All()) != 5+len(events.Routes()) || len(Names()) != len(All()) {
		t.Errorf("%d handlers (%v), want the 4 edge ones, migrate and one per route", len(All()), Names())
	}
	if _, ok := Find("worker-nobody"); ok {
		t.Error("Find accepts a worker that has no route")
	}
}
