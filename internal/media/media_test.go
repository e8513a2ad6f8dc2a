package media_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/s3local"
)

const testBucket = "chat-media"

// serveLocal runs the embedded S3 server over dir on a loopback listener
// until the test ends or stop is called, and returns its base URL.
func serveLocal(t *testing.T, dir string) (endpoint string, stop func()) {
	t.Helper()
	srv, err := s3local.New(dir, s3local.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("s3local.New: %v", err)
	}
	if err := srv.EnsureBucket(t.Context(), testBucket); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func newStore(t *testing.T, endpoint string, edit func(*media.Config)) *media.Store {
	t.Helper()
	cfg := media.Config{
		Bucket:    testBucket,
		Endpoint:  endpoint,
		PathStyle: true,
		Local:     true,
		TempDir:   t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := media.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("media.New: %v", err)
	}
	return s
}

func readObject(t *testing.T, s *media.Store, key string) ([]byte, media.Object) {
	t.Helper()
	rc, obj, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b, obj
}

func TestUploadRoundTrip(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	tempDir := t.TempDir()
	s := newStore(t, endpoint, func(c *media.Config) { c.TempDir = tempDir })
	now := time.Now().UTC()

	tests := []struct {
		name     string
		body     []byte
		declared string
		wantMIME string
		wantExt  string
		wantKind media.Kind
	}{
		{"jpeg", jpegFile(t, 64, 48), "image/jpeg", "image/jpeg", "jpg", media.KindImage},
		{"png without declared type", pngFile(t, 30, 20), "", "image/png", "png", media.KindImage},
		{"gif as octet-stream", gifFile(t, 16, 16), "application/octet-stream", "image/gif", "gif", media.KindImage},
		{"wav", mediatest.WAV(8000, 8000), "audio/x-wav", "audio/wav", "wav", media.KindAudio},
		{"mp3", mp3File(40, true, 0), "audio/mpeg", "audio/mpeg", "mp3", media.KindAudio},
		{"mp4", mp4File("isom", 20_000, mvhd0(1000, 3000), "iso2", "avc1", "mp41"), "video/mp4", "video/mp4", "mp4", media.KindVideo},
		// Larger than the in-memory spool, so it goes through a temp file.
		{"big video", mp4File("mp42", 9<<20, mvhd0(600, 6000)), "video/mp4", "video/mp4", "mp4", media.KindVideo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := s.Upload(t.Context(), 42, bytes.NewReader(tt.body), int64(len(tt.body)), tt.declared)
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			want := media.Object{Key: obj.Key, Size: int64(len(tt.body)), MIME: tt.wantMIME, Kind: tt.wantKind}
			if obj != want {
				t.Errorf("Upload = %+v, want %+v", obj, want)
			}
			prefix := "chat/42/" + now.Format("2006/01") + "/"
			if !strings.HasPrefix(obj.Key, prefix) || !strings.HasSuffix(obj.Key, "."+tt.wantExt) {
				t.Errorf("key %q, want %s<uuid>.%s", obj.Key, prefix, tt.wantExt)
			}
			if owner, err := media.OwnerOf(obj.Key); err != nil || owner != 42 {
				t.Errorf("OwnerOf(%s) = %d, %v", obj.Key, owner, err)
			}
			got, stored := readObject(t, s, obj.Key)
			if !bytes.Equal(got, tt.body) {
				t.Fatalf("round trip: got %d bytes, want %d, equal=false", len(got), len(tt.body))
			}
			if stored != obj {
				t.Errorf("Get object = %+v, want %+v", stored, obj)
			}
		})
	}
	if left, _ := os.ReadDir(tempDir); len(left) != 0 {
		t.Errorf("temporary files left behind: %d", len(left))
	}
}

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("body read although the declared size was over the limit")
	return 0, io.ErrUnexpectedEOF
}

func TestUploadRefused(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, func(c *media.Config) {
		c.MaxImageBytes = 2000
		c.MaxAudioBytes = 50_000
		c.MaxVideoBytes = 100_000
	})
	smallPNG := pngFile(t, 8, 8)
	bigPNG := append(pngFile(t, 20, 20), make([]byte, 3000)...) // trailing bytes still sniff as PNG
	if len(bigPNG) <= 2000 || len(smallPNG) > 2000 {
		t.Fatalf("fixture sizes: %d, %d", len(smallPNG), len(bigPNG))
	}

	tests := []struct {
		name     string
		body     io.Reader
		size     int64
		declared string
		want     []error
	}{
		{"random bytes", bytes.NewReader(bytes.Repeat([]byte{0x13, 0x37, 0x00, 0x42}, 100)), 400, "image/jpeg", []error{media.ErrUnsupportedType}},
		{"html named as jpeg", strings.NewReader("<html><script>alert(1)</script></html>"), -1, "image/jpeg", []error{media.ErrUnsupportedType}},
		{"empty", strings.NewReader(""), 0, "", []error{media.ErrUnsupportedType}},
		{"png declared as video", bytes.NewReader(smallPNG), -1, "video/mp4", []error{media.ErrUnsupportedType, media.ErrTypeMismatch}},
		{"png declared as text", bytes.NewReader(smallPNG), -1, "text/plain", []error{media.ErrUnsupportedType, media.ErrTypeMismatch}},
		{"mp4 audio brand declared as video", bytes.NewReader(mp4File("M4A ", 100, mvhd0(1, 1))), -1, "video/mp4", []error{media.ErrTypeMismatch}},
		{"matroska", bytes.NewReader(webmHead("matroska")), -1, "video/webm", []error{media.ErrUnsupportedType}},
		{"image over its limit", bytes.NewReader(bigPNG), -1, "image/png", []error{media.ErrTooLarge}},
		{"image over its limit, size unknown", bytes.NewReader(bigPNG), 0, "", []error{media.ErrTooLarge}},
		{"declared size over every limit", failReader{t}, 1 << 30, "", []error{media.ErrTooLarge}},
		{"audio over its limit", bytes.NewReader(mediatest.WAV(8000, 30_000)), -1, "audio/wav", []error{media.ErrTooLarge}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := s.Upload(t.Context(), 7, tt.body, tt.size, tt.declared)
			if err == nil {
				t.Fatalf("Upload succeeded: %+v", obj)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Upload error %q is not %q", err, w)
				}
			}
		})
	}
	if _, err := s.Upload(t.Context(), 7, bytes.NewReader(smallPNG), -1, "image/png"); err != nil {
		t.Errorf("upload within the limit: %v", err)
	}
}

func TestUploadCorrectsDeclaredType(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, nil)
	tests := []struct {
		name     string
		body     []byte
		declared string
		wantMIME string
		wantExt  string
	}{
		{"png sent as jpeg", pngFile(t, 10, 10), "image/jpeg", "image/png", ".png"},
		{"jpeg sent as webp", jpegFile(t, 10, 10), "image/webp; charset=binary", "image/jpeg", ".jpg"},
		{"voice note in a generic mp4", mp4File("isom", 500, mvhd0(44100, 88200), "isom", "3gp4"), "audio/mp4", "audio/mp4", ".m4a"},
		{"voice note in 3gp", mp4File("3gp4", 500, mvhd0(1000, 2000)), "audio/3gpp", "audio/3gpp", ".3ga"},
		{"video with an audio extension only", mp4File("isom", 500, mvhd0(1000, 2000)), "", "video/mp4", ".mp4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := s.Upload(t.Context(), 9, bytes.NewReader(tt.body), -1, tt.declared)
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if obj.MIME != tt.wantMIME || !strings.HasSuffix(obj.Key, tt.wantExt) {
				t.Errorf("stored %s as %s, want %s with %s", obj.Key, obj.MIME, tt.wantMIME, tt.wantExt)
			}
			got, stored := readObject(t, s, obj.Key)
			if !bytes.Equal(got, tt.body) || stored.MIME != tt.wantMIME {
				t.Errorf("stored content type %q, bytes equal %v", stored.MIME, bytes.Equal(got, tt.body))
			}
		})
	}
}

// presignedPut uploads body the way a mobile client would: plain HTTP with
// the headers it was given.
func presignedPut(t *testing.T, up media.PresignedUpload, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), up.Method, up.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range up.Headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("PUT: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT status %d: %s", resp.StatusCode, msg)
	}
}

func TestPresignedUploadFlow(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, nil)
	ctx := t.Context()
	body := jpegFile(t, 120, 90)

	before := time.Now()
	up, err := s.PresignPut(ctx, 5, "image/jpg", int64(len(body)))
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	if up.Method != http.MethodPut || up.Headers["Content-Type"] != "image/jpeg" || up.MIME != "image/jpeg" || up.Kind != media.KindImage {
		t.Errorf("presigned upload = %+v", up)
	}
	if !strings.HasPrefix(up.Key, "chat/upload/5/") || !strings.HasSuffix(up.Key, ".jpg") {
		t.Errorf("key %q", up.Key)
	}
	// The URL's own expiry is second-granular.
	if lo, hi := before.Add(media.DefaultPresignTTL-time.Second), time.Now().Add(media.DefaultPresignTTL+time.Second); up.ExpiresAt.Before(lo) || up.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt %v outside [%v, %v]", up.ExpiresAt, lo, hi)
	}
	if ok, err := s.Exists(ctx, up.Key); err != nil || ok {
		t.Fatalf("Exists before upload = %v, %v", ok, err)
	}
	if _, err := s.Verify(ctx, up.Key); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Verify before upload: %v, want ErrNotFound", err)
	}

	presignedPut(t, up, body)

	obj, err := s.Verify(ctx, up.Key)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	verified := "chat/" + strings.TrimPrefix(up.Key, "chat/upload/")
	if want := (media.Object{Key: verified, Size: int64(len(body)), MIME: "image/jpeg", Kind: media.KindImage}); obj != want {
		t.Errorf("Verify = %+v, want %+v", obj, want)
	}
	if ok, err := s.Exists(ctx, up.Key); err != nil || ok {
		t.Errorf("the upload is still there after Verify: %v, %v", ok, err)
	}
	for _, key := range []string{up.Key, obj.Key} {
		if again, err := s.Verify(ctx, key); err != nil || again != obj {
			t.Errorf("Verify(%s) again = %+v, %v; want %+v", key, again, err, obj)
		}
	}

	url, expires, err := s.PresignGet(ctx, obj.Key)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	if !expires.After(time.Now()) {
		t.Errorf("PresignGet expiry %v is not in the future", expires)
	}
	resp, err := (&http.Client{}).Get(url)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("GET status %d, %d bytes, equal %v", resp.StatusCode, len(got), bytes.Equal(got, body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "image/jpeg" {
		t.Errorf("served Content-Type %q", ct)
	}
}

// A presigned URL stays valid after Verify; PUTting other bytes with it
// must not change the object messages refer to.
func TestVerifiedUploadCannotBeSwapped(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, nil)
	ctx := t.Context()
	body := jpegFile(t, 64, 48)
	up, err := s.PresignPut(ctx, 6, "image/jpeg", int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	presignedPut(t, up, body)
	obj, err := s.Verify(ctx, up.Key)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// Same length and signed type, other bytes: all the URL allows.
	swapped := bytes.Repeat([]byte("<html>"), len(body)/6+1)[:len(body)]
	presignedPut(t, up, swapped)
	if got, _ := readObject(t, s, obj.Key); !bytes.Equal(got, body) {
		t.Fatalf("the verified object changed after a second PUT with the upload's URL")
	}
	// A send retried with the upload's key still gets the verified object.
	again, err := s.Verify(ctx, up.Key)
	if err != nil || again != obj {
		t.Fatalf("Verify after the swap = %+v, %v; want %+v", again, err, obj)
	}
	if got, _ := readObject(t, s, again.Key); !bytes.Equal(got, body) {
		t.Fatal("Verify after the swap returned other bytes")
	}
}

func TestVerifyRejects(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, func(c *media.Config) { c.MaxImageBytes = 5000 })
	ctx := t.Context()
	png := pngFile(t, 12, 12)

	tests := []struct {
		name     string
		declared string
		size     int64 // declared at presign time
		body     []byte
		want     error
	}{
		{"not an image at all", "image/png", 40, []byte(strings.Repeat("not an image. ", 3)), media.ErrUnsupportedType},
		{"video instead of an image", "image/png", 700, mp4File("isom", 600, mvhd0(1, 1)), media.ErrTypeMismatch},
		// S3 refuses a body longer than the signed Content-Length; this one
		// is written past the URL, as a misbehaving store might.
		{"more bytes than the limit", "image/png", 100, append(pngFile(t, 8, 8), make([]byte, 6000)...), media.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, err := s.PresignPut(ctx, 3, tt.declared, tt.size)
			if err != nil {
				t.Fatalf("PresignPut: %v", err)
			}
			if int64(len(tt.body)) == tt.size {
				presignedPut(t, up, tt.body)
			} else if err := s.Put(ctx, up.Key, tt.body, tt.declared); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Verify(ctx, up.Key); !errors.Is(err, tt.want) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			for _, key := range []string{up.Key, "chat/" + strings.TrimPrefix(up.Key, "chat/upload/")} {
				if ok, err := s.Exists(ctx, key); err != nil || ok {
					t.Errorf("rejected object %s still exists: %v, %v", key, ok, err)
				}
			}
		})
	}

	t.Run("subtype mix-up within the kind is accepted", func(t *testing.T) {
		up, err := s.PresignPut(ctx, 3, "image/jpeg", int64(len(png)))
		if err != nil {
			t.Fatal(err)
		}
		presignedPut(t, up, png)
		obj, err := s.Verify(ctx, up.Key)
		if err != nil || obj.MIME != "image/png" || obj.Kind != media.KindImage {
			t.Fatalf("Verify = %+v, %v; want image/png", obj, err)
		}
	})

	t.Run("uploaded long after the URL expired", func(t *testing.T) {
		// A key issued two hours ago: its UUIDv7 says so.
		earlier := newStore(t, endpoint, func(c *media.Config) { c.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) } })
		up, err := earlier.PresignPut(ctx, 3, "image/png", int64(len(png)))
		if err != nil {
			t.Fatal(err)
		}
		presignedPut(t, up, png)
		if _, err := s.Verify(ctx, up.Key); !errors.Is(err, media.ErrExpired) {
			t.Fatalf("Verify: %v, want ErrExpired", err)
		}
		if ok, _ := s.Exists(ctx, up.Key); ok {
			t.Error("expired upload still exists")
		}
	})

	t.Run("a stored object that no longer passes is kept", func(t *testing.T) {
		// Written by the server and maybe referred to by earlier messages,
		// under limits that have since been tightened.
		key := media.Key(3, time.Now(), "png")
		if err := s.Put(ctx, key, append(pngFile(t, 8, 8), make([]byte, 6000)...), "image/png"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(ctx, key); !errors.Is(err, media.ErrTooLarge) {
			t.Fatalf("Verify: %v, want ErrTooLarge", err)
		}
		if ok, err := s.Exists(ctx, key); err != nil || !ok {
			t.Errorf("stored object %s deleted by Verify: %v, %v", key, ok, err)
		}
	})

	t.Run("thumbnail key", func(t *testing.T) {
		key := media.ThumbnailKey(media.Key(3, time.Now(), "png"))
		if _, err := s.Verify(ctx, key); !errors.Is(err, media.ErrInvalidKey) {
			t.Errorf("Verify(%s): %v, want ErrInvalidKey", key, err)
		}
	})
}

func TestPresignPutRefused(t *testing.T) {
	s := newStore(t, "http://127.0.0.1:1", func(c *media.Config) { c.MaxVideoBytes = 1000 })
	tests := []struct {
		name        string
		contentType string
		size        int64
		want        error
	}{
		{"text", "text/plain", 10, media.ErrUnsupportedType},
		{"svg", "image/svg+xml", 10, media.ErrUnsupportedType},
		{"malformed", "image/", 10, media.ErrUnsupportedType},
		{"zero size", "video/mp4", 0, media.ErrInvalidSize},
		{"negative size", "video/mp4", -5, media.ErrInvalidSize},
		{"over the limit", "video/quicktime", 1001, media.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.PresignPut(t.Context(), 1, tt.contentType, tt.size); !errors.Is(err, tt.want) {
				t.Errorf("PresignPut(%q, %d): %v, want %v", tt.contentType, tt.size, err, tt.want)
			}
		})
	}
	if _, err := s.PresignPut(t.Context(), 1, "video/quicktime", 1000); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if _, err := s.PresignPut(t.Context(), 0, "video/mp4", 10); err == nil {
		t.Error("user id 0 accepted")
	}
}

func TestPutGetExistsDelete(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, nil)
	ctx := t.Context()
	key := media.ThumbnailKey(media.Key(11, time.Now(), "mp4"))
	thumb := jpegFile(t, 32, 18)

	if err := s.Put(ctx, key, thumb, "image/jpeg"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if ok, err := s.Exists(ctx, key); err != nil || !ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	got, obj := readObject(t, s, key)
	if !bytes.Equal(got, thumb) || obj.MIME != "image/jpeg" || obj.Kind != media.KindImage || obj.Size != int64(len(thumb)) {
		t.Errorf("Get = %+v", obj)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if ok, err := s.Exists(ctx, key); err != nil || ok {
		t.Errorf("Exists after delete = %v, %v", ok, err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../etc/passwd", "chat/1/../../x", "avatars/1.png"} {
		if err := s.Put(ctx, bad, thumb, "image/jpeg"); !errors.Is(err, media.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", bad, err)
		}
		if _, _, err := s.PresignGet(ctx, bad); !errors.Is(err, media.ErrInvalidKey) {
			t.Errorf("PresignGet(%q): %v, want ErrInvalidKey", bad, err)
		}
	}
}

func TestRestartKeepsMedia(t *testing.T) {
	dir := t.TempDir()
	endpoint, stop := serveLocal(t, dir)
	body := jpegFile(t, 80, 60)
	obj, err := newStore(t, endpoint, nil).Upload(t.Context(), 8, bytes.NewReader(body), -1, "image/jpeg")
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	stop()

	endpoint, _ = serveLocal(t, dir)
	got, stored := readObject(t, newStore(t, endpoint, nil), obj.Key)
	if !bytes.Equal(got, body) || stored != obj {
		t.Fatalf("after restart: %+v, bytes equal %v", stored, bytes.Equal(got, body))
	}
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  media.Config
	}{
		{"no bucket", media.Config{}},
		{"negative limit", media.Config{Bucket: "b", MaxImageBytes: -1}},
		{"presign TTL over 7 days", media.Config{Bucket: "b", PresignTTL: 8 * 24 * time.Hour}},
		{"endpoint without scheme", media.Config{Bucket: "b", Endpoint: "127.0.0.1:9000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := media.New(t.Context(), tt.cfg, nil); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

func TestPublicEndpoint(t *testing.T) {
	s := newStore(t, "http://127.0.0.1:9", func(c *media.Config) { c.PublicEndpoint = "http://10.0.2.2:9000" })
	url, _, err := s.PresignGet(t.Context(), media.Key(1, time.Now(), "jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://10.0.2.2:9000/"+testBucket+"/chat/1/") {
		t.Errorf("presigned URL %q does not use the public endpoint", url)
	}
}
