package media_test

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/mediatest"
)

// TestUploadDoesNotBufferInMemory checks an upload streams through a
// temporary file: storing 6 MB allocates a small fraction of it, whatever
// the number of uploads in flight.
func TestUploadDoesNotBufferInMemory(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, nil)
	wav := mediatest.WAV(8000, 3<<20) // 6 MB of audio
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	obj, err := s.Upload(t.Context(), 5, bytes.NewReader(wav), -1, "audio/wav")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if obj.Size != int64(len(wav)) {
		t.Fatalf("stored %d bytes of %d", obj.Size, len(wav))
	}
	// The embedded S3 server runs in this process: its allocations count too.
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(wav))/4 {
		t.Errorf("uploading %d bytes allocated %d", len(wav), n)
	}
}

// TestUploadRefusesUnrenderableImages checks Upload and Verify refuse, with
// the reason, the images the thumbnailer could not decode.
func TestUploadRefusesUnrenderableImages(t *testing.T) {
	endpoint, _ := serveLocal(t, t.TempDir())
	s := newStore(t, endpoint, func(c *media.Config) { c.Images.MaxPixels = 100 * 100 })
	png, gif := pngFile(t, 40, 40), gifFile(t, 40, 40)
	tests := []struct {
		name string
		file []byte
		mime string
		want error
	}{
		{"png without its IEND chunk", png[:len(png)-12], "image/png", media.ErrCorrupt},
		{"png with its end cut off mid-data", png[:len(png)/2], "image/png", media.ErrCorrupt},
		{"gif without its trailer", gif[:len(gif)-1], "image/gif", media.ErrCorrupt},
		{"png over the configured pixel limit", pngFile(t, 101, 100), "image/png", media.ErrTooLarge},
		{"png header over 20000 a side", mediatest.PNGHeaderOnly(30000, 30000), "image/png", media.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if obj, err := s.Upload(t.Context(), 7, bytes.NewReader(tt.file), -1, ""); !errors.Is(err, tt.want) {
				t.Errorf("Upload = %+v, %v; want %v", obj, err, tt.want)
			}
			up, err := s.PresignPut(t.Context(), 7, tt.mime, int64(len(tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			presignedPut(t, up, tt.file)
			if obj, err := s.Verify(t.Context(), up.Key); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %+v, %v; want %v", obj, err, tt.want)
			}
			if ok, err := s.Exists(t.Context(), up.Key); err != nil || ok {
				t.Errorf("refused upload still stored: %v, %v", ok, err)
			}
		})
	}
	for _, f := range [][]byte{png, gif, jpegFile(t, 40, 40)} {
		if _, err := s.Upload(t.Context(), 7, bytes.NewReader(f), -1, ""); err != nil {
			t.Errorf("whole image refused: %v", err)
		}
	}
}
