package fanout

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/wsproto"
)

// Presence. The edge publishes a Presence event when a user's first live
// connection opens and when their last one closes; fanout debounces them so
// that a flapping mobile connection announces one change, not dozens:
//
//   - an offline is held for the grace; an online of the same user within it
//     cancels it, and nobody hears of either;
//   - once the grace has passed, the user's connections are looked up again
//     (any process may have accepted a new one), and only a user still
//     without one is announced offline, with one durable write: last seen.
//
// The pending offlines live in this process's memory. A fanout that stops
// within a grace forgets its pending offlines (the user then shows offline
// in GET /presence, with the last seen before); on Lambda they wait in the
// warm execution environment, announced when it next runs after the grace.
// Duplicates (a redelivered event, two fanout processes) are harmless: a
// frame states a user's presence, it does not count changes.

// PresenceStore is the stored side of presence; *db.Queries implements it.
type PresenceStore interface {
	ListPresenceAudience(ctx context.Context, userIDs []int64) ([]db.ListPresenceAudienceRow, error)
	SetLastSeen(ctx context.Context, arg db.SetLastSeenParams) error
}

var _ PresenceStore = (*db.Queries)(nil)

// maxPresenceKept bounds the users whose last announced presence is kept to
// drop duplicates; past it the record starts afresh (a duplicate frame is
// harmless).
const maxPresenceKept = 100_000

// presenceFlushTimeout bounds one flush of due offlines.
const presenceFlushTimeout = 10 * time.Second

// WithPresence makes fanout announce presence changes, debounced by grace,
// to those allowed to see them (store). live, if not nil, answers whether a
// user is still online when an offline's grace ends: where fanout looks up
// only some gateways' connections (connstore.Held), the store that holds
// every gateway's.
func WithPresence(store PresenceStore, grace time.Duration, live Connections) Option {
	return func(f *Fanout) {
		f.presence = &presence{store: store, grace: grace, live: live, pending: map[int64]*pendingOffline{}, announced: map[int64]events.PresenceV1{}}
	}
}

type presence struct {
	store PresenceStore
	grace time.Duration
	live  Connections // nil: fanout's own

	mu        sync.Mutex
	pending   map[int64]*pendingOffline
	announced map[int64]events.PresenceV1
}

type pendingOffline struct {
	at    time.Time
	timer *time.Timer
}

// online reports whether m, a user's first connection, is news to announce.
func (ps *presence) online(m events.PresenceV1) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.pending[m.UserID]; ok {
		if m.At.Before(p.at) {
			return false // older than the offline held: stale
		}
		// Back within the grace: the offline never happened for anyone.
		p.timer.Stop()
		delete(ps.pending, m.UserID)
		return false
	}
	if last, ok := ps.announced[m.UserID]; ok && (!m.At.After(last.At) || last.Online) {
		// A redelivery, older than what was announced, or a second device
		// that also found itself first: the user is online already.
		return false
	}
	ps.remember(m)
	return true
}

// unannounce forgets m, an online being retried because its batch failed
// before its frames went out (on either path: send serves both).
func (ps *presence) unannounce(m events.PresenceV1) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if last, ok := ps.announced[m.UserID]; ok && last.Online == m.Online && last.At.Equal(m.At) {
		delete(ps.announced, m.UserID)
	}
}

func (ps *presence) remember(m events.PresenceV1) {
	if len(ps.announced) >= maxPresenceKept {
		ps.announced = map[int64]events.PresenceV1{}
	}
	ps.announced[m.UserID] = m
}

// offline holds m, a user's last connection closing, for the grace; flush
// then announces it unless the user came back.
func (f *Fanout) offline(m events.PresenceV1) {
	ps := f.presence
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if last, ok := ps.announced[m.UserID]; ok && !m.At.After(last.At) {
		return
	}
	if p, ok := ps.pending[m.UserID]; ok {
		if !m.At.After(p.at) {
			return
		}
		p.timer.Stop()
	}
	delay := max(m.At.Add(ps.grace).Sub(f.now()), 0)
	ps.pending[m.UserID] = &pendingOffline{at: m.At, timer: time.AfterFunc(delay, f.flushPresence)}
}

// flushPresence announces the offlines whose grace has passed, as one batch:
// one audience query, one connection lookup, one write of last seen.
func (f *Fanout) flushPresence() {
	ps := f.presence
	now := f.now()
	ps.mu.Lock()
	var due []events.PresenceV1
	for u, p := range ps.pending {
		if !now.Before(p.at.Add(ps.grace)) {
			due = append(due, events.PresenceV1{UserID: u, At: p.at})
			delete(ps.pending, u)
		}
	}
	ps.mu.Unlock()
	if len(due) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), presenceFlushTimeout)
	defer cancel()
	subjects := make([]int64, len(due))
	for i, m := range due {
		subjects[i] = m.UserID
	}
	audience, err := ps.store.ListPresenceAudience(ctx, subjects)
	if err != nil {
		f.logger.Error("presence: audience of offline users; they are not announced", "users", len(subjects), "err", err)
		return
	}
	users := withReceivers(subjects, audience)
	conns, err := f.conns.ByUsers(ctx, unique64(users))
	if err != nil {
		f.logger.Error("presence: connections of offline users; they are not announced", "users", len(subjects), "err", err)
		return
	}
	live := conns
	if ps.live != nil {
		if live, err = ps.live.ByUsers(ctx, subjects); err != nil {
			f.logger.Error("presence: connections of offline users; they are not announced", "users", len(subjects), "err", err)
			return
		}
	}
	var gone []events.PresenceV1
	var seen db.SetLastSeenParams
	for _, m := range due {
		if slices.ContainsFunc(live[m.UserID], func(c connstore.Connection) bool { return c.Live(now) }) {
			continue // back, through another process
		}
		gone = append(gone, m)
		seen.UserIds, seen.SeenAts = append(seen.UserIds, m.UserID), append(seen.SeenAts, m.At)
	}
	if len(gone) == 0 {
		return
	}
	if err := ps.store.SetLastSeen(ctx, seen); err != nil {
		// Announced anyway: the frames say when; GET /presence shows the
		// last seen stored before.
		f.logger.Error("presence: store last seen", "users", len(gone), "err", err)
	}
	ps.mu.Lock()
	for _, m := range gone {
		ps.remember(m)
	}
	ps.mu.Unlock()
	var out posts
	for i, m := range gone {
		p, err := presencePush(m, audience)
		if err != nil {
			f.logger.Error("presence: encode", "err", err)
			return
		}
		for _, c := range f.targets(p, conns) {
			out.add(i, c, p.frameFor(c.UserID))
		}
	}
	f.deliver(ctx, nil, &out) // announcements of their own, not of an event
}

func withReceivers(subjects []int64, audience []db.ListPresenceAudienceRow) []int64 {
	out := append([]int64(nil), subjects...)
	for _, a := range audience {
		out = append(out, a.ReceiverID)
	}
	return out
}

// presencePush is the push of m to its audience: last seen for those who
// show their own, the same frame without it for those who hide theirs.
func presencePush(m events.PresenceV1, audience []db.ListPresenceAudienceRow) (*push, error) {
	p := &push{hiders: map[int64]bool{}}
	for _, a := range audience {
		if a.SubjectID != m.UserID {
			continue
		}
		p.users = append(p.users, a.ReceiverID)
		if a.ReceiverHides {
			p.hiders[a.ReceiverID] = true
		}
	}
	d := wsproto.PresenceData{UserID: m.UserID, Online: m.Online}
	var err error
	if p.hidden, err = wsproto.Encode(wsproto.Presence(d)); err != nil {
		return nil, err
	}
	p.frame = p.hidden
	if !m.Online {
		at := m.At
		d.LastSeenAt = &at
		p.frame, err = wsproto.Encode(wsproto.Presence(d))
	}
	return p, err
}

// frameFor is the frame of p for one receiver.
func (p *push) frameFor(user int64) []byte {
	if p.hiders[user] {
		return p.hidden
	}
	return p.frame
}

// presenceAudience fills the pushes of the batch's online announcements
// with their audience and frames, with one query for the batch.
func (f *Fanout) presenceAudience(ctx context.Context, pushes []*push, errs []error) {
	var subjects []int64
	var which []int
	for i, p := range pushes {
		if p != nil && p.presence != nil {
			subjects, which = append(subjects, p.presence.UserID), append(which, i)
		}
	}
	if len(subjects) == 0 {
		return
	}
	audience, err := f.presence.store.ListPresenceAudience(ctx, unique64(subjects))
	if err != nil {
		// send forgets these were announced, so the retry is news.
		err = fmt.Errorf("fanout: presence audience of %d users: %w", len(subjects), err)
		for _, i := range which {
			errs[i], pushes[i] = err, nil
		}
		return
	}
	for _, i := range which {
		p, err := presencePush(*pushes[i].presence, audience)
		if err != nil {
			errs[i], pushes[i] = err, nil
			continue
		}
		pushes[i] = p
	}
}
