package thumbnail_test

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"runtime"
	"sync"
	"testing"

	"github.com/parleychat/parley/internal/mediatest"
	"github.com/parleychat/parley/internal/thumbnail"
)

// TestLargeHeaderRefusedWithoutDecoding checks a 7000×7000 PNG (49
// megapixels, a few hundred bytes) is refused from its header under the
// default limits, allocating nothing like its 196 MB of pixels.
func TestLargeHeaderRefusedWithoutDecoding(t *testing.T) {
	src := mediatest.PNGHeaderOnly(7000, 7000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _, err := thumbnail.Image(t.Context(), bytes.NewReader(src), 0, thumbnail.Limits{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, thumbnail.ErrTooLarge) {
		t.Fatalf("Image: %v, want ErrTooLarge", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing the header allocated %d bytes", n)
	}
	if _, w, h, err := thumbnail.Probe(bytes.NewReader(src), thumbnail.Limits{}); !errors.Is(err, thumbnail.ErrTooLarge) {
		t.Errorf("Probe: %dx%d, %v; want ErrTooLarge", w, h, err)
	}
}

// TestBudgetBoundsConcurrentDecodes runs more decodes at once than the
// budget holds and checks, by the budget's own count, that the decodes
// running together never exceeded it.
func TestBudgetBoundsConcurrentDecodes(t *testing.T) {
	src := mediatest.PNG(t, mediatest.Quadrants(400, 300))
	format, w, h, err := thumbnail.Probe(bytes.NewReader(src), thumbnail.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cost := thumbnail.DecodeCost(format, imageConfig(t, src))
	if cost < int64(w*h) {
		t.Fatalf("cost %d of a %dx%d image", cost, w, h)
	}
	for _, fit := range []int64{1, 2} {
		budget := thumbnail.NewBudget(fit * cost)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, _, _, err := thumbnail.Image(t.Context(), bytes.NewReader(src), 64, thumbnail.Limits{Memory: budget})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Image: %v", err)
			}
		}
		st := budget.Stats()
		if st.PeakDecodes < 1 || int64(st.PeakDecodes) > fit || st.PeakBytes > budget.Size() {
			t.Errorf("budget of %d decodes: %+v", fit, st)
		}
	}

	t.Run("an image over the whole budget is refused", func(t *testing.T) {
		budget := thumbnail.NewBudget(cost - 1)
		_, _, _, err := thumbnail.Image(t.Context(), bytes.NewReader(src), 64, thumbnail.Limits{Memory: budget})
		if !errors.Is(err, thumbnail.ErrTooLarge) {
			t.Fatalf("Image: %v, want ErrTooLarge", err)
		}
		if st := budget.Stats(); st.PeakDecodes != 0 {
			t.Errorf("decoded anyway: %+v", st)
		}
	})
}

func imageConfig(t *testing.T, src []byte) image.Config {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
