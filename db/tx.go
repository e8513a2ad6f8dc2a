package db

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// A consumer of the local bus handles a claimed batch inside the
// transaction that claimed it and acknowledges it there, so that a
// handler's writes, what it publishes and the acknowledgement commit
// together: one transaction per batch, and nothing half done after a crash.
// The transaction travels in the handler's context.

type scopeKey struct{}

// Scope is a transaction a consumer lends to the handlers it calls.
type Scope struct {
	Tx pgx.Tx

	mu     sync.Mutex
	after  []func()
	joined bool
}

// WithScope returns ctx carrying tx for handlers, and the scope, whose
// Committed the owner calls once tx has committed.
func WithScope(ctx context.Context, tx pgx.Tx) (context.Context, *Scope) {
	s := &Scope{Tx: tx}
	return context.WithValue(ctx, scopeKey{}, s), s
}

// ScopeFrom returns the transaction a consumer lent, if any.
func ScopeFrom(ctx context.Context) (*Scope, bool) {
	s, ok := ctx.Value(scopeKey{}).(*Scope)
	return s, ok
}

// Join records that a publisher wrote events in the scope's transaction:
// they commit, or roll back, with it.
func (s *Scope) Join() {
	s.mu.Lock()
	s.joined = true
	s.mu.Unlock()
}

// Joined reports whether a publisher wrote events in the scope's
// transaction (Join). A publisher that cannot (EventBridge) publishes at
// once, and its events stand whatever becomes of the transaction.
func (s *Scope) Joined() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined
}

// AfterCommit runs f once the scope's transaction has committed (a wake-up
// that must not run before the rows it announces are visible).
func (s *Scope) AfterCommit(f func()) {
	s.mu.Lock()
	s.after = append(s.after, f)
	s.mu.Unlock()
}

// Committed runs the AfterCommit functions; the owner calls it after a
// successful commit, and never after a rollback. (A function registered
// inside a savepoint that was rolled back still runs: they are wake-ups, and
// a needless one costs an empty query.)
func (s *Scope) Committed() {
	s.mu.Lock()
	after := s.after
	s.after = nil
	s.mu.Unlock()
	for _, f := range after {
		f()
	}
}
