package pgbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
)

var quiet = slog.New(slog.DiscardHandler)

const conv = "0190b6f4-8a3e-7c2d-9f10-1234567890ab"

func typing(t *testing.T, n int) events.Envelope {
	t.Helper()
	e, err := events.New(uuid.Must(uuid.NewV7()).String(), time.Now(), int64(n), conv,
		events.TypingV1{ConversationID: conv, UserID: int64(n), RecipientID: 2, IsTyping: n%2 == 0})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// connected is a small durable event only fanout consumes (typing is
// ephemeral: not archived, so not replayed).
func connected(t *testing.T, n int) events.Envelope {
	t.Helper()
	e, err := events.New(uuid.Must(uuid.NewV7()).String(), time.Now(), int64(n), "",
		events.ConnectedV1{ConnectionID: fmt.Sprintf("conn-%d", n), UserID: int64(n)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func sent(t *testing.T, text string) events.Envelope {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	e, err := events.New(id, time.Now(), 1, conv, events.MessageSentV1{MessageID: id, ConversationID: conv,
		SenderID: 1, RecipientID: 2, ContentType: events.ContentText, TextContent: text, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// recorder is a handler that remembers what it saw and can be told to fail.
type recorder struct {
	mu    sync.Mutex
	seen  map[string]int
	order []string
	fail  func(events.Envelope) error
	got   chan string
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}, got: make(chan string, 10000)} }

func (r *recorder) Handle(_ context.Context, e events.Envelope) error {
	if r.fail != nil {
		if err := r.fail(e); err != nil {
			r.mu.Lock()
			r.seen["fail:"+e.ID]++
			r.mu.Unlock()
			return err
		}
	}
	r.mu.Lock()
	r.seen[e.ID]++
	r.order = append(r.order, e.ID)
	r.mu.Unlock()
	r.got <- e.ID
	return nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[key]
}

func (r *recorder) await(t *testing.T, ids ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case id := <-r.got:
			delete(want, id)
		case <-deadline:
			t.Fatalf("%d events never delivered", len(want))
		}
	}
}

type harness struct {
	dsn   string
	pool  *pgxpool.Pool
	waker *pgbus.Waker
	bus   *pgbus.Bus
}

func setup(t *testing.T) harness {
	t.Helper()
	dsn, pool := dbtest.New(t)
	waker := pgbus.NewWaker(dsn, quiet)
	bus := pgbus.New(pool, waker, quiet)
	if err := bus.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = waker.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return harness{dsn, pool, waker, bus}
}

// consume runs a worker until the test ends. FallbackPoll is an hour so
// that any delivery proves the wake-up path, not polling.
func (h harness) consume(t *testing.T, worker string, handler events.Handler, cfg pgbus.ConsumerConfig) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.FallbackPoll == 0 {
		cfg.FallbackPoll = time.Hour
	}
	done := make(chan error, 1)
	go func() { done <- pgbus.Consume(ctx, h.pool, h.waker, worker, events.AsBatch(handler), cfg, quiet) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consume %s: %v", worker, err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
	})
	return stop
}

func TestEachWorkerGetsItsRoutes(t *testing.T) {
	h := setup(t)
	persister, fanout, thumbs := newRecorder(), newRecorder(), newRecorder()
	h.consume(t, events.WorkerPersister, persister, pgbus.ConsumerConfig{})
	h.consume(t, events.WorkerFanout, fanout, pgbus.ConsumerConfig{})
	h.consume(t, events.WorkerThumbnailer, thumbs, pgbus.ConsumerConfig{})
	ctx := context.Background()

	text, typ := sent(t, "hi"), typing(t, 1)
	if err := h.bus.Publish(ctx, text, typ); err != nil {
		t.Fatal(err)
	}
	persister.await(t, text.ID)
	fanout.await(t, text.ID, typ.ID)
	if n := persister.count(typ.ID); n != 0 {
		t.Errorf("persister got Typing %d times", n)
	}
	if n := thumbs.count(text.ID); n != 0 {
		t.Errorf("thumbnailer got a text message")
	}
	var archived int
	// Typing is ephemeral: delivered, never archived.
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM event_archive`).Scan(&archived); err != nil || archived != 1 {
		t.Fatalf("archive holds %d events (err %v), want 1", archived, err)
	}
}

// A publisher in another process (no shared Waker) reaches the consumer
// through LISTEN/NOTIFY alone: the consumer's fallback poll is an hour.
func TestCrossProcessWakeUp(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{Concurrency: 1})
	time.Sleep(200 * time.Millisecond) // let the consumer reach its blocking wait and LISTEN start

	// Another process has its own waker, which notifies through PostgreSQL.
	otherWaker := pgbus.NewWaker(h.dsn, quiet)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = otherWaker.Run(wctx) }()
	otherProcess := pgbus.New(h.pool, otherWaker, quiet)
	for i := range 20 {
		e := typing(t, i)
		if err := otherProcess.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		rec.await(t, e.ID)
	}
}

func TestFailingEventIsDeadLetteredAndOthersFlow(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	poison := typing(t, 666)
	rec := newRecorder()
	rec.fail = func(e events.Envelope) error {
		if e.ID == poison.ID {
			return errors.New("boom")
		}
		return nil
	}
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{Concurrency: 1, MaxAttempts: 3, RetryBackoff: time.Millisecond})

	var ids []string
	envs := []events.Envelope{poison}
	for i := range 10 {
		e := typing(t, i)
		envs = append(envs, e)
		ids = append(ids, e.ID)
	}
	if err := h.bus.Publish(ctx, envs...); err != nil {
		t.Fatal(err)
	}
	rec.await(t, ids...)
	dls := awaitDeadLetters(t, h.bus, 1)
	if n := rec.count("fail:" + poison.ID); n != 3 {
		t.Fatalf("poison tried %d times, want 3", n)
	}
	if dls[0].EventID.String() != poison.ID || dls[0].Attempts != 3 || dls[0].Worker != events.WorkerFanout || dls[0].Error != "boom" {
		t.Fatalf("dead letter = %+v", dls[0])
	}

	// Once fixed, the operator redrives it and it is handled.
	rec.fail = nil
	if err := h.bus.Redrive(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	rec.await(t, poison.ID)
	if err := h.bus.Redrive(ctx, dls[0].ID); err == nil {
		t.Fatal("redriving twice was accepted")
	}
	if pending, _ := h.bus.DeadLetters(ctx, "", false, 10); len(pending) != 0 {
		t.Fatalf("%d dead letters still pending after redrive", len(pending))
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	h := setup(t)
	rec := newRecorder()
	rec.fail = func(events.Envelope) error { return events.Permanent(errors.New("cannot ever work")) }
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{Concurrency: 1, MaxAttempts: 5})
	e := typing(t, 1)
	if err := h.bus.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	dls := awaitDeadLetters(t, h.bus, 1)
	if dls[0].Attempts != 1 || rec.count("fail:"+e.ID) != 1 {
		t.Fatalf("permanent error tried %d times", rec.count("fail:"+e.ID))
	}
}

func TestUndecodablePayloadIsDeadLettered(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{Concurrency: 1})
	// Written behind the bus's back, as a buggy producer or a bad manual
	// insert would.
	if _, err := h.pool.Exec(ctx, `INSERT INTO queue_fanout (event_id, type, payload) VALUES ($1, 'unknown', '{"not":"an envelope"}')`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	h.waker.Wake(events.WorkerFanout)
	good := typing(t, 1)
	if err := h.bus.Publish(ctx, good); err != nil {
		t.Fatal(err)
	}
	rec.await(t, good.ID)
	dls := awaitDeadLetters(t, h.bus, 1)
	if dls[0].EventType != "unknown" {
		t.Fatalf("dead letter type %q", dls[0].EventType)
	}
}

// Stopping a consumer mid-stream and starting another loses nothing:
// unacknowledged rows stay queued.
func TestRestartMidStreamLosesNothing(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	var envs []events.Envelope
	var ids []string
	for i := range 300 {
		e := typing(t, i)
		envs = append(envs, e)
		ids = append(ids, e.ID)
	}
	slow := newRecorder()
	slow.fail = func(events.Envelope) error { time.Sleep(2 * time.Millisecond); return nil }
	stop := h.consume(t, events.WorkerFanout, slow, pgbus.ConsumerConfig{Concurrency: 2, BatchSize: 50})
	if err := h.bus.Publish(ctx, envs...); err != nil {
		t.Fatal(err)
	}
	<-slow.got // mid-stream
	stop()

	after := newRecorder()
	h.consume(t, events.WorkerFanout, after, pgbus.ConsumerConfig{Concurrency: 2, FallbackPoll: 50 * time.Millisecond})
	var missing []string
	slow.mu.Lock()
	for _, id := range ids {
		if slow.seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	slow.mu.Unlock()
	if len(missing) == 0 {
		t.Fatal("the first consumer handled everything before it was stopped; the test proves nothing")
	}
	after.await(t, missing...)
}

func TestReplayRedeliversToOneWorker(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	var ids []string
	for i := range 1200 { // more than one replay batch
		e := connected(t, i)
		ids = append(ids, e.ID)
		if i%100 == 0 {
			if err := h.bus.Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := h.bus.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	fan := newRecorder()
	h.consume(t, events.WorkerFanout, fan, pgbus.ConsumerConfig{Concurrency: 2, BatchSize: 100})
	fan.await(t, ids...)

	n, err := h.bus.Replay(ctx, events.WorkerFanout, before, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ids) {
		t.Fatalf("replayed %d, want %d", n, len(ids))
	}
	fan.await(t, ids...)
	for _, id := range ids[:5] {
		if c := fan.count(id); c != 2 {
			t.Fatalf("event delivered %d times after one replay, want 2", c)
		}
	}
	if n, err := h.bus.Replay(ctx, events.WorkerPersister, before, time.Time{}); err != nil || n != 0 {
		t.Fatalf("persister replay of Connected events: n=%d err=%v, want 0", n, err)
	}
	if _, err := h.bus.Replay(ctx, "nope", before, time.Time{}); err == nil {
		t.Fatal("replay to an unknown worker accepted")
	}
}

func awaitDeadLetters(t *testing.T, bus *pgbus.Bus, n int) []deadLetter {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rows, err := bus.DeadLetters(context.Background(), "", false, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) >= n {
			out := make([]deadLetter, len(rows))
			for i, r := range rows {
				out[i] = deadLetter{ID: r.ID, EventID: r.EventID, EventType: r.EventType, Worker: r.Worker, Attempts: r.Attempts, Error: r.Error}
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d dead letters", n)
	return nil
}

type deadLetter struct {
	ID        int64
	EventID   uuid.UUID
	EventType string
	Worker    string
	Attempts  int32
	Error     string
}

func (d deadLetter) String() string { return fmt.Sprintf("%d %s %s", d.ID, d.EventID, d.Error) }

// A handler runs inside the transaction that claimed its batch: what it
// publishes is written there, invisible to others until the batch is
// acknowledged, and then delivered.
func TestHandlersShareTheClaimTransaction(t *testing.T) {
	h := setup(t)
	inside := make(chan error, 1)
	settingsID, pinned := uuid.Must(uuid.NewV7()).String(), true
	h.consume(t, events.WorkerFanout, events.HandlerFunc(func(ctx context.Context, e events.Envelope) error {
		if _, ok := db.ScopeFrom(ctx); !ok {
			inside <- errors.New("no transaction in the handler's context")
			return nil
		}
		if e.Type != events.TypeTyping {
			return nil
		}
		env, err := events.New(settingsID, time.Now(), 1, e.ConversationID, events.ConversationSettingsChangedV1{
			ConversationID: e.ConversationID, UserID: 1, Pinned: &pinned, ChangedAt: time.Now()})
		if err == nil {
			err = h.bus.Publish(ctx, env)
		}
		if err == nil {
			var n int
			err = h.pool.QueryRow(context.Background(), `SELECT count(*) FROM queue_persister`).Scan(&n)
			if err == nil && n != 0 {
				err = fmt.Errorf("another connection sees %d rows published by an unfinished batch", n)
			}
		}
		inside <- err
		return err
	}), pgbus.ConsumerConfig{Concurrency: 1})
	rec := newRecorder()
	h.consume(t, events.WorkerPersister, rec, pgbus.ConsumerConfig{Concurrency: 1})
	if err := h.bus.Publish(context.Background(), typing(t, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-inside:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("event not delivered")
	}
	// The persister is woken after the commit, not by polling (an hour).
	rec.await(t, settingsID)
}

// Concurrent publishes are written in shared statements (group commit);
// every caller's events are durable when its call returns, exactly once.
func TestConcurrentPublishesShareCommits(t *testing.T) {
	h := setup(t)
	ctx := context.Background()
	const callers = 200
	ids := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := connected(t, i)
			ids[i] = e.ID
			errs[i] = h.bus.Publish(ctx, e)
			if errs[i] == nil {
				// Durable on return: visible to any other connection now.
				var n int
				if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM event_archive WHERE id = $1`, e.ID).Scan(&n); err != nil || n != 1 {
					errs[i] = fmt.Errorf("archived %d times right after Publish returned (%v)", n, err)
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	rec := newRecorder()
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{Concurrency: 2})
	rec.await(t, ids...)
	if n := count(t, h.pool, `SELECT count(*) FROM event_archive`); n != callers {
		t.Fatalf("archive holds %d events, want %d", n, callers)
	}
	for _, id := range ids[:10] {
		if c := rec.count(id); c != 1 {
			t.Fatalf("event delivered %d times, want 1", c)
		}
	}
}

// Publishes that arrive while a group's statement is in flight wait for it
// and share the next statement: one statement at a time, so that under load
// many callers share one transaction instead of each finding a writer free.
func TestPublishesBehindAStatementShareTheNext(t *testing.T) {
	_, pool := dbtest.New(t)
	var mu sync.Mutex
	var groups []int
	sizes := func() []int { mu.Lock(); defer mu.Unlock(); return slices.Clone(groups) }
	bus := pgbus.New(pool, nil, quiet, pgbus.WithGroupSizes(func(n int) { mu.Lock(); groups = append(groups, n); mu.Unlock() }))
	ctx := context.Background()
	if err := bus.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// The archive held, so that the first group's statement waits.
	hold, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := hold.Exec(ctx, `LOCK TABLE event_archive IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const later = 20
	envs := make([]events.Envelope, later+1)
	for i := range envs {
		envs[i] = connected(t, i)
	}
	errs := make(chan error, len(envs))
	go func() { errs <- bus.Publish(ctx, envs[0]) }()
	for deadline := time.Now().Add(10 * time.Second); len(sizes()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first publish's statement did not start")
		}
	}
	for _, e := range envs[1:] {
		go func() { errs <- bus.Publish(ctx, e) }()
	}
	// Time for the later publishes to start statements of their own, were
	// several allowed in flight.
	time.Sleep(300 * time.Millisecond)
	if got := sizes(); len(got) != 1 {
		t.Fatalf("groups written while the first was in flight: %v, want only the first", got)
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range envs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := sizes()
	if got[0] != 1 || len(got) < 2 || got[1] < 2 {
		t.Fatalf("group sizes %v: want the first alone, then the publishes that waited sharing a statement", got)
	}
	if n := count(t, pool, `SELECT count(*) FROM event_archive`); n != len(envs) {
		t.Fatalf("archive holds %d events, want %d", n, len(envs))
	}
}

// A bad event is refused on its own, without failing concurrent callers.
func TestInvalidEventIsRefusedAlone(t *testing.T) {
	h := setup(t)
	bad := typing(t, 1)
	bad.ID = "not-a-uuid"
	if err := h.bus.Publish(context.Background(), bad); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("invalid event: %v", err)
	}
	if err := h.bus.Publish(context.Background(), typing(t, 2)); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, q string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// batchRecorder is a native batch handler: it records the ids of every
// batch it is given and fails events as fail says.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]string
	fail    func(e events.Envelope, attempt int) error
	tries   map[string]int
}

func (b *batchRecorder) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tries == nil {
		b.tries = map[string]int{}
	}
	ids := make([]string, len(envs))
	errs := make([]error, len(envs))
	for i, e := range envs {
		ids[i] = e.ID
		b.tries[e.ID]++
		if b.fail != nil {
			errs[i] = b.fail(e, b.tries[e.ID])
		}
	}
	b.batches = append(b.batches, ids)
	return errs
}

func (b *batchRecorder) snapshot() ([][]string, map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tries := map[string]int{}
	for k, v := range b.tries {
		tries[k] = v
	}
	return slices.Clone(b.batches), tries
}

func (h harness) consumeBatches(t *testing.T, worker string, bh events.BatchHandler, cfg pgbus.ConsumerConfig) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.FallbackPoll == 0 {
		cfg.FallbackPoll = time.Hour
	}
	done := make(chan error, 1)
	go func() { done <- pgbus.Consume(ctx, h.pool, h.waker, worker, bh, cfg, quiet) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consume %s: %v", worker, err)
		}
	})
}

func (h harness) queued(t *testing.T, worker string) int {
	t.Helper()
	var n int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM queue_`+worker).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Events queued together are handed out as one batch, in queue order; an
// event that fails is retried alone (its neighbours are neither handled
// again nor lost), and one that cannot succeed is dead-lettered alone.
func TestAFailingEventInABatchFailsAlone(t *testing.T) {
	h := setup(t)
	var envs []events.Envelope
	for i := range 10 {
		envs = append(envs, typing(t, i))
	}
	flaky, poison := envs[3].ID, envs[6].ID
	b := &batchRecorder{fail: func(e events.Envelope, attempt int) error {
		switch {
		case e.ID == flaky && attempt == 1:
			return errors.New("transient")
		case e.ID == poison:
			return events.Permanent(errors.New("never"))
		}
		return nil
	}}
	// Published before the consumer starts, so that they are claimed as
	// one batch.
	if err := h.bus.Publish(context.Background(), envs...); err != nil {
		t.Fatal(err)
	}
	h.consumeBatches(t, events.WorkerFanout, b, pgbus.ConsumerConfig{Concurrency: 1, RetryBackoff: time.Millisecond})
	eventually(t, "the queue is empty", func() bool { return h.queued(t, events.WorkerFanout) == 0 })

	batches, tries := b.snapshot()
	want := make([]string, len(envs))
	for i, e := range envs {
		want[i] = e.ID
	}
	if len(batches) != 2 || !slices.Equal(batches[0], want) || !slices.Equal(batches[1], []string{flaky}) {
		t.Fatalf("batches = %v, want all ten in order, then %s alone", batches, flaky)
	}
	for id, n := range tries {
		if n != 1 && id != flaky {
			t.Errorf("event %s handled %d times", id, n)
		}
	}
	dls := awaitDeadLetters(t, h.bus, 1)
	if len(dls) != 1 || dls[0].EventID.String() != poison || dls[0].Attempts != 1 {
		t.Fatalf("dead letters = %v, want only %s after one attempt", dls, poison)
	}
}

// panicky panics on a batch that holds its poison event, after writing a
// row per event in the consumer's transaction.
type panicky struct {
	poison string
	mu     sync.Mutex
	calls  [][]string
}

func (p *panicky) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	scope, _ := db.ScopeFrom(ctx)
	var ids []string
	for _, e := range envs {
		ids = append(ids, e.ID)
		if _, err := scope.Tx.Exec(ctx, `INSERT INTO handled (id) VALUES ($1)`, e.ID); err != nil {
			panic(err)
		}
	}
	p.mu.Lock()
	p.calls = append(p.calls, ids)
	p.mu.Unlock()
	if slices.Contains(ids, p.poison) {
		panic("poison")
	}
	return nil
}

// A batch that panics is undone and its events handled one by one: the one
// that panics is dead-lettered alone, every other is applied exactly once.
func TestAPanickingBatchFallsBackToItsEvents(t *testing.T) {
	h := setup(t)
	if _, err := h.pool.Exec(context.Background(), `CREATE TABLE handled (id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var envs []events.Envelope
	for i := range 5 {
		envs = append(envs, typing(t, i))
	}
	p := &panicky{poison: envs[2].ID}
	if err := h.bus.Publish(context.Background(), envs...); err != nil {
		t.Fatal(err)
	}
	h.consumeBatches(t, events.WorkerFanout, p, pgbus.ConsumerConfig{Concurrency: 1, MaxAttempts: 2, RetryBackoff: time.Millisecond})
	dls := awaitDeadLetters(t, h.bus, 1)
	if dls[0].EventID.String() != p.poison || !strings.Contains(dls[0].Error, "poison") {
		t.Fatalf("dead letter = %v, want %s", dls[0], p.poison)
	}
	eventually(t, "the queue is empty", func() bool { return h.queued(t, events.WorkerFanout) == 0 })
	rows, err := h.pool.Query(context.Background(), `SELECT id, count(*) FROM handled GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		counts[id] = n
	}
	for _, e := range envs {
		want := 1
		if e.ID == p.poison {
			want = 0 // its writes were undone with each attempt
		}
		if counts[e.ID] != want {
			t.Errorf("event %s applied %d times, want %d (all: %v)", e.ID, counts[e.ID], want, counts)
		}
	}
}

// An event the server refuses (a NUL in its JSON, which jsonb cannot
// hold) fails its own publish only: a group commit it shared with others'
// publishes falls back to writing them one by one.
func TestARefusedPublishFailsAlone(t *testing.T) {
	h := setup(t)
	poison := connected(t, 0)
	poison.Data = []byte(`{"connection_id":"c\u0000","user_id":1}`)
	const callers = 40
	envs := []events.Envelope{poison}
	for i := 1; i < callers; i++ {
		envs = append(envs, connected(t, i))
	}
	// Hold the archive so that the bus's writers block and the publishes
	// below wait, together, for the next group. The lock and the checks
	// use connections of their own: the writers hold the pool's.
	ctx := context.Background()
	side, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer side.Close(ctx)
	watch, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	lock, err := side.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE event_archive IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 { // as many as the bus writes at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.bus.Publish(ctx, connected(t, 100+i)); err != nil {
				t.Error(err)
			}
		}()
	}
	eventually(t, "the bus's writers wait for the lock", func() bool {
		var n int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE relation = 'event_archive'::regclass AND NOT granted`).Scan(&n)
		return err == nil && n >= 1
	})
	errs := make([]error, callers)
	for i, e := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.bus.Publish(ctx, e)
		}()
	}
	time.Sleep(200 * time.Millisecond) // let them queue; no assertion depends on it
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if errs[0] == nil {
		t.Fatal("the refused event was published")
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("publish %d failed with the refused one's group: %v", i+1, err)
		}
	}
	if n := count(t, h.pool, `SELECT count(*) FROM event_archive`); n != callers-1+4 {
		t.Fatalf("archive holds %d events, want %d", n, callers-1+4)
	}
}

// Consumers vacuum their queue table once they have deleted rows from it,
// whether or not the server runs autovacuum.
func TestConsumersVacuumTheirQueue(t *testing.T) {
	h := setup(t)
	rec := newRecorder()
	h.consume(t, events.WorkerFanout, rec, pgbus.ConsumerConfig{VacuumEvery: 50 * time.Millisecond})
	var ids []string
	for i := range 20 {
		e := connected(t, i+1)
		ids = append(ids, e.ID)
		if err := h.bus.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	rec.await(t, ids...)
	eventually(t, "a vacuum of queue_fanout", func() bool {
		return count(t, h.pool, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'queue_fanout'`) > 0
	})
}
