package fanout

import (
	"context"
	"sync"
	"time"

	"github.com/parleychat/parley/events"
)

// The fast path. Where fanout runs in the process that publishes (chat dev),
// the bus hands it each publish's events the moment they commit
// (HandleEarly), and it posts them at once, ahead of their queued copy: a
// recipient waits for one commit, not for a commit, a claim and another
// commit. The queued copy still arrives in a batch (HandleBatch), which
// waits for the fast path's outcome, skips the posts already made and
// publishes the delivery receipts, so that the queue stays the durable
// record: after a crash the queued copies are posted again (at least once,
// as always).

const (
	// maxEarly bounds the events the fast path tracks; beyond it, events
	// take the queued path only.
	maxEarly = 20000
	// earlyTTL is how long an outcome waits for its queued copy before it
	// may be dropped (a copy redriven or purged by an operator never
	// comes); a copy arriving later is simply posted again.
	earlyTTL = time.Minute
)

// early is the fast path's state.
type early struct {
	mu      sync.Mutex
	pending []earlyItem // handed over, not yet being posted
	running bool        // a goroutine is posting pending events
	byID    map[string]*earlyResult
}

type earlyItem struct {
	env events.Envelope
	res *earlyResult
}

// earlyResult is what the fast path did with one event. Its fields are
// written before done is closed and read after.
type earlyResult struct {
	done    chan struct{}
	at      time.Time
	posted  bool // its frames went out: the queued copy does not post them
	reached bool // a message reached one of its recipient's devices
}

// HandleEarly posts committed events ahead of their queued copy. It returns
// at once; one goroutine at a time posts what was handed over, so frames
// leave in the order their publishes committed, and batches grow with load.
func (f *Fanout) HandleEarly(ctx context.Context, envs []events.Envelope) {
	e := &f.early
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.byID)+len(envs) > maxEarly {
		e.expire(now)
	}
	for _, env := range envs {
		if _, ok := e.byID[env.ID]; ok || len(e.byID) >= maxEarly {
			continue
		}
		r := &earlyResult{done: make(chan struct{}), at: now}
		e.byID[env.ID] = r
		e.pending = append(e.pending, earlyItem{env, r})
	}
	if !e.running && len(e.pending) > 0 {
		e.running = true
		go f.runEarly(ctx)
	}
}

// runEarly posts pending events, a batch at a time, until none are left.
func (f *Fanout) runEarly(ctx context.Context) {
	e := &f.early
	for {
		e.mu.Lock()
		batch := e.pending
		e.pending = nil
		if len(batch) == 0 {
			e.running = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		var s sent
		if ctx.Err() == nil {
			envs := make([]events.Envelope, len(batch))
			for i, it := range batch {
				envs[i] = it.env
			}
			s = f.send(ctx, envs, nil)
		}
		for i, it := range batch {
			if s.errs != nil && s.errs[i] == nil && ctx.Err() == nil {
				it.res.posted, it.res.reached = true, s.reached[i]
			}
			close(it.res.done)
		}
	}
}

// collect takes, for each event of a queued batch, the fast path's outcome
// (nil where it has none), waiting for the ones still being posted. It
// returns nil when the fast path had none of them.
func (e *early) collect(ctx context.Context, envs []events.Envelope) ([]*earlyResult, error) {
	e.mu.Lock()
	if len(e.byID) == 0 {
		e.mu.Unlock()
		return nil, nil
	}
	var out []*earlyResult
	for i, env := range envs {
		r, ok := e.byID[env.ID]
		if !ok {
			continue
		}
		if out == nil {
			out = make([]*earlyResult, len(envs))
		}
		out[i] = r
		delete(e.byID, env.ID)
	}
	e.mu.Unlock()
	for _, r := range out {
		if r == nil {
			continue
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// expire drops outcomes whose queued copy is overdue. e.mu is held.
func (e *early) expire(now time.Time) {
	for id, r := range e.byID {
		select {
		case <-r.done:
			if now.Sub(r.at) > earlyTTL {
				delete(e.byID, id)
			}
		default:
		}
	}
}
