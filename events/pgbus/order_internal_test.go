package pgbus

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/parleychat/parley/events"
)

// What follows a commit runs in a fixed order: the fast path gets its
// events before any consumer of the same queue is woken, so that a woken
// consumer always finds the fast path's record. (The integration tests
// cannot show this order: a consumer that polls, or claims again after a
// batch, may meet a committed row before its hand-over, which fanout
// handles on its own; see workers/fanout.)
func TestCommittedHandsOffBeforeWaking(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	waker := NewWaker("", logger) // never run: no notification from outside
	b := New(nil, waker, logger)
	fanoutWake := waker.subscribe(events.WorkerFanout, 0, 1)
	persisterWake := waker.subscribe(events.WorkerPersister, 0, 1)

	var got []events.Envelope
	woken := false
	b.HandOff(events.WorkerFanout, func(envs []events.Envelope) {
		got = append(got, envs...)
		select {
		case <-fanoutWake:
			woken = true
		default:
		}
	})
	// committed does not read the payload.
	msg := events.Envelope{ID: "0190d6c4-2c5e-7c3e-9d7a-5a1f2b3c4d60", Type: events.TypeMessageSent, Data: json.RawMessage(`{}`)}
	notify := []string{events.WorkerFanout + "/1", events.WorkerPersister + "/1"}
	b.committed([]events.Envelope{msg}, b.routes, nil, nil, notify)()

	if len(got) != 1 || got[0].ID != msg.ID {
		t.Fatalf("handed over %v, want the message", got)
	}
	if woken {
		t.Fatal("fanout's consumer was woken before the hand-over")
	}
	select {
	case <-persisterWake: // no fast path: woken at once
	default:
		t.Fatal("the persister's consumer was not woken at once")
	}
	select {
	case <-fanoutWake: // within handedOffWake
	case <-time.After(5 * time.Second):
		t.Fatal("fanout's consumer was never woken")
	}
}
