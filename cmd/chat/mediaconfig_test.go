package main

import (
	"strings"
	"testing"
	"time"
)

// TestMediaBoundsConfig checks the media bounds are read from the
// environment, with defaults, and that a memory budget too small for one
// image of the pixel limit is refused at start, naming the variable.
func TestMediaBoundsConfig(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	c, err := loadConfig(env(nil), true, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxImagePixels != 24_000_000 || c.ThumbnailMemory != 256<<20 || c.MaxUploads != 32 || c.MaxUserUploads != 3 ||
		c.PendingReadRetention != 24*time.Hour {
		t.Fatalf("defaults: %d %d %d %d %s", c.MaxImagePixels, c.ThumbnailMemory, c.MaxUploads, c.MaxUserUploads, c.PendingReadRetention)
	}
	c, err = loadConfig(env(map[string]string{"CHAT_MAX_IMAGE_PIXELS": "1000000", "CHAT_THUMBNAIL_MEMORY": "8000000",
		"CHAT_MAX_UPLOADS": "4", "CHAT_MAX_USER_UPLOADS": "1", "CHAT_PENDING_READ_RETENTION": "1h"}), true, false)
	if err != nil || c.imageLimits().MaxPixels != 1_000_000 || c.MaxUploads != 4 || c.MaxUserUploads != 1 || c.PendingReadRetention != time.Hour {
		t.Fatalf("set: %+v, %v", c, err)
	}
	for _, bad := range []map[string]string{
		{"CHAT_THUMBNAIL_MEMORY": "100000000"}, // under 8 × 24 MP
		{"CHAT_MAX_UPLOADS": "0"},
		{"CHAT_PENDING_READ_RETENTION": "soon"},
	} {
		_, err := loadConfig(env(bad), true, false)
		for k := range bad {
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%v: %v, want an error naming %s", bad, err, k)
			}
		}
	}
}
