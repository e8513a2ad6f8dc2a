// Package pgbus is the embedded event bus: the same topology as the AWS one
// (one durable stream per worker, an archive for replay, a dead-letter store)
// on PostgreSQL, consumed through Watermill.
//
// Each worker has its own queue table, claimed with FOR UPDATE SKIP LOCKED,
// not a consumer group on a shared log: a log read only below the cluster's
// oldest open transaction (as Watermill SQL's default schema reads) would let
// one slow handler stall every other worker. Consumers wake on LISTEN/NOTIFY
// and fall back to polling only when a notification is lost.
package pgbus

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// notifyChannel carries the name of the worker queue that has new rows.
const notifyChannel = "parley_bus"

// Bus publishes events into the archive and every matching worker queue in
// one transaction.
type Bus struct {
	pool   *pgxpool.Pool
	routes []events.Route
	waker  *Waker
	logger *slog.Logger

	mu         sync.Mutex
	statements map[string]string // publish statement per set of workers

	gmu      sync.Mutex
	pending  []*pubRequest // publishes waiting for a group
	flushing bool          // a goroutine is writing groups

	hmu      sync.Mutex
	handoffs map[string]*handoff // by worker (see HandOff)

	groupSize func(events int) // see WithGroupSizes; nil = none
}

// Option configures a Bus.
type Option func(*Bus)

// WithGroupSizes has observe called with the number of events of each
// group commit, for metrics. It runs on the committing goroutine: it must
// be cheap and must not block.
func WithGroupSizes(observe func(events int)) Option { return func(b *Bus) { b.groupSize = observe } }

// handoff is one registered fast path.
type handoff struct{ fn func([]events.Envelope) }

var _ events.Publisher = (*Bus)(nil)

// New returns a bus over pool. waker (may be nil) announces new events to
// consumers; without it they find them at their fallback poll.
func New(pool *pgxpool.Pool, waker *Waker, logger *slog.Logger, opts ...Option) *Bus {
	b := &Bus{
		pool:       pool,
		routes:     events.Routes(),
		waker:      waker,
		logger:     logger,
		statements: map[string]string{},
		handoffs:   map[string]*handoff{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// HandOff gives fn the events this bus publishes for worker, right after
// they commit and before the worker's consumers are woken: the in-process
// fast path of a consumer in this process (events.EarlyHandler). The queue
// rows are written all the same and remain the durable record, which the
// consumer handles as usual. fn must not block: it runs on the publisher's
// path. stop ends the hand-off; a later HandOff for the worker replaces it.
func (b *Bus) HandOff(worker string, fn func([]events.Envelope)) (stop func()) {
	h := &handoff{fn: fn}
	b.hmu.Lock()
	b.handoffs[worker] = h
	b.hmu.Unlock()
	return func() {
		b.hmu.Lock()
		if b.handoffs[worker] == h {
			delete(b.handoffs, worker)
		}
		b.hmu.Unlock()
	}
}

// handOffs returns the registered fast paths of these routes' workers, by
// worker, or nil.
func (b *Bus) handOffs(routes []events.Route) map[string]func([]events.Envelope) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if len(b.handoffs) == 0 {
		return nil
	}
	var out map[string]func([]events.Envelope)
	for _, r := range routes {
		if h, ok := b.handoffs[r.Worker]; ok {
			if out == nil {
				out = map[string]func([]events.Envelope){}
			}
			out[r.Worker] = h.fn
		}
	}
	return out
}

// enqueues reports whether publish writes e to r's queue; a route without
// types (PublishTo) takes every event.
func enqueues(r events.Route, e events.Envelope) bool { return len(r.Types) == 0 || r.Matches(e) }

// queueTable names a worker's queue table.
func queueTable(worker string) string { return pgx.Identifier{"queue_" + worker}.Sanitize() }

// queueDDL creates a worker's queue. part is the event's partition, written
// by the publisher: the consumer that owns a partition claims its rows, in
// offset order, so one conversation's events are handled in order while
// conversations run in parallel, and the publisher can wake just that
// consumer. attempts and not_before hold a failed event back for its retry.
//
// payload is NULL when the statement that queued the event also archived
// it: the envelope is then read from its archive row (event_archive.id =
// event_id) when the event is claimed. Copying it into every queue as well
// was a quarter of the WAL written per message; PruneArchive keeps the
// archive rows that queued events still point at.
var queueDDL = []string{
	`CREATE TABLE IF NOT EXISTS %s (
	"offset"   bigserial PRIMARY KEY,
	event_id   uuid NOT NULL,
	type       text NOT NULL,
	payload    jsonb NOT NULL,
	part       smallint NOT NULL DEFAULT 0,
	attempts   integer NOT NULL DEFAULT 0,
	not_before timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
)`,
	// Where the server runs autovacuum, clean a queue after a few thousand
	// deleted rows rather than a fraction of its size; consumers vacuum it
	// themselves too (see ConsumerConfig.VacuumEvery).
	`ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
	autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000)`,
	// Queues created before payloads were read from the archive. Only
	// then: ALTER TABLE waits for every open claim, and publishes to the
	// queue would queue behind it at each process start.
	`DO $$ BEGIN
	IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = '%[1]s'::regclass AND attname = 'payload' AND attnotnull) THEN
		ALTER TABLE %[1]s ALTER COLUMN payload DROP NOT NULL;
	END IF;
END $$`,
}

// Init creates the worker queue tables. It is idempotent.
func (b *Bus) Init(ctx context.Context) error {
	for _, r := range b.routes {
		for _, ddl := range queueDDL {
			if _, err := b.pool.Exec(ctx, fmt.Sprintf(ddl, queueTable(r.Worker))); err != nil {
				return fmt.Errorf("create queue %s: %w", r.Worker, err)
			}
		}
	}
	return nil
}

// Publish archives the events and enqueues each one for every worker whose
// route matches, atomically: when it returns nil the events are durable.
//
// It is one SQL statement (one round trip, atomic on its own) that writes
// the archive and the worker queues. Publishing is on every request's path,
// and on a small machine round trips, not rows, are what it costs.
//
// Called by a handler inside a consumer's transaction (db.ScopeFrom), the
// events are written in that transaction: they commit with the batch that
// caused them, and consumers are woken after that commit.
//
// Ephemeral events (events.Ephemeral: typing) are the exception: they are
// enqueued without an archive row, in a transaction that does not wait for
// the disk flush, and never in a group with durable events, so that they
// neither wait for nor add to a group's flush. (In a consumer's
// transaction they are only left out of the archive.)
func (b *Bus) Publish(ctx context.Context, envs ...events.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if scope, ok := db.ScopeFrom(ctx); ok {
		durable := slices.DeleteFunc(slices.Clone(envs), events.Ephemeral)
		if len(durable) < len(envs) {
			ephemeral := slices.DeleteFunc(slices.Clone(envs), func(e events.Envelope) bool { return !events.Ephemeral(e) })
			if _, err := b.publish(ctx, publishOpts{scope: scope, routes: b.routes}, ephemeral, nil); err != nil {
				return err
			}
		}
		_, err := b.publish(ctx, publishOpts{archive: true, scope: scope, routes: b.routes}, durable, nil)
		return err
	}
	durable := envs
	if slices.ContainsFunc(envs, events.Ephemeral) {
		var ephemeral []events.Envelope
		durable = nil
		for _, e := range envs {
			if events.Ephemeral(e) {
				ephemeral = append(ephemeral, e)
			} else {
				durable = append(durable, e)
			}
		}
		if _, err := b.publish(ctx, publishOpts{async: true, routes: b.routes}, ephemeral, nil); err != nil {
			return err
		}
	}
	if len(durable) == 0 {
		return nil
	}
	for _, e := range durable {
		// Checked before joining a group, so that one bad event cannot fail
		// the others' statement.
		if err := e.Validate(); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	_, err := b.groupCommit(ctx, durable, nil)
	return err
}

// PublishClaimed publishes env, a first attempt at a send, together with
// the record of its client_message_id, in the same group-committed
// statement: the event is published only if the claim was new. It reports
// false, having published nothing, when the sender already used that
// client_message_id; the caller then answers as for a retry. env's id must
// be claim.MessageID.
func (b *Bus) PublishClaimed(ctx context.Context, claim db.InsertMessageRequestParams, env events.Envelope) (claimed bool, err error) {
	if err := env.Validate(); err != nil {
		return false, fmt.Errorf("publish: %w", err)
	}
	if env.ID != claim.MessageID.String() {
		return false, fmt.Errorf("publish: event %s claims message %s", env.ID, claim.MessageID)
	}
	if scope, ok := db.ScopeFrom(ctx); ok {
		got, err := b.publish(ctx, publishOpts{archive: true, scope: scope, routes: b.routes}, []events.Envelope{env}, []db.InsertMessageRequestParams{claim})
		return got[claim.MessageID], err
	}
	return b.groupCommit(ctx, []events.Envelope{env}, &claim)
}

// Group commit: publishes that arrive while a group's statement is being
// written wait for it and share the next one, so one statement and one
// disk flush answer many requests. Each caller still returns only once its
// own events are durable. One statement at a time: with four in flight, a
// publish under load nearly always found a writer free and went alone
// (groups of 1.2–1.4 events at 1,000 msg/s, a transaction each), which cost
// the server more than waiting for the statement ahead costs the caller.
const maxGroupEvents = 256 // events per statement

type pubRequest struct {
	envs  []events.Envelope
	claim *db.InsertMessageRequestParams // nil: publish unconditionally
	done  chan pubResult
}

type pubResult struct {
	claimed bool // the claim was new (and so the events were published)
	err     error
}

func (b *Bus) groupCommit(ctx context.Context, envs []events.Envelope, claim *db.InsertMessageRequestParams) (bool, error) {
	r := &pubRequest{envs: envs, claim: claim, done: make(chan pubResult, 1)}
	b.gmu.Lock()
	b.pending = append(b.pending, r)
	if !b.flushing {
		b.flushing = true
		go b.flush()
	}
	b.gmu.Unlock()
	select {
	case res := <-r.done:
		return res.claimed, res.err
	case <-ctx.Done():
		// The events may still be written; the caller retries with the
		// same ids, which every handler tolerates.
		return false, fmt.Errorf("publish: %w", ctx.Err())
	}
}

// flush writes pending requests, a group at a time, until none are left.
func (b *Bus) flush() {
	for {
		b.gmu.Lock()
		if len(b.pending) == 0 {
			b.flushing = false
			b.gmu.Unlock()
			return
		}
		var group []*pubRequest
		n := 0
		for len(b.pending) > 0 && (n == 0 || n+len(b.pending[0].envs) <= maxGroupEvents) {
			group = append(group, b.pending[0])
			n += len(b.pending[0].envs)
			b.pending = b.pending[1:]
		}
		b.gmu.Unlock()
		envs := make([]events.Envelope, 0, n)
		var claims []db.InsertMessageRequestParams
		for _, r := range group {
			envs = append(envs, r.envs...)
			if r.claim != nil {
				claims = append(claims, *r.claim)
			}
		}
		if b.groupSize != nil {
			b.groupSize(n)
		}
		// Not any caller's context: the group outlives each of them.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		claimed, err := b.publish(ctx, publishOpts{archive: true, routes: b.routes}, envs, claims)
		if err != nil && len(group) > 1 {
			// One member's events may be what the server refused: each
			// member is written alone, so that it fails alone.
			b.publishAlone(ctx, group)
			cancel()
			continue
		}
		cancel()
		for _, r := range group {
			res := pubResult{err: err}
			if r.claim != nil {
				res.claimed = claimed[r.claim.MessageID]
			}
			r.done <- res
		}
	}
}

// publishAlone writes each request of a group that failed as a whole in a
// statement of its own and answers it with its own result.
func (b *Bus) publishAlone(ctx context.Context, group []*pubRequest) {
	for _, r := range group {
		var claims []db.InsertMessageRequestParams
		if r.claim != nil {
			claims = []db.InsertMessageRequestParams{*r.claim}
		}
		claimed, err := b.publish(ctx, publishOpts{archive: true, routes: b.routes}, r.envs, claims)
		res := pubResult{err: err}
		if r.claim != nil {
			res.claimed = claimed[r.claim.MessageID]
		}
		r.done <- res
	}
}

// PublishTo enqueues events for one worker only, without archiving them:
// replay and dead-letter redrive use it so other workers are not disturbed.
func (b *Bus) PublishTo(ctx context.Context, worker string, envs ...events.Envelope) error {
	r, ok := events.RouteFor(worker)
	if !ok {
		return fmt.Errorf("unknown worker %q", worker)
	}
	r.Types, r.Media = nil, nil // every given event, whatever its type
	if _, err := b.publish(ctx, publishOpts{routes: []events.Route{r}}, envs, nil); err != nil {
		return fmt.Errorf("to %s: %w", worker, err)
	}
	return nil
}

// publishOpts say how publish writes.
type publishOpts struct {
	archive bool // write the archive row (replay reads it)
	// async commits without waiting for the disk flush: for ephemeral
	// events, which a crash may lose.
	async bool
	// scope is a consumer's transaction to write in (see Publish).
	scope  *db.Scope
	routes []events.Route
}

// publish writes envs in one statement. With claims, it first records each
// claim in message_requests and writes only the events that are not some
// claim's message or whose claim was new; it returns the message ids whose
// claims were new.
func (b *Bus) publish(ctx context.Context, o publishOpts, envs []events.Envelope, claims []db.InsertMessageRequestParams) (map[uuid.UUID]bool, error) {
	if len(envs) == 0 {
		return nil, nil
	}
	n := len(envs)
	ids, types, convs, raws := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times, parts := make([]time.Time, n), make([]int16, n)
	for i, e := range envs {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		raw, err := e.Encode()
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		ids[i], types[i], times[i], convs[i], raws[i], parts[i] = e.ID, e.Type, e.OccurredAt, e.ConversationID, string(raw), partition(e)
	}
	args := []any{ids, types, times, convs, raws, parts}
	if len(claims) > 0 {
		k := len(claims)
		senders, clientIDs, msgIDs, hashes, envelopes := make([]int64, k), make([]string, k), make([]uuid.UUID, k), make([]string, k), make([]string, k)
		for i, c := range claims {
			senders[i], clientIDs[i], msgIDs[i], hashes[i], envelopes[i] = c.SenderID, c.ClientMessageID, c.MessageID, c.RequestHash, string(c.Envelope)
		}
		args = append(args, senders, clientIDs, msgIDs, hashes, envelopes)
	}
	var workers, notify []string
	for _, r := range o.routes {
		var ords []int64
		seen := map[int16]bool{}
		for i, e := range envs {
			if enqueues(r, e) {
				ords = append(ords, int64(i+1))
				if !seen[parts[i]] {
					seen[parts[i]] = true
					notify = append(notify, fmt.Sprintf("%s/%d", r.Worker, parts[i]))
				}
			}
		}
		if len(ords) > 0 {
			workers = append(workers, r.Worker)
			args = append(args, ords)
		}
	}
	stmt := b.publishStatement(workers, o.archive, len(claims) > 0)
	claimed := map[uuid.UUID]bool{}
	run := func(q db.DBTX) error {
		rows, err := q.Query(ctx, stmt, args...)
		if err != nil {
			return err
		}
		// Rows are the new claims' message ids (none without claims).
		ok, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		for _, id := range ok {
			claimed[id] = true
		}
		return err
	}
	var err error
	switch {
	case o.scope != nil:
		err = run(o.scope.Tx)
	case o.async:
		err = db.InTx(ctx, b.pool, true, func(tx pgx.Tx) error { return run(tx) })
	default:
		err = run(b.pool)
	}
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	committed := b.committed(envs, o.routes, claims, claimed, notify)
	if o.scope != nil {
		o.scope.Join()
		o.scope.AfterCommit(committed)
	} else {
		committed()
	}
	return claimed, nil
}

// committed returns what follows a publish's commit: the hand-off to the
// fast paths, then the wake-up of the consumers, in that order, so that a
// consumer woken by this publish finds the fast path's record of the events.
func (b *Bus) committed(envs []events.Envelope, routes []events.Route,
	claims []db.InsertMessageRequestParams, claimed map[uuid.UUID]bool, notify []string) func() {
	fast := b.handOffs(routes)
	// An event that is some claim's message was written only if its claim
	// was new; the fast path must not see the others.
	var skip map[string]bool
	if len(fast) > 0 && len(claims) > 0 {
		skip = map[string]bool{}
		for _, c := range claims {
			if !claimed[c.MessageID] {
				skip[c.MessageID.String()] = true
			}
		}
	}
	return func() {
		for _, r := range routes {
			fn := fast[r.Worker]
			if fn == nil {
				continue
			}
			var out []events.Envelope
			for _, e := range envs {
				if enqueues(r, e) && !skip[e.ID] {
					out = append(out, e)
				}
			}
			if len(out) > 0 {
				fn(out)
			}
		}
		if b.waker == nil {
			return
		}
		// Events whose claim was old were not written: their wake-ups
		// only cost the consumers an empty poll.
		if len(fast) == 0 {
			b.waker.Announce(notify)
			return
		}
		var now, later []string
		for _, p := range notify {
			if w, _ := parsePayload(p); fast[w] != nil {
				later = append(later, p)
			} else {
				now = append(now, p)
			}
		}
		b.waker.Announce(now)
		b.waker.AnnounceWithin(later, handedOffWake)
	}
}

// handedOffWake is how soon the consumers of a queue whose events were
// handed to a fast path are woken: what is left for them (fanout's
// delivery receipts) is not urgent, and the events of several publishes
// then share one batch and one transaction.
const handedOffWake = 10 * time.Millisecond

// partitions is how many partitions a queue has; a worker's consumers
// share them (consumer i of n owns p with p%n == i).
const partitions = 1024

// partition places an event by conversation, so that one conversation's
// events are handled in order by one consumer.
func partition(e events.Envelope) int16 {
	key := e.ConversationID
	if key == "" {
		key = e.ID
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int16(h.Sum32() % partitions)
}

// publishStatement builds (once per shape) the statement publish runs:
// $1..$6 are the events' columns; with claims, $7..$11 are the claims'
// columns; then one array of event ordinals per worker. It returns the
// message ids of the claims it inserted.
func (b *Bus) publishStatement(workers []string, archive, claims bool) string {
	key := fmt.Sprint(archive, claims, workers)
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.statements[key]; ok {
		return s
	}
	var sb strings.Builder
	next := 7
	filter := ""
	sb.WriteString("WITH ")
	if claims {
		// A claim that conflicts (the sender used that client_message_id
		// before) inserts nothing, and its event is left out below.
		sb.WriteString(`claims AS (
	INSERT INTO message_requests (sender_id, client_message_id, message_id, request_hash, envelope)
	SELECT c.sender_id, c.client_message_id, c.message_id, c.request_hash, c.envelope::jsonb
	FROM unnest($7::bigint[], $8::text[], $9::uuid[], $10::text[], $11::text[])
	     AS c(sender_id, client_message_id, message_id, request_hash, envelope)
	ON CONFLICT DO NOTHING
	RETURNING message_id
), `)
		filter = `
	WHERE NOT (t.id::uuid = ANY($9::uuid[])) OR t.id::uuid IN (SELECT message_id FROM claims)`
		next = 12
	}
	sb.WriteString(`e AS (
	SELECT t.id::uuid AS id, t.type, t.occurred_at, NULLIF(t.conv, '')::uuid AS conversation_id,
	       t.envelope::jsonb AS envelope, t.part, t.ord
	FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::smallint[])
	     WITH ORDINALITY AS t(id, type, occurred_at, conv, envelope, part, ord)` + filter + `
)`)
	// A queue row carries no payload when this statement archived its
	// event (see queueDDL); it carries one when the event was archived
	// before (a republish, whose archive row may be old enough to be
	// pruned) or not at all (PublishTo, ephemeral events).
	payload := "e.envelope"
	if archive {
		sb.WriteString(`, archived AS (
	INSERT INTO event_archive (id, type, occurred_at, conversation_id, envelope)
	SELECT id, type, occurred_at, conversation_id, envelope FROM e ORDER BY ord
	ON CONFLICT (id) DO NOTHING
	RETURNING id
)`)
		payload = "CASE WHEN e.id IN (SELECT id FROM archived) THEN NULL ELSE e.envelope END"
	}
	for i, w := range workers {
		fmt.Fprintf(&sb, `, q%d AS (
	INSERT INTO %s (event_id, type, payload, part)
	SELECT e.id, e.type, %s, e.part FROM e WHERE e.ord = ANY($%d::bigint[]) ORDER BY e.ord
)`, i, queueTable(w), payload, next+i)
	}
	if claims {
		sb.WriteString("\nSELECT message_id FROM claims")
	} else {
		sb.WriteString("\nSELECT NULL::uuid WHERE false")
	}
	s := sb.String()
	b.statements[key] = s
	return s
}
