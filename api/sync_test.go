package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/api"
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
	awaitFeed(t, e, b, 4)

	if p := syncOf(t, e, b, ""); len(p.Changes) != 4 || p.Next != 4 || p.HasMore || p.Reset {
		t.Fatalf("sync without parameters: %+v", p)
	}
	first := syncOf(t, e, b, "?since=0&limit=3")
	if len(first.Changes) != 3 || first.Next != 3 || !first.HasMore || first.Reset {
		t.Fatalf("first page: %+v", first)
	}
	for i, c := range first.Changes {
		if c.Position != int64(i+1) || c.Kind != "newMessage" || c.ConversationID != conv || c.Data["id"] != ids[i] || c.Data["seq"] != float64(i+1) {
			t.Fatalf("change %d: %+v", i, c)
		}
	}
	rest := syncOf(t, e, b, fmt.Sprintf("?since=%d&limit=3", first.Next))
	if len(rest.Changes) != 1 || rest.Next != 4 || rest.HasMore || rest.Changes[0].Kind != "messageRead" || rest.Changes[0].Data["readerId"] != float64(b) {
		t.Fatalf("second page: %+v", rest)
	}
	// The cap is chat.Limits', and the document's.
	if p := syncOf(t, e, b, fmt.Sprintf("?limit=%d", chat.DefaultLimits().MaxSyncChanges)); len(p.Changes) != 4 || p.HasMore {
		t.Fatalf("sync at the cap: %+v", p)
	}
	if p := syncOf(t, e, b, "?since=4"); len(p.Changes) != 0 || p.Next != 4 || p.HasMore || p.Reset {
		t.Fatalf("nothing new: %+v", p)
	}
	// The sender's feed has the messages too; another user's is empty.
	if p := syncOf(t, e, a, "?since=0"); len(p.Changes) != 4 || p.Changes[3].Kind != "messageRead" {
		t.Fatalf("the sender's feed: %+v", p)
	}
	if p := syncOf(t, e, 8003, "?since=0"); len(p.Changes) != 0 || p.Next != 0 || p.Reset {
		t.Fatalf("a stranger's feed: %+v", p)
	}

	t.Run("ahead of the feed", func(t *testing.T) {
		if p := syncOf(t, e, b, "?since=9"); !p.Reset || p.Next != 4 || len(p.Changes) != 0 {
			t.Fatalf("since=9 with a head of 4: %+v", p)
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
			if p := syncOf(t, e, b, fmt.Sprintf("?since=%d", since)); !p.Reset || p.Next != 4 || len(p.Changes) != 0 || p.HasMore {
				t.Fatalf("since=%d after pruning positions 1 and 2: %+v", since, p)
			}
		}
		if p := syncOf(t, e, b, "?since=2"); p.Reset || len(p.Changes) != 2 || p.Changes[0].Position != 3 || p.Next != 4 {
			t.Fatalf("since=2, within retention: %+v", p)
		}
		// The sender's feed was not pruned.
		if p := syncOf(t, e, a, "?since=0"); p.Reset || len(p.Changes) != 4 {
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
	awaitFeed(t, e, a, 2)
	awaitFeed(t, e, b, 2)

	var res struct {
		MessageID string    `json:"message_id"`
		At        time.Time `json:"at"`
	}
	e.MustDo(t, a, http.MethodPost, api.Prefix+"/messages/"+unsent.ID+"/unsend", nil, http.StatusAccepted, &res)
	awaitFeed(t, e, a, 3)
	awaitFeed(t, e, b, 3)
	for _, u := range []int64{a, b} {
		p := syncOf(t, e, u, "?since=2")
		if len(p.Changes) != 1 || p.Next != 3 || p.HasMore || p.Reset {
			t.Fatalf("u%d's sync after the unsend: %+v", u, p)
		}
		c := p.Changes[0]
		if c.Position != 3 || c.Kind != "messageUnsent" || c.ConversationID != conv ||
			c.Data["messageId"] != unsent.ID || c.Data["conversationId"] != conv {
			t.Fatalf("u%d's unsend: %+v", u, c)
		}
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(c.Data["unsentAt"])); err != nil || !at.Equal(res.At) {
			t.Fatalf("u%d's unsentAt %v (%v), want the answer's %v", u, c.Data["unsentAt"], err, res.At)
		}
	}

	e.MustDo(t, b, http.MethodDelete, api.Prefix+"/messages/"+kept.ID, nil, http.StatusAccepted, nil)
	awaitFeed(t, e, b, 4)
	p := syncOf(t, e, b, "?since=0")
	if len(p.Changes) != 4 || p.Next != 4 || p.HasMore || p.Reset {
		t.Fatalf("b's sync after the delete: %+v", p)
	}
	for i, c := range p.Changes {
		if c.Position != int64(i+1) {
			t.Fatalf("b's change %d at position %d", i, c.Position)
		}
	}
	if c := p.Changes[3]; c.Kind != "messageDeleted" || c.ConversationID != conv ||
		c.Data["messageId"] != kept.ID || c.Data["conversationId"] != conv || c.Data["deletedAt"] == nil {
		t.Fatalf("b's delete: %+v", c)
	}
	// The entry is appended for b alone in the transaction that stored it,
	// so a's feed, read after b's holds it, would hold it already.
	pa := syncOf(t, e, a, "?since=0")
	if len(pa.Changes) != 3 || pa.Next != 3 || pa.HasMore || pa.Reset {
		t.Fatalf("a's sync after b's delete: %+v", pa)
	}
	for i, c := range pa.Changes {
		if c.Position != int64(i+1) || c.Kind == "messageDeleted" {
			t.Fatalf("a's change %d: %+v", i, c)
		}
	}
}
