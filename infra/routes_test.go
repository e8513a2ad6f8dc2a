package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/lambdafn"
)

// TestRulesFollowRoutes checks the synthesized stack against the app's
// routing table: each worker of events.Routes() has a rule on the bus whose
// pattern is exactly its route, targeting the worker's queue, which feeds the
// function running that worker. An event type routed in the app but missing
// from a rule would be silently dropped on AWS, and no other test notices.
func TestRulesFollowRoutes(t *testing.T) {
	tp := dev(t)
	rules := map[string]string{} // rule name → logical id
	for id, r := range tp.ofType("AWS::Events::Rule") {
		name, _ := r["Name"].(string)
		rules[name] = id
	}
	routed := map[string]bool{}
	for _, r := range events.Routes() {
		routed[RuleName(tp.cfg.Stage, r.Worker)] = true
	}
	for name, id := range rules {
		if !routed[name] {
			t.Errorf("rule %s (%s) is for no worker of events.Routes()", name, id)
		}
	}
	fns := tp.functionsByHandler(t)
	esms := tp.ofType("AWS::Lambda::EventSourceMapping")

	for _, route := range events.Routes() {
		t.Run(route.Worker, func(t *testing.T) {
			name := RuleName(tp.cfg.Stage, route.Worker)
			id, ok := rules[name]
			if !ok {
				t.Fatalf("no rule named %s", name)
			}
			rule := tp.Resources[id]["Properties"].(map[string]any)

			pat, err := parsePattern(rule["EventPattern"])
			if err != nil {
				t.Fatalf("EventPattern %v: %v", rule["EventPattern"], err)
			}
			if !slices.Equal(pat.Source, []string{events.Source}) {
				t.Errorf("source %v, want [%s]", pat.Source, events.Source)
			}
			if !sameSet(pat.DetailType, route.Types) {
				t.Errorf("detail-type %v, want the route's %v", pat.DetailType, route.Types)
			}
			var media []string
			if pat.Detail != nil {
				media = pat.Detail.Data.ContentType
				if len(media) == 0 {
					t.Errorf("detail filter without content types: %v", rule["EventPattern"])
				}
			}
			if !sameSet(media, route.Media) {
				t.Errorf("detail.data.content_type %v, want the route's %v", media, route.Media)
			}
			if bus := ref(rule["EventBusName"]); tp.Resources[bus]["Type"] != "AWS::Events::EventBus" {
				t.Errorf("rule is not on the stack's bus: %v", rule["EventBusName"])
			}

			targets, _ := rule["Targets"].([]any)
			if len(targets) != 1 {
				t.Fatalf("%d targets, want 1", len(targets))
			}
			tg := targets[0].(map[string]any)
			queue := getAtt(tg["Arn"], "Arn")
			q := tp.Resources[queue]
			if q == nil || q["Type"] != "AWS::SQS::Queue" || q["Properties"].(map[string]any)["QueueName"] != name {
				t.Fatalf("target %v is not the queue %s", tg["Arn"], name)
			}
			if _, ok := tg["DeadLetterConfig"]; !ok {
				t.Error("target has no DeadLetterConfig")
			}

			handler := lambdafn.Worker(route.Worker)
			var feeds []string
			for _, m := range esms {
				if getAtt(m["EventSourceArn"], "Arn") == queue {
					feeds = append(feeds, ref(m["FunctionName"]))
				}
			}
			if fn, ok := fns[handler]; !ok || !slices.Equal(feeds, []string{fn}) {
				t.Errorf("queue %s feeds %v, want only the function with CHAT_LAMBDA_HANDLER=%s (%q)", name, feeds, handler, fn)
			}

			// Replay can only target rules by name, so the name is an output too.
			if o := tp.Outputs[idPart(route.Worker)+"RuleName"]; o == nil || o["Value"] != name {
				t.Errorf("rule name output: %v", o)
			}
		})
	}
}

// eventPattern is the part of an EventBridge pattern the stack may use;
// parsePattern rejects any other key, which would filter unseen.
type eventPattern struct {
	Source     []string `json:"source"`
	DetailType []string `json:"detail-type"`
	Detail     *struct {
		Data struct {
			ContentType []string `json:"content_type"`
		} `json:"data"`
	} `json:"detail"`
}

func parsePattern(v any) (eventPattern, error) {
	var p eventPattern
	b, err := json.Marshal(v)
	if err != nil {
		return p, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return p, dec.Decode(&p)
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// TestWorkersNeedSizing: a worker on one side only fails the synth.
func TestWorkersNeedSizing(t *testing.T) {
	routes := []events.Route{{Worker: "a", Types: []string{"X"}}, {Worker: "b", Types: []string{"Y"}}}
	s := sizing{MemoryMB: 128, TimeoutSec: 10}
	ws, err := joinWorkers(routes, map[string]sizing{"a": s, "b": s})
	if err != nil || len(ws) != 2 || ws[1].Name != "b" || ws[1].Handler != lambdafn.Worker("b") || ws[1].Route.Types[0] != "Y" {
		t.Errorf("joinWorkers = %+v, %v", ws, err)
	}
	if _, err := joinWorkers(routes, map[string]sizing{"a": s}); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("route without sizing: err = %v", err)
	}
	if _, err := joinWorkers(routes[:1], map[string]sizing{"a": s, "b": s}); err == nil || !strings.Contains(err.Error(), "[b]") {
		t.Errorf("sizing without route: err = %v", err)
	}
	// The real table is complete, or every other test would fail too.
	if len(Workers()) != len(events.Routes()) {
		t.Errorf("%d workers for %d routes", len(Workers()), len(events.Routes()))
	}
}
