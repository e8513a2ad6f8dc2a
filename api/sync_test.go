package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/workers/persister"
)

// syncPage is GET /sync's answer.
type syncPage struct {
	Changes []struct {
		Position       int64          `json:"position"`
		Kind           string         `json:"kind"`
		ConversationID string         `json:"conversation_id"`
		OccurredAt     time.Time      `json:"occurred_at"`
		Data           map[string]any `json:"data"`
	} `json:"changes"`
	Next    int64 `json:"next"`
	HasMore bool  `json:"has_more"`
	Reset   bool  `json:"reset"`
}

func syncOf(t *testing.T, e *pipelinetest.Env, user int64, query string) syncPage {
	t.Helper()
	var p syncPage
	e.MustDo(t, user, http.MethodGet, api.Prefix+"/sync"+query, nil, http.StatusOK, &p)
	return p
}

// awaitFeed waits until user's feed holds n changes.
func awaitFeed(t *testing.T, e *pipelinetest.Env, user int64, n int) {
	t.Helper()
	pipelinetest.Eventually(t, fmt.Sprintf("user %d's feed holds %d changes", user, n), func() (bool, string) {
		p := syncOf(t, e, user, fmt.Sprintf("?since=0&limit=%d", n+1))
		return len(p.Changes) == n, fmt.Sprintf("%d changes", len(p.Changes))
	})
}

// TestSync pages through a user's feed, answers reset for a position that
// pruning removed or that is ahead of the feed, and refuses bad parameters
// with a reason.
func TestSync(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 8001, 8002
	conv := e.Conversation(t, a, b)
	var ids []string
	for i := range 3 {
		ids = append(ids, e.Send(t, a, text(conv, fmt.Sprintf("m%d", i))).ID)
	}
	e.AwaitMessages(t, b, conv, 3)
	e.MustDo(t, b, http.MethodPost, api.Prefix+"/messages/read", map[string]any{"message_ids": ids}, http.StatusOK, nil)
	// The conversation's creation, the three messages, the read.
	awaitFeed(t, e, b, 5)

	if p := syncOf(t, e, b, ""); len(p.Changes) != 5 || p.Next != 5 || p.HasMore || p.Reset {
		t.Fatalf("sync without parameters: %+v", p)
	}
	first := syncOf(t, e, b, "?since=0&limit=3")
	if len(first.Changes) != 3 || first.Next != 3 || !first.HasMore || first.Reset {
		t.Fatalf("first page: %+v", first)
	}
	if c := first.Changes[0]; c.Position != 1 || c.Kind != "conversationCreated" || c.ConversationID != conv ||
		c.Data["conversationId"] != conv || c.Data["kind"] != "direct" || c.Data["creatorId"] != float64(a) ||
		fmt.Sprint(c.Data["participantIds"]) != fmt.Sprint([]any{float64(a), float64(b)}) || c.Data["createdAt"] == nil {
		t.Fatalf("change 0: %+v, want the conversation's creation", c)
	}
	for i, c := range first.Changes[1:] {
		if c.Position != int64(i+2) || c.Kind != "newMessage" || c.ConversationID != conv || c.Data["id"] != ids[i] || c.Data["seq"] != float64(i+1) {
			t.Fatalf("change %d: %+v", i+1, c)
		}
	}
	rest := syncOf(t, e, b, fmt.Sprintf("?since=%d&limit=3", first.Next))
	if len(rest.Changes) != 2 || rest.Next != 5 || rest.HasMore || rest.Changes[0].Data["id"] != ids[2] ||
		rest.Changes[1].Kind != "messageRead" || rest.Changes[1].Data["readerId"] != float64(b) {
		t.Fatalf("second page: %+v", rest)
	}
	// The cap is chat.Limits', and the document's.
	if p := syncOf(t, e, b, fmt.Sprintf("?limit=%d", chat.DefaultLimits().MaxSyncChanges)); len(p.Changes) != 5 || p.HasMore {
		t.Fatalf("sync at the cap: %+v", p)
	}
	if p := syncOf(t, e, b, "?since=5"); len(p.Changes) != 0 || p.Next != 5 || p.HasMore || p.Reset {
		t.Fatalf("nothing new: %+v", p)
	}
	// The sender's feed has the messages too; another user's is empty.
	if p := syncOf(t, e, a, "?since=0"); len(p.Changes) != 5 || p.Changes[0].Kind != "conversationCreated" || p.Changes[4].Kind != "messageRead" {
		t.Fatalf("the sender's feed: %+v", p)
	}
	if p := syncOf(t, e, 8003, "?since=0"); len(p.Changes) != 0 || p.Next != 0 || p.Reset {
		t.Fatalf("a stranger's feed: %+v", p)
	}

	t.Run("ahead of the feed", func(t *testing.T) {
		if p := syncOf(t, e, b, "?since=9"); !p.Reset || p.Next != 5 || len(p.Changes) != 0 {
			t.Fatalf("since=9 with a head of 5: %+v", p)
		}
	})

	t.Run("bad parameters", func(t *testing.T) {
		for query, reason := range map[string]string{
			"?since=-1":           "since",
			"?since=x":            "since",
			"?since=01":           "since",
			"?since=%2B1":         "since",
			"?since=1&since=2":    "since",
			"?since=":             "since",
			"?limit=0":            "limit",
			"?limit=1001":         "limit",
			"?limit=1.5":          "limit",
			"?since=0&colour=red": "colour",
		} {
			resp := e.Do(t, b, http.MethodGet, api.Prefix+"/sync"+query, nil)
			var body pipelinetest.ErrorBody
			resp.JSON(t, &body)
			if resp.Status != http.StatusBadRequest || body.Error.Code != string(chat.CodeBadRequest) || !strings.Contains(body.Error.Message, reason) {
				t.Errorf("%s: %d %+v, want 400 naming %s", query, resp.Status, body, reason)
			}
		}
		if resp := e.Do(t, 0, http.MethodGet, api.Prefix+"/sync?since=0", nil); resp.Status != http.StatusUnauthorized {
			t.Errorf("without a token: %d", resp.Status)
		}
	})

	t.Run("after retention", func(t *testing.T) {
		// The first two entries are older than the retention.
		if _, err := e.Pool.Exec(context.Background(),
			`UPDATE user_feed SET appended_at = now() - interval '40 days' WHERE user_id = $1 AND position <= 2`, b); err != nil {
			t.Fatal(err)
		}
		n, err := persister.PruneFeed(context.Background(), e.Pool, time.Now().Add(-30*24*time.Hour), 1)
		if err != nil || n != 2 {
			t.Fatalf("pruned %d (err %v), want 2", n, err)
		}
		for _, since := range []int64{0, 1} {
			if p := syncOf(t, e, b, fmt.Sprintf("?since=%d", since)); !p.Reset || p.Next != 5 || len(p.Changes) != 0 || p.HasMore {
				t.Fatalf("since=%d after pruning positions 1 and 2: %+v", since, p)
			}
		}
		if p := syncOf(t, e, b, "?since=2"); p.Reset || len(p.Changes) != 3 || p.Changes[0].Position != 3 || p.Next != 5 {
			t.Fatalf("since=2, within retention: %+v", p)
		}
		// The sender's feed was not pruned.
		if p := syncOf(t, e, a, "?since=0"); p.Reset || len(p.Changes) != 5 {
			t.Fatalf("the sender's feed: %+v", p)
		}
	})
}

// TestSyncUnsendAndDeleteForMe: an unsend is in both participants' feeds,
// a delete for me only in the feed of the user who deleted.
func TestSyncUnsendAndDeleteForMe(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 8101, 8102
	conv := e.Conversation(t, a, b)
	unsent := e.Send(t, a, text(conv, "unsent"))
	kept := e.Send(t, a, text(conv, "deleted for b"))
	e.AwaitMessages(t, b, conv, 2)
	// The conversation's creation and the two messages.
	awaitFeed(t, e, a, 3)
	awaitFeed(t, e, b, 3)

	var res struct {
		MessageID string    `json:"message_id"`
		At        time.Time `json:"at"`
	}
	e.MustDo(t, a, http.MethodPost, api.Prefix+"/messages/"+unsent.ID+"/unsend", nil, http.StatusAccepted, &res)
	awaitFeed(t, e, a, 4)
	awaitFeed(t, e, b, 4)
	for _, u := range []int64{a, b} {
		p := syncOf(t, e, u, "?since=3")
		if len(p.Changes) != 1 || p.Next != 4 || p.HasMore || p.Reset {
			t.Fatalf("u%d's sync after the unsend: %+v", u, p)
		}
		c := p.Changes[0]
		if c.Position != 4 || c.Kind != "messageUnsent" || c.ConversationID != conv ||
			c.Data["messageId"] != unsent.ID || c.Data["conversationId"] != conv {
			t.Fatalf("u%d's unsend: %+v", u, c)
		}
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(c.Data["unsentAt"])); err != nil || !at.Equal(res.At) {
			t.Fatalf("u%d's unsentAt %v (%v), want the answer's %v", u, c.Data["unsentAt"], err, res.At)
		}
	}

	e.MustDo(t, b, http.MethodDelete, api.Prefix+"/messages/"+kept.ID, nil, http.StatusAccepted, nil)
	awaitFeed(t, e, b, 5)
	p := syncOf(t, e, b, "?since=0")
	if len(p.Changes) != 5 || p.Next != 5 || p.HasMore || p.Reset {
		t.Fatalf("b's sync after the delete: %+v", p)
	}
	for i, c := range p.Changes {
		if c.Position != int64(i+1) {
			t.Fatalf("b's change %d at position %d", i, c.Position)
		}
	}
	if c := p.Changes[4]; c.Kind != "messageDeleted" || c.ConversationID != conv ||
		c.Data["messageId"] != kept.ID || c.Data["conversationId"] != conv || c.Data["deletedAt"] == nil {
		t.Fatalf("b's delete: %+v", c)
	}
	// The entry is appended for b alone in the transaction that stored it,
	// so a's feed, read after b's holds it, would hold it already.
	pa := syncOf(t, e, a, "?since=0")
	if len(pa.Changes) != 4 || pa.Next != 4 || pa.HasMore || pa.Reset {
		t.Fatalf("a's sync after b's delete: %+v", pa)
	}
	for i, c := range pa.Changes {
		if c.Position != int64(i+1) || c.Kind == "messageDeleted" {
			t.Fatalf("a's change %d: %+v", i, c)
		}
	}
}

// TestSyncConversationCreated: a direct conversation's creation is one
// event, committed with the conversation, and one entry in each
// participant's feed, however many first requests race to create it; asking
// for it again appends nothing.
func TestSyncConversationCreated(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 8201, 8202
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			from, to := int64(a), int64(b)
			if i%2 == 1 {
				from, to = b, a
			}
			if i%4 < 2 {
				ids[i] = e.Conversation(t, from, to)
				return
			}
			ids[i] = e.Send(t, from, map[string]any{"recipient_id": to, "content_type": "text", "text_content": fmt.Sprint("first ", i)}).ConversationID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("racing first requests answered conversations %v, want one", ids)
		}
	}
	e.Conversation(t, a, b) // exists: appends nothing
	e.AwaitIdle(t)
	var published int
	if err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM event_archive WHERE type = $1`, events.TypeConversationCreated).Scan(&published); err != nil {
		t.Fatal(err)
	}
	if published != 1 {
		t.Fatalf("%d creations published by %d racing first requests, want 1: the losers' inserts did nothing", published, n)
	}
	for _, u := range []int64{a, b} {
		var created []string
		for _, c := range syncOf(t, e, u, "?since=0").Changes {
			if c.Kind == "conversationCreated" {
				created = append(created, c.ConversationID)
			}
		}
		if len(created) != 1 || created[0] != ids[0] {
			t.Fatalf("u%d's feed has creations %v, want one of %s", u, created, ids[0])
		}
	}
}

// TestConversationCreatedCommitsWithItsEvent: on the local bus a direct
// conversation's creation and its ConversationCreated commit together, so a
// creation whose commit fails leaves neither behind, and the retry creates
// both.
func TestConversationCreatedCommitsWithItsEvent(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 8301, 8302
	ctx := context.Background()
	// A deferred constraint trigger fails the commit of the first insert
	// of this pair's conversation, after everything in the transaction
	// (the publish included) was written.
	for _, stmt := range []string{
		`CREATE TABLE fail_commit_once (done bool NOT NULL)`,
		`CREATE FUNCTION fail_commit_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.direct_key = '8301:8302' AND NOT EXISTS (SELECT 1 FROM fail_commit_once) THEN
				RAISE EXCEPTION 'commit refused for the test';
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE CONSTRAINT TRIGGER fail_commit_once AFTER INSERT ON conversations
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit_once()`,
	} {
		if _, err := e.Pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	resp := e.Do(t, a, http.MethodPost, api.Prefix+"/conversations", map[string]any{"recipient_id": b})
	wantError(t, "a creation whose commit fails", resp, http.StatusServiceUnavailable, chat.CodeUnavailable)
	count := func(query string) int {
		t.Helper()
		var n int
		if err := e.Pool.QueryRow(ctx, query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM event_archive WHERE type = 'ConversationCreated'`); n != 0 {
		t.Fatalf("%d creations archived after the failed commit, want none", n)
	}
	if n := count(`SELECT count(*) FROM conversations`); n != 0 {
		t.Fatalf("%d conversations after the failed commit", n)
	}
	if _, err := e.Pool.Exec(ctx, `INSERT INTO fail_commit_once VALUES (true)`); err != nil {
		t.Fatal(err)
	}
	conv := e.Conversation(t, a, b)
	awaitFeed(t, e, b, 1)
	if p := syncOf(t, e, b, "?since=0"); p.Changes[0].Kind != "conversationCreated" || p.Changes[0].ConversationID != conv {
		t.Fatalf("after the retry: %+v", p)
	}
	if n := count(`SELECT count(*) FROM event_archive WHERE type = 'ConversationCreated'`); n != 1 {
		t.Fatalf("%d creations archived after the retry, want 1", n)
	}
}
