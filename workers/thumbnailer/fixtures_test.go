package thumbnailer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/s3local"
)

// Fixtures are real files made by the standard encoders, or byte by byte
// where a header must lie (bombs, EXIF, WAV).

const testBucket = "chat-media"

// serveS3 runs the embedded S3 server on a loopback listener until the test
// ends and returns a media store using it through the real SDK client.
//
// httptest rather than Server.Serve: on shutdown Serve waits 5 s for
// connections the SDK opened but never used, which would only slow tests.
func serveS3(t testing.TB, edit func(*media.Config)) *media.Store {
	t.Helper()
	srv, err := s3local.New(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("s3local.New: %v", err)
	}
	if err := srv.EnsureBucket(context.Background(), testBucket); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg := media.Config{
		Bucket: testBucket, Endpoint: hs.URL,
		PathStyle: true, Local: true, TempDir: t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	store, err := media.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("media.New: %v", err)
	}
	return store
}

// upload stores a file for user through the store's checked upload path.
func upload(t testing.TB, store *media.Store, user int64, b []byte) media.Object {
	t.Helper()
	obj, err := store.Upload(context.Background(), user, bytes.NewReader(b), int64(len(b)), "")
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return obj
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

var (
	red   = color.NRGBA{255, 0, 0, 255}
	green = color.NRGBA{0, 255, 0, 255}
	blue  = color.NRGBA{0, 0, 255, 255}
	white = color.NRGBA{255, 255, 255, 255}
)

// quadrants is w×h with red, green, blue and white quarters (top left, top
// right, bottom left, bottom right), so a turn is visible.
func quadrants(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, [2][2]color.NRGBA{{red, green}, {blue, white}}[y*2/h][x*2/w])
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withOrientation splices an EXIF APP1 segment carrying the Orientation tag
// right after the JPEG's SOI marker.
func withOrientation(jpg []byte, orientation uint16) []byte {
	bo := binary.BigEndian
	tiff := []byte("MM")
	tiff = bo.AppendUint16(tiff, 42)
	tiff = bo.AppendUint32(tiff, 8) // IFD0 right after the header
	tiff = bo.AppendUint16(tiff, 1) // one entry
	tiff = bo.AppendUint16(tiff, 0x0112)
	tiff = bo.AppendUint16(tiff, 3) // SHORT
	tiff = bo.AppendUint32(tiff, 1)
	tiff = bo.AppendUint16(tiff, orientation)
	tiff = append(tiff, 0, 0)
	tiff = bo.AppendUint32(tiff, 0) // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1}
	app1 = binary.BigEndian.AppendUint16(app1, uint16(2+len(seg)))
	app1 = append(app1, seg...)
	out := append([]byte{}, jpg[:2]...)
	out = append(out, app1...)
	return append(out, jpg[2:]...)
}

// pngBomb is a valid PNG header (correct CRCs) claiming w×h pixels over a
// few bytes of data: what a decompression bomb looks like from outside.
func pngBomb(w, h uint32) []byte {
	chunk := func(typ string, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		body := append([]byte(typ), data...)
		b = append(b, body...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(body))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0) // 8-bit RGB, no interlace
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, chunk("IHDR", ihdr)...)
	out = append(out, chunk("IDAT", []byte{0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	return append(out, chunk("IEND", nil)...)
}

// photoJPEG is a w×h JPEG with some texture, so the decoder has real work.
func photoJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	rng := rand.New(rand.NewPCG(1, 2))
	for y := range h {
		row := img.Y[y*img.YStride:]
		for x := range w {
			row[x] = uint8(x/16+y/16) ^ uint8(rng.IntN(16))
		}
	}
	for i := range img.Cb {
		img.Cb[i] = uint8(i / 7)
		img.Cr[i] = uint8(255 - i/11)
	}
	return encodeJPEG(t, img, 50)
}

// wavFile is 16-bit mono PCM silence lasting the given number of samples.
func wavFile(sampleRate, samples int) []byte {
	data := samples * 2
	b := make([]byte, 0, 44+data)
	le32 := func(v int) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	le16 := func(v int) { b = binary.LittleEndian.AppendUint16(b, uint16(v)) }
	b = append(b, "RIFF"...)
	le32(36 + data)
	b = append(b, "WAVEfmt "...)
	le32(16)
	le16(1) // PCM
	le16(1) // mono
	le32(sampleRate)
	le32(sampleRate * 2) // byte rate
	le16(2)              // block align
	le16(16)             // bits per sample
	b = append(b, "data"...)
	le32(data)
	return append(b, make([]byte, data)...)
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
