package media_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/parleychat/parley/internal/media"
)

// mediaSeeds is one small file of every kind the package knows.
func mediaSeeds(f *testing.F) [][]byte {
	return [][]byte{
		pngFile(f, 4, 3), jpegFile(f, 4, 3), gifFile(f, 4, 3),
		riff("WEBP", "VP8 ", 16), riff("WAVE", "fmt ", 16),
		mp4File("M4A ", 64, mvhd0(1000, 3000)), mp4File("isom", 64, mvhd1(600, 6000), "mp41"), mp4File("3gp4", 64, mvhd0(1000, 1000)),
		mp3File(4, true, 0), mp3File(4, false, 100),
		opusFile(312, 48000*3),
		webmHead("webm"),
		[]byte("#!AMR\n\x00\x00"),
	}
}

// FuzzSniff feeds arbitrary leading bytes to the sniffer that decides what
// an upload is. Properties: no panic; a refusal is ErrUnsupportedType (a
// 415); what is recognised is a type TypeOf agrees on; and the answer
// depends on the first SniffLen bytes only, which is all Upload and Verify
// pass it.
func FuzzSniff(f *testing.F) {
	for _, b := range mediaSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, mime, ext, err := media.Sniff(b)
		if len(b) > media.SniffLen {
			k3, m3, _, err3 := media.Sniff(b[:media.SniffLen])
			if (err == nil) != (err3 == nil) || k3 != kind || m3 != mime {
				t.Fatalf("the first %d bytes sniff as %q %q (%v), the whole %d as %q %q (%v)", media.SniffLen, k3, m3, err3, len(b), kind, mime, err)
			}
		}
		if err != nil {
			if !errors.Is(err, media.ErrUnsupportedType) {
				t.Fatalf("refusal is not ErrUnsupportedType: %v", err)
			}
			return
		}
		k2, m2, e2, err := media.TypeOf(mime)
		if err != nil || k2 != kind || m2 != mime || e2 != ext {
			t.Fatalf("Sniff says %s %s .%s, TypeOf(%q) says %s %s .%s, %v", kind, mime, ext, mime, k2, m2, e2, err)
		}
	})
}

// FuzzAudioDuration feeds arbitrary files to the duration parser, which
// reads headers of uploads to fill in audio_duration. Properties: no panic;
// a bounded number of reads (it reads headers, never loops on a bad
// length); a duration is never negative; and sniffing the type gives the
// same answer as being told the sniffed type.
func FuzzAudioDuration(f *testing.F) {
	for _, b := range mediaSeeds(f) {
		f.Add(b, "")
	}
	f.Add(riff("WAVE", "data", 8000), "audio/wav")
	f.Add(mp3File(10, false, 0), "audio/mpeg")
	f.Fuzz(func(t *testing.T, b []byte, mimeType string) {
		r := &countingReader{r: bytes.NewReader(b), t: t}
		secs, ok := media.AudioDuration(r, mimeType)
		if ok && secs < 0 {
			t.Fatalf("duration %d", secs)
		}
		if mimeType != "" {
			return
		}
		_, sniffed, _, err := media.Sniff(b[:min(len(b), media.SniffLen)])
		if err != nil {
			if ok {
				t.Fatalf("a duration (%ds) for content that sniffs as nothing", secs)
			}
			return
		}
		secs2, ok2 := media.AudioDuration(&countingReader{r: bytes.NewReader(b), t: t}, sniffed)
		if secs2 != secs || ok2 != ok {
			t.Fatalf("sniffed: %ds, %v; told %s: %ds, %v", secs, ok, sniffed, secs2, ok2)
		}
	})
}

// countingReader fails the test when the parser reads or seeks an
// unreasonable number of times for its input: a loop that does not advance.
type countingReader struct {
	r   io.ReadSeeker
	t   *testing.T
	ops int
}

func (c *countingReader) op() {
	if c.ops++; c.ops > 100_000 {
		c.t.Fatalf("more than %d reads and seeks", 100_000)
	}
}

func (c *countingReader) Read(p []byte) (int, error) { c.op(); return c.r.Read(p) }

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	c.op()
	return c.r.Seek(off, whence)
}
