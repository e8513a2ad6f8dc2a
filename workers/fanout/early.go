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
	// earlyTTL is how long a record waits for the other path: an outcome
	// for its queued copy (a copy redriven or purged by an operator never
	// comes; one arriving later is simply posted again), or the mark of a
	// queued copy handled first, for its late hand-over. Records are
	// swept by age every earlyTTL/4.
	earlyTTL = time.Minute
)

// early is the fast path's state.
type early struct {
	mu      sync.Mutex
	pending []earlyItem // handed over, not yet being posted
	running bool        // a goroutine is posting pending events
	byID    map[string]*earlyResult
	// active: events have been handed over, so the queued path marks the
	// events it handles first (see collect).
	active bool
	swept  time.Time // the last sweep of old records
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
	posted  bool    // its frames went out: the queued copy does not post them
	reached []int64 // the recipients a message reached a device of
	held    []int64 // the recipients holding a connection in feed mode
	// feedOut: an announcement's receipts and push requests (feed.go)
	feedOut []feedReceipt
	// queued: the queued copy was handled before the hand-over arrived
	// (a claim can follow the commit before the bus hands the events
	// over); the hand-over is then ignored.
	queued bool
}

// HandleEarly posts committed events ahead of their queued copy. It returns
// at once; one goroutine at a time posts what was handed over, so frames
// leave in the order their publishes committed, and batches grow with load.
func (f *Fanout) HandleEarly(ctx context.Context, envs []events.Envelope) {
	e := &f.early
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active = true
	if now.Sub(e.swept) > earlyTTL/4 {
		e.sweep(now)
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
		s := f.postEarly(ctx, batch)
		for i, it := range batch {
			it.res.posted = s.errs != nil && s.errs[i] == nil
			if it.res.posted {
				it.res.reached, it.res.held, it.res.feedOut = s.reached[i], s.held[i], s.feedOut[i]
			}
			close(it.res.done)
		}
	}
}

// postEarly posts a batch and reports what send did with it (no errs:
// nothing counts as posted). A panic (one event's bad payload) is
// contained: nothing counts as posted, and the queued copies are handled
// with the consumer's isolation of failing events.
func (f *Fanout) postEarly(ctx context.Context, batch []earlyItem) (s sent) {
	if ctx.Err() != nil {
		return sent{}
	}
	defer func() {
		if p := recover(); p != nil {
			f.logger.ErrorContext(ctx, "fanout: the fast path panicked; the queued copies are handled instead", "events", len(batch), "panic", p)
			s = sent{}
		}
	}()
	envs := make([]events.Envelope, len(batch))
	for i, it := range batch {
		envs[i] = it.env
	}
	s = f.send(ctx, envs, nil)
	if ctx.Err() != nil {
		return sent{}
	}
	return s
}

// collect takes, for each event of a queued batch, the fast path's outcome
// (nil where it has none), waiting for the ones still being posted. It
// returns nil when the fast path had none of them. While the fast path is
// active, an event it has no record of is marked, so that its hand-over,
// should it come later, posts nothing.
func (e *early) collect(ctx context.Context, envs []events.Envelope) ([]*earlyResult, error) {
	e.mu.Lock()
	if !e.active {
		e.mu.Unlock()
		return nil, nil
	}
	now := time.Now()
	var out []*earlyResult
	for i, env := range envs {
		r, ok := e.byID[env.ID]
		switch {
		case !ok:
			if len(e.byID) < maxEarly {
				e.byID[env.ID] = &earlyResult{at: now, queued: true}
			}
			continue
		case r.queued: // a redelivery: posted again, as always
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

// sweep drops records older than earlyTTL whose outcome is known (or that
// mark a queued copy). e.mu is held.
func (e *early) sweep(now time.Time) {
	e.swept = now
	for id, r := range e.byID {
		if now.Sub(r.at) <= earlyTTL {
			continue
		}
		if r.queued {
			delete(e.byID, id)
			continue
		}
		select {
		case <-r.done:
			delete(e.byID, id)
		default:
		}
	}
}
