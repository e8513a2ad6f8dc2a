// Package connstore records live WebSocket connections: which user holds
// which API Gateway connection id. Two implementations share one contract:
// PostgreSQL (the local default) and DynamoDB (the seed's table on AWS).
package connstore

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a connection id that is not recorded.
var ErrNotFound = errors.New("connection not found")

// ErrNoGateway is returned by DeleteByGateway for an empty gateway.
var ErrNoGateway = errors.New("no gateway given")

// Connection is one live WebSocket connection.
type Connection struct {
	ID          string
	UserID      int64
	ConnectedAt time.Time
	LastPingAt  time.Time
	// ExpiresAt bounds how long a record outlives a connection whose
	// $disconnect never ran (API Gateway closes every connection after 2 h).
	ExpiresAt time.Time
	// Gateway identifies the gateway that holds the connection: API
	// Gateway's API id on AWS, the local gateway's own identity otherwise.
	// Empty for records written before gateways were recorded.
	Gateway string
	// TokenExpiresAt is when the token the connection was opened with
	// stops being valid; from then on the connection must not be served.
	// Zero: not recorded, no bound.
	TokenExpiresAt time.Time
	// Feed: the connection was opened in feed mode (?feed=1): it gets its
	// user's sync feed changes (feedChange frames, each with its feed
	// position) instead of the fast frames of those changes.
	Feed bool
}

// TokenExpired reports whether c's token has expired at now.
func (c Connection) TokenExpired(now time.Time) bool {
	return !c.TokenExpiresAt.IsZero() && !now.Before(c.TokenExpiresAt)
}

// Live reports whether c counts as open at now: its record has not expired
// and its token still holds. A user is online while any connection is live.
func (c Connection) Live(now time.Time) bool {
	return now.Before(c.ExpiresAt) && !c.TokenExpired(now)
}

// Store is the contract every implementation passes (see storetest).
type Store interface {
	// Put records or replaces a connection.
	Put(ctx context.Context, c Connection) error
	// Get returns one connection or ErrNotFound.
	Get(ctx context.Context, id string) (Connection, error)
	// Delete removes a connection; deleting an unknown id is not an error.
	Delete(ctx context.Context, id string) error
	// Touch records a ping and extends the expiry, or returns ErrNotFound.
	Touch(ctx context.Context, id string, at, expiresAt time.Time) error
	// ByUser lists a user's unexpired connections.
	ByUser(ctx context.Context, userID int64) ([]Connection, error)
	// ByUsers lists the unexpired connections of several users at once,
	// by user; a user without connections has no entry.
	ByUsers(ctx context.Context, userIDs []int64) (map[int64][]Connection, error)
	// DeleteByGateway removes every record held by gateway and returns
	// the user of each record it removed: a restarted local gateway
	// forgets the connections of its previous life, and tells who went
	// offline with them. An empty gateway is refused with ErrNoGateway,
	// since it would match records of unknown holders.
	DeleteByGateway(ctx context.Context, gateway string) ([]int64, error)
}
