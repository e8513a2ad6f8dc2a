package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TestMessageChanges runs edits, unsend and reactions through chat dev with
// real WebSocket clients: the other participant and the sender's other
// device get the frames, REST shows the result, unsend deletes the media
// from the embedded S3 and leaves a tombstone in sequence, and bad input is
// refused with a reason without failing anyone else.
func TestMessageChanges(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))
	a1, a2, b := e.dial(1), e.dial(1), e.dial(2)

	first := e.send(1, 2, "helo")
	conv := first.ConversationID
	e.messages(2, conv, 1)
	forMsg := func(id string) func(map[string]any) bool {
		return func(f map[string]any) bool { return data(f)["messageId"] == id }
	}

	// Edit over WebSocket: acknowledged to a1, messageUpdated to b and a2.
	a1.send(map[string]any{"action": "editMessage", "data": map[string]any{"messageId": first.ID, "textContent": "hello"}})
	if ack := a1.expect("changeAcknowledgment", nil); ack["action"] != "editMessage" || ack["messageId"] != first.ID || ack["conversationId"] != conv {
		t.Fatalf("edit acknowledgment: %v", ack)
	}
	for _, c := range []*wsClient{b, a2} {
		if d := data(c.expect("messageUpdated", forMsg(first.ID))); d["textContent"] != "hello" || d["editedAt"] == nil {
			t.Fatalf("messageUpdated: %v", d)
		}
	}
	waitUntil(t, "the edit is stored", func() bool {
		m := e.changed(2, conv, first.ID)
		return m.TextContent != nil && *m.TextContent == "hello" && m.EditedAt != nil
	})

	// Only the sender may edit, and only within the window.
	var refusal struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code := e.call(2, "PATCH", "/messages/"+first.ID, map[string]any{"text_content": "mine now"}, &refusal); code != http.StatusForbidden || !strings.Contains(refusal.Error.Message, "only the sender") {
		t.Fatalf("edit by the recipient: %d %+v", code, refusal)
	}
	old := e.send(1, 2, "old news")
	e.messages(2, conv, 2)
	if _, err := e.pool.Exec(context.Background(), `UPDATE messages SET created_at = created_at - interval '2 hours' WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	if code := e.call(1, "PATCH", "/messages/"+old.ID, map[string]any{"text_content": "new news"}, &refusal); code != http.StatusForbidden || !strings.Contains(refusal.Error.Message, "no longer be edited") {
		t.Fatalf("edit after the window: %d %+v", code, refusal)
	}
	if code := e.call(1, "POST", "/messages/"+old.ID+"/unsend", nil, &refusal); code != http.StatusForbidden {
		t.Fatalf("unsend after the window: %d %+v", code, refusal)
	}

	// Reactions over REST and WebSocket: set, change, remove, counted.
	if code := e.call(2, "PUT", "/messages/"+first.ID+"/reaction", map[string]any{"emoji": "👍"}, nil); code != http.StatusAccepted {
		t.Fatalf("react: %d", code)
	}
	if d := data(a1.expect("reactionChanged", forMsg(first.ID))); d["emoji"] != "👍" || d["userId"] != float64(2) {
		t.Fatalf("reactionChanged: %v", d)
	}
	a1.send(map[string]any{"action": "setReaction", "data": map[string]any{"messageId": first.ID, "emoji": "👍🏽"}})
	a1.expect("changeAcknowledgment", nil)
	b.expect("reactionChanged", func(f map[string]any) bool { return data(f)["userId"] == float64(1) })
	waitUntil(t, "two reactions are counted", func() bool {
		r := e.changed(1, conv, first.ID).Reactions
		return len(r) == 2 && r[0].Count == 1 && r[1].Count == 1
	})
	a1.send(map[string]any{"action": "setReaction", "data": map[string]any{"messageId": first.ID, "emoji": "👍"}})
	a1.expect("changeAcknowledgment", nil)
	waitUntil(t, "the change to 👍 is counted", func() bool {
		r := e.changed(1, conv, first.ID).Reactions
		return len(r) == 1 && r[0].Emoji == "👍" && r[0].Count == 2 && r[0].Mine
	})
	if code := e.call(2, "DELETE", "/messages/"+first.ID+"/reaction", nil, nil); code != http.StatusAccepted {
		t.Fatalf("remove reaction: %d", code)
	}
	if d := data(a1.expect("reactionChanged", func(f map[string]any) bool { return data(f)["userId"] == float64(2) && data(f)["emoji"] == nil })); d["messageId"] != first.ID {
		t.Fatalf("removal frame: %v", d)
	}
	waitUntil(t, "the removal is counted", func() bool {
		r := e.changed(2, conv, first.ID).Reactions
		return len(r) == 1 && r[0].Count == 1 && !r[0].Mine
	})

	// Unsend an image: a tombstone in sequence, and its objects are gone.
	img := e.sendImage(1, 2, testJPEG(t, 800, 600))
	var stored message
	waitUntil(t, "the thumbnail is recorded", func() bool {
		for _, m := range e.catchUp(2, conv, 0) {
			if m.ID == img.ID {
				stored = m
			}
		}
		return stored.ThumbnailURL != nil && stored.MediaURL != nil
	})
	after := e.send(2, 1, "nice photo")
	e.messages(1, conv, 4)
	for _, u := range []string{*stored.MediaURL, *stored.ThumbnailURL} {
		if s := status(t, u); s != http.StatusOK {
			t.Fatalf("before unsend, GET %s: %d", u, s)
		}
	}
	b.send(map[string]any{"action": "unsendMessage", "data": map[string]any{"messageId": img.ID}})
	if f := b.expect("error", nil); f["code"] != "forbidden" || f["action"] != "unsendMessage" {
		t.Fatalf("unsend by the recipient: %v", f)
	}
	var accepted struct {
		Status string `json:"status"`
		At     string `json:"at"`
	}
	if code := e.call(1, "POST", "/messages/"+img.ID+"/unsend", nil, &accepted); code != http.StatusAccepted || accepted.Status != "accepted" {
		t.Fatalf("unsend: %d %+v", code, accepted)
	}
	for _, c := range []*wsClient{b, a1, a2} {
		c.expect("messageUnsent", forMsg(img.ID))
	}
	waitUntil(t, "the media objects are deleted", func() bool {
		return status(t, *stored.MediaURL) == http.StatusNotFound && status(t, *stored.ThumbnailURL) == http.StatusNotFound
	})
	var tomb changedMessage
	waitUntil(t, "the tombstone is stored", func() bool {
		tomb = e.changed(2, conv, img.ID)
		return tomb.UnsentAt != nil
	})
	if tomb.TextContent != nil || tomb.MediaURL != nil || tomb.ThumbnailURL != nil || tomb.Seq != stored.Seq {
		t.Fatalf("tombstone %+v; want no content at seq %d", tomb, stored.Seq)
	}
	if ids := e.catchUp(2, conv, 0); len(ids) != 4 || ids[2].ID != img.ID || ids[3].ID != after.ID {
		t.Fatalf("sequence after unsend: %+v", ids)
	}
	// Unsending again answers the first unsend.
	var again struct {
		At string `json:"at"`
	}
	if code := e.call(1, "POST", "/messages/"+img.ID+"/unsend", nil, &again); code != http.StatusAccepted || again.At == "" {
		t.Fatalf("unsend again: %d %+v", code, again)
	}

	// Bad input: a clear error frame each, the connection stays up, and
	// the other participant's change goes through meanwhile.
	for _, bad := range []struct{ frame, code, says string }{
		{`{"action":"setReaction","data":{"messageId":"` + first.ID + `","emoji":""}}`, "invalid_argument", "emoji must not be empty"},
		{`{"action":"setReaction","data":{"messageId":"` + first.ID + `","emoji":"ok"}}`, "invalid_argument", "single emoji"},
		{`{"action":"setReaction","data":{"messageId":"` + first.ID + `","emoji":"👍👍"}}`, "invalid_argument", "single emoji"},
		{`{"action":"setReaction","data":{"messageId":"` + first.ID + `","emoji":"` + strings.Repeat("👍", 9) + `"}}`, "invalid_argument", "the limit is 32"},
		{`{"action":"editMessage","data":{"messageId":"` + first.ID + `","textContent":"` + strings.Repeat("x", 4001) + `"}}`, "invalid_argument", "the limit is 4000"},
		{`{"action":"editMessage","data":{"messageId":"` + first.ID + `","textContent":"  "}}`, "invalid_argument", "textContent must not be empty"},
		{`{"action":"editMessage","data":{"messageId":"0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b","textContent":"x"}}`, "not_found", "not found"},
		{`{"action":"editMessage","data":{"messageId":"nope","textContent":"x"}}`, "bad_request", "not a UUID"},
		{`{"action":"editMessage","data":{"messageId":"` + img.ID + `","textContent":"x"}}`, "invalid_argument", "was unsent"},
	} {
		if err := a1.conn.WriteMessage(websocket.TextMessage, []byte(bad.frame)); err != nil {
			t.Fatal(err)
		}
		f := a1.expect("error", nil)
		if f["code"] != bad.code || !strings.Contains(f["message"].(string), bad.says) {
			t.Fatalf("%.80s: %v; want %s saying %q", bad.frame, f, bad.code, bad.says)
		}
	}
	b.send(map[string]any{"action": "editMessage", "data": map[string]any{"messageId": after.ID, "textContent": "nice photo!"}})
	b.expect("changeAcknowledgment", nil)
	a1.expect("messageUpdated", forMsg(after.ID))
	a1.send(map[string]any{"action": "ping"})
	a1.expect("pong", nil)
}

// changedMessage is a message view with what changes add to it.
type changedMessage struct {
	message
	EditedAt  *string `json:"edited_at"`
	UnsentAt  *string `json:"unsent_at"`
	Reactions []struct {
		Emoji string `json:"emoji"`
		Count int64  `json:"count"`
		Mine  bool   `json:"mine"`
	} `json:"reactions"`
}

// changed returns one message of a conversation as user sees it.
func (e *env) changed(user int64, conv, id string) changedMessage {
	e.t.Helper()
	var page struct {
		Data []changedMessage `json:"data"`
	}
	if code := e.call(user, "GET", "/conversations/"+conv+"/messages?after_seq=0&page_size=100", nil, &page); code != http.StatusOK {
		e.t.Fatalf("list messages: %d", code)
	}
	for _, m := range page.Data {
		if m.ID == id {
			return m
		}
	}
	e.t.Fatalf("message %s is not listed", id)
	return changedMessage{}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url) // presigned: the URL is the authorization
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
