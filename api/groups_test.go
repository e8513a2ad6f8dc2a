package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

func createGroup(t *testing.T, e *pipelinetest.Env, owner int64, title string, members ...int64) chat.ConversationView {
	t.Helper()
	var c chat.ConversationView
	e.MustDo(t, owner, http.MethodPost, api.Prefix+"/groups", map[string]any{"title": title, "member_ids": members}, http.StatusCreated, &c)
	return c
}

func groupPath(id string, rest ...string) string {
	return api.Prefix + "/groups/" + id + strings.Join(rest, "")
}

// messagesOf lists every message user sees in conv, oldest first.
func messagesOf(t *testing.T, e *pipelinetest.Env, user int64, conv string) []chat.MessageView {
	t.Helper()
	return e.After(t, user, conv, 0, 100).Data
}

func texts(ms []chat.MessageView) []string {
	var out []string
	for _, m := range ms {
		switch {
		case m.System != nil:
			out = append(out, m.System.Action)
		case m.TextContent != nil:
			out = append(out, *m.TextContent)
		}
	}
	return out
}

// awaitSeq waits until the persister stored conv's messages up to seq.
func awaitSeq(t *testing.T, e *pipelinetest.Env, user int64, conv string, seq int64) {
	t.Helper()
	pipelinetest.Eventually(t, fmt.Sprintf("conversation %s reaches seq %d", conv, seq), func() (bool, string) {
		c := e.ConversationOf(t, user, conv)
		return c.LastSeq >= seq, fmt.Sprintf("last_seq %d", c.LastSeq)
	})
}

// TestGroups: a group's membership, roles and title are changed by who may
// change them, each change is a system message in the group's sequence,
// and every member sees exactly what was created while they were one: a
// removed member keeps what they saw and nothing after, on REST and in
// the sync feed; a new member sees from when they joined.
func TestGroups(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b, c, d, stranger = 9001, 9002, 9003, 9004, 9009

	g := createGroup(t, e, a, "  Trip  ", b, c, b)
	if g.Kind != "group" || deref(g.Title) != "Trip" || g.Role != "owner" || g.MemberCount != 3 || g.LeftAt != nil {
		t.Fatalf("created group: %+v", g)
	}
	m1 := e.Send(t, a, text(g.ID, "hello all"))
	if m1.RecipientID != nil {
		t.Fatalf("a group message has no recipient: %+v", m1)
	}
	awaitSeq(t, e, a, g.ID, 2) // created, hello all
	for _, u := range []int64{a, b, c} {
		if got := texts(messagesOf(t, e, u, g.ID)); !slices.Equal(got, []string{"created", "hello all"}) {
			t.Fatalf("u%d sees %q", u, got)
		}
	}
	if cv := e.ConversationOf(t, b, g.ID); cv.Role != "member" || cv.UnreadCount != 1 || cv.Title == nil {
		t.Fatalf("b's view: %+v", cv)
	}

	t.Run("who may change what", func(t *testing.T) {
		for _, tc := range []struct {
			user         int64
			method, path string
			body         any
			want         int
		}{
			{b, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{d}}, http.StatusForbidden},
			{b, http.MethodPatch, groupPath(g.ID), map[string]any{"title": "Mine"}, http.StatusForbidden},
			{b, http.MethodDelete, groupPath(g.ID, "/members/", fmt.Sprint(c)), nil, http.StatusForbidden},
			{b, http.MethodPut, groupPath(g.ID, "/members/", fmt.Sprint(c), "/role"), map[string]any{"role": "admin"}, http.StatusForbidden},
			{stranger, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{d}}, http.StatusForbidden},
			{stranger, http.MethodGet, api.Prefix + "/conversations/" + g.ID + "/messages", nil, http.StatusForbidden},
			{a, http.MethodDelete, groupPath(g.ID, "/members/", fmt.Sprint(a)), nil, http.StatusConflict}, // the owner with members
			{a, http.MethodPut, groupPath(g.ID, "/members/", fmt.Sprint(b), "/role"), map[string]any{"role": "king"}, http.StatusUnprocessableEntity},
			{a, http.MethodPatch, groupPath(g.ID), map[string]any{"title": " \u200b "}, http.StatusUnprocessableEntity},
			{a, http.MethodDelete, groupPath(g.ID, "/members/", "x"), nil, http.StatusBadRequest},
			{a, http.MethodPost, api.Prefix + "/messages", map[string]any{"conversation_id": g.ID, "recipient_id": b, "text_content": "x"}, http.StatusUnprocessableEntity},
		} {
			resp := e.Do(t, tc.user, tc.method, tc.path, tc.body)
			var body pipelinetest.ErrorBody
			resp.JSON(t, &body)
			if resp.Status != tc.want || body.Error.Message == "" {
				t.Errorf("u%d %s %s: %d %+v, want %d with a reason", tc.user, tc.method, tc.path, resp.Status, body, tc.want)
			}
		}
	})

	// a makes b an admin; b adds d; a removes c; b renames.
	e.MustDo(t, a, http.MethodPut, groupPath(g.ID, "/members/", fmt.Sprint(b), "/role"), map[string]any{"role": "admin"}, http.StatusOK, nil)
	m2 := e.Send(t, b, text(g.ID, "before d"))
	e.MustDo(t, b, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{d, b}}, http.StatusOK, nil)
	e.Send(t, a, text(g.ID, "with d"))
	e.MustDo(t, a, http.MethodDelete, groupPath(g.ID, "/members/", fmt.Sprint(c)), nil, http.StatusNoContent, nil)
	after := e.Send(t, a, text(g.ID, "after c"))
	e.MustDo(t, b, http.MethodPatch, groupPath(g.ID), map[string]any{"title": "Trip 2"}, http.StatusOK, nil)
	// created, hello, role, before d, added, with d, removed, after c, renamed
	awaitSeq(t, e, a, g.ID, 9)

	all := messagesOf(t, e, a, g.ID)
	for i, m := range all {
		if m.Seq != int64(i+1) {
			t.Fatalf("a's message %d has seq %d: sequences must be gap-free", i, m.Seq)
		}
	}
	if got := texts(all); !slices.Equal(got, []string{"created", "hello all", "role_changed", "before d", "added", "with d", "removed", "after c", "renamed"}) {
		t.Fatalf("a sees %q", got)
	}
	if got := texts(messagesOf(t, e, c, g.ID)); !slices.Equal(got, []string{"created", "hello all", "role_changed", "before d", "added", "with d", "removed"}) {
		t.Fatalf("c, removed, sees %q: up to their removal and nothing after", got)
	}
	if got := texts(messagesOf(t, e, d, g.ID)); !slices.Equal(got, []string{"added", "with d", "removed", "after c", "renamed"}) {
		t.Fatalf("d, added, sees %q: from when they joined", got)
	}
	if s := all[4].System; s == nil || s.ActorID != b || !slices.Equal(s.UserIDs, []int64{d}) {
		t.Fatalf("the added message: %+v", all[4])
	}

	t.Run("a removed member", func(t *testing.T) {
		cv := e.ConversationOf(t, c, g.ID)
		// As c left it: the title then (renamed since), no member count.
		if cv.LeftAt == nil || deref(cv.Title) != "Trip" || cv.MemberCount != 0 || cv.LastMessage == nil || cv.LastMessage.ContentType != "system" {
			t.Fatalf("c's view of the group after removal: %+v", cv)
		}
		resp := e.Do(t, c, http.MethodPost, api.Prefix+"/messages", text(g.ID, "still here?"))
		if resp.Status != http.StatusForbidden {
			t.Fatalf("c sends after removal: %d %s", resp.Status, resp.Body)
		}
		var ms struct {
			Members []chat.GroupMemberView `json:"members"`
		}
		e.MustDo(t, c, http.MethodGet, groupPath(g.ID, "/members"), nil, http.StatusOK, &ms)
		if len(ms.Members) != 4 { // a, b, c, d when c left
			t.Fatalf("members as c left: %+v", ms.Members)
		}
		// Nothing after the removal in c's feed.
		awaitFeed(t, e, c, 7)
		for _, ch := range syncOf(t, e, c, "?since=0").Changes {
			if ch.Data["id"] == after.ID || ch.Data["textContent"] == "after c" {
				t.Fatalf("c's feed holds a message sent after c was removed: %+v", ch)
			}
		}
		// A change of a message c saw, made after c left, is not c's.
		e.MustDo(t, a, http.MethodPut, api.Prefix+"/messages/"+m1.ID+"/reaction", map[string]any{"emoji": "👍"}, http.StatusAccepted, nil)
		awaitFeed(t, e, a, 10)
		for _, ch := range syncOf(t, e, c, "?since=0").Changes {
			if ch.Kind == "reactionChanged" {
				t.Fatalf("c learned of a reaction made after c left: %+v", ch)
			}
		}
	})

	t.Run("a new member", func(t *testing.T) {
		resp := e.Do(t, d, http.MethodPost, api.Prefix+"/messages", map[string]any{"conversation_id": g.ID, "text_content": "re", "reply_to_id": m2.ID})
		if resp.Status != http.StatusUnprocessableEntity || !strings.Contains(string(resp.Body), "before you joined") {
			t.Fatalf("d replies to a message from before they joined: %d %s", resp.Status, resp.Body)
		}
		if cv := e.ConversationOf(t, d, g.ID); cv.UnreadCount != 2 { // with d, after c (system messages do not count)
			t.Fatalf("d's unread count: %+v", cv)
		}
		resp = e.Do(t, d, http.MethodPut, api.Prefix+"/messages/"+m1.ID+"/reaction", map[string]any{"emoji": "👍"})
		if resp.Status != http.StatusNotFound {
			t.Fatalf("d reacts to a message from before they joined: %d %s", resp.Status, resp.Body)
		}
	})

	t.Run("receipts", func(t *testing.T) {
		e.MustDo(t, b, http.MethodPost, api.Prefix+"/messages/read", map[string]any{"message_ids": []string{after.ID}}, http.StatusOK, nil)
		pipelinetest.Eventually(t, "b's read is counted", func() (bool, string) {
			for _, m := range messagesOf(t, e, a, g.ID) {
				if m.ID == after.ID {
					return m.Receipts != nil && m.Receipts.Read == 1 && m.Receipts.Recipients == 2, fmt.Sprintf("%+v", m.Receipts)
				}
			}
			return false, "not listed"
		})
		if cv := e.ConversationOf(t, b, g.ID); cv.UnreadCount != 0 {
			t.Fatalf("b read up to the last message: unread %d", cv.UnreadCount)
		}
		for _, m := range messagesOf(t, e, a, g.ID) {
			if m.ID == m1.ID && (m.Receipts == nil || m.Receipts.Recipients != 2 || m.Receipts.Read != 1) {
				// b and c could see hello all; b's read position covers it.
				t.Fatalf("hello all's receipts: %+v", m.Receipts)
			}
		}
	})

	t.Run("ownership", func(t *testing.T) {
		e.MustDo(t, a, http.MethodPut, groupPath(g.ID, "/members/", fmt.Sprint(b), "/role"), map[string]any{"role": "owner"}, http.StatusOK, nil)
		var ms struct {
			Members []chat.GroupMemberView `json:"members"`
		}
		e.MustDo(t, a, http.MethodGet, groupPath(g.ID, "/members"), nil, http.StatusOK, &ms)
		roles := map[int64]string{}
		for _, m := range ms.Members {
			roles[m.UserID] = m.Role
		}
		if roles[a] != "admin" || roles[b] != "owner" || roles[d] != "member" || len(roles) != 3 {
			t.Fatalf("roles after handing ownership to b: %v", roles)
		}
		e.MustDo(t, a, http.MethodDelete, groupPath(g.ID, "/members/", fmt.Sprint(a)), nil, http.StatusNoContent, nil)
		if cv := e.ConversationOf(t, a, g.ID); cv.LeftAt == nil {
			t.Fatalf("a left: %+v", cv)
		}
	})
}

// TestGroupCap: a group holds at most the configured members.
func TestGroupCap(t *testing.T) {
	t.Parallel()
	limits := chat.DefaultLimits()
	limits.Rates = chat.Rates{}
	limits.MaxGroupMembers = 3
	e := pipelinetest.New(t, pipelinetest.Options{Limits: limits})
	resp := e.Do(t, 1, http.MethodPost, api.Prefix+"/groups", map[string]any{"title": "big", "member_ids": []int64{2, 3, 4}})
	if resp.Status != http.StatusUnprocessableEntity || !strings.Contains(string(resp.Body), "at most 3") {
		t.Fatalf("a group of 4 with a cap of 3: %d %s", resp.Status, resp.Body)
	}
	g := createGroup(t, e, 1, "small", 2, 3)
	resp = e.Do(t, 1, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{4}})
	if resp.Status != http.StatusUnprocessableEntity || !strings.Contains(string(resp.Body), "at most 3") {
		t.Fatalf("a fourth member with a cap of 3: %d %s", resp.Status, resp.Body)
	}
}

// TestGroupConcurrentChanges: sends racing joins and removals keep the
// group's sequence gap-free, and each member's window holds exactly the
// messages created while they were a member, as the ingress posted them.
func TestGroupConcurrentChanges(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const owner, x = 9101, 9102
	g := createGroup(t, e, owner, "race", x, 9103)
	var wg sync.WaitGroup
	var sent sync.Map // message id → the members it was sent to
	const sends, flips = 30, 10
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range sends {
			m := e.Send(t, owner, text(g.ID, fmt.Sprintf("m%d", i)))
			sent.Store(m.ID, true)
		}
	}()
	go func() {
		defer wg.Done()
		for range flips {
			e.MustDo(t, owner, http.MethodDelete, groupPath(g.ID, "/members/", fmt.Sprint(x)), nil, http.StatusNoContent, nil)
			e.MustDo(t, owner, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{x}}, http.StatusOK, nil)
		}
	}()
	wg.Wait()
	total := int64(1 + sends + 2*flips)
	awaitSeq(t, e, owner, g.ID, total)
	all := messagesOf(t, e, owner, g.ID)
	if int64(len(all)) != total {
		t.Fatalf("the owner sees %d messages, want %d", len(all), total)
	}
	for i, m := range all {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: sequences must be gap-free", i, m.Seq)
		}
	}
	// x, a member at the end, sees from their last join: what the ingress
	// posted to them (the event's member_ids) agrees with what REST shows.
	var lastJoin int64
	for _, m := range all {
		if m.System != nil && m.System.Action == "added" {
			lastJoin = m.Seq
		}
	}
	var want []string
	for _, m := range all[lastJoin-1:] {
		want = append(want, m.ID)
	}
	var got []string
	for _, m := range messagesOf(t, e, x, g.ID) {
		got = append(got, m.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("x sees %d messages, want the %d from their last join", len(got), len(want))
	}
	rows, err := e.Pool.Query(context.Background(),
		`SELECT envelope->'data'->'member_ids' @> $2::jsonb, (SELECT joined_at FROM conversation_participants WHERE conversation_id = $1 AND user_id = $3) <= (envelope->'data'->>'created_at')::timestamptz
		 FROM event_archive WHERE type = 'MessageSent' AND conversation_id = $1`, g.ID, fmt.Sprintf("[%d]", x), x)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var postedToX, inWindow bool
		if err := rows.Scan(&postedToX, &inWindow); err != nil {
			t.Fatal(err)
		}
		if inWindow && !postedToX {
			t.Fatalf("a message in x's current window was not posted to x")
		}
		n++
	}
	if n != sends {
		t.Fatalf("%d MessageSent events archived, want %d", n, sends)
	}
}

// TestGroupSendPrecedesJoinItRaced: a send that has read a group's members
// is published before a membership change can commit, so the change's seq
// follows the message's. The send is held between its read and its publish
// (its client_message_id's claim waits for a transaction of the test's that
// inserted the same claim); a join started then must wait for the send, and
// the message, created before the join, comes before it in the group.
func TestGroupSendPrecedesJoinItRaced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const owner, y, x = 9201, 9202, 9203
	g := createGroup(t, e, owner, "ordered", y)

	hold, err := e.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := hold.Exec(ctx, `INSERT INTO message_requests (sender_id, client_message_id, message_id, request_hash, envelope)
		VALUES ($1, 'held', gen_random_uuid(), 'held', '{}')`, owner); err != nil {
		t.Fatal(err)
	}
	sent := make(chan pipelinetest.Response, 1)
	go func() {
		body := text(g.ID, "before the join")
		body["client_message_id"] = "held"
		resp, err := e.Request(pipelinetest.Auth(owner), http.MethodPost, sendPath, body)
		if err != nil {
			resp.Status, resp.Body = -1, []byte(err.Error())
		}
		sent <- resp
	}()
	waiting := func(like string) func() (bool, string) {
		return func() (bool, string) {
			var n int
			err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`, like).Scan(&n)
			return err == nil && n > 0, fmt.Sprintf("%d waiting, err %v", n, err)
		}
	}
	pipelinetest.Eventually(t, "the send waits for its claim", waiting("%message_requests%"))

	joined := make(chan pipelinetest.Response, 1)
	go func() {
		resp, err := e.Request(pipelinetest.Auth(owner), http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{x}})
		if err != nil {
			resp.Status, resp.Body = -1, []byte(err.Error())
		}
		joined <- resp
	}()
	locked := waiting("%FOR UPDATE%")
	pipelinetest.Eventually(t, "the join waits for the send or ends", func() (bool, string) {
		if len(joined) > 0 {
			return true, "the join ended"
		}
		return locked()
	})
	if len(joined) > 0 {
		r := <-joined
		t.Fatalf("a join committed (%d) while a send that had read the members was not yet published", r.Status)
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-sent; r.Status != http.StatusOK {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	if r := <-joined; r.Status != http.StatusOK {
		t.Fatalf("join: %d %s", r.Status, r.Body)
	}
	awaitSeq(t, e, owner, g.ID, 3)
	if got, want := texts(messagesOf(t, e, owner, g.ID)), []string{"created", "before the join", "added"}; !slices.Equal(got, want) {
		t.Fatalf("the group holds %q, want %q", got, want)
	}
	if got := texts(messagesOf(t, e, x, g.ID)); !slices.Equal(got, []string{"added"}) {
		t.Fatalf("x sees %q, want only their join", got)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// lostCommitBus stands in for a bus that cannot join the ingress's
// transaction (EventBridge): it publishes at once, apart from it (a
// context without the transaction's scope), then, for a group change or a
// group's message, ends the ingress transaction that published it (its
// connection is terminated), so that the event is on the bus but its
// commit fails.
type lostCommitBus struct {
	events.Publisher
	pool   func() *pgxpool.Pool
	killed atomic.Int32
}

func (b *lostCommitBus) Publish(ctx context.Context, envs ...events.Envelope) error {
	if err := b.Publisher.Publish(context.Background(), envs...); err != nil {
		return err
	}
	for _, e := range envs {
		// The transaction waits for this publish, its last statement the
		// one that wrote the members, or, for a message, read them.
		last := map[string]string{events.TypeGroupChanged: "%JoinGroup%", events.TypeMessageSent: "%GroupMembersForSend%"}[e.Type]
		if last == "" || b.killed.Load() >= 3 {
			continue
		}
		var n int
		if err := b.pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE $1`, last).Scan(&n); err != nil {
			return err
		}
		b.killed.Add(int32(n))
	}
	return nil
}

// TestGroupChangeAppliedWhenItsCommitFails: a change or a message published
// apart from its transaction, which then fails, is a success for the
// client, and the persister applies it from its event.
func TestGroupChangeAppliedWhenItsCommitFails(t *testing.T) {
	t.Parallel()
	var e *pipelinetest.Env
	bus := &lostCommitBus{pool: func() *pgxpool.Pool { return e.Pool }}
	e = pipelinetest.New(t, pipelinetest.Options{WrapPublisher: func(p events.Publisher) events.Publisher {
		bus.Publisher = p
		return bus
	}})
	const a, b, c = 9201, 9202, 9203
	g := createGroup(t, e, a, "lost", b)
	// Its commit failed: the persister creates it from the event.
	pipelinetest.Eventually(t, "the persister created the group", func() (bool, string) {
		resp := e.Do(t, a, http.MethodGet, api.Prefix+"/conversations/"+g.ID, nil)
		return resp.Status == http.StatusOK, fmt.Sprint(resp.Status)
	})
	e.MustDo(t, a, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{c}}, http.StatusOK, nil)
	// A message is the same: published, it stands.
	m := e.Send(t, b, text(g.ID, "lost too"))
	if bus.killed.Load() != 3 {
		t.Fatalf("%d ingress transactions ended after their publish, want 3 (the creation, the addition and the message)", bus.killed.Load())
	}
	awaitSeq(t, e, a, g.ID, 3)
	if got := texts(messagesOf(t, e, c, g.ID)); !slices.Equal(got, []string{"added", "lost too"}) {
		t.Fatalf("c, added by a change whose commit failed, sees %q", got)
	}
	if got := messagesOf(t, e, a, g.ID)[2]; got.ID != m.ID {
		t.Fatalf("the group's third message is %s, want the send's %s", got.ID, m.ID)
	}
	if cv := e.ConversationOf(t, a, g.ID); cv.MemberCount != 3 || deref(cv.Title) != "lost" {
		t.Fatalf("the group after both commits failed: %+v", cv)
	}
}

// TestCachedGroupsRefuseOutsiders: once a conversation is known to be a
// group, a send skips the lookup that told so, and the read of the members
// under the group's lock still refuses whoever is not a member: a stranger,
// and a member removed after the kind was cached, with a reply or without.
func TestCachedGroupsRefuseOutsiders(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b, c, stranger = 9401, 9402, 9403, 9409
	g := createGroup(t, e, a, "Cached", b, c)
	first := e.Send(t, b, text(g.ID, "caches the kind"))
	e.Send(t, c, text(g.ID, "still a member"))
	e.MustDo(t, a, http.MethodDelete, groupPath(g.ID, fmt.Sprintf("/members/%d", c)), nil, http.StatusNoContent, nil)
	for name, try := range map[string]struct {
		user int64
		body map[string]any
	}{
		"a stranger":               {stranger, text(g.ID, "let me in")},
		"a stranger's reply":       {stranger, map[string]any{"conversation_id": g.ID, "text_content": "re", "reply_to_id": first.ID}},
		"a removed member":         {c, text(g.ID, "still here?")},
		"a removed member's reply": {c, map[string]any{"conversation_id": g.ID, "text_content": "re", "reply_to_id": first.ID}},
	} {
		resp := e.Do(t, try.user, http.MethodPost, sendPath, try.body)
		wantError(t, name, resp, http.StatusForbidden, chat.CodeForbidden)
	}
	resp := e.Do(t, b, http.MethodPost, sendPath, map[string]any{"conversation_id": g.ID, "recipient_id": a, "text_content": "x"})
	wantError(t, "a recipient_id with a group", resp, http.StatusUnprocessableEntity, chat.CodeInvalid)
	e.Send(t, b, text(g.ID, "members still send"))
}

// TestGroupsRefuseBlockedUsers: nobody adds a user who blocks them or whom
// they block, at creation or later; the refusal names the first such user
// and changes nothing.
func TestGroupsRefuseBlockedUsers(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b, c, blockedByA, blocksA = 9501, 9502, 9503, 9504, 9505
	e.MustDo(t, a, http.MethodPost, api.Prefix+"/blocks", map[string]any{"user_id": blockedByA}, http.StatusOK, nil)
	e.MustDo(t, blocksA, http.MethodPost, api.Prefix+"/blocks", map[string]any{"user_id": a}, http.StatusOK, nil)
	for name, members := range map[string][]int64{
		"create with someone a blocks":   {b, blockedByA, blocksA},
		"create with someone blocking a": {b, blocksA, blockedByA},
	} {
		resp := e.Do(t, a, http.MethodPost, api.Prefix+"/groups", map[string]any{"title": "No", "member_ids": members})
		wantError(t, name, resp, http.StatusForbidden, chat.CodeForbidden)
		if want := fmt.Sprintf("you cannot add user %d", members[1]); !strings.Contains(string(resp.Body), want) {
			t.Errorf("%s: %s, want %q", name, resp.Body, want)
		}
	}
	if n := e.Count(t, "conversations"); n != 0 {
		t.Fatalf("%d conversations after refused creations", n)
	}
	g := createGroup(t, e, a, "Yes", b)
	for _, u := range []int64{blockedByA, blocksA} {
		resp := e.Do(t, a, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{c, u}})
		wantError(t, fmt.Sprintf("add %d", u), resp, http.StatusForbidden, chat.CodeForbidden)
	}
	var list struct {
		Members []chat.GroupMemberView `json:"members"`
	}
	e.MustDo(t, a, http.MethodGet, groupPath(g.ID, "/members"), nil, http.StatusOK, &list)
	if len(list.Members) != 2 {
		t.Fatalf("members after refused adds: %+v, want a and b", list.Members)
	}
	// Someone else may add them: the blocks are a's.
	e.MustDo(t, a, http.MethodPut, groupPath(g.ID, fmt.Sprintf("/members/%d/role", b)), map[string]any{"role": "admin"}, http.StatusOK, nil)
	e.MustDo(t, b, http.MethodPost, groupPath(g.ID, "/members"), map[string]any{"user_ids": []int64{blockedByA, blocksA}}, http.StatusOK, nil)
}

// TestGroupChangesCommitWithTheirEvents: on the local bus a group change
// and its GroupChanged commit together in one connection, so a burst of
// changes larger than the pool waits for no second connection (each would
// hold one while waiting for the bus's), and a change whose commit fails
// leaves neither it nor its event.
func TestGroupChangesCommitWithTheirEvents(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	ctx := context.Background()
	const n = 60 // the pool holds 24
	status := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status[i] = e.Do(t, int64(9600+i), http.MethodPost, api.Prefix+"/groups",
				map[string]any{"title": fmt.Sprint("burst ", i), "member_ids": []int64{9700 + int64(i)}}).Status
		})
	}
	wg.Wait()
	for i, s := range status {
		if s != http.StatusCreated {
			t.Errorf("group %d of a burst of %d: %d, want 201", i, n, s)
		}
	}
	// A deferred constraint trigger fails the commit of a group titled
	// "refused", after everything in its transaction was written.
	for _, stmt := range []string{
		`CREATE FUNCTION refuse_group() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.title = 'refused' THEN RAISE EXCEPTION 'commit refused for the test'; END IF;
			RETURN NULL;
		END $$`,
		`CREATE CONSTRAINT TRIGGER refuse_group AFTER INSERT OR UPDATE ON conversations
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_group()`,
	} {
		if _, err := e.Pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	const a, b = 9801, 9802
	resp := e.Do(t, a, http.MethodPost, api.Prefix+"/groups", map[string]any{"title": "refused", "member_ids": []int64{b}})
	wantError(t, "a creation whose commit fails", resp, http.StatusServiceUnavailable, chat.CodeUnavailable)
	g := createGroup(t, e, a, "kept", b)
	resp = e.Do(t, a, http.MethodPatch, groupPath(g.ID), map[string]any{"title": "refused"})
	wantError(t, "a rename whose commit fails", resp, http.StatusServiceUnavailable, chat.CodeUnavailable)
	var refused int
	if err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM event_archive WHERE type = $1 AND envelope->'data'->>'title' = 'refused'`,
		events.TypeGroupChanged).Scan(&refused); err != nil {
		t.Fatal(err)
	}
	if refused != 0 {
		t.Fatalf("%d changes archived whose commits failed, want none", refused)
	}
	e.AwaitIdle(t)
	if c := e.ConversationOf(t, a, g.ID); deref(c.Title) != "kept" {
		t.Fatalf("the group after a refused rename: %+v", c)
	}
}
