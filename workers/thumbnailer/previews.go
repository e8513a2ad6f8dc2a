package thumbnailer

import (
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"os"
	"os/exec"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/thumbnail"
)

func (t *Thumbnailer) image(ctx context.Context, m events.MessageSentV1) error {
	thumbKey := media.ThumbnailKey(m.MediaKey)
	if done, err := t.reuse(ctx, m, thumbKey); done || err != nil {
		return err
	}
	info, err := media.ParseKey(m.MediaKey)
	if err != nil {
		return events.Permanent(err)
	}
	if info.Ext == "heic" || info.Ext == "heif" {
		// Accepted uploads (iPhone photos), but nothing here decodes them;
		// the app shows the original instead.
		t.logger.InfoContext(ctx, "no HEIC/HEIF decoder: no thumbnail", "message_id", m.MessageID, "key", m.MediaKey)
		return nil
	}
	rc, err := t.open(ctx, m.MediaKey, t.cfg.Limits.MaxBytes)
	if err != nil {
		return err
	}
	defer rc.Close()
	thumb, w, h, err := thumbnail.Image(ctx, rc, t.cfg.MaxSide, t.cfg.Limits)
	if err != nil {
		return classify(err)
	}
	return t.save(ctx, m, thumbKey, thumb, w, h)
}

func (t *Thumbnailer) video(ctx context.Context, m events.MessageSentV1) error {
	thumbKey := media.ThumbnailKey(m.MediaKey)
	if done, err := t.reuse(ctx, m, thumbKey); done || err != nil {
		return err
	}
	// Look before downloading up to 100 MiB for nothing.
	lookPath := t.cfg.FFmpeg.LookPath
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	if _, err := lookPath("ffmpeg"); err != nil {
		t.warnNoFFmpeg(ctx, err)
		return nil
	}
	f, cleanup, err := t.download(ctx, m.MediaKey, t.cfg.MaxVideoBytes)
	if err != nil {
		return err
	}
	defer cleanup()
	thumb, w, h, err := t.cfg.FFmpeg.Poster(ctx, f.Name(), t.cfg.MaxSide)
	if errors.Is(err, thumbnail.ErrNoFFmpeg) {
		t.warnNoFFmpeg(ctx, err)
		return nil
	}
	if err != nil {
		return classify(err)
	}
	return t.save(ctx, m, thumbKey, thumb, w, h)
}

func (t *Thumbnailer) warnNoFFmpeg(ctx context.Context, err error) {
	t.noFFmpeg.Do(func() {
		t.logger.WarnContext(ctx, "ffmpeg not installed: no poster frame for video messages", "err", err)
	})
}

// audio measures a voice note whose client sent no duration.
func (t *Thumbnailer) audio(ctx context.Context, m events.MessageSentV1) error {
	if m.AudioDuration != nil {
		return nil
	}
	f, cleanup, err := t.download(ctx, m.MediaKey, t.cfg.MaxAudioBytes)
	if err != nil {
		return err
	}
	defer cleanup()
	secs, ok := media.AudioDuration(f, "")
	if !ok {
		// Players show the length once loaded; nothing is lost.
		t.logger.InfoContext(ctx, "audio duration unreadable from the file's headers", "message_id", m.MessageID, "key", m.MediaKey)
		return nil
	}
	d := int32(secs)
	return t.publish(ctx, m, events.ThumbnailReadyV1{AudioDuration: &d})
}

// classify marks what a retry cannot fix as permanent.
func classify(err error) error {
	switch {
	case errors.Is(err, thumbnail.ErrBadImage), errors.Is(err, thumbnail.ErrTooLarge), errors.Is(err, thumbnail.ErrBadVideo):
		return events.Permanent(err)
	}
	return err
}

// reuse publishes ThumbnailReady for a thumbnail stored by an earlier
// delivery, with its dimensions read back from its header. done is false
// when there is none (or it is unreadable, so it is made again).
func (t *Thumbnailer) reuse(ctx context.Context, m events.MessageSentV1, thumbKey string) (done bool, err error) {
	ok, err := t.store.Exists(ctx, thumbKey)
	if err != nil || !ok {
		return false, err
	}
	rc, _, err := t.store.Get(ctx, thumbKey)
	if errors.Is(err, media.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer rc.Close()
	cfg, err := jpeg.DecodeConfig(rc)
	if err != nil {
		t.logger.WarnContext(ctx, "stored thumbnail unreadable; making it again", "key", thumbKey, "err", err)
		return false, nil
	}
	t.logger.DebugContext(ctx, "thumbnail already stored", "message_id", m.MessageID, "key", thumbKey)
	return true, t.publish(ctx, m, events.ThumbnailReadyV1{ThumbnailKey: thumbKey, Width: cfg.Width, Height: cfg.Height})
}

// save stores a thumbnail, then announces it: a ThumbnailReady always
// names an object that exists.
func (t *Thumbnailer) save(ctx context.Context, m events.MessageSentV1, thumbKey string, thumb []byte, w, h int) error {
	if err := t.store.Put(ctx, thumbKey, thumb, "image/jpeg"); err != nil {
		return err
	}
	t.logger.DebugContext(ctx, "thumbnail stored", "message_id", m.MessageID, "key", thumbKey, "width", w, "height", h, "bytes", len(thumb))
	// An unsend may have deleted the original while this was decoding: it
	// deletes the original before the thumbnail, so an original gone now
	// means its thumbnail must go too, unannounced (see unsent).
	if ok, err := t.store.Exists(ctx, m.MediaKey); err != nil {
		return fmt.Errorf("check original: %w", err)
	} else if !ok {
		if err := t.store.Delete(ctx, thumbKey); err != nil {
			return fmt.Errorf("delete the thumbnail of an unsent message: %w", err)
		}
		return nil
	}
	return t.publish(ctx, m, events.ThumbnailReadyV1{ThumbnailKey: thumbKey, Width: w, Height: h})
}

func (t *Thumbnailer) publish(ctx context.Context, m events.MessageSentV1, p events.ThumbnailReadyV1) error {
	p.MessageID, p.ConversationID = m.MessageID, m.ConversationID
	p.SenderID, p.RecipientID, p.MediaKey = m.SenderID, m.RecipientID, m.MediaKey
	p.WithheldFromRecipient, p.MemberIDs = m.WithheldFromRecipient, m.MemberIDs
	env, err := events.New(EventID(m.MessageID), t.cfg.Now(), m.SenderID, m.ConversationID, p)
	if err != nil {
		return events.Permanent(err)
	}
	if err := t.bus.Publish(ctx, env); err != nil {
		return fmt.Errorf("publish ThumbnailReady: %w", err)
	}
	return nil
}

// open starts reading an original, refusing one over limit bytes before
// reading it.
func (t *Thumbnailer) open(ctx context.Context, key string, limit int64) (io.ReadCloser, error) {
	rc, obj, err := t.store.Get(ctx, key)
	if errors.Is(err, media.ErrNotFound) {
		// Verified when the message was sent, so it was deleted since.
		return nil, events.Permanent(fmt.Errorf("original is gone: %w", err))
	}
	if err != nil {
		return nil, err
	}
	if obj.Size > limit {
		rc.Close()
		return nil, events.Permanent(fmt.Errorf("original of %d bytes exceeds %d", obj.Size, limit))
	}
	return rc, nil
}

// download copies an original to a temporary file, since ffmpeg and the
// audio parser seek; cleanup removes it.
func (t *Thumbnailer) download(ctx context.Context, key string, limit int64) (f *os.File, cleanup func(), err error) {
	rc, err := t.open(ctx, key, limit)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	f, err = os.CreateTemp(t.cfg.TempDir, "thumbnailer-*")
	if err != nil {
		return nil, nil, fmt.Errorf("temporary file: %w", err)
	}
	cleanup = func() {
		f.Close()
		os.Remove(f.Name())
	}
	// The size S3 reported is checked above; this bounds what is read
	// whatever the stream turns out to hold.
	n, err := io.Copy(f, io.LimitReader(rc, limit+1))
	if err == nil && n > limit {
		err = events.Permanent(fmt.Errorf("original exceeds %d bytes", limit))
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("download %s: %w", key, err)
	}
	return f, cleanup, nil
}
