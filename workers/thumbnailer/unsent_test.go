package thumbnailer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/workers/thumbnailer"
)

func unsentEvent(t *testing.T, m events.MessageSentV1) events.Envelope {
	t.Helper()
	at := time.Now().UTC()
	env, err := events.New(uuid.NewString(), at, m.SenderID, m.ConversationID, events.MessageUnsentV1{
		MessageID: m.MessageID, ConversationID: m.ConversationID, SenderID: m.SenderID,
		ContentType: m.ContentType, MediaKey: m.MediaKey, UnsentAt: at, ParticipantIDs: []int64{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func exists(t *testing.T, store *media.Store, key string) bool {
	t.Helper()
	ok, err := store.Exists(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// An unsent message's original and thumbnail are deleted from S3; a
// redelivery deletes nothing more and does not fail.
func TestUnsentDeletesTheMedia(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 800, 600))
	sent, m := sentEvent(t, events.ContentImage, obj.Key, nil)
	if err := f.th.Handle(t.Context(), sent); err != nil {
		t.Fatal(err)
	}
	if !exists(t, f.store, obj.Key) || !exists(t, f.store, media.ThumbnailKey(obj.Key)) {
		t.Fatal("the original and its thumbnail should exist before the unsend")
	}
	u := unsentEvent(t, m)
	for range 2 {
		if err := f.th.Handle(t.Context(), u); err != nil {
			t.Fatalf("unsent: %v", err)
		}
	}
	if exists(t, f.store, obj.Key) || exists(t, f.store, media.ThumbnailKey(obj.Key)) {
		t.Fatal("the media of an unsent message is still stored")
	}
}

// unsendBeforePut runs an unsend of the message right before the
// thumbnail is stored: the unsend lands while the image is decoding.
type unsendBeforePut struct {
	*media.Store
	thumb  string // the thumbnail's key
	unsend func(ctx context.Context) error
}

func (u *unsendBeforePut) Put(ctx context.Context, key string, body []byte, contentType string) error {
	if key == u.thumb && u.unsend != nil {
		if err := u.unsend(ctx); err != nil {
			return err
		}
		u.unsend = nil
	}
	return u.Store.Put(ctx, key, body, contentType)
}

// A thumbnail made while its message is unsent is deleted again and never
// announced: no thumbnail of an unsent photo is left or shown.
func TestUnsendDuringDecodeLeavesNoThumbnail(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 800, 600))
	sent, m := sentEvent(t, events.ContentImage, obj.Key, nil)
	racer := &unsendBeforePut{Store: f.store, thumb: media.ThumbnailKey(obj.Key)}
	th := thumbnailer.New(racer, f.bus, thumbnailer.Config{}, nil)
	racer.unsend = func(ctx context.Context) error { return th.Handle(ctx, unsentEvent(t, m)) }
	if err := th.Handle(t.Context(), sent); err != nil {
		t.Fatal(err)
	}
	if racer.unsend != nil {
		t.Fatal("the unsend did not run during the thumbnail's making")
	}
	if exists(t, f.store, obj.Key) || exists(t, f.store, media.ThumbnailKey(obj.Key)) {
		t.Fatal("media of the unsent message left behind")
	}
	if n := len(f.bus.published()); n != 0 {
		t.Fatalf("published %d events for an unsent message's thumbnail", n)
	}
}
