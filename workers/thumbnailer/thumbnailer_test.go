package thumbnailer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image/jpeg"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/thumbnail"
	"github.com/parleychat/parley/workers/thumbnailer"
)

// countingStore is the real store, counting what the worker asks of it.
type countingStore struct {
	thumbnailer.Store
	gets, puts atomic.Int32
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, media.Object, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Put(ctx context.Context, key string, body []byte, contentType string) error {
	c.puts.Add(1)
	return c.Store.Put(ctx, key, body, contentType)
}

type fixture struct {
	store *media.Store
	spy   *countingStore
	bus   *recorder
	th    *thumbnailer.Thumbnailer
}

func newFixture(t *testing.T, cfg thumbnailer.Config, logger *slog.Logger) fixture {
	t.Helper()
	store := mediatest.Store(t, nil)
	spy := &countingStore{Store: store}
	bus := &recorder{}
	return fixture{store: store, spy: spy, bus: bus, th: thumbnailer.New(spy, bus, cfg, logger)}
}

// readThumb returns the stored thumbnail of an original and its size.
func readThumb(t *testing.T, store *media.Store, key string) ([]byte, int, int) {
	t.Helper()
	rc, obj, err := store.Get(t.Context(), media.ThumbnailKey(key))
	if err != nil {
		t.Fatalf("get thumbnail: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if obj.MIME != "image/jpeg" {
		t.Errorf("thumbnail stored as %q", obj.MIME)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("thumbnail is not a JPEG: %v", err)
	}
	return b, img.Bounds().Dx(), img.Bounds().Dy()
}

// ready checks exactly one ThumbnailReady was published for m and returns it.
func ready(t *testing.T, bus *recorder, m events.MessageSentV1) (events.Envelope, events.ThumbnailReadyV1) {
	t.Helper()
	envs := bus.published()
	if len(envs) != 1 {
		t.Fatalf("published %d events, want 1", len(envs))
	}
	var p events.ThumbnailReadyV1
	if err := envs[0].Unmarshal(&p); err != nil {
		t.Fatalf("published event: %v", err)
	}
	if envs[0].ID != thumbnailer.EventID(m.MessageID) {
		t.Errorf("event id %s, want %s", envs[0].ID, thumbnailer.EventID(m.MessageID))
	}
	if p.MessageID != m.MessageID || p.ConversationID != m.ConversationID || p.SenderID != m.SenderID ||
		p.RecipientID != m.RecipientID || p.MediaKey != m.MediaKey {
		t.Errorf("ThumbnailReady %+v does not describe message %+v", p, m)
	}
	return envs[0], p
}

func TestImageThumbnail(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 1600, 1200))
	env, m := sentEvent(t, events.ContentImage, obj.Key, nil)

	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	_, w, h := readThumb(t, f.store, obj.Key)
	if w != 320 || h != 240 {
		t.Errorf("stored thumbnail is %dx%d, want 320x240", w, h)
	}
	_, p := ready(t, f.bus, m)
	if p.ThumbnailKey != media.ThumbnailKey(obj.Key) || p.Width != 320 || p.Height != 240 || p.AudioDuration != nil {
		t.Errorf("ThumbnailReady = %+v", p)
	}
}

func TestImageThumbnailFollowsEXIFOrientation(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	// Stored landscape, shot in portrait: orientation 6 turns it upright.
	obj := upload(t, f.store, 1, mediatest.WithOrientation(mediatest.JPEG(t, mediatest.Quadrants(1600, 1200), 90), 6, binary.BigEndian))
	env, m := sentEvent(t, events.ContentImage, obj.Key, nil)

	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	b, w, h := readThumb(t, f.store, obj.Key)
	if w != 240 || h != 320 {
		t.Fatalf("stored thumbnail is %dx%d, want 240x320", w, h)
	}
	// Turned clockwise, the bottom-left (mediatest.Blue) quarter ends up top left.
	img, _ := jpeg.Decode(bytes.NewReader(b))
	if r, g, bl, _ := img.At(w/4, h/4).RGBA(); bl>>8 < 200 || r>>8 > 60 || g>>8 > 60 {
		t.Errorf("top-left quarter is %v, want mediatest.Blue", img.At(w/4, h/4))
	}
	if _, p := ready(t, f.bus, m); p.Width != 240 || p.Height != 320 {
		t.Errorf("ThumbnailReady says %dx%d, want 240x320", p.Width, p.Height)
	}
}

// A second delivery (or a replay) finds the thumbnail stored and only
// announces it again, under the same event id, with its stored size.
func TestRedeliveryDoesNotRewriteThumbnail(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.Photo(t, 1600, 1200))
	env, m := sentEvent(t, events.ContentImage, obj.Key, nil)
	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("first Handle: %v", err)
	}
	first, _ := ready(t, f.bus, m)
	if n := f.spy.puts.Load(); n != 1 {
		t.Fatalf("first delivery stored %d objects, want 1", n)
	}
	// Swap the stored thumbnail for a marker of another size: were it made
	// again, the marker would be overwritten and the size would be 320x240.
	marker := mediatest.JPEG(t, mediatest.Quadrants(32, 24), 90)
	if err := f.store.Put(t.Context(), media.ThumbnailKey(obj.Key), marker, "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	f.bus.reset()

	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("second Handle: %v", err)
	}
	if n := f.spy.puts.Load(); n != 1 {
		t.Errorf("second delivery stored again (%d puts in all)", n)
	}
	if b, _, _ := readThumb(t, f.store, obj.Key); !bytes.Equal(b, marker) {
		t.Error("the stored thumbnail was rewritten")
	}
	second, p := ready(t, f.bus, m)
	if second.ID != first.ID {
		t.Errorf("event id changed from %s to %s", first.ID, second.ID)
	}
	if p.Width != 32 || p.Height != 24 {
		t.Errorf("dimensions %dx%d, want the stored thumbnail's 32x24", p.Width, p.Height)
	}
}

func TestIgnoresOtherEvents(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	text, _ := sentEvent(t, events.ContentText, "", nil)
	typing, err := events.New(thumbnailer.EventID("x"), text.OccurredAt, 1, text.ConversationID,
		events.TypingV1{ConversationID: text.ConversationID, UserID: 1, RecipientID: 2, IsTyping: true})
	if err != nil {
		t.Fatal(err)
	}
	garbled := text
	garbled.Data = []byte(`{"content_type":"text","message_id":42}`)
	for _, e := range []events.Envelope{text, typing, garbled} {
		if err := f.th.Handle(t.Context(), e); err != nil {
			t.Errorf("Handle(%s): %v", e.Type, err)
		}
	}
	if n := len(f.bus.published()); n != 0 {
		t.Errorf("published %d events", n)
	}
	if f.spy.gets.Load() != 0 || f.spy.puts.Load() != 0 {
		t.Errorf("touched storage: %d gets, %d puts", f.spy.gets.Load(), f.spy.puts.Load())
	}
}

func TestAudioDuration(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.WAV(8000, 8000*3)) // three seconds

	env, m := sentEvent(t, events.ContentAudio, obj.Key, nil)
	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	_, p := ready(t, f.bus, m)
	if p.AudioDuration == nil || *p.AudioDuration != 3 || p.ThumbnailKey != "" {
		t.Errorf("ThumbnailReady = %+v, want audio_duration 3 and no thumbnail", p)
	}

	// The client's own duration stands; the file is not even read.
	f.bus.reset()
	gets := f.spy.gets.Load()
	given := int32(7)
	env, _ = sentEvent(t, events.ContentAudio, obj.Key, &given)
	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if n := len(f.bus.published()); n != 0 || f.spy.gets.Load() != gets {
		t.Errorf("with a duration given: published %d events, read storage %d times", n, f.spy.gets.Load()-gets)
	}
}

func TestAudioWithoutReadableDuration(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	wav := mediatest.WAV(8000, 800)
	copy(wav[12:], "junk") // no fmt chunk where the parser looks: no byte rate
	obj := upload(t, f.store, 1, wav)
	env, _ := sentEvent(t, events.ContentAudio, obj.Key, nil)
	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if n := len(f.bus.published()); n != 0 {
		t.Errorf("published %d events", n)
	}
}

// Hostile and broken images fail with a permanent error naming the message
// and the reason, so the bus dead-letters them; nothing is stored.
func TestRefusesBadImages(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	good := mediatest.JPEG(t, mediatest.Quadrants(640, 480), 80)
	tests := []struct {
		name   string
		file   []byte
		ext    string
		reason error
	}{
		{"png bomb 100000x100000", mediatest.PNGHeaderOnly(100000, 100000), "png", thumbnail.ErrTooLarge},
		{"png bomb 30000x30000", mediatest.PNGHeaderOnly(30000, 30000), "png", thumbnail.ErrTooLarge},
		{"png 7000x7000", mediatest.PNGHeaderOnly(7000, 7000), "png", thumbnail.ErrTooLarge},
		{"truncated jpeg", good[:len(good)/2], "jpg", thumbnail.ErrBadImage},
		{"png header, no pixels", mediatest.PNGHeaderOnly(64, 64), "png", thumbnail.ErrBadImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Uploads refuse these now; older objects may still hold them.
			obj := putRaw(t, f.store, 1, tt.file, tt.ext)
			env, m := sentEvent(t, events.ContentImage, obj.Key, nil)
			err := f.th.Handle(t.Context(), env)
			if !errors.Is(err, tt.reason) || !events.IsPermanent(err) {
				t.Fatalf("Handle: %v; want a permanent %v", err, tt.reason)
			}
			if !strings.Contains(err.Error(), m.MessageID) {
				t.Errorf("error %q does not name message %s", err, m.MessageID)
			}
			if ok, err := f.store.Exists(t.Context(), media.ThumbnailKey(obj.Key)); err != nil || ok {
				t.Errorf("thumbnail stored: %v %v", ok, err)
			}
			if n := len(f.bus.published()); n != 0 {
				t.Errorf("published %d events", n)
			}
		})
	}
}

func TestOriginalGoneIsPermanent(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.JPEG(t, mediatest.Quadrants(64, 64), 80))
	if err := f.store.Delete(t.Context(), obj.Key); err != nil {
		t.Fatal(err)
	}
	env, _ := sentEvent(t, events.ContentImage, obj.Key, nil)
	if err := f.th.Handle(t.Context(), env); !errors.Is(err, media.ErrNotFound) || !events.IsPermanent(err) {
		t.Fatalf("Handle: %v; want a permanent ErrNotFound", err)
	}
}

// A failing bus is worth a retry; the retry reuses the stored thumbnail.
func TestPublishFailureIsRetried(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, mediatest.JPEG(t, mediatest.Quadrants(640, 480), 80))
	env, m := sentEvent(t, events.ContentImage, obj.Key, nil)
	f.bus.fail = errors.New("bus down")
	if err := f.th.Handle(t.Context(), env); err == nil || events.IsPermanent(err) {
		t.Fatalf("Handle: %v; want a retryable error", err)
	}
	f.bus.fail = nil
	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if _, p := ready(t, f.bus, m); p.Width != 320 || p.Height != 240 {
		t.Errorf("ThumbnailReady = %+v", p)
	}
	if n := f.spy.puts.Load(); n != 1 {
		t.Errorf("%d puts, want 1", n)
	}
}

func TestHEICIsSkipped(t *testing.T) {
	f := newFixture(t, thumbnailer.Config{}, nil)
	obj := upload(t, f.store, 1, isoFile("heic"))
	if obj.MIME != "image/heic" {
		t.Fatalf("fixture stored as %s", obj.MIME)
	}
	env, _ := sentEvent(t, events.ContentImage, obj.Key, nil)
	if err := f.th.Handle(t.Context(), env); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if n := len(f.bus.published()); n != 0 || f.spy.gets.Load() != 0 {
		t.Errorf("published %d events, read storage %d times", n, f.spy.gets.Load())
	}
}

// lineCounter counts log records by message.
type lineCounter struct {
	slog.Handler
	lines chan string
}

func (l lineCounter) Enabled(context.Context, slog.Level) bool { return true }

func (l lineCounter) Handle(_ context.Context, r slog.Record) error {
	l.lines <- r.Message
	return nil
}

func TestVideoWithoutFFmpeg(t *testing.T) {
	lines := make(chan string, 100)
	logger := slog.New(lineCounter{Handler: slog.DiscardHandler, lines: lines})
	noFFmpeg := func(string) (string, error) { return "", errors.New("executable file not found in $PATH") }
	f := newFixture(t, thumbnailer.Config{FFmpeg: thumbnail.FFmpeg{LookPath: noFFmpeg}}, logger)
	obj := upload(t, f.store, 1, isoFile("isom"))
	if obj.Kind != media.KindVideo {
		t.Fatalf("fixture stored as %s", obj.MIME)
	}
	for range 3 {
		env, _ := sentEvent(t, events.ContentVideo, obj.Key, nil)
		if err := f.th.Handle(t.Context(), env); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	close(lines)
	var warned int
	for l := range lines {
		if l == "ffmpeg not installed: no poster frame for video messages" {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("warned %d times, want once", warned)
	}
	if n := len(f.bus.published()); n != 0 || f.spy.gets.Load() != 0 {
		t.Errorf("published %d events, read storage %d times", n, f.spy.gets.Load())
	}
}

// standInFFmpeg writes an executable that acts as ffmpeg would for one
// command line: it keeps a copy of its input file and writes frame (a PNG)
// to stdout, or fails like ffmpeg on an unreadable file when frame is nil.
func standInFFmpeg(t *testing.T, frame []byte) (lookPath func(string) (string, error), seen string) {
	t.Helper()
	dir := t.TempDir()
	seen = filepath.Join(dir, "input")
	script := "#!/bin/sh\nfor a; do case \"$a\" in file:*) cp \"${a#file:}\" " + seen + ";; esac; done\n"
	if frame == nil {
		script += "echo 'moov atom not found' >&2\nexit 1\n"
	} else {
		framePath := filepath.Join(dir, "frame.png")
		if err := os.WriteFile(framePath, frame, 0o600); err != nil {
			t.Fatal(err)
		}
		script += "cat " + framePath + "\n"
	}
	bin := filepath.Join(dir, "ffmpeg")
	if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return func(string) (string, error) { return bin, nil }, seen
}

// ffmpeg is not installed here; a stand-in checks the worker's side: the
// whole original reaches ffmpeg as a file, and its frame becomes the stored
// thumbnail.
func TestVideoPoster(t *testing.T) {
	video := isoFile("isom")
	t.Run("poster stored", func(t *testing.T) {
		lookPath, seen := standInFFmpeg(t, mediatest.PNG(t, mediatest.Quadrants(320, 180)))
		f := newFixture(t, thumbnailer.Config{FFmpeg: thumbnail.FFmpeg{LookPath: lookPath}}, nil)
		obj := upload(t, f.store, 1, video)
		env, m := sentEvent(t, events.ContentVideo, obj.Key, nil)
		if err := f.th.Handle(t.Context(), env); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		if got, err := os.ReadFile(seen); err != nil || !bytes.Equal(got, video) {
			t.Errorf("ffmpeg's input differs from the original (err %v)", err)
		}
		if _, w, h := readThumb(t, f.store, obj.Key); w != 320 || h != 180 {
			t.Errorf("poster is %dx%d", w, h)
		}
		if _, p := ready(t, f.bus, m); p.Width != 320 || p.Height != 180 || p.ThumbnailKey != media.ThumbnailKey(obj.Key) {
			t.Errorf("ThumbnailReady = %+v", p)
		}
	})
	t.Run("unreadable video is permanent", func(t *testing.T) {
		lookPath, _ := standInFFmpeg(t, nil)
		f := newFixture(t, thumbnailer.Config{FFmpeg: thumbnail.FFmpeg{LookPath: lookPath}}, nil)
		obj := upload(t, f.store, 1, video)
		env, _ := sentEvent(t, events.ContentVideo, obj.Key, nil)
		err := f.th.Handle(t.Context(), env)
		if !errors.Is(err, thumbnail.ErrBadVideo) || !events.IsPermanent(err) {
			t.Fatalf("Handle: %v; want a permanent ErrBadVideo", err)
		}
	})
	t.Run("over the store's video limit", func(t *testing.T) {
		lookPath, _ := standInFFmpeg(t, mediatest.PNG(t, mediatest.Quadrants(32, 32)))
		store := mediatest.Store(t, func(c *media.Config) { c.MaxVideoBytes = 100 })
		// Stored behind the limit's back, as by an older, laxer version.
		key := media.Key(1, time.Now(), "mp4")
		if err := store.Put(t.Context(), key, video, "video/mp4"); err != nil {
			t.Fatal(err)
		}
		th := thumbnailer.New(store, &recorder{}, thumbnailer.Config{FFmpeg: thumbnail.FFmpeg{LookPath: lookPath}}, nil)
		env, _ := sentEvent(t, events.ContentVideo, key, nil)
		if err := th.Handle(t.Context(), env); err == nil || !events.IsPermanent(err) || !strings.Contains(err.Error(), "exceeds 100") {
			t.Fatalf("Handle: %v; want a permanent error over 100 bytes", err)
		}
	})
	t.Run("over the video limit", func(t *testing.T) {
		lookPath, _ := standInFFmpeg(t, mediatest.PNG(t, mediatest.Quadrants(32, 32)))
		f := newFixture(t, thumbnailer.Config{FFmpeg: thumbnail.FFmpeg{LookPath: lookPath}, MaxVideoBytes: 100}, nil)
		obj := upload(t, f.store, 1, video)
		env, _ := sentEvent(t, events.ContentVideo, obj.Key, nil)
		if err := f.th.Handle(t.Context(), env); err == nil || !events.IsPermanent(err) {
			t.Fatalf("Handle: %v; want a permanent error", err)
		}
	})
}

// TestDecodesShareOneBudget runs the worker's consumers at once over images
// that fit the memory budget one at a time, and checks by the budget's
// count that no two were decoded together.
func TestDecodesShareOneBudget(t *testing.T) {
	const w, h = 800, 600
	budget := thumbnail.NewBudget(w * h * 8) // one JPEG of w×h
	f := newFixture(t, thumbnailer.Config{Limits: thumbnail.Limits{Memory: budget}}, nil)
	envs := make([]events.Envelope, 6)
	for i := range envs {
		obj := upload(t, f.store, 1, mediatest.Photo(t, w, h))
		envs[i], _ = sentEvent(t, events.ContentImage, obj.Key, nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(envs))
	for _, env := range envs {
		wg.Go(func() { errs <- f.th.Handle(t.Context(), env) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	if st := budget.Stats(); st.PeakDecodes != 1 || st.PeakBytes > budget.Size() {
		t.Errorf("budget %d bytes: %+v", budget.Size(), st)
	}
	if n := len(f.bus.published()); n != len(envs) {
		t.Errorf("published %d events, want %d", n, len(envs))
	}
}
