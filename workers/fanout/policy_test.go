package fanout_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/workers/fanout"
)

// These tests pin the post policy with fakes: which posts are made, in
// which order, and which waits are asked for. They measure no time.

// scriptedPoster answers each post from a script by connection id: the
// errors in order, then success. It records every post.
type scriptedPoster struct {
	mu     sync.Mutex
	script map[string][]error
	// always fails every post to a connection with its error.
	always map[string]error
	posts  []string
}

func (p *scriptedPoster) PostToConnection(_ context.Context, in *apigatewaymanagementapi.PostToConnectionInput, _ ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := aws.ToString(in.ConnectionId)
	p.posts = append(p.posts, id)
	if err := p.always[id]; err != nil {
		return nil, err
	}
	if errs := p.script[id]; len(errs) > 0 {
		p.script[id] = errs[1:]
		return nil, errs[0]
	}
	return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
}

func (p *scriptedPoster) posted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.posts)
}

// memConns is an in-memory connection store.
type memConns struct {
	mu      sync.Mutex
	byUser  map[int64][]connstore.Connection
	deleted []string
}

func (m *memConns) ByUsers(_ context.Context, userIDs []int64) (map[int64][]connstore.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int64][]connstore.Connection{}
	for _, u := range userIDs {
		if cs := m.byUser[u]; len(cs) > 0 {
			out[u] = slices.Clone(cs)
		}
	}
	return out, nil
}

func (m *memConns) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleted = append(m.deleted, id)
	for u, cs := range m.byUser {
		m.byUser[u] = slices.DeleteFunc(cs, func(c connstore.Connection) bool { return c.ID == id })
	}
	return nil
}

func (m *memConns) deletedIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.deleted)
}

// sleeps records the waits retries ask for and takes none.
type sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func (s *sleeps) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

func gone() error { return &types.GoneException{Message: aws.String("Gone")} }

func connAt(id string, user int64, connectedAt time.Time) connstore.Connection {
	return connstore.Connection{ID: id, UserID: user, ConnectedAt: connectedAt, LastPingAt: connectedAt, ExpiresAt: connectedAt.Add(time.Hour)}
}

// TestStaleConnectionsCostOnePostEach is the crashed gateway's aftermath:
// user 2's record is of a connection that died seconds ago (young, so kept),
// user 3's an hour-old one that died too (deleted), user 4 is live. Each
// dead connection costs one post and no wait, and the next event, to
// another user, is posted at once.
func TestStaleConnectionsCostOnePostEach(t *testing.T) {
	now := time.Now()
	conns := &memConns{byUser: map[int64][]connstore.Connection{
		2: {connAt("young-dead", 2, now.Add(-2*time.Second))},
		3: {connAt("old-dead", 3, now.Add(-time.Hour))},
		4: {connAt("live", 4, now.Add(-time.Hour))},
	}}
	poster := &scriptedPoster{always: map[string]error{"young-dead": gone(), "old-dead": gone()}}
	b := &bus{}
	f := fanout.New(conns, poster, b, nil, testLogger(t))
	rec := &sleeps{}
	f.SetSleep(rec.sleep)

	for _, to := range []int64{2, 3, 4} {
		m := textMessage(1, to, "")
		handle(t, f, envelope(t, 1, m.ConversationID, m))
	}

	if got, want := poster.posted(), []string{"young-dead", "old-dead", "live"}; !slices.Equal(got, want) {
		t.Errorf("posts %v, want %v: one each, in event order", got, want)
	}
	if w := rec.recorded(); len(w) != 0 {
		t.Errorf("retries waited %v, want no wait for a 410", w)
	}
	if got := conns.deletedIDs(); !slices.Equal(got, []string{"old-dead"}) {
		t.Errorf("deleted %v, want only the old connection (a young one may be mid-handshake)", got)
	}
	if d := delivered(t, b); len(d) != 1 || d[0].RecipientID != 4 {
		t.Errorf("MessageDelivered for %+v, want one, for user 4", d)
	}
}

// TestThrottleBudgetIsSmall: a connection that stays throttled gets a few
// attempts whose waits add up to little, and the other device of the event
// is delivered meanwhile.
func TestThrottleBudgetIsSmall(t *testing.T) {
	now := time.Now()
	conns := &memConns{byUser: map[int64][]connstore.Connection{
		2: {connAt("throttled", 2, now.Add(-time.Hour)), connAt("fine", 2, now.Add(-time.Hour))},
	}}
	poster := &scriptedPoster{always: map[string]error{"throttled": &types.LimitExceededException{Message: aws.String("Limit Exceeded")}}}
	f := fanout.New(conns, poster, &bus{}, nil, testLogger(t))
	rec := &sleeps{}
	f.SetSleep(rec.sleep)

	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))

	posts := poster.posted()
	if n := countOf(posts, "throttled"); n != 3 {
		t.Errorf("%d posts to the throttled connection, want 3", n)
	}
	if n := countOf(posts, "fine"); n != 1 {
		t.Errorf("%d posts to the other device, want 1", n)
	}
	var total time.Duration
	for _, w := range rec.recorded() {
		total += w
	}
	if n := len(rec.recorded()); n != 2 || total > 150*time.Millisecond {
		t.Errorf("waits %v (total %v), want 2 adding up to at most 150ms", rec.recorded(), total)
	}
	if got := conns.deletedIDs(); len(got) != 0 {
		t.Errorf("deleted %v, want none: throttling says nothing about liveness", got)
	}
}

// TestGreetingRetryIsOffTheEventPath: the greeting races its connection's
// handshake and is answered 410 twice. Handle returns after the first post;
// the retries wait in the background while another user's event is posted.
func TestGreetingRetryIsOffTheEventPath(t *testing.T) {
	now := time.Now()
	conns := &memConns{byUser: map[int64][]connstore.Connection{3: {connAt("other", 3, now.Add(-time.Hour))}}}
	poster := &scriptedPoster{script: map[string][]error{"new": {gone(), gone()}}}
	f := fanout.New(conns, poster, &bus{}, nil, testLogger(t))
	// Each wait of the greeting's retry is announced, then held until the
	// test releases it.
	waiting, release := make(chan time.Duration), make(chan struct{})
	f.SetSleep(func(ctx context.Context, d time.Duration) error {
		select {
		case waiting <- d:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})

	greeting := envelope(t, 1, "", events.ConnectedV1{ConnectionID: "new", UserID: 1})
	greeting.OccurredAt = now // the connection is as old as the event
	// Handle must return while the retry waits; one that waited inline
	// would never return, so it is given a context that ends (after the
	// test has given up on it).
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	handled := make(chan error, 1)
	go func() { handled <- f.Handle(ctx, greeting) }()
	// The retry blocks in its first wait (nobody takes from waiting yet):
	// a Handle that waited on it would never return.
	select {
	case err := <-handled:
		if err != nil {
			t.Fatalf("Handle greeting: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Handle waits on the greeting's retry")
	}
	if got := poster.posted(); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("posts when Handle returned: %v, want the one greeting post", got)
	}
	select {
	case <-waiting: // the retry is pending in the background
	case <-time.After(waitFor):
		t.Fatal("the greeting was not retried")
	}

	m := textMessage(2, 3, "")
	handle(t, f, envelope(t, 2, m.ConversationID, m))
	if got := poster.posted(); !slices.Equal(got, []string{"new", "other"}) {
		t.Fatalf("posts %v, want the other user's while the greeting waits", got)
	}

	release <- struct{}{} // second greeting post: 410 again
	select {
	case <-waiting:
	case <-time.After(waitFor):
		t.Fatal("the greeting was not retried after a second 410")
	}
	release <- struct{}{} // third: delivered
	deadline := time.After(waitFor)
	for countOf(poster.posted(), "new") < 3 {
		select {
		case <-deadline:
			t.Fatalf("posts %v, want three greeting posts", poster.posted())
		case <-time.After(time.Millisecond):
		}
	}
	if got := conns.deletedIDs(); len(got) != 0 {
		t.Errorf("deleted %v, want none", got)
	}
}

func countOf(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}
