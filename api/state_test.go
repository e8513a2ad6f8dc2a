package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

func listed(p pipelinetest.Page[chat.ConversationView]) []string {
	ids := make([]string, len(p.Data))
	for i, c := range p.Data {
		ids[i] = c.ID
	}
	return ids
}

// Sends, settings, deletions and read receipts go through the bus and the
// persister and become visible through REST. The cases share one backend
// and run in parallel; each has users of its own.
func TestChatThroughREST(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	for _, c := range []struct {
		name  string
		users int64 // the case's users are users+1, users+2 and users+3
		run   func(t *testing.T, e *pipelinetest.Env, u1, u2, u3 int64)
	}{
		{"concurrent senders in one conversation", 0, concurrentSenders},
		{"client_message_id makes retries idempotent", 200, clientMessageID},
		{"settings", 300, conversationSettings},
		{"delete conversation for me", 400, deleteConversationForMe},
		{"delete message for me", 500, deleteMessageForMe},
		{"mark read", 600, markRead},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, e, c.users+1, c.users+2, c.users+3)
		})
	}
}

// Settings changed through REST become visible through REST, for the
// participant who changed them only.
func conversationSettings(t *testing.T, e *pipelinetest.Env, u1, u2, u3 int64) {
	older := e.Conversation(t, u1, u2)
	newer := e.Conversation(t, u1, u3)
	e.Send(t, u1, text(older, "older"))
	e.Send(t, u1, text(newer, "newer"))
	e.AwaitMessages(t, u2, older, 1)
	e.AwaitMessages(t, u3, newer, 1)
	if got := listed(e.Conversations(t, u1, "")); !slices.Equal(got, []string{newer, older}) {
		t.Fatalf("list before pinning: %v, want the latest activity first", got)
	}

	patch := func(t *testing.T, user int64, conv string, body map[string]any) {
		t.Helper()
		var resp struct {
			Status         string
			ConversationID string `json:"conversation_id"`
		}
		e.MustDo(t, user, http.MethodPatch, convPath(conv)+"/settings", body, http.StatusAccepted, &resp)
		if resp.Status != "accepted" || resp.ConversationID != conv {
			t.Fatalf("settings answered %+v", resp)
		}
	}
	await := func(t *testing.T, user int64, conv, what string, ok func(chat.ConversationView) bool) {
		t.Helper()
		pipelinetest.Eventually(t, fmt.Sprintf("user %d sees %s", user, what), func() (bool, string) {
			c := e.ConversationOf(t, user, conv)
			return ok(c), fmt.Sprintf("%+v", c)
		})
	}

	t.Run("pin and mute", func(t *testing.T) {
		patch(t, u1, older, map[string]any{"pinned": true, "muted": true})
		await(t, u1, older, "it pinned and muted", func(c chat.ConversationView) bool { return c.Pinned && c.Muted && !c.Archived })
		if got := listed(e.Conversations(t, u1, "")); !slices.Equal(got, []string{older, newer}) {
			t.Fatalf("list after pinning: %v, want the pinned conversation first", got)
		}
		if c := e.ConversationOf(t, u2, older); c.Pinned || c.Muted {
			t.Fatalf("the other participant's settings changed: %+v", c)
		}
	})

	t.Run("archive", func(t *testing.T) {
		patch(t, u1, newer, map[string]any{"archived": true})
		await(t, u1, newer, "it archived", func(c chat.ConversationView) bool { return c.Archived })
		if got := listed(e.Conversations(t, u1, "?archived=true")); !slices.Equal(got, []string{newer}) {
			t.Fatalf("archived list: %v", got)
		}
		if p := e.Conversations(t, u1, "?archived=false"); !slices.Equal(listed(p), []string{older}) || p.Total != 1 {
			t.Fatalf("unarchived list: %v total %d", listed(p), p.Total)
		}
		if p := e.Conversations(t, u1, ""); p.Total != 2 {
			t.Fatalf("full list total %d, want 2", p.Total)
		}
	})

	t.Run("a change of one setting keeps the others", func(t *testing.T) {
		patch(t, u1, older, map[string]any{"pinned": false})
		await(t, u1, older, "it unpinned and still muted", func(c chat.ConversationView) bool { return !c.Pinned && c.Muted })
	})

	t.Run("paging the list", func(t *testing.T) {
		p := e.Conversations(t, u1, "?page=2&page_size=1")
		if p.Total != 2 || p.Page != 2 || p.PageSize != 1 || len(p.Data) != 1 {
			t.Fatalf("page 2 of 1: %+v", p)
		}
		if p := e.Conversations(t, u1, "?page=3&page_size=1"); p.Total != 2 || len(p.Data) != 0 || p.Data == nil {
			t.Fatalf("page past the end: %+v (data must be [], not null)", p)
		}
	})
}

// Deleting a conversation "for me" hides it and its history from that
// participant only, until a newer message brings it back.
func deleteConversationForMe(t *testing.T, e *pipelinetest.Env, u1, u2, _ int64) {
	conv := e.Conversation(t, u1, u2)
	for i := range 3 {
		e.Send(t, []int64{u1, u2}[i%2], text(conv, fmt.Sprint("old ", i)))
	}
	e.AwaitMessages(t, u1, conv, 3)

	e.MustDo(t, u1, http.MethodDelete, convPath(conv), nil, http.StatusAccepted, nil)
	pipelinetest.Eventually(t, "the conversation leaves u1's list", func() (bool, string) {
		p := e.Conversations(t, u1, "")
		return p.Total == 0 && len(p.Data) == 0, fmt.Sprintf("%v total %d", listed(p), p.Total)
	})
	if got := e.After(t, u1, conv, 0, 100).Data; len(got) != 0 {
		t.Fatalf("u1 still sees %d messages of the deleted conversation", len(got))
	}
	var p pipelinetest.Page[chat.MessageView]
	e.MustDo(t, u1, http.MethodGet, messagesPath(conv), nil, http.StatusOK, &p)
	if p.Total != 0 || len(p.Data) != 0 {
		t.Fatalf("u1's paged listing: total %d, %d messages", p.Total, len(p.Data))
	}
	if got := listed(e.Conversations(t, u2, "")); !slices.Equal(got, []string{conv}) {
		t.Fatalf("u2's list: %v", got)
	}
	if got := e.After(t, u2, conv, 0, 100).Data; len(got) != 3 {
		t.Fatalf("u2 sees %d messages, want 3", len(got))
	}

	fresh := e.Send(t, u2, text(conv, "are you there?"))
	pipelinetest.Eventually(t, "the conversation comes back to u1's list", func() (bool, string) {
		p := e.Conversations(t, u1, "")
		return slices.Equal(listed(p), []string{conv}) && p.Total == 1, fmt.Sprintf("%v total %d", listed(p), p.Total)
	})
	got := e.After(t, u1, conv, 0, 100).Data
	if len(got) != 1 || got[0].ID != fresh.ID || got[0].Seq != 4 {
		t.Fatalf("u1 sees %v after the new message, want only %s at seq 4", idsOf(got), fresh.ID)
	}
	if c := e.ConversationOf(t, u1, conv); c.LastMessage == nil || c.LastMessage.ID != fresh.ID || c.UnreadCount != 1 {
		t.Fatalf("u1's conversation: %+v", c)
	}
	e.AwaitMessages(t, u2, conv, 4)
}

// Deleting a message "for me" hides it from that user only.
func deleteMessageForMe(t *testing.T, e *pipelinetest.Env, u1, u2, _ int64) {
	conv := e.Conversation(t, u1, u2)
	var sent []chat.MessageView
	for i := range 3 {
		sent = append(sent, e.Send(t, u2, text(conv, fmt.Sprint("message ", i))))
	}
	e.AwaitMessages(t, u1, conv, 3)

	for range 2 { // deleting twice is the same as once
		var resp struct {
			Status    string
			MessageID string `json:"message_id"`
		}
		e.MustDo(t, u1, http.MethodDelete, api.Prefix+"/messages/"+sent[2].ID, nil, http.StatusAccepted, &resp)
		if resp.Status != "accepted" || resp.MessageID != sent[2].ID {
			t.Fatalf("delete answered %+v", resp)
		}
	}
	got := e.AwaitMessages(t, u1, conv, 2)
	if ids := uniq(idsOf(got)); !slices.Equal(ids, uniq([]string{sent[0].ID, sent[1].ID})) {
		t.Fatalf("u1 sees %v, want %s and %s", ids, sent[0].ID, sent[1].ID)
	}
	var p pipelinetest.Page[chat.MessageView]
	e.MustDo(t, u1, http.MethodGet, messagesPath(conv), nil, http.StatusOK, &p)
	if p.Total != 2 || len(p.Data) != 2 {
		t.Fatalf("u1's paged listing: total %d, %d messages", p.Total, len(p.Data))
	}
	// The conversation's preview (the latest message by sequence) and the
	// unread count follow what each participant sees.
	if c, last := e.ConversationOf(t, u1, conv), got[1]; c.UnreadCount != 2 || c.LastMessage == nil || c.LastMessage.ID != last.ID {
		t.Fatalf("u1's conversation: unread %d, last message %+v; want 2 and %s", c.UnreadCount, c.LastMessage, last.ID)
	}
	all := e.After(t, u2, conv, 0, 100).Data
	if c, last := e.ConversationOf(t, u2, conv), all[len(all)-1]; c.LastMessage == nil || c.LastMessage.ID != last.ID {
		t.Fatalf("u2's last message %+v, want %s", c.LastMessage, last.ID)
	}
	e.AwaitIdle(t)
	if got := e.After(t, u2, conv, 0, 100).Data; len(got) != 3 {
		t.Fatalf("u2 sees %d messages, want all 3", len(got))
	}
	var n int
	if err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM message_deletions WHERE message_id = $1`, sent[2].ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d deletions stored (err %v), want 1", n, err)
	}
}

// Marking messages read sets read_at, lowers the unread count and advances
// the read position; ids of messages the reader did not receive are
// reported as ignored.
func markRead(t *testing.T, e *pipelinetest.Env, u1, u2, _ int64) {
	conv := e.Conversation(t, u1, u2)
	var toTwo []chat.MessageView
	for i := range 3 {
		toTwo = append(toTwo, e.Send(t, u1, text(conv, fmt.Sprint("for two ", i))))
	}
	fromTwo := e.Send(t, u2, text(conv, "from two"))
	e.AwaitMessages(t, u2, conv, 4)
	if c := e.ConversationOf(t, u2, conv); c.UnreadCount != 3 || c.LastReadSeq != 0 {
		t.Fatalf("before reading: unread %d, last_read_seq %d", c.UnreadCount, c.LastReadSeq)
	}

	unknown := uuid.Must(uuid.NewV7()).String()
	var res struct {
		Status  string
		Read    []string
		Ignored []string
	}
	e.MustDo(t, u2, http.MethodPost, readPath, map[string]any{
		"message_ids": []string{toTwo[0].ID, toTwo[1].ID, toTwo[1].ID, fromTwo.ID, unknown},
	}, http.StatusOK, &res)
	slices.Sort(res.Read)
	slices.Sort(res.Ignored)
	if wantRead, wantIgnored := uniq([]string{toTwo[0].ID, toTwo[1].ID}), uniq([]string{fromTwo.ID, unknown}); res.Status != "ok" ||
		!slices.Equal(res.Read, wantRead) || !slices.Equal(res.Ignored, wantIgnored) {
		t.Fatalf("read answered %+v, want read %v and ignored %v", res, wantRead, wantIgnored)
	}

	// Sequence numbers follow the order the persister stored the messages
	// in, which need not be the order they were sent in; the read position
	// is the highest sequence read.
	var got []chat.MessageView
	pipelinetest.Eventually(t, "u2 sees the two messages read", func() (bool, string) {
		got = e.After(t, u2, conv, 0, 100).Data
		n := 0
		for _, m := range got {
			if m.ReadAt != nil {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d read", n)
	})
	var lastRead, unread int64
	for _, m := range got {
		read := m.ID == toTwo[0].ID || m.ID == toTwo[1].ID
		if (m.ReadAt != nil) != read || (m.Status == "read") != read {
			t.Fatalf("message %s from %d: read_at %v status %s, want read=%v", m.ID, m.SenderID, m.ReadAt, m.Status, read)
		}
		if read {
			lastRead = max(lastRead, m.Seq)
		}
	}
	for _, m := range got {
		if m.SenderID == u1 && m.ReadAt == nil && m.Seq > lastRead {
			unread++
		}
	}
	c := e.ConversationOf(t, u2, conv)
	if c.LastReadSeq != lastRead || c.UnreadCount != unread || c.UnreadCount >= 3 {
		t.Fatalf("after reading: last_read_seq %d, unread %d; want %d and %d", c.LastReadSeq, c.UnreadCount, lastRead, unread)
	}
	// The sender sees the receipt too.
	for _, m := range e.After(t, u1, conv, 0, 100).Data {
		if m.ID == toTwo[0].ID && (m.ReadAt == nil || m.Status != "read") {
			t.Fatalf("u1 sees %+v, want their first message read", m)
		}
	}
	if c := e.ConversationOf(t, u1, conv); c.UnreadCount != 1 || c.LastReadSeq != 0 {
		t.Fatalf("the sender's own read state changed: unread %d, last_read_seq %d", c.UnreadCount, c.LastReadSeq)
	}

	// Reading the same messages again changes nothing.
	e.MustDo(t, u2, http.MethodPost, readPath, map[string]any{"message_ids": []string{toTwo[0].ID}}, http.StatusOK, nil)
	e.AwaitIdle(t)
	for i, m := range e.After(t, u2, conv, 0, 100).Data {
		if (m.ReadAt == nil) != (got[i].ReadAt == nil) || m.ReadAt != nil && !m.ReadAt.Equal(*got[i].ReadAt) {
			t.Fatalf("a second receipt moved read_at of %s from %v to %v", m.ID, got[i].ReadAt, m.ReadAt)
		}
	}
}
