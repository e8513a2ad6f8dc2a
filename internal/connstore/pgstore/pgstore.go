// Package pgstore keeps WebSocket connections in PostgreSQL, the local
// stand-in for the DynamoDB table used on AWS.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/internal/connstore"
)

// Store implements connstore.Store over the ws_connections table.
type Store struct {
	q   *db.Queries
	now func() time.Time
}

var _ connstore.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock ByUser uses to hide expired rows.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store using pool.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{q: db.New(pool), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Put records or replaces a connection.
func (s *Store) Put(ctx context.Context, c connstore.Connection) error {
	err := s.q.PutConnection(ctx, db.PutConnectionParams{
		ConnectionID:   c.ID,
		UserID:         c.UserID,
		ConnectedAt:    c.ConnectedAt,
		LastPingAt:     c.LastPingAt,
		ExpiresAt:      c.ExpiresAt,
		Gateway:        c.Gateway,
		TokenExpiresAt: optionalTime(c.TokenExpiresAt),
		Feed:           c.Feed,
	})
	if err != nil {
		return fmt.Errorf("pgstore: put %s: %w", c.ID, err)
	}
	return nil
}

// Get returns one connection or connstore.ErrNotFound. An expired row that
// Sweep has not removed yet is still returned, as DynamoDB does before its
// TTL deletion runs.
func (s *Store) Get(ctx context.Context, id string) (connstore.Connection, error) {
	row, err := s.q.GetConnection(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return connstore.Connection{}, fmt.Errorf("pgstore: get %s: %w", id, connstore.ErrNotFound)
	}
	if err != nil {
		return connstore.Connection{}, fmt.Errorf("pgstore: get %s: %w", id, err)
	}
	return fromRow(row), nil
}

// Delete removes a connection; an unknown id is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.q.DeleteConnection(ctx, id); err != nil {
		return fmt.Errorf("pgstore: delete %s: %w", id, err)
	}
	return nil
}

// Touch records a ping and extends the expiry, or returns
// connstore.ErrNotFound.
func (s *Store) Touch(ctx context.Context, id string, at, expiresAt time.Time) error {
	n, err := s.q.TouchConnection(ctx, db.TouchConnectionParams{
		ConnectionID: id,
		LastPingAt:   at,
		ExpiresAt:    expiresAt,
	})
	if err != nil {
		return fmt.Errorf("pgstore: touch %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("pgstore: touch %s: %w", id, connstore.ErrNotFound)
	}
	return nil
}

// ByUser lists a user's unexpired connections, oldest first.
func (s *Store) ByUser(ctx context.Context, userID int64) ([]connstore.Connection, error) {
	rows, err := s.q.ListConnectionsByUser(ctx, db.ListConnectionsByUserParams{
		UserID:    userID,
		ExpiresAt: s.now(),
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: list connections of user %d: %w", userID, err)
	}
	out := make([]connstore.Connection, 0, len(rows))
	for _, r := range rows {
		out = append(out, fromRow(r))
	}
	return out, nil
}

// ByUsers lists the unexpired connections of several users with one query.
func (s *Store) ByUsers(ctx context.Context, userIDs []int64) (map[int64][]connstore.Connection, error) {
	out := map[int64][]connstore.Connection{}
	if len(userIDs) == 0 {
		return out, nil
	}
	rows, err := s.q.ListConnectionsByUsers(ctx, db.ListConnectionsByUsersParams{UserIds: userIDs, ExpiresAt: s.now()})
	if err != nil {
		return nil, fmt.Errorf("pgstore: list connections of %d users: %w", len(userIDs), err)
	}
	for _, r := range rows {
		out[r.UserID] = append(out[r.UserID], fromRow(r))
	}
	return out, nil
}

// DeleteByGateway removes every record held by gateway.
func (s *Store) DeleteByGateway(ctx context.Context, gateway string) ([]int64, error) {
	if gateway == "" {
		return nil, fmt.Errorf("pgstore: delete connections by gateway: %w", connstore.ErrNoGateway)
	}
	users, err := s.q.DeleteConnectionsByGateway(ctx, gateway)
	if err != nil {
		return nil, fmt.Errorf("pgstore: delete connections of gateway %q: %w", gateway, err)
	}
	return users, nil
}

// Sweep deletes rows that expired at or before now and returns how many it
// deleted: the local counterpart of DynamoDB's TTL deletion, run
// periodically by whoever owns the store.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int64, error) {
	n, err := s.q.DeleteExpiredConnections(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("pgstore: sweep expired connections: %w", err)
	}
	return n, nil
}

func fromRow(r db.WsConnection) connstore.Connection {
	c := connstore.Connection{
		ID:          r.ConnectionID,
		UserID:      r.UserID,
		ConnectedAt: r.ConnectedAt.UTC(),
		LastPingAt:  r.LastPingAt.UTC(),
		ExpiresAt:   r.ExpiresAt.UTC(),
		Gateway:     r.Gateway,
		Feed:        r.Feed,
	}
	if r.TokenExpiresAt != nil {
		c.TokenExpiresAt = r.TokenExpiresAt.UTC()
	}
	return c
}

// optionalTime stores a zero time as NULL.
func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
