// Package chat holds the chat's use cases, shared by every transport:
// commands validate input, authorize, assign ids and publish domain events;
// queries read the stored state as one user sees it. Commands never write
// chat state themselves; the one synchronous write is get-or-create of a
// conversation. Transports (package api) decode into the input types here,
// make one call and map the coded Error this package returns.
package chat

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
)

// MediaStore is what the service needs of the media store.
type MediaStore interface {
	PresignGet(ctx context.Context, key string) (string, time.Time, error)
	PresignPut(ctx context.Context, userID int64, contentType string, size int64) (media.PresignedUpload, error)
	Upload(ctx context.Context, userID int64, r io.Reader, declaredSize int64, declaredType string) (media.Object, error)
	// Verify checks an uploaded object and deletes it when it fails. The
	// returned Object's Key is what a message refers to: for a presigned
	// upload, a verified copy its URL cannot overwrite.
	Verify(ctx context.Context, key string) (media.Object, error)
	Exists(ctx context.Context, key string) (bool, error)
	MaxSize(k media.Kind) int64
}

var _ MediaStore = (*media.Store)(nil)

// Limits bound what one request may carry. A zero field switches its limit
// off; DefaultLimits gives the production values.
type Limits struct {
	MaxTextRunes   int   // longest text message
	Rates          Rates // writes per user, by kind
	MaxReadBatch   int   // message ids per read receipt
	MaxClientIDLen int   // client_message_id length in bytes
	MaxUploads     int   // uploads streaming through one process at once (0: no bound)
	MaxUserUploads int   // of those, per user (0: no bound)
	// MaxConnectionsPerUser bounds the WebSocket connections one user holds
	// at once, counted in the shared connection store, so across gateways.
	MaxConnectionsPerUser int
	// EditWindow and UnsendWindow are how long after sending its sender
	// may edit a message, or unsend it; the persister holds events to the
	// same windows.
	EditWindow, UnsendWindow time.Duration
	// MaxSyncChanges is the most changes one GET /sync answers (its
	// limit's cap); DefaultSyncLimit is the limit when none is asked.
	MaxSyncChanges int
	// MaxGroupMembers is the most members a group has (its owner
	// included); MaxGroupTitleRunes the longest title.
	MaxGroupMembers, MaxGroupTitleRunes int
}

// DefaultSyncLimit is how many changes GET /sync answers when its request
// gives no limit.
const DefaultSyncLimit = 100

// DefaultMaxGroupMembers is how many members a group may have unless
// configured (CHAT_GROUP_MAX_MEMBERS).
const DefaultMaxGroupMembers = 256

// DefaultLimits are the limits a server runs with unless configured.
func DefaultLimits() Limits {
	return Limits{MaxTextRunes: 4000, Rates: DefaultRates(), MaxReadBatch: 500, MaxClientIDLen: 128,
		MaxUploads: 32, MaxUserUploads: 3, MaxConnectionsPerUser: 10,
		EditWindow: events.DefaultEditWindow, UnsendWindow: events.DefaultUnsendWindow,
		MaxSyncChanges: 1000, MaxGroupMembers: DefaultMaxGroupMembers, MaxGroupTitleRunes: 100}
}

// Admission says whether the pipeline behind the bus can take more
// messages now. pgbus.Backlog is the local bus's; on AWS there is none (SQS
// queues and Lambda concurrency absorb the excess).
type Admission interface {
	Overloaded() bool
}

// ClaimPublisher is a bus that can record a send's client_message_id in
// the statement that publishes it (pgbus.Bus): a first attempt then costs
// one round trip instead of two. It publishes env only if the claim is new
// and reports whether it was.
type ClaimPublisher interface {
	PublishClaimed(ctx context.Context, claim db.InsertMessageRequestParams, env events.Envelope) (claimed bool, err error)
}

// Service implements the chat operations shared by REST and WebSocket.
type Service struct {
	pool      *pgxpool.Pool
	q         *db.Queries
	bus       events.Publisher
	claims    ClaimPublisher // bus, when it can claim; nil otherwise
	media     MediaStore
	limits    Limits
	limiter   *limiter
	uploads   *uploadSlots
	admission Admission // nil: never refuse for overload
	now       func() time.Time
	logger    *slog.Logger

	// Facts that never change, kept so that the send path does not ask
	// the database for them on every message (sizes in cache.go).
	direct  *boundedCache[[2]int64, uuid.UUID] // user pair (lower id first) → direct conversation
	members *boundedCache[uuid.UUID, []int64]  // direct conversation → its two participants
	groups  *boundedCache[uuid.UUID, struct{}] // conversations known to be groups (a kind never changes)
	// A user's blocks change, so each entry carries when it was read and
	// is trusted for blockCacheTTL only (blocks.go).
	blockLists *boundedCache[int64, blockList]
	// presenceConns answers whether a user is online (WithPresence).
	presenceConns PresenceConnections
}

// Option configures a Service beyond its required dependencies.
type Option func(*Service)

// WithAdmission refuses sends and typing with CodeOverloaded while a says
// the pipeline is overloaded.
func WithAdmission(a Admission) Option { return func(s *Service) { s.admission = a } }

// NewService wires the service. media may be nil when no media store is
// configured: media messages are then refused and uploads answer
// CodeNotConfigured.
func NewService(pool *pgxpool.Pool, bus events.Publisher, media MediaStore, limits Limits, logger *slog.Logger, opts ...Option) *Service {
	s := &Service{
		pool: pool, q: db.New(pool), bus: bus, media: media, limits: limits,
		limiter: newLimiter(limits.Rates, time.Now),
		uploads: newUploadSlots(limits.MaxUploads, limits.MaxUserUploads),
		now:     time.Now, logger: logger,
		direct:     newBoundedCache[[2]int64, uuid.UUID](maxCachedDirect),
		members:    newBoundedCache[uuid.UUID, []int64](maxCachedMembers),
		groups:     newBoundedCache[uuid.UUID, struct{}](maxCachedGroups),
		blockLists: newBoundedCache[int64, blockList](maxCachedBlockLists),
	}
	s.claims, _ = bus.(ClaimPublisher)
	for _, o := range opts {
		o(s)
	}
	return s
}

// admit refuses new work while the pipeline is overloaded. Only sends and
// typing ask: they are nearly all of the traffic, and refusing them is what
// lets the queues drain. Receipts, settings and deletions are few (one per
// user action, under the same per-user rate limit) and a refused one would
// leave devices disagreeing; reads do not touch the queues at all.
func (s *Service) admit() error {
	if s.admission != nil && s.admission.Overloaded() {
		return &Error{Code: CodeOverloaded, Message: "the server is overloaded; retry shortly", RetryAfter: RetryAfter}
	}
	return nil
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// now truncated to PostgreSQL's microsecond precision, so an id's timestamp
// reads back exactly as it was sent.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// allowWrite takes one of the user's tokens for w; what names the writes
// in the refusal ("messages", "uploads"), which says when to retry.
func (s *Service) allowWrite(userID int64, w Write, what string) error {
	ok, wait := s.limiter.take(w, userID)
	if !ok {
		return &Error{Code: CodeRateLimited, RetryAfter: wait,
			Message: fmt.Sprintf("too many %s; retry in %s", what, wait.Round(time.Millisecond))}
	}
	return nil
}

// publish puts envs on the bus; a refusal asks the client to retry.
func (s *Service) publish(ctx context.Context, envs ...events.Envelope) error {
	if err := s.bus.Publish(ctx, envs...); err != nil {
		return unavailable("the event bus", err)
	}
	return nil
}

// txWithEvents runs fn in a transaction, handing it a context through
// which what it publishes is written by the local bus in that transaction
// (db.Scope), so that the writes and their events commit together, and
// no second connection waits for the bus while the transaction holds one.
// It reports whether the bus joined the transaction; one that cannot
// (EventBridge) publishes at once, before the commit.
func (s *Service) txWithEvents(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) (joined bool, err error) {
	var scope *db.Scope
	err = db.InTx(ctx, s.pool, false, func(tx pgx.Tx) error {
		var sctx context.Context
		sctx, scope = db.WithScope(ctx, tx)
		return fn(sctx, tx)
	})
	if scope == nil {
		return false, err
	}
	if err == nil {
		scope.Committed()
	}
	return scope.Joined(), err
}

// Ping checks the database, for health checks.
func (s *Service) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
