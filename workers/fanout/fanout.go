// Package fanout is the worker that pushes events to users' live WebSocket
// connections through the API Gateway Management API (PostToConnection). The
// same SDK client talks to API Gateway on AWS and to the local gateway
// elsewhere; only the endpoint differs (see NewManagementClient).
//
// Delivery is at least once: a redelivered or replayed event sends its frames
// again. Clients dedupe by message id (newMessage, messageUpdated) and treat
// the other frames as idempotent state; a client that missed a frame catches
// up over REST from the last sequence it saw.
//
// One connection never holds up the others, nor the events queued behind
// this one: no post waits on a 410 Gone. A connection that answers 410 is
// removed from the connection store, unless it connected moments ago (see
// connectGrace), when its record is kept and the post skipped. A throttled
// post is retried within a small budget, and any other failure is logged
// and skipped. The one post worth retrying after a 410 is the greeting,
// which can race its connection's handshake: it is retried apart from the
// event (see greet). Only a failed connection lookup or a failed publish
// makes Handle return an error, so that the bus redelivers the event.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/retry"
	"github.com/parleychat/parley/internal/wsproto"
)

// Connections is the part of the connection store fanout uses.
type Connections interface {
	ByUser(ctx context.Context, userID int64) ([]connstore.Connection, error)
	Delete(ctx context.Context, id string) error
}

// Poster sends one message to one connection; *apigatewaymanagementapi.Client
// implements it.
type Poster interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
}

// MediaURLs presigns downloads of media objects.
type MediaURLs interface {
	PresignGet(ctx context.Context, key string) (string, time.Time, error)
}

var (
	_ Connections    = connstore.Store(nil)
	_ Poster         = (*apigatewaymanagementapi.Client)(nil)
	_ events.Handler = (*Fanout)(nil)
)

const (
	// maxConcurrentPosts bounds the posts in flight for one event: enough
	// for a user's few devices, small enough not to trip API Gateway's
	// account rate limit from a single busy worker.
	maxConcurrentPosts = 8

	// connectGrace is API Gateway's $connect integration timeout. A
	// connection recorded more recently may still be in its handshake,
	// when API Gateway answers 410 as well: its record is kept, since
	// deleting it would silence a live device, but the post is not
	// retried, since that would make every event to its user wait (a
	// crashed gateway leaves many such records). The device catches up
	// over REST; a connection that really closed is removed by
	// $disconnect, by its gateway's next start, or by a 410 once older.
	connectGrace = 29 * time.Second
	// maxPendingGreetings bounds the greetings being retried at once; a
	// greeting that finds no room is dropped (it is best effort).
	maxPendingGreetings = 64
	// greetingBudget bounds one greeting's retries, waits and posts
	// included.
	greetingBudget = 2 * time.Second

	// deliveredNamespace makes MessageDelivered event ids from message
	// ids, so that a redelivered MessageSent yields the same event id.
	deliveredNamespace = "5f0b8d0e-6a51-4c1f-9d59-1b0f5e7a2c43"
)

// Fanout handles events for the fanout worker.
type Fanout struct {
	conns  Connections
	poster Poster
	bus    events.Publisher
	media  MediaURLs
	logger *slog.Logger
	now    func() time.Time
	// retry is the policy for throttled posts: a small total budget
	// (three attempts, at most 150 ms of waits), since every wait holds up
	// the events queued behind this one, other users' included. Half of
	// each wait is random so that posts throttled together do not retry
	// together.
	retry retry.Policy
	// greeting is the policy for a greeting answered 410 by a young
	// connection, whose handshake is likely still finishing (see greet).
	greeting retry.Policy
	// greeters holds a token for each greeting being retried.
	greeters chan struct{}
}

// New returns a Fanout. media may be nil: frames then carry no media URLs.
// A nil logger discards logs.
func New(conns Connections, poster Poster, bus events.Publisher, media MediaURLs, logger *slog.Logger) *Fanout {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Fanout{
		conns:    conns,
		poster:   poster,
		bus:      bus,
		media:    media,
		logger:   logger,
		now:      time.Now,
		retry:    retry.Policy{Attempts: 3, Base: 50 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.5},
		greeting: retry.Policy{Attempts: 6, Base: 25 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: 0.5},
		greeters: make(chan struct{}, maxPendingGreetings),
	}
}

// Handle pushes one event to the connections that should see it. Event
// types fanout does not know are ignored.
func (f *Fanout) Handle(ctx context.Context, e events.Envelope) error {
	switch e.Type {
	case events.TypeMessageSent:
		var m events.MessageSentV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return f.messageSent(ctx, m)
	case events.TypeMessageRead:
		var m events.MessageReadV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		// All of the reader's devices, so that the others clear their
		// unread badges too.
		return f.toUsers(ctx, messageReadFrame(m), append(slices.Clone(m.NotifyUserIDs), m.ReaderID)...)
	case events.TypeTyping:
		var m events.TypingV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return f.toUsers(ctx, typingFrame(m), m.RecipientID)
	case events.TypeThumbnailReady:
		var m events.ThumbnailReadyV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return f.toUsers(ctx, f.messageUpdatedFrame(ctx, m), m.SenderID, m.RecipientID)
	case events.TypeConnected:
		var m events.ConnectedV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		// The event is published by $connect, so it is as old as the
		// connection.
		c := connstore.Connection{ID: m.ConnectionID, UserID: m.UserID, ConnectedAt: e.OccurredAt}
		return f.greet(ctx, c)
	default:
		return nil
	}
}

func (f *Fanout) messageSent(ctx context.Context, m events.MessageSentV1) error {
	// Both lookups come before any post, so that a failed lookup retries
	// the event without having sent half of it.
	recipients, err := f.byUser(ctx, m.RecipientID)
	if err != nil {
		return err
	}
	senders, err := f.byUser(ctx, m.SenderID)
	if err != nil {
		return err
	}
	fr, err := wsproto.Encode(f.newMessageFrame(ctx, m))
	if err != nil {
		return fmt.Errorf("fanout: message %s: %w", m.MessageID, err)
	}
	// Recipient connections first: delivered[:n] says whether the
	// recipient got it. The source connection already has the message.
	targets := unique(m.SourceConnectionID, recipients, senders)
	n := len(unique(m.SourceConnectionID, recipients))
	delivered := f.post(ctx, fr, targets)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fanout: message %s: %w", m.MessageID, err)
	}
	if !slices.Contains(delivered[:n], true) {
		return nil
	}
	d, err := f.publishDelivered(ctx, m)
	if err != nil {
		return err
	}
	// The receipt goes to the sender from here, not through another round
	// on the bus: all of the sender's devices, the sending one included.
	return f.send(ctx, messageDeliveredFrame(d), senders)
}

// publishDelivered records the receipt for the persister (delivered_at).
func (f *Fanout) publishDelivered(ctx context.Context, m events.MessageSentV1) (events.MessageDeliveredV1, error) {
	now := f.now().UTC()
	id := uuid.NewSHA1(uuid.MustParse(deliveredNamespace), []byte("delivered:"+m.MessageID)).String()
	d := events.MessageDeliveredV1{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		SenderID:       m.SenderID,
		RecipientID:    m.RecipientID,
		DeliveredAt:    now,
	}
	env, err := events.New(id, now, m.RecipientID, m.ConversationID, d)
	if err != nil {
		return d, fmt.Errorf("fanout: delivered event of message %s: %w", m.MessageID, err)
	}
	if err := f.bus.Publish(ctx, env); err != nil {
		return d, fmt.Errorf("fanout: publish delivered event of message %s: %w", m.MessageID, err)
	}
	return d, nil
}

// toUsers sends fr to every live connection of the given users.
func (f *Fanout) toUsers(ctx context.Context, fr wsproto.Frame, userIDs ...int64) error {
	var all [][]connstore.Connection
	for _, id := range unique64(userIDs) {
		cs, err := f.byUser(ctx, id)
		if err != nil {
			return err
		}
		all = append(all, cs)
	}
	return f.send(ctx, fr, unique("", all...))
}

func (f *Fanout) send(ctx context.Context, fr wsproto.Frame, targets []connstore.Connection) error {
	b, err := wsproto.Encode(fr)
	if err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	f.post(ctx, b, targets)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fanout: %s frame: %w", fr.FrameType(), err)
	}
	return nil
}

func (f *Fanout) byUser(ctx context.Context, userID int64) ([]connstore.Connection, error) {
	cs, err := f.conns.ByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("fanout: connections of user %d: %w", userID, err)
	}
	return cs, nil
}

// post sends data to each target, a few at a time, and reports which posts
// arrived. Failures are handled per connection and never returned.
func (f *Fanout) post(ctx context.Context, data []byte, targets []connstore.Connection) []bool {
	delivered := make([]bool, len(targets))
	var g errgroup.Group
	g.SetLimit(maxConcurrentPosts)
	for i, c := range targets {
		g.Go(func() error {
			delivered[i] = f.postOne(ctx, data, c)
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil
	return delivered
}

// postOne sends data to one connection and reports whether it arrived.
func (f *Fanout) postOne(ctx context.Context, data []byte, c connstore.Connection) bool {
	attempts, err := f.deliver(ctx, data, c)
	if err == nil {
		return true
	}
	f.failed(ctx, c, attempts, err)
	return false
}

// deliver posts data to one connection, retrying throttled posts within
// f.retry's budget, and returns the number of attempts and the last error.
// A 410 is returned at once.
func (f *Fanout) deliver(ctx context.Context, data []byte, c connstore.Connection) (int, error) {
	in := &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(c.ID), Data: data}
	return f.retry.Do(ctx, func(ctx context.Context) error {
		_, err := f.poster.PostToConnection(ctx, in)
		return err
	}, isThrottle, nil)
}

// failed handles a post to c that did not arrive.
func (f *Fanout) failed(ctx context.Context, c connstore.Connection, attempts int, err error) {
	gone := isGone(err)
	switch {
	case ctx.Err() != nil:
		// The caller returns the cancellation; the event is redelivered.
	case gone && f.young(c):
		f.logger.DebugContext(ctx, "fanout: new connection answered 410; keeping its record",
			"connection_id", c.ID, "user_id", c.UserID)
	case gone:
		f.forget(ctx, c)
	default:
		f.logger.WarnContext(ctx, "fanout: post to connection failed",
			"connection_id", c.ID, "user_id", c.UserID, "attempts", attempts, "err", err)
	}
}

// young reports whether c connected within connectGrace, when a 410 may
// only mean that its handshake is not done yet.
func (f *Fanout) young(c connstore.Connection) bool {
	return f.now().Sub(c.ConnectedAt) < connectGrace
}

// greet sends the greeting to a new connection. $connect publishes the
// event before it returns, and API Gateway (like the local gateway) answers
// 410 until the handshake is done, so the first post can lose that race. A
// young connection's 410 is then retried for a moment in a goroutine of its
// own, so that no other event waits on it: Handle returns at once. The
// greeting is best effort (the client works without it), so a retry that
// finds maxPendingGreetings already running is dropped, and on Lambda one
// still pending when the invocation returns resumes with the next one or is
// lost with the environment.
func (f *Fanout) greet(ctx context.Context, c connstore.Connection) error {
	fr := wsproto.NewConnected()
	data, err := wsproto.Encode(fr)
	if err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	attempts, err := f.deliver(ctx, data, c)
	if err == nil {
		return nil
	}
	if isGone(err) && f.young(c) && ctx.Err() == nil {
		select {
		case f.greeters <- struct{}{}:
			go f.greetAgain(context.WithoutCancel(ctx), data, c, err)
			return nil
		default:
		}
	}
	f.failed(ctx, c, attempts, err)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fanout: %s frame: %w", fr.FrameType(), err)
	}
	return nil
}

// greetAgain retries a greeting that greet's post lost with first (a 410),
// while the connection is young, within greetingBudget.
func (f *Fanout) greetAgain(ctx context.Context, data []byte, c connstore.Connection, first error) {
	defer func() { <-f.greeters }()
	ctx, cancel := context.WithTimeout(ctx, greetingBudget)
	defer cancel()
	attempts, err := f.greeting.Do(ctx, func(ctx context.Context) error {
		if err := first; err != nil {
			// The first attempt is greet's: Do waits before the next.
			first = nil
			return err
		}
		_, err := f.deliver(ctx, data, c)
		return err
	}, func(err error) bool { return isGone(err) && f.young(c) }, nil)
	if err != nil {
		f.failed(ctx, c, attempts, err)
	}
}

// forget deletes a connection API Gateway no longer knows, typically one
// whose $disconnect never ran.
func (f *Fanout) forget(ctx context.Context, c connstore.Connection) {
	if err := f.conns.Delete(ctx, c.ID); err != nil {
		// The record expires on its own; the next post retries the delete.
		f.logger.WarnContext(ctx, "fanout: delete gone connection", "connection_id", c.ID, "user_id", c.UserID, "err", err)
		return
	}
	f.logger.InfoContext(ctx, "fanout: deleted gone connection", "connection_id", c.ID, "user_id", c.UserID)
}

func isGone(err error) bool {
	var gone *types.GoneException
	return errors.As(err, &gone)
}

// isThrottle reports whether err means "slow down", worth retrying the same
// post after a pause: the modeled LimitExceededException (429, also sent when
// the client's buffer is full), or an unmodeled 429 from API Gateway's front
// door.
func isThrottle(err error) bool {
	var limit *types.LimitExceededException
	if errors.As(err, &limit) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "LimitExceededException", "TooManyRequestsException", "ThrottlingException":
			return true
		}
	}
	var status interface{ HTTPStatusCode() int }
	return errors.As(err, &status) && status.HTTPStatusCode() == 429
}

// unique flattens connection lists in order, dropping duplicates and skip.
func unique(skip string, lists ...[]connstore.Connection) []connstore.Connection {
	seen := make(map[string]bool)
	var out []connstore.Connection
	for _, l := range lists {
		for _, c := range l {
			if c.ID == skip || seen[c.ID] {
				continue
			}
			seen[c.ID] = true
			out = append(out, c)
		}
	}
	return out
}

func unique64(ids []int64) []int64 {
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if id > 0 && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
