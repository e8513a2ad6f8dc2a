package thumbnailer_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/workers/persister"
	"github.com/parleychat/parley/workers/thumbnailer"
)

func unsentEvent(t *testing.T, m events.MessageSentV1) events.Envelope {
	t.Helper()
	at := time.Now().UTC()
	env, err := events.New(uuid.NewString(), at, m.SenderID, m.ConversationID, events.MessageUnsentV1{
		MessageID: m.MessageID, ConversationID: m.ConversationID, SenderID: m.SenderID,
		ContentType: m.ContentType, MediaKey: m.MediaKey, UnsentAt: at, Deadline: events.ChangeDeadline(m.CreatedAt, events.DefaultUnsendWindow), ParticipantIDs: []int64{1, 2}})
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

// chatDB is a real database with the persister writing to it: the
// thumbnailer reads from it which messages and reports refer to media.
type chatDB struct {
	pool *pgxpool.Pool
	p    *persister.Persister
}

func newChatDB(t *testing.T) chatDB {
	t.Helper()
	_, pool := dbtest.New(t)
	return chatDB{pool: pool, p: persister.New(pool, slog.New(slog.DiscardHandler))}
}

func (d chatDB) handle(t *testing.T, envs ...events.Envelope) {
	t.Helper()
	for _, e := range envs {
		if err := d.p.Handle(t.Context(), e); err != nil {
			t.Fatalf("persist %s: %v", e.Type, err)
		}
	}
}

// sent stores a media message of key from one user to another, as the
// persister stores a MessageSent, and returns the event.
func (d chatDB) sent(t *testing.T, contentType, key string, from, to int64) (events.Envelope, events.MessageSentV1) {
	t.Helper()
	conv, _, err := db.GetOrCreateDirect(t.Context(), d.pool, uuid.Must(uuid.NewV7()), from, to)
	if err != nil {
		t.Fatal(err)
	}
	id, at := uuid.Must(uuid.NewV7()).String(), time.Now().UTC().Truncate(time.Microsecond)
	m := events.MessageSentV1{MessageID: id, ConversationID: conv.String(), SenderID: from, RecipientID: to,
		ContentType: contentType, MediaKey: key, CreatedAt: at}
	env, err := events.New(id, at, from, m.ConversationID, m)
	if err != nil {
		t.Fatal(err)
	}
	d.handle(t, env)
	return env, m
}

func (d chatDB) thumbnailer(f fixture) *thumbnailer.Thumbnailer {
	return thumbnailer.New(f.store, f.bus, thumbnailer.Config{Messages: db.New(d.pool)}, nil)
}

// An unsent message's original and thumbnail are deleted from S3; a
// redelivery deletes nothing more and does not fail.
func TestUnsentDeletesTheMedia(t *testing.T) {
	d := newChatDB(t)
	f := newFixture(t, thumbnailer.Config{}, nil)
	th := d.thumbnailer(f)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 800, 600))
	sent, m := d.sent(t, events.ContentImage, obj.Key, 1, 2)
	if err := th.Handle(t.Context(), sent); err != nil {
		t.Fatal(err)
	}
	if !exists(t, f.store, obj.Key) || !exists(t, f.store, media.ThumbnailKey(obj.Key)) {
		t.Fatal("the original and its thumbnail should exist before the unsend")
	}
	u := unsentEvent(t, m)
	for range 2 {
		if err := th.Handle(t.Context(), u); err != nil {
			t.Fatalf("unsent: %v", err)
		}
	}
	if exists(t, f.store, obj.Key) || exists(t, f.store, media.ThumbnailKey(obj.Key)) {
		t.Fatal("the media of an unsent message is still stored")
	}
}

// Unsend deletes no media that is still referred to: by another message
// (a verified key can be sent again) that is not unsent, or by a report
// (its evidence); nor a key of another user than the message's sender.
func TestUnsendKeepsMediaInUse(t *testing.T) {
	d := newChatDB(t)
	f := newFixture(t, thumbnailer.Config{}, nil)
	th := d.thumbnailer(f)
	unsend := func(t *testing.T, m events.MessageSentV1) {
		t.Helper()
		u := unsentEvent(t, m)
		d.handle(t, u)
		if err := th.Handle(t.Context(), u); err != nil {
			t.Fatalf("unsent: %v", err)
		}
	}
	kept := func(t *testing.T, key string, want bool) {
		t.Helper()
		if got := exists(t, f.store, key) && exists(t, f.store, media.ThumbnailKey(key)); got != want {
			t.Fatalf("media %s kept = %v, want %v", key, got, want)
		}
	}
	withThumb := func(t *testing.T, user int64) string {
		obj := upload(t, f.store, user, mediatest.Photo(t, 400, 300))
		if err := f.store.Put(t.Context(), media.ThumbnailKey(obj.Key), mediatest.Photo(t, 40, 30), "image/jpeg"); err != nil {
			t.Fatal(err)
		}
		return obj.Key
	}

	t.Run("sent again", func(t *testing.T) {
		key := withThumb(t, 1)
		_, first := d.sent(t, events.ContentImage, key, 1, 2)
		_, again := d.sent(t, events.ContentImage, key, 1, 3)
		unsend(t, first)
		kept(t, key, true)
		// Once no message shows it, the last unsend deletes it.
		unsend(t, again)
		kept(t, key, false)
	})
	t.Run("reported", func(t *testing.T) {
		key := withThumb(t, 1)
		_, m := d.sent(t, events.ContentImage, key, 1, 2)
		id, conv := uuid.MustParse(m.MessageID), uuid.MustParse(m.ConversationID)
		ct := m.ContentType
		if _, err := db.New(d.pool).InsertReport(t.Context(), db.InsertReportParams{ReporterID: 2, ReportedUserID: 1,
			MessageID: &id, ConversationID: &conv, ContentType: &ct, MediaKey: &key, MessageCreatedAt: &m.CreatedAt,
			Reason: "spam", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		unsend(t, m)
		kept(t, key, true)
	})
	t.Run("another user's key", func(t *testing.T) {
		key := withThumb(t, 1)
		_, m := d.sent(t, events.ContentImage, key, 2, 1)
		unsend(t, m)
		kept(t, key, true)
	})
}

// A MessageSent delivered again after its message was unsent (and its
// original deleted) is nothing to do, not a dead letter.
func TestLateSendOfUnsentMessage(t *testing.T) {
	d := newChatDB(t)
	f := newFixture(t, thumbnailer.Config{}, nil)
	th := d.thumbnailer(f)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 800, 600))
	sent, m := d.sent(t, events.ContentImage, obj.Key, 1, 2)
	u := unsentEvent(t, m)
	d.handle(t, u)
	if err := th.Handle(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if exists(t, f.store, obj.Key) {
		t.Fatal("the original of the unsent message is still stored")
	}
	if err := th.Handle(t.Context(), sent); err != nil {
		t.Fatalf("late MessageSent of an unsent message: %v", err)
	}
	if n := len(f.bus.published()); n != 0 {
		t.Fatalf("published %d events for an unsent message", n)
	}
	// A message that is not unsent whose original is gone stays an error.
	other, _ := d.sent(t, events.ContentImage, media.Key(1, time.Now(), "jpg"), 1, 2)
	if err := th.Handle(t.Context(), other); !events.IsPermanent(err) {
		t.Fatalf("missing original of a sent message: %v, want a permanent error", err)
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
	d := newChatDB(t)
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 800, 600))
	sent, m := d.sent(t, events.ContentImage, obj.Key, 1, 2)
	racer := &unsendBeforePut{Store: f.store, thumb: media.ThumbnailKey(obj.Key)}
	th := thumbnailer.New(racer, f.bus, thumbnailer.Config{Messages: db.New(d.pool)}, nil)
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
