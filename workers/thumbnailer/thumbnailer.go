// Package thumbnailer is the worker that makes media previews: a JPEG
// thumbnail next to each image and video (a poster frame), and the playing
// time of voice notes whose client did not send it. It publishes
// ThumbnailReady, which the persister records and fanout pushes.
//
// It is idempotent: a thumbnail already stored is not made again, and the
// ThumbnailReady event's id derives from the message id, so redelivery and
// replay publish the same event.
package thumbnailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/thumbnail"
)

// Store is what the worker needs of the media store (*media.Store).
type Store interface {
	Get(ctx context.Context, key string) (io.ReadCloser, media.Object, error)
	Put(ctx context.Context, key string, body []byte, contentType string) error
	Exists(ctx context.Context, key string) (bool, error)
	Delete(ctx context.Context, key string) error
}

var _ Store = (*media.Store)(nil)

// Messages is what the worker reads of stored messages (*db.Queries):
// whether a message is unsent, and whether its media is still referred to.
type Messages interface {
	GetMessage(ctx context.Context, id uuid.UUID) (db.Message, error)
	MediaKeyInUse(ctx context.Context, arg db.MediaKeyInUseParams) (bool, error)
}

var _ Messages = (*db.Queries)(nil)

// Config tunes the worker. Zero fields take defaults.
type Config struct {
	// MaxSide is the longest side of a thumbnail in pixels; default 320.
	MaxSide int
	// Limits bound the work one image may cause. MaxBytes defaults to the
	// store's image limit (see withDefaults) rather than thumbnail's 64 MiB;
	// Memory to a budget of thumbnail.DefaultMemory shared by every
	// consumer of this handler.
	Limits thumbnail.Limits
	// FFmpeg makes video poster frames.
	FFmpeg thumbnail.FFmpeg
	// MaxVideoBytes and MaxAudioBytes bound what is downloaded to a
	// temporary file; they default to the store's limits.
	MaxVideoBytes int64
	MaxAudioBytes int64
	// TempDir holds downloaded videos and audio; empty means the system's.
	TempDir string
	// Now is the clock of published events; nil means time.Now.
	Now func() time.Time
	// Messages answers what unsend may delete. Without it no media is
	// deleted on unsend (a warning says so), since the worker could not
	// tell media that other messages or reports still refer to.
	Messages Messages
}

// sizeLimits is implemented by *media.Store: the limits uploads were held
// to are the natural bounds of what the worker reads back.
type sizeLimits interface {
	MaxSize(media.Kind) int64
}

func (c Config) withDefaults(store Store) Config {
	limit := func(k media.Kind, fallback int64) int64 {
		if s, ok := store.(sizeLimits); ok && s.MaxSize(k) > 0 {
			return s.MaxSize(k)
		}
		return fallback
	}
	if c.MaxSide <= 0 {
		c.MaxSide = thumbnail.DefaultMaxSide
	}
	if c.Limits.MaxBytes <= 0 {
		c.Limits.MaxBytes = limit(media.KindImage, media.DefaultMaxImageBytes)
	}
	if c.Limits.Memory == nil {
		c.Limits.Memory = thumbnail.NewBudget(max(thumbnail.DefaultMemory, thumbnail.MaxDecodeCost(c.Limits)))
	}
	if c.FFmpeg.Limits == (thumbnail.Limits{}) {
		c.FFmpeg.Limits = c.Limits
	}
	if c.FFmpeg.Limits.Memory == nil {
		c.FFmpeg.Limits.Memory = c.Limits.Memory // poster frames are decoded here too
	}
	if c.MaxVideoBytes <= 0 {
		c.MaxVideoBytes = limit(media.KindVideo, media.DefaultMaxVideoBytes)
	}
	if c.MaxAudioBytes <= 0 {
		c.MaxAudioBytes = limit(media.KindAudio, media.DefaultMaxAudioBytes)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// eventSpace namespaces the ids of ThumbnailReady events (UUIDv5 of
// "thumbnail:<message id>"). It must never change: a replay would then
// publish events under new ids.
var eventSpace = uuid.MustParse("6f0d7c1e-3b9a-4c52-9e1d-54a1f2b7c0de")

// EventID is the id of the ThumbnailReady event for a message.
func EventID(messageID string) string {
	return uuid.NewSHA1(eventSpace, []byte("thumbnail:"+messageID)).String()
}

// Thumbnailer handles MessageSent events of media messages.
type Thumbnailer struct {
	store  Store
	bus    events.Publisher
	cfg    Config
	logger *slog.Logger

	// noFFmpeg makes the "ffmpeg not installed" warning appear once per
	// process rather than once per video.
	noFFmpeg sync.Once
}

var _ events.Handler = (*Thumbnailer)(nil)

// New returns the worker's handler.
func New(store Store, bus events.Publisher, cfg Config, logger *slog.Logger) *Thumbnailer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Thumbnailer{store: store, bus: bus, cfg: cfg.withDefaults(store), logger: logger}
}

// Handle makes the preview of one media message. Errors that retrying
// cannot fix (a corrupt or hostile file, a missing original) are marked
// events.Permanent, so the bus dead-letters them at once with the reason;
// others (storage or bus unavailable) are returned for a retry.
//
// An unsent media message's original and thumbnail are deleted, unless
// Config.Messages says they are still referred to; deleting them again (a
// redelivery, a replay) deletes nothing.
func (t *Thumbnailer) Handle(ctx context.Context, e events.Envelope) error {
	if e.Type == events.TypeMessageUnsent {
		return t.unsent(ctx, e)
	}
	if e.Type != events.TypeMessageSent {
		return nil
	}
	// Only the content type first: other messages must never wait here,
	// and a malformed text message is not this worker's to dead-letter.
	var probe struct {
		ContentType string `json:"content_type"`
	}
	if json.Unmarshal(e.Data, &probe) != nil {
		return nil
	}
	switch probe.ContentType {
	case events.ContentImage, events.ContentVideo, events.ContentAudio:
	default:
		return nil
	}
	var m events.MessageSentV1
	if err := e.Unmarshal(&m); err != nil {
		return err
	}
	var err error
	switch m.ContentType {
	case events.ContentImage:
		err = t.image(ctx, m)
	case events.ContentVideo:
		err = t.video(ctx, m)
	case events.ContentAudio:
		err = t.audio(ctx, m)
	}
	if errors.Is(err, media.ErrNotFound) && t.unsentMessage(ctx, m.MessageID) {
		// A late or redelivered send of a message whose unsend deleted
		// its original: nothing is left to preview.
		t.logger.DebugContext(ctx, "thumbnailer: original of an unsent message is gone; nothing to do", "message_id", m.MessageID, "key", m.MediaKey)
		return nil
	}
	if err != nil {
		return fmt.Errorf("thumbnailer: message %s (%s %s): %w", m.MessageID, m.ContentType, m.MediaKey, err)
	}
	return nil
}

// unsentMessage reports whether the message is stored as unsent. A failed
// look-up answers false: the caller's error then stands.
func (t *Thumbnailer) unsentMessage(ctx context.Context, messageID string) bool {
	id, err := uuid.Parse(messageID)
	if err != nil || t.cfg.Messages == nil {
		return false
	}
	m, err := t.cfg.Messages.GetMessage(ctx, id)
	if err != nil {
		if !errors.Is(err, pgx.ErrNoRows) {
			t.logger.WarnContext(ctx, "thumbnailer: look up message", "message_id", messageID, "err", err)
		}
		return false
	}
	return m.UnsentAt != nil
}

func (t *Thumbnailer) unsent(ctx context.Context, e events.Envelope) error {
	var m events.MessageUnsentV1
	if err := e.Unmarshal(&m); err != nil {
		return err
	}
	if m.MediaKey == "" {
		return nil
	}
	info, err := media.ParseKey(m.MediaKey)
	if err != nil {
		return events.Permanent(fmt.Errorf("thumbnailer: unsent message %s: %w", m.MessageID, err))
	}
	keep := func(why string) error {
		t.logger.InfoContext(ctx, "thumbnailer: media of an unsent message kept", "reason", why, "message_id", m.MessageID, "key", m.MediaKey)
		return nil
	}
	switch {
	case info.Upload || info.Thumbnail:
		return keep("the key is not a sent original")
	case info.UserID != m.SenderID:
		// A message's media is its sender's own upload; another user's
		// key is not the sender's to delete.
		return keep("the key belongs to another user")
	case t.cfg.Messages == nil:
		t.logger.WarnContext(ctx, "thumbnailer: no message store configured; media of an unsent message kept", "message_id", m.MessageID, "key", m.MediaKey)
		return nil
	}
	inUse, err := t.cfg.Messages.MediaKeyInUse(ctx, db.MediaKeyInUseParams{MediaKey: m.MediaKey, MessageID: uuid.MustParse(m.MessageID)})
	if err != nil {
		return fmt.Errorf("thumbnailer: unsent message %s: check references: %w", m.MessageID, err)
	}
	if inUse {
		return keep("another message or a report refers to it")
	}
	// The original first: a thumbnail being made meanwhile checks for it
	// after storing itself, and deletes itself if it is gone (save).
	for _, key := range []string{m.MediaKey, media.ThumbnailKey(m.MediaKey)} {
		if err := t.store.Delete(ctx, key); err != nil {
			return fmt.Errorf("thumbnailer: unsent message %s: %w", m.MessageID, err)
		}
	}
	t.logger.DebugContext(ctx, "thumbnailer: deleted the media of an unsent message", "message_id", m.MessageID, "key", m.MediaKey)
	return nil
}
