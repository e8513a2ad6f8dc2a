package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/internal/contracttest"
	"github.com/parleychat/parley/internal/wsproto"
)

// TestRealTime runs `chat dev` and drives it with real WebSocket clients:
// A (two devices) and B chat over WebSocket and REST.
func TestRealTime(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))

	a1, a2, b := e.dial(1), e.dial(1), e.dial(2)

	// A sends over WebSocket: ack to A1, newMessage to B and to A's other device.
	a1.send(map[string]any{"action": "sendMessage", "data": map[string]any{"recipientId": 2, "contentType": "text", "textContent": "over ws", "clientMessageId": "ws-1"}})
	ack := a1.expect("acknowledgment", nil)
	msgID, _ := ack["messageId"].(string)
	conv, _ := ack["conversationId"].(string)
	if msgID == "" || conv == "" {
		t.Fatalf("acknowledgment without ids: %v", ack)
	}
	got := b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == msgID })
	if d := data(got); d["conversationId"] != conv || d["textContent"] != "over ws" || d["senderId"] != float64(1) {
		t.Fatalf("newMessage data = %v", d)
	}
	a2.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == msgID })
	a1.quiet("newMessage", 300*time.Millisecond) // the sending device already has it

	// ... and A later learns it was delivered.
	a1.expect("messageDelivered", func(f map[string]any) bool { return data(f)["messageId"] == msgID })

	// A sends over REST: B receives it too.
	rest := e.send(1, 2, "over rest")
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == rest.ID })

	// B types: A sees it; typing is never stored.
	b.send(map[string]any{"action": "typing", "data": map[string]any{"conversationId": conv, "recipientId": 1, "isTyping": true}})
	typing := a1.expect("typing", nil)
	if d := data(typing); d["conversationId"] != conv || d["userId"] != float64(2) || d["isTyping"] != true {
		t.Fatalf("typing data = %v", d)
	}

	// B marks read: A gets messageRead, and the row shows read_at.
	e.messages(2, conv, 2)
	b.send(map[string]any{"action": "markRead", "data": map[string]any{"conversationId": conv, "messageIds": []string{msgID}}})
	b.expect("readAcknowledgment", nil)
	read := a1.expect("messageRead", nil)
	if ids, _ := data(read)["messageIds"].([]any); len(ids) != 1 || ids[0] != msgID {
		t.Fatalf("messageRead data = %v", data(read))
	}
	waitUntil(t, "read_at and delivered_at are stored", func() bool {
		for _, m := range e.messages(1, conv, 2) {
			if m.ID == msgID {
				return m.ReadAt != nil && m.DeliveredAt != nil
			}
		}
		return false
	})

	// Ping refreshes the connection.
	b.send(map[string]any{"action": "ping"})
	b.expect("pong", nil)

	// Bad frames get error frames and the connection survives.
	for _, bad := range []string{`not json`, `{"action":"fly"}`, `{"action":"sendMessage","data":{"recipientId":2,"contentType":"text","textContent":""}}`,
		`{"action":"sendMessage","data":{"recipientId":2,"textContent":"x","extra":1}}`,
		`{"action":"typing","data":{"conversationId":"` + conv + `","recipientId":1,"isTyping":true}}` + "x",
		`{"action":"markRead","data":{"conversationId":"00000000-0000-7000-8000-000000000000","messageIds":["00000000-0000-7000-8000-000000000001"]}}`} {
		if err := b.conn.WriteMessage(websocket.TextMessage, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		f := b.expect("error", nil)
		if f["code"] == "" || f["message"] == "" {
			t.Fatalf("error frame for %q lacks code/message: %v", bad, f)
		}
	}
	b.send(map[string]any{"action": "ping"})
	b.expect("pong", nil)

	// A user outside the conversation cannot type into it.
	c := e.dial(3)
	c.send(map[string]any{"action": "typing", "data": map[string]any{"conversationId": conv, "isTyping": true}})
	if f := c.expect("error", nil); f["code"] != "forbidden" {
		t.Fatalf("outsider typing: %v", f)
	}

	// Bad tokens are refused at connect, before the upgrade.
	for name, tok := range map[string]string{"missing": "", "garbage": "x.y.z", "expired": expiredToken(t)} {
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+e.http+"/ws?token="+tok, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s token: err=%v resp=%v", name, err, resp)
		}
	}

	// A record this gateway does not hold (written around it, as a gateway
	// that crashed before $disconnect leaves one) is not posted to: the
	// fanout of chat dev looks up its own gateway's connections in memory.
	// TestFanoutStoppedLosesNothing covers a separate fanout, which finds
	// such a record and removes it on its first 410.
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO ws_connections VALUES ('GoneConnId0001=', 2, now() - interval '5 minutes', now() - interval '5 minutes', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	third := e.send(1, 2, "after a vanished device")
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == third.ID })
	if n := count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE user_id = 2`); n != 2 {
		t.Fatalf("user 2 has %d connection records, want 2 (the live one, and the record it does not hold, left to expire)", n)
	}
}

func expiredToken(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(issueAt(t, 2, time.Now().Add(-2*time.Hour)))
}

// TestFanoutStoppedLosesNothing runs the pieces as separate processes. With
// fanout down, B catches up over REST by sequence; once fanout starts, the
// queued frames arrive.
func TestFanoutStoppedLosesNothing(t *testing.T) {
	e := newEnv(t)
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	e.waitHTTP(e.start("api"))
	gwEnv := e.gatewayView()
	gwEnv.start("gateway")
	gwEnv.waitHTTP(gwEnv.start("worker", "persister"))

	b := gwEnv.dialNoGreeting(2)
	var sent []message
	for i := range 5 {
		sent = append(sent, e.send(1, 2, fmt.Sprintf("while fanout is down %d", i)))
	}
	conv := sent[0].ConversationID
	caught := e.messages(2, conv, 5)
	for i, m := range caught {
		if m.ID != sent[i].ID || m.Seq != int64(i+1) {
			t.Fatalf("catch-up %d = %s seq %d, want %s seq %d", i, m.ID, m.Seq, sent[i].ID, i+1)
		}
	}
	b.quiet("newMessage", 300*time.Millisecond)

	gwEnv.start("worker", "fanout")
	for _, m := range sent {
		b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == m.ID })
	}

	// A connection that vanished without $disconnect (its record is still
	// there, the gateway no longer knows it) is removed on its first 410.
	// (A 410 within 29 s of connecting keeps the record instead: API Gateway
	// answers 410 until $connect has finished.)
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO ws_connections VALUES ('GoneConnId0001=', 2, now() - interval '5 minutes', now() - interval '5 minutes', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	after := e.send(1, 2, "after a vanished device")
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == after.ID })
	waitUntil(t, "the stale connection is deleted", func() bool {
		return count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE connection_id = 'GoneConnId0001='`) == 0
	})
	if n := count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE user_id = 2`); n != 1 {
		t.Fatalf("user 2 has %d connection records, want 1 (the live one)", n)
	}
}

// TestWorkerKilledMidStream kills the persister with SIGKILL while it works
// through a backlog; after a restart every message is stored exactly once
// with sequences 1..N.
func TestWorkerKilledMidStream(t *testing.T) {
	e := newEnv(t)
	// The backlog is built on purpose, with no persister running: the
	// overload refusal would (rightly) stop it.
	e.extra = append(e.extra, "CHAT_OVERLOAD_QUEUE_AGE=0")
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	e.waitHTTP(e.start("api"))
	// Enough that the persister, which stores them a batch at a time, is
	// still at it when it is killed.
	const n = 3000
	var wg sync.WaitGroup
	ids := make([]string, n)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				ids[i] = e.send(int64(1+i%2), int64(2-i%2), fmt.Sprintf("m%d", i)).ID
			}
		}()
	}
	wg.Wait()
	conv := ""
	if err := e.pool.QueryRow(context.Background(), `SELECT id FROM conversations`).Scan(&conv); err != nil {
		t.Fatal(err)
	}

	worker := e.start("worker", "persister")
	deadline := time.Now().Add(30 * time.Second)
	for count(t, e.pool, `SELECT count(*) FROM messages`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the persister stored nothing")
		}
		time.Sleep(time.Millisecond)
	}
	worker.kill() // SIGKILL: no graceful shutdown
	stored := count(t, e.pool, `SELECT count(*) FROM messages`)
	if stored >= n {
		t.Fatalf("the persister stored everything before it was killed; the test proves nothing")
	}
	e.start("worker", "persister")
	all := e.messages(1, conv, n)
	if len(all) != n {
		t.Fatalf("%d messages stored, want %d", len(all), n)
	}
	seen := map[string]bool{}
	for i, m := range all {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: gap or duplicate", i, m.Seq)
		}
		seen[m.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("message %s was lost", id)
		}
	}
	t.Logf("killed after %d of %d stored; all recovered", stored, n)
}

// TestReplayRestoresTruncatedMessages: the persister's table is lost; a
// replay from the archive restores the same rows.
func TestReplayRestoresTruncatedMessages(t *testing.T) {
	e := newEnv(t)
	dev := e.start("dev")
	e.waitHTTP(dev)
	start := time.Now().Add(-time.Minute)
	var conv string
	for i := range 30 {
		m := e.send(int64(1+i%2), int64(2-i%2), fmt.Sprintf("replay me %d", i))
		conv = m.ConversationID
	}
	before := e.messages(1, conv, 30)
	read := []string{before[0].ID, before[2].ID}
	if code := e.call(2, "POST", "/messages/read", map[string]any{"message_ids": read}, nil); code != 200 {
		t.Fatalf("mark read: %d", code)
	}
	waitUntil(t, "reads are stored", func() bool { return e.messages(2, conv, 30)[0].ReadAt != nil })
	before = e.messages(1, conv, 30)

	if _, err := e.pool.Exec(context.Background(), `TRUNCATE messages CASCADE`); err != nil {
		t.Fatal(err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM messages`); n != 0 {
		t.Fatalf("truncate left %d rows", n)
	}
	if code := runCmd(t, e, "replay", "--worker", "persister", "--since", start.UTC().Format(time.RFC3339)); code != 0 {
		t.Fatalf("replay exited %d", code)
	}
	after := e.messages(1, conv, 30)
	waitUntil(t, "replayed reads are applied", func() bool {
		after = e.messages(1, conv, 30)
		return after[0].ReadAt != nil && after[2].ReadAt != nil
	})
	for i := range before {
		b, a := before[i], after[i]
		if a.ID != b.ID || a.Seq != b.Seq || *a.TextContent != *b.TextContent || a.SenderID != b.SenderID || (a.ReadAt == nil) != (b.ReadAt == nil) {
			t.Fatalf("row %d differs after replay:\nbefore %+v\nafter  %+v", i, b, a)
		}
	}
	if err := dev.stop(t); err != nil {
		t.Fatalf("chat dev did not exit cleanly on SIGTERM: %v\n%s", err, tail(dev.output(), 20))
	}
}

// TestDevServesUploadedMedia: under `chat dev` an uploaded image is served to
// a plain HTTP client (as a browser would fetch it) through the URL the API
// returned, gets its thumbnail, is refused to outsiders, and survives a
// restart of the embedded S3.
func TestDevServesUploadedMedia(t *testing.T) {
	e := newEnv(t)
	dev := e.start("dev")
	e.waitHTTP(dev)

	photo := testJPEG(t, 800, 600)
	sent := e.sendImage(1, 2, photo)
	var stored message
	waitUntil(t, "the thumbnail is recorded", func() bool {
		ms := e.messages(2, sent.ConversationID, 1)
		stored = ms[0]
		return stored.ThumbnailURL != nil && stored.MediaURL != nil
	})

	get := func(url string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(url) // no credentials: the presigned URL is the authorization
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get(*stored.MediaURL)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, photo) || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("media URL: status %d, %d bytes (want %d), type %q", resp.StatusCode, len(body), len(photo), resp.Header.Get("Content-Type"))
	}
	resp, body = get(*stored.ThumbnailURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("thumbnail URL: status %d", resp.StatusCode)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(body))
	if err != nil || cfg.Width != 320 || cfg.Height != 240 {
		t.Fatalf("thumbnail is %dx%d (%v), want 320x240", cfg.Width, cfg.Height, err)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	mediaOf := func(user int64) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+e.http+"/api/v1/chat/messages/"+sent.ID+"/media", nil)
		req.Header.Set("Authorization", "Bearer "+userToken(t, user))
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := mediaOf(3); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("outsider got status %d for the media, want 403", resp.StatusCode)
	}

	if err := dev.stop(t); err != nil {
		t.Fatalf("chat dev did not stop cleanly: %v", err)
	}
	e.waitHTTP(e.start("dev"))
	resp = mediaOf(2)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("participant got status %d, want 302", resp.StatusCode)
	}
	if _, body := get(resp.Header.Get("Location")); !bytes.Equal(body, photo) {
		t.Fatalf("after a restart the media has %d bytes, want %d", len(body), len(photo))
	}
}

// TestDevClosesSocketWhenTokenExpires: the binary's own gateway tells a
// connection whose token expires why, then closes it with the documented
// code, so the app reconnects with a fresh token.
func TestDevClosesSocketWhenTokenExpires(t *testing.T) {
	e := newEnv(t)
	e.waitHTTP(e.start("dev"))
	// Valid for about 2 s more: an hour-long token, issued an hour ago,
	// plus the verifier's 30 s of leeway.
	token := issueAt(t, 1, time.Now().Add(-time.Hour-28*time.Second))
	conn, resp, err := contracttest.Dialer(t).Dial("ws://"+e.http+"/ws?token="+token, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	defer conn.Close()
	expectExpiryClose(t, conn)
}

// expectExpiryClose reads conn until it is closed, which must be with the
// token-expiry code after the unauthenticated error frame.
func expectExpiryClose(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var sawError bool
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != wsproto.CloseTokenExpired {
				t.Fatalf("connection ended with %v, want close code %d", err, wsproto.CloseTokenExpired)
			}
			break
		}
		var f map[string]any
		if json.Unmarshal(b, &f) == nil && f["type"] == "error" && f["code"] == "unauthenticated" {
			sawError = true
		}
	}
	if !sawError {
		t.Error("closed without the unauthenticated error frame")
	}
}
