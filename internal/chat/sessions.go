package chat

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
)

// Connections is what sessions need of the connection store.
type Connections interface {
	Put(ctx context.Context, c connstore.Connection) error
	Get(ctx context.Context, id string) (connstore.Connection, error)
	Delete(ctx context.Context, id string) error
	Touch(ctx context.Context, id string, at, expiresAt time.Time) error
	ByUser(ctx context.Context, userID int64) ([]connstore.Connection, error)
	DeleteByGateway(ctx context.Context, gateway string) ([]int64, error)
}

var _ Connections = connstore.Store(nil)

// connectionCapRetryAfter is the wait suggested to a client refused for
// holding too many connections: long enough for a device to close one, and
// for a retry loop not to hammer the store.
const connectionCapRetryAfter = 30 * time.Second

// DefaultSessionTTL outlives API Gateway's hard 2-hour connection limit.
const DefaultSessionTTL = 2*time.Hour + 5*time.Minute

// Sessions are the use cases of a WebSocket connection's life: connect,
// ping, disconnect, and finding who is behind a connection.
type Sessions struct {
	svc   *Service
	conns Connections
	ttl   time.Duration
	// known caches the records Lookup found, so that a frame does not
	// cost a read of the connection store. A connection id is never reused
	// and never changes user, so a cached record is right as long as it has
	// not expired; an expired one is read again (another process may have
	// extended it). Disconnect drops it here; one that disconnected through
	// another process stays until it ages out of the bound, harmlessly: no
	// frame arrives on a closed connection.
	known *boundedCache[string, connstore.Connection]
}

// Sessions returns the session use cases over conns. ttl is how long a
// connection record lives without a ping; 0 means DefaultSessionTTL.
func (s *Service) Sessions(conns Connections, ttl time.Duration) *Sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	return &Sessions{svc: s, conns: conns, ttl: ttl, known: newBoundedCache[string, connstore.Connection](maxCachedConnections)}
}

// Connect records an authenticated connection, held by gateway, and asks
// fanout to greet it; feed records that it was opened in feed mode
// (connstore.Connection.Feed). The greeting is best effort: a connection
// without it still works. A user over Limits.MaxConnectionsPerUser is
// refused with CodeRateLimited. From tokenExpiresAt on (zero: never), the connection's
// frames are refused with ErrTokenExpired.
//
// Over the user's WriteConnect rate it refuses with CodeRateLimited and
// records nothing: each connection publishes a greeting event.
func (ss *Sessions) Connect(ctx context.Context, connID string, userID int64, feed bool, gateway string, tokenExpiresAt time.Time) error {
	if err := ss.svc.allowWrite(userID, WriteConnect, "connections"); err != nil {
		return err
	}
	now := ss.svc.clock()
	c := connstore.Connection{
		ID: connID, UserID: userID, ConnectedAt: now, LastPingAt: now, ExpiresAt: now.Add(ss.ttl),
		Gateway: gateway, TokenExpiresAt: tokenExpiresAt, Feed: feed,
	}
	if err := ss.conns.Put(ctx, c); err != nil {
		return unavailable("the connection store", err)
	}
	first, err := ss.admit(ctx, c)
	if err != nil {
		return err
	}
	ss.known.put(connID, c)
	// API Gateway cannot send on a connection before $connect returns, so
	// fanout greets it once this event arrives.
	envs := make([]events.Envelope, 0, 2)
	env, err := events.New(newID().String(), now, userID, "", events.ConnectedV1{ConnectionID: connID, UserID: userID})
	if err == nil {
		envs = append(envs, env)
		if first {
			// The user's first live connection: fanout debounces it and
			// tells their partners (in the same publish: no extra cost).
			env, err = events.New(newID().String(), now, userID, "", events.PresenceV1{UserID: userID, Online: true, At: now})
			envs = append(envs, env)
		}
	}
	if err == nil {
		err = ss.svc.bus.Publish(ctx, envs...)
	}
	if err != nil {
		ss.svc.logger.WarnContext(ctx, "could not publish the connection greeting", "connection_id", connID, "err", err)
	}
	return nil
}

// admit enforces the per-user cap on the recorded connection c. It counts
// after recording, and keeps the user's oldest connections (by the time
// each was accepted), so that two racing for the last place do not both
// get in; only a record that lands later than a younger one's count (a
// stalled gateway, clocks apart) can let one more in for a moment.
// Connections whose token has expired do not count: their frames are
// refused, and on API Gateway nothing closes them at expiry.
//
// It also reports whether c is the user's oldest live connection: the user
// just came online. The same read serves both.
func (ss *Sessions) admit(ctx context.Context, c connstore.Connection) (first bool, err error) {
	held, err := ss.conns.ByUser(ctx, c.UserID)
	if err != nil {
		ss.forget(ctx, c.ID)
		return false, unavailable("the connection store", err)
	}
	now := ss.svc.clock()
	held = slices.DeleteFunc(held, func(h connstore.Connection) bool { return h.ID != c.ID && h.TokenExpired(now) })
	// c is the first when no live connection is older: of two connecting at
	// once, each sees the other, and only the older announces (a record
	// landing late can make both announce; fanout drops the repeat).
	first = !slices.ContainsFunc(held, func(h connstore.Connection) bool {
		return h.ID != c.ID && h.Live(now) && cmp.Or(h.ConnectedAt.Compare(c.ConnectedAt), cmp.Compare(h.ID, c.ID)) < 0
	})
	limit := ss.svc.limits.MaxConnectionsPerUser
	if limit <= 0 {
		return first, nil
	}
	slices.SortFunc(held, func(a, b connstore.Connection) int {
		return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ID, b.ID))
	})
	place := slices.IndexFunc(held, func(h connstore.Connection) bool { return h.ID == c.ID })
	if place < limit {
		return first, nil // place -1: already gone (a racing disconnect); nothing to refuse
	}
	ss.forget(ctx, c.ID)
	return false, &Error{
		Code:       CodeRateLimited,
		Message:    fmt.Sprintf("user %d already holds %d WebSocket connections; the limit is %d: close one and retry", c.UserID, place, limit),
		RetryAfter: connectionCapRetryAfter,
	}
}

// forget deletes the record of a connection refused after it was recorded;
// a failure only leaves a record to expire.
func (ss *Sessions) forget(ctx context.Context, connID string) {
	if err := ss.conns.Delete(ctx, connID); err != nil {
		ss.svc.logger.WarnContext(ctx, "could not forget a refused connection", "connection_id", connID, "err", err)
	}
}

// ErrTokenExpired refuses a frame of a connection whose token has expired:
// the client reconnects with a fresh token.
func ErrTokenExpired() *Error {
	return Errorf(CodeUnauthenticated, "the token this connection was opened with has expired; reconnect with a fresh token")
}

// Lookup returns the connection behind connID, or ErrTokenExpired once its
// token has expired.
func (ss *Sessions) Lookup(ctx context.Context, connID string) (connstore.Connection, error) {
	now := ss.svc.clock()
	c, ok := ss.known.get(connID)
	if !ok || !now.Before(c.ExpiresAt) {
		var err error
		c, err = ss.conns.Get(ctx, connID)
		if errors.Is(err, connstore.ErrNotFound) {
			return c, Errorf(CodeUnauthenticated, "this connection is not registered; reconnect")
		}
		if err != nil {
			return c, unavailable("the connection store", err)
		}
		ss.known.put(connID, c)
	}
	if c.TokenExpired(now) {
		return c, ErrTokenExpired()
	}
	return c, nil
}

// Ping refreshes the connection's last ping and expiry, a write of the
// connection store each, under userID's WritePing rate.
func (ss *Sessions) Ping(ctx context.Context, connID string, userID int64) error {
	if err := ss.svc.allowWrite(userID, WritePing, "pings"); err != nil {
		return err
	}
	now := ss.svc.clock()
	if err := ss.conns.Touch(ctx, connID, now, now.Add(ss.ttl)); err != nil {
		if errors.Is(err, connstore.ErrNotFound) {
			ss.known.remove(connID)
			return Errorf(CodeUnauthenticated, "this connection is not registered; reconnect")
		}
		return unavailable("the connection store", err)
	}
	if c, ok := ss.known.get(connID); ok {
		c.LastPingAt, c.ExpiresAt = now, now.Add(ss.ttl)
		ss.known.put(connID, c)
	}
	return nil
}

// Disconnect forgets the connection. When it was the user's last live one,
// it publishes that the user went offline; fanout holds that for the grace
// before anyone hears of it (a flapping connection is back by then).
func (ss *Sessions) Disconnect(ctx context.Context, connID string) error {
	c, known := ss.known.get(connID)
	ss.known.remove(connID)
	if !known {
		var err error
		if c, err = ss.conns.Get(ctx, connID); err != nil && !errors.Is(err, connstore.ErrNotFound) {
			ss.svc.logger.WarnContext(ctx, "presence: look up a closing connection", "connection_id", connID, "err", err)
		}
	}
	if err := ss.conns.Delete(ctx, connID); err != nil {
		return unavailable("the connection store", err)
	}
	if c.UserID <= 0 {
		return nil // already forgotten (fanout's 410, the gateway's restart): nothing to tell
	}
	ss.offlineUnlessConnected(ctx, c.UserID)
	return nil
}

// ForgetGateway removes the records of gateway's connections, as a local
// gateway does at start for those of its previous life (which ended
// without their $disconnect), and publishes that their users went offline
// where none of their connections is left. It returns how many records it
// removed.
func (ss *Sessions) ForgetGateway(ctx context.Context, gateway string) (int, error) {
	users, err := ss.conns.DeleteByGateway(ctx, gateway)
	if err != nil {
		return 0, unavailable("the connection store", err)
	}
	slices.Sort(users)
	for _, u := range slices.Compact(slices.Clone(users)) {
		ss.offlineUnlessConnected(ctx, u)
	}
	return len(users), nil
}

// offlineUnlessConnected publishes that userID went offline, unless one of
// their connections is live. Presence is best effort: failures are logged.
func (ss *Sessions) offlineUnlessConnected(ctx context.Context, userID int64) {
	now := ss.svc.clock()
	held, err := ss.conns.ByUser(ctx, userID)
	if err != nil {
		ss.svc.logger.WarnContext(ctx, "presence: connections of a user going offline", "user_id", userID, "err", err)
		return
	}
	if slices.ContainsFunc(held, func(h connstore.Connection) bool { return h.Live(now) }) {
		return
	}
	env, err := events.New(newID().String(), now, userID, "", events.PresenceV1{UserID: userID, At: now})
	if err == nil {
		err = ss.svc.bus.Publish(ctx, env)
	}
	if err != nil {
		ss.svc.logger.WarnContext(ctx, "presence: publish an offline", "user_id", userID, "err", err)
	}
}
