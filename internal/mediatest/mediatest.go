// Package mediatest holds what the media, thumbnail and upload tests share:
// the embedded S3 server behind a real media store, and media files made by
// the standard encoders, or byte by byte where a header must lie (bombs,
// EXIF, WAV). It is imported by tests only.
package mediatest

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
	"testing"

	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/s3local"
)

// Bucket is the bucket Store creates.
const Bucket = "chat-media"

// Store runs the embedded S3 server on a loopback listener until the test
// ends and returns a media store using it through the real SDK client.
// edit, if not nil, adjusts the configuration first.
func Store(t testing.TB, edit func(*media.Config)) *media.Store {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	srv, err := s3local.New(t.TempDir(), s3local.Config{}, quiet)
	if err != nil {
		t.Fatalf("s3local.New: %v", err)
	}
	if err := srv.EnsureBucket(context.Background(), Bucket); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg := media.Config{Bucket: Bucket, Endpoint: hs.URL, PathStyle: true, Local: true, TempDir: t.TempDir()}
	if edit != nil {
		edit(&cfg)
	}
	store, err := media.New(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatalf("media.New: %v", err)
	}
	return store
}

// The quadrant colours.
var (
	Red   = color.NRGBA{255, 0, 0, 255}
	Green = color.NRGBA{0, 255, 0, 255}
	Blue  = color.NRGBA{0, 0, 255, 255}
	White = color.NRGBA{255, 255, 255, 255}
)

// Quadrants is w×h with red, green, blue and white quarters (top left, top
// right, bottom left, bottom right), so every flip and turn is visible.
func Quadrants(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, [2][2]color.NRGBA{{Red, Green}, {Blue, White}}[y*2/h][x*2/w])
		}
	}
	return img
}

// JPEG encodes img at the given quality.
func JPEG(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// PNG encodes img.
func PNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// WithOrientation splices an EXIF APP1 segment carrying the Orientation tag
// (after a decoy entry) right after the JPEG's SOI marker, in the given
// TIFF byte order.
func WithOrientation(jpg []byte, orientation uint16, bo binary.AppendByteOrder) []byte {
	var tiff []byte
	if bo == binary.BigEndian {
		tiff = append(tiff, "MM"...)
	} else {
		tiff = append(tiff, "II"...)
	}
	tiff = bo.AppendUint16(tiff, 42)
	tiff = bo.AppendUint32(tiff, 8) // IFD0 right after the header
	tiff = bo.AppendUint16(tiff, 2) // two entries: a decoy, then Orientation
	tiff = bo.AppendUint16(tiff, 0x010F)
	tiff = bo.AppendUint16(tiff, 2) // ASCII
	tiff = bo.AppendUint32(tiff, 4)
	tiff = append(tiff, "Go\x00\x00"...)
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

// PNGHeaderOnly is a PNG whose IHDR (with a correct CRC) claims w×h pixels
// over a few bytes of data: a decompression bomb as it looks from outside.
func PNGHeaderOnly(w, h uint32) []byte {
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

// WAV is 16-bit mono PCM silence lasting the given number of samples.
func WAV(sampleRate, samples int) []byte {
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

// Photo is a w×h JPEG with some texture, so the decoder has real work;
// low quality keeps it quick to make.
func Photo(t testing.TB, w, h int) []byte {
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
	return JPEG(t, img, 50)
}
