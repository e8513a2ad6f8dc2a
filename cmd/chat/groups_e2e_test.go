package main

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// groupMessage is a stored message as a group's member lists it.
type groupMessage struct {
	ID          string  `json:"id"`
	Seq         int64   `json:"seq"`
	SenderID    int64   `json:"sender_id"`
	RecipientID *int64  `json:"recipient_id"`
	ContentType string  `json:"content_type"`
	TextContent *string `json:"text_content"`
	System      *struct {
		Action  string  `json:"action"`
		ActorID int64   `json:"actor_id"`
		UserIDs []int64 `json:"user_ids"`
	} `json:"system"`
}

// groupMessages lists what user sees of a group after sequence after, in
// sequence order.
func (e *env) groupMessages(user int64, conv string, after int64) []groupMessage {
	e.t.Helper()
	var page struct {
		Data    []groupMessage `json:"data"`
		HasMore bool           `json:"has_more"`
	}
	if code := e.call(user, "GET", fmt.Sprintf("/conversations/%s/messages?after_seq=%d&page_size=100", conv, after), nil, &page); code != 200 {
		e.t.Fatalf("user %d lists group %s after %d: status %d", user, conv, after, code)
	}
	if page.HasMore {
		e.t.Fatalf("user %d's list of group %s has more than a page", user, conv)
	}
	return page.Data
}

// expectNot is expect, failing if a frame matching bad arrives first
// (expect skips, and drops, the frames it is not waiting for).
func (c *wsClient) expectNot(typ string, match, bad func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-c.inbox:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %q", typ)
			}
			if bad(f) {
				c.t.Fatalf("unexpected frame while waiting for %q: %v", typ, f)
			}
			if f["type"] == typ && (match == nil || match(f)) {
				return f
			}
		case <-deadline:
			c.t.Fatalf("no %q frame within 20s", typ)
		}
	}
}

// systemFrame waits for the system newMessage of a change of group conv
// with action, and checks who made it and whom it is of.
func systemFrame(t *testing.T, c *wsClient, who, conv, action string, actor int64, users []int64) map[string]any {
	t.Helper()
	f := c.expect("newMessage", func(f map[string]any) bool {
		s, _ := data(f)["system"].(map[string]any)
		return data(f)["conversationId"] == conv && s["action"] == action
	})
	d := data(f)
	s := d["system"].(map[string]any)
	var got []int64
	ids, _ := s["userIds"].([]any)
	for _, u := range ids {
		n, _ := u.(float64)
		got = append(got, int64(n))
	}
	if _, has := d["recipientId"]; has || d["contentType"] != "system" || d["senderId"] != float64(actor) || d["id"] == "" ||
		s["actorId"] != float64(actor) || !slices.Equal(got, users) {
		t.Fatalf("%s's %q system frame: %v", who, action, f)
	}
	return f
}

// TestGroupConversation runs chat dev with three users on real WebSockets:
// a group's creation, messages, a removal and typing reach exactly its
// members (and the removal the removed member too); the removed member
// sees nothing after the removal and can no longer send.
func TestGroupConversation(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))
	a, b, c := e.dial(1), e.dial(2), e.dial(3)

	// 1. A creates the group with B and C: everyone gets its creation.
	var group struct {
		ID          string `json:"id"`
		Kind        string `json:"kind"`
		Title       string `json:"title"`
		Role        string `json:"role"`
		MemberCount int64  `json:"member_count"`
	}
	if code := e.call(1, "POST", "/groups", map[string]any{"title": "Trip", "member_ids": []int64{2, 3}}, &group); code != 201 {
		t.Fatalf("create group: status %d", code)
	}
	conv := group.ID
	if conv == "" || group.Kind != "group" || group.Title != "Trip" || group.Role != "owner" || group.MemberCount != 3 {
		t.Fatalf("created group: %+v", group)
	}
	created := ""
	for who, ws := range map[string]*wsClient{"A": a, "B": b, "C": c} {
		f := systemFrame(t, ws, who, conv, "created", 1, []int64{1, 2, 3})
		if s := data(f)["system"].(map[string]any); s["title"] != "Trip" {
			t.Fatalf("%s's created frame has no title: %v", who, f)
		}
		id, _ := data(f)["id"].(string)
		if created != "" && id != created {
			t.Fatalf("the created frames name two messages: %s and %s", created, id)
		}
		created = id
	}

	// 2. A sends over WebSocket: B and C get it, without a recipient; A's
	// sending connection is acknowledged and told of the delivery, and
	// never gets the message back.
	a.send(map[string]any{"action": "sendMessage", "data": map[string]any{"conversationId": conv, "contentType": "text", "textContent": "hello group", "clientMessageId": "group-1"}})
	ownEcho := func(id string) func(map[string]any) bool {
		return func(f map[string]any) bool { return f["type"] == "newMessage" && data(f)["id"] == id }
	}
	anyOwnEcho := func(f map[string]any) bool {
		return f["type"] == "newMessage" && data(f)["conversationId"] == conv && data(f)["contentType"] != "system"
	}
	ack := a.expectNot("acknowledgment", nil, anyOwnEcho)
	first, _ := ack["messageId"].(string)
	if first == "" || ack["conversationId"] != conv {
		t.Fatalf("acknowledgment: %v", ack)
	}
	for who, ws := range map[string]*wsClient{"B": b, "C": c} {
		f := ws.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == first })
		d := data(f)
		if _, has := d["recipientId"]; has || d["conversationId"] != conv || d["senderId"] != float64(1) || d["textContent"] != "hello group" || d["contentType"] != "text" {
			t.Fatalf("%s's newMessage: %v", who, f)
		}
	}
	a.expectNot("messageDelivered", func(f map[string]any) bool { return data(f)["messageId"] == first }, ownEcho(first))
	a.quiet("newMessage", 300*time.Millisecond) // the sending device already has it

	// 3. A removes C: the members and C are told.
	if code := e.call(1, "DELETE", fmt.Sprintf("/groups/%s/members/3", conv), nil, nil); code != 204 {
		t.Fatalf("remove C: status %d", code)
	}
	removed := ""
	for who, ws := range map[string]*wsClient{"A": a, "B": b, "C": c} {
		f := systemFrame(t, ws, who, conv, "removed", 1, []int64{3})
		removed, _ = data(f)["id"].(string)
	}

	// A sends again: B gets it, C nothing.
	second := e.post(1, map[string]any{"conversation_id": conv, "content_type": "text", "text_content": "after C left"})
	if second.ConversationID != conv {
		t.Fatalf("second message: %+v", second)
	}
	f := b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == second.ID })
	if _, has := data(f)["recipientId"]; has || data(f)["textContent"] != "after C left" {
		t.Fatalf("B's second newMessage: %v", f)
	}
	c.quiet("newMessage", 500*time.Millisecond)

	// Once the second message is stored (B lists the creation, the first
	// message, the removal and it), C lists what it saw until the removal,
	// and nothing after.
	var all []groupMessage
	waitUntil(t, "B lists the second message", func() bool {
		all = e.groupMessages(2, conv, 0)
		return slices.ContainsFunc(all, func(m groupMessage) bool { return m.ID == second.ID })
	})
	ids := func(ms []groupMessage) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	if got, want := ids(all), []string{created, first, removed, second.ID}; !slices.Equal(got, want) {
		t.Fatalf("B lists %v, want %v", got, want)
	}
	if m := all[2]; m.ContentType != "system" || m.System == nil || m.System.Action != "removed" || m.System.ActorID != 1 ||
		!slices.Equal(m.System.UserIDs, []int64{3}) || m.RecipientID != nil || m.SenderID != 1 {
		t.Fatalf("the stored removal: %+v", m)
	}
	if m := all[3]; m.RecipientID != nil || m.SenderID != 1 || m.TextContent == nil || *m.TextContent != "after C left" {
		t.Fatalf("the stored second message: %+v", m)
	}
	removedSeq := all[2].Seq
	if got, want := ids(e.groupMessages(3, conv, 0)), []string{created, first, removed}; !slices.Equal(got, want) {
		t.Fatalf("C lists %v, want %v (up to the removal)", got, want)
	}
	if after := e.groupMessages(3, conv, removedSeq); len(after) != 0 {
		t.Fatalf("C lists %d messages after the removal: %+v", len(after), after)
	}
	if after := ids(e.groupMessages(2, conv, removedSeq)); !slices.Equal(after, []string{second.ID}) {
		t.Fatalf("B lists %v after the removal, want the second message", after)
	}

	// C can no longer send to the group.
	var refusal struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if code := e.call(3, "POST", "/messages", map[string]any{"conversation_id": conv, "content_type": "text", "text_content": "still here?", "client_message_id": "group-c-1"}, &refusal); code != 403 || refusal.Error.Code != "forbidden" {
		t.Fatalf("C's send after the removal: status %d, %v", code, refusal)
	}
	b.quiet("newMessage", 300*time.Millisecond)

	// 4. B types in the group: A sees it, C (removed) does not.
	b.send(map[string]any{"action": "typing", "data": map[string]any{"conversationId": conv, "isTyping": true}})
	typing := a.expect("typing", nil)
	if d := data(typing); d["conversationId"] != conv || d["userId"] != float64(2) || d["isTyping"] != true {
		t.Fatalf("A's typing frame: %v", typing)
	}
	c.quiet("typing", 500*time.Millisecond)
	b.quiet("typing", 100*time.Millisecond)
}
