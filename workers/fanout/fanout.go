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
// Events come in batches (HandleBatch): one connection lookup for every user
// the batch concerns, the posts of different connections in parallel (each
// connection's frames in batch order), the batch's delivery receipts as one
// publish.
//
// One connection never holds up the others, nor the events queued behind
// these: no post waits on a 410 Gone. A connection that answers 410 is
// removed from the connection store, unless it connected moments ago (see
// connectGrace), when its record is kept and the post skipped. A throttled
// post is retried within a small budget, and any other failure is logged
// and skipped. The one post worth retrying after a 410 is the greeting,
// which can race its connection's handshake: it is retried apart from the
// batch (see greet). Only a failed connection lookup or a failed publish
// fails events, so that the bus redelivers them.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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
	ByUsers(ctx context.Context, userIDs []int64) (map[int64][]connstore.Connection, error)
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
	_ Connections         = connstore.Store(nil)
	_ Poster              = (*apigatewaymanagementapi.Client)(nil)
	_ events.Handler      = (*Fanout)(nil)
	_ events.BatchHandler = (*Fanout)(nil)
	_ events.EarlyHandler = (*Fanout)(nil)
)

const (
	// maxConcurrentPosts bounds the connections posted to at once for one
	// batch: enough to keep one slow connection from holding up the
	// others, small enough not to trip API Gateway's account rate limit
	// from a single busy worker.
	maxConcurrentPosts = 32

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
	early    early
	// expiredFrame tells a connection whose token expired why it is
	// closed (see WithExpiredFrame).
	expiredFrame []byte
	// presence debounces and announces presence (WithPresence); nil:
	// presence events are ignored.
	presence *presence
	// feed reads the entries posted to connections in feed mode
	// (WithFeed, feed.go); nil: those are served like the others.
	feed FeedEntries
}

// Closer closes a connection: the Management API's DeleteConnection, which
// *apigatewaymanagementapi.Client and the local gateway serve. A Poster
// that is also a Closer closes connections whose token has expired.
type Closer interface {
	DeleteConnection(ctx context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
}

var _ Closer = (*apigatewaymanagementapi.Client)(nil)

// Option configures a Fanout.
type Option func(*Fanout)

// WithExpiredFrame sets the frame sent to a connection whose token has
// expired before it is closed.
func WithExpiredFrame(frame []byte) Option {
	return func(f *Fanout) { f.expiredFrame = frame }
}

// New returns a Fanout. media may be nil: frames then carry no media URLs.
// A nil logger discards logs.
func New(conns Connections, poster Poster, bus events.Publisher, media MediaURLs, logger *slog.Logger, opts ...Option) *Fanout {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Fanout{
		conns:    conns,
		poster:   poster,
		bus:      bus,
		media:    media,
		logger:   logger,
		now:      time.Now,
		retry:    retry.Policy{Attempts: 3, Base: 50 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.5},
		greeting: retry.Policy{Attempts: 6, Base: 25 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: 0.5},
		greeters: make(chan struct{}, maxPendingGreetings),
		early:    early{byID: map[string]*earlyResult{}},
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Handle pushes one event.
func (f *Fanout) Handle(ctx context.Context, e events.Envelope) error {
	return f.HandleBatch(ctx, []events.Envelope{e})[0]
}

// push is what one event sends: a frame, to the live connections of some
// users (skipping one connection) or to one given connection.
type push struct {
	frame []byte
	users []int64
	skip  string                // the connection a message came from: it has it
	conn  *connstore.Connection // the greeting's one connection
	sent  *events.MessageSentV1 // a message: its receipt follows delivery
	// recipients is how many of users, from the first, count for the
	// receipt: a message is delivered once a recipient device has it.
	recipients int
	// presence is an online announcement waiting for its audience
	// (presenceAudience); hidden is its frame for the users in hiders,
	// who hide their own last seen and so see no one's.
	presence *events.PresenceV1
	hidden   []byte
	hiders   map[int64]bool
	// feedChange: the frame announces a change of the sync feed, which
	// connections in feed mode get from the feed instead (feed.go).
	feedChange bool
	// feed is an announcement of feed entries, posted from the feed.
	feed *events.FeedAppendedV1
}

// HandleBatch pushes a batch of events. Event types fanout does not know
// are ignored. Events the fast path (HandleEarly) posted already are not
// posted again: the batch publishes their receipts.
func (f *Fanout) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	prior, err := f.early.collect(ctx, envs)
	if err != nil {
		errs := make([]error, len(envs))
		for i := range errs {
			errs[i] = fmt.Errorf("fanout: %w", err)
		}
		return errs
	}
	s := f.send(ctx, envs, prior)
	if err := ctx.Err(); err != nil {
		return failAll(s.errs, s.pushes, fmt.Errorf("fanout: %w", err))
	}
	f.receipts(ctx, s)
	f.feedReceipts(ctx, s)
	return s.errs
}

// sent is what send did with a batch.
type sent struct {
	envs   []events.Envelope
	pushes []*push
	errs   []error
	conns  map[int64][]connstore.Connection
	// reached says, per event, which of a message's recipients it reached
	// a device of; held, which hold a connection in feed mode (the feed
	// confirms or pushes the message to them).
	reached [][]int64
	held    [][]int64
	// feed are the announced entries posted; delivered, by post index
	// (feed entry k at len(envs)+k), the connections that got each.
	feed      []feedPost
	delivered map[int]map[string]bool
	// feedOut is, per announcement, the receipts and push requests its
	// entries leave to publish (feedReceipts).
	feedOut [][]feedReceipt
}

// send plans and posts a batch: one connection lookup, then every
// connection's frames. prior (nil, or one entry per event) holds what the
// fast path did already: events it posted are not posted again, and only
// their senders are looked up, for the receipts.
func (f *Fanout) send(ctx context.Context, envs []events.Envelope, prior []*earlyResult) sent {
	s := sent{envs: envs, pushes: make([]*push, len(envs)), errs: make([]error, len(envs)),
		reached: make([][]int64, len(envs)), held: make([][]int64, len(envs)), feedOut: make([][]feedReceipt, len(envs))}
	done := func(i int) bool { return prior != nil && prior[i] != nil && prior[i].posted }
	var users []int64
	for i, e := range envs {
		if done(i) {
			// Posted: only a message's receipt (or push request) is left.
			s.reached[i], s.held[i], s.feedOut[i] = prior[i].reached, prior[i].held, prior[i].feedOut
			if e.Type == events.TypeMessageSent {
				var m events.MessageSentV1
				if err := e.Unmarshal(&m); err != nil {
					s.errs[i] = err
					continue
				}
				s.pushes[i] = &push{sent: &m}
				if len(s.reached[i]) > 0 {
					users = append(users, m.SenderID)
				}
			}
			continue
		}
		p, err := f.plan(ctx, e)
		if err != nil {
			s.errs[i] = err
			continue
		}
		s.pushes[i] = p
		if p != nil && p.presence != nil {
			online := *p.presence
			defer func() {
				if s.errs[i] != nil {
					// Retried (by the queued copy, or redelivered):
					// the retry must still be news.
					f.presence.unannounce(online)
				}
			}()
		}
	}
	if f.presence != nil {
		f.presenceAudience(ctx, s.pushes, s.errs)
	}
	for i, p := range s.pushes {
		if p != nil && !done(i) {
			users = append(users, p.users...)
		}
	}
	// One lookup before any post, so that a failed lookup retries the
	// events without having sent half of them.
	conns, err := f.conns.ByUsers(ctx, unique64(users))
	if err != nil {
		failAll(s.errs, s.pushes, fmt.Errorf("fanout: connections of %d users: %w", len(users), err))
		return s
	}
	expired := takeExpired(f.now(), conns)
	if slices.ContainsFunc(s.pushes, func(p *push) bool { return p != nil && p.frame != nil }) {
		// Closed by a batch that posts; a queued copy of what the fast
		// path posted (only receipts left) leaves that to the fast path,
		// which met the same connections moments ago.
		f.closeExpired(ctx, expired)
	}
	s.conns = conns
	var out posts
	var greetings []int
	for i, p := range s.pushes {
		if p == nil || done(i) {
			continue
		}
		if p.conn != nil {
			greetings = append(greetings, i)
			continue
		}
		for _, c := range f.targets(p, conns) {
			out.add(i, c, p.frameFor(c.UserID))
		}
	}
	postEnvs := envs
	if f.feed != nil {
		feed, err := f.planFeed(ctx, s.pushes, conns)
		if err != nil {
			for i, p := range s.pushes {
				if p != nil && p.feed != nil {
					s.errs[i] = err
				}
			}
		}
		s.feed = feed
		postEnvs = f.addFeed(&out, envs, feed, conns)
	}
	// Greetings go to connections of their own, alongside the batch's
	// other posts rather than before them: a burst of connects must not
	// hold up the messages behind it.
	var greeters errgroup.Group
	greeters.SetLimit(maxConcurrentPosts)
	for _, i := range greetings {
		greeters.Go(func() error {
			s.errs[i] = f.greet(events.EventContext(ctx, envs[i]), s.pushes[i].frame, *s.pushes[i].conn)
			return nil
		})
	}
	delivered := f.deliver(ctx, postEnvs, &out)
	_ = greeters.Wait() // the goroutines return nil
	s.delivered = delivered
	for i, p := range s.pushes {
		if p != nil && p.sent != nil && !done(i) {
			s.reached[i] = reachedRecipient(p, conns, delivered[i])
			s.held[i] = f.feedHolders(p, conns)
		}
	}
	f.planFeedReceipts(ctx, &s)
	return s
}

// plan decodes one event into what it sends, or nil for an event that sends
// nothing.
func (f *Fanout) plan(ctx context.Context, e events.Envelope) (*push, error) {
	var fr wsproto.Frame
	p := &push{}
	switch e.Type {
	case events.TypeMessageSent:
		var m events.MessageSentV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		// Recipient devices first (they decide the receipt), then the
		// sender's other devices.
		fr, p.sent, p.skip = f.newMessageFrame(ctx, m), &m, m.SourceConnectionID
		rs := recipientsOf(m)
		p.users, p.recipients = append(rs, m.SenderID), len(rs)
		if m.WithheldFromRecipient {
			// The recipient blocks the sender: only the sender's other
			// devices get it, and no receipt follows (none would be true).
			p.sent, p.users, p.recipients = nil, []int64{m.SenderID}, 0
		}
	case events.TypeMessageRead:
		var m events.MessageReadV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		// All of the reader's devices, so that the others clear their
		// unread badges too.
		fr, p.users = messageReadFrame(m), append(slices.Clone(m.NotifyUserIDs), m.ReaderID)
	case events.TypeTyping:
		var m events.TypingV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		fr, p.users = typingFrame(m), []int64{m.RecipientID}
		if m.RecipientID == 0 {
			p.users = m.MemberIDs
		}
	case events.TypeThumbnailReady:
		var m events.ThumbnailReadyV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		fr, p.users = f.messageUpdatedFrame(ctx, m), []int64{m.SenderID, m.RecipientID}
		if m.RecipientID == 0 {
			p.users = append([]int64{m.SenderID}, m.MemberIDs...)
		}
		if m.WithheldFromRecipient {
			p.users = p.users[:1] // a blocker never learns of the message
		}
	// Changes of a message go to its participants (the sender's other
	// devices included), skipping the connection the change came from.
	case events.TypeMessageEdited:
		var m events.MessageEditedV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		fr, p.users, p.skip = messageEditedFrame(m), m.ParticipantIDs, m.SourceConnectionID
	case events.TypeMessageUnsent:
		var m events.MessageUnsentV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		fr, p.users, p.skip = messageUnsentFrame(m), m.ParticipantIDs, m.SourceConnectionID
	case events.TypeReactionChanged:
		var m events.ReactionChangedV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		fr, p.users, p.skip = reactionChangedFrame(m), m.ParticipantIDs, m.SourceConnectionID
	case events.TypeGroupChanged:
		// Its system message, to the members and to those it removed.
		var m events.GroupChangedV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		fr, p.users = systemMessageFrame(e, m), m.Audience()
	case events.TypePresence:
		var m events.PresenceV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		switch {
		case f.presence == nil:
		case m.Online && f.presence.online(m):
			return &push{presence: &m}, nil // the audience comes with the batch's
		case !m.Online:
			f.offline(m)
		}
		return nil, nil
	case events.TypeFeedAppended:
		var m events.FeedAppendedV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		p.feed = &m
		for _, en := range m.Entries {
			p.users = append(p.users, en.UserID)
		}
		return p, nil
	case events.TypeConnected:
		var m events.ConnectedV1
		if err := e.Unmarshal(&m); err != nil {
			return nil, err
		}
		// The event is published by $connect, so it is as old as the
		// connection.
		fr, p.conn = wsproto.NewConnected(), &connstore.Connection{ID: m.ConnectionID, UserID: m.UserID, ConnectedAt: e.OccurredAt}
	default:
		return nil, nil
	}
	b, err := wsproto.Encode(fr)
	if err != nil {
		return nil, fmt.Errorf("fanout: %s %s: %w", e.Type, e.ID, err)
	}
	p.frame, p.feedChange = b, isFeedChange(e.Type)
	return p, nil
}

// targets lists the connections a push goes to, without duplicates: a
// change of the sync feed skips the connections in feed mode.
func (f *Fanout) targets(p *push, conns map[int64][]connstore.Connection) []connstore.Connection {
	if p.feed != nil {
		return nil // an announcement of feed entries, posted from the feed
	}
	lists := make([][]connstore.Connection, 0, len(p.users))
	for _, u := range unique64(p.users) {
		lists = append(lists, conns[u])
	}
	out := unique(p.skip, lists...)
	if p.feedChange {
		out = slices.DeleteFunc(out, f.inFeed)
	}
	return out
}

// feedHolders answers the recipients of a message who hold a connection in
// feed mode.
func (f *Fanout) feedHolders(p *push, conns map[int64][]connstore.Connection) []int64 {
	var out []int64
	for _, u := range unique64(p.users[:p.recipients]) {
		if slices.ContainsFunc(conns[u], f.inFeed) {
			out = append(out, u)
		}
	}
	return out
}

// receipts publishes, in one call, a MessageDelivered for every message of
// the batch that reached one of its recipient's devices, and a
// PushRequested for every other one (unless withheld from its recipient),
// then tells the senders of the delivered ones. A failed publish fails
// those messages' events, so they are delivered again and the publish
// retried.
func (f *Fanout) receipts(ctx context.Context, s sent) {
	var envs []events.Envelope
	var which []int
	var frames posts
	for i, p := range s.pushes {
		if p == nil || p.sent == nil || s.errs[i] != nil {
			continue
		}
		// A receipt for each recipient reached (a group's members one by
		// one), a push request for each other one.
		var first *events.MessageDeliveredV1
		var mine []events.Envelope // published only if every one could be built
		for _, u := range recipientsOf(*p.sent) {
			if !slices.Contains(s.reached[i], u) {
				if p.sent.WithheldFromRecipient || slices.Contains(s.held[i], u) {
					// Never pushed (like a muted conversation), or
					// confirmed or pushed from the feed (feed.go).
					continue
				}
				env, err := f.pushEvent(*p.sent, u)
				if err != nil {
					s.errs[i] = err
					break
				}
				mine = append(mine, events.Caused(ctx, s.envs[i], env))
				continue
			}
			d, env, err := f.deliveredEvent(*p.sent, u)
			if err != nil {
				s.errs[i] = err
				break
			}
			mine = append(mine, events.Caused(ctx, s.envs[i], env))
			if first == nil {
				first = &d
			}
		}
		if s.errs[i] != nil {
			continue
		}
		for _, env := range mine {
			envs, which = append(envs, env), append(which, i)
		}
		if first == nil {
			continue
		}
		b, err := wsproto.Encode(messageDeliveredFrame(*first))
		if err != nil {
			s.errs[i] = fmt.Errorf("fanout: %w", err)
			continue
		}
		// All of the sender's devices, the sending one included, but
		// those in feed mode, which get the receipt from the feed.
		for _, c := range s.conns[p.sent.SenderID] {
			if !f.inFeed(c) {
				frames.add(i, c, b)
			}
		}
	}
	if len(envs) == 0 {
		return
	}
	// One publish for the batch, traced under its first event (a batch of
	// one when idle); each published event names its own cause.
	if err := f.bus.Publish(events.EventContext(ctx, s.envs[which[0]]), envs...); err != nil {
		err = fmt.Errorf("fanout: publish %d delivery receipts and push requests: %w", len(envs), err)
		for _, i := range which {
			s.errs[i] = err
		}
		return
	}
	f.deliver(ctx, s.envs, &frames)
}

// reachedRecipient answers the recipients of which a device got the push.
func reachedRecipient(p *push, conns map[int64][]connstore.Connection, got map[string]bool) []int64 {
	var out []int64
	for _, u := range unique64(p.users[:p.recipients]) {
		for _, c := range conns[u] {
			if c.ID != p.skip && got[c.ID] {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// recipientsOf lists who a message is for: its recipient, or a group's
// members (the sender aside).
func recipientsOf(m events.MessageSentV1) []int64 {
	if m.Group() {
		return slices.Clone(m.MemberIDs)
	}
	return []int64{m.RecipientID}
}

// receiptKey names a recipient's receipt (and push request) of message m,
// for the id derived from it: the message's own for a direct message, as
// it always was, and the message's and member's in a group.
func receiptKey(m events.MessageSentV1, recipient int64) string {
	if m.Group() {
		return fmt.Sprintf("%s:%d", m.MessageID, recipient)
	}
	return m.MessageID
}

// deliveredEvent is recipient's receipt of message m, with an id derived
// from the message's so that a redelivered MessageSent yields the same
// event.
func (f *Fanout) deliveredEvent(m events.MessageSentV1, recipient int64) (events.MessageDeliveredV1, events.Envelope, error) {
	now := f.now().UTC()
	id := uuid.NewSHA1(uuid.MustParse(deliveredNamespace), []byte("delivered:"+receiptKey(m, recipient))).String()
	d := events.MessageDeliveredV1{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		SenderID:       m.SenderID,
		RecipientID:    recipient,
		DeliveredAt:    now,
		Group:          m.Group(),
	}
	env, err := events.New(id, now, recipient, m.ConversationID, d)
	if err != nil {
		return d, env, fmt.Errorf("fanout: delivered event of message %s: %w", m.MessageID, err)
	}
	return d, env, nil
}

// pushEvent asks the notifier to push message m, which reached no device
// of its recipient, with an id derived from the message's so that a
// redelivered MessageSent yields the same event.
func (f *Fanout) pushEvent(m events.MessageSentV1, recipient int64) (events.Envelope, error) {
	id := uuid.NewSHA1(uuid.MustParse(deliveredNamespace), []byte("push:"+receiptKey(m, recipient))).String()
	p := events.PushRequestedV1{
		MessageID: m.MessageID, ConversationID: m.ConversationID, SenderID: m.SenderID, RecipientID: recipient,
		ContentType: m.ContentType, TextContent: m.TextContent, CreatedAt: m.CreatedAt,
	}
	env, err := events.New(id, f.now().UTC(), m.SenderID, m.ConversationID, p)
	if err != nil {
		return env, fmt.Errorf("fanout: push request of message %s: %w", m.MessageID, err)
	}
	return env, nil
}

func failAll(errs []error, pushes []*push, err error) []error {
	for i := range errs {
		if errs[i] == nil && pushes[i] != nil {
			errs[i] = err
		}
	}
	return errs
}

// posts are the frames of a batch, by connection, in batch order.
type posts struct {
	order []string // connection ids, first seen first
	by    map[string]*connPosts
}

type connPosts struct {
	conn   connstore.Connection
	events []int // the event each frame is for
	frames [][]byte
}

func (ps *posts) add(event int, c connstore.Connection, frame []byte) {
	if ps.by == nil {
		ps.by = map[string]*connPosts{}
	}
	cp, ok := ps.by[c.ID]
	if !ok {
		cp = &connPosts{conn: c}
		ps.by[c.ID] = cp
		ps.order = append(ps.order, c.ID)
	}
	cp.events = append(cp.events, event)
	cp.frames = append(cp.frames, frame)
}

// deliver posts every connection's frames, in order, connections in
// parallel, and reports per event which connections got its frame. A
// connection that is gone gets none of its remaining frames. envs, when
// given, are the events ps's indexes name: each post is traced under its
// event (events.EventContext).
func (f *Fanout) deliver(ctx context.Context, envs []events.Envelope, ps *posts) map[int]map[string]bool {
	got := map[int]map[string]bool{}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(maxConcurrentPosts)
	for _, id := range ps.order {
		cp := ps.by[id]
		g.Go(func() error {
			for k, frame := range cp.frames {
				pctx := ctx
				if envs != nil {
					pctx = events.EventContext(ctx, envs[cp.events[k]])
				}
				ok, gone := f.postOne(pctx, frame, cp.conn)
				if ok {
					mu.Lock()
					if got[cp.events[k]] == nil {
						got[cp.events[k]] = map[string]bool{}
					}
					got[cp.events[k]][id] = true
					mu.Unlock()
				}
				if gone || ctx.Err() != nil {
					return nil
				}
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil
	return got
}

// postOne sends data to one connection and reports whether it arrived and
// whether the connection is gone.
func (f *Fanout) postOne(ctx context.Context, data []byte, c connstore.Connection) (delivered, gone bool) {
	attempts, err := f.attempt(ctx, data, c)
	if err == nil {
		return true, false
	}
	f.failed(ctx, c, attempts, err)
	return false, isGone(err)
}

// attempt posts data to one connection, retrying throttled posts within
// f.retry's budget, and returns the number of attempts and the last error.
// A 410 is returned at once.
func (f *Fanout) attempt(ctx context.Context, data []byte, c connstore.Connection) (int, error) {
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
func (f *Fanout) greet(ctx context.Context, data []byte, c connstore.Connection) error {
	attempts, err := f.attempt(ctx, data, c)
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
		return fmt.Errorf("fanout: greeting: %w", err)
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
		_, err := f.attempt(ctx, data, c)
		return err
	}, func(err error) bool { return isGone(err) && f.young(c) }, nil)
	if err != nil {
		f.failed(ctx, c, attempts, err)
	}
}

// takeExpired takes the connections whose token has expired out of conns,
// and returns them: they get nothing more but the frame saying why.
func takeExpired(now time.Time, conns map[int64][]connstore.Connection) []connstore.Connection {
	var expired []connstore.Connection
	for user, cs := range conns {
		live := slices.DeleteFunc(cs, func(c connstore.Connection) bool {
			if c.TokenExpired(now) {
				expired = append(expired, c)
				return true
			}
			return false
		})
		if len(live) == 0 {
			delete(conns, user)
		} else {
			conns[user] = live
		}
	}
	return expired
}

// closeExpired sends connections whose token has expired the frame saying
// why, and closes them. API Gateway has no timer to close them when the
// token expires; this closes them on the first push meant for them.
func (f *Fanout) closeExpired(ctx context.Context, expired []connstore.Connection) {
	closer, ok := f.poster.(Closer)
	var g errgroup.Group
	g.SetLimit(maxConcurrentPosts)
	for _, c := range expired {
		g.Go(func() error {
			if f.expiredFrame != nil {
				if _, gone := f.postOne(ctx, f.expiredFrame, c); gone {
					return nil
				}
			}
			if !ok {
				return nil
			}
			_, err := closer.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(c.ID)})
			switch {
			case isGone(err):
				f.forget(ctx, c)
			case err != nil:
				// Its frames are refused anyway; the next push tries again.
				f.logger.WarnContext(ctx, "fanout: close connection whose token expired", "connection_id", c.ID, "err", err)
			default:
				f.logger.InfoContext(ctx, "fanout: closed connection whose token expired", "connection_id", c.ID, "user_id", c.UserID)
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil
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
	if f.presence != nil {
		// Its $disconnect, if it still runs, finds no record and announces
		// nothing: the offline is held here instead, and announced after
		// the grace unless another connection of the user is live then.
		f.offline(events.PresenceV1{UserID: c.UserID, At: f.now().UTC()})
	}
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
