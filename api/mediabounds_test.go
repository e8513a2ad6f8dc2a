package api_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// TestMediaUploadRefusesUnrenderableImages checks that an image the
// thumbnailer could not decode is refused at upload, with the reason, and
// so can never be sent: through the server and through a presigned PUT.
func TestMediaUploadRefusesUnrenderableImages(t *testing.T) {
	limits := chat.DefaultLimits()
	limits.Rates = chat.Rates{} // one user uploads every case
	h := newMediaHarness(t, nil, limits)
	jpg := mediaJPEG(t, 64, 48)
	tests := []struct {
		name     string
		file     []byte
		mime     string
		status   int
		code     string
		contains string
	}{
		{"jpeg cut to 200 bytes", jpg[:200], "image/jpeg", http.StatusUnprocessableEntity, "invalid_argument", "corrupt file: jpeg header"},
		{"jpeg cut in half", jpg[:len(jpg)/2], "image/jpeg", http.StatusUnprocessableEntity, "invalid_argument", "truncated jpeg"},
		{"jpeg header only", jpg[:20], "image/jpeg", http.StatusUnprocessableEntity, "invalid_argument", "jpeg header"},
		{"png header claiming 30000x30000", mediatest.PNGHeaderOnly(30000, 30000), "image/png", http.StatusRequestEntityTooLarge, "payload_too_large", "30000x30000"},
		{"png header claiming 7000x7000", mediatest.PNGHeaderOnly(7000, 7000), "image/png", http.StatusRequestEntityTooLarge, "payload_too_large", "7000x7000"},
	}
	for _, tt := range tests {
		t.Run(tt.name+", uploaded", func(t *testing.T) {
			r := h.upload(1, "a", "", tt.file)
			if r.status != tt.status || r.errorCode() != tt.code || !strings.Contains(string(r.body), tt.contains) {
				t.Fatalf("status %d: %s; want %d %s mentioning %q", r.status, r.body, tt.status, tt.code, tt.contains)
			}
		})
		t.Run(tt.name+", presigned then sent", func(t *testing.T) {
			p := h.presignedPut(1, tt.mime, tt.file)
			r := h.send(1, map[string]any{"recipient_id": 2, "content_type": "image", "media_key": p.Key})
			if r.status != tt.status || r.errorCode() != tt.code || !strings.Contains(string(r.body), tt.contains) {
				t.Fatalf("status %d: %s; want %d %s mentioning %q", r.status, r.body, tt.status, tt.code, tt.contains)
			}
			if ok, err := h.store.Exists(t.Context(), p.Key); err != nil || ok {
				t.Errorf("the refused upload is still stored: %v, %v", ok, err)
			}
		})
	}
	if r := h.upload(1, "a.jpg", "", jpg); r.status != http.StatusOK {
		t.Fatalf("the whole JPEG: status %d: %s", r.status, r.body)
	}
}

// TestMediaUploadsAtOnce checks the bound on uploads in flight: a user's
// upload beyond it is refused while theirs runs, another user's is not,
// and the slot frees once the upload ends.
func TestMediaUploadsAtOnce(t *testing.T) {
	_, pool := dbtest.New(t)
	store := mediatest.Store(t, nil)
	limits := chat.DefaultLimits()
	limits.MaxUploads, limits.MaxUserUploads = 2, 1
	svc := chat.NewService(pool, pipelinetest.SyncPersister(pool, mediaQuiet), store, limits, mediaQuiet)
	file := mediaPNG(t, 8, 8)
	source := func(maxSize int64) (io.ReadCloser, string, error) {
		return io.NopCloser(bytes.NewReader(file)), "", nil
	}
	code := func(err error) chat.Code {
		var ce *chat.Error
		if errors.As(err, &ce) {
			return ce.Code
		}
		return ""
	}
	ctx := t.Context()
	// The source is called once the upload holds its slot: uploads made
	// from inside it run while the outer one is in flight.
	_, err := svc.Upload(ctx, 1, func(maxSize int64) (io.ReadCloser, string, error) {
		if _, err := svc.Upload(ctx, 1, source); code(err) != chat.CodeRateLimited {
			t.Errorf("second upload of the same user: %v, want rate_limited", err)
		}
		_, err := svc.Upload(ctx, 2, func(int64) (io.ReadCloser, string, error) {
			if _, err := svc.Upload(ctx, 3, source); code(err) != chat.CodeOverloaded {
				t.Errorf("third upload in the process: %v, want overloaded", err)
			}
			return source(maxSize)
		})
		if err != nil {
			t.Errorf("another user's upload: %v", err)
		}
		return source(maxSize)
	})
	if err != nil {
		t.Fatalf("outer upload: %v", err)
	}
	if _, err := svc.Upload(ctx, 1, source); err != nil {
		t.Fatalf("upload after the others ended: %v", err)
	}
}

// TestMediaRedirectIsNosniff checks the media redirect tells browsers not
// to sniff, and so does the storage it points at.
func TestMediaRedirectIsNosniff(t *testing.T) {
	h := newMediaHarness(t, nil, chat.DefaultLimits())
	up := mediaDecode[chat.UploadView](t, h.upload(1, "a.png", "", mediaPNG(t, 8, 8)), http.StatusOK)
	msg := mediaDecode[chat.MessageView](t, h.send(1, map[string]any{"recipient_id": 2, "content_type": "image", "media_key": up.Key}), http.StatusOK)
	r := h.do(2, "GET", api.Prefix+"/messages/"+msg.ID+"/media", "", nil)
	if r.status != http.StatusFound || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("status %d, X-Content-Type-Options %q", r.status, r.header.Get("X-Content-Type-Options"))
	}
	resp, err := http.Get(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("storage: status %d, X-Content-Type-Options %q", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}
}
