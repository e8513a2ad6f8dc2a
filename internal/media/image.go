package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/parleychat/parley/internal/thumbnail"
)

// pngEnd is the IEND chunk every PNG ends with: length 0, type, CRC.
var pngEnd = []byte("\x00\x00\x00\x00IEND\xAE\x42\x60\x82")

// checkImage refuses an image the thumbnailer would refuse: one whose
// header no decoder reads, or over the pixel limits. It reads the header
// from r and, to catch a file cut short in transit, the last bytes from at:
// a JPEG must end with its EOI marker, a PNG with IEND, a GIF with its
// trailer, and a WebP must be as long as its RIFF header says. Decoding
// the pixels to be sure would cost the memory the limits are there to
// save. HEIC and HEIF pass: nothing here reads them.
func (s *Store) checkImage(t fileType, r io.Reader, at io.ReaderAt, size int64) error {
	if t.Kind != KindImage || t == typeHEIC || t == typeHEIF {
		return nil
	}
	format, _, _, err := thumbnail.Probe(r, s.cfg.Images)
	switch {
	case errors.Is(err, thumbnail.ErrTooLarge):
		return fmt.Errorf("%w: %s", ErrTooLarge, strings.TrimPrefix(err.Error(), thumbnail.ErrTooLarge.Error()+": "))
	case errors.Is(err, thumbnail.ErrBadImage):
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.TrimPrefix(err.Error(), thumbnail.ErrBadImage.Error()+": "))
	case err != nil:
		return fmt.Errorf("media: read image header: %w", err)
	}
	end := func(n int64) ([]byte, error) {
		n = min(n, size)
		b := make([]byte, n)
		if _, err := at.ReadAt(b, size-n); err != nil {
			return nil, fmt.Errorf("media: read image end: %w", err)
		}
		return b, nil
	}
	var whole bool
	switch format {
	case "jpeg":
		b, err := end(2)
		if err != nil {
			return err
		}
		whole = bytes.Equal(b, []byte{0xFF, 0xD9})
	case "png":
		b, err := end(int64(len(pngEnd)))
		if err != nil {
			return err
		}
		whole = bytes.Equal(b, pngEnd)
	case "gif":
		b, err := end(1)
		if err != nil {
			return err
		}
		whole = b[0] == 0x3B
	case "webp":
		b := make([]byte, 8)
		if _, err := at.ReadAt(b, 0); err != nil {
			return fmt.Errorf("media: read image header: %w", err)
		}
		riff := int64(binary.LittleEndian.Uint32(b[4:])) + 8
		whole = riff == size || riff+1 == size // chunks are padded to even lengths
	default:
		whole = true
	}
	if !whole {
		return fmt.Errorf("%w: truncated %s: the file ends before the image does", ErrCorrupt, format)
	}
	return nil
}

// objectRange reads byte ranges of a stored object, for checkImage.
type objectRange struct {
	ctx context.Context
	s   *Store
	key string
}

func (o objectRange) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{
		Bucket: aws.String(o.s.cfg.Bucket),
		Key:    aws.String(o.key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)),
	})
	if err != nil {
		return 0, o.s.mapErr("get", o.key, err)
	}
	defer out.Body.Close()
	return io.ReadFull(out.Body, p)
}
