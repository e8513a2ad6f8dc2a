package thumbnail_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"math/rand/v2"
	"testing"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/internal/thumbnail"
)

// Fixtures are real files made by the standard encoders, or byte by byte
// from the format specifications where no encoder exists (WebP) or where a
// header must lie (bombs).

// solidWebP is a lossless WebP of one colour. Each of its five prefix codes
// is a "simple code" with a single symbol, so pixels take no bits at all.
func solidWebP(w, h int, c color.NRGBA) []byte {
	var bits bitWriter
	bits.write(0x2F, 8) // VP8L signature
	bits.write(uint64(w-1), 14)
	bits.write(uint64(h-1), 14)
	bits.write(1, 1) // alpha is used
	bits.write(0, 3) // version
	bits.write(0, 1) // no transform
	bits.write(0, 1) // no colour cache
	bits.write(0, 1) // no meta prefix codes
	// Green, mediatest.Red, mediatest.Blue, alpha, then the distance code.
	for _, sym := range []uint8{c.G, c.R, c.B, c.A, 0} {
		bits.write(1, 1) // simple code
		bits.write(0, 1) // one symbol
		bits.write(1, 1) // of 8 bits
		bits.write(uint64(sym), 8)
	}
	data := bits.bytes()
	if len(data)%2 == 1 {
		data = append(data, 0) // RIFF chunks are padded to even length
	}
	out := []byte("RIFF")
	out = binary.LittleEndian.AppendUint32(out, uint32(4+8+len(data)))
	out = append(out, "WEBPVP8L"...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(bits.buf)))
	return append(out, data...)
}

type bitWriter struct {
	buf []byte
	acc uint64
	n   uint
}

// write appends the low n bits of v, least significant bit first.
func (w *bitWriter) write(v uint64, n uint) {
	w.acc |= v << w.n
	w.n += n
	for w.n >= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
}

func (w *bitWriter) bytes() []byte {
	if w.n > 0 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc, w.n = 0, 0
	}
	return w.buf
}

func decodeThumb(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("thumbnail is not a JPEG: %v", err)
	}
	return img
}

func near(a color.Color, b color.NRGBA) bool {
	r, g, bl, _ := a.RGBA()
	d := func(x uint32, y uint8) bool { return int(x>>8)-int(y) < 60 && int(y)-int(x>>8) < 60 }
	return d(r, b.R) && d(g, b.G) && d(bl, b.B)
}

func TestImageLargeJPEG(t *testing.T) {
	src := mediatest.Photo(t, 4000, 3000)
	thumb, w, h, err := thumbnail.Image(t.Context(), bytes.NewReader(src), 0, thumbnail.Limits{})
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if w != 320 || h != 240 {
		t.Errorf("size %dx%d, want 320x240", w, h)
	}
	if b := decodeThumb(t, thumb).Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("JPEG is %v, reported %dx%d", b, w, h)
	}
	if len(thumb) > 64<<10 {
		t.Errorf("thumbnail is %d bytes", len(thumb))
	}
}

func TestImageFormats(t *testing.T) {
	alpha := image.NewNRGBA(image.Rect(0, 0, 40, 20))
	for y := range 20 {
		for x := range 40 {
			if x >= 20 {
				alpha.SetNRGBA(x, y, mediatest.Red) // left half stays fully transparent
			}
		}
	}
	var gifBuf bytes.Buffer
	if err := gif.Encode(&gifBuf, mediatest.Quadrants(50, 30), nil); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		src     []byte
		maxSide int
		wantW   int
		wantH   int
		// samples: points as fractions of the thumbnail, and their colour
		at   [][2]float64
		want []color.NRGBA
	}{
		{"jpeg landscape", mediatest.JPEG(t, mediatest.Quadrants(400, 200), 90), 100, 100, 50,
			[][2]float64{{.25, .25}, {.75, .75}}, []color.NRGBA{mediatest.Red, mediatest.White}},
		{"jpeg portrait", mediatest.JPEG(t, mediatest.Quadrants(150, 600), 90), 0, 80, 320, nil, nil},
		{"jpeg smaller than maxSide keeps its size", mediatest.JPEG(t, mediatest.Quadrants(60, 30), 90), 320, 60, 30, nil, nil},
		{"png with alpha goes on mediatest.White", mediatest.PNG(t, alpha), 0, 40, 20,
			[][2]float64{{.2, .5}, {.8, .5}}, []color.NRGBA{mediatest.White, mediatest.Red}},
		{"gif", gifBuf.Bytes(), 10, 10, 6, nil, nil},
		{"webp lossless", solidWebP(64, 48, mediatest.Blue), 32, 32, 24,
			[][2]float64{{.5, .5}}, []color.NRGBA{mediatest.Blue}},
		{"one pixel", mediatest.PNG(t, mediatest.Quadrants(1, 1)), 0, 1, 1, nil, nil},
		{"extreme aspect ratio", mediatest.PNG(t, mediatest.Quadrants(10000, 2)), 320, 320, 1, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			thumb, w, h, err := thumbnail.Image(t.Context(), bytes.NewReader(tt.src), tt.maxSide, thumbnail.Limits{})
			if err != nil {
				t.Fatalf("Image: %v", err)
			}
			if w != tt.wantW || h != tt.wantH {
				t.Errorf("size %dx%d, want %dx%d", w, h, tt.wantW, tt.wantH)
			}
			img := decodeThumb(t, thumb)
			for i, p := range tt.at {
				x, y := int(p[0]*float64(w)), int(p[1]*float64(h))
				if c := img.At(x, y); !near(c, tt.want[i]) {
					t.Errorf("pixel (%d,%d) = %v, want about %v", x, y, c, tt.want[i])
				}
			}
		})
	}
}

func TestImageEXIFOrientation(t *testing.T) {
	src := mediatest.JPEG(t, mediatest.Quadrants(80, 40), 95)
	// Expected colours of the upright result's quarters: TL, TR, BL, BR.
	tests := []struct {
		orientation uint16
		wantW       int
		wantH       int
		want        [4]color.NRGBA
	}{
		{1, 80, 40, [4]color.NRGBA{mediatest.Red, mediatest.Green, mediatest.Blue, mediatest.White}},
		{2, 80, 40, [4]color.NRGBA{mediatest.Green, mediatest.Red, mediatest.White, mediatest.Blue}},
		{3, 80, 40, [4]color.NRGBA{mediatest.White, mediatest.Blue, mediatest.Green, mediatest.Red}},
		{4, 80, 40, [4]color.NRGBA{mediatest.Blue, mediatest.White, mediatest.Red, mediatest.Green}},
		{5, 40, 80, [4]color.NRGBA{mediatest.Red, mediatest.Blue, mediatest.Green, mediatest.White}},
		{6, 40, 80, [4]color.NRGBA{mediatest.Blue, mediatest.Red, mediatest.White, mediatest.Green}},
		{7, 40, 80, [4]color.NRGBA{mediatest.White, mediatest.Green, mediatest.Blue, mediatest.Red}},
		{8, 40, 80, [4]color.NRGBA{mediatest.Green, mediatest.White, mediatest.Red, mediatest.Blue}},
		{9, 80, 40, [4]color.NRGBA{mediatest.Red, mediatest.Green, mediatest.Blue, mediatest.White}}, // invalid: ignored
	}
	for _, tt := range tests {
		for _, bo := range []binary.AppendByteOrder{binary.BigEndian, binary.LittleEndian} {
			t.Run(bo.String()+"/"+string(rune('0'+tt.orientation)), func(t *testing.T) {
				thumb, w, h, err := thumbnail.Image(t.Context(), bytes.NewReader(mediatest.WithOrientation(src, tt.orientation, bo)), 320, thumbnail.Limits{})
				if err != nil {
					t.Fatalf("Image: %v", err)
				}
				if w != tt.wantW || h != tt.wantH {
					t.Fatalf("size %dx%d, want %dx%d", w, h, tt.wantW, tt.wantH)
				}
				img := decodeThumb(t, thumb)
				pts := [4]image.Point{{w / 4, h / 4}, {3 * w / 4, h / 4}, {w / 4, 3 * h / 4}, {3 * w / 4, 3 * h / 4}}
				for i, p := range pts {
					if c := img.At(p.X, p.Y); !near(c, tt.want[i]) {
						t.Errorf("quarter %d at %v = %v, want about %v", i, p, c, tt.want[i])
					}
				}
			})
		}
	}
}

func TestImageRefuses(t *testing.T) {
	jpg := mediatest.JPEG(t, mediatest.Quadrants(64, 64), 80)
	png := mediatest.PNG(t, mediatest.Quadrants(64, 64))
	corruptPNG := append([]byte{}, png...)
	for i := 40; i < len(corruptPNG)-20; i++ {
		corruptPNG[i] ^= 0x5A
	}
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	webpWithBadBits := solidWebP(8, 8, mediatest.Red)
	webpWithBadBits[20] = 0x00 // breaks the VP8L signature

	tests := []struct {
		name   string
		src    []byte
		limits thumbnail.Limits
		want   error
	}{
		{"png bomb 100000x100000", mediatest.PNGHeaderOnly(100000, 100000), thumbnail.Limits{}, thumbnail.ErrTooLarge},
		{"png 10000x10000 over 24 MP", mediatest.PNGHeaderOnly(10000, 10000), thumbnail.Limits{}, thumbnail.ErrTooLarge},
		{"png side over 20000", mediatest.PNGHeaderOnly(20001, 1), thumbnail.Limits{}, thumbnail.ErrTooLarge},
		{"png over a custom pixel limit", png, thumbnail.Limits{MaxPixels: 64*64 - 1}, thumbnail.ErrTooLarge},
		{"input over MaxBytes", png, thumbnail.Limits{MaxBytes: int64(len(png)) - 1}, thumbnail.ErrTooLarge},
		{"png zero width", mediatest.PNGHeaderOnly(0, 10), thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"png header fine, data not", mediatest.PNGHeaderOnly(64, 64), thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"png corrupted", corruptPNG, thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"truncated jpeg", jpg[:len(jpg)/2], thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"jpeg header only", jpg[:20], thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"gif header only", []byte("GIF89a\x10\x00\x10\x00"), thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"webp with broken bitstream", webpWithBadBits, thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"random bytes", random, thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"text", []byte("definitely not a picture"), thumbnail.Limits{}, thumbnail.ErrBadImage},
		{"empty", nil, thumbnail.Limits{}, thumbnail.ErrBadImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := thumbnail.Image(t.Context(), bytes.NewReader(tt.src), 0, tt.limits)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Image: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestImageCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, _, err := thumbnail.Image(ctx, bytes.NewReader(mediatest.PNG(t, mediatest.Quadrants(8, 8))), 0, thumbnail.Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Image: %v, want context.Canceled", err)
	}
}

// BenchmarkImage4000x3000 makes a 320 px thumbnail of a 12-megapixel JPEG,
// the size of a typical phone photo.
func BenchmarkImage4000x3000(b *testing.B) {
	src := mediatest.Photo(b, 4000, 3000)
	ctx := context.Background()
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := thumbnail.Image(ctx, bytes.NewReader(src), 320, thumbnail.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "thumbs/s")
}
