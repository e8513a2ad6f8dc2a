package thumbnail

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"sync"

	"golang.org/x/sync/semaphore"
)

// DefaultMemory is the default Budget: one decode of a DefaultMaxPixels
// image at the costliest estimate (8 bytes per pixel), or several smaller
// ones at once.
const DefaultMemory = 256 << 20

// Budget bounds the memory that decoded pixels take across every decode
// sharing it: a decode waits until its estimated cost fits. Without one,
// each consumer could hold a full-size decode at the same time.
type Budget struct {
	size int64
	sem  *semaphore.Weighted

	mu          sync.Mutex
	held, peak  int64
	running     int
	peakRunning int
}

// NewBudget returns a budget of size bytes.
func NewBudget(size int64) *Budget {
	return &Budget{size: size, sem: semaphore.NewWeighted(size)}
}

// Size is the budget in bytes.
func (b *Budget) Size() int64 { return b.size }

// BudgetStats report the most a Budget ever held at once.
type BudgetStats struct {
	PeakBytes   int64 // estimated bytes of decodes running at once
	PeakDecodes int   // decodes running at once
}

// Stats returns the peaks so far.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetStats{PeakBytes: b.peak, PeakDecodes: b.peakRunning}
}

// acquire waits for n bytes; the caller must call the returned release.
// n larger than the whole budget is refused rather than waited for forever.
func (b *Budget) acquire(ctx context.Context, n int64) (release func(), err error) {
	if n > b.size {
		return nil, fmt.Errorf("%w: decoding needs about %d bytes, the memory budget is %d", ErrTooLarge, n, b.size)
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.held += n
	b.running++
	b.peak = max(b.peak, b.held)
	b.peakRunning = max(b.peakRunning, b.running)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.held -= n
		b.running--
		b.mu.Unlock()
		b.sem.Release(n)
	}, nil
}

// DecodeCost estimates the bytes a decode of an image with this header
// allocates: its pixels at the decoder's bytes per pixel. JPEG is counted
// at 8 whatever its color model, since progressive scans keep 4 bytes of
// coefficients per pixel of each plane beside the image, and CMYK files
// are decoded twice over.
func DecodeCost(format string, cfg image.Config) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	if format == "jpeg" {
		return px * 8
	}
	return px * bytesPerPixel(cfg.ColorModel)
}

// MaxDecodeCost is the most one image within limits may cost to decode.
func MaxDecodeCost(l Limits) int64 {
	return l.withDefaults().MaxPixels * 8
}

func bytesPerPixel(m color.Model) int64 {
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3
	case color.RGBAModel, color.NRGBAModel, color.NYCbCrAModel, color.CMYKModel:
		return 4
	}
	return 8 // 16-bit color, or a model not known here
}
