package pgbus_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
)

// handoffs records what a bus hands to a worker's fast path.
type handoffs struct {
	mu  sync.Mutex
	ids map[string]int
	// notVisible lists events not yet committed (not seen from another
	// connection) when they were handed over, where that is checked.
	notVisible []string
}

func (r *handoffs) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

// handOff records the hand-offs to worker. With check, it also checks that
// each event's queue row is visible: only where no consumer of the worker
// runs, which could have claimed the row already.
func (h harness) handOff(t *testing.T, worker string, check bool) *handoffs {
	r := &handoffs{ids: map[string]int{}}
	stop := h.bus.HandOff(worker, func(envs []events.Envelope) {
		for _, e := range envs {
			n := 1
			var err error
			if check {
				err = h.pool.QueryRow(context.Background(),
					fmt.Sprintf(`SELECT count(*) FROM queue_%s WHERE event_id = $1`, worker), e.ID).Scan(&n)
			}
			r.mu.Lock()
			r.ids[e.ID]++
			if err != nil || n == 0 {
				r.notVisible = append(r.notVisible, e.ID)
			}
			r.mu.Unlock()
		}
	})
	t.Cleanup(stop)
	return r
}

// The fast path gets exactly the events written for its worker, once they
// are committed and before the worker's consumer is woken; a publish that
// wrote nothing (an old claim) or did not commit hands nothing over.
func TestHandOffGetsCommittedEventsBeforeTheConsumer(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	fast := h.handOff(t, events.WorkerFanout, false)
	stored := h.handOff(t, events.WorkerPersister, true) // no consumer
	rec := newRecorder()
	// Whether the consumer meets an event after its hand-over is not
	// asserted here: a consumer claiming again right after a batch may
	// meet a row between its commit and its hand-over (fanout marks such
	// events; see TestLateHandOffPostsNothing). The order of hand-over and
	// wake-up is TestCommittedHandsOffBeforeWaking's.
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{})

	msg, typ := sent(t, "hello"), typing(t, 1)
	if err := h.bus.Publish(ctx, msg, typ); err != nil {
		t.Fatal(err)
	}
	first := sent(t, "once")
	if ok, err := h.bus.PublishClaimed(ctx, claimOf(first, 1, "c-1", "h"), first); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	again := sent(t, "once")
	if ok, err := h.bus.PublishClaimed(ctx, claimOf(again, 1, "c-1", "h"), again); err != nil || ok {
		t.Fatalf("second claim: %v %v, want false", ok, err)
	}
	rec.await(t, msg.ID, typ.ID, first.ID)
	for id, want := range map[string]int{msg.ID: 1, typ.ID: 1, first.ID: 1, again.ID: 0} {
		if n := fast.count(id); n != want {
			t.Errorf("event %s handed over %d times, want %d", id, n, want)
		}
	}
	for id, want := range map[string]int{msg.ID: 1, typ.ID: 0, first.ID: 1, again.ID: 0} {
		if n := stored.count(id); n != want {
			t.Errorf("event %s handed to the persister %d times, want %d", id, n, want)
		}
	}
	if len(stored.notVisible) > 0 {
		t.Errorf("handed over before commit: %v", stored.notVisible)
	}
}

// An event published inside a consumer's transaction is handed over after
// that transaction commits, and not at all when it rolls back.
func TestHandOffFollowsTheConsumersCommit(t *testing.T) {
	h := setup(t)
	fast := h.handOff(t, events.WorkerFanout, true) // no consumer
	out := typing(t, 7)                             // published by the persister's handler
	var attempts atomic.Int32
	rec := newRecorder()
	h.consume(t, events.WorkerPersister, events.HandlerFunc(func(ctx context.Context, e events.Envelope) error {
		if err := h.bus.Publish(ctx, out); err != nil {
			return err
		}
		if attempts.Add(1) == 1 {
			panic("first attempt fails as a whole") // its transaction rolls back
		}
		return rec.Handle(ctx, e)
	}), pgbus.ConsumerConfig{})
	in := connected(t, 1)
	if err := h.bus.PublishTo(context.Background(), events.WorkerPersister, in); err != nil {
		t.Fatal(err)
	}
	rec.await(t, in.ID)
	eventually(t, "the hand-off of the committed attempt", func() bool { return fast.count(out.ID) > 0 })
	if n := fast.count(out.ID); n != 1 {
		t.Errorf("handed over %d times, want once (the rolled-back attempt's never)", n)
	}
	if len(fast.notVisible) > 0 {
		t.Errorf("handed over before commit: %v", fast.notVisible)
	}
}
