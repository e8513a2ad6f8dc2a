package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/push/pushtest"
)

// pushesFor returns the Expo pushes carrying message id.
func pushesFor(expo *pushtest.Expo, id string) []pushtest.ExpoMessage {
	var out []pushtest.ExpoMessage
	for _, m := range expo.Messages() {
		if m.Data["message_id"] == id {
			out = append(out, m)
		}
	}
	return out
}

// TestPushNotifications runs chat dev with Expo pointed at a local server
// speaking Expo's protocol, real WebSocket clients and real HTTP: an online
// recipient is not pushed, an offline one is, once per device; muted
// conversations are not pushed; a read updates the badge silently; an
// invalid token removes its device.
func TestPushNotifications(t *testing.T) {
	expo := pushtest.NewExpo(t)
	e := newEnv(t)
	e.extra = append(e.extra, "CHAT_EXPO_PUSH_URL="+expo.URL())
	e.waitHTTP(e.start("dev"))
	start := time.Now().Add(-time.Minute)

	var failure struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := e.call(2, "POST", "/devices", map[string]any{"platform": "ios", "token": "not-hex"}, &failure); code != http.StatusUnprocessableEntity || failure.Error.Code != "invalid_argument" {
		t.Errorf("bad token: status %d %+v, want 422 invalid_argument", code, failure)
	}
	if code := e.call(2, "POST", "/devices", map[string]any{"platform": "expo", "token": "ExponentPushToken[phone]", "extra": 1}, nil); code != http.StatusBadRequest {
		t.Errorf("unknown field: status %d, want 400", code)
	}
	const phone, tablet = "ExponentPushToken[phone]", "ExponentPushToken[tablet]"
	for _, reg := range []struct {
		user  int64
		token string
	}{{2, phone}, {2, phone}, {3, tablet}, {2, tablet}} { // again: idempotent; the tablet moves from 3 to 2
		var d map[string]any
		if code := e.call(reg.user, "POST", "/devices", map[string]any{"platform": "expo", "token": reg.token, "app_version": "1.4.0"}, &d); code != http.StatusOK || d["token"] != reg.token {
			t.Fatalf("register %s as %d: status %d %v", reg.token, reg.user, code, d)
		}
	}
	if code := e.call(3, "DELETE", "/devices/"+url.PathEscape(tablet), nil, nil); code != http.StatusNotFound {
		t.Errorf("user 3 deleted a device that moved to user 2: status %d, want 404", code)
	}

	// Online: the frame arrives, no push.
	ws := e.dial(2)
	online := e.send(1, 2, "you are online")
	ws.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == online.ID })
	_ = ws.conn.Close()
	waitUntil(t, "the connection record is gone", func() bool {
		return count(t, e.pool, "SELECT count(*) FROM ws_connections WHERE user_id = 2") == 0
	})

	// Offline: one push per device.
	offline := e.send(1, 2, "you are offline")
	waitUntil(t, "both devices are pushed", func() bool { return len(pushesFor(expo, offline.ID)) == 2 })
	time.Sleep(time.Second) // anything else in flight arrives
	if got := pushesFor(expo, online.ID); len(got) != 0 {
		t.Errorf("pushed the message the recipient got online: %+v", got)
	}
	for _, m := range pushesFor(expo, offline.ID) {
		if m.Title != "New message" || m.Body != "you are offline" || m.Badge == nil || *m.Badge != 2 ||
			m.Data["conversation_id"] != offline.ConversationID || m.Data["seq"] != "2" {
			t.Errorf("push %+v, want the preview, badge 2 (both unread), conversation and seq 2", m)
		}
	}
	if got := pushesFor(expo, offline.ID); len(got) != 2 || got[0].To == got[1].To {
		t.Errorf("pushes %+v, want one per device", got)
	}

	// Muted: no push; unmuted again: pushed.
	setMuted := func(muted bool) {
		t.Helper()
		if code := e.call(2, "PATCH", "/conversations/"+offline.ConversationID+"/settings", map[string]any{"muted": muted}, nil); code != http.StatusAccepted {
			t.Fatalf("mute %v: status %d", muted, code)
		}
		waitUntil(t, "the setting is stored", func() bool {
			return count(t, e.pool, "SELECT count(*) FROM conversation_participants WHERE user_id = 2 AND muted = $1", muted) == 1
		})
	}
	setMuted(true)
	muted := e.send(1, 2, "muted")
	// The mute counts when the notifier handles the request: wait until it
	// has, before unmuting.
	waitUntil(t, "the notifier has handled the muted message", func() bool {
		return count(t, e.pool, `SELECT count(*) FROM event_archive WHERE type = 'PushRequested' AND envelope->'data'->>'message_id' = $1`, muted.ID) == 1 &&
			count(t, e.pool, `SELECT count(*) FROM queue_notifier q JOIN event_archive a ON a.id = q.event_id
				WHERE a.envelope->'data'->>'message_id' = $1`, muted.ID) == 0
	})
	setMuted(false)
	after := e.send(1, 2, "unmuted")
	waitUntil(t, "the unmuted message is pushed", func() bool { return len(pushesFor(expo, after.ID)) == 2 })
	if got := pushesFor(expo, muted.ID); len(got) != 0 {
		t.Errorf("pushed a muted conversation's message: %+v", got)
	}

	// A read on one device updates every device's badge, silently.
	before := len(expo.Messages())
	if code := e.call(2, "POST", "/messages/read", map[string]any{"message_ids": []string{online.ID, offline.ID, muted.ID, after.ID}}, nil); code != http.StatusOK {
		t.Fatalf("read: status %d", code)
	}
	waitUntil(t, "the badge updates arrive", func() bool { return len(expo.Messages()) >= before+2 })
	for _, m := range expo.Messages()[before:] {
		if !m.ContentAvailable || m.Title != "" || m.Body != "" || m.Badge == nil || *m.Badge != 0 || m.Data["type"] != "badge" {
			t.Errorf("badge update %+v (badge %d), want a silent push with badge 0", m, *m.Badge)
		}
	}

	// An invalid token removes its device.
	expo.Invalidate(tablet)
	last := e.send(1, 2, "one device left")
	waitUntil(t, "the tablet's device is removed", func() bool {
		return count(t, e.pool, "SELECT count(*) FROM push_devices WHERE token = $1", tablet) == 0
	})
	if got := pushesFor(expo, last.ID); len(got) != 1 || got[0].To != phone || *got[0].Badge != 1 {
		t.Errorf("pushes %+v, want the phone's only, badge 1", got)
	}

	// Replaying the notifier's history (recovery) pushes no message again.
	messagePushes := func() map[string]int {
		n := map[string]int{}
		for _, m := range expo.Messages() {
			if m.Data["type"] == "message" {
				n[m.Data["message_id"]]++
			}
		}
		return n
	}
	pushed := messagePushes()
	if code := runCmd(t, e, "replay", "--worker", "notifier", "--since", start.UTC().Format(time.RFC3339)); code != 0 {
		t.Fatalf("replay exited %d", code)
	}
	waitUntil(t, "the notifier has handled the replay", func() bool {
		return count(t, e.pool, "SELECT count(*) FROM queue_notifier") == 0
	})
	if again := messagePushes(); fmt.Sprint(again) != fmt.Sprint(pushed) {
		t.Errorf("after a replay, message pushes %v, want %v", again, pushed)
	}

	if code := e.call(2, "DELETE", "/devices/"+url.PathEscape(phone), nil, nil); code != http.StatusNoContent {
		t.Errorf("unregister: status %d, want 204", code)
	}
	if code := e.call(2, "DELETE", "/devices/"+url.PathEscape(phone), nil, nil); code != http.StatusNotFound {
		t.Errorf("unregister again: status %d, want 404", code)
	}
}

// TestDevPushSink: without provider endpoints, chat dev records pushes and
// lists them to loopback clients.
func TestDevPushSink(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))
	const token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	if code := e.call(2, "POST", "/devices", map[string]any{"platform": "ios", "token": token}, nil); code != http.StatusOK {
		t.Fatalf("register: status %d", code)
	}
	m := e.send(1, 2, "to the sink")
	var listed struct {
		Data []struct {
			Platform   string            `json:"platform"`
			Token      string            `json:"token"`
			Body       string            `json:"body"`
			Badge      int               `json:"badge"`
			CollapseID string            `json:"collapse_id"`
			Data       map[string]string `json:"data"`
		} `json:"data"`
	}
	waitUntil(t, "the sink lists the push", func() bool {
		resp, err := http.Get("http://" + e.http + "/dev/pushes")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil {
			t.Fatal(err)
		}
		return len(listed.Data) > 0
	})
	p := listed.Data[0]
	if p.Platform != "ios" || p.Token != token || p.Body != "to the sink" || p.Badge != 1 || p.CollapseID != m.ConversationID || p.Data["message_id"] != m.ID {
		t.Errorf("listed %+v", p)
	}
}
