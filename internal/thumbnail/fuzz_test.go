package thumbnail_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/color"
	"image/jpeg"
	"testing"

	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/internal/thumbnail"
)

// FuzzImage feeds arbitrary files to the image header checks, the decoders
// behind them and the EXIF orientation reader, which all see uploads.
// Properties: no panic; a refusal is ErrBadImage or ErrTooLarge (dropped,
// never retried); a thumbnail is a JPEG of the size reported, within the
// requested side.
func FuzzImage(f *testing.F) {
	jpg := mediatest.JPEG(f, mediatest.Quadrants(16, 8), 80)
	f.Add(jpg)
	f.Add(mediatest.WithOrientation(jpg, 6, binary.BigEndian))
	f.Add(mediatest.WithOrientation(jpg, 8, binary.LittleEndian))
	f.Add(mediatest.PNG(f, mediatest.Quadrants(8, 8)))
	f.Add(mediatest.PNGHeaderOnly(100000, 100000))
	f.Add(solidWebP(8, 8, color.NRGBA{R: 255, A: 255}))
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	const side = 32
	limits := thumbnail.Limits{MaxPixels: 1 << 20, MaxDimension: 2048, MaxBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, b []byte) {
		thumb, w, h, err := thumbnail.Image(t.Context(), bytes.NewReader(b), side, limits)
		if err != nil {
			if !errors.Is(err, thumbnail.ErrBadImage) && !errors.Is(err, thumbnail.ErrTooLarge) {
				t.Fatalf("refusal is neither ErrBadImage nor ErrTooLarge: %v", err)
			}
			return
		}
		if w <= 0 || h <= 0 || w > side || h > side {
			t.Fatalf("thumbnail %dx%d, want within %d", w, h, side)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(thumb))
		if err != nil || cfg.Width != w || cfg.Height != h {
			t.Fatalf("thumbnail is %dx%d (%v), reported %dx%d", cfg.Width, cfg.Height, err, w, h)
		}
	})
}
