package thumbnailer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
)

// Fixtures specific to the worker; the shared ones (S3, images, WAV) are in
// internal/mediatest.

// upload stores a file for user through the store's checked upload path.
func upload(t testing.TB, store *media.Store, user int64, b []byte) media.Object {
	t.Helper()
	obj, err := store.Upload(context.Background(), user, bytes.NewReader(b), int64(len(b)), "")
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return obj
}

// putRaw stores a file as an upload of user without the upload checks:
// files stored before those checks, or by other means, reach the worker too.
func putRaw(t testing.TB, store *media.Store, user int64, b []byte, ext string) media.Object {
	t.Helper()
	key := media.Key(user, time.Now(), ext)
	if err := store.Put(context.Background(), key, b, "application/octet-stream"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return media.Object{Key: key, Size: int64(len(b)), Kind: media.KindImage}
}

// recorder is a Publisher that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	envs []events.Envelope
	fail error
}

func (r *recorder) Publish(_ context.Context, envs ...events.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.envs = append(r.envs, envs...)
	return nil
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.envs = nil
}

func (r *recorder) published() []events.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Envelope(nil), r.envs...)
}

// sentEvent is a MessageSent of user 1 to user 2.
func sentEvent(t testing.TB, contentType, key string, duration *int32) (events.Envelope, events.MessageSentV1) {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	conv := uuid.Must(uuid.NewV7()).String()
	m := events.MessageSentV1{
		MessageID: id, ConversationID: conv, SenderID: 1, RecipientID: 2, ContentType: contentType,
		MediaKey: key, AudioDuration: duration, CreatedAt: time.Now().UTC(),
	}
	if contentType == events.ContentText {
		m.TextContent = "hello"
	}
	env, err := events.New(id, m.CreatedAt, 1, conv, m)
	if err != nil {
		t.Fatalf("events.New: %v", err)
	}
	return env, m
}

// isoFile is an ISO media file with the given major brand and a little
// media data: enough for the type sniffer, not for a decoder.
func isoFile(brand string) []byte {
	box := func(typ string, payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
		return append(append(b, typ...), payload...)
	}
	ftyp := box("ftyp", append([]byte(brand), 0, 0, 2, 0))
	return append(ftyp, box("mdat", bytes.Repeat([]byte{7}, 1024))...)
}
