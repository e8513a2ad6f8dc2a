package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

const (
	sendPath = api.Prefix + "/messages"
	readPath = api.Prefix + "/messages/read"
)

func convPath(id string) string     { return api.Prefix + "/conversations/" + id }
func messagesPath(id string) string { return convPath(id) + "/messages" }

func text(conv, s string) map[string]any {
	return map[string]any{"conversation_id": conv, "content_type": "text", "text_content": s}
}

// Both participants send at once in one conversation (50 goroutines): each
// message is stored once, and both read all of them through REST, with the
// sequence 1..N.
func concurrentSenders(t *testing.T, e *pipelinetest.Env, u1, u2, _ int64) {
	conv := e.Conversation(t, u1, u2)
	other := map[int64]int64{u1: u2, u2: u1}
	const senders, each = 50, 2
	const n = senders * each

	type result struct {
		from int64
		text string
		resp pipelinetest.Response
		err  error
	}
	results := make([]result, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range senders {
		from := []int64{u1, u2}[g%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s := fmt.Sprintf("sender %d message %d", g, i)
				resp, err := e.Request(pipelinetest.Auth(from), http.MethodPost, sendPath, text(conv, s))
				mu.Lock()
				results = append(results, result{from, s, resp, err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	sent := map[string]result{}
	for _, r := range results {
		if r.err != nil || r.resp.Status != http.StatusOK {
			t.Fatalf("send %q as user %d: %v status %d %s", r.text, r.from, r.err, r.resp.Status, r.resp.Body)
		}
		var m chat.MessageView
		r.resp.JSON(t, &m)
		if m.ConversationID != conv || m.SenderID != r.from || m.RecipientID == nil || *m.RecipientID != other[r.from] || m.Status != "accepted" {
			t.Fatalf("send %q as user %d answered %+v", r.text, r.from, m)
		}
		if _, dup := sent[m.ID]; dup {
			t.Fatalf("two sends got the same id %s", m.ID)
		}
		sent[m.ID] = r
	}

	for _, user := range []int64{u1, u2} {
		got := e.AwaitMessages(t, user, conv, n)
		for i, m := range got {
			if m.Seq != int64(i+1) {
				t.Fatalf("user %d: message %d of the catch-up has seq %d: a gap or a duplicate", user, i, m.Seq)
			}
			r, ok := sent[m.ID]
			if !ok {
				t.Fatalf("user %d sees message %s that nobody sent", user, m.ID)
			}
			if m.TextContent == nil || *m.TextContent != r.text || m.SenderID != r.from || m.Status != "sent" || m.SentAt == nil {
				t.Fatalf("user %d sees %+v, want %q from user %d", user, m, r.text, r.from)
			}
		}
		if ids := idsOf(got); len(uniq(ids)) != n {
			t.Fatalf("user %d: ids not distinct", user)
		}

		// The seed's paged listing: newest first, total right, every
		// message on exactly one page.
		var paged []chat.MessageView
		for page := 1; page <= 5; page++ {
			var p pipelinetest.Page[chat.MessageView]
			e.MustDo(t, user, http.MethodGet, fmt.Sprintf("%s?page=%d&page_size=30", messagesPath(conv), page), nil, http.StatusOK, &p)
			if p.Total != n || p.Page != page || p.PageSize != 30 {
				t.Fatalf("user %d page %d: total %d page %d page_size %d", user, page, p.Total, p.Page, p.PageSize)
			}
			if wantLen := min(30, max(0, n-(page-1)*30)); len(p.Data) != wantLen {
				t.Fatalf("user %d page %d holds %d messages, want %d", user, page, len(p.Data), wantLen)
			}
			paged = append(paged, p.Data...)
		}
		for i, m := range paged {
			if m.Seq != int64(n-i) {
				t.Fatalf("user %d: paged listing position %d has seq %d, want %d (newest first)", user, i, m.Seq, n-i)
			}
		}

		c := e.ConversationOf(t, user, conv)
		if c.LastSeq != n || c.LastMessage == nil || c.LastMessage.Seq != n || c.UnreadCount != n/2 || c.OtherUserID != other[user] {
			t.Fatalf("user %d's conversation: %+v (last message %+v)", user, c, c.LastMessage)
		}
	}
}

func idsOf(ms []chat.MessageView) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// A client_message_id makes every retry return the same message, and the
// message is stored once; other content under the same id is a conflict.
func clientMessageID(t *testing.T, e *pipelinetest.Env, u1, u2, u3 int64) {
	conv := e.Conversation(t, u1, u2)
	body := map[string]any{"recipient_id": u2, "text_content": "exactly once", "client_message_id": "c-1"}
	first := e.Send(t, u1, body)

	t.Run("retries return the same message", func(t *testing.T) {
		again := e.Send(t, u1, body)
		if again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) || again.ConversationID != conv {
			t.Fatalf("retry answered %+v, first answer %+v", again, first)
		}
		// By conversation_id instead of recipient_id: the same request.
		byConv := e.Send(t, u1, map[string]any{"conversation_id": conv, "text_content": "exactly once", "client_message_id": "c-1"})
		if byConv.ID != first.ID {
			t.Fatalf("retry by conversation_id got %s, want %s", byConv.ID, first.ID)
		}
	})

	t.Run("concurrent retries return the same message", func(t *testing.T) {
		ids := make([]string, 8)
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := e.Request(pipelinetest.Auth(u1), http.MethodPost, sendPath, body)
				if err == nil && resp.Status != http.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
				}
				var m chat.MessageView
				if err == nil {
					err = json.Unmarshal(resp.Body, &m)
				}
				ids[i], errs[i] = m.ID, err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if u := uniq(ids); len(u) != 1 || u[0] != first.ID {
			t.Fatalf("concurrent retries got ids %v, want only %s", u, first.ID)
		}
	})

	t.Run("other content under the same id is a conflict", func(t *testing.T) {
		for name, b := range map[string]map[string]any{
			"other text":      {"recipient_id": u2, "text_content": "something else", "client_message_id": "c-1"},
			"reply":           {"recipient_id": u2, "text_content": "exactly once", "client_message_id": "c-1", "reply_to_id": first.ID},
			"other recipient": {"recipient_id": u3, "text_content": "exactly once", "client_message_id": "c-1"},
		} {
			resp := e.Do(t, u1, http.MethodPost, sendPath, b)
			wantError(t, name, resp, http.StatusConflict, chat.CodeConflict)
		}
	})

	t.Run("the id is per sender", func(t *testing.T) {
		theirs := e.Send(t, u2, map[string]any{"recipient_id": u1, "text_content": "exactly once", "client_message_id": "c-1"})
		if theirs.ID == first.ID {
			t.Fatal("another sender's client_message_id mapped to the first sender's message")
		}
	})

	e.AwaitIdle(t)
	got := e.AwaitMessages(t, u2, conv, 2)
	i := slices.IndexFunc(got, func(m chat.MessageView) bool { return m.ID == first.ID })
	if i < 0 || got[i].ClientMessageID == nil || *got[i].ClientMessageID != "c-1" || *got[i].TextContent != "exactly once" {
		t.Fatalf("stored %v, want the first message with its client_message_id", idsOf(got))
	}
	var n int
	if err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM event_archive WHERE conversation_id = $1 AND type = $2`, conv, events.TypeMessageSent).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d events archived (err %v), want 2: a retry re-publishes the same event", n, err)
	}
}

// refusingBus is the one fake in these tests, standing in for a bus whose
// database is unreachable: it forwards to the real bus unless told to
// refuse.
type refusingBus struct {
	events.Publisher
	refuse atomic.Bool
}

func (b *refusingBus) Publish(ctx context.Context, envs ...events.Envelope) error {
	if b.refuse.Load() {
		return errors.New("bus unreachable")
	}
	return b.Publisher.Publish(ctx, envs...)
}

// When the bus refuses, every write answers 503 with Retry-After and
// nothing happens; a retry of the send with the same client_message_id
// then succeeds with the message id claimed by the first attempt.
func TestBusRefusalAsksForRetry(t *testing.T) {
	t.Parallel()
	bus := &refusingBus{}
	e := pipelinetest.New(t, pipelinetest.Options{WrapPublisher: func(p events.Publisher) events.Publisher {
		bus.Publisher = p
		return bus
	}})
	conv := e.Conversation(t, 1, 2)
	before := e.Send(t, 1, text(conv, "before the outage"))
	e.AwaitMessages(t, 2, conv, 1)
	archived := e.Count(t, "event_archive")

	bus.refuse.Store(true)
	retry := map[string]any{"conversation_id": conv, "text_content": "during the outage", "client_message_id": "outage-1"}
	cases := []struct {
		name         string
		user         int64
		method, path string
		body         any
	}{
		{"send", 1, http.MethodPost, sendPath, retry},
		{"send again", 1, http.MethodPost, sendPath, retry},
		{"send without client id", 2, http.MethodPost, sendPath, text(conv, "lost")},
		{"read", 2, http.MethodPost, readPath, map[string]any{"message_ids": []string{before.ID}}},
		{"settings", 1, http.MethodPatch, convPath(conv) + "/settings", map[string]any{"pinned": true}},
		{"delete conversation", 1, http.MethodDelete, convPath(conv), nil},
		{"delete message", 1, http.MethodDelete, api.Prefix + "/messages/" + before.ID, nil},
	}
	for _, c := range cases {
		resp := e.Do(t, c.user, c.method, c.path, c.body)
		wantError(t, c.name, resp, http.StatusServiceUnavailable, chat.CodeUnavailable)
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", c.name)
		}
	}
	if n := e.Count(t, "event_archive"); n != archived {
		t.Fatalf("%d events archived while the bus refused, want %d", n, archived)
	}

	var claimed string
	if err := e.Pool.QueryRow(context.Background(),
		`SELECT message_id::text FROM message_requests WHERE sender_id = 1 AND client_message_id = 'outage-1'`).Scan(&claimed); err != nil {
		t.Fatal(err)
	}
	bus.refuse.Store(false)
	m := e.Send(t, 1, retry)
	if m.ID != claimed {
		t.Fatalf("retry after the outage got %s, the refused attempt claimed %s", m.ID, claimed)
	}
	if again := e.Send(t, 1, retry); again.ID != m.ID {
		t.Fatalf("second retry got %s, want %s", again.ID, m.ID)
	}
	e.AwaitIdle(t)
	got := e.AwaitMessages(t, 2, conv, 2)
	if got[0].ID != before.ID || got[1].ID != m.ID || *got[1].TextContent != "during the outage" {
		t.Fatalf("after the outage user 2 sees %v, want [%s %s]", idsOf(got), before.ID, m.ID)
	}
	c := e.ConversationOf(t, 1, conv)
	if c.Pinned || c.DeletedAt != nil {
		t.Fatalf("a refused settings change was applied: %+v", c)
	}
}

func TestSendRateLimit(t *testing.T) {
	t.Parallel()
	const burst = 3
	limits := chat.DefaultLimits()
	limits.Rates = chat.Rates{}
	limits.Rates[chat.WriteSend] = chat.Rate{PerSecond: 0.001, Burst: burst}
	e := pipelinetest.New(t, pipelinetest.Options{Limits: limits})
	conv := e.Conversation(t, 1, 2)
	for i := range burst {
		e.Send(t, 1, text(conv, fmt.Sprint("within the limit ", i)))
	}
	resp := e.Do(t, 1, http.MethodPost, sendPath, text(conv, "one too many"))
	wantError(t, "send over the limit", resp, http.StatusTooManyRequests, chat.CodeRateLimited)
	e.Send(t, 2, text(conv, "another user has a bucket of their own"))
	// The messages within the limits, and the conversation's creation.
	if n := e.Count(t, "event_archive"); n != burst+2 {
		t.Fatalf("%d events archived, want %d", n, burst+2)
	}
	e.AwaitMessages(t, 1, conv, burst+1)
}

// Replaying the archive to the persister after its messages were lost
// restores what both participants read, through the running consumer.
func TestReplayThroughTheBusRestoresMessages(t *testing.T) {
	t.Parallel()
	// One consumer, and sends one after the other: the original order of
	// storing is then the archive's order, which replay follows, so the
	// sequence numbers come back identical. (With concurrent consumers or
	// senders a replay restores every message gap-free, but may number
	// them in another order.)
	e := pipelinetest.New(t, pipelinetest.Options{Consumer: pgbus.ConsumerConfig{Concurrency: 1}})
	since := time.Now().Add(-time.Second)
	conv := e.Conversation(t, 1, 2)
	var sent []chat.MessageView
	for i := range 12 {
		from := int64(1 + i%2)
		sent = append(sent, e.Send(t, from, text(conv, fmt.Sprintf("message %d from %d", i, from))))
	}
	e.AwaitMessages(t, 1, conv, len(sent))
	e.MustDo(t, 2, http.MethodPost, readPath, map[string]any{"message_ids": []string{sent[0].ID, sent[2].ID}}, http.StatusOK, nil)
	e.MustDo(t, 1, http.MethodDelete, api.Prefix+"/messages/"+sent[1].ID, nil, http.StatusAccepted, nil)
	e.AwaitIdle(t)

	view := func(user int64) []chat.MessageView {
		ms := e.After(t, user, conv, 0, 100).Data
		for i := range ms {
			ms[i].SentAt = nil // when the row was stored: a replay stores it again
		}
		return ms
	}
	want := map[int64][]chat.MessageView{1: view(1), 2: view(2)}
	if len(want[1]) != len(sent)-1 || want[2][0].ReadAt == nil {
		t.Fatalf("before the loss: user 1 sees %d messages, user 2's first read_at %v", len(want[1]), want[2][0].ReadAt)
	}

	if _, err := e.Pool.Exec(context.Background(), `TRUNCATE messages, message_deletions CASCADE`); err != nil {
		t.Fatal(err)
	}
	if got := e.After(t, 1, conv, 0, 100).Data; len(got) != 0 {
		t.Fatalf("user 1 still sees %d messages after the loss", len(got))
	}
	n, err := e.Bus.Replay(context.Background(), events.WorkerPersister, since, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if archived := e.Count(t, "event_archive"); n != archived {
		t.Fatalf("replayed %d events, the archive holds %d", n, archived)
	}
	e.AwaitIdle(t)
	for user, w := range want {
		if got := view(user); !equalViews(got, w) {
			t.Fatalf("user %d after replay:\n got %+v\nwant %+v", user, got, w)
		}
	}
}

func equalViews(a, b []chat.MessageView) bool {
	return slices.EqualFunc(a, b, func(x, y chat.MessageView) bool {
		return fmt.Sprintf("%+v", flat(x)) == fmt.Sprintf("%+v", flat(y))
	})
}

// flat dereferences a view's pointers so that %+v shows values.
func flat(m chat.MessageView) []any {
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	tm := func(p *time.Time) string {
		if p == nil {
			return "<nil>"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	recipient := "<nil>"
	if m.RecipientID != nil {
		recipient = fmt.Sprint(*m.RecipientID)
	}
	return []any{m.ID, m.ConversationID, m.Seq, m.SenderID, recipient, m.ContentType, str(m.TextContent),
		str(m.MediaKey), str(m.ReplyToID), str(m.ClientMessageID), m.CreatedAt.UTC(), tm(m.SentAt), tm(m.DeliveredAt),
		tm(m.ReadAt), m.Status}
}

// wantError checks a response is the JSON error shape with status and code.
func wantError(t *testing.T, name string, resp pipelinetest.Response, status int, code chat.Code) {
	t.Helper()
	if resp.Status != status {
		t.Errorf("%s: status %d, want %d; body %s", name, resp.Status, status, resp.Body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", name, ct)
	}
	var b pipelinetest.ErrorBody
	resp.JSON(t, &b)
	if b.Error.Code != string(code) || b.Error.Message == "" {
		t.Errorf("%s: error %+v, want code %q and a message; body %s", name, b.Error, code, resp.Body)
	}
}
