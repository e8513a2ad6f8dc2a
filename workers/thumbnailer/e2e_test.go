package thumbnailer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/workers/persister"
	"github.com/parleychat/parley/workers/thumbnailer"
)

var quiet = slog.New(slog.DiscardHandler)

// chatClient speaks the REST API as one user.
type chatClient struct {
	t     *testing.T
	base  string
	token string
}

func (c chatClient) do(method, path, contentType string, body io.Reader, out any) int {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	if resp.StatusCode != http.StatusOK {
		c.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// sendImage uploads file as user and sends it as an image message to 2.
func (c chatClient) sendImage(file []byte) (messageID, conversationID string) {
	c.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "photo.jpg")
	if err != nil {
		c.t.Fatal(err)
	}
	fw.Write(file)
	mw.Close()
	var up chat.UploadView
	if code := c.do("POST", api.Prefix+"/upload", mw.FormDataContentType(), &body, &up); code != http.StatusOK {
		c.t.Fatalf("upload: status %d", code)
	}
	msg, _ := json.Marshal(map[string]any{"recipient_id": 2, "content_type": "image", "media_url": up.URL})
	var sent chat.MessageView
	if code := c.do("POST", api.Prefix+"/messages", "application/json", bytes.NewReader(msg), &sent); code != http.StatusOK {
		c.t.Fatalf("send: status %d", code)
	}
	return sent.ID, sent.ConversationID
}

// awaitMessage polls the catch-up listing until the message satisfies ok.
func (c chatClient) awaitMessage(convID, msgID string, ok func(chat.MessageView) bool) chat.MessageView {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct {
			Data []chat.MessageView `json:"data"`
		}
		c.do("GET", api.Prefix+"/conversations/"+convID+"/messages?after_seq=0", "", nil, &page)
		for _, m := range page.Data {
			if m.ID == msgID && ok(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("message %s never reached the expected state; listing: %+v", msgID, page.Data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The whole path on the embedded transport: REST upload and send, the bus,
// the persister storing the message, the thumbnailer making its thumbnail,
// the persister recording it, and the listing showing it. A hostile image
// is dead-lettered without holding up the good one sent after it.
func TestEndToEndThroughTheBus(t *testing.T) {
	dsn, pool := dbtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	waker := pgbus.NewWaker(dsn, quiet)
	bus := pgbus.New(pool, waker, quiet)
	if err := bus.Init(ctx); err != nil {
		t.Fatal(err)
	}
	store := mediatest.Store(t, nil)

	svc := chat.NewService(pool, bus, store, chat.DefaultLimits(), quiet)
	secret := []byte("end-to-end-test-secret-of-32-bytes!")
	verifier, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	rest := api.NewREST(svc, verifier, quiet)
	srv := httptest.NewServer(rest)
	t.Cleanup(srv.Close)

	workers := map[string]events.Handler{
		events.WorkerPersister:   persister.New(pool, quiet),
		events.WorkerThumbnailer: thumbnailer.New(store, bus, thumbnailer.Config{}, quiet),
	}
	done := make(chan error, len(workers)+1)
	go func() { done <- waker.Run(ctx) }()
	for name, h := range workers {
		go func() {
			done <- pgbus.Consume(ctx, pool, waker, name, events.AsBatch(h), pgbus.ConsumerConfig{
				MaxAttempts: 3, RetryBackoff: 10 * time.Millisecond, FallbackPoll: 200 * time.Millisecond,
			}, quiet)
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range len(workers) + 1 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("worker: %v", err)
			}
		}
	})

	client := func(user int64) chatClient {
		tok, err := auth.Issue(secret, user, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return chatClient{t: t, base: srv.URL, token: tok}
	}
	alice, bob := client(1), client(2)
	hasThumb := func(m chat.MessageView) bool { return m.MediaThumbnailURL != nil }

	first, conv := alice.sendImage(mediatest.Photo(t, 1600, 1200))
	got := bob.awaitMessage(conv, first, hasThumb)
	resp, err := http.Get(*got.MediaThumbnailURL)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(resp.Body)
	resp.Body.Close()
	if err != nil || img.Bounds().Dx() != 320 || img.Bounds().Dy() != 240 {
		t.Fatalf("thumbnail behind media_thumbnail_url: %v, err %v", img.Bounds(), err)
	}

	// A bomb is refused at upload now. One stored before that check (put
	// here as it was then) still reaches the worker, which dead-letters it.
	bomb := mediatest.PNGHeaderOnly(100000, 100000)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "bomb.png")
	fw.Write(bomb)
	mw.Close()
	if code := alice.do("POST", api.Prefix+"/upload", mw.FormDataContentType(), &body, nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("bomb upload: status %d, want 413", code)
	}
	old := putRaw(t, store, 1, bomb, "png")
	hostile := uuid.Must(uuid.NewV7()).String()
	sent := events.MessageSentV1{MessageID: hostile, ConversationID: conv, SenderID: 1, RecipientID: 2,
		ContentType: events.ContentImage, MediaKey: old.Key, CreatedAt: time.Now().UTC()}
	env, err := events.New(hostile, sent.CreatedAt, 1, conv, sent)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	good, _ := alice.sendImage(mediatest.Photo(t, 800, 600))
	bob.awaitMessage(conv, good, hasThumb)

	deadline := time.Now().Add(30 * time.Second)
	for {
		dls, err := bus.DeadLetters(ctx, events.WorkerThumbnailer, false, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) == 1 {
			dl := dls[0]
			if !strings.Contains(dl.Error, hostile) || !strings.Contains(dl.Error, "too large") {
				t.Errorf("dead letter error %q should name message %s and the reason", dl.Error, hostile)
			}
			if dl.EventType != events.TypeMessageSent {
				t.Errorf("dead letter of a %s", dl.EventType)
			}
			break
		}
		if len(dls) > 1 || time.Now().After(deadline) {
			t.Fatalf("thumbnailer dead letters: %d, want 1", len(dls))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The hostile message itself is stored and readable, just without a
	// thumbnail.
	m := bob.awaitMessage(conv, hostile, func(chat.MessageView) bool { return true })
	if m.MediaThumbnailURL != nil || m.MediaURL == nil {
		t.Errorf("hostile message: media_url %v, media_thumbnail_url %v", m.MediaURL, m.MediaThumbnailURL)
	}
	for _, w := range []string{events.WorkerPersister} {
		if dls, _ := bus.DeadLetters(ctx, w, false, 10); len(dls) != 0 {
			t.Errorf("%s dead letters: %s", w, fmt.Sprint(dls))
		}
	}
}
