// Package thumbnail makes small JPEG previews of chat images and videos.
//
// Images are untrusted input: dimensions are checked from the header before
// any pixel is decoded (a few kilobytes of PNG can claim 10 gigapixels),
// decodes running at once share a memory Budget, and decoder panics become
// errors. Probe runs the same header checks for uploads, so that what would
// get no thumbnail is refused before it is sent.
package thumbnail

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"github.com/disintegration/imaging"
	"golang.org/x/image/webp"
)

// Errors for the caller to tell bad input (drop it) from trouble worth a
// retry. Both ErrBadImage and ErrTooLarge are permanent.
var (
	ErrBadImage = errors.New("thumbnail: bad image")
	ErrTooLarge = errors.New("thumbnail: image too large")
)

// Defaults for zero arguments and Limits fields.
const (
	DefaultMaxSide = 320
	// DefaultMaxPixels admits 24-megapixel photos (6000×4000); phones send
	// 12 MP by default.
	DefaultMaxPixels    = 24_000_000
	DefaultMaxDimension = 20_000
	DefaultMaxBytes     = 64 << 20
	// Quality is the JPEG quality of thumbnails: small files, no visible
	// blocking at thumbnail size.
	Quality = 80
)

// Limits bound the work one input may cause. Zero fields take the defaults.
type Limits struct {
	// MaxPixels caps width×height as declared in the image header.
	MaxPixels int64
	// MaxDimension caps either side.
	MaxDimension int
	// MaxBytes caps the encoded input read from src.
	MaxBytes int64
	// Memory, if set, is shared by every decode using these limits; nil
	// leaves decodes running at once unbounded.
	Memory *Budget
}

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxDimension <= 0 {
		l.MaxDimension = DefaultMaxDimension
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

type format struct {
	name   string
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

// detect picks the decoder from the magic bytes; the image registry is not
// used, so which packages happen to be linked in does not matter.
func detect(b []byte) (format, bool) {
	switch {
	case bytes.HasPrefix(b, []byte("\xFF\xD8\xFF")):
		return format{"jpeg", jpeg.DecodeConfig, jpeg.Decode}, true
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return format{"png", png.DecodeConfig, png.Decode}, true
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return format{"gif", gif.DecodeConfig, gif.Decode}, true // first frame only
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return format{"webp", webp.DecodeConfig, webp.Decode}, true
	}
	return format{}, false
}

// Image decodes a JPEG, PNG, GIF or WebP from src and returns a JPEG no
// larger than maxSide on its longest side (DefaultMaxSide when maxSide <= 0),
// upright according to the EXIF orientation of a JPEG, transparent areas on
// white. Smaller images keep their size. width and height are the
// thumbnail's.
func Image(ctx context.Context, src io.Reader, maxSide int, limits Limits) (thumb []byte, width, height int, err error) {
	limits = limits.withDefaults()
	if maxSide <= 0 {
		maxSide = DefaultMaxSide
	}
	data, err := io.ReadAll(io.LimitReader(src, limits.MaxBytes+1))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("thumbnail: read: %w", err)
	}
	if int64(len(data)) > limits.MaxBytes {
		return nil, 0, 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limits.MaxBytes)
	}
	f, cfg, err := probe(bytes.NewReader(data), limits)
	if err != nil {
		return nil, 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	small, err := decodeFit(ctx, f, cfg, data, maxSide, limits)
	if err != nil {
		return nil, 0, 0, err
	}
	// Rotating after scaling touches ~100k pixels instead of millions.
	if f.name == "jpeg" {
		small = orient(small, jpegOrientation(data))
	}
	out := imaging.New(small.Bounds().Dx(), small.Bounds().Dy(), color.White)
	out = imaging.Overlay(out, small, image.Point{}, 1)

	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: Quality}); err != nil {
		return nil, 0, 0, fmt.Errorf("thumbnail: encode: %w", err)
	}
	return buf.Bytes(), out.Bounds().Dx(), out.Bounds().Dy(), nil
}

// Probe reads only the header of a JPEG, PNG, GIF or WebP from r and checks
// it as Image would before decoding: ErrBadImage for a file no decoder
// reads, ErrTooLarge for too many pixels. It returns the format name
// ("jpeg", "png", "gif", "webp") and the dimensions.
func Probe(r io.Reader, limits Limits) (format string, width, height int, err error) {
	f, cfg, err := probe(r, limits.withDefaults())
	return f.name, cfg.Width, cfg.Height, err
}

func probe(r io.Reader, limits Limits) (format, image.Config, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(12) // shorter files fail detection below
	f, ok := detect(magic)
	if !ok {
		return format{}, image.Config{}, fmt.Errorf("%w: not a JPEG, PNG, GIF or WebP", ErrBadImage)
	}
	var cfg image.Config
	if err := guard(func() (err error) { cfg, err = f.config(br); return err }); err != nil {
		return format{}, image.Config{}, fmt.Errorf("%w: %s header: %w", ErrBadImage, f.name, err)
	}
	if err := checkSize(cfg.Width, cfg.Height, limits); err != nil {
		return format{}, image.Config{}, err
	}
	return f, cfg, nil
}

// decodeFit decodes data and scales it down to maxSide, holding the
// image's share of limits.Memory until the full-size pixels are garbage.
func decodeFit(ctx context.Context, f format, cfg image.Config, data []byte, maxSide int, limits Limits) (*image.NRGBA, error) {
	if limits.Memory != nil {
		release, err := limits.Memory.acquire(ctx, DecodeCost(f.name, cfg))
		if err != nil {
			return nil, err
		}
		defer release()
	}
	var img image.Image
	if err := guard(func() (err error) { img, err = f.decode(bytes.NewReader(data)); return err }); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %w", ErrBadImage, f.name, err)
	}
	// A decoder may trust a different header than DecodeConfig did.
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		if err := checkSize(b.Dx(), b.Dy(), limits); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return fit(img, maxSide), nil
}

func checkSize(w, h int, l Limits) error {
	switch {
	case w <= 0 || h <= 0:
		return fmt.Errorf("%w: dimensions %dx%d", ErrBadImage, w, h)
	case w > l.MaxDimension || h > l.MaxDimension:
		return fmt.Errorf("%w: %dx%d, a side exceeds %d", ErrTooLarge, w, h, l.MaxDimension)
	case int64(w)*int64(h) > l.MaxPixels:
		return fmt.Errorf("%w: %dx%d exceeds %d pixels", ErrTooLarge, w, h, l.MaxPixels)
	}
	return nil
}

// guard turns a decoder panic into ErrBadImage: decoders of untrusted input
// have had such bugs, and one file must not take the worker down.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrBadImage, r)
		}
	}()
	return f()
}

// fit scales img down so its longest side is maxSide. Linear is the fastest
// of imaging's filters that still looks smooth at thumbnail size.
func fit(img image.Image, maxSide int) *image.NRGBA {
	b := img.Bounds()
	switch {
	case b.Dx() <= maxSide && b.Dy() <= maxSide:
		return imaging.Clone(img)
	case b.Dx() >= b.Dy():
		return imaging.Resize(img, maxSide, 0, imaging.Linear)
	default:
		return imaging.Resize(img, 0, maxSide, imaging.Linear)
	}
}

// orient applies an EXIF orientation (1-8) so the image displays upright.
func orient(img *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2:
		return imaging.FlipH(img)
	case 3:
		return imaging.Rotate180(img)
	case 4:
		return imaging.FlipV(img)
	case 5:
		return imaging.Transpose(img)
	case 6:
		return imaging.Rotate270(img) // imaging rotates counter-clockwise
	case 7:
		return imaging.Transverse(img)
	case 8:
		return imaging.Rotate90(img)
	}
	return img
}

// jpegOrientation returns the EXIF Orientation tag of a JPEG, 1 (upright)
// when absent or unreadable.
func jpegOrientation(b []byte) int {
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return 1
		}
		marker := b[i+1]
		switch {
		case marker == 0xFF: // fill byte
			i++
			continue
		case marker == 0x01 || marker >= 0xD0 && marker <= 0xD8: // no length field
			i += 2
			continue
		case marker == 0xDA || marker == 0xD9: // image data: metadata is over
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		if seg := b[i+4 : i+2+n]; marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return exifOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// exifOrientation reads tag 0x0112 from IFD0 of a TIFF structure.
func exifOrientation(tiff []byte) int {
	if len(tiff) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(tiff[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(tiff[2:]) != 42 {
		return 1
	}
	off := int64(bo.Uint32(tiff[4:]))
	if off < 8 || off+2 > int64(len(tiff)) {
		return 1
	}
	n := int64(bo.Uint16(tiff[off:]))
	for k := range n {
		e := off + 2 + 12*k
		if e+12 > int64(len(tiff)) {
			return 1
		}
		if bo.Uint16(tiff[e:]) != 0x0112 {
			continue
		}
		if bo.Uint16(tiff[e+2:]) != 3 { // SHORT
			return 1
		}
		if v := int(bo.Uint16(tiff[e+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}
