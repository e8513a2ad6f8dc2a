package eventbridge_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/eventbridge/ebfake"
)

func TestReplay(t *testing.T) {
	f, err := ebfake.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := client(t, srv.URL)
	req := eventbridge.ReplayRequest{
		ArchiveARN: "arn:aws:events:us-east-1:123456789012:archive/parley",
		BusARN:     "arn:aws:events:us-east-1:123456789012:event-bus/parley",
		RuleARNs:   []string{"arn:aws:events:us-east-1:123456789012:rule/parley/persister"},
		Since:      time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC),
		Until:      time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Name:       "persister-20261128",
	}
	name, err := eventbridge.Replay(context.Background(), c, req)
	if err != nil {
		t.Fatal(err)
	}
	if name != req.Name {
		t.Errorf("name %q, want %q", name, req.Name)
	}
	got := f.Replays()
	if len(got) != 1 {
		t.Fatalf("%d replays started, want 1", len(got))
	}
	r := got[0]
	if r.ReplayName != req.Name || r.EventSourceArn != req.ArchiveARN || r.DestinationArn != req.BusARN ||
		!slices.Equal(r.FilterArns, req.RuleARNs) || !r.EventStartTime.Equal(req.Since) || !r.EventEndTime.Equal(req.Until) {
		t.Errorf("replay request %+v does not match %+v", r, req)
	}

	t.Run("defaults", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		req := req
		req.Name, req.Until = "", time.Time{}
		name, err := eventbridge.Replay(context.Background(), c, req)
		if err != nil {
			t.Fatal(err)
		}
		all := f.Replays()
		r := all[len(all)-1]
		if !strings.HasPrefix(name, "replay-") || r.ReplayName != name {
			t.Errorf("name %q, sent %q; want a generated replay- name", name, r.ReplayName)
		}
		if r.EventEndTime.Before(before) {
			t.Errorf("end time %s, want now", r.EventEndTime)
		}
	})

	for name, edit := range map[string]func(*eventbridge.ReplayRequest){
		"no archive":        func(r *eventbridge.ReplayRequest) { r.ArchiveARN = "" },
		"no bus":            func(r *eventbridge.ReplayRequest) { r.BusARN = "" },
		"no rule":           func(r *eventbridge.ReplayRequest) { r.RuleARNs = nil },
		"no since":          func(r *eventbridge.ReplayRequest) { r.Since = time.Time{} },
		"since after until": func(r *eventbridge.ReplayRequest) { r.Since = r.Until.Add(time.Hour) },
	} {
		t.Run(name, func(t *testing.T) {
			n := len(f.Replays())
			req := req
			edit(&req)
			if _, err := eventbridge.Replay(context.Background(), c, req); err == nil {
				t.Fatal("no error")
			}
			if len(f.Replays()) != n {
				t.Error("a replay was started")
			}
		})
	}
}
