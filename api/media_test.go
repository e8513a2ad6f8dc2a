package api_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/contracttest"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// Names in this file start with "media" to stay clear of other tests of
// the package.

var mediaQuiet = slog.New(slog.DiscardHandler)

type mediaHarness struct {
	t      *testing.T
	store  *media.Store
	bus    events.Publisher
	url    string
	secret []byte
}

// newMediaHarness serves the real REST API with the media routes over real
// PostgreSQL and the embedded S3 server, on loopback listeners.
func newMediaHarness(t *testing.T, mediaCfg func(*media.Config), limits chat.Limits) *mediaHarness {
	t.Helper()
	_, pool := dbtest.New(t)
	store := mediatest.Store(t, mediaCfg)
	bus := pipelinetest.SyncPersister(pool, mediaQuiet)
	svc := chat.NewService(pool, bus, store, limits, mediaQuiet)
	secret := []byte("media-test-secret-with-enough-bytes")
	verifier, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	rest := api.NewREST(svc, verifier, mediaQuiet)
	srv := httptest.NewServer(rest)
	t.Cleanup(srv.Close)
	return &mediaHarness{t: t, store: store, bus: bus, url: srv.URL, secret: secret}
}

type mediaResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r mediaResponse) errorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a request as user (0: anonymous) without following redirects.
func (h *mediaHarness) do(user int64, method, path, contentType string, body io.Reader) mediaResponse {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if user != 0 {
		tok, err := auth.Issue(h.secret, user, time.Hour, time.Now())
		if err != nil {
			h.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	// Keep what was sent, however it streams, to check it with the answer
	// (the transport may still be sending when an early refusal arrives).
	var sent lockedBuffer
	if req.Body != nil {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(req.Body, &sent), req.Body}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := contracttest.Check(req, sent.Bytes(), resp, b); err != nil {
		h.t.Fatal(err)
	}
	return mediaResponse{resp.StatusCode, resp.Header, b}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (h *mediaHarness) doJSON(user int64, method, path string, v any) mediaResponse {
	h.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(user, method, path, "application/json", bytes.NewReader(b))
}

// upload posts file as the multipart field "file" with the given file name
// and part Content-Type (none if empty).
func (h *mediaHarness) upload(user int64, name, contentType string, file []byte) mediaResponse {
	h.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("caption", "ignored") // other fields may come first
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Disposition", `form-data; name="file"; filename="`+name+`"`)
	if contentType != "" {
		hdr.Set("Content-Type", contentType)
	}
	w, err := mw.CreatePart(hdr)
	if err != nil {
		h.t.Fatal(err)
	}
	w.Write(file)
	mw.Close()
	return h.do(user, "POST", api.Prefix+"/upload", mw.FormDataContentType(), &body)
}

func mediaDecode[T any](t *testing.T, r mediaResponse, want int) T {
	t.Helper()
	var v T
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%v in %s", err, r.body)
	}
	return v
}

// mediaFetch GETs a presigned URL with a plain HTTP client, as the app would.
func mediaFetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET presigned URL: %d %v: %s", resp.StatusCode, err, b)
	}
	return b
}

// mediaNoise is a w×h image of random pixels: it compresses badly, so its
// file size follows its dimensions.
func mediaNoise(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(uint64(w), uint64(h)))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.UintN(256))
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	return img
}

func mediaJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, mediaNoise(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mediaPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w {
		img.SetNRGBA(i, i%h, color.NRGBA{200, 10, 10, 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMediaUploadRoundTrip(t *testing.T) {
	h := newMediaHarness(t, nil, chat.DefaultLimits())
	file := mediaJPEG(t, 300, 200)
	before := time.Now()
	up := mediaDecode[chat.UploadView](t, h.upload(1, "beach.jpg", "image/jpeg", file), http.StatusOK)

	if up.FileSize != int64(len(file)) || up.MIMEType != "image/jpeg" || up.Kind != "image" {
		t.Errorf("upload answered %+v", up)
	}
	if owner, err := media.OwnerOf(up.Key); err != nil || owner != 1 || !strings.HasSuffix(up.Key, ".jpg") {
		t.Errorf("key %q: owner %d, err %v", up.Key, owner, err)
	}
	if !up.ExpiresAt.After(before) || !strings.Contains(up.URL, up.Key) {
		t.Errorf("url %q expires %v", up.URL, up.ExpiresAt)
	}
	if got := mediaFetch(t, up.URL); !bytes.Equal(got, file) {
		t.Errorf("the URL serves %d bytes that differ from the %d uploaded", len(got), len(file))
	}
}

// The type comes from the bytes: a PNG named .jpg and labelled image/jpeg
// is stored and described as a PNG.
func TestMediaUploadSpoofedExtension(t *testing.T) {
	h := newMediaHarness(t, nil, chat.DefaultLimits())
	file := mediaPNG(t, 40, 30)
	up := mediaDecode[chat.UploadView](t, h.upload(1, "photo.jpg", "image/jpeg", file), http.StatusOK)
	if up.MIMEType != "image/png" || !strings.HasSuffix(up.Key, ".png") {
		t.Errorf("stored as %s under %s, want image/png", up.MIMEType, up.Key)
	}
	if got := mediaFetch(t, up.URL); !bytes.Equal(got, file) {
		t.Error("bytes differ")
	}
}

func TestMediaUploadRefusals(t *testing.T) {
	h := newMediaHarness(t, func(c *media.Config) {
		c.MaxImageBytes, c.MaxVideoBytes, c.MaxAudioBytes = 20_000, 60_000, 30_000
	}, chat.DefaultLimits())
	big := mediaJPEG(t, 200, 200) // far over 20 kB of noise
	if len(big) <= 20_000 {
		t.Fatalf("fixture is only %d bytes", len(big))
	}

	t.Run("text named x.jpg labelled image/jpeg", func(t *testing.T) {
		r := h.upload(1, "x.jpg", "image/jpeg", []byte("just some text, honestly\n"))
		if r.status != http.StatusUnsupportedMediaType || r.errorCode() != "unsupported_media" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("image label on a PNG with a mismatching kind", func(t *testing.T) {
		r := h.upload(1, "x.mp4", "video/mp4", mediaPNG(t, 10, 10))
		if r.status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("image over its kind's limit", func(t *testing.T) {
		r := h.upload(1, "big.jpg", "", big)
		if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "payload_too_large" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("body over the largest limit, streamed without a length", func(t *testing.T) {
		// A huge field before the file: the handler must stop reading at
		// the body limit, not only at the file's.
		small := mediaPNG(t, 4, 4)
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			// Writes fail once the server has answered and the client
			// stopped reading the pipe; that ends the body early.
			write := func() error {
				fw, err := mw.CreateFormFile("padding", "padding.bin")
				for i := 0; i < 40 && err == nil; i++ {
					_, err = fw.Write(make([]byte, 10_000))
				}
				if err != nil {
					return err
				}
				if fw, err = mw.CreateFormFile("file", "small.png"); err != nil {
					return err
				}
				if _, err := fw.Write(small); err != nil {
					return err
				}
				return mw.Close()
			}
			pw.CloseWithError(write())
		}()
		r := h.do(1, "POST", api.Prefix+"/upload", mw.FormDataContentType(), pr)
		pr.Close()
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "request body exceeds") {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("declared length over the largest limit", func(t *testing.T) {
		req, _ := http.NewRequest("POST", h.url+api.Prefix+"/upload", bytes.NewReader(make([]byte, 200_000)))
		tok, _ := auth.Issue(h.secret, 1, time.Hour, time.Now())
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("not multipart", func(t *testing.T) {
		r := h.doJSON(1, "POST", api.Prefix+"/upload", map[string]string{"file": "x"})
		if r.status != http.StatusBadRequest {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("no file field", func(t *testing.T) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		_ = mw.WriteField("photo", "x")
		mw.Close()
		r := h.do(1, "POST", api.Prefix+"/upload", mw.FormDataContentType(), &body)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `\"file\"`) {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		if r := h.upload(1, "x.jpg", "", nil); r.status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		if r := h.upload(0, "x.png", "", mediaPNG(t, 4, 4)); r.status != http.StatusUnauthorized {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

func TestMediaUploadRateLimited(t *testing.T) {
	limits := chat.DefaultLimits()
	limits.Rates = chat.Rates{}
	limits.Rates[chat.WriteUpload] = chat.Rate{PerSecond: 0.001, Burst: 2}
	h := newMediaHarness(t, nil, limits)
	file := mediaPNG(t, 8, 8)
	for i := range 2 {
		if r := h.upload(1, "a.png", "", file); r.status != http.StatusOK {
			t.Fatalf("upload %d: status %d: %s", i, r.status, r.body)
		}
	}
	if r := h.upload(1, "a.png", "", file); r.status != http.StatusTooManyRequests {
		t.Fatalf("third upload: status %d: %s", r.status, r.body)
	}
	if r := h.doJSON(1, "POST", api.Prefix+"/uploads", map[string]any{"content_type": "image/png", "size": 10}); r.status != http.StatusTooManyRequests {
		t.Fatalf("presign after the burst: status %d: %s", r.status, r.body)
	}
	if r := h.upload(2, "a.png", "", file); r.status != http.StatusOK {
		t.Fatalf("another user: status %d: %s", r.status, r.body)
	}
}

// presignedPut asks for a presigned upload and performs it as a client would.
func (h *mediaHarness) presignedPut(user int64, contentType string, file []byte) chat.PresignedUploadView {
	h.t.Helper()
	p := mediaDecode[chat.PresignedUploadView](h.t, h.doJSON(user, "POST", api.Prefix+"/uploads",
		map[string]any{"content_type": contentType, "size": len(file)}), http.StatusOK)
	h.putTo(p, file)
	return p
}

// putTo PUTs file to a presigned upload's URL, as a client would.
func (h *mediaHarness) putTo(p chat.PresignedUploadView, file []byte) {
	h.t.Helper()
	req, err := http.NewRequest(p.Method, p.UploadURL, bytes.NewReader(file))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range p.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("PUT to the presigned URL: %d %s", resp.StatusCode, b)
	}
}

func (h *mediaHarness) send(user int64, body map[string]any) mediaResponse {
	h.t.Helper()
	return h.doJSON(user, "POST", api.Prefix+"/messages", body)
}

func TestMediaPresignedUpload(t *testing.T) {
	h := newMediaHarness(t, nil, chat.DefaultLimits())
	file := mediaJPEG(t, 120, 80)
	p := h.presignedPut(1, "image/jpeg", file)
	if p.Method != http.MethodPut || p.Size != int64(len(file)) || p.MaxSize != media.DefaultMaxImageBytes ||
		p.MIMEType != "image/jpeg" || p.Kind != "image" || !p.ExpiresAt.After(time.Now()) {
		t.Errorf("presign answered %+v", p)
	}
	if owner, _ := media.OwnerOf(p.Key); owner != 1 {
		t.Errorf("key %s is not user 1's", p.Key)
	}
	rc, _, err := h.store.Get(t.Context(), p.Key)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(stored, file) {
		t.Fatalf("stored %d bytes that differ from the %d sent", len(stored), len(file))
	}

	msg := mediaDecode[chat.MessageView](t, h.send(1, map[string]any{"recipient_id": 2, "content_type": "image", "media_key": p.Key}), http.StatusOK)
	// The message refers to the verified copy, which no URL can overwrite.
	verified := "chat/" + strings.TrimPrefix(p.Key, "chat/upload/")
	if msg.MediaKey == nil || *msg.MediaKey != verified || msg.MediaURL == nil {
		t.Fatalf("message %+v, want media_key %s", msg, verified)
	}
	if got := mediaFetch(t, *msg.MediaURL); !bytes.Equal(got, file) {
		t.Error("media_url serves other bytes")
	}

	t.Run("the upload's URL used again", func(t *testing.T) {
		// Still valid, and S3 lets it overwrite what it names.
		h.putTo(p, bytes.Repeat([]byte{'<'}, len(file)))
		if got := mediaFetch(t, *msg.MediaURL); !bytes.Equal(got, file) {
			t.Error("media_url serves the bytes PUT after the send")
		}
		r := h.do(2, "GET", api.Prefix+"/messages/"+msg.ID+"/media", "", nil)
		if r.status != http.StatusFound {
			t.Fatalf("media of the message: status %d: %s", r.status, r.body)
		}
		if got := mediaFetch(t, r.header.Get("Location")); !bytes.Equal(got, file) {
			t.Error("the message's media is the bytes PUT after the send")
		}
	})

	t.Run("someone else's key", func(t *testing.T) {
		r := h.send(3, map[string]any{"recipient_id": 2, "content_type": "image", "media_key": p.Key})
		if r.status != http.StatusForbidden {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("a key never uploaded", func(t *testing.T) {
		key := media.Key(1, time.Now(), "jpg")
		r := h.send(1, map[string]any{"recipient_id": 2, "content_type": "image", "media_key": key})
		if r.status < 400 || r.status >= 500 || !strings.Contains(string(r.body), "does not name an uploaded object") {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("text uploaded as an image", func(t *testing.T) {
		fake := h.presignedPut(1, "image/jpeg", []byte("this is not a photo at all\n"))
		r := h.send(1, map[string]any{"recipient_id": 2, "content_type": "image", "media_key": fake.Key})
		if r.status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if ok, err := h.store.Exists(t.Context(), fake.Key); err != nil || ok {
			t.Errorf("the refused object is still stored (%v, %v)", ok, err)
		}
	})
	t.Run("an image sent as audio", func(t *testing.T) {
		r := h.send(1, map[string]any{"recipient_id": 2, "content_type": "audio", "media_key": p.Key})
		if r.status != http.StatusUnprocessableEntity {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

func TestMediaPresignRefusals(t *testing.T) {
	h := newMediaHarness(t, func(c *media.Config) { c.MaxVideoBytes = 1000 }, chat.DefaultLimits())
	tests := []struct {
		name string
		body any
		want int
	}{
		{"type not allowed", map[string]any{"content_type": "text/plain", "size": 10}, http.StatusUnsupportedMediaType},
		{"svg is not an allowed image", map[string]any{"content_type": "image/svg+xml", "size": 10}, http.StatusUnsupportedMediaType},
		{"over the kind's limit", map[string]any{"content_type": "video/mp4", "size": 1001}, http.StatusRequestEntityTooLarge},
		{"zero size", map[string]any{"content_type": "video/mp4", "size": 0}, http.StatusBadRequest},
		{"negative size", map[string]any{"content_type": "video/mp4", "size": -5}, http.StatusBadRequest},
		{"no type", map[string]any{"size": 10}, http.StatusBadRequest},
		{"unknown field", map[string]any{"content_type": "video/mp4", "size": 10, "name": "x"}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := h.doJSON(1, "POST", api.Prefix+"/uploads", tt.body); r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
		})
	}
}

func TestMediaOfMessage(t *testing.T) {
	h := newMediaHarness(t, nil, chat.DefaultLimits())
	file := mediaJPEG(t, 64, 48)
	up := mediaDecode[chat.UploadView](t, h.upload(1, "a.jpg", "", file), http.StatusOK)
	// The seed's flow: the upload's url goes back as the message's media_url.
	msg := mediaDecode[chat.MessageView](t, h.send(1, map[string]any{"recipient_id": 2, "content_type": "image", "media_url": up.URL}), http.StatusOK)
	text := mediaDecode[chat.MessageView](t, h.send(1, map[string]any{"recipient_id": 2, "text_content": "hi"}), http.StatusOK)
	path := api.Prefix + "/messages/" + msg.ID + "/media"

	for _, user := range []int64{1, 2} {
		r := h.do(user, "GET", path, "", nil)
		if r.status != http.StatusFound {
			t.Fatalf("participant %d: status %d: %s", user, r.status, r.body)
		}
		if got := mediaFetch(t, r.header.Get("Location")); !bytes.Equal(got, file) {
			t.Errorf("participant %d: the redirect serves other bytes", user)
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("Cache-Control %q", cc)
		}
	}
	if r := h.do(3, "GET", path, "", nil); r.status != http.StatusForbidden || r.header.Get("Location") != "" {
		t.Errorf("non-participant: status %d: %s", r.status, r.body)
	}
	if r := h.do(0, "GET", path, "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("anonymous: status %d", r.status)
	}

	// No thumbnail yet, then one as the thumbnailer would leave it.
	if r := h.do(2, "GET", path+"?thumbnail=true", "", nil); r.status != http.StatusNotFound {
		t.Errorf("thumbnail before it exists: status %d: %s", r.status, r.body)
	}
	thumb := mediaJPEG(t, 32, 24)
	thumbKey := media.ThumbnailKey(up.Key)
	if err := h.store.Put(t.Context(), thumbKey, thumb, "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	ready, err := events.New("0190b6f4-8a3f-7000-8000-0000000000aa", time.Now(), 1, msg.ConversationID, events.ThumbnailReadyV1{
		MessageID: msg.ID, ConversationID: msg.ConversationID, SenderID: 1, RecipientID: 2,
		MediaKey: up.Key, ThumbnailKey: thumbKey, Width: 32, Height: 24})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.bus.Publish(t.Context(), ready); err != nil {
		t.Fatal(err)
	}
	r := h.do(2, "GET", path+"?thumbnail=true", "", nil)
	if r.status != http.StatusFound {
		t.Fatalf("thumbnail: status %d: %s", r.status, r.body)
	}
	if got := mediaFetch(t, r.header.Get("Location")); !bytes.Equal(got, thumb) {
		t.Error("the thumbnail redirect serves other bytes")
	}

	tests := []struct {
		name string
		path string
		want int
	}{
		{"a text message has no media", api.Prefix + "/messages/" + text.ID + "/media", http.StatusNotFound},
		{"unknown message", api.Prefix + "/messages/0190b6f4-8a3f-7000-8000-00000000ffff/media", http.StatusNotFound},
		{"not a UUID", api.Prefix + "/messages/42/media", http.StatusBadRequest},
		{"bad thumbnail flag", path + "?thumbnail=maybe", http.StatusBadRequest},
		{"unknown parameter", path + "?size=big", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := h.do(1, "GET", tt.path, "", nil); r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
		})
	}

	t.Run("object gone", func(t *testing.T) {
		if err := h.store.Delete(t.Context(), up.Key); err != nil {
			t.Fatal(err)
		}
		if r := h.do(1, "GET", path, "", nil); r.status != http.StatusNotFound {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

// TestMediaWithoutStore checks a server deployed without media answers its
// media routes with a 503 that says what to configure, not a 404, and
// without Retry-After: retrying does not help.
func TestMediaWithoutStore(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, api.Prefix + "/upload", "--x--"},
		{http.MethodPost, api.Prefix + "/uploads", map[string]any{"content_type": "video/mp4", "size": 10}},
		{http.MethodGet, api.Prefix + "/messages/0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b/media", nil},
	} {
		resp := e.Do(t, 1, c.method, c.path, c.body)
		var b pipelinetest.ErrorBody
		resp.JSON(t, &b)
		if resp.Status != http.StatusServiceUnavailable || b.Error.Code != string(chat.CodeNotConfigured) ||
			!strings.Contains(b.Error.Message, "CHAT_S3_BUCKET") || resp.Header.Get("Retry-After") != "" {
			t.Errorf("%s %s: %d %s (Retry-After %q), want 503 not_configured naming CHAT_S3_BUCKET without Retry-After",
				c.method, c.path, resp.Status, resp.Body, resp.Header.Get("Retry-After"))
		}
	}
}
