// Package pipelinetest runs the chat end to end for tests: a fresh migrated
// database, the PostgreSQL event bus, the persister consuming from it
// in-process, and the real REST handler behind an httptest server. It lives
// outside api so that api itself never depends on a worker.
package pipelinetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/contracttest"
	"github.com/parleychat/parley/workers/persister"
)

// Secret signs the tokens of every Env.
var Secret = []byte("pipelinetest-secret-0123456789abcdef")

// Wait bounds every eventual check: persistence is asynchronous.
const Wait = 20 * time.Second

// Options tune an Env.
type Options struct {
	// Limits are the service's limits. The zero value means
	// chat.DefaultLimits without rate limiting, so that tests can send as
	// fast as they like.
	Limits chat.Limits
	// WrapPublisher, when set, wraps the bus the service publishes to
	// (to make it refuse, say). The persister still consumes the real bus.
	WrapPublisher func(events.Publisher) events.Publisher
	// Consumer configures the persister's consumer.
	Consumer pgbus.ConsumerConfig
	// NoPersister leaves the persister stopped; call StartPersister.
	NoPersister bool
	// Logger receives every component's logs; nil discards them.
	Logger *slog.Logger
	// OverloadQueueAge, when set, refuses sends while the oldest event
	// waiting for the persister or fanout is older (pgbus.Backlog, sampled
	// every 10 ms). Fanout does not run here: its queue only grows.
	OverloadQueueAge time.Duration
}

// Env is one running chat backend over its own database.
type Env struct {
	DSN     string
	Pool    *pgxpool.Pool
	Waker   *pgbus.Waker
	Bus     *pgbus.Bus
	Backlog *pgbus.Backlog // nil without Options.OverloadQueueAge
	Service *chat.Service
	REST    *api.REST
	Server  *httptest.Server
	Logger  *slog.Logger
}

// New starts an Env; everything stops and the database is dropped when the
// test ends.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx := context.Background()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dsn, _ := dbtest.New(t)
	// A pool of its own, roomier than the default (4 connections on a
	// small machine): each persister consumer holds one connection for
	// the transaction that locks its batch while the handler uses another.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 24
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	waker := pgbus.NewWaker(dsn, logger)
	wctx, stopWaker := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { defer close(wdone); _ = waker.Run(wctx) }()
	t.Cleanup(func() { stopWaker(); <-wdone })

	bus := pgbus.New(pool, waker, logger)
	if err := bus.Init(ctx); err != nil {
		t.Fatal(err)
	}
	var pub events.Publisher = bus
	if opts.WrapPublisher != nil {
		pub = opts.WrapPublisher(bus)
	}
	limits := opts.Limits
	if limits == (chat.Limits{}) {
		limits = chat.DefaultLimits()
		limits.Rates = chat.Rates{}
	}
	verifier, err := auth.NewVerifier(Secret)
	if err != nil {
		t.Fatal(err)
	}
	var svcOpts []chat.Option
	var backlog *pgbus.Backlog
	if opts.OverloadQueueAge > 0 {
		backlog = pgbus.NewBacklog(pool, opts.OverloadQueueAge, 10*time.Millisecond, logger)
		bctx, stopBacklog := context.WithCancel(ctx)
		bdone := make(chan struct{})
		go func() { defer close(bdone); _ = backlog.Run(bctx) }()
		t.Cleanup(func() { stopBacklog(); <-bdone })
		svcOpts = append(svcOpts, chat.WithAdmission(backlog))
	}
	svc := chat.NewService(pool, pub, nil, limits, logger, svcOpts...)
	rest := api.NewREST(svc, verifier, logger)
	e := &Env{DSN: dsn, Pool: pool, Waker: waker, Bus: bus, Backlog: backlog, Service: svc, REST: rest, Logger: logger}
	if !opts.NoPersister {
		e.StartPersister(t, opts.Consumer)
	}
	e.Server = httptest.NewServer(rest)
	t.Cleanup(e.Server.Close)
	// The default keeps two idle connections per host, so concurrent
	// senders would dial (and the server accept) a connection per request.
	e.Server.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 1024
	return e
}

// SyncPersister is a publisher that hands each event the persister
// consumes straight to the real persister, so that a message is stored by
// the time the call that published it returns. An event published from a
// transaction that lends its scope (a direct conversation's creation) is
// applied in that transaction, as the persister does with a consumer's.
// Not for groups, whose changes it was never tested with (use New, whose
// persister consumes the bus).
func SyncPersister(pool *pgxpool.Pool, logger *slog.Logger) events.Publisher {
	route, _ := events.RouteFor(events.WorkerPersister)
	h := persister.New(pool, logger)
	return syncPublisher{route: route, h: h}
}

type syncPublisher struct {
	route events.Route
	h     events.Handler
}

func (p syncPublisher) Publish(ctx context.Context, envs ...events.Envelope) error {
	for _, e := range envs {
		if p.route.Matches(e) {
			if err := p.h.Handle(ctx, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// StartPersister runs the persister over the bus until the returned stop
// is called or the test ends.
func (e *Env) StartPersister(t testing.TB, cfg pgbus.ConsumerConfig) (stop func()) {
	t.Helper()
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 20 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := persister.New(e.Pool, e.Logger)
	go func() {
		done <- pgbus.Consume(ctx, e.Pool, e.Waker, events.WorkerPersister, h, cfg, e.Logger)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("persister consumer: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// Response is what a request got back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode response (status %d) %q: %v", r.Status, r.Body, err)
	}
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Auth returns the header of a request as user (0: no Authorization).
func Auth(user int64) http.Header {
	h := http.Header{}
	if user != 0 {
		tok, err := auth.Issue(Secret, user, time.Hour, time.Now())
		if err != nil {
			panic(err) // signing with a fixed HMAC key does not fail
		}
		h.Set("Authorization", "Bearer "+tok)
	}
	return h
}

// Do sends a request as user (0: without a token). body is sent as is when
// it is a string or []byte, encoded as JSON otherwise, absent when nil.
func (e *Env) Do(t testing.TB, user int64, method, path string, body any) Response {
	t.Helper()
	return e.DoHeader(t, Auth(user), method, path, body)
}

// DoHeader sends a request with the given headers.
func (e *Env) DoHeader(t testing.TB, header http.Header, method, path string, body any) Response {
	t.Helper()
	resp, err := e.Request(header, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Request is Do for goroutines other than the test's: it reports failures
// instead of ending the test.
func (e *Env) Request(header http.Header, method, path string, body any) (Response, error) {
	return e.request(header, method, path, body, true)
}

// RequestUnchecked is Request without the OpenAPI check, for benchmarks: the
// check costs about as much CPU as the handler it checks, and would take it
// from the system being measured on the same cores. Tests use Request.
func (e *Env) RequestUnchecked(header http.Header, method, path string, body any) (Response, error) {
	return e.request(header, method, path, body, false)
}

func (e *Env) request(header http.Header, method, path string, body any, check bool) (Response, error) {
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		sent = []byte(b)
	case []byte:
		sent = b
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return Response{}, err
		}
		sent = raw
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, e.Server.URL+path, r)
	if err != nil {
		return Response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.Server.Client().Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	// Every exchange of every test is held to the OpenAPI document.
	if check {
		if err := contracttest.Check(req, sent, resp, raw); err != nil {
			return Response{}, err
		}
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// MustDo is Do that fails the test unless the status is want, decoding the
// body into out when out is not nil.
func (e *Env) MustDo(t testing.TB, user int64, method, path string, body any, want int, out any) {
	t.Helper()
	resp := e.Do(t, user, method, path, body)
	if resp.Status != want {
		t.Fatalf("%s %s as user %d: status %d, want %d; body %s", method, path, user, resp.Status, want, resp.Body)
	}
	if out != nil {
		resp.JSON(t, out)
	}
}

// Send posts a message as from and returns the accepted message.
func (e *Env) Send(t testing.TB, from int64, body map[string]any) chat.MessageView {
	t.Helper()
	var m chat.MessageView
	e.MustDo(t, from, http.MethodPost, api.Prefix+"/messages", body, http.StatusOK, &m)
	return m
}

// Conversation gets or creates the direct conversation of a and b and
// returns its id.
func (e *Env) Conversation(t testing.TB, a, b int64) string {
	t.Helper()
	var c chat.ConversationView
	e.MustDo(t, a, http.MethodPost, api.Prefix+"/conversations", map[string]any{"recipient_id": b}, http.StatusOK, &c)
	return c.ID
}

// Page is the seed's paged listing.
type Page[T any] struct {
	Data     []T   `json:"data"`
	Total    int64 `json:"total"`
	Page     int   `json:"page"`
	PageSize int   `json:"page_size"`
}

// Cursor is the catch-up listing (after_seq / before_seq).
type Cursor struct {
	Data          []chat.MessageView `json:"data"`
	PageSize      int                `json:"page_size"`
	HasMore       bool               `json:"has_more"`
	NextAfterSeq  int64              `json:"next_after_seq"`
	NextBeforeSeq int64              `json:"next_before_seq"`
}

// After lists a conversation's messages after seq as user sees them,
// oldest first.
func (e *Env) After(t testing.TB, user int64, convID string, seq int64, size int) Cursor {
	t.Helper()
	var c Cursor
	e.MustDo(t, user, http.MethodGet, fmt.Sprintf("%s/conversations/%s/messages?after_seq=%d&page_size=%d", api.Prefix, convID, seq, size), nil, http.StatusOK, &c)
	return c
}

// ConversationOf returns one conversation as user sees it.
func (e *Env) ConversationOf(t testing.TB, user int64, convID string) chat.ConversationView {
	t.Helper()
	var c chat.ConversationView
	e.MustDo(t, user, http.MethodGet, api.Prefix+"/conversations/"+convID, nil, http.StatusOK, &c)
	return c
}

// Conversations lists user's conversations with the given query string.
func (e *Env) Conversations(t testing.TB, user int64, query string) Page[chat.ConversationView] {
	t.Helper()
	var p Page[chat.ConversationView]
	e.MustDo(t, user, http.MethodGet, api.Prefix+"/conversations"+query, nil, http.StatusOK, &p)
	return p
}

// AwaitMessages waits until user sees n messages in the conversation
// through REST and returns them, oldest first.
func (e *Env) AwaitMessages(t testing.TB, user int64, convID string, n int) []chat.MessageView {
	t.Helper()
	var got []chat.MessageView
	Eventually(t, fmt.Sprintf("user %d sees %d messages", user, n), func() (bool, string) {
		got = e.After(t, user, convID, 0, 100).Data
		return len(got) == n, fmt.Sprintf("sees %d", len(got))
	})
	return got
}

// Eventually polls cond until it holds or Wait passes; state describes
// what was last seen, for the failure message.
func Eventually(t testing.TB, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	delay := 5 * time.Millisecond
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting after %s: %s (last: %s)", Wait, what, state)
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// AwaitIdle waits until the persister's queue is empty: every event
// published so far has been handled (or dead-lettered).
func (e *Env) AwaitIdle(t testing.TB) {
	t.Helper()
	Eventually(t, "the persister's queue drains", func() (bool, string) {
		n := e.Count(t, `queue_`+events.WorkerPersister)
		return n == 0, fmt.Sprintf("%d queued", n)
	})
}

// Count returns the number of rows in table.
func (e *Env) Count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := e.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
