package main

import (
	"fmt"
	"slices"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/lambdafn"
)

// Worker is one consumer: its own rule, queue, DLQs and Lambda. Which events
// it gets is the app's events.Routes(), so AWS delivers what the embedded
// bus delivers; only the sizing is decided here. Name is part of the rule
// name that replay targets, so it must never change.
type Worker struct {
	Name    string
	Handler string       // CHAT_LAMBDA_HANDLER value
	Route   events.Route // the rule's filter
	sizing
}

// sizing is what the stack decides per worker.
type sizing struct {
	MemoryMB   float64
	TimeoutSec float64
	// BatchWindowSec trades latency for fewer invocations; fanout is what
	// users wait on, so it gets none.
	BatchWindowSec float64
	// Concurrency is the function's default reserved concurrency (at least
	// 2; see connections.go for what it costs in database connections).
	Concurrency int
}

// workerSizing is keyed by worker name. A worker the app routes to but that
// has no entry here fails the synth rather than getting a guessed size.
func workerSizing() map[string]sizing {
	return map[string]sizing{
		events.WorkerPersister: {MemoryMB: 256, TimeoutSec: 30, BatchWindowSec: 1, Concurrency: 4},
		events.WorkerFanout:    {MemoryMB: 256, TimeoutSec: 30, BatchWindowSec: 0, Concurrency: 6},
		// Thumbnailing decodes full-size images.
		events.WorkerThumbnailer: {MemoryMB: 1024, TimeoutSec: 60, BatchWindowSec: 1, Concurrency: 2},
		// Waits on the push services' answers (and their bounded retries).
		events.WorkerNotifier: {MemoryMB: 256, TimeoutSec: 60, BatchWindowSec: 1, Concurrency: 2},
	}
}

// Workers is the fixed set of consumers, in the order of events.Routes().
// It panics, failing the synth, when the routes and the sizing disagree: a
// route with no rule would silently drop that worker's events on AWS.
func Workers() []Worker {
	ws, err := joinWorkers(events.Routes(), workerSizing())
	if err != nil {
		panic(err)
	}
	return ws
}

// joinWorkers gives each route its sizing; every route needs one, and every
// sizing a route.
func joinWorkers(routes []events.Route, sizes map[string]sizing) ([]Worker, error) {
	var ws []Worker
	var names []string
	for _, r := range routes {
		s, ok := sizes[r.Worker]
		if !ok {
			return nil, fmt.Errorf("worker %q is in events.Routes() but has no sizing in infra", r.Worker)
		}
		ws = append(ws, Worker{Name: r.Worker, Route: r, Handler: lambdafn.Worker(r.Worker), sizing: s})
		names = append(names, r.Worker)
	}
	var extra []string
	for name := range sizes {
		if !slices.Contains(names, name) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return nil, fmt.Errorf("infra sizes workers %v that events.Routes() does not have", extra)
	}
	return ws, nil
}

// RuleName is stable per stage and worker: replay filters on it.
func RuleName(stage, worker string) string { return "parley-" + stage + "-" + worker }

// EventBusName is the bus the functions publish to.
func EventBusName(stage string) string { return "parley-" + stage }

// ArchiveName is the bus archive replay reads from.
func ArchiveName(stage string) string { return "parley-" + stage + "-events" }
